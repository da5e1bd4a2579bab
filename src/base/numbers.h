/* Number parsing and formatting with the exact rules a Redis client expects.
 *
 * All parsers take a byte range (not a C string), never read past it, and accept
 * nothing but the number itself: no spaces, no trailing bytes. */
#ifndef STRATA_BASE_NUMBERS_H
#define STRATA_BASE_NUMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses a signed 64-bit decimal integer: an optional '-', then digits with no
 * leading zero (except "0" itself). Returns true and sets *value, or false on any
 * other input or on overflow. */
bool parse_int64(const void *text, size_t length, int64_t *value);

/* Parses an unsigned 64-bit decimal integer (digits only). Returns true on success. */
bool parse_uint64(const void *text, size_t length, uint64_t *value);

/* Parses a long double as strtold would, rejecting leading spaces, NaN, overflow and
 * trailing bytes ("inf" is accepted, as Redis does). Returns true on success. */
bool parse_long_double(const void *text, size_t length, long double *value);

/* Writes VALUE in decimal to OUTPUT (at least 21 bytes). Returns the length written,
 * without a terminating NUL. */
size_t format_int64(char *output, int64_t value);

/* Writes VALUE in decimal to OUTPUT (at least 21 bytes). Returns the length written. */
size_t format_uint64(char *output, uint64_t value);

/* Formats a long double the way Redis's INCRBYFLOAT does: fixed notation with 17
 * digits after the point, trailing zeros (and a trailing point) removed. OUTPUT needs
 * at least 5120 bytes to hold any finite value. Returns the length, or 0 if VALUE is
 * not finite. */
size_t format_long_double(char *output, size_t output_size, long double value);

/* Parses a size such as "1048576", "64mb", "1gb" or "512k" into bytes. Units follow
 * Redis's configuration: b; k, m, g, t are powers of 1000; kb, mb, gb, tb and kib,
 * mib, gib, tib are powers of 1024. Case-insensitive. Returns true on success. */
bool parse_size(const char *text, uint64_t *bytes);

/* Writes BYTES as the shortest exact size text ("64mb", "1gb", "1000"). Returns OUTPUT. */
char *format_size(char *output, size_t output_size, uint64_t bytes);

/* Writes BYTES in the human style of Redis's INFO ("1.50M"). Returns OUTPUT. */
char *format_size_human(char *output, size_t output_size, uint64_t bytes);

#endif
