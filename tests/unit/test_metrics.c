/* Latency histograms: bucketing, summing across threads, quantiles and reset. */
#include "base/metrics.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>

static void test_buckets_and_quantiles(void) {
    struct histogram_reading reading;
    metric_read_histogram(HISTOGRAM_command_read, &reading);
    CHECK(reading.count == 0);
    CHECK(histogram_quantile_us(&reading, 0.5) == 0);
    /* 90 observations of 5 us (bucket <= 10 us), 10 of 2 ms (bucket 1-2.5 ms) */
    for (int i = 0; i < 90; i++)
        metric_observe(HISTOGRAM_command_read, 5000);
    for (int i = 0; i < 10; i++)
        metric_observe(HISTOGRAM_command_read, 2000000);
    metric_read_histogram(HISTOGRAM_command_read, &reading);
    CHECK(reading.count == 100);
    CHECK(reading.counts[0] == 90);
    CHECK(reading.counts[7] == 10); /* (1000, 2500] us */
    CHECK(reading.sum_ns == 90 * 5000LL + 10 * 2000000LL);
    double p50 = histogram_quantile_us(&reading, 0.50);
    CHECK(p50 > 0 && p50 <= 10);
    double p99 = histogram_quantile_us(&reading, 0.99);
    CHECK(p99 > 1000 && p99 <= 2500);
    /* past the last bound: the overflow bucket, reported as its lower edge */
    metric_observe(HISTOGRAM_command_other, 60LL * 1000 * 1000 * 1000);
    metric_read_histogram(HISTOGRAM_command_other, &reading);
    CHECK(reading.counts[HISTOGRAM_BUCKETS - 1] == 1);
    CHECK(histogram_quantile_us(&reading, 0.5) == 10000000);
    /* other histograms are untouched */
    metric_read_histogram(HISTOGRAM_command_write, &reading);
    CHECK(reading.count == 0);
}

static void *observe_from_a_thread(void *argument) {
    (void)argument;
    for (int i = 0; i < 1000; i++)
        metric_observe(HISTOGRAM_http_request, 30000); /* 30 us: (25, 50] */
    return NULL;
}

static void test_threads_sum_and_reset(void) {
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&threads[i], NULL, observe_from_a_thread, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    struct histogram_reading reading;
    metric_read_histogram(HISTOGRAM_http_request, &reading);
    CHECK(reading.count == 4000);
    CHECK(reading.counts[2] == 4000);
    metrics_reset();
    metric_read_histogram(HISTOGRAM_http_request, &reading);
    CHECK(reading.count == 0);
    CHECK(reading.sum_ns == 0);
    metric_observe(HISTOGRAM_http_request, 30000);
    metric_read_histogram(HISTOGRAM_http_request, &reading);
    CHECK(reading.count == 1 && reading.counts[2] == 1);
}

int main(void) {
    fprintf(stderr, "test_metrics\n");
    RUN_TEST(test_buckets_and_quantiles);
    RUN_TEST(test_threads_sum_and_reset);
    metrics_teardown();
    return test_main_result();
}
