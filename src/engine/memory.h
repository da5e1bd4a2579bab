/* How the engine measures what it allocates.
 *
 * Every allocation the DRAM tier makes is charged at the size the allocator really
 * reserved (malloc_usable_size) plus ALLOCATION_OVERHEAD bytes for the allocator's own
 * bookkeeping, so the budget holds the process to what it actually uses rather than
 * to the payload bytes. */
#ifndef STRATA_ENGINE_MEMORY_H
#define STRATA_ENGINE_MEMORY_H

#include <malloc.h>
#include <stddef.h>
#include <stdint.h>

/* glibc keeps 8 bytes of header per chunk (16 for mmapped chunks); we charge 16. */
#define ALLOCATION_OVERHEAD 16

/* Bytes charged for an existing allocation. */
static inline uint64_t memory_footprint(void *allocation) {
    return (uint64_t)malloc_usable_size(allocation) + ALLOCATION_OVERHEAD;
}

/* An upper estimate of memory_footprint() for a malloc(SIZE) not yet made, so that a
 * budget can be reserved before the memory is taken. glibc rounds small requests to
 * 16 bytes and serves large ones (128 KiB and more by default) with whole pages. */
static inline uint64_t memory_estimate(uint64_t size) {
    if (size < 128 * 1024) return ((size + 8 + 15) & ~(uint64_t)15) + ALLOCATION_OVERHEAD;
    return ((size + 16 + 4095) & ~(uint64_t)4095) + ALLOCATION_OVERHEAD;
}

struct store;

/* Returns BYTES to STORE's budget (used when a value block charged to it is freed). */
void store_memory_uncharge(struct store *store, uint64_t bytes);

#endif
