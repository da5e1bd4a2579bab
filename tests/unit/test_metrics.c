/* Latency histograms: bucketing, summing across threads, quantiles and reset. */
#include "base/metrics.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* A module's group, declared the way net and the front ends declare theirs. */
static const struct metric_definition test_metric_definitions[] = {
    METRIC_DEFINITION(events, COUNTER, "events"){NULL, METRIC_COUNTER, NULL},
};
static const struct histogram_definition test_histogram_definitions[] = {
    HISTOGRAM_DEFINITION(read, "test_seconds", "class=\"read\"", "read", "reads")
        HISTOGRAM_DEFINITION(write, "test_seconds", "class=\"write\"", "write", "writes")
            HISTOGRAM_DEFINITION(other, "test_seconds", "class=\"other\"", "other", "others")
                HISTOGRAM_DEFINITION(request, "test_request_seconds", "", "request",
                                     "requests"){NULL, NULL, NULL, NULL, NULL},
};
static struct metric_group test_group = {
    .name = "test",
    .metrics = test_metric_definitions,
    .histograms = test_histogram_definitions,
};
#define HISTOGRAM(index) (test_group.first_histogram + (index))

static void test_buckets_and_quantiles(void) {
    struct histogram_reading reading;
    metric_read_histogram(HISTOGRAM(0), &reading);
    CHECK(reading.count == 0);
    CHECK(histogram_quantile_us(&reading, 0.5) == 0);
    /* 90 observations of 5 us (bucket <= 10 us), 10 of 2 ms (bucket 1-2.5 ms) */
    for (int i = 0; i < 90; i++)
        metric_observe(HISTOGRAM(0), 5000);
    for (int i = 0; i < 10; i++)
        metric_observe(HISTOGRAM(0), 2000000);
    metric_read_histogram(HISTOGRAM(0), &reading);
    CHECK(reading.count == 100);
    CHECK(reading.counts[0] == 90);
    CHECK(reading.counts[7] == 10); /* (1000, 2500] us */
    CHECK(reading.sum_ns == 90 * 5000LL + 10 * 2000000LL);
    double p50 = histogram_quantile_us(&reading, 0.50);
    CHECK(p50 > 0 && p50 <= 10);
    double p99 = histogram_quantile_us(&reading, 0.99);
    CHECK(p99 > 1000 && p99 <= 2500);
    /* past the last bound: the overflow bucket, reported as its lower edge */
    metric_observe(HISTOGRAM(2), 60LL * 1000 * 1000 * 1000);
    metric_read_histogram(HISTOGRAM(2), &reading);
    CHECK(reading.counts[HISTOGRAM_BUCKETS - 1] == 1);
    CHECK(histogram_quantile_us(&reading, 0.5) == 10000000);
    /* other histograms are untouched */
    metric_read_histogram(HISTOGRAM(1), &reading);
    CHECK(reading.count == 0);
}

static void *observe_from_a_thread(void *argument) {
    (void)argument;
    for (int i = 0; i < 1000; i++)
        metric_observe(HISTOGRAM(3), 30000); /* 30 us: (25, 50] */
    return NULL;
}

static void test_threads_sum_and_reset(void) {
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&threads[i], NULL, observe_from_a_thread, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    struct histogram_reading reading;
    metric_read_histogram(HISTOGRAM(3), &reading);
    CHECK(reading.count == 4000);
    CHECK(reading.counts[2] == 4000);
    metrics_reset();
    metric_read_histogram(HISTOGRAM(3), &reading);
    CHECK(reading.count == 0);
    CHECK(reading.sum_ns == 0);
    metric_observe(HISTOGRAM(3), 30000);
    metric_read_histogram(HISTOGRAM(3), &reading);
    CHECK(reading.count == 1 && reading.counts[2] == 1);
}

int main(void) {
    fprintf(stderr, "test_metrics\n");
    if (metrics_declare(&test_group) != 0) return 1;
    CHECK(test_group.first_metric == METRIC_BASE_COUNT && histograms_count() == 4);
    CHECK(strcmp(histogram_definition(HISTOGRAM(3))->family, "test_request_seconds") == 0);
    RUN_TEST(test_buckets_and_quantiles);
    RUN_TEST(test_threads_sum_and_reset);
    metrics_teardown();
    return test_main_result();
}
