/* The chain table: per store, what eviction must know about KV-cache chains and pins.
 *
 * A key written with a parent (store_write.parent) is a link of a chain. Each key that
 * takes part has an entry, keyed by the key's 64-bit hash: the parent's hash, how many
 * present keys name it as their parent, a pin lease, and read holds (a command waiting
 * to run on a key just brought back from flash). Eviction skips a key that has
 * children or a live pin, so chains lose their tail first and never get a hole in the
 * middle (docs/kv-cache.md). An entry goes when its key leaves the index (not when it
 * is overwritten or moves between tiers) and it has no children left.
 *
 * The table is an open-addressing hash table (linear probing, backward-shift deletion)
 * under one mutex per store; it is only touched for chained or pinned keys, and only
 * while it is not empty. Lock order: a shard lock may be held while taking the table's
 * mutex, never the other way round. Its memory counts in the store's budget. */
#include "base/log.h"
#include "engine/store_internal.h"

#include <stddef.h>
#include <stdlib.h>

#define CHAIN_INITIAL_CAPACITY 64

/* The table's mutex, with its owner tracked in the checking builds (a shard lock may be
 * held while taking it, never the other way round). */
static void table_lock(struct chain_table *table) {
    pthread_mutex_lock(&table->lock);
    check_acquired(&table->owner);
    if (STRATA_CHECKING) chain_locks_held++;
}

static void table_unlock(struct chain_table *table) {
    check_releasing(&table->owner);
    if (STRATA_CHECKING) chain_locks_held--;
    pthread_mutex_unlock(&table->lock);
}

#define ASSERT_TABLE_LOCKED(table) STRATA_ASSERT(check_held(&(table)->owner))

static uint64_t entry_hash(uint64_t hash) {
    return hash != 0 ? hash : 1; /* 0 marks an empty slot */
}

/* The slot of HASH, or the empty slot where it would go. TABLE locked. */
static struct chain_entry *find_slot(struct chain_table *table, uint64_t hash) {
    ASSERT_TABLE_LOCKED(table);
    size_t mask = table->capacity - 1;
    size_t index = (size_t)(hash ^ (hash >> 29)) & mask;
    while (table->entries[index].hash != 0 && table->entries[index].hash != hash) {
        index = (index + 1) & mask;
    }
    return &table->entries[index];
}

/* Moves TABLE's entries into ENTRIES (CAPACITY slots, FOOTPRINT bytes charged) and
 * frees the old array. TABLE locked. */
static void rehash(struct store *store, struct chain_table *table, struct chain_entry *entries,
                   size_t capacity, uint64_t footprint) {
    ASSERT_TABLE_LOCKED(table);
    struct chain_entry *old = table->entries;
    size_t old_capacity = table->capacity;
    table->entries = entries;
    table->capacity = capacity;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].hash != 0) *find_slot(table, old[i].hash) = old[i];
    }
    if (old != NULL) {
        budget_uncharge(store, table->footprint);
        free(old);
    }
    table->footprint = footprint;
}

/* Allocates a zeroed array of CAPACITY entries counted in the budget; MAY_EVICT: no
 * lock is held, so the budget may evict to make room. Returns NULL if refused. */
static struct chain_entry *allocate_entries(struct store *store, size_t capacity, bool may_evict) {
    enum store_status status;
    return budget_allocate(store, capacity * sizeof(struct chain_entry), true, may_evict, &status);
}

/* The capacity after the next growth. */
static size_t next_capacity(const struct chain_table *table) {
    return table->capacity ? table->capacity * 2 : CHAIN_INITIAL_CAPACITY;
}

/* Doubles the table without evicting (a shard lock may be held). TABLE locked. */
static bool grow(struct store *store, struct chain_table *table) {
    ASSERT_TABLE_LOCKED(table);
    size_t capacity = next_capacity(table);
    struct chain_entry *entries = allocate_entries(store, capacity, false);
    if (entries == NULL) return false;
    rehash(store, table, entries, capacity, memory_footprint(entries));
    return true;
}

/* Whether one more entry fits under the load limit (3/4). */
static bool has_room(const struct chain_table *table) {
    return table->capacity != 0 && (table->count + 1) * 4 <= table->capacity * 3;
}

/* Returns HASH's entry, creating an empty one if needed (growing under the budget
 * without evicting). NULL if there is no room. TABLE locked. */
static struct chain_entry *get_or_create(struct store *store, struct chain_table *table,
                                         uint64_t hash) {
    ASSERT_TABLE_LOCKED(table);
    if (table->capacity != 0) {
        struct chain_entry *slot = find_slot(table, hash);
        if (slot->hash != 0) return slot;
    }
    if (!has_room(table) && !grow(store, table)) return NULL;
    struct chain_entry *slot = find_slot(table, hash);
    *slot = (struct chain_entry){.hash = hash};
    table->count++;
    atomic_store_explicit(&table->live, table->count, memory_order_relaxed);
    return slot;
}

static struct chain_entry *find(struct chain_table *table, uint64_t hash) {
    if (table->capacity == 0) return NULL;
    struct chain_entry *slot = find_slot(table, hash);
    return slot->hash != 0 ? slot : NULL;
}

/* Removes the entry at SLOT, shifting later entries of its probe run back. */
static void remove_slot(struct chain_table *table, struct chain_entry *slot) {
    ASSERT_TABLE_LOCKED(table);
    size_t mask = table->capacity - 1;
    size_t hole = (size_t)(slot - table->entries);
    size_t index = hole;
    for (;;) {
        index = (index + 1) & mask;
        struct chain_entry *next = &table->entries[index];
        if (next->hash == 0) break;
        size_t home = (size_t)(next->hash ^ (next->hash >> 29)) & mask;
        /* NEXT may move into the hole if its home is not in (hole, index]. */
        bool between =
            hole <= index ? (home > hole && home <= index) : (home > hole || home <= index);
        if (!between) {
            table->entries[hole] = *next;
            hole = index;
        }
    }
    table->entries[hole].hash = 0;
    table->count--;
    atomic_store_explicit(&table->live, table->count, memory_order_relaxed);
}

/* Drops ENTRY if it no longer says anything. TABLE locked. */
static void drop_if_empty(struct chain_table *table, struct chain_entry *entry, int64_t now) {
    ASSERT_TABLE_LOCKED(table);
    if (entry->parent == 0 && entry->children == 0 && entry->holds == 0 &&
        entry->pinned_until <= now) {
        remove_slot(table, entry);
    }
}

void chain_table_init(struct chain_table *table) {
    pthread_mutex_init(&table->lock, NULL);
}

void chain_table_free(struct store *store, struct chain_table *table) {
    if (table->entries != NULL) {
        free(table->entries);
        budget_uncharge(store, table->footprint);
    }
    table->entries = NULL;
    table->capacity = table->count = 0;
    pthread_mutex_destroy(&table->lock);
}

bool chain_reserve(struct store *store) {
    ASSERT_NO_SHARD_LOCK(); /* growing the table may evict */
    struct chain_table *table = &store->chains;
    table_lock(table);
    bool ok = true;
    /* Two entries per link at most (the key and its parent). */
    while (table->capacity == 0 || (table->count + 2) * 4 > table->capacity * 3) {
        size_t capacity = next_capacity(table);
        /* Allocating may evict, which takes shard locks and this mutex: not while held. */
        table_unlock(table);
        struct chain_entry *entries = allocate_entries(store, capacity, true);
        table_lock(table);
        if (entries == NULL) {
            ok = false;
            break;
        }
        if (capacity > table->capacity) {
            rehash(store, table, entries, capacity, memory_footprint(entries));
        } else {
            budget_uncharge(store, memory_footprint(entries));
            free(entries);
        }
    }
    table_unlock(table);
    return ok;
}

bool chain_link(struct store *store, uint64_t key_hash, uint64_t parent_hash) {
    struct chain_table *table = &store->chains;
    key_hash = entry_hash(key_hash);
    parent_hash = entry_hash(parent_hash);
    if (key_hash == parent_hash) return true; /* a key cannot be its own parent */
    table_lock(table);
    bool ok = false;
    struct chain_entry *entry = get_or_create(store, table, key_hash);
    if (entry != NULL && entry->parent == parent_hash) {
        ok = true;
    } else if (entry != NULL) {
        uint64_t old_parent = entry->parent;
        struct chain_entry *parent = get_or_create(store, table, parent_hash);
        /* get_or_create may have moved entries: find the key's again. */
        entry = find(table, key_hash);
        if (parent != NULL && entry != NULL) {
            parent->children++;
            entry->parent = parent_hash;
            ok = true;
            if (old_parent != 0) {
                struct chain_entry *old = find(table, old_parent);
                if (old != NULL && old->children > 0) {
                    old->children--;
                    drop_if_empty(table, old, clock_realtime_ms());
                }
            }
        } else if (entry != NULL) {
            drop_if_empty(table, entry, clock_realtime_ms());
        }
    }
    table_unlock(table);
    if (!ok) atomic_fetch_add_explicit(&table->link_failures, 1, memory_order_relaxed);
    return ok;
}

/* Adds one to (HOLD) or takes one from the counter at byte OFFSET of KEY_HASH's entry
 * (children or holds), creating the entry to add and dropping it once nothing keeps it.
 * Returns false when an entry to add to cannot be made (no memory). */
static bool count_on_entry(struct store *store, uint64_t key_hash, bool hold, size_t offset) {
    struct chain_table *table = &store->chains;
    key_hash = entry_hash(key_hash);
    table_lock(table);
    bool ok = true;
    if (hold) {
        struct chain_entry *entry = get_or_create(store, table, key_hash);
        if (entry != NULL) {
            (*(uint32_t *)((char *)entry + offset))++;
        } else {
            ok = false;
        }
    } else {
        struct chain_entry *entry = find(table, key_hash);
        uint32_t *counter = entry != NULL ? (uint32_t *)((char *)entry + offset) : NULL;
        if (counter != NULL && *counter > 0) {
            (*counter)--;
            drop_if_empty(table, entry, clock_realtime_ms());
        }
    }
    table_unlock(table);
    return ok;
}

bool chain_hold(struct store *store, uint64_t key_hash, bool hold) {
    return count_on_entry(store, key_hash, hold, offsetof(struct chain_entry, children));
}

bool chain_read_hold(struct store *store, uint64_t key_hash, bool hold) {
    return count_on_entry(store, key_hash, hold, offsetof(struct chain_entry, holds));
}

void chain_forget(struct store *store, uint64_t key_hash) {
    struct chain_table *table = &store->chains;
    key_hash = entry_hash(key_hash);
    table_lock(table);
    struct chain_entry *entry = find(table, key_hash);
    if (entry != NULL) {
        uint64_t parent_hash = entry->parent;
        entry->parent = 0;
        entry->pinned_until = 0;
        if (entry->children == 0 && entry->holds == 0) remove_slot(table, entry);
        if (parent_hash != 0) {
            struct chain_entry *parent = find(table, parent_hash);
            if (parent != NULL && parent->children > 0) {
                parent->children--;
                drop_if_empty(table, parent, 0);
            }
        }
    }
    table_unlock(table);
}

int chain_protection(struct store *store, uint64_t key_hash, int64_t now) {
    struct chain_table *table = &store->chains;
    table_lock(table);
    struct chain_entry *entry = find(table, entry_hash(key_hash));
    int protection = 0;
    if (entry != NULL) {
        if (entry->pinned_until > now) protection |= CHAIN_PINNED;
        if (entry->children > 0) protection |= CHAIN_HAS_CHILDREN;
        if (entry->holds > 0) protection |= CHAIN_HELD;
    }
    table_unlock(table);
    return protection;
}

bool chain_pin(struct store *store, uint64_t key_hash, int64_t until_ms) {
    struct chain_table *table = &store->chains;
    key_hash = entry_hash(key_hash);
    table_lock(table);
    bool ok = true;
    if (until_ms == 0) {
        struct chain_entry *entry = find(table, key_hash);
        if (entry != NULL) {
            entry->pinned_until = 0;
            drop_if_empty(table, entry, 0);
        }
    } else {
        struct chain_entry *entry = get_or_create(store, table, key_hash);
        if (entry == NULL) {
            ok = false;
        } else if (entry->pinned_until < until_ms) {
            entry->pinned_until = until_ms;
        }
    }
    table_unlock(table);
    return ok;
}

void chain_get_stats(struct store *store, uint64_t *entries, uint64_t *link_failures) {
    struct chain_table *table = &store->chains;
    *entries = atomic_load_explicit(&table->live, memory_order_relaxed);
    *link_failures = atomic_load_explicit(&table->link_failures, memory_order_relaxed);
}
