/* A growable byte array for building text (INFO, CLIENT LIST) and for short-lived
 * parser storage.
 *
 * Allocation failures never abort: the buffer remembers that an append failed
 * (`failed`), drops that append, and the caller checks once at the end. */
#ifndef STRATA_BASE_BYTE_BUFFER_H
#define STRATA_BASE_BYTE_BUFFER_H

#include <stdbool.h>
#include <stddef.h>

struct byte_buffer {
    unsigned char *data; /* owned; NULL until the first append */
    size_t length;
    size_t capacity;
    bool failed; /* an append could not allocate and was dropped */
};

#define BYTE_BUFFER_INIT                                                                           \
    { NULL, 0, 0, false }

/* Releases the storage and returns the buffer to its initial, empty state. */
void byte_buffer_free(struct byte_buffer *buffer);

/* Makes room for EXTRA more bytes. Returns false (and sets failed) if it cannot. */
bool byte_buffer_reserve(struct byte_buffer *buffer, size_t extra);

/* Appends LENGTH bytes. */
void byte_buffer_append(struct byte_buffer *buffer, const void *data, size_t length);

/* Appends a NUL-terminated string (without the NUL). */
void byte_buffer_append_text(struct byte_buffer *buffer, const char *text);

/* Appends printf-style formatted text. */
void byte_buffer_appendf(struct byte_buffer *buffer, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Forgets the contents and the failure flag, keeping the storage. */
void byte_buffer_clear(struct byte_buffer *buffer);

#endif
