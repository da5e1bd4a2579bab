/* Hashes: HSET HSETNX HMSET HGET HMGET HDEL HEXISTS HLEN HSTRLEN HKEYS HVALS HGETALL
 * HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN, with Redis 7.0's replies and errors.
 *
 * A hash is one value of type STORE_TYPE_HASH in the engine, so it is counted in the
 * budget, evicted whole, expires, renames, copies and is watched like any key. Its bytes
 * are this encoding (version 2), which only this file reads or writes:
 *
 *   u8  version (2)
 *   varint field count (base/varint.h: 7 bits a byte, one byte below 128)
 *   per field, in the order fields were first set: varint length, the field's bytes,
 *                                                  varint length, the value's bytes
 *
 * so a field and a value of up to 127 bytes each cost 2 bytes beside their own, as in
 * Redis's listpack. Version 1, which older builds wrote (and which may be on flash), is
 * still read: a u32 count and u32 lengths (little-endian) in the same places; the first
 * change rewrites it in version 2.
 *
 * A command decodes the value into an array of (field, value) views, so a lookup or a
 * change costs time linear in the hash's size: right for the small hashes of feature
 * stores and agent state (Redis keeps hashes of up to 128 fields in a flat listpack for
 * the same reason), slow for hashes of many thousands of fields. A change is a
 * compare-and-swap (resp_value_update()), so concurrent changes to one hash never lose
 * one another. The exception is HSET or HMSET giving fields the hash has values as long
 * as their old ones (fixed-width features, counters of a steady width): those overwrite
 * the stored bytes in place under the key's shard lock (overwrite_in_place()), when no
 * reader holds the value, with no decoding, copying or allocation. */
#include "base/array.h"
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/glob.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"
#include "strata_protocol.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HASH_VERSION_1      1 /* u32 count and lengths: read only */
#define HASH_VERSION_2      2 /* varint count and lengths: written */
#define HASH_V1_HEADER_SIZE 5

struct hash_entry {
    const unsigned char *field;
    const unsigned char *value;
    uint32_t field_length;
    uint32_t value_length;
    bool removed;
};

/* A hash decoded into views of its value (or of a command's arguments, for the fields a
 * change sets). */
struct hash_entries {
    struct hash_entry *entries;
    size_t count; /* entries, removed ones included */
    size_t capacity;
    size_t live; /* entries not removed */
};

static bool entries_grow(struct hash_entries *hash, size_t wanted) {
    return array_grow((void **)&hash->entries, &hash->capacity, wanted, sizeof(*hash->entries));
}

static void entries_free(struct hash_entries *hash) {
    free(hash->entries);
    *hash = (struct hash_entries){0};
}

enum decode_result { DECODED, DECODE_CORRUPT, DECODE_NO_MEMORY };

/* Decodes the LENGTH bytes at DATA (version 1 or 2) into HASH (empty on entry), whose
 * views point into DATA: it must outlive them. */
static enum decode_result hash_decode(const unsigned char *data, uint64_t length,
                                      struct hash_entries *hash) {
    const unsigned char *at = data + 1, *end = data + length;
    uint32_t count;
    bool compact;
    if (length >= 2 && data[0] == HASH_VERSION_2) {
        compact = true;
        if (!resp_value_take_count(&at, end, &count)) return DECODE_CORRUPT;
    } else if (length >= HASH_V1_HEADER_SIZE && data[0] == HASH_VERSION_1) {
        compact = false;
        count = strata_load32(at);
        at += 4;
    } else {
        return DECODE_CORRUPT;
    }
    /* Each field takes at least 2 bytes (8 in version 1): a count beyond that is damage,
     * not a size. */
    if (count > (uint64_t)(end - at) / (compact ? 2 : 8)) return DECODE_CORRUPT;
    if (!entries_grow(hash, count)) return DECODE_NO_MEMORY;
    bool (*take)(const unsigned char **, const unsigned char *, const unsigned char **,
                 uint32_t *) = compact ? resp_value_take_compact_string : resp_value_take_string;
    for (uint32_t i = 0; i < count; i++) {
        struct hash_entry *entry = &hash->entries[i];
        if (!take(&at, end, &entry->field, &entry->field_length) ||
            !take(&at, end, &entry->value, &entry->value_length)) {
            return DECODE_CORRUPT;
        }
        entry->removed = false;
    }
    if (at != end) return DECODE_CORRUPT;
    hash->count = hash->live = count;
    return DECODED;
}

/* Appends HASH's live entries, encoded in version 2, to OUTPUT. */
static void hash_encode(const struct hash_entries *hash, struct byte_buffer *output) {
    const unsigned char version = HASH_VERSION_2;
    byte_buffer_append(output, &version, 1);
    resp_value_put_count(output, (uint32_t)hash->live);
    for (size_t i = 0; i < hash->count; i++) {
        const struct hash_entry *entry = &hash->entries[i];
        if (entry->removed) continue;
        resp_value_put_compact_string(output, entry->field, entry->field_length);
        resp_value_put_compact_string(output, entry->value, entry->value_length);
    }
}

/* The live entry of FIELD (LENGTH bytes), or NULL. */
static struct hash_entry *hash_find(struct hash_entries *hash, const unsigned char *field,
                                    uint64_t length) {
    for (size_t i = 0; i < hash->count; i++) {
        struct hash_entry *entry = &hash->entries[i];
        if (!entry->removed && entry->field_length == length &&
            memcmp(entry->field, field, (size_t)length) == 0) {
            return entry;
        }
    }
    return NULL;
}

/* Sets FIELD to VALUE (views that must outlive HASH). Returns 1 when the field is new, 0
 * when it was there, -1 when out of memory. */
static int hash_set(struct hash_entries *hash, const unsigned char *field, uint64_t field_length,
                    const unsigned char *value, uint64_t value_length) {
    struct hash_entry *entry = hash_find(hash, field, field_length);
    if (entry != NULL) {
        entry->value = value;
        entry->value_length = (uint32_t)value_length;
        return 0;
    }
    if (!entries_grow(hash, hash->count + 1)) return -1;
    hash->entries[hash->count++] = (struct hash_entry){
        .field = field,
        .field_length = (uint32_t)field_length,
        .value = value,
        .value_length = (uint32_t)value_length,
    };
    hash->live++;
    return 1;
}

/* Redis's name for how it would keep a hash like this one (OBJECT ENCODING). */
const char *resp_hash_encoding(const unsigned char *value, uint64_t length, int64_t max_entries,
                               int64_t max_value) {
    struct hash_entries hash = {0};
    const char *name = "hashtable";
    if (hash_decode(value, length, &hash) == DECODED && (int64_t)hash.live <= max_entries) {
        name = "listpack";
        for (size_t i = 0; i < hash.count; i++) {
            if (hash.entries[i].field_length > max_value ||
                hash.entries[i].value_length > max_value) {
                name = "hashtable";
            }
        }
    }
    entries_free(&hash);
    return name;
}

int resp_hash_field(const unsigned char *value, uint64_t length, const unsigned char *field,
                    size_t field_length, const unsigned char **data, uint32_t *data_length) {
    struct hash_entries hash = {0};
    enum decode_result decoded = hash_decode(value, length, &hash);
    int result = decoded == DECODED ? 0 : -1;
    const struct hash_entry *entry =
        decoded == DECODED ? hash_find(&hash, field, field_length) : NULL;
    if (entry != NULL) {
        *data = entry->value;
        *data_length = entry->value_length;
        result = 1;
    }
    entries_free(&hash);
    return result;
}

/* ---- reading ---------------------------------------------------------------------- */

/* resp_value_in_dram() for the key in argument 1. */
static bool in_dram(struct resp_session *session, const struct resp_request *request) {
    return resp_value_in_dram(session, request, 1);
}

/* Reads the hash at argument 1 into *HASH (views into *ITEM, which the caller releases;
 * NULL and an empty hash when the key is absent). Returns false after replying the
 * error (WRONGTYPE, a damaged value, no memory). */
static bool read_hash(struct resp_session *session, const struct resp_request *request,
                      struct item **item, struct hash_entries *hash) {
    *hash = (struct hash_entries){0};
    if (!resp_value_read(session, request, 1, STORE_TYPE_HASH, item)) return false;
    if (*item == NULL) return true;
    enum decode_result decoded = hash_decode(item_value(*item), item_value_length(*item), hash);
    if (decoded == DECODED) return true;
    item_release(*item);
    *item = NULL;
    entries_free(hash);
    reply_error(session, decoded == DECODE_CORRUPT ? "ERR the hash's stored encoding is damaged"
                                                   : "OOM out of memory: could not read the hash");
    return false;
}

static void done_reading(struct item *item, struct hash_entries *hash) {
    entries_free(hash);
    if (item != NULL) item_release(item);
}

void command_hget(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct hash_entries hash;
    if (!in_dram(session, request) || !read_hash(session, request, &item, &hash)) return;
    const struct hash_entry *entry = hash_find(&hash, request->argv[2], request->lengths[2]);
    if (entry != NULL) {
        reply_bulk(session, entry->value, entry->value_length);
    } else {
        reply_null(session);
    }
    done_reading(item, &hash);
}

void command_hmget(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct hash_entries hash;
    if (!in_dram(session, request) || !read_hash(session, request, &item, &hash)) return;
    reply_array(session, request->argc - 2);
    for (size_t i = 2; i < request->argc; i++) {
        const struct hash_entry *entry = hash_find(&hash, request->argv[i], request->lengths[i]);
        if (entry != NULL) {
            reply_bulk(session, entry->value, entry->value_length);
        } else {
            reply_null(session);
        }
    }
    done_reading(item, &hash);
}

void command_hexists(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct hash_entries hash;
    if (!in_dram(session, request) || !read_hash(session, request, &item, &hash)) return;
    reply_integer(session, hash_find(&hash, request->argv[2], request->lengths[2]) != NULL);
    done_reading(item, &hash);
}

void command_hlen(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct hash_entries hash;
    if (!in_dram(session, request) || !read_hash(session, request, &item, &hash)) return;
    reply_integer(session, (int64_t)hash.live);
    done_reading(item, &hash);
}

void command_hstrlen(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct hash_entries hash;
    if (!in_dram(session, request) || !read_hash(session, request, &item, &hash)) return;
    const struct hash_entry *entry = hash_find(&hash, request->argv[2], request->lengths[2]);
    reply_integer(session, entry != NULL ? (int64_t)entry->value_length : 0);
    done_reading(item, &hash);
}

enum listing { LIST_FIELDS = 1, LIST_VALUES = 2, LIST_BOTH = 3 };

/* HKEYS, HVALS, HGETALL: every field, value, or both (a map in RESP3). */
static void list_hash(struct resp_session *session, const struct resp_request *request,
                      enum listing listing) {
    struct item *item;
    struct hash_entries hash;
    if (!in_dram(session, request) || !read_hash(session, request, &item, &hash)) return;
    if (listing == LIST_BOTH) {
        reply_map(session, hash.live);
    } else {
        reply_array(session, hash.live);
    }
    for (size_t i = 0; i < hash.count; i++) {
        const struct hash_entry *entry = &hash.entries[i];
        if (listing & LIST_FIELDS) reply_bulk(session, entry->field, entry->field_length);
        if (listing & LIST_VALUES) reply_bulk(session, entry->value, entry->value_length);
    }
    done_reading(item, &hash);
}

void command_hkeys(struct resp_session *session, const struct resp_request *request) {
    list_hash(session, request, LIST_FIELDS);
}

void command_hvals(struct resp_session *session, const struct resp_request *request) {
    list_hash(session, request, LIST_VALUES);
}

void command_hgetall(struct resp_session *session, const struct resp_request *request) {
    list_hash(session, request, LIST_BOTH);
}

/* A small per-thread generator (xorshift64*) for HRANDFIELD, seeded on first use. */
static uint64_t random_next(void) {
    static _Thread_local uint64_t state;
    if (state == 0) state = (uint64_t)clock_monotonic_ns() | 1;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ULL;
}

static void reply_field(struct resp_session *session, const struct hash_entry *entry,
                        bool with_values) {
    if (with_values && session->protocol == 3) reply_array(session, 2); /* RESP3: pairs */
    reply_bulk(session, entry->field, entry->field_length);
    if (with_values) reply_bulk(session, entry->value, entry->value_length);
}

/* HRANDFIELD key [count [WITHVALUES]]: one field (nil when absent); with a count, that
 * many distinct fields (at most the hash's), or with a negative count that many drawn
 * with repeats. */
void command_hrandfield(struct resp_session *session, const struct resp_request *request) {
    int64_t count = 0;
    bool with_count = request->argc >= 3, with_values = false;
    if (request->argc > 4 || (request->argc == 4 && !argument_is(request, 3, "WITHVALUES"))) {
        reply_syntax_error(session);
        return;
    }
    with_values = request->argc == 4;
    if (with_count && !argument_int64(session, request, 2, &count)) return;
    /* As Redis: a count whose pairs could not even be counted is out of range. */
    if (count < -(INT64_MAX / 2) || count > INT64_MAX / 2) {
        reply_error(session, "ERR value is out of range");
        return;
    }
    struct item *item;
    struct hash_entries hash;
    if (!in_dram(session, request) || !read_hash(session, request, &item, &hash)) return;
    /* Live entries only: a read never removes any, so they are all of them. */
    size_t size = hash.count;
    if (!with_count) {
        if (size == 0) {
            reply_null(session);
        } else {
            reply_field(session, &hash.entries[random_next() % size], false);
        }
    } else if (size == 0 || count == 0) {
        reply_array(session, 0);
    } else if (count < 0) {
        uint64_t wanted = (uint64_t)-count;
        reply_array(session, with_values && session->protocol != 3 ? wanted * 2 : wanted);
        for (uint64_t i = 0; i < wanted; i++)
            reply_field(session, &hash.entries[random_next() % size], with_values);
    } else {
        size_t wanted = (uint64_t)count < size ? (size_t)count : size;
        /* The first WANTED of a partial Fisher-Yates shuffle of the entries. */
        for (size_t i = 0; i < wanted && wanted < size; i++) {
            size_t j = i + (size_t)(random_next() % (size - i));
            struct hash_entry swap = hash.entries[i];
            hash.entries[i] = hash.entries[j];
            hash.entries[j] = swap;
        }
        reply_array(session, with_values && session->protocol != 3 ? wanted * 2 : wanted);
        for (size_t i = 0; i < wanted; i++)
            reply_field(session, &hash.entries[i], with_values);
    }
    done_reading(item, &hash);
}

/* HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]: as Redis does for a hash in
 * its compact encoding, the whole hash in one reply with cursor 0 (COUNT is checked and
 * otherwise a hint, as in Redis). */
void command_hscan(struct resp_session *session, const struct resp_request *request) {
    uint64_t cursor;
    if (!parse_uint64(request->argv[2], (size_t)request->lengths[2], &cursor)) {
        reply_error(session, "ERR invalid cursor");
        return;
    }
    const unsigned char *pattern = NULL;
    size_t pattern_length = 0;
    bool values = true;
    for (size_t i = 3; i < request->argc; i++) {
        bool has_value = i + 1 < request->argc;
        if (argument_is(request, i, "COUNT") && has_value) {
            int64_t count;
            if (!argument_int64(session, request, ++i, &count)) return;
            if (count < 1) {
                reply_syntax_error(session);
                return;
            }
        } else if (argument_is(request, i, "MATCH") && has_value) {
            i++;
            pattern = request->argv[i];
            pattern_length = (size_t)request->lengths[i];
        } else if (argument_is(request, i, "NOVALUES")) {
            values = false;
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    struct item *item;
    struct hash_entries hash;
    if (!in_dram(session, request) || !read_hash(session, request, &item, &hash)) return;
    size_t matching = 0;
    for (size_t i = 0; i < hash.count; i++) {
        struct hash_entry *entry = &hash.entries[i];
        entry->removed = pattern != NULL &&
                         !glob_match(pattern, pattern_length, entry->field, entry->field_length);
        if (!entry->removed) matching++;
    }
    reply_array(session, 2);
    reply_bulk_text(session, "0");
    reply_array(session, values ? matching * 2 : matching);
    for (size_t i = 0; i < hash.count; i++) {
        const struct hash_entry *entry = &hash.entries[i];
        if (entry->removed) continue;
        reply_bulk(session, entry->field, entry->field_length);
        if (values) reply_bulk(session, entry->value, entry->value_length);
    }
    done_reading(item, &hash);
}

/* ---- changing ----------------------------------------------------------------------- */

/* A change to a hash, computed by a command's edit function from the current hash. */
struct hash_change {
    struct hash_entries hash; /* the hash, changed in place */
    bool changed;             /* something to store */
    int64_t integer;          /* the reply, for commands that answer a number */
    char text[5200]; /* a number the change stores and answers (HINCRBY[FLOAT]; any long double
                        fits) */
    size_t text_length;
};

/* Applies the command to CHANGE->hash. Returns true to go on (store it if changed, then
 * reply), false after replying itself (an error). */
typedef bool (*hash_edit_fn)(struct resp_session *session, const struct resp_request *request,
                             struct hash_change *change);

/* Replies once the change is stored (or needed storing nothing). */
typedef void (*hash_reply_fn)(struct resp_session *session, const struct hash_change *change);

/* What update_hash() hands resp_value_update(): the command's edit and reply, and the
 * attempt's hash. */
struct hash_update {
    hash_edit_fn edit;
    hash_reply_fn reply;
    struct hash_change change;
};

static bool hash_update_edit(struct resp_session *session, const struct resp_request *request,
                             struct resp_value_change *value) {
    struct hash_update *update = value->context;
    update->change = (struct hash_change){0};
    enum decode_result decoded =
        value->exists ? hash_decode(value->value, value->length, &update->change.hash) : DECODED;
    if (decoded != DECODED) {
        reply_error(session, decoded == DECODE_CORRUPT
                                 ? "ERR the hash's stored encoding is damaged"
                                 : "OOM out of memory: could not read the hash");
        return false;
    }
    if (!update->edit(session, request, &update->change)) return false;
    if (!update->change.changed) return true;
    if (update->change.hash.live == 0) {
        value->outcome = RESP_VALUE_DELETE;
    } else {
        value->outcome = RESP_VALUE_STORE;
        hash_encode(&update->change.hash, &value->encoded);
    }
    return true;
}

static void hash_update_reply(struct resp_session *session, const struct resp_value_change *value) {
    struct hash_update *update = value->context;
    update->reply(session, &update->change);
}

static void hash_update_discard(struct resp_value_change *value) {
    struct hash_update *update = value->context;
    entries_free(&update->change.hash);
}

/* Runs a change on the hash at argument 1 (resp_value_update()): EDIT changes the
 * decoded hash, REPLY answers once it is stored. A hash left with no field is deleted,
 * as in Redis. */
static void update_hash(struct resp_session *session, const struct resp_request *request,
                        hash_edit_fn edit, hash_reply_fn reply) {
    static const struct resp_value_ops ops = {STORE_TYPE_HASH, hash_update_edit, hash_update_reply,
                                              hash_update_discard};
    struct hash_update update = {.edit = edit, .reply = reply};
    resp_value_update(session, request, 1, &ops, &update);
}

static void reply_change_integer(struct resp_session *session, const struct hash_change *change) {
    reply_integer(session, change->integer);
}

static void reply_change_ok(struct resp_session *session, const struct hash_change *change) {
    (void)change;
    reply_ok(session);
}

static void reply_change_text(struct resp_session *session, const struct hash_change *change) {
    reply_bulk(session, change->text, change->text_length);
}

/* Field and value lengths are stored in 32 bits. */
static bool lengths_fit(struct resp_session *session, const struct resp_request *request,
                        size_t first) {
    for (size_t i = first; i < request->argc; i++) {
        if (request->lengths[i] > UINT32_MAX) {
            reply_error(session, "ERR a hash field or value is longer than 4 GiB");
            return false;
        }
    }
    return true;
}

/* HSET and HMSET: the field/value pairs from argument 2; INTEGER counts new fields. */
static bool edit_set(struct resp_session *session, const struct resp_request *request,
                     struct hash_change *change) {
    for (size_t i = 2; i + 1 < request->argc; i += 2) {
        int added = hash_set(&change->hash, request->argv[i], request->lengths[i],
                             request->argv[i + 1], request->lengths[i + 1]);
        if (added < 0) {
            reply_error(session, "OOM out of memory: could not change the hash");
            return false;
        }
        change->integer += added;
    }
    change->changed = true;
    return true;
}

static bool pairs_ok(struct resp_session *session, const struct resp_request *request,
                     const char *name) {
    if (request->argc % 2 != 0) {
        reply_wrong_arity(session, name);
        return false;
    }
    return lengths_fit(session, request, 2);
}

/* Where the value of FIELD (FIELD_LENGTH bytes) lies in the COUNT fields of a version-2
 * hash that start at START and end at END: sets *VALUE and *VALUE_LENGTH and returns
 * true, or returns false when the field is not there (or the bytes are damaged). */
static bool find_stored_value(const unsigned char *start, const unsigned char *end, uint32_t count,
                              const unsigned char *field, uint64_t field_length,
                              const unsigned char **value, uint32_t *value_length) {
    const unsigned char *at = start;
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *name;
        uint32_t name_length;
        if (!resp_value_take_compact_string(&at, end, &name, &name_length) ||
            !resp_value_take_compact_string(&at, end, value, value_length)) {
            return false;
        }
        if (name_length == field_length && memcmp(name, field, name_length) == 0) return true;
    }
    return false;
}

/* The store_edit_fn of overwrite_in_place(): CONTEXT is the HSET or HMSET request. Sets
 * each of its fields to its new value in the stored bytes when every field is there
 * with a value of the new value's length (checked for all before any is written, so a
 * decline changes nothing); declines otherwise (a new field, another length, a version-1
 * hash), and the command takes the read-modify-write path. */
static bool edit_overwrite(void *context, unsigned char *data, uint64_t *length,
                           uint64_t capacity) {
    (void)capacity; /* the length stays */
    const struct resp_request *request = context;
    if (*length < 2 || data[0] != HASH_VERSION_2) return false;
    const unsigned char *start = data + 1, *end = data + *length;
    uint32_t count;
    if (!resp_value_take_count(&start, end, &count)) return false;
    for (int writing = 0; writing < 2; writing++) {
        for (size_t i = 2; i + 1 < request->argc; i += 2) {
            const unsigned char *value;
            uint32_t value_length;
            if (!find_stored_value(start, end, count, request->argv[i], request->lengths[i], &value,
                                   &value_length) ||
                value_length != request->lengths[i + 1]) {
                return false; /* (found in the first pass, so in the second) */
            }
            if (writing) memcpy(data + (value - data), request->argv[i + 1], value_length);
        }
    }
    return true;
}

/* HSET and HMSET that only give fields the hash has new values of the old values'
 * lengths change the stored bytes in place, under the key's shard lock
 * (store_overwrite_in_place()), with no decoding, copying or allocation: a feature store
 * updating fixed-width features, or redis-benchmark's HSET. Returns true when it is over
 * (set and replied: no field was added; or WRONGTYPE replied), false when the command
 * must take the read-modify-write path (absent key, a new field, another length, a hash
 * on flash or shared with a reader). */
static bool overwrite_in_place(struct resp_session *session, const struct resp_request *request,
                               bool reply_count) {
    enum store_status status =
        store_overwrite_in_place(store_of(session), request->argv[1], (size_t)request->lengths[1],
                                 STORE_TYPE_HASH, edit_overwrite, (void *)request);
    if (status == STORE_WRONG_TYPE) {
        reply_store_error(session, status);
        return true;
    }
    if (status != STORE_OK) return false;
    if (reply_count) {
        reply_integer(session, 0);
    } else {
        reply_ok(session);
    }
    return true;
}

void command_hset(struct resp_session *session, const struct resp_request *request) {
    if (pairs_ok(session, request, "hset") && !overwrite_in_place(session, request, true))
        update_hash(session, request, edit_set, reply_change_integer);
}

void command_hmset(struct resp_session *session, const struct resp_request *request) {
    if (pairs_ok(session, request, "hmset") && !overwrite_in_place(session, request, false))
        update_hash(session, request, edit_set, reply_change_ok);
}

static bool edit_setnx(struct resp_session *session, const struct resp_request *request,
                       struct hash_change *change) {
    if (hash_find(&change->hash, request->argv[2], request->lengths[2]) != NULL) return true;
    if (hash_set(&change->hash, request->argv[2], request->lengths[2], request->argv[3],
                 request->lengths[3]) < 0) {
        reply_error(session, "OOM out of memory: could not change the hash");
        return false;
    }
    change->integer = 1;
    change->changed = true;
    return true;
}

void command_hsetnx(struct resp_session *session, const struct resp_request *request) {
    if (lengths_fit(session, request, 2))
        update_hash(session, request, edit_setnx, reply_change_integer);
}

static bool edit_delete(struct resp_session *session, const struct resp_request *request,
                        struct hash_change *change) {
    (void)session;
    for (size_t i = 2; i < request->argc; i++) {
        struct hash_entry *entry = hash_find(&change->hash, request->argv[i], request->lengths[i]);
        if (entry == NULL) continue;
        entry->removed = true;
        change->hash.live--;
        change->integer++;
        change->changed = true;
    }
    return true;
}

void command_hdel(struct resp_session *session, const struct resp_request *request) {
    update_hash(session, request, edit_delete, reply_change_integer);
}

/* Stores CHANGE->text under the field in argument 2. */
static bool set_text(struct resp_session *session, const struct resp_request *request,
                     struct hash_change *change) {
    if (hash_set(&change->hash, request->argv[2], request->lengths[2],
                 (const unsigned char *)change->text, change->text_length) < 0) {
        reply_error(session, "OOM out of memory: could not change the hash");
        return false;
    }
    change->changed = true;
    return true;
}

static bool edit_increment(struct resp_session *session, const struct resp_request *request,
                           struct hash_change *change) {
    int64_t delta, current = 0;
    if (!argument_int64(session, request, 3, &delta)) return false;
    const struct hash_entry *entry =
        hash_find(&change->hash, request->argv[2], request->lengths[2]);
    if (entry != NULL && !parse_int64(entry->value, entry->value_length, &current)) {
        reply_error(session, "ERR hash value is not an integer");
        return false;
    }
    if ((delta > 0 && current > INT64_MAX - delta) || (delta < 0 && current < INT64_MIN - delta)) {
        reply_error(session, "ERR increment or decrement would overflow");
        return false;
    }
    change->integer = current + delta;
    change->text_length = format_int64(change->text, change->integer);
    return set_text(session, request, change);
}

void command_hincrby(struct resp_session *session, const struct resp_request *request) {
    update_hash(session, request, edit_increment, reply_change_integer);
}

static bool edit_increment_float(struct resp_session *session, const struct resp_request *request,
                                 struct hash_change *change) {
    long double delta, current = 0;
    if (!parse_long_double(request->argv[3], (size_t)request->lengths[3], &delta)) {
        reply_error(session, "ERR value is not a valid float");
        return false;
    }
    const struct hash_entry *entry =
        hash_find(&change->hash, request->argv[2], request->lengths[2]);
    if (entry != NULL && !parse_long_double(entry->value, entry->value_length, &current)) {
        reply_error(session, "ERR hash value is not a float");
        return false;
    }
    change->text_length = format_long_double(change->text, sizeof(change->text), current + delta);
    if (change->text_length == 0) {
        reply_error(session, "ERR increment would produce NaN or Infinity");
        return false;
    }
    return set_text(session, request, change);
}

void command_hincrbyfloat(struct resp_session *session, const struct resp_request *request) {
    /* As Redis: the increment is checked before the key's type. */
    long double delta;
    if (!parse_long_double(request->argv[3], (size_t)request->lengths[3], &delta)) {
        reply_error(session, "ERR value is not a valid float");
        return;
    }
    if (isnan(delta) || isinf(delta)) {
        reply_error(session, "ERR value is NaN or Infinity");
        return;
    }
    update_hash(session, request, edit_increment_float, reply_change_text);
}
