/* S3 object operations: PutObject, GetObject, HeadObject, DeleteObject, CopyObject and
 * the multipart upload calls (docs/s3.md). A PUT's body streams into a blob (never whole
 * in memory) and becomes visible only once it is complete and every digest the client
 * sent (x-amz-content-sha256, Content-MD5, x-amz-checksum-crc32c, aws-chunked chunk
 * signatures) has matched. */
#include "base/base64.h"
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "base/numbers.h"
#include "proto/s3/s3_internal.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Headers stored with an object and sent back with it (besides x-amz-meta-*). */
static const char *const stored_headers[] = {
    "Content-Type",     "Content-Encoding", "Content-Disposition",
    "Content-Language", "Cache-Control",    "Expires",
};
#define STORED_HEADER_COUNT (sizeof(stored_headers) / sizeof(stored_headers[0]))

#define COPY_READ_PIECE (8u * 1024 * 1024)

/* ---- attributes: the stored headers, as "name\0value\0" pairs ------------------------ */

/* Appends NAME and VALUE to ATTRIBUTES. */
static void add_attribute(struct byte_buffer *attributes, const char *name, size_t name_length,
                          const char *value) {
    byte_buffer_append(attributes, name, name_length);
    byte_buffer_append(attributes, "", 1);
    byte_buffer_append(attributes, value, strlen(value) + 1);
}

/* Builds the attributes of a new object from the request's headers into ATTRIBUTES.
 * Returns false (answered) if the user metadata is too large. */
static bool build_attributes(struct s3_request *request, struct byte_buffer *attributes) {
    const struct http_request *http = request->http;
    bool has_type = false;
    size_t user_metadata = 0;
    for (size_t i = 0; i < http->header_count; i++) {
        const char *name = http->headers[i].name;
        const char *value = http->headers[i].value;
        if (strncasecmp(name, "x-amz-meta-", 11) == 0) {
            size_t length = strlen(name);
            char lower[256];
            if (length >= sizeof(lower)) length = sizeof(lower) - 1;
            for (size_t c = 0; c < length; c++)
                lower[c] = (char)tolower((unsigned char)name[c]);
            user_metadata += length - 11 + strlen(value);
            add_attribute(attributes, lower, length, value);
            continue;
        }
        for (size_t s = 0; s < STORED_HEADER_COUNT; s++) {
            if (strcasecmp(name, stored_headers[s]) != 0) continue;
            if (s == 1) { /* Content-Encoding: aws-chunked is the transfer's, not the object's */
                char kept[512] = "";
                const char *cursor = value;
                while (*cursor) {
                    size_t length = strcspn(cursor, ",");
                    const char *start = cursor;
                    while (length > 0 && (*start == ' ' || *start == '\t')) {
                        start++;
                        length--;
                    }
                    while (length > 0 && (start[length - 1] == ' '))
                        length--;
                    if (length > 0 &&
                        !(length == 11 && strncasecmp(start, "aws-chunked", 11) == 0) &&
                        strlen(kept) + length + 2 < sizeof(kept)) {
                        if (kept[0]) strcat(kept, ",");
                        strncat(kept, start, length);
                    }
                    cursor += strcspn(cursor, ",");
                    if (*cursor == ',') cursor++;
                }
                if (kept[0])
                    add_attribute(attributes, stored_headers[s], strlen(stored_headers[s]), kept);
            } else {
                if (s == 0) has_type = true;
                add_attribute(attributes, stored_headers[s], strlen(stored_headers[s]), value);
            }
        }
    }
    if (!has_type) add_attribute(attributes, "Content-Type", 12, "binary/octet-stream");
    if (user_metadata > S3_MAX_USER_METADATA) {
        s3_object_error(request, OBJECT_ATTRIBUTES_TOO_LARGE);
        return false;
    }
    if (attributes->failed) {
        s3_object_error(request, OBJECT_NO_MEMORY);
        return false;
    }
    return true;
}

/* Calls VISIT(CONTEXT, NAME, VALUE) for each stored attribute of INFO. */
static void for_each_attribute(const struct object_info *info,
                               void (*visit)(void *context, const char *name, const char *value),
                               void *context) {
    const unsigned char *cursor = info->attributes;
    const unsigned char *end = cursor + info->attributes_length;
    while (cursor != NULL && cursor < end) {
        const char *name = (const char *)cursor;
        const unsigned char *name_end = memchr(cursor, '\0', (size_t)(end - cursor));
        if (name_end == NULL) return;
        const char *value = (const char *)name_end + 1;
        const unsigned char *value_end = memchr(name_end + 1, '\0', (size_t)(end - (name_end + 1)));
        if (value_end == NULL) return;
        visit(context, name, value);
        cursor = value_end + 1;
    }
}

/* ---- digests and times in headers --------------------------------------------------- */

/* The CRC32C as x-amz-checksum-crc32c writes it: base64 of the big-endian bytes. */
static void crc32c_header_value(uint32_t crc, char text[9]) {
    unsigned char bytes[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
                              (unsigned char)(crc >> 8), (unsigned char)crc};
    base64_encode(bytes, 4, text);
}

/* Whether the ETag list HEADER (as If-Match carries it: "a", "b" or *) names ETAG. */
static bool etag_matches(const char *header, const char *etag) {
    const char *cursor = header;
    size_t etag_length = strlen(etag);
    while (*cursor) {
        while (*cursor == ' ' || *cursor == ',')
            cursor++;
        if (*cursor == '*') return true;
        if (strncmp(cursor, "W/", 2) == 0) cursor += 2;
        bool quoted = *cursor == '"';
        if (quoted) cursor++;
        size_t length = quoted ? strcspn(cursor, "\"") : strcspn(cursor, ", ");
        if (length == etag_length && strncasecmp(cursor, etag, length) == 0) return true;
        cursor += length;
        if (*cursor == '"') cursor++;
        if (*cursor == '\0') break;
        cursor++;
    }
    return false;
}

/* Evaluates the conditional headers (PREFIX "" for GET/HEAD, "x-amz-copy-source-" for a
 * copy) against INFO. Returns 0 to go on, 304 or 412. */
static int evaluate_conditions(const struct http_request *http, const char *prefix,
                               const struct object_info *info) {
    char name[64];
    snprintf(name, sizeof(name), "%sIf-Match", prefix);
    const char *if_match = http_header_value(http, name);
    snprintf(name, sizeof(name), "%sIf-None-Match", prefix);
    const char *if_none_match = http_header_value(http, name);
    snprintf(name, sizeof(name), "%sIf-Modified-Since", prefix);
    const char *if_modified_since = http_header_value(http, name);
    snprintf(name, sizeof(name), "%sIf-Unmodified-Since", prefix);
    const char *if_unmodified_since = http_header_value(http, name);
    int64_t modified_seconds = info->modified_ms / 1000;
    int64_t when;
    if (if_match != NULL) {
        if (!etag_matches(if_match, info->etag)) return 412;
    } else if (if_unmodified_since != NULL &&
               s3_time_parse_http(if_unmodified_since, strlen(if_unmodified_since), &when) &&
               modified_seconds > when / 1000) {
        return 412;
    }
    int not_modified = prefix[0] ? 412 : 304;
    if (if_none_match != NULL) {
        if (etag_matches(if_none_match, info->etag)) return not_modified;
    } else if (if_modified_since != NULL &&
               s3_time_parse_http(if_modified_since, strlen(if_modified_since), &when) &&
               when <= clock_realtime_ms() && /* a date in the future is ignored (RFC 9110) */
               modified_seconds <= when / 1000) {
        return not_modified;
    }
    return 0;
}

/* Whether the request's bucket has (or had) versioning on: then even the null version
 * is named in x-amz-version-id, as S3 does. */
static bool bucket_versioned(struct s3_request *request) {
    struct object_bucket_info info;
    return objects_bucket_info(request->server->objects, request->bucket, request->bucket_length,
                               &info) == OBJECT_OK &&
           info.versioning != OBJECT_VERSIONING_OFF;
}

/* Appends "NAME: VERSION_ID" unless it is the null version of an unversioned bucket
 * (VERSIONED: bucket_versioned()). */
static void append_version_id(struct byte_buffer *headers, const char *name, const char *version_id,
                              bool versioned) {
    if (version_id[0] == '\0' || (!versioned && strcmp(version_id, "null") == 0)) return;
    byte_buffer_appendf(headers, "%s: %s\r\n", name, version_id);
}

/* Appends the headers that describe a version: ETag, Last-Modified, version id. */
static void version_headers(struct byte_buffer *headers, const struct object_info *info,
                            bool versioned) {
    char date[32];
    s3_time_http(info->modified_ms, date);
    if (!info->delete_marker) byte_buffer_appendf(headers, "ETag: \"%s\"\r\n", info->etag);
    byte_buffer_appendf(headers, "Last-Modified: %s\r\n", date);
    append_version_id(headers, "x-amz-version-id", info->version_id, versioned);
}

/* Makes TEXT a NUL-terminated string and returns it (NULL if building it failed). */
static const char *finish_headers(struct byte_buffer *text) {
    byte_buffer_append(text, "", 1);
    if (text->failed) return NULL;
    text->length--;
    return (const char *)text->data;
}

/* Answers a plain success (STATUS, no body) with the common headers and EXTRA. */
static void respond_empty(struct s3_request *request, int status, struct byte_buffer *extra) {
    struct byte_buffer headers = BYTE_BUFFER_INIT;
    s3_common_headers(request, &headers);
    if (extra != NULL && extra->length > 0)
        byte_buffer_append(&headers, extra->data, extra->length);
    const char *text = finish_headers(&headers);
    if (text == NULL) {
        s3_object_error(request, OBJECT_NO_MEMORY);
    } else {
        http_respond(request->session, status, NULL, NULL, 0, text);
    }
    byte_buffer_free(&headers);
}

/* ---- keys and conditions ---------------------------------------------------------- */

/* Whether LENGTH bytes at TEXT are well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
static bool valid_utf8(const unsigned char *text, size_t length) {
    size_t i = 0;
    while (i < length) {
        unsigned char c = text[i];
        size_t extra;
        uint32_t point;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            point = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            point = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            point = c & 0x07;
        } else {
            return false;
        }
        if (length - i <= extra) return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((text[i + k] & 0xc0) != 0x80) return false;
            point = point << 6 | (text[i + k] & 0x3f);
        }
        if ((extra == 2 && (point < 0x800 || (point >= 0xd800 && point <= 0xdfff))) ||
            (extra == 3 && (point < 0x10000 || point > 0x10ffff))) {
            return false;
        }
        i += extra + 1;
    }
    return true;
}

/* Reads a conditional write's headers into *CONDITION (ETAG holds If-Match's value
 * without quotes): If-None-Match may only be "*", If-Match one ETag, as S3 takes them.
 * Returns false (answered 501) for any other form: a client that asked for a condition
 * must never have its write made unconditionally. */
static bool read_write_condition(struct s3_request *request, struct object_condition *condition,
                                 char etag[OBJECT_ETAG_MAX + 1]) {
    const char *if_none_match = http_header_value(request->http, "If-None-Match");
    const char *if_match = http_header_value(request->http, "If-Match");
    *condition = (struct object_condition){0};
    if (if_none_match != NULL) {
        if (strcmp(if_none_match, "*") != 0) goto unsupported;
        condition->if_absent = true;
    }
    if (if_match != NULL) {
        size_t length = strlen(if_match);
        if (length >= 2 && if_match[0] == '"' && if_match[length - 1] == '"') {
            if_match++;
            length -= 2;
        }
        if (length == 0 || length > OBJECT_ETAG_MAX || memchr(if_match, ',', length) != NULL ||
            memchr(if_match, '"', length) != NULL || (length == 1 && if_match[0] == '*')) {
            goto unsupported;
        }
        memcpy(etag, if_match, length);
        etag[length] = '\0';
        condition->if_etag = etag;
    }
    return true;
unsupported:
    s3_error(request, 501, "NotImplemented",
             "A conditional write takes If-None-Match: * or If-Match with one ETag", NULL);
    return false;
}

/* Refuses conditions on writes that take none (copies, parts): such a write must not be
 * made unconditionally. Returns true when it answered. */
static bool refuse_conditional_write(struct s3_request *request) {
    if (http_header_value(request->http, "If-None-Match") == NULL &&
        http_header_value(request->http, "If-Match") == NULL) {
        return false;
    }
    s3_error(request, 501, "NotImplemented",
             "Conditional writes are taken by PutObject and CompleteMultipartUpload only", NULL);
    return true;
}

/* ---- GET and HEAD ------------------------------------------------------------------ */

struct response_attributes {
    struct byte_buffer *headers;
    const char *content_type;
    struct s3_request *request;
};

/* for_each_attribute() visitor: appends a stored header, unless a response-* parameter
 * overrides it; keeps Content-Type apart. */
static void add_stored_header(void *context, const char *name, const char *value) {
    struct response_attributes *response = context;
    static const char *const overrides[][2] = {
        {"Content-Type", "response-content-type"},
        {"Content-Language", "response-content-language"},
        {"Expires", "response-expires"},
        {"Cache-Control", "response-cache-control"},
        {"Content-Disposition", "response-content-disposition"},
        {"Content-Encoding", "response-content-encoding"},
    };
    for (size_t i = 0; i < sizeof(overrides) / sizeof(overrides[0]); i++) {
        if (strcmp(name, overrides[i][0]) == 0 &&
            s3_has_param(response->request, overrides[i][1])) {
            return; /* the override is added instead */
        }
    }
    if (strcmp(name, "Content-Type") == 0) {
        response->content_type = value;
        return;
    }
    byte_buffer_appendf(response->headers, "%s: %s\r\n", name, value);
}

/* Whether TEXT can be a header value: no control character but tab. */
static bool header_value_safe(const char *text) {
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if ((*c < 0x20 && *c != '\t') || *c == 0x7f) return false;
    }
    return true;
}

/* Appends the response-* overrides the request asked for; sets *CONTENT_TYPE (into
 * TYPE_STORAGE) when response-content-type is one. Returns false (answered 400) when
 * one is too long or holds a control character. */
static bool add_overrides(struct s3_request *request, struct byte_buffer *headers,
                          char *type_storage, size_t type_size, const char **content_type) {
    static const char *const overrides[][2] = {
        {"Content-Language", "response-content-language"},
        {"Expires", "response-expires"},
        {"Cache-Control", "response-cache-control"},
        {"Content-Disposition", "response-content-disposition"},
        {"Content-Encoding", "response-content-encoding"},
    };
    char value[1024];
    for (size_t i = 0; i < sizeof(overrides) / sizeof(overrides[0]); i++) {
        long length = s3_param(request, overrides[i][1], value, sizeof(value));
        if (length == -1) continue;
        if (length < 0 || !header_value_safe(value)) goto bad;
        byte_buffer_appendf(headers, "%s: %s\r\n", overrides[i][0], value);
    }
    long length = s3_param(request, "response-content-type", type_storage, type_size);
    if (length == -1) return true;
    if (length < 0 || !header_value_safe(type_storage)) goto bad;
    *content_type = type_storage;
    return true;
bad:
    s3_error(request, 400, "InvalidArgument",
             "A response-* parameter is too long or holds a control character", NULL);
    return false;
}

/* Reads versionId into VERSION (room for OBJECT_VERSION_ID_MAX + 1). Returns 1 if given,
 * 0 if not, -1 (answered) if malformed. */
static int read_version_id(struct s3_request *request, char *version) {
    long length = s3_param(request, "versionId", version, OBJECT_VERSION_ID_MAX + 1);
    if (length == -1) return 0;
    if (length <= 0) {
        s3_error(request, 400, "InvalidArgument", "Invalid version id specified", NULL);
        return -1;
    }
    return 1;
}

/* Answers a lookup that found no object: 404 NoSuchKey (with the delete marker's
 * headers when the current version is one) or the status's error. */
static void respond_missing(struct s3_request *request, enum object_status status,
                            const struct object_handle *handle) {
    if ((status == OBJECT_NO_SUCH_KEY || status == OBJECT_IS_DELETE_MARKER) &&
        handle->info.delete_marker) {
        struct byte_buffer extra = BYTE_BUFFER_INIT;
        byte_buffer_appendf(&extra, "x-amz-delete-marker: true\r\n");
        append_version_id(&extra, "x-amz-version-id", handle->info.version_id,
                          bucket_versioned(request));
        const char *text = finish_headers(&extra);
        if (status == OBJECT_IS_DELETE_MARKER) {
            s3_error(request, 405, "MethodNotAllowed",
                     "The specified method is not allowed against this resource.", text);
        } else {
            s3_error(request, 404, "NoSuchKey", "The specified key does not exist.", text);
        }
        byte_buffer_free(&extra);
        return;
    }
    s3_object_error(request, status);
}

static void get_object(struct s3_request *request) {
    const struct http_request *http = request->http;
    char version[OBJECT_VERSION_ID_MAX + 1];
    int has_version = read_version_id(request, version);
    if (has_version < 0) return;
    struct object_handle handle = {0};
    enum object_status status =
        objects_get(request->server->objects, request->bucket, request->bucket_length, request->key,
                    request->key_length, has_version ? version : NULL, &handle);
    if (status != OBJECT_OK) {
        respond_missing(request, status, &handle);
        object_handle_clear(&handle);
        return;
    }
    char part_text[16];
    long part_length = s3_param(request, "partNumber", part_text, sizeof(part_text));
    if (part_length != -1 && !(part_length == 1 && part_text[0] == '1' && handle.info.parts == 0)) {
        /* Part 1 of an object made by one PUT is the object; a part of a completed upload
         * is not served by number yet (a whole answer would be wrong). */
        s3_error(request, 501, "NotImplemented",
                 "GetObject by partNumber is served for part 1 of a single-PUT object only; "
                 "use a Range",
                 NULL);
        object_handle_clear(&handle);
        return;
    }
    const struct object_info *info = &handle.info;
    struct byte_buffer headers = BYTE_BUFFER_INIT;
    s3_common_headers(request, &headers);
    version_headers(&headers, info, bucket_versioned(request));
    int condition = evaluate_conditions(http, "", info);
    if (condition != 0) {
        if (condition == 304) {
            const char *text = finish_headers(&headers);
            http_respond(request->session, 304, NULL, NULL, 0, text);
        } else {
            s3_error(request, 412, "PreconditionFailed",
                     "At least one of the pre-conditions you specified did not hold", NULL);
        }
        byte_buffer_free(&headers);
        object_handle_clear(&handle);
        return;
    }
    uint64_t first = 0;
    uint64_t last = info->length ? info->length - 1 : 0;
    int ranged = 0;
    if (http->range != NULL) ranged = http_parse_range(http->range, info->length, &first, &last);
    if (ranged < 0) {
        char extra[64];
        snprintf(extra, sizeof(extra), "Content-Range: bytes */%llu\r\n",
                 (unsigned long long)info->length);
        s3_error(request, 416, "InvalidRange", "The requested range is not satisfiable", extra);
        byte_buffer_free(&headers);
        object_handle_clear(&handle);
        return;
    }
    uint64_t length = info->length == 0 ? 0 : last - first + 1;
    byte_buffer_appendf(&headers, "Accept-Ranges: bytes\r\n");
    if (ranged > 0) {
        byte_buffer_appendf(&headers, "Content-Range: bytes %llu-%llu/%llu\r\n",
                            (unsigned long long)first, (unsigned long long)last,
                            (unsigned long long)info->length);
    }
    if (info->parts > 0) byte_buffer_appendf(&headers, "x-amz-mp-parts-count: %u\r\n", info->parts);
    const char *checksum_mode = http_header_value(http, "x-amz-checksum-mode");
    if (checksum_mode != NULL && strcasecmp(checksum_mode, "ENABLED") == 0 && ranged == 0) {
        char crc[9];
        crc32c_header_value(info->crc32c, crc);
        byte_buffer_appendf(&headers, "x-amz-checksum-crc32c: %s\r\n", crc);
    }
    struct response_attributes response = {&headers, "binary/octet-stream", request};
    for_each_attribute(info, add_stored_header, &response);
    char type_storage[256];
    if (!add_overrides(request, &headers, type_storage, sizeof(type_storage),
                       &response.content_type)) {
        byte_buffer_free(&headers);
        object_handle_clear(&handle);
        return;
    }
    const char *text = finish_headers(&headers);
    int code = ranged > 0 ? 206 : 200;
    if (text == NULL) {
        s3_object_error(request, OBJECT_NO_MEMORY);
    } else if (http->method == HTTP_HEAD || length == 0) {
        http_respond_head(request->session, code, response.content_type, length, text);
    } else {
        struct blob_reader *reader = NULL;
        enum blob_status opened = blob_reader_open(objects_blobs(request->server->objects),
                                                   handle.extents, handle.extent_count, &reader);
        if (opened != BLOB_OK) {
            log_event(LOG_ERROR, "s3_object_unreadable", "bucket=%s status=\"%s\"", request->bucket,
                      blob_status_text(opened));
            s3_object_error(request, object_status_from_blob(opened));
        } else {
            http_respond_blob(request->session, code, response.content_type, reader, first, length,
                              text);
        }
    }
    byte_buffer_free(&headers);
    object_handle_clear(&handle);
}

/* ---- PUT: a body into a blob -------------------------------------------------------- */

enum put_kind { PUT_OBJECT, PUT_PART };

struct put_state {
    struct s3_request request;
    enum put_kind kind;
    int part_number;
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    struct blob_writer *writer;
    struct s3_chunked *decoder; /* aws-chunked bodies */
    bool decoded_complete;
    EVP_MD_CTX *sha256; /* when x-amz-content-sha256 is a hash to check */
    uint64_t expected;  /* payload bytes announced (at most, when not length_known) */
    bool length_known;  /* false for a Transfer-Encoding: chunked body */
    uint64_t received;
    bool has_md5;
    unsigned char md5[16];
    struct byte_buffer attributes;
    bool answered; /* an error has been sent */
    /* A write failed (a full disk): the blob is gone, the rest of the body is read and
     * dropped so that the client hears the error rather than a reset, and this is the
     * answer. OBJECT_OK while none. */
    enum object_status write_error;
};

static void put_free(struct put_state *put) {
    if (put->writer != NULL) blob_writer_abort(put->writer);
    if (put->decoder != NULL) s3_chunked_destroy(put->decoder);
    if (put->sha256 != NULL) EVP_MD_CTX_free(put->sha256);
    byte_buffer_free(&put->attributes);
    free(put);
}

/* A write into the blob failed with STATUS: gives the blob up (its space is freed at
 * once) and remembers the error for the end of the body. */
static void fail_write(struct put_state *put, enum blob_status status) {
    put->write_error = object_status_from_blob(status);
    blob_writer_abort(put->writer);
    put->writer = NULL;
}

/* Takes LENGTH payload bytes: hashes them and appends them to the blob. */
static bool put_payload(void *context, const unsigned char *data, size_t length) {
    struct put_state *put = context;
    if (put->received + length > put->expected) {
        put->answered = true;
        put->request.session->closing = true; /* the rest of the body is not read */
        s3_error(&put->request, 400, "IncompleteBody",
                 "The request body is longer than the length it announced", NULL);
        return false;
    }
    put->received += length;
    if (put->write_error != OBJECT_OK) return true; /* dropped: the answer is an error */
    if (put->sha256 != NULL) EVP_DigestUpdate(put->sha256, data, length);
    enum blob_status status = blob_writer_append(put->writer, data, length);
    if (status != BLOB_OK) fail_write(put, status);
    return true;
}

/* http_body_sink.data */
static bool put_data(void *context, const unsigned char *data, size_t length) {
    struct put_state *put = context;
    if (put->decoder == NULL) return put_payload(put, data, length);
    struct s3_error error = {0};
    if (!s3_chunked_feed(put->decoder, data, length, put_payload, put, &put->decoded_complete,
                         &error)) {
        put->request.session->closing = true; /* the rest of the body is not read */
        if (!put->answered && error.code != NULL) {
            s3_error(&put->request, error.status, error.code, error.message, NULL);
        }
        put->answered = true;
        return false;
    }
    return true;
}

/* http_body_sink.space: straight into the blob's chunk (plain bodies only). */
static bool put_space(void *context, unsigned char **buffer, size_t *length) {
    struct put_state *put = context;
    if (put->decoder != NULL || put->answered || put->write_error != OBJECT_OK) return false;
    blob_writer_space(put->writer, buffer, length);
    uint64_t left = put->expected - put->received;
    if (*length > left) *length = (size_t)left;
    return *length > 0;
}

/* http_body_sink.filled */
static bool put_filled(void *context, size_t length) {
    struct put_state *put = context;
    unsigned char *buffer;
    size_t room;
    blob_writer_space(put->writer, &buffer, &room);
    put->received += length;
    if (put->sha256 != NULL) EVP_DigestUpdate(put->sha256, buffer, length);
    enum blob_status status = blob_writer_filled(put->writer, length);
    if (status != BLOB_OK) fail_write(put, status);
    return true;
}

/* Checks the digests the client sent against what arrived. Returns false (answered). */
static bool put_verify(struct put_state *put, const struct blob_digest *digest) {
    struct s3_request *request = &put->request;
    if (put->sha256 != NULL) {
        unsigned char hash[32];
        unsigned int hash_length = 0;
        EVP_DigestFinal_ex(put->sha256, hash, &hash_length);
        if (memcmp(hash, request->auth.payload_sha256, 32) != 0) {
            s3_error(request, 400, "XAmzContentSHA256Mismatch",
                     "The provided 'x-amz-content-sha256' header does not match what was "
                     "computed.",
                     NULL);
            return false;
        }
    }
    if (put->has_md5 && memcmp(put->md5, digest->md5, 16) != 0) {
        s3_error(request, 400, "BadDigest",
                 "The Content-MD5 you specified did not match what we received.", NULL);
        return false;
    }
    const char *crc_text = http_header_value(request->http, "x-amz-checksum-crc32c");
    if (crc_text == NULL && put->decoder != NULL) {
        crc_text = s3_chunked_trailer(put->decoder, "x-amz-checksum-crc32c");
    }
    if (crc_text != NULL) {
        char expected[9];
        crc32c_header_value(digest->crc32c, expected);
        if (strcmp(crc_text, expected) != 0) {
            s3_error(request, 400, "BadDigest",
                     "The CRC32C you specified did not match the calculated checksum.", NULL);
            return false;
        }
    }
    return true;
}

/* http_body_sink.end: the body is complete; store it and answer. */
static void put_end(void *context) {
    struct put_state *put = context;
    struct s3_request *request = &put->request;
    struct objects *objects = request->server->objects;
    if (put->decoder != NULL && !put->decoded_complete) {
        s3_error(request, 400, "IncompleteBody",
                 "You did not provide the number of bytes specified by the Content-Length "
                 "HTTP header",
                 NULL);
        put_free(put);
        return;
    }
    if (put->write_error != OBJECT_OK) {
        s3_object_error(request, put->write_error);
        put_free(put);
        return;
    }
    if (put->length_known && put->received != put->expected) {
        s3_error(request, 400, "IncompleteBody",
                 "You did not provide the number of bytes specified by the "
                 "x-amz-decoded-content-length HTTP header",
                 NULL);
        put_free(put);
        return;
    }
    struct blob_digest digest;
    enum blob_status finished = blob_writer_finish(put->writer, &digest);
    put->writer = NULL;
    if (finished != BLOB_OK) {
        s3_object_error(request, object_status_from_blob(finished));
        put_free(put);
        return;
    }
    if (!put_verify(put, &digest)) {
        blob_store_unlink(objects_blobs(objects), digest.id);
        put_free(put);
        return;
    }
    struct byte_buffer extra = BYTE_BUFFER_INIT;
    enum object_status status;
    if (put->kind == PUT_PART) {
        char etag[OBJECT_ETAG_MAX + 1];
        status = objects_upload_part(objects, request->bucket, request->bucket_length,
                                     put->upload_id, put->part_number, &digest, etag);
        if (status == OBJECT_OK) byte_buffer_appendf(&extra, "ETag: \"%s\"\r\n", etag);
    } else {
        struct object_info info;
        struct object_condition condition;
        char etag[OBJECT_ETAG_MAX + 1];
        if (!read_write_condition(request, &condition, etag)) {
            blob_store_unlink(objects_blobs(objects), digest.id);
            byte_buffer_free(&extra);
            put_free(put);
            return;
        }
        status = objects_put_if(objects, request->bucket, request->bucket_length, request->key,
                                request->key_length, &digest, put->attributes.data,
                                put->attributes.length, &condition, &info);
        if (status == OBJECT_OK) {
            byte_buffer_appendf(&extra, "ETag: \"%s\"\r\n", info.etag);
            append_version_id(&extra, "x-amz-version-id", info.version_id,
                              bucket_versioned(request));
        }
    }
    if (status == OBJECT_OK) {
        char crc[9];
        crc32c_header_value(digest.crc32c, crc);
        byte_buffer_appendf(&extra, "x-amz-checksum-crc32c: %s\r\n", crc);
        respond_empty(request, 200, &extra);
    } else {
        s3_object_error(request, status);
    }
    byte_buffer_free(&extra);
    put_free(put);
}

/* http_body_sink.abandon */
static void put_abandon(void *context) {
    put_free(context);
}

/* Reads a 64-hex x-amz-content-sha256 into AUTH when the request was not verified (no
 * credentials configured), so the payload is still checked. */
static void payload_from_headers(struct s3_request *request) {
    struct s3_auth *auth = &request->auth;
    if (!auth->anonymous) return;
    const char *value = http_header_value(request->http, "x-amz-content-sha256");
    auth->payload = S3_PAYLOAD_UNSIGNED;
    if (value == NULL) return;
    if (strcmp(value, "STREAMING-UNSIGNED-PAYLOAD-TRAILER") == 0) {
        auth->payload = S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
        return;
    }
    if (strcmp(value, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD") == 0) {
        auth->payload = S3_PAYLOAD_STREAMING_SIGNED;
        return;
    }
    if (strcmp(value, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER") == 0) {
        auth->payload = S3_PAYLOAD_STREAMING_SIGNED_TRAILER;
        return;
    }
    if (strlen(value) != 64) return;
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        if (sscanf(value + 2 * i, "%2x", &byte) != 1) return;
        auth->payload_sha256[i] = (unsigned char)byte;
    }
    auth->payload = S3_PAYLOAD_SHA256;
}

/* Starts receiving a PUT body (an object, or a part of an upload). */
static void start_put(struct s3_request *request, enum put_kind kind, int part_number,
                      const char *upload_id) {
    const struct http_request *http = request->http;
    payload_from_headers(request);
    bool streaming = request->auth.payload == S3_PAYLOAD_STREAMING_SIGNED ||
                     request->auth.payload == S3_PAYLOAD_STREAMING_SIGNED_TRAILER ||
                     request->auth.payload == S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    if (!http->has_content_length && !http->chunked) {
        s3_error(request, 411, "MissingContentLength",
                 "You must provide the Content-Length HTTP header.", NULL);
        return;
    }
    uint64_t expected = http->content_length;
    if (streaming) {
        const char *decoded = http_header_value(http, "x-amz-decoded-content-length");
        if (decoded == NULL || !parse_uint64(decoded, strlen(decoded), &expected)) {
            s3_error(request, 411, "MissingContentLength",
                     "You must provide the x-amz-decoded-content-length header.", NULL);
            return;
        }
    } else if (http->chunked) {
        expected = S3_MAX_PUT_SIZE; /* the length is known at the end; the most is checked */
    }
    if (expected > S3_MAX_PUT_SIZE) {
        request->session->closing = true;
        s3_error(request, 400, "EntityTooLarge",
                 "Your proposed upload exceeds the maximum allowed size", NULL);
        return;
    }
    struct put_state *put = calloc(1, sizeof(*put));
    if (put == NULL) {
        s3_object_error(request, OBJECT_NO_MEMORY);
        return;
    }
    put->request = *request;
    put->kind = kind;
    put->part_number = part_number;
    if (upload_id != NULL) snprintf(put->upload_id, sizeof(put->upload_id), "%s", upload_id);
    put->expected = expected;
    put->length_known = streaming || !http->chunked;
    const char *md5 = http_header_value(http, "Content-MD5");
    if (md5 != NULL) {
        if (base64_decode(md5, strlen(md5), put->md5, sizeof(put->md5)) != 16) {
            s3_error(request, 400, "InvalidDigest", "The Content-MD5 you specified was invalid.",
                     NULL);
            put_free(put);
            return;
        }
        put->has_md5 = true;
    }
    if (kind == PUT_OBJECT) {
        struct object_condition condition;
        char etag[OBJECT_ETAG_MAX + 1];
        if (!read_write_condition(request, &condition, etag)) {
            put_free(put);
            return;
        }
        /* A PUT into a bucket that is not there is refused before its body is read. */
        struct object_bucket_info bucket;
        enum object_status found = objects_bucket_info(request->server->objects, request->bucket,
                                                       request->bucket_length, &bucket);
        if (found != OBJECT_OK) {
            s3_object_error(request, found);
            put_free(put);
            return;
        }
        if (!build_attributes(request, &put->attributes)) {
            put_free(put);
            return;
        }
    }
    if (streaming) {
        put->decoder = s3_chunked_create(&request->auth);
        if (put->decoder == NULL) {
            s3_object_error(request, OBJECT_NO_MEMORY);
            put_free(put);
            return;
        }
    } else if (request->auth.payload == S3_PAYLOAD_SHA256) {
        put->sha256 = EVP_MD_CTX_new();
        if (put->sha256 == NULL || EVP_DigestInit_ex(put->sha256, EVP_sha256(), NULL) != 1) {
            s3_object_error(request, OBJECT_NO_MEMORY);
            put_free(put);
            return;
        }
    }
    enum blob_status opened =
        blob_writer_open(objects_blobs(request->server->objects), &put->writer);
    if (opened != BLOB_OK) {
        put->writer = NULL;
        s3_object_error(request, object_status_from_blob(opened));
        put_free(put);
        return;
    }
    struct http_body_sink sink = {
        .data = put_data,
        .space = put_space,
        .filled = put_filled,
        .end = put_end,
        .abandon = put_abandon,
        .context = put,
    };
    http_receive_body(request->session, &sink);
}

/* ---- copies ------------------------------------------------------------------------ */

struct copy_source {
    char bucket[OBJECT_BUCKET_NAME_MAX + 2];
    size_t bucket_length;
    char key[OBJECT_MAX_KEY_LENGTH + 1];
    size_t key_length;
    char version[OBJECT_VERSION_ID_MAX + 1];
    bool has_version;
};

/* Parses x-amz-copy-source ("/bucket/key?versionId=v", URL-encoded). Returns false
 * (answered) if it is malformed. */
static bool parse_copy_source(struct s3_request *request, const char *header,
                              struct copy_source *source) {
    char text[OBJECT_MAX_KEY_LENGTH * 3 + 128];
    if (strlen(header) >= sizeof(text)) goto malformed;
    snprintf(text, sizeof(text), "%s", header[0] == '/' ? header + 1 : header);
    char *query = strchr(text, '?');
    if (query != NULL) {
        *query++ = '\0';
        long length = s3_query_get(query, strlen(query), "versionId", source->version,
                                   sizeof(source->version));
        if (length == -2 || length == 0) goto malformed;
        source->has_version = length > 0;
    }
    long length = s3_percent_decode(text, strlen(text), false);
    if (length < 0) goto malformed;
    char *slash = memchr(text, '/', (size_t)length);
    if (slash == NULL || slash == text || (size_t)(slash - text) > OBJECT_BUCKET_NAME_MAX) {
        goto malformed;
    }
    source->bucket_length = (size_t)(slash - text);
    memcpy(source->bucket, text, source->bucket_length);
    source->bucket[source->bucket_length] = '\0';
    source->key_length = (size_t)length - source->bucket_length - 1;
    if (source->key_length == 0 || source->key_length > OBJECT_MAX_KEY_LENGTH) goto malformed;
    memcpy(source->key, slash + 1, source->key_length);
    return true;
malformed:
    s3_error(request, 400, "InvalidArgument",
             "Copy Source must mention the source bucket and key: "
             "sourcebucket/sourcekey",
             NULL);
    return false;
}

/* Looks the copy source up and checks x-amz-copy-source-if-*. Returns false (answered). */
static bool find_copy_source(struct s3_request *request, const struct copy_source *source,
                             struct object_handle *handle) {
    enum object_status status =
        objects_get(request->server->objects, source->bucket, source->bucket_length, source->key,
                    source->key_length, source->has_version ? source->version : NULL, handle);
    if (status != OBJECT_OK) {
        if (status == OBJECT_IS_DELETE_MARKER) status = OBJECT_INVALID_RANGE;
        if (status == OBJECT_INVALID_RANGE) {
            s3_error(request, 400, "InvalidRequest",
                     "The source of a copy request may not specifically refer to a delete marker "
                     "by version id.",
                     NULL);
        } else {
            s3_object_error(request, status);
        }
        object_handle_clear(handle);
        return false;
    }
    if (evaluate_conditions(request->http, "x-amz-copy-source-", &handle->info) != 0) {
        s3_error(request, 412, "PreconditionFailed",
                 "At least one of the pre-conditions you specified did not hold", NULL);
        object_handle_clear(handle);
        return false;
    }
    return true;
}

static void copy_object(struct s3_request *request, const char *source_header) {
    struct copy_source source = {0};
    if (!parse_copy_source(request, source_header, &source)) return;
    if (!s3_permit(request, source.bucket, source.bucket_length, ACCESS_READ)) return;
    const char *directive = http_header_value(request->http, "x-amz-metadata-directive");
    bool replace = directive != NULL && strcasecmp(directive, "REPLACE") == 0;
    if (directive != NULL && !replace && strcasecmp(directive, "COPY") != 0) {
        s3_error(request, 400, "InvalidArgument", "Unknown metadata directive.", NULL);
        return;
    }
    if (!replace && !source.has_version && source.bucket_length == request->bucket_length &&
        memcmp(source.bucket, request->bucket, source.bucket_length) == 0 &&
        source.key_length == request->key_length &&
        memcmp(source.key, request->key, source.key_length) == 0) {
        s3_error(request, 400, "InvalidRequest",
                 "This copy request is illegal because it is trying to copy an object to itself "
                 "without changing the object's metadata, storage class, website redirect "
                 "location or encryption attributes.",
                 NULL);
        return;
    }
    struct object_handle handle = {0};
    if (!find_copy_source(request, &source, &handle)) return;
    struct byte_buffer attributes = BYTE_BUFFER_INIT;
    if (replace && !build_attributes(request, &attributes)) {
        object_handle_clear(&handle);
        return;
    }
    struct object_info info;
    enum object_status status =
        objects_copy(request->server->objects, source.bucket, source.bucket_length, source.key,
                     source.key_length, handle.info.version_id, request->bucket,
                     request->bucket_length, request->key, request->key_length,
                     replace ? (attributes.data ? attributes.data : (void *)"") : NULL,
                     attributes.length, &info);
    byte_buffer_free(&attributes);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        object_handle_clear(&handle);
        return;
    }
    struct byte_buffer extra = BYTE_BUFFER_INIT;
    struct s3_request source_request = *request;
    memcpy(source_request.bucket, source.bucket, source.bucket_length + 1);
    source_request.bucket_length = source.bucket_length;
    append_version_id(&extra, "x-amz-copy-source-version-id", handle.info.version_id,
                      bucket_versioned(&source_request));
    append_version_id(&extra, "x-amz-version-id", info.version_id, bucket_versioned(request));
    object_handle_clear(&handle);
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "CopyObjectResult", true);
    s3_xml_time(&document, "LastModified", info.modified_ms);
    char etag[OBJECT_ETAG_MAX + 3];
    snprintf(etag, sizeof(etag), "\"%s\"", info.etag);
    s3_xml_string(&document, "ETag", etag);
    s3_xml_close(&document, "CopyObjectResult");
    s3_respond_xml(request, &document, finish_headers(&extra));
    byte_buffer_free(&extra);
}

/* ---- DELETE ------------------------------------------------------------------------ */

static void delete_object(struct s3_request *request) {
    char version[OBJECT_VERSION_ID_MAX + 1];
    int has_version = read_version_id(request, version);
    if (has_version < 0) return;
    struct object_delete_result result = {0};
    enum object_status status =
        objects_delete(request->server->objects, request->bucket, request->bucket_length,
                       request->key, request->key_length, has_version ? version : NULL, &result);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct byte_buffer extra = BYTE_BUFFER_INIT;
    if (result.delete_marker) byte_buffer_appendf(&extra, "x-amz-delete-marker: true\r\n");
    append_version_id(&extra, "x-amz-version-id", result.version_id,
                      has_version || bucket_versioned(request));
    respond_empty(request, 204, &extra);
    byte_buffer_free(&extra);
}

/* ---- multipart uploads ------------------------------------------------------------- */

/* Reads uploadId into UPLOAD_ID and checks the upload is this key's. Returns false
 * (answered) otherwise. */
static bool read_upload(struct s3_request *request, char upload_id[OBJECT_UPLOAD_ID_MAX + 1]) {
    long length = s3_param(request, "uploadId", upload_id, OBJECT_UPLOAD_ID_MAX + 1);
    unsigned char key[OBJECT_MAX_KEY_LENGTH];
    size_t key_length = 0;
    enum object_status status = OBJECT_NO_SUCH_UPLOAD;
    if (length > 0) {
        status = objects_upload_key(request->server->objects, request->bucket,
                                    request->bucket_length, upload_id, key, &key_length);
    }
    if (status == OBJECT_OK &&
        (key_length != request->key_length || memcmp(key, request->key, key_length) != 0)) {
        status = OBJECT_NO_SUCH_UPLOAD;
    }
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return false;
    }
    return true;
}

static void create_upload(struct s3_request *request) {
    struct byte_buffer attributes = BYTE_BUFFER_INIT;
    if (!build_attributes(request, &attributes)) return;
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    enum object_status status = objects_upload_create(
        request->server->objects, request->bucket, request->bucket_length, request->key,
        request->key_length, attributes.data, attributes.length, upload_id);
    byte_buffer_free(&attributes);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "InitiateMultipartUploadResult", true);
    s3_xml_text(&document, "Bucket", request->bucket, request->bucket_length);
    s3_xml_text(&document, "Key", request->key, request->key_length);
    s3_xml_string(&document, "UploadId", upload_id);
    s3_xml_close(&document, "InitiateMultipartUploadResult");
    s3_respond_xml(request, &document, NULL);
}

/* Reads partNumber: 1 to 10,000. Returns it, or 0 (answered). */
static int read_part_number(struct s3_request *request) {
    char text[16];
    long length = s3_param(request, "partNumber", text, sizeof(text));
    char *end = NULL;
    long number = length > 0 ? strtol(text, &end, 10) : 0;
    if (length <= 0 || *end != '\0' || number < 1 || number > OBJECT_MAX_PART_NUMBER) {
        s3_error(request, 400, "InvalidArgument",
                 "Part number must be an integer between 1 and 10000, inclusive", NULL);
        return 0;
    }
    return (int)number;
}

/* Decodes a single-PUT ETag (32 hex digits) into its MD5. Returns false for any other. */
static bool hex_md5(const char *etag, unsigned char md5[16]) {
    if (strlen(etag) != 32) return false;
    for (int i = 0; i < 16; i++) {
        unsigned int byte;
        if (!isxdigit((unsigned char)etag[2 * i]) || !isxdigit((unsigned char)etag[2 * i + 1]) ||
            sscanf(etag + 2 * i, "%2x", &byte) != 1) {
            return false;
        }
        md5[i] = (unsigned char)byte;
    }
    return true;
}

/* Reads bytes [FIRST, FIRST + LENGTH) of HANDLE's version (checking every chunk) and
 * computes their MD5 into DIGEST and their CRC32C into *CRC. Blocks the calling thread
 * for the read (docs/s3.md: UploadPartCopy of a range). Returns BLOB_OK or an error. */
static enum blob_status digest_range(struct s3_request *request, const struct object_handle *handle,
                                     uint64_t first, uint64_t length, unsigned char digest[16],
                                     uint32_t *crc) {
    struct blob_reader *reader = NULL;
    enum blob_status opened = blob_reader_open(objects_blobs(request->server->objects),
                                               handle->extents, handle->extent_count, &reader);
    unsigned char *piece = opened == BLOB_OK ? malloc(COPY_READ_PIECE) : NULL;
    EVP_MD_CTX *md5 = piece ? EVP_MD_CTX_new() : NULL;
    enum blob_status read_status = opened;
    uint32_t running_crc = CRC32C_START;
    if (opened == BLOB_OK && (piece == NULL || md5 == NULL)) read_status = BLOB_NO_MEMORY;
    if (md5 != NULL) {
        EVP_DigestInit_ex(md5, EVP_md5(), NULL);
        for (uint64_t done = 0; done < length && read_status == BLOB_OK;) {
            uint64_t take = length - done < COPY_READ_PIECE ? length - done : COPY_READ_PIECE;
            read_status = blob_reader_read(reader, first + done, take, piece);
            if (read_status == BLOB_OK) {
                EVP_DigestUpdate(md5, piece, (size_t)take);
                running_crc = crc32c_update(running_crc, piece, (size_t)take);
            }
            done += take;
        }
    }
    unsigned int digest_length = 0;
    if (md5 != NULL) EVP_DigestFinal_ex(md5, digest, &digest_length);
    EVP_MD_CTX_free(md5);
    free(piece);
    if (reader != NULL) blob_reader_close(reader);
    *crc = crc32c_finish(running_crc);
    return read_status;
}

/* Answers UploadPartCopy with its CopyPartResult. */
static void write_copy_part_result(struct s3_request *request, const char *etag) {
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "CopyPartResult", true);
    s3_xml_time(&document, "LastModified", clock_realtime_ms());
    char quoted[OBJECT_ETAG_MAX + 3];
    snprintf(quoted, sizeof(quoted), "\"%s\"", etag);
    s3_xml_string(&document, "ETag", quoted);
    s3_xml_close(&document, "CopyPartResult");
    s3_respond_xml(request, &document, NULL);
}

/* UploadPartCopy: records a range of another object as a part, by reference; the part's
 * ETag is the MD5 of those bytes, read (and checked) to compute it. */
static void upload_part_copy(struct s3_request *request, int part_number, const char *upload_id,
                             const char *source_header) {
    struct copy_source source = {0};
    if (!parse_copy_source(request, source_header, &source)) return;
    if (!s3_permit(request, source.bucket, source.bucket_length, ACCESS_READ)) return;
    struct object_handle handle = {0};
    if (!find_copy_source(request, &source, &handle)) return;
    uint64_t first = 0;
    uint64_t length = handle.info.length;
    const char *range = http_header_value(request->http, "x-amz-copy-source-range");
    if (range != NULL) {
        uint64_t last;
        if (http_parse_range(range, handle.info.length, &first, &last) != 1 || range[6] == '-') {
            s3_error(request, 400, "InvalidRange",
                     "The x-amz-copy-source-range value must be of the form bytes=first-last "
                     "where first and last are the zero-based offsets of the first and last "
                     "bytes to copy",
                     NULL);
            object_handle_clear(&handle);
            return;
        }
        length = last - first + 1;
    }
    if (length > S3_MAX_PUT_SIZE) {
        s3_error(request, 400, "InvalidRequest",
                 "The specified copy source is larger than the maximum allowable size for a "
                 "copy source: 5368709120",
                 NULL);
        object_handle_clear(&handle);
        return;
    }
    unsigned char digest[16] = {0};
    uint32_t copied_crc = 0;
    bool known = first == 0 && length == handle.info.length && handle.info.parts == 0 &&
                 hex_md5(handle.info.etag, digest);
    enum blob_status read_status = BLOB_OK;
    if (known) {
        /* The whole of a single-PUT object: its ETag is the MD5 of these bytes, and its
         * CRC32C theirs; nothing needs reading. */
        copied_crc = handle.info.crc32c;
    } else {
        read_status = digest_range(request, &handle, first, length, digest, &copied_crc);
    }
    if (read_status != BLOB_OK) {
        s3_object_error(request, object_status_from_blob(read_status));
        object_handle_clear(&handle);
        return;
    }
    char etag[OBJECT_ETAG_MAX + 1];
    enum object_status status = objects_upload_part_copy(
        request->server->objects, request->bucket, request->bucket_length, upload_id, part_number,
        source.bucket, source.bucket_length, source.key, source.key_length, handle.info.version_id,
        first, length, digest, copied_crc, etag);
    object_handle_clear(&handle);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    write_copy_part_result(request, etag);
}

/* What a CompleteMultipartUpload body lists. */
struct complete_body {
    struct object_part_ref *parts;
    size_t count;
    size_t capacity;
    bool has_number;
    bool has_etag;
    bool bad;
};

static bool visit_complete(void *context, const char *path, const char *text, size_t length) {
    struct complete_body *body = context;
    if (strcmp(path, "CompleteMultipartUpload/Part") == 0 && text == NULL) {
        if (!body->has_number || !body->has_etag) {
            body->bad = true;
            return false;
        }
        body->count++;
        body->has_number = body->has_etag = false;
        return true;
    }
    if (text == NULL) return true;
    bool is_number = strcmp(path, "CompleteMultipartUpload/Part/PartNumber") == 0;
    bool is_etag = strcmp(path, "CompleteMultipartUpload/Part/ETag") == 0;
    if (!is_number && !is_etag) return true;
    if (body->count == body->capacity) {
        if (body->capacity == OBJECT_MAX_PART_NUMBER) {
            body->bad = true;
            return false;
        }
        size_t grown = body->capacity ? body->capacity * 2 : 64;
        if (grown > OBJECT_MAX_PART_NUMBER) grown = OBJECT_MAX_PART_NUMBER;
        struct object_part_ref *bigger = realloc(body->parts, grown * sizeof(*bigger));
        if (bigger == NULL) return false;
        body->parts = bigger;
        body->capacity = grown;
    }
    struct object_part_ref *part = &body->parts[body->count];
    if (is_number) {
        char *end;
        long number = strtol(text, &end, 10);
        if (length == 0 || *end != '\0' || number < 1 || number > OBJECT_MAX_PART_NUMBER) {
            body->bad = true;
            return false;
        }
        part->part_number = (int)number;
        body->has_number = true;
    } else {
        const char *etag = text;
        size_t etag_length = length;
        if (etag_length >= 2 && etag[0] == '"' && etag[etag_length - 1] == '"') {
            etag++;
            etag_length -= 2;
        }
        if (etag_length > OBJECT_ETAG_MAX) etag_length = OBJECT_ETAG_MAX;
        memcpy(part->etag, etag, etag_length);
        part->etag[etag_length] = '\0';
        body->has_etag = true;
    }
    return true;
}

static void complete_upload_body(struct s3_request *request, const unsigned char *body,
                                 size_t length) {
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    if (!read_upload(request, upload_id)) return;
    struct complete_body parsed = {0};
    const char *reason = NULL;
    if (!s3_xml_parse((const char *)body, length, visit_complete, &parsed, &reason) || parsed.bad ||
        parsed.count == 0) {
        free(parsed.parts);
        s3_error(request, 400, "MalformedXML",
                 "The XML you provided was not well-formed or did not validate against our "
                 "published schema",
                 NULL);
        return;
    }
    struct object_info info;
    struct object_condition condition;
    char etag_condition[OBJECT_ETAG_MAX + 1];
    if (!read_write_condition(request, &condition, etag_condition)) {
        free(parsed.parts);
        return;
    }
    enum object_status status = objects_upload_complete_if(
        request->server->objects, request->bucket, request->bucket_length, upload_id, parsed.parts,
        parsed.count, &condition, &info);
    free(parsed.parts);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct byte_buffer extra = BYTE_BUFFER_INIT;
    append_version_id(&extra, "x-amz-version-id", info.version_id, bucket_versioned(request));
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "CompleteMultipartUploadResult", true);
    const char *host = http_header_value(request->http, "Host");
    char location[512];
    snprintf(location, sizeof(location), "http://%s/%s/", host ? host : "localhost",
             request->bucket);
    s3_xml_string(&document, "Location", location);
    s3_xml_text(&document, "Bucket", request->bucket, request->bucket_length);
    s3_xml_text(&document, "Key", request->key, request->key_length);
    char etag[OBJECT_ETAG_MAX + 3];
    snprintf(etag, sizeof(etag), "\"%s\"", info.etag);
    s3_xml_string(&document, "ETag", etag);
    s3_xml_close(&document, "CompleteMultipartUploadResult");
    s3_respond_xml(request, &document, finish_headers(&extra));
    byte_buffer_free(&extra);
}

static void list_parts(struct s3_request *request) {
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    if (!read_upload(request, upload_id)) return;
    char text[32];
    long marker_length = s3_param(request, "part-number-marker", text, sizeof(text));
    int marker = marker_length > 0 ? atoi(text) : 0;
    long max_length = s3_param(request, "max-parts", text, sizeof(text));
    long max_parts = max_length > 0 ? atol(text) : 1000;
    if (max_parts < 0 || max_parts > 1000) max_parts = 1000;
    struct object_parts_result result = {0};
    enum object_status status =
        objects_upload_list_parts(request->server->objects, request->bucket, request->bucket_length,
                                  upload_id, marker, (size_t)max_parts, &result);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "ListPartsResult", true);
    s3_xml_text(&document, "Bucket", request->bucket, request->bucket_length);
    s3_xml_text(&document, "Key", request->key, request->key_length);
    s3_xml_string(&document, "UploadId", upload_id);
    s3_xml_number(&document, "PartNumberMarker", (uint64_t)marker);
    if (result.count > 0) {
        s3_xml_number(&document, "NextPartNumberMarker",
                      (uint64_t)result.parts[result.count - 1].part_number);
    }
    s3_xml_number(&document, "MaxParts", (uint64_t)max_parts);
    s3_xml_bool(&document, "IsTruncated", result.truncated);
    s3_xml_open(&document, "Initiator", false);
    s3_xml_string(&document, "ID", "strata");
    s3_xml_string(&document, "DisplayName", "strata");
    s3_xml_close(&document, "Initiator");
    s3_xml_open(&document, "Owner", false);
    s3_xml_string(&document, "ID", "strata");
    s3_xml_string(&document, "DisplayName", "strata");
    s3_xml_close(&document, "Owner");
    s3_xml_string(&document, "StorageClass", "STANDARD");
    for (size_t i = 0; i < result.count; i++) {
        const struct object_part_info *part = &result.parts[i];
        s3_xml_open(&document, "Part", false);
        s3_xml_number(&document, "PartNumber", (uint64_t)part->part_number);
        s3_xml_time(&document, "LastModified", part->modified_ms);
        char etag[OBJECT_ETAG_MAX + 3];
        snprintf(etag, sizeof(etag), "\"%s\"", part->etag);
        s3_xml_string(&document, "ETag", etag);
        s3_xml_number(&document, "Size", part->length);
        s3_xml_close(&document, "Part");
    }
    s3_xml_close(&document, "ListPartsResult");
    object_parts_free(&result);
    s3_respond_xml(request, &document, NULL);
}

static void abort_upload(struct s3_request *request) {
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    if (!read_upload(request, upload_id)) return;
    enum object_status status = objects_upload_abort(request->server->objects, request->bucket,
                                                     request->bucket_length, upload_id);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    respond_empty(request, 204, NULL);
}

/* ---- the object's routes ----------------------------------------------------------- */

void s3_object_route(struct s3_request *request) {
    if (request->key_length > OBJECT_MAX_KEY_LENGTH) {
        s3_object_error(request, OBJECT_KEY_TOO_LONG);
        return;
    }
    if (!valid_utf8((const unsigned char *)request->key, request->key_length)) {
        s3_error(request, 400, "InvalidArgument", "Object keys must be valid UTF-8", NULL);
        return;
    }
    if (request->http->method == HTTP_PUT && !s3_has_param(request, "acl")) {
        bool plain_put = http_header_value(request->http, "x-amz-copy-source") == NULL &&
                         !s3_has_param(request, "uploadId") && !s3_has_param(request, "partNumber");
        if (!plain_put && refuse_conditional_write(request)) return;
    }
    if (s3_answer_subresource(request)) return;
    bool has_upload = s3_has_param(request, "uploadId");
    switch (request->http->method) {
    case HTTP_GET:
    case HTTP_HEAD:
        if (has_upload && request->http->method == HTTP_GET) {
            list_parts(request);
        } else {
            get_object(request);
        }
        return;
    case HTTP_PUT: {
        const char *copy_source = http_header_value(request->http, "x-amz-copy-source");
        if (has_upload || s3_has_param(request, "partNumber")) {
            int part_number = read_part_number(request);
            if (part_number == 0) return;
            char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
            if (!read_upload(request, upload_id)) return;
            if (copy_source != NULL) {
                upload_part_copy(request, part_number, upload_id, copy_source);
            } else {
                start_put(request, PUT_PART, part_number, upload_id);
            }
        } else if (copy_source != NULL) {
            copy_object(request, copy_source);
        } else {
            start_put(request, PUT_OBJECT, 0, NULL);
        }
        return;
    }
    case HTTP_DELETE:
        if (has_upload) {
            abort_upload(request);
        } else {
            delete_object(request);
        }
        return;
    case HTTP_POST:
        if (s3_has_param(request, "uploads")) {
            create_upload(request);
            return;
        }
        if (has_upload) {
            s3_collect_body(request, complete_upload_body);
            return;
        }
        break;
    default:
        break;
    }
    s3_error(request, 405, "MethodNotAllowed",
             "The specified method is not allowed against this resource.", NULL);
}
