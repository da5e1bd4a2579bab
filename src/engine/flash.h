/* The flash tier, private to the engine: its on-disk format, the index entry of an item
 * that lives only on flash, and the functions store.c, index.c and s3fifo.c call.
 *
 * Files: flash.c (segments, the writer thread, reclaim, reads), flash_recovery.c (the
 * scan after a crash, saving and loading the index), flash_store.c (what the store API
 * does with flash: demotion, reads and promotion, completions). The format and the
 * procedures are described in docs/flash-tier.md.
 *
 * Lock order: a shard lock, then flash->lock. The writer thread never takes a shard
 * lock while it holds flash->lock. */
#ifndef STRATA_ENGINE_FLASH_H
#define STRATA_ENGINE_FLASH_H

#include "base/io_ring.h"
#include "engine/item.h"
#include "engine/store.h"

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
#define FLASH_MAX_RECORD     (0xFFFFFFFFull - 2 * FLASH_BLOCK)

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

/* ---- the index entry of an item that lives only on flash ---------------------- */

#define ENTRY_FLASH      0x80000000u /* in key_length: this is a struct flash_entry */
#define ENTRY_ACCESSED   0x40000000u /* in key_length: read since it reached flash */
#define ENTRY_KEY_LENGTH 0x0001FFFFu /* in key_length: the key's length */

/* 32 bytes beside the key. The first three fields match struct item. */
struct flash_entry {
    struct item *hash_next;
    uint32_t hash;
    uint32_t key_length;     /* ENTRY_FLASH | flags | length */
    uint32_t segment;        /* the segment holding the record */
    uint32_t offset;         /* where the record starts in it */
    uint32_t value_length;   /* bytes of value (values on flash are below 4 GiB) */
    uint32_t expire_seconds; /* 0: never; else Unix seconds, rounded up */
    unsigned char key[];
};
_Static_assert(sizeof(struct flash_entry) == 32, "a flash index entry is 32 bytes");

static inline bool entry_is_flash(const struct item *entry) {
    return (entry->key_length & ENTRY_FLASH) != 0;
}

static inline size_t entry_key_length(const struct item *entry) {
    return entry->key_length & ENTRY_KEY_LENGTH;
}

static inline const unsigned char *entry_key(const struct item *entry) {
    return entry_is_flash(entry) ? ((const struct flash_entry *)entry)->key : entry->bytes;
}

/* Expiry of a flash entry in milliseconds (0: never). */
static inline int64_t flash_entry_expiry_ms(const struct flash_entry *entry) {
    return (int64_t)entry->expire_seconds * 1000;
}

/* The seconds field for an expiry in milliseconds, rounded up. */
static inline uint32_t flash_expiry_seconds(int64_t expire_at_ms) {
    if (expire_at_ms <= 0) return 0;
    int64_t seconds =
        expire_at_ms / 1000 + (expire_at_ms % 1000 != 0); /* no overflow at INT64_MAX */
    return seconds > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)seconds;
}

/* ---- the flash tier ----------------------------------------------------------- */

struct flash;
struct store;
struct shard;

/* Opens (creating if needed) the flash directory of STORE, locks it, opens its segment
 * files and starts the writer and the recovery thread, which loads the saved index if
 * there is a valid one, else scans the segments, links the keys found into STORE's
 * index, and then calls store_recovery_done(). Returns NULL with a reason in ERROR (a
 * directory in use, a segment file that cannot be opened). */
struct flash *flash_open(struct store *store, const struct store_flash_config *config, char *error,
                         size_t error_size);

/* Stops a recovery still under way (it gives up its scan) and waits for the recovery
 * thread. Returns whether the index was rebuilt whole. */
bool flash_stop_recovery(struct flash *flash);

/* Stops the recovery (if still running) and the writer after it has written what is
 * queued; with SAVE_INDEX and a whole index, saves it (every flash-resident key) so the
 * next start needs no scan. Frees FLASH. */
void flash_close(struct flash *flash, bool save_index);

/* Whether a record for these lengths can go to flash at all. */
bool flash_accepts(const struct flash *flash, size_t key_length, uint64_t value_length);

/* Queues ITEM (linked, its shard locked) for writing and returns the write's ticket
 * (0 if out of memory: nothing was queued). With DEMOTE the item has been taken out of
 * its eviction queue (QUEUE_DEMOTING) and is replaced by a flash entry once written;
 * otherwise (write-through) it stays and learns where its copy is. Takes a reference. */
uint64_t flash_queue_item(struct flash *flash, struct item *item, bool demote);

/* Queues a tombstone for KEY (its shard locked): the record saying the key is gone.
 * Returns its ticket, or 0. */
uint64_t flash_queue_tombstone(struct flash *flash, const void *key, size_t key_length);

/* Waits until every write up to ticket LAST is complete (written, and synced when fsync
 * is always). Returns 0, or -EIO if a write from ticket FIRST on failed. */
int flash_wait_tickets(struct flash *flash, uint64_t first, uint64_t last);

/* Whether every write goes to flash before it is acknowledged. */
bool flash_write_through(const struct flash *flash);

/* During a reclaim (on the writer thread): whether the copies of values still in DRAM
 * that the reclaimed segment holds are to be written again (write-through, and room). */
bool flash_rewrite_copies(const struct flash *flash);

/* True on FLASH's writer thread (the rule checks use it: the writer must never wait for
 * itself). */
bool flash_on_writer(const struct flash *flash);

/* Waits until the writer makes progress, or is idle (nothing queued or being written:
 * whatever the caller saw under way is done), or DEADLINE_MS (monotonic) passes.
 * Returns false at the deadline. */
bool flash_wait_progress(struct flash *flash, int64_t deadline_ms);

/* Waits until everything queued so far has been written. */
void flash_drain(struct flash *flash);

/* Marks the record at SEGMENT/OFFSET (of KEY_LENGTH and VALUE_LENGTH) dead: only its
 * segment's live byte counter changes. */
void flash_record_dead(struct flash *flash, uint32_t segment, size_t key_length,
                       uint64_t value_length);

/* The pacing timeout in milliseconds, and changing it. */
int64_t flash_pace_timeout(const struct flash *flash);
void flash_set_pace_timeout(struct flash *flash, int64_t milliseconds);

struct flash_read;
struct segment;
/* Called when a read ends: STORE_OK with BLOCK (a charged value block with one
 * reference, now the callee's), STORE_NOT_FOUND (the record failed its checks: counted
 * and logged) or an I/O error status. */
typedef void (*flash_read_done)(struct flash_read *read, enum store_status status,
                                struct value_block *block);

/* A read in flight. */
struct flash_read {
    struct io_ring_operation operation;
    struct flash *flash;
    struct segment *segment;
    uint64_t hash;
    uint32_t segment_id;
    uint32_t offset;
    uint32_t value_length;
    uint32_t key_length;
    int64_t expire_at_ms; /* the index's view, in milliseconds */
    bool accessed_before; /* the entry had been read since it reached flash */
    bool promote;         /* the caller decided to bring the value back to DRAM */
    bool damaged;         /* the record failed its checks (done() got STORE_NOT_FOUND) */
    void *allocation;     /* the aligned buffer */
    unsigned char *buffer;
    size_t read_length;
    size_t record_delta; /* where the record starts in buffer */
    flash_read_done done;
    void *context;
    unsigned char *key; /* a copy, key_length bytes */
};

/* Prepares READ for ENTRY (called with its shard locked): copies the location and
 * takes a reference on the segment. Returns false if out of memory. */
bool flash_read_prepare(struct flash *flash, const struct flash_entry *entry, uint64_t hash,
                        struct flash_read *read);

/* Allocates the aligned buffer (charged to the store's budget; may evict: no lock
 * held) and reads, on the calling thread's io_ring when it has one and ASYNC is set
 * (READ->done runs later on this thread; returns STORE_PENDING), else with pread
 * (READ->done has run when this returns; returns STORE_OK). Returns an error if the
 * buffer cannot be had or the read cannot be submitted (READ->done does not run). */
enum store_status flash_read_start(struct flash_read *read, bool async);

/* Releases what READ holds (segment reference, key copy; the buffer unless done()
 * took it as a block). */
void flash_read_finish(struct flash_read *read);

void flash_get_stats(struct flash *flash, struct flash_stats *stats);

/* flash_stream.c: opens a stream over the record READ was prepared for (it keeps its
 * own copy of what it needs and its own segment reference; READ stays the caller's) and
 * reads its head: returns STORE_PENDING (DONE runs with the stream), STORE_OK with
 * *STREAM (read at once: no io_ring, or no DONE), or an error. HELD is handed back in
 * the value. */
enum store_status flash_stream_open(struct store *store, const struct flash_read *read, bool held,
                                    store_read_done done, void *context,
                                    struct store_stream **stream);

/* The tier's event counters, updated with relaxed atomic adds from any thread. */
struct flash_counters {
    _Atomic uint64_t items;
    _Atomic uint64_t index_bytes;
    _Atomic uint64_t bytes_written;
    _Atomic uint64_t bytes_read;
    _Atomic uint64_t reads;
    _Atomic uint64_t promotions;
    _Atomic uint64_t reclaims;
    _Atomic uint64_t reinsertions;
    _Atomic uint64_t evictions;
    _Atomic uint64_t paced_writes;
    _Atomic uint64_t pace_timeouts;
    _Atomic uint64_t write_errors;    /* records whose write (or its sync) failed */
    _Atomic uint64_t sync_errors;     /* failed syncs of a segment */
    _Atomic uint64_t read_errors;     /* reads that failed with an I/O error */
    _Atomic uint64_t submit_failures; /* io_uring submissions the kernel refused */
    _Atomic uint64_t blocking_reads;  /* flash reads a network worker waited for */
    _Atomic uint64_t checksum_failures;
};
struct flash_counters *flash_counters(struct flash *flash);

/* ---- flash_store.c: the store's side ------------------------------------------ */

/* Creates a flash entry for KEY at the given place, charged to STORE's budget without
 * evicting (it replaces something larger). Returns NULL if out of memory. */
struct flash_entry *flash_entry_create(struct store *store, uint32_t hash, const void *key,
                                       size_t key_length, uint32_t segment, uint32_t offset,
                                       uint32_t value_length, uint32_t expire_seconds);

/* Frees ENTRY (already out of the index) and uncharges it. */
void flash_entry_free(struct store *store, struct flash_entry *entry);

/* Called by the writer when ITEM's record (queued with flash_queue_item()) is written at
 * SEGMENT/OFFSET, or failed (RESULT < 0). Applies it to the index. Returns whether the
 * record is live (still what the index holds). */
bool flash_store_item_written(struct store *store, struct item *item, uint32_t segment,
                              uint32_t offset, int result);

/* Called by reclaim for each record of a segment being reclaimed: finds what the index
 * holds for KEY. Returns 1 if a flash entry points at SEGMENT/OFFSET (*ACCESSED tells
 * whether it was read since written, *EXPIRE_AT_MS its expiry), 0 otherwise; DRAM
 * copies pointing there forget it. With DROP the flash entry is removed. */
int flash_store_reclaim_record(struct store *store, const void *key, size_t key_length,
                               uint32_t segment, uint32_t offset, bool drop, bool *accessed,
                               int64_t *expire_at_ms);

/* After a failed sync: the record of KEY at SEGMENT/OFFSET may be lost. A flash entry
 * pointing at it is removed and a tombstone queued under the key's lock (so the record
 * never comes back if it did last, and no newer write is overtaken); returns true. A
 * DRAM item whose copy it is learns that its copy is uncertain (FLASH_UNKNOWN). */
bool flash_store_unsynced_record(struct store *store, const void *key, size_t key_length,
                                 uint32_t segment, uint32_t offset);

/* Removes every flash entry that points into SEGMENT, and makes DRAM items forget copies
 * there (reclaim of a segment that could not be read whole). Takes each shard lock in
 * turn. Returns how many flash entries were removed. */
uint64_t flash_store_drop_segment(struct store *store, uint32_t segment);

/* Moves the flash entry of KEY from OLD_SEGMENT/OLD_OFFSET to its reinserted copy.
 * Returns whether it was still there. */
bool flash_store_reinserted(struct store *store, const void *key, size_t key_length,
                            uint32_t old_segment, uint32_t old_offset, uint32_t segment,
                            uint32_t offset);

/* Recovery: links KEY's flash entry for the record at SEGMENT/OFFSET, replacing an
 * entry from an earlier record; with REMOVE (a tombstone, an expired or a damaged
 * record) only removes the earlier entry. Returns false if out of memory. */
bool flash_store_recover_entry(struct store *store, const void *key, size_t key_length,
                               uint32_t segment, uint32_t offset, uint64_t value_length,
                               int64_t expire_at_ms, bool remove);

/* Visits every flash entry and every DRAM item with a flash copy (for saving the
 * index). Called with no lock held; takes each shard lock in turn. */
typedef void (*flash_entry_visit)(void *context, const void *key, size_t key_length,
                                  uint32_t segment, uint32_t offset, uint64_t value_length,
                                  int64_t expire_at_ms);
void flash_store_visit(struct store *store, flash_entry_visit visit, void *context);

/* Queues every DRAM item that has no flash copy for writing (shutdown). */
void flash_store_demote_all(struct store *store);

#endif
