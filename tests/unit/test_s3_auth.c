/* Unit tests of AWS Signature Version 4 verification (proto/s3/s3_auth.h) against the
 * worked examples of the Amazon S3 API reference: "Signature Calculations for the
 * Authorization Header" (GET Object with Range, PUT Object, GET Bucket Lifecycle, Get
 * Bucket (List Objects)), "Authenticating Requests: Using Query Parameters" (the
 * presigned GET of test.txt), "... Transferring Payload in Multiple Chunks" (the seed
 * and the three chunk signatures) and "... Including Trailing Headers" (the signed
 * x-amz-checksum-crc32c trailer). Then what must be refused, and the aws-chunked
 * decoder fed whole, in pieces and one byte at a time, with corrupted signatures and
 * framing. Signature Version 2: the examples of "Signing and Authenticating REST
 * Requests" in the Amazon S3 developer guide (Object GET, Object PUT, List, Fetch,
 * Delete, Upload, List all my buckets, Unicode keys, and the query-string request), and
 * its refusals. Further vectors made with botocore are in s3_auth_botocore_vectors.h. */
#include "base/base64.h"
#include "base/crc32c.h"
#include "proto/s3/s3_auth.h"
#include "s3_auth_botocore_vectors.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define ACCESS_KEY "AKIAIOSFODNN7EXAMPLE"
#define SECRET_KEY "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTY_SHA  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define CREDENTIAL ACCESS_KEY "/20130524/us-east-1/s3/aws4_request"

static const int64_t EXAMPLE_MS = 1369353600000LL; /* 20130524T000000Z */
static const int64_t MINUTE_MS = 60 * 1000;

static const char *lookup_secret(void *context, const char *access_key, size_t length) {
    (void)context;
    if (length == strlen(ACCESS_KEY) && memcmp(access_key, ACCESS_KEY, length) == 0)
        return SECRET_KEY;
    return NULL;
}

/* A request built from "Name: value" lines. */
struct request {
    struct s3_header headers[16];
    struct s3_request_view view;
};

static void build(struct request *request, const char *method, const char *path, const char *query,
                  const char *const *lines, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const char *colon = strchr(lines[i], ':');
        const char *value = colon + 1;
        while (*value == ' ')
            value++;
        request->headers[i] =
            (struct s3_header){lines[i], (size_t)(colon - lines[i]), value, strlen(value)};
    }
    request->view = (struct s3_request_view){
        method, path, strlen(path), query, strlen(query), request->headers, count, NULL, 0};
}

/* Authenticates a request; BUCKET names the bucket of a virtual-hosted-style request
 * (NULL: path style). */
static bool authenticate_hosted(const char *bucket, const char *method, const char *path,
                                const char *query, const char *const *lines, size_t count,
                                int64_t now_ms, struct s3_auth *auth, struct s3_error *error) {
    struct request request;
    build(&request, method, path, query, lines, count);
    if (bucket != NULL) {
        request.view.virtual_bucket = bucket;
        request.view.virtual_bucket_length = strlen(bucket);
    }
    *error = (struct s3_error){0};
    return s3_authenticate(&request.view, now_ms, lookup_secret, NULL, auth, error);
}

static bool authenticate(const char *method, const char *path, const char *query,
                         const char *const *lines, size_t count, int64_t now_ms,
                         struct s3_auth *auth, struct s3_error *error) {
    return authenticate_hosted(NULL, method, path, query, lines, count, now_ms, auth, error);
}

/* Runs a request (virtual-hosted for BUCKET, unless NULL) that must be refused with
 * STATUS and CODE. */
static bool refused_hosted(const char *bucket, const char *method, const char *path,
                           const char *query, const char *const *lines, size_t count,
                           int64_t now_ms, int status, const char *code) {
    struct s3_auth auth;
    struct s3_error error;
    if (authenticate_hosted(bucket, method, path, query, lines, count, now_ms, &auth, &error)) {
        fprintf(stderr, "    accepted, expected %s\n", code);
        return false;
    }
    if (error.status != status || error.code == NULL || strcmp(error.code, code) != 0) {
        fprintf(stderr, "    got %d %s (%s), expected %d %s\n", error.status,
                error.code ? error.code : "(null)", error.message ? error.message : "", status,
                code);
        return false;
    }
    return error.message != NULL && error.message[0] != '\0';
}

static bool refused(const char *method, const char *path, const char *query,
                    const char *const *lines, size_t count, int64_t now_ms, int status,
                    const char *code) {
    return refused_hosted(NULL, method, path, query, lines, count, now_ms, status, code);
}

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

/* ---- the header examples -------------------------------------------------------------- */

#define GET_OBJECT_SIGNATURE "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
#define GET_OBJECT_AUTHORIZATION                                                                   \
    "Authorization: AWS4-HMAC-SHA256 Credential=" CREDENTIAL                                       \
    ",SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=" GET_OBJECT_SIGNATURE

static void test_get_object_with_range(void) {
    const char *lines[] = {"Host: examplebucket.s3.amazonaws.com", "Range: bytes=0-9",
                           "x-amz-content-sha256: " EMPTY_SHA, "x-amz-date: 20130524T000000Z",
                           GET_OBJECT_AUTHORIZATION};
    struct s3_auth auth;
    struct s3_error error;
    REQUIRE(authenticate("GET", "/test.txt", "", lines, COUNT(lines), EXAMPLE_MS, &auth, &error));
    CHECK(!auth.anonymous);
    CHECK(strcmp(auth.access_key, ACCESS_KEY) == 0);
    CHECK(auth.payload == S3_PAYLOAD_SHA256);
    char payload_hex[65];
    s3_hex(auth.payload_sha256, 32, payload_hex);
    CHECK(strcmp(payload_hex, EMPTY_SHA) == 0);
    CHECK(strcmp(auth.amz_date, "20130524T000000Z") == 0);
    CHECK(strcmp(auth.scope, "20130524/us-east-1/s3/aws4_request") == 0);
    CHECK(strcmp(auth.seed_signature, GET_OBJECT_SIGNATURE) == 0);

    /* Header names in any case, values with extra spaces, the Authorization components
     * separated by ", " and in another order: the same request. */
    const char *variant[] = {
        "HOST: examplebucket.s3.amazonaws.com", "range:   bytes=0-9  ",
        "X-Amz-Content-Sha256: " EMPTY_SHA, "X-AMZ-DATE: 20130524T000000Z",
        "authorization: AWS4-HMAC-SHA256  SignedHeaders=host;range;x-amz-content-sha256;"
        "x-amz-date,  Signature=" GET_OBJECT_SIGNATURE ", Credential=" CREDENTIAL};
    CHECK(authenticate("GET", "/test.txt", "", variant, COUNT(variant), EXAMPLE_MS, &auth, &error));
    /* The signed Range header changed, or one signature digit changed: refused. */
    const char *range_changed[] = {"Host: examplebucket.s3.amazonaws.com", "Range: bytes=0-10",
                                   "x-amz-content-sha256: " EMPTY_SHA,
                                   "x-amz-date: 20130524T000000Z", GET_OBJECT_AUTHORIZATION};
    CHECK(refused("GET", "/test.txt", "", range_changed, COUNT(range_changed), EXAMPLE_MS, 403,
                  "SignatureDoesNotMatch"));
    char changed_signature[512];
    snprintf(changed_signature, sizeof(changed_signature), "%s", GET_OBJECT_AUTHORIZATION);
    changed_signature[strlen(changed_signature) - 1] = '0'; /* ...b41 -> ...b40 */
    const char *signature_changed[] = {"Host: examplebucket.s3.amazonaws.com", "Range: bytes=0-9",
                                       "x-amz-content-sha256: " EMPTY_SHA,
                                       "x-amz-date: 20130524T000000Z", changed_signature};
    CHECK(refused("GET", "/test.txt", "", signature_changed, COUNT(signature_changed), EXAMPLE_MS,
                  403, "SignatureDoesNotMatch"));
    /* A different path or method is a different request. */
    CHECK(refused("GET", "/test.txt2", "", lines, COUNT(lines), EXAMPLE_MS, 403,
                  "SignatureDoesNotMatch"));
    CHECK(refused("HEAD", "/test.txt", "", lines, COUNT(lines), EXAMPLE_MS, 403,
                  "SignatureDoesNotMatch"));
    /* The clock: 15 minutes either way is allowed, more is not. */
    CHECK(authenticate("GET", "/test.txt", "", lines, COUNT(lines), EXAMPLE_MS + 15 * MINUTE_MS,
                       &auth, &error));
    CHECK(authenticate("GET", "/test.txt", "", lines, COUNT(lines), EXAMPLE_MS - 15 * MINUTE_MS,
                       &auth, &error));
    CHECK(refused("GET", "/test.txt", "", lines, COUNT(lines), EXAMPLE_MS + 15 * MINUTE_MS + 1, 403,
                  "RequestTimeTooSkewed"));
    CHECK(refused("GET", "/test.txt", "", lines, COUNT(lines), EXAMPLE_MS - 16 * MINUTE_MS, 403,
                  "RequestTimeTooSkewed"));
}

#define PUT_OBJECT_SIGNATURE "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
#define WELCOME_SHA          "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"

static void test_put_object(void) {
    const char *lines[] = {
        "Host: examplebucket.s3.amazonaws.com",
        "Date: Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-date: 20130524T000000Z",
        "x-amz-storage-class: REDUCED_REDUNDANCY",
        "x-amz-content-sha256: " WELCOME_SHA,
        "Authorization: AWS4-HMAC-SHA256 Credential=" CREDENTIAL
        ",SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
        "Signature=" PUT_OBJECT_SIGNATURE};
    struct s3_auth auth;
    struct s3_error error;
    /* The path as the canonical form has it, and as a client may send it ('$' raw). */
    REQUIRE(authenticate("PUT", "/test%24file.text", "", lines, COUNT(lines), EXAMPLE_MS, &auth,
                         &error));
    CHECK(auth.payload == S3_PAYLOAD_SHA256);
    char payload_hex[65];
    s3_hex(auth.payload_sha256, 32, payload_hex);
    CHECK(strcmp(payload_hex, WELCOME_SHA) == 0);
    CHECK(
        authenticate("PUT", "/test$file.text", "", lines, COUNT(lines), EXAMPLE_MS, &auth, &error));
    /* An unreserved character sent encoded is canonically plain; another byte is not. */
    CHECK(authenticate("PUT", "/test%24file%2etext", "", lines, COUNT(lines), EXAMPLE_MS, &auth,
                       &error));
    CHECK(refused("PUT", "/test%2afile.text", "", lines, COUNT(lines), EXAMPLE_MS, 403,
                  "SignatureDoesNotMatch"));
    CHECK(refused("PUT", "/test%2xfile.text", "", lines, COUNT(lines), EXAMPLE_MS, 400,
                  "InvalidArgument"));
    /* S3 does not normalize: "/a/../test$file.text" is another path. */
    CHECK(refused("PUT", "/a/../test$file.text", "", lines, COUNT(lines), EXAMPLE_MS, 403,
                  "SignatureDoesNotMatch"));
}

#define LIFECYCLE_SIGNATURE    "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
#define LIST_OBJECTS_SIGNATURE "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"

static void test_bucket_requests(void) {
    const char *lifecycle[] = {"Host: examplebucket.s3.amazonaws.com",
                               "x-amz-date: 20130524T000000Z", "x-amz-content-sha256: " EMPTY_SHA,
                               "Authorization: AWS4-HMAC-SHA256 Credential=" CREDENTIAL
                               ",SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                               "Signature=" LIFECYCLE_SIGNATURE};
    struct s3_auth auth;
    struct s3_error error;
    CHECK(authenticate("GET", "/", "lifecycle", lifecycle, COUNT(lifecycle), EXAMPLE_MS, &auth,
                       &error));
    CHECK(authenticate("GET", "/", "lifecycle=", lifecycle, COUNT(lifecycle), EXAMPLE_MS, &auth,
                       &error));
    /* An empty path is "/". */
    CHECK(authenticate("GET", "", "lifecycle", lifecycle, COUNT(lifecycle), EXAMPLE_MS, &auth,
                       &error));
    CHECK(refused("GET", "/", "policy", lifecycle, COUNT(lifecycle), EXAMPLE_MS, 403,
                  "SignatureDoesNotMatch"));

    const char *list[] = {"Host: examplebucket.s3.amazonaws.com", "x-amz-date: 20130524T000000Z",
                          "x-amz-content-sha256: " EMPTY_SHA,
                          "Authorization: AWS4-HMAC-SHA256 Credential=" CREDENTIAL
                          ",SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                          "Signature=" LIST_OBJECTS_SIGNATURE};
    CHECK(authenticate("GET", "/", "max-keys=2&prefix=J", list, COUNT(list), EXAMPLE_MS, &auth,
                       &error));
    /* Parameters are sorted; their encoding is canonicalized. */
    CHECK(authenticate("GET", "/", "prefix=J&max-keys=2", list, COUNT(list), EXAMPLE_MS, &auth,
                       &error));
    CHECK(authenticate("GET", "/", "prefix=%4A&max%2Dkeys=2", list, COUNT(list), EXAMPLE_MS, &auth,
                       &error));
    CHECK(refused("GET", "/", "max-keys=3&prefix=J", list, COUNT(list), EXAMPLE_MS, 403,
                  "SignatureDoesNotMatch"));
    CHECK(refused("GET", "/", "max-keys=2&prefix=J&x=%zz", list, COUNT(list), EXAMPLE_MS, 400,
                  "InvalidArgument"));
}

/* ---- presigned URLs ------------------------------------------------------------------- */

#define PRESIGNED_SIGNATURE "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
#define PRESIGNED_QUERY(expires, signature)                                                        \
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-" \
    "1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=" expires                     \
    "&X-Amz-SignedHeaders=host&X-Amz-Signature=" signature

static void test_presigned_url(void) {
    const char *lines[] = {"Host: examplebucket.s3.amazonaws.com"};
    const char *query = PRESIGNED_QUERY("86400", PRESIGNED_SIGNATURE);
    struct s3_auth auth;
    struct s3_error error;
    REQUIRE(authenticate("GET", "/test.txt", query, lines, COUNT(lines), EXAMPLE_MS + 3600000,
                         &auth, &error));
    CHECK(!auth.anonymous);
    CHECK(strcmp(auth.access_key, ACCESS_KEY) == 0);
    CHECK(auth.payload == S3_PAYLOAD_UNSIGNED);
    CHECK(strcmp(auth.seed_signature, PRESIGNED_SIGNATURE) == 0);
    /* The X-Amz-Signature parameter may come anywhere. */
    const char *moved = "X-Amz-Signature=" PRESIGNED_SIGNATURE
                        "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE"
                        "%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                        "X-Amz-Expires=86400&X-Amz-SignedHeaders=host";
    CHECK(authenticate("GET", "/test.txt", moved, lines, COUNT(lines), EXAMPLE_MS, &auth, &error));
    /* Valid to the last second of X-Amz-Expires, then expired. */
    CHECK(authenticate("GET", "/test.txt", query, lines, COUNT(lines), EXAMPLE_MS + 86400000, &auth,
                       &error));
    CHECK(refused("GET", "/test.txt", query, lines, COUNT(lines), EXAMPLE_MS + 86400001, 403,
                  "AccessDenied"));
    struct request request;
    build(&request, "GET", "/test.txt", query, lines, COUNT(lines));
    CHECK(!s3_authenticate(&request.view, EXAMPLE_MS + 86400001, lookup_secret, NULL, &auth,
                           &error) &&
          strcmp(error.message, "Request has expired") == 0);
    /* Dated more than 15 minutes ahead of the clock: refused. */
    CHECK(authenticate("GET", "/test.txt", query, lines, COUNT(lines), EXAMPLE_MS - 14 * MINUTE_MS,
                       &auth, &error));
    CHECK(refused("GET", "/test.txt", query, lines, COUNT(lines), EXAMPLE_MS - 16 * MINUTE_MS, 403,
                  "AccessDenied"));
    /* X-Amz-Expires out of 1..604800. */
    CHECK(refused("GET", "/test.txt", PRESIGNED_QUERY("0", PRESIGNED_SIGNATURE), lines,
                  COUNT(lines), EXAMPLE_MS, 400, "AuthorizationQueryParametersError"));
    CHECK(refused("GET", "/test.txt", PRESIGNED_QUERY("604801", PRESIGNED_SIGNATURE), lines,
                  COUNT(lines), EXAMPLE_MS, 400, "AuthorizationQueryParametersError"));
    CHECK(refused("GET", "/test.txt", PRESIGNED_QUERY("1e3", PRESIGNED_SIGNATURE), lines,
                  COUNT(lines), EXAMPLE_MS, 400, "AuthorizationQueryParametersError"));
    /* Another expiry is another signature. */
    CHECK(refused("GET", "/test.txt", PRESIGNED_QUERY("86401", PRESIGNED_SIGNATURE), lines,
                  COUNT(lines), EXAMPLE_MS, 403, "SignatureDoesNotMatch"));
    /* A parameter missing, and another algorithm. */
    CHECK(
        refused("GET", "/test.txt",
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524"
                "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-"
                "SignedHeaders=host&X-Amz-Signature=" PRESIGNED_SIGNATURE,
                lines, COUNT(lines), EXAMPLE_MS, 400, "AuthorizationQueryParametersError"));
    CHECK(refused("GET", "/test.txt",
                  "X-Amz-Algorithm=AWS4-HMAC-SHA1&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524"
                  "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400"
                  "&X-Amz-SignedHeaders=host&X-Amz-Signature=" PRESIGNED_SIGNATURE,
                  lines, COUNT(lines), EXAMPLE_MS, 400, "AuthorizationQueryParametersError"));
    /* Header and query signatures together. */
    const char *both[] = {"Host: examplebucket.s3.amazonaws.com", GET_OBJECT_AUTHORIZATION};
    CHECK(
        refused("GET", "/test.txt", query, both, COUNT(both), EXAMPLE_MS, 400, "InvalidArgument"));
    /* Another host. */
    const char *other_host[] = {"Host: otherbucket.s3.amazonaws.com"};
    CHECK(refused("GET", "/test.txt", query, other_host, COUNT(other_host), EXAMPLE_MS, 403,
                  "SignatureDoesNotMatch"));
}

/* ---- refusals ------------------------------------------------------------------------- */

/* The GET Object request with its Authorization header replaced by AUTHORIZATION. */
static bool get_object_refused(const char *authorization, int status, const char *code) {
    const char *lines[] = {"Host: examplebucket.s3.amazonaws.com", "Range: bytes=0-9",
                           "x-amz-content-sha256: " EMPTY_SHA, "x-amz-date: 20130524T000000Z",
                           authorization};
    return refused("GET", "/test.txt", "", lines, COUNT(lines), EXAMPLE_MS, status, code);
}

static void test_refusals(void) {
    const char *malformed = "AuthorizationHeaderMalformed";
    const char *headers = "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date";
    char text[600];
#define WITH(format, ...) (snprintf(text, sizeof(text), format, __VA_ARGS__), text)
    CHECK(get_object_refused(
        WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s,%s", CREDENTIAL, headers), 400,
        malformed));
    CHECK(get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s,Signature=%s",
                                  CREDENTIAL, GET_OBJECT_SIGNATURE),
                             400, malformed));
    CHECK(get_object_refused(
        WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s/20130524/us-east-1/s3,%s,Signature=%s",
             ACCESS_KEY, headers, GET_OBJECT_SIGNATURE),
        400, malformed));
    CHECK(get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s/20130524/us-east-"
                                  "1/ec2/aws4_request,%s,Signature=%s",
                                  ACCESS_KEY, headers, GET_OBJECT_SIGNATURE),
                             400, malformed));
    CHECK(get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s/20130524/us-east-"
                                  "1/s3/aws5_request,%s,Signature=%s",
                                  ACCESS_KEY, headers, GET_OBJECT_SIGNATURE),
                             400, malformed));
    CHECK(get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s/20130525/us-east-"
                                  "1/s3/aws4_request,%s,Signature=%s",
                                  ACCESS_KEY, headers, GET_OBJECT_SIGNATURE),
                             400, malformed));
    CHECK(get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s,%s,Signature=%s,"
                                  "Extra=1",
                                  CREDENTIAL, headers, GET_OBJECT_SIGNATURE),
                             400, malformed));
    CHECK(
        get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s,%s,%s,Signature=%s",
                                CREDENTIAL, headers, headers, GET_OBJECT_SIGNATURE),
                           400, malformed));
    CHECK(
        get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s,%s,Signature=%.63s",
                                CREDENTIAL, headers, GET_OBJECT_SIGNATURE),
                           400, malformed));
    CHECK(
        get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s,SignedHeaders=range;"
                                "x-amz-content-sha256;x-amz-date,Signature=%s",
                                CREDENTIAL, GET_OBJECT_SIGNATURE),
                           400, malformed));
    CHECK(
        get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s,SignedHeaders=host;"
                                ";range,Signature=%s",
                                CREDENTIAL, GET_OBJECT_SIGNATURE),
                           400, malformed));
    CHECK(get_object_refused("Authorization: AWS4-HMAC-SHA256", 400, malformed));
    CHECK(get_object_refused("Authorization: AWS4-HMAC-SHA256 Credential", 400, malformed));
    /* A signed header the request does not have. */
    CHECK(get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=%s,%s;x-amz-meta-a,"
                                  "Signature=%s",
                                  CREDENTIAL, headers, GET_OBJECT_SIGNATURE),
                             403, "SignatureDoesNotMatch"));
    /* Unknown access key; an unknown scheme. */
    CHECK(get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=AKIDOTHER/20130524/"
                                  "us-east-1/s3/aws4_request,%s,Signature=%s",
                                  headers, GET_OBJECT_SIGNATURE),
                             403, "InvalidAccessKeyId"));
    CHECK(get_object_refused("Authorization: Bearer abc", 400, "InvalidArgument"));
#undef WITH
    const char *host[] = {"Host: examplebucket.s3.amazonaws.com"};
    /* A Signature Version 4 presigned URL that also has Signature Version 2 parameters. */
    CHECK(refused("GET", "/test.txt",
                  PRESIGNED_QUERY("86400", PRESIGNED_SIGNATURE) "&AWSAccessKeyId=" ACCESS_KEY
                                                                "&Expires=1141889120&Signature=x",
                  host, COUNT(host), EXAMPLE_MS, 400, "InvalidArgument"));
    /* x-amz-date missing; x-amz-content-sha256 missing or not a known value. */
    const char *no_date[] = {"Host: examplebucket.s3.amazonaws.com", "Range: bytes=0-9",
                             "x-amz-content-sha256: " EMPTY_SHA, GET_OBJECT_AUTHORIZATION};
    CHECK(
        refused("GET", "/test.txt", "", no_date, COUNT(no_date), EXAMPLE_MS, 403, "AccessDenied"));
    const char *no_payload_hash[] = {"Host: examplebucket.s3.amazonaws.com", "Range: bytes=0-9",
                                     "x-amz-date: 20130524T000000Z",
                                     "Authorization: AWS4-HMAC-SHA256 Credential=" CREDENTIAL
                                     ",SignedHeaders=host;range;x-amz-date,Signature=" EMPTY_SHA};
    CHECK(refused("GET", "/test.txt", "", no_payload_hash, COUNT(no_payload_hash), EXAMPLE_MS, 400,
                  "InvalidRequest"));
    const char *bad_payload_hash[] = {"Host: examplebucket.s3.amazonaws.com", "Range: bytes=0-9",
                                      "x-amz-content-sha256: e3b0c442",
                                      "x-amz-date: 20130524T000000Z", GET_OBJECT_AUTHORIZATION};
    CHECK(refused("GET", "/test.txt", "", bad_payload_hash, COUNT(bad_payload_hash), EXAMPLE_MS,
                  400, "InvalidArgument"));
    /* No signature at all: anonymous. */
    struct s3_auth auth;
    struct s3_error error;
    CHECK(authenticate("GET", "/test.txt", "versionId=3", host, COUNT(host), EXAMPLE_MS, &auth,
                       &error) &&
          auth.anonymous && auth.access_key[0] == '\0');
}

/* ---- Signature Version 2 ---------------------------------------------------------------- */

/* The examples of "Signing and Authenticating REST Requests" (Amazon S3 developer guide).
 * Their signatures were computed for the bucket "johnsmith" (the guide's later
 * revisions print "awsexamplebucket1" without recomputing them), so that is the bucket
 * here. Each is checked at its own Date. */
#define V2_AUTHORIZATION(signature) "Authorization: AWS " ACCESS_KEY ":" signature
static const int64_t OBJECT_GET_MS = 1175024202000LL; /* Tue, 27 Mar 2007 19:36:42 +0000 */

static void test_v2_object_get_and_put(void) {
    const char *get[] = {"Host: johnsmith.s3.amazonaws.com",
                         "Date: Tue, 27 Mar 2007 19:36:42 +0000",
                         V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")};
    struct s3_auth auth;
    struct s3_error error;
    REQUIRE(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", get, COUNT(get),
                                OBJECT_GET_MS, &auth, &error));
    CHECK(!auth.anonymous);
    CHECK(strcmp(auth.access_key, ACCESS_KEY) == 0);
    CHECK(auth.payload == S3_PAYLOAD_UNSIGNED);
    CHECK(auth.seed_signature[0] == '\0' && auth.scope[0] == '\0');
    /* The same request path-style: the resource is the same. */
    CHECK(authenticate("GET", "/johnsmith/photos/puppy.jpg", "", get, COUNT(get), OBJECT_GET_MS,
                       &auth, &error));
    /* Header names in any case, the Authorization value with extra spaces. */
    const char *variant[] = {
        "host: johnsmith.s3.amazonaws.com", "DATE: Tue, 27 Mar 2007 19:36:42 +0000",
        "authorization:   AWS   " ACCESS_KEY ":bWq2s1WEIj+Ydj0vQ697zp+IXMU=  "};
    CHECK(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", variant, COUNT(variant),
                              OBJECT_GET_MS, &auth, &error));
    /* Another bucket, key, method, or a parameter V2 does not sign: */
    CHECK(refused_hosted("otherbucket", "GET", "/photos/puppy.jpg", "", get, COUNT(get),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    CHECK(refused("GET", "/photos/puppy.jpg", "", get, COUNT(get), OBJECT_GET_MS, 403,
                  "SignatureDoesNotMatch"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/kitten.jpg", "", get, COUNT(get),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    CHECK(refused_hosted("johnsmith", "HEAD", "/photos/puppy.jpg", "", get, COUNT(get),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    CHECK(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", "x-id=GetObject", get,
                              COUNT(get), OBJECT_GET_MS, &auth, &error));
    /* ... but a sub-resource is signed: */
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "versionId=1", get, COUNT(get),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "response-content-type=a", get,
                         COUNT(get), OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    /* A Content-Type or x-amz-* header is signed. */
    const char *typed[] = {"Host: johnsmith.s3.amazonaws.com",
                           "Date: Tue, 27 Mar 2007 19:36:42 +0000", "Content-Type: text/plain",
                           V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", typed, COUNT(typed),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    const char *amz[] = {"Host: johnsmith.s3.amazonaws.com",
                         "Date: Tue, 27 Mar 2007 19:36:42 +0000", "x-amz-meta-a: b",
                         V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", amz, COUNT(amz),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));

    const char *put[] = {
        "Content-Type: image/jpeg", "Content-Length: 94328", "Host: johnsmith.s3.amazonaws.com",
        "Date: Tue, 27 Mar 2007 21:15:45 +0000", V2_AUTHORIZATION("MyyxeRY7whkBe+bq8fHCL/2kKUg=")};
    CHECK(authenticate_hosted("johnsmith", "PUT", "/photos/puppy.jpg", "", put, COUNT(put),
                              1175030145000LL, &auth, &error));
    /* Content-Length is not signed; Content-Type is. */
    const char *put_length[] = {
        "Content-Type: image/jpeg", "Content-Length: 1", "Host: johnsmith.s3.amazonaws.com",
        "Date: Tue, 27 Mar 2007 21:15:45 +0000", V2_AUTHORIZATION("MyyxeRY7whkBe+bq8fHCL/2kKUg=")};
    CHECK(authenticate_hosted("johnsmith", "PUT", "/photos/puppy.jpg", "", put_length,
                              COUNT(put_length), 1175030145000LL, &auth, &error));
    const char *put_type[] = {
        "Content-Type: image/png", "Content-Length: 94328", "Host: johnsmith.s3.amazonaws.com",
        "Date: Tue, 27 Mar 2007 21:15:45 +0000", V2_AUTHORIZATION("MyyxeRY7whkBe+bq8fHCL/2kKUg=")};
    CHECK(refused_hosted("johnsmith", "PUT", "/photos/puppy.jpg", "", put_type, COUNT(put_type),
                         1175030145000LL, 403, "SignatureDoesNotMatch"));
}

static void test_v2_bucket_examples(void) {
    struct s3_auth auth;
    struct s3_error error;
    /* List: the query's parameters are not signed, the trailing '/' is. */
    const char *list[] = {"User-Agent: Mozilla/5.0", "Host: johnsmith.s3.amazonaws.com",
                          "Date: Tue, 27 Mar 2007 19:42:41 +0000",
                          V2_AUTHORIZATION("htDYFYduRNen8P9ZfE/s9SuKy0U=")};
    CHECK(authenticate_hosted("johnsmith", "GET", "/", "prefix=photos&max-keys=50&marker=puppy",
                              list, COUNT(list), 1175024561000LL, &auth, &error));
    CHECK(authenticate_hosted("johnsmith", "GET", "", "prefix=photos", list, COUNT(list),
                              1175024561000LL, &auth, &error));
    CHECK(refused_hosted("johnsmith", "GET", "/", "acl", list, COUNT(list), 1175024561000LL, 403,
                         "SignatureDoesNotMatch"));

    /* Fetch: the acl sub-resource; also when sent encoded, and beside unsigned
     * parameters. The front end reads "%61cl" as acl, so it is signed as acl. */
    const char *fetch[] = {"Host: johnsmith.s3.amazonaws.com",
                           "Date: Tue, 27 Mar 2007 19:44:46 +0000",
                           V2_AUTHORIZATION("c2WLPFtWHVgbEmeEG93a4cG37dM=")};
    CHECK(authenticate_hosted("johnsmith", "GET", "/", "acl", fetch, COUNT(fetch), 1175024686000LL,
                              &auth, &error));
    CHECK(authenticate_hosted("johnsmith", "GET", "/", "prefix=a&acl", fetch, COUNT(fetch),
                              1175024686000LL, &auth, &error));
    CHECK(authenticate_hosted("johnsmith", "GET", "/", "%61cl", fetch, COUNT(fetch),
                              1175024686000LL, &auth, &error));
    CHECK(refused_hosted("johnsmith", "GET", "/", "", fetch, COUNT(fetch), 1175024686000LL, 403,
                         "SignatureDoesNotMatch"));
    CHECK(refused_hosted("johnsmith", "GET", "/", "acl&versionId=2", fetch, COUNT(fetch),
                         1175024686000LL, 403, "SignatureDoesNotMatch"));
    CHECK(refused_hosted("johnsmith", "GET", "/", "acl&versionId=%zz", fetch, COUNT(fetch),
                         1175024686000LL, 400, "InvalidArgument"));

    /* List all my buckets. */
    const char *buckets[] = {"Host: s3.amazonaws.com", "Date: Wed, 28 Mar 2007 01:29:59 +0000",
                             V2_AUTHORIZATION("qGdzdERIC03wnaRNKh6OqZehG9s=")};
    CHECK(authenticate("GET", "/", "", buckets, COUNT(buckets), 1175045399000LL, &auth, &error));
    CHECK(authenticate("GET", "", "", buckets, COUNT(buckets), 1175045399000LL, &auth, &error));

    /* Unicode keys: the path is signed as sent, percent-encoding and its case included. */
    const char *unicode[] = {"Host: s3.amazonaws.com", "Date: Wed, 28 Mar 2007 01:49:49 +0000",
                             V2_AUTHORIZATION("DNEZGsoieTZ92F3bUfSPQcbGmlM=")};
    CHECK(authenticate("GET", "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re", "", unicode,
                       COUNT(unicode), 1175046589000LL, &auth, &error));
    CHECK(refused("GET", "/dictionary/fran%C3%A7ais/pr%C3%A9f%C3%A8re", "", unicode, COUNT(unicode),
                  1175046589000LL, 403, "SignatureDoesNotMatch"));
}

static void test_v2_delete_and_upload(void) {
    struct s3_auth auth;
    struct s3_error error;
    /* Delete (path style). The guide's StringToSign puts x-amz-date's value on the Date
     * line, which is what its signature signs, while its rule (and every signer: boto,
     * the Go and Java SDKs) leaves that line empty and signs "x-amz-date:..." among the
     * x-amz-* headers. The rule is taken: the printed signature is good for a request
     * whose Date is that time, and the request as printed, with both headers, is good
     * with the signature of the rule's StringToSign (computed independently). */
    const char *date_only[] = {"User-Agent: dotnet", "Host: s3.amazonaws.com",
                               "Date: Tue, 27 Mar 2007 21:20:26 +0000",
                               V2_AUTHORIZATION("lx3byBScXR6KzyMaifNkardMwNk=")};
    CHECK(authenticate("DELETE", "/johnsmith/photos/puppy.jpg", "", date_only, COUNT(date_only),
                       1175030426000LL, &auth, &error));
    const char *both_dates[] = {"User-Agent: dotnet", "Host: s3.amazonaws.com",
                                "Date: Tue, 27 Mar 2007 21:20:27 +0000",
                                "x-amz-date: Tue, 27 Mar 2007 21:20:26 +0000",
                                V2_AUTHORIZATION("R4dJ53KECjStyBO5iTBJZ4XVOaI=")};
    CHECK(authenticate("DELETE", "/johnsmith/photos/puppy.jpg", "", both_dates, COUNT(both_dates),
                       1175030426000LL, &auth, &error));
    const char *printed[] = {"User-Agent: dotnet", "Host: s3.amazonaws.com",
                             "Date: Tue, 27 Mar 2007 21:20:27 +0000",
                             "x-amz-date: Tue, 27 Mar 2007 21:20:26 +0000",
                             V2_AUTHORIZATION("lx3byBScXR6KzyMaifNkardMwNk=")};
    CHECK(refused("DELETE", "/johnsmith/photos/puppy.jpg", "", printed, COUNT(printed),
                  1175030426000LL, 403, "SignatureDoesNotMatch"));
    /* x-amz-date is the time checked: the Date header may be anything. */
    const char *stale_date[] = {"Host: s3.amazonaws.com", "Date: Mon, 01 Jan 2001 00:00:00 GMT",
                                "x-amz-date: Tue, 27 Mar 2007 21:20:26 +0000",
                                V2_AUTHORIZATION("R4dJ53KECjStyBO5iTBJZ4XVOaI=")};
    CHECK(authenticate("DELETE", "/johnsmith/photos/puppy.jpg", "", stale_date, COUNT(stale_date),
                       1175030426000LL, &auth, &error));

    /* Upload to a CNAME-style bucket: x-amz-* headers lower-cased, sorted, trimmed, a
     * repeated one joined with ','; Content-MD5 and Content-Type positional; the other
     * Content-* headers not signed. */
    const char *upload[] = {"User-Agent: curl/7.15.5",
                            "Host: static.johnsmith.net:8080",
                            "Date: Tue, 27 Mar 2007 21:06:08 +0000",
                            "x-amz-acl: public-read",
                            "content-type: application/x-download",
                            "Content-MD5: 4gJE4saaMU4BqNR0kLY+lw==",
                            "X-Amz-Meta-ReviewedBy: joe@johnsmith.net",
                            "X-Amz-Meta-ReviewedBy: jane@johnsmith.net",
                            "X-Amz-Meta-FileChecksum: 0x02661779",
                            "X-Amz-Meta-ChecksumAlgorithm: crc32",
                            "Content-Disposition: attachment; filename=database.dat",
                            "Content-Encoding: gzip",
                            "Content-Length: 5913339",
                            V2_AUTHORIZATION("ilyl83RwaSoYIEdixDQcA4OnAnc=")};
    CHECK(authenticate_hosted("static.johnsmith.net", "PUT", "/db-backup.dat.gz", "", upload,
                              COUNT(upload), 1175029568000LL, &auth, &error));
    /* The repeated header's values in the other order: another string. */
    const char *swapped[COUNT(upload)];
    memcpy(swapped, upload, sizeof(upload));
    swapped[6] = upload[7];
    swapped[7] = upload[6];
    CHECK(refused_hosted("static.johnsmith.net", "PUT", "/db-backup.dat.gz", "", swapped,
                         COUNT(swapped), 1175029568000LL, 403, "SignatureDoesNotMatch"));
    /* Headers in another order, and spaces around the x-amz-* values: the same string. */
    const char *reordered[] = {V2_AUTHORIZATION("ilyl83RwaSoYIEdixDQcA4OnAnc="),
                               "X-Amz-Meta-ChecksumAlgorithm:   crc32  ",
                               "X-AMZ-META-REVIEWEDBY: joe@johnsmith.net",
                               "x-amz-meta-filechecksum: 0x02661779",
                               "Content-MD5: 4gJE4saaMU4BqNR0kLY+lw==",
                               "x-amz-meta-reviewedby: jane@johnsmith.net",
                               "Date: Tue, 27 Mar 2007 21:06:08 +0000",
                               "Content-Type: application/x-download",
                               "x-amz-acl: public-read"};
    CHECK(authenticate_hosted("static.johnsmith.net", "PUT", "/db-backup.dat.gz", "", reordered,
                              COUNT(reordered), 1175029568000LL, &auth, &error));
    /* Without its Content-MD5: another string. */
    const char *no_md5[COUNT(upload)];
    memcpy(no_md5, upload, sizeof(upload));
    no_md5[5] = "Content-Language: en";
    CHECK(refused_hosted("static.johnsmith.net", "PUT", "/db-backup.dat.gz", "", no_md5,
                         COUNT(no_md5), 1175029568000LL, 403, "SignatureDoesNotMatch"));
}

/* The query-string example of the guide, and what a presigned V2 URL must not do. */
#define V2_PRESIGNED_QUERY(signature, expires)                                                     \
    "AWSAccessKeyId=" ACCESS_KEY "&Signature=" signature "&Expires=" expires

static void test_v2_presigned(void) {
    const char *lines[] = {"Host: johnsmith.s3.amazonaws.com"};
    const char *query = V2_PRESIGNED_QUERY("NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D", "1175139620");
    const int64_t expires_ms = 1175139620000LL;
    struct s3_auth auth;
    struct s3_error error;
    REQUIRE(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", query, lines, COUNT(lines),
                                OBJECT_GET_MS, &auth, &error));
    CHECK(!auth.anonymous && strcmp(auth.access_key, ACCESS_KEY) == 0);
    CHECK(auth.payload == S3_PAYLOAD_UNSIGNED);
    /* No skew check: any time up to Expires, including its last second. A Date header
     * is not signed. */
    CHECK(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", query, lines, COUNT(lines),
                              0, &auth, &error));
    CHECK(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", query, lines, COUNT(lines),
                              expires_ms, &auth, &error));
    const char *dated[] = {"Host: johnsmith.s3.amazonaws.com",
                           "Date: Mon, 26 Mar 2007 19:37:58 +0000"};
    CHECK(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", query, dated, COUNT(dated),
                              OBJECT_GET_MS, &auth, &error));
    /* The parameters in another order; the signature's '+' sent unencoded. */
    CHECK(authenticate_hosted(
        "johnsmith", "GET", "/photos/puppy.jpg",
        "Expires=1175139620&Signature=NpgCjnDzrM+WFzoENXmpNDUsSn8=&AWSAccessKeyId=" ACCESS_KEY,
        lines, COUNT(lines), OBJECT_GET_MS, &auth, &error));
    /* Expired. */
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", query, lines, COUNT(lines),
                         expires_ms + 1, 403, "AccessDenied"));
    struct request request;
    build(&request, "GET", "/photos/puppy.jpg", query, lines, COUNT(lines));
    request.view.virtual_bucket = "johnsmith";
    request.view.virtual_bucket_length = strlen("johnsmith");
    CHECK(!s3_authenticate(&request.view, expires_ms + 1000, lookup_secret, NULL, &auth, &error) &&
          strcmp(error.message, "Request has expired") == 0);
    /* Tampered: a later Expires, another object, the last character of the signature
     * (one that decodes to the same 20 bytes: only the canonical base64 matches). */
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg",
                         V2_PRESIGNED_QUERY("NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D", "1175139621"),
                         lines, COUNT(lines), OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.png", query, lines, COUNT(lines),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg",
                         V2_PRESIGNED_QUERY("NpgCjnDzrM%2BWFzoENXmpNDUsSn9%3D", "1175139620"),
                         lines, COUNT(lines), OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    /* A Content-Type sent with the URL is signed (it was not). */
    const char *typed[] = {"Host: johnsmith.s3.amazonaws.com", "Content-Type: text/plain"};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", query, typed, COUNT(typed),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    /* Unknown key; a parameter missing; Expires not a number; a signature that is not
     * base64 of 20 bytes; an Authorization header too. */
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg",
                         "AWSAccessKeyId=AKIDOTHER&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&"
                         "Expires=1175139620",
                         lines, COUNT(lines), OBJECT_GET_MS, 403, "InvalidAccessKeyId"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg",
                         "AWSAccessKeyId=" ACCESS_KEY "&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D",
                         lines, COUNT(lines), OBJECT_GET_MS, 403, "AccessDenied"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg",
                         "AWSAccessKeyId=" ACCESS_KEY "&Expires=1175139620", lines, COUNT(lines),
                         OBJECT_GET_MS, 403, "AccessDenied"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg",
                         V2_PRESIGNED_QUERY("NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D", "1175139620x"),
                         lines, COUNT(lines), OBJECT_GET_MS, 403, "AccessDenied"));
    CHECK(refused_hosted(
        "johnsmith", "GET", "/photos/puppy.jpg",
        V2_PRESIGNED_QUERY("NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D", "99999999999999999999999"), lines,
        COUNT(lines), OBJECT_GET_MS, 403, "AccessDenied"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg",
                         V2_PRESIGNED_QUERY("NpgCjnDzrM", "1175139620"), lines, COUNT(lines),
                         OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    const char *with_header[] = {"Host: johnsmith.s3.amazonaws.com",
                                 V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", query, with_header,
                         COUNT(with_header), OBJECT_GET_MS, 400, "InvalidArgument"));
}

/* The header form's clock and its malformed headers. */
static void test_v2_refusals(void) {
    const char *get[] = {"Host: johnsmith.s3.amazonaws.com",
                         "Date: Tue, 27 Mar 2007 19:36:42 +0000",
                         V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")};
    struct s3_auth auth;
    struct s3_error error;
    /* 15 minutes either way is allowed, more is not. */
    CHECK(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", get, COUNT(get),
                              OBJECT_GET_MS + 15 * MINUTE_MS, &auth, &error));
    CHECK(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", get, COUNT(get),
                              OBJECT_GET_MS - 15 * MINUTE_MS, &auth, &error));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", get, COUNT(get),
                         OBJECT_GET_MS + 15 * MINUTE_MS + 1, 403, "RequestTimeTooSkewed"));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", get, COUNT(get),
                         OBJECT_GET_MS - 16 * MINUTE_MS, 403, "RequestTimeTooSkewed"));
    /* A numeric zone counts: 20:36:42 +0100 is 19:36:42 GMT (signature computed with
     * Python's hmac over the StringToSign with that Date). */
    const char *zoned[] = {"Host: johnsmith.s3.amazonaws.com",
                           "Date: Tue, 27 Mar 2007 20:36:42 +0100",
                           V2_AUTHORIZATION("p5gRIG+SV4omUhannbFqVgCjdHU=")};
    CHECK(authenticate_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", zoned, COUNT(zoned),
                              OBJECT_GET_MS, &auth, &error));
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", zoned, COUNT(zoned),
                         OBJECT_GET_MS + 60 * MINUTE_MS, 403, "RequestTimeTooSkewed"));
    /* A tampered signature (a bit of the MAC, or a spare bit of the base64), a wrong key
     * (the signature of another secret), an unknown access key. */
    static const char *const tampered_signatures[] = {
        V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMu="),
        V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMV="),
        V2_AUTHORIZATION("cWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU"),
        V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=="),
    };
    for (size_t i = 0; i < COUNT(tampered_signatures); i++) {
        const char *tampered[] = {"Host: johnsmith.s3.amazonaws.com",
                                  "Date: Tue, 27 Mar 2007 19:36:42 +0000", tampered_signatures[i]};
        CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", tampered, COUNT(tampered),
                             OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    }
    const char *wrong_secret[] = {"Host: johnsmith.s3.amazonaws.com",
                                  "Date: Tue, 27 Mar 2007 19:36:42 +0000",
                                  V2_AUTHORIZATION("qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", wrong_secret,
                         COUNT(wrong_secret), OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    const char *unknown[] = {"Host: johnsmith.s3.amazonaws.com",
                             "Date: Tue, 27 Mar 2007 19:36:42 +0000",
                             "Authorization: AWS AKIDOTHER:bWq2s1WEIj+Ydj0vQ697zp+IXMU="};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", unknown, COUNT(unknown),
                         OBJECT_GET_MS, 403, "InvalidAccessKeyId"));
    /* Malformed: no ':', no key, no signature, a space inside; a signature that is not
     * base64 of 20 bytes is a mismatch. */
    static const char *const malformed[] = {
        "Authorization: AWS " ACCESS_KEY,
        "Authorization: AWS :bWq2s1WEIj+Ydj0vQ697zp+IXMU=", "Authorization: AWS " ACCESS_KEY ":",
        "Authorization: AWS " ACCESS_KEY " :abc=", "Authorization: AWS"};
    for (size_t i = 0; i < COUNT(malformed); i++) {
        const char *lines[] = {"Host: johnsmith.s3.amazonaws.com",
                               "Date: Tue, 27 Mar 2007 19:36:42 +0000", malformed[i]};
        CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", lines, COUNT(lines),
                             OBJECT_GET_MS, 400, "InvalidArgument"));
    }
    const char *short_signature[] = {"Host: johnsmith.s3.amazonaws.com",
                                     "Date: Tue, 27 Mar 2007 19:36:42 +0000",
                                     V2_AUTHORIZATION("bWq2s1WEIj+Ydj0v")};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", short_signature,
                         COUNT(short_signature), OBJECT_GET_MS, 403, "SignatureDoesNotMatch"));
    /* No date, a date that does not parse, two x-amz-date headers. */
    const char *no_date[] = {"Host: johnsmith.s3.amazonaws.com",
                             V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", no_date, COUNT(no_date),
                         OBJECT_GET_MS, 403, "AccessDenied"));
    const char *bad_date[] = {"Host: johnsmith.s3.amazonaws.com",
                              "Date: Tue, 27 Mar 2007 19:36:42 +9900",
                              V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", bad_date, COUNT(bad_date),
                         OBJECT_GET_MS, 403, "AccessDenied"));
    const char *two_dates[] = {"Host: johnsmith.s3.amazonaws.com",
                               "x-amz-date: Tue, 27 Mar 2007 19:36:42 +0000",
                               "x-amz-date: Tue, 27 Mar 2007 19:36:42 +0000",
                               V2_AUTHORIZATION("bWq2s1WEIj+Ydj0vQ697zp+IXMU=")};
    CHECK(refused_hosted("johnsmith", "GET", "/photos/puppy.jpg", "", two_dates, COUNT(two_dates),
                         OBJECT_GET_MS, 403, "AccessDenied"));
}

static const struct botocore_v2_vector *find_v2_vector(const char *name) {
    for (size_t v = 0; v < COUNT(BOTOCORE_V2_VECTORS); v++)
        if (strcmp(BOTOCORE_V2_VECTORS[v].name, name) == 0) return &BOTOCORE_V2_VECTORS[v];
    return NULL;
}

/* Requests botocore 1.29 (Debian's) signed with HmacV1Auth and HmacV1QueryAuth. */
static void test_botocore_v2_vectors(void) {
    for (size_t v = 0; v < COUNT(BOTOCORE_V2_VECTORS); v++) {
        const struct botocore_v2_vector *vector = &BOTOCORE_V2_VECTORS[v];
        size_t count = 0;
        while (count < COUNT(vector->headers) && vector->headers[count] != NULL)
            count++;
        const char *bucket = vector->virtual_bucket[0] != '\0' ? vector->virtual_bucket : NULL;
        struct s3_auth auth;
        struct s3_error error;
        bool ok = authenticate_hosted(bucket, vector->method, vector->path, vector->query,
                                      vector->headers, count, vector->now_ms, &auth, &error);
        if (!ok) fprintf(stderr, "    %s: %s %s\n", vector->name, error.code, error.message);
        CHECK(ok);
        CHECK(!ok || (strcmp(auth.access_key, ACCESS_KEY) == 0 &&
                      auth.payload == S3_PAYLOAD_UNSIGNED && !auth.anonymous));
        /* Another path is another request. */
        char path[256];
        snprintf(path, sizeof(path), "%sx", vector->path);
        CHECK(refused_hosted(bucket, vector->method, path, vector->query, vector->headers, count,
                             vector->now_ms, 403, "SignatureDoesNotMatch"));
    }
    /* The virtual-hosted one: its bucket, its sub-resources and overrides are signed, its
     * other parameters are not. */
    const struct botocore_v2_vector *hosted = find_v2_vector("v2-virtual-subresources");
    REQUIRE(hosted != NULL);
    struct s3_auth auth;
    struct s3_error error;
    CHECK(refused(hosted->method, hosted->path, hosted->query, hosted->headers, 3, hosted->now_ms,
                  403, "SignatureDoesNotMatch"));
    static const char *const changed[] = {
        "versionId=3%2B4%2F6&response-content-type=text%2Fplain%3B%20charset%3Dutf-8&"
        "response-content-disposition=attachment%3B%20filename%3D%22%C3%BC.txt%22&"
        "response-cache-control=no-cache",
        "versionId=3%2B4%2F5&response-content-type=text%2Fplain%3B%20charset%3Dutf-8&"
        "response-content-disposition=attachment%3B%20filename%3D%22%C3%BC.txt%22",
        "versionId=3%2B4%2F5&response-content-type=text%2Fplain%3B%20charset%3Dutf-8&"
        "response-content-disposition=attachment%3B%20filename%3D%22%C3%BC.txt%22&"
        "response-cache-control=no-cache&uploads"};
    for (size_t i = 0; i < COUNT(changed); i++)
        CHECK(refused_hosted("bucket", hosted->method, hosted->path, changed[i], hosted->headers, 3,
                             hosted->now_ms, 403, "SignatureDoesNotMatch"));
    /* Reordered, re-encoded ('/' and ';' plain), without the unsigned parameters. */
    CHECK(authenticate_hosted("bucket", hosted->method, hosted->path,
                              "response-cache-control=no-cache&response-content-disposition="
                              "attachment%3B%20filename%3D%22%c3%bc.txt%22&versionId=3%2B4/5&"
                              "response-content-type=text/plain;%20charset%3Dutf-8",
                              hosted->headers, 3, hosted->now_ms, &auth, &error));
    /* "uploads" as botocore signs it, sent as "uploads=" (as the Go SDKs send it), and
     * "uploads=" signed as sent (signature computed with Python's hmac). */
    const struct botocore_v2_vector *create = find_v2_vector("v2-create-multipart");
    REQUIRE(create != NULL);
    CHECK(authenticate(create->method, create->path, "uploads=", create->headers, 4, create->now_ms,
                       &auth, &error));
    const char *signed_equals[] = {"Host: 127.0.0.1:9000", "Date: Mon, 30 Nov 2026 03:07:01 GMT",
                                   V2_AUTHORIZATION("ZljIZakalwKeX+tD5CbAc+lWbFk=")};
    CHECK(authenticate(create->method, create->path, "uploads=", signed_equals,
                       COUNT(signed_equals), create->now_ms, &auth, &error));
    CHECK(refused(create->method, create->path, "uploads", signed_equals, COUNT(signed_equals),
                  create->now_ms, 403, "SignatureDoesNotMatch"));
    /* A bucket's path: botocore signs "/bucket/"; the guide's rule, the path as sent. */
    REQUIRE(find_v2_vector("v2-create-bucket") != NULL);
    const char *literal[] = {"Host: 127.0.0.1:9000", "Date: Mon, 30 Nov 2026 03:07:01 GMT",
                             V2_AUTHORIZATION("jK1GpG2bmjNhyxaO7iHo+SNGA5w=")};
    CHECK(
        authenticate("GET", "/bucket", "", literal, COUNT(literal), create->now_ms, &auth, &error));
    CHECK(refused("GET", "/bucket/", "", literal, COUNT(literal), create->now_ms, 403,
                  "SignatureDoesNotMatch"));
    /* The presigned GET: valid until its Expires, an hour after it was signed. */
    const struct botocore_v2_vector *presigned = find_v2_vector("v2-presigned-get");
    REQUIRE(presigned != NULL);
    CHECK(authenticate(presigned->method, presigned->path, presigned->query, presigned->headers, 1,
                       presigned->now_ms + 3600 * 1000, &auth, &error));
    CHECK(refused(presigned->method, presigned->path, presigned->query, presigned->headers, 1,
                  presigned->now_ms + 3600 * 1000 + 1, 403, "AccessDenied"));
}

/* ---- aws-chunked ---------------------------------------------------------------------- */

/* What a sink collected. */
struct collected {
    unsigned char *data;
    size_t length;
    size_t calls;
    size_t refuse_after; /* 0: never refuse */
};

static bool collect(void *context, const unsigned char *data, size_t length) {
    struct collected *out = context;
    out->calls++;
    if (out->refuse_after != 0 && out->length + length > out->refuse_after) return false;
    unsigned char *grown = realloc(out->data, out->length + length + 1);
    if (grown == NULL) return false;
    out->data = grown;
    memcpy(out->data + out->length, data, length);
    out->length += length;
    return true;
}

#define SEED_SIGNATURE     "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define CHUNK1_SIGNATURE   "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define CHUNK2_SIGNATURE   "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define FINAL_SIGNATURE    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
#define T_SEED_SIGNATURE   "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
#define T_CHUNK1_SIGNATURE "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
#define T_CHUNK2_SIGNATURE "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
#define T_FINAL_SIGNATURE  "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
#define TRAILER_SIGNATURE  "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"

/* Authenticates the documented chunked PUT (the trailer variant when TRAILER). */
static bool chunked_example_auth(bool trailer, struct s3_auth *auth) {
    const char *lines[] = {
        "Host: s3.amazonaws.com",
        "x-amz-date: 20130524T000000Z",
        "x-amz-storage-class: REDUCED_REDUNDANCY",
        trailer ? "x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
                : "x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding: aws-chunked",
        "x-amz-decoded-content-length: 66560",
        "Content-Length: 66824",
        trailer ? "x-amz-trailer: x-amz-checksum-crc32c" : "User-Agent: not signed, not x-amz",
        trailer ? "Authorization: AWS4-HMAC-SHA256 Credential=" CREDENTIAL
                  ",SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;"
                  "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,"
                  "Signature=" T_SEED_SIGNATURE
                : "Authorization: AWS4-HMAC-SHA256 Credential=" CREDENTIAL
                  ",SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
                  "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
                  "Signature=" SEED_SIGNATURE,
    };
    struct s3_error error;
    bool ok = authenticate("PUT", "/examplebucket/chunkObject.txt", "", lines, COUNT(lines),
                           EXAMPLE_MS, auth, &error);
    if (!ok) fprintf(stderr, "    %s: %s\n", error.code, error.message);
    return ok;
}

/* An x-amz-* header that is not among the signed headers is refused, as S3 refuses it
 * (an unsigned x-amz-copy-source would turn a presigned PUT into a copy). */
static void test_unsigned_amz_header_refused(void) {
    const char *lines[] = {
        "Host: s3.amazonaws.com",
        "x-amz-date: 20130524T000000Z",
        "x-amz-storage-class: REDUCED_REDUNDANCY",
        "x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding: aws-chunked",
        "x-amz-decoded-content-length: 66560",
        "Content-Length: 66824",
        "x-amz-meta-unsigned: yes",
        "Authorization: AWS4-HMAC-SHA256 Credential=" CREDENTIAL
        ",SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
        "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
        "Signature=" SEED_SIGNATURE,
    };
    struct s3_auth auth;
    struct s3_error error;
    CHECK(!authenticate("PUT", "/examplebucket/chunkObject.txt", "", lines, COUNT(lines),
                        EXAMPLE_MS, &auth, &error));
    CHECK(error.status == 403 && strcmp(error.code, "AccessDenied") == 0);
    CHECK(strstr(error.message, "not signed") != NULL);
}

/* The documented body: 64 KiB of 'a', 1 KiB of 'a', the empty chunk, then TAIL. */
static unsigned char *chunked_example_body(const char *const signatures[3], const char *tail,
                                           size_t *length) {
    size_t capacity = 70000;
    unsigned char *body = malloc(capacity);
    size_t at = 0;
    at += (size_t)snprintf((char *)body + at, capacity - at, "10000;chunk-signature=%s\r\n",
                           signatures[0]);
    memset(body + at, 'a', 65536);
    at += 65536;
    at += (size_t)snprintf((char *)body + at, capacity - at, "\r\n400;chunk-signature=%s\r\n",
                           signatures[1]);
    memset(body + at, 'a', 1024);
    at += 1024;
    at += (size_t)snprintf((char *)body + at, capacity - at, "\r\n0;chunk-signature=%s\r\n%s",
                           signatures[2], tail);
    *length = at;
    return body;
}

/* Feeds BODY in pieces of PIECE bytes. Returns the last feed's result. */
static bool feed_in_pieces(struct s3_chunked *decoder, const unsigned char *body, size_t length,
                           size_t piece, struct collected *out, bool *complete,
                           struct s3_error *error) {
    bool ok = true;
    *complete = false;
    for (size_t at = 0; at < length && ok; at += piece) {
        size_t take = length - at < piece ? length - at : piece;
        if (*complete) return false; /* completed before the end */
        ok = s3_chunked_feed(decoder, body + at, take, collect, out, complete, error);
    }
    return ok;
}

static bool all_a(const struct collected *out, size_t length) {
    if (out->length != length) return false;
    for (size_t i = 0; i < length; i++)
        if (out->data[i] != 'a') return false;
    return true;
}

static void test_chunked_example(void) {
    struct s3_auth auth;
    REQUIRE(chunked_example_auth(false, &auth));
    CHECK(auth.payload == S3_PAYLOAD_STREAMING_SIGNED);
    CHECK(strcmp(auth.seed_signature, SEED_SIGNATURE) == 0);
    const char *signatures[3] = {CHUNK1_SIGNATURE, CHUNK2_SIGNATURE, FINAL_SIGNATURE};
    size_t length;
    unsigned char *body = chunked_example_body(signatures, "\r\n", &length);
    CHECK(length == 66824); /* the documented Content-Length */
    static const size_t pieces[] = {66824, 1, 2, 7, 4096, 65536 + 85};
    for (size_t p = 0; p < COUNT(pieces); p++) {
        struct s3_chunked *decoder = s3_chunked_create(&auth);
        REQUIRE(decoder != NULL);
        struct collected out = {0};
        bool complete = false;
        struct s3_error error = {0};
        CHECK(feed_in_pieces(decoder, body, length, pieces[p], &out, &complete, &error));
        CHECK(complete);
        CHECK(all_a(&out, 66560));
        CHECK(s3_chunked_decoded(decoder) == 66560);
        CHECK(s3_chunked_trailer(decoder, "x-amz-checksum-crc32c") == NULL);
        /* Bytes after the end are an error. */
        CHECK(s3_chunked_feed(decoder, (const unsigned char *)"x", 1, collect, &out, &complete,
                              &error) == false &&
              error.status == 400);
        s3_chunked_destroy(decoder);
        free(out.data);
    }
    /* Not complete before the last byte. */
    struct s3_chunked *decoder = s3_chunked_create(&auth);
    struct collected out = {0};
    bool complete = true;
    struct s3_error error;
    CHECK(s3_chunked_feed(decoder, body, length - 1, collect, &out, &complete, &error) &&
          !complete);
    CHECK(s3_chunked_feed(decoder, body + length - 1, 1, collect, &out, &complete, &error) &&
          complete);
    s3_chunked_destroy(decoder);
    free(out.data);
    free(body);
}

/* Feeds BODY whole and one byte at a time; both must fail with STATUS and CODE. */
static bool chunked_refused(const struct s3_auth *auth, const unsigned char *body, size_t length,
                            int status, const char *code) {
    bool as_expected = true;
    for (int pass = 0; pass < 2; pass++) {
        struct s3_chunked *decoder = s3_chunked_create(auth);
        struct collected out = {0};
        bool complete = false;
        struct s3_error error = {0};
        bool ok =
            feed_in_pieces(decoder, body, length, pass == 0 ? length : 1, &out, &complete, &error);
        if (ok || complete || error.status != status || error.code == NULL ||
            strcmp(error.code, code) != 0)
            as_expected = false;
        /* Once failed, it keeps failing. */
        struct s3_error again = {0};
        if (s3_chunked_feed(decoder, (const unsigned char *)"", 0, collect, &out, &complete,
                            &again) ||
            again.code != error.code)
            as_expected = false;
        s3_chunked_destroy(decoder);
        free(out.data);
    }
    return as_expected;
}

static void test_chunked_refusals(void) {
    struct s3_auth auth;
    REQUIRE(chunked_example_auth(false, &auth));
    size_t length;
    const char *good[3] = {CHUNK1_SIGNATURE, CHUNK2_SIGNATURE, FINAL_SIGNATURE};
    /* Each chunk signature corrupted in turn. */
    for (int which = 0; which < 3; which++) {
        char corrupted[65];
        memcpy(corrupted, good[which], 65);
        corrupted[10] = corrupted[10] == '0' ? '1' : '0';
        const char *signatures[3] = {good[0], good[1], good[2]};
        signatures[which] = corrupted;
        unsigned char *body = chunked_example_body(signatures, "\r\n", &length);
        CHECK(chunked_refused(&auth, body, length, 403, "SignatureDoesNotMatch"));
        free(body);
    }
    /* The chunks in another order (the chain breaks), and one data byte changed. */
    const char *swapped[3] = {CHUNK2_SIGNATURE, CHUNK1_SIGNATURE, FINAL_SIGNATURE};
    unsigned char *body = chunked_example_body(swapped, "\r\n", &length);
    CHECK(chunked_refused(&auth, body, length, 403, "SignatureDoesNotMatch"));
    free(body);
    body = chunked_example_body(good, "\r\n", &length);
    body[1000] = 'b';
    CHECK(chunked_refused(&auth, body, length, 403, "SignatureDoesNotMatch"));
    free(body);
    /* Framing: the size off by one, the CRLF after the data missing, no final CRLF but
     * garbage, a chunk line without its signature, a bare LF, an overlong line. */
    body = chunked_example_body(good, "\r\n", &length);
    body[4] = '1'; /* "10001;" */
    CHECK(chunked_refused(&auth, body, length, 400, "InvalidRequest"));
    free(body);
    body = chunked_example_body(good, "\r\n", &length);
    body[88 + 65536] = 'x'; /* the CR after the first chunk's data */
    CHECK(chunked_refused(&auth, body, length, 400, "InvalidRequest"));
    free(body);
    body = chunked_example_body(good, "xy\r\n", &length);
    CHECK(chunked_refused(&auth, body, length, 400, "InvalidRequest"));
    free(body);
    const char *unsigned_line = "10;x\r\n";
    CHECK(chunked_refused(&auth, (const unsigned char *)unsigned_line, strlen(unsigned_line), 400,
                          "InvalidRequest"));
    const char *bare_lf = "0;chunk-signature=" FINAL_SIGNATURE "\n";
    CHECK(chunked_refused(&auth, (const unsigned char *)bare_lf, strlen(bare_lf), 400,
                          "InvalidRequest"));
    const char *not_hex = "zz;chunk-signature=" FINAL_SIGNATURE "\r\n";
    CHECK(chunked_refused(&auth, (const unsigned char *)not_hex, strlen(not_hex), 400,
                          "InvalidRequest"));
    unsigned char *long_line = malloc(8192);
    memset(long_line, '0', 8192);
    CHECK(chunked_refused(&auth, long_line, 8192, 400, "InvalidRequest"));
    free(long_line);
    /* The sink stops the decoding: the feed fails with no S3 error of its own. */
    body = chunked_example_body(good, "\r\n", &length);
    struct s3_chunked *decoder = s3_chunked_create(&auth);
    struct collected out = {.refuse_after = 100};
    bool complete = false;
    struct s3_error error = {.code = "unset"};
    CHECK(!s3_chunked_feed(decoder, body, length, collect, &out, &complete, &error) &&
          error.code == NULL && !complete);
    s3_chunked_destroy(decoder);
    free(out.data);
    free(body);
}

static void test_chunked_trailer_example(void) {
    struct s3_auth auth;
    REQUIRE(chunked_example_auth(true, &auth));
    CHECK(auth.payload == S3_PAYLOAD_STREAMING_SIGNED_TRAILER);
    CHECK(strcmp(auth.seed_signature, T_SEED_SIGNATURE) == 0);
    const char *signatures[3] = {T_CHUNK1_SIGNATURE, T_CHUNK2_SIGNATURE, T_FINAL_SIGNATURE};
    size_t length;
    unsigned char *body = chunked_example_body(
        signatures,
        "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" TRAILER_SIGNATURE "\r\n\r\n",
        &length);
    for (int pass = 0; pass < 2; pass++) {
        struct s3_chunked *decoder = s3_chunked_create(&auth);
        struct collected out = {0};
        bool complete = false;
        struct s3_error error = {0};
        CHECK(
            feed_in_pieces(decoder, body, length, pass == 0 ? length : 1, &out, &complete, &error));
        CHECK(complete);
        CHECK(all_a(&out, 66560));
        const char *checksum = s3_chunked_trailer(decoder, "x-amz-checksum-crc32c");
        CHECK(checksum != NULL && strcmp(checksum, "sOO8/Q==") == 0);
        /* The trailer is the CRC32C of the data, big-endian, in base64. */
        if (out.length == 66560) {
            uint32_t crc = crc32c(out.data, out.length);
            unsigned char big_endian[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
                                           (unsigned char)(crc >> 8), (unsigned char)crc};
            char text[9];
            base64_encode(big_endian, 4, text);
            CHECK(strcmp(text, "sOO8/Q==") == 0);
        }
        s3_chunked_destroy(decoder);
        free(out.data);
    }
    free(body);
    /* The trailer value changed; the trailer signature missing. */
    body = chunked_example_body(
        signatures,
        "x-amz-checksum-crc32c:sOO8/R==\r\nx-amz-trailer-signature:" TRAILER_SIGNATURE "\r\n\r\n",
        &length);
    CHECK(chunked_refused(&auth, body, length, 403, "SignatureDoesNotMatch"));
    free(body);
    body = chunked_example_body(signatures, "x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n", &length);
    CHECK(chunked_refused(&auth, body, length, 400, "InvalidRequest"));
    free(body);
    /* A trailer line that is not name:value. */
    body = chunked_example_body(signatures, "garbage\r\n\r\n", &length);
    CHECK(chunked_refused(&auth, body, length, 400, "InvalidRequest"));
    free(body);
}

static void test_unsigned_trailer(void) {
    struct s3_auth auth = {.payload = S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER};
    const char *body =
        "5\r\nhello\r\nb\r\n, world 123\r\n0\r\nX-Amz-Checksum-CRC32: AAAAAA==\r\n\r\n";
    for (int pass = 0; pass < 2; pass++) {
        struct s3_chunked *decoder = s3_chunked_create(&auth);
        struct collected out = {0};
        bool complete = false;
        struct s3_error error = {0};
        CHECK(feed_in_pieces(decoder, (const unsigned char *)body, strlen(body),
                             pass == 0 ? strlen(body) : 1, &out, &complete, &error));
        CHECK(complete && out.length == 16 && memcmp(out.data, "hello, world 123", 16) == 0);
        const char *value = s3_chunked_trailer(decoder, "x-amz-checksum-crc32");
        CHECK(value != NULL && strcmp(value, "AAAAAA==") == 0);
        s3_chunked_destroy(decoder);
        free(out.data);
    }
    /* Chunk signatures are not part of this form, nor is a trailer signature. */
    const char *signed_line = "5;chunk-signature=" FINAL_SIGNATURE "\r\nhello\r\n0\r\n\r\n";
    CHECK(chunked_refused(&auth, (const unsigned char *)signed_line, strlen(signed_line), 400,
                          "InvalidRequest"));
    const char *signed_trailer = "0\r\nx-amz-trailer-signature:" FINAL_SIGNATURE "\r\n\r\n";
    CHECK(chunked_refused(&auth, (const unsigned char *)signed_trailer, strlen(signed_trailer), 400,
                          "InvalidRequest"));
}

/* ---- botocore vectors ----------------------------------------------------------------- */

static void test_botocore_vectors(void) {
    for (size_t v = 0; v < COUNT(BOTOCORE_VECTORS); v++) {
        const struct botocore_vector *vector = &BOTOCORE_VECTORS[v];
        size_t count = 0;
        while (count < COUNT(vector->headers) && vector->headers[count] != NULL)
            count++;
        struct s3_auth auth;
        struct s3_error error;
        bool ok = authenticate(vector->method, vector->path, vector->query, vector->headers, count,
                               vector->now_ms, &auth, &error);
        if (!ok) fprintf(stderr, "    %s: %s %s\n", vector->name, error.code, error.message);
        CHECK(ok);
        CHECK(!ok || auth.payload == (enum s3_payload)vector->payload);
    }
}

/* ---- helpers -------------------------------------------------------------------------- */

static void test_helpers(void) {
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const encoded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                          "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < COUNT(plain); i++) {
        char text[16];
        base64_encode((const unsigned char *)plain[i], strlen(plain[i]), text);
        CHECK(strcmp(text, encoded[i]) == 0);
        unsigned char decoded[16];
        long length = base64_decode(encoded[i], strlen(encoded[i]), decoded, sizeof(decoded));
        CHECK(length == (long)strlen(plain[i]) && memcmp(decoded, plain[i], (size_t)length) == 0);
    }
    unsigned char out[8];
    CHECK(base64_decode("Zm9", 3, out, sizeof(out)) == -1);
    CHECK(base64_decode("Zm=v", 4, out, sizeof(out)) == -1);
    CHECK(base64_decode("Z===", 4, out, sizeof(out)) == -1);
    CHECK(base64_decode("Zm9v", 4, out, 2) == -1);
    CHECK(base64_decode("Zm9*", 4, out, sizeof(out)) == -1);

    char hex[9];
    s3_hex((const unsigned char *)"\x00\x9f\xff\x10", 4, hex);
    CHECK(strcmp(hex, "009fff10") == 0);

    char text[32] = "a%20b+c%2F%7e";
    CHECK(s3_percent_decode(text, strlen(text), true) == 7 && memcmp(text, "a b c/~", 7) == 0);
    strcpy(text, "a+b");
    CHECK(s3_percent_decode(text, 3, false) == 3 && memcmp(text, "a+b", 3) == 0);
    strcpy(text, "a%2");
    CHECK(s3_percent_decode(text, 3, false) == -1);
    strcpy(text, "a%g0");
    CHECK(s3_percent_decode(text, 4, false) == -1);

    char uri[32];
    CHECK(s3_uri_encode((const unsigned char *)"a b/c~-_.$\xc3\xa9", 12, true, uri, sizeof(uri)) ==
              20 &&
          strcmp(uri, "a%20b/c~-_.%24%C3%A9") == 0);
    CHECK(s3_uri_encode((const unsigned char *)"a/b", 3, false, uri, sizeof(uri)) == 5 &&
          strcmp(uri, "a%2Fb") == 0);
    CHECK(s3_uri_encode((const unsigned char *)"a/b", 3, false, uri, 5) == -1);
    CHECK(s3_uri_encode((const unsigned char *)"ab", 2, false, uri, 3) == 2);

    const char *query = "list-type=2&prefix=a%2Fb+c&delete&X-Amz-Expires=60&encoding-type=url";
    char value[16];
    CHECK(s3_query_get(query, strlen(query), "prefix", value, sizeof(value)) == 5 &&
          strcmp(value, "a/b c") == 0);
    CHECK(s3_query_get(query, strlen(query), "delete", value, sizeof(value)) == 0 &&
          value[0] == '\0');
    CHECK(s3_query_get(query, strlen(query), "X-Amz-Expires", value, sizeof(value)) == 2 &&
          strcmp(value, "60") == 0);
    CHECK(s3_query_get(query, strlen(query), "versionId", value, sizeof(value)) == -1);
    CHECK(s3_query_get(query, strlen(query), "list", value, sizeof(value)) == -1);
    CHECK(s3_query_get(query, strlen(query), "encoding-type", value, 3) == -2);
    CHECK(s3_query_get("a=%zz", 5, "a", value, sizeof(value)) == -2);
    CHECK(s3_query_get("%61=1", 5, "a", value, sizeof(value)) == 1);
}

int main(void) {
    RUN_TEST(test_get_object_with_range);
    RUN_TEST(test_put_object);
    RUN_TEST(test_bucket_requests);
    RUN_TEST(test_presigned_url);
    RUN_TEST(test_refusals);
    RUN_TEST(test_chunked_example);
    RUN_TEST(test_unsigned_amz_header_refused);
    RUN_TEST(test_chunked_refusals);
    RUN_TEST(test_chunked_trailer_example);
    RUN_TEST(test_unsigned_trailer);
    RUN_TEST(test_v2_object_get_and_put);
    RUN_TEST(test_v2_bucket_examples);
    RUN_TEST(test_v2_delete_and_upload);
    RUN_TEST(test_v2_presigned);
    RUN_TEST(test_v2_refusals);
    RUN_TEST(test_botocore_vectors);
    RUN_TEST(test_botocore_v2_vectors);
    RUN_TEST(test_helpers);
    return test_main_result();
}
