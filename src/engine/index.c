/* The sharded hash index: lookup, linking and unlinking items, growing tables, and
 * whole-keyspace walks (flush, random, scan, active expiry). */
#include "engine/store_internal.h"

#include <stdlib.h>
#include <sys/random.h>

/* Returns the slot that points at KEY's node (a DRAM item or a flash stub), or at the
 * NULL ending its chain. */
struct item **index_find_slot(struct shard *shard, uint32_t hash, const void *key,
                              size_t key_length) {
    ASSERT_SHARD_LOCKED(shard);
    struct item **slot = &shard->buckets[hash & shard->bucket_mask];
    for (struct item *item = *slot; item != NULL; item = *slot) {
        /* The key starts on the item's second cache line (the header is 64 bytes): ask
         * for it now so both lines come from memory together (docs/performance.md). */
        __builtin_prefetch(node_key(item));
        if (item->hash == hash && node_key_length(item) == key_length &&
            memcmp(node_key(item), key, key_length) == 0) {
            return slot;
        }
        slot = &item->hash_next;
    }
    return slot;
}

void store_prefetch(struct store *store, const struct store_key *keys, size_t count) {
    if (count > STORE_PREFETCH_MAX) count = STORE_PREFETCH_MAX;
    uint64_t hashes[STORE_PREFETCH_MAX];
    /* Two passes, so the misses of each overlap: first every key's bucket, then (with
     * the buckets arriving meanwhile) the node each bucket points at and its key. The
     * shard lock is taken for each read because a resize may free the bucket array. */
    for (size_t i = 0; i < count; i++) {
        hashes[i] = hash_key(store, keys[i].key, keys[i].length);
        struct shard *shard = shard_for(store, hashes[i]);
        shard_lock(shard);
        __builtin_prefetch(&shard->buckets[(uint32_t)hashes[i] & shard->bucket_mask]);
        shard_unlock(shard);
    }
    for (size_t i = 0; i < count; i++) {
        struct shard *shard = shard_for(store, hashes[i]);
        shard_lock(shard);
        struct item *head = shard->buckets[(uint32_t)hashes[i] & shard->bucket_mask];
        if (head != NULL) {
            __builtin_prefetch(head);
            __builtin_prefetch(node_key(head));
        }
        shard_unlock(shard);
    }
}

/* Returns the slot pointing at ITEM, which must be linked in SHARD. */
struct item **index_slot_of(struct shard *shard, const struct item *item) {
    ASSERT_SHARD_LOCKED(shard);
    struct item **slot = &shard->buckets[item->hash & shard->bucket_mask];
    while (*slot != item)
        slot = &(*slot)->hash_next;
    return slot;
}

/* Takes ITEM (at SLOT; a DRAM item or a flash stub) out of the index and, for a DRAM
 * item, its queue; its chain link and pin end (chains.c). The index's reference (or
 * the flash stub) now belongs to the caller. */
void index_unlink(struct shard *shard, struct item **slot, struct item *item) {
    ASSERT_SHARD_LOCKED(shard);
    *slot = item->hash_next;
    item->hash_next = NULL;
    /* Removing a key that had already expired changes nothing a client could see (it was
     * gone): WATCH does not count it, as Redis does not. */
    if (!has_expiry(item) || !is_expired(item, clock_realtime_ms())) {
        note_key_change(shard->store, item->hash);
    }
    shard_count_add(&shard->item_count, -1);
    if (has_expiry(item)) shard_count_add(&shard->expiring_count, -1);
    struct store *store = shard->store;
    if (chain_table_in_use(store)) {
        chain_forget(store, hash_key(store, node_key(item), node_key_length(item)));
    }
    if (node_is_stub(item)) return;
    if (item->queue == QUEUE_SMALL || item->queue == QUEUE_MAIN) {
        s3fifo_queue_remove(s3fifo_queue_of(shard, item), item);
    }
    item->queue = QUEUE_NONE;
}

static void bury_node(struct shard *shard, struct item **slot, struct item *item,
                      struct item **graveyard, bool superseded);

/* Removes ITEM at SLOT for good (delete, overwrite, expiry): a DRAM item is chained
 * onto *GRAVEYARD for release after unlock; a flash stub is freed. With a flash tier,
 * a key that has a record there gets a tombstone (see store_tier_forget()). */
void index_bury(struct shard *shard, struct item **slot, struct item *item,
                struct item **graveyard) {
    bury_node(shard, slot, item, graveyard, false);
}

/* index_bury(); with SUPERSEDED a new version of the key is about to be written to flash
 * (write-through), whose record will supersede the old one's without a tombstone. */
static void bury_node(struct shard *shard, struct item **slot, struct item *item,
                      struct item **graveyard, bool superseded) {
    ASSERT_SHARD_LOCKED(shard);
    index_unlink(shard, slot, item);
    struct store *store = shard->store;
    if (store->tier != NULL) {
        if (store_tier_forget(store, item, superseded)) return;
    } else if (node_is_stub(item)) {
        flash_stub_free(store, (struct flash_stub *)item);
        return;
    }
    item->hash_next = *graveyard;
    *graveyard = item;
}

/* Links flash stub NODE (its key absent) into SHARD (locked). */
void index_link_node(struct store *store, struct shard *shard, struct item *node) {
    ASSERT_SHARD_LOCKED(shard);
    struct item **head = &shard->buckets[node->hash & shard->bucket_mask];
    node->hash_next = *head;
    *head = node;
    note_key_change(store, node->hash);
    uint64_t count = shard_count_add(&shard->item_count, 1);
    if (has_expiry(node)) shard_count_add(&shard->expiring_count, 1);
    if (count > shard->bucket_mask + 1 && shard->bucket_mask < UINT32_MAX) {
        index_resize(store, shard, (shard->bucket_mask + 1) * 2);
    }
}

/* Rebuilds SHARD's table with NEW_COUNT buckets, if the budget allows. Called under
 * the shard lock; never evicts. */
void index_resize(struct store *store, struct shard *shard, uint64_t new_count) {
    ASSERT_SHARD_LOCKED(shard);
    enum store_status status;
    struct item **buckets =
        budget_allocate(store, (size_t)new_count * sizeof(struct item *), true, false, &status);
    if (buckets == NULL) return; /* chains just grow longer */
    uint64_t footprint = memory_footprint(buckets);
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
    budget_uncharge(store, shard->bucket_footprint);
    atomic_fetch_add_explicit(&store->index_bytes, footprint - shard->bucket_footprint,
                              memory_order_relaxed);
    shard->buckets = buckets;
    shard->bucket_mask = new_mask;
    shard->bucket_footprint = footprint;
}

/* Links ITEM into the index and a queue. INHERIT_QUEUE and INHERIT_FREQUENCY carry
 * over the state of the version it replaces (QUEUE_NONE for a new key). */
void index_link(struct store *store, struct shard *shard, struct item *item, uint8_t inherit_queue,
                uint8_t inherit_frequency) {
    ASSERT_SHARD_LOCKED(shard);
    struct item **head = &shard->buckets[item->hash & shard->bucket_mask];
    item->hash_next = *head;
    *head = item;
    note_key_change(store, item->hash);
    if (inherit_queue == QUEUE_NONE) {
        /* With tail-first order every new key is admitted in order (no ghost shortcut),
         * but for one written after the first member of its eviction group, which
         * leaves with its group and so needs no place in that order. */
        if (shard->small.ordered) {
            inherit_queue = (item->flags & ITEM_FOLLOWER) ? QUEUE_MAIN : QUEUE_SMALL;
        } else {
            inherit_queue = s3fifo_ghost_take(shard, item->hash) ? QUEUE_MAIN : QUEUE_SMALL;
        }
    }
    item->queue = inherit_queue;
    atomic_store_explicit(&item->frequency, inherit_frequency, memory_order_relaxed);
    if (inherit_queue == QUEUE_SMALL) {
        s3fifo_admit(store, shard, item);
    } else {
        s3fifo_queue_push(&shard->main, item);
    }
    struct tier *tier = store->tier;
    if (tier != NULL && item->flash_segment == 0 && tier_write_through(tier) &&
        tier_takes(tier, item)) {
        store_note_ticket(tier_queue_item(tier, item, false)); /* write-through */
    }
    uint64_t count = shard_count_add(&shard->item_count, 1);
    if (item->expire_at_ms != 0) shard_count_add(&shard->expiring_count, 1);
    if (count > shard->bucket_mask + 1 && shard->bucket_mask < UINT32_MAX) {
        index_resize(store, shard, (shard->bucket_mask + 1) * 2);
    }
}

/* Finds KEY's live item in SHARD (locked). An expired item found on the way is
 * unlinked onto GRAVEYARD. Sets *SLOT_OUT (if not NULL) to the found item's slot. NOW
 * is the time (Unix ms) to judge expiry by; 0 reads the clock, only for an item that
 * has an expiry. */
struct item *index_find_live(struct shard *shard, uint32_t hash, const void *key, size_t key_length,
                             int64_t now, struct item ***slot_out, struct item **graveyard) {
    ASSERT_SHARD_LOCKED(shard);
    struct item **slot = index_find_slot(shard, hash, key, key_length);
    struct item *item = *slot;
    if (item != NULL && has_expiry(item) && now == 0) now = clock_realtime_ms();
    if (item != NULL && is_expired(item, now)) {
        index_bury(shard, slot, item, graveyard);
        SHARD_COUNT(shard, expired, 1);
        item = NULL;
    }
    if (slot_out != NULL) *slot_out = slot;
    return item;
}

/* Replaces EXISTING (at SLOT, may be NULL) with ITEM (may be NULL: just remove). The
 * new version keeps the old one's queue and frequency; the old one goes to GRAVEYARD. */
void index_replace(struct store *store, struct shard *shard, struct item **slot,
                   struct item *existing, struct item *item, struct item **graveyard) {
    ASSERT_SHARD_LOCKED(shard);
    uint8_t queue = QUEUE_NONE;
    uint8_t frequency = 0;
    if (existing != NULL) {
        if (!node_is_stub(existing) && existing->queue != QUEUE_DEMOTING) {
            queue = existing->queue;
            frequency = atomic_load_explicit(&existing->frequency, memory_order_relaxed);
        }
        /* With write-through the new version's record supersedes the old one: no
         * tombstone, so that a new version that never reaches flash leaves the old one
         * in force after a crash rather than nothing. */
        struct tier *tier = store->tier;
        bool superseded =
            item != NULL && tier != NULL && tier_write_through(tier) && tier_takes(tier, item);
        bury_node(shard, slot, existing, graveyard, superseded);
    }
    if (item != NULL) index_link(store, shard, item, queue, frequency);
}

/* Locks the shard of KEY (whose hash is HASH) and returns its live item, or NULL. */
struct item *index_open_key(struct store *store, uint64_t hash, const void *key, size_t key_length,
                            struct key_access *access) {
    access->shard = shard_for(store, hash);
    access->graveyard = NULL;
    access->now = 0; /* key_access_now() reads the clock if it is wanted */
    shard_lock(access->shard);
    return index_find_live(access->shard, (uint32_t)hash, key, key_length, 0, &access->slot,
                           &access->graveyard);
}

/* Unlocks the shard and releases the items unlinked while it was locked. */
void index_close_key(struct key_access *access) {
    shard_unlock(access->shard);
    item_release_chain(access->graveyard);
}

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
        for (uint64_t bucket = 0; bucket <= shard->bucket_mask; bucket++) {
            while (shard->buckets[bucket] != NULL) {
                index_bury(shard, &shard->buckets[bucket], shard->buckets[bucket], &graveyard);
            }
        }
        shard_unlock(shard);
        item_release_chain(graveyard);
        /* Shrink the emptied table once the items' memory is back in the budget. */
        shard_lock(shard);
        if (shard->bucket_mask + 1 > INITIAL_BUCKETS &&
            atomic_load_explicit(&shard->item_count, memory_order_relaxed) <= INITIAL_BUCKETS) {
            index_resize(store, shard, INITIAL_BUCKETS);
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
        unsigned char *flash_key = NULL;
        size_t flash_key_length = 0;
        uint32_t flash_hash = 0;
        shard_lock(shard);
        uint64_t buckets = shard->bucket_mask + 1;
        uint64_t start = random_next() & shard->bucket_mask;
        for (uint64_t i = 0; i < buckets && *item == NULL && flash_key == NULL; i++) {
            for (struct item *candidate = shard->buckets[(start + i) & shard->bucket_mask];
                 candidate != NULL; candidate = candidate->hash_next) {
                if (is_expired(candidate, now)) continue;
                if (node_is_stub(candidate)) {
                    /* Only the key is wanted: copy it, and make a value-less item below. */
                    flash_key_length = node_key_length(candidate);
                    flash_key = malloc(flash_key_length ? flash_key_length : 1);
                    if (flash_key != NULL) memcpy(flash_key, node_key(candidate), flash_key_length);
                    flash_hash = candidate->hash;
                } else {
                    item_retain(candidate);
                    *item = candidate;
                }
                break;
            }
        }
        shard_unlock(shard);
        if (flash_key != NULL) {
            enum store_status status =
                item_create(store, flash_hash, flash_key, flash_key_length, NULL, 0, NULL, item);
            free(flash_key);
            return status;
        }
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
    if (store_recovering(store)) return 0; /* the index is being rebuilt */
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
                    index_bury(shard, slot, item, &graveyard);
                    found++;
                } else {
                    slot = &item->hash_next;
                }
            }
        }
        shard_unlock(shard);
        budget -= (size_t)steps;
        item_release_chain(graveyard);
        if (found > 0) SHARD_COUNT(shard, expired, found);
        removed += found;
    }
    return removed;
}
