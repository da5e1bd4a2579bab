/* String commands: GET SET GETSET GETEX GETDEL SETNX SETEX PSETEX MGET MSET MSETNX STRLEN
 * APPEND GETRANGE SETRANGE INCR INCRBY DECR DECRBY INCRBYFLOAT. */
#include "base/clock.h"
#include "base/numbers.h"
#include "engine/value_block.h"
#include "proto/resp/resp_internal.h"

#include <stdlib.h>
#include <string.h>

/* Read-modify-write commands retry when another client changed the key meanwhile. */
#define UPDATE_ATTEMPTS 1000

/* Converts an expiry argument into an absolute time in milliseconds. UNIT is 1000 for
 * seconds and 1 for milliseconds; ABSOLUTE for EXAT/PXAT. The value must be positive.
 * Replies with an error and returns false when it is not a valid expiry. */
static bool parse_expiry(struct resp_session *session, const struct resp_request *request,
                         size_t index, int64_t unit, bool absolute, const char *command,
                         int64_t *expire_at) {
    int64_t value;
    if (!argument_int64(session, request, index, &value)) return false;
    if (value <= 0 || value > INT64_MAX / unit) {
        reply_errorf(session, "ERR invalid expire time in '%s' command", command);
        return false;
    }
    value *= unit;
    if (!absolute) {
        int64_t now = clock_realtime_ms();
        if (value > INT64_MAX - now) {
            reply_errorf(session, "ERR invalid expire time in '%s' command", command);
            return false;
        }
        value += now;
    }
    *expire_at = value;
    return true;
}

/* Stores argument VALUE_INDEX under argument 1, taking the parser's value block when
 * the value arrived in one (no copy). */
static enum store_status store_argument(struct resp_session *session,
                                        const struct resp_request *request, size_t value_index,
                                        const struct store_write *write, struct item **previous) {
    struct value_block *block = resp_parser_take_block(&session->parser, value_index);
    enum store_status status =
        block != NULL
            ? store_set_block(store_of(session), request->argv[1], (size_t)request->lengths[1],
                              block, write, previous)
            : store_set(store_of(session), request->argv[1], (size_t)request->lengths[1],
                        request->argv[value_index], request->lengths[value_index], write, previous);
    /* A string stored over a stream ends an XREADGROUP blocked on it (command_del()). */
    if (status == STORE_OK)
        resp_blocking_signal(session->server, request->argv[1], (size_t)request->lengths[1]);
    return status;
}

static void reply_get(struct resp_session *session, struct resp_reads *reads) {
    reply_value(session, &reads->slots[0]);
}

void command_get(struct resp_session *session, const struct resp_request *request) {
    resp_read_values(session, request, 1, 1, NULL, reply_get);
}

void command_set(struct resp_session *session, const struct resp_request *request) {
    struct store_write write = {
        .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_CLEAR, .expire_at_ms = 0};
    bool want_previous = false;
    size_t expiry_index = 0;
    int64_t unit = 1;
    bool absolute = false;
    for (size_t i = 3; i < request->argc; i++) {
        bool has_value = i + 1 < request->argc;
        bool expiry_free = expiry_index == 0 && write.expiry != STORE_EXPIRY_KEEP;
        if (argument_is(request, i, "NX") && write.condition != STORE_IF_PRESENT) {
            write.condition = STORE_IF_ABSENT;
        } else if (argument_is(request, i, "XX") && write.condition != STORE_IF_ABSENT) {
            write.condition = STORE_IF_PRESENT;
        } else if (argument_is(request, i, "GET")) {
            want_previous = true;
        } else if (argument_is(request, i, "KEEPTTL") && expiry_index == 0) {
            write.expiry = STORE_EXPIRY_KEEP;
        } else if (argument_is(request, i, "EX") && expiry_free && has_value) {
            unit = 1000;
            expiry_index = ++i;
        } else if (argument_is(request, i, "PX") && expiry_free && has_value) {
            expiry_index = ++i;
        } else if (argument_is(request, i, "EXAT") && expiry_free && has_value) {
            unit = 1000;
            absolute = true;
            expiry_index = ++i;
        } else if (argument_is(request, i, "PXAT") && expiry_free && has_value) {
            absolute = true;
            expiry_index = ++i;
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    if (expiry_index != 0) {
        if (!parse_expiry(session, request, expiry_index, unit, absolute, "set",
                          &write.expire_at_ms)) {
            return;
        }
        write.expiry = STORE_EXPIRY_SET;
    }
    /* SET ... GET hands the old value back: it must be in DRAM first. */
    if (want_previous && resp_prefetch_key(session, request, 1, false) != PREFETCH_READY) return;
    struct item *previous = NULL;
    enum store_status status =
        store_argument(session, request, 2, &write, want_previous ? &previous : NULL);
    if (status != STORE_OK && status != STORE_CONDITION_FAILED) {
        if (previous != NULL) item_release(previous);
        reply_store_error(session, status);
        return;
    }
    if (want_previous) {
        if (previous != NULL) {
            reply_item(session, previous);
        } else {
            reply_null(session);
        }
    } else if (status == STORE_OK) {
        reply_ok(session);
    } else {
        reply_null(session);
    }
}

/* GETSET key value: SET key value GET (the expiry is cleared, as SET does). */
void command_getset(struct resp_session *session, const struct resp_request *request) {
    struct store_write write = {
        .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_CLEAR, .expire_at_ms = 0};
    /* The old value is handed back: it must be in DRAM first. */
    if (resp_prefetch_key(session, request, 1, false) != PREFETCH_READY) return;
    struct item *previous = NULL;
    enum store_status status = store_argument(session, request, 2, &write, &previous);
    if (status != STORE_OK) {
        if (previous != NULL) item_release(previous);
        reply_store_error(session, status);
    } else if (previous != NULL) {
        reply_item(session, previous);
    } else {
        reply_null(session);
    }
}

void command_getex(struct resp_session *session, const struct resp_request *request) {
    int64_t expire_at = 0;
    bool change = false;
    if (request->argc > 2) {
        size_t option = 2;
        bool persist = argument_is(request, option, "PERSIST");
        if (persist && request->argc == 3) {
            change = true;
        } else if (request->argc == 4 && !persist) {
            int64_t unit =
                argument_is(request, option, "EX") || argument_is(request, option, "EXAT") ? 1000
                                                                                           : 1;
            bool absolute =
                argument_is(request, option, "EXAT") || argument_is(request, option, "PXAT");
            if (!argument_is(request, option, "EX") && !argument_is(request, option, "PX") &&
                !absolute) {
                reply_syntax_error(session);
                return;
            }
            if (!parse_expiry(session, request, 3, unit, absolute, "getex", &expire_at)) return;
            change = true;
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    if (!change) {
        resp_read_values(session, request, 1, 1, NULL, reply_get);
        return;
    }
    /* A new expiry is set on the DRAM item: bring the key there first. */
    if (resp_prefetch_key(session, request, 1, false) != PREFETCH_READY) return;
    struct item *item = NULL;
    enum store_status status =
        store_set_expiry(store_of(session), request->argv[1], (size_t)request->lengths[1],
                         expire_at, STORE_EXPIRY_ALWAYS, &item);
    if (status == STORE_OK && item != NULL) {
        reply_item(session, item);
    } else if (status == STORE_OK || status == STORE_NOT_FOUND) {
        reply_null(session);
    } else {
        reply_store_error(session, status);
    }
}

void command_getdel(struct resp_session *session, const struct resp_request *request) {
    if (resp_prefetch_key(session, request, 1, false) != PREFETCH_READY) return;
    struct item *item = NULL;
    enum store_status status =
        store_delete(store_of(session), request->argv[1], (size_t)request->lengths[1], &item);
    if (status == STORE_OK && item != NULL) {
        reply_item(session, item);
    } else if (status == STORE_OK || status == STORE_NOT_FOUND) {
        reply_null(session);
    } else {
        reply_store_error(session, status);
    }
}

void command_setnx(struct resp_session *session, const struct resp_request *request) {
    struct store_write write = {
        .condition = STORE_IF_ABSENT, .expiry = STORE_EXPIRY_CLEAR, .expire_at_ms = 0};
    enum store_status status = store_argument(session, request, 2, &write, NULL);
    reply_condition(session, status);
}

/* SETEX and PSETEX: key, a positive time to live in UNIT milliseconds, value. */
static void set_with_expiry(struct resp_session *session, const struct resp_request *request,
                            int64_t unit, const char *name) {
    struct store_write write = {
        .condition = STORE_ALWAYS, .expiry = STORE_EXPIRY_SET, .expire_at_ms = 0};
    if (!parse_expiry(session, request, 2, unit, false, name, &write.expire_at_ms)) return;
    enum store_status status = store_argument(session, request, 3, &write, NULL);
    if (status == STORE_OK) {
        reply_ok(session);
    } else {
        reply_store_error(session, status);
    }
}

void command_setex(struct resp_session *session, const struct resp_request *request) {
    set_with_expiry(session, request, 1000, "setex");
}

void command_psetex(struct resp_session *session, const struct resp_request *request) {
    set_with_expiry(session, request, 1, "psetex");
}

static void reply_mget(struct resp_session *session, struct resp_reads *reads) {
    reply_array(session, reads->count);
    for (size_t i = 0; i < reads->count; i++) {
        struct resp_read_slot *slot = &reads->slots[i];
        if (slot->status != STORE_OK) {
            reply_null(session); /* as Redis: a key that cannot be read is nil */
        } else {
            reply_value(session, slot);
        }
    }
}

void command_mget(struct resp_session *session, const struct resp_request *request) {
    resp_read_values(session, request, 1, request->argc - 1, NULL, reply_mget);
}

/* MSET and MSETNX. */
static void set_many(struct resp_session *session, const struct resp_request *request,
                     bool only_if_none_exist, const char *name) {
    if ((request->argc - 1) % 2 != 0) {
        reply_wrong_arity(session, name);
        return;
    }
    size_t count = (request->argc - 1) / 2;
    struct store_pair *pairs = calloc(count, sizeof(*pairs));
    if (pairs == NULL) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        size_t key = 1 + 2 * i;
        pairs[i].key = request->argv[key];
        pairs[i].key_length = (size_t)request->lengths[key];
        pairs[i].block = resp_parser_take_block(&session->parser, key + 1);
        if (pairs[i].block == NULL) {
            pairs[i].value = request->argv[key + 1];
            pairs[i].value_length = request->lengths[key + 1];
        }
    }
    enum store_status status = store_set_many(store_of(session), count, pairs, only_if_none_exist);
    free(pairs);
    if (only_if_none_exist) {
        reply_condition(session, status);
    } else if (status == STORE_OK) {
        reply_ok(session);
    } else {
        reply_store_error(session, status);
    }
}

void command_mset(struct resp_session *session, const struct resp_request *request) {
    set_many(session, request, false, "mset");
}

void command_msetnx(struct resp_session *session, const struct resp_request *request) {
    set_many(session, request, true, "msetnx");
}

void command_strlen(struct resp_session *session, const struct resp_request *request) {
    uint64_t length = 0; /* from the index: the value itself is not read */
    enum store_status status = store_value_length(store_of(session), request->argv[1],
                                                  (size_t)request->lengths[1], &length);
    if (status == STORE_WRONG_TYPE) {
        reply_store_error(session, status);
        return;
    }
    reply_integer(session, (int64_t)length);
}

void command_append(struct resp_session *session, const struct resp_request *request) {
    if (resp_prefetch_key(session, request, 1, false) != PREFETCH_READY) return;
    uint64_t length = 0;
    enum store_status status =
        store_append(store_of(session), request->argv[1], (size_t)request->lengths[1],
                     request->argv[2], request->lengths[2], &length);
    if (status == STORE_OK) {
        reply_integer(session, (int64_t)length);
    } else {
        reply_store_error(session, status);
    }
}

static void reply_getrange(struct resp_session *session, struct resp_reads *reads) {
    reply_value_range(session, &reads->slots[0], reads->arguments[0], reads->arguments[1]);
}

void command_getrange(struct resp_session *session, const struct resp_request *request) {
    int64_t range[2];
    if (!argument_int64(session, request, 2, &range[0]) ||
        !argument_int64(session, request, 3, &range[1])) {
        return;
    }
    resp_read_values(session, request, 1, 1, range, reply_getrange);
}

/* A read-modify-write command's view of the current value and its new one. */
struct rewrite {
    const unsigned char *current; /* the current value, or NULL when the key is absent */
    uint64_t current_length;
    const unsigned char *value; /* the new value: in text, in allocated, or elsewhere */
    uint64_t length;
    unsigned char *allocated; /* freed after the command; may stay NULL */
    int64_t integer;          /* a number for the reply (INCR's result, SETRANGE's length) */
    char text[5200];          /* room for short results (any long double fits) */
};

/* Computes the new value into REWRITE. Returns true to store it, or false after
 * replying itself (an error, or an answer that needs no write). */
typedef bool (*rewrite_fn)(struct resp_session *session, const struct resp_request *request,
                           const void *context, struct rewrite *rewrite);

/* Replies once the new value is stored. */
typedef void (*rewritten_fn)(struct resp_session *session, const struct rewrite *rewrite);

/* Runs a read-modify-write command on the key in argument 1: reads the current item,
 * lets COMPUTE build the new value, and stores it only if the key still holds the item
 * that was read (keeping its expiry), retrying when another client changed it. */
static void rewrite_key(struct resp_session *session, const struct resp_request *request,
                        rewrite_fn compute, rewritten_fn done, const void *context) {
    if (resp_prefetch_key(session, request, 1, false) != PREFETCH_READY) return;
    struct store *store = store_of(session);
    const unsigned char *key = request->argv[1];
    size_t key_length = (size_t)request->lengths[1];
    for (int attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
        struct item *item = NULL;
        enum store_status read_status = store_get(store, key, key_length, &item);
        if (read_status != STORE_OK && read_status != STORE_NOT_FOUND) {
            reply_store_error(session, read_status); /* not "absent": the read failed */
            return;
        }
        struct rewrite rewrite;
        rewrite.current = item != NULL ? item_value(item) : NULL;
        rewrite.current_length = item != NULL ? item_value_length(item) : 0;
        rewrite.allocated = NULL;
        bool write = compute(session, request, context, &rewrite);
        enum store_status status = STORE_OK;
        if (write) {
            status = store_replace_if_unchanged(store, key, key_length, item, rewrite.value,
                                                rewrite.length, true, STORE_TYPE_STRING);
        }
        if (write && status == STORE_OK) done(session, &rewrite);
        free(rewrite.allocated);
        if (item != NULL) item_release(item);
        if (!write || status == STORE_OK) return;
        if (status != STORE_CONDITION_FAILED) {
            reply_store_error(session, status);
            return;
        }
    }
    reply_error(session, "ERR the key changed too often to update it; try again");
}

static void reply_rewrite_integer(struct resp_session *session, const struct rewrite *rewrite) {
    reply_integer(session, rewrite->integer);
}

static void reply_rewrite_value(struct resp_session *session, const struct rewrite *rewrite) {
    reply_bulk(session, rewrite->value, (size_t)rewrite->length);
}

/* SETRANGE: writes argument 3 at the offset (CONTEXT), zero-padding a shorter value. */
static bool compute_setrange(struct resp_session *session, const struct resp_request *request,
                             const void *context, struct rewrite *rewrite) {
    uint64_t offset = *(const uint64_t *)context;
    const unsigned char *piece = request->argv[3];
    uint64_t piece_length = request->lengths[3];
    uint64_t max_value =
        (uint64_t)options_number(session->server->environment.options, ENGINE_OPTION(max_value));
    if (piece_length == 0) {
        reply_integer(session, (int64_t)rewrite->current_length);
        return false;
    }
    if (offset > max_value || piece_length > max_value - offset) {
        reply_error(session, "ERR string exceeds maximum allowed size (max-value)");
        return false;
    }
    uint64_t end = offset + piece_length;
    uint64_t length = end > rewrite->current_length ? end : rewrite->current_length;
    rewrite->allocated = malloc((size_t)length);
    if (rewrite->allocated == NULL) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return false;
    }
    if (rewrite->current_length > 0) {
        memcpy(rewrite->allocated, rewrite->current, (size_t)rewrite->current_length);
    }
    if (offset > rewrite->current_length) {
        memset(rewrite->allocated + rewrite->current_length, 0,
               (size_t)(offset - rewrite->current_length));
    }
    memcpy(rewrite->allocated + offset, piece, (size_t)piece_length);
    rewrite->value = rewrite->allocated;
    rewrite->length = length;
    rewrite->integer = (int64_t)length;
    return true;
}

void command_setrange(struct resp_session *session, const struct resp_request *request) {
    int64_t offset;
    if (!argument_int64(session, request, 2, &offset)) return;
    if (offset < 0) {
        reply_error(session, "ERR offset is out of range");
        return;
    }
    uint64_t context = (uint64_t)offset;
    rewrite_key(session, request, compute_setrange, reply_rewrite_integer, &context);
}

/* INCR and friends: adds the delta (CONTEXT) to the integer held at the key. */
static bool compute_increment(struct resp_session *session, const struct resp_request *request,
                              const void *context, struct rewrite *rewrite) {
    (void)request;
    int64_t delta = *(const int64_t *)context;
    int64_t current = 0;
    if (rewrite->current != NULL &&
        !parse_int64(rewrite->current, (size_t)rewrite->current_length, &current)) {
        reply_error(session, "ERR value is not an integer or out of range");
        return false;
    }
    if ((delta < 0 && current < 0 && delta < INT64_MIN - current) ||
        (delta > 0 && current > 0 && delta > INT64_MAX - current)) {
        reply_error(session, "ERR increment or decrement would overflow");
        return false;
    }
    rewrite->integer = current + delta;
    rewrite->length = format_int64(rewrite->text, rewrite->integer);
    rewrite->value = (const unsigned char *)rewrite->text;
    return true;
}

static void increment(struct resp_session *session, const struct resp_request *request,
                      int64_t delta) {
    rewrite_key(session, request, compute_increment, reply_rewrite_integer, &delta);
}

void command_incr(struct resp_session *session, const struct resp_request *request) {
    increment(session, request, 1);
}

void command_decr(struct resp_session *session, const struct resp_request *request) {
    increment(session, request, -1);
}

void command_incrby(struct resp_session *session, const struct resp_request *request) {
    int64_t delta;
    if (argument_int64(session, request, 2, &delta)) increment(session, request, delta);
}

void command_decrby(struct resp_session *session, const struct resp_request *request) {
    int64_t delta;
    if (!argument_int64(session, request, 2, &delta)) return;
    if (delta == INT64_MIN) {
        reply_error(session, "ERR decrement would overflow");
        return;
    }
    increment(session, request, -delta);
}

/* INCRBYFLOAT: adds the long double delta (CONTEXT) to the number held at the key. */
static bool compute_increment_float(struct resp_session *session,
                                    const struct resp_request *request, const void *context,
                                    struct rewrite *rewrite) {
    (void)request;
    long double current = 0;
    if (rewrite->current != NULL &&
        !parse_long_double(rewrite->current, (size_t)rewrite->current_length, &current)) {
        reply_error(session, "ERR value is not a valid float");
        return false;
    }
    rewrite->length = format_long_double(rewrite->text, sizeof(rewrite->text),
                                         current + *(const long double *)context);
    if (rewrite->length == 0) {
        reply_error(session, "ERR increment would produce NaN or Infinity");
        return false;
    }
    rewrite->value = (const unsigned char *)rewrite->text;
    return true;
}

void command_incrbyfloat(struct resp_session *session, const struct resp_request *request) {
    long double delta;
    if (!parse_long_double(request->argv[2], (size_t)request->lengths[2], &delta)) {
        reply_error(session, "ERR value is not a valid float");
        return;
    }
    rewrite_key(session, request, compute_increment_float, reply_rewrite_value, &delta);
}
