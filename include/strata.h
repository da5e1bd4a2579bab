/* libstrata: the C client of strata's native protocol (docs/protocol.md), built as
 * libstrata.so and libstrata.a. Guide with examples: docs/kv-cache.md.
 *
 * Threads: a strata_client may be used by any number of threads at once. Each call
 * takes one connection from the client's pool for its duration (opening it if
 * needed), so up to `connections` calls run in parallel and others wait for a free
 * connection. Everything a call is given (keys, buffers) stays the caller's.
 *
 * Errors: functions return 0 (STRATA_OK) or a negative STRATA_ERR_* code (the list is
 * in strata_protocol.h); strata_strerror() names each one. Batch calls return 0 when
 * the server answered the batch, and put each entry's own status in its `status`.
 *
 * Integrity: strata_put_batch() sends a CRC32C of every value, which the server checks
 * on arrival and keeps; strata_get_batch() checks every value it receives against it
 * and reports STRATA_ERR_CHECKSUM (never the bytes as good) on a mismatch. A value
 * put with a 16-byte fingerprint is only returned to a GET that names the same one
 * (or none); another gets STRATA_ERR_FINGERPRINT.
 *
 * Zero copy: values are sent from, and received into, the caller's buffers. With a
 * shared memory region (strata_shm_create()), a value whose buffer lies inside the
 * region moves between the server's memory and the region with one copy, and only
 * descriptors travel on the socket. */
#ifndef STRATA_H
#define STRATA_H

#include "strata_protocol.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct strata_client strata_client;

struct strata_config {
    const char *host;       /* server address; NULL: "127.0.0.1" */
    int port;               /* native port; 0: 6380 */
    const char *name_space; /* namespace every call names; NULL: "default" */
    int timeout_ms;         /* longest a call waits for the network; 0: 10000 */
    int connections;        /* size of the connection pool; 0: 4 */
    /* TLS (docs/tls.md), for a server started with --tls-cert and --tls-key. Added at the
     * end of the struct: zero-initialize it ({0} or designated initializers), and a
     * program built against an older header must be rebuilt to use them. */
    int tls;                     /* 1: every connection speaks TLS (1.2 or newer); 0: plain */
    const char *tls_ca_file;     /* PEM CAs the server's certificate must chain to; NULL:
                                    the system's default CAs */
    const char *tls_cert_file;   /* PEM client certificate (--tls-client-auth), or NULL */
    const char *tls_key_file;    /* its private key, or NULL */
    const char *tls_server_name; /* the name (or IP address) the server's certificate must
                                    carry, also sent as SNI; NULL: host */
    /* Credentials (docs/security.md): with a user or a password set, every connection
     * sends AUTH before anything else; NULL for both: none sent (the server's "default"
     * user needs no password, or the Unix socket's peer uid names a user). */
    const char *user;     /* NULL: "default" */
    const char *password; /* NULL: "" */
    /* The server's Unix socket (--unix-socket PATH): connect there instead of host and
     * port. Needed for shared memory (strata_shm_create()). Never TLS: with tls set as
     * well, strata_connect() returns STRATA_ERR_INVALID. NULL: TCP. */
    const char *unix_socket;
};

/* Creates a client and opens its first connection (to fail early when the server is
 * not there, or refuses the credentials). Returns 0 with *CLIENT set, or a negative
 * error: STRATA_ERR_WRONGPASS (unknown user, wrong password, user off),
 * STRATA_ERR_THROTTLED (too many failures from this host lately), STRATA_ERR_NOAUTH
 * (the server wants credentials and none were given); with TLS, a certificate file that
 * does not load is STRATA_ERR_INVALID, and a failed handshake (a server certificate
 * that does not verify, a refused client certificate, a server not speaking TLS) is
 * STRATA_ERR_CONNECT. */
int strata_connect(const struct strata_config *config, strata_client **client);

/* Closes every connection, unmaps the shared memory region, frees the client. No call
 * may be in progress. */
void strata_close(strata_client *client);

/* One entry of a batch PUT. Fill the inputs; `status` is the output. */
struct strata_put_item {
    const void *key;
    size_t key_length; /* 1 to 65536 */
    const void *value;
    size_t value_length;
    const void *parent; /* the previous key of its chain, or NULL */
    size_t parent_length;
    const unsigned char *fingerprint; /* 16 bytes, or NULL */
    uint64_t ttl_ms;                  /* 0: no expiry */
    uint32_t flags;                   /* STRATA_PUT_IF_ABSENT, STRATA_PUT_DURABLE */
    int status;                       /* out: 0 or a STRATA_ERR_* */
};

/* Stores COUNT values. Entries are carried out in order (so a chain may be put parent
 * first in one batch), each with its own status. */
int strata_put_batch(strata_client *client, struct strata_put_item *items, size_t count);

/* One entry of a batch GET. */
struct strata_get_item {
    const void *key;
    size_t key_length;
    void *buffer;                     /* where the value goes */
    size_t capacity;                  /* bytes BUFFER holds */
    const unsigned char *fingerprint; /* 16 bytes the value must carry, or NULL */
    size_t value_length;              /* out: bytes written (with BUFFER_TOO_SMALL: needed) */
    int status;                       /* out: 0 or a STRATA_ERR_* */
};

/* Reads COUNT values into their buffers, checking each one's checksum. */
int strata_get_batch(strata_client *client, struct strata_get_item *items, size_t count);

struct strata_key {
    const void *key;
    size_t key_length;
};

/* Per key: 0 if present, else STRATA_ERR_NOT_FOUND (or another error) in STATUSES. */
int strata_exists_batch(strata_client *client, const struct strata_key *keys, size_t count,
                        int *statuses);
int strata_delete_batch(strata_client *client, const struct strata_key *keys, size_t count,
                        int *statuses);
/* Marks keys as used, for eviction. */
int strata_touch_batch(strata_client *client, const struct strata_key *keys, size_t count,
                       int *statuses);
/* Keeps keys from eviction for LEASE_MS (1 ms to an hour); UNPIN ends it early. */
int strata_pin_batch(strata_client *client, const struct strata_key *keys, size_t count,
                     uint32_t lease_ms, int *statuses);
int strata_unpin_batch(strata_client *client, const struct strata_key *keys, size_t count,
                       int *statuses);

/* KEYS is a chain in order. Sets *MATCHED to how many leading keys are present, in
 * one round trip; with LEASE_MS > 0 those keys are also pinned for that long, so they
 * are still there when the engine loads them. */
int strata_match_prefix(strata_client *client, const struct strata_key *keys, size_t count,
                        uint32_t lease_ms, size_t *matched);

/* Round trip with no work. */
int strata_ping(strata_client *client);

/* One-key conveniences over the batch calls: the entry's status is returned. */
int strata_put(strata_client *client, const void *key, size_t key_length, const void *value,
               size_t value_length);
int strata_get(strata_client *client, const void *key, size_t key_length, void *buffer,
               size_t capacity, size_t *value_length);

/* Creates a shared memory region of SIZE bytes (a memfd sealed against shrinking and
 * growing), maps it and sets *REGION. Every connection registers it with the server
 * before its next call, passing the memfd over the Unix socket (SCM_RIGHTS); from then
 * on, a PUT value or GET buffer lying wholly inside the region moves through it, under
 * the same rights as any other. Needs a client connected to the server's Unix socket
 * (strata_config.unix_socket): over TCP it returns STRATA_ERR_SHM. One region per
 * client; it is unmapped by strata_close(). */
int strata_shm_create(strata_client *client, size_t size, void **region);

/* The KV-cache key of a block (docs/kv-keys.md): SHA-256 over "strata-kv-v1", the
 * parent key (PARENT, 32 bytes; NULL for the first block: 32 zero bytes), the token
 * count and TOKEN_COUNT token ids as little-endian u32, and EXTRA_LENGTH bytes of
 * EXTRA (LoRA id, salt; NULL with 0) preceded by their length. Writes 32 bytes to KEY. */
int strata_kv_key(const unsigned char *parent, const uint32_t *tokens, size_t token_count,
                  const void *extra, size_t extra_length, unsigned char key[32]);

/* CRC32C (Castagnoli) of LENGTH bytes: the checksum PUT sends. */
uint32_t strata_checksum(const void *data, size_t length);

/* A short English description of a status code. */
const char *strata_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
