/* Base64, standard alphabet, padded (RFC 4648 section 4): see base64.h. */
#include "base/base64.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const char BASE64_ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(const unsigned char *data, size_t length, char *text) {
    size_t out = 0;
    size_t i = 0;
    for (; i + 3 <= length; i += 3) {
        uint32_t group = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        text[out++] = BASE64_ALPHABET[group >> 18 & 63];
        text[out++] = BASE64_ALPHABET[group >> 12 & 63];
        text[out++] = BASE64_ALPHABET[group >> 6 & 63];
        text[out++] = BASE64_ALPHABET[group & 63];
    }
    if (length - i == 1) {
        uint32_t group = (uint32_t)data[i] << 16;
        text[out++] = BASE64_ALPHABET[group >> 18 & 63];
        text[out++] = BASE64_ALPHABET[group >> 12 & 63];
        text[out++] = '=';
        text[out++] = '=';
    } else if (length - i == 2) {
        uint32_t group = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        text[out++] = BASE64_ALPHABET[group >> 18 & 63];
        text[out++] = BASE64_ALPHABET[group >> 12 & 63];
        text[out++] = BASE64_ALPHABET[group >> 6 & 63];
        text[out++] = '=';
    }
    text[out] = '\0';
}

static int base64_value(char c) {
    const char *found = c != '\0' ? strchr(BASE64_ALPHABET, c) : NULL;
    return found != NULL ? (int)(found - BASE64_ALPHABET) : -1;
}

long base64_decode(const char *text, size_t text_length, unsigned char *output, size_t maximum) {
    if (text_length % 4 != 0) return -1;
    size_t out = 0;
    for (size_t i = 0; i < text_length; i += 4) {
        bool last = i + 4 == text_length;
        int values[4];
        int padding = 0;
        for (int j = 0; j < 4; j++) {
            char c = text[i + (size_t)j];
            if (c == '=' && last && j >= 2) {
                values[j] = 0;
                padding++;
                continue;
            }
            if (padding > 0) return -1; /* data after '=' */
            values[j] = base64_value(c);
            if (values[j] < 0) return -1;
        }
        uint32_t group = (uint32_t)values[0] << 18 | (uint32_t)values[1] << 12 |
                         (uint32_t)values[2] << 6 | (uint32_t)values[3];
        size_t bytes = 3 - (size_t)padding;
        if (out + bytes > maximum) return -1;
        output[out++] = (unsigned char)(group >> 16);
        if (bytes > 1) output[out++] = (unsigned char)(group >> 8);
        if (bytes > 2) output[out++] = (unsigned char)group;
    }
    return (long)out;
}
