/* LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN], as Redis 7.0.15 answers it.
 *
 * Both values are read with resp_read_values() (a value on flash is read through the
 * worker's io_ring, never blocking it), then the longest common subsequence is found with
 * Redis's dynamic programming table: (len1 + 1) x (len2 + 1) uint32 cells, refused as
 * Redis refuses it when its bytes exceed the proto-max-bulk-len (strata's max-value
 * option, which plays that role), so the transient memory of one LCS is bounded by
 * max-value. The table is walked back from its end as Redis walks it, so the IDX matches
 * come in Redis's order (from the ends of the strings to their starts).
 *
 * A value too large to bring into DRAM whole (a stream) is not copied into memory: LCS
 * answers such a value only when the other one is empty (then no byte is compared), and
 * otherwise fails as Redis fails an allocation ("failed allocating transient memory"). */
#include "proto/resp/resp_internal.h"

#include <stdlib.h>
#include <string.h>

#define LCS_IDX          1
#define LCS_LEN          2
#define LCS_WITHMATCHLEN 4

static const char LCS_TYPE_ERROR[] = "ERR The specified keys must contain string values";

/* One IDX match: bytes [a_start, a_end] of the first value equal [b_start, b_end] of
 * the second. */
struct lcs_match {
    uint32_t a_start, a_end, b_start, b_end;
};

/* True when the key in argument INDEX holds a value that is not a string (from the
 * index: no flash read, the key not marked used). */
static bool holds_other_type(struct resp_session *session, const struct resp_request *request,
                             size_t index) {
    enum store_type type;
    return store_key_type(store_of(session), request->argv[index], (size_t)request->lengths[index],
                          &type) == STORE_OK &&
           type != STORE_TYPE_STRING;
}

/* Sets *BYTES and *LENGTH to SLOT's value ("" when the key is absent; *BYTES NULL with
 * the length for a stream). Replies with the error and returns false when the read
 * failed. The slot keeps its value (reads_free() releases it). */
static bool slot_bytes(struct resp_session *session, const struct resp_read_slot *slot,
                       const unsigned char **bytes, uint64_t *length) {
    *bytes = (const unsigned char *)"";
    *length = 0;
    if (slot->status == STORE_NOT_FOUND) return true;
    if (slot->status == STORE_WRONG_TYPE) {
        reply_error(session, LCS_TYPE_ERROR);
        return false;
    }
    if (slot->status != STORE_OK) {
        reply_store_error(session, slot->status);
        return false;
    }
    if (slot->value.stream != NULL) {
        *bytes = NULL;
        *length = store_stream_length(slot->value.stream);
        return true;
    }
    *bytes = item_value(slot->value.item);
    *length = item_value_length(slot->value.item);
    return true;
}

/* Replies with the IDX map (RESP2: a flat array): "matches" then "len". */
static void reply_matches(struct resp_session *session, const struct lcs_match *matches,
                          size_t count, bool with_length, uint32_t length) {
    reply_map(session, 2);
    reply_bulk_text(session, "matches");
    reply_array(session, count);
    for (size_t i = 0; i < count; i++) {
        const struct lcs_match *match = &matches[i];
        reply_array(session, with_length ? 3 : 2);
        reply_array(session, 2);
        reply_integer(session, match->a_start);
        reply_integer(session, match->a_end);
        reply_array(session, 2);
        reply_integer(session, match->b_start);
        reply_integer(session, match->b_end);
        if (with_length) reply_integer(session, (int64_t)match->a_end - match->a_start + 1);
    }
    reply_bulk_text(session, "len");
    reply_integer(session, length);
}

/* Fills TABLE ((A_LENGTH + 1) x (B_LENGTH + 1) cells, row by row): cell (i, j) is the
 * length of the LCS of A's first i bytes and B's first j bytes. */
static void lcs_fill(uint32_t *table, const unsigned char *a, uint32_t a_length,
                     const unsigned char *b, uint32_t b_length) {
    size_t width = (size_t)b_length + 1;
    for (uint32_t i = 0; i <= a_length; i++) {
        uint32_t *row = table + (size_t)i * width;
        const uint32_t *above = i > 0 ? row - width : row; /* read only when i > 0 */
        for (uint32_t j = 0; j <= b_length; j++) {
            if (i == 0 || j == 0) {
                row[j] = 0;
            } else if (a[i - 1] == b[j - 1]) {
                row[j] = above[j - 1] + 1;
            } else {
                row[j] = above[j] > row[j - 1] ? above[j] : row[j - 1];
            }
        }
    }
}

/* The reads have ended: computes the LCS of the two values and replies as Redis does
 * (the string, LEN's integer or IDX's map; READS->arguments: the LCS_ flags and
 * MINMATCHLEN). Owns nothing after it returns: the table, the string and the matches
 * are freed here, the values by reads_free(). */
static void reply_lcs(struct resp_session *session, struct resp_reads *reads) {
    int64_t flags = reads->arguments[0];
    int64_t min_match_length = reads->arguments[1];
    const unsigned char *a, *b;
    uint64_t a_length64, b_length64;
    /* As Redis: both types are checked before anything else. */
    for (size_t i = 0; i < 2; i++) {
        if (reads->slots[i].status == STORE_WRONG_TYPE) {
            reply_error(session, LCS_TYPE_ERROR);
            return;
        }
    }
    if (!slot_bytes(session, &reads->slots[0], &a, &a_length64) ||
        !slot_bytes(session, &reads->slots[1], &b, &b_length64)) {
        return;
    }
    if (a_length64 >= UINT32_MAX - 1 || b_length64 >= UINT32_MAX - 1) {
        reply_error(session, "ERR String too long for LCS");
        return;
    }
    uint32_t a_length = (uint32_t)a_length64, b_length = (uint32_t)b_length64;
    uint64_t cells = ((uint64_t)a_length + 1) * ((uint64_t)b_length + 1); /* < 2^64 */
    uint64_t max_value =
        (uint64_t)options_number(session->server->environment.options, ENGINE_OPTION(max_value));
    if (cells > UINT64_MAX / sizeof(uint32_t) || cells * sizeof(uint32_t) >= SIZE_MAX) {
        reply_error(session, "ERR Insufficient memory, failed allocating transient memory for LCS");
        return;
    }
    if (cells * sizeof(uint32_t) > max_value) {
        reply_error(session,
                    "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
        return;
    }
    /* A stream is never compared byte by byte (see the top): only against "". */
    if ((a == NULL || b == NULL) && a_length != 0 && b_length != 0) {
        reply_error(session, "ERR Insufficient memory, failed allocating transient memory for LCS");
        return;
    }
    uint32_t *table = malloc((size_t)(cells * sizeof(uint32_t)));
    if (table == NULL) {
        reply_error(session, "ERR Insufficient memory, failed allocating transient memory for LCS");
        return;
    }
    lcs_fill(table, a, a_length, b, b_length);
    size_t width = (size_t)b_length + 1;
#define LCS_CELL(I, J) table[(size_t)(I)*width + (J)]
    uint32_t length = LCS_CELL(a_length, b_length);
    bool want_idx = (flags & LCS_IDX) != 0;
    bool want_string = want_idx || (flags & LCS_LEN) == 0;
    unsigned char *result = NULL;
    struct lcs_match *matches = NULL;
    size_t match_count = 0;
    if (want_string) {
        /* Matches never share a byte: at most min(a_length, b_length) of them. */
        result = malloc(length > 0 ? length : 1);
        if (want_idx) {
            size_t most = (a_length < b_length ? a_length : b_length);
            matches = malloc((most > 0 ? most : 1) * sizeof(*matches));
        }
        if (result == NULL || (want_idx && matches == NULL)) {
            free(table);
            free(result);
            free(matches);
            reply_store_error(session, STORE_ALLOCATION_FAILED);
            return;
        }
    }
    /* Redis's walk back (t_string.c lcsCommand): a range of contiguous matches grows
     * backwards and is emitted when it breaks or reaches the start of either string;
     * a_start == a_length means no range is open. */
    uint32_t i = a_length, j = b_length, index = length;
    uint32_t a_start = a_length, a_end = 0, b_start = 0, b_end = 0;
    while (want_string && i > 0 && j > 0) {
        bool emit = false;
        if (a[i - 1] == b[j - 1]) {
            result[index - 1] = a[i - 1];
            if (a_start == a_length) {
                a_start = a_end = i - 1;
                b_start = b_end = j - 1;
            } else if (a_start == i && b_start == j) {
                a_start--;
                b_start--;
            } else {
                emit = true;
            }
            if (a_start == 0 || b_start == 0) emit = true;
            index--;
            i--;
            j--;
        } else {
            if (LCS_CELL(i - 1, j) > LCS_CELL(i, j - 1)) {
                i--;
            } else {
                j--;
            }
            if (a_start != a_length) emit = true;
        }
        if (emit) {
            uint32_t match_length = a_end - a_start + 1;
            if (want_idx && (min_match_length == 0 || match_length >= min_match_length)) {
                matches[match_count++] = (struct lcs_match){a_start, a_end, b_start, b_end};
            }
            a_start = a_length;
        }
    }
#undef LCS_CELL
    free(table);
    if (want_idx) {
        reply_matches(session, matches, match_count, (flags & LCS_WITHMATCHLEN) != 0, length);
    } else if (!want_string) {
        reply_integer(session, length);
    } else {
        reply_bulk(session, result, length);
    }
    free(result);
    free(matches);
}

void command_lcs(struct resp_session *session, const struct resp_request *request) {
    /* As Redis: a key of another type fails before the options are looked at. */
    if (holds_other_type(session, request, 1) || holds_other_type(session, request, 2)) {
        reply_error(session, LCS_TYPE_ERROR);
        return;
    }
    int64_t arguments[2] = {0, 0}; /* the LCS_ flags, MINMATCHLEN */
    for (size_t index = 3; index < request->argc; index++) {
        bool more = index + 1 < request->argc;
        if (argument_is(request, index, "IDX")) {
            arguments[0] |= LCS_IDX;
        } else if (argument_is(request, index, "LEN")) {
            arguments[0] |= LCS_LEN;
        } else if (argument_is(request, index, "WITHMATCHLEN")) {
            arguments[0] |= LCS_WITHMATCHLEN;
        } else if (argument_is(request, index, "MINMATCHLEN") && more) {
            if (!argument_int64(session, request, index + 1, &arguments[1])) return;
            if (arguments[1] < 0) arguments[1] = 0;
            index++;
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    if ((arguments[0] & LCS_IDX) && (arguments[0] & LCS_LEN)) {
        reply_error(session, "ERR If you want both the length and indexes, please just use IDX.");
        return;
    }
    resp_read_values(session, request, 1, 2, arguments, reply_lcs);
}
