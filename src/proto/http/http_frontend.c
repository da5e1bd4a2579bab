/* HTTP as a front end (proto/frontend.h): its row in the server's table. */
#include "proto/frontend.h"
#include "proto/http/http.h"

/* frontend.setup: an HTTP server over the default namespace's store. */
static void *setup(const struct frontend_environment *environment) {
    struct http_environment http = {
        .extension = environment->http_extension,
        .access = environment->access,
        .store = environment->store,
        .options = environment->options,
        .stats = environment->stats,
    };
    return http_server_create(&http);
}

static void teardown(void *state) {
    http_server_destroy(state);
}

static void *session_open(void *state, const struct net_connection_info *info,
                          struct output_queue *output) {
    void *session = http_session_open(state, info->id, info->peer, output, net_resume_callback,
                                      info->connection);
    if (session != NULL) metric_add(HTTP_METRIC(http_clients_connected), 1);
    return session;
}

/* net_handler.close: the session ends with its connection (counted in session_open). */
static void session_close(void *session) {
    metric_add(HTTP_METRIC(http_clients_connected), -1);
    http_session_close(session);
}

static enum net_action session_data(void *session, const unsigned char *data, size_t length,
                                    size_t *consumed) {
    return http_session_data(session, data, length, consumed) ? NET_CLOSE : NET_CONTINUE;
}

static enum net_action session_tick(void *session, int64_t now_ms) {
    return http_session_tick(session, now_ms) ? NET_CLOSE : NET_CONTINUE;
}

const struct frontend http_frontend = {
    .name = "http",
    .options = &http_options,
    .metrics = &http_metrics,
    .port_option = "http-port",
    .info_port_field = "http_port",
    .setup = setup,
    .teardown = teardown,
    .handler =
        {
            .open = session_open,
            .data = session_data,
            .direct_target = http_session_direct_target,
            .direct_filled = http_session_direct_filled,
            .tick = session_tick,
            .wants_close = http_session_wants_close,
            .close = session_close,
            .refusal = http_refusal,
        },
};
