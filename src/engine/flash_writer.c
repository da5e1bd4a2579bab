/* The flash tier's writer thread (see flash.h and docs/flash-tier.md).
 *
 * One writer thread owns the current segment and a staging buffer. It takes queued
 * writes in batches, lays their records out in the staging buffer and writes it with
 * O_DIRECT through its own io_uring; then it tells the index (tier_index.item_written)
 * where each record went. */
#include "engine/flash_internal.h"

#include "base/checks.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/fault.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Share of a new segment that records reinserted by reclaim may fill. */
#define REINSERT_SHARE 4

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
            count(&flash->tier.counters.submit_failures, 1);
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
        count(&flash->tier.counters.bytes_written, written);
    }
    return 0;
}

/* After a failed sync of the current segment: the records written to it since the last
 * good sync may be lost (the kernel may have dropped their pages and will not report it
 * again), so the index must stop pointing at them, and the segment takes no more
 * records. Each such record whose header can still be read is looked up: a flash stub
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
                FLASH_INDEX(flash)->unsynced_record(FLASH_OWNER(flash), key, header.key_length,
                                                    segment->id, (uint32_t)offset)) {
                flash_record_dead(&flash->tier, segment->id, header.key_length,
                                  header.value_length);
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
        count(&flash->tier.counters.submit_failures, 1);
        log_event(LOG_WARNING, "flash_submit_failed", "operation=sync error=\"%s\" then=fdatasync",
                  strerror(-result));
        result = fault_fails(FAULT_sync) || fdatasync(flash->current->fd) != 0 ? -errno : 0;
    }
    flash->last_sync_ms = clock_monotonic_ms();
    if (result < 0) {
        char path[4096];
        flash_segment_path(flash, flash->current->id, path, sizeof(path));
        log_event(LOG_ERROR, "flash_sync_failed", "segment=%s error=\"%s\"", path,
                  strerror(-result));
        count(&flash->tier.counters.sync_errors, 1);
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
            bool live = FLASH_INDEX(flash)->item_written(FLASH_OWNER(flash), write->item,
                                                         write->segment, write->offset, result);
            if (live) flash_record_live(flash, write->segment, write->record_size);
        }
        flash_lock(flash);
        if (write->ticket > flash->tickets_done) flash->tickets_done = write->ticket;
        if (result < 0 && write->ticket > flash->last_failed_ticket) {
            flash->last_failed_ticket = write->ticket;
        }
        flash_unlock(flash);
        if (result < 0) count(&flash->tier.counters.write_errors, 1);
        if (write->demoting_bytes > 0) {
            atomic_fetch_sub_explicit(flash->tier.owner.demoting_bytes, write->demoting_bytes,
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

int flash_writer_checkpoint(struct flash *flash, bool keep_tail) {
    ASSERT_WRITER(flash);
    int result = 0;
    if (flash->current != NULL) {
        result = staging_flush(flash, keep_tail);
        if (result < 0) {
            char path[4096];
            flash_segment_path(flash, flash->current->id, path, sizeof(path));
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
    flash_writer_checkpoint(flash, false);
    if (flash->fsync != STORE_FSYNC_NEVER) ring_sync(flash);
    flash->current = NULL;
    flash->staging_fill = 0;
    flash->staging_on_disk = 0;
    flash->dirty = false;
}

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
        segment = flash_segment_create(flash, flash->next_segment_id, size);
        if (segment != NULL) break;
        int error = errno;
        uint64_t none = 0;
        if (error == ENOSPC && flash->segment_count > 0) {
            /* The filesystem is smaller than ssd-size: give up the oldest segment. */
            log_event(LOG_WARNING, "flash_full",
                      "directory=%s reason=\"no space left on the filesystem\" used=%llu",
                      flash->directory, (unsigned long long)flash->used);
            flash_reclaim_oldest(flash, &none);
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
        flash_reclaim_oldest(flash, &reinsert_room);
    }
    return 0;
}

int flash_append_record(struct flash *flash, const void *key, size_t key_length, const void *value,
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
        /* EXPIRE may change the expiry meanwhile, under the shard lock this thread does
         * not hold: an atomic load gets the old or the new one (store_set_expiry()). */
        int64_t expire_at_ms = __atomic_load_n(&item->expire_at_ms, __ATOMIC_RELAXED);
        uint16_t flags = (uint16_t)((((unsigned)item->flags & ITEM_TYPE_MASK) >> ITEM_TYPE_SHIFT)
                                    << FLASH_FLAG_TYPE_SHIFT);
        result = flash_append_record(flash, item->bytes, item->key_length, item_value(item),
                                     item->value_length, expire_at_ms, flags, &write->segment,
                                     &write->offset);
    } else {
        write->record_size = flash_record_size(write->key_length, 0);
        result = flash_append_record(flash, write->key, write->key_length, NULL, 0, 0,
                                     FLASH_FLAG_TOMBSTONE, &write->segment, &write->offset);
    }
    write->next = NULL;
    if (result < 0) {
        /* Complete what was appended before (tickets complete in queue order), then
         * this one with its error. */
        flash_writer_checkpoint(flash, true);
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

/* ---- the writer thread -------------------------------------------------------- */

void *flash_writer_main(void *argument) {
    struct flash *flash = argument;
    atomic_store_explicit(&flash->writer_thread, check_thread(), memory_order_relaxed);
    flash_lock(flash);
    for (;;) {
        while (flash->queue_head == NULL && !flash->stopping) {
            /* Every demotion ends in complete_appended(): none may be left counted. */
            STRATA_ASSERT(
                atomic_load_explicit(flash->tier.owner.demoting_bytes, memory_order_relaxed) == 0);
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
        flash_writer_checkpoint(flash, true);
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
        atomic_fetch_add_explicit(flash->tier.owner.demoting_bytes, write->demoting_bytes,
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

bool flash_accepts(const struct tier *tier, size_t key_length, uint64_t value_length) {
    const struct flash *flash = flash_of(tier);
    uint64_t size = flash_record_size(key_length, value_length);
    return size <= FLASH_MAX_RECORD && FLASH_BLOCK + size <= flash->capacity / 2;
}

uint64_t flash_queue_item(struct tier *tier, struct item *item, bool demote) {
    struct flash *flash = flash_of(tier);
    STRATA_ASSERT(
        FLASH_INDEX(flash)->key_locked(FLASH_OWNER(flash), item->bytes, item->key_length));
    struct pending_write *write = calloc(1, sizeof(*write));
    if (write == NULL) {
        /* Nothing will be written; an older record of the key may be there, so a later
         * delete must still leave a tombstone. */
        if (item->flash_segment == 0) item->flash_segment = FLASH_UNKNOWN;
        count(&flash->tier.counters.write_errors, 1);
        return 0;
    }
    item_retain(item);
    item->flash_segment = FLASH_PENDING;
    write->kind = WRITE_ITEM;
    write->item = item;
    if (demote) write->demoting_bytes = queue_weight(item); /* counted by enqueue() */
    return enqueue(flash, write);
}

uint64_t flash_queue_tombstone(struct tier *tier, const void *key, size_t key_length) {
    struct flash *flash = flash_of(tier);
    /* Under the key's shard lock, so that no newer write of the key is queued before it. */
    STRATA_ASSERT(FLASH_INDEX(flash)->key_locked(FLASH_OWNER(flash), key, key_length));
    struct pending_write *write = calloc(1, sizeof(*write) + key_length);
    if (write == NULL) {
        count(&flash->tier.counters.write_errors, 1);
        return 0;
    }
    write->kind = WRITE_TOMBSTONE;
    write->key_length = key_length;
    memcpy(write->key, key, key_length);
    return enqueue(flash, write);
}

int flash_wait_tickets(struct tier *tier, uint64_t first, uint64_t last) {
    struct flash *flash = flash_of(tier);
    STRATA_ASSERT(!flash_on_writer(tier)); /* the writer never waits for itself */
    flash_lock(flash);
    while (flash->tickets_done < last)
        flash_wait(flash, &flash->progress, NULL);
    int result = flash->last_failed_ticket >= first ? -EIO : 0;
    flash_unlock(flash);
    return result;
}

bool flash_write_through(const struct tier *tier) {
    return flash_of(tier)->write_through;
}

bool flash_rewrite_copies(const struct tier *tier) {
    return flash_of(tier)->rewrite_copies;
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

bool flash_tier_wait_progress(struct tier *tier, int64_t deadline_ms) {
    return flash_wait_progress(flash_of(tier), deadline_ms);
}

void flash_drain(struct tier *tier) {
    struct flash *flash = flash_of(tier);
    STRATA_ASSERT(!flash_on_writer(tier)); /* the writer never waits for itself */
    flash_lock(flash);
    while (flash->queue_head != NULL || flash->writer_busy)
        flash_wait(flash, &flash->progress, NULL);
    flash_unlock(flash);
}

int64_t flash_pace_timeout(const struct tier *tier) {
    return atomic_load_explicit(&flash_of(tier)->pace_timeout_ms, memory_order_relaxed);
}

void flash_set_pace_timeout(struct tier *tier, int64_t milliseconds) {
    atomic_store_explicit(&flash_of(tier)->pace_timeout_ms, milliseconds, memory_order_relaxed);
}

bool flash_on_writer(const struct tier *tier) {
    return atomic_load_explicit(&flash_of(tier)->writer_thread, memory_order_relaxed) ==
           check_thread();
}
