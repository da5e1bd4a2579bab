/* What each HTTP path answers:
 *   GET /            the status page (self-contained HTML)
 *   GET /metrics     Prometheus text format 0.0.4
 *   GET /health      200 while serving, 503 while starting, recovering or stopping
 *   GET /info        INFO as JSON
 *   GET /history     the status page's data: the last ten minutes, one point a second
 *   GET|HEAD|PUT|DELETE /keys/<key>   a value, by its percent-encoded key (docs/http.md)
 *
 * With --http-auth TOKEN every path but /health and /keys/ needs "Authorization: Bearer
 * TOKEN"; /keys/ needs a user's credentials once the server has users (docs/security.md).
 */
#include "access/access.h"
#include "base/base64.h"
#include "base/byte_buffer.h"
#include "engine/store.h"
#include "observe/stats.h"
#include "proto/http/http_internal.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The status page, embedded at build time from src/observe/status_page.html. */
extern const unsigned char status_page_html[];
extern const size_t status_page_html_length;

#define KEYS_PREFIX "/keys/"

static bool path_is(const struct http_request *request, const char *path) {
    return strlen(path) == request->path_length && memcmp(request->path, path, strlen(path)) == 0;
}

/* Answers 405 unless the method is GET or HEAD. Returns true when it answered. */
static bool refuse_unless_read(struct http_session *session) {
    enum http_method method = session->request.method;
    if (method == HTTP_GET || method == HTTP_HEAD) return false;
    http_respond_error(session, 405, "this path answers GET and HEAD", "Allow: GET, HEAD\r\n");
    return true;
}

/* Sends BUFFER's text as a 200 with CONTENT_TYPE, or a 500 if building it failed. */
static void respond_buffer(struct http_session *session, struct byte_buffer *buffer,
                           const char *content_type) {
    if (buffer->failed) {
        http_respond_error(session, 500, "out of memory", NULL);
    } else {
        http_respond(session, 200, content_type, buffer->data, buffer->length,
                     "Cache-Control: no-store\r\n");
    }
    byte_buffer_free(buffer);
}

static void route_health(struct http_session *session) {
    enum server_state state = stats_state(session->server->environment.stats);
    char text[128];
    if (state == SERVER_SERVING) {
        snprintf(text, sizeof(text), "ok: %s\n", stats_state_reason(state));
        http_respond(session, 200, "text/plain; charset=utf-8", text, strlen(text),
                     "Cache-Control: no-store\r\n");
    } else {
        snprintf(text, sizeof(text), "unavailable: %s\n", stats_state_reason(state));
        http_respond(session, 503, "text/plain; charset=utf-8", text, strlen(text),
                     "Cache-Control: no-store\r\nRetry-After: 1\r\n");
    }
}

/* ---- the operator token (--http-auth) ------------------------------------------------ */

/* The credentials of an Authorization header of SCHEME ("Bearer", "Basic"; any case,
 * RFC 9110 11.1), without the blanks around them, or NULL when the request has no such
 * header. */
static const char *authorization_credentials(const struct http_request *request,
                                             const char *scheme) {
    const char *value = http_header_value(request, "Authorization");
    size_t length = strlen(scheme);
    if (value == NULL || strncasecmp(value, scheme, length) != 0 ||
        (value[length] != ' ' && value[length] != '\t')) {
        return NULL;
    }
    value += length;
    while (*value == ' ' || *value == '\t')
        value++;
    return value;
}

/* Whether the operator paths may be answered: --http-auth is empty, or the request
 * carries "Authorization: Bearer TOKEN" with that token (compared in constant time).
 * Otherwise answers 401 with a Bearer challenge and returns false. */
static bool operator_allowed(struct http_session *session) {
    const char *token = options_text(session->server->environment.options, HTTP_OPTION(http_auth));
    if (token[0] == '\0') return true;
    const char *given = authorization_credentials(&session->request, "Bearer");
    if (given != NULL && access_equal(given, strlen(given), token, strlen(token))) return true;
    http_respond_error(session, 401,
                       given == NULL ? "this path needs 'Authorization: Bearer TOKEN' (--http-auth)"
                                     : "wrong bearer token",
                       "WWW-Authenticate: Bearer realm=\"strata\"\r\n");
    return false;
}

/* ---- /keys/ ---------------------------------------------------------------------- */

static void respond_value(struct http_session *session, enum store_status status,
                          struct store_value value) {
    if (status == STORE_NOT_FOUND) {
        http_respond_error(session, 404, "no such key", NULL);
        return;
    }
    if (status == STORE_WRONG_TYPE) {
        http_respond_error(session, 409, "the key holds a Redis type, not a string", NULL);
        return;
    }
    if (status != STORE_OK) {
        http_respond_error(session, status == STORE_FLASH_BUSY ? 503 : 500,
                           store_status_text(status), NULL);
        return;
    }
    uint64_t length =
        value.stream != NULL ? store_stream_length(value.stream) : item_value_length(value.item);
    uint64_t first = 0, last = length ? length - 1 : 0;
    int range = session->request.range
                    ? http_parse_range(session->request.range, length, &first, &last)
                    : 0;
    char headers[160];
    if (range < 0) {
        if (value.item != NULL) item_release(value.item);
        if (value.stream != NULL) store_stream_close(value.stream);
        snprintf(headers, sizeof(headers), "Content-Range: bytes */%" PRIu64 "\r\n", length);
        http_respond_error(session, 416, "the range starts past the end of the value", headers);
        return;
    }
    int code = 200;
    uint64_t send_length = length;
    if (range > 0) {
        code = 206;
        send_length = last - first + 1;
        snprintf(headers, sizeof(headers),
                 "Accept-Ranges: bytes\r\nContent-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64
                 "\r\n",
                 first, last, length);
    } else {
        snprintf(headers, sizeof(headers), "Accept-Ranges: bytes\r\n");
    }
    if (value.stream != NULL) {
        http_respond_stream(session, code, "application/octet-stream", value.stream, first,
                            send_length, headers);
        return;
    }
    http_respond_reference(session, code, "application/octet-stream",
                           item_value(value.item) + first, (size_t)send_length, headers,
                           item_release_callback, value.item);
}

/* The read of a GET /keys/ key ended (on the connection's worker). */
static void key_read_done(void *context, enum store_status status, struct store_value value) {
    struct http_session *session = context;
    session->suspended = false;
    if (session->orphaned) {
        if (value.item != NULL) item_release(value.item);
        if (value.stream != NULL) store_stream_close(value.stream);
        http_session_free(session);
        return;
    }
    respond_value(session, status, value);
    http_request_answered(session);
    session->resume(session->resume_handle); /* may close the connection: last */
}

static void key_get(struct http_session *session, const char *key, size_t key_length) {
    struct store_read_options options = {.stream = true};
    struct store_value value;
    enum store_status status = store_read(session->server->environment.store, key, key_length,
                                          &options, &value, key_read_done, session);
    if (status == STORE_PENDING) {
        session->suspended = true; /* key_read_done() answers */
        return;
    }
    respond_value(session, status, value);
}

static void key_delete(struct http_session *session, const char *key, size_t key_length) {
    enum store_status status =
        store_delete(session->server->environment.store, key, key_length, NULL);
    if (status == STORE_OK) {
        http_respond(session, 204, NULL, NULL, 0, NULL);
    } else {
        http_respond_error(session, 404, "no such key", NULL);
    }
}

/* Starts receiving the body of a PUT into a value block. */
static void key_put(struct http_session *session, const char *key, size_t key_length) {
    const struct http_request *request = &session->request;
    uint64_t max_value =
        (uint64_t)options_number(session->server->environment.options, ENGINE_OPTION(max_value));
    if (!request->chunked && !request->has_content_length) {
        http_respond_error(session, 411, "PUT without Content-Length or chunked body", NULL);
        return;
    }
    if (request->has_content_length && request->content_length > max_value) {
        session->closing = true; /* not worth reading: close instead */
        http_respond_error(session, 413, "the value exceeds max-value", NULL);
        return;
    }
    session->block = value_block_create(request->chunked ? 0 : request->content_length);
    session->key = malloc(key_length ? key_length : 1);
    if (session->block == NULL || session->key == NULL) {
        session->closing = true;
        http_respond_error(session, 507, "out of memory", NULL);
        return;
    }
    memcpy(session->key, key, key_length);
    session->key_length = key_length;
    session->body_mode = BODY_VALUE;
}

void http_finish_value(struct http_session *session) {
    struct value_block *block = session->block;
    session->block = NULL; /* the store takes it over */
    struct store_write write = {.condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_CLEAR};
    struct store *store = session->server->environment.store;
    /* 201 or 204 only: no need to read an old value back from flash to learn it. */
    bool existed = store_exists(store, session->key, session->key_length);
    enum store_status status =
        store_set_block(store, session->key, session->key_length, block, &write, NULL);
    switch (status) {
    case STORE_OK:
        http_respond(session, existed ? 204 : 201, NULL, NULL, 0, NULL);
        break;
    case STORE_FLASH_BUSY:
        http_respond_error(session, 503, store_status_text(status), NULL);
        break;
    case STORE_VALUE_TOO_LARGE:
    case STORE_TOO_LARGE_FOR_BUDGET:
        http_respond_error(session, 413, "the value does not fit the memory budget", NULL);
        break;
    case STORE_KEY_TOO_LARGE:
        http_respond_error(session, 414, "the key is too long", NULL);
        break;
    default:
        http_respond_error(session, 507, store_status_text(status), NULL);
        break;
    }
}

/* ---- /keys/: users' credentials ----------------------------------------------------- */

/* Answers 401 with a Basic challenge (so that curl -u and browsers send credentials). */
static void refuse_credentials(struct http_session *session, const char *reason) {
    http_respond_error(session, 401, reason, "WWW-Authenticate: Basic realm=\"strata\"\r\n");
}

/* Decodes Basic credentials ENCODED (base64 of "user:password", RFC 7617) into DECODED
 * (SIZE bytes) and splits them: *USER_LENGTH bytes of user at DECODED, *PASSWORD
 * (*PASSWORD_LENGTH bytes) after the first ':'. Returns false if they are malformed or
 * too long. */
static bool decode_basic(const char *encoded, unsigned char *decoded, size_t size,
                         size_t *user_length, const char **password, size_t *password_length) {
    size_t length = strcspn(encoded, " \t");
    long decoded_length = base64_decode(encoded, length, decoded, size);
    if (decoded_length <= 0) return false;
    const unsigned char *colon = memchr(decoded, ':', (size_t)decoded_length);
    if (colon == NULL) return false;
    *user_length = (size_t)(colon - decoded);
    *password = (const char *)colon + 1;
    *password_length = (size_t)decoded_length - *user_length - 1;
    return true;
}

/* The user a /keys/ request acts as: the one its Basic credentials name (checked with
 * access_authenticate(), or recognised as the credentials this connection already
 * presented under the same users table), or, without credentials, the user "default" if
 * it needs no password (kept likewise while the users table stays the same, so that
 * protected mode costs one atomic load a request). Returns NULL when the request has been answered:
 * 401 (no or wrong credentials) or 429 with Retry-After (this client failed too often lately). */
static const struct access_user *keys_user(struct http_session *session) {
    struct access *access = session->server->environment.access;
    struct access_identity *identity = &session->identity;
    const char *basic = authorization_credentials(&session->request, "Basic");
    if (basic == NULL) {
        if (session->credential_cached && session->credential_anonymous) {
            const struct access_user *user = access_identity_current(access, identity);
            if (user != NULL && identity->table == session->credential_table) return user;
        }
        session->credential_cached = false;
        access_identity_release(identity);
        access_identity_init(access, identity);
        const struct access_user *user = access_identity_current(access, identity);
        if (user == NULL) {
            refuse_credentials(session,
                               "/keys/ needs a user's credentials: HTTP Basic (curl -u USER:PASS)");
            return NULL;
        }
        session->credential_table = identity->table;
        session->credential_anonymous = true;
        session->credential_cached = true;
        return user;
    }
    unsigned char digest[32];
    unsigned int digest_length = 0;
    EVP_Digest(basic, strlen(basic), digest, &digest_length, EVP_sha256(), NULL);
    if (session->credential_cached && !session->credential_anonymous &&
        CRYPTO_memcmp(digest, session->credential_digest, sizeof(digest)) == 0) {
        const struct access_user *user = access_identity_current(access, identity);
        /* The users changed since (a reload, ACL SETUSER): check the password again. */
        if (user != NULL && identity->table == session->credential_table) return user;
    }
    session->credential_cached = false;
    access_identity_release(identity);
    unsigned char decoded[ACCESS_NAME_MAX + ACCESS_PASSWORD_MAX + 8];
    size_t user_length, password_length;
    const char *password;
    if (!decode_basic(basic, decoded, sizeof(decoded), &user_length, &password, &password_length)) {
        refuse_credentials(session, "malformed Basic credentials");
        return NULL;
    }
    int64_t retry_ms = 0;
    enum access_failure failure =
        access_authenticate(access, identity, (const char *)decoded, user_length, password,
                            password_length, session->peer, &retry_ms);
    OPENSSL_cleanse(decoded, sizeof(decoded));
    if (failure == ACCESS_THROTTLED) {
        char headers[64];
        snprintf(headers, sizeof(headers), "Retry-After: %lld\r\n",
                 (long long)((retry_ms + 999) / 1000));
        http_respond_error(session, 429, "too many failed authentications: try again later",
                           headers);
        return NULL;
    }
    if (failure != ACCESS_OK) {
        refuse_credentials(session, "wrong user or password");
        return NULL;
    }
    memcpy(session->credential_digest, digest, sizeof(digest));
    session->credential_table = identity->table;
    session->credential_anonymous = false;
    session->credential_cached = true;
    return access_identity_current(access, identity);
}

/* Whether the /keys/ request may go on: no users at all, or its user (keys_user()) has
 * RIGHTS on the namespace "default". Otherwise it has been answered: 401 or 429 from
 * keys_user(), 401 when a request without credentials lacks them, 403 (counted in
 * access_denied) when a user who authenticated does. */
static bool keys_allowed(struct http_session *session, unsigned rights) {
    if (session->server->environment.access == NULL || rights == 0) return true;
    const struct access_user *user = keys_user(session);
    if (user == NULL) return false;
    if ((access_namespace_rights(user, "default", 7) & rights) == rights) return true;
    metric_add(ACCESS_METRIC(access_denied), 1);
    if (authorization_credentials(&session->request, "Basic") == NULL) {
        refuse_credentials(session,
                           "/keys/ needs a user's credentials: HTTP Basic (curl -u USER:PASS)");
        return false;
    }
    char reason[ACCESS_NAME_MAX + 96];
    snprintf(reason, sizeof(reason), "user '%s' has no %s right on namespace 'default'", user->name,
             rights & ACCESS_WRITE ? "write" : "read");
    http_respond_error(session, 403, reason, NULL);
    return false;
}

static void route_keys(struct http_session *session) {
    const struct http_request *request = &session->request;
    const char *key = request->path + strlen(KEYS_PREFIX);
    size_t key_length = request->path_length - strlen(KEYS_PREFIX);
    if (key_length == 0) {
        http_respond_error(session, 404, "the key is empty", NULL);
        return;
    }
    enum http_method method = request->method;
    unsigned rights = method == HTTP_GET || method == HTTP_HEAD     ? ACCESS_READ
                      : method == HTTP_PUT || method == HTTP_DELETE ? ACCESS_WRITE
                                                                    : 0;
    if (!keys_allowed(session, rights)) return;
    if (store_recovering(session->server->environment.store)) {
        http_respond_error(session, 503, "loading: the server is rebuilding its flash index",
                           "Retry-After: 1\r\n");
        return;
    }
    switch (request->method) {
    case HTTP_GET:
    case HTTP_HEAD:
        key_get(session, key, key_length);
        break;
    case HTTP_PUT:
        key_put(session, key, key_length);
        break;
    case HTTP_DELETE:
        key_delete(session, key, key_length);
        break;
    default:
        http_respond_error(session, 405, "/keys/ answers GET, HEAD, PUT and DELETE",
                           "Allow: GET, HEAD, PUT, DELETE\r\n");
        break;
    }
}

/* ---- the table of paths ---------------------------------------------------------- */

void http_route(struct http_session *session) {
    const struct http_request *request = &session->request;
    struct stats *stats = session->server->environment.stats;
    const struct http_extension *extension = session->server->environment.extension;
    if (extension != NULL && extension->claims(extension->state, session)) {
        extension->route(extension->state, session);
        return;
    }
    if (request->path_length > strlen(KEYS_PREFIX) - 1 &&
        memcmp(request->path, KEYS_PREFIX, strlen(KEYS_PREFIX)) == 0) {
        route_keys(session);
        return;
    }
    /* /health stays open whatever --http-auth says: load balancers probe it without
     * credentials, and it tells nothing but whether the server serves. */
    if (!path_is(request, "/health") && !operator_allowed(session)) return;
    struct byte_buffer buffer = BYTE_BUFFER_INIT;
    if (path_is(request, "/")) {
        if (refuse_unless_read(session)) return;
        http_respond(session, 200, "text/html; charset=utf-8", status_page_html,
                     status_page_html_length, "Cache-Control: no-store\r\n");
    } else if (path_is(request, "/metrics")) {
        if (refuse_unless_read(session)) return;
        stats_prometheus_text(stats, &buffer);
        respond_buffer(session, &buffer, "text/plain; version=0.0.4; charset=utf-8");
    } else if (path_is(request, "/health")) {
        if (refuse_unless_read(session)) return;
        route_health(session);
    } else if (path_is(request, "/info")) {
        if (refuse_unless_read(session)) return;
        stats_info_json(stats, &buffer);
        respond_buffer(session, &buffer, "application/json");
    } else if (path_is(request, "/history")) {
        if (refuse_unless_read(session)) return;
        stats_history_json(stats, &buffer);
        respond_buffer(session, &buffer, "application/json");
    } else {
        http_respond_error(session, 404, "no such path", NULL);
    }
}
