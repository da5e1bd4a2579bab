/* The blob directory: opening it, naming blob files, removing them, listing them and
 * syncing them (engine/blob.h). Writing and reading blobs is in blob.c. */
#include "engine/blob_internal.h"

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
    store->chunk_size = chunk_size;
    store->sync = sync;
    pthread_mutex_init(&store->lock, NULL);
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
    char name[17];
    snprintf(name, sizeof(name), "%016" PRIx64, id);
    struct stat status;
    bool sized = fstatat(store->directory_fd, name, &status, 0) == 0;
    if (unlinkat(store->directory_fd, name, 0) != 0) {
        if (errno == ENOENT) return BLOB_NOT_FOUND;
        log_event(LOG_WARNING, "blob_unlink_failed", "blob=%016" PRIx64 " reason=\"%s\"", id,
                  strerror(errno));
        return BLOB_IO_ERROR;
    }
    if (sized) atomic_fetch_sub(&store->bytes, (uint64_t)status.st_size);
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
