/* The byte encoding of a Redis list (resp_lists.c), on its own so that unit tests can
 * reach it: decoding all three versions, encoding version 3, walking to an index from the
 * nearer end, and the in-place pushes and pops that store_edit_in_place() runs. The
 * encoding itself is documented at the top of resp_list_codec.c. */
#ifndef STRATA_RESP_LIST_CODEC_H
#define STRATA_RESP_LIST_CODEC_H

#include "base/byte_buffer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIST_VERSION_1      1 /* u32 length, bytes: walked from the head only */
#define LIST_VERSION_2      2 /* u32 length, bytes, u32 length: walked from either end */
#define LIST_VERSION_3      3 /* varint length, bytes, backward varint length: written */
#define LIST_V1_HEADER_SIZE 5 /* u8 version, u32 count */
#define LIST_HEADER_SIZE    9 /* versions 2 and 3: u8 version, u32 count, u32 front room */
#define LIST_V2_OVERHEAD    8 /* per element in version 2: the two lengths */

struct list_element {
    const unsigned char *data;
    uint32_t length;
};

/* A list decoded into views of its value (or of a command's arguments, for the
 * elements a change adds), head first. */
struct list_elements {
    struct list_element *elements;
    size_t count;
    size_t capacity;
};

/* Grows LIST's array to hold WANTED elements. Returns false when out of memory. */
bool list_elements_grow(struct list_elements *list, size_t wanted);
void list_elements_free(struct list_elements *list);

enum list_decode_result { LIST_DECODED, LIST_CORRUPT, LIST_NO_MEMORY };

/* Decodes the LENGTH bytes at DATA (version 1, 2 or 3) into LIST (empty on entry), whose
 * views point into DATA: it must outlive them. Checks the whole encoding. */
enum list_decode_result list_decode(const unsigned char *data, uint64_t length,
                                    struct list_elements *list);

/* The bytes an element of LENGTH bytes takes in version 3: its two varint lengths and
 * itself (LENGTH + 2 below 128 bytes). */
uint64_t list_element_size(uint64_t length);

/* Appends LIST, encoded in version 3, to OUTPUT (OUTPUT->failed when out of memory). */
void list_encode(const struct list_elements *list, struct byte_buffer *output);

/* Sets *COUNT to the element count of the encoded list at DATA (LENGTH bytes), from its
 * header alone. Returns false when the header is damaged or of an unknown version. */
bool list_count(const unsigned char *data, uint64_t length, uint32_t *count);

/* Sets *START to where the first element of the encoded list at DATA begins (past the
 * header and, in versions 2 and 3, the front room). Returns false when the header is damaged. */
bool list_body(const unsigned char *data, uint64_t length, uint64_t *start);

/* Sets *OFFSET to where element INDEX (below the list's count) of the encoded list at
 * DATA begins (its length), walking from the nearer end in versions 2 and 3 and from the
 * head in version 1. Returns false when the walk finds the encoding damaged. */
bool list_seek(const unsigned char *data, uint64_t length, uint32_t index, uint64_t *offset);

/* Reads the element at *OFFSET (as list_seek() sets it) into *ELEMENT and moves *OFFSET
 * to the next one. Returns false when it does not fit in the LENGTH bytes. */
bool list_next(const unsigned char *data, uint64_t length, uint64_t *offset,
               struct list_element *element);

/* Pushes COUNT elements (ELEMENTS[i], LENGTHS[i] bytes, each below 4 GiB) onto the
 * version-3 list in VALUE (*LENGTH bytes of a CAPACITY-byte buffer), each in turn at the
 * head (LEFT: they end up reversed) or the tail. At the head they go into the front
 * room; without enough, the body moves up once, by the pushed bytes plus new front room
 * (half the free capacity, at most the body's size, so a run of pushes at the head
 * moves the list a logarithmic number of times per growth of its block). Updates
 * *LENGTH, the count and the room. Returns false, changing nothing, when VALUE is not
 * version 3 (an older version is rewritten whole by the caller), the elements do not fit in
 * CAPACITY (at the tail: past *LENGTH) or the count would pass 2^32 - 1. */
bool list_push_in_place(unsigned char *value, uint64_t *length, uint64_t capacity, bool left,
                        const unsigned char *const *elements, const uint64_t *lengths,
                        size_t count);

/* Appends to OUTPUT the version-3 list at VALUE (LENGTH bytes) with COUNT elements
 * pushed as list_push_in_place() pushes them, encoded whole (no front room): its body
 * is copied as it is, not decoded, so a push onto a list too small to change in place
 * costs a copy of its bytes rather than a decode and an encode. Returns false, OUTPUT
 * unchanged, when VALUE is not version 3, an element is 4 GiB or more or the count
 * would pass 2^32 - 1; false with OUTPUT->failed when out of memory. */
bool list_push_copy(const unsigned char *value, uint64_t length, bool left,
                    const unsigned char *const *elements, const uint64_t *lengths, size_t count,
                    struct byte_buffer *output);

/* Pops COUNT (at least 1) elements from the head (LEFT) or the tail of the version-3
 * list in VALUE (*LENGTH bytes), appending each, in pop order, to POPPED as u32 length
 * and bytes. The head's bytes join the front room, the tail's are cut; when the room
 * then exceeds twice the body (and 4 KiB), the body moves down over it, so a drained
 * list does not keep its old length. Updates *LENGTH, the count and the room. Returns
 * false, changing nothing but possibly POPPED's contents, when VALUE is not version 3,
 * is damaged, or holds COUNT elements or fewer (the list would be left empty: the key
 * must go instead). */
bool list_pop_in_place(unsigned char *value, uint64_t *length, bool left, uint32_t count,
                       struct byte_buffer *popped);

#endif
