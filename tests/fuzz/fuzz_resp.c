/* libFuzzer target: the RESP front end (parser, sessions, every command) against a
 * DRAM-only store. An input is one connection's bytes. */
#include "fuzz_common.h"
#include "proto/resp/resp.h"

static struct resp_server *server;

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
    return resp_session_data(session, data, length, consumed);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    struct fuzz_world *world = fuzz_world();
    if (server == NULL) {
        struct resp_environment environment = {
            .store = world->store,
            .options = &world->options,
            .stats = world->stats,
            .request_shutdown = no_shutdown,
        };
        server = resp_server_create(&environment);
        if (server == NULL) return 0;
    }
    struct output_queue output;
    output_queue_init(&output);
    void *session = resp_session_open(server, 1, 5, "fuzz", "fuzz", &output, no_resume, NULL);
    if (session == NULL) return 0;
    fuzz_drive(session, feed, &output, data, size);
    resp_session_close(session);
    output_queue_clear(&output);
    fuzz_end_input(world);
    return 0;
}
