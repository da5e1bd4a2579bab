/* Run-time checks (see checks.h). */
#include "base/checks.h"

uint64_t check_thread(void) {
    static _Atomic uint64_t next = 1;
    static _Thread_local uint64_t mine;
    if (mine == 0) mine = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
    return mine;
}

#ifdef STRATA_CHECKS

#include <stdio.h>
#include <stdlib.h>

_Noreturn void check_failed(const char *condition, const char *file, int line) {
    fprintf(stderr, "strata: broken rule at %s:%d: %s\n", file, line, condition);
    fflush(stderr);
    abort();
}

#endif
