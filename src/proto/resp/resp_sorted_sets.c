/* Sorted sets: ZADD ZINCRBY ZSCORE ZMSCORE ZCARD ZCOUNT ZLEXCOUNT ZRANGE ZRANGEBYSCORE
 * ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZREVRANGE ZRANK ZREVRANK ZREM
 * ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREMRANGEBYLEX ZPOPMIN ZPOPMAX ZRANDMEMBER ZSCAN,
 * ZMPOP BZMPOP BZPOPMIN BZPOPMAX, ZUNION ZINTER ZDIFF ZUNIONSTORE ZINTERSTORE ZDIFFSTORE
 * ZINTERCARD ZRANGESTORE, with Redis 7.0's replies and errors.
 *
 * A sorted set is one value of type STORE_TYPE_ZSET in the engine, so it is counted in
 * the budget, evicted whole, expires, renames, copies and is watched like any key. Its
 * bytes are this encoding (version 1, little-endian), which only this file reads or
 * writes:
 *
 *   u8  version (1)
 *   u32 member count
 *   per member, in Redis's order (score, then the member's bytes as memcmp orders them):
 *       u64 the score's IEEE 754 double bits, u32 length, the member's bytes
 *
 * Scores are never NaN, and -0 is stored as 0 (as Redis's listpack shows it). A command
 * decodes the value into an array of (score, member) views, already in order, so a range
 * by rank, score or member is a binary search plus the reply, and a pop takes the ends.
 * A change edits the array (marking members removed or moved, appending new ones), then
 * settles it: the moved and new members are sorted among themselves and merged back, so
 * a change of K members in a set of M costs O(M + K log K), and a change that looks up
 * many members builds a temporary hash of the members first (no O(K*M)). A change is a
 * compare-and-swap (resp_value_update()), so concurrent changes to one set never lose
 * one another. The commands that combine several keys (ZUNION... ZRANGESTORE) read them,
 * and write their destination, with the session's exclusivity (resp_exclusive_begin()):
 * plain sets count as sorted sets whose every score is 1 (resp_set_each_member()). */
#include "base/array.h"
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/glob.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"
#include "strata_protocol.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZSET_FORMAT_VERSION 1
#define ZSET_HEADER_SIZE    5
#define ZSET_ENTRY_OVERHEAD 12 /* score and length */
/* Lookups beyond which a change builds a hash of the members (and members beyond which
 * it pays). */
#define INDEX_MIN_LOOKUPS 4
#define INDEX_MIN_MEMBERS 32

#define NAN_ERROR    "ERR resulting score is not a number (NaN)"
#define FLOAT_ERROR  "ERR value is not a valid float"
#define SCORE_ERROR  "ERR min or max is not a float"
#define LEX_ERROR    "ERR min or max not valid string range item"
#define DAMAGE_ERROR "ERR the sorted set's stored encoding is damaged"
#define MEMORY_ERROR "OOM out of memory: could not read the sorted set"

struct zset_entry {
    double score;
    const unsigned char *member;
    uint32_t length;
    bool removed; /* gone: settle() drops it */
    bool moved;   /* new, or its score changed: settle() puts it in its place */
};

/* A sorted set decoded into views of its value (or of a command's arguments, for the
 * members a change adds). In order, except for the entries marked moved. */
struct zset {
    struct zset_entry *entries;
    size_t count; /* entries, removed ones included */
    size_t capacity;
    size_t live;     /* entries not removed */
    uint32_t *index; /* optional hash of member -> entry + 1 (0: empty slot) */
    size_t index_size;
};

static bool entries_grow(struct zset *zset, size_t wanted) {
    return array_grow((void **)&zset->entries, &zset->capacity, wanted, sizeof(*zset->entries));
}

static void zset_free(struct zset *zset) {
    free(zset->entries);
    free(zset->index);
    *zset = (struct zset){0};
}

/* Orders members as Redis does (memcmp, then the shorter first). */
static int member_compare(const unsigned char *a, uint32_t a_length, const unsigned char *b,
                          uint32_t b_length) {
    uint32_t shorter = a_length < b_length ? a_length : b_length;
    int order = shorter ? memcmp(a, b, shorter) : 0;
    if (order != 0) return order;
    return a_length < b_length ? -1 : a_length > b_length ? 1 : 0;
}

static int entry_compare(const struct zset_entry *a, const struct zset_entry *b) {
    if (a->score < b->score) return -1;
    if (a->score > b->score) return 1;
    return member_compare(a->member, a->length, b->member, b->length);
}

static int entry_compare_qsort(const void *a, const void *b) {
    return entry_compare(a, b);
}

enum decode_result { DECODED, DECODE_CORRUPT, DECODE_NO_MEMORY };

/* Decodes the LENGTH bytes at DATA into ZSET (empty on entry), whose views point into
 * DATA: it must outlive them. */
static enum decode_result zset_decode(const unsigned char *data, uint64_t length,
                                      struct zset *zset) {
    if (length < ZSET_HEADER_SIZE || data[0] != ZSET_FORMAT_VERSION) return DECODE_CORRUPT;
    uint32_t count = strata_load32(data + 1);
    if (count > (length - ZSET_HEADER_SIZE) / ZSET_ENTRY_OVERHEAD) return DECODE_CORRUPT;
    if (!entries_grow(zset, count)) return DECODE_NO_MEMORY;
    const unsigned char *at = data + ZSET_HEADER_SIZE, *end = data + length;
    for (uint32_t i = 0; i < count; i++) {
        struct zset_entry *entry = &zset->entries[i];
        if (end - at < ZSET_ENTRY_OVERHEAD) return DECODE_CORRUPT;
        uint64_t bits = strata_load64(at);
        memcpy(&entry->score, &bits, sizeof(bits));
        entry->length = strata_load32(at + 8);
        at += ZSET_ENTRY_OVERHEAD;
        if ((uint64_t)(end - at) < entry->length || isnan(entry->score)) return DECODE_CORRUPT;
        entry->member = at;
        at += entry->length;
        entry->removed = entry->moved = false;
    }
    if (at != end) return DECODE_CORRUPT;
    zset->count = zset->live = count;
    return DECODED;
}

/* Appends ZSET's live entries (settled: in order), encoded, to OUTPUT. */
static void zset_encode(const struct zset *zset, struct byte_buffer *output) {
    unsigned char header[ZSET_HEADER_SIZE] = {ZSET_FORMAT_VERSION};
    strata_store32(header + 1, (uint32_t)zset->live);
    byte_buffer_append(output, header, sizeof(header));
    for (size_t i = 0; i < zset->count; i++) {
        const struct zset_entry *entry = &zset->entries[i];
        if (entry->removed) continue;
        unsigned char fixed[ZSET_ENTRY_OVERHEAD];
        uint64_t bits;
        memcpy(&bits, &entry->score, sizeof(bits));
        strata_store64(fixed, bits);
        strata_store32(fixed + 8, entry->length);
        byte_buffer_append(output, fixed, sizeof(fixed));
        byte_buffer_append(output, entry->member, entry->length);
    }
}

/* Puts ZSET back in order after a change: drops removed entries, sorts the moved ones
 * and merges them with the rest (already in order). Returns false when out of memory. */
static bool zset_settle(struct zset *zset) {
    size_t kept = 0, moved_count = 0;
    for (size_t i = 0; i < zset->count; i++)
        if (!zset->entries[i].removed && zset->entries[i].moved) moved_count++;
    struct zset_entry *moved = NULL;
    if (moved_count > 0) {
        moved = malloc(moved_count * sizeof(*moved));
        if (moved == NULL) return false;
    }
    size_t m = 0;
    for (size_t i = 0; i < zset->count; i++) {
        struct zset_entry entry = zset->entries[i];
        if (entry.removed) continue;
        bool was_moved = entry.moved;
        entry.moved = false;
        if (was_moved) {
            moved[m++] = entry;
        } else {
            zset->entries[kept++] = entry;
        }
    }
    if (moved_count > 0) {
        qsort(moved, moved_count, sizeof(*moved), entry_compare_qsort);
        /* Merge from the back, in place: the array has room for all of them. */
        size_t a = kept, b = moved_count, out = kept + moved_count;
        while (b > 0) {
            if (a > 0 && entry_compare(&zset->entries[a - 1], &moved[b - 1]) > 0) {
                zset->entries[--out] = zset->entries[--a];
            } else {
                zset->entries[--out] = moved[--b];
            }
        }
        free(moved);
    }
    zset->count = zset->live = kept + moved_count;
    free(zset->index);
    zset->index = NULL;
    zset->index_size = 0;
    return true;
}

/* FNV-1a, for the temporary member index. */
static uint64_t member_hash(const unsigned char *member, uint32_t length) {
    uint64_t hash = 1469598103934665603ULL;
    for (uint32_t i = 0; i < length; i++) {
        hash ^= member[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

static void index_insert(struct zset *zset, size_t position) {
    const struct zset_entry *entry = &zset->entries[position];
    size_t mask = zset->index_size - 1;
    size_t slot = (size_t)member_hash(entry->member, entry->length) & mask;
    while (zset->index[slot] != 0)
        slot = (slot + 1) & mask;
    zset->index[slot] = (uint32_t)position + 1;
}

/* Builds ZSET's member index with room for EXTRA more members. Returns false when out
 * of memory (the caller then searches linearly). */
static bool index_build(struct zset *zset, size_t extra) {
    size_t size = 16;
    while (size < 2 * (zset->count + extra))
        size *= 2;
    uint32_t *index = calloc(size, sizeof(*index));
    if (index == NULL) return false;
    free(zset->index);
    zset->index = index;
    zset->index_size = size;
    for (size_t i = 0; i < zset->count; i++)
        if (!zset->entries[i].removed) index_insert(zset, i);
    return true;
}

/* Builds the index when LOOKUPS member lookups are coming and the set is big enough
 * for it to pay, with room for LOOKUPS new members. Out of memory: no index. */
static void index_maybe(struct zset *zset, size_t lookups) {
    if (lookups >= INDEX_MIN_LOOKUPS && zset->count >= INDEX_MIN_MEMBERS &&
        zset->count + lookups < UINT32_MAX) {
        index_build(zset, lookups);
    }
}

/* The live entry of MEMBER (LENGTH bytes), or NULL. */
static struct zset_entry *zset_find(struct zset *zset, const unsigned char *member,
                                    uint64_t length) {
    if (zset->index != NULL) {
        size_t mask = zset->index_size - 1;
        for (size_t slot = (size_t)member_hash(member, (uint32_t)length) & mask;
             zset->index[slot] != 0; slot = (slot + 1) & mask) {
            struct zset_entry *entry = &zset->entries[zset->index[slot] - 1];
            if (!entry->removed && entry->length == length &&
                memcmp(entry->member, member, (size_t)length) == 0) {
                return entry;
            }
        }
        return NULL;
    }
    for (size_t i = 0; i < zset->count; i++) {
        struct zset_entry *entry = &zset->entries[i];
        if (!entry->removed && entry->length == length &&
            memcmp(entry->member, member, (size_t)length) == 0) {
            return entry;
        }
    }
    return NULL;
}

/* Appends MEMBER (a view that must outlive ZSET) with SCORE, marked moved. Returns
 * false when out of memory. Invalidates entry pointers. */
static bool zset_append(struct zset *zset, const unsigned char *member, uint64_t length,
                        double score) {
    if (!entries_grow(zset, zset->count + 1)) return false;
    if (zset->index != NULL && 2 * (zset->count + 1) > zset->index_size &&
        !index_build(zset, zset->count)) {
        free(zset->index);
        zset->index = NULL;
    }
    zset->entries[zset->count] = (struct zset_entry){
        .score = score, .member = member, .length = (uint32_t)length, .moved = true};
    if (zset->index != NULL) index_insert(zset, zset->count);
    zset->count++;
    zset->live++;
    return true;
}

/* Redis's name for how it would keep a sorted set like this one (OBJECT ENCODING). */
const char *resp_zset_encoding(const unsigned char *value, uint64_t length, int64_t max_entries,
                               int64_t max_value) {
    struct zset zset = {0};
    const char *name = "skiplist";
    if (zset_decode(value, length, &zset) == DECODED && (int64_t)zset.live <= max_entries) {
        name = "listpack";
        for (size_t i = 0; i < zset.count; i++)
            if (zset.entries[i].length > max_value) name = "skiplist";
    }
    zset_free(&zset);
    return name;
}

int resp_zset_each_member(const unsigned char *value, uint64_t length,
                          bool (*visit)(void *context, const unsigned char *member,
                                        uint32_t member_length),
                          void *context) {
    struct zset zset = {0};
    enum decode_result decoded = zset_decode(value, length, &zset);
    int result = decoded == DECODED ? 1 : decoded == DECODE_CORRUPT ? 0 : -1;
    for (size_t i = 0; i < zset.count && result == 1; i++)
        if (!visit(context, zset.entries[i].member, zset.entries[i].length)) result = -1;
    zset_free(&zset);
    return result;
}

/* ---- numbers and ranges -------------------------------------------------------------- */

/* strtod() over LENGTH bytes at TEXT (copied to be NUL-terminated): *END_OK tells
 * whether it consumed them all. Returns false when the text is too long to copy. */
static bool score_strtod(const unsigned char *text, size_t length, double *value, bool *end_ok,
                         bool *range_error) {
    char buffer[512];
    char *copy = length < sizeof(buffer) ? buffer : malloc(length + 1);
    if (copy == NULL) return false;
    memcpy(copy, text, length);
    copy[length] = '\0';
    char *end;
    errno = 0;
    *value = strtod(copy, &end);
    *range_error = errno == ERANGE;
    *end_ok = end == copy + length;
    if (copy != buffer) free(copy);
    return true;
}

/* Parses a double as Redis's getDoubleFromObject(): the whole text, no leading space,
 * no NaN, no overflow or underflow. Keeps -0 (a weight of -0 gives -0 scores). */
static bool parse_double(const unsigned char *text, size_t length, double *value) {
    bool end_ok, range_error;
    if (length == 0 || isspace(text[0])) return false;
    if (!score_strtod(text, length, value, &end_ok, &range_error)) return false;
    if (!end_ok || isnan(*value)) return false;
    return !(range_error && (isinf(*value) || *value == 0));
}

/* parse_double() for a score to store: -0 becomes 0. */
static bool parse_score(const unsigned char *text, size_t length, double *score) {
    if (!parse_double(text, length, score)) return false;
    *score += 0.0; /* -0 becomes 0 */
    return true;
}

static bool argument_score(struct resp_session *session, const struct resp_request *request,
                           size_t index, double *score) {
    if (parse_score(request->argv[index], (size_t)request->lengths[index], score)) return true;
    reply_error(session, FLOAT_ERROR);
    return false;
}

/* A range of scores: min and max, each inclusive or not. */
struct score_range {
    double min, max;
    bool min_exclusive, max_exclusive;
};

/* Parses one end of a score range as Redis's zslParseRange() does ("(" for exclusive). */
static bool parse_score_end(const unsigned char *text, size_t length, double *value,
                            bool *exclusive) {
    *exclusive = length > 0 && text[0] == '(';
    if (*exclusive) {
        text++;
        length--;
    }
    bool end_ok, range_error;
    if (!score_strtod(text, length, value, &end_ok, &range_error)) return false;
    return end_ok && !isnan(*value);
}

static bool argument_score_range(struct resp_session *session, const struct resp_request *request,
                                 size_t min_index, size_t max_index, struct score_range *range) {
    if (parse_score_end(request->argv[min_index], (size_t)request->lengths[min_index], &range->min,
                        &range->min_exclusive) &&
        parse_score_end(request->argv[max_index], (size_t)request->lengths[max_index], &range->max,
                        &range->max_exclusive)) {
        return true;
    }
    reply_error(session, SCORE_ERROR);
    return false;
}

static bool score_above_min(double score, const struct score_range *range) {
    return range->min_exclusive ? score > range->min : score >= range->min;
}

static bool score_below_max(double score, const struct score_range *range) {
    return range->max_exclusive ? score < range->max : score <= range->max;
}

/* One end of a lex range: "-" (below all), "+" (above all), or a member, inclusive
 * ("[") or not ("("). */
struct lex_end {
    enum { LEX_MINUS, LEX_PLUS, LEX_MEMBER } kind;
    bool exclusive;
    const unsigned char *member;
    uint32_t length;
};

struct lex_range {
    struct lex_end min, max;
};

static bool parse_lex_end(const unsigned char *text, uint64_t length, struct lex_end *end) {
    if (length == 0 || length - 1 > UINT32_MAX) return false;
    if (length == 1 && (text[0] == '-' || text[0] == '+')) {
        end->kind = text[0] == '-' ? LEX_MINUS : LEX_PLUS;
        return true;
    }
    if (text[0] != '[' && text[0] != '(') return false;
    end->kind = LEX_MEMBER;
    end->exclusive = text[0] == '(';
    end->member = text + 1;
    end->length = (uint32_t)(length - 1);
    return true;
}

static bool argument_lex_range(struct resp_session *session, const struct resp_request *request,
                               size_t min_index, size_t max_index, struct lex_range *range) {
    if (parse_lex_end(request->argv[min_index], request->lengths[min_index], &range->min) &&
        parse_lex_end(request->argv[max_index], request->lengths[max_index], &range->max)) {
        return true;
    }
    reply_error(session, LEX_ERROR);
    return false;
}

static bool lex_above_min(const struct zset_entry *entry, const struct lex_end *min) {
    if (min->kind != LEX_MEMBER) return min->kind == LEX_MINUS;
    int order = member_compare(entry->member, entry->length, min->member, min->length);
    return min->exclusive ? order > 0 : order >= 0;
}

static bool lex_below_max(const struct zset_entry *entry, const struct lex_end *max) {
    if (max->kind != LEX_MEMBER) return max->kind == LEX_PLUS;
    int order = member_compare(entry->member, entry->length, max->member, max->length);
    return max->exclusive ? order < 0 : order <= 0;
}

/* What selects members: a rank range, a score range, or a lex range. */
enum range_kind { RANGE_RANK, RANGE_SCORE, RANGE_LEX };

struct range {
    enum range_kind kind;
    int64_t start, stop; /* RANGE_RANK */
    struct score_range score;
    struct lex_range lex;
};

/* The first entry of the settled ZSET (in [0, count]) at or above RANGE's min: a
 * binary search, scores being in order. */
static size_t first_above(const struct zset *zset, const struct score_range *range) {
    size_t low = 0, high = zset->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (score_above_min(zset->entries[middle].score, range)) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    return low;
}

/* The first entry of the settled ZSET (in [0, count]) past RANGE's max. */
static size_t first_past(const struct zset *zset, const struct score_range *range) {
    size_t low = 0, high = zset->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (score_below_max(zset->entries[middle].score, range)) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

/* The entries [*FIRST, *END) of the settled ZSET that RANGE selects, counted from the
 * lowest; REVERSE reads a rank range from the highest (as Z[REV]RANGE). */
static void range_bounds(const struct zset *zset, const struct range *range, bool reverse,
                         size_t *first, size_t *end) {
    *first = *end = 0;
    int64_t size = (int64_t)zset->count;
    if (range->kind == RANGE_RANK) {
        int64_t start = range->start, stop = range->stop;
        if (start < 0) start += size;
        if (stop < 0) stop += size;
        if (start < 0) start = 0;
        if (start > stop || start >= size) return;
        if (stop >= size) stop = size - 1;
        if (reverse) {
            *first = (size_t)(size - 1 - stop);
            *end = (size_t)(size - start);
        } else {
            *first = (size_t)start;
            *end = (size_t)stop + 1;
        }
        return;
    }
    if (range->kind == RANGE_SCORE) {
        *first = first_above(zset, &range->score);
        *end = first_past(zset, &range->score);
        if (*end < *first) *end = *first;
        return;
    }
    /* A lex range assumes equal scores; with others Redis's answers depend on its walk,
     * which this follows: nothing when min > max or the set lies wholly outside, else
     * from the first member past min (last before max, reversed) while in range. */
    const struct lex_end *min = &range->lex.min, *max = &range->lex.max;
    if (zset->count == 0 || min->kind == LEX_PLUS || max->kind == LEX_MINUS) return;
    if (min->kind == LEX_MEMBER && max->kind == LEX_MEMBER) {
        int order = member_compare(min->member, min->length, max->member, max->length);
        if (order > 0 || (order == 0 && (min->exclusive || max->exclusive))) return;
    }
    if (!lex_above_min(&zset->entries[zset->count - 1], min) ||
        !lex_below_max(&zset->entries[0], max)) {
        return;
    }
    /* Linear searches, as Redis's listpack does (the same answers as a binary search when
     * the scores are equal; an answer like Redis's when they are not). */
    if (reverse) {
        size_t last = zset->count;
        while (last > 0 && !lex_below_max(&zset->entries[last - 1], max))
            last--;
        *first = *end = last;
        while (*first > 0 && lex_above_min(&zset->entries[*first - 1], min))
            (*first)--;
    } else {
        size_t start = 0;
        while (start < zset->count && !lex_above_min(&zset->entries[start], min))
            start++;
        *first = *end = start;
        while (*end < zset->count && lex_below_max(&zset->entries[*end], max))
            (*end)++;
    }
}

/* Formats SCORE as Redis 7.0's addReplyDouble() ("%.17g", "inf", "-inf"). */
static size_t format_score(char *text, size_t size, double score) {
    if (isinf(score)) return (size_t)snprintf(text, size, "%s", score > 0 ? "inf" : "-inf");
    return (size_t)snprintf(text, size, "%.17g", score);
}

/* Replies SCORE: a RESP3 double, or a bulk string in RESP2. */
static void reply_score(struct resp_session *session, double score) {
    char text[64];
    size_t length = format_score(text + 1, sizeof(text) - 3, score);
    if (session->protocol == 3) {
        text[0] = ',';
        text[length + 1] = '\r';
        text[length + 2] = '\n';
        output_queue_append(session->output, text, length + 3);
    } else {
        reply_bulk(session, text + 1, length);
    }
}

/* Replies one member, with its score when WITH_SCORES, as a [member, score] pair when
 * PAIRS. */
static void reply_entry(struct resp_session *session, const struct zset_entry *entry,
                        bool with_scores, bool pairs) {
    if (pairs) reply_array(session, 2);
    reply_bulk(session, entry->member, entry->length);
    if (with_scores) reply_score(session, entry->score);
}

/* Replies COUNT entries from ENTRIES, forwards or (REVERSE) backwards, with their scores
 * when WITH_SCORES: flat in RESP2, as [member, score] pairs in RESP3 when NESTED. */
static void reply_entries(struct resp_session *session, const struct zset_entry *entries,
                          size_t count, bool reverse, bool with_scores, bool nested) {
    bool pairs = with_scores && nested && session->protocol == 3;
    reply_array(session, with_scores && !pairs ? count * 2 : count);
    for (size_t i = 0; i < count; i++)
        reply_entry(session, reverse ? entries - i : entries + i, with_scores, pairs);
}

/* ---- reading ---------------------------------------------------------------------- */

/* Reads the sorted set at argument INDEX into *ZSET (views into *ITEM, which the caller
 * releases; NULL and an empty set when the key is absent). Brings it to DRAM first
 * (false: the command runs again later). Returns false after replying the error. */
static bool read_zset_at(struct resp_session *session, const struct resp_request *request,
                         size_t index, struct item **item, struct zset *zset) {
    *zset = (struct zset){0};
    *item = NULL;
    if (!resp_value_in_dram(session, request, index)) return false;
    if (!resp_value_read(session, request, index, STORE_TYPE_ZSET, item)) return false;
    if (*item == NULL) return true;
    enum decode_result decoded = zset_decode(item_value(*item), item_value_length(*item), zset);
    if (decoded == DECODED) return true;
    item_release(*item);
    *item = NULL;
    zset_free(zset);
    reply_error(session, decoded == DECODE_CORRUPT ? DAMAGE_ERROR : MEMORY_ERROR);
    return false;
}

/* read_zset_at() for the key at argument 1. */
static bool read_zset(struct resp_session *session, const struct resp_request *request,
                      struct item **item, struct zset *zset) {
    return read_zset_at(session, request, 1, item, zset);
}

static void done_reading(struct item *item, struct zset *zset) {
    zset_free(zset);
    if (item != NULL) item_release(item);
}

void command_zscore(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct zset zset;
    if (!read_zset(session, request, &item, &zset)) return;
    const struct zset_entry *entry = zset_find(&zset, request->argv[2], request->lengths[2]);
    if (entry != NULL) {
        reply_score(session, entry->score);
    } else {
        reply_null(session);
    }
    done_reading(item, &zset);
}

void command_zmscore(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct zset zset;
    if (!read_zset(session, request, &item, &zset)) return;
    index_maybe(&zset, request->argc - 2);
    reply_array(session, request->argc - 2);
    for (size_t i = 2; i < request->argc; i++) {
        const struct zset_entry *entry = zset_find(&zset, request->argv[i], request->lengths[i]);
        if (entry != NULL) {
            reply_score(session, entry->score);
        } else {
            reply_null(session);
        }
    }
    done_reading(item, &zset);
}

void command_zcard(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct zset zset;
    if (!read_zset(session, request, &item, &zset)) return;
    reply_integer(session, (int64_t)zset.live);
    done_reading(item, &zset);
}

/* ZRANK and ZREVRANK: the member's rank, or nil. */
static void rank(struct resp_session *session, const struct resp_request *request, bool reverse) {
    struct item *item;
    struct zset zset;
    if (!read_zset(session, request, &item, &zset)) return;
    const struct zset_entry *entry = zset_find(&zset, request->argv[2], request->lengths[2]);
    if (entry != NULL) {
        size_t position = (size_t)(entry - zset.entries);
        reply_integer(session, (int64_t)(reverse ? zset.count - 1 - position : position));
    } else {
        reply_null(session);
    }
    done_reading(item, &zset);
}

void command_zrank(struct resp_session *session, const struct resp_request *request) {
    rank(session, request, false);
}

void command_zrevrank(struct resp_session *session, const struct resp_request *request) {
    rank(session, request, true);
}

/* ZCOUNT and ZLEXCOUNT: the members in a score or lex range. */
static void count_range(struct resp_session *session, const struct resp_request *request,
                        enum range_kind kind) {
    struct range range = {.kind = kind};
    if (kind == RANGE_SCORE ? !argument_score_range(session, request, 2, 3, &range.score)
                            : !argument_lex_range(session, request, 2, 3, &range.lex)) {
        return;
    }
    struct item *item;
    struct zset zset;
    if (!read_zset(session, request, &item, &zset)) return;
    size_t first, end;
    range_bounds(&zset, &range, false, &first, &end);
    reply_integer(session, (int64_t)(end - first));
    done_reading(item, &zset);
}

void command_zcount(struct resp_session *session, const struct resp_request *request) {
    count_range(session, request, RANGE_SCORE);
}

void command_zlexcount(struct resp_session *session, const struct resp_request *request) {
    count_range(session, request, RANGE_LEX);
}

/* How a Z*RANGE* command reads its arguments: a fixed kind and direction (the older
 * commands), or ZRANGE's own choice of both (AUTO). */
enum { PICK_AUTO = -1 };

/* A Z*RANGE* command's query: the range, its direction, WITHSCORES and LIMIT. */
struct range_query {
    struct range range;
    bool reverse, with_scores;
    int64_t offset, limit; /* LIMIT (limit -1: none) */
};

/* Reads a Z*RANGE* command's range (arguments FIRST and FIRST + 1) and options (from
 * FIRST + 2) into *QUERY, as Redis's zrangeGenericCommand(): KIND and REVERSE are
 * PICK_AUTO for ZRANGE and ZRANGESTORE (their options choose them), fixed for the older
 * forms; STORE (ZRANGESTORE) refuses WITHSCORES. Returns false after replying the
 * error. */
static bool parse_range_query(struct resp_session *session, const struct resp_request *request,
                              size_t first, bool store, int kind, int reverse,
                              struct range_query *query) {
    *query = (struct range_query){.limit = -1};
    for (size_t i = first + 2; i < request->argc; i++) {
        size_t left = request->argc - i - 1;
        if (!store && argument_is(request, i, "WITHSCORES")) {
            query->with_scores = true;
        } else if (argument_is(request, i, "LIMIT") && left >= 2) {
            if (!argument_int64(session, request, i + 1, &query->offset) ||
                !argument_int64(session, request, i + 2, &query->limit)) {
                return false;
            }
            i += 2;
        } else if (reverse == PICK_AUTO && argument_is(request, i, "REV")) {
            reverse = 1;
        } else if (kind == PICK_AUTO && argument_is(request, i, "BYLEX")) {
            kind = RANGE_LEX;
        } else if (kind == PICK_AUTO && argument_is(request, i, "BYSCORE")) {
            kind = RANGE_SCORE;
        } else {
            reply_syntax_error(session);
            return false;
        }
    }
    if (reverse == PICK_AUTO) reverse = 0;
    if (kind == PICK_AUTO) kind = RANGE_RANK;
    query->reverse = reverse;
    if (query->limit != -1 && kind == RANGE_RANK) {
        reply_error(session, "ERR syntax error, LIMIT is only supported in combination with "
                             "either BYSCORE or BYLEX");
        return false;
    }
    if (query->with_scores && kind == RANGE_LEX) {
        reply_error(session,
                    "ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        return false;
    }
    /* A reversed score or lex range is given as max, min. */
    size_t min_index = first, max_index = first + 1;
    if (reverse && kind != RANGE_RANK) {
        min_index = first + 1;
        max_index = first;
    }
    struct range *range = &query->range;
    range->kind = (enum range_kind)kind;
    if (kind == RANGE_RANK) {
        return argument_int64(session, request, first, &range->start) &&
               argument_int64(session, request, first + 1, &range->stop);
    }
    if (kind == RANGE_SCORE)
        return argument_score_range(session, request, min_index, max_index, &range->score);
    return argument_lex_range(session, request, min_index, max_index, &range->lex);
}

/* The entries of the settled ZSET that QUERY selects: *COUNT of them from *POSITION,
 * forwards, or backwards when QUERY->reverse (then *POSITION is the highest). They are
 * always consecutive entries. */
static void range_select(const struct zset *zset, const struct range_query *query, size_t *position,
                         size_t *count) {
    bool reverse = query->reverse;
    int64_t offset = query->offset, limit = query->limit;
    size_t first, end;
    range_bounds(zset, &query->range, reverse, &first, &end);
    *count = end - first;
    /* Where the reply starts (forwards, or backwards when REVERSE). */
    *position = reverse ? end - 1 : first;
    if (*count > 0 && query->range.kind == RANGE_LEX && offset > 0) {
        /* As Redis: LIMIT's offset skips members without looking at them, and the walk
         * goes on while in range; it matters only when the scores are not all equal. */
        const struct lex_range *lex = &query->range.lex;
        *count = 0;
        if (reverse && (uint64_t)offset <= *position) {
            *position -= (size_t)offset;
            while (*count <= *position &&
                   lex_above_min(&zset->entries[*position - *count], &lex->min))
                (*count)++;
        } else if (!reverse && (uint64_t)offset < zset->count - *position) {
            *position += (size_t)offset;
            while (*position + *count < zset->count &&
                   lex_below_max(&zset->entries[*position + *count], &lex->max))
                (*count)++;
        }
        offset = 0;
    }
    if (query->range.kind != RANGE_RANK) {
        /* LIMIT: a negative offset selects nothing, a negative count everything. */
        if (offset < 0 || (uint64_t)offset >= *count) {
            *count = 0;
        } else {
            *count -= (size_t)offset;
            *position = reverse ? *position - (size_t)offset : *position + (size_t)offset;
            if (limit >= 0 && (uint64_t)limit < *count) *count = (size_t)limit;
        }
    }
    if (*count == 0) *position = 0;
}

/* ZRANGE and its older forms, as Redis's zrangeGenericCommand(): KIND and REVERSE are
 * PICK_AUTO for ZRANGE (its options choose them), fixed for the others. */
static void range_command(struct resp_session *session, const struct resp_request *request,
                          int kind, int reverse) {
    struct range_query query;
    if (!parse_range_query(session, request, 2, false, kind, reverse, &query)) return;
    struct item *item;
    struct zset zset;
    if (!read_zset(session, request, &item, &zset)) return;
    size_t position, count;
    range_select(&zset, &query, &position, &count);
    const struct zset_entry *start = count == 0 ? zset.entries : &zset.entries[position];
    reply_entries(session, start, count, query.reverse, query.with_scores, true);
    done_reading(item, &zset);
}

void command_zrange(struct resp_session *session, const struct resp_request *request) {
    range_command(session, request, PICK_AUTO, PICK_AUTO);
}

void command_zrevrange(struct resp_session *session, const struct resp_request *request) {
    range_command(session, request, RANGE_RANK, 1);
}

void command_zrangebyscore(struct resp_session *session, const struct resp_request *request) {
    range_command(session, request, RANGE_SCORE, 0);
}

void command_zrevrangebyscore(struct resp_session *session, const struct resp_request *request) {
    range_command(session, request, RANGE_SCORE, 1);
}

void command_zrangebylex(struct resp_session *session, const struct resp_request *request) {
    range_command(session, request, RANGE_LEX, 0);
}

void command_zrevrangebylex(struct resp_session *session, const struct resp_request *request) {
    range_command(session, request, RANGE_LEX, 1);
}

/* A small per-thread generator (xorshift64*) for ZRANDMEMBER, seeded on first use. */
static uint64_t random_next(void) {
    static _Thread_local uint64_t state;
    if (state == 0) state = (uint64_t)clock_monotonic_ns() | 1;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ULL;
}

/* ZRANDMEMBER key [count [WITHSCORES]]: one member (nil when absent); with a count, that
 * many distinct members (at most the set's), or with a negative count that many drawn
 * with repeats. */
void command_zrandmember(struct resp_session *session, const struct resp_request *request) {
    int64_t count = 0;
    bool with_count = request->argc >= 3;
    if (with_count && !argument_int64(session, request, 2, &count)) return;
    if (count == INT64_MIN) {
        reply_errorf(session, "ERR value is out of range, value must between %lld and %lld",
                     -(long long)INT64_MAX, (long long)INT64_MAX);
        return;
    }
    if (request->argc > 4 || (request->argc == 4 && !argument_is(request, 3, "WITHSCORES"))) {
        reply_syntax_error(session);
        return;
    }
    bool with_scores = request->argc == 4;
    if (with_scores && (count < -(INT64_MAX / 2) || count > INT64_MAX / 2)) {
        reply_error(session, "ERR value is out of range");
        return;
    }
    struct item *item;
    struct zset zset;
    if (!read_zset(session, request, &item, &zset)) return;
    size_t size = zset.count;
    bool pairs = with_scores && session->protocol == 3;
    if (!with_count) {
        if (size == 0) {
            reply_null(session);
        } else {
            const struct zset_entry *entry = &zset.entries[random_next() % size];
            reply_bulk(session, entry->member, entry->length);
        }
    } else if (size == 0 || count == 0) {
        reply_array(session, 0);
    } else if (count < 0) {
        uint64_t wanted = (uint64_t)-count;
        reply_array(session, with_scores && !pairs ? wanted * 2 : wanted);
        for (uint64_t i = 0; i < wanted; i++)
            reply_entry(session, &zset.entries[random_next() % size], with_scores, pairs);
    } else {
        size_t wanted = (uint64_t)count < size ? (size_t)count : size;
        /* The first WANTED of a partial Fisher-Yates shuffle of the entries. */
        for (size_t i = 0; i < wanted && wanted < size; i++) {
            size_t j = i + (size_t)(random_next() % (size - i));
            struct zset_entry swap = zset.entries[i];
            zset.entries[i] = zset.entries[j];
            zset.entries[j] = swap;
        }
        reply_entries(session, zset.entries, wanted, false, with_scores, true);
    }
    done_reading(item, &zset);
}

/* Formats SCORE as Redis 7.0's d2string() (ZSCAN's scores): an integer when it is one
 * that a long long holds exactly, else "%.17g". */
static size_t format_scan_score(char *text, size_t size, double score) {
    if (isinf(score)) return (size_t)snprintf(text, size, "%s", score > 0 ? "inf" : "-inf");
    if (score == 0) return (size_t)snprintf(text, size, "0");
    if (score > -9223372036854775808.0 && score < 9223372036854775808.0 &&
        (double)(long long)score == score) {
        return (size_t)snprintf(text, size, "%lld", (long long)score);
    }
    return (size_t)snprintf(text, size, "%.17g", score);
}

/* ZSCAN key cursor [MATCH pattern] [COUNT count]: as Redis does for a sorted set in its
 * compact encoding, the whole set in one reply with cursor 0 (COUNT is checked and
 * otherwise a hint). */
void command_zscan(struct resp_session *session, const struct resp_request *request) {
    uint64_t cursor;
    if (!parse_uint64(request->argv[2], (size_t)request->lengths[2], &cursor)) {
        reply_error(session, "ERR invalid cursor");
        return;
    }
    const unsigned char *pattern = NULL;
    size_t pattern_length = 0;
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
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    struct item *item;
    struct zset zset;
    if (!read_zset(session, request, &item, &zset)) return;
    size_t matching = 0;
    for (size_t i = 0; i < zset.count; i++) {
        struct zset_entry *entry = &zset.entries[i];
        entry->removed =
            pattern != NULL && !glob_match(pattern, pattern_length, entry->member, entry->length);
        if (!entry->removed) matching++;
    }
    reply_array(session, 2);
    reply_bulk_text(session, "0");
    reply_array(session, matching * 2);
    for (size_t i = 0; i < zset.count; i++) {
        const struct zset_entry *entry = &zset.entries[i];
        if (entry->removed) continue;
        char text[64];
        reply_bulk(session, entry->member, entry->length);
        reply_bulk(session, text, format_scan_score(text, sizeof(text), entry->score));
    }
    done_reading(item, &zset);
}

/* ---- changing ----------------------------------------------------------------------- */

/* A change to a sorted set, computed by a command's edit function from the current set. */
struct zset_change {
    struct zset zset;          /* the set, changed in place */
    bool changed;              /* something to store */
    bool null_reply;           /* ZADD INCR that did nothing: nil */
    int64_t integer;           /* the reply, for commands that answer a number */
    double score;              /* the reply, for ZINCRBY and ZADD INCR */
    struct zset_entry *popped; /* ZPOPMIN/ZPOPMAX: the members taken, in reply order */
    size_t popped_count;
    bool nested;                    /* ZPOP with a count: RESP3 pairs */
    struct zset_pop_target *target; /* [B]ZMPOP, BZPOPMIN, BZPOPMAX: what to pop and where */
};

/* Applies the command to CHANGE->zset. Returns true to go on (store it if changed, then
 * reply), false after replying itself (an error). */
typedef bool (*zset_edit_fn)(struct resp_session *session, const struct resp_request *request,
                             struct zset_change *change);

/* Replies once the change is stored (or needed storing nothing). */
typedef void (*zset_reply_fn)(struct resp_session *session, const struct zset_change *change);

/* What update_zset() hands resp_value_update(): the command's edit and reply, and the
 * attempt's set. */
struct zset_update {
    zset_edit_fn edit;
    zset_reply_fn reply;
    struct zset_pop_target *target;
    struct zset_change change;
};

static bool zset_update_edit(struct resp_session *session, const struct resp_request *request,
                             struct resp_value_change *value) {
    struct zset_update *update = value->context;
    update->change = (struct zset_change){.target = update->target};
    enum decode_result decoded =
        value->exists ? zset_decode(value->value, value->length, &update->change.zset) : DECODED;
    if (decoded != DECODED) {
        reply_error(session, decoded == DECODE_CORRUPT ? DAMAGE_ERROR : MEMORY_ERROR);
        return false;
    }
    if (!update->edit(session, request, &update->change)) return false;
    if (!update->change.changed) return true;
    if (!zset_settle(&update->change.zset)) {
        reply_error(session, "OOM out of memory: could not change the sorted set");
        return false;
    }
    if (update->change.zset.live == 0) {
        value->outcome = value->exists ? RESP_VALUE_DELETE : RESP_VALUE_KEEP;
    } else {
        value->outcome = RESP_VALUE_STORE;
        zset_encode(&update->change.zset, &value->encoded);
    }
    return true;
}

static void zset_update_reply(struct resp_session *session, const struct resp_value_change *value) {
    struct zset_update *update = value->context;
    update->reply(session, &update->change);
}

static void zset_update_discard(struct resp_value_change *value) {
    struct zset_update *update = value->context;
    zset_free(&update->change.zset);
    free(update->change.popped);
    update->change.popped = NULL;
}

/* Runs a change on the sorted set at argument 1 (resp_value_update()): EDIT changes the
 * decoded set, REPLY answers once it is stored. A set left with no member is deleted,
 * as in Redis. */
static void update_zset(struct resp_session *session, const struct resp_request *request,
                        zset_edit_fn edit, zset_reply_fn reply) {
    static const struct resp_value_ops ops = {STORE_TYPE_ZSET, zset_update_edit, zset_update_reply,
                                              zset_update_discard};
    struct zset_update update = {.edit = edit, .reply = reply};
    resp_value_update(session, request, 1, &ops, &update);
}

static void reply_change_integer(struct resp_session *session, const struct zset_change *change) {
    reply_integer(session, change->integer);
}

static void reply_change_score(struct resp_session *session, const struct zset_change *change) {
    if (change->null_reply) {
        reply_null(session);
    } else {
        reply_score(session, change->score);
    }
}

/* Member lengths are stored in 32 bits. */
static bool members_fit(struct resp_session *session, const struct resp_request *request,
                        size_t first, size_t step) {
    for (size_t i = first; i < request->argc; i += step) {
        if (request->lengths[i] > UINT32_MAX) {
            reply_error(session, "ERR a sorted set member is longer than 4 GiB");
            return false;
        }
    }
    return true;
}

/* ZADD's options. */
struct zadd_options {
    bool nx, xx, gt, lt, ch, incr;
    size_t first; /* the first score's argument */
};

/* Reads ZADD's options (from argument 2) and checks them as Redis does. Returns false
 * after replying the error. */
static bool zadd_parse(struct resp_session *session, const struct resp_request *request,
                       struct zadd_options *options) {
    *options = (struct zadd_options){0};
    size_t i = 2;
    for (; i < request->argc; i++) {
        if (argument_is(request, i, "NX")) {
            options->nx = true;
        } else if (argument_is(request, i, "XX")) {
            options->xx = true;
        } else if (argument_is(request, i, "GT")) {
            options->gt = true;
        } else if (argument_is(request, i, "LT")) {
            options->lt = true;
        } else if (argument_is(request, i, "CH")) {
            options->ch = true;
        } else if (argument_is(request, i, "INCR")) {
            options->incr = true;
        } else {
            break;
        }
    }
    options->first = i;
    size_t elements = request->argc - i;
    if (elements == 0 || elements % 2 != 0) {
        reply_syntax_error(session);
        return false;
    }
    if (options->nx && options->xx) {
        reply_error(session, "ERR XX and NX options at the same time are not compatible");
        return false;
    }
    if ((options->gt && options->nx) || (options->lt && options->nx) ||
        (options->gt && options->lt)) {
        reply_error(session, "ERR GT, LT, and/or NX options at the same time are not compatible");
        return false;
    }
    if (options->incr && elements > 2) {
        reply_error(session, "ERR INCR option supports a single increment-element pair");
        return false;
    }
    for (size_t j = i; j < request->argc; j += 2) {
        double score;
        if (!argument_score(session, request, j, &score)) return false;
    }
    return members_fit(session, request, i + 1, 2);
}

/* Adds or updates one member as Redis's zsetAdd(): returns false after replying NaN's
 * error or no memory. Counts into *ADDED and *UPDATED, sets *PROCESSED when not a no-op
 * and *RESULT to the member's score then. */
static bool zadd_one(struct resp_session *session, const struct zadd_options *options,
                     struct zset_change *change, const unsigned char *member, uint64_t length,
                     double score, int64_t *added, int64_t *updated, bool *processed,
                     double *result) {
    *processed = false;
    struct zset_entry *entry = zset_find(&change->zset, member, length);
    if (entry != NULL) {
        if (options->nx) return true;
        double current = entry->score;
        if (options->incr) {
            score += current;
            if (isnan(score)) {
                reply_error(session, NAN_ERROR);
                return false;
            }
            score += 0.0;
        }
        if ((options->lt && score >= current) || (options->gt && score <= current)) return true;
        *processed = true;
        *result = score;
        if (score != current) {
            entry->score = score;
            entry->moved = true;
            change->changed = true;
            (*updated)++;
        }
        return true;
    }
    if (options->xx) return true;
    if (!zset_append(&change->zset, member, length, score)) {
        reply_error(session, "OOM out of memory: could not change the sorted set");
        return false;
    }
    change->changed = true;
    *processed = true;
    *result = score;
    (*added)++;
    return true;
}

static bool edit_zadd(struct resp_session *session, const struct resp_request *request,
                      struct zset_change *change) {
    struct zadd_options options;
    if (!zadd_parse(session, request, &options)) return false;
    index_maybe(&change->zset, (request->argc - options.first) / 2);
    int64_t added = 0, updated = 0;
    bool any = false;
    for (size_t i = options.first; i + 1 < request->argc; i += 2) {
        double score;
        bool processed;
        parse_score(request->argv[i], (size_t)request->lengths[i], &score);
        if (!zadd_one(session, &options, change, request->argv[i + 1], request->lengths[i + 1],
                      score, &added, &updated, &processed, &change->score)) {
            return false;
        }
        any |= processed;
    }
    change->integer = options.ch ? added + updated : added;
    change->null_reply = !any;
    return true;
}

/* ZADD's reply depends on INCR, which edit_zadd() read; the request says it again. */
static bool request_has_incr(const struct resp_request *request) {
    for (size_t i = 2; i < request->argc; i++) {
        if (argument_is(request, i, "INCR")) return true;
        if (!argument_is(request, i, "NX") && !argument_is(request, i, "XX") &&
            !argument_is(request, i, "GT") && !argument_is(request, i, "LT") &&
            !argument_is(request, i, "CH")) {
            return false;
        }
    }
    return false;
}

void command_zadd(struct resp_session *session, const struct resp_request *request) {
    struct zadd_options options; /* checked before the key, as Redis does */
    if (!zadd_parse(session, request, &options)) return;
    update_zset(session, request, edit_zadd,
                request_has_incr(request) ? reply_change_score : reply_change_integer);
}

static bool edit_zincrby(struct resp_session *session, const struct resp_request *request,
                         struct zset_change *change) {
    double delta;
    if (!argument_score(session, request, 2, &delta) || !members_fit(session, request, 3, 1))
        return false;
    struct zadd_options options = {.incr = true};
    int64_t added = 0, updated = 0;
    bool processed;
    return zadd_one(session, &options, change, request->argv[3], request->lengths[3], delta, &added,
                    &updated, &processed, &change->score);
}

void command_zincrby(struct resp_session *session, const struct resp_request *request) {
    double delta;
    if (!argument_score(session, request, 2, &delta) || !members_fit(session, request, 3, 1))
        return;
    update_zset(session, request, edit_zincrby, reply_change_score);
}

static bool edit_zrem(struct resp_session *session, const struct resp_request *request,
                      struct zset_change *change) {
    (void)session;
    index_maybe(&change->zset, request->argc - 2);
    for (size_t i = 2; i < request->argc; i++) {
        struct zset_entry *entry = zset_find(&change->zset, request->argv[i], request->lengths[i]);
        if (entry == NULL) continue;
        entry->removed = true;
        change->zset.live--;
        change->integer++;
        change->changed = true;
    }
    return true;
}

void command_zrem(struct resp_session *session, const struct resp_request *request) {
    update_zset(session, request, edit_zrem, reply_change_integer);
}

/* Removes the entries [FIRST, END) of the (settled) set. */
static void remove_span(struct zset_change *change, size_t first, size_t end) {
    for (size_t i = first; i < end; i++)
        change->zset.entries[i].removed = true;
    change->zset.live -= end - first;
    change->integer = (int64_t)(end - first);
    change->changed = end > first;
}

/* Reads the range of KIND in arguments 2 and 3 into *RANGE. Returns false after
 * replying the error. */
static bool argument_range(struct resp_session *session, const struct resp_request *request,
                           enum range_kind kind, struct range *range) {
    *range = (struct range){.kind = kind};
    if (kind == RANGE_RANK) {
        return argument_int64(session, request, 2, &range->start) &&
               argument_int64(session, request, 3, &range->stop);
    }
    if (kind == RANGE_SCORE) return argument_score_range(session, request, 2, 3, &range->score);
    return argument_lex_range(session, request, 2, 3, &range->lex);
}

/* ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX: the range in arguments 2 and 3. */
static bool edit_remove_range(struct resp_session *session, const struct resp_request *request,
                              struct zset_change *change, enum range_kind kind) {
    struct range range;
    if (!argument_range(session, request, kind, &range)) return false;
    size_t first, end;
    range_bounds(&change->zset, &range, false, &first, &end);
    remove_span(change, first, end);
    return true;
}

static bool edit_remove_rank(struct resp_session *session, const struct resp_request *request,
                             struct zset_change *change) {
    return edit_remove_range(session, request, change, RANGE_RANK);
}

static bool edit_remove_score(struct resp_session *session, const struct resp_request *request,
                              struct zset_change *change) {
    return edit_remove_range(session, request, change, RANGE_SCORE);
}

static bool edit_remove_lex(struct resp_session *session, const struct resp_request *request,
                            struct zset_change *change) {
    return edit_remove_range(session, request, change, RANGE_LEX);
}

void command_zremrangebyrank(struct resp_session *session, const struct resp_request *request) {
    struct range range; /* checked before the key, as Redis does */
    if (!argument_range(session, request, RANGE_RANK, &range)) return;
    update_zset(session, request, edit_remove_rank, reply_change_integer);
}

void command_zremrangebyscore(struct resp_session *session, const struct resp_request *request) {
    struct range range; /* checked before the key, as Redis does */
    if (!argument_range(session, request, RANGE_SCORE, &range)) return;
    update_zset(session, request, edit_remove_score, reply_change_integer);
}

void command_zremrangebylex(struct resp_session *session, const struct resp_request *request) {
    struct range range; /* checked before the key, as Redis does */
    if (!argument_range(session, request, RANGE_LEX, &range)) return;
    update_zset(session, request, edit_remove_lex, reply_change_integer);
}

/* ZPOPMIN and ZPOPMAX's count (1 when not given) into *COUNT. Returns false after
 * replying the error. */
static bool pop_count(struct resp_session *session, const struct resp_request *request,
                      int64_t *count) {
    *count = 1;
    if (request->argc > 3) {
        reply_syntax_error(session);
        return false;
    }
    if (request->argc == 3) {
        if (!parse_int64(request->argv[2], (size_t)request->lengths[2], count) || *count < 0) {
            reply_error(session, "ERR value is out of range, must be positive");
            return false;
        }
    }
    return true;
}

/* ZPOPMIN and ZPOPMAX key [count]: takes COUNT (1) members from the low or high end. */
static bool edit_pop(struct resp_session *session, const struct resp_request *request,
                     struct zset_change *change, bool highest) {
    int64_t count;
    if (!pop_count(session, request, &count)) return false;
    change->nested = request->argc == 3;
    size_t size = change->zset.count;
    size_t taken = (uint64_t)count < size ? (size_t)count : size;
    if (taken == 0) return true;
    change->popped = malloc(taken * sizeof(*change->popped));
    if (change->popped == NULL) {
        reply_error(session, "OOM out of memory: could not change the sorted set");
        return false;
    }
    for (size_t i = 0; i < taken; i++)
        change->popped[i] = change->zset.entries[highest ? size - 1 - i : i];
    change->popped_count = taken;
    remove_span(change, highest ? size - taken : 0, highest ? size : taken);
    return true;
}

static bool edit_popmin(struct resp_session *session, const struct resp_request *request,
                        struct zset_change *change) {
    return edit_pop(session, request, change, false);
}

static bool edit_popmax(struct resp_session *session, const struct resp_request *request,
                        struct zset_change *change) {
    return edit_pop(session, request, change, true);
}

static void reply_popped(struct resp_session *session, const struct zset_change *change) {
    reply_entries(session, change->popped, change->popped_count, false, true, change->nested);
}

void command_zpopmin(struct resp_session *session, const struct resp_request *request) {
    int64_t count; /* checked before the key, as Redis does */
    if (!pop_count(session, request, &count)) return;
    update_zset(session, request, edit_popmin, reply_popped);
}

void command_zpopmax(struct resp_session *session, const struct resp_request *request) {
    int64_t count; /* checked before the key, as Redis does */
    if (!pop_count(session, request, &count)) return;
    update_zset(session, request, edit_popmax, reply_popped);
}

/* ---- ZMPOP, BZMPOP, BZPOPMIN, BZPOPMAX -------------------------------------------- */

/* What a multi-key pop asks of one key, and what it did there. */
struct zset_pop_target {
    const unsigned char *key;
    size_t key_length;
    bool highest;  /* MAX: the high end */
    int64_t count; /* members to take (1 for BZPOPMIN/MAX) */
    bool multi;    /* [B]ZMPOP's reply shape: [key, [[member, score] ...]] */
    bool served;   /* members were taken and replied */
};

static bool edit_target_pop(struct resp_session *session, const struct resp_request *request,
                            struct zset_change *change) {
    (void)request;
    const struct zset_pop_target *target = change->target;
    size_t size = change->zset.count;
    size_t taken = (uint64_t)target->count < size ? (size_t)target->count : size;
    if (taken == 0) return true;
    change->popped = malloc(taken * sizeof(*change->popped));
    if (change->popped == NULL) {
        reply_error(session, "OOM out of memory: could not change the sorted set");
        return false;
    }
    for (size_t i = 0; i < taken; i++)
        change->popped[i] = change->zset.entries[target->highest ? size - 1 - i : i];
    change->popped_count = taken;
    remove_span(change, target->highest ? size - taken : 0, target->highest ? size : taken);
    return true;
}

/* BZPOPMIN/MAX: [key, member, score]; [B]ZMPOP: [key, [[member, score] ...]] (pairs in
 * both protocols, as Redis 7.0). Nothing when the set went meanwhile (the next key). */
static void reply_target_popped(struct resp_session *session, const struct zset_change *change) {
    if (change->popped_count == 0) return;
    change->target->served = true;
    reply_array(session, change->target->multi ? 2 : 3);
    reply_bulk(session, change->target->key, change->target->key_length);
    if (!change->target->multi) {
        reply_entry(session, &change->popped[0], true, false);
        return;
    }
    reply_array(session, change->popped_count);
    for (size_t i = 0; i < change->popped_count; i++)
        reply_entry(session, &change->popped[i], true, true);
}

/* Pops from the first of the KEY_COUNT keys from FIRST_KEY that holds a sorted set, as
 * TEMPLATE says. Returns true when it replied (served, or an error) or a flash read
 * started; false when no key holds one. */
static bool pop_first_zset(struct resp_session *session, const struct resp_request *request,
                           size_t first_key, size_t key_count,
                           const struct zset_pop_target *template) {
    static const struct resp_value_ops ops = {STORE_TYPE_ZSET, zset_update_edit, zset_update_reply,
                                              zset_update_discard};
    for (size_t i = first_key; i < first_key + key_count; i++)
        if (!resp_value_in_dram(session, request, i)) return true;
    for (size_t i = first_key; i < first_key + key_count; i++) {
        enum store_type type;
        enum store_status status =
            store_key_type(session->server->environment.store, request->argv[i],
                           (size_t)request->lengths[i], &type);
        if (status == STORE_NOT_FOUND) continue;
        if (status == STORE_OK && type != STORE_TYPE_ZSET) {
            if (resp_block_waited(session)) continue; /* as Redis: not a sorted set to serve */
            status = STORE_WRONG_TYPE;
        }
        if (status != STORE_OK) {
            reply_store_error(session, status);
            return true;
        }
        struct zset_pop_target target = *template;
        target.key = request->argv[i];
        target.key_length = (size_t)request->lengths[i];
        struct zset_update update = {
            .edit = edit_target_pop, .reply = reply_target_popped, .target = &target};
        uint32_t errors = session->error_replies;
        resp_value_update(session, request, i, &ops, &update);
        if (target.served || session->rerun_wanted || session->error_replies != errors) return true;
    }
    return false;
}

/* BZPOPMIN and BZPOPMAX key [key ...] timeout: the lowest (highest) member of the first
 * non-empty sorted set, as [key, member, score]; blocks while all are empty, until a
 * ZADD or the timeout (a null array). */
static void blocking_zpop(struct resp_session *session, const struct resp_request *request,
                          bool highest) {
    int64_t timeout_ms;
    if (!resp_block_timeout(session, request, request->argc - 1, false, &timeout_ms)) return;
    struct zset_pop_target template = {.highest = highest, .count = 1};
    if (pop_first_zset(session, request, 1, request->argc - 2, &template)) return;
    resp_block(session, request, 1, request->argc - 2, timeout_ms, RESP_BLOCK_NULL_ARRAY, true);
}

void command_bzpopmin(struct resp_session *session, const struct resp_request *request) {
    blocking_zpop(session, request, false);
}

void command_bzpopmax(struct resp_session *session, const struct resp_request *request) {
    blocking_zpop(session, request, true);
}

/* [B]ZMPOP's numkeys key [key ...] MIN|MAX [COUNT count] from NUMKEYS_INDEX, as what to
 * pop and from which keys. Returns false after replying an error. */
static bool parse_zmpop(struct resp_session *session, const struct resp_request *request,
                        size_t numkeys_index, struct zset_pop_target *template,
                        struct resp_multi_pop *pop) {
    if (!resp_parse_multi_pop(session, request, numkeys_index, "MIN", "MAX", pop)) return false;
    *template =
        (struct zset_pop_target){.highest = !pop->first_end, .count = pop->count, .multi = true};
    return true;
}

/* ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]: a null array when every set is
 * empty. */
void command_zmpop(struct resp_session *session, const struct resp_request *request) {
    struct zset_pop_target template;
    struct resp_multi_pop pop;
    if (!parse_zmpop(session, request, 1, &template, &pop)) return;
    if (!pop_first_zset(session, request, pop.first_key, pop.key_count, &template))
        reply_null_array(session);
}

/* BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]: ZMPOP, blocking while every
 * set is empty. */
void command_bzmpop(struct resp_session *session, const struct resp_request *request) {
    int64_t timeout_ms;
    struct zset_pop_target template;
    struct resp_multi_pop pop;
    if (!resp_block_timeout(session, request, 1, false, &timeout_ms) ||
        !parse_zmpop(session, request, 2, &template, &pop) ||
        pop_first_zset(session, request, pop.first_key, pop.key_count, &template)) {
        return;
    }
    resp_block(session, request, pop.first_key, pop.key_count, timeout_ms, RESP_BLOCK_NULL_ARRAY,
               true);
}

/* ---- several sorted sets: ZUNION ZINTER ZDIFF, their STORE forms, ZINTERCARD,
 * ZRANGESTORE ------------------------------------------------------------------------ */

enum zset_operation { ZSET_UNION, ZSET_INTER, ZSET_DIFF };
enum aggregate { AGGREGATE_SUM, AGGREGATE_MIN, AGGREGATE_MAX };

/* One input of a combination: a sorted set, a plain set read as a sorted set whose every
 * score is 1 (in the set's order, not sorted), or nothing (an absent key). */
struct zset_input {
    struct item *item; /* NULL: the key is absent */
    struct zset zset;  /* views into item */
    double weight;     /* WEIGHTS (1) */
    size_t position;   /* among the inputs, as given */
};

/* What a combining command asks, from its arguments. */
struct combine_query {
    enum zset_operation operation;
    bool store;            /* the STORE forms: the destination is argument 1 */
    bool cardinality_only; /* ZINTERCARD */
    size_t first_key, key_count;
    enum aggregate aggregate; /* AGGREGATE (SUM) */
    bool with_scores;
    int64_t limit; /* ZINTERCARD's LIMIT (0: none) */
};

/* Reads the numkeys at argument NUMKEYS_INDEX of command NAME into QUERY's keys, with
 * Redis 7.0's errors. Returns false after replying the error. */
static bool parse_numkeys(struct resp_session *session, const struct resp_request *request,
                          size_t numkeys_index, const char *name, struct combine_query *query) {
    int64_t keys;
    if (!argument_int64(session, request, numkeys_index, &keys)) return false;
    if (keys < 1) {
        reply_errorf(session, "ERR at least 1 input key is needed for '%s' command", name);
        return false;
    }
    if ((uint64_t)keys > request->argc - numkeys_index - 1) {
        reply_syntax_error(session);
        return false;
    }
    query->first_key = numkeys_index + 1;
    query->key_count = (size_t)keys;
    return true;
}

/* Reads the options after the keys (WEIGHTS into INPUTS, AGGREGATE, WITHSCORES, LIMIT)
 * into QUERY as Redis's zunionInterDiffGenericCommand() does: each only where the
 * command takes it. Returns false after replying the error. */
static bool parse_combine_options(struct resp_session *session, const struct resp_request *request,
                                  struct combine_query *query, struct zset_input *inputs) {
    bool scored = query->operation != ZSET_DIFF && !query->cardinality_only;
    for (size_t i = query->first_key + query->key_count; i < request->argc;) {
        size_t left = request->argc - i;
        if (scored && left >= query->key_count + 1 && argument_is(request, i, "WEIGHTS")) {
            i++;
            for (size_t k = 0; k < query->key_count; k++, i++) {
                if (!parse_double(request->argv[i], (size_t)request->lengths[i],
                                  &inputs[k].weight)) {
                    reply_error(session, "ERR weight value is not a float");
                    return false;
                }
            }
        } else if (scored && left >= 2 && argument_is(request, i, "AGGREGATE")) {
            if (argument_is(request, i + 1, "SUM")) {
                query->aggregate = AGGREGATE_SUM;
            } else if (argument_is(request, i + 1, "MIN")) {
                query->aggregate = AGGREGATE_MIN;
            } else if (argument_is(request, i + 1, "MAX")) {
                query->aggregate = AGGREGATE_MAX;
            } else {
                reply_syntax_error(session);
                return false;
            }
            i += 2;
        } else if (!query->store && !query->cardinality_only &&
                   argument_is(request, i, "WITHSCORES")) {
            query->with_scores = true;
            i++;
        } else if (query->cardinality_only && left >= 2 && argument_is(request, i, "LIMIT")) {
            if (!parse_int64(request->argv[i + 1], (size_t)request->lengths[i + 1],
                             &query->limit) ||
                query->limit < 0) {
                reply_error(session, "ERR LIMIT can't be negative");
                return false;
            }
            i += 2;
        } else {
            reply_syntax_error(session);
            return false;
        }
    }
    return true;
}

/* Appends a plain set's member, score 1, to the zset in CONTEXT (resp_set_each_member()). */
static bool append_set_member(void *context, const unsigned char *member, uint32_t length) {
    return zset_append(context, member, length, 1.0);
}

/* Reads the key at argument INDEX (in DRAM already) into INPUT: a sorted set, a plain set
 * (every score 1), or nothing. Returns false after replying an error (WRONGTYPE for
 * another type, a damaged value, no memory). */
static bool read_input(struct resp_session *session, const struct resp_request *request,
                       size_t index, struct zset_input *input) {
    struct store *store = session->server->environment.store;
    const unsigned char *key = request->argv[index];
    size_t key_length = (size_t)request->lengths[index];
    enum store_type type = STORE_TYPE_ZSET;
    enum store_status status = store_key_type(store, key, key_length, &type);
    if (status == STORE_OK && type != STORE_TYPE_ZSET && type != STORE_TYPE_SET) {
        reply_store_error(session, STORE_WRONG_TYPE);
        return false;
    }
    /* An absent key is looked up too, to count the miss. */
    status = store_get_typed(store, key, key_length, type, &input->item);
    if (status == STORE_NOT_FOUND) {
        input->item = NULL;
        return true;
    }
    if (status != STORE_OK) {
        input->item = NULL;
        reply_store_error(session, status);
        return false;
    }
    const unsigned char *value = item_value(input->item);
    uint64_t length = item_value_length(input->item);
    if (type == STORE_TYPE_ZSET) {
        enum decode_result decoded = zset_decode(value, length, &input->zset);
        if (decoded == DECODED) return true;
        reply_error(session, decoded == DECODE_CORRUPT ? DAMAGE_ERROR : MEMORY_ERROR);
        return false;
    }
    int visited = resp_set_each_member(value, length, append_set_member, &input->zset);
    if (visited == 1) return true;
    reply_error(session, visited == 0 ? "ERR the set's stored encoding is damaged" : MEMORY_ERROR);
    return false;
}

static void inputs_free(struct zset_input *inputs, size_t count) {
    for (size_t i = 0; inputs != NULL && i < count; i++)
        done_reading(inputs[i].item, &inputs[i].zset);
    free(inputs);
}

/* Reads QUERY's keys (in DRAM already) into *INPUTS (freed with inputs_free()), each of
 * weight 1, checking every key's type first as Redis does. Returns false after replying
 * an error. */
static bool read_inputs(struct resp_session *session, const struct resp_request *request,
                        const struct combine_query *query, struct zset_input **inputs) {
    *inputs = calloc(query->key_count, sizeof(**inputs));
    if (*inputs == NULL) {
        reply_error(session, MEMORY_ERROR);
        return false;
    }
    for (size_t i = 0; i < query->key_count; i++) {
        (*inputs)[i].weight = 1.0;
        (*inputs)[i].position = i;
        if (!read_input(session, request, query->first_key + i, &(*inputs)[i])) {
            inputs_free(*inputs, query->key_count);
            *inputs = NULL;
            return false;
        }
    }
    return true;
}

/* Smallest first, ties in the order given (Redis sorts its inputs by size). */
static int input_compare_size(const void *a, const void *b) {
    const struct zset_input *left = a, *right = b;
    if (left->zset.live != right->zset.live) return left->zset.live < right->zset.live ? -1 : 1;
    return left->position < right->position ? -1 : left->position > right->position ? 1 : 0;
}

/* SCORE times WEIGHT, 0 where that is NaN (0 * inf), as Redis. */
static double weighted(double score, double weight) {
    double value = score * weight;
    return isnan(value) ? 0 : value;
}

/* Folds VALUE into *TARGET as Redis's zunionInterAggregate(): a SUM that is NaN (inf plus
 * -inf) is 0; MIN and MAX keep *TARGET against a NaN VALUE. */
static void aggregate_into(double *target, double value, enum aggregate aggregate) {
    if (aggregate == AGGREGATE_SUM) {
        *target += value;
        if (isnan(*target)) *target = 0;
    } else if (aggregate == AGGREGATE_MIN) {
        *target = value < *target ? value : *target;
    } else {
        *target = value > *target ? value : *target;
    }
}

/* The union of the INPUTS (sorted by size) into RESULT (empty on entry, views into the
 * inputs). Returns false when out of memory. */
static bool combine_union(struct zset_input *inputs, size_t count, enum aggregate aggregate,
                          struct zset *result) {
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += inputs[i].zset.live;
    if (total >= INDEX_MIN_LOOKUPS && total < UINT32_MAX / 2)
        index_build(result, total); /* out of memory: searched linearly */
    for (size_t i = 0; i < count; i++) {
        const struct zset *zset = &inputs[i].zset;
        for (size_t j = 0; j < zset->count; j++) {
            const struct zset_entry *entry = &zset->entries[j];
            double score = weighted(entry->score, inputs[i].weight);
            struct zset_entry *found = zset_find(result, entry->member, entry->length);
            if (found != NULL) {
                aggregate_into(&found->score, score, aggregate);
            } else if (!zset_append(result, entry->member, entry->length, score)) {
                return false;
            }
        }
    }
    return true;
}

/* The intersection of the INPUTS (sorted by size) into RESULT, or only its size into
 * *CARDINALITY when RESULT is NULL, counting no further than LIMIT (0: no limit). As
 * Redis, the first input's weighted score is 0 where NaN, the others' are aggregated
 * as they are. Returns false when out of memory. */
static bool combine_inter(struct zset_input *inputs, size_t count, enum aggregate aggregate,
                          uint64_t limit, struct zset *result, uint64_t *cardinality) {
    *cardinality = 0;
    const struct zset *base = &inputs[0].zset; /* the smallest */
    if (base->live == 0) return true;
    for (size_t i = 1; i < count; i++)
        index_maybe(&inputs[i].zset, base->live);
    for (size_t j = 0; j < base->count; j++) {
        const struct zset_entry *entry = &base->entries[j];
        double score = weighted(entry->score, inputs[0].weight);
        size_t i = 1;
        for (; i < count; i++) {
            const struct zset_entry *found =
                zset_find(&inputs[i].zset, entry->member, entry->length);
            if (found == NULL) break;
            aggregate_into(&score, found->score * inputs[i].weight, aggregate);
        }
        if (i < count) continue;
        ++*cardinality;
        if (result != NULL && !zset_append(result, entry->member, entry->length, score))
            return false;
        if (limit != 0 && *cardinality >= limit) break;
    }
    return true;
}

/* The members of the first input in none of the others, with the first's scores (no
 * weights), into RESULT. Returns false when out of memory. */
static bool combine_diff(struct zset_input *inputs, size_t count, struct zset *result) {
    const struct zset *base = &inputs[0].zset;
    for (size_t i = 1; i < count; i++)
        index_maybe(&inputs[i].zset, base->live);
    for (size_t j = 0; j < base->count; j++) {
        const struct zset_entry *entry = &base->entries[j];
        bool elsewhere = false;
        for (size_t i = 1; i < count && !elsewhere; i++)
            elsewhere = zset_find(&inputs[i].zset, entry->member, entry->length) != NULL;
        if (!elsewhere && !zset_append(result, entry->member, entry->length, entry->score))
            return false;
    }
    return true;
}

/* Stores the settled RESULT at KEY as the STORE forms do (resp_value_replace()). */
static enum store_status store_zset(struct resp_session *session, const unsigned char *key,
                                    size_t key_length, struct zset *result) {
    if (result->live == 0)
        return resp_value_replace(session, key, key_length, NULL, 0, STORE_TYPE_STRING);
    for (size_t i = 0; i < result->count; i++)
        result->entries[i].score += 0.0; /* -0 is stored as 0, as Redis's listpack */
    struct byte_buffer encoded = {0};
    zset_encode(result, &encoded);
    enum store_status status = encoded.failed
                                   ? STORE_ALLOCATION_FAILED
                                   : resp_value_replace(session, key, key_length, encoded.data,
                                                        encoded.length, STORE_TYPE_ZSET);
    byte_buffer_free(&encoded);
    return status;
}

/* Runs a combination on the keys QUERY names (parsed up to numkeys; in DRAM already),
 * with the session's exclusivity, and replies: the members (WITHSCORES: and scores), the
 * size stored at argument 1 (STORE), or the intersection's size (ZINTERCARD). */
static void combine_locked(struct resp_session *session, const struct resp_request *request,
                           struct combine_query *query) {
    struct zset_input *inputs;
    if (!read_inputs(session, request, query, &inputs)) return;
    if (!parse_combine_options(session, request, query, inputs)) {
        inputs_free(inputs, query->key_count);
        return;
    }
    size_t count = query->key_count;
    if (query->operation != ZSET_DIFF) qsort(inputs, count, sizeof(*inputs), input_compare_size);
    struct zset result = {0};
    uint64_t cardinality = 0;
    bool done = query->operation == ZSET_UNION
                    ? combine_union(inputs, count, query->aggregate, &result)
                : query->operation == ZSET_INTER
                    ? combine_inter(inputs, count, query->aggregate, (uint64_t)query->limit,
                                    query->cardinality_only ? NULL : &result, &cardinality)
                    : combine_diff(inputs, count, &result);
    if (!done || !zset_settle(&result)) {
        reply_error(session, "OOM out of memory: could not combine the sorted sets");
    } else if (query->cardinality_only) {
        reply_integer(session, (int64_t)cardinality);
    } else if (!query->store) {
        reply_entries(session, result.entries, result.count, false, query->with_scores, true);
    } else {
        enum store_status status =
            store_zset(session, request->argv[1], (size_t)request->lengths[1], &result);
        if (status == STORE_OK) {
            reply_integer(session, (int64_t)result.live);
        } else {
            reply_store_error(session, status);
        }
    }
    zset_free(&result);
    inputs_free(inputs, count);
}

/* ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD, as Redis 7.0's
 * zunionInterDiffGenericCommand(): numkeys at NUMKEYS_INDEX (its errors first), then the
 * keys' types, then the options. The reads (and the write) run with the session's
 * exclusivity, so no other command runs between them. */
static void combine_command(struct resp_session *session, const struct resp_request *request,
                            struct combine_query query, size_t numkeys_index, const char *name) {
    if (!parse_numkeys(session, request, numkeys_index, name, &query)) return;
    for (size_t i = query.first_key; i < query.first_key + query.key_count; i++)
        if (!resp_value_in_dram(session, request, i)) return;
    bool exclusive = resp_exclusive_begin(session);
    combine_locked(session, request, &query);
    if (exclusive) resp_exclusive_end(session);
}

void command_zunion(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request, (struct combine_query){.operation = ZSET_UNION}, 1, "zunion");
}

void command_zinter(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request, (struct combine_query){.operation = ZSET_INTER}, 1, "zinter");
}

void command_zdiff(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request, (struct combine_query){.operation = ZSET_DIFF}, 1, "zdiff");
}

void command_zunionstore(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request,
                    (struct combine_query){.operation = ZSET_UNION, .store = true}, 2,
                    "zunionstore");
}

void command_zinterstore(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request,
                    (struct combine_query){.operation = ZSET_INTER, .store = true}, 2,
                    "zinterstore");
}

void command_zdiffstore(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request, (struct combine_query){.operation = ZSET_DIFF, .store = true},
                    2, "zdiffstore");
}

/* ZINTERCARD numkeys key [key ...] [LIMIT limit]: the intersection's size, counting no
 * further than LIMIT (0: no limit). */
void command_zintercard(struct resp_session *session, const struct resp_request *request) {
    combine_command(session, request,
                    (struct combine_query){.operation = ZSET_INTER, .cardinality_only = true}, 1,
                    "zintercard");
}

/* ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]: stores what
 * ZRANGE would answer at dst (an empty range deletes it) and answers its size. The read
 * and the write run with the session's exclusivity. */
void command_zrangestore(struct resp_session *session, const struct resp_request *request) {
    struct range_query query;
    if (!parse_range_query(session, request, 3, true, PICK_AUTO, PICK_AUTO, &query)) return;
    if (!resp_value_in_dram(session, request, 2)) return;
    bool exclusive = resp_exclusive_begin(session);
    struct item *item;
    struct zset zset;
    if (read_zset_at(session, request, 2, &item, &zset)) {
        size_t position, count;
        range_select(&zset, &query, &position, &count);
        /* The selection is consecutive entries: from the lowest, as a set in order. */
        size_t lowest = query.reverse && count > 0 ? position + 1 - count : position;
        /* (No entries: an absent or empty source, whose entries may be NULL.) */
        struct zset selected = {
            .entries = count > 0 ? zset.entries + lowest : NULL, .count = count, .live = count};
        enum store_status status =
            store_zset(session, request->argv[1], (size_t)request->lengths[1], &selected);
        if (status == STORE_OK) {
            reply_integer(session, (int64_t)count);
        } else {
            reply_store_error(session, status);
        }
        done_reading(item, &zset);
    }
    if (exclusive) resp_exclusive_end(session);
}
