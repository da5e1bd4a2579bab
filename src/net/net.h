/* The network layer: listeners, worker threads with one epoll event loop each, and
 * connections. It moves bytes and knows nothing of what they mean; a protocol plugs
 * in through struct net_handler.
 *
 * A connection lives on one worker for its whole life. All handler calls for a
 * connection happen on that worker's thread, one at a time. */
#ifndef STRATA_NET_NET_H
#define STRATA_NET_NET_H

#include "base/metrics.h"
#include "base/options.h"
#include "base/output_queue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* net's options (net/net_options.def): the group, and each row's place in it. */
enum net_option_index {
#define OPTION(identifier, ...) NET_OPTION_INDEX_##identifier,
#include "net/net_options.def"
#undef OPTION
};
extern struct option_group net_options;
/* The identifier of net's option IDENTIFIER in the composed table. */
#define NET_OPTION(identifier) option_in_group(&net_options, NET_OPTION_INDEX_##identifier)

/* net's metrics (net/net_metrics.def): the group, and each row's place in it. */
enum net_metric_index {
#define METRIC(identifier, ...) NET_METRIC_INDEX_##identifier,
#define HISTOGRAM(identifier, ...)
#include "net/net_metrics.def"
#undef HISTOGRAM
#undef METRIC
};
enum net_histogram_index {
#define METRIC(identifier, ...)
#define HISTOGRAM(identifier, ...) NET_HISTOGRAM_INDEX_##identifier,
#include "net/net_metrics.def"
#undef HISTOGRAM
#undef METRIC
    NET_HISTOGRAM_INDEX_COUNT
};
extern struct metric_group net_metrics;
/* The identifiers of net's metric or histogram IDENTIFIER in the composed table. */
#define NET_METRIC(identifier)    metric_in_group(&net_metrics, NET_METRIC_INDEX_##identifier)
#define NET_HISTOGRAM(identifier) histogram_in_group(&net_metrics, NET_HISTOGRAM_INDEX_##identifier)

struct net_server;

struct net_connection;

/* What a protocol learns about a new connection. */
struct net_connection_info {
    struct net_connection *connection; /* for net_connection_resume() */
    uint64_t id;                       /* unique in this process, from 1 */
    int fd;
    char peer[64];           /* "127.0.0.1:54321" or "[::1]:54321"; "unix:PID" on the Unix socket */
    char local[64];          /* the listening side, same form; "unix" on the Unix socket */
    bool tls;                /* the connection came through a TLS listener; open() is called once
                                its handshake has finished */
    char tls_peer_name[128]; /* the subject CN of the client certificate OpenSSL verified
                                against --tls-ca; empty when none was sent or TLS is off */
    /* Accepted on the Unix socket (net_server_listen_unix(); never TLS): the peer
     * process's credentials as the kernel saw them at connect (SO_PEERCRED). */
    bool unix_socket;
    pid_t peer_pid;
    uid_t peer_uid;
    gid_t peer_gid;
};

/* What a protocol says of a connection's first bytes (net_handler.sniff). */
enum net_sniff {
    NET_SNIFF_NO = 0, /* not this protocol */
    NET_SNIFF_YES,    /* this protocol */
    NET_SNIFF_MORE,   /* cannot tell yet: offer more bytes (at most NET_SNIFF_MAX) */
};
#define NET_SNIFF_MAX 8

/* Most descriptors one read of a Unix connection takes (SCM_RIGHTS); more in one
 * message closes the connection. */
#define NET_DESCRIPTORS_MAX 4

enum net_action {
    NET_CONTINUE = 0, /* keep going */
    NET_CLOSE,        /* send what is queued, then close */
};

struct net_handler {
    /* A connection was accepted. Returns the protocol's session, or NULL to close it.
     * The session appends replies to OUTPUT, which stays valid until close(). */
    void *(*open)(void *context, const struct net_connection_info *info,
                  struct output_queue *output);

    /* Offers LENGTH bytes read from the connection; the handler sets *CONSUMED. If it
     * consumes fewer, the connection stops reading, keeps the rest, and offers it
     * again after some queued output has been sent (this is how a client that does
     * not read its replies is slowed down rather than buffered without bound). */
    enum net_action (*data)(void *session, const unsigned char *data, size_t length,
                            size_t *consumed);

    /* Optional. Returns true and a buffer when the next bytes should be read
     * straight into it (the body of a large value); direct_filled() then reports how
     * many bytes arrived there. */
    bool (*direct_target)(void *session, unsigned char **buffer, size_t *length);
    void (*direct_filled)(void *session, size_t length);

    /* Optional. Called about once a second for every connection with the monotonic
     * clock in milliseconds; returning NET_CLOSE closes the connection after its
     * queued output is sent (idle and slow-client timeouts). */
    enum net_action (*tick)(void *session, int64_t now_ms);

    /* Optional. True when the session has answered its last request (a request that
     * asked for the connection to close) and the connection should close once its output is sent.
     * Asked when a protocol that stopped taking input resumes the connection: the
     * answer came after data() returned, so data() could not say NET_CLOSE. */
    bool (*wants_close)(void *session);

    /* Optional. Called on the connection's worker after net_connection_wake() (from any
     * thread): returns true to close the connection at once, dropping its unsent output
     * (CLIENT KILL, a MONITOR past its limit); false to send what the session queued
     * meanwhile and go on. It is a handler call: a net_connection_resume() from inside it
     * is served once it returns. */
    bool (*woken)(void *session);

    /* The connection is closing; free the session. */
    void (*close)(void *session);

    /* Optional, for a socket that serves several protocols (the Unix socket): whether
     * the first LENGTH bytes of a connection (1 to NET_SNIFF_MAX, borrowed) are this
     * protocol's. Called before open(), on the connection's worker thread. */
    enum net_sniff (*sniff)(const unsigned char *data, size_t length);

    /* Optional: a descriptor FD the peer passed with SCM_RIGHTS on the Unix socket,
     * offered before the bytes of the read it came with (the kernel attaches it to the
     * first byte of the peer's sendmsg(); it arrives with that byte or before it).
     * Returns true when the session takes FD over (and closes it when done); false,
     * or no descriptor(): the network layer closes it. FD is close-on-exec. */
    bool (*descriptor)(void *session, int fd);

    /* Bytes written to a connection refused because max-clients is reached, in the
     * protocol's own words (an error reply, a "503 Service Unavailable"). May be NULL. */
    const char *refusal;
    size_t refusal_length; /* bytes of refusal; 0: it is a C string */
};

struct net_config {
    const char *bind;        /* addresses, separated by spaces or commas */
    int threads;             /* worker threads, at least 1 */
    struct options *options; /* read live: max-clients, client-output-limit */
};

/* A protocol that stopped taking input (its data() consumed less, waiting for something
 * other than the client, such as a flash read) calls this when it can go on: queued
 * output is sent, the handler's wants_close() asked, and kept input offered again.
 * Only on the connection's worker thread (a completion callback of the worker's
 * io_ring, a stream's source). Called from inside a handler call or a send for the
 * same connection, it is remembered and done when that returns. The connection may
 * be closed before it returns: call it last.
 *
 * Each worker thread owns an io_ring (base/io_ring.h), set as the thread's current
 * ring; its completions are delivered by the worker's event loop. */
void net_connection_resume(struct net_connection *connection);

/* net_connection_resume() in the shape a protocol's session takes as its resume callback
 * (void (*)(void *handle), with the connection as the handle). */
void net_resume_callback(void *connection);

/* With BEGIN, called on CONNECTION's worker from inside a handler call: waits until
 * every other worker is between batches of events and keeps them there; what the caller
 * does until it calls this again without BEGIN (before its handler call returns)
 * interleaves with no other connection's handler, on any protocol (MULTI/EXEC). Not
 * nested. Other workers' batches are short, but one may wait for flash pacing (up to
 * pace-timeout), DEBUG SLEEP or a password check: the wait is as long as the longest
 * batch under way, and the workers that finish theirs wait too (writers are preferred),
 * so every connection waits with it. */
void net_exclusive_callback(void *connection, bool begin);

/* Asks CONNECTION's worker to call its handler's woken() soon (output another thread
 * produced for it, or an order to close). Safe from any thread, but only while the
 * connection is open: the caller must know that the handler's close() has not returned
 * for its session, for instance by holding a lock that close() also takes. Wakes that
 * come before the worker gets to it make one woken() call. The worker's wake lock it
 * takes is held for a few pointer moves and nothing is taken under it, so the caller
 * may hold any lock of its own. */
void net_connection_wake(struct net_connection *connection);

/* net_connection_wake() in the shape a protocol takes as a callback. */
void net_wake_callback(void *connection);

/* Creates a server with no listeners yet. Returns NULL with a reason in ERROR. */
struct net_server *net_server_create(const struct net_config *config, char *error,
                                     size_t error_size);

/* Listens on PORT (0: any free port) at every bind address, and hands the connections
 * accepted there to HANDLER with CONTEXT. With TLS configured (--tls-cert, --tls-key)
 * these TCP listeners speak TLS only, and the handler sees decrypted bytes. Call before
 * net_server_start(); the handler is copied. All protocols share the worker threads and
 * max-clients. Returns the port bound, or -1 with a reason in ERROR. */
int net_server_listen(struct net_server *server, int port, const struct net_handler *handler,
                      void *context, char *error, size_t error_size);

/* Most protocols one Unix socket serves. */
#define NET_UNIX_PROTOCOLS_MAX 8

/* Listens on the Unix-domain socket PATH, whose file gets permissions MODE (0660), and
 * serves COUNT protocols there, HANDLERS[i] with CONTEXTS[i] (handlers copied): the
 * first bytes of a new connection are offered to each handler's sniff() in order, and
 * the first to say yes opens it (a handler without sniff() says yes to anything: put it
 * last; bytes no protocol claims close the connection). A file left at PATH by an
 * earlier run is removed first if it is a socket nobody listens on; the socket file is
 * removed by net_server_destroy(). Connections there share the workers and max-clients
 * with the ports (one refused at max-clients hears the last handler's refusal), are
 * never TLS, and may pass descriptors (net_handler.descriptor). Call before
 * net_server_start(), on the start-up thread. Returns 0, or -1 with a reason in ERROR. */
int net_server_listen_unix(struct net_server *server, const char *path, unsigned mode,
                           const struct net_handler *const *handlers, void *const *contexts,
                           int count, char *error, size_t error_size);

/* Starts the worker threads. Returns 0, or -1 with a reason in ERROR. */
int net_server_start(struct net_server *server, char *error, size_t error_size);

/* Reads the TLS certificate, key and CA files again (SIGHUP): connections accepted
 * from now on use them, open ones keep theirs. Returns 0 (also when TLS is off), or -1
 * with the reason in ERROR, the files in use staying as they were. Any thread. */
int net_server_reload_tls(struct net_server *server, char *error, size_t error_size);

/* Whether TCP listeners speak TLS (--tls-cert and --tls-key were given). */
bool net_server_tls(const struct net_server *server);

/* Stops the workers, closes every connection and joins the threads. */
void net_server_stop(struct net_server *server);

/* Closes the listeners and frees the server (after net_server_stop()). */
void net_server_destroy(struct net_server *server);

#endif
