/* The layout of an item, private to the engine.
 *
 * One allocation holds the header, the key and either the value itself (below
 * STORE_BLOCK_THRESHOLD bytes) or a pointer to the value block holding it. An item's
 * key, value and flags are immutable once it is linked into the index, with one
 * exception made under its shard's lock: an in-place append while nobody else holds a
 * reference. The index's bookkeeping fields (queue links, queue, expiry time and the
 * flash location) change under the shard's lock only and are read under it; a reader
 * holding only a reference uses the key, the value and the flags. */
#ifndef STRATA_ENGINE_ITEM_H
#define STRATA_ENGINE_ITEM_H

#include <stdatomic.h>
#include <stdint.h>

enum item_queue {
    QUEUE_NONE = 0, /* not in the index */
    QUEUE_SMALL,    /* S3-FIFO's probationary queue */
    QUEUE_MAIN,     /* S3-FIFO's main queue */
    QUEUE_DEMOTING, /* chosen for eviction, in no queue: the flash writer is copying it */
};

/* Item flags (struct item.flags), fixed when the item is created, so readers holding only
 * a reference may look at them. */
enum {
    ITEM_EXTERNAL = 1,     /* the value lives in a value block */
    ITEM_DURABLE = 2,      /* class durable: never chosen for eviction or demotion */
    ITEM_FROM_FLASH = 4,   /* built from a record read back from flash */
    ITEM_FOLLOWER = 8,     /* written after another member of its eviction group: it joins
                              the main queue, and leaves with the group (groups.c) */
    ITEM_TYPE_MASK = 0x70, /* bits 4 to 6: the value's enum store_type (0: a string) */
};
#define ITEM_TYPE_SHIFT 4

/* flash_segment of an item whose record is queued for the flash writer. */
#define FLASH_PENDING 0xFFFFFFFFu
/* flash_segment of an item whose record may or may not be on flash (its write, or the
 * sync after it, failed): not a copy to read, but a delete must still leave a tombstone
 * there, and a demotion writes the item again. */
#define FLASH_UNKNOWN 0xFFFFFFFEu

/* The first three fields are shared with struct flash_stub (store_internal.h), which
 * sits in the same bucket chains: bit 31 of key_length tells them apart. */
struct item {
    struct item *hash_next;      /* next in the bucket chain; links a graveyard once unlinked */
    uint32_t hash;               /* low 32 bits of the key's hash */
    uint32_t key_length;         /* bit 31 clear: this is a DRAM item */
    struct item *queue_previous; /* toward the head (newer) of its queue */
    struct item *queue_next;     /* toward the tail (older) of its queue */
    int64_t expire_at_ms;        /* 0: never */
    uint64_t value_length;
    _Atomic uint32_t references; /* the index holds one while linked */
    uint32_t flash_segment;      /* 0: no record on flash; FLASH_PENDING: a record is queued;
                                    FLASH_UNKNOWN: a record may be there; else the segment
                                    holding a copy (changed under the lock) */
    uint32_t flash_offset;       /* where that copy's record starts in its segment */
    _Atomic uint8_t frequency;   /* S3-FIFO access count, 0 to 3; set without a lock */
    uint8_t queue;               /* enum item_queue; changed under the shard lock */
    uint8_t flags;               /* ITEM_*; set at creation, never changed afterwards */
    uint8_t store_id;            /* which store's budget counts this item; never changes */
    unsigned char bytes[];       /* key, then the value or a struct value_block pointer */
};

/* Adds a reference to ITEM (the holder already has one, or holds its shard lock while
 * it is linked). Released with item_release() (store.h). */
static inline void item_retain(struct item *item) {
    atomic_fetch_add_explicit(&item->references, 1, memory_order_relaxed);
}

/* Bytes an item stands for in its queue's share of the shard (and while it is queued
 * for demotion). */
static inline uint64_t queue_weight(const struct item *item) {
    return sizeof(struct item) + item->key_length + item->value_length;
}

#endif
