/* A reference-counted byte block holding one large value.
 *
 * The RESP parser receives a large argument straight into a block; a SET then hands
 * the block to the store, which adopts it without copying and starts counting it in
 * its memory budget. Items that share a value (COPY, RENAME) share the block. A block
 * is freed, and uncharged from the budget that counts it, when its last reference is
 * released. */
#ifndef STRATA_ENGINE_VALUE_BLOCK_H
#define STRATA_ENGINE_VALUE_BLOCK_H

#include <stdatomic.h>
#include <stdint.h>

struct store;

struct value_block {
    _Atomic uint32_t references;
    uint32_t arrival;         /* value_block_next_arrival() when it was made: when its
                                 value began to arrive (tail-first order, s3fifo.c) */
    void *allocation;         /* the memory to free: NULL means the block itself; a block
                                 read from flash sits inside a larger aligned buffer */
    struct store *charged_to; /* the store whose budget counts this block, or NULL */
    uint64_t charge;          /* bytes charged to that budget */
    uint64_t length;          /* bytes of value in data */
    uint64_t capacity;        /* bytes data can hold */
    unsigned char data[];
};

/* The next number of a process-wide sequence (wrapping at 2^32) that orders writes by
 * when they began: a block takes one when made, a small value when its key is admitted
 * (tail-first order, s3fifo.c). Any thread. */
uint32_t value_block_next_arrival(void);

/* Allocates a block with room for CAPACITY bytes, length 0, one reference, charged to
 * nobody. Returns NULL if the allocation fails (a failed allocation fails the request,
 * never the process). */
struct value_block *value_block_create(uint64_t capacity);

/* Sets up a block in MEMORY, which must be a malloc'd area of at least
 * sizeof(struct value_block) + CAPACITY bytes (freed with the block). Returns it, with
 * one reference, length 0, charged to nobody. */
struct value_block *value_block_init(void *memory, uint64_t capacity);

/* Gives BLOCK, which must have one reference and be charged to nobody (still being
 * filled), room for CAPACITY bytes, keeping its contents. Returns the block, which may
 * have moved, or NULL if the allocation fails (BLOCK is then unchanged). */
struct value_block *value_block_grow(struct value_block *block, uint64_t capacity);

/* Adds a reference. */
void value_block_retain(struct value_block *block);

/* Drops a reference; the last one frees the block and uncharges its budget. */
void value_block_release(struct value_block *block);

/* Bytes the allocator really holds for BLOCK (usable size plus bookkeeping). */
uint64_t value_block_footprint(const struct value_block *block);

#endif
