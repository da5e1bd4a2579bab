/* Redis's introspection of commands: INFO commandstats, errorstats and cpu, as Redis
 * 7.0 reports them.
 *
 * Counting is off the shared cache lines: each worker thread adds its commands' calls,
 * time, failures and refusals into its own block of slots (a relaxed load and store,
 * as base/metrics.c does), and INFO sums the blocks. Error replies, which are not the
 * common path, count with an atomic add in a table of prefixes. */
#include "base/byte_buffer.h"
#include "proto/resp/resp_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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
    "object|help",
};

#define SUBCOMMAND_COUNT (sizeof(subcommand_names) / sizeof(subcommand_names[0]))
#define SLOTS_MAX        256

/* Set once by setup_slots(), read-only after. */
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static const struct resp_command *table;
static size_t table_count;
static int slot_count;
static char slot_names[SLOTS_MAX][48];
static int base_slot[SLOTS_MAX];      /* by command index: the command's own slot */
static int first_sub_slot[SLOTS_MAX]; /* by command index: its first subcommand's slot */
static int sub_slots[SLOTS_MAX];      /* by command index: how many subcommand slots */

/* Gives each command a slot in table order, each container command's subcommands the
 * slots after its own. */
static void setup_slots(void) {
    table = resp_command_table(&table_count);
    STRATA_ASSERT(table_count + SUBCOMMAND_COUNT <= SLOTS_MAX);
    for (size_t i = 0; i < table_count; i++) {
        base_slot[i] = slot_count;
        snprintf(slot_names[slot_count++], sizeof(slot_names[0]), "%s", table[i].name);
        first_sub_slot[i] = slot_count;
        size_t length = strlen(table[i].name);
        for (size_t j = 0; j < SUBCOMMAND_COUNT; j++) {
            if (strncmp(subcommand_names[j], table[i].name, length) == 0 &&
                subcommand_names[j][length] == '|') {
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

void resp_stats_command_end(struct resp_session *session) {
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
}
