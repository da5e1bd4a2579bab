/* Bringing the flash tier back at start-up, and saving its index at shutdown.
 *
 * A clean shutdown writes `index` in the flash directory: every flash-resident key with
 * its record's place. The next start loads it (and deletes it, so that a crash later
 * cannot load a stale one). Without a valid index the segments are scanned in order and
 * every record whose checksums pass is linked; later records replace earlier ones, and
 * tombstones, expired and damaged records remove them. See docs/flash-tier.md. */
#include "engine/flash_internal.h"

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/fault.h"
#include "base/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct index_header {
    uint64_t magic;
    uint32_t version;
    uint32_t segment_count;
    uint64_t node_count;
    uint64_t next_sequence;
};

struct index_segment {
    uint32_t id;
    uint32_t unused;
    uint64_t size;
    uint64_t end;
};

struct saved_node {
    uint32_t key_length;
    uint32_t segment;
    uint32_t offset;
    uint32_t type; /* the value's enum store_type (0, a string, in indexes saved before types) */
    uint64_t value_length;
    int64_t expire_at_ms;
};

static int compare_ids(const void *left, const void *right) {
    uint32_t a = *(const uint32_t *)left, b = *(const uint32_t *)right;
    return (a > b) - (a < b);
}

static void sync_directory(const char *directory) {
    int fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* What check_segment_file() returns for a file it could not open or read. */
#define SEGMENT_UNREADABLE UINT64_MAX

/* Checks the header block of segment file ID and returns its size, 0 if the file is not
 * a segment of this format, or SEGMENT_UNREADABLE (errno set) if it cannot be read. */
static uint64_t check_segment_file(struct flash *flash, uint32_t id) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/segment-%08u", flash->directory, id);
    int fd = fault_fails(FAULT_open) ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SEGMENT_UNREADABLE;
    struct flash_segment_header header;
    struct stat status;
    ssize_t got = fault_fails(FAULT_read) ? -1 : pread(fd, &header, sizeof(header), 0);
    int error = errno;
    bool valid = got == (ssize_t)sizeof(header) && fstat(fd, &status) == 0;
    close(fd);
    if (got < 0) {
        errno = error;
        return SEGMENT_UNREADABLE;
    }
    if (!valid || header.magic != FLASH_SEGMENT_MAGIC || header.version != FLASH_FORMAT_VERSION ||
        header.segment_id != id ||
        header.header_crc != crc32c(&header, offsetof(struct flash_segment_header, header_crc)) ||
        header.size < 2 * FLASH_BLOCK || header.size % FLASH_BLOCK != 0) {
        log_event(LOG_WARNING, "flash_segment_ignored",
                  "file=%s reason=\"not a strata segment of format version %d\"", path,
                  FLASH_FORMAT_VERSION);
        return 0;
    }
    if ((uint64_t)status.st_size < header.size) {
        /* Cut short (a crash while the file grew, or damage): read what is there. */
        log_event(LOG_WARNING, "flash_segment_truncated", "file=%s size=%lld expected=%llu", path,
                  (long long)status.st_size, (unsigned long long)header.size);
        return (uint64_t)status.st_size;
    }
    return header.size;
}

/* Opens every segment file of the directory, oldest first. A file that is not a segment
 * is ignored (and logged); one that cannot be opened or read stops the start with an
 * error rather than lose its records. New segments are numbered after every file found,
 * ignored ones included, so none is ever overwritten. Returns 0 or -1. */
static int open_segments(struct flash *flash, char *error, size_t error_size) {
    DIR *directory = opendir(flash->directory);
    if (directory == NULL) {
        snprintf(error, error_size, "cannot read ssd-dir %s: %s", flash->directory,
                 strerror(errno));
        return -1;
    }
    uint32_t *ids = NULL;
    size_t count = 0, capacity = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        unsigned id;
        char extra;
        if (sscanf(entry->d_name, "segment-%8u%c", &id, &extra) != 1 || id == 0) continue;
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 64;
            uint32_t *grown = realloc(ids, capacity * sizeof(*ids));
            if (grown == NULL) break;
            ids = grown;
        }
        ids[count++] = id;
    }
    closedir(directory);
    if (count > 0) qsort(ids, count, sizeof(*ids), compare_ids);
    if (count > 0 && ids[count - 1] >= flash->next_segment_id) {
        flash->next_segment_id = ids[count - 1] + 1;
    }
    for (size_t i = 0; i < count; i++) {
        uint64_t size = check_segment_file(flash, ids[i]);
        if (size == 0) continue;
        if (size == SEGMENT_UNREADABLE ||
            flash_segment_open_existing(flash, ids[i], size) == NULL) {
            snprintf(error, error_size, "cannot open segment %u in %s: %s", ids[i],
                     flash->directory, strerror(errno));
            free(ids);
            return -1;
        }
    }
    free(ids);
    return 0;
}

/* ---- the saved index ---------------------------------------------------------- */

struct index_writer {
    FILE *file;
    uint32_t running;
    uint64_t nodes;
    bool failed;
};

static void index_put(struct index_writer *writer, const void *data, size_t length) {
    if (length == 0) return;
    writer->running = crc32c_update(writer->running, data, length);
    if (fault_fails(FAULT_write) || fwrite(data, 1, length, writer->file) != length) {
        writer->failed = true;
    }
}

static void save_node(void *context, const void *key, size_t key_length, uint32_t segment,
                      uint32_t offset, uint64_t value_length, int64_t expire_at_ms,
                      enum store_type type) {
    struct index_writer *writer = context;
    struct saved_node node = {
        .key_length = (uint32_t)key_length,
        .segment = segment,
        .offset = offset,
        .type = (uint32_t)type,
        .value_length = value_length,
        .expire_at_ms = expire_at_ms,
    };
    index_put(writer, &node, sizeof(node));
    index_put(writer, key, key_length);
    writer->nodes++;
}

/* Counts the nodes to save (a first pass, so the header can say how many follow). */
static void count_node(void *context, const void *key, size_t key_length, uint32_t segment,
                       uint32_t offset, uint64_t value_length, int64_t expire_at_ms,
                       enum store_type type) {
    (void)type;
    (void)key;
    (void)key_length;
    (void)segment;
    (void)offset;
    (void)value_length;
    (void)expire_at_ms;
    (*(uint64_t *)context)++;
}

void flash_save_index(struct flash *flash) {
    int64_t started = clock_monotonic_ms();
    char path[4096], temporary[4096];
    snprintf(path, sizeof(path), "%s/index", flash->directory);
    snprintf(temporary, sizeof(temporary), "%s/index.tmp", flash->directory);
    struct index_writer writer = {.running = CRC32C_START};
    writer.file = fault_fails(FAULT_open) ? NULL : fopen(temporary, "wb");
    if (writer.file == NULL) {
        log_event(LOG_ERROR, "flash_index_save_failed", "file=%s error=\"%s\"", temporary,
                  strerror(errno));
        return;
    }
    uint64_t expected = 0;
    FLASH_INDEX(flash)->visit(FLASH_OWNER(flash), count_node, &expected);
    struct index_header header = {
        .magic = FLASH_INDEX_MAGIC,
        .version = FLASH_FORMAT_VERSION,
        .segment_count = (uint32_t)flash->segment_count,
        .node_count = expected,
        .next_sequence = flash->next_sequence,
    };
    index_put(&writer, &header, sizeof(header));
    for (size_t i = 0; i < flash->segment_count; i++) {
        struct segment *segment = flash->segments[i];
        struct index_segment saved = {
            .id = segment->id, .size = segment->size, .end = segment->end};
        index_put(&writer, &saved, sizeof(saved));
    }
    FLASH_INDEX(flash)->visit(FLASH_OWNER(flash), save_node, &writer);
    uint32_t crc = crc32c_finish(writer.running);
    if (fwrite(&crc, 1, sizeof(crc), writer.file) != sizeof(crc)) writer.failed = true;
    if (fflush(writer.file) != 0 || fault_fails(FAULT_sync) || fsync(fileno(writer.file)) != 0) {
        writer.failed = true;
    }
    if (fclose(writer.file) != 0) writer.failed = true;
    if (writer.failed || writer.nodes != expected || rename(temporary, path) != 0) {
        log_event(LOG_ERROR, "flash_index_save_failed", "file=%s error=\"%s\"", path,
                  writer.failed ? "write failed" : "the index changed while it was saved");
        unlink(temporary);
        return;
    }
    sync_directory(flash->directory);
    log_event(LOG_INFO, "flash_index_saved", "file=%s entries=%llu milliseconds=%lld", path,
              (unsigned long long)writer.nodes, (long long)(clock_monotonic_ms() - started));
}

/* Loads the saved index if it is whole and matches the segments. Returns the number of
 * nodes linked, or -1 if it cannot be used (the caller scans instead). */
static int64_t load_index(struct flash *flash, uint64_t *next_sequence) {
    ASSERT_RECOVERY(flash);
    char path[4096];
    snprintf(path, sizeof(path), "%s/index", flash->directory);
    int fd = fault_fails(FAULT_open) ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat status;
    unsigned char *data = NULL;
    int64_t linked = -1;
    const char *reason = "unreadable";
    if (fstat(fd, &status) != 0 || status.st_size < (off_t)(sizeof(struct index_header) + 4)) {
        goto out;
    }
    size_t size = (size_t)status.st_size;
    data = malloc(size);
    if (data == NULL) goto out;
    size_t done = 0;
    while (done < size) {
        ssize_t got = fault_fails(FAULT_read) ? -1 : read(fd, data + done, size - done);
        if (got <= 0) goto out;
        done += (size_t)got;
    }
    uint32_t stored;
    memcpy(&stored, data + size - 4, 4);
    reason = "checksum mismatch";
    if (crc32c(data, size - 4) != stored) goto out;
    struct index_header header;
    memcpy(&header, data, sizeof(header));
    reason = "wrong format";
    if (header.magic != FLASH_INDEX_MAGIC || header.version != FLASH_FORMAT_VERSION) goto out;
    size_t position = sizeof(header);
    reason = "the segments changed since it was saved";
    if (header.segment_count != flash->segment_count ||
        (size - 4 - position) / sizeof(struct index_segment) < header.segment_count) {
        goto out;
    }
    for (size_t i = 0; i < header.segment_count; i++) {
        struct index_segment saved;
        memcpy(&saved, data + position, sizeof(saved));
        position += sizeof(saved);
        struct segment *segment = flash->segments[i];
        if (saved.id != segment->id || saved.size != segment->size || saved.end > saved.size) {
            goto out;
        }
        segment->end = saved.end;
    }
    reason = "damaged entries";
    /* Check every node before linking any, so a bad index leaves nothing behind. */
    size_t nodes_start = position;
    for (int pass = 0; pass < 2; pass++) {
        position = nodes_start;
        for (uint64_t i = 0; i < header.node_count; i++) {
            struct saved_node node;
            if (size - 4 - position < sizeof(node)) goto out;
            memcpy(&node, data + position, sizeof(node));
            position += sizeof(node);
            if (node.key_length > STORE_MAX_KEY_LENGTH || size - 4 - position < node.key_length ||
                node.value_length > UINT32_MAX || node.type > STORE_TYPE_LAST) {
                goto out;
            }
            const unsigned char *key = data + position;
            position += node.key_length;
            struct segment *segment = segment_find(flash, node.segment);
            if (segment == NULL ||
                node.offset + flash_record_size(node.key_length, node.value_length) >
                    segment->end) {
                goto out;
            }
            if (pass == 1) {
                FLASH_INDEX(flash)->recover_node(
                    FLASH_OWNER(flash), key, node.key_length, node.segment, node.offset,
                    node.value_length, node.expire_at_ms, (enum store_type)node.type, false);
            }
        }
        if (position != size - 4) goto out;
    }
    linked = (int64_t)header.node_count;
    *next_sequence = header.next_sequence;
out:
    close(fd);
    free(data);
    if (linked < 0) {
        log_event(LOG_WARNING, "flash_index_unusable", "file=%s reason=\"%s\"", path, reason);
    }
    /* Used or not, the saved index is stale from now on. */
    unlink(path);
    sync_directory(flash->directory);
    return linked;
}

/* ---- the scan ----------------------------------------------------------------- */

struct scan_totals {
    uint64_t records;
    uint64_t damaged;
    uint64_t max_sequence;
};

/* Finds the next offset after FROM (8-byte steps) where a trustworthy header starts, or
 * returns 0. */
static uint64_t resynchronize(struct segment_reader *reader, uint64_t from, uint64_t limit) {
    for (uint64_t offset = from; offset + sizeof(struct flash_record_header) <= limit;
         offset += FLASH_RECORD_ALIGN) {
        const unsigned char *bytes =
            flash_reader_at(reader, offset, sizeof(struct flash_record_header));
        if (bytes == NULL) return 0;
        uint32_t magic;
        memcpy(&magic, bytes, sizeof(magic));
        if (magic != FLASH_RECORD_MAGIC) continue;
        struct flash_record_header header;
        memcpy(&header, bytes, sizeof(header));
        if (header.key_length > STORE_MAX_KEY_LENGTH) continue;
        const unsigned char *key =
            flash_reader_at(reader, offset, sizeof(header) + header.key_length);
        if (key != NULL && flash_header_valid(&header, key + sizeof(header), limit - offset)) {
            return offset;
        }
    }
    return 0;
}

/* After a read error at OFFSET: logs and counts it, and returns where the scan goes on
 * (the next trustworthy header after the block that failed), or 0 to stop. */
static uint64_t skip_unreadable(struct flash *flash, struct segment *segment,
                                struct segment_reader *reader, uint64_t offset) {
    atomic_fetch_add_explicit(&flash->tier.counters.read_errors, 1, memory_order_relaxed);
    log_event(LOG_ERROR, "flash_read_failed", "segment=%u offset=%llu during=recovery error=\"%s\"",
              segment->id, (unsigned long long)offset, strerror(reader->error));
    reader->error = 0;
    uint64_t next_block = (offset + FLASH_BLOCK) & ~(uint64_t)(FLASH_BLOCK - 1);
    return resynchronize(reader, next_block, segment->size);
}

/* Scans one segment, linking what its records say. A block that cannot be read is
 * skipped like a damaged record: the scan goes on at the next trustworthy header. */
static void scan_segment(struct flash *flash, struct segment *segment, struct scan_totals *totals) {
    ASSERT_RECOVERY(flash);
    struct segment_reader reader;
    if (!flash_reader_init(&reader, segment->fd, segment->size)) return;
    int64_t now = clock_realtime_ms();
    uint64_t offset = FLASH_BLOCK;
    uint64_t end = FLASH_BLOCK;
    while (offset + sizeof(struct flash_record_header) <= segment->size) {
        const unsigned char *bytes =
            flash_reader_at(&reader, offset, sizeof(struct flash_record_header));
        if (bytes == NULL && reader.error != 0) {
            offset = skip_unreadable(flash, segment, &reader, offset);
            if (offset == 0) break;
            continue;
        }
        if (bytes == NULL) break;
        struct flash_record_header header;
        memcpy(&header, bytes, sizeof(header));
        static const struct flash_record_header empty;
        if (memcmp(&header, &empty, sizeof(header)) == 0) break; /* never written */
        const unsigned char *with_key =
            header.key_length <= STORE_MAX_KEY_LENGTH
                ? flash_reader_at(&reader, offset, sizeof(header) + header.key_length)
                : NULL;
        if (with_key == NULL ||
            !flash_header_valid(&header, with_key + sizeof(header), segment->size - offset)) {
            /* A header that cannot be trusted: damage, or the end of what was written. */
            uint64_t next = resynchronize(&reader, offset + FLASH_RECORD_ALIGN, segment->size);
            if (next == 0) break;
            totals->damaged++;
            atomic_fetch_add_explicit(&flash->tier.counters.checksum_failures, 1,
                                      memory_order_relaxed);
            log_event(LOG_ERROR, "flash_checksum_failed",
                      "segment=%u offset=%llu reason=\"damaged record header\"", segment->id,
                      (unsigned long long)offset);
            offset = next;
            continue;
        }
        uint64_t size = flash_record_size(header.key_length, header.value_length);
        unsigned char *key_copy = malloc(header.key_length ? header.key_length : 1);
        if (key_copy != NULL) memcpy(key_copy, with_key + sizeof(header), header.key_length);
        const unsigned char *record = flash_reader_at(&reader, offset, (size_t)size);
        if (record == NULL && reader.error != 0) {
            /* The header said which key: it must not keep an older value. */
            if (key_copy != NULL) {
                FLASH_INDEX(flash)->recover_node(FLASH_OWNER(flash), key_copy, header.key_length,
                                                 segment->id, (uint32_t)offset, 0, 0,
                                                 STORE_TYPE_STRING, true);
            }
            free(key_copy);
            offset = skip_unreadable(flash, segment, &reader, offset);
            if (offset == 0) break;
            continue;
        }
        free(key_copy);
        if (record == NULL) break; /* cut short: the file ends inside it */
        const unsigned char *key = record + sizeof(header);
        bool tombstone = (header.flags & FLASH_FLAG_TOMBSTONE) != 0;
        bool valid = flash_record_valid(record);
        if (!valid) {
            totals->damaged++;
            atomic_fetch_add_explicit(&flash->tier.counters.checksum_failures, 1,
                                      memory_order_relaxed);
            char quoted[256];
            log_event(LOG_ERROR, "flash_checksum_failed", "key=%s segment=%u offset=%llu",
                      log_quote(quoted, sizeof(quoted), (const char *)key, header.key_length),
                      segment->id, (unsigned long long)offset);
        }
        bool expired = header.expire_at_ms != 0 && header.expire_at_ms <= now;
        if (header.value_length <= UINT32_MAX) {
            enum store_type type =
                (enum store_type)((header.flags & FLASH_FLAG_TYPE_MASK) >> FLASH_FLAG_TYPE_SHIFT);
            /* A type this build does not know is damage: the key reads as missing. */
            bool unknown_type = type > STORE_TYPE_LAST;
            FLASH_INDEX(flash)->recover_node(FLASH_OWNER(flash), key, header.key_length,
                                             segment->id, (uint32_t)offset, header.value_length,
                                             header.expire_at_ms, type,
                                             tombstone || expired || !valid || unknown_type);
        }
        if (header.sequence > totals->max_sequence) totals->max_sequence = header.sequence;
        totals->records++;
        offset += size;
        end = offset;
    }
    segment->end = end;
    flash_reader_free(&reader);
}

int flash_open_segments(struct flash *flash, char *error, size_t error_size) {
    return open_segments(flash, error, error_size);
}

bool flash_rebuild_index(struct flash *flash) {
    ASSERT_RECOVERY(flash);
    int64_t started = clock_monotonic_ms();
    uint64_t next_sequence = 1;
    int64_t loaded = load_index(flash, &next_sequence);
    const char *source;
    uint64_t items;
    if (loaded >= 0) {
        source = "index";
        items = (uint64_t)loaded;
    } else {
        struct scan_totals totals = {0};
        for (size_t i = 0; i < flash->segment_count; i++) {
            if (atomic_load_explicit(&flash->recovery_cancelled, memory_order_acquire)) {
                log_event(LOG_WARNING, "flash_recovery_stopped",
                          "reason=\"the server is stopping\" segments_scanned=%zu of=%zu", i,
                          flash->segment_count);
                return false;
            }
            scan_segment(flash, flash->segments[i], &totals);
        }
        next_sequence = totals.max_sequence + 1;
        items = atomic_load_explicit(&flash->tier.counters.items, memory_order_relaxed);
        source = flash->segment_count > 0 ? "scan" : "empty";
        if (totals.damaged > 0) {
            log_event(LOG_WARNING, "flash_damaged_records", "count=%llu",
                      (unsigned long long)totals.damaged);
        }
    }
    uint64_t milliseconds = (uint64_t)(clock_monotonic_ms() - started);
    flash_set_recovery(flash, source, milliseconds, items, next_sequence);
    log_event(LOG_INFO, "flash_recovered",
              "source=%s segments=%zu items=%llu milliseconds=%llu direct_io=%s", source,
              flash->segment_count, (unsigned long long)items, (unsigned long long)milliseconds,
              flash->direct_io ? "yes" : "no");
    return true;
}
