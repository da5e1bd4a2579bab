/* Commands about other connections: CLIENT KILL, CLIENT NO-EVICT and NO-TOUCH, MONITOR
 * and RESET (which also ends MULTI and WATCH).
 *
 * A session on another worker thread is never touched directly: CLIENT KILL marks it
 * killed (under sessions_lock, which its close also takes) and wakes its connection,
 * whose own worker then closes it (resp_session_woken()). MONITOR's lines go into each
 * monitor's feed under monitors_lock and, when the feed was empty, wake the monitor's
 * connection, whose worker moves the feed into its output queue. */
#include "base/clock.h"
#include "base/log.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"

#include <stdlib.h>
#include <string.h>

/* Unsent MONITOR output (its feed and output queue) past which a monitor is closed when
 * client-output-limit is 0 (no limit for replies): a monitor that does not read must not
 * hold the server's memory without bound. */
#define MONITOR_LIMIT_DEFAULT (256 * 1024 * 1024)

/* ---- CLIENT KILL ------------------------------------------------------------------ */

/* CLIENT KILL's filters; unset ones match every session. */
struct kill_filter {
    uint64_t id; /* 0: any */
    const char *address;
    const char *local;
    const char *user; /* NUL-terminated copies of the arguments, or NULL */
    bool type_none;   /* TYPE master, replica or pubsub: strata has none of those */
    bool skip_me;
};

/* True when OTHER matches FILTER (the caller holds sessions_lock, for user_name). */
static bool kill_matches(const struct resp_session *session, const struct resp_session *other,
                         const struct kill_filter *filter) {
    STRATA_ASSERT(check_held(&session->server->sessions_owner));
    if (filter->type_none) return false;
    if (filter->id != 0 && other->id != filter->id) return false;
    if (filter->address != NULL && strcmp(other->peer, filter->address) != 0) return false;
    if (filter->local != NULL && strcmp(other->local, filter->local) != 0) return false;
    if (filter->user != NULL && strcmp(other->user_name, filter->user) != 0) return false;
    if (other == session && filter->skip_me) return false;
    return true;
}

/* Kills the sessions FILTER matches: the others are marked and woken (their workers
 * close them), SESSION itself closes after its reply. Returns how many. */
static int64_t kill_sessions(struct resp_session *session, const struct kill_filter *filter) {
    struct resp_server *server = session->server;
    int64_t killed = 0;
    sessions_lock(server);
    for (struct resp_session *other = server->sessions; other != NULL; other = other->next) {
        if (atomic_load_explicit(&other->killed, memory_order_relaxed) ||
            !kill_matches(session, other, filter))
            continue;
        killed++;
        if (other == session) {
            session->closing = true; /* after this reply, as Redis */
            continue;
        }
        atomic_store_explicit(&other->killed, true, memory_order_relaxed);
        /* Safe under sessions_lock: OTHER's close takes it, so its connection is open. */
        if (other->wake != NULL) other->wake(other->resume_handle);
    }
    sessions_unlock(server);
    return killed;
}

/* Copies argument INDEX of REQUEST into a NUL-terminated string of at most SIZE - 1
 * bytes in OUTPUT; returns false (nothing matches) when it is longer or holds a NUL. */
static bool argument_exact(const struct resp_request *request, size_t index, char *output,
                           size_t size) {
    if (request->lengths[index] >= size ||
        memchr(request->argv[index], '\0', (size_t)request->lengths[index]) != NULL)
        return false;
    memcpy(output, request->argv[index], (size_t)request->lengths[index]);
    output[request->lengths[index]] = '\0';
    return true;
}

void resp_client_kill(struct resp_session *session, const struct resp_request *request) {
    char address[64], local[64], user[ACCESS_NAME_MAX + 1];
    struct kill_filter filter = {.skip_me = true};
    bool impossible = false; /* an address or user no session can have */
    if (request->argc == 3) {
        /* The old form: CLIENT KILL addr:port, which may kill the caller. */
        filter.skip_me = false;
        impossible = !argument_exact(request, 2, address, sizeof(address));
        filter.address = address;
        int64_t killed = impossible ? 0 : kill_sessions(session, &filter);
        if (killed == 0) {
            reply_error(session, "ERR No such client");
        } else {
            reply_ok(session);
        }
        return;
    }
    if (request->argc < 3) {
        reply_subcommand_arity(session, request, "client");
        return;
    }
    for (size_t i = 2; i < request->argc; i += 2) {
        if (i + 1 >= request->argc) {
            reply_syntax_error(session);
            return;
        }
        if (argument_is(request, i, "ID")) {
            int64_t id;
            if (!parse_int64(request->argv[i + 1], (size_t)request->lengths[i + 1], &id) ||
                id < 1) {
                reply_error(session, "ERR client-id should be greater than 0");
                return;
            }
            filter.id = (uint64_t)id;
        } else if (argument_is(request, i, "TYPE")) {
            if (argument_is(request, i + 1, "normal")) {
                filter.type_none = false;
            } else if (argument_is(request, i + 1, "master") ||
                       argument_is(request, i + 1, "replica") ||
                       argument_is(request, i + 1, "slave") ||
                       argument_is(request, i + 1, "pubsub")) {
                filter.type_none = true;
            } else {
                char type[64];
                argument_text(request, i + 1, type, sizeof(type));
                reply_errorf(session, "ERR Unknown client type '%s'", type);
                return;
            }
        } else if (argument_is(request, i, "ADDR")) {
            impossible |= !argument_exact(request, i + 1, address, sizeof(address));
            filter.address = address;
        } else if (argument_is(request, i, "LADDR")) {
            impossible |= !argument_exact(request, i + 1, local, sizeof(local));
            filter.local = local;
        } else if (argument_is(request, i, "USER")) {
            if (!argument_exact(request, i + 1, user, sizeof(user)) ||
                !resp_user_exists(session, request->argv[i + 1], (size_t)request->lengths[i + 1])) {
                char name[ACCESS_NAME_MAX + 1];
                argument_text(request, i + 1, name, sizeof(name));
                reply_errorf(session, "ERR No such user '%s'", name);
                return;
            }
            filter.user = user;
        } else if (argument_is(request, i, "SKIPME")) {
            if (argument_is(request, i + 1, "yes")) {
                filter.skip_me = true;
            } else if (argument_is(request, i + 1, "no")) {
                filter.skip_me = false;
            } else {
                reply_syntax_error(session);
                return;
            }
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    reply_integer(session, impossible ? 0 : kill_sessions(session, &filter));
}

void resp_client_flag(struct resp_session *session, const struct resp_request *request,
                      _Atomic bool *flag) {
    if (request->argc != 3) {
        reply_subcommand_arity(session, request, "client");
    } else if (argument_is(request, 2, "ON")) {
        atomic_store_explicit(flag, true, memory_order_relaxed);
        reply_ok(session);
    } else if (argument_is(request, 2, "OFF")) {
        atomic_store_explicit(flag, false, memory_order_relaxed);
        reply_ok(session);
    } else {
        reply_syntax_error(session);
    }
}

/* ---- MONITOR ---------------------------------------------------------------------- */

/* Appends DATA[0, LENGTH) quoted as Redis's sdscatrepr() does: in double quotes, with
 * \" \\ \n \r \t \a \b escaped and other bytes outside 0x20-0x7e as \xhh. */
static void append_quoted(struct byte_buffer *line, const unsigned char *data, size_t length) {
    static const char hex[] = "0123456789abcdef";
    if (!byte_buffer_reserve(line, length + 2)) return;
    byte_buffer_append(line, "\"", 1);
    size_t plain = 0; /* bytes from DATA + plain on are copied as they are, in runs */
    for (size_t i = 0; i < length; i++) {
        unsigned char c = data[i];
        char escape[4];
        size_t escape_length = 2;
        escape[0] = '\\';
        switch (c) {
        case '\\':
        case '"':
            escape[1] = (char)c;
            break;
        case '\n':
            escape[1] = 'n';
            break;
        case '\r':
            escape[1] = 'r';
            break;
        case '\t':
            escape[1] = 't';
            break;
        case '\a':
            escape[1] = 'a';
            break;
        case '\b':
            escape[1] = 'b';
            break;
        default:
            if (c >= 0x20 && c <= 0x7e) continue;
            escape[1] = 'x';
            escape[2] = hex[c >> 4];
            escape[3] = hex[c & 15];
            escape_length = 4;
            break;
        }
        byte_buffer_append(line, data + plain, i - plain);
        byte_buffer_append(line, escape, escape_length);
        plain = i + 1;
    }
    byte_buffer_append(line, data + plain, length - plain);
    byte_buffer_append(line, "\"", 1);
}

/* True when argument INDEX of REQUEST is a secret MONITOR shows as "(redacted)", as Redis
 * 7: AUTH's arguments, and HELLO's AUTH user and password. */
static bool redacted(const struct resp_request *request, size_t index) {
    if (argument_is(request, 0, "AUTH")) return index >= 1;
    if (!argument_is(request, 0, "HELLO")) return false;
    /* The options as command_hello() reads them: AUTH takes two words, SETNAME one. */
    for (size_t i = 2; i < request->argc; i++) {
        if (argument_is(request, i, "AUTH") && i + 2 < request->argc) {
            if (index == i + 1 || index == i + 2) return true;
            i += 2;
        } else if (argument_is(request, i, "SETNAME")) {
            i++;
        }
    }
    return false;
}

/* The most unsent MONITOR output a monitor may have: client-output-limit, or
 * MONITOR_LIMIT_DEFAULT when that is 0. */
static size_t monitor_limit(const struct resp_server *server) {
    int64_t limit = options_number(server->environment.options, NET_OPTION(client_output_limit));
    return limit > 0 ? (size_t)limit : MONITOR_LIMIT_DEFAULT;
}

void resp_monitor_feed(struct resp_session *session, const struct resp_request *request) {
    struct resp_server *server = session->server;
    int64_t now = clock_realtime_us();
    struct byte_buffer line = BYTE_BUFFER_INIT;
    /* As Redis: a script's commands come from "lua". */
    byte_buffer_appendf(&line, "+%lld.%06lld [0 %s]", (long long)(now / 1000000),
                        (long long)(now % 1000000), session->in_script ? "lua" : session->peer);
    for (size_t i = 0; i < request->argc; i++) {
        byte_buffer_append(&line, " ", 1);
        if (redacted(request, i)) {
            byte_buffer_append_text(&line, "\"(redacted)\"");
        } else if (request->argv == session->parser.argv &&
                   resp_parser_readable(&session->parser, i) < request->lengths[i]) {
            /* A large value SET stored without a copy: its first bytes, then how many more
             * (the rest may already be gone with the block). */
            uint64_t readable = resp_parser_readable(&session->parser, i);
            append_quoted(&line, request->argv[i], (size_t)readable);
            byte_buffer_appendf(&line, "... (%llu more bytes)",
                                (unsigned long long)(request->lengths[i] - readable));
        } else {
            append_quoted(&line, request->argv[i], (size_t)request->lengths[i]);
        }
    }
    byte_buffer_append(&line, "\r\n", 2);
    if (line.failed) { /* out of memory: the monitors miss this one */
        byte_buffer_free(&line);
        return;
    }
    size_t limit = monitor_limit(server);
    monitors_lock(server);
    for (struct resp_session *monitor = server->monitors; monitor != NULL;
         monitor = monitor->monitor_next) {
        if (monitor->monitor_overflow) continue; /* woken already, to be closed */
        struct byte_buffer *feed = &monitor->monitor_feed;
        bool idle = feed->length == 0;
        size_t unsent = feed->length + output_queue_pending(monitor->connection_output);
        if (unsent + line.length <= limit) byte_buffer_append(feed, line.data, line.length);
        if (unsent + line.length > limit || feed->failed) {
            monitor->monitor_overflow = true;
            byte_buffer_free(feed);
            idle = true;
        }
        /* Safe under monitors_lock: the monitor's close takes it to leave the list. */
        if (idle && monitor->wake != NULL) monitor->wake(monitor->resume_handle);
    }
    monitors_unlock(server);
    byte_buffer_free(&line);
}

void resp_monitor_stop(struct resp_session *session) {
    if (!atomic_load_explicit(&session->monitoring, memory_order_relaxed)) return;
    struct resp_server *server = session->server;
    monitors_lock(server);
    if (session->monitor_previous != NULL) {
        session->monitor_previous->monitor_next = session->monitor_next;
    } else {
        server->monitors = session->monitor_next;
    }
    if (session->monitor_next != NULL)
        session->monitor_next->monitor_previous = session->monitor_previous;
    session->monitor_previous = NULL;
    session->monitor_next = NULL;
    byte_buffer_free(&session->monitor_feed);
    session->monitor_overflow = false;
    atomic_store_explicit(&session->monitoring, false, memory_order_relaxed);
    atomic_fetch_sub_explicit(&server->monitor_count, 1, memory_order_relaxed);
    monitors_unlock(server);
}

void command_monitor(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    if (session->transaction.running) { /* Redis's words for a MONITOR queued in MULTI */
        reply_error(session, "ERR MONITOR isn't allowed for DENY BLOCKING client");
        return;
    }
    /* As Redis: MONITOR again is ignored, without a reply. */
    if (atomic_load_explicit(&session->monitoring, memory_order_relaxed)) return;
    reply_ok(session); /* before any line: those reach the output only when woken */
    struct resp_server *server = session->server;
    monitors_lock(server);
    session->monitor_previous = NULL;
    session->monitor_next = server->monitors;
    if (server->monitors != NULL) server->monitors->monitor_previous = session;
    server->monitors = session;
    atomic_store_explicit(&session->monitoring, true, memory_order_relaxed);
    atomic_fetch_add_explicit(&server->monitor_count, 1, memory_order_relaxed);
    monitors_unlock(server);
    log_event(LOG_INFO, "monitor_start", "client=%llu peer=%s", (unsigned long long)session->id,
              session->peer);
}

bool resp_session_woken(void *opaque) {
    struct resp_session *session = opaque;
    if (atomic_load_explicit(&session->killed, memory_order_relaxed)) {
        log_event(LOG_INFO, "client_killed", "client=%llu peer=%s", (unsigned long long)session->id,
                  session->peer);
        return true;
    }
    resp_blocking_woken(session);
    if (!atomic_load_explicit(&session->monitoring, memory_order_relaxed)) return false;
    struct resp_server *server = session->server;
    monitors_lock(server);
    bool overflow = session->monitor_overflow;
    struct byte_buffer lines = session->monitor_feed; /* taken over, the feed left empty */
    session->monitor_feed = (struct byte_buffer)BYTE_BUFFER_INIT;
    monitors_unlock(server);
    if (overflow) {
        log_event(LOG_WARNING, "monitor_output_limit", "client=%llu peer=%s limit=%zu",
                  (unsigned long long)session->id, session->peer, monitor_limit(server));
        byte_buffer_free(&lines);
        return true;
    }
    if (lines.length > 0) output_queue_append(session->output, lines.data, lines.length);
    byte_buffer_free(&lines);
    return false;
}

/* ---- RESET ------------------------------------------------------------------------ */

void command_reset(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    resp_monitor_stop(session);
    resp_transaction_reset(session); /* MULTI's queue and WATCH's keys */
    struct resp_server *server = session->server;
    sessions_lock(server);
    free(session->name);
    session->name = NULL;
    sessions_unlock(server);
    session->protocol = 2;
    atomic_store_explicit(&session->no_evict, false, memory_order_relaxed);
    atomic_store_explicit(&session->no_touch, false, memory_order_relaxed);
    /* Back to the user a new connection has: "default" if it needs no password (or the
     * user a uid: rule gives the Unix socket's peer), else none (as Redis: RESET
     * deauthenticates). */
    access_identity_release(&session->identity);
    access_identity_init(server->environment.access, &session->identity);
    if (session->peer_uid >= 0)
        access_identify_peer(server->environment.access, &session->identity,
                             (uint32_t)session->peer_uid);
    resp_session_set_rights(session, session->identity.user);
    reply_simple(session, "RESET");
}
