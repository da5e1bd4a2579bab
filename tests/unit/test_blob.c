/* Unit tests of the blob files (engine/blob.h): writing them (append and zero-copy),
 * their digests, reading any range of one or several blobs, streaming a range to an
 * output queue with and without an io_ring, damage of every part of the file (found by
 * the read or stream that reaches it), cancelled streams, read-ahead of cold streams
 * (by cachestat(), and without it: ENOSYS faked), the sync policies, the
 * store's byte count, and the cache of open blobs: a value of 2,000 extents read and
 * streamed within a bounded number of descriptors, readers that open only the blobs
 * their ranges touch, unlink dropping the cache entry, readers on several threads
 * while blobs are unlinked and written (TSan watches), and holds: a reader or stream of
 * a value of several blobs reads it whole after every blob was unlinked, the files
 * going when it ends, and blob_store_close() removing those whose holds were left. */
#include "base/crc32c.h"
#include "base/io_ring.h"
#include "base/log.h"
#include "base/output_queue.h"
#include "engine/blob.h"
#include "engine/blob_internal.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHUNK BLOB_MIN_CHUNK_SIZE

static char directory[256];
static char log_path[300];

/* ---- helpers ------------------------------------------------------------------------ */

/* LENGTH pseudo-random bytes from SEED, the same for the same seed. */
static unsigned char *pattern(size_t length, uint32_t seed) {
    unsigned char *data = malloc(length ? length : 1);
    uint32_t state = seed * 2654435761u + 1;
    for (size_t i = 0; i < length; i++) {
        state = state * 1103515245u + 12345u;
        data[i] = (unsigned char)(state >> 16);
    }
    return data;
}

static struct blob_store *open_store(enum blob_sync sync) {
    char error[256];
    struct blob_store *store = blob_store_open(directory, CHUNK, sync, error, sizeof(error));
    if (store == NULL) fprintf(stderr, "blob_store_open: %s\n", error);
    return store;
}

/* Writes LENGTH bytes of DATA as a new blob: with blob_writer_append() in pieces of
 * PIECE bytes, or (ZERO_COPY) through blob_writer_space()/blob_writer_filled() filling at
 * most PIECE bytes at a time. Returns the status of the first call that failed. */
static enum blob_status write_blob(struct blob_store *store, const unsigned char *data,
                                   size_t length, size_t piece, bool zero_copy,
                                   struct blob_digest *digest) {
    struct blob_writer *writer;
    enum blob_status status = blob_writer_open(store, &writer);
    if (status != BLOB_OK) return status;
    size_t done = 0;
    while (done < length) {
        size_t take = length - done < piece ? length - done : piece;
        if (zero_copy) {
            unsigned char *space;
            size_t room;
            blob_writer_space(writer, &space, &room);
            if (room == 0) {
                blob_writer_abort(writer);
                return BLOB_IO_ERROR;
            }
            if (take > room) take = room;
            memcpy(space, data + done, take);
            status = blob_writer_filled(writer, take);
        } else {
            status = blob_writer_append(writer, data + done, take);
        }
        if (status != BLOB_OK) {
            blob_writer_abort(writer);
            return status;
        }
        done += take;
    }
    if (blob_writer_length(writer) != length) {
        blob_writer_abort(writer);
        return BLOB_IO_ERROR;
    }
    return blob_writer_finish(writer, digest);
}

static uint64_t file_size_of(struct blob_store *store, uint64_t id) {
    char path[512];
    blob_path(store, id, path, sizeof(path));
    struct stat status;
    return stat(path, &status) == 0 ? (uint64_t)status.st_size : UINT64_MAX;
}

static uint64_t expected_file_size(uint64_t length) {
    return length + 4 * ((length + CHUNK - 1) / CHUNK) + 32;
}

/* Flips the bits of the byte at OFFSET of blob ID's file (a negative OFFSET counts from
 * the end). */
static bool flip_byte(struct blob_store *store, uint64_t id, int64_t offset) {
    char path[512];
    blob_path(store, id, path, sizeof(path));
    int fd = open(path, O_RDWR);
    if (fd < 0) return false;
    struct stat status;
    fstat(fd, &status);
    off_t at = offset >= 0 ? (off_t)offset : status.st_size + (off_t)offset;
    unsigned char byte;
    bool done = pread(fd, &byte, 1, at) == 1;
    byte ^= 0xff;
    done = done && pwrite(fd, &byte, 1, at) == 1;
    close(fd);
    return done;
}

static int count_blob_files(void) {
    int count = 0;
    DIR *listing = opendir(directory);
    if (listing == NULL) return -1;
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL) {
        uint64_t id;
        if (blob_name_parse(entry->d_name, &id)) count++;
    }
    closedir(listing);
    return count;
}

/* Whether the log written so far holds TEXT. */
static bool log_holds(const char *text) {
    FILE *file = fopen(log_path, "r");
    if (file == NULL) return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), file) != NULL)
        found = strstr(line, text) != NULL;
    fclose(file);
    return found;
}

static void md5_of(const unsigned char *data, size_t length, unsigned char md5[16]) {
    unsigned int md5_length = 0;
    EVP_Digest(data, length, md5, &md5_length, EVP_md5(), NULL);
}

/* Opens a reader over EXTENTS (COUNT), reads [OFFSET, OFFSET + LENGTH) into DESTINATION
 * and closes it. Returns what the open or the read returned. */
static enum blob_status read_once(struct blob_store *store, const struct blob_extent *extents,
                                  size_t count, uint64_t offset, uint64_t length,
                                  unsigned char *destination) {
    struct blob_reader *reader;
    enum blob_status status = blob_reader_open(store, extents, count, &reader);
    if (status != BLOB_OK) return status;
    status = blob_reader_read(reader, offset, length, destination);
    blob_reader_close(reader);
    return status;
}

/* Descriptors the process has open (entries of /proc/self/fd, less the listing's own). */
static int open_descriptors(void) {
    DIR *listing = opendir("/proc/self/fd");
    if (listing == NULL) return -1;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL) {
        if (entry->d_name[0] != '.') count++;
    }
    closedir(listing);
    return count - 1;
}

/* Entries in STORE's cache of open blobs: all of them, and the idle ones. */
static size_t cached_blobs(struct blob_store *store, size_t *idle) {
    pthread_mutex_lock(&store->cache_lock);
    size_t count = store->cached_count;
    if (idle != NULL) *idle = store->idle_count;
    pthread_mutex_unlock(&store->cache_lock);
    return count;
}

/* ---- streaming helpers -------------------------------------------------------------- */

struct drain {
    unsigned char *received;
    size_t capacity;
    size_t length;
    int most_pieces; /* the most stream pieces seen in the queue at once */
    int wakes;
};

static void count_wake(void *context) {
    ((struct drain *)context)->wakes++;
}

/* Sends what QUEUE has, STEP bytes at a time, into DRAIN, waiting on RING (when there is
 * one) while the stream waits for reads, until the queue is empty, failed and stuck, or
 * STOP_AFTER bytes have come (0: no limit). */
static void drain_queue(struct output_queue *queue, struct io_ring *ring, struct drain *drain,
                        size_t step, size_t stop_after) {
    for (;;) {
        if (stop_after != 0 && drain->length >= stop_after) return;
        struct iovec iovecs[64];
        int count = output_queue_iovecs(queue, iovecs, 64);
        if (count > drain->most_pieces) drain->most_pieces = count;
        if (count == 0) {
            if (output_queue_pending(queue) == 0) return;
            if (ring == NULL || io_ring_in_flight(ring) == 0) return; /* stuck: failed */
            io_ring_wait(ring);
            continue;
        }
        size_t taken = 0;
        for (int i = 0; i < count && taken < step; i++) {
            size_t part = iovecs[i].iov_len < step - taken ? iovecs[i].iov_len : step - taken;
            if (drain->length + part > drain->capacity) return; /* more than asked for */
            memcpy(drain->received + drain->length, iovecs[i].iov_base, part);
            drain->length += part;
            taken += part;
        }
        output_queue_consume(queue, taken);
    }
}

/* Streams [OFFSET, OFFSET + LENGTH) of a reader over EXTENTS and checks the bytes equal
 * EXPECTED; with RING set as the thread's ring or not. */
static void check_send(struct blob_store *store, const struct blob_extent *extents, size_t count,
                       uint64_t offset, uint64_t length, const unsigned char *expected,
                       struct io_ring *ring, size_t step) {
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, extents, count, &reader) == BLOB_OK);
    io_ring_set_current(ring);
    struct output_queue queue;
    output_queue_init(&queue);
    CHECK(output_queue_append(&queue, "head:", 5));
    struct drain drain = {.received = malloc(length + 5), .capacity = length + 5};
    CHECK(blob_reader_send(reader, offset, length, &queue, count_wake, &drain));
    CHECK(drain.wakes == 0); /* never from inside the call */
    drain_queue(&queue, ring, &drain, step, 0);
    CHECK(!queue.failed);
    CHECK(output_queue_pending(&queue) == 0);
    CHECK(drain.length == length + 5);
    CHECK(memcmp(drain.received, "head:", 5) == 0);
    CHECK(memcmp(drain.received + 5, expected + offset, (size_t)length) == 0);
    CHECK(drain.most_pieces <= 4 + 1); /* the window, and the head */
    if (ring != NULL && length > 0) CHECK(drain.wakes > 0);
    output_queue_clear(&queue);
    io_ring_set_current(NULL);
    free(drain.received);
}

/* Streams [OFFSET, OFFSET + LENGTH) of a reader over EXTENTS (COUNT) through RING (or
 * without one) into RECEIVED (LENGTH bytes), draining until the queue is empty or
 * stuck. Returns the bytes received; *FAILED says whether the queue failed. */
static size_t send_once(struct blob_store *store, const struct blob_extent *extents, size_t count,
                        uint64_t offset, uint64_t length, struct io_ring *ring,
                        unsigned char *received, bool *failed) {
    *failed = true;
    struct blob_reader *reader;
    if (blob_reader_open(store, extents, count, &reader) != BLOB_OK) return 0;
    io_ring_set_current(ring);
    struct output_queue queue;
    output_queue_init(&queue);
    struct drain drain = {.received = received, .capacity = length};
    if (blob_reader_send(reader, offset, length, &queue, count_wake, &drain))
        drain_queue(&queue, ring, &drain, 1 << 20, 0);
    *failed = queue.failed;
    output_queue_clear(&queue);
    while (ring != NULL && io_ring_in_flight(ring) > 0)
        io_ring_wait(ring);
    io_ring_set_current(NULL);
    return drain.length;
}

static struct io_ring *make_ring(void) {
    char error[256];
    struct io_ring *ring = io_ring_create(64, error, sizeof(error));
    if (ring == NULL) fprintf(stderr, "  (no io_ring: %s; the ring cases are skipped)\n", error);
    return ring;
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_round_trips(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    const size_t lengths[] = {0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 1234};
    for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
        for (int zero_copy = 0; zero_copy < 2; zero_copy++) {
            size_t length = lengths[l];
            unsigned char *data = pattern(length, (uint32_t)(l * 2 + (size_t)zero_copy));
            uint64_t bytes_before = blob_store_bytes(store);
            struct blob_digest digest;
            size_t piece = zero_copy ? 7777 : 1000 + l;
            REQUIRE(write_blob(store, data, length, piece, zero_copy, &digest) == BLOB_OK);
            CHECK(digest.length == length);
            unsigned char md5[16];
            md5_of(data, length, md5);
            CHECK(memcmp(digest.md5, md5, 16) == 0);
            CHECK(digest.crc32c == crc32c(data, length));
            CHECK(file_size_of(store, digest.id) == expected_file_size(length));
            CHECK(blob_store_bytes(store) == bytes_before + expected_file_size(length));

            struct blob_extent extent = {.id = digest.id, .offset = 0, .length = length};
            struct blob_reader *reader;
            REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
            CHECK(blob_reader_length(reader) == length);
            unsigned char *back = malloc(length + 1);
            back[length] = 0x5a;
            CHECK(blob_reader_read(reader, 0, length, back) == BLOB_OK);
            CHECK(memcmp(back, data, length) == 0);
            CHECK(back[length] == 0x5a);
            blob_reader_close(reader);
            free(back);

            CHECK(blob_store_unlink(store, digest.id) == BLOB_OK);
            CHECK(blob_store_bytes(store) == bytes_before);
            CHECK(blob_store_unlink(store, digest.id) == BLOB_NOT_FOUND);
            free(data);
        }
    }
    /* Two blobs never share an id, and the zero-copy space is never empty. */
    struct blob_digest first, second;
    CHECK(write_blob(store, (const unsigned char *)"a", 1, 1, false, &first) == BLOB_OK);
    CHECK(write_blob(store, (const unsigned char *)"a", 1, 1, false, &second) == BLOB_OK);
    CHECK(first.id != second.id);
    CHECK(memcmp(first.md5, second.md5, 16) == 0);
    blob_store_unlink(store, first.id);
    blob_store_unlink(store, second.id);
    CHECK(blob_store_bytes(store) == 0);
    blob_store_close(store);
}

static void test_bytes_counted_at_open_and_abort(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    unsigned char *data = pattern(2 * CHUNK + 5, 9);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, 2 * CHUNK + 5, 4096, false, &digest) == BLOB_OK);
    blob_store_close(store);
    store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    CHECK(blob_store_bytes(store) == expected_file_size(2 * CHUNK + 5));

    /* An aborted writer leaves no file and counts nothing. */
    struct blob_writer *writer;
    REQUIRE(blob_writer_open(store, &writer) == BLOB_OK);
    CHECK(count_blob_files() == 2);
    CHECK(blob_writer_append(writer, data, CHUNK + 10) == BLOB_OK);
    blob_writer_abort(writer);
    CHECK(count_blob_files() == 1);
    CHECK(blob_store_bytes(store) == expected_file_size(2 * CHUNK + 5));
    CHECK(blob_store_unlink(store, digest.id) == BLOB_OK);
    CHECK(blob_store_bytes(store) == 0);
    CHECK(count_blob_files() == 0);
    free(data);
    blob_store_close(store);
}

/* Offsets where something changes: chunk edges and the ends, with their neighbours. */
static size_t interesting_points(uint64_t length, uint64_t *points, size_t maximum) {
    size_t count = 0;
    for (uint64_t edge = 0; edge <= length + CHUNK; edge += CHUNK) {
        for (int delta = -2; delta <= 2; delta++) {
            int64_t at = (int64_t)edge + delta;
            if (at >= 0 && (uint64_t)at <= length && count < maximum)
                points[count++] = (uint64_t)at;
        }
    }
    for (int delta = -1; delta <= 0; delta++) {
        if (count < maximum && (int64_t)length + delta >= 0)
            points[count++] = (uint64_t)((int64_t)length + delta);
    }
    if (count < maximum) points[count++] = length / 3;
    return count;
}

/* Reads every range between two interesting points of READER's value, which is EXPECTED. */
static void check_every_range(struct blob_reader *reader, const unsigned char *expected) {
    uint64_t length = blob_reader_length(reader);
    uint64_t points[128];
    size_t count = interesting_points(length, points, 128);
    unsigned char *back = malloc(length + 1);
    int wrong = 0;
    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < count; j++) {
            if (points[j] < points[i]) continue;
            uint64_t size = points[j] - points[i];
            memset(back, 0, length + 1);
            if (blob_reader_read(reader, points[i], size, back) != BLOB_OK ||
                memcmp(back, expected + points[i], (size_t)size) != 0) {
                if (wrong++ < 5)
                    fprintf(stderr, "  read %" PRIu64 "+%" PRIu64 " wrong\n", points[i], size);
            }
        }
    }
    CHECK(wrong == 0);
    free(back);
}

static void test_reads_across_chunks_and_extents(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    size_t length_a = 3 * CHUNK + 500, length_b = 2 * CHUNK + 77;
    unsigned char *a = pattern(length_a, 21), *b = pattern(length_b, 22);
    struct blob_digest da, db;
    REQUIRE(write_blob(store, a, length_a, 65536, false, &da) == BLOB_OK);
    REQUIRE(write_blob(store, b, length_b, 3000, true, &db) == BLOB_OK);

    struct blob_reader *reader;
    struct blob_extent whole = {da.id, 0, length_a};
    REQUIRE(blob_reader_open(store, &whole, 1, &reader) == BLOB_OK);
    check_every_range(reader, a);
    blob_reader_close(reader);

    /* Two blobs, nonzero offsets, an empty extent and blob A again. */
    struct blob_extent extents[] = {
        {da.id, 100, 2 * CHUNK},
        {db.id, CHUNK - 7, CHUNK + 50},
        {da.id, 5, 0},
        {da.id, 3 * CHUNK + 1, 499},
    };
    size_t value_length = 2 * CHUNK + CHUNK + 50 + 499;
    unsigned char *value = malloc(value_length);
    memcpy(value, a + 100, 2 * CHUNK);
    memcpy(value + 2 * CHUNK, b + CHUNK - 7, CHUNK + 50);
    memcpy(value + 3 * CHUNK + 50, a + 3 * CHUNK + 1, 499);
    REQUIRE(blob_reader_open(store, extents, 4, &reader) == BLOB_OK);
    CHECK(blob_reader_length(reader) == value_length);
    check_every_range(reader, value);
    blob_reader_close(reader);

    /* Extents that do not fit their blob, and blobs that do not exist: found by the
     * read that reaches them (the open checks nothing on disk). */
    struct blob_extent beyond[] = {{da.id, 0, 10}, {db.id, length_b - 10, 11}};
    CHECK(read_once(store, beyond, 2, 0, 10, value) == BLOB_OK);
    CHECK(memcmp(value, a, 10) == 0);
    CHECK(read_once(store, beyond, 2, 9, 2, value) == BLOB_CORRUPT);
    CHECK(read_once(store, beyond, 2, 12, 1, value) == BLOB_CORRUPT);
    struct blob_extent past_end = {db.id, length_b + 1, 1};
    CHECK(read_once(store, &past_end, 1, 0, 1, value) == BLOB_CORRUPT);
    struct blob_extent overflowing[] = {{da.id, 0, UINT64_MAX}, {da.id, 0, 1}};
    CHECK(blob_reader_open(store, overflowing, 2, &reader) == BLOB_CORRUPT);
    struct blob_extent missing[] = {{da.id, 0, 1}, {db.id ^ 1, 0, 1}};
    CHECK(read_once(store, missing, 2, 0, 1, value) == BLOB_OK);
    CHECK(value[0] == a[0]);
    CHECK(read_once(store, missing, 2, 1, 1, value) == BLOB_NOT_FOUND);
    CHECK(read_once(store, missing, 2, 0, 2, value) == BLOB_NOT_FOUND);
    bool failed;
    CHECK(send_once(store, missing, 2, 0, 2, NULL, value, &failed) == 1);
    CHECK(failed);
    CHECK(value[0] == a[0]);
    /* No extents: an empty value. */
    REQUIRE(blob_reader_open(store, NULL, 0, &reader) == BLOB_OK);
    CHECK(blob_reader_length(reader) == 0);
    CHECK(blob_reader_read(reader, 0, 0, value) == BLOB_OK);
    blob_reader_close(reader);

    blob_store_unlink(store, da.id);
    blob_store_unlink(store, db.id);
    free(a);
    free(b);
    free(value);
    blob_store_close(store);
}

static void test_damage_is_found(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    size_t length = 3 * CHUNK + 10;
    unsigned char *data = pattern(length, 31);
    unsigned char *back = malloc(length);
    struct blob_reader *reader;

    /* A byte of chunk 1: the blob opens, chunk 0 reads, anything touching chunk 1 fails. */
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, length, CHUNK, false, &digest) == BLOB_OK);
    REQUIRE(flip_byte(store, digest.id, CHUNK + 17));
    struct blob_extent extent = {digest.id, 0, length};
    REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
    CHECK(blob_reader_read(reader, 0, CHUNK, back) == BLOB_OK);
    CHECK(memcmp(back, data, CHUNK) == 0);
    CHECK(blob_reader_read(reader, CHUNK - 1, 2, back) == BLOB_CORRUPT);
    CHECK(blob_reader_read(reader, CHUNK + 500, 1, back) == BLOB_CORRUPT);
    CHECK(blob_reader_read(reader, 2 * CHUNK, CHUNK + 10, back) == BLOB_OK);
    blob_reader_close(reader);
    char expected_line[128];
    snprintf(expected_line, sizeof(expected_line),
             "event=blob_checksum_failed blob=%016" PRIx64 " chunk=1", digest.id);
    CHECK(log_holds(expected_line));
    blob_store_unlink(store, digest.id);

    /* A byte of the sums, of each footer field, and the file cut or grown: the reader
     * opens (it checks nothing on disk), and the first read or stream that touches the
     * blob reports it, even one byte of a chunk that is whole; nothing is cached. */
    int64_t places[] = {(int64_t)length + 5, -32, -25, -16, -12, -8, -1};
    bool failed;
    for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
        REQUIRE(write_blob(store, data, length, CHUNK, false, &digest) == BLOB_OK);
        REQUIRE(flip_byte(store, digest.id, places[i]));
        extent.id = digest.id;
        REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
        CHECK(blob_reader_read(reader, 0, 1, back) == BLOB_CORRUPT);
        CHECK(blob_reader_read(reader, CHUNK, 5, back) == BLOB_CORRUPT); /* again: not kept */
        blob_reader_close(reader);
        CHECK(send_once(store, &extent, 1, 0, length, NULL, back, &failed) == 0);
        CHECK(failed);
        CHECK(cached_blobs(store, NULL) == 0);
        snprintf(expected_line, sizeof(expected_line), "event=blob_damaged blob=%016" PRIx64,
                 digest.id);
        CHECK(log_holds(expected_line));
        blob_store_unlink(store, digest.id);
    }
    char path[512];
    for (int grow = 0; grow < 2; grow++) {
        REQUIRE(write_blob(store, data, length, CHUNK, false, &digest) == BLOB_OK);
        blob_path(store, digest.id, path, sizeof(path));
        off_t size = (off_t)expected_file_size(length);
        CHECK(truncate(path, grow ? size + 1 : size - 1) == 0);
        extent.id = digest.id;
        CHECK(read_once(store, &extent, 1, 0, length, back) == BLOB_CORRUPT);
        CHECK(send_once(store, &extent, 1, 0, length, NULL, back, &failed) == 0);
        CHECK(failed);
        blob_store_unlink(store, digest.id);
    }
    /* A file too short to have a footer, and an empty one. */
    REQUIRE(write_blob(store, data, 1, 1, false, &digest) == BLOB_OK);
    blob_path(store, digest.id, path, sizeof(path));
    CHECK(truncate(path, 31) == 0);
    extent = (struct blob_extent){digest.id, 0, 1};
    CHECK(read_once(store, &extent, 1, 0, 1, back) == BLOB_CORRUPT);
    CHECK(truncate(path, 0) == 0);
    CHECK(read_once(store, &extent, 1, 0, 1, back) == BLOB_CORRUPT);
    struct io_ring *ring = make_ring();
    if (ring != NULL) {
        CHECK(send_once(store, &extent, 1, 0, 1, ring, back, &failed) == 0);
        CHECK(failed);
        io_ring_destroy(ring);
    }
    blob_store_unlink(store, digest.id);
    CHECK(count_blob_files() == 0);
    free(data);
    free(back);
    blob_store_close(store);
}

/* A reader that has read from a blob keeps reading it after the unlink; the unlink takes
 * the blob out of the cache, so a new reader, or one that had not reached it yet, does
 * not find it, and the descriptor is closed with the last holder. */
static void test_unlinked_blob_still_reads(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    int descriptors = open_descriptors();
    size_t length = 2 * CHUNK + 3;
    unsigned char *data = pattern(length, 41), *back = malloc(length);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, length, 10000, false, &digest) == BLOB_OK);
    struct blob_extent extent = {digest.id, 0, length};
    struct blob_reader *reader, *late;
    REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
    REQUIRE(blob_reader_open(store, &extent, 1, &late) == BLOB_OK);
    CHECK(blob_reader_read(reader, 0, 1, back) == BLOB_OK);
    CHECK(cached_blobs(store, NULL) == 1);
    CHECK(open_descriptors() == descriptors + 1);
    /* Both readers hold it: the unlink only marks it, and the file, its bytes and its
     * cache entry stay until the last of them is closed. */
    CHECK(blob_store_unlink(store, digest.id) == BLOB_OK);
    bool unlinked = false;
    CHECK(blob_store_held(store, digest.id, &unlinked) && unlinked);
    CHECK(count_blob_files() == 1);
    CHECK(blob_store_bytes(store) == expected_file_size(length));
    CHECK(blob_reader_read(reader, 0, length, back) == BLOB_OK);
    CHECK(memcmp(back, data, length) == 0);
    memset(back, 0, length);
    CHECK(blob_reader_read(late, 0, length, back) == BLOB_OK); /* reaches it only now */
    CHECK(memcmp(back, data, length) == 0);
    CHECK(blob_store_unlink(store, digest.id) == BLOB_OK); /* again: still just marked */
    blob_reader_close(reader);
    CHECK(count_blob_files() == 1); /* LATE holds it still */
    CHECK(open_descriptors() == descriptors + 1);
    blob_reader_close(late);
    CHECK(!blob_store_held(store, digest.id, NULL));
    CHECK(count_blob_files() == 0);
    CHECK(blob_store_bytes(store) == 0);
    CHECK(cached_blobs(store, NULL) == 0);
    CHECK(open_descriptors() == descriptors);
    CHECK(read_once(store, &extent, 1, 0, length, back) == BLOB_NOT_FOUND);
    CHECK(blob_store_unlink(store, digest.id) == BLOB_NOT_FOUND);

    /* An idle entry is closed by the unlink itself. */
    REQUIRE(write_blob(store, data, length, 10000, false, &digest) == BLOB_OK);
    extent.id = digest.id;
    CHECK(read_once(store, &extent, 1, 0, length, back) == BLOB_OK);
    size_t idle = 0;
    CHECK(cached_blobs(store, &idle) == 1 && idle == 1);
    CHECK(open_descriptors() == descriptors + 1);
    uint64_t opens = atomic_load(&store->opens);
    CHECK(read_once(store, &extent, 1, 0, length, back) == BLOB_OK);
    CHECK(atomic_load(&store->opens) == opens); /* served from the cache */
    CHECK(blob_store_unlink(store, digest.id) == BLOB_OK);
    CHECK(cached_blobs(store, &idle) == 0 && idle == 0);
    CHECK(open_descriptors() == descriptors);

    /* An id used again after an unlink (here by renaming another blob's file to it) is
     * served from the new file, never the cached old one. */
    unsigned char *other = pattern(length, 42);
    struct blob_digest first, second;
    REQUIRE(write_blob(store, data, length, 10000, false, &first) == BLOB_OK);
    REQUIRE(write_blob(store, other, length, 10000, false, &second) == BLOB_OK);
    extent.id = first.id;
    CHECK(read_once(store, &extent, 1, 0, length, back) == BLOB_OK);
    CHECK(memcmp(back, data, length) == 0);
    CHECK(blob_store_unlink(store, first.id) == BLOB_OK);
    char from[512], to[512];
    blob_path(store, second.id, from, sizeof(from));
    blob_path(store, first.id, to, sizeof(to));
    CHECK(rename(from, to) == 0);
    CHECK(read_once(store, &extent, 1, 0, length, back) == BLOB_OK);
    CHECK(memcmp(back, other, length) == 0);
    CHECK(blob_store_unlink(store, first.id) == BLOB_OK);
    CHECK(count_blob_files() == 0);
    free(other);
    free(data);
    free(back);
    blob_store_close(store);
    CHECK(open_descriptors() == descriptors - 1); /* the directory's, too */
}

/* Streams of many ranges of a two-blob value, through RING (or without one). */
static void send_ranges(struct io_ring *ring) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    size_t length_a = 9 * CHUNK + 321, length_b = CHUNK + 9;
    unsigned char *a = pattern(length_a, 51), *b = pattern(length_b, 52);
    struct blob_digest da, db;
    REQUIRE(write_blob(store, a, length_a, 50000, false, &da) == BLOB_OK);
    REQUIRE(write_blob(store, b, length_b, 50000, true, &db) == BLOB_OK);
    struct blob_extent extents[] = {{da.id, 7, length_a - 7}, {db.id, 1, length_b - 1}};
    size_t value_length = length_a - 7 + length_b - 1;
    unsigned char *value = malloc(value_length);
    memcpy(value, a + 7, length_a - 7);
    memcpy(value + length_a - 7, b + 1, length_b - 1);
    struct {
        uint64_t offset, length;
        size_t step;
    } ranges[] = {
        {0, value_length, 1 << 20},
        {0, value_length, 10007},
        {0, 0, 100},
        {value_length, 0, 100},
        {5, 1, 100},
        {CHUNK - 8, 2, 100},
        {CHUNK - 100, 3 * CHUNK, 65536},
        {length_a - 7 - 10, 20, 7},
        {length_a - 7 - 1, length_b - 1 + 1, 4096},
        {value_length - 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        check_send(store, extents, 2, ranges[i].offset, ranges[i].length, value, ring,
                   ranges[i].step);
    }
    blob_store_unlink(store, da.id);
    blob_store_unlink(store, db.id);
    free(a);
    free(b);
    free(value);
    blob_store_close(store);
}

static void test_send_without_ring(void) {
    send_ranges(NULL);
}

static void test_send_with_ring(void) {
    struct io_ring *ring = make_ring();
    if (ring == NULL) return;
    send_ranges(ring);
    io_ring_destroy(ring);
}

/* A stream over a blob with chunk 3 damaged ends short, with the queue failed; the
 * bytes before the damaged chunk may have gone out, and are right. */
static void send_damaged(struct io_ring *ring) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    size_t length = 8 * CHUNK;
    unsigned char *data = pattern(length, 61);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, length, CHUNK, false, &digest) == BLOB_OK);
    REQUIRE(flip_byte(store, digest.id, 3 * CHUNK + 1));
    struct blob_extent extent = {digest.id, 0, length};
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
    io_ring_set_current(ring);
    struct output_queue queue;
    output_queue_init(&queue);
    struct drain drain = {.received = malloc(length), .capacity = length};
    CHECK(blob_reader_send(reader, 10, length - 10, &queue, count_wake, &drain));
    drain_queue(&queue, ring, &drain, 100000, 0);
    CHECK(queue.failed);
    CHECK(drain.length == 3 * CHUNK - 10); /* everything up to the damaged chunk */
    CHECK(memcmp(drain.received, data + 10, drain.length) == 0);
    if (ring != NULL) CHECK(drain.wakes > 0);
    output_queue_clear(&queue); /* the connection closes: the stream is freed (ASan) */
    if (ring != NULL) {
        while (io_ring_in_flight(ring) > 0)
            io_ring_wait(ring);
    }
    io_ring_set_current(NULL);
    blob_store_unlink(store, digest.id);
    free(drain.received);
    free(data);
    blob_store_close(store);
}

static void test_send_damaged_chunk(void) {
    send_damaged(NULL);
    struct io_ring *ring = make_ring();
    if (ring == NULL) return;
    send_damaged(ring);
    io_ring_destroy(ring);
}

/* Clears the queue at every stage of a stream: at once (reads in flight), after some
 * bytes went out, and with every piece sent but the stream unfinished. ASan reports a
 * leak or a use after free. */
static void send_cancelled(struct io_ring *ring) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    size_t length = 12 * CHUNK + 1;
    unsigned char *data = pattern(length, 71);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, length, CHUNK, false, &digest) == BLOB_OK);
    struct blob_extent extent = {digest.id, 0, length};
    size_t stops[] = {0, 1, CHUNK / 2, CHUNK, 3 * CHUNK + 5, 10 * CHUNK};
    io_ring_set_current(ring);
    for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
        struct blob_reader *reader;
        REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
        struct output_queue queue;
        output_queue_init(&queue);
        struct drain drain = {.received = malloc(length), .capacity = length};
        CHECK(blob_reader_send(reader, 0, length, &queue, count_wake, &drain));
        if (stops[i] > 0) drain_queue(&queue, ring, &drain, 4096, stops[i]);
        CHECK(drain.length >= stops[i] && drain.length < length);
        CHECK(memcmp(drain.received, data, drain.length) == 0);
        output_queue_clear(&queue);
        CHECK(output_queue_pending(&queue) == 0);
        if (ring != NULL) {
            while (io_ring_in_flight(ring) > 0)
                io_ring_wait(ring);
        }
        /* Every piece released, the stream freed: its blob is idle in the cache. */
        size_t idle = 0;
        CHECK(cached_blobs(store, &idle) == 1 && idle == 1);
        free(drain.received);
    }
    io_ring_set_current(NULL);
    blob_store_unlink(store, digest.id);
    free(data);
    blob_store_close(store);
}

static void test_send_cancelled(void) {
    send_cancelled(NULL);
    struct io_ring *ring = make_ring();
    if (ring == NULL) return;
    send_cancelled(ring);
    io_ring_destroy(ring);
}

/* A stream whose queue is cleared after all its pieces were added but none sent. */
static void test_send_cleared_when_complete(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    unsigned char *data = pattern(CHUNK + 3, 81);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, CHUNK + 3, CHUNK, false, &digest) == BLOB_OK);
    struct blob_extent extent = {digest.id, 0, CHUNK + 3};
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
    struct output_queue queue;
    output_queue_init(&queue);
    CHECK(blob_reader_send(reader, 1, CHUNK + 1, &queue, NULL, NULL));
    struct iovec iovecs[8];
    CHECK(output_queue_iovecs(&queue, iovecs, 8) == 2); /* both pieces, no ring */
    CHECK(output_queue_pending(&queue) == CHUNK + 1);
    output_queue_clear(&queue);
    blob_store_unlink(store, digest.id);
    free(data);
    blob_store_close(store);
}

/* ---- read-ahead of cold streams ------------------------------------------------------ */

/* blob.c's BLOB_READAHEAD: how far ahead of a cold stream the kernel is asked to read. */
#define READAHEAD (16u << 20)

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

/* Whether the kernel answers cachestat() (Linux 6.5) here, asked of FD. */
static bool kernel_has_cachestat(int fd) {
    uint64_t range[2] = {0, 4096}, counts[5];
    return syscall(__NR_cachestat, fd, range, counts, 0) == 0;
}

/* Whether bytes [OFFSET, OFFSET + LENGTH) of the file open as FD are all in the page
 * cache (a mapping of the test's own and mincore(): independent of cachestat()). */
static bool file_resident(int fd, off_t offset, size_t length) {
    void *map = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, offset);
    if (map == MAP_FAILED) return true;
    size_t pages = (length + 4095) / 4096;
    unsigned char *vector = malloc(pages);
    bool resident = vector != NULL && mincore(map, length, vector) == 0;
    for (size_t i = 0; resident && i < pages; i++)
        resident = (vector[i] & 1) != 0;
    free(vector);
    munmap(map, length);
    return resident;
}

/* Bytes a stream of [OFFSET, OFFSET + LENGTH) of a one-blob value of BLOB_LENGTH bytes
 * has the kernel read ahead once it has met a cold chunk at its start: its whole chunks. */
static uint64_t chunks_of(uint64_t offset, uint64_t length, uint64_t blob_length) {
    uint64_t from = offset / CHUNK * CHUNK;
    uint64_t to = (offset + length + CHUNK - 1) / CHUNK * CHUNK;
    return (to < blob_length ? to : blob_length) - from;
}

/* With cachestat(): a stream of a blob in the page cache advises nothing; one of a
 * blob dropped from it (synced, then POSIX_FADV_DONTNEED) advises its range's chunks and
 * no more, and streams right, through the ring and without. The cold half is skipped
 * where dropping does not take (a file system that keeps the pages). */
static void test_readahead_of_cold_streams(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NOW);
    REQUIRE(store != NULL);
    size_t length = 40 * CHUNK + 11;
    unsigned char *data = pattern(length, 87), *back = malloc(length);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, length, CHUNK, false, &digest) == BLOB_OK);
    struct blob_extent extent = {digest.id, 0, length};
    char path[512];
    blob_path(store, digest.id, path, sizeof(path));
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    if (!kernel_has_cachestat(fd)) {
        fprintf(stderr, "  (no cachestat() in this kernel: only the fallback is tested)\n");
        goto done;
    }
    struct io_ring *ring = make_ring();
    for (int with_ring = 0; with_ring < 2; with_ring++) {
        if (with_ring && ring == NULL) break;
        /* Warm: read whole first (reads advise nothing). */
        CHECK(read_once(store, &extent, 1, 0, length, back) == BLOB_OK);
        uint64_t before = atomic_load(&store->bytes_advised);
        bool failed = true;
        CHECK(send_once(store, &extent, 1, 0, length, with_ring ? ring : NULL, back, &failed) ==
              length);
        CHECK(!failed && memcmp(back, data, length) == 0);
        if (file_resident(fd, 0, length)) CHECK(atomic_load(&store->bytes_advised) == before);

        /* Cold: a ranged stream advises from its first chunk to its last. */
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        if (file_resident(fd, 0, length)) {
            fprintf(stderr, "  (the page cache keeps the blob's pages here: cold skipped)\n");
            break;
        }
        uint64_t offset = 3 * CHUNK + 5, part = 30 * CHUNK;
        before = atomic_load(&store->bytes_advised);
        memset(back, 0, length);
        CHECK(send_once(store, &extent, 1, offset, part, with_ring ? ring : NULL, back, &failed) ==
              part);
        CHECK(!failed && memcmp(back, data + offset, part) == 0);
        CHECK(atomic_load(&store->bytes_advised) - before == chunks_of(offset, part, length));
    }
    if (ring != NULL) io_ring_destroy(ring);
done:
    close(fd);
    blob_store_unlink(store, digest.id);
    free(data);
    free(back);
    blob_store_close(store);
}

/* Where cachestat() fails with ENOSYS (a kernel before 6.5: faked here), every chunk
 * may be cold: streams of a warm blob read ahead all the same, READAHEAD at first and
 * the next half of it each time half is used, never past the range, and come out right;
 * each blob of a value is advised for its own part; reads (not streams) advise nothing.
 * Once cachestat() answers again, a warm stream advises nothing. */
static void test_readahead_without_cachestat(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    size_t length = 24 * 1024 * 1024 + 100;
    unsigned char *data = pattern(length, 88), *back = malloc(length);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, length, 1 << 20, false, &digest) == BLOB_OK);
    struct blob_extent extent = {digest.id, 0, length};
    blob_test_fake_no_cachestat(true);

    /* One stream, followed: READAHEAD from its first chunk at once, then more. */
    uint64_t offset = CHUNK + 5, part = 20 * 1024 * 1024 + 7;
    uint64_t before = atomic_load(&store->bytes_advised);
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
    struct output_queue queue;
    output_queue_init(&queue);
    struct drain drain = {.received = back, .capacity = part};
    CHECK(blob_reader_send(reader, offset, part, &queue, count_wake, &drain));
    CHECK(atomic_load(&store->bytes_advised) - before == READAHEAD);
    drain_queue(&queue, NULL, &drain, 1 << 20, 10 * 1024 * 1024);
    uint64_t advised = atomic_load(&store->bytes_advised) - before;
    CHECK(advised > READAHEAD && advised <= chunks_of(offset, part, length));
    drain_queue(&queue, NULL, &drain, 1 << 20, 0);
    CHECK(!queue.failed && drain.length == part && memcmp(back, data + offset, part) == 0);
    CHECK(atomic_load(&store->bytes_advised) - before == chunks_of(offset, part, length));
    output_queue_clear(&queue);

    /* Short ranges, through the ring and without: their own chunks, no more. */
    struct io_ring *ring = make_ring();
    const uint64_t ranges[][2] = {{0, 1}, {CHUNK - 1, 2}, {5 * CHUNK + 3, 7 * CHUNK}, {0, length}};
    for (int with_ring = 0; with_ring < 2; with_ring++) {
        if (with_ring && ring == NULL) break;
        for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
            before = atomic_load(&store->bytes_advised);
            bool failed = true;
            memset(back, 0, ranges[i][1]);
            CHECK(send_once(store, &extent, 1, ranges[i][0], ranges[i][1], with_ring ? ring : NULL,
                            back, &failed) == ranges[i][1]);
            CHECK(!failed && memcmp(back, data + ranges[i][0], ranges[i][1]) == 0);
            CHECK(atomic_load(&store->bytes_advised) - before ==
                  chunks_of(ranges[i][0], ranges[i][1], length));
        }
    }

    /* A value of two blobs: each advised for the part the range takes of it. */
    size_t length_b = 2 * CHUNK + 9;
    unsigned char *b = pattern(length_b, 89);
    struct blob_digest digest_b;
    REQUIRE(write_blob(store, b, length_b, CHUNK, false, &digest_b) == BLOB_OK);
    struct blob_extent extents[2] = {{digest.id, 4 * CHUNK, 3 * CHUNK + 10},
                                     {digest_b.id, 0, length_b}};
    unsigned char *value = malloc(3 * CHUNK + 10 + length_b);
    memcpy(value, data + 4 * CHUNK, 3 * CHUNK + 10);
    memcpy(value + 3 * CHUNK + 10, b, length_b);
    before = atomic_load(&store->bytes_advised);
    bool failed = true;
    uint64_t value_part = 3 * CHUNK + 10 + length_b - 1 - 7;
    CHECK(send_once(store, extents, 2, 1, value_part, ring, back, &failed) == value_part);
    CHECK(!failed && memcmp(back, value + 1, value_part) == 0);
    /* Blob A's chunks 4 to 7 (the extent ends 10 bytes into chunk 7), blob B's 0 to 2. */
    CHECK(atomic_load(&store->bytes_advised) - before == 4 * CHUNK + length_b);

    /* Reads never advise. */
    before = atomic_load(&store->bytes_advised);
    CHECK(read_once(store, &extent, 1, 7, 3 * CHUNK, back) == BLOB_OK);
    CHECK(memcmp(back, data + 7, 3 * CHUNK) == 0);
    CHECK(atomic_load(&store->bytes_advised) == before);

    /* cachestat() back: a warm stream advises nothing (where the kernel has it). */
    blob_test_fake_no_cachestat(false);
    char path[512];
    blob_path(store, digest.id, path, sizeof(path));
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    if (kernel_has_cachestat(fd) && file_resident(fd, 0, 8 * CHUNK)) {
        before = atomic_load(&store->bytes_advised);
        CHECK(send_once(store, &extent, 1, 0, 8 * CHUNK, ring, back, &failed) == 8 * CHUNK);
        CHECK(!failed && memcmp(back, data, 8 * CHUNK) == 0);
        CHECK(atomic_load(&store->bytes_advised) == before);
    }
    close(fd);
    if (ring != NULL) io_ring_destroy(ring);
    blob_store_unlink(store, digest.id);
    blob_store_unlink(store, digest_b.id);
    free(value);
    free(b);
    free(data);
    free(back);
    blob_store_close(store);
}

static void test_sync_policies(void) {
    unsigned char *data = pattern(CHUNK + 100, 91);
    struct blob_digest digests[3];

    struct blob_store *store = open_store(BLOB_SYNC_LATER);
    REQUIRE(store != NULL);
    for (int i = 0; i < 3; i++)
        REQUIRE(write_blob(store, data, CHUNK + 100, 999, i == 1, &digests[i]) == BLOB_OK);
    pthread_mutex_lock(&store->lock);
    size_t pending = store->pending_count;
    pthread_mutex_unlock(&store->lock);
    CHECK(pending == 3);
    CHECK(blob_store_sync_pending(store) == BLOB_OK);
    CHECK(store->pending_count == 0);
    CHECK(atomic_load(&store->sync_errors) == 0);
    CHECK(blob_store_sync_pending(store) == BLOB_OK); /* nothing to do */
    for (int i = 0; i < 3; i++)
        CHECK(blob_store_unlink(store, digests[i].id) == BLOB_OK);
    blob_store_close(store);

    store = open_store(BLOB_SYNC_NOW);
    REQUIRE(store != NULL);
    REQUIRE(write_blob(store, data, CHUNK + 100, 5000, false, &digests[0]) == BLOB_OK);
    CHECK(store->pending_count == 0);
    CHECK(file_size_of(store, digests[0].id) == expected_file_size(CHUNK + 100));
    CHECK(blob_store_unlink(store, digests[0].id) == BLOB_OK);
    blob_store_close(store);
    free(data);
}

/* Writers on several threads at once share one store (TSan watches), while another
 * thread syncs the pending blobs. */
struct writer_thread {
    struct blob_store *store;
    int failures;
    struct blob_digest digests[4];
};

static void *write_some(void *argument) {
    struct writer_thread *thread = argument;
    unsigned char *data = pattern(CHUNK + 1, 101);
    for (int i = 0; i < 4; i++) {
        if (write_blob(thread->store, data, CHUNK + 1, 3333, i % 2, &thread->digests[i]) != BLOB_OK)
            thread->failures++;
    }
    free(data);
    return NULL;
}

static void test_writers_on_threads(void) {
    struct blob_store *store = open_store(BLOB_SYNC_LATER);
    REQUIRE(store != NULL);
    struct writer_thread threads[3];
    pthread_t ids[3];
    for (int i = 0; i < 3; i++) {
        threads[i] = (struct writer_thread){.store = store};
        pthread_create(&ids[i], NULL, write_some, &threads[i]);
    }
    for (int i = 0; i < 20; i++)
        CHECK(blob_store_sync_pending(store) == BLOB_OK);
    for (int i = 0; i < 3; i++)
        pthread_join(ids[i], NULL);
    CHECK(blob_store_sync_pending(store) == BLOB_OK);
    CHECK(blob_store_bytes(store) == 12 * expected_file_size(CHUNK + 1));
    CHECK(count_blob_files() == 12);
    for (int i = 0; i < 3; i++) {
        CHECK(threads[i].failures == 0);
        for (int j = 0; j < 4; j++)
            blob_store_unlink(store, threads[i].digests[j].id);
    }
    CHECK(blob_store_bytes(store) == 0);
    blob_store_close(store);
}

/* ---- the cache of open blobs -------------------------------------------------------- */

/* A small deterministic generator for the tests' random choices. */
static uint64_t next_random(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 17;
}

#define MANY_BLOBS 2000

/* An object of 2,000 extents over 2,000 small blobs (as a multipart upload makes), read
 * at random ranges and streamed with and without a ring: every byte right, and the
 * process never holds more descriptors than the cache's bound and a few. */
static void test_many_extents(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    struct io_ring *ring = make_ring();
    int descriptors = open_descriptors();
    REQUIRE(descriptors > 0);
    struct blob_extent *extents = malloc(MANY_BLOBS * sizeof(*extents));
    size_t capacity = MANY_BLOBS * 1200;
    unsigned char *value = malloc(capacity);
    size_t value_length = 0;
    int written = 0;
    for (int i = 0; i < MANY_BLOBS; i++) {
        size_t length = 300 + (size_t)(i % 7) * 100; /* 300 to 900 bytes */
        unsigned char *data = pattern(length, (uint32_t)(1000 + i));
        struct blob_digest digest;
        if (write_blob(store, data, length, length, false, &digest) == BLOB_OK) written++;
        /* Part of each blob: a few bytes off the front, and off the back of odd ones. */
        uint64_t offset = (uint64_t)(i % 5);
        uint64_t taken = length - offset - (uint64_t)(i % 2) * 3;
        extents[i] = (struct blob_extent){digest.id, offset, taken};
        memcpy(value + value_length, data + offset, (size_t)taken);
        value_length += (size_t)taken;
        free(data);
    }
    REQUIRE(written == MANY_BLOBS);
    unsigned char *back = malloc(value_length);
    int most = 0;

    /* Random ranges: short ones inside an extent, ones across tens of extents, and the
     * whole value, several times on one reader. */
    struct blob_reader *reader;
    uint64_t opens = atomic_load(&store->opens);
    REQUIRE(blob_reader_open(store, extents, MANY_BLOBS, &reader) == BLOB_OK);
    CHECK(atomic_load(&store->opens) == opens); /* the open opened nothing */
    CHECK(blob_reader_length(reader) == value_length);
    uint64_t state = 7;
    int wrong = 0;
    for (int i = 0; i < 400; i++) {
        uint64_t offset, length;
        if (i % 100 == 99) {
            offset = 0;
            length = value_length;
        } else {
            offset = next_random(&state) % value_length;
            uint64_t most_length = i % 2 ? 8 : 40000;
            length = 1 + next_random(&state) % most_length;
            if (length > value_length - offset) length = value_length - offset;
        }
        if (blob_reader_read(reader, offset, length, back) != BLOB_OK ||
            memcmp(back, value + offset, (size_t)length) != 0) {
            wrong++;
        }
        int now = open_descriptors();
        if (now > most) most = now;
    }
    CHECK(wrong == 0);
    blob_reader_close(reader);
    size_t idle = 0;
    CHECK(cached_blobs(store, &idle) == BLOB_OPEN_CACHE_MAX);
    CHECK(idle == BLOB_OPEN_CACHE_MAX); /* the rest were closed, least recently used first */
    CHECK(atomic_load(&store->opens) >= opens + MANY_BLOBS);

    /* Streams, sampled for descriptors as they drain. */
    struct {
        uint64_t offset, length;
    } ranges[] = {{0, value_length}, {value_length / 3, 100000}, {12345, 1}};
    for (int with_ring = 0; with_ring < 2; with_ring++) {
        if (with_ring && ring == NULL) break;
        struct io_ring *current = with_ring ? ring : NULL;
        for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
            REQUIRE(blob_reader_open(store, extents, MANY_BLOBS, &reader) == BLOB_OK);
            io_ring_set_current(current);
            struct output_queue queue;
            output_queue_init(&queue);
            struct drain drain = {.received = back, .capacity = ranges[r].length};
            CHECK(blob_reader_send(reader, ranges[r].offset, ranges[r].length, &queue, count_wake,
                                   &drain));
            for (size_t stop = 4096; drain.length < ranges[r].length; stop += 65536) {
                size_t before = drain.length;
                drain_queue(&queue, current, &drain, 4096, stop);
                int now = open_descriptors();
                if (now > most) most = now;
                if (drain.length == before) break; /* stuck: failed */
            }
            CHECK(!queue.failed);
            CHECK(drain.length == ranges[r].length);
            CHECK(memcmp(back, value + ranges[r].offset, drain.length) == 0);
            CHECK(drain.most_pieces <= 4);
            output_queue_clear(&queue);
            io_ring_set_current(NULL);
        }
    }
    fprintf(stderr, "    %d descriptors before, at most %d while reading %d blobs\n", descriptors,
            most, MANY_BLOBS);
    CHECK(most <= descriptors + BLOB_OPEN_CACHE_MAX + 8);
    CHECK(cached_blobs(store, &idle) == BLOB_OPEN_CACHE_MAX && idle == BLOB_OPEN_CACHE_MAX);
    for (int i = 0; i < MANY_BLOBS; i++)
        CHECK(blob_store_unlink(store, extents[i].id) == BLOB_OK);
    CHECK(cached_blobs(store, NULL) == 0);
    CHECK(open_descriptors() == descriptors);
    if (ring != NULL) io_ring_destroy(ring);
    blob_store_close(store);
    free(back);
    free(value);
    free(extents);
}

/* A value over blobs of two chunk sizes, the small one first: the read buffer and the
 * window's buffers grow when the larger chunk size comes (ASan sees an overflow). */
static void test_mixed_chunk_sizes(void) {
    char error[256];
    struct blob_store *large =
        blob_store_open(directory, 4 * CHUNK, BLOB_SYNC_NEVER, error, sizeof(error));
    REQUIRE(large != NULL);
    size_t length_large = 9 * CHUNK + 17, length_small = 2 * CHUNK + 5;
    unsigned char *big = pattern(length_large, 401), *small = pattern(length_small, 402);
    struct blob_digest dl, ds;
    REQUIRE(write_blob(large, big, length_large, 100000, false, &dl) == BLOB_OK);
    blob_store_close(large);
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    REQUIRE(write_blob(store, small, length_small, 100000, false, &ds) == BLOB_OK);
    struct blob_extent extents[] = {{ds.id, 1, length_small - 1}, {dl.id, 2, length_large - 2}};
    size_t value_length = length_small - 1 + length_large - 2;
    unsigned char *value = malloc(value_length);
    memcpy(value, small + 1, length_small - 1);
    memcpy(value + length_small - 1, big + 2, length_large - 2);
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, extents, 2, &reader) == BLOB_OK);
    check_every_range(reader, value);
    blob_reader_close(reader);
    check_send(store, extents, 2, 0, value_length, value, NULL, 1 << 20);
    struct io_ring *ring = make_ring();
    if (ring != NULL) {
        check_send(store, extents, 2, 0, value_length, value, ring, 50000);
        check_send(store, extents, 2, CHUNK, value_length - CHUNK - 1, value, ring, 4096);
        io_ring_destroy(ring);
    }
    CHECK(blob_store_unlink(store, ds.id) == BLOB_OK);
    CHECK(blob_store_unlink(store, dl.id) == BLOB_OK);
    blob_store_close(store);
    free(big);
    free(small);
    free(value);
}

/* A reader opens only the blobs its ranges touch: with every other blob of an
 * eight-extent value removed, the first extent reads, a range reaching a removed blob
 * is BLOB_NOT_FOUND, and a stream sends the bytes before it and fails. */
static void test_reader_opens_only_what_it_touches(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    enum { PARTS = 8 };
    size_t part = CHUNK + 100;
    struct blob_extent extents[PARTS];
    unsigned char *value = malloc(PARTS * part), *back = malloc(PARTS * part);
    for (int i = 0; i < PARTS; i++) {
        unsigned char *data = pattern(part, (uint32_t)(200 + i));
        struct blob_digest digest;
        REQUIRE(write_blob(store, data, part, 5000, false, &digest) == BLOB_OK);
        extents[i] = (struct blob_extent){digest.id, 0, part};
        memcpy(value + (size_t)i * part, data, part);
        free(data);
    }
    for (int i = 1; i < PARTS; i += 2)
        CHECK(blob_store_unlink(store, extents[i].id) == BLOB_OK);

    uint64_t opens = atomic_load(&store->opens);
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, extents, PARTS, &reader) == BLOB_OK);
    CHECK(atomic_load(&store->opens) == opens);
    CHECK(blob_reader_read(reader, 0, 8, back) == BLOB_OK); /* a header read */
    CHECK(memcmp(back, value, 8) == 0);
    CHECK(atomic_load(&store->opens) == opens + 1);
    CHECK(blob_reader_read(reader, 0, part, back) == BLOB_OK);
    CHECK(memcmp(back, value, part) == 0);
    CHECK(atomic_load(&store->opens) == opens + 1); /* the first blob, once */
    CHECK(blob_reader_read(reader, 2 * part + 7, part - 7, back) == BLOB_OK); /* extent 2 */
    CHECK(memcmp(back, value + 2 * part + 7, part - 7) == 0);
    CHECK(atomic_load(&store->opens) == opens + 2);
    CHECK(blob_reader_read(reader, part - 1, 2, back) == BLOB_NOT_FOUND);
    CHECK(blob_reader_read(reader, 3 * part, 1, back) == BLOB_NOT_FOUND);
    CHECK(blob_reader_read(reader, 0, PARTS * part, back) == BLOB_NOT_FOUND);
    CHECK(blob_reader_read(reader, 4 * part, part, back) == BLOB_OK); /* still reads */
    CHECK(memcmp(back, value + 4 * part, part) == 0);
    blob_reader_close(reader);

    /* Streams, without and with a ring: the first extent's bytes go out, then the
     * stream fails; one that stays inside the first extent is whole. */
    struct io_ring *ring = make_ring();
    for (int with_ring = 0; with_ring < 2; with_ring++) {
        if (with_ring && ring == NULL) break;
        bool failed;
        size_t sent = send_once(store, extents, PARTS, 10, PARTS * part - 10,
                                with_ring ? ring : NULL, back, &failed);
        CHECK(failed);
        CHECK(sent == part - 10);
        CHECK(memcmp(back, value + 10, sent) == 0);
        sent =
            send_once(store, extents, PARTS, 3, part - 3, with_ring ? ring : NULL, back, &failed);
        CHECK(!failed && sent == part - 3);
        CHECK(memcmp(back, value + 3, sent) == 0);
    }
    if (ring != NULL) io_ring_destroy(ring);
    for (int i = 0; i < PARTS; i += 2)
        CHECK(blob_store_unlink(store, extents[i].id) == BLOB_OK);
    CHECK(count_blob_files() == 0);
    free(value);
    free(back);
    blob_store_close(store);
}

/* Readers on four threads read random ranges of a value over shared blobs, and now and
 * then a blob of the churn, while another thread unlinks churn blobs and writes new
 * ones (more than the cache keeps, so entries are evicted as others are hit). A churn
 * blob holds its own seed in its first 8 bytes and the pattern of that seed after: a
 * read of one is right, or BLOB_NOT_FOUND once it is gone, never another's bytes. */
#define SHARED_BLOBS     16
#define SHARED_LENGTH    (CHUNK + 3000)
#define CHURN_BLOBS      300
#define CHURN_LENGTH     1000
#define READER_THREADS   4
#define READS_PER_THREAD 150

struct concurrent {
    struct blob_store *store;
    struct blob_extent shared[SHARED_BLOBS];
    unsigned char *value; /* the shared value */
    size_t value_length;
    _Atomic uint64_t churn[CHURN_BLOBS]; /* ids of the churn blobs (0: none yet) */
    _Atomic bool stop;
    _Atomic int replaced; /* churn blobs unlinked and written anew */
};

struct reader_thread {
    struct concurrent *test;
    uint64_t seed;
    int wrong;
    int churn_read;
    int churn_missing;
};

/* Writes a churn blob from SEED. Returns its id, or 0 on a failure. */
static uint64_t write_churn(struct blob_store *store, uint64_t seed) {
    unsigned char *data = pattern(CHURN_LENGTH, (uint32_t)seed);
    memcpy(data, &seed, sizeof(seed));
    struct blob_digest digest;
    enum blob_status status = write_blob(store, data, CHURN_LENGTH, CHURN_LENGTH, false, &digest);
    free(data);
    return status == BLOB_OK ? digest.id : 0;
}

/* Whether churn blob bytes DATA are one whole churn blob. */
static bool churn_right(const unsigned char *data) {
    uint64_t seed;
    memcpy(&seed, data, sizeof(seed));
    unsigned char *expected = pattern(CHURN_LENGTH, (uint32_t)seed);
    bool right = memcmp(data + 8, expected + 8, CHURN_LENGTH - 8) == 0;
    free(expected);
    return right;
}

static void *read_randomly(void *argument) {
    struct reader_thread *thread = argument;
    struct concurrent *test = thread->test;
    unsigned char *back = malloc(test->value_length);
    for (int i = 0; i < READS_PER_THREAD; i++) {
        if (i % 5 == 4) {
            uint64_t id = atomic_load(&test->churn[next_random(&thread->seed) % CHURN_BLOBS]);
            struct blob_extent extent = {id, 0, CHURN_LENGTH};
            enum blob_status status = read_once(test->store, &extent, 1, 0, CHURN_LENGTH, back);
            if (status == BLOB_OK) {
                thread->churn_read++;
                if (!churn_right(back)) thread->wrong++;
            } else if (status == BLOB_NOT_FOUND) {
                thread->churn_missing++;
            } else {
                thread->wrong++;
            }
            continue;
        }
        uint64_t offset = next_random(&thread->seed) % test->value_length;
        uint64_t length = 1 + next_random(&thread->seed) % (3 * CHUNK);
        if (length > test->value_length - offset) length = test->value_length - offset;
        if (i % 5 == 3) {
            bool failed;
            size_t sent = send_once(test->store, test->shared, SHARED_BLOBS, offset, length, NULL,
                                    back, &failed);
            if (failed || sent != length || memcmp(back, test->value + offset, sent) != 0)
                thread->wrong++;
        } else if (read_once(test->store, test->shared, SHARED_BLOBS, offset, length, back) !=
                       BLOB_OK ||
                   memcmp(back, test->value + offset, (size_t)length) != 0) {
            thread->wrong++;
        }
    }
    free(back);
    return NULL;
}

static void *churn_blobs(void *argument) {
    struct concurrent *test = argument;
    uint64_t state = 99, seed = 1;
    unsigned char *back = malloc(CHURN_LENGTH);
    while (!atomic_load(&test->stop)) {
        size_t slot = next_random(&state) % CHURN_BLOBS;
        uint64_t old = atomic_load(&test->churn[slot]);
        /* Read it first (so it is cached, and other readers may hold it), then remove it
         * (readers that load its id meanwhile do not find it) and write its successor. */
        struct blob_extent extent = {old, 0, CHURN_LENGTH};
        if (read_once(test->store, &extent, 1, 0, CHURN_LENGTH, back) == BLOB_OK)
            (void)churn_right(back);
        blob_store_unlink(test->store, old);
        atomic_store(&test->churn[slot], write_churn(test->store, seed++));
        atomic_fetch_add(&test->replaced, 1);
    }
    free(back);
    return NULL;
}

static void test_concurrent_readers_and_unlinks(void) {
    struct concurrent *test = calloc(1, sizeof(*test));
    REQUIRE(test != NULL);
    test->store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(test->store != NULL);
    test->value = malloc(SHARED_BLOBS * SHARED_LENGTH);
    for (int i = 0; i < SHARED_BLOBS; i++) {
        unsigned char *data = pattern(SHARED_LENGTH, (uint32_t)(300 + i));
        struct blob_digest digest;
        REQUIRE(write_blob(test->store, data, SHARED_LENGTH, 20000, false, &digest) == BLOB_OK);
        uint64_t offset = (uint64_t)i * 11;
        test->shared[i] = (struct blob_extent){digest.id, offset, SHARED_LENGTH - offset};
        memcpy(test->value + test->value_length, data + offset, SHARED_LENGTH - offset);
        test->value_length += SHARED_LENGTH - offset;
        free(data);
    }
    for (int i = 0; i < CHURN_BLOBS; i++) {
        uint64_t id = write_churn(test->store, 1000000 + (uint64_t)i);
        REQUIRE(id != 0);
        atomic_store(&test->churn[i], id);
    }
    pthread_t churner;
    pthread_t readers[READER_THREADS];
    struct reader_thread threads[READER_THREADS];
    REQUIRE(pthread_create(&churner, NULL, churn_blobs, test) == 0);
    for (int i = 0; i < READER_THREADS; i++) {
        threads[i] = (struct reader_thread){.test = test, .seed = 17 + (uint64_t)i};
        REQUIRE(pthread_create(&readers[i], NULL, read_randomly, &threads[i]) == 0);
    }
    int wrong = 0, churn_read = 0, churn_missing = 0;
    for (int i = 0; i < READER_THREADS; i++) {
        pthread_join(readers[i], NULL);
        wrong += threads[i].wrong;
        churn_read += threads[i].churn_read;
        churn_missing += threads[i].churn_missing;
    }
    atomic_store(&test->stop, true);
    pthread_join(churner, NULL);
    fprintf(stderr, "    %d churn blobs replaced; churn reads: %d found, %d gone\n",
            atomic_load(&test->replaced), churn_read, churn_missing);
    CHECK(wrong == 0);
    CHECK(churn_read > 0);
    CHECK(atomic_load(&test->replaced) > 0);
    size_t idle = 0;
    CHECK(cached_blobs(test->store, &idle) == idle); /* nobody holds one now */
    CHECK(idle <= BLOB_OPEN_CACHE_MAX);
    for (int i = 0; i < SHARED_BLOBS; i++)
        CHECK(blob_store_unlink(test->store, test->shared[i].id) == BLOB_OK);
    for (int i = 0; i < CHURN_BLOBS; i++)
        CHECK(blob_store_unlink(test->store, atomic_load(&test->churn[i])) == BLOB_OK);
    CHECK(count_blob_files() == 0);
    CHECK(blob_store_bytes(test->store) == 0);
    blob_store_close(test->store);
    free(test->value);
    free(test);
}

/* ---- holds ---------------------------------------------------------------------- */

#define HELD_BLOBS 5

/* Writes HELD_BLOBS blobs of lengths 2 * CHUNK + 100 * i (patterns from SEED) and fills
 * EXTENTS (room for 2 * HELD_BLOBS) with a value over them that refers to some blobs
 * twice, in a row and apart; copies the value into VALUE (room for 2 * HELD_BLOBS *
 * 3 * CHUNK). Returns the extents' count, or 0 on a failure. */
static size_t write_held_value(struct blob_store *store, uint32_t seed, uint64_t ids[HELD_BLOBS],
                               struct blob_extent *extents, unsigned char *value,
                               uint64_t *value_length) {
    size_t count = 0;
    *value_length = 0;
    unsigned char *datas[HELD_BLOBS];
    size_t lengths[HELD_BLOBS];
    for (int i = 0; i < HELD_BLOBS; i++) {
        lengths[i] = 2 * CHUNK + 100 * (size_t)i;
        datas[i] = pattern(lengths[i], seed + (uint32_t)i);
        struct blob_digest digest;
        if (write_blob(store, datas[i], lengths[i], 50000, false, &digest) != BLOB_OK) return 0;
        ids[i] = digest.id;
    }
    /* Blob 0 whole, blob 1 in two extents in a row, blobs 2 to 4, then blob 0 again. */
    struct {
        int blob;
        uint64_t offset, length;
    } plan[] = {{0, 0, lengths[0]},
                {1, 0, CHUNK + 7},
                {1, CHUNK + 7, lengths[1] - CHUNK - 7},
                {2, 3, lengths[2] - 3},
                {3, 0, lengths[3]},
                {4, 0, lengths[4]},
                {0, 5, 1000}};
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
        extents[count++] = (struct blob_extent){ids[plan[i].blob], plan[i].offset, plan[i].length};
        memcpy(value + *value_length, datas[plan[i].blob] + plan[i].offset, plan[i].length);
        *value_length += plan[i].length;
    }
    for (int i = 0; i < HELD_BLOBS; i++)
        free(datas[i]);
    return count;
}

/* A reader of a value of several blobs reads all of it after every blob was unlinked,
 * whatever it had read before; the files go when it is closed. */
static void test_reader_holds_its_blobs(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    int descriptors = open_descriptors();
    uint64_t ids[HELD_BLOBS];
    struct blob_extent extents[2 * HELD_BLOBS];
    unsigned char *value = malloc(2 * HELD_BLOBS * 3 * CHUNK),
                  *back = malloc(2 * HELD_BLOBS * 3 * CHUNK);
    uint64_t length;
    size_t count = write_held_value(store, 500, ids, extents, value, &length);
    REQUIRE(count > 0);
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, extents, count, &reader) == BLOB_OK);
    CHECK(blob_reader_length(reader) == length);
    for (int i = 0; i < HELD_BLOBS; i++)
        CHECK(blob_store_held(store, ids[i], NULL));
    CHECK(open_descriptors() == descriptors);                /* holding opens nothing */
    CHECK(blob_reader_read(reader, 0, 10, back) == BLOB_OK); /* only the first blob */
    uint64_t bytes = blob_store_bytes(store);
    for (int i = 0; i < HELD_BLOBS; i++)
        CHECK(blob_store_unlink(store, ids[i]) == BLOB_OK);
    CHECK(count_blob_files() == HELD_BLOBS);
    CHECK(blob_store_bytes(store) == bytes);
    blob_store_close_idle(store);
    memset(back, 0, (size_t)length);
    CHECK(blob_reader_read(reader, 0, length, back) == BLOB_OK);
    CHECK(memcmp(back, value, (size_t)length) == 0);
    blob_reader_close(reader);
    CHECK(count_blob_files() == 0);
    CHECK(blob_store_bytes(store) == 0);
    CHECK(cached_blobs(store, NULL) == 0);
    CHECK(open_descriptors() == descriptors);
    for (int i = 0; i < HELD_BLOBS; i++)
        CHECK(!blob_store_held(store, ids[i], NULL));
    CHECK(read_once(store, extents, count, 0, 1, back) == BLOB_NOT_FOUND);
    free(value);
    free(back);
    blob_store_close(store);
}

/* The same through a stream: it started before the unlinks and ends whole after them,
 * with and without a ring; the files go when the stream ends. */
static void stream_held(struct io_ring *ring) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    uint64_t ids[HELD_BLOBS];
    struct blob_extent extents[2 * HELD_BLOBS];
    unsigned char *value = malloc(2 * HELD_BLOBS * 3 * CHUNK);
    uint64_t length;
    size_t count = write_held_value(store, 600, ids, extents, value, &length);
    REQUIRE(count > 0);
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, extents, count, &reader) == BLOB_OK);
    io_ring_set_current(ring);
    struct output_queue queue;
    output_queue_init(&queue);
    struct drain drain = {.received = malloc((size_t)length), .capacity = (size_t)length};
    CHECK(blob_reader_send(reader, 0, length, &queue, count_wake, &drain));
    drain_queue(&queue, ring, &drain, 1000, 3000); /* a little of the first blob */
    CHECK(drain.length >= 3000 && drain.length < length);
    for (int i = 0; i < HELD_BLOBS; i++)
        CHECK(blob_store_unlink(store, ids[i]) == BLOB_OK);
    CHECK(count_blob_files() == HELD_BLOBS);
    drain_queue(&queue, ring, &drain, 1 << 20, 0);
    CHECK(!queue.failed);
    CHECK(drain.length == length);
    CHECK(memcmp(drain.received, value, (size_t)length) == 0);
    output_queue_clear(&queue);
    while (ring != NULL && io_ring_in_flight(ring) > 0)
        io_ring_wait(ring);
    io_ring_set_current(NULL);
    CHECK(count_blob_files() == 0); /* the stream ended: its reader let go */
    CHECK(blob_store_bytes(store) == 0);
    free(drain.received);
    free(value);
    blob_store_close(store);
}

static void test_stream_holds_its_blobs(void) {
    stream_held(NULL);
    struct io_ring *ring = make_ring();
    if (ring != NULL) {
        stream_held(ring);
        io_ring_destroy(ring);
    }
}

/* Holds are counted per id; an unlink of a missing held blob says so; the set of holds
 * keeps finding every id through growth and removals in any order. */
static void test_hold_counts(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    unsigned char *data = pattern(1000, 7);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, 1000, 1000, false, &digest) == BLOB_OK);
    struct blob_extent extent = {digest.id, 0, 1000};
    CHECK(blob_store_hold(store, &extent, 1) == BLOB_OK);
    CHECK(blob_store_hold(store, &extent, 1) == BLOB_OK);
    CHECK(blob_store_unlink(store, digest.id) == BLOB_OK);
    blob_store_unhold(store, &extent, 1);
    CHECK(count_blob_files() == 1);
    blob_store_unhold(store, &extent, 1);
    CHECK(count_blob_files() == 0);
    CHECK(blob_store_bytes(store) == 0);
    /* Held without a file: the unlink says NOT_FOUND and the hold's end removes nothing. */
    struct blob_extent missing = {0x1234, 0, 1};
    CHECK(blob_store_hold(store, &missing, 1) == BLOB_OK);
    CHECK(blob_store_unlink(store, missing.id) == BLOB_NOT_FOUND);
    blob_store_unhold(store, &missing, 1);
    CHECK(!blob_store_held(store, missing.id, NULL));

    /* Many ids (the set grows past its first size many times), some held twice, let go
     * in a scrambled order; after each step every id is held exactly as it should be. */
    enum { IDS = 3000 };
    struct blob_extent *many = calloc(IDS, sizeof(*many));
    int *holds = calloc(IDS, sizeof(*holds));
    uint64_t state = 5;
    for (size_t i = 0; i < IDS; i++) {
        /* Ids that crowd into few home slots as well as spread ones. */
        many[i].id = i % 2 ? next_random(&state) : (uint64_t)i << 40;
        many[i].length = 1;
    }
    CHECK(blob_store_hold(store, many, IDS) == BLOB_OK);
    CHECK(blob_store_hold(store, many, IDS / 2) == BLOB_OK);
    for (size_t i = 0; i < IDS; i++)
        holds[i] = i < IDS / 2 ? 2 : 1;
    CHECK(store->holds_used == IDS);
    bool right = true;
    for (size_t step = 0; step < 2 * IDS; step++) {
        size_t i = (size_t)(next_random(&state) % IDS);
        if (holds[i] == 0) continue;
        blob_store_unhold(store, &many[i], 1);
        holds[i]--;
        if (step % 97 == 0) {
            for (size_t j = 0; j < IDS; j++)
                right = right && blob_store_held(store, many[j].id, NULL) == (holds[j] > 0);
        }
    }
    CHECK(right);
    for (size_t i = 0; i < IDS; i++)
        while (holds[i]-- > 0)
            blob_store_unhold(store, &many[i], 1);
    CHECK(store->holds_used == 0);
    for (size_t i = 0; i < IDS; i++)
        right = right && !blob_store_held(store, many[i].id, NULL);
    CHECK(right);
    free(many);
    free(holds);
    free(data);
    blob_store_close(store);
}

/* blob_store_close() removes the blobs unlinked while held whose holds were never let
 * go, and keeps the held ones nobody unlinked. */
static void test_close_removes_held_unlinked(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    unsigned char *data = pattern(CHUNK + 9, 8);
    struct blob_digest gone, kept;
    REQUIRE(write_blob(store, data, CHUNK + 9, 4096, false, &gone) == BLOB_OK);
    REQUIRE(write_blob(store, data, CHUNK + 9, 4096, false, &kept) == BLOB_OK);
    struct blob_extent extents[2] = {{gone.id, 0, CHUNK + 9}, {kept.id, 0, CHUNK + 9}};
    CHECK(blob_store_hold(store, extents, 2) == BLOB_OK);
    CHECK(blob_store_unlink(store, gone.id) == BLOB_OK);
    CHECK(count_blob_files() == 2);
    blob_store_close(store); /* the hold is forgotten */
    CHECK(count_blob_files() == 1);
    store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    CHECK(blob_store_bytes(store) == expected_file_size(CHUNK + 9));
    CHECK(blob_store_unlink(store, gone.id) == BLOB_NOT_FOUND);
    CHECK(blob_store_unlink(store, kept.id) == BLOB_OK);
    CHECK(count_blob_files() == 0);
    free(data);
    blob_store_close(store);
}

static void remove_directory(void) {
    DIR *listing = opendir(directory);
    if (listing != NULL) {
        struct dirent *entry;
        while ((entry = readdir(listing)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
            char path[600];
            snprintf(path, sizeof(path), "%s/%s", directory, entry->d_name);
            unlink(path);
        }
        closedir(listing);
    }
    rmdir(directory);
}

int main(void) {
    snprintf(directory, sizeof(directory), "/tmp/strata-blob-XXXXXX");
    if (mkdtemp(directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    /* The log (damage is logged) goes to a file next to the directory, read back by the
     * tests that look for a line. */
    snprintf(log_path, sizeof(log_path), "%s.log", directory);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd >= 0) log_set_fd(log_fd);
    RUN_TEST(test_round_trips);
    RUN_TEST(test_bytes_counted_at_open_and_abort);
    RUN_TEST(test_reads_across_chunks_and_extents);
    RUN_TEST(test_damage_is_found);
    RUN_TEST(test_unlinked_blob_still_reads);
    RUN_TEST(test_send_without_ring);
    RUN_TEST(test_send_with_ring);
    RUN_TEST(test_send_damaged_chunk);
    RUN_TEST(test_send_cancelled);
    RUN_TEST(test_send_cleared_when_complete);
    RUN_TEST(test_readahead_of_cold_streams);
    RUN_TEST(test_readahead_without_cachestat);
    RUN_TEST(test_sync_policies);
    RUN_TEST(test_writers_on_threads);
    RUN_TEST(test_many_extents);
    RUN_TEST(test_mixed_chunk_sizes);
    RUN_TEST(test_reader_opens_only_what_it_touches);
    RUN_TEST(test_concurrent_readers_and_unlinks);
    RUN_TEST(test_reader_holds_its_blobs);
    RUN_TEST(test_stream_holds_its_blobs);
    RUN_TEST(test_hold_counts);
    RUN_TEST(test_close_removes_held_unlinked);
    remove_directory();
    log_set_fd(2);
    if (log_fd >= 0) close(log_fd);
    unlink(log_path);
    return test_main_result();
}
