/* Fault injection sweeps over the blob files (engine/blob.h), in the manner of
 * test_faults.c: for each site (open, write with EIO and with ENOSPC, sync, read,
 * submit, alloc), once and persistently, the Nth call fails for N = 1, 2, ... while a
 * workload writes a blob (synced at once), reads it back, and streams it to an output
 * queue without and with an io_ring, each pass opening the blob afresh (the store's
 * cache of open blobs is emptied before it, so the open, footer and sums reads happen
 * inside the read and inside each stream), until the workload makes fewer than N calls. Each
 * time: the failure is reported with the status the site's errno calls for, a blob
 * whose write failed leaves no file and no bytes counted, no wrong byte is ever
 * returned or queued, and nothing leaks or is used after it is freed (ASan).
 *
 * Built only in the fault build (build/fault, -DSTRATA_FAULT_INJECTION, allocations
 * wrapped); `make unit-fault` runs it. */
#include "../unit/test.h"
#include "base/fault.h"
#include "base/io_ring.h"
#include "base/log.h"
#include "base/output_queue.h"
#include "engine/blob.h"
#include "engine/blob_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK       BLOB_MIN_CHUNK_SIZE
#define BLOB_LENGTH (3 * CHUNK + 5)
#define SWEEP_LIMIT 500

static char directory[256];
static unsigned char expected[BLOB_LENGTH];
static unsigned char received[BLOB_LENGTH];

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

/* The symbol of the errno values the sweeps use. */
static const char *error_name(int error) {
    switch (error) {
    case EIO:
        return "EIO";
    case ENOSPC:
        return "ENOSPC";
    case EDQUOT:
        return "EDQUOT";
    case EAGAIN:
        return "EAGAIN";
    case ENOMEM:
        return "ENOMEM";
    }
    return "?";
}

/* What a failure at SITE with ERROR must be reported as. */
static enum blob_status status_for(enum fault_site site, int error) {
    if (site == FAULT_alloc) return BLOB_NO_MEMORY;
    return error == ENOSPC || error == EDQUOT ? BLOB_NO_SPACE : BLOB_IO_ERROR;
}

/* Streams the whole blob through READER (taken over) to a fresh queue, with RING as the
 * thread's ring or without one. Returns false if a wrong byte came out. */
static bool stream_checked(struct blob_reader *reader, struct io_ring *ring) {
    io_ring_set_current(ring);
    struct output_queue queue;
    output_queue_init(&queue);
    size_t length = 0;
    bool right = true;
    if (blob_reader_send(reader, 0, BLOB_LENGTH, &queue, NULL, NULL)) {
        for (;;) {
            struct iovec iovecs[8];
            int count = output_queue_iovecs(&queue, iovecs, 8);
            if (count == 0) {
                if (output_queue_pending(&queue) == 0) break;
                if (ring == NULL || io_ring_in_flight(ring) == 0) break; /* failed, stuck */
                io_ring_wait(ring);
                continue;
            }
            size_t taken = 0;
            for (int i = 0; i < count; i++) {
                if (length + taken + iovecs[i].iov_len > BLOB_LENGTH) {
                    right = false; /* more bytes than the blob has */
                    break;
                }
                memcpy(received + length + taken, iovecs[i].iov_base, iovecs[i].iov_len);
                taken += iovecs[i].iov_len;
            }
            output_queue_consume(&queue, taken);
            length += taken;
            if (!right) break;
        }
        right = right && memcmp(received, expected, length) == 0;
        /* A complete stream is whole and the queue did not fail; a short one failed. */
        if (length == BLOB_LENGTH) right = right && !queue.failed;
        if (length < BLOB_LENGTH) right = right && queue.failed;
    } else {
        right = queue.failed;
    }
    output_queue_clear(&queue);
    while (ring != NULL && io_ring_in_flight(ring) > 0)
        io_ring_wait(ring);
    io_ring_set_current(NULL);
    return right;
}

/* Reads SITE's counts into COUNTS and clears every rule. */
static void stop_faults(enum fault_site site, struct fault_counts *counts) {
    fault_get_counts(site, counts);
    fault_reset();
}

/* The workload, with the rule for SITE (failing with ERROR) in force; sets COUNTS to the
 * site's counts when the faults stop. Returns false if something broke a rule (and says
 * what). */
static bool workload(struct blob_store *store, struct io_ring *ring, enum fault_site site,
                     int error, struct fault_counts *counts) {
    struct blob_writer *writer;
    enum blob_status status = blob_writer_open(store, &writer);
    struct blob_digest digest = {0};
    if (status == BLOB_OK) {
        for (size_t done = 0; done < BLOB_LENGTH && status == BLOB_OK; done += 40000) {
            size_t take = BLOB_LENGTH - done < 40000 ? BLOB_LENGTH - done : 40000;
            status = blob_writer_append(writer, expected + done, take);
        }
        if (status == BLOB_OK) {
            status = blob_writer_finish(writer, &digest);
        } else {
            blob_writer_abort(writer);
        }
    }
    if (status != BLOB_OK) {
        stop_faults(site, counts);
        if (status != status_for(site, error)) {
            fprintf(stderr, "  write: %s, expected %s\n", blob_status_text(status),
                    blob_status_text(status_for(site, error)));
            return false;
        }
        if (count_blob_files() != 0 || blob_store_bytes(store) != 0) {
            fprintf(stderr, "  a failed write left a file or bytes counted\n");
            return false;
        }
        return true;
    }
    bool right = true;
    struct blob_extent extent = {digest.id, 0, BLOB_LENGTH};
    for (int pass = 0; pass < 3 && right; pass++) {
        struct blob_reader *reader;
        blob_store_close_idle(store); /* the pass opens the blob itself */
        status = blob_reader_open(store, &extent, 1, &reader);
        if (status != BLOB_OK) {
            if (status != status_for(site, error)) {
                fprintf(stderr, "  open: %s\n", blob_status_text(status));
                right = false;
            }
            continue;
        }
        if (pass == 0) {
            memset(received, 0, sizeof(received));
            status = blob_reader_read(reader, 0, BLOB_LENGTH, received);
            if (status == BLOB_OK) {
                right = memcmp(received, expected, BLOB_LENGTH) == 0;
            } else if (status != status_for(site, error)) {
                fprintf(stderr, "  read: %s\n", blob_status_text(status));
                right = false;
            }
            blob_reader_close(reader);
        } else {
            right = stream_checked(reader, pass == 2 ? ring : NULL);
            if (!right) fprintf(stderr, "  a stream (ring: %d) went wrong\n", pass == 2);
        }
    }
    stop_faults(site, counts);
    blob_store_unlink(store, digest.id);
    if (count_blob_files() != 0 || blob_store_bytes(store) != 0) {
        fprintf(stderr, "  a file or bytes are left after the unlink\n");
        return false;
    }
    return right;
}

/* Sweeps SITE failing with ERROR, once (PERSISTENT false) or from the Nth call on. */
static void sweep(struct io_ring *ring, enum fault_site site, int error, bool persistent) {
    struct blob_store *store = NULL;
    char message[256];
    store = blob_store_open(directory, CHUNK, BLOB_SYNC_NOW, message, sizeof(message));
    REQUIRE(store != NULL);
    uint64_t n = 1;
    for (; n <= SWEEP_LIMIT; n++) {
        struct fault_rule rule = {.nth = n, .persistent = persistent, .error = error};
        fault_configure(site, &rule);
        struct fault_counts counts;
        bool right = workload(store, ring, site, error, &counts);
        if (!right) {
            fprintf(stderr, "  site %s error %d nth %llu%s broke a rule\n", fault_site_name(site),
                    error, (unsigned long long)n, persistent ? " persistent" : "");
        }
        CHECK(right);
        if (!right) break;
        if (counts.injected == 0) break; /* the workload made fewer than N calls */
    }
    fprintf(stderr, "    %-6s %-6s %-10s failed at calls 1 to %llu\n", fault_site_name(site),
            error_name(error), persistent ? "persistent" : "once", (unsigned long long)(n - 1));
    CHECK(n > 1 || site == FAULT_submit); /* the workload reaches every other site */
    blob_store_close(store);
}

static void test_sweeps(void) {
    char error[256];
    struct io_ring *ring = io_ring_create(64, error, sizeof(error));
    if (ring == NULL) fprintf(stderr, "  (no io_ring: %s)\n", error);
    for (int persistent = 0; persistent < 2; persistent++) {
        sweep(ring, FAULT_open, EIO, persistent);
        sweep(ring, FAULT_write, EIO, persistent);
        sweep(ring, FAULT_write, ENOSPC, persistent);
        sweep(ring, FAULT_write, EDQUOT, persistent);
        sweep(ring, FAULT_sync, EIO, persistent);
        sweep(ring, FAULT_read, EIO, persistent);
        sweep(ring, FAULT_submit, EAGAIN, persistent);
        sweep(ring, FAULT_alloc, ENOMEM, persistent);
    }
    if (ring != NULL) io_ring_destroy(ring);
}

int main(void) {
    struct stat shm;
    const char *parent = stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(directory, sizeof(directory), "%s/strata-blob-faults-%ld", parent, (long)getpid());
    char log_path[300];
    snprintf(log_path, sizeof(log_path), "%s.log", directory);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd >= 0) log_set_fd(log_fd);
    fprintf(stderr, "test_blob_faults: the log is in %s\n", log_path);
    uint32_t state = 12345;
    for (size_t i = 0; i < BLOB_LENGTH; i++) {
        state = state * 1103515245u + 12345u;
        expected[i] = (unsigned char)(state >> 16);
    }
    RUN_TEST(test_sweeps);
    rmdir(directory);
    int result = test_main_result();
    if (result == 0) unlink(log_path); /* kept when something failed */
    return result;
}
