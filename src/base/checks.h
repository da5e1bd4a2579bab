/* Run-time checks of the rules that comments state: which lock must be held, which
 * thread may call, what must be true between two steps. The sanitizer builds (ASan,
 * TSan and the fault build, compiled with STRATA_CHECKS) test them and abort with the
 * rule, the file and the line when one is broken; the release build compiles them to
 * nothing, so they cost nothing where speed is measured. */
#ifndef STRATA_BASE_CHECKS_H
#define STRATA_BASE_CHECKS_H

#include <stdbool.h>

#ifdef STRATA_CHECKS

/* Reports a broken rule on standard error and aborts. */
_Noreturn void check_failed(const char *condition, const char *file, int line);

#define STRATA_ASSERT(condition)                                                                   \
    ((condition) ? (void)0 : check_failed(#condition, __FILE__, __LINE__))

/* Whether checks are compiled in (for code that must prepare what a check reads). */
#define STRATA_CHECKING 1

#else

#define STRATA_ASSERT(condition) ((void)0)
#define STRATA_CHECKING          0

#endif

#endif
