/* Shared by the files of the HTTP front end (http.c: connections, parsing, bodies and
 * responses; http_routes.c: what each path answers), and by the front ends built on top
 * of HTTP through an http_extension (src/proto/s3/). Not used elsewhere. */
#ifndef STRATA_PROTO_HTTP_INTERNAL_H
#define STRATA_PROTO_HTTP_INTERNAL_H

#include "access/access.h"
#include "base/byte_buffer.h"
#include "engine/engine_options.h"
#include "engine/store.h"
#include "engine/value_block.h"
#include "net/net.h"
#include "proto/http/http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Queued response bytes above which a session stops taking new requests until the
 * client reads (pipelining backpressure). */
#define HTTP_OUTPUT_PAUSE (1024 * 1024)
/* A body of an answered-with-error request is read and dropped up to this size, so the
 * connection can be kept; a longer one closes the connection instead. */
#define HTTP_DRAIN_LIMIT (1024 * 1024)
/* Longest chunk-size line of a chunked body, extensions included. */
#define HTTP_CHUNK_LINE_LIMIT 256
/* Most header lines a request may have; more is 431. */
#define HTTP_MAX_HEADERS 128

enum http_method {
    HTTP_GET,
    HTTP_HEAD,
    HTTP_PUT,
    HTTP_POST,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_PATCH,
    HTTP_TRACE,
    HTTP_CONNECT,
};

struct http_server {
    struct http_environment environment;
};

/* One request header: NUL-terminated name and value (without the blanks around it),
 * pointing into the session's head buffer. */
struct http_header {
    const char *name;
    const char *value;
};

/* One parsed request head. Strings point into the session's head buffer. */
struct http_request {
    enum http_method method;
    const char *method_name; /* as sent ("GET") */
    char *path;              /* percent-decoded, without the query; may hold any byte but NUL */
    size_t path_length;
    /* The request target as sent: path (percent-encoded) and query (after '?', empty if
     * none). Owned by the session (freed when the request is done). */
    char *raw_path;
    size_t raw_path_length;
    const char *raw_query;
    size_t raw_query_length;
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
    int minor_version; /* HTTP/1.MINOR */
    bool keep_alive;
    bool has_content_length;
    uint64_t content_length;
    bool chunked;
    bool expect_continue;
    const char *range; /* the Range header's value, or NULL */
    int64_t started_ns;
};

/* What happens to the bytes of a request body. */
enum http_body_mode {
    BODY_NONE,    /* no body */
    BODY_DISCARD, /* read and dropped (the response has been sent) */
    BODY_VALUE,   /* read into session->block: the value of a PUT /keys/ */
    BODY_SINK,    /* handed to session->sink (an extension's request body) */
};

/* Where an extension's request body goes (BODY_SINK). Every callback gets CONTEXT and
 * runs on the session's thread. */
struct http_body_sink {
    /* Takes LENGTH body bytes (de-chunked). Returns false when the request has been
     * answered with an error and the body is not wanted: the connection then closes
     * after the response. */
    bool (*data)(void *context, const unsigned char *data, size_t length);
    /* Optional: room for up to *LENGTH body bytes at *BUFFER to be read into directly
     * (Content-Length bodies only); returns false when there is none now. */
    bool (*space)(void *context, unsigned char **buffer, size_t *length);
    /* With space: LENGTH bytes were read into it. Same return as data. */
    bool (*filled)(void *context, size_t length);
    /* The body is complete: answer the request (or suspend the session and answer later
     * with http_request_answered()). The sink is done with after this. */
    void (*end)(void *context);
    /* The body will never be complete (the connection closed or failed first): free
     * everything; nothing may be answered. */
    void (*abandon)(void *context);
    void *context;
};

enum chunk_state { CHUNK_SIZE_LINE, CHUNK_DATA, CHUNK_DATA_END, CHUNK_TRAILER };

struct http_session {
    struct http_server *server;
    struct output_queue *output;
    uint64_t id;
    char peer[64];
    bool closing; /* send what is queued and close */
    bool in_body;
    /* the request head being received */
    char *head;
    size_t head_length;
    size_t head_capacity;
    size_t head_scanned; /* bytes already searched for the blank line */
    struct http_request request;
    int64_t head_started_ms; /* monotonic; when its first byte arrived */
    int64_t last_progress_ms;
    /* the request body */
    enum http_body_mode body_mode;
    uint64_t body_remaining; /* of the Content-Length body or of the current chunk */
    enum chunk_state chunk_state;
    char chunk_line[HTTP_CHUNK_LINE_LIMIT];
    size_t chunk_line_length;
    struct http_body_sink sink; /* BODY_SINK */
    struct value_block *block;  /* BODY_VALUE: the value being received */
    char *key;                  /* BODY_VALUE: the key it will be stored under */
    size_t key_length;
    /* A GET whose value is being read from flash: no input is taken until it ends. */
    bool suspended;
    bool orphaned; /* the connection closed meanwhile: the read's end frees the session */
    void (*resume)(void *handle);
    void *resume_handle;
    /* Who the connection's latest /keys/ or S3 request was (access/access.h): set by the
     * route that authenticated it, kept across requests so that the same credentials
     * again cost no new check (credential_digest), released when the session is freed.
     * Rights are asked of access_identity_current(). */
    struct access_identity identity;
    /* credential_cached: identity is what /keys/ found for credential_anonymous (no
     * credentials: the user "default") or else for the Authorization header whose
     * SHA-256 is credential_digest, under the users table credential_table (a reload
     * makes the next request check again). */
    unsigned char credential_digest[32];
    const struct access_table *credential_table;
    bool credential_anonymous;
    bool credential_cached;
};

/* ---- responses (http.c) ---------------------------------------------------------- */

/* Queues a complete response with a copied BODY of LENGTH bytes (omitted for HEAD).
 * EXTRA_HEADERS is "Name: value\r\n" lines or NULL. Counts the request in the metrics
 * and the latency histogram. */
void http_respond(struct http_session *session, int status, const char *content_type,
                  const void *body, size_t length, const char *extra_headers);

/* Answers STATUS with the text "STATUS Reason: REASON" and EXTRA_HEADERS (or NULL).
 * A 4xx that the client's request caused is also logged (event=http_client_error);
 * 404 and 416 are ordinary answers and are not. */
void http_respond_error(struct http_session *session, int status, const char *reason,
                        const char *extra_headers);

/* Queues a response whose body is bytes [OFFSET, OFFSET + LENGTH) of STREAM, sent from
 * flash piece by piece (taken over; closed at once for HEAD). */
void http_respond_stream(struct http_session *session, int status, const char *content_type,
                         struct store_stream *stream, uint64_t offset, uint64_t length,
                         const char *extra_headers);

/* The request routed last is answered (after a read that ended later): finishes it the
 * way a request answered at once is finished. */
void http_request_answered(struct http_session *session);

/* Frees a closed session (once nothing refers to it). */
void http_session_free(struct http_session *session);

/* Queues a response whose body is LENGTH bytes at BODY sent without copying;
 * RELEASE(ARGUMENT) is called once they are sent (or at once for HEAD). */
void http_respond_reference(struct http_session *session, int status, const char *content_type,
                            const void *body, size_t length, const char *extra_headers,
                            output_release_fn release, void *argument);

/* Queues the head of a response to HEAD: CONTENT_LENGTH is the length of the body a GET
 * would have had; no body follows. */
void http_respond_head(struct http_session *session, int status, const char *content_type,
                       uint64_t content_length, const char *extra_headers);

/* Queues a response whose body is bytes [OFFSET, OFFSET + LENGTH) of READER's value,
 * read from its blobs as the client takes them (engine/blob.h: takes READER over; closed
 * at once for HEAD). */
struct blob_reader;
void http_respond_blob(struct http_session *session, int status, const char *content_type,
                       struct blob_reader *reader, uint64_t offset, uint64_t length,
                       const char *extra_headers);

/* Parses a single "bytes=" Range header against a value of LENGTH bytes. Returns 1 and
 * sets *FIRST and *LAST (inclusive) for a satisfiable range, 0 when the header should be
 * ignored (malformed, or several ranges: the whole value is sent), -1 when it cannot be
 * satisfied. */
int http_parse_range(const char *header, uint64_t length, uint64_t *first, uint64_t *last);

/* The value of request header NAME (any case), or NULL. */
const char *http_header_value(const struct http_request *request, const char *name);

/* Starts receiving the request's body into SINK (copied); the session calls SINK's
 * functions from now on, and `end` or `abandon` exactly once. For a request with no
 * body `end` runs once routing returns. */
void http_receive_body(struct http_session *session, const struct http_body_sink *sink);

/* ---- routes (http_routes.c) ------------------------------------------------------ */

/* Answers the request just parsed. May start receiving a body (sets body_mode and
 * the body fields); otherwise queues the response. */
void http_route(struct http_session *session);

/* Called when a BODY_VALUE body is complete: stores it and responds. */
void http_finish_value(struct http_session *session);

#endif
