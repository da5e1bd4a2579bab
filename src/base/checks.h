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

#include <stdatomic.h>
#include <stdint.h>

/* A number for the calling thread, unique in the process (from 1). */
uint64_t check_thread(void);

/* Which thread holds a lock, in the checking builds (always 0 elsewhere): a lock's
 * owner is set just after it is taken and cleared just before it is let go, so a rule
 * "called with X locked" can be checked with check_held(). */
struct check_owner {
    _Atomic uint64_t thread;
};

static inline void check_acquired(struct check_owner *owner) {
#ifdef STRATA_CHECKS
    atomic_store_explicit(&owner->thread, check_thread(), memory_order_relaxed);
#else
    (void)owner;
#endif
}

static inline void check_releasing(struct check_owner *owner) {
#ifdef STRATA_CHECKS
    STRATA_ASSERT(atomic_load_explicit(&owner->thread, memory_order_relaxed) == check_thread());
    atomic_store_explicit(&owner->thread, 0, memory_order_relaxed);
#else
    (void)owner;
#endif
}

/* Whether the calling thread holds the lock OWNER tracks (always true without checks). */
static inline bool check_held(const struct check_owner *owner) {
#ifdef STRATA_CHECKS
    return atomic_load_explicit(&owner->thread, memory_order_relaxed) == check_thread();
#else
    (void)owner;
    return true;
#endif
}

#endif
