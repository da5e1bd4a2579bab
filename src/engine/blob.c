/* Blob files: writing them, reading them and streaming them to an output queue
 * (engine/blob.h). The directory (naming, listing, removing, deferred syncs) is in
 * blob_store.c.
 *
 * The layout of a blob file, every integer little-endian:
 *
 *     offset 0                 data            LENGTH bytes, cut into chunks of
 *                                              CHUNK_SIZE bytes (the last may be shorter)
 *     offset LENGTH            sums            CHUNK_COUNT u32: the CRC32C of each chunk
 *     offset LENGTH + 4*COUNT  footer, 32 bytes:
 *         bytes  0..7   magic "STRBLOB1"
 *         bytes  8..15  u64 LENGTH, the data's length
 *         bytes 16..19  u32 CHUNK_SIZE
 *         bytes 20..23  u32 CHUNK_COUNT = ceil(LENGTH / CHUNK_SIZE) (0 for an empty blob)
 *         bytes 24..27  u32 CRC32C of the sums' 4*CHUNK_COUNT bytes
 *         bytes 28..31  u32 CRC32C of the footer's bytes 0..27
 *
 * so the file is exactly LENGTH + 4*CHUNK_COUNT + 32 bytes long. A blob is opened for
 * reading once for all readers (the store's cache, blob_store.c): the footer at the end
 * of the file and the sums are checked then, and every chunk a reader reads is checked
 * against its sum.
 *
 * A reader opens nothing itself: it keeps the extents and where each starts in the
 * value, and takes the blobs a read or a stream touches from the cache as it reaches
 * them, holding at most READER_HELD at once (a few used by the reads under way, the
 * rest kept for the next range, given back to the cache as others are needed). Those
 * are open files; apart from them, from blob_reader_open() to its end a reader holds
 * every blob of its value on disk (blob_store_hold(): an unlink waits for the reader),
 * so a reader that reaches a blob only after its version was replaced or deleted still
 * finds it.
 *
 * Every chunk a reader reads or streams is read into a buffer of its own (buffers come
 * from a free list per thread) and checked there, so the bytes checked are the bytes
 * sent: a chunk's pages evicted and read back from a damaged disk between the check and
 * the send cannot go out unchecked, and a disk error is an error code. A stream that
 * meets a chunk that may not be in the page cache asks the kernel to read ahead of it
 * (range_maybe_cold(), advise_ahead()).
 * (Sending resident chunks by reference from a mapping of the blob was tried and removed:
 * docs/performance.md, "S3 GET and PUT".)
 *
 * Writers and readers are used by one thread at a time. A stream (blob_reader_send())
 * lives on the thread that started it: its io_ring's completions and the output queue's
 * releases both run there. */
#include "base/checks.h"
#include "base/crc32c.h"
#include "base/fault.h"
#include "base/io_ring.h"
#include "base/log.h"
#include "base/output_queue.h"
#include "engine/blob_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BLOB_FOOTER_SIZE 32
#define BLOB_MAGIC       "STRBLOB1"
#define BLOB_ALIGNMENT   4096

/* Buffers (one chunk each) a stream may hold at once: reading, read and waiting for
 * their turn, or queued on the connection, so a slow client holds at most this many
 * chunks (4 MiB at the default 1 MiB chunk, 256 MiB at the 64 MiB maximum). Cold
 * streams do not need a deeper window to keep the disk busy: they ask the kernel to
 * read ahead (BLOB_READAHEAD), into the page cache, which it can reclaim. */
#define BLOB_SEND_WINDOW 4

/* How far ahead of a stream that met a chunk that may not be in the page cache (every
 * chunk where the kernel has no cachestat(): range_maybe_cold()) the kernel is asked
 * to read its blob (posix_fadvise(POSIX_FADV_WILLNEED)), within the stream's range, in
 * calls of at most BLOB_ADVISE_PIECE (the kernel reads at most max(read_ahead_kb,
 * max_sectors_kb) per call). The chunks' reads through the ring then find their pages
 * in the page cache, or wait on reads already under way. */
#define BLOB_READAHEAD    (16u * 1024 * 1024)
#define BLOB_ADVISE_PIECE (1024u * 1024)

/* Idle chunk buffers a thread keeps for its next streams and reads: at most
 * BUFFER_POOL_MAX of them and BUFFER_POOL_BYTES together (a larger buffer is freed). */
#define BUFFER_POOL_MAX   8
#define BUFFER_POOL_BYTES (8u * 1024 * 1024)

/* ---- little-endian integers ------------------------------------------------------ */

static void put_u32(unsigned char *at, uint32_t value) {
    for (int i = 0; i < 4; i++)
        at[i] = (unsigned char)(value >> (8 * i));
}

static void put_u64(unsigned char *at, uint64_t value) {
    for (int i = 0; i < 8; i++)
        at[i] = (unsigned char)(value >> (8 * i));
}

static uint32_t get_u32(const unsigned char *at) {
    uint32_t value = 0;
    for (int i = 3; i >= 0; i--)
        value = value << 8 | at[i];
    return value;
}

static uint64_t get_u64(const unsigned char *at) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--)
        value = value << 8 | at[i];
    return value;
}

/* ---- plain I/O --------------------------------------------------------------------- */

/* What an errno from a write or sync means to the caller. */
static enum blob_status status_of_errno(int error) {
    return error == ENOSPC || error == EDQUOT ? BLOB_NO_SPACE : BLOB_IO_ERROR;
}

/* Writes LENGTH bytes of DATA at OFFSET of FD, going on after short writes and EINTR.
 * Returns 0 or the errno of the failure. */
static int write_fully(int fd, const unsigned char *data, size_t length, uint64_t offset) {
    size_t done = 0;
    while (done < length) {
        ssize_t wrote = fault_fails(FAULT_write)
                            ? -1
                            : pwrite(fd, data + done, length - done, (off_t)(offset + done));
        if (wrote < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (wrote == 0) return EIO; /* a regular file never does this; do not spin */
        done += (size_t)wrote;
    }
    return 0;
}

/* Reads up to LENGTH bytes at OFFSET of FD into BUFFER, going on after short reads and
 * EINTR until LENGTH or the end of the file. Returns the bytes read or a negative errno. */
static ssize_t read_fully(int fd, unsigned char *buffer, size_t length, uint64_t offset) {
    size_t done = 0;
    while (done < length) {
        ssize_t got = fault_fails(FAULT_read)
                          ? -1
                          : pread(fd, buffer + done, length - done, (off_t)(offset + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    return (ssize_t)done;
}

/* fdatasync or fsync FD (DATA_ONLY says which), through the fault site. Returns 0 or the
 * errno. */
static int sync_fd(int fd, bool data_only) {
    if (fault_fails(FAULT_sync)) return errno;
    int result = data_only ? fdatasync(fd) : fsync(fd);
    return result == 0 ? 0 : errno;
}

/* ---- chunk buffers: a free list per thread ------------------------------------------ */

/* The idle chunk buffers of one thread, most recently given last. Reached only from its
 * thread (thread_pool); freed with its buffers when the thread ends (pool_key's
 * destructor). A thread that never ends (the process's main thread) keeps its pool to
 * the end: bounded, and reachable from its thread-local pointer. */
struct buffer_pool {
    size_t count;
    size_t bytes; /* of the buffers in it */
    struct {
        unsigned char *data;
        size_t size;
    } buffers[BUFFER_POOL_MAX];
};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_key_t pool_key;
static bool pool_key_made;
static _Thread_local struct buffer_pool *thread_pool;

/* pool_key's destructor: frees the ending thread's pool and its buffers. */
static void pool_destroy(void *argument) {
    struct buffer_pool *pool = argument;
    for (size_t i = 0; i < pool->count; i++)
        free(pool->buffers[i].data);
    free(pool);
    thread_pool = NULL;
}

static void pool_key_create(void) {
    pool_key_made = pthread_key_create(&pool_key, pool_destroy) == 0;
}

/* The calling thread's pool, made at its first use, or NULL when it cannot be made
 * (buffers are then allocated and freed each time). */
static struct buffer_pool *pool_get(void) {
    if (thread_pool != NULL) return thread_pool;
    pthread_once(&pool_once, pool_key_create);
    if (!pool_key_made) return NULL;
    struct buffer_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) return NULL;
    if (pthread_setspecific(pool_key, pool) != 0) {
        free(pool);
        return NULL;
    }
    thread_pool = pool;
    return pool;
}

/* A chunk buffer of SIZE bytes, 4096-aligned: the calling thread's most recently given
 * one of that size, or a new one. Returns NULL when none can be allocated. The caller
 * owns it: buffer_give() it (or free() it) when done. */
static unsigned char *buffer_take(size_t size) {
    struct buffer_pool *pool = thread_pool;
    if (pool != NULL) {
        for (size_t i = pool->count; i-- > 0;) {
            if (pool->buffers[i].size != size) continue;
            unsigned char *data = pool->buffers[i].data;
            pool->bytes -= size;
            pool->count--;
            memmove(&pool->buffers[i], &pool->buffers[i + 1],
                    (pool->count - i) * sizeof(pool->buffers[0]));
            return data;
        }
    }
    return aligned_alloc(BLOB_ALIGNMENT, size);
}

/* Gives DATA (SIZE bytes, from buffer_take(); NULL: nothing) back: into the calling
 * thread's pool when it has room, else freed; the oldest buffers of the pool make room
 * for it. Any thread (a buffer taken on one thread joins the pool of the one giving it). */
static void buffer_give(unsigned char *data, size_t size) {
    if (data == NULL) return;
    struct buffer_pool *pool = pool_get();
    if (pool == NULL || size > BUFFER_POOL_BYTES) {
        free(data);
        return;
    }
    while (pool->count > 0 &&
           (pool->count == BUFFER_POOL_MAX || pool->bytes + size > BUFFER_POOL_BYTES)) {
        free(pool->buffers[0].data);
        pool->bytes -= pool->buffers[0].size;
        pool->count--;
        memmove(&pool->buffers[0], &pool->buffers[1], pool->count * sizeof(pool->buffers[0]));
    }
    pool->buffers[pool->count].data = data;
    pool->buffers[pool->count].size = size;
    pool->count++;
    pool->bytes += size;
}

/* ---- writing ----------------------------------------------------------------------- */

struct blob_writer {
    struct blob_store *store;
    uint64_t id;
    int fd;
    uint32_t chunk_size;
    unsigned char *chunk; /* the chunk being filled: chunk_size bytes, 4096-aligned */
    size_t filled;        /* bytes in it; below chunk_size between calls */
    uint64_t length;      /* bytes appended */
    uint32_t *sums;       /* one CRC32C per chunk written */
    uint32_t sum_count;
    size_t sum_capacity;
    EVP_MD_CTX *md5;
    uint32_t running_crc;     /* CRC32C of the chunks written, not finished */
    enum blob_status failure; /* BLOB_OK until something failed; then only abort is left */
};

/* Logs a failure of blob ID's write (DURING says which step) and returns its status. */
static enum blob_status write_failed(uint64_t id, const char *during, int error) {
    log_event(LOG_ERROR, "blob_write_failed", "blob=%016" PRIx64 " during=%s reason=\"%s\"", id,
              during, strerror(error));
    return status_of_errno(error);
}

/* Removes the file of WRITER's blob (finish failed, or abort). */
static void writer_remove_file(struct blob_writer *writer) {
    char path[4096];
    blob_path(writer->store, writer->id, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT) {
        log_event(LOG_WARNING, "blob_unlink_failed", "blob=%016" PRIx64 " reason=\"%s\"",
                  writer->id, strerror(errno));
    }
}

/* Closes WRITER's file and frees it (the file itself stays or goes as the caller did). */
static void writer_free(struct blob_writer *writer) {
    if (writer->fd >= 0) close(writer->fd);
    EVP_MD_CTX_free(writer->md5);
    free(writer->sums);
    free(writer->chunk);
    free(writer);
}

enum blob_status blob_writer_open(struct blob_store *store, struct blob_writer **opened) {
    *opened = NULL;
    struct blob_writer *writer = calloc(1, sizeof(*writer));
    if (writer == NULL) return BLOB_NO_MEMORY;
    writer->store = store;
    writer->fd = -1;
    writer->chunk_size = store->chunk_size;
    writer->running_crc = CRC32C_START;
    /* The chunk buffer is taken now, not at the first byte: blob_writer_space() cannot
     * report a failure. */
    writer->chunk = aligned_alloc(BLOB_ALIGNMENT, writer->chunk_size);
    writer->md5 = EVP_MD_CTX_new();
    if (writer->chunk == NULL || writer->md5 == NULL ||
        EVP_DigestInit_ex(writer->md5, EVP_md5(), NULL) != 1) {
        writer_free(writer);
        return BLOB_NO_MEMORY;
    }
    /* A fresh random id; another blob holding it already (or a writer racing us for it)
     * makes the exclusive create fail, and we draw again. */
    for (int attempt = 0;; attempt++) {
        uint64_t id;
        if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
            if (errno == EINTR) continue;
            enum blob_status status = write_failed(0, "getrandom", errno);
            writer_free(writer);
            return status;
        }
        char path[4096];
        blob_path(store, id, path, sizeof(path));
        int fd = fault_fails(FAULT_open)
                     ? -1
                     : open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            writer->id = id;
            writer->fd = fd;
            break;
        }
        if (errno == EEXIST && attempt < 64) continue;
        enum blob_status status = write_failed(id, "create", errno);
        writer_free(writer);
        return status;
    }
    *opened = writer;
    return BLOB_OK;
}

/* Writes the chunk in WRITER's buffer (filled bytes, a whole chunk or the last partial
 * one) to its place in the file and records its CRC32C. Returns BLOB_OK or the failure
 * (also kept in writer->failure). */
static enum blob_status write_chunk(struct blob_writer *writer) {
    if (writer->filled == 0) return BLOB_OK;
    size_t length = writer->filled;
    writer->filled = 0; /* even on failure: blob_writer_space() keeps giving room */
    if (writer->sum_count == UINT32_MAX) {
        writer->failure = write_failed(writer->id, "append", EFBIG);
        return writer->failure;
    }
    if (writer->sum_count == writer->sum_capacity) {
        size_t grown = writer->sum_capacity ? writer->sum_capacity * 2 : 64;
        uint32_t *bigger = realloc(writer->sums, grown * sizeof(*bigger));
        if (bigger == NULL) {
            writer->failure = BLOB_NO_MEMORY;
            return writer->failure;
        }
        writer->sums = bigger;
        writer->sum_capacity = grown;
    }
    uint64_t offset = (uint64_t)writer->sum_count * writer->chunk_size;
    int error = write_fully(writer->fd, writer->chunk, length, offset);
    if (error != 0) {
        writer->failure = write_failed(writer->id, "write", error);
        return writer->failure;
    }
    writer->sums[writer->sum_count++] = crc32c(writer->chunk, length);
    writer->running_crc = crc32c_update(writer->running_crc, writer->chunk, length);
    if (EVP_DigestUpdate(writer->md5, writer->chunk, length) != 1) {
        writer->failure = BLOB_NO_MEMORY;
        return writer->failure;
    }
    return BLOB_OK;
}

enum blob_status blob_writer_append(struct blob_writer *writer, const void *data, size_t length) {
    const unsigned char *bytes = data;
    while (writer->failure == BLOB_OK && length > 0) {
        size_t room = writer->chunk_size - writer->filled;
        size_t taken = length < room ? length : room;
        memcpy(writer->chunk + writer->filled, bytes, taken);
        writer->filled += taken;
        writer->length += taken;
        bytes += taken;
        length -= taken;
        if (writer->filled == writer->chunk_size) write_chunk(writer);
    }
    return writer->failure;
}

void blob_writer_space(struct blob_writer *writer, unsigned char **buffer, size_t *length) {
    STRATA_ASSERT(writer->filled < writer->chunk_size);
    *buffer = writer->chunk + writer->filled;
    *length = writer->chunk_size - writer->filled;
}

enum blob_status blob_writer_filled(struct blob_writer *writer, size_t length) {
    if (writer->failure != BLOB_OK) return writer->failure;
    STRATA_ASSERT(length <= writer->chunk_size - writer->filled);
    writer->filled += length;
    writer->length += length;
    if (writer->filled == writer->chunk_size) write_chunk(writer);
    return writer->failure;
}

uint64_t blob_writer_length(const struct blob_writer *writer) {
    return writer->length;
}

/* Writes WRITER's sums and footer after its data. Returns BLOB_OK or the failure. */
static enum blob_status write_tail(struct blob_writer *writer) {
    size_t sums_size = (size_t)writer->sum_count * 4;
    unsigned char *tail = malloc(sums_size + BLOB_FOOTER_SIZE);
    if (tail == NULL) return BLOB_NO_MEMORY;
    for (uint32_t i = 0; i < writer->sum_count; i++)
        put_u32(tail + 4 * (size_t)i, writer->sums[i]);
    unsigned char *footer = tail + sums_size;
    memcpy(footer, BLOB_MAGIC, 8);
    put_u64(footer + 8, writer->length);
    put_u32(footer + 16, writer->chunk_size);
    put_u32(footer + 20, writer->sum_count);
    put_u32(footer + 24, crc32c(tail, sums_size));
    put_u32(footer + 28, crc32c(footer, 28));
    int error = write_fully(writer->fd, tail, sums_size + BLOB_FOOTER_SIZE, writer->length);
    free(tail);
    return error == 0 ? BLOB_OK : write_failed(writer->id, "write", error);
}

/* Makes WRITER's finished file durable as the store's policy says. Returns BLOB_OK or
 * the failure. */
static enum blob_status sync_finished(struct blob_writer *writer) {
    struct blob_store *store = writer->store;
    switch (store->sync) {
    case BLOB_SYNC_NEVER:
        return BLOB_OK;
    case BLOB_SYNC_LATER: {
        int copy = fcntl(writer->fd, F_DUPFD_CLOEXEC, 0);
        if (copy >= 0) {
            blob_store_add_pending(store, copy);
            return BLOB_OK;
        }
        break; /* no descriptor to hand over: sync now instead */
    }
    case BLOB_SYNC_NOW:
        break;
    }
    int error = sync_fd(writer->fd, true);
    if (error == 0) error = sync_fd(store->directory_fd, false); /* the name, too */
    if (error != 0) {
        atomic_fetch_add(&store->sync_errors, 1);
        log_event(LOG_ERROR, "blob_sync_failed", "blob=%016" PRIx64 " reason=\"%s\"", writer->id,
                  strerror(error));
        return status_of_errno(error);
    }
    return BLOB_OK;
}

enum blob_status blob_writer_finish(struct blob_writer *writer, struct blob_digest *digest) {
    enum blob_status status = writer->failure;
    if (status == BLOB_OK) status = write_chunk(writer);
    if (status == BLOB_OK) status = write_tail(writer);
    if (status == BLOB_OK) status = sync_finished(writer);
    unsigned char md5[EVP_MAX_MD_SIZE];
    unsigned int md5_length = 0;
    if (status == BLOB_OK &&
        (EVP_DigestFinal_ex(writer->md5, md5, &md5_length) != 1 || md5_length != 16)) {
        status = BLOB_NO_MEMORY;
    }
    if (status != BLOB_OK) {
        writer_remove_file(writer);
        writer_free(writer);
        return status;
    }
    uint64_t file_size =
        writer->length + (uint64_t)writer->sum_count * 4 + (uint64_t)BLOB_FOOTER_SIZE;
    atomic_fetch_add(&writer->store->bytes, file_size);
    digest->id = writer->id;
    digest->length = writer->length;
    memcpy(digest->md5, md5, 16);
    digest->crc32c = crc32c_finish(writer->running_crc);
    writer_free(writer);
    return BLOB_OK;
}

void blob_writer_abort(struct blob_writer *writer) {
    if (writer == NULL) return;
    writer_remove_file(writer);
    writer_free(writer);
}

/* ---- reading ----------------------------------------------------------------------- */

/* Blobs a reader holds references to at once (struct held_blob): one per buffer of a
 * stream's window, one for the step being started, and one kept for the next range. */
#define READER_HELD (BLOB_SEND_WINDOW + 2)

/* A blob a reader holds, from the store's cache. */
struct held_blob {
    struct blob_open *open; /* a reference from blob_store_acquire(), or NULL */
    unsigned users;         /* steps (a read, a window buffer) using it now */
    uint64_t last_used;     /* the reader's clock when last taken (0: empty) */
};

/* Where a walk over the value stands: extent EXTENT, INSIDE bytes into it, REMAINING
 * bytes still to go. */
struct value_cursor {
    size_t extent;
    uint64_t inside;
    uint64_t remaining;
};

/* One read's worth of a walk: bytes [FROM, FROM + LENGTH) of chunk CHUNK of the blob
 * the reader holds at HELD (-1 when the step holds nothing: not planned, done, or
 * failed). */
struct chunk_step {
    int held;
    uint32_t chunk;
    size_t from;
    size_t length;
};

enum slot_state {
    SLOT_FREE,
    SLOT_READING, /* an io_ring read is in flight into it */
    SLOT_READ,    /* read (result set) or failed (failure set), waiting for its turn */
    SLOT_SENDING, /* its piece is in the output queue */
};

/* A buffer of a stream's window: holds one chunk. */
struct send_slot {
    struct io_ring_operation operation; /* first: completions find the slot from it */
    struct blob_reader *reader;
    unsigned char *buffer; /* buffer_size bytes, taken at first use, grown for a larger
                              chunk size, then reused */
    size_t buffer_size;
    enum slot_state state;
    uint64_t sequence; /* which step of the stream it holds */
    struct chunk_step step;
    size_t chunk_length;      /* bytes of the chunk (the read asked for this many) */
    ssize_t result;           /* of the read: bytes read, or a negative errno */
    enum blob_status failure; /* BLOB_OK, or why the step could not be read at all */
};

struct blob_reader {
    struct blob_store *store;
    struct blob_extent *extents;
    uint64_t *starts; /* where each extent starts in the value (a binary search finds an
                         offset's extent) */
    size_t extent_count;
    uint64_t length; /* of the value */
    bool holding;    /* holds the extents' blobs (blob_store_hold()) */
    struct held_blob held[READER_HELD];
    uint64_t clock;         /* ticks at each hold: which held blob was used last */
    unsigned char *scratch; /* blob_reader_read()'s buffer, scratch_size bytes */
    size_t scratch_size;
    /* blob_reader_send(): */
    struct output_queue *queue; /* NULL once the queue cancelled the stream */
    struct output_chunk *chunk;
    void (*wake)(void *context);
    void *wake_context;
    struct io_ring *ring;       /* the thread's ring, or NULL: read synchronously */
    struct value_cursor cursor; /* the next chunk to read */
    uint64_t advised_id;        /* the blob the kernel was asked to read ahead ... */
    uint64_t advised_end;       /* ... up to this offset of its data */
    bool advising;              /* a chunk of advised_id may be cold: read ahead */
    uint64_t next_read;         /* sequence number of the next read */
    uint64_t next_piece;        /* sequence number of the next piece to queue */
    uint64_t left_to_add;       /* bytes of the stream not queued yet */
    unsigned reads_in_flight;
    unsigned pieces_queued;
    bool attached;  /* the stream chunk is unfinished: the queue may still cancel it */
    bool cancelled; /* the queue was cleared */
    bool failed;    /* a read or check failed, or the queue could not take a piece */
    bool pumping;   /* inside pump(): no re-entry, no free */
    bool quiet;     /* inside blob_reader_send(): no wake, no free */
    bool woken;     /* pieces were added (or the stream failed) since the last wake */
    struct send_slot slots[BLOB_SEND_WINDOW];
};

/* Frees READER: lets go of the blobs it has open (nothing may be reading them any
 * more) and of its hold on its value's blobs (which may remove some: blob_store_unhold()),
 * and frees every buffer. */
static void reader_free(struct blob_reader *reader) {
    for (int i = 0; i < READER_HELD; i++) {
        STRATA_ASSERT(reader->held[i].users == 0);
        blob_store_release(reader->store, reader->held[i].open);
    }
    if (reader->holding) blob_store_unhold(reader->store, reader->extents, reader->extent_count);
    for (int i = 0; i < BLOB_SEND_WINDOW; i++)
        buffer_give(reader->slots[i].buffer, reader->slots[i].buffer_size);
    free(reader->extents);
    free(reader->starts);
    buffer_give(reader->scratch, reader->scratch_size);
    free(reader);
}

/* Logs that blob ID's file is damaged (WHAT says where) and returns BLOB_CORRUPT. */
static enum blob_status file_damaged(uint64_t id, const char *what) {
    log_event(LOG_ERROR, "blob_damaged", "blob=%016" PRIx64 " reason=\"%s\"", id, what);
    return BLOB_CORRUPT;
}

/* Logs a read of blob ID that failed with ERROR (positive errno) during DURING. */
static enum blob_status read_failed(uint64_t id, const char *during, int error) {
    log_event(LOG_ERROR, "blob_read_failed", "blob=%016" PRIx64 " during=%s reason=\"%s\"", id,
              during, strerror(error));
    return BLOB_IO_ERROR;
}

void blob_open_free(struct blob_open *open) {
    if (open == NULL) return;
    if (open->fd >= 0) close(open->fd);
    free(open->sums);
    free(open);
}

/* Checks the size, footer and sums of FILE, whose fd is open, and fills its length,
 * chunk size, chunk count and sums. */
static enum blob_status check_file(struct blob_open *file) {
    struct stat status;
    if (fstat(file->fd, &status) != 0) return read_failed(file->id, "stat", errno);
    uint64_t size = (uint64_t)status.st_size;
    if (size < BLOB_FOOTER_SIZE) return file_damaged(file->id, "shorter than a footer");
    unsigned char footer[BLOB_FOOTER_SIZE];
    ssize_t got = read_fully(file->fd, footer, sizeof(footer), size - BLOB_FOOTER_SIZE);
    if (got < 0) return read_failed(file->id, "footer", (int)-got);
    if (got != BLOB_FOOTER_SIZE) return file_damaged(file->id, "footer cut short");
    if (memcmp(footer, BLOB_MAGIC, 8) != 0) return file_damaged(file->id, "no blob magic");
    if (get_u32(footer + 28) != crc32c(footer, 28)) return file_damaged(file->id, "footer crc");
    file->length = get_u64(footer + 8);
    file->chunk_size = get_u32(footer + 16);
    file->chunk_count = get_u32(footer + 20);
    uint32_t chunk_size = file->chunk_size;
    if (chunk_size < BLOB_MIN_CHUNK_SIZE || chunk_size > BLOB_MAX_CHUNK_SIZE ||
        (chunk_size & (chunk_size - 1)) != 0) {
        return file_damaged(file->id, "bad chunk size");
    }
    if (file->length > size ||
        (file->length + chunk_size - 1) / chunk_size != (uint64_t)file->chunk_count) {
        return file_damaged(file->id, "chunk count does not match the length");
    }
    uint64_t sums_size = (uint64_t)file->chunk_count * 4;
    if (file->length + sums_size + BLOB_FOOTER_SIZE != size) {
        return file_damaged(file->id, "file size does not match the footer");
    }
    unsigned char *sums = malloc(sums_size ? (size_t)sums_size : 1);
    file->sums = malloc(sums_size ? (size_t)sums_size : 1);
    if (sums == NULL || file->sums == NULL) {
        free(sums);
        return BLOB_NO_MEMORY;
    }
    got = read_fully(file->fd, sums, (size_t)sums_size, file->length);
    enum blob_status outcome = BLOB_OK;
    if (got < 0) {
        outcome = read_failed(file->id, "sums", (int)-got);
    } else if ((uint64_t)got != sums_size) {
        outcome = file_damaged(file->id, "sums cut short");
    } else if (crc32c(sums, (size_t)sums_size) != get_u32(footer + 24)) {
        outcome = file_damaged(file->id, "sums crc");
    } else {
        for (uint32_t i = 0; i < file->chunk_count; i++)
            file->sums[i] = get_u32(sums + 4 * (size_t)i);
    }
    free(sums);
    return outcome;
}

enum blob_status blob_open_file(struct blob_store *store, uint64_t id, struct blob_open **opened) {
    *opened = NULL;
    struct blob_open *file = calloc(1, sizeof(*file));
    if (file == NULL) return BLOB_NO_MEMORY;
    file->id = id;
    char path[4096];
    blob_path(store, id, path, sizeof(path));
    file->fd = fault_fails(FAULT_open) ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    enum blob_status status;
    if (file->fd < 0) {
        status = errno == ENOENT ? BLOB_NOT_FOUND : read_failed(id, "open", errno);
    } else {
        status = check_file(file);
    }
    if (status != BLOB_OK) {
        blob_open_free(file);
        return status;
    }
    *opened = file;
    return BLOB_OK;
}

/* Takes blob ID for a step of READER: the held blob of that id, or a fresh reference
 * from the store's cache in place of the held blob no step uses that was used least
 * recently (let go to the cache). Returns BLOB_OK with *INDEX its place in reader->held
 * (its users counted up: the step lets go with step_done()), or the failure. */
static enum blob_status reader_hold(struct blob_reader *reader, uint64_t id, int *index) {
    int spare = -1;
    for (int i = 0; i < READER_HELD; i++) {
        struct held_blob *held = &reader->held[i];
        if (held->open != NULL && held->open->id == id) {
            held->users++;
            held->last_used = ++reader->clock;
            *index = i;
            return BLOB_OK;
        }
        if (held->users == 0 && (spare < 0 || held->last_used < reader->held[spare].last_used))
            spare = i;
    }
    /* At most BLOB_SEND_WINDOW steps are in use at once, fewer than READER_HELD. */
    STRATA_ASSERT(spare >= 0);
    if (spare < 0) return BLOB_NO_MEMORY;
    struct blob_open *open;
    enum blob_status status = blob_store_acquire(reader->store, id, &open);
    if (status != BLOB_OK) return status;
    struct held_blob *held = &reader->held[spare];
    blob_store_release(reader->store, held->open);
    held->open = open;
    held->users = 1;
    held->last_used = ++reader->clock;
    *index = spare;
    return BLOB_OK;
}

/* The blob STEP (which holds one) reads. */
static const struct blob_open *step_blob(const struct blob_reader *reader,
                                         const struct chunk_step *step) {
    STRATA_ASSERT(step->held >= 0 && reader->held[step->held].users > 0);
    return reader->held[step->held].open;
}

/* STEP no longer needs its blob (it stays held for the next step, until its place is
 * wanted for another blob). Nothing when STEP holds none. */
static void step_done(struct blob_reader *reader, struct chunk_step *step) {
    if (step->held < 0) return;
    STRATA_ASSERT(reader->held[step->held].users > 0);
    reader->held[step->held].users--;
    step->held = -1;
}

enum blob_status blob_reader_open(struct blob_store *store, const struct blob_extent *extents,
                                  size_t count, struct blob_reader **opened) {
    *opened = NULL;
    struct blob_reader *reader = calloc(1, sizeof(*reader));
    if (reader == NULL) return BLOB_NO_MEMORY;
    reader->store = store;
    size_t slots = count ? count : 1;
    reader->extents = malloc(slots * sizeof(*reader->extents));
    reader->starts = calloc(slots, sizeof(*reader->starts));
    if (reader->extents == NULL || reader->starts == NULL) {
        reader_free(reader);
        return BLOB_NO_MEMORY;
    }
    if (count > 0) memcpy(reader->extents, extents, count * sizeof(*extents));
    reader->extent_count = count;
    for (int i = 0; i < BLOB_SEND_WINDOW; i++) {
        reader->slots[i].reader = reader;
        reader->slots[i].step.held = -1;
    }
    for (size_t i = 0; i < count; i++) {
        const struct blob_extent *extent = &reader->extents[i];
        if (extent->length > UINT64_MAX - reader->length) {
            enum blob_status status = file_damaged(extent->id, "extents add up past 2^64");
            reader_free(reader);
            return status;
        }
        reader->starts[i] = reader->length;
        reader->length += extent->length;
    }
    enum blob_status held = blob_store_hold(store, reader->extents, count);
    if (held != BLOB_OK) {
        reader_free(reader);
        return held;
    }
    reader->holding = true;
    *opened = reader;
    return BLOB_OK;
}

uint64_t blob_reader_length(const struct blob_reader *reader) {
    return reader->length;
}

void blob_reader_close(struct blob_reader *reader) {
    if (reader != NULL) reader_free(reader);
}

/* A cursor at byte OFFSET of READER's value with LENGTH bytes to go (the range lies in
 * the value): in the last extent that starts at or before OFFSET, found by a binary
 * search (empty extents before it are passed over; next_step() skips any others). */
static struct value_cursor cursor_at(const struct blob_reader *reader, uint64_t offset,
                                     uint64_t length) {
    size_t low = 0, high = reader->extent_count;
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (reader->starts[middle] <= offset) {
            low = middle;
        } else {
            high = middle;
        }
    }
    return (struct value_cursor){
        .extent = low, .inside = offset - reader->starts[low], .remaining = length};
}

/* The next step of CURSOR (which has bytes remaining): the chunk it is in and the bytes
 * of it that the value takes, up to the chunk's, the extent's or the range's end.
 * Holds the extent's blob for the step (opening it through the store's cache if the
 * reader does not hold it) and checks the extent lies within the blob's data. Returns
 * BLOB_OK with *STEP set and CURSOR moved past its bytes, or the failure (BLOB_NOT_FOUND,
 * BLOB_CORRUPT, BLOB_IO_ERROR, BLOB_NO_MEMORY) with CURSOR at the extent that failed
 * and STEP holding nothing. */
static enum blob_status next_step(struct blob_reader *reader, struct value_cursor *cursor,
                                  struct chunk_step *step) {
    while (cursor->inside >= reader->extents[cursor->extent].length) {
        cursor->inside -= reader->extents[cursor->extent].length; /* skips empty extents */
        cursor->extent++;
    }
    const struct blob_extent *extent = &reader->extents[cursor->extent];
    step->held = -1;
    int held;
    enum blob_status status = reader_hold(reader, extent->id, &held);
    if (status != BLOB_OK) return status;
    const struct blob_open *file = reader->held[held].open;
    if (extent->offset > file->length || extent->length > file->length - extent->offset) {
        reader->held[held].users--;
        return file_damaged(extent->id, "extent beyond the blob's data");
    }
    uint64_t at = extent->offset + cursor->inside;
    step->held = held;
    step->chunk = (uint32_t)(at / file->chunk_size);
    step->from = (size_t)(at % file->chunk_size);
    uint64_t length = file->chunk_size - step->from;
    if (length > extent->length - cursor->inside) length = extent->length - cursor->inside;
    if (length > cursor->remaining) length = cursor->remaining;
    step->length = (size_t)length;
    cursor->inside += length;
    cursor->remaining -= length;
    return BLOB_OK;
}

/* The length of chunk CHUNK of FILE (the last one may be short). */
static size_t chunk_length(const struct blob_open *file, uint32_t chunk) {
    uint64_t start = (uint64_t)chunk * file->chunk_size;
    uint64_t left = file->length - start;
    return left < file->chunk_size ? (size_t)left : file->chunk_size;
}

/* The bytes of buffer a read of FILE's chunks needs: a chunk, or the whole data rounded
 * up to the alignment when the blob is smaller than one chunk (so that many small
 * objects pipelined to one client do not each hold a chunk-sized buffer). */
static size_t buffer_size_for(const struct blob_open *file) {
    if (file->length >= file->chunk_size) return file->chunk_size;
    uint64_t rounded = (file->length + BLOB_ALIGNMENT - 1) / BLOB_ALIGNMENT * BLOB_ALIGNMENT;
    return rounded == 0 ? BLOB_ALIGNMENT : (size_t)rounded;
}

/* Checks chunk CHUNK of FILE, LENGTH bytes at DATA, as read with RESULT (bytes read or a
 * negative errno): it must be whole and match its sum. Logs a failure. */
static enum blob_status check_chunk(const struct blob_open *file, uint32_t chunk,
                                    const unsigned char *data, size_t length, ssize_t result) {
    if (result < 0) return read_failed(file->id, "chunk", (int)-result);
    if ((size_t)result != length || crc32c(data, length) != file->sums[chunk]) {
        log_event(LOG_ERROR, "blob_checksum_failed", "blob=%016" PRIx64 " chunk=%" PRIu32 "%s",
                  file->id, chunk, (size_t)result != length ? " reason=\"cut short\"" : "");
        return BLOB_CORRUPT;
    }
    return BLOB_OK;
}

/* Whether [OFFSET, OFFSET + LENGTH) lies inside READER's value. */
static bool range_valid(const struct blob_reader *reader, uint64_t offset, uint64_t length) {
    return offset <= reader->length && length <= reader->length - offset;
}

enum blob_status blob_reader_read(struct blob_reader *reader, uint64_t offset, uint64_t length,
                                  unsigned char *destination) {
    STRATA_ASSERT(range_valid(reader, offset, length));
    if (!range_valid(reader, offset, length)) return BLOB_IO_ERROR;
    struct value_cursor cursor = cursor_at(reader, offset, length);
    while (cursor.remaining > 0) {
        struct chunk_step step;
        enum blob_status status = next_step(reader, &cursor, &step);
        if (status != BLOB_OK) return status;
        const struct blob_open *file = step_blob(reader, &step);
        size_t whole = chunk_length(file, step.chunk);
        uint64_t start = (uint64_t)step.chunk * file->chunk_size;
        size_t needed = buffer_size_for(file);
        if (reader->scratch_size < needed) {
            buffer_give(reader->scratch, reader->scratch_size);
            reader->scratch = buffer_take(needed);
            reader->scratch_size = reader->scratch != NULL ? needed : 0;
            if (reader->scratch == NULL) {
                step_done(reader, &step);
                return BLOB_NO_MEMORY;
            }
        }
        ssize_t got = read_fully(file->fd, reader->scratch, whole, start);
        status = check_chunk(file, step.chunk, reader->scratch, whole, got);
        step_done(reader, &step);
        if (status != BLOB_OK) return status;
        memcpy(destination, reader->scratch + step.from, step.length);
        destination += step.length;
    }
    return BLOB_OK;
}

/* ---- streaming --------------------------------------------------------------------- */

static void pump(struct blob_reader *reader);

/* Whether the stream has nothing more to do: cancelled, failed, or every byte queued. */
static bool stream_done(const struct blob_reader *reader) {
    return reader->cancelled || reader->failed || reader->left_to_add == 0;
}

/* Frees READER once the stream is done and nothing refers to it any more: no read in
 * flight, no piece in the queue, no unfinished chunk the queue could cancel, and not
 * inside pump() or blob_reader_send() (which call this again on their way out). */
static void free_if_finished(struct blob_reader *reader) {
    if (stream_done(reader) && !reader->attached && reader->reads_in_flight == 0 &&
        reader->pieces_queued == 0 && !reader->pumping && !reader->quiet) {
        reader_free(reader);
    }
}

/* Lets go of SLOT's step, which is read or failed but not queued: the slot is free. */
static void slot_drop(struct blob_reader *reader, struct send_slot *slot) {
    step_done(reader, &slot->step);
    slot->state = SLOT_FREE;
}

/* Ends the stream short: its chunk fails (the connection will close, clearing the
 * queue, which cancels the stream) and read buffers waiting for their turn are let go. */
static void fail_stream(struct blob_reader *reader) {
    if (reader->failed) return;
    reader->failed = true;
    for (int i = 0; i < BLOB_SEND_WINDOW; i++) {
        if (reader->slots[i].state == SLOT_READ) slot_drop(reader, &reader->slots[i]);
    }
    if (reader->queue != NULL) {
        output_stream_fail(reader->queue, reader->chunk);
        reader->woken = true;
    }
}

/* The queue sent (or dropped) the piece of slot ARGUMENT: the slot is free again, and
 * the next read may start. On the stream's thread. */
static void piece_released(void *argument) {
    struct send_slot *slot = argument;
    struct blob_reader *reader = slot->reader;
    slot->state = SLOT_FREE;
    reader->pieces_queued--;
    if (reader->cancelled || reader->failed) {
        free_if_finished(reader);
        return;
    }
    pump(reader);
}

/* The queue was cleared before the stream was complete: stop; the queue releases the
 * pieces it holds right after this. */
static void stream_cancelled(void *source) {
    struct blob_reader *reader = source;
    reader->cancelled = true;
    reader->attached = false;
    reader->queue = NULL;
    reader->chunk = NULL;
    for (int i = 0; i < BLOB_SEND_WINDOW; i++) {
        if (reader->slots[i].state == SLOT_READ) slot_drop(reader, &reader->slots[i]);
    }
    free_if_finished(reader);
}

/* The slot that holds sequence SEQUENCE, read and waiting, or NULL. */
static struct send_slot *slot_read_for(struct blob_reader *reader, uint64_t sequence) {
    for (int i = 0; i < BLOB_SEND_WINDOW; i++) {
        struct send_slot *slot = &reader->slots[i];
        if (slot->state == SLOT_READ && slot->sequence == sequence) return slot;
    }
    return NULL;
}

/* Checks the chunks that have been read, in the stream's order, and queues their
 * pieces; stops at the first that has not been read yet, or at a failure: a chunk that
 * fails its check, or a step that could not be read at all (a missing or damaged blob,
 * no memory), which fails the stream once the bytes before it are queued. */
static void queue_read_pieces(struct blob_reader *reader) {
    while (!reader->failed && !reader->cancelled) {
        struct send_slot *slot = slot_read_for(reader, reader->next_piece);
        if (slot == NULL) return;
        enum blob_status status = slot->failure;
        if (status == BLOB_OK) {
            status = check_chunk(step_blob(reader, &slot->step), slot->step.chunk, slot->buffer,
                                 slot->chunk_length, slot->result);
        }
        slot_drop(reader, slot); /* the bytes are in the buffer; the blob is not needed */
        if (status != BLOB_OK) {
            fail_stream(reader);
            return;
        }
        if (!output_stream_add(reader->queue, reader->chunk, slot->buffer + slot->step.from,
                               slot->step.length, piece_released, slot)) {
            /* The queue has failed and the chunk stays unfinished: the queue cancels the
             * stream when it is cleared, so it stays attached. */
            slot->state = SLOT_FREE;
            reader->failed = true;
            reader->woken = true;
            return;
        }
        slot->state = SLOT_SENDING;
        reader->pieces_queued++;
        reader->next_piece++;
        reader->left_to_add -= slot->step.length;
        reader->woken = true;
        if (reader->left_to_add == 0) reader->attached = false; /* complete */
    }
}

/* A read of a slot ended (an io_ring completion, on the stream's thread). */
static void slot_read_done(struct io_ring_operation *operation, int result) {
    struct send_slot *slot = (struct send_slot *)operation;
    struct blob_reader *reader = slot->reader;
    reader->reads_in_flight--;
    if (reader->cancelled || reader->failed) {
        slot_drop(reader, slot); /* the read is over: the blob may be let go */
        free_if_finished(reader);
        return;
    }
    slot->result = result;
    slot->state = SLOT_READ;
    pump(reader);
}

/* ---- read-ahead of cold streams ------------------------------------------------------ */

/* cachestat() (Linux 6.5) tells how many pages of a range of a file are in the page
 * cache, without mapping it. glibc has no wrapper for it, and headers older than 6.5
 * (Debian 12's) lack its number: it is 451 on the architectures below (their common
 * table); anywhere else it is taken as missing. */
#if !defined(__NR_cachestat) &&                                                                    \
    ((defined(__x86_64__) && !defined(__ILP32__)) || defined(__i386__) || defined(__aarch64__) ||  \
     defined(__arm__) || defined(__riscv) || defined(__powerpc__) || defined(__s390__) ||          \
     defined(__loongarch__))
#define __NR_cachestat 451
#endif

/* The kernel's struct cachestat_range and struct cachestat. */
struct cache_range {
    uint64_t offset;
    uint64_t length;
};
struct cache_counts {
    uint64_t cached;
    uint64_t dirty;
    uint64_t writeback;
    uint64_t evicted;
    uint64_t recently_evicted;
};

static _Atomic bool cachestat_missing;     /* it failed with ENOSYS or EPERM: not asked again */
static _Atomic bool cachestat_fake_enosys; /* blob_test_fake_no_cachestat() */

void blob_test_fake_no_cachestat(bool fake) {
    atomic_store(&cachestat_fake_enosys, fake);
    atomic_store(&cachestat_missing, false);
}

/* cachestat(FD, RANGE, COUNTS, 0): 0, or -1 with errno set. */
static int call_cachestat(int fd, struct cache_range *range, struct cache_counts *counts) {
    if (atomic_load_explicit(&cachestat_fake_enosys, memory_order_relaxed)) {
        errno = ENOSYS;
        return -1;
    }
#ifdef __NR_cachestat
    return syscall(__NR_cachestat, fd, range, counts, 0) == 0 ? 0 : -1;
#else
    (void)fd, (void)range, (void)counts;
    errno = ENOSYS;
    return -1;
#endif
}

/* Whether some page of bytes [OFFSET, OFFSET + LENGTH) of FILE's data may be missing
 * from the page cache: false only when cachestat() counts every page of it there.
 *
 * Where the kernel has no cachestat() (before 6.5, such as Debian 12's 6.1: ENOSYS) or
 * refuses it (EPERM: a seccomp filter that does not know it, or a kernel that will not
 * answer for this file), every chunk may be cold from then on, so a
 * stream always reads ahead (advise_ahead(): every 8 MiB, it advises the next 8 MiB of
 * its range) rather than never. Cold streams are where the advice pays (docs/
 * performance.md: 636 to 1,222 MB/s against 347 to 1,065 for a cold 1 GiB GET), and
 * skipping it would lose that on the kernels that lack cachestat(). For a warm stream
 * the advice finds every page present and starts no I/O: a page-cache lookup a page,
 * measured at 4.5 us per MiB advised (1 MiB calls on resident pages, this VM), about 1%
 * of the 0.40 to 0.49 s of server CPU a warm GET costs per GiB (the pread() alone of a
 * resident MiB took 53 us), and it never reaches past the stream's range. Any other
 * failure counts as possibly cold, for that chunk only. Takes no lock. */
static bool range_maybe_cold(const struct blob_open *file, uint64_t offset, size_t length) {
    static _Thread_local uint64_t page_size;
    if (page_size == 0) page_size = (uint64_t)sysconf(_SC_PAGESIZE);
    if (length == 0) return false;
    if (atomic_load_explicit(&cachestat_missing, memory_order_relaxed)) return true;
    struct cache_range range = {offset, length};
    struct cache_counts counts;
    if (call_cachestat(file->fd, &range, &counts) != 0) {
        if (errno == ENOSYS || errno == EPERM) {
            atomic_store_explicit(&cachestat_missing, true, memory_order_relaxed);
        }
        return true;
    }
    uint64_t pages = (offset + length - 1) / page_size - offset / page_size + 1;
    return counts.cached < pages;
}

/* Asks the kernel to read ahead of READER's stream in FILE, whose step (chunk bytes at
 * CHUNK_START, CHUNK_END) was just planned, MAYBE_COLD or not (range_maybe_cold()). From
 * the first chunk of a blob that may not be in the page cache, the stream keeps [chunk,
 * chunk + BLOB_READAHEAD) of the blob advised (posix_fadvise(POSIX_FADV_WILLNEED), in
 * pieces of BLOB_ADVISE_PIECE, renewed once half of it is used), never past the last
 * chunk the stream's range takes from the blob, so a ranged read does not pull in what
 * it will not send. The advice starts reads and does not wait for them (the worker may
 * block only while the kernel queues them); the chunks' reads then find their pages
 * there or already coming. A blob found warm is never advised. */
static void advise_ahead(struct blob_reader *reader, const struct blob_open *file,
                         uint64_t chunk_start, uint64_t chunk_end, bool maybe_cold) {
    if (!reader->advising || reader->advised_id != file->id) {
        if (!maybe_cold) return;
        reader->advising = true;
        reader->advised_id = file->id;
        reader->advised_end = chunk_start;
    }
    if (reader->advised_end >= chunk_end + BLOB_READAHEAD / 2) return;
    /* The end of what the stream reads from this blob: its extent's end or the range's,
     * rounded up to a whole chunk (whole chunks are read). */
    const struct blob_extent *extent = &reader->extents[reader->cursor.extent];
    uint64_t taken = reader->cursor.inside + reader->cursor.remaining;
    if (taken > extent->length) taken = extent->length;
    uint64_t limit = extent->offset + taken;
    limit = (limit + file->chunk_size - 1) / file->chunk_size * file->chunk_size;
    if (limit > file->length) limit = file->length;
    uint64_t from = reader->advised_end > chunk_start ? reader->advised_end : chunk_start;
    uint64_t to = chunk_start + BLOB_READAHEAD;
    if (to > limit) to = limit;
    for (uint64_t at = from; at < to; at += BLOB_ADVISE_PIECE) {
        uint64_t length = to - at < BLOB_ADVISE_PIECE ? to - at : BLOB_ADVISE_PIECE;
        (void)posix_fadvise(file->fd, (off_t)at, (off_t)length, POSIX_FADV_WILLNEED);
        atomic_fetch_add_explicit(&reader->store->bytes_advised, length, memory_order_relaxed);
    }
    if (to > reader->advised_end) reader->advised_end = to;
}

/* Starts reading the stream's next chunk into free SLOT (a chunk that may not be in the
 * page cache starts read-ahead advice: advise_ahead()): through the ring (the slot is
 * READING, holding the blob so that its descriptor stays open until the read ends), or
 * at once without one or when the submission fails (the slot is READ when this
 * returns). A step whose blob cannot be had (missing, damaged, unreadable) or whose
 * buffer cannot be allocated is READ with its failure set, and nothing more is read:
 * the stream fails when its turn comes. */
static void start_read(struct blob_reader *reader, struct send_slot *slot) {
    slot->sequence = reader->next_read++;
    slot->failure = next_step(reader, &reader->cursor, &slot->step);
    const struct blob_open *file = NULL;
    if (slot->failure == BLOB_OK) {
        file = step_blob(reader, &slot->step);
        slot->chunk_length = chunk_length(file, slot->step.chunk);
        uint64_t start = (uint64_t)slot->step.chunk * file->chunk_size;
        advise_ahead(reader, file, start, start + slot->chunk_length,
                     range_maybe_cold(file, start, slot->chunk_length));
        size_t needed = buffer_size_for(file);
        if (slot->buffer_size < needed) {
            /* The first chunk read, or a blob of larger chunks than the last. */
            buffer_give(slot->buffer, slot->buffer_size);
            slot->buffer = buffer_take(needed);
            slot->buffer_size = slot->buffer != NULL ? needed : 0;
            if (slot->buffer == NULL) slot->failure = BLOB_NO_MEMORY;
        }
    }
    if (slot->failure != BLOB_OK) {
        log_event(LOG_ERROR, "blob_read_failed", "blob=%016" PRIx64 " during=stream reason=\"%s\"",
                  reader->extents[reader->cursor.extent].id, blob_status_text(slot->failure));
        step_done(reader, &slot->step);
        reader->cursor.remaining = 0; /* read no further */
        slot->state = SLOT_READ;
        return;
    }
    uint64_t offset = (uint64_t)slot->step.chunk * file->chunk_size;
    if (reader->ring != NULL) {
        slot->operation.done = slot_read_done;
        int error = io_ring_read(reader->ring, file->fd, slot->buffer, slot->chunk_length, offset,
                                 &slot->operation);
        if (error == 0) {
            slot->state = SLOT_READING;
            reader->reads_in_flight++;
            return;
        }
        /* The ring is full or short of resources: this chunk is read synchronously
         * rather than fail the stream. */
    }
    slot->result = read_fully(file->fd, slot->buffer, slot->chunk_length, offset);
    slot->state = SLOT_READ;
}

/* Moves the stream on: queues what has been read, then starts reads while the window
 * has a free buffer and there is more to read. Wakes the connection, last, when pieces
 * were added outside blob_reader_send(), and frees the stream if it is finished. */
static void pump(struct blob_reader *reader) {
    if (reader->pumping) return;
    reader->pumping = true;
    for (;;) {
        queue_read_pieces(reader);
        if (reader->failed || reader->cancelled || reader->cursor.remaining == 0) break;
        struct send_slot *free_slot = NULL;
        for (int i = 0; i < BLOB_SEND_WINDOW && free_slot == NULL; i++) {
            if (reader->slots[i].state == SLOT_FREE) free_slot = &reader->slots[i];
        }
        if (free_slot == NULL) break; /* the window is full */
        start_read(reader, free_slot);
    }
    reader->pumping = false;
    bool wake = reader->woken && !reader->quiet && !reader->cancelled && reader->wake != NULL;
    if (!reader->quiet) reader->woken = false;
    void (*wake_function)(void *context) = reader->wake;
    void *wake_context = reader->wake_context;
    free_if_finished(reader);
    if (wake) wake_function(wake_context); /* last: it may clear the queue */
}

bool blob_reader_send(struct blob_reader *reader, uint64_t offset, uint64_t length,
                      struct output_queue *queue, void (*wake)(void *context), void *wake_context) {
    STRATA_ASSERT(range_valid(reader, offset, length));
    reader->chunk = output_queue_append_stream(queue, length, stream_cancelled, reader);
    if (reader->chunk == NULL) {
        reader_free(reader);
        return false;
    }
    reader->queue = queue;
    reader->wake = wake;
    reader->wake_context = wake_context;
    reader->ring = io_ring_current();
    reader->left_to_add = length;
    reader->attached = length > 0;
    reader->quiet = true; /* the caller resumes the connection itself once this returns */
    if (!range_valid(reader, offset, length)) {
        log_event(LOG_ERROR, "blob_read_failed",
                  "during=stream reason=\"range beyond the value\" offset=%" PRIu64
                  " length=%" PRIu64 " value_length=%" PRIu64,
                  offset, length, reader->length);
        fail_stream(reader);
    } else {
        reader->cursor = cursor_at(reader, offset, length);
        pump(reader);
    }
    reader->quiet = false;
    reader->woken = false;
    free_if_finished(reader); /* a stream that is complete already (or empty) */
    return true;
}
