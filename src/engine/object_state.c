/* The object store's in-memory state and the changes its journal records describe
 * (objects_internal.h): plans make every allocation a change needs, applies cannot
 * fail. Blob reference counts live in objects->blob_references, one count per extent
 * that names the blob; when one reaches zero the blob is queued on the change for
 * unlinking after the lock is released (or, at replay, left to the recovery sweep). */
#include "engine/objects_internal.h"

#include "base/log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- allocations --------------------------------------------------------------------- */

static size_t version_size(size_t extent_count, size_t attributes_length) {
    return sizeof(struct object_version) + extent_count * sizeof(struct blob_extent) +
           attributes_length;
}

struct object_version *version_allocate(size_t extent_count, size_t attributes_length) {
    struct object_version *version = calloc(1, version_size(extent_count, attributes_length));
    if (version == NULL) return NULL;
    version->extents = (struct blob_extent *)(version + 1);
    version->extent_count = extent_count;
    version->attributes = (unsigned char *)(version->extents + extent_count);
    version->attributes_length = attributes_length;
    return version;
}

struct object_part *part_allocate(size_t extent_count) {
    struct object_part *part =
        calloc(1, sizeof(struct object_part) + extent_count * sizeof(struct blob_extent));
    if (part == NULL) return NULL;
    part->extents = (struct blob_extent *)(part + 1);
    part->extent_count = extent_count;
    return part;
}

static size_t upload_size(size_t key_length, size_t attributes_length) {
    return sizeof(struct object_upload) + key_length + attributes_length;
}

struct object_upload *upload_allocate(const void *key, size_t key_length, const void *attributes,
                                      size_t attributes_length) {
    struct object_upload *upload = calloc(1, upload_size(key_length, attributes_length));
    if (upload == NULL) return NULL;
    upload->key = (unsigned char *)(upload + 1);
    upload->key_length = key_length;
    if (key_length > 0) memcpy(upload->key, key, key_length);
    upload->attributes = upload->key + key_length;
    upload->attributes_length = attributes_length;
    if (attributes_length > 0) memcpy(upload->attributes, attributes, attributes_length);
    return upload;
}

void upload_free_unlinked(struct object_upload *upload) {
    if (upload == NULL) return;
    for (size_t i = 0; i < upload->part_count; i++)
        free(upload->parts[i]);
    free(upload->parts);
    free(upload);
}

struct object_bucket *bucket_allocate(void) {
    return calloc(1, sizeof(struct object_bucket));
}

/* ---- blob references ----------------------------------------------------------------- */

/* Counts one more reference to each extent's blob; room was reserved. Write lock held. */
static void reference_extents(struct objects *objects, const struct blob_extent *extents,
                              size_t count) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    for (size_t i = 0; i < count; i++) {
        uintptr_t references = id_map_get(&objects->blob_references, extents[i].id);
        id_map_set(&objects->blob_references, extents[i].id, references + 1);
    }
}

/* Queues blob ID for unlinking on CHANGE (or unlinks it now when the queue cannot grow).
 * Write lock held. */
static void queue_unlink(struct objects *objects, struct object_change *change, uint64_t id) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    if (change == NULL) return;
    if (change->unlink_count == change->unlink_capacity) {
        size_t grown = change->unlink_capacity ? change->unlink_capacity * 2 : 8;
        uint64_t *bigger = realloc(change->unlinks, grown * sizeof(*bigger));
        if (bigger == NULL) {
            blob_store_unlink(objects->blobs, id);
            return;
        }
        change->unlinks = bigger;
        change->unlink_capacity = grown;
    }
    change->unlinks[change->unlink_count++] = id;
}

/* Drops one reference to each extent's blob, queueing those left without any. Write
 * lock held. */
static void release_extents(struct objects *objects, const struct blob_extent *extents,
                            size_t count, struct object_change *change) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    for (size_t i = 0; i < count; i++) {
        uintptr_t references = id_map_get(&objects->blob_references, extents[i].id);
        if (references > 1) {
            id_map_set(&objects->blob_references, extents[i].id, references - 1);
        } else if (references == 1) {
            id_map_remove(&objects->blob_references, extents[i].id);
            queue_unlink(objects, change, extents[i].id);
        }
    }
}

void change_finish(struct objects *objects, struct object_change *change) {
    ASSERT_OBJECTS_NOT_WRITE_LOCKED(objects);
    for (size_t i = 0; i < change->unlink_count; i++) {
        enum blob_status status = blob_store_unlink(objects->blobs, change->unlinks[i]);
        if (status != BLOB_OK && status != BLOB_NOT_FOUND) {
            log_event(LOG_WARNING, "object_blob_unlink_failed", "blob=%016" PRIx64,
                      change->unlinks[i]);
        }
    }
    free(change->unlinks);
    change->unlinks = NULL;
    change->unlink_count = 0;
    change->unlink_capacity = 0;
}

/* ---- lookups ------------------------------------------------------------------------- */

/* The position of NAME in the bucket array: where it is (*FOUND) or would go. */
static size_t bucket_position(const struct objects *objects, const char *name, size_t length,
                              bool *found) {
    size_t low = 0, high = objects->bucket_count;
    *found = false;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        const struct object_bucket *bucket = objects->buckets[middle];
        int order = key_compare(bucket->name, bucket->name_length, name, length);
        if (order == 0) {
            *found = true;
            return middle;
        }
        if (order < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

struct object_bucket *bucket_find(const struct objects *objects, const char *name, size_t length) {
    bool found;
    size_t position = bucket_position(objects, name, length, &found);
    return found ? objects->buckets[position] : NULL;
}

/* Parses the 16 hex digits at TEXT. Returns false if they are not that. */
static bool parse_hex64(const char *text, uint64_t *value) {
    uint64_t result = 0;
    for (int i = 0; i < 16; i++) {
        char c = text[i];
        uint64_t digit;
        if (c >= '0' && c <= '9') {
            digit = (uint64_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            digit = (uint64_t)(c - 'a' + 10);
        } else {
            return false;
        }
        result = result << 4 | digit;
    }
    *value = result;
    return true;
}

struct object_upload *upload_find(const struct objects *objects, const struct object_bucket *bucket,
                                  const char *id) {
    uint64_t sequence;
    if (id == NULL || strlen(id) != OBJECT_UPLOAD_ID_MAX || !parse_hex64(id, &sequence)) {
        return NULL;
    }
    struct object_upload *upload = (struct object_upload *)id_map_get(&objects->uploads, sequence);
    if (upload == NULL || upload->bucket != bucket || strcmp(upload->id, id) != 0) return NULL;
    return upload;
}

/* ---- versions ------------------------------------------------------------------------ */

enum object_status plan_version_put(struct objects *objects, struct object_bucket *bucket,
                                    const void *key, size_t key_length,
                                    struct object_version *version, struct version_put_plan *plan) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    *plan = (struct version_put_plan){.bucket = bucket, .version = version};
    if (!id_map_reserve(&objects->blob_references, version->extent_count)) {
        return OBJECT_NO_MEMORY;
    }
    plan->node = key_index_find(&bucket->index, key, key_length);
    if (plan->node == NULL) {
        uint32_t level = key_index_random_level(&objects->random_state);
        plan->node = key_node_allocate(key, key_length, level);
        if (plan->node == NULL) return OBJECT_NO_MEMORY;
        plan->new_node = true;
    }
    return OBJECT_OK;
}

void plan_version_put_cancel(struct version_put_plan *plan) {
    if (plan->new_node) free(plan->node);
    plan->node = NULL;
    plan->new_node = false;
}

static bool key_visible(const struct object_key *node) {
    return node->versions != NULL && !node->versions->delete_marker;
}

/* Frees VERSION, dropping its blob references. Write lock held. */
static void version_release(struct objects *objects, struct object_bucket *bucket,
                            struct object_version *version, struct object_change *change) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    bucket->versions--;
    bucket->bytes -= version->length;
    objects->metadata_bytes -= version_size(version->extent_count, version->attributes_length);
    release_extents(objects, version->extents, version->extent_count, change);
    free(version);
}

void apply_version_put(struct objects *objects, struct version_put_plan *plan,
                       struct object_change *change) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    struct object_bucket *bucket = plan->bucket;
    struct object_key *node = plan->node;
    struct object_version *version = plan->version;
    if (plan->new_node) {
        key_index_insert(&bucket->index, node);
        objects->metadata_bytes += key_node_size(node->key_length, node->level);
    }
    bool was_visible = key_visible(node);
    struct object_version *replaced = NULL;
    if (strcmp(version->version_id, "null") == 0) {
        for (struct object_version **link = &node->versions; *link != NULL;
             link = &(*link)->older) {
            if (strcmp((*link)->version_id, "null") == 0) {
                replaced = *link;
                *link = replaced->older;
                break;
            }
        }
    }
    /* The new version's references are counted before the replaced one's are dropped,
     * so a copy onto itself keeps its blobs. */
    reference_extents(objects, version->extents, version->extent_count);
    version->older = node->versions;
    node->versions = version;
    bucket->versions++;
    bucket->bytes += version->length;
    objects->metadata_bytes += version_size(version->extent_count, version->attributes_length);
    if (replaced != NULL) version_release(objects, bucket, replaced, change);
    bool visible = key_visible(node);
    bucket->objects = bucket->objects + (visible ? 1 : 0) - (was_visible ? 1 : 0);
    if (version->sequence >= objects->next_sequence) objects->next_sequence = version->sequence + 1;
    plan->node = NULL;
    plan->new_node = false;
    plan->version = NULL;
}

bool apply_version_remove(struct objects *objects, struct object_bucket *bucket, const void *key,
                          size_t key_length, const char *version_id, struct object_change *change) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    struct object_key *node = key_index_find(&bucket->index, key, key_length);
    if (node == NULL) return false;
    bool was_visible = key_visible(node);
    struct object_version *removed = NULL;
    for (struct object_version **link = &node->versions; *link != NULL; link = &(*link)->older) {
        if (strcmp((*link)->version_id, version_id) == 0) {
            removed = *link;
            *link = removed->older;
            break;
        }
    }
    if (removed == NULL) return false;
    version_release(objects, bucket, removed, change);
    bool visible = key_visible(node);
    bucket->objects = bucket->objects + (visible ? 1 : 0) - (was_visible ? 1 : 0);
    if (node->versions == NULL) {
        key_index_remove(&bucket->index, node);
        objects->metadata_bytes -= key_node_size(node->key_length, node->level);
        free(node);
    }
    return true;
}

/* ---- buckets ------------------------------------------------------------------------- */

void apply_bucket_create(struct objects *objects, struct object_bucket *bucket) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    STRATA_ASSERT(objects->bucket_count < OBJECTS_MAX_BUCKETS);
    bool found;
    size_t position = bucket_position(objects, bucket->name, bucket->name_length, &found);
    STRATA_ASSERT(!found);
    memmove(&objects->buckets[position + 1], &objects->buckets[position],
            (objects->bucket_count - position) * sizeof(*objects->buckets));
    objects->buckets[position] = bucket;
    objects->bucket_count++;
    objects->metadata_bytes += sizeof(*bucket);
}

void apply_bucket_delete(struct objects *objects, struct object_bucket *bucket,
                         struct object_change *change) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    STRATA_ASSERT(bucket->index.count == 0);
    while (bucket->upload_count > 0) {
        apply_upload_remove(objects, bucket->uploads[bucket->upload_count - 1], change);
    }
    bool found;
    size_t position = bucket_position(objects, bucket->name, bucket->name_length, &found);
    STRATA_ASSERT(found);
    memmove(&objects->buckets[position], &objects->buckets[position + 1],
            (objects->bucket_count - position - 1) * sizeof(*objects->buckets));
    objects->bucket_count--;
    objects->metadata_bytes -= sizeof(*bucket) + bucket->upload_capacity * sizeof(void *);
    free(bucket->uploads);
    free(bucket);
}

/* ---- uploads ------------------------------------------------------------------------- */

bool plan_upload_create(struct objects *objects, struct object_bucket *bucket) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    if (!id_map_reserve(&objects->uploads, 1)) return false;
    if (bucket->upload_count == bucket->upload_capacity) {
        size_t grown = bucket->upload_capacity ? bucket->upload_capacity * 2 : 8;
        struct object_upload **bigger = realloc(bucket->uploads, grown * sizeof(*bigger));
        if (bigger == NULL) return false;
        objects->metadata_bytes += (grown - bucket->upload_capacity) * sizeof(*bigger);
        bucket->uploads = bigger;
        bucket->upload_capacity = grown;
    }
    return true;
}

/* Orders uploads by key, then by when they started. */
static int upload_order(const struct object_upload *upload, const void *key, size_t key_length,
                        uint64_t sequence) {
    int order = key_compare(upload->key, upload->key_length, key, key_length);
    if (order != 0) return order;
    return (upload->sequence > sequence) - (upload->sequence < sequence);
}

size_t upload_position(const struct object_bucket *bucket, const void *key, size_t key_length,
                       uint64_t sequence) {
    size_t low = 0, high = bucket->upload_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (upload_order(bucket->uploads[middle], key, key_length, sequence) < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

void apply_upload_create(struct objects *objects, struct object_bucket *bucket,
                         struct object_upload *upload) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    STRATA_ASSERT(bucket->upload_count < bucket->upload_capacity);
    upload->bucket = bucket;
    size_t position = upload_position(bucket, upload->key, upload->key_length, upload->sequence);
    memmove(&bucket->uploads[position + 1], &bucket->uploads[position],
            (bucket->upload_count - position) * sizeof(*bucket->uploads));
    bucket->uploads[position] = upload;
    bucket->upload_count++;
    id_map_set(&objects->uploads, upload->sequence, (uintptr_t)upload);
    objects->metadata_bytes += upload_size(upload->key_length, upload->attributes_length);
    if (upload->sequence >= objects->next_sequence) objects->next_sequence = upload->sequence + 1;
}

/* The position of part NUMBER in UPLOAD: where it is (*FOUND) or would go. */
static size_t part_position(const struct object_upload *upload, int number, bool *found) {
    size_t low = 0, high = upload->part_count;
    *found = false;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        int here = upload->parts[middle]->number;
        if (here == number) {
            *found = true;
            return middle;
        }
        if (here < number) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

bool plan_part_put(struct objects *objects, struct object_upload *upload,
                   const struct object_part *part) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    if (!id_map_reserve(&objects->blob_references, part->extent_count)) return false;
    if (upload->part_count == upload->part_capacity) {
        size_t grown = upload->part_capacity ? upload->part_capacity * 2 : 8;
        struct object_part **bigger = realloc(upload->parts, grown * sizeof(*bigger));
        if (bigger == NULL) return false;
        objects->metadata_bytes += (grown - upload->part_capacity) * sizeof(*bigger);
        upload->parts = bigger;
        upload->part_capacity = grown;
    }
    return true;
}

static size_t part_size(const struct object_part *part) {
    return sizeof(*part) + part->extent_count * sizeof(struct blob_extent);
}

void apply_part_put(struct objects *objects, struct object_upload *upload, struct object_part *part,
                    struct object_change *change) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    reference_extents(objects, part->extents, part->extent_count);
    objects->metadata_bytes += part_size(part);
    bool found;
    size_t position = part_position(upload, part->number, &found);
    if (found) {
        struct object_part *old = upload->parts[position];
        upload->parts[position] = part;
        objects->metadata_bytes -= part_size(old);
        release_extents(objects, old->extents, old->extent_count, change);
        free(old);
        return;
    }
    STRATA_ASSERT(upload->part_count < upload->part_capacity);
    memmove(&upload->parts[position + 1], &upload->parts[position],
            (upload->part_count - position) * sizeof(*upload->parts));
    upload->parts[position] = part;
    upload->part_count++;
}

void apply_upload_remove(struct objects *objects, struct object_upload *upload,
                         struct object_change *change) {
    ASSERT_OBJECTS_WRITE_LOCKED(objects);
    struct object_bucket *bucket = upload->bucket;
    size_t position = upload_position(bucket, upload->key, upload->key_length, upload->sequence);
    STRATA_ASSERT(position < bucket->upload_count && bucket->uploads[position] == upload);
    memmove(&bucket->uploads[position], &bucket->uploads[position + 1],
            (bucket->upload_count - position - 1) * sizeof(*bucket->uploads));
    bucket->upload_count--;
    id_map_remove(&objects->uploads, upload->sequence);
    for (size_t i = 0; i < upload->part_count; i++) {
        struct object_part *part = upload->parts[i];
        release_extents(objects, part->extents, part->extent_count, change);
        objects->metadata_bytes -= part_size(part);
    }
    objects->metadata_bytes -= upload_size(upload->key_length, upload->attributes_length) +
                               upload->part_capacity * sizeof(*upload->parts);
    upload_free_unlinked(upload);
}

/* ---- teardown ------------------------------------------------------------------------ */

void state_free(struct objects *objects) {
    for (size_t b = 0; b < objects->bucket_count; b++) {
        struct object_bucket *bucket = objects->buckets[b];
        struct object_key *node = key_index_first(&bucket->index);
        while (node != NULL) {
            struct object_key *next = node->next[0];
            struct object_version *version = node->versions;
            while (version != NULL) {
                struct object_version *older = version->older;
                free(version);
                version = older;
            }
            free(node);
            node = next;
        }
        for (size_t u = 0; u < bucket->upload_count; u++)
            upload_free_unlinked(bucket->uploads[u]);
        free(bucket->uploads);
        free(bucket);
    }
    objects->bucket_count = 0;
    id_map_free(&objects->blob_references);
    id_map_free(&objects->uploads);
}
