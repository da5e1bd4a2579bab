/* Lists: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LREM LTRIM LINSERT
 * LPOS LMOVE RPOPLPUSH, with Redis 7.0's replies and errors. The blocking forms (BLPOP,
 * BRPOP, BLMOVE, BLMPOP) and LMPOP are not here: they answer "unknown command".
 *
 * A list is one value of type STORE_TYPE_LIST in the engine, so it is counted in the
 * budget, evicted whole, expires, renames, copies and is watched like any key. Its bytes
 * are the encoding of resp_list_codec.c (version 3: a count and a front room, then per
 * element its varint length, bytes and length again, so it is walked from either end;
 * versions 1 and 2, with u32 lengths, are still read).
 *
 * The commands at the ends do not decode the list. LLEN reads the count in the header;
 * LINDEX and LRANGE walk from the nearer end only as far as the range (list_seek()).
 * LPUSH, RPUSH, LPOP and RPOP (and the X forms) first try to change the stored bytes in
 * place under the key's shard lock (store_edit_in_place()): RPUSH appends, RPOP cuts the
 * tail, LPUSH writes into the front room (moving the body up, with more room, only when
 * it is short), LPOP gives its bytes to the room, so each costs the bytes pushed or
 * popped, amortized. The engine allows that only when nobody but its index holds the
 * value (no reader sees the bytes change), the value lives in a value block with room
 * (values of 16 KiB and more) and has no copy on flash. Otherwise (a small list, a
 * concurrent LRANGE holding it, a list read back from flash, a pop that empties it, a
 * list of version 1 or 2, a block out of room) the command falls back to the read-modify-write
 * below, which stores the new encoding in a block with room to grow
 * (store_replace_if_unchanged_with_room()), so the next change is in place again. On
 * that path a push onto a version-3 list does not decode it either: the new value is
 * the stored bytes copied with the pushed elements (list_push_copy()).
 *
 * The other commands (LSET, LREM, LINSERT, LTRIM, LPOS, LMOVE) decode the value into an
 * array of views of its elements and a change encodes the whole list again: linear in
 * the list's length. A change is a read-modify-write: the new encoding replaces the
 * value only if the key still holds the item that was read (store_replace_if_unchanged()),
 * retried otherwise, so concurrent changes never lose one another. LMOVE changes two
 * keys: see move_element(). */
#include "base/byte_buffer.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"
#include "proto/resp/resp_list_codec.h"
#include "strata_protocol.h"

#include <stdlib.h>
#include <string.h>

/* Times a change is tried again when another client changed the list meanwhile. */
#define UPDATE_ATTEMPTS 100

/* Makes room for COUNT elements at position AT (0 to list->count), moving the ones from
 * AT on towards the tail; the caller fills them. Returns false when out of memory. */
static bool list_open(struct list_elements *list, size_t at, size_t count) {
    if (!list_elements_grow(list, list->count + count)) return false;
    memmove(list->elements + at + count, list->elements + at,
            (list->count - at) * sizeof(*list->elements));
    list->count += count;
    return true;
}

/* Removes COUNT elements from position AT on. */
static void list_remove(struct list_elements *list, size_t at, size_t count) {
    memmove(list->elements + at, list->elements + at + count,
            (list->count - at - count) * sizeof(*list->elements));
    list->count -= count;
}

static bool element_is(const struct list_element *element, const unsigned char *data,
                       uint64_t length) {
    return element->length == length && memcmp(element->data, data, (size_t)length) == 0;
}

/* Redis's index: from the head from 0, from the tail from -1. Sets *AT and returns true
 * when INDEX names an element of a list of COUNT. */
static bool list_index(int64_t index, size_t count, size_t *at) {
    if (index < 0) index += (int64_t)count;
    if (index < 0 || (uint64_t)index >= count) return false;
    *at = (size_t)index;
    return true;
}

/* Redis's range from START to STOP (both included, negative from the tail) over a list
 * of COUNT, as LRANGE and LTRIM read it: sets *FIRST and *LAST and returns true, or
 * returns false when the range is empty. */
static bool list_range(int64_t start, int64_t stop, size_t count, size_t *first, size_t *last) {
    int64_t length = (int64_t)count;
    if (start < 0) start += length;
    if (stop < 0) stop += length;
    if (start < 0) start = 0;
    if (start > stop || start >= length) return false;
    if (stop >= length) stop = length - 1;
    *first = (size_t)start;
    *last = (size_t)stop;
    return true;
}

/* Elements are stored with 32-bit lengths. */
static bool lengths_fit(struct resp_session *session, const struct resp_request *request,
                        size_t first) {
    for (size_t i = first; i < request->argc; i++) {
        if (request->lengths[i] > UINT32_MAX) {
            reply_error(session, "ERR a list element is longer than 4 GiB");
            return false;
        }
    }
    return true;
}

/* ---- reading ---------------------------------------------------------------------- */

/* Reads the list at argument INDEX into *LIST (views into *ITEM, which the caller
 * releases; NULL and an empty list when the key is absent). Returns false after
 * replying the error (WRONGTYPE, a damaged value, no memory). */
static bool read_list(struct resp_session *session, const struct resp_request *request,
                      size_t index, struct item **item, struct list_elements *list) {
    *list = (struct list_elements){0};
    if (!resp_value_read(session, request, index, STORE_TYPE_LIST, item)) return false;
    if (*item == NULL) return true;
    enum list_decode_result decoded =
        list_decode(item_value(*item), item_value_length(*item), list);
    if (decoded == LIST_DECODED) return true;
    item_release(*item);
    *item = NULL;
    list_elements_free(list);
    reply_error(session, decoded == LIST_CORRUPT ? "ERR the list's stored encoding is damaged"
                                                 : "OOM out of memory: could not read the list");
    return false;
}

/* Brings the key in argument 1 back to DRAM if it lives on flash, with a hold until the
 * command ends (resp_prefetch_key()). Returns true when the command can go on; false
 * when the read started (the command runs again once it ends) or failed (replied).
 * Called once per command: each call that finds the key takes a hold. */
static bool in_dram(struct resp_session *session, const struct resp_request *request) {
    return resp_value_in_dram(session, request, 1);
}

static void done_reading(struct item *item, struct list_elements *list) {
    list_elements_free(list);
    if (item != NULL) item_release(item);
}

/* Reads the list at argument 1 without decoding it: *ITEM (NULL when the key is absent;
 * the caller releases it) and its element count. Returns false after replying the error
 * (WRONGTYPE, a damaged header). */
static bool read_list_item(struct resp_session *session, const struct resp_request *request,
                           struct item **item, uint32_t *count) {
    *count = 0;
    if (!resp_value_read(session, request, 1, STORE_TYPE_LIST, item)) return false;
    if (*item == NULL || list_count(item_value(*item), item_value_length(*item), count))
        return true;
    item_release(*item);
    *item = NULL;
    reply_error(session, "ERR the list's stored encoding is damaged");
    return false;
}

/* LLEN key: the count in the list's header. */
void command_llen(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    uint32_t count;
    if (!in_dram(session, request) || !read_list_item(session, request, &item, &count)) return;
    reply_integer(session, (int64_t)count);
    if (item != NULL) item_release(item);
}

/* LRANGE key start stop: walks to the range from the nearer end, then through it. */
void command_lrange(struct resp_session *session, const struct resp_request *request) {
    int64_t start, stop;
    if (!argument_int64(session, request, 2, &start) || !argument_int64(session, request, 3, &stop))
        return;
    struct item *item;
    uint32_t count;
    if (!in_dram(session, request) || !read_list_item(session, request, &item, &count)) return;
    size_t first, last;
    if (!list_range(start, stop, count, &first, &last)) {
        reply_array(session, 0);
    } else {
        const unsigned char *value = item_value(item);
        uint64_t length = item_value_length(item), offset;
        /* Checked before the array's header goes out, so that damage is one error. */
        if (!list_seek(value, length, (uint32_t)first, &offset)) {
            reply_error(session, "ERR the list's stored encoding is damaged");
        } else {
            reply_array(session, last - first + 1);
            struct list_element element = {0};
            for (size_t i = first; i <= last; i++) {
                /* A damaged element past the seek ends the reply with empty strings
                 * rather than a malformed array. */
                if (!list_next(value, length, &offset, &element))
                    element = (struct list_element){(const unsigned char *)"", 0};
                reply_bulk(session, element.data, element.length);
            }
        }
    }
    if (item != NULL) item_release(item);
}

/* LINDEX key index: the element, or nil. As in Redis the key is looked up before the
 * index is read. */
void command_lindex(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    uint32_t count;
    if (!in_dram(session, request) || !read_list_item(session, request, &item, &count)) return;
    int64_t index;
    size_t at;
    if (item == NULL) {
        reply_null(session);
    } else if (argument_int64(session, request, 2, &index)) {
        const unsigned char *value = item_value(item);
        uint64_t length = item_value_length(item), offset;
        struct list_element element;
        if (!list_index(index, count, &at)) {
            reply_null(session);
        } else if (!list_seek(value, length, (uint32_t)at, &offset) ||
                   !list_next(value, length, &offset, &element)) {
            reply_error(session, "ERR the list's stored encoding is damaged");
        } else {
            reply_bulk(session, element.data, element.length);
        }
    }
    if (item != NULL) item_release(item);
}

/* LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]: the index of the
 * RANKth match (negative: counting from the tail), or with COUNT an array of up to COUNT
 * matches from there (0: all), looking at no more than MAXLEN elements (0: all). */
void command_lpos(struct resp_session *session, const struct resp_request *request) {
    int64_t rank = 1, count = -1, maxlen = 0; /* count -1: no COUNT */
    for (size_t i = 3; i < request->argc; i++) {
        bool has_value = i + 1 < request->argc;
        if (argument_is(request, i, "RANK") && has_value) {
            if (!argument_int64(session, request, ++i, &rank)) return;
            if (rank == 0) {
                reply_error(session, "ERR RANK can't be zero: use 1 to start from the first "
                                     "match, 2 from the second ... or use negative to start "
                                     "from the end of the list");
                return;
            }
        } else if (argument_is(request, i, "COUNT") && has_value) {
            if (!argument_int64(session, request, ++i, &count)) return;
            if (count < 0) {
                reply_error(session, "ERR COUNT can't be negative");
                return;
            }
        } else if (argument_is(request, i, "MAXLEN") && has_value) {
            if (!argument_int64(session, request, ++i, &maxlen)) return;
            if (maxlen < 0) {
                reply_error(session, "ERR MAXLEN can't be negative");
                return;
            }
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    bool from_tail = rank < 0;
    /* Redis negates a rank of INT64_MIN into itself, which then matches the first match. */
    uint64_t wanted_rank = rank == INT64_MIN ? 1 : (uint64_t)(rank < 0 ? -rank : rank);
    struct item *item;
    struct list_elements list;
    if (!in_dram(session, request) || !read_list(session, request, 1, &item, &list)) return;
    if (item == NULL) {
        if (count != -1) {
            reply_array(session, 0);
        } else {
            reply_null(session);
        }
        done_reading(item, &list);
        return;
    }
    /* The matching indexes, collected before replying (the array's length comes first). */
    size_t *found = NULL, found_count = 0;
    uint64_t matches = 0;
    size_t looked = maxlen == 0 || (uint64_t)maxlen > list.count ? list.count : (size_t)maxlen;
    for (size_t n = 0; n < looked; n++) {
        size_t at = from_tail ? list.count - 1 - n : n;
        if (!element_is(&list.elements[at], request->argv[2], request->lengths[2])) continue;
        if (++matches < wanted_rank) continue;
        if (found == NULL) {
            found = malloc(list.count * sizeof(*found));
            if (found == NULL) {
                done_reading(item, &list);
                reply_error(session, "OOM out of memory: could not search the list");
                return;
            }
        }
        found[found_count++] = at;
        if (count == -1 || (count != 0 && found_count >= (uint64_t)count)) break;
    }
    if (count != -1) {
        reply_array(session, found_count);
        for (size_t i = 0; i < found_count; i++)
            reply_integer(session, (int64_t)found[i]);
    } else if (found_count > 0) {
        reply_integer(session, (int64_t)found[0]);
    } else {
        reply_null(session);
    }
    free(found);
    done_reading(item, &list);
}

/* ---- changing ----------------------------------------------------------------------- */

/* A change to a list, computed by a command's edit function from the current list. The
 * command sets the parsed arguments before update_list(). */
struct list_change {
    struct list_elements list; /* the list, changed in place */
    bool exists;               /* the key held a list */
    bool changed;              /* something to store */
    int64_t integer;           /* the reply, for commands that answer a number */
    /* parsed arguments */
    bool left;                /* the head (LPUSH, LPOP, LINSERT BEFORE) */
    bool has_count;           /* LPOP and RPOP with a count */
    int64_t count;            /* LPOP/RPOP's count, LREM's count */
    int64_t start;            /* LTRIM */
    int64_t stop;             /* LTRIM */
    bool only_if_exists;      /* LPUSHX, RPUSHX */
    const unsigned char *key; /* BLPOP/BRPOP: the key popped from, for the reply */
    size_t key_length;
    bool *served; /* BLPOP/BRPOP: set when an element was popped and replied */
    /* elements popped (views into the item read), in reply order */
    struct list_element *popped;
    size_t popped_count;
};

/* Applies the command to CHANGE->list. Returns true to go on (store it if changed, then
 * reply), false after replying itself (an error). */
typedef bool (*list_edit_fn)(struct resp_session *session, const struct resp_request *request,
                             struct list_change *change);

/* Replies once the change is stored (or needed storing nothing). */
typedef void (*list_reply_fn)(struct resp_session *session, const struct list_change *change);

/* Stores LIST under KEY in place of EXPECTED (NULL: only if KEY is absent), keeping its
 * expiry, or deletes the key when LIST is empty; a stored list wakes the commands
 * blocked on KEY. Returns the store's status (STORE_CONDITION_FAILED when KEY no longer
 * holds EXPECTED). */
static enum store_status store_list(struct resp_session *session, const unsigned char *key,
                                    size_t key_length, const struct item *expected,
                                    const struct list_elements *list) {
    struct store *store = store_of(session);
    if (list->count == 0)
        return expected != NULL ? store_delete_if_unchanged(store, key, key_length, expected)
                                : STORE_OK;
    struct byte_buffer encoded = {0};
    list_encode(list, &encoded);
    enum store_status status =
        encoded.failed
            ? STORE_ALLOCATION_FAILED
            : store_replace_if_unchanged_with_room(store, key, key_length, expected, encoded.data,
                                                   encoded.length, true, STORE_TYPE_LIST);
    byte_buffer_free(&encoded);
    if (status == STORE_OK) resp_blocking_signal(session->server, key, key_length);
    return status;
}

/* What update_list() hands resp_value_update(): the command's parsed arguments, edit
 * and reply, and the attempt's list. */
struct list_update {
    const struct list_change *arguments;
    list_edit_fn edit;
    list_reply_fn reply;
    struct list_change change;
};

static bool edit_push(struct resp_session *session, const struct resp_request *request,
                      struct list_change *change);

/* LPUSH and RPUSH (and the X forms) onto an existing version-3 list, as
 * list_update_edit() would run edit_push(), but by copying the stored bytes
 * (list_push_copy()) instead of decoding and encoding the list: a push onto a list too
 * small to change in place stays a copy of its bytes. Returns false when the list must
 * take the decoding path (absent, an older version, an out-of-memory output: the
 * decoding path then reports it). */
static bool push_by_copy(const struct resp_request *request, struct list_update *update,
                         struct resp_value_change *value) {
    if (update->edit != edit_push || !value->exists) return false;
    if (!list_push_copy(value->value, value->length, update->change.left,
                        (const unsigned char *const *)request->argv + 2,
                        (const uint64_t *)request->lengths + 2, request->argc - 2,
                        &value->encoded)) {
        byte_buffer_free(&value->encoded);
        return false;
    }
    uint32_t count = 0;
    list_count(value->encoded.data, value->encoded.length, &count);
    update->change.integer = count;
    update->change.changed = true;
    value->outcome = RESP_VALUE_STORE;
    value->with_room = true; /* so that the next push or pop runs in place */
    return true;
}

static bool list_update_edit(struct resp_session *session, const struct resp_request *request,
                             struct resp_value_change *value) {
    struct list_update *update = value->context;
    update->change = *update->arguments;
    update->change.exists = value->exists;
    if (push_by_copy(request, update, value)) return true;
    enum list_decode_result decoded =
        value->exists ? list_decode(value->value, value->length, &update->change.list)
                      : LIST_DECODED;
    if (decoded != LIST_DECODED) {
        reply_error(session, decoded == LIST_CORRUPT
                                 ? "ERR the list's stored encoding is damaged"
                                 : "OOM out of memory: could not read the list");
        return false;
    }
    if (!update->edit(session, request, &update->change)) return false;
    if (!update->change.changed) return true;
    if (update->change.list.count == 0) {
        value->outcome = RESP_VALUE_DELETE;
    } else {
        value->outcome = RESP_VALUE_STORE;
        value->with_room = true; /* so that the next push or pop runs in place */
        list_encode(&update->change.list, &value->encoded);
    }
    return true;
}

static void list_update_reply(struct resp_session *session, const struct resp_value_change *value) {
    struct list_update *update = value->context;
    update->reply(session, &update->change);
}

static void list_update_discard(struct resp_value_change *value) {
    struct list_update *update = value->context;
    free(update->change.popped);
    list_elements_free(&update->change.list);
}

/* Runs a change on the list at argument 1 (resp_value_update()): EDIT changes
 * CHANGE's copy of ARGUMENTS and the decoded list, REPLY answers once it is stored. A
 * list left empty is deleted, as in Redis. Every try rewrites the whole list, so on a
 * list many clients push to at once (a queue under redis-benchmark's 50 connections)
 * a slow worker can lose the race again and again: then resp_value_update() takes
 * exclusivity, as LMOVE does. */
static void update_list(struct resp_session *session, const struct resp_request *request,
                        const struct list_change *arguments, list_edit_fn edit,
                        list_reply_fn reply) {
    static const struct resp_value_ops ops = {STORE_TYPE_LIST, list_update_edit, list_update_reply,
                                              list_update_discard};
    struct list_update update = {.arguments = arguments, .edit = edit, .reply = reply};
    resp_value_update(session, request, 1, &ops, &update);
}

static void reply_change_integer(struct resp_session *session, const struct list_change *change) {
    reply_integer(session, change->integer);
}

static void reply_change_ok(struct resp_session *session, const struct list_change *change) {
    (void)change;
    reply_ok(session);
}

static void reply_no_memory(struct resp_session *session) {
    reply_error(session, "OOM out of memory: could not change the list");
}

/* LPUSH, RPUSH and their X forms: the elements from argument 2, each pushed in turn
 * (so LPUSH leaves them reversed at the head). INTEGER is the new length. */
static bool edit_push(struct resp_session *session, const struct resp_request *request,
                      struct list_change *change) {
    if (change->only_if_exists && !change->exists) return true; /* answers 0 */
    size_t count = request->argc - 2;
    if (!list_open(&change->list, change->left ? 0 : change->list.count, count)) {
        reply_no_memory(session);
        return false;
    }
    size_t first = change->left ? 0 : change->list.count - count;
    for (size_t i = 0; i < count; i++) {
        size_t at = change->left ? first + count - 1 - i : first + i;
        change->list.elements[at] =
            (struct list_element){request->argv[2 + i], (uint32_t)request->lengths[2 + i]};
    }
    change->integer = (int64_t)change->list.count;
    change->changed = true;
    return true;
}

/* What push_in_place() hands store_edit_in_place(). */
struct push_edit {
    const struct resp_request *request; /* the elements: arguments 2 on */
    bool left;
    uint32_t count; /* set: the new length */
};

static bool edit_push_in_place(void *context, unsigned char *value, uint64_t *length,
                               uint64_t capacity) {
    struct push_edit *edit = context;
    const struct resp_request *request = edit->request;
    if (!list_push_in_place(value, length, capacity, edit->left,
                            (const unsigned char *const *)request->argv + 2,
                            (const uint64_t *)request->lengths + 2, request->argc - 2))
        return false;
    list_count(value, *length, &edit->count);
    return true;
}

/* Tries a push on the list at argument 1 in place (see the top of the file). Returns
 * true when it is over (pushed and replied, or WRONGTYPE replied), false when the
 * command must take the read-modify-write path (the key is absent, or the list cannot
 * change in place). */
static bool push_in_place(struct resp_session *session, const struct resp_request *request,
                          bool left) {
    struct push_edit edit = {.request = request, .left = left};
    const unsigned char *key = request->argv[1];
    size_t key_length = (size_t)request->lengths[1];
    enum store_status status = store_edit_in_place(store_of(session), key, key_length,
                                                   STORE_TYPE_LIST, edit_push_in_place, &edit);
    if (status == STORE_OK) {
        reply_integer(session, (int64_t)edit.count);
        resp_blocking_signal(session->server, key, key_length);
        return true;
    }
    if (status == STORE_WRONG_TYPE) {
        reply_store_error(session, status);
        return true;
    }
    return false;
}

static void push(struct resp_session *session, const struct resp_request *request, bool left,
                 bool only_if_exists) {
    if (!lengths_fit(session, request, 2)) return;
    /* In place first: a list in DRAM needs no prefetch (nor its hold). */
    if (push_in_place(session, request, left) || !in_dram(session, request)) return;
    struct list_change arguments = {.left = left, .only_if_exists = only_if_exists};
    update_list(session, request, &arguments, edit_push, reply_change_integer);
}

void command_lpush(struct resp_session *session, const struct resp_request *request) {
    push(session, request, true, false);
}

void command_rpush(struct resp_session *session, const struct resp_request *request) {
    push(session, request, false, false);
}

void command_lpushx(struct resp_session *session, const struct resp_request *request) {
    push(session, request, true, true);
}

void command_rpushx(struct resp_session *session, const struct resp_request *request) {
    push(session, request, false, true);
}

/* LPOP and RPOP: up to COUNT (1 without one) elements from the chosen end. */
static bool edit_pop(struct resp_session *session, const struct resp_request *request,
                     struct list_change *change) {
    (void)request;
    size_t count =
        (uint64_t)change->count < change->list.count ? (size_t)change->count : change->list.count;
    if (count == 0) return true;
    change->popped = malloc(count * sizeof(*change->popped));
    if (change->popped == NULL) {
        reply_no_memory(session);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        size_t at = change->left ? i : change->list.count - 1 - i;
        change->popped[i] = change->list.elements[at];
    }
    change->popped_count = count;
    list_remove(&change->list, change->left ? 0 : change->list.count - count, count);
    change->changed = true;
    return true;
}

/* Without a count: the element, or nil. With one: nil (a null array) when the key is
 * absent, else an array of the elements popped (empty for a count of 0), as Redis 7. */
static void reply_popped(struct resp_session *session, const struct list_change *change) {
    if (!change->has_count) {
        if (change->popped_count == 0) {
            reply_null(session);
        } else {
            reply_bulk(session, change->popped[0].data, change->popped[0].length);
        }
        return;
    }
    if (!change->exists) {
        reply_null_array(session);
        return;
    }
    reply_array(session, change->popped_count);
    for (size_t i = 0; i < change->popped_count; i++)
        reply_bulk(session, change->popped[i].data, change->popped[i].length);
}

/* What pop_in_place() hands store_edit_in_place(). */
struct pop_edit {
    bool left;
    uint32_t count;
    struct byte_buffer popped; /* u32 length and bytes per element, in pop order */
};

static bool edit_pop_in_place(void *context, unsigned char *value, uint64_t *length,
                              uint64_t capacity) {
    (void)capacity;
    struct pop_edit *edit = context;
    byte_buffer_clear(&edit->popped);
    return list_pop_in_place(value, length, edit->left, edit->count, &edit->popped);
}

/* Tries LPOP or RPOP (ARGUMENTS) on the list at argument 1 in place; as push_in_place().
 * A pop that would empty the list is not done in place (the key must go). */
static bool pop_in_place(struct resp_session *session, const struct resp_request *request,
                         const struct list_change *arguments) {
    if (arguments->count <= 0) return false;
    struct pop_edit edit = {.left = arguments->left,
                            .count = arguments->count > UINT32_MAX ? UINT32_MAX
                                                                   : (uint32_t)arguments->count};
    enum store_status status =
        store_edit_in_place(store_of(session), request->argv[1], (size_t)request->lengths[1],
                            STORE_TYPE_LIST, edit_pop_in_place, &edit);
    if (status == STORE_OK) {
        if (arguments->has_count) reply_array(session, edit.count);
        const unsigned char *at = edit.popped.data;
        for (uint32_t i = 0; i < edit.count; i++) {
            uint32_t size = strata_load32(at);
            reply_bulk(session, at + 4, size);
            at += 4 + (size_t)size;
        }
    } else if (status == STORE_WRONG_TYPE) {
        reply_store_error(session, status);
    }
    byte_buffer_free(&edit.popped);
    return status == STORE_OK || status == STORE_WRONG_TYPE;
}

static void pop(struct resp_session *session, const struct resp_request *request, bool left,
                const char *name) {
    struct list_change arguments = {.left = left, .count = 1};
    if (request->argc > 3) {
        reply_wrong_arity(session, name);
        return;
    }
    if (request->argc == 3) {
        arguments.has_count = true;
        /* As Redis, one error for a count that is not a number and for a negative one. */
        if (!parse_int64(request->argv[2], (size_t)request->lengths[2], &arguments.count) ||
            arguments.count < 0) {
            reply_error(session, "ERR value is out of range, must be positive");
            return;
        }
    }
    if (pop_in_place(session, request, &arguments) || !in_dram(session, request)) return;
    update_list(session, request, &arguments, edit_pop, reply_popped);
}

void command_lpop(struct resp_session *session, const struct resp_request *request) {
    pop(session, request, true, "lpop");
}

void command_rpop(struct resp_session *session, const struct resp_request *request) {
    pop(session, request, false, "rpop");
}

/* LSET key index element: ERR no such key, ERR index out of range, or OK. */
static bool edit_set(struct resp_session *session, const struct resp_request *request,
                     struct list_change *change) {
    if (!change->exists) {
        reply_error(session, "ERR no such key");
        return false;
    }
    int64_t index;
    size_t at;
    if (!argument_int64(session, request, 2, &index)) return false;
    if (!list_index(index, change->list.count, &at)) {
        reply_error(session, "ERR index out of range");
        return false;
    }
    change->list.elements[at] =
        (struct list_element){request->argv[3], (uint32_t)request->lengths[3]};
    change->changed = true;
    return true;
}

void command_lset(struct resp_session *session, const struct resp_request *request) {
    struct list_change arguments = {0};
    if (lengths_fit(session, request, 3))
        update_list(session, request, &arguments, edit_set, reply_change_ok);
}

/* LREM key count element: removes up to COUNT matches from the head (all for 0; from
 * the tail for a negative COUNT); INTEGER is how many. */
static bool edit_remove(struct resp_session *session, const struct resp_request *request,
                        struct list_change *change) {
    (void)session;
    struct list_elements *list = &change->list;
    bool from_tail = change->count < 0;
    uint64_t limit = change->count == 0           ? UINT64_MAX
                     : change->count == INT64_MIN ? (uint64_t)INT64_MAX + 1
                     : from_tail                  ? (uint64_t)-change->count
                                                  : (uint64_t)change->count;
    uint64_t removed = 0;
    /* Marks the removed elements with a NULL data pointer, then compacts. */
    for (size_t n = 0; n < list->count && removed < limit; n++) {
        size_t at = from_tail ? list->count - 1 - n : n;
        if (element_is(&list->elements[at], request->argv[3], request->lengths[3])) {
            list->elements[at].data = NULL;
            removed++;
        }
    }
    if (removed == 0) return true;
    size_t kept = 0;
    for (size_t i = 0; i < list->count; i++)
        if (list->elements[i].data != NULL) list->elements[kept++] = list->elements[i];
    list->count = kept;
    change->integer = (int64_t)removed;
    change->changed = true;
    return true;
}

void command_lrem(struct resp_session *session, const struct resp_request *request) {
    struct list_change arguments = {0};
    if (argument_int64(session, request, 2, &arguments.count))
        update_list(session, request, &arguments, edit_remove, reply_change_integer);
}

/* LTRIM key start stop: keeps the range only (none of it when it is empty). */
static bool edit_trim(struct resp_session *session, const struct resp_request *request,
                      struct list_change *change) {
    (void)session;
    (void)request;
    struct list_elements *list = &change->list;
    size_t first, last;
    if (!list_range(change->start, change->stop, list->count, &first, &last)) {
        change->changed = list->count > 0;
        list->count = 0;
        return true;
    }
    if (first == 0 && last == list->count - 1) return true;
    list_remove(list, last + 1, list->count - last - 1);
    list_remove(list, 0, first);
    change->changed = true;
    return true;
}

void command_ltrim(struct resp_session *session, const struct resp_request *request) {
    struct list_change arguments = {0};
    if (argument_int64(session, request, 2, &arguments.start) &&
        argument_int64(session, request, 3, &arguments.stop))
        update_list(session, request, &arguments, edit_trim, reply_change_ok);
}

/* LINSERT key BEFORE|AFTER pivot element: the new length, -1 without the pivot, 0
 * without the key. */
static bool edit_insert(struct resp_session *session, const struct resp_request *request,
                        struct list_change *change) {
    struct list_elements *list = &change->list;
    if (!change->exists) return true; /* answers 0 */
    change->integer = -1;
    for (size_t i = 0; i < list->count; i++) {
        if (!element_is(&list->elements[i], request->argv[3], request->lengths[3])) continue;
        size_t at = change->left ? i : i + 1;
        if (!list_open(list, at, 1)) {
            reply_no_memory(session);
            return false;
        }
        list->elements[at] = (struct list_element){request->argv[4], (uint32_t)request->lengths[4]};
        change->integer = (int64_t)list->count;
        change->changed = true;
        break;
    }
    return true;
}

void command_linsert(struct resp_session *session, const struct resp_request *request) {
    struct list_change arguments = {0};
    if (argument_is(request, 2, "BEFORE")) {
        arguments.left = true;
    } else if (!argument_is(request, 2, "AFTER")) {
        reply_syntax_error(session);
        return;
    }
    if (lengths_fit(session, request, 4))
        update_list(session, request, &arguments, edit_insert, reply_change_integer);
}

/* ---- LMOVE and RPOPLPUSH ------------------------------------------------------------- */

/* Pushes ELEMENT onto the list at KEY (creating it) at its head or tail, by
 * compare-and-swap, retried when another change came between. Returns STORE_OK,
 * STORE_WRONG_TYPE when KEY holds another type, or the store's error. */
static enum store_status push_element(struct resp_session *session, const unsigned char *key,
                                      size_t key_length, const struct list_element *element,
                                      bool left) {
    for (int attempt = 0; attempt < UPDATE_ATTEMPTS; attempt++) {
        struct item *item = NULL;
        struct list_elements list = {0};
        enum store_status status =
            store_get_typed(store_of(session), key, key_length, STORE_TYPE_LIST, &item);
        if (status == STORE_NOT_FOUND) {
            item = NULL;
        } else if (status != STORE_OK) {
            return status;
        } else {
            enum list_decode_result decoded =
                list_decode(item_value(item), item_value_length(item), &list);
            if (decoded != LIST_DECODED) {
                done_reading(item, &list);
                return decoded == LIST_CORRUPT ? STORE_IO_ERROR : STORE_ALLOCATION_FAILED;
            }
        }
        if (!list_open(&list, left ? 0 : list.count, 1)) {
            status = STORE_ALLOCATION_FAILED;
        } else {
            list.elements[left ? 0 : list.count - 1] = *element;
            status = store_list(session, key, key_length, item, &list);
        }
        done_reading(item, &list);
        if (status != STORE_CONDITION_FAILED) return status;
    }
    return STORE_CONDITION_FAILED;
}

/* One try at LMOVE with the lists at arguments 1 and 2. Returns false when the source
 * changed between its read and its write (try again); otherwise it has replied. */
static bool move_once(struct resp_session *session, const struct resp_request *request,
                      bool from_left, bool to_left) {
    struct item *source_item, *target_item = NULL;
    struct list_elements source, target = {0};
    if (!read_list(session, request, 1, &source_item, &source)) return true;
    if (source_item == NULL) {
        reply_null(session);
        return true;
    }
    bool same = request->lengths[1] == request->lengths[2] &&
                memcmp(request->argv[1], request->argv[2], (size_t)request->lengths[1]) == 0;
    /* As Redis: a destination of another type fails before anything is popped. */
    if (!same && !read_list(session, request, 2, &target_item, &target)) {
        done_reading(source_item, &source);
        return true;
    }
    done_reading(target_item, &target); /* checked only: pushed to by push_element() */
    struct list_element element = source.elements[from_left ? 0 : source.count - 1];
    list_remove(&source, from_left ? 0 : source.count - 1, 1);
    if (same) {
        /* Rotation: one key, one compare-and-swap. */
        if (!list_open(&source, to_left ? 0 : source.count, 1)) {
            done_reading(source_item, &source);
            reply_no_memory(session);
            return true;
        }
        source.elements[to_left ? 0 : source.count - 1] = element;
    }
    enum store_status status =
        store_list(session, request->argv[1], (size_t)request->lengths[1], source_item, &source);
    if (status == STORE_CONDITION_FAILED) {
        done_reading(source_item, &source);
        return false;
    }
    if (status == STORE_OK && !same) {
        status =
            push_element(session, request->argv[2], (size_t)request->lengths[2], &element, to_left);
        if (status != STORE_OK) {
            /* The destination changed type or could not take the element (only possible
             * without exclusivity, or out of memory): the element goes back where it came
             * from rather than being lost. */
            push_element(session, request->argv[1], (size_t)request->lengths[1], &element,
                         from_left);
        }
    }
    if (status == STORE_OK) {
        reply_bulk(session, element.data, element.length);
    } else {
        reply_store_error(session, status);
    }
    done_reading(source_item, &source); /* ELEMENT viewed into it: released after the reply */
    return true;
}

/* LMOVE source destination LEFT|RIGHT LEFT|RIGHT (and RPOPLPUSH): pops an element from
 * the source's chosen end and pushes it onto the destination's; nil when the source is
 * absent; WRONGTYPE from either key before anything changes.
 *
 * Two keys cannot be swapped by one compare-and-swap, so the move takes the session's
 * exclusivity (resp_environment.exclusive, as EXEC does) around its reads and writes: no
 * other connection's command runs meanwhile, so no client ever sees the element in both
 * lists or in neither, and the destination checked before the pop is still a list when
 * pushed to. Inside EXEC the transaction already holds it (taking it again would wait
 * for ever). The writes stay compare-and-swaps, since eviction and expiry do not wait for
 * exclusivity; without an exclusive callback (tests, embedding) they are what keeps the
 * move safe: the source is written first (retried whole if it changed), then the element
 * pushed onto the destination as it then is, and put back on the source if that fails,
 * so an element is never lost or doubled, though another client may briefly see it in
 * neither list. The cost is that each LMOVE pauses the other workers for a moment. */
static void move_element(struct resp_session *session, const struct resp_request *request,
                         bool from_left, bool to_left) {
    /* The source first; the destination, if on flash, is read back under exclusivity. */
    if (!in_dram(session, request)) return;
    bool exclusive = resp_exclusive_begin(session);
    bool done = false;
    for (int attempt = 0; attempt < UPDATE_ATTEMPTS && !done; attempt++)
        done = move_once(session, request, from_left, to_left);
    if (!done) reply_error(session, "ERR the key changed too often to update it; try again");
    if (exclusive) resp_exclusive_end(session);
}

void command_lmove(struct resp_session *session, const struct resp_request *request) {
    bool ends[2];
    for (size_t i = 0; i < 2; i++) {
        ends[i] = argument_is(request, 3 + i, "LEFT");
        if (!ends[i] && !argument_is(request, 3 + i, "RIGHT")) {
            reply_syntax_error(session);
            return;
        }
    }
    move_element(session, request, ends[0], ends[1]);
}

void command_rpoplpush(struct resp_session *session, const struct resp_request *request) {
    move_element(session, request, false, true);
}

/* ---- LMPOP and BLMPOP --------------------------------------------------------------- */

/* [key, [element ...]] once elements were popped. */
static void reply_multi_popped(struct resp_session *session, const struct list_change *change) {
    if (change->popped_count == 0) return; /* the list went meanwhile: the next key */
    *change->served = true;
    reply_array(session, 2);
    reply_bulk(session, change->key, change->key_length);
    reply_array(session, change->popped_count);
    for (size_t i = 0; i < change->popped_count; i++)
        reply_bulk(session, change->popped[i].data, change->popped[i].length);
}

/* Pops from the first of POP's keys that holds a list. Returns true when it replied
 * (served, or an error) or a flash read started; false when every key is empty. */
static bool pop_first_list(struct resp_session *session, const struct resp_request *request,
                           const struct resp_multi_pop *pop, list_reply_fn reply) {
    for (size_t i = pop->first_key; i < pop->first_key + pop->key_count; i++)
        if (!resp_value_in_dram(session, request, i)) return true;
    for (size_t i = pop->first_key; i < pop->first_key + pop->key_count; i++) {
        enum store_type type;
        enum store_status status =
            store_key_type(store_of(session), request->argv[i], (size_t)request->lengths[i], &type);
        if (status == STORE_NOT_FOUND) continue;
        if (status == STORE_OK && type != STORE_TYPE_LIST) {
            if (resp_block_waited(session)) continue; /* as Redis: not a list to serve */
            status = STORE_WRONG_TYPE;
        }
        if (status != STORE_OK) {
            reply_store_error(session, status);
            return true;
        }
        bool served = false;
        struct resp_request one = {2, request->argv + i - 1, request->lengths + i - 1};
        struct list_change arguments = {.left = pop->first_end,
                                        .count = pop->count,
                                        .key = request->argv[i],
                                        .key_length = (size_t)request->lengths[i],
                                        .served = &served};
        uint32_t errors = session->error_replies;
        update_list(session, &one, &arguments, edit_pop, reply);
        if (served || session->rerun_wanted || session->error_replies != errors) return true;
    }
    return false;
}

/* LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]: up to COUNT elements from the
 * first of the keys that holds a list, as [key, [element ...]]; a null array when none
 * does. */
void command_lmpop(struct resp_session *session, const struct resp_request *request) {
    struct resp_multi_pop pop;
    if (!resp_parse_multi_pop(session, request, 1, "LEFT", "RIGHT", &pop)) return;
    if (!pop_first_list(session, request, &pop, reply_multi_popped)) reply_null_array(session);
}

/* BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]: LMPOP, blocking while
 * every key is empty, until a push or the timeout (a null array). */
void command_blmpop(struct resp_session *session, const struct resp_request *request) {
    int64_t timeout_ms;
    struct resp_multi_pop pop;
    if (!resp_block_timeout(session, request, 1, false, &timeout_ms) ||
        !resp_parse_multi_pop(session, request, 2, "LEFT", "RIGHT", &pop) ||
        pop_first_list(session, request, &pop, reply_multi_popped)) {
        return;
    }
    resp_block(session, request, pop.first_key, pop.key_count, timeout_ms, RESP_BLOCK_NULL_ARRAY,
               true);
}

/* ---- BLPOP, BRPOP, BLMOVE, BRPOPLPUSH (resp_blocking.c) ------------------------------ */

/* What a blocking pop's try at one key hands update_list(): whether it served. */
static void reply_blocking_popped(struct resp_session *session, const struct list_change *change) {
    if (change->popped_count == 0) return; /* the list went meanwhile: the next key */
    *change->served = true;
    reply_array(session, 2);
    reply_bulk(session, change->key, change->key_length);
    reply_bulk(session, change->popped[0].data, change->popped[0].length);
}

/* BLPOP and BRPOP key [key ...] timeout: pops from the first of the keys holding a list,
 * answering [key, element]; blocks when none does, until one is pushed to or the
 * timeout (seconds, 0: none) passes (a null array). A key of another type fails with
 * WRONGTYPE when reached, as in Redis. */
static void blocking_pop(struct resp_session *session, const struct resp_request *request,
                         bool left) {
    int64_t timeout_ms;
    if (!resp_block_timeout(session, request, request->argc - 1, false, &timeout_ms)) return;
    struct resp_multi_pop pop = {
        .first_key = 1, .key_count = request->argc - 2, .first_end = left, .count = 1};
    if (pop_first_list(session, request, &pop, reply_blocking_popped)) return;
    resp_block(session, request, 1, pop.key_count, timeout_ms, RESP_BLOCK_NULL_ARRAY, true);
}

void command_blpop(struct resp_session *session, const struct resp_request *request) {
    blocking_pop(session, request, true);
}

void command_brpop(struct resp_session *session, const struct resp_request *request) {
    blocking_pop(session, request, false);
}

/* BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout (and BRPOPLPUSH source
 * destination timeout): LMOVE once the source holds a list; blocks until then, or the
 * timeout passes (nil). */
static void blocking_move(struct resp_session *session, const struct resp_request *request,
                          bool from_left, bool to_left) {
    int64_t timeout_ms;
    if (!resp_block_timeout(session, request, request->argc - 1, false, &timeout_ms)) return;
    if (!in_dram(session, request)) return;
    enum store_type type;
    enum store_status status =
        store_key_type(store_of(session), request->argv[1], (size_t)request->lengths[1], &type);
    if (status == STORE_NOT_FOUND ||
        (status == STORE_OK && type != STORE_TYPE_LIST && resp_block_waited(session))) {
        resp_block(session, request, 1, 1, timeout_ms, RESP_BLOCK_NULL_BULK, true);
        return;
    }
    if (status == STORE_OK && type != STORE_TYPE_LIST) status = STORE_WRONG_TYPE;
    if (status != STORE_OK) {
        reply_store_error(session, status);
        return;
    }
    move_element(session, request, from_left, to_left);
}

void command_blmove(struct resp_session *session, const struct resp_request *request) {
    bool ends[2];
    for (size_t i = 0; i < 2; i++) {
        ends[i] = argument_is(request, 3 + i, "LEFT");
        if (!ends[i] && !argument_is(request, 3 + i, "RIGHT")) {
            reply_syntax_error(session);
            return;
        }
    }
    blocking_move(session, request, ends[0], ends[1]);
}

void command_brpoplpush(struct resp_session *session, const struct resp_request *request) {
    blocking_move(session, request, false, true);
}
