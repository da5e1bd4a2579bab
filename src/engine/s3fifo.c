/* S3-FIFO eviction (Yang et al., SOSP 2023), per shard: a small probationary FIFO
 * queue holding about SMALL_QUEUE_PERCENT of the shard's bytes, a main FIFO queue, and a
 * ghost table remembering keys recently evicted from the small queue. A hit only bumps
 * an item's 2-bit frequency; queues move only when a victim is chosen. */
#include "engine/store_internal.h"

#include <string.h>

/* S3-FIFO: the small queue holds this share of a shard's bytes. */
#define SMALL_QUEUE_PERCENT 10
/* Upper bound on queue moves while looking for one victim. */
#define EVICTION_STEP_LIMIT 4096
/* Tail-first order: a pause in admissions of this share of the window opens a new one. */
#define WINDOW_QUIET_DIVISOR 10
/* Tail-first order: most steps an admission walks to its place in stamp order. */
#define ADMIT_WALK_LIMIT 256
/* Protected (pinned or chained) items passed over before a shard gives up. */
#define PROTECTED_LOOK_LIMIT 64

struct queue *s3fifo_queue_of(struct shard *shard, const struct item *item) {
    return item->queue == QUEUE_SMALL ? &shard->small : &shard->main;
}

/* Adds BYTES (modulo 2^64: a negated count shrinks it) to QUEUE's bytes and, with
 * tail-first order, to the store's total for its kind of queue. Shard locked. */
void s3fifo_queue_grow(struct queue *queue, uint64_t bytes) {
    queue->bytes += bytes;
    if (queue->store_bytes != NULL) {
        atomic_fetch_add_explicit(queue->store_bytes, bytes, memory_order_relaxed);
    }
}

/* Publishes QUEUE's tail stamp for s3fifo_eviction_shard() (tail-first order only). */
static void publish_tail_order(struct queue *queue) {
    if (queue->store_bytes == NULL) return;
    uint64_t order = queue->tail != NULL ? item_order_stamp(queue->tail) : UINT64_MAX;
    atomic_store_explicit(&queue->tail_order, order, memory_order_relaxed);
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
    s3fifo_queue_grow(queue, queue_weight(item));
    queue->count++;
    if (queue->tail == item) publish_tail_order(queue);
}

/* Stamps ITEM and puts it in SHARD's small queue (SHARD locked). Without a tail-first
 * window that is the head. With one, a stamp is (window << 32 | ~arrival), so that
 * smaller stamps leave first: older windows first, and within a window the later
 * arrival first. The arrival is when the value began to arrive (its block's number: a
 * large value's upload may end long after it began, while later ones overtake it), or
 * now for a small value. The first item of a window goes to the head and becomes the
 * anchor (the open window's smallest stamp); a later one goes right behind the anchor
 * (tail-ward) and becomes the anchor in turn, or, when it began before the anchor's,
 * head-ward to its place in stamp order (at most ADMIT_WALK_LIMIT steps). So the queue
 * keeps stamp order from tail to head, and eviction can keep taking the tail. */
void s3fifo_admit(struct store *store, struct shard *shard, struct item *item) {
    ASSERT_SHARD_LOCKED(shard);
    struct queue *queue = &shard->small;
    if (!queue->ordered) {
        s3fifo_queue_push(queue, item);
        return;
    }
    /* A window opens with an admission after a quiet spell (no admission for a tenth of
     * the window: a burst of writes, such as one request's chunks, starts one), or once
     * the open window is tail_first_window_ms old. */
    int64_t now = clock_monotonic_ms();
    int64_t started = atomic_load_explicit(&store->window_started_ms, memory_order_relaxed);
    int64_t previous =
        atomic_exchange_explicit(&store->last_admission_ms, now, memory_order_relaxed);
    int64_t quiet = (int64_t)store->tail_first_window_ms / WINDOW_QUIET_DIVISOR;
    if ((now - previous >= (quiet > 0 ? quiet : 1) ||
         now - started >= (int64_t)store->tail_first_window_ms) &&
        atomic_compare_exchange_strong_explicit(&store->window_started_ms, &started, now,
                                                memory_order_relaxed, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&store->window_number, 1, memory_order_relaxed);
    }
    uint32_t window = atomic_load_explicit(&store->window_number, memory_order_relaxed);
    /* A thread that read the number just before another opened a window: the newer one. */
    if (window < queue->anchor_window) window = queue->anchor_window;
    uint32_t arrival =
        (item->flags & ITEM_EXTERNAL) ? item_block(item)->arrival : value_block_next_arrival();
    uint64_t stamp = (uint64_t)window << 32 | (uint32_t)~arrival;
    memcpy(item_order(item), &stamp, sizeof(stamp));
    struct item *anchor = queue->anchor;
    if (anchor == NULL || queue->anchor_window != window) {
        s3fifo_queue_push(queue, item);
        queue->anchor_window = window;
        queue->anchor = item;
        return;
    }
    if (stamp <= item_order_stamp(anchor)) {
        /* The newest arrival of the window: right behind the anchor. */
        struct item *older = anchor->queue_next;
        item->queue_previous = anchor;
        item->queue_next = older;
        anchor->queue_next = item;
        if (older != NULL) {
            older->queue_previous = item;
        } else {
            queue->tail = item;
        }
        s3fifo_queue_grow(queue, queue_weight(item));
        queue->count++;
        queue->anchor = item;
        if (queue->tail == item) publish_tail_order(queue);
        return;
    }
    /* It began before the anchor's: head-ward past the later arrivals of its window. */
    struct item *place = anchor;
    for (int step = 0; step < ADMIT_WALK_LIMIT && place->queue_previous != NULL &&
                       item_order_stamp(place->queue_previous) < stamp;
         step++) {
        place = place->queue_previous;
    }
    struct item *newer = place->queue_previous;
    item->queue_next = place;
    item->queue_previous = newer;
    place->queue_previous = item;
    if (newer != NULL) {
        newer->queue_next = item;
    } else {
        queue->head = item;
    }
    s3fifo_queue_grow(queue, queue_weight(item));
    queue->count++;
}

/* The shard the evicting thread takes its next victim from, and from which queue.
 * S3-FIFO order: the next shard in turn, its own choice of queue. Tail-first order, with
 * the small queues' share of the store (not of one shard, which may hold one item) as
 * S3-FIFO's rule for which queue: the shard whose queue of that kind has the tail with
 * the smallest stamp, so victims leave in stamp order across the shards (promoted items
 * keep their stamps). In turn, S3-FIFO's choice, when SPREAD (the previous choice found
 * nothing to evict) or no queue of the kind has items. */
uint32_t s3fifo_eviction_shard(struct store *store, bool spread, enum eviction_source *source) {
    uint32_t next = atomic_fetch_add_explicit(&store->eviction_cursor, 1, memory_order_relaxed) %
                    store->shard_count;
    *source = FROM_EITHER;
    if (store->tail_first_window_ms == 0 || spread) return next;
    uint64_t small = atomic_load_explicit(&store->small_bytes, memory_order_relaxed);
    uint64_t main = atomic_load_explicit(&store->main_bytes, memory_order_relaxed);
    bool from_main = main > 0 && small * 100 < (small + main) * SMALL_QUEUE_PERCENT;
    uint64_t best = UINT64_MAX;
    for (uint32_t i = 0; i < store->shard_count; i++) {
        struct shard *shard = &store->shards[i];
        uint64_t order = atomic_load_explicit(
            from_main ? &shard->main.tail_order : &shard->small.tail_order, memory_order_relaxed);
        if (order < best) {
            best = order;
            next = i;
            *source = from_main ? FROM_MAIN : FROM_SMALL;
        }
    }
    return next;
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
    if (queue->anchor == item) queue->anchor = item->queue_previous; /* same window, or none */
    bool was_tail = item->queue_next == NULL;
    item->queue_previous = NULL;
    item->queue_next = NULL;
    s3fifo_queue_grow(queue, (uint64_t) - (int64_t)queue_weight(item)); /* shrinks */
    queue->count--;
    if (was_tail) publish_tail_order(queue);
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
bool s3fifo_is_protected(struct shard *shard, const struct item *item, int64_t now) {
    if (item->flags & ITEM_DURABLE) return true;
    struct store *store = shard->store;
    if (!chain_table_in_use(store)) return false;
    int protection = chain_protection(store, hash_key(store, item->bytes, item->key_length), now);
    if (store->tier != NULL) protection &= ~CHAIN_HAS_CHILDREN; /* demotion keeps it */
    return protection != 0;
}

/* Chooses one S3-FIFO victim from SHARD (locked), still linked, from the queue SOURCE
 * names. Returns NULL if the shard's queues are empty, or hold nothing but protected
 * items as far as it looked, or (with *PROMOTED set) when tail-first order moved the
 * small queue's tail to the main queue or found it gone, so that the next victim is
 * chosen across the shards again. */
static struct item *choose_victim(struct shard *shard, int64_t now, enum eviction_source source,
                                  bool *promoted) {
    ASSERT_SHARD_LOCKED(shard);
    *promoted = false;
    if (source == FROM_SMALL && shard->small.tail == NULL) {
        *promoted = true; /* another thread took it since the choice: choose again */
        return NULL;
    }
    unsigned protected_seen = 0, followers_seen = 0;
    for (int step = 0; step < EVICTION_STEP_LIMIT; step++) {
        uint64_t total = shard->small.bytes + shard->main.bytes;
        bool from_small =
            shard->small.tail != NULL &&
            (shard->main.tail == NULL || source == FROM_SMALL ||
             (source == FROM_EITHER && shard->small.bytes * 100 >= total * SMALL_QUEUE_PERCENT));
        if (from_small) {
            struct item *item = shard->small.tail;
            uint8_t frequency = atomic_load_explicit(&item->frequency, memory_order_relaxed);
            bool expired = is_expired(item, now);
            bool kept = !expired && s3fifo_is_protected(shard, item, now);
            if ((frequency > 0 && !expired) || kept) {
                /* Reused while on probation, or protected: promote to the main queue. */
                s3fifo_queue_remove(&shard->small, item);
                item->queue = QUEUE_MAIN;
                s3fifo_queue_push(&shard->main, item);
                if (kept && ++protected_seen > PROTECTED_LOOK_LIMIT) return NULL;
                if (shard->small.ordered) {
                    /* Tail-first order: the next victim may be in another shard. */
                    *promoted = true;
                    return NULL;
                }
                continue;
            }
            s3fifo_ghost_add(shard, item->hash);
            return item;
        }
        struct item *item = shard->main.tail;
        if (item == NULL) return NULL;
        uint8_t frequency = atomic_load_explicit(&item->frequency, memory_order_relaxed);
        bool expired = is_expired(item, now);
        bool kept = !expired && s3fifo_is_protected(shard, item, now);
        /* A group's follower leaves with its group's first member, in that one's order
         * (but not past PROTECTED_LOOK_LIMIT of them: one whose first member went to
         * flash, or was deleted, stays a follower and must still be evictable). */
        bool follower =
            (item->flags & ITEM_FOLLOWER) && !expired && followers_seen++ < PROTECTED_LOOK_LIMIT;
        if ((frequency > 0 && !expired) || kept || follower) {
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
    if (oldest != NULL && !is_expired(oldest, now) && s3fifo_is_protected(shard, oldest, now))
        return NULL;
    return oldest;
}

/* Evicts one item from SHARD: with a flash tier it moves there (see
 * store_tier_demote()), else it is removed, and with it the other keys of its eviction
 * group. Returns false if the shard had nothing to evict; true when it evicted one, or
 * (tail-first order) promoted a used item, which the caller counts as progress too. */
bool s3fifo_evict_one(struct store *store, struct shard *shard, enum eviction_source source) {
    ASSERT_NO_SHARD_LOCK(); /* it takes one */
    if (atomic_load_explicit(&shard->item_count, memory_order_relaxed) == 0) return false;
    int64_t now = clock_realtime_ms();
    shard_lock(shard);
    bool promoted;
    struct item *victim = choose_victim(shard, now, source, &promoted);
    if (victim == NULL) {
        shard_unlock(shard);
        return promoted; /* a promotion is progress: the caller chooses again */
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
    if (demoted == DEMOTE_REFUSED && store->groups.count > 0) {
        struct write_tickets saved; /* this eviction may be inside someone's write */
        store_tickets_set_aside(&saved);
        groups_evict_partners(store, victim);
        store_tickets_restore(&saved);
    }
    if (demoted != DEMOTE_QUEUED) item_release(victim);
    return true;
}
