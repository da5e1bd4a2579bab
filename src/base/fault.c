/* Fault injection (see fault.h). Without STRATA_FAULT_INJECTION only the site names are
 * compiled. */
#include <errno.h>

#include "base/fault.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const site_names[FAULT_SITE_COUNT] = {
#define FAULT_SITE(identifier, name, error) name,
    FAULT_SITES
#undef FAULT_SITE
};

const char *fault_site_name(enum fault_site site) {
    return (unsigned)site < FAULT_SITE_COUNT ? site_names[site] : "unknown";
}

#ifdef STRATA_FAULT_INJECTION

static const int site_errors[FAULT_SITE_COUNT] = {
#define FAULT_SITE(identifier, name, error) error,
    FAULT_SITES
#undef FAULT_SITE
};

/* One site's rule and counts. The rule's fields are read with relaxed loads: a rule
 * changed while calls are under way applies from some call on, which is all a test
 * needs. */
struct site_state {
    _Atomic uint64_t nth;
    _Atomic bool persistent;
    _Atomic uint32_t probability_ppm;
    _Atomic int error;
    _Atomic uint64_t calls;
    _Atomic uint64_t injected;
};

static struct site_state sites[FAULT_SITE_COUNT];

/* A per-thread xorshift generator for probabilistic rules. */
static uint32_t next_random(void) {
    static _Thread_local uint64_t state;
    if (state == 0) state = (uint64_t)(uintptr_t)&state * 0x9E3779B97F4A7C15ull | 1;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (uint32_t)(state >> 32);
}

int fault_inject(enum fault_site site) {
    struct site_state *state = &sites[site];
    uint64_t nth = atomic_load_explicit(&state->nth, memory_order_relaxed);
    uint32_t ppm = atomic_load_explicit(&state->probability_ppm, memory_order_relaxed);
    if (nth == 0 && ppm == 0) return 0;
    uint64_t call = atomic_fetch_add_explicit(&state->calls, 1, memory_order_relaxed) + 1;
    bool fail = false;
    if (nth != 0) {
        fail = call == nth ||
               (call > nth && atomic_load_explicit(&state->persistent, memory_order_relaxed));
    }
    if (!fail && ppm != 0) fail = next_random() % 1000000u < ppm;
    if (!fail) return 0;
    atomic_fetch_add_explicit(&state->injected, 1, memory_order_relaxed);
    int error = atomic_load_explicit(&state->error, memory_order_relaxed);
    return error != 0 ? error : site_errors[site];
}

void fault_configure(enum fault_site site, const struct fault_rule *rule) {
    struct site_state *state = &sites[site];
    atomic_store_explicit(&state->nth, 0, memory_order_relaxed);
    atomic_store_explicit(&state->probability_ppm, 0, memory_order_relaxed);
    atomic_store_explicit(&state->calls, 0, memory_order_relaxed);
    atomic_store_explicit(&state->injected, 0, memory_order_relaxed);
    atomic_store_explicit(&state->persistent, rule->persistent, memory_order_relaxed);
    atomic_store_explicit(&state->error, rule->error, memory_order_relaxed);
    atomic_store_explicit(&state->probability_ppm, rule->probability_ppm, memory_order_relaxed);
    atomic_store_explicit(&state->nth, rule->nth, memory_order_relaxed);
}

void fault_reset(void) {
    static const struct fault_rule never;
    for (int site = 0; site < FAULT_SITE_COUNT; site++)
        fault_configure((enum fault_site)site, &never);
}

void fault_get_counts(enum fault_site site, struct fault_counts *counts) {
    counts->calls = atomic_load_explicit(&sites[site].calls, memory_order_relaxed);
    counts->injected = atomic_load_explicit(&sites[site].injected, memory_order_relaxed);
}

static const struct {
    const char *name;
    int value;
} error_names[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC}, {"ENOMEM", ENOMEM}, {"EAGAIN", EAGAIN},
    {"EBUSY", EBUSY},   {"EINTR", EINTR},   {"EROFS", EROFS},   {"EDQUOT", EDQUOT},
    {"EACCES", EACCES}, {"ENOENT", ENOENT}, {"EMFILE", EMFILE}, {"EFBIG", EFBIG},
};

/* Parses one "SITE:field=value:..." rule into *SITE and *RULE. */
static int parse_rule(char *text, enum fault_site *site, struct fault_rule *rule, char *error,
                      size_t error_size) {
    char *saved = NULL;
    char *name = strtok_r(text, ":", &saved);
    int found = -1;
    for (int i = 0; name != NULL && i < FAULT_SITE_COUNT; i++) {
        if (strcmp(name, site_names[i]) == 0) found = i;
    }
    if (found < 0) {
        snprintf(error, error_size, "unknown fault site '%s'", name ? name : "");
        return -1;
    }
    *site = (enum fault_site)found;
    memset(rule, 0, sizeof(*rule));
    for (char *field = strtok_r(NULL, ":", &saved); field != NULL;
         field = strtok_r(NULL, ":", &saved)) {
        char *end = NULL;
        bool valid = true;
        if (strncmp(field, "nth=", 4) == 0) {
            rule->nth = strtoull(field + 4, &end, 10);
            valid = rule->nth != 0;
        } else if (strncmp(field, "probability=", 12) == 0) {
            double probability = strtod(field + 12, &end);
            valid = probability >= 0 && probability <= 1;
            rule->probability_ppm = (uint32_t)(probability * 1000000.0 + 0.5);
        } else if (strcmp(field, "persistent") == 0) {
            rule->persistent = true;
        } else if (strncmp(field, "error=", 6) == 0) {
            rule->error = 0;
            for (size_t i = 0; i < sizeof(error_names) / sizeof(error_names[0]); i++) {
                if (strcmp(field + 6, error_names[i].name) == 0) rule->error = error_names[i].value;
            }
            valid = rule->error != 0;
        } else {
            valid = false;
        }
        if (!valid || (end != NULL && *end != '\0')) {
            snprintf(error, error_size, "bad fault rule field '%s'", field);
            return -1;
        }
    }
    return 0;
}

int fault_parse(const char *text, char *error, size_t error_size) {
    if (strcmp(text, "reset") == 0) {
        fault_reset();
        return 0;
    }
    char copy[1024];
    if (strlen(text) >= sizeof(copy)) {
        snprintf(error, error_size, "fault rules too long");
        return -1;
    }
    snprintf(copy, sizeof(copy), "%s", text);
    enum fault_site parsed_sites[FAULT_SITE_COUNT * 4];
    struct fault_rule parsed_rules[FAULT_SITE_COUNT * 4];
    size_t count = 0;
    char *saved = NULL;
    for (char *rule = strtok_r(copy, ",", &saved); rule != NULL;
         rule = strtok_r(NULL, ",", &saved)) {
        if (count == sizeof(parsed_rules) / sizeof(parsed_rules[0])) {
            snprintf(error, error_size, "too many fault rules");
            return -1;
        }
        if (parse_rule(rule, &parsed_sites[count], &parsed_rules[count], error, error_size) != 0) {
            return -1;
        }
        count++;
    }
    for (size_t i = 0; i < count; i++)
        fault_configure(parsed_sites[i], &parsed_rules[i]);
    return 0;
}

/* The allocation site: with -Wl,--wrap=malloc (and calloc, realloc, aligned_alloc) the
 * fault build sends strata's own allocations through these. */
void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *memory, size_t size);
void *__real_aligned_alloc(size_t alignment, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *memory, size_t size);
void *__wrap_aligned_alloc(size_t alignment, size_t size);

void *__wrap_malloc(size_t size) {
    if (fault_fails(FAULT_alloc)) return NULL;
    return __real_malloc(size);
}

void *__wrap_calloc(size_t count, size_t size) {
    if (fault_fails(FAULT_alloc)) return NULL;
    return __real_calloc(count, size);
}

void *__wrap_realloc(void *memory, size_t size) {
    if (size > 0 && fault_fails(FAULT_alloc)) return NULL;
    return __real_realloc(memory, size);
}

void *__wrap_aligned_alloc(size_t alignment, size_t size) {
    if (fault_fails(FAULT_alloc)) return NULL;
    return __real_aligned_alloc(alignment, size);
}

#endif
