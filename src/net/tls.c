/* TLS with OpenSSL 3 (see tls.h and docs/tls.md). */
#include "net/tls.h"

#include "net/net.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum client_auth { CLIENT_AUTH_OFF = 0, CLIENT_AUTH_OPTIONAL, CLIENT_AUTH_REQUIRED };

struct tls_server {
    const struct options *options;
    pthread_mutex_t lock; /* guards context: a reload swaps it while workers make SSLs */
    SSL_CTX *context;
};

/* OpenSSL's words for the last error on this thread's queue into OUTPUT, and the
 * queue emptied. FALLBACK when the queue is empty. */
static void openssl_reason(char *output, size_t output_size, const char *fallback) {
    unsigned long code = ERR_peek_last_error();
    const char *reason = code != 0 ? ERR_reason_error_string(code) : NULL;
    if (reason != NULL) {
        snprintf(output, output_size, "%s", reason);
    } else if (code != 0) {
        ERR_error_string_n(code, output, output_size);
    } else {
        snprintf(output, output_size, "%s", fallback);
    }
    ERR_clear_error();
}

/* Fails with "cannot read --OPTION 'PATH': why" unless PATH can be opened for reading
 * (OpenSSL's own words for a missing file are less clear). */
static int check_readable(const char *option, const char *path, char *error, size_t error_size) {
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        snprintf(error, error_size, "cannot read --%s '%s': %s", option, path, strerror(errno));
        return -1;
    }
    fclose(file);
    return 0;
}

int tls_options_validate(const struct options *options, char *error, size_t error_size) {
    const char *cert = options_text(options, NET_OPTION(tls_cert));
    const char *key = options_text(options, NET_OPTION(tls_key));
    const char *ca = options_text(options, NET_OPTION(tls_ca));
    int64_t auth = options_number(options, NET_OPTION(tls_client_auth));
    if (cert[0] != '\0' && key[0] == '\0') {
        snprintf(error, error_size,
                 "--tls-cert is given without --tls-key: give both to turn TLS on, or neither");
        return -1;
    }
    if (key[0] != '\0' && cert[0] == '\0') {
        snprintf(error, error_size,
                 "--tls-key is given without --tls-cert: give both to turn TLS on, or neither");
        return -1;
    }
    if (auth != CLIENT_AUTH_OFF && cert[0] == '\0') {
        snprintf(error, error_size,
                 "--tls-client-auth %s needs TLS: give --tls-cert and --tls-key as well",
                 auth == CLIENT_AUTH_REQUIRED ? "required" : "optional");
        return -1;
    }
    if (auth != CLIENT_AUTH_OFF && ca[0] == '\0') {
        snprintf(error, error_size,
                 "--tls-client-auth %s needs --tls-ca FILE, the CA bundle that signs the "
                 "client certificates",
                 auth == CLIENT_AUTH_REQUIRED ? "required" : "optional");
        return -1;
    }
    if (ca[0] != '\0' && cert[0] == '\0') {
        snprintf(error, error_size,
                 "--tls-ca is given without --tls-cert and --tls-key: give them to turn TLS on");
        return -1;
    }
    return 0;
}

/* Builds an SSL_CTX from the option values. Returns it, or NULL with a reason in ERROR. */
static SSL_CTX *build_context(const struct options *options, char *error, size_t error_size) {
    const char *cert = options_text(options, NET_OPTION(tls_cert));
    const char *key = options_text(options, NET_OPTION(tls_key));
    const char *ca = options_text(options, NET_OPTION(tls_ca));
    int64_t auth = options_number(options, NET_OPTION(tls_client_auth));
    bool ktls = options_number(options, NET_OPTION(tls_ktls)) == 0; /* yes|no */
    if (check_readable("tls-cert", cert, error, error_size) != 0 ||
        check_readable("tls-key", key, error, error_size) != 0 ||
        (ca[0] != '\0' && check_readable("tls-ca", ca, error, error_size) != 0)) {
        return NULL;
    }
    char reason[256];
    ERR_clear_error();
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());
    if (context == NULL) {
        openssl_reason(reason, sizeof(reason), "out of memory");
        snprintf(error, error_size, "cannot set up TLS: %s", reason);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    uint64_t flags = SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                     SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION;
    if (ktls) flags |= SSL_OP_ENABLE_KTLS;
    SSL_CTX_set_options(context, flags);
    /* TLS 1.3: AES-128-GCM first (OpenSSL's default puts AES-256 first). Both are strong;
     * AES-128 takes about 30 % less CPU on each side, which is what bounds a large GET
     * without kTLS (docs/tls.md). */
    SSL_CTX_set_ciphersuites(context, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                      "TLS_CHACHA20_POLY1305_SHA256");
    /* Partial writes: SSL_write returns after each record, so the output queue can be
     * consumed record by record; a retry may come from another address (the gathered
     * small replies are gathered again) as long as the bytes are the same. */
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read ahead: a record comes in one read() rather than a header read and a body read. */
    SSL_CTX_set_read_ahead(context, 1);
    static const unsigned char session_context[] = "strata";
    SSL_CTX_set_session_id_context(context, session_context, sizeof(session_context) - 1);
    if (SSL_CTX_use_certificate_chain_file(context, cert) != 1) {
        openssl_reason(reason, sizeof(reason), "unknown error");
        snprintf(error, error_size, "cannot load --tls-cert '%s': %s", cert, reason);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) != 1) {
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        openssl_reason(reason, sizeof(reason), "unknown error");
        if (mismatch) {
            snprintf(error, error_size, "--tls-key '%s' does not match --tls-cert '%s': %s", key,
                     cert, reason);
        } else {
            snprintf(error, error_size, "cannot load --tls-key '%s': %s", key, reason);
        }
        goto fail;
    }
    if (SSL_CTX_check_private_key(context) != 1) {
        openssl_reason(reason, sizeof(reason), "unknown error");
        snprintf(error, error_size, "--tls-key '%s' does not match --tls-cert '%s': %s", key, cert,
                 reason);
        goto fail;
    }
    if (ca[0] != '\0') {
        if (SSL_CTX_load_verify_locations(context, ca, NULL) != 1) {
            openssl_reason(reason, sizeof(reason), "unknown error");
            snprintf(error, error_size, "cannot load --tls-ca '%s': %s", ca, reason);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names != NULL) SSL_CTX_set_client_CA_list(context, names);
        ERR_clear_error();
    }
    if (auth == CLIENT_AUTH_OPTIONAL) SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
    if (auth == CLIENT_AUTH_REQUIRED)
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return context;

fail:
    SSL_CTX_free(context);
    return NULL;
}

int tls_server_create(const struct options *options, struct tls_server **result, char *error,
                      size_t error_size) {
    *result = NULL;
    if (options_text(options, NET_OPTION(tls_cert))[0] == '\0') return 0; /* TLS is off */
    if (tls_options_validate(options, error, error_size) != 0) return -1;
    struct tls_server *server = calloc(1, sizeof(*server));
    if (server == NULL) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    server->options = options;
    pthread_mutex_init(&server->lock, NULL);
    server->context = build_context(options, error, error_size);
    if (server->context == NULL) {
        tls_server_destroy(server);
        return -1;
    }
    *result = server;
    return 0;
}

int tls_server_reload(struct tls_server *server, char *error, size_t error_size) {
    SSL_CTX *fresh = build_context(server->options, error, error_size);
    if (fresh == NULL) return -1;
    pthread_mutex_lock(&server->lock);
    SSL_CTX *old = server->context;
    server->context = fresh;
    pthread_mutex_unlock(&server->lock);
    SSL_CTX_free(old); /* connections made with it hold their own references */
    return 0;
}

void tls_server_destroy(struct tls_server *server) {
    if (server == NULL) return;
    SSL_CTX_free(server->context);
    pthread_mutex_destroy(&server->lock);
    free(server);
}

int tls_server_handshake_timeout(const struct tls_server *server) {
    return (int)options_number(server->options, NET_OPTION(tls_handshake_timeout));
}

SSL *tls_session_new(struct tls_server *server, int fd) {
    pthread_mutex_lock(&server->lock);
    SSL *ssl = SSL_new(server->context);
    pthread_mutex_unlock(&server->lock);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void tls_session_free(SSL *ssl, bool failed) {
    if (ssl == NULL) return;
    /* close_notify, once, without waiting for the peer's; never after a fatal error. */
    if (!failed && SSL_is_init_finished(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
        ERR_clear_error();
        (void)SSL_shutdown(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
}

/* Maps a failed call's SSL_get_error() to a status, with OpenSSL's reason in REASON. */
static enum tls_status failure(SSL *ssl, int result, char *reason, size_t reason_size) {
    int saved_errno = errno;
    int code = SSL_get_error(ssl, result);
    switch (code) {
    case SSL_ERROR_WANT_READ:
        return TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        if (reason != NULL) snprintf(reason, reason_size, "closed by the peer");
        ERR_clear_error();
        return TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (reason != NULL) {
            if (ERR_peek_last_error() != 0) {
                openssl_reason(reason, reason_size, "system error");
            } else {
                snprintf(reason, reason_size, "%s",
                         saved_errno != 0 ? strerror(saved_errno)
                                          : "connection closed by the peer");
            }
        }
        ERR_clear_error();
        return saved_errno == 0 ? TLS_CLOSED : TLS_ERROR;
    default:
        if (reason != NULL) {
            char words[160];
            openssl_reason(words, sizeof(words), "protocol error");
            long verify = SSL_get_verify_result(ssl);
            if (verify != X509_V_OK) {
                snprintf(reason, reason_size, "%s (%s)", words,
                         X509_verify_cert_error_string(verify));
            } else {
                snprintf(reason, reason_size, "%s", words);
            }
        }
        ERR_clear_error();
        return TLS_ERROR;
    }
}

enum tls_status tls_handshake(SSL *ssl, char *reason, size_t reason_size, bool *plaintext_http) {
    *plaintext_http = false;
    ERR_clear_error();
    errno = 0;
    int result = SSL_do_handshake(ssl);
    if (result == 1) return TLS_OK;
    unsigned long last = ERR_peek_last_error();
    if (ERR_GET_LIB(last) == ERR_LIB_SSL && ERR_GET_REASON(last) == SSL_R_HTTP_REQUEST)
        *plaintext_http = true;
    enum tls_status status = failure(ssl, result, reason, reason_size);
    /* The peer going away in the middle of a handshake is a failed handshake. */
    if (status == TLS_CLOSED) {
        if (reason != NULL) snprintf(reason, reason_size, "closed by the client mid-handshake");
        status = TLS_ERROR;
    }
    return status;
}

enum tls_status tls_read(SSL *ssl, void *buffer, size_t length, size_t *got) {
    *got = 0;
    unsigned char *cursor = buffer;
    while (*got < length) {
        ERR_clear_error();
        errno = 0;
        size_t read = 0;
        int result = SSL_read_ex(ssl, cursor + *got, length - *got, &read);
        if (result == 1) {
            *got += read;
            continue;
        }
        /* Bytes already read are handed over; the condition shows again on the next call. */
        if (*got > 0) {
            ERR_clear_error();
            return TLS_OK;
        }
        return failure(ssl, result, NULL, 0);
    }
    return TLS_OK;
}

enum tls_status tls_write(SSL *ssl, const void *data, size_t length, size_t *written) {
    ERR_clear_error();
    errno = 0;
    *written = 0;
    int result = SSL_write_ex(ssl, data, length, written);
    if (result == 1) return TLS_OK;
    return failure(ssl, result, NULL, 0);
}

bool tls_has_pending(SSL *ssl) {
    return SSL_has_pending(ssl) == 1;
}

void tls_session_describe(SSL *ssl, char *name, size_t name_size, bool *ktls_send,
                          bool *ktls_recv) {
    name[0] = '\0';
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer != NULL && SSL_get_verify_result(ssl) == X509_V_OK) {
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, name,
                                      (int)name_size) < 0) {
            name[0] = '\0';
        }
    }
    *ktls_send = BIO_get_ktls_send(SSL_get_wbio(ssl));
    *ktls_recv = BIO_get_ktls_recv(SSL_get_rbio(ssl));
    ERR_clear_error();
}
