#include "base/numbers.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool parse_int64(const void *text, size_t length, int64_t *value) {
    const unsigned char *p = text;
    if (length == 0 || length > 20) return false;
    if (length == 1 && p[0] == '0') {
        *value = 0;
        return true;
    }
    bool negative = false;
    size_t i = 0;
    if (p[0] == '-') {
        negative = true;
        i = 1;
        if (length == 1) return false;
    }
    if (p[i] < '1' || p[i] > '9') return false;
    uint64_t magnitude = 0;
    for (; i < length; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        uint64_t digit = (uint64_t)(p[i] - '0');
        if (magnitude > (UINT64_MAX - digit) / 10) return false;
        magnitude = magnitude * 10 + digit;
    }
    if (negative) {
        if (magnitude > (uint64_t)INT64_MAX + 1) return false;
        *value = magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
    } else {
        if (magnitude > (uint64_t)INT64_MAX) return false;
        *value = (int64_t)magnitude;
    }
    return true;
}

bool parse_uint64(const void *text, size_t length, uint64_t *value) {
    const unsigned char *p = text;
    if (length == 0 || length > 20) return false;
    uint64_t result = 0;
    for (size_t i = 0; i < length; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        uint64_t digit = (uint64_t)(p[i] - '0');
        if (result > (UINT64_MAX - digit) / 10) return false;
        result = result * 10 + digit;
    }
    *value = result;
    return true;
}

bool parse_long_double(const void *text, size_t length, long double *value) {
    char buffer[5200];
    if (length == 0 || length >= sizeof(buffer)) return false;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    if (isspace((unsigned char)buffer[0])) return false;
    char *end = NULL;
    errno = 0;
    long double result = strtold(buffer, &end);
    if (end != buffer + length) return false;
    if (errno == ERANGE && (result == HUGE_VALL || result == -HUGE_VALL || result == 0)) {
        return false;
    }
    if (isnan(result)) return false;
    *value = result;
    return true;
}

size_t format_uint64(char *output, uint64_t value) {
    char reversed[21];
    size_t length = 0;
    do {
        reversed[length++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    for (size_t i = 0; i < length; i++)
        output[i] = reversed[length - 1 - i];
    return length;
}

size_t format_int64(char *output, int64_t value) {
    if (value < 0) {
        output[0] = '-';
        uint64_t magnitude = (uint64_t)(-(value + 1)) + 1;
        return 1 + format_uint64(output + 1, magnitude);
    }
    return format_uint64(output, (uint64_t)value);
}

size_t format_long_double(char *output, size_t output_size, long double value) {
    if (isinf(value) || isnan(value)) return 0;
    int written = snprintf(output, output_size, "%.17Lf", value);
    if (written <= 0 || (size_t)written >= output_size) return 0;
    size_t length = (size_t)written;
    if (memchr(output, '.', length) != NULL) {
        while (length > 0 && output[length - 1] == '0')
            length--;
        if (length > 0 && output[length - 1] == '.') length--;
    }
    if (length == 2 && output[0] == '-' && output[1] == '0') {
        output[0] = '0';
        length = 1;
    }
    output[length] = '\0';
    return length;
}

bool parse_size(const char *text, uint64_t *bytes) {
    size_t length = strlen(text);
    size_t digits = 0;
    while (digits < length && text[digits] >= '0' && text[digits] <= '9')
        digits++;
    if (digits == 0) return false;
    uint64_t number;
    if (!parse_uint64(text, digits, &number)) return false;
    const char *unit = text + digits;
    static const struct {
        const char *name;
        uint64_t multiplier;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1000ULL},
        {"kb", 1024ULL},
        {"kib", 1024ULL},
        {"m", 1000ULL * 1000},
        {"mb", 1024ULL * 1024},
        {"mib", 1024ULL * 1024},
        {"g", 1000ULL * 1000 * 1000},
        {"gb", 1024ULL * 1024 * 1024},
        {"gib", 1024ULL * 1024 * 1024},
        {"t", 1000ULL * 1000 * 1000 * 1000},
        {"tb", 1024ULL * 1024 * 1024 * 1024},
        {"tib", 1024ULL * 1024 * 1024 * 1024},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(unit, units[i].name) == 0) {
            if (number > UINT64_MAX / units[i].multiplier) return false;
            *bytes = number * units[i].multiplier;
            return true;
        }
    }
    return false;
}

char *format_size(char *output, size_t output_size, uint64_t bytes) {
    static const struct {
        const char *name;
        uint64_t multiplier;
    } units[] = {
        {"tb", 1024ULL * 1024 * 1024 * 1024},
        {"gb", 1024ULL * 1024 * 1024},
        {"mb", 1024ULL * 1024},
        {"kb", 1024ULL},
    };
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (bytes != 0 && bytes % units[i].multiplier == 0) {
            snprintf(output, output_size, "%llu%s",
                     (unsigned long long)(bytes / units[i].multiplier), units[i].name);
            return output;
        }
    }
    snprintf(output, output_size, "%llu", (unsigned long long)bytes);
    return output;
}

char *format_size_human(char *output, size_t output_size, uint64_t bytes) {
    double value = (double)bytes;
    if (bytes < 1024) {
        snprintf(output, output_size, "%lluB", (unsigned long long)bytes);
    } else if (bytes < 1024ULL * 1024) {
        snprintf(output, output_size, "%.2fK", value / 1024);
    } else if (bytes < 1024ULL * 1024 * 1024) {
        snprintf(output, output_size, "%.2fM", value / (1024.0 * 1024));
    } else if (bytes < 1024ULL * 1024 * 1024 * 1024) {
        snprintf(output, output_size, "%.2fG", value / (1024.0 * 1024 * 1024));
    } else {
        snprintf(output, output_size, "%.2fT", value / (1024.0 * 1024 * 1024 * 1024));
    }
    return output;
}
