/* The object store's durable metadata: the journal, the snapshot, replay and compaction
 * (objects_internal.h).
 *
 * Both files are a header followed by records
 *
 *     [u32 payload length][u32 CRC32C of type and payload][u8 type][payload]
 *
 * little-endian. A record describes one change (record_type) with everything replay
 * needs to redo it exactly: version ids, sequences, timestamps, upload ids, extents and
 * attributes. The snapshot holds the whole state as the records that would build it (a
 * STATE record, then each bucket with its versions oldest first and its uploads with
 * their parts), closed by a SNAPSHOT_END record that counts them.
 *
 *     journal header  (24 bytes): "STRJRNL1", u64 generation, u32 format, u32 CRC32C
 *     snapshot header (40 bytes): "STRSNAP1", u64 generation, u64 base generation,
 *                                 u64 base offset, u32 format, u32 CRC32C
 *
 * Generations. A snapshot of generation N holds everything of journal B (its base
 * generation) up to byte O (its base offset); journal N holds what came after. A
 * compaction (objects_compact()) captures the state and the journal's end O under the
 * lock, writes snapshot.tmp (generation N = max(old snapshot, journal) + 1, base B =
 * the current journal's generation, offset O), fsyncs it, renames it over `snapshot`
 * and fsyncs the directory; then, under the write lock, writes journal.tmp (generation
 * N, followed by journal B's records after O, which changes made while the snapshot was
 * written), fsyncs it, renames it over `journal` and fsyncs the directory. Opening
 * replays journal N from its start, or journal B from O when a crash (or an error) came
 * between the two renames, and refuses any other generation, so an old journal is never
 * replayed over a newer snapshot and no acknowledged change is lost. No snapshot at all
 * is generation 0 with no base. */
#include "engine/objects_internal.h"

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/fault.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_MAGIC        "STRJRNL1"
#define SNAPSHOT_MAGIC       "STRSNAP1"
#define FILE_FORMAT          1u
#define JOURNAL_HEADER_SIZE  24u
#define SNAPSHOT_HEADER_SIZE 40u
#define RECORD_HEADER_SIZE   9u
#define RECORD_MAX_PAYLOAD   (256u << 20)
#define NO_GENERATION        UINT64_MAX

/* ---- encoding ------------------------------------------------------------------------ */

/* Makes room for MORE bytes; sets FAILED when out of memory. */
static bool buffer_room(struct record_buffer *buffer, size_t more) {
    if (buffer->failed) return false;
    if (buffer->length + more <= buffer->capacity) return true;
    size_t capacity = buffer->capacity ? buffer->capacity : 256;
    while (capacity < buffer->length + more)
        capacity *= 2;
    unsigned char *bigger = realloc(buffer->data, capacity);
    if (bigger == NULL) {
        buffer->failed = true;
        return false;
    }
    buffer->data = bigger;
    buffer->capacity = capacity;
    return true;
}

static void put_raw(struct record_buffer *buffer, const void *data, size_t length) {
    if (!buffer_room(buffer, length)) return;
    if (length > 0) memcpy(buffer->data + buffer->length, data, length);
    buffer->length += length;
}

static void store_u32(unsigned char *at, uint32_t value) {
    for (int i = 0; i < 4; i++)
        at[i] = (unsigned char)(value >> (8 * i));
}

static void store_u64(unsigned char *at, uint64_t value) {
    for (int i = 0; i < 8; i++)
        at[i] = (unsigned char)(value >> (8 * i));
}

static uint32_t load_u32(const unsigned char *at) {
    uint32_t value = 0;
    for (int i = 0; i < 4; i++)
        value |= (uint32_t)at[i] << (8 * i);
    return value;
}

static uint64_t load_u64(const unsigned char *at) {
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value |= (uint64_t)at[i] << (8 * i);
    return value;
}

void record_begin(struct record_buffer *buffer, enum record_type type) {
    buffer->record_start = buffer->length;
    unsigned char header[RECORD_HEADER_SIZE] = {0};
    header[8] = (unsigned char)type;
    put_raw(buffer, header, sizeof(header));
}

void record_put_u8(struct record_buffer *buffer, uint8_t value) {
    put_raw(buffer, &value, 1);
}

void record_put_u32(struct record_buffer *buffer, uint32_t value) {
    unsigned char bytes[4];
    store_u32(bytes, value);
    put_raw(buffer, bytes, 4);
}

void record_put_u64(struct record_buffer *buffer, uint64_t value) {
    unsigned char bytes[8];
    store_u64(bytes, value);
    put_raw(buffer, bytes, 8);
}

void record_put_bytes(struct record_buffer *buffer, const void *data, size_t length) {
    record_put_u32(buffer, (uint32_t)length);
    put_raw(buffer, data, length);
}

bool record_end(struct record_buffer *buffer) {
    if (buffer->failed) return false;
    unsigned char *record = buffer->data + buffer->record_start;
    size_t payload = buffer->length - buffer->record_start - RECORD_HEADER_SIZE;
    store_u32(record, (uint32_t)payload);
    store_u32(record + 4, crc32c(record + 8, payload + 1));
    return true;
}

void record_buffer_free(struct record_buffer *buffer) {
    free(buffer->data);
    *buffer = (struct record_buffer){0};
}

static void put_string(struct record_buffer *buffer, const char *text) {
    record_put_bytes(buffer, text, strlen(text));
}

static void put_bucket_name(struct record_buffer *buffer, const struct object_bucket *bucket) {
    record_put_bytes(buffer, bucket->name, bucket->name_length);
}

static void put_extents(struct record_buffer *buffer, const struct blob_extent *extents,
                        size_t count) {
    record_put_u32(buffer, (uint32_t)count);
    for (size_t i = 0; i < count; i++) {
        record_put_u64(buffer, extents[i].id);
        record_put_u64(buffer, extents[i].offset);
        record_put_u64(buffer, extents[i].length);
    }
}

/* A version: u64 sequence, id, etag, u8 delete marker, u32 parts, u32 crc32c,
 * u64 length, u64 modified_ms, attributes, extents. */
static void put_version(struct record_buffer *buffer, const struct object_version *version) {
    record_put_u64(buffer, version->sequence);
    put_string(buffer, version->version_id);
    put_string(buffer, version->etag);
    record_put_u8(buffer, version->delete_marker ? 1 : 0);
    record_put_u32(buffer, version->parts);
    record_put_u32(buffer, version->crc32c);
    record_put_u64(buffer, version->length);
    record_put_u64(buffer, (uint64_t)version->modified_ms);
    record_put_bytes(buffer, version->attributes, version->attributes_length);
    put_extents(buffer, version->extents, version->extent_count);
}

void encode_bucket_create(struct record_buffer *buffer, const struct object_bucket *bucket) {
    record_begin(buffer, RECORD_BUCKET_CREATE);
    put_bucket_name(buffer, bucket);
    record_put_u64(buffer, (uint64_t)bucket->created_ms);
    record_end(buffer);
}

void encode_bucket_delete(struct record_buffer *buffer, const struct object_bucket *bucket) {
    record_begin(buffer, RECORD_BUCKET_DELETE);
    put_bucket_name(buffer, bucket);
    record_end(buffer);
}

void encode_bucket_versioning(struct record_buffer *buffer, const struct object_bucket *bucket,
                              enum object_versioning state) {
    record_begin(buffer, RECORD_BUCKET_VERSIONING);
    put_bucket_name(buffer, bucket);
    record_put_u8(buffer, (uint8_t)state);
    record_end(buffer);
}

void encode_bucket_quota(struct record_buffer *buffer, const struct object_bucket *bucket,
                         uint64_t quota) {
    record_begin(buffer, RECORD_BUCKET_QUOTA);
    put_bucket_name(buffer, bucket);
    record_put_u64(buffer, quota);
    record_end(buffer);
}

void encode_version_put(struct record_buffer *buffer, const struct object_bucket *bucket,
                        const void *key, size_t key_length, const struct object_version *version) {
    record_begin(buffer, RECORD_VERSION_PUT);
    put_bucket_name(buffer, bucket);
    record_put_bytes(buffer, key, key_length);
    put_version(buffer, version);
    record_end(buffer);
}

void encode_version_remove(struct record_buffer *buffer, const struct object_bucket *bucket,
                           const void *key, size_t key_length, const char *version_id) {
    record_begin(buffer, RECORD_VERSION_REMOVE);
    put_bucket_name(buffer, bucket);
    record_put_bytes(buffer, key, key_length);
    put_string(buffer, version_id);
    record_end(buffer);
}

void encode_upload_create(struct record_buffer *buffer, const struct object_bucket *bucket,
                          const struct object_upload *upload) {
    record_begin(buffer, RECORD_UPLOAD_CREATE);
    put_bucket_name(buffer, bucket);
    put_string(buffer, upload->id);
    record_put_u64(buffer, upload->sequence);
    record_put_bytes(buffer, upload->key, upload->key_length);
    record_put_u64(buffer, (uint64_t)upload->initiated_ms);
    record_put_bytes(buffer, upload->attributes, upload->attributes_length);
    record_end(buffer);
}

void encode_part_put(struct record_buffer *buffer, const struct object_bucket *bucket,
                     const char *upload_id, const struct object_part *part) {
    record_begin(buffer, RECORD_PART_PUT);
    put_bucket_name(buffer, bucket);
    put_string(buffer, upload_id);
    record_put_u32(buffer, (uint32_t)part->number);
    put_raw(buffer, part->md5, sizeof(part->md5));
    put_string(buffer, part->etag);
    record_put_u64(buffer, part->length);
    record_put_u32(buffer, part->crc32c);
    record_put_u64(buffer, (uint64_t)part->modified_ms);
    put_extents(buffer, part->extents, part->extent_count);
    record_end(buffer);
}

void encode_upload_complete(struct record_buffer *buffer, const struct object_bucket *bucket,
                            const char *upload_id, const struct object_version *version) {
    record_begin(buffer, RECORD_UPLOAD_COMPLETE);
    put_bucket_name(buffer, bucket);
    put_string(buffer, upload_id);
    put_version(buffer, version);
    record_end(buffer);
}

void encode_upload_abort(struct record_buffer *buffer, const struct object_bucket *bucket,
                         const char *upload_id) {
    record_begin(buffer, RECORD_UPLOAD_ABORT);
    put_bucket_name(buffer, bucket);
    put_string(buffer, upload_id);
    record_end(buffer);
}

/* ---- decoding ------------------------------------------------------------------------ */

struct record_reader {
    const unsigned char *data;
    size_t length;
    size_t position;
    bool failed; /* the payload is shorter than its fields, or a field is out of range */
};

static const unsigned char *take(struct record_reader *reader, size_t length) {
    if (reader->failed || reader->length - reader->position < length) {
        reader->failed = true;
        return NULL;
    }
    const unsigned char *at = reader->data + reader->position;
    reader->position += length;
    return at;
}

static uint8_t read_u8(struct record_reader *reader) {
    const unsigned char *at = take(reader, 1);
    return at ? at[0] : 0;
}

static uint32_t read_u32(struct record_reader *reader) {
    const unsigned char *at = take(reader, 4);
    return at ? load_u32(at) : 0;
}

static uint64_t read_u64(struct record_reader *reader) {
    const unsigned char *at = take(reader, 8);
    return at ? load_u64(at) : 0;
}

/* A u32 length and that many bytes; sets *LENGTH. */
static const unsigned char *read_bytes(struct record_reader *reader, size_t *length) {
    *length = read_u32(reader);
    const unsigned char *at = take(reader, *length);
    if (at == NULL) *length = 0;
    return at;
}

/* A string of at most MAXIMUM bytes without NUL into TEXT (MAXIMUM + 1 bytes). */
static void read_string(struct record_reader *reader, char *text, size_t maximum) {
    size_t length;
    const unsigned char *at = read_bytes(reader, &length);
    text[0] = '\0';
    if (reader->failed) return;
    if (length > maximum || memchr(at, 0, length) != NULL) {
        reader->failed = true;
        return;
    }
    memcpy(text, at, length);
    text[length] = '\0';
}

/* Reads a bucket name and finds the bucket; fails the reader when there is none. */
static struct object_bucket *read_bucket(struct objects *objects, struct record_reader *reader) {
    size_t length;
    const unsigned char *name = read_bytes(reader, &length);
    if (reader->failed) return NULL;
    struct object_bucket *bucket = bucket_find(objects, (const char *)name, length);
    if (bucket == NULL) reader->failed = true;
    return bucket;
}

/* Reads extents into a count and a place: returns how many, or fails the reader. */
static size_t read_extent_count(struct record_reader *reader) {
    size_t count = read_u32(reader);
    if (reader->failed) return 0;
    if ((reader->length - reader->position) / 24 < count) {
        reader->failed = true;
        return 0;
    }
    return count;
}

static void read_extents(struct record_reader *reader, struct blob_extent *extents, size_t count) {
    for (size_t i = 0; i < count; i++) {
        extents[i].id = read_u64(reader);
        extents[i].offset = read_u64(reader);
        extents[i].length = read_u64(reader);
    }
}

/* Decodes a version (put_version()). Returns it (the caller's), or NULL: the reader
 * failed, or out of memory (*NO_MEMORY). */
static struct object_version *read_version(struct record_reader *reader, bool *no_memory) {
    struct object_version fields = {0};
    fields.sequence = read_u64(reader);
    read_string(reader, fields.version_id, OBJECT_VERSION_ID_MAX);
    read_string(reader, fields.etag, OBJECT_ETAG_MAX);
    fields.delete_marker = read_u8(reader) != 0;
    fields.parts = read_u32(reader);
    fields.crc32c = read_u32(reader);
    fields.length = read_u64(reader);
    fields.modified_ms = (int64_t)read_u64(reader);
    size_t attributes_length;
    const unsigned char *attributes = read_bytes(reader, &attributes_length);
    size_t extent_count = read_extent_count(reader);
    if (reader->failed || fields.version_id[0] == '\0' ||
        attributes_length > OBJECT_MAX_ATTRIBUTES) {
        reader->failed = true;
        return NULL;
    }
    struct object_version *version = version_allocate(extent_count, attributes_length);
    if (version == NULL) {
        *no_memory = true;
        return NULL;
    }
    struct blob_extent *extents = version->extents;
    unsigned char *attribute_storage = version->attributes;
    *version = fields;
    version->extents = extents;
    version->extent_count = extent_count;
    version->attributes = attribute_storage;
    version->attributes_length = attributes_length;
    if (attributes_length > 0) memcpy(attribute_storage, attributes, attributes_length);
    read_extents(reader, extents, extent_count);
    return version;
}

/* ---- replay -------------------------------------------------------------------------- */

enum replay_result { REPLAY_OK, REPLAY_BAD, REPLAY_NO_MEMORY, REPLAY_END };

/* Puts VERSION (taken) at KEY of BUCKET as the live call did. */
static enum replay_result replay_put(struct objects *objects, struct object_bucket *bucket,
                                     const void *key, size_t key_length,
                                     struct object_version *version) {
    struct version_put_plan plan;
    if (plan_version_put(objects, bucket, key, key_length, version, &plan) != OBJECT_OK) {
        free(version);
        return REPLAY_NO_MEMORY;
    }
    apply_version_put(objects, &plan, NULL);
    return REPLAY_OK;
}

static enum replay_result replay_bucket_create(struct objects *objects,
                                               struct record_reader *reader) {
    size_t length;
    const unsigned char *name = read_bytes(reader, &length);
    int64_t created_ms = (int64_t)read_u64(reader);
    if (reader->failed || !objects_bucket_name_valid((const char *)name, length) ||
        bucket_find(objects, (const char *)name, length) != NULL ||
        objects->bucket_count >= OBJECTS_MAX_BUCKETS) {
        return REPLAY_BAD;
    }
    struct object_bucket *bucket = bucket_allocate();
    if (bucket == NULL) return REPLAY_NO_MEMORY;
    memcpy(bucket->name, name, length);
    bucket->name_length = length;
    bucket->created_ms = created_ms;
    apply_bucket_create(objects, bucket);
    return REPLAY_OK;
}

/* The upload named next in READER's record of BUCKET, or NULL (the reader failed). */
static struct object_upload *read_upload(struct objects *objects, struct object_bucket *bucket,
                                         struct record_reader *reader) {
    char id[OBJECT_UPLOAD_ID_MAX + 1];
    read_string(reader, id, OBJECT_UPLOAD_ID_MAX);
    if (reader->failed) return NULL;
    struct object_upload *upload = upload_find(objects, bucket, id);
    if (upload == NULL) reader->failed = true;
    return upload;
}

static enum replay_result replay_upload_create(struct objects *objects,
                                               struct object_bucket *bucket,
                                               struct record_reader *reader) {
    char id[OBJECT_UPLOAD_ID_MAX + 1];
    read_string(reader, id, OBJECT_UPLOAD_ID_MAX);
    uint64_t sequence = read_u64(reader);
    size_t key_length, attributes_length;
    const unsigned char *key = read_bytes(reader, &key_length);
    int64_t initiated_ms = (int64_t)read_u64(reader);
    const unsigned char *attributes = read_bytes(reader, &attributes_length);
    if (reader->failed || key_length == 0 || key_length > OBJECT_MAX_KEY_LENGTH ||
        attributes_length > OBJECT_MAX_ATTRIBUTES || id_map_get(&objects->uploads, sequence) != 0) {
        return REPLAY_BAD;
    }
    if (!plan_upload_create(objects, bucket)) return REPLAY_NO_MEMORY;
    struct object_upload *upload = upload_allocate(key, key_length, attributes, attributes_length);
    if (upload == NULL) return REPLAY_NO_MEMORY;
    memcpy(upload->id, id, sizeof(id));
    upload->sequence = sequence;
    upload->initiated_ms = initiated_ms;
    apply_upload_create(objects, bucket, upload);
    if (upload_find(objects, bucket, id) != upload) {
        /* The id does not name its sequence: not a record this code wrote. */
        apply_upload_remove(objects, upload, NULL);
        return REPLAY_BAD;
    }
    return REPLAY_OK;
}

static enum replay_result replay_part_put(struct objects *objects, struct object_bucket *bucket,
                                          struct record_reader *reader) {
    struct object_upload *upload = read_upload(objects, bucket, reader);
    int number = (int)read_u32(reader);
    const unsigned char *md5 = take(reader, 16);
    char etag[OBJECT_ETAG_MAX + 1];
    read_string(reader, etag, OBJECT_ETAG_MAX);
    uint64_t length = read_u64(reader);
    uint32_t crc = read_u32(reader);
    int64_t modified_ms = (int64_t)read_u64(reader);
    size_t extent_count = read_extent_count(reader);
    if (reader->failed || number < 1 || number > OBJECT_MAX_PART_NUMBER) return REPLAY_BAD;
    struct object_part *part = part_allocate(extent_count);
    if (part == NULL) return REPLAY_NO_MEMORY;
    part->number = number;
    memcpy(part->md5, md5, 16);
    memcpy(part->etag, etag, sizeof(etag));
    part->length = length;
    part->crc32c = crc;
    part->modified_ms = modified_ms;
    read_extents(reader, part->extents, extent_count);
    if (!plan_part_put(objects, upload, part)) {
        free(part);
        return REPLAY_NO_MEMORY;
    }
    apply_part_put(objects, upload, part, NULL);
    return REPLAY_OK;
}

/* Redoes one record (TYPE, PAYLOAD of LENGTH bytes). Write lock held. */
static enum replay_result replay_record(struct objects *objects, uint8_t type,
                                        const unsigned char *payload, size_t length) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    struct record_reader reader = {.data = payload, .length = length};
    enum replay_result result = REPLAY_OK;
    bool no_memory = false;
    if (type == RECORD_BUCKET_CREATE) {
        result = replay_bucket_create(objects, &reader);
    } else if (type == RECORD_STATE) {
        uint64_t next = read_u64(&reader);
        if (!reader.failed && next > objects->next_sequence) objects->next_sequence = next;
    } else if (type == RECORD_SNAPSHOT_END) {
        read_u64(&reader);
        result = REPLAY_END;
    } else {
        struct object_bucket *bucket = read_bucket(objects, &reader);
        if (reader.failed) return REPLAY_BAD;
        switch (type) {
        case RECORD_BUCKET_DELETE:
            if (bucket->index.count != 0) return REPLAY_BAD;
            apply_bucket_delete(objects, bucket, NULL);
            break;
        case RECORD_BUCKET_VERSIONING: {
            uint8_t state = read_u8(&reader);
            if (reader.failed || state > OBJECT_VERSIONING_SUSPENDED) return REPLAY_BAD;
            bucket->versioning = (enum object_versioning)state;
            break;
        }
        case RECORD_BUCKET_QUOTA:
            bucket->quota = read_u64(&reader);
            break;
        case RECORD_VERSION_PUT: {
            size_t key_length;
            const unsigned char *key = read_bytes(&reader, &key_length);
            struct object_version *version = read_version(&reader, &no_memory);
            if (version == NULL) break;
            if (key_length == 0 || key_length > OBJECT_MAX_KEY_LENGTH) {
                free(version);
                return REPLAY_BAD;
            }
            result = replay_put(objects, bucket, key, key_length, version);
            break;
        }
        case RECORD_VERSION_REMOVE: {
            size_t key_length;
            const unsigned char *key = read_bytes(&reader, &key_length);
            char version_id[OBJECT_VERSION_ID_MAX + 1];
            read_string(&reader, version_id, OBJECT_VERSION_ID_MAX);
            if (reader.failed ||
                !apply_version_remove(objects, bucket, key, key_length, version_id, NULL)) {
                return REPLAY_BAD;
            }
            break;
        }
        case RECORD_UPLOAD_CREATE:
            result = replay_upload_create(objects, bucket, &reader);
            break;
        case RECORD_PART_PUT:
            result = replay_part_put(objects, bucket, &reader);
            break;
        case RECORD_UPLOAD_COMPLETE: {
            struct object_upload *upload = read_upload(objects, bucket, &reader);
            struct object_version *version = read_version(&reader, &no_memory);
            if (version == NULL) break;
            result = replay_put(objects, bucket, upload->key, upload->key_length, version);
            if (result == REPLAY_OK) apply_upload_remove(objects, upload, NULL);
            break;
        }
        case RECORD_UPLOAD_ABORT: {
            struct object_upload *upload = read_upload(objects, bucket, &reader);
            if (upload != NULL) apply_upload_remove(objects, upload, NULL);
            break;
        }
        default:
            return REPLAY_BAD;
        }
    }
    if (no_memory) return REPLAY_NO_MEMORY;
    if (result == REPLAY_OK && reader.failed) return REPLAY_BAD;
    if (result == REPLAY_OK && reader.position != reader.length) return REPLAY_BAD;
    return result;
}

/* ---- files --------------------------------------------------------------------------- */

static void sync_directory(const char *directory) {
    int fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fault_fails(FAULT_sync) || fsync(fd) != 0) {
            log_event(LOG_WARNING, "objects_directory_sync_failed", "directory=%s error=\"%s\"",
                      directory, strerror(errno));
        }
        close(fd);
    }
}

/* Writes LENGTH bytes at DATA to FD, retrying short writes. Returns 0 or an errno. */
static int write_all(int fd, const void *data, size_t length) {
    const unsigned char *bytes = data;
    while (length > 0) {
        ssize_t written = fault_fails(FAULT_write) ? -1 : write(fd, bytes, length);
        if (written < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        bytes += written;
        length -= (size_t)written;
    }
    return 0;
}

/* Reads all of FD into a new buffer (*DATA, freed by the caller; *SIZE bytes). Returns 0
 * or an errno. */
static int read_whole(int fd, unsigned char **data, size_t *size) {
    struct stat status;
    *data = NULL;
    *size = 0;
    if (fstat(fd, &status) != 0) return errno;
    size_t total = (size_t)status.st_size;
    unsigned char *buffer = malloc(total ? total : 1);
    if (buffer == NULL) return ENOMEM;
    size_t done = 0;
    while (done < total) {
        ssize_t got =
            fault_fails(FAULT_read) ? -1 : pread(fd, buffer + done, total - done, (off_t)done);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            int error = got < 0 ? errno : EIO;
            free(buffer);
            return error;
        }
        done += (size_t)got;
    }
    *data = buffer;
    *size = total;
    return 0;
}

static void journal_header(unsigned char header[JOURNAL_HEADER_SIZE], uint64_t generation) {
    memcpy(header, JOURNAL_MAGIC, 8);
    store_u64(header + 8, generation);
    store_u32(header + 16, FILE_FORMAT);
    store_u32(header + 20, crc32c(header, 20));
}

static void snapshot_header(unsigned char header[SNAPSHOT_HEADER_SIZE], uint64_t generation,
                            uint64_t base_generation, uint64_t base_offset) {
    memcpy(header, SNAPSHOT_MAGIC, 8);
    store_u64(header + 8, generation);
    store_u64(header + 16, base_generation);
    store_u64(header + 24, base_offset);
    store_u32(header + 32, FILE_FORMAT);
    store_u32(header + 36, crc32c(header, 36));
}

/* ---- appending ----------------------------------------------------------------------- */

/* Cuts the journal back to its last good record after a failed append; when that fails
 * too, refuses every later change (the next compaction starts a clean journal). Write
 * lock held. */
static void journal_undo(struct objects *objects) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    if (ftruncate(objects->journal_fd, (off_t)atomic_load(&objects->journal_bytes)) != 0) {
        log_event(LOG_ERROR, "objects_journal_failed",
                  "directory=%s error=\"cannot cut a failed record: %s\"", objects->directory,
                  strerror(errno));
        atomic_store(&objects->journal_failed, true);
    }
}

enum object_status journal_append(struct objects *objects, const struct record_buffer *buffer) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    if (atomic_load(&objects->journal_failed)) return OBJECT_IO_ERROR;
    const unsigned char *bytes = buffer->data;
    size_t length = buffer->length;
    size_t done = 0;
    int error = 0;
    while (done < length) {
        ssize_t written =
            fault_fails(FAULT_write) ? -1 : write(objects->journal_fd, bytes + done, length - done);
        if (written < 0) {
            if (errno == EINTR) continue;
            error = errno;
            break;
        }
        done += (size_t)written;
    }
    if (error == 0 && objects->sync == OBJECTS_SYNC_NOW &&
        (fault_fails(FAULT_sync) || fdatasync(objects->journal_fd) != 0)) {
        error = errno;
    }
    if (error != 0) {
        log_event(LOG_ERROR, "objects_journal_write_failed", "directory=%s error=\"%s\"",
                  objects->directory, strerror(error));
        if (done > 0) journal_undo(objects);
        return error == ENOSPC || error == EDQUOT ? OBJECT_NO_SPACE : OBJECT_IO_ERROR;
    }
    atomic_fetch_add(&objects->journal_bytes, length);
    return OBJECT_OK;
}

/* Starts journal GENERATION: journal.tmp with the header and the current journal's
 * records from TAIL_FROM on (none when there is no journal yet), synced and renamed over
 * `journal`; it then takes the current journal's place. Returns false (logged) when it
 * could not, leaving the current journal in use. Write lock held. */
static bool journal_start(struct objects *objects, uint64_t generation, uint64_t tail_from) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    char path[4096], temporary[4096];
    snprintf(path, sizeof(path), "%s/journal", objects->directory);
    snprintf(temporary, sizeof(temporary), "%s/journal.tmp", objects->directory);
    int fd = fault_fails(FAULT_open)
                 ? -1
                 : open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_event(LOG_ERROR, "objects_journal_start_failed", "file=%s error=\"%s\"", temporary,
                  strerror(errno));
        return false;
    }
    unsigned char header[JOURNAL_HEADER_SIZE];
    journal_header(header, generation);
    int error = write_all(fd, header, sizeof(header));
    uint64_t end = atomic_load(&objects->journal_bytes);
    uint64_t copied = 0;
    if (objects->journal_fd >= 0 && error == 0 && tail_from < end) {
        size_t piece_size = 1u << 20;
        unsigned char *piece = malloc(piece_size);
        if (piece == NULL) error = ENOMEM;
        for (uint64_t at = tail_from; error == 0 && at < end;) {
            size_t want = end - at < piece_size ? (size_t)(end - at) : piece_size;
            ssize_t got =
                fault_fails(FAULT_read) ? -1 : pread(objects->journal_fd, piece, want, (off_t)at);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                error = got < 0 ? errno : EIO;
                break;
            }
            error = write_all(fd, piece, (size_t)got);
            at += (uint64_t)got;
            copied += (uint64_t)got;
        }
        free(piece);
    }
    if (error == 0 && (fault_fails(FAULT_sync) || fsync(fd) != 0)) error = errno;
    if (error == 0 && rename(temporary, path) != 0) error = errno;
    if (error != 0) {
        log_event(LOG_ERROR, "objects_journal_start_failed", "file=%s error=\"%s\"", temporary,
                  strerror(error));
        close(fd);
        unlink(temporary);
        return false;
    }
    sync_directory(objects->directory);
    if (objects->journal_fd >= 0) close(objects->journal_fd);
    objects->journal_fd = fd;
    objects->journal_generation = generation;
    atomic_store(&objects->journal_failed, false);
    atomic_store(&objects->journal_bytes, JOURNAL_HEADER_SIZE + copied);
    return true;
}

/* ---- snapshots ----------------------------------------------------------------------- */

/* Encodes the whole state into BUFFER as snapshot records. Returns false when out of
 * memory. Lock held (either way). */
static bool encode_state(struct objects *objects, struct record_buffer *buffer) {
    uint64_t records = 0;
    record_begin(buffer, RECORD_STATE);
    record_put_u64(buffer, objects->next_sequence);
    record_end(buffer);
    records++;
    struct object_version **stack = NULL;
    size_t stack_capacity = 0;
    for (size_t b = 0; b < objects->bucket_count && !buffer->failed; b++) {
        struct object_bucket *bucket = objects->buckets[b];
        encode_bucket_create(buffer, bucket);
        records++;
        if (bucket->versioning != OBJECT_VERSIONING_OFF) {
            encode_bucket_versioning(buffer, bucket, bucket->versioning);
            records++;
        }
        if (bucket->quota != 0) {
            encode_bucket_quota(buffer, bucket, bucket->quota);
            records++;
        }
        for (struct object_key *node = key_index_first(&bucket->index);
             node != NULL && !buffer->failed; node = node->next[0]) {
            /* Oldest first, so that replay leaves them newest first. */
            size_t depth = 0;
            for (struct object_version *version = node->versions; version != NULL;
                 version = version->older) {
                if (depth == stack_capacity) {
                    size_t grown = stack_capacity ? stack_capacity * 2 : 16;
                    struct object_version **bigger = realloc(stack, grown * sizeof(*bigger));
                    if (bigger == NULL) {
                        buffer->failed = true;
                        break;
                    }
                    stack = bigger;
                    stack_capacity = grown;
                }
                stack[depth++] = version;
            }
            while (depth > 0 && !buffer->failed) {
                encode_version_put(buffer, bucket, node->key, node->key_length, stack[--depth]);
                records++;
            }
        }
        for (size_t u = 0; u < bucket->upload_count && !buffer->failed; u++) {
            struct object_upload *upload = bucket->uploads[u];
            encode_upload_create(buffer, bucket, upload);
            records++;
            for (size_t p = 0; p < upload->part_count; p++) {
                encode_part_put(buffer, bucket, upload->id, upload->parts[p]);
                records++;
            }
        }
    }
    free(stack);
    record_begin(buffer, RECORD_SNAPSHOT_END);
    record_put_u64(buffer, records);
    return record_end(buffer);
}

/* Writes snapshot.tmp with HEADER and BUFFER, syncs it and renames it over `snapshot`.
 * Returns false (logged) when it could not. */
static bool snapshot_write(struct objects *objects, const unsigned char *header,
                           const struct record_buffer *buffer) {
    char path[4096], temporary[4096];
    snprintf(path, sizeof(path), "%s/snapshot", objects->directory);
    snprintf(temporary, sizeof(temporary), "%s/snapshot.tmp", objects->directory);
    int fd = fault_fails(FAULT_open)
                 ? -1
                 : open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int error = fd < 0 ? errno : 0;
    if (error == 0) error = write_all(fd, header, SNAPSHOT_HEADER_SIZE);
    if (error == 0) error = write_all(fd, buffer->data, buffer->length);
    if (error == 0 && (fault_fails(FAULT_sync) || fsync(fd) != 0)) error = errno;
    if (fd >= 0 && close(fd) != 0 && error == 0) error = errno;
    if (error == 0 && rename(temporary, path) != 0) error = errno;
    if (error != 0) {
        log_event(LOG_ERROR, "objects_snapshot_failed", "file=%s error=\"%s\"", temporary,
                  strerror(error));
        unlink(temporary);
        return false;
    }
    sync_directory(objects->directory);
    return true;
}

bool objects_compact(struct objects *objects, bool wait) {
    ASSERT_OBJECTS_NOT_WRITE_LOCKED(objects);
    if (wait) {
        pthread_mutex_lock(&objects->compaction_lock);
    } else if (pthread_mutex_trylock(&objects->compaction_lock) != 0) {
        return false;
    }
    int64_t started = clock_monotonic_ms();
    struct record_buffer buffer = {0};
    objects_read_lock(objects);
    bool encoded = encode_state(objects, &buffer);
    uint64_t base_generation = objects->journal_generation;
    uint64_t base_offset = atomic_load(&objects->journal_bytes);
    objects_read_unlock(objects);
    uint64_t generation =
        (objects->snapshot_generation > base_generation ? objects->snapshot_generation
                                                        : base_generation) +
        1;
    bool done = false;
    if (!encoded) {
        log_event(LOG_ERROR, "objects_snapshot_failed", "directory=%s error=\"out of memory\"",
                  objects->directory);
    } else {
        unsigned char header[SNAPSHOT_HEADER_SIZE];
        snapshot_header(header, generation, base_generation, base_offset);
        if (snapshot_write(objects, header, &buffer)) {
            objects->snapshot_generation = generation;
            atomic_store(&objects->snapshot_bytes, SNAPSHOT_HEADER_SIZE + buffer.length);
            objects_write_lock(objects);
            done = journal_start(objects, generation, base_offset);
            objects_write_unlock(objects);
        }
    }
    record_buffer_free(&buffer);
    if (done) {
        atomic_store(&objects->compaction_floor, 0);
        atomic_store(&objects->failed_compaction_ms, 0);
        log_event(LOG_INFO, "objects_snapshot_written",
                  "directory=%s generation=%" PRIu64 " bytes=%" PRIu64 " milliseconds=%lld",
                  objects->directory, generation, atomic_load(&objects->snapshot_bytes),
                  (long long)(clock_monotonic_ms() - started));
    } else {
        atomic_store(&objects->compaction_floor, atomic_load(&objects->journal_bytes) +
                                                     atomic_load(&objects->compaction_minimum));
        atomic_store(&objects->failed_compaction_ms, clock_monotonic_ms());
    }
    pthread_mutex_unlock(&objects->compaction_lock);
    return done;
}

void objects_compact_if_due(struct objects *objects) {
    /* A journal that could not be cut back after a failed append takes no more changes:
     * a new one is started as soon as possible (and again each second while that fails). */
    if (atomic_load_explicit(&objects->journal_failed, memory_order_relaxed)) {
        int64_t failed = atomic_load_explicit(&objects->failed_compaction_ms, memory_order_relaxed);
        if (failed == 0 || clock_monotonic_ms() - failed >= 1000) objects_compact(objects, false);
        return;
    }
    uint64_t journal = atomic_load_explicit(&objects->journal_bytes, memory_order_relaxed);
    uint64_t threshold = 2 * atomic_load_explicit(&objects->snapshot_bytes, memory_order_relaxed);
    uint64_t minimum = atomic_load_explicit(&objects->compaction_minimum, memory_order_relaxed);
    if (threshold < minimum) threshold = minimum;
    if (journal <= threshold) return;
    if (journal <= atomic_load_explicit(&objects->compaction_floor, memory_order_relaxed)) return;
    objects_compact(objects, false);
}

/* ---- recovery ------------------------------------------------------------------------ */

/* Whether BYTES (LENGTH of them) are all zero (a tail the file system extended but never
 * wrote). */
static bool all_zero(const unsigned char *bytes, size_t length) {
    for (size_t i = 0; i < length; i++) {
        if (bytes[i] != 0) return false;
    }
    return true;
}

/* Replays the records of DATA[FROM, SIZE) from file PATH. A SNAPSHOT must end with its
 * END record exactly at SIZE; a journal's damaged last record is a torn write: *END is
 * set to where the good records stop. Returns false with a reason in ERROR. */
static bool replay_records(struct objects *objects, const char *path, const unsigned char *data,
                           size_t size, size_t from, bool snapshot, size_t *end, char *error,
                           size_t error_size) {
    size_t offset = from;
    uint64_t records = 0;
    bool ended = false;
    while (offset < size && !ended) {
        size_t left = size - offset;
        bool whole = left >= RECORD_HEADER_SIZE;
        uint32_t payload = whole ? load_u32(data + offset) : 0;
        whole = whole && payload <= RECORD_MAX_PAYLOAD && left - RECORD_HEADER_SIZE >= payload;
        bool sound =
            whole && crc32c(data + offset + 8, (size_t)payload + 1) == load_u32(data + offset + 4);
        if (!sound) {
            size_t record_end = whole ? offset + RECORD_HEADER_SIZE + payload : size;
            if (!snapshot && (record_end == size || all_zero(data + offset, left))) {
                log_event(LOG_WARNING, "objects_journal_torn_tail",
                          "file=%s offset=%zu dropped_bytes=%zu", path, offset, left);
                break;
            }
            snprintf(error, error_size, "%s: damaged record at offset %zu", path, offset);
            return false;
        }
        uint8_t type = data[offset + 8];
        if (snapshot && type == RECORD_SNAPSHOT_END) {
            uint64_t counted = payload == 8 ? load_u64(data + offset + 9) : UINT64_MAX;
            if (counted != records || offset + RECORD_HEADER_SIZE + payload != size) {
                snprintf(error, error_size, "%s: bad end record at offset %zu", path, offset);
                return false;
            }
            ended = true;
        } else {
            enum replay_result result =
                type == RECORD_SNAPSHOT_END
                    ? REPLAY_BAD
                    : replay_record(objects, type, data + offset + RECORD_HEADER_SIZE, payload);
            if (result == REPLAY_NO_MEMORY) {
                snprintf(error, error_size, "%s: out of memory at offset %zu", path, offset);
                return false;
            }
            if (result != REPLAY_OK) {
                snprintf(error, error_size,
                         "%s: record at offset %zu (type %u) does not fit the state", path, offset,
                         (unsigned)type);
                return false;
            }
            records++;
        }
        offset += RECORD_HEADER_SIZE + payload;
    }
    if (snapshot && !ended) {
        snprintf(error, error_size, "%s: incomplete (no end record)", path);
        return false;
    }
    *end = offset;
    return true;
}

/* Loads `snapshot` if there is one: sets the snapshot generation, *BASE_GENERATION and
 * *BASE_OFFSET (NO_GENERATION without one). Returns false with a reason in ERROR. */
static bool snapshot_load(struct objects *objects, uint64_t *base_generation, uint64_t *base_offset,
                          char *error, size_t error_size) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/snapshot", objects->directory);
    *base_generation = NO_GENERATION;
    *base_offset = 0;
    objects->snapshot_generation = 0;
    int fd = fault_fails(FAULT_open) ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return true;
        snprintf(error, error_size, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    unsigned char *data;
    size_t size;
    int failure = read_whole(fd, &data, &size);
    close(fd);
    if (failure != 0) {
        snprintf(error, error_size, "cannot read %s: %s", path, strerror(failure));
        return false;
    }
    bool ok = false;
    if (size < SNAPSHOT_HEADER_SIZE || memcmp(data, SNAPSHOT_MAGIC, 8) != 0 ||
        load_u32(data + 36) != crc32c(data, 36) || load_u32(data + 32) != FILE_FORMAT) {
        snprintf(error, error_size, "%s: bad header", path);
    } else {
        objects->snapshot_generation = load_u64(data + 8);
        *base_generation = load_u64(data + 16);
        *base_offset = load_u64(data + 24);
        size_t end;
        ok = replay_records(objects, path, data, size, SNAPSHOT_HEADER_SIZE, true, &end, error,
                            error_size);
        atomic_store(&objects->snapshot_bytes, size);
    }
    free(data);
    return ok;
}

bool journal_recover(struct objects *objects, bool *stale_journal, char *error, size_t error_size) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    char path[4096];
    *stale_journal = false;
    snprintf(path, sizeof(path), "%s/snapshot.tmp", objects->directory);
    unlink(path);
    snprintf(path, sizeof(path), "%s/journal.tmp", objects->directory);
    unlink(path);
    uint64_t base_generation, base_offset;
    if (!snapshot_load(objects, &base_generation, &base_offset, error, error_size)) return false;
    uint64_t generation = objects->snapshot_generation;

    snprintf(path, sizeof(path), "%s/journal", objects->directory);
    int fd = fault_fails(FAULT_open) ? -1 : open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) {
            snprintf(error, error_size, "cannot open %s: %s", path, strerror(errno));
            return false;
        }
        if (generation != 0) {
            log_event(LOG_WARNING, "objects_journal_missing", "file=%s generation=%" PRIu64, path,
                      generation);
        }
        if (!journal_start(objects, generation, 0)) {
            snprintf(error, error_size, "cannot create %s", path);
            return false;
        }
        return true;
    }
    unsigned char *data;
    size_t size;
    int failure = read_whole(fd, &data, &size);
    if (failure != 0) {
        close(fd);
        snprintf(error, error_size, "cannot read %s: %s", path, strerror(failure));
        return false;
    }
    bool ok = false;
    size_t from = JOURNAL_HEADER_SIZE;
    uint64_t journal_generation = size >= JOURNAL_HEADER_SIZE ? load_u64(data + 8) : 0;
    if (size < JOURNAL_HEADER_SIZE || memcmp(data, JOURNAL_MAGIC, 8) != 0 ||
        load_u32(data + 20) != crc32c(data, 20) || load_u32(data + 16) != FILE_FORMAT) {
        snprintf(error, error_size, "%s: bad header", path);
        goto out;
    }
    if (journal_generation != generation) {
        if (journal_generation != base_generation || base_offset < JOURNAL_HEADER_SIZE) {
            snprintf(error, error_size,
                     "%s: generation %" PRIu64 " does not follow the snapshot's %" PRIu64, path,
                     journal_generation, generation);
            goto out;
        }
        /* A crash between the snapshot's rename and the new journal's: the snapshot holds
         * this journal up to base_offset. */
        *stale_journal = true;
        from = base_offset < size ? (size_t)base_offset : size;
        log_event(LOG_INFO, "objects_journal_previous_generation",
                  "file=%s generation=%" PRIu64 " from=%zu", path, journal_generation, from);
    }
    size_t end;
    if (!replay_records(objects, path, data, size, from, false, &end, error, error_size)) {
        goto out;
    }
    if (end < size && ftruncate(fd, (off_t)end) != 0) {
        snprintf(error, error_size, "cannot cut the torn tail of %s: %s", path, strerror(errno));
        goto out;
    }
    objects->journal_fd = fd;
    objects->journal_generation = journal_generation;
    atomic_store(&objects->journal_bytes, end);
    ok = true;
out:
    free(data);
    if (!ok) close(fd);
    return ok;
}
