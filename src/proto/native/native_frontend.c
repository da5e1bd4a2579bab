/* The native batched protocol as a front end (proto/frontend.h): its row in the
 * server's table. */
#include "engine/namespaces.h"
#include "proto/frontend.h"
#include "proto/native/native.h"
#include "proto/native/native_internal.h"

#include <stdio.h>
#include <string.h>

/* frontend.setup: a native-protocol server over every namespace. */
static void *setup(const struct frontend_environment *environment) {
    struct native_environment native = {
        .namespaces = environment->namespaces,
        .options = environment->options,
        .access = environment->access,
    };
    return native_server_create(&native);
}

static void teardown(void *state) {
    native_server_destroy(state);
}

/* frontend.listening_fields: how many namespaces the port serves. */
static void listening_fields(void *state, char *text, size_t size) {
    const struct native_server *server = state;
    snprintf(text, size, " namespaces=%d", server->environment.namespaces->count);
}

static void *session_open(void *state, const struct net_connection_info *info,
                          struct output_queue *output) {
    struct native_peer peer = {
        .name = info->peer, .unix_socket = info->unix_socket, .uid = (uint32_t)info->peer_uid};
    void *session =
        native_session_open(state, info->id, &peer, output, net_resume_callback, info->connection);
    if (session != NULL) metric_add(NATIVE_METRIC(native_clients_connected), 1);
    return session;
}

/* net_handler.close: the session ends with its connection (counted in session_open). */
static void session_close(void *session) {
    metric_add(NATIVE_METRIC(native_clients_connected), -1);
    native_session_close(session);
}

/* net_handler.sniff: a native connection's first frame begins with the magic "STRN". */
static enum net_sniff sniff(const unsigned char *data, size_t length) {
    unsigned char magic[4];
    strata_store32(magic, STRATA_PROTOCOL_MAGIC);
    size_t compared = length < sizeof(magic) ? length : sizeof(magic);
    if (memcmp(data, magic, compared) != 0) return NET_SNIFF_NO;
    return length >= sizeof(magic) ? NET_SNIFF_YES : NET_SNIFF_MORE;
}

static enum net_action session_data(void *session, const unsigned char *data, size_t length,
                                    size_t *consumed) {
    return native_session_data(session, data, length, consumed) ? NET_CLOSE : NET_CONTINUE;
}

const struct frontend native_frontend = {
    .name = "native",
    .options = &native_options,
    .metrics = &native_metrics,
    .port_option = "native-port",
    .info_port_field = NULL,
    .unix_socket = true,
    .setup = setup,
    .teardown = teardown,
    .listening_fields = listening_fields,
    .handler =
        {
            .open = session_open,
            .data = session_data,
            .direct_target = native_session_direct_target,
            .direct_filled = native_session_direct_filled,
            .close = session_close,
            .sniff = sniff,
            .descriptor = native_session_descriptor,
            .refusal = (const char *)native_refusal,
            .refusal_length = NATIVE_REFUSAL_LENGTH,
        },
};
