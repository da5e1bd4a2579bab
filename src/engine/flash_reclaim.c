/* The flash tier's reclaim: reading a segment back record by record, and emptying the
 * oldest segment (see flash.h and docs/flash-tier.md). Runs on the writer thread. */
#include "engine/flash_internal.h"

#include "base/checks.h"
#include "base/fault.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

void flash_reclaim_oldest(struct flash *flash, uint64_t *reinsert_room) {
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
                int live = FLASH_INDEX(flash)->reclaim_record(
                    FLASH_OWNER(flash), key, header.key_length, segment->id, (uint32_t)offset,
                    false, &accessed, &expire_at_ms);
                if (live && accessed && may_reinsert && flash_record_valid(record)) {
                    struct reinsertion *reinsertion =
                        malloc(sizeof(*reinsertion) + header.key_length);
                    uint32_t new_segment, new_offset;
                    if (reinsertion != NULL &&
                        flash_append_record(flash, key, header.key_length,
                                            record + flash_value_offset(header.key_length),
                                            header.value_length, expire_at_ms,
                                            header.flags & FLASH_FLAG_TYPE_MASK, &new_segment,
                                            &new_offset) == 0) {
                        reinsertion->old_offset = (uint32_t)offset;
                        reinsertion->segment = new_segment;
                        reinsertion->offset = new_offset;
                        reinsertion->record_size = size;
                        reinsertion->key_length = header.key_length;
                        memcpy(reinsertion->key, key, header.key_length);
                        reinsertion->next = reinsertions;
                        reinsertions = reinsertion;
                        *reinsert_room -= size;
                    } else {
                        free(reinsertion);
                        live = FLASH_INDEX(flash)->reclaim_record(
                            FLASH_OWNER(flash), key, header.key_length, segment->id,
                            (uint32_t)offset, true, &accessed, &expire_at_ms);
                        dropped += (uint64_t)live;
                    }
                } else if (live) {
                    live = FLASH_INDEX(flash)->reclaim_record(
                        FLASH_OWNER(flash), key, header.key_length, segment->id, (uint32_t)offset,
                        true, &accessed, &expire_at_ms);
                    dropped += (uint64_t)live;
                }
            }
            offset += size;
        }
        read_error = reader.error;
        flash_reader_free(&reader);
    }
    if (reinsertions != NULL) {
        int result = flash_writer_checkpoint(flash, true);
        while (reinsertions != NULL) {
            struct reinsertion *reinsertion = reinsertions;
            reinsertions = reinsertion->next;
            if (result == 0 &&
                FLASH_INDEX(flash)->reinserted(
                    FLASH_OWNER(flash), reinsertion->key, reinsertion->key_length, segment->id,
                    reinsertion->old_offset, reinsertion->segment, reinsertion->offset)) {
                flash_record_live(flash, reinsertion->segment, reinsertion->record_size);
                reinserted++;
            } else {
                if (result != 0) count(&flash->tier.counters.write_errors, 1); /* a lost copy */
                bool accessed;
                int64_t expire_at_ms;
                dropped += (uint64_t)FLASH_INDEX(flash)->reclaim_record(
                    FLASH_OWNER(flash), reinsertion->key, reinsertion->key_length, segment->id,
                    reinsertion->old_offset, true, &accessed, &expire_at_ms);
            }
            free(reinsertion);
        }
    }
    if (read_error != 0 || offset < segment->end) {
        /* The walk stopped short (an I/O error, or a header it could not trust: a write
         * that failed midway leaves one). Records past it would keep index nodes, and
         * DRAM items their copies, pointing at a file about to go: find them in the index
         * instead, after the copies above have moved theirs. */
        if (read_error != 0) {
            count(&flash->tier.counters.read_errors, 1);
            log_event(LOG_ERROR, "flash_read_failed", "segment=%u during=reclaim error=\"%s\"",
                      segment->id, strerror(read_error));
        } else {
            log_event(LOG_WARNING, "flash_reclaim_stopped_short", "segment=%u offset=%llu end=%llu",
                      segment->id, (unsigned long long)offset, (unsigned long long)segment->end);
        }
        dropped += FLASH_INDEX(flash)->drop_segment(FLASH_OWNER(flash), segment->id);
    }
    count(&flash->tier.counters.reclaims, 1);
    count(&flash->tier.counters.reinsertions, reinserted);
    count(&flash->tier.counters.evictions, dropped);
    log_event(LOG_INFO, "flash_reclaim", "segment=%u dropped=%llu reinserted=%llu", segment->id,
              (unsigned long long)dropped, (unsigned long long)reinserted);
    flash_segment_remove_oldest(flash);
}
