/* The native batched protocol (include/strata_protocol.h, docs/protocol.md): framed,
 * versioned, pipelined requests that carry many keys each, for KV-cache blocks and
 * other large values. Values keep a checksum and an optional fingerprint; chained
 * keys, pins and MATCH_PREFIX serve prefix lookups in one round trip; a client on the
 * same host may move values through a shared memory region.
 *
 * Like resp.h, this header does not depend on the network layer; the server wires
 * these functions to a net_handler. */
#ifndef STRATA_PROTO_NATIVE_H
#define STRATA_PROTO_NATIVE_H

#include "base/metrics.h"
#include "base/options.h"
#include "base/output_queue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* native's options (proto/native/native_options.def): the group, and each row's place in it. */
enum native_option_index {
#define OPTION(identifier, ...) NATIVE_OPTION_INDEX_##identifier,
#include "proto/native/native_options.def"
#undef OPTION
};
extern struct option_group native_options;
/* The identifier of native's option IDENTIFIER in the composed table. */
#define NATIVE_OPTION(identifier) option_in_group(&native_options, NATIVE_OPTION_INDEX_##identifier)

/* native's metrics (proto/native/native_metrics.def): the group, and each row's place in it. */
enum native_metric_index {
#define METRIC(identifier, ...) NATIVE_METRIC_INDEX_##identifier,
#define HISTOGRAM(identifier, ...)
#include "proto/native/native_metrics.def"
#undef HISTOGRAM
#undef METRIC
};
enum native_histogram_index {
#define METRIC(identifier, ...)
#define HISTOGRAM(identifier, ...) NATIVE_HISTOGRAM_INDEX_##identifier,
#include "proto/native/native_metrics.def"
#undef HISTOGRAM
#undef METRIC
    NATIVE_HISTOGRAM_INDEX_COUNT
};
extern struct metric_group native_metrics;
/* The identifiers of native's metric or histogram IDENTIFIER in the composed table. */
#define NATIVE_METRIC(identifier) metric_in_group(&native_metrics, NATIVE_METRIC_INDEX_##identifier)
#define NATIVE_HISTOGRAM(identifier)                                                               \
    histogram_in_group(&native_metrics, NATIVE_HISTOGRAM_INDEX_##identifier)

struct access;
struct namespace_table;
struct native_server;

struct native_environment {
    struct namespace_table *namespaces; /* not owned; fixed after start-up */
    struct options *options;            /* read live: max-request, max-value */
    struct access *access;              /* not owned: users and rights (access/access.h) */
};

/* Who is at the other end of a new connection. */
struct native_peer {
    const char *name; /* for logs and the failure throttle: "127.0.0.1:5", "unix:1234" */
    bool unix_socket; /* accepted on the Unix socket: may pass a shared memory descriptor */
    uint32_t uid;     /* with unix_socket: the peer process's user id (SO_PEERCRED) */
};

/* What a client refused at max-clients receives (a response frame with an error). */
extern const unsigned char native_refusal[];
#define NATIVE_REFUSAL_LENGTH (32 + 29) /* the frame header and status, the message */

/* Creates the front end's shared state. Returns NULL if out of memory. */
struct native_server *native_server_create(const struct native_environment *environment);
void native_server_destroy(struct native_server *server);

/* Opens a session for a new connection from PEER (borrowed for the call). The session
 * starts as the user whose uid: rule names PEER's uid if it came over the Unix socket
 * (access_identify_peer()), else as the user "default" if it needs no password;
 * otherwise it must send AUTH first. Returns it, or NULL if out of memory. A frame
 * whose GET entries read flash is answered when the reads end (on the connection's
 * worker thread); the session then calls RESUME(RESUME_HANDLE) so the network layer
 * offers the input that waited. Values sent from flash piece by piece call it too. */
void *native_session_open(struct native_server *server, uint64_t id, const struct native_peer *peer,
                          struct output_queue *output, void (*resume)(void *handle),
                          void *resume_handle);

/* Handles DATA (see net_handler.data). Sets *CONSUMED. Returns true when the connection
 * should be closed once its output is sent. */
bool native_session_data(void *session, const unsigned char *data, size_t length, size_t *consumed);

/* net_handler.descriptor: takes FD, a descriptor the client passed with SCM_RIGHTS on
 * the Unix socket, to be used by the next SHM_REGISTER frame (docs/protocol.md). A
 * session keeps one: a newer descriptor replaces (closes) an unused older one, and the
 * session closes it at the end. Returns true (it always takes FD over). */
bool native_session_descriptor(void *session, int fd);

/* The direct-read hooks (see net_handler): large values are read straight into the
 * block they will be stored in. */
bool native_session_direct_target(void *session, unsigned char **buffer, size_t *length);
void native_session_direct_filled(void *session, size_t length);

void native_session_close(void *session);

/* The header a native PUT stores in front of the value bytes (docs/protocol.md,
 * "Stored values"): 32 bytes. */
#define NATIVE_VALUE_HEADER_SIZE 32

/* The native front end's row in the server's table (proto/frontend.h). */
struct frontend;
extern const struct frontend native_frontend;

#endif
