/* Unit tests of the blob files (engine/blob.h): writing them (append and zero-copy),
 * their digests, reading any range of one or several blobs, streaming a range to an
 * output queue with and without an io_ring, damage of every part of the file, cancelled
 * streams, the sync policies and the store's byte count. */
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
#include <sys/stat.h>
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

    /* Extents that do not fit their blob, and blobs that do not exist. */
    struct blob_extent beyond = {db.id, length_b - 10, 11};
    CHECK(blob_reader_open(store, &beyond, 1, &reader) == BLOB_CORRUPT);
    struct blob_extent past_end = {db.id, length_b + 1, 0};
    CHECK(blob_reader_open(store, &past_end, 1, &reader) == BLOB_CORRUPT);
    struct blob_extent missing[] = {{da.id, 0, 1}, {db.id ^ 1, 0, 1}};
    CHECK(blob_reader_open(store, missing, 2, &reader) == BLOB_NOT_FOUND);
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

    /* A byte of the sums, of each footer field, and the file cut or grown: no open. */
    int64_t places[] = {(int64_t)length + 5, -32, -25, -16, -12, -8, -1};
    for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++) {
        REQUIRE(write_blob(store, data, length, CHUNK, false, &digest) == BLOB_OK);
        REQUIRE(flip_byte(store, digest.id, places[i]));
        extent.id = digest.id;
        CHECK(blob_reader_open(store, &extent, 1, &reader) == BLOB_CORRUPT);
        blob_store_unlink(store, digest.id);
    }
    char path[512];
    for (int grow = 0; grow < 2; grow++) {
        REQUIRE(write_blob(store, data, length, CHUNK, false, &digest) == BLOB_OK);
        blob_path(store, digest.id, path, sizeof(path));
        off_t size = (off_t)expected_file_size(length);
        CHECK(truncate(path, grow ? size + 1 : size - 1) == 0);
        extent.id = digest.id;
        CHECK(blob_reader_open(store, &extent, 1, &reader) == BLOB_CORRUPT);
        blob_store_unlink(store, digest.id);
    }
    /* A file too short to have a footer, and an empty one. */
    REQUIRE(write_blob(store, data, 1, 1, false, &digest) == BLOB_OK);
    blob_path(store, digest.id, path, sizeof(path));
    CHECK(truncate(path, 31) == 0);
    extent = (struct blob_extent){digest.id, 0, 1};
    CHECK(blob_reader_open(store, &extent, 1, &reader) == BLOB_CORRUPT);
    CHECK(truncate(path, 0) == 0);
    CHECK(blob_reader_open(store, &extent, 1, &reader) == BLOB_CORRUPT);
    blob_store_unlink(store, digest.id);
    CHECK(count_blob_files() == 0);
    free(data);
    free(back);
    blob_store_close(store);
}

static void test_unlinked_blob_still_reads(void) {
    struct blob_store *store = open_store(BLOB_SYNC_NEVER);
    REQUIRE(store != NULL);
    size_t length = 2 * CHUNK + 3;
    unsigned char *data = pattern(length, 41), *back = malloc(length);
    struct blob_digest digest;
    REQUIRE(write_blob(store, data, length, 10000, false, &digest) == BLOB_OK);
    struct blob_extent extent = {digest.id, 0, length};
    struct blob_reader *reader;
    REQUIRE(blob_reader_open(store, &extent, 1, &reader) == BLOB_OK);
    CHECK(blob_store_unlink(store, digest.id) == BLOB_OK);
    CHECK(blob_store_bytes(store) == 0);
    CHECK(blob_reader_read(reader, 0, length, back) == BLOB_OK);
    CHECK(memcmp(back, data, length) == 0);
    blob_reader_close(reader);
    CHECK(blob_reader_open(store, &extent, 1, &reader) == BLOB_NOT_FOUND);
    free(data);
    free(back);
    blob_store_close(store);
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
    RUN_TEST(test_sync_policies);
    RUN_TEST(test_writers_on_threads);
    remove_directory();
    log_set_fd(2);
    if (log_fd >= 0) close(log_fd);
    unlink(log_path);
    return test_main_result();
}
