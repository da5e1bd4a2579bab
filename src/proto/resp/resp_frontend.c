/* The Redis protocol as a front end (proto/frontend.h): its row in the server's table. */
#include "proto/frontend.h"
#include "proto/resp/resp.h"

/* frontend.setup: a RESP server over the default namespace's store. */
static void *setup(const struct frontend_environment *environment) {
    struct resp_environment resp = {
        .store = environment->store,
        .options = environment->options,
        .stats = environment->stats,
        .access = environment->access,
        .request_shutdown = environment->request_shutdown,
        .shutdown_context = environment->shutdown_context,
        .exclusive = net_exclusive_callback,
    };
    return resp_server_create(&resp);
}

static void teardown(void *state) {
    resp_server_destroy(state);
}

static void *session_open(void *state, const struct net_connection_info *info,
                          struct output_queue *output) {
    void *session = resp_session_open(state, info->id, info->fd, info->peer, info->local,
                                      info->unix_socket ? (int64_t)info->peer_uid : -1, output,
                                      net_resume_callback, net_wake_callback, info->connection);
    if (session != NULL) metric_add(RESP_METRIC(resp_clients_connected), 1);
    return session;
}

/* net_handler.close: the session ends with its connection (counted in session_open). */
static void session_close(void *session) {
    metric_add(RESP_METRIC(resp_clients_connected), -1);
    resp_session_close(session);
}

static enum net_action session_data(void *session, const unsigned char *data, size_t length,
                                    size_t *consumed) {
    return resp_session_data(session, data, length, consumed) ? NET_CLOSE : NET_CONTINUE;
}

const struct frontend resp_frontend = {
    .name = "resp",
    .options = &resp_options,
    .metrics = &resp_metrics,
    .port_option = "port",
    .info_port_field = "tcp_port",
    .unix_socket = true, /* what the native protocol's sniff() does not claim */
    .setup = setup,
    .teardown = teardown,
    .handler =
        {
            .open = session_open,
            .data = session_data,
            .direct_target = resp_session_direct_target,
            .direct_filled = resp_session_direct_filled,
            .woken = resp_session_woken,
            .close = session_close,
            .refusal = "-ERR max number of clients reached\r\n",
        },
};
