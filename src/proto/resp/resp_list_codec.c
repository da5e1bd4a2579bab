/* The byte encoding of a Redis list: what the engine stores as a STORE_TYPE_LIST value.
 * Only this file reads or writes it. Little-endian:
 *
 *   u8  version (3)
 *   u32 element count
 *   u32 front room: how many unused bytes follow the header (0 when encoded whole)
 *   the front room's bytes (any values)
 *   per element, from head (left) to tail (right):
 *       varint length (base/varint.h: 7 bits a byte, so 1 byte below 128, 2 below
 *       16384, at most 5 for the u32 an element's length fits), the element's bytes,
 *       the same length again written backward (read from where it ends: the
 *       "backlen" of Redis's listpack), so the last element is found from the end in
 *       constant time and the list is walked from either end
 *
 * An element of up to 127 bytes costs 2 bytes beside its own, as in a listpack.
 *
 * Older versions are still read (they may be on flash), never written, and never changed
 * in place: the first command that changes one rewrites it whole in version 3.
 *   Version 2: the same header; per element a u32 length, the bytes, the u32 length
 *   again (8 bytes beside the element's own). Walked from either end.
 *   Version 1: a 5-byte header (version, count), no front room; per element a u32
 *   length and the bytes. Walked from the head only.
 *
 * With version 3 the changes at the ends run on the stored bytes in place (see
 * resp_lists.c, store_edit_in_place()): RPUSH appends at the tail, RPOP cuts it; LPUSH
 * writes into the front room, moving the body up (once, making more room) only when
 * the room is short; LPOP gives its bytes to the front room. Each sets the count (and
 * the room) in the header, so none of them decodes the list, and a run of pushes or
 * pops at either end costs the bytes pushed or popped, amortized. A whole encoding
 * (list_encode(), the compare-and-swap path) has no front room. */
#include "proto/resp/resp_list_codec.h"

#include "base/array.h"
#include "base/varint.h"

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
    if ((data[0] != LIST_VERSION_2 && data[0] != LIST_VERSION_3) || length < LIST_HEADER_SIZE)
        return false;
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

uint64_t list_element_size(uint64_t length) {
    return length + 2 * (uint64_t)varint_size(length);
}

/* The fewest bytes an element takes in the encoding whose version is VERSION. */
static uint64_t smallest_element(unsigned char version) {
    return version == LIST_VERSION_3 ? 2 : version == LIST_VERSION_2 ? LIST_V2_OVERHEAD : 4;
}

/* Reads the version-3 element at *OFFSET of DATA (LENGTH bytes) as list_next(). */
static bool next_v3(const unsigned char *data, uint64_t length, uint64_t *offset,
                    struct list_element *element) {
    uint64_t at = *offset, size, back;
    if (at > length) return false;
    size_t prefix = varint_get(data + at, (size_t)(length - at), &size);
    if (prefix == 0 || size > UINT32_MAX) return false;
    at += prefix;
    if (length - at < size || length - at - size < prefix) return false;
    element->data = data + at;
    element->length = (uint32_t)size;
    at += size + prefix;
    if (varint_get_backward(data + at, prefix, &back) != prefix || back != size) return false;
    *offset = at;
    return true;
}

bool list_next(const unsigned char *data, uint64_t length, uint64_t *offset,
               struct list_element *element) {
    if (data[0] == LIST_VERSION_3) return next_v3(data, length, offset, element);
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

/* Moves *END (where an element of a version-2 or version-3 list whose body begins at
 * START ends) to where it begins. Returns false when the lengths around it disagree or
 * run past START. */
static bool step_back(const unsigned char *data, uint64_t start, uint64_t *end) {
    uint64_t at = *end;
    if (data[0] == LIST_VERSION_3) {
        uint64_t size, forward;
        if (at < start) return false;
        size_t suffix = varint_get_backward(data + at, (size_t)(at - start), &size);
        if (suffix == 0 || size > UINT32_MAX) return false;
        /* The shortest form is the only one read: both lengths take SUFFIX bytes. */
        if (at - start < size + 2 * (uint64_t)suffix) return false;
        at -= size + 2 * (uint64_t)suffix;
        if (varint_get(data + at, suffix, &forward) != suffix || forward != size) return false;
        *end = at;
        return true;
    }
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
    if (data[0] != LIST_VERSION_1 && index > count / 2) {
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
    /* Each element takes a few bytes at least: a count beyond that is damage, not a size. */
    if (count > (length - start) / smallest_element(data[0])) return LIST_CORRUPT;
    if (!list_elements_grow(list, count)) return LIST_NO_MEMORY;
    uint64_t at = start;
    for (uint32_t i = 0; i < count; i++)
        if (!list_next(data, length, &at, &list->elements[i])) return LIST_CORRUPT;
    if (at != length) return LIST_CORRUPT;
    list->count = count;
    return LIST_DECODED;
}

/* Writes one version-3 element at AT (list_element_size(LENGTH) bytes); returns where
 * it ends. */
static unsigned char *write_element(unsigned char *at, const unsigned char *data, uint64_t length) {
    at = varint_put(at, length);
    if (length > 0) memcpy(at, data, (size_t)length);
    at += length;
    size_t suffix = varint_size(length);
    varint_put_backward(at + suffix, length);
    return at + suffix;
}

void list_encode(const struct list_elements *list, struct byte_buffer *output) {
    unsigned char header[LIST_HEADER_SIZE] = {LIST_VERSION_3};
    strata_store32(header + 1, (uint32_t)list->count);
    strata_store32(header + 5, 0); /* no front room */
    uint64_t body = 0;
    for (size_t i = 0; i < list->count; i++)
        body += list_element_size(list->elements[i].length);
    if (!byte_buffer_reserve(output, sizeof(header) + (size_t)body)) return;
    byte_buffer_append(output, header, sizeof(header));
    unsigned char element[2 * 5];
    for (size_t i = 0; i < list->count; i++) {
        const struct list_element *e = &list->elements[i];
        unsigned char *at = varint_put(element, e->length);
        byte_buffer_append(output, element, (size_t)(at - element));
        byte_buffer_append(output, e->data, e->length);
        size_t suffix = varint_size(e->length);
        varint_put_backward(element + suffix, e->length);
        byte_buffer_append(output, element, suffix);
    }
}

bool list_push_in_place(unsigned char *value, uint64_t *length, uint64_t capacity, bool left,
                        const unsigned char *const *elements, const uint64_t *lengths,
                        size_t count) {
    uint32_t old_count;
    uint64_t start;
    if (!list_count(value, *length, &old_count) || value[0] != LIST_VERSION_3 ||
        !list_body(value, *length, &start))
        return false;
    if (count > UINT32_MAX - old_count || *length > capacity) return false;
    uint64_t added = 0, free_tail = capacity - *length;
    uint64_t room = start - LIST_HEADER_SIZE, usable = left ? room + free_tail : free_tail;
    for (size_t i = 0; i < count; i++) {
        uint64_t size = list_element_size(lengths[i]);
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

bool list_push_copy(const unsigned char *value, uint64_t length, bool left,
                    const unsigned char *const *elements, const uint64_t *lengths, size_t count,
                    struct byte_buffer *output) {
    uint32_t old_count;
    uint64_t start;
    if (!list_count(value, length, &old_count) || value[0] != LIST_VERSION_3 ||
        !list_body(value, length, &start) || count > UINT32_MAX - old_count)
        return false;
    uint64_t added = 0, body = length - start;
    for (size_t i = 0; i < count; i++) {
        if (lengths[i] > UINT32_MAX) return false;
        added += list_element_size(lengths[i]);
    }
    if (!byte_buffer_reserve(output, LIST_HEADER_SIZE + (size_t)(added + body))) return false;
    unsigned char *at = output->data + output->length;
    at[0] = LIST_VERSION_3;
    strata_store32(at + 1, old_count + (uint32_t)count);
    strata_store32(at + 5, 0); /* no front room */
    at += LIST_HEADER_SIZE;
    if (!left) {
        memcpy(at, value + start, (size_t)body);
        at += body;
        for (size_t i = 0; i < count; i++)
            at = write_element(at, elements[i], lengths[i]);
    } else {
        for (size_t i = count; i > 0; i--) /* the last argument ends up at the head */
            at = write_element(at, elements[i - 1], lengths[i - 1]);
        memcpy(at, value + start, (size_t)body);
        at += body;
    }
    output->length = (size_t)(at - output->data);
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
    if (!list_count(value, *length, &old_count) || value[0] != LIST_VERSION_3 ||
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
