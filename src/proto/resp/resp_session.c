/* RESP sessions: feeding the parser, dispatching commands, and the session registry
 * that CLIENT LIST reads. */
#include "base/clock.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct resp_command commands[] = {
#define COMMAND(name, handler, arity, flags, first, last, step, group, since, summary)             \
    {name, handler, arity, flags, first, last, step, group, since, summary},
#include "proto/resp/resp_commands.def"
#undef COMMAND
};

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static const struct resp_command subcommands[] = {
#define SUBCOMMAND(name, arity, flags, first, last, step, group, since, summary)                   \
    {name, NULL, arity, flags, first, last, step, group, since, summary},
#include "proto/resp/resp_subcommands.def"
#undef SUBCOMMAND
};

#define SUBCOMMAND_COUNT (sizeof(subcommands) / sizeof(subcommands[0]))

/* Each command's subcommands: SUBCOMMAND_COUNTS[i] of them from SUBCOMMAND_FIRST[i] on
 * in subcommands[] (set with sorted[]). */
static size_t subcommand_first[COMMAND_COUNT];
static size_t subcommand_counts[COMMAND_COUNT];

/* Command indexes sorted by name, for binary search. */
static size_t sorted[COMMAND_COUNT];

/* The commands by name in an open-addressing table (FNV-1a of the lowercase name, linear
 * probing): resp_command_find() compares one or two names, where the sorted list's
 * binary search compared eight. Each slot holds a command's index + 1 (0: empty). */
#define NAME_SLOTS 1024
_Static_assert(NAME_SLOTS >= 2 * COMMAND_COUNT, "the name table stays at most half full");
static uint16_t name_slots[NAME_SLOTS];

/* FNV-1a of the LENGTH bytes at NAME. */
static uint32_t name_hash(const char *name, size_t length) {
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < length; i++)
        hash = (hash ^ (unsigned char)name[i]) * 16777619u;
    return hash;
}
static pthread_once_t sorted_once = PTHREAD_ONCE_INIT;

/* The latency histogram of each command's class: read, write or other, from its flags. */
static histogram_id command_classes[COMMAND_COUNT];

/* Whether a command may run while the store is loading (its flags say "loading"). */
static bool loading_allowed[COMMAND_COUNT];

/* What each command needs (docs/security.md, "RESP"): ACCESS_READ and ACCESS_WRITE on
 * the namespace "default", RESP_RIGHT_SERVER_ADMIN, or these markers: */
#define NEED_NOTHING       (1u << 9)  /* no-auth: runs before AUTH too (AUTH, HELLO, QUIT) */
#define NEED_BY_SUBCOMMAND (1u << 10) /* ACL and CLIENT: see subcommand_needs() */
static unsigned command_needs[COMMAND_COUNT];

/* Commands MONITOR does not show, as Redis: the server's own (its admin flag: CONFIG,
 * SHUTDOWN, MONITOR itself...) and QUIT; ACL and CLIENT by subcommand. */
static bool monitor_hidden[COMMAND_COUNT];

/* True when the space-separated FLAGS include WORD. */
static bool has_flag(const char *flags, const char *word) {
    size_t length = strlen(word);
    for (const char *at = strstr(flags, word); at != NULL; at = strstr(at + 1, word)) {
        if ((at == flags || at[-1] == ' ') && (at[length] == ' ' || at[length] == '\0'))
            return true;
    }
    return false;
}

/* The rights a command needs, from its flags and, for the few whose flags do not say
 * enough, its name. */
static unsigned needs_of(const struct resp_command *command) {
    if (has_flag(command->flags, "no-auth")) return NEED_NOTHING;
    if (strcmp(command->name, "acl") == 0 || strcmp(command->name, "client") == 0)
        return NEED_BY_SUBCOMMAND;
    unsigned needs = 0;
    if (has_flag(command->flags, "admin")) needs |= RESP_RIGHT_SERVER_ADMIN;
    if (has_flag(command->flags, "readonly")) needs |= ACCESS_READ;
    if (has_flag(command->flags, "write")) needs |= ACCESS_WRITE;
    /* Emptying the whole store is the server's business, not a key's. */
    if (strcmp(command->name, "flushall") == 0 || strcmp(command->name, "flushdb") == 0)
        needs |= RESP_RIGHT_SERVER_ADMIN;
    /* Writes that answer with what was stored, or carry it to another key, read it too
     * (as Redis's key specifications say: RW, or R on a source). */
    static const char *const reading_writes[] = {
        "getex",    "getdel",      "getset",    "incr",     "incrby",   "decr",
        "decrby",   "incrbyfloat", "append",    "setrange", "copy",     "rename",
        "renamenx", "lmove",       "rpoplpush", "setbit",   "bitfield", "bitop"};
    for (size_t i = 0; i < sizeof(reading_writes) / sizeof(reading_writes[0]); i++)
        if (strcmp(command->name, reading_writes[i]) == 0) needs |= ACCESS_READ;
    return needs;
}

/* True when REQUEST is SET with its GET option, which answers the old value. */
static bool set_with_get(const struct resp_command *command, const struct resp_request *request) {
    if (strcmp(command->name, "set") != 0) return false;
    for (size_t i = 3; i < request->argc; i++)
        if (argument_is(request, i, "GET")) return true;
    return false;
}

static int compare_names(const void *left, const void *right) {
    return strcmp(commands[*(const size_t *)left].name, commands[*(const size_t *)right].name);
}

static void sort_commands(void) {
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        size_t slot = name_hash(commands[i].name, strlen(commands[i].name)) & (NAME_SLOTS - 1);
        while (name_slots[slot] != 0)
            slot = (slot + 1) & (NAME_SLOTS - 1);
        name_slots[slot] = (uint16_t)(i + 1);
        sorted[i] = i;
        loading_allowed[i] = strstr(commands[i].flags, "loading") != NULL;
        command_needs[i] = needs_of(&commands[i]);
        /* skip_monitor (EVAL, FCALL): fed to monitors when they start, before the
         * commands they run (resp_scripting.c), as Redis 7.0 does. */
        monitor_hidden[i] = has_flag(commands[i].flags, "admin") ||
                            has_flag(commands[i].flags, "skip_monitor") ||
                            strcmp(commands[i].name, "quit") == 0;
        command_classes[i] =
            strstr(commands[i].flags, "readonly") != NULL ? RESP_HISTOGRAM(command_read)
            : strstr(commands[i].flags, "write") != NULL  ? RESP_HISTOGRAM(command_write)
                                                          : RESP_HISTOGRAM(command_other);
    }
    qsort(sorted, COMMAND_COUNT, sizeof(sorted[0]), compare_names);
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        size_t length = strlen(commands[i].name);
        for (size_t j = 0; j < SUBCOMMAND_COUNT; j++) {
            if (strncmp(subcommands[j].name, commands[i].name, length) != 0 ||
                subcommands[j].name[length] != '|')
                continue;
            if (subcommand_counts[i] == 0) subcommand_first[i] = j;
            subcommand_counts[i]++;
        }
    }
}

const struct resp_command *resp_command_table(size_t *count) {
    *count = COMMAND_COUNT;
    return commands;
}

const struct resp_command *resp_subcommands_of(const struct resp_command *command, size_t *count) {
    pthread_once(&sorted_once, sort_commands);
    size_t index = (size_t)(command - commands);
    if (index >= COMMAND_COUNT) { /* a subcommand has none */
        *count = 0;
        return NULL;
    }
    *count = subcommand_counts[index];
    return &subcommands[subcommand_first[index]];
}

const struct resp_command *resp_subcommand_find(const struct resp_command *command,
                                                const unsigned char *name, size_t length) {
    size_t count;
    const struct resp_command *children = resp_subcommands_of(command, &count);
    size_t prefix = strlen(command->name) + 1; /* "parent|" */
    for (size_t i = 0; i < count; i++) {
        if (strlen(children[i].name) == prefix + length &&
            strncasecmp(children[i].name + prefix, (const char *)name, length) == 0)
            return &children[i];
    }
    return NULL;
}

const struct resp_command *resp_command_lookup(const unsigned char *name, size_t length) {
    const unsigned char *bar = memchr(name, '|', length);
    if (bar == NULL) return resp_command_find(name, length);
    const struct resp_command *parent = resp_command_find(name, (size_t)(bar - name));
    if (parent == NULL) return NULL;
    size_t rest = length - (size_t)(bar - name) - 1;
    if (memchr(bar + 1, '|', rest) != NULL) return NULL; /* "config|get|x" */
    return resp_subcommand_find(parent, bar + 1, rest);
}

const struct resp_command *resp_command_find(const unsigned char *name, size_t length) {
    char lower[32];
    if (length == 0 || length >= sizeof(lower)) return NULL;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = name[i];
        lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    lower[length] = '\0';
    pthread_once(&sorted_once, sort_commands);
    for (size_t slot = name_hash(lower, length) & (NAME_SLOTS - 1); name_slots[slot] != 0;
         slot = (slot + 1) & (NAME_SLOTS - 1)) {
        const struct resp_command *command = &commands[name_slots[slot] - 1];
        if (strcmp(lower, command->name) == 0) return command;
    }
    return NULL;
}

/* ---- the protocol's shared state ---------------------------------------------- */

struct resp_server *resp_server_create(const struct resp_environment *environment) {
    struct resp_server *server = calloc(1, sizeof(*server));
    if (server == NULL) return NULL;
    server->environment = *environment;
    server->monitor = resp_monitor_create();
    server->scripting = resp_scripting_create();
    if (server->monitor == NULL || server->scripting == NULL) {
        resp_monitor_destroy(server->monitor);
        resp_scripting_destroy(server->scripting);
        free(server);
        return NULL;
    }
    pthread_mutex_init(&server->sessions_lock, NULL);
    pthread_mutex_init(&server->monitors_lock, NULL);
    resp_blocking_init(server);
    resp_info_init(server);
    pthread_once(&sorted_once, sort_commands);
    resp_stats_init();
    return server;
}

void resp_server_destroy(struct resp_server *server) {
    if (server == NULL) return;
    resp_blocking_destroy(server);
    pthread_mutex_destroy(&server->sessions_lock);
    pthread_mutex_destroy(&server->monitors_lock);
    resp_monitor_destroy(server->monitor);
    resp_scripting_destroy(server->scripting);
    free(server);
}

/* ---- sessions ----------------------------------------------------------------- */

/* What a connection that has not authenticated may send, as in Redis: commands of at
 * most 10 arguments and, here, 16 KiB in all (AUTH, HELLO). More is a protocol error
 * that closes the connection, so that nobody without a password makes the server read
 * and drain large values. */
#define UNAUTHENTICATED_ARGUMENTS 10
#define UNAUTHENTICATED_REQUEST   (16 * 1024)

/* The parser limits for SESSION's next command: the options', or the unauthenticated
 * ones while it has no user (as of its last command). */
static struct resp_parser_limits current_limits(const struct resp_session *session) {
    const struct options *options = session->server->environment.options;
    struct resp_parser_limits limits = {
        .max_request = (uint64_t)options_number(options, NET_OPTION(max_request)),
        .max_value = (uint64_t)options_number(options, ENGINE_OPTION(max_value)),
        .max_arguments = (uint64_t)options_number(options, RESP_OPTION(max_arguments)),
    };
    if (session->rights_user == NULL) {
        if (limits.max_request > UNAUTHENTICATED_REQUEST)
            limits.max_request = UNAUTHENTICATED_REQUEST;
        if (limits.max_arguments > UNAUTHENTICATED_ARGUMENTS)
            limits.max_arguments = UNAUTHENTICATED_ARGUMENTS;
    }
    return limits;
}

void *resp_session_open(struct resp_server *server, uint64_t id, int fd, const char *peer,
                        const char *local, int64_t peer_uid, struct output_queue *output,
                        void (*resume)(void *handle), void (*wake)(void *handle), void *handle) {
    struct resp_session *session = calloc(1, sizeof(*session));
    if (session == NULL) return NULL;
    session->resume = resume;
    session->wake = wake;
    session->resume_handle = handle;
    session->server = server;
    session->output = output;
    session->connection_output = output;
    session->protocol = 2;
    session->id = id;
    session->fd = fd;
    session->stats_slot = -1;
    snprintf(session->peer, sizeof(session->peer), "%s", peer);
    snprintf(session->local, sizeof(session->local), "%s", local);
    session->peer_uid = peer_uid;
    session->created_ms = clock_realtime_ms();
    atomic_init(&session->last_active_ms, session->created_ms);
    atomic_init(&session->last_command, "NULL");
    atomic_init(&session->multi_count, -1);
    atomic_init(&session->query_bytes, 0);
    atomic_init(&session->query_free, 0);
    atomic_init(&session->argument_bytes, 0);
    atomic_init(&session->parser_memory, 0);
    /* Not yet in the registry: nobody else reads user_name (so setting the rights
     * takes no lock). */
    access_identity_init(server->environment.access, &session->identity);
    if (peer_uid >= 0) /* the Unix socket: a uid:N rule may name the peer */
        access_identify_peer(server->environment.access, &session->identity, (uint32_t)peer_uid);
    if (session->identity.user != NULL)
        snprintf(session->user_name, sizeof(session->user_name), "%s", session->identity.name);
    resp_session_set_rights(session, session->identity.user);
    struct resp_parser_limits limits = current_limits(session);
    resp_parser_init(&session->parser, &limits);
    sessions_lock(server);
    session->next = server->sessions;
    if (server->sessions != NULL) server->sessions->previous = session;
    server->sessions = session;
    sessions_unlock(server);
    return session;
}

void resp_session_close(void *opaque) {
    struct resp_session *session = opaque;
    struct resp_server *server = session->server;
    /* Out of both lists before returning: nobody wakes the connection after this. */
    resp_monitor_stop(session);
    sessions_lock(server);
    if (session->previous != NULL) {
        session->previous->next = session->next;
    } else {
        server->sessions = session->next;
    }
    if (session->next != NULL) session->next->previous = session->previous;
    sessions_unlock(server);
    resp_blocking_close(session); /* out of the blocked line too */
    if (session->suspended) {
        session->orphaned = true; /* freed when its flash reads end */
        return;
    }
    resp_session_free(session);
}

void resp_session_free(struct resp_session *session) {
    if (session->holding) resp_session_command_done(session);
    resp_blocking_done(session);
    resp_reply_discard_end(session);
    if (session->discarded != NULL) {
        output_queue_clear(session->discarded);
        free(session->discarded);
    }
    resp_transaction_reset(session);
    resp_parser_free(&session->parser);
    access_identity_release(&session->identity);
    free(session->name);
    free(session->library_name);
    free(session->library_version);
    byte_buffer_free(&session->monitor_feed);
    free(session);
}

/* Writes the "unknown command" error the way Redis 7 words it. */
static void reply_unknown_command(struct resp_session *session,
                                  const struct resp_request *request) {
    char text[512];
    size_t length = (size_t)snprintf(text, sizeof(text),
                                     "ERR unknown command '%.*s', with "
                                     "args beginning with: ",
                                     (int)(request->lengths[0] < 128 ? request->lengths[0] : 128),
                                     (const char *)request->argv[0]);
    for (size_t i = 1; i < request->argc && length < 128 + 64; i++) {
        int room = (int)(sizeof(text) - length);
        int shown = (int)(request->lengths[i] < 128 ? request->lengths[i] : 128);
        int added =
            snprintf(text + length, (size_t)room, "'%.*s' ", shown, (const char *)request->argv[i]);
        if (added < 0 || added >= room) break;
        length += (size_t)added;
    }
    reply_error(session, text);
}

void resp_session_set_rights(struct resp_session *session, const struct access_user *user) {
    static const char namespace[] = "default"; /* the namespace RESP serves */
    session->rights_user = user;
    session->rights = 0;
    if (user != NULL) {
        session->rights = (access_namespace_rights(user, namespace, sizeof(namespace) - 1) &
                           (ACCESS_READ | ACCESS_WRITE)) |
                          (access_is_admin(user) ? RESP_RIGHT_SERVER_ADMIN : 0);
    }
    const char *name = user != NULL ? user->name : "";
    if (strcmp(session->user_name, name) != 0) {
        sessions_lock(session->server);
        snprintf(session->user_name, sizeof(session->user_name), "%s", name);
        sessions_unlock(session->server);
    }
}

const struct access_user *resp_session_user(struct resp_session *session) {
    const struct access_user *user =
        access_identity_current(session->server->environment.access, &session->identity);
    if (user != session->rights_user) resp_session_set_rights(session, user);
    return user;
}

/* The rights ACL and CLIENT subcommands need: those about the connection itself (and
 * ACL's harmless WHOAMI, CAT, GENPASS, HELP) any user may run; the others (ACL's user
 * management, CLIENT LIST, KILL, ... which see or touch other connections) are the
 * server's own commands. */
static unsigned subcommand_needs(const struct resp_command *command,
                                 const struct resp_request *request) {
    static const char *const acl_open[] = {"whoami", "cat", "genpass", "help"};
    static const char *const client_open[] = {"id",      "setname", "getname", "info",
                                              "setinfo", "help",    "no-touch"};
    bool acl = command->name[0] == 'a';
    const char *const *open = acl ? acl_open : client_open;
    size_t count =
        acl ? sizeof(acl_open) / sizeof(acl_open[0]) : sizeof(client_open) / sizeof(client_open[0]);
    for (size_t i = 0; i < count; i++)
        if (argument_is(request, 1, open[i])) return 0;
    return RESP_RIGHT_SERVER_ADMIN;
}

/* Refuses REQUEST, which needs NEEDS and SESSION lacks some of it: NOPERM with Redis
 * 7.2's text (the key text when a key right is missing on a command with keys), counted
 * in access_denied. */
static void refuse(struct resp_session *session, const struct resp_command *command,
                   const struct resp_request *request, unsigned needs) {
    metric_add(ACCESS_METRIC(access_denied), 1);
    unsigned missing = needs & ~session->rights;
    if (!(missing & RESP_RIGHT_SERVER_ADMIN) && command->first_key > 0) {
        reply_error(session, "NOPERM No permissions to access a key");
        return;
    }
    char name[64];
    if (command_needs[command - commands] & NEED_BY_SUBCOMMAND) {
        char subcommand[32];
        argument_text(request, 1, subcommand, sizeof(subcommand));
        for (char *c = subcommand; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        snprintf(name, sizeof(name), "%s|%s", command->name, subcommand);
    } else {
        snprintf(name, sizeof(name), "%s", command->name);
    }
    reply_errorf(session, "NOPERM User %s has no permissions to run the '%s' command",
                 session->user_name, name);
}

/* True when SESSION may run COMMAND; otherwise replies NOAUTH or NOPERM. The common
 * case costs one atomic load (access_identity_current()) and a comparison: the rights
 * are recomputed only when the identity's user changes (AUTH, a reload, ACL SETUSER). */
static bool allowed(struct resp_session *session, const struct resp_command *command,
                    const struct resp_request *request) {
    unsigned needs = command_needs[command - commands];
    if (needs & NEED_NOTHING) return true;
    const struct access_user *user = resp_session_user(session);
    if (user == NULL) {
        reply_error(session, "NOAUTH Authentication required.");
        return false;
    }
    if (needs & NEED_BY_SUBCOMMAND) needs = subcommand_needs(command, request);
    if ((needs & ~session->rights) == 0 &&
        ((session->rights & ACCESS_READ) || !set_with_get(command, request)))
        return true;
    if (set_with_get(command, request)) needs |= ACCESS_READ;
    refuse(session, command, request, needs);
    return false;
}

bool resp_session_allowed(struct resp_session *session, const struct resp_command *command,
                          const struct resp_request *request) {
    return allowed(session, command, request);
}

/* Checks that REQUEST may run now: a known command, with the right number of arguments,
 * that SESSION has the rights for, and that may run while the store loads. Returns the
 * command, or NULL after replying the error. */
static const struct resp_command *admit(struct resp_session *session,
                                        const struct resp_request *request) {
    const struct resp_parser *parser = &session->parser;
    if (parser->oversized_length != 0) {
        reply_errorf(session, "ERR argument of %llu bytes exceeds max-value (%lld bytes)",
                     (unsigned long long)parser->oversized_length,
                     (long long)options_number(session->server->environment.options,
                                               ENGINE_OPTION(max_value)));
        return NULL;
    }
    if (parser->allocation_failed) {
        reply_error(session, "OOM out of memory: could not allocate an argument");
        return NULL;
    }
    const struct resp_command *command = resp_command_find(request->argv[0], request->lengths[0]);
    if (command == NULL) {
        reply_unknown_command(session, request);
        return NULL;
    }
    /* Refusals before the command runs count as its rejected_calls (INFO commandstats). */
    int slot = resp_stats_slot(command, request);
    if ((command->arity > 0 && request->argc != (size_t)command->arity) ||
        (command->arity < 0 && request->argc < (size_t)-command->arity)) {
        reply_wrong_arity(session, command->name);
        resp_stats_rejected(slot);
        return NULL;
    }
    if (!allowed(session, command, request)) {
        resp_stats_rejected(slot);
        return NULL;
    }
    if (!loading_allowed[command - commands] &&
        store_recovering(session->server->environment.store)) {
        /* As Redis while it loads its dataset: clients retry (redis-py: BusyLoadingError). */
        reply_error(session, "LOADING strata is loading the flash index into memory");
        resp_stats_rejected(slot);
        return NULL;
    }
    return command;
}

void resp_session_stats_begin(struct resp_session *session, const struct resp_command *command,
                              const struct resp_request *request) {
    session->stats_slot = resp_stats_slot(command, request);
    session->stats_errors = session->error_replies;
    session->stats_rejected = false;
    session->stats_ns = 0;
}

void resp_session_run(struct resp_session *session, const struct resp_command *command,
                      const struct resp_request *request) {
    /* CLIENT LIST's cmd=: "client|list" for a known subcommand, as in Redis 7. */
    const struct resp_command *named =
        request->argc >= 2
            ? resp_subcommand_find(command, request->argv[1], (size_t)request->lengths[1])
            : NULL;
    atomic_store_explicit(&session->last_command, named != NULL ? named->name : command->name,
                          memory_order_relaxed);
    /* One clock read per command: a command's latency runs from the end of the one
     * before it in the same input batch (or from the batch's arrival), which also counts
     * its parsing (docs/performance.md). */
    int64_t started = session->command_clock_ns;
    command->handler(session, request);
    /* Shown to monitors once it has run (as Redis 7), and once: not when it asked to
     * run again after a prefetch (its second run shows it). */
    if (atomic_load_explicit(&session->server->monitor_count, memory_order_relaxed) > 0 &&
        !session->rerun_wanted && !monitor_hidden[command - commands] &&
        !((command_needs[command - commands] & NEED_BY_SUBCOMMAND) &&
          (subcommand_needs(command, request) & RESP_RIGHT_SERVER_ADMIN))) {
        resp_monitor_feed(session, request);
    }
    int64_t finished = clock_monotonic_ns();
    metric_observe(command_classes[command - commands], finished - started);
    session->stats_ns += finished - started;
    session->command_clock_ns = finished;
}

/* Runs the command the parser has completed (again, after a prefetch, when
 * session->rerunning), or queues it inside MULTI. */
static void execute(struct resp_session *session) {
    struct resp_parser *parser = &session->parser;
    struct resp_request request = {parser->argc, parser->argv, parser->argv_lengths};
    resp_block_rerun(session, &request); /* a blocked command runs with its own copy */
    if (request.argc == 0) return;
    if (!session->rerunning) metric_add(RESP_METRIC(commands_processed), 1);
    if (!session->rerunning && (session->replies_off || session->skip_next_reply)) {
        session->skip_next_reply = false; /* CLIENT REPLY: this command's reply is not sent */
        resp_reply_discard_begin(session);
    }
    const struct resp_command *command = admit(session, &request);
    if (command == NULL) {
        resp_transaction_refused(session);
        return;
    }
    if (session->transaction.active && resp_transaction_queues(command)) {
        if (has_flag(command->flags, "no_multi")) { /* SHUTDOWN, as in Redis 7 */
            reply_error(session, "ERR Command not allowed inside a transaction");
            resp_transaction_refused(session);
            return;
        }
        resp_transaction_queue(session, command, &request); /* counted when EXEC runs it */
        return;
    }
    /* resp_session_command_done() counts it (after a rerun, both runs' time). */
    if (!session->rerunning) resp_session_stats_begin(session, command, &request);
    resp_session_run(session, command, &request);
}

/* Reads the decimal number that ends with CRLF at *CURSOR (before END), moving past it.
 * Returns false when the number is malformed or not complete. */
static bool scan_number(const unsigned char **cursor, const unsigned char *end, uint64_t *value) {
    size_t window = (size_t)(end - *cursor) < 21 ? (size_t)(end - *cursor) : 21;
    const unsigned char *line_end = memchr(*cursor, '\r', window);
    if (line_end == NULL || end - line_end < 2 || line_end[1] != '\n' ||
        !parse_uint64(*cursor, (size_t)(line_end - *cursor), value)) {
        return false;
    }
    *cursor = line_end + 2;
    return true;
}

/* Finds the second argument (the key, for almost every command) of each complete
 * multibulk command at the start of DATA[0, LENGTH), up to STORE_PREFETCH_MAX of them,
 * into KEYS (pointing into DATA). Returns how many. Stops at the first thing that is
 * not a complete multibulk command: a hint for store_prefetch(), which the parser
 * does not rely on. */
static size_t scan_keys(const unsigned char *data, size_t length, struct store_key *keys) {
    const unsigned char *cursor = data, *end = data + length;
    size_t found = 0;
    while (found < STORE_PREFETCH_MAX && cursor < end && *cursor == '*') {
        cursor++;
        uint64_t arguments;
        if (!scan_number(&cursor, end, &arguments) || arguments > 1024) break;
        struct store_key key = {NULL, 0};
        for (uint64_t i = 0; i < arguments; i++) {
            uint64_t bulk;
            if (cursor >= end || *cursor != '$') return found;
            cursor++;
            if (!scan_number(&cursor, end, &bulk) || end - cursor < 2 ||
                bulk > (uint64_t)(end - cursor) - 2) {
                return found;
            }
            if (i == 1) key = (struct store_key){cursor, (size_t)bulk};
            cursor += bulk + 2;
        }
        if (key.key != NULL) keys[found++] = key;
    }
    return found;
}

/* When DATA starts with two or more complete commands (a pipelined batch), brings
 * their keys' index entries into cache together before any of them runs. */
static void prefetch_batch(struct resp_session *session, const unsigned char *data, size_t length) {
    if (resp_parser_in_command(&session->parser)) return;
    struct store_key keys[STORE_PREFETCH_MAX];
    size_t count = scan_keys(data, length, keys);
    if (count >= 2) store_prefetch(session->server->environment.store, keys, count);
}

/* Publishes what SESSION's parser holds for CLIENT LIST, with UNREAD bytes of input
 * still waiting behind it. On the session's worker. */
static void publish_usage(struct resp_session *session, size_t unread) {
    struct resp_parser_usage usage;
    resp_parser_usage(&session->parser, &usage);
    atomic_store_explicit(&session->query_bytes, usage.request + unread, memory_order_relaxed);
    atomic_store_explicit(&session->query_free, usage.buffer_free, memory_order_relaxed);
    atomic_store_explicit(&session->argument_bytes, usage.arguments, memory_order_relaxed);
    atomic_store_explicit(&session->parser_memory, usage.memory, memory_order_relaxed);
}

bool resp_session_data(void *opaque, const unsigned char *data, size_t length, size_t *consumed) {
    struct resp_session *session = opaque;
    size_t position = 0;
    session->command_clock_ns = clock_monotonic_ns();
    atomic_store_explicit(&session->last_active_ms, clock_realtime_ms(), memory_order_relaxed);
    if (!session->suspended && !session->closing) prefetch_batch(session, data, length);
    while (position < length) {
        if (session->suspended) break; /* a flash read is in flight */
        if (session->closing) {
            position = length; /* after QUIT or a protocol error, input is ignored */
            break;
        }
        if (output_queue_pending(session->output) > RESP_OUTPUT_PAUSE &&
            !resp_parser_in_command(&session->parser)) {
            break; /* let the client read its replies before taking more commands */
        }
        size_t used = 0;
        enum resp_parse_result result =
            resp_parser_feed(&session->parser, data + position, length - position, &used);
        position += used;
        if (result == RESP_COMMAND_READY) {
            publish_usage(session, length - position);
            execute(session);
            if (session->rerun_wanted) break; /* it runs again when its key is in DRAM */
            resp_session_command_done(session);
        } else if (result == RESP_PROTOCOL_ERROR) {
            reply_errorf(session, "ERR %s", session->parser.error);
            char quoted[160];
            log_event(LOG_INFO, "protocol_error", "client=%llu peer=%s error=%s",
                      (unsigned long long)session->id, session->peer,
                      log_quote(quoted, sizeof(quoted), session->parser.error,
                                strlen(session->parser.error)));
            metric_add(METRIC_protocol_errors, 1);
            session->closing = true;
        } else {
            break;
        }
    }
    publish_usage(session, length - position);
    *consumed = position;
    return session->closing;
}

void resp_session_command_done(struct resp_session *session) {
    if (session->stats_slot >= 0) {
        const struct resp_parser *parser = &session->parser;
        struct resp_request request = {parser->argc, parser->argv, parser->argv_lengths};
        resp_stats_command_end(session, &request);
    }
    if (session->holding) {
        const struct resp_parser *parser = &session->parser;
        if (session->hold_index < parser->argc) {
            store_release_hold(session->server->environment.store,
                               parser->argv[session->hold_index],
                               (size_t)parser->argv_lengths[session->hold_index]);
        }
        session->holding = false;
    }
    resp_blocking_done(session);
    resp_reply_discard_end(session);
    session->rerun_wanted = false;
    resp_parser_next_command(&session->parser);
    struct resp_parser_limits limits = current_limits(session);
    resp_parser_set_limits(&session->parser, &limits);
}

void resp_session_rerun(struct resp_session *session, enum store_status failure) {
    session->rerun_wanted = false;
    if (failure != STORE_OK) {
        reply_store_error(session, failure);
    } else {
        session->rerunning = true;
        session->command_clock_ns = clock_monotonic_ns();
        execute(session);
        session->rerunning = false;
        if (session->rerun_wanted) return; /* it blocked (again): it ends when woken */
    }
    resp_session_command_done(session);
    session->resume(session->resume_handle); /* may close the connection: last */
}

bool resp_session_direct_target(void *opaque, unsigned char **buffer, size_t *length) {
    struct resp_session *session = opaque;
    if (session->suspended) return false;
    return resp_parser_direct_target(&session->parser, buffer, length);
}

void resp_session_direct_filled(void *opaque, size_t length) {
    struct resp_session *session = opaque;
    resp_parser_direct_advance(&session->parser, length);
}
