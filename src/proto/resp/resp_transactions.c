/* Transactions: MULTI, EXEC, DISCARD, WATCH and UNWATCH, with Redis's semantics
 * (docs/redis-compatibility.md, "Transactions").
 *
 * Between MULTI and EXEC a session queues its commands, each checked as it arrives
 * (known, arity, rights) and copied. EXEC first makes its worker the only one running
 * any connection's commands (resp_environment.exclusive: every other worker finishes its
 * batch of events and waits), then checks the watched keys and runs the queue. So no
 * other client's command, on any protocol, runs between the check and the last queued
 * command. Inside EXEC the worker's io_ring is set aside: a value on flash is read
 * before its command goes on (store_read() without a ring), so every queued command
 * ends before the next starts and nothing waits for an event loop that is not running.
 *
 * WATCH notes each key's version (store_key_version()) and whether it exists; EXEC fails
 * (a null array) when a version moved or a key that existed is gone (it expired). */
#include "base/io_ring.h"
#include "base/options.h"
#include "net/net.h"
#include "proto/resp/resp_internal.h"

#include <stdlib.h>
#include <string.h>

/* A connection watches at most this many keys at once (Redis sets no limit; each costs
 * a comparison on every WATCH of another key). */
#define WATCH_MAX_KEYS 10000

/* The bound on a transaction's queued arguments and on its watched keys' bytes: the
 * largest request a connection may send (max-request). */
static uint64_t byte_limit(struct resp_session *session) {
    return (uint64_t)options_number(session->server->environment.options, NET_OPTION(max_request));
}

void resp_queued_free(struct resp_queued_command *queued) {
    for (size_t i = 0; i < queued->argc; i++)
        free(queued->argv[i]);
    free(queued->argv);
    free(queued->lengths);
}

static void forget_watched(struct resp_transaction *transaction) {
    for (size_t i = 0; i < transaction->watch_count; i++)
        free(transaction->watched[i].key);
    free(transaction->watched);
    transaction->watched = NULL;
    transaction->watch_count = 0;
    transaction->watch_capacity = 0;
    transaction->watched_bytes = 0;
}

/* Ends the queue (not the watched keys). */
static void forget_queue(struct resp_session *session) {
    struct resp_transaction *transaction = &session->transaction;
    for (size_t i = 0; i < transaction->count; i++)
        resp_queued_free(&transaction->commands[i]);
    free(transaction->commands);
    transaction->commands = NULL;
    transaction->count = 0;
    transaction->capacity = 0;
    transaction->queued_bytes = 0;
    transaction->active = false;
    transaction->failed = false;
    atomic_store_explicit(&session->multi_count, -1, memory_order_relaxed);
}

void resp_transaction_reset(struct resp_session *session) {
    forget_queue(session);
    forget_watched(&session->transaction);
}

bool resp_transaction_queues(const struct resp_command *command) {
    return command->handler != command_exec && command->handler != command_discard &&
           command->handler != command_multi && command->handler != command_watch &&
           command->handler != command_quit && command->handler != command_reset;
}

void resp_transaction_refused(struct resp_session *session) {
    if (session->transaction.active) session->transaction.failed = true;
}

bool resp_queued_copy(struct resp_queued_command *queued, const struct resp_request *request) {
    queued->argc = 0;
    queued->argv = calloc(request->argc, sizeof(*queued->argv));
    queued->lengths = calloc(request->argc, sizeof(*queued->lengths));
    if (queued->argv == NULL || queued->lengths == NULL) {
        resp_queued_free(queued);
        return false;
    }
    for (size_t i = 0; i < request->argc; i++) {
        size_t length = (size_t)request->lengths[i];
        queued->argv[i] = malloc(length + 1);
        if (queued->argv[i] == NULL) {
            resp_queued_free(queued);
            return false;
        }
        if (length > 0) memcpy(queued->argv[i], request->argv[i], length);
        queued->argv[i][length] = '\0';
        queued->lengths[i] = length;
        queued->argc++;
    }
    return true;
}

void resp_transaction_queue(struct resp_session *session, const struct resp_command *command,
                            const struct resp_request *request) {
    struct resp_transaction *transaction = &session->transaction;
    /* The arguments and what holding them costs: the entry, and per argument its pointer,
     * its length and an allocation's overhead. */
    uint64_t bytes = sizeof(struct resp_queued_command);
    for (size_t i = 0; i < request->argc; i++)
        bytes += request->lengths[i] + sizeof(unsigned char *) + sizeof(uint64_t) + 16;
    uint64_t limit = byte_limit(session);
    if (transaction->queued_bytes + bytes > limit) {
        transaction->failed = true;
        reply_errorf(session,
                     "ERR the transaction's queued commands exceed max-request (%llu bytes)",
                     (unsigned long long)limit);
        return;
    }
    if (transaction->count == transaction->capacity) {
        size_t capacity = transaction->capacity ? transaction->capacity * 2 : 8;
        struct resp_queued_command *grown =
            realloc(transaction->commands, capacity * sizeof(*grown));
        if (grown == NULL) {
            transaction->failed = true;
            reply_error(session, "OOM out of memory: could not queue the command");
            return;
        }
        transaction->commands = grown;
        transaction->capacity = capacity;
    }
    struct resp_queued_command *queued = &transaction->commands[transaction->count];
    queued->command = command;
    if (!resp_queued_copy(queued, request)) {
        transaction->failed = true;
        reply_error(session, "OOM out of memory: could not queue the command");
        return;
    }
    transaction->count++;
    transaction->queued_bytes += bytes;
    atomic_store_explicit(&session->multi_count, (int64_t)transaction->count, memory_order_relaxed);
    reply_simple(session, "QUEUED");
}

void command_multi(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    if (session->transaction.active) {
        reply_error(session, "ERR MULTI calls can not be nested");
        return;
    }
    session->transaction.active = true;
    atomic_store_explicit(&session->multi_count, 0, memory_order_relaxed);
    reply_ok(session);
}

void command_discard(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    if (!session->transaction.active) {
        reply_error(session, "ERR DISCARD without MULTI");
        return;
    }
    resp_transaction_reset(session);
    reply_ok(session);
}

void command_watch(struct resp_session *session, const struct resp_request *request) {
    struct resp_transaction *transaction = &session->transaction;
    if (transaction->active) {
        reply_error(session, "ERR WATCH inside MULTI is not allowed");
        return;
    }
    uint64_t limit = byte_limit(session);
    for (size_t i = 1; i < request->argc; i++) {
        const unsigned char *key = request->argv[i];
        size_t length = (size_t)request->lengths[i];
        bool known = false;
        for (size_t j = 0; j < transaction->watch_count && !known; j++) {
            const struct resp_watched_key *watched = &transaction->watched[j];
            known = watched->length == length && memcmp(watched->key, key, length) == 0;
        }
        if (known) continue; /* as Redis: the first WATCH of a key counts */
        if (transaction->watch_count >= WATCH_MAX_KEYS ||
            transaction->watched_bytes + length + sizeof(struct resp_watched_key) + 16 > limit) {
            reply_errorf(session, "ERR a connection watches at most %d keys and max-request bytes",
                         WATCH_MAX_KEYS);
            return;
        }
        if (transaction->watch_count == transaction->watch_capacity) {
            size_t capacity = transaction->watch_capacity ? transaction->watch_capacity * 2 : 4;
            struct resp_watched_key *grown =
                realloc(transaction->watched, capacity * sizeof(*grown));
            if (grown == NULL) {
                reply_error(session, "OOM out of memory: could not watch the key");
                return;
            }
            transaction->watched = grown;
            transaction->watch_capacity = capacity;
        }
        struct resp_watched_key *watched = &transaction->watched[transaction->watch_count];
        watched->key = malloc(length + 1);
        if (watched->key == NULL) {
            reply_error(session, "OOM out of memory: could not watch the key");
            return;
        }
        if (length > 0) memcpy(watched->key, key, length);
        watched->key[length] = '\0';
        watched->length = length;
        /* The version first: a change between the two reads then fails EXEC (safe),
         * where the other order could miss it. */
        if (!store_key_version(store_of(session), key, length, &watched->version)) {
            free(watched->key);
            reply_error(session, "OOM out of memory: could not watch the key");
            return;
        }
        watched->existed = store_exists(store_of(session), key, length);
        transaction->watch_count++;
        transaction->watched_bytes += length + sizeof(struct resp_watched_key) + 16;
    }
    reply_ok(session);
}

void command_unwatch(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    forget_watched(&session->transaction);
    reply_ok(session);
}

bool resp_exclusive_begin(struct resp_session *session) {
    const struct resp_environment *environment = &session->server->environment;
    if (environment->exclusive == NULL || session->transaction.running) return false;
    environment->exclusive(session->resume_handle, true);
    return true;
}

void resp_exclusive_end(struct resp_session *session) {
    session->server->environment.exclusive(session->resume_handle, false);
}

/* True when no watched key has changed since WATCH: same version, and still there if it
 * was there then (a key that expired meanwhile changed, even if nobody touched it). */
static bool watched_unchanged(struct resp_session *session) {
    const struct resp_transaction *transaction = &session->transaction;
    struct store *store = store_of(session);
    for (size_t i = 0; i < transaction->watch_count; i++) {
        const struct resp_watched_key *watched = &transaction->watched[i];
        uint32_t version;
        if (!store_key_version(store, watched->key, watched->length, &version) ||
            version != watched->version) {
            return false;
        }
        if (watched->existed && !store_exists(store, watched->key, watched->length)) return false;
    }
    return true;
}

/* Runs one queued command, its rights checked again (they may have changed since it was
 * queued: the error is then its reply), and ends the hold a prefetch may have taken. It
 * is counted in commandstats (and the slow log) as its own call, as Redis counts it;
 * EXEC's own count, under way, is set aside meanwhile. */
static void run_queued(struct resp_session *session, const struct resp_queued_command *queued) {
    struct resp_request request = {queued->argc, (const unsigned char **)queued->argv,
                                   queued->lengths};
    if (!resp_session_allowed(session, queued->command, &request)) {
        resp_stats_rejected(resp_stats_slot(queued->command, &request));
        return;
    }
    int exec_slot = session->stats_slot;
    uint32_t exec_errors = session->stats_errors;
    bool exec_rejected = session->stats_rejected;
    int64_t exec_ns = session->stats_ns;
    uint32_t errors_before = session->error_replies;
    resp_session_stats_begin(session, queued->command, &request);
    resp_session_run(session, queued->command, &request);
    if (session->stats_slot >= 0) resp_stats_command_end(session, &request);
    session->stats_slot = exec_slot;
    /* A queued command's error is its own failure, not EXEC's (as Redis counts it). */
    session->stats_errors = exec_errors + (session->error_replies - errors_before);
    session->stats_rejected = exec_rejected;
    session->stats_ns = exec_ns;
    /* No ring: nothing waited for flash, so nothing is left to resume. */
    STRATA_ASSERT(!session->suspended && !session->rerun_wanted);
    if (session->holding) {
        if (session->hold_index < queued->argc) {
            store_release_hold(store_of(session), queued->argv[session->hold_index],
                               (size_t)queued->lengths[session->hold_index]);
        }
        session->holding = false;
    }
}

void command_exec(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    struct resp_transaction *transaction = &session->transaction;
    if (!transaction->active) {
        reply_error(session, "ERR EXEC without MULTI");
        return;
    }
    if (transaction->failed) {
        reply_error(session, "EXECABORT Transaction discarded because of previous errors.");
        resp_transaction_reset(session);
        return;
    }
    transaction->active = false; /* the queued commands run, not queue again */
    const struct resp_environment *environment = &session->server->environment;
    if (environment->exclusive != NULL) environment->exclusive(session->resume_handle, true);
    if (!watched_unchanged(session)) {
        reply_null_array(session);
    } else {
        struct io_ring *ring = io_ring_current();
        io_ring_set_current(NULL);
        reply_array(session, transaction->count);
        transaction->running = true;
        for (size_t i = 0; i < transaction->count; i++)
            run_queued(session, &transaction->commands[i]);
        transaction->running = false;
        io_ring_set_current(ring);
    }
    if (environment->exclusive != NULL) environment->exclusive(session->resume_handle, false);
    resp_transaction_reset(session);
}
