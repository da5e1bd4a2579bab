/* Streams: values too large to bring into DRAM whole, sent from flash piece by piece
 * (store.h, "streams"). A stream reads its record in pieces of up to 2 MiB (a sixteenth
 * of the DRAM budget when that is smaller, at least 256 KiB), in
 * order, one read in flight at a time, into two aligned buffers charged to the DRAM
 * budget: while one piece waits in a connection's output queue the next is read. Every
 * piece goes through the record's CRC32C; the piece that holds the last byte asked for
 * is kept back until the whole record has passed, so a damaged record never reaches a
 * client whole (its connection is closed instead, and the key dropped).
 *
 * Everything happens on the thread that opened the stream: its io_ring's completions
 * and the output queue's releases both run there. Without a ring (a thread that is not
 * a network worker) the reads are synchronous. */
#include "base/crc32c.h"
#include "base/fault.h"
#include "base/io_ring.h"
#include "base/log.h"
#include "base/output_queue.h"
#include "engine/flash_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bytes of the record read at a time: at most, and at least. */
#define STREAM_PIECE_MAX (2u << 20)
#define STREAM_PIECE_MIN (256u << 10)
#define STREAM_BUFFERS   2

enum buffer_state {
    BUFFER_FREE,
    BUFFER_READING,
    BUFFER_SENDING, /* its piece is in the output queue */
    BUFFER_HELD,    /* read and checked so far, kept back (the head, or the last piece) */
};

struct stream_buffer {
    struct io_ring_operation operation; /* first: completions find the buffer from it */
    struct store_stream *stream;
    void *allocation; /* aligned, stream->piece_size bytes */
    enum buffer_state state;
    uint64_t piece;   /* which piece it holds */
    size_t length;    /* bytes of the piece read */
    size_t sent_from; /* SENDING/HELD: where its bytes for the client start */
    size_t sent_length;
};

enum stream_mode { MODE_OPENING, MODE_IDLE, MODE_SEND, MODE_COPY };

struct store_stream {
    struct flash *flash;
    struct segment *segment; /* a reference: the file stays open while the stream reads */
    uint64_t hash;
    uint32_t segment_id;
    uint32_t offset; /* of the record in its segment */
    unsigned char *key;
    uint32_t key_length;
    uint64_t value_length;
    uint64_t value_offset;  /* where the value starts in the record */
    uint64_t covered;       /* record bytes the CRC covers (header to value end) */
    uint64_t aligned_start; /* file offset of piece 0 */
    size_t piece_size;      /* bytes read at a time */
    uint64_t record_delta;  /* where the record starts in piece 0 */
    uint64_t pieces;        /* pieces to read */
    uint64_t next_piece;    /* the next to read */
    uint64_t charge;        /* bytes charged to the budget for the buffers */
    struct stream_buffer buffers[STREAM_BUFFERS];
    uint32_t running_crc;
    uint64_t crc_done; /* record bytes through the CRC so far */
    unsigned char stored_crc[4];
    bool reading; /* a read is in flight */
    bool pumping; /* inside pump(): a synchronous completion does not re-enter it */
    bool cancelled;
    bool failed;
    bool checked; /* the whole record passed its CRC */
    enum stream_mode mode;
    /* Opening: who gets the stream. */
    store_read_done done;
    void *context;
    bool held;
    enum store_status open_status;
    /* The bytes [first, end) of the value go to the client. */
    uint64_t first;
    uint64_t end;
    /* MODE_SEND */
    struct output_queue *queue;
    struct output_chunk *chunk;
    void (*wake)(void *context);
    void *wake_context;
    bool woken;     /* a piece was added since the last wake */
    bool quiet;     /* inside begin(): no wake (the caller resumes the connection) and no free */
    bool attached;  /* its chunk is in the queue, unfinished: the queue may cancel it */
    uint64_t added; /* bytes given to the chunk so far */
    /* MODE_COPY */
    unsigned char *destination;
    store_copy_done copy_done;
    void *copy_context;
};

static void pump(struct store_stream *stream);

/* ---- life ----------------------------------------------------------------------- */

static void stream_free(struct store_stream *stream) {
    for (int i = 0; i < STREAM_BUFFERS; i++)
        free(stream->buffers[i].allocation);
    FLASH_INDEX(stream->flash)->uncharge(FLASH_OWNER(stream->flash), stream->charge);
    if (stream->segment != NULL) segment_release_reference(stream->segment);
    free(stream->key);
    free(stream);
}

/* Whether nothing refers to STREAM any more: no read in flight, no piece in a queue. */
static bool stream_idle(const struct store_stream *stream) {
    if (stream->reading) return false;
    for (int i = 0; i < STREAM_BUFFERS; i++) {
        if (stream->buffers[i].state == BUFFER_SENDING) return false;
    }
    return true;
}

/* Frees STREAM once it is done with (cancelled, failed or complete) and idle, and not
 * inside begin() (which frees it on its way out, if it is still done with then). */
static void free_if_finished(struct store_stream *stream) {
    bool finished = stream->cancelled || stream->failed ||
                    (stream->checked && stream->next_piece == stream->pieces);
    /* An unfinished chunk in a queue refers to the stream until the queue cancels it. */
    if (finished && !stream->pumping && !stream->quiet && !stream->attached &&
        stream_idle(stream) && stream->mode != MODE_OPENING) {
        stream_free(stream);
    }
}

/* ---- pieces --------------------------------------------------------------------- */

/* The record bytes piece N of STREAM holds: [*FROM, *TO) in record offsets. */
static void piece_span(const struct store_stream *stream, uint64_t piece, size_t length,
                       uint64_t *from, uint64_t *to) {
    uint64_t file_start = piece * stream->piece_size; /* from aligned_start */
    uint64_t record_start =
        file_start > stream->record_delta ? file_start - stream->record_delta : 0;
    uint64_t record_end =
        file_start + length > stream->record_delta ? file_start + length - stream->record_delta : 0;
    *from = record_start;
    *to = record_end;
}

/* Where record offset R sits in the buffer of piece N. */
static size_t buffer_index(const struct store_stream *stream, uint64_t piece, uint64_t record) {
    return (size_t)(record + stream->record_delta - piece * stream->piece_size);
}

/* Runs a finished piece through the CRC (pieces arrive in order) and picks up the
 * stored CRC at the record's end. */
static void checksum_piece(struct store_stream *stream, struct stream_buffer *buffer) {
    uint64_t from, to;
    piece_span(stream, buffer->piece, buffer->length, &from, &to);
    const unsigned char *data = (const unsigned char *)buffer->allocation;
    uint64_t crc_from = from > stream->crc_done ? from : stream->crc_done;
    uint64_t crc_to = to < stream->covered ? to : stream->covered;
    if (crc_to > crc_from) {
        stream->running_crc =
            crc32c_update(stream->running_crc, data + buffer_index(stream, buffer->piece, crc_from),
                          (size_t)(crc_to - crc_from));
        stream->crc_done = crc_to;
    }
    for (uint64_t i = 0; i < 4; i++) {
        uint64_t at = stream->covered + i;
        if (at >= from && at < to) {
            stream->stored_crc[i] = data[buffer_index(stream, buffer->piece, at)];
        }
    }
}

/* The bytes of piece BUFFER that go to the client: sets sent_from/sent_length. */
static void client_part(struct store_stream *stream, struct stream_buffer *buffer) {
    uint64_t from, to;
    piece_span(stream, buffer->piece, buffer->length, &from, &to);
    uint64_t want_from = stream->value_offset + stream->first;
    uint64_t want_to = stream->value_offset + stream->end;
    uint64_t part_from = from > want_from ? from : want_from;
    uint64_t part_to = to < want_to ? to : want_to;
    if (part_to <= part_from) {
        buffer->sent_length = 0;
        return;
    }
    buffer->sent_from = buffer_index(stream, buffer->piece, part_from);
    buffer->sent_length = (size_t)(part_to - part_from);
}

/* Whether piece BUFFER holds the last byte the client asked for. */
static bool holds_last_byte(const struct store_stream *stream, const struct stream_buffer *buffer) {
    uint64_t from, to;
    piece_span(stream, buffer->piece, buffer->length, &from, &to);
    uint64_t last = stream->value_offset + stream->end; /* one past the last byte */
    return last > from && last <= to;
}

/* The output queue sent piece ARGUMENT's bytes (or was cleared). */
static void piece_sent(void *argument) {
    struct stream_buffer *buffer = argument;
    struct store_stream *stream = buffer->stream;
    buffer->state = BUFFER_FREE;
    if (stream->cancelled || stream->failed) {
        free_if_finished(stream);
        return;
    }
    pump(stream);
}

/* The queue was cleared: the stream stops; the queue releases its pieces next. */
static void stream_cancelled(void *source) {
    struct store_stream *stream = source;
    stream->cancelled = true;
    stream->attached = false;
    stream->queue = NULL;
    stream->chunk = NULL;
    for (int i = 0; i < STREAM_BUFFERS; i++) {
        if (stream->buffers[i].state == BUFFER_HELD) stream->buffers[i].state = BUFFER_FREE;
    }
    free_if_finished(stream); /* only when no piece waits in the queue being cleared */
}

/* Gives piece BUFFER's client bytes to the destination: the queue (where it stays until
 * sent) or the copy target (then it is free at once). */
static void deliver(struct store_stream *stream, struct stream_buffer *buffer) {
    if (buffer->sent_length == 0) {
        buffer->state = BUFFER_FREE;
        return;
    }
    if (stream->mode == MODE_COPY) {
        uint64_t from, to;
        piece_span(stream, buffer->piece, buffer->length, &from, &to);
        uint64_t value_at = (buffer->piece * stream->piece_size + buffer->sent_from) -
                            stream->record_delta - stream->value_offset;
        memcpy(stream->destination + (value_at - stream->first),
               (const unsigned char *)buffer->allocation + buffer->sent_from, buffer->sent_length);
        buffer->state = BUFFER_FREE;
        return;
    }
    stream->woken = true;
    if (!output_stream_add(stream->queue, stream->chunk,
                           (const unsigned char *)buffer->allocation + buffer->sent_from,
                           buffer->sent_length, piece_sent, buffer)) {
        /* The queue has failed and its chunk stays unfinished: the queue cancels the
         * stream when it is cleared (the connection closes), so it stays attached. */
        buffer->state = BUFFER_FREE;
        stream->failed = true;
        return;
    }
    buffer->state = BUFFER_SENDING;
    stream->added += buffer->sent_length;
    if (stream->added == stream->end - stream->first) {
        stream->attached = false; /* complete: the queue will not cancel it any more */
    }
}

/* The record failed (a read error, or its CRC): tells whoever waits, and drops the key
 * when the record is damaged. */
static void stream_failed(struct store_stream *stream, enum store_status status) {
    stream->failed = true;
    if (status == STORE_NOT_FOUND) {
        atomic_fetch_add_explicit(&stream->flash->tier.counters.checksum_failures, 1,
                                  memory_order_relaxed);
        char quoted[256];
        log_event(LOG_ERROR, "flash_checksum_failed", "key=%s segment=%u offset=%u during=stream",
                  log_quote(quoted, sizeof(quoted), (const char *)stream->key, stream->key_length),
                  stream->segment_id, stream->offset);
        FLASH_INDEX(stream->flash)
            ->drop_damaged(FLASH_OWNER(stream->flash), stream->hash, stream->key,
                           stream->key_length, stream->segment_id, stream->offset);
    }
    for (int i = 0; i < STREAM_BUFFERS; i++) {
        if (stream->buffers[i].state == BUFFER_HELD) stream->buffers[i].state = BUFFER_FREE;
    }
    if (stream->mode == MODE_SEND && stream->queue != NULL) {
        output_stream_fail(stream->queue, stream->chunk);
        stream->woken = true;
    } else if (stream->mode == MODE_COPY) {
        stream->copy_done(stream->copy_context,
                          status == STORE_NOT_FOUND ? STORE_IO_ERROR : status);
    }
}

/* A piece has been read (in order): checks it and passes it on. */
static void piece_read(struct store_stream *stream, struct stream_buffer *buffer) {
    checksum_piece(stream, buffer);
    client_part(stream, buffer);
    bool last_piece = buffer->piece + 1 == stream->pieces;
    if (last_piece) {
        uint32_t stored;
        memcpy(&stored, stream->stored_crc, sizeof(stored));
        if (crc32c_finish(stream->running_crc) != stored) {
            buffer->state = BUFFER_FREE;
            stream_failed(stream, STORE_NOT_FOUND);
            return;
        }
        stream->checked = true;
    }
    if (holds_last_byte(stream, buffer) && !stream->checked) {
        buffer->state = BUFFER_HELD; /* until the rest of the record has passed */
        return;
    }
    deliver(stream, buffer);
    if (stream->checked) {
        /* The record passed: a piece kept back goes now. */
        for (int i = 0; i < STREAM_BUFFERS; i++) {
            if (stream->buffers[i].state != BUFFER_HELD) continue;
            if (stream->failed) {
                stream->buffers[i].state = BUFFER_FREE;
            } else {
                deliver(stream, &stream->buffers[i]);
            }
        }
        if (stream->mode == MODE_COPY) stream->copy_done(stream->copy_context, STORE_OK);
    }
}

/* Checks piece 0 (the head): the record's header, key and lengths. */
static bool head_valid(struct store_stream *stream, const struct stream_buffer *buffer) {
    const unsigned char *record = (const unsigned char *)buffer->allocation + stream->record_delta;
    if (buffer->length <
        stream->record_delta + sizeof(struct flash_record_header) + stream->key_length) {
        return false;
    }
    struct flash_record_header header;
    memcpy(&header, record, sizeof(header));
    return flash_header_valid(&header, record + sizeof(header), stream->segment->size) &&
           header.key_length == stream->key_length && header.value_length == stream->value_length &&
           !(header.flags & FLASH_FLAG_TOMBSTONE) &&
           memcmp(record + sizeof(header), stream->key, stream->key_length) == 0;
}

static void read_finished(struct io_ring_operation *operation, int result);

/* Reads piece NEXT_PIECE into BUFFER: through the thread's ring (read_finished() runs
 * later), or without one at once (read_finished() has run when this returns). Returns
 * 0, or the negative errno of a submission that failed (nothing ran; BUFFER is free). */
static int start_read(struct store_stream *stream, struct stream_buffer *buffer) {
    uint64_t file_offset = stream->aligned_start + stream->next_piece * stream->piece_size;
    uint64_t read_end = stream->aligned_start + stream->record_delta + stream->covered + 4;
    read_end = (read_end + FLASH_BLOCK - 1) & ~(uint64_t)(FLASH_BLOCK - 1);
    size_t length = read_end - file_offset < stream->piece_size ? (size_t)(read_end - file_offset)
                                                                : stream->piece_size;
    buffer->piece = stream->next_piece;
    buffer->length = length;
    buffer->operation.done = read_finished;
    struct io_ring *ring = io_ring_current();
    if (ring != NULL) {
        int submitted = io_ring_read(ring, stream->segment->fd, buffer->allocation, length,
                                     file_offset, &buffer->operation);
        if (submitted != 0) return submitted;
        stream->next_piece++;
        buffer->state = BUFFER_READING;
        stream->reading = true;
        return 0;
    }
    stream->next_piece++;
    buffer->state = BUFFER_READING;
    stream->reading = true;
    size_t done = 0;
    int result = 0;
    while (done < length) {
        ssize_t got = fault_fails(FAULT_read)
                          ? -1
                          : pread(stream->segment->fd, (unsigned char *)buffer->allocation + done,
                                  length - done, (off_t)(file_offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            result = got < 0 ? -errno : 0;
            break;
        }
        done += (size_t)got;
    }
    read_finished(&buffer->operation, result < 0 ? result : (int)done);
    return 0;
}

/* A read of a piece could not even be submitted. */
static void submission_failed(struct store_stream *stream, int error) {
    atomic_fetch_add_explicit(&stream->flash->tier.counters.submit_failures, 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&stream->flash->tier.counters.read_errors, 1, memory_order_relaxed);
    log_event(LOG_ERROR, "flash_read_failed", "segment=%u offset=%u during=stream error=\"%s\"",
              stream->segment_id, stream->offset, strerror(-error));
    stream_failed(stream, STORE_IO_ERROR);
}

/* Starts the next read while a buffer is free and there is more to read. */
static void pump(struct store_stream *stream) {
    if (stream->pumping) return;
    stream->pumping = true;
    while (!stream->reading && !stream->failed && !stream->cancelled &&
           stream->next_piece < stream->pieces && stream->mode != MODE_IDLE) {
        struct stream_buffer *free_buffer = NULL;
        for (int i = 0; i < STREAM_BUFFERS && free_buffer == NULL; i++) {
            if (stream->buffers[i].state == BUFFER_FREE) free_buffer = &stream->buffers[i];
        }
        if (free_buffer == NULL) break; /* both wait in the queue */
        int error = start_read(stream, free_buffer);
        if (error != 0) submission_failed(stream, error);
    }
    stream->pumping = false;
    bool wake = stream->woken && stream->mode == MODE_SEND && stream->wake != NULL &&
                !stream->cancelled && !stream->quiet;
    stream->woken = false;
    void (*wake_function)(void *) = stream->wake;
    void *wake_context = stream->wake_context;
    free_if_finished(stream);
    if (wake) wake_function(wake_context); /* last: it may close the connection */
}

/* The opening read (the head) ended with STATUS: hands the stream, or the failure, to
 * whoever opened it. A synchronous opening (no DONE) reads the outcome from the stream. */
static void opened(struct store_stream *stream, enum store_status status) {
    stream->mode = MODE_IDLE;
    stream->open_status = status;
    if (status != STORE_OK) {
        stream->failed = true;
        if (status == STORE_NOT_FOUND) stream_failed(stream, STORE_NOT_FOUND);
        for (int i = 0; i < STREAM_BUFFERS; i++)
            stream->buffers[i].state = BUFFER_FREE;
    }
    store_read_done done = stream->done;
    if (done == NULL) return; /* flash_stream_open() looks at the outcome */
    void *context = stream->context;
    if (status != STORE_OK) {
        /* The reader's hold on the key goes with the failure (the caller gets none). */
        if (stream->held)
            FLASH_INDEX(stream->flash)->release_hold(FLASH_OWNER(stream->flash), stream->hash);
        stream_free(stream);
        done(context, status, (struct store_value){0});
        return;
    }
    FLASH_INDEX(stream->flash)->count_hit(FLASH_OWNER(stream->flash), stream->hash);
    done(context, STORE_OK, (struct store_value){.stream = stream, .held = stream->held});
}

/* A read ended (on the stream's thread). */
static void read_finished(struct io_ring_operation *operation, int result) {
    struct stream_buffer *buffer = (struct stream_buffer *)operation;
    struct store_stream *stream = buffer->stream;
    stream->reading = false;
    atomic_fetch_add_explicit(&stream->flash->tier.counters.reads, 1, memory_order_relaxed);
    if (stream->cancelled) {
        buffer->state = BUFFER_FREE;
        free_if_finished(stream);
        return;
    }
    if (result < 0 || (size_t)result < buffer->length) {
        buffer->state = BUFFER_FREE;
        if (result < 0) {
            atomic_fetch_add_explicit(&stream->flash->tier.counters.read_errors, 1,
                                      memory_order_relaxed);
            log_event(LOG_ERROR, "flash_read_failed",
                      "segment=%u offset=%u during=stream error=\"%s\"", stream->segment_id,
                      stream->offset, strerror(-result));
        }
        /* A read cut short: the file ends inside the record, which is damaged. */
        enum store_status status = result < 0 ? STORE_IO_ERROR : STORE_NOT_FOUND;
        if (stream->mode == MODE_OPENING) {
            opened(stream, status);
            return;
        }
        stream_failed(stream, status);
        pump(stream);
        return;
    }
    atomic_fetch_add_explicit(&stream->flash->tier.counters.bytes_read, (uint64_t)result,
                              memory_order_relaxed);
    if (stream->mode == MODE_OPENING) {
        bool valid = head_valid(stream, buffer);
        buffer->state = valid ? BUFFER_HELD : BUFFER_FREE; /* held until told where it goes */
        opened(stream, valid ? STORE_OK : STORE_NOT_FOUND);
        return;
    }
    piece_read(stream, buffer);
    pump(stream);
}

/* ---- the API ---------------------------------------------------------------------- */

enum store_status flash_stream_open(const struct tier_read *read, bool held, store_read_done done,
                                    void *context, struct store_stream **opened_stream) {
    *opened_stream = NULL;
    struct flash *flash = flash_of(read->tier);
    if (read->source == NULL) return STORE_NOT_FOUND;
    struct store_stream *stream = calloc(1, sizeof(*stream));
    unsigned char *key = malloc(read->key_length ? read->key_length : 1);
    if (stream == NULL || key == NULL) {
        free(stream);
        free(key);
        return STORE_ALLOCATION_FAILED;
    }
    stream->flash = flash;
    stream->hash = read->hash;
    stream->segment_id = read->segment_id;
    stream->offset = read->offset;
    stream->key = key;
    memcpy(key, read->key, read->key_length);
    stream->key_length = read->key_length;
    stream->value_length = read->value_length;
    stream->value_offset = flash_value_offset(read->key_length);
    stream->covered = stream->value_offset + read->value_length;
    stream->aligned_start = read->offset & ~(uint64_t)(FLASH_BLOCK - 1);
    stream->record_delta = read->offset - stream->aligned_start;
    uint64_t span = stream->record_delta + stream->covered + 4;
    uint64_t budget = FLASH_INDEX(flash)->budget(FLASH_OWNER(flash));
    uint64_t piece = (budget / 16) & ~(uint64_t)(FLASH_BLOCK - 1);
    if (piece > STREAM_PIECE_MAX) piece = STREAM_PIECE_MAX;
    if (piece < STREAM_PIECE_MIN) piece = STREAM_PIECE_MIN;
    /* A record smaller than a piece (streamed because DRAM is short right now) is read
     * in one piece of its own size, not charged for two of the largest. */
    uint64_t whole_span = (span + FLASH_BLOCK - 1) & ~(uint64_t)(FLASH_BLOCK - 1);
    if (piece > whole_span) piece = whole_span;
    stream->piece_size = (size_t)piece;
    stream->pieces = (span + piece - 1) / piece;
    stream->running_crc = CRC32C_START;
    stream->done = done;
    stream->context = context;
    stream->held = held;
    stream->end = read->value_length;
    /* The buffers count in the budget like any memory the tier holds. */
    uint64_t estimate = STREAM_BUFFERS * memory_estimate(stream->piece_size);
    enum store_status status = FLASH_INDEX(flash)->charge(FLASH_OWNER(flash), estimate);
    if (status != STORE_OK) {
        free(key);
        free(stream);
        return status;
    }
    stream->charge = estimate;
    for (int i = 0; i < STREAM_BUFFERS; i++) {
        stream->buffers[i].stream = stream;
        stream->buffers[i].allocation = aligned_alloc(FLASH_BLOCK, stream->piece_size);
        if (stream->buffers[i].allocation == NULL) {
            stream_free(stream);
            return STORE_ALLOCATION_FAILED;
        }
    }
    stream->segment = read->source;
    segment_take_reference(stream->segment);
    stream->mode = MODE_OPENING;
    bool async = io_ring_current() != NULL && done != NULL;
    if (!async) stream->done = NULL; /* read at once: the outcome is returned */
    int error = start_read(stream, &stream->buffers[0]);
    if (error != 0) {
        atomic_fetch_add_explicit(&flash->tier.counters.submit_failures, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&flash->tier.counters.read_errors, 1, memory_order_relaxed);
        log_event(LOG_ERROR, "flash_read_failed", "segment=%u offset=%u during=stream error=\"%s\"",
                  stream->segment_id, stream->offset, strerror(-error));
        stream_free(stream);
        return STORE_IO_ERROR;
    }
    if (async) return STORE_PENDING;
    /* Read synchronously: opened() has run without a callback. */
    if (stream->open_status != STORE_OK) {
        enum store_status outcome = stream->open_status;
        stream_free(stream);
        return outcome;
    }
    FLASH_INDEX(stream->flash)->count_hit(FLASH_OWNER(stream->flash), stream->hash);
    *opened_stream = stream;
    return STORE_OK;
}

uint64_t store_stream_length(const struct store_stream *stream) {
    return stream->value_length;
}

const unsigned char *store_stream_head(const struct store_stream *stream, size_t *length) {
    const struct stream_buffer *head = &stream->buffers[0];
    size_t value_start = (size_t)(stream->record_delta + stream->value_offset);
    size_t available = head->length > value_start ? head->length - value_start : 0;
    if (available > stream->value_length) available = (size_t)stream->value_length;
    *length = available;
    return (const unsigned char *)head->allocation + value_start;
}

/* Sets the range to deliver and gets going with the head already read. */
static void begin(struct store_stream *stream, uint64_t offset, uint64_t length,
                  enum stream_mode mode) {
    stream->first = offset;
    stream->end = offset + length;
    stream->mode = mode;
    stream->pumping = true; /* the head first; reads after */
    piece_read(stream, &stream->buffers[0]);
    stream->pumping = false;
    /* No wake from here: the caller is in the middle of a reply, and resumes the
     * connection itself once it is queued (a wake could close the connection under it). */
    stream->quiet = true;
    pump(stream);
    stream->quiet = false;
    /* A copy whose reads all ended inside pump() (no io_ring, or a record of one piece)
     * is finished already: it is freed here, after its last use, not inside pump(). */
    free_if_finished(stream);
}

bool store_stream_send(struct store_stream *stream, uint64_t offset, uint64_t length,
                       struct output_queue *queue, void (*wake)(void *context),
                       void *wake_context) {
    stream->chunk = output_queue_append_stream(queue, length, stream_cancelled, stream);
    if (stream->chunk == NULL) {
        store_stream_close(stream);
        return false;
    }
    stream->queue = queue;
    stream->wake = wake;
    stream->wake_context = wake_context;
    stream->attached = length > 0;
    begin(stream, offset, length, MODE_SEND);
    return true;
}

enum store_status store_stream_copy(struct store_stream *stream, uint64_t offset, uint64_t length,
                                    unsigned char *destination, store_copy_done done,
                                    void *context) {
    stream->destination = destination;
    stream->copy_done = done;
    stream->copy_context = context;
    begin(stream, offset, length, MODE_COPY);
    return STORE_PENDING;
}

void store_stream_close(struct store_stream *stream) {
    stream->cancelled = true;
    stream->mode = MODE_IDLE;
    for (int i = 0; i < STREAM_BUFFERS; i++) {
        if (stream->buffers[i].state == BUFFER_HELD) stream->buffers[i].state = BUFFER_FREE;
    }
    free_if_finished(stream);
}
