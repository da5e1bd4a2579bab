/* Bit commands on string values: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD
 * BITFIELD_RO, as Redis 7.0.15 answers them.
 *
 * A bitmap is a plain string value (no encoding of its own): bit N is bit 7 - N % 8 of
 * byte N / 8, the most significant bit first, as in Redis. Offsets are limited as Redis
 * limits them (below 2^32 bits, 512 MB) and a write that would make the value longer
 * than strata's max-value answers SETRANGE's error.
 *
 * Reads bring the key back from flash first (resp_prefetch_key()) and read the DRAM
 * item. Writes to one key (SETBIT, BITFIELD) are a read-modify-write by compare-and-
 * swap (store_replace_if_unchanged(), keeping the expiry), retried when another client
 * changed the key meanwhile and, after CONTENDED_ATTEMPTS lost races, run with the
 * other workers paused (resp_exclusive_begin()), so concurrent writers never lose bits.
 * BITOP reads its sources and replaces its destination with the session's exclusivity,
 * as SINTERSTORE does. */
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"

#include <stdlib.h>
#include <string.h>

#define UPDATE_ATTEMPTS    100
#define CONTENDED_ATTEMPTS 8

/* Offsets are below 2^32 bits (Redis's 512 MB proto-max-bulk-len). */
#define BIT_OFFSET_LIMIT_BYTES (512ull * 1024 * 1024)

#define BIT_OFFSET_ERROR "ERR bit offset is not an integer or out of range"
#define BITFIELD_TYPE_ERROR                                                                        \
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but "    \
    "i64 is."
#define MAX_VALUE_ERROR "ERR string exceeds maximum allowed size (max-value)"

/* Parses argument INDEX as a bit offset into *OFFSET: a non-negative integer below 2^32,
 * or with HASH_BITS (BITFIELD's "#N" form, BITS wide fields) N times HASH_BITS. Replies
 * Redis's error and returns false when it is not one. */
static bool parse_bit_offset(struct resp_session *session, const struct resp_request *request,
                             size_t index, int64_t hash_bits, uint64_t *offset) {
    const unsigned char *text = request->argv[index];
    size_t length = (size_t)request->lengths[index];
    bool hashed = hash_bits > 0 && length > 0 && text[0] == '#';
    int64_t value;
    if (!parse_int64(text + hashed, length - hashed, &value)) {
        reply_error(session, BIT_OFFSET_ERROR);
        return false;
    }
    if (hashed) {
        if (value > INT64_MAX / hash_bits || value < INT64_MIN / hash_bits) {
            reply_error(session, BIT_OFFSET_ERROR);
            return false;
        }
        value *= hash_bits;
    }
    if (value < 0 || (uint64_t)(value >> 3) >= BIT_OFFSET_LIMIT_BYTES) {
        reply_error(session, BIT_OFFSET_ERROR);
        return false;
    }
    *offset = (uint64_t)value;
    return true;
}

/* True (after replying strata's SETRANGE error) when a value of LENGTH bytes is longer
 * than the max-value option allows. */
static bool exceeds_max_value(struct resp_session *session, uint64_t length) {
    uint64_t max_value =
        (uint64_t)options_number(session->server->environment.options, ENGINE_OPTION(max_value));
    if (length <= max_value) return false;
    reply_error(session, MAX_VALUE_ERROR);
    return true;
}

/* Reads the string at argument 1 once it is in DRAM. Returns PREFETCH_READY with *ITEM
 * the item (the caller releases it) or NULL when the key is absent; PREFETCH_STARTED when
 * a flash read started (return: the command runs again); PREFETCH_FAILED after replying
 * an error (WRONGTYPE, a failed read). */
static enum resp_prefetch read_string(struct resp_session *session,
                                      const struct resp_request *request, struct item **item) {
    *item = NULL;
    enum resp_prefetch prefetch = resp_prefetch_key(session, request, 1, false);
    if (prefetch != PREFETCH_READY) return prefetch;
    enum store_status status =
        store_get(store_of(session), request->argv[1], (size_t)request->lengths[1], item);
    if (status == STORE_OK || status == STORE_NOT_FOUND) {
        if (status == STORE_NOT_FOUND) *item = NULL;
        return PREFETCH_READY;
    }
    *item = NULL;
    reply_store_error(session, status);
    return PREFETCH_FAILED;
}

/* Bit OFFSET of VALUE (LENGTH bytes): 0 past its end. */
static int bit_at(const unsigned char *value, uint64_t length, uint64_t offset) {
    uint64_t byte = offset >> 3;
    if (byte >= length) return 0;
    return (value[byte] >> (7 - (offset & 7))) & 1;
}

static void set_bit_at(unsigned char *value, uint64_t offset, int bit) {
    unsigned char mask = (unsigned char)(1u << (7 - (offset & 7)));
    if (bit) {
        value[offset >> 3] |= mask;
    } else {
        value[offset >> 3] &= (unsigned char)~mask;
    }
}

/* ---- writes to one key ---------------------------------------------------------- */

/* One attempt of a write to the string at argument 1: its current bytes and the new. */
struct bit_change {
    const unsigned char *current; /* NULL when the key is absent */
    uint64_t current_length;
    unsigned char *updated; /* the new value (malloc'd by edit, freed after the attempt) */
    uint64_t length;
};

/* Builds CHANGE->updated from CHANGE->current for the command's CONTEXT. Returns false
 * after replying an error (nothing is stored). Runs once per attempt. */
typedef bool (*bit_edit_fn)(struct resp_session *session, void *context, struct bit_change *change);
/* Replies once the new value is stored. */
typedef void (*bit_reply_fn)(struct resp_session *session, void *context);

/* Copies CHANGE->current into a new buffer of at least MINIMUM bytes (zero-padded),
 * checking max-value. Returns false after replying an error. */
static bool grow_copy(struct resp_session *session, struct bit_change *change, uint64_t minimum) {
    uint64_t length = minimum > change->current_length ? minimum : change->current_length;
    if (length > change->current_length && exceeds_max_value(session, length)) return false;
    change->updated = malloc(length > 0 ? (size_t)length : 1);
    if (change->updated == NULL) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return false;
    }
    if (change->current_length > 0)
        memcpy(change->updated, change->current, (size_t)change->current_length);
    if (length > change->current_length)
        memset(change->updated + change->current_length, 0,
               (size_t)(length - change->current_length));
    change->length = length;
    return true;
}

/* One attempt: true when it is over (stored and replied, or an error replied), false
 * when the key changed meanwhile. */
static bool write_once(struct resp_session *session, const struct resp_request *request,
                       bit_edit_fn edit, bit_reply_fn reply, void *context) {
    struct store *store = store_of(session);
    const unsigned char *key = request->argv[1];
    size_t key_length = (size_t)request->lengths[1];
    struct item *item = NULL;
    enum store_status status = store_get(store, key, key_length, &item);
    if (status != STORE_OK && status != STORE_NOT_FOUND) {
        reply_store_error(session, status);
        return true;
    }
    if (status == STORE_NOT_FOUND) item = NULL;
    struct bit_change change = {0};
    if (item != NULL) {
        change.current = item_value(item);
        change.current_length = item_value_length(item);
    }
    bool edited = edit(session, context, &change);
    status = STORE_OK;
    if (edited) {
        status = store_replace_if_unchanged(store, key, key_length, item, change.updated,
                                            change.length, true, STORE_TYPE_STRING);
        if (status == STORE_OK) {
            reply(session, context);
            resp_blocking_signal(session->server, key, key_length);
        }
    }
    free(change.updated);
    if (item != NULL) item_release(item);
    if (!edited || status == STORE_OK) return true;
    if (status == STORE_CONDITION_FAILED) return false;
    reply_store_error(session, status);
    return true;
}

/* Changes the string at argument 1 with EDIT and replies with REPLY (after bringing it
 * to DRAM); replies exactly once. IN_PLACE (optional) first tries the same change on the
 * stored bytes under the key's shard lock (store_overwrite_in_place(): a value nobody
 * else holds, with no flash copy), so that a bit set in a large bitmap copies nothing;
 * when it declines or cannot run, the change is made by compare-and-swap. */
static void write_string(struct resp_session *session, const struct resp_request *request,
                         store_edit_fn in_place, bit_edit_fn edit, bit_reply_fn reply,
                         void *context) {
    if (resp_prefetch_key(session, request, 1, false) != PREFETCH_READY) return;
    if (in_place != NULL &&
        store_overwrite_in_place(store_of(session), request->argv[1], (size_t)request->lengths[1],
                                 STORE_TYPE_STRING, in_place, context) == STORE_OK) {
        reply(session, context);
        resp_blocking_signal(session->server, request->argv[1], (size_t)request->lengths[1]);
        return;
    }
    bool exclusive = false, done = false;
    for (int attempt = 0; attempt < UPDATE_ATTEMPTS && !done; attempt++) {
        if (attempt == CONTENDED_ATTEMPTS) exclusive = resp_exclusive_begin(session);
        done = write_once(session, request, edit, reply, context);
    }
    if (!done) reply_error(session, "ERR the key changed too often to update it; try again");
    if (exclusive) resp_exclusive_end(session);
}

/* ---- SETBIT and GETBIT ---------------------------------------------------------- */

struct setbit_context {
    uint64_t offset;
    int bit;
    int previous; /* set by the edit */
};

static bool edit_setbit(struct resp_session *session, void *context, struct bit_change *change) {
    struct setbit_context *setbit = context;
    if (!grow_copy(session, change, (setbit->offset >> 3) + 1)) return false;
    setbit->previous = bit_at(change->updated, change->length, setbit->offset);
    set_bit_at(change->updated, setbit->offset, setbit->bit);
    return true;
}

/* Makes VALUE (*LENGTH bytes in CAPACITY) at least NEEDED bytes long, zero-padded.
 * Returns false when it does not fit (nothing changed). */
static bool grow_in_place(unsigned char *value, uint64_t *length, uint64_t capacity,
                          uint64_t needed) {
    if (needed > capacity) return false;
    if (needed > *length) {
        memset(value + *length, 0, (size_t)(needed - *length));
        *length = needed;
    }
    return true;
}

/* SETBIT's change on the stored bytes (a store_edit_fn, under the key's shard lock). */
static bool setbit_in_place(void *context, unsigned char *value, uint64_t *length,
                            uint64_t capacity) {
    struct setbit_context *setbit = context;
    if (!grow_in_place(value, length, capacity, (setbit->offset >> 3) + 1)) return false;
    setbit->previous = bit_at(value, *length, setbit->offset);
    set_bit_at(value, setbit->offset, setbit->bit);
    return true;
}

static void reply_setbit(struct resp_session *session, void *context) {
    reply_integer(session, ((struct setbit_context *)context)->previous);
}

/* SETBIT key offset 0|1: answers the bit's old value. */
void command_setbit(struct resp_session *session, const struct resp_request *request) {
    struct setbit_context context = {0};
    if (!parse_bit_offset(session, request, 2, 0, &context.offset)) return;
    int64_t bit;
    if (!parse_int64(request->argv[3], (size_t)request->lengths[3], &bit) ||
        (bit != 0 && bit != 1)) {
        reply_error(session, "ERR bit is not an integer or out of range");
        return;
    }
    context.bit = (int)bit;
    write_string(session, request, setbit_in_place, edit_setbit, reply_setbit, &context);
}

/* GETBIT key offset: 0 past the end or for an absent key. */
void command_getbit(struct resp_session *session, const struct resp_request *request) {
    uint64_t offset;
    if (!parse_bit_offset(session, request, 2, 0, &offset)) return;
    struct item *item;
    if (read_string(session, request, &item) != PREFETCH_READY) return;
    int bit = item != NULL ? bit_at(item_value(item), item_value_length(item), offset) : 0;
    if (item != NULL) item_release(item);
    reply_integer(session, bit);
}

/* ---- BITCOUNT and BITPOS -------------------------------------------------------- */

static uint64_t popcount(const unsigned char *bytes, uint64_t count) {
    uint64_t total = 0, i = 0;
    for (; i + 8 <= count; i += 8) {
        uint64_t word;
        memcpy(&word, bytes + i, sizeof(word));
        total += (uint64_t)__builtin_popcountll(word);
    }
    for (; i < count; i++)
        total += (uint64_t)__builtin_popcount(bytes[i]);
    return total;
}

/* Parses argument INDEX as BYTE or BIT into *IN_BITS; replies a syntax error otherwise. */
static bool parse_unit(struct resp_session *session, const struct resp_request *request,
                       size_t index, bool *in_bits) {
    if (argument_is(request, index, "BIT")) {
        *in_bits = true;
    } else if (argument_is(request, index, "BYTE")) {
        *in_bits = false;
    } else {
        reply_syntax_error(session);
        return false;
    }
    return true;
}

/* Makes START and END (negative from the end of TOTAL units) a range clamped into
 * [0, TOTAL - 1], as Redis does; the range is empty when *START > *END after. */
static void clamp_range(int64_t total, int64_t *start, int64_t *end) {
    if (*start < 0) *start += total;
    if (*end < 0) *end += total;
    if (*start < 0) *start = 0;
    if (*end < 0) *end = 0;
    if (*end >= total) *end = total - 1;
}

/* BITCOUNT key [start end [BYTE|BIT]]: the set bits of the value or of a range. As
 * Redis 7.0, the key is looked up before the arguments are checked. */
void command_bitcount(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    if (read_string(session, request, &item) != PREFETCH_READY) return;
    if (item == NULL) {
        reply_integer(session, 0);
        return;
    }
    const unsigned char *value = item_value(item);
    int64_t length = (int64_t)item_value_length(item);
    int64_t start = 0, end = length - 1;
    bool in_bits = false;
    if (request->argc == 4 || request->argc == 5) {
        if (!argument_int64(session, request, 2, &start) ||
            !argument_int64(session, request, 3, &end) ||
            (request->argc == 5 && !parse_unit(session, request, 4, &in_bits))) {
            item_release(item);
            return;
        }
    } else if (request->argc != 2) {
        item_release(item);
        reply_syntax_error(session);
        return;
    }
    int64_t count = 0;
    if (request->argc == 2) {
        count = (int64_t)popcount(value, (uint64_t)length);
    } else if (!(start < 0 && end < 0 && start > end)) {
        int64_t total = in_bits ? length * 8 : length;
        clamp_range(total, &start, &end);
        if (start <= end && in_bits) {
            int64_t first_byte = start >> 3, last_byte = end >> 3;
            count = (int64_t)popcount(value + first_byte, (uint64_t)(last_byte - first_byte + 1));
            for (int64_t bit = first_byte * 8; bit < start; bit++)
                count -= bit_at(value, (uint64_t)length, (uint64_t)bit);
            for (int64_t bit = end + 1; bit < last_byte * 8 + 8; bit++)
                count -= bit_at(value, (uint64_t)length, (uint64_t)bit);
        } else if (start <= end) {
            count = (int64_t)popcount(value + start, (uint64_t)(end - start + 1));
        }
    }
    item_release(item);
    reply_integer(session, count);
}

/* The first bit equal to BIT in bits FIRST to LAST (inclusive) of VALUE, or -1. */
static int64_t find_bit(const unsigned char *value, uint64_t length, int bit, int64_t first,
                        int64_t last) {
    unsigned char skip = bit ? 0x00 : 0xff; /* a byte that holds no such bit */
    int64_t at = first;
    while (at <= last) {
        if ((at & 7) == 0 && at + 7 <= last && value[at >> 3] == skip) {
            at += 8;
            continue;
        }
        if (bit_at(value, length, (uint64_t)at) == bit) return at;
        at++;
    }
    return -1;
}

/* BITPOS key bit [start [end [BYTE|BIT]]]: the first bit set (1) or clear (0) in the
 * value or a range; an absent key is all clear bits. Without an end, a value with no
 * clear bit answers the bit after it, as Redis. */
void command_bitpos(struct resp_session *session, const struct resp_request *request) {
    int64_t bit;
    if (!argument_int64(session, request, 2, &bit)) return;
    if (bit != 0 && bit != 1) {
        reply_error(session, "ERR The bit argument must be 1 or 0.");
        return;
    }
    struct item *item;
    if (read_string(session, request, &item) != PREFETCH_READY) return;
    if (item == NULL) {
        reply_integer(session, bit ? -1 : 0);
        return;
    }
    const unsigned char *value = item_value(item);
    int64_t length = (int64_t)item_value_length(item);
    int64_t start = 0, end = length - 1;
    bool in_bits = false, end_given = false;
    if (request->argc >= 4 && request->argc <= 6) {
        if (!argument_int64(session, request, 3, &start) ||
            (request->argc == 6 && !parse_unit(session, request, 5, &in_bits)) ||
            (request->argc >= 5 && !argument_int64(session, request, 4, &end))) {
            item_release(item);
            return;
        }
        end_given = request->argc >= 5;
        if (!end_given) end = length - 1;
        clamp_range(in_bits ? length * 8 : length, &start, &end);
    } else if (request->argc != 3) {
        item_release(item);
        reply_syntax_error(session);
        return;
    }
    int64_t position = -1;
    if (start <= end) {
        int64_t first = in_bits ? start : start * 8;
        int64_t last = in_bits ? end : end * 8 + 7;
        position = find_bit(value, (uint64_t)length, (int)bit, first, last);
        /* No clear bit without an explicit end: the value is zero-padded on the right. */
        if (position == -1 && bit == 0 && !end_given) position = (last | 7) + 1;
    }
    item_release(item);
    reply_integer(session, position);
}

/* ---- BITOP ---------------------------------------------------------------------- */

enum bit_operation { BITOP_AND, BITOP_OR, BITOP_XOR, BITOP_NOT };

/* BITOP AND|OR|XOR|NOT destkey key [key ...]: stores the operation over the strings
 * (absent keys are empty, shorter ones zero-padded) at destkey and answers its length;
 * an empty result deletes destkey. */
void command_bitop(struct resp_session *session, const struct resp_request *request) {
    enum bit_operation operation;
    if (argument_is(request, 1, "AND")) {
        operation = BITOP_AND;
    } else if (argument_is(request, 1, "OR")) {
        operation = BITOP_OR;
    } else if (argument_is(request, 1, "XOR")) {
        operation = BITOP_XOR;
    } else if (argument_is(request, 1, "NOT")) {
        operation = BITOP_NOT;
    } else {
        reply_syntax_error(session);
        return;
    }
    if (operation == BITOP_NOT && request->argc != 4) {
        reply_error(session, "ERR BITOP NOT must be called with a single source key.");
        return;
    }
    for (size_t i = 3; i < request->argc; i++)
        if (resp_prefetch_key(session, request, i, false) != PREFETCH_READY) return;
    size_t count = request->argc - 3;
    struct item **items = calloc(count, sizeof(*items));
    if (items == NULL) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return;
    }
    struct store *store = store_of(session);
    bool exclusive = resp_exclusive_begin(session);
    bool ok = true;
    uint64_t longest = 0;
    for (size_t i = 0; i < count && ok; i++) {
        size_t index = 3 + i;
        enum store_status status =
            store_get(store, request->argv[index], (size_t)request->lengths[index], &items[i]);
        if (status == STORE_NOT_FOUND) {
            items[i] = NULL;
        } else if (status != STORE_OK) {
            items[i] = NULL;
            reply_store_error(session, status);
            ok = false;
        } else if (item_value_length(items[i]) > longest) {
            longest = item_value_length(items[i]);
        }
    }
    unsigned char *result = NULL;
    if (ok && longest > 0) {
        result = malloc((size_t)longest);
        if (result == NULL) {
            reply_store_error(session, STORE_ALLOCATION_FAILED);
            ok = false;
        }
    }
    if (ok && longest > 0) {
        for (uint64_t at = 0; at < longest; at++) {
            unsigned char byte = 0;
            for (size_t i = 0; i < count; i++) {
                unsigned char input = 0;
                if (items[i] != NULL && at < item_value_length(items[i]))
                    input = item_value(items[i])[at];
                if (i == 0) {
                    byte = operation == BITOP_NOT ? (unsigned char)~input : input;
                } else if (operation == BITOP_AND) {
                    byte &= input;
                } else if (operation == BITOP_OR) {
                    byte |= input;
                } else {
                    byte ^= input;
                }
            }
            result[at] = byte;
        }
    }
    if (ok) {
        enum store_status status =
            resp_value_replace(session, request->argv[2], (size_t)request->lengths[2], result,
                               longest, STORE_TYPE_STRING);
        if (status == STORE_OK) {
            reply_integer(session, (int64_t)longest);
        } else {
            reply_store_error(session, status);
        }
    }
    if (exclusive) resp_exclusive_end(session);
    free(result);
    for (size_t i = 0; i < count; i++)
        if (items[i] != NULL) item_release(items[i]);
    free(items);
}

/* ---- BITFIELD and BITFIELD_RO --------------------------------------------------- */

enum bitfield_opcode { BITFIELD_GET, BITFIELD_SET, BITFIELD_INCRBY };
enum bitfield_overflow { OVERFLOW_WRAP, OVERFLOW_SAT, OVERFLOW_FAIL };

struct bitfield_op {
    enum bitfield_opcode opcode;
    enum bitfield_overflow overflow;
    bool is_signed;
    unsigned bits; /* 1-64 signed, 1-63 unsigned */
    uint64_t offset;
    int64_t operand;
    /* The outcome, set by the last attempt: */
    int64_t result;
    bool failed; /* OVERFLOW FAIL stopped it: nil */
};

struct bitfield_context {
    struct bitfield_op *ops;
    size_t count;
    uint64_t highest_write_bit; /* the last bit a SET or INCRBY reaches */
};

/* Reads the BITS-bit unsigned field at bit OFFSET of VALUE (LENGTH bytes, zero past it). */
static uint64_t get_unsigned_field(const unsigned char *value, uint64_t length, uint64_t offset,
                                   unsigned bits) {
    uint64_t field = 0;
    for (unsigned i = 0; i < bits; i++)
        field = (field << 1) | (uint64_t)bit_at(value, length, offset + i);
    return field;
}

static int64_t get_signed_field(const unsigned char *value, uint64_t length, uint64_t offset,
                                unsigned bits) {
    uint64_t field = get_unsigned_field(value, length, offset, bits);
    if (bits < 64 && (field >> (bits - 1)) & 1) field |= UINT64_MAX << bits;
    return (int64_t)field;
}

/* Writes the low BITS bits of FIELD at bit OFFSET of VALUE (long enough). */
static void set_field(unsigned char *value, uint64_t offset, unsigned bits, uint64_t field) {
    for (unsigned i = 0; i < bits; i++)
        set_bit_at(value, offset + i, (int)((field >> (bits - 1 - i)) & 1));
}

/* Redis's checkUnsignedBitfieldOverflow(): whether VALUE + INCREMENT leaves the BITS-bit
 * unsigned range, and then in *LIMIT the wrapped or saturated result. */
static bool unsigned_overflow(uint64_t value, int64_t increment, unsigned bits,
                              enum bitfield_overflow overflow, uint64_t *limit) {
    uint64_t max = bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
    int64_t max_increment = (int64_t)(max - value);
    int64_t min_increment = (int64_t)(0 - value);
    bool over = value > max || (increment > 0 && increment > max_increment);
    bool under = !over && increment < 0 && increment < min_increment;
    if (!over && !under) return false;
    if (overflow == OVERFLOW_WRAP) {
        uint64_t sum = value + (uint64_t)increment;
        *limit = bits == 64 ? sum : sum & max;
    } else if (overflow == OVERFLOW_SAT) {
        *limit = over ? max : 0;
    }
    return true;
}

/* Redis's checkSignedBitfieldOverflow(), likewise for a BITS-bit signed field. */
static bool signed_overflow(int64_t value, int64_t increment, unsigned bits,
                            enum bitfield_overflow overflow, int64_t *limit) {
    int64_t max = bits == 64 ? INT64_MAX : (int64_t)(((uint64_t)1 << (bits - 1)) - 1);
    int64_t min = -max - 1;
    int64_t max_increment = (int64_t)((uint64_t)max - (uint64_t)value);
    int64_t min_increment = (int64_t)((uint64_t)min - (uint64_t)value);
    bool over = value > max || (bits != 64 && increment > max_increment) ||
                (value >= 0 && increment > 0 && increment > max_increment);
    bool under = !over && (value < min || (bits != 64 && increment < min_increment) ||
                           (value < 0 && increment < 0 && increment < min_increment));
    if (!over && !under) return false;
    if (overflow == OVERFLOW_WRAP) {
        uint64_t sum = (uint64_t)value + (uint64_t)increment;
        if (bits < 64) {
            uint64_t mask = UINT64_MAX << bits;
            sum = (sum & ((uint64_t)1 << (bits - 1))) ? sum | mask : sum & ~mask;
        }
        *limit = (int64_t)sum;
    } else if (overflow == OVERFLOW_SAT) {
        *limit = over ? max : min;
    }
    return true;
}

/* Applies OP to VALUE (long enough for it) and records its reply in OP. */
static void apply_bitfield_write(unsigned char *value, uint64_t length, struct bitfield_op *op) {
    op->failed = false;
    if (op->is_signed) {
        int64_t old = get_signed_field(value, length, op->offset, op->bits);
        int64_t updated, limit = 0;
        bool over;
        if (op->opcode == BITFIELD_INCRBY) {
            over = signed_overflow(old, op->operand, op->bits, op->overflow, &limit);
            updated = over ? limit : (int64_t)((uint64_t)old + (uint64_t)op->operand);
            op->result = updated;
        } else {
            updated = op->operand;
            over = signed_overflow(updated, 0, op->bits, op->overflow, &limit);
            if (over) updated = limit;
            op->result = old;
        }
        if (over && op->overflow == OVERFLOW_FAIL) {
            op->failed = true;
            return;
        }
        set_field(value, op->offset, op->bits, (uint64_t)updated);
    } else {
        uint64_t old = get_unsigned_field(value, length, op->offset, op->bits);
        uint64_t updated, limit = 0;
        bool over;
        if (op->opcode == BITFIELD_INCRBY) {
            updated = old + (uint64_t)op->operand;
            over = unsigned_overflow(old, op->operand, op->bits, op->overflow, &limit);
            if (over) updated = limit;
            op->result = (int64_t)updated;
        } else {
            updated = (uint64_t)op->operand;
            over = unsigned_overflow(updated, 0, op->bits, op->overflow, &limit);
            if (over) updated = limit;
            op->result = (int64_t)old;
        }
        if (over && op->overflow == OVERFLOW_FAIL) {
            op->failed = true;
            return;
        }
        set_field(value, op->offset, op->bits, updated);
    }
}

/* Runs CONTEXT's operations in order on VALUE (LENGTH bytes; writes need it long
 * enough), recording each one's reply. */
static void run_bitfield(struct bitfield_context *context, unsigned char *value, uint64_t length,
                         const unsigned char *read_only) {
    for (size_t i = 0; i < context->count; i++) {
        struct bitfield_op *op = &context->ops[i];
        const unsigned char *bytes = value != NULL ? value : read_only;
        if (op->opcode == BITFIELD_GET) {
            op->failed = false;
            op->result = op->is_signed
                             ? get_signed_field(bytes, length, op->offset, op->bits)
                             : (int64_t)get_unsigned_field(bytes, length, op->offset, op->bits);
        } else {
            apply_bitfield_write(value, length, op);
        }
    }
}

static void reply_bitfield(struct resp_session *session, void *context) {
    struct bitfield_context *bitfield = context;
    reply_array(session, bitfield->count);
    for (size_t i = 0; i < bitfield->count; i++) {
        if (bitfield->ops[i].failed) {
            reply_null(session);
        } else {
            reply_integer(session, bitfield->ops[i].result);
        }
    }
}

static bool edit_bitfield(struct resp_session *session, void *context, struct bit_change *change) {
    struct bitfield_context *bitfield = context;
    if (!grow_copy(session, change, (bitfield->highest_write_bit >> 3) + 1)) return false;
    run_bitfield(bitfield, change->updated, change->length, NULL);
    return true;
}

/* BITFIELD's writes on the stored bytes (a store_edit_fn, under the key's shard lock). */
static bool bitfield_in_place(void *context, unsigned char *value, uint64_t *length,
                              uint64_t capacity) {
    struct bitfield_context *bitfield = context;
    if (!grow_in_place(value, length, capacity, (bitfield->highest_write_bit >> 3) + 1))
        return false;
    run_bitfield(bitfield, value, *length, NULL);
    return true;
}

/* Parses argument INDEX as a field type (i1-i64, u1-u63; the letter in lower case). */
static bool parse_field_type(struct resp_session *session, const struct resp_request *request,
                             size_t index, bool *is_signed, unsigned *bits) {
    const unsigned char *text = request->argv[index];
    size_t length = (size_t)request->lengths[index];
    int64_t width;
    if (length < 2 || (text[0] != 'i' && text[0] != 'u') ||
        !parse_int64(text + 1, length - 1, &width) || width < 1 ||
        width > (text[0] == 'i' ? 64 : 63)) {
        reply_error(session, BITFIELD_TYPE_ERROR);
        return false;
    }
    *is_signed = text[0] == 'i';
    *bits = (unsigned)width;
    return true;
}

/* Parses BITFIELD's operations (arguments 2 on) into *CONTEXT (CONTEXT->ops malloc'd:
 * the caller frees it). Sets *WRITES when one is a SET or INCRBY. Returns false after
 * replying Redis's error (CONTEXT->ops freed). */
static bool parse_bitfield(struct resp_session *session, const struct resp_request *request,
                           struct bitfield_context *context, bool *writes) {
    *context = (struct bitfield_context){0};
    *writes = false;
    enum bitfield_overflow overflow = OVERFLOW_WRAP;
    context->ops = calloc(request->argc, sizeof(*context->ops));
    if (context->ops == NULL) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return false;
    }
    for (size_t i = 2; i < request->argc; i++) {
        size_t remaining = request->argc - i - 1;
        struct bitfield_op op = {.overflow = overflow};
        if (argument_is(request, i, "GET") && remaining >= 2) {
            op.opcode = BITFIELD_GET;
        } else if (argument_is(request, i, "SET") && remaining >= 3) {
            op.opcode = BITFIELD_SET;
        } else if (argument_is(request, i, "INCRBY") && remaining >= 3) {
            op.opcode = BITFIELD_INCRBY;
        } else if (argument_is(request, i, "OVERFLOW") && remaining >= 1) {
            i++;
            if (argument_is(request, i, "WRAP")) {
                overflow = OVERFLOW_WRAP;
            } else if (argument_is(request, i, "SAT")) {
                overflow = OVERFLOW_SAT;
            } else if (argument_is(request, i, "FAIL")) {
                overflow = OVERFLOW_FAIL;
            } else {
                reply_error(session, "ERR Invalid OVERFLOW type specified");
                goto failed;
            }
            continue;
        } else {
            reply_syntax_error(session);
            goto failed;
        }
        if (!parse_field_type(session, request, i + 1, &op.is_signed, &op.bits) ||
            !parse_bit_offset(session, request, i + 2, op.bits, &op.offset)) {
            goto failed;
        }
        if (op.opcode != BITFIELD_GET) {
            *writes = true;
            uint64_t last_bit = op.offset + op.bits - 1;
            if (last_bit > context->highest_write_bit) context->highest_write_bit = last_bit;
            if (!argument_int64(session, request, i + 3, &op.operand)) goto failed;
        }
        context->ops[context->count++] = op;
        i += op.opcode == BITFIELD_GET ? 2 : 3;
    }
    return true;
failed:
    free(context->ops);
    context->ops = NULL;
    return false;
}

/* BITFIELD and BITFIELD_RO (READ_ONLY: GET only). */
static void bitfield(struct resp_session *session, const struct resp_request *request,
                     bool read_only) {
    struct bitfield_context context;
    bool writes;
    if (!parse_bitfield(session, request, &context, &writes)) return;
    if (writes && read_only) {
        reply_error(session, "ERR BITFIELD_RO only supports the GET subcommand");
    } else if (writes) {
        write_string(session, request, bitfield_in_place, edit_bitfield, reply_bitfield, &context);
    } else {
        struct item *item;
        if (read_string(session, request, &item) == PREFETCH_READY) {
            run_bitfield(&context, NULL, item != NULL ? item_value_length(item) : 0,
                         item != NULL ? item_value(item) : NULL);
            if (item != NULL) item_release(item);
            reply_bitfield(session, &context);
        }
    }
    free(context.ops);
}

/* BITFIELD key [GET type offset] [SET type offset value] [INCRBY type offset increment]
 * [OVERFLOW WRAP|SAT|FAIL] ... */
void command_bitfield(struct resp_session *session, const struct resp_request *request) {
    bitfield(session, request, false);
}

/* BITFIELD_RO key [GET type offset] ... */
void command_bitfield_ro(struct resp_session *session, const struct resp_request *request) {
    bitfield(session, request, true);
}
