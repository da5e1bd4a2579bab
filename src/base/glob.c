#include "base/glob.h"

/* Matches one byte C against the bracket expression starting just after '[' at
 * PATTERN[*position]. Advances *position past the closing ']' (or to the end of the
 * pattern when it has none). Returns true when C is in the set. */
static bool match_class(const unsigned char *pattern, size_t pattern_length, size_t *position,
                        unsigned char c) {
    size_t p = *position;
    bool negate = false;
    bool matched = false;
    if (p < pattern_length && pattern[p] == '^') {
        negate = true;
        p++;
    }
    while (p < pattern_length && pattern[p] != ']') {
        if (pattern[p] == '\\' && p + 1 < pattern_length) {
            p++;
            if (pattern[p] == c) matched = true;
            p++;
        } else if (p + 2 < pattern_length && pattern[p + 1] == '-' && pattern[p + 2] != ']') {
            unsigned char low = pattern[p];
            unsigned char high = pattern[p + 2];
            if (low > high) {
                unsigned char swap = low;
                low = high;
                high = swap;
            }
            if (c >= low && c <= high) matched = true;
            p += 3;
        } else {
            if (pattern[p] == c) matched = true;
            p++;
        }
    }
    if (p < pattern_length) p++; /* the closing ']' */
    *position = p;
    return negate ? !matched : matched;
}

bool glob_match(const unsigned char *pattern, size_t pattern_length, const unsigned char *string,
                size_t string_length) {
    size_t p = 0;
    size_t s = 0;
    size_t star_pattern = (size_t)-1; /* pattern position just after the last '*' */
    size_t star_string = 0;           /* string position that '*' was last tried at */

    while (s < string_length) {
        if (p < pattern_length) {
            unsigned char token = pattern[p];
            if (token == '*') {
                while (p < pattern_length && pattern[p] == '*')
                    p++;
                if (p == pattern_length) return true;
                star_pattern = p;
                star_string = s;
                continue;
            }
            if (token == '?') {
                p++;
                s++;
                continue;
            }
            if (token == '[') {
                size_t next = p + 1;
                if (match_class(pattern, pattern_length, &next, string[s])) {
                    p = next;
                    s++;
                    continue;
                }
            } else {
                size_t literal = p;
                if (token == '\\' && p + 1 < pattern_length) literal = p + 1;
                if (pattern[literal] == string[s]) {
                    p = literal + 1;
                    s++;
                    continue;
                }
            }
        }
        /* Mismatch: let the last '*' swallow one more byte, or fail. */
        if (star_pattern == (size_t)-1) return false;
        star_string++;
        s = star_string;
        p = star_pattern;
    }
    while (p < pattern_length && pattern[p] == '*')
        p++;
    return p == pattern_length;
}
