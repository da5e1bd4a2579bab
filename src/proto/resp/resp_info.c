/* INFO text and CLIENT LIST lines. */
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "observe/stats.h"
#include "proto/resp/resp_internal.h"

void resp_info_text(struct resp_session *session, const struct resp_request *request, size_t first,
                    struct byte_buffer *text) {
    int wanted = first >= request->argc ? STATS_SECTION_ALL : 0;
    for (size_t i = first; i < request->argc; i++)
        wanted |= stats_section_bit((const char *)request->argv[i], request->lengths[i]);
    stats_info_text(session->server->environment.stats, wanted, text);
}

void resp_client_line(const struct resp_session *session, struct byte_buffer *text) {
    STRATA_ASSERT(check_held(&session->server->sessions_owner));
    int64_t now = clock_realtime_ms();
    int64_t last = atomic_load_explicit(&session->last_active_ms, memory_order_relaxed);
    const char *command = atomic_load_explicit(&session->last_command, memory_order_relaxed);
    size_t pending = output_queue_pending(session->output);
    size_t copied = output_queue_copied(session->output);
    uint64_t query = atomic_load_explicit(&session->query_bytes, memory_order_relaxed);
    uint64_t query_free = atomic_load_explicit(&session->query_free, memory_order_relaxed);
    uint64_t arguments = atomic_load_explicit(&session->argument_bytes, memory_order_relaxed);
    uint64_t parser = atomic_load_explicit(&session->parser_memory, memory_order_relaxed);
    /* Redis 7.0's fields in its order (rbs: the size of a reply chunk, rbp: the most the
     * reply chunks have held), then Redis 7.2's lib-name and lib-ver. */
    byte_buffer_appendf(
        text,
        "id=%llu addr=%s laddr=%s fd=%d name=%s age=%lld idle=%lld flags=N db=0 "
        "sub=0 psub=0 ssub=0 multi=-1 qbuf=%llu qbuf-free=%llu argv-mem=%llu multi-mem=0 "
        "rbs=%d rbp=%zu obl=0 oll=0 omem=%zu tot-mem=%llu events=r cmd=%s user=%s "
        "redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
        (unsigned long long)session->id, session->peer, session->local, session->fd,
        session->name ? session->name : "", (long long)((now - session->created_ms) / 1000),
        (long long)((now - last) / 1000), (unsigned long long)query, (unsigned long long)query_free,
        (unsigned long long)arguments, OUTPUT_CHUNK_SIZE, output_queue_copied_peak(session->output),
        pending, (unsigned long long)(sizeof(*session) + parser + copied), command,
        session->user_name, atomic_load_explicit(&session->protocol, memory_order_relaxed),
        session->library_name ? session->library_name : "",
        session->library_version ? session->library_version : "");
}
