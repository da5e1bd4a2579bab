/* io_ring over liburing (see io_ring.h). */
#include "base/io_ring.h"

#include "base/checks.h"
#include "base/fault.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct io_ring {
    struct io_uring uring;
    int event_fd;
    unsigned in_flight;
    _Atomic uint64_t owner; /* check_thread() of the thread using it (checking builds) */
};

/* The rule "a ring is used by one thread only": the first thread to use it owns it. */
static void assert_owner(struct io_ring *ring) {
    if (!STRATA_CHECKING) return;
    uint64_t expected = 0;
    atomic_compare_exchange_strong_explicit(&ring->owner, &expected, check_thread(),
                                            memory_order_relaxed, memory_order_relaxed);
    STRATA_ASSERT(atomic_load_explicit(&ring->owner, memory_order_relaxed) == check_thread());
}

static _Thread_local struct io_ring *current_ring;

struct io_ring *io_ring_current(void) {
    return current_ring;
}

void io_ring_set_current(struct io_ring *ring) {
    current_ring = ring;
}

struct io_ring *io_ring_create(unsigned entries, char *error, size_t error_size) {
    struct io_ring *ring = calloc(1, sizeof(*ring));
    if (ring == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    int result = io_uring_queue_init(entries, &ring->uring, 0);
    if (result < 0) {
        snprintf(error, error_size, "io_uring_queue_init: %s", strerror(-result));
        free(ring);
        return NULL;
    }
    ring->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ring->event_fd < 0 || io_uring_register_eventfd(&ring->uring, ring->event_fd) < 0) {
        snprintf(error, error_size, "io_uring eventfd: %s", strerror(errno));
        if (ring->event_fd >= 0) close(ring->event_fd);
        io_uring_queue_exit(&ring->uring);
        free(ring);
        return NULL;
    }
    return ring;
}

void io_ring_destroy(struct io_ring *ring) {
    if (ring == NULL) return;
    /* Its thread has stopped: whoever destroys it now waits for what is in flight. */
    atomic_store_explicit(&ring->owner, check_thread(), memory_order_relaxed);
    while (ring->in_flight > 0)
        io_ring_wait(ring);
    io_uring_queue_exit(&ring->uring);
    close(ring->event_fd);
    if (current_ring == ring) current_ring = NULL;
    free(ring);
}

int io_ring_event_fd(const struct io_ring *ring) {
    return ring->event_fd;
}

/* A free submission entry, submitting what is queued to make room if needed. */
static struct io_uring_sqe *next_entry(struct io_ring *ring) {
    struct io_uring_sqe *entry = io_uring_get_sqe(&ring->uring);
    if (entry == NULL) {
        io_uring_submit(&ring->uring);
        entry = io_uring_get_sqe(&ring->uring);
    }
    return entry;
}

enum { KIND_READ = 1, KIND_WRITE, KIND_SYNC };

/* Attaches OPERATION to ENTRY and submits it. When the submission fails the entry is
 * still in the submission queue, where the kernel would take it with the next one and
 * read or write memory the caller believes it owns again: it becomes a no-op that no
 * callback waits for. */
static int submit(struct io_ring *ring, struct io_uring_sqe *entry,
                  struct io_ring_operation *operation, int kind) {
    assert_owner(ring);
    operation->kind = kind;
    io_uring_sqe_set_data(entry, operation);
    int injected = fault_inject(FAULT_submit);
    int result = injected != 0 ? -injected : io_uring_submit(&ring->uring);
    if (result < 0) {
        io_uring_prep_nop(entry);
        io_uring_sqe_set_data(entry, NULL);
        return result;
    }
    ring->in_flight++;
    return 0;
}

int io_ring_read(struct io_ring *ring, int fd, void *buffer, size_t length, uint64_t offset,
                 struct io_ring_operation *operation) {
    struct io_uring_sqe *entry = next_entry(ring);
    if (entry == NULL) return -EBUSY;
    io_uring_prep_read(entry, fd, buffer, (unsigned)length, offset);
    return submit(ring, entry, operation, KIND_READ);
}

int io_ring_write(struct io_ring *ring, int fd, const void *buffer, size_t length, uint64_t offset,
                  struct io_ring_operation *operation) {
    struct io_uring_sqe *entry = next_entry(ring);
    if (entry == NULL) return -EBUSY;
    io_uring_prep_write(entry, fd, buffer, (unsigned)length, offset);
    return submit(ring, entry, operation, KIND_WRITE);
}

int io_ring_sync(struct io_ring *ring, int fd, struct io_ring_operation *operation) {
    struct io_uring_sqe *entry = next_entry(ring);
    if (entry == NULL) return -EBUSY;
    io_uring_prep_fsync(entry, fd, IORING_FSYNC_DATASYNC);
    return submit(ring, entry, operation, KIND_SYNC);
}

/* The result an operation reports: the kernel's, or an injected failure. */
static int completion_result(const struct io_ring_operation *operation, int result) {
    if (result < 0) return result;
    enum fault_site site = operation->kind == KIND_READ    ? FAULT_read
                           : operation->kind == KIND_WRITE ? FAULT_write
                                                           : FAULT_sync;
    int injected = fault_inject(site);
    return injected != 0 ? -injected : result;
}

unsigned io_ring_complete(struct io_ring *ring) {
    assert_owner(ring);
    uint64_t ignored;
    ssize_t drained = read(ring->event_fd, &ignored, sizeof(ignored));
    (void)drained;
    unsigned count = 0;
    struct io_uring_cqe *completion;
    while (io_uring_peek_cqe(&ring->uring, &completion) == 0) {
        struct io_ring_operation *operation = io_uring_cqe_get_data(completion);
        int result = completion->res;
        io_uring_cqe_seen(&ring->uring, completion);
        if (operation == NULL) continue; /* a failed submission's no-op */
        ring->in_flight--;
        count++;
        operation->done(operation, completion_result(operation, result));
    }
    return count;
}

unsigned io_ring_wait(struct io_ring *ring) {
    if (ring->in_flight == 0) return 0;
    for (;;) {
        /* Submits entries a failed submission left queued, so the wait can end. */
        int result = io_uring_submit_and_wait(&ring->uring, 1);
        if (result >= 0 || (result != -EINTR && result != -EAGAIN && result != -EBUSY)) break;
        if (result != -EINTR) {
            /* The completion queue is full: reaping it makes room. */
            unsigned reaped = io_ring_complete(ring);
            if (reaped > 0) return reaped;
        }
    }
    return io_ring_complete(ring);
}

unsigned io_ring_in_flight(const struct io_ring *ring) {
    return ring->in_flight;
}
