/* Shared by the object store's files; not used outside them (and the unit tests).
 *
 *   objects.c        the public calls (engine/objects.h): checks, locking, journaling
 *   object_state.c   the in-memory state and the changes journal records describe
 *   object_index.c   the ordered key index (a skip list) and the id hash map
 *   object_journal.c the journal and snapshot files: records, replay, compaction
 *
 * Every change goes the same way, live and at replay: validate (live only), *plan* it
 * (every allocation it needs: a key node, room in the maps and arrays), write its
 * journal record (live only), then *apply* it, which cannot fail. So an allocation
 * failure or a journal error leaves the state as it was, and replaying a record does
 * exactly what the live call did.
 *
 * Locking: one pthread_rwlock_t (objects->lock) guards all metadata: buckets, keys,
 * versions, uploads, the blob reference counts and the journal descriptor. Readers
 * (get, list, info, stats) hold it shared; every change holds it exclusively from its
 * plan to its apply, including the journal append (and its fdatasync under
 * OBJECTS_SYNC_NOW), so the journal's order is the order changes were made. Blob files
 * whose last reference went are unlinked after the lock is released; objects_get() takes
 * a hold on the version's blobs (blob_store_hold()) before it releases the lock, so such
 * an unlink, ordered after it by the lock, waits for the handle and the readers opened
 * from it (engine/blob.h). The blob store's holds lock is taken under objects->lock,
 * never the other way round. The rwlock prefers
 * writers, so a stream of listings cannot starve puts. compaction_lock serializes
 * snapshot writing and is taken before objects->lock, never while holding it. */
#ifndef STRATA_ENGINE_OBJECTS_INTERNAL_H
#define STRATA_ENGINE_OBJECTS_INTERNAL_H

#include "base/checks.h"
#include "engine/objects.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- versions, keys, uploads, buckets ------------------------------------------------ */

/* One version of a key; one allocation holds the struct, its extents and attributes. */
struct object_version {
    struct object_version *older; /* the next older version of the key */
    uint64_t sequence;            /* store-wide creation order (newer versions are higher) */
    char version_id[OBJECT_VERSION_ID_MAX + 1];
    char etag[OBJECT_ETAG_MAX + 1];
    bool delete_marker;
    uint32_t parts;
    uint32_t crc32c;
    uint64_t length;
    int64_t modified_ms;
    unsigned char *attributes;
    size_t attributes_length;
    struct blob_extent *extents;
    size_t extent_count;
};

/* A key of the skip list, with its versions newest first (never empty while linked).
 * One allocation: the struct, LEVEL forward links, then the key bytes. */
struct object_key {
    struct object_version *versions;
    unsigned char *key;
    uint32_t key_length;
    uint32_t level;
    struct object_key *next[]; /* next[0] is the following key in order */
};

#define KEY_INDEX_MAX_LEVEL 24

/* A bucket's keys in memcmp-then-length order. */
struct key_index {
    struct object_key *head[KEY_INDEX_MAX_LEVEL];
    uint32_t level; /* levels in use */
    size_t count;
};

/* A part of a multipart upload; one allocation holds the struct and its extents. */
struct object_part {
    int number;
    unsigned char md5[16];
    char etag[OBJECT_ETAG_MAX + 1];
    uint64_t length;
    uint32_t crc32c;
    int64_t modified_ms;
    struct blob_extent *extents;
    size_t extent_count;
};

/* A multipart upload in progress; one allocation holds the struct, key and attributes. */
struct object_upload {
    char id[OBJECT_UPLOAD_ID_MAX + 1]; /* 16 hex digits of SEQUENCE, 16 random */
    uint64_t sequence;                 /* unique; the id map's key */
    struct object_bucket *bucket;
    unsigned char *key;
    size_t key_length;
    int64_t initiated_ms;
    unsigned char *attributes;
    size_t attributes_length;
    struct object_part **parts; /* ascending part numbers */
    size_t part_count;
    size_t part_capacity;
};

struct object_bucket {
    char name[OBJECT_BUCKET_NAME_MAX + 1];
    size_t name_length;
    int64_t created_ms;
    enum object_versioning versioning;
    uint64_t quota;
    uint64_t objects; /* keys whose current version is not a delete marker */
    uint64_t versions;
    uint64_t bytes;
    struct key_index index;
    struct object_upload **uploads; /* ordered by key, then sequence */
    size_t upload_count;
    size_t upload_capacity;
};

/* ---- the id map: 64-bit key -> non-zero value (open addressing, linear probing) ------ */

struct id_map {
    uint64_t *keys;
    uintptr_t *values; /* 0 marks an empty slot */
    size_t capacity;   /* a power of two, or 0 */
    size_t count;
};

/* The value of KEY, or 0. */
uintptr_t id_map_get(const struct id_map *map, uint64_t key);

/* Makes room for MORE new keys, so that that many id_map_set() calls cannot fail.
 * Returns false when out of memory (the map is unchanged). */
bool id_map_reserve(struct id_map *map, size_t more);

/* Sets KEY to VALUE (not 0). A new key needs room made by id_map_reserve(). */
void id_map_set(struct id_map *map, uint64_t key, uintptr_t value);

/* Removes KEY if present. */
void id_map_remove(struct id_map *map, uint64_t key);

void id_map_free(struct id_map *map);

/* ---- the key index ------------------------------------------------------------------ */

/* memcmp order, then the shorter first: <0, 0, >0. */
int key_compare(const void *left, size_t left_length, const void *right, size_t right_length);

/* A random level for a new node (1 to KEY_INDEX_MAX_LEVEL, each further level with
 * probability 1/4), drawn from *STATE (xorshift; the caller serializes). */
uint32_t key_index_random_level(uint64_t *state);

/* A new unlinked node for KEY (copied) with LEVEL links and no versions; NULL when out
 * of memory. Freed with free(). */
struct object_key *key_node_allocate(const void *key, size_t key_length, uint32_t level);

/* Bytes a node of LEVEL links and KEY_LENGTH bytes occupies (for metadata_bytes). */
size_t key_node_size(size_t key_length, uint32_t level);

/* The node of KEY, or NULL. */
struct object_key *key_index_find(const struct key_index *index, const void *key,
                                  size_t key_length);

/* The first node whose key is >= KEY (INCLUSIVE) or > KEY; NULL at the end. */
struct object_key *key_index_seek(const struct key_index *index, const void *key, size_t key_length,
                                  bool inclusive);

/* The first node in order, or NULL. */
struct object_key *key_index_first(const struct key_index *index);

/* Links NODE, whose key must not be in INDEX yet. */
void key_index_insert(struct key_index *index, struct object_key *node);

/* Unlinks NODE (which is in INDEX); the caller frees it. */
void key_index_remove(struct key_index *index, struct object_key *node);

/* ---- the store ---------------------------------------------------------------------- */

struct objects {
    char *directory;
    enum objects_sync sync;
    uint64_t min_part_size;
    struct blob_store *blobs;

    pthread_rwlock_t lock;
    struct check_owner write_owner; /* who holds LOCK exclusively (checking builds) */

    /* Guarded by LOCK. */
    struct object_bucket **buckets; /* name order; room for OBJECTS_MAX_BUCKETS */
    size_t bucket_count;
    struct id_map blob_references; /* blob id -> how many extents refer to it */
    struct id_map uploads;         /* upload sequence -> struct object_upload * */
    uint64_t next_sequence;        /* of versions and uploads */
    uint64_t random_state;         /* xorshift state for skip-list levels */
    uint64_t metadata_bytes;

    /* The journal. The descriptor and generation are guarded by LOCK; the byte count and
     * the failed flag are atomic so that the compaction check may read them unlocked. */
    int journal_fd;
    uint64_t journal_generation;
    _Atomic bool journal_failed;          /* a failed append could not be undone: refuse changes
                                           * until a compaction starts a new journal */
    _Atomic uint64_t journal_bytes;       /* the end of the last good record */
    _Atomic int64_t failed_compaction_ms; /* when a compaction of a failed journal last failed */
    /* Guarded by COMPACTION_LOCK (read unlocked by the compaction check). */
    pthread_mutex_t compaction_lock;
    uint64_t snapshot_generation;
    _Atomic uint64_t snapshot_bytes;
    _Atomic uint64_t compaction_minimum; /* the journal is compacted past max(this, 2 x snapshot) */
    _Atomic uint64_t compaction_floor;   /* after a failed compaction, not before this size */
    uint64_t recovery_ms;
};

#define OBJECTS_COMPACTION_MINIMUM (16ull << 20)

static inline void objects_write_lock(struct objects *objects) {
    pthread_rwlock_wrlock(&objects->lock);
    check_acquired(&objects->write_owner);
}

static inline void objects_write_unlock(struct objects *objects) {
    check_releasing(&objects->write_owner);
    pthread_rwlock_unlock(&objects->lock);
}

static inline void objects_read_lock(struct objects *objects) {
    pthread_rwlock_rdlock(&objects->lock);
}

static inline void objects_read_unlock(struct objects *objects) {
    pthread_rwlock_unlock(&objects->lock);
}

#define ASSERT_OBJECTS_WRITE_LOCKED(objects)     STRATA_ASSERT(check_held(&(objects)->write_owner))
#define ASSERT_OBJECTS_NOT_WRITE_LOCKED(objects) STRATA_ASSERT(!check_held(&(objects)->write_owner))

/* ---- changes (object_state.c) -------------------------------------------------------- */

/* What one live change leaves to do after the lock is released: blob files to unlink.
 * Replay passes NULL (the sweep after recovery removes unreferenced blobs). */
struct object_change {
    uint64_t *unlinks;
    size_t unlink_count;
    size_t unlink_capacity;
};

/* Unlinks the blobs CHANGE collected and frees its array. Call without the lock. */
void change_finish(struct objects *objects, struct object_change *change);

/* A new version with room for EXTENT_COUNT extents and ATTRIBUTES_LENGTH bytes of
 * attributes (zeroed otherwise); NULL when out of memory. Freed with free(). */
struct object_version *version_allocate(size_t extent_count, size_t attributes_length);

/* A new part with room for EXTENT_COUNT extents; NULL when out of memory. */
struct object_part *part_allocate(size_t extent_count);

/* A new upload holding KEY and ATTRIBUTES (copied), without parts; NULL when out of
 * memory. Free with upload_free_unlinked() (it holds no references yet). */
struct object_upload *upload_allocate(const void *key, size_t key_length, const void *attributes,
                                      size_t attributes_length);
void upload_free_unlinked(struct object_upload *upload);

/* The bucket named NAME, or NULL. Lock held (either way). */
struct object_bucket *bucket_find(const struct objects *objects, const char *name, size_t length);

/* The first position in BUCKET's uploads (ordered by key, then sequence) at or after
 * (KEY, SEQUENCE). Lock held (either way). */
size_t upload_position(const struct object_bucket *bucket, const void *key, size_t key_length,
                       uint64_t sequence);

/* The upload with id ID in BUCKET, or NULL. Lock held (either way). */
struct object_upload *upload_find(const struct objects *objects, const struct object_bucket *bucket,
                                  const char *id);

/* A version put planned: every allocation it needs is made. */
struct version_put_plan {
    struct object_bucket *bucket;
    struct object_key *node; /* the key's node, new (unlinked) when NEW_NODE */
    bool new_node;
    struct object_version *version; /* owned by the plan until applied */
};

/* Plans putting VERSION (owned by the caller until applied) at KEY of BUCKET. Returns
 * OBJECT_OK or OBJECT_NO_MEMORY (nothing changed). Write lock held. */
enum object_status plan_version_put(struct objects *objects, struct object_bucket *bucket,
                                    const void *key, size_t key_length,
                                    struct object_version *version, struct version_put_plan *plan);

/* Gives up a plan that was not applied (frees the new node; the version stays the
 * caller's). */
void plan_version_put_cancel(struct version_put_plan *plan);

/* Applies a planned put: the version becomes the key's newest; a "null" version id
 * replaces the key's null version (whose blob references are dropped). Write lock held. */
void apply_version_put(struct objects *objects, struct version_put_plan *plan,
                       struct object_change *change);

/* Removes version VERSION_ID of KEY in BUCKET (nothing if there is none), and the key
 * when it has no version left. Returns whether a version was removed. Write lock held. */
bool apply_version_remove(struct objects *objects, struct object_bucket *bucket, const void *key,
                          size_t key_length, const char *version_id, struct object_change *change);

/* Plans adding a bucket: room for it and its allocation. Returns NULL when out of
 * memory. The caller fills name/created_ms. Write lock held. */
struct object_bucket *bucket_allocate(void);

/* Links BUCKET (whose name is not taken; fewer than OBJECTS_MAX_BUCKETS exist). Write
 * lock held. */
void apply_bucket_create(struct objects *objects, struct object_bucket *bucket);

/* Removes BUCKET (which holds no version), aborting its uploads. Write lock held. */
void apply_bucket_delete(struct objects *objects, struct object_bucket *bucket,
                         struct object_change *change);

/* Makes room for one more upload in BUCKET and the upload map. Returns false when out
 * of memory. Write lock held. */
bool plan_upload_create(struct objects *objects, struct object_bucket *bucket);

/* Links UPLOAD (id and sequence set, unique) in BUCKET. Write lock held. */
void apply_upload_create(struct objects *objects, struct object_bucket *bucket,
                         struct object_upload *upload);

/* Makes room for PART in UPLOAD and for its blob references. Returns false when out of
 * memory. Write lock held. */
bool plan_part_put(struct objects *objects, struct object_upload *upload,
                   const struct object_part *part);

/* Adds PART (taking it) to UPLOAD, replacing a part of the same number. Write lock held. */
void apply_part_put(struct objects *objects, struct object_upload *upload, struct object_part *part,
                    struct object_change *change);

/* Removes UPLOAD, dropping its parts' blob references. Write lock held. */
void apply_upload_remove(struct objects *objects, struct object_upload *upload,
                         struct object_change *change);

/* Frees every bucket, key, version and upload (no unlinks). */
void state_free(struct objects *objects);

/* ---- the journal (object_journal.c) --------------------------------------------------- */

enum record_type {
    RECORD_BUCKET_CREATE = 1,
    RECORD_BUCKET_DELETE = 2,
    RECORD_BUCKET_VERSIONING = 3,
    RECORD_BUCKET_QUOTA = 4,
    RECORD_VERSION_PUT = 5,
    RECORD_VERSION_REMOVE = 6,
    RECORD_UPLOAD_CREATE = 7,
    RECORD_PART_PUT = 8,
    RECORD_UPLOAD_COMPLETE = 9,
    RECORD_UPLOAD_ABORT = 10,
    RECORD_STATE = 11,        /* snapshot: next_sequence */
    RECORD_SNAPSHOT_END = 12, /* snapshot: how many records came before */
};

/* A growing buffer of encoded records. */
struct record_buffer {
    unsigned char *data;
    size_t length;
    size_t capacity;
    size_t record_start;
    bool failed; /* out of memory: the buffer is unusable */
};

void record_begin(struct record_buffer *buffer, enum record_type type);
void record_put_u8(struct record_buffer *buffer, uint8_t value);
void record_put_u32(struct record_buffer *buffer, uint32_t value);
void record_put_u64(struct record_buffer *buffer, uint64_t value);
/* A u32 length, then the bytes. */
void record_put_bytes(struct record_buffer *buffer, const void *data, size_t length);
/* Fills in the record's header. Returns false when the buffer failed. */
bool record_end(struct record_buffer *buffer);
void record_buffer_free(struct record_buffer *buffer);

/* The records of each change, shared by the journal and the snapshot (object_journal.c
 * has the payload layouts). Each appends one record to BUFFER; BUFFER->failed tells of
 * an allocation failure. */
void encode_bucket_create(struct record_buffer *buffer, const struct object_bucket *bucket);
void encode_bucket_delete(struct record_buffer *buffer, const struct object_bucket *bucket);
void encode_bucket_versioning(struct record_buffer *buffer, const struct object_bucket *bucket,
                              enum object_versioning state);
void encode_bucket_quota(struct record_buffer *buffer, const struct object_bucket *bucket,
                         uint64_t quota);
void encode_version_put(struct record_buffer *buffer, const struct object_bucket *bucket,
                        const void *key, size_t key_length, const struct object_version *version);
void encode_version_remove(struct record_buffer *buffer, const struct object_bucket *bucket,
                           const void *key, size_t key_length, const char *version_id);
void encode_upload_create(struct record_buffer *buffer, const struct object_bucket *bucket,
                          const struct object_upload *upload);
void encode_part_put(struct record_buffer *buffer, const struct object_bucket *bucket,
                     const char *upload_id, const struct object_part *part);
void encode_upload_complete(struct record_buffer *buffer, const struct object_bucket *bucket,
                            const char *upload_id, const struct object_version *version);
void encode_upload_abort(struct record_buffer *buffer, const struct object_bucket *bucket,
                         const char *upload_id);

/* Appends BUFFER's records to the journal (one write()), syncing them under
 * OBJECTS_SYNC_NOW. On an error the journal is cut back to where it was. Returns
 * OBJECT_OK, OBJECT_IO_ERROR or OBJECT_NO_SPACE. Write lock held. */
enum object_status journal_append(struct objects *objects, const struct record_buffer *buffer);

/* Loads the snapshot and replays the journal of OBJECTS->directory (objects_open()).
 * Returns false with a reason in ERROR. Sets *STALE_JOURNAL when the journal belongs
 * to the previous generation (the caller compacts at once). Write lock held. */
bool journal_recover(struct objects *objects, bool *stale_journal, char *error, size_t error_size);

/* Writes a snapshot of the state and starts a new journal holding what came after it
 * (see object_journal.c). WAIT: wait for a compaction in progress (else skip). Returns
 * true when both were written. Called without the lock. */
bool objects_compact(struct objects *objects, bool wait);

/* Compacts when the journal has grown past max(compaction_minimum, 2 x the snapshot).
 * Called without the lock at the end of a change. */
void objects_compact_if_due(struct objects *objects);

/* ---- test hooks ------------------------------------------------------------------- */

/* Frees OBJECTS as a crash would leave its files: no snapshot, no sync. */
void objects_abandon(struct objects *objects);

/* Sets the journal size below which no compaction happens (default 16 MiB). */
void objects_set_compaction_minimum(struct objects *objects, uint64_t bytes);

#endif
