/* The flash tier's segments, the record format, opening and closing, statistics and
 * the tier's ops table (see flash.h, tier.h and docs/flash-tier.md). The writer thread
 * is in flash_writer.c, reclaim in flash_reclaim.c, reads in flash_read.c.
 *
 * Readers take a reference on a segment, so a segment reclaimed while a read is in
 * flight stays open until the read ends. */
#include "engine/flash_internal.h"

#include "base/checks.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/fault.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

void flash_segment_path(const struct flash *flash, uint32_t id, char *path, size_t size) {
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
    flash_segment_path(flash, id, path, sizeof(path));
    int fd = fault_fails(FAULT_open)
                 ? -1
                 : open(path, O_RDONLY | O_CLOEXEC | (flash->direct_io ? O_DIRECT : 0));
    if (fd < 0) return NULL;
    struct segment *segment = segment_add(flash, id, fd, size, size);
    if (segment == NULL) close(fd);
    return segment;
}

struct segment *flash_segment_create(struct flash *flash, uint32_t id, uint64_t size) {
    char path[4096];
    flash_segment_path(flash, id, path, sizeof(path));
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

void flash_segment_remove_oldest(struct flash *flash) {
    flash_lock(flash);
    struct segment *segment = flash->segments[0];
    memmove(flash->segments, flash->segments + 1,
            (flash->segment_count - 1) * sizeof(*flash->segments));
    flash->segment_count--;
    flash->used -= segment->size;
    flash_unlock(flash);
    char path[4096];
    flash_segment_path(flash, segment->id, path, sizeof(path));
    unlink(path);
    segment_release(segment);
}

void flash_record_dead(struct tier *tier, uint32_t segment_id, size_t key_length,
                       uint64_t value_length) {
    struct flash *flash = flash_of(tier);
    uint64_t size = flash_record_size(key_length, value_length);
    flash_lock(flash);
    struct segment *segment = segment_find(flash, segment_id);
    if (segment != NULL) atomic_fetch_sub_explicit(&segment->live, size, memory_order_relaxed);
    flash_unlock(flash);
}

void flash_record_live(struct flash *flash, uint32_t segment_id, uint64_t size) {
    flash_lock(flash);
    struct segment *segment = segment_find(flash, segment_id);
    if (segment != NULL) atomic_fetch_add_explicit(&segment->live, size, memory_order_relaxed);
    flash_unlock(flash);
}

/* Adds a flash stub's record to its segment's live bytes (after recovery). */
static void count_live(void *context, const void *key, size_t key_length, uint32_t segment_id,
                       uint32_t offset, uint64_t value_length, int64_t expire_at_ms,
                       enum store_type type) {
    (void)type;
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

/* ---- opening and closing ------------------------------------------------------ */

static const struct tier_ops flash_ops;

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
    ASSERT_RECOVERY(flash);
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
        FLASH_INDEX(flash)->visit(FLASH_OWNER(flash), count_live, flash);
        flash->recovery_complete = true;
        FLASH_INDEX(flash)->recovery_done(FLASH_OWNER(flash));
    }
    return NULL;
}

struct flash *flash_open(const struct store_flash_config *config, const struct tier_owner *owner,
                         char *error, size_t error_size) {
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
    flash->tier.ops = &flash_ops;
    flash->tier.owner = *owner;
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
    /* Recovery links flash stubs, which count themselves in the tier's counters. */
    owner->index->attach(owner->context, &flash->tier);
    if (flash_open_segments(flash, error, error_size) != 0) {
        owner->index->attach(owner->context, NULL);
        flash_free(flash);
        return NULL;
    }
    /* The writer waits for work; none comes before recovery ends (writes are refused
     * until then: store_recovering()). */
    if (pthread_create(&flash->writer, NULL, flash_writer_main, flash) != 0) {
        snprintf(error, error_size, "cannot start the flash writer thread");
        owner->index->attach(owner->context, NULL);
        flash_free(flash);
        return NULL;
    }
    flash->writer_started = true;
    flash->recovery_source = "in-progress";
    if (pthread_create(&flash->recovery, NULL, recovery_main, flash) != 0) {
        snprintf(error, error_size, "cannot start the flash recovery thread");
        flash_close(&flash->tier, false);
        owner->index->attach(owner->context, NULL);
        return NULL;
    }
    flash->recovery_started = true;
    return flash;
}

bool flash_stop_recovery(struct tier *tier) {
    struct flash *flash = flash_of(tier);
    if (flash->recovery_started) {
        atomic_store_explicit(&flash->recovery_cancelled, true, memory_order_release);
        pthread_join(flash->recovery, NULL);
        flash->recovery_started = false;
    }
    return flash->recovery_complete;
}

void flash_close(struct tier *tier, bool save_index) {
    if (tier == NULL) return;
    struct flash *flash = flash_of(tier);
    /* An index only partly rebuilt must not be saved: the next start scans again. */
    if (!flash_stop_recovery(tier)) save_index = false;
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

void flash_get_stats(struct tier *tier, struct flash_stats *stats) {
    struct flash *flash = flash_of(tier);
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
    struct tier_counters *counters = &flash->tier.counters;
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

struct tier *flash_tier(struct flash *flash) {
    return &flash->tier;
}

uint64_t flash_record_bytes(size_t key_length, uint64_t value_length) {
    return flash_record_size(key_length, value_length);
}

static const struct tier_ops flash_ops = {
    .name = "flash",
    .accepts = flash_accepts,
    .record_size = flash_record_bytes,
    .queue_item = flash_queue_item,
    .queue_tombstone = flash_queue_tombstone,
    .record_dead = flash_record_dead,
    .wait_tickets = flash_wait_tickets,
    .write_through = flash_write_through,
    .rewrite_copies = flash_rewrite_copies,
    .on_writer = flash_on_writer,
    .wait_progress = flash_tier_wait_progress,
    .drain = flash_drain,
    .pace_timeout = flash_pace_timeout,
    .set_pace_timeout = flash_set_pace_timeout,
    .read_prepare = flash_read_prepare,
    .read_start = flash_read_start,
    .read_finish = flash_read_finish,
    .stream_open = flash_stream_open,
    .get_stats = flash_get_stats,
    .stop_recovery = flash_stop_recovery,
    .close = flash_close,
};
