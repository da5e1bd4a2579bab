/* Run-time rule checks (src/base/checks.h): in the checking builds (ASan, TSan) a broken
 * rule aborts with its text; in the release build the checks cost nothing. */
#include "base/checks.h"
#include "engine/store_internal.h"
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs BODY in a child process. Returns true if the child was killed by SIGABRT. */
static bool aborts(void (*body)(struct store *store), struct store *store) {
    fflush(stderr);
    pid_t child = fork();
    if (child == 0) {
        body(store);
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

/* Charging the budget may evict, which takes shard locks: not with one held. */
static void charge_under_a_shard_lock(struct store *store) {
    shard_lock(&store->shards[0]);
    budget_charge(store, 64);
    shard_unlock(&store->shards[0]);
}

/* Index functions are called with their shard locked. */
static void find_without_the_lock(struct store *store) {
    index_find_slot(&store->shards[0], 1, "k", 1);
}

/* The lock order: a shard lock is never taken with a chain table's lock held. */
static void shard_after_chain_lock(struct store *store) {
    pthread_mutex_lock(&store->chains.lock);
    chain_locks_held++;
    shard_lock(&store->shards[0]);
}

static void by_the_rules(struct store *store) {
    shard_lock(&store->shards[0]);
    index_find_slot(&store->shards[0], 1, "k", 1);
    shard_unlock(&store->shards[0]);
    budget_charge(store, 64);
    budget_uncharge(store, 64);
}

static void test_broken_rules_abort_in_checking_builds(void) {
    struct store_config config = {.memory_budget = 8u << 20, .max_value = 1u << 20, .shards = 4};
    char error[128];
    struct store *store = store_create(&config, error, sizeof(error));
    REQUIRE(store != NULL);
    CHECK(!aborts(by_the_rules, store));
    CHECK(aborts(charge_under_a_shard_lock, store) == STRATA_CHECKING);
    CHECK(aborts(find_without_the_lock, store) == STRATA_CHECKING);
    if (STRATA_CHECKING) CHECK(aborts(shard_after_chain_lock, store));
    store_destroy(store);
}

static void test_owners(void) {
    struct check_owner owner = {0};
    CHECK(check_held(&owner) == !STRATA_CHECKING);
    check_acquired(&owner);
    CHECK(check_held(&owner));
    check_releasing(&owner);
    CHECK(check_held(&owner) == !STRATA_CHECKING);
    CHECK(check_thread() != 0 && check_thread() == check_thread());
}

int main(void) {
    RUN_TEST(test_owners);
    RUN_TEST(test_broken_rules_abort_in_checking_builds);
    return test_main_result();
}
