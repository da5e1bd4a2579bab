/* The flash tier, private to the engine: its on-disk format and how to open one. Once
 * open, the index uses it only as a struct tier (engine/tier.h), through its ops.
 *
 * Files: flash.c (segments, opening and closing, statistics, the ops table),
 * flash_writer.c (the writer thread: the queue, staging, records, syncs),
 * flash_reclaim.c (reading a segment back, reclaim), flash_read.c (reads of one record),
 * flash_stream.c (values streamed piece by piece), flash_recovery.c (the scan after a
 * crash, saving and loading the index). The store's side of the contract (its
 * struct tier_index) is store_tier.c. The format and the procedures are described in
 * docs/flash-tier.md.
 *
 * Lock order: a shard lock, then flash->lock. The flash tier never calls the index
 * (which takes shard locks) while it holds flash->lock. */
#ifndef STRATA_ENGINE_FLASH_H
#define STRATA_ENGINE_FLASH_H

#include "engine/tier.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- the on-disk format (version 1, little-endian) ---------------------------- */

#define FLASH_FORMAT_VERSION 1
#define FLASH_RECORD_MAGIC   0x31524453u           /* "SDR1" */
#define FLASH_SEGMENT_MAGIC  0x5447534154415254ull /* "TRATASGT" */
#define FLASH_INDEX_MAGIC    0x5844494154415254ull /* "TRATAIDX" */
#define FLASH_BLOCK          4096u /* O_DIRECT alignment; the segment header's size */
#define FLASH_RECORD_ALIGN   8u
#define FLASH_FLAG_TOMBSTONE 1u
/* Bits 1 to 3 of a record's flags: the value's enum store_type (0: a string). */
#define FLASH_FLAG_TYPE_SHIFT 1
#define FLASH_FLAG_TYPE_MASK  (7u << FLASH_FLAG_TYPE_SHIFT)
#define FLASH_MAX_RECORD      (0xFFFFFFFFull - 2 * FLASH_BLOCK)

/* The header of every record. A record is this header, the key, zeros up to an 8-byte
 * boundary, the value, a 4-byte CRC32C of everything before it (with header_crc as
 * written), and zeros up to an 8-byte boundary. header_crc is the CRC32C of the header
 * (with header_crc zero) followed by the key, so a header that passes can be trusted
 * to name its key even when the value is damaged. */
struct flash_record_header {
    uint32_t magic;
    uint16_t version;
    uint16_t flags; /* FLASH_FLAG_TOMBSTONE: the key was deleted; no value */
    uint32_t key_length;
    uint32_t header_crc;
    uint64_t value_length;
    int64_t expire_at_ms; /* 0: never */
    uint64_t sequence;    /* increases with every record the server writes */
};
_Static_assert(sizeof(struct flash_record_header) == 40, "record header layout");

/* The first FLASH_BLOCK bytes of a segment file: this header, then zeros. */
struct flash_segment_header {
    uint64_t magic;
    uint32_t version;
    uint32_t segment_id;
    uint64_t size;      /* bytes of the file, this block included */
    int64_t created_ms; /* Unix time */
    uint32_t unused;
    uint32_t header_crc; /* CRC32C of the bytes above */
};

static inline uint64_t flash_align8(uint64_t size) {
    return (size + FLASH_RECORD_ALIGN - 1) & ~(uint64_t)(FLASH_RECORD_ALIGN - 1);
}

/* Where the value starts in a record whose key has KEY_LENGTH bytes. */
static inline uint64_t flash_value_offset(uint64_t key_length) {
    return flash_align8(sizeof(struct flash_record_header) + key_length);
}

/* Bytes a record with these lengths takes in a segment. */
static inline uint64_t flash_record_size(uint64_t key_length, uint64_t value_length) {
    return flash_align8(flash_value_offset(key_length) + value_length + 4);
}

/* Computes and stores HEADER's header_crc over it and KEY. */
void flash_header_seal(struct flash_record_header *header, const void *key);

/* Checks a header found on flash: magic, version, lengths within LIMIT bytes, and the
 * header CRC over it and the KEY that follows. Returns true if it can be trusted. */
bool flash_header_valid(const struct flash_record_header *header, const void *key, uint64_t limit);

/* Checks a whole record in memory (header, key, value, trailing CRC). */
bool flash_record_valid(const unsigned char *record);

/* ---- the flash tier ----------------------------------------------------------- */

struct flash;

/* Opens (creating if needed) the flash directory of CONFIG, locks it, opens its segment
 * files and starts the writer and the recovery thread, which loads the saved index if
 * there is a valid one, else scans the segments, links the keys found into the owner's
 * index (OWNER->index->recover_node()), and then calls OWNER->index->recovery_done().
 * OWNER->index->attach() is told the tier before its threads start (and NULL if the
 * open fails after that). Returns NULL with a reason in ERROR (a directory in use, a
 * segment file that cannot be opened). Close it with tier_close(). */
struct flash *flash_open(const struct store_flash_config *config, const struct tier_owner *owner,
                         char *error, size_t error_size);

/* The tier FLASH is (its struct tier: the index's handle on it). */
struct tier *flash_tier(struct flash *flash);

/* tier_wait_progress() on a flash tier by its own type (the fault tests call it). */
bool flash_wait_progress(struct flash *flash, int64_t deadline_ms);

#endif
