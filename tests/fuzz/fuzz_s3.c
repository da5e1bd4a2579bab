/* libFuzzer target: the S3 front end's pure parsers (proto/s3/): the XML reader, the
 * aws-chunked decoder and Signature Version 4 and 2 verification. The first byte of an
 * input chooses which one gets the rest:
 *   0  s3_xml_parse() of the bytes;
 *   1, 2, 3  the aws-chunked decoder (signed; signed with trailers; unsigned with
 *      trailers), keyed as the chunked upload example of the S3 API reference, fed in
 *      pieces of (second byte + 1) bytes;
 *   4  s3_authenticate() of a request written as lines: method, raw path, raw query,
 *      then "name:value" headers, checked at the example's time 20130524T000000Z. */
#include "proto/s3/s3_auth.h"
#include "proto/s3/s3_xml.h"

#include <stdlib.h>
#include <string.h>

#define EXAMPLE_MS  1369353600000LL
#define MAX_HEADERS 32

static const char *lookup_secret(void *context, const char *access_key, size_t length) {
    (void)context;
    static const char ACCESS_KEY[] = "AKIAIOSFODNN7EXAMPLE";
    if (length == sizeof(ACCESS_KEY) - 1 && memcmp(access_key, ACCESS_KEY, length) == 0)
        return "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    return NULL;
}

static bool count_visit(void *context, const char *path, const char *text, size_t length) {
    size_t *visits = context;
    (*visits)++;
    /* Read what was given, so that ASan sees any overrun. */
    size_t path_length = strlen(path);
    if (text != NULL && text[length] != '\0') abort();
    return path_length < 4096 && *visits < 100000;
}

static bool discard(void *context, const unsigned char *data, size_t length) {
    uint64_t *sum = context;
    for (size_t i = 0; i < length; i++)
        *sum += data[i];
    return true;
}

/* The auth of the documented chunked PUT: its signing key, scope and seed signature. */
static bool example_auth(struct s3_auth *auth, enum s3_payload payload) {
    static const struct s3_header headers[] = {
#define HEADER(name, value) {name, sizeof(name) - 1, value, sizeof(value) - 1}
        HEADER("Host", "s3.amazonaws.com"),
        HEADER("x-amz-date", "20130524T000000Z"),
        HEADER("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        HEADER("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        HEADER("Content-Encoding", "aws-chunked"),
        HEADER("x-amz-decoded-content-length", "66560"),
        HEADER("Content-Length", "66824"),
        HEADER("Authorization",
               "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
               "aws4_request,SignedHeaders=content-encoding;content-length;host;"
               "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
               "x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea"
               "153f7db9fa80a0a9"),
#undef HEADER
    };
    static const char PATH[] = "/examplebucket/chunkObject.txt";
    struct s3_request_view view = {
        "PUT", PATH, sizeof(PATH) - 1, "", 0, headers, sizeof(headers) / sizeof(headers[0]),
        NULL,  0};
    struct s3_error error;
    if (!s3_authenticate(&view, EXAMPLE_MS, lookup_secret, NULL, auth, &error)) return false;
    auth->payload = payload;
    return true;
}

static void fuzz_chunked(enum s3_payload payload, const unsigned char *data, size_t size) {
    static struct s3_auth auth;
    static bool have_auth;
    if (!have_auth) {
        if (!example_auth(&auth, S3_PAYLOAD_STREAMING_SIGNED)) abort();
        have_auth = true;
    }
    if (size == 0) return;
    size_t piece = (size_t)data[0] + 1;
    data++;
    size--;
    struct s3_auth keyed = auth;
    keyed.payload = payload;
    struct s3_chunked *decoder = s3_chunked_create(&keyed);
    if (decoder == NULL) return;
    uint64_t sum = 0;
    bool complete = false;
    struct s3_error error;
    for (size_t at = 0; at < size; at += piece) {
        size_t take = size - at < piece ? size - at : piece;
        if (!s3_chunked_feed(decoder, data + at, take, discard, &sum, &complete, &error)) break;
    }
    if (complete) {
        const char *value = s3_chunked_trailer(decoder, "x-amz-checksum-crc32c");
        if (value != NULL) sum += strlen(value);
    }
    sum += s3_chunked_decoded(decoder);
    s3_chunked_destroy(decoder);
    (void)sum;
}

/* Splits DATA at '\n' into the request's lines. */
static void fuzz_authenticate(const unsigned char *data, size_t size) {
    char *text = malloc(size + 1);
    if (text == NULL) return;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *lines[3 + MAX_HEADERS];
    size_t line_lengths[3 + MAX_HEADERS];
    size_t count = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && count < 3 + MAX_HEADERS; i++) {
        if (i < size && text[i] != '\n') continue;
        lines[count] = text + start;
        line_lengths[count] = i - start;
        count++;
        start = i + 1;
    }
    while (count < 3) {
        lines[count] = "";
        line_lengths[count] = 0;
        count++;
    }
    /* The method must be NUL-terminated. */
    char method[16];
    size_t method_length = line_lengths[0] < sizeof(method) - 1 ? line_lengths[0] : 15;
    memcpy(method, lines[0], method_length);
    method[method_length] = '\0';
    struct s3_header headers[MAX_HEADERS];
    size_t header_count = 0;
    for (size_t i = 3; i < count; i++) {
        const char *colon = memchr(lines[i], ':', line_lengths[i]);
        if (colon == NULL) continue;
        size_t name_length = (size_t)(colon - lines[i]);
        headers[header_count++] =
            (struct s3_header){lines[i], name_length, colon + 1, line_lengths[i] - name_length - 1};
    }
    struct s3_request_view view = {
        method, lines[1], line_lengths[1], lines[2], line_lengths[2], headers, header_count,
        NULL,   0};
    struct s3_auth auth;
    struct s3_error error;
    if (s3_authenticate(&view, EXAMPLE_MS, lookup_secret, NULL, &auth, &error)) {
        /* Signature Version 4 leaves its seed signature; Version 2 has none, and an
         * unsigned payload. */
        bool v2 = auth.scope[0] == '\0' && auth.seed_signature[0] == '\0' &&
                  auth.payload == S3_PAYLOAD_UNSIGNED;
        if (!auth.anonymous && !v2 && strlen(auth.seed_signature) != 64) abort();
        if (!auth.anonymous && auth.access_key[0] == '\0') abort();
    } else if (error.code == NULL || error.message == NULL || error.status < 400) {
        abort();
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size == 0) return 0;
    unsigned char mode = data[0] % 5;
    data++;
    size--;
    switch (mode) {
    case 0: {
        size_t visits = 0;
        const char *reason = NULL;
        if (!s3_xml_parse((const char *)data, size, count_visit, &visits, &reason) &&
            reason == NULL)
            abort();
        break;
    }
    case 1:
        fuzz_chunked(S3_PAYLOAD_STREAMING_SIGNED, data, size);
        break;
    case 2:
        fuzz_chunked(S3_PAYLOAD_STREAMING_SIGNED_TRAILER, data, size);
        break;
    case 3:
        fuzz_chunked(S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER, data, size);
        break;
    default:
        fuzz_authenticate(data, size);
        break;
    }
    return 0;
}
