/* Options at run time: a CONFIG SET is one step (swap, check, hook, undo) that another
 * thread's CONFIG SET cannot interleave with. */
#include "base/options.h"
#include "test.h"

#include <pthread.h>
#include <time.h>

struct hook_probe {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int calls;          /* hook calls so far */
    bool first_entered; /* the first call is inside the hook */
    int64_t seen_other; /* a value other than its own that the first call saw */
};

static struct hook_probe probe = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .changed = PTHREAD_COND_INITIALIZER,
};

static void sleep_ms(long milliseconds) {
    struct timespec pause = {.tv_sec = milliseconds / 1000,
                             .tv_nsec = milliseconds % 1000 * 1000000L};
    nanosleep(&pause, NULL);
}

/* The first call announces itself and watches the value in force for 100 ms (time for
 * another thread to try its own change); the second call takes 20 ms and refuses. */
static int hook(struct options *options, enum option_id id, void *context, char *error,
                size_t error_size) {
    (void)context;
    pthread_mutex_lock(&probe.lock);
    int call = ++probe.calls;
    if (call == 1) probe.first_entered = true;
    pthread_cond_broadcast(&probe.changed);
    pthread_mutex_unlock(&probe.lock);
    if (call == 1) {
        int64_t own = options_number(options, id);
        for (int i = 0; i < 100; i++) {
            sleep_ms(1);
            if (options_number(options, id) != own) probe.seen_other = options_number(options, id);
        }
        return 0;
    }
    sleep_ms(20);
    snprintf(error, error_size, "refused");
    return -1;
}

static void *second_change(void *argument) {
    struct options *options = argument;
    pthread_mutex_lock(&probe.lock);
    while (!probe.first_entered)
        pthread_cond_wait(&probe.changed, &probe.lock);
    pthread_mutex_unlock(&probe.lock);
    char error[128];
    CHECK(options_set(options, OPTION_max_clients, "222", true, error, sizeof(error)) != 0);
    return NULL;
}

static void test_changes_do_not_interleave(void) {
    struct options options;
    REQUIRE(options_init(&options) == 0);
    options.on_change = hook;
    pthread_t thread;
    REQUIRE(pthread_create(&thread, NULL, second_change, &options) == 0);
    char error[128];
    CHECK(options_set(&options, OPTION_max_clients, "111", true, error, sizeof(error)) == 0);
    pthread_join(thread, NULL);
    /* The first hook saw its own value throughout, and the refused change left it. */
    CHECK(probe.seen_other == 0);
    CHECK(options_number(&options, OPTION_max_clients) == 111);
    CHECK(probe.calls == 2);
    options_free(&options);
}

int main(void) {
    RUN_TEST(test_changes_do_not_interleave);
    return test_main_result();
}
