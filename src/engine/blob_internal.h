/* Shared by blob_store.c and blob.c; not used outside them (and their tests). */
#ifndef STRATA_ENGINE_BLOB_INTERNAL_H
#define STRATA_ENGINE_BLOB_INTERNAL_H

#include "base/checks.h"
#include "engine/blob.h"

#include <pthread.h>
#include <stdatomic.h>

/* Open blobs the cache keeps that no reader holds; past this many the least recently
 * used one is closed. Blobs readers hold are never closed and not counted here. */
#define BLOB_OPEN_CACHE_MAX 256

/* A blob file open for reading, its size, footer and sums checked: one entry of the
 * store's cache, shared by every reader that holds it (blob_store_acquire()).
 *
 * The fields above the line are set before the entry is published and never change
 * after: any thread holding a reference may read them without the lock, and read FD at
 * an offset (pread, io_uring) at the same time as others. The fields below are the
 * cache's, guarded by the store's cache_lock. */
struct blob_open {
    uint64_t id;
    int fd;
    uint64_t length; /* of the data */
    uint32_t chunk_size;
    uint32_t chunk_count;
    uint32_t *sums; /* chunk_count CRC32Cs */
    /* ---- guarded by store->cache_lock ---- */
    unsigned references;       /* readers holding it; closed once 0 and not cached */
    bool cached;               /* in the map; false once unlinked, evicted or never put */
    struct blob_open *next;    /* in its hash bucket */
    struct blob_open *older;   /* in the idle list (cached, 0 references): towards the LRU */
    struct blob_open *younger; /* ... and towards the most recently used */
};

/* One held blob id in the store's set of holds. */
struct blob_hold_entry {
    uint64_t id;
    uint32_t count; /* holds on it; 0: the slot is free */
    bool unlinked;  /* blob_store_unlink() came while it was held: removed at the last */
};

struct blob_store {
    char *directory;
    int directory_fd;
    uint32_t chunk_size;
    enum blob_sync sync;
    _Atomic uint64_t bytes;         /* of blob files on disk */
    _Atomic uint64_t sync_errors;   /* failed syncs */
    _Atomic uint64_t opens;         /* blob files opened for reading (cache misses) */
    _Atomic uint64_t bytes_advised; /* asked of the kernel to read ahead (for tests) */
    pthread_mutex_t lock;           /* guards pending */
    int *pending;                   /* descriptors of blobs finished under BLOB_SYNC_LATER */
    size_t pending_count;
    size_t pending_capacity;
    /* The cache of open blobs: a map from id to entry (chained, power-of-two buckets)
     * and the list of its idle entries, least recently used first. */
    pthread_mutex_t cache_lock;
    struct check_owner cache_owner; /* who holds cache_lock (checking builds) */
    struct blob_open **buckets;
    size_t bucket_count;
    size_t cached_count; /* entries in the map, idle or held */
    size_t idle_count;   /* entries in the idle list */
    struct blob_open *idle_oldest;
    struct blob_open *idle_youngest;
    /* The holds on blobs (blob_store_hold()): a set of ids with linear probing, each
     * with its count of holds and whether it was unlinked while held (its removal then
     * waits for the last hold). Guarded by holds_lock, which is taken after the object
     * index's lock when both are held, and never together with cache_lock. */
    pthread_mutex_t holds_lock;
    struct check_owner holds_owner; /* who holds holds_lock (checking builds) */
    struct blob_hold_entry *holds;  /* holds_capacity slots; a slot with count 0 is free */
    size_t holds_capacity;          /* a power of two, or 0 before the first hold */
    size_t holds_used;              /* slots in use: ids held now */
};

/* Writes the path of blob ID's file into PATH (SIZE bytes). */
void blob_path(const struct blob_store *store, uint64_t id, char *path, size_t size);

/* Whether NAME is a blob file's name (16 lower-case hex digits); sets *ID. */
bool blob_name_parse(const char *name, uint64_t *id);

/* Hands a finished blob's descriptor FD (a duplicate the store now owns) to the next
 * blob_store_sync_pending(), which syncs and closes it. */
void blob_store_add_pending(struct blob_store *store, int fd);

/* Gives the caller a reference to blob ID open for reading: the cache's entry, or a new
 * one (opened and checked by blob_open_file(), then put in the cache unless the file
 * was unlinked meanwhile). Any thread; takes cache_lock, which must not be held. Returns
 * BLOB_OK with *OPEN set (release it with blob_store_release()), BLOB_NOT_FOUND,
 * BLOB_CORRUPT, BLOB_IO_ERROR or BLOB_NO_MEMORY; failures are not cached. */
enum blob_status blob_store_acquire(struct blob_store *store, uint64_t id, struct blob_open **open);

/* Lets go of a reference from blob_store_acquire(). The entry becomes idle (and the
 * least recently used idle one is closed past BLOB_OPEN_CACHE_MAX), or is closed if it
 * left the cache. Any thread; takes cache_lock, which must not be held. */
void blob_store_release(struct blob_store *store, struct blob_open *open);

/* Closes every idle entry of the cache (entries readers hold stay). blob_store_close()
 * calls it; tests call it to make the next reader open its blobs afresh. Any thread;
 * takes cache_lock, which must not be held. */
void blob_store_close_idle(struct blob_store *store);

/* Whether blob ID is held (blob_store_hold()) now, and, when it is, whether it was
 * unlinked while held (*UNLINKED, when UNLINKED is not NULL). For tests. Any thread;
 * takes holds_lock, which must not be held. */
bool blob_store_held(struct blob_store *store, uint64_t id, bool *unlinked);

/* Opens blob ID's file and checks its size, footer and sums (blob.c). Returns BLOB_OK
 * with *OPEN a new entry (not in any cache, references 0) that the caller owns and frees
 * with blob_open_free(), or the failure (logged, except BLOB_NOT_FOUND). Takes no lock. */
enum blob_status blob_open_file(struct blob_store *store, uint64_t id, struct blob_open **open);

/* Closes OPEN's file and frees it. Takes no lock; nobody may hold OPEN any more. */
void blob_open_free(struct blob_open *open);

/* For tests: while FAKE, cachestat() is taken to fail with ENOSYS, as on a kernel
 * before 6.5, so streams take the fallback of blob.c's range_maybe_cold(). Setting it
 * either way also forgets that cachestat() was found missing (it is asked again). The
 * whole process; not while streams run. */
void blob_test_fake_no_cachestat(bool fake);

#endif
