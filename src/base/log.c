#include "base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = LOG_INFO;
static _Atomic int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void log_set_level(enum log_level level) {
    atomic_store_explicit(&current_level, (int)level, memory_order_relaxed);
}

enum log_level log_get_level(void) {
    return (enum log_level)atomic_load_explicit(&current_level, memory_order_relaxed);
}

int log_level_parse(const char *text, enum log_level *level) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(enum log_level level) {
    if ((int)level < 0 || (int)level > 3) return "unknown";
    return level_names[level];
}

void log_set_fd(int fd) {
    atomic_store_explicit(&log_fd, fd, memory_order_relaxed);
}

void log_event(enum log_level level, const char *event, const char *format, ...) {
    if ((int)level < atomic_load_explicit(&current_level, memory_order_relaxed)) return;

    char line[4096];
    struct timespec now;
    struct tm parts;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &parts);
    int length =
        snprintf(line, sizeof(line), "time=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                 parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min,
                 parts.tm_sec, now.tv_nsec / 1000000L, log_level_name(level), event);
    if (length < 0) return;
    if (format != NULL && (size_t)length < sizeof(line) - 2) {
        line[length++] = ' ';
        va_list arguments;
        va_start(arguments, format);
        int added = vsnprintf(line + length, sizeof(line) - (size_t)length, format, arguments);
        va_end(arguments);
        if (added > 0) length += added;
    }
    if ((size_t)length > sizeof(line) - 2) length = (int)sizeof(line) - 2;
    line[length++] = '\n';
    ssize_t ignored =
        write(atomic_load_explicit(&log_fd, memory_order_relaxed), line, (size_t)length);
    (void)ignored;
}

char *log_quote(char *output, size_t output_size, const char *text, size_t text_length) {
    if (output_size == 0) return output;
    int plain = text_length > 0;
    for (size_t i = 0; i < text_length && plain; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) plain = 0;
    }
    size_t position = 0;
    if (plain) {
        size_t copy = text_length < output_size - 1 ? text_length : output_size - 1;
        memcpy(output, text, copy);
        output[copy] = '\0';
        return output;
    }
    static const char hex[] = "0123456789abcdef";
    output[position++] = '"';
    for (size_t i = 0; i < text_length; i++) {
        unsigned char c = (unsigned char)text[i];
        char escaped[5];
        size_t escaped_length;
        if (c == '"' || c == '\\') {
            escaped[0] = '\\';
            escaped[1] = (char)c;
            escaped_length = 2;
        } else if (c < ' ' || c >= 0x7f) {
            escaped[0] = '\\';
            escaped[1] = 'x';
            escaped[2] = hex[c >> 4];
            escaped[3] = hex[c & 15];
            escaped_length = 4;
        } else {
            escaped[0] = (char)c;
            escaped_length = 1;
        }
        if (position + escaped_length + 2 > output_size) break;
        memcpy(output + position, escaped, escaped_length);
        position += escaped_length;
    }
    if (position + 2 <= output_size) output[position++] = '"';
    output[position < output_size ? position : output_size - 1] = '\0';
    return output;
}
