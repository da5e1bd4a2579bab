/* Blocking commands: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, XREAD BLOCK, XREADGROUP BLOCK
 * wait here until a key they name is written or their timeout passes.
 *
 * A blocking command first runs like any other. When it finds nothing to serve it calls
 * resp_block() and returns: its session stops taking input (its later commands wait in
 * the socket, as in Redis) and joins the server's line of blocked sessions, in the order
 * they blocked. Every typed write that stores a value (resp_value_update(), the list
 * moves) calls resp_blocking_signal() for its key, which marks the sessions waiting on it
 * and wakes their connections; each runs its command again on its own worker
 * (resp_session_woken() -> resp_blocking_woken() -> resp_session_rerun()), which
 * serves it or blocks it again. A session stays in line while it looks again, so a push
 * during that look marks it once more instead of going unseen; it leaves the line when
 * its command ends. A command that blocks for the first time looks once more at once,
 * in line: a push that came between its first look and its joining the line signalled
 * nobody, and the second look sees it. A taker behind another taker on each of its keys
 * leaves that look to the one before it (which such a push woke, or which looks itself),
 * so that takers are served in the order they blocked.
 *
 * Readers (XREAD, XREADGROUP) are all woken by a write, since each may be served. Of the
 * commands that take what they serve (the pops and moves), only the first in line on a
 * key is woken; when it has been served it signals its keys again, so the next one in
 * line gets what is left: served in the order they blocked, as Redis does, with no
 * thundering herd on a busy queue.
 *
 * A write finds the sessions waiting on its key through the key index (a hash table of
 * the keys blocked sessions name, each with its waiters in line order), so its cost does
 * not grow with the number of sessions blocked on other keys. A session joins the line
 * (and its keys' waiters) only when it first blocks, with the newest place in line, so
 * appending keeps each key's waiters in line order.
 *
 * Timeouts are kept by one timer thread per server, started when a first command blocks
 * with one; it wakes a session whose deadline passed, and the session replies its null.
 *
 * Locks: server->blocking_lock guards the line and each session's waiting state below
 * (struct resp_block, "under blocking_lock"); it is taken alone, or after sessions_lock
 * (CLIENT UNBLOCK). A session's close() leaves the line under it, so a session in line
 * is open and may be woken. */
#include "base/clock.h"
#include "base/fault.h"
#include "base/metrics.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <xxhash.h>

static void blocking_lock(struct resp_server *server) {
    pthread_mutex_lock(&server->blocking_lock);
    check_acquired(&server->blocking_owner);
}

static void blocking_unlock(struct resp_server *server) {
    check_releasing(&server->blocking_owner);
    pthread_mutex_unlock(&server->blocking_lock);
}

void resp_blocking_init(struct resp_server *server) {
    pthread_mutex_init(&server->blocking_lock, NULL);
    /* A seed that clients cannot guess keeps them from piling their keys in one bucket. */
    if (getrandom(&server->blocked_key_seed, sizeof(server->blocked_key_seed), GRND_NONBLOCK) !=
        (ssize_t)sizeof(server->blocked_key_seed)) {
        server->blocked_key_seed = (uint64_t)clock_monotonic_ms() * 0x9e3779b97f4a7c15ULL;
    }
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&server->blocking_changed, &attributes);
    pthread_condattr_destroy(&attributes);
}

void resp_blocking_destroy(struct resp_server *server) {
    blocking_lock(server);
    bool started = server->blocking_timer_started;
    server->blocking_stopping = true;
    pthread_cond_broadcast(&server->blocking_changed);
    blocking_unlock(server);
    if (started) pthread_join(server->blocking_timer, NULL);
    pthread_cond_destroy(&server->blocking_changed);
    pthread_mutex_destroy(&server->blocking_lock);
    /* Every session has left the line by now (closed first), so every key has gone. */
    STRATA_ASSERT(server->blocked_key_count == 0);
    free(server->blocked_keys);
    server->blocked_keys = NULL;
}

/* Whether argument INDEX of REQUEST equals KEY. */
static bool key_is(const struct resp_queued_command *request, size_t index,
                   const unsigned char *key, size_t length) {
    return request->lengths[index] == length &&
           (length == 0 || memcmp(request->argv[index], key, length) == 0);
}

/* One key that blocked sessions wait on: its waiters in line order, and its own copy of
 * the key's bytes. Lives in the key index while it has a waiter. Under blocking_lock. */
struct blocked_key {
    struct blocked_key *next_in_bucket;
    uint64_t hash;
    struct resp_key_wait *first;
    struct resp_key_wait *last;
    size_t length;
    unsigned char bytes[];
};

#define BLOCKED_KEY_BUCKETS_MIN 64

static uint64_t blocked_key_hash(const struct resp_server *server, const unsigned char *key,
                                 size_t length) {
    return XXH3_64bits_withSeed(key, length, server->blocked_key_seed);
}

/* The index's entry for KEY (its HASH from blocked_key_hash()), or NULL. Called with
 * blocking_lock held. */
static struct blocked_key *find_blocked_key(const struct resp_server *server, uint64_t hash,
                                            const unsigned char *key, size_t length) {
    if (server->blocked_key_buckets == 0) return NULL;
    for (struct blocked_key *entry = server->blocked_keys[hash & (server->blocked_key_buckets - 1)];
         entry != NULL; entry = entry->next_in_bucket) {
        if (entry->hash == hash && entry->length == length &&
            (length == 0 || memcmp(entry->bytes, key, length) == 0))
            return entry;
    }
    return NULL;
}

/* Doubles the index's buckets (or makes the first ones) when it holds as many keys as
 * buckets; keeps the old table when allocation fails (chains grow longer, nothing is
 * lost). Called with blocking_lock held. */
static void grow_blocked_keys(struct resp_server *server) {
    if (server->blocked_key_count < server->blocked_key_buckets) return;
    size_t buckets = server->blocked_key_buckets == 0 ? BLOCKED_KEY_BUCKETS_MIN
                                                      : server->blocked_key_buckets * 2;
    struct blocked_key **table = calloc(buckets, sizeof(*table));
    if (table == NULL) return;
    for (size_t i = 0; i < server->blocked_key_buckets; i++) {
        struct blocked_key *entry = server->blocked_keys[i];
        while (entry != NULL) {
            struct blocked_key *next = entry->next_in_bucket;
            struct blocked_key **bucket = &table[entry->hash & (buckets - 1)];
            entry->next_in_bucket = *bucket;
            *bucket = entry;
            entry = next;
        }
    }
    free(server->blocked_keys);
    server->blocked_keys = table;
    server->blocked_key_buckets = buckets;
}

/* Takes WAIT off its key's waiters, and the key out of the index when it was the last.
 * Called with blocking_lock held. */
static void remove_wait(struct resp_server *server, struct resp_key_wait *wait) {
    struct blocked_key *entry = wait->key;
    if (entry == NULL) return;
    if (wait->previous != NULL) {
        wait->previous->next = wait->next;
    } else {
        entry->first = wait->next;
    }
    if (wait->next != NULL) {
        wait->next->previous = wait->previous;
    } else {
        entry->last = wait->previous;
    }
    wait->key = NULL;
    wait->previous = wait->next = NULL;
    if (entry->first != NULL) return;
    struct blocked_key **link =
        &server->blocked_keys[entry->hash & (server->blocked_key_buckets - 1)];
    while (*link != entry)
        link = &(*link)->next_in_bucket;
    *link = entry->next_in_bucket;
    server->blocked_key_count--;
    free(entry);
}

/* Adds SESSION's waits (block.waits, KEY_COUNT of them) to its keys' waiters, at the
 * end. Returns false, having added none, when a new key's entry cannot be allocated.
 * Called with blocking_lock held. */
static bool add_waits(struct resp_server *server, struct resp_session *session) {
    struct resp_block *block = &session->block;
    const struct resp_queued_command *request = &block->request;
    for (size_t i = 0; i < block->key_count; i++) {
        struct resp_key_wait *wait = &block->waits[i];
        *wait = (struct resp_key_wait){.session = session};
        const unsigned char *key = request->argv[block->first_key + i];
        size_t length = (size_t)request->lengths[block->first_key + i];
        bool named_before = false;
        for (size_t j = 0; j < i && !named_before; j++)
            named_before = key_is(request, block->first_key + j, key, length);
        if (named_before) continue;
        uint64_t hash = blocked_key_hash(server, key, length);
        struct blocked_key *entry = find_blocked_key(server, hash, key, length);
        if (entry == NULL) {
            grow_blocked_keys(server);
            entry = malloc(sizeof(*entry) + length);
            if (entry == NULL || server->blocked_key_buckets == 0) {
                free(entry);
                for (size_t j = 0; j < i; j++)
                    remove_wait(server, &block->waits[j]);
                return false;
            }
            *entry = (struct blocked_key){.hash = hash, .length = length};
            if (length > 0) memcpy(entry->bytes, key, length);
            struct blocked_key **bucket =
                &server->blocked_keys[hash & (server->blocked_key_buckets - 1)];
            entry->next_in_bucket = *bucket;
            *bucket = entry;
            server->blocked_key_count++;
        }
        wait->key = entry;
        wait->previous = entry->last;
        if (entry->last != NULL) {
            entry->last->next = wait;
        } else {
            entry->first = wait;
        }
        entry->last = wait;
    }
    return true;
}

/* Takes SESSION out of the line. Called with blocking_lock held, SESSION in line. */
static void leave_line(struct resp_server *server, struct resp_session *session) {
    STRATA_ASSERT(check_held(&server->blocking_owner) && session->block.in_line);
    struct resp_block *block = &session->block;
    if (block->previous != NULL) {
        block->previous->block.next = block->next;
    } else {
        server->blocked_first = block->next;
    }
    if (block->next != NULL) {
        block->next->block.previous = block->previous;
    } else {
        server->blocked_last = block->previous;
    }
    block->previous = block->next = NULL;
    for (size_t i = 0; i < block->key_count; i++)
        remove_wait(server, &block->waits[i]);
    block->in_line = false;
    atomic_store_explicit(&session->blocked, false, memory_order_relaxed);
    atomic_fetch_sub_explicit(&server->blocked_count, 1, memory_order_relaxed);
    metric_add(RESP_METRIC(resp_clients_blocked), -1);
}

/* Puts SESSION, blocking for the first time, at the end of the line and of its keys'
 * waiters. Returns false, having changed nothing, when the key index cannot grow. Called
 * with blocking_lock held. */
static bool join_line(struct resp_server *server, struct resp_session *session) {
    STRATA_ASSERT(check_held(&server->blocking_owner) && !session->block.in_line);
    struct resp_block *block = &session->block;
    STRATA_ASSERT(server->blocked_last == NULL ||
                  server->blocked_last->block.sequence < block->sequence);
    if (!add_waits(server, session)) return false;
    block->previous = server->blocked_last;
    block->next = NULL;
    if (server->blocked_last != NULL) {
        server->blocked_last->block.next = session;
    } else {
        server->blocked_first = session;
    }
    server->blocked_last = session;
    block->in_line = true;
    block->outcome = RESP_BLOCK_WAITING;
    atomic_store_explicit(&session->blocked, true, memory_order_relaxed);
    atomic_fetch_add_explicit(&server->blocked_count, 1, memory_order_seq_cst);
    metric_add(RESP_METRIC(resp_clients_blocked), 1);
    return true;
}

/* Whether SESSION (in line) is the first taker waiting on at least one of its keys: no
 * taker before it on that key is waiting or looking (one that timed out or was
 * unblocked does not count: it will not be served). Called with blocking_lock held. */
static bool first_taker_somewhere(const struct resp_session *session) {
    STRATA_ASSERT(check_held(&session->server->blocking_owner));
    const struct resp_block *block = &session->block;
    for (size_t i = 0; i < block->key_count; i++) {
        const struct resp_key_wait *own = &block->waits[i];
        if (own->key == NULL) continue; /* a key it names twice */
        bool earlier = false;
        for (const struct resp_key_wait *wait = own->key->first; wait != own && !earlier;
             wait = wait->next) {
            const struct resp_block *other = &wait->session->block;
            earlier = other->takes && (other->outcome == RESP_BLOCK_WAITING ||
                                       other->outcome == RESP_BLOCK_SIGNALED);
        }
        if (!earlier) return true;
    }
    return false;
}

/* Marks SESSION (in line, waiting) with OUTCOME and wakes its connection. Called with
 * blocking_lock held. */
static void wake_session(struct resp_session *session, enum resp_block_outcome outcome) {
    session->block.outcome = outcome;
    if (session->wake != NULL) session->wake(session->resume_handle);
}

/* The timer thread: wakes the sessions whose deadline has passed, and sleeps until the
 * next one (or until a session blocks with a deadline, or the server stops). */
static void *timer_main(void *argument) {
    struct resp_server *server = argument;
    blocking_lock(server);
    while (!server->blocking_stopping) {
        int64_t now = clock_monotonic_ms(), next = 0;
        for (struct resp_session *session = server->blocked_first; session != NULL;
             session = session->block.next) {
            struct resp_block *block = &session->block;
            if (block->outcome != RESP_BLOCK_WAITING || block->deadline_ms == 0) continue;
            if (block->deadline_ms <= now) {
                wake_session(session, RESP_BLOCK_TIMED_OUT);
            } else if (next == 0 || block->deadline_ms < next) {
                next = block->deadline_ms;
            }
        }
        check_releasing(&server->blocking_owner);
        if (next == 0) {
            pthread_cond_wait(&server->blocking_changed, &server->blocking_lock);
        } else {
            struct timespec until = {(time_t)(next / 1000), (long)(next % 1000) * 1000000L};
            pthread_cond_timedwait(&server->blocking_changed, &server->blocking_lock, &until);
        }
        check_acquired(&server->blocking_owner);
    }
    blocking_unlock(server);
    return NULL;
}

void resp_blocking_signal(struct resp_server *server, const unsigned char *key, size_t length) {
    /* The store before it, then this load (a full fence: a load may not pass a store),
     * pairs with join_line()'s count then the blocked command's second look: either
     * the push sees the command counted or the second look sees the push. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&server->blocked_count, memory_order_relaxed) == 0) return;
    uint64_t hash = blocked_key_hash(server, key, length);
    blocking_lock(server);
    struct blocked_key *entry = find_blocked_key(server, hash, key, length);
    bool taker_woken = false;
    for (struct resp_key_wait *wait = entry != NULL ? entry->first : NULL; wait != NULL;
         wait = wait->next) {
        struct resp_session *session = wait->session;
        struct resp_block *block = &session->block;
        if (block->outcome == RESP_BLOCK_TIMED_OUT ||
            block->outcome == RESP_BLOCK_UNBLOCKED_ERROR) {
            continue; /* it ends unserved: not its turn */
        }
        if (block->takes) {
            /* The first taker on the key is served first; one already woken for it
             * (its rerun under way) will signal again when served. */
            if (taker_woken) continue;
            taker_woken = true;
        }
        if (block->outcome == RESP_BLOCK_WAITING) wake_session(session, RESP_BLOCK_SIGNALED);
    }
    blocking_unlock(server);
}

void resp_blocking_signal_all(struct resp_server *server) {
    atomic_thread_fence(memory_order_seq_cst); /* as resp_blocking_signal() */
    if (atomic_load_explicit(&server->blocked_count, memory_order_relaxed) == 0) return;
    blocking_lock(server);
    for (struct resp_session *session = server->blocked_first; session != NULL;
         session = session->block.next) {
        if (session->block.outcome == RESP_BLOCK_WAITING)
            wake_session(session, RESP_BLOCK_SIGNALED);
    }
    blocking_unlock(server);
}

/* Signals every key SESSION's blocked command named (its turn passes on). */
static void signal_keys(struct resp_session *session) {
    const struct resp_block *block = &session->block;
    for (size_t i = 0; i < block->key_count; i++) {
        size_t index = block->first_key + i;
        resp_blocking_signal(session->server, block->request.argv[index],
                             (size_t)block->request.lengths[index]);
    }
}

/* What a blocking command answers inside EXEC, where it does not wait: a null array or
 * (BLMOVE, BRPOPLPUSH) a null bulk string, as Redis 7.0. */
static void reply_timeout(struct resp_session *session, enum resp_block_timeout timeout_reply) {
    if (timeout_reply == RESP_BLOCK_NULL_BULK) {
        reply_null(session);
    } else {
        reply_null_array(session);
    }
}

bool resp_block_timeout(struct resp_session *session, const struct resp_request *request,
                        size_t index, bool milliseconds, int64_t *timeout_ms) {
    char text[64];
    long double value = 0;
    bool number = false;
    size_t length = (size_t)request->lengths[index];
    /* As Redis: no leading space, the whole argument a number. */
    if (length > 0 && length < sizeof(text) && !isspace(request->argv[index][0])) {
        memcpy(text, request->argv[index], length);
        text[length] = '\0';
        char *end;
        errno = 0;
        value = milliseconds ? (long double)strtoll(text, &end, 10) : strtold(text, &end);
        number = *end == '\0' && errno == 0 && isfinite(value);
    }
    if (!number) {
        reply_error(session, milliseconds ? "ERR timeout is not an integer or out of range"
                                          : "ERR timeout is not a float or out of range");
        return false;
    }
    /* Redis rounds seconds up to whole milliseconds first: -0.0001 is 0, no limit. */
    long double ms = milliseconds ? value : ceill(value * 1000.0L);
    int64_t now = clock_monotonic_ms();
    if (ms > (long double)(INT64_MAX - now)) {
        reply_error(session, "ERR timeout is out of range");
        return false;
    }
    if (ms < 0) {
        reply_error(session, "ERR timeout is negative");
        return false;
    }
    *timeout_ms = (int64_t)ms;
    return true;
}

bool resp_parse_multi_pop(struct resp_session *session, const struct resp_request *request,
                          size_t numkeys_index, const char *first_word, const char *other_word,
                          struct resp_multi_pop *pop) {
    int64_t keys;
    if (!parse_int64(request->argv[numkeys_index], (size_t)request->lengths[numkeys_index],
                     &keys) ||
        keys <= 0) {
        reply_error(session, "ERR numkeys should be greater than 0");
        return false;
    }
    size_t where = numkeys_index + 1 + (size_t)keys;
    if ((uint64_t)keys > request->argc - numkeys_index - 1 || where >= request->argc) {
        reply_syntax_error(session);
        return false;
    }
    *pop = (struct resp_multi_pop){
        .first_key = numkeys_index + 1, .key_count = (size_t)keys, .count = 1};
    pop->first_end = argument_is(request, where, first_word);
    if (!pop->first_end && !argument_is(request, where, other_word)) {
        reply_syntax_error(session);
        return false;
    }
    if (where + 1 == request->argc) return true;
    if (where + 3 != request->argc || !argument_is(request, where + 1, "COUNT")) {
        reply_syntax_error(session);
        return false;
    }
    if (!parse_int64(request->argv[where + 2], (size_t)request->lengths[where + 2], &pop->count) ||
        pop->count <= 0) {
        reply_error(session, "ERR count should be greater than 0");
        return false;
    }
    return true;
}

void resp_block(struct resp_session *session, const struct resp_request *request, size_t first_key,
                size_t key_count, int64_t timeout_ms, enum resp_block_timeout timeout_reply,
                bool takes) {
    struct resp_server *server = session->server;
    struct resp_block *block = &session->block;
    if (session->transaction.running) { /* inside EXEC a blocking command times out at once */
        reply_timeout(session, timeout_reply);
        return;
    }
    bool first = block->request.argc == 0;
    if (first) { /* its first run: a copy to run again, a place in line */
        block->waits = calloc(key_count, sizeof(*block->waits));
        if (block->waits == NULL || !resp_queued_copy(&block->request, request)) {
            free(block->waits);
            block->waits = NULL;
            reply_store_error(session, STORE_ALLOCATION_FAILED);
            return;
        }
        block->first_key = first_key;
        block->key_count = key_count;
        block->takes = takes;
        block->deadline_ms = timeout_ms > 0 ? clock_monotonic_ms() + timeout_ms : 0;
    }
    block->resignal = false;
    /* Waiting holds no key in DRAM: a key evicted meanwhile is read back from flash by
     * the next run, synchronously (a rerun's resp_prefetch_key() answers ready at once). */
    if (session->holding) {
        store_release_hold(server->environment.store, session->parser.argv[session->hold_index],
                           (size_t)session->parser.argv_lengths[session->hold_index]);
        session->holding = false;
    }
    if (first && fault_inject(FAULT_block_delay) != 0) {
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    blocking_lock(server);
    if (block->sequence == 0) block->sequence = ++server->blocked_sequence;
    if (block->deadline_ms != 0 && !server->blocking_timer_started) {
        if (pthread_create(&server->blocking_timer, NULL, timer_main, server) != 0) {
            blocking_unlock(server);
            reply_error(session, "ERR could not start the timer of blocking commands");
            return;
        }
        server->blocking_timer_started = true;
    }
    if (!block->in_line) { /* its first block (a rerun that blocks again is in line) */
        if (!join_line(server, session)) {
            blocking_unlock(server);
            reply_store_error(session, STORE_ALLOCATION_FAILED);
            return;
        }
        /* A push between the command's look and join_line() signalled nobody: so it
         * looks once more, in line now (a push from here on finds it). A taker behind
         * another on each of its keys leaves that to the one before it (which such a
         * push woke, or will look itself): its own look could take out of turn. */
        if (first && (!block->takes || first_taker_somewhere(session)))
            wake_session(session, RESP_BLOCK_SIGNALED);
    }
    if (block->deadline_ms != 0) pthread_cond_signal(&server->blocking_changed);
    blocking_unlock(server);
    block->waiting = true;
    session->suspended = true;    /* no input is taken meanwhile */
    session->rerun_wanted = true; /* its arguments are kept; it ends when woken */
}

bool resp_block_rerun(const struct resp_session *session, struct resp_request *request) {
    const struct resp_block *block = &session->block;
    if (block->request.argc == 0) return false;
    request->argc = block->request.argc;
    request->argv = (const unsigned char **)block->request.argv;
    request->lengths = block->request.lengths;
    return true;
}

bool resp_block_waited(const struct resp_session *session) {
    return session->block.request.argc != 0 && session->rerunning;
}

void resp_blocking_woken(struct resp_session *session) {
    struct resp_server *server = session->server;
    struct resp_block *block = &session->block;
    if (!block->waiting) return;
    blocking_lock(server);
    enum resp_block_outcome outcome = block->outcome;
    if (outcome == RESP_BLOCK_SIGNALED) {
        /* It looks again while still in line, so that a push during that look marks
         * it again rather than going unseen. */
        block->outcome = RESP_BLOCK_WAITING;
    } else if (outcome != RESP_BLOCK_WAITING) {
        leave_line(server, session);
    }
    blocking_unlock(server);
    if (outcome == RESP_BLOCK_WAITING) return; /* woken for something else */
    block->waiting = false;
    session->suspended = false;
    if (outcome == RESP_BLOCK_SIGNALED) {
        block->resignal = block->takes;        /* cleared if it blocks again */
        resp_session_rerun(session, STORE_OK); /* replies, or blocks again */
        return;
    }
    if (outcome == RESP_BLOCK_UNBLOCKED_ERROR) {
        reply_error(session, "UNBLOCKED client unblocked via CLIENT UNBLOCK");
    } else {
        reply_null_array(session); /* as Redis 7.0 for every blocked command that times out */
    }
    session->rerun_wanted = false;
    resp_session_command_done(session);
    session->resume(session->resume_handle); /* may close the connection: last */
}

void resp_blocking_done(struct resp_session *session) {
    struct resp_server *server = session->server;
    struct resp_block *block = &session->block;
    if (block->request.argc == 0) return;
    blocking_lock(server);
    if (block->in_line) leave_line(server, session); /* served after a look in line */
    blocking_unlock(server);
    if (block->resignal) signal_keys(session);
    resp_queued_free(&block->request);
    free(block->waits);
    *block = (struct resp_block){0};
}

void resp_blocking_close(struct resp_session *session) {
    struct resp_server *server = session->server;
    struct resp_block *block = &session->block;
    if (!block->waiting) return; /* a rerun is never under way at a close */
    blocking_lock(server);
    enum resp_block_outcome outcome = block->outcome;
    leave_line(server, session);
    blocking_unlock(server);
    block->waiting = false;
    session->suspended = false;
    /* Woken to be served, it never will be: the next in line gets its turn. */
    block->resignal = outcome == RESP_BLOCK_SIGNALED && block->takes;
    session->rerun_wanted = false;
}

void resp_client_unblock(struct resp_session *session, const struct resp_request *request) {
    struct resp_server *server = session->server;
    int64_t id;
    if (!argument_int64(session, request, 2, &id)) return;
    enum resp_block_outcome outcome = RESP_BLOCK_TIMED_OUT;
    if (request->argc == 4 && argument_is(request, 3, "ERROR")) {
        outcome = RESP_BLOCK_UNBLOCKED_ERROR;
    } else if (request->argc == 4 && !argument_is(request, 3, "TIMEOUT")) {
        reply_error(session, "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
        return;
    } else if (request->argc > 4) {
        reply_syntax_error(session);
        return;
    }
    int64_t unblocked = 0;
    sessions_lock(server); /* the session stays open meanwhile (close() takes it first) */
    for (struct resp_session *other = server->sessions; other != NULL; other = other->next) {
        if ((int64_t)other->id != id) continue;
        blocking_lock(server);
        /* Waiting, or about to look again (SIGNALED): either way it ends unserved. */
        if (other->block.in_line && (other->block.outcome == RESP_BLOCK_WAITING ||
                                     other->block.outcome == RESP_BLOCK_SIGNALED)) {
            wake_session(other, outcome);
            unblocked = 1;
        }
        blocking_unlock(server);
    }
    sessions_unlock(server);
    reply_integer(session, unblocked);
}

size_t resp_blocked_clients(struct resp_server *server) {
    return atomic_load_explicit(&server->blocked_count, memory_order_relaxed);
}
