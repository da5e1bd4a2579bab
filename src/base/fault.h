/* Fault injection, in the manner of SQLite's test hooks: a test build (compiled with
 * STRATA_FAULT_INJECTION, `make build/fault/...`) can make an allocation, an io_uring
 * submission, a write, a read, a sync or an open fail at its Nth call, or with a
 * probability, with a chosen errno. Every other build compiles each check to nothing.
 *
 * A call site asks fault_inject(SITE) and, when it returns an errno value, behaves as if
 * the operation had failed with it (without doing the operation, except where noted at
 * the site). Rules are set with fault_configure() or fault_parse() (the STRATA_FAULTS
 * environment variable at start-up, DEBUG FAULT on RESP), and read back with
 * fault_get_counts(). All of it is thread-safe. docs/reliability.md lists the sites and
 * what the server does at each. */
#ifndef STRATA_BASE_FAULT_H
#define STRATA_BASE_FAULT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FAULT_SITE(identifier, name, default errno) */
#define FAULT_SITES                                                                                \
    FAULT_SITE(alloc, "alloc", ENOMEM)   /* malloc, calloc, realloc, aligned_alloc */              \
    FAULT_SITE(submit, "submit", EAGAIN) /* io_uring_submit */                                     \
    FAULT_SITE(write, "write", EIO)      /* a write's completion (io_uring or pwrite) */           \
    FAULT_SITE(read, "read", EIO)        /* a read's completion (io_uring or pread) */             \
    FAULT_SITE(sync, "sync", EIO)        /* fdatasync or fsync, through io_uring or not */         \
    FAULT_SITE(open, "open", EIO)        /* opening or creating a flash file (openat) */           \
    /* not a failure: a blocking command waits 200 ms between finding nothing to serve             \
     * and joining the line of blocked clients (the race window, made wide) */                     \
    FAULT_SITE(block_delay, "block-delay", EAGAIN)

enum fault_site {
#define FAULT_SITE(identifier, name, error) FAULT_##identifier,
    FAULT_SITES
#undef FAULT_SITE
        FAULT_SITE_COUNT
};

/* When a site fails. With NTH > 0 the NTH call from now fails (and with PERSISTENT every
 * call after it too); with PROBABILITY_PPM > 0 each call fails with that chance in a
 * million. ERROR is the errno reported (0: the site's default). All zero: never. */
struct fault_rule {
    uint64_t nth;
    bool persistent;
    uint32_t probability_ppm;
    int error;
};

struct fault_counts {
    uint64_t calls;    /* checks since the rule was set */
    uint64_t injected; /* failures injected since the rule was set */
};

#ifdef STRATA_FAULT_INJECTION

/* Returns 0 to go on, or the errno value to fail with. */
int fault_inject(enum fault_site site);

/* Replaces SITE's rule and zeroes its counts. */
void fault_configure(enum fault_site site, const struct fault_rule *rule);

/* Clears every rule and count. */
void fault_reset(void);

/* Reads SITE's counts. */
void fault_get_counts(enum fault_site site, struct fault_counts *counts);

/* Parses and applies rules: "SITE:nth=N[:persistent][:error=ENAME]" or
 * "SITE:probability=P[:error=ENAME]" (P between 0 and 1), several separated by commas;
 * "reset" clears all. Returns 0, or -1 with a reason in ERROR (nothing applied). */
int fault_parse(const char *text, char *error, size_t error_size);

/* Whether this build injects faults. */
static inline bool fault_built_in(void) {
    return true;
}

#else

static inline int fault_inject(enum fault_site site) {
    (void)site;
    return 0;
}

static inline bool fault_built_in(void) {
    return false;
}

#endif

/* For a call that reports failure as -1 (or NULL) with errno: returns true, with errno
 * set, when the call should fail instead of being made. */
static inline bool fault_fails(enum fault_site site) {
    int error = fault_inject(site);
    if (error == 0) return false;
    errno = error;
    return true;
}

/* The site's name ("write"). */
const char *fault_site_name(enum fault_site site);

#endif
