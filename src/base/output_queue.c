#include "base/output_queue.h"

#include "base/metrics.h"

#include <stdlib.h>
#include <string.h>

/* One piece of a stream chunk, as its source added it. */
struct output_piece {
    struct output_piece *next;
    const unsigned char *data;
    size_t length;
    size_t sent;
    output_release_fn release;
    void *argument;
};

struct output_chunk {
    struct output_chunk *next;
    const unsigned char *data; /* copy chunks: bytes; references: the caller's bytes */
    size_t length;             /* bytes in the chunk (a stream: in the whole stream) */
    size_t sent;               /* bytes of the chunk already sent */
    size_t capacity;           /* copy chunks: size of bytes[]; 0 for the others */
    output_release_fn release; /* references only */
    void *release_argument;
    /* Stream chunks only: */
    bool stream;
    uint64_t added;              /* bytes the source has added so far */
    struct output_piece *pieces; /* unsent pieces, oldest first */
    struct output_piece *pieces_tail;
    void (*cancel)(void *source);
    void *source;
    unsigned char bytes[];
};

static void add_pending(struct output_queue *queue, size_t length, bool copied) {
    atomic_store_explicit(&queue->pending,
                          atomic_load_explicit(&queue->pending, memory_order_relaxed) + length,
                          memory_order_relaxed);
    if (copied) {
        size_t now = atomic_load_explicit(&queue->copied, memory_order_relaxed) + length;
        atomic_store_explicit(&queue->copied, now, memory_order_relaxed);
        /* Only the owner writes: a load and a store keep the maximum. */
        if (now > atomic_load_explicit(&queue->copied_peak, memory_order_relaxed))
            atomic_store_explicit(&queue->copied_peak, now, memory_order_relaxed);
    }
}

static void remove_pending(struct output_queue *queue, size_t length, bool copied) {
    atomic_store_explicit(&queue->pending,
                          atomic_load_explicit(&queue->pending, memory_order_relaxed) - length,
                          memory_order_relaxed);
    if (copied) {
        atomic_store_explicit(&queue->copied,
                              atomic_load_explicit(&queue->copied, memory_order_relaxed) - length,
                              memory_order_relaxed);
    }
}

void output_queue_init(struct output_queue *queue) {
    queue->head = NULL;
    queue->tail = NULL;
    atomic_init(&queue->pending, 0);
    atomic_init(&queue->copied, 0);
    atomic_init(&queue->copied_peak, 0);
    queue->failed = false;
}

static void link_chunk(struct output_queue *queue, struct output_chunk *chunk) {
    chunk->next = NULL;
    if (queue->tail != NULL) {
        queue->tail->next = chunk;
    } else {
        queue->head = chunk;
    }
    queue->tail = chunk;
}

unsigned char *output_queue_reserve(struct output_queue *queue, size_t length) {
    struct output_chunk *tail = queue->tail;
    if (tail != NULL && tail->capacity != 0 && tail->capacity - tail->length >= length) {
        return tail->bytes + tail->length;
    }
    size_t capacity = length > OUTPUT_CHUNK_SIZE ? length : OUTPUT_CHUNK_SIZE;
    struct output_chunk *chunk = malloc(sizeof(*chunk) + capacity);
    if (chunk == NULL) {
        queue->failed = true;
        metric_add(METRIC_allocation_failures, 1);
        return NULL;
    }
    memset(chunk, 0, sizeof(*chunk));
    chunk->data = chunk->bytes;
    chunk->capacity = capacity;
    link_chunk(queue, chunk);
    return chunk->bytes;
}

void output_queue_commit(struct output_queue *queue, size_t length) {
    queue->tail->length += length;
    add_pending(queue, length, true);
}

bool output_queue_append(struct output_queue *queue, const void *data, size_t length) {
    if (length == 0) return true;
    unsigned char *space = output_queue_reserve(queue, length);
    if (space == NULL) return false;
    memcpy(space, data, length);
    output_queue_commit(queue, length);
    return true;
}

bool output_queue_append_reference(struct output_queue *queue, const void *data, size_t length,
                                   output_release_fn release, void *argument) {
    struct output_chunk *chunk = malloc(sizeof(*chunk));
    if (chunk == NULL) {
        queue->failed = true;
        metric_add(METRIC_allocation_failures, 1);
        release(argument);
        return false;
    }
    memset(chunk, 0, sizeof(*chunk));
    chunk->data = data;
    chunk->length = length;
    chunk->release = release;
    chunk->release_argument = argument;
    link_chunk(queue, chunk);
    add_pending(queue, length, false);
    return true;
}

struct output_chunk *output_queue_append_stream(struct output_queue *queue, uint64_t length,
                                                void (*cancel)(void *source), void *source) {
    struct output_chunk *chunk = malloc(sizeof(*chunk));
    if (chunk == NULL) {
        queue->failed = true;
        metric_add(METRIC_allocation_failures, 1);
        return NULL;
    }
    memset(chunk, 0, sizeof(*chunk));
    chunk->length = (size_t)length;
    chunk->stream = true;
    chunk->cancel = cancel;
    chunk->source = source;
    link_chunk(queue, chunk);
    add_pending(queue, (size_t)length, false);
    return chunk;
}

bool output_stream_add(struct output_queue *queue, struct output_chunk *chunk, const void *data,
                       size_t length, output_release_fn release, void *argument) {
    struct output_piece *piece = malloc(sizeof(*piece));
    if (piece == NULL) {
        metric_add(METRIC_allocation_failures, 1);
        output_stream_fail(queue, chunk);
        return false;
    }
    piece->next = NULL;
    piece->data = data;
    piece->length = length;
    piece->sent = 0;
    piece->release = release;
    piece->argument = argument;
    if (chunk->pieces_tail != NULL) {
        chunk->pieces_tail->next = piece;
    } else {
        chunk->pieces = piece;
    }
    chunk->pieces_tail = piece;
    chunk->added += length;
    return true;
}

void output_stream_fail(struct output_queue *queue, struct output_chunk *chunk) {
    (void)chunk; /* its pieces still go out; nothing after it will */
    queue->failed = true;
}

/* Whether stream CHUNK has all its bytes. */
static bool stream_complete(const struct output_chunk *chunk) {
    return chunk->added >= chunk->length;
}

/* Releases and frees the unsent pieces of stream CHUNK. */
static void release_pieces(struct output_chunk *chunk) {
    struct output_piece *piece = chunk->pieces;
    chunk->pieces = chunk->pieces_tail = NULL;
    while (piece != NULL) {
        struct output_piece *next = piece->next;
        piece->release(piece->argument);
        free(piece);
        piece = next;
    }
}

int output_queue_iovecs(const struct output_queue *queue, struct iovec *iovecs, int maximum) {
    int count = 0;
    for (struct output_chunk *chunk = queue->head; chunk != NULL && count < maximum;
         chunk = chunk->next) {
        if (chunk->stream) {
            for (struct output_piece *piece = chunk->pieces; piece != NULL && count < maximum;
                 piece = piece->next) {
                iovecs[count].iov_base = (void *)(piece->data + piece->sent);
                iovecs[count].iov_len = piece->length - piece->sent;
                count++;
            }
            if (!stream_complete(chunk)) break; /* nothing after it goes before it */
            continue;
        }
        if (chunk->length == chunk->sent) continue;
        iovecs[count].iov_base = (void *)(chunk->data + chunk->sent);
        iovecs[count].iov_len = chunk->length - chunk->sent;
        count++;
    }
    return count;
}

/* Frees or releases a chunk that has left the queue; an unfinished stream's source is
 * told first. */
static void drop_chunk(struct output_chunk *chunk) {
    if (chunk->stream) {
        if (!stream_complete(chunk) && chunk->cancel != NULL) chunk->cancel(chunk->source);
        release_pieces(chunk);
    }
    if (chunk->release != NULL) chunk->release(chunk->release_argument);
    free(chunk);
}

/* Marks up to LENGTH bytes of stream CHUNK (the head) as sent. Returns the bytes taken;
 * sets *FINISHED when the whole stream has been sent. */
static size_t consume_stream(struct output_queue *queue, struct output_chunk *chunk, size_t length,
                             bool *finished) {
    size_t taken_total = 0;
    while (length > 0 && chunk->pieces != NULL) {
        struct output_piece *piece = chunk->pieces;
        size_t available = piece->length - piece->sent;
        size_t taken = length < available ? length : available;
        piece->sent += taken;
        chunk->sent += taken;
        length -= taken;
        taken_total += taken;
        remove_pending(queue, taken, false);
        if (piece->sent < piece->length) break;
        chunk->pieces = piece->next;
        if (chunk->pieces == NULL) chunk->pieces_tail = NULL;
        /* The source may add its next piece from here: the list is consistent. */
        piece->release(piece->argument);
        free(piece);
    }
    *finished = chunk->pieces == NULL && stream_complete(chunk);
    return taken_total;
}

void output_queue_consume(struct output_queue *queue, size_t length) {
    while (queue->head != NULL) {
        struct output_chunk *chunk = queue->head;
        if (chunk->stream) {
            bool finished;
            length -= consume_stream(queue, chunk, length, &finished);
            if (!finished) break;
            queue->head = chunk->next;
            if (queue->head == NULL) queue->tail = NULL;
            free(chunk);
            continue;
        }
        if (length == 0) break;
        size_t available = chunk->length - chunk->sent;
        size_t taken = length < available ? length : available;
        chunk->sent += taken;
        length -= taken;
        remove_pending(queue, taken, chunk->capacity != 0);
        if (chunk->sent < chunk->length) break;
        if (chunk == queue->tail && chunk->capacity == OUTPUT_CHUNK_SIZE) {
            /* Keep the last standard chunk for the next reply instead of freeing it. */
            chunk->length = 0;
            chunk->sent = 0;
            break;
        }
        queue->head = chunk->next;
        if (queue->head == NULL) queue->tail = NULL;
        drop_chunk(chunk);
    }
}

void output_queue_clear(struct output_queue *queue) {
    struct output_chunk *chunk = queue->head;
    while (chunk != NULL) {
        struct output_chunk *next = chunk->next;
        drop_chunk(chunk);
        chunk = next;
    }
    queue->head = NULL;
    queue->tail = NULL;
    atomic_store_explicit(&queue->pending, 0, memory_order_relaxed);
    atomic_store_explicit(&queue->copied, 0, memory_order_relaxed);
}

size_t output_queue_pending(const struct output_queue *queue) {
    return atomic_load_explicit(&queue->pending, memory_order_relaxed);
}

size_t output_queue_copied(const struct output_queue *queue) {
    return atomic_load_explicit(&queue->copied, memory_order_relaxed);
}

size_t output_queue_copied_peak(const struct output_queue *queue) {
    return atomic_load_explicit(&queue->copied_peak, memory_order_relaxed);
}
