/* S3-FIFO eviction (Yang et al., SOSP 2023), per shard: a small probationary FIFO
 * queue holding about SMALL_QUEUE_PERCENT of the shard's bytes, a main FIFO queue, and a
 * ghost table remembering keys recently evicted from the small queue. A hit only bumps
 * an item's 2-bit frequency; queues move only when a victim is chosen. */
#include "engine/store_internal.h"

/* S3-FIFO: the small queue holds this share of a shard's bytes. */
#define SMALL_QUEUE_PERCENT 10
/* Upper bound on queue moves while looking for one victim. */
#define EVICTION_STEP_LIMIT 4096
/* Protected (pinned or chained) items passed over before a shard gives up. */
#define PROTECTED_LOOK_LIMIT 64

struct queue *s3fifo_queue_of(struct shard *shard, const struct item *item) {
    return item->queue == QUEUE_SMALL ? &shard->small : &shard->main;
}

void s3fifo_queue_push(struct queue *queue, struct item *item) {
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

void s3fifo_queue_remove(struct queue *queue, struct item *item) {
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
void s3fifo_ghost_add(struct shard *shard, uint32_t hash) {
    ASSERT_SHARD_LOCKED(shard);
    uint32_t fingerprint = ghost_fingerprint(hash);
    shard->ghost[(fingerprint >> 1) & shard->ghost_mask] =
        ((uint64_t)fingerprint << 32) | shard->ghost_clock++;
}

/* Returns true (and forgets it) if an item with HASH was recently evicted from the
 * small queue: the ghost holds about as many entries as the main queue. */
bool s3fifo_ghost_take(struct shard *shard, uint32_t hash) {
    ASSERT_SHARD_LOCKED(shard);
    uint32_t fingerprint = ghost_fingerprint(hash);
    uint64_t *slot = &shard->ghost[(fingerprint >> 1) & shard->ghost_mask];
    if ((uint32_t)(*slot >> 32) != fingerprint) return false;
    uint32_t age = shard->ghost_clock - (uint32_t)*slot;
    uint64_t window = shard->main.count > 64 ? shard->main.count : 64;
    *slot = 0;
    return age <= window;
}

/* Whether ITEM must stay for now: it is durable, it is pinned, or (without a flash tier
 * to keep it) it has chain children, which must leave before it does (chains.c). */
static bool is_protected(struct shard *shard, const struct item *item, int64_t now) {
    if (item->flags & ITEM_DURABLE) return true;
    struct store *store = shard->store;
    if (!chain_table_in_use(store)) return false;
    int protection = chain_protection(store, hash_key(store, item->bytes, item->key_length), now);
    if (store->tier != NULL) protection &= ~CHAIN_HAS_CHILDREN; /* demotion keeps it */
    return protection != 0;
}

/* Chooses one S3-FIFO victim from SHARD (locked), still linked. Returns NULL if the
 * shard's queues are empty, or hold nothing but protected items as far as it looked. */
static struct item *choose_victim(struct shard *shard, int64_t now) {
    ASSERT_SHARD_LOCKED(shard);
    unsigned protected_seen = 0;
    for (int step = 0; step < EVICTION_STEP_LIMIT; step++) {
        uint64_t total = shard->small.bytes + shard->main.bytes;
        bool from_small =
            shard->small.tail != NULL &&
            (shard->main.tail == NULL || shard->small.bytes * 100 >= total * SMALL_QUEUE_PERCENT);
        if (from_small) {
            struct item *item = shard->small.tail;
            uint8_t frequency = atomic_load_explicit(&item->frequency, memory_order_relaxed);
            bool expired = is_expired(item, now);
            bool kept = !expired && is_protected(shard, item, now);
            if ((frequency > 0 && !expired) || kept) {
                /* Reused while on probation, or protected: promote to the main queue. */
                s3fifo_queue_remove(&shard->small, item);
                item->queue = QUEUE_MAIN;
                s3fifo_queue_push(&shard->main, item);
                if (kept && ++protected_seen > PROTECTED_LOOK_LIMIT) return NULL;
                continue;
            }
            s3fifo_ghost_add(shard, item->hash);
            return item;
        }
        struct item *item = shard->main.tail;
        if (item == NULL) return NULL;
        uint8_t frequency = atomic_load_explicit(&item->frequency, memory_order_relaxed);
        bool expired = is_expired(item, now);
        bool kept = !expired && is_protected(shard, item, now);
        if ((frequency > 0 && !expired) || kept) {
            if (frequency > 0) {
                atomic_store_explicit(&item->frequency, (uint8_t)(frequency - 1),
                                      memory_order_relaxed);
            }
            s3fifo_queue_remove(&shard->main, item);
            s3fifo_queue_push(&shard->main, item);
            if (kept && ++protected_seen > PROTECTED_LOOK_LIMIT) return NULL;
            continue;
        }
        return item;
    }
    /* Every item looked at was in use: take the oldest of the main queue anyway. */
    struct item *oldest = shard->main.tail != NULL ? shard->main.tail : shard->small.tail;
    if (oldest != NULL && !is_expired(oldest, now) && is_protected(shard, oldest, now)) return NULL;
    return oldest;
}

/* Evicts one item from SHARD: with a flash tier it moves there (see
 * store_tier_demote()), else it is removed. Returns false if the shard had nothing to
 * evict. */
bool s3fifo_evict_one(struct store *store, struct shard *shard) {
    ASSERT_NO_SHARD_LOCK(); /* it takes one */
    if (atomic_load_explicit(&shard->item_count, memory_order_relaxed) == 0) return false;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    struct item *victim = choose_victim(shard, now);
    if (victim == NULL) {
        shard_unlock(shard);
        return false;
    }
    bool expired = is_expired(victim, now);
    int demoted = DEMOTE_REFUSED;
    if (store->tier != NULL && !expired) demoted = store_tier_demote(store, shard, victim);
    if (demoted == DEMOTE_REFUSED) index_unlink(shard, index_slot_of(shard, victim), victim);
    shard_unlock(shard);
    if (expired) {
        SHARD_COUNT(shard, expired, 1);
    } else {
        SHARD_COUNT(shard, evicted, 1);
    }
    if (demoted != DEMOTE_QUEUED) item_release(victim);
    return true;
}
