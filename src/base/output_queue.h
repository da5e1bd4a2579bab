/* The bytes a connection still has to send, in order.
 *
 * A queue is a chain of chunks. A copy chunk owns bytes appended to it (small
 * replies, headers). A reference chunk points at bytes owned by someone else (a
 * stored value) and calls its release function once those bytes have been sent or
 * the queue is cleared; this is how a large value is sent with writev straight
 * from where it is stored, without copying it.
 *
 * One thread owns a queue. `pending` and `copied` may be read from other threads
 * (CLIENT LIST) through output_queue_pending() and output_queue_copied(). */
#ifndef STRATA_BASE_OUTPUT_QUEUE_H
#define STRATA_BASE_OUTPUT_QUEUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

/* Size of a standard copy chunk. */
#define OUTPUT_CHUNK_SIZE (16 * 1024)

typedef void (*output_release_fn)(void *argument);

struct output_chunk;

struct output_queue {
    struct output_chunk *head;
    struct output_chunk *tail;
    _Atomic size_t pending; /* bytes not yet sent, copied and referenced */
    _Atomic size_t copied;  /* bytes held in copy chunks: what the client output limit counts */
    bool failed;            /* an append could not allocate; the connection must be closed */
};

/* Prepares an empty queue. */
void output_queue_init(struct output_queue *queue);

/* Appends a copy of LENGTH bytes. Returns false (and sets failed) on allocation failure. */
bool output_queue_append(struct output_queue *queue, const void *data, size_t length);

/* Returns a pointer to at least LENGTH contiguous writable bytes at the end of the
 * queue, for the caller to fill and then publish with output_queue_commit(). Returns
 * NULL (and sets failed) on allocation failure. */
unsigned char *output_queue_reserve(struct output_queue *queue, size_t length);

/* Publishes LENGTH bytes written into the space returned by output_queue_reserve(). */
void output_queue_commit(struct output_queue *queue, size_t length);

/* Appends LENGTH bytes at DATA without copying them. The queue takes over the
 * caller's reference: RELEASE(ARGUMENT) is called exactly once, after the bytes are
 * sent, when the queue is cleared, or at once if the append fails. Returns false
 * (and sets failed) on failure. */
bool output_queue_append_reference(struct output_queue *queue, const void *data, size_t length,
                                   output_release_fn release, void *argument);

/* Fills IOVECS (at most MAXIMUM entries) with the unsent bytes from the front of the
 * queue. Returns the number of entries filled. */
int output_queue_iovecs(const struct output_queue *queue, struct iovec *iovecs, int maximum);

/* Marks LENGTH bytes from the front as sent, releasing finished chunks. */
void output_queue_consume(struct output_queue *queue, size_t length);

/* Drops everything not yet sent, releasing references and freeing all storage. */
void output_queue_clear(struct output_queue *queue);

/* Unsent bytes. Safe to call from any thread. */
size_t output_queue_pending(const struct output_queue *queue);

/* Unsent bytes held in copy chunks. Safe to call from any thread. */
size_t output_queue_copied(const struct output_queue *queue);

#endif
