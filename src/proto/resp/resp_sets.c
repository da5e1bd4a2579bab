/* Sets: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SMOVE SSCAN SINTER
 * SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE SINTERCARD, with Redis 7.0's replies and
 * errors.
 *
 * A set is one value of type STORE_TYPE_SET in the engine, so it is counted in the
 * budget, evicted whole, expires, renames, copies and is watched like any key. Its bytes
 * are this encoding (version 2), which only this file reads or writes:
 *
 *   u8  version (2)
 *   varint member count (base/varint.h: 7 bits a byte, one byte below 128)
 *   per member, in the order members were added: varint length, the member's bytes
 *
 * Version 1, which older builds wrote (and which may be on flash), is still read: a u32
 * count and u32 lengths (little-endian) in the same places; the first change rewrites
 * it in version 2.
 *
 * A command decodes the value into an array of member views. A set of up to
 * SMALL_SET_MEMBERS members is searched linearly; a larger one gets a temporary
 * open-addressing hash table of those views on its first lookup, so adding N members to
 * a set of M costs O(N + M), not O(N * M). Every command still reads (and a change
 * rewrites) the whole value: time grows with the set's size. A change to one set is a
 * compare-and-swap (resp_value_update()); SMOVE and the STORE forms, which read several
 * keys and write one or two, run with the session's exclusivity (resp_exclusive_begin()). */
#include "base/array.h"
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/glob.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"
#include "strata_protocol.h"

#include <stdlib.h>
#include <string.h>

#define SET_VERSION_1      1 /* u32 count and lengths: read only */
#define SET_VERSION_2      2 /* varint count and lengths: written */
#define SET_V1_HEADER_SIZE 5
/* Up to this many members a lookup scans; beyond, it builds a hash table first. */
#define SMALL_SET_MEMBERS 64
#define UPDATE_ATTEMPTS   100

struct set_member {
    const unsigned char *data;
    uint32_t length;
    bool removed;
};

/* A set decoded into views of its value (or of a command's arguments, for the members a
 * change adds). */
struct set_members {
    struct set_member *members;
    size_t count; /* members, removed ones included */
    size_t capacity;
    size_t live;       /* members not removed */
    uint32_t *index;   /* open addressing: a member's position + 1, 0 for an empty slot;
                          NULL until a lookup in a set of more than SMALL_SET_MEMBERS */
    size_t index_size; /* slots, a power of two, or 0 */
};

static bool members_grow(struct set_members *set, size_t wanted) {
    if (wanted > UINT32_MAX - 1) return false; /* the encoding counts in 32 bits */
    return array_grow((void **)&set->members, &set->capacity, wanted, sizeof(*set->members));
}

static void set_free(struct set_members *set) {
    free(set->members);
    free(set->index);
    *set = (struct set_members){0};
}

static uint64_t member_hash(const unsigned char *data, size_t length) {
    uint64_t hash = 14695981039346656037ULL; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < length; i++)
        hash = (hash ^ data[i]) * 1099511628211ULL;
    hash ^= hash >> 32;
    hash *= 0x9E3779B97F4A7C15ULL;
    return hash ^ (hash >> 29);
}

/* Puts the member at POSITION into SET's index (which has room). */
static void index_insert(struct set_members *set, size_t position) {
    const struct set_member *member = &set->members[position];
    size_t mask = set->index_size - 1;
    size_t slot = (size_t)member_hash(member->data, member->length) & mask;
    while (set->index[slot] != 0)
        slot = (slot + 1) & mask;
    set->index[slot] = (uint32_t)(position + 1);
}

/* (Re)builds SET's index with room for twice its members. Returns false when out of
 * memory (the set then stays searchable linearly, without an index). */
static bool index_build(struct set_members *set) {
    size_t size = 16;
    while (size < set->capacity * 2)
        size *= 2;
    uint32_t *index = calloc(size, sizeof(*index));
    if (index == NULL) {
        free(set->index);
        set->index = NULL;
        set->index_size = 0;
        return false;
    }
    free(set->index);
    set->index = index;
    set->index_size = size;
    for (size_t i = 0; i < set->count; i++)
        if (!set->members[i].removed) index_insert(set, i);
    return true;
}

enum decode_result { DECODED, DECODE_CORRUPT, DECODE_NO_MEMORY };

/* Decodes the LENGTH bytes at DATA (version 1 or 2) into SET (empty on entry), whose
 * views point into DATA: it must outlive them. */
static enum decode_result set_decode(const unsigned char *data, uint64_t length,
                                     struct set_members *set) {
    const unsigned char *at = data + 1, *end = data + length;
    uint32_t count;
    bool compact;
    if (length >= 2 && data[0] == SET_VERSION_2) {
        compact = true;
        if (!resp_value_take_count(&at, end, &count)) return DECODE_CORRUPT;
    } else if (length >= SET_V1_HEADER_SIZE && data[0] == SET_VERSION_1) {
        compact = false;
        count = strata_load32(at);
        at += 4;
    } else {
        return DECODE_CORRUPT;
    }
    /* Each member takes at least 1 byte (4 in version 1): a count beyond that is damage,
     * not a size. */
    if (count > (uint64_t)(end - at) / (compact ? 1 : 4)) return DECODE_CORRUPT;
    if (!members_grow(set, count)) return DECODE_NO_MEMORY;
    bool (*take)(const unsigned char **, const unsigned char *, const unsigned char **,
                 uint32_t *) = compact ? resp_value_take_compact_string : resp_value_take_string;
    for (uint32_t i = 0; i < count; i++) {
        struct set_member *member = &set->members[i];
        if (!take(&at, end, &member->data, &member->length)) return DECODE_CORRUPT;
        member->removed = false;
    }
    if (at != end) return DECODE_CORRUPT;
    set->count = set->live = count;
    return DECODED;
}

/* Appends SET's live members, encoded in version 2, to OUTPUT. */
static void set_encode(const struct set_members *set, struct byte_buffer *output) {
    const unsigned char version = SET_VERSION_2;
    byte_buffer_append(output, &version, 1);
    resp_value_put_count(output, (uint32_t)set->live);
    for (size_t i = 0; i < set->count; i++) {
        const struct set_member *member = &set->members[i];
        if (member->removed) continue;
        resp_value_put_compact_string(output, member->data, member->length);
    }
}

/* The live member equal to DATA (LENGTH bytes), or NULL. A set larger than
 * SMALL_SET_MEMBERS is indexed on its first lookup. NULL SET: the empty set. */
static struct set_member *set_find(struct set_members *set, const unsigned char *data,
                                   uint64_t length) {
    if (set == NULL) return NULL;
    if (set->index == NULL && set->count > SMALL_SET_MEMBERS) index_build(set);
    if (set->index != NULL) {
        size_t mask = set->index_size - 1;
        for (size_t slot = (size_t)member_hash(data, (size_t)length) & mask; set->index[slot] != 0;
             slot = (slot + 1) & mask) {
            struct set_member *member = &set->members[set->index[slot] - 1];
            if (!member->removed && member->length == length &&
                memcmp(member->data, data, (size_t)length) == 0) {
                return member;
            }
        }
        return NULL;
    }
    for (size_t i = 0; i < set->count; i++) {
        struct set_member *member = &set->members[i];
        if (!member->removed && member->length == length &&
            memcmp(member->data, data, (size_t)length) == 0) {
            return member;
        }
    }
    return NULL;
}

/* Appends DATA (a view that must outlive SET), known not to be a live member. Returns
 * false when out of memory. */
static bool set_append(struct set_members *set, const unsigned char *data, uint64_t length) {
    if (!members_grow(set, set->count + 1)) return false;
    set->members[set->count++] =
        (struct set_member){.data = data, .length = (uint32_t)length, .removed = false};
    set->live++;
    if (set->index != NULL) {
        if (set->count * 2 > set->index_size) {
            index_build(set); /* out of memory: linear from now on */
        } else {
            index_insert(set, set->count - 1);
        }
    }
    return true;
}

/* Adds DATA (a view that must outlive SET). Returns 1 when it is new, 0 when it was a
 * member, -1 when out of memory. */
static int set_add(struct set_members *set, const unsigned char *data, uint64_t length) {
    if (set_find(set, data, length) != NULL) return 0;
    return set_append(set, data, length) ? 1 : -1;
}

/* Removes DATA. Returns whether it was a member. */
static bool set_remove(struct set_members *set, const unsigned char *data, uint64_t length) {
    struct set_member *member = set_find(set, data, length);
    if (member == NULL) return false;
    member->removed = true;
    set->live--;
    return true;
}

const char *resp_set_encoding(const unsigned char *value, uint64_t length,
                              int64_t max_intset_entries) {
    struct set_members set = {0};
    const char *name = "hashtable";
    if (set_decode(value, length, &set) == DECODED && (int64_t)set.live <= max_intset_entries) {
        name = "intset";
        for (size_t i = 0; i < set.count; i++) {
            int64_t number;
            if (!parse_int64(set.members[i].data, set.members[i].length, &number)) {
                name = "hashtable";
                break;
            }
        }
    }
    set_free(&set);
    return name;
}

int resp_set_each_member(const unsigned char *value, uint64_t length,
                         bool (*visit)(void *context, const unsigned char *member,
                                       uint32_t member_length),
                         void *context) {
    struct set_members set = {0};
    enum decode_result decoded = set_decode(value, length, &set);
    int result = decoded == DECODED ? 1 : decoded == DECODE_CORRUPT ? 0 : -1;
    for (size_t i = 0; i < set.count && result == 1; i++)
        if (!visit(context, set.members[i].data, set.members[i].length)) result = -1;
    set_free(&set);
    return result;
}

/* A small per-thread generator (xorshift64*) for SPOP and SRANDMEMBER, seeded on first
 * use. */
static uint64_t random_next(void) {
    static _Thread_local uint64_t state;
    if (state == 0) state = (uint64_t)clock_monotonic_ns() | 1;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ULL;
}

/* Moves the live members of SET to its front (dropping removed ones and the index), so
 * that members[0 .. live) are exactly the set. */
static void set_compact(struct set_members *set) {
    size_t kept = 0;
    for (size_t i = 0; i < set->count; i++)
        if (!set->members[i].removed) set->members[kept++] = set->members[i];
    set->count = kept;
    free(set->index);
    set->index = NULL;
    set->index_size = 0;
}

/* Shuffles the first WANTED places of SET (compacted) with a partial Fisher-Yates: they
 * become WANTED distinct members drawn at random. */
static void set_draw(struct set_members *set, size_t wanted) {
    size_t size = set->count;
    for (size_t i = 0; i < wanted && i + 1 < size; i++) {
        size_t j = i + (size_t)(random_next() % (size - i));
        struct set_member swap = set->members[i];
        set->members[i] = set->members[j];
        set->members[j] = swap;
    }
}

static void reply_member(struct resp_session *session, const struct set_member *member) {
    reply_bulk(session, member->data, member->length);
}

/* Replies SET's live members: a set in RESP3 (SMEMBERS, SINTER...), as Redis does, or an
 * array (AS_ARRAY: SSCAN). */
static void reply_members(struct resp_session *session, const struct set_members *set,
                          bool as_array) {
    if (as_array) {
        reply_array(session, set->live);
    } else {
        reply_set(session, set->live);
    }
    for (size_t i = 0; i < set->count; i++)
        if (!set->members[i].removed) reply_member(session, &set->members[i]);
}

static void reply_damaged(struct resp_session *session, enum decode_result decoded) {
    reply_error(session, decoded == DECODE_CORRUPT ? "ERR the set's stored encoding is damaged"
                                                   : "OOM out of memory: could not read the set");
}

static void reply_no_memory(struct resp_session *session) {
    reply_error(session, "OOM out of memory: could not change the set");
}

/* ---- reading ---------------------------------------------------------------------- */

/* resp_value_in_dram() for the key in argument 1. */
static bool in_dram(struct resp_session *session, const struct resp_request *request) {
    return resp_value_in_dram(session, request, 1);
}

/* Brings the keys at arguments FIRST .. LAST to DRAM before a command reads several
 * sets (resp_prefetch_key(): the first key found is held until the command ends).
 * Returns true when the command can go on; false when a flash read started (the
 * command runs again once it ends) or failed (replied). On the run that follows every
 * key answers ready without a look: one that left DRAM meanwhile (rare) is read back
 * from flash by store_get_typed(), the worker waiting for that read. */
static bool keys_in_dram(struct resp_session *session, const struct resp_request *request,
                         size_t first, size_t last) {
    for (size_t i = first; i <= last; i++)
        if (!resp_value_in_dram(session, request, i)) return false;
    return true;
}

/* Reads the set at argument INDEX into *SET (views into *ITEM, which the caller releases;
 * NULL and an empty set when the key is absent). Returns false after replying the error
 * (WRONGTYPE, a damaged value, no memory). */
static bool read_set(struct resp_session *session, const struct resp_request *request, size_t index,
                     struct item **item, struct set_members *set) {
    *set = (struct set_members){0};
    if (!resp_value_read(session, request, index, STORE_TYPE_SET, item)) return false;
    if (*item == NULL) return true;
    enum decode_result decoded = set_decode(item_value(*item), item_value_length(*item), set);
    if (decoded == DECODED) return true;
    item_release(*item);
    *item = NULL;
    set_free(set);
    reply_damaged(session, decoded);
    return false;
}

static void done_reading(struct item *item, struct set_members *set) {
    set_free(set);
    if (item != NULL) item_release(item);
}

void command_smembers(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct set_members set;
    if (!in_dram(session, request) || !read_set(session, request, 1, &item, &set)) return;
    reply_members(session, &set, false);
    done_reading(item, &set);
}

void command_sismember(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct set_members set;
    if (!in_dram(session, request) || !read_set(session, request, 1, &item, &set)) return;
    reply_integer(session, set_find(&set, request->argv[2], request->lengths[2]) != NULL);
    done_reading(item, &set);
}

void command_smismember(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct set_members set;
    if (!in_dram(session, request) || !read_set(session, request, 1, &item, &set)) return;
    reply_array(session, request->argc - 2);
    for (size_t i = 2; i < request->argc; i++)
        reply_integer(session, set_find(&set, request->argv[i], request->lengths[i]) != NULL);
    done_reading(item, &set);
}

void command_scard(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct set_members set;
    if (!in_dram(session, request) || !read_set(session, request, 1, &item, &set)) return;
    reply_integer(session, (int64_t)set.live);
    done_reading(item, &set);
}

/* SRANDMEMBER key [count]: one member (nil when absent); with a count, that many
 * distinct members (at most the set's), or with a negative count that many drawn with
 * repeats. */
void command_srandmember(struct resp_session *session, const struct resp_request *request) {
    int64_t count = 0;
    bool with_count = request->argc == 3;
    if (request->argc > 3) {
        reply_syntax_error(session);
        return;
    }
    if (with_count && !argument_int64(session, request, 2, &count)) return;
    if (count == INT64_MIN) {
        reply_error(session, "ERR value is out of range, value must between -9223372036854775807 "
                             "and 9223372036854775807");
        return;
    }
    struct item *item;
    struct set_members set;
    if (!in_dram(session, request) || !read_set(session, request, 1, &item, &set)) return;
    size_t size = set.count; /* a read removes nothing: every member is live */
    if (!with_count) {
        if (size == 0) {
            reply_null(session);
        } else {
            reply_member(session, &set.members[random_next() % size]);
        }
    } else if (size == 0 || count == 0) {
        reply_array(session, 0);
    } else if (count < 0) {
        uint64_t wanted = (uint64_t)-count;
        reply_array(session, wanted);
        for (uint64_t i = 0; i < wanted; i++)
            reply_member(session, &set.members[random_next() % size]);
    } else {
        size_t wanted = (uint64_t)count < size ? (size_t)count : size;
        set_draw(&set, wanted);
        reply_array(session, wanted);
        for (size_t i = 0; i < wanted; i++)
            reply_member(session, &set.members[i]);
    }
    done_reading(item, &set);
}

/* SSCAN key cursor [MATCH pattern] [COUNT count]: as Redis does for a set in its compact
 * encoding, the whole set in one reply with cursor 0 (COUNT is checked and otherwise a
 * hint). A missing key answers an empty scan before the options are looked at, as in
 * Redis. */
void command_sscan(struct resp_session *session, const struct resp_request *request) {
    uint64_t cursor;
    if (!parse_uint64(request->argv[2], (size_t)request->lengths[2], &cursor)) {
        reply_error(session, "ERR invalid cursor");
        return;
    }
    struct item *item;
    struct set_members set;
    if (!in_dram(session, request) || !read_set(session, request, 1, &item, &set)) return;
    const unsigned char *pattern = NULL;
    size_t pattern_length = 0;
    for (size_t i = 3; item != NULL && i < request->argc; i++) {
        bool has_value = i + 1 < request->argc;
        if (argument_is(request, i, "COUNT") && has_value) {
            int64_t count;
            if (!argument_int64(session, request, ++i, &count)) {
                done_reading(item, &set);
                return;
            }
            if (count < 1) {
                reply_syntax_error(session);
                done_reading(item, &set);
                return;
            }
        } else if (argument_is(request, i, "MATCH") && has_value) {
            i++;
            pattern = request->argv[i];
            pattern_length = (size_t)request->lengths[i];
        } else {
            reply_syntax_error(session);
            done_reading(item, &set);
            return;
        }
    }
    for (size_t i = 0; i < set.count && pattern != NULL; i++) {
        struct set_member *member = &set.members[i];
        if (!glob_match(pattern, pattern_length, member->data, member->length)) {
            member->removed = true;
            set.live--;
        }
    }
    reply_array(session, 2);
    reply_bulk_text(session, "0");
    reply_members(session, &set, true);
    done_reading(item, &set);
}

/* ---- several sets: SINTER SUNION SDIFF, their STORE forms, SINTERCARD ------------- */

/* The sets a command combines, read from consecutive arguments. */
struct set_inputs {
    size_t count;
    struct item **items;      /* NULL for an absent key */
    struct set_members *sets; /* empty for an absent key */
};

static void inputs_free(struct set_inputs *inputs) {
    for (size_t i = 0; i < inputs->count; i++)
        done_reading(inputs->items[i], &inputs->sets[i]);
    free(inputs->items);
    free(inputs->sets);
    *inputs = (struct set_inputs){0};
}

/* Reads the sets at arguments FIRST .. FIRST + COUNT - 1 (in DRAM already) into INPUTS,
 * which the caller frees with inputs_free(). Returns false after replying an error
 * (WRONGTYPE for any key of another type, as Redis checks every key). */
static bool read_inputs(struct resp_session *session, const struct resp_request *request,
                        size_t first, size_t count, struct set_inputs *inputs) {
    *inputs = (struct set_inputs){0};
    inputs->items = calloc(count, sizeof(*inputs->items));
    inputs->sets = calloc(count, sizeof(*inputs->sets));
    if (inputs->items == NULL || inputs->sets == NULL) {
        free(inputs->items);
        free(inputs->sets);
        *inputs = (struct set_inputs){0};
        reply_damaged(session, DECODE_NO_MEMORY);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        if (!read_set(session, request, first + i, &inputs->items[i], &inputs->sets[i])) {
            inputs_free(inputs);
            return false;
        }
        inputs->count = i + 1;
    }
    return true;
}

enum set_operation { SET_INTER, SET_UNION, SET_DIFF };

/* Combines INPUTS by OPERATION into RESULT (empty on entry; views into the inputs, which
 * must outlive it), stopping at LIMIT members when LIMIT is not 0 (SINTERCARD). Returns
 * false when out of memory. */
static bool combine(struct set_inputs *inputs, enum set_operation operation, uint64_t limit,
                    struct set_members *result) {
    if (operation == SET_UNION) {
        for (size_t i = 0; i < inputs->count; i++) {
            const struct set_members *set = &inputs->sets[i];
            for (size_t j = 0; j < set->count; j++)
                if (set_add(result, set->members[j].data, set->members[j].length) < 0) return false;
        }
        return true;
    }
    size_t base = 0; /* the set whose members are candidates */
    if (operation == SET_INTER) {
        for (size_t i = 0; i < inputs->count; i++) {
            if (inputs->items[i] == NULL) return true; /* an absent key: empty */
            if (inputs->sets[i].live < inputs->sets[base].live) base = i;
        }
    }
    const struct set_members *candidates = &inputs->sets[base];
    for (size_t j = 0; j < candidates->count; j++) {
        const struct set_member *member = &candidates->members[j];
        bool keep = true;
        for (size_t i = 0; i < inputs->count && keep; i++) {
            if (i == base || inputs->items[i] == NULL) continue;
            bool found = set_find(&inputs->sets[i], member->data, member->length) != NULL;
            keep = operation == SET_INTER ? found : !found;
        }
        if (!keep) continue;
        if (!set_append(result, member->data, member->length)) return false;
        if (limit != 0 && result->live >= limit) break;
    }
    return true;
}

/* SINTER, SUNION, SDIFF: the sets at arguments 1 on, combined. */
static void combine_command(struct resp_session *session, const struct resp_request *request,
                            enum set_operation operation) {
    size_t last = request->argc - 1;
    if (!keys_in_dram(session, request, 1, last)) return;
    struct set_inputs inputs;
    if (!read_inputs(session, request, 1, last, &inputs)) return;
    struct set_members result = {0};
    if (combine(&inputs, operation, 0, &result)) {
        reply_members(session, &result, false);
    } else {
        reply_damaged(session, DECODE_NO_MEMORY);
    }
    set_free(&result);
    inputs_free(&inputs);
}

void command_sinter(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request, SET_INTER);
}

void command_sunion(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request, SET_UNION);
}

void command_sdiff(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request, SET_DIFF);
}

/* Stores RESULT at KEY as the STORE forms do (resp_value_replace()). */
static enum store_status store_result(struct resp_session *session, const unsigned char *key,
                                      size_t key_length, const struct set_members *result) {
    if (result->live == 0)
        return resp_value_replace(session, key, key_length, NULL, 0, STORE_TYPE_STRING);
    struct byte_buffer encoded = {0};
    set_encode(result, &encoded);
    enum store_status status = encoded.failed
                                   ? STORE_ALLOCATION_FAILED
                                   : resp_value_replace(session, key, key_length, encoded.data,
                                                        encoded.length, STORE_TYPE_SET);
    byte_buffer_free(&encoded);
    return status;
}

/* SINTERSTORE, SUNIONSTORE, SDIFFSTORE destination key [key ...]: stores the combination
 * of the sets at arguments 2 on at argument 1 and answers its size. The destination's
 * old value (any type) goes; an empty result deletes it. The reads and the write run
 * with the session's exclusivity, so no other command runs between them. */
static void combine_and_store(struct resp_session *session, const struct resp_request *request,
                              enum set_operation operation) {
    size_t last = request->argc - 1;
    if (!keys_in_dram(session, request, 2, last)) return;
    bool exclusive = resp_exclusive_begin(session);
    struct set_inputs inputs;
    if (read_inputs(session, request, 2, last - 1, &inputs)) {
        struct set_members result = {0};
        if (!combine(&inputs, operation, 0, &result)) {
            reply_no_memory(session);
        } else {
            enum store_status status =
                store_result(session, request->argv[1], (size_t)request->lengths[1], &result);
            if (status == STORE_OK) {
                reply_integer(session, (int64_t)result.live);
            } else {
                reply_store_error(session, status);
            }
        }
        set_free(&result);
        inputs_free(&inputs);
    }
    if (exclusive) resp_exclusive_end(session);
}

void command_sinterstore(struct resp_session *session, const struct resp_request *request) {
    combine_and_store(session, request, SET_INTER);
}

void command_sunionstore(struct resp_session *session, const struct resp_request *request) {
    combine_and_store(session, request, SET_UNION);
}

void command_sdiffstore(struct resp_session *session, const struct resp_request *request) {
    combine_and_store(session, request, SET_DIFF);
}

/* SINTERCARD numkeys key [key ...] [LIMIT limit]: the size of the intersection, counting
 * no further than LIMIT (0: no limit). */
void command_sintercard(struct resp_session *session, const struct resp_request *request) {
    int64_t keys;
    if (!parse_int64(request->argv[1], (size_t)request->lengths[1], &keys) || keys <= 0) {
        reply_error(session, "ERR numkeys should be greater than 0");
        return;
    }
    if ((uint64_t)keys > request->argc - 2) {
        reply_error(session, "ERR Number of keys can't be greater than number of args");
        return;
    }
    int64_t limit = 0;
    for (size_t i = 2 + (size_t)keys; i < request->argc; i++) {
        if (argument_is(request, i, "LIMIT") && i + 1 < request->argc) {
            i++;
            if (!parse_int64(request->argv[i], (size_t)request->lengths[i], &limit) || limit < 0) {
                reply_error(session, "ERR LIMIT can't be negative");
                return;
            }
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    if (!keys_in_dram(session, request, 2, 1 + (size_t)keys)) return;
    struct set_inputs inputs;
    if (!read_inputs(session, request, 2, (size_t)keys, &inputs)) return;
    struct set_members result = {0};
    if (combine(&inputs, SET_INTER, (uint64_t)limit, &result)) {
        reply_integer(session, (int64_t)result.live);
    } else {
        reply_damaged(session, DECODE_NO_MEMORY);
    }
    set_free(&result);
    inputs_free(&inputs);
}

/* ---- changing ----------------------------------------------------------------------- */

/* A change to a set, computed by a command's edit function from the current set. */
struct set_change {
    struct set_members set; /* the set, changed in place */
    bool changed;           /* something to store */
    int64_t integer;        /* the reply, for commands that answer a number */
    bool with_count;        /* SPOP with a count: reply popped[0 .. popped_count) */
    struct set_member *popped;
    size_t popped_count;
};

/* Applies the command to CHANGE->set. Returns true to go on (store it if changed, then
 * reply), false after replying itself (an error). */
typedef bool (*set_edit_fn)(struct resp_session *session, const struct resp_request *request,
                            struct set_change *change);

/* Replies once the change is stored (or needed storing nothing). */
typedef void (*set_reply_fn)(struct resp_session *session, const struct set_change *change);

/* What update_set() hands resp_value_update(): the command's edit and reply, and the
 * attempt's set. */
struct set_update {
    set_edit_fn edit;
    set_reply_fn reply;
    struct set_change change;
};

static bool set_update_edit(struct resp_session *session, const struct resp_request *request,
                            struct resp_value_change *value) {
    struct set_update *update = value->context;
    update->change = (struct set_change){0};
    enum decode_result decoded =
        value->exists ? set_decode(value->value, value->length, &update->change.set) : DECODED;
    if (decoded != DECODED) {
        reply_damaged(session, decoded);
        return false;
    }
    if (!update->edit(session, request, &update->change)) return false;
    if (!update->change.changed) return true;
    if (update->change.set.live == 0) {
        value->outcome = RESP_VALUE_DELETE;
    } else {
        value->outcome = RESP_VALUE_STORE;
        set_encode(&update->change.set, &value->encoded);
    }
    return true;
}

static void set_update_reply(struct resp_session *session, const struct resp_value_change *value) {
    struct set_update *update = value->context;
    update->reply(session, &update->change);
}

static void set_update_discard(struct resp_value_change *value) {
    struct set_update *update = value->context;
    set_free(&update->change.set);
    free(update->change.popped);
    update->change.popped = NULL;
}

/* Runs a change on the set at argument 1 (resp_value_update()): EDIT changes the decoded
 * set, REPLY answers once it is stored. A set left with no member is deleted, as in
 * Redis. UPDATE carries the command's parsed arguments. */
static void update_set(struct resp_session *session, const struct resp_request *request,
                       struct set_update *update) {
    static const struct resp_value_ops ops = {STORE_TYPE_SET, set_update_edit, set_update_reply,
                                              set_update_discard};
    resp_value_update(session, request, 1, &ops, update);
}

static void reply_change_integer(struct resp_session *session, const struct set_change *change) {
    reply_integer(session, change->integer);
}

/* Members are stored with 32-bit lengths. */
static bool lengths_fit(struct resp_session *session, const struct resp_request *request,
                        size_t first) {
    for (size_t i = first; i < request->argc; i++) {
        if (request->lengths[i] > UINT32_MAX) {
            reply_error(session, "ERR a set member is longer than 4 GiB");
            return false;
        }
    }
    return true;
}

/* SADD: the members from argument 2; INTEGER counts the new ones. */
static bool edit_add(struct resp_session *session, const struct resp_request *request,
                     struct set_change *change) {
    for (size_t i = 2; i < request->argc; i++) {
        int added = set_add(&change->set, request->argv[i], request->lengths[i]);
        if (added < 0) {
            reply_no_memory(session);
            return false;
        }
        change->integer += added;
    }
    change->changed = change->integer > 0;
    return true;
}

void command_sadd(struct resp_session *session, const struct resp_request *request) {
    if (!lengths_fit(session, request, 2)) return;
    struct set_update update = {.edit = edit_add, .reply = reply_change_integer};
    update_set(session, request, &update);
}

static bool edit_remove(struct resp_session *session, const struct resp_request *request,
                        struct set_change *change) {
    (void)session;
    for (size_t i = 2; i < request->argc; i++)
        change->integer += set_remove(&change->set, request->argv[i], request->lengths[i]);
    change->changed = change->integer > 0;
    return true;
}

void command_srem(struct resp_session *session, const struct resp_request *request) {
    struct set_update update = {.edit = edit_remove, .reply = reply_change_integer};
    update_set(session, request, &update);
}

/* SPOP: removes COUNT random members (one without a count), keeping copies of their
 * views in CHANGE->popped for the reply. */
static bool edit_pop(struct resp_session *session, const struct resp_request *request,
                     struct set_change *change) {
    int64_t count = 1; /* checked by command_spop() */
    change->with_count = request->argc == 3;
    if (change->with_count) parse_int64(request->argv[2], (size_t)request->lengths[2], &count);
    uint64_t wanted = (uint64_t)count;
    struct set_members *set = &change->set;
    if (wanted > set->live) wanted = set->live;
    if (wanted == 0) return true;
    change->popped = malloc((size_t)wanted * sizeof(*change->popped));
    if (change->popped == NULL) {
        reply_no_memory(session);
        return false;
    }
    set_compact(set);
    set_draw(set, (size_t)wanted);
    for (size_t i = 0; i < wanted; i++) {
        change->popped[i] = set->members[i];
        set->members[i].removed = true;
    }
    change->popped_count = (size_t)wanted;
    set->live -= (size_t)wanted;
    change->changed = true;
    return true;
}

static void reply_popped(struct resp_session *session, const struct set_change *change) {
    if (!change->with_count) {
        if (change->popped_count == 0) {
            reply_null(session);
        } else {
            reply_member(session, &change->popped[0]);
        }
        return;
    }
    reply_set(session, change->popped_count);
    for (size_t i = 0; i < change->popped_count; i++)
        reply_member(session, &change->popped[i]);
}

/* SPOP key [count] */
void command_spop(struct resp_session *session, const struct resp_request *request) {
    struct set_update update = {.edit = edit_pop, .reply = reply_popped};
    int64_t count;
    if (request->argc > 3) {
        reply_syntax_error(session);
        return;
    }
    if (request->argc == 3 &&
        (!parse_int64(request->argv[2], (size_t)request->lengths[2], &count) || count < 0)) {
        reply_error(session, "ERR value is out of range, must be positive");
        return;
    }
    update_set(session, request, &update);
}

/* ---- SMOVE -------------------------------------------------------------------------- */

/* Adds MEMBER to the set at KEY (creating it) by compare-and-swap, retried when another
 * change came between. Returns STORE_OK, STORE_WRONG_TYPE when KEY holds another type,
 * or the store's error. */
static enum store_status add_member(struct store *store, const unsigned char *key,
                                    size_t key_length, const struct set_member *member) {
    for (int attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
        struct item *item = NULL;
        struct set_members set = {0};
        enum store_status status = store_get_typed(store, key, key_length, STORE_TYPE_SET, &item);
        if (status == STORE_NOT_FOUND) {
            item = NULL;
        } else if (status != STORE_OK) {
            return status;
        } else {
            enum decode_result decoded =
                set_decode(item_value(item), item_value_length(item), &set);
            if (decoded != DECODED) {
                done_reading(item, &set);
                return decoded == DECODE_CORRUPT ? STORE_IO_ERROR : STORE_ALLOCATION_FAILED;
            }
        }
        int added = set_add(&set, member->data, member->length);
        if (added < 0) {
            status = STORE_ALLOCATION_FAILED;
        } else if (added == 0) {
            status = STORE_OK;
        } else {
            struct byte_buffer encoded = {0};
            set_encode(&set, &encoded);
            status = encoded.failed
                         ? STORE_ALLOCATION_FAILED
                         : store_replace_if_unchanged(store, key, key_length, item, encoded.data,
                                                      encoded.length, true, STORE_TYPE_SET);
            byte_buffer_free(&encoded);
        }
        done_reading(item, &set);
        if (status != STORE_CONDITION_FAILED) return status;
    }
    return STORE_CONDITION_FAILED;
}

/* One try at SMOVE with the sets at arguments 1 and 2 and the member at 3. Returns false
 * when the source changed between its read and its write (try again); otherwise it has
 * replied. */
static bool move_once(struct resp_session *session, const struct resp_request *request) {
    struct store *store = store_of(session);
    struct item *source_item, *target_item = NULL;
    struct set_members source, target = {0};
    if (!read_set(session, request, 1, &source_item, &source)) return true;
    if (source_item == NULL) {
        reply_integer(session, 0);
        return true;
    }
    bool same = request->lengths[1] == request->lengths[2] &&
                memcmp(request->argv[1], request->argv[2], (size_t)request->lengths[1]) == 0;
    /* As Redis: a destination of another type fails before anything changes. */
    if (!same && !read_set(session, request, 2, &target_item, &target)) {
        done_reading(source_item, &source);
        return true;
    }
    done_reading(target_item, &target); /* checked only: added to by add_member() */
    struct set_member *found = set_find(&source, request->argv[3], request->lengths[3]);
    if (found == NULL || same) {
        reply_integer(session, found != NULL);
        done_reading(source_item, &source);
        return true;
    }
    struct set_member member = {.data = request->argv[3], .length = (uint32_t)request->lengths[3]};
    set_remove(&source, member.data, member.length);
    enum store_status status;
    if (source.live == 0) {
        status = store_delete_if_unchanged(store, request->argv[1], (size_t)request->lengths[1],
                                           source_item);
    } else {
        struct byte_buffer encoded = {0};
        set_encode(&source, &encoded);
        status = encoded.failed ? STORE_ALLOCATION_FAILED
                                : store_replace_if_unchanged(store, request->argv[1],
                                                             (size_t)request->lengths[1],
                                                             source_item, encoded.data,
                                                             encoded.length, true, STORE_TYPE_SET);
        byte_buffer_free(&encoded);
    }
    done_reading(source_item, &source);
    if (status == STORE_CONDITION_FAILED) return false;
    if (status == STORE_OK) {
        status = add_member(store, request->argv[2], (size_t)request->lengths[2], &member);
        if (status != STORE_OK) {
            /* The destination changed type or could not take the member (only possible
             * without exclusivity, or out of memory): it goes back rather than being lost. */
            add_member(store, request->argv[1], (size_t)request->lengths[1], &member);
        }
    }
    if (status == STORE_OK) {
        reply_integer(session, 1);
    } else {
        reply_store_error(session, status);
    }
    return true;
}

/* SMOVE source destination member: 1 when the member moved, 0 when the source lacks it;
 * WRONGTYPE from either key before anything changes. Two keys change together, so the
 * move runs with the session's exclusivity (as LMOVE does, see resp_lists.c): no other
 * connection sees the member in both sets or in neither. */
void command_smove(struct resp_session *session, const struct resp_request *request) {
    if (!lengths_fit(session, request, 3)) return;
    if (!keys_in_dram(session, request, 1, 2)) return;
    bool exclusive = resp_exclusive_begin(session);
    bool done = false;
    for (int attempt = 0; attempt < UPDATE_ATTEMPTS && !done; attempt++)
        done = move_once(session, request);
    if (!done) reply_error(session, "ERR the key changed too often to update it; try again");
    if (exclusive) resp_exclusive_end(session);
}
