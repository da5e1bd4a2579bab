#include "base/metrics.h"

#include "base/checks.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

_Thread_local struct metric_block *metric_thread_block;

static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct check_owner blocks_owner; /* who holds blocks_lock (checking builds) */
static struct metric_block *blocks;
static _Atomic int64_t baselines[METRICS_CAPACITY];
static struct histogram_reading histogram_baselines[HISTOGRAMS_CAPACITY]; /* under blocks_lock */

const int64_t histogram_bounds_us[HISTOGRAM_BUCKETS - 1] = HISTOGRAM_BOUNDS_US;

static const struct metric_definition base_metrics[] = {
#define METRIC    METRIC_DEFINITION
#define HISTOGRAM HISTOGRAM_DEFINITION
#include "base/metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, METRIC_COUNTER, NULL},
};

static const struct histogram_definition no_histograms[] = {{NULL, NULL, NULL, NULL, NULL}};

static struct metric_group base_group = {
    .name = "base",
    .metrics = base_metrics,
    .histograms = no_histograms,
};

/* The composed table: every declared group's rows in the order declared, the base
 * group first. Written only at start-up, before the threads that update metrics run. */
static const struct metric_definition *table[METRICS_CAPACITY];
static int table_count;
static const struct histogram_definition *histogram_table[HISTOGRAMS_CAPACITY];
static int histogram_count;
static struct metric_group *groups[METRICS_CAPACITY];
static int group_count;

int metrics_declare(struct metric_group *group) {
    if (group != &base_group && group_count == 0 && metrics_declare(&base_group) != 0) return -1;
    for (int i = 0; i < group_count; i++) {
        if (groups[i] == group) return 0;
    }
    int metric_rows = 0, histogram_rows = 0;
    while (group->metrics[metric_rows].name != NULL)
        metric_rows++;
    while (group->histograms[histogram_rows].name != NULL)
        histogram_rows++;
    if (table_count + metric_rows > METRICS_CAPACITY ||
        histogram_count + histogram_rows > HISTOGRAMS_CAPACITY || group_count == METRICS_CAPACITY)
        return -1;
    for (int row = 0; row < metric_rows; row++) {
        if (metric_find(group->metrics[row].name) >= 0) return -1;
    }
    for (int row = 0; row < histogram_rows; row++) {
        if (histogram_find(group->histograms[row].name) >= 0) return -1;
    }
    group->first_metric = table_count;
    group->first_histogram = histogram_count;
    for (int row = 0; row < metric_rows; row++)
        table[table_count++] = &group->metrics[row];
    for (int row = 0; row < histogram_rows; row++)
        histogram_table[histogram_count++] = &group->histograms[row];
    groups[group_count++] = group;
    group->declared = true;
    return 0;
}

metric_id metric_find(const char *name) {
    for (int id = 0; id < table_count; id++) {
        if (strcmp(table[id]->name, name) == 0) return id;
    }
    return -1;
}

histogram_id histogram_find(const char *name) {
    for (int id = 0; id < histogram_count; id++) {
        if (strcmp(histogram_table[id]->name, name) == 0) return id;
    }
    return -1;
}

int metrics_count(void) {
    if (group_count == 0) metrics_declare(&base_group);
    return table_count;
}

int histograms_count(void) {
    if (group_count == 0) metrics_declare(&base_group);
    return histogram_count;
}

/* Takes and lets go of blocks_lock, recording the holder for the rule checks. */
static void lock_blocks(void) {
    pthread_mutex_lock(&blocks_lock);
    check_acquired(&blocks_owner);
}

static void unlock_blocks(void) {
    check_releasing(&blocks_owner);
    pthread_mutex_unlock(&blocks_lock);
}

/* Sums histogram ID over all blocks into READING. Caller holds blocks_lock. */
static void sum_histogram(histogram_id id, struct histogram_reading *reading) {
    STRATA_ASSERT(check_held(&blocks_owner));
    memset(reading, 0, sizeof(*reading));
    for (struct metric_block *block = blocks; block != NULL; block = block->next) {
        for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
            reading->counts[bucket] +=
                atomic_load_explicit(&block->buckets[id][bucket], memory_order_relaxed);
        }
        reading->sum_ns += atomic_load_explicit(&block->sums_ns[id], memory_order_relaxed);
    }
}

void metric_read_histogram(histogram_id id, struct histogram_reading *reading) {
    lock_blocks();
    sum_histogram(id, reading);
    const struct histogram_reading *baseline = &histogram_baselines[id];
    reading->count = 0;
    for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
        reading->counts[bucket] -= baseline->counts[bucket];
        reading->count += reading->counts[bucket];
    }
    reading->sum_ns -= baseline->sum_ns;
    unlock_blocks();
}

double histogram_quantile_us(const struct histogram_reading *reading, double quantile) {
    if (reading->count <= 0) return 0;
    double rank = quantile * (double)reading->count;
    double seen = 0;
    for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
        double in_bucket = (double)reading->counts[bucket];
        if (in_bucket > 0 && seen + in_bucket >= rank) {
            double low = bucket == 0 ? 0 : (double)histogram_bounds_us[bucket - 1];
            if (bucket == HISTOGRAM_BUCKETS - 1) return low;
            double high = (double)histogram_bounds_us[bucket];
            return low + (high - low) * ((rank - seen) / in_bucket);
        }
        seen += in_bucket;
    }
    return (double)histogram_bounds_us[HISTOGRAM_BUCKETS - 2];
}

const struct histogram_definition *histogram_definition(histogram_id id) {
    return histogram_table[id];
}

struct metric_block *metric_register_thread(void) {
    struct metric_block *block = calloc(1, sizeof(*block));
    if (block == NULL) return NULL;
    lock_blocks();
    block->next = blocks;
    blocks = block;
    unlock_blocks();
    metric_thread_block = block;
    return block;
}

static int64_t sum(metric_id id) {
    int64_t total = 0;
    lock_blocks();
    for (struct metric_block *block = blocks; block != NULL; block = block->next) {
        total += atomic_load_explicit(&block->values[id], memory_order_relaxed);
    }
    unlock_blocks();
    return total;
}

int64_t metric_read(metric_id id) {
    int64_t total = sum(id);
    if (table[id]->kind == METRIC_COUNTER) {
        total -= atomic_load_explicit(&baselines[id], memory_order_relaxed);
    }
    return total;
}

void metrics_reset(void) {
    for (int id = 0; id < table_count; id++) {
        if (table[id]->kind == METRIC_COUNTER) {
            atomic_store_explicit(&baselines[id], sum(id), memory_order_relaxed);
        }
    }
    lock_blocks();
    for (int id = 0; id < histogram_count; id++)
        sum_histogram(id, &histogram_baselines[id]);
    unlock_blocks();
}

const char *metric_name(metric_id id) {
    return table[id]->name;
}

enum metric_kind metric_kind(metric_id id) {
    return table[id]->kind;
}

const char *metric_help(metric_id id) {
    return table[id]->help;
}

void metrics_teardown(void) {
    lock_blocks();
    struct metric_block *block = blocks;
    blocks = NULL;
    unlock_blocks();
    while (block != NULL) {
        struct metric_block *next = block->next;
        free(block);
        block = next;
    }
    metric_thread_block = NULL;
}
