#include "base/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

_Thread_local struct metric_block *metric_thread_block;

static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric_block *blocks;
static _Atomic int64_t baselines[METRIC_COUNT];
static struct histogram_reading histogram_baselines[HISTOGRAM_COUNT]; /* under blocks_lock */

const int64_t histogram_bounds_us[HISTOGRAM_BUCKETS - 1] = HISTOGRAM_BOUNDS_US;

static const struct {
    const char *name;
    enum metric_kind kind;
    const char *help;
} table[METRIC_COUNT] = {
#define METRIC(identifier, kind, help) {#identifier, METRIC_##kind, help},
#define HISTOGRAM(identifier, help)
#include "base/metrics.def"
#undef HISTOGRAM
#undef METRIC
};

static const struct {
    const char *name;
    const char *help;
} histogram_table[HISTOGRAM_COUNT] = {
#define METRIC(identifier, kind, help)
#define HISTOGRAM(identifier, help) {#identifier, help},
#include "base/metrics.def"
#undef HISTOGRAM
#undef METRIC
};

/* Sums histogram ID over all blocks into READING. Caller holds blocks_lock. */
static void sum_histogram(enum histogram_id id, struct histogram_reading *reading) {
    memset(reading, 0, sizeof(*reading));
    for (struct metric_block *block = blocks; block != NULL; block = block->next) {
        for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
            reading->counts[bucket] +=
                atomic_load_explicit(&block->buckets[id][bucket], memory_order_relaxed);
        }
        reading->sum_ns += atomic_load_explicit(&block->sums_ns[id], memory_order_relaxed);
    }
}

void metric_read_histogram(enum histogram_id id, struct histogram_reading *reading) {
    pthread_mutex_lock(&blocks_lock);
    sum_histogram(id, reading);
    const struct histogram_reading *baseline = &histogram_baselines[id];
    reading->count = 0;
    for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
        reading->counts[bucket] -= baseline->counts[bucket];
        reading->count += reading->counts[bucket];
    }
    reading->sum_ns -= baseline->sum_ns;
    pthread_mutex_unlock(&blocks_lock);
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

const char *histogram_name(enum histogram_id id) {
    return histogram_table[id].name;
}

const char *histogram_help(enum histogram_id id) {
    return histogram_table[id].help;
}

struct metric_block *metric_register_thread(void) {
    struct metric_block *block = calloc(1, sizeof(*block));
    if (block == NULL) return NULL;
    pthread_mutex_lock(&blocks_lock);
    block->next = blocks;
    blocks = block;
    pthread_mutex_unlock(&blocks_lock);
    metric_thread_block = block;
    return block;
}

static int64_t sum(enum metric_id id) {
    int64_t total = 0;
    pthread_mutex_lock(&blocks_lock);
    for (struct metric_block *block = blocks; block != NULL; block = block->next) {
        total += atomic_load_explicit(&block->values[id], memory_order_relaxed);
    }
    pthread_mutex_unlock(&blocks_lock);
    return total;
}

int64_t metric_read(enum metric_id id) {
    int64_t total = sum(id);
    if (table[id].kind == METRIC_COUNTER) {
        total -= atomic_load_explicit(&baselines[id], memory_order_relaxed);
    }
    return total;
}

void metrics_reset(void) {
    for (int id = 0; id < METRIC_COUNT; id++) {
        if (table[id].kind == METRIC_COUNTER) {
            atomic_store_explicit(&baselines[id], sum((enum metric_id)id), memory_order_relaxed);
        }
    }
    pthread_mutex_lock(&blocks_lock);
    for (int id = 0; id < HISTOGRAM_COUNT; id++)
        sum_histogram((enum histogram_id)id, &histogram_baselines[id]);
    pthread_mutex_unlock(&blocks_lock);
}

const char *metric_name(enum metric_id id) {
    return table[id].name;
}

enum metric_kind metric_kind(enum metric_id id) {
    return table[id].kind;
}

const char *metric_help(enum metric_id id) {
    return table[id].help;
}

void metrics_teardown(void) {
    pthread_mutex_lock(&blocks_lock);
    struct metric_block *block = blocks;
    blocks = NULL;
    pthread_mutex_unlock(&blocks_lock);
    while (block != NULL) {
        struct metric_block *next = block->next;
        free(block);
        block = next;
    }
    metric_thread_block = NULL;
}
