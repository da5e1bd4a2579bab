/* INFO text and CLIENT LIST lines. */
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "observe/stats.h"
#include "proto/resp/resp_internal.h"

#include <stdint.h>
#include <sys/random.h>

/* The sections the Redis front end writes, beside stats.c's. */
enum { INFO_CPU = 1, INFO_ERRORSTATS = 2, INFO_COMMANDSTATS = 4, INFO_REPLICATION = 8 };

void resp_info_init(struct resp_server *server) {
    unsigned char bytes[20];
    if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != (ssize_t)sizeof(bytes)) {
        uint64_t seed = (uint64_t)clock_realtime_us() ^ (uint64_t)(uintptr_t)server;
        for (size_t i = 0; i < sizeof(bytes); i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            bytes[i] = (unsigned char)(seed >> 56);
        }
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(bytes); i++) {
        server->replication_id[2 * i] = digits[bytes[i] >> 4];
        server->replication_id[2 * i + 1] = digits[bytes[i] & 15];
    }
    server->replication_id[40] = '\0';
}

/* INFO's Replication section: strata is a master with no replicas (it does not
 * replicate), in Redis 7.0's fields, so that tools reading role: see what it is. */
static void info_replication(const struct resp_server *server, struct byte_buffer *text) {
    if (text->length > 0) byte_buffer_append_text(text, "\r\n");
    byte_buffer_appendf(text,
                        "# Replication\r\n"
                        "role:master\r\n"
                        "connected_slaves:0\r\n"
                        "master_failover_state:no-failover\r\n"
                        "master_replid:%s\r\n"
                        "master_replid2:0000000000000000000000000000000000000000\r\n"
                        "master_repl_offset:0\r\n"
                        "second_repl_offset:-1\r\n"
                        "repl_backlog_active:0\r\n"
                        "repl_backlog_size:1048576\r\n"
                        "repl_backlog_first_byte_offset:0\r\n"
                        "repl_backlog_histlen:0\r\n",
                        server->replication_id);
}

void resp_info_text(struct resp_session *session, const struct resp_request *request, size_t first,
                    struct byte_buffer *text) {
    /* As Redis 7: no section, or "default", is every section but commandstats; "all"
     * and "everything" add it. */
    bool none = first >= request->argc;
    int wanted = none ? STATS_SECTION_ALL : 0;
    int own = none ? INFO_CPU | INFO_ERRORSTATS | INFO_REPLICATION : 0;
    for (size_t i = first; i < request->argc; i++) {
        if (argument_is(request, i, "cpu")) {
            own |= INFO_CPU;
        } else if (argument_is(request, i, "replication")) {
            own |= INFO_REPLICATION;
        } else if (argument_is(request, i, "errorstats")) {
            own |= INFO_ERRORSTATS;
        } else if (argument_is(request, i, "commandstats")) {
            own |= INFO_COMMANDSTATS;
        } else {
            int bit = stats_section_bit((const char *)request->argv[i], request->lengths[i]);
            wanted |= bit;
            if (bit == STATS_SECTION_ALL) own |= INFO_CPU | INFO_ERRORSTATS | INFO_REPLICATION;
            if (argument_is(request, i, "all") || argument_is(request, i, "everything"))
                own |= INFO_COMMANDSTATS;
        }
    }
    /* Redis's order: Server, Clients, Memory, Stats, Replication, CPU, Errorstats,
     * Keyspace (and strata's own sections), Commandstats. */
    const int before =
        STATS_SECTION_SERVER | STATS_SECTION_CLIENTS | STATS_SECTION_MEMORY | STATS_SECTION_STATS;
    struct stats *stats = session->server->environment.stats;
    if (wanted & before) stats_info_text(stats, wanted & before, text);
    if (own & INFO_REPLICATION) info_replication(session->server, text);
    if (own & INFO_CPU) resp_info_cpu(text);
    if (own & INFO_ERRORSTATS) resp_info_errorstats(text);
    if (wanted & ~before) {
        /* stats.c separates only the sections it writes itself. */
        size_t length = text->length;
        if (length > 0) byte_buffer_append_text(text, "\r\n");
        stats_info_text(stats, wanted & ~before, text);
        if (text->length == length + 2) text->length = length; /* it wrote nothing */
    }
    if (own & INFO_COMMANDSTATS) resp_info_commandstats(text);
}

void resp_client_line(const struct resp_session *session, struct byte_buffer *text) {
    STRATA_ASSERT(check_held(&session->server->sessions_owner));
    int64_t now = clock_realtime_ms();
    int64_t last = atomic_load_explicit(&session->last_active_ms, memory_order_relaxed);
    const char *command = atomic_load_explicit(&session->last_command, memory_order_relaxed);
    size_t pending = output_queue_pending(session->connection_output);
    /* As Redis: multi= counts the queued commands (-1 outside MULTI). Redis's flag
     * letters, in its order: O monitor, x MULTI, b blocked, e no-evict, T no-touch; N for none. */
    long long multi = (long long)atomic_load_explicit(&session->multi_count, memory_order_relaxed);
    char flags[8], *flag = flags;
    if (atomic_load_explicit(&session->monitoring, memory_order_relaxed)) *flag++ = 'O';
    if (multi >= 0) *flag++ = 'x';
    if (atomic_load_explicit(&session->blocked, memory_order_relaxed)) *flag++ = 'b';
    if (atomic_load_explicit(&session->no_evict, memory_order_relaxed)) *flag++ = 'e';
    if (atomic_load_explicit(&session->no_touch, memory_order_relaxed)) *flag++ = 'T';
    if (flag == flags) *flag++ = 'N';
    *flag = '\0';
    size_t copied = output_queue_copied(session->connection_output);
    uint64_t query = atomic_load_explicit(&session->query_bytes, memory_order_relaxed);
    uint64_t query_free = atomic_load_explicit(&session->query_free, memory_order_relaxed);
    uint64_t arguments = atomic_load_explicit(&session->argument_bytes, memory_order_relaxed);
    uint64_t parser = atomic_load_explicit(&session->parser_memory, memory_order_relaxed);
    /* Redis 7.0's fields in its order (rbs: the size of a reply chunk, rbp: the most the
     * reply chunks have held), then Redis 7.2's lib-name and lib-ver. */
    byte_buffer_appendf(
        text,
        "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=%lld flags=%s db=0 "
        "sub=0 psub=0 ssub=0 multi=%lld qbuf=%llu qbuf-free=%llu argv-mem=%llu multi-mem=0 "
        "rbs=%d rbp=%zu obl=0 oll=0 omem=%zu tot-mem=%llu events=r cmd=%s user=%s "
        "redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
        (unsigned long long)session->id, session->peer, session->local, session->fd,
        session->name ? session->name : "", (long long)((now - session->created_ms) / 1000),
        (long long)((now - last) / 1000), flags, multi, (unsigned long long)query,
        (unsigned long long)query_free, (unsigned long long)arguments, OUTPUT_CHUNK_SIZE,
        output_queue_copied_peak(session->connection_output), pending,
        (unsigned long long)(sizeof(*session) + parser + copied), command, session->user_name,
        atomic_load_explicit(&session->protocol, memory_order_relaxed),
        session->library_name ? session->library_name : "",
        session->library_version ? session->library_version : "");
}
