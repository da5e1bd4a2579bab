/* The front-end contract: what a protocol (RESP, HTTP, the native protocol, the S3 API
 * to come) gives the server so that it can be set up, listened for and torn down
 * without the server or the network layer naming it.
 *
 * A front end lives in its own folder under src/proto/ and exports one
 * `const struct frontend NAME_frontend`; src/server/frontends.c lists them in one table.
 * Adding a front end is that folder plus one row there (docs/architecture.md). */
#ifndef STRATA_PROTO_FRONTEND_H
#define STRATA_PROTO_FRONTEND_H

#include "base/metrics.h"
#include "base/options.h"
#include "net/net.h"

struct access;
struct http_extension;
struct namespace_table;
struct objects;
struct stats;
struct store;

/* What every front end may use; the server fills it once and it outlives the front
 * ends. Nothing in it is owned by a front end. */
struct frontend_environment {
    struct store *store;                         /* the default namespace's store */
    struct namespace_table *namespaces;          /* every namespace, default included */
    struct objects *objects;                     /* buckets and durable objects */
    struct access *access;                       /* users, rights, credentials */
    const struct http_extension *http_extension; /* the S3 API, served on the HTTP port */
    struct options *options;                     /* read live; CONFIG SET may change numbers */
    struct stats *stats;                         /* INFO, /metrics, the life-cycle state */
    void (*request_shutdown)(void *context);     /* SHUTDOWN: asks the server to stop */
    void *shutdown_context;
};

struct frontend {
    const char *name; /* "resp", "http", "native": log lines (protocol=NAME) */
    /* Its options and metrics, declared beside it; the server composes them into the
     * one table before the command line is read. Either may be NULL. */
    struct option_group *options;
    struct metric_group *metrics;
    const char *port_option;     /* the name of its listening-port option ("http-port") */
    const char *info_port_field; /* INFO's server-section field for that port, or NULL */
    /* Served on --unix-socket as well: its connections there are told apart by their
     * first bytes (handler.sniff; the one front end without a sniff() takes the rest). */
    bool unix_socket;

    /* Creates the front end's server state from ENVIRONMENT (copied as needed).
     * Returns it, or NULL if out of memory. Start-up thread, before listening. */
    void *(*setup)(const struct frontend_environment *environment);
    /* Frees the state setup() returned, after the network layer has stopped. */
    void (*teardown)(void *state);
    /* Optional: writes into TEXT (SIZE bytes, NUL-terminated) the fields its
     * "event=listening" log line adds after the port (" namespaces=3"). */
    void (*listening_fields)(void *state, char *text, size_t size);

    /* The sessions: the network layer calls these with setup()'s state as the context
     * of open() (net/net.h states when and on which thread). The refusal for
     * max-clients is in here too. */
    struct net_handler handler;
};

#endif
