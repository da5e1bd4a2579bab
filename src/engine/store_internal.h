/* The engine's private structures and the functions its files share. Not for use
 * outside src/engine/.
 *
 * Files: store.c (the public API), index.c (the sharded hash index, scan, expiry),
 * s3fifo.c (queues, ghost table, eviction), item.c (items), budget.c (the budget),
 * store_tier.c (the store's side of the lower-tier contract, tier.h). The lower tier
 * (flash) is used only through tier.h.
 *
 * Budget: `used` counts every byte the tier allocates (items, value blocks, buckets,
 * ghost tables, shard array). Every increase goes through budget_try_charge(), which
 * refuses to pass `budget`, so `used` never exceeds the budget. Memory is reserved
 * before it is allocated, from an upper estimate settled against the real size after.
 *
 * Locking rules: at most the shards of one operation are locked, always in ascending
 * order; eviction (which locks shards) only runs while no shard lock is held, so code
 * under a lock may only use budget_try_charge(). Items unlinked under a lock are
 * released after it is dropped: they are chained through hash_next into a "graveyard"
 * list that item_release_chain() releases. */
#ifndef STRATA_ENGINE_STORE_INTERNAL_H
#define STRATA_ENGINE_STORE_INTERNAL_H

#include "base/checks.h"
#include "base/clock.h"
#include "engine/item.h"
#include "engine/memory.h"
#include "engine/store.h"
#include "engine/tier.h"
#include "engine/value_block.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#define DEFAULT_SHARDS  256
#define MAX_SHARDS      4096
#define INITIAL_BUCKETS 16
#define MAX_STORES      256
#define FREQUENCY_MAX   3

/* ---- the index node of an item that lives only in the lower tier ------------ */

/* The index owns its nodes; the tier only names places (SEGMENT/OFFSET, tier.h). The
 * node keeps the name of the flash tier, the only lower tier so far: a second tier
 * would add which tier holds the record (a bit of key_length is free). */

#define NODE_STUB       0x80000000u /* in key_length: this is a struct flash_stub */
#define NODE_ACCESSED   0x40000000u /* in key_length: read since it reached flash */
#define NODE_KEY_LENGTH 0x0001FFFFu /* in key_length: the key's length */
#define NODE_TYPE_SHIFT 17          /* in key_length, bits 17 to 19: the value's enum store_type */
#define NODE_TYPE_MASK  (7u << NODE_TYPE_SHIFT)

/* 32 bytes beside the key. The first three fields match struct item. */
struct flash_stub {
    struct item *hash_next;
    uint32_t hash;
    uint32_t key_length;     /* NODE_STUB | flags | length */
    uint32_t segment;        /* the segment holding the record */
    uint32_t offset;         /* where the record starts in it */
    uint32_t value_length;   /* bytes of value (values on flash are below 4 GiB) */
    uint32_t expire_seconds; /* 0: never; else Unix seconds, rounded up */
    unsigned char key[];
};
_Static_assert(sizeof(struct flash_stub) == 32, "a flash index node is 32 bytes");

static inline bool node_is_stub(const struct item *node) {
    return (node->key_length & NODE_STUB) != 0;
}

static inline size_t node_key_length(const struct item *node) {
    return node->key_length & NODE_KEY_LENGTH;
}

static inline const unsigned char *node_key(const struct item *node) {
    return node_is_stub(node) ? ((const struct flash_stub *)node)->key : node->bytes;
}

/* Expiry of a flash stub in milliseconds (0: never). */
static inline int64_t flash_stub_expiry_ms(const struct flash_stub *node) {
    return (int64_t)node->expire_seconds * 1000;
}

/* The seconds field for an expiry in milliseconds, rounded up. */
static inline uint32_t flash_expiry_seconds(int64_t expire_at_ms) {
    if (expire_at_ms <= 0) return 0;
    int64_t seconds =
        expire_at_ms / 1000 + (expire_at_ms % 1000 != 0); /* no overflow at INT64_MAX */
    return seconds > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)seconds;
}

/* A FIFO queue of items, linked through queue_previous and queue_next. */
struct queue {
    struct item *head; /* newest */
    struct item *tail; /* oldest */
    uint64_t bytes;    /* sum of queue_weight() of its items */
    uint64_t count;
    /* Tail-first order (the small queue of a store with a tail-first window, see
     * s3fifo_admit()): the queue runs, from the tail, window by window, and within a
     * window newest first. ANCHOR is the tail-ward end of the newest window's run (its
     * newest item), NULL when that run is empty; TAIL_ORDER is the tail's order stamp
     * (UINT64_MAX: empty), read without the lock by the evicting thread's shard choice. */
    bool ordered;
    uint32_t anchor_window;
    struct item *anchor;
    _Atomic uint64_t tail_order;
    /* With tail-first order, both queues of every shard also count their bytes in the
     * store's totals (store.small_bytes, store.main_bytes); NULL otherwise. */
    _Atomic uint64_t *store_bytes;
};

struct shard {
    pthread_mutex_t lock;
    struct check_owner owner; /* who holds lock (checking builds) */
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
    struct store *store;    /* the store this shard belongs to */
    /* Events counted per shard with relaxed atomic adds (the shard's lines are hot from
     * its lock already), summed by store_get_stats(). */
    struct shard_counters {
        _Atomic uint64_t hits;    /* lookups that found a live key */
        _Atomic uint64_t misses;  /* lookups that found none */
        _Atomic uint64_t expired; /* keys removed because their time to live ran out */
        _Atomic uint64_t evicted; /* items removed from DRAM to make room */
    } counters;
} __attribute__((aligned(64)));

/* One key's state in the chain table (chains.c): its parent, pin and counters. */
struct chain_state {
    uint64_t hash;        /* the key's 64-bit hash; 0: an empty slot */
    uint64_t parent;      /* the parent's hash, 0 for none */
    int64_t pinned_until; /* pin lease end (ms since the epoch), 0 for none */
    uint32_t children;    /* present keys naming this key as their parent */
    uint32_t holds;       /* reads that brought the key to DRAM for a command to come */
};

struct chain_table {
    pthread_mutex_t lock;
    struct check_owner owner;
    struct chain_state *states;
    size_t capacity; /* a power of two, or 0 */
    size_t count;
    uint64_t footprint;             /* bytes charged for states */
    _Atomic size_t live;            /* count, readable without the lock */
    _Atomic uint64_t link_failures; /* links not recorded for want of memory */
};

/* Keys that differ only in one of these suffixes are one unit for eviction
 * (store_config.evict_together): evicting one removes the others. */
#define EVICTION_GROUP_SUFFIXES 8
/* Groups evicted while some of their members were still to be written (groups.c):
 * sets of EVICTION_GROUP_ORPHAN_WAYS slots, each (stem fingerprint << 32 | members written
 * so far << 24 | 100 ms ticks, 24 bits), 0 when free. */
#define EVICTION_GROUP_ORPHAN_SLOTS 8192
#define EVICTION_GROUP_ORPHAN_WAYS  4
struct eviction_groups {
    unsigned count;
    size_t lengths[EVICTION_GROUP_SUFFIXES];
    char *suffixes[EVICTION_GROUP_SUFFIXES]; /* owned by the store */
    _Atomic uint64_t *orphans;               /* EVICTION_GROUP_ORPHAN_SLOTS, owned */
};

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
    struct tier *tier;                /* the lower tier (flash); NULL: none */
    struct flash *flash;              /* the same tier as a flash tier, for tests (tests/fault);
                                         the engine uses it only through tier */
    _Atomic uint64_t demoting_bytes;  /* DRAM bytes queued for the flash writer */
    _Atomic uint64_t charge_debt;     /* bytes allocated but not yet in `used` (see
                                         budget_charge_or_owe()) */
    struct chain_table chains;        /* chain links and pins (chains.c) */
    _Atomic bool recovering;          /* the flash tier's index is being rebuilt */
    _Atomic uint64_t rejected_writes; /* writes the budget could not make room for */
    /* Tail-first eviction (store_config.tail_first_window_ms; 0: off, S3-FIFO order). Its
     * items carry an order stamp after their payload (item_order()). */
    uint32_t tail_first_window_ms;
    _Atomic int64_t window_started_ms; /* monotonic time the newest window opened */
    _Atomic uint32_t window_number;    /* the newest window */
    _Atomic int64_t last_admission_ms; /* monotonic time of the last admission */
    _Atomic uint64_t small_bytes;      /* queue_weight() of all small queues */
    _Atomic uint64_t main_bytes;       /* ... and of all main queues */
    struct eviction_groups groups;     /* suffixes of keys evicted together (groups.c) */
    /* Key versions for WATCH: VERSION_SLOTS counters, one bumped whenever a key whose hash
     * maps to it changes (note_key_change()). Allocated by the first store_key_version();
     * NULL until then, when nobody watches and changes cost nothing. */
    _Atomic(_Atomic uint32_t *) versions;
};

/* One key's shard, locked by index_open_key() and released by index_close_key(). */
struct key_access {
    struct shard *shard;
    struct item **slot;     /* the slot of the item index_open_key() returned, if any */
    struct item *graveyard; /* items unlinked meanwhile, released by index_close_key() */
    int64_t now;            /* Unix ms, read once when needed; 0: not read yet */
};

/* The time of ACCESS (Unix ms): read from the clock the first time it is asked for, so
 * that a lookup of a key without an expiry reads no clock (a clock read costs about as
 * much as the lookup on a virtual machine). */
static inline int64_t key_access_now(struct key_access *access) {
    if (access->now == 0) access->now = clock_realtime_ms();
    return access->now;
}

/* ---- small helpers ------------------------------------------------------------ */

/* The value block of an item whose value lives in one. */
static inline struct value_block *item_block(const struct item *item) {
    struct value_block *block;
    memcpy(&block, item->bytes + item->key_length, sizeof(block));
    return block;
}

/* The order stamp of an item of a store with tail-first eviction: 8 bytes after the
 * key and the payload (the value, or the block pointer of an external value, whose
 * in-place growth happens in the block). Set when the item joins the small queue
 * (s3fifo_admit()), under its shard's lock. */
static inline unsigned char *item_order(const struct item *item) {
    size_t payload =
        (item->flags & ITEM_EXTERNAL) ? sizeof(struct value_block *) : (size_t)item->value_length;
    return (unsigned char *)item->bytes + item->key_length + payload;
}

static inline uint64_t item_order_stamp(const struct item *item) {
    uint64_t stamp;
    memcpy(&stamp, item_order(item), sizeof(stamp));
    return stamp;
}

/* Adds COUNT to one of SHARD's event counters (FIELD: hits, misses, expired, evicted).
 * Any thread; no lock needed. */
#define SHARD_COUNT(shard, field, count)                                                           \
    atomic_fetch_add_explicit(&(shard)->counters.field, (uint64_t)(count), memory_order_relaxed)

/* Whether an index node (a DRAM item or a flash stub) has expired at NOW. */
static inline bool is_expired(const struct item *item, int64_t now) {
    if (node_is_stub(item)) {
        int64_t expiry = flash_stub_expiry_ms((const struct flash_stub *)item);
        return expiry != 0 && expiry <= now;
    }
    return item->expire_at_ms != 0 && item->expire_at_ms <= now;
}

/* Whether an index node has an expiry time. */
static inline bool has_expiry(const struct item *item) {
    if (node_is_stub(item)) return ((const struct flash_stub *)item)->expire_seconds != 0;
    return item->expire_at_ms != 0;
}

/* Whether a DRAM item has a written copy on flash. */
static inline bool has_flash_copy(const struct item *item) {
    return item->flash_segment != 0 && item->flash_segment != FLASH_PENDING &&
           item->flash_segment != FLASH_UNKNOWN;
}

/* Counts an access to ITEM for S3-FIFO: a relaxed store, no lock needed. */
static inline void mark_used(struct item *item) {
    uint8_t frequency = atomic_load_explicit(&item->frequency, memory_order_relaxed);
    if (frequency < FREQUENCY_MAX) {
        atomic_store_explicit(&item->frequency, (uint8_t)(frequency + 1), memory_order_relaxed);
    }
}

static inline uint64_t hash_key(const struct store *store, const void *key, size_t length) {
    return XXH3_64bits_withSeed(key, length, store->seed);
}

/* Key versions (store_key_version()): 65,536 counters, 256 KiB once anyone watches. */
#define VERSION_SLOTS 65536u

/* The version counter of a key whose hash's low 32 bits are HASH (item->hash). */
static inline size_t version_slot(uint32_t hash) {
    return (size_t)((hash * 2654435761u) >> 16) & (VERSION_SLOTS - 1);
}

/* Notes that the key whose hash's low 32 bits are HASH changed (its value, its expiry or
 * whether it exists), for WATCH. Called with its shard locked, after the change: a reader
 * that sees the change under the lock sees the new version too. */
static inline void note_key_change(struct store *store, uint32_t hash) {
    _Atomic uint32_t *versions = atomic_load_explicit(&store->versions, memory_order_acquire);
    if (versions != NULL) {
        atomic_fetch_add_explicit(&versions[version_slot(hash)], 1, memory_order_relaxed);
    }
}

/* The shard of a key: bits 48 and up of its hash (the bucket uses the low 32). */
static inline unsigned shard_index_of(const struct store *store, uint64_t hash) {
    return (unsigned)(hash >> 48) & (store->shard_count - 1);
}

static inline struct shard *shard_for(struct store *store, uint64_t hash) {
    return &store->shards[shard_index_of(store, hash)];
}

/* Adds DELTA to one of a shard's counters, which change only under its lock but are
 * read without it. Returns the new value. */
static inline uint64_t shard_count_add(_Atomic uint64_t *counter, int64_t delta) {
    uint64_t value = atomic_load_explicit(counter, memory_order_relaxed) + (uint64_t)delta;
    atomic_store_explicit(counter, value, memory_order_relaxed);
    return value;
}

/* Shard locks the calling thread holds, and whether it holds a chain table's lock
 * (checking builds), for the rules of the lock order; a tier's lock is counted in
 * tier_locks_held (tier.h). */
extern _Thread_local int shard_locks_held;
extern _Thread_local int chain_locks_held;

/* Lock order: shard locks in ascending order, before a tier's lock and a chain table's
 * lock, never after them (checked). */
static inline void shard_lock(struct shard *shard) {
    STRATA_ASSERT(tier_locks_held == 0 && chain_locks_held == 0);
    pthread_mutex_lock(&shard->lock);
    check_acquired(&shard->owner);
    if (STRATA_CHECKING) shard_locks_held++;
}

static inline void shard_unlock(struct shard *shard) {
    check_releasing(&shard->owner);
    if (STRATA_CHECKING) shard_locks_held--;
    pthread_mutex_unlock(&shard->lock);
}

/* The rule "called with SHARD locked", checked in the checking builds. */
#define ASSERT_SHARD_LOCKED(shard) STRATA_ASSERT(check_held(&(shard)->owner))

/* The rule "no shard lock may be held" (code that may evict, which takes shard locks). */
#define ASSERT_NO_SHARD_LOCK() STRATA_ASSERT(shard_locks_held == 0)

/* ---- store.c ------------------------------------------------------------------ */

struct store *store_by_id(uint8_t id);

/* The lower tier's recovery thread has rebuilt the index: the store serves from now on
 * (called through tier_index.recovery_done). */
void store_recovery_done(struct store *store);

/* Write-through: the tickets of the writes the calling thread queued during the store
 * call in progress (0: a write that could not be queued); store_finish_write() waits for
 * them and turns a failure into the call's status. */
void store_note_ticket(uint64_t ticket);
/* Forgets tickets noted outside a write (a read that expired a key), at a write's start. */
void store_begin_write(void);
enum store_status store_finish_write(struct store *store, enum store_status status);
/* The calling thread's noted tickets, set aside while it does work that is no part of
 * the write in progress (evicting a group's other members): store_tickets_set_aside()
 * saves and clears them, store_tickets_restore() puts them back, dropping any noted in
 * between (eviction's tombstones are no acknowledgment's concern). */
struct write_tickets {
    uint64_t first, last;
    bool failed;
};
void store_tickets_set_aside(struct write_tickets *saved);
void store_tickets_restore(const struct write_tickets *saved);

/* ---- store_tier.c: the store's side of the lower-tier contract ------------------- */

/* Opens the flash tier of CONFIG for STORE (its struct tier_index is store_tier.c's):
 * sets store->tier (before recovery starts) and store->flash. Returns false with a
 * reason in ERROR. */
bool store_tier_open(struct store *store, const struct store_flash_config *config, char *error,
                     size_t error_size);

/* Creates a flash stub for KEY, whose value of TYPE is at the given place, charged to
 * STORE's budget without evicting (it replaces something larger). Returns NULL if out of
 * memory. */
struct flash_stub *flash_stub_create(struct store *store, uint32_t hash, const void *key,
                                     size_t key_length, uint32_t segment, uint32_t offset,
                                     uint32_t value_length, uint32_t expire_seconds,
                                     enum store_type type);

/* Frees NODE (already out of the index) and uncharges it. */
void flash_stub_free(struct store *store, struct flash_stub *node);

/* Looks KEY up (store_get(), fault-in). A DRAM item is returned at once; a
 * flash stub is read, asynchronously when DONE is set and the thread has an io_ring
 * (then STORE_PENDING), and brought back to DRAM when PROMOTE_ALWAYS or the promotion
 * policy says so. */
enum store_status store_tier_get(struct store *store, const void *key, size_t key_length,
                                 struct item **item, bool promote_always, store_read_done done,
                                 void *context);

/* Reads NODE (found under ACCESS, whose lock this drops) from flash into a new DRAM
 * item linked in its place (when still there). Returns STORE_OK with *ITEM (a reference
 * for the caller), STORE_NOT_FOUND, or an error. */
enum store_status store_tier_fault_in(struct store *store, uint64_t hash, struct key_access *access,
                                      struct flash_stub *node, struct item **item);

/* Handles an S3-FIFO victim (linked, SHARD locked) when there is a lower tier: moves it
 * there. DEMOTE_SWAPPED: it had a copy there and a flash stub took its place (the
 * index's reference is the caller's to release after unlocking); DEMOTE_QUEUED: it is
 * out of its queue and the writer will replace it; DEMOTE_REFUSED: it cannot go to
 * the tier (the caller evicts it). */
enum { DEMOTE_REFUSED, DEMOTE_QUEUED, DEMOTE_SWAPPED };
int store_tier_demote(struct store *store, struct shard *shard, struct item *victim);

/* Index maintenance when NODE leaves the index for good (delete, overwrite, expiry):
 * queues a tombstone (unless SUPERSEDED: a new version's record follows) and marks its
 * record dead; a flash stub is freed. Called with the shard locked. Returns true if
 * NODE was a flash stub (already freed). */
bool store_tier_forget(struct store *store, struct item *node, bool superseded);

/* ---- budget.c: the budget ------------------------------------------------------ */

bool budget_try_charge(struct store *store, uint64_t bytes);
/* Charges BYTES if they fit; else records them as owed, to be charged out of the next
 * memory returned. For flash stubs that replace larger items still held by readers:
 * `used` stays within the budget and catches up once those items are freed. */
void budget_charge_or_owe(struct store *store, uint64_t bytes);
void budget_uncharge(struct store *store, uint64_t bytes);
enum store_status budget_charge(struct store *store, uint64_t bytes);
/* Allocates SIZE bytes (zeroed if asked) counted in the budget at their real footprint,
 * reserving an estimate before the memory is taken. With MAY_EVICT, eviction makes room
 * (no shard lock may be held); without, it fails rather than evict (for use under a
 * shard lock). Returns the memory, or NULL with *STATUS set. Free it with free() and
 * budget_uncharge(store, memory_footprint(memory)). */
void *budget_allocate(struct store *store, size_t size, bool zeroed, bool may_evict,
                      enum store_status *status);
enum store_status budget_adopt_block(struct store *store, struct value_block *block);
enum store_status budget_create_block(struct store *store, uint64_t capacity, const void *data,
                                      uint64_t length, struct value_block **block);

/* ---- item.c ------------------------------------------------------------------- */

void item_release_chain(struct item *graveyard);
enum store_status item_create(struct store *store, uint32_t hash, const void *key,
                              size_t key_length, const void *value, uint64_t length,
                              struct value_block *block, struct item **created);
enum store_status item_clone(struct store *store, uint32_t hash, const void *key, size_t key_length,
                             const struct item *source, struct item **created);

/* ---- chains.c: chain links and pins ------------------------------------------ */

void chain_table_init(struct chain_table *table);
void chain_table_free(struct store *store, struct chain_table *table);
/* Makes room for one more link before a shard lock is taken (may evict). Returns false
 * if the budget cannot hold it. */
bool chain_reserve(struct store *store);
/* Records that KEY_HASH's key is a child of PARENT_HASH's key (replacing an earlier
 * parent). Returns false if memory ran out (counted in link_failures). */
bool chain_link(struct store *store, uint64_t key_hash, uint64_t parent_hash);
/* Holds (HOLD) or lets go of KEY_HASH's key as if one more child named it, so it stays
 * while a child is being written. Returns false if memory ran out. */
bool chain_hold(struct store *store, uint64_t key_hash, bool hold);
/* Adds (HOLD) or ends a read hold on KEY_HASH's key: it stays in DRAM (not evicted, not
 * moved to flash) while held. Returns false if memory ran out (no hold taken). */
bool chain_read_hold(struct store *store, uint64_t key_hash, bool hold);
/* The key of KEY_HASH left the index: unlinks it from its parent, drops its pin. */
void chain_forget(struct store *store, uint64_t key_hash);
enum { CHAIN_PINNED = 1, CHAIN_HAS_CHILDREN = 2, CHAIN_HELD = 4 };
/* What keeps KEY_HASH's key from eviction at NOW: a mask of CHAIN_* bits, 0 for nothing. */
int chain_protection(struct store *store, uint64_t key_hash, int64_t now);
/* Pins KEY_HASH's key until UNTIL_MS (a later lease wins), or unpins it (0). Returns
 * false if memory ran out. */
bool chain_pin(struct store *store, uint64_t key_hash, int64_t until_ms);
/* Whether the chain table has any state (a lock-free check for the hot paths). */
static inline bool chain_table_in_use(struct store *store) {
    return atomic_load_explicit(&store->chains.live, memory_order_relaxed) != 0;
}
void chain_get_stats(struct store *store, uint64_t *chained_keys, uint64_t *link_failures);

/* ---- s3fifo.c: queues, ghost table, eviction ---------------------------------- */

struct queue *s3fifo_queue_of(struct shard *shard, const struct item *item);
void s3fifo_queue_push(struct queue *queue, struct item *item);
void s3fifo_queue_remove(struct queue *queue, struct item *item);
void s3fifo_admit(struct store *store, struct shard *shard, struct item *item);
/* Where the next victim comes from (s3fifo_eviction_shard()). */
enum eviction_source {
    FROM_EITHER, /* S3-FIFO's choice within the shard */
    FROM_SMALL,  /* tail-first order: the small queue's tail */
    FROM_MAIN,   /* tail-first order: the main queue */
};
uint32_t s3fifo_eviction_shard(struct store *store, bool spread, enum eviction_source *source);
void s3fifo_queue_grow(struct queue *queue, uint64_t bytes);
bool s3fifo_is_protected(struct shard *shard, const struct item *item, int64_t now);

/* ---- eviction groups (groups.c) ------------------------------------------------- */

bool groups_parse(struct store *store, const char *list, char *error, size_t error_size);
void groups_free(struct store *store);
void groups_evict_partners(struct store *store, const struct item *victim);
bool groups_write_is_orphan(struct store *store, const void *key, size_t key_length);
bool groups_partner_present(struct store *store, const void *key, size_t key_length);
bool groups_evict_key(struct store *store, const void *key, size_t key_length);
void s3fifo_ghost_add(struct shard *shard, uint32_t hash);
bool s3fifo_ghost_take(struct shard *shard, uint32_t hash);
bool s3fifo_evict_one(struct store *store, struct shard *shard, enum eviction_source source);

/* ---- index.c: the hash index -------------------------------------------------- */

struct item **index_slot_of(struct shard *shard, const struct item *item);
struct item **index_find_slot(struct shard *shard, uint32_t hash, const void *key,
                              size_t key_length);
void index_link_node(struct store *store, struct shard *shard, struct item *node);
void index_unlink(struct shard *shard, struct item **slot, struct item *item);
void index_bury(struct shard *shard, struct item **slot, struct item *item,
                struct item **graveyard);
void index_resize(struct store *store, struct shard *shard, uint64_t new_count);
void index_link(struct store *store, struct shard *shard, struct item *item, uint8_t inherit_queue,
                uint8_t inherit_frequency);
struct item *index_find_live(struct shard *shard, uint32_t hash, const void *key, size_t key_length,
                             int64_t now, struct item ***slot_out, struct item **graveyard);
void index_replace(struct store *store, struct shard *shard, struct item **slot,
                   struct item *existing, struct item *item, struct item **graveyard);
struct item *index_open_key(struct store *store, uint64_t hash, const void *key, size_t key_length,
                            struct key_access *access);
void index_close_key(struct key_access *access);

#endif
