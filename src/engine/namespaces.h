/* Namespaces: the tenants (or models) of the native protocol, each a store of its own.
 *
 * "default" is the store the Redis protocol and HTTP serve, with --memory less the
 * other namespaces' quotas as its budget. Every other namespace is declared with
 * --namespaces NAME=QUOTA,...; its quota is its own store's DRAM budget, so one tenant
 * never evicts another's data, and a write that cannot fit once the namespace's own
 * evictable data is gone gets STRATA_ERR_QUOTA (docs/kv-cache.md). The table is built
 * at start-up and never changes afterwards, so lookups take no lock. */
#ifndef STRATA_ENGINE_NAMESPACES_H
#define STRATA_ENGINE_NAMESPACES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

#define NAMESPACE_MAX_COUNT       64
#define NAMESPACE_MAX_NAME_LENGTH 63

struct namespace {
    char name[NAMESPACE_MAX_NAME_LENGTH + 1];
    size_t name_length;
    struct store *store; /* not owned (the server creates and destroys the stores) */
    uint64_t quota;      /* bytes: the store's budget */
    bool is_default;
    /* Native-protocol counters, for INFO and /metrics. */
    _Atomic uint64_t puts;
    _Atomic uint64_t gets;
    _Atomic uint64_t hits;
    _Atomic uint64_t misses;
    _Atomic uint64_t quota_errors;
    _Atomic uint64_t fingerprint_mismatches;
    _Atomic uint64_t checksum_failures;
};

/* How many counters a namespace has (puts to checksum_failures, in order). */
#define NAMESPACE_COUNTER_COUNT 7

struct namespace_table {
    int count;
    struct namespace list[NAMESPACE_MAX_COUNT]; /* the first count are in use; list[0] is default */
};

/* One declared namespace, as parsed from --namespaces. */
struct namespace_spec {
    char name[NAMESPACE_MAX_NAME_LENGTH + 1];
    uint64_t quota;
};

/* Parses TEXT ("tenant-a=4gb,tenant-b=512mb"; empty: none) into SPECS (room for
 * NAMESPACE_MAX_COUNT - 1). Names are 1 to 63 bytes of [A-Za-z0-9._-], unique, not
 * "default"; quotas are sizes of at least 1mb. Returns the count, or -1 with a reason
 * in ERROR. */
int namespace_specs_parse(const char *text, struct namespace_spec *specs, char *error,
                          size_t error_size);

/* Adds a namespace served by STORE (not owned) to TABLE. */
void namespace_table_add(struct namespace_table *table, const char *name, struct store *store,
                         uint64_t quota, bool is_default);

/* The namespace called NAME (LENGTH bytes), or NULL. */
struct namespace *namespace_find(struct namespace_table *table, const void *name, size_t length);

#endif
