/* The byte encoding of a Redis list: what the engine stores as a STORE_TYPE_LIST value.
 * Only this file reads or writes it. Little-endian:
 *
 *   u8  version (2)
 *   u32 element count
 *   u32 front room: how many unused bytes follow the header (0 when encoded whole)
 *   the front room's bytes (any values)
 *   per element, from head (left) to tail (right):
 *       u32 length, the element's bytes, u32 length again (the "backlen", as in Redis's
 *       listpack: the last element is found from the end in constant time)
 *
 * Version 1, which builds before this one wrote (and which may still be on flash),
 * has a 5-byte header (version, count), no front room and no trailing length; it is
 * still read (decoded whole, walked from the head) and becomes version 2 the first time
 * a command rewrites it.
 *
 * With version 2 the changes at the ends run on the stored bytes in place (see
 * resp_lists.c, store_edit_in_place()): RPUSH appends at the tail, RPOP cuts it; LPUSH
 * writes into the front room, moving the body up (once, making more room) only when
 * the room is short; LPOP gives its bytes to the front room. Each sets the count (and
 * the room) in the header, so none of them decodes the list, and a run of pushes or
 * pops at either end costs the bytes pushed or popped, amortized. A whole encoding
 * (list_encode(), the compare-and-swap path) has no front room. */
#include "proto/resp/resp_list_codec.h"

#include "base/array.h"

#include "strata_protocol.h"

#include <stdlib.h>
#include <string.h>

bool list_elements_grow(struct list_elements *list, size_t wanted) {
    return array_grow((void **)&list->elements, &list->capacity, wanted, sizeof(*list->elements));
}

void list_elements_free(struct list_elements *list) {
    free(list->elements);
    *list = (struct list_elements){0};
}

bool list_body(const unsigned char *data, uint64_t length, uint64_t *start) {
    if (length < LIST_V1_HEADER_SIZE) return false;
    if (data[0] == LIST_VERSION_1) {
        *start = LIST_V1_HEADER_SIZE;
        return true;
    }
    if (data[0] != LIST_VERSION_2 || length < LIST_HEADER_SIZE) return false;
    uint32_t room = strata_load32(data + 5);
    if (length - LIST_HEADER_SIZE < room) return false;
    *start = LIST_HEADER_SIZE + (uint64_t)room;
    return true;
}

bool list_count(const unsigned char *data, uint64_t length, uint32_t *count) {
    uint64_t start;
    if (!list_body(data, length, &start)) return false;
    *count = strata_load32(data + 1);
    return true;
}

bool list_next(const unsigned char *data, uint64_t length, uint64_t *offset,
               struct list_element *element) {
    uint64_t at = *offset;
    if (at > length || length - at < 4) return false;
    uint32_t size = strata_load32(data + at);
    at += 4;
    if (length - at < size) return false;
    element->data = data + at;
    element->length = size;
    at += size;
    if (data[0] == LIST_VERSION_2) {
        if (length - at < 4 || strata_load32(data + at) != size) return false;
        at += 4;
    }
    *offset = at;
    return true;
}

/* Moves *END (where an element of a version-2 list whose body begins at START ends) to
 * where it begins. */
static bool step_back(const unsigned char *data, uint64_t start, uint64_t *end) {
    uint64_t at = *end;
    if (at < start + LIST_V2_OVERHEAD) return false;
    uint32_t size = strata_load32(data + at - 4);
    if (at - start - LIST_V2_OVERHEAD < size) return false;
    at -= (uint64_t)size + LIST_V2_OVERHEAD;
    if (strata_load32(data + at) != size) return false;
    *end = at;
    return true;
}

bool list_seek(const unsigned char *data, uint64_t length, uint32_t index, uint64_t *offset) {
    uint32_t count;
    uint64_t start;
    if (!list_count(data, length, &count) || !list_body(data, length, &start) || index >= count)
        return false;
    uint64_t at;
    if (data[0] == LIST_VERSION_2 && index > count / 2) {
        at = length;
        for (uint32_t n = count - index; n > 0; n--)
            if (!step_back(data, start, &at)) return false;
    } else {
        at = start;
        struct list_element skipped;
        for (uint32_t n = 0; n < index; n++)
            if (!list_next(data, length, &at, &skipped)) return false;
    }
    *offset = at;
    return true;
}

enum list_decode_result list_decode(const unsigned char *data, uint64_t length,
                                    struct list_elements *list) {
    uint32_t count;
    uint64_t start;
    if (!list_count(data, length, &count) || !list_body(data, length, &start)) return LIST_CORRUPT;
    /* Each element takes at least 4 bytes: a count beyond that is damage, not a size. */
    if (count > (length - start) / 4) return LIST_CORRUPT;
    if (!list_elements_grow(list, count)) return LIST_NO_MEMORY;
    uint64_t at = start;
    for (uint32_t i = 0; i < count; i++)
        if (!list_next(data, length, &at, &list->elements[i])) return LIST_CORRUPT;
    if (at != length) return LIST_CORRUPT;
    list->count = count;
    return LIST_DECODED;
}

static void append_element(struct byte_buffer *output, const unsigned char *data, uint32_t length) {
    unsigned char size[4];
    strata_store32(size, length);
    byte_buffer_append(output, size, 4);
    byte_buffer_append(output, data, length);
    byte_buffer_append(output, size, 4);
}

void list_encode(const struct list_elements *list, struct byte_buffer *output) {
    unsigned char header[LIST_HEADER_SIZE] = {LIST_VERSION_2};
    strata_store32(header + 1, (uint32_t)list->count);
    strata_store32(header + 5, 0); /* no front room */
    byte_buffer_append(output, header, sizeof(header));
    for (size_t i = 0; i < list->count; i++)
        append_element(output, list->elements[i].data, list->elements[i].length);
}

/* Writes one version-2 element at AT; returns where it ends. */
static unsigned char *write_element(unsigned char *at, const unsigned char *data, uint64_t length) {
    strata_store32(at, (uint32_t)length);
    if (length > 0) memcpy(at + 4, data, (size_t)length);
    strata_store32(at + 4 + length, (uint32_t)length);
    return at + LIST_V2_OVERHEAD + length;
}

bool list_push_in_place(unsigned char *value, uint64_t *length, uint64_t capacity, bool left,
                        const unsigned char *const *elements, const uint64_t *lengths,
                        size_t count) {
    uint32_t old_count;
    uint64_t start;
    if (!list_count(value, *length, &old_count) || value[0] != LIST_VERSION_2 ||
        !list_body(value, *length, &start))
        return false;
    if (count > UINT32_MAX - old_count || *length > capacity) return false;
    uint64_t added = 0, free_tail = capacity - *length;
    uint64_t room = start - LIST_HEADER_SIZE, usable = left ? room + free_tail : free_tail;
    for (size_t i = 0; i < count; i++) {
        uint64_t size = lengths[i] + LIST_V2_OVERHEAD;
        if (lengths[i] > UINT32_MAX || size > usable - added) return false;
        added += size;
    }
    if (!left) {
        unsigned char *tail = value + *length;
        for (size_t i = 0; i < count; i++)
            tail = write_element(tail, elements[i], lengths[i]);
        *length += added;
    } else {
        if (added > room) {
            /* Move the body up by what is missing plus new room: half the capacity left,
             * at most the body's size (and what the u32 holds). */
            uint64_t missing = added - room, body = *length - start;
            uint64_t extra = (free_tail - missing) / 2;
            if (extra > body) extra = body;
            if (extra > UINT32_MAX - added) extra = UINT32_MAX - added;
            memmove(value + start + missing + extra, value + start, (size_t)body);
            start += missing + extra;
            *length += missing + extra;
            room += missing + extra;
        }
        /* The last argument ends up at the head. */
        unsigned char *at = value + start - added;
        for (size_t i = count; i > 0; i--)
            at = write_element(at, elements[i - 1], lengths[i - 1]);
        strata_store32(value + 5, (uint32_t)(room - added));
    }
    strata_store32(value + 1, old_count + (uint32_t)count);
    return true;
}

/* Appends ELEMENT to POPPED as u32 length and bytes. */
static void hand_back(struct byte_buffer *popped, const struct list_element *element) {
    unsigned char size[4];
    strata_store32(size, element->length);
    byte_buffer_append(popped, size, 4);
    byte_buffer_append(popped, element->data, element->length);
}

/* The room a pop may leave before the body moves down over it. */
#define ROOM_KEPT_MINIMUM 4096

bool list_pop_in_place(unsigned char *value, uint64_t *length, bool left, uint32_t count,
                       struct byte_buffer *popped) {
    uint32_t old_count;
    uint64_t start;
    if (!list_count(value, *length, &old_count) || value[0] != LIST_VERSION_2 ||
        !list_body(value, *length, &start))
        return false;
    if (count == 0 || count >= old_count) return false;
    struct list_element element;
    uint64_t end = *length;
    if (left) {
        for (uint32_t n = 0; n < count; n++) {
            if (!list_next(value, *length, &start, &element)) return false;
            hand_back(popped, &element);
        }
    } else {
        for (uint32_t n = 0; n < count; n++) {
            uint64_t begin = end;
            if (!step_back(value, start, &begin)) return false;
            uint64_t at = begin;
            if (!list_next(value, *length, &at, &element) || at != end) return false;
            hand_back(popped, &element);
            end = begin;
        }
    }
    if (popped->failed) return false;
    uint64_t room = start - LIST_HEADER_SIZE, body = end - start;
    if (room > UINT32_MAX || (room > ROOM_KEPT_MINIMUM && room > 2 * body)) {
        memmove(value + LIST_HEADER_SIZE, value + start, (size_t)body);
        room = 0;
    }
    *length = LIST_HEADER_SIZE + room + body;
    strata_store32(value + 5, (uint32_t)room);
    strata_store32(value + 1, old_count - count);
    return true;
}
