/* The DRAM tier: a sharded hash index, S3-FIFO eviction and a hard byte budget.
 *
 * The index is split into shards (256 by default) by high bits of the key's hash. Each
 * shard has its own mutex, hash table (chained, power-of-two buckets), S3-FIFO queues
 * and ghost table. A lookup holds its shard's mutex only for the probe; marking an
 * item as used is a relaxed atomic store, so a hit never moves anything in a queue.
 *
 * Budget: `used` counts every byte the tier allocates (items, value blocks, buckets,
 * ghost tables, shard array). Every increase goes through try_charge(), which refuses
 * to pass `budget`, so `used` never exceeds the budget. Memory is reserved before it is
 * allocated, from an upper estimate that is settled against the real size afterwards.
 *
 * Locking rules: at most the shards of one operation are locked, always in ascending
 * order; eviction (which locks shards) only runs while no shard lock is held, so code
 * under a lock may only use try_charge(). Items unlinked under a lock are released
 * after it is dropped (they are chained through hash_next: the "graveyard"). */
#include "engine/store.h"

#include "base/clock.h"
#include "base/metrics.h"
#include "engine/item.h"
#include "engine/memory.h"
#include "engine/value_block.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>

#define DEFAULT_SHARDS  256
#define MAX_SHARDS      4096
#define INITIAL_BUCKETS 16
#define MAX_STORES      256
#define FREQUENCY_MAX   3
/* S3-FIFO: the small queue holds this share of a shard's bytes. */
#define SMALL_QUEUE_PERCENT 10
/* Upper bound on queue moves while looking for one victim. */
#define EVICTION_STEP_LIMIT 4096

struct queue {
    struct item *head; /* newest */
    struct item *tail; /* oldest */
    uint64_t bytes;
    uint64_t count;
};

struct shard {
    pthread_mutex_t lock;
    struct item **buckets;
    uint64_t bucket_mask;
    uint64_t bucket_footprint; /* bytes charged for the bucket array */
    _Atomic uint64_t item_count;
    _Atomic uint64_t expiring_count;
    struct queue small;
    struct queue main;
    uint64_t *ghost; /* (fingerprint << 32) | insertion clock, direct-mapped */
    uint32_t ghost_mask;
    uint32_t ghost_clock;
    uint64_t expire_cursor; /* next bucket active expiry examines */
} __attribute__((aligned(64)));

struct store {
    struct shard *shards;
    unsigned shard_count; /* a power of two */
    unsigned shard_bits;  /* log2(shard_count) */
    uint64_t seed;
    uint8_t id;
    _Atomic uint64_t budget;
    _Atomic uint64_t used;
    _Atomic uint64_t peak;
    _Atomic uint64_t fixed;
    _Atomic uint64_t index_bytes;
    _Atomic uint64_t max_value;
    _Atomic uint32_t eviction_cursor;
    _Atomic uint32_t expire_shard_cursor;
};

static struct store *_Atomic registry[MAX_STORES];

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
    }
    return "unknown status";
}

/* ---- budget ------------------------------------------------------------------- */

/* Adds BYTES to `used` if that stays within the budget. Returns false otherwise. */
static bool try_charge(struct store *store, uint64_t bytes) {
    uint64_t used = atomic_load_explicit(&store->used, memory_order_relaxed);
    uint64_t wanted;
    do {
        uint64_t budget = atomic_load_explicit(&store->budget, memory_order_relaxed);
        if (bytes > budget || used > budget - bytes) return false;
        wanted = used + bytes;
    } while (!atomic_compare_exchange_weak_explicit(&store->used, &used, wanted,
                                                    memory_order_relaxed, memory_order_relaxed));
    uint64_t peak = atomic_load_explicit(&store->peak, memory_order_relaxed);
    while (wanted > peak &&
           !atomic_compare_exchange_weak_explicit(&store->peak, &peak, wanted, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
    return true;
}

static void uncharge(struct store *store, uint64_t bytes) {
    atomic_fetch_sub_explicit(&store->used, bytes, memory_order_relaxed);
}

void store_memory_uncharge(struct store *store, uint64_t bytes) {
    uncharge(store, bytes);
}

static bool evict_one(struct store *store, struct shard *shard);

/* Charges BYTES, evicting items until they fit. Must be called with no shard lock
 * held. Returns STORE_OK, STORE_TOO_LARGE_FOR_BUDGET or STORE_NO_MEMORY. */
static enum store_status charge(struct store *store, uint64_t bytes) {
    uint64_t budget = atomic_load_explicit(&store->budget, memory_order_relaxed);
    uint64_t fixed = atomic_load_explicit(&store->fixed, memory_order_relaxed);
    if (fixed >= budget || bytes > budget - fixed) return STORE_TOO_LARGE_FOR_BUDGET;
    unsigned fruitless = 0;
    while (!try_charge(store, bytes)) {
        uint32_t index =
            atomic_fetch_add_explicit(&store->eviction_cursor, 1, memory_order_relaxed) %
            store->shard_count;
        if (evict_one(store, &store->shards[index])) {
            fruitless = 0;
        } else if (++fruitless > store->shard_count) {
            metric_add(METRIC_rejected_writes, 1);
            return STORE_NO_MEMORY;
        }
    }
    return STORE_OK;
}

/* Turns a reservation of ESTIMATED bytes into one of ACTUAL bytes. May evict, so no
 * shard lock may be held. On failure the whole reservation is returned. */
static enum store_status settle(struct store *store, uint64_t estimated, uint64_t actual) {
    if (actual <= estimated) {
        uncharge(store, estimated - actual);
        return STORE_OK;
    }
    enum store_status status = charge(store, actual - estimated);
    if (status != STORE_OK) uncharge(store, estimated);
    return status;
}

/* ---- items -------------------------------------------------------------------- */

static struct value_block *item_block(const struct item *item) {
    struct value_block *block;
    memcpy(&block, item->bytes + item->key_length, sizeof(block));
    return block;
}

const unsigned char *item_key(const struct item *item, size_t *length) {
    *length = item->key_length;
    return item->bytes;
}

const unsigned char *item_value(const struct item *item) {
    if (item->external) return item_block(item)->data;
    return item->bytes + item->key_length;
}

uint64_t item_value_length(const struct item *item) {
    return item->value_length;
}

static void item_retain(struct item *item) {
    atomic_fetch_add_explicit(&item->references, 1, memory_order_relaxed);
}

void item_release(struct item *item) {
    if (atomic_fetch_sub_explicit(&item->references, 1, memory_order_acq_rel) != 1) return;
    struct store *store = atomic_load_explicit(&registry[item->store_id], memory_order_relaxed);
    if (item->external) value_block_release(item_block(item));
    uint64_t footprint = memory_footprint(item);
    free(item);
    uncharge(store, footprint);
}

void item_release_callback(void *item) {
    item_release(item);
}

/* Releases every item chained through hash_next from GRAVEYARD. */
static void release_graveyard(struct item *graveyard) {
    while (graveyard != NULL) {
        struct item *next = graveyard->hash_next;
        item_release(graveyard);
        graveyard = next;
    }
}

static inline bool is_expired(const struct item *item, int64_t now) {
    return item->expire_at_ms != 0 && item->expire_at_ms <= now;
}

/* Bytes an item stands for in its queue's share of the shard. */
static inline uint64_t queue_weight(const struct item *item) {
    return sizeof(struct item) + item->key_length + item->value_length;
}

/* Makes sure BLOCK is counted in STORE's budget. Returns STORE_OK or an error (the
 * block is then not charged and still belongs to the caller). */
static enum store_status adopt_block(struct store *store, struct value_block *block) {
    if (block->charged_to != NULL) return STORE_OK;
    uint64_t footprint = value_block_footprint(block);
    enum store_status status = charge(store, footprint);
    if (status != STORE_OK) return status;
    block->charged_to = store;
    block->charge = footprint;
    return STORE_OK;
}

/* Creates a charged value block of CAPACITY bytes holding a copy of the LENGTH bytes
 * at DATA. Returns STORE_OK and *block, or an error. */
static enum store_status create_block(struct store *store, uint64_t capacity, const void *data,
                                      uint64_t length, struct value_block **block) {
    uint64_t estimate = memory_estimate(sizeof(struct value_block) + capacity);
    enum store_status status = charge(store, estimate);
    if (status != STORE_OK) return status;
    struct value_block *created = value_block_create(capacity);
    if (created == NULL) {
        uncharge(store, estimate);
        return STORE_ALLOCATION_FAILED;
    }
    uint64_t footprint = value_block_footprint(created);
    status = settle(store, estimate, footprint);
    if (status != STORE_OK) {
        value_block_release(created);
        return status;
    }
    created->charged_to = store;
    created->charge = footprint;
    if (length > 0) memcpy(created->data, data, (size_t)length);
    created->length = length;
    *block = created;
    return STORE_OK;
}

/* Creates an unlinked item with one reference for KEY and a value given either as
 * BLOCK (its reference is taken over in every case) or as LENGTH bytes at VALUE. May
 * evict: call with no shard lock held. */
static enum store_status item_create(struct store *store, uint32_t hash, const void *key,
                                     size_t key_length, const void *value, uint64_t length,
                                     struct value_block *block, struct item **created) {
    enum store_status status;
    if (block == NULL && length >= STORE_BLOCK_THRESHOLD) {
        status = create_block(store, length, value, length, &block);
        if (status != STORE_OK) return status;
    } else if (block != NULL) {
        length = block->length;
        status = adopt_block(store, block);
        if (status != STORE_OK) {
            value_block_release(block);
            return status;
        }
    }
    uint64_t payload = block != NULL ? sizeof(block) : length;
    size_t size = sizeof(struct item) + key_length + (size_t)payload;
    uint64_t estimate = memory_estimate(size);
    status = charge(store, estimate);
    if (status != STORE_OK) {
        if (block != NULL) value_block_release(block);
        return status;
    }
    struct item *item = malloc(size);
    if (item == NULL) {
        uncharge(store, estimate);
        if (block != NULL) value_block_release(block);
        return STORE_ALLOCATION_FAILED;
    }
    status = settle(store, estimate, memory_footprint(item));
    if (status != STORE_OK) {
        free(item);
        if (block != NULL) value_block_release(block);
        return status;
    }
    item->hash_next = NULL;
    item->queue_previous = NULL;
    item->queue_next = NULL;
    item->expire_at_ms = 0;
    item->value_length = length;
    atomic_init(&item->references, 1);
    item->hash = hash;
    item->key_length = (uint32_t)key_length;
    atomic_init(&item->frequency, 0);
    item->queue = QUEUE_NONE;
    item->external = block != NULL;
    item->store_id = store->id;
    if (key_length > 0) memcpy(item->bytes, key, key_length);
    if (block != NULL) {
        memcpy(item->bytes + key_length, &block, sizeof(block));
    } else if (length > 0) {
        memcpy(item->bytes + key_length, value, (size_t)length);
    }
    *created = item;
    return STORE_OK;
}

/* Creates an unlinked item for KEY holding the same value as SOURCE (sharing its
 * block when it has one) and SOURCE's expiry. */
static enum store_status item_clone(struct store *store, uint32_t hash, const void *key,
                                    size_t key_length, const struct item *source,
                                    struct item **created) {
    enum store_status status;
    if (source->external) {
        struct value_block *block = item_block(source);
        value_block_retain(block);
        status = item_create(store, hash, key, key_length, NULL, 0, block, created);
    } else {
        status = item_create(store, hash, key, key_length, item_value(source), source->value_length,
                             NULL, created);
    }
    if (status == STORE_OK) (*created)->expire_at_ms = source->expire_at_ms;
    return status;
}

/* ---- hashing and shards ------------------------------------------------------- */

static inline uint64_t hash_key(const struct store *store, const void *key, size_t length) {
    return XXH3_64bits_withSeed(key, length, store->seed);
}

/* The shard of a key: bits 48 and up of its hash (the bucket uses the low 32). */
static inline unsigned shard_index_of(const struct store *store, uint64_t hash) {
    return (unsigned)(hash >> 48) & (store->shard_count - 1);
}

static inline struct shard *shard_for(struct store *store, uint64_t hash) {
    return &store->shards[shard_index_of(store, hash)];
}

static void shard_lock(struct shard *shard) {
    pthread_mutex_lock(&shard->lock);
}

static void shard_unlock(struct shard *shard) {
    pthread_mutex_unlock(&shard->lock);
}

/* ---- S3-FIFO queues and the ghost table -------------------------------------- */

static struct queue *queue_of(struct shard *shard, const struct item *item) {
    return item->queue == QUEUE_SMALL ? &shard->small : &shard->main;
}

static void queue_push_head(struct queue *queue, struct item *item) {
    item->queue_previous = NULL;
    item->queue_next = queue->head;
    if (queue->head != NULL) {
        queue->head->queue_previous = item;
    } else {
        queue->tail = item;
    }
    queue->head = item;
    queue->bytes += queue_weight(item);
    queue->count++;
}

static void queue_remove(struct queue *queue, struct item *item) {
    if (item->queue_previous != NULL) {
        item->queue_previous->queue_next = item->queue_next;
    } else {
        queue->head = item->queue_next;
    }
    if (item->queue_next != NULL) {
        item->queue_next->queue_previous = item->queue_previous;
    } else {
        queue->tail = item->queue_previous;
    }
    item->queue_previous = NULL;
    item->queue_next = NULL;
    queue->bytes -= queue_weight(item);
    queue->count--;
}

static uint32_t ghost_fingerprint(uint32_t hash) {
    uint32_t fingerprint = hash * 0x9E3779B1u;
    fingerprint ^= fingerprint >> 15;
    return fingerprint | 1;
}

/* Remembers that an item with HASH left the small queue without being reused. */
static void ghost_add(struct shard *shard, uint32_t hash) {
    uint32_t fingerprint = ghost_fingerprint(hash);
    shard->ghost[(fingerprint >> 1) & shard->ghost_mask] =
        ((uint64_t)fingerprint << 32) | shard->ghost_clock++;
}

/* Returns true (and forgets it) if an item with HASH was recently evicted from the
 * small queue: the ghost holds about as many entries as the main queue. */
static bool ghost_take(struct shard *shard, uint32_t hash) {
    uint32_t fingerprint = ghost_fingerprint(hash);
    uint64_t *slot = &shard->ghost[(fingerprint >> 1) & shard->ghost_mask];
    if ((uint32_t)(*slot >> 32) != fingerprint) return false;
    uint32_t age = shard->ghost_clock - (uint32_t)*slot;
    uint64_t window = shard->main.count > 64 ? shard->main.count : 64;
    *slot = 0;
    return age <= window;
}

/* ---- the hash index ----------------------------------------------------------- */

/* Returns the slot that points at KEY's item, or at the NULL ending its chain. */
static struct item **find_slot(struct shard *shard, uint32_t hash, const void *key,
                               size_t key_length) {
    struct item **slot = &shard->buckets[hash & shard->bucket_mask];
    for (struct item *item = *slot; item != NULL; item = *slot) {
        if (item->hash == hash && item->key_length == key_length &&
            memcmp(item->bytes, key, key_length) == 0) {
            return slot;
        }
        slot = &item->hash_next;
    }
    return slot;
}

/* Returns the slot pointing at ITEM, which must be linked in SHARD. */
static struct item **slot_of(struct shard *shard, const struct item *item) {
    struct item **slot = &shard->buckets[item->hash & shard->bucket_mask];
    while (*slot != item)
        slot = &(*slot)->hash_next;
    return slot;
}

/* Takes ITEM (at SLOT) out of the index and its queue. The index's reference now
 * belongs to the caller. */
static void unlink_item(struct shard *shard, struct item **slot, struct item *item) {
    *slot = item->hash_next;
    item->hash_next = NULL;
    queue_remove(queue_of(shard, item), item);
    item->queue = QUEUE_NONE;
    atomic_store_explicit(&shard->item_count,
                          atomic_load_explicit(&shard->item_count, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    if (item->expire_at_ms != 0) {
        atomic_store_explicit(&shard->expiring_count,
                              atomic_load_explicit(&shard->expiring_count, memory_order_relaxed) -
                                  1,
                              memory_order_relaxed);
    }
}

/* Unlinks ITEM at SLOT and chains it onto *GRAVEYARD for release after unlock. */
static void bury(struct shard *shard, struct item **slot, struct item *item,
                 struct item **graveyard) {
    unlink_item(shard, slot, item);
    item->hash_next = *graveyard;
    *graveyard = item;
}

static void set_expiring_count(struct shard *shard, int64_t delta) {
    atomic_store_explicit(&shard->expiring_count,
                          atomic_load_explicit(&shard->expiring_count, memory_order_relaxed) +
                              (uint64_t)delta,
                          memory_order_relaxed);
}

/* Rebuilds SHARD's table with NEW_COUNT buckets, if the budget allows. Called under
 * the shard lock; never evicts. */
static void resize_buckets(struct store *store, struct shard *shard, uint64_t new_count) {
    uint64_t estimate = memory_estimate(new_count * sizeof(struct item *));
    if (!try_charge(store, estimate)) return;
    struct item **buckets = calloc((size_t)new_count, sizeof(struct item *));
    if (buckets == NULL) {
        uncharge(store, estimate);
        return;
    }
    uint64_t footprint = memory_footprint(buckets);
    if (footprint > estimate) {
        if (!try_charge(store, footprint - estimate)) {
            uncharge(store, estimate);
            free(buckets);
            return;
        }
    } else {
        uncharge(store, estimate - footprint);
    }
    uint64_t new_mask = new_count - 1;
    for (uint64_t i = 0; i <= shard->bucket_mask; i++) {
        struct item *item = shard->buckets[i];
        while (item != NULL) {
            struct item *next = item->hash_next;
            struct item **head = &buckets[item->hash & new_mask];
            item->hash_next = *head;
            *head = item;
            item = next;
        }
    }
    free(shard->buckets);
    uncharge(store, shard->bucket_footprint);
    atomic_fetch_add_explicit(&store->index_bytes, footprint - shard->bucket_footprint,
                              memory_order_relaxed);
    shard->buckets = buckets;
    shard->bucket_mask = new_mask;
    shard->bucket_footprint = footprint;
}

/* Links ITEM into the index and a queue. INHERIT_QUEUE and INHERIT_FREQUENCY carry
 * over the state of the version it replaces (QUEUE_NONE for a new key). */
static void link_item(struct store *store, struct shard *shard, struct item *item,
                      uint8_t inherit_queue, uint8_t inherit_frequency) {
    struct item **head = &shard->buckets[item->hash & shard->bucket_mask];
    item->hash_next = *head;
    *head = item;
    if (inherit_queue == QUEUE_NONE) {
        inherit_queue = ghost_take(shard, item->hash) ? QUEUE_MAIN : QUEUE_SMALL;
    }
    item->queue = inherit_queue;
    atomic_store_explicit(&item->frequency, inherit_frequency, memory_order_relaxed);
    queue_push_head(queue_of(shard, item), item);
    uint64_t count = atomic_load_explicit(&shard->item_count, memory_order_relaxed) + 1;
    atomic_store_explicit(&shard->item_count, count, memory_order_relaxed);
    if (item->expire_at_ms != 0) set_expiring_count(shard, 1);
    if (count > shard->bucket_mask + 1 && shard->bucket_mask < UINT32_MAX) {
        resize_buckets(store, shard, (shard->bucket_mask + 1) * 2);
    }
}

/* Finds KEY's live item in SHARD (locked). An expired item found on the way is
 * unlinked onto GRAVEYARD. Sets *SLOT_OUT (if not NULL) to the found item's slot. */
static struct item *find_live(struct shard *shard, uint32_t hash, const void *key,
                              size_t key_length, int64_t now, struct item ***slot_out,
                              struct item **graveyard) {
    struct item **slot = find_slot(shard, hash, key, key_length);
    struct item *item = *slot;
    if (item != NULL && is_expired(item, now)) {
        bury(shard, slot, item, graveyard);
        metric_add(METRIC_expired_keys, 1);
        item = NULL;
    }
    if (slot_out != NULL) *slot_out = slot;
    return item;
}

/* Replaces EXISTING (at SLOT, may be NULL) with ITEM (may be NULL: just remove). The
 * replaced item goes to *PREVIOUS_OWNER when that is not NULL, else to the graveyard. */
static void replace(struct store *store, struct shard *shard, struct item **slot,
                    struct item *existing, struct item *item, struct item **graveyard) {
    uint8_t queue = QUEUE_NONE;
    uint8_t frequency = 0;
    if (existing != NULL) {
        queue = existing->queue;
        frequency = atomic_load_explicit(&existing->frequency, memory_order_relaxed);
        bury(shard, slot, existing, graveyard);
    }
    if (item != NULL) link_item(store, shard, item, queue, frequency);
}

/* ---- eviction ----------------------------------------------------------------- */

/* Chooses and unlinks one S3-FIFO victim from SHARD (locked). Returns it with the
 * index's reference, or NULL if the shard is empty. */
static struct item *choose_victim(struct shard *shard, int64_t now) {
    for (int step = 0; step < EVICTION_STEP_LIMIT; step++) {
        uint64_t total = shard->small.bytes + shard->main.bytes;
        bool from_small =
            shard->small.tail != NULL &&
            (shard->main.tail == NULL || shard->small.bytes * 100 >= total * SMALL_QUEUE_PERCENT);
        if (from_small) {
            struct item *item = shard->small.tail;
            uint8_t frequency = atomic_load_explicit(&item->frequency, memory_order_relaxed);
            if (frequency > 0 && !is_expired(item, now)) {
                /* Reused while on probation: promote to the main queue. */
                queue_remove(&shard->small, item);
                item->queue = QUEUE_MAIN;
                queue_push_head(&shard->main, item);
                continue;
            }
            ghost_add(shard, item->hash);
            unlink_item(shard, slot_of(shard, item), item);
            return item;
        }
        struct item *item = shard->main.tail;
        if (item == NULL) return NULL;
        uint8_t frequency = atomic_load_explicit(&item->frequency, memory_order_relaxed);
        if (frequency > 0 && !is_expired(item, now)) {
            atomic_store_explicit(&item->frequency, (uint8_t)(frequency - 1), memory_order_relaxed);
            queue_remove(&shard->main, item);
            queue_push_head(&shard->main, item);
            continue;
        }
        unlink_item(shard, slot_of(shard, item), item);
        return item;
    }
    /* Every item looked at was in use: take the oldest of the main queue anyway. */
    struct item *item = shard->main.tail != NULL ? shard->main.tail : shard->small.tail;
    if (item == NULL) return NULL;
    unlink_item(shard, slot_of(shard, item), item);
    return item;
}

/* Evicts one item from SHARD. Returns false if the shard had nothing to evict. */
static bool evict_one(struct store *store, struct shard *shard) {
    (void)store;
    if (atomic_load_explicit(&shard->item_count, memory_order_relaxed) == 0) return false;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    struct item *victim = choose_victim(shard, now);
    shard_unlock(shard);
    if (victim == NULL) return false;
    if (is_expired(victim, now)) {
        metric_add(METRIC_expired_keys, 1);
    } else {
        metric_add(METRIC_evicted_keys, 1);
    }
    item_release(victim);
    return true;
}

/* ---- lifecycle ---------------------------------------------------------------- */

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
    store->shard_count = config->shards ? config->shards : DEFAULT_SHARDS;
    if (store->shard_count > MAX_SHARDS || (store->shard_count & (store->shard_count - 1)) != 0) {
        atomic_store(&registry[id], NULL);
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

    /* Ghost entries: about one per 4 KiB of budget, split across the shards. */
    uint64_t ghost_total = config->memory_budget / 4096;
    uint64_t ghost_per_shard = 16;
    while (ghost_per_shard * store->shard_count < ghost_total && ghost_per_shard < (1u << 20)) {
        ghost_per_shard *= 2;
    }

    store->shards = aligned_alloc(64, sizeof(struct shard) * store->shard_count);
    if (store->shards == NULL) goto out_of_memory;
    memset(store->shards, 0, sizeof(struct shard) * store->shard_count);
    for (unsigned i = 0; i < store->shard_count; i++)
        pthread_mutex_init(&store->shards[i].lock, NULL);
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
        char needed[32];
        snprintf(needed, sizeof(needed), "%llu", (unsigned long long)(fixed + index_bytes));
        snprintf(error, error_size,
                 "memory budget too small: the store's own structures need %s bytes", needed);
        free_store(store);
        return NULL;
    }
    atomic_init(&store->fixed, fixed);
    atomic_init(&store->index_bytes, index_bytes);
    atomic_init(&store->used, fixed + index_bytes);
    atomic_init(&store->peak, fixed + index_bytes);
    return store;

out_of_memory:
    snprintf(error, error_size, "out of memory creating the store");
    free_store(store);
    return NULL;
}

void store_destroy(struct store *store) {
    if (store == NULL) return;
    store_flush(store);
    free_store(store);
}

/* ---- reads -------------------------------------------------------------------- */

enum store_status store_get(struct store *store, const void *key, size_t key_length,
                            struct item **item) {
    uint64_t hash = hash_key(store, key, key_length);
    struct shard *shard = shard_for(store, hash);
    struct item *graveyard = NULL;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    struct item *found = find_live(shard, (uint32_t)hash, key, key_length, now, NULL, &graveyard);
    if (found != NULL) {
        item_retain(found);
        uint8_t frequency = atomic_load_explicit(&found->frequency, memory_order_relaxed);
        if (frequency < FREQUENCY_MAX) {
            atomic_store_explicit(&found->frequency, (uint8_t)(frequency + 1),
                                  memory_order_relaxed);
        }
    }
    shard_unlock(shard);
    release_graveyard(graveyard);
    metric_add(found != NULL ? METRIC_keyspace_hits : METRIC_keyspace_misses, 1);
    *item = found;
    return found != NULL ? STORE_OK : STORE_NOT_FOUND;
}

/* Looks KEY up; with MARK_USED also counts an access. Returns whether it is live and,
 * when EXPIRE_AT is not NULL, its expiry time. */
static bool probe(struct store *store, const void *key, size_t key_length, bool mark_used,
                  int64_t *expire_at) {
    uint64_t hash = hash_key(store, key, key_length);
    struct shard *shard = shard_for(store, hash);
    struct item *graveyard = NULL;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    struct item *found = find_live(shard, (uint32_t)hash, key, key_length, now, NULL, &graveyard);
    if (found != NULL) {
        if (expire_at != NULL) *expire_at = found->expire_at_ms;
        uint8_t frequency = atomic_load_explicit(&found->frequency, memory_order_relaxed);
        if (mark_used && frequency < FREQUENCY_MAX) {
            atomic_store_explicit(&found->frequency, (uint8_t)(frequency + 1),
                                  memory_order_relaxed);
        }
    }
    shard_unlock(shard);
    release_graveyard(graveyard);
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

/* ---- writes ------------------------------------------------------------------- */

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
    struct shard *shard = shard_for(store, hash);
    struct item *graveyard = NULL;
    enum store_status status = STORE_OK;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    struct item **slot;
    struct item *existing =
        find_live(shard, (uint32_t)hash, key, key_length, now, &slot, &graveyard);
    if (previous != NULL) {
        *previous = existing;
        if (existing != NULL) item_retain(existing);
    }
    if ((write->condition == STORE_IF_ABSENT && existing != NULL) ||
        (write->condition == STORE_IF_PRESENT && existing == NULL)) {
        status = STORE_CONDITION_FAILED;
    } else {
        if (item != NULL && write->expiry == STORE_EXPIRY_KEEP && existing != NULL) {
            item->expire_at_ms = existing->expire_at_ms;
        }
        replace(store, shard, slot, existing, item, &graveyard);
        item = NULL;
    }
    shard_unlock(shard);
    if (item != NULL) item_release(item);
    release_graveyard(graveyard);
    return status;
}

/* store_set() and store_set_block() share this: VALUE/LENGTH or BLOCK. */
static enum store_status set_common(struct store *store, const void *key, size_t key_length,
                                    const void *value, uint64_t length, struct value_block *block,
                                    const struct store_write *write, struct item **previous) {
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
        return apply_write(store, hash, key, key_length, NULL, write, previous);
    }
    struct item *item;
    status = item_create(store, (uint32_t)hash, key, key_length, value, length, block, &item);
    if (status != STORE_OK) return status;
    if (write->expiry == STORE_EXPIRY_SET) item->expire_at_ms = write->expire_at_ms;
    return apply_write(store, hash, key, key_length, item, write, previous);
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

enum store_status store_replace_if_unchanged(struct store *store, const void *key,
                                             size_t key_length, const struct item *expected,
                                             const void *value, uint64_t value_length,
                                             bool keep_expiry) {
    enum store_status status = check_sizes(store, key_length, value_length);
    if (status != STORE_OK) return status;
    uint64_t hash = hash_key(store, key, key_length);
    struct item *item;
    status = item_create(store, (uint32_t)hash, key, key_length, value, value_length, NULL, &item);
    if (status != STORE_OK) return status;
    struct shard *shard = shard_for(store, hash);
    struct item *graveyard = NULL;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    struct item **slot;
    struct item *existing =
        find_live(shard, (uint32_t)hash, key, key_length, now, &slot, &graveyard);
    if (existing != expected) {
        status = STORE_CONDITION_FAILED;
    } else {
        if (keep_expiry && existing != NULL) item->expire_at_ms = existing->expire_at_ms;
        replace(store, shard, slot, existing, item, &graveyard);
        item = NULL;
    }
    shard_unlock(shard);
    if (item != NULL) item_release(item);
    release_graveyard(graveyard);
    return status;
}

/* Capacity to give a value block that is growing by appends to LENGTH bytes: room for
 * as much again, up to 1 MiB more, so that a run of appends copies O(n) bytes. */
static uint64_t growth_capacity(uint64_t length) {
    uint64_t extra = length < 1024 * 1024 ? length : 1024 * 1024;
    return length + extra;
}

enum store_status store_append(struct store *store, const void *key, size_t key_length,
                               const void *data, uint64_t data_length, uint64_t *new_length) {
    if (key_length > STORE_MAX_KEY_LENGTH) return STORE_KEY_TOO_LARGE;
    uint64_t hash = hash_key(store, key, key_length);
    struct shard *shard = shard_for(store, hash);
    uint64_t max_value = atomic_load_explicit(&store->max_value, memory_order_relaxed);
    for (;;) {
        struct item *graveyard = NULL;
        int64_t now = clock_realtime_ms();
        shard_lock(shard);
        struct item *existing =
            find_live(shard, (uint32_t)hash, key, key_length, now, NULL, &graveyard);
        if (existing == NULL) {
            shard_unlock(shard);
            release_graveyard(graveyard);
            if (data_length > max_value) return STORE_VALUE_TOO_LARGE;
            enum store_status status =
                store_replace_if_unchanged(store, key, key_length, NULL, data, data_length, false);
            if (status == STORE_CONDITION_FAILED) continue;
            if (status == STORE_OK) *new_length = data_length;
            return status;
        }
        uint64_t old_length = existing->value_length;
        if (data_length > max_value || old_length > max_value - data_length) {
            shard_unlock(shard);
            release_graveyard(graveyard);
            return STORE_VALUE_TOO_LARGE;
        }
        uint64_t total = old_length + data_length;
        if (existing->external &&
            atomic_load_explicit(&existing->references, memory_order_acquire) == 1) {
            struct value_block *block = item_block(existing);
            if (atomic_load_explicit(&block->references, memory_order_acquire) == 1 &&
                block->capacity >= total) {
                /* Nobody else can see this item or its block: grow it in place. */
                if (data_length > 0) memcpy(block->data + old_length, data, (size_t)data_length);
                struct queue *queue = queue_of(shard, existing);
                queue->bytes += data_length;
                existing->value_length = total;
                block->length = total;
                shard_unlock(shard);
                release_graveyard(graveyard);
                *new_length = total;
                return STORE_OK;
            }
        }
        item_retain(existing);
        shard_unlock(shard);
        release_graveyard(graveyard);

        /* Build the longer value beside the old one, then swap it in if unchanged. */
        struct item *item = NULL;
        enum store_status status;
        if (total >= STORE_BLOCK_THRESHOLD) {
            struct value_block *block;
            status = create_block(store, growth_capacity(total), item_value(existing), old_length,
                                  &block);
            if (status == STORE_OK) {
                if (data_length > 0) memcpy(block->data + old_length, data, (size_t)data_length);
                block->length = total;
                status = item_create(store, (uint32_t)hash, key, key_length, NULL, 0, block, &item);
            }
        } else {
            unsigned char joined[STORE_BLOCK_THRESHOLD];
            memcpy(joined, item_value(existing), (size_t)old_length);
            if (data_length > 0) memcpy(joined + old_length, data, (size_t)data_length);
            status =
                item_create(store, (uint32_t)hash, key, key_length, joined, total, NULL, &item);
        }
        if (status != STORE_OK) {
            item_release(existing);
            return status;
        }
        graveyard = NULL;
        now = clock_realtime_ms();
        shard_lock(shard);
        struct item **slot;
        struct item *current =
            find_live(shard, (uint32_t)hash, key, key_length, now, &slot, &graveyard);
        bool unchanged = current == existing;
        if (unchanged) {
            item->expire_at_ms = existing->expire_at_ms;
            replace(store, shard, slot, current, item, &graveyard);
            item = NULL;
        }
        shard_unlock(shard);
        if (item != NULL) item_release(item);
        item_release(existing);
        release_graveyard(graveyard);
        if (unchanged) {
            *new_length = total;
            return STORE_OK;
        }
    }
}

enum store_status store_delete(struct store *store, const void *key, size_t key_length,
                               struct item **removed) {
    if (removed != NULL) *removed = NULL;
    uint64_t hash = hash_key(store, key, key_length);
    struct shard *shard = shard_for(store, hash);
    struct item *graveyard = NULL;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    struct item **slot;
    struct item *existing =
        find_live(shard, (uint32_t)hash, key, key_length, now, &slot, &graveyard);
    if (existing != NULL) {
        if (removed != NULL) {
            unlink_item(shard, slot, existing);
            *removed = existing;
        } else {
            bury(shard, slot, existing, &graveyard);
        }
    }
    shard_unlock(shard);
    release_graveyard(graveyard);
    return existing != NULL ? STORE_OK : STORE_NOT_FOUND;
}

enum store_status store_set_expiry(struct store *store, const void *key, size_t key_length,
                                   int64_t expire_at_ms, enum store_expiry_condition condition,
                                   struct item **item) {
    if (item != NULL) *item = NULL;
    uint64_t hash = hash_key(store, key, key_length);
    struct shard *shard = shard_for(store, hash);
    struct item *graveyard = NULL;
    enum store_status status = STORE_OK;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    struct item **slot;
    struct item *existing =
        find_live(shard, (uint32_t)hash, key, key_length, now, &slot, &graveyard);
    if (existing == NULL) {
        status = STORE_NOT_FOUND;
    } else {
        if (item != NULL) {
            item_retain(existing);
            *item = existing;
        }
        int64_t current = existing->expire_at_ms;
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
        } else if (expire_at_ms != 0 && expire_at_ms <= now) {
            bury(shard, slot, existing, &graveyard);
        } else {
            if (current == 0 && expire_at_ms != 0) set_expiring_count(shard, 1);
            if (current != 0 && expire_at_ms == 0) set_expiring_count(shard, -1);
            existing->expire_at_ms = expire_at_ms;
        }
    }
    shard_unlock(shard);
    release_graveyard(graveyard);
    return status;
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
        struct item *original = find_live(source_shard, (uint32_t)source_hash, source,
                                          source_length, now, NULL, &graveyard);
        if (original != NULL) item_retain(original);
        shard_unlock(source_shard);
        release_graveyard(graveyard);
        if (original == NULL) return STORE_NOT_FOUND;

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
        struct item *current = find_live(source_shard, (uint32_t)source_hash, source, source_length,
                                         now, &source_slot, &graveyard);
        bool retry = current != original;
        if (!retry) {
            struct item **destination_slot;
            struct item *existing =
                find_live(destination_shard, (uint32_t)destination_hash, destination,
                          destination_length, now, &destination_slot, &graveyard);
            if (existing != NULL && !replace_destination) {
                status = STORE_CONDITION_FAILED;
            } else {
                /* Unlink the source first: its slot may be invalidated by the insert. */
                if (remove_source) {
                    bury(source_shard, slot_of(source_shard, current), current, &graveyard);
                }
                if (existing != NULL) {
                    bury(destination_shard, slot_of(destination_shard, existing), existing,
                         &graveyard);
                }
                link_item(store, destination_shard, item, QUEUE_NONE, 0);
                item = NULL;
            }
        }
        unlock_sorted(store, indexes, 2);
        if (item != NULL) item_release(item);
        item_release(original);
        release_graveyard(graveyard);
        if (!retry) return status;
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
                if (find_live(shard, (uint32_t)hashes[i], pairs[i].key, pairs[i].key_length, now,
                              NULL, &graveyard) != NULL) {
                    status = STORE_CONDITION_FAILED;
                }
            }
        }
        if (status == STORE_OK) {
            for (size_t i = 0; i < count; i++) {
                struct shard *shard = shard_for(store, hashes[i]);
                struct item **slot;
                struct item *existing = find_live(shard, (uint32_t)hashes[i], pairs[i].key,
                                                  pairs[i].key_length, now, &slot, &graveyard);
                replace(store, shard, slot, existing, items[i], &graveyard);
                items[i] = NULL;
            }
        }
        unlock_sorted(store, indexes, count);
        release_graveyard(graveyard);
    }
    for (size_t i = 0; items != NULL && i < count; i++) {
        if (items[i] != NULL) item_release(items[i]);
    }
    free(items);
    free(hashes);
    free(indexes);
    return status;
}

/* ---- the keyspace ------------------------------------------------------------- */

uint64_t store_count(struct store *store) {
    uint64_t total = 0;
    for (unsigned i = 0; i < store->shard_count; i++) {
        total += atomic_load_explicit(&store->shards[i].item_count, memory_order_relaxed);
    }
    return total;
}

uint64_t store_count_expiring(struct store *store) {
    uint64_t total = 0;
    for (unsigned i = 0; i < store->shard_count; i++) {
        total += atomic_load_explicit(&store->shards[i].expiring_count, memory_order_relaxed);
    }
    return total;
}

void store_flush(struct store *store) {
    for (unsigned i = 0; i < store->shard_count; i++) {
        struct shard *shard = &store->shards[i];
        struct item *graveyard = NULL;
        shard_lock(shard);
        struct queue *queues[2] = {&shard->small, &shard->main};
        for (int q = 0; q < 2; q++) {
            for (struct item *item = queues[q]->head; item != NULL;) {
                struct item *next = item->queue_next;
                item->queue = QUEUE_NONE;
                item->queue_previous = NULL;
                item->queue_next = NULL;
                item->hash_next = graveyard;
                graveyard = item;
                item = next;
            }
            memset(queues[q], 0, sizeof(*queues[q]));
        }
        memset(shard->buckets, 0, (size_t)(shard->bucket_mask + 1) * sizeof(struct item *));
        atomic_store_explicit(&shard->item_count, 0, memory_order_relaxed);
        atomic_store_explicit(&shard->expiring_count, 0, memory_order_relaxed);
        shard_unlock(shard);
        release_graveyard(graveyard);
        /* Shrink the emptied table once the items' memory is back in the budget. */
        shard_lock(shard);
        if (shard->bucket_mask + 1 > INITIAL_BUCKETS &&
            atomic_load_explicit(&shard->item_count, memory_order_relaxed) <= INITIAL_BUCKETS) {
            resize_buckets(store, shard, INITIAL_BUCKETS);
        }
        shard_unlock(shard);
    }
}

/* A small per-thread random number generator (xorshift64*), seeded on first use. */
static uint64_t random_next(void) {
    static _Thread_local uint64_t state;
    if (state == 0) {
        if (getrandom(&state, sizeof(state), 0) != sizeof(state) || state == 0) {
            state = (uint64_t)clock_monotonic_ns() | 1;
        }
    }
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1DULL;
}

enum store_status store_random(struct store *store, struct item **item) {
    *item = NULL;
    if (store_count(store) == 0) return STORE_NOT_FOUND;
    int64_t now = clock_realtime_ms();
    for (unsigned attempt = 0; attempt < 4 * store->shard_count; attempt++) {
        struct shard *shard = &store->shards[random_next() % store->shard_count];
        if (atomic_load_explicit(&shard->item_count, memory_order_relaxed) == 0) continue;
        shard_lock(shard);
        uint64_t buckets = shard->bucket_mask + 1;
        uint64_t start = random_next() & shard->bucket_mask;
        for (uint64_t i = 0; i < buckets && *item == NULL; i++) {
            for (struct item *candidate = shard->buckets[(start + i) & shard->bucket_mask];
                 candidate != NULL; candidate = candidate->hash_next) {
                if (!is_expired(candidate, now)) {
                    item_retain(candidate);
                    *item = candidate;
                    break;
                }
            }
        }
        shard_unlock(shard);
        if (*item != NULL) return STORE_OK;
    }
    return STORE_NOT_FOUND;
}

static uint64_t reverse_bits(uint64_t value) {
    value = ((value >> 1) & 0x5555555555555555ULL) | ((value & 0x5555555555555555ULL) << 1);
    value = ((value >> 2) & 0x3333333333333333ULL) | ((value & 0x3333333333333333ULL) << 2);
    value = ((value >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((value & 0x0F0F0F0F0F0F0F0FULL) << 4);
    value = ((value >> 8) & 0x00FF00FF00FF00FFULL) | ((value & 0x00FF00FF00FF00FFULL) << 8);
    value = ((value >> 16) & 0x0000FFFF0000FFFFULL) | ((value & 0x0000FFFF0000FFFFULL) << 16);
    return (value >> 32) | (value << 32);
}

bool store_scan_cursor_valid(const struct store *store, uint64_t cursor) {
    return (cursor >> store->shard_bits) <= UINT32_MAX;
}

uint64_t store_scan(struct store *store, uint64_t cursor, size_t count, store_visit_fn visit,
                    void *context) {
    if (!store_scan_cursor_valid(store, cursor)) return 0;
    unsigned shard_index = (unsigned)(cursor & (store->shard_count - 1));
    uint64_t position = cursor >> store->shard_bits; /* bucket cursor, in reverse-binary order */
    if (count == 0) count = 1;
    size_t visited = 0;
    size_t examined = 0;
    size_t examine_limit = count * 10 + 16;
    int64_t now = clock_realtime_ms();
    while (shard_index < store->shard_count) {
        struct shard *shard = &store->shards[shard_index];
        shard_lock(shard);
        uint64_t mask = shard->bucket_mask;
        do {
            for (struct item *item = shard->buckets[position & mask]; item != NULL;
                 item = item->hash_next) {
                if (!is_expired(item, now)) {
                    visit(context, item);
                    visited++;
                }
            }
            examined++;
            /* Increment the reversed bucket index: resizes between calls neither skip
             * nor lose buckets (the technique of Redis's dictScan). */
            position |= ~mask;
            position = reverse_bits(position);
            position++;
            position = reverse_bits(position);
        } while (position != 0 && visited < count && examined < examine_limit);
        shard_unlock(shard);
        if (position == 0) shard_index++;
        if (visited >= count || examined >= examine_limit) break;
    }
    if (shard_index >= store->shard_count) return 0;
    return (position << store->shard_bits) | shard_index;
}

size_t store_expire_cycle(struct store *store, size_t buckets) {
    size_t removed = 0;
    size_t budget = buckets;
    int64_t now = clock_realtime_ms();
    for (unsigned visited = 0; visited < store->shard_count && budget > 0; visited++) {
        unsigned index =
            atomic_fetch_add_explicit(&store->expire_shard_cursor, 1, memory_order_relaxed) %
            store->shard_count;
        struct shard *shard = &store->shards[index];
        if (atomic_load_explicit(&shard->expiring_count, memory_order_relaxed) == 0) continue;
        struct item *graveyard = NULL;
        size_t found = 0;
        shard_lock(shard);
        uint64_t span = shard->bucket_mask + 1;
        uint64_t steps = budget < span ? budget : span;
        for (uint64_t step = 0; step < steps; step++) {
            uint64_t bucket = shard->expire_cursor++ & shard->bucket_mask;
            struct item **slot = &shard->buckets[bucket];
            while (*slot != NULL) {
                struct item *item = *slot;
                if (is_expired(item, now)) {
                    bury(shard, slot, item, &graveyard);
                    found++;
                } else {
                    slot = &item->hash_next;
                }
            }
        }
        shard_unlock(shard);
        budget -= (size_t)steps;
        release_graveyard(graveyard);
        if (found > 0) metric_add(METRIC_expired_keys, (int64_t)found);
        removed += found;
    }
    return removed;
}

/* ---- budget and statistics ---------------------------------------------------- */

void store_set_budget(struct store *store, uint64_t bytes) {
    atomic_store_explicit(&store->budget, bytes, memory_order_relaxed);
    unsigned fruitless = 0;
    while (atomic_load_explicit(&store->used, memory_order_relaxed) > bytes &&
           fruitless <= store->shard_count) {
        uint32_t index =
            atomic_fetch_add_explicit(&store->eviction_cursor, 1, memory_order_relaxed) %
            store->shard_count;
        if (evict_one(store, &store->shards[index])) {
            fruitless = 0;
        } else {
            fruitless++;
        }
    }
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
        shard_lock(shard);
        stats->small_queue_items += shard->small.count;
        stats->main_queue_items += shard->main.count;
        shard_unlock(shard);
    }
}
