/* Process-wide counters, gauges and latency histograms, declared by each module in a
 * .def file beside it (struct metric_group) and composed into one table.
 *
 * Each thread adds into its own block of slots, so the hot path is a plain load and
 * store with no shared cache line; a reader sums the blocks of all threads. */
#ifndef STRATA_BASE_METRICS_H
#define STRATA_BASE_METRICS_H

#include "base/checks.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metric_kind { METRIC_COUNTER, METRIC_GAUGE };

/* A metric's or histogram's identifier: its place in the composed table. The base group
 * (base/metrics.def) is always first, so its identifiers are constants; a module's are
 * its group's first_metric / first_histogram plus the row's place in its own .def file
 * (see NET_METRIC() in net/net.h for the pattern). */
typedef int metric_id;
typedef int histogram_id;

/* The base group: the counters every room needs. */
enum {
#define METRIC(identifier, kind, help) METRIC_##identifier,
#define HISTOGRAM(identifier, family, labels, info_name, help)
#include "base/metrics.def"
#undef HISTOGRAM
#undef METRIC
    METRIC_BASE_COUNT
};

/* Most metrics and histograms the composed table holds, all groups together. */
#define METRICS_CAPACITY    64
#define HISTOGRAMS_CAPACITY 16

/* One METRIC row of a .def file. */
struct metric_definition {
    const char *name; /* also INFO's and /metrics' name for it (stats.def maps it) */
    enum metric_kind kind;
    const char *help;
};

/* One HISTOGRAM row: how the distribution appears in /metrics and INFO. */
struct histogram_definition {
    const char *name;      /* the identifier */
    const char *family;    /* its Prometheus family ("strata_command_duration_seconds") */
    const char *labels;    /* its labels in that family ("class=\"read\""), or "" */
    const char *info_name; /* INFO's latency_NAME_* fields */
    const char *help;      /* the family's HELP line */
};

/* Expand .def rows into the definitions above (a module builds two arrays, each ended
 * by an all-NULL row, so that a group with no histograms still has an array). */
#define METRIC_DEFINITION(identifier, kind, help) {#identifier, METRIC_##kind, help},
#define HISTOGRAM_DEFINITION(identifier, family, labels, info_name, help)                          \
    {#identifier, family, labels, info_name, help},

/* A module's metrics, declared beside it and composed into the one table INFO and
 * /metrics read. */
struct metric_group {
    const char *name;
    const struct metric_definition *metrics;       /* ended by a row with a NULL name */
    const struct histogram_definition *histograms; /* ended by a row with a NULL name */
    int first_metric;                              /* set by metrics_declare() */
    int first_histogram;                           /* set by metrics_declare() */
    bool declared; /* set by metrics_declare(): until then the firsts mean nothing */
};

/* The identifiers of a group's metric or histogram number INDEX in the composed table
 * (the group must have been declared: checked in the sanitizer builds). */
static inline metric_id metric_in_group(const struct metric_group *group, int index) {
    STRATA_ASSERT(group->declared);
    return group->first_metric + index;
}
static inline histogram_id histogram_in_group(const struct metric_group *group, int index) {
    STRATA_ASSERT(group->declared);
    return group->first_histogram + index;
}

/* Adds GROUP to the table (start-up, one thread, before any metric is updated).
 * Declaring a group twice is harmless. Returns 0, or -1 if the table is full (a
 * programming error: the caller stops). */
int metrics_declare(struct metric_group *group);

/* The identifier of the metric or histogram called NAME (its .def identifier), or -1:
 * how a room that may not include the declaring module's header (observe/) names it. */
metric_id metric_find(const char *name);
histogram_id histogram_find(const char *name);

/* How many metrics and histograms the table holds now. */
int metrics_count(void);
int histograms_count(void);

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
    _Atomic int64_t values[METRICS_CAPACITY];
    _Atomic int64_t buckets[HISTOGRAMS_CAPACITY][HISTOGRAM_BUCKETS];
    _Atomic int64_t sums_ns[HISTOGRAMS_CAPACITY];
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
static inline void metric_add(metric_id id, int64_t delta) {
    struct metric_block *block = metric_thread_block;
    if (block == NULL && (block = metric_register_thread()) == NULL) return;
    atomic_store_explicit(&block->values[id],
                          atomic_load_explicit(&block->values[id], memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

/* Adds an observation of NANOSECONDS to a histogram (same threading as metric_add). */
static inline void metric_observe(histogram_id id, int64_t nanoseconds) {
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
void metric_read_histogram(histogram_id id, struct histogram_reading *reading);

/* Estimates the QUANTILE (0..1) of a reading in microseconds, interpolating inside the
 * bucket it falls in. Returns 0 for an empty reading. */
double histogram_quantile_us(const struct histogram_reading *reading, double quantile);

/* The histogram's row in the table. */
const struct histogram_definition *histogram_definition(histogram_id id);

/* Returns the current value: the sum over all threads, less the value at the last
 * metrics_reset() for counters. */
int64_t metric_read(metric_id id);

/* Starts every counter and histogram again from zero (CONFIG RESETSTAT). Gauges are
 * unchanged. */
void metrics_reset(void);

/* The metric's name, kind and help line from the table. */
const char *metric_name(metric_id id);
enum metric_kind metric_kind(metric_id id);
const char *metric_help(metric_id id);

/* Frees every thread's block. Call once, after all threads that used metrics ended. */
void metrics_teardown(void);

#endif
