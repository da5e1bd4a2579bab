/* Reads of one flash record into a value block (see tier.h and docs/flash-tier.md). */
#include "engine/flash_internal.h"

#include "base/checks.h"
#include "base/fault.h"
#include "base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- reads -------------------------------------------------------------------- */

bool flash_read_prepare(struct tier *tier, const struct tier_record *record, uint64_t hash,
                        struct tier_read *read) {
    struct flash *flash = flash_of(tier);
    /* Called with the key's shard locked: the node cannot change meanwhile. */
    STRATA_ASSERT(
        FLASH_INDEX(flash)->key_locked(FLASH_OWNER(flash), record->key, record->key_length));
    memset(read, 0, sizeof(*read));
    size_t key_length = record->key_length;
    read->key = malloc(key_length ? key_length : 1);
    if (read->key == NULL) return false;
    memcpy(read->key, record->key, key_length);
    read->tier = tier;
    read->hash = hash;
    read->segment_id = record->segment;
    read->offset = record->offset;
    read->value_length = record->value_length;
    read->key_length = (uint32_t)key_length;
    read->expire_at_ms = record->expire_at_ms;
    read->accessed_before = record->accessed;
    flash_lock(flash);
    struct segment *segment = segment_find(flash, record->segment);
    if (segment != NULL) {
        atomic_fetch_add_explicit(&segment->references, 1, memory_order_relaxed);
    }
    read->source = segment;
    flash_unlock(flash);
    return true;
}

void flash_read_finish(struct tier_read *read) {
    struct flash *flash = flash_of(read->tier);
    if (read->source != NULL) segment_release_reference(read->source);
    read->source = NULL;
    free(read->key);
    read->key = NULL;
    if (read->allocation != NULL) {
        FLASH_INDEX(flash)->uncharge(FLASH_OWNER(flash), memory_footprint(read->allocation));
        free(read->allocation);
        read->allocation = NULL;
    }
}

/* Checks the record read into READ's buffer and turns it into a value block. */
static void read_complete(struct tier_read *read, int result) {
    struct flash *flash = flash_of(read->tier);
    struct segment *segment = read->source;
    if (result < 0 || (size_t)result < read->read_length) {
        if (result < 0) {
            count(&flash->tier.counters.read_errors, 1);
            log_event(LOG_ERROR, "flash_read_failed", "segment=%u offset=%u error=\"%s\"",
                      read->segment_id, read->offset, strerror(-result));
        }
        read->done(read, result < 0 ? STORE_IO_ERROR : STORE_NOT_FOUND, NULL);
        return;
    }
    count(&flash->tier.counters.reads, 1);
    count(&flash->tier.counters.bytes_read, read->read_length);
    unsigned char *record = read->buffer + read->record_delta;
    struct flash_record_header header;
    memcpy(&header, record, sizeof(header));
    bool valid = flash_header_valid(&header, record + sizeof(header), segment->size) &&
                 header.key_length == read->key_length &&
                 header.value_length == read->value_length &&
                 !(header.flags & FLASH_FLAG_TOMBSTONE) &&
                 memcmp(record + sizeof(header), read->key, read->key_length) == 0 &&
                 flash_record_valid(record);
    if (!valid) {
        read->damaged = true;
        count(&flash->tier.counters.checksum_failures, 1);
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
    block->charged_to = flash->tier.owner.charged_to;
    block->charge = memory_footprint(read->allocation);
    block->length = read->value_length;
    read->allocation = NULL;
    read->done(read, STORE_OK, block);
}

static void read_operation_done(struct io_ring_operation *operation, int result) {
    read_complete((struct tier_read *)operation, result);
}

enum store_status flash_read_start(struct tier_read *read, bool async) {
    struct flash *flash = flash_of(read->tier);
    struct segment *segment = read->source;
    if (segment == NULL) return STORE_NOT_FOUND;
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
    enum store_status status = FLASH_INDEX(flash)->charge(FLASH_OWNER(flash), estimate);
    if (status != STORE_OK) return status;
    read->allocation = aligned_alloc(FLASH_BLOCK, total);
    if (read->allocation == NULL) {
        FLASH_INDEX(flash)->uncharge(FLASH_OWNER(flash), estimate);
        return STORE_ALLOCATION_FAILED;
    }
    uint64_t footprint = memory_footprint(read->allocation);
    if (footprint <= estimate) {
        FLASH_INDEX(flash)->uncharge(FLASH_OWNER(flash), estimate - footprint);
    } else if (!FLASH_INDEX(flash)->try_charge(FLASH_OWNER(flash), footprint - estimate)) {
        FLASH_INDEX(flash)->uncharge(FLASH_OWNER(flash), estimate);
        free(read->allocation);
        read->allocation = NULL;
        return STORE_NO_MEMORY;
    }
    read->buffer = (unsigned char *)read->allocation + lead;
    struct io_ring *ring = async ? io_ring_current() : NULL;
    if (ring != NULL) {
        read->operation.done = read_operation_done;
        int submitted = io_ring_read(ring, segment->fd, read->buffer, read->read_length,
                                     aligned_start, &read->operation);
        if (submitted == 0) return STORE_PENDING;
        /* Not a blocking pread instead: the caller's thread must not wait for flash. */
        count(&flash->tier.counters.submit_failures, 1);
        count(&flash->tier.counters.read_errors, 1);
        log_event(LOG_ERROR, "flash_read_failed", "segment=%u offset=%u error=\"%s\"",
                  read->segment_id, read->offset, strerror(-submitted));
        return STORE_IO_ERROR;
    }
    size_t done = 0;
    int result = 0;
    while (done < read->read_length) {
        ssize_t got = fault_fails(FAULT_read)
                          ? -1
                          : pread(segment->fd, read->buffer + done, read->read_length - done,
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
