/* Glob-style pattern matching with the rules of Redis's KEYS and SCAN MATCH:
 * '*' any run of bytes, '?' one byte, "[abc]", "[^abc]", "[a-z]" one byte of a set,
 * and '\' to take the next byte literally. Binary-safe. Runs in O(pattern × string)
 * time in the worst case and uses no recursion. */
#ifndef STRATA_BASE_GLOB_H
#define STRATA_BASE_GLOB_H

#include <stdbool.h>
#include <stddef.h>

/* Returns true when STRING matches PATTERN. */
bool glob_match(const unsigned char *pattern, size_t pattern_length, const unsigned char *string,
                size_t string_length);

#endif
