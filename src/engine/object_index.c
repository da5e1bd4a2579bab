/* The ordered key index of a bucket, and the id hash map (objects_internal.h).
 *
 * The index is a skip list. Listing is the hot read path: it seeks to a point (the
 * prefix, the marker, or just past a common prefix) and then walks keys in order, which
 * a skip list gives by following next[0] from the seek point, with no parent pointers or
 * stack as a tree iterator needs. Insert, delete and seek are O(log n) expected, with a
 * quarter of the nodes at each further level (1.33 links per key on average), and a
 * change touches only the links around one node, which keeps the code short enough to
 * trust. A B+ tree would be denser and more cache friendly for very large buckets; the
 * node layout (key bytes inline after the links) keeps the skip list's misses to about
 * one per level. Callers serialize changes (the store's write lock); reads may run in
 * parallel with each other. */
#include "engine/objects_internal.h"

#include <stdlib.h>
#include <string.h>

int key_compare(const void *left, size_t left_length, const void *right, size_t right_length) {
    size_t common = left_length < right_length ? left_length : right_length;
    int order = common ? memcmp(left, right, common) : 0;
    if (order != 0) return order;
    return (left_length > right_length) - (left_length < right_length);
}

uint32_t key_index_random_level(uint64_t *state) {
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    uint32_t level = 1;
    while (level < KEY_INDEX_MAX_LEVEL && (x & 3) == 0) {
        level++;
        x >>= 2;
    }
    return level;
}

size_t key_node_size(size_t key_length, uint32_t level) {
    return sizeof(struct object_key) + level * sizeof(struct object_key *) + key_length;
}

struct object_key *key_node_allocate(const void *key, size_t key_length, uint32_t level) {
    struct object_key *node = malloc(key_node_size(key_length, level));
    if (node == NULL) return NULL;
    node->versions = NULL;
    node->key = (unsigned char *)&node->next[level];
    node->key_length = (uint32_t)key_length;
    node->level = level;
    for (uint32_t i = 0; i < level; i++)
        node->next[i] = NULL;
    if (key_length > 0) memcpy(node->key, key, key_length);
    return node;
}

/* Whether NODE sorts before KEY (or at it, when !INCLUSIVE). */
static bool node_before(const struct object_key *node, const void *key, size_t key_length,
                        bool inclusive) {
    int order = key_compare(node->key, node->key_length, key, key_length);
    return inclusive ? order < 0 : order <= 0;
}

/* Fills UPDATE[level] with the link array (the head's or a node's next[]) whose entry at
 * LEVEL is the last link before KEY (see node_before()). Returns the node after it. */
static struct object_key *seek_links(const struct key_index *index, const void *key,
                                     size_t key_length, bool inclusive,
                                     struct object_key **update[KEY_INDEX_MAX_LEVEL]) {
    struct object_key **links = (struct object_key **)index->head;
    for (uint32_t level = index->level; level-- > 0;) {
        while (links[level] != NULL && node_before(links[level], key, key_length, inclusive)) {
            links = links[level]->next;
        }
        if (update != NULL) update[level] = links;
    }
    return links[0];
}

struct object_key *key_index_seek(const struct key_index *index, const void *key, size_t key_length,
                                  bool inclusive) {
    if (index->level == 0) return NULL;
    return seek_links(index, key, key_length, inclusive, NULL);
}

struct object_key *key_index_find(const struct key_index *index, const void *key,
                                  size_t key_length) {
    struct object_key *node = key_index_seek(index, key, key_length, true);
    if (node != NULL && key_compare(node->key, node->key_length, key, key_length) == 0) {
        return node;
    }
    return NULL;
}

struct object_key *key_index_first(const struct key_index *index) {
    return index->head[0];
}

void key_index_insert(struct key_index *index, struct object_key *node) {
    struct object_key **update[KEY_INDEX_MAX_LEVEL];
    if (index->level > 0) seek_links(index, node->key, node->key_length, true, update);
    for (uint32_t level = index->level; level < node->level; level++) {
        update[level] = index->head;
    }
    if (node->level > index->level) index->level = node->level;
    for (uint32_t level = 0; level < node->level; level++) {
        node->next[level] = update[level][level];
        update[level][level] = node;
    }
    index->count++;
}

void key_index_remove(struct key_index *index, struct object_key *node) {
    struct object_key **update[KEY_INDEX_MAX_LEVEL];
    seek_links(index, node->key, node->key_length, true, update);
    for (uint32_t level = 0; level < node->level && level < index->level; level++) {
        if (update[level][level] == node) update[level][level] = node->next[level];
    }
    while (index->level > 0 && index->head[index->level - 1] == NULL)
        index->level--;
    index->count--;
}

/* ---- the id map ---------------------------------------------------------------------- */

static size_t id_slot(const struct id_map *map, uint64_t key) {
    uint64_t mixed = key * 0x9E3779B97F4A7C15ull;
    mixed ^= mixed >> 32;
    return (size_t)mixed & (map->capacity - 1);
}

uintptr_t id_map_get(const struct id_map *map, uint64_t key) {
    if (map->capacity == 0) return 0;
    size_t mask = map->capacity - 1;
    for (size_t slot = id_slot(map, key); map->values[slot] != 0; slot = (slot + 1) & mask) {
        if (map->keys[slot] == key) return map->values[slot];
    }
    return 0;
}

/* Puts KEY in an empty slot or its own one; room is there. */
static void id_map_place(struct id_map *map, uint64_t key, uintptr_t value) {
    size_t mask = map->capacity - 1;
    size_t slot = id_slot(map, key);
    while (map->values[slot] != 0 && map->keys[slot] != key)
        slot = (slot + 1) & mask;
    if (map->values[slot] == 0) map->count++;
    map->keys[slot] = key;
    map->values[slot] = value;
}

bool id_map_reserve(struct id_map *map, size_t more) {
    size_t wanted = map->count + more;
    if (wanted * 2 <= map->capacity) return true;
    size_t capacity = map->capacity ? map->capacity : 16;
    while (capacity < wanted * 2)
        capacity *= 2;
    uint64_t *keys = malloc(capacity * sizeof(*keys));
    uintptr_t *values = calloc(capacity, sizeof(*values));
    if (keys == NULL || values == NULL) {
        free(keys);
        free(values);
        return false;
    }
    struct id_map grown = {.keys = keys, .values = values, .capacity = capacity};
    for (size_t i = 0; i < map->capacity; i++) {
        if (map->values[i] != 0) id_map_place(&grown, map->keys[i], map->values[i]);
    }
    free(map->keys);
    free(map->values);
    *map = grown;
    return true;
}

void id_map_set(struct id_map *map, uint64_t key, uintptr_t value) {
    id_map_place(map, key, value);
}

void id_map_remove(struct id_map *map, uint64_t key) {
    if (map->capacity == 0) return;
    size_t mask = map->capacity - 1;
    size_t hole = id_slot(map, key);
    while (map->values[hole] != 0 && map->keys[hole] != key)
        hole = (hole + 1) & mask;
    if (map->values[hole] == 0) return;
    map->values[hole] = 0;
    map->count--;
    /* Backward shift: move later entries of the run into the hole when their home slot
     * is not between the hole and where they are. */
    for (size_t slot = (hole + 1) & mask; map->values[slot] != 0; slot = (slot + 1) & mask) {
        size_t home = id_slot(map, map->keys[slot]);
        bool stays = hole <= slot ? (home > hole && home <= slot) : (home > hole || home <= slot);
        if (stays) continue;
        map->keys[hole] = map->keys[slot];
        map->values[hole] = map->values[slot];
        map->values[slot] = 0;
        hole = slot;
    }
}

void id_map_free(struct id_map *map) {
    free(map->keys);
    free(map->values);
    map->keys = NULL;
    map->values = NULL;
    map->capacity = 0;
    map->count = 0;
}
