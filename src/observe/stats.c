/* INFO, /metrics, /info and the status page history, all rendered from stats.def. */
#include "observe/stats.h"
#include "engine/engine_options.h"

#include "base/fault.h"
#include "engine/namespaces.h"
#include "engine/objects.h"

#include "base/byte_buffer.h"
#include "base/checks.h"
#include "base/clock.h"
#include "base/numbers.h"
#include "base/version.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/utsname.h>
#include <unistd.h>

/* The fast ring: 16 samples 100 ms apart, for INFO's instantaneous rates. */
#define FAST_SAMPLES 16
/* The history: one sample a second for the last ten minutes. */
#define HISTORY_SAMPLES     600
#define SAMPLES_PER_HISTORY 10

/* One second of the status page's history. */
struct history_sample {
    int64_t time_ms; /* Unix time */
    double dram_used;
    double dram_budget;
    double dram_items; /* keys whose value is in DRAM (flash-only keys left out) */
    double flash_used; /* bytes of segment files; 0 (and capacity 0) without a flash tier */
    double flash_capacity;
    double flash_items; /* keys whose value is only on flash */
    double hit_ratio;   /* hits / lookups in the second, or NAN when there were none */
    /* Requests of every protocol (RESP commands, HTTP and S3 requests, native frames),
     * then each protocol's, and the keys the native frames named. */
    double operations_per_second;
    double resp_commands_per_second;
    double http_requests_per_second;
    double native_requests_per_second;
    double native_keys_per_second;
    double input_bytes_per_second;
    double output_bytes_per_second;
    double flash_read_bytes_per_second;
    double flash_write_bytes_per_second;
    double latency_p50_us; /* over the requests of every protocol in the second */
    double latency_p99_us;
    /* The same over each protocol's requests (http: S3 included). */
    double resp_latency_p50_us;
    double resp_latency_p99_us;
    double http_latency_p50_us;
    double http_latency_p99_us;
    double native_latency_p50_us;
    double native_latency_p99_us;
};

/* Counter totals at the previous history sample, to turn into per-second figures. */
struct history_totals {
    int64_t time_ms;
    int64_t hits, misses, resp_commands, http_requests, native_requests, native_keys, input, output,
        flash_read, flash_written;
    struct histogram_reading latency; /* every protocol's */
    struct histogram_reading resp_latency, http_latency, native_latency;
};

struct stats {
    struct stats_environment environment;
    int64_t start_time_ms;
    char run_id[41]; /* INFO's run_id: 40 random hex digits, new each start */
    _Atomic int state;
    struct check_owner lock_owner; /* who holds lock (checking builds; atomic) */
    pthread_mutex_t lock;          /* guards everything below */
    int64_t fast_times[FAST_SAMPLES];
    int64_t fast_commands[FAST_SAMPLES];
    int64_t fast_requests[FAST_SAMPLES]; /* every protocol's (all_requests()) */
    int64_t fast_input[FAST_SAMPLES];
    int64_t fast_output[FAST_SAMPLES];
    int fast_next;
    int fast_count;
    int samples_since_history;
    /* INFO's server-section port fields, in the order the front ends were set up.
     * Written at start-up only, before any client is served. */
    struct {
        const char *field; /* "tcp_port"; not owned (a front end's constant) */
        int port;
    } ports[STATS_MAX_PORTS];
    int port_count;
    struct history_totals previous;
    bool have_previous;
    struct history_sample history[HISTORY_SAMPLES];
    int history_next;
    int history_count;
};

/* The figures one rendering reads, taken at one moment. */
struct stats_snapshot {
    struct store_stats store;      /* the default namespace's store */
    struct store_stats all_stores; /* event counters summed over every namespace's store */
    struct flash_stats flash;
    struct objects_stats objects;
    int64_t metrics[METRICS_CAPACITY];
    const struct options *options;
    double resident_bytes;
    double commands_per_second;
    double requests_per_second; /* every protocol */
    double input_bytes_per_second;
    double output_bytes_per_second;
    int64_t uptime_seconds;
    enum server_state state;
};

enum stat_type { STAT_COUNTER, STAT_GAUGE };
enum stat_format { STAT_INTEGER, STAT_DECIMAL, STAT_BYTES };

struct stat_row {
    int section;
    const char *info_name;
    const char *family;
    const char *labels;
    enum stat_type type;
    enum stat_format format;
    const char *help;
};

static const struct stat_row rows[] = {
#define STAT(identifier, section, info_name, family, labels, type, format, help, value)            \
    {STATS_SECTION_##section, info_name, family, labels, STAT_##type, STAT_##format, help},
#include "observe/stats.def"
#undef STAT
};

#define ROW_COUNT (sizeof(rows) / sizeof(rows[0]))

enum stat_id {
#define STAT(identifier, section, info_name, family, labels, type, format, help, value)            \
    STAT_ID_##identifier,
#include "observe/stats.def"
#undef STAT
};

/* The metric called NAME in SNAPSHOT (0 if no module declared it). */
static double metric_in(const struct stats_snapshot *snapshot, const char *name) {
    metric_id id = metric_find(name);
    return id < 0 ? 0 : (double)snapshot->metrics[id];
}

/* The numeric option called NAME (0 if no module declared it). */
static double option_in(const struct stats_snapshot *snapshot, const char *name) {
    int id = options_find(name);
    return id < 0 ? 0 : (double)options_number(snapshot->options, id);
}

/* The current value of the metric called NAME, or 0 if no module declared it. */
static int64_t metric_read_named(const char *name) {
    metric_id id = metric_find(name);
    return id < 0 ? 0 : metric_read(id);
}

/* The value of row ID in SNAPSHOT: the table's value expressions, in one switch. */
static double row_value(enum stat_id id, const struct stats_snapshot *snapshot) {
#define METRIC(name)      metric_in(snapshot, #name)
#define OPTION(name)      option_in(snapshot, name)
#define STORE(field)      ((double)snapshot->store.field)
#define ALL_STORES(field) ((double)snapshot->all_stores.field)
#define FLASH(field)      ((double)snapshot->flash.field)
#define OBJECTS(field)    ((double)snapshot->objects.field)
    switch (id) {
#define STAT(identifier, section, info_name, family, labels, type, format, help, value)            \
    case STAT_ID_##identifier:                                                                     \
        return (value);
#include "observe/stats.def"
#undef STAT
    }
#undef METRIC
#undef OPTION
#undef STORE
#undef ALL_STORES
    return 0;
}

static const struct {
    const char *name;
    int bit;
} section_names[] = {
    {"server", STATS_SECTION_SERVER},     {"clients", STATS_SECTION_CLIENTS},
    {"memory", STATS_SECTION_MEMORY},     {"stats", STATS_SECTION_STATS},
    {"keyspace", STATS_SECTION_KEYSPACE}, {"strata", STATS_SECTION_STRATA},
    {"flash", STATS_SECTION_FLASH},       {"namespaces", STATS_SECTION_NAMESPACES},
    {"faults", STATS_SECTION_FAULTS},     {"objects", STATS_SECTION_OBJECTS},
    {"all", STATS_SECTION_ALL},           {"default", STATS_SECTION_ALL},
    {"everything", STATS_SECTION_ALL},
};

/* ---- life cycle ------------------------------------------------------------------ */

struct stats *stats_create(const struct stats_environment *environment) {
    struct stats *stats = calloc(1, sizeof(*stats));
    if (stats == NULL) return NULL;
    stats->environment = *environment;
    stats->start_time_ms = clock_realtime_ms();
    unsigned char bytes[20];
    if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != (ssize_t)sizeof(bytes)) {
        uint64_t seed = (uint64_t)clock_monotonic_ns() ^ (uint64_t)getpid();
        for (size_t i = 0; i < sizeof(bytes); i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            bytes[i] = (unsigned char)(seed >> 56);
        }
    }
    for (size_t i = 0; i < sizeof(bytes); i++)
        snprintf(stats->run_id + 2 * i, 3, "%02x", bytes[i]);
    atomic_init(&stats->state, SERVER_STARTING);
    pthread_mutex_init(&stats->lock, NULL);
    return stats;
}

void stats_destroy(struct stats *stats) {
    if (stats == NULL) return;
    pthread_mutex_destroy(&stats->lock);
    free(stats);
}

void stats_set_port(struct stats *stats, const char *field, int port) {
    for (int i = 0; i < stats->port_count; i++) {
        if (strcmp(stats->ports[i].field, field) == 0) {
            stats->ports[i].port = port;
            return;
        }
    }
    if (stats->port_count == STATS_MAX_PORTS) return;
    stats->ports[stats->port_count].field = field;
    stats->ports[stats->port_count].port = port;
    stats->port_count++;
}

void stats_set_state(struct stats *stats, enum server_state state) {
    atomic_store_explicit(&stats->state, (int)state, memory_order_release);
}

bool stats_change_state(struct stats *stats, enum server_state from, enum server_state to) {
    int expected = (int)from;
    return atomic_compare_exchange_strong_explicit(&stats->state, &expected, (int)to,
                                                   memory_order_acq_rel, memory_order_acquire);
}

enum server_state stats_state(const struct stats *stats) {
    return (enum server_state)atomic_load_explicit(&stats->state, memory_order_acquire);
}

const char *stats_state_reason(enum server_state state) {
    switch (state) {
    case SERVER_STARTING:
        return "starting";
    case SERVER_RECOVERING:
        return "recovering";
    case SERVER_SERVING:
        return "serving";
    case SERVER_DRAINING:
        return "shutting down (draining)";
    case SERVER_STOPPING:
        return "shutting down";
    }
    return "unknown";
}

int stats_section_bit(const char *name, size_t length) {
    for (size_t i = 0; i < sizeof(section_names) / sizeof(section_names[0]); i++) {
        if (strlen(section_names[i].name) == length &&
            strncasecmp(section_names[i].name, name, length) == 0) {
            return section_names[i].bit;
        }
    }
    return 0;
}

/* ---- sampling -------------------------------------------------------------------- */

/* Adds the reading of the histogram called NAME (if some module declared it) into TOTAL. */
static void add_histogram(const char *name, struct histogram_reading *total) {
    histogram_id id = histogram_find(name);
    if (id < 0) return;
    struct histogram_reading reading;
    metric_read_histogram(id, &reading);
    for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++)
        total->counts[bucket] += reading.counts[bucket];
    total->count += reading.count;
    total->sum_ns += reading.sum_ns;
}

/* Reads the request latency histograms into TOTALS: each protocol's (the Redis protocol's
 * command classes together; HTTP requests, S3 included; native frames), and all of them
 * added together. */
static void read_request_latency(struct history_totals *totals) {
    memset(&totals->resp_latency, 0, sizeof(totals->resp_latency));
    memset(&totals->http_latency, 0, sizeof(totals->http_latency));
    memset(&totals->native_latency, 0, sizeof(totals->native_latency));
    memset(&totals->latency, 0, sizeof(totals->latency));
    add_histogram("command_read", &totals->resp_latency);
    add_histogram("command_write", &totals->resp_latency);
    add_histogram("command_other", &totals->resp_latency);
    add_histogram("http_request", &totals->http_latency);
    add_histogram("native_request", &totals->native_latency);
    const struct histogram_reading *each[] = {&totals->resp_latency, &totals->http_latency,
                                              &totals->native_latency};
    for (size_t i = 0; i < sizeof(each) / sizeof(each[0]); i++) {
        for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++)
            totals->latency.counts[bucket] += each[i]->counts[bucket];
        totals->latency.count += each[i]->count;
        totals->latency.sum_ns += each[i]->sum_ns;
    }
}

/* Sets *P50 and *P99 to the quantiles, in microseconds, of the requests a histogram
 * counted between the readings BEFORE and NOW; leaves them alone (NAN) when there were
 * none. A bucket that went down (CONFIG RESETSTAT in between) counts as empty. */
static void interval_latency(const struct histogram_reading *now,
                             const struct histogram_reading *before, double *p50, double *p99) {
    struct histogram_reading interval;
    interval.count = 0;
    interval.sum_ns = now->sum_ns - before->sum_ns;
    for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
        interval.counts[bucket] = now->counts[bucket] - before->counts[bucket];
        if (interval.counts[bucket] < 0) interval.counts[bucket] = 0;
        interval.count += interval.counts[bucket];
    }
    if (interval.count == 0) return; /* no requests: no latency to show */
    *p50 = histogram_quantile_us(&interval, 0.50);
    *p99 = histogram_quantile_us(&interval, 0.99);
}

/* Requests answered so far, every protocol: Redis protocol commands, HTTP requests (S3
 * included) and native-protocol frames. */
static int64_t all_requests(void) {
    return metric_read_named("commands_processed") + metric_read_named("http_requests") +
           metric_read_named("native_requests");
}

/* Takes and lets go of STATS->lock, recording the holder for the rule checks. */
static void lock_stats(struct stats *stats) {
    pthread_mutex_lock(&stats->lock);
    check_acquired(&stats->lock_owner);
}

static void unlock_stats(struct stats *stats) {
    check_releasing(&stats->lock_owner);
    pthread_mutex_unlock(&stats->lock);
}

/* Adds the event counters of every namespace's store (the default one included) into
 * TOTAL: the server-wide figures (keyspace_hits, evicted_keys, ...). */
static void read_all_stores(const struct stats *stats, struct store_stats *total) {
    memset(total, 0, sizeof(*total));
    const struct namespace_table *table = stats->environment.namespaces;
    int count = table != NULL ? table->count : 1;
    for (int i = 0; i < count; i++) {
        struct store_stats one;
        store_get_stats(table != NULL ? table->list[i].store : stats->environment.store, &one);
        total->hits += one.hits;
        total->misses += one.misses;
        total->expired += one.expired;
        total->evicted += one.evicted;
        total->rejected_writes += one.rejected_writes;
    }
}

void stats_reset_counters(struct stats *stats) {
    metrics_reset();
    const struct namespace_table *table = stats->environment.namespaces;
    int count = table != NULL ? table->count : 1;
    for (int i = 0; i < count; i++)
        store_reset_counters(table != NULL ? table->list[i].store : stats->environment.store);
}

void stats_read_store_counters(const struct stats *stats, struct store_stats *total) {
    read_all_stores(stats, total);
}

/* The rate of a counter that went from BEFORE to NOW in SECONDS (> 0); 0 when it went
 * down (CONFIG RESETSTAT started it again). */
static double per_second(int64_t now, int64_t before, double seconds) {
    return now >= before ? (double)(now - before) / seconds : 0;
}

/* Adds one second to the history. Caller holds stats->lock. */
static void record_history(struct stats *stats) {
    STRATA_ASSERT(check_held(&stats->lock_owner));
    struct history_totals now;
    now.time_ms = clock_realtime_ms();
    struct store_stats all;
    read_all_stores(stats, &all);
    now.hits = (int64_t)all.hits;
    now.misses = (int64_t)all.misses;
    now.resp_commands = metric_read_named("commands_processed");
    now.http_requests = metric_read_named("http_requests");
    now.native_requests = metric_read_named("native_requests");
    now.native_keys = metric_read_named("native_keys");
    now.input = metric_read_named("net_input_bytes");
    now.output = metric_read_named("net_output_bytes");
    read_request_latency(&now);
    struct store_stats store;
    store_get_stats(stats->environment.store, &store);
    struct flash_stats flash;
    store_get_flash_stats(stats->environment.store, &flash);
    now.flash_read = (int64_t)flash.bytes_read;
    now.flash_written = (int64_t)flash.bytes_written;

    const struct history_totals *before = &stats->previous;
    double seconds = stats->have_previous ? (double)(now.time_ms - before->time_ms) / 1000.0 : 0;
    struct history_sample *sample = &stats->history[stats->history_next];
    memset(sample, 0, sizeof(*sample));
    sample->time_ms = now.time_ms;
    sample->dram_used = (double)store.used;
    sample->dram_budget = (double)store.budget;
    sample->dram_items = store.items > flash.items ? (double)(store.items - flash.items) : 0;
    sample->flash_used = (double)flash.used;
    sample->flash_capacity = (double)flash.capacity;
    sample->flash_items = (double)flash.items;
    sample->hit_ratio = NAN; /* unknown until there is an interval to measure */
    sample->operations_per_second = NAN;
    sample->resp_commands_per_second = NAN;
    sample->http_requests_per_second = NAN;
    sample->native_requests_per_second = NAN;
    sample->native_keys_per_second = NAN;
    sample->input_bytes_per_second = NAN;
    sample->output_bytes_per_second = NAN;
    sample->flash_read_bytes_per_second = NAN;
    sample->flash_write_bytes_per_second = NAN;
    sample->latency_p50_us = NAN;
    sample->latency_p99_us = NAN;
    sample->resp_latency_p50_us = NAN;
    sample->resp_latency_p99_us = NAN;
    sample->http_latency_p50_us = NAN;
    sample->http_latency_p99_us = NAN;
    sample->native_latency_p50_us = NAN;
    sample->native_latency_p99_us = NAN;
    if (stats->have_previous && seconds > 0) {
        int64_t hits = now.hits - before->hits, misses = now.misses - before->misses;
        if (hits + misses > 0) sample->hit_ratio = (double)hits / (double)(hits + misses);
        sample->resp_commands_per_second =
            per_second(now.resp_commands, before->resp_commands, seconds);
        sample->http_requests_per_second =
            per_second(now.http_requests, before->http_requests, seconds);
        sample->native_requests_per_second =
            per_second(now.native_requests, before->native_requests, seconds);
        sample->native_keys_per_second = per_second(now.native_keys, before->native_keys, seconds);
        sample->operations_per_second = sample->resp_commands_per_second +
                                        sample->http_requests_per_second +
                                        sample->native_requests_per_second;
        sample->input_bytes_per_second = per_second(now.input, before->input, seconds);
        sample->output_bytes_per_second = per_second(now.output, before->output, seconds);
        sample->flash_read_bytes_per_second =
            per_second(now.flash_read, before->flash_read, seconds);
        sample->flash_write_bytes_per_second =
            per_second(now.flash_written, before->flash_written, seconds);
        interval_latency(&now.latency, &before->latency, &sample->latency_p50_us,
                         &sample->latency_p99_us);
        interval_latency(&now.resp_latency, &before->resp_latency, &sample->resp_latency_p50_us,
                         &sample->resp_latency_p99_us);
        interval_latency(&now.http_latency, &before->http_latency, &sample->http_latency_p50_us,
                         &sample->http_latency_p99_us);
        interval_latency(&now.native_latency, &before->native_latency,
                         &sample->native_latency_p50_us, &sample->native_latency_p99_us);
    }
    stats->previous = now;
    stats->have_previous = true;
    stats->history_next = (stats->history_next + 1) % HISTORY_SAMPLES;
    if (stats->history_count < HISTORY_SAMPLES) stats->history_count++;
}

void stats_sample(struct stats *stats) {
    lock_stats(stats);
    int slot = stats->fast_next;
    stats->fast_times[slot] = clock_monotonic_ms();
    stats->fast_commands[slot] = metric_read_named("commands_processed");
    stats->fast_requests[slot] = all_requests();
    stats->fast_input[slot] = metric_read_named("net_input_bytes");
    stats->fast_output[slot] = metric_read_named("net_output_bytes");
    stats->fast_next = (slot + 1) % FAST_SAMPLES;
    if (stats->fast_count < FAST_SAMPLES) stats->fast_count++;
    if (++stats->samples_since_history >= SAMPLES_PER_HISTORY) {
        stats->samples_since_history = 0;
        record_history(stats);
    }
    unlock_stats(stats);
}

/* Per-second rate of a fast-sampled counter. Caller holds stats->lock. */
static double fast_rate(const struct stats *stats, const int64_t *values) {
    STRATA_ASSERT(check_held(&stats->lock_owner));
    if (stats->fast_count < 2) return 0;
    int newest = (stats->fast_next + FAST_SAMPLES - 1) % FAST_SAMPLES;
    int oldest = stats->fast_count < FAST_SAMPLES ? 0 : stats->fast_next;
    int64_t elapsed = stats->fast_times[newest] - stats->fast_times[oldest];
    if (elapsed <= 0) return 0;
    return (double)(values[newest] - values[oldest]) * 1000.0 / (double)elapsed;
}

/* Resident set size of this process, in bytes. */
static double resident_bytes(void) {
    FILE *file = fopen("/proc/self/statm", "r");
    if (file == NULL) return 0;
    unsigned long long total = 0, resident = 0;
    int fields = fscanf(file, "%llu %llu", &total, &resident);
    fclose(file);
    if (fields != 2) return 0;
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static void take_snapshot(struct stats *stats, struct stats_snapshot *snapshot) {
    memset(snapshot, 0, sizeof(*snapshot));
    store_get_stats(stats->environment.store, &snapshot->store);
    read_all_stores(stats, &snapshot->all_stores);
    store_get_flash_stats(stats->environment.store, &snapshot->flash);
    if (stats->environment.objects != NULL) {
        objects_get_stats(stats->environment.objects, &snapshot->objects);
    }
    for (int id = 0; id < metrics_count(); id++)
        snapshot->metrics[id] = metric_read(id);
    snapshot->options = stats->environment.options;
    snapshot->resident_bytes = resident_bytes();
    lock_stats(stats);
    snapshot->commands_per_second = fast_rate(stats, stats->fast_commands);
    snapshot->requests_per_second = fast_rate(stats, stats->fast_requests);
    snapshot->input_bytes_per_second = fast_rate(stats, stats->fast_input);
    snapshot->output_bytes_per_second = fast_rate(stats, stats->fast_output);
    unlock_stats(stats);
    snapshot->uptime_seconds = (clock_realtime_ms() - stats->start_time_ms) / 1000;
    snapshot->state = stats_state(stats);
}

/* ---- INFO ------------------------------------------------------------------------ */

/* gcc_version: the compiler that built strata (clang also defines __GNUC__). */
#ifdef __GNUC__
#define COMPILER_MAJOR __GNUC__
#define COMPILER_MINOR __GNUC_MINOR__
#define COMPILER_PATCH __GNUC_PATCHLEVEL__
#else
#define COMPILER_MAJOR 0
#define COMPILER_MINOR 0
#define COMPILER_PATCH 0
#endif

static void section_server(struct stats *stats, const struct stats_snapshot *snapshot,
                           struct byte_buffer *text) {
    const struct stats_environment *environment = &stats->environment;
    struct utsname system;
    if (uname(&system) != 0) memset(&system, 0, sizeof(system));
    /* Redis 7.0's fields (redis_git_sha1 and redis_build_id: none, as a Redis built
     * from a tarball reports), with strata's version beside Redis's it speaks. */
    byte_buffer_appendf(text,
                        "redis_version:%s\r\n"
                        "redis_git_sha1:00000000\r\n"
                        "redis_git_dirty:0\r\n"
                        "redis_build_id:0\r\n"
                        "strata_version:%s\r\n"
                        "redis_mode:standalone\r\n"
                        "os:%s %s %s\r\n"
                        "arch_bits:%d\r\n"
                        "monotonic_clock:POSIX clock_gettime\r\n"
                        "multiplexing_api:epoll\r\n"
                        "atomicvar_api:c11-builtin\r\n"
                        "gcc_version:%d.%d.%d\r\n"
                        "process_id:%ld\r\n"
                        "process_supervised:no\r\n"
                        "run_id:%s\r\n",
                        STRATA_REDIS_VERSION, STRATA_VERSION, system.sysname, system.release,
                        system.machine, (int)(sizeof(void *) * 8), COMPILER_MAJOR, COMPILER_MINOR,
                        COMPILER_PATCH, (long)getpid(), stats->run_id);
    for (int i = 0; i < stats->port_count; i++)
        byte_buffer_appendf(text, "%s:%d\r\n", stats->ports[i].field, stats->ports[i].port);
    byte_buffer_appendf(text,
                        "server_time_usec:%lld\r\n"
                        "uptime_in_seconds:%lld\r\n"
                        "uptime_in_days:%lld\r\n"
                        "worker_threads:%d\r\n"
                        "server_state:%s\r\n"
                        "loading:%d\r\n"
                        "executable:%s\r\n"
                        "config_file:%s\r\n",
                        (long long)clock_realtime_us(), (long long)snapshot->uptime_seconds,
                        (long long)(snapshot->uptime_seconds / 86400), environment->threads,
                        stats_state_reason(snapshot->state),
                        store_recovering(environment->store) ? 1 : 0, environment->executable,
                        environment->config_file);
}

/* Appends the table's rows of SECTION, then the section's fixed text fields. */
static void section_rows(int section, const struct stats_snapshot *snapshot,
                         struct byte_buffer *text) {
    for (size_t i = 0; i < ROW_COUNT; i++) {
        const struct stat_row *row = &rows[i];
        if (row->section != section || row->info_name == NULL) continue;
        double value = row_value((enum stat_id)i, snapshot);
        if (row->format == STAT_DECIMAL) {
            byte_buffer_appendf(text, "%s:%.2f\r\n", row->info_name, value);
            continue;
        }
        byte_buffer_appendf(text, "%s:%lld\r\n", row->info_name, (long long)llround(value));
        if (row->format == STAT_BYTES) {
            char human[32];
            byte_buffer_appendf(text, "%s_human:%s\r\n", row->info_name,
                                format_size_human(human, sizeof(human), (uint64_t)value));
        }
    }
    switch (section) {
    case STATS_SECTION_MEMORY:
        byte_buffer_append_text(text, "maxmemory_policy:s3fifo\r\nmem_allocator:libc\r\n");
        break;
    case STATS_SECTION_KEYSPACE:
        if (snapshot->store.items > 0) {
            byte_buffer_appendf(text, "db0:keys=%llu,expires=%llu,avg_ttl=0\r\n",
                                (unsigned long long)snapshot->store.items,
                                (unsigned long long)snapshot->store.expiring_items);
        }
        break;
    case STATS_SECTION_STRATA:
        for (int id = 0; id < histograms_count(); id++) {
            struct histogram_reading reading;
            metric_read_histogram(id, &reading);
            const char *name = histogram_definition(id)->info_name;
            byte_buffer_appendf(text,
                                "strata_latency_%s_count:%lld\r\n"
                                "strata_latency_%s_p50_usec:%.1f\r\n"
                                "strata_latency_%s_p99_usec:%.1f\r\n",
                                name, (long long)reading.count, name,
                                histogram_quantile_us(&reading, 0.50), name,
                                histogram_quantile_us(&reading, 0.99));
        }
        byte_buffer_append_text(text, "strata_eviction_policy:s3fifo\r\n");
        break;
    case STATS_SECTION_FLASH:
        byte_buffer_appendf(text,
                            "flash_enabled:%d\r\nflash_direct_io:%d\r\n"
                            "flash_recovery_source:%s\r\n",
                            snapshot->flash.capacity > 0, snapshot->flash.direct_io,
                            snapshot->flash.recovery_source);
        break;
    default:
        break;
    }
}

/* One namespace's figures, read without locks. */
struct namespace_figures {
    struct store_stats store; /* its store's figures and event counters */
    uint64_t counters[NAMESPACE_COUNTER_COUNT];
};

static void read_namespace(struct namespace *ns, struct namespace_figures *figures) {
    store_get_stats(ns->store, &figures->store);
    _Atomic uint64_t *counters[NAMESPACE_COUNTER_COUNT] = {
        &ns->puts,
        &ns->gets,
        &ns->hits,
        &ns->misses,
        &ns->quota_errors,
        &ns->fingerprint_mismatches,
        &ns->checksum_failures,
    };
    for (int i = 0; i < NAMESPACE_COUNTER_COUNT; i++)
        figures->counters[i] = atomic_load_explicit(counters[i], memory_order_relaxed);
}

/* The counters' names: INFO field suffixes, and Prometheus families with their help. */
static const struct {
    const char *field;
    const char *family;
    const char *help;
} namespace_counters[NAMESPACE_COUNTER_COUNT] = {
    {"native_puts", "strata_namespace_native_puts_total", "Native-protocol PUT entries"},
    {"native_gets", "strata_namespace_native_gets_total", "Native-protocol GET entries"},
    {"native_hits", "strata_namespace_native_hits_total", "Native GET entries that found the key"},
    {"native_misses", "strata_namespace_native_misses_total",
     "Native GET entries that found no key"},
    {"quota_errors", "strata_namespace_quota_errors_total",
     "Writes refused because the namespace is at its quota"},
    {"fingerprint_mismatches", "strata_namespace_fingerprint_mismatches_total",
     "GETs refused because the value carries another fingerprint"},
    {"checksum_failures", "strata_namespace_checksum_failures_total",
     "Values whose bytes did not match their checksum (PUT arrival or flash read)"},
};

/* The event counters each namespace's store keeps: INFO field suffixes, and Prometheus
 * families with their help. */
static const struct {
    const char *field;
    const char *family;
    const char *help;
    size_t offset;
} store_counters[] = {
    {"hits", "strata_namespace_hits_total", "Key lookups that found a live key",
     offsetof(struct store_stats, hits)},
    {"misses", "strata_namespace_misses_total", "Key lookups that found no live key",
     offsetof(struct store_stats, misses)},
    {"expired_keys", "strata_namespace_expired_keys_total",
     "Keys removed because their time to live ran out", offsetof(struct store_stats, expired)},
    {"evicted_keys", "strata_namespace_evicted_keys_total",
     "Items removed from DRAM to make room within the namespace's budget",
     offsetof(struct store_stats, evicted)},
    {"rejected_writes", "strata_namespace_rejected_writes_total",
     "Writes refused because the namespace's budget could not make room",
     offsetof(struct store_stats, rejected_writes)},
};
#define STORE_COUNTER_COUNT (sizeof(store_counters) / sizeof(store_counters[0]))

/* A field of struct store_stats, by its byte OFFSET. */
static uint64_t store_field(const struct store_stats *stats, size_t offset) {
    uint64_t value;
    memcpy(&value, (const char *)stats + offset, sizeof(value));
    return value;
}

/* INFO's "# Namespaces" section: one line per namespace. */
static void section_namespaces(struct stats *stats, struct byte_buffer *text) {
    struct namespace_table *table = stats->environment.namespaces;
    if (table == NULL) return;
    for (int i = 0; i < table->count; i++) {
        struct namespace *ns = &table->list[i];
        struct namespace_figures figures;
        read_namespace(ns, &figures);
        byte_buffer_appendf(text, "namespace_%s:keys=%llu,used_bytes=%llu,quota_bytes=%llu",
                            ns->name, (unsigned long long)figures.store.items,
                            (unsigned long long)figures.store.used,
                            (unsigned long long)figures.store.budget);
        for (int c = 0; c < NAMESPACE_COUNTER_COUNT; c++) {
            byte_buffer_appendf(text, ",%s=%llu", namespace_counters[c].field,
                                (unsigned long long)figures.counters[c]);
        }
        for (size_t c = 0; c < STORE_COUNTER_COUNT; c++) {
            byte_buffer_appendf(
                text, ",%s=%llu", store_counters[c].field,
                (unsigned long long)store_field(&figures.store, store_counters[c].offset));
        }
        byte_buffer_append_text(text, "\r\n");
    }
}

/* Appends one per-namespace Prometheus family: its HELP and TYPE lines, then VALUES[i]
 * labelled with the name of TABLE's namespace i. */
static void append_namespace_family(struct byte_buffer *text, const struct namespace_table *table,
                                    const char *family, const char *type, const char *help,
                                    const uint64_t *values) {
    byte_buffer_appendf(text, "# HELP %s %s\n# TYPE %s %s\n", family, help, family, type);
    for (int i = 0; i < table->count; i++) {
        byte_buffer_appendf(text, "%s{namespace=\"%s\"} %llu\n", family, table->list[i].name,
                            (unsigned long long)values[i]);
    }
}

/* The per-namespace Prometheus families, every namespace in each: the store's gauges, its
 * event counters, then the native protocol's counters. */
static void prometheus_namespaces(struct stats *stats, struct byte_buffer *text) {
    struct namespace_table *table = stats->environment.namespaces;
    if (table == NULL) return;
    struct namespace_figures figures[NAMESPACE_MAX_COUNT];
    for (int i = 0; i < table->count; i++)
        read_namespace(&table->list[i], &figures[i]);
    static const struct {
        const char *family;
        const char *help;
        size_t offset;
    } gauges[] = {
        {"strata_namespace_items", "Keys stored in the namespace (DRAM and flash)",
         offsetof(struct store_stats, items)},
        {"strata_namespace_used_bytes", "DRAM bytes the namespace holds",
         offsetof(struct store_stats, used)},
        {"strata_namespace_quota_bytes", "DRAM bytes the namespace may hold",
         offsetof(struct store_stats, budget)},
        {"strata_namespace_chain_entries", "Chained or pinned keys the namespace tracks",
         offsetof(struct store_stats, chained_keys)},
    };
    uint64_t values[NAMESPACE_MAX_COUNT];
    for (size_t g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
        for (int i = 0; i < table->count; i++)
            values[i] = store_field(&figures[i].store, gauges[g].offset);
        append_namespace_family(text, table, gauges[g].family, "gauge", gauges[g].help, values);
    }
    for (size_t c = 0; c < STORE_COUNTER_COUNT; c++) {
        for (int i = 0; i < table->count; i++)
            values[i] = store_field(&figures[i].store, store_counters[c].offset);
        append_namespace_family(text, table, store_counters[c].family, "counter",
                                store_counters[c].help, values);
    }
    for (int c = 0; c < NAMESPACE_COUNTER_COUNT; c++) {
        for (int i = 0; i < table->count; i++)
            values[i] = figures[i].counters[c];
        append_namespace_family(text, table, namespace_counters[c].family, "counter",
                                namespace_counters[c].help, values);
    }
}

/* INFO's "# Faults" section (fault-injection build): per site, the checks made and the
 * failures injected since its rule was set. */
static void section_faults(struct byte_buffer *text) {
#ifdef STRATA_FAULT_INJECTION
    for (int site = 0; site < FAULT_SITE_COUNT; site++) {
        struct fault_counts counts;
        fault_get_counts((enum fault_site)site, &counts);
        byte_buffer_appendf(text, "fault_%s:calls=%llu,injected=%llu\r\n",
                            fault_site_name((enum fault_site)site),
                            (unsigned long long)counts.calls, (unsigned long long)counts.injected);
    }
#else
    (void)text;
#endif
}

void stats_info_text(struct stats *stats, int sections, struct byte_buffer *text) {
    static const struct {
        int bit;
        const char *title;
    } order[] = {
        {STATS_SECTION_SERVER, "Server"},     {STATS_SECTION_CLIENTS, "Clients"},
        {STATS_SECTION_MEMORY, "Memory"},     {STATS_SECTION_STATS, "Stats"},
        {STATS_SECTION_KEYSPACE, "Keyspace"}, {STATS_SECTION_STRATA, "Strata"},
        {STATS_SECTION_FLASH, "Flash"},       {STATS_SECTION_NAMESPACES, "Namespaces"},
        {STATS_SECTION_OBJECTS, "Objects"},   {STATS_SECTION_FAULTS, "Faults"},
    };
    if (!fault_built_in()) sections &= ~STATS_SECTION_FAULTS;
    struct stats_snapshot snapshot;
    take_snapshot(stats, &snapshot);
    bool first = true;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (!(sections & order[i].bit)) continue;
        if (!first) byte_buffer_append_text(text, "\r\n");
        first = false;
        byte_buffer_appendf(text, "# %s\r\n", order[i].title);
        if (order[i].bit == STATS_SECTION_SERVER) {
            section_server(stats, &snapshot, text);
        } else if (order[i].bit == STATS_SECTION_NAMESPACES) {
            section_namespaces(stats, text);
        } else if (order[i].bit == STATS_SECTION_FAULTS) {
            section_faults(text);
        } else {
            section_rows(order[i].bit, &snapshot, text);
        }
    }
}

/* Appends TEXT (LENGTH bytes) as a JSON string. */
static void append_json_string(struct byte_buffer *output, const char *text, size_t length) {
    byte_buffer_append(output, "\"", 1);
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            char escaped[2] = {'\\', (char)c};
            byte_buffer_append(output, escaped, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            byte_buffer_appendf(output, "\\u%04x", c);
        } else {
            byte_buffer_append(output, &c, 1);
        }
    }
    byte_buffer_append(output, "\"", 1);
}

/* True when TEXT (LENGTH bytes) is a plain decimal number JSON accepts as it is. */
static bool is_json_number(const char *text, size_t length) {
    size_t i = 0;
    if (i < length && text[i] == '-') i++;
    if (i == length || text[i] < '0' || text[i] > '9') return false;
    if (text[i] == '0' && i + 1 < length && text[i + 1] != '.') return false;
    bool dot = false;
    for (; i < length; i++) {
        if (text[i] == '.' && !dot && i + 1 < length) {
            dot = true;
        } else if (text[i] < '0' || text[i] > '9') {
            return false;
        }
    }
    return true;
}

void stats_info_json(struct stats *stats, struct byte_buffer *output) {
    struct byte_buffer text = BYTE_BUFFER_INIT;
    stats_info_text(stats, STATS_SECTION_ALL, &text);
    if (text.failed) {
        output->failed = true;
        byte_buffer_free(&text);
        return;
    }
    byte_buffer_append_text(output, "{");
    bool first_section = true, first_field = true;
    const char *cursor = (const char *)text.data;
    const char *end = cursor + text.length;
    while (cursor < end) {
        const char *line_end = memchr(cursor, '\r', (size_t)(end - cursor));
        if (line_end == NULL) line_end = end;
        size_t length = (size_t)(line_end - cursor);
        if (length > 2 && cursor[0] == '#') {
            if (!first_section) byte_buffer_append_text(output, "},");
            first_section = false;
            first_field = true;
            char name[32];
            size_t name_length = length - 2 < sizeof(name) ? length - 2 : sizeof(name) - 1;
            for (size_t i = 0; i < name_length; i++) {
                char c = cursor[2 + i];
                name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
            append_json_string(output, name, name_length);
            byte_buffer_append_text(output, ":{");
        } else if (length > 0) {
            const char *colon = memchr(cursor, ':', length);
            if (colon != NULL) {
                if (!first_field) byte_buffer_append_text(output, ",");
                first_field = false;
                append_json_string(output, cursor, (size_t)(colon - cursor));
                byte_buffer_append_text(output, ":");
                size_t value_length = (size_t)(line_end - colon - 1);
                if (is_json_number(colon + 1, value_length)) {
                    byte_buffer_append(output, colon + 1, value_length);
                } else {
                    append_json_string(output, colon + 1, value_length);
                }
            }
        }
        cursor = line_end + (line_end < end ? 2 : 0);
    }
    if (!first_section) byte_buffer_append_text(output, "}");
    byte_buffer_append_text(output, "}\n");
    byte_buffer_free(&text);
}

/* ---- Prometheus ------------------------------------------------------------------ */

/* Appends a sample value the way the text format expects it. */
static void append_prometheus_value(struct byte_buffer *text, double value) {
    if (value == floor(value) && fabs(value) < 1e15) {
        byte_buffer_appendf(text, "%lld\n", (long long)value);
    } else {
        byte_buffer_appendf(text, "%.17g\n", value);
    }
}

static void append_histogram(struct byte_buffer *text, histogram_id id) {
    struct histogram_reading reading;
    metric_read_histogram(id, &reading);
    const char *family = histogram_definition(id)->family;
    const char *labels = histogram_definition(id)->labels;
    const char *separator = labels[0] != '\0' ? "," : "";
    int64_t cumulative = 0;
    for (int bucket = 0; bucket < HISTOGRAM_BUCKETS; bucket++) {
        cumulative += reading.counts[bucket];
        if (bucket < HISTOGRAM_BUCKETS - 1) {
            byte_buffer_appendf(text, "%s_bucket{%s%sle=\"%g\"} %lld\n", family, labels, separator,
                                (double)histogram_bounds_us[bucket] / 1e6, (long long)cumulative);
        } else {
            byte_buffer_appendf(text, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", family, labels,
                                separator, (long long)cumulative);
        }
    }
    const char *open = labels[0] != '\0' ? "{" : "";
    const char *close = labels[0] != '\0' ? "}" : "";
    byte_buffer_appendf(text, "%s_sum%s%s%s %.9f\n", family, open, labels, close,
                        (double)reading.sum_ns / 1e9);
    byte_buffer_appendf(text, "%s_count%s%s%s %lld\n", family, open, labels, close,
                        (long long)reading.count);
}

void stats_prometheus_text(struct stats *stats, struct byte_buffer *text) {
    struct stats_snapshot snapshot;
    take_snapshot(stats, &snapshot);
    const char *previous_family = "";
    for (size_t i = 0; i < ROW_COUNT; i++) {
        const struct stat_row *row = &rows[i];
        if (row->family == NULL) continue;
        if (strcmp(row->family, previous_family) != 0) {
            byte_buffer_appendf(text, "# HELP %s %s\n# TYPE %s %s\n", row->family, row->help,
                                row->family, row->type == STAT_COUNTER ? "counter" : "gauge");
            previous_family = row->family;
        }
        if (row->labels[0] != '\0') {
            byte_buffer_appendf(text, "%s{%s} ", row->family, row->labels);
        } else {
            byte_buffer_appendf(text, "%s ", row->family);
        }
        append_prometheus_value(text, row_value((enum stat_id)i, &snapshot));
    }
    previous_family = "";
    for (int id = 0; id < histograms_count(); id++) {
        if (strcmp(histogram_definition(id)->family, previous_family) != 0) {
            byte_buffer_appendf(text, "# HELP %s %s\n# TYPE %s histogram\n",
                                histogram_definition(id)->family, histogram_definition(id)->help,
                                histogram_definition(id)->family);
            previous_family = histogram_definition(id)->family;
        }
        append_histogram(text, id);
    }
    prometheus_namespaces(stats, text);
}

/* ---- history --------------------------------------------------------------------- */

/* Appends one JSON array of a history series, oldest first; NaN becomes null. */
static void append_series(struct byte_buffer *text, const struct stats *stats, const char *name,
                          size_t offset) {
    byte_buffer_appendf(text, "\"%s\":[", name);
    int start = stats->history_count < HISTORY_SAMPLES ? 0 : stats->history_next;
    for (int i = 0; i < stats->history_count; i++) {
        const struct history_sample *sample = &stats->history[(start + i) % HISTORY_SAMPLES];
        double value = *(const double *)((const char *)sample + offset);
        if (i > 0) byte_buffer_append_text(text, ",");
        if (isnan(value)) {
            byte_buffer_append_text(text, "null");
        } else {
            byte_buffer_appendf(text, "%.6g", value);
        }
    }
    byte_buffer_append_text(text, "]");
}

void stats_history_json(struct stats *stats, struct byte_buffer *text) {
    lock_stats(stats);
    byte_buffer_appendf(text, "{\"interval_ms\":%d,\"state\":\"%s\",\"time_ms\":[",
                        100 * SAMPLES_PER_HISTORY, stats_state_reason(stats_state(stats)));
    int start = stats->history_count < HISTORY_SAMPLES ? 0 : stats->history_next;
    for (int i = 0; i < stats->history_count; i++) {
        const struct history_sample *sample = &stats->history[(start + i) % HISTORY_SAMPLES];
        byte_buffer_appendf(text, "%s%lld", i > 0 ? "," : "", (long long)sample->time_ms);
    }
    byte_buffer_append_text(text, "],");
    static const struct {
        const char *name;
        size_t offset;
    } series[] = {
        {"dram_used", offsetof(struct history_sample, dram_used)},
        {"dram_budget", offsetof(struct history_sample, dram_budget)},
        {"dram_items", offsetof(struct history_sample, dram_items)},
        {"flash_used", offsetof(struct history_sample, flash_used)},
        {"flash_capacity", offsetof(struct history_sample, flash_capacity)},
        {"flash_items", offsetof(struct history_sample, flash_items)},
        {"hit_ratio", offsetof(struct history_sample, hit_ratio)},
        {"operations_per_second", offsetof(struct history_sample, operations_per_second)},
        {"resp_commands_per_second", offsetof(struct history_sample, resp_commands_per_second)},
        {"http_requests_per_second", offsetof(struct history_sample, http_requests_per_second)},
        {"native_requests_per_second", offsetof(struct history_sample, native_requests_per_second)},
        {"native_keys_per_second", offsetof(struct history_sample, native_keys_per_second)},
        {"input_bytes_per_second", offsetof(struct history_sample, input_bytes_per_second)},
        {"output_bytes_per_second", offsetof(struct history_sample, output_bytes_per_second)},
        {"flash_read_bytes_per_second",
         offsetof(struct history_sample, flash_read_bytes_per_second)},
        {"flash_write_bytes_per_second",
         offsetof(struct history_sample, flash_write_bytes_per_second)},
        {"latency_p50_us", offsetof(struct history_sample, latency_p50_us)},
        {"latency_p99_us", offsetof(struct history_sample, latency_p99_us)},
        {"resp_latency_p50_us", offsetof(struct history_sample, resp_latency_p50_us)},
        {"resp_latency_p99_us", offsetof(struct history_sample, resp_latency_p99_us)},
        {"http_latency_p50_us", offsetof(struct history_sample, http_latency_p50_us)},
        {"http_latency_p99_us", offsetof(struct history_sample, http_latency_p99_us)},
        {"native_latency_p50_us", offsetof(struct history_sample, native_latency_p50_us)},
        {"native_latency_p99_us", offsetof(struct history_sample, native_latency_p99_us)},
    };
    for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++) {
        if (i > 0) byte_buffer_append_text(text, ",");
        append_series(text, stats, series[i].name, series[i].offset);
    }
    byte_buffer_append_text(text, "}\n");
    unlock_stats(stats);
}
