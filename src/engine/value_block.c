#include "engine/value_block.h"

#include "base/metrics.h"
#include "engine/memory.h"

#include <stdlib.h>

static _Atomic uint32_t arrivals;

uint32_t value_block_next_arrival(void) {
    return atomic_fetch_add_explicit(&arrivals, 1, memory_order_relaxed);
}

struct value_block *value_block_create(uint64_t capacity) {
    if (capacity > SIZE_MAX - sizeof(struct value_block)) return NULL;
    void *memory = malloc(sizeof(struct value_block) + (size_t)capacity);
    if (memory == NULL) {
        metric_add(METRIC_allocation_failures, 1);
        return NULL;
    }
    return value_block_init(memory, capacity);
}

struct value_block *value_block_init(void *memory, uint64_t capacity) {
    struct value_block *block = memory;
    atomic_init(&block->references, 1);
    block->arrival = value_block_next_arrival();
    block->allocation = NULL;
    block->charged_to = NULL;
    block->charge = 0;
    block->length = 0;
    block->capacity = capacity;
    return block;
}

struct value_block *value_block_grow(struct value_block *block, uint64_t capacity) {
    if (capacity > SIZE_MAX - sizeof(struct value_block)) return NULL;
    struct value_block *grown = realloc(block, sizeof(struct value_block) + (size_t)capacity);
    if (grown == NULL) {
        metric_add(METRIC_allocation_failures, 1);
        return NULL;
    }
    grown->capacity = capacity;
    return grown;
}

void value_block_retain(struct value_block *block) {
    atomic_fetch_add_explicit(&block->references, 1, memory_order_relaxed);
}

void value_block_release(struct value_block *block) {
    if (atomic_fetch_sub_explicit(&block->references, 1, memory_order_acq_rel) != 1) return;
    struct store *store = block->charged_to;
    uint64_t charge = block->charge;
    free(block->allocation != NULL ? block->allocation : block);
    if (store != NULL) store_memory_uncharge(store, charge);
}

uint64_t value_block_footprint(const struct value_block *block) {
    return memory_footprint(block->allocation != NULL ? block->allocation : (void *)block);
}
