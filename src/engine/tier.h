/* The lower-tier contract, private to the engine: what the index asks of a tier below
 * DRAM (struct tier_ops), and what a tier asks of the index that owns it
 * (struct tier_index). "The index owns the nodes; a tier owns its bytes."
 *
 * A tier is a struct tier (this file) at the start of the tier's own structure: the
 * flash tier's struct flash (flash_internal.h) begins with one. The index calls a tier
 * only through the tier_*() wrappers below, and a tier calls the index only through the
 * struct tier_owner it was opened with (store_tier.c implements it for the store), so
 * neither names the other's functions. A second tier (a cold tier in S3) is a peer of
 * flash.c: its own files, its own tier_ops, opened with the same tier_index
 * (docs/engine.md, "The lower-tier contract").
 *
 * Places. A record in a tier is named by a pair of 32-bit numbers (SEGMENT, OFFSET) that
 * the tier chooses and the index keeps in its nodes without interpreting them beyond
 * equality (a flash stub, or a DRAM item's flash_segment/flash_offset with the values
 * of item.h reserved: 0, FLASH_PENDING, FLASH_UNKNOWN).
 *
 * Lock order: a shard lock (the index's, one per key), then a tier's own lock. A tier
 * never calls the index while it holds its own lock; the index asserts it
 * (tier_locks_held). */
#ifndef STRATA_ENGINE_TIER_H
#define STRATA_ENGINE_TIER_H

#include "base/io_ring.h"
#include "engine/item.h"
#include "engine/memory.h"
#include "engine/store.h"
#include "engine/value_block.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tier;
struct tier_read;

/* Tier locks (a tier's own mutex) the calling thread holds, in the checking builds: a
 * tier counts its lock in and out, and the index asserts none is held before it takes a
 * shard lock (the lock order above). Defined in store.c. */
extern _Thread_local int tier_locks_held;

/* A tier's event counters, updated with relaxed atomic adds from any thread, by the
 * tier (writes, reads, errors) and by the index (nodes, promotions, pacing). Each tier
 * counts those that apply to it; get_stats() reports them. */
struct tier_counters {
    _Atomic uint64_t items;       /* index nodes of keys that live only in the tier */
    _Atomic uint64_t index_bytes; /* bytes those nodes take in DRAM */
    _Atomic uint64_t bytes_written;
    _Atomic uint64_t bytes_read;
    _Atomic uint64_t reads;
    _Atomic uint64_t promotions;
    _Atomic uint64_t reclaims;
    _Atomic uint64_t reinsertions;
    _Atomic uint64_t evictions;
    _Atomic uint64_t paced_writes;
    _Atomic uint64_t pace_timeouts;
    _Atomic uint64_t write_errors;    /* records whose write (or its sync) failed */
    _Atomic uint64_t sync_errors;     /* failed syncs of a segment */
    _Atomic uint64_t read_errors;     /* reads that failed with an I/O error */
    _Atomic uint64_t submit_failures; /* io_uring submissions the kernel refused */
    _Atomic uint64_t blocking_reads;  /* tier reads a network worker waited for */
    _Atomic uint64_t checksum_failures;
};

/* ---- what a tier asks of the index (implemented by store_tier.c) -------------- */

/* Called once per index node that points into a tier (saving its index). */
typedef void (*tier_node_visit)(void *context, const void *key, size_t key_length, uint32_t segment,
                                uint32_t offset, uint64_t value_length, int64_t expire_at_ms,
                                enum store_type type);

/* Every callback gets the OWNER context the tier was opened with (struct tier_owner).
 * Unless said otherwise a callback takes the key's shard lock itself, so the tier calls
 * it with no shard lock and none of its own locks held. */
struct tier_index {
    /* At open, before the tier's threads start: TIER is the tier that will call back
     * (the owner records it; recovery links nodes that count themselves in its
     * counters). NULL: the open failed, forget it. */
    void (*attach)(void *owner, struct tier *tier);

    /* The record of ITEM (queued with tier_queue_item()) is written at SEGMENT/OFFSET, or
     * failed (RESULT < 0). Applies it to the index and releases the reference the queue
     * took. Returns whether the record is live (still what the index holds). Called by
     * the tier's writer thread. */
    bool (*item_written)(void *owner, struct item *item, uint32_t segment, uint32_t offset,
                         int result);

    /* Reclaim, for each record of a segment being reclaimed (writer thread): finds what
     * the index holds for KEY. Returns 1 if a node points at SEGMENT/OFFSET (*ACCESSED
     * tells whether it was read since written, or is protected by the chain table;
     * *EXPIRE_AT_MS its expiry), 0 otherwise; DRAM copies pointing there forget it (and
     * may be queued again, see rewrite_copies()). With DROP the node is removed. */
    int (*reclaim_record)(void *owner, const void *key, size_t key_length, uint32_t segment,
                          uint32_t offset, bool drop, bool *accessed, int64_t *expire_at_ms);

    /* After a failed sync (writer thread): the record of KEY at SEGMENT/OFFSET may be
     * lost. A node pointing at it is removed and a tombstone queued under the key's lock
     * (so the record never comes back if it did last, and no newer write is overtaken);
     * returns true. A DRAM item whose copy it is learns that its copy is uncertain
     * (FLASH_UNKNOWN). */
    bool (*unsynced_record)(void *owner, const void *key, size_t key_length, uint32_t segment,
                            uint32_t offset);

    /* Removes every node that points into SEGMENT, and makes DRAM items forget copies
     * there (reclaim of a segment that could not be read whole; writer thread). Takes
     * each shard lock in turn. Returns how many nodes were removed. */
    uint64_t (*drop_segment)(void *owner, uint32_t segment);

    /* Moves the node of KEY from OLD_SEGMENT/OLD_OFFSET to its reinserted copy at
     * SEGMENT/OFFSET (writer thread). Returns whether it was still there. */
    bool (*reinserted)(void *owner, const void *key, size_t key_length, uint32_t old_segment,
                       uint32_t old_offset, uint32_t segment, uint32_t offset);

    /* Recovery (recovery thread): links KEY's node for the record at SEGMENT/OFFSET of a
     * value of TYPE, replacing a node from an earlier record; with REMOVE (a tombstone, an
     * expired or a damaged record) only removes the earlier node. Returns false if out of
     * memory. */
    bool (*recover_node)(void *owner, const void *key, size_t key_length, uint32_t segment,
                         uint32_t offset, uint64_t value_length, int64_t expire_at_ms,
                         enum store_type type, bool remove);

    /* Visits every node pointing into the tier and every DRAM item with a copy there
     * (saving the index, counting live bytes after recovery). Takes each shard lock in
     * turn. */
    void (*visit)(void *owner, tier_node_visit visit, void *context);

    /* The recovery thread has rebuilt the index: the owner serves from now on. */
    void (*recovery_done)(void *owner);

    /* A record read back failed its checks (a stream found it): removes the node of KEY
     * at SEGMENT/OFFSET if it is still there, so the key reads as missing. HASH is the
     * one the read was prepared with. */
    void (*drop_damaged)(void *owner, uint64_t hash, const void *key, size_t key_length,
                         uint32_t segment, uint32_t offset);

    /* Ends the read hold on HASH's key taken for a read that failed (see
     * store_read_options.hold): the reader gets no value, so no hold either. */
    void (*release_hold)(void *owner, uint64_t hash);

    /* A lookup of HASH's key found its value in the tier (a stream opened): the owner
     * counts the hit. Any thread, no lock held. */
    void (*count_hit)(void *owner, uint64_t hash);

    /* The owner's memory budget, for read buffers the tier allocates on a reader's
     * behalf: charge (may evict and wait: no shard lock held, never on the tier's writer
     * thread; returns STORE_OK or why not), try_charge (never evicts; false if it does
     * not fit), uncharge, and the budget's size in bytes. */
    enum store_status (*charge)(void *owner, uint64_t bytes);
    bool (*try_charge)(void *owner, uint64_t bytes);
    void (*uncharge)(void *owner, uint64_t bytes);
    uint64_t (*budget)(void *owner);

    /* The rule "called with the lock of KEY held", for the checking builds: whether the
     * calling thread holds the shard lock of KEY. */
    bool (*key_locked)(void *owner, const void *key, size_t key_length);
};

/* ---- what the index asks of a tier -------------------------------------------- */

/* Where a read goes: a record an index node points at, as the node sees it. */
struct tier_record {
    const unsigned char *key;
    size_t key_length;
    uint32_t segment;
    uint32_t offset;
    uint32_t value_length;
    int64_t expire_at_ms; /* the index's view, in milliseconds */
    bool accessed;        /* read since it reached the tier */
};

/* Called when a read ends: STORE_OK with BLOCK (a charged value block with one
 * reference, now the callee's), STORE_NOT_FOUND (the record failed its checks: counted
 * and logged) or an I/O error status. */
typedef void (*tier_read_done)(struct tier_read *read, enum store_status status,
                               struct value_block *block);

/* A read in flight. The index fills promote, done and context; the tier the rest. */
struct tier_read {
    struct io_ring_operation operation; /* first: completions find the read from it */
    struct tier *tier;
    uint64_t hash; /* the key's hash, as the index gave it */
    uint32_t segment_id;
    uint32_t offset;
    uint32_t value_length;
    uint32_t key_length;
    int64_t expire_at_ms; /* the index's view, in milliseconds */
    bool accessed_before; /* the node had been read since it reached the tier */
    bool promote;         /* the caller decided to bring the value back to DRAM */
    bool damaged;         /* the record failed its checks (done() got STORE_NOT_FOUND) */
    unsigned char *key;   /* a copy, key_length bytes */
    tier_read_done done;
    void *context;
    /* The tier's own state; the index does not look at it. */
    void *source;     /* flash: the segment (a reference) */
    void *allocation; /* the aligned buffer */
    unsigned char *buffer;
    size_t read_length;
    size_t record_delta; /* where the record starts in buffer */
};

struct tier_ops {
    const char *name;

    /* Whether a record for these lengths can go to the tier at all. Any thread. */
    bool (*accepts)(const struct tier *tier, size_t key_length, uint64_t value_length);

    /* Bytes a record with these lengths takes in the tier (reads larger than a share of
     * DRAM are streamed). */
    uint64_t (*record_size)(size_t key_length, uint64_t value_length);

    /* Queues ITEM (linked, its shard locked) for writing and returns the write's ticket
     * (0 if out of memory: nothing was queued). With DEMOTE the item has been taken out
     * of its eviction queue (QUEUE_DEMOTING) and is replaced by a node once written
     * (item_written()); otherwise (write-through) it stays and learns where its copy is.
     * Takes a reference on ITEM, released by item_written(). */
    uint64_t (*queue_item)(struct tier *tier, struct item *item, bool demote);

    /* Queues a tombstone for KEY (its shard locked): the record saying the key is gone.
     * The tier copies KEY. Returns its ticket, or 0. */
    uint64_t (*queue_tombstone)(struct tier *tier, const void *key, size_t key_length);

    /* Marks the record at SEGMENT (of KEY_LENGTH and VALUE_LENGTH) dead: only the tier's
     * accounting changes. Any thread; usually under the key's shard lock. */
    void (*record_dead)(struct tier *tier, uint32_t segment, size_t key_length,
                        uint64_t value_length);

    /* Waits until every write up to ticket LAST is complete (written, and synced when
     * fsync is always). Returns 0, or -EIO if a write from ticket FIRST on failed. No
     * shard lock held; never on the writer thread. */
    int (*wait_tickets)(struct tier *tier, uint64_t first, uint64_t last);

    /* Whether every write goes to the tier before it is acknowledged. */
    bool (*write_through)(const struct tier *tier);

    /* During a reclaim (on the writer thread): whether the copies of values still in DRAM
     * that the reclaimed segment holds are to be written again (write-through, and
     * room). */
    bool (*rewrite_copies)(const struct tier *tier);

    /* True on the tier's writer thread (the rule checks use it: the writer must never
     * wait for itself). */
    bool (*on_writer)(const struct tier *tier);

    /* Waits until the writer makes progress, or is idle (nothing queued or being
     * written), or DEADLINE_MS (monotonic) passes. Returns false at the deadline. No
     * shard lock held. */
    bool (*wait_progress)(struct tier *tier, int64_t deadline_ms);

    /* Waits until everything queued so far has been written. No shard lock held. */
    void (*drain)(struct tier *tier);

    /* The pacing timeout in milliseconds, and changing it. Any thread. */
    int64_t (*pace_timeout)(const struct tier *tier);
    void (*set_pace_timeout)(struct tier *tier, int64_t milliseconds);

    /* Prepares READ for RECORD (called with its shard locked): copies the key and the
     * place, and holds what the read needs (a segment reference). Returns false if out
     * of memory (READ then holds nothing). */
    bool (*read_prepare)(struct tier *tier, const struct tier_record *record, uint64_t hash,
                         struct tier_read *read);

    /* Allocates the read buffer (charged to the owner's budget; may evict: no lock held)
     * and reads, on the calling thread's io_ring when it has one and ASYNC is set
     * (READ->done runs later on this thread; returns STORE_PENDING), else synchronously
     * (READ->done has run when this returns; returns STORE_OK). Returns an error if the
     * buffer cannot be had or the read cannot be submitted (READ->done does not run). */
    enum store_status (*read_start)(struct tier_read *read, bool async);

    /* Releases what READ holds (segment reference, key copy; the buffer unless done()
     * took it as a block). */
    void (*read_finish)(struct tier_read *read);

    /* Opens a stream over the record READ was prepared for (it keeps its own copy of
     * what it needs and its own references; READ stays the caller's) and reads its head:
     * returns STORE_PENDING (DONE runs with the stream), STORE_OK with *STREAM (read at
     * once: no io_ring, or no DONE), or an error. HELD is handed back in the value (and
     * released through tier_index.release_hold() if the opening fails later). No lock
     * held. */
    enum store_status (*stream_open)(const struct tier_read *read, bool held, store_read_done done,
                                     void *context, struct store_stream **stream);

    /* Fills STATS (the tier's state and its counters). Any thread. */
    void (*get_stats)(struct tier *tier, struct flash_stats *stats);

    /* Stops a recovery still under way (it gives up its scan) and waits for the recovery
     * thread. Returns whether the index was rebuilt whole. */
    bool (*stop_recovery)(struct tier *tier);

    /* Stops the recovery (if still running) and the writer after it has written what is
     * queued; with SAVE_INDEX and a whole index, saves it (visit()) so the next start
     * needs no scan. Frees the tier. */
    void (*close)(struct tier *tier, bool save_index);
};

/* Who owns a tier: given at open, fixed afterwards. */
struct tier_owner {
    const struct tier_index *index; /* the owner's callbacks */
    void *context;                  /* passed to each of them */
    struct store *charged_to;       /* the budget read value blocks count in (value_block.h) */
    /* The owner's count of DRAM bytes queued for demotion (it paces writes on it): the
     * tier adds a demotion's bytes when it queues it, under its own lock, and takes them
     * off once the record is written and applied (item_written()). */
    _Atomic uint64_t *demoting_bytes;
};

/* The part every tier begins with. */
struct tier {
    const struct tier_ops *ops;
    struct tier_owner owner;
    struct tier_counters counters;
};

/* ---- the index's calls (thin wrappers over the ops) --------------------------- */

static inline bool tier_accepts(const struct tier *tier, size_t key_length, uint64_t value_length) {
    return tier->ops->accepts(tier, key_length, value_length);
}
/* Whether the tier takes DRAM item ITEM (of any type: the record carries it). */
static inline bool tier_takes(const struct tier *tier, const struct item *item) {
    return tier->ops->accepts(tier, item->key_length, item->value_length);
}
static inline uint64_t tier_record_size(const struct tier *tier, size_t key_length,
                                        uint64_t value_length) {
    return tier->ops->record_size(key_length, value_length);
}
static inline uint64_t tier_queue_item(struct tier *tier, struct item *item, bool demote) {
    return tier->ops->queue_item(tier, item, demote);
}
static inline uint64_t tier_queue_tombstone(struct tier *tier, const void *key, size_t key_length) {
    return tier->ops->queue_tombstone(tier, key, key_length);
}
static inline void tier_record_dead(struct tier *tier, uint32_t segment, size_t key_length,
                                    uint64_t value_length) {
    tier->ops->record_dead(tier, segment, key_length, value_length);
}
static inline int tier_wait_tickets(struct tier *tier, uint64_t first, uint64_t last) {
    return tier->ops->wait_tickets(tier, first, last);
}
static inline bool tier_write_through(const struct tier *tier) {
    return tier->ops->write_through(tier);
}
static inline bool tier_rewrite_copies(const struct tier *tier) {
    return tier->ops->rewrite_copies(tier);
}
static inline bool tier_on_writer(const struct tier *tier) {
    return tier->ops->on_writer(tier);
}
static inline bool tier_wait_progress(struct tier *tier, int64_t deadline_ms) {
    return tier->ops->wait_progress(tier, deadline_ms);
}
static inline void tier_drain(struct tier *tier) {
    tier->ops->drain(tier);
}
static inline int64_t tier_pace_timeout(const struct tier *tier) {
    return tier->ops->pace_timeout(tier);
}
static inline void tier_set_pace_timeout(struct tier *tier, int64_t milliseconds) {
    tier->ops->set_pace_timeout(tier, milliseconds);
}
static inline bool tier_read_prepare(struct tier *tier, const struct tier_record *record,
                                     uint64_t hash, struct tier_read *read) {
    return tier->ops->read_prepare(tier, record, hash, read);
}
static inline enum store_status tier_read_start(struct tier_read *read, bool async) {
    return read->tier->ops->read_start(read, async);
}
static inline void tier_read_finish(struct tier_read *read) {
    read->tier->ops->read_finish(read);
}
static inline enum store_status tier_stream_open(const struct tier_read *read, bool held,
                                                 store_read_done done, void *context,
                                                 struct store_stream **stream) {
    return read->tier->ops->stream_open(read, held, done, context, stream);
}
static inline void tier_get_stats(struct tier *tier, struct flash_stats *stats) {
    tier->ops->get_stats(tier, stats);
}
static inline bool tier_stop_recovery(struct tier *tier) {
    return tier->ops->stop_recovery(tier);
}
static inline void tier_close(struct tier *tier, bool save_index) {
    tier->ops->close(tier, save_index);
}

#endif
