/* The bytes a connection still has to send, in order.
 *
 * A queue is a chain of chunks. A copy chunk owns bytes appended to it (small
 * replies, headers). A reference chunk points at bytes owned by someone else (a
 * stored value) and calls its release function once those bytes have been sent or
 * the queue is cleared; this is how a large value is sent with writev straight
 * from where it is stored, without copying it. A stream chunk stands for bytes that a
 * source (a value read from flash piece by piece) adds later: the queue sends what
 * comes before it, then its pieces as they arrive, and nothing after it until the
 * stream is complete; replies queued after a stream keep their order.
 *
 * One thread owns a queue. `pending`, `copied` and `copied_peak` may be read from other
 * threads (CLIENT LIST) through output_queue_pending(), output_queue_copied() and
 * output_queue_copied_peak(). */
#ifndef STRATA_BASE_OUTPUT_QUEUE_H
#define STRATA_BASE_OUTPUT_QUEUE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Size of a standard copy chunk. */
#define OUTPUT_CHUNK_SIZE (16 * 1024)

typedef void (*output_release_fn)(void *argument);

struct output_chunk;
struct output_piece;

struct output_queue {
    struct output_chunk *head;
    struct output_chunk *tail;
    _Atomic size_t pending;     /* bytes not yet sent: copied, referenced, and streams' to come */
    _Atomic size_t copied;      /* bytes held in copy chunks: what the client output limit counts */
    _Atomic size_t copied_peak; /* the most COPIED has been since the queue was made */
    bool failed;                /* an append could not allocate, or a stream failed: the
                                   connection must be closed */
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

/* Appends a stream chunk of LENGTH bytes that the stream's source adds later with
 * output_stream_add(). If the queue is cleared before the stream is complete, CANCEL(
 * SOURCE) is called first (the source must not touch the queue or the chunk after it),
 * then every piece is released. Returns the chunk, or NULL (and sets failed) on
 * allocation failure; CANCEL is then not called. */
struct output_chunk *output_queue_append_stream(struct output_queue *queue, uint64_t length,
                                                void (*cancel)(void *source), void *source);

/* Adds the next LENGTH bytes of stream CHUNK, at DATA and not copied: RELEASE(ARGUMENT)
 * is called once they are sent or the queue is cleared. The pieces of a stream must add
 * up to its length. Returns false if the piece cannot be recorded (out of memory): the
 * queue has then failed, RELEASE is never called and the bytes stay the caller's (the
 * chunk stays unfinished, so CANCEL still comes when the queue is cleared). */
bool output_stream_add(struct output_queue *queue, struct output_chunk *chunk, const void *data,
                       size_t length, output_release_fn release, void *argument);

/* Ends stream CHUNK short: its source cannot give the rest. The queue has failed: what
 * came before the stream and its pieces so far may still be sent, but the connection is
 * to be closed, since the reply cannot be completed. */
void output_stream_fail(struct output_queue *queue, struct output_chunk *chunk);

/* Fills IOVECS (at most MAXIMUM entries) with the unsent bytes from the front of the
 * queue, up to the first stream chunk still waiting for pieces. Returns the number of
 * entries filled: 0 with bytes pending means the queue waits for a stream's source. */
int output_queue_iovecs(const struct output_queue *queue, struct iovec *iovecs, int maximum);

/* Marks LENGTH bytes from the front as sent, releasing finished chunks and pieces. */
void output_queue_consume(struct output_queue *queue, size_t length);

/* Drops everything not yet sent, cancelling streams, releasing references and freeing
 * all storage. */
void output_queue_clear(struct output_queue *queue);

/* Unsent bytes (streams' bytes still to come included). Safe from any thread. */
size_t output_queue_pending(const struct output_queue *queue);

/* Unsent bytes held in copy chunks. Safe to call from any thread. */
size_t output_queue_copied(const struct output_queue *queue);

/* The most bytes the copy chunks have held at once since output_queue_init() (clearing
 * the queue does not lower it). Safe to call from any thread. */
size_t output_queue_copied_peak(const struct output_queue *queue);

#endif
