/* The blob directory: opening it, naming blob files, removing them, listing them and
 * syncing them (engine/blob.h), and the cache of blobs open for reading that readers
 * share (blob_store_acquire()). Writing and reading blobs is in blob.c.
 *
 * The cache maps a blob id to an entry holding the open descriptor, the footer's numbers
 * and the sums (struct blob_open). An entry is filled on first use, outside the lock,
 * and published under it; readers hold references while they read, and an entry with
 * none is idle: it stays open, on a least-recently-used list of at most
 * BLOB_OPEN_CACHE_MAX, for the next reader. An entry in use is never closed. Unlinking
 * a blob takes its entry out of the map at once (its holders keep reading the unlinked
 * file, and it is closed when the last lets go), so no later reader is served a file
 * that is gone, nor an old file under an id used again.
 *
 * A fill that races an unlink must not publish the file the unlink removed: the filler
 * checks, under the lock, that the file it opened still has a name (st_nlink > 0). An
 * unlink removes the name first and takes the entry out of the map under the lock
 * after, so either the filler sees the name gone and keeps its entry to itself, or the
 * unlink comes after the publication and takes the entry out.
 *
 * Holds (blob_store_hold()) keep unlinked blobs on disk for the readers that may still
 * reach them: a set of ids, each with its count of holds, under holds_lock. An unlink of
 * a held id only marks it; the removal (the file, its cache entry, the byte count) is
 * done by whoever lets go of the last hold, after dropping holds_lock. The check and the
 * mark happen under the lock, and so do the last release and the taking of the id out
 * of the set, so exactly one of the unlink and the last release removes the file. The
 * set never shrinks: its size follows the most blobs held at once. */
#include "engine/blob_internal.h"

#include "base/checks.h"
#include "base/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *blob_status_text(enum blob_status status) {
    switch (status) {
    case BLOB_OK:
        return "ok";
    case BLOB_NOT_FOUND:
        return "no such blob";
    case BLOB_IO_ERROR:
        return "I/O error";
    case BLOB_NO_SPACE:
        return "no space left on the device";
    case BLOB_CORRUPT:
        return "stored bytes failed their checksum";
    case BLOB_NO_MEMORY:
        return "out of memory";
    case BLOB_PENDING:
        return "pending";
    }
    return "unknown";
}

/* Buckets of a new store's cache; the map doubles when it holds more entries. */
#define CACHE_FIRST_BUCKETS 512

static void cache_lock(struct blob_store *store) {
    pthread_mutex_lock(&store->cache_lock);
    check_acquired(&store->cache_owner);
}

static void cache_unlock(struct blob_store *store) {
    check_releasing(&store->cache_owner);
    pthread_mutex_unlock(&store->cache_lock);
}

#define ASSERT_CACHE_LOCKED(store) STRATA_ASSERT(check_held(&(store)->cache_owner))

/* The bucket of ID in a map of BUCKET_COUNT (a power of two) buckets. */
static size_t cache_bucket(uint64_t id, size_t bucket_count) {
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (bucket_count - 1);
}

/* The cached entry of ID, or NULL. Called with cache_lock held. */
static struct blob_open *cache_find(struct blob_store *store, uint64_t id) {
    ASSERT_CACHE_LOCKED(store);
    struct blob_open *entry = store->buckets[cache_bucket(id, store->bucket_count)];
    while (entry != NULL && entry->id != id)
        entry = entry->next;
    return entry;
}

/* Doubles the map's buckets; on an allocation failure the chains just grow longer.
 * Called with cache_lock held. */
static void cache_grow(struct blob_store *store) {
    ASSERT_CACHE_LOCKED(store);
    size_t grown = store->bucket_count * 2;
    struct blob_open **buckets = calloc(grown, sizeof(*buckets));
    if (buckets == NULL) return;
    for (size_t i = 0; i < store->bucket_count; i++) {
        struct blob_open *entry = store->buckets[i];
        while (entry != NULL) {
            struct blob_open *next = entry->next;
            size_t bucket = cache_bucket(entry->id, grown);
            entry->next = buckets[bucket];
            buckets[bucket] = entry;
            entry = next;
        }
    }
    free(store->buckets);
    store->buckets = buckets;
    store->bucket_count = grown;
}

/* Puts ENTRY (not cached, no entry of its id in the map) in the map. Called with
 * cache_lock held. */
static void cache_insert(struct blob_store *store, struct blob_open *entry) {
    ASSERT_CACHE_LOCKED(store);
    STRATA_ASSERT(!entry->cached && cache_find(store, entry->id) == NULL);
    if (store->cached_count >= store->bucket_count) cache_grow(store);
    size_t bucket = cache_bucket(entry->id, store->bucket_count);
    entry->next = store->buckets[bucket];
    store->buckets[bucket] = entry;
    entry->cached = true;
    store->cached_count++;
}

/* Takes cached ENTRY out of the map (not out of the idle list). Called with cache_lock
 * held. */
static void cache_remove(struct blob_store *store, struct blob_open *entry) {
    ASSERT_CACHE_LOCKED(store);
    STRATA_ASSERT(entry->cached);
    struct blob_open **link = &store->buckets[cache_bucket(entry->id, store->bucket_count)];
    while (*link != entry)
        link = &(*link)->next;
    *link = entry->next;
    entry->next = NULL;
    entry->cached = false;
    store->cached_count--;
}

/* Appends ENTRY (cached, no references) to the idle list as its most recently used.
 * Called with cache_lock held. */
static void idle_push(struct blob_store *store, struct blob_open *entry) {
    ASSERT_CACHE_LOCKED(store);
    STRATA_ASSERT(entry->cached && entry->references == 0);
    entry->younger = NULL;
    entry->older = store->idle_youngest;
    if (store->idle_youngest != NULL) {
        store->idle_youngest->younger = entry;
    } else {
        store->idle_oldest = entry;
    }
    store->idle_youngest = entry;
    store->idle_count++;
}

/* Takes ENTRY, which is on the idle list, off it. Called with cache_lock held. */
static void idle_unlink(struct blob_store *store, struct blob_open *entry) {
    ASSERT_CACHE_LOCKED(store);
    STRATA_ASSERT(entry->references == 0 && store->idle_count > 0);
    if (entry->older != NULL) {
        entry->older->younger = entry->younger;
    } else {
        store->idle_oldest = entry->younger;
    }
    if (entry->younger != NULL) {
        entry->younger->older = entry->older;
    } else {
        store->idle_youngest = entry->older;
    }
    entry->older = NULL;
    entry->younger = NULL;
    store->idle_count--;
}

enum blob_status blob_store_acquire(struct blob_store *store, uint64_t id,
                                    struct blob_open **open) {
    *open = NULL;
    cache_lock(store);
    struct blob_open *entry = cache_find(store, id);
    if (entry != NULL) {
        if (entry->references == 0) idle_unlink(store, entry);
        entry->references++;
        cache_unlock(store);
        *open = entry;
        return BLOB_OK;
    }
    cache_unlock(store);

    /* A miss: open and check the file without the lock (it reads the disk). */
    struct blob_open *fresh;
    enum blob_status status = blob_open_file(store, id, &fresh);
    if (status != BLOB_OK) return status;
    atomic_fetch_add(&store->opens, 1);
    struct stat file_status;
    cache_lock(store);
    entry = cache_find(store, id);
    if (entry != NULL) {
        /* Another reader filled it first: use theirs. */
        if (entry->references == 0) idle_unlink(store, entry);
        entry->references++;
        cache_unlock(store);
        blob_open_free(fresh);
        *open = entry;
        return BLOB_OK;
    }
    /* Published only while the file still has its name (see the top comment); else it
     * is this reader's alone, as if it had opened the blob just before the unlink. */
    if (fstat(fresh->fd, &file_status) == 0 && file_status.st_nlink > 0) {
        cache_insert(store, fresh);
    }
    fresh->references = 1;
    cache_unlock(store);
    *open = fresh;
    return BLOB_OK;
}

void blob_store_release(struct blob_store *store, struct blob_open *open) {
    if (open == NULL) return;
    struct blob_open *closing = NULL;
    cache_lock(store);
    STRATA_ASSERT(open->references > 0);
    open->references--;
    if (open->references == 0) {
        if (!open->cached) {
            closing = open;
        } else {
            idle_push(store, open);
            if (store->idle_count > BLOB_OPEN_CACHE_MAX) {
                closing = store->idle_oldest;
                idle_unlink(store, closing);
                cache_remove(store, closing);
            }
        }
    }
    cache_unlock(store);
    if (closing != NULL) blob_open_free(closing); /* close() outside the lock */
}

/* Takes blob ID's entry out of the cache, if it has one: closed now when idle, else by
 * the last holder's release. Any thread; takes cache_lock. */
static void cache_drop(struct blob_store *store, uint64_t id) {
    struct blob_open *closing = NULL;
    cache_lock(store);
    struct blob_open *entry = cache_find(store, id);
    if (entry != NULL) {
        cache_remove(store, entry);
        if (entry->references == 0) {
            idle_unlink(store, entry);
            closing = entry;
        }
    }
    cache_unlock(store);
    if (closing != NULL) blob_open_free(closing);
}

void blob_store_close_idle(struct blob_store *store) {
    struct blob_open *closing = NULL;
    cache_lock(store);
    while (store->idle_oldest != NULL) {
        struct blob_open *entry = store->idle_oldest;
        idle_unlink(store, entry);
        cache_remove(store, entry);
        entry->next = closing;
        closing = entry;
    }
    cache_unlock(store);
    while (closing != NULL) { /* close() outside the lock */
        struct blob_open *next = closing->next;
        blob_open_free(closing);
        closing = next;
    }
}

/* ---- holds ---------------------------------------------------------------------- */

/* Holds of a new store's set, at its first hold; the set doubles when half full. */
#define HOLDS_FIRST_CAPACITY 64

static void holds_lock(struct blob_store *store) {
    pthread_mutex_lock(&store->holds_lock);
    check_acquired(&store->holds_owner);
}

static void holds_unlock(struct blob_store *store) {
    check_releasing(&store->holds_owner);
    pthread_mutex_unlock(&store->holds_lock);
}

#define ASSERT_HOLDS_LOCKED(store) STRATA_ASSERT(check_held(&(store)->holds_owner))

/* The held entry of ID, or NULL. Called with holds_lock held. */
static struct blob_hold_entry *holds_find(struct blob_store *store, uint64_t id) {
    ASSERT_HOLDS_LOCKED(store);
    if (store->holds_capacity == 0) return NULL;
    size_t mask = store->holds_capacity - 1;
    for (size_t slot = cache_bucket(id, store->holds_capacity);; slot = (slot + 1) & mask) {
        struct blob_hold_entry *entry = &store->holds[slot];
        if (entry->count == 0) return NULL;
        if (entry->id == id) return entry;
    }
}

/* The free slot where ID (not in the set) goes; the set has a free slot. Called with
 * holds_lock held. */
static struct blob_hold_entry *holds_free_slot(struct blob_store *store, uint64_t id) {
    ASSERT_HOLDS_LOCKED(store);
    size_t mask = store->holds_capacity - 1;
    size_t slot = cache_bucket(id, store->holds_capacity);
    while (store->holds[slot].count != 0)
        slot = (slot + 1) & mask;
    return &store->holds[slot];
}

/* Makes room for one more id (the set stays at most half full). Returns false, the set
 * unchanged, when the allocation fails. Called with holds_lock held. */
static bool holds_make_room(struct blob_store *store) {
    ASSERT_HOLDS_LOCKED(store);
    if (2 * (store->holds_used + 1) <= store->holds_capacity) return true;
    size_t grown = store->holds_capacity ? 2 * store->holds_capacity : HOLDS_FIRST_CAPACITY;
    struct blob_hold_entry *entries = calloc(grown, sizeof(*entries));
    if (entries == NULL) return false;
    struct blob_hold_entry *old = store->holds;
    size_t old_capacity = store->holds_capacity;
    store->holds = entries;
    store->holds_capacity = grown;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].count != 0) *holds_free_slot(store, old[i].id) = old[i];
    }
    free(old);
    return true;
}

/* Takes ENTRY out of the set, moving later entries of its probe run back so that every
 * lookup still finds them. Called with holds_lock held. */
static void holds_remove(struct blob_store *store, struct blob_hold_entry *entry) {
    ASSERT_HOLDS_LOCKED(store);
    size_t mask = store->holds_capacity - 1;
    size_t hole = (size_t)(entry - store->holds);
    for (size_t slot = (hole + 1) & mask; store->holds[slot].count != 0; slot = (slot + 1) & mask) {
        size_t home = cache_bucket(store->holds[slot].id, store->holds_capacity);
        /* It stays when its home lies cyclically in (hole, slot]. */
        bool stays = hole <= slot ? (hole < home && home <= slot) : (hole < home || home <= slot);
        if (stays) continue;
        store->holds[hole] = store->holds[slot];
        hole = slot;
    }
    memset(&store->holds[hole], 0, sizeof(store->holds[hole]));
    store->holds_used--;
}

/* Whether extent I of EXTENTS counts for a hold: the first of a run of extents of the
 * same blob (hold and unhold skip the same ones, so they match). */
static bool extent_counts(const struct blob_extent *extents, size_t i) {
    return i == 0 || extents[i].id != extents[i - 1].id;
}

static enum blob_status remove_file(struct blob_store *store, uint64_t id);

/* Lets go of one hold on ENTRY's id (NULL: none). Returns true, with *REMOVE set to the
 * id, when that was the last hold on a blob unlinked while held: the caller removes it
 * once holds_lock is let go. Called with holds_lock held. */
static bool holds_drop(struct blob_store *store, struct blob_hold_entry *entry, uint64_t *remove) {
    ASSERT_HOLDS_LOCKED(store);
    STRATA_ASSERT(entry != NULL && entry->count > 0);
    if (entry == NULL || --entry->count > 0) return false;
    bool unlinked = entry->unlinked;
    *remove = entry->id;
    holds_remove(store, entry);
    return unlinked;
}

enum blob_status blob_store_hold(struct blob_store *store, const struct blob_extent *extents,
                                 size_t count) {
    STRATA_ASSERT(!check_held(&store->holds_owner) && !check_held(&store->cache_owner));
    holds_lock(store);
    for (size_t i = 0; i < count; i++) {
        if (!extent_counts(extents, i)) continue;
        struct blob_hold_entry *entry = holds_find(store, extents[i].id);
        if (entry == NULL) {
            if (!holds_make_room(store)) {
                /* Undo the holds taken so far: none of them can be the last of an unlinked
                 * blob (the ones this call added were not unlinked; the others keep their
                 * earlier holds). */
                for (size_t j = 0; j < i; j++) {
                    uint64_t unused;
                    if (!extent_counts(extents, j)) continue;
                    bool removing = holds_drop(store, holds_find(store, extents[j].id), &unused);
                    STRATA_ASSERT(!removing);
                    (void)removing;
                }
                holds_unlock(store);
                return BLOB_NO_MEMORY;
            }
            entry = holds_free_slot(store, extents[i].id);
            entry->id = extents[i].id;
            entry->unlinked = false;
            store->holds_used++;
        }
        STRATA_ASSERT(entry->count < UINT32_MAX);
        entry->count++;
    }
    holds_unlock(store);
    return BLOB_OK;
}

void blob_store_unhold(struct blob_store *store, const struct blob_extent *extents, size_t count) {
    STRATA_ASSERT(!check_held(&store->holds_owner) && !check_held(&store->cache_owner));
    holds_lock(store);
    for (size_t i = 0; i < count; i++) {
        if (!extent_counts(extents, i)) continue;
        uint64_t id;
        if (!holds_drop(store, holds_find(store, extents[i].id), &id)) continue;
        /* The last hold of an unlinked blob: remove it without the lock (file system
         * calls, and cache_lock), then go on. Nobody holds it any more, and nobody can
         * take a hold the index would need it for: it referred to it no longer. */
        holds_unlock(store);
        enum blob_status status = remove_file(store, id);
        if (status != BLOB_OK && status != BLOB_NOT_FOUND) {
            log_event(LOG_WARNING, "blob_deferred_unlink_failed",
                      "blob=%016" PRIx64 " status=\"%s\"", id, blob_status_text(status));
        }
        holds_lock(store);
    }
    holds_unlock(store);
}

bool blob_store_held(struct blob_store *store, uint64_t id, bool *unlinked) {
    holds_lock(store);
    struct blob_hold_entry *entry = holds_find(store, id);
    if (entry != NULL && unlinked != NULL) *unlinked = entry->unlinked;
    holds_unlock(store);
    return entry != NULL;
}

/* Removes, at the store's close, every blob unlinked while held whose holds were never
 * let go (a reader or hold outlived its use: every reader has ended by contract), and
 * forgets every hold. Called by blob_store_close() only, no other thread using STORE. */
static void holds_close(struct blob_store *store) {
    size_t pending = 0;
    for (size_t i = 0; i < store->holds_capacity; i++) {
        struct blob_hold_entry *entry = &store->holds[i];
        if (entry->count == 0 || !entry->unlinked) continue;
        pending++;
        enum blob_status status = remove_file(store, entry->id);
        if (status != BLOB_OK && status != BLOB_NOT_FOUND) {
            log_event(LOG_WARNING, "blob_deferred_unlink_failed",
                      "blob=%016" PRIx64 " status=\"%s\"", entry->id, blob_status_text(status));
        }
    }
    if (pending > 0) {
        log_event(LOG_INFO, "blob_deferred_unlinks_at_close", "blobs=%zu", pending);
    }
    free(store->holds);
    store->holds = NULL;
    store->holds_capacity = 0;
    store->holds_used = 0;
}

void blob_path(const struct blob_store *store, uint64_t id, char *path, size_t size) {
    snprintf(path, size, "%s/%016" PRIx64, store->directory, id);
}

struct blob_store *blob_store_open(const char *directory, uint32_t chunk_size, enum blob_sync sync,
                                   char *error, size_t error_size) {
    if (chunk_size == 0) chunk_size = BLOB_DEFAULT_CHUNK_SIZE;
    if (chunk_size < BLOB_MIN_CHUNK_SIZE || chunk_size > BLOB_MAX_CHUNK_SIZE ||
        (chunk_size & (chunk_size - 1)) != 0) {
        snprintf(error, error_size, "chunk size %u is not a power of two from 64kb to 64mb",
                 chunk_size);
        return NULL;
    }
    if (mkdir(directory, 0755) != 0 && errno != EEXIST) {
        snprintf(error, error_size, "cannot create %s: %s", directory, strerror(errno));
        return NULL;
    }
    struct blob_store *store = calloc(1, sizeof(*store));
    if (store == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    store->directory = strdup(directory);
    store->directory_fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (store->directory == NULL || store->directory_fd < 0) {
        snprintf(error, error_size, "cannot open %s: %s", directory,
                 store->directory ? strerror(errno) : "out of memory");
        if (store->directory_fd >= 0) close(store->directory_fd);
        free(store->directory);
        free(store);
        return NULL;
    }
    store->bucket_count = CACHE_FIRST_BUCKETS;
    store->buckets = calloc(store->bucket_count, sizeof(*store->buckets));
    if (store->buckets == NULL) {
        snprintf(error, error_size, "out of memory");
        close(store->directory_fd);
        free(store->directory);
        free(store);
        return NULL;
    }
    store->chunk_size = chunk_size;
    store->sync = sync;
    pthread_mutex_init(&store->lock, NULL);
    pthread_mutex_init(&store->cache_lock, NULL);
    pthread_mutex_init(&store->holds_lock, NULL);
    /* Count what is there already. */
    DIR *listing = opendir(directory);
    if (listing != NULL) {
        struct dirent *entry;
        while ((entry = readdir(listing)) != NULL) {
            uint64_t id;
            if (!blob_name_parse(entry->d_name, &id)) continue;
            struct stat status;
            if (fstatat(store->directory_fd, entry->d_name, &status, 0) == 0) {
                atomic_fetch_add(&store->bytes, (uint64_t)status.st_size);
            }
        }
        closedir(listing);
    }
    return store;
}

void blob_store_close(struct blob_store *store) {
    if (store == NULL) return;
    blob_store_sync_pending(store);
    free(store->pending);
    holds_close(store);
    /* Every reader has ended: every entry left is idle. */
    STRATA_ASSERT(store->idle_count == store->cached_count);
    blob_store_close_idle(store);
    free(store->buckets);
    pthread_mutex_destroy(&store->holds_lock);
    pthread_mutex_destroy(&store->cache_lock);
    pthread_mutex_destroy(&store->lock);
    close(store->directory_fd);
    free(store->directory);
    free(store);
}

bool blob_name_parse(const char *name, uint64_t *id) {
    if (strlen(name) != 16) return false;
    uint64_t value = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int digit;
        if (c >= '0' && c <= '9') {
            digit = c - '0';
        } else if (c >= 'a' && c <= 'f') {
            digit = c - 'a' + 10;
        } else {
            return false;
        }
        value = value << 4 | (uint64_t)digit;
    }
    *id = value;
    return true;
}

enum blob_status blob_store_unlink(struct blob_store *store, uint64_t id) {
    holds_lock(store);
    struct blob_hold_entry *entry = holds_find(store, id);
    if (entry != NULL) {
        /* Held: its last hold removes it (see the top comment). Said NOT_FOUND, as
         * below, when the file is gone already; the hold's end then removes nothing. */
        char name[17];
        snprintf(name, sizeof(name), "%016" PRIx64, id);
        struct stat status;
        bool present = fstatat(store->directory_fd, name, &status, 0) == 0 || errno != ENOENT;
        entry->unlinked = true;
        holds_unlock(store);
        return present ? BLOB_OK : BLOB_NOT_FOUND;
    }
    holds_unlock(store);
    return remove_file(store, id);
}

/* Removes blob ID's file now, takes its bytes off the count and drops it from the cache
 * (blob_store_unlink() without the holds). Any thread; takes cache_lock, which must not
 * be held, and not holds_lock. */
static enum blob_status remove_file(struct blob_store *store, uint64_t id) {
    char name[17];
    snprintf(name, sizeof(name), "%016" PRIx64, id);
    struct stat status;
    bool sized = fstatat(store->directory_fd, name, &status, 0) == 0;
    if (unlinkat(store->directory_fd, name, 0) != 0) {
        if (errno == ENOENT) {
            cache_drop(store, id); /* removed behind the store's back: forget it too */
            return BLOB_NOT_FOUND;
        }
        log_event(LOG_WARNING, "blob_unlink_failed", "blob=%016" PRIx64 " reason=\"%s\"", id,
                  strerror(errno));
        return BLOB_IO_ERROR;
    }
    if (sized) atomic_fetch_sub(&store->bytes, (uint64_t)status.st_size);
    cache_drop(store, id); /* after the name is gone: see the top comment */
    return BLOB_OK;
}

enum blob_status blob_store_for_each(struct blob_store *store,
                                     void (*visit)(void *context, uint64_t id), void *context) {
    DIR *listing = opendir(store->directory);
    if (listing == NULL) return BLOB_IO_ERROR;
    /* Collect first: VISIT may unlink, which readdir() does not promise to survive. */
    uint64_t *ids = NULL;
    size_t count = 0;
    size_t capacity = 0;
    struct dirent *entry;
    enum blob_status status = BLOB_OK;
    while ((entry = readdir(listing)) != NULL) {
        uint64_t id;
        if (!blob_name_parse(entry->d_name, &id)) continue;
        if (count == capacity) {
            size_t grown = capacity ? capacity * 2 : 64;
            uint64_t *bigger = realloc(ids, grown * sizeof(*ids));
            if (bigger == NULL) {
                status = BLOB_NO_MEMORY;
                break;
            }
            ids = bigger;
            capacity = grown;
        }
        ids[count++] = id;
    }
    closedir(listing);
    if (status == BLOB_OK) {
        for (size_t i = 0; i < count; i++)
            visit(context, ids[i]);
    }
    free(ids);
    return status;
}

void blob_store_add_pending(struct blob_store *store, int fd) {
    pthread_mutex_lock(&store->lock);
    if (store->pending_count == store->pending_capacity) {
        size_t grown = store->pending_capacity ? store->pending_capacity * 2 : 16;
        int *bigger = realloc(store->pending, grown * sizeof(*bigger));
        if (bigger == NULL) {
            pthread_mutex_unlock(&store->lock);
            /* No room to remember it: sync it now instead. */
            if (fdatasync(fd) != 0) atomic_fetch_add(&store->sync_errors, 1);
            close(fd);
            return;
        }
        store->pending = bigger;
        store->pending_capacity = grown;
    }
    store->pending[store->pending_count++] = fd;
    pthread_mutex_unlock(&store->lock);
}

enum blob_status blob_store_sync_pending(struct blob_store *store) {
    pthread_mutex_lock(&store->lock);
    int *fds = store->pending;
    size_t count = store->pending_count;
    store->pending = NULL;
    store->pending_count = 0;
    store->pending_capacity = 0;
    pthread_mutex_unlock(&store->lock);
    enum blob_status status = BLOB_OK;
    for (size_t i = 0; i < count; i++) {
        if (fdatasync(fds[i]) != 0) {
            log_event(LOG_ERROR, "blob_sync_failed", "reason=\"%s\"", strerror(errno));
            atomic_fetch_add(&store->sync_errors, 1);
            status = BLOB_IO_ERROR;
        }
        close(fds[i]);
    }
    free(fds);
    if (count > 0 && fsync(store->directory_fd) != 0) {
        atomic_fetch_add(&store->sync_errors, 1);
        status = BLOB_IO_ERROR;
    }
    return status;
}

uint64_t blob_store_bytes(const struct blob_store *store) {
    return atomic_load(&((struct blob_store *)store)->bytes);
}
