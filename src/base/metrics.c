#include "base/metrics.h"

#include <pthread.h>
#include <stdlib.h>

_Thread_local struct metric_block *metric_thread_block;

static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric_block *blocks;
static _Atomic int64_t baselines[METRIC_COUNT];

static const struct {
    const char *name;
    enum metric_kind kind;
    const char *help;
} table[METRIC_COUNT] = {
#define METRIC(identifier, kind, help) {#identifier, METRIC_##kind, help},
#include "base/metrics.def"
#undef METRIC
};

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
