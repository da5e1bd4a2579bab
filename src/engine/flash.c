/* The flash tier's segments, its writer thread, reclaim and reads (see flash.h and
 * docs/flash-tier.md).
 *
 * One writer thread owns the current segment and a staging buffer. It takes queued
 * writes in batches, lays their records out in the staging buffer and writes it with
 * O_DIRECT through its own io_uring; then it tells the index (flash_store.c) where each
 * record went. Readers take a reference on a segment, so a segment reclaimed while a
 * read is in flight stays open until the read ends. */
#include "engine/flash_internal.h"

#include "base/checks.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/fault.h"
#include "base/log.h"
#include "engine/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes the writer lays out before writing them in one go. */
#define STAGING_SIZE (4u << 20)
/* Share of a new segment that records reinserted by reclaim may fill. */
#define REINSERT_SHARE 4

/* ---- flash->lock, with its owner tracked in the checking builds ---------------- */

static void flash_lock(struct flash *flash) {
    pthread_mutex_lock(&flash->lock);
    check_acquired(&flash->lock_owner);
    if (STRATA_CHECKING) flash_locks_held++;
}

static void flash_unlock(struct flash *flash) {
    check_releasing(&flash->lock_owner);
    if (STRATA_CHECKING) flash_locks_held--;
    pthread_mutex_unlock(&flash->lock);
}

/* Waits on CONDITION with flash->lock held (until UNTIL, a CLOCK_REALTIME time, when
 * not NULL); the lock is let go meanwhile, as far as the checks are concerned too. */
static void flash_wait(struct flash *flash, pthread_cond_t *condition,
                       const struct timespec *until) {
    check_releasing(&flash->lock_owner);
    if (STRATA_CHECKING) flash_locks_held--;
    if (until != NULL) {
        pthread_cond_timedwait(condition, &flash->lock, until);
    } else {
        pthread_cond_wait(condition, &flash->lock);
    }
    check_acquired(&flash->lock_owner);
    if (STRATA_CHECKING) flash_locks_held++;
}

/* The rules "called by the writer thread" (it owns the current segment and the staging
 * buffer) and "called with flash->lock held", checked in the checking builds. */
#define ASSERT_WRITER(flash)                                                                       \
    STRATA_ASSERT(atomic_load_explicit(&(flash)->writer_thread, memory_order_relaxed) ==           \
                  check_thread())
#define ASSERT_FLASH_LOCKED(flash) STRATA_ASSERT(check_held(&(flash)->lock_owner))

bool flash_on_writer(const struct flash *flash) {
    return atomic_load_explicit(&flash->writer_thread, memory_order_relaxed) == check_thread();
}

struct flash_counters *flash_counters(struct flash *flash) {
    return &flash->counters;
}

static void count(_Atomic uint64_t *counter, uint64_t amount) {
    atomic_fetch_add_explicit(counter, amount, memory_order_relaxed);
}

/* ---- the record format -------------------------------------------------------- */

void flash_header_seal(struct flash_record_header *header, const void *key) {
    header->header_crc = 0;
    uint32_t running = crc32c_update(CRC32C_START, header, sizeof(*header));
    running = crc32c_update(running, key, header->key_length);
    header->header_crc = crc32c_finish(running);
}

bool flash_header_valid(const struct flash_record_header *header, const void *key, uint64_t limit) {
    if (header->magic != FLASH_RECORD_MAGIC || header->version != FLASH_FORMAT_VERSION) {
        return false;
    }
    if (header->key_length > STORE_MAX_KEY_LENGTH || header->value_length > limit ||
        flash_record_size(header->key_length, header->value_length) > limit) {
        return false;
    }
    struct flash_record_header copy = *header;
    copy.header_crc = 0;
    uint32_t running = crc32c_update(CRC32C_START, &copy, sizeof(copy));
    running = crc32c_update(running, key, header->key_length);
    return crc32c_finish(running) == header->header_crc;
}

bool flash_record_valid(const unsigned char *record) {
    struct flash_record_header header;
    memcpy(&header, record, sizeof(header));
    uint64_t covered = flash_value_offset(header.key_length) + header.value_length;
    uint32_t stored;
    memcpy(&stored, record + covered, sizeof(stored));
    return crc32c(record, covered) == stored;
}

/* ---- segments ----------------------------------------------------------------- */

static void segment_path(const struct flash *flash, uint32_t id, char *path, size_t size) {
    snprintf(path, size, "%s/segment-%08u", flash->directory, id);
}

static void segment_release(struct segment *segment) {
    if (atomic_fetch_sub_explicit(&segment->references, 1, memory_order_acq_rel) != 1) return;
    close(segment->fd);
    free(segment);
}

void segment_take_reference(struct segment *segment) {
    atomic_fetch_add_explicit(&segment->references, 1, memory_order_relaxed);
}

void segment_release_reference(struct segment *segment) {
    segment_release(segment);
}

/* The segment with ID, or NULL. Called with flash->lock held, or by the recovery thread
 * (the writer changes the table only once recovery has ended). */
struct segment *segment_find(struct flash *flash, uint32_t id) {
    STRATA_ASSERT(check_held(&flash->lock_owner) ||
                  atomic_load_explicit(&flash->recovery_thread, memory_order_relaxed) ==
                      check_thread());
    size_t low = 0, high = flash->segment_count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        uint32_t found = flash->segments[middle]->id;
        if (found == id) return flash->segments[middle];
        if (found < id) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return NULL;
}

/* Adds SEGMENT (the newest) to the table. Returns false if out of memory. */
static bool segment_table_add(struct flash *flash, struct segment *segment) {
    flash_lock(flash);
    if (flash->segment_count == flash->segment_capacity) {
        size_t capacity = flash->segment_capacity ? flash->segment_capacity * 2 : 64;
        struct segment **grown = realloc(flash->segments, capacity * sizeof(*grown));
        if (grown == NULL) {
            flash_unlock(flash);
            return false;
        }
        flash->segments = grown;
        flash->segment_capacity = capacity;
    }
    flash->segments[flash->segment_count++] = segment;
    flash->used += segment->size;
    flash_unlock(flash);
    return true;
}

/* Makes a segment of the open file FD (ID, SIZE bytes, records up to END) and adds it
 * to the table. Returns it, or NULL if out of memory (FD is then the caller's). */
static struct segment *segment_add(struct flash *flash, uint32_t id, int fd, uint64_t size,
                                   uint64_t end) {
    struct segment *segment = calloc(1, sizeof(*segment));
    if (segment == NULL) return NULL;
    segment->id = id;
    segment->fd = fd;
    segment->size = size;
    segment->end = end;
    atomic_init(&segment->references, 1);
    if (!segment_table_add(flash, segment)) {
        free(segment);
        return NULL;
    }
    return segment;
}

struct segment *flash_segment_open_existing(struct flash *flash, uint32_t id, uint64_t size) {
    char path[4096];
    segment_path(flash, id, path, sizeof(path));
    int fd = fault_fails(FAULT_open)
                 ? -1
                 : open(path, O_RDONLY | O_CLOEXEC | (flash->direct_io ? O_DIRECT : 0));
    if (fd < 0) return NULL;
    struct segment *segment = segment_add(flash, id, fd, size, size);
    if (segment == NULL) close(fd);
    return segment;
}

/* Creates segment file ID of SIZE bytes, allocated on disk, with its header block.
 * Returns the segment or NULL with errno set. */
static struct segment *segment_create(struct flash *flash, uint32_t id, uint64_t size) {
    char path[4096];
    segment_path(flash, id, path, sizeof(path));
    /* flash_open() probed whether the filesystem takes O_DIRECT. */
    int fd =
        fault_fails(FAULT_open)
            ? -1
            : open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | (flash->direct_io ? O_DIRECT : 0),
                   0644);
    if (fd < 0) return NULL;
    int error = fault_inject(FAULT_write);
    if (error == 0) error = posix_fallocate(fd, 0, (off_t)size);
    unsigned char *block = error == 0 ? aligned_alloc(FLASH_BLOCK, FLASH_BLOCK) : NULL;
    if (error == 0 && block == NULL) error = ENOMEM;
    if (error != 0) goto fail;
    memset(block, 0, FLASH_BLOCK);
    struct flash_segment_header header = {
        .magic = FLASH_SEGMENT_MAGIC,
        .version = FLASH_FORMAT_VERSION,
        .segment_id = id,
        .size = size,
        .created_ms = clock_realtime_ms(),
    };
    header.header_crc = crc32c(&header, offsetof(struct flash_segment_header, header_crc));
    memcpy(block, &header, sizeof(header));
    ssize_t written = fault_fails(FAULT_write) ? -1 : pwrite(fd, block, FLASH_BLOCK, 0);
    error = written == FLASH_BLOCK ? 0 : written < 0 ? errno : EIO;
    free(block);
    if (error != 0) goto fail;
    struct segment *segment = segment_add(flash, id, fd, size, FLASH_BLOCK);
    if (segment != NULL) return segment;
    error = ENOMEM;
fail:
    close(fd);
    unlink(path);
    errno = error;
    return NULL;
}

/* Takes the oldest segment out of the table, deletes its file and drops the table's
 * reference (reads in flight keep it open). */
static void segment_remove_oldest(struct flash *flash) {
    flash_lock(flash);
    struct segment *segment = flash->segments[0];
    memmove(flash->segments, flash->segments + 1,
            (flash->segment_count - 1) * sizeof(*flash->segments));
    flash->segment_count--;
    flash->used -= segment->size;
    flash_unlock(flash);
    char path[4096];
    segment_path(flash, segment->id, path, sizeof(path));
    unlink(path);
    segment_release(segment);
}

void flash_record_dead(struct flash *flash, uint32_t segment_id, size_t key_length,
                       uint64_t value_length) {
    uint64_t size = flash_record_size(key_length, value_length);
    flash_lock(flash);
    struct segment *segment = segment_find(flash, segment_id);
    if (segment != NULL) atomic_fetch_sub_explicit(&segment->live, size, memory_order_relaxed);
    flash_unlock(flash);
}

/* Adds SIZE live bytes to segment ID. */
static void record_live(struct flash *flash, uint32_t segment_id, uint64_t size) {
    flash_lock(flash);
    struct segment *segment = segment_find(flash, segment_id);
    if (segment != NULL) atomic_fetch_add_explicit(&segment->live, size, memory_order_relaxed);
    flash_unlock(flash);
}

/* Adds a flash entry's record to its segment's live bytes (after recovery). */
static void count_live(void *context, const void *key, size_t key_length, uint32_t segment_id,
                       uint32_t offset, uint64_t value_length, int64_t expire_at_ms) {
    (void)key;
    (void)offset;
    (void)expire_at_ms;
    struct flash *flash = context;
    flash_lock(flash);
    struct segment *segment = segment_find(flash, segment_id);
    if (segment != NULL) {
        atomic_fetch_add_explicit(&segment->live, flash_record_size(key_length, value_length),
                                  memory_order_relaxed);
    }
    flash_unlock(flash);
}

/* ---- the writer: staging and records ------------------------------------------ */

struct sync_operation {
    struct io_ring_operation operation;
    int result;
    bool done;
};

static void sync_operation_done(struct io_ring_operation *operation, int result) {
    struct sync_operation *sync = (struct sync_operation *)operation;
    sync->result = result;
    sync->done = true;
}

/* Writes LENGTH bytes (a multiple of FLASH_BLOCK) at OFFSET of FD through the writer's
 * ring and waits. Returns 0 or a negative errno. */
static int ring_write(struct flash *flash, int fd, const unsigned char *data, size_t length,
                      uint64_t offset) {
    ASSERT_WRITER(flash);
    while (length > 0) {
        struct sync_operation sync = {.operation.done = sync_operation_done};
        int result = io_ring_write(flash->ring, fd, data, length, offset, &sync.operation);
        if (result == 0) {
            while (!sync.done)
                io_ring_wait(flash->ring);
        } else {
            /* The ring refused the submission (the kernel never saw it): write directly,
             * on the writer thread, which may wait. */
            count(&flash->counters.submit_failures, 1);
            log_event(LOG_WARNING, "flash_submit_failed",
                      "operation=write error=\"%s\" then=pwrite", strerror(-result));
            ssize_t direct;
            do {
                direct = fault_fails(FAULT_write) ? -1 : pwrite(fd, data, length, (off_t)offset);
            } while (direct < 0 && errno == EINTR);
            sync.result = direct < 0 ? -errno : (int)direct;
        }
        if (sync.result < 0) return sync.result;
        if (sync.result == 0) return -EIO;
        /* A short write stops at a block boundary with O_DIRECT; go on from there. */
        size_t written = (size_t)sync.result & ~(size_t)(FLASH_BLOCK - 1);
        if (written == 0) return -EIO;
        data += written;
        length -= written;
        offset += written;
        count(&flash->counters.bytes_written, written);
    }
    return 0;
}

/* After a failed sync of the current segment: the records written to it since the last
 * good sync may be lost (the kernel may have dropped their pages and will not report it
 * again), so the index must stop pointing at them, and the segment takes no more
 * records. Each such record whose header can still be read is looked up: a flash entry
 * pointing at it is dropped and a tombstone queued (the record may have lasted after
 * all, and must not come back at the next start), a DRAM copy becomes uncertain. A
 * record that cannot be read back fails its checksum when read and is never served.
 * Called by the writer thread. */
static void abandon_unsynced(struct flash *flash) {
    ASSERT_WRITER(flash);
    struct segment *segment = flash->current;
    uint64_t dropped = 0;
    struct segment_reader reader;
    if (flash_reader_init(&reader, segment->fd, segment->end)) {
        uint64_t offset = flash->synced_end;
        struct flash_record_header header;
        const unsigned char *key;
        while (flash_reader_header(&reader, offset, segment->end - offset, &header, &key)) {
            if (!(header.flags & FLASH_FLAG_TOMBSTONE) &&
                flash_store_unsynced_record(flash->store, key, header.key_length, segment->id,
                                            (uint32_t)offset)) {
                flash_record_dead(flash, segment->id, header.key_length, header.value_length);
                dropped++;
            }
            offset += flash_record_size(header.key_length, header.value_length);
        }
        flash_reader_free(&reader);
    }
    log_event(LOG_ERROR, "flash_unsynced_records_dropped",
              "segment=%u from=%llu to=%llu dropped=%llu", segment->id,
              (unsigned long long)flash->synced_end, (unsigned long long)segment->end,
              (unsigned long long)dropped);
    flash->current = NULL;
    flash->staging_fill = 0;
    flash->staging_on_disk = 0;
    flash->dirty = false;
}

/* fdatasync of the current segment through the ring. On success everything written to
 * it so far is durable; on failure the unsynced records are given up (see
 * abandon_unsynced()), logged and counted. Returns 0 or a negative errno. */
static int ring_sync(struct flash *flash) {
    ASSERT_WRITER(flash);
    if (flash->current == NULL || !flash->dirty) return 0;
    struct sync_operation sync = {.operation.done = sync_operation_done};
    int result = io_ring_sync(flash->ring, flash->current->fd, &sync.operation);
    if (result == 0) {
        while (!sync.done)
            io_ring_wait(flash->ring);
        result = sync.result;
    } else {
        /* The ring refused the submission: the kernel never saw this sync, so nothing
         * was given up yet. Sync directly (the writer may wait); only its failure is a
         * failed sync. */
        count(&flash->counters.submit_failures, 1);
        log_event(LOG_WARNING, "flash_submit_failed", "operation=sync error=\"%s\" then=fdatasync",
                  strerror(-result));
        result = fault_fails(FAULT_sync) || fdatasync(flash->current->fd) != 0 ? -errno : 0;
    }
    flash->last_sync_ms = clock_monotonic_ms();
    if (result < 0) {
        char path[4096];
        segment_path(flash, flash->current->id, path, sizeof(path));
        log_event(LOG_ERROR, "flash_sync_failed", "segment=%s error=\"%s\"", path,
                  strerror(-result));
        count(&flash->counters.sync_errors, 1);
        abandon_unsynced(flash);
        return result;
    }
    flash->dirty = false;
    flash->synced_end = flash->current->end;
    return 0;
}

/* Writes what the staging buffer holds to the current segment, padded with zeros to a
 * block. With KEEP_TAIL a partial last block stays in the buffer (the next records
 * complete it and it is written again). A buffer the file already holds as it is (a
 * tail kept back, nothing appended since) is not written again: a rewrite could only
 * put the records already in it at risk. Returns 0 or a negative errno. */
static int staging_flush(struct flash *flash, bool keep_tail) {
    ASSERT_WRITER(flash);
    if (flash->staging_fill == 0) return 0;
    size_t padded = (flash->staging_fill + FLASH_BLOCK - 1) & ~(size_t)(FLASH_BLOCK - 1);
    if (flash->staging_fill > flash->staging_on_disk) {
        memset(flash->staging + flash->staging_fill, 0, padded - flash->staging_fill);
        flash->dirty = true; /* even a failed write may have changed the file */
        int result =
            ring_write(flash, flash->current->fd, flash->staging, padded, flash->staging_offset);
        if (result < 0) return result;
    }
    size_t whole = flash->staging_fill & ~(size_t)(FLASH_BLOCK - 1);
    if (!keep_tail || whole == flash->staging_fill) {
        flash->staging_offset += padded;
        flash->staging_fill = 0;
        flash->staging_on_disk = 0;
    } else {
        memmove(flash->staging, flash->staging + whole, flash->staging_fill - whole);
        flash->staging_offset += whole;
        flash->staging_fill -= whole;
        flash->staging_on_disk = flash->staging_fill;
    }
    return 0;
}

/* Appends LENGTH bytes to the staging buffer, writing it out each time it fills. */
static int staging_append(struct flash *flash, const void *data, size_t length) {
    ASSERT_WRITER(flash);
    const unsigned char *bytes = data;
    while (length > 0) {
        size_t room = STAGING_SIZE - flash->staging_fill;
        size_t piece = length < room ? length : room;
        memcpy(flash->staging + flash->staging_fill, bytes, piece);
        flash->staging_fill += piece;
        bytes += piece;
        length -= piece;
        if (flash->staging_fill == STAGING_SIZE) {
            int result = staging_flush(flash, false);
            if (result < 0) return result;
        }
    }
    return 0;
}

/* Tells the index about every record appended since the last time, with RESULT (0, or
 * the error that lost them), and wakes their waiters. */
static void complete_appended(struct flash *flash, int result) {
    ASSERT_WRITER(flash);
    struct pending_write *write = flash->appended;
    flash->appended = NULL;
    flash->appended_tail = &flash->appended;
    while (write != NULL) {
        struct pending_write *next = write->next;
        if (write->kind == WRITE_ITEM) {
            bool live = flash_store_item_written(flash->store, write->item, write->segment,
                                                 write->offset, result);
            if (live) record_live(flash, write->segment, write->record_size);
        }
        flash_lock(flash);
        if (write->ticket > flash->tickets_done) flash->tickets_done = write->ticket;
        if (result < 0 && write->ticket > flash->last_failed_ticket) {
            flash->last_failed_ticket = write->ticket;
        }
        flash_unlock(flash);
        if (result < 0) count(&flash->counters.write_errors, 1);
        if (write->demoting_bytes > 0) {
            atomic_fetch_sub_explicit(&flash->store->demoting_bytes, write->demoting_bytes,
                                      memory_order_relaxed);
        }
        free(write);
        write = next;
    }
    flash_lock(flash);
    flash->progress_count++;
    pthread_cond_broadcast(&flash->progress);
    flash_unlock(flash);
}

/* Writes out the staging buffer (keeping a partial block), syncs as the policy says,
 * and completes the appended records. Returns 0 or a negative errno. */
static int writer_checkpoint(struct flash *flash, bool keep_tail) {
    ASSERT_WRITER(flash);
    int result = 0;
    if (flash->current != NULL) {
        result = staging_flush(flash, keep_tail);
        if (result < 0) {
            char path[4096];
            segment_path(flash, flash->current->id, path, sizeof(path));
            log_event(LOG_ERROR, "flash_write_failed", "segment=%s error=\"%s\"", path,
                      strerror(-result));
        } else if (flash->fsync == STORE_FSYNC_ALWAYS) {
            result = ring_sync(flash); /* logs and counts a failure itself */
        }
    }
    complete_appended(flash, result);
    return result;
}

/* Ends the current segment: its records are written and synced (unless fsync is never)
 * and told to the index. After a write error the segment ends where it stood. */
static void seal_current(struct flash *flash) {
    ASSERT_WRITER(flash);
    if (flash->current == NULL) return;
    writer_checkpoint(flash, false);
    if (flash->fsync != STORE_FSYNC_NEVER) ring_sync(flash);
    flash->current = NULL;
    flash->staging_fill = 0;
    flash->staging_on_disk = 0;
    flash->dirty = false;
}

static void reclaim_oldest(struct flash *flash, uint64_t *reinsert_room);

/* Opens a new current segment with room for a record of RECORD_SIZE bytes, then
 * reclaims the oldest segments while the tier is over its capacity; records read since
 * they were written may be copied into the new segment, up to a quarter of it. When the
 * filesystem is full, the oldest segment goes first. Returns 0 or -errno. */
static int open_next_segment(struct flash *flash, uint64_t record_size) {
    ASSERT_WRITER(flash);
    seal_current(flash);
    uint64_t size = flash->segment_size;
    uint64_t needed = FLASH_BLOCK + record_size;
    if (needed > size) size = (needed + FLASH_BLOCK - 1) & ~(uint64_t)(FLASH_BLOCK - 1);
    struct segment *segment;
    for (;;) {
        segment = segment_create(flash, flash->next_segment_id, size);
        if (segment != NULL) break;
        int error = errno;
        uint64_t none = 0;
        if (error == ENOSPC && flash->segment_count > 0) {
            /* The filesystem is smaller than ssd-size: give up the oldest segment. */
            log_event(LOG_WARNING, "flash_full",
                      "directory=%s reason=\"no space left on the filesystem\" used=%llu",
                      flash->directory, (unsigned long long)flash->used);
            reclaim_oldest(flash, &none);
            continue;
        }
        log_event(LOG_ERROR, "flash_segment_failed", "directory=%s error=\"%s\"", flash->directory,
                  strerror(error));
        return -error;
    }
    flash->next_segment_id++;
    flash->current = segment;
    flash->staging_fill = 0;
    flash->staging_on_disk = 0;
    flash->staging_offset = FLASH_BLOCK;
    flash->synced_end = FLASH_BLOCK;
    uint64_t reinsert_room = size / REINSERT_SHARE;
    if (reinsert_room > size - needed) reinsert_room = size - needed;
    while (flash->segment_count > 1 && flash->used > flash->capacity) {
        reclaim_oldest(flash, &reinsert_room);
    }
    return 0;
}

/* Appends one record to the current segment (opening one if it lacks room) and sets
 * *SEGMENT and *OFFSET to where it went. VALUE may be NULL for a tombstone. */
static int append_record(struct flash *flash, const void *key, size_t key_length, const void *value,
                         uint64_t value_length, int64_t expire_at_ms, uint16_t flags,
                         uint32_t *segment, uint32_t *offset) {
    ASSERT_WRITER(flash);
    uint64_t size = flash_record_size(key_length, value_length);
    if (size > FLASH_MAX_RECORD) return -EFBIG;
    if (flash->current == NULL ||
        flash->staging_offset + flash->staging_fill + size > flash->current->size) {
        int result = open_next_segment(flash, size);
        if (result < 0) return result;
        if (flash->current == NULL) return -EIO; /* given up after a failed sync meanwhile */
    }
    struct flash_record_header header = {
        .magic = FLASH_RECORD_MAGIC,
        .version = FLASH_FORMAT_VERSION,
        .flags = flags,
        .key_length = (uint32_t)key_length,
        .value_length = value_length,
        .expire_at_ms = expire_at_ms,
        .sequence = flash->next_sequence++,
    };
    flash_header_seal(&header, key);
    static const unsigned char zeros[FLASH_RECORD_ALIGN];
    size_t key_padding = (size_t)(flash_value_offset(key_length) - sizeof(header) - key_length);
    uint32_t running = crc32c_update(CRC32C_START, &header, sizeof(header));
    running = crc32c_update(running, key, key_length);
    running = crc32c_update(running, zeros, key_padding);
    if (value_length > 0) running = crc32c_update(running, value, value_length);
    uint32_t record_crc = crc32c_finish(running);
    uint64_t start = flash->staging_offset + flash->staging_fill;
    size_t tail_padding = (size_t)(size - (flash_value_offset(key_length) + value_length + 4));
    int result = staging_append(flash, &header, sizeof(header));
    if (result == 0) result = staging_append(flash, key, key_length);
    if (result == 0) result = staging_append(flash, zeros, key_padding);
    if (result == 0 && value_length > 0) result = staging_append(flash, value, value_length);
    if (result == 0) result = staging_append(flash, &record_crc, sizeof(record_crc));
    if (result == 0) result = staging_append(flash, zeros, tail_padding);
    if (result < 0) return result;
    flash->current->end = start + size;
    *segment = flash->current->id;
    *offset = (uint32_t)start;
    return 0;
}

/* Writes one queued record. On failure it is completed at once with the error. */
static void process_write(struct flash *flash, struct pending_write *write) {
    ASSERT_WRITER(flash);
    int result;
    if (write->kind == WRITE_ITEM) {
        struct item *item = write->item;
        write->record_size = flash_record_size(item->key_length, item->value_length);
        result = append_record(flash, item->bytes, item->key_length, item_value(item),
                               item->value_length, item->expire_at_ms, 0, &write->segment,
                               &write->offset);
    } else {
        write->record_size = flash_record_size(write->key_length, 0);
        result = append_record(flash, write->key, write->key_length, NULL, 0, 0,
                               FLASH_FLAG_TOMBSTONE, &write->segment, &write->offset);
    }
    write->next = NULL;
    if (result < 0) {
        /* Complete what was appended before (tickets complete in queue order), then
         * this one with its error. */
        writer_checkpoint(flash, true);
        if (result != -EFBIG && flash->current != NULL) {
            /* Start afresh in a new segment, keeping what this one holds durable. */
            if (flash->fsync != STORE_FSYNC_NEVER) ring_sync(flash);
            flash->current = NULL;
            flash->staging_fill = 0;
            flash->staging_on_disk = 0;
        }
        flash->appended = write; /* the checkpoint left the list empty */
        flash->appended_tail = &write->next;
        complete_appended(flash, result);
        return;
    }
    *flash->appended_tail = write;
    flash->appended_tail = &write->next;
}

/* ---- reclaim ------------------------------------------------------------------ */

bool flash_reader_init(struct segment_reader *reader, int fd, uint64_t limit) {
    memset(reader, 0, sizeof(*reader));
    reader->fd = fd;
    reader->limit = limit;
    /* 8 MiB at a time, or the whole file when it is smaller. */
    uint64_t whole = (limit + FLASH_BLOCK - 1) & ~(uint64_t)(FLASH_BLOCK - 1);
    reader->capacity = whole < (8u << 20) ? (size_t)(whole > 0 ? whole : FLASH_BLOCK) : 8u << 20;
    reader->buffer = aligned_alloc(FLASH_BLOCK, reader->capacity);
    return reader->buffer != NULL;
}

void flash_reader_free(struct segment_reader *reader) {
    free(reader->buffer);
    free(reader->large);
}

/* Reads up to LENGTH bytes at OFFSET into TARGET, stopping early at the end of the file.
 * Returns the bytes read, or -1 on an error. */
static ssize_t read_up_to(int fd, unsigned char *target, size_t length, uint64_t offset) {
    size_t done = 0;
    while (done < length) {
        ssize_t got = fault_fails(FAULT_read)
                          ? -1
                          : pread(fd, target + done, length - done, (off_t)(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return -1;
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

bool flash_reader_header(struct segment_reader *reader, uint64_t offset, uint64_t limit,
                         struct flash_record_header *header, const unsigned char **key) {
    const unsigned char *bytes = flash_reader_at(reader, offset, sizeof(*header));
    if (bytes == NULL) return false;
    memcpy(header, bytes, sizeof(*header));
    if (header->magic != FLASH_RECORD_MAGIC || header->key_length > STORE_MAX_KEY_LENGTH) {
        return false;
    }
    bytes = flash_reader_at(reader, offset, sizeof(*header) + header->key_length);
    if (bytes == NULL || !flash_header_valid(header, bytes + sizeof(*header), limit)) return false;
    *key = bytes + sizeof(*header);
    return true;
}

const unsigned char *flash_reader_at(struct segment_reader *reader, uint64_t offset,
                                     size_t length) {
    if (offset > reader->limit || length > reader->limit - offset) return NULL;
    if (offset >= reader->buffer_offset &&
        offset + length <= reader->buffer_offset + reader->buffer_length) {
        return reader->buffer + (offset - reader->buffer_offset);
    }
    uint64_t start = offset & ~(uint64_t)(FLASH_BLOCK - 1);
    uint64_t end = (offset + length + FLASH_BLOCK - 1) & ~(uint64_t)(FLASH_BLOCK - 1);
    unsigned char *target = reader->buffer;
    size_t span = reader->capacity;
    if (end - start > reader->capacity) {
        if (reader->large_capacity < end - start) {
            free(reader->large);
            reader->large = aligned_alloc(FLASH_BLOCK, (size_t)(end - start));
            reader->large_capacity = reader->large != NULL ? (size_t)(end - start) : 0;
            if (reader->large == NULL) {
                reader->error = ENOMEM;
                return NULL;
            }
        }
        target = reader->large;
        span = (size_t)(end - start);
    }
    ssize_t got = read_up_to(reader->fd, target, span, start);
    if (got < 0) reader->error = errno != 0 ? errno : EIO;
    if (target == reader->buffer) {
        reader->buffer_offset = start;
        reader->buffer_length = got > 0 ? (size_t)got : 0;
    }
    if (got < 0 || (uint64_t)got < offset + length - start) return NULL; /* past the end */
    return target + (offset - start);
}

struct reinsertion {
    struct reinsertion *next;
    uint32_t old_offset;
    uint32_t segment;
    uint32_t offset;
    uint64_t record_size;
    size_t key_length;
    unsigned char key[];
};

/* Reclaims the oldest segment: records read since they were written are copied into
 * the current segment while they fit in *REINSERT_ROOM bytes (which shrinks by what
 * they take); the other live records leave the index; then the file is deleted. */
static void reclaim_oldest(struct flash *flash, uint64_t *reinsert_room) {
    ASSERT_WRITER(flash);
    struct segment *segment = flash->segments[0];
    if (segment == flash->current) return;
    /* With write-through, a value still in DRAM whose copy goes with this segment is
     * written again, while live data fills less than half the tier (beyond that, more is
     * live than flash can hold, and rewriting would only chase its own tail). */
    uint64_t live_bytes = 0;
    flash_lock(flash);
    for (size_t i = 0; i < flash->segment_count; i++)
        live_bytes += atomic_load_explicit(&flash->segments[i]->live, memory_order_relaxed);
    flash_unlock(flash);
    flash->rewrite_copies = flash->write_through && live_bytes < flash->capacity / 2;
    struct segment_reader reader;
    uint64_t dropped = 0, reinserted = 0;
    int read_error = ENOMEM; /* until the reader says otherwise */
    uint64_t offset = FLASH_BLOCK;
    struct reinsertion *reinsertions = NULL;
    if (flash_reader_init(&reader, segment->fd, segment->end)) {
        struct flash_record_header header;
        const unsigned char *key;
        while (flash_reader_header(&reader, offset, segment->end - offset, &header, &key)) {
            uint64_t size = flash_record_size(header.key_length, header.value_length);
            const unsigned char *record = flash_reader_at(&reader, offset, (size_t)size);
            if (record == NULL) break;
            key = record + sizeof(header);
            if (!(header.flags & FLASH_FLAG_TOMBSTONE)) {
                bool may_reinsert =
                    flash->current != NULL && *reinsert_room >= size &&
                    flash->staging_offset + flash->staging_fill + size <= flash->current->size;
                bool accessed = false;
                int64_t expire_at_ms = 0;
                int live =
                    flash_store_reclaim_record(flash->store, key, header.key_length, segment->id,
                                               (uint32_t)offset, false, &accessed, &expire_at_ms);
                if (live && accessed && may_reinsert && flash_record_valid(record)) {
                    struct reinsertion *entry = malloc(sizeof(*entry) + header.key_length);
                    uint32_t new_segment, new_offset;
                    if (entry != NULL &&
                        append_record(flash, key, header.key_length,
                                      record + flash_value_offset(header.key_length),
                                      header.value_length, expire_at_ms, 0, &new_segment,
                                      &new_offset) == 0) {
                        entry->old_offset = (uint32_t)offset;
                        entry->segment = new_segment;
                        entry->offset = new_offset;
                        entry->record_size = size;
                        entry->key_length = header.key_length;
                        memcpy(entry->key, key, header.key_length);
                        entry->next = reinsertions;
                        reinsertions = entry;
                        *reinsert_room -= size;
                    } else {
                        free(entry);
                        live = flash_store_reclaim_record(flash->store, key, header.key_length,
                                                          segment->id, (uint32_t)offset, true,
                                                          &accessed, &expire_at_ms);
                        dropped += (uint64_t)live;
                    }
                } else if (live) {
                    live = flash_store_reclaim_record(flash->store, key, header.key_length,
                                                      segment->id, (uint32_t)offset, true,
                                                      &accessed, &expire_at_ms);
                    dropped += (uint64_t)live;
                }
            }
            offset += size;
        }
        read_error = reader.error;
        flash_reader_free(&reader);
    }
    if (reinsertions != NULL) {
        int result = writer_checkpoint(flash, true);
        while (reinsertions != NULL) {
            struct reinsertion *entry = reinsertions;
            reinsertions = entry->next;
            if (result == 0 &&
                flash_store_reinserted(flash->store, entry->key, entry->key_length, segment->id,
                                       entry->old_offset, entry->segment, entry->offset)) {
                record_live(flash, entry->segment, entry->record_size);
                reinserted++;
            } else {
                if (result != 0) count(&flash->counters.write_errors, 1); /* a lost copy */
                bool accessed;
                int64_t expire_at_ms;
                dropped += (uint64_t)flash_store_reclaim_record(
                    flash->store, entry->key, entry->key_length, segment->id, entry->old_offset,
                    true, &accessed, &expire_at_ms);
            }
            free(entry);
        }
    }
    if (read_error != 0 || offset < segment->end) {
        /* The walk stopped short (an I/O error, or a header it could not trust: a write
         * that failed midway leaves one). Records past it would keep index entries, and
         * DRAM items their copies, pointing at a file about to go: find them in the index
         * instead, after the copies above have moved theirs. */
        if (read_error != 0) {
            count(&flash->counters.read_errors, 1);
            log_event(LOG_ERROR, "flash_read_failed", "segment=%u during=reclaim error=\"%s\"",
                      segment->id, strerror(read_error));
        } else {
            log_event(LOG_WARNING, "flash_reclaim_stopped_short", "segment=%u offset=%llu end=%llu",
                      segment->id, (unsigned long long)offset, (unsigned long long)segment->end);
        }
        dropped += flash_store_drop_segment(flash->store, segment->id);
    }
    count(&flash->counters.reclaims, 1);
    count(&flash->counters.reinsertions, reinserted);
    count(&flash->counters.evictions, dropped);
    log_event(LOG_INFO, "flash_reclaim", "segment=%u dropped=%llu reinserted=%llu", segment->id,
              (unsigned long long)dropped, (unsigned long long)reinserted);
    segment_remove_oldest(flash);
}

/* ---- the writer thread -------------------------------------------------------- */

static void *writer_main(void *argument) {
    struct flash *flash = argument;
    atomic_store_explicit(&flash->writer_thread, check_thread(), memory_order_relaxed);
    flash_lock(flash);
    for (;;) {
        while (flash->queue_head == NULL && !flash->stopping) {
            /* Every demotion ends in complete_appended(): none may be left counted. */
            STRATA_ASSERT(
                atomic_load_explicit(&flash->store->demoting_bytes, memory_order_relaxed) == 0);
            if (flash->fsync == STORE_FSYNC_EVERYSEC && flash->dirty) {
                flash_unlock(flash);
                if (clock_monotonic_ms() - flash->last_sync_ms >= 1000) ring_sync(flash);
                flash_lock(flash);
            }
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            flash_wait(flash, &flash->work, &until);
        }
        if (flash->queue_head == NULL) break; /* stopping, and nothing is left */
        struct pending_write *batch = flash->queue_head;
        flash->queue_head = NULL;
        flash->queue_tail = NULL;
        flash->writer_busy = true;
        flash_unlock(flash);
        while (batch != NULL) {
            struct pending_write *next = batch->next;
            process_write(flash, batch);
            batch = next;
        }
        writer_checkpoint(flash, true);
        if (flash->fsync == STORE_FSYNC_EVERYSEC && flash->dirty &&
            clock_monotonic_ms() - flash->last_sync_ms >= 1000) {
            ring_sync(flash);
        }
        flash_lock(flash);
        flash->writer_busy = false;
        flash->progress_count++;
        pthread_cond_broadcast(&flash->progress);
    }
    flash_unlock(flash);
    seal_current(flash);
    return NULL;
}

/* Appends WRITE to the queue and wakes the writer. Returns its ticket. */
static uint64_t enqueue(struct flash *flash, struct pending_write *write) {
    write->next = NULL;
    flash_lock(flash);
    /* Counted under the lock, so that the writer, finding the queue empty, finds no
     * demotion under way either (checked in writer_main()). */
    if (write->demoting_bytes > 0) {
        atomic_fetch_add_explicit(&flash->store->demoting_bytes, write->demoting_bytes,
                                  memory_order_relaxed);
    }
    write->ticket = ++flash->tickets_issued;
    uint64_t ticket = write->ticket;
    if (flash->queue_tail != NULL) {
        flash->queue_tail->next = write;
    } else {
        flash->queue_head = write;
    }
    flash->queue_tail = write;
    pthread_cond_signal(&flash->work);
    flash_unlock(flash);
    return ticket;
}

bool flash_accepts(const struct flash *flash, size_t key_length, uint64_t value_length) {
    uint64_t size = flash_record_size(key_length, value_length);
    return size <= FLASH_MAX_RECORD && FLASH_BLOCK + size <= flash->capacity / 2;
}

uint64_t flash_queue_item(struct flash *flash, struct item *item, bool demote) {
    ASSERT_SHARD_LOCKED(
        shard_for(flash->store, hash_key(flash->store, item->bytes, item->key_length)));
    struct pending_write *write = calloc(1, sizeof(*write));
    if (write == NULL) {
        /* Nothing will be written; an older record of the key may be there, so a later
         * delete must still leave a tombstone. */
        if (item->flash_segment == 0) item->flash_segment = FLASH_UNKNOWN;
        count(&flash->counters.write_errors, 1);
        return 0;
    }
    item_retain(item);
    item->flash_segment = FLASH_PENDING;
    write->kind = WRITE_ITEM;
    write->item = item;
    if (demote) write->demoting_bytes = queue_weight(item); /* counted by enqueue() */
    return enqueue(flash, write);
}

uint64_t flash_queue_tombstone(struct flash *flash, const void *key, size_t key_length) {
    /* Under the key's shard lock, so that no newer write of the key is queued before it. */
    ASSERT_SHARD_LOCKED(shard_for(flash->store, hash_key(flash->store, key, key_length)));
    struct pending_write *write = calloc(1, sizeof(*write) + key_length);
    if (write == NULL) {
        count(&flash->counters.write_errors, 1);
        return 0;
    }
    write->kind = WRITE_TOMBSTONE;
    write->key_length = key_length;
    memcpy(write->key, key, key_length);
    return enqueue(flash, write);
}

int flash_wait_tickets(struct flash *flash, uint64_t first, uint64_t last) {
    flash_lock(flash);
    while (flash->tickets_done < last)
        flash_wait(flash, &flash->progress, NULL);
    int result = flash->last_failed_ticket >= first ? -EIO : 0;
    flash_unlock(flash);
    return result;
}

bool flash_write_through(const struct flash *flash) {
    return flash->write_through;
}

bool flash_rewrite_copies(const struct flash *flash) {
    return flash->rewrite_copies;
}

bool flash_wait_progress(struct flash *flash, int64_t deadline_ms) {
    flash_lock(flash);
    uint64_t seen = flash->progress_count;
    bool progressed = false;
    while (!progressed) {
        if (flash->queue_head == NULL && !flash->writer_busy) {
            /* Idle: what the caller saw under way has finished, perhaps just before
             * this call read the count; waiting for more would wait for nothing. */
            progressed = true;
            break;
        }
        int64_t left = deadline_ms - clock_monotonic_ms();
        if (left <= 0) break;
        if (left > 50) left = 50;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)(left * 1000000);
        until.tv_sec += until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        flash_wait(flash, &flash->progress, &until);
        progressed = flash->progress_count != seen;
    }
    flash_unlock(flash);
    return progressed;
}

void flash_drain(struct flash *flash) {
    flash_lock(flash);
    while (flash->queue_head != NULL || flash->writer_busy)
        flash_wait(flash, &flash->progress, NULL);
    flash_unlock(flash);
}

int64_t flash_pace_timeout(const struct flash *flash) {
    return atomic_load_explicit(&flash->pace_timeout_ms, memory_order_relaxed);
}

void flash_set_pace_timeout(struct flash *flash, int64_t milliseconds) {
    atomic_store_explicit(&flash->pace_timeout_ms, milliseconds, memory_order_relaxed);
}

/* ---- reads -------------------------------------------------------------------- */

bool flash_read_prepare(struct flash *flash, const struct flash_entry *entry, uint64_t hash,
                        struct flash_read *read) {
    memset(read, 0, sizeof(*read));
    size_t key_length = entry->key_length & ENTRY_KEY_LENGTH;
    read->key = malloc(key_length ? key_length : 1);
    if (read->key == NULL) return false;
    memcpy(read->key, entry->key, key_length);
    read->flash = flash;
    read->hash = hash;
    read->segment_id = entry->segment;
    read->offset = entry->offset;
    read->value_length = entry->value_length;
    read->key_length = (uint32_t)key_length;
    read->expire_at_ms = flash_entry_expiry_ms(entry);
    read->accessed_before = (entry->key_length & ENTRY_ACCESSED) != 0;
    flash_lock(flash);
    read->segment = segment_find(flash, entry->segment);
    if (read->segment != NULL) {
        atomic_fetch_add_explicit(&read->segment->references, 1, memory_order_relaxed);
    }
    flash_unlock(flash);
    return true;
}

void flash_read_finish(struct flash_read *read) {
    if (read->segment != NULL) segment_release(read->segment);
    read->segment = NULL;
    free(read->key);
    read->key = NULL;
    if (read->allocation != NULL) {
        budget_uncharge(read->flash->store, memory_footprint(read->allocation));
        free(read->allocation);
        read->allocation = NULL;
    }
}

/* Checks the record read into READ's buffer and turns it into a value block. */
static void read_complete(struct flash_read *read, int result) {
    struct flash *flash = read->flash;
    if (result < 0 || (size_t)result < read->read_length) {
        if (result < 0) {
            count(&flash->counters.read_errors, 1);
            log_event(LOG_ERROR, "flash_read_failed", "segment=%u offset=%u error=\"%s\"",
                      read->segment_id, read->offset, strerror(-result));
        }
        read->done(read, result < 0 ? STORE_IO_ERROR : STORE_NOT_FOUND, NULL);
        return;
    }
    count(&flash->counters.reads, 1);
    count(&flash->counters.bytes_read, read->read_length);
    unsigned char *record = read->buffer + read->record_delta;
    struct flash_record_header header;
    memcpy(&header, record, sizeof(header));
    bool valid = flash_header_valid(&header, record + sizeof(header), read->segment->size) &&
                 header.key_length == read->key_length &&
                 header.value_length == read->value_length &&
                 !(header.flags & FLASH_FLAG_TOMBSTONE) &&
                 memcmp(record + sizeof(header), read->key, read->key_length) == 0 &&
                 flash_record_valid(record);
    if (!valid) {
        read->damaged = true;
        count(&flash->counters.checksum_failures, 1);
        char quoted[256];
        log_event(LOG_ERROR, "flash_checksum_failed", "key=%s segment=%u offset=%u",
                  log_quote(quoted, sizeof(quoted), (const char *)read->key, read->key_length),
                  read->segment_id, read->offset);
        read->done(read, STORE_NOT_FOUND, NULL);
        return;
    }
    /* Build the value block in place, just before the value: no copy. */
    unsigned char *value = record + flash_value_offset(read->key_length);
    struct value_block *block =
        value_block_init(value - sizeof(struct value_block), read->value_length);
    block->allocation = read->allocation;
    block->charged_to = flash->store;
    block->charge = memory_footprint(read->allocation);
    block->length = read->value_length;
    read->allocation = NULL;
    read->done(read, STORE_OK, block);
}

static void read_operation_done(struct io_ring_operation *operation, int result) {
    read_complete((struct flash_read *)operation, result);
}

enum store_status flash_read_start(struct flash_read *read, bool async) {
    struct flash *flash = read->flash;
    if (read->segment == NULL) return STORE_NOT_FOUND;
    uint64_t record_start = read->offset;
    uint64_t aligned_start = record_start & ~(uint64_t)(FLASH_BLOCK - 1);
    uint64_t record_size = flash_record_size(read->key_length, read->value_length);
    uint64_t aligned_end =
        (record_start + record_size + FLASH_BLOCK - 1) & ~(uint64_t)(FLASH_BLOCK - 1);
    read->read_length = (size_t)(aligned_end - aligned_start);
    read->record_delta = (size_t)(record_start - aligned_start);
    size_t value_delta = read->record_delta + (size_t)flash_value_offset(read->key_length);
    size_t lead = value_delta >= sizeof(struct value_block) ? 0 : FLASH_BLOCK;
    size_t total = lead + read->read_length;
    /* Charge an upper estimate before taking the memory, then settle. */
    uint64_t estimate = total + FLASH_BLOCK + 64;
    enum store_status status = budget_charge(flash->store, estimate);
    if (status != STORE_OK) return status;
    read->allocation = aligned_alloc(FLASH_BLOCK, total);
    if (read->allocation == NULL) {
        budget_uncharge(flash->store, estimate);
        return STORE_ALLOCATION_FAILED;
    }
    uint64_t footprint = memory_footprint(read->allocation);
    if (footprint <= estimate) {
        budget_uncharge(flash->store, estimate - footprint);
    } else if (!budget_try_charge(flash->store, footprint - estimate)) {
        budget_uncharge(flash->store, estimate);
        free(read->allocation);
        read->allocation = NULL;
        return STORE_NO_MEMORY;
    }
    read->buffer = (unsigned char *)read->allocation + lead;
    struct io_ring *ring = async ? io_ring_current() : NULL;
    if (ring != NULL) {
        read->operation.done = read_operation_done;
        int submitted = io_ring_read(ring, read->segment->fd, read->buffer, read->read_length,
                                     aligned_start, &read->operation);
        if (submitted == 0) return STORE_PENDING;
        /* Not a blocking pread instead: the caller's thread must not wait for flash. */
        count(&flash->counters.submit_failures, 1);
        count(&flash->counters.read_errors, 1);
        log_event(LOG_ERROR, "flash_read_failed", "segment=%u offset=%u error=\"%s\"",
                  read->segment_id, read->offset, strerror(-submitted));
        return STORE_IO_ERROR;
    }
    size_t done = 0;
    int result = 0;
    while (done < read->read_length) {
        ssize_t got = fault_fails(FAULT_read)
                          ? -1
                          : pread(read->segment->fd, read->buffer + done, read->read_length - done,
                                  (off_t)(aligned_start + done));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            result = -errno;
            break;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    read_complete(read, result < 0 ? result : (int)done);
    return STORE_OK;
}

/* ---- opening and closing ------------------------------------------------------ */

/* Creates DIRECTORY and its parents. */
static int make_directories(const char *directory) {
    char path[4096];
    snprintf(path, sizeof(path), "%s", directory);
    for (char *slash = path + 1; *slash != '\0'; slash++) {
        if (*slash != '/') continue;
        *slash = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return -1;
        *slash = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

void flash_set_recovery(struct flash *flash, const char *source, uint64_t milliseconds,
                        uint64_t items, uint64_t next_sequence) {
    flash_lock(flash);
    flash->recovery_source = source;
    flash->recovery_ms = milliseconds;
    flash->recovered_items = items;
    flash_unlock(flash);
    /* The writer's: it takes no record before recovery ends (writes are refused). */
    flash->next_sequence = next_sequence;
    for (size_t i = 0; i < flash->segment_count; i++) {
        if (flash->segments[i]->id >= flash->next_segment_id) {
            flash->next_segment_id = flash->segments[i]->id + 1;
        }
    }
}

static void flash_free(struct flash *flash) {
    while (flash->segment_count > 0) {
        segment_release(flash->segments[--flash->segment_count]);
    }
    free(flash->segments);
    io_ring_destroy(flash->ring);
    free(flash->staging);
    if (flash->lock_fd >= 0) close(flash->lock_fd);
    pthread_mutex_destroy(&flash->lock);
    pthread_cond_destroy(&flash->work);
    pthread_cond_destroy(&flash->progress);
    free(flash->directory);
    free(flash);
}

/* The recovery thread: rebuilds the index (from the saved one, or by a scan) while the
 * server already answers, then lets the store serve. */
static void *recovery_main(void *argument) {
    struct flash *flash = argument;
    atomic_store_explicit(&flash->recovery_thread, check_thread(), memory_order_relaxed);
    if (flash_rebuild_index(flash)) {
        flash_store_visit(flash->store, count_live, flash);
        flash->recovery_complete = true;
        store_recovery_done(flash->store);
    }
    return NULL;
}

struct flash *flash_open(struct store *store, const struct store_flash_config *config, char *error,
                         size_t error_size) {
    if (config->segment_size < 1024 * 1024 || config->segment_size > (1ull << 32) - FLASH_BLOCK ||
        config->segment_size % FLASH_BLOCK != 0) {
        snprintf(error, error_size,
                 "segment-size must be a multiple of 4096 between 1mb and 4gb - 4096");
        return NULL;
    }
    if (config->size < 2 * config->segment_size) {
        snprintf(error, error_size, "ssd-size must hold at least two segments (2 x segment-size)");
        return NULL;
    }
    struct flash *flash = calloc(1, sizeof(*flash));
    if (flash == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    flash->store = store;
    flash->directory = strdup(config->directory);
    flash->capacity = config->size;
    flash->segment_size = config->segment_size;
    flash->write_through = config->write_through;
    flash->fsync = config->fsync;
    atomic_init(&flash->pace_timeout_ms, config->pace_timeout_ms);
    flash->lock_fd = -1;
    flash->direct_io = true;
    flash->appended_tail = &flash->appended;
    flash->next_segment_id = 1;
    flash->next_sequence = 1;
    flash->recovery_source = "empty";
    pthread_mutex_init(&flash->lock, NULL);
    pthread_cond_init(&flash->work, NULL);
    pthread_cond_init(&flash->progress, NULL);
    flash->staging = aligned_alloc(FLASH_BLOCK, STAGING_SIZE);
    if (flash->directory == NULL || flash->staging == NULL) {
        snprintf(error, error_size, "out of memory");
        flash_free(flash);
        return NULL;
    }
    if (make_directories(flash->directory) != 0) {
        snprintf(error, error_size, "cannot create ssd-dir %s: %s", flash->directory,
                 strerror(errno));
        flash_free(flash);
        return NULL;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/lock", flash->directory);
    flash->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (flash->lock_fd < 0 || flock(flash->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(error, error_size, "ssd-dir %s is in use by another strata-server (%s)",
                 flash->directory, strerror(errno));
        flash_free(flash);
        return NULL;
    }
    /* Does the filesystem take O_DIRECT? Probe once with the lock file's directory. */
    snprintf(path, sizeof(path), "%s/.direct-probe", flash->directory);
    int probe = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_DIRECT, 0644);
    if (probe < 0 && errno == EINVAL) {
        flash->direct_io = false;
        log_event(LOG_WARNING, "flash_buffered_io",
                  "directory=%s reason=\"the filesystem refuses O_DIRECT\"", flash->directory);
    }
    if (probe >= 0) close(probe);
    unlink(path);
    flash->ring = io_ring_create(64, error, error_size);
    if (flash->ring == NULL) {
        flash_free(flash);
        return NULL;
    }
    store->flash = flash; /* recovery links flash entries, which count themselves here */
    if (flash_open_segments(flash, error, error_size) != 0) {
        store->flash = NULL;
        flash_free(flash);
        return NULL;
    }
    /* The writer waits for work; none comes before recovery ends (writes are refused
     * until then: store_recovering()). */
    if (pthread_create(&flash->writer, NULL, writer_main, flash) != 0) {
        snprintf(error, error_size, "cannot start the flash writer thread");
        store->flash = NULL;
        flash_free(flash);
        return NULL;
    }
    flash->writer_started = true;
    flash->recovery_source = "in-progress";
    if (pthread_create(&flash->recovery, NULL, recovery_main, flash) != 0) {
        snprintf(error, error_size, "cannot start the flash recovery thread");
        flash_close(flash, false);
        store->flash = NULL;
        return NULL;
    }
    flash->recovery_started = true;
    return flash;
}

bool flash_stop_recovery(struct flash *flash) {
    if (flash->recovery_started) {
        atomic_store_explicit(&flash->recovery_cancelled, true, memory_order_release);
        pthread_join(flash->recovery, NULL);
        flash->recovery_started = false;
    }
    return flash->recovery_complete;
}

void flash_close(struct flash *flash, bool save_index) {
    if (flash == NULL) return;
    /* An index only partly rebuilt must not be saved: the next start scans again. */
    if (!flash_stop_recovery(flash)) save_index = false;
    if (flash->writer_started) {
        flash_lock(flash);
        flash->stopping = true;
        pthread_cond_signal(&flash->work);
        flash_unlock(flash);
        pthread_join(flash->writer, NULL);
    }
    if (save_index) flash_save_index(flash);
    flash_free(flash);
}

void flash_get_stats(struct flash *flash, struct flash_stats *stats) {
    memset(stats, 0, sizeof(*stats));
    stats->capacity = flash->capacity;
    flash_lock(flash);
    stats->used = flash->used;
    stats->segments = flash->segment_count;
    for (size_t i = 0; i < flash->segment_count; i++) {
        stats->live += atomic_load_explicit(&flash->segments[i]->live, memory_order_relaxed);
    }
    stats->recovery_ms = flash->recovery_ms;
    stats->recovered_items = flash->recovered_items;
    stats->recovery_source = flash->recovery_source;
    flash_unlock(flash);
    struct flash_counters *counters = &flash->counters;
#define LOAD(field) atomic_load_explicit(&counters->field, memory_order_relaxed)
    stats->items = LOAD(items);
    stats->index_bytes = LOAD(index_bytes);
    stats->bytes_written = LOAD(bytes_written);
    stats->bytes_read = LOAD(bytes_read);
    stats->reads = LOAD(reads);
    stats->promotions = LOAD(promotions);
    stats->reclaims = LOAD(reclaims);
    stats->reinsertions = LOAD(reinsertions);
    stats->evictions = LOAD(evictions);
    stats->paced_writes = LOAD(paced_writes);
    stats->pace_timeouts = LOAD(pace_timeouts);
    stats->write_errors = LOAD(write_errors);
    stats->sync_errors = LOAD(sync_errors);
    stats->read_errors = LOAD(read_errors);
    stats->submit_failures = LOAD(submit_failures);
    stats->blocking_reads = LOAD(blocking_reads);
    stats->checksum_failures = LOAD(checksum_failures);
#undef LOAD
    stats->direct_io = flash->direct_io;
}
