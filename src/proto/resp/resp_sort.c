/* SORT and SORT_RO, with Redis 7.0's replies and errors:
 *
 *   SORT key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC|DESC]
 *        [ALPHA] [STORE destination]
 *
 * The key holds a list, a set or a sorted set (its own file decodes it: list_decode(),
 * resp_set_each_member(), resp_zset_each_member()); an absent key sorts as an empty
 * list. Elements sort as numbers (strtod(), as Redis; equal numbers by their bytes), or
 * with ALPHA by their bytes (Redis uses strcoll(), which is byte order in the C locale).
 * BY pattern sorts by the string (or with "key->field" the hash field) named by the
 * pattern with its first '*' replaced by the element; a pattern without '*' (BY nosort)
 * keeps the value's order: a list's and a sorted set's own (reversed by DESC), a set's as
 * strata keeps it, except that a set Redis would keep as an intset comes out in numeric
 * order as Redis's does, and with STORE a set is sorted ALPHA, as in Redis, so that what
 * is stored does not depend on a set's internal order. GET pattern replies the value named
 * the same way for each element ("#": the element itself), nil when there is none.
 *
 * The keys that BY and GET patterns name are read with store_get() (strings) and
 * store_get_typed() (hashes), which wait on this worker for a value on flash (as other
 * multi-key commands do for keys other than their first); the sorted key itself is
 * brought to DRAM first without waiting (resp_value_in_dram()). STORE writes the result
 * as a list in place of the destination (any type, its expiry dropped), or deletes it
 * when the result is empty, and answers the count; its reads and the write run with the
 * session's exclusivity (resp_exclusive_begin()), so no command runs between them. */
#include "base/byte_buffer.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"
#include "proto/resp/resp_list_codec.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SCORE_ERROR "ERR One or more scores can't be converted into double"

/* A BY or GET pattern, parsed once: the key is PREFIX, the element, then POSTFIX; with
 * FIELD, the value is that field of the hash there. */
struct sort_pattern {
    bool element; /* "#": the element itself */
    bool star;    /* has a '*' (else it names nothing, as in Redis) */
    const unsigned char *prefix;
    size_t prefix_length;
    const unsigned char *postfix;
    size_t postfix_length;
    const unsigned char *field; /* NULL: a string key */
    size_t field_length;
};

/* What SORT's arguments ask. */
struct sort_options {
    bool descending;
    bool alpha;
    bool dont_sort; /* BY without '*' (kept even if a later BY has one, as Redis) */
    bool by;        /* sorting by a pattern */
    struct sort_pattern by_pattern;
    int64_t limit_start;
    int64_t limit_count; /* -1: no limit */
    size_t store;        /* the destination's argument, 0 without STORE */
    size_t get_count;
    struct sort_pattern *gets; /* GET_COUNT, in order (owned) */
};

/* One element of the value being sorted: a view into its item, and its sort key. */
struct sort_entry {
    const unsigned char *data;
    uint32_t length;
    double score;      /* numeric sorting */
    unsigned char *by; /* ALPHA BY: a copy of the value the pattern named (owned), */
    size_t by_length;  /* or NULL when it named none */
    size_t position;   /* in the value: ties keep it (a stable sort) */
};

struct sort_vector {
    struct sort_entry *entries;
    size_t count;
    size_t capacity;
};

/* ---- patterns ------------------------------------------------------------------------- */

/* Parses PATTERN (LENGTH bytes, a view that must outlive *PARSED) as Redis's
 * lookupKeyByPattern() reads it: "#" alone, else the first '*' splits it and a "->"
 * after that star followed by at least one byte starts a hash field. */
static void pattern_parse(const unsigned char *pattern, size_t length,
                          struct sort_pattern *parsed) {
    *parsed = (struct sort_pattern){0};
    if (length == 1 && pattern[0] == '#') {
        parsed->element = true;
        return;
    }
    const unsigned char *star = memchr(pattern, '*', length);
    if (star == NULL) return;
    parsed->star = true;
    parsed->prefix = pattern;
    parsed->prefix_length = (size_t)(star - pattern);
    const unsigned char *after = star + 1, *end = pattern + length;
    const unsigned char *arrow = NULL;
    for (const unsigned char *at = after; at + 1 < end; at++) {
        if (at[0] == '-' && at[1] == '>') {
            arrow = at;
            break;
        }
    }
    parsed->postfix = after;
    if (arrow != NULL && arrow + 2 < end) {
        parsed->postfix_length = (size_t)(arrow - after);
        parsed->field = arrow + 2;
        parsed->field_length = (size_t)(end - arrow - 2);
    } else {
        parsed->postfix_length = (size_t)(end - after);
    }
}

enum lookup_result { LOOKUP_MISSING, LOOKUP_FOUND, LOOKUP_FAILED };

/* Looks up the value PATTERN names for ELEMENT (LENGTH bytes): the element itself for
 * "#", else the string at the substituted key, or the field of the hash there. On
 * LOOKUP_FOUND *DATA and *DATA_LENGTH view it: in ELEMENT, or in *ITEM, which the caller
 * then releases (*ITEM is NULL otherwise). A key of another type, or a hash without the
 * field, is LOOKUP_MISSING, as in Redis. LOOKUP_FAILED sets *FAILURE (a flash read's
 * error, no memory; STORE_WRONG_TYPE stands for a damaged hash). KEY is scratch space. */
static enum lookup_result pattern_lookup(struct store *store, const struct sort_pattern *pattern,
                                         const unsigned char *element, uint32_t length,
                                         struct byte_buffer *key, struct item **item,
                                         const unsigned char **data, uint64_t *data_length,
                                         enum store_status *failure) {
    *item = NULL;
    if (pattern->element) {
        *data = element;
        *data_length = length;
        return LOOKUP_FOUND;
    }
    if (!pattern->star) return LOOKUP_MISSING;
    byte_buffer_clear(key);
    byte_buffer_append(key, pattern->prefix, pattern->prefix_length);
    byte_buffer_append(key, element, length);
    byte_buffer_append(key, pattern->postfix, pattern->postfix_length);
    if (key->failed) {
        *failure = STORE_ALLOCATION_FAILED;
        return LOOKUP_FAILED;
    }
    if (key->length > STORE_MAX_KEY_LENGTH) return LOOKUP_MISSING; /* no such key can be */
    /* Both read a value on flash synchronously, on this worker. */
    enum store_status status =
        pattern->field != NULL
            ? store_get_typed(store, key->data, key->length, STORE_TYPE_HASH, item)
            : store_get(store, key->data, key->length, item);
    if (status == STORE_NOT_FOUND || status == STORE_WRONG_TYPE) {
        *item = NULL;
        return LOOKUP_MISSING;
    }
    if (status != STORE_OK) {
        *item = NULL;
        *failure = status;
        return LOOKUP_FAILED;
    }
    if (pattern->field == NULL) {
        *data = item_value(*item);
        *data_length = item_value_length(*item);
        return LOOKUP_FOUND;
    }
    const unsigned char *value;
    uint32_t value_length;
    int found = resp_hash_field(item_value(*item), item_value_length(*item), pattern->field,
                                pattern->field_length, &value, &value_length);
    if (found == 1) {
        *data = value;
        *data_length = value_length;
        return LOOKUP_FOUND;
    }
    item_release(*item);
    *item = NULL;
    if (found == 0) return LOOKUP_MISSING;
    *failure = STORE_WRONG_TYPE;
    return LOOKUP_FAILED;
}

/* Replies the error of a failed lookup. */
static void reply_lookup_failure(struct resp_session *session, enum store_status failure) {
    if (failure == STORE_WRONG_TYPE) {
        reply_error(session, "ERR the hash's stored encoding is damaged");
    } else {
        reply_store_error(session, failure);
    }
}

/* ---- arguments ------------------------------------------------------------------------ */

/* Parses SORT's options from argument 2 on into *OPTIONS (its GETS then owned by it),
 * with Redis 7.0's errors: a word it does not know, or LIMIT, BY, GET or (SORT only:
 * WITH_STORE) STORE without their arguments, is a syntax error; LIMIT's numbers must be
 * integers. Returns false after replying one. */
static bool parse_options(struct resp_session *session, const struct resp_request *request,
                          bool with_store, struct sort_options *options) {
    *options = (struct sort_options){.limit_count = -1};
    for (size_t i = 2; i < request->argc; i++) {
        size_t left = request->argc - i - 1;
        if (argument_is(request, i, "ASC")) {
            options->descending = false;
        } else if (argument_is(request, i, "DESC")) {
            options->descending = true;
        } else if (argument_is(request, i, "ALPHA")) {
            options->alpha = true;
        } else if (argument_is(request, i, "LIMIT") && left >= 2) {
            if (!argument_int64(session, request, i + 1, &options->limit_start) ||
                !argument_int64(session, request, i + 2, &options->limit_count))
                return false;
            i += 2;
        } else if (with_store && argument_is(request, i, "STORE") && left >= 1) {
            options->store = ++i;
        } else if (argument_is(request, i, "BY") && left >= 1) {
            i++;
            pattern_parse(request->argv[i], (size_t)request->lengths[i], &options->by_pattern);
            options->by = true;
            if (memchr(request->argv[i], '*', (size_t)request->lengths[i]) == NULL)
                options->dont_sort = true;
        } else if (argument_is(request, i, "GET") && left >= 1) {
            i++;
            struct sort_pattern *gets =
                realloc(options->gets, (options->get_count + 1) * sizeof(*gets));
            if (gets == NULL) {
                reply_store_error(session, STORE_ALLOCATION_FAILED);
                return false;
            }
            options->gets = gets;
            pattern_parse(request->argv[i], (size_t)request->lengths[i],
                          &gets[options->get_count++]);
        } else {
            reply_syntax_error(session);
            return false;
        }
    }
    return true;
}

/* ---- the elements ----------------------------------------------------------------------- */

/* Adds a view of MEMBER to the vector in CONTEXT. False when out of memory. */
static bool vector_add(void *context, const unsigned char *member, uint32_t length) {
    struct sort_vector *vector = context;
    if (vector->count == vector->capacity) {
        size_t capacity = vector->capacity < 16 ? 16 : vector->capacity * 2;
        struct sort_entry *entries = realloc(vector->entries, capacity * sizeof(*entries));
        if (entries == NULL) return false;
        vector->entries = entries;
        vector->capacity = capacity;
    }
    vector->entries[vector->count] =
        (struct sort_entry){.data = member, .length = length, .position = vector->count};
    vector->count++;
    return true;
}

static void vector_free(struct sort_vector *vector) {
    for (size_t i = 0; i < vector->count; i++)
        free(vector->entries[i].by);
    free(vector->entries);
    *vector = (struct sort_vector){0};
}

/* Fills VECTOR with views of the elements of ITEM's value, of TYPE, in its order.
 * Returns false after replying an error (damaged, no memory). */
static bool read_elements(struct resp_session *session, struct item *item, enum store_type type,
                          struct sort_vector *vector) {
    const unsigned char *value = item_value(item);
    uint64_t length = item_value_length(item);
    int result;
    const char *what;
    if (type == STORE_TYPE_LIST) {
        what = "list";
        struct list_elements list = {0};
        enum list_decode_result decoded = list_decode(value, length, &list);
        result = decoded == LIST_DECODED ? 1 : decoded == LIST_CORRUPT ? 0 : -1;
        for (size_t i = 0; i < list.count && result == 1; i++)
            if (!vector_add(vector, list.elements[i].data, list.elements[i].length)) result = -1;
        list_elements_free(&list);
    } else if (type == STORE_TYPE_SET) {
        what = "set";
        result = resp_set_each_member(value, length, vector_add, vector);
    } else {
        what = "sorted set";
        result = resp_zset_each_member(value, length, vector_add, vector);
    }
    if (result == 1) return true;
    if (result == 0) {
        reply_errorf(session, "ERR the %s's stored encoding is damaged", what);
    } else {
        reply_errorf(session, "OOM out of memory: could not read the %s", what);
    }
    return false;
}

/* Redis's score for bytes DATA: strtod() over them (as Redis, which reads a
 * NUL-terminated copy: an embedded NUL ends the number), an error when it leaves bytes
 * unread, overflows or gives NaN. Empty bytes are 0. Returns false on an error. */
static bool element_score(const unsigned char *data, uint64_t length, double *score) {
    char small[64];
    char *text = length < sizeof(small) ? small : malloc((size_t)length + 1);
    if (text == NULL) return false;
    memcpy(text, data, (size_t)length);
    text[length] = '\0';
    char *end;
    errno = 0;
    *score = strtod(text, &end);
    bool valid = end[0] == '\0' && errno != ERANGE && !isnan(*score);
    if (text != small) free(text);
    return valid;
}

/* Orders bytes as Redis's compareStringObjects(): memcmp, then the shorter first. */
static int bytes_compare(const unsigned char *a, size_t a_length, const unsigned char *b,
                         size_t b_length) {
    size_t shorter = a_length < b_length ? a_length : b_length;
    int order = shorter != 0 ? memcmp(a, b, shorter) : 0;
    if (order != 0) return order;
    return a_length < b_length ? -1 : a_length > b_length ? 1 : 0;
}

/* The comparison in force (qsort() takes no context; a command runs on one thread). */
struct sort_order {
    bool alpha;
    bool by;
    bool descending;
    bool numeric_members; /* an intset's order: the members as integers */
};
static _Thread_local struct sort_order sort_order;

/* Redis's sortCompare(), made stable (equal entries keep their order in the value). */
static int entry_compare(const void *left, const void *right) {
    const struct sort_entry *a = left, *b = right;
    int order;
    if (sort_order.numeric_members) {
        order = a->score < b->score ? -1 : a->score > b->score ? 1 : 0;
    } else if (!sort_order.alpha) {
        order = a->score > b->score   ? 1
                : a->score < b->score ? -1
                                      : bytes_compare(a->data, a->length, b->data, b->length);
    } else if (sort_order.by) {
        if (a->by == NULL || b->by == NULL) {
            order = a->by == b->by ? 0 : a->by == NULL ? -1 : 1;
        } else {
            order = bytes_compare(a->by, a->by_length, b->by, b->by_length);
        }
    } else {
        order = bytes_compare(a->data, a->length, b->data, b->length);
    }
    if (sort_order.descending) order = -order;
    if (order != 0) return order;
    return a->position < b->position ? -1 : a->position > b->position ? 1 : 0;
}

/* Gives every entry of VECTOR its sort key (its score or, with ALPHA BY, a copy of the
 * value named). Returns 1, 0 when a score cannot be read as a number (Redis goes on and
 * answers the error at the end; so does this), -1 after replying a failed lookup. */
static int load_keys(struct resp_session *session, const struct sort_options *options,
                     struct sort_vector *vector) {
    struct store *store = store_of(session);
    struct byte_buffer key = {0};
    int result = 1;
    for (size_t i = 0; i < vector->count && result != -1; i++) {
        struct sort_entry *entry = &vector->entries[i];
        const unsigned char *data = entry->data;
        uint64_t length = entry->length;
        struct item *item = NULL;
        if (options->by) {
            enum store_status failure = STORE_OK;
            enum lookup_result found =
                pattern_lookup(store, &options->by_pattern, entry->data, entry->length, &key, &item,
                               &data, &length, &failure);
            if (found == LOOKUP_FAILED) {
                reply_lookup_failure(session, failure);
                result = -1;
                break;
            }
            if (found == LOOKUP_MISSING) continue; /* score 0, no ALPHA key: as Redis */
        }
        if (options->alpha) {
            if (options->by) {
                entry->by = malloc(length > 0 ? (size_t)length : 1);
                if (entry->by == NULL) {
                    reply_store_error(session, STORE_ALLOCATION_FAILED);
                    result = -1;
                } else {
                    memcpy(entry->by, data, (size_t)length);
                    entry->by_length = (size_t)length;
                }
            }
        } else if (!element_score(data, length, &entry->score)) {
            result = 0;
        }
        if (item != NULL) item_release(item);
    }
    byte_buffer_free(&key);
    return result;
}

/* True when the set whose value is ITEM's would be an intset in Redis 7.0, which then
 * gives its members in numeric order. */
static bool set_is_intset(struct resp_session *session, struct item *item) {
    const struct options *settings = session->server->environment.options;
    const char *encoding =
        resp_value_encoding(settings, STORE_TYPE_SET, item_value(item), item_value_length(item));
    return strcmp(encoding, "intset") == 0;
}

/* ---- the result -------------------------------------------------------------------------- */

/* The result's bytes, for STORE: the elements' values laid end to end in BYTES, each
 * at OFFSETS[i] with LENGTHS[i] bytes. */
struct sort_result {
    struct byte_buffer bytes;
    size_t count;
    size_t capacity;
    size_t *offsets;
    uint32_t *lengths;
};

static bool result_add(struct sort_result *result, const unsigned char *data, uint64_t length) {
    if (length > UINT32_MAX) return false;
    if (result->count == result->capacity) {
        size_t capacity = result->capacity < 16 ? 16 : result->capacity * 2;
        size_t *offsets = realloc(result->offsets, capacity * sizeof(*offsets));
        if (offsets == NULL) return false;
        result->offsets = offsets;
        uint32_t *lengths = realloc(result->lengths, capacity * sizeof(*lengths));
        if (lengths == NULL) return false;
        result->lengths = lengths;
        result->capacity = capacity;
    }
    result->offsets[result->count] = result->bytes.length;
    result->lengths[result->count] = (uint32_t)length;
    byte_buffer_append(&result->bytes, data, (size_t)length);
    if (result->bytes.failed) return false;
    result->count++;
    return true;
}

static void result_free(struct sort_result *result) {
    byte_buffer_free(&result->bytes);
    free(result->offsets);
    free(result->lengths);
    *result = (struct sort_result){0};
}

/* Stores RESULT at KEY as a list, as the STORE forms do (resp_value_replace()). */
static enum store_status store_result(struct resp_session *session, const unsigned char *key,
                                      size_t key_length, const struct sort_result *result) {
    if (result->count == 0)
        return resp_value_replace(session, key, key_length, NULL, 0, STORE_TYPE_STRING);
    struct list_elements list = {0};
    if (!list_elements_grow(&list, result->count)) return STORE_ALLOCATION_FAILED;
    for (size_t i = 0; i < result->count; i++)
        list.elements[i] =
            (struct list_element){result->bytes.data + result->offsets[i], result->lengths[i]};
    list.count = result->count;
    struct byte_buffer encoded = {0};
    list_encode(&list, &encoded);
    list_elements_free(&list);
    enum store_status status = encoded.failed
                                   ? STORE_ALLOCATION_FAILED
                                   : resp_value_replace(session, key, key_length, encoded.data,
                                                        encoded.length, STORE_TYPE_LIST);
    byte_buffer_free(&encoded);
    return status;
}

/* Replies (or with STORE, stores) entries START .. END of VECTOR, each as the element or
 * as the values of the GET patterns. */
static void finish(struct resp_session *session, const struct resp_request *request,
                   const struct sort_options *options, const struct sort_vector *vector,
                   int64_t start, int64_t end) {
    struct store *store = store_of(session);
    size_t chosen = end >= start ? (size_t)(end - start + 1) : 0;
    size_t per_entry = options->get_count != 0 ? options->get_count : 1;
    struct sort_result result = {0};
    struct byte_buffer key = {0};
    bool storing = options->store != 0;
    if (!storing) reply_array(session, chosen * per_entry);
    for (size_t i = 0; i < chosen; i++) {
        const struct sort_entry *entry = &vector->entries[(size_t)start + i];
        if (options->get_count == 0) {
            if (!storing) {
                reply_bulk(session, entry->data, entry->length);
            } else if (!result_add(&result, entry->data, entry->length)) {
                goto no_memory;
            }
            continue;
        }
        for (size_t g = 0; g < options->get_count; g++) {
            struct item *item;
            const unsigned char *data = NULL;
            uint64_t length = 0;
            enum store_status failure = STORE_OK;
            enum lookup_result found =
                pattern_lookup(store, &options->gets[g], entry->data, entry->length, &key, &item,
                               &data, &length, &failure);
            if (found == LOOKUP_FAILED) {
                /* A reply already begun cannot turn into an error: nil stands in (only a
                 * flash read's failure or a damaged hash get here). */
                if (storing) {
                    reply_lookup_failure(session, failure);
                    goto done;
                }
                reply_null(session);
                continue;
            }
            bool added = true;
            if (!storing) {
                if (found == LOOKUP_FOUND) {
                    reply_bulk(session, data, (size_t)length);
                } else {
                    reply_null(session);
                }
            } else {
                added = found == LOOKUP_FOUND ? result_add(&result, data, length)
                                              : result_add(&result, (const unsigned char *)"", 0);
            }
            if (item != NULL) item_release(item);
            if (!added) goto no_memory;
        }
    }
    if (storing) {
        enum store_status status = store_result(session, request->argv[options->store],
                                                (size_t)request->lengths[options->store], &result);
        if (status == STORE_OK) {
            reply_integer(session, (int64_t)result.count);
        } else {
            reply_store_error(session, status);
        }
    }
    goto done;
no_memory:
    reply_store_error(session, STORE_ALLOCATION_FAILED);
done:
    byte_buffer_free(&key);
    result_free(&result);
}

/* ---- the command ------------------------------------------------------------------------ */

/* Reads the key at argument 1 (in DRAM already) and replies or stores its sorted
 * elements as OPTIONS ask. */
static void sort_value(struct resp_session *session, const struct resp_request *request,
                       struct sort_options *options) {
    enum store_type type = STORE_TYPE_LIST;
    struct item *item = NULL;
    if (store_key_type(store_of(session), request->argv[1], (size_t)request->lengths[1], &type) ==
        STORE_OK) {
        if (type != STORE_TYPE_LIST && type != STORE_TYPE_SET && type != STORE_TYPE_ZSET) {
            reply_error(session, RESP_WRONGTYPE);
            return;
        }
        if (!resp_value_read(session, request, 1, type, &item)) return;
    }
    struct sort_vector vector = {0};
    if (item != NULL && !read_elements(session, item, type, &vector)) {
        item_release(item);
        return;
    }
    if (item == NULL) type = STORE_TYPE_LIST; /* absent: an empty list */
    /* A set has no order of its own to keep: what STORE writes is sorted, as Redis does
     * (it does so in scripts too; strata's sets keep their order, so scripts need not). */
    bool numeric_members = false;
    if (options->dont_sort && type == STORE_TYPE_SET) {
        if (options->store != 0) {
            options->dont_sort = false;
            options->alpha = true;
            options->by = false;
        } else if (set_is_intset(session, item)) {
            numeric_members = true;
        }
    }
    /* LIMIT's clamping, as Redis's sortCommandGeneric(). */
    int64_t length = (int64_t)vector.count;
    int64_t start = options->limit_start < 0 ? 0 : options->limit_start;
    if (start > length) start = length;
    int64_t count = options->limit_count < -1 ? -1 : options->limit_count;
    if (count > length) count = length;
    int64_t end = count < 0 ? length : start + count - 1;
    if (start >= length) {
        start = length - 1;
        end = length - 2;
    }
    if (end >= length) end = length - 1;

    int loaded = 1;
    if (options->dont_sort) {
        /* A list's or sorted set's own order, from its end with DESC. */
        if (options->descending && type != STORE_TYPE_SET) {
            for (size_t i = 0, j = vector.count; i + 1 < j; i++, j--) {
                struct sort_entry swap = vector.entries[i];
                vector.entries[i] = vector.entries[j - 1];
                vector.entries[j - 1] = swap;
            }
        }
        if (numeric_members && vector.count > 1) {
            for (size_t i = 0; i < vector.count; i++) {
                int64_t member = 0;
                parse_int64(vector.entries[i].data, vector.entries[i].length, &member);
                vector.entries[i].score = (double)member;
            }
            sort_order = (struct sort_order){.numeric_members = true};
            qsort(vector.entries, vector.count, sizeof(*vector.entries), entry_compare);
        }
    } else {
        loaded = load_keys(session, options, &vector);
        if (loaded == 1 && vector.count > 1) {
            sort_order = (struct sort_order){
                .alpha = options->alpha, .by = options->by, .descending = options->descending};
            qsort(vector.entries, vector.count, sizeof(*vector.entries), entry_compare);
        }
    }
    if (loaded == 0) {
        reply_error(session, SCORE_ERROR);
    } else if (loaded == 1) {
        finish(session, request, options, &vector, start, end);
    }
    vector_free(&vector);
    if (item != NULL) item_release(item);
}

/* SORT and SORT_RO (WITH_STORE: SORT). */
static void sort_command(struct resp_session *session, const struct resp_request *request,
                         bool with_store) {
    struct sort_options options;
    if (!parse_options(session, request, with_store, &options)) {
        free(options.gets);
        return;
    }
    if (resp_value_in_dram(session, request, 1)) {
        bool exclusive = options.store != 0 && resp_exclusive_begin(session);
        sort_value(session, request, &options);
        if (exclusive) resp_exclusive_end(session);
    }
    free(options.gets);
}

void command_sort(struct resp_session *session, const struct resp_request *request) {
    sort_command(session, request, true);
}

void command_sort_ro(struct resp_session *session, const struct resp_request *request) {
    sort_command(session, request, false);
}
