/* AWS Signature Version 4 for the S3 front end: the Authorization header, presigned URLs
 * (X-Amz-* query parameters) and the aws-chunked streaming upload encoding with its
 * per-chunk signatures and trailers (docs/s3.md); and the older Signature Version 2
 * (HMAC-SHA1), in the header and in presigned URLs. Pure functions over a view of the
 * request: no I/O, no engine, no HTTP session.
 *
 * References: "Authenticating Requests (AWS Signature Version 4)" in the Amazon S3 API
 * reference: header auth, query-string auth, and "Signature Calculations for the
 * Authorization Header: Transferring Payload in Multiple Chunks (Chunked Upload)";
 * "Signing and Authenticating REST Requests" (Signature Version 2) in the Amazon S3
 * developer guide. */
#ifndef STRATA_PROTO_S3_AUTH_H
#define STRATA_PROTO_S3_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One request header as received (name in any case; value without surrounding
 * whitespace). Not NUL-terminated. */
struct s3_header {
    const char *name;
    size_t name_length;
    const char *value;
    size_t value_length;
};

/* What signing covers, as the client sent it. */
struct s3_request_view {
    const char *method;   /* "GET", "PUT", ... (NUL-terminated) */
    const char *raw_path; /* the request target's path as sent: percent-encoded, no query */
    size_t raw_path_length;
    const char *raw_query; /* after '?', as sent (may be empty) */
    size_t raw_query_length;
    const struct s3_header *headers;
    size_t header_count;
    /* The bucket a virtual-hosted-style Host names ("bucket" of bucket.DOMAIN), or NULL
     * (length 0) for a path-style request: Signature Version 2 signs the resource as
     * "/bucket" + raw_path. */
    const char *virtual_bucket;
    size_t virtual_bucket_length;
};

/* An S3 error: the HTTP status, S3's code ("SignatureDoesNotMatch") and a message
 * (static strings). */
struct s3_error {
    int status;
    const char *code;
    const char *message;
};

/* Finds the secret key of ACCESS_KEY (ACCESS_KEY_LENGTH bytes): returns it
 * (NUL-terminated, owned by the callee, valid until the server stops) or NULL. */
typedef const char *(*s3_secret_lookup)(void *context, const char *access_key,
                                        size_t access_key_length);

/* How the payload is protected (x-amz-content-sha256). */
enum s3_payload {
    S3_PAYLOAD_UNSIGNED = 0,             /* UNSIGNED-PAYLOAD, or a presigned URL */
    S3_PAYLOAD_SHA256,                   /* a hex SHA-256 of the body: verify it (payload_sha256) */
    S3_PAYLOAD_STREAMING_SIGNED,         /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD */
    S3_PAYLOAD_STREAMING_SIGNED_TRAILER, /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
    S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER, /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
};

/* Who a request is and what its signature allows. A Signature Version 2 request fills
 * access_key and payload (always S3_PAYLOAD_UNSIGNED) and leaves the rest empty. */
struct s3_auth {
    bool anonymous; /* no Authorization header and no X-Amz-Signature: nobody */
    char access_key[129];
    enum s3_payload payload;
    unsigned char payload_sha256[32]; /* with S3_PAYLOAD_SHA256 */
    /* For streaming payloads: what chunk signatures chain from. */
    unsigned char signing_key[32];
    char amz_date[17]; /* yyyymmddThhmmssZ */
    char scope[160];   /* yyyymmdd/region/s3/aws4_request */
    char seed_signature[65];
};

/* Longest a presigned URL may be valid (X-Amz-Expires), as AWS: seven days. */
#define S3_PRESIGN_MAX_SECONDS 604800
/* Largest difference allowed between the request's time and the server's (as AWS). */
#define S3_MAX_SKEW_MS (15 * 60 * 1000)

/* Verifies REQUEST's signature at time NOW_MS (Unix epoch milliseconds), looking secrets
 * up with LOOKUP(CONTEXT, ...). Takes Signature Version 4 (Authorization:
 * AWS4-HMAC-SHA256 ..., or X-Amz-* query parameters) and Signature Version 2
 * (Authorization: AWS AccessKeyId:Signature, or the AWSAccessKeyId, Signature and Expires
 * query parameters: HMAC-SHA1 of the request's verb, Content-MD5, Content-Type, Date or
 * Expires, x-amz-* headers and resource with its sub-resources; its payload is
 * S3_PAYLOAD_UNSIGNED). Returns true with *AUTH filled when the request is signed
 * correctly, or carries no signature at all (then auth->anonymous). Returns false with
 * *ERROR set otherwise: AuthorizationHeaderMalformed / AuthorizationQueryParametersError
 * (400), InvalidAccessKeyId (403), SignatureDoesNotMatch (403), RequestTimeTooSkewed
 * (403: x-amz-date, or a Version 2 Date, more than 15 minutes off), AccessDenied (403:
 * "Request has expired", a presigned URL dated ahead of the clock, no valid x-amz-date
 * or Date, a Version 2 query without all of its parameters), InvalidArgument (400: a
 * malformed Version 2 Authorization header; more than one kind of signature; a
 * malformed x-amz-content-sha256; bad percent-encoding), InvalidRequest (400, a missing
 * x-amz-content-sha256 with Version 4). */
bool s3_authenticate(const struct s3_request_view *request, int64_t now_ms, s3_secret_lookup lookup,
                     void *context, struct s3_auth *auth, struct s3_error *error);

/* ---- aws-chunked: Content-Encoding: aws-chunked bodies -------------------------------- */

struct s3_chunked;

/* Starts decoding an aws-chunked body for AUTH (whose payload is one of the streaming
 * kinds; copied). With auth->anonymous (a server without credentials) chunk and trailer
 * signatures are parsed but not checked. Returns NULL if out of memory. */
struct s3_chunked *s3_chunked_create(const struct s3_auth *auth);
void s3_chunked_destroy(struct s3_chunked *decoder);

/* Receives decoded payload bytes; returns false to stop decoding (the feed then fails
 * with error->code NULL: the sink's own error stands). */
typedef bool (*s3_chunked_sink)(void *context, const unsigned char *data, size_t length);

/* Feeds LENGTH bytes of the (HTTP-framed, already de-chunked) body. Decoded data goes to
 * SINK(CONTEXT, ...) as it arrives, a chunk's bytes before its signature is known to be
 * good (so the sink must keep what it gets invisible until s3_chunked_feed() has set
 * *COMPLETE). Returns true and sets *COMPLETE once the final chunk and its trailers have
 * been read and every chunk signature (and the trailer signature) checked; bytes after
 * that are an error. Returns false with *ERROR set on malformed framing (400
 * IncompleteBody or InvalidRequest), a bad chunk signature (403 SignatureDoesNotMatch).
 * Once it failed, it keeps failing. */
bool s3_chunked_feed(struct s3_chunked *decoder, const unsigned char *data, size_t length,
                     s3_chunked_sink sink, void *context, bool *complete, struct s3_error *error);

/* The value of trailer NAME (lower case, e.g. "x-amz-checksum-crc32c") once the body is
 * complete, NUL-terminated, or NULL. */
const char *s3_chunked_trailer(const struct s3_chunked *decoder, const char *name);

/* Payload bytes decoded so far. */
uint64_t s3_chunked_decoded(const struct s3_chunked *decoder);

/* ---- helpers shared with the front end -------------------------------------------- */

/* Lower-case hex of LENGTH bytes at DATA into TEXT (room for 2 * LENGTH + 1). */
void s3_hex(const unsigned char *data, size_t length, char *text);

/* Percent-decodes TEXT (LENGTH bytes) in place, also turning '+' into ' ' when
 * PLUS_IS_SPACE. Returns the new length, or -1 on bad percent-encoding. */
long s3_percent_decode(char *text, size_t length, bool plus_is_space);

/* Percent-encodes LENGTH bytes as SigV4's UriEncode does (unreserved characters
 * A-Z a-z 0-9 - _ . ~ kept; '/' kept when KEEP_SLASH; every other byte %XX in upper-case
 * hex) into OUTPUT (room for MAXIMUM bytes, NUL included). Returns the length written,
 * or -1 if it does not fit. */
long s3_uri_encode(const unsigned char *data, size_t length, bool keep_slash, char *output,
                   size_t maximum);

/* Finds query parameter NAME in RAW_QUERY (as sent, LENGTH bytes): copies its value,
 * percent-decoded, into VALUE (room for MAXIMUM bytes, NUL included) and returns its
 * length; a parameter without '=' has the empty value. Returns -1 if absent, -2 if the
 * value does not fit or is badly encoded. */
long s3_query_get(const char *raw_query, size_t length, const char *name, char *value,
                  size_t maximum);

#endif
