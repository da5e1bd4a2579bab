/* Unit tests of AWS Signature Version 4 verification (proto/s3/s3_auth.h) against the
 * worked examples of the Amazon S3 API reference: "Signature Calculations for the
 * Authorization Header" (GET Object with Range, PUT Object, GET Bucket Lifecycle, Get
 * Bucket (List Objects)), "Authenticating Requests: Using Query Parameters" (the
 * presigned GET of test.txt), "... Transferring Payload in Multiple Chunks" (the seed
 * and the three chunk signatures) and "... Including Trailing Headers" (the signed
 * x-amz-checksum-crc32c trailer). Then what must be refused, and the aws-chunked
 * decoder fed whole, in pieces and one byte at a time, with corrupted signatures and
 * framing. Further vectors made with botocore are in s3_auth_botocore_vectors.h. */
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
        method, path, strlen(path), query, strlen(query), request->headers, count};
}

static bool authenticate(const char *method, const char *path, const char *query,
                         const char *const *lines, size_t count, int64_t now_ms,
                         struct s3_auth *auth, struct s3_error *error) {
    struct request request;
    build(&request, method, path, query, lines, count);
    *error = (struct s3_error){0};
    return s3_authenticate(&request.view, now_ms, lookup_secret, NULL, auth, error);
}

/* Runs a request that must be refused with STATUS and CODE. */
static bool refused(const char *method, const char *path, const char *query,
                    const char *const *lines, size_t count, int64_t now_ms, int status,
                    const char *code) {
    struct s3_auth auth;
    struct s3_error error;
    if (authenticate(method, path, query, lines, count, now_ms, &auth, &error)) {
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
    /* Unknown access key; Signature Version 2; an unknown scheme. */
    CHECK(get_object_refused(WITH("Authorization: AWS4-HMAC-SHA256 Credential=AKIDOTHER/20130524/"
                                  "us-east-1/s3/aws4_request,%s,Signature=%s",
                                  headers, GET_OBJECT_SIGNATURE),
                             403, "InvalidAccessKeyId"));
    CHECK(get_object_refused("Authorization: AWS " ACCESS_KEY ":frJIUN8DYpKDtOLCwo//yllqDzg=", 400,
                             "InvalidArgument"));
    CHECK(get_object_refused("Authorization: Bearer abc", 400, "InvalidArgument"));
#undef WITH
    const char *host[] = {"Host: examplebucket.s3.amazonaws.com"};
    CHECK(refused("GET", "/test.txt",
                  "AWSAccessKeyId=" ACCESS_KEY "&Expires=1141889120&Signature=vjbyPxybd%2F0", host,
                  COUNT(host), EXAMPLE_MS, 400, "InvalidArgument"));
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
        trailer ? "x-amz-trailer: x-amz-checksum-crc32c" : "x-amz-meta-unsigned: yes",
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
            s3_base64(big_endian, 4, text);
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
        s3_base64((const unsigned char *)plain[i], strlen(plain[i]), text);
        CHECK(strcmp(text, encoded[i]) == 0);
        unsigned char decoded[16];
        long length = s3_base64_decode(encoded[i], strlen(encoded[i]), decoded, sizeof(decoded));
        CHECK(length == (long)strlen(plain[i]) && memcmp(decoded, plain[i], (size_t)length) == 0);
    }
    unsigned char out[8];
    CHECK(s3_base64_decode("Zm9", 3, out, sizeof(out)) == -1);
    CHECK(s3_base64_decode("Zm=v", 4, out, sizeof(out)) == -1);
    CHECK(s3_base64_decode("Z===", 4, out, sizeof(out)) == -1);
    CHECK(s3_base64_decode("Zm9v", 4, out, 2) == -1);
    CHECK(s3_base64_decode("Zm9*", 4, out, sizeof(out)) == -1);

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
    RUN_TEST(test_chunked_refusals);
    RUN_TEST(test_chunked_trailer_example);
    RUN_TEST(test_unsigned_trailer);
    RUN_TEST(test_botocore_vectors);
    RUN_TEST(test_helpers);
    return test_main_result();
}
