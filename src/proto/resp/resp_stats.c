/* Redis's introspection of commands: INFO commandstats, errorstats and cpu, the slow
 * log (SLOWLOG) and the latency monitor (LATENCY), all as Redis 7.0 reports them.
 *
 * Counting is off the shared cache lines: each worker thread adds its commands' calls,
 * time, failures and refusals into its own block of slots (a relaxed load and store,
 * as base/metrics.c does), and INFO sums the blocks. Error replies, which are not the
 * common path, count with an atomic add in a table of prefixes. Only a command slower
 * than slowlog-log-slower-than or latency-monitor-threshold takes the monitor's lock. */
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

/* ---- commandstats slots --------------------------------------------------------- */

/* The subcommands counted apart, as Redis 7 counts its container commands' ("client|list");
 * only those strata implements (an unknown one is counted nowhere, as in Redis). */
static const char *const subcommand_names[] = {
    "client|id",      "client|setname",  "client|getname", "client|list",     "client|info",
    "client|setinfo", "client|help",     "config|get",     "config|set",      "config|resetstat",
    "config|rewrite", "config|help",     "command|count",  "command|list",    "command|info",
    "command|docs",   "command|help",    "acl|whoami",     "acl|list",        "acl|users",
    "acl|getuser",    "acl|setuser",     "acl|deluser",    "acl|load",        "acl|save",
    "acl|cat",        "acl|log",         "acl|genpass",    "acl|help",        "memory|usage",
    "memory|help",    "object|encoding", "object|freq",    "object|idletime", "object|refcount",
    "object|help",    "slowlog|get",     "slowlog|len",    "slowlog|reset",   "slowlog|help",
    "latency|latest", "latency|history", "latency|reset",  "latency|help",
};

#define SUBCOMMAND_COUNT (sizeof(subcommand_names) / sizeof(subcommand_names[0]))
#define SLOTS_MAX        256

/* Set once by setup_slots(), read-only after. */
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static const struct resp_command *table;
static size_t table_count;
static int slot_count;
static char slot_names[SLOTS_MAX][48];
static int base_slot[SLOTS_MAX];       /* by command index: the command's own slot */
static int first_sub_slot[SLOTS_MAX];  /* by command index: its first subcommand's slot */
static int sub_slots[SLOTS_MAX];       /* by command index: how many subcommand slots */
static size_t slot_command[SLOTS_MAX]; /* by slot: the index of its command */

/* Gives each command a slot in table order, each container command's subcommands the
 * slots after its own. */
static void setup_slots(void) {
    table = resp_command_table(&table_count);
    STRATA_ASSERT(table_count + SUBCOMMAND_COUNT <= SLOTS_MAX);
    for (size_t i = 0; i < table_count; i++) {
        base_slot[i] = slot_count;
        slot_command[slot_count] = i;
        snprintf(slot_names[slot_count++], sizeof(slot_names[0]), "%s", table[i].name);
        first_sub_slot[i] = slot_count;
        size_t length = strlen(table[i].name);
        for (size_t j = 0; j < SUBCOMMAND_COUNT; j++) {
            if (strncmp(subcommand_names[j], table[i].name, length) == 0 &&
                subcommand_names[j][length] == '|') {
                slot_command[slot_count] = i;
                snprintf(slot_names[slot_count++], sizeof(slot_names[0]), "%s",
                         subcommand_names[j]);
                sub_slots[i]++;
            }
        }
    }
}

void resp_stats_init(void) {
    pthread_once(&slots_once, setup_slots);
}

int resp_stats_slot(const struct resp_command *command, const struct resp_request *request) {
    size_t index = (size_t)(command - table);
    if (sub_slots[index] == 0 || request->argc < 2) return base_slot[index];
    size_t skip = strlen(command->name) + 1;
    for (int slot = first_sub_slot[index]; slot < first_sub_slot[index] + sub_slots[index];
         slot++) {
        if (argument_is(request, 1, slot_names[slot] + skip)) return slot;
    }
    return -1;
}

/* ---- per-thread counters ----------------------------------------------------------- */

struct stats_block {
    struct stats_block *next; /* set before the block is published, never changed */
    _Atomic int64_t calls[SLOTS_MAX];
    _Atomic int64_t nanoseconds[SLOTS_MAX];
    _Atomic int64_t rejected[SLOTS_MAX];
    _Atomic int64_t failed[SLOTS_MAX];
};

static _Thread_local struct stats_block *thread_block;
static _Atomic(struct stats_block *) blocks; /* every thread's, newest first; never freed */

/* The counters as of the last CONFIG RESETSTAT, which reading subtracts (a reset cannot
 * zero another thread's block without racing its updates). Under baselines_lock. */
static pthread_mutex_t baselines_lock = PTHREAD_MUTEX_INITIALIZER;
static struct check_owner baselines_owner;
static int64_t baseline_calls[SLOTS_MAX], baseline_nanoseconds[SLOTS_MAX];
static int64_t baseline_rejected[SLOTS_MAX], baseline_failed[SLOTS_MAX];

/* The calling thread's block, registered on first use; NULL when out of memory (the
 * update is then dropped: statistics never fail a command). Blocks live as long as the
 * process, reachable from BLOCKS. */
static struct stats_block *own_block(void) {
    struct stats_block *block = thread_block;
    if (block != NULL) return block;
    block = calloc(1, sizeof(*block));
    if (block == NULL) return NULL;
    block->next = atomic_load_explicit(&blocks, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&blocks, &block->next, block,
                                                  memory_order_release, memory_order_relaxed)) {
    }
    thread_block = block;
    return block;
}

/* Adds DELTA to a counter of the calling thread's own block (only it writes there). */
static inline void bump(_Atomic int64_t *counter, int64_t delta) {
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

void resp_stats_rejected(int slot) {
    struct stats_block *block = own_block();
    if (slot >= 0 && block != NULL) bump(&block->rejected[slot], 1);
}

void resp_stats_failed(int slot) {
    struct stats_block *block = own_block();
    if (slot >= 0 && block != NULL) bump(&block->failed[slot], 1);
}

/* One slot's counters summed over the threads, less the baselines (the caller holds
 * baselines_lock). */
struct slot_reading {
    int64_t calls, nanoseconds, rejected, failed;
};

static struct slot_reading read_slot(int slot) {
    STRATA_ASSERT(check_held(&baselines_owner));
    struct slot_reading reading = {0, 0, 0, 0};
    for (struct stats_block *block = atomic_load_explicit(&blocks, memory_order_acquire);
         block != NULL; block = block->next) {
        reading.calls += atomic_load_explicit(&block->calls[slot], memory_order_relaxed);
        reading.nanoseconds +=
            atomic_load_explicit(&block->nanoseconds[slot], memory_order_relaxed);
        reading.rejected += atomic_load_explicit(&block->rejected[slot], memory_order_relaxed);
        reading.failed += atomic_load_explicit(&block->failed[slot], memory_order_relaxed);
    }
    reading.calls -= baseline_calls[slot];
    reading.nanoseconds -= baseline_nanoseconds[slot];
    reading.rejected -= baseline_rejected[slot];
    reading.failed -= baseline_failed[slot];
    return reading;
}

static void baselines_lock_take(void) {
    pthread_mutex_lock(&baselines_lock);
    check_acquired(&baselines_owner);
}

static void baselines_lock_give(void) {
    check_releasing(&baselines_owner);
    pthread_mutex_unlock(&baselines_lock);
}

/* ---- errorstats -------------------------------------------------------------------- */

/* Redis's limits: an error's prefix is its first word within 32 bytes (else "ERR"), and
 * at most 128 different prefixes are tracked (a new one past that is not counted). */
#define ERROR_PREFIX_MAX 32
#define ERROR_KINDS_MAX  128

struct error_kind {
    char prefix[ERROR_PREFIX_MAX + 1]; /* written before the kind is published */
    _Atomic int64_t count;
};

static struct error_kind error_kinds[ERROR_KINDS_MAX];
static _Atomic int error_kind_count; /* published kinds: [0, count) */
static pthread_mutex_t error_kinds_lock = PTHREAD_MUTEX_INITIALIZER; /* adding a kind */
static struct check_owner error_kinds_owner;

/* The published kind named PREFIX (LENGTH bytes) among the first COUNT, or NULL. */
static struct error_kind *find_error_kind(const char *prefix, size_t length, int count) {
    for (int i = 0; i < count; i++) {
        if (strncmp(error_kinds[i].prefix, prefix, length) == 0 &&
            error_kinds[i].prefix[length] == '\0')
            return &error_kinds[i];
    }
    return NULL;
}

void resp_stats_error(const char *text) {
    size_t window = strnlen(text, ERROR_PREFIX_MAX);
    const char *space = memchr(text, ' ', window);
    const char *prefix = space != NULL ? text : "ERR";
    size_t length = space != NULL ? (size_t)(space - text) : 3;
    int count = atomic_load_explicit(&error_kind_count, memory_order_acquire);
    struct error_kind *kind = find_error_kind(prefix, length, count);
    if (kind == NULL) {
        pthread_mutex_lock(&error_kinds_lock);
        check_acquired(&error_kinds_owner);
        count = atomic_load_explicit(&error_kind_count, memory_order_relaxed);
        kind = find_error_kind(prefix, length, count);
        if (kind == NULL && count < ERROR_KINDS_MAX) {
            kind = &error_kinds[count];
            memcpy(kind->prefix, prefix, length);
            kind->prefix[length] = '\0';
            atomic_store_explicit(&error_kind_count, count + 1, memory_order_release);
        }
        check_releasing(&error_kinds_owner);
        pthread_mutex_unlock(&error_kinds_lock);
        if (kind == NULL) return;
    }
    atomic_fetch_add_explicit(&kind->count, 1, memory_order_relaxed);
}

void resp_stats_reset(void) {
    resp_stats_init();
    baselines_lock_take();
    for (int slot = 0; slot < slot_count; slot++) {
        struct slot_reading reading = read_slot(slot);
        baseline_calls[slot] += reading.calls;
        baseline_nanoseconds[slot] += reading.nanoseconds;
        baseline_rejected[slot] += reading.rejected;
        baseline_failed[slot] += reading.failed;
    }
    baselines_lock_give();
    int count = atomic_load_explicit(&error_kind_count, memory_order_acquire);
    for (int i = 0; i < count; i++)
        atomic_store_explicit(&error_kinds[i].count, 0, memory_order_relaxed);
}

/* ---- INFO sections ----------------------------------------------------------------- */

/* Appends "# TITLE", after a blank line when TEXT already holds a section. */
static void section_title(struct byte_buffer *text, const char *title) {
    if (text->length > 0) byte_buffer_append_text(text, "\r\n");
    byte_buffer_appendf(text, "# %s\r\n", title);
}

void resp_info_cpu(struct byte_buffer *text) {
    struct rusage self, children, thread;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    getrusage(RUSAGE_THREAD, &thread);
    section_title(text, "CPU");
    const struct {
        const char *name;
        struct timeval value;
    } fields[] = {
        {"used_cpu_sys", self.ru_stime},
        {"used_cpu_user", self.ru_utime},
        {"used_cpu_sys_children", children.ru_stime},
        {"used_cpu_user_children", children.ru_utime},
        /* strata has no main thread that runs every command: the worker answering */
        {"used_cpu_sys_main_thread", thread.ru_stime},
        {"used_cpu_user_main_thread", thread.ru_utime},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        byte_buffer_appendf(text, "%s:%ld.%06ld\r\n", fields[i].name, (long)fields[i].value.tv_sec,
                            (long)fields[i].value.tv_usec);
    }
}

void resp_info_errorstats(struct byte_buffer *text) {
    section_title(text, "Errorstats");
    int count = atomic_load_explicit(&error_kind_count, memory_order_acquire);
    /* Redis lists them in name order (a radix tree). */
    int order[ERROR_KINDS_MAX];
    for (int i = 0; i < count; i++) {
        int j = i;
        while (j > 0 && strcmp(error_kinds[order[j - 1]].prefix, error_kinds[i].prefix) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    for (int i = 0; i < count; i++) {
        int64_t errors = atomic_load_explicit(&error_kinds[order[i]].count, memory_order_relaxed);
        if (errors > 0)
            byte_buffer_appendf(text, "errorstat_%s:count=%lld\r\n", error_kinds[order[i]].prefix,
                                (long long)errors);
    }
}

void resp_info_commandstats(struct byte_buffer *text) {
    resp_stats_init();
    section_title(text, "Commandstats");
    baselines_lock_take();
    for (int slot = 0; slot < slot_count; slot++) {
        struct slot_reading reading = read_slot(slot);
        if (reading.calls == 0 && reading.rejected == 0 && reading.failed == 0) continue;
        long long usec = (long long)(reading.nanoseconds / 1000);
        byte_buffer_appendf(text,
                            "cmdstat_%s:calls=%lld,usec=%lld,usec_per_call=%.2f,"
                            "rejected_calls=%lld,failed_calls=%lld\r\n",
                            slot_names[slot], (long long)reading.calls, usec,
                            reading.calls == 0 ? 0.0 : (double)usec / (double)reading.calls,
                            (long long)reading.rejected, (long long)reading.failed);
    }
    baselines_lock_give();
}

/* ---- the slow log and the latency monitor ------------------------------------------ */

/* Redis's limits on what an entry keeps of a command. */
#define SLOWLOG_ARGUMENTS_MAX 32
#define SLOWLOG_ARGUMENT_MAX  128

/* One slow command, allocated in one piece: its arguments' bytes follow it. */
struct slowlog_entry {
    struct slowlog_entry *newer, *older;
    int64_t id;
    int64_t time_s;
    int64_t duration_us;
    size_t argc;
    struct {
        const char *data;
        size_t length;
    } argv[SLOWLOG_ARGUMENTS_MAX];
    char peer[64];
    char name[]; /* the client's name, then the arguments */
};

/* Redis's latency event series: a sample a second (the highest), the last 160. */
#define LATENCY_SAMPLES 160

struct latency_series {
    bool used; /* has a sample since the last reset */
    int next;  /* where the next sample goes */
    int64_t max;
    struct {
        int64_t time_s;
        int64_t latency_ms;
    } samples[LATENCY_SAMPLES];
};

/* The events strata records, as Redis names them: commands slower than the threshold,
 * "fast-command" for those with the fast flag. */
static const char *const latency_event_names[] = {"command", "fast-command"};
#define LATENCY_EVENTS 2

struct resp_monitor {
    pthread_mutex_t lock; /* guards everything below */
    struct check_owner owner;
    struct slowlog_entry *newest, *oldest;
    size_t length;
    int64_t next_id;
    struct latency_series events[LATENCY_EVENTS];
};

static void monitor_lock(struct resp_monitor *monitor) {
    pthread_mutex_lock(&monitor->lock);
    check_acquired(&monitor->owner);
}

static void monitor_unlock(struct resp_monitor *monitor) {
    check_releasing(&monitor->owner);
    pthread_mutex_unlock(&monitor->lock);
}

struct resp_monitor *resp_monitor_create(void) {
    struct resp_monitor *monitor = calloc(1, sizeof(*monitor));
    if (monitor == NULL) return NULL;
    pthread_mutex_init(&monitor->lock, NULL);
    return monitor;
}

/* Unlinks and frees the oldest entry (the caller holds the lock). */
static void drop_oldest(struct resp_monitor *monitor) {
    STRATA_ASSERT(check_held(&monitor->owner));
    struct slowlog_entry *entry = monitor->oldest;
    monitor->oldest = entry->newer;
    if (monitor->oldest != NULL) {
        monitor->oldest->older = NULL;
    } else {
        monitor->newest = NULL;
    }
    monitor->length--;
    free(entry);
}

void resp_monitor_destroy(struct resp_monitor *monitor) {
    if (monitor == NULL) return;
    monitor_lock(monitor);
    while (monitor->oldest != NULL)
        drop_oldest(monitor);
    monitor_unlock(monitor);
    pthread_mutex_destroy(&monitor->lock);
    free(monitor);
}

/* Whether the slow log shows argument INDEX of REQUEST as "(redacted)": the passwords of
 * AUTH and HELLO ... AUTH (as Redis), the rules of ACL SETUSER and a secret option's
 * value in CONFIG SET (which may hold passwords or keys). */
static bool redacted(const struct resp_request *request, size_t index) {
    if (argument_is(request, 0, "AUTH")) return true;
    if (argument_is(request, 0, "HELLO"))
        return (index >= 2 && argument_is(request, index - 1, "AUTH")) ||
               (index >= 3 && argument_is(request, index - 2, "AUTH"));
    if (argument_is(request, 0, "ACL") && argument_is(request, 1, "SETUSER")) return index >= 3;
    if (argument_is(request, 0, "CONFIG") && argument_is(request, 1, "SET") && index >= 3 &&
        index % 2 == 1) {
        char name[64];
        argument_text(request, index - 1, name, sizeof(name));
        for (char *c = name; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        int id = options_find(name);
        return id >= 0 && (options_flags(id) & OPTION_SECRET);
    }
    return false;
}

/* Adds REQUEST, which took DURATION_US, to the slow log, trimming it to MAX_LENGTH
 * entries. Takes sessions_lock (for the client's name), then the monitor's lock. */
static void slowlog_add(struct resp_session *session, const struct resp_request *request,
                        int64_t duration_us, int64_t max_length) {
    struct resp_monitor *monitor = session->server->monitor;
    char name[128];
    sessions_lock(session->server);
    snprintf(name, sizeof(name), "%s", session->name != NULL ? session->name : "");
    sessions_unlock(session->server);
    /* What each kept argument shows, and the bytes they take. */
    size_t kept = request->argc <= SLOWLOG_ARGUMENTS_MAX ? request->argc : SLOWLOG_ARGUMENTS_MAX;
    size_t bytes = strlen(name) + 1;
    for (size_t i = 0; i < kept; i++)
        bytes += SLOWLOG_ARGUMENT_MAX + 48;
    struct slowlog_entry *entry = malloc(sizeof(*entry) + bytes);
    if (entry == NULL) return; /* statistics never fail a command */
    char *at = entry->name + strlen(name) + 1;
    memcpy(entry->name, name, strlen(name) + 1);
    for (size_t i = 0; i < kept; i++) {
        size_t length;
        if (i == SLOWLOG_ARGUMENTS_MAX - 1 && request->argc > SLOWLOG_ARGUMENTS_MAX) {
            length = (size_t)sprintf(at, "... (%zu more arguments)", request->argc - i);
        } else if (i > 0 && redacted(request, i)) {
            length = (size_t)sprintf(at, "(redacted)");
        } else if (request->lengths[i] > SLOWLOG_ARGUMENT_MAX) {
            /* A value SET took over without a copy keeps only its first bytes readable
             * (resp_parser_take_block()): the block may be gone by now. */
            uint64_t readable = request->argv == session->parser.argv
                                    ? resp_parser_readable(&session->parser, i)
                                    : request->lengths[i];
            size_t shown =
                readable < SLOWLOG_ARGUMENT_MAX ? (size_t)readable : SLOWLOG_ARGUMENT_MAX;
            memcpy(at, request->argv[i], shown);
            length = shown + (size_t)sprintf(at + shown, "... (%llu more bytes)",
                                             (unsigned long long)(request->lengths[i] - shown));
        } else {
            length = (size_t)request->lengths[i];
            memcpy(at, request->argv[i], length);
        }
        entry->argv[i].data = at;
        entry->argv[i].length = length;
        at += length;
    }
    entry->argc = kept;
    entry->time_s = clock_realtime_ms() / 1000;
    entry->duration_us = duration_us;
    snprintf(entry->peer, sizeof(entry->peer), "%s", session->peer);
    monitor_lock(monitor);
    entry->id = monitor->next_id++;
    entry->older = monitor->newest;
    entry->newer = NULL;
    if (monitor->newest != NULL) {
        monitor->newest->newer = entry;
    } else {
        monitor->oldest = entry;
    }
    monitor->newest = entry;
    monitor->length++;
    while (monitor->length > (size_t)max_length)
        drop_oldest(monitor);
    monitor_unlock(monitor);
}

/* Adds a sample of LATENCY_MS to EVENT's series, as Redis's latencyAddSample(): one
 * sample a second, the highest. */
static void latency_add(struct resp_monitor *monitor, int event, int64_t latency_ms) {
    int64_t now = clock_realtime_ms() / 1000;
    monitor_lock(monitor);
    struct latency_series *series = &monitor->events[event];
    series->used = true;
    if (latency_ms > series->max) series->max = latency_ms;
    int previous = (series->next + LATENCY_SAMPLES - 1) % LATENCY_SAMPLES;
    if (series->samples[previous].time_s == now) {
        if (latency_ms > series->samples[previous].latency_ms)
            series->samples[previous].latency_ms = latency_ms;
    } else {
        series->samples[series->next].time_s = now;
        series->samples[series->next].latency_ms = latency_ms;
        series->next = (series->next + 1) % LATENCY_SAMPLES;
    }
    monitor_unlock(monitor);
}

void resp_stats_command_end(struct resp_session *session, const struct resp_request *request) {
    int slot = session->stats_slot;
    session->stats_slot = -1;
    int64_t nanoseconds = session->stats_ns;
    bool failed = session->error_replies != session->stats_errors;
    struct stats_block *block = own_block();
    if (block != NULL) {
        if (failed && session->stats_rejected) {
            bump(&block->rejected[slot], 1); /* refused by the handler's arity check */
            return;
        }
        bump(&block->calls[slot], 1);
        bump(&block->nanoseconds[slot], nanoseconds);
        if (failed) bump(&block->failed[slot], 1);
    }
    const struct options *options = session->server->environment.options;
    int64_t slower_than = options_number(options, RESP_OPTION(slowlog_log_slower_than));
    int64_t threshold_ms = options_number(options, RESP_OPTION(latency_monitor_threshold));
    int64_t duration_us = nanoseconds / 1000;
    /* EXEC (flag skip-slowlog): its commands are logged one by one, as in Redis. */
    bool logged = strstr(table[slot_command[slot]].flags, "skip-slowlog") == NULL;
    if (logged && slower_than >= 0 && duration_us >= slower_than && request->argc > 0) {
        slowlog_add(session, request, duration_us,
                    options_number(options, RESP_OPTION(slowlog_max_len)));
    }
    if (threshold_ms > 0 && duration_us / 1000 >= threshold_ms) {
        bool fast = strstr(table[slot_command[slot]].flags, "fast") != NULL;
        latency_add(session->server->monitor, fast ? 1 : 0, duration_us / 1000);
    }
}

/* ---- SLOWLOG -------------------------------------------------------------------- */

/* Replies with ENTRY as Redis 7 does: id, time, duration, arguments, address, name. */
static void reply_slowlog_entry(struct resp_session *session, const struct slowlog_entry *entry) {
    reply_array(session, 6);
    reply_integer(session, entry->id);
    reply_integer(session, entry->time_s);
    reply_integer(session, entry->duration_us);
    reply_array(session, entry->argc);
    for (size_t i = 0; i < entry->argc; i++)
        reply_bulk(session, entry->argv[i].data, entry->argv[i].length);
    reply_bulk_text(session, entry->peer);
    reply_bulk_text(session, entry->name);
}

void command_slowlog(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET [<count>]",
        "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
        "    Entries are made of:",
        "    id, timestamp, time in microseconds, arguments array, client IP and port,",
        "    client name",
        "LEN",
        "    Return the length of the slowlog.",
        "RESET",
        "    Reset the slowlog.",
        "HELP",
        "    Print this help.",
    };
    struct resp_monitor *monitor = session->server->monitor;
    size_t argc = request->argc;
    if (argument_is(request, 1, "GET") && argc <= 3) {
        int64_t count = 10;
        if (argc == 3 &&
            (!parse_int64(request->argv[2], (size_t)request->lengths[2], &count) || count < -1)) {
            reply_error(session, "ERR count should be greater than or equal to -1");
            return;
        }
        /* Replies are queued under the lock: they go to this session's output buffer,
         * never to the network, so the lock is held for a copy only. */
        monitor_lock(monitor);
        size_t shown =
            count < 0 || (uint64_t)count > monitor->length ? monitor->length : (size_t)count;
        reply_array(session, shown);
        struct slowlog_entry *entry = monitor->newest;
        for (size_t i = 0; i < shown; i++, entry = entry->older)
            reply_slowlog_entry(session, entry);
        monitor_unlock(monitor);
    } else if (argument_is(request, 1, "GET")) {
        reply_error(session, "ERR unknown subcommand or wrong number of arguments for 'GET'. "
                             "Try SLOWLOG HELP.");
    } else if (argument_is(request, 1, "LEN") && argc == 2) {
        monitor_lock(monitor);
        size_t length = monitor->length;
        monitor_unlock(monitor);
        reply_integer(session, (int64_t)length);
    } else if (argument_is(request, 1, "RESET") && argc == 2) {
        monitor_lock(monitor);
        while (monitor->oldest != NULL)
            drop_oldest(monitor);
        monitor_unlock(monitor);
        reply_ok(session);
    } else if (argument_is(request, 1, "HELP") && argc == 2) {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    } else if (argument_is(request, 1, "LEN") || argument_is(request, 1, "RESET") ||
               argument_is(request, 1, "HELP")) {
        reply_subcommand_arity(session, request, "slowlog");
    } else {
        reply_unknown_subcommand(session, request, "SLOWLOG");
    }
}

/* ---- LATENCY ---------------------------------------------------------------------- */

/* The event called argument INDEX, or -1. */
static int latency_event(const struct resp_request *request, size_t index) {
    for (int event = 0; event < LATENCY_EVENTS; event++)
        if (argument_is(request, index, latency_event_names[event])) return event;
    return -1;
}

void command_latency(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "HISTORY <event>",
        "    Return time-latency samples for the <event> class.",
        "LATEST",
        "    Return the latest latency samples for all events.",
        "RESET [<event> ...]",
        "    Reset latency data of one or more <event> classes.",
        "    (default: reset all data for all event classes)",
        "HELP",
        "    Print this help.",
    };
    struct resp_monitor *monitor = session->server->monitor;
    size_t argc = request->argc;
    if (argument_is(request, 1, "LATEST") && argc == 2) {
        monitor_lock(monitor);
        size_t used = 0;
        for (int event = 0; event < LATENCY_EVENTS; event++)
            used += monitor->events[event].used;
        reply_array(session, used);
        for (int event = 0; event < LATENCY_EVENTS; event++) {
            const struct latency_series *series = &monitor->events[event];
            if (!series->used) continue;
            int last = (series->next + LATENCY_SAMPLES - 1) % LATENCY_SAMPLES;
            reply_array(session, 4);
            reply_bulk_text(session, latency_event_names[event]);
            reply_integer(session, series->samples[last].time_s);
            reply_integer(session, series->samples[last].latency_ms);
            reply_integer(session, series->max);
        }
        monitor_unlock(monitor);
    } else if (argument_is(request, 1, "HISTORY") && argc == 3) {
        int event = latency_event(request, 2);
        monitor_lock(monitor);
        const struct latency_series *series = event >= 0 ? &monitor->events[event] : NULL;
        size_t count = 0;
        for (int i = 0; series != NULL && series->used && i < LATENCY_SAMPLES; i++)
            count += series->samples[i].time_s != 0;
        reply_array(session, count);
        for (int j = 0; count > 0 && j < LATENCY_SAMPLES; j++) {
            int i = (series->next + j) % LATENCY_SAMPLES;
            if (series->samples[i].time_s == 0) continue;
            reply_array(session, 2);
            reply_integer(session, series->samples[i].time_s);
            reply_integer(session, series->samples[i].latency_ms);
        }
        monitor_unlock(monitor);
    } else if (argument_is(request, 1, "RESET")) {
        int64_t reset = 0;
        monitor_lock(monitor);
        for (int event = 0; event < LATENCY_EVENTS; event++) {
            bool named = argc == 2;
            for (size_t i = 2; i < argc && !named; i++)
                named = argument_is(request, i, latency_event_names[event]);
            if (!named || !monitor->events[event].used) continue;
            memset(&monitor->events[event], 0, sizeof(monitor->events[event]));
            reset++;
        }
        monitor_unlock(monitor);
        reply_integer(session, reset);
    } else if (argument_is(request, 1, "HELP") && argc == 2) {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    } else if (argument_is(request, 1, "LATEST") || argument_is(request, 1, "HISTORY") ||
               argument_is(request, 1, "HELP")) {
        reply_subcommand_arity(session, request, "latency");
    } else {
        reply_unknown_subcommand(session, request, "LATENCY");
    }
}
