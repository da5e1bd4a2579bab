/* Listeners, worker event loops and connections (see net.h).
 *
 * Every worker adds every listening socket to its own epoll set with EPOLLEXCLUSIVE,
 * so one worker wakes per incoming connection and accepts it; the connection then
 * stays on that worker. Connection sockets are level-triggered: EPOLLIN while the
 * protocol accepts input, EPOLLOUT only while output is waiting on a full socket. */
#include "net/net.h"
#include "net/tls.h"

#include "base/io_ring.h"

#include "base/checks.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const struct option_definition net_option_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "net/net_options.def"
#undef OPTION
};

struct option_group net_options = {
    .title = "Network",
    .definitions = net_option_definitions,
    .count = sizeof(net_option_definitions) / sizeof(net_option_definitions[0]),
    .validate = tls_options_validate,
};

static const struct metric_definition net_metric_definitions[] = {
#define METRIC METRIC_DEFINITION
#define HISTOGRAM(...)
#include "net/net_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, METRIC_COUNTER, NULL},
};

static const struct histogram_definition net_histogram_definitions[] = {
#define METRIC(...)
#define HISTOGRAM HISTOGRAM_DEFINITION
#include "net/net_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, NULL, NULL, NULL, NULL},
};

struct metric_group net_metrics = {
    .name = "net",
    .metrics = net_metric_definitions,
    .histograms = net_histogram_definitions,
};

#define MAX_LISTENERS 32
/* How often every connection's tick() runs, in milliseconds. */
#define TICK_INTERVAL_MS 1000
#define READ_BUFFER      (256 * 1024)
#define EVENTS_PER_WAIT  256
#define ACCEPTS_PER_WAKE 64
/* Reads per readable event before other connections get a turn. */
#define READS_PER_EVENT 16
/* A direct read into a value block is worth its own system call, and the kernel's
 * writing into fresh value memory, from this much of the value on; below it the bytes
 * go through the worker's read buffer and are copied (docs/performance.md: 64 KiB SETs
 * ran at 1.5 GB/s read directly, 2.5 GB/s copied). */
#define DIRECT_READ_MINIMUM (512 * 1024)
#define WRITE_IOVECS        64
/* Failed TLS handshakes logged per second and worker; the rest are counted in one line. */
#define HANDSHAKE_FAILURE_LOGS_PER_SECOND 5

enum tag_kind { TAG_LISTENER, TAG_WAKE, TAG_CONNECTION, TAG_RING };

struct tag {
    enum tag_kind kind;
};

/* One protocol served by the network layer: its handler and where it listens. */
/* One net_server_listen() call: a handler and the port its listeners share. Allocated
 * one by one (listeners point at them), freed by net_server_destroy(). */
struct protocol {
    struct net_handler handler;
    void *context;
    int port;
    struct protocol *next;
};

struct listener {
    struct tag tag;
    int fd;
    struct protocol *protocol; /* NULL on the Unix socket: the first bytes choose */
    bool tls; /* its connections speak TLS (a TCP listener while TLS is configured) */
    char address[64];
    /* The Unix socket (net_server_listen_unix()): the protocols its connections may
     * speak, in the order they are asked, and its file, removed at the end if still
     * the one bound (same device and inode). */
    struct protocol *choices[NET_UNIX_PROTOCOLS_MAX];
    int choice_count;
    char *path;
    dev_t device;
    ino_t inode;
};

struct worker;

struct connection {
    struct tag tag;
    struct connection *previous;
    struct connection *next;
    struct worker *worker;
    const struct protocol *protocol;
    int fd;
    void *session;
    struct output_queue output;
    unsigned char *leftover; /* input the protocol has not taken yet (reading pauses) */
    size_t leftover_length;
    uint32_t events;     /* the epoll interest registered now */
    bool closing;        /* close once the output is sent */
    int busy;            /* inside service() or a handler call: resume only marks */
    bool resume_pending; /* net_connection_resume() was called while busy */
    /* TLS (NULL ssl: a plain connection, and none of the rest is used). */
    SSL *ssl;
    struct net_connection_info *handshake_info; /* until the handshake ends: what open()
                                                   will be told; NULL after */
    int64_t handshake_deadline_ms;
    bool tls_failed;         /* a fatal TLS error: no close_notify */
    bool tls_read_wants_out; /* SSL_read asked for writability */
    bool tls_write_wants_in; /* SSL_write asked for readability */
    bool tls_ready;          /* on the worker's ready list (OpenSSL holds unread input) */
    struct connection *ready_next;
    struct connection *ready_previous;
    /* A connection of the Unix socket: read with recvmsg() for descriptors; until its
     * first bytes choose a protocol (protocol and session NULL), those bytes and any
     * descriptors wait here. */
    bool unix_socket;
    const struct listener *sniffing;
    unsigned char sniffed[NET_SNIFF_MAX];
    size_t sniffed_length;
    int held[NET_DESCRIPTORS_MAX];
    int held_count;
    pid_t peer_pid;
    uid_t peer_uid;
    gid_t peer_gid;
    /* On its worker's list of connections to wake (net_connection_wake()); these three
     * are under the worker's wake_lock. */
    bool wake_queued;
    struct connection *wake_next;
    struct connection *wake_previous;
};

struct worker {
    struct tag wake_tag;
    _Atomic uint64_t thread_check; /* check_thread() of its thread (checking builds) */
    struct tag ring_tag;
    struct io_ring *ring; /* flash reads of this worker's connections */
    struct net_server *server;
    pthread_t thread;
    bool started;
    int index;
    int epoll_fd;
    int wake_fd;
    unsigned char *read_buffer;
    unsigned char *tls_gather; /* TLS_RECORD_SIZE bytes: small replies gathered into a record */
    struct connection *connections;
    struct connection *ready; /* TLS connections with input inside OpenSSL, to read again */
    int64_t next_tick_ms;
    int64_t failure_log_second; /* rate limit of the failed-handshake log lines */
    int failures_logged;
    int failures_unlogged;
    /* Connections that other threads asked to wake, oldest first (net_connection_wake());
     * a leaf lock: nothing else is taken while it is held. */
    pthread_mutex_t wake_lock;
    struct check_owner wake_owner;
    bool wake_lock_ready;
    struct connection *woken_first;
    struct connection *woken_last;
};

struct net_server {
    struct options *options;
    char *bind;
    struct protocol *protocols; /* every net_server_listen(), newest first */
    bool ticks;                 /* some protocol has a tick(): workers wake once a second for it */
    struct listener listeners[MAX_LISTENERS];
    int listener_count;
    int worker_count;
    struct worker *workers;
    _Atomic bool stopping;
    /* Held shared by every worker while it handles a batch of events (not while it waits
     * in epoll_wait), and exclusively by one between net_exclusive_callback() calls: a
     * transaction's commands then interleave with no other connection's (MULTI/EXEC).
     * Writers are preferred, so a stream of batches cannot starve the exclusive one. */
    pthread_rwlock_t work_lock;
    _Atomic uint64_t connections;
    _Atomic uint64_t next_connection_id;
    int reserve_fd;         /* kept open to accept-and-close when out of descriptors */
    struct tls_server *tls; /* NULL: TLS is off */
};

/* The rule "every handler call for a connection happens on its worker's thread". */
#define ASSERT_ON_WORKER(connection)                                                               \
    STRATA_ASSERT(atomic_load_explicit(&(connection)->worker->thread_check,                        \
                                       memory_order_relaxed) == check_thread())

/* ---- listening ---------------------------------------------------------------- */

/* Formats ADDRESS as "ip:port" or "[ip]:port". */
static void format_address(const struct sockaddr *address, char *output, size_t output_size) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *ipv4 = (const struct sockaddr_in *)address;
        inet_ntop(AF_INET, &ipv4->sin_addr, host, sizeof(host));
        port = ntohs(ipv4->sin_port);
        snprintf(output, output_size, "%s:%d", host, port);
    } else if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *ipv6 = (const struct sockaddr_in6 *)address;
        inet_ntop(AF_INET6, &ipv6->sin6_addr, host, sizeof(host));
        port = ntohs(ipv6->sin6_port);
        snprintf(output, output_size, "[%s]:%d", host, port);
    } else {
        snprintf(output, output_size, "unix");
    }
}

/* Opens a listening socket on HOST:PORT. Returns the descriptor, or -1 with ERROR. */
static int open_listener(const char *host, int port, char *error, size_t error_size) {
    char port_text[16];
    snprintf(port_text, sizeof(port_text), "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo *results = NULL;
    int status = getaddrinfo(host, port_text, &hints, &results);
    if (status != 0) {
        snprintf(error, error_size, "cannot resolve bind address '%s': %s", host,
                 gai_strerror(status));
        return -1;
    }
    int fd = socket(results->ai_family, results->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    results->ai_protocol);
    if (fd < 0) {
        snprintf(error, error_size, "socket: %s", strerror(errno));
        freeaddrinfo(results);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (results->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, results->ai_addr, results->ai_addrlen) != 0 || listen(fd, 511) != 0) {
        snprintf(error, error_size, "cannot listen on %s port %d: %s", host, port, strerror(errno));
        close(fd);
        freeaddrinfo(results);
        return -1;
    }
    freeaddrinfo(results);
    return fd;
}

/* The port a socket is bound to. */
static int bound_port(int fd) {
    struct sockaddr_storage address;
    socklen_t length = sizeof(address);
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) return -1;
    if (address.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&address)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
}

struct net_server *net_server_create(const struct net_config *config, char *error,
                                     size_t error_size) {
    struct net_server *server = calloc(1, sizeof(*server));
    if (server == NULL || (server->bind = strdup(config->bind)) == NULL) {
        free(server);
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    server->options = config->options;
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&server->work_lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    server->worker_count = config->threads > 0 ? config->threads : 1;
    server->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    atomic_init(&server->next_connection_id, 1);
    if (tls_server_create(config->options, &server->tls, error, error_size) != 0) {
        close(server->reserve_fd);
        free(server->bind);
        free(server);
        return NULL;
    }
    /* The workers wake once a second to close handshakes that take too long. */
    if (server->tls != NULL) server->ticks = true;
    return server;
}

int net_server_reload_tls(struct net_server *server, char *error, size_t error_size) {
    if (server->tls == NULL) return 0;
    return tls_server_reload(server->tls, error, error_size);
}

bool net_server_tls(const struct net_server *server) {
    return server->tls != NULL;
}

/* A new protocol of SERVER: HANDLER (copied) with CONTEXT, on PORT (-1: the Unix
 * socket). It is freed with the server, even if the caller then fails. Returns NULL with
 * a reason in ERROR if out of memory. */
static struct protocol *protocol_add(struct net_server *server, const struct net_handler *handler,
                                     void *context, int port, char *error, size_t error_size) {
    struct protocol *protocol = calloc(1, sizeof(*protocol));
    if (protocol == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    protocol->next = server->protocols;
    server->protocols = protocol;
    protocol->handler = *handler;
    protocol->context = context;
    protocol->port = port;
    if (handler->tick != NULL) server->ticks = true;
    return protocol;
}

int net_server_listen(struct net_server *server, int port, const struct net_handler *handler,
                      void *context, char *error, size_t error_size) {
    struct protocol *protocol = protocol_add(server, handler, context, port, error, error_size);
    if (protocol == NULL) return -1;
    int first_listener = server->listener_count;
    char *addresses = strdup(server->bind);
    if (addresses == NULL) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    char *saved = NULL;
    for (char *host = strtok_r(addresses, " ,", &saved); host != NULL;
         host = strtok_r(NULL, " ,", &saved)) {
        if (server->listener_count == MAX_LISTENERS) {
            snprintf(error, error_size, "too many bind addresses (at most %d)", MAX_LISTENERS);
            goto fail;
        }
        int fd = open_listener(host, protocol->port, error, error_size);
        if (fd < 0) goto fail;
        /* With port 0 the first listener picks the port and the others share it. */
        if (protocol->port == 0) protocol->port = bound_port(fd);
        struct listener *listener = &server->listeners[server->listener_count++];
        listener->tag.kind = TAG_LISTENER;
        listener->fd = fd;
        listener->protocol = protocol;
        listener->tls = server->tls != NULL;
        snprintf(listener->address, sizeof(listener->address), "%s", host);
    }
    free(addresses);
    if (server->listener_count == first_listener) {
        snprintf(error, error_size, "no bind address given");
        return -1;
    }
    return protocol->port;

fail:
    free(addresses);
    while (server->listener_count > first_listener)
        close(server->listeners[--server->listener_count].fd);
    return -1;
}

/* ---- connections -------------------------------------------------------------- */

/* Puts a TLS CONNECTION on its worker's ready list: OpenSSL holds input that epoll will
 * not report (it left the socket already), so the worker reads it after this round. */
static void ready_add(struct connection *connection) {
    if (connection->tls_ready) return;
    struct worker *worker = connection->worker;
    connection->tls_ready = true;
    connection->ready_previous = NULL;
    connection->ready_next = worker->ready;
    if (worker->ready != NULL) worker->ready->ready_previous = connection;
    worker->ready = connection;
}

/* Takes CONNECTION off its worker's ready list, if it is on it. */
static void ready_remove(struct connection *connection) {
    if (!connection->tls_ready) return;
    if (connection->ready_previous != NULL) {
        connection->ready_previous->ready_next = connection->ready_next;
    } else {
        connection->worker->ready = connection->ready_next;
    }
    if (connection->ready_next != NULL)
        connection->ready_next->ready_previous = connection->ready_previous;
    connection->tls_ready = false;
    connection->ready_next = NULL;
    connection->ready_previous = NULL;
}

static void set_interest(struct connection *connection, uint32_t events) {
    if (connection->events == events) return;
    struct epoll_event event = {.events = events, .data.ptr = &connection->tag};
    epoll_ctl(connection->worker->epoll_fd, EPOLL_CTL_MOD, connection->fd, &event);
    connection->events = events;
}

/* The worker's wake_lock, with its owner tracked in the checking builds. */
static void wake_lock(struct worker *worker) {
    pthread_mutex_lock(&worker->wake_lock);
    check_acquired(&worker->wake_owner);
}

static void wake_unlock(struct worker *worker) {
    check_releasing(&worker->wake_owner);
    pthread_mutex_unlock(&worker->wake_lock);
}

/* Takes CONNECTION off its worker's wake list, if it is on it. The caller holds the
 * worker's wake_lock. */
static void wake_unlink(struct connection *connection) {
    struct worker *worker = connection->worker;
    STRATA_ASSERT(check_held(&worker->wake_owner));
    if (!connection->wake_queued) return;
    if (connection->wake_previous != NULL) {
        connection->wake_previous->wake_next = connection->wake_next;
    } else {
        worker->woken_first = connection->wake_next;
    }
    if (connection->wake_next != NULL) {
        connection->wake_next->wake_previous = connection->wake_previous;
    } else {
        worker->woken_last = connection->wake_previous;
    }
    connection->wake_queued = false;
    connection->wake_next = NULL;
    connection->wake_previous = NULL;
}

/* Forgets a wake asked for CONNECTION, whose session is closed (nobody may ask again),
 * before it is freed. On its worker. */
static void wake_forget(struct connection *connection) {
    struct worker *worker = connection->worker;
    if (!worker->wake_lock_ready) return;
    wake_lock(worker);
    wake_unlink(connection);
    wake_unlock(worker);
}

static void close_connection(struct connection *connection) {
    struct worker *worker = connection->worker;
    struct net_server *server = worker->server;
    epoll_ctl(worker->epoll_fd, EPOLL_CTL_DEL, connection->fd, NULL);
    if (connection->ssl != NULL) {
        ready_remove(connection);
        tls_session_free(connection->ssl, connection->tls_failed); /* before the close */
        free(connection->handshake_info);
    }
    close(connection->fd);
    /* A TLS connection whose handshake did not finish has no session. */
    if (connection->session != NULL) connection->protocol->handler.close(connection->session);
    wake_forget(connection);
    for (int i = 0; i < connection->held_count; i++)
        close(connection->held[i]);
    output_queue_clear(&connection->output);
    free(connection->leftover);
    if (connection->previous != NULL) {
        connection->previous->next = connection->next;
    } else {
        worker->connections = connection->next;
    }
    if (connection->next != NULL) connection->next->previous = connection->previous;
    free(connection);
    atomic_fetch_sub_explicit(&server->connections, 1, memory_order_relaxed);
    metric_add(NET_METRIC(clients_connected), -1);
}

/* Offers LENGTH bytes at DATA to the protocol and sets *CONSUMED. This is the one place
 * input reaches the protocol, so the checks on what it queued in reply live here.
 * Returns false if the connection must close now: the reply queue could not grow, or
 * it passed client-output-limit. */
static bool offer(struct connection *connection, const unsigned char *data, size_t length,
                  size_t *consumed) {
    struct net_server *server = connection->worker->server;
    *consumed = 0;
    if (connection->protocol->handler.data(connection->session, data, length, consumed) ==
        NET_CLOSE) {
        connection->closing = true;
        *consumed = length; /* anything after the close is dropped */
    }
    if (connection->output.failed) return false;
    int64_t limit = options_number(server->options, NET_OPTION(client_output_limit));
    if (limit > 0 && output_queue_copied(&connection->output) > (size_t)limit) {
        log_event(LOG_WARNING, "client_output_limit", "fd=%d copied=%zu limit=%lld", connection->fd,
                  output_queue_copied(&connection->output), (long long)limit);
        metric_add(NET_METRIC(output_limit_disconnects), 1);
        return false;
    }
    return true;
}

/* Offers freshly read bytes; keeps what the protocol did not take for later. Returns
 * false if the connection must close now. */
static bool deliver(struct connection *connection, const unsigned char *data, size_t length) {
    size_t consumed;
    if (!offer(connection, data, length, &consumed)) return false;
    size_t rest = length - consumed;
    if (rest == 0) return true;
    unsigned char *kept = realloc(connection->leftover, rest);
    if (kept == NULL) return false;
    memcpy(kept, data + consumed, rest);
    connection->leftover = kept;
    connection->leftover_length = rest;
    return true;
}

/* Offers the kept bytes again. Returns false if the connection must close now. */
static bool retry_leftover(struct connection *connection) {
    size_t consumed;
    if (!offer(connection, connection->leftover, connection->leftover_length, &consumed)) {
        return false;
    }
    connection->leftover_length -= consumed;
    if (connection->leftover_length == 0) {
        free(connection->leftover);
        connection->leftover = NULL;
    } else {
        memmove(connection->leftover, connection->leftover + consumed, connection->leftover_length);
    }
    return true;
}

/* writev(2) of COUNT IOVECS for CONNECTION, or, on a TLS connection, SSL_write: small
 * pieces at the front (pipelined replies) are gathered into one record of up to
 * TLS_RECORD_SIZE bytes in the worker's buffer, and a piece of a record or more (a value
 * sent by reference, a stream's piece) goes to SSL_write where it lies. After a WANT_*
 * the next call rebuilds the same front of the queue (nothing was consumed, and it only
 * grows), so OpenSSL's retry sees the same bytes (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
 * lets them come from another address). Returns as writev(2) does: -1 with EAGAIN to
 * wait for an event (the TLS direction to wait for is noted on the connection). */
static ssize_t connection_write(struct connection *connection, const struct iovec *iovecs,
                                int count) {
    if (connection->ssl == NULL) return writev(connection->fd, iovecs, count);
    const void *data = iovecs[0].iov_base;
    size_t length = iovecs[0].iov_len;
    if (length < TLS_RECORD_SIZE && count > 1) {
        unsigned char *gather = connection->worker->tls_gather;
        length = 0;
        for (int i = 0; i < count && length < TLS_RECORD_SIZE; i++) {
            size_t take = iovecs[i].iov_len;
            if (take > TLS_RECORD_SIZE - length) take = TLS_RECORD_SIZE - length;
            memcpy(gather + length, iovecs[i].iov_base, take);
            length += take;
        }
        data = gather;
    }
    size_t written = 0;
    switch (tls_write(connection->ssl, data, length, &written)) {
    case TLS_OK:
        return (ssize_t)written;
    case TLS_WANT_READ:
        connection->tls_write_wants_in = true;
        errno = EAGAIN;
        return -1;
    case TLS_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    default:
        connection->tls_failed = true;
        errno = EPROTO;
        return -1;
    }
}

/* Writes queued output until done, the socket is full or the queue waits for a stream's
 * source. Returns false if the connection must close now (a write error). Sets *BLOCKED
 * when the socket is full, *WAITING when a stream's next piece has not come yet. */
static bool write_output(struct connection *connection, bool *blocked, bool *waiting) {
    *blocked = false;
    *waiting = false;
    connection->tls_write_wants_in = false; /* set again by a write that must read first */
    struct iovec iovecs[WRITE_IOVECS];
    while (output_queue_pending(&connection->output) > 0) {
        int count = output_queue_iovecs(&connection->output, iovecs, WRITE_IOVECS);
        if (count == 0) {
            /* Waiting for a stream's next piece; it resumes the connection. A finished
             * stream at the front may still have to leave the queue. */
            output_queue_consume(&connection->output, 0);
            if (output_queue_iovecs(&connection->output, iovecs, WRITE_IOVECS) == 0) {
                *waiting = true;
                break;
            }
            continue;
        }
        ssize_t written = connection_write(connection, iovecs, count);
        if (written > 0) {
            output_queue_consume(&connection->output, (size_t)written);
            metric_add(NET_METRIC(net_output_bytes), written);
            continue;
        }
        if (written < 0 && errno == EINTR) continue;
        if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            *blocked = true;
            return true;
        }
        return false;
    }
    return true;
}

/* The epoll interest a TLS connection adds to (or takes from) EVENTS: OpenSSL may need
 * the other direction than the call that waits (a read that must write, a write that
 * must read). Input already inside OpenSSL puts it on the ready list. */
static uint32_t tls_interest(struct connection *connection, uint32_t events) {
    if (connection->tls_write_wants_in) {
        events |= EPOLLIN;
        events &= ~(uint32_t)EPOLLOUT; /* level-triggered: writable is no news to it */
    }
    if (connection->tls_read_wants_out && !connection->closing) events |= EPOLLOUT;
    if ((events & EPOLLIN) && connection->leftover_length == 0 && !connection->closing &&
        tls_has_pending(connection->ssl)) {
        ready_add(connection);
    }
    return events;
}

static ssize_t unix_receive(struct connection *connection, void *buffer, size_t length);

/* Reads up to LENGTH bytes from CONNECTION into BUFFER: read(2) on a plain connection,
 * SSL_read on a TLS one, recvmsg() on the Unix socket (which also takes the descriptors
 * that came along). Returns as read(2) does (-1 with EAGAIN: wait for an event). */
static inline ssize_t connection_read(struct connection *connection, void *buffer, size_t length) {
    if (connection->unix_socket) return unix_receive(connection, buffer, length);
    if (connection->ssl == NULL) return read(connection->fd, buffer, length);
    size_t got = 0;
    connection->tls_read_wants_out = false;
    switch (tls_read(connection->ssl, buffer, length, &got)) {
    case TLS_OK:
        return (ssize_t)got;
    case TLS_WANT_WRITE:
        connection->tls_read_wants_out = true;
        errno = EAGAIN;
        return -1;
    case TLS_WANT_READ:
        errno = EAGAIN;
        return -1;
    case TLS_CLOSED:
        return 0;
    default:
        connection->tls_failed = true;
        errno = EPROTO;
        return -1;
    }
}

/* Brings a connection up to date after input, writability or a resume: sends output,
 * re-offers kept input while output drains, and sets the epoll interest. Closes the
 * connection if needed (a write error, a failed output queue, or closing with nothing
 * left to send); returns false when it did. Not re-entered for one connection: a resume
 * from inside (a stream's source, a release) is remembered and served by the loop. */
static bool service(struct connection *connection) {
    ASSERT_ON_WORKER(connection);
    connection->busy++;
    bool blocked = false, waiting = false;
    for (int round = 0; round < 64; round++) {
        connection->resume_pending = false;
        bool written = write_output(connection, &blocked, &waiting);
        if (!written || connection->output.failed) {
            close_connection(connection);
            return false;
        }
        if (blocked) break;
        const struct net_handler *handler = &connection->protocol->handler;
        if (!connection->closing && handler->wants_close != NULL &&
            handler->wants_close(connection->session)) {
            connection->closing = true;
            free(connection->leftover); /* anything after the close is dropped */
            connection->leftover = NULL;
            connection->leftover_length = 0;
            continue; /* sends what is left, then closes */
        }
        if (connection->closing) {
            if (output_queue_pending(&connection->output) == 0) {
                close_connection(connection);
                return false;
            }
            break; /* a stream still has to come: it resumes the connection */
        }
        if (connection->leftover_length > 0) {
            size_t before = connection->leftover_length;
            if (!retry_leftover(connection)) {
                close_connection(connection);
                return false;
            }
            if (connection->leftover_length != before || connection->resume_pending) continue;
            /* It takes nothing now: more output may make it (once sent), but not while
             * a stream's next piece has not come (the stream resumes the connection). */
            if (output_queue_pending(&connection->output) == 0 || waiting) break;
            continue;
        }
        if (!connection->resume_pending) break;
    }
    connection->busy--;
    uint32_t events = 0;
    if (connection->leftover_length == 0 && !connection->closing) events |= EPOLLIN;
    /* Output left (a full socket, or 64 rounds were not enough): come back when the
     * socket takes more. A stream that has not given its next piece yet resumes the
     * connection itself, and so does a protocol waiting for a read. */
    if (output_queue_pending(&connection->output) > 0 && !waiting) events |= EPOLLOUT;
    if (connection->ssl != NULL) events = tls_interest(connection, events);
    set_interest(connection, events);
    return true;
}

static void unix_sniff(struct connection *connection);

static void connection_readable(struct connection *connection) {
    ASSERT_ON_WORKER(connection);
    if (connection->protocol == NULL) {
        unix_sniff(connection); /* its first bytes have not chosen a protocol yet */
        return;
    }
    struct worker *worker = connection->worker;
    const struct net_handler *handler = &connection->protocol->handler;
    connection->busy++; /* a resume from inside a handler call waits for service() */
    for (int round = 0; round < READS_PER_EVENT; round++) {
        if (connection->closing || connection->leftover_length > 0) break;
        unsigned char *target;
        size_t room;
        ssize_t got;
        if (handler->direct_target != NULL &&
            handler->direct_target(connection->session, &target, &room) &&
            room >= DIRECT_READ_MINIMUM) {
            got = connection_read(connection, target, room);
            if (got > 0) {
                metric_add(NET_METRIC(net_input_bytes), got);
                handler->direct_filled(connection->session, (size_t)got);
                continue;
            }
        } else {
            got = connection_read(connection, worker->read_buffer, READ_BUFFER);
            if (got > 0) {
                metric_add(NET_METRIC(net_input_bytes), got);
                if (!deliver(connection, worker->read_buffer, (size_t)got)) {
                    close_connection(connection);
                    return;
                }
                if ((size_t)got < READ_BUFFER) break; /* the socket is probably empty */
                continue;
            }
        }
        if (got == 0) {
            close_connection(connection); /* the client went away */
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        close_connection(connection);
        return;
    }
    connection->busy--;
    service(connection);
}

/* Keeps INFO for the protocol's open() and starts CONNECTION's TLS handshake: the
 * worker's loop drives it (continue_handshake()), and --tls-handshake-timeout bounds it.
 * Returns false if out of memory. */
static bool start_handshake(struct connection *connection, const struct net_connection_info *info) {
    struct net_server *server = connection->worker->server;
    connection->ssl = tls_session_new(server->tls, connection->fd);
    connection->handshake_info = malloc(sizeof(*info));
    if (connection->ssl == NULL || connection->handshake_info == NULL) {
        tls_session_free(connection->ssl, true);
        free(connection->handshake_info);
        return false;
    }
    *connection->handshake_info = *info;
    connection->handshake_deadline_ms =
        clock_monotonic_ms() + (int64_t)tls_server_handshake_timeout(server->tls) * 1000;
    return true;
}

/* A new connection of WORKER for socket FD, not yet in its epoll set or its list
 * (connection_register()). NULL if out of memory. */
static struct connection *connection_new(struct worker *worker, int fd) {
    struct connection *connection = calloc(1, sizeof(*connection));
    if (connection == NULL) return NULL;
    connection->tag.kind = TAG_CONNECTION;
    connection->worker = worker;
    connection->fd = fd;
    output_queue_init(&connection->output);
    connection->events = EPOLLIN;
    return connection;
}

/* Adds CONNECTION to its worker's epoll set (reading) and list, and counts it. Returns
 * false if epoll refused it; the caller then frees what it set up. */
static bool connection_register(struct connection *connection) {
    struct worker *worker = connection->worker;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = &connection->tag};
    if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, connection->fd, &event) != 0) return false;
    connection->next = worker->connections;
    if (worker->connections != NULL) worker->connections->previous = connection;
    worker->connections = connection;
    metric_add(NET_METRIC(connections_received), 1);
    metric_add(NET_METRIC(clients_connected), 1);
    return true;
}

/* Fills what every protocol learns about CONNECTION: its handle, a new id and its
 * descriptor; the caller adds the addresses. */
static void connection_info_init(struct connection *connection, struct net_connection_info *info) {
    memset(info, 0, sizeof(*info));
    info->connection = (struct net_connection *)connection;
    info->id = atomic_fetch_add_explicit(&connection->worker->server->next_connection_id, 1,
                                         memory_order_relaxed);
    info->fd = connection->fd;
}

/* Sets up a connection on WORKER for the accepted socket FD (through a TLS listener
 * when TLS: the protocol's open() then waits for the handshake). Returns false if it
 * could not (out of memory, or the protocol refused it); the caller then closes FD. */
static bool open_connection(struct worker *worker, const struct protocol *protocol, int fd,
                            const struct sockaddr *peer, bool tls) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    struct connection *connection = connection_new(worker, fd);
    if (connection == NULL) return false;
    connection->protocol = protocol;

    struct net_connection_info info;
    connection_info_init(connection, &info);
    format_address(peer, info.peer, sizeof(info.peer));
    struct sockaddr_storage local;
    socklen_t local_length = sizeof(local);
    if (getsockname(fd, (struct sockaddr *)&local, &local_length) == 0) {
        format_address((struct sockaddr *)&local, info.local, sizeof(info.local));
    } else {
        snprintf(info.local, sizeof(info.local), "?");
    }
    info.tls = tls;
    if (tls) {
        if (!start_handshake(connection, &info)) {
            free(connection);
            return false;
        }
    } else {
        connection->session = protocol->handler.open(protocol->context, &info, &connection->output);
        if (connection->session == NULL) {
            free(connection);
            return false;
        }
    }
    if (!connection_register(connection)) {
        if (connection->session != NULL) protocol->handler.close(connection->session);
        wake_forget(connection);
        tls_session_free(connection->ssl, true);
        free(connection->handshake_info);
        free(connection);
        return false;
    }
    return true;
}

static bool open_unix_connection(struct worker *worker, const struct listener *listener, int fd);

/* Logs a failed handshake of CONNECTION with REASON, at most a few a second per worker
 * (a flood of plain-text clients should not flood the log), and counts it. */
static void handshake_failed(struct connection *connection, const char *reason) {
    struct worker *worker = connection->worker;
    metric_add(NET_METRIC(tls_handshake_failures), 1);
    int64_t second = clock_monotonic_ms() / 1000;
    if (second != worker->failure_log_second) {
        if (worker->failures_unlogged > 0) {
            log_event(LOG_WARNING, "tls_handshake_failures_unlogged", "worker=%d count=%d",
                      worker->index, worker->failures_unlogged);
        }
        worker->failure_log_second = second;
        worker->failures_logged = 0;
        worker->failures_unlogged = 0;
    }
    if (worker->failures_logged >= HANDSHAKE_FAILURE_LOGS_PER_SECOND) {
        worker->failures_unlogged++;
        return;
    }
    worker->failures_logged++;
    log_event(LOG_WARNING, "tls_handshake_failed", "peer=%s local=%s reason=\"%s\"",
              connection->handshake_info->peer, connection->handshake_info->local, reason);
}

/* What a plain HTTP client on the TLS port is told before the connection closes. */
static const char plain_http_answer[] = "HTTP/1.1 400 Bad Request\r\n"
                                        "Content-Type: text/plain\r\n"
                                        "Content-Length: 42\r\n"
                                        "Connection: close\r\n\r\n"
                                        "This port speaks TLS: use https:// here.\r\n";

/* Takes CONNECTION's TLS handshake a step further (an event on its socket). When it
 * finishes, the protocol's open() gets the connection's details, the client
 * certificate's name among them, and input is read; when it fails, the connection is
 * logged, counted and closed. On the connection's worker thread. */
static void continue_handshake(struct connection *connection) {
    ASSERT_ON_WORKER(connection);
    char reason[320];
    bool plaintext_http = false;
    switch (tls_handshake(connection->ssl, reason, sizeof(reason), &plaintext_http)) {
    case TLS_WANT_READ:
        set_interest(connection, EPOLLIN);
        return;
    case TLS_WANT_WRITE:
        set_interest(connection, EPOLLOUT);
        return;
    case TLS_OK:
        break;
    default:
        connection->tls_failed = true;
        handshake_failed(connection, reason);
        if (plaintext_http) { /* as nginx does: tell the browser or curl what is wrong */
            ssize_t ignored =
                write(connection->fd, plain_http_answer, sizeof(plain_http_answer) - 1);
            (void)ignored;
        }
        close_connection(connection);
        return;
    }
    struct net_connection_info *info = connection->handshake_info;
    bool ktls_send = false, ktls_recv = false;
    tls_session_describe(connection->ssl, info->tls_peer_name, sizeof(info->tls_peer_name),
                         &ktls_send, &ktls_recv);
    metric_add(NET_METRIC(tls_handshakes), 1);
    if (ktls_send) metric_add(NET_METRIC(tls_ktls_send), 1);
    if (ktls_recv) metric_add(NET_METRIC(tls_ktls_recv), 1);
    log_event(info->tls_peer_name[0] != '\0' ? LOG_INFO : LOG_DEBUG, "tls_connect",
              "id=%llu peer=%s local=%s client_cert=\"%s\" ktls_send=%d ktls_recv=%d",
              (unsigned long long)info->id, info->peer, info->local, info->tls_peer_name, ktls_send,
              ktls_recv);
    const struct protocol *protocol = connection->protocol;
    connection->session = protocol->handler.open(protocol->context, info, &connection->output);
    if (connection->session == NULL) {
        close_connection(connection);
        return;
    }
    free(connection->handshake_info);
    connection->handshake_info = NULL;
    set_interest(connection, EPOLLIN);
    /* The client's first request may have come with its last handshake flight and be
     * inside OpenSSL already, where epoll cannot see it. */
    connection_readable(connection);
}

static void accept_connections(struct worker *worker, struct listener *listener) {
    struct net_server *server = worker->server;
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_length = sizeof(peer);
        int fd = accept4(listener->fd, (struct sockaddr *)&peer, &peer_length,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if ((errno == EMFILE || errno == ENFILE) && server->reserve_fd >= 0) {
                /* Out of descriptors: accept and close the connection so the client
                 * sees a refusal instead of hanging in the backlog. */
                close(server->reserve_fd);
                int refused = accept(listener->fd, NULL, NULL);
                if (refused >= 0) close(refused);
                server->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                log_event(LOG_WARNING, "accept_failed", "reason=\"out of file descriptors\"");
                metric_add(NET_METRIC(connections_rejected), 1);
            }
            return;
        }
        uint64_t open_now =
            atomic_fetch_add_explicit(&server->connections, 1, memory_order_relaxed) + 1;
        bool accepted = false;
        const struct protocol *protocol = listener->protocol != NULL
                                              ? listener->protocol
                                              : listener->choices[listener->choice_count - 1];
        if (open_now > (uint64_t)options_number(server->options, NET_OPTION(max_clients))) {
            /* Not in plain text on a TLS port: the client would read it as a broken
             * record. It is just closed there. */
            const char *refusal = listener->tls ? NULL : protocol->handler.refusal;
            if (refusal != NULL) {
                size_t length = protocol->handler.refusal_length;
                ssize_t ignored = write(fd, refusal, length != 0 ? length : strlen(refusal));
                (void)ignored;
            }
            metric_add(NET_METRIC(connections_rejected), 1);
        } else if (listener->protocol == NULL) {
            accepted = open_unix_connection(worker, listener, fd);
        } else {
            accepted = open_connection(worker, listener->protocol, fd, (struct sockaddr *)&peer,
                                       listener->tls);
        }
        if (!accepted) {
            close(fd);
            atomic_fetch_sub_explicit(&server->connections, 1, memory_order_relaxed);
        }
    }
}

void net_resume_callback(void *connection) {
    net_connection_resume(connection);
}

void net_exclusive_callback(void *handle, bool begin) {
    struct connection *connection = handle;
    ASSERT_ON_WORKER(connection);
    struct net_server *server = connection->worker->server;
    /* The worker's shared hold is given up first: a writer waiting behind it would
     * otherwise wait for ever (and two workers beginning at once would deadlock). */
    pthread_rwlock_unlock(&server->work_lock);
    if (begin) {
        pthread_rwlock_wrlock(&server->work_lock);
    } else {
        pthread_rwlock_rdlock(&server->work_lock);
    }
}

void net_connection_resume(struct net_connection *handle) {
    struct connection *connection = (struct connection *)handle;
    if (connection->busy > 0) {
        connection->resume_pending = true; /* the service() under way goes on */
        return;
    }
    service(connection);
}

void net_wake_callback(void *connection) {
    net_connection_wake(connection);
}

void net_connection_wake(struct net_connection *handle) {
    struct connection *connection = (struct connection *)handle;
    struct worker *worker = connection->worker;
    bool signal = false;
    wake_lock(worker);
    if (!connection->wake_queued) {
        connection->wake_queued = true;
        connection->wake_next = NULL;
        connection->wake_previous = worker->woken_last;
        if (worker->woken_last != NULL) {
            worker->woken_last->wake_next = connection;
        } else {
            worker->woken_first = connection;
            signal = true; /* the worker drains the list to its end once it wakes */
        }
        worker->woken_last = connection;
    }
    wake_unlock(worker);
    if (signal) {
        uint64_t one = 1;
        ssize_t ignored = write(worker->wake_fd, &one, sizeof(one));
        (void)ignored;
    }
}

/* Serves one connection taken off its worker's wake list: its handler's woken() says
 * whether to close it now or to send what was queued for it. */
static void connection_woken(struct connection *connection) {
    ASSERT_ON_WORKER(connection);
    if (connection->session == NULL || connection->protocol->handler.woken == NULL) return;
    /* A handler call: a resume from inside woken() (a blocked command served or timed
     * out) is remembered, not served at once, since serving may close the connection
     * and free the session woken() is still using. */
    connection->busy++;
    bool close_now = connection->protocol->handler.woken(connection->session);
    connection->busy--;
    if (close_now) {
        close_connection(connection);
        return;
    }
    if (connection->busy > 0) {
        connection->resume_pending = true;
        return;
    }
    service(connection);
}

/* Serves the connections on WORKER's wake list: as many as were on it when called (one
 * woken again meanwhile waits for the next round, which a write to wake_fd brings). */
static void serve_woken(struct worker *worker) {
    wake_lock(worker);
    int count = 0;
    for (struct connection *connection = worker->woken_first; connection != NULL;
         connection = connection->wake_next) {
        count++;
    }
    wake_unlock(worker);
    for (int i = 0; i < count; i++) {
        wake_lock(worker);
        struct connection *connection = worker->woken_first;
        if (connection != NULL) wake_unlink(connection);
        wake_unlock(worker);
        if (connection == NULL) break;
        connection_woken(connection);
    }
    wake_lock(worker);
    bool more = worker->woken_first != NULL;
    wake_unlock(worker);
    if (more) {
        uint64_t one = 1;
        ssize_t ignored = write(worker->wake_fd, &one, sizeof(one));
        (void)ignored;
    }
}

/* ---- the Unix socket ----------------------------------------------------------- */

/* Opens a listening Unix-domain socket at PATH with file permissions MODE, removing a
 * socket file an earlier run left behind (only if it is a socket and nobody answers
 * there). Sets *DEVICE and *INODE to the file's. Returns the descriptor, or -1 with a
 * reason in ERROR. Listens only after the mode is set, so nobody connects before. */
static int open_unix_listener(const char *path, unsigned mode, dev_t *device, ino_t *inode,
                              char *error, size_t error_size) {
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (path[0] == '\0' || strlen(path) >= sizeof(address.sun_path)) {
        snprintf(error, error_size, "unix socket path '%s' is empty or over %zu bytes", path,
                 sizeof(address.sun_path) - 1);
        return -1;
    }
    memcpy(address.sun_path, path, strlen(path) + 1);
    struct stat status;
    if (lstat(path, &status) == 0) {
        if (!S_ISSOCK(status.st_mode)) {
            snprintf(error, error_size,
                     "cannot listen on unix socket '%s': the file exists and is not a socket",
                     path);
            return -1;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool answered =
            probe >= 0 && connect(probe, (struct sockaddr *)&address, sizeof(address)) == 0;
        if (probe >= 0) close(probe);
        if (answered) {
            snprintf(error, error_size,
                     "cannot listen on unix socket '%s': another process listens there", path);
            return -1;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(error, error_size, "cannot remove the stale unix socket '%s': %s", path,
                     strerror(errno));
            return -1;
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(error, error_size, "socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        snprintf(error, error_size, "cannot listen on unix socket '%s': %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (chmod(path, mode) != 0 || lstat(path, &status) != 0 || listen(fd, 511) != 0) {
        snprintf(error, error_size, "cannot listen on unix socket '%s': %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    *device = status.st_dev;
    *inode = status.st_ino;
    return fd;
}

int net_server_listen_unix(struct net_server *server, const char *path, unsigned mode,
                           const struct net_handler *const *handlers, void *const *contexts,
                           int count, char *error, size_t error_size) {
    if (count < 1 || count > NET_UNIX_PROTOCOLS_MAX) {
        snprintf(error, error_size, "a unix socket serves 1 to %d protocols",
                 NET_UNIX_PROTOCOLS_MAX);
        return -1;
    }
    if (server->listener_count == MAX_LISTENERS) {
        snprintf(error, error_size, "too many listeners (at most %d)", MAX_LISTENERS);
        return -1;
    }
    struct listener *listener = &server->listeners[server->listener_count];
    memset(listener, 0, sizeof(*listener));
    for (int i = 0; i < count; i++) {
        listener->choices[i] =
            protocol_add(server, handlers[i], contexts[i], -1, error, error_size);
        if (listener->choices[i] == NULL) return -1;
    }
    listener->choice_count = count;
    listener->path = strdup(path);
    if (listener->path == NULL) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    listener->fd =
        open_unix_listener(path, mode, &listener->device, &listener->inode, error, error_size);
    if (listener->fd < 0) {
        free(listener->path);
        listener->path = NULL;
        return -1;
    }
    listener->tag.kind = TAG_LISTENER;
    snprintf(listener->address, sizeof(listener->address), "unix");
    server->listener_count++;
    return 0;
}

/* Sets up a connection on WORKER for FD, accepted on the Unix socket LISTENER: it waits
 * for its first bytes to choose a protocol (unix_sniff()). Returns false if it could not
 * (out of memory, no peer credentials); the caller then closes FD. */
static bool open_unix_connection(struct worker *worker, const struct listener *listener, int fd) {
    struct ucred credentials;
    socklen_t size = sizeof(credentials);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) != 0) return false;
    struct connection *connection = connection_new(worker, fd);
    if (connection == NULL) return false;
    connection->unix_socket = true;
    connection->sniffing = listener;
    connection->peer_pid = credentials.pid;
    connection->peer_uid = credentials.uid;
    connection->peer_gid = credentials.gid;
    if (!connection_register(connection)) {
        free(connection);
        return false;
    }
    return true;
}

/* Hands descriptor FD, passed by the peer of CONNECTION, to its protocol, or keeps it
 * until a protocol is chosen. Returns false when nobody took it (the caller closes it). */
static bool unix_take_descriptor(struct connection *connection, int fd) {
    if (connection->protocol == NULL) {
        if (connection->held_count == NET_DESCRIPTORS_MAX) return false;
        connection->held[connection->held_count++] = fd;
        return true;
    }
    const struct net_handler *handler = &connection->protocol->handler;
    return handler->descriptor != NULL && handler->descriptor(connection->session, fd);
}

/* read(2) for a Unix connection: recvmsg() with room for NET_DESCRIPTORS_MAX passed
 * descriptors (close-on-exec), which go to the protocol before the bytes are offered. A
 * message with more (MSG_CTRUNC) fails with EPROTO: the connection is closed. */
static ssize_t unix_receive(struct connection *connection, void *buffer, size_t length) {
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int) * NET_DESCRIPTORS_MAX)];
    } control;
    struct iovec iovec = {.iov_base = buffer, .iov_len = length};
    struct msghdr message = {.msg_iov = &iovec,
                             .msg_iovlen = 1,
                             .msg_control = control.space,
                             .msg_controllen = sizeof(control.space)};
    ssize_t got = recvmsg(connection->fd, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (got < 0) return got;
    bool truncated = (message.msg_flags & MSG_CTRUNC) != 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL;
         header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(fd));
            if (truncated || !unix_take_descriptor(connection, fd)) close(fd);
        }
    }
    if (truncated) {
        log_event(LOG_WARNING, "descriptors_refused",
                  "client=unix:%ld reason=\"more than %d descriptors in one message\"",
                  (long)connection->peer_pid, NET_DESCRIPTORS_MAX);
        errno = EPROTO;
        return -1;
    }
    return got;
}

/* Opens PROTOCOL's session for a Unix connection whose first bytes chose it, and hands
 * it the descriptors that came with them. Returns false if the protocol refused it. */
static bool unix_start(struct connection *connection, const struct protocol *protocol) {
    struct net_connection_info info;
    connection_info_init(connection, &info);
    snprintf(info.peer, sizeof(info.peer), "unix:%ld", (long)connection->peer_pid);
    snprintf(info.local, sizeof(info.local), "unix");
    info.unix_socket = true;
    info.peer_pid = connection->peer_pid;
    info.peer_uid = connection->peer_uid;
    info.peer_gid = connection->peer_gid;
    void *session = protocol->handler.open(protocol->context, &info, &connection->output);
    if (session == NULL) return false;
    connection->protocol = protocol;
    connection->session = session;
    connection->sniffing = NULL;
    int held = connection->held_count;
    connection->held_count = 0;
    for (int i = 0; i < held; i++)
        if (!unix_take_descriptor(connection, connection->held[i])) close(connection->held[i]);
    return true;
}

/* A Unix connection whose protocol is not chosen yet is readable: reads up to
 * NET_SNIFF_MAX bytes in all and asks each protocol's sniff() in turn; the first to say
 * yes gets the connection and those bytes. A protocol that cannot tell yet holds the
 * choice until more bytes come; bytes nobody claims close the connection. */
static void unix_sniff(struct connection *connection) {
    const struct listener *listener = connection->sniffing;
    ssize_t got;
    do {
        got = unix_receive(connection, connection->sniffed + connection->sniffed_length,
                           NET_SNIFF_MAX - connection->sniffed_length);
    } while (got < 0 && errno == EINTR);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (got <= 0) {
        close_connection(connection);
        return;
    }
    metric_add(NET_METRIC(net_input_bytes), got);
    connection->sniffed_length += (size_t)got;
    const struct protocol *chosen = NULL;
    for (int i = 0; i < listener->choice_count && chosen == NULL; i++) {
        const struct protocol *protocol = listener->choices[i];
        enum net_sniff verdict =
            protocol->handler.sniff == NULL
                ? NET_SNIFF_YES
                : protocol->handler.sniff(connection->sniffed, connection->sniffed_length);
        if (verdict == NET_SNIFF_MORE && connection->sniffed_length < NET_SNIFF_MAX) return;
        if (verdict == NET_SNIFF_YES) chosen = protocol;
    }
    if (chosen == NULL) {
        log_event(LOG_WARNING, "protocol_unknown",
                  "client=unix:%ld reason=\"no protocol of the unix socket begins so\"",
                  (long)connection->peer_pid);
        close_connection(connection);
        return;
    }
    if (!unix_start(connection, chosen)) {
        close_connection(connection);
        return;
    }
    connection->busy++; /* a resume from inside the handler waits for service() */
    if (!deliver(connection, connection->sniffed, connection->sniffed_length)) {
        close_connection(connection);
        return;
    }
    connection->busy--;
    service(connection);
}

/* ---- workers ------------------------------------------------------------------ */

/* Runs tick() for every connection of WORKER whose protocol has one, and closes TLS
 * handshakes that passed their deadline. */
static void tick_connections(struct worker *worker, int64_t now_ms) {
    struct connection *connection = worker->connections;
    while (connection != NULL) {
        struct connection *next = connection->next;
        if (connection->handshake_info != NULL) { /* a TLS handshake under way */
            if (now_ms >= connection->handshake_deadline_ms) {
                connection->tls_failed = true;
                handshake_failed(connection, "handshake not finished in time "
                                             "(tls-handshake-timeout)");
                close_connection(connection);
            }
            connection = next;
            continue;
        }
        const struct net_handler *handler =
            connection->protocol != NULL ? &connection->protocol->handler : NULL;
        if (handler != NULL && handler->tick != NULL && !connection->closing &&
            handler->tick(connection->session, now_ms) == NET_CLOSE) {
            connection->closing = true;
            service(connection);
        }
        connection = next;
    }
}

/* Reads the input OpenSSL holds for the TLS connections on WORKER's ready list: as many
 * as were on it when called (one that goes back on it waits for the next round). */
static void read_ready(struct worker *worker) {
    int count = 0;
    for (struct connection *connection = worker->ready; connection != NULL;
         connection = connection->ready_next) {
        count++;
    }
    for (int i = 0; i < count && worker->ready != NULL; i++) {
        struct connection *connection = worker->ready;
        ready_remove(connection);
        connection_readable(connection);
    }
}

static void *worker_main(void *argument) {
    struct worker *worker = argument;
    atomic_store_explicit(&worker->thread_check, check_thread(), memory_order_relaxed);
    struct net_server *server = worker->server;
    struct epoll_event events[EVENTS_PER_WAIT];
    io_ring_set_current(worker->ring);
    pthread_rwlock_rdlock(&server->work_lock);
    while (!atomic_load_explicit(&server->stopping, memory_order_acquire)) {
        int timeout = -1;
        if (server->ticks) {
            int64_t now = clock_monotonic_ms();
            if (now >= worker->next_tick_ms) {
                tick_connections(worker, now);
                worker->next_tick_ms = now + TICK_INTERVAL_MS;
            }
            timeout = (int)(worker->next_tick_ms - now);
        }
        if (worker->ready != NULL) timeout = 0; /* TLS input waits inside OpenSSL */
        pthread_rwlock_unlock(&server->work_lock);
        int count = epoll_wait(worker->epoll_fd, events, EVENTS_PER_WAIT, timeout);
        pthread_rwlock_rdlock(&server->work_lock);
        if (count < 0) {
            if (errno == EINTR) continue;
            log_event(LOG_ERROR, "epoll_failed", "worker=%d error=\"%s\"", worker->index,
                      strerror(errno));
            break;
        }
        bool completions = false, wakes = false;
        for (int i = 0; i < count; i++) {
            struct tag *tag = events[i].data.ptr;
            if (tag->kind == TAG_RING) {
                completions = true; /* after this batch: they may close its connections */
                continue;
            }
            if (tag->kind == TAG_WAKE) {
                uint64_t value;
                ssize_t ignored = read(worker->wake_fd, &value, sizeof(value));
                (void)ignored;
                wakes = true; /* after this batch too: they may close its connections */
                continue;
            }
            if (tag->kind == TAG_LISTENER) {
                accept_connections(worker, (struct listener *)tag);
                continue;
            }
            struct connection *connection = (struct connection *)tag;
            uint32_t flags = events[i].events;
            if (connection->handshake_info != NULL) {
                continue_handshake(connection);
            } else if (flags & EPOLLIN) {
                connection_readable(connection);
            } else if (flags & (EPOLLERR | EPOLLHUP)) {
                close_connection(connection);
            } else if (flags & EPOLLOUT) {
                if (connection->tls_read_wants_out) {
                    connection_readable(connection); /* an SSL_read that had to write */
                } else {
                    service(connection);
                }
            }
        }
        if (completions) io_ring_complete(worker->ring);
        if (wakes) serve_woken(worker);
        if (worker->ready != NULL) read_ready(worker);
    }
    while (worker->connections != NULL)
        close_connection(worker->connections);
    pthread_rwlock_unlock(&server->work_lock);
    return NULL;
}

int net_server_start(struct net_server *server, char *error, size_t error_size) {
    server->workers = calloc((size_t)server->worker_count, sizeof(struct worker));
    if (server->workers == NULL) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    for (int i = 0; i < server->worker_count; i++) {
        server->workers[i].epoll_fd = -1;
        server->workers[i].wake_fd = -1;
        pthread_mutex_init(&server->workers[i].wake_lock, NULL);
        server->workers[i].wake_lock_ready = true;
    }
    for (int i = 0; i < server->worker_count; i++) {
        struct worker *worker = &server->workers[i];
        worker->wake_tag.kind = TAG_WAKE;
        worker->server = server;
        worker->index = i;
        worker->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        worker->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        worker->read_buffer = malloc(READ_BUFFER);
        if (server->tls != NULL) worker->tls_gather = malloc(TLS_RECORD_SIZE);
        if (worker->epoll_fd < 0 || worker->wake_fd < 0 || worker->read_buffer == NULL ||
            (server->tls != NULL && worker->tls_gather == NULL)) {
            snprintf(error, error_size, "cannot set up worker %d: %s", i, strerror(errno));
            return -1;
        }
        struct epoll_event wake = {.events = EPOLLIN, .data.ptr = &worker->wake_tag};
        epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, worker->wake_fd, &wake);
        worker->ring_tag.kind = TAG_RING;
        worker->ring = io_ring_create(256, error, error_size);
        if (worker->ring == NULL) return -1;
        struct epoll_event ring = {.events = EPOLLIN, .data.ptr = &worker->ring_tag};
        epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, io_ring_event_fd(worker->ring), &ring);
        for (int j = 0; j < server->listener_count; j++) {
            struct epoll_event event = {.events = EPOLLIN | EPOLLEXCLUSIVE,
                                        .data.ptr = &server->listeners[j].tag};
            if (epoll_ctl(worker->epoll_fd, EPOLL_CTL_ADD, server->listeners[j].fd, &event) != 0) {
                snprintf(error, error_size, "epoll_ctl: %s", strerror(errno));
                return -1;
            }
        }
    }
    for (int i = 0; i < server->worker_count; i++) {
        struct worker *worker = &server->workers[i];
        int status = pthread_create(&worker->thread, NULL, worker_main, worker);
        if (status != 0) {
            snprintf(error, error_size, "cannot start worker thread: %s", strerror(status));
            return -1;
        }
        worker->started = true;
    }
    return 0;
}

void net_server_stop(struct net_server *server) {
    if (server->workers == NULL) return;
    atomic_store_explicit(&server->stopping, true, memory_order_release);
    for (int i = 0; i < server->worker_count; i++) {
        uint64_t one = 1;
        if (server->workers[i].wake_fd >= 0) {
            ssize_t ignored = write(server->workers[i].wake_fd, &one, sizeof(one));
            (void)ignored;
        }
    }
    for (int i = 0; i < server->worker_count; i++) {
        struct worker *worker = &server->workers[i];
        if (worker->started) pthread_join(worker->thread, NULL);
        worker->started = false;
    }
}

void net_server_destroy(struct net_server *server) {
    if (server == NULL) return;
    for (int i = 0; server->workers != NULL && i < server->worker_count; i++) {
        struct worker *worker = &server->workers[i];
        while (worker->connections != NULL)
            close_connection(worker->connections);
        /* Reads still in flight end here; their sessions are gone, so their callbacks
         * only free what they hold. */
        io_ring_destroy(worker->ring);
        if (worker->epoll_fd >= 0) close(worker->epoll_fd);
        if (worker->wake_fd >= 0) close(worker->wake_fd);
        free(worker->read_buffer);
        free(worker->tls_gather);
        if (worker->wake_lock_ready) pthread_mutex_destroy(&worker->wake_lock);
    }
    free(server->workers);
    for (int i = 0; i < server->listener_count; i++) {
        struct listener *listener = &server->listeners[i];
        close(listener->fd);
        struct stat status;
        if (listener->path != NULL && lstat(listener->path, &status) == 0 &&
            status.st_dev == listener->device && status.st_ino == listener->inode) {
            unlink(listener->path); /* still the socket this server bound */
        }
        free(listener->path);
    }
    if (server->reserve_fd >= 0) close(server->reserve_fd);
    while (server->protocols != NULL) {
        struct protocol *next = server->protocols->next;
        free(server->protocols);
        server->protocols = next;
    }
    tls_server_destroy(server->tls);
    pthread_rwlock_destroy(&server->work_lock);
    free(server->bind);
    free(server);
}
