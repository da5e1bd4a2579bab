/* The Redis protocol front end (RESP2 and RESP3): sessions that turn requests into
 * store calls and replies.
 *
 * This header is what the server wires to the network layer; it does not depend on
 * it. A session receives bytes through resp_session_data() and appends its replies to
 * the output queue it was given. */
#ifndef STRATA_PROTO_RESP_H
#define STRATA_PROTO_RESP_H

#include "base/metrics.h"
#include "base/options.h"
#include "base/output_queue.h"
#include "base/version.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* resp's options (proto/resp/resp_options.def): the group, and each row's place in it. */
enum resp_option_index {
#define OPTION(identifier, ...) RESP_OPTION_INDEX_##identifier,
#include "proto/resp/resp_options.def"
#undef OPTION
};
extern struct option_group resp_options;
/* The identifier of resp's option IDENTIFIER in the composed table. */
#define RESP_OPTION(identifier) option_in_group(&resp_options, RESP_OPTION_INDEX_##identifier)

/* resp's metrics (proto/resp/resp_metrics.def): the group, and each row's place in it. */
enum resp_metric_index {
#define METRIC(identifier, ...) RESP_METRIC_INDEX_##identifier,
#define HISTOGRAM(identifier, ...)
#include "proto/resp/resp_metrics.def"
#undef HISTOGRAM
#undef METRIC
};
enum resp_histogram_index {
#define METRIC(identifier, ...)
#define HISTOGRAM(identifier, ...) RESP_HISTOGRAM_INDEX_##identifier,
#include "proto/resp/resp_metrics.def"
#undef HISTOGRAM
#undef METRIC
    RESP_HISTOGRAM_INDEX_COUNT
};
extern struct metric_group resp_metrics;
/* The identifiers of resp's metric or histogram IDENTIFIER in the composed table. */
#define RESP_METRIC(identifier) metric_in_group(&resp_metrics, RESP_METRIC_INDEX_##identifier)
#define RESP_HISTOGRAM(identifier)                                                                 \
    histogram_in_group(&resp_metrics, RESP_HISTOGRAM_INDEX_##identifier)

struct access;
struct store;
struct stats;
struct resp_server;

/* What the protocol needs from the process around it. */
struct resp_environment {
    struct store *store;
    struct options *options;
    struct stats *stats;   /* INFO comes from here */
    struct access *access; /* users and rights (AUTH, ACL, NOPERM); never NULL */
    /* Asks the process to shut down (SHUTDOWN). Called on a worker thread. */
    void (*request_shutdown)(void *context);
    void *shutdown_context;
    /* Optional. With BEGIN, makes the calling session's worker the only one running any
     * connection's commands until it is called again without BEGIN (EXEC runs a
     * transaction between the two). HANDLE is the session's RESUME_HANDLE. Without it,
     * EXEC's commands may interleave with other connections' (tests, embedding). */
    void (*exclusive)(void *handle, bool begin);
};

/* Creates the protocol's shared state. Returns NULL if out of memory. */
struct resp_server *resp_server_create(const struct resp_environment *environment);

/* Frees it; every session must be closed first. */
void resp_server_destroy(struct resp_server *server);

/* Opens a session for a new connection. PEER_UID is the peer process's uid on the Unix
 * socket (SO_PEERCRED), or -1 elsewhere: a user whose uid: rule names it is the
 * session's user from the start (access_identify_peer()). Returns it, or NULL if out of
 * memory. A command that waits for a flash read stops the session taking input; when
 * the read ends (on the connection's worker thread) the session replies and calls
 * RESUME(HANDLE) so the network layer offers the rest again. Another session (CLIENT
 * KILL, MONITOR's output) calls WAKE(HANDLE), from any thread and with a lock held that
 * resp_session_close() takes, so that the connection's worker calls resp_session_woken();
 * WAKE may be NULL (nothing is woken then). */
void *resp_session_open(struct resp_server *server, uint64_t id, int fd, const char *peer,
                        const char *local, int64_t peer_uid, struct output_queue *output,
                        void (*resume)(void *handle), void (*wake)(void *handle), void *handle);

/* On the session's worker, after WAKE: moves the MONITOR lines other threads queued
 * into the output queue. Returns true when the connection is to be closed at once
 * (CLIENT KILL, or a MONITOR that fell too far behind). */
bool resp_session_woken(void *session);

/* Parses and executes the commands in DATA (see net_handler.data). Sets *CONSUMED.
 * Returns true when the connection should be closed once its output is sent. */
bool resp_session_data(void *session, const unsigned char *data, size_t length, size_t *consumed);

/* The direct-read hooks (see net_handler). */
bool resp_session_direct_target(void *session, unsigned char **buffer, size_t *length);
void resp_session_direct_filled(void *session, size_t length);

/* Closes a session and frees it. */
void resp_session_close(void *session);

/* The resp front end's row in the server's table (proto/frontend.h). */
struct frontend;
extern const struct frontend resp_frontend;

#endif
