#include "base/byte_buffer.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void byte_buffer_free(struct byte_buffer *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->length = 0;
    buffer->capacity = 0;
    buffer->failed = false;
}

bool byte_buffer_reserve(struct byte_buffer *buffer, size_t extra) {
    if (extra > SIZE_MAX - buffer->length) {
        buffer->failed = true;
        return false;
    }
    size_t needed = buffer->length + extra;
    if (needed <= buffer->capacity) return true;
    size_t capacity = buffer->capacity ? buffer->capacity : 64;
    while (capacity < needed)
        capacity = capacity > SIZE_MAX / 2 ? needed : capacity * 2;
    unsigned char *data = realloc(buffer->data, capacity);
    if (data == NULL) {
        buffer->failed = true;
        return false;
    }
    buffer->data = data;
    buffer->capacity = capacity;
    return true;
}

void byte_buffer_append(struct byte_buffer *buffer, const void *data, size_t length) {
    if (length == 0 || !byte_buffer_reserve(buffer, length)) return;
    memcpy(buffer->data + buffer->length, data, length);
    buffer->length += length;
}

void byte_buffer_append_text(struct byte_buffer *buffer, const char *text) {
    byte_buffer_append(buffer, text, strlen(text));
}

void byte_buffer_appendf(struct byte_buffer *buffer, const char *format, ...) {
    char small[256];
    va_list arguments;
    va_start(arguments, format);
    int needed = vsnprintf(small, sizeof(small), format, arguments);
    va_end(arguments);
    if (needed < 0) {
        buffer->failed = true;
        return;
    }
    if ((size_t)needed < sizeof(small)) {
        byte_buffer_append(buffer, small, (size_t)needed);
        return;
    }
    if (!byte_buffer_reserve(buffer, (size_t)needed + 1)) return;
    va_start(arguments, format);
    vsnprintf((char *)buffer->data + buffer->length, (size_t)needed + 1, format, arguments);
    va_end(arguments);
    buffer->length += (size_t)needed;
}

void byte_buffer_clear(struct byte_buffer *buffer) {
    buffer->length = 0;
    buffer->failed = false;
}
