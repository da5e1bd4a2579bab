/* The DRAM tier's byte budget: charging, settling estimates, and value blocks that
 * enter the budget (see store_internal.h for the rules). */
#include "base/metrics.h"
#include "engine/store_internal.h"

#include <stdlib.h>

/* Adds BYTES to `used` if that stays within the budget. Returns false otherwise. */
bool budget_try_charge(struct store *store, uint64_t bytes) {
    uint64_t used = atomic_load_explicit(&store->used, memory_order_relaxed);
    uint64_t wanted;
    do {
        uint64_t budget = atomic_load_explicit(&store->budget, memory_order_relaxed);
        if (bytes > budget || used > budget - bytes) return false;
        wanted = used + bytes;
    } while (!atomic_compare_exchange_weak_explicit(&store->used, &used, wanted,
                                                    memory_order_relaxed, memory_order_relaxed));
    uint64_t peak = atomic_load_explicit(&store->peak, memory_order_relaxed);
    while (wanted > peak &&
           !atomic_compare_exchange_weak_explicit(&store->peak, &peak, wanted, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
    return true;
}

void budget_uncharge(struct store *store, uint64_t bytes) {
    atomic_fetch_sub_explicit(&store->used, bytes, memory_order_relaxed);
}

void store_memory_uncharge(struct store *store, uint64_t bytes) {
    budget_uncharge(store, bytes);
}

/* Charges BYTES, evicting items until they fit. Must be called with no shard lock
 * held. Returns STORE_OK, STORE_TOO_LARGE_FOR_BUDGET or STORE_NO_MEMORY. */
enum store_status budget_charge(struct store *store, uint64_t bytes) {
    uint64_t budget = atomic_load_explicit(&store->budget, memory_order_relaxed);
    uint64_t fixed = atomic_load_explicit(&store->fixed, memory_order_relaxed);
    if (fixed >= budget || bytes > budget - fixed) return STORE_TOO_LARGE_FOR_BUDGET;
    unsigned fruitless = 0;
    while (!budget_try_charge(store, bytes)) {
        uint32_t index =
            atomic_fetch_add_explicit(&store->eviction_cursor, 1, memory_order_relaxed) %
            store->shard_count;
        if (s3fifo_evict_one(store, &store->shards[index])) {
            fruitless = 0;
        } else if (++fruitless > store->shard_count) {
            metric_add(METRIC_rejected_writes, 1);
            return STORE_NO_MEMORY;
        }
    }
    return STORE_OK;
}

/* Turns a reservation of ESTIMATED bytes into one of ACTUAL bytes. May evict, so no
 * shard lock may be held. On failure the whole reservation is returned. */
enum store_status budget_settle(struct store *store, uint64_t estimated, uint64_t actual) {
    if (actual <= estimated) {
        budget_uncharge(store, estimated - actual);
        return STORE_OK;
    }
    enum store_status status = budget_charge(store, actual - estimated);
    if (status != STORE_OK) budget_uncharge(store, estimated);
    return status;
}

/* Makes sure BLOCK is counted in STORE's budget. Returns STORE_OK or an error (the
 * block is then not charged and still belongs to the caller). */
enum store_status budget_adopt_block(struct store *store, struct value_block *block) {
    if (block->charged_to != NULL) return STORE_OK;
    uint64_t footprint = value_block_footprint(block);
    enum store_status status = budget_charge(store, footprint);
    if (status != STORE_OK) return status;
    block->charged_to = store;
    block->charge = footprint;
    return STORE_OK;
}

/* Creates a charged value block of CAPACITY bytes holding a copy of the LENGTH bytes
 * at DATA. Returns STORE_OK and *block, or an error. */
enum store_status budget_create_block(struct store *store, uint64_t capacity, const void *data,
                                      uint64_t length, struct value_block **block) {
    uint64_t estimate = memory_estimate(sizeof(struct value_block) + capacity);
    enum store_status status = budget_charge(store, estimate);
    if (status != STORE_OK) return status;
    struct value_block *created = value_block_create(capacity);
    if (created == NULL) {
        budget_uncharge(store, estimate);
        return STORE_ALLOCATION_FAILED;
    }
    uint64_t footprint = value_block_footprint(created);
    status = budget_settle(store, estimate, footprint);
    if (status != STORE_OK) {
        value_block_release(created);
        return status;
    }
    created->charged_to = store;
    created->charge = footprint;
    if (length > 0) memcpy(created->data, data, (size_t)length);
    created->length = length;
    *block = created;
    return STORE_OK;
}
