/* The store's side of the lower-tier contract (tier.h): flash stubs in the index,
 * demotion of DRAM victims, reads and promotion, and the struct tier_index callbacks
 * that apply what the tier's writer, reclaim and recovery report. The store uses its
 * tier only through tier.h; this file alone opens one (flash_open()). The rules are in
 * tier.h and store_internal.h; the policy in docs/flash-tier.md. */
#include "base/clock.h"
#include "base/io_ring.h"
#include "engine/flash.h"
#include "engine/store_internal.h"

#include <errno.h>
#include <stdlib.h>

/* ---- flash stubs ------------------------------------------------------------ */

struct flash_stub *flash_stub_create(struct store *store, uint32_t hash, const void *key,
                                     size_t key_length, uint32_t segment, uint32_t offset,
                                     uint32_t value_length, uint32_t expire_seconds,
                                     enum store_type type) {
    struct flash_stub *node = malloc(sizeof(*node) + key_length);
    if (node == NULL) return NULL;
    node->hash_next = NULL;
    node->hash = hash;
    node->key_length =
        NODE_STUB | (uint32_t)key_length | (((uint32_t)type << NODE_TYPE_SHIFT) & NODE_TYPE_MASK);
    node->segment = segment;
    node->offset = offset;
    node->value_length = value_length;
    node->expire_seconds = expire_seconds;
    if (key_length > 0) memcpy(node->key, key, key_length);
    /* It replaces a larger DRAM item (or is found by recovery): charged without eviction,
     * or owed until that item's memory is returned. */
    uint64_t footprint = memory_footprint(node);
    budget_charge_or_owe(store, footprint);
    struct tier_counters *counters = &store->tier->counters;
    atomic_fetch_add_explicit(&counters->items, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&counters->index_bytes, footprint, memory_order_relaxed);
    return node;
}

void flash_stub_free(struct store *store, struct flash_stub *node) {
    uint64_t footprint = memory_footprint(node);
    free(node);
    budget_uncharge(store, footprint);
    if (store->tier == NULL) return; /* the tier is closed: the store is going away */
    struct tier_counters *counters = &store->tier->counters;
    atomic_fetch_sub_explicit(&counters->items, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&counters->index_bytes, footprint, memory_order_relaxed);
}

/* Puts flash stub REPLACEMENT where the DRAM item at SLOT is (same key), taking the item
 * out of its queue and the chain. The index's reference to the item becomes the
 * caller's. Counts stay: one key out, one key in. */
static void swap_item_for_stub(struct shard *shard, struct item **slot, struct item *item,
                               struct flash_stub *replacement) {
    ASSERT_SHARD_LOCKED(shard);
    if (item->queue == QUEUE_SMALL || item->queue == QUEUE_MAIN) {
        s3fifo_queue_remove(s3fifo_queue_of(shard, item), item);
    }
    item->queue = QUEUE_NONE;
    replacement->hash_next = item->hash_next;
    *slot = (struct item *)replacement;
    item->hash_next = NULL;
}

bool store_tier_forget(struct store *store, struct item *node, bool superseded) {
    struct tier *tier = store->tier;
    ASSERT_SHARD_LOCKED(shard_for(store, hash_key(store, node_key(node), node_key_length(node))));
    if (node_is_stub(node)) {
        struct flash_stub *stub = (struct flash_stub *)node;
        size_t key_length = node_key_length(node);
        if (!superseded) store_note_ticket(tier_queue_tombstone(tier, stub->key, key_length));
        tier_record_dead(tier, stub->segment, key_length, stub->value_length);
        flash_stub_free(store, stub);
        return true;
    }
    if (node->flash_segment != 0) {
        if (!superseded) {
            store_note_ticket(tier_queue_tombstone(tier, node->bytes, node->key_length));
        }
        if (has_flash_copy(node)) {
            tier_record_dead(tier, node->flash_segment, node->key_length, node->value_length);
        }
        node->flash_segment = 0;
    }
    return false;
}

/* ---- demotion ----------------------------------------------------------------- */

int store_tier_demote(struct store *store, struct shard *shard, struct item *victim) {
    ASSERT_SHARD_LOCKED(shard);
    struct tier *tier = store->tier;
    if (!tier_takes(tier, victim)) return DEMOTE_REFUSED; /* evicted from the store */
    if (has_flash_copy(victim)) {
        /* Already on flash (written through, or read back from it): swap in place. */
        struct flash_stub *node = flash_stub_create(
            store, victim->hash, victim->bytes, victim->key_length, victim->flash_segment,
            victim->flash_offset, (uint32_t)victim->value_length,
            flash_expiry_seconds(victim->expire_at_ms), item_type(victim));
        if (node == NULL) return DEMOTE_REFUSED;
        swap_item_for_stub(shard, index_slot_of(shard, victim), victim, node);
        return DEMOTE_SWAPPED;
    }
    if (victim->queue == QUEUE_SMALL || victim->queue == QUEUE_MAIN) {
        s3fifo_queue_remove(s3fifo_queue_of(shard, victim), victim);
    }
    victim->queue = QUEUE_DEMOTING;
    if (victim->flash_segment == FLASH_PENDING) return DEMOTE_QUEUED; /* already on the way */
    /* (FLASH_UNKNOWN: an earlier write failed; this one writes the item again.) */
    if (tier_queue_item(tier, victim, true) == 0) {
        /* Out of memory for the queued write: back into the main queue, not demoted. */
        victim->queue = QUEUE_MAIN;
        s3fifo_queue_push(&shard->main, victim);
        return DEMOTE_REFUSED;
    }
    return DEMOTE_QUEUED;
}

/* The full hash of a DRAM item's key. */
static uint64_t item_full_hash(struct store *store, const struct item *item) {
    return hash_key(store, item->bytes, item->key_length);
}

/* tier_index.item_written */
static bool item_written(void *owner, struct item *item, uint32_t segment, uint32_t offset,
                         int result) {
    struct store *store = owner;
    STRATA_ASSERT(tier_on_writer(store->tier)); /* tier_index: the writer thread */
    ASSERT_NO_SHARD_LOCK();                     /* it takes one */
    struct shard *shard = shard_for(store, item_full_hash(store, item));
    bool live = false;
    bool unlinked = false;
    shard_lock(shard);
    struct item **slot = &shard->buckets[item->hash & shard->bucket_mask];
    while (*slot != NULL && *slot != item)
        slot = &(*slot)->hash_next;
    if (*slot == item) {
        if (result == 0) {
            item->flash_segment = segment;
            item->flash_offset = offset;
            live = true;
            if (item->queue == QUEUE_DEMOTING) {
                struct flash_stub *node =
                    flash_stub_create(store, item->hash, item->bytes, item->key_length, segment,
                                      offset, (uint32_t)item->value_length,
                                      flash_expiry_seconds(item->expire_at_ms), item_type(item));
                if (node != NULL) {
                    swap_item_for_stub(shard, slot, item, node);
                    unlinked = true;
                } else {
                    item->queue = QUEUE_MAIN; /* stays in DRAM, with its copy */
                    s3fifo_queue_push(&shard->main, item);
                }
            }
        } else {
            /* The failed write may have landed all the same: a later delete, or this
             * eviction, must leave a tombstone so that it never comes back. */
            item->flash_segment = FLASH_UNKNOWN;
            if (item->queue == QUEUE_DEMOTING) {
                /* It could not reach flash: evicted after all (counted, logged). */
                index_unlink(shard, slot, item); /* counted as evicted when it was chosen */
                tier_queue_tombstone(store->tier, item->bytes, item->key_length);
                unlinked = true;
            }
        }
    }
    shard_unlock(shard);
    if (unlinked) item_release(item); /* the index's reference */
    item_release(item);               /* the writer's */
    return live;
}

/* ---- reclaim and recovery ----------------------------------------------------- */

/* Locks KEY's shard (*SHARD) and finds its index node (*SLOT). Returns the flash stub
 * there if it points at the record at SEGMENT/OFFSET, else NULL. The caller unlocks. */
static struct flash_stub *lock_flash_stub_at(struct store *store, uint64_t hash, const void *key,
                                             size_t key_length, uint32_t segment, uint32_t offset,
                                             struct shard **shard, struct item ***slot) {
    *shard = shard_for(store, hash);
    shard_lock(*shard);
    *slot = index_find_slot(*shard, (uint32_t)hash, key, key_length);
    struct item *found = **slot;
    if (found == NULL || !node_is_stub(found)) return NULL;
    struct flash_stub *node = (struct flash_stub *)found;
    return node->segment == segment && node->offset == offset ? node : NULL;
}

/* Takes flash stub NODE at SLOT out of the index (SHARD locked) and frees it. */
static void remove_flash_stub(struct store *store, struct shard *shard, struct item **slot,
                              struct flash_stub *node) {
    ASSERT_SHARD_LOCKED(shard);
    index_unlink(shard, slot, (struct item *)node);
    flash_stub_free(store, node);
}

/* ITEM (linked, its shard locked) loses its flash copy to reclaim. With write-through
 * every live value should keep a copy on flash, so while there is room the item is
 * written again (into the newest segment); otherwise it simply has none any more. */
static void copy_going_away(struct store *store, struct item *item) {
    ASSERT_SHARD_LOCKED(shard_for(store, item_full_hash(store, item)));
    item->flash_segment = 0;
    struct tier *tier = store->tier;
    if (tier_rewrite_copies(tier) && item->queue != QUEUE_DEMOTING && tier_takes(tier, item)) {
        tier_queue_item(tier, item, false);
    }
}

/* The DRAM item at SLOT (its shard locked) if its flash copy is the record at
 * SEGMENT/OFFSET, else NULL. */
static struct item *dram_copy_at(struct item **slot, uint32_t segment, uint32_t offset) {
    struct item *item = *slot;
    if (item == NULL || node_is_stub(item)) return NULL;
    return item->flash_segment == segment && item->flash_offset == offset ? item : NULL;
}

/* tier_index.reclaim_record */
static int reclaim_record(void *owner, const void *key, size_t key_length, uint32_t segment,
                          uint32_t offset, bool drop, bool *accessed, int64_t *expire_at_ms) {
    struct store *store = owner;
    STRATA_ASSERT(tier_on_writer(store->tier)); /* tier_index: the writer thread */
    ASSERT_NO_SHARD_LOCK();                     /* it takes one */
    struct shard *shard;
    struct item **slot;
    uint64_t hash = hash_key(store, key, key_length);
    struct flash_stub *node =
        lock_flash_stub_at(store, hash, key, key_length, segment, offset, &shard, &slot);
    struct item *copy = node == NULL ? dram_copy_at(slot, segment, offset) : NULL;
    if (node != NULL) {
        /* Read since written, or the parent of present chain links: worth keeping. */
        *accessed =
            (node->key_length & NODE_ACCESSED) != 0 ||
            (chain_table_in_use(store) && chain_protection(store, hash, clock_realtime_ms()) != 0);
        *expire_at_ms = flash_stub_expiry_ms(node);
        if (drop) remove_flash_stub(store, shard, slot, node);
    } else if (copy != NULL) {
        copy_going_away(store, copy); /* a DRAM item whose copy is going away */
    }
    shard_unlock(shard);
    return node != NULL;
}

/* tier_index.unsynced_record */
static bool unsynced_record(void *owner, const void *key, size_t key_length, uint32_t segment,
                            uint32_t offset) {
    struct store *store = owner;
    STRATA_ASSERT(tier_on_writer(store->tier)); /* tier_index: the writer thread */
    ASSERT_NO_SHARD_LOCK();                     /* it takes one */
    struct shard *shard;
    struct item **slot;
    struct flash_stub *node = lock_flash_stub_at(store, hash_key(store, key, key_length), key,
                                                 key_length, segment, offset, &shard, &slot);
    struct item *copy = node == NULL ? dram_copy_at(slot, segment, offset) : NULL;
    if (node != NULL) {
        remove_flash_stub(store, shard, slot, node);
        /* Under the lock: no newer write of the key can be queued before it. */
        tier_queue_tombstone(store->tier, key, key_length);
    } else if (copy != NULL) {
        copy->flash_segment = FLASH_UNKNOWN; /* the copy may or may not last */
    }
    shard_unlock(shard);
    return node != NULL;
}

/* tier_index.drop_segment */
static uint64_t drop_segment(void *owner, uint32_t segment) {
    struct store *store = owner;
    STRATA_ASSERT(tier_on_writer(store->tier)); /* tier_index: the writer thread */
    ASSERT_NO_SHARD_LOCK();                     /* it takes one */
    uint64_t dropped = 0;
    for (unsigned i = 0; i < store->shard_count; i++) {
        struct shard *shard = &store->shards[i];
        shard_lock(shard);
        for (uint64_t bucket = 0; bucket <= shard->bucket_mask; bucket++) {
            struct item **slot = &shard->buckets[bucket];
            while (*slot != NULL) {
                struct item *node = *slot;
                if (node_is_stub(node) && ((struct flash_stub *)node)->segment == segment) {
                    remove_flash_stub(store, shard, slot, (struct flash_stub *)node);
                    dropped++;
                    continue; /* *slot is the next node now */
                }
                if (!node_is_stub(node) && node->flash_segment == segment) {
                    copy_going_away(store, node);
                }
                slot = &node->hash_next;
            }
        }
        shard_unlock(shard);
    }
    return dropped;
}

/* tier_index.reinserted */
static bool reinserted(void *owner, const void *key, size_t key_length, uint32_t old_segment,
                       uint32_t old_offset, uint32_t segment, uint32_t offset) {
    struct store *store = owner;
    STRATA_ASSERT(tier_on_writer(store->tier)); /* tier_index: the writer thread */
    ASSERT_NO_SHARD_LOCK();                     /* it takes one */
    struct shard *shard;
    struct item **slot;
    struct flash_stub *node =
        lock_flash_stub_at(store, hash_key(store, key, key_length), key, key_length, old_segment,
                           old_offset, &shard, &slot);
    if (node != NULL) {
        node->segment = segment;
        node->offset = offset;
        node->key_length &= ~NODE_ACCESSED;
    }
    shard_unlock(shard);
    return node != NULL;
}

/* tier_index.recover_node */
static bool recover_node(void *owner, const void *key, size_t key_length, uint32_t segment,
                         uint32_t offset, uint64_t value_length, int64_t expire_at_ms,
                         enum store_type type, bool remove) {
    struct store *store = owner;
    ASSERT_NO_SHARD_LOCK(); /* it takes one */
    uint64_t hash = hash_key(store, key, key_length);
    struct shard *shard = shard_for(store, hash);
    bool ok = true;
    shard_lock(shard);
    struct item **slot = index_find_slot(shard, (uint32_t)hash, key, key_length);
    if (*slot != NULL) { /* only flash stubs exist during recovery */
        remove_flash_stub(store, shard, slot, (struct flash_stub *)*slot);
    }
    if (!remove) {
        struct flash_stub *node =
            flash_stub_create(store, (uint32_t)hash, key, key_length, segment, offset,
                              (uint32_t)value_length, flash_expiry_seconds(expire_at_ms), type);
        if (node != NULL) {
            index_link_node(store, shard, (struct item *)node);
        } else {
            ok = false;
        }
    }
    shard_unlock(shard);
    return ok;
}

/* tier_index.visit */
static void visit_nodes(void *owner, tier_node_visit visit, void *context) {
    struct store *store = owner;
    ASSERT_NO_SHARD_LOCK(); /* it takes each in turn */
    for (unsigned i = 0; i < store->shard_count; i++) {
        struct shard *shard = &store->shards[i];
        shard_lock(shard);
        for (uint64_t bucket = 0; bucket <= shard->bucket_mask; bucket++) {
            for (struct item *node = shard->buckets[bucket]; node != NULL; node = node->hash_next) {
                if (node_is_stub(node)) {
                    const struct flash_stub *stub = (const struct flash_stub *)node;
                    visit(context, stub->key, node_key_length(node), stub->segment, stub->offset,
                          stub->value_length, flash_stub_expiry_ms(stub), item_type(node));
                } else if (has_flash_copy(node)) {
                    visit(context, node->bytes, node->key_length, node->flash_segment,
                          node->flash_offset, node->value_length, node->expire_at_ms,
                          item_type(node));
                }
            }
        }
        shard_unlock(shard);
    }
}

/* Queues every DRAM item that has no copy in the tier for writing (shutdown). */
static void demote_all(struct store *store) {
    int64_t now = clock_realtime_ms();
    for (unsigned i = 0; i < store->shard_count; i++) {
        struct shard *shard = &store->shards[i];
        shard_lock(shard);
        struct queue *queues[2] = {&shard->small, &shard->main};
        for (int q = 0; q < 2; q++) {
            struct item *item = queues[q]->tail;
            while (item != NULL) {
                struct item *newer = item->queue_previous;
                if ((item->flash_segment == 0 || item->flash_segment == FLASH_UNKNOWN) &&
                    !is_expired(item, now)) {
                    store_tier_demote(store, shard, item);
                }
                item = newer;
            }
        }
        shard_unlock(shard);
    }
}

/* ---- reads -------------------------------------------------------------------- */

/* Links ITEM (read from the flash stub at SEGMENT/OFFSET) in place of that node if it
 * is still there. The index takes its own reference. Returns whether it did. */
static bool promote(struct store *store, uint64_t hash, struct item *item, uint32_t segment,
                    uint32_t offset) {
    struct shard *shard;
    struct item **slot;
    struct flash_stub *node = lock_flash_stub_at(store, hash, item->bytes, item->key_length,
                                                 segment, offset, &shard, &slot);
    if (node != NULL) {
        remove_flash_stub(store, shard, slot, node); /* the record stays live: the item */
        item->flash_segment = segment;               /* points at it */
        item->flash_offset = offset;
        item_retain(item);
        index_link(store, shard, item, QUEUE_NONE, 0);
    }
    shard_unlock(shard);
    if (node != NULL) {
        atomic_fetch_add_explicit(&store->tier->counters.promotions, 1, memory_order_relaxed);
    }
    return node != NULL;
}

/* tier_index.drop_damaged: removes the flash stub at SEGMENT/OFFSET for KEY if it is
 * still there (its record failed its checks: the key now reads as missing). Takes the
 * shard lock. */
static void drop_damaged(void *owner, uint64_t hash, const void *key, size_t key_length,
                         uint32_t segment, uint32_t offset) {
    struct store *store = owner;
    struct shard *shard;
    struct item **slot;
    struct flash_stub *node =
        lock_flash_stub_at(store, hash, key, key_length, segment, offset, &shard, &slot);
    if (node != NULL) {
        tier_record_dead(store->tier, segment, key_length, node->value_length);
        remove_flash_stub(store, shard, slot, node);
    }
    shard_unlock(shard);
}

/* ---- the rest of the tier_index callbacks, and opening the tier ---------------- */

/* tier_index.attach */
static void attach(void *owner, struct tier *tier) {
    struct store *store = owner;
    store->tier = tier;
}

/* tier_index.recovery_done */
static void recovery_done(void *owner) {
    store_recovery_done(owner);
}

/* tier_index.release_hold */
static void release_hold(void *owner, uint64_t hash) {
    chain_read_hold(owner, hash, false);
}

/* tier_index.count_hit */
static void count_hit(void *owner, uint64_t hash) {
    SHARD_COUNT(shard_for(owner, hash), hits, 1);
}

/* tier_index.charge, try_charge, uncharge, budget */
static enum store_status charge(void *owner, uint64_t bytes) {
    return budget_charge(owner, bytes);
}

static bool try_charge(void *owner, uint64_t bytes) {
    return budget_try_charge(owner, bytes);
}

static void uncharge(void *owner, uint64_t bytes) {
    budget_uncharge(owner, bytes);
}

static uint64_t budget(void *owner) {
    struct store *store = owner;
    return atomic_load_explicit(&store->budget, memory_order_relaxed);
}

/* tier_index.key_locked */
static bool key_locked(void *owner, const void *key, size_t key_length) {
    struct store *store = owner;
    return check_held(&shard_for(store, hash_key(store, key, key_length))->owner);
}

static const struct tier_index store_tier_index = {
    .attach = attach,
    .item_written = item_written,
    .reclaim_record = reclaim_record,
    .unsynced_record = unsynced_record,
    .drop_segment = drop_segment,
    .reinserted = reinserted,
    .recover_node = recover_node,
    .visit = visit_nodes,
    .recovery_done = recovery_done,
    .drop_damaged = drop_damaged,
    .release_hold = release_hold,
    .count_hit = count_hit,
    .charge = charge,
    .try_charge = try_charge,
    .uncharge = uncharge,
    .budget = budget,
    .key_locked = key_locked,
};

bool store_tier_open(struct store *store, const struct store_flash_config *config, char *error,
                     size_t error_size) {
    struct tier_owner owner = {
        .index = &store_tier_index,
        .context = store,
        .charged_to = store,
        .demoting_bytes = &store->demoting_bytes,
    };
    store->flash = flash_open(config, &owner, error, error_size);
    return store->flash != NULL;
}

/* A flash read started by the store, and where its result goes. */
struct store_read {
    struct tier_read read; /* first: the io_ring operation is its first member */
    struct store *store;
    store_read_done done;
    void *context;
    bool held;
    enum store_type type;     /* the value's, from the flash index node */
    enum store_status status; /* for synchronous reads */
    struct item *item;
};

/* Turns a finished flash read into an item (linked in DRAM when READ->promote). */
static enum store_status finish_read(struct store_read *request, enum store_status status,
                                     struct value_block *block, struct item **result) {
    struct tier_read *read = &request->read;
    struct store *store = request->store;
    *result = NULL;
    if (status == STORE_NOT_FOUND && read->damaged) {
        drop_damaged(store, read->hash, read->key, read->key_length, read->segment_id,
                     read->offset);
    }
    if (status == STORE_OK) {
        struct item *item;
        status = item_create(store, (uint32_t)read->hash, read->key, read->key_length, NULL, 0,
                             block, &item);
        if (status == STORE_OK) {
            item->expire_at_ms = read->expire_at_ms;
            item->flags |= ITEM_FROM_FLASH;
            item->flags |= (uint8_t)(((unsigned)request->type << ITEM_TYPE_SHIFT) & ITEM_TYPE_MASK);
            if (is_expired(item, clock_realtime_ms())) {
                item_release(item);
                status = STORE_NOT_FOUND;
            } else {
                if (read->promote) promote(store, read->hash, item, read->segment_id, read->offset);
                *result = item;
            }
        }
    }
    tier_read_finish(read);
    struct shard *counted = shard_for(store, read->hash);
    if (status == STORE_OK) {
        SHARD_COUNT(counted, hits, 1);
    } else {
        SHARD_COUNT(counted, misses, 1);
    }
    return status;
}

static void synchronous_read_done(struct tier_read *read, enum store_status status,
                                  struct value_block *block) {
    struct store_read *request = (struct store_read *)read;
    request->status = finish_read(request, status, block, &request->item);
}

static void asynchronous_read_done(struct tier_read *read, enum store_status status,
                                   struct value_block *block) {
    struct store_read *request = (struct store_read *)read;
    struct item *item;
    status = finish_read(request, status, block, &item);
    struct store_value value = {.item = item, .held = request->held && status == STORE_OK};
    store_read_done done = request->done;
    void *context = request->context;
    if (request->held && status != STORE_OK) {
        chain_read_hold(request->store, request->read.hash, false);
    }
    free(request);
    done(context, status, value);
}

/* Whether a record of RECORD_SIZE bytes is too large to read into STORE's DRAM whole: a
 * quarter of the budget or more. */
static bool too_large_for_dram(struct store *store, uint64_t record_size) {
    uint64_t budget = atomic_load_explicit(&store->budget, memory_order_relaxed);
    return record_size >= budget / 4;
}

/* Starts reading NODE, found under ACCESS (whose lock this drops), as OPTIONS say: whole
 * (brought to DRAM if asked or if the policy says so) or as a stream. With DONE and an
 * io_ring on this thread the read is asynchronous (STORE_PENDING); otherwise it has
 * ended when this returns, with *VALUE set on STORE_OK. HELD: a hold was taken for it. */
static enum store_status read_stub(struct store *store, uint64_t hash, struct key_access *access,
                                   struct flash_stub *node,
                                   const struct store_read_options *options, bool held,
                                   store_read_done done, void *context, struct store_value *value) {
    struct store_read local;
    struct store_read *request = &local;
    struct io_ring *ring = io_ring_current();
    bool async = done != NULL && ring != NULL;
    if (async) {
        request = malloc(sizeof(*request));
        if (request == NULL) {
            index_close_key(access);
            return STORE_ALLOCATION_FAILED;
        }
    }
    memset(request, 0, sizeof(*request));
    struct tier_record record = {
        .key = node->key,
        .key_length = node_key_length((struct item *)node),
        .segment = node->segment,
        .offset = node->offset,
        .value_length = node->value_length,
        .expire_at_ms = flash_stub_expiry_ms(node),
        .accessed = (node->key_length & NODE_ACCESSED) != 0,
    };
    if (!tier_read_prepare(store->tier, &record, hash, &request->read)) {
        index_close_key(access);
        if (async) free(request);
        return STORE_ALLOCATION_FAILED;
    }
    /* Promotion policy: a second read since the value reached flash brings it back. */
    request->read.promote = options->promote || request->read.accessed_before;
    request->type = item_type((struct item *)node);
    node->key_length |= NODE_ACCESSED;
    index_close_key(access);
    if (ring != NULL && !async) {
        /* A network worker waiting for flash (a caller without a callback): counted, so
         * tests can show it does not happen on the serving paths. */
        atomic_fetch_add_explicit(&store->tier->counters.blocking_reads, 1, memory_order_relaxed);
    }
    uint64_t record_size =
        tier_record_size(store->tier, request->read.key_length, request->read.value_length);
    enum store_status status = STORE_NO_MEMORY;
    /* Only a string can be sent piece by piece: another type's command needs it whole. */
    bool streamable = options->stream && request->type == STORE_TYPE_STRING;
    if (!streamable || !too_large_for_dram(store, record_size)) {
        request->store = store;
        request->done = done;
        request->context = context;
        request->held = held;
        request->read.done = async ? asynchronous_read_done : synchronous_read_done;
        status = tier_read_start(&request->read, async);
        if (status == STORE_PENDING) return STORE_PENDING;
        if (status == STORE_OK) {
            /* Read synchronously: the callback has run. */
            value->item = request->item;
            value->held = held && request->status == STORE_OK;
            return request->status;
        }
    }
    if (streamable && (status == STORE_NO_MEMORY || status == STORE_TOO_LARGE_FOR_BUDGET)) {
        /* Too large for DRAM (or DRAM cannot make room now): send it from flash. */
        struct store_stream *stream = NULL;
        status = tier_stream_open(&request->read, held, done, context, &stream);
        if (status == STORE_OK) {
            value->stream = stream;
            value->held = held;
        }
    }
    tier_read_finish(&request->read);
    if (async) free(request);
    return status;
}

enum store_status store_tier_fault_in(struct store *store, uint64_t hash, struct key_access *access,
                                      struct flash_stub *node, struct item **item) {
    struct store_read_options options = {.promote = true};
    struct store_value value = {0};
    enum store_status status =
        read_stub(store, hash, access, node, &options, false, NULL, NULL, &value);
    *item = value.item;
    return status;
}

/* Looks KEY up and reads it as OPTIONS say (store_read(), store_get()). */
static enum store_status lookup_and_read(struct store *store, const void *key, size_t key_length,
                                         const struct store_read_options *options,
                                         struct store_value *value, store_read_done done,
                                         void *context) {
    *value = (struct store_value){0};
    uint64_t hash = hash_key(store, key, key_length);
    /* A hold is taken before the lookup, so that the key cannot leave DRAM between the
     * lookup and the command (it is given back if the key is absent). */
    bool held = options->hold && chain_reserve(store) && chain_read_hold(store, hash, true);
    for (int attempt = 0; attempt < 3; attempt++) {
        struct key_access access;
        struct item *found = index_open_key(store, hash, key, key_length, &access);
        if (found != NULL && !options->any_type && item_type(found) != STORE_TYPE_STRING) {
            index_close_key(&access);
            SHARD_COUNT(access.shard, hits, 1);
            if (held) chain_read_hold(store, hash, false);
            return STORE_WRONG_TYPE;
        }
        if (found == NULL || !node_is_stub(found)) {
            if (found != NULL) {
                item_retain(found);
                mark_used(found);
            }
            index_close_key(&access);
            if (found != NULL) {
                SHARD_COUNT(access.shard, hits, 1);
            } else {
                SHARD_COUNT(access.shard, misses, 1);
            }
            if (found == NULL) break;
            value->item = found;
            value->held = held;
            return STORE_OK;
        }
        enum store_status status = read_stub(store, hash, &access, (struct flash_stub *)found,
                                             options, held, done, context, value);
        if (status == STORE_PENDING) return STORE_PENDING; /* the callback owns the hold */
        if (status != STORE_NOT_FOUND || value->item != NULL || value->stream != NULL) {
            if (status != STORE_OK && held) chain_read_hold(store, hash, false);
            return status;
        }
        /* The record went away while it was read (reclaimed, or damaged): look again. */
    }
    if (held) chain_read_hold(store, hash, false);
    return STORE_NOT_FOUND;
}

enum store_status store_tier_get(struct store *store, const void *key, size_t key_length,
                                 struct item **item, bool promote_always, store_read_done done,
                                 void *context) {
    struct store_read_options options = {.promote = promote_always};
    struct store_value value;
    enum store_status status =
        lookup_and_read(store, key, key_length, &options, &value, done, context);
    *item = value.item;
    return status;
}

enum store_status store_read(struct store *store, const void *key, size_t key_length,
                             const struct store_read_options *options, struct store_value *value,
                             store_read_done done, void *context) {
    return lookup_and_read(store, key, key_length, options, value, done, context);
}

void store_release_hold(struct store *store, const void *key, size_t key_length) {
    chain_read_hold(store, hash_key(store, key, key_length), false);
}

enum store_status store_value_length(struct store *store, const void *key, size_t key_length,
                                     uint64_t *length) {
    struct key_access access;
    struct item *found =
        index_open_key(store, hash_key(store, key, key_length), key, key_length, &access);
    enum store_status status = found != NULL ? STORE_OK : STORE_NOT_FOUND;
    if (found != NULL && item_type(found) != STORE_TYPE_STRING) {
        status = STORE_WRONG_TYPE;
    } else if (found != NULL) {
        *length =
            node_is_stub(found) ? ((struct flash_stub *)found)->value_length : found->value_length;
    }
    index_close_key(&access);
    return status;
}

enum store_status store_key_info(struct store *store, const void *key, size_t key_length,
                                 struct store_key_info *info) {
    memset(info, 0, sizeof(*info));
    struct key_access access;
    struct item *found =
        index_open_key(store, hash_key(store, key, key_length), key, key_length, &access);
    if (found != NULL) info->type = item_type(found);
    if (found != NULL && node_is_stub(found)) {
        info->memory_bytes = memory_footprint(found);
        info->value_length = ((struct flash_stub *)found)->value_length;
        info->on_flash_only = true;
    } else if (found != NULL) {
        /* Under the shard's lock: no in-place append can change the value meanwhile. */
        info->memory_bytes = memory_footprint(found);
        if (found->flags & ITEM_EXTERNAL)
            info->memory_bytes += value_block_footprint(item_block(found));
        info->value_length = found->value_length;
        info->frequency = atomic_load_explicit(&found->frequency, memory_order_relaxed);
        if (!(found->flags & ITEM_EXTERNAL) && found->value_length <= sizeof(info->head)) {
            info->head_length = (size_t)found->value_length;
            memcpy(info->head, item_value(found), info->head_length);
        }
    }
    index_close_key(&access);
    return found != NULL ? STORE_OK : STORE_NOT_FOUND;
}

bool store_get_flash_stats(struct store *store, struct flash_stats *stats) {
    if (store->tier == NULL) {
        memset(stats, 0, sizeof(*stats));
        stats->recovery_source = "off";
        return false;
    }
    tier_get_stats(store->tier, stats);
    return true;
}

void store_shutdown(struct store *store) {
    if (store->tier == NULL) return;
    if (!tier_stop_recovery(store->tier)) {
        /* Stopped before its index was whole: nothing was served, nothing to write, and
         * no index to save (the next start scans). */
        tier_close(store->tier, false);
        store->tier = NULL;
        store->flash = NULL;
        return;
    }
    demote_all(store);
    tier_drain(store->tier);
    tier_close(store->tier, true);
    store->tier = NULL;
    store->flash = NULL;
}
