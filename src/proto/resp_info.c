/* INFO text and CLIENT LIST lines. */
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/metrics.h"
#include "base/numbers.h"
#include "proto/resp_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

enum section {
    SECTION_SERVER = 1,
    SECTION_CLIENTS = 2,
    SECTION_MEMORY = 4,
    SECTION_STATS = 8,
    SECTION_KEYSPACE = 16,
    SECTION_STRATA = 32,
    SECTION_ALL = 63,
};

static const struct {
    const char *name;
    int bit;
} section_names[] = {
    {"server", SECTION_SERVER}, {"clients", SECTION_CLIENTS},   {"memory", SECTION_MEMORY},
    {"stats", SECTION_STATS},   {"keyspace", SECTION_KEYSPACE}, {"strata", SECTION_STRATA},
    {"all", SECTION_ALL},       {"default", SECTION_ALL},       {"everything", SECTION_ALL},
};

/* Resident set size of this process, in bytes. */
static uint64_t resident_bytes(void) {
    FILE *file = fopen("/proc/self/statm", "r");
    if (file == NULL) return 0;
    unsigned long long total = 0, resident = 0;
    int fields = fscanf(file, "%llu %llu", &total, &resident);
    fclose(file);
    if (fields != 2) return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Per-second rate of a sampled counter over the last samples. */
static double sampled_rate(struct resp_server *server, const int64_t *values) {
    pthread_mutex_lock(&server->samples_lock);
    double rate = 0;
    if (server->sample_count >= 2) {
        int newest = (server->sample_next + 15) % 16;
        int oldest = server->sample_count < 16 ? 0 : server->sample_next;
        int64_t elapsed = server->sample_times[newest] - server->sample_times[oldest];
        if (elapsed > 0) {
            rate = (double)(values[newest] - values[oldest]) * 1000.0 / (double)elapsed;
        }
    }
    pthread_mutex_unlock(&server->samples_lock);
    return rate;
}

static void section_server(struct resp_session *session, struct byte_buffer *text) {
    const struct resp_environment *environment = &session->server->environment;
    struct utsname system;
    if (uname(&system) != 0) memset(&system, 0, sizeof(system));
    int64_t uptime = (clock_realtime_ms() - session->server->start_time_ms) / 1000;
    byte_buffer_appendf(text,
                        "# Server\r\n"
                        "redis_version:%s\r\n"
                        "strata_version:%s\r\n"
                        "redis_mode:standalone\r\n"
                        "os:%s %s %s\r\n"
                        "arch_bits:%d\r\n"
                        "multiplexing_api:epoll\r\n"
                        "process_id:%ld\r\n"
                        "tcp_port:%d\r\n"
                        "server_time_usec:%lld\r\n"
                        "uptime_in_seconds:%lld\r\n"
                        "uptime_in_days:%lld\r\n"
                        "worker_threads:%d\r\n"
                        "executable:%s\r\n"
                        "config_file:%s\r\n",
                        STRATA_REDIS_VERSION, STRATA_VERSION, system.sysname, system.release,
                        system.machine, (int)(sizeof(void *) * 8), (long)getpid(),
                        environment->port, (long long)clock_realtime_us(), (long long)uptime,
                        (long long)(uptime / 86400), environment->threads, environment->executable,
                        environment->config_file);
}

static void section_clients(struct resp_session *session, struct byte_buffer *text) {
    const struct options *options = session->server->environment.options;
    byte_buffer_appendf(text,
                        "# Clients\r\n"
                        "connected_clients:%lld\r\n"
                        "maxclients:%lld\r\n"
                        "client_output_limit:%lld\r\n"
                        "blocked_clients:0\r\n",
                        (long long)metric_read(METRIC_clients_connected),
                        (long long)options_number(options, OPTION_max_clients),
                        (long long)options_number(options, OPTION_client_output_limit));
}

static void section_memory(struct byte_buffer *text, const struct store_stats *stats) {
    char used[32], peak[32], budget[32], rss_text[32];
    uint64_t rss = resident_bytes();
    byte_buffer_appendf(
        text,
        "# Memory\r\n"
        "used_memory:%llu\r\n"
        "used_memory_human:%s\r\n"
        "used_memory_peak:%llu\r\n"
        "used_memory_peak_human:%s\r\n"
        "used_memory_rss:%llu\r\n"
        "used_memory_rss_human:%s\r\n"
        "maxmemory:%llu\r\n"
        "maxmemory_human:%s\r\n"
        "maxmemory_policy:s3fifo\r\n"
        "mem_allocator:libc\r\n",
        (unsigned long long)stats->used, format_size_human(used, sizeof(used), stats->used),
        (unsigned long long)stats->peak, format_size_human(peak, sizeof(peak), stats->peak),
        (unsigned long long)rss, format_size_human(rss_text, sizeof(rss_text), rss),
        (unsigned long long)stats->budget,
        format_size_human(budget, sizeof(budget), stats->budget));
}

static void section_stats(struct resp_session *session, struct byte_buffer *text) {
    struct resp_server *server = session->server;
    byte_buffer_appendf(text,
                        "# Stats\r\n"
                        "total_connections_received:%lld\r\n"
                        "total_commands_processed:%lld\r\n"
                        "instantaneous_ops_per_sec:%.0f\r\n"
                        "total_net_input_bytes:%lld\r\n"
                        "total_net_output_bytes:%lld\r\n"
                        "instantaneous_input_kbps:%.2f\r\n"
                        "instantaneous_output_kbps:%.2f\r\n"
                        "rejected_connections:%lld\r\n"
                        "expired_keys:%lld\r\n"
                        "evicted_keys:%lld\r\n"
                        "keyspace_hits:%lld\r\n"
                        "keyspace_misses:%lld\r\n",
                        (long long)metric_read(METRIC_connections_received),
                        (long long)metric_read(METRIC_commands_processed),
                        sampled_rate(server, server->sample_commands),
                        (long long)metric_read(METRIC_net_input_bytes),
                        (long long)metric_read(METRIC_net_output_bytes),
                        sampled_rate(server, server->sample_input) / 1024,
                        sampled_rate(server, server->sample_output) / 1024,
                        (long long)metric_read(METRIC_connections_rejected),
                        (long long)metric_read(METRIC_expired_keys),
                        (long long)metric_read(METRIC_evicted_keys),
                        (long long)metric_read(METRIC_keyspace_hits),
                        (long long)metric_read(METRIC_keyspace_misses));
}

static void section_keyspace(struct byte_buffer *text, const struct store_stats *stats) {
    byte_buffer_append_text(text, "# Keyspace\r\n");
    if (stats->items > 0) {
        byte_buffer_appendf(text, "db0:keys=%llu,expires=%llu,avg_ttl=0\r\n",
                            (unsigned long long)stats->items,
                            (unsigned long long)stats->expiring_items);
    }
}

static void section_strata(struct byte_buffer *text, const struct store_stats *stats) {
    byte_buffer_appendf(
        text,
        "# Strata\r\n"
        "strata_dram_budget:%llu\r\n"
        "strata_dram_used:%llu\r\n"
        "strata_dram_items:%llu\r\n"
        "strata_dram_fixed_bytes:%llu\r\n"
        "strata_dram_index_bytes:%llu\r\n"
        "strata_dram_bytes_per_item:%llu\r\n"
        "strata_dram_small_queue_items:%llu\r\n"
        "strata_dram_main_queue_items:%llu\r\n"
        "strata_dram_evictions:%lld\r\n"
        "strata_expirations:%lld\r\n"
        "strata_rejected_writes:%lld\r\n"
        "strata_protocol_errors:%lld\r\n"
        "strata_output_limit_disconnects:%lld\r\n"
        "strata_eviction_policy:s3fifo\r\n",
        (unsigned long long)stats->budget, (unsigned long long)stats->used,
        (unsigned long long)stats->items, (unsigned long long)stats->fixed,
        (unsigned long long)stats->index,
        (unsigned long long)(stats->items ? (stats->used - stats->fixed) / stats->items : 0),
        (unsigned long long)stats->small_queue_items, (unsigned long long)stats->main_queue_items,
        (long long)metric_read(METRIC_evicted_keys), (long long)metric_read(METRIC_expired_keys),
        (long long)metric_read(METRIC_rejected_writes),
        (long long)metric_read(METRIC_protocol_errors),
        (long long)metric_read(METRIC_output_limit_disconnects));
}

void resp_info_text(struct resp_session *session, const struct resp_request *request, size_t first,
                    struct byte_buffer *text) {
    int wanted = first >= request->argc ? SECTION_ALL : 0;
    for (size_t i = first; i < request->argc; i++) {
        for (size_t j = 0; j < sizeof(section_names) / sizeof(section_names[0]); j++) {
            if (argument_is(request, i, section_names[j].name)) wanted |= section_names[j].bit;
        }
    }
    struct store_stats stats;
    store_get_stats(session->server->environment.store, &stats);
    const int order[] = {SECTION_SERVER, SECTION_CLIENTS,  SECTION_MEMORY,
                         SECTION_STATS,  SECTION_KEYSPACE, SECTION_STRATA};
    bool first_section = true;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (!(wanted & order[i])) continue;
        if (!first_section) byte_buffer_append_text(text, "\r\n");
        first_section = false;
        switch (order[i]) {
        case SECTION_SERVER:
            section_server(session, text);
            break;
        case SECTION_CLIENTS:
            section_clients(session, text);
            break;
        case SECTION_MEMORY:
            section_memory(text, &stats);
            break;
        case SECTION_STATS:
            section_stats(session, text);
            break;
        case SECTION_KEYSPACE:
            section_keyspace(text, &stats);
            break;
        case SECTION_STRATA:
            section_strata(text, &stats);
            break;
        }
    }
}

void resp_client_line(const struct resp_session *session, struct byte_buffer *text) {
    int64_t now = clock_realtime_ms();
    int64_t last = atomic_load_explicit(&session->last_active_ms, memory_order_relaxed);
    const char *command = atomic_load_explicit(&session->last_command, memory_order_relaxed);
    size_t pending = output_queue_pending(session->output);
    byte_buffer_appendf(
        text,
        "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=%lld flags=N db=0 "
        "sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 "
        "obl=0 oll=0 omem=%zu tot-mem=%zu events=r cmd=%s user=default "
        "lib-name=%s lib-ver=%s redir=-1 resp=%d\n",
        (unsigned long long)session->id, session->peer, session->local, session->fd,
        session->name ? session->name : "", (long long)((now - session->created_ms) / 1000),
        (long long)((now - last) / 1000), pending, pending, command,
        session->library_name ? session->library_name : "",
        session->library_version ? session->library_version : "", session->protocol);
}
