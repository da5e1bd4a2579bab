/* Variable-length unsigned integers for compact encodings (the list, hash and set
 * encodings of src/proto/resp/): 7 bits a byte, least significant group first, the high
 * bit set on every byte but the last (LEB128), so a value below 128 takes one byte and
 * one below 16384 two. The backward form is the same bytes in reverse order, read from
 * where it ends: listpack's "backlen", with which an encoding is walked from its end.
 * Only the shortest form of a value is accepted on reading, so one value has one
 * encoding and a damaged length is more likely to be caught. */
#ifndef STRATA_BASE_VARINT_H
#define STRATA_BASE_VARINT_H
#include <stddef.h>
#include <stdint.h>

#define VARINT_MAX_SIZE 10 /* bytes a uint64_t takes at most */

/* The bytes VALUE takes, forward or backward: 1 to VARINT_MAX_SIZE. */
static inline size_t varint_size(uint64_t value) {
    size_t size = 1;
    while (value >= 0x80) {
        value >>= 7;
        size++;
    }
    return size;
}

/* Writes VALUE at AT (varint_size(VALUE) bytes); returns where it ends. */
static inline unsigned char *varint_put(unsigned char *at, uint64_t value) {
    while (value >= 0x80) {
        *at++ = (unsigned char)(value | 0x80);
        value >>= 7;
    }
    *at++ = (unsigned char)value;
    return at;
}

/* Reads a value at AT, of which AVAILABLE bytes may be read, into *VALUE. Returns the
 * bytes it took, or 0 when it runs past AVAILABLE, is longer than its value needs or
 * overflows 64 bits (*VALUE then unset). */
static inline size_t varint_get(const unsigned char *at, size_t available, uint64_t *value) {
    uint64_t result = 0;
    for (size_t i = 0; i < available && i < VARINT_MAX_SIZE; i++) {
        uint64_t group = at[i] & 0x7f;
        if (i == VARINT_MAX_SIZE - 1 && group > 1) return 0;
        result |= group << (7 * i);
        if ((at[i] & 0x80) == 0) {
            if (i > 0 && group == 0) return 0; /* not the shortest form */
            *value = result;
            return i + 1;
        }
    }
    return 0;
}

/* Writes VALUE backward so that it ends at END (varint_size(VALUE) bytes before it);
 * returns where it begins. */
static inline unsigned char *varint_put_backward(unsigned char *end, uint64_t value) {
    while (value >= 0x80) {
        *--end = (unsigned char)(value | 0x80);
        value >>= 7;
    }
    *--end = (unsigned char)value;
    return end;
}

/* Reads a backward value that ends at END, of which the AVAILABLE bytes before END may
 * be read, into *VALUE. Returns the bytes it took, or 0 as varint_get(). */
static inline size_t varint_get_backward(const unsigned char *end, size_t available,
                                         uint64_t *value) {
    uint64_t result = 0;
    for (size_t i = 0; i < available && i < VARINT_MAX_SIZE; i++) {
        unsigned char byte = end[-1 - (ptrdiff_t)i];
        uint64_t group = byte & 0x7f;
        if (i == VARINT_MAX_SIZE - 1 && group > 1) return 0;
        result |= group << (7 * i);
        if ((byte & 0x80) == 0) {
            if (i > 0 && group == 0) return 0;
            *value = result;
            return i + 1;
        }
    }
    return 0;
}

#endif
