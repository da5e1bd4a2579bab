/* Eviction groups (store_config.evict_together): keys that differ only in one of a few
 * configured suffixes, such as LMCache's "...kv_bytes" and "...metadata" of one chunk,
 * are one unit for eviction. Evicting one member removes the others, and a member
 * written after its group was evicted, while the group was still being written (its
 * first half went before the second arrived), is evicted on arrival: a reader finds a
 * whole group or none of it, except for a write racing its own group's eviction.
 * docs/engine.md, "Eviction groups". */
#include "engine/store_internal.h"

#include <stdlib.h>
#include <string.h>

/* How long an evicted group's missing members are awaited (100 ms ticks). */
#define ORPHAN_TICKS 100
#define TICK_MS      100
#define TICK_MASK    0xFFFFFFu

bool groups_parse(struct store *store, const char *list, char *error, size_t error_size) {
    if (list == NULL || list[0] == '\0') return true;
    const char *start = list;
    for (;;) {
        const char *end = strchr(start, ',');
        size_t length = end != NULL ? (size_t)(end - start) : strlen(start);
        if (length == 0 || length > 256) {
            snprintf(error, error_size, "evict-together: a suffix must be 1 to 256 bytes");
            return false;
        }
        if (store->groups.count == EVICTION_GROUP_SUFFIXES) {
            snprintf(error, error_size, "evict-together: at most %d suffixes",
                     EVICTION_GROUP_SUFFIXES);
            return false;
        }
        for (unsigned i = 0; i < store->groups.count; i++) {
            if (store->groups.lengths[i] == length &&
                memcmp(store->groups.suffixes[i], start, length) == 0) {
                snprintf(error, error_size, "evict-together: a suffix is named twice");
                return false;
            }
        }
        char *suffix = strndup(start, length);
        if (suffix == NULL) {
            snprintf(error, error_size, "out of memory");
            return false;
        }
        store->groups.suffixes[store->groups.count] = suffix;
        store->groups.lengths[store->groups.count++] = length;
        if (end == NULL) break;
        start = end + 1;
    }
    if (store->groups.count < 2) {
        snprintf(error, error_size, "evict-together: name at least two suffixes");
        return false;
    }
    store->groups.orphans = calloc(EVICTION_GROUP_ORPHAN_SLOTS, sizeof(*store->groups.orphans));
    if (store->groups.orphans == NULL) {
        snprintf(error, error_size, "out of memory");
        return false;
    }
    return true;
}

void groups_free(struct store *store) {
    for (unsigned i = 0; i < store->groups.count; i++) {
        free(store->groups.suffixes[i]);
        store->groups.suffixes[i] = NULL;
    }
    store->groups.count = 0;
    free(store->groups.orphans);
    store->groups.orphans = NULL;
}

/* The index of the longest suffix KEY ends with (setting *STEM to the length before
 * it), or -1 when KEY is in no group. */
static int group_member(const struct store *store, const unsigned char *key, size_t key_length,
                        size_t *stem) {
    const struct eviction_groups *groups = &store->groups;
    int member = -1;
    for (unsigned i = 0; i < groups->count; i++) {
        size_t suffix_length = groups->lengths[i];
        if (key_length >= suffix_length &&
            memcmp(key + key_length - suffix_length, groups->suffixes[i], suffix_length) == 0 &&
            (member < 0 || suffix_length > groups->lengths[member])) {
            member = (int)i;
        }
    }
    if (member >= 0) *stem = key_length - groups->lengths[member];
    return member;
}

/* Removes KEY if it is present and may be evicted (not durable, not pinned), counted as
 * evicted. Returns whether KEY was present (removed or kept). Takes KEY's shard lock:
 * call with none held. */
bool groups_evict_key(struct store *store, const void *key, size_t key_length) {
    uint64_t hash = hash_key(store, key, key_length);
    struct key_access access;
    struct item *existing = index_open_key(store, hash, key, key_length, &access);
    if (existing != NULL &&
        (node_is_stub(existing) ||
         !s3fifo_is_protected(access.shard, existing, key_access_now(&access)))) {
        index_bury(access.shard, access.slot, existing, &access.graveyard);
        SHARD_COUNT(access.shard, evicted, 1);
    }
    index_close_key(&access);
    return existing != NULL;
}

/* Calls VISIT(STORE, partner key, its length, its member index, CONTEXT) for each other
 * member of the group of KEY (a member with index MEMBER and a stem of STEM bytes);
 * stops at the first call that returns true and returns true then. */
static bool for_each_partner(struct store *store, const unsigned char *key, size_t stem, int member,
                             void *context,
                             bool (*visit)(struct store *, const unsigned char *, size_t, unsigned,
                                           void *)) {
    const struct eviction_groups *groups = &store->groups;
    for (unsigned j = 0; j < groups->count; j++) {
        if ((int)j == member) continue;
        size_t partner_length = stem + groups->lengths[j];
        if (partner_length > STORE_MAX_KEY_LENGTH) continue;
        unsigned char small[512];
        unsigned char *partner = partner_length <= sizeof(small) ? small : malloc(partner_length);
        if (partner == NULL) continue; /* out of memory: as if absent */
        memcpy(partner, key, stem);
        memcpy(partner + stem, groups->suffixes[j], groups->lengths[j]);
        bool stop = visit(store, partner, partner_length, j, context);
        if (partner != small) free(partner);
        if (stop) return true;
    }
    return false;
}

static bool partner_exists(struct store *store, const unsigned char *key, size_t key_length,
                           unsigned member, void *context) {
    (void)member;
    (void)context;
    return store_exists(store, key, key_length);
}

/* Whether another member of KEY's eviction group is present (KEY then follows it). Takes
 * shard locks: call with none held. */
bool groups_partner_present(struct store *store, const void *key, size_t key_length) {
    size_t stem;
    int member = group_member(store, key, key_length, &stem);
    return member >= 0 && for_each_partner(store, key, stem, member, NULL, partner_exists);
}

static uint32_t ticks_now(void) {
    return (uint32_t)(clock_monotonic_ms() / TICK_MS) & TICK_MASK;
}

/* The fingerprint of a stem in an orphan slot: never 0, so an empty slot matches none. */
static uint32_t stem_fingerprint(uint64_t stem_hash) {
    return (uint32_t)stem_hash | 1;
}

/* Evicts one partner (see groups_evict_key()); notes in *CONTEXT (unsigned: a member mask)
 * that it had been written. */
static bool evict_partner(struct store *store, const unsigned char *key, size_t key_length,
                          unsigned member, void *context) {
    if (groups_evict_key(store, key, key_length)) *(unsigned *)context |= 1u << member;
    return false;
}

/* Whether ENTRY is an orphan slot's live entry (not free, not too old). */
static bool orphan_live(uint64_t entry) {
    return entry != 0 && ((ticks_now() - (uint32_t)entry) & TICK_MASK) <= ORPHAN_TICKS;
}

/* The slot of the orphan set of STEM_HASH holding its entry, or NULL. */
static _Atomic uint64_t *orphan_find(struct store *store, uint64_t stem_hash) {
    _Atomic uint64_t *set =
        store->groups.orphans + ((stem_hash >> 32) % EVICTION_GROUP_ORPHAN_SLOTS &
                                 ~(uint64_t)(EVICTION_GROUP_ORPHAN_WAYS - 1));
    for (unsigned way = 0; way < EVICTION_GROUP_ORPHAN_WAYS; way++) {
        uint64_t entry = atomic_load_explicit(&set[way], memory_order_relaxed);
        if ((uint32_t)(entry >> 32) == stem_fingerprint(stem_hash) && orphan_live(entry)) {
            return &set[way];
        }
    }
    return NULL;
}

/* A slot for a new entry of STEM_HASH: its own, a free or stale one, else the oldest. */
static _Atomic uint64_t *orphan_place(struct store *store, uint64_t stem_hash) {
    _Atomic uint64_t *own = orphan_find(store, stem_hash);
    if (own != NULL) return own;
    _Atomic uint64_t *set =
        store->groups.orphans + ((stem_hash >> 32) % EVICTION_GROUP_ORPHAN_SLOTS &
                                 ~(uint64_t)(EVICTION_GROUP_ORPHAN_WAYS - 1));
    _Atomic uint64_t *oldest = &set[0];
    uint32_t oldest_age = 0;
    for (unsigned way = 0; way < EVICTION_GROUP_ORPHAN_WAYS; way++) {
        uint64_t entry = atomic_load_explicit(&set[way], memory_order_relaxed);
        if (!orphan_live(entry)) return &set[way];
        uint32_t age = (ticks_now() - (uint32_t)entry) & TICK_MASK;
        if (age >= oldest_age) {
            oldest_age = age;
            oldest = &set[way];
        }
    }
    return oldest;
}

/* Adds the members WRITTEN to the note of STEM_HASH (making one, or renewing a stale
 * one, in the slot orphan_place() gives). Returns the note as it now is. */
static uint64_t orphan_note(struct store *store, uint64_t stem_hash, unsigned written) {
    _Atomic uint64_t *slot = orphan_place(store, stem_hash);
    uint64_t entry = atomic_load_explicit(slot, memory_order_relaxed);
    for (;;) {
        unsigned known =
            (uint32_t)(entry >> 32) == stem_fingerprint(stem_hash) && orphan_live(entry)
                ? (unsigned)(entry >> 24) & 0xFFu
                : 0;
        uint64_t next = (uint64_t)stem_fingerprint(stem_hash) << 32 |
                        (uint64_t)(known | written) << 24 | ticks_now();
        if (atomic_compare_exchange_weak_explicit(slot, &entry, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            return next;
        }
    }
}

void groups_evict_partners(struct store *store, const struct item *victim) {
    ASSERT_NO_SHARD_LOCK();
    size_t stem;
    int member = group_member(store, victim->bytes, victim->key_length, &stem);
    if (member < 0) return;
    /* Noted before the partners are looked for: a partner linked after its look is then
     * found by its writer's own check (groups_write_is_orphan() after linking). Notes
     * merge: two members of one group evicted at once both count as written. */
    uint64_t stem_hash = hash_key(store, victim->bytes, stem);
    orphan_note(store, stem_hash, 1u << member);
    unsigned written = 1u << member;
    for_each_partner(store, victim->bytes, stem, member, &written, evict_partner);
    /* Now what was written is known. When every member was, nothing is to come. */
    uint64_t entry = orphan_note(store, stem_hash, written);
    if ((((unsigned)(entry >> 24) & 0xFFu) == (1u << store->groups.count) - 1)) {
        _Atomic uint64_t *slot = orphan_find(store, stem_hash);
        if (slot != NULL) {
            atomic_compare_exchange_strong_explicit(slot, &entry, 0, memory_order_relaxed,
                                                    memory_order_relaxed);
        }
    }
}

/* Whether KEY, just written, completes a group evicted while it was being written (see
 * groups_evict_partners()): then the caller evicts it again, as evicted on arrival. A
 * member written again that was already written before the eviction (a new put of the
 * group) forgets the eviction instead. Any thread, no lock. */
bool groups_write_is_orphan(struct store *store, const void *key, size_t key_length) {
    size_t stem;
    int member = group_member(store, key, key_length, &stem);
    if (member < 0) return false;
    uint64_t stem_hash = hash_key(store, key, stem);
    _Atomic uint64_t *slot = orphan_find(store, stem_hash);
    if (slot == NULL) return false;
    uint64_t entry = atomic_load_explicit(slot, memory_order_relaxed);
    for (;;) {
        if ((uint32_t)(entry >> 32) != stem_fingerprint(stem_hash) || !orphan_live(entry)) {
            return false;
        }
        unsigned written = (unsigned)(entry >> 24) & 0xFFu;
        uint64_t next;
        bool orphan = !(written & (1u << member));
        if (orphan) {
            written |= 1u << member;
            next = written == (1u << store->groups.count) - 1
                       ? 0
                       : (entry & ~(0xFFull << 24)) | (uint64_t)written << 24;
        } else {
            next = 0; /* a new put of the group: nothing to wait for */
        }
        if (atomic_compare_exchange_weak_explicit(slot, &entry, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            return orphan;
        }
    }
}
