/* Unit tests of the engine: the index, expiry, the budget and S3-FIFO eviction. */
#include "base/clock.h"
#include "base/metrics.h"
#include "engine/store.h"
#include "engine/store_internal.h"
#include "engine/value_block.h"
#include "test.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct store *make_store(uint64_t budget) {
    struct store_config config = {.memory_budget = budget, .max_value = 64ULL << 20};
    char error[256];
    struct store *store = store_create(&config, error, sizeof(error));
    if (store == NULL) fprintf(stderr, "store_create: %s\n", error);
    return store;
}

static const struct store_write plain_write = {
    .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_CLEAR, .expire_at_ms = 0};

static enum store_status put(struct store *store, const char *key, const char *value) {
    return store_set(store, key, strlen(key), value, strlen(value), &plain_write, NULL);
}

/* Returns true when KEY holds exactly VALUE (LENGTH bytes). */
static bool holds(struct store *store, const void *key, size_t key_length, const void *value,
                  size_t length) {
    struct item *item;
    if (store_get(store, key, key_length, &item) != STORE_OK) return false;
    bool same = item_value_length(item) == length && memcmp(item_value(item), value, length) == 0;
    item_release(item);
    return same;
}

static bool holds_text(struct store *store, const char *key, const char *value) {
    return holds(store, key, strlen(key), value, strlen(value));
}

static void sleep_ms(long milliseconds) {
    struct timespec pause = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Stores KEY with an expiry MARGIN_MS from now and returns that time, once the store
 * reports the key live with it (a short margin can pass before the write lands when the
 * thread is descheduled on a loaded machine: the margin doubles up to 12.8 s until it
 * does). Returns 0 if it never did. */
static int64_t set_expiring_soon(struct store *store, const char *key, int64_t margin_ms) {
    for (; margin_ms <= 12800; margin_ms *= 2) {
        int64_t expire_at = clock_realtime_ms() + margin_ms;
        struct store_write soon = {
            .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_SET, .expire_at_ms = expire_at};
        if (store_set(store, key, strlen(key), "v", 1, &soon, NULL) != STORE_OK) return 0;
        int64_t stored = 0;
        if (store_get_expiry(store, key, strlen(key), &stored) == STORE_OK && stored == expire_at)
            return expire_at;
    }
    return 0;
}

/* Sleeps until the real-time clock has passed TIME (ms). */
static void sleep_past(int64_t time) {
    while (clock_realtime_ms() <= time)
        sleep_ms(10);
}

static void test_set_get_delete(void) {
    struct store *store = make_store(64ULL << 20);
    REQUIRE(store != NULL);
    CHECK(put(store, "alpha", "one") == STORE_OK);
    CHECK(holds_text(store, "alpha", "one"));
    CHECK(put(store, "alpha", "two") == STORE_OK);
    CHECK(holds_text(store, "alpha", "two"));
    CHECK(store_count(store) == 1);

    /* Binary keys and values, the empty key and the empty value. */
    const unsigned char binary_key[] = {0, '\r', '\n', 0xff, 0};
    const unsigned char binary_value[] = {'\r', '\n', 0, 0, 0x80};
    CHECK(store_set(store, binary_key, sizeof(binary_key), binary_value, sizeof(binary_value),
                    &plain_write, NULL) == STORE_OK);
    CHECK(holds(store, binary_key, sizeof(binary_key), binary_value, sizeof(binary_value)));
    CHECK(store_set(store, "", 0, "", 0, &plain_write, NULL) == STORE_OK);
    CHECK(holds(store, "", 0, "", 0));
    CHECK(store_count(store) == 3);

    struct item *removed = NULL;
    CHECK(store_delete(store, "alpha", 5, &removed) == STORE_OK);
    REQUIRE(removed != NULL);
    CHECK(item_value_length(removed) == 3 && memcmp(item_value(removed), "two", 3) == 0);
    item_release(removed);
    CHECK(store_delete(store, "alpha", 5, NULL) == STORE_NOT_FOUND);
    CHECK(!store_exists(store, "alpha", 5));
    CHECK(store_count(store) == 2);

    /* Size limits. */
    static char big_key[STORE_MAX_KEY_LENGTH + 1];
    CHECK(store_set(store, big_key, sizeof(big_key), "v", 1, &plain_write, NULL) ==
          STORE_KEY_TOO_LARGE);
    CHECK(store_set(store, big_key, STORE_MAX_KEY_LENGTH, "v", 1, &plain_write, NULL) == STORE_OK);
    store_set_max_value(store, 10);
    CHECK(store_set(store, "k", 1, "01234567890", 11, &plain_write, NULL) == STORE_VALUE_TOO_LARGE);
    CHECK(!store_exists(store, "k", 1));
    store_destroy(store);
}

static void test_conditions(void) {
    struct store *store = make_store(64ULL << 20);
    REQUIRE(store != NULL);
    struct store_write if_absent = {
        .condition = STORE_IF_ABSENT, .expiry = STORE_EXPIRY_CLEAR, .expire_at_ms = 0};
    struct store_write if_present = {
        .condition = STORE_IF_PRESENT, .expiry = STORE_EXPIRY_CLEAR, .expire_at_ms = 0};
    struct item *previous = (struct item *)1;
    CHECK(store_set(store, "k", 1, "a", 1, &if_present, &previous) == STORE_CONDITION_FAILED);
    CHECK(previous == NULL);
    CHECK(store_set(store, "k", 1, "a", 1, &if_absent, &previous) == STORE_OK);
    CHECK(previous == NULL);
    CHECK(store_set(store, "k", 1, "b", 1, &if_absent, &previous) == STORE_CONDITION_FAILED);
    REQUIRE(previous != NULL);
    CHECK(memcmp(item_value(previous), "a", 1) == 0);
    item_release(previous);
    CHECK(store_set(store, "k", 1, "c", 1, &if_present, &previous) == STORE_OK);
    REQUIRE(previous != NULL);
    CHECK(memcmp(item_value(previous), "a", 1) == 0);
    item_release(previous);
    CHECK(holds_text(store, "k", "c"));

    /* Compare-and-set on the current item. */
    struct item *current;
    REQUIRE(store_get(store, "k", 1, &current) == STORE_OK);
    CHECK(store_replace_if_unchanged(store, "k", 1, current, "d", 1, true, STORE_TYPE_STRING) ==
          STORE_OK);
    CHECK(store_replace_if_unchanged(store, "k", 1, current, "e", 1, true, STORE_TYPE_STRING) ==
          STORE_CONDITION_FAILED);
    item_release(current);
    CHECK(holds_text(store, "k", "d"));
    CHECK(store_replace_if_unchanged(store, "new", 3, NULL, "x", 1, false, STORE_TYPE_STRING) ==
          STORE_OK);
    CHECK(store_replace_if_unchanged(store, "new", 3, NULL, "y", 1, false, STORE_TYPE_STRING) ==
          STORE_CONDITION_FAILED);
    store_destroy(store);
}

static void test_expiry(void) {
    struct store *store = make_store(64ULL << 20);
    REQUIRE(store != NULL);
    /* An expiry a minute away: nothing below waits that long, however loaded the
     * machine. */
    int64_t now = clock_realtime_ms();
    struct store_write later = {
        .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_SET, .expire_at_ms = now + 60000};
    CHECK(store_set(store, "short", 5, "v", 1, &later, NULL) == STORE_OK);
    int64_t expire_at = 0;
    CHECK(store_get_expiry(store, "short", 5, &expire_at) == STORE_OK && expire_at == now + 60000);
    CHECK(store_count_expiring(store) == 1);

    /* KEEPTTL carries the expiry over; a plain write clears it. */
    struct store_write keep = {
        .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_KEEP, .expire_at_ms = 0};
    CHECK(store_set(store, "short", 5, "w", 1, &keep, NULL) == STORE_OK);
    CHECK(store_get_expiry(store, "short", 5, &expire_at) == STORE_OK && expire_at == now + 60000);
    CHECK(put(store, "forever", "v") == STORE_OK);
    CHECK(store_set(store, "forever", 7, "w", 1, &keep, NULL) == STORE_OK);
    CHECK(store_get_expiry(store, "forever", 7, &expire_at) == STORE_OK && expire_at == 0);

    /* Once its time has passed, a key nobody removed reads as missing. */
    int64_t short_expiry = set_expiring_soon(store, "short", 100);
    CHECK(short_expiry != 0);
    CHECK(store_count_expiring(store) == 1);
    sleep_past(short_expiry);
    CHECK(!store_exists(store, "short", 5));
    struct item *item;
    CHECK(store_get(store, "short", 5, &item) == STORE_NOT_FOUND);
    CHECK(store_count_expiring(store) == 0);

    /* Conditions of EXPIRE: NX, XX, GT, LT. */
    now = clock_realtime_ms();
    CHECK(store_set_expiry(store, "forever", 7, now + 10000, STORE_EXPIRY_IF_ANY, NULL) ==
          STORE_CONDITION_FAILED);
    CHECK(store_set_expiry(store, "forever", 7, now + 10000, STORE_EXPIRY_IF_GREATER, NULL) ==
          STORE_CONDITION_FAILED);
    CHECK(store_set_expiry(store, "forever", 7, now + 10000, STORE_EXPIRY_IF_NONE, NULL) ==
          STORE_OK);
    CHECK(store_set_expiry(store, "forever", 7, now + 20000, STORE_EXPIRY_IF_NONE, NULL) ==
          STORE_CONDITION_FAILED);
    CHECK(store_set_expiry(store, "forever", 7, now + 5000, STORE_EXPIRY_IF_GREATER, NULL) ==
          STORE_CONDITION_FAILED);
    CHECK(store_set_expiry(store, "forever", 7, now + 5000, STORE_EXPIRY_IF_LESS, NULL) ==
          STORE_OK);
    CHECK(store_get_expiry(store, "forever", 7, &expire_at) == STORE_OK && expire_at == now + 5000);
    CHECK(store_set_expiry(store, "forever", 7, 0, STORE_EXPIRY_ALWAYS, NULL) == STORE_OK);
    CHECK(store_get_expiry(store, "forever", 7, &expire_at) == STORE_OK && expire_at == 0);
    CHECK(store_set_expiry(store, "missing", 7, now + 5000, STORE_EXPIRY_ALWAYS, NULL) ==
          STORE_NOT_FOUND);

    /* A time in the past deletes, both for EXPIRE and for SET ... PXAT. */
    CHECK(store_set_expiry(store, "forever", 7, now - 1, STORE_EXPIRY_ALWAYS, NULL) == STORE_OK);
    CHECK(!store_exists(store, "forever", 7));
    CHECK(put(store, "gone", "v") == STORE_OK);
    struct store_write past = {
        .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_SET, .expire_at_ms = now - 1000};
    CHECK(store_set(store, "gone", 4, "w", 1, &past, NULL) == STORE_OK);
    CHECK(!store_exists(store, "gone", 4));

    /* Active expiry removes items nobody reads. On a loaded machine some writes may
     * come after the expiry time (a write already expired stores nothing), so count
     * what was stored rather than assume all of it; if none was, try again with twice
     * the time (up to 12.8 s), so a descheduled thread does not fail the test. */
    char key[32];
    uint64_t count_before = store_count(store);
    uint64_t stored = 0;
    int64_t brief_expiry = 0;
    for (int64_t margin = 100; stored == 0 && margin <= 12800; margin *= 2) {
        brief_expiry = clock_realtime_ms() + margin;
        struct store_write brief = {
            .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_SET, .expire_at_ms = brief_expiry};
        for (int i = 0; i < 1000; i++) {
            int length = snprintf(key, sizeof(key), "brief:%d", i);
            CHECK(store_set(store, key, (size_t)length, "v", 1, &brief, NULL) == STORE_OK);
        }
        stored = store_count(store) - count_before;
    }
    CHECK(stored > 0);
    CHECK(put(store, "stays", "v") == STORE_OK);
    sleep_past(brief_expiry);
    size_t removed = 0;
    for (int round = 0; round < 100 && store_count(store) > 1; round++) {
        removed += store_expire_cycle(store, 1000);
    }
    CHECK(removed == stored);
    CHECK(store_count(store) == 1);
    CHECK(store_count_expiring(store) == 0);
    CHECK(holds_text(store, "stays", "v"));
    store_destroy(store);
}

static void test_large_values_and_append(void) {
    struct store *store = make_store(256ULL << 20);
    REQUIRE(store != NULL);
    size_t size = 3 * STORE_BLOCK_THRESHOLD + 7;
    unsigned char *value = malloc(size);
    REQUIRE(value != NULL);
    for (size_t i = 0; i < size; i++)
        value[i] = (unsigned char)(i * 31 + 7);
    CHECK(store_set(store, "big", 3, value, size, &plain_write, NULL) == STORE_OK);
    CHECK(holds(store, "big", 3, value, size));

    /* A block handed over by a parser is adopted without a copy. */
    struct value_block *block = value_block_create(size);
    REQUIRE(block != NULL);
    memcpy(block->data, value, size);
    block->length = size;
    CHECK(store_set_block(store, "adopted", 7, block, &plain_write, NULL) == STORE_OK);
    struct item *item;
    REQUIRE(store_get(store, "adopted", 7, &item) == STORE_OK);
    CHECK(item_value(item) == block->data);
    item_release(item);

    /* Appends, crossing from inline to block storage, are exact. */
    unsigned char *expected = malloc(200 * 1000);
    REQUIRE(expected != NULL);
    size_t expected_length = 0;
    char piece[1000];
    for (int round = 0; round < 200; round++) {
        memset(piece, 'a' + round % 26, sizeof(piece));
        uint64_t new_length = 0;
        CHECK(store_append(store, "log", 3, piece, sizeof(piece), &new_length) == STORE_OK);
        memcpy(expected + expected_length, piece, sizeof(piece));
        expected_length += sizeof(piece);
        CHECK(new_length == expected_length);
    }
    CHECK(holds(store, "log", 3, expected, expected_length));

    /* A reader holding the value is not disturbed by an append. */
    REQUIRE(store_get(store, "log", 3, &item) == STORE_OK);
    uint64_t new_length = 0;
    CHECK(store_append(store, "log", 3, "tail", 4, &new_length) == STORE_OK);
    CHECK(item_value_length(item) == expected_length);
    CHECK(memcmp(item_value(item), expected, expected_length) == 0);
    item_release(item);
    CHECK(new_length == expected_length + 4);

    /* Appending keeps the expiry. */
    int64_t later = clock_realtime_ms() + 100000;
    CHECK(store_set_expiry(store, "log", 3, later, STORE_EXPIRY_ALWAYS, NULL) == STORE_OK);
    CHECK(store_append(store, "log", 3, "x", 1, &new_length) == STORE_OK);
    int64_t expire_at = 0;
    CHECK(store_get_expiry(store, "log", 3, &expire_at) == STORE_OK && expire_at == later);

    store_set_max_value(store, expected_length);
    CHECK(store_append(store, "log", 3, "y", 1, &new_length) == STORE_VALUE_TOO_LARGE);
    free(expected);
    free(value);
    store_destroy(store);
}

static void test_rename_copy_many(void) {
    struct store *store = make_store(64ULL << 20);
    REQUIRE(store != NULL);
    CHECK(put(store, "a", "1") == STORE_OK);
    CHECK(put(store, "b", "2") == STORE_OK);
    CHECK(store_rename(store, "a", 1, "c", 1, false) == STORE_OK);
    CHECK(!store_exists(store, "a", 1));
    CHECK(holds_text(store, "c", "1"));
    CHECK(store_rename(store, "c", 1, "b", 1, true) == STORE_CONDITION_FAILED);
    CHECK(store_rename(store, "c", 1, "b", 1, false) == STORE_OK);
    CHECK(holds_text(store, "b", "1"));
    CHECK(store_rename(store, "nothing", 7, "x", 1, false) == STORE_NOT_FOUND);
    CHECK(store_rename(store, "b", 1, "b", 1, false) == STORE_OK);
    CHECK(store_rename(store, "b", 1, "b", 1, true) == STORE_CONDITION_FAILED);

    CHECK(store_copy(store, "b", 1, "d", 1, false) == STORE_OK);
    CHECK(holds_text(store, "b", "1") && holds_text(store, "d", "1"));
    CHECK(store_copy(store, "b", 1, "d", 1, false) == STORE_CONDITION_FAILED);

    /* Copies of a large value share its block until one of them changes. */
    size_t size = 2 * STORE_BLOCK_THRESHOLD;
    char *value = malloc(size);
    REQUIRE(value != NULL);
    memset(value, 'z', size);
    CHECK(store_set(store, "large", 5, value, size, &plain_write, NULL) == STORE_OK);
    CHECK(store_copy(store, "large", 5, "twin", 4, false) == STORE_OK);
    uint64_t length;
    CHECK(store_append(store, "twin", 4, "!", 1, &length) == STORE_OK);
    CHECK(holds(store, "large", 5, value, size));
    CHECK(length == size + 1);

    struct store_pair pairs[3] = {
        {"m1", 2, "x", 1, NULL}, {"m2", 2, "y", 1, NULL}, {"m1", 2, "z", 1, NULL}};
    CHECK(store_set_many(store, 3, pairs, false) == STORE_OK);
    CHECK(holds_text(store, "m1", "z") && holds_text(store, "m2", "y"));
    struct store_pair fresh[2] = {{"n1", 2, "x", 1, NULL}, {"m2", 2, "q", 1, NULL}};
    CHECK(store_set_many(store, 2, fresh, true) == STORE_CONDITION_FAILED);
    CHECK(!store_exists(store, "n1", 2) && holds_text(store, "m2", "y"));
    free(value);
    store_destroy(store);
}

struct scan_record {
    unsigned char *seen; /* indexed by key number */
    size_t visits;
};

static void record_visit(void *context, const struct item *item) {
    struct scan_record *record = context;
    size_t length;
    const unsigned char *key = item_key(item, &length);
    char text[32];
    if (length >= sizeof(text)) return;
    memcpy(text, key, length);
    text[length] = '\0';
    record->visits++;
    if (strncmp(text, "scan:", 5) == 0) record->seen[atoi(text + 5)] = 1;
}

static void count_visit(void *context, const struct item *item) {
    (void)item;
    ((struct scan_record *)context)->visits++;
}

static void test_scan(void) {
    struct store *store = make_store(256ULL << 20);
    REQUIRE(store != NULL);
    enum { KEYS = 20000 };
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        int length = snprintf(key, sizeof(key), "scan:%d", i);
        CHECK(store_set(store, key, (size_t)length, "v", 1, &plain_write, NULL) == STORE_OK);
    }
    struct scan_record record = {calloc(KEYS, 1), 0};
    REQUIRE(record.seen != NULL);
    uint64_t cursor = 0;
    int calls = 0;
    int extra = 0;
    do {
        cursor = store_scan(store, cursor, 50, record_visit, &record);
        /* Grow the index while the scan runs: nothing present all along may be missed. */
        for (int i = 0; i < 20; i++, extra++) {
            int length = snprintf(key, sizeof(key), "extra:%d", extra);
            store_set(store, key, (size_t)length, "v", 1, &plain_write, NULL);
        }
        calls++;
    } while (cursor != 0 && calls < 100000);
    CHECK(cursor == 0);
    int missing = 0;
    for (int i = 0; i < KEYS; i++)
        missing += record.seen[i] == 0;
    CHECK(missing == 0);
    CHECK(store_scan_cursor_valid(store, 0) && !store_scan_cursor_valid(store, UINT64_MAX));
    free(record.seen);

    struct item *random_item;
    CHECK(store_random(store, &random_item) == STORE_OK);
    if (random_item != NULL) item_release(random_item);
    store_flush(store);
    CHECK(store_count(store) == 0);
    CHECK(store_random(store, &random_item) == STORE_NOT_FOUND);
    store_destroy(store);
}

static void test_budget_and_eviction(void) {
    uint64_t budget = 8ULL << 20;
    struct store *store = make_store(budget);
    REQUIRE(store != NULL);
    struct store_stats stats;
    store_get_stats(store, &stats);
    uint64_t baseline = stats.used;
    CHECK(baseline == stats.fixed + stats.index);
    uint64_t evicted_before = stats.evicted;

    char key[32];
    char value[1000];
    memset(value, 'v', sizeof(value));
    bool within = true;
    for (int i = 0; i < 40000; i++) {
        int length = snprintf(key, sizeof(key), "fill:%d", i);
        CHECK(store_set(store, key, (size_t)length, value, sizeof(value), &plain_write, NULL) ==
              STORE_OK);
        store_get_stats(store, &stats);
        if (stats.used > budget) within = false;
    }
    CHECK(within);
    CHECK(stats.items < 40000);
    CHECK(stats.items > 4000);
    CHECK(stats.evicted - evicted_before == 40000 - stats.items);
    /* The newest keys are there. */
    int length = snprintf(key, sizeof(key), "fill:%d", 39999);
    CHECK(holds(store, key, (size_t)length, value, sizeof(value)));

    /* Larger than the whole budget: refused, nothing evicted for it. */
    char *huge = calloc(1, budget + 1);
    REQUIRE(huge != NULL);
    uint64_t items_before = store_count(store);
    CHECK(store_set(store, "huge", 4, huge, budget + 1, &plain_write, NULL) ==
          STORE_TOO_LARGE_FOR_BUDGET);
    CHECK(store_count(store) == items_before);
    /* Fits only after eviction: evicted and stored. */
    CHECK(store_set(store, "half", 4, huge, budget / 2, &plain_write, NULL) == STORE_OK);
    CHECK(holds(store, "half", 4, huge, budget / 2));
    store_get_stats(store, &stats);
    CHECK(stats.used <= budget);

    /* A reader keeps an evicted value alive and counted until it lets go. */
    struct item *pinned;
    REQUIRE(store_get(store, "half", 4, &pinned) == STORE_OK);
    CHECK(store_delete(store, "half", 4, NULL) == STORE_OK);
    store_get_stats(store, &stats);
    CHECK(stats.used >= budget / 2);
    CHECK(item_value(pinned)[budget / 2 - 1] == 0);
    item_release(pinned);
    store_get_stats(store, &stats);
    CHECK(stats.used < budget / 2);

    /* Shrinking the budget evicts down to it. */
    store_set_budget(store, budget / 2);
    store_get_stats(store, &stats);
    CHECK(stats.used <= budget / 2);
    store_flush(store);
    store_get_stats(store, &stats);
    CHECK(stats.items == 0);
    /* Every charge was returned: only the fixed structures and the (shrunk) index remain.
     * The index may differ from the start by allocator rounding of its new arrays. */
    CHECK(stats.used == stats.fixed + stats.index);
    CHECK(stats.used <= baseline + 4096);
    free(huge);
    store_destroy(store);
}

/* S3-FIFO keeps a reused working set while a stream of one-time keys many times the
 * budget passes through. Hot keys are never rewritten, so a plain FIFO or a policy
 * without a probationary queue would lose all of them within a few rounds. */
static void test_scan_resistance(void) {
    struct store *store = make_store(16ULL << 20);
    REQUIRE(store != NULL);
    char key[32];
    char value[1000];
    memset(value, 'h', sizeof(value));
    enum { HOT = 4000, COLD_PER_ROUND = 4000, ROUNDS = 30 };
    for (int i = 0; i < HOT; i++) {
        int length = snprintf(key, sizeof(key), "hot:%d", i);
        store_set(store, key, (size_t)length, value, sizeof(value), &plain_write, NULL);
    }
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < HOT; i++) {
            int length = snprintf(key, sizeof(key), "hot:%d", i);
            struct item *item;
            if (store_get(store, key, (size_t)length, &item) == STORE_OK) item_release(item);
        }
        for (int i = 0; i < COLD_PER_ROUND; i++) {
            int length = snprintf(key, sizeof(key), "cold:%d:%d", round, i);
            store_set(store, key, (size_t)length, value, sizeof(value), &plain_write, NULL);
        }
    }
    int present = 0;
    for (int i = 0; i < HOT; i++) {
        int length = snprintf(key, sizeof(key), "hot:%d", i);
        present += store_exists(store, key, (size_t)length);
    }
    fprintf(stderr, "    hot keys kept through %d MB of one-time keys: %d of %d\n",
            ROUNDS * COLD_PER_ROUND / 1000, present, HOT);
    CHECK(present >= HOT * 95 / 100);
    store_destroy(store);
}

struct worker_arguments {
    struct store *store;
    int seed;
    int errors;
    uint64_t budget;
    bool over_budget;
};

/* Writes and reads values whose bytes are derived from the key and a version stamp in
 * their first 8 bytes, and checks every value read is internally consistent. */
static void *hammer(void *argument) {
    struct worker_arguments *arguments = argument;
    unsigned state = (unsigned)arguments->seed * 2654435761u + 1;
    unsigned char value[40000];
    char key[32];
    for (int i = 0; i < 20000; i++) {
        state = state * 1103515245u + 12345u;
        int number = (int)((state >> 8) % 3000);
        int key_length = snprintf(key, sizeof(key), "shared:%d", number);
        if ((state >> 4) % 4 == 0) {
            size_t length = 16 + (state >> 12) % (sizeof(value) - 16);
            uint64_t stamp = state;
            memcpy(value, &stamp, 8);
            for (size_t j = 8; j < length; j++)
                value[j] = (unsigned char)(stamp + j + number);
            enum store_status status = store_set(arguments->store, key, (size_t)key_length, value,
                                                 length, &plain_write, NULL);
            if (status != STORE_OK) arguments->errors++;
        } else if ((state >> 4) % 4 == 1) {
            store_delete(arguments->store, key, (size_t)key_length, NULL);
        } else {
            struct item *item;
            if (store_get(arguments->store, key, (size_t)key_length, &item) == STORE_OK) {
                const unsigned char *bytes = item_value(item);
                uint64_t length = item_value_length(item);
                uint64_t stamp;
                memcpy(&stamp, bytes, 8);
                for (uint64_t j = 8; j < length; j++) {
                    if (bytes[j] != (unsigned char)(stamp + j + number)) {
                        arguments->errors++;
                        break;
                    }
                }
                item_release(item);
            }
        }
        struct store_stats stats;
        if (i % 512 == 0) {
            store_get_stats(arguments->store, &stats);
            if (stats.used > arguments->budget) arguments->over_budget = true;
        }
    }
    return NULL;
}

static void test_threads(void) {
    uint64_t budget = 16ULL << 20;
    struct store *store = make_store(budget);
    REQUIRE(store != NULL);
    enum { THREADS = 8 };
    pthread_t threads[THREADS];
    struct worker_arguments arguments[THREADS];
    for (int i = 0; i < THREADS; i++) {
        arguments[i] = (struct worker_arguments){store, i + 1, 0, budget, false};
        pthread_create(&threads[i], NULL, hammer, &arguments[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(arguments[i].errors == 0);
        CHECK(!arguments[i].over_budget);
    }
    store_destroy(store);
}

/* Any power-of-two shard count works the same; others are refused. */
static void test_shard_counts(void) {
    const unsigned counts[] = {1, 2, 16, 4096};
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        struct store_config config = {
            .memory_budget = 64ULL << 20, .max_value = 1 << 20, .shards = counts[c]};
        char error[256];
        struct store *store = store_create(&config, error, sizeof(error));
        REQUIRE(store != NULL);
        char key[32];
        for (int i = 0; i < 3000; i++) {
            int length = snprintf(key, sizeof(key), "key:%d", i);
            CHECK(store_set(store, key, (size_t)length, key, (size_t)length, &plain_write, NULL) ==
                  STORE_OK);
        }
        int correct = 0;
        for (int i = 0; i < 3000; i++) {
            int length = snprintf(key, sizeof(key), "key:%d", i);
            correct += holds(store, key, (size_t)length, key, (size_t)length);
        }
        CHECK(correct == 3000);
        struct scan_record record = {calloc(3000, 1), 0};
        REQUIRE(record.seen != NULL);
        uint64_t cursor = 0;
        do {
            cursor = store_scan(store, cursor, 100, count_visit, &record);
        } while (cursor != 0);
        CHECK(record.visits == 3000);
        free(record.seen);
        store_destroy(store);
    }
    struct store_config odd = {.memory_budget = 64ULL << 20, .max_value = 1 << 20, .shards = 3};
    char error[256];
    CHECK(store_create(&odd, error, sizeof(error)) == NULL);
    CHECK(strstr(error, "power of two") != NULL);
}

/* Chains lose their tail first: after filling a store far past its budget with
 * interleaved chains, the links still present in every chain form a prefix. Pins keep
 * a key through the same pressure until they are lifted. */
static void test_chains_and_pins(void) {
    struct store *store = make_store(8ULL << 20);
    REQUIRE(store != NULL);
    enum { CHAINS = 64, LINKS = 40, VALUE = 4096 };
    static unsigned char value[VALUE];
    memset(value, 'v', sizeof(value));
    char key[48], parent[48];
    CHECK(put(store, "pinned", "p") == STORE_OK);
    CHECK(store_pin(store, "pinned", 6, 60000) == STORE_OK);
    CHECK(store_pin(store, "absent", 6, 60000) == STORE_NOT_FOUND);
    int refused = 0;
    /* 64 x 40 x 4 KiB = 10 MiB through an 8 MiB budget, twice over. */
    for (int round = 0; round < 2; round++) {
        for (int link = 0; link < LINKS; link++) {
            for (int chain = 0; chain < CHAINS; chain++) {
                snprintf(key, sizeof(key), "r%d/c%d/%d", round, chain, link);
                snprintf(parent, sizeof(parent), "r%d/c%d/%d", round, chain, link - 1);
                struct store_write write = plain_write;
                if (link > 0) {
                    write.parent = parent;
                    write.parent_length = strlen(parent);
                }
                enum store_status status =
                    store_set(store, key, strlen(key), value, sizeof(value), &write, NULL);
                /* A link whose parent has gone is refused: it would be a hole. */
                CHECK(status == STORE_OK || status == STORE_PARENT_MISSING);
                if (status == STORE_PARENT_MISSING) {
                    CHECK(!store_exists(store, parent, strlen(parent)));
                    refused++;
                }
            }
        }
    }
    int holes = 0, present = 0;
    for (int round = 0; round < 2; round++) {
        for (int chain = 0; chain < CHAINS; chain++) {
            bool gap = false;
            for (int link = 0; link < LINKS; link++) {
                snprintf(key, sizeof(key), "r%d/c%d/%d", round, chain, link);
                bool exists = store_exists(store, key, strlen(key));
                if (exists && gap) holes++;
                if (!exists) gap = true;
                present += exists;
            }
        }
    }
    CHECK(holes == 0);
    printf("    chains: %d links present, %d refused for a missing parent\n", present, refused);
    CHECK(present > 0 && present < 2 * CHAINS * LINKS);
    CHECK(store_exists(store, "pinned", 6));
    struct store_stats stats;
    store_get_stats(store, &stats);
    CHECK(stats.used <= stats.budget);
    CHECK(stats.chained_keys > 0);
    CHECK(stats.chain_link_failures == 0);

    /* Unpinned, the key can go; deleting whole chains empties the table. */
    CHECK(store_pin(store, "pinned", 6, 0) == STORE_OK);
    store_flush(store);
    store_get_stats(store, &stats);
    CHECK(stats.chained_keys == 0);
    store_destroy(store);
}

static struct store *make_ordered_store(uint64_t budget, const char *evict_together) {
    struct store_config config = {.memory_budget = budget,
                                  .max_value = 64ULL << 20,
                                  .tail_first_window_ms = 10000,
                                  .evict_together = evict_together};
    char error[256];
    struct store *store = store_create(&config, error, sizeof(error));
    if (store == NULL) fprintf(stderr, "store_create: %s\n", error);
    return store;
}

/* Tail-first order: one request's chunks, written in order into a budget that holds a
 * fifth of them, leave newest first, so those left are the first ones (plus the last
 * written, which nothing came after to evict it): a prefix. */
static void test_tail_first(void) {
    struct store *store = make_ordered_store(8ULL << 20, NULL);
    REQUIRE(store != NULL);
    enum { CHUNKS = 200, VALUE = 200 * 1024 };
    unsigned char *value = malloc(VALUE);
    REQUIRE(value != NULL);
    char key[32];
    for (int chunk = 0; chunk < CHUNKS; chunk++) {
        memset(value, chunk, VALUE);
        snprintf(key, sizeof(key), "request:7:chunk:%03d", chunk);
        CHECK(store_set(store, key, strlen(key), value, VALUE, &plain_write, NULL) == STORE_OK);
    }
    int prefix = 0, present = 0;
    bool gap = false;
    for (int chunk = 0; chunk < CHUNKS; chunk++) {
        snprintf(key, sizeof(key), "request:7:chunk:%03d", chunk);
        bool exists = store_exists(store, key, strlen(key));
        present += exists;
        if (!exists) gap = true;
        if (!gap) prefix++;
    }
    printf("    tail-first: %d of %d chunks present, the first %d of them a prefix\n", present,
           CHUNKS, prefix);
    CHECK(prefix >= 25);          /* about 8 MiB of 200 KiB chunks */
    CHECK(present <= prefix + 1); /* and nothing else but the newest */
    snprintf(key, sizeof(key), "request:7:chunk:%03d", 0);
    memset(value, 0, VALUE);
    CHECK(holds(store, key, strlen(key), value, VALUE));
    struct store_stats stats;
    store_get_stats(store, &stats);
    CHECK(stats.used <= stats.budget);

    /* A chunk that was read leaves after the unread ones (S3-FIFO's promotion). */
    snprintf(key, sizeof(key), "request:7:chunk:%03d", 3);
    struct item *item;
    REQUIRE(store_get(store, key, strlen(key), &item) == STORE_OK);
    item_release(item);
    char later[32];
    for (int chunk = 0; chunk < 20; chunk++) {
        snprintf(later, sizeof(later), "request:8:chunk:%03d", chunk);
        CHECK(store_set(store, later, strlen(later), value, VALUE, &plain_write, NULL) == STORE_OK);
    }
    CHECK(store_exists(store, key, strlen(key)));
    free(value);
    store_destroy(store);
}

static enum store_status put_sized(struct store *store, const char *key, size_t length) {
    static unsigned char value[256 * 1024];
    memset(value, key[strlen(key) - 1], length);
    return store_set(store, key, strlen(key), value, length, &plain_write, NULL);
}

/* Eviction groups: keys that differ only in a listed suffix leave together, and a member
 * written after its group was evicted meanwhile is evicted on arrival. */
static void test_eviction_groups(void) {
    char error[256];
    struct store_config bad = {
        .memory_budget = 8ULL << 20, .max_value = 1 << 20, .evict_together = "kv_bytes"};
    CHECK(store_create(&bad, error, sizeof(error)) == NULL);
    bad.evict_together = "kv_bytes,,metadata";
    CHECK(store_create(&bad, error, sizeof(error)) == NULL);
    bad.evict_together = "kv_bytes,kv_bytes";
    CHECK(store_create(&bad, error, sizeof(error)) == NULL);
    CHECK(strstr(error, "twice") != NULL);

    for (int ordered = 0; ordered < 2; ordered++) {
        struct store_config config = {.memory_budget = 8ULL << 20,
                                      .max_value = 1 << 20,
                                      .tail_first_window_ms = ordered ? 10000 : 0,
                                      .evict_together = "kv_bytes,metadata"};
        struct store *store = store_create(&config, error, sizeof(error));
        REQUIRE(store != NULL);
        enum { CHUNKS = 300 };
        char key[48];
        for (int chunk = 0; chunk < CHUNKS; chunk++) {
            snprintf(key, sizeof(key), "vllm@model@1@0@%04xkv_bytes", chunk);
            CHECK(put_sized(store, key, 128 * 1024) == STORE_OK);
            snprintf(key, sizeof(key), "vllm@model@1@0@%04xmetadata", chunk);
            CHECK(put_sized(store, key, 28) == STORE_OK);
        }
        int whole = 0, half = 0;
        for (int chunk = 0; chunk < CHUNKS; chunk++) {
            snprintf(key, sizeof(key), "vllm@model@1@0@%04xkv_bytes", chunk);
            int present = store_exists(store, key, strlen(key));
            snprintf(key, sizeof(key), "vllm@model@1@0@%04xmetadata", chunk);
            present += store_exists(store, key, strlen(key));
            whole += present == 2;
            half += present == 1;
        }
        printf("    groups (%s): %d whole pairs, %d halves\n", ordered ? "tail-first" : "S3-FIFO",
               whole, half);
        CHECK(whole > 20 && whole < CHUNKS);
        CHECK(half == 0);

        /* A member whose group was evicted before it arrived is evicted on arrival; a
         * new put of the whole group afterwards stays. */
        store_flush(store);
        /* As s3fifo_evict_one() evicts a victim: it goes, then its group. */
        CHECK(put_sized(store, "late@2kv_bytes", 128 * 1024) == STORE_OK);
        struct item *item;
        REQUIRE(store_get(store, "late@2kv_bytes", 14, &item) == STORE_OK);
        CHECK(groups_evict_key(store, "late@2kv_bytes", 14));
        groups_evict_partners(store, item); /* the metadata is still to come */
        item_release(item);
        CHECK(put_sized(store, "late@2metadata", 28) == STORE_OK);
        CHECK(!store_exists(store, "late@2metadata", 14));
        CHECK(put_sized(store, "late@2kv_bytes", 128 * 1024) == STORE_OK);
        CHECK(put_sized(store, "late@2metadata", 28) == STORE_OK);
        CHECK(store_exists(store, "late@2kv_bytes", 14));
        CHECK(store_exists(store, "late@2metadata", 14));
        /* Evicting one member takes the other. */
        REQUIRE(store_get(store, "late@2metadata", 14, &item) == STORE_OK);
        CHECK(groups_evict_key(store, "late@2metadata", 14));
        groups_evict_partners(store, item);
        item_release(item);
        CHECK(!store_exists(store, "late@2kv_bytes", 14));
        CHECK(put_sized(store, "late@2kv_bytes", 128 * 1024) == STORE_OK); /* a new put */
        CHECK(store_exists(store, "late@2kv_bytes", 14));
        store_destroy(store);
    }
}

/* A flash stub keeps its expiry in whole seconds, rounded up, saturating at the last
 * second it can hold; no expiry a client can send overflows the conversion (SET k v
 * PXAT 9223372036854775807 once tripped UBSan here). */
static void test_flash_expiry_seconds(void) {
    CHECK(flash_expiry_seconds(0) == 0);
    CHECK(flash_expiry_seconds(-5) == 0);
    CHECK(flash_expiry_seconds(1) == 1);
    CHECK(flash_expiry_seconds(1000) == 1);
    CHECK(flash_expiry_seconds(1001) == 2);
    CHECK(flash_expiry_seconds((int64_t)UINT32_MAX * 1000) == UINT32_MAX);
    CHECK(flash_expiry_seconds((int64_t)UINT32_MAX * 1000 + 1) == UINT32_MAX);
    CHECK(flash_expiry_seconds(INT64_MAX) == UINT32_MAX);
    CHECK(flash_expiry_seconds(INT64_MAX - 998) == UINT32_MAX);
}

/* Keeps writing new keys (so the index resizes) until told to stop. */
static void *grow_index(void *opaque) {
    struct store *store = opaque;
    char key[32];
    for (int i = 0; i < 20000; i++) {
        int length = snprintf(key, sizeof(key), "grow:%d", i);
        if (store_set(store, key, (size_t)length, "v", 1, &plain_write, NULL) != STORE_OK) break;
    }
    return NULL;
}

/* store_prefetch() is a hint: keys present or absent, empty, or more than it looks at
 * change nothing, and it is safe while another thread resizes the index. */
static void test_prefetch(void) {
    struct store *store = make_store(64ULL << 20);
    REQUIRE(store != NULL);
    CHECK(put(store, "alpha", "one") == STORE_OK);
    CHECK(put(store, "beta", "two") == STORE_OK);
    struct store_key keys[STORE_PREFETCH_MAX + 8];
    char names[STORE_PREFETCH_MAX + 8][16];
    for (size_t i = 0; i < STORE_PREFETCH_MAX + 8; i++) {
        int length = snprintf(names[i], sizeof(names[i]), "absent:%zu", i);
        keys[i] = (struct store_key){names[i], (size_t)length};
    }
    keys[0] = (struct store_key){"alpha", 5};
    keys[1] = (struct store_key){"", 0};
    keys[2] = (struct store_key){"beta", 4};
    store_prefetch(store, keys, 0);
    store_prefetch(store, keys, 3);
    store_prefetch(store, keys, STORE_PREFETCH_MAX + 8);
    CHECK(store_count(store) == 2);
    CHECK(holds_text(store, "alpha", "one"));
    CHECK(holds_text(store, "beta", "two"));
    CHECK(!store_exists(store, "absent:5", 8));

    pthread_t writer;
    REQUIRE(pthread_create(&writer, NULL, grow_index, store) == 0);
    for (int round = 0; round < 2000; round++) {
        char grown[STORE_PREFETCH_MAX][32];
        for (size_t i = 0; i < STORE_PREFETCH_MAX; i++) {
            int length = snprintf(grown[i], sizeof(grown[i]), "grow:%zu", (size_t)round * 7 + i);
            keys[i] = (struct store_key){grown[i], (size_t)length};
        }
        store_prefetch(store, keys, STORE_PREFETCH_MAX);
    }
    pthread_join(writer, NULL);
    CHECK(store_count(store) == 20002);
    CHECK(holds_text(store, "grow:19999", "v"));
    store_destroy(store);
}

/* Values of another type than string: made by store_replace_if_unchanged() with a type,
 * refused by string reads and appends, found by store_get_typed(), kept by COPY and
 * RENAME, removed by store_delete_if_unchanged(). */
static void test_value_types(void) {
    struct store *store = make_store(64 << 20);
    REQUIRE(store != NULL);
    REQUIRE(store_replace_if_unchanged(store, "h", 1, NULL, "\1enc", 4, false, STORE_TYPE_HASH) ==
            STORE_OK);
    REQUIRE(put(store, "s", "text") == STORE_OK);
    enum store_type type = STORE_TYPE_STRING;
    CHECK(store_key_type(store, "h", 1, &type) == STORE_OK && type == STORE_TYPE_HASH);
    CHECK(store_key_type(store, "s", 1, &type) == STORE_OK && type == STORE_TYPE_STRING);
    CHECK(store_key_type(store, "none", 4, &type) == STORE_NOT_FOUND);

    struct item *item = NULL;
    CHECK(store_get(store, "h", 1, &item) == STORE_WRONG_TYPE && item == NULL);
    struct store_read_options strings = {0}, any = {.any_type = true};
    struct store_value value;
    CHECK(store_read(store, "h", 1, &strings, &value, NULL, NULL) == STORE_WRONG_TYPE);
    CHECK(value.item == NULL);
    REQUIRE(store_read(store, "h", 1, &any, &value, NULL, NULL) == STORE_OK);
    CHECK(item_type(value.item) == STORE_TYPE_HASH && item_value_length(value.item) == 4);
    item_release(value.item);
    uint64_t length = 0;
    CHECK(store_append(store, "h", 1, "x", 1, &length) == STORE_WRONG_TYPE);

    CHECK(store_get_typed(store, "s", 1, STORE_TYPE_HASH, &item) == STORE_WRONG_TYPE);
    CHECK(store_get_typed(store, "none", 4, STORE_TYPE_HASH, &item) == STORE_NOT_FOUND);
    REQUIRE(store_get_typed(store, "h", 1, STORE_TYPE_HASH, &item) == STORE_OK);
    CHECK(memcmp(item_value(item), "\1enc", 4) == 0);

    /* A replacement keeps the type it is given; the old item is no longer current. */
    CHECK(store_replace_if_unchanged(store, "h", 1, item, "\1new", 4, true, STORE_TYPE_HASH) ==
          STORE_OK);
    CHECK(store_delete_if_unchanged(store, "h", 1, item) == STORE_CONDITION_FAILED);
    item_release(item);

    CHECK(store_copy(store, "h", 1, "h2", 2, false) == STORE_OK);
    CHECK(store_rename(store, "h2", 2, "h3", 2, false) == STORE_OK);
    CHECK(store_key_type(store, "h3", 2, &type) == STORE_OK && type == STORE_TYPE_HASH);
    REQUIRE(store_get_typed(store, "h3", 2, STORE_TYPE_HASH, &item) == STORE_OK);
    CHECK(memcmp(item_value(item), "\1new", 4) == 0);
    CHECK(store_delete_if_unchanged(store, "h3", 2, item) == STORE_OK);
    item_release(item);
    CHECK(store_key_type(store, "h3", 2, &type) == STORE_NOT_FOUND);

    /* A string write replaces a hash, as SET does in Redis. */
    REQUIRE(put(store, "h", "plain") == STORE_OK);
    CHECK(holds_text(store, "h", "plain"));
    store_destroy(store);
}

/* The bytes all the S3-FIFO queues count (each item's queue_weight()). */
static uint64_t queued_bytes(struct store *store) {
    uint64_t total = 0;
    for (unsigned i = 0; i < store->shard_count; i++)
        total += store->shards[i].small.bytes + store->shards[i].main.bytes;
    return total;
}

/* Returns true when KEY holds a list of exactly VALUE (LENGTH bytes). */
static bool holds_list(struct store *store, const char *key, const void *value, size_t length) {
    struct item *item;
    if (store_get_typed(store, key, strlen(key), STORE_TYPE_LIST, &item) != STORE_OK) return false;
    bool same = item_value_length(item) == length && memcmp(item_value(item), value, length) == 0;
    item_release(item);
    return same;
}

/* An in-place edit for the test: grows the value by edit->grow bytes of 'g' (when it
 * fits), or cuts it to edit->cut bytes; edit->decline refuses. Records the capacity. */
struct test_edit {
    uint64_t grow, cut, capacity_seen;
    bool decline;
    int calls;
};

static bool test_edit_fn(void *context, unsigned char *value, uint64_t *length, uint64_t capacity) {
    struct test_edit *edit = context;
    edit->calls++;
    edit->capacity_seen = capacity;
    if (edit->decline || *length + edit->grow > capacity) return false;
    memset(value + *length, 'g', (size_t)edit->grow);
    *length += edit->grow;
    if (edit->cut != 0) *length = edit->cut;
    return true;
}

/* store_edit_in_place(): in place only for an exclusively held block value, keeping the
 * type, the expiry and the queue accounting, bumping the WATCH version; the
 * _with_room replace gives the block the room. */
static void test_edit_in_place(void) {
    struct store *store = make_store(256ULL << 20);
    REQUIRE(store != NULL);
    struct test_edit edit = {.grow = 10};
    CHECK(store_edit_in_place(store, "l", 1, STORE_TYPE_LIST, test_edit_fn, &edit) ==
          STORE_NOT_FOUND);
    CHECK(put(store, "s", "string") == STORE_OK);
    CHECK(store_edit_in_place(store, "s", 1, STORE_TYPE_LIST, test_edit_fn, &edit) ==
          STORE_WRONG_TYPE);
    /* A small value lives inline in its item: not in place. */
    CHECK(store_replace_if_unchanged_with_room(store, "small", 5, NULL, "abc", 3, false,
                                               STORE_TYPE_LIST) == STORE_OK);
    CHECK(store_edit_in_place(store, "small", 5, STORE_TYPE_LIST, test_edit_fn, &edit) ==
          STORE_CONDITION_FAILED);
    CHECK(edit.calls == 0);

    size_t size = STORE_BLOCK_THRESHOLD + 100;
    unsigned char *value = malloc(size + 1000);
    REQUIRE(value != NULL);
    memset(value, 'v', size);
    uint64_t queued_without = queued_bytes(store);
    CHECK(store_replace_if_unchanged_with_room(store, "l", 1, NULL, value, size, false,
                                               STORE_TYPE_LIST) == STORE_OK);
    int64_t later = clock_realtime_ms() + 100000;
    CHECK(store_set_expiry(store, "l", 1, later, STORE_EXPIRY_ALWAYS, NULL) == STORE_OK);
    uint32_t version_before = 0, version_after = 0;
    CHECK(store_key_version(store, "l", 1, &version_before));
    uint64_t queued_before = queued_bytes(store);
    CHECK(store_edit_in_place(store, "l", 1, STORE_TYPE_LIST, test_edit_fn, &edit) == STORE_OK);
    CHECK(edit.capacity_seen >= 2 * size); /* the room growth_capacity() gave */
    CHECK(queued_bytes(store) == queued_before + 10);
    CHECK(store_key_version(store, "l", 1, &version_after) && version_after != version_before);
    memset(value + size, 'g', 10);
    struct item *item;
    REQUIRE(store_get_typed(store, "l", 1, STORE_TYPE_LIST, &item) == STORE_OK);
    CHECK(item_value_length(item) == size + 10 && memcmp(item_value(item), value, size + 10) == 0);

    /* Held by a reader: not in place, and the reader's bytes stay. */
    int calls = edit.calls;
    CHECK(store_edit_in_place(store, "l", 1, STORE_TYPE_LIST, test_edit_fn, &edit) ==
          STORE_CONDITION_FAILED);
    CHECK(edit.calls == calls);
    CHECK(item_value_length(item) == size + 10);
    item_release(item);

    /* Declined: nothing changes. */
    edit.decline = true;
    CHECK(store_edit_in_place(store, "l", 1, STORE_TYPE_LIST, test_edit_fn, &edit) ==
          STORE_CONDITION_FAILED);
    CHECK(edit.calls == calls + 1);
    CHECK(holds_list(store, "l", value, size + 10));

    /* Shrinking gives the queue's bytes back; the type and the expiry stay. */
    edit = (struct test_edit){.cut = 7};
    queued_before = queued_bytes(store);
    CHECK(store_edit_in_place(store, "l", 1, STORE_TYPE_LIST, test_edit_fn, &edit) == STORE_OK);
    CHECK(queued_bytes(store) == queued_before - (size + 10 - 7));
    CHECK(holds_list(store, "l", value, 7));
    enum store_type type = STORE_TYPE_STRING;
    CHECK(store_key_type(store, "l", 1, &type) == STORE_OK && type == STORE_TYPE_LIST);
    int64_t expire_at = 0;
    CHECK(store_get_expiry(store, "l", 1, &expire_at) == STORE_OK && expire_at == later);

    /* Deleting it leaves the queues as they were without it: what the edits added and
     * took away was counted right. */
    CHECK(store_delete(store, "l", 1, NULL) == STORE_OK);
    CHECK(queued_bytes(store) == queued_without);
    free(value);
    store_destroy(store);
}

/* An overwrite for the test: sets the value's bytes to edit->text (its length) when the
 * value is that long, else declines. */
struct test_overwrite {
    const char *text;
    uint64_t capacity_seen;
    int calls;
};

static bool test_overwrite_fn(void *context, unsigned char *value, uint64_t *length,
                              uint64_t capacity) {
    struct test_overwrite *overwrite = context;
    overwrite->calls++;
    overwrite->capacity_seen = capacity;
    if (*length != strlen(overwrite->text)) return false;
    memcpy(value, overwrite->text, (size_t)*length);
    return true;
}

/* store_overwrite_in_place(): also for a value held in its item (capacity = its length),
 * in place only when nobody else holds the item; keeps the type and the expiry, bumps
 * the WATCH version. */
static void test_overwrite_in_place(void) {
    struct store *store = make_store(64ULL << 20);
    REQUIRE(store != NULL);
    struct test_overwrite overwrite = {.text = "wxyz"};
    CHECK(store_overwrite_in_place(store, "h", 1, STORE_TYPE_HASH, test_overwrite_fn, &overwrite) ==
          STORE_NOT_FOUND);
    CHECK(store_replace_if_unchanged(store, "h", 1, NULL, "abcd", 4, false, STORE_TYPE_HASH) ==
          STORE_OK);
    CHECK(store_edit_in_place(store, "h", 1, STORE_TYPE_HASH, test_overwrite_fn, &overwrite) ==
          STORE_CONDITION_FAILED); /* inline: only for an overwrite */
    CHECK(overwrite.calls == 0);
    int64_t later = clock_realtime_ms() + 100000;
    CHECK(store_set_expiry(store, "h", 1, later, STORE_EXPIRY_ALWAYS, NULL) == STORE_OK);
    uint32_t version_before = 0, version_after = 0;
    CHECK(store_key_version(store, "h", 1, &version_before));
    CHECK(store_overwrite_in_place(store, "h", 1, STORE_TYPE_HASH, test_overwrite_fn, &overwrite) ==
          STORE_OK);
    CHECK(overwrite.capacity_seen == 4);
    CHECK(store_key_version(store, "h", 1, &version_after) && version_after != version_before);
    struct item *item;
    REQUIRE(store_get_typed(store, "h", 1, STORE_TYPE_HASH, &item) == STORE_OK);
    CHECK(item_value_length(item) == 4 && memcmp(item_value(item), "wxyz", 4) == 0);
    /* Held by a reader: not in place, and the reader's bytes stay. */
    overwrite.text = "0123";
    int calls = overwrite.calls;
    CHECK(store_overwrite_in_place(store, "h", 1, STORE_TYPE_HASH, test_overwrite_fn, &overwrite) ==
          STORE_CONDITION_FAILED);
    CHECK(overwrite.calls == calls);
    CHECK(memcmp(item_value(item), "wxyz", 4) == 0);
    item_release(item);
    /* Declined (another length): nothing changes. */
    overwrite.text = "longer";
    CHECK(store_overwrite_in_place(store, "h", 1, STORE_TYPE_HASH, test_overwrite_fn, &overwrite) ==
          STORE_CONDITION_FAILED);
    REQUIRE(store_get_typed(store, "h", 1, STORE_TYPE_HASH, &item) == STORE_OK);
    CHECK(memcmp(item_value(item), "wxyz", 4) == 0);
    item_release(item);
    int64_t expire_at = 0;
    CHECK(store_get_expiry(store, "h", 1, &expire_at) == STORE_OK && expire_at == later);
    CHECK(store_overwrite_in_place(store, "h", 1, STORE_TYPE_LIST, test_overwrite_fn, &overwrite) ==
          STORE_WRONG_TYPE);
    store_destroy(store);
}

int main(void) {
    fprintf(stderr, "test_store\n");
    RUN_TEST(test_set_get_delete);
    RUN_TEST(test_conditions);
    RUN_TEST(test_expiry);
    RUN_TEST(test_large_values_and_append);
    RUN_TEST(test_rename_copy_many);
    RUN_TEST(test_scan);
    RUN_TEST(test_budget_and_eviction);
    RUN_TEST(test_scan_resistance);
    RUN_TEST(test_threads);
    RUN_TEST(test_shard_counts);
    RUN_TEST(test_chains_and_pins);
    RUN_TEST(test_tail_first);
    RUN_TEST(test_eviction_groups);
    RUN_TEST(test_flash_expiry_seconds);
    RUN_TEST(test_prefetch);
    RUN_TEST(test_value_types);
    RUN_TEST(test_edit_in_place);
    RUN_TEST(test_overwrite_in_place);
    metrics_teardown();
    return test_main_result();
}
