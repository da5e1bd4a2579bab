/* strata-server: reads the options, starts the engine, the front ends and the network
 * layer (src/server/server.c), and runs until SIGINT, SIGTERM or SHUTDOWN.
 *
 * Exit status: 0 after a clean shutdown, 1 when the server cannot start (address in
 * use, data directory locked), 2 for a bad option or value. */
#include "server/server.h"

int main(int argc, char **argv) {
    static struct server server;
    int status = server_configure(&server, argc, argv);
    if (status >= 0) return status;
    status = server_start(&server);
    if (status != 0) return status;
    server_wait_for_stop(&server);
    server_stop(&server);
    return 0;
}
