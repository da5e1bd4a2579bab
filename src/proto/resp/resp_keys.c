/* Keyspace commands: DEL UNLINK EXISTS TYPE EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME
 * PEXPIRETIME TTL PTTL PERSIST TOUCH KEYS SCAN RANDOMKEY RENAME RENAMENX COPY, and
 * OBJECT and MEMORY (what a key takes). */
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/glob.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"

#include <string.h>

/* DEL and UNLINK. A removed key wakes the commands blocked on it: an XREADGROUP blocked
 * on a stream that went ends with an error, as in Redis (the others wait on). */
void command_del(struct resp_session *session, const struct resp_request *request) {
    int64_t removed = 0;
    for (size_t i = 1; i < request->argc; i++) {
        if (store_delete(store_of(session), request->argv[i], (size_t)request->lengths[i], NULL) ==
            STORE_OK) {
            removed++;
            resp_blocking_signal(session->server, request->argv[i], (size_t)request->lengths[i]);
        }
    }
    reply_integer(session, removed);
}

void command_exists(struct resp_session *session, const struct resp_request *request) {
    int64_t found = 0;
    for (size_t i = 1; i < request->argc; i++) {
        found += store_exists(store_of(session), request->argv[i], (size_t)request->lengths[i]);
    }
    reply_integer(session, found);
}

void command_touch(struct resp_session *session, const struct resp_request *request) {
    int64_t found = 0;
    for (size_t i = 1; i < request->argc; i++) {
        found += store_touch(store_of(session), request->argv[i], (size_t)request->lengths[i]);
    }
    reply_integer(session, found);
}

const char *resp_type_name(enum store_type type) {
    switch (type) {
    case STORE_TYPE_STRING:
        return "string";
    case STORE_TYPE_HASH:
        return "hash";
    case STORE_TYPE_LIST:
        return "list";
    case STORE_TYPE_SET:
        return "set";
    case STORE_TYPE_ZSET:
        return "zset";
    case STORE_TYPE_STREAM:
        return "stream";
    }
    return "none";
}

void command_type(struct resp_session *session, const struct resp_request *request) {
    enum store_type type;
    enum store_status status =
        store_key_type(store_of(session), request->argv[1], (size_t)request->lengths[1], &type);
    reply_simple(session, status == STORE_OK ? resp_type_name(type) : "none");
}

/* Replies to a change that may not apply (an expiry, COPY): 1 when it was made, 0 when
 * the key is missing or the condition (NX, XX, GT, LT, REPLACE; PERSIST: an expiry to
 * remove) was false, and the store's error otherwise (the flash copy could not be read,
 * no memory): never a silent 0. */
static void reply_changed(struct resp_session *session, enum store_status status) {
    if (status == STORE_OK) {
        reply_integer(session, 1);
    } else if (status == STORE_NOT_FOUND || status == STORE_CONDITION_FAILED) {
        reply_integer(session, 0);
    } else {
        reply_store_error(session, status);
    }
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: key, time, then NX | XX | GT | LT. */
static void expire_command(struct resp_session *session, const struct resp_request *request,
                           int64_t unit, bool absolute, const char *name) {
    int64_t when;
    if (!argument_int64(session, request, 2, &when)) return;
    bool nx = false, xx = false, gt = false, lt = false;
    for (size_t i = 3; i < request->argc; i++) {
        if (argument_is(request, i, "NX")) {
            nx = true;
        } else if (argument_is(request, i, "XX")) {
            xx = true;
        } else if (argument_is(request, i, "GT")) {
            gt = true;
        } else if (argument_is(request, i, "LT")) {
            lt = true;
        } else {
            char option[64];
            argument_text(request, i, option, sizeof(option));
            reply_errorf(session, "ERR Unsupported option %s", option);
            return;
        }
    }
    if (nx && (xx || gt || lt)) {
        reply_error(session, "ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if (gt && lt) {
        reply_error(session, "ERR GT and LT options at the same time are not compatible");
        return;
    }
    if (when > INT64_MAX / unit || when < INT64_MIN / unit) {
        reply_errorf(session, "ERR invalid expire time in '%s' command", name);
        return;
    }
    /* A new expiry rewrites the key: one on flash comes back to DRAM first, off the
     * worker (its reply waits). */
    if (resp_prefetch_key(session, request, 1, true) != PREFETCH_READY) return;
    when *= unit;
    if (!absolute) {
        int64_t now = clock_realtime_ms();
        if ((when > 0 && now > INT64_MAX - when) || (when < 0 && now < INT64_MIN - when)) {
            reply_errorf(session, "ERR invalid expire time in '%s' command", name);
            return;
        }
        when += now;
    }
    /* 0 means "no expiry" to the store; any time at or before the epoch deletes. */
    if (when <= 0) when = 1;
    enum store_expiry_condition condition = STORE_EXPIRY_ALWAYS;
    if (nx) condition = STORE_EXPIRY_IF_NONE;
    if (xx) condition = STORE_EXPIRY_IF_ANY;
    if (gt) condition = STORE_EXPIRY_IF_GREATER;
    if (lt) condition = STORE_EXPIRY_IF_LESS;
    if (xx && (gt || lt)) {
        /* XX with GT or LT: the key must have an expiry, and GT/LT must hold. */
        int64_t current = 0;
        if (store_get_expiry(store_of(session), request->argv[1], (size_t)request->lengths[1],
                             &current) != STORE_OK ||
            current == 0) {
            reply_integer(session, 0);
            return;
        }
    }
    enum store_status status = store_set_expiry(store_of(session), request->argv[1],
                                                (size_t)request->lengths[1], when, condition, NULL);
    reply_changed(session, status);
}

void command_expire(struct resp_session *session, const struct resp_request *request) {
    expire_command(session, request, 1000, false, "expire");
}

void command_pexpire(struct resp_session *session, const struct resp_request *request) {
    expire_command(session, request, 1, false, "pexpire");
}

void command_expireat(struct resp_session *session, const struct resp_request *request) {
    expire_command(session, request, 1000, true, "expireat");
}

void command_pexpireat(struct resp_session *session, const struct resp_request *request) {
    expire_command(session, request, 1, true, "pexpireat");
}

/* TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for no expiry. */
static void ttl_command(struct resp_session *session, const struct resp_request *request,
                        bool milliseconds, bool absolute) {
    int64_t expire_at = 0;
    if (store_get_expiry(store_of(session), request->argv[1], (size_t)request->lengths[1],
                         &expire_at) != STORE_OK) {
        reply_integer(session, -2);
        return;
    }
    if (expire_at == 0) {
        reply_integer(session, -1);
        return;
    }
    if (absolute) {
        reply_integer(session, milliseconds ? expire_at : expire_at / 1000);
        return;
    }
    int64_t remaining = expire_at - clock_realtime_ms();
    if (remaining < 0) remaining = 0;
    reply_integer(session, milliseconds ? remaining : (remaining + 500) / 1000);
}

void command_ttl(struct resp_session *session, const struct resp_request *request) {
    ttl_command(session, request, false, false);
}

void command_pttl(struct resp_session *session, const struct resp_request *request) {
    ttl_command(session, request, true, false);
}

void command_expiretime(struct resp_session *session, const struct resp_request *request) {
    ttl_command(session, request, false, true);
}

void command_pexpiretime(struct resp_session *session, const struct resp_request *request) {
    ttl_command(session, request, true, true);
}

void command_persist(struct resp_session *session, const struct resp_request *request) {
    if (resp_prefetch_key(session, request, 1, true) != PREFETCH_READY) return;
    enum store_status status =
        store_set_expiry(store_of(session), request->argv[1], (size_t)request->lengths[1], 0,
                         STORE_EXPIRY_IF_ANY, NULL);
    reply_changed(session, status);
}

/* Collects matching keys as (length, bytes) records. */
struct key_collector {
    const unsigned char *pattern; /* NULL: every key */
    size_t pattern_length;
    bool type_matches; /* false when SCAN TYPE names a type no key has */
    bool any_type;     /* no SCAN TYPE */
    enum store_type type;
    struct byte_buffer keys;
    size_t count;
};

static void collect_key(void *context, const struct item *item) {
    struct key_collector *collector = context;
    if (!collector->type_matches) return;
    if (!collector->any_type && item_type(item) != collector->type) return;
    size_t length;
    const unsigned char *key = item_key(item, &length);
    if (collector->pattern != NULL &&
        !glob_match(collector->pattern, collector->pattern_length, key, length)) {
        return;
    }
    byte_buffer_append(&collector->keys, &length, sizeof(length));
    byte_buffer_append(&collector->keys, key, length);
    collector->count++;
}

/* Sends the collected keys as an array of bulk strings. */
static void reply_keys(struct resp_session *session, struct key_collector *collector) {
    if (collector->keys.failed) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return;
    }
    reply_array(session, collector->count);
    size_t position = 0;
    for (size_t i = 0; i < collector->count; i++) {
        size_t length;
        memcpy(&length, collector->keys.data + position, sizeof(length));
        position += sizeof(length);
        reply_bulk(session, collector->keys.data + position, length);
        position += length;
    }
}

/* True when PATTERN matches everything ("*", "**", ...). */
static bool matches_all(const unsigned char *pattern, size_t length) {
    for (size_t i = 0; i < length; i++) {
        if (pattern[i] != '*') return false;
    }
    return length > 0;
}

void command_keys(struct resp_session *session, const struct resp_request *request) {
    struct key_collector collector = {
        .type_matches = true, .any_type = true, .keys = BYTE_BUFFER_INIT};
    if (!matches_all(request->argv[1], (size_t)request->lengths[1])) {
        collector.pattern = request->argv[1];
        collector.pattern_length = (size_t)request->lengths[1];
    }
    uint64_t cursor = 0;
    do {
        cursor = store_scan(store_of(session), cursor, 1024, collect_key, &collector);
    } while (cursor != 0 && !collector.keys.failed);
    reply_keys(session, &collector);
    byte_buffer_free(&collector.keys);
}

void command_scan(struct resp_session *session, const struct resp_request *request) {
    uint64_t cursor;
    if (!parse_uint64(request->argv[1], (size_t)request->lengths[1], &cursor) ||
        !store_scan_cursor_valid(store_of(session), cursor)) {
        reply_error(session, "ERR invalid cursor");
        return;
    }
    struct key_collector collector = {
        .type_matches = true, .any_type = true, .keys = BYTE_BUFFER_INIT};
    int64_t count = 10;
    for (size_t i = 2; i < request->argc; i++) {
        bool has_value = i + 1 < request->argc;
        if (argument_is(request, i, "COUNT") && has_value) {
            if (!argument_int64(session, request, i + 1, &count)) return;
            if (count < 1) {
                reply_syntax_error(session);
                return;
            }
            i++;
        } else if (argument_is(request, i, "MATCH") && has_value) {
            i++;
            if (matches_all(request->argv[i], (size_t)request->lengths[i])) {
                collector.pattern = NULL;
            } else {
                collector.pattern = request->argv[i];
                collector.pattern_length = (size_t)request->lengths[i];
            }
        } else if (argument_is(request, i, "TYPE") && has_value) {
            i++;
            collector.any_type = false;
            collector.type_matches = false;
            for (int type = STORE_TYPE_STRING; type <= STORE_TYPE_LAST; type++) {
                if (argument_is(request, i, resp_type_name((enum store_type)type))) {
                    collector.type = (enum store_type)type;
                    collector.type_matches = true;
                }
            }
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    uint64_t next = store_scan(store_of(session), cursor, (size_t)count, collect_key, &collector);
    reply_array(session, 2);
    reply_bulk_integer(session, (int64_t)next);
    reply_keys(session, &collector);
    byte_buffer_free(&collector.keys);
}

void command_randomkey(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    struct item *item;
    if (store_random(store_of(session), &item) != STORE_OK) {
        reply_null(session);
        return;
    }
    size_t length;
    const unsigned char *key = item_key(item, &length);
    reply_bulk(session, key, length);
    item_release(item);
}

/* A value renamed or copied onto argument 2 wakes the commands blocked on it (BLPOP on
 * the destination of a RENAME is served, as in Redis). */
static void signal_destination(struct resp_session *session, const struct resp_request *request) {
    resp_blocking_signal(session->server, request->argv[2], (size_t)request->lengths[2]);
}

/* A renamed key (argument 1) is gone: its blocked commands look again (command_del()). */
static void signal_source(struct resp_session *session, const struct resp_request *request) {
    resp_blocking_signal(session->server, request->argv[1], (size_t)request->lengths[1]);
}

void command_rename(struct resp_session *session, const struct resp_request *request) {
    if (resp_prefetch_key(session, request, 1, true) != PREFETCH_READY) return;
    enum store_status status =
        store_rename(store_of(session), request->argv[1], (size_t)request->lengths[1],
                     request->argv[2], (size_t)request->lengths[2], false);
    if (status == STORE_OK) {
        reply_ok(session);
        signal_source(session, request);
        signal_destination(session, request);
    } else {
        reply_store_error(session, status);
    }
}

void command_renamenx(struct resp_session *session, const struct resp_request *request) {
    if (resp_prefetch_key(session, request, 1, true) != PREFETCH_READY) return;
    enum store_status status =
        store_rename(store_of(session), request->argv[1], (size_t)request->lengths[1],
                     request->argv[2], (size_t)request->lengths[2], true);
    reply_condition(session, status);
    if (status == STORE_OK) {
        signal_source(session, request);
        signal_destination(session, request);
    }
}

void command_copy(struct resp_session *session, const struct resp_request *request) {
    bool replace = false;
    for (size_t i = 3; i < request->argc; i++) {
        if (argument_is(request, i, "REPLACE")) {
            replace = true;
        } else if (argument_is(request, i, "DB") && i + 1 < request->argc) {
            int64_t database;
            if (!argument_int64(session, request, ++i, &database)) return;
            if (database != 0) {
                reply_error(session, "ERR DB index is out of range");
                return;
            }
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    if (request->lengths[1] == request->lengths[2] &&
        memcmp(request->argv[1], request->argv[2], (size_t)request->lengths[1]) == 0) {
        reply_error(session, "ERR source and destination objects are the same");
        return;
    }
    if (resp_prefetch_key(session, request, 1, true) != PREFETCH_READY) return;
    enum store_status status =
        store_copy(store_of(session), request->argv[1], (size_t)request->lengths[1],
                   request->argv[2], (size_t)request->lengths[2], replace);
    reply_changed(session, status);
    if (status == STORE_OK) signal_destination(session, request);
}

/* ---- OBJECT and MEMORY: what a key takes --------------------------------------- */

/* Redis's encoding of a string value: "int" for a decimal integer as Redis's string2ll
 * reads it (no sign quirks, no leading zero, within 64 bits), "embstr" up to 44 bytes,
 * "raw" beyond. VALUE holds the whole value when LENGTH is at most 20, else NULL. */
static const char *string_encoding(const unsigned char *value, uint64_t length) {
    int64_t number;
    if (length <= 20 && value != NULL && parse_int64(value, (size_t)length, &number)) return "int";
    return length <= 44 ? "embstr" : "raw";
}

static void reply_object_encoding(struct resp_session *session, struct resp_reads *reads) {
    struct resp_read_slot *slot = &reads->slots[0];
    if (slot->status == STORE_NOT_FOUND) {
        reply_null(session);
    } else if (slot->status != STORE_OK) {
        reply_store_error(session, slot->status);
    } else if (slot->value.item != NULL) {
        struct item *item = slot->value.item;
        slot->value.item = NULL;
        reply_bulk_text(session, string_encoding(item_value(item), item_value_length(item)));
        item_release(item);
    } else {
        uint64_t length = store_stream_length(slot->value.stream);
        store_stream_close(slot->value.stream);
        slot->value.stream = NULL;
        reply_bulk_text(session, string_encoding(NULL, length));
    }
}

/* OBJECT ENCODING: a short value that lives only on flash is read to tell an integer
 * (the only case that reads flash, and counts as a read). */
static void object_encoding(struct resp_session *session, const struct resp_request *request,
                            const struct store_key_info *info) {
    if (info->type != STORE_TYPE_STRING) {
        if (resp_prefetch_key(session, request, 2, true) != PREFETCH_READY) return;
        struct item *item;
        enum store_status status = store_get_typed(store_of(session), request->argv[2],
                                                   (size_t)request->lengths[2], info->type, &item);
        if (status == STORE_OK) {
            const unsigned char *value = item_value(item);
            uint64_t length = item_value_length(item);
            reply_bulk_text(session, resp_value_encoding(session->server->environment.options,
                                                         info->type, value, length));
            item_release(item);
        } else if (status == STORE_NOT_FOUND || status == STORE_WRONG_TYPE) {
            reply_null(session); /* gone, or replaced, since the look: as if looked after */
        } else {
            reply_store_error(session, status);
        }
        return;
    }
    if (info->on_flash_only && info->value_length <= 20) {
        resp_read_values(session, request, 2, 1, NULL, reply_object_encoding);
        return;
    }
    const unsigned char *head = info->head_length == info->value_length ? info->head : NULL;
    reply_bulk_text(session, string_encoding(head, info->value_length));
}

void command_object(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Print this help.",
    };
    bool encoding = argument_is(request, 1, "ENCODING"), freq = argument_is(request, 1, "FREQ");
    bool idletime = argument_is(request, 1, "IDLETIME");
    bool refcount = argument_is(request, 1, "REFCOUNT"),
         help_asked = argument_is(request, 1, "HELP");
    if (!encoding && !freq && !idletime && !refcount && !help_asked) {
        reply_unknown_subcommand(session, request, "OBJECT");
        return;
    }
    if (request->argc != (help_asked ? 2u : 3u)) {
        reply_subcommand_arity(session, request, "object");
        return;
    }
    if (help_asked) {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
        return;
    }
    struct store_key_info info;
    if (store_key_info(store_of(session), request->argv[2], (size_t)request->lengths[2], &info) !=
        STORE_OK) {
        reply_null(session); /* as Redis 7, for every subcommand */
    } else if (encoding) {
        object_encoding(session, request, &info);
    } else if (freq) {
        reply_integer(session, info.frequency); /* S3-FIFO's count, not an LFU counter */
    } else if (idletime) {
        /* strata keeps no access time: Redis's answer when its policy keeps none. */
        reply_error(session, "ERR An LRU maxmemory policy is not selected, access time not "
                             "tracked. Please note that when switching between policies at "
                             "runtime LRU and LFU data will take some time to adjust.");
    } else {
        reply_integer(session, 1);
    }
}

void command_memory(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "USAGE <key> [SAMPLES <count>]",
        "    Return memory in bytes used by <key> and its value. Nested values are",
        "    sampled up to <count> times (default: 5, 0 means sample all).",
        "HELP",
        "    Print this help.",
    };
    if (argument_is(request, 1, "HELP") && request->argc == 2) {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    } else if (argument_is(request, 1, "USAGE") && request->argc >= 3) {
        for (size_t i = 3; i < request->argc; i++) {
            int64_t samples;
            if (argument_is(request, i, "SAMPLES") && i + 1 < request->argc) {
                /* Values are flat strings: there is nothing to sample. */
                if (!argument_int64(session, request, ++i, &samples)) return;
            } else {
                reply_syntax_error(session);
                return;
            }
        }
        struct store_key_info info;
        if (store_key_info(store_of(session), request->argv[2], (size_t)request->lengths[2],
                           &info) == STORE_OK) {
            reply_integer(session, (int64_t)info.memory_bytes);
        } else {
            reply_null(session);
        }
    } else if (argument_is(request, 1, "HELP") || argument_is(request, 1, "USAGE")) {
        reply_subcommand_arity(session, request, "memory");
    } else {
        reply_unknown_subcommand(session, request, "MEMORY");
    }
}
