/* Fault injection sweeps over the flash tier, in the manner of SQLite's: for each fault
 * site (an allocation, an io_uring submission, a write's or a read's completion, a sync,
 * an open) and for N = 1, 2, ... the Nth call fails while a workload runs, until the
 * workload makes fewer than N calls. Each time: no crash (ASan and UBSan watch), no wrong
 * value ever served, every acknowledged write still there after a crash when the
 * durability policy promises it (write-through with fsync always), and the failure
 * counted where the tier counts it.
 *
 * Built only in the fault build (build/fault, -DSTRATA_FAULT_INJECTION, allocations
 * wrapped); `make unit-fault` runs it. */
#include "../unit/test.h"
#include "base/clock.h"
#include "base/fault.h"
#include "base/log.h"
#include "base/output_queue.h"
#include "engine/flash.h"
#include "engine/store.h"
#include "engine/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_KEYS       160
#define SWEEP_LIMIT    5000
#define VERSIONS_KEPT  64
#define MAX_VALUE_SIZE (96 * 1024)

static char base_directory[256];
static unsigned char value_buffer[MAX_VALUE_SIZE];

/* ---- values and the model of what each key may hold ----------------------------- */

/* The value of KEY at VERSION into OUTPUT; returns its length (1 byte to 96 KiB). */
static size_t value_of(int key, uint32_t version, unsigned char *output) {
    uint32_t seed = (uint32_t)key * 2654435761u ^ version * 40503u;
    size_t length = 1 + seed % (version % 7 == 0 ? MAX_VALUE_SIZE : 6000);
    for (size_t i = 0; i < length; i++) {
        seed = seed * 1103515245u + 12345u;
        output[i] = (unsigned char)(seed >> 16);
    }
    return length;
}

/* What a key may hold: the version acknowledged last (present or deleted), the versions
 * written after it whose write failed (they may or may not have landed), and every
 * version ever written to it. */
struct key_model {
    uint32_t acknowledged; /* 0: never acknowledged */
    bool acknowledged_present;
    uint32_t uncertain[VERSIONS_KEPT];
    int uncertain_count;
    bool delete_uncertain; /* a failed delete came after the acknowledged state */
    uint32_t ever[VERSIONS_KEPT];
    int ever_count;
};

static struct key_model model[MAX_KEYS];
static int keys = MAX_KEYS; /* keys the scenario uses */

static void model_write(int key, uint32_t version, enum store_status status) {
    struct key_model *entry = &model[key];
    if (entry->ever_count < VERSIONS_KEPT) entry->ever[entry->ever_count++] = version;
    if (status == STORE_OK) {
        entry->acknowledged = version;
        entry->acknowledged_present = true;
        entry->uncertain_count = 0;
        entry->delete_uncertain = false;
    } else if (entry->uncertain_count < VERSIONS_KEPT) {
        entry->uncertain[entry->uncertain_count++] = version;
    }
}

static void model_delete(int key, enum store_status status) {
    struct key_model *entry = &model[key];
    if (status == STORE_OK || status == STORE_NOT_FOUND) {
        entry->acknowledged_present = false;
        entry->uncertain_count = 0;
        entry->delete_uncertain = false;
    } else {
        entry->delete_uncertain = true;
    }
}

static void key_name(int key, char *name, size_t size) {
    snprintf(name, size, "key:%03d", key);
}

/* How strictly a read is judged. */
enum check {
    CHECK_CURRENT, /* no crash since the workload: the acknowledged state or a failed write */
    CHECK_DURABLE, /* after a crash with write-through and fsync always: the same, and an
                      acknowledged value must be present */
    CHECK_ANY,     /* after a crash without durability (write-back), or after a recovery
                      that could not read everything: any version the key was ever given
                      (a lost delete brings back an older value), or nothing */
};

/* Whether VALUE (LENGTH bytes) is one KEY may hold. */
static bool allowed_value(int key, const unsigned char *value, uint64_t length, enum check check) {
    const struct key_model *entry = &model[key];
    int count = check == CHECK_ANY ? entry->ever_count : entry->uncertain_count + 1;
    for (int i = 0; i < count; i++) {
        uint32_t version;
        if (check == CHECK_ANY) {
            version = entry->ever[i];
        } else if (i == 0) {
            if (!entry->acknowledged_present && !entry->delete_uncertain) continue;
            version = entry->acknowledged;
        } else {
            version = entry->uncertain[i - 1];
        }
        if (version == 0) continue;
        size_t expected = value_of(key, version, value_buffer);
        if (expected == length && memcmp(value_buffer, value, length) == 0) return true;
    }
    return false;
}

/* Reads KEY and judges the answer. Returns 1 for a violation, else 0. */
static int check_key(struct store *store, int key, enum check check, const char *when) {
    char name[32];
    key_name(key, name, sizeof(name));
    struct item *item = NULL;
    enum store_status status = store_get(store, name, strlen(name), &item);
    const struct key_model *entry = &model[key];
    if (status == STORE_OK) {
        bool allowed = allowed_value(key, item_value(item), item_value_length(item), check);
        uint64_t length = item_value_length(item);
        item_release(item);
        if (allowed) return 0;
        fprintf(stderr, "%s: %s holds a value it may not hold (%llu bytes)\n", when, name,
                (unsigned long long)length);
        return 1;
    }
    if (status == STORE_NOT_FOUND) {
        if (check != CHECK_DURABLE || !entry->acknowledged_present || entry->delete_uncertain) {
            return 0;
        }
        fprintf(stderr, "%s: %s lost its acknowledged version %u\n", when, name,
                entry->acknowledged);
        return 1;
    }
    if (status == STORE_IO_ERROR || status == STORE_ALLOCATION_FAILED ||
        status == STORE_NO_MEMORY) {
        return 0; /* an error, not an answer: allowed while faults are injected */
    }
    fprintf(stderr, "%s: %s read failed: %s\n", when, name, store_status_text(status));
    return 1;
}

static int check_model(struct store *store, enum check check, const char *when) {
    int violations = 0;
    for (int key = 0; key < keys; key++)
        violations += check_key(store, key, check, when);
    return violations;
}

/* ---- stores and workloads ------------------------------------------------------- */

struct scenario {
    const char *name;
    uint64_t memory;
    uint64_t ssd_size;
    bool write_through;
    enum store_fsync fsync;
    bool durable;   /* acknowledged writes must survive a crash */
    int keys;       /* keys written, at most MAX_KEYS */
    int operations; /* writes and deletes in the workload */
};

static void remove_directory(const char *path) {
    DIR *directory = opendir(path);
    if (directory == NULL) return;
    struct dirent *entry;
    char file[512];
    while ((entry = readdir(directory)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        snprintf(file, sizeof(file), "%s/%s", path, entry->d_name);
        unlink(file);
    }
    closedir(directory);
    rmdir(path);
}

/* Opens SCENARIO's store over DIRECTORY and waits for its recovery. Returns NULL (with a
 * reason on standard error when LOUD) if it cannot start. */
static struct store *open_store(const struct scenario *scenario, const char *directory, bool loud) {
    struct store_config config = {
        .memory_budget = scenario->memory,
        .max_value = 64 << 20,
        .shards = 16,
        .flash =
            {
                .directory = directory,
                .size = scenario->ssd_size,
                .segment_size = 1 << 20,
                .write_through = scenario->write_through,
                .fsync = scenario->fsync,
                .pace_timeout_ms = 30000,
            },
    };
    char error[256];
    struct store *store = store_create(&config, error, sizeof(error));
    if (store == NULL && loud) fprintf(stderr, "store_create: %s\n", error);
    if (store != NULL) store_wait_ready(store); /* the index is rebuilt in a thread */
    return store;
}

static const struct store_write plain_write = {.condition = STORE_ALWAYS};

/* Writes, deletes and reads keys, keeping the model up to date and checking every read.
 * Returns the number of wrong answers. */
static int run_workload(struct store *store, const struct scenario *scenario) {
    int violations = 0;
    static unsigned char value[MAX_VALUE_SIZE];
    for (int i = 0; i < scenario->operations; i++) {
        int key = (i * 7 + i / keys) % keys;
        char name[32];
        key_name(key, name, sizeof(name));
        if (i % 9 == 8) {
            model_delete(key, store_delete(store, name, strlen(name), NULL));
        } else {
            uint32_t version = (uint32_t)i + 1;
            size_t length = value_of(key, version, value);
            model_write(key, version,
                        store_set(store, name, strlen(name), value, length, &plain_write, NULL));
        }
        if (i % 3 == 0) violations += check_key(store, (i * 13) % keys, CHECK_CURRENT, "during");
    }
    return violations;
}

/* The tier's error counters, added up. */
static uint64_t flash_error_count(struct store *store) {
    struct flash_stats stats;
    store_get_flash_stats(store, &stats);
    return stats.write_errors + stats.sync_errors + stats.read_errors + stats.submit_failures;
}

/* True once the error counters move past BEFORE, waiting up to 10 s: the writer counts a
 * failed write when it reaps it, which can be after the workload has returned. */
static bool flash_errors_moved(struct store *store, uint64_t before) {
    for (int attempt = 0; attempt < 1000; attempt++) {
        if (flash_error_count(store) != before) return true;
        usleep(10 * 1000);
    }
    return false;
}

/* The next N of a sweep: every N at first, then in growing steps (a workload makes
 * thousands of allocations). With a persistent fault every call after the Nth fails as
 * well, so neighbouring Ns differ little: larger steps. */
static uint64_t next_n(uint64_t n, bool persistent) {
    return n + 1 + (persistent ? n / 4 : n / 25);
}

enum phase { DURING_WORKLOAD, DURING_SHUTDOWN, DURING_RECOVERY };

/* One sweep: SITE fails at its Nth call (PERSISTENT: and every call after) during PHASE
 * of SCENARIO, for N = 1, 2, ... until the phase makes fewer than N calls. */
static void sweep(const struct scenario *scenario, enum fault_site site, bool persistent,
                  enum phase phase) {
    static const char *const phase_names[] = {"workload", "shutdown", "recovery"};
    /* STRATA_FAULT_ONLY=SCENARIO/SITE runs only the sweeps of that scenario and site. */
    const char *only = getenv("STRATA_FAULT_ONLY");
    char label[64];
    snprintf(label, sizeof(label), "%s/%s", scenario->name, fault_site_name(site));
    if (only != NULL && strcmp(only, label) != 0) return;
    char directory[512];
    snprintf(directory, sizeof(directory), "%s/%s-%s-%s", base_directory, scenario->name,
             fault_site_name(site), phase_names[phase]);
    int violations = 0;
    uint64_t runs = 0, injected_total = 0, refused_starts = 0;
    int64_t started = clock_monotonic_ms();
    keys = scenario->keys;
    /* STRATA_FAULT_N=N runs only that N of each sweep (to look into one failure). */
    uint64_t only_n = getenv("STRATA_FAULT_N") ? strtoull(getenv("STRATA_FAULT_N"), NULL, 10) : 0;
    for (uint64_t n = only_n ? only_n : 1; n <= SWEEP_LIMIT; n = next_n(n, persistent)) {
        int violations_before = violations;
        fault_reset();
        remove_directory(directory);
        memset(model, 0, sizeof(model));
        struct store *store = open_store(scenario, directory, true);
        REQUIRE(store != NULL);
        struct fault_rule rule = {.nth = n, .persistent = persistent};
        struct fault_counts counts = {0};
        uint64_t errors_before = flash_error_count(store);
        if (phase == DURING_WORKLOAD) fault_configure(site, &rule);
        violations += run_workload(store, scenario);
        if (phase == DURING_WORKLOAD) {
            fault_get_counts(site, &counts);
            fault_reset();
            violations += check_model(store, CHECK_CURRENT, "after the workload");
            if (counts.injected > 0 && site != FAULT_alloc && site != FAULT_read &&
                !flash_errors_moved(store, errors_before)) {
                /* A failed write, sync, submission or open loses records: counted. */
                fprintf(stderr, "%s/%s n=%llu: a fault with no counter moving\n", scenario->name,
                        fault_site_name(site), (unsigned long long)n);
                violations++;
            }
        }
        if (phase == DURING_SHUTDOWN) {
            fault_configure(site, &rule);
            store_shutdown(store); /* writes DRAM items to flash, saves the index */
            fault_get_counts(site, &counts);
            fault_reset();
        }
        store_destroy(store); /* after a shutdown, a clean stop; else as after a crash */
        if (phase == DURING_RECOVERY) {
            fault_configure(site, &rule);
            store = open_store(scenario, directory, false);
            fault_get_counts(site, &counts);
            fault_reset();
            if (store == NULL) {
                refused_starts++; /* a clear error, and nothing lost: checked below */
            } else {
                violations += check_model(store, CHECK_ANY, "after a faulty recovery");
                store_destroy(store);
            }
        }
        store = open_store(scenario, directory, true);
        REQUIRE(store != NULL);
        violations +=
            check_model(store, scenario->durable ? CHECK_DURABLE : CHECK_ANY, "after a restart");
        store_destroy(store);
        if (violations != violations_before) {
            fprintf(stderr,
                    "  (%s at N=%llu: rerun with STRATA_FAULT_ONLY=%s STRATA_FAULT_N=%llu)\n",
                    label, (unsigned long long)n, label, (unsigned long long)n);
        }
        runs++;
        injected_total += counts.injected;
        if (counts.injected == 0 || only_n != 0) break; /* fewer than N calls, or just one */
    }
    remove_directory(directory);
    fault_reset();
    fprintf(stderr,
            "    %-13s %-6s %-10s %-8s %4llu runs, %5llu faults, %2llu refused starts, %5lld ms\n",
            scenario->name, fault_site_name(site), persistent ? "persistent" : "once",
            phase_names[phase], (unsigned long long)runs, (unsigned long long)injected_total,
            (unsigned long long)refused_starts, (long long)(clock_monotonic_ms() - started));
    CHECK(violations == 0);
    CHECK(injected_total > 0 || only_n != 0); /* the sweep reached the site at least once */
}

/* Write-through with fsync always: an acknowledged write is on flash and survives. Flash
 * is large enough that reclaim never runs, even when every write fails its sync and
 * gets a segment of its own. */
static const struct scenario durable_scenario = {
    .name = "write-through",
    .memory = 64 << 20,
    .ssd_size = 256 << 20,
    .write_through = true,
    .fsync = STORE_FSYNC_ALWAYS,
    .durable = true,
    .keys = 40,
    .operations = 120,
};

/* Write-back through a 512 KiB DRAM tier into 2 MiB of flash (two segments): demotion,
 * promotion and reclaim with reinsertion all run; values may be evicted, never wrong. */
static const struct scenario cache_scenario = {
    .name = "write-back",
    .memory = 512 << 10,
    .ssd_size = 2 << 20,
    .write_through = false,
    .fsync = STORE_FSYNC_ALWAYS,
    .durable = false,
    .keys = 160,
    .operations = 450,
};

/* Without faults, the workloads reach the paths the sweeps are about. */
static void test_workloads_reach_every_path(void) {
    char directory[512];
    snprintf(directory, sizeof(directory), "%s/paths", base_directory);
    const struct scenario *scenarios[] = {&durable_scenario, &cache_scenario};
    for (int i = 0; i < 2; i++) {
        remove_directory(directory);
        memset(model, 0, sizeof(model));
        keys = scenarios[i]->keys;
        struct store *store = open_store(scenarios[i], directory, true);
        REQUIRE(store != NULL);
        CHECK(run_workload(store, scenarios[i]) == 0);
        CHECK(check_model(store, CHECK_CURRENT, "no faults") == 0);
        struct flash_stats stats;
        store_get_flash_stats(store, &stats);
        fprintf(stderr, "    %-13s written %llu B, %llu reads, %llu promotions, %llu reclaims\n",
                scenarios[i]->name, (unsigned long long)stats.bytes_written,
                (unsigned long long)stats.reads, (unsigned long long)stats.promotions,
                (unsigned long long)stats.reclaims);
        CHECK(stats.bytes_written > 0);
        CHECK(stats.write_errors + stats.sync_errors + stats.read_errors == 0);
        if (scenarios[i] == &cache_scenario) {
            CHECK(stats.reads > 0 && stats.promotions > 0 && stats.reclaims > 0);
        }
        store_destroy(store);
    }
    remove_directory(directory);
}

/* Reads STREAM's bytes [0, length) into OUTPUT through an output queue, as a
 * connection would send them. Returns the bytes received; *FAILED is set when the queue
 * failed (the connection would close) before the stream was whole. */
static size_t drain_stream(struct store_stream *stream, unsigned char *output, size_t length,
                           bool *failed) {
    struct output_queue queue;
    output_queue_init(&queue);
    store_stream_send(stream, 0, length, &queue, NULL, NULL);
    size_t received = 0;
    struct iovec iovecs[16];
    for (;;) {
        int count = output_queue_iovecs(&queue, iovecs, 16);
        if (count == 0) break; /* whole, or failed: without a ring nothing waits */
        size_t taken = 0;
        for (int i = 0; i < count; i++) {
            memcpy(output + received + taken, iovecs[i].iov_base, iovecs[i].iov_len);
            taken += iovecs[i].iov_len;
        }
        received += taken;
        output_queue_consume(&queue, taken);
    }
    *failed = queue.failed;
    output_queue_clear(&queue);
    return received;
}

/* Streams (values too large for DRAM, sent from flash piece by piece) under read or
 * allocation faults: the value arrives whole and right, or the reply fails before its
 * last piece; nothing leaks or is freed twice (ASan watches). */
/* Opens a fresh store in DIRECTORY holding VALUE (LENGTH bytes, more than 4 MiB) as
 * "big", then cuts the DRAM budget to 4 MiB so that the value lives on flash and a read
 * of it is a stream. Returns NULL if the store cannot be opened. */
static struct store *store_with_big_value_on_flash(const char *directory,
                                                   const unsigned char *value, size_t length) {
    static const struct scenario streaming = {
        .name = "stream",
        .memory = 32 << 20,
        .ssd_size = 64 << 20,
        .fsync = STORE_FSYNC_NEVER,
        .keys = 1,
    };
    remove_directory(directory);
    struct store *store = open_store(&streaming, directory, true);
    if (store == NULL) return NULL;
    CHECK(store_set(store, "big", 3, value, length, &plain_write, NULL) == STORE_OK);
    store_set_budget(store, 4 << 20); /* the value moves to flash */
    return store;
}

static void stream_sweep(enum fault_site site) {
    char directory[512];
    snprintf(directory, sizeof(directory), "%s/stream", base_directory);
    size_t length = 6 << 20; /* larger than a 4 MiB budget: 24 pieces of 256 KiB */
    unsigned char *value = malloc(length), *received = malloc(length);
    REQUIRE(value != NULL && received != NULL);
    for (size_t i = 0; i < length; i++)
        value[i] = (unsigned char)(i * 7 + i / 4099);
    uint64_t runs = 0, whole = 0, failed_replies = 0;
    for (uint64_t n = 1; n <= 400; n++) {
        fault_reset();
        struct store *store = store_with_big_value_on_flash(directory, value, length);
        REQUIRE(store != NULL);
        struct fault_rule rule = {.nth = n};
        fault_configure(site, &rule);
        struct store_read_options options = {.stream = true};
        struct store_value found;
        enum store_status status = store_read(store, "big", 3, &options, &found, NULL, NULL);
        bool failed = false;
        if (status == STORE_OK) {
            CHECK(found.stream != NULL);
            size_t got = drain_stream(found.stream, received, length, &failed);
            if (!failed) {
                CHECK(got == length && memcmp(received, value, length) == 0);
                whole++;
            } else {
                CHECK(got < length); /* never the whole reply */
                failed_replies++;
            }
        } else {
            CHECK(status == STORE_IO_ERROR || status == STORE_NOT_FOUND ||
                  (site == FAULT_alloc &&
                   (status == STORE_ALLOCATION_FAILED || status == STORE_NO_MEMORY)));
            failed_replies++;
        }
        struct fault_counts counts;
        fault_get_counts(site, &counts);
        fault_reset();
        store_destroy(store);
        runs++;
        if (counts.injected == 0) break;
    }
    fprintf(stderr, "    %-6s %llu runs: %llu whole, %llu failed before their last piece\n",
            fault_site_name(site), (unsigned long long)runs, (unsigned long long)whole,
            (unsigned long long)failed_replies);
    CHECK(whole >= 1 && failed_replies >= 3);
    remove_directory(directory);
    free(value);
    free(received);
}

/* store_stream_copy()'s callback: records the outcome. */
static void copy_finished(void *context, enum store_status status) {
    *(enum store_status *)context = status;
}

/* A copy out of a stream that ends inside store_stream_copy() (no io_ring on this thread:
 * every piece is read at once) reports its outcome once, with the right bytes, and the
 * stream is freed after the call, never during it (ASan watches). A range within the
 * first piece and the whole value, both. */
static void test_stream_copy_that_ends_at_once(void) {
    char directory[512];
    snprintf(directory, sizeof(directory), "%s/copy", base_directory);
    size_t length = 6 << 20;
    unsigned char *value = malloc(length), *copied = malloc(length);
    REQUIRE(value != NULL && copied != NULL);
    for (size_t i = 0; i < length; i++)
        value[i] = (unsigned char)(i * 13 + i / 4093);
    struct store *store = store_with_big_value_on_flash(directory, value, length);
    REQUIRE(store != NULL);
    const size_t ranges[][2] = {{100, 4000}, {0, 6 << 20}};
    for (size_t r = 0; r < 2; r++) {
        struct store_read_options options = {.stream = true};
        struct store_value found;
        REQUIRE(store_read(store, "big", 3, &options, &found, NULL, NULL) == STORE_OK);
        REQUIRE(found.stream != NULL);
        memset(copied, 0, length);
        enum store_status outcome = STORE_PENDING;
        store_stream_copy(found.stream, ranges[r][0], ranges[r][1], copied, copy_finished,
                          &outcome);
        CHECK(outcome == STORE_OK);
        CHECK(memcmp(copied, value + ranges[r][0], ranges[r][1]) == 0);
    }
    store_destroy(store);
    remove_directory(directory);
    free(value);
    free(copied);
}

static void test_streams_under_faults(void) {
    stream_sweep(FAULT_read);
    stream_sweep(FAULT_alloc);
}

static void test_write_path(void) {
    enum fault_site sites[] = {FAULT_write, FAULT_sync, FAULT_submit, FAULT_open};
    for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++) {
        sweep(&durable_scenario, sites[i], false, DURING_WORKLOAD);
        sweep(&durable_scenario, sites[i], true, DURING_WORKLOAD);
    }
}

static void test_demotion_reads_and_reclaim(void) {
    enum fault_site sites[] = {FAULT_write, FAULT_sync, FAULT_read, FAULT_submit, FAULT_open};
    for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++) {
        sweep(&cache_scenario, sites[i], false, DURING_WORKLOAD);
    }
    sweep(&cache_scenario, FAULT_read, true, DURING_WORKLOAD);
}

static void test_allocations(void) {
    sweep(&durable_scenario, FAULT_alloc, false, DURING_WORKLOAD);
    sweep(&cache_scenario, FAULT_alloc, false, DURING_WORKLOAD);
}

static void test_index_save(void) {
    enum fault_site sites[] = {FAULT_open, FAULT_write, FAULT_sync};
    for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++) {
        sweep(&durable_scenario, sites[i], false, DURING_SHUTDOWN);
    }
    /* A clean stop first writes what is only in DRAM: with write-back there is some. */
    sweep(&cache_scenario, FAULT_alloc, false, DURING_SHUTDOWN);
    sweep(&cache_scenario, FAULT_write, false, DURING_SHUTDOWN);
}

static void test_recovery(void) {
    enum fault_site sites[] = {FAULT_open, FAULT_read, FAULT_alloc};
    for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++) {
        sweep(&durable_scenario, sites[i], false, DURING_RECOVERY);
        sweep(&durable_scenario, sites[i], true, DURING_RECOVERY);
    }
}

/* With write-through, a value still in DRAM keeps a copy on flash even when reclaim takes
 * the segment its first copy was in: after a crash it is there. */
/* Damages the magic of the record number RECORD (0: the first) of segment 1 in
 * DIRECTORY, as a torn or corrupted write would. Returns true if there was one. */
static bool damage_record_header(const char *directory, int record) {
    char path[600];
    snprintf(path, sizeof(path), "%s/segment-%08u", directory, 1u);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    uint64_t offset = FLASH_BLOCK;
    bool damaged = false;
    for (int i = 0;; i++) {
        struct flash_record_header header;
        if (pread(fd, &header, sizeof(header), (off_t)offset) != (ssize_t)sizeof(header) ||
            header.magic != FLASH_RECORD_MAGIC) {
            break;
        }
        if (i == record) {
            uint32_t garbage = 0x5a5a5a5au;
            damaged = pwrite(fd, &garbage, sizeof(garbage), (off_t)offset) == sizeof(garbage);
            break;
        }
        offset += flash_record_size(header.key_length, header.value_length);
    }
    close(fd);
    return damaged;
}

/* With write-through, a value still in DRAM keeps a copy on flash even when reclaim takes
 * the segment its first copy was in: after a crash it is there. With DAMAGE_AT >= 0 the
 * header of that record of the first segment is damaged first: reclaim's walk stops
 * there, and the copies past it must still be found and written again. */
static void copies_outlive_reclaim(int damage_at) {
    static const struct scenario churn = {
        .name = "write-through-churn",
        .memory = 64 << 20,
        .ssd_size = 4 << 20,
        .write_through = true,
        .fsync = STORE_FSYNC_ALWAYS,
        .durable = true,
        .keys = 20,
    };
    char directory[512];
    snprintf(directory, sizeof(directory), "%s/churn", base_directory);
    remove_directory(directory);
    memset(model, 0, sizeof(model));
    keys = churn.keys;
    struct store *store = open_store(&churn, directory, true);
    REQUIRE(store != NULL);
    static unsigned char value[MAX_VALUE_SIZE];
    for (int key = 0; key < keys; key++) { /* the values that stay */
        char name[32];
        key_name(key, name, sizeof(name));
        size_t length = value_of(key, 1, value);
        model_write(key, 1,
                    store_set(store, name, strlen(name), value, length, &plain_write, NULL));
    }
    if (damage_at >= 0) CHECK(damage_record_header(directory, damage_at));
    /* 12 MiB of short-lived values through 4 MiB of flash: every segment is reclaimed. */
    memset(value, 'x', 20000);
    for (int i = 0; i < 600; i++) {
        char name[32];
        snprintf(name, sizeof(name), "churn:%d", i);
        CHECK(store_set(store, name, strlen(name), value, 20000, &plain_write, NULL) == STORE_OK);
        snprintf(name, sizeof(name), "churn:%d", i - 5);
        if (i >= 5) store_delete(store, name, strlen(name), NULL);
    }
    struct flash_stats stats;
    store_get_flash_stats(store, &stats);
    CHECK(stats.reclaims >= 4);
    store_destroy(store); /* as after a crash */
    store = open_store(&churn, directory, true);
    REQUIRE(store != NULL);
    CHECK(check_model(store, CHECK_DURABLE, "after the churn and a crash") == 0);
    store_destroy(store);
    remove_directory(directory);
}

/* A writer that has finished everything does not keep a caller waiting: a write that
 * saw demotions under way, then found the writer done by the time it waited, once
 * waited the whole pace-timeout for progress that would never come (and failed). */
static void test_waiting_for_an_idle_writer_ends_at_once(void) {
    char directory[512];
    snprintf(directory, sizeof(directory), "%s/idle", base_directory);
    remove_directory(directory);
    keys = cache_scenario.keys;
    struct store *store = open_store(&cache_scenario, directory, true);
    REQUIRE(store != NULL);
    static unsigned char value[MAX_VALUE_SIZE];
    for (int key = 0; key < keys; key++) { /* demotions, then an idle writer */
        char name[32];
        key_name(key, name, sizeof(name));
        size_t length = value_of(key, 1, value);
        store_set(store, name, strlen(name), value, length, &plain_write, NULL);
    }
    int64_t started = clock_monotonic_ms();
    while (atomic_load(&store->demoting_bytes) > 0 && clock_monotonic_ms() - started < 10000)
        usleep(1000);
    started = clock_monotonic_ms();
    bool progressed = flash_wait_progress(store->flash, started + 10000);
    int64_t waited = clock_monotonic_ms() - started;
    CHECK(progressed);
    CHECK(waited < 5000); /* not the 10 s asked for; room for a loaded machine */
    store_destroy(store);
    remove_directory(directory);
}

static void test_write_through_copies_outlive_reclaim(void) {
    copies_outlive_reclaim(-1);
}

static void test_copies_outlive_a_reclaim_that_stops_short(void) {
    copies_outlive_reclaim(2);
}

int main(void) {
    /* In memory (tmpfs) where there is one: the sweeps open thousands of stores and sync
     * after every write, which a disk would make minutes long; what is tested is what
     * the tier does with a failure, not the disk. */
    struct stat shm;
    const char *parent = stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(base_directory, sizeof(base_directory), "%s/strata-faults-%ld", parent,
             (long)getpid());
    if (mkdir(base_directory, 0755) != 0 && errno != EEXIST) {
        perror(base_directory);
        return 1;
    }
    /* The tier's log lines (every injected failure is logged) go to a file. */
    char log_path[512];
    snprintf(log_path, sizeof(log_path), "%s.log", base_directory);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd >= 0) log_set_fd(log_fd);
    fprintf(stderr, "test_faults: the tier's log is in %s\n", log_path);
    RUN_TEST(test_workloads_reach_every_path);
    RUN_TEST(test_waiting_for_an_idle_writer_ends_at_once);
    RUN_TEST(test_write_through_copies_outlive_reclaim);
    RUN_TEST(test_copies_outlive_a_reclaim_that_stops_short);
    RUN_TEST(test_stream_copy_that_ends_at_once);
    RUN_TEST(test_streams_under_faults);
    RUN_TEST(test_write_path);
    RUN_TEST(test_demotion_reads_and_reclaim);
    RUN_TEST(test_allocations);
    RUN_TEST(test_index_save);
    RUN_TEST(test_recovery);
    rmdir(base_directory);
    return test_main_result();
}
