#include "base/output_queue.h"

#include <stdlib.h>
#include <string.h>

struct output_chunk {
    struct output_chunk *next;
    const unsigned char *data; /* copy chunks: bytes; references: the caller's bytes */
    size_t length;             /* bytes in the chunk */
    size_t sent;               /* bytes of the chunk already sent */
    size_t capacity;           /* copy chunks: size of bytes[]; 0 for references */
    output_release_fn release; /* references only */
    void *release_argument;
    unsigned char bytes[];
};

static void add_pending(struct output_queue *queue, size_t length, bool copied) {
    atomic_store_explicit(&queue->pending,
                          atomic_load_explicit(&queue->pending, memory_order_relaxed) + length,
                          memory_order_relaxed);
    if (copied) {
        atomic_store_explicit(&queue->copied,
                              atomic_load_explicit(&queue->copied, memory_order_relaxed) + length,
                              memory_order_relaxed);
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
        return NULL;
    }
    chunk->data = chunk->bytes;
    chunk->length = 0;
    chunk->sent = 0;
    chunk->capacity = capacity;
    chunk->release = NULL;
    chunk->release_argument = NULL;
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
        release(argument);
        return false;
    }
    chunk->data = data;
    chunk->length = length;
    chunk->sent = 0;
    chunk->capacity = 0;
    chunk->release = release;
    chunk->release_argument = argument;
    link_chunk(queue, chunk);
    add_pending(queue, length, false);
    return true;
}

int output_queue_iovecs(const struct output_queue *queue, struct iovec *iovecs, int maximum) {
    int count = 0;
    for (struct output_chunk *chunk = queue->head; chunk != NULL && count < maximum;
         chunk = chunk->next) {
        if (chunk->length == chunk->sent) continue;
        iovecs[count].iov_base = (void *)(chunk->data + chunk->sent);
        iovecs[count].iov_len = chunk->length - chunk->sent;
        count++;
    }
    return count;
}

/* Frees or releases a chunk that has left the queue. */
static void drop_chunk(struct output_chunk *chunk) {
    if (chunk->release != NULL) chunk->release(chunk->release_argument);
    free(chunk);
}

void output_queue_consume(struct output_queue *queue, size_t length) {
    while (length > 0 && queue->head != NULL) {
        struct output_chunk *chunk = queue->head;
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
