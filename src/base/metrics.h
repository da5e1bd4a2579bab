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
#define HISTOGRAM(identifier, help)
#include "base/metrics.def"
#undef HISTOGRAM
#undef METRIC
    METRIC_COUNT
};

enum histogram_id {
#define METRIC(identifier, kind, help)
#define HISTOGRAM(identifier, help) HISTOGRAM_##identifier,
#include "base/metrics.def"
#undef HISTOGRAM
#undef METRIC
    HISTOGRAM_COUNT
};

/* Upper bounds of the histogram buckets in microseconds; a last bucket takes the rest. */
#define HISTOGRAM_BOUNDS_US                                                                        \
    {                                                                                              \
        10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,  \
            1000000, 2500000, 5000000, 10000000                                                    \
    }
#define HISTOGRAM_BUCKETS 20 /* the bounds above, and the overflow bucket */

extern const int64_t histogram_bounds_us[HISTOGRAM_BUCKETS - 1];

struct metric_block {
    struct metric_block *next;
    _Atomic int64_t values[METRIC_COUNT];
    _Atomic int64_t buckets[HISTOGRAM_COUNT][HISTOGRAM_BUCKETS];
    _Atomic int64_t sums_ns[HISTOGRAM_COUNT];
};

/* A histogram as read: per-bucket counts (not cumulative) and the sum of all values. */
struct histogram_reading {
    int64_t counts[HISTOGRAM_BUCKETS];
    int64_t count;
    int64_t sum_ns;
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

/* Adds an observation of NANOSECONDS to a histogram (same threading as metric_add). */
static inline void metric_observe(enum histogram_id id, int64_t nanoseconds) {
    struct metric_block *block = metric_thread_block;
    if (block == NULL && (block = metric_register_thread()) == NULL) return;
    static const int64_t bounds_ns[HISTOGRAM_BUCKETS - 1] = HISTOGRAM_BOUNDS_US;
    int bucket = 0;
    while (bucket < HISTOGRAM_BUCKETS - 1 && nanoseconds > bounds_ns[bucket] * 1000)
        bucket++;
    _Atomic int64_t *slot = &block->buckets[id][bucket];
    atomic_store_explicit(slot, atomic_load_explicit(slot, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    slot = &block->sums_ns[id];
    atomic_store_explicit(slot, atomic_load_explicit(slot, memory_order_relaxed) + nanoseconds,
                          memory_order_relaxed);
}

/* Reads a histogram summed over all threads, less its state at the last metrics_reset(). */
void metric_read_histogram(enum histogram_id id, struct histogram_reading *reading);

/* Estimates the QUANTILE (0..1) of a reading in microseconds, interpolating inside the
 * bucket it falls in. Returns 0 for an empty reading. */
double histogram_quantile_us(const struct histogram_reading *reading, double quantile);

/* The histogram's name and help line from the table. */
const char *histogram_name(enum histogram_id id);
const char *histogram_help(enum histogram_id id);

/* Returns the current value: the sum over all threads, less the value at the last
 * metrics_reset() for counters. */
int64_t metric_read(enum metric_id id);

/* Starts every counter and histogram again from zero (CONFIG RESETSTAT). Gauges are
 * unchanged. */
void metrics_reset(void);

/* The metric's name, kind and help line from the table. */
const char *metric_name(enum metric_id id);
enum metric_kind metric_kind(enum metric_id id);
const char *metric_help(enum metric_id id);

/* Frees every thread's block. Call once, after all threads that used metrics ended. */
void metrics_teardown(void);

#endif
