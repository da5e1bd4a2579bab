/* engine_embed: the strata engine inside a program of its own, without the server.
 *
 * Creates a store with a flash tier in a fresh temporary directory, writes a few keys
 * (one of them 12 MiB, larger than the 4 MiB DRAM budget the store then runs with, so it
 * can only live on flash), reads them back, stops the store cleanly (the flash index is
 * saved), starts it again on the same directory (a warm restart), and reads every key
 * again. Prints what it does; exits 0 only if every check passed.
 *
 * Build and run (docs/engine.md, "Embedding the engine"):
 *     make build/libstrata-engine.a
 *     cc -std=c11 -pthread -Isrc examples/engine_embed.c build/libstrata-engine.a \
 *        -o engine_embed -lxxhash -luring -lisal -lcrypto -lm
 *     ./engine_embed
 * `make example-check` (part of `make test`) does the same with build/examples/. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp(), nanosleep() and readdir() under -std=c11 */
#endif

#include "engine/engine.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITE_BUDGET (64ULL << 20) /* DRAM while the keys are written */
#define SMALL_BUDGET (4ULL << 20)  /* DRAM afterwards, and at the restart */
#define BIG_LENGTH   (12u << 20)   /* larger than SMALL_BUDGET: it must live on flash */

struct key {
    const char *name;
    size_t length;
    unsigned char *value;
};

static int failures;

static void check(bool ok, const char *what) {
    printf("  %-62s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) failures++;
}

static void sleep_ms(long milliseconds) {
    struct timespec pause = {.tv_sec = milliseconds / 1000,
                             .tv_nsec = (milliseconds % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* A value of LENGTH bytes that differs from key to key (SEED) and along its length. */
static unsigned char *make_value(size_t length, unsigned seed) {
    unsigned char *value = malloc(length > 0 ? length : 1);
    if (value == NULL) return NULL;
    for (size_t i = 0; i < length; i++)
        value[i] = (unsigned char)((i * 2654435761u >> 13) ^ (i / 4093) ^ seed);
    return value;
}

static struct store *open_store(const char *directory, uint64_t budget) {
    struct store_config config = {
        .memory_budget = budget,
        .max_value = 64ULL << 20,
        .shards = 16,
        .flash =
            {
                .directory = directory,
                .size = 256ULL << 20,
                .segment_size = 16ULL << 20,
                .write_through = false,
                .fsync = STORE_FSYNC_EVERYSEC,
                .pace_timeout_ms = 10000,
            },
    };
    char error[256];
    struct store *store = store_create(&config, error, sizeof(error));
    if (store == NULL) {
        printf("store_create: %s\n", error);
        return NULL;
    }
    /* The flash index is rebuilt in a thread: only a few calls are allowed meanwhile. */
    if (store_recovering(store)) {
        printf("  recovering the flash index...\n");
        store_wait_ready(store);
    }
    return store;
}

enum source { FROM_DRAM, FROM_FLASH, STREAMED };

/* Reads KEY whole and compares it with what was written. A value in DRAM, or small
 * enough to bring back from flash, comes as an item; one too large for DRAM comes as a
 * stream, received here piece by piece. Sets *SOURCE to where the value came from. */
static bool read_back(struct store *store, const struct key *key, enum source *source) {
    struct store_read_options options = {.stream = true};
    struct store_value value = {0};
    /* No callback: on a thread without an io_ring (not a network worker) the read is
     * synchronous, so it never answers STORE_PENDING. */
    enum store_status status =
        store_read(store, key->name, strlen(key->name), &options, &value, NULL, NULL);
    *source = FROM_DRAM;
    if (status != STORE_OK) {
        printf("    %s: %s\n", key->name, store_status_text(status));
        return false;
    }
    if (value.item != NULL) {
        if (item_from_flash(value.item)) *source = FROM_FLASH;
        bool same = item_value_length(value.item) == key->length &&
                    memcmp(item_value(value.item), key->value, key->length) == 0;
        item_release(value.item);
        return same;
    }
    /* A stream: without an io_ring on this thread its pieces are read synchronously and
     * queued as a connection would send them, each through the record's CRC (the last
     * one only once the whole record has passed). */
    *source = STREAMED;
    uint64_t length = store_stream_length(value.stream);
    struct output_queue queue;
    output_queue_init(&queue);
    if (!store_stream_send(value.stream, 0, length, &queue, NULL, NULL)) { /* closes it */
        output_queue_clear(&queue);
        return false;
    }
    bool same = length == key->length;
    uint64_t received = 0;
    struct iovec pieces[16];
    int count;
    while ((count = output_queue_iovecs(&queue, pieces, 16)) > 0) {
        size_t taken = 0;
        for (int i = 0; i < count; i++) {
            same =
                same && received + taken + pieces[i].iov_len <= key->length &&
                memcmp(key->value + received + taken, pieces[i].iov_base, pieces[i].iov_len) == 0;
            taken += pieces[i].iov_len;
        }
        output_queue_consume(&queue, taken);
        received += taken;
    }
    same = same && !queue.failed && received == key->length;
    output_queue_clear(&queue);
    return same;
}

/* Reads every key back; with ALL_ON_FLASH, each must come from flash (after a restart
 * nothing is in DRAM until it is read). */
static void read_all(struct store *store, const struct key *keys, size_t count, bool all_on_flash) {
    static const char *const sources[] = {"from DRAM", "read from flash", "streamed from flash"};
    for (size_t i = 0; i < count; i++) {
        enum source source;
        char what[128];
        bool same = read_back(store, &keys[i], &source);
        snprintf(what, sizeof(what), "get %s: %zu bytes, %s", keys[i].name, keys[i].length,
                 sources[source]);
        check(same && (!all_on_flash || source != FROM_DRAM), what);
    }
}

/* Removes the flash directory (it holds plain files only). */
static void remove_directory(const char *directory) {
    DIR *listing = opendir(directory);
    if (listing == NULL) return;
    struct dirent *entry;
    char path[4096];
    while ((entry = readdir(listing)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
        snprintf(path, sizeof(path), "%s/%s", directory, entry->d_name);
        unlink(path);
    }
    closedir(listing);
    rmdir(directory);
}

int main(void) {
    log_set_level(LOG_WARNING); /* the engine's log lines go to standard error */
    const char *temporary = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    char directory[1024];
    snprintf(directory, sizeof(directory), "%s/engine_embed-XXXXXX", temporary);
    if (mkdtemp(directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    printf("engine_embed: flash directory %s\n", directory);

    struct key keys[] = {
        {"greeting", 12, NULL},     {"empty", 0, NULL}, {"counter", 2, NULL},
        {"block", 100 << 10, NULL}, /* a large value: it lives in a value block */
        {"big", BIG_LENGTH, NULL},  /* larger than SMALL_BUDGET */
    };
    size_t count = sizeof(keys) / sizeof(keys[0]);
    for (size_t i = 0; i < count; i++) {
        keys[i].value = make_value(keys[i].length, (unsigned)i * 37);
        if (keys[i].value == NULL) return 1;
    }
    memcpy(keys[0].value, "hello, flash", 12);
    memcpy(keys[2].value, "42", 2);
    const struct key *big = &keys[count - 1];

    /* ---- first run: write, move the big value to flash, read back, stop cleanly ---- */
    printf("first start (%llu MiB of DRAM)\n", (unsigned long long)(WRITE_BUDGET >> 20));
    struct store *store = open_store(directory, WRITE_BUDGET);
    if (store == NULL) {
        remove_directory(directory);
        return 1;
    }
    struct store_write write = {.condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_CLEAR};
    for (size_t i = 0; i < count; i++) {
        char what[128];
        enum store_status status = store_set(store, keys[i].name, strlen(keys[i].name),
                                             keys[i].value, keys[i].length, &write, NULL);
        snprintf(what, sizeof(what), "set %s: %zu bytes", keys[i].name, keys[i].length);
        check(status == STORE_OK, what);
        if (status != STORE_OK) printf("    %s\n", store_status_text(status));
    }
    /* Cut DRAM to 4 MiB: the 12 MiB value no longer fits and goes to flash (the writer
     * thread writes it, then DRAM lets it go). */
    store_set_budget(store, SMALL_BUDGET);
    printf("DRAM budget cut to %llu MiB\n", (unsigned long long)(SMALL_BUDGET >> 20));
    bool on_flash = false;
    for (int attempt = 0; attempt < 1000 && !on_flash; attempt++) {
        enum source source;
        if (!read_back(store, big, &source)) break;
        on_flash = source == STREAMED;
        if (!on_flash) sleep_ms(10);
    }
    check(on_flash, "the big value lives on flash only");
    read_all(store, keys, count, false);
    struct store_stats stats;
    store_get_stats(store, &stats);
    check(stats.used <= SMALL_BUDGET, "DRAM holds no more than its budget");
    store_shutdown(store); /* writes what is only in DRAM to flash, saves the index */
    store_destroy(store);
    printf("stopped cleanly\n");

    /* ---- second run: a warm restart on the same directory ---- */
    printf("restart (%llu MiB of DRAM)\n", (unsigned long long)(SMALL_BUDGET >> 20));
    store = open_store(directory, SMALL_BUDGET);
    if (store == NULL) {
        remove_directory(directory);
        return 1;
    }
    struct flash_stats flash;
    check(store_get_flash_stats(store, &flash), "the store has a flash tier");
    printf("  recovery from %s: %llu items in %llu ms (direct I/O %s)\n",
           flash.recovery_source != NULL ? flash.recovery_source : "?",
           (unsigned long long)flash.recovered_items, (unsigned long long)flash.recovery_ms,
           flash.direct_io ? "on" : "off");
    check(flash.recovery_source != NULL && strcmp(flash.recovery_source, "index") == 0,
          "warm restart: the saved index was loaded, no scan");
    check(store_count(store) == count, "every key is in the index");
    read_all(store, keys, count, true);
    store_shutdown(store);
    store_destroy(store);
    metrics_teardown(); /* every thread that used the store has ended */

    remove_directory(directory);
    for (size_t i = 0; i < count; i++)
        free(keys[i].value);
    printf("engine_embed: %s\n", failures == 0 ? "all checks passed" : "FAILED");
    return failures == 0 ? 0 : 1;
}
