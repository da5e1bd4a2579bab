/* How the index's sharding affects throughput: N threads run a 90% GET / 10% SET mix of
 * 100-byte values over 100,000 keys against stores with 1, 16, 256 and 4096 shards.
 * One shard is the same as one global lock; more shards are striped locks, each with
 * its own hash table and eviction queues.
 *
 * Usage: engine_shards [threads] [seconds-per-run]   (defaults: 2 and 8, 2 seconds) */
#include "base/clock.h"
#include "base/metrics.h"
#include "engine/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 100000

struct run {
    struct store *store;
    _Atomic bool stop;
    _Atomic uint64_t operations;
};

struct worker {
    struct run *run;
    unsigned seed;
    pthread_t thread;
};

static void *work(void *argument) {
    struct worker *worker = argument;
    struct run *run = worker->run;
    struct store_write write = {STORE_ALWAYS, STORE_EXPIRY_CLEAR, 0};
    char key[32];
    char value[100];
    memset(value, 'v', sizeof(value));
    unsigned state = worker->seed;
    uint64_t done = 0;
    while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
        for (int i = 0; i < 256; i++) {
            state = state * 1103515245u + 12345u;
            int length = snprintf(key, sizeof(key), "key:%u", (state >> 8) % KEYS);
            if ((state >> 4) % 10 == 0) {
                store_set(run->store, key, (size_t)length, value, sizeof(value), &write, NULL);
            } else {
                struct item *item;
                if (store_get(run->store, key, (size_t)length, &item) == STORE_OK) {
                    item_release(item);
                }
            }
        }
        done += 256;
    }
    atomic_fetch_add(&run->operations, done);
    return NULL;
}

/* Returns operations per second for SHARDS shards and THREADS threads. */
static double measure(unsigned shards, int threads, double seconds) {
    struct store_config config = {
        .memory_budget = 256ULL << 20, .max_value = 1 << 20, .shards = shards};
    char error[256];
    struct run run = {.store = store_create(&config, error, sizeof(error))};
    if (run.store == NULL) {
        fprintf(stderr, "store_create: %s\n", error);
        exit(1);
    }
    struct store_write write = {STORE_ALWAYS, STORE_EXPIRY_CLEAR, 0};
    char key[32], value[100];
    memset(value, 'v', sizeof(value));
    for (unsigned i = 0; i < KEYS; i++) {
        int length = snprintf(key, sizeof(key), "key:%u", i);
        store_set(run.store, key, (size_t)length, value, sizeof(value), &write, NULL);
    }
    struct worker *workers = calloc((size_t)threads, sizeof(*workers));
    int64_t started = clock_monotonic_ns();
    for (int i = 0; i < threads; i++) {
        workers[i].run = &run;
        workers[i].seed = (unsigned)i * 7919u + 1;
        pthread_create(&workers[i].thread, NULL, work, &workers[i]);
    }
    struct timespec pause = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&pause, NULL);
    atomic_store(&run.stop, true);
    for (int i = 0; i < threads; i++)
        pthread_join(workers[i].thread, NULL);
    double elapsed = (double)(clock_monotonic_ns() - started) / 1e9;
    free(workers);
    store_destroy(run.store);
    return (double)atomic_load(&run.operations) / elapsed;
}

int main(int argc, char **argv) {
    double seconds = 2.0;
    int thread_counts[2] = {2, 8};
    int runs = 2;
    if (argc > 1) {
        thread_counts[0] = atoi(argv[1]);
        runs = 1;
    }
    if (argc > 2) seconds = atof(argv[2]);
    const unsigned shard_counts[] = {1, 16, 256, 4096};
    printf("| threads | shards | operations per second |\n|---|---|---|\n");
    for (int r = 0; r < runs; r++) {
        for (size_t s = 0; s < sizeof(shard_counts) / sizeof(shard_counts[0]); s++) {
            double rate = measure(shard_counts[s], thread_counts[r], seconds);
            printf("| %d | %u | %.0f |\n", thread_counts[r], shard_counts[s], rate);
            fflush(stdout);
        }
    }
    metrics_teardown();
    return 0;
}
