/* Options at run time: a CONFIG SET is one step (swap, check, hook, undo) that another
 * thread's CONFIG SET cannot interleave with. */
#include "base/options.h"
#include "test.h"

#include <pthread.h>
#include <string.h>
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

/* A module's group, declared the way net, the engine and the front ends declare theirs. */
static const struct option_definition test_definitions[] = {
    OPTION_DEFINITION(level, "level", CHOICE, "low", 0, 0, "low|high", 0, "LEVEL", "a choice")
        OPTION_DEFINITION(clients, "clients", INTEGER, "10", 1, 1000, NULL, OPTION_MUTABLE, "N",
                          "a mutable number")};
static struct option_group test_group = {
    .title = "Test",
    .definitions = test_definitions,
    .count = 2,
};
#define CLIENTS option_in_group(&test_group, 1)

static void sleep_ms(long milliseconds) {
    struct timespec pause = {.tv_sec = milliseconds / 1000,
                             .tv_nsec = milliseconds % 1000 * 1000000L};
    nanosleep(&pause, NULL);
}

/* The first call announces itself and watches the value in force for 100 ms (time for
 * another thread to try its own change); the second call takes 20 ms and refuses. */
static int hook(struct options *options, option_id id, void *context, char *error,
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
    CHECK(options_set(options, CLIENTS, "222", true, error, sizeof(error)) != 0);
    return NULL;
}

static void test_changes_do_not_interleave(void) {
    struct options options;
    REQUIRE(options_init(&options) == 0);
    options.on_change = hook;
    pthread_t thread;
    REQUIRE(pthread_create(&thread, NULL, second_change, &options) == 0);
    char error[128];
    CHECK(options_set(&options, CLIENTS, "111", true, error, sizeof(error)) == 0);
    pthread_join(thread, NULL);
    /* The first hook saw its own value throughout, and the refused change left it. */
    CHECK(probe.seen_other == 0);
    CHECK(options_number(&options, CLIENTS) == 111);
    CHECK(probe.calls == 2);
    options_free(&options);
}

/* Groups compose into one table after the base group: names resolve to their rows,
 * defaults apply, and a name taken twice is refused. */
static void test_groups_compose(void) {
    CHECK(test_group.first == OPTION_BASE_COUNT);
    CHECK(options_count() == OPTION_BASE_COUNT + 2);
    CHECK(options_find("clients") == CLIENTS);
    CHECK(options_find("config") == OPTION_config);
    struct options options;
    REQUIRE(options_init(&options) == 0);
    CHECK(options_number(&options, CLIENTS) == 10);
    char text[32];
    CHECK(strcmp(options_format(&options, option_in_group(&test_group, 0), text, sizeof(text)),
                 "low") == 0);
    options_free(&options);
    static const struct option_definition clash[] = {
        OPTION_DEFINITION(again, "clients", INTEGER, "1", 1, 2, NULL, 0, "N", "taken")};
    static struct option_group clashing = {.title = "Clash", .definitions = clash, .count = 1};
    CHECK(options_declare(&clashing) == -1);
    CHECK(options_declare(&test_group) == 0); /* again: harmless */
    CHECK(options_count() == OPTION_BASE_COUNT + 2);
}

int main(void) {
    if (options_declare(&test_group) != 0) return 1;
    RUN_TEST(test_groups_compose);
    RUN_TEST(test_changes_do_not_interleave);
    return test_main_result();
}
