/* libFuzzer target: the HTTP/1.1 front end (request heads, Content-Length and chunked
 * bodies, pipelining, every route including /keys/ and /metrics) against a DRAM-only
 * store. An input is one connection's bytes. */
#include "fuzz_common.h"
#include "proto/http/http.h"

#include <string.h>

static struct http_server *server;

static void no_resume(void *handle) {
    (void)handle;
}

static bool feed(void *session, const unsigned char *data, size_t length, size_t *consumed) {
    unsigned char *target;
    size_t room;
    if (http_session_direct_target(session, &target, &room) && room > 0) {
        size_t take = length < room ? length : room;
        memcpy(target, data, take);
        http_session_direct_filled(session, take);
        *consumed = take;
        return false;
    }
    return http_session_data(session, data, length, consumed);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    struct fuzz_world *world = fuzz_world();
    if (server == NULL) {
        struct http_environment environment = {
            .store = world->store,
            .options = &world->options,
            .stats = world->stats,
        };
        server = http_server_create(&environment);
        if (server == NULL) return 0;
    }
    struct output_queue output;
    output_queue_init(&output);
    void *session = http_session_open(server, 1, "fuzz", &output, no_resume, NULL);
    if (session == NULL) return 0;
    fuzz_drive(session, feed, &output, data, size);
    /* A clock tick past every timeout, as the network layer would give. */
    http_session_tick(session, INT64_MAX / 2);
    fuzz_drain(&output);
    http_session_close(session);
    output_queue_clear(&output);
    fuzz_end_input(world);
    return 0;
}
