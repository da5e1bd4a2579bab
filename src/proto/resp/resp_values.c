/* What every typed value (hash, list, set, sorted set, stream) shares: reading one
 * in a command, and changing one by compare-and-swap.
 *
 * A typed value is one engine value whose bytes are its type's encoding (each type's
 * file documents its own); the engine never looks into it. A change is a
 * read-modify-write: the new encoding replaces the value only if the key still holds
 * the item that was read (store_replace_if_unchanged()), and is tried again otherwise,
 * so concurrent changes to one value never lose one another. After CONTENDED_ATTEMPTS
 * lost races the change goes on with the other workers paused (resp_exclusive_begin()),
 * so a hot key under many writers never fails a change. */
#include "base/byte_buffer.h"
#include "base/varint.h"
#include "proto/resp/resp_internal.h"
#include "strata_protocol.h"

/* How often resp_value_replace() tries its write (a race with eviction or expiry). */
#define REPLACE_ATTEMPTS 100

#define UPDATE_ATTEMPTS    100
#define CONTENDED_ATTEMPTS 8

bool resp_value_in_dram(struct resp_session *session, const struct resp_request *request,
                        size_t key_index) {
    return resp_prefetch_key(session, request, key_index, true) == PREFETCH_READY;
}

bool resp_value_read(struct resp_session *session, const struct resp_request *request,
                     size_t key_index, enum store_type type, struct item **item) {
    *item = NULL;
    enum store_status status = store_get_typed(store_of(session), request->argv[key_index],
                                               (size_t)request->lengths[key_index], type, item);
    if (status == STORE_NOT_FOUND) return true;
    if (status == STORE_OK) return true;
    *item = NULL;
    reply_store_error(session, status);
    return false;
}

/* One attempt of resp_value_update(). Returns true when it is over (stored and
 * replied, or an error replied), false when the key changed meanwhile. */
static bool update_once(struct resp_session *session, const struct resp_request *request,
                        const struct resp_value_ops *ops, size_t key_index, void *context) {
    struct store *store = store_of(session);
    const unsigned char *key = request->argv[key_index];
    size_t key_length = (size_t)request->lengths[key_index];
    struct resp_value_change change = {.context = context};
    struct item *item;
    if (!resp_value_read(session, request, key_index, ops->type, &item)) return true;
    if (item != NULL) {
        change.value = item_value(item);
        change.length = item_value_length(item);
        change.exists = true;
    }
    bool edited = ops->edit(session, request, &change);
    enum store_status status = STORE_OK;
    if (edited && change.outcome == RESP_VALUE_DELETE && item != NULL) {
        status = store_delete_if_unchanged(store, key, key_length, item);
    } else if (edited && change.outcome == RESP_VALUE_STORE) {
        status = change.encoded.failed ? STORE_ALLOCATION_FAILED
                 : change.with_room
                     ? store_replace_if_unchanged_with_room(store, key, key_length, item,
                                                            change.encoded.data,
                                                            change.encoded.length, true, ops->type)
                     : store_replace_if_unchanged(store, key, key_length, item, change.encoded.data,
                                                  change.encoded.length, true, ops->type);
    }
    if (edited && status == STORE_OK) {
        ops->reply(session, &change);
        if (change.outcome == RESP_VALUE_STORE)
            resp_blocking_signal(session->server, key, key_length);
    }
    if (ops->discard != NULL) ops->discard(&change);
    byte_buffer_free(&change.encoded);
    if (item != NULL) item_release(item);
    if (!edited || status == STORE_OK) return true;
    if (status == STORE_CONDITION_FAILED) return false;
    reply_store_error(session, status);
    return true;
}

void resp_value_update(struct resp_session *session, const struct resp_request *request,
                       size_t key_index, const struct resp_value_ops *ops, void *context) {
    if (!resp_value_in_dram(session, request, key_index)) return;
    bool exclusive = false, done = false;
    for (int attempt = 0; attempt < UPDATE_ATTEMPTS && !done; attempt++) {
        if (attempt == CONTENDED_ATTEMPTS) exclusive = resp_exclusive_begin(session);
        done = update_once(session, request, ops, key_index, context);
    }
    if (!done) reply_error(session, "ERR the key changed too often to update it; try again");
    if (exclusive) resp_exclusive_end(session);
}

enum store_status resp_value_replace(struct resp_session *session, const unsigned char *key,
                                     size_t key_length, const void *value, uint64_t length,
                                     enum store_type type) {
    struct store *store = store_of(session);
    enum store_status status = STORE_OK;
    if (length == 0) {
        store_delete(store, key, key_length, NULL);
    } else {
        for (int attempt = 0; attempt < REPLACE_ATTEMPTS; attempt++) {
            store_delete(store, key, key_length, NULL);
            status = store_replace_if_unchanged(store, key, key_length, NULL, value, length, false,
                                                type);
            if (status != STORE_CONDITION_FAILED) break;
        }
    }
    if (status == STORE_OK) resp_blocking_signal(session->server, key, key_length);
    return status;
}

const char *resp_value_encoding(const struct options *options, enum store_type type,
                                const unsigned char *value, uint64_t length) {
    switch (type) {
    case STORE_TYPE_HASH:
        return resp_hash_encoding(value, length,
                                  options_number(options, RESP_OPTION(hash_max_listpack_entries)),
                                  options_number(options, RESP_OPTION(hash_max_listpack_value)));
    case STORE_TYPE_LIST:
        return "quicklist"; /* Redis 7.0's only list encoding */
    case STORE_TYPE_SET:
        return resp_set_encoding(value, length,
                                 options_number(options, RESP_OPTION(set_max_intset_entries)));
    case STORE_TYPE_ZSET:
        return resp_zset_encoding(value, length,
                                  options_number(options, RESP_OPTION(zset_max_listpack_entries)),
                                  options_number(options, RESP_OPTION(zset_max_listpack_value)));
    case STORE_TYPE_STREAM:
        return "stream";
    case STORE_TYPE_STRING:
        break;
    }
    return "raw"; /* strings are named by resp_keys.c, which sees their bytes */
}

bool resp_value_take_string(const unsigned char **at, const unsigned char *end,
                            const unsigned char **data, uint32_t *length) {
    if (end - *at < 4) return false;
    *length = strata_load32(*at);
    *at += 4;
    if ((uint64_t)(end - *at) < *length) return false;
    *data = *at;
    *at += *length;
    return true;
}

void resp_value_put_string(struct byte_buffer *output, const unsigned char *data, uint32_t length) {
    unsigned char prefix[4];
    strata_store32(prefix, length);
    byte_buffer_append(output, prefix, sizeof(prefix));
    byte_buffer_append(output, data, length);
}

bool resp_value_take_compact_string(const unsigned char **at, const unsigned char *end,
                                    const unsigned char **data, uint32_t *length) {
    uint64_t size;
    size_t prefix = varint_get(*at, (size_t)(end - *at), &size);
    if (prefix == 0 || size > UINT32_MAX) return false;
    *at += prefix;
    if ((uint64_t)(end - *at) < size) return false;
    *data = *at;
    *length = (uint32_t)size;
    *at += size;
    return true;
}

void resp_value_put_compact_string(struct byte_buffer *output, const unsigned char *data,
                                   uint32_t length) {
    unsigned char prefix[VARINT_MAX_SIZE];
    byte_buffer_append(output, prefix, (size_t)(varint_put(prefix, length) - prefix));
    byte_buffer_append(output, data, length);
}

bool resp_value_take_count(const unsigned char **at, const unsigned char *end, uint32_t *count) {
    uint64_t value;
    size_t size = varint_get(*at, (size_t)(end - *at), &value);
    if (size == 0 || value > UINT32_MAX) return false;
    *at += size;
    *count = (uint32_t)value;
    return true;
}

void resp_value_put_count(struct byte_buffer *output, uint32_t count) {
    unsigned char bytes[VARINT_MAX_SIZE];
    byte_buffer_append(output, bytes, (size_t)(varint_put(bytes, count) - bytes));
}
