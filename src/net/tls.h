/* TLS for the network layer, with OpenSSL 3 (docs/tls.md).
 *
 * A tls_server holds the SSL_CTX built from --tls-cert, --tls-key, --tls-ca and
 * --tls-client-auth. net.c makes one SSL per connection on a TLS listener and drives it
 * with the tri-state calls below on the connection's worker thread; the protocols never
 * see TLS. tls_server_reload() (SIGHUP, main thread) builds a new SSL_CTX and swaps it
 * in: new connections use it, open ones keep the one they started with (an SSL holds a
 * reference to its SSL_CTX). */
#ifndef STRATA_NET_TLS_H
#define STRATA_NET_TLS_H

#include "base/options.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct ssl_st SSL;

struct tls_server;

/* The checks on the TLS options that involve more than one of them (the net option
 * group's validate hook): a certificate without a key or the reverse, client
 * certificates without a CA bundle. Returns 0, or -1 with what to do in ERROR. */
int tls_options_validate(const struct options *options, char *error, size_t error_size);

/* Builds the TLS server from OPTIONS. Returns 0 with *SERVER set (NULL when TLS is off:
 * no --tls-cert), or -1 with a reason naming the file and OpenSSL's words in ERROR. The
 * caller owns *SERVER (tls_server_destroy()). OPTIONS is read again by reloads. */
int tls_server_create(const struct options *options, struct tls_server **server, char *error,
                      size_t error_size);

/* Reads the certificate, key and CA files again and, if they load, makes them the ones
 * new connections use. Returns 0, or -1 with the reason in ERROR (the old ones stay).
 * Any thread; safe while workers accept connections. */
int tls_server_reload(struct tls_server *server, char *error, size_t error_size);

/* Frees the server. Connections still open keep their SSL_CTX until their SSL is freed. */
void tls_server_destroy(struct tls_server *server);

/* Seconds a client has to finish the handshake (--tls-handshake-timeout). */
int tls_server_handshake_timeout(const struct tls_server *server);

/* A new server-side SSL on socket FD, or NULL (out of memory). Any thread; the caller
 * owns it and frees it with tls_session_free(). */
SSL *tls_session_new(struct tls_server *server, int fd);

/* Sends close_notify without waiting (best effort, the socket is non-blocking) if the
 * handshake had finished and no call FAILED fatally, and frees SSL. NULL is allowed. */
void tls_session_free(SSL *ssl, bool failed);

/* The outcome of a non-blocking TLS call. */
enum tls_status {
    TLS_OK = 0,     /* done, or some bytes moved */
    TLS_WANT_READ,  /* call again when the socket is readable */
    TLS_WANT_WRITE, /* call again when the socket is writable */
    TLS_CLOSED,     /* the peer closed the connection (close_notify or end of stream) */
    TLS_ERROR,      /* the connection is unusable; the reason is in the call's ERROR */
};

/* Takes the handshake a step further. TLS_OK: finished. On TLS_ERROR, REASON (may be
 * NULL) gets OpenSSL's words, and *PLAINTEXT_HTTP is set when the client spoke plain
 * HTTP to the TLS port. */
enum tls_status tls_handshake(SSL *ssl, char *reason, size_t reason_size, bool *plaintext_http);

/* Reads up to LENGTH decrypted bytes into BUFFER, as many as OpenSSL has and the socket
 * gives without blocking. TLS_OK with *GOT > 0 when any arrived; otherwise the status
 * says what to wait for (or that the stream ended or broke). */
enum tls_status tls_read(SSL *ssl, void *buffer, size_t length, size_t *got);

/* Writes up to LENGTH bytes from DATA (at most one record's worth per call in partial
 * mode). TLS_OK with *WRITTEN > 0, or what to wait for. After TLS_WANT_*, the next call
 * must offer the same bytes again (at the same or another address, at least as many). */
enum tls_status tls_write(SSL *ssl, const void *data, size_t length, size_t *written);

/* True when OpenSSL holds input already read from the socket (decrypted or not) that a
 * tls_read() would return without the socket becoming readable again. */
bool tls_has_pending(SSL *ssl);

/* After a finished handshake: the verified client certificate's subject CN into NAME
 * (empty when the client sent none), and whether kernel TLS took over sending and
 * receiving. */
void tls_session_describe(SSL *ssl, char *name, size_t name_size, bool *ktls_send, bool *ktls_recv);

/* Largest plaintext of one TLS record: the unit small replies are gathered into. */
#define TLS_RECORD_SIZE (16 * 1024)

#endif
