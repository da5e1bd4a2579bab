/* The S3 front end: which HTTP requests are S3's, who sent them (Signature Version 4 or 2),
 * where they go, and S3's errors (docs/s3.md). */
#include "base/base64.h"
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/log.h"
#include "proto/s3/s3_internal.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct option_definition s3_option_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "proto/s3/s3_options.def"
#undef OPTION
};

struct option_group s3_options = {
    .title = "S3 API (on the HTTP port)",
    .definitions = s3_option_definitions,
    .count = sizeof(s3_option_definitions) / sizeof(s3_option_definitions[0]),
};

/* ---- credentials ------------------------------------------------------------------- */

/* Adds the pair ACCESS_KEY / SECRET_KEY (copied). Returns false if out of memory. */
static bool add_credential(struct s3_server *server, const char *access_key,
                           const char *secret_key) {
    struct s3_credential *grown =
        realloc(server->credentials, (server->credential_count + 1) * sizeof(*grown));
    if (grown == NULL) return false;
    server->credentials = grown;
    struct s3_credential *credential = &grown[server->credential_count];
    credential->access_key = strdup(access_key);
    credential->secret_key = strdup(secret_key);
    if (credential->access_key == NULL || credential->secret_key == NULL) {
        free(credential->access_key);
        free(credential->secret_key);
        return false;
    }
    server->credential_count++;
    return true;
}

/* Reads --s3-credentials' PATH: "ACCESS_KEY SECRET_KEY" per line, lines starting with
 * '#' are comments. Returns
 * false with a reason in ERROR. */
static bool read_credentials_file(struct s3_server *server, const char *path, char *error,
                                  size_t error_size) {
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        snprintf(error, error_size, "cannot open --s3-credentials %s: %s", path, strerror(errno));
        return false;
    }
    char line[1024];
    int number = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof(line), file) != NULL) {
        number++;
        if (strchr(line, '\n') == NULL && !feof(file)) {
            snprintf(error, error_size, "--s3-credentials %s line %d is too long", path, number);
            ok = false;
            break;
        }
        /* '#' starts a comment at the start of a line only: secrets may hold '#'. */
        size_t blank = strspn(line, " \t");
        if (line[blank] == '#') continue;
        char *saved = NULL;
        char *access_key = strtok_r(line, " \t\r\n", &saved);
        if (access_key == NULL) continue;
        char *secret_key = strtok_r(NULL, " \t\r\n", &saved);
        if (secret_key == NULL || strtok_r(NULL, " \t\r\n", &saved) != NULL) {
            snprintf(error, error_size,
                     "--s3-credentials %s line %d: expected 'ACCESS_KEY SECRET_KEY'", path, number);
            ok = false;
        } else if (!add_credential(server, access_key, secret_key)) {
            snprintf(error, error_size, "out of memory");
            ok = false;
        }
    }
    fclose(file);
    return ok;
}

struct s3_server *s3_server_create(const struct s3_environment *environment, char *error,
                                   size_t error_size) {
    struct s3_server *server = calloc(1, sizeof(*server));
    if (server == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    server->objects = environment->objects;
    server->options = environment->options;
    server->access = environment->access;
    const char *access_key = options_text(server->options, S3_OPTION(s3_access_key));
    const char *secret_key = options_text(server->options, S3_OPTION(s3_secret_key));
    const char *file = options_text(server->options, S3_OPTION(s3_credentials));
    bool ok = true;
    if ((access_key[0] != '\0') != (secret_key[0] != '\0')) {
        snprintf(error, error_size, "--s3-access-key and --s3-secret-key go together");
        ok = false;
    } else if (access_key[0] != '\0' && !add_credential(server, access_key, secret_key)) {
        snprintf(error, error_size, "out of memory");
        ok = false;
    }
    if (ok && file[0] != '\0') ok = read_credentials_file(server, file, error, error_size);
    if (!ok) {
        s3_server_destroy(server);
        return NULL;
    }
    return server;
}

void s3_server_destroy(struct s3_server *server) {
    if (server == NULL) return;
    for (size_t i = 0; i < server->credential_count; i++) {
        free(server->credentials[i].access_key);
        free(server->credentials[i].secret_key);
    }
    free(server->credentials);
    free(server);
}

bool s3_has_credentials(const struct s3_server *server) {
    return server->credential_count > 0 ||
           (server->access != NULL && !access_protected(server->access));
}

/* Where find_secret() looks, and what it found. */
struct key_lookup {
    const struct s3_server *server;
    struct access_identity *identity; /* becomes the key's user (access_identify_key()) */
    bool every_right;                 /* the key is one of --s3-access-key/--s3-credentials */
    char secret[ACCESS_SECRET_MAX + 1];
};

/* s3_secret_lookup: the keys of --s3-access-key and --s3-credentials first, then the
 * users' s3key: rules (the identity then holds the key's user, whether or not the
 * signature turns out right). */
static const char *find_secret(void *context, const char *access_key, size_t length) {
    struct key_lookup *lookup = context;
    const struct s3_server *server = lookup->server;
    for (size_t i = 0; i < server->credential_count; i++) {
        const char *candidate = server->credentials[i].access_key;
        if (strlen(candidate) == length && memcmp(candidate, access_key, length) == 0) {
            lookup->every_right = true;
            return server->credentials[i].secret_key;
        }
    }
    if (server->access != NULL &&
        access_identify_key(server->access, lookup->identity, access_key, length, lookup->secret,
                            sizeof(lookup->secret))) {
        return lookup->secret;
    }
    return NULL;
}

unsigned s3_rights(const struct s3_request *request, const char *name, size_t length) {
    if (request->every_right) return ACCESS_ALL;
    return access_bucket_rights(request->user, name, length);
}

bool s3_permit(struct s3_request *request, const char *name, size_t length, unsigned rights) {
    if ((s3_rights(request, name, length) & rights) == rights) return true;
    metric_add(ACCESS_METRIC(access_denied), 1);
    char message[ACCESS_NAME_MAX + OBJECT_BUCKET_NAME_MAX + 96];
    snprintf(message, sizeof(message), "Access Denied: user '%s' has no %s right on bucket '%.*s'",
             request->user != NULL ? request->user->name : "?",
             rights & ACCESS_ADMIN   ? "admin"
             : rights & ACCESS_WRITE ? "write"
                                     : "read",
             (int)length, name);
    s3_error(request, 403, "AccessDenied", message, NULL);
    return false;
}

/* ---- responses --------------------------------------------------------------------- */

/* Makes TEXT's bytes a NUL-terminated string and returns it ("" if building failed). */
static const char *headers_text(struct byte_buffer *text) {
    byte_buffer_append(text, "", 1);
    if (text->failed || text->data == NULL) return "";
    text->length--;
    return (const char *)text->data;
}

void s3_common_headers(struct s3_request *request, struct byte_buffer *text) {
    byte_buffer_appendf(text, "x-amz-request-id: %s\r\n", request->request_id);
}

void s3_error(struct s3_request *request, int status, const char *code, const char *message,
              const char *extra_headers) {
    struct byte_buffer headers = BYTE_BUFFER_INIT;
    s3_common_headers(request, &headers);
    if (extra_headers != NULL) byte_buffer_append_text(&headers, extra_headers);
    if (status >= 400 && status < 500 && status != 404) {
        char quoted[256];
        log_event(LOG_INFO, "s3_client_error", "client=%llu peer=%s status=%d code=%s message=%s",
                  (unsigned long long)request->session->id, request->session->peer, status, code,
                  log_quote(quoted, sizeof(quoted), message, strlen(message)));
    }
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "Error", false);
    s3_xml_string(&document, "Code", code);
    s3_xml_string(&document, "Message", message);
    if (request->bucket_length > 0) {
        s3_xml_text(&document, "BucketName", request->bucket, request->bucket_length);
    }
    if (request->key_length > 0) s3_xml_text(&document, "Key", request->key, request->key_length);
    s3_xml_text(&document, "Resource", request->http->path, request->http->path_length);
    s3_xml_string(&document, "RequestId", request->request_id);
    s3_xml_close(&document, "Error");
    if (document.failed) {
        http_respond(request->session, status, NULL, NULL, 0, headers_text(&headers));
    } else {
        http_respond(request->session, status, S3_XML_TYPE, document.data, document.length,
                     headers_text(&headers));
    }
    s3_xml_free(&document);
    byte_buffer_free(&headers);
}

void s3_object_error(struct s3_request *request, enum object_status status) {
    switch (status) {
    case OBJECT_OK:
        s3_error(request, 500, "InternalError", "an error was expected", NULL);
        break;
    case OBJECT_NO_SUCH_BUCKET:
        s3_error(request, 404, "NoSuchBucket", "The specified bucket does not exist", NULL);
        break;
    case OBJECT_BUCKET_EXISTS:
        s3_error(request, 409, "BucketAlreadyOwnedByYou",
                 "Your previous request to create the named bucket succeeded and you already "
                 "own it.",
                 NULL);
        break;
    case OBJECT_BUCKET_NOT_EMPTY:
        s3_error(request, 409, "BucketNotEmpty", "The bucket you tried to delete is not empty",
                 NULL);
        break;
    case OBJECT_INVALID_BUCKET_NAME:
        s3_error(request, 400, "InvalidBucketName", "The specified bucket is not valid.", NULL);
        break;
    case OBJECT_TOO_MANY_BUCKETS:
        s3_error(request, 400, "TooManyBuckets",
                 "You have attempted to create more buckets than allowed", NULL);
        break;
    case OBJECT_NO_SUCH_KEY:
        s3_error(request, 404, "NoSuchKey", "The specified key does not exist.", NULL);
        break;
    case OBJECT_NO_SUCH_VERSION:
        s3_error(request, 404, "NoSuchVersion", "The specified version does not exist.", NULL);
        break;
    case OBJECT_IS_DELETE_MARKER:
        s3_error(request, 405, "MethodNotAllowed",
                 "The specified method is not allowed against this resource.",
                 "Allow: DELETE\r\nx-amz-delete-marker: true\r\n");
        break;
    case OBJECT_KEY_TOO_LONG:
        s3_error(request, 400, "KeyTooLongError", "Your key is too long", NULL);
        break;
    case OBJECT_ATTRIBUTES_TOO_LARGE:
        s3_error(request, 400, "MetadataTooLarge",
                 "Your metadata headers exceed the maximum allowed metadata size.", NULL);
        break;
    case OBJECT_QUOTA_EXCEEDED:
        s3_error(request, 403, "QuotaExceeded", "The bucket's quota would be exceeded", NULL);
        break;
    case OBJECT_NO_SUCH_UPLOAD:
        s3_error(request, 404, "NoSuchUpload",
                 "The specified multipart upload does not exist. The upload ID might be "
                 "invalid, or the multipart upload might have been aborted or completed.",
                 NULL);
        break;
    case OBJECT_INVALID_PART:
        s3_error(request, 400, "InvalidPart",
                 "One or more of the specified parts could not be found. The part might not "
                 "have been uploaded, or the specified entity tag might not have matched the "
                 "part's entity tag.",
                 NULL);
        break;
    case OBJECT_INVALID_PART_ORDER:
        s3_error(request, 400, "InvalidPartOrder",
                 "The list of parts was not in ascending order. Parts must be ordered by part "
                 "number.",
                 NULL);
        break;
    case OBJECT_ENTITY_TOO_SMALL:
        s3_error(request, 400, "EntityTooSmall",
                 "Your proposed upload is smaller than the minimum allowed object size.", NULL);
        break;
    case OBJECT_INVALID_RANGE:
        s3_error(request, 400, "InvalidArgument", "An argument is out of range.", NULL);
        break;
    case OBJECT_NO_SPACE:
        s3_error(request, 507, "InsufficientStorage",
                 "The server's disk is full; nothing was stored", NULL);
        break;
    case OBJECT_PRECONDITION_FAILED:
        s3_error(request, 412, "PreconditionFailed",
                 "At least one of the pre-conditions you specified did not hold", NULL);
        break;
    case OBJECT_CORRUPT:
        s3_error(request, 500, "InternalError",
                 "Stored bytes failed their checksum; the object cannot be served", NULL);
        break;
    case OBJECT_NO_MEMORY:
        s3_error(request, 503, "SlowDown", "The server is out of memory; try again", NULL);
        break;
    case OBJECT_IO_ERROR:
    default:
        s3_error(request, 500, "InternalError", "An I/O error occurred; nothing was changed", NULL);
        break;
    }
}

void s3_respond_xml(struct s3_request *request, struct s3_xml *document,
                    const char *extra_headers) {
    if (document->failed) {
        s3_xml_free(document);
        s3_error(request, 503, "SlowDown", "The server is out of memory; try again", NULL);
        return;
    }
    struct byte_buffer headers = BYTE_BUFFER_INIT;
    s3_common_headers(request, &headers);
    if (extra_headers != NULL) byte_buffer_append_text(&headers, extra_headers);
    http_respond(request->session, 200, S3_XML_TYPE, document->data, document->length,
                 headers_text(&headers));
    byte_buffer_free(&headers);
    s3_xml_free(document);
}

/* ---- query parameters -------------------------------------------------------------- */

long s3_param(const struct s3_request *request, const char *name, char *value, size_t maximum) {
    return s3_query_get(request->http->raw_query, request->http->raw_query_length, name, value,
                        maximum);
}

bool s3_has_param(const struct s3_request *request, const char *name) {
    char ignored[8];
    return s3_param(request, name, ignored, sizeof(ignored)) != -1;
}

/* GET ?acl: the one ACL strata has, the owner's FULL_CONTROL. PUT ?acl: the private
 * canned ACL is accepted (it is what every bucket and object has); any other is 501.
 * The bucket (and the object, for an object's ACL) must exist. */
static void answer_acl(struct s3_request *request) {
    enum http_method method = request->http->method;
    struct object_bucket_info bucket;
    enum object_status status = objects_bucket_info(request->server->objects, request->bucket,
                                                    request->bucket_length, &bucket);
    if (status == OBJECT_OK && request->key_length > 0) {
        struct object_handle handle = {0};
        status = objects_get(request->server->objects, request->bucket, request->bucket_length,
                             request->key, request->key_length, NULL, &handle);
        object_handle_clear(&handle);
    }
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    if (method == HTTP_PUT) {
        const char *canned = http_header_value(request->http, "x-amz-acl");
        bool has_body = request->http->chunked ||
                        (request->http->has_content_length && request->http->content_length > 0);
        if (has_body || (canned != NULL && strcmp(canned, "private") != 0)) {
            s3_error(request, 501, "NotImplemented",
                     "strata keeps the private ACL only: access is by credentials", NULL);
            return;
        }
        char headers[64];
        snprintf(headers, sizeof(headers), "x-amz-request-id: %s\r\n", request->request_id);
        http_respond(request->session, 200, NULL, NULL, 0, headers);
        return;
    }
    if (method != HTTP_GET && method != HTTP_HEAD) {
        s3_error(request, 405, "MethodNotAllowed",
                 "The specified method is not allowed against this resource.", NULL);
        return;
    }
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "AccessControlPolicy", true);
    s3_xml_open(&document, "Owner", false);
    s3_xml_string(&document, "ID", "strata");
    s3_xml_string(&document, "DisplayName", "strata");
    s3_xml_close(&document, "Owner");
    s3_xml_open(&document, "AccessControlList", false);
    s3_xml_raw(&document,
               "<Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
               "xsi:type=\"CanonicalUser\"><ID>strata</ID><DisplayName>strata</DisplayName>"
               "</Grantee><Permission>FULL_CONTROL</Permission></Grant>",
               strlen("<Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
                      "xsi:type=\"CanonicalUser\"><ID>strata</ID><DisplayName>strata</DisplayName>"
                      "</Grantee><Permission>FULL_CONTROL</Permission></Grant>"));
    s3_xml_close(&document, "AccessControlList");
    s3_xml_close(&document, "AccessControlPolicy");
    s3_respond_xml(request, &document, NULL);
}

bool s3_answer_subresource(struct s3_request *request) {
    if (s3_has_param(request, "acl")) {
        answer_acl(request);
        return true;
    }
    static const char *const unsupported[] = {
        "policy",
        "cors",
        "lifecycle",
        "tagging",
        "encryption",
        "logging",
        "notification",
        "replication",
        "website",
        "requestPayment",
        "accelerate",
        "object-lock",
        "ownershipControls",
        "publicAccessBlock",
        "analytics",
        "metrics",
        "inventory",
        "intelligent-tiering",
        "retention",
        "legal-hold",
        "torrent",
        "restore",
        "select",
        "attributes",
        "policyStatus",
    };
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        if (s3_has_param(request, unsupported[i])) {
            char message[160];
            snprintf(message, sizeof(message), "strata does not implement the '%s' subresource",
                     unsupported[i]);
            s3_error(request, 501, "NotImplemented", message, NULL);
            return true;
        }
    }
    return false;
}

/* ---- small bodies ------------------------------------------------------------------ */

struct collected_body {
    struct s3_request request;
    s3_body_done done;
    struct byte_buffer body;
    bool refused;
};

/* http_body_sink.data for s3_collect_body(). */
static bool collect_data(void *context, const unsigned char *data, size_t length) {
    struct collected_body *collected = context;
    if (collected->body.length + length > S3_MAX_XML_BODY) {
        collected->refused = true;
        collected->request.session->closing = true; /* the rest of the body is not read */
        s3_error(&collected->request, 400, "MalformedXML",
                 "The XML you provided was larger than the server accepts", NULL);
        return false;
    }
    byte_buffer_append(&collected->body, data, length);
    if (collected->body.failed) {
        collected->refused = true;
        collected->request.session->closing = true;
        s3_error(&collected->request, 503, "SlowDown", "The server is out of memory", NULL);
        return false;
    }
    return true;
}

/* http_body_sink.end for s3_collect_body(). */
static void collect_end(void *context) {
    struct collected_body *collected = context;
    static const unsigned char empty[1] = {0};
    collected->done(&collected->request, collected->body.data ? collected->body.data : empty,
                    collected->body.length);
    byte_buffer_free(&collected->body);
    free(collected);
}

/* http_body_sink.abandon for s3_collect_body(). */
static void collect_abandon(void *context) {
    struct collected_body *collected = context;
    byte_buffer_free(&collected->body);
    free(collected);
}

void s3_collect_body(struct s3_request *request, s3_body_done done) {
    const struct http_request *http = request->http;
    if (http->has_content_length && http->content_length > S3_MAX_XML_BODY) {
        request->session->closing = true;
        s3_error(request, 400, "MalformedXML",
                 "The XML you provided was larger than the server accepts", NULL);
        return;
    }
    struct collected_body *collected = calloc(1, sizeof(*collected));
    if (collected == NULL) {
        s3_error(request, 503, "SlowDown", "The server is out of memory", NULL);
        return;
    }
    collected->request = *request;
    collected->done = done;
    struct http_body_sink sink = {
        .data = collect_data,
        .end = collect_end,
        .abandon = collect_abandon,
        .context = collected,
    };
    http_receive_body(request->session, &sink);
}

bool s3_check_content_md5(struct s3_request *request, const unsigned char *body, size_t length) {
    const char *header = http_header_value(request->http, "Content-MD5");
    if (header == NULL) return true;
    unsigned char expected[16];
    if (base64_decode(header, strlen(header), expected, sizeof(expected)) != 16) {
        s3_error(request, 400, "InvalidDigest", "The Content-MD5 you specified was invalid.", NULL);
        return false;
    }
    unsigned char actual[16];
    unsigned int actual_length = 0;
    EVP_Digest(body, length, actual, &actual_length, EVP_md5(), NULL);
    if (memcmp(actual, expected, 16) != 0) {
        s3_error(request, 400, "BadDigest",
                 "The Content-MD5 you specified did not match what we received.", NULL);
        return false;
    }
    return true;
}

/* ---- claiming and routing ---------------------------------------------------------- */

/* The bucket a virtual-hosted-style Host names (Host = BUCKET.DOMAIN[:port]): copies it
 * into BUCKET (room for OBJECT_BUCKET_NAME_MAX + 2) and returns its length, or 0. */
static size_t virtual_host_bucket(const struct s3_server *server, const struct http_request *http,
                                  char *bucket) {
    const char *host = http_header_value(http, "Host");
    const char *domain = options_text(server->options, S3_OPTION(s3_domain));
    if (host == NULL || domain[0] == '\0') return 0;
    size_t host_length = strcspn(host, ":");
    if (host[0] == '[') return 0; /* an IPv6 literal */
    size_t domain_length = strlen(domain);
    if (host_length <= domain_length + 1) return 0;
    size_t bucket_length = host_length - domain_length - 1;
    if (host[bucket_length] != '.' ||
        strncasecmp(host + bucket_length + 1, domain, domain_length) != 0) {
        return 0;
    }
    if (bucket_length > OBJECT_BUCKET_NAME_MAX) return 0;
    for (size_t i = 0; i < bucket_length; i++)
        bucket[i] = (char)tolower((unsigned char)host[i]);
    bucket[bucket_length] = '\0';
    return bucket_length;
}

/* The HTTP front end's own paths, served when a request carries no S3 signature. */
static bool is_operator_path(const struct http_request *http) {
    static const char *const paths[] = {"/", "/metrics", "/health", "/info", "/history"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (http->path_length == strlen(paths[i]) &&
            memcmp(http->path, paths[i], http->path_length) == 0) {
            return true;
        }
    }
    return http->path_length >= 6 && memcmp(http->path, "/keys/", 6) == 0;
}

/* Whether the request carries an S3 signature (header or presigned). */
static bool is_signed(const struct http_request *http) {
    const char *authorization = http_header_value(http, "Authorization");
    if (authorization != NULL && (strncmp(authorization, "AWS4-HMAC-SHA256 ", 17) == 0 ||
                                  strncmp(authorization, "AWS ", 4) == 0)) {
        return true; /* another scheme (Bearer, Basic) is an operator path's business */
    }
    char ignored[8];
    return s3_query_get(http->raw_query, http->raw_query_length, "X-Amz-Signature", ignored,
                        sizeof(ignored)) != -1 ||
           s3_query_get(http->raw_query, http->raw_query_length, "X-Amz-Credential", ignored,
                        sizeof(ignored)) != -1 ||
           s3_query_get(http->raw_query, http->raw_query_length, "AWSAccessKeyId", ignored,
                        sizeof(ignored)) != -1;
}

/* http_extension.claims: a signed request, a virtual-hosted one, or any path that is
 * not one of the operator paths. */
static bool claims(void *state, struct http_session *session) {
    struct s3_server *server = state;
    const struct http_request *http = &session->request;
    char bucket[OBJECT_BUCKET_NAME_MAX + 2];
    if (is_signed(http) || virtual_host_bucket(server, http, bucket) > 0) return true;
    return !is_operator_path(http);
}

/* Whether PEER ("127.0.0.1:5000", "[::1]:5000") is a loopback address. */
static bool peer_is_loopback(const char *peer) {
    return strncmp(peer, "127.", 4) == 0 || strncmp(peer, "[::1]", 5) == 0 ||
           strncmp(peer, "[::ffff:127.", 12) == 0 || strcmp(peer, "unix") == 0;
}

/* Whether HOST (a Host header, port included, or NULL) names this machine's loopback:
 * localhost, 127.x.y.z, [::1], or --s3-domain and its subdomains (virtual-hosted). */
static bool host_is_loopback_name(const struct s3_server *server, const char *host) {
    if (host == NULL) return false;
    char name[256];
    size_t length;
    if (host[0] == '[') {
        length = strcspn(host, "]");
        if (host[length] != ']') return false;
        length++;
    } else {
        length = strcspn(host, ":");
    }
    if (length == 0 || length >= sizeof(name)) return false;
    for (size_t i = 0; i < length; i++)
        name[i] = (char)tolower((unsigned char)host[i]);
    name[length] = '\0';
    if (strcmp(name, "localhost") == 0 || strcmp(name, "[::1]") == 0) return true;
    if (strncmp(name, "127.", 4) == 0 && strspn(name, "0123456789.") == length) return true;
    const char *domain = options_text(server->options, S3_OPTION(s3_domain));
    size_t domain_length = strlen(domain);
    if (domain_length == 0 || domain_length > length) return false;
    if (strcasecmp(name + length - domain_length, domain) != 0) return false;
    return length == domain_length || name[length - domain_length - 1] == '.';
}

/* Fills the request's view for signing. HEADERS has room for HTTP_MAX_HEADERS; BUCKET
 * (BUCKET_LENGTH bytes, 0 for a path-style request) is the virtual-hosted-style bucket. */
static void signing_view(const struct http_request *http, struct s3_header *headers,
                         const char *bucket, size_t bucket_length, struct s3_request_view *view) {
    for (size_t i = 0; i < http->header_count; i++) {
        headers[i] = (struct s3_header){http->headers[i].name, strlen(http->headers[i].name),
                                        http->headers[i].value, strlen(http->headers[i].value)};
    }
    *view = (struct s3_request_view){
        .method = http->method_name,
        .raw_path = http->raw_path,
        .raw_path_length = http->raw_path_length,
        .raw_query = http->raw_query,
        .raw_query_length = http->raw_query_length,
        .headers = headers,
        .header_count = http->header_count,
        .virtual_bucket = bucket_length > 0 ? bucket : NULL,
        .virtual_bucket_length = bucket_length,
    };
}

/* Makes the request's sender the user "default" if it needs no password (protected
 * mode: no users, or a users file whose default is on with nopass). Returns false if it
 * does not (the users changed meanwhile). */
static bool act_as_default(struct s3_request *request) {
    struct s3_server *server = request->server;
    if (server->access == NULL) {
        request->every_right = true;
        return true;
    }
    struct access_identity *identity = &request->session->identity;
    access_identity_release(identity);
    access_identity_init(server->access, identity);
    request->user = access_identity_current(server->access, identity);
    return request->user != NULL;
}

/* Checks who sent the request and sets request->user or every_right. Returns true to go
 * on; otherwise it has been answered. */
static bool authenticate(struct s3_request *request) {
    struct s3_server *server = request->server;
    struct s3_header headers[HTTP_MAX_HEADERS];
    struct s3_request_view view;
    char bucket[OBJECT_BUCKET_NAME_MAX + 2];
    size_t bucket_length = virtual_host_bucket(server, request->http, bucket);
    signing_view(request->http, headers, bucket, bucket_length, &view);
    struct s3_error error = {0};
    /* The session's identity becomes this request's sender (a /keys/ request after it
     * checks its own credentials again). */
    struct access_identity *identity = &request->session->identity;
    request->session->credential_cached = false;
    access_identity_release(identity);
    struct key_lookup lookup = {.server = server, .identity = identity};
    bool verified =
        s3_authenticate(&view, clock_realtime_ms(), find_secret, &lookup, &request->auth, &error);
    OPENSSL_cleanse(lookup.secret, sizeof(lookup.secret));
    if (!verified || request->auth.anonymous) access_identity_release(identity);
    if (!s3_has_credentials(server)) {
        /* No credentials: any request from loopback, signed with any key, is served. */
        if (!peer_is_loopback(request->session->peer)) {
            s3_error(request, 403, "AccessDenied",
                     "no S3 credentials are configured: only loopback clients are served "
                     "(set --s3-access-key and --s3-secret-key)",
                     NULL);
            return false;
        }
        /* A web page the user visits can reach loopback too: refuse what a browser sends
         * (an Origin header) and hosts that are not this machine's loopback names (DNS
         * rebinding). */
        if (http_header_value(request->http, "Origin") != NULL ||
            !host_is_loopback_name(server, http_header_value(request->http, "Host"))) {
            s3_error(request, 403, "AccessDenied",
                     "no S3 credentials are configured: requests from web pages, and requests "
                     "for a Host that is not a loopback name, are refused",
                     NULL);
            return false;
        }
        if (!verified) {
            /* Keep what the payload needs (streaming, SHA-256) without the signature. */
            memset(&request->auth, 0, sizeof(request->auth));
            request->auth.anonymous = true;
        }
        /* A request signed with a user's key acts as that user; any other as "default". */
        if (identity->user != NULL) {
            request->user = access_identity_current(server->access, identity);
            if (request->user != NULL) return true;
        }
        if (!act_as_default(request)) {
            s3_error(request, 403, "AccessDenied", "Access Denied", NULL);
            return false;
        }
        return true;
    }
    if (!verified) {
        s3_error(request, error.status, error.code, error.message, NULL);
        return false;
    }
    if (request->auth.anonymous) {
        s3_error(request, 403, "AccessDenied", "Access Denied", NULL);
        return false;
    }
    if (lookup.every_right) {
        request->every_right = true;
        return true;
    }
    request->user = access_identity_current(server->access, identity);
    if (request->user == NULL) { /* switched off or deleted meanwhile */
        s3_error(request, 403, "InvalidAccessKeyId",
                 "The AWS Access Key Id you provided does not exist in our records.", NULL);
        return false;
    }
    return true;
}

/* The right the request needs on its bucket (docs/s3.md, Users and rights): read to
 * read and list, write to change objects, admin to create, delete and configure the
 * bucket (?quota both ways, ?versioning and ?acl when set). */
static unsigned required_rights(const struct s3_request *request) {
    enum http_method method = request->http->method;
    bool reads = method == HTTP_GET || method == HTTP_HEAD;
    if (request->key_length > 0) return reads ? ACCESS_READ : ACCESS_WRITE;
    if (s3_has_param(request, "quota")) return ACCESS_ADMIN;
    if (reads) return ACCESS_READ;
    if (method == HTTP_POST) return ACCESS_WRITE; /* DeleteObjects */
    return ACCESS_ADMIN;                          /* CreateBucket, DeleteBucket, PUT ?... */
}

/* Splits the path (or the Host) into bucket and key. Returns false (answered) if the
 * bucket part is longer than any bucket name. */
static bool locate(struct s3_request *request) {
    const struct http_request *http = request->http;
    request->bucket_length = virtual_host_bucket(request->server, http, request->bucket);
    if (request->bucket_length > 0) {
        request->key = http->path + 1;
        request->key_length = http->path_length - 1;
        return true;
    }
    const char *rest = http->path + 1;
    size_t rest_length = http->path_length - 1;
    const char *slash = memchr(rest, '/', rest_length);
    size_t bucket_length = slash ? (size_t)(slash - rest) : rest_length;
    if (bucket_length > OBJECT_BUCKET_NAME_MAX) {
        request->key = "";
        s3_error(request, 400, "InvalidBucketName", "The specified bucket is not valid.", NULL);
        return false;
    }
    memcpy(request->bucket, rest, bucket_length);
    request->bucket[bucket_length] = '\0';
    request->bucket_length = bucket_length;
    request->key = slash ? slash + 1 : "";
    request->key_length = slash ? rest_length - bucket_length - 1 : 0;
    return true;
}

/* http_extension.route. */
static void route(void *state, struct http_session *session) {
    static _Atomic uint64_t request_counter;
    struct s3_request request = {
        .server = state,
        .session = session,
        .http = &session->request,
        .key = "",
    };
    snprintf(request.request_id, sizeof(request.request_id), "%016llx",
             (unsigned long long)(atomic_fetch_add(&request_counter, 1) ^
                                  ((uint64_t)clock_realtime_ms() << 20)));
    if (!locate(&request) || !authenticate(&request)) return;
    if (request.bucket_length > 0 &&
        !s3_permit(&request, request.bucket, request.bucket_length, required_rights(&request))) {
        return;
    }
    if (request.bucket_length == 0) {
        if (request.http->method == HTTP_GET || request.http->method == HTTP_HEAD) {
            s3_list_buckets(&request);
        } else {
            s3_error(&request, 405, "MethodNotAllowed",
                     "The specified method is not allowed against this resource.", NULL);
        }
        return;
    }
    if (request.key_length == 0) {
        s3_bucket_route(&request);
    } else {
        s3_object_route(&request);
    }
}

const struct http_extension *s3_http_extension(struct s3_server *server) {
    server->extension = (struct http_extension){
        .claims = claims,
        .route = route,
        .state = server,
    };
    return &server->extension;
}
