/* The HTTP/1.1 front end: /metrics, /health, /info, the status page and /keys/.
 *
 * Built on strata's own event loop (see docs/dependencies.md for why not a library):
 * keep-alive and pipelined requests, Content-Length and chunked bodies received in
 * pieces (a value body is read straight into the block that will be stored), single
 * Range requests, and values sent by reference from the store without a copy.
 *
 * Like resp.h, this header does not depend on the network layer; the server wires
 * these functions to a net_handler. */
#ifndef STRATA_PROTO_HTTP_H
#define STRATA_PROTO_HTTP_H

#include "base/metrics.h"
#include "base/options.h"
#include "base/output_queue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* http's options (proto/http/http_options.def): the group, and each row's place in it. */
enum http_option_index {
#define OPTION(identifier, ...) HTTP_OPTION_INDEX_##identifier,
#include "proto/http/http_options.def"
#undef OPTION
};
extern struct option_group http_options;
/* The identifier of http's option IDENTIFIER in the composed table. */
#define HTTP_OPTION(identifier) option_in_group(&http_options, HTTP_OPTION_INDEX_##identifier)

/* http's metrics (proto/http/http_metrics.def): the group, and each row's place in it. */
enum http_metric_index {
#define METRIC(identifier, ...) HTTP_METRIC_INDEX_##identifier,
#define HISTOGRAM(identifier, ...)
#include "proto/http/http_metrics.def"
#undef HISTOGRAM
#undef METRIC
};
enum http_histogram_index {
#define METRIC(identifier, ...)
#define HISTOGRAM(identifier, ...) HTTP_HISTOGRAM_INDEX_##identifier,
#include "proto/http/http_metrics.def"
#undef HISTOGRAM
#undef METRIC
    HTTP_HISTOGRAM_INDEX_COUNT
};
extern struct metric_group http_metrics;
/* The identifiers of http's metric or histogram IDENTIFIER in the composed table. */
#define HTTP_METRIC(identifier) metric_in_group(&http_metrics, HTTP_METRIC_INDEX_##identifier)
#define HTTP_HISTOGRAM(identifier)                                                                 \
    histogram_in_group(&http_metrics, HTTP_HISTOGRAM_INDEX_##identifier)

struct access;
struct store;
struct stats;
struct http_server;

struct http_session;

/* A front end built on top of HTTP (the S3 API): it claims the requests that are its
 * own, and answers them with the functions of proto/http/http_internal.h. */
struct http_extension {
    /* Whether the request whose head was just parsed is the extension's. */
    bool (*claims)(void *state, struct http_session *session);
    /* Answers it, as the HTTP front end's own routes do. */
    void (*route)(void *state, struct http_session *session);
    void *state;
};

struct http_environment {
    const struct http_extension *extension; /* or NULL */
    /* Users and rights: /keys/ asks here (docs/security.md). NULL: no users, as with an
     * access object that has none (anyone may do everything with /keys/). */
    struct access *access;
    struct store *store;
    struct options *options; /* read live: limits and timeouts */
    struct stats *stats;     /* /metrics, /info, /health and the status page */
};

/* What a client refused at max-clients receives. */
extern const char http_refusal[];

/* Creates the front end's shared state. Returns NULL if out of memory. */
struct http_server *http_server_create(const struct http_environment *environment);
void http_server_destroy(struct http_server *server);

/* Opens a session for a new connection. Returns it, or NULL if out of memory. A GET of a
 * value on flash is answered when its read ends (on the connection's worker thread);
 * the session then calls RESUME(RESUME_HANDLE) so the network layer offers the input
 * that waited (pipelined requests keep their order). */
void *http_session_open(struct http_server *server, uint64_t id, const char *peer,
                        struct output_queue *output, void (*resume)(void *handle),
                        void *resume_handle);

/* Parses requests in DATA and queues the responses (see net_handler.data). Sets
 * *CONSUMED. Returns true when the connection should close once its output is sent. */
bool http_session_data(void *session, const unsigned char *data, size_t length, size_t *consumed);

/* The direct-read hooks: a request body is read straight into the value it becomes. */
bool http_session_direct_target(void *session, unsigned char **buffer, size_t *length);

/* True once the session has sent (queued) its last response and the connection should
 * close: a "Connection: close" request (or HTTP/1.0) answered after a flash read. */
bool http_session_wants_close(void *session);
void http_session_direct_filled(void *session, size_t length);

/* Enforces the header and idle timeouts; NOW_MS is the monotonic clock. Returns true
 * when the connection should close (after a 408 has been queued where one is due). */
bool http_session_tick(void *session, int64_t now_ms);

/* Closes a session and frees it, with any request body half received. */
void http_session_close(void *session);

/* The http front end's row in the server's table (proto/frontend.h). */
struct frontend;
extern const struct frontend http_frontend;

#endif
