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
    uint64_t debt = atomic_load_explicit(&store->charge_debt, memory_order_relaxed);
    while (debt > 0) {
        /* Settle owed bytes first: they stay in `used` instead of leaving it. */
        uint64_t settled = debt < bytes ? debt : bytes;
        if (atomic_compare_exchange_weak_explicit(&store->charge_debt, &debt, debt - settled,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            bytes -= settled;
            break;
        }
    }
    if (bytes > 0) atomic_fetch_sub_explicit(&store->used, bytes, memory_order_relaxed);
}

void budget_charge_or_owe(struct store *store, uint64_t bytes) {
    if (!budget_try_charge(store, bytes)) {
        atomic_fetch_add_explicit(&store->charge_debt, bytes, memory_order_relaxed);
    }
}

void store_memory_uncharge(struct store *store, uint64_t bytes) {
    budget_uncharge(store, bytes);
}

/* With a flash tier, evicted items leave DRAM only once the writer has copied them.
 * When the bytes already on their way to flash would make room for BYTES, waits for the
 * writer instead of choosing more victims. Returns STORE_OK to go on choosing (or to
 * try again), or STORE_FLASH_BUSY past the pacing deadline (*DEADLINE_MS, set on the
 * first wait, 0 before). */
static enum store_status pace(struct store *store, uint64_t bytes, int64_t *deadline_ms) {
    uint64_t used = atomic_load_explicit(&store->used, memory_order_relaxed);
    uint64_t budget = atomic_load_explicit(&store->budget, memory_order_relaxed);
    uint64_t excess = used + bytes > budget ? used + bytes - budget : 0;
    uint64_t coming = atomic_load_explicit(&store->demoting_bytes, memory_order_relaxed);
    if (coming == 0 || coming < excess) return STORE_OK;
    struct tier_counters *counters = &store->tier->counters;
    if (*deadline_ms == 0) {
        *deadline_ms = clock_monotonic_ms() + tier_pace_timeout(store->tier);
        atomic_fetch_add_explicit(&counters->paced_writes, 1, memory_order_relaxed);
    }
    if (!tier_wait_progress(store->tier, *deadline_ms) && clock_monotonic_ms() >= *deadline_ms) {
        atomic_fetch_add_explicit(&counters->pace_timeouts, 1, memory_order_relaxed);
        return STORE_FLASH_BUSY;
    }
    return STORE_PENDING; /* the writer moved: try to charge again */
}

/* Charges BYTES, evicting items until they fit (with a flash tier, paced by its writer).
 * Must be called with no shard lock held. Returns STORE_OK, STORE_TOO_LARGE_FOR_BUDGET,
 * STORE_NO_MEMORY or STORE_FLASH_BUSY. */
enum store_status budget_charge(struct store *store, uint64_t bytes) {
    ASSERT_NO_SHARD_LOCK(); /* it may evict */
    /* It may wait for the writer: never on the writer itself. */
    STRATA_ASSERT(store->tier == NULL || !tier_on_writer(store->tier));
    uint64_t budget = atomic_load_explicit(&store->budget, memory_order_relaxed);
    uint64_t fixed = atomic_load_explicit(&store->fixed, memory_order_relaxed);
    if (fixed >= budget || bytes > budget - fixed) return STORE_TOO_LARGE_FOR_BUDGET;
    unsigned fruitless = 0;
    int64_t deadline_ms = 0;
    while (!budget_try_charge(store, bytes)) {
        if (store->tier != NULL) {
            enum store_status paced = pace(store, bytes, &deadline_ms);
            if (paced == STORE_FLASH_BUSY) {
                atomic_fetch_add_explicit(&store->rejected_writes, 1, memory_order_relaxed);
                return paced;
            }
            if (paced == STORE_PENDING) continue;
        }
        enum eviction_source source;
        uint32_t index = s3fifo_eviction_shard(store, fruitless > 0, &source);
        if (s3fifo_evict_one(store, &store->shards[index], source)) {
            fruitless = 0;
        } else if (++fruitless > store->shard_count) {
            if (store->tier != NULL &&
                atomic_load_explicit(&store->demoting_bytes, memory_order_relaxed) > 0) {
                /* Nothing left to choose, but the writer is still freeing memory. */
                struct tier_counters *counters = &store->tier->counters;
                if (deadline_ms == 0) {
                    deadline_ms = clock_monotonic_ms() + tier_pace_timeout(store->tier);
                    atomic_fetch_add_explicit(&counters->paced_writes, 1, memory_order_relaxed);
                }
                if (tier_wait_progress(store->tier, deadline_ms) ||
                    clock_monotonic_ms() < deadline_ms) {
                    fruitless = 0;
                    continue;
                }
                atomic_fetch_add_explicit(&counters->pace_timeouts, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&store->rejected_writes, 1, memory_order_relaxed);
                return STORE_FLASH_BUSY;
            }
            atomic_fetch_add_explicit(&store->rejected_writes, 1, memory_order_relaxed);
            return STORE_NO_MEMORY;
        }
    }
    return STORE_OK;
}

void *budget_allocate(struct store *store, size_t size, bool zeroed, bool may_evict,
                      enum store_status *status) {
    /* Reserve an upper estimate first, so the process never holds memory the budget
     * has not granted; then settle on the size the allocator really reserved. */
    uint64_t estimate = memory_estimate(size);
    STRATA_ASSERT(!may_evict || shard_locks_held == 0);
    if (may_evict) {
        *status = budget_charge(store, estimate);
    } else {
        *status = budget_try_charge(store, estimate) ? STORE_OK : STORE_NO_MEMORY;
    }
    if (*status != STORE_OK) return NULL;
    void *memory = zeroed ? calloc(1, size) : malloc(size);
    if (memory == NULL) {
        metric_add(METRIC_allocation_failures, 1);
        budget_uncharge(store, estimate);
        *status = STORE_ALLOCATION_FAILED;
        return NULL;
    }
    uint64_t footprint = memory_footprint(memory);
    if (footprint <= estimate) {
        budget_uncharge(store, estimate - footprint);
        return memory;
    }
    if (may_evict) {
        *status = budget_charge(store, footprint - estimate);
    } else {
        *status = budget_try_charge(store, footprint - estimate) ? STORE_OK : STORE_NO_MEMORY;
    }
    if (*status != STORE_OK) {
        budget_uncharge(store, estimate);
        free(memory);
        return NULL;
    }
    return memory;
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
    enum store_status status;
    void *memory =
        budget_allocate(store, sizeof(struct value_block) + (size_t)capacity, false, true, &status);
    if (memory == NULL) return status;
    struct value_block *created = value_block_init(memory, capacity);
    created->charged_to = store;
    created->charge = memory_footprint(memory);
    if (length > 0) memcpy(created->data, data, (size_t)length);
    created->length = length;
    *block = created;
    return STORE_OK;
}
