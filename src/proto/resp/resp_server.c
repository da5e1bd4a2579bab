/* Connection and server commands: PING ECHO HELLO QUIT SELECT CLIENT DBSIZE FLUSHDB
 * FLUSHALL INFO CONFIG COMMAND TIME SHUTDOWN (AUTH and ACL are in resp_acl.c). */
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/fault.h"
#include "base/glob.h"
#include "base/log.h"
#include "base/numbers.h"
#include "observe/stats.h"
#include "proto/resp/resp_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const struct option_definition resp_option_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "proto/resp/resp_options.def"
#undef OPTION
};

struct option_group resp_options = {
    .title = "Redis protocol (RESP) front end",
    .definitions = resp_option_definitions,
    .count = sizeof(resp_option_definitions) / sizeof(resp_option_definitions[0]),
};

static const struct metric_definition resp_metric_definitions[] = {
#define METRIC METRIC_DEFINITION
#define HISTOGRAM(...)
#include "proto/resp/resp_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, METRIC_COUNTER, NULL},
};

static const struct histogram_definition resp_histogram_definitions[] = {
#define METRIC(...)
#define HISTOGRAM HISTOGRAM_DEFINITION
#include "proto/resp/resp_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, NULL, NULL, NULL, NULL},
};

struct metric_group resp_metrics = {
    .name = "resp",
    .metrics = resp_metric_definitions,
    .histograms = resp_histogram_definitions,
};

void reply_unknown_subcommand(struct resp_session *session, const struct resp_request *request,
                              const char *name) {
    char subcommand[129];
    argument_text(request, 1, subcommand, sizeof(subcommand));
    reply_errorf(session, "ERR unknown subcommand '%s'. Try %s HELP.", subcommand, name);
}

void reply_subcommand_arity(struct resp_session *session, const struct resp_request *request,
                            const char *name) {
    char subcommand[32], full[48];
    argument_text(request, 1, subcommand, sizeof(subcommand));
    for (char *c = subcommand; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    snprintf(full, sizeof(full), "%s|%s", name, subcommand);
    reply_wrong_arity(session, full);
    session->stats_rejected = true; /* Redis refuses it before it runs */
}

void reply_help(struct resp_session *session, const char *const *lines, size_t count) {
    reply_array(session, count);
    for (size_t i = 0; i < count; i++)
        reply_simple(session, lines[i]);
}

/* ---- connection --------------------------------------------------------------- */

void command_ping(struct resp_session *session, const struct resp_request *request) {
    if (request->argc > 2) {
        reply_wrong_arity(session, "ping");
    } else if (request->argc == 2) {
        reply_bulk(session, request->argv[1], (size_t)request->lengths[1]);
    } else {
        reply_simple(session, "PONG");
    }
}

void command_echo(struct resp_session *session, const struct resp_request *request) {
    reply_bulk(session, request->argv[1], (size_t)request->lengths[1]);
}

void command_quit(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    reply_ok(session);
    session->closing = true;
}

void command_select(struct resp_session *session, const struct resp_request *request) {
    int64_t database;
    if (!argument_int64(session, request, 1, &database)) return;
    if (database != 0) {
        reply_error(session, "ERR DB index is out of range");
        return;
    }
    reply_ok(session);
}

/* True when NAME may be a client name: printable ASCII without spaces. */
static bool valid_client_name(const unsigned char *name, size_t length) {
    for (size_t i = 0; i < length; i++) {
        if (name[i] < '!' || name[i] > '~') return false;
    }
    return true;
}

/* Replaces *FIELD (under the sessions lock) with a copy of VALUE, or NULL if empty. */
static bool set_session_text(struct resp_session *session, char **field, const unsigned char *value,
                             size_t length) {
    char *copy = NULL;
    if (length > 0) {
        copy = malloc(length + 1);
        if (copy == NULL) return false;
        memcpy(copy, value, length);
        copy[length] = '\0';
    }
    sessions_lock(session->server);
    free(*field);
    *field = copy;
    sessions_unlock(session->server);
    return true;
}

void command_hello(struct resp_session *session, const struct resp_request *request) {
    int protocol = session->protocol;
    size_t next = 1;
    if (request->argc >= 2) {
        int64_t version;
        if (!parse_int64(request->argv[1], (size_t)request->lengths[1], &version)) {
            reply_error(session, "ERR Protocol version is not an integer or out of range");
            return;
        }
        if (version < 2 || version > 3) {
            reply_error(session, "NOPROTO unsupported protocol version");
            return;
        }
        protocol = (int)version;
        next = 2;
    }
    const unsigned char *name = NULL;
    size_t name_length = 0;
    size_t auth = 0; /* the index of AUTH's user name, when given */
    for (size_t i = next; i < request->argc; i++) {
        if (argument_is(request, i, "AUTH") && i + 2 < request->argc) {
            auth = i + 1;
            i += 2;
        } else if (argument_is(request, i, "SETNAME") && i + 1 < request->argc) {
            name = request->argv[i + 1];
            name_length = (size_t)request->lengths[i + 1];
            if (!valid_client_name(name, name_length)) {
                reply_error(session, "ERR Client names cannot contain spaces, newlines or "
                                     "special characters.");
                return;
            }
            i++;
        } else {
            char option[64];
            argument_text(request, i, option, sizeof(option));
            reply_errorf(session, "ERR Syntax error in HELLO option '%s'", option);
            return;
        }
    }
    /* Authenticate first: a failed HELLO changes neither the protocol nor the name. */
    if (auth != 0) {
        if (!resp_authenticate(session, request->argv[auth], (size_t)request->lengths[auth],
                               request->argv[auth + 1], (size_t)request->lengths[auth + 1]))
            return;
    } else if (resp_session_user(session) == NULL) {
        reply_error(session, "NOAUTH HELLO must be called with the client already authenticated, "
                             "otherwise the HELLO <proto> AUTH <user> <pass> option can be used "
                             "to authenticate the client and select the RESP protocol version at "
                             "the same time");
        return;
    }
    if (name != NULL && !set_session_text(session, &session->name, name, name_length)) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return;
    }
    session->protocol = protocol;
    reply_map(session, 7);
    reply_bulk_text(session, "server");
    reply_bulk_text(session, "strata");
    reply_bulk_text(session, "version");
    reply_bulk_text(session, STRATA_REDIS_VERSION);
    reply_bulk_text(session, "proto");
    reply_integer(session, protocol);
    reply_bulk_text(session, "id");
    reply_integer(session, (int64_t)session->id);
    reply_bulk_text(session, "mode");
    reply_bulk_text(session, "standalone");
    reply_bulk_text(session, "role");
    reply_bulk_text(session, "master");
    reply_bulk_text(session, "modules");
    reply_array(session, 0);
}

/* Appends the CLIENT LIST lines of the sessions chosen by FILTER_ID (0: all). */
static void client_lines(struct resp_session *session, const uint64_t *ids, size_t id_count,
                         struct byte_buffer *text) {
    struct resp_server *server = session->server;
    sessions_lock(server);
    for (struct resp_session *other = server->sessions; other != NULL; other = other->next) {
        bool chosen = id_count == 0;
        for (size_t i = 0; i < id_count && !chosen; i++)
            chosen = ids[i] == other->id;
        if (chosen) resp_client_line(other, text);
    }
    sessions_unlock(server);
}

static void client_list(struct resp_session *session, const struct resp_request *request) {
    uint64_t *ids = NULL;
    size_t id_count = 0;
    bool none = false;
    for (size_t i = 2; i < request->argc; i++) {
        if (argument_is(request, i, "TYPE") && i + 1 < request->argc) {
            i++;
            if (argument_is(request, i, "normal")) continue;
            if (argument_is(request, i, "master") || argument_is(request, i, "replica") ||
                argument_is(request, i, "slave") || argument_is(request, i, "pubsub")) {
                none = true;
                continue;
            }
            char type[64];
            argument_text(request, i, type, sizeof(type));
            reply_errorf(session, "ERR Unknown client type '%s'", type);
            free(ids);
            return;
        }
        if (argument_is(request, i, "ID") && i + 1 < request->argc) {
            size_t count = request->argc - i - 1;
            ids = calloc(count, sizeof(*ids));
            if (ids == NULL) {
                reply_store_error(session, STORE_ALLOCATION_FAILED);
                return;
            }
            for (size_t j = i + 1; j < request->argc; j++) {
                if (!parse_uint64(request->argv[j], (size_t)request->lengths[j], &ids[id_count]) ||
                    ids[id_count] == 0) {
                    reply_error(session, "ERR Invalid client ID");
                    free(ids);
                    return;
                }
                id_count++;
            }
            break;
        }
        reply_syntax_error(session);
        free(ids);
        return;
    }
    struct byte_buffer text = BYTE_BUFFER_INIT;
    if (!none) client_lines(session, ids, id_count, &text);
    free(ids);
    if (text.failed) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
    } else {
        reply_verbatim(session, text.data ? (const char *)text.data : "", text.length);
    }
    byte_buffer_free(&text);
}

/* CLIENT REPLY ON|OFF|SKIP, as Redis: OFF sends no reply from here on, SKIP none to the
 * command after it, and neither answers itself; ON answers OK and replies again. */
static void client_reply(struct resp_session *session, const struct resp_request *request) {
    if (argument_is(request, 2, "ON")) {
        session->replies_off = false;
        session->skip_next_reply = false;
        resp_reply_discard_end(session);
        reply_ok(session);
    } else if (argument_is(request, 2, "OFF")) {
        session->replies_off = true;
        resp_reply_discard_begin(session);
    } else if (argument_is(request, 2, "SKIP")) {
        if (!session->replies_off) session->skip_next_reply = true;
        resp_reply_discard_begin(session);
    } else {
        reply_syntax_error(session);
    }
}

void command_client(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "LIST [TYPE <normal|master|replica|pubsub>] [ID <id> [<id> ...]]",
        "    Return information about client connections.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "SETINFO <LIB-NAME|LIB-VER> <value>",
        "    Record the name or version of the client library.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are:",
        "    * ADDR <ip:port>",
        "      Kill connections made from the specified address",
        "    * LADDR <ip:port>",
        "      Kill connections made to specified local address",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Kill connections by type.",
        "    * USER <username>",
        "      Kill connections authenticated by <username>.",
        "    * SKIPME (YES|NO)",
        "      Skip killing current connection (default: yes).",
        "    * ID <client-id>",
        "      Kill connections by client id.",
        "UNBLOCK <clientid> [TIMEOUT|ERROR]",
        "    Unblock the specified blocked client.",
        "NO-EVICT (ON|OFF)",
        "    Protect current client connection from eviction (recorded only: strata",
        "    evicts no clients).",
        "NO-TOUCH (ON|OFF)",
        "    Will not touch LRU/LFU stats when this mode is on (recorded only).",
        "REPLY (ON|OFF|SKIP)",
        "    Control the replies sent to the current connection.",
        "HELP",
        "    Print this help.",
    };
    size_t argc = request->argc;
    if (argument_is(request, 1, "ID") && argc == 2) {
        reply_integer(session, (int64_t)session->id);
    } else if (argument_is(request, 1, "SETNAME") && argc == 3) {
        if (!valid_client_name(request->argv[2], (size_t)request->lengths[2])) {
            reply_error(session,
                        "ERR Client names cannot contain spaces, newlines or special characters.");
        } else if (!set_session_text(session, &session->name, request->argv[2],
                                     (size_t)request->lengths[2])) {
            reply_store_error(session, STORE_ALLOCATION_FAILED);
        } else {
            reply_ok(session);
        }
    } else if (argument_is(request, 1, "GETNAME") && argc == 2) {
        sessions_lock(session->server);
        char *name = session->name ? strdup(session->name) : NULL;
        sessions_unlock(session->server);
        if (name != NULL) {
            reply_bulk_text(session, name);
        } else {
            reply_null(session);
        }
        free(name);
    } else if (argument_is(request, 1, "LIST")) {
        client_list(session, request);
    } else if (argument_is(request, 1, "INFO") && argc == 2) {
        struct byte_buffer text = BYTE_BUFFER_INIT;
        sessions_lock(session->server);
        resp_client_line(session, &text);
        sessions_unlock(session->server);
        reply_verbatim(session, text.data ? (const char *)text.data : "", text.length);
        byte_buffer_free(&text);
    } else if (argument_is(request, 1, "SETINFO") && argc == 4) {
        char **field = argument_is(request, 2, "LIB-NAME")  ? &session->library_name
                       : argument_is(request, 2, "LIB-VER") ? &session->library_version
                                                            : NULL;
        char attribute[64];
        argument_text(request, 2, attribute, sizeof(attribute));
        if (field == NULL) {
            reply_errorf(session, "ERR Unrecognized option '%s'", attribute);
        } else if (!valid_client_name(request->argv[3], (size_t)request->lengths[3])) {
            reply_errorf(session, "ERR %s cannot contain spaces, newlines or special characters.",
                         attribute);
        } else if (!set_session_text(session, field, request->argv[3],
                                     (size_t)request->lengths[3])) {
            reply_store_error(session, STORE_ALLOCATION_FAILED);
        } else {
            reply_ok(session);
        }
    } else if (argument_is(request, 1, "KILL")) {
        resp_client_kill(session, request);
    } else if (argument_is(request, 1, "UNBLOCK") && (argc == 3 || argc == 4)) {
        resp_client_unblock(session, request);
    } else if (argument_is(request, 1, "NO-EVICT")) {
        resp_client_flag(session, request, &session->no_evict);
    } else if (argument_is(request, 1, "NO-TOUCH")) {
        resp_client_flag(session, request, &session->no_touch);
    } else if (argument_is(request, 1, "REPLY") && argc == 3) {
        client_reply(session, request);
    } else if (argument_is(request, 1, "HELP") && argc == 2) {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    } else if (argument_is(request, 1, "ID") || argument_is(request, 1, "SETNAME") ||
               argument_is(request, 1, "GETNAME") || argument_is(request, 1, "INFO") ||
               argument_is(request, 1, "SETINFO") || argument_is(request, 1, "HELP") ||
               argument_is(request, 1, "UNBLOCK") || argument_is(request, 1, "REPLY")) {
        reply_subcommand_arity(session, request, "client");
    } else {
        reply_unknown_subcommand(session, request, "CLIENT");
    }
}

/* ---- server ------------------------------------------------------------------- */

void command_dbsize(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    reply_integer(session, (int64_t)store_count(store_of(session)));
}

void command_flush(struct resp_session *session, const struct resp_request *request) {
    if (request->argc > 2 || (request->argc == 2 && !argument_is(request, 1, "ASYNC") &&
                              !argument_is(request, 1, "SYNC"))) {
        reply_syntax_error(session);
        return;
    }
    store_flush(store_of(session));
    resp_blocking_signal_all(session->server); /* as a DEL of every key */
    reply_ok(session);
}

void command_info(struct resp_session *session, const struct resp_request *request) {
    struct byte_buffer text = BYTE_BUFFER_INIT;
    resp_info_text(session, request, 1, &text);
    if (text.failed) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
    } else {
        reply_verbatim(session, text.data ? (const char *)text.data : "", text.length);
    }
    byte_buffer_free(&text);
}

void command_time(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    int64_t now = clock_realtime_us();
    reply_array(session, 2);
    reply_bulk_integer(session, now / 1000000);
    reply_bulk_integer(session, now % 1000000);
}

/* DEBUG SLEEP SECONDS: blocks this worker thread for SECONDS (a decimal fraction; at
 * most an hour) as Redis's does, to test the slow log and the latency monitor. */
static void debug_sleep(struct resp_session *session, const struct resp_request *request) {
    char text[64], *end;
    argument_text(request, 2, text, sizeof(text));
    double seconds = strtod(text, &end);
    if (end == text || *end != '\0' || !(seconds >= 0 && seconds <= 3600)) {
        reply_error(session, "ERR value is not a valid float");
        return;
    }
#ifdef STRATA_FUZZING
    seconds = 0; /* a fuzzer would find DEBUG SLEEP 3600 and report a hang */
#endif
    int64_t nanoseconds = (int64_t)(seconds * 1e9);
    struct timespec pause = {(time_t)(nanoseconds / 1000000000), (long)(nanoseconds % 1000000000)};
    while (nanosleep(&pause, &pause) != 0) {
    }
    reply_ok(session);
}

/* DEBUG SLEEP SECONDS, and DEBUG FAULT RULES|RESET: sets fault-injection rules
 * (src/base/fault.h); only the fault-injection build has them. */
void command_debug(struct resp_session *session, const struct resp_request *request) {
    if (argument_is(request, 1, "SLEEP")) {
        if (request->argc != 3) {
            reply_wrong_arity(session, "debug|sleep");
        } else {
            debug_sleep(session, request);
        }
        return;
    }
    if (!argument_is(request, 1, "FAULT")) {
        reply_unknown_subcommand(session, request, "DEBUG");
        return;
    }
    if (request->argc != 3) {
        reply_wrong_arity(session, "debug|fault");
        return;
    }
    if (!fault_built_in()) {
        reply_error(session, "ERR DEBUG FAULT needs the fault-injection build "
                             "(build/fault/strata-server)");
        return;
    }
#ifdef STRATA_FAULT_INJECTION
    char rules[1024], error[160];
    argument_text(request, 2, rules, sizeof(rules));
    if (fault_parse(rules, error, sizeof(error)) != 0) {
        reply_errorf(session, "ERR %s", error);
        return;
    }
    char quoted[1100];
    log_event(LOG_WARNING, "fault_rules", "rules=%s",
              log_quote(quoted, sizeof(quoted), rules, strlen(rules)));
    reply_ok(session);
#endif
}

void command_shutdown(struct resp_session *session, const struct resp_request *request) {
    for (size_t i = 1; i < request->argc; i++) {
        if (argument_is(request, i, "ABORT")) {
            reply_error(session, "ERR No shutdown in progress.");
            return;
        }
        if (!argument_is(request, i, "NOSAVE") && !argument_is(request, i, "SAVE") &&
            !argument_is(request, i, "NOW") && !argument_is(request, i, "FORCE")) {
            reply_syntax_error(session);
            return;
        }
    }
    log_event(LOG_INFO, "shutdown_requested", "client=%llu peer=%s",
              (unsigned long long)session->id, session->peer);
    const struct resp_environment *environment = &session->server->environment;
    if (environment->request_shutdown != NULL) {
        environment->request_shutdown(environment->shutdown_context);
    }
    /* As with Redis, a successful SHUTDOWN has no reply: the connection just closes. */
    session->closing = true;
}

/* ---- CONFIG ------------------------------------------------------------------- */

/* Redis names that map onto strata options (by the option's name: the options belong to
 * other modules). */
static const struct {
    const char *name;
    const char *option;
} aliases[] = {
    {"maxmemory", "memory"},
    {"maxclients", "max-clients"},
    {"proto-max-bulk-len", "max-value"},
    {"client-query-buffer-limit", "max-request"},
    {"loglevel", "log-level"},
    {"hash-max-ziplist-entries", "hash-max-listpack-entries"},
    {"hash-max-ziplist-value", "hash-max-listpack-value"},
    {"zset-max-ziplist-entries", "zset-max-listpack-entries"},
    {"zset-max-ziplist-value", "zset-max-listpack-value"},
    {"list-max-ziplist-size", "list-max-listpack-size"},
    {"lua-time-limit", "busy-reply-threshold"},
};

/* Settings Redis clients and tools ask for, with the fixed answer strata gives. */
static const struct {
    const char *name;
    const char *value;
} fixed_settings[] = {
    {"save", ""},
    {"appendonly", "no"},
    {"databases", "1"},
    {"maxmemory-policy", "s3fifo"},
};

/* The fixed value of the setting NAME (case-insensitive), or NULL. */
static const char *fixed_setting(const char *name) {
    for (size_t i = 0; i < sizeof(fixed_settings) / sizeof(fixed_settings[0]); i++)
        if (strcasecmp(name, fixed_settings[i].name) == 0) return fixed_settings[i].value;
    return NULL;
}

/* What config_set() notes for a fixed setting given the value it has: nothing to do. */
#define FIXED_UNCHANGED (-2)

/* Finds an option by its name or a Redis alias (case-insensitive). Returns -1 if
 * unknown. */
static int find_option(const char *name) {
    char lower[64];
    size_t length = strlen(name);
    if (length >= sizeof(lower)) return -1;
    for (size_t i = 0; i <= length; i++) {
        lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    }
    int id = options_find(lower);
    if (id >= 0) return id;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (strcmp(aliases[i].name, lower) == 0) return options_find(aliases[i].option);
    }
    return -1;
}

/* True when PATTERN (case-insensitive glob) matches NAME. */
static bool name_matches(const char *pattern, const char *name) {
    char lower[256];
    size_t length = strlen(pattern);
    if (length >= sizeof(lower)) length = sizeof(lower) - 1;
    for (size_t i = 0; i < length; i++) {
        lower[i] = (char)(pattern[i] >= 'A' && pattern[i] <= 'Z' ? pattern[i] + 32 : pattern[i]);
    }
    return glob_match((const unsigned char *)lower, length, (const unsigned char *)name,
                      strlen(name));
}

static void config_get(struct resp_session *session, const struct resp_request *request) {
    const struct options *options = session->server->environment.options;
    /* Each name at most once, in table order: options, then aliases and fixed ones
     * (those only when asked for by their exact name). */
    bool option_chosen[OPTIONS_CAPACITY] = {false};
    bool alias_chosen[sizeof(aliases) / sizeof(aliases[0])] = {false};
    bool fixed_chosen[sizeof(fixed_settings) / sizeof(fixed_settings[0])] = {false};
    size_t pairs = 0;
    for (size_t i = 2; i < request->argc; i++) {
        char pattern[256];
        argument_text(request, i, pattern, sizeof(pattern));
        for (int id = 0; id < options_count(); id++) {
            if (!option_chosen[id] && name_matches(pattern, options_name(id))) {
                option_chosen[id] = true;
                pairs++;
            }
        }
        for (size_t j = 0; j < sizeof(aliases) / sizeof(aliases[0]); j++) {
            if (!alias_chosen[j] && strcasecmp(pattern, aliases[j].name) == 0 &&
                options_find(aliases[j].option) >= 0) {
                alias_chosen[j] = true;
                pairs++;
            }
        }
        for (size_t j = 0; j < sizeof(fixed_settings) / sizeof(fixed_settings[0]); j++) {
            if (!fixed_chosen[j] && strcasecmp(pattern, fixed_settings[j].name) == 0) {
                fixed_chosen[j] = true;
                pairs++;
            }
        }
    }
    char value[256];
    reply_map(session, pairs);
    for (int id = 0; id < options_count(); id++) {
        if (!option_chosen[id]) continue;
        reply_bulk_text(session, options_name(id));
        const char *text = options_format(options, id, value, sizeof(value));
        /* A secret is never shown: only whether it is set. */
        if ((options_flags(id) & OPTION_SECRET) && text[0] != '\0') text = "(hidden)";
        reply_bulk_text(session, text);
    }
    for (size_t j = 0; j < sizeof(aliases) / sizeof(aliases[0]); j++) {
        if (!alias_chosen[j]) continue;
        reply_bulk_text(session, aliases[j].name);
        reply_bulk_text(session, options_format(options, options_find(aliases[j].option), value,
                                                sizeof(value)));
    }
    for (size_t j = 0; j < sizeof(fixed_settings) / sizeof(fixed_settings[0]); j++) {
        if (!fixed_chosen[j]) continue;
        reply_bulk_text(session, fixed_settings[j].name);
        reply_bulk_text(session, fixed_settings[j].value);
    }
}

static void config_set(struct resp_session *session, const struct resp_request *request) {
    struct options *options = session->server->environment.options;
    size_t count = (request->argc - 2) / 2;
    int ids[OPTIONS_CAPACITY];
    char previous[OPTIONS_CAPACITY][64];
    /* All or nothing: names first, then each value, undoing on the first refusal. */
    for (size_t i = 0; i < count; i++) {
        char name[128];
        argument_text(request, 2 + 2 * i, name, sizeof(name));
        if (i >= (size_t)options_count()) {
            reply_errorf(session,
                         "ERR CONFIG SET failed (possibly related to argument '%s') "
                         "- duplicate parameter",
                         name);
            return;
        }
        int id = find_option(name);
        if (id < 0) {
            /* A fixed setting may be "set" to the value it has (Redis's test harness sets
             * save "" on every server it runs against); any other value is refused. */
            char value[256];
            argument_text(request, 3 + 2 * i, value, sizeof(value));
            const char *fixed = fixed_setting(name);
            if (fixed != NULL && strcasecmp(fixed, value) == 0) {
                ids[i] = FIXED_UNCHANGED;
                continue;
            }
            if (fixed != NULL) {
                reply_errorf(session,
                             "ERR CONFIG SET failed (possibly related to argument '%s') - "
                             "strata has it fixed at '%s'",
                             name, fixed);
                return;
            }
            reply_errorf(session, "ERR Unknown option or number of arguments for CONFIG SET - '%s'",
                         name);
            return;
        }
        for (size_t j = 0; j < i; j++) {
            if (ids[j] == id) {
                reply_errorf(session,
                             "ERR CONFIG SET failed (possibly related to argument '%s') "
                             "- duplicate parameter",
                             name);
                return;
            }
        }
        ids[i] = id;
    }
    for (size_t i = 0; i < count; i++) {
        if (ids[i] == FIXED_UNCHANGED) continue;
        option_id id = ids[i];
        char name[128], value[256], reason[256];
        argument_text(request, 2 + 2 * i, name, sizeof(name));
        argument_text(request, 3 + 2 * i, value, sizeof(value));
        options_format(options, id, previous[i], sizeof(previous[i]));
        if (options_set(options, id, value, true, reason, sizeof(reason)) != 0) {
            for (size_t j = i; j-- > 0;) { /* each one before it was set */
                if (ids[j] == FIXED_UNCHANGED) continue;
                char ignored[256];
                options_set(options, ids[j], previous[j], true, ignored, sizeof(ignored));
            }
            reply_errorf(session, "ERR CONFIG SET failed (possibly related to argument '%s') - %s",
                         name, reason);
            return;
        }
        char quoted[300];
        log_event(LOG_INFO, "config_set", "option=%s value=%s client=%llu", options_name(id),
                  log_quote(quoted, sizeof(quoted), value, strlen(value)),
                  (unsigned long long)session->id);
    }
    reply_ok(session);
}

void command_config(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET <pattern>",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "SET <directive> <value>",
        "    Set the configuration <directive> to <value>.",
        "RESETSTAT",
        "    Reset statistics reported by the INFO command.",
        "HELP",
        "    Print this help.",
    };
    if (argument_is(request, 1, "GET") && request->argc >= 3) {
        config_get(session, request);
    } else if (argument_is(request, 1, "SET") && request->argc >= 4 && request->argc % 2 == 0) {
        config_set(session, request);
    } else if (argument_is(request, 1, "RESETSTAT") && request->argc == 2) {
        stats_reset_counters(session->server->environment.stats);
        resp_stats_reset();
        reply_ok(session);
    } else if (argument_is(request, 1, "REWRITE") && request->argc == 2) {
        reply_error(session, "ERR CONFIG REWRITE is not supported: edit the config file");
    } else if (argument_is(request, 1, "HELP") && request->argc == 2) {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    } else if (argument_is(request, 1, "GET") || argument_is(request, 1, "SET") ||
               argument_is(request, 1, "RESETSTAT") || argument_is(request, 1, "REWRITE") ||
               argument_is(request, 1, "HELP")) {
        reply_subcommand_arity(session, request, "config");
    } else {
        reply_unknown_subcommand(session, request, "CONFIG");
    }
}

/* ---- COMMAND ------------------------------------------------------------------ */

/* Counts the space-separated words of TEXT. */
static size_t word_count(const char *text) {
    size_t count = 0;
    bool inside = false;
    for (; *text; text++) {
        if (*text == ' ') {
            inside = false;
        } else if (!inside) {
            inside = true;
            count++;
        }
    }
    return count;
}

/* Replies with each space-separated word of TEXT, with PREFIX, as simple strings. */
static void reply_words(struct resp_session *session, const char *text, const char *prefix) {
    char word[64];
    while (*text) {
        while (*text == ' ')
            text++;
        size_t length = strcspn(text, " ");
        if (length == 0) break;
        snprintf(word, sizeof(word), "%s%.*s", prefix, (int)length, text);
        reply_simple(session, word);
        text += length;
    }
}

void resp_command_categories(const struct resp_command *command, char *text, size_t size) {
    bool write = strstr(command->flags, "write") != NULL;
    bool fast = strstr(command->flags, "fast") != NULL;
    /* A subcommand of a connection or key command may still be the server's own
     * (CLIENT LIST): its admin flag says so. */
    const char *category = strstr(command->flags, "admin") != NULL       ? "admin"
                           : strcmp(command->group, "string") == 0       ? "string"
                           : strcmp(command->group, "bitmap") == 0       ? "bitmap"
                           : strcmp(command->group, "hash") == 0         ? "hash"
                           : strcmp(command->group, "list") == 0         ? "list"
                           : strcmp(command->group, "set") == 0          ? "set"
                           : strcmp(command->group, "sorted-set") == 0   ? "sortedset"
                           : strcmp(command->group, "stream") == 0       ? "stream"
                           : strcmp(command->group, "transactions") == 0 ? "transaction"
                           : strcmp(command->group, "generic") == 0      ? "keyspace"
                           : strcmp(command->group, "connection") == 0   ? "connection"
                                                                         : "admin";
    if (command->handler == command_sort || command->handler == command_sort_ro) {
        /* as Redis: the types it reads, and dangerous (BY and GET read any key) */
        snprintf(text, size, "%s set sortedset list slow dangerous", write ? "write" : "read");
        return;
    }
    if (strcmp(command->group, "scripting") == 0) { /* as Redis: never read, write when
                                                       it changes libraries (FUNCTION LOAD) */
        snprintf(text, size, "%sslow scripting", write ? "write " : "");
        return;
    }
    snprintf(text, size, "%s %s %s%s", write ? "write" : "read", category, fast ? "fast" : "slow",
             strstr(command->flags, "blocking") != NULL ? " blocking" : "");
}

/* True when COMMAND is in the ACL category NAME (without '@', any case). */
static bool in_category(const struct resp_command *command, const char *name) {
    char text[128], *saved = NULL;
    resp_command_categories(command, text, sizeof(text));
    for (char *word = strtok_r(text, " ", &saved); word != NULL; word = strtok_r(NULL, " ", &saved))
        if (strcasecmp(word, name) == 0) return true;
    return false;
}

static void reply_command_info(struct resp_session *session, const struct resp_command *command) {
    char categories[128];
    resp_command_categories(command, categories, sizeof(categories));
    size_t children;
    const struct resp_command *subcommands = resp_subcommands_of(command, &children);
    reply_array(session, 10);
    reply_bulk_text(session, command->name);
    reply_integer(session, command->arity);
    reply_array(session, word_count(command->flags));
    reply_words(session, command->flags, "");
    reply_integer(session, command->first_key);
    reply_integer(session, command->last_key);
    reply_integer(session, command->key_step);
    reply_array(session, word_count(categories));
    reply_words(session, categories, "@");
    reply_array(session, 0); /* tips */
    reply_array(session, 0); /* key specifications */
    reply_array(session, children);
    for (size_t i = 0; i < children; i++)
        reply_command_info(session, &subcommands[i]);
}

static void reply_command_docs(struct resp_session *session, const struct resp_command *command) {
    size_t children;
    const struct resp_command *subcommands = resp_subcommands_of(command, &children);
    reply_bulk_text(session, command->name);
    reply_map(session, children > 0 ? 4 : 3);
    reply_bulk_text(session, "summary");
    reply_bulk_text(session, command->summary);
    reply_bulk_text(session, "since");
    reply_bulk_text(session, command->since);
    reply_bulk_text(session, "group");
    reply_bulk_text(session, command->group);
    if (children == 0) return;
    reply_bulk_text(session, "subcommands");
    reply_map(session, children);
    for (size_t i = 0; i < children; i++)
        reply_command_docs(session, &subcommands[i]);
}

/* What COMMAND LIST FILTERBY keeps. */
enum command_filter { FILTER_NONE, FILTER_MODULE, FILTER_CATEGORY, FILTER_PATTERN };

/* True when COMMAND passes FILTER with its argument ARGUMENT. */
static bool command_chosen(const struct resp_command *command, enum command_filter filter,
                           const char *argument) {
    switch (filter) {
    case FILTER_MODULE:
        return false; /* strata has no modules */
    case FILTER_CATEGORY:
        return in_category(command, argument);
    case FILTER_PATTERN:
        return name_matches(argument, command->name);
    case FILTER_NONE:
    default:
        return true;
    }
}

/* COMMAND LIST [FILTERBY MODULE name|ACLCAT category|PATTERN pattern]: the names of the
 * commands and their subcommands ("config|get"), each command followed by its own. */
static void command_list(struct resp_session *session, const struct resp_request *request) {
    enum command_filter filter = FILTER_NONE;
    char argument[256] = "";
    if (request->argc != 2) {
        if (request->argc != 5 || !argument_is(request, 2, "FILTERBY")) {
            reply_syntax_error(session);
            return;
        }
        filter = argument_is(request, 3, "MODULE")    ? FILTER_MODULE
                 : argument_is(request, 3, "ACLCAT")  ? FILTER_CATEGORY
                 : argument_is(request, 3, "PATTERN") ? FILTER_PATTERN
                                                      : FILTER_NONE;
        if (filter == FILTER_NONE) {
            reply_syntax_error(session);
            return;
        }
        argument_text(request, 4, argument, sizeof(argument));
    }
    size_t count, total = 0;
    const struct resp_command *table = resp_command_table(&count);
    for (int pass = 0; pass < 2; pass++) { /* count, then reply */
        if (pass == 1) reply_array(session, total);
        for (size_t i = 0; i < count; i++) {
            size_t children;
            const struct resp_command *subcommands = resp_subcommands_of(&table[i], &children);
            for (size_t j = 0; j <= children; j++) {
                const struct resp_command *command = j == 0 ? &table[i] : &subcommands[j - 1];
                if (!command_chosen(command, filter, argument)) continue;
                if (pass == 0) {
                    total++;
                } else {
                    reply_bulk_text(session, command->name);
                }
            }
        }
    }
}

/* COMMAND GETKEYS command [arg ...]: the key arguments of the command line from argument
 * 2 on, from its first, last and step key positions, with Redis's errors. */
static void command_getkeys(struct resp_session *session, const struct resp_request *request) {
    struct resp_request line = {request->argc - 2, request->argv + 2, request->lengths + 2};
    const struct resp_command *command = resp_command_find(line.argv[0], (size_t)line.lengths[0]);
    size_t children = 0;
    if (command != NULL) resp_subcommands_of(command, &children);
    if (command != NULL && children > 0 && line.argc >= 2)
        command = resp_subcommand_find(command, line.argv[1], (size_t)line.lengths[1]);
    if (command == NULL) {
        reply_error(session, "ERR Invalid command specified");
        return;
    }
    bool movable = strstr(command->flags, "movablekeys") != NULL;
    /* ZUNIONSTORE destination numkeys key [key ...]: a fixed key, then counted ones. */
    bool destination = movable && command->first_key > 0;
    bool numkeys = movable && (command->first_key <= 0 || destination);
    if (command->first_key <= 0 && !numkeys) {
        reply_error(session, "ERR The command has no key arguments");
        return;
    }
    if ((command->arity > 0 && line.argc != (size_t)command->arity) ||
        (command->arity < 0 && line.argc < (size_t)-command->arity)) {
        reply_error(session, "ERR Invalid number of arguments specified for command");
        return;
    }
    if (command->handler == command_xread || command->handler == command_xreadgroup) {
        /* XREAD and XREADGROUP: the first half of what follows STREAMS, the options
         * before it skipped (Redis's xreadGetKeys()). */
        size_t at = 1;
        while (at < line.argc) {
            if (argument_is(&line, at, "BLOCK") || argument_is(&line, at, "COUNT")) {
                at += 2;
            } else if (argument_is(&line, at, "GROUP")) {
                at += 3;
            } else if (argument_is(&line, at, "NOACK")) {
                at++;
            } else {
                break;
            }
        }
        size_t rest = at < line.argc ? line.argc - at - 1 : 0;
        if (at >= line.argc || !argument_is(&line, at, "STREAMS") || rest == 0 || rest % 2 != 0) {
            reply_error(session, "ERR Invalid arguments specified for command");
            return;
        }
        reply_array(session, rest / 2);
        for (size_t i = at + 1; i <= at + rest / 2; i++)
            reply_bulk(session, line.argv[i], (size_t)line.lengths[i]);
        return;
    }
    if (command->handler == command_sort || command->handler == command_sort_ro) {
        /* SORT key ... [STORE destination]: the key and the last STORE's destination,
         * LIMIT's, GET's and BY's arguments skipped (Redis's sortGetKeys()); SORT_RO has
         * no STORE. */
        size_t store = 0;
        for (size_t i = 2; i < line.argc && command->handler == command_sort; i++) {
            if (argument_is(&line, i, "LIMIT")) {
                i += 2;
            } else if (argument_is(&line, i, "GET") || argument_is(&line, i, "BY")) {
                i += 1;
            } else if (argument_is(&line, i, "STORE") && i + 1 < line.argc) {
                store = i + 1;
            }
        }
        reply_array(session, store != 0 ? 2 : 1);
        reply_bulk(session, line.argv[1], (size_t)line.lengths[1]);
        if (store != 0) reply_bulk(session, line.argv[store], (size_t)line.lengths[store]);
        return;
    }
    if (numkeys) {
        /* SINTERCARD numkeys key [key ...] ...: the keys follow their count, which
         * is the first argument, or the second after a blocking command's timeout or
         * a STORE form's destination (itself a key). */
        size_t at =
            command->handler == command_blmpop || command->handler == command_bzmpop || destination
                ? 2
                : 1;
        int64_t count;
        if (line.argc <= at || !parse_int64(line.argv[at], (size_t)line.lengths[at], &count) ||
            count <= 0 || (uint64_t)count > line.argc - at - 1) {
            reply_error(session, "ERR Invalid arguments specified for command");
            return;
        }
        reply_array(session, (size_t)count + destination);
        if (destination) reply_bulk(session, line.argv[1], (size_t)line.lengths[1]);
        for (size_t i = at + 1; i < at + 1 + (size_t)count; i++)
            reply_bulk(session, line.argv[i], (size_t)line.lengths[i]);
        return;
    }
    int64_t last =
        command->last_key >= 0 ? command->last_key : (int64_t)line.argc + command->last_key;
    if (last >= (int64_t)line.argc) last = (int64_t)line.argc - 1;
    size_t keys = 0;
    for (int64_t i = command->first_key; i <= last; i += command->key_step)
        keys++;
    reply_array(session, keys);
    for (int64_t i = command->first_key; i <= last; i += command->key_step)
        reply_bulk(session, line.argv[i], (size_t)line.lengths[i]);
}

void command_command(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "(no subcommand)",
        "    Return details about all commands.",
        "COUNT",
        "    Return the total number of commands in this server.",
        "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
        "    Return a list of all commands in this server.",
        "INFO [<command-name> ...]",
        "    Return details about multiple commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "DOCS [<command-name> ...]",
        "    Return documentation details about multiple commands.",
        "    If no command names are given, documentation details for all",
        "    commands are returned.",
        "GETKEYS <full-command>",
        "    Return the keys from a full Redis command.",
        "HELP",
        "    Print this help.",
    };
    size_t count;
    const struct resp_command *table = resp_command_table(&count);
    if (request->argc == 1) {
        reply_array(session, count);
        for (size_t i = 0; i < count; i++)
            reply_command_info(session, &table[i]);
        return;
    }
    const struct resp_command *self = resp_command_find((const unsigned char *)"command", 7);
    const struct resp_command *subcommand =
        resp_subcommand_find(self, request->argv[1], (size_t)request->lengths[1]);
    if (subcommand == NULL) {
        reply_unknown_subcommand(session, request, "COMMAND");
    } else if ((subcommand->arity > 0 && request->argc != (size_t)subcommand->arity) ||
               (subcommand->arity < 0 && request->argc < (size_t)-subcommand->arity)) {
        reply_subcommand_arity(session, request, "command");
    } else if (argument_is(request, 1, "COUNT")) {
        reply_integer(session, (int64_t)count);
    } else if (argument_is(request, 1, "LIST")) {
        command_list(session, request);
    } else if (argument_is(request, 1, "GETKEYS")) {
        command_getkeys(session, request);
    } else if (argument_is(request, 1, "INFO")) {
        if (request->argc == 2) {
            reply_array(session, count);
            for (size_t i = 0; i < count; i++)
                reply_command_info(session, &table[i]);
            return;
        }
        reply_array(session, request->argc - 2);
        for (size_t i = 2; i < request->argc; i++) {
            const struct resp_command *command =
                resp_command_lookup(request->argv[i], (size_t)request->lengths[i]);
            if (command != NULL) {
                reply_command_info(session, command);
            } else {
                reply_null(session);
            }
        }
    } else if (argument_is(request, 1, "DOCS")) {
        if (request->argc == 2) {
            reply_map(session, count);
            for (size_t i = 0; i < count; i++)
                reply_command_docs(session, &table[i]);
            return;
        }
        size_t known = 0;
        for (size_t i = 2; i < request->argc; i++) {
            known += resp_command_lookup(request->argv[i], (size_t)request->lengths[i]) != NULL;
        }
        reply_map(session, known);
        for (size_t i = 2; i < request->argc; i++) {
            const struct resp_command *command =
                resp_command_lookup(request->argv[i], (size_t)request->lengths[i]);
            if (command != NULL) reply_command_docs(session, command);
        }
    } else {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    }
}
