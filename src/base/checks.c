/* Run-time checks (see checks.h). */
#include "base/checks.h"

#ifdef STRATA_CHECKS

#include <stdio.h>
#include <stdlib.h>

_Noreturn void check_failed(const char *condition, const char *file, int line) {
    fprintf(stderr, "strata: broken rule at %s:%d: %s\n", file, line, condition);
    fflush(stderr);
    abort();
}

#endif
