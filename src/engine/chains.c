/* The chain table: per store, what eviction must know about KV-cache chains and pins.
 *
 * A key written with a parent (store_write.parent) is a link of a chain. Each key that
 * takes part has an state, keyed by the key's 64-bit hash: the parent's hash, how many
 * present keys name it as their parent, a pin lease, and read holds (a command waiting
 * to run on a key just brought back from flash). Eviction skips a key that has
 * children or a live pin, so chains lose their tail first and never get a hole in the
 * middle (docs/kv-cache.md). An state goes when its key leaves the index (not when it
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

static uint64_t state_hash(uint64_t hash) {
    return hash != 0 ? hash : 1; /* 0 marks an empty slot */
}

/* The slot of HASH, or the empty slot where it would go. TABLE locked. */
static struct chain_state *find_slot(struct chain_table *table, uint64_t hash) {
    ASSERT_TABLE_LOCKED(table);
    size_t mask = table->capacity - 1;
    size_t index = (size_t)(hash ^ (hash >> 29)) & mask;
    while (table->states[index].hash != 0 && table->states[index].hash != hash) {
        index = (index + 1) & mask;
    }
    return &table->states[index];
}

/* Moves TABLE's states into ENTRIES (CAPACITY slots, FOOTPRINT bytes charged) and
 * frees the old array. TABLE locked. */
static void rehash(struct store *store, struct chain_table *table, struct chain_state *states,
                   size_t capacity, uint64_t footprint) {
    ASSERT_TABLE_LOCKED(table);
    struct chain_state *old = table->states;
    size_t old_capacity = table->capacity;
    table->states = states;
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

/* Allocates a zeroed array of CAPACITY states counted in the budget; MAY_EVICT: no
 * lock is held, so the budget may evict to make room. Returns NULL if refused. */
static struct chain_state *allocate_states(struct store *store, size_t capacity, bool may_evict) {
    enum store_status status;
    return budget_allocate(store, capacity * sizeof(struct chain_state), true, may_evict, &status);
}

/* The capacity after the next growth. */
static size_t next_capacity(const struct chain_table *table) {
    return table->capacity ? table->capacity * 2 : CHAIN_INITIAL_CAPACITY;
}

/* Doubles the table without evicting (a shard lock may be held). TABLE locked. */
static bool grow(struct store *store, struct chain_table *table) {
    ASSERT_TABLE_LOCKED(table);
    size_t capacity = next_capacity(table);
    struct chain_state *states = allocate_states(store, capacity, false);
    if (states == NULL) return false;
    rehash(store, table, states, capacity, memory_footprint(states));
    return true;
}

/* Whether one more state fits under the load limit (3/4). */
static bool has_room(const struct chain_table *table) {
    return table->capacity != 0 && (table->count + 1) * 4 <= table->capacity * 3;
}

/* Returns HASH's state, creating an empty one if needed (growing under the budget
 * without evicting). NULL if there is no room. TABLE locked. */
static struct chain_state *get_or_create(struct store *store, struct chain_table *table,
                                         uint64_t hash) {
    ASSERT_TABLE_LOCKED(table);
    if (table->capacity != 0) {
        struct chain_state *slot = find_slot(table, hash);
        if (slot->hash != 0) return slot;
    }
    if (!has_room(table) && !grow(store, table)) return NULL;
    struct chain_state *slot = find_slot(table, hash);
    *slot = (struct chain_state){.hash = hash};
    table->count++;
    atomic_store_explicit(&table->live, table->count, memory_order_relaxed);
    return slot;
}

static struct chain_state *find(struct chain_table *table, uint64_t hash) {
    if (table->capacity == 0) return NULL;
    struct chain_state *slot = find_slot(table, hash);
    return slot->hash != 0 ? slot : NULL;
}

/* Removes the state at SLOT, shifting later states of its probe run back. */
static void remove_slot(struct chain_table *table, struct chain_state *slot) {
    ASSERT_TABLE_LOCKED(table);
    size_t mask = table->capacity - 1;
    size_t hole = (size_t)(slot - table->states);
    size_t index = hole;
    for (;;) {
        index = (index + 1) & mask;
        struct chain_state *next = &table->states[index];
        if (next->hash == 0) break;
        size_t home = (size_t)(next->hash ^ (next->hash >> 29)) & mask;
        /* NEXT may move into the hole if its home is not in (hole, index]. */
        bool between =
            hole <= index ? (home > hole && home <= index) : (home > hole || home <= index);
        if (!between) {
            table->states[hole] = *next;
            hole = index;
        }
    }
    table->states[hole].hash = 0;
    table->count--;
    atomic_store_explicit(&table->live, table->count, memory_order_relaxed);
}

/* Drops STATE if it no longer says anything. TABLE locked. */
static void drop_if_empty(struct chain_table *table, struct chain_state *state, int64_t now) {
    ASSERT_TABLE_LOCKED(table);
    if (state->parent == 0 && state->children == 0 && state->holds == 0 &&
        state->pinned_until <= now) {
        remove_slot(table, state);
    }
}

void chain_table_init(struct chain_table *table) {
    pthread_mutex_init(&table->lock, NULL);
}

void chain_table_free(struct store *store, struct chain_table *table) {
    if (table->states != NULL) {
        free(table->states);
        budget_uncharge(store, table->footprint);
    }
    table->states = NULL;
    table->capacity = table->count = 0;
    pthread_mutex_destroy(&table->lock);
}

bool chain_reserve(struct store *store) {
    ASSERT_NO_SHARD_LOCK(); /* growing the table may evict */
    struct chain_table *table = &store->chains;
    table_lock(table);
    bool ok = true;
    /* Two states per link at most (the key and its parent). */
    while (table->capacity == 0 || (table->count + 2) * 4 > table->capacity * 3) {
        size_t capacity = next_capacity(table);
        /* Allocating may evict, which takes shard locks and this mutex: not while held. */
        table_unlock(table);
        struct chain_state *states = allocate_states(store, capacity, true);
        table_lock(table);
        if (states == NULL) {
            ok = false;
            break;
        }
        if (capacity > table->capacity) {
            rehash(store, table, states, capacity, memory_footprint(states));
        } else {
            budget_uncharge(store, memory_footprint(states));
            free(states);
        }
    }
    table_unlock(table);
    return ok;
}

bool chain_link(struct store *store, uint64_t key_hash, uint64_t parent_hash) {
    struct chain_table *table = &store->chains;
    key_hash = state_hash(key_hash);
    parent_hash = state_hash(parent_hash);
    if (key_hash == parent_hash) return true; /* a key cannot be its own parent */
    table_lock(table);
    bool ok = false;
    struct chain_state *state = get_or_create(store, table, key_hash);
    if (state != NULL && state->parent == parent_hash) {
        ok = true;
    } else if (state != NULL) {
        uint64_t old_parent = state->parent;
        struct chain_state *parent = get_or_create(store, table, parent_hash);
        /* get_or_create may have moved states: find the key's again. */
        state = find(table, key_hash);
        if (parent != NULL && state != NULL) {
            parent->children++;
            state->parent = parent_hash;
            ok = true;
            if (old_parent != 0) {
                struct chain_state *old = find(table, old_parent);
                if (old != NULL && old->children > 0) {
                    old->children--;
                    drop_if_empty(table, old, clock_realtime_ms());
                }
            }
        } else if (state != NULL) {
            drop_if_empty(table, state, clock_realtime_ms());
        }
    }
    table_unlock(table);
    if (!ok) atomic_fetch_add_explicit(&table->link_failures, 1, memory_order_relaxed);
    return ok;
}

/* Adds one to (HOLD) or takes one from the counter at byte OFFSET of KEY_HASH's state
 * (children or holds), creating the state to add and dropping it once nothing keeps it.
 * Returns false when an state to add to cannot be made (no memory). */
static bool count_on_state(struct store *store, uint64_t key_hash, bool hold, size_t offset) {
    struct chain_table *table = &store->chains;
    key_hash = state_hash(key_hash);
    table_lock(table);
    bool ok = true;
    if (hold) {
        struct chain_state *state = get_or_create(store, table, key_hash);
        if (state != NULL) {
            (*(uint32_t *)((char *)state + offset))++;
        } else {
            ok = false;
        }
    } else {
        struct chain_state *state = find(table, key_hash);
        uint32_t *counter = state != NULL ? (uint32_t *)((char *)state + offset) : NULL;
        if (counter != NULL && *counter > 0) {
            (*counter)--;
            drop_if_empty(table, state, clock_realtime_ms());
        }
    }
    table_unlock(table);
    return ok;
}

bool chain_hold(struct store *store, uint64_t key_hash, bool hold) {
    return count_on_state(store, key_hash, hold, offsetof(struct chain_state, children));
}

bool chain_read_hold(struct store *store, uint64_t key_hash, bool hold) {
    return count_on_state(store, key_hash, hold, offsetof(struct chain_state, holds));
}

void chain_forget(struct store *store, uint64_t key_hash) {
    struct chain_table *table = &store->chains;
    key_hash = state_hash(key_hash);
    table_lock(table);
    struct chain_state *state = find(table, key_hash);
    if (state != NULL) {
        uint64_t parent_hash = state->parent;
        state->parent = 0;
        state->pinned_until = 0;
        if (state->children == 0 && state->holds == 0) remove_slot(table, state);
        if (parent_hash != 0) {
            struct chain_state *parent = find(table, parent_hash);
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
    struct chain_state *state = find(table, state_hash(key_hash));
    int protection = 0;
    if (state != NULL) {
        if (state->pinned_until > now) protection |= CHAIN_PINNED;
        if (state->children > 0) protection |= CHAIN_HAS_CHILDREN;
        if (state->holds > 0) protection |= CHAIN_HELD;
    }
    table_unlock(table);
    return protection;
}

bool chain_pin(struct store *store, uint64_t key_hash, int64_t until_ms) {
    struct chain_table *table = &store->chains;
    key_hash = state_hash(key_hash);
    table_lock(table);
    bool ok = true;
    if (until_ms == 0) {
        struct chain_state *state = find(table, key_hash);
        if (state != NULL) {
            state->pinned_until = 0;
            drop_if_empty(table, state, 0);
        }
    } else {
        struct chain_state *state = get_or_create(store, table, key_hash);
        if (state == NULL) {
            ok = false;
        } else if (state->pinned_until < until_ms) {
            state->pinned_until = until_ms;
        }
    }
    table_unlock(table);
    return ok;
}

void chain_get_stats(struct store *store, uint64_t *states, uint64_t *link_failures) {
    struct chain_table *table = &store->chains;
    *states = atomic_load_explicit(&table->live, memory_order_relaxed);
    *link_failures = atomic_load_explicit(&table->link_failures, memory_order_relaxed);
}
