/* Shared by blob_store.c and blob.c; not used outside them. */
#ifndef STRATA_ENGINE_BLOB_INTERNAL_H
#define STRATA_ENGINE_BLOB_INTERNAL_H

#include "engine/blob.h"

#include <pthread.h>
#include <stdatomic.h>

struct blob_store {
    char *directory;
    int directory_fd;
    uint32_t chunk_size;
    enum blob_sync sync;
    _Atomic uint64_t bytes;       /* of blob files on disk */
    _Atomic uint64_t sync_errors; /* failed syncs */
    pthread_mutex_t lock;         /* guards pending */
    int *pending;                 /* descriptors of blobs finished under BLOB_SYNC_LATER */
    size_t pending_count;
    size_t pending_capacity;
};

/* Writes the path of blob ID's file into PATH (SIZE bytes). */
void blob_path(const struct blob_store *store, uint64_t id, char *path, size_t size);

/* Whether NAME is a blob file's name (16 lower-case hex digits); sets *ID. */
bool blob_name_parse(const char *name, uint64_t *id);

/* Hands a finished blob's descriptor FD (a duplicate the store now owns) to the next
 * blob_store_sync_pending(), which syncs and closes it. */
void blob_store_add_pending(struct blob_store *store, int fd);

#endif
