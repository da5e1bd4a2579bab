/* A thin layer over liburing: one io_uring per thread that does I/O (each network
 * worker, the flash writer), with completions delivered to callbacks.
 *
 * The caller embeds a struct io_ring_operation in its own request and gets it back in
 * done() with the operation's result (bytes moved, or a negative errno). Callbacks run
 * on the ring's thread, inside io_ring_complete() or io_ring_wait(), never inside a
 * submission call. A ring is used by one thread only.
 *
 * A worker's event loop polls io_ring_event_fd(), which becomes readable when
 * completions are waiting, and then calls io_ring_complete(). */
#ifndef STRATA_BASE_IO_RING_H
#define STRATA_BASE_IO_RING_H

#include <stddef.h>
#include <stdint.h>

struct io_ring;

struct io_ring_operation {
    /* Called once with the result: bytes read or written, 0 for fsync, or -errno. */
    void (*done)(struct io_ring_operation *operation, int result);
    int kind; /* set by the ring: what was submitted (read, write or sync) */
};

/* Creates a ring with room for ENTRIES operations in flight. Returns NULL with a reason
 * in ERROR (io_uring unavailable or disabled, out of memory). */
struct io_ring *io_ring_create(unsigned entries, char *error, size_t error_size);

/* Waits for every operation in flight (running their callbacks), then frees RING. */
void io_ring_destroy(struct io_ring *ring);

/* A descriptor that becomes readable when completions are waiting (an eventfd). */
int io_ring_event_fd(const struct io_ring *ring);

/* Submits a read of LENGTH bytes at OFFSET of FD into BUFFER. Returns 0 (done() will be
 * called) or a negative errno (it will not, and the kernel will never touch BUFFER or
 * OPERATION: a submission that failed is turned into a no-op before it can be taken). */
int io_ring_read(struct io_ring *ring, int fd, void *buffer, size_t length, uint64_t offset,
                 struct io_ring_operation *operation);

/* Submits a write of LENGTH bytes from BUFFER at OFFSET of FD. Same contract. */
int io_ring_write(struct io_ring *ring, int fd, const void *buffer, size_t length, uint64_t offset,
                  struct io_ring_operation *operation);

/* Submits an fdatasync of FD. Same contract. */
int io_ring_sync(struct io_ring *ring, int fd, struct io_ring_operation *operation);

/* Runs the callbacks of every completed operation without waiting. Returns how many. */
unsigned io_ring_complete(struct io_ring *ring);

/* Submits whatever is still queued, waits until at least one operation completes (if
 * any is in flight) and runs the callbacks of all completed ones. Returns how many. */
unsigned io_ring_wait(struct io_ring *ring);

/* Operations submitted whose callbacks have not run yet. */
unsigned io_ring_in_flight(const struct io_ring *ring);

/* The ring of the calling thread, or NULL when it has none. Set by the thread that owns
 * the ring; the engine submits flash reads to it. */
struct io_ring *io_ring_current(void);
void io_ring_set_current(struct io_ring *ring);

#endif
