/* The store API (store.h) on top of the index, the budget and S3-FIFO eviction. The
 * design is described in docs/engine.md and the shared rules in store_internal.h. */
#include "engine/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

static struct store *_Atomic registry[MAX_STORES];

_Thread_local int shard_locks_held;
_Thread_local int tier_locks_held;
_Thread_local int chain_locks_held;

/* The store whose budget counts items with this id (item->store_id). */
struct store *store_by_id(uint8_t id) {
    return atomic_load_explicit(&registry[id], memory_order_relaxed);
}

const char *store_status_text(enum store_status status) {
    switch (status) {
    case STORE_OK:
        return "ok";
    case STORE_NOT_FOUND:
        return "no such key";
    case STORE_CONDITION_FAILED:
        return "condition not met";
    case STORE_NO_MEMORY:
        return "out of memory: eviction could not make room within the memory budget";
    case STORE_TOO_LARGE_FOR_BUDGET:
        return "value larger than the whole memory budget";
    case STORE_KEY_TOO_LARGE:
        return "key larger than 65536 bytes";
    case STORE_VALUE_TOO_LARGE:
        return "value larger than max-value";
    case STORE_ALLOCATION_FAILED:
        return "out of memory: the system allocator refused";
    case STORE_PENDING:
        return "a flash read is in flight";
    case STORE_FLASH_BUSY:
        return "flash writer behind: the write waited pace-timeout for room";
    case STORE_IO_ERROR:
        return "flash I/O error (see the server log)";
    case STORE_PARENT_MISSING:
        return "the parent key is not present";
    case STORE_WRONG_TYPE:
        return "the key holds a value of another type";
    }
    return "unknown status";
}

/* Frees a store's structures (its items must be gone) and its registry slot. Works on
 * a partly built store whose shard array was zeroed and whose mutexes were set up. */
static void free_store(struct store *store) {
    if (store->shards != NULL) {
        for (unsigned i = 0; i < store->shard_count; i++) {
            free(store->shards[i].buckets);
            free(store->shards[i].ghost);
            pthread_mutex_destroy(&store->shards[i].lock);
        }
        free(store->shards);
    }
    chain_table_free(store, &store->chains);
    groups_free(store);
    free((void *)atomic_load(&store->versions));
    atomic_store(&registry[store->id], NULL);
    free(store);
}

struct store *store_create(const struct store_config *config, char *error, size_t error_size) {
    struct store *store = calloc(1, sizeof(*store));
    if (store == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    int id = -1;
    for (int i = 0; i < MAX_STORES && id < 0; i++) {
        struct store *expected = NULL;
        if (atomic_compare_exchange_strong(&registry[i], &expected, store)) id = i;
    }
    if (id < 0) {
        free(store);
        snprintf(error, error_size, "too many stores in one process");
        return NULL;
    }
    store->id = (uint8_t)id;
    chain_table_init(&store->chains);
    store->shard_count = config->shards ? config->shards : DEFAULT_SHARDS;
    if (store->shard_count > MAX_SHARDS || (store->shard_count & (store->shard_count - 1)) != 0) {
        atomic_store(&registry[id], NULL);
        pthread_mutex_destroy(&store->chains.lock);
        free(store);
        snprintf(error, error_size, "the shard count must be a power of two up to %d", MAX_SHARDS);
        return NULL;
    }
    while ((1u << store->shard_bits) < store->shard_count)
        store->shard_bits++;
    if (getrandom(&store->seed, sizeof(store->seed), 0) != sizeof(store->seed)) {
        store->seed = (uint64_t)clock_monotonic_ns() ^ (uint64_t)(uintptr_t)store;
    }
    atomic_init(&store->budget, config->memory_budget);
    atomic_init(&store->max_value, config->max_value);
    store->tail_first_window_ms = config->tail_first_window_ms;
    atomic_init(&store->window_started_ms, INT64_MIN / 2); /* the first write opens one */
    if (!groups_parse(store, config->evict_together, error, error_size)) {
        groups_free(store);
        atomic_store(&registry[id], NULL);
        pthread_mutex_destroy(&store->chains.lock);
        free(store);
        return NULL;
    }

    /* Ghost table slots: about one per 4 KiB of budget, split across the shards. */
    uint64_t ghost_total = config->memory_budget / 4096;
    uint64_t ghost_per_shard = 16;
    while (ghost_per_shard * store->shard_count < ghost_total && ghost_per_shard < (1u << 20)) {
        ghost_per_shard *= 2;
    }

    store->shards = aligned_alloc(64, sizeof(struct shard) * store->shard_count);
    if (store->shards == NULL) goto out_of_memory;
    memset(store->shards, 0, sizeof(struct shard) * store->shard_count);
    for (unsigned i = 0; i < store->shard_count; i++) {
        pthread_mutex_init(&store->shards[i].lock, NULL);
        store->shards[i].store = store;
        atomic_init(&store->shards[i].small.tail_order, UINT64_MAX);
        atomic_init(&store->shards[i].main.tail_order, UINT64_MAX);
        if (store->tail_first_window_ms > 0) {
            store->shards[i].small.ordered = true;
            store->shards[i].small.store_bytes = &store->small_bytes;
            store->shards[i].main.store_bytes = &store->main_bytes;
        }
    }
    uint64_t fixed = memory_footprint(store->shards);
    uint64_t index_bytes = 0;
    for (unsigned i = 0; i < store->shard_count; i++) {
        struct shard *shard = &store->shards[i];
        shard->buckets = calloc(INITIAL_BUCKETS, sizeof(struct item *));
        shard->ghost = calloc((size_t)ghost_per_shard, sizeof(uint64_t));
        if (shard->buckets == NULL || shard->ghost == NULL) goto out_of_memory;
        shard->bucket_mask = INITIAL_BUCKETS - 1;
        shard->bucket_footprint = memory_footprint(shard->buckets);
        shard->ghost_mask = (uint32_t)(ghost_per_shard - 1);
        index_bytes += shard->bucket_footprint;
        fixed += memory_footprint(shard->ghost);
    }
    if (fixed + index_bytes > config->memory_budget) {
        snprintf(error, error_size,
                 "memory budget too small: the store's own structures need %llu bytes",
                 (unsigned long long)(fixed + index_bytes));
        free_store(store);
        return NULL;
    }
    atomic_init(&store->recovering, config->flash.size > 0);
    atomic_init(&store->fixed, fixed);
    atomic_init(&store->index_bytes, index_bytes);
    atomic_init(&store->used, fixed + index_bytes);
    atomic_init(&store->peak, fixed + index_bytes);
    if (config->flash.size > 0) {
        if (!store_tier_open(store, &config->flash, error, error_size)) {
            store_flush(store);
            free_store(store);
            return NULL;
        }
    }
    return store;

out_of_memory:
    snprintf(error, error_size, "out of memory creating the store");
    free_store(store);
    return NULL;
}

bool store_recovering(const struct store *store) {
    return atomic_load_explicit(&store->recovering, memory_order_acquire);
}

void store_recovery_done(struct store *store) {
    atomic_store_explicit(&store->recovering, false, memory_order_release);
}

void store_wait_ready(const struct store *store) {
    while (store_recovering(store)) {
        struct timespec pause = {.tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
}

void store_destroy(struct store *store) {
    if (store == NULL) return;
    if (store->tier != NULL) {
        tier_close(store->tier, false); /* no tombstones for what the flush removes */
        store->tier = NULL;
        store->flash = NULL;
    }
    store_flush(store);
    free_store(store);
}

/* Write-through: the first and last ticket of the writes this thread queued during the
 * store call in progress, and whether one could not be queued at all. */
static _Thread_local uint64_t first_ticket, last_ticket;
static _Thread_local bool queue_failed;

void store_note_ticket(uint64_t ticket) {
    if (ticket == 0) {
        queue_failed = true; /* out of memory for the queued write: nothing will be written */
        return;
    }
    if (first_ticket == 0) first_ticket = ticket;
    last_ticket = ticket;
}

void store_begin_write(void) {
    first_ticket = last_ticket = 0;
    queue_failed = false;
}

void store_tickets_set_aside(struct write_tickets *saved) {
    saved->first = first_ticket;
    saved->last = last_ticket;
    saved->failed = queue_failed;
    store_begin_write();
}

void store_tickets_restore(const struct write_tickets *saved) {
    first_ticket = saved->first;
    last_ticket = saved->last;
    queue_failed = saved->failed;
}

enum store_status store_finish_write(struct store *store, enum store_status status) {
    uint64_t first = first_ticket, last = last_ticket;
    bool failed = queue_failed;
    first_ticket = last_ticket = 0;
    queue_failed = false;
    if (store->tier == NULL || !tier_write_through(store->tier)) return status;
    /* An acknowledgment promises the record is on flash: a write that could not even be
     * queued is an error (its DRAM side may be in place: the outcome is unknown). */
    if (failed && status == STORE_OK) status = STORE_ALLOCATION_FAILED;
    if (last == 0) return status;
    ASSERT_NO_SHARD_LOCK(); /* the writer takes shard locks to complete the writes */
    int result = tier_wait_tickets(store->tier, first, last);
    return result < 0 && status == STORE_OK ? STORE_IO_ERROR : status;
}

/* If KEY's node lives only on flash, reads it back into DRAM (blocking) so that a
 * read-modify-write can work on it. Called with ACCESS open on KEY and FOUND its
 * node; closes ACCESS and returns true when it did something (the caller looks the key
 * up again), or returns false with ACCESS still open. On a failure *STATUS is set. */
static bool fault_in_if_flash(struct store *store, uint64_t hash, struct key_access *access,
                              struct item *found, enum store_status *status) {
    if (found == NULL || !node_is_stub(found)) return false;
    struct item *loaded = NULL;
    *status = store_tier_fault_in(store, hash, access, (struct flash_stub *)found, &loaded);
    if (loaded != NULL) item_release(loaded);
    if (*status == STORE_NOT_FOUND) *status = STORE_OK; /* gone meanwhile: look again */
    return true;
}

enum store_status store_get(struct store *store, const void *key, size_t key_length,
                            struct item **item) {
    return store_tier_get(store, key, key_length, item, true, NULL, NULL);
}

/* Looks KEY up; with COUNT_ACCESS also counts an access. Returns whether it is live and,
 * when EXPIRE_AT is not NULL, its expiry time. */
static bool probe(struct store *store, const void *key, size_t key_length, bool count_access,
                  int64_t *expire_at) {
    struct key_access access;
    struct item *found =
        index_open_key(store, hash_key(store, key, key_length), key, key_length, &access);
    if (found != NULL && node_is_stub(found)) {
        struct flash_stub *node = (struct flash_stub *)found;
        if (expire_at != NULL) *expire_at = flash_stub_expiry_ms(node);
        if (count_access) node->key_length |= NODE_ACCESSED;
    } else if (found != NULL) {
        if (expire_at != NULL) *expire_at = found->expire_at_ms;
        if (count_access) mark_used(found);
    }
    index_close_key(&access);
    return found != NULL;
}

bool store_exists(struct store *store, const void *key, size_t key_length) {
    return probe(store, key, key_length, false, NULL);
}

bool store_touch(struct store *store, const void *key, size_t key_length) {
    return probe(store, key, key_length, true, NULL);
}

enum store_status store_get_expiry(struct store *store, const void *key, size_t key_length,
                                   int64_t *expire_at_ms) {
    return probe(store, key, key_length, false, expire_at_ms) ? STORE_OK : STORE_NOT_FOUND;
}

static enum store_status check_sizes(struct store *store, size_t key_length,
                                     uint64_t value_length) {
    if (key_length > STORE_MAX_KEY_LENGTH) return STORE_KEY_TOO_LARGE;
    if (value_length > atomic_load_explicit(&store->max_value, memory_order_relaxed)) {
        return STORE_VALUE_TOO_LARGE;
    }
    return STORE_OK;
}

/* Applies a write of ITEM (NULL: delete) under KEY with WRITE's condition and expiry
 * mode. Takes over ITEM's reference. */
static enum store_status apply_write(struct store *store, uint64_t hash, const void *key,
                                     size_t key_length, struct item *item,
                                     const struct store_write *write, struct item **previous) {
    enum store_status status = STORE_OK;
    struct key_access access;
    struct item *existing = index_open_key(store, hash, key, key_length, &access);
    while (previous != NULL && existing != NULL && node_is_stub(existing)) {
        /* The caller wants the old value: bring it back from flash first. */
        if (fault_in_if_flash(store, hash, &access, existing, &status) && status != STORE_OK) {
            if (item != NULL) item_release(item);
            *previous = NULL;
            return status;
        }
        existing = index_open_key(store, hash, key, key_length, &access);
    }
    if (previous != NULL) {
        *previous = existing;
        if (existing != NULL) item_retain(existing);
    }
    if ((write->condition == STORE_IF_ABSENT && existing != NULL) ||
        (write->condition == STORE_IF_PRESENT && existing == NULL)) {
        status = STORE_CONDITION_FAILED;
    } else {
        if (item != NULL && write->expiry == STORE_EXPIRY_KEEP && existing != NULL) {
            item->expire_at_ms = node_is_stub(existing)
                                     ? flash_stub_expiry_ms((const struct flash_stub *)existing)
                                     : existing->expire_at_ms;
        }
        bool linked = item != NULL;
        index_replace(store, access.shard, access.slot, existing, item, &access.graveyard);
        item = NULL;
        if (linked && write->parent != NULL) {
            chain_link(store, hash, hash_key(store, write->parent, write->parent_length));
        }
    }
    index_close_key(&access);
    if (item != NULL) item_release(item);
    return status;
}

/* store_set() and store_set_block() share this: VALUE/LENGTH or BLOCK. */
static enum store_status set_common(struct store *store, const void *key, size_t key_length,
                                    const void *value, uint64_t length, struct value_block *block,
                                    const struct store_write *write, struct item **previous) {
    store_begin_write();
    if (previous != NULL) *previous = NULL;
    enum store_status status =
        check_sizes(store, key_length, block != NULL ? block->length : length);
    if (status != STORE_OK) {
        if (block != NULL) value_block_release(block);
        return status;
    }
    uint64_t hash = hash_key(store, key, key_length);
    if (write->expiry == STORE_EXPIRY_SET && write->expire_at_ms <= clock_realtime_ms()) {
        /* Already expired: the write removes the key. */
        if (block != NULL) value_block_release(block);
        status = apply_write(store, hash, key, key_length, NULL, write, previous);
        return store_finish_write(store, status);
    }
    uint64_t parent_hash = 0;
    if (write->parent != NULL) {
        /* Hold the parent while checking it is there and writing its child, so it cannot
         * be evicted in between; a child whose parent is gone would be a hole. */
        parent_hash = hash_key(store, write->parent, write->parent_length);
        if (!chain_reserve(store) || !chain_hold(store, parent_hash, true)) {
            if (block != NULL) value_block_release(block);
            return STORE_NO_MEMORY;
        }
        if (!store_exists(store, write->parent, write->parent_length)) {
            chain_hold(store, parent_hash, false);
            if (block != NULL) value_block_release(block);
            return STORE_PARENT_MISSING;
        }
    }
    /* A new key written while another member of its group is there follows it. */
    bool follower = store->groups.count > 0 && store->tail_first_window_ms > 0 &&
                    groups_partner_present(store, key, key_length) &&
                    !store_exists(store, key, key_length);
    struct item *item;
    status = item_create(store, (uint32_t)hash, key, key_length, value, length, block, &item);
    if (status == STORE_OK) {
        if (write->expiry == STORE_EXPIRY_SET) item->expire_at_ms = write->expire_at_ms;
        if (write->durable) item->flags |= ITEM_DURABLE;
        if (follower) item->flags |= ITEM_FOLLOWER;
        status = apply_write(store, hash, key, key_length, item, write, previous);
        if (status == STORE_OK && store->groups.count > 0 && !write->durable &&
            groups_write_is_orphan(store, key, key_length)) {
            /* The rest of its group was evicted before this member arrived: it is evicted
             * on arrival, as a cache may do at any time. */
            struct write_tickets saved;
            store_tickets_set_aside(&saved);
            groups_evict_key(store, key, key_length);
            store_tickets_restore(&saved);
        }
    }
    if (write->parent != NULL) chain_hold(store, parent_hash, false);
    return store_finish_write(store, status);
}

enum store_status store_set(struct store *store, const void *key, size_t key_length,
                            const void *value, uint64_t value_length,
                            const struct store_write *write, struct item **previous) {
    return set_common(store, key, key_length, value, value_length, NULL, write, previous);
}

enum store_status store_set_block(struct store *store, const void *key, size_t key_length,
                                  struct value_block *block, const struct store_write *write,
                                  struct item **previous) {
    return set_common(store, key, key_length, NULL, 0, block, write, previous);
}

/* Links ITEM (its reference is taken over) under KEY if KEY still holds EXPECTED
 * (NULL: no live item). With KEEP_EXPIRY the new item keeps the old expiry. Returns
 * STORE_OK or STORE_CONDITION_FAILED. */
static enum store_status swap_if_unchanged(struct store *store, uint64_t hash, const void *key,
                                           size_t key_length, const struct item *expected,
                                           struct item *item, bool keep_expiry) {
    struct key_access access;
    struct item *existing = index_open_key(store, hash, key, key_length, &access);
    bool unchanged = existing == expected;
    if (unchanged) {
        if (keep_expiry && existing != NULL) item->expire_at_ms = existing->expire_at_ms;
        /* (EXPECTED is a DRAM item the caller holds, so EXISTING is one too.) */
        index_replace(store, access.shard, access.slot, existing, item, &access.graveyard);
    }
    index_close_key(&access);
    if (!unchanged) item_release(item);
    return unchanged ? STORE_OK : STORE_CONDITION_FAILED;
}

enum store_status store_replace_if_unchanged(struct store *store, const void *key,
                                             size_t key_length, const struct item *expected,
                                             const void *value, uint64_t value_length,
                                             bool keep_expiry, enum store_type type) {
    store_begin_write();
    enum store_status status = check_sizes(store, key_length, value_length);
    if (status != STORE_OK) return status;
    uint64_t hash = hash_key(store, key, key_length);
    struct item *item;
    status = item_create(store, (uint32_t)hash, key, key_length, value, value_length, NULL, &item);
    if (status != STORE_OK) return status;
    if (expected != NULL) item->flags |= expected->flags & ITEM_DURABLE; /* keeps its class */
    item->flags |= (uint8_t)(((unsigned)type << ITEM_TYPE_SHIFT) & ITEM_TYPE_MASK);
    status = swap_if_unchanged(store, hash, key, key_length, expected, item, keep_expiry);
    return store_finish_write(store, status);
}

enum store_status store_delete_if_unchanged(struct store *store, const void *key, size_t key_length,
                                            const struct item *expected) {
    store_begin_write();
    uint64_t hash = hash_key(store, key, key_length);
    struct key_access access;
    struct item *existing = index_open_key(store, hash, key, key_length, &access);
    bool unchanged = existing != NULL && existing == expected;
    if (unchanged)
        index_replace(store, access.shard, access.slot, existing, NULL, &access.graveyard);
    index_close_key(&access);
    return store_finish_write(store, unchanged ? STORE_OK : STORE_CONDITION_FAILED);
}

enum store_status store_get_typed(struct store *store, const void *key, size_t key_length,
                                  enum store_type type, struct item **item) {
    STRATA_ASSERT(type != STORE_TYPE_STRING); /* strings: store_read() */
    *item = NULL;
    uint64_t hash = hash_key(store, key, key_length);
    struct key_access access;
    struct item *found = index_open_key(store, hash, key, key_length, &access);
    enum store_status status = STORE_NOT_FOUND;
    /* A value of TYPE on flash is read back first (blocking: callers bring the key to DRAM
     * beforehand, resp_prefetch_key(), so this happens only when it left again). */
    while (found != NULL && node_is_stub(found) && item_type(found) == type) {
        if (fault_in_if_flash(store, hash, &access, found, &status) && status != STORE_OK) {
            return status;
        }
        found = index_open_key(store, hash, key, key_length, &access);
        status = STORE_NOT_FOUND;
    }
    if (found != NULL && item_type(found) != type) {
        status = STORE_WRONG_TYPE;
    } else if (found != NULL) {
        item_retain(found);
        mark_used(found);
        *item = found;
        status = STORE_OK;
    }
    index_close_key(&access);
    if (status == STORE_NOT_FOUND) {
        SHARD_COUNT(access.shard, misses, 1);
    } else {
        SHARD_COUNT(access.shard, hits, 1);
    }
    return status;
}

enum store_status store_key_type(struct store *store, const void *key, size_t key_length,
                                 enum store_type *type) {
    struct key_access access;
    struct item *found =
        index_open_key(store, hash_key(store, key, key_length), key, key_length, &access);
    if (found != NULL) *type = item_type(found);
    index_close_key(&access);
    return found != NULL ? STORE_OK : STORE_NOT_FOUND;
}

/* Capacity to give a value block that is growing by appends to LENGTH bytes: room for
 * as much again, up to 1 MiB more, so that a run of appends copies O(n) bytes. */
static uint64_t growth_capacity(uint64_t length) {
    uint64_t extra = length < 1024 * 1024 ? length : 1024 * 1024;
    return length + extra;
}

/* Grows EXISTING's value in place by DATA if nobody else holds the item or its block
 * and the block has room. Called with the item's shard locked. Returns true if done. */
static bool append_in_place(struct shard *shard, struct item *existing, const void *data,
                            uint64_t data_length) {
    ASSERT_SHARD_LOCKED(shard);
    if (!(existing->flags & ITEM_EXTERNAL) || existing->flash_segment != 0 ||
        atomic_load_explicit(&existing->references, memory_order_acquire) != 1) {
        return false; /* shared, or its copy on flash would go stale */
    }
    struct value_block *block = item_block(existing);
    uint64_t total = existing->value_length + data_length;
    if (atomic_load_explicit(&block->references, memory_order_acquire) != 1 ||
        block->capacity < total) {
        return false;
    }
    if (data_length > 0) memcpy(block->data + existing->value_length, data, (size_t)data_length);
    s3fifo_queue_grow(s3fifo_queue_of(shard, existing), data_length);
    existing->value_length = total;
    block->length = total;
    note_key_change(shard->store, existing->hash);
    return true;
}

/* Creates an unlinked item for KEY holding EXISTING's value followed by DATA. Large
 * results get a block with room to grow (see growth_capacity()). */
static enum store_status create_appended(struct store *store, uint64_t hash, const void *key,
                                         size_t key_length, const struct item *existing,
                                         const void *data, uint64_t data_length,
                                         struct item **item) {
    uint64_t old_length = existing->value_length;
    uint64_t total = old_length + data_length;
    enum store_status status;
    if (total < STORE_BLOCK_THRESHOLD) {
        unsigned char joined[STORE_BLOCK_THRESHOLD];
        memcpy(joined, item_value(existing), (size_t)old_length);
        if (data_length > 0) memcpy(joined + old_length, data, (size_t)data_length);
        status = item_create(store, (uint32_t)hash, key, key_length, joined, total, NULL, item);
    } else {
        struct value_block *block;
        status = budget_create_block(store, growth_capacity(total), item_value(existing),
                                     old_length, &block);
        if (status != STORE_OK) return status;
        if (data_length > 0) memcpy(block->data + old_length, data, (size_t)data_length);
        block->length = total;
        status = item_create(store, (uint32_t)hash, key, key_length, NULL, 0, block, item);
    }
    if (status == STORE_OK) (*item)->flags |= existing->flags & ITEM_DURABLE; /* keeps its class */
    return status;
}

enum store_status store_replace_if_unchanged_with_room(struct store *store, const void *key,
                                                       size_t key_length,
                                                       const struct item *expected,
                                                       const void *value, uint64_t value_length,
                                                       bool keep_expiry, enum store_type type) {
    if (value_length < STORE_BLOCK_THRESHOLD) {
        return store_replace_if_unchanged(store, key, key_length, expected, value, value_length,
                                          keep_expiry, type);
    }
    store_begin_write();
    enum store_status status = check_sizes(store, key_length, value_length);
    if (status != STORE_OK) return status;
    uint64_t hash = hash_key(store, key, key_length);
    uint64_t max_value = atomic_load_explicit(&store->max_value, memory_order_relaxed);
    uint64_t capacity = growth_capacity(value_length);
    if (capacity > max_value) capacity = max_value; /* (value_length fits: checked above) */
    struct value_block *block;
    status = budget_create_block(store, capacity, value, value_length, &block);
    if (status != STORE_OK) return status;
    struct item *item;
    /* item_create() takes over the block's reference in every case. */
    status = item_create(store, (uint32_t)hash, key, key_length, NULL, 0, block, &item);
    if (status != STORE_OK) return status;
    if (expected != NULL) item->flags |= expected->flags & ITEM_DURABLE; /* keeps its class */
    item->flags |= (uint8_t)(((unsigned)type << ITEM_TYPE_SHIFT) & ITEM_TYPE_MASK);
    status = swap_if_unchanged(store, hash, key, key_length, expected, item, keep_expiry);
    return store_finish_write(store, status);
}

/* store_edit_in_place() and, with INLINE_TOO, store_overwrite_in_place(). */
static enum store_status edit_in_place(struct store *store, const void *key, size_t key_length,
                                       enum store_type type, store_edit_fn edit, void *context,
                                       bool inline_too) {
    if (key_length > STORE_MAX_KEY_LENGTH) return STORE_KEY_TOO_LARGE;
    uint64_t hash = hash_key(store, key, key_length);
    uint64_t max_value = atomic_load_explicit(&store->max_value, memory_order_relaxed);
    struct key_access access;
    struct item *existing = index_open_key(store, hash, key, key_length, &access);
    enum store_status status = STORE_CONDITION_FAILED;
    if (existing == NULL) {
        status = STORE_NOT_FOUND;
    } else if (item_type(existing) != type) {
        status = STORE_WRONG_TYPE;
    } else if (!node_is_stub(existing) && (existing->flags & ITEM_EXTERNAL) &&
               existing->flash_segment == 0 &&
               atomic_load_explicit(&existing->references, memory_order_acquire) == 1 &&
               atomic_load_explicit(&item_block(existing)->references, memory_order_acquire) == 1) {
        /* (As append_in_place(): only the index holds the item and its block, and the
         * shard lock keeps anyone from taking a reference meanwhile.) */
        struct value_block *block = item_block(existing);
        uint64_t old_length = existing->value_length;
        uint64_t length = old_length;
        uint64_t capacity = block->capacity < max_value ? block->capacity : max_value;
        if (edit(context, block->data, &length, capacity)) {
            STRATA_ASSERT(length > 0 && length <= capacity);
            s3fifo_queue_grow(s3fifo_queue_of(access.shard, existing), length - old_length);
            existing->value_length = length;
            block->length = length;
            mark_used(existing);
            note_key_change(store, existing->hash);
            SHARD_COUNT(access.shard, hits, 1);
            status = STORE_OK;
        }
    } else if (inline_too && !node_is_stub(existing) && !(existing->flags & ITEM_EXTERNAL) &&
               existing->flash_segment == 0 &&
               atomic_load_explicit(&existing->references, memory_order_acquire) == 1) {
        /* Held in the item: the same bytes, rewritten (the item's size, and a tail-first
         * store's order stamp after the value, stay where they are). */
        uint64_t length = existing->value_length;
        if (length > 0 &&
            edit(context, (unsigned char *)item_value(existing), &length, existing->value_length)) {
            STRATA_ASSERT(length == existing->value_length);
            mark_used(existing);
            note_key_change(store, existing->hash);
            SHARD_COUNT(access.shard, hits, 1);
            status = STORE_OK;
        }
    }
    index_close_key(&access);
    return status;
}

enum store_status store_edit_in_place(struct store *store, const void *key, size_t key_length,
                                      enum store_type type, store_edit_fn edit, void *context) {
    return edit_in_place(store, key, key_length, type, edit, context, false);
}

enum store_status store_overwrite_in_place(struct store *store, const void *key, size_t key_length,
                                           enum store_type type, store_edit_fn edit,
                                           void *context) {
    return edit_in_place(store, key, key_length, type, edit, context, true);
}

enum store_status store_append(struct store *store, const void *key, size_t key_length,
                               const void *data, uint64_t data_length, uint64_t *new_length) {
    store_begin_write();
    if (key_length > STORE_MAX_KEY_LENGTH) return STORE_KEY_TOO_LARGE;
    uint64_t hash = hash_key(store, key, key_length);
    uint64_t max_value = atomic_load_explicit(&store->max_value, memory_order_relaxed);
    for (;;) {
        struct key_access access;
        struct item *existing = index_open_key(store, hash, key, key_length, &access);
        enum store_status fault_status = STORE_OK;
        if (fault_in_if_flash(store, hash, &access, existing, &fault_status)) {
            if (fault_status != STORE_OK) return fault_status;
            continue;
        }
        if (existing != NULL && item_type(existing) != STORE_TYPE_STRING) {
            index_close_key(&access);
            return STORE_WRONG_TYPE;
        }
        uint64_t old_length = existing != NULL ? existing->value_length : 0;
        if (data_length > max_value || old_length > max_value - data_length) {
            index_close_key(&access);
            return STORE_VALUE_TOO_LARGE;
        }
        if (existing != NULL && append_in_place(access.shard, existing, data, data_length)) {
            index_close_key(&access);
            *new_length = old_length + data_length;
            return STORE_OK;
        }
        if (existing != NULL) item_retain(existing);
        index_close_key(&access);

        /* Build the longer value beside the old one, then swap it in if unchanged. */
        struct item *item;
        enum store_status status =
            existing != NULL
                ? create_appended(store, hash, key, key_length, existing, data, data_length, &item)
                : item_create(store, (uint32_t)hash, key, key_length, data, data_length, NULL,
                              &item);
        if (status == STORE_OK) {
            status = swap_if_unchanged(store, hash, key, key_length, existing, item, true);
        }
        if (existing != NULL) item_release(existing);
        if (status != STORE_CONDITION_FAILED) {
            if (status == STORE_OK) *new_length = old_length + data_length;
            return store_finish_write(store, status);
        }
    }
}

enum store_status store_delete(struct store *store, const void *key, size_t key_length,
                               struct item **removed) {
    store_begin_write();
    if (removed != NULL) *removed = NULL;
    uint64_t hash = hash_key(store, key, key_length);
    struct key_access access;
    struct item *existing = index_open_key(store, hash, key, key_length, &access);
    enum store_status fault_status = STORE_OK;
    while (removed != NULL && fault_in_if_flash(store, hash, &access, existing, &fault_status)) {
        if (fault_status != STORE_OK) return fault_status;
        existing = index_open_key(store, hash, key, key_length, &access);
    }
    if (existing != NULL) {
        if (removed != NULL) {
            index_unlink(access.shard, access.slot, existing);
            *removed = existing;
        } else {
            index_bury(access.shard, access.slot, existing, &access.graveyard);
        }
    }
    index_close_key(&access);
    return store_finish_write(store, existing != NULL ? STORE_OK : STORE_NOT_FOUND);
}

enum store_status store_pin(struct store *store, const void *key, size_t key_length,
                            int64_t lease_ms) {
    if (lease_ms > 0 && !chain_reserve(store)) return STORE_NO_MEMORY;
    uint64_t hash = hash_key(store, key, key_length);
    struct key_access access;
    enum store_status status = STORE_NOT_FOUND;
    if (index_open_key(store, hash, key, key_length, &access) != NULL) {
        int64_t until = lease_ms > 0 ? key_access_now(&access) + lease_ms : 0;
        status = chain_pin(store, hash, until) ? STORE_OK : STORE_NO_MEMORY;
    }
    index_close_key(&access);
    return status;
}

enum store_status store_set_expiry(struct store *store, const void *key, size_t key_length,
                                   int64_t expire_at_ms, enum store_expiry_condition condition,
                                   struct item **item) {
    store_begin_write();
    if (item != NULL) *item = NULL;
    enum store_status status = STORE_OK;
    uint64_t hash = hash_key(store, key, key_length);
    struct key_access access;
    struct item *existing = index_open_key(store, hash, key, key_length, &access);
    /* A flash stub keeps its expiry to the second: bring the key back to DRAM to set a
     * millisecond one (and to hand GETEX its value). */
    while (fault_in_if_flash(store, hash, &access, existing, &status)) {
        if (status != STORE_OK) return status;
        existing = index_open_key(store, hash, key, key_length, &access);
    }
    if (existing == NULL) {
        status = STORE_NOT_FOUND;
    } else {
        if (item != NULL) {
            item_retain(existing);
            *item = existing;
        }
        bool on_flash = node_is_stub(existing);
        int64_t current = on_flash ? flash_stub_expiry_ms((const struct flash_stub *)existing)
                                   : existing->expire_at_ms;
        /* For GT and LT, no expiry counts as an infinite one. */
        bool allowed;
        switch (condition) {
        case STORE_EXPIRY_IF_NONE:
            allowed = current == 0;
            break;
        case STORE_EXPIRY_IF_ANY:
            allowed = current != 0;
            break;
        case STORE_EXPIRY_IF_GREATER:
            allowed = current != 0 && (expire_at_ms == 0 || expire_at_ms > current);
            break;
        case STORE_EXPIRY_IF_LESS:
            allowed = expire_at_ms != 0 && (current == 0 || expire_at_ms < current);
            break;
        default:
            allowed = true;
            break;
        }
        if (!allowed) {
            status = STORE_CONDITION_FAILED;
        } else if (expire_at_ms != 0 && expire_at_ms <= key_access_now(&access)) {
            index_bury(access.shard, access.slot, existing, &access.graveyard);
        } else {
            if (current == 0 && expire_at_ms != 0)
                shard_count_add(&access.shard->expiring_count, 1);
            if (current != 0 && expire_at_ms == 0)
                shard_count_add(&access.shard->expiring_count, -1);
            if (on_flash) {
                ((struct flash_stub *)existing)->expire_seconds =
                    flash_expiry_seconds(expire_at_ms);
            } else {
                /* The flash writer reads it without the shard lock (flash_writer.c,
                 * process_write()): one atomic store, so it sees the old or the new. */
                __atomic_store_n(&existing->expire_at_ms, expire_at_ms, __ATOMIC_RELAXED);
            }
            note_key_change(store, existing->hash);
        }
    }
    index_close_key(&access);
    return store_finish_write(store, status);
}

bool store_key_version(struct store *store, const void *key, size_t key_length, uint32_t *version) {
    _Atomic uint32_t *versions = atomic_load_explicit(&store->versions, memory_order_acquire);
    if (versions == NULL) {
        _Atomic uint32_t *fresh = calloc(VERSION_SLOTS, sizeof(*fresh));
        if (fresh == NULL) return false;
        if (atomic_compare_exchange_strong_explicit(&store->versions, &versions, fresh,
                                                    memory_order_acq_rel, memory_order_acquire)) {
            versions = fresh;
            uint64_t bytes = memory_footprint(fresh);
            atomic_fetch_add_explicit(&store->fixed, bytes, memory_order_relaxed);
            budget_charge_or_owe(store, bytes);
        } else {
            free((void *)fresh); /* another thread's table is in place */
        }
    }
    uint32_t hash = (uint32_t)hash_key(store, key, key_length);
    *version = atomic_load_explicit(&versions[version_slot(hash)], memory_order_relaxed);
    return true;
}

/* Locks the shards at INDEXES (COUNT of them, sorted ascending, duplicates allowed). */
static void lock_sorted(struct store *store, const unsigned *indexes, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (i == 0 || indexes[i] != indexes[i - 1]) shard_lock(&store->shards[indexes[i]]);
    }
}

static void unlock_sorted(struct store *store, const unsigned *indexes, size_t count) {
    for (size_t i = count; i-- > 0;) {
        if (i == 0 || indexes[i] != indexes[i - 1]) shard_unlock(&store->shards[indexes[i]]);
    }
}

/* RENAME (REMOVE_SOURCE) and COPY: clone SOURCE's item under DESTINATION outside any
 * lock, then swap it in under both shard locks if SOURCE has not changed meanwhile. */
static enum store_status move_or_copy(struct store *store, const void *source, size_t source_length,
                                      const void *destination, size_t destination_length,
                                      bool replace_destination, bool remove_source) {
    store_begin_write();
    if (destination_length > STORE_MAX_KEY_LENGTH) return STORE_KEY_TOO_LARGE;
    uint64_t source_hash = hash_key(store, source, source_length);
    uint64_t destination_hash = hash_key(store, destination, destination_length);
    struct shard *source_shard = shard_for(store, source_hash);
    struct shard *destination_shard = shard_for(store, destination_hash);
    unsigned indexes[2] = {shard_index_of(store, source_hash),
                           shard_index_of(store, destination_hash)};
    if (indexes[0] > indexes[1]) {
        unsigned swap = indexes[0];
        indexes[0] = indexes[1];
        indexes[1] = swap;
    }
    for (;;) {
        struct item *graveyard = NULL;
        int64_t now = clock_realtime_ms();
        shard_lock(source_shard);
        struct item *original = index_find_live(source_shard, (uint32_t)source_hash, source,
                                                source_length, now, NULL, &graveyard);
        bool on_flash = original != NULL && node_is_stub(original);
        if (original != NULL && !on_flash) item_retain(original);
        shard_unlock(source_shard);
        item_release_chain(graveyard);
        if (original == NULL) return store_finish_write(store, STORE_NOT_FOUND);
        if (on_flash) {
            /* Bring the source back to DRAM (the copy must carry the new key), then retry. */
            struct store_read_options options = {.promote = true, .any_type = true};
            struct store_value loaded;
            enum store_status status =
                store_read(store, source, source_length, &options, &loaded, NULL, NULL);
            if (status != STORE_OK && status != STORE_NOT_FOUND) return status;
            if (loaded.item != NULL) item_release(loaded.item);
            continue;
        }

        struct item *item;
        enum store_status status = item_clone(store, (uint32_t)destination_hash, destination,
                                              destination_length, original, &item);
        if (status != STORE_OK) {
            item_release(original);
            return status;
        }
        graveyard = NULL;
        now = clock_realtime_ms();
        lock_sorted(store, indexes, 2);
        struct item **source_slot;
        struct item *current = index_find_live(source_shard, (uint32_t)source_hash, source,
                                               source_length, now, &source_slot, &graveyard);
        bool retry = current != original;
        if (!retry) {
            struct item **destination_slot;
            struct item *existing =
                index_find_live(destination_shard, (uint32_t)destination_hash, destination,
                                destination_length, now, &destination_slot, &graveyard);
            if (existing != NULL && !replace_destination) {
                status = STORE_CONDITION_FAILED;
            } else {
                /* Unlink the source first: its slot may be invalidated by the insert. */
                if (remove_source) {
                    index_bury(source_shard, index_slot_of(source_shard, current), current,
                               &graveyard);
                }
                if (existing != NULL) {
                    index_bury(destination_shard, index_slot_of(destination_shard, existing),
                               existing, &graveyard);
                }
                index_link(store, destination_shard, item, QUEUE_NONE, 0);
                item = NULL;
            }
        }
        unlock_sorted(store, indexes, 2);
        if (item != NULL) item_release(item);
        item_release(original);
        item_release_chain(graveyard);
        if (!retry) return store_finish_write(store, status);
    }
}

enum store_status store_rename(struct store *store, const void *source, size_t source_length,
                               const void *destination, size_t destination_length,
                               bool only_if_absent) {
    if (source_length == destination_length && memcmp(source, destination, source_length) == 0) {
        if (!store_exists(store, source, source_length)) return STORE_NOT_FOUND;
        return only_if_absent ? STORE_CONDITION_FAILED : STORE_OK;
    }
    return move_or_copy(store, source, source_length, destination, destination_length,
                        !only_if_absent, true);
}

enum store_status store_copy(struct store *store, const void *source, size_t source_length,
                             const void *destination, size_t destination_length, bool replace) {
    return move_or_copy(store, source, source_length, destination, destination_length, replace,
                        false);
}

static int compare_unsigned(const void *left, const void *right) {
    unsigned a = *(const unsigned *)left;
    unsigned b = *(const unsigned *)right;
    return (a > b) - (a < b);
}

enum store_status store_set_many(struct store *store, size_t count, const struct store_pair *pairs,
                                 bool only_if_none_exist) {
    store_begin_write();
    enum store_status status = STORE_OK;
    struct item **items = calloc(count ? count : 1, sizeof(struct item *));
    uint64_t *hashes = calloc(count ? count : 1, sizeof(uint64_t));
    unsigned *indexes = calloc(count ? count : 1, sizeof(unsigned));
    if (items == NULL || hashes == NULL || indexes == NULL) status = STORE_ALLOCATION_FAILED;
    for (size_t i = 0; i < count; i++) {
        const struct store_pair *pair = &pairs[i];
        if (status == STORE_OK) {
            status = check_sizes(store, pair->key_length,
                                 pair->block ? pair->block->length : pair->value_length);
        }
        if (status != STORE_OK) {
            if (pair->block != NULL) value_block_release(pair->block);
            continue;
        }
        hashes[i] = hash_key(store, pair->key, pair->key_length);
        indexes[i] = shard_index_of(store, hashes[i]);
        status = item_create(store, (uint32_t)hashes[i], pair->key, pair->key_length, pair->value,
                             pair->value_length, pair->block, &items[i]);
    }
    if (status == STORE_OK) {
        qsort(indexes, count, sizeof(unsigned), compare_unsigned);
        struct item *graveyard = NULL;
        int64_t now = clock_realtime_ms();
        lock_sorted(store, indexes, count);
        if (only_if_none_exist) {
            for (size_t i = 0; i < count && status == STORE_OK; i++) {
                struct shard *shard = shard_for(store, hashes[i]);
                if (index_find_live(shard, (uint32_t)hashes[i], pairs[i].key, pairs[i].key_length,
                                    now, NULL, &graveyard) != NULL) {
                    status = STORE_CONDITION_FAILED;
                }
            }
        }
        if (status == STORE_OK) {
            for (size_t i = 0; i < count; i++) {
                struct shard *shard = shard_for(store, hashes[i]);
                struct item **slot;
                struct item *existing =
                    index_find_live(shard, (uint32_t)hashes[i], pairs[i].key, pairs[i].key_length,
                                    now, &slot, &graveyard);
                index_replace(store, shard, slot, existing, items[i], &graveyard);
                items[i] = NULL;
            }
        }
        unlock_sorted(store, indexes, count);
        item_release_chain(graveyard);
    }
    for (size_t i = 0; items != NULL && i < count; i++) {
        if (items[i] != NULL) item_release(items[i]);
    }
    free(items);
    free(hashes);
    free(indexes);
    return store_finish_write(store, status);
}

void store_set_budget(struct store *store, uint64_t bytes) {
    atomic_store_explicit(&store->budget, bytes, memory_order_relaxed);
    unsigned fruitless = 0;
    int64_t deadline_ms = clock_monotonic_ms() + (store->tier ? tier_pace_timeout(store->tier) : 0);
    while (atomic_load_explicit(&store->used, memory_order_relaxed) > bytes &&
           fruitless <= store->shard_count) {
        uint64_t excess = atomic_load_explicit(&store->used, memory_order_relaxed) - bytes;
        if (store->tier != NULL &&
            atomic_load_explicit(&store->demoting_bytes, memory_order_relaxed) >= excess) {
            /* Enough is on its way to flash: wait for the writer rather than choose more. */
            if (!tier_wait_progress(store->tier, deadline_ms) &&
                clock_monotonic_ms() >= deadline_ms) {
                break;
            }
            continue;
        }
        enum eviction_source source;
        uint32_t index = s3fifo_eviction_shard(store, fruitless > 0, &source);
        if (s3fifo_evict_one(store, &store->shards[index], source)) {
            fruitless = 0;
        } else {
            fruitless++;
        }
    }
}

void store_set_pace_timeout(struct store *store, int64_t milliseconds) {
    if (store->tier != NULL) tier_set_pace_timeout(store->tier, milliseconds);
}

void store_set_max_value(struct store *store, uint64_t bytes) {
    atomic_store_explicit(&store->max_value, bytes, memory_order_relaxed);
}

void store_get_stats(struct store *store, struct store_stats *stats) {
    memset(stats, 0, sizeof(*stats));
    stats->budget = atomic_load_explicit(&store->budget, memory_order_relaxed);
    stats->used = atomic_load_explicit(&store->used, memory_order_relaxed);
    stats->peak = atomic_load_explicit(&store->peak, memory_order_relaxed);
    stats->fixed = atomic_load_explicit(&store->fixed, memory_order_relaxed);
    stats->index = atomic_load_explicit(&store->index_bytes, memory_order_relaxed);
    for (unsigned i = 0; i < store->shard_count; i++) {
        struct shard *shard = &store->shards[i];
        stats->items += atomic_load_explicit(&shard->item_count, memory_order_relaxed);
        stats->expiring_items += atomic_load_explicit(&shard->expiring_count, memory_order_relaxed);
        stats->hits += atomic_load_explicit(&shard->counters.hits, memory_order_relaxed);
        stats->misses += atomic_load_explicit(&shard->counters.misses, memory_order_relaxed);
        stats->expired += atomic_load_explicit(&shard->counters.expired, memory_order_relaxed);
        stats->evicted += atomic_load_explicit(&shard->counters.evicted, memory_order_relaxed);
        shard_lock(shard);
        stats->small_queue_items += shard->small.count;
        stats->main_queue_items += shard->main.count;
        shard_unlock(shard);
    }
    stats->rejected_writes = atomic_load_explicit(&store->rejected_writes, memory_order_relaxed);
    chain_get_stats(store, &stats->chained_keys, &stats->chain_link_failures);
}

void store_reset_counters(struct store *store) {
    for (unsigned i = 0; i < store->shard_count; i++) {
        struct shard_counters *counters = &store->shards[i].counters;
        atomic_store_explicit(&counters->hits, 0, memory_order_relaxed);
        atomic_store_explicit(&counters->misses, 0, memory_order_relaxed);
        atomic_store_explicit(&counters->expired, 0, memory_order_relaxed);
        atomic_store_explicit(&counters->evicted, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&store->rejected_writes, 0, memory_order_relaxed);
}
