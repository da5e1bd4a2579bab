/* libstrata: the native protocol client (include/strata.h). Standalone: it shares only
 * the wire layout (strata_protocol.h) with the server. Checksums are CRC32C by isa-l;
 * the KV key hash is SHA-256 by OpenSSL's libcrypto; TLS is OpenSSL's libssl. */
#include "strata.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT        6380
#define DEFAULT_TIMEOUT_MS  10000
#define DEFAULT_CONNECTIONS 4
#define MAX_CONNECTIONS     256
#define IOVEC_BATCH         512
/* Small pieces of a request are gathered into records of up to this many bytes. */
#define TLS_GATHER 16384

struct connection {
    int fd;              /* -1: not open */
    SSL *ssl;            /* with TLS: the session on fd (the socket is then non-blocking) */
    bool busy;           /* taken by a call */
    bool shm_registered; /* the client's region is registered on it */
};

struct strata_client {
    char *user;     /* NULL with no password: no AUTH */
    char *password; /* wiped and freed by strata_close() */
    bool authenticate;
    char unix_socket[108]; /* sun_path; empty: TCP to host and port */
    char host[256];
    int port;
    char name_space[256];
    size_t name_space_length;
    int timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t available;
    int connection_count;
    struct connection *connections;
    uint64_t next_request_id;
    int shm_fd;
    unsigned char *shm;
    size_t shm_size;
    SSL_CTX *tls;              /* NULL: plain connections */
    char tls_server_name[256]; /* what the server's certificate must name */
};

/* ---- small helpers ------------------------------------------------------------- */

static int64_t now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

uint32_t strata_checksum(const void *data, size_t length) {
    const unsigned char *bytes = data;
    uint32_t crc = 0xFFFFFFFFu;
    while (length > 0) {
        size_t piece = length < (1u << 30) ? length : (1u << 30);
        crc = crc32_iscsi((unsigned char *)bytes, (int)piece, crc);
        bytes += piece;
        length -= piece;
    }
    return crc ^ 0xFFFFFFFFu;
}

const char *strata_strerror(int code) {
    switch (code) {
    case STRATA_OK:
        return "ok";
    case STRATA_ERR_NOT_FOUND:
        return "key not found";
    case STRATA_ERR_EXISTS:
        return "key exists (if-absent put)";
    case STRATA_ERR_FINGERPRINT:
        return "the value carries another fingerprint";
    case STRATA_ERR_CHECKSUM:
        return "checksum mismatch: the value's bytes are damaged";
    case STRATA_ERR_QUOTA:
        return "the namespace is at its quota";
    case STRATA_ERR_NAMESPACE:
        return "unknown namespace";
    case STRATA_ERR_TOO_LARGE:
        return "key or value over the server's limits";
    case STRATA_ERR_BUFFER_TOO_SMALL:
        return "buffer too small for the value";
    case STRATA_ERR_NO_MEMORY:
        return "the server is out of memory";
    case STRATA_ERR_BUSY:
        return "the server is busy (flash writer behind); try again";
    case STRATA_ERR_IO:
        return "storage I/O error on the server";
    case STRATA_ERR_PROTOCOL:
        return "protocol error";
    case STRATA_ERR_VERSION:
        return "unsupported protocol version";
    case STRATA_ERR_CONNECT:
        return "cannot connect to the server";
    case STRATA_ERR_TIMEOUT:
        return "timed out";
    case STRATA_ERR_CLOSED:
        return "connection closed by the server";
    case STRATA_ERR_INVALID:
        return "invalid argument";
    case STRATA_ERR_NOT_NATIVE:
        return "the value was not stored by the native protocol";
    case STRATA_ERR_SHM:
        return "shared memory region missing, unusable or out of range";
    case STRATA_ERR_PARENT_MISSING:
        return "the parent key is not present";
    case STRATA_ERR_SYSTEM:
        return "system call failed";
    case STRATA_ERR_NOAUTH:
        return "authentication required: give a user and password";
    case STRATA_ERR_WRONGPASS:
        return "invalid user name or password, or the user is disabled";
    case STRATA_ERR_NOPERM:
        return "the user has no right to do this on the namespace";
    case STRATA_ERR_THROTTLED:
        return "too many failed authentications from this host; try again later";
    }
    return "unknown error";
}

/* ---- connections ----------------------------------------------------------------- */

static int wait_ready(int fd, short events, int64_t deadline);

/* Makes the TLS handshake on FD (non-blocking from here on), checking the server's
 * certificate against the client's CAs and name. Returns the session, or NULL. */
static SSL *tls_connect(strata_client *client, int fd) {
    SSL *ssl = SSL_new(client->tls);
    if (ssl == NULL) return NULL;
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    SSL_set_fd(ssl, fd);
    const char *name = client->tls_server_name;
    unsigned char address[16];
    bool is_address =
        inet_pton(AF_INET, name, address) == 1 || inet_pton(AF_INET6, name, address) == 1;
    if (is_address) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
    } else {
        SSL_set_tlsext_host_name(ssl, name);
        SSL_set1_host(ssl, name);
    }
    int64_t deadline = now_ms() + client->timeout_ms;
    for (;;) {
        ERR_clear_error();
        int result = SSL_connect(ssl);
        if (result == 1) return ssl;
        int code = SSL_get_error(ssl, result);
        short events = code == SSL_ERROR_WANT_READ    ? POLLIN
                       : code == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                      : 0;
        if (events == 0 || wait_ready(fd, events, deadline) != 0) break;
    }
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}

/* Closes CONNECTION's socket and TLS session, if open. */
static void close_connection(struct connection *connection) {
    if (connection->ssl != NULL) {
        ERR_clear_error();
        (void)SSL_shutdown(connection->ssl); /* close_notify, not waiting for the reply */
        SSL_free(connection->ssl);
        ERR_clear_error();
        connection->ssl = NULL;
    }
    if (connection->fd >= 0) close(connection->fd);
    connection->fd = -1;
}

/* Opens a connection to the server's Unix socket. Returns the descriptor or a negative
 * error. */
static int open_unix_connection(strata_client *client) {
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    memcpy(address.sun_path, client->unix_socket, strlen(client->unix_socket) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return STRATA_ERR_SYSTEM;
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        close(fd);
        return STRATA_ERR_CONNECT;
    }
    return fd;
}

/* Opens a connection to the server (TCP, or its Unix socket). Returns the descriptor
 * or a negative error. */
static int open_connection(strata_client *client) {
    if (client->unix_socket[0] != '\0') return open_unix_connection(client);
    char port[16];
    snprintf(port, sizeof(port), "%d", client->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addresses;
    if (getaddrinfo(client->host, port, &hints, &addresses) != 0) return STRATA_ERR_CONNECT;
    int fd = -1;
    for (struct addrinfo *address = addresses; address != NULL; address = address->ai_next) {
        fd = socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC, address->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, address->ai_addr, address->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    if (fd < 0) return STRATA_ERR_CONNECT;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int authenticate(strata_client *client, struct connection *connection);

/* Takes a free connection from the pool, opening it if needed (and authenticating it
 * when the client has credentials). Returns it, or NULL with *ERROR set. */
static struct connection *acquire(strata_client *client, int *error) {
    pthread_mutex_lock(&client->lock);
    struct connection *found = NULL;
    while (found == NULL) {
        for (int i = 0; i < client->connection_count && found == NULL; i++) {
            if (!client->connections[i].busy) found = &client->connections[i];
        }
        if (found == NULL) pthread_cond_wait(&client->available, &client->lock);
    }
    found->busy = true;
    pthread_mutex_unlock(&client->lock);
    if (found->fd < 0) {
        int fd = open_connection(client);
        int failure = fd < 0 ? fd : 0;
        if (failure == 0) {
            found->fd = fd;
            found->ssl = NULL;
            found->shm_registered = false;
            if (client->tls != NULL && (found->ssl = tls_connect(client, fd)) == NULL) {
                failure = STRATA_ERR_CONNECT;
            } else if (client->authenticate) {
                failure = authenticate(client, found); /* inside TLS, if any */
            }
            if (failure != 0) close_connection(found);
        }
        if (failure != 0) {
            *error = failure;
            pthread_mutex_lock(&client->lock);
            found->busy = false;
            pthread_cond_signal(&client->available);
            pthread_mutex_unlock(&client->lock);
            return NULL;
        }
    }
    return found;
}

/* Returns CONNECTION to the pool; after a failure (BROKEN) it is closed first, since
 * the stream can no longer be trusted. */
static void release(strata_client *client, struct connection *connection, bool broken) {
    if (broken && connection->fd >= 0) close_connection(connection);
    pthread_mutex_lock(&client->lock);
    connection->busy = false;
    pthread_cond_signal(&client->available);
    pthread_mutex_unlock(&client->lock);
}

/* Waits until FD is ready for EVENTS or DEADLINE passes. Returns 0 or an error. */
static int wait_ready(int fd, short events, int64_t deadline) {
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) return STRATA_ERR_TIMEOUT;
        struct pollfd poll_fd = {.fd = fd, .events = events};
        int ready = poll(&poll_fd, 1, (int)(left > INT_MAX ? INT_MAX : left));
        if (ready > 0) return 0;
        if (ready < 0 && errno != EINTR) return STRATA_ERR_SYSTEM;
    }
}

/* Waits for what a TLS call that returned RESULT needs, or fails. Returns 0 to retry. */
static int tls_wait(struct connection *connection, int result, int64_t deadline) {
    int code = SSL_get_error(connection->ssl, result);
    ERR_clear_error();
    if (code == SSL_ERROR_WANT_READ) return wait_ready(connection->fd, POLLIN, deadline);
    if (code == SSL_ERROR_WANT_WRITE) return wait_ready(connection->fd, POLLOUT, deadline);
    return STRATA_ERR_CLOSED;
}

/* Writes LENGTH bytes at DATA through CONNECTION's TLS session. */
static int tls_write_all(struct connection *connection, const void *data, size_t length,
                         int64_t deadline) {
    const unsigned char *cursor = data;
    while (length > 0) {
        size_t written = 0;
        ERR_clear_error();
        int result = SSL_write_ex(connection->ssl, cursor, length, &written);
        if (result == 1) {
            cursor += written;
            length -= written;
            continue;
        }
        int error = tls_wait(connection, result, deadline); /* retried with the same bytes */
        if (error != 0) return error;
    }
    return 0;
}

/* send_all() over TLS: small iovecs are gathered into records of up to TLS_GATHER
 * bytes; larger ones are written from where they lie. */
static int tls_send_all(struct connection *connection, const struct iovec *iovecs, size_t count,
                        int64_t deadline) {
    unsigned char gather[TLS_GATHER];
    size_t gathered = 0;
    for (size_t i = 0; i < count; i++) {
        const unsigned char *data = iovecs[i].iov_base;
        size_t length = iovecs[i].iov_len;
        if (length >= TLS_GATHER) {
            int error = gathered > 0 ? tls_write_all(connection, gather, gathered, deadline) : 0;
            gathered = 0;
            if (error == 0) error = tls_write_all(connection, data, length, deadline);
            if (error != 0) return error;
            continue;
        }
        if (gathered + length > TLS_GATHER) {
            int error = tls_write_all(connection, gather, gathered, deadline);
            if (error != 0) return error;
            gathered = 0;
        }
        memcpy(gather + gathered, data, length);
        gathered += length;
    }
    return gathered > 0 ? tls_write_all(connection, gather, gathered, deadline) : 0;
}

/* Sends every byte of IOVECS (COUNT of them; they are advanced in place). A DESCRIPTOR
 * (>= 0; the Unix socket only, never TLS) rides as SCM_RIGHTS on the first sendmsg(), so
 * the kernel attaches it to the first byte sent. */
static int send_all(struct connection *connection, struct iovec *iovecs, size_t count,
                    int64_t deadline, int descriptor) {
    if (connection->ssl != NULL) return tls_send_all(connection, iovecs, count, deadline);
    int fd = connection->fd;
    size_t index = 0;
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    while (index < count) {
        if (iovecs[index].iov_len == 0) {
            index++;
            continue;
        }
        int error = wait_ready(fd, POLLOUT, deadline);
        if (error != 0) return error;
        size_t batch = count - index < IOVEC_BATCH ? count - index : IOVEC_BATCH;
        struct msghdr message = {.msg_iov = &iovecs[index], .msg_iovlen = batch};
        if (descriptor >= 0) {
            memset(&control, 0, sizeof(control));
            message.msg_control = control.space;
            message.msg_controllen = sizeof(control.space);
            struct cmsghdr *header = CMSG_FIRSTHDR(&message);
            header->cmsg_level = SOL_SOCKET;
            header->cmsg_type = SCM_RIGHTS;
            header->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(header), &descriptor, sizeof(int));
        }
        ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return STRATA_ERR_CLOSED;
        }
        descriptor = -1; /* it went with the bytes just sent */
        size_t left = (size_t)sent;
        while (left > 0 && index < count) {
            if (left >= iovecs[index].iov_len) {
                left -= iovecs[index].iov_len;
                iovecs[index].iov_len = 0;
                index++;
            } else {
                iovecs[index].iov_base = (char *)iovecs[index].iov_base + left;
                iovecs[index].iov_len -= left;
                left = 0;
            }
        }
    }
    return 0;
}

/* receive_all() over TLS. What OpenSSL holds already is taken before waiting. */
static int tls_receive_all(struct connection *connection, void *buffer, size_t length,
                           int64_t deadline) {
    unsigned char *cursor = buffer;
    while (length > 0) {
        size_t got = 0;
        ERR_clear_error();
        int result = SSL_read_ex(connection->ssl, cursor, length, &got);
        if (result == 1) {
            cursor += got;
            length -= got;
            continue;
        }
        int error = tls_wait(connection, result, deadline);
        if (error != 0) return error;
    }
    return 0;
}

/* Receives exactly LENGTH bytes into BUFFER. */
static int receive_all(struct connection *connection, void *buffer, size_t length,
                       int64_t deadline) {
    if (connection->ssl != NULL) return tls_receive_all(connection, buffer, length, deadline);
    int fd = connection->fd;
    unsigned char *cursor = buffer;
    while (length > 0) {
        int error = wait_ready(fd, POLLIN, deadline);
        if (error != 0) return error;
        ssize_t got = recv(fd, cursor, length, MSG_DONTWAIT);
        if (got == 0) return STRATA_ERR_CLOSED;
        if (got < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return STRATA_ERR_CLOSED;
        }
        cursor += got;
        length -= (size_t)got;
    }
    return 0;
}

/* Reads and throws away LENGTH bytes. */
static int discard(struct connection *connection, uint64_t length, int64_t deadline) {
    unsigned char sink[65536];
    while (length > 0) {
        size_t piece = length < sizeof(sink) ? (size_t)length : sizeof(sink);
        int error = receive_all(connection, sink, piece, deadline);
        if (error != 0) return error;
        length -= piece;
    }
    return 0;
}

/* A request being built: the frame header and namespace, then the entries' iovecs. */
struct request {
    unsigned char head[STRATA_FRAME_HEADER_SIZE + 2 + 256];
    size_t head_length;
    struct iovec *iovecs;
    size_t iovec_count;
    size_t iovec_capacity;
    uint64_t body_length;
    int descriptor; /* passed with SCM_RIGHTS on the first byte; -1: none */
};

static bool request_add(struct request *request, const void *data, size_t length) {
    if (request->iovec_count == request->iovec_capacity) {
        size_t capacity = request->iovec_capacity ? request->iovec_capacity * 2 : 16;
        struct iovec *iovecs = realloc(request->iovecs, capacity * sizeof(*iovecs));
        if (iovecs == NULL) return false;
        request->iovecs = iovecs;
        request->iovec_capacity = capacity;
    }
    request->iovecs[request->iovec_count++] = (struct iovec){(void *)data, length};
    request->body_length += length;
    return true;
}

/* Starts a request of OPCODE with COUNT entries and ARGUMENT. */
static bool request_start(strata_client *client, struct request *request, uint8_t opcode,
                          uint32_t count, int32_t argument, bool with_namespace) {
    memset(request, 0, sizeof(*request));
    request->descriptor = -1;
    unsigned char *head = request->head;
    strata_store32(head, STRATA_PROTOCOL_MAGIC);
    head[4] = STRATA_PROTOCOL_VERSION;
    head[5] = opcode;
    head[6] = head[7] = 0;
    strata_store64(head + 8, __atomic_add_fetch(&client->next_request_id, 1, __ATOMIC_RELAXED));
    strata_store32(head + 24, count);
    strata_store32(head + 28, (uint32_t)argument);
    size_t name_length = with_namespace ? client->name_space_length : 0;
    head[32] = (unsigned char)name_length;
    head[33] = (unsigned char)(name_length >> 8);
    memcpy(head + 34, client->name_space, name_length);
    request->head_length = 34 + name_length;
    return request_add(request, head, request->head_length);
}

static void request_free(struct request *request) {
    free(request->iovecs);
}

/* Sends REQUEST on CONNECTION and reads the response header into HEADER, checking it
 * answers this request. A frame error's message is read and the status returned. */
static int exchange(strata_client *client, struct connection *connection, struct request *request,
                    unsigned char *header, int64_t deadline) {
    strata_store64(request->head + 16, request->body_length - STRATA_FRAME_HEADER_SIZE);
    int error =
        send_all(connection, request->iovecs, request->iovec_count, deadline, request->descriptor);
    if (error != 0) return error;
    error = receive_all(connection, header, STRATA_FRAME_HEADER_SIZE, deadline);
    if (error != 0) return error;
    if (strata_load32(header) != STRATA_PROTOCOL_MAGIC || header[4] != STRATA_PROTOCOL_VERSION) {
        return STRATA_ERR_PROTOCOL;
    }
    int32_t status = (int32_t)strata_load32(header + 28);
    if (status != 0) {
        uint64_t length = strata_load64(header + 16);
        error = discard(connection, length, deadline);
        return error != 0 ? error : status;
    }
    if (strata_load64(header + 8) != strata_load64(request->head + 8)) return STRATA_ERR_PROTOCOL;
    (void)client;
    return 0;
}

/* Whether an error leaves the connection's stream in an unknown state (or, NOAUTH, the
 * server closed it). */
static bool breaks_stream(int error) {
    return error == STRATA_ERR_TIMEOUT || error == STRATA_ERR_CLOSED ||
           error == STRATA_ERR_NOAUTH || error == STRATA_ERR_PROTOCOL ||
           error == STRATA_ERR_SYSTEM || error == STRATA_ERR_VERSION ||
           error == STRATA_ERR_TOO_LARGE || error == STRATA_ERR_NO_MEMORY;
}

/* Sends AUTH with the client's credentials on the new CONNECTION (after its TLS
 * handshake, if any) and reads the answer. Returns 0, or an error (STRATA_ERR_WRONGPASS,
 * STRATA_ERR_THROTTLED, a network error); the caller then closes CONNECTION. */
static int authenticate(strata_client *client, struct connection *connection) {
    int64_t deadline = now_ms() + client->timeout_ms;
    struct request request;
    if (!request_start(client, &request, STRATA_OP_AUTH, 1, 0, false)) {
        request_free(&request);
        return STRATA_ERR_NO_MEMORY;
    }
    size_t user_length = client->user != NULL ? strlen(client->user) : 0;
    size_t password_length = strlen(client->password);
    unsigned char entry[STRATA_AUTH_ENTRY_SIZE];
    strata_store32(entry, (uint32_t)user_length);
    strata_store32(entry + 4, (uint32_t)password_length);
    bool ok = request_add(&request, entry, sizeof(entry)) &&
              request_add(&request, client->user, user_length) &&
              request_add(&request, client->password, password_length);
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    int error =
        ok ? exchange(client, connection, &request, header, deadline) : STRATA_ERR_NO_MEMORY;
    request_free(&request);
    return error;
}

/* Registers the client's region on CONNECTION if it is not yet. */
static int register_shm(strata_client *client, struct connection *connection, int64_t deadline) {
    if (client->shm == NULL || connection->shm_registered) return 0;
    struct request request;
    if (!request_start(client, &request, STRATA_OP_SHM_REGISTER, 1, 0, false)) {
        request_free(&request);
        return STRATA_ERR_NO_MEMORY;
    }
    /* The memfd itself travels with the frame (SCM_RIGHTS on the Unix socket). */
    request.descriptor = client->shm_fd;
    unsigned char entry[STRATA_SHM_ENTRY_SIZE];
    strata_store64(entry, 0);
    strata_store64(entry + 8, client->shm_size);
    int error = request_add(&request, entry, sizeof(entry)) ? 0 : STRATA_ERR_NO_MEMORY;
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    if (error == 0) error = exchange(client, connection, &request, header, deadline);
    request_free(&request);
    if (error == 0) connection->shm_registered = true;
    return error;
}

/* Takes a connection and registers shared memory on it. */
static struct connection *begin_call(strata_client *client, int64_t *deadline, int *error) {
    *deadline = now_ms() + client->timeout_ms;
    struct connection *connection = acquire(client, error);
    if (connection == NULL) return NULL;
    *error = register_shm(client, connection, *deadline);
    if (*error != 0) {
        release(client, connection, breaks_stream(*error));
        return NULL;
    }
    return connection;
}

/* The start shared by the batch calls: scratch room for COUNT fixed entries of
 * ENTRY_SIZE bytes (*ENTRIES, the caller frees it) and a connection. Returns the
 * connection, or NULL with *ERROR set (nothing to free). */
static struct connection *begin_batch(strata_client *client, size_t entry_size, size_t count,
                                      unsigned char **entries, int64_t *deadline, int *error) {
    *entries = malloc(count ? count * entry_size : 1);
    if (*entries == NULL) {
        *error = STRATA_ERR_NO_MEMORY;
        return NULL;
    }
    struct connection *connection = begin_call(client, deadline, error);
    if (connection == NULL) free(*entries);
    return connection;
}

/* The offset of [DATA, DATA+LENGTH) in the shared region, or -1 if not wholly in it. */
static int64_t shm_offset(const strata_client *client, const void *data, size_t length) {
    if (client->shm == NULL || data == NULL) return -1;
    const unsigned char *bytes = data;
    if (bytes < client->shm || bytes > client->shm + client->shm_size) return -1;
    size_t offset = (size_t)(bytes - client->shm);
    if (length > client->shm_size - offset) return -1;
    return (int64_t)offset;
}

/* ---- the calls ------------------------------------------------------------------- */

/* Builds the client's SSL_CTX from CONFIG's TLS fields. Returns 0 or STRATA_ERR_INVALID
 * (a file that does not load) or STRATA_ERR_NO_MEMORY. */
static int tls_setup(strata_client *client, const struct strata_config *config) {
    snprintf(client->tls_server_name, sizeof(client->tls_server_name), "%s",
             config->tls_server_name ? config->tls_server_name : client->host);
    client->tls = SSL_CTX_new(TLS_client_method());
    if (client->tls == NULL) return STRATA_ERR_NO_MEMORY;
    SSL_CTX_set_min_proto_version(client->tls, TLS1_2_VERSION);
    SSL_CTX_set_mode(client->tls, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(client->tls, 1); /* a record in one read(), not a header and a body */
    SSL_CTX_set_verify(client->tls, SSL_VERIFY_PEER, NULL);
    int loaded = config->tls_ca_file
                     ? SSL_CTX_load_verify_locations(client->tls, config->tls_ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(client->tls);
    if (loaded != 1 ||
        (config->tls_cert_file != NULL &&
         SSL_CTX_use_certificate_chain_file(client->tls, config->tls_cert_file) != 1) ||
        (config->tls_key_file != NULL &&
         SSL_CTX_use_PrivateKey_file(client->tls, config->tls_key_file, SSL_FILETYPE_PEM) != 1)) {
        ERR_clear_error();
        return STRATA_ERR_INVALID;
    }
    return 0;
}

int strata_connect(const struct strata_config *config, strata_client **result) {
    *result = NULL;
    struct strata_config defaults = {0};
    if (config == NULL) config = &defaults;
    const char *name_space = config->name_space ? config->name_space : "default";
    if (strlen(name_space) == 0 || strlen(name_space) > 255) return STRATA_ERR_INVALID;
    if ((config->unix_socket != NULL &&
         (config->unix_socket[0] == '\0' || strlen(config->unix_socket) >= 108 || config->tls)) ||
        (config->user != NULL && strlen(config->user) > 128) ||
        (config->password != NULL && strlen(config->password) > 1024)) {
        return STRATA_ERR_INVALID;
    }
    if (config->connections < 0 || config->connections > MAX_CONNECTIONS || config->port < 0 ||
        config->port > 65535 || config->timeout_ms < 0) {
        return STRATA_ERR_INVALID;
    }
    strata_client *client = calloc(1, sizeof(*client));
    if (client == NULL) return STRATA_ERR_NO_MEMORY;
    snprintf(client->host, sizeof(client->host), "%s", config->host ? config->host : "127.0.0.1");
    if (config->unix_socket != NULL)
        snprintf(client->unix_socket, sizeof(client->unix_socket), "%s", config->unix_socket);
    client->port = config->port ? config->port : DEFAULT_PORT;
    snprintf(client->name_space, sizeof(client->name_space), "%s", name_space);
    client->name_space_length = strlen(client->name_space);
    client->timeout_ms = config->timeout_ms ? config->timeout_ms : DEFAULT_TIMEOUT_MS;
    client->connection_count = config->connections ? config->connections : DEFAULT_CONNECTIONS;
    client->shm_fd = -1;
    client->authenticate = config->user != NULL || config->password != NULL;
    client->user = config->user != NULL ? strdup(config->user) : NULL;
    client->password = strdup(config->password != NULL ? config->password : "");
    client->connections = calloc((size_t)client->connection_count, sizeof(struct connection));
    if (client->connections == NULL || client->password == NULL ||
        (config->user != NULL && client->user == NULL)) {
        free(client->connections);
        free(client->user);
        free(client->password);
        free(client);
        return STRATA_ERR_NO_MEMORY;
    }
    for (int i = 0; i < client->connection_count; i++)
        client->connections[i].fd = -1;
    pthread_mutex_init(&client->lock, NULL);
    pthread_cond_init(&client->available, NULL);
    int error = config->tls ? tls_setup(client, config) : 0;
    if (error == 0) error = strata_ping(client);
    if (error != 0) {
        strata_close(client);
        return error;
    }
    *result = client;
    return 0;
}

void strata_close(strata_client *client) {
    if (client == NULL) return;
    for (int i = 0; i < client->connection_count; i++)
        close_connection(&client->connections[i]);
    SSL_CTX_free(client->tls);
    if (client->shm != NULL) munmap(client->shm, client->shm_size);
    if (client->shm_fd >= 0) close(client->shm_fd);
    pthread_mutex_destroy(&client->lock);
    pthread_cond_destroy(&client->available);
    free(client->connections);
    free(client->user);
    if (client->password != NULL) {
        explicit_bzero(client->password, strlen(client->password));
        free(client->password);
    }
    free(client);
}

int strata_ping(strata_client *client) {
    int64_t deadline;
    int error;
    struct connection *connection = begin_call(client, &deadline, &error);
    if (connection == NULL) return error;
    struct request request;
    error = request_start(client, &request, STRATA_OP_PING, 0, 0, false) ? 0 : STRATA_ERR_NO_MEMORY;
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    if (error == 0) error = exchange(client, connection, &request, header, deadline);
    request_free(&request);
    release(client, connection, breaks_stream(error));
    return error;
}

/* Reads COUNT i32 statuses that answer a request into STATUSES. */
static int read_statuses(struct connection *connection, const unsigned char *header, size_t count,
                         int *statuses, int64_t deadline) {
    if (strata_load32(header + 24) != count || strata_load64(header + 16) != (uint64_t)count * 4) {
        return STRATA_ERR_PROTOCOL;
    }
    unsigned char buffer[4096];
    size_t done = 0;
    while (done < count) {
        size_t piece = count - done < sizeof(buffer) / 4 ? count - done : sizeof(buffer) / 4;
        int error = receive_all(connection, buffer, piece * 4, deadline);
        if (error != 0) return error;
        for (size_t i = 0; i < piece; i++)
            statuses[done + i] = (int32_t)strata_load32(buffer + 4 * i);
        done += piece;
    }
    return 0;
}

int strata_put_batch(strata_client *client, struct strata_put_item *items, size_t count) {
    if (count > (1u << 20) || (count > 0 && items == NULL)) return STRATA_ERR_INVALID;
    for (size_t i = 0; i < count; i++) {
        if (items[i].key == NULL || items[i].key_length == 0 || items[i].key_length > 65536 ||
            (items[i].value == NULL && items[i].value_length > 0) ||
            (items[i].parent != NULL &&
             (items[i].parent_length == 0 || items[i].parent_length > 65536))) {
            return STRATA_ERR_INVALID;
        }
    }
    unsigned char *entries;
    int64_t deadline;
    int error;
    struct connection *connection =
        begin_batch(client, STRATA_PUT_ENTRY_SIZE, count, &entries, &deadline, &error);
    if (connection == NULL) return error;
    struct request request;
    bool ok = request_start(client, &request, STRATA_OP_PUT, (uint32_t)count, 0, true);
    for (size_t i = 0; ok && i < count; i++) {
        struct strata_put_item *item = &items[i];
        unsigned char *entry = entries + i * STRATA_PUT_ENTRY_SIZE;
        memset(entry, 0, STRATA_PUT_ENTRY_SIZE);
        uint32_t flags = item->flags & (STRATA_PUT_IF_ABSENT | STRATA_PUT_DURABLE);
        if (item->fingerprint != NULL) {
            flags |= STRATA_PUT_FINGERPRINT;
            memcpy(entry + 32, item->fingerprint, 16);
        }
        if (item->parent != NULL) flags |= STRATA_PUT_PARENT;
        int64_t offset = shm_offset(client, item->value, item->value_length);
        if (offset >= 0) {
            flags |= STRATA_PUT_SHM;
            strata_store64(entry + 48, (uint64_t)offset);
        }
        strata_store32(entry, (uint32_t)item->key_length);
        strata_store32(entry + 4, flags);
        strata_store64(entry + 8, item->value_length);
        strata_store64(entry + 16, item->ttl_ms);
        strata_store32(entry + 24, strata_checksum(item->value, item->value_length));
        strata_store32(entry + 28, item->parent != NULL ? (uint32_t)item->parent_length : 0);
        ok = request_add(&request, entry, STRATA_PUT_ENTRY_SIZE) &&
             request_add(&request, item->key, item->key_length) &&
             (item->parent == NULL || request_add(&request, item->parent, item->parent_length)) &&
             (offset >= 0 || request_add(&request, item->value, item->value_length));
    }
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    error = ok ? exchange(client, connection, &request, header, deadline) : STRATA_ERR_NO_MEMORY;
    int *statuses = NULL;
    if (error == 0) {
        statuses = malloc(count ? count * sizeof(int) : 1);
        error = statuses == NULL ? STRATA_ERR_NO_MEMORY
                                 : read_statuses(connection, header, count, statuses, deadline);
    }
    if (error == 0) {
        for (size_t i = 0; i < count; i++)
            items[i].status = statuses[i];
    }
    free(statuses);
    request_free(&request);
    free(entries);
    release(client, connection, breaks_stream(error) || (!ok && error != 0));
    return error;
}

int strata_get_batch(strata_client *client, struct strata_get_item *items, size_t count) {
    if (count > (1u << 20) || (count > 0 && items == NULL)) return STRATA_ERR_INVALID;
    for (size_t i = 0; i < count; i++) {
        if (items[i].key == NULL || items[i].key_length == 0 || items[i].key_length > 65536 ||
            (items[i].buffer == NULL && items[i].capacity > 0)) {
            return STRATA_ERR_INVALID;
        }
    }
    unsigned char *entries;
    int64_t deadline;
    int error;
    struct connection *connection =
        begin_batch(client, STRATA_GET_ENTRY_SIZE, count, &entries, &deadline, &error);
    if (connection == NULL) return error;
    struct request request;
    bool ok = request_start(client, &request, STRATA_OP_GET, (uint32_t)count, 0, true);
    for (size_t i = 0; ok && i < count; i++) {
        struct strata_get_item *item = &items[i];
        unsigned char *entry = entries + i * STRATA_GET_ENTRY_SIZE;
        memset(entry, 0, STRATA_GET_ENTRY_SIZE);
        uint32_t flags = 0;
        if (item->fingerprint != NULL) {
            flags |= STRATA_GET_FINGERPRINT;
            memcpy(entry + 24, item->fingerprint, 16);
        }
        int64_t offset = shm_offset(client, item->buffer, item->capacity);
        if (offset >= 0) {
            flags |= STRATA_GET_SHM;
            strata_store64(entry + 16, (uint64_t)offset);
        }
        strata_store32(entry, (uint32_t)item->key_length);
        strata_store32(entry + 4, flags);
        strata_store64(entry + 8, item->capacity);
        ok = request_add(&request, entry, STRATA_GET_ENTRY_SIZE) &&
             request_add(&request, item->key, item->key_length);
    }
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    error = ok ? exchange(client, connection, &request, header, deadline) : STRATA_ERR_NO_MEMORY;
    if (error == 0 && strata_load32(header + 24) != count) error = STRATA_ERR_PROTOCOL;
    for (size_t i = 0; error == 0 && i < count; i++) {
        struct strata_get_item *item = &items[i];
        unsigned char result[STRATA_GET_RESULT_SIZE];
        error = receive_all(connection, result, sizeof(result), deadline);
        if (error != 0) break;
        item->status = (int32_t)strata_load32(result);
        uint32_t checksum = strata_load32(result + 4);
        uint64_t length = strata_load64(result + 8);
        item->value_length = (size_t)length;
        if (item->status != STRATA_OK) continue;
        if (length > item->capacity) {
            error = STRATA_ERR_PROTOCOL; /* the server sent more than the buffer holds */
            break;
        }
        bool in_shm = shm_offset(client, item->buffer, item->capacity) >= 0;
        if (!in_shm) error = receive_all(connection, item->buffer, (size_t)length, deadline);
        if (error == 0 && strata_checksum(item->buffer, (size_t)length) != checksum) {
            item->status = STRATA_ERR_CHECKSUM;
        }
    }
    request_free(&request);
    free(entries);
    release(client, connection, breaks_stream(error) || (!ok && error != 0));
    return error;
}

/* The key-entry calls: EXISTS, DELETE, TOUCH, PIN, UNPIN and MATCH_PREFIX. */
static int key_call(strata_client *client, uint8_t opcode, const struct strata_key *keys,
                    size_t count, int32_t argument, int *statuses, size_t *matched) {
    if (count > (1u << 20) || (count > 0 && keys == NULL)) return STRATA_ERR_INVALID;
    for (size_t i = 0; i < count; i++) {
        if (keys[i].key == NULL || keys[i].key_length == 0 || keys[i].key_length > 65536) {
            return STRATA_ERR_INVALID;
        }
    }
    unsigned char *lengths;
    int64_t deadline;
    int error;
    struct connection *connection =
        begin_batch(client, STRATA_KEY_ENTRY_SIZE, count, &lengths, &deadline, &error);
    if (connection == NULL) return error;
    struct request request;
    bool ok = request_start(client, &request, opcode, (uint32_t)count, argument, true);
    for (size_t i = 0; ok && i < count; i++) {
        strata_store32(lengths + 4 * i, (uint32_t)keys[i].key_length);
        ok = request_add(&request, lengths + 4 * i, 4) &&
             request_add(&request, keys[i].key, keys[i].key_length);
    }
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    error = ok ? exchange(client, connection, &request, header, deadline) : STRATA_ERR_NO_MEMORY;
    if (error == 0 && opcode == STRATA_OP_MATCH_PREFIX) {
        unsigned char body[4];
        if (strata_load64(header + 16) != 4) {
            error = STRATA_ERR_PROTOCOL;
        } else {
            error = receive_all(connection, body, 4, deadline);
            if (error == 0) *matched = strata_load32(body);
        }
    } else if (error == 0) {
        error = read_statuses(connection, header, count, statuses, deadline);
    }
    request_free(&request);
    free(lengths);
    release(client, connection, breaks_stream(error) || (!ok && error != 0));
    return error;
}

int strata_exists_batch(strata_client *client, const struct strata_key *keys, size_t count,
                        int *statuses) {
    return key_call(client, STRATA_OP_EXISTS, keys, count, 0, statuses, NULL);
}

int strata_delete_batch(strata_client *client, const struct strata_key *keys, size_t count,
                        int *statuses) {
    return key_call(client, STRATA_OP_DELETE, keys, count, 0, statuses, NULL);
}

int strata_touch_batch(strata_client *client, const struct strata_key *keys, size_t count,
                       int *statuses) {
    return key_call(client, STRATA_OP_TOUCH, keys, count, 0, statuses, NULL);
}

int strata_pin_batch(strata_client *client, const struct strata_key *keys, size_t count,
                     uint32_t lease_ms, int *statuses) {
    if (lease_ms == 0 || lease_ms > 3600000) return STRATA_ERR_INVALID;
    return key_call(client, STRATA_OP_PIN, keys, count, (int32_t)lease_ms, statuses, NULL);
}

int strata_unpin_batch(strata_client *client, const struct strata_key *keys, size_t count,
                       int *statuses) {
    return key_call(client, STRATA_OP_UNPIN, keys, count, 0, statuses, NULL);
}

int strata_match_prefix(strata_client *client, const struct strata_key *keys, size_t count,
                        uint32_t lease_ms, size_t *matched) {
    if (lease_ms > 3600000 || matched == NULL) return STRATA_ERR_INVALID;
    *matched = 0;
    return key_call(client, STRATA_OP_MATCH_PREFIX, keys, count, (int32_t)lease_ms, NULL, matched);
}

int strata_put(strata_client *client, const void *key, size_t key_length, const void *value,
               size_t value_length) {
    struct strata_put_item item = {
        .key = key, .key_length = key_length, .value = value, .value_length = value_length};
    int error = strata_put_batch(client, &item, 1);
    return error != 0 ? error : item.status;
}

int strata_get(strata_client *client, const void *key, size_t key_length, void *buffer,
               size_t capacity, size_t *value_length) {
    struct strata_get_item item = {
        .key = key, .key_length = key_length, .buffer = buffer, .capacity = capacity};
    int error = strata_get_batch(client, &item, 1);
    if (value_length != NULL) *value_length = item.value_length;
    return error != 0 ? error : item.status;
}

int strata_shm_create(strata_client *client, size_t size, void **region) {
    if (size == 0 || region == NULL || client->shm != NULL) return STRATA_ERR_INVALID;
    if (client->unix_socket[0] == '\0') return STRATA_ERR_SHM; /* the memfd needs the socket */
    int fd = memfd_create("strata-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return STRATA_ERR_SYSTEM;
    if (ftruncate(fd, (off_t)size) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        close(fd);
        return STRATA_ERR_SYSTEM;
    }
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return STRATA_ERR_SYSTEM;
    }
    pthread_mutex_lock(&client->lock);
    client->shm_fd = fd;
    client->shm = map;
    client->shm_size = size;
    pthread_mutex_unlock(&client->lock);
    *region = map;
    /* Register on one connection now, so an unusable region fails here. */
    return strata_ping(client);
}

int strata_kv_key(const unsigned char *parent, const uint32_t *tokens, size_t token_count,
                  const void *extra, size_t extra_length, unsigned char key[32]) {
    if ((tokens == NULL && token_count > 0) || (extra == NULL && extra_length > 0) ||
        token_count > UINT32_MAX || extra_length > UINT32_MAX || key == NULL) {
        return STRATA_ERR_INVALID;
    }
    static const unsigned char zero[32];
    static const char domain[] = "strata-kv-v1";
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (context == NULL) return STRATA_ERR_NO_MEMORY;
    unsigned char number[4];
    bool ok = EVP_DigestInit_ex(context, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(context, domain, sizeof(domain) - 1) == 1 &&
              EVP_DigestUpdate(context, parent != NULL ? parent : zero, 32) == 1;
    strata_store32(number, (uint32_t)token_count);
    ok = ok && EVP_DigestUpdate(context, number, 4) == 1;
    unsigned char buffer[1024];
    size_t done = 0;
    while (ok && done < token_count) {
        size_t piece =
            token_count - done < sizeof(buffer) / 4 ? token_count - done : sizeof(buffer) / 4;
        for (size_t i = 0; i < piece; i++)
            strata_store32(buffer + 4 * i, tokens[done + i]);
        ok = EVP_DigestUpdate(context, buffer, piece * 4) == 1;
        done += piece;
    }
    strata_store32(number, (uint32_t)extra_length);
    ok = ok && EVP_DigestUpdate(context, number, 4) == 1 &&
         (extra_length == 0 || EVP_DigestUpdate(context, extra, extra_length) == 1);
    unsigned int length = 0;
    ok = ok && EVP_DigestFinal_ex(context, key, &length) == 1 && length == 32;
    EVP_MD_CTX_free(context);
    return ok ? 0 : STRATA_ERR_SYSTEM;
}
