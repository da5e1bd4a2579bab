/* The flash tier's private structures, shared by flash.c and flash_recovery.c. */
#ifndef STRATA_ENGINE_FLASH_INTERNAL_H
#define STRATA_ENGINE_FLASH_INTERNAL_H

#include "base/checks.h"
#include "engine/flash.h"

#include <stddef.h>

struct segment {
    uint32_t id;
    int fd;
    uint64_t size;               /* bytes of the file */
    uint64_t end;                /* where the next record goes (the writer's) or went */
    _Atomic uint64_t live;       /* bytes of records the index still points at */
    _Atomic uint32_t references; /* the table's, plus one per read in flight */
};

enum write_kind { WRITE_ITEM, WRITE_TOMBSTONE };

/* A record waiting for the writer. */
struct pending_write {
    struct pending_write *next;
    enum write_kind kind;
    struct item *item;       /* WRITE_ITEM: a reference */
    uint64_t ticket;         /* its place in the queue, from 1 */
    uint64_t demoting_bytes; /* what it adds to store->demoting_bytes; 0 unless a demotion */
    uint32_t segment;        /* where the writer put it */
    uint32_t offset;
    uint64_t record_size;
    size_t key_length; /* WRITE_TOMBSTONE */
    unsigned char key[];
};

struct flash {
    struct store *store;
    char *directory;
    uint64_t capacity;
    uint64_t segment_size;
    bool write_through;
    enum store_fsync fsync;
    _Atomic int64_t pace_timeout_ms;
    int lock_fd;
    bool direct_io;

    pthread_mutex_t lock; /* the segment table, the queue, waiters */
    struct check_owner lock_owner;
    _Atomic uint64_t recovery_thread; /* check_thread() of the recovery thread */
    _Atomic uint64_t writer_thread;   /* check_thread() of the writer thread */
    pthread_cond_t work;
    pthread_cond_t progress;
    struct segment **segments; /* oldest first */
    size_t segment_count;
    size_t segment_capacity;
    uint64_t used; /* bytes of segment files */
    uint32_t next_segment_id;
    struct pending_write *queue_head;
    struct pending_write *queue_tail;
    bool writer_busy;
    uint64_t tickets_issued;
    uint64_t tickets_done;       /* every write up to this ticket is complete */
    uint64_t last_failed_ticket; /* the newest write that failed */
    bool stopping;
    uint64_t progress_count;
    pthread_t writer;
    bool writer_started;
    /* Recovery runs in a thread of its own while the server already answers (LOADING). */
    pthread_t recovery;
    bool recovery_started;
    bool recovery_complete;          /* set by the recovery thread, read after joining */
    _Atomic bool recovery_cancelled; /* the server stops: give up the scan */

    /* Owned by the writer thread. */
    struct io_ring *ring;
    unsigned char *staging;
    size_t staging_fill;
    size_t staging_on_disk;  /* the first bytes of staging the file already holds as they are */
    uint64_t staging_offset; /* file offset of staging[0] in the current segment */
    struct segment *current;
    bool dirty;          /* written since the last sync */
    uint64_t synced_end; /* the current segment is durable up to here (with fsync) */
    uint64_t next_sequence;
    bool rewrite_copies; /* write-through: reclaim writes live DRAM values' copies again */
    struct pending_write *appended; /* written to staging, not yet told to the index */
    struct pending_write **appended_tail;
    int64_t last_sync_ms;

    struct flash_counters counters;
    /* What recovery found; set under lock (INFO reads them while it runs). */
    uint64_t recovery_ms;
    uint64_t recovered_items;
    const char *recovery_source;
};

/* Reads a segment file piece by piece for reclaim and recovery. */
struct segment_reader {
    int fd;
    uint64_t limit; /* bytes of the file that may be read */
    unsigned char *buffer;
    size_t capacity;
    uint64_t buffer_offset;
    size_t buffer_length;
    unsigned char *large;
    size_t large_capacity;
    int error; /* set (an errno) when a read failed, as opposed to reaching the end */
};

/* The segment with ID, or NULL. Called with flash->lock held, or by the recovery
 * thread. */
struct segment *segment_find(struct flash *flash, uint32_t id);

/* Takes and drops a reference on SEGMENT (a reader in flight keeps its file open after
 * reclaim removed it from the table). The caller of take already holds one (it found
 * the segment under flash->lock, or holds a reference itself). */
void segment_take_reference(struct segment *segment);
void segment_release_reference(struct segment *segment);

/* Sets up READER over FD, reading at most LIMIT bytes. Returns false if out of memory. */
bool flash_reader_init(struct segment_reader *reader, int fd, uint64_t limit);

/* Returns LENGTH bytes of the file at OFFSET, or NULL past the limit or on a read error
 * (then reader->error holds the errno until the caller clears it). The bytes stay valid
 * until the next call. */
const unsigned char *flash_reader_at(struct segment_reader *reader, uint64_t offset, size_t length);
void flash_reader_free(struct segment_reader *reader);

/* Reads the record header at OFFSET and the key after it, if they can be trusted
 * (flash_header_valid(), the record within LIMIT bytes from OFFSET): copies the header
 * to *HEADER, points *KEY at the key (valid until the next read) and returns true.
 * Returns false otherwise (reader->error tells a read error from a bad header). */
bool flash_reader_header(struct segment_reader *reader, uint64_t offset, uint64_t limit,
                         struct flash_record_header *header, const unsigned char **key);

/* Opens segment file ID of SIZE bytes found on disk and adds it to the table
 * (recovery). Returns NULL if it cannot. */
struct segment *flash_segment_open_existing(struct flash *flash, uint32_t id, uint64_t size);

/* Records what recovery found: where it came from, how long it took, how many items,
 * and the next sequence number; the next segment id follows the newest segment. */
void flash_set_recovery(struct flash *flash, const char *source, uint64_t milliseconds,
                        uint64_t items, uint64_t next_sequence);

/* flash_recovery.c: opens the segment files at start (0, or -1 with a reason in ERROR:
 * one that cannot be opened stops the start); rebuilds the index from the saved index or
 * a scan (in the recovery thread; returns false if stopped by flash->recovery_cancelled,
 * the index then incomplete); saves the index at shutdown. */
int flash_open_segments(struct flash *flash, char *error, size_t error_size);
bool flash_rebuild_index(struct flash *flash);
void flash_save_index(struct flash *flash);

#endif
