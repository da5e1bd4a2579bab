/* A minimal unit test harness: CHECK records a failure and goes on, REQUIRE records
 * one and leaves the test function, RUN_TEST runs one, and test_main_result() gives
 * the process exit status. */
#ifndef STRATA_TESTS_UNIT_TEST_H
#define STRATA_TESTS_UNIT_TEST_H

#include <stdio.h>

static int test_failures;
static int test_checks;

#define CHECK(condition)                                                                           \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition);          \
            test_failures++;                                                                       \
        }                                                                                          \
    } while (0)

#define REQUIRE(condition)                                                                         \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #condition);        \
            test_failures++;                                                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define RUN_TEST(function)                                                                         \
    do {                                                                                           \
        int failures_before = test_failures;                                                       \
        function();                                                                                \
        fprintf(stderr, "  %-48s %s\n", #function,                                                 \
                test_failures == failures_before ? "ok" : "FAILED");                               \
    } while (0)

static inline int test_main_result(void) {
    fprintf(stderr, "%d checks, %d failures\n", test_checks, test_failures);
    return test_failures == 0 ? 0 : 1;
}

#endif
