/* Structured logging: one logfmt line per notable event.
 *
 * Every line has the shape
 *     time=2026-11-21T05:35:00.123Z level=info event=listening address=127.0.0.1 port=6379
 * The caller supplies the event name and the key=value fields; a value that may
 * contain spaces or quotes is passed through log_quote() first. Lines are written
 * with one write(2) each, so lines from different threads never interleave. */
#ifndef STRATA_BASE_LOG_H
#define STRATA_BASE_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARNING = 2, LOG_ERROR = 3 };

/* Names accepted by log_level_parse, in level order; used by the option table. */
#define LOG_LEVEL_NAMES "debug|info|warning|error"

/* Sets the lowest level that is written. Safe to call from any thread. */
void log_set_level(enum log_level level);

/* Returns the current lowest level that is written. */
enum log_level log_get_level(void);

/* Parses "debug", "info", "warning" or "error". Returns 0 and sets *level, or -1. */
int log_level_parse(const char *text, enum log_level *level);

/* Returns the name of a level ("info"). */
const char *log_level_name(enum log_level level);

/* Sends log lines to the given file descriptor (standard error by default). Another
 * thread may be about to write to the old number: never close it after this call. To
 * put a new file behind the log, dup2() it onto the number in use instead. */
void log_set_fd(int fd);

/* Writes one line: the fixed fields, event=EVENT, then the caller's fields formatted
 * with printf-style FORMAT (may be NULL for no extra fields). */
void log_event(enum log_level level, const char *event, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies TEXT into OUTPUT (of OUTPUT_SIZE bytes) as a logfmt value: unchanged when it
 * has no space, quote, equals sign or control byte, otherwise in double quotes with
 * backslash escapes. Truncates to fit. Returns OUTPUT. */
char *log_quote(char *output, size_t output_size, const char *text, size_t text_length);

#endif
