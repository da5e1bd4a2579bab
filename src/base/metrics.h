/* Process-wide counters and gauges from the table in metrics.def.
 *
 * Each thread adds into its own block of slots, so the hot path is a plain load and
 * store with no shared cache line; a reader sums the blocks of all threads. */
#ifndef STRATA_BASE_METRICS_H
#define STRATA_BASE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum metric_kind { METRIC_COUNTER, METRIC_GAUGE };

enum metric_id {
#define METRIC(identifier, kind, help) METRIC_##identifier,
#include "base/metrics.def"
#undef METRIC
    METRIC_COUNT
};

struct metric_block {
    struct metric_block *next;
    _Atomic int64_t values[METRIC_COUNT];
};

extern _Thread_local struct metric_block *metric_thread_block;

/* Registers a block for the calling thread. Returns it, or NULL if out of memory
 * (the update is then dropped: metrics never fail a request). */
struct metric_block *metric_register_thread(void);

/* Adds DELTA (may be negative for gauges) to a metric. Only the calling thread writes
 * its block, so a relaxed load and store suffice. */
static inline void metric_add(enum metric_id id, int64_t delta) {
    struct metric_block *block = metric_thread_block;
    if (block == NULL && (block = metric_register_thread()) == NULL) return;
    atomic_store_explicit(&block->values[id],
                          atomic_load_explicit(&block->values[id], memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

/* Returns the current value: the sum over all threads, less the value at the last
 * metrics_reset() for counters. */
int64_t metric_read(enum metric_id id);

/* Starts every counter again from zero (CONFIG RESETSTAT). Gauges are unchanged. */
void metrics_reset(void);

/* The metric's name, kind and help line from the table. */
const char *metric_name(enum metric_id id);
enum metric_kind metric_kind(enum metric_id id);
const char *metric_help(enum metric_id id);

/* Frees every thread's block. Call once, after all threads that used metrics ended. */
void metrics_teardown(void);

#endif
