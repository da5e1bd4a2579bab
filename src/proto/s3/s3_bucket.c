/* S3 bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
 * GetBucketLocation, Get/PutBucketVersioning, ListObjects (v1 and v2),
 * ListObjectVersions, ListMultipartUploads and DeleteObjects (docs/s3.md). */
#include "base/base64.h"
#include "base/byte_buffer.h"
#include "base/numbers.h"
#include "proto/s3/s3_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OWNER_ID   "strata"
#define MAX_KEYS   1000
#define PARAM_SIZE (OBJECT_MAX_KEY_LENGTH * 3 + 16)

/* <Owner><ID>strata</ID><DisplayName>strata</DisplayName></Owner> */
static void write_owner(struct s3_xml *document, const char *element) {
    s3_xml_open(document, element, false);
    s3_xml_string(document, "ID", OWNER_ID);
    s3_xml_string(document, "DisplayName", OWNER_ID);
    s3_xml_close(document, element);
}

void s3_list_buckets(struct s3_request *request) {
    struct objects *objects = request->server->objects;
    size_t count = objects_bucket_list(objects, NULL, 0);
    struct object_bucket_info *infos = calloc(count ? count : 1, sizeof(*infos));
    if (infos == NULL) {
        s3_object_error(request, OBJECT_NO_MEMORY);
        return;
    }
    size_t allocated = count;
    count = objects_bucket_list(objects, infos, allocated);
    if (count > allocated) count = allocated; /* a bucket created meanwhile: next time */
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "ListAllMyBucketsResult", true);
    write_owner(&document, "Owner");
    s3_xml_open(&document, "Buckets", false);
    for (size_t i = 0; i < count; i++) {
        /* Only the buckets the sender has some right on. */
        if (s3_rights(request, infos[i].name, strlen(infos[i].name)) == 0) continue;
        s3_xml_open(&document, "Bucket", false);
        s3_xml_string(&document, "Name", infos[i].name);
        s3_xml_time(&document, "CreationDate", infos[i].created_ms);
        s3_xml_close(&document, "Bucket");
    }
    s3_xml_close(&document, "Buckets");
    s3_xml_close(&document, "ListAllMyBucketsResult");
    free(infos);
    s3_respond_xml(request, &document, NULL);
}

/* Writes a key or prefix as element NAME, URL-encoded when the request asked for
 * encoding-type=url. */
static void write_key(struct s3_xml *document, const char *name, const void *key, size_t length,
                      bool url_encoded) {
    if (!url_encoded) {
        s3_xml_text(document, name, key, length);
        return;
    }
    size_t room = length * 3 + 1;
    char *encoded = malloc(room);
    if (encoded == NULL) {
        document->failed = true;
        return;
    }
    long written = s3_uri_encode(key, length, true, encoded, room);
    s3_xml_text(document, name, encoded, written < 0 ? 0 : (size_t)written);
    free(encoded);
}

/* ---- small answers ----------------------------------------------------------------- */

static void create_bucket_body(struct s3_request *request, const unsigned char *body,
                               size_t length) {
    (void)body;
    (void)length; /* a CreateBucketConfiguration's location constraint: any is accepted */
    enum object_status status =
        objects_bucket_create(request->server->objects, request->bucket, request->bucket_length);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct byte_buffer headers = BYTE_BUFFER_INIT;
    s3_common_headers(request, &headers);
    byte_buffer_appendf(&headers, "Location: /%s\r\n", request->bucket);
    byte_buffer_append(&headers, "", 1);
    http_respond(request->session, 200, NULL, NULL, 0,
                 headers.failed ? NULL : (const char *)headers.data);
    byte_buffer_free(&headers);
}

static void head_bucket(struct s3_request *request) {
    struct object_bucket_info info;
    enum object_status status = objects_bucket_info(request->server->objects, request->bucket,
                                                    request->bucket_length, &info);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct byte_buffer headers = BYTE_BUFFER_INIT;
    s3_common_headers(request, &headers);
    byte_buffer_appendf(&headers, "x-amz-bucket-region: %s\r\n",
                        options_text(request->server->options, S3_OPTION(s3_region)));
    byte_buffer_append(&headers, "", 1);
    http_respond(request->session, 200, NULL, NULL, 0,
                 headers.failed ? NULL : (const char *)headers.data);
    byte_buffer_free(&headers);
}

static void delete_bucket(struct s3_request *request) {
    enum object_status status =
        objects_bucket_delete(request->server->objects, request->bucket, request->bucket_length);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    char headers[64];
    snprintf(headers, sizeof(headers), "x-amz-request-id: %s\r\n", request->request_id);
    http_respond(request->session, 204, NULL, NULL, 0, headers);
}

static void get_location(struct s3_request *request) {
    struct object_bucket_info info;
    enum object_status status = objects_bucket_info(request->server->objects, request->bucket,
                                                    request->bucket_length, &info);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    const char *region = options_text(request->server->options, S3_OPTION(s3_region));
    struct s3_xml document;
    s3_xml_begin(&document);
    /* us-east-1 is reported as an empty constraint, as S3 does. */
    if (strcmp(region, "us-east-1") == 0) {
        s3_xml_raw(
            &document, "<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>",
            strlen("<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>"));
    } else {
        s3_xml_open(&document, "LocationConstraint", true);
        s3_xml_raw(&document, region, strlen(region));
        s3_xml_close(&document, "LocationConstraint");
    }
    s3_respond_xml(request, &document, NULL);
}

static void get_versioning(struct s3_request *request) {
    struct object_bucket_info info;
    enum object_status status = objects_bucket_info(request->server->objects, request->bucket,
                                                    request->bucket_length, &info);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "VersioningConfiguration", true);
    if (info.versioning == OBJECT_VERSIONING_ENABLED) s3_xml_string(&document, "Status", "Enabled");
    if (info.versioning == OBJECT_VERSIONING_SUSPENDED) {
        s3_xml_string(&document, "Status", "Suspended");
    }
    s3_xml_close(&document, "VersioningConfiguration");
    s3_respond_xml(request, &document, NULL);
}

/* What a VersioningConfiguration body says. */
struct versioning_body {
    int state; /* 0: none given, 1: Enabled, 2: Suspended, -1: something else */
};

static bool visit_versioning(void *context, const char *path, const char *text, size_t length) {
    struct versioning_body *body = context;
    if (text == NULL || strcmp(path, "VersioningConfiguration/Status") != 0) return true;
    if (length == 7 && memcmp(text, "Enabled", 7) == 0) {
        body->state = 1;
    } else if (length == 9 && memcmp(text, "Suspended", 9) == 0) {
        body->state = 2;
    } else {
        body->state = -1;
    }
    return true;
}

static void put_versioning_body(struct s3_request *request, const unsigned char *body,
                                size_t length) {
    if (!s3_check_content_md5(request, body, length)) return;
    struct versioning_body parsed = {0};
    const char *reason = NULL;
    if (!s3_xml_parse((const char *)body, length, visit_versioning, &parsed, &reason) ||
        parsed.state <= 0) {
        s3_error(request, 400, "MalformedXML",
                 "The XML you provided was not well-formed or did not validate against our "
                 "published schema",
                 NULL);
        return;
    }
    enum object_status status = objects_bucket_set_versioning(
        request->server->objects, request->bucket, request->bucket_length,
        parsed.state == 1 ? OBJECT_VERSIONING_ENABLED : OBJECT_VERSIONING_SUSPENDED);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    char headers[64];
    snprintf(headers, sizeof(headers), "x-amz-request-id: %s\r\n", request->request_id);
    http_respond(request->session, 200, NULL, NULL, 0, headers);
}

/* ---- quotas (strata's own subresource) ---------------------------------------------- */

/* GET ?quota: <BucketQuota><Bytes>N</Bytes></BucketQuota> (0: none). */
static void get_quota(struct s3_request *request) {
    struct object_bucket_info info;
    enum object_status status = objects_bucket_info(request->server->objects, request->bucket,
                                                    request->bucket_length, &info);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "BucketQuota", true);
    s3_xml_number(&document, "Bytes", info.quota);
    s3_xml_number(&document, "UsedBytes", info.bytes);
    s3_xml_close(&document, "BucketQuota");
    s3_respond_xml(request, &document, NULL);
}

/* PUT ?quota with a body that is a size ("10gb", "1048576"; "0" or empty: none). */
static void put_quota_body(struct s3_request *request, const unsigned char *body, size_t length) {
    char text[64];
    size_t start = 0;
    while (start < length && (body[start] == ' ' || body[start] == '\n' || body[start] == '\r'))
        start++;
    while (length > start &&
           (body[length - 1] == ' ' || body[length - 1] == '\n' || body[length - 1] == '\r'))
        length--;
    uint64_t quota = 0;
    if (length - start >= sizeof(text)) {
        s3_error(request, 400, "InvalidArgument", "The quota is not a size", NULL);
        return;
    }
    memcpy(text, body + start, length - start);
    text[length - start] = '\0';
    if (text[0] != '\0' && !parse_size(text, &quota)) {
        s3_error(request, 400, "InvalidArgument",
                 "The quota is not a size (a number of bytes, or 10gb, 512mb, ...)", NULL);
        return;
    }
    enum object_status status = objects_bucket_set_quota(request->server->objects, request->bucket,
                                                         request->bucket_length, quota);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    char headers[64];
    snprintf(headers, sizeof(headers), "x-amz-request-id: %s\r\n", request->request_id);
    http_respond(request->session, 200, NULL, NULL, 0, headers);
}

/* ---- listings ---------------------------------------------------------------------- */

/* Reads max-keys (or NAME) into *MAX_KEYS: absent is 1000, larger is 1000. Returns false
 * (answered) if it is not a number. */
static bool read_max(struct s3_request *request, const char *name, size_t *max_keys) {
    char text[32];
    long length = s3_param(request, name, text, sizeof(text));
    *max_keys = MAX_KEYS;
    if (length == -1) return true;
    char *end;
    long long value = strtoll(text, &end, 10);
    if (length <= 0 || *end != '\0' || value < 0) {
        s3_error(request, 400, "InvalidArgument",
                 "Provided max-keys not an integer or within "
                 "integer range",
                 NULL);
        return false;
    }
    if (value < MAX_KEYS) *max_keys = (size_t)value;
    return true;
}

/* The query parameters a listing takes. Strings are decoded and NUL-terminated. */
struct list_params {
    char prefix[PARAM_SIZE];
    long prefix_length;
    char delimiter[PARAM_SIZE];
    long delimiter_length;
    char marker[PARAM_SIZE];
    long marker_length;
    bool url_encoded;
    size_t max_keys;
};

/* Reads prefix, delimiter and encoding-type, and MARKER_NAME into marker. Returns false
 * (answered) on a malformed parameter. */
static bool read_list_params(struct s3_request *request, const char *marker_name,
                             struct list_params *params) {
    params->prefix_length = s3_param(request, "prefix", params->prefix, sizeof(params->prefix));
    params->delimiter_length =
        s3_param(request, "delimiter", params->delimiter, sizeof(params->delimiter));
    params->marker_length =
        marker_name ? s3_param(request, marker_name, params->marker, sizeof(params->marker)) : -1;
    char encoding[16];
    long encoding_length = s3_param(request, "encoding-type", encoding, sizeof(encoding));
    if (params->prefix_length == -2 || params->delimiter_length == -2 ||
        params->marker_length == -2 || (encoding_length != -1 && strcmp(encoding, "url") != 0)) {
        s3_error(request, 400, "InvalidArgument", "A listing parameter is malformed", NULL);
        return false;
    }
    params->url_encoded = encoding_length != -1;
    if (params->prefix_length < 0) params->prefix_length = 0;
    if (params->delimiter_length < 0) params->delimiter_length = 0;
    if (params->marker_length < 0) params->marker_length = 0;
    return read_max(request, "max-keys", &params->max_keys);
}

/* Writes one listed version as <Contents> (or <Version> / <DeleteMarker>). */
static void write_entry(struct s3_xml *document, const struct object_list_entry *entry,
                        bool versions, bool url_encoded, bool owner) {
    const struct object_info *info = &entry->info;
    const char *element = !versions ? "Contents" : info->delete_marker ? "DeleteMarker" : "Version";
    s3_xml_open(document, element, false);
    write_key(document, "Key", entry->key, entry->key_length, url_encoded);
    if (versions) {
        s3_xml_string(document, "VersionId", info->version_id);
        s3_xml_bool(document, "IsLatest", info->is_latest);
    }
    s3_xml_time(document, "LastModified", info->modified_ms);
    if (!info->delete_marker) {
        char etag[OBJECT_ETAG_MAX + 3];
        snprintf(etag, sizeof(etag), "\"%s\"", info->etag);
        s3_xml_string(document, "ETag", etag);
        s3_xml_number(document, "Size", info->length);
        s3_xml_string(document, "StorageClass", "STANDARD");
    }
    if (owner || versions) write_owner(document, "Owner");
    s3_xml_close(document, element);
}

/* Writes RESULT's entries: versions or objects, and common prefixes. */
static void write_entries(struct s3_xml *document, const struct object_list_result *result,
                          bool versions, bool url_encoded, bool owner) {
    for (size_t i = 0; i < result->count; i++) {
        const struct object_list_entry *entry = &result->entries[i];
        if (entry->common_prefix) continue;
        write_entry(document, entry, versions, url_encoded, owner);
    }
    for (size_t i = 0; i < result->count; i++) {
        const struct object_list_entry *entry = &result->entries[i];
        if (!entry->common_prefix) continue;
        s3_xml_open(document, "CommonPrefixes", false);
        write_key(document, "Prefix", entry->key, entry->key_length, url_encoded);
        s3_xml_close(document, "CommonPrefixes");
    }
}

/* Runs the listing QUERY on the request's bucket. Returns false (answered) on an error. */
static bool run_list(struct s3_request *request, const struct list_params *params,
                     struct object_list_query *query, struct object_list_result *result) {
    query->prefix = params->prefix;
    query->prefix_length = (size_t)params->prefix_length;
    query->delimiter = params->delimiter;
    query->delimiter_length = (size_t)params->delimiter_length;
    query->max_keys = params->max_keys;
    enum object_status status = objects_list(request->server->objects, request->bucket,
                                             request->bucket_length, query, result);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return false;
    }
    /* max-keys=0 lists nothing and says so: there is no marker to continue from. */
    if (query->max_keys == 0) result->truncated = false;
    return true;
}

/* Writes the listing's common head elements. */
static void write_list_head(struct s3_xml *document, struct s3_request *request,
                            const struct list_params *params) {
    s3_xml_text(document, "Name", request->bucket, request->bucket_length);
    write_key(document, "Prefix", params->prefix, (size_t)params->prefix_length,
              params->url_encoded);
    if (params->delimiter_length > 0) {
        write_key(document, "Delimiter", params->delimiter, (size_t)params->delimiter_length,
                  params->url_encoded);
    }
    s3_xml_number(document, "MaxKeys", params->max_keys);
    if (params->url_encoded) s3_xml_string(document, "EncodingType", "url");
}

static void list_objects_v1(struct s3_request *request) {
    struct list_params params;
    if (!read_list_params(request, "marker", &params)) return;
    struct object_list_query query = {.after = params.marker,
                                      .after_length = (size_t)params.marker_length};
    struct object_list_result result = {0};
    if (!run_list(request, &params, &query, &result)) return;
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "ListBucketResult", true);
    write_list_head(&document, request, &params);
    write_key(&document, "Marker", params.marker, (size_t)params.marker_length, params.url_encoded);
    s3_xml_bool(&document, "IsTruncated", result.truncated);
    if (result.truncated && result.count > 0) {
        const struct object_list_entry *last = &result.entries[result.count - 1];
        write_key(&document, "NextMarker", last->key, last->key_length, params.url_encoded);
    }
    write_entries(&document, &result, false, params.url_encoded, true);
    s3_xml_close(&document, "ListBucketResult");
    object_list_free(&result);
    s3_respond_xml(request, &document, NULL);
}

static void list_objects_v2(struct s3_request *request) {
    struct list_params params;
    if (!read_list_params(request, "start-after", &params)) return;
    char token[PARAM_SIZE];
    long token_length = s3_param(request, "continuation-token", token, sizeof(token));
    unsigned char after[OBJECT_MAX_KEY_LENGTH + 1];
    struct object_list_query query = {.after = params.marker,
                                      .after_length = (size_t)params.marker_length};
    if (token_length == -2) {
        s3_error(request, 400, "InvalidArgument", "The continuation token provided is incorrect",
                 NULL);
        return;
    }
    if (token_length >= 0) {
        /* The token is the base64 of the last key or prefix listed. */
        long decoded = base64_decode(token, (size_t)token_length, after, sizeof(after));
        if (decoded <= 0) {
            s3_error(request, 400, "InvalidArgument",
                     "The continuation token provided is incorrect", NULL);
            return;
        }
        /* The later of start-after and the token wins. */
        size_t shorter =
            (size_t)decoded < query.after_length ? (size_t)decoded : query.after_length;
        int order = memcmp(after, query.after, shorter);
        if (order > 0 || (order == 0 && (size_t)decoded >= query.after_length)) {
            query.after = after;
            query.after_length = (size_t)decoded;
        }
    }
    char fetch_owner[8];
    bool owner = s3_param(request, "fetch-owner", fetch_owner, sizeof(fetch_owner)) >= 0 &&
                 strcmp(fetch_owner, "true") == 0;
    struct object_list_result result = {0};
    if (!run_list(request, &params, &query, &result)) return;
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "ListBucketResult", true);
    write_list_head(&document, request, &params);
    s3_xml_number(&document, "KeyCount", result.count);
    if (token_length >= 0) s3_xml_text(&document, "ContinuationToken", token, (size_t)token_length);
    if (params.marker_length > 0) {
        write_key(&document, "StartAfter", params.marker, (size_t)params.marker_length,
                  params.url_encoded);
    }
    s3_xml_bool(&document, "IsTruncated", result.truncated);
    if (result.truncated && result.count > 0) {
        const struct object_list_entry *last = &result.entries[result.count - 1];
        char *next = malloc(4 * ((last->key_length + 2) / 3) + 1);
        if (next == NULL) {
            document.failed = true;
        } else {
            base64_encode(last->key, last->key_length, next);
            s3_xml_string(&document, "NextContinuationToken", next);
            free(next);
        }
    }
    write_entries(&document, &result, false, params.url_encoded, owner);
    s3_xml_close(&document, "ListBucketResult");
    object_list_free(&result);
    s3_respond_xml(request, &document, NULL);
}

static void list_versions(struct s3_request *request) {
    struct list_params params;
    if (!read_list_params(request, "key-marker", &params)) return;
    char version_marker[OBJECT_VERSION_ID_MAX + 8];
    long version_marker_length =
        s3_param(request, "version-id-marker", version_marker, sizeof(version_marker));
    if (version_marker_length == -2) {
        s3_error(request, 400, "InvalidArgument", "Invalid version id specified", NULL);
        return;
    }
    struct object_list_query query = {
        .after = params.marker,
        .after_length = (size_t)params.marker_length,
        .after_version_id = version_marker_length > 0 ? version_marker : NULL,
        .versions = true,
    };
    struct object_list_result result = {0};
    if (!run_list(request, &params, &query, &result)) return;
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "ListVersionsResult", true);
    write_list_head(&document, request, &params);
    write_key(&document, "KeyMarker", params.marker, (size_t)params.marker_length,
              params.url_encoded);
    s3_xml_string(&document, "VersionIdMarker", version_marker_length > 0 ? version_marker : "");
    s3_xml_bool(&document, "IsTruncated", result.truncated);
    if (result.truncated && result.count > 0) {
        const struct object_list_entry *last = &result.entries[result.count - 1];
        write_key(&document, "NextKeyMarker", last->key, last->key_length, params.url_encoded);
        if (!last->common_prefix) {
            s3_xml_string(&document, "NextVersionIdMarker", last->info.version_id);
        }
    }
    write_entries(&document, &result, true, params.url_encoded, true);
    s3_xml_close(&document, "ListVersionsResult");
    object_list_free(&result);
    s3_respond_xml(request, &document, NULL);
}

static void list_uploads(struct s3_request *request) {
    struct list_params params;
    if (!read_list_params(request, "key-marker", &params)) return;
    if (!read_max(request, "max-uploads", &params.max_keys)) return;
    char upload_marker[OBJECT_UPLOAD_ID_MAX + 8];
    long upload_marker_length =
        s3_param(request, "upload-id-marker", upload_marker, sizeof(upload_marker));
    struct object_uploads_result result = {0};
    enum object_status status = objects_upload_list(
        request->server->objects, request->bucket, request->bucket_length, params.prefix,
        (size_t)params.prefix_length, params.marker_length > 0 ? params.marker : NULL,
        (size_t)params.marker_length, upload_marker_length > 0 ? upload_marker : NULL,
        params.max_keys, &result);
    if (status != OBJECT_OK) {
        s3_object_error(request, status);
        return;
    }
    struct s3_xml document;
    s3_xml_begin(&document);
    s3_xml_open(&document, "ListMultipartUploadsResult", true);
    s3_xml_text(&document, "Bucket", request->bucket, request->bucket_length);
    write_key(&document, "KeyMarker", params.marker, (size_t)params.marker_length,
              params.url_encoded);
    s3_xml_string(&document, "UploadIdMarker", upload_marker_length > 0 ? upload_marker : "");
    if (result.truncated && result.count > 0) {
        const struct object_upload_entry *last = &result.entries[result.count - 1];
        write_key(&document, "NextKeyMarker", last->key, last->key_length, params.url_encoded);
        s3_xml_string(&document, "NextUploadIdMarker", last->upload_id);
    }
    write_key(&document, "Prefix", params.prefix, (size_t)params.prefix_length, params.url_encoded);
    s3_xml_number(&document, "MaxUploads", params.max_keys);
    s3_xml_bool(&document, "IsTruncated", result.truncated);
    for (size_t i = 0; i < result.count; i++) {
        const struct object_upload_entry *entry = &result.entries[i];
        s3_xml_open(&document, "Upload", false);
        write_key(&document, "Key", entry->key, entry->key_length, params.url_encoded);
        s3_xml_string(&document, "UploadId", entry->upload_id);
        write_owner(&document, "Initiator");
        write_owner(&document, "Owner");
        s3_xml_string(&document, "StorageClass", "STANDARD");
        s3_xml_time(&document, "Initiated", entry->initiated_ms);
        s3_xml_close(&document, "Upload");
    }
    s3_xml_close(&document, "ListMultipartUploadsResult");
    object_uploads_free(&result);
    s3_respond_xml(request, &document, NULL);
}

/* ---- DeleteObjects ----------------------------------------------------------------- */

#define DELETE_OBJECTS_MAX 1000

struct delete_entry {
    char *key;
    size_t key_length;
    char version_id[OBJECT_VERSION_ID_MAX + 1];
    bool has_version;
    bool bad_version;
};

struct delete_body {
    struct delete_entry *entries;
    size_t count;
    bool quiet;
    bool has_key; /* the current <Object> has a <Key> */
    bool failed;  /* out of memory, or too many */
};

static bool visit_delete(void *context, const char *path, const char *text, size_t length) {
    struct delete_body *body = context;
    if (strcmp(path, "Delete/Quiet") == 0 && text != NULL) {
        body->quiet = length == 4 && memcmp(text, "true", 4) == 0;
        return true;
    }
    if (strcmp(path, "Delete/Object") == 0 && text == NULL) { /* an <Object> closed */
        if (!body->has_key) return false;
        body->count++;
        body->has_key = false;
        return true;
    }
    if (text == NULL) return true;
    bool is_key = strcmp(path, "Delete/Object/Key") == 0;
    bool is_version = strcmp(path, "Delete/Object/VersionId") == 0;
    if (!is_key && !is_version) return true;
    if (body->count >= DELETE_OBJECTS_MAX) {
        body->failed = true;
        return false;
    }
    struct delete_entry *entry = &body->entries[body->count];
    if (is_key) {
        free(entry->key);
        entry->key = malloc(length + 1);
        if (entry->key == NULL) {
            body->failed = true;
            return false;
        }
        memcpy(entry->key, text, length + 1);
        entry->key_length = length;
        body->has_key = true;
    } else if (length == 0 || length > OBJECT_VERSION_ID_MAX) {
        entry->bad_version = true;
        entry->has_version = true;
    } else {
        memcpy(entry->version_id, text, length + 1);
        entry->has_version = true;
    }
    return true;
}

static void delete_objects_body(struct s3_request *request, const unsigned char *body,
                                size_t length) {
    /* As S3: a digest of the body is required (which also keeps a web page's plain form
     * POST from deleting anything: a browser cannot add these headers without asking). */
    bool has_digest = http_header_value(request->http, "Content-MD5") != NULL;
    for (size_t i = 0; i < request->http->header_count && !has_digest; i++) {
        has_digest = strncasecmp(request->http->headers[i].name, "x-amz-checksum-", 15) == 0;
    }
    if (!has_digest) {
        s3_error(request, 400, "InvalidRequest",
                 "Missing required header for this request: Content-Md5.", NULL);
        return;
    }
    if (!s3_check_content_md5(request, body, length)) return;
    struct delete_body parsed = {.entries =
                                     calloc(DELETE_OBJECTS_MAX + 1, sizeof(struct delete_entry))};
    if (parsed.entries == NULL) {
        s3_object_error(request, OBJECT_NO_MEMORY);
        return;
    }
    const char *reason = NULL;
    bool well_formed = s3_xml_parse((const char *)body, length, visit_delete, &parsed, &reason);
    if (!well_formed || parsed.count == 0) {
        if (parsed.failed && parsed.count >= DELETE_OBJECTS_MAX) {
            s3_error(request, 400, "MalformedXML",
                     "The request must contain no more than 1000 keys", NULL);
        } else {
            s3_error(request, 400, "MalformedXML",
                     "The XML you provided was not well-formed or did not validate against our "
                     "published schema",
                     NULL);
        }
    } else {
        struct s3_xml document;
        s3_xml_begin(&document);
        s3_xml_open(&document, "DeleteResult", true);
        for (size_t i = 0; i < parsed.count; i++) {
            struct delete_entry *entry = &parsed.entries[i];
            struct object_delete_result result = {0};
            enum object_status status =
                entry->bad_version
                    ? OBJECT_NO_SUCH_VERSION
                    : objects_delete(request->server->objects, request->bucket,
                                     request->bucket_length, entry->key, entry->key_length,
                                     entry->has_version ? entry->version_id : NULL, &result);
            if (status == OBJECT_OK) {
                if (parsed.quiet) continue;
                s3_xml_open(&document, "Deleted", false);
                s3_xml_text(&document, "Key", entry->key, entry->key_length);
                if (entry->has_version) s3_xml_string(&document, "VersionId", entry->version_id);
                if (result.delete_marker) {
                    s3_xml_bool(&document, "DeleteMarker", true);
                    s3_xml_string(&document, "DeleteMarkerVersionId", result.version_id);
                }
                s3_xml_close(&document, "Deleted");
            } else {
                s3_xml_open(&document, "Error", false);
                s3_xml_text(&document, "Key", entry->key, entry->key_length);
                if (entry->has_version) s3_xml_string(&document, "VersionId", entry->version_id);
                const char *code = status == OBJECT_KEY_TOO_LONG      ? "KeyTooLongError"
                                   : status == OBJECT_NO_SUCH_VERSION ? "NoSuchVersion"
                                   : status == OBJECT_NO_SUCH_BUCKET  ? "NoSuchBucket"
                                                                      : "InternalError";
                s3_xml_string(&document, "Code", code);
                s3_xml_string(&document, "Message", object_status_text(status));
                s3_xml_close(&document, "Error");
            }
        }
        s3_xml_close(&document, "DeleteResult");
        s3_respond_xml(request, &document, NULL);
    }
    for (size_t i = 0; i <= DELETE_OBJECTS_MAX; i++)
        free(parsed.entries[i].key);
    free(parsed.entries);
}

/* ---- the bucket's routes ----------------------------------------------------------- */

void s3_bucket_route(struct s3_request *request) {
    enum http_method method = request->http->method;
    if (s3_answer_subresource(request)) return;
    switch (method) {
    case HTTP_PUT:
        if (s3_has_param(request, "versioning")) {
            s3_collect_body(request, put_versioning_body);
        } else if (s3_has_param(request, "quota")) {
            s3_collect_body(request, put_quota_body);
        } else {
            s3_collect_body(request, create_bucket_body);
        }
        return;
    case HTTP_HEAD:
        head_bucket(request);
        return;
    case HTTP_DELETE:
        delete_bucket(request);
        return;
    case HTTP_POST:
        if (s3_has_param(request, "delete")) {
            s3_collect_body(request, delete_objects_body);
            return;
        }
        break;
    case HTTP_GET: {
        if (s3_has_param(request, "location")) {
            get_location(request);
        } else if (s3_has_param(request, "versioning")) {
            get_versioning(request);
        } else if (s3_has_param(request, "quota")) {
            get_quota(request);
        } else if (s3_has_param(request, "versions")) {
            list_versions(request);
        } else if (s3_has_param(request, "uploads")) {
            list_uploads(request);
        } else {
            char list_type[8];
            long length = s3_param(request, "list-type", list_type, sizeof(list_type));
            if (length == 1 && list_type[0] == '2') {
                list_objects_v2(request);
            } else if (length == -1) {
                list_objects_v1(request);
            } else {
                s3_error(request, 400, "InvalidArgument", "Invalid list-type", NULL);
            }
        }
        return;
    }
    default:
        break;
    }
    s3_error(request, 405, "MethodNotAllowed",
             "The specified method is not allowed against this resource.", NULL);
}
