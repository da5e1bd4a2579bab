/* libFuzzer target: the native batched protocol (frame parser and session) against a
 * DRAM-only default namespace and a small "tenant" one. An input is one connection's
 * bytes. */
#include "fuzz_common.h"
#include "proto/native/native.h"

#include <string.h>

static struct native_server *server;

static void no_resume(void *handle) {
    (void)handle;
}

static bool feed(void *session, const unsigned char *data, size_t length, size_t *consumed) {
    unsigned char *target;
    size_t room;
    if (native_session_direct_target(session, &target, &room) && room > 0) {
        size_t take = length < room ? length : room;
        memcpy(target, data, take);
        native_session_direct_filled(session, take);
        *consumed = take;
        return false;
    }
    return native_session_data(session, data, length, consumed);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    struct fuzz_world *world = fuzz_world();
    if (server == NULL) {
        struct native_environment environment = {
            .namespaces = &world->namespaces,
            .options = &world->options,
            .access = world->access,
        };
        server = native_server_create(&environment);
        if (server == NULL) return 0;
    }
    struct output_queue output;
    output_queue_init(&output);
    struct native_peer peer = {.name = "fuzz"};
    void *session = native_session_open(server, 1, &peer, &output, no_resume, NULL);
    if (session == NULL) return 0;
    fuzz_drive(session, feed, &output, data, size);
    native_session_close(session);
    output_queue_clear(&output);
    fuzz_end_input(world);
    return 0;
}
