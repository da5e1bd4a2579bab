/* Objects: durable values of any size in buckets, with versions and multipart uploads
 * (docs/objects.md). The S3 front end (src/proto/s3/) is its user; nothing here knows
 * HTTP or S3's wire format.
 *
 * A bucket is a namespace created at run time. It holds keys (1 to 1,024 bytes, any
 * byte but NUL) in lexicographic (memcmp) order, each with one or more versions; the
 * newest version is the key's current one, and a version may be a delete marker.
 * A version's bytes are a list of blob extents (engine/blob.h): a single PUT is one
 * blob, a completed multipart upload the concatenation of its parts, and a copy refers
 * to the source's extents (no bytes are copied). A blob is removed once no version and
 * no upload part refers to it.
 *
 * The metadata (buckets, keys, versions, uploads) lives in DRAM and is made durable by
 * a journal in the objects directory: each change is appended as a record with its
 * CRC32C before the call returns (and synced before it returns under OBJECTS_SYNC_NOW),
 * and a snapshot of the whole state replaces the journal at a clean close and whenever
 * the journal has grown past twice the snapshot. objects_open() loads the snapshot,
 * replays the journal (a torn last record from a crash is dropped; a damaged record
 * before the end stops the open with an error that names the file and offset), and
 * removes blobs nothing refers to (a PUT or part cut off by a crash).
 *
 * The bytes of a new version are written first (blob_writer_*), then made visible by
 * one call (objects_put(), objects_upload_part()), so a PUT cut off half-way leaves
 * nothing visible, and a reader never sees a version half written.
 * A version replaced or deleted stays readable, whole, for as long as a reader of it
 * lives (objects_get(), then blob_reader_open() on the handle's extents): its blobs are
 * removed when the last reader is closed, not before (engine/blob.h: holds).
 *
 * Threads: every function may be called from any thread at the same time (one
 * read-write lock guards the metadata; blob I/O happens outside it). */
#ifndef STRATA_ENGINE_OBJECTS_H
#define STRATA_ENGINE_OBJECTS_H

#include "engine/blob.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OBJECT_MAX_KEY_LENGTH  1024
#define OBJECT_BUCKET_NAME_MAX 63
#define OBJECT_VERSION_ID_MAX  32 /* characters of a version id ("null" for the null version) */
#define OBJECT_UPLOAD_ID_MAX   32 /* characters of an upload id */
#define OBJECT_MAX_PART_NUMBER 10000
#define OBJECT_ETAG_MAX        40   /* characters: 32 hex digits, or 32 + "-" + up to 5 digits */
#define OBJECT_MAX_ATTRIBUTES  8192 /* bytes of a version's attributes */

enum object_status {
    OBJECT_OK = 0,
    OBJECT_NO_SUCH_BUCKET,
    OBJECT_BUCKET_EXISTS,       /* CreateBucket of a bucket that exists */
    OBJECT_BUCKET_NOT_EMPTY,    /* DeleteBucket of a bucket with versions in it */
    OBJECT_INVALID_BUCKET_NAME, /* not an S3 bucket name (objects_bucket_name_valid()) */
    OBJECT_TOO_MANY_BUCKETS,    /* OBJECTS_MAX_BUCKETS exist */
    OBJECT_NO_SUCH_KEY,         /* no such key, or its current version is a delete marker */
    OBJECT_NO_SUCH_VERSION,     /* no version with that id */
    OBJECT_IS_DELETE_MARKER,    /* the version asked for by id is a delete marker */
    OBJECT_KEY_TOO_LONG,        /* longer than OBJECT_MAX_KEY_LENGTH, or empty */
    OBJECT_ATTRIBUTES_TOO_LARGE,
    OBJECT_QUOTA_EXCEEDED, /* the bucket's quota would be passed */
    OBJECT_NO_SUCH_UPLOAD,
    OBJECT_INVALID_PART,       /* a part named in Complete was not uploaded, or its ETag differs */
    OBJECT_INVALID_PART_ORDER, /* part numbers in Complete not in ascending order */
    OBJECT_ENTITY_TOO_SMALL,   /* a part other than the last is smaller than min_part_size */
    OBJECT_INVALID_RANGE,      /* a copy range outside the source */
    OBJECT_IO_ERROR,           /* journal or blob I/O failed (details in the log) */
    OBJECT_NO_SPACE,           /* the file system is full */
    OBJECT_CORRUPT,            /* stored bytes failed their CRC32C */
    OBJECT_NO_MEMORY,
};

const char *object_status_text(enum object_status status);

/* The object status for a blob status. */
enum object_status object_status_from_blob(enum blob_status status);

/* Most buckets a store holds. */
#define OBJECTS_MAX_BUCKETS 1000

/* When metadata changes and finished blobs reach the device (from --fsync). */
enum objects_sync {
    OBJECTS_SYNC_NEVER = 0, /* left to the kernel */
    OBJECTS_SYNC_EVERYSEC,  /* objects_sync_pending() (housekeeping, each second) */
    OBJECTS_SYNC_NOW,       /* before the changing call returns */
};

struct objects_config {
    const char *directory; /* holds "journal", "snapshot" and "blobs/"; created if missing */
    uint32_t chunk_size;   /* of new blobs; 0 means BLOB_DEFAULT_CHUNK_SIZE */
    enum objects_sync sync;
    uint64_t min_part_size; /* smallest part but the last in a completed upload (S3: 5 MiB) */
};

struct objects;

/* Opens the object store: loads the snapshot and replays the journal (blocking; see
 * above). Returns NULL with a reason in ERROR (unusable directory, damaged journal or
 * snapshot, out of memory). */
struct objects *objects_open(const struct objects_config *config, char *error, size_t error_size);

/* A clean close: writes a snapshot (so the next open replays nothing) and frees
 * everything. No other thread may use the store any more, and every writer and reader
 * must have ended. */
void objects_close(struct objects *objects);

/* The blob store under the objects directory, where new versions' bytes are written
 * (blob_writer_open()). Owned by OBJECTS. */
struct blob_store *objects_blobs(struct objects *objects);

/* Syncs the journal and the blobs finished since the last call (OBJECTS_SYNC_EVERYSEC;
 * does nothing otherwise). Returns OBJECT_OK or OBJECT_IO_ERROR. */
enum object_status objects_sync_pending(struct objects *objects);

/* ---- buckets ---------------------------------------------------------------------- */

/* Whether NAME (LENGTH bytes) is a valid S3 bucket name: 3 to 63 characters of
 * lower-case letters, digits, '.' and '-', starting and ending with a letter or digit,
 * no "..", not formatted like an IPv4 address, not starting with "xn--" and not ending
 * with "-s3alias". */
bool objects_bucket_name_valid(const char *name, size_t length);

enum object_versioning {
    OBJECT_VERSIONING_OFF = 0, /* never enabled: every key has only its null version */
    OBJECT_VERSIONING_ENABLED,
    OBJECT_VERSIONING_SUSPENDED,
};

struct object_bucket_info {
    char name[OBJECT_BUCKET_NAME_MAX + 1];
    int64_t created_ms; /* Unix epoch milliseconds */
    enum object_versioning versioning;
    uint64_t quota;    /* bytes; 0 means none */
    uint64_t objects;  /* keys whose current version is not a delete marker */
    uint64_t versions; /* versions, delete markers included */
    uint64_t bytes;    /* the lengths of every version (what the quota counts) */
    uint64_t uploads;  /* multipart uploads in progress */
};

/* Creates bucket NAME. Returns OBJECT_OK, OBJECT_INVALID_BUCKET_NAME, OBJECT_BUCKET_EXISTS,
 * OBJECT_TOO_MANY_BUCKETS or OBJECT_IO_ERROR. */
enum object_status objects_bucket_create(struct objects *objects, const char *name, size_t length);

/* Deletes bucket NAME, which must hold no version (its uploads in progress are aborted).
 * Returns OBJECT_OK, OBJECT_NO_SUCH_BUCKET, OBJECT_BUCKET_NOT_EMPTY or OBJECT_IO_ERROR. */
enum object_status objects_bucket_delete(struct objects *objects, const char *name, size_t length);

/* Fills *INFO for bucket NAME. Returns OBJECT_OK or OBJECT_NO_SUCH_BUCKET. */
enum object_status objects_bucket_info(struct objects *objects, const char *name, size_t length,
                                       struct object_bucket_info *info);

/* Fills INFOS (room for MAXIMUM) with every bucket, in name order. Returns how many
 * buckets there are (which may be more than MAXIMUM). */
size_t objects_bucket_list(struct objects *objects, struct object_bucket_info *infos,
                           size_t maximum);

/* Sets bucket NAME's versioning to ENABLED or SUSPENDED (OFF is refused with
 * OBJECT_INVALID_RANGE: a bucket once versioned cannot go back). Returns OBJECT_OK,
 * OBJECT_NO_SUCH_BUCKET or OBJECT_IO_ERROR. */
enum object_status objects_bucket_set_versioning(struct objects *objects, const char *name,
                                                 size_t length, enum object_versioning state);

/* Sets bucket NAME's quota in bytes (0: none). Returns OBJECT_OK, OBJECT_NO_SUCH_BUCKET
 * or OBJECT_IO_ERROR. */
enum object_status objects_bucket_set_quota(struct objects *objects, const char *name,
                                            size_t length, uint64_t quota);

/* ---- versions --------------------------------------------------------------------- */

/* What a version is. Strings are NUL-terminated. The extents and attributes point into
 * memory owned by whoever filled the struct (see each function). */
struct object_info {
    char version_id[OBJECT_VERSION_ID_MAX + 1]; /* "null" for the null version */
    char etag[OBJECT_ETAG_MAX + 1];             /* without quotes */
    bool delete_marker;
    bool is_latest;
    uint64_t length;
    uint32_t crc32c;     /* CRC32C of the whole value */
    int64_t modified_ms; /* Unix epoch milliseconds */
    uint32_t parts;      /* parts of the completed upload it came from; 0 for a single PUT */
    /* Opaque to the engine: the front end's stored headers (content type, user metadata). */
    const unsigned char *attributes;
    size_t attributes_length;
};

/* A version found for reading: its info, and its extents (owned by the handle), whose
 * blobs it holds (blob_store_hold()) until it is cleared. */
struct object_handle {
    struct object_info info;
    struct blob_extent *extents;
    size_t extent_count;
    unsigned char *attribute_storage; /* owns info.attributes */
    struct blob_store *holder;        /* the store whose blobs it holds, or NULL */
};

/* Lets go of the handle's hold on its blobs (a blob whose version was replaced or
 * deleted meanwhile, and that nothing else holds, is removed by this call:
 * blob_store_unhold()) and frees what it owns (not the handle itself). Call it without
 * the object store's lock (never from inside an objects_* call). A zeroed handle
 * clears to nothing. */
void object_handle_clear(struct object_handle *handle);

/* Looks up KEY in BUCKET: its current version when VERSION_ID is NULL, else that
 * version. Fills *HANDLE (the caller clears it with object_handle_clear() on OBJECT_OK;
 * also on OBJECT_NO_SUCH_KEY / OBJECT_IS_DELETE_MARKER, where handle->info describes the
 * delete marker when the key has one). Returns OBJECT_OK, OBJECT_NO_SUCH_BUCKET,
 * OBJECT_NO_SUCH_KEY (no key, or its current version is a delete marker: then
 * handle->info.delete_marker is true), OBJECT_NO_SUCH_VERSION, OBJECT_IS_DELETE_MARKER (the
 * version asked for is a delete marker) or OBJECT_NO_MEMORY.
 *
 * On OBJECT_OK the handle holds the version's blobs, taken under the store's lock, so
 * no change after the lookup can remove them until the handle is cleared; a reader
 * opened on handle->extents before that (blob_reader_open(), which holds them in turn)
 * reads the whole version for as long as it lives, whatever later puts, overwrites and
 * deletes do: a writer of a new version never disturbs a reader of the old one. */
enum object_status objects_get(struct objects *objects, const char *bucket, size_t bucket_length,
                               const void *key, size_t key_length, const char *version_id,
                               struct object_handle *handle);

/* Makes the finished blob DIGEST the new current version of KEY in BUCKET, with
 * ATTRIBUTES (copied). In a bucket with versioning OFF or SUSPENDED it replaces the key's
 * null version (whose blobs are then removed unless something else refers to them); with
 * ENABLED it adds a version with a new id. On OBJECT_OK fills *INFO (attributes NULL)
 * when INFO is not NULL. On every status the blob is the store's (removed on an error).
 * Returns OBJECT_OK, OBJECT_NO_SUCH_BUCKET, OBJECT_KEY_TOO_LONG,
 * OBJECT_ATTRIBUTES_TOO_LARGE, OBJECT_QUOTA_EXCEEDED, OBJECT_IO_ERROR or OBJECT_NO_MEMORY. */
enum object_status objects_put(struct objects *objects, const char *bucket, size_t bucket_length,
                               const void *key, size_t key_length, const struct blob_digest *digest,
                               const void *attributes, size_t attributes_length,
                               struct object_info *info);

/* Copies a version (the current one of SOURCE_KEY when SOURCE_VERSION is NULL) to
 * DESTINATION_KEY as put does, by reference: the new version shares the source's blobs
 * and keeps its etag, crc32c and parts. ATTRIBUTES replace the source's when not NULL.
 * Returns put's statuses and get's (for the source); fills *INFO as put does. */
enum object_status objects_copy(struct objects *objects, const char *source_bucket,
                                size_t source_bucket_length, const void *source_key,
                                size_t source_key_length, const char *source_version,
                                const char *bucket, size_t bucket_length, const void *key,
                                size_t key_length, const void *attributes, size_t attributes_length,
                                struct object_info *info);

/* What a delete did. */
struct object_delete_result {
    bool delete_marker; /* a delete marker was created, or the version removed was one */
    char version_id[OBJECT_VERSION_ID_MAX + 1]; /* the marker's or the removed version's id */
};

/* Deletes KEY in BUCKET. VERSION_ID NULL: with versioning OFF removes the key (OBJECT_OK
 * even when it did not exist, as S3); with ENABLED adds a delete marker; with SUSPENDED
 * replaces the null version with a null delete marker. VERSION_ID set: removes that
 * version for good (OBJECT_OK when there was none, as S3; the key's newest remaining
 * version becomes current). Fills *RESULT when not NULL. Returns OBJECT_OK,
 * OBJECT_NO_SUCH_BUCKET, OBJECT_KEY_TOO_LONG or OBJECT_IO_ERROR. */
enum object_status objects_delete(struct objects *objects, const char *bucket, size_t bucket_length,
                                  const void *key, size_t key_length, const char *version_id,
                                  struct object_delete_result *result);

/* ---- listing ---------------------------------------------------------------------- */

struct object_list_query {
    const void *prefix; /* only keys that start with it (NULL or length 0: all) */
    size_t prefix_length;
    /* Keys that hold DELIMITER after the prefix are rolled up into one common prefix
     * (the key up to and including the first DELIMITER after the prefix). */
    const void *delimiter;
    size_t delimiter_length;
    /* Start after this key (ListObjects marker, V2 start-after or continuation token);
     * a common prefix equal to it is skipped too. */
    const void *after;
    size_t after_length;
    /* Versions only: with AFTER, start after this version of AFTER (the key's versions
     * newer than it, and it, are skipped). */
    const char *after_version_id;
    size_t max_keys; /* entries (keys plus common prefixes) at most; 0 returns none */
    bool versions;   /* list every version and delete marker, newest first per key */
};

struct object_list_entry {
    unsigned char *key; /* owned by the result */
    size_t key_length;
    bool common_prefix;      /* a rolled-up prefix: info is not set */
    struct object_info info; /* attributes are not set */
};

struct object_list_result {
    struct object_list_entry *entries;
    size_t count;
    /* More entries follow: list again with AFTER = the last entry's key (and, for
     * versions, AFTER_VERSION_ID = its version id). */
    bool truncated;
};

/* Lists BUCKET in key order as QUERY says (without versions, keys whose current version
 * is a delete marker are left out). Fills *RESULT (free it with object_list_free()).
 * Returns OBJECT_OK, OBJECT_NO_SUCH_BUCKET or OBJECT_NO_MEMORY. */
enum object_status objects_list(struct objects *objects, const char *bucket, size_t bucket_length,
                                const struct object_list_query *query,
                                struct object_list_result *result);

void object_list_free(struct object_list_result *result);

/* ---- multipart uploads ------------------------------------------------------------ */

/* Starts a multipart upload of KEY in BUCKET with ATTRIBUTES (copied); writes its id
 * (OBJECT_UPLOAD_ID_MAX characters at most, NUL-terminated) to UPLOAD_ID. Returns
 * OBJECT_OK, OBJECT_NO_SUCH_BUCKET, OBJECT_KEY_TOO_LONG, OBJECT_ATTRIBUTES_TOO_LARGE or
 * OBJECT_IO_ERROR. */
enum object_status objects_upload_create(struct objects *objects, const char *bucket,
                                         size_t bucket_length, const void *key, size_t key_length,
                                         const void *attributes, size_t attributes_length,
                                         char upload_id[OBJECT_UPLOAD_ID_MAX + 1]);

/* The key an upload was started for: copies it to KEY (room for OBJECT_MAX_KEY_LENGTH)
 * and sets *KEY_LENGTH. Returns OBJECT_OK, OBJECT_NO_SUCH_BUCKET or OBJECT_NO_SUCH_UPLOAD. */
enum object_status objects_upload_key(struct objects *objects, const char *bucket,
                                      size_t bucket_length, const char *upload_id,
                                      unsigned char *key, size_t *key_length);

/* Records the finished blob DIGEST as part PART_NUMBER (1 to 10,000) of upload UPLOAD_ID,
 * replacing a part of that number uploaded before. The part's ETag (written to ETAG when
 * not NULL) is the hex MD5 of its bytes. On every status the blob is the store's.
 * Returns OBJECT_OK, OBJECT_NO_SUCH_BUCKET, OBJECT_NO_SUCH_UPLOAD, OBJECT_INVALID_RANGE
 * (part number out of range), OBJECT_IO_ERROR or OBJECT_NO_MEMORY. */
enum object_status objects_upload_part(struct objects *objects, const char *bucket,
                                       size_t bucket_length, const char *upload_id, int part_number,
                                       const struct blob_digest *digest,
                                       char etag[OBJECT_ETAG_MAX + 1]);

/* Records bytes [FIRST, FIRST + LENGTH) of a version (the current one of SOURCE_KEY when
 * SOURCE_VERSION is NULL) as part PART_NUMBER, by reference (UploadPartCopy). MD5 and
 * CRC32C are those of these bytes, which the caller computed by reading them (the MD5
 * makes the part's ETag; the CRC32C goes into the completed object's, which cannot be
 * derived from the source's for a range of it). Returns upload_part's statuses, get's
 * for the source, and OBJECT_INVALID_RANGE. */
enum object_status objects_upload_part_copy(
    struct objects *objects, const char *bucket, size_t bucket_length, const char *upload_id,
    int part_number, const char *source_bucket, size_t source_bucket_length, const void *source_key,
    size_t source_key_length, const char *source_version, uint64_t first, uint64_t length,
    const unsigned char md5[16], uint32_t crc32c, char etag[OBJECT_ETAG_MAX + 1]);

/* A part as CompleteMultipartUpload names it. */
struct object_part_ref {
    int part_number;
    char etag[OBJECT_ETAG_MAX + 1]; /* without quotes */
};

/* Completes upload UPLOAD_ID with PARTS (COUNT of them, ascending part numbers, each
 * uploaded with that ETag, each but the last at least min_part_size bytes): the new
 * version's bytes are the parts' in that order, its ETag the hex MD5 of the parts'
 * binary MD5s followed by "-COUNT", its CRC32C that of the whole value. Parts not named
 * are removed. Then as objects_put(); fills *INFO. Returns put's statuses and
 * OBJECT_NO_SUCH_UPLOAD, OBJECT_INVALID_PART, OBJECT_INVALID_PART_ORDER or
 * OBJECT_ENTITY_TOO_SMALL (the upload is then left as it was). */
enum object_status objects_upload_complete(struct objects *objects, const char *bucket,
                                           size_t bucket_length, const char *upload_id,
                                           const struct object_part_ref *parts, size_t count,
                                           struct object_info *info);

/* Aborts upload UPLOAD_ID and removes its parts. Returns OBJECT_OK,
 * OBJECT_NO_SUCH_BUCKET, OBJECT_NO_SUCH_UPLOAD or OBJECT_IO_ERROR. */
enum object_status objects_upload_abort(struct objects *objects, const char *bucket,
                                        size_t bucket_length, const char *upload_id);

struct object_part_info {
    int part_number;
    char etag[OBJECT_ETAG_MAX + 1];
    uint64_t length;
    uint32_t crc32c;
    int64_t modified_ms;
};

struct object_parts_result {
    struct object_part_info *parts;
    size_t count;
    bool truncated;     /* more parts follow: list again after the last part number */
    unsigned char *key; /* the upload's key, owned by the result */
    size_t key_length;
    const unsigned char *attributes; /* the upload's attributes, owned by the result */
    size_t attributes_length;
};

/* Lists upload UPLOAD_ID's parts with numbers above AFTER_PART, at most MAX_PARTS, in
 * ascending order. Fills *RESULT (free with object_parts_free()). Returns OBJECT_OK,
 * OBJECT_NO_SUCH_BUCKET, OBJECT_NO_SUCH_UPLOAD or OBJECT_NO_MEMORY. */
enum object_status objects_upload_list_parts(struct objects *objects, const char *bucket,
                                             size_t bucket_length, const char *upload_id,
                                             int after_part, size_t max_parts,
                                             struct object_parts_result *result);

void object_parts_free(struct object_parts_result *result);

struct object_upload_entry {
    unsigned char *key; /* owned by the result */
    size_t key_length;
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    int64_t initiated_ms;
};

struct object_uploads_result {
    struct object_upload_entry *entries;
    size_t count;
    bool truncated; /* more follow: list again after the last entry's key and upload id */
};

/* Lists BUCKET's uploads in progress whose key starts with PREFIX, ordered by key and
 * then by when they started, after (AFTER_KEY, AFTER_UPLOAD_ID) (NULL: from the start; an
 * AFTER_UPLOAD_ID of NULL skips every upload of AFTER_KEY), at most MAX_UPLOADS. Fills
 * *RESULT (free with object_uploads_free()). Returns OBJECT_OK, OBJECT_NO_SUCH_BUCKET or
 * OBJECT_NO_MEMORY. */
enum object_status objects_upload_list(struct objects *objects, const char *bucket,
                                       size_t bucket_length, const void *prefix,
                                       size_t prefix_length, const void *after_key,
                                       size_t after_key_length, const char *after_upload_id,
                                       size_t max_uploads, struct object_uploads_result *result);

void object_uploads_free(struct object_uploads_result *result);

/* ---- figures ---------------------------------------------------------------------- */

struct objects_stats {
    uint64_t buckets;
    uint64_t objects;
    uint64_t versions;
    uint64_t bytes;          /* the lengths of every version */
    uint64_t blob_bytes;     /* bytes of blob files on disk */
    uint64_t uploads;        /* multipart uploads in progress */
    uint64_t metadata_bytes; /* DRAM the index holds (approximate) */
    uint64_t journal_bytes;
    uint64_t recovery_ms; /* how long objects_open() took */
};

void objects_get_stats(struct objects *objects, struct objects_stats *stats);

#endif
