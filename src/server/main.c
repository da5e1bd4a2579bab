/* strata-server: reads the options, wires the engine, the RESP front end and the
 * network layer together, and runs until SIGINT, SIGTERM or SHUTDOWN.
 *
 * Exit status: 0 after a clean shutdown, 1 when the server cannot start (address in
 * use, data directory locked), 2 for a bad option or value. */
#include "base/clock.h"
#include "base/fault.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/numbers.h"
#include "base/options.h"
#include "engine/namespaces.h"
#include "engine/store.h"
#include "net/net.h"
#include "observe/stats.h"
#include "proto/http/http.h"
#include "proto/native/native.h"
#include "proto/resp/resp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Descriptors kept for listeners, logs and files beyond one per client. */
#define RESERVED_DESCRIPTORS 64

/* How often background work runs, and how long one expiry pass may take. */
#define HOUSEKEEPING_INTERVAL_MS 100
#define EXPIRY_PASS_LIMIT_MS     20
/* How often a summary of evictions is logged, when there were any. */
#define EVICTION_SUMMARY_INTERVAL_MS 10000

struct server {
    struct options options;
    struct store *store;
    struct stats *stats;
    struct resp_server *resp;
    struct http_server *http;
    struct native_server *native;
    struct namespace_table namespaces;
    uint64_t namespace_quotas; /* bytes of --memory given to namespaces other than default */
    int log_fd;                /* --log-file, or -1 for standard error */
    struct net_server *net;
    int lock_fd;
    char executable[PATH_MAX];
    char config_file[PATH_MAX];
    pthread_t housekeeping;
    bool housekeeping_started;
    pthread_mutex_t housekeeping_lock;
    pthread_cond_t housekeeping_wake;
    bool stopping;
};

/* Prints one line about a bad option or value and exits with status 2. */
static void die_usage(const char *message) {
    fprintf(stderr, "strata-server: %s\n", message);
    exit(2);
}

/* Number of CPUs this process may run on. */
static int available_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0) return count;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

/* Creates DIR and its parents. Returns 0, or -1 with errno set. */
static int make_directories(const char *dir) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *slash = path + 1; *slash; slash++) {
        if (*slash != '/') continue;
        *slash = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return -1;
        *slash = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* Creates the data directory and takes its lock, so that two servers never share
 * one. Returns the lock descriptor, or -1 after logging why. */
static int lock_data_directory(const char *dir) {
    if (make_directories(dir) != 0) {
        fprintf(stderr, "strata-server: cannot create data directory '%s': %s\n", dir,
                strerror(errno));
        return -1;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "strata-server: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "strata-server: data directory '%s' is in use by another strata-server\n",
                dir);
        close(fd);
        return -1;
    }
    char pid[32];
    int length = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)length) != length) {
        log_event(LOG_WARNING, "lock_file", "path=%s error=\"%s\"", path, strerror(errno));
    }
    return fd;
}

/* Raises the descriptor limit to fit max-clients, lowering max-clients if the system
 * will not allow it (as Redis does). */
static void fit_descriptor_limit(struct options *options) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    rlim_t wanted = (rlim_t)options_number(options, OPTION_max_clients) + RESERVED_DESCRIPTORS;
    if (limit.rlim_cur >= wanted) return;
    rlim_t target =
        limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= wanted ? wanted : limit.rlim_max;
    limit.rlim_cur = target;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < wanted) {
        long long clients = (long long)limit.rlim_cur - RESERVED_DESCRIPTORS;
        if (clients < 1) clients = 1;
        char value[32];
        snprintf(value, sizeof(value), "%lld", clients);
        char error[128];
        options_set(options, OPTION_max_clients, value, false, error, sizeof(error));
        log_event(LOG_WARNING, "max_clients_lowered",
                  "max_clients=%lld reason=\"the open file limit is %llu\"", clients,
                  (unsigned long long)limit.rlim_cur);
    }
}

/* Opens --log-file for appending and sends log lines there. On a reopen (SIGHUP) the
 * new file takes the old one's descriptor number with dup2(), which swaps the file
 * atomically: a thread about to write a line uses a number that always names a log
 * file, never a descriptor closed and reused meanwhile (a client's socket). Returns 0,
 * or -1 with errno set (the old destination stays). */
static int open_log_file(struct server *server) {
    const char *path = options_text(&server->options, OPTION_log_file);
    if (path[0] == '\0') return 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (server->log_fd < 0) {
        server->log_fd = fd;
        log_set_fd(fd);
        return 0;
    }
    int result = dup3(fd, server->log_fd, O_CLOEXEC);
    int error = errno;
    close(fd);
    errno = error;
    return result < 0 ? -1 : 0;
}

/* Applies a run-time option change (CONFIG SET) to the parts that hold a copy, and
 * logs it. */
static int apply_option(struct options *options, enum option_id id, void *context, char *error,
                        size_t error_size) {
    struct server *server = context;
    if (id == OPTION_memory &&
        (uint64_t)options_number(options, OPTION_memory) <= server->namespace_quotas + (1u << 20)) {
        snprintf(error, error_size, "memory must exceed the namespace quotas (%llu bytes) by 1mb",
                 (unsigned long long)server->namespace_quotas);
        return -1;
    }
    char value[128], quoted[160];
    options_format(options, id, value, sizeof(value));
    log_event(LOG_INFO, "config", "name=%s value=%s", options_name(id),
              log_quote(quoted, sizeof(quoted), value, strlen(value)));
    switch (id) {
    case OPTION_memory:
        store_set_budget(server->store, (uint64_t)options_number(options, OPTION_memory) -
                                            server->namespace_quotas);
        server->namespaces.entries[0].quota =
            (uint64_t)options_number(options, OPTION_memory) - server->namespace_quotas;
        break;
    case OPTION_max_value:
        store_set_max_value(server->store, (uint64_t)options_number(options, OPTION_max_value));
        break;
    case OPTION_log_level:
        log_set_level((enum log_level)options_number(options, OPTION_log_level));
        break;
    case OPTION_pace_timeout:
        store_set_pace_timeout(server->store, options_number(options, OPTION_pace_timeout));
        break;
    default:
        break;
    }
    return 0;
}

static void request_shutdown(void *context) {
    (void)context;
    kill(getpid(), SIGUSR1);
}

/* ---- glue between the network layer and the RESP sessions ---------------------- */

static void resume_connection(void *handle) {
    net_connection_resume(handle);
}

static void *handler_open(void *context, const struct net_connection_info *info,
                          struct output_queue *output) {
    struct server *server = context;
    return resp_session_open(server->resp, info->id, info->fd, info->peer, info->local, output,
                             resume_connection, info->connection);
}

static enum net_action handler_data(void *session, const unsigned char *data, size_t length,
                                    size_t *consumed) {
    return resp_session_data(session, data, length, consumed) ? NET_CLOSE : NET_CONTINUE;
}

static void handler_close(void *session) {
    resp_session_close(session);
}

/* ---- glue for the native protocol ------------------------------------------------- */

static void *native_handler_open(void *context, const struct net_connection_info *info,
                                 struct output_queue *output) {
    struct server *server = context;
    return native_session_open(server->native, info->id, info->peer, output, resume_connection,
                               info->connection);
}

static enum net_action native_handler_data(void *session, const unsigned char *data, size_t length,
                                           size_t *consumed) {
    return native_session_data(session, data, length, consumed) ? NET_CLOSE : NET_CONTINUE;
}

static void *http_handler_open(void *context, const struct net_connection_info *info,
                               struct output_queue *output) {
    struct server *server = context;
    return http_session_open(server->http, info->id, info->peer, output, resume_connection,
                             info->connection);
}

static enum net_action http_handler_data(void *session, const unsigned char *data, size_t length,
                                         size_t *consumed) {
    return http_session_data(session, data, length, consumed) ? NET_CLOSE : NET_CONTINUE;
}

static enum net_action http_handler_tick(void *session, int64_t now_ms) {
    return http_session_tick(session, now_ms) ? NET_CLOSE : NET_CONTINUE;
}

/* ---- background work ----------------------------------------------------------- */

/* Logs how many items were evicted and writes refused, every namespace together, since
 * the last summary. */
static void log_eviction_summary(struct stats *stats, int64_t *last_evicted,
                                 int64_t *last_rejected) {
    struct store_stats counters;
    stats_read_store_counters(stats, &counters);
    int64_t evicted = (int64_t)counters.evicted;
    int64_t rejected = (int64_t)counters.rejected_writes;
    if (evicted < *last_evicted || rejected < *last_rejected) { /* CONFIG RESETSTAT */
        *last_evicted = evicted;
        *last_rejected = rejected;
        return;
    }
    if (evicted != *last_evicted || rejected != *last_rejected) {
        log_event(LOG_INFO, "evictions", "tier=dram evicted=%lld rejected_writes=%lld seconds=%d",
                  (long long)(evicted - *last_evicted), (long long)(rejected - *last_rejected),
                  EVICTION_SUMMARY_INTERVAL_MS / 1000);
    }
    *last_evicted = evicted;
    *last_rejected = rejected;
}

/* Active expiry on every namespace's store (default included), in turns, while the
 * last turn found expired keys and for at most EXPIRY_PASS_LIMIT_MS. */
static void expire_namespaces(struct server *server) {
    int64_t started = clock_monotonic_ms();
    bool found = true;
    while (found && clock_monotonic_ms() - started < EXPIRY_PASS_LIMIT_MS) {
        found = false;
        for (int i = 0; i < server->namespaces.count; i++) {
            if (store_expire_cycle(server->namespaces.entries[i].store, 4096) > 0) found = true;
        }
    }
}

/* Runs active expiry, statistics sampling and the eviction summary, every
 * HOUSEKEEPING_INTERVAL_MS. */
static void *housekeeping_main(void *argument) {
    struct server *server = argument;
    int64_t next_summary = clock_monotonic_ms() + EVICTION_SUMMARY_INTERVAL_MS;
    struct store_stats counters;
    stats_read_store_counters(server->stats, &counters);
    int64_t last_evicted = (int64_t)counters.evicted;
    int64_t last_rejected = (int64_t)counters.rejected_writes;
    pthread_mutex_lock(&server->housekeeping_lock);
    while (!server->stopping) {
        pthread_mutex_unlock(&server->housekeeping_lock);
        if (!store_recovering(server->store) &&
            stats_change_state(server->stats, SERVER_RECOVERING, SERVER_SERVING)) {
            log_event(LOG_INFO, "ready", "reason=\"the flash index is whole\"");
        }
        expire_namespaces(server);
        stats_sample(server->stats);
        if (clock_monotonic_ms() >= next_summary) {
            log_eviction_summary(server->stats, &last_evicted, &last_rejected);
            next_summary += EVICTION_SUMMARY_INTERVAL_MS;
        }
        pthread_mutex_lock(&server->housekeeping_lock);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += HOUSEKEEPING_INTERVAL_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        if (!server->stopping) {
            pthread_cond_timedwait(&server->housekeeping_wake, &server->housekeeping_lock,
                                   &deadline);
        }
    }
    pthread_mutex_unlock(&server->housekeeping_lock);
    return NULL;
}

/* ---- main ---------------------------------------------------------------------- */

/* A start that fails after the stores exist: their flash threads (recovery, writer) are
 * stopped and joined, as after a crash (nothing was served, nothing to save). Returns
 * the exit status, 1. */
static int start_failed(struct server *server) {
    for (int i = 1; i < server->namespaces.count; i++)
        store_destroy(server->namespaces.entries[i].store);
    if (server->store != NULL) store_destroy(server->store);
    server->store = NULL;
    return 1;
}

int main(int argc, char **argv) {
    static struct server server;
    server.lock_fd = -1;
    if (options_init(&server.options) != 0) die_usage("out of memory");
    char error[512];
    switch (options_parse_command_line(&server.options, argc, argv, error, sizeof(error))) {
    case OPTIONS_PARSE_HELP:
        options_print_help(stdout, "strata-server");
        return 0;
    case OPTIONS_PARSE_VERSION:
        printf("strata-server %s\n", STRATA_VERSION);
        return 0;
    case OPTIONS_PARSE_ERROR:
        die_usage(error);
        break;
    case OPTIONS_PARSE_OK:
        break;
    }
    log_set_level((enum log_level)options_number(&server.options, OPTION_log_level));
#ifdef STRATA_FAULT_INJECTION
    /* The fault-injection build: rules from the environment apply from the start. */
    const char *faults = getenv("STRATA_FAULTS");
    if (faults != NULL && faults[0] != '\0') {
        if (fault_parse(faults, error, sizeof(error)) != 0) die_usage(error);
        log_event(LOG_WARNING, "fault_rules", "rules=%s", faults);
    }
#endif
    if (options_number(&server.options, OPTION_threads) == 0) {
        char cores[16];
        snprintf(cores, sizeof(cores), "%d", available_cores());
        options_set(&server.options, OPTION_threads, cores, false, error, sizeof(error));
    }
    if (realpath("/proc/self/exe", server.executable) == NULL) server.executable[0] = '\0';
    const char *config = options_text(&server.options, OPTION_config);
    if (config[0] == '\0' || realpath(config, server.config_file) == NULL) {
        snprintf(server.config_file, sizeof(server.config_file), "%s", config);
    }

    /* Signals are taken by sigwait() in this thread only; threads inherit the mask. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    server.log_fd = -1;
    if (open_log_file(&server) != 0) {
        fprintf(stderr, "strata-server: cannot open log file '%s': %s\n",
                options_text(&server.options, OPTION_log_file), strerror(errno));
        return 1;
    }
    server.lock_fd = lock_data_directory(options_text(&server.options, OPTION_dir));
    if (server.lock_fd < 0) return 1;
    fit_descriptor_limit(&server.options);

    char ssd_directory[4096];
    const char *ssd_dir = options_text(&server.options, OPTION_ssd_dir);
    if (ssd_dir[0] != '\0') {
        snprintf(ssd_directory, sizeof(ssd_directory), "%s", ssd_dir);
    } else {
        snprintf(ssd_directory, sizeof(ssd_directory), "%s/ssd",
                 options_text(&server.options, OPTION_dir));
    }
    struct namespace_spec specs[NAMESPACE_MAX_COUNT];
    int spec_count = namespace_specs_parse(options_text(&server.options, OPTION_namespaces), specs,
                                           error, sizeof(error));
    if (spec_count < 0) die_usage(error);
    for (int i = 0; i < spec_count; i++)
        server.namespace_quotas += specs[i].quota;
    uint64_t memory_total = (uint64_t)options_number(&server.options, OPTION_memory);
    if (memory_total <= server.namespace_quotas + (1u << 20)) {
        die_usage("--memory must exceed the sum of the --namespaces quotas by at least 1mb");
    }
    struct store_config store_config = {
        .memory_budget = memory_total - server.namespace_quotas,
        .max_value = (uint64_t)options_number(&server.options, OPTION_max_value),
        .flash =
            {
                .directory = ssd_directory,
                .size = (uint64_t)options_number(&server.options, OPTION_ssd_size),
                .segment_size = (uint64_t)options_number(&server.options, OPTION_segment_size),
                .write_through = options_number(&server.options, OPTION_write_policy) == 1,
                .fsync = (enum store_fsync)options_number(&server.options, OPTION_fsync),
                .pace_timeout_ms = options_number(&server.options, OPTION_pace_timeout),
            },
    };
    server.store = store_create(&store_config, error, sizeof(error));
    if (server.store == NULL) {
        fprintf(stderr, "strata-server: cannot start the store: %s\n", error);
        log_event(LOG_ERROR, "store_failed", "error=\"%s\"", error);
        return 1;
    }
    namespace_table_add(&server.namespaces, "default", server.store,
                        memory_total - server.namespace_quotas, true);
    for (int i = 0; i < spec_count; i++) {
        /* A namespace is a DRAM store of its own: its quota is its budget. */
        struct store_config namespace_config = {
            .memory_budget = specs[i].quota,
            .max_value = store_config.max_value,
        };
        struct store *store = store_create(&namespace_config, error, sizeof(error));
        if (store == NULL) {
            fprintf(stderr, "strata-server: cannot create namespace '%s': %s\n", specs[i].name,
                    error);
            return start_failed(&server);
        }
        namespace_table_add(&server.namespaces, specs[i].name, store, specs[i].quota, false);
    }
    server.options.on_change = apply_option;
    server.options.on_change_context = &server;

    int threads = (int)options_number(&server.options, OPTION_threads);
    struct stats_environment stats_environment = {
        .store = server.store,
        .options = &server.options,
        .executable = server.executable,
        .config_file = server.config_file,
        .threads = threads,
        .namespaces = &server.namespaces,
    };
    server.stats = stats_create(&stats_environment);
    struct resp_environment environment = {
        .store = server.store,
        .options = &server.options,
        .stats = server.stats,
        .request_shutdown = request_shutdown,
        .shutdown_context = &server,
    };
    server.resp = resp_server_create(&environment);
    struct http_environment http_environment = {
        .store = server.store,
        .options = &server.options,
        .stats = server.stats,
    };
    server.http = http_server_create(&http_environment);
    struct native_environment native_environment = {
        .namespaces = &server.namespaces,
        .options = &server.options,
    };
    server.native = native_server_create(&native_environment);
    if (server.stats == NULL || server.resp == NULL || server.http == NULL ||
        server.native == NULL) {
        fprintf(stderr, "strata-server: out of memory\n");
        return start_failed(&server);
    }

    struct net_config net_config = {
        .bind = options_text(&server.options, OPTION_bind),
        .threads = threads,
        .options = &server.options,
    };
    struct net_handler resp_handler = {
        .open = handler_open,
        .data = handler_data,
        .direct_target = resp_session_direct_target,
        .direct_filled = resp_session_direct_filled,
        .close = handler_close,
        .refusal = "-ERR max number of clients reached\r\n",
    };
    struct net_handler http_handler = {
        .open = http_handler_open,
        .data = http_handler_data,
        .direct_target = http_session_direct_target,
        .direct_filled = http_session_direct_filled,
        .tick = http_handler_tick,
        .wants_close = http_session_wants_close,
        .close = http_session_close,
        .refusal = http_refusal,
    };
    struct net_handler native_handler = {
        .open = native_handler_open,
        .data = native_handler_data,
        .direct_target = native_session_direct_target,
        .direct_filled = native_session_direct_filled,
        .close = native_session_close,
        .refusal = (const char *)native_refusal,
        .refusal_length = native_refusal_length,
    };
    server.net = net_server_create(&net_config, error, sizeof(error));
    int resp_port = -1, http_port = -1, native_port = -1;
    if (server.net != NULL) {
        resp_port = net_server_listen(server.net, (int)options_number(&server.options, OPTION_port),
                                      &resp_handler, &server, error, sizeof(error));
    }
    if (resp_port >= 0) {
        http_port =
            net_server_listen(server.net, (int)options_number(&server.options, OPTION_http_port),
                              &http_handler, &server, error, sizeof(error));
    }
    if (http_port >= 0) {
        native_port =
            net_server_listen(server.net, (int)options_number(&server.options, OPTION_native_port),
                              &native_handler, &server, error, sizeof(error));
    }
    if (server.net == NULL || resp_port < 0 || http_port < 0 || native_port < 0) {
        fprintf(stderr, "strata-server: %s\n", error);
        return start_failed(&server);
    }
    stats_set_ports(server.stats, resp_port, http_port);
    if (net_server_start(server.net, error, sizeof(error)) != 0) {
        fprintf(stderr, "strata-server: %s\n", error);
        return start_failed(&server);
    }
    /* The ports are open while the flash index is rebuilt: clients hear LOADING (RESP),
     * BUSY (native) or 503 (HTTP) until it is whole; housekeeping notices the end. */
    if (store_recovering(server.store)) {
        stats_set_state(server.stats, SERVER_RECOVERING);
        log_event(LOG_INFO, "recovering", "reason=\"rebuilding the flash index\"");
    } else {
        stats_set_state(server.stats, SERVER_SERVING);
        log_event(LOG_INFO, "ready", NULL);
    }
    pthread_mutex_init(&server.housekeeping_lock, NULL);
    pthread_cond_init(&server.housekeeping_wake, NULL);
    if (pthread_create(&server.housekeeping, NULL, housekeeping_main, &server) == 0) {
        server.housekeeping_started = true;
    }

    char memory[32], max_value[32];
    log_event(LOG_INFO, "start",
              "version=%s pid=%ld threads=%d memory=%s max_value=%s max_clients=%lld dir=%s",
              STRATA_VERSION, (long)getpid(), threads,
              format_size(memory, sizeof(memory),
                          (uint64_t)options_number(&server.options, OPTION_memory)),
              format_size(max_value, sizeof(max_value),
                          (uint64_t)options_number(&server.options, OPTION_max_value)),
              (long long)options_number(&server.options, OPTION_max_clients),
              options_text(&server.options, OPTION_dir));
    log_event(LOG_INFO, "listening", "protocol=resp bind=\"%s\" port=%d",
              options_text(&server.options, OPTION_bind), resp_port);
    log_event(LOG_INFO, "listening", "protocol=http bind=\"%s\" port=%d",
              options_text(&server.options, OPTION_bind), http_port);
    log_event(LOG_INFO, "listening", "protocol=native bind=\"%s\" port=%d namespaces=%d",
              options_text(&server.options, OPTION_bind), native_port, server.namespaces.count);

    for (;;) {
        int received = 0;
        if (sigwait(&signals, &received) != 0) continue;
        if (received == SIGHUP) {
            if (open_log_file(&server) != 0) {
                log_event(LOG_ERROR, "log_reopen_failed", "path=%s error=\"%s\"",
                          options_text(&server.options, OPTION_log_file), strerror(errno));
            } else {
                log_event(LOG_INFO, "log_reopened", "path=%s",
                          options_text(&server.options, OPTION_log_file));
            }
            continue;
        }
        log_event(LOG_INFO, "stopping", "reason=%s",
                  received == SIGUSR1  ? "shutdown_command"
                  : received == SIGINT ? "SIGINT"
                                       : "SIGTERM");
        break;
    }
    int64_t drain_seconds = options_number(&server.options, OPTION_drain_time);
    if (drain_seconds > 0) {
        /* Keep serving while /health says 503, so load balancers move away first. */
        stats_set_state(server.stats, SERVER_DRAINING);
        log_event(LOG_INFO, "draining", "seconds=%lld", (long long)drain_seconds);
        struct timespec pause = {.tv_sec = (time_t)drain_seconds};
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
        }
    }
    stats_set_state(server.stats, SERVER_STOPPING);

    pthread_mutex_lock(&server.housekeeping_lock);
    server.stopping = true;
    pthread_cond_signal(&server.housekeeping_wake);
    pthread_mutex_unlock(&server.housekeeping_lock);
    if (server.housekeeping_started) pthread_join(server.housekeeping, NULL);
    net_server_stop(server.net);
    net_server_destroy(server.net);
    server.net = NULL;
    resp_server_destroy(server.resp);
    http_server_destroy(server.http);
    native_server_destroy(server.native);
    stats_destroy(server.stats);
    /* A clean stop: what is only in DRAM goes to flash and the flash index is saved. */
    store_shutdown(server.store);
    store_destroy(server.store);
    for (int i = 1; i < server.namespaces.count; i++)
        store_destroy(server.namespaces.entries[i].store);
    pthread_mutex_destroy(&server.housekeeping_lock);
    pthread_cond_destroy(&server.housekeeping_wake);
    log_event(LOG_INFO, "stop", NULL);
    metrics_teardown();
    options_free(&server.options);
    close(server.lock_fd);
    if (server.log_fd >= 0) close(server.log_fd);
    return 0;
}
