/* Shared by the files of the S3 front end (s3.c: claiming, authentication, routing and
 * errors; s3_bucket.c: bucket operations and listings; s3_object.c: object operations
 * and multipart uploads). Not used outside src/proto/s3/. */
#ifndef STRATA_PROTO_S3_INTERNAL_H
#define STRATA_PROTO_S3_INTERNAL_H

#include "access/access.h"
#include "engine/objects.h"
#include "proto/http/http_internal.h"
#include "proto/s3/s3.h"
#include "proto/s3/s3_auth.h"
#include "proto/s3/s3_xml.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define S3_XML_TYPE "application/xml"
/* Largest XML request body taken (CompleteMultipartUpload of 10,000 parts fits). */
#define S3_MAX_XML_BODY (2 * 1024 * 1024)
/* Largest single PUT (as S3: 5 GiB) and largest object (5 TiB). */
#define S3_MAX_PUT_SIZE    (5ULL << 30)
#define S3_MAX_OBJECT_SIZE (5ULL << 40)
/* Most bytes of user metadata (x-amz-meta-* names and values), as S3. */
#define S3_MAX_USER_METADATA 2048

struct s3_credential {
    char *access_key;
    char *secret_key;
};

struct s3_server {
    struct http_extension extension;
    struct objects *objects;
    struct options *options;
    struct access *access; /* or NULL: no users */
    /* --s3-access-key and --s3-credentials: keys of no user, with every right on every
     * bucket (docs/s3.md). */
    struct s3_credential *credentials;
    size_t credential_count;
};

/* One S3 request being answered. Strings point into the HTTP session's request, which
 * lives until the request is done (its body included). */
struct s3_request {
    struct s3_server *server;
    struct http_session *session;
    const struct http_request *http;
    char bucket[OBJECT_BUCKET_NAME_MAX + 2]; /* empty: the service (ListBuckets) */
    size_t bucket_length;
    const char *key; /* empty: the bucket itself */
    size_t key_length;
    struct s3_auth auth;
    char request_id[17];
    /* Who sent it (s3.c's authenticate()): a user of the session's identity (valid until
     * the request is done), or every_right for a key of --s3-access-key /
     * --s3-credentials and for a server without an access object. */
    const struct access_user *user;
    bool every_right;
};

/* ---- s3.c -------------------------------------------------------------------------- */

/* Answers with S3's XML error document: STATUS, CODE and MESSAGE (a HEAD gets no body).
 * EXTRA_HEADERS ("Name: value\r\n" lines) may be NULL. */
void s3_error(struct s3_request *request, int status, const char *code, const char *message,
              const char *extra_headers);

/* The rights (ACCESS_READ, ...) the request's sender has on bucket NAME. */
unsigned s3_rights(const struct s3_request *request, const char *name, size_t length);

/* Whether the request's sender has every one of RIGHTS on bucket NAME. If not, answers
 * 403 AccessDenied, counts it (access_denied) and returns false: nothing may be done. */
bool s3_permit(struct s3_request *request, const char *name, size_t length, unsigned rights);

/* Answers with the error for an engine status. */
void s3_object_error(struct s3_request *request, enum object_status status);

/* Answers 200 with DOCUMENT (freed) as application/xml, or 500 if building it failed. */
void s3_respond_xml(struct s3_request *request, struct s3_xml *document, const char *extra_headers);

/* Appends the headers every S3 response carries (x-amz-request-id) to TEXT. */
void s3_common_headers(struct s3_request *request, struct byte_buffer *text);

/* Copies query parameter NAME's decoded value into VALUE (MAXIMUM bytes with the NUL).
 * Returns its length, -1 if absent, -2 if malformed or too long. */
long s3_param(const struct s3_request *request, const char *name, char *value, size_t maximum);

/* Whether query parameter NAME is present (with or without a value). */
bool s3_has_param(const struct s3_request *request, const char *name);

/* Collects a small request body (at most S3_MAX_XML_BODY bytes) and then calls
 * DONE(REQUEST copy, BODY, LENGTH) from the body's end (BODY freed after it returns).
 * A longer body is answered with 400 MalformedXML / EntityTooLarge. */
typedef void (*s3_body_done)(struct s3_request *request, const unsigned char *body, size_t length);
void s3_collect_body(struct s3_request *request, s3_body_done done);

/* Checks a Content-MD5 header (if any) against the MD5 of BODY. Returns true when it is
 * absent or matches; otherwise answers (InvalidDigest or BadDigest) and returns false. */
bool s3_check_content_md5(struct s3_request *request, const unsigned char *body, size_t length);

/* Answers the subresources that are not the route's own: ?acl (the owner's FULL_CONTROL;
 * a PUT of the private canned ACL is accepted), and those strata does not implement
 * (policy, tagging, ...) with 501 NotImplemented. Returns true when it answered. */
bool s3_answer_subresource(struct s3_request *request);

/* ---- s3_bucket.c ------------------------------------------------------------------- */

void s3_list_buckets(struct s3_request *request);
void s3_bucket_route(struct s3_request *request);

/* ---- s3_object.c ------------------------------------------------------------------- */

void s3_object_route(struct s3_request *request);

#endif
