/* Items: creation (charged to the budget before the memory is taken), accessors and
 * reference counting. The layout is in item.h. */
#include "engine/store_internal.h"

#include <stdlib.h>

const unsigned char *item_key(const struct item *item, size_t *length) {
    *length = node_key_length(item); /* scans also visit flash stubs */
    return node_key(item);
}

const unsigned char *item_value(const struct item *item) {
    if (item->flags & ITEM_EXTERNAL) return item_block(item)->data;
    return item->bytes + item->key_length;
}

uint64_t item_value_length(const struct item *item) {
    return item->value_length;
}

void item_release(struct item *item) {
    if (atomic_fetch_sub_explicit(&item->references, 1, memory_order_acq_rel) != 1) return;
    struct store *store = store_by_id(item->store_id);
    if (item->flags & ITEM_EXTERNAL) value_block_release(item_block(item));
    uint64_t footprint = memory_footprint(item);
    free(item);
    budget_uncharge(store, footprint);
}

void item_release_callback(void *item) {
    item_release(item);
}

/* Releases every item chained through hash_next from GRAVEYARD. */
void item_release_chain(struct item *graveyard) {
    while (graveyard != NULL) {
        struct item *next = graveyard->hash_next;
        item_release(graveyard);
        graveyard = next;
    }
}

/* Creates an unlinked item with one reference for KEY and a value given either as
 * BLOCK (its reference is taken over in every case) or as LENGTH bytes at VALUE. May
 * evict: call with no shard lock held. */
enum store_status item_create(struct store *store, uint32_t hash, const void *key,
                              size_t key_length, const void *value, uint64_t length,
                              struct value_block *block, struct item **created) {
    ASSERT_NO_SHARD_LOCK(); /* it may evict */
    enum store_status status;
    if (block == NULL && length >= STORE_BLOCK_THRESHOLD) {
        status = budget_create_block(store, length, value, length, &block);
        if (status != STORE_OK) return status;
    } else if (block != NULL) {
        length = block->length;
        status = budget_adopt_block(store, block);
        if (status != STORE_OK) {
            value_block_release(block);
            return status;
        }
    }
    uint64_t payload = block != NULL ? sizeof(block) : length;
    size_t size = sizeof(struct item) + key_length + (size_t)payload;
    if (store->tail_first_window_ms > 0) size += sizeof(uint64_t); /* item_order() */
    struct item *item = budget_allocate(store, size, false, true, &status);
    if (item == NULL) {
        if (block != NULL) value_block_release(block);
        return status;
    }
    item->hash_next = NULL;
    item->queue_previous = NULL;
    item->queue_next = NULL;
    item->expire_at_ms = 0;
    item->value_length = length;
    atomic_init(&item->references, 1);
    item->flash_segment = 0;
    item->flash_offset = 0;
    item->hash = hash;
    item->key_length = (uint32_t)key_length;
    atomic_init(&item->frequency, 0);
    item->queue = QUEUE_NONE;
    item->flags = block != NULL ? ITEM_EXTERNAL : 0;
    item->store_id = store->id;
    if (key_length > 0) memcpy(item->bytes, key, key_length);
    if (block != NULL) {
        memcpy(item->bytes + key_length, &block, sizeof(block));
    } else if (length > 0) {
        memcpy(item->bytes + key_length, value, (size_t)length);
    }
    if (store->tail_first_window_ms > 0) {
        /* Not admitted in order (yet): after every stamped item. */
        uint64_t unstamped = UINT64_MAX - 1;
        memcpy(item_order(item), &unstamped, sizeof(unstamped));
    }
    *created = item;
    return STORE_OK;
}

/* Creates an unlinked item for KEY holding the same value as SOURCE (sharing its
 * block when it has one), SOURCE's expiry, its class (durable or cache) and its type. */
enum store_status item_clone(struct store *store, uint32_t hash, const void *key, size_t key_length,
                             const struct item *source, struct item **created) {
    enum store_status status;
    if (source->flags & ITEM_EXTERNAL) {
        struct value_block *block = item_block(source);
        value_block_retain(block);
        status = item_create(store, hash, key, key_length, NULL, 0, block, created);
    } else {
        status = item_create(store, hash, key, key_length, item_value(source), source->value_length,
                             NULL, created);
    }
    if (status == STORE_OK) {
        (*created)->expire_at_ms = source->expire_at_ms;
        (*created)->flags |= source->flags & (ITEM_DURABLE | ITEM_TYPE_MASK);
    }
    return status;
}

_Static_assert(STORE_TYPE_LAST <= (ITEM_TYPE_MASK >> ITEM_TYPE_SHIFT),
               "every enum store_type fits in an item's flags");

enum store_type item_type(const struct item *item) {
    if (node_is_stub(item)) {
        return (enum store_type)((item->key_length & NODE_TYPE_MASK) >> NODE_TYPE_SHIFT);
    }
    return (enum store_type)((item->flags & ITEM_TYPE_MASK) >> ITEM_TYPE_SHIFT);
}

bool item_from_flash(const struct item *item) {
    return (item->flags & ITEM_FROM_FLASH) != 0;
}
