/* Reading values that may live on flash, for RESP commands, without blocking the worker.
 *
 * Commands that send values (GET, MGET, GETRANGE, GETEX without options) start one read
 * per key with store_read(): values in DRAM answer at once; a value on flash is read
 * through the worker's io_ring while the session takes no more input (replies keep
 * their order), and the reply goes out when the last read ends. A value too large to
 * bring into DRAM whole is sent as a stream, piece by piece from flash.
 *
 * Commands that change a value or hand it on (INCR, APPEND, SETRANGE, SET ... GET, GETSET,
 * GETDEL, GETEX with options, RENAME, RENAMENX, COPY, EXPIRE and its kin, PERSIST) first bring
 * their key back to DRAM with a hold (resp_prefetch_key()), then run again once it is there: the
 * engine then finds it in DRAM and never waits for flash on the worker. */
#include "proto/resp/resp_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- reading values ------------------------------------------------------------- */

/* Releases what the slots still hold and frees READS (unless it is the session's). */
static void reads_free(struct resp_reads *reads) {
    for (size_t i = 0; i < reads->count; i++) {
        struct resp_read_slot *slot = &reads->slots[i];
        if (slot->value.item != NULL) item_release(slot->value.item);
        if (slot->value.stream != NULL) store_stream_close(slot->value.stream);
        slot->value = (struct store_value){0};
    }
    if (reads->allocated) free(reads);
}

/* Every read of READS has ended: replies (unless the connection went away) and lets the
 * session go on. Runs on the worker, at the end of a completion or at once. */
static void reads_complete(struct resp_reads *reads, bool asynchronous) {
    struct resp_session *session = reads->session;
    if (session->orphaned) {
        reads_free(reads); /* (before the session that may hold it goes) */
        resp_session_free(session);
        return;
    }
    uint32_t errors = session->error_replies;
    reads->reply(session, reads);
    /* The command was counted when it was dispatched; an error now is still its failure. */
    if (asynchronous && session->error_replies != errors) resp_stats_failed(reads->stats_slot);
    reads_free(reads);
    if (asynchronous) {
        session->suspended = false;
        session->resume(session->resume_handle); /* may close the connection: last */
    }
}

static void read_done(void *context, enum store_status status, struct store_value value) {
    struct resp_read_slot *slot = context;
    slot->status = status;
    slot->value = value;
    struct resp_reads *reads = slot->reads;
    if (--reads->pending == 0) reads_complete(reads, true);
}

void resp_read_values(struct resp_session *session, const struct resp_request *request,
                      size_t first, size_t count, const int64_t *arguments,
                      resp_reads_reply reply) {
    struct resp_reads *reads;
    if (count == 1) {
        reads = &session->single_read;
        memset(reads, 0, sizeof(*reads));
        memset(&session->single_slot, 0, sizeof(session->single_slot));
        reads->slots = &session->single_slot;
    } else {
        reads = calloc(1, sizeof(*reads) + count * sizeof(reads->slots[0]));
        if (reads == NULL) {
            reply_store_error(session, STORE_ALLOCATION_FAILED);
            return;
        }
        reads->slots = (struct resp_read_slot *)(reads + 1);
        reads->allocated = true;
    }
    reads->session = session;
    reads->count = count;
    reads->reply = reply;
    reads->stats_slot = session->stats_slot;
    if (arguments != NULL) memcpy(reads->arguments, arguments, sizeof(reads->arguments));
    struct store_read_options options = {.stream = true};
    /* Counted up front, so a read that ends during the loop cannot finish the batch. */
    reads->pending = count + 1;
    for (size_t i = 0; i < count; i++) {
        struct resp_read_slot *slot = &reads->slots[i];
        slot->reads = reads;
        size_t argument = first + i;
        slot->status =
            store_read(store_of(session), request->argv[argument],
                       (size_t)request->lengths[argument], &options, &slot->value, read_done, slot);
        if (slot->status != STORE_PENDING) reads->pending--;
    }
    if (--reads->pending == 0) {
        reads_complete(reads, false);
        return;
    }
    session->suspended = true; /* read_done() replies and resumes */
}

/* ---- replies with values -------------------------------------------------------- */

/* Sends bytes [OFFSET, OFFSET + LENGTH) of STREAM as a bulk string (taking it over). */
static void reply_stream(struct resp_session *session, struct store_stream *stream, uint64_t offset,
                         uint64_t length) {
    char header[32];
    int size = snprintf(header, sizeof(header), "$%llu\r\n", (unsigned long long)length);
    output_queue_append(session->output, header, (size_t)size);
    if (store_stream_send(stream, offset, length, session->output, session->resume,
                          session->resume_handle)) {
        output_queue_append(session->output, "\r\n", 2);
    }
}

void reply_value(struct resp_session *session, struct resp_read_slot *slot) {
    if (slot->status == STORE_NOT_FOUND) {
        reply_null(session);
    } else if (slot->status != STORE_OK) {
        reply_store_error(session, slot->status);
    } else if (slot->value.stream != NULL) {
        struct store_stream *stream = slot->value.stream;
        slot->value.stream = NULL;
        reply_stream(session, stream, 0, store_stream_length(stream));
    } else {
        struct item *item = slot->value.item;
        slot->value.item = NULL;
        reply_item(session, item);
    }
}

void reply_value_range(struct resp_session *session, struct resp_read_slot *slot, int64_t start,
                       int64_t end) {
    if (slot->status != STORE_OK) {
        if (slot->status == STORE_NOT_FOUND) {
            reply_bulk(session, "", 0);
        } else {
            reply_store_error(session, slot->status);
        }
        return;
    }
    int64_t length = slot->value.stream != NULL ? (int64_t)store_stream_length(slot->value.stream)
                                                : (int64_t)item_value_length(slot->value.item);
    bool empty = start < 0 && end < 0 && start > end;
    if (start < 0) start = length + start;
    if (end < 0) end = length + end;
    if (start < 0) start = 0;
    if (end < 0) end = 0;
    if (end >= length) end = length - 1;
    if (empty || start > end || length == 0) {
        reply_bulk(session, "", 0);
        return;
    }
    if (slot->value.stream != NULL) {
        struct store_stream *stream = slot->value.stream;
        slot->value.stream = NULL;
        reply_stream(session, stream, (uint64_t)start, (uint64_t)(end - start + 1));
        return;
    }
    reply_bulk(session, item_value(slot->value.item) + start, (size_t)(end - start + 1));
}

/* ---- bringing a key back to DRAM before a command -------------------------------- */

static void prefetch_done(void *context, enum store_status status, struct store_value value) {
    struct resp_session *session = context;
    if (value.item != NULL) item_release(value.item);
    if (value.stream != NULL) store_stream_close(value.stream);
    if (value.held) session->holding = true;
    session->suspended = false;
    if (session->orphaned) {
        resp_session_command_done(session);
        resp_session_free(session);
        return;
    }
    resp_session_rerun(session, status == STORE_NOT_FOUND ? STORE_OK : status);
}

enum resp_prefetch resp_prefetch_key(struct resp_session *session,
                                     const struct resp_request *request, size_t index,
                                     bool any_type) {
    if (session->rerunning) {
        /* This run follows the prefetch. A string command looks at the type again: the
         * key may have become another type while its flash read was under way. */
        enum store_type type;
        if (!any_type &&
            store_key_type(store_of(session), request->argv[index], (size_t)request->lengths[index],
                           &type) == STORE_OK &&
            type != STORE_TYPE_STRING) {
            reply_store_error(session, STORE_WRONG_TYPE);
            return PREFETCH_FAILED;
        }
        return PREFETCH_READY;
    }
    /* One hold per command (hold_index): a command that brings several keys back holds
     * the first; the others are promoted but may be evicted again before it reads them
     * (it then reads them from flash synchronously). */
    bool hold = !session->holding;
    struct store_read_options options = {.promote = true, .hold = hold, .any_type = any_type};
    struct store_value value;
    if (hold) session->hold_index = index;
    enum store_status status =
        store_read(store_of(session), request->argv[index], (size_t)request->lengths[index],
                   &options, &value, prefetch_done, session);
    if (status == STORE_PENDING) {
        session->suspended = true;
        session->rerun_wanted = true; /* prefetch_done() runs the command again */
        return PREFETCH_STARTED;
    }
    if (value.item != NULL) item_release(value.item);
    if (value.held) session->holding = true;
    if (status == STORE_OK || status == STORE_NOT_FOUND) return PREFETCH_READY;
    reply_store_error(session, status);
    return PREFETCH_FAILED;
}
