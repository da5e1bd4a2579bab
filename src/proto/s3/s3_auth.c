/* AWS Signature Version 4 verification for the S3 front end (s3_auth.h): the
 * Authorization header, presigned URLs and the aws-chunked decoder with its chained
 * chunk and trailer signatures; and Signature Version 2 (header and presigned). SHA-256,
 * HMAC-SHA256 and HMAC-SHA1 come from OpenSSL's libcrypto; signatures are compared with
 * CRYPTO_memcmp(). */
#include "proto/s3/s3_auth.h"
#include "base/base64.h"
#include "base/byte_buffer.h"
#include "proto/s3/s3_xml.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SHA256_LENGTH      32
#define SHA256_HEX_LENGTH  64
#define AMZ_DATE_LENGTH    16 /* yyyymmddThhmmssZ */
#define MAX_REGION_LENGTH  64
#define MAX_SIGNED_HEADERS 64
#define MAX_AUTH_FIELD     4096 /* longest Credential or SignedHeaders value taken */

static const char ALGORITHM[] = "AWS4-HMAC-SHA256";
static const char EMPTY_SHA256_HEX[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
static const char HEX_DIGITS[] = "0123456789abcdef";

/* ---- small helpers -------------------------------------------------------------------- */

static bool fail(struct s3_error *error, int status, const char *code, const char *message) {
    error->status = status;
    error->code = code;
    error->message = message;
    return false;
}

static void sha256(const void *data, size_t length, unsigned char digest[SHA256_LENGTH]) {
    unsigned int digest_length = 0;
    if (EVP_Digest(data, length, digest, &digest_length, EVP_sha256(), NULL) != 1)
        memset(digest, 0, SHA256_LENGTH); /* cannot happen with the built-in provider */
}

static void hmac_sha256(const void *key, size_t key_length, const void *data, size_t length,
                        unsigned char mac[SHA256_LENGTH]) {
    unsigned int mac_length = 0;
    if (HMAC(EVP_sha256(), key, (int)key_length, data, length, mac, &mac_length) == NULL)
        memset(mac, 0, SHA256_LENGTH);
}

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes exactly 64 hex digits (either case) into 32 bytes; false if TEXT is not that. */
static bool decode_sha256_hex(const char *text, size_t length, unsigned char out[SHA256_LENGTH]) {
    if (length != SHA256_HEX_LENGTH) return false;
    for (size_t i = 0; i < SHA256_LENGTH; i++) {
        int high = hex_value((unsigned char)text[2 * i]);
        int low = hex_value((unsigned char)text[2 * i + 1]);
        if (high < 0 || low < 0) return false;
        out[i] = (unsigned char)(high << 4 | low);
    }
    return true;
}

static bool same_text(const char *a, size_t a_length, const char *b) {
    size_t b_length = strlen(b);
    return a_length == b_length && memcmp(a, b, a_length) == 0;
}

static bool same_text_nocase(const char *a, size_t a_length, const char *b) {
    size_t b_length = strlen(b);
    return a_length == b_length && strncasecmp(a, b, a_length) == 0;
}

static bool is_space(char c) {
    return c == ' ' || c == '\t';
}

/* Signing key = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
 * "aws4_request"). */
static void derive_signing_key(const char *secret, const char *date, size_t date_length,
                               const char *region, size_t region_length,
                               unsigned char key[SHA256_LENGTH]) {
    struct byte_buffer prefixed = BYTE_BUFFER_INIT;
    byte_buffer_append_text(&prefixed, "AWS4");
    byte_buffer_append_text(&prefixed, secret);
    unsigned char step[SHA256_LENGTH];
    if (prefixed.failed) {
        memset(key, 0, SHA256_LENGTH);
        byte_buffer_free(&prefixed);
        return;
    }
    hmac_sha256(prefixed.data, prefixed.length, date, date_length, step);
    OPENSSL_cleanse(prefixed.data, prefixed.length);
    byte_buffer_free(&prefixed);
    hmac_sha256(step, sizeof(step), region, region_length, step);
    hmac_sha256(step, sizeof(step), "s3", 2, step);
    hmac_sha256(step, sizeof(step), "aws4_request", 12, key);
    OPENSSL_cleanse(step, sizeof(step));
}

/* Parses "yyyymmddThhmmssZ" into Unix epoch milliseconds; false if it is not a valid
 * UTC time in that exact form. */
static bool parse_amz_date(const char *text, size_t length, int64_t *ms) {
    if (length != AMZ_DATE_LENGTH || text[8] != 'T' || text[15] != 'Z') return false;
    int fields[6];
    static const unsigned char offsets[6] = {0, 4, 6, 9, 11, 13};
    static const unsigned char widths[6] = {4, 2, 2, 2, 2, 2};
    for (int f = 0; f < 6; f++) {
        int value = 0;
        for (int i = 0; i < widths[f]; i++) {
            char c = text[offsets[f] + i];
            if (c < '0' || c > '9') return false;
            value = value * 10 + (c - '0');
        }
        fields[f] = value;
    }
    struct tm parts = {.tm_year = fields[0] - 1900,
                       .tm_mon = fields[1] - 1,
                       .tm_mday = fields[2],
                       .tm_hour = fields[3],
                       .tm_min = fields[4],
                       .tm_sec = fields[5]};
    if (fields[1] < 1 || fields[1] > 12 || fields[2] < 1 || fields[3] > 23 || fields[4] > 59 ||
        fields[5] > 59)
        return false;
    time_t seconds = timegm(&parts);
    struct tm check;
    if (gmtime_r(&seconds, &check) == NULL || check.tm_mday != fields[2] ||
        check.tm_mon != fields[1] - 1)
        return false; /* e.g. the 31st of a 30-day month */
    *ms = (int64_t)seconds * 1000;
    return true;
}

/* ---- public helpers ------------------------------------------------------------------- */

void s3_hex(const unsigned char *data, size_t length, char *text) {
    for (size_t i = 0; i < length; i++) {
        text[2 * i] = HEX_DIGITS[data[i] >> 4];
        text[2 * i + 1] = HEX_DIGITS[data[i] & 15];
    }
    text[2 * length] = '\0';
}

long s3_percent_decode(char *text, size_t length, bool plus_is_space) {
    size_t out = 0;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        if (c == '%') {
            if (length - i < 3) return -1;
            int high = hex_value((unsigned char)text[i + 1]);
            int low = hex_value((unsigned char)text[i + 2]);
            if (high < 0 || low < 0) return -1;
            text[out++] = (char)(high << 4 | low);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            text[out++] = ' ';
        } else {
            text[out++] = c;
        }
    }
    return (long)out;
}

static bool is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

long s3_uri_encode(const unsigned char *data, size_t length, bool keep_slash, char *output,
                   size_t maximum) {
    size_t out = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = data[i];
        if (is_unreserved(c) || (c == '/' && keep_slash)) {
            if (out + 1 >= maximum) return -1;
            output[out++] = (char)c;
        } else {
            if (out + 3 >= maximum) return -1;
            output[out++] = '%';
            output[out++] = "0123456789ABCDEF"[c >> 4];
            output[out++] = "0123456789ABCDEF"[c & 15];
        }
    }
    if (out >= maximum) return -1;
    output[out] = '\0';
    return (long)out;
}

/* One "name=value" part of a raw query string: the spans as sent. */
struct query_part {
    const char *name;
    size_t name_length;
    const char *value; /* NULL when the part has no '=' */
    size_t value_length;
};

/* Splits the part of RAW_QUERY starting at *OFFSET (up to the next '&') into PART and
 * moves *OFFSET past it. Returns false when the query is used up. */
static bool next_query_part(const char *raw_query, size_t length, size_t *offset,
                            struct query_part *part) {
    if (*offset >= length) return false;
    const char *start = raw_query + *offset;
    const char *end = memchr(start, '&', length - *offset);
    size_t part_length = end != NULL ? (size_t)(end - start) : length - *offset;
    *offset += part_length + 1;
    const char *equals = memchr(start, '=', part_length);
    part->name = start;
    part->name_length = equals != NULL ? (size_t)(equals - start) : part_length;
    part->value = equals != NULL ? equals + 1 : NULL;
    part->value_length = equals != NULL ? part_length - part->name_length - 1 : 0;
    return true;
}

long s3_query_get(const char *raw_query, size_t length, const char *name, char *value,
                  size_t maximum) {
    size_t offset = 0;
    struct query_part part;
    size_t wanted = strlen(name);
    while (next_query_part(raw_query, length, &offset, &part)) {
        char decoded_name[256];
        if (part.name_length >= sizeof(decoded_name)) continue; /* cannot decode to NAME */
        memcpy(decoded_name, part.name, part.name_length);
        long decoded_length = s3_percent_decode(decoded_name, part.name_length, true);
        if (decoded_length < 0 || (size_t)decoded_length != wanted ||
            memcmp(decoded_name, name, wanted) != 0)
            continue;
        if (part.value_length >= maximum) return -2;
        memcpy(value, part.value != NULL ? part.value : "", part.value_length);
        long value_length = s3_percent_decode(value, part.value_length, true);
        if (value_length < 0) return -2;
        value[value_length] = '\0';
        return value_length;
    }
    return -1;
}

/* ---- the canonical request ------------------------------------------------------------ */

/* Appends the canonical URI: the raw path decoded once and every byte UriEncoded with
 * '/' kept (S3 does not normalize paths). False on bad percent-encoding. */
static bool append_canonical_uri(struct byte_buffer *out, const char *raw_path, size_t length) {
    if (length == 0) {
        byte_buffer_append(out, "/", 1);
        return true;
    }
    char *decoded = malloc(length);
    if (decoded == NULL) {
        out->failed = true;
        return true;
    }
    memcpy(decoded, raw_path, length);
    long decoded_length = s3_percent_decode(decoded, length, false);
    if (decoded_length < 0) {
        free(decoded);
        return false;
    }
    size_t room = 3 * (size_t)decoded_length + 1;
    if (byte_buffer_reserve(out, room)) {
        long encoded = s3_uri_encode((const unsigned char *)decoded, (size_t)decoded_length, true,
                                     (char *)out->data + out->length, room);
        if (encoded >= 0) out->length += (size_t)encoded;
    }
    free(decoded);
    return true;
}

/* A query parameter in canonical (encoded) form, pointing into an arena. */
struct canonical_parameter {
    const char *name;
    size_t name_length;
    const char *value;
    size_t value_length;
};

static int compare_spans(const char *a, size_t a_length, const char *b, size_t b_length) {
    size_t common = a_length < b_length ? a_length : b_length;
    int order = memcmp(a, b, common);
    if (order != 0) return order;
    return a_length < b_length ? -1 : a_length > b_length ? 1 : 0;
}

static int compare_parameters(const void *left, const void *right) {
    const struct canonical_parameter *a = left;
    const struct canonical_parameter *b = right;
    int order = compare_spans(a->name, a->name_length, b->name, b->name_length);
    return order != 0 ? order : compare_spans(a->value, a->value_length, b->value, b->value_length);
}

/* Decodes SPAN (LENGTH bytes) and appends its UriEncoding to ARENA. False on bad
 * percent-encoding. */
static bool append_reencoded(struct byte_buffer *arena, const char *span, size_t length) {
    if (length == 0) return true;
    char *decoded = malloc(length);
    if (decoded == NULL) {
        arena->failed = true;
        return true;
    }
    memcpy(decoded, span, length);
    long decoded_length = s3_percent_decode(decoded, length, true);
    bool ok = decoded_length >= 0;
    if (ok) {
        size_t room = 3 * (size_t)decoded_length + 1;
        if (byte_buffer_reserve(arena, room)) {
            long encoded = s3_uri_encode((const unsigned char *)decoded, (size_t)decoded_length,
                                         false, (char *)arena->data + arena->length, room);
            if (encoded >= 0) arena->length += (size_t)encoded;
        }
    }
    free(decoded);
    return ok;
}

/* Appends the canonical query string of RAW_QUERY: every parameter's name and value
 * decoded then UriEncoded, sorted by name then value, joined "n=v&n=v"; X-Amz-Signature
 * left out when PRESIGNED. False on bad percent-encoding. */
static bool append_canonical_query(struct byte_buffer *out, const char *raw_query, size_t length,
                                   bool presigned) {
    struct byte_buffer arena = BYTE_BUFFER_INIT;
    struct byte_buffer offsets = BYTE_BUFFER_INIT; /* size_t quadruples into the arena */
    size_t offset = 0;
    struct query_part part;
    bool ok = true;
    while (ok && next_query_part(raw_query, length, &offset, &part)) {
        if (part.name_length == 0 && part.value == NULL) continue; /* "a&&b" or a trailing & */
        size_t name_start = arena.length;
        ok = append_reencoded(&arena, part.name, part.name_length);
        size_t value_start = arena.length;
        if (ok) ok = append_reencoded(&arena, part.value, part.value_length);
        if (!ok) break;
        if (presigned && same_text((const char *)arena.data + name_start, value_start - name_start,
                                   "X-Amz-Signature")) {
            arena.length = name_start;
            continue;
        }
        size_t spans[4] = {name_start, value_start - name_start, value_start,
                           arena.length - value_start};
        byte_buffer_append(&offsets, spans, sizeof(spans));
    }
    if (ok && !arena.failed && !offsets.failed) {
        size_t count = offsets.length / (4 * sizeof(size_t));
        struct canonical_parameter *parameters =
            count > 0 ? calloc(count, sizeof(*parameters)) : NULL;
        if (count > 0 && parameters == NULL) {
            out->failed = true;
        } else {
            for (size_t i = 0; i < count; i++) {
                size_t spans[4];
                memcpy(spans, offsets.data + i * sizeof(spans), sizeof(spans));
                parameters[i] =
                    (struct canonical_parameter){(const char *)arena.data + spans[0], spans[1],
                                                 (const char *)arena.data + spans[2], spans[3]};
            }
            if (count > 1) qsort(parameters, count, sizeof(*parameters), compare_parameters);
            for (size_t i = 0; i < count; i++) {
                if (i > 0) byte_buffer_append(out, "&", 1);
                byte_buffer_append(out, parameters[i].name, parameters[i].name_length);
                byte_buffer_append(out, "=", 1);
                byte_buffer_append(out, parameters[i].value, parameters[i].value_length);
            }
            free(parameters);
        }
    } else if (ok) {
        out->failed = true;
    }
    byte_buffer_free(&arena);
    byte_buffer_free(&offsets);
    return ok;
}

/* Appends VALUE trimmed, with runs of spaces and tabs collapsed to one space. */
static void append_trimmed_value(struct byte_buffer *out, const char *value, size_t length) {
    size_t start = 0;
    while (start < length && is_space(value[start]))
        start++;
    while (length > start && is_space(value[length - 1]))
        length--;
    bool in_space = false;
    for (size_t i = start; i < length; i++) {
        if (is_space(value[i])) {
            in_space = true;
            continue;
        }
        if (in_space) byte_buffer_append(out, " ", 1);
        in_space = false;
        byte_buffer_append(out, &value[i], 1);
    }
}

/* The SignedHeaders list, split, lower-cased and sorted. */
struct signed_headers {
    char text[MAX_AUTH_FIELD]; /* the names, NUL-separated */
    const char *names[MAX_SIGNED_HEADERS];
    size_t count;
};

static int compare_names(const void *left, const void *right) {
    return strcmp(*(const char *const *)left, *(const char *const *)right);
}

/* Splits LIST ("host;range;x-amz-date") into SIGNED. False if it is empty, holds an
 * empty or repeated name, a character no header name has, or too many names. */
static bool parse_signed_headers(const char *list, size_t length, struct signed_headers *signed_) {
    if (length == 0 || length >= sizeof(signed_->text)) return false;
    signed_->count = 0;
    size_t start = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i < length && list[i] != ';') {
            unsigned char c = (unsigned char)list[i];
            if (c <= ' ' || c >= 127 || c == ':' || c == ',' || c == '=') return false;
            signed_->text[i] = (char)tolower(c);
            continue;
        }
        if (i == start || signed_->count == MAX_SIGNED_HEADERS) return false;
        signed_->text[i] = '\0';
        signed_->names[signed_->count++] = &signed_->text[start];
        start = i + 1;
    }
    qsort(signed_->names, signed_->count, sizeof(signed_->names[0]), compare_names);
    for (size_t i = 1; i < signed_->count; i++)
        if (strcmp(signed_->names[i - 1], signed_->names[i]) == 0) return false;
    return true;
}

/* Whether every x-amz-* header of REQUEST is in SIGNED (as S3 requires: an unsigned
 * x-amz-copy-source would turn a presigned PUT into a copy of another object).
 * x-amz-content-sha256 is exempt: with header auth its value is the canonical request's
 * payload hash already, and a presigned URL's payload is unsigned whatever it says. */
static bool every_amz_header_signed(const struct s3_request_view *request,
                                    const struct signed_headers *signed_) {
    for (size_t i = 0; i < request->header_count; i++) {
        const struct s3_header *header = &request->headers[i];
        if (header->name_length < 6 || strncasecmp(header->name, "x-amz-", 6) != 0) continue;
        if (same_text_nocase(header->name, header->name_length, "x-amz-content-sha256")) continue;
        bool found = false;
        for (size_t s = 0; s < signed_->count && !found; s++)
            found = same_text_nocase(header->name, header->name_length, signed_->names[s]);
        if (!found) return false;
    }
    return true;
}

/* Appends "name:value\n" for every signed header (values of repeated headers joined
 * with ','), then "\n", the signed header list and "\n". False if a signed header is
 * not in the request. */
static bool append_canonical_headers(struct byte_buffer *out, const struct s3_request_view *request,
                                     const struct signed_headers *signed_) {
    for (size_t n = 0; n < signed_->count; n++) {
        const char *name = signed_->names[n];
        byte_buffer_append_text(out, name);
        byte_buffer_append(out, ":", 1);
        bool found = false;
        for (size_t h = 0; h < request->header_count; h++) {
            const struct s3_header *header = &request->headers[h];
            if (!same_text_nocase(header->name, header->name_length, name)) continue;
            if (found) byte_buffer_append(out, ",", 1);
            append_trimmed_value(out, header->value, header->value_length);
            found = true;
        }
        if (!found) return false;
        byte_buffer_append(out, "\n", 1);
    }
    byte_buffer_append(out, "\n", 1);
    for (size_t n = 0; n < signed_->count; n++) {
        if (n > 0) byte_buffer_append(out, ";", 1);
        byte_buffer_append_text(out, signed_->names[n]);
    }
    byte_buffer_append(out, "\n", 1);
    return true;
}

/* ---- parsing the two forms ------------------------------------------------------------ */

/* What a SigV4 request claims, from the Authorization header or the X-Amz-* parameters. */
struct sigv4_claim {
    bool presigned;
    char credential[MAX_AUTH_FIELD];
    size_t credential_length;
    char signed_headers[MAX_AUTH_FIELD];
    size_t signed_headers_length;
    char signature[SHA256_HEX_LENGTH + 1];
    size_t signature_length;
    char amz_date[AMZ_DATE_LENGTH + 1];
    int64_t expires_seconds; /* presigned only */
};

/* The parts of "AK/yyyymmdd/region/s3/aws4_request". */
struct credential_scope {
    const char *access_key;
    size_t access_key_length;
    const char *date;
    const char *region;
    size_t region_length;
    const char *service;
    size_t service_length;
    const char *terminator;
    size_t terminator_length;
};

/* Splits CREDENTIAL from the right (an access key might hold a '/'). */
static bool split_credential(const char *credential, size_t length,
                             struct credential_scope *scope) {
    const char *slashes[4];
    size_t found = 0;
    for (size_t i = length; i-- > 0 && found < 4;)
        if (credential[i] == '/') slashes[found++] = credential + i;
    if (found < 4) return false;
    const char *end = credential + length;
    scope->terminator = slashes[0] + 1;
    scope->terminator_length = (size_t)(end - scope->terminator);
    scope->service = slashes[1] + 1;
    scope->service_length = (size_t)(slashes[0] - scope->service);
    scope->region = slashes[2] + 1;
    scope->region_length = (size_t)(slashes[1] - scope->region);
    scope->date = slashes[3] + 1;
    scope->access_key = credential;
    scope->access_key_length = (size_t)(slashes[3] - credential);
    return (size_t)(slashes[2] - scope->date) == 8;
}

/* Copies VALUE into FIELD (room for MAXIMUM bytes with the NUL); false if it is too long or
 * was already set. */
static bool take_field(char *field, size_t *field_length, size_t maximum, bool *seen,
                       const char *value, size_t length) {
    if (*seen || length >= maximum) return false;
    memcpy(field, value, length);
    field[length] = '\0';
    *field_length = length;
    *seen = true;
    return true;
}

/* Parses the Authorization header value after "AWS4-HMAC-SHA256": "Credential=...,
 * SignedHeaders=..., Signature=..." in any order, separated by commas and/or spaces. */
static bool parse_authorization(const char *text, size_t length, struct sigv4_claim *claim,
                                struct s3_error *error) {
    static const char MALFORMED[] = "AuthorizationHeaderMalformed";
    bool seen_credential = false, seen_headers = false, seen_signature = false;
    size_t i = 0;
    while (i < length) {
        while (i < length && (is_space(text[i]) || text[i] == ','))
            i++;
        if (i == length) break;
        size_t start = i;
        while (i < length && text[i] != ',' && !is_space(text[i]))
            i++;
        const char *item = text + start;
        size_t item_length = i - start;
        const char *equals = memchr(item, '=', item_length);
        if (equals == NULL)
            return fail(error, 400, MALFORMED,
                        "The authorization header is malformed: a component has no '='.");
        size_t key_length = (size_t)(equals - item);
        const char *value = equals + 1;
        size_t value_length = item_length - key_length - 1;
        bool ok;
        if (same_text(item, key_length, "Credential")) {
            ok = take_field(claim->credential, &claim->credential_length, sizeof(claim->credential),
                            &seen_credential, value, value_length);
        } else if (same_text(item, key_length, "SignedHeaders")) {
            ok = take_field(claim->signed_headers, &claim->signed_headers_length,
                            sizeof(claim->signed_headers), &seen_headers, value, value_length);
        } else if (same_text(item, key_length, "Signature")) {
            ok = take_field(claim->signature, &claim->signature_length, sizeof(claim->signature),
                            &seen_signature, value, value_length);
        } else {
            return fail(error, 400, MALFORMED,
                        "The authorization header is malformed: an unknown component.");
        }
        if (!ok)
            return fail(error, 400, MALFORMED,
                        "The authorization header is malformed: a component is repeated or "
                        "too long.");
    }
    if (!seen_credential || !seen_headers || !seen_signature)
        return fail(error, 400, MALFORMED,
                    "The authorization header is malformed: Credential, SignedHeaders and "
                    "Signature are required.");
    return true;
}

/* Reads the X-Amz-* query parameters of a presigned URL into CLAIM. */
static bool parse_presigned(const struct s3_request_view *request, struct sigv4_claim *claim,
                            struct s3_error *error) {
    static const char QUERY_ERROR[] = "AuthorizationQueryParametersError";
    const char *query = request->raw_query;
    size_t length = request->raw_query_length;
    char algorithm[32];
    if (s3_query_get(query, length, "X-Amz-Algorithm", algorithm, sizeof(algorithm)) < 0 ||
        strcmp(algorithm, ALGORITHM) != 0)
        return fail(error, 400, QUERY_ERROR, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\".");
    long credential = s3_query_get(query, length, "X-Amz-Credential", claim->credential,
                                   sizeof(claim->credential));
    long headers = s3_query_get(query, length, "X-Amz-SignedHeaders", claim->signed_headers,
                                sizeof(claim->signed_headers));
    long signature =
        s3_query_get(query, length, "X-Amz-Signature", claim->signature, sizeof(claim->signature));
    long date = s3_query_get(query, length, "X-Amz-Date", claim->amz_date, sizeof(claim->amz_date));
    char expires[24];
    long expires_length = s3_query_get(query, length, "X-Amz-Expires", expires, sizeof(expires));
    if (credential < 0 || headers < 0 || signature < 0 || date < 0 || expires_length < 0)
        return fail(error, 400, QUERY_ERROR,
                    "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                    "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                    "X-Amz-Expires parameters.");
    claim->credential_length = (size_t)credential;
    claim->signed_headers_length = (size_t)headers;
    claim->signature_length = (size_t)signature;
    int64_t seconds = 0;
    for (long i = 0; i < expires_length; i++) {
        if (expires[i] < '0' || expires[i] > '9' || seconds > S3_PRESIGN_MAX_SECONDS) {
            seconds = -1;
            break;
        }
        seconds = seconds * 10 + (expires[i] - '0');
    }
    if (expires_length == 0 || seconds < 1 || seconds > S3_PRESIGN_MAX_SECONDS)
        return fail(error, 400, QUERY_ERROR,
                    "X-Amz-Expires must be a number of seconds from 1 to 604800 (seven days).");
    claim->expires_seconds = seconds;
    return true;
}

/* How the request is signed, from its Authorization header and query parameters. */
enum auth_form { FORM_NONE, FORM_HEADER, FORM_PRESIGNED, FORM_V2_HEADER, FORM_V2_PRESIGNED };

static const struct s3_header *find_header(const struct s3_request_view *request, const char *name,
                                           size_t *count) {
    const struct s3_header *first = NULL;
    *count = 0;
    for (size_t i = 0; i < request->header_count; i++) {
        const struct s3_header *header = &request->headers[i];
        if (!same_text_nocase(header->name, header->name_length, name)) continue;
        if (first == NULL) first = header;
        (*count)++;
    }
    return first;
}

static bool query_has(const struct s3_request_view *request, const char *name) {
    char ignored[8];
    return s3_query_get(request->raw_query, request->raw_query_length, name, ignored,
                        sizeof(ignored)) != -1;
}

/* Decides the form and, for Signature Version 4, fills CLAIM (Version 2 is read by
 * authenticate_v2()). */
static bool classify(const struct s3_request_view *request, enum auth_form *form,
                     struct sigv4_claim *claim, struct s3_error *error) {
    size_t count = 0;
    const struct s3_header *authorization = find_header(request, "authorization", &count);
    bool query_v4 = query_has(request, "X-Amz-Algorithm") ||
                    query_has(request, "X-Amz-Credential") || query_has(request, "X-Amz-Signature");
    bool query_v2 = query_has(request, "AWSAccessKeyId");
    if ((authorization != NULL && (query_v4 || query_v2)) || (query_v4 && query_v2))
        return fail(error, 400, "InvalidArgument", "Only one auth mechanism allowed.");
    if (count > 1)
        return fail(error, 400, "AuthorizationHeaderMalformed",
                    "The request has more than one Authorization header.");
    if (authorization == NULL) {
        if (query_v4) {
            *form = FORM_PRESIGNED;
            claim->presigned = true;
            return parse_presigned(request, claim, error);
        }
        *form = query_v2 ? FORM_V2_PRESIGNED : FORM_NONE;
        return true;
    }
    const char *value = authorization->value;
    size_t length = authorization->value_length;
    while (length > 0 && is_space(*value)) {
        value++;
        length--;
    }
    size_t scheme = 0;
    while (scheme < length && !is_space(value[scheme]))
        scheme++;
    if (same_text(value, scheme, "AWS")) {
        *form = FORM_V2_HEADER;
        return true;
    }
    if (!same_text(value, scheme, ALGORITHM))
        return fail(error, 400, "InvalidArgument", "Unsupported Authorization Type.");
    if (scheme == length || !is_space(value[scheme]))
        return fail(error, 400, "AuthorizationHeaderMalformed",
                    "The authorization header is malformed: nothing follows the algorithm.");
    *form = FORM_HEADER;
    return parse_authorization(value + scheme, length - scheme, claim, error);
}

/* Reads x-amz-content-sha256 (header auth): sets AUTH's payload kind and hash and points
 * *HASH_TEXT at the value to put in the canonical request. */
static bool read_payload_hash(const struct s3_request_view *request, struct s3_auth *auth,
                              const char **hash_text, size_t *hash_length, struct s3_error *error) {
    size_t count = 0;
    const struct s3_header *header = find_header(request, "x-amz-content-sha256", &count);
    if (header == NULL)
        return fail(error, 400, "InvalidRequest",
                    "Missing required header for this request: x-amz-content-sha256");
    const char *value = header->value;
    size_t length = header->value_length;
    *hash_text = value;
    *hash_length = length;
    if (count > 1) return fail(error, 400, "InvalidArgument", "x-amz-content-sha256 is repeated.");
    if (decode_sha256_hex(value, length, auth->payload_sha256)) {
        auth->payload = S3_PAYLOAD_SHA256;
    } else if (same_text(value, length, "UNSIGNED-PAYLOAD")) {
        auth->payload = S3_PAYLOAD_UNSIGNED;
    } else if (same_text(value, length, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")) {
        auth->payload = S3_PAYLOAD_STREAMING_SIGNED;
    } else if (same_text(value, length, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")) {
        auth->payload = S3_PAYLOAD_STREAMING_SIGNED_TRAILER;
    } else if (same_text(value, length, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")) {
        auth->payload = S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    } else {
        return fail(error, 400, "InvalidArgument",
                    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value, or a "
                    "valid SHA-256 hex digest.");
    }
    return true;
}

/* Checks the request's time against NOW_MS: the header form allows S3_MAX_SKEW_MS either
 * way; a presigned URL is good from (at most S3_MAX_SKEW_MS before) its date until its
 * date plus X-Amz-Expires. */
static bool check_time(const struct sigv4_claim *claim, int64_t request_ms, int64_t now_ms,
                       struct s3_error *error) {
    if (claim->presigned) {
        if (request_ms - now_ms > S3_MAX_SKEW_MS)
            return fail(error, 403, "AccessDenied", "Request is not valid yet");
        if (now_ms > request_ms + claim->expires_seconds * 1000)
            return fail(error, 403, "AccessDenied", "Request has expired");
        return true;
    }
    int64_t skew = now_ms > request_ms ? now_ms - request_ms : request_ms - now_ms;
    if (skew > S3_MAX_SKEW_MS)
        return fail(error, 403, "RequestTimeTooSkewed",
                    "The difference between the request time and the current time is too "
                    "large.");
    return true;
}

/* ---- Signature Version 2 -------------------------------------------------------------- */

#define SHA1_LENGTH          20
#define V2_SIGNATURE_LENGTH  28 /* base64 of an HMAC-SHA1 */
#define MAX_V2_SIGNATURE     64 /* longest Signature taken */
#define MAX_SUBRESOURCE_NAME 32 /* longer than any name in V2_SUBRESOURCES */

static const char V2_HEADER_INVALID[] =
    "AWS authorization header is invalid. Expected AwsAccessKeyId:signature";
static const char NO_DATE[] = "AWS authentication requires a valid Date or x-amz-date header";

/* The query parameters Signature Version 2 signs (as sub-resources of the resource): the
 * list of "Signing and Authenticating REST Requests" in the Amazon S3 developer guide,
 * response-* overrides and delete included, with those botocore's HmacV1Auth (the signer
 * of boto3 and the AWS CLI) adds for newer subresources. Any other parameter is not
 * signed by Version 2. */
static const char *const V2_SUBRESOURCES[] = {
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "quota", /* strata's own: a bucket's quota */
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
};

static bool is_v2_subresource(const char *name, size_t length) {
    for (size_t i = 0; i < sizeof(V2_SUBRESOURCES) / sizeof(V2_SUBRESOURCES[0]); i++)
        if (same_text(name, length, V2_SUBRESOURCES[i])) return true;
    return false;
}

static void hmac_sha1(const char *key, const void *data, size_t length,
                      unsigned char mac[SHA1_LENGTH]) {
    unsigned int mac_length = 0;
    if (HMAC(EVP_sha1(), key, (int)strlen(key), data, length, mac, &mac_length) == NULL)
        memset(mac, 0, SHA1_LENGTH);
}

/* Parses the date of a Version 2 request into Unix epoch milliseconds: an HTTP date
 * (IMF-fixdate "... GMT", RFC 850 or asctime), one with a numeric zone instead of GMT
 * ("Tue, 27 Mar 2007 19:36:42 +0000", as the AWS examples have it), or
 * yyyymmddThhmmssZ. False if TEXT is none of them. */
static bool parse_v2_date(const char *text, size_t length, int64_t *ms) {
    if (s3_time_parse_http(text, length, ms) || parse_amz_date(text, length, ms)) return true;
    char gmt[64];
    if (length < 6 || length - 5 + 3 >= sizeof(gmt) || text[length - 6] != ' ' ||
        (text[length - 5] != '+' && text[length - 5] != '-'))
        return false;
    int digits[4];
    for (int i = 0; i < 4; i++) {
        char c = text[length - 4 + (size_t)i];
        if (c < '0' || c > '9') return false;
        digits[i] = c - '0';
    }
    int hours = digits[0] * 10 + digits[1];
    if (hours > 23 || digits[2] > 5) return false;
    int minutes = hours * 60 + digits[2] * 10 + digits[3];
    memcpy(gmt, text, length - 5);
    memcpy(gmt + length - 5, "GMT", 3);
    if (!s3_time_parse_http(gmt, length - 2, ms)) return false;
    /* 19:36:42 +0200 is 17:36:42 GMT. */
    *ms -= (text[length - 5] == '+' ? 1 : -1) * (int64_t)minutes * 60 * 1000;
    return true;
}

/* Appends VALUE (LENGTH bytes) without the spaces and tabs around it. */
static void append_trimmed(struct byte_buffer *out, const char *value, size_t length) {
    size_t start = 0;
    while (start < length && is_space(value[start]))
        start++;
    while (length > start && is_space(value[length - 1]))
        length--;
    byte_buffer_append(out, value + start, length - start);
}

/* An x-amz-* header: its name lower-cased (in an arena) and its place in the request. */
struct amz_header {
    const char *name;
    size_t name_length;
    size_t index;
};

static int compare_amz_headers(const void *left, const void *right) {
    const struct amz_header *a = left;
    const struct amz_header *b = right;
    int order = compare_spans(a->name, a->name_length, b->name, b->name_length);
    if (order != 0) return order;
    return a->index < b->index ? -1 : a->index > b->index ? 1 : 0;
}

/* Appends CanonicalizedAmzHeaders: "name:value\n" for every x-amz-* header, the name
 * lower-cased, sorted by name, the value trimmed, the values of a repeated header joined
 * by ',' in the order they came. */
static void append_amz_headers(struct byte_buffer *out, const struct s3_request_view *request) {
    size_t count = 0;
    size_t name_bytes = 0;
    for (size_t i = 0; i < request->header_count; i++) {
        const struct s3_header *header = &request->headers[i];
        if (header->name_length >= 6 && strncasecmp(header->name, "x-amz-", 6) == 0) {
            count++;
            name_bytes += header->name_length;
        }
    }
    if (count == 0) return;
    struct amz_header *headers = calloc(count, sizeof(*headers));
    char *names = malloc(name_bytes);
    if (headers == NULL || names == NULL) {
        out->failed = true;
        free(headers);
        free(names);
        return;
    }
    size_t taken = 0;
    char *next_name = names;
    for (size_t i = 0; i < request->header_count; i++) {
        const struct s3_header *header = &request->headers[i];
        if (header->name_length < 6 || strncasecmp(header->name, "x-amz-", 6) != 0) continue;
        for (size_t c = 0; c < header->name_length; c++)
            next_name[c] = (char)tolower((unsigned char)header->name[c]);
        headers[taken++] = (struct amz_header){next_name, header->name_length, i};
        next_name += header->name_length;
    }
    qsort(headers, count, sizeof(*headers), compare_amz_headers);
    for (size_t i = 0; i < count; i++) {
        bool repeated = i > 0 && compare_spans(headers[i - 1].name, headers[i - 1].name_length,
                                               headers[i].name, headers[i].name_length) == 0;
        if (repeated) {
            byte_buffer_append(out, ",", 1);
        } else {
            if (i > 0) byte_buffer_append(out, "\n", 1);
            byte_buffer_append(out, headers[i].name, headers[i].name_length);
            byte_buffer_append(out, ":", 1);
        }
        const struct s3_header *header = &request->headers[headers[i].index];
        append_trimmed(out, header->value, header->value_length);
    }
    byte_buffer_append(out, "\n", 1);
    free(headers);
    free(names);
}

/* A sub-resource of the query: its name and value decoded (in an arena), whether it was
 * sent with '=', and its place in the query. */
struct subresource {
    const char *name;
    size_t name_length;
    const char *value;
    size_t value_length;
    bool has_equals;
    size_t index;
};

static int compare_subresources(const void *left, const void *right) {
    const struct subresource *a = left;
    const struct subresource *b = right;
    int order = compare_spans(a->name, a->name_length, b->name, b->name_length);
    if (order != 0) return order;
    return a->index < b->index ? -1 : a->index > b->index ? 1 : 0;
}

/* Appends the sub-resources of RAW_QUERY: those named in V2_SUBRESOURCES (names matched
 * percent-decoded, as the front end reads them), sorted by name (repeats in the order
 * sent), "?name=value&name" with the values percent-decoded. A sub-resource sent with an
 * empty value ("uploads=") is "name=" unless DROP_EMPTY_EQUALS, then "name": signers
 * differ on this (botocore signs what was sent, the Go SDKs leave '=' out), so the
 * caller tries both; *AMBIGUOUS says whether the two differ. False on bad
 * percent-encoding of a sub-resource's value. */
static bool append_subresources(struct byte_buffer *out, const char *raw_query, size_t length,
                                bool drop_empty_equals, bool *ambiguous) {
    *ambiguous = false;
    struct byte_buffer arena = BYTE_BUFFER_INIT;
    struct byte_buffer offsets = BYTE_BUFFER_INIT; /* size_t quintuples into the arena */
    size_t offset = 0;
    struct query_part part;
    bool ok = true;
    for (size_t index = 0; ok && next_query_part(raw_query, length, &offset, &part); index++) {
        char name[MAX_SUBRESOURCE_NAME];
        if (part.name_length >= sizeof(name)) continue; /* longer than any sub-resource */
        memcpy(name, part.name, part.name_length);
        long name_length = s3_percent_decode(name, part.name_length, true);
        if (name_length < 0 || !is_v2_subresource(name, (size_t)name_length)) continue;
        size_t name_start = arena.length;
        byte_buffer_append(&arena, name, (size_t)name_length);
        size_t value_start = arena.length;
        if (part.value_length > 0 && byte_buffer_reserve(&arena, part.value_length)) {
            char *value = (char *)arena.data + value_start;
            memcpy(value, part.value, part.value_length);
            long value_length = s3_percent_decode(value, part.value_length, true);
            if (value_length < 0)
                ok = false;
            else
                arena.length += (size_t)value_length;
        }
        size_t value_length = arena.length - value_start;
        if (part.value != NULL && value_length == 0) *ambiguous = true;
        size_t spans[5] = {name_start, value_start, value_length, part.value != NULL, index};
        byte_buffer_append(&offsets, spans, sizeof(spans));
    }
    size_t count = offsets.length / (5 * sizeof(size_t));
    struct subresource *entries = NULL;
    if (ok && count > 0 && !arena.failed && !offsets.failed)
        entries = calloc(count, sizeof(*entries));
    if (ok && count > 0 && entries == NULL) out->failed = true;
    if (entries != NULL) {
        for (size_t i = 0; i < count; i++) {
            size_t spans[5];
            memcpy(spans, offsets.data + i * sizeof(spans), sizeof(spans));
            entries[i] = (struct subresource){(const char *)arena.data + spans[0],
                                              spans[1] - spans[0],
                                              (const char *)arena.data + spans[1],
                                              spans[2],
                                              spans[3] != 0,
                                              spans[4]};
        }
        qsort(entries, count, sizeof(*entries), compare_subresources);
        for (size_t i = 0; i < count; i++) {
            byte_buffer_append(out, i == 0 ? "?" : "&", 1);
            byte_buffer_append(out, entries[i].name, entries[i].name_length);
            if (entries[i].value_length > 0 || (entries[i].has_equals && !drop_empty_equals)) {
                byte_buffer_append(out, "=", 1);
                byte_buffer_append(out, entries[i].value, entries[i].value_length);
            }
        }
        free(entries);
    }
    byte_buffer_free(&arena);
    byte_buffer_free(&offsets);
    return ok;
}

/* What a Version 2 request claims: from "Authorization: AWS AccessKeyId:Signature", or
 * from the AWSAccessKeyId, Signature and Expires parameters. */
struct sigv2_claim {
    char access_key[sizeof(((struct s3_auth *)NULL)->access_key)];
    size_t access_key_length;
    bool access_key_too_long;
    char signature[MAX_V2_SIGNATURE + 1]; /* base64, as sent (decoded from the query) */
    size_t signature_length;
    const char *date; /* the StringToSign's Date (or Expires) line */
    size_t date_length;
    char expires[24];
    int64_t request_ms; /* the date (header form) or Expires (presigned), in ms */
};

/* Reads "Authorization: AWS AccessKeyId:Signature" and the request's date. */
static bool parse_v2_header(const struct s3_request_view *request, struct sigv2_claim *claim,
                            struct s3_error *error) {
    size_t count = 0;
    const struct s3_header *authorization = find_header(request, "authorization", &count);
    const char *value = authorization->value;
    const char *end = value + authorization->value_length;
    while (value < end && is_space(*value))
        value++;
    value += 3; /* "AWS", as classify() found */
    while (value < end && is_space(*value))
        value++;
    while (end > value && is_space(end[-1]))
        end--;
    const char *colon = NULL;
    for (const char *c = value; c < end; c++) {
        if (is_space(*c)) return fail(error, 400, "InvalidArgument", V2_HEADER_INVALID);
        if (*c == ':') colon = c; /* the last one: a signature has none */
    }
    if (colon == NULL || colon == value || colon + 1 == end)
        return fail(error, 400, "InvalidArgument", V2_HEADER_INVALID);
    size_t key_length = (size_t)(colon - value);
    if (key_length >= sizeof(claim->access_key)) {
        claim->access_key_too_long = true;
    } else {
        memcpy(claim->access_key, value, key_length);
        claim->access_key[key_length] = '\0';
        claim->access_key_length = key_length;
    }
    size_t signature_length = (size_t)(end - colon - 1);
    if (signature_length <= MAX_V2_SIGNATURE) { /* a longer one cannot match */
        memcpy(claim->signature, colon + 1, signature_length);
        claim->signature_length = signature_length;
    }

    /* The date: x-amz-date when there is one (then the Date line is empty and x-amz-date
     * is signed among the x-amz-* headers), else Date. */
    const struct s3_header *date = find_header(request, "x-amz-date", &count);
    bool amz_date = date != NULL;
    if (!amz_date) date = find_header(request, "date", &count);
    if (date == NULL || count > 1) return fail(error, 403, "AccessDenied", NO_DATE);
    const char *text = date->value;
    size_t length = date->value_length;
    while (length > 0 && is_space(*text)) {
        text++;
        length--;
    }
    while (length > 0 && is_space(text[length - 1]))
        length--;
    if (!parse_v2_date(text, length, &claim->request_ms))
        return fail(error, 403, "AccessDenied", NO_DATE);
    claim->date = amz_date ? "" : text;
    claim->date_length = amz_date ? 0 : length;
    return true;
}

/* Reads the AWSAccessKeyId, Signature and Expires parameters. */
static bool parse_v2_presigned(const struct s3_request_view *request, struct sigv2_claim *claim,
                               struct s3_error *error) {
    const char *query = request->raw_query;
    size_t length = request->raw_query_length;
    long key_length =
        s3_query_get(query, length, "AWSAccessKeyId", claim->access_key, sizeof(claim->access_key));
    long signature_length =
        s3_query_get(query, length, "Signature", claim->signature, sizeof(claim->signature));
    long expires_length =
        s3_query_get(query, length, "Expires", claim->expires, sizeof(claim->expires));
    if (key_length == -1 || signature_length == -1 || expires_length == -1)
        return fail(error, 403, "AccessDenied",
                    "Query-string authentication requires the Signature, Expires and "
                    "AWSAccessKeyId parameters");
    if (key_length == -2 || key_length == 0) {
        claim->access_key_too_long = true; /* unknown either way */
    } else {
        claim->access_key_length = (size_t)key_length;
    }
    if (signature_length >= 0) { /* -2, too long: it cannot match */
        /* A '+' of the base64 sent unencoded reads as ' ' (base64 has no spaces). */
        for (long i = 0; i < signature_length; i++)
            if (claim->signature[i] == ' ') claim->signature[i] = '+';
        claim->signature_length = (size_t)signature_length;
    }
    int64_t seconds = 0;
    bool valid = expires_length > 0;
    for (long i = 0; valid && i < expires_length; i++) {
        char c = claim->expires[i];
        valid = c >= '0' && c <= '9' && seconds <= (INT64_MAX / 1000 - 9) / 10;
        if (valid) seconds = seconds * 10 + (c - '0');
    }
    if (!valid)
        return fail(error, 403, "AccessDenied",
                    "Invalid date (should be seconds since epoch): Expires.");
    claim->date = claim->expires;
    claim->date_length = (size_t)expires_length;
    claim->request_ms = seconds * 1000;
    return true;
}

/* Verifies a Signature Version 2 request (the header form, or PRESIGNED). The
 * StringToSign is VERB "\n" Content-MD5 "\n" Content-Type "\n" Date (or Expires) "\n"
 * CanonicalizedAmzHeaders CanonicalizedResource, with CanonicalizedResource =
 * ["/" virtual bucket] raw path [sub-resources]; the signature is its base64
 * HMAC-SHA1 under the secret key, compared as text (in constant time), so only the
 * canonical base64 of the right MAC matches. */
static bool authenticate_v2(const struct s3_request_view *request, bool presigned, int64_t now_ms,
                            s3_secret_lookup lookup, void *context, struct s3_auth *auth,
                            struct s3_error *error) {
    struct sigv2_claim claim;
    memset(&claim, 0, sizeof(claim));
    if (!(presigned ? parse_v2_presigned(request, &claim, error)
                    : parse_v2_header(request, &claim, error)))
        return false;
    const char *secret = claim.access_key_too_long
                             ? NULL
                             : lookup(context, claim.access_key, claim.access_key_length);
    if (secret == NULL)
        return fail(error, 403, "InvalidAccessKeyId",
                    "The AWS Access Key Id you provided does not exist in our records.");
    if (presigned) {
        if (now_ms > claim.request_ms)
            return fail(error, 403, "AccessDenied", "Request has expired");
    } else {
        int64_t skew =
            now_ms > claim.request_ms ? now_ms - claim.request_ms : claim.request_ms - now_ms;
        if (skew > S3_MAX_SKEW_MS)
            return fail(error, 403, "RequestTimeTooSkewed",
                        "The difference between the request time and the current time is too "
                        "large.");
    }

    struct byte_buffer text = BYTE_BUFFER_INIT;
    byte_buffer_append_text(&text, request->method);
    byte_buffer_append(&text, "\n", 1);
    static const char *const POSITIONAL[] = {"content-md5", "content-type"};
    for (size_t i = 0; i < 2; i++) {
        size_t count = 0;
        const struct s3_header *header = find_header(request, POSITIONAL[i], &count);
        if (header != NULL) append_trimmed(&text, header->value, header->value_length);
        byte_buffer_append(&text, "\n", 1);
    }
    append_trimmed(&text, claim.date, claim.date_length);
    byte_buffer_append(&text, "\n", 1);
    append_amz_headers(&text, request);
    if (request->virtual_bucket_length > 0) {
        byte_buffer_append(&text, "/", 1);
        byte_buffer_append(&text, request->virtual_bucket, request->virtual_bucket_length);
    }
    if (request->raw_path_length > 0)
        byte_buffer_append(&text, request->raw_path, request->raw_path_length);
    else
        byte_buffer_append(&text, "/", 1);
    /* A path-style request for a bucket itself ("/bucket") is signed as "/bucket" by the
     * guide's rule and as "/bucket/" by botocore (as the virtual-hosted form would be):
     * both name the bucket, and both are tried. */
    bool bucket_only = request->virtual_bucket_length == 0 && request->raw_path_length > 1 &&
                       memchr(request->raw_path + 1, '/', request->raw_path_length - 1) == NULL;
    size_t before_slash = text.length;
    bool matched = false;
    bool ok = true;
    for (int slash = 0; slash < (bucket_only ? 2 : 1) && ok && !matched; slash++) {
        for (int drop = 0; drop < 2 && ok && !matched; drop++) {
            text.length = before_slash;
            if (slash == 1) byte_buffer_append(&text, "/", 1);
            bool ambiguous = false;
            if (!append_subresources(&text, request->raw_query, request->raw_query_length,
                                     drop == 1, &ambiguous)) {
                ok = fail(error, 400, "InvalidArgument",
                          "The query string is not valid percent-encoding.");
                break;
            }
            if (text.failed) {
                ok = fail(error, 503, "SlowDown", "The server is out of memory.");
                break;
            }
            unsigned char computed[SHA1_LENGTH];
            hmac_sha1(secret, text.data, text.length, computed);
            char expected[V2_SIGNATURE_LENGTH + 1];
            base64_encode(computed, SHA1_LENGTH, expected);
            matched = claim.signature_length == V2_SIGNATURE_LENGTH &&
                      CRYPTO_memcmp(expected, claim.signature, V2_SIGNATURE_LENGTH) == 0;
            if (!ambiguous) break;
        }
    }
    byte_buffer_free(&text);
    if (!ok) return false;
    if (!matched)
        return fail(error, 403, "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you "
                    "provided. Check your key and signing method.");
    auth->anonymous = false;
    memcpy(auth->access_key, claim.access_key, claim.access_key_length);
    auth->access_key[claim.access_key_length] = '\0';
    auth->payload = S3_PAYLOAD_UNSIGNED;
    return true;
}

bool s3_authenticate(const struct s3_request_view *request, int64_t now_ms, s3_secret_lookup lookup,
                     void *context, struct s3_auth *auth, struct s3_error *error) {
    memset(auth, 0, sizeof(*auth));
    struct sigv4_claim *claim = calloc(1, sizeof(*claim));
    struct signed_headers *signed_ = calloc(1, sizeof(*signed_));
    struct byte_buffer canonical = BYTE_BUFFER_INIT;
    bool ok = false;
    if (claim == NULL || signed_ == NULL) {
        fail(error, 503, "SlowDown", "The server is out of memory.");
        goto done;
    }
    enum auth_form form = FORM_NONE;
    if (!classify(request, &form, claim, error)) goto done;
    if (form == FORM_NONE) {
        auth->anonymous = true;
        ok = true;
        goto done;
    }
    if (form == FORM_V2_HEADER || form == FORM_V2_PRESIGNED) {
        ok = authenticate_v2(request, form == FORM_V2_PRESIGNED, now_ms, lookup, context, auth,
                             error);
        goto done;
    }
    const char *malformed = form == FORM_PRESIGNED ? "AuthorizationQueryParametersError"
                                                   : "AuthorizationHeaderMalformed";

    /* The date: X-Amz-Date (a parameter of a presigned URL, else the header). */
    if (form == FORM_HEADER) {
        size_t count = 0;
        const struct s3_header *date = find_header(request, "x-amz-date", &count);
        if (date == NULL || count > 1 || date->value_length != AMZ_DATE_LENGTH) {
            fail(error, 403, "AccessDenied",
                 "AWS authentication requires a valid Date or x-amz-date header");
            goto done;
        }
        memcpy(claim->amz_date, date->value, AMZ_DATE_LENGTH);
        claim->amz_date[AMZ_DATE_LENGTH] = '\0';
    }
    int64_t request_ms = 0;
    if (!parse_amz_date(claim->amz_date, strlen(claim->amz_date), &request_ms)) {
        if (form == FORM_PRESIGNED)
            fail(error, 400, malformed, "X-Amz-Date must be in the ISO8601 Long Format.");
        else
            fail(error, 403, "AccessDenied",
                 "AWS authentication requires a valid Date or x-amz-date header");
        goto done;
    }

    /* The credential scope. */
    struct credential_scope scope;
    if (!split_credential(claim->credential, claim->credential_length, &scope) ||
        scope.access_key_length == 0 || scope.region_length == 0 ||
        scope.region_length > MAX_REGION_LENGTH) {
        fail(error, 400, malformed,
             "The credential is malformed: expecting \"<AccessKey>/<yyyymmdd>/<region>/s3/"
             "aws4_request\".");
        goto done;
    }
    if (memcmp(scope.date, claim->amz_date, 8) != 0) {
        fail(error, 400, malformed,
             "Invalid credential date: the date is not the same as X-Amz-Date.");
        goto done;
    }
    if (!same_text(scope.service, scope.service_length, "s3") ||
        !same_text(scope.terminator, scope.terminator_length, "aws4_request")) {
        fail(error, 400, malformed,
             "The credential scope must name the service \"s3\" and end in \"aws4_request\".");
        goto done;
    }
    if (scope.access_key_length >= sizeof(auth->access_key)) {
        fail(error, 403, "InvalidAccessKeyId",
             "The AWS Access Key Id you provided does not exist in our records.");
        goto done;
    }
    if (!parse_signed_headers(claim->signed_headers, claim->signed_headers_length, signed_)) {
        fail(error, 400, malformed, "SignedHeaders is not a list of header names.");
        goto done;
    }
    bool host_signed = false;
    for (size_t i = 0; i < signed_->count; i++)
        if (strcmp(signed_->names[i], "host") == 0) host_signed = true;
    if (!host_signed) {
        fail(error, 400, malformed, "The host header must be signed.");
        goto done;
    }
    unsigned char claimed[SHA256_LENGTH];
    if (!decode_sha256_hex(claim->signature, claim->signature_length, claimed)) {
        fail(error, 400, malformed, "The signature must be 64 hexadecimal digits.");
        goto done;
    }

    /* The payload. */
    const char *hash_text = "UNSIGNED-PAYLOAD";
    size_t hash_length = strlen(hash_text);
    if (form == FORM_HEADER) {
        if (!read_payload_hash(request, auth, &hash_text, &hash_length, error)) goto done;
    } else {
        auth->payload = S3_PAYLOAD_UNSIGNED;
    }

    /* Who, and when. */
    const char *secret = lookup(context, claim->credential, scope.access_key_length);
    if (secret == NULL) {
        fail(error, 403, "InvalidAccessKeyId",
             "The AWS Access Key Id you provided does not exist in our records.");
        goto done;
    }
    if (!check_time(claim, request_ms, now_ms, error)) goto done;

    /* The canonical request, the string to sign, the signature. */
    byte_buffer_append_text(&canonical, request->method);
    byte_buffer_append(&canonical, "\n", 1);
    if (!append_canonical_uri(&canonical, request->raw_path, request->raw_path_length)) {
        fail(error, 400, "InvalidArgument", "The request path is not valid percent-encoding.");
        goto done;
    }
    byte_buffer_append(&canonical, "\n", 1);
    if (!append_canonical_query(&canonical, request->raw_query, request->raw_query_length,
                                form == FORM_PRESIGNED)) {
        fail(error, 400, "InvalidArgument", "The query string is not valid percent-encoding.");
        goto done;
    }
    byte_buffer_append(&canonical, "\n", 1);
    if (!append_canonical_headers(&canonical, request, signed_)) {
        fail(error, 403, "SignatureDoesNotMatch",
             "A header named in SignedHeaders is not in the request.");
        goto done;
    }
    byte_buffer_append(&canonical, hash_text, hash_length);
    if (canonical.failed) {
        fail(error, 503, "SlowDown", "The server is out of memory.");
        goto done;
    }
    unsigned char canonical_hash[SHA256_LENGTH];
    sha256(canonical.data, canonical.length, canonical_hash);
    char canonical_hex[SHA256_HEX_LENGTH + 1];
    s3_hex(canonical_hash, SHA256_LENGTH, canonical_hex);

    memcpy(auth->amz_date, claim->amz_date, AMZ_DATE_LENGTH + 1);
    size_t scope_length = claim->credential_length - scope.access_key_length - 1;
    memcpy(auth->scope, scope.date, scope_length);
    auth->scope[scope_length] = '\0';
    char string_to_sign[256];
    int sts_length = snprintf(string_to_sign, sizeof(string_to_sign), "%s\n%s\n%s\n%s", ALGORITHM,
                              auth->amz_date, auth->scope, canonical_hex);
    derive_signing_key(secret, scope.date, 8, scope.region, scope.region_length, auth->signing_key);
    unsigned char computed[SHA256_LENGTH];
    hmac_sha256(auth->signing_key, SHA256_LENGTH, string_to_sign, (size_t)sts_length, computed);
    if (CRYPTO_memcmp(computed, claimed, SHA256_LENGTH) != 0) {
        fail(error, 403, "SignatureDoesNotMatch",
             "The request signature we calculated does not match the signature you provided. "
             "Check your key and signing method.");
        goto done;
    }
    if (!every_amz_header_signed(request, signed_)) {
        fail(error, 403, "AccessDenied",
             "There were headers present in the request which were not signed");
        goto done;
    }
    s3_hex(computed, SHA256_LENGTH, auth->seed_signature);
    memcpy(auth->access_key, claim->credential, scope.access_key_length);
    auth->access_key[scope.access_key_length] = '\0';
    ok = true;

done:
    if (!ok) OPENSSL_cleanse(auth, sizeof(*auth)); /* no half-filled identity or key */
    byte_buffer_free(&canonical);
    free(claim);
    free(signed_);
    return ok;
}

/* ---- aws-chunked ---------------------------------------------------------------------- */

#define CHUNKED_LINE_MAX     4096 /* longest chunk header or trailer line, CRLF excluded */
#define CHUNKED_MAX_TRAILERS 8
#define CHUNK_SIZE_DIGITS    15 /* at most 2^60 - 1 bytes a chunk: sums cannot overflow */

enum chunked_state {
    CHUNKED_CHUNK_LINE,   /* reading "size[;chunk-signature=sig]\r\n" */
    CHUNKED_DATA,         /* passing a chunk's bytes to the sink */
    CHUNKED_DATA_CR,      /* the CR after a chunk's bytes */
    CHUNKED_DATA_LF,      /* the LF after it */
    CHUNKED_TRAILER_LINE, /* after the final chunk: trailer lines up to an empty one */
    CHUNKED_COMPLETE,
    CHUNKED_FAILED,
};

struct chunked_trailer {
    char *name; /* lower case */
    char *value;
};

struct s3_chunked {
    struct s3_auth auth;
    enum chunked_state state;
    bool signed_chunks;   /* chunk lines carry chunk-signature= */
    bool unverified;      /* an anonymous request: signatures are read, not checked */
    bool has_trailers;    /* trailer lines may follow the final chunk */
    bool signed_trailers; /* ... ending with x-amz-trailer-signature */
    char line[CHUNKED_LINE_MAX + 1];
    size_t line_length;
    uint64_t remaining; /* bytes of the current chunk still to come */
    bool final_chunk;   /* the current chunk is the empty last one */
    EVP_MD_CTX *chunk_hash;
    unsigned char claimed_signature[SHA256_LENGTH];
    char previous_signature[SHA256_HEX_LENGTH + 1];
    uint64_t decoded;
    struct byte_buffer trailer_text; /* the trailer lines as signed: "name:value\n" each */
    struct chunked_trailer trailers[CHUNKED_MAX_TRAILERS];
    size_t trailer_count;
    bool trailer_signature_checked;
    bool trailer_lines_started;
    struct s3_error error;
};

struct s3_chunked *s3_chunked_create(const struct s3_auth *auth) {
    struct s3_chunked *decoder = calloc(1, sizeof(*decoder));
    if (decoder == NULL) return NULL;
    decoder->chunk_hash = EVP_MD_CTX_new();
    if (decoder->chunk_hash == NULL) {
        free(decoder);
        return NULL;
    }
    decoder->auth = *auth;
    decoder->state = CHUNKED_CHUNK_LINE;
    decoder->unverified = auth->anonymous;
    decoder->signed_chunks = auth->payload == S3_PAYLOAD_STREAMING_SIGNED ||
                             auth->payload == S3_PAYLOAD_STREAMING_SIGNED_TRAILER;
    decoder->has_trailers = auth->payload == S3_PAYLOAD_STREAMING_SIGNED_TRAILER ||
                            auth->payload == S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    decoder->signed_trailers = auth->payload == S3_PAYLOAD_STREAMING_SIGNED_TRAILER;
    memcpy(decoder->previous_signature, auth->seed_signature, sizeof(decoder->previous_signature));
    decoder->previous_signature[SHA256_HEX_LENGTH] = '\0';
    if (!decoder->signed_chunks && !decoder->has_trailers) {
        /* Not a streaming payload: nothing can decode it. */
        decoder->state = CHUNKED_FAILED;
        decoder->error = (struct s3_error){
            400, "InvalidRequest", "The payload is not aws-chunked (x-amz-content-sha256)."};
    }
    return decoder;
}

void s3_chunked_destroy(struct s3_chunked *decoder) {
    if (decoder == NULL) return;
    EVP_MD_CTX_free(decoder->chunk_hash);
    for (size_t i = 0; i < decoder->trailer_count; i++) {
        free(decoder->trailers[i].name);
        free(decoder->trailers[i].value);
    }
    byte_buffer_free(&decoder->trailer_text);
    OPENSSL_cleanse(&decoder->auth, sizeof(decoder->auth));
    free(decoder);
}

const char *s3_chunked_trailer(const struct s3_chunked *decoder, const char *name) {
    if (decoder->state != CHUNKED_COMPLETE) return NULL;
    for (size_t i = 0; i < decoder->trailer_count; i++)
        if (strcmp(decoder->trailers[i].name, name) == 0) return decoder->trailers[i].value;
    return NULL;
}

uint64_t s3_chunked_decoded(const struct s3_chunked *decoder) {
    return decoder->decoded;
}

static bool chunked_fail(struct s3_chunked *decoder, int status, const char *code,
                         const char *message) {
    decoder->state = CHUNKED_FAILED;
    decoder->error = (struct s3_error){status, code, message};
    return false;
}

static bool framing_error(struct s3_chunked *decoder, const char *message) {
    return chunked_fail(decoder, 400, "InvalidRequest", message);
}

/* HMAC of "<KIND>\n<date>\n<scope>\n<previous signature>\n<HASH_LINES>" with the signing
 * key, compared with CLAIMED in constant time; on a match it becomes the previous
 * signature. */
static bool check_chained_signature(struct s3_chunked *decoder, const char *kind,
                                    const char *hash_lines, const unsigned char *claimed) {
    if (decoder->unverified) return true; /* no key to check it with (docs/s3.md) */
    struct byte_buffer text = BYTE_BUFFER_INIT;
    byte_buffer_append_text(&text, kind);
    byte_buffer_append(&text, "\n", 1);
    byte_buffer_append_text(&text, decoder->auth.amz_date);
    byte_buffer_append(&text, "\n", 1);
    byte_buffer_append_text(&text, decoder->auth.scope);
    byte_buffer_append(&text, "\n", 1);
    byte_buffer_append_text(&text, decoder->previous_signature);
    byte_buffer_append(&text, "\n", 1);
    byte_buffer_append_text(&text, hash_lines);
    if (text.failed) {
        byte_buffer_free(&text);
        return chunked_fail(decoder, 503, "SlowDown", "The server is out of memory.");
    }
    unsigned char computed[SHA256_LENGTH];
    hmac_sha256(decoder->auth.signing_key, SHA256_LENGTH, text.data, text.length, computed);
    byte_buffer_free(&text);
    if (CRYPTO_memcmp(computed, claimed, SHA256_LENGTH) != 0)
        return chunked_fail(decoder, 403, "SignatureDoesNotMatch",
                            "The chunk signature we calculated does not match the signature "
                            "you provided.");
    s3_hex(computed, SHA256_LENGTH, decoder->previous_signature);
    return true;
}

/* Checks the signature of the chunk whose bytes have all been hashed. */
static bool check_chunk_signature(struct s3_chunked *decoder) {
    if (!decoder->signed_chunks) return true;
    unsigned char digest[SHA256_LENGTH];
    unsigned int digest_length = 0;
    if (EVP_DigestFinal_ex(decoder->chunk_hash, digest, &digest_length) != 1)
        return chunked_fail(decoder, 500, "InternalError", "SHA-256 failed.");
    char hash_lines[2 * SHA256_HEX_LENGTH + 2];
    memcpy(hash_lines, EMPTY_SHA256_HEX, SHA256_HEX_LENGTH);
    hash_lines[SHA256_HEX_LENGTH] = '\n';
    s3_hex(digest, SHA256_LENGTH, hash_lines + SHA256_HEX_LENGTH + 1);
    return check_chained_signature(decoder, "AWS4-HMAC-SHA256-PAYLOAD", hash_lines,
                                   decoder->claimed_signature);
}

/* Parses a chunk header line: "hex-size;chunk-signature=<64 hex>" for signed payloads,
 * "hex-size" for STREAMING-UNSIGNED-PAYLOAD-TRAILER. */
static bool parse_chunk_line(struct s3_chunked *decoder) {
    static const char SIGNATURE_KEY[] = ";chunk-signature=";
    const char *line = decoder->line;
    size_t length = decoder->line_length;
    size_t digits = 0;
    uint64_t size = 0;
    while (digits < length && hex_value((unsigned char)line[digits]) >= 0) {
        if (digits == CHUNK_SIZE_DIGITS)
            return framing_error(decoder, "A chunk size is too large.");
        size = size << 4 | (uint64_t)hex_value((unsigned char)line[digits]);
        digits++;
    }
    if (digits == 0) return framing_error(decoder, "A chunk does not start with its size in hex.");
    if (decoder->signed_chunks) {
        size_t key_length = sizeof(SIGNATURE_KEY) - 1;
        if (length - digits != key_length + SHA256_HEX_LENGTH ||
            memcmp(line + digits, SIGNATURE_KEY, key_length) != 0 ||
            !decode_sha256_hex(line + digits + key_length, SHA256_HEX_LENGTH,
                               decoder->claimed_signature))
            return framing_error(decoder, "A chunk header lacks its chunk-signature.");
        if (EVP_DigestInit_ex(decoder->chunk_hash, EVP_sha256(), NULL) != 1)
            return chunked_fail(decoder, 500, "InternalError", "SHA-256 failed.");
    } else if (digits != length) {
        return framing_error(decoder, "A chunk header has more than its size.");
    }
    decoder->remaining = size;
    decoder->final_chunk = size == 0;
    if (size > 0) {
        decoder->state = CHUNKED_DATA;
        return true;
    }
    /* The final, empty chunk: its signature now, then the trailer part. */
    if (!check_chunk_signature(decoder)) return false;
    decoder->state = CHUNKED_TRAILER_LINE;
    return true;
}

/* Handles one line after the final chunk: a trailer "name:value", the trailer signature,
 * or the empty line that ends the body. */
static bool parse_trailer_line(struct s3_chunked *decoder, bool *complete) {
    static const char SIGNATURE_NAME[] = "x-amz-trailer-signature";
    const char *line = decoder->line;
    size_t length = decoder->line_length;
    if (length == 0) {
        if (decoder->signed_trailers && !decoder->trailer_lines_started) {
            /* Some clients end the empty final chunk with CRLF before the trailers. */
            decoder->trailer_lines_started = true;
            return true;
        }
        if (decoder->signed_trailers && !decoder->trailer_signature_checked)
            return framing_error(decoder, "The trailers end without x-amz-trailer-signature.");
        decoder->state = CHUNKED_COMPLETE;
        *complete = true;
        return true;
    }
    decoder->trailer_lines_started = true;
    if (!decoder->has_trailers)
        return framing_error(decoder, "The final chunk is not followed by an empty line.");
    if (decoder->trailer_signature_checked)
        return framing_error(decoder, "A trailer follows x-amz-trailer-signature.");
    const char *colon = memchr(line, ':', length);
    if (colon == NULL || colon == line)
        return framing_error(decoder, "A trailer line is not \"name:value\".");
    size_t name_length = (size_t)(colon - line);
    for (size_t i = 0; i < name_length; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c <= ' ' || c >= 127) return framing_error(decoder, "A trailer name is not a token.");
    }
    const char *value = colon + 1;
    size_t value_length = length - name_length - 1;
    if (same_text_nocase(line, name_length, SIGNATURE_NAME)) {
        unsigned char claimed[SHA256_LENGTH];
        if (!decoder->signed_trailers || !decode_sha256_hex(value, value_length, claimed))
            return framing_error(decoder, "x-amz-trailer-signature is not expected or malformed.");
        unsigned char digest[SHA256_LENGTH];
        sha256(decoder->trailer_text.data, decoder->trailer_text.length, digest);
        char hash_line[SHA256_HEX_LENGTH + 1];
        s3_hex(digest, SHA256_LENGTH, hash_line);
        if (!check_chained_signature(decoder, "AWS4-HMAC-SHA256-TRAILER", hash_line, claimed))
            return false;
        decoder->trailer_signature_checked = true;
        return true;
    }
    if (decoder->trailer_count == CHUNKED_MAX_TRAILERS)
        return framing_error(decoder, "Too many trailers.");
    byte_buffer_append(&decoder->trailer_text, line, length);
    byte_buffer_append(&decoder->trailer_text, "\n", 1);
    while (value_length > 0 && is_space(*value)) {
        value++;
        value_length--;
    }
    while (value_length > 0 && is_space(value[value_length - 1]))
        value_length--;
    struct chunked_trailer *trailer = &decoder->trailers[decoder->trailer_count];
    trailer->name = strndup(line, name_length);
    trailer->value = strndup(value, value_length);
    if (trailer->name == NULL || trailer->value == NULL || decoder->trailer_text.failed) {
        free(trailer->name);
        free(trailer->value);
        return chunked_fail(decoder, 503, "SlowDown", "The server is out of memory.");
    }
    for (char *c = trailer->name; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);
    decoder->trailer_count++;
    return true;
}

/* Adds BYTE to the line being read; at its LF (which must follow a CR) the line is
 * complete: returns true and sets *ENDED. */
static bool take_line_byte(struct s3_chunked *decoder, unsigned char byte, bool *ended) {
    *ended = false;
    if (byte == '\n') {
        if (decoder->line_length == 0 || decoder->line[decoder->line_length - 1] != '\r')
            return framing_error(decoder, "A line of the aws-chunked body does not end in CRLF.");
        decoder->line_length--;
        decoder->line[decoder->line_length] = '\0';
        *ended = true;
        return true;
    }
    if (decoder->line_length == CHUNKED_LINE_MAX)
        return framing_error(decoder, "A line of the aws-chunked body is too long.");
    decoder->line[decoder->line_length++] = (char)byte;
    return true;
}

bool s3_chunked_feed(struct s3_chunked *decoder, const unsigned char *data, size_t length,
                     s3_chunked_sink sink, void *context, bool *complete, struct s3_error *error) {
    *complete = decoder->state == CHUNKED_COMPLETE;
    size_t i = 0;
    while (i < length || decoder->state == CHUNKED_FAILED) {
        switch (decoder->state) {
        case CHUNKED_FAILED:
            *complete = false;
            *error = decoder->error;
            return false;
        case CHUNKED_COMPLETE:
            framing_error(decoder, "Bytes follow the end of the aws-chunked body.");
            continue;
        case CHUNKED_DATA: {
            size_t take = length - i;
            if (take > decoder->remaining) take = (size_t)decoder->remaining;
            if (decoder->signed_chunks &&
                EVP_DigestUpdate(decoder->chunk_hash, data + i, take) != 1) {
                chunked_fail(decoder, 500, "InternalError", "SHA-256 failed.");
                continue;
            }
            decoder->remaining -= take;
            decoder->decoded += take;
            if (!sink(context, data + i, take)) {
                chunked_fail(decoder, 0, NULL, NULL);
                continue;
            }
            i += take;
            if (decoder->remaining == 0) decoder->state = CHUNKED_DATA_CR;
            break;
        }
        case CHUNKED_DATA_CR:
            if (data[i++] != '\r') {
                framing_error(decoder, "A chunk is longer than its size.");
                continue;
            }
            decoder->state = CHUNKED_DATA_LF;
            break;
        case CHUNKED_DATA_LF:
            if (data[i++] != '\n') {
                framing_error(decoder, "A chunk is not followed by CRLF.");
                continue;
            }
            if (!check_chunk_signature(decoder)) continue;
            decoder->state = CHUNKED_CHUNK_LINE;
            decoder->line_length = 0;
            break;
        case CHUNKED_CHUNK_LINE:
        case CHUNKED_TRAILER_LINE: {
            bool ended = false;
            if (!take_line_byte(decoder, data[i++], &ended) || !ended) break;
            bool trailer = decoder->state == CHUNKED_TRAILER_LINE;
            if (trailer ? parse_trailer_line(decoder, complete) : parse_chunk_line(decoder))
                decoder->line_length = 0;
            break;
        }
        }
    }
    return true;
}
