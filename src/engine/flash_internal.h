/* The flash tier's private structures and the functions its files share (flash.c,
 * flash_writer.c, flash_reclaim.c, flash_read.c, flash_stream.c, flash_recovery.c). */
#ifndef STRATA_ENGINE_FLASH_INTERNAL_H
#define STRATA_ENGINE_FLASH_INTERNAL_H

#include "base/checks.h"
#include "engine/flash.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

/* Bytes the writer lays out before writing them in one go. */
#define STAGING_SIZE (4u << 20)

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
    uint64_t demoting_bytes; /* what it adds to the owner's demoting_bytes; 0 unless a demotion */
    uint32_t segment;        /* where the writer put it */
    uint32_t offset;
    uint64_t record_size;
    size_t key_length; /* WRITE_TOMBSTONE */
    unsigned char key[];
};

struct flash {
    struct tier tier; /* first: a struct tier * is a struct flash * (flash_of()) */
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

    /* What recovery found; set under lock (INFO reads them while it runs). */
    uint64_t recovery_ms;
    uint64_t recovered_items;
    const char *recovery_source;
};

static inline struct flash *flash_of(const struct tier *tier) {
    return (struct flash *)tier;
}

/* The owner's callbacks (tier.h), and the context they take. */
#define FLASH_INDEX(flash) ((flash)->tier.owner.index)
#define FLASH_OWNER(flash) ((flash)->tier.owner.context)

static inline void count(_Atomic uint64_t *counter, uint64_t amount) {
    atomic_fetch_add_explicit(counter, amount, memory_order_relaxed);
}

/* ---- flash->lock, with its owner tracked in the checking builds ---------------- */

static inline void flash_lock(struct flash *flash) {
    pthread_mutex_lock(&flash->lock);
    check_acquired(&flash->lock_owner);
    if (STRATA_CHECKING) tier_locks_held++;
}

static inline void flash_unlock(struct flash *flash) {
    check_releasing(&flash->lock_owner);
    if (STRATA_CHECKING) tier_locks_held--;
    pthread_mutex_unlock(&flash->lock);
}

/* Waits on CONDITION with flash->lock held (until UNTIL, a CLOCK_REALTIME time, when
 * not NULL); the lock is let go meanwhile, as far as the checks are concerned too. */
static inline void flash_wait(struct flash *flash, pthread_cond_t *condition,
                              const struct timespec *until) {
    check_releasing(&flash->lock_owner);
    if (STRATA_CHECKING) tier_locks_held--;
    if (until != NULL) {
        pthread_cond_timedwait(condition, &flash->lock, until);
    } else {
        pthread_cond_wait(condition, &flash->lock);
    }
    check_acquired(&flash->lock_owner);
    if (STRATA_CHECKING) tier_locks_held++;
}

/* The rules "called by the writer thread" (it owns the current segment and the staging
 * buffer), "called by the recovery thread", "called with flash->lock held" and "called
 * without it", checked in the checking builds. */
#define ASSERT_WRITER(flash)                                                                       \
    STRATA_ASSERT(atomic_load_explicit(&(flash)->writer_thread, memory_order_relaxed) ==           \
                  check_thread())
#define ASSERT_RECOVERY(flash)                                                                     \
    STRATA_ASSERT(atomic_load_explicit(&(flash)->recovery_thread, memory_order_relaxed) ==         \
                  check_thread())
#define ASSERT_FLASH_LOCKED(flash)   STRATA_ASSERT(check_held(&(flash)->lock_owner))
#define ASSERT_FLASH_UNLOCKED(flash) STRATA_ASSERT(!check_held(&(flash)->lock_owner))

/* ---- flash.c: segments ---------------------------------------------------------- */

/* The path of segment file ID. */
void flash_segment_path(const struct flash *flash, uint32_t id, char *path, size_t size);

/* Creates segment file ID of SIZE bytes, allocated on disk, with its header block, and
 * adds it to the table. Returns the segment or NULL with errno set. */
struct segment *flash_segment_create(struct flash *flash, uint32_t id, uint64_t size);

/* Takes the oldest segment out of the table, deletes its file and drops the table's
 * reference (reads in flight keep it open). */
void flash_segment_remove_oldest(struct flash *flash);

/* Adds SIZE live bytes to segment ID. Called without flash->lock. */
void flash_record_live(struct flash *flash, uint32_t segment_id, uint64_t size);

/* ---- flash_writer.c: the writer thread ---------------------------------------- */

/* The writer thread's body (ARGUMENT: the struct flash). */
void *flash_writer_main(void *argument);

/* Appends one record to the current segment (opening one if it lacks room) and sets
 * *SEGMENT and *OFFSET to where it went. VALUE may be NULL for a tombstone. Writer
 * thread. Returns 0 or a negative errno. */
int flash_append_record(struct flash *flash, const void *key, size_t key_length, const void *value,
                        uint64_t value_length, int64_t expire_at_ms, uint16_t flags,
                        uint32_t *segment, uint32_t *offset);

/* Writes out the staging buffer (keeping a partial block with KEEP_TAIL), syncs as the
 * policy says, and completes the appended records. Writer thread. Returns 0 or a
 * negative errno. */
int flash_writer_checkpoint(struct flash *flash, bool keep_tail);

/* ---- flash_reclaim.c ------------------------------------------------------------ */

/* Reclaims the oldest segment: records read since they were written are copied into
 * the current segment while they fit in *REINSERT_ROOM bytes (which shrinks by what
 * they take); the other live records leave the index; then the file is deleted. Writer
 * thread. */
void flash_reclaim_oldest(struct flash *flash, uint64_t *reinsert_room);

/* ---- the tier's ops (flash.c holds the table), by file ---------------------------- */

/* flash.c */
uint64_t flash_record_bytes(size_t key_length, uint64_t value_length);
void flash_record_dead(struct tier *tier, uint32_t segment, size_t key_length,
                       uint64_t value_length);
void flash_get_stats(struct tier *tier, struct flash_stats *stats);
bool flash_stop_recovery(struct tier *tier);
void flash_close(struct tier *tier, bool save_index);
/* flash_writer.c */
bool flash_accepts(const struct tier *tier, size_t key_length, uint64_t value_length);
uint64_t flash_queue_item(struct tier *tier, struct item *item, bool demote);
uint64_t flash_queue_tombstone(struct tier *tier, const void *key, size_t key_length);
int flash_wait_tickets(struct tier *tier, uint64_t first, uint64_t last);
bool flash_write_through(const struct tier *tier);
bool flash_rewrite_copies(const struct tier *tier);
bool flash_on_writer(const struct tier *tier);
bool flash_tier_wait_progress(struct tier *tier, int64_t deadline_ms);
void flash_drain(struct tier *tier);
int64_t flash_pace_timeout(const struct tier *tier);
void flash_set_pace_timeout(struct tier *tier, int64_t milliseconds);
/* flash_read.c */
bool flash_read_prepare(struct tier *tier, const struct tier_record *record, uint64_t hash,
                        struct tier_read *read);
enum store_status flash_read_start(struct tier_read *read, bool async);
void flash_read_finish(struct tier_read *read);
/* flash_stream.c */
enum store_status flash_stream_open(const struct tier_read *read, bool held, store_read_done done,
                                    void *context, struct store_stream **stream);

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
