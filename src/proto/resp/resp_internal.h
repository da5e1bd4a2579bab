/* Shared by the files of the RESP front end: the session, reply writers, the command
 * table and argument helpers. Not used outside src/proto/resp/. */
#ifndef STRATA_PROTO_RESP_INTERNAL_H
#define STRATA_PROTO_RESP_INTERNAL_H

#include "access/access.h"
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
    bool allocated;               /* allocated with its slots; else the session's own */
};

/* The protocol's process-wide state. */
struct resp_server {
    struct resp_environment environment;
    pthread_mutex_t sessions_lock; /* guards the list and every session's name */
    struct check_owner sessions_owner;
    struct resp_session *sessions;
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

struct resp_session {
    struct resp_server *server;
    struct output_queue *output;
    struct resp_parser parser;
    _Atomic int protocol; /* 2 or 3; read by CLIENT LIST on other threads */
    bool closing;         /* QUIT or a protocol error: send what is queued and close */
    uint64_t id;
    int fd;
    char peer[64];
    char local[64];
    char *name; /* CLIENT SETNAME; under server->sessions_lock */
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
    void *resume_handle;
    /* A one-key read (GET) uses these, so the common case allocates nothing. */
    struct resp_reads single_read;
    struct resp_read_slot single_slot;
    /* A command that brings its key back from flash first (resp_prefetch_key()) and
     * runs again when it is in DRAM: */
    bool rerun_wanted; /* it asked to run again: keep its arguments */
    bool rerunning;    /* this run follows the prefetch */
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
};

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
void reply_map(struct resp_session *session, size_t pairs); /* %n, or *2n in RESP2 */
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

/* Brings the key in argument INDEX back to DRAM (with a hold) before a command that
 * changes or hands on its value. */
enum resp_prefetch resp_prefetch_key(struct resp_session *session,
                                     const struct resp_request *request, size_t index);

/* ---- INFO and CLIENT LIST (resp_info.c) --------------------------------------- */

struct byte_buffer;

/* Appends the INFO text for the sections named in REQUEST from argument FIRST on (all
 * sections when none is named). */
void resp_info_text(struct resp_session *session, const struct resp_request *request, size_t first,
                    struct byte_buffer *text);

/* Appends the CLIENT LIST line of SESSION (the caller holds sessions_lock). */
void resp_client_line(const struct resp_session *session, struct byte_buffer *text);

#endif
