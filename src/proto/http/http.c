/* HTTP/1.1 connections: request heads, bodies (Content-Length and chunked), responses,
 * keep-alive, pipelining and timeouts. What each path answers is in http_routes.c. */
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/version.h"
#include "engine/blob.h"
#include "proto/http/http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const struct option_definition http_option_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "proto/http/http_options.def"
#undef OPTION
};

struct option_group http_options = {
    .title = "HTTP front end",
    .definitions = http_option_definitions,
    .count = sizeof(http_option_definitions) / sizeof(http_option_definitions[0]),
};

static const struct metric_definition http_metric_definitions[] = {
#define METRIC METRIC_DEFINITION
#define HISTOGRAM(...)
#include "proto/http/http_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, METRIC_COUNTER, NULL},
};

static const struct histogram_definition http_histogram_definitions[] = {
#define METRIC(...)
#define HISTOGRAM HISTOGRAM_DEFINITION
#include "proto/http/http_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, NULL, NULL, NULL, NULL},
};

struct metric_group http_metrics = {
    .name = "http",
    .metrics = http_metric_definitions,
    .histograms = http_histogram_definitions,
};

const char http_refusal[] = "HTTP/1.1 503 Service Unavailable\r\n"
                            "Content-Type: text/plain\r\n"
                            "Content-Length: 30\r\n"
                            "Connection: close\r\n"
                            "\r\n"
                            "max number of clients reached\n";

/* Initial room of a request head; it grows up to http-max-header. */
#define HEAD_INITIAL_CAPACITY 1024
/* Initial room of a chunked value body; it doubles up to max-value. */
#define CHUNKED_INITIAL_CAPACITY (64 * 1024)

static const struct {
    const char *name;
    enum http_method method;
} methods[] = {
    {"GET", HTTP_GET},     {"HEAD", HTTP_HEAD},     {"PUT", HTTP_PUT},
    {"POST", HTTP_POST},   {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS},
    {"PATCH", HTTP_PATCH}, {"TRACE", HTTP_TRACE},   {"CONNECT", HTTP_CONNECT},
};

struct http_server *http_server_create(const struct http_environment *environment) {
    struct http_server *server = calloc(1, sizeof(*server));
    if (server == NULL) return NULL;
    server->environment = *environment;
    return server;
}

void http_server_destroy(struct http_server *server) {
    free(server);
}

static int64_t option(const struct http_session *session, option_id id) {
    return options_number(session->server->environment.options, id);
}

/* ---- responses ------------------------------------------------------------------- */

/* The Date header's value for now; formatted at most once a second per thread. */
static const char *date_now(void) {
    static _Thread_local time_t formatted_second = -1;
    static _Thread_local char text[64];
    time_t now = time(NULL);
    if (now != formatted_second) {
        struct tm parts;
        gmtime_r(&now, &parts);
        strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &parts);
        formatted_second = now;
    }
    return text;
}

static const char *status_text(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

/* True when the request still has body bytes on the wire that nobody will read. */
static bool body_unread(const struct http_session *session) {
    const struct http_request *request = &session->request;
    return !session->in_body && session->body_mode != BODY_VALUE &&
           session->body_mode != BODY_SINK &&
           (request->chunked || (request->has_content_length && request->content_length > 0));
}

/* Formats a response head into HEAD (SIZE bytes). Returns the length the whole head
 * needs (as snprintf() does: when it is SIZE or more, HEAD holds a cut copy that must
 * not be sent), or -1 on an encoding error. */
static int format_head(char *head, size_t size, int status, const char *content_type,
                       uint64_t content_length, const char *extra_headers, bool keep_alive) {
    return snprintf(head, size,
                    "HTTP/1.1 %d %s\r\n"
                    "Server: strata/%s\r\n"
                    "Date: %s\r\n"
                    "Content-Length: %llu\r\n"
                    "%s%s%s"
                    "%s"
                    "Connection: %s\r\n"
                    "\r\n",
                    status, status_text(status), STRATA_VERSION, date_now(),
                    (unsigned long long)content_length, content_type ? "Content-Type: " : "",
                    content_type ? content_type : "", content_type ? "\r\n" : "",
                    extra_headers ? extra_headers : "", keep_alive ? "keep-alive" : "close");
}

/* Queues the status line and headers for a body of CONTENT_LENGTH bytes, and decides
 * whether the connection stays open after this response. */
static void queue_head(struct http_session *session, int status, const char *content_type,
                       uint64_t content_length, const char *extra_headers) {
    const struct http_request *request = &session->request;
    bool keep_alive = request->keep_alive && !session->closing;
    /* A body we will not read can only be skipped if it is short and known. */
    if (body_unread(session) && (request->chunked || request->expect_continue ||
                                 request->content_length > HTTP_DRAIN_LIMIT)) {
        keep_alive = false;
    }
    if (!keep_alive) session->closing = true;

    /* The head is built whole or not at all: a head cut short would let the body be read
     * as headers. The first attempt uses the stack; a longer head is measured and built
     * again in a buffer of its size. */
    char fixed[1024];
    char *head = fixed;
    int length = format_head(fixed, sizeof(fixed), status, content_type, content_length,
                             extra_headers, keep_alive);
    if (length >= 0 && (size_t)length >= sizeof(fixed)) {
        head = malloc((size_t)length + 1);
        if (head != NULL) {
            length = format_head(head, (size_t)length + 1, status, content_type, content_length,
                                 extra_headers, keep_alive);
        }
    }
    if (head == NULL || length < 0) {
        session->closing = true;
        session->output->failed = true; /* no response can be sent: the connection closes */
        if (head != fixed) free(head);
        return;
    }
    output_queue_append(session->output, head, (size_t)length);
    if (head != fixed) free(head);

    metric_add(HTTP_METRIC(http_requests), 1);
    if (status >= 400 && status < 500) metric_add(HTTP_METRIC(http_client_errors), 1);
    int64_t started = request->started_ns ? request->started_ns : clock_monotonic_ns();
    metric_observe(HTTP_HISTOGRAM(http_request), clock_monotonic_ns() - started);
}

void http_respond(struct http_session *session, int status, const char *content_type,
                  const void *body, size_t length, const char *extra_headers) {
    queue_head(session, status, content_type, length, extra_headers);
    if (session->request.method != HTTP_HEAD && length > 0) {
        output_queue_append(session->output, body, length);
    }
}

void http_respond_reference(struct http_session *session, int status, const char *content_type,
                            const void *body, size_t length, const char *extra_headers,
                            output_release_fn release, void *argument) {
    queue_head(session, status, content_type, length, extra_headers);
    if (session->request.method == HTTP_HEAD || length == 0) {
        release(argument);
        return;
    }
    output_queue_append_reference(session->output, body, length, release, argument);
}

void http_respond_stream(struct http_session *session, int status, const char *content_type,
                         struct store_stream *stream, uint64_t offset, uint64_t length,
                         const char *extra_headers) {
    queue_head(session, status, content_type, length, extra_headers);
    if (session->request.method == HTTP_HEAD || length == 0) {
        store_stream_close(stream);
        return;
    }
    store_stream_send(stream, offset, length, session->output, session->resume,
                      session->resume_handle);
}

void http_respond_head(struct http_session *session, int status, const char *content_type,
                       uint64_t content_length, const char *extra_headers) {
    queue_head(session, status, content_type, content_length, extra_headers);
}

void http_respond_blob(struct http_session *session, int status, const char *content_type,
                       struct blob_reader *reader, uint64_t offset, uint64_t length,
                       const char *extra_headers) {
    queue_head(session, status, content_type, length, extra_headers);
    if (session->request.method == HTTP_HEAD || length == 0) {
        blob_reader_close(reader);
        return;
    }
    blob_reader_send(reader, offset, length, session->output, session->resume,
                     session->resume_handle);
}

/* Parses a single "bytes=" range against a value of LENGTH bytes. Returns 1 and sets
 * *FIRST and *LAST (inclusive) for a satisfiable range, 0 when the header should be
 * ignored (malformed, or several ranges: the whole value is sent), -1 when it cannot
 * be satisfied. */
int http_parse_range(const char *header, uint64_t length, uint64_t *first, uint64_t *last) {
    if (strncmp(header, "bytes=", 6) != 0 || strchr(header, ',') != NULL) return 0;
    const char *spec = header + 6;
    char *end;
    if (*spec == '-') {
        if (spec[1] < '0' || spec[1] > '9') return 0;
        uint64_t suffix = strtoull(spec + 1, &end, 10);
        if (*end != '\0') return 0;
        if (suffix == 0 || length == 0) return -1;
        *first = suffix >= length ? 0 : length - suffix;
        *last = length - 1;
        return 1;
    }
    if (*spec < '0' || *spec > '9') return 0;
    uint64_t start = strtoull(spec, &end, 10);
    if (*end != '-') return 0;
    const char *stop_text = end + 1;
    uint64_t stop = UINT64_MAX;
    if (*stop_text != '\0') {
        if (*stop_text < '0' || *stop_text > '9') return 0;
        stop = strtoull(stop_text, &end, 10);
        if (*end != '\0' || stop < start) return 0;
    }
    if (start >= length) return -1;
    *first = start;
    *last = stop >= length ? length - 1 : stop;
    return 1;
}

/* Answers GET or HEAD /keys/ with what the read of the key found (VALUE taken over). */

const char *http_header_value(const struct http_request *request, const char *name) {
    for (size_t i = 0; i < request->header_count; i++) {
        if (strcasecmp(request->headers[i].name, name) == 0) return request->headers[i].value;
    }
    return NULL;
}

void http_receive_body(struct http_session *session, const struct http_body_sink *sink) {
    session->sink = *sink;
    session->body_mode = BODY_SINK;
}

void http_respond_error(struct http_session *session, int status, const char *reason,
                        const char *extra_headers) {
    if (status >= 400 && status < 500 && status != 404 && status != 416) {
        char quoted[160];
        log_event(LOG_INFO, "http_client_error", "client=%llu peer=%s status=%d reason=%s",
                  (unsigned long long)session->id, session->peer, status,
                  log_quote(quoted, sizeof(quoted), reason, strlen(reason)));
    }
    char text[256];
    int length = snprintf(text, sizeof(text), "%d %s: %s\n", status, status_text(status), reason);
    if (length < 0 || (size_t)length >= sizeof(text)) length = (int)sizeof(text) - 1;
    http_respond(session, status, "text/plain; charset=utf-8", text, (size_t)length, extra_headers);
}

/* Answers a request the client got wrong with STATUS and REASON, and closes. */
static void reject(struct http_session *session, int status, const char *reason) {
    session->closing = true;
    http_respond_error(session, status, reason, NULL);
}

/* ---- sessions -------------------------------------------------------------------- */

/* Forgets the finished request and gets ready for the next one. */
static void request_done(struct http_session *session) {
    if (session->body_mode == BODY_SINK && session->sink.abandon != NULL) {
        session->sink.abandon(session->sink.context); /* never ended: give it up */
    }
    memset(&session->sink, 0, sizeof(session->sink));
    free(session->request.raw_path);
    session->head_length = 0;
    session->head_scanned = 0;
    memset(&session->request, 0, sizeof(session->request));
    session->request.method = HTTP_GET;
    session->in_body = false;
    session->body_mode = BODY_NONE;
    session->body_remaining = 0;
    session->chunk_state = CHUNK_SIZE_LINE;
    session->chunk_line_length = 0;
    if (session->block != NULL) value_block_release(session->block);
    session->block = NULL;
    free(session->key);
    session->key = NULL;
    session->key_length = 0;
}

void *http_session_open(struct http_server *server, uint64_t id, const char *peer,
                        struct output_queue *output, void (*resume)(void *handle),
                        void *resume_handle) {
    struct http_session *session = calloc(1, sizeof(*session));
    if (session == NULL) return NULL;
    session->server = server;
    session->output = output;
    session->resume = resume;
    session->resume_handle = resume_handle;
    session->id = id;
    snprintf(session->peer, sizeof(session->peer), "%s", peer);
    session->last_progress_ms = clock_monotonic_ms();
    request_done(session);
    return session;
}

void http_session_free(struct http_session *session) {
    request_done(session); /* drops a half-received value: nothing is stored */
    access_identity_release(&session->identity);
    free(session->head);
    free(session);
}

void http_session_close(void *opaque) {
    struct http_session *session = opaque;
    if (session->suspended) {
        session->orphaned = true; /* freed when its read ends */
        return;
    }
    http_session_free(session);
}

/* ---- request heads --------------------------------------------------------------- */

static bool is_token_character(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes the path of TARGET (up to '?' or its end) in place and checks it.
 * Returns NULL and sets *PATH_LENGTH, or an error message. */
static const char *decode_path(char *target, size_t *path_length) {
    if (target[0] != '/') return "the request target must be an absolute path";
    char *query = strchr(target, '?');
    if (query != NULL) *query = '\0';
    size_t out = 0;
    for (size_t in = 0; target[in] != '\0'; in++) {
        unsigned char c = (unsigned char)target[in];
        if (c == '%') {
            int high = hex_value((unsigned char)target[in + 1]);
            int low = high < 0 ? -1 : hex_value((unsigned char)target[in + 2]);
            if (high < 0 || low < 0) return "bad percent-encoding in the path";
            c = (unsigned char)(high * 16 + low);
            if (c == 0) return "the path holds a NUL byte";
            in += 2;
        } else if (c <= ' ' || c == 0x7f) {
            return "the path holds a control character";
        }
        target[out++] = (char)c;
    }
    target[out] = '\0';
    /* No ".." segment, however it was spelled. */
    for (size_t i = 0; i + 1 < out; i++) {
        if (target[i] == '.' && target[i + 1] == '.' && (i == 0 || target[i - 1] == '/') &&
            (i + 2 == out || target[i + 2] == '/')) {
            return "the path holds a '..' segment";
        }
    }
    *path_length = out;
    return NULL;
}

/* Parses the request line (LINE, NUL-terminated, cut in place; the path is
 * percent-decoded in place and request->path points into LINE): METHOD SP TARGET SP
 * HTTP/1.x. Fills REQUEST's method, path, version and default keep-alive. Returns 0, or
 * an HTTP status with *REASON set (a static string). */
static int parse_request_line(struct http_request *request, char *line, const char **reason) {
    char *method = line;
    char *space = strchr(method, ' ');
    if (space == NULL || space == method) {
        *reason = "malformed request line";
        return 400;
    }
    *space = '\0';
    for (char *c = method; *c; c++) {
        if (!is_token_character((unsigned char)*c)) {
            *reason = "malformed method";
            return 400;
        }
    }
    char *target = space + 1;
    space = strchr(target, ' ');
    if (space == NULL || space == target) {
        *reason = "malformed request line";
        return 400;
    }
    *space = '\0';
    char *version = space + 1;
    if (strncmp(version, "HTTP/", 5) != 0 || strlen(version) != 8 || version[6] != '.' ||
        version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
        *reason = "malformed HTTP version";
        return 400;
    }
    if (version[5] != '1') {
        *reason = "only HTTP/1.0 and HTTP/1.1 are spoken here";
        return 505;
    }
    request->minor_version = version[7] - '0';
    request->keep_alive = request->minor_version >= 1;
    bool known = false;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(method, methods[i].name) == 0) {
            request->method = methods[i].method;
            request->method_name = methods[i].name;
            known = true;
        }
    }
    if (!known) {
        *reason = "unknown method";
        return 501;
    }
    /* Keep the target as sent (signatures cover it), path and query apart. */
    request->raw_path = strdup(target);
    if (request->raw_path == NULL) {
        *reason = "out of memory";
        return 503;
    }
    char *query = strchr(request->raw_path, '?');
    if (query != NULL) *query++ = '\0';
    request->raw_path_length = strlen(request->raw_path);
    request->raw_query = query ? query : "";
    request->raw_query_length = query ? strlen(query) : 0;
    const char *path_error = decode_path(target, &request->path_length);
    if (path_error != NULL) {
        *reason = path_error;
        return 400;
    }
    request->path = target;
    return 0;
}

/* Splits one header line (LINE, NUL-terminated, cut in place) into *NAME and *VALUE
 * (pointers into LINE; the value without the blanks around it) and checks both. Returns
 * 0, or 400 with *REASON set (a static string). */
static int parse_header_line(char *line, char **name, char **value, const char **reason) {
    if (*line == ' ' || *line == '\t') {
        *reason = "folded header lines are not accepted";
        return 400;
    }
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line) {
        *reason = "malformed header line";
        return 400;
    }
    *colon = '\0';
    for (char *c = line; *c; c++) {
        if (!is_token_character((unsigned char)*c)) {
            *reason = "malformed header name";
            return 400;
        }
    }
    char *start = colon + 1;
    while (*start == ' ' || *start == '\t')
        start++;
    char *end = start + strlen(start);
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    for (char *c = start; *c; c++) {
        if ((unsigned char)*c < ' ' && *c != '\t') {
            *reason = "a control character in a header value";
            return 400;
        }
    }
    *name = line;
    *value = start;
    return 0;
}

/* Applies a Content-Length header whose value is VALUE: up to 18 digits, and the same
 * as any earlier one. Returns 0, or 400 with *REASON set (a static string). */
static int apply_content_length(struct http_request *request, const char *value,
                                const char **reason) {
    uint64_t parsed = 0;
    if (*value == '\0' || strlen(value) > 18) {
        *reason = "bad Content-Length";
        return 400;
    }
    for (const char *c = value; *c; c++) {
        if (*c < '0' || *c > '9') {
            *reason = "bad Content-Length";
            return 400;
        }
        parsed = parsed * 10 + (uint64_t)(*c - '0');
    }
    if (request->has_content_length && request->content_length != parsed) {
        *reason = "conflicting Content-Length headers";
        return 400;
    }
    request->has_content_length = true;
    request->content_length = parsed;
    return 0;
}

/* Applies the header NAME: VALUE to REQUEST if it is one the server heeds
 * (Content-Length, Transfer-Encoding, which also sets *HAS_TRANSFER_ENCODING,
 * Connection, Expect, Range; request->range then points at VALUE, which lives in the
 * session's head). Other headers are ignored. Returns 0, or an HTTP status with *REASON
 * set (a static string). */
static int apply_header(struct http_request *request, const char *name, const char *value,
                        bool *has_transfer_encoding, const char **reason) {
    if (strcasecmp(name, "Content-Length") == 0) {
        return apply_content_length(request, value, reason);
    } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
        if (strcasecmp(value, "chunked") != 0) {
            *reason = "only the chunked transfer coding is supported";
            return 501;
        }
        *has_transfer_encoding = true;
        request->chunked = true;
    } else if (strcasecmp(name, "Connection") == 0) {
        if (strcasestr(value, "close") != NULL) request->keep_alive = false;
        if (strcasestr(value, "keep-alive") != NULL && request->minor_version == 0) {
            request->keep_alive = true;
        }
    } else if (strcasecmp(name, "Expect") == 0) {
        if (strcasecmp(value, "100-continue") != 0) {
            *reason = "unsupported expectation";
            return 417;
        }
        request->expect_continue = true;
    } else if (strcasecmp(name, "Range") == 0) {
        request->range = value;
    }
    return 0;
}

/* Parses the request head in session->head (LENGTH bytes, ending in a blank line).
 * Fills session->request. Returns 0, or an HTTP status with *REASON set. */
static int parse_head(struct http_session *session, size_t length, const char **reason) {
    struct http_request *request = &session->request;
    char *head = session->head;
    head[length - 1] = '\0'; /* the last '\n'; the lines are cut at each CRLF below */
    char *line_end = strstr(head, "\r\n");
    if (line_end == NULL) {
        *reason = "the request line does not end in CRLF";
        return 400;
    }
    *line_end = '\0';
    int status = parse_request_line(request, head, reason);
    if (status != 0) return status;

    bool has_transfer_encoding = false;
    char *line = line_end + 2;
    while (*line != '\0' && *line != '\r') {
        line_end = strstr(line, "\r\n");
        if (line_end == NULL) {
            *reason = "a header line does not end in CRLF";
            return 400;
        }
        *line_end = '\0';
        char *name;
        char *value;
        status = parse_header_line(line, &name, &value, reason);
        if (status == 0)
            status = apply_header(request, name, value, &has_transfer_encoding, reason);
        if (status != 0) return status;
        if (request->header_count == HTTP_MAX_HEADERS) {
            *reason = "too many header lines";
            return 431;
        }
        request->headers[request->header_count++] = (struct http_header){name, value};
        line = line_end + 2;
    }
    if (has_transfer_encoding && request->has_content_length) {
        *reason = "both Transfer-Encoding and Content-Length";
        return 400;
    }
    return 0;
}

/* Adds input to the request head. Returns the bytes taken; sets *COMPLETE once the
 * blank line that ends the head has arrived. Answers 431 and closes if the head grows
 * past http-max-header. */
static size_t take_head_bytes(struct http_session *session, const unsigned char *data,
                              size_t length, bool *complete) {
    *complete = false;
    size_t skipped = 0;
    if (session->head_length == 0) {
        while (skipped < length && (data[skipped] == '\r' || data[skipped] == '\n'))
            skipped++; /* empty lines before a request are ignored (RFC 9112 2.2) */
        if (skipped == length) return skipped;
        session->head_started_ms = clock_monotonic_ms();
    }
    size_t limit = (size_t)option(session, HTTP_OPTION(http_max_header));
    if (session->head_length >= limit) { /* CONFIG SET lowered the limit meanwhile */
        reject(session, 431, "the request line and headers exceed http-max-header");
        return length;
    }
    size_t room = limit - session->head_length;
    size_t take = length - skipped < room ? length - skipped : room;
    if (session->head_length + take + 1 > session->head_capacity) {
        size_t capacity = session->head_capacity ? session->head_capacity : HEAD_INITIAL_CAPACITY;
        while (capacity < session->head_length + take + 1)
            capacity *= 2;
        char *grown = realloc(session->head, capacity);
        if (grown == NULL) {
            session->closing = true;
            http_respond_error(session, 503, "out of memory", NULL);
            return length;
        }
        session->head = grown;
        session->head_capacity = capacity;
    }
    memcpy(session->head + session->head_length, data + skipped, take);
    size_t scan_from = session->head_scanned > 3 ? session->head_scanned - 3 : 0;
    size_t end = session->head_length + take;
    for (size_t i = scan_from; i + 3 < end; i++) {
        if (session->head[i] == '\r' && memcmp(session->head + i, "\r\n\r\n", 4) == 0) {
            size_t head_end = i + 4;
            size_t used = head_end - session->head_length;
            session->head_length = head_end;
            session->head[head_end] = '\0';
            *complete = true;
            return skipped + used;
        }
    }
    session->head_length = end;
    session->head_scanned = end;
    if (end >= limit) {
        reject(session, 431, "the request line and headers exceed http-max-header");
        return length;
    }
    return skipped + take;
}

/* The head is complete: parses it, routes it and sets up its body. */
static void begin_request(struct http_session *session) {
    session->request.started_ns = clock_monotonic_ns();
    const char *reason = NULL;
    int status = parse_head(session, session->head_length, &reason);
    if (status != 0) {
        reject(session, status, reason);
        return;
    }
    http_route(session);
    if (session->suspended) return; /* a read answers it: http_request_answered() */
    http_request_answered(session);
}

void http_request_answered(struct http_session *session) {
    if (session->closing) return;
    const struct http_request *request = &session->request;
    bool has_body = request->chunked || (request->has_content_length && request->content_length);
    if (session->body_mode == BODY_SINK && !has_body) {
        struct http_body_sink sink = session->sink;
        session->body_mode = BODY_NONE; /* ended: request_done() must not abandon it */
        sink.end(sink.context);
        if (!session->suspended) request_done(session);
        return;
    }
    if (session->body_mode == BODY_VALUE || session->body_mode == BODY_SINK) {
        if (request->expect_continue) {
            static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
            output_queue_append(session->output, continue_line, sizeof(continue_line) - 1);
        }
    } else if (has_body) {
        session->body_mode = BODY_DISCARD; /* answered already; skip the body */
    } else {
        request_done(session);
        return;
    }
    session->in_body = true;
    session->body_remaining = request->chunked ? 0 : request->content_length;
    session->chunk_state = CHUNK_SIZE_LINE;
}

/* ---- request bodies -------------------------------------------------------------- */

/* The body is complete. */
static void end_body(struct http_session *session) {
    if (session->body_mode == BODY_VALUE) http_finish_value(session);
    if (session->body_mode == BODY_SINK) {
        struct http_body_sink sink = session->sink;
        session->body_mode = BODY_NONE; /* ended: request_done() must not abandon it */
        sink.end(sink.context);
        if (session->suspended) return; /* answered later: http_request_answered() */
    }
    request_done(session);
}

/* Stores LENGTH body bytes where the body goes. Returns false if the session must
 * close (a chunked value grew past max-value or memory ran out). */
static bool absorb(struct http_session *session, const unsigned char *data, size_t length) {
    if (session->body_mode == BODY_SINK) {
        if (session->sink.data(session->sink.context, data, length)) return true;
        session->closing = true; /* answered with an error; the rest is not read */
        return false;
    }
    if (session->body_mode != BODY_VALUE) return true;
    struct value_block *block = session->block;
    if (block->length + length > block->capacity) {
        uint64_t max_value = (uint64_t)option(session, ENGINE_OPTION(max_value));
        if (block->length + length > max_value) {
            reject(session, 413, "the body exceeds max-value");
            return false;
        }
        uint64_t capacity = block->capacity ? block->capacity : CHUNKED_INITIAL_CAPACITY;
        while (capacity < block->length + length)
            capacity *= 2;
        if (capacity > max_value) capacity = max_value;
        struct value_block *grown = value_block_grow(block, capacity);
        if (grown == NULL) {
            session->closing = true;
            http_respond_error(session, 507, "out of memory", NULL);
            return false;
        }
        session->block = block = grown;
    }
    memcpy(block->data + block->length, data, length);
    block->length += length;
    return true;
}

/* Reads chunk framing bytes into chunk_line until a line feed. Returns the bytes
 * used; sets *LINE_DONE when a whole line is in chunk_line (without CRLF). */
static size_t take_chunk_line(struct http_session *session, const unsigned char *data,
                              size_t length, bool *line_done) {
    *line_done = false;
    size_t used = 0;
    while (used < length) {
        unsigned char c = data[used++];
        if (c == '\n') {
            if (session->chunk_line_length > 0 &&
                session->chunk_line[session->chunk_line_length - 1] == '\r') {
                session->chunk_line_length--;
            }
            session->chunk_line[session->chunk_line_length] = '\0';
            *line_done = true;
            return used;
        }
        if (session->chunk_line_length + 1 >= HTTP_CHUNK_LINE_LIMIT) {
            reject(session, 400, "a chunk line is too long");
            return length;
        }
        session->chunk_line[session->chunk_line_length++] = (char)c;
    }
    return used;
}

/* Handles one line of chunk framing in chunk_line. */
static void chunk_line_done(struct http_session *session) {
    const char *line = session->chunk_line;
    switch (session->chunk_state) {
    case CHUNK_SIZE_LINE: {
        uint64_t size = 0;
        int digits = 0;
        for (; hex_value((unsigned char)line[digits]) >= 0; digits++) {
            if (digits == 15) {
                reject(session, 400, "a chunk size is too large");
                return;
            }
            size = size * 16 + (uint64_t)hex_value((unsigned char)line[digits]);
        }
        if (digits == 0 || (line[digits] != '\0' && line[digits] != ';' && line[digits] != ' ' &&
                            line[digits] != '\t')) {
            reject(session, 400, "malformed chunk size");
            return;
        }
        session->body_remaining = size;
        session->chunk_state = size == 0 ? CHUNK_TRAILER : CHUNK_DATA;
        break;
    }
    case CHUNK_DATA_END:
        if (line[0] != '\0') {
            reject(session, 400, "chunk data longer than its size");
            return;
        }
        session->chunk_state = CHUNK_SIZE_LINE;
        break;
    case CHUNK_TRAILER:
        if (line[0] == '\0') end_body(session); /* the blank line after the trailers */
        break;
    case CHUNK_DATA:
        break;
    }
    session->chunk_line_length = 0;
}

/* Feeds body bytes. Returns the bytes used. */
static size_t take_body_bytes(struct http_session *session, const unsigned char *data,
                              size_t length) {
    size_t used = 0;
    while (used < length && session->in_body && !session->closing) {
        bool data_phase = !session->request.chunked || session->chunk_state == CHUNK_DATA;
        if (data_phase) {
            size_t take = length - used;
            if (take > session->body_remaining) take = (size_t)session->body_remaining;
            if (!absorb(session, data + used, take)) return length;
            used += take;
            session->body_remaining -= take;
            if (session->body_remaining == 0) {
                if (session->request.chunked) {
                    session->chunk_state = CHUNK_DATA_END;
                } else {
                    end_body(session);
                }
            }
            continue;
        }
        bool line_done;
        used += take_chunk_line(session, data + used, length - used, &line_done);
        if (line_done && !session->closing) chunk_line_done(session);
    }
    return used;
}

/* ---- the connection's input ------------------------------------------------------ */

bool http_session_data(void *opaque, const unsigned char *data, size_t length, size_t *consumed) {
    struct http_session *session = opaque;
    size_t position = 0;
    if (length > 0) session->last_progress_ms = clock_monotonic_ms();
    while (position < length && !session->closing && !session->suspended) {
        if (session->in_body) {
            position += take_body_bytes(session, data + position, length - position);
            continue;
        }
        if (session->head_length == 0 &&
            output_queue_pending(session->output) > HTTP_OUTPUT_PAUSE) {
            break; /* let the client read its responses before taking more requests */
        }
        bool complete;
        position += take_head_bytes(session, data + position, length - position, &complete);
        if (complete) begin_request(session);
    }
    if (session->closing) position = length;
    *consumed = position;
    return session->closing;
}

bool http_session_wants_close(void *opaque) {
    const struct http_session *session = opaque;
    return session->closing && !session->suspended;
}

bool http_session_direct_target(void *opaque, unsigned char **buffer, size_t *length) {
    struct http_session *session = opaque;
    if (!session->in_body || session->request.chunked || session->body_remaining == 0 ||
        session->closing) {
        return false;
    }
    if (session->body_mode == BODY_SINK) {
        if (session->sink.space == NULL ||
            !session->sink.space(session->sink.context, buffer, length)) {
            return false;
        }
        if (*length > session->body_remaining) *length = (size_t)session->body_remaining;
        return true;
    }
    if (session->body_mode != BODY_VALUE) return false;
    *buffer = session->block->data + session->block->length;
    *length = (size_t)session->body_remaining;
    return true;
}

void http_session_direct_filled(void *opaque, size_t length) {
    struct http_session *session = opaque;
    if (session->body_mode == BODY_SINK) {
        session->body_remaining -= length;
        session->last_progress_ms = clock_monotonic_ms();
        if (!session->sink.filled(session->sink.context, length)) {
            session->closing = true;
            return;
        }
        if (session->body_remaining == 0) end_body(session);
        return;
    }
    session->block->length += length;
    session->body_remaining -= length;
    session->last_progress_ms = clock_monotonic_ms();
    if (session->body_remaining == 0) end_body(session);
}

bool http_session_tick(void *opaque, int64_t now_ms) {
    struct http_session *session = opaque;
    if (session->closing) return true;
    if (session->suspended) return false; /* the server, not the client, is reading */
    int64_t header_timeout = option(session, HTTP_OPTION(http_header_timeout)) * 1000;
    int64_t idle_timeout = option(session, HTTP_OPTION(http_idle_timeout)) * 1000;
    const char *late = NULL;
    if (!session->in_body && session->head_length > 0 &&
        now_ms - session->head_started_ms > header_timeout) {
        late = "the request headers took longer than http-header-timeout";
    } else if (session->in_body && now_ms - session->last_progress_ms > idle_timeout) {
        late = "the request body stalled for longer than http-idle-timeout";
    } else if (!session->in_body && session->head_length == 0 &&
               output_queue_pending(session->output) == 0 &&
               now_ms - session->last_progress_ms > idle_timeout) {
        return true; /* an idle keep-alive connection: close quietly */
    }
    if (late == NULL) return false;
    metric_add(HTTP_METRIC(http_timeouts), 1);
    reject(session, 408, late);
    return true;
}
