/* The object store's public calls (engine/objects.h): buckets, versions, listing and
 * multipart uploads over the in-memory state (object_state.c), the key index
 * (object_index.c) and the journal (object_journal.c); objects_internal.h says how a
 * change is planned, journaled and applied, and how the lock is used. */
#include "engine/objects_internal.h"

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

const char *object_status_text(enum object_status status) {
    switch (status) {
    case OBJECT_OK:
        return "ok";
    case OBJECT_NO_SUCH_BUCKET:
        return "no such bucket";
    case OBJECT_BUCKET_EXISTS:
        return "bucket exists";
    case OBJECT_BUCKET_NOT_EMPTY:
        return "bucket not empty";
    case OBJECT_INVALID_BUCKET_NAME:
        return "invalid bucket name";
    case OBJECT_TOO_MANY_BUCKETS:
        return "too many buckets";
    case OBJECT_NO_SUCH_KEY:
        return "no such key";
    case OBJECT_NO_SUCH_VERSION:
        return "no such version";
    case OBJECT_IS_DELETE_MARKER:
        return "the version is a delete marker";
    case OBJECT_KEY_TOO_LONG:
        return "key empty or too long";
    case OBJECT_ATTRIBUTES_TOO_LARGE:
        return "attributes too large";
    case OBJECT_QUOTA_EXCEEDED:
        return "quota exceeded";
    case OBJECT_NO_SUCH_UPLOAD:
        return "no such upload";
    case OBJECT_INVALID_PART:
        return "invalid part";
    case OBJECT_INVALID_PART_ORDER:
        return "invalid part order";
    case OBJECT_ENTITY_TOO_SMALL:
        return "part too small";
    case OBJECT_INVALID_RANGE:
        return "invalid range";
    case OBJECT_IO_ERROR:
        return "I/O error";
    case OBJECT_NO_SPACE:
        return "no space left on the device";
    case OBJECT_CORRUPT:
        return "stored bytes failed their checksum";
    case OBJECT_NO_MEMORY:
        return "out of memory";
    }
    return "unknown";
}

enum object_status object_status_from_blob(enum blob_status status) {
    switch (status) {
    case BLOB_OK:
        return OBJECT_OK;
    case BLOB_NO_SPACE:
        return OBJECT_NO_SPACE;
    case BLOB_CORRUPT:
        return OBJECT_CORRUPT;
    case BLOB_NO_MEMORY:
        return OBJECT_NO_MEMORY;
    case BLOB_NOT_FOUND: /* a version's blob is gone: its bytes cannot be read */
    case BLOB_IO_ERROR:
    case BLOB_PENDING:
        break;
    }
    return OBJECT_IO_ERROR;
}

/* ---- small helpers ------------------------------------------------------------------- */

static void hex_encode(const unsigned char *bytes, size_t length, char *text) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++) {
        text[2 * i] = digits[bytes[i] >> 4];
        text[2 * i + 1] = digits[bytes[i] & 15];
    }
    text[2 * length] = '\0';
}

/* 64 random bits (getrandom(), or xorshift of the store's state where that fails). Write
 * lock held. */
static uint64_t random_u64(struct objects *objects) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    uint64_t value;
    if (getrandom(&value, sizeof(value), GRND_NONBLOCK) == (ssize_t)sizeof(value)) return value;
    uint64_t x = objects->random_state ^ (uint64_t)clock_monotonic_ns();
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    objects->random_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* An id of 32 lower-case hex digits: SEQUENCE (so ids sort by creation) then random bits
 * (so they cannot be guessed). Write lock held. */
static void sequenced_id(struct objects *objects, uint64_t sequence, char id[33]) {
    unsigned char bytes[16];
    uint64_t random = random_u64(objects);
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(sequence >> (56 - 8 * i));
        bytes[8 + i] = (unsigned char)(random >> (56 - 8 * i));
    }
    hex_encode(bytes, 16, id);
}

static bool key_length_valid(size_t key_length) {
    return key_length >= 1 && key_length <= OBJECT_MAX_KEY_LENGTH;
}

/* Gives VERSION its sequence, id (a new one in a versioned bucket, else "null") and
 * modification time. Write lock held. */
static void version_stamp(struct objects *objects, const struct object_bucket *bucket,
                          struct object_version *version) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    version->sequence = objects->next_sequence++;
    if (bucket->versioning == OBJECT_VERSIONING_ENABLED) {
        sequenced_id(objects, version->sequence, version->version_id);
    } else {
        strcpy(version->version_id, "null");
    }
    version->modified_ms = clock_realtime_ms();
}

static void fill_info(struct object_info *info, const struct object_version *version,
                      bool is_latest) {
    memset(info, 0, sizeof(*info));
    memcpy(info->version_id, version->version_id, sizeof(info->version_id));
    memcpy(info->etag, version->etag, sizeof(info->etag));
    info->delete_marker = version->delete_marker;
    info->is_latest = is_latest;
    info->length = version->length;
    info->crc32c = version->crc32c;
    info->modified_ms = version->modified_ms;
    info->parts = version->parts;
}

/* Ends a change after the lock is released: unlinks the blobs it let go, and compacts
 * the journal when it is due. */
static void change_done(struct objects *objects, struct object_change *change) {
    change_finish(objects, change);
    objects_compact_if_due(objects);
}

/* Journals BUFFER's record. Returns OBJECT_OK, OBJECT_NO_MEMORY (the buffer failed),
 * OBJECT_IO_ERROR or OBJECT_NO_SPACE; frees the buffer. Write lock held. */
static enum object_status journal_record(struct objects *objects, struct record_buffer *buffer) {
    enum object_status status = buffer->failed ? OBJECT_NO_MEMORY : journal_append(objects, buffer);
    record_buffer_free(buffer);
    return status;
}

/* ---- opening and closing ------------------------------------------------------------- */

struct sweep {
    struct objects *objects;
    uint64_t removed;
};

/* Removes blob ID when nothing refers to it (recovery). */
static void sweep_blob(void *context, uint64_t id) {
    struct sweep *sweep = context;
    if (id_map_get(&sweep->objects->blob_references, id) != 0) return;
    if (blob_store_unlink(sweep->objects->blobs, id) == BLOB_OK) sweep->removed++;
}

/* Frees OBJECTS and what it holds (no snapshot). */
static void objects_free(struct objects *objects) {
    state_free(objects);
    free(objects->buckets);
    if (objects->journal_fd >= 0) close(objects->journal_fd);
    blob_store_close(objects->blobs);
    pthread_rwlock_destroy(&objects->lock);
    pthread_mutex_destroy(&objects->compaction_lock);
    free(objects->directory);
    free(objects);
}

struct objects *objects_open(const struct objects_config *config, char *error, size_t error_size) {
    int64_t started = clock_monotonic_ms();
    if (config->directory == NULL || config->directory[0] == '\0') {
        snprintf(error, error_size, "no objects directory");
        return NULL;
    }
    if (mkdir(config->directory, 0755) != 0 && errno != EEXIST) {
        snprintf(error, error_size, "cannot create %s: %s", config->directory, strerror(errno));
        return NULL;
    }
    struct objects *objects = calloc(1, sizeof(*objects));
    if (objects == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    objects->journal_fd = -1;
    objects->sync = config->sync;
    objects->min_part_size = config->min_part_size;
    objects->directory = strdup(config->directory);
    objects->buckets = calloc(OBJECTS_MAX_BUCKETS, sizeof(*objects->buckets));
    atomic_store(&objects->compaction_minimum, OBJECTS_COMPACTION_MINIMUM);
    objects->random_state = (uint64_t)clock_monotonic_ns() | 1;
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&objects->lock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    pthread_mutex_init(&objects->compaction_lock, NULL);
    if (objects->directory == NULL || objects->buckets == NULL) {
        snprintf(error, error_size, "out of memory");
        objects_free(objects);
        return NULL;
    }
    char blobs_directory[4096];
    snprintf(blobs_directory, sizeof(blobs_directory), "%s/blobs", config->directory);
    enum blob_sync blob_sync = config->sync == OBJECTS_SYNC_NOW        ? BLOB_SYNC_NOW
                               : config->sync == OBJECTS_SYNC_EVERYSEC ? BLOB_SYNC_LATER
                                                                       : BLOB_SYNC_NEVER;
    objects->blobs =
        blob_store_open(blobs_directory, config->chunk_size, blob_sync, error, error_size);
    if (objects->blobs == NULL) {
        objects_free(objects);
        return NULL;
    }

    bool stale_journal;
    objects_write_lock(objects);
    bool recovered = journal_recover(objects, &stale_journal, error, error_size);
    objects_write_unlock(objects);
    if (!recovered) {
        objects_free(objects);
        return NULL;
    }
    /* The journal was the snapshot's base: start the snapshot's generation now. */
    if (stale_journal) objects_compact(objects, true);

    struct sweep sweep = {.objects = objects};
    objects_read_lock(objects);
    enum blob_status swept = blob_store_for_each(objects->blobs, sweep_blob, &sweep);
    uint64_t buckets = objects->bucket_count, versions = 0;
    for (size_t i = 0; i < objects->bucket_count; i++)
        versions += objects->buckets[i]->versions;
    objects_read_unlock(objects);
    if (swept != BLOB_OK) {
        log_event(LOG_WARNING, "objects_blob_sweep_failed", "directory=%s error=\"%s\"",
                  blobs_directory, blob_status_text(swept));
    }
    objects->recovery_ms = (uint64_t)(clock_monotonic_ms() - started);
    log_event(LOG_INFO, "objects_recovered",
              "directory=%s buckets=%" PRIu64 " versions=%" PRIu64
              " unreferenced_blobs_removed=%" PRIu64 " journal_bytes=%" PRIu64
              " milliseconds=%" PRIu64,
              objects->directory, buckets, versions, sweep.removed,
              atomic_load(&objects->journal_bytes), objects->recovery_ms);
    return objects;
}

void objects_close(struct objects *objects) {
    if (objects == NULL) return;
    objects_compact(objects, true);
    objects_free(objects);
}

void objects_abandon(struct objects *objects) {
    if (objects == NULL) return;
    objects_free(objects);
}

void objects_set_compaction_minimum(struct objects *objects, uint64_t bytes) {
    atomic_store(&objects->compaction_minimum, bytes);
}

struct blob_store *objects_blobs(struct objects *objects) {
    return objects->blobs;
}

enum object_status objects_sync_pending(struct objects *objects) {
    if (objects->sync != OBJECTS_SYNC_EVERYSEC) return OBJECT_OK;
    /* Blobs first: a synced journal record should not name an unsynced blob. */
    enum object_status status = object_status_from_blob(blob_store_sync_pending(objects->blobs));
    objects_read_lock(objects);
    int fd = dup(objects->journal_fd);
    objects_read_unlock(objects);
    if (fd < 0 || fdatasync(fd) != 0) {
        log_event(LOG_ERROR, "objects_journal_sync_failed", "directory=%s error=\"%s\"",
                  objects->directory, strerror(errno));
        status = OBJECT_IO_ERROR;
    }
    if (fd >= 0) close(fd);
    return status;
}

/* ---- buckets ------------------------------------------------------------------------- */

/* Whether NAME looks like an IPv4 address: four groups of 1 to 3 digits. */
static bool looks_like_ipv4(const char *name, size_t length) {
    int groups = 1, digits = 0;
    for (size_t i = 0; i < length; i++) {
        if (name[i] == '.') {
            if (digits == 0) return false;
            groups++;
            digits = 0;
        } else if (name[i] >= '0' && name[i] <= '9') {
            if (++digits > 3) return false;
        } else {
            return false;
        }
    }
    return groups == 4 && digits > 0;
}

bool objects_bucket_name_valid(const char *name, size_t length) {
    if (name == NULL || length < 3 || length > OBJECT_BUCKET_NAME_MAX) return false;
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        bool alphanumeric = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alphanumeric && c != '.' && c != '-') return false;
        if ((i == 0 || i == length - 1) && !alphanumeric) return false;
        if (c == '.' && i + 1 < length && name[i + 1] == '.') return false;
    }
    if (looks_like_ipv4(name, length)) return false;
    if (length >= 4 && memcmp(name, "xn--", 4) == 0) return false;
    if (length >= 8 && memcmp(name + length - 8, "-s3alias", 8) == 0) return false;
    return true;
}

enum object_status objects_bucket_create(struct objects *objects, const char *name, size_t length) {
    if (!objects_bucket_name_valid(name, length)) return OBJECT_INVALID_BUCKET_NAME;
    struct object_change change = {0};
    enum object_status status = OBJECT_OK;
    objects_write_lock(objects);
    struct object_bucket *bucket = NULL;
    if (bucket_find(objects, name, length) != NULL) {
        status = OBJECT_BUCKET_EXISTS;
    } else if (objects->bucket_count >= OBJECTS_MAX_BUCKETS) {
        status = OBJECT_TOO_MANY_BUCKETS;
    } else if ((bucket = bucket_allocate()) == NULL) {
        status = OBJECT_NO_MEMORY;
    } else {
        memcpy(bucket->name, name, length);
        bucket->name_length = length;
        bucket->created_ms = clock_realtime_ms();
        struct record_buffer buffer = {0};
        encode_bucket_create(&buffer, bucket);
        status = journal_record(objects, &buffer);
        if (status == OBJECT_OK) {
            apply_bucket_create(objects, bucket);
        } else {
            free(bucket);
        }
    }
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

enum object_status objects_bucket_delete(struct objects *objects, const char *name, size_t length) {
    struct object_change change = {0};
    enum object_status status = OBJECT_OK;
    objects_write_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, name, length);
    if (bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (bucket->versions > 0) {
        status = OBJECT_BUCKET_NOT_EMPTY;
    } else {
        struct record_buffer buffer = {0};
        encode_bucket_delete(&buffer, bucket);
        status = journal_record(objects, &buffer);
        if (status == OBJECT_OK) apply_bucket_delete(objects, bucket, &change);
    }
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

static void fill_bucket_info(struct object_bucket_info *info, const struct object_bucket *bucket) {
    memset(info, 0, sizeof(*info));
    memcpy(info->name, bucket->name, bucket->name_length);
    info->created_ms = bucket->created_ms;
    info->versioning = bucket->versioning;
    info->quota = bucket->quota;
    info->objects = bucket->objects;
    info->versions = bucket->versions;
    info->bytes = bucket->bytes;
    info->uploads = bucket->upload_count;
}

enum object_status objects_bucket_info(struct objects *objects, const char *name, size_t length,
                                       struct object_bucket_info *info) {
    objects_read_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, name, length);
    if (bucket != NULL) fill_bucket_info(info, bucket);
    objects_read_unlock(objects);
    return bucket != NULL ? OBJECT_OK : OBJECT_NO_SUCH_BUCKET;
}

size_t objects_bucket_list(struct objects *objects, struct object_bucket_info *infos,
                           size_t maximum) {
    objects_read_lock(objects);
    size_t count = objects->bucket_count;
    for (size_t i = 0; i < count && i < maximum; i++)
        fill_bucket_info(&infos[i], objects->buckets[i]);
    objects_read_unlock(objects);
    return count;
}

enum object_status objects_bucket_set_versioning(struct objects *objects, const char *name,
                                                 size_t length, enum object_versioning state) {
    if (state != OBJECT_VERSIONING_ENABLED && state != OBJECT_VERSIONING_SUSPENDED) {
        return OBJECT_INVALID_RANGE;
    }
    struct object_change change = {0};
    enum object_status status = OBJECT_OK;
    objects_write_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, name, length);
    if (bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (bucket->versioning != state) {
        struct record_buffer buffer = {0};
        encode_bucket_versioning(&buffer, bucket, state);
        status = journal_record(objects, &buffer);
        if (status == OBJECT_OK) bucket->versioning = state;
    }
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

enum object_status objects_bucket_set_quota(struct objects *objects, const char *name,
                                            size_t length, uint64_t quota) {
    struct object_change change = {0};
    enum object_status status = OBJECT_OK;
    objects_write_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, name, length);
    if (bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (bucket->quota != quota) {
        struct record_buffer buffer = {0};
        encode_bucket_quota(&buffer, bucket, quota);
        status = journal_record(objects, &buffer);
        if (status == OBJECT_OK) bucket->quota = quota;
    }
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

/* ---- versions ------------------------------------------------------------------------ */

/* Finds KEY's current version (VERSION_ID NULL) or version VERSION_ID in BUCKET: sets
 * *NODE and *VERSION (the version found, also a delete marker that is the answer).
 * Returns OBJECT_OK, OBJECT_NO_SUCH_KEY, OBJECT_NO_SUCH_VERSION or
 * OBJECT_IS_DELETE_MARKER. Lock held (either way). */
static enum object_status version_lookup(const struct object_bucket *bucket, const void *key,
                                         size_t key_length, const char *version_id,
                                         struct object_key **node_out,
                                         struct object_version **version_out) {
    *node_out = NULL;
    *version_out = NULL;
    struct object_key *node =
        key_length_valid(key_length) ? key_index_find(&bucket->index, key, key_length) : NULL;
    *node_out = node;
    if (version_id == NULL) {
        if (node == NULL) return OBJECT_NO_SUCH_KEY;
        *version_out = node->versions;
        return node->versions->delete_marker ? OBJECT_NO_SUCH_KEY : OBJECT_OK;
    }
    if (node == NULL) return OBJECT_NO_SUCH_VERSION;
    for (struct object_version *version = node->versions; version != NULL;
         version = version->older) {
        if (strcmp(version->version_id, version_id) == 0) {
            *version_out = version;
            return version->delete_marker ? OBJECT_IS_DELETE_MARKER : OBJECT_OK;
        }
    }
    return OBJECT_NO_SUCH_VERSION;
}

void object_handle_clear(struct object_handle *handle) {
    if (handle->holder != NULL) {
        blob_store_unhold(handle->holder, handle->extents, handle->extent_count);
    }
    free(handle->extents);
    free(handle->attribute_storage);
    memset(handle, 0, sizeof(*handle));
}

enum object_status objects_get(struct objects *objects, const char *bucket_name,
                               size_t bucket_length, const void *key, size_t key_length,
                               const char *version_id, struct object_handle *handle) {
    memset(handle, 0, sizeof(*handle));
    objects_read_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    enum object_status status = OBJECT_NO_SUCH_BUCKET;
    if (bucket != NULL) {
        struct object_key *node;
        struct object_version *version;
        status = version_lookup(bucket, key, key_length, version_id, &node, &version);
        if (version != NULL) fill_info(&handle->info, version, version == node->versions);
        if (status == OBJECT_OK) {
            size_t extents_size = version->extent_count * sizeof(struct blob_extent);
            handle->extents = malloc(extents_size ? extents_size : 1);
            handle->attribute_storage =
                malloc(version->attributes_length ? version->attributes_length : 1);
            if (handle->extents == NULL || handle->attribute_storage == NULL) {
                status = OBJECT_NO_MEMORY;
            } else {
                if (extents_size > 0) memcpy(handle->extents, version->extents, extents_size);
                handle->extent_count = version->extent_count;
                if (version->attributes_length > 0) {
                    memcpy(handle->attribute_storage, version->attributes,
                           version->attributes_length);
                }
                handle->info.attributes = handle->attribute_storage;
                handle->info.attributes_length = version->attributes_length;
                /* Held before the lock goes: an unlink of these blobs comes from a change,
                 * which waits for the lock, so it finds them held. */
                if (blob_store_hold(objects->blobs, handle->extents, handle->extent_count) !=
                    BLOB_OK) {
                    status = OBJECT_NO_MEMORY;
                } else {
                    handle->holder = objects->blobs;
                }
            }
        }
    }
    objects_read_unlock(objects);
    if (status == OBJECT_NO_MEMORY) object_handle_clear(handle);
    return status;
}

/* Makes VERSION (stamped; taken on every status) the newest version of KEY in BUCKET:
 * checks the quota, plans, journals it (as the completion of UPLOAD when not NULL, which
 * is then removed) and applies it. Fills *INFO when not NULL. Write lock held. */
static enum object_status put_version(struct objects *objects, struct object_bucket *bucket,
                                      const void *key, size_t key_length,
                                      struct object_version *version, struct object_upload *upload,
                                      struct object_change *change, struct object_info *info) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    uint64_t replaced = 0;
    if (strcmp(version->version_id, "null") == 0) {
        struct object_key *node = key_index_find(&bucket->index, key, key_length);
        for (struct object_version *old = node ? node->versions : NULL; old != NULL;
             old = old->older) {
            if (strcmp(old->version_id, "null") == 0) {
                replaced = old->length;
                break;
            }
        }
    }
    /* Only a change that grows the bucket can pass its quota. */
    if (bucket->quota != 0 && version->length > replaced &&
        bucket->bytes - replaced + version->length > bucket->quota) {
        free(version);
        return OBJECT_QUOTA_EXCEEDED;
    }
    struct version_put_plan plan;
    enum object_status status = plan_version_put(objects, bucket, key, key_length, version, &plan);
    if (status != OBJECT_OK) {
        free(version);
        return status;
    }
    struct record_buffer buffer = {0};
    if (upload != NULL) {
        encode_upload_complete(&buffer, bucket, upload->id, version);
    } else {
        encode_version_put(&buffer, bucket, key, key_length, version);
    }
    status = journal_record(objects, &buffer);
    if (status != OBJECT_OK) {
        plan_version_put_cancel(&plan);
        free(version);
        return status;
    }
    apply_version_put(objects, &plan, change);
    if (upload != NULL) apply_upload_remove(objects, upload, change);
    if (info != NULL) fill_info(info, version, true);
    return OBJECT_OK;
}

enum object_status objects_put(struct objects *objects, const char *bucket_name,
                               size_t bucket_length, const void *key, size_t key_length,
                               const struct blob_digest *digest, const void *attributes,
                               size_t attributes_length, struct object_info *info) {
    struct object_change change = {0};
    enum object_status status = OBJECT_OK;
    objects_write_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    struct object_version *version = NULL;
    if (bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (!key_length_valid(key_length)) {
        status = OBJECT_KEY_TOO_LONG;
    } else if (attributes_length > OBJECT_MAX_ATTRIBUTES) {
        status = OBJECT_ATTRIBUTES_TOO_LARGE;
    } else if ((version = version_allocate(1, attributes_length)) == NULL) {
        status = OBJECT_NO_MEMORY;
    } else {
        hex_encode(digest->md5, 16, version->etag);
        version->length = digest->length;
        version->crc32c = digest->crc32c;
        version->extents[0] = (struct blob_extent){digest->id, 0, digest->length};
        if (attributes_length > 0) memcpy(version->attributes, attributes, attributes_length);
        version_stamp(objects, bucket, version);
        status = put_version(objects, bucket, key, key_length, version, NULL, &change, info);
    }
    /* The blob is the store's: on an error nothing refers to it, so it goes. */
    bool drop_blob = status != OBJECT_OK && id_map_get(&objects->blob_references, digest->id) == 0;
    objects_write_unlock(objects);
    if (drop_blob) blob_store_unlink(objects->blobs, digest->id);
    change_done(objects, &change);
    return status;
}

enum object_status objects_copy(struct objects *objects, const char *source_bucket_name,
                                size_t source_bucket_length, const void *source_key,
                                size_t source_key_length, const char *source_version,
                                const char *bucket_name, size_t bucket_length, const void *key,
                                size_t key_length, const void *attributes, size_t attributes_length,
                                struct object_info *info) {
    struct object_change change = {0};
    enum object_status status = OBJECT_OK;
    objects_write_lock(objects);
    struct object_bucket *source_bucket =
        bucket_find(objects, source_bucket_name, source_bucket_length);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    struct object_key *node;
    struct object_version *source = NULL;
    if (source_bucket == NULL || bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (!key_length_valid(key_length)) {
        status = OBJECT_KEY_TOO_LONG;
    } else if (attributes != NULL && attributes_length > OBJECT_MAX_ATTRIBUTES) {
        status = OBJECT_ATTRIBUTES_TOO_LARGE;
    } else {
        status = version_lookup(source_bucket, source_key, source_key_length, source_version, &node,
                                &source);
    }
    if (status == OBJECT_OK) {
        const void *new_attributes = attributes != NULL ? attributes : source->attributes;
        size_t new_length = attributes != NULL ? attributes_length : source->attributes_length;
        struct object_version *version = version_allocate(source->extent_count, new_length);
        if (version == NULL) {
            status = OBJECT_NO_MEMORY;
        } else {
            memcpy(version->etag, source->etag, sizeof(version->etag));
            version->length = source->length;
            version->crc32c = source->crc32c;
            version->parts = source->parts;
            if (source->extent_count > 0) {
                memcpy(version->extents, source->extents,
                       source->extent_count * sizeof(struct blob_extent));
            }
            if (new_length > 0) memcpy(version->attributes, new_attributes, new_length);
            version_stamp(objects, bucket, version);
            status = put_version(objects, bucket, key, key_length, version, NULL, &change, info);
        }
    }
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

enum object_status objects_delete(struct objects *objects, const char *bucket_name,
                                  size_t bucket_length, const void *key, size_t key_length,
                                  const char *version_id, struct object_delete_result *result) {
    struct object_change change = {0};
    struct object_delete_result outcome = {0};
    enum object_status status = OBJECT_OK;
    objects_write_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    if (bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (!key_length_valid(key_length)) {
        status = OBJECT_KEY_TOO_LONG;
    } else if (version_id == NULL && bucket->versioning != OBJECT_VERSIONING_OFF) {
        /* A delete marker: a new version with ENABLED, the null version with SUSPENDED. */
        struct object_version *marker = version_allocate(0, 0);
        if (marker == NULL) {
            status = OBJECT_NO_MEMORY;
        } else {
            marker->delete_marker = true;
            version_stamp(objects, bucket, marker);
            outcome.delete_marker = true;
            memcpy(outcome.version_id, marker->version_id, sizeof(outcome.version_id));
            status = put_version(objects, bucket, key, key_length, marker, NULL, &change, NULL);
        }
    } else {
        /* Removes one version for good: the named one, or the null one (versioning OFF). */
        const char *target = version_id != NULL ? version_id : "null";
        struct object_key *node = key_index_find(&bucket->index, key, key_length);
        struct object_version *found = NULL;
        for (struct object_version *version = node ? node->versions : NULL; version != NULL;
             version = version->older) {
            if (strcmp(version->version_id, target) == 0) {
                found = version;
                break;
            }
        }
        if (version_id != NULL)
            snprintf(outcome.version_id, sizeof(outcome.version_id), "%s", version_id);
        if (found != NULL) {
            outcome.delete_marker = found->delete_marker;
            struct record_buffer buffer = {0};
            encode_version_remove(&buffer, bucket, key, key_length, target);
            status = journal_record(objects, &buffer);
            if (status == OBJECT_OK) {
                apply_version_remove(objects, bucket, key, key_length, target, &change);
            }
        }
    }
    objects_write_unlock(objects);
    if (status == OBJECT_OK && result != NULL) *result = outcome;
    change_done(objects, &change);
    return status;
}

/* ---- listing ------------------------------------------------------------------------- */

/* Adds an entry to RESULT (ENTRIES grown as needed, *CAPACITY its room): KEY_LENGTH
 * bytes of KEY, a common prefix when VERSION is NULL. Returns false when out of memory. */
static bool list_add(struct object_list_result *result, size_t *capacity, const void *key,
                     size_t key_length, const struct object_version *version, bool is_latest) {
    if (result->count == *capacity) {
        size_t grown = *capacity ? *capacity * 2 : 16;
        struct object_list_entry *bigger = realloc(result->entries, grown * sizeof(*bigger));
        if (bigger == NULL) return false;
        result->entries = bigger;
        *capacity = grown;
    }
    struct object_list_entry *entry = &result->entries[result->count];
    memset(entry, 0, sizeof(*entry));
    entry->key = malloc(key_length ? key_length : 1);
    if (entry->key == NULL) return false;
    memcpy(entry->key, key, key_length);
    entry->key_length = key_length;
    if (version == NULL) {
        entry->common_prefix = true;
    } else {
        fill_info(&entry->info, version, is_latest);
    }
    result->count++;
    return true;
}

/* The first node of INDEX after every key that starts with PREFIX (PREFIX_LENGTH bytes,
 * at least 1): a seek to the prefix with its last byte below 0xFF incremented. */
static struct object_key *seek_past_prefix(const struct key_index *index,
                                           const unsigned char *prefix, size_t prefix_length) {
    unsigned char bound[OBJECT_MAX_KEY_LENGTH];
    size_t length = prefix_length;
    memcpy(bound, prefix, length);
    while (length > 0 && bound[length - 1] == 0xFF)
        length--;
    if (length == 0) return NULL;
    bound[length - 1]++;
    return key_index_seek(index, bound, length, true);
}

/* Where the versions of NODE (the AFTER key of a versions listing) resume after version
 * AFTER_VERSION_ID: the version after it, or, when it is gone, the first version older
 * than it (ids of versioned puts begin with their sequence). */
static struct object_version *versions_after(const struct object_key *node,
                                             const char *after_version_id) {
    for (struct object_version *version = node->versions; version != NULL;
         version = version->older) {
        if (strcmp(version->version_id, after_version_id) == 0) return version->older;
    }
    if (strlen(after_version_id) != 32) return NULL;
    uint64_t sequence = 0;
    for (int i = 0; i < 16; i++) {
        char c = after_version_id[i];
        int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (digit < 0) return NULL;
        sequence = sequence << 4 | (uint64_t)digit;
    }
    struct object_version *version = node->versions;
    while (version != NULL && version->sequence >= sequence)
        version = version->older;
    return version;
}

enum object_status objects_list(struct objects *objects, const char *bucket_name,
                                size_t bucket_length, const struct object_list_query *query,
                                struct object_list_result *result) {
    memset(result, 0, sizeof(*result));
    const unsigned char *prefix = query->prefix;
    size_t prefix_length = prefix != NULL ? query->prefix_length : 0;
    const unsigned char *delimiter = query->delimiter;
    size_t delimiter_length = delimiter != NULL ? query->delimiter_length : 0;
    const unsigned char *after = query->after;
    size_t after_length = after != NULL ? query->after_length : 0;
    bool resume_versions = query->versions && after_length > 0 && query->after_version_id != NULL &&
                           query->after_version_id[0] != '\0';
    size_t capacity = 0;
    enum object_status status = OBJECT_OK;

    objects_read_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    if (bucket == NULL) {
        objects_read_unlock(objects);
        return OBJECT_NO_SUCH_BUCKET;
    }
    struct object_key *node;
    if (after_length > 0 && key_compare(after, after_length, prefix, prefix_length) >= 0) {
        node = key_index_seek(&bucket->index, after, after_length, resume_versions);
    } else {
        node = key_index_seek(&bucket->index, prefix, prefix_length, true);
    }
    while (node != NULL) {
        if (node->key_length < prefix_length ||
            (prefix_length > 0 && memcmp(node->key, prefix, prefix_length) != 0)) {
            break; /* past every key with the prefix */
        }
        if (!query->versions && node->versions->delete_marker) {
            node = node->next[0];
            continue;
        }
        if (delimiter_length > 0) {
            const unsigned char *found =
                memmem(node->key + prefix_length, node->key_length - prefix_length, delimiter,
                       delimiter_length);
            if (found != NULL) {
                size_t rolled = (size_t)(found - node->key) + delimiter_length;
                bool listed_before =
                    after_length > 0 && key_compare(node->key, rolled, after, after_length) <= 0;
                if (!listed_before) {
                    if (result->count >= query->max_keys) {
                        result->truncated = true;
                        break;
                    }
                    if (!list_add(result, &capacity, node->key, rolled, NULL, false)) {
                        status = OBJECT_NO_MEMORY;
                        break;
                    }
                }
                node = seek_past_prefix(&bucket->index, node->key, rolled);
                continue;
            }
        }
        if (query->versions) {
            struct object_version *version = node->versions;
            if (resume_versions &&
                key_compare(node->key, node->key_length, after, after_length) == 0) {
                version = versions_after(node, query->after_version_id);
            }
            for (; version != NULL && status == OBJECT_OK; version = version->older) {
                if (result->count >= query->max_keys) {
                    result->truncated = true;
                    break;
                }
                if (!list_add(result, &capacity, node->key, node->key_length, version,
                              version == node->versions)) {
                    status = OBJECT_NO_MEMORY;
                }
            }
            if (result->truncated || status != OBJECT_OK) break;
        } else {
            if (result->count >= query->max_keys) {
                result->truncated = true;
                break;
            }
            if (!list_add(result, &capacity, node->key, node->key_length, node->versions, true)) {
                status = OBJECT_NO_MEMORY;
                break;
            }
        }
        node = node->next[0];
    }
    objects_read_unlock(objects);
    if (status != OBJECT_OK) object_list_free(result);
    return status;
}

void object_list_free(struct object_list_result *result) {
    for (size_t i = 0; i < result->count; i++)
        free(result->entries[i].key);
    free(result->entries);
    memset(result, 0, sizeof(*result));
}

/* ---- multipart uploads --------------------------------------------------------------- */

enum object_status objects_upload_create(struct objects *objects, const char *bucket_name,
                                         size_t bucket_length, const void *key, size_t key_length,
                                         const void *attributes, size_t attributes_length,
                                         char upload_id[OBJECT_UPLOAD_ID_MAX + 1]) {
    struct object_change change = {0};
    enum object_status status = OBJECT_OK;
    objects_write_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    struct object_upload *upload = NULL;
    if (bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (!key_length_valid(key_length)) {
        status = OBJECT_KEY_TOO_LONG;
    } else if (attributes_length > OBJECT_MAX_ATTRIBUTES) {
        status = OBJECT_ATTRIBUTES_TOO_LARGE;
    } else if (!plan_upload_create(objects, bucket) ||
               (upload = upload_allocate(key, key_length, attributes, attributes_length)) == NULL) {
        status = OBJECT_NO_MEMORY;
    } else {
        upload->sequence = objects->next_sequence++;
        sequenced_id(objects, upload->sequence, upload->id);
        upload->initiated_ms = clock_realtime_ms();
        struct record_buffer buffer = {0};
        encode_upload_create(&buffer, bucket, upload);
        status = journal_record(objects, &buffer);
        if (status == OBJECT_OK) {
            apply_upload_create(objects, bucket, upload);
            memcpy(upload_id, upload->id, OBJECT_UPLOAD_ID_MAX + 1);
        } else {
            upload_free_unlinked(upload);
        }
    }
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

enum object_status objects_upload_key(struct objects *objects, const char *bucket_name,
                                      size_t bucket_length, const char *upload_id,
                                      unsigned char *key, size_t *key_length) {
    enum object_status status = OBJECT_OK;
    objects_read_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    struct object_upload *upload = bucket ? upload_find(objects, bucket, upload_id) : NULL;
    if (bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (upload == NULL) {
        status = OBJECT_NO_SUCH_UPLOAD;
    } else {
        memcpy(key, upload->key, upload->key_length);
        *key_length = upload->key_length;
    }
    objects_read_unlock(objects);
    return status;
}

/* Finds BUCKET's upload UPLOAD_ID for a change: *BUCKET_OUT and *UPLOAD_OUT. Returns
 * OBJECT_OK, OBJECT_NO_SUCH_BUCKET or OBJECT_NO_SUCH_UPLOAD. Write lock held. */
static enum object_status find_upload(struct objects *objects, const char *bucket_name,
                                      size_t bucket_length, const char *upload_id,
                                      struct object_bucket **bucket_out,
                                      struct object_upload **upload_out) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    *bucket_out = bucket_find(objects, bucket_name, bucket_length);
    if (*bucket_out == NULL) return OBJECT_NO_SUCH_BUCKET;
    *upload_out = upload_find(objects, *bucket_out, upload_id);
    return *upload_out != NULL ? OBJECT_OK : OBJECT_NO_SUCH_UPLOAD;
}

/* Records PART (taken on every status) in UPLOAD: plans, journals, applies. Write lock
 * held. */
static enum object_status record_part(struct objects *objects, struct object_bucket *bucket,
                                      struct object_upload *upload, struct object_part *part,
                                      struct object_change *change) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    if (!plan_part_put(objects, upload, part)) {
        free(part);
        return OBJECT_NO_MEMORY;
    }
    struct record_buffer buffer = {0};
    encode_part_put(&buffer, bucket, upload->id, part);
    enum object_status status = journal_record(objects, &buffer);
    if (status != OBJECT_OK) {
        free(part);
        return status;
    }
    apply_part_put(objects, upload, part, change);
    return OBJECT_OK;
}

enum object_status objects_upload_part(struct objects *objects, const char *bucket_name,
                                       size_t bucket_length, const char *upload_id, int part_number,
                                       const struct blob_digest *digest,
                                       char etag[OBJECT_ETAG_MAX + 1]) {
    struct object_change change = {0};
    struct object_bucket *bucket;
    struct object_upload *upload;
    struct object_part *part = NULL;
    objects_write_lock(objects);
    enum object_status status =
        find_upload(objects, bucket_name, bucket_length, upload_id, &bucket, &upload);
    if (status == OBJECT_OK && (part_number < 1 || part_number > OBJECT_MAX_PART_NUMBER)) {
        status = OBJECT_INVALID_RANGE;
    }
    if (status == OBJECT_OK && (part = part_allocate(1)) == NULL) status = OBJECT_NO_MEMORY;
    if (status == OBJECT_OK) {
        part->number = part_number;
        memcpy(part->md5, digest->md5, 16);
        hex_encode(digest->md5, 16, part->etag);
        part->length = digest->length;
        part->crc32c = digest->crc32c;
        part->modified_ms = clock_realtime_ms();
        part->extents[0] = (struct blob_extent){digest->id, 0, digest->length};
        if (etag != NULL) memcpy(etag, part->etag, OBJECT_ETAG_MAX + 1);
        status = record_part(objects, bucket, upload, part, &change);
    }
    bool drop_blob = status != OBJECT_OK && id_map_get(&objects->blob_references, digest->id) == 0;
    objects_write_unlock(objects);
    if (drop_blob) blob_store_unlink(objects->blobs, digest->id);
    change_done(objects, &change);
    return status;
}

enum object_status objects_upload_part_copy(
    struct objects *objects, const char *bucket_name, size_t bucket_length, const char *upload_id,
    int part_number, const char *source_bucket_name, size_t source_bucket_length,
    const void *source_key, size_t source_key_length, const char *source_version, uint64_t first,
    uint64_t length, const unsigned char md5[16], uint32_t crc32c, char etag[OBJECT_ETAG_MAX + 1]) {
    struct object_change change = {0};
    struct object_bucket *bucket;
    struct object_upload *upload;
    struct object_key *node;
    struct object_version *source = NULL;
    objects_write_lock(objects);
    enum object_status status =
        find_upload(objects, bucket_name, bucket_length, upload_id, &bucket, &upload);
    if (status == OBJECT_OK && (part_number < 1 || part_number > OBJECT_MAX_PART_NUMBER)) {
        status = OBJECT_INVALID_RANGE;
    }
    if (status == OBJECT_OK) {
        struct object_bucket *source_bucket =
            bucket_find(objects, source_bucket_name, source_bucket_length);
        status = source_bucket == NULL
                     ? OBJECT_NO_SUCH_BUCKET
                     : version_lookup(source_bucket, source_key, source_key_length, source_version,
                                      &node, &source);
    }
    if (status == OBJECT_OK && (first > source->length || length > source->length - first)) {
        status = OBJECT_INVALID_RANGE;
    }
    if (status == OBJECT_OK) {
        /* The source's extents cut to [first, first + length). */
        size_t count = 0;
        uint64_t at = 0;
        for (size_t i = 0; i < source->extent_count; i++) {
            uint64_t start = at, end = at + source->extents[i].length;
            if (end > first && start < first + length) count++;
            at = end;
        }
        struct object_part *part = part_allocate(count);
        if (part == NULL) {
            status = OBJECT_NO_MEMORY;
        } else {
            size_t filled = 0;
            at = 0;
            for (size_t i = 0; i < source->extent_count; i++) {
                const struct blob_extent *extent = &source->extents[i];
                uint64_t start = at, end = at + extent->length;
                at = end;
                if (end <= first || start >= first + length) continue;
                uint64_t from = first > start ? first - start : 0;
                uint64_t to = first + length < end ? first + length - start : extent->length;
                part->extents[filled++] =
                    (struct blob_extent){extent->id, extent->offset + from, to - from};
            }
            part->number = part_number;
            memcpy(part->md5, md5, 16);
            hex_encode(md5, 16, part->etag);
            part->length = length;
            part->crc32c = crc32c;
            part->modified_ms = clock_realtime_ms();
            if (etag != NULL) memcpy(etag, part->etag, OBJECT_ETAG_MAX + 1);
            status = record_part(objects, bucket, upload, part, &change);
        }
    }
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

/* Whether ETAG as a client sent it (maybe in quotes, any case) names STORED. */
static bool etag_matches(const char *etag, const char *stored) {
    size_t length = strlen(etag);
    if (length >= 2 && etag[0] == '"' && etag[length - 1] == '"') {
        etag++;
        length -= 2;
    }
    return length == strlen(stored) && strncasecmp(etag, stored, length) == 0;
}

/* Part NUMBER of UPLOAD, or NULL. */
static struct object_part *part_find(const struct object_upload *upload, int number) {
    size_t low = 0, high = upload->part_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int here = upload->parts[middle]->number;
        if (here == number) return upload->parts[middle];
        if (here < number) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return NULL;
}

/* Checks PARTS (COUNT) against UPLOAD as CompleteMultipartUpload does; sets *EXTENTS to
 * how many extents the value has. Returns OBJECT_OK, OBJECT_INVALID_PART_ORDER,
 * OBJECT_INVALID_PART or OBJECT_ENTITY_TOO_SMALL. Write lock held. */
static enum object_status check_parts(const struct objects *objects,
                                      const struct object_upload *upload,
                                      const struct object_part_ref *parts, size_t count,
                                      size_t *extents) {
    if (count == 0 || count > OBJECT_MAX_PART_NUMBER) return OBJECT_INVALID_PART;
    for (size_t i = 1; i < count; i++) {
        if (parts[i].part_number <= parts[i - 1].part_number) return OBJECT_INVALID_PART_ORDER;
    }
    *extents = 0;
    for (size_t i = 0; i < count; i++) {
        const struct object_part *part = part_find(upload, parts[i].part_number);
        if (part == NULL || !etag_matches(parts[i].etag, part->etag)) return OBJECT_INVALID_PART;
        *extents += part->extent_count;
    }
    for (size_t i = 0; i + 1 < count; i++) {
        if (part_find(upload, parts[i].part_number)->length < objects->min_part_size) {
            return OBJECT_ENTITY_TOO_SMALL;
        }
    }
    return OBJECT_OK;
}

enum object_status objects_upload_complete(struct objects *objects, const char *bucket_name,
                                           size_t bucket_length, const char *upload_id,
                                           const struct object_part_ref *parts, size_t count,
                                           struct object_info *info) {
    struct object_change change = {0};
    struct object_bucket *bucket;
    struct object_upload *upload;
    size_t extent_count = 0;
    objects_write_lock(objects);
    enum object_status status =
        find_upload(objects, bucket_name, bucket_length, upload_id, &bucket, &upload);
    if (status == OBJECT_OK) status = check_parts(objects, upload, parts, count, &extent_count);
    unsigned char *md5s = NULL;
    struct object_version *version = NULL;
    if (status == OBJECT_OK) {
        md5s = malloc(16 * count);
        version = version_allocate(extent_count, upload->attributes_length);
        if (md5s == NULL || version == NULL) {
            free(version);
            status = OBJECT_NO_MEMORY;
        }
    }
    if (status == OBJECT_OK) {
        size_t filled = 0;
        for (size_t i = 0; i < count; i++) {
            const struct object_part *part = part_find(upload, parts[i].part_number);
            memcpy(md5s + 16 * i, part->md5, 16);
            memcpy(&version->extents[filled], part->extents,
                   part->extent_count * sizeof(struct blob_extent));
            filled += part->extent_count;
            version->crc32c =
                i == 0 ? part->crc32c : crc32c_combine(version->crc32c, part->crc32c, part->length);
            version->length += part->length;
        }
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int digest_length = 0;
        if (EVP_Digest(md5s, 16 * count, digest, &digest_length, EVP_md5(), NULL) != 1) {
            free(version);
            status = OBJECT_NO_MEMORY;
        } else {
            hex_encode(digest, 16, version->etag);
            /* COUNT <= OBJECT_MAX_PART_NUMBER: part numbers ascend within 1..10,000. */
            snprintf(version->etag + 32, sizeof(version->etag) - 32, "-%u",
                     (unsigned)(count % 100000u));
            version->parts = (uint32_t)count;
            if (upload->attributes_length > 0) {
                memcpy(version->attributes, upload->attributes, upload->attributes_length);
            }
            version_stamp(objects, bucket, version);
            status = put_version(objects, bucket, upload->key, upload->key_length, version, upload,
                                 &change, info);
        }
    }
    free(md5s);
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

enum object_status objects_upload_abort(struct objects *objects, const char *bucket_name,
                                        size_t bucket_length, const char *upload_id) {
    struct object_change change = {0};
    struct object_bucket *bucket;
    struct object_upload *upload;
    objects_write_lock(objects);
    enum object_status status =
        find_upload(objects, bucket_name, bucket_length, upload_id, &bucket, &upload);
    if (status == OBJECT_OK) {
        struct record_buffer buffer = {0};
        encode_upload_abort(&buffer, bucket, upload->id);
        status = journal_record(objects, &buffer);
        if (status == OBJECT_OK) apply_upload_remove(objects, upload, &change);
    }
    objects_write_unlock(objects);
    change_done(objects, &change);
    return status;
}

enum object_status objects_upload_list_parts(struct objects *objects, const char *bucket_name,
                                             size_t bucket_length, const char *upload_id,
                                             int after_part, size_t max_parts,
                                             struct object_parts_result *result) {
    memset(result, 0, sizeof(*result));
    enum object_status status = OBJECT_OK;
    objects_read_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    struct object_upload *upload = bucket ? upload_find(objects, bucket, upload_id) : NULL;
    if (bucket == NULL) {
        status = OBJECT_NO_SUCH_BUCKET;
    } else if (upload == NULL) {
        status = OBJECT_NO_SUCH_UPLOAD;
    } else {
        size_t first = 0;
        while (first < upload->part_count && upload->parts[first]->number <= after_part)
            first++;
        size_t available = upload->part_count - first;
        size_t count = available < max_parts ? available : max_parts;
        unsigned char *key = malloc(upload->key_length + upload->attributes_length + 1);
        result->parts = malloc((count ? count : 1) * sizeof(*result->parts));
        if (key == NULL || result->parts == NULL) {
            free(key);
            status = OBJECT_NO_MEMORY;
        } else {
            for (size_t i = 0; i < count; i++) {
                const struct object_part *part = upload->parts[first + i];
                struct object_part_info *out = &result->parts[i];
                memset(out, 0, sizeof(*out));
                out->part_number = part->number;
                memcpy(out->etag, part->etag, sizeof(out->etag));
                out->length = part->length;
                out->crc32c = part->crc32c;
                out->modified_ms = part->modified_ms;
            }
            result->count = count;
            result->truncated = available > count;
            memcpy(key, upload->key, upload->key_length);
            if (upload->attributes_length > 0) {
                memcpy(key + upload->key_length, upload->attributes, upload->attributes_length);
            }
            result->key = key;
            result->key_length = upload->key_length;
            result->attributes = key + upload->key_length;
            result->attributes_length = upload->attributes_length;
        }
    }
    objects_read_unlock(objects);
    if (status != OBJECT_OK) object_parts_free(result);
    return status;
}

void object_parts_free(struct object_parts_result *result) {
    free(result->parts);
    free(result->key); /* the attributes share its allocation */
    memset(result, 0, sizeof(*result));
}

enum object_status objects_upload_list(struct objects *objects, const char *bucket_name,
                                       size_t bucket_length, const void *prefix,
                                       size_t prefix_length, const void *after_key,
                                       size_t after_key_length, const char *after_upload_id,
                                       size_t max_uploads, struct object_uploads_result *result) {
    memset(result, 0, sizeof(*result));
    if (prefix == NULL) prefix_length = 0;
    enum object_status status = OBJECT_OK;
    size_t capacity = 0;
    /* Where to start: after every upload of AFTER_KEY, or after the one named. */
    uint64_t after_sequence = UINT64_MAX;
    if (after_upload_id != NULL && strlen(after_upload_id) == OBJECT_UPLOAD_ID_MAX) {
        uint64_t value = 0;
        bool hex = true;
        for (int i = 0; i < 16 && hex; i++) {
            char c = after_upload_id[i];
            int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            hex = digit >= 0;
            value = value << 4 | (uint64_t)(hex ? digit : 0);
        }
        if (hex) after_sequence = value;
    }
    objects_read_lock(objects);
    struct object_bucket *bucket = bucket_find(objects, bucket_name, bucket_length);
    if (bucket == NULL) {
        objects_read_unlock(objects);
        return OBJECT_NO_SUCH_BUCKET;
    }
    /* Binary searches to the later of the prefix and the marker; then in order until
     * the keys leave the prefix. */
    size_t first = upload_position(bucket, prefix, prefix_length, 0);
    if (after_key != NULL && after_key_length > 0) {
        size_t after =
            upload_position(bucket, after_key, after_key_length,
                            after_sequence == UINT64_MAX ? UINT64_MAX : after_sequence + 1);
        if (after > first) first = after;
    }
    for (size_t i = first; i < bucket->upload_count; i++) {
        const struct object_upload *upload = bucket->uploads[i];
        if (upload->key_length < prefix_length ||
            (prefix_length > 0 && memcmp(upload->key, prefix, prefix_length) != 0)) {
            break;
        }
        if (result->count >= max_uploads) {
            result->truncated = true;
            break;
        }
        if (result->count == capacity) {
            size_t grown = capacity ? capacity * 2 : 16;
            struct object_upload_entry *bigger = realloc(result->entries, grown * sizeof(*bigger));
            if (bigger == NULL) {
                status = OBJECT_NO_MEMORY;
                break;
            }
            result->entries = bigger;
            capacity = grown;
        }
        struct object_upload_entry *entry = &result->entries[result->count];
        memset(entry, 0, sizeof(*entry));
        entry->key = malloc(upload->key_length);
        if (entry->key == NULL) {
            status = OBJECT_NO_MEMORY;
            break;
        }
        memcpy(entry->key, upload->key, upload->key_length);
        entry->key_length = upload->key_length;
        memcpy(entry->upload_id, upload->id, sizeof(entry->upload_id));
        entry->initiated_ms = upload->initiated_ms;
        result->count++;
    }
    objects_read_unlock(objects);
    if (status != OBJECT_OK) object_uploads_free(result);
    return status;
}

void object_uploads_free(struct object_uploads_result *result) {
    for (size_t i = 0; i < result->count; i++)
        free(result->entries[i].key);
    free(result->entries);
    memset(result, 0, sizeof(*result));
}

/* ---- figures ------------------------------------------------------------------------- */

void objects_get_stats(struct objects *objects, struct objects_stats *stats) {
    memset(stats, 0, sizeof(*stats));
    objects_read_lock(objects);
    stats->buckets = objects->bucket_count;
    for (size_t i = 0; i < objects->bucket_count; i++) {
        const struct object_bucket *bucket = objects->buckets[i];
        stats->objects += bucket->objects;
        stats->versions += bucket->versions;
        stats->bytes += bucket->bytes;
        stats->uploads += bucket->upload_count;
    }
    stats->metadata_bytes =
        objects->metadata_bytes + sizeof(*objects) +
        OBJECTS_MAX_BUCKETS * sizeof(*objects->buckets) +
        objects->blob_references.capacity * (sizeof(uint64_t) + sizeof(uintptr_t)) +
        objects->uploads.capacity * (sizeof(uint64_t) + sizeof(uintptr_t));
    objects_read_unlock(objects);
    stats->blob_bytes = blob_store_bytes(objects->blobs);
    stats->journal_bytes = atomic_load(&objects->journal_bytes);
    stats->recovery_ms = objects->recovery_ms;
}
