/* Blobs: the files that hold the bytes of durable objects (docs/objects.md).
 *
 * A blob is one immutable file under the blob directory, written once from start to end
 * (one single PUT, or one multipart part) and never changed afterwards. Its bytes are cut
 * into chunks of chunk_size bytes (the last one may be shorter); every chunk carries its
 * CRC32C, and a read checks the CRC of every chunk it touches, so a damaged byte on disk
 * is an error, never a wrong answer. The file is laid out as
 *
 *     [data: length bytes][sums: one little-endian u32 CRC32C per chunk][footer: 32 bytes]
 *
 * and the footer holds a magic, the data length, the chunk size, the chunk count and the
 * CRC32C of the sums and of itself (blob.c has the exact layout).
 *
 * Blobs are named by a 64-bit id, unique in the directory; the object index
 * (engine/objects.h) refers to byte ranges of blobs and removes a blob once nothing
 * refers to it. Blobs are written with ordinary buffered writes from the calling thread
 * and read through the calling thread's io_ring when it has one.
 *
 * Readers share the blob files the store has open (a cache of open blobs: a blob is
 * opened and its footer and sums checked once, on first use, and kept open while
 * readers use it and for a while after), so a value of thousands of extents costs a
 * reader only the blobs its ranges touch.
 *
 * A writer of a new version never disturbs a reader of the old one: a reader holds
 * every blob of its value from blob_reader_open() until it is closed (blob_store_hold():
 * a count per blob id, no file opened), and blob_store_unlink() of a held blob only
 * marks it; its file is removed when the last hold goes (or at blob_store_close()). So
 * an old version stays readable, whole, for as long as its reader lives, however many
 * blobs it spans and however slowly the reader goes. Whoever finds the extents under a
 * lock of its own (the object index) takes a hold before letting that lock go, so that
 * no unlink can slip in before the reader is opened.
 *
 * Threads: a blob_store may be used from any thread; a writer or a reader by one thread
 * at a time. */
#ifndef STRATA_ENGINE_BLOB_H
#define STRATA_ENGINE_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct output_queue;
struct output_chunk;
struct blob_extent; /* a byte range of one blob (below) */

/* What blob (and object) functions return. */
enum blob_status {
    BLOB_OK = 0,
    BLOB_NOT_FOUND, /* no blob file with that id */
    BLOB_IO_ERROR,  /* a read, write or sync failed (details in the log) */
    BLOB_NO_SPACE,  /* the file system is full (ENOSPC, EDQUOT) */
    BLOB_CORRUPT,   /* a chunk, the sums or the footer failed its CRC32C */
    BLOB_NO_MEMORY, /* an allocation failed */
    BLOB_PENDING,   /* an asynchronous read is in flight; its callback will run */
};

const char *blob_status_text(enum blob_status status);

/* When a finished blob is synced to the device. */
enum blob_sync {
    BLOB_SYNC_NEVER = 0, /* left to the kernel */
    BLOB_SYNC_LATER, /* blob_store_sync_pending() syncs it (a housekeeping thread, each second) */
    BLOB_SYNC_NOW,   /* blob_writer_finish() syncs it before it returns */
};

/* Chunk sizes allowed: a power of two from 64 KiB to 64 MiB. */
#define BLOB_MIN_CHUNK_SIZE     (64u * 1024)
#define BLOB_MAX_CHUNK_SIZE     (64u * 1024 * 1024)
#define BLOB_DEFAULT_CHUNK_SIZE (1024u * 1024)

struct blob_store;

/* Opens (creating it if missing) the blob directory DIRECTORY, whose new blobs are cut
 * into chunks of CHUNK_SIZE bytes and synced as SYNC says. Existing blobs keep the chunk
 * size they were written with. Returns NULL with a reason in ERROR. */
struct blob_store *blob_store_open(const char *directory, uint32_t chunk_size, enum blob_sync sync,
                                   char *error, size_t error_size);

/* Closes the store. Every writer and reader must have ended. Blobs unlinked while held
 * whose holds were never let go (blob_store_hold() without its blob_store_unhold()) are
 * removed now, and those holds are forgotten: they must not be let go after this. */
void blob_store_close(struct blob_store *store);

/* Removes blob ID: its file, its bytes from blob_store_bytes() and its entry in the cache
 * of open blobs. When ID is held (blob_store_hold(), every live reader of it) the removal
 * waits for the last hold to go, and until then the blob reads as before, for readers
 * opened before or after; otherwise it is removed now, and a later reader of ID, or one
 * that reaches it only now without holding it, gets BLOB_NOT_FOUND. Returns BLOB_OK
 * (removed, or to be removed), BLOB_NOT_FOUND (no such file) or BLOB_IO_ERROR. Any
 * thread; the caller may hold a lock of its own (the object index's). */
enum blob_status blob_store_unlink(struct blob_store *store, uint64_t id);

/* Holds the blobs EXTENTS (COUNT of them) refer to: until the matching
 * blob_store_unhold(), a blob_store_unlink() of any of them only marks it, and the
 * blob is removed by the last hold's end. Holds are counted per blob id (one for each
 * run of consecutive extents of the same blob; blob_store_unhold() counts alike), so
 * any number may overlap. Opens nothing and reads no disk: O(COUNT) under a short
 * mutex, so it may be called under the caller's own lock (the object index takes it
 * while it holds its lock, before an unlink can come). Keeps no pointer: EXTENTS is
 * read only during the call. Returns BLOB_OK, or BLOB_NO_MEMORY
 * with nothing held. Any thread. */
enum blob_status blob_store_hold(struct blob_store *store, const struct blob_extent *extents,
                                 size_t count);

/* Lets go of a hold from blob_store_hold() given the same EXTENTS and COUNT. A blob
 * unlinked while held whose last hold this was is removed by this call, on the calling
 * thread (a file removal; failures are logged). Any thread; the caller must not hold a
 * lock that blob_store_unlink() callers take around it (so not the object index's). */
void blob_store_unhold(struct blob_store *store, const struct blob_extent *extents, size_t count);

/* Calls VISIT(CONTEXT, ID) for every blob file in the directory, finished or not
 * (recovery uses it to remove blobs nothing refers to). Files that are not blobs are
 * skipped. Returns BLOB_OK or BLOB_IO_ERROR. VISIT may call blob_store_unlink(). */
enum blob_status blob_store_for_each(struct blob_store *store,
                                     void (*visit)(void *context, uint64_t id), void *context);

/* Syncs every blob finished under BLOB_SYNC_LATER since the last call, and the
 * directory. Returns BLOB_OK or BLOB_IO_ERROR (a failed sync is logged and counted). */
enum blob_status blob_store_sync_pending(struct blob_store *store);

/* Bytes of blob files on disk (data, sums and footers), kept up to date as blobs are
 * finished and unlinked; recovery counts them once. */
uint64_t blob_store_bytes(const struct blob_store *store);

/* ---- writing -------------------------------------------------------------------- */

struct blob_writer;

/* What a finished blob holds: its id, length and digests of its data. */
struct blob_digest {
    uint64_t id;
    uint64_t length;
    unsigned char md5[16]; /* MD5 of the data (S3 ETags are made from it) */
    uint32_t crc32c;       /* CRC32C of the whole data */
};

/* Starts a new blob with a fresh id. Returns BLOB_OK with *WRITER set, or an error. */
enum blob_status blob_writer_open(struct blob_store *store, struct blob_writer **writer);

/* Appends LENGTH bytes. Whole chunks are written to the file as they fill (the calling
 * thread blocks on a buffered write); the data is never held whole in memory. Returns
 * BLOB_OK, BLOB_NO_SPACE or BLOB_IO_ERROR (the writer is then only good for
 * blob_writer_abort()). */
enum blob_status blob_writer_append(struct blob_writer *writer, const void *data, size_t length);

/* Where the next bytes may be received without a copy: room for *LENGTH bytes (at least
 * 1) at *BUFFER inside the current chunk. Fill some with a read and report them with
 * blob_writer_filled(). */
void blob_writer_space(struct blob_writer *writer, unsigned char **buffer, size_t *length);

/* Reports LENGTH bytes written into the space blob_writer_space() gave. Same returns as
 * blob_writer_append(). */
enum blob_status blob_writer_filled(struct blob_writer *writer, size_t length);

/* Bytes appended so far. */
uint64_t blob_writer_length(const struct blob_writer *writer);

/* Writes the last chunk, the sums and the footer, syncs as the store's policy says and
 * frees the writer. On BLOB_OK *DIGEST describes the blob, which exists until
 * blob_store_unlink(). On an error the file is removed. */
enum blob_status blob_writer_finish(struct blob_writer *writer, struct blob_digest *digest);

/* Gives the blob up: removes its file and frees the writer. */
void blob_writer_abort(struct blob_writer *writer);

/* ---- reading -------------------------------------------------------------------- */

/* A byte range of one blob: part of an object's value. */
struct blob_extent {
    uint64_t id;
    uint64_t offset; /* in the blob's data */
    uint64_t length;
};

struct blob_reader;

/* Makes a reader of the value EXTENTS make up (COUNT of them, in order: together they
 * are the value, of their summed length). Copies EXTENTS, and holds every blob they
 * refer to (blob_store_hold()) until the reader is closed or its stream ends, so a blob
 * unlinked after this call is still read whole. Checks nothing on disk and opens no
 * file: each blob is taken (opened, its footer and sums checked, through the store's
 * cache) by the first read or send that touches it, which reports a missing blob, a
 * damaged one or an extent beyond its blob's data; it keeps a few open at most. A blob
 * removed before this call (unlinked while nobody held it) is not found: a caller that
 * found EXTENTS under a lock of its own holds them before letting it go (objects_get()
 * does). Returns BLOB_OK with *READER set, BLOB_CORRUPT (the extents' lengths add up
 * past 2^64) or BLOB_NO_MEMORY. */
enum blob_status blob_reader_open(struct blob_store *store, const struct blob_extent *extents,
                                  size_t count, struct blob_reader **reader);

/* The value's length: the sum of the extents' lengths. */
uint64_t blob_reader_length(const struct blob_reader *reader);

/* Copies bytes [OFFSET, OFFSET + LENGTH) of the value into DESTINATION, reading (and
 * checking) every chunk it touches, blocking the calling thread; takes the blobs the
 * range touches as it reaches them (blob_reader_open()). Returns BLOB_OK,
 * BLOB_NOT_FOUND (a blob of the range does not exist), BLOB_CORRUPT (a chunk, or a
 * blob's footer or sums, failed its check, or an extent lies beyond its blob's data:
 * the log names the blob), BLOB_IO_ERROR or BLOB_NO_MEMORY. DESTINATION may hold part
 * of the range on a failure. */
enum blob_status blob_reader_read(struct blob_reader *reader, uint64_t offset, uint64_t length,
                                  unsigned char *destination);

/* Queues bytes [OFFSET, OFFSET + LENGTH) of the value on QUEUE as a stream chunk
 * (base/output_queue.h) and fills it as reads complete: through the calling thread's
 * io_ring (base/io_ring.h) when it has one, a few chunks ahead of the socket and never
 * more (a piece's release, once sent, lets the next read start), or synchronously
 * without one. From a chunk that may not be in the page cache on (cachestat(); every
 * chunk where the kernel lacks it), the kernel is asked to read ahead of the stream,
 * within its range. Every chunk's CRC32C is checked before any of its bytes is added: a chunk
 * that fails ends the stream short (output_stream_fail(): the connection closes before
 * the body is complete) and is logged with the blob id and chunk. WAKE(WAKE_CONTEXT) is
 * called on this thread whenever pieces were added by a completion (not from inside
 * this call). Blobs are taken as the stream reaches them (blob_reader_open()): a blob
 * that is missing, damaged or beyond reach fails the stream like a chunk that fails
 * its check, once the bytes before it are queued, and is logged. Takes over READER (it
 * is closed when the stream ends). Returns false if the chunk could not be queued (the
 * queue has failed; READER is closed). */
bool blob_reader_send(struct blob_reader *reader, uint64_t offset, uint64_t length,
                      struct output_queue *queue, void (*wake)(void *context), void *wake_context);

/* Closes a reader that was not given to blob_reader_send(), and lets go of its hold on
 * its blobs (removing those unlinked meanwhile that nothing else holds). */
void blob_reader_close(struct blob_reader *reader);

#endif
