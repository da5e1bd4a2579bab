/* Growing a heap array by doubling, shared by the decoded forms of RESP's typed values
 * (hashes, lists, sets, sorted sets, streams). */
#ifndef STRATA_BASE_ARRAY_H
#define STRATA_BASE_ARRAY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Makes room for WANTED elements of SIZE bytes in *ARRAY, which holds *CAPACITY (0 with
 * *ARRAY NULL at first): at least doubles it, from 8. The caller owns *ARRAY and frees
 * it. Returns false when out of memory or past SIZE_MAX bytes (*ARRAY unchanged). */
static inline bool array_grow(void **array, size_t *capacity, size_t wanted, size_t size) {
    if (wanted <= *capacity) return true;
    size_t grown = *capacity ? *capacity : 8;
    while (grown < wanted) {
        if (grown > SIZE_MAX / 2) return false;
        grown *= 2;
    }
    if (grown > SIZE_MAX / size) return false;
    void *bigger = realloc(*array, grown * size);
    if (bigger == NULL) return false;
    *array = bigger;
    *capacity = grown;
    return true;
}

#endif
