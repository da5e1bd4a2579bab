/* libFuzzer target: the RESP front end (parser, sessions, every command) against a
 * DRAM-only store. An input is one connection's bytes. */
#include "access/access.h"
#include "fuzz_common.h"
#include "proto/resp/resp.h"

#include <stdlib.h>

static void no_shutdown(void *context) {
    (void)context;
}

static void no_resume(void *handle) {
    (void)handle;
}

static bool feed(void *session, const unsigned char *data, size_t length, size_t *consumed) {
    /* Large arguments are read straight into their block when the parser asks. */
    unsigned char *target;
    size_t room;
    if (resp_session_direct_target(session, &target, &room) && room > 0) {
        size_t take = length < room ? length : room;
        for (size_t i = 0; i < take; i++)
            target[i] = data[i];
        resp_session_direct_filled(session, take);
        *consumed = take;
        return false;
    }
    bool close = resp_session_data(session, data, length, consumed);
    /* What a worker does when woken: MONITOR's lines reach the output here. */
    return resp_session_woken(session) || close;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    struct fuzz_world *world = fuzz_world();
    /* Users as with no --users: "default" with every right and no password. New for
     * each input, so that an input's ACL SETUSER or failed AUTH does not reach the next. */
    char error[256];
    struct access *access = access_create(&world->options, error, sizeof(error));
    if (access == NULL) abort();
    struct resp_environment environment = {
        .store = world->store,
        .options = &world->options,
        .stats = world->stats,
        .access = access,
        .request_shutdown = no_shutdown,
    };
    struct resp_server *server = resp_server_create(&environment);
    if (server == NULL) abort();
    struct output_queue output;
    output_queue_init(&output);
    void *session =
        resp_session_open(server, 1, 5, "fuzz", "fuzz", -1, &output, no_resume, no_resume, NULL);
    if (session != NULL) {
        fuzz_drive(session, feed, &output, data, size);
        resp_session_close(session);
    }
    output_queue_clear(&output);
    resp_server_destroy(server);
    access_destroy(access);
    fuzz_end_input(world);
    return 0;
}
