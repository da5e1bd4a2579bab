/* Shared by the files of the RESP front end: the session, reply writers, the command
 * table and argument helpers. Not used outside src/proto/resp/. */
#ifndef STRATA_PROTO_RESP_INTERNAL_H
#define STRATA_PROTO_RESP_INTERNAL_H

#include "access/access.h"
#include "base/byte_buffer.h"
#include "base/checks.h"
#include "base/output_queue.h"
#include "engine/engine_options.h"
#include "engine/store.h"
#include "net/net.h"
#include "proto/resp/resp.h"
#include "proto/resp/resp_parser.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Pending output above which a session stops taking new commands until it drains. */
#define RESP_OUTPUT_PAUSE (1024 * 1024)

/* Values at least this long are sent straight from the store, without a copy; shorter
 * ones are copied into the output buffer. Copying up to 512 KiB costs less than the
 * kernel's first touch of each page of a value it has not sent before, which on the
 * virtual machines measured (shadow paging) made the first read of freshly written
 * 64 KiB and 256 KiB values 3 to 5 times slower (docs/performance.md). */
#define RESP_REFERENCE_THRESHOLD (512 * 1024)

struct resp_session;
struct resp_reads;
struct resp_monitor;

/* One key's read: its status and what it found. */
struct resp_read_slot {
    struct resp_reads *reads;
    enum store_status status;
    struct store_value value; /* the reply function takes what it sends */
};

typedef void (*resp_reads_reply)(struct resp_session *session, struct resp_reads *reads);

/* The reads of one command. */
struct resp_reads {
    struct resp_session *session;
    size_t count;
    size_t pending;
    resp_reads_reply reply;
    int64_t arguments[2];         /* numbers the reply needs (GETRANGE's range) */
    struct resp_read_slot *slots; /* COUNT of them */
    int stats_slot;               /* the command's commandstats slot (a late error fails it) */
    bool allocated;               /* allocated with its slots; else the session's own */
};

/* The protocol's process-wide state. */
struct resp_server {
    struct resp_environment environment;
    pthread_mutex_t sessions_lock; /* guards the list and every session's name */
    struct check_owner sessions_owner;
    struct resp_session *sessions;
    /* MONITOR: the sessions that see every command. A command reads monitor_count first,
     * without the lock, so that with no monitor it pays that one load and nothing else. */
    _Atomic int monitor_count;
    pthread_mutex_t monitors_lock; /* guards the list and each monitor's feed */
    struct check_owner monitors_owner;
    struct resp_session *monitors;
    struct resp_monitor *monitor; /* the slow log and latency events (resp_stats.c) */
    /* Sessions blocked in BLPOP, XREAD BLOCK ... (resp_blocking.c), in the order they
     * blocked. Every typed write reads blocked_count first, without the lock, so that
     * with nobody blocked it pays that one load and nothing else. */
    _Atomic size_t blocked_count;
    pthread_mutex_t blocking_lock; /* guards the line and each session's resp_block */
    struct check_owner blocking_owner;
    pthread_cond_t blocking_changed; /* a new deadline, or the server stops */
    struct resp_session *blocked_first;
    struct resp_session *blocked_last;
    uint64_t blocked_sequence; /* the last place in line given */
    /* The keys blocked sessions wait on, each with its waiters in line order, so that a
     * write finds its key's waiters without walking the line: a chained hash table
     * (buckets a power of two, allocated with the first key), seeded per server. */
    struct blocked_key **blocked_keys;
    size_t blocked_key_buckets;
    size_t blocked_key_count;
    uint64_t blocked_key_seed;
    bool blocking_timer_started;
    bool blocking_stopping;
    /* INFO replication's master_replid: 40 random hex digits, new each start, as Redis
     * gives a master that has had no replica. */
    char replication_id[41];
    pthread_t blocking_timer;
    struct resp_scripting *scripting; /* EVAL's Lua state and script cache */
};

/* sessions_lock, with its owner tracked in the checking builds. */
static inline void sessions_lock(struct resp_server *server) {
    pthread_mutex_lock(&server->sessions_lock);
    check_acquired(&server->sessions_owner);
}

static inline void sessions_unlock(struct resp_server *server) {
    check_releasing(&server->sessions_owner);
    pthread_mutex_unlock(&server->sessions_lock);
}

/* monitors_lock, likewise. Taken alone: never with sessions_lock. */
static inline void monitors_lock(struct resp_server *server) {
    pthread_mutex_lock(&server->monitors_lock);
    check_acquired(&server->monitors_owner);
}

static inline void monitors_unlock(struct resp_server *server) {
    check_releasing(&server->monitors_owner);
    pthread_mutex_unlock(&server->monitors_lock);
}

/* A command queued between MULTI and EXEC: its own copy of the arguments. */
struct resp_queued_command {
    const struct resp_command *command;
    size_t argc;
    unsigned char **argv; /* argc arguments, each NUL-terminated, one allocation each */
    uint64_t *lengths;
};

struct resp_request;

/* Copies REQUEST's arguments into QUEUED (its command is left as it was). Returns false
 * when out of memory (QUEUED then holds nothing). */
bool resp_queued_copy(struct resp_queued_command *queued, const struct resp_request *request);

/* Frees QUEUED's arguments (not QUEUED itself). */
void resp_queued_free(struct resp_queued_command *queued);

/* A key WATCH noted: its version then (store_key_version()) and whether it existed. */
struct resp_watched_key {
    unsigned char *key;
    size_t length;
    uint32_t version;
    bool existed;
};

/* A session's transaction state (resp_transactions.c). All of it is the session's own:
 * only its worker touches it. */
struct resp_transaction {
    bool active;  /* after MULTI: commands are queued */
    bool failed;  /* a command was refused while queued: EXEC answers EXECABORT */
    bool running; /* EXEC is running the queue (MONITOR refuses, as Redis) */
    size_t count; /* queued commands */
    size_t capacity;
    struct resp_queued_command *commands;
    uint64_t queued_bytes; /* their arguments' bytes (bounded by max-request) */
    size_t watch_count;
    size_t watch_capacity;
    struct resp_watched_key *watched;
    uint64_t watched_bytes; /* the watched keys' bytes (bounded by max-request) */
};

/* What a blocking command answers inside EXEC when it finds nothing (Redis 7.0's
 * replies; a wait that times out answers a null array for every command). */
enum resp_block_timeout {
    RESP_BLOCK_NULL_ARRAY, /* *-1 (BLPOP, XREAD) */
    RESP_BLOCK_NULL_BULK,  /* $-1 (BLMOVE, BRPOPLPUSH) */
};

enum resp_block_outcome {
    RESP_BLOCK_WAITING = 0,
    RESP_BLOCK_SIGNALED,        /* a key it waits on was written: run it again */
    RESP_BLOCK_TIMED_OUT,       /* its timeout passed, or CLIENT UNBLOCK (TIMEOUT) */
    RESP_BLOCK_UNBLOCKED_ERROR, /* CLIENT UNBLOCK ERROR */
};

/* A blocked command (resp_blocking.c). Set on the session's worker while it is out of
 * line; the fields marked so are under server->blocking_lock while it is in line. */
/* A blocked session's place among the waiters on one of its keys (resp_blocking.c's key
 * index). KEY is NULL for a key the command names twice (the first counts). Under
 * blocking_lock while its session is in line. */
struct resp_key_wait {
    struct resp_session *session;
    struct blocked_key *key;
    struct resp_key_wait *previous;
    struct resp_key_wait *next;
};

struct resp_block {
    bool waiting;                       /* blocked: input is not taken */
    struct resp_queued_command request; /* the command to run again (argc 0: none) */
    size_t first_key;                   /* its keys: KEY_COUNT arguments from FIRST_KEY */
    size_t key_count;
    bool takes;                      /* it takes what it serves (a pop), rather than reads */
    bool resignal;                   /* served after a signal: pass the turn on when done */
    int64_t deadline_ms;             /* monotonic; 0: none */
    uint64_t sequence;               /* its place in line, kept when it blocks again */
    bool in_line;                    /* under blocking_lock */
    enum resp_block_outcome outcome; /* under blocking_lock */
    struct resp_session *previous;   /* under blocking_lock: in server's line */
    struct resp_session *next;       /* under blocking_lock */
    struct resp_key_wait *waits;     /* KEY_COUNT, one per key (in the key index) */
};

struct resp_session {
    struct resp_server *server;
    struct output_queue *output; /* where replies go: the connection's, or DISCARDED */
    /* CLIENT REPLY OFF and SKIP (resp_reply_discard_begin()): a command whose reply is not
     * sent runs with OUTPUT set to DISCARDED (allocated on first use) and the
     * connection's queue kept in REPLYING_TO, until it ends. */
    struct output_queue *connection_output; /* fixed: what CLIENT LIST reads */
    struct output_queue *discarded;
    struct output_queue *replying_to; /* NULL: replies are sent */
    bool replies_off;                 /* CLIENT REPLY OFF */
    bool skip_next_reply;             /* CLIENT REPLY SKIP: the next command's */
    struct resp_parser parser;
    _Atomic int protocol; /* 2 or 3; read by CLIENT LIST on other threads */
    bool closing;         /* QUIT or a protocol error: send what is queued and close */
    uint64_t id;
    int fd;
    char peer[64];
    char local[64];
    int64_t peer_uid; /* the Unix socket's peer uid, or -1 (RESET identifies it again) */
    char *name;       /* CLIENT SETNAME; under server->sessions_lock */
    char *library_name;
    char *library_version;
    int64_t created_ms;
    _Atomic int64_t last_active_ms;     /* when input last arrived (CLIENT LIST idle) */
    int64_t command_clock_ns;           /* monotonic start of the next command's latency */
    _Atomic(const char *) last_command; /* its name, "client|list" for a subcommand */
    /* What the parser holds (resp_parser_usage()), published by the session's worker
     * before each command and after each batch of input, for CLIENT LIST on other
     * threads: qbuf (the command's bytes and the rest of the batch), qbuf-free,
     * argv-mem, and the parser's part of tot-mem. */
    _Atomic uint64_t query_bytes;
    _Atomic uint64_t query_free;
    _Atomic uint64_t argument_bytes;
    _Atomic uint64_t parser_memory;
    struct resp_session *previous; /* in server->sessions */
    struct resp_session *next;
    /* A command waits for a flash read: input is not taken until it ends. */
    bool suspended;
    bool orphaned; /* the connection closed meanwhile: the read's end frees the session */
    void (*resume)(void *handle); /* tells the network layer to go on */
    void (*wake)(void *handle);   /* asks for resp_session_woken(); any thread, while open;
                                     may be NULL (the fuzz target) */
    void *resume_handle;          /* the handle of both */
    /* CLIENT KILL from another session: set under sessions_lock, then wake(); the
     * session's worker closes the connection when woken. */
    _Atomic bool killed;
    _Atomic bool no_evict;   /* CLIENT NO-EVICT: recorded and shown (flags=e), no effect */
    _Atomic bool no_touch;   /* CLIENT NO-TOUCH: likewise (flags=T) */
    _Atomic bool monitoring; /* MONITOR; changed on the session's worker under
                                monitors_lock, read by CLIENT LIST anywhere */
    /* Under server->monitors_lock, while monitoring: */
    struct resp_session *monitor_previous; /* in server->monitors */
    struct resp_session *monitor_next;
    struct byte_buffer monitor_feed; /* lines queued by any thread, not yet in output */
    bool monitor_overflow;           /* it fell behind past its limit: to be closed */
    /* A one-key read (GET) uses these, so the common case allocates nothing. */
    struct resp_reads single_read;
    struct resp_read_slot single_slot;
    /* A command that brings its key back from flash first (resp_prefetch_key()) and
     * runs again when it is in DRAM: */
    bool rerun_wanted; /* it asked to run again: keep its arguments */
    bool rerunning;    /* this run follows the prefetch */
    bool in_script;    /* a script's (or function's) commands are running */
    bool holding;      /* the key at hold_index is held in DRAM until the command ends */
    size_t hold_index;
    /* Who the connection is (AUTH, HELLO AUTH), and what it may do in the namespace
     * "default" that RESP serves: RIGHTS holds ACCESS_READ/WRITE on it and
     * RESP_RIGHT_SERVER_ADMIN, as computed for RIGHTS_USER, the user pointer
     * access_identity_current() returned last (recomputed only when it changes). */
    struct access_identity identity;
    const struct access_user *rights_user;
    unsigned rights;
    char user_name[ACCESS_NAME_MAX + 1]; /* CLIENT LIST's user=; under sessions_lock */
    struct resp_transaction transaction;
    struct resp_block block;
    _Atomic bool blocked; /* CLIENT LIST's flags=b: block.waiting, for other threads */
    /* CLIENT LIST's multi=: queued commands after MULTI, -1 outside one. */
    _Atomic int64_t multi_count;
    /* INFO commandstats and errorstats, SLOWLOG, LATENCY (resp_stats.c): */
    uint32_t error_replies; /* error replies sent, ever (a command failed when it grew) */
    uint32_t stats_errors;  /* error_replies when the command in progress began */
    int stats_slot;         /* the command in progress's commandstats slot, or -1 */
    bool stats_rejected;    /* it was refused by an arity check in its handler */
    int64_t stats_ns;       /* its execution time so far (both runs, with a prefetch) */
};

/* The store SESSION's commands run on (its server's). */
static inline struct store *store_of(struct resp_session *session) {
    return session->server->environment.store;
}

/* Redis's error for a command on a key holding another type of value. */
#define RESP_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"

/* A session right besides the namespace's ACCESS_READ and ACCESS_WRITE: the server's own
 * commands (access_is_admin()). */
#define RESP_RIGHT_SERVER_ADMIN (1u << 8)

/* Makes SESSION's cached rights those of USER (the identity's current user, or NULL)
 * and its CLIENT LIST name USER's. On the session's worker. */
void resp_session_set_rights(struct resp_session *session, const struct access_user *user);

/* SESSION's user as of the newest users (access_identity_current()), its cached rights
 * brought up to date; NULL when not authenticated (or its user was deleted or switched
 * off). Always use this rather than access_identity_current(), so that the cache never
 * outlives the user it was computed for. */
const struct access_user *resp_session_user(struct resp_session *session);

/* Frees a session that is closed and out of the registry. */
void resp_session_free(struct resp_session *session);

/* The command in progress is over: ends its hold, forgets its arguments and gets the
 * parser ready for the next command. */
void resp_session_command_done(struct resp_session *session);

/* Runs the command in progress again now that its key is in DRAM (or replies FAILURE
 * when bringing it back failed), ends it and lets the session go on. On the worker,
 * from a completion. */
void resp_session_rerun(struct resp_session *session, enum store_status failure);

/* A command being executed: its arguments, as the parser delivered them. */
struct resp_request {
    size_t argc;
    const unsigned char **argv;
    const uint64_t *lengths;
};

/* True when SESSION's user may run REQUEST (COMMAND's rights, some by subcommand);
 * otherwise replies NOAUTH or NOPERM and returns false. */
bool resp_session_allowed(struct resp_session *session, const struct resp_command *command,
                          const struct resp_request *request);

/* Starts counting a call of COMMAND (REQUEST's arguments: its commandstats slot) in
 * SESSION's stats fields; resp_stats_command_end() counts it. */
void resp_session_stats_begin(struct resp_session *session, const struct resp_command *command,
                              const struct resp_request *request);

/* Runs COMMAND, admitted already (known, arity, rights, loading), with REQUEST's
 * arguments: times it and calls its handler. EXEC runs its queued commands with it. */
void resp_session_run(struct resp_session *session, const struct resp_command *command,
                      const struct resp_request *request);

/* ---- transactions (resp_transactions.c) ---------------------------------------- */

/* True when COMMAND is queued inside MULTI (all but EXEC, DISCARD, MULTI, WATCH, QUIT and
 * RESET, which run at once, as in Redis). */
bool resp_transaction_queues(const struct resp_command *command);

/* Queues REQUEST (copying its arguments) and replies +QUEUED; refuses it (marking the
 * transaction failed) when the queue would exceed max-request bytes. */
void resp_transaction_queue(struct resp_session *session, const struct resp_command *command,
                            const struct resp_request *request);

/* A command was refused while SESSION is inside MULTI: EXEC will answer EXECABORT. */
void resp_transaction_refused(struct resp_session *session);

/* Makes SESSION's worker the only one running commands (resp_environment.exclusive, as
 * EXEC does), unless there is no such callback or the session runs EXEC's queue, which
 * already is. Returns whether it did: then resp_exclusive_end() must follow, before the
 * command returns. (LMOVE; a change that keeps losing its compare-and-swap.) */
bool resp_exclusive_begin(struct resp_session *session);
void resp_exclusive_end(struct resp_session *session);

/* Ends SESSION's transaction and forgets its watched keys, freeing both. */
void resp_transaction_reset(struct resp_session *session);

/* ---- replies (resp_reply.c) --------------------------------------------------- */

void reply_simple(struct resp_session *session, const char *text);       /* +text */
void reply_ok(struct resp_session *session);                             /* +OK */
void reply_error(struct resp_session *session, const char *text);        /* -text */
void reply_errorf(struct resp_session *session, const char *format, ...) /* -text */
    __attribute__((format(printf, 2, 3)));
void reply_integer(struct resp_session *session, int64_t value);
void reply_bulk(struct resp_session *session, const void *data, size_t length);
void reply_bulk_text(struct resp_session *session, const char *text);
void reply_bulk_integer(struct resp_session *session, int64_t value);
void reply_null(struct resp_session *session); /* $-1, or _ in RESP3 */
void reply_array(struct resp_session *session, size_t count);
void reply_null_array(struct resp_session *session);        /* *-1, or _ in RESP3 */
void reply_map(struct resp_session *session, size_t pairs); /* %n, or *2n in RESP2 */
void reply_set(struct resp_session *session, size_t count); /* ~n, or *n in RESP2 */
void reply_verbatim(struct resp_session *session, const void *text, size_t length);
/* Sends an item's value as a bulk string and releases the item reference. Large
 * values are queued by reference and sent straight from the store. */
void reply_item(struct resp_session *session, struct item *item);
/* The error reply for a failed store operation. */
void reply_store_error(struct resp_session *session, enum store_status status);
/* :1 for STORE_OK, :0 for STORE_CONDITION_FAILED, else the error (SETNX, RENAMENX...). */
void reply_condition(struct resp_session *session, enum store_status status);
/* "ERR wrong number of arguments for 'NAME' command". */
void reply_wrong_arity(struct resp_session *session, const char *name);
/* "ERR syntax error". */
void reply_syntax_error(struct resp_session *session);
/* "ERR unknown subcommand 'x'. Try NAME HELP." (the subcommand is argument 1). */
void reply_unknown_subcommand(struct resp_session *session, const struct resp_request *request,
                              const char *name);
/* "ERR wrong number of arguments for 'NAME|subcommand' command" (NAME in lower case). */
void reply_subcommand_arity(struct resp_session *session, const struct resp_request *request,
                            const char *name);
/* Replies with HELP lines as an array of simple strings. */
void reply_help(struct resp_session *session, const char *const *lines, size_t count);

/* ---- arguments ---------------------------------------------------------------- */

/* True when argument INDEX equals WORD, ignoring ASCII case. */
bool argument_is(const struct resp_request *request, size_t index, const char *word);

/* Parses argument INDEX as a signed 64-bit integer. On failure replies "ERR value is
 * not an integer or out of range" and returns false. */
bool argument_int64(struct resp_session *session, const struct resp_request *request, size_t index,
                    int64_t *value);

/* Copies argument INDEX into OUTPUT as a NUL-terminated string (truncated to fit). */
void argument_text(const struct resp_request *request, size_t index, char *output,
                   size_t output_size);

/* ---- the command table (resp_commands.def) ------------------------------------ */

typedef void (*resp_command_fn)(struct resp_session *session, const struct resp_request *request);

struct resp_command {
    const char *name; /* lower case */
    resp_command_fn handler;
    int arity;         /* n: exactly n arguments with the name; -n: at least n */
    const char *flags; /* space separated, as COMMAND INFO reports them */
    int first_key;
    int last_key;
    int key_step;
    const char *group;
    const char *since;
    const char *summary;
};

#define COMMAND(name, handler, arity, flags, first, last, step, group, since, summary)             \
    void handler(struct resp_session *session, const struct resp_request *request);
#include "proto/resp/resp_commands.def"
#undef COMMAND

/* Looks a command up by name, ignoring case. Returns NULL if unknown. */
const struct resp_command *resp_command_find(const unsigned char *name, size_t length);

/* Looks a command ("get") or a subcommand ("config|get") up by name, ignoring case.
 * Returns NULL if unknown. */
const struct resp_command *resp_command_lookup(const unsigned char *name, size_t length);

/* The subcommands of COMMAND (resp_subcommands.def), named "parent|subcommand", one after
 * the other: sets *COUNT (0 for a command without subcommands, or a subcommand). */
const struct resp_command *resp_subcommands_of(const struct resp_command *command, size_t *count);

/* COMMAND's subcommand NAME (LENGTH bytes, without the parent, any case), or NULL. */
const struct resp_command *resp_subcommand_find(const struct resp_command *command,
                                                const unsigned char *name, size_t length);

/* The whole table and its size. */
const struct resp_command *resp_command_table(size_t *count);

/* Writes COMMAND's ACL categories, space-separated without '@' ("read string fast"), into
 * TEXT (SIZE bytes): COMMAND INFO and ACL CAT use them. */
void resp_command_categories(const struct resp_command *command, char *text, size_t size);

/* ---- authentication (resp_acl.c) ---------------------------------------------- */

/* Authenticates SESSION as USER (NULL: "default") with PASSWORD. On success returns true
 * with nothing replied; on failure replies the error (WRONGPASS, or the throttling
 * error) and returns false, the session's identity unchanged. May take about 0.2 s
 * (the first check of a password: Argon2id on this worker thread). */
bool resp_authenticate(struct resp_session *session, const unsigned char *user, size_t user_length,
                       const unsigned char *password, size_t password_length);

/* ---- values that may live on flash (resp_reads.c) ----------------------------- */

/* Reads the values of the COUNT keys from argument FIRST on (streams allowed), then
 * calls REPLY with them: at once when none is on flash, else when the last read ends
 * (the session is suspended meanwhile, and its arguments need not outlive this call:
 * ARGUMENTS, two numbers, are kept for REPLY). */
void resp_read_values(struct resp_session *session, const struct resp_request *request,
                      size_t first, size_t count, const int64_t *arguments, resp_reads_reply reply);

/* Replies with SLOT's value as a bulk string, nil when absent, or its error; takes the
 * value over. */
void reply_value(struct resp_session *session, struct resp_read_slot *slot);

/* GETRANGE's reply: bytes START to END (inclusive, negative from the end) of SLOT's
 * value, "" when absent. */
void reply_value_range(struct resp_session *session, struct resp_read_slot *slot, int64_t start,
                       int64_t end);

enum resp_prefetch {
    PREFETCH_READY,   /* the key is in DRAM (or absent): run the command */
    PREFETCH_STARTED, /* it is being read: return; the command runs again later */
    PREFETCH_FAILED,  /* the read failed: an error was replied */
};

/* Brings the key in argument INDEX back to DRAM (with a hold until the command ends,
 * for the first key a command brings back) before a command that changes or hands on
 * its value. Without ANY_TYPE (string commands) a key holding another type fails with
 * WRONGTYPE. A command may call it for several keys; after a read it runs again from
 * the start, and then every call answers PREFETCH_READY at once. */
enum resp_prefetch resp_prefetch_key(struct resp_session *session,
                                     const struct resp_request *request, size_t index,
                                     bool any_type);

/* ---- clients and MONITOR (resp_clients.c) ------------------------------------ */

/* CLIENT KILL, in its old (addr) and filter forms. */
void resp_client_kill(struct resp_session *session, const struct resp_request *request);

/* CLIENT NO-EVICT and NO-TOUCH on|off: sets FLAG. */
void resp_client_flag(struct resp_session *session, const struct resp_request *request,
                      _Atomic bool *flag);

/* Shows REQUEST, which SESSION has just run, to every MONITOR (call it only when
 * server->monitor_count is not 0, and not for the commands Redis hides). Any worker;
 * takes monitors_lock. */
void resp_monitor_feed(struct resp_session *session, const struct resp_request *request);

/* Ends SESSION's MONITOR, if on. On its worker; takes monitors_lock. */
void resp_monitor_stop(struct resp_session *session);

/* True when a user named NAME exists (resp_acl.c). */
bool resp_user_exists(struct resp_session *session, const unsigned char *name, size_t length);

struct byte_buffer;

/* ---- commandstats, errorstats, SLOWLOG and LATENCY (resp_stats.c) --------------- */

/* Creates and frees a server's slow log and latency events. NULL if out of memory. */
struct resp_monitor *resp_monitor_create(void);
void resp_monitor_destroy(struct resp_monitor *monitor);

/* Gives every command (and the subcommands counted apart) its commandstats slot. Once,
 * from any thread; resp_server_create() calls it. */
void resp_stats_init(void);

/* REQUEST's commandstats slot: COMMAND's, or for a command with subcommands (CLIENT,
 * CONFIG, ...) the subcommand's ("client|list"); -1 for an unknown subcommand, which
 * Redis counts nowhere. */
int resp_stats_slot(const struct resp_command *command, const struct resp_request *request);

/* Counts a command of SLOT refused before it ran (arity, rights, loading); -1: none. */
void resp_stats_rejected(int slot);

/* Counts a failure of SLOT replied after its command had ended (a flash read's error). */
void resp_stats_failed(int slot);

/* Counts the error reply TEXT (without its '-') in errorstats under its first word. */
void resp_stats_error(const char *text);

/* The command in progress (session->stats_slot, not -1) has ended, its arguments still
 * in the parser: counts its call and time (session->stats_ns), or its refusal, and a
 * failure when it replied an error; logs it in the slow log and the latency events when
 * slower than their thresholds (those take locks: sessions_lock, then the monitor's).
 * Sets stats_slot to -1. On the session's worker. */
void resp_stats_command_end(struct resp_session *session, const struct resp_request *request);

/* Starts commandstats and errorstats again from zero (CONFIG RESETSTAT). */
void resp_stats_reset(void);

/* Append INFO's CPU, Errorstats and Commandstats sections (after a blank line when TEXT
 * holds a section already). */
void resp_info_cpu(struct byte_buffer *text);

/* CLIENT REPLY: resp_reply_discard_begin() sends SESSION's replies from here to the end
 * of its command to nowhere (no-op when they already go there); resp_reply_discard_end()
 * drops what was written and sends replies to the connection again (no-op when they
 * do). On the session's worker. */
void resp_reply_discard_begin(struct resp_session *session);
void resp_reply_discard_end(struct resp_session *session);

/* Sets up what INFO needs of SERVER (its replication id). */
void resp_info_init(struct resp_server *server);
void resp_info_errorstats(struct byte_buffer *text);
void resp_info_commandstats(struct byte_buffer *text);

/* ---- blocking commands (resp_blocking.c) ----------------------------------------- */

/* Sets up and tears down SERVER's line of blocked sessions (destroy stops its timer
 * thread; every session has closed by then). */
void resp_blocking_init(struct resp_server *server);
void resp_blocking_destroy(struct resp_server *server);

/* Parses argument INDEX as a blocking command's timeout: seconds (a float: BLPOP), or
 * with MILLISECONDS an integer count of them (XREAD BLOCK); 0 is no limit. Returns
 * false after replying Redis's error (not a number, negative). */
bool resp_block_timeout(struct resp_session *session, const struct resp_request *request,
                        size_t index, bool milliseconds, int64_t *timeout_ms);

/* Blocks SESSION's command, which found nothing to serve and returns right after this:
 * it runs again, with a copy of REQUEST (the command's arguments, or a rewrite of them:
 * XREAD with '$' made the last id), each time one of the KEY_COUNT keys from argument
 * FIRST_KEY is written, and may block again in its old place in line; once TIMEOUT_MS
 * has passed (0: never) it replies a null array instead. TAKES: it takes what it
 * serves (a pop), so a write wakes only the first such command in line. Inside EXEC it
 * replies TIMEOUT_REPLY at once, as Redis does. On the session's worker. */
void resp_block(struct resp_session *session, const struct resp_request *request, size_t first_key,
                size_t key_count, int64_t timeout_ms, enum resp_block_timeout timeout_reply,
                bool takes);

/* What LMPOP, BLMPOP, ZMPOP and BZMPOP ask: KEY_COUNT keys from argument FIRST_KEY, the
 * end to pop from (FIRST_END: LEFT or MIN) and how many (COUNT, 1 without COUNT). */
struct resp_multi_pop {
    size_t first_key;
    size_t key_count;
    bool first_end;
    int64_t count;
};

/* Parses numkeys key [key ...] FIRST_WORD|OTHER_WORD [COUNT count] from argument
 * NUMKEYS_INDEX on into *POP, with Redis 7.0's errors. Returns false after replying one. */
bool resp_parse_multi_pop(struct resp_session *session, const struct resp_request *request,
                          size_t numkeys_index, const char *first_word, const char *other_word,
                          struct resp_multi_pop *pop);

/* The request a blocked command runs again with: true and *REQUEST (valid until the
 * command ends) when SESSION's command has blocked, false otherwise. */
bool resp_block_rerun(const struct resp_session *session, struct resp_request *request);

/* Whether SESSION's command is running again after it blocked. Such a run skips a key
 * that now holds another type, as if it were empty, and waits on, where a first run
 * answers WRONGTYPE: Redis serves a blocked client only from a key of the type it waits
 * for (BLPOP on a key that became a string meanwhile keeps waiting). */
bool resp_block_waited(const struct resp_session *session);

/* Wakes the commands blocked on KEY (LENGTH bytes), if any: a typed write stored a value
 * there. Any worker; takes blocking_lock only when a session is blocked. */
void resp_blocking_signal(struct resp_server *server, const unsigned char *key, size_t length);

/* Wakes every blocked command to look again (FLUSHALL, FLUSHDB: every key went). */
void resp_blocking_signal_all(struct resp_server *server);

/* From resp_session_woken(): if SESSION's blocked command was signaled, timed out or
 * unblocked, runs it again or replies its timeout (and lets the session go on). */
void resp_blocking_woken(struct resp_session *session);

/* The command has ended (resp_session_command_done()): passes its turn on if it was
 * served after a signal, and forgets its blocking state. */
void resp_blocking_done(struct resp_session *session);

/* SESSION's connection is closing: takes it out of line (before close() returns). */
void resp_blocking_close(struct resp_session *session);

/* CLIENT UNBLOCK id [TIMEOUT|ERROR]. */
void resp_client_unblock(struct resp_session *session, const struct resp_request *request);

/* How many sessions are blocked now (INFO's blocked_clients). */
size_t resp_blocked_clients(struct resp_server *server);

/* ---- scripting (resp_scripting.c) ----------------------------------------------- */

struct resp_scripting;

/* Creates a server's Lua state and script cache (NULL if out of memory), and frees it
 * (no script runs then). */
struct resp_scripting *resp_scripting_create(void);
void resp_scripting_destroy(struct resp_scripting *scripting);

/* ---- typed values (resp_values.c) ------------------------------------------------ */

/* Brings the key in argument KEY_INDEX back to DRAM before a typed command reads or
 * changes it (resp_prefetch_key(), any type). Returns true when the command can go on;
 * false when a read started (the command runs again once it ends) or failed (replied). */
bool resp_value_in_dram(struct resp_session *session, const struct resp_request *request,
                        size_t key_index);

/* Reads the value of TYPE at argument KEY_INDEX: *ITEM is the item (the caller
 * releases it) or NULL when the key is absent. Returns false after replying the error
 * (WRONGTYPE for another type, no memory, an I/O error), *ITEM NULL. */
bool resp_value_read(struct resp_session *session, const struct resp_request *request,
                     size_t key_index, enum store_type type, struct item **item);

enum resp_value_outcome {
    RESP_VALUE_KEEP = 0, /* store nothing (a read, or a change that changed nothing) */
    RESP_VALUE_STORE,    /* store ENCODED in the key's place, keeping its expiry */
    RESP_VALUE_DELETE,   /* delete the key (its last element went, as in Redis) */
};

/* One attempt at a change: the current value and what the edit makes of it. */
struct resp_value_change {
    const unsigned char *value; /* the current bytes (NULL when the key is absent), valid
                                   until discard() */
    uint64_t length;
    bool exists;
    enum resp_value_outcome outcome; /* set by edit() */
    struct byte_buffer encoded;      /* the new value, with RESP_VALUE_STORE (freed after) */
    bool with_room;                  /* set by edit(): store a large ENCODED with room to
                                        grow (store_replace_if_unchanged_with_room()) */
    void *context;                   /* the caller's, as given to resp_value_update() */
    int64_t integer;                 /* free for edit() to hand reply() */
};

/* A type's change: EDIT decodes CHANGE->value, applies the command and sets the outcome
 * (and ENCODED); it returns false after replying an error (nothing is stored). It runs
 * once per attempt, so it must start from CHANGE alone (resetting what it keeps in the
 * context). REPLY replies once the outcome is stored. DISCARD (optional) frees what
 * edit() kept, after every attempt, stored or not. */
struct resp_value_ops {
    enum store_type type;
    bool (*edit)(struct resp_session *session, const struct resp_request *request,
                 struct resp_value_change *change);
    void (*reply)(struct resp_session *session, const struct resp_value_change *change);
    void (*discard)(struct resp_value_change *change);
};

/* The length-prefixed strings of typed values' first encodings (hashes and sets,
 * version 1, still read): a u32 length (little-endian), then the bytes.
 * resp_value_take_string() reads one at *AT (before END) into *DATA (a view) and *LENGTH
 * and moves *AT past it; false when it runs past END. resp_value_put_string() appends
 * one to OUTPUT. */
bool resp_value_take_string(const unsigned char **at, const unsigned char *end,
                            const unsigned char **data, uint32_t *length);
void resp_value_put_string(struct byte_buffer *output, const unsigned char *data, uint32_t length);

/* The compact strings of the newer encodings (hashes and sets, version 2): a varint
 * length (base/varint.h: one byte below 128), then the bytes. The take and put
 * functions work as resp_value_take_string() and resp_value_put_string(); a length past
 * 32 bits is damage. resp_value_take_count() and resp_value_put_count() read and write a
 * bare varint of up to 32 bits (an element count) the same way. */
bool resp_value_take_compact_string(const unsigned char **at, const unsigned char *end,
                                    const unsigned char **data, uint32_t *length);
void resp_value_put_compact_string(struct byte_buffer *output, const unsigned char *data,
                                   uint32_t length);
bool resp_value_take_count(const unsigned char **at, const unsigned char *end, uint32_t *count);
void resp_value_put_count(struct byte_buffer *output, uint32_t count);

/* Replaces whatever KEY (KEY_LENGTH bytes) holds, of any type and with its expiry
 * dropped, by the LENGTH bytes at VALUE as a value of TYPE, or deletes KEY when LENGTH
 * is 0: the STORE forms (SINTERSTORE, ZUNIONSTORE, SORT ... STORE, BITOP). Call with
 * the session's exclusivity held (resp_exclusive_begin()), so no command sees the key
 * between the delete and the write; the write is still a compare-and-swap against an
 * absent key, retried if eviction or expiry came between. Wakes the commands blocked on
 * KEY when it changed. Returns STORE_OK or the store's error. */
enum store_status resp_value_replace(struct resp_session *session, const unsigned char *key,
                                     size_t key_length, const void *value, uint64_t length,
                                     enum store_type type);

/* Redis 7.0's name for the encoding it would give a value of TYPE (not a string) whose
 * stored bytes are VALUE (LENGTH bytes), under the thresholds in OPTIONS
 * (hash-max-listpack-entries ...): OBJECT ENCODING. */
const char *resp_value_encoding(const struct options *options, enum store_type type,
                                const unsigned char *value, uint64_t length);

/* Changes the value at argument KEY_INDEX with OPS (after bringing it to DRAM): reads
 * it, edits it and stores the outcome only if the key still holds what was read,
 * retrying otherwise (after 8 lost races with the other workers paused, so it never
 * fails for contention); replies exactly once. */
void resp_value_update(struct resp_session *session, const struct resp_request *request,
                       size_t key_index, const struct resp_value_ops *ops, void *context);

/* ---- hashes (resp_hashes.c) ------------------------------------------------------ */

/* Redis's name for the encoding it would give the hash whose stored bytes are VALUE
 * (LENGTH bytes): "listpack" up to MAX_ENTRIES fields of at most MAX_VALUE bytes
 * (fields and values), else "hashtable". */
const char *resp_hash_encoding(const unsigned char *value, uint64_t length, int64_t max_entries,
                               int64_t max_value);

/* Finds FIELD (FIELD_LENGTH bytes) in the hash whose stored bytes are VALUE (LENGTH
 * bytes): returns 1 with *DATA (a view into VALUE) and *DATA_LENGTH set to its value, 0
 * when the hash has no such field, -1 when the bytes are damaged or out of memory. For
 * SORT's BY and GET patterns (key->field). */
int resp_hash_field(const unsigned char *value, uint64_t length, const unsigned char *field,
                    size_t field_length, const unsigned char **data, uint32_t *data_length);

/* ---- sets (resp_sets.c) --------------------------------------------------------- */

/* Redis 7.0's name for the encoding it would give the set whose stored bytes are VALUE
 * (LENGTH bytes): "intset" up to MAX_INTSET_ENTRIES members that are all integers, else
 * "hashtable". */
const char *resp_set_encoding(const unsigned char *value, uint64_t length,
                              int64_t max_intset_entries);

/* Calls VISIT(CONTEXT, member, member_length) for each member of the set whose stored
 * bytes are VALUE (LENGTH bytes), in the set's order, with views into VALUE, until VISIT
 * returns false. Returns 1 when every member was visited, 0 when the bytes are damaged
 * (nothing visited), -1 when out of memory or VISIT stopped. For the sorted-set commands
 * that read plain sets (ZUNION, ZINTER, ZDIFF...). */
int resp_set_each_member(const unsigned char *value, uint64_t length,
                         bool (*visit)(void *context, const unsigned char *member,
                                       uint32_t member_length),
                         void *context);

/* ---- sorted sets (resp_sorted_sets.c) -------------------------------------------- */

/* Redis's name for the encoding it would give the sorted set whose stored bytes are
 * VALUE (LENGTH bytes): "listpack" up to MAX_ENTRIES members of at most MAX_VALUE bytes,
 * else "skiplist". */
const char *resp_zset_encoding(const unsigned char *value, uint64_t length, int64_t max_entries,
                               int64_t max_value);

/* As resp_set_each_member(), for the sorted set whose stored bytes are VALUE: its
 * members in the set's order (by score, then bytes). For SORT. */
int resp_zset_each_member(const unsigned char *value, uint64_t length,
                          bool (*visit)(void *context, const unsigned char *member,
                                        uint32_t member_length),
                          void *context);

/* The name TYPE answers for TYPE ("string", "hash", "list"). */
const char *resp_type_name(enum store_type type);

/* ---- INFO and CLIENT LIST (resp_info.c) --------------------------------------- */

/* Appends the INFO text for the sections named in REQUEST from argument FIRST on (all
 * sections when none is named). */
void resp_info_text(struct resp_session *session, const struct resp_request *request, size_t first,
                    struct byte_buffer *text);

/* Appends the CLIENT LIST line of SESSION (the caller holds sessions_lock). */
void resp_client_line(const struct resp_session *session, struct byte_buffer *text);

#endif
