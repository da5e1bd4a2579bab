/* The native batched protocol: a streaming frame parser and the store calls behind it.
 *
 * A session reads a frame header, the namespace, then one entry at a time; each entry
 * is carried out as soon as it has arrived (a large value is read straight into the
 * value block that the store adopts), and its result is kept until the frame ends, when
 * the whole response frame is queued: small results copied, GET values by reference
 * from the stored items (no copy). Frames are answered in order.
 *
 * A frame that cannot be trusted (bad magic, unknown version, a body over max-request,
 * counts that cannot fit the body, an entry running past the body) gets an error frame
 * and the connection is closed. A frame that is well formed but names an unknown
 * namespace or opcode gets an error frame, its body is skipped, and the connection goes
 * on. Entries of a batch succeed or fail one by one; a client that vanishes mid-batch
 * leaves the entries before the one being received done, and nothing of that one. */
#include "proto/native/native.h"
#include "engine/engine_options.h"
#include "net/net.h"

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "engine/namespaces.h"
#include "engine/store.h"
#include "engine/value_block.h"
#include "strata_protocol.h"

#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct option_definition native_option_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "proto/native/native_options.def"
#undef OPTION
};

struct option_group native_options = {
    .title = "Native protocol front end",
    .definitions = native_option_definitions,
    .count = sizeof(native_option_definitions) / sizeof(native_option_definitions[0]),
};

/* Stored value header (NATIVE_VALUE_HEADER_SIZE bytes, in front of the value):
 *   0  u32 magic "SKV1"
 *   4  u32 flags (STORED_FINGERPRINT, STORED_DURABLE)
 *   8  u32 checksum of the value (CRC32C)
 *  12  u32 CRC32C of this header with these four bytes zero
 *  16  u8[16] fingerprint */
#define STORED_MAGIC       0x31564B53u
#define STORED_FINGERPRINT 1u
#define STORED_DURABLE     2u

/* Most entries one frame may carry. */
#define MAX_FRAME_ENTRIES (1u << 20)
/* Longest pin lease: an hour. */
#define MAX_LEASE_MS 3600000

/* The answer to a connection refused at max-clients: an error frame (request id 0,
 * STRATA_ERR_BUSY = -10 as 0xFFFFFFF6) whose body is the message. */
#define REFUSAL_MESSAGE "max number of clients reached"
static_assert(sizeof(REFUSAL_MESSAGE) - 1 == 0x1d, "the body length below is the message's");
const unsigned char native_refusal[] = "STRN\x01\x00\x00\x00"              /* magic, version 1 */
                                       "\x00\x00\x00\x00\x00\x00\x00\x00"  /* request id */
                                       "\x1d\x00\x00\x00\x00\x00\x00\x00"  /* body length */
                                       "\x00\x00\x00\x00"                  /* count */
                                       "\xf6\xff\xff\xff" REFUSAL_MESSAGE; /* status, message */
static_assert(sizeof(native_refusal) - 1 == NATIVE_REFUSAL_LENGTH, "NATIVE_REFUSAL_LENGTH");

struct native_server {
    struct native_environment environment;
};

enum phase {
    PHASE_HEADER = 0,
    PHASE_NAMESPACE_LENGTH, /* u16 */
    PHASE_NAMESPACE,        /* the name */
    PHASE_ENTRY,            /* an entry's fixed part */
    PHASE_ENTRY_KEYS,       /* its key (and parent) */
    PHASE_VALUE_SMALL,      /* a PUT value gathered in the session */
    PHASE_VALUE_BLOCK,      /* a PUT value read into a value block */
    PHASE_SKIP,             /* the rest of a body that is answered already */
    PHASE_CLOSED,           /* an untrusted stream: ignore everything */
};

/* A GET entry, from its read to the end of its frame. */
struct get_result {
    int32_t status;
    uint32_t checksum;
    uint64_t value_length;
    struct item *item;           /* a reference to send the value from, or NULL */
    struct store_stream *stream; /* or a value sent from flash piece by piece, or NULL */
    /* What the entry asked (kept for a read that ends after the next entry arrived). */
    struct native_session *session;
    uint32_t flags;
    uint64_t capacity;
    uint64_t shm_offset;
    unsigned char fingerprint[16];
};

struct native_session {
    struct native_server *server;
    struct output_queue *output;
    uint64_t id;
    char peer[64];
    enum phase phase;

    /* Bytes of a piece that arrived split across reads. */
    unsigned char *staging;
    size_t staging_length;
    size_t staging_capacity;

    /* The frame being read. */
    uint8_t opcode;
    uint64_t request_id;
    uint64_t body_remaining; /* body bytes not yet consumed */
    uint32_t count;
    uint32_t entries_done;
    int32_t argument;
    size_t namespace_length;
    struct namespace *space;
    uint64_t skip_remaining;
    bool skip_then_next_entry; /* PHASE_SKIP drains a refused value, not the body */

    /* The entry being read. */
    unsigned char entry[STRATA_PUT_ENTRY_SIZE];
    uint32_t key_length;
    uint32_t parent_length;
    uint32_t entry_flags;
    uint64_t value_length;
    unsigned char *keys; /* key then parent */
    size_t keys_capacity;
    struct value_block *block; /* PHASE_VALUE_BLOCK: being filled */
    uint64_t block_filled;

    /* Results of the frame being read. */
    int32_t *statuses;
    struct get_result *gets;
    size_t results_capacity;
    bool results_live; /* the slots [0, count) belong to the frame being read */
    uint32_t matched;  /* MATCH_PREFIX */
    bool match_stopped;

    /* The shared memory region registered on this connection. */
    unsigned char *shm;
    uint64_t shm_size;

    /* GET entries whose value is being read from flash: the frame is answered when the
     * last one ends, and no more input is taken meanwhile once its entries are in. */
    uint32_t reads_pending;
    bool frame_waiting; /* every entry is in; the reply waits for the reads */
    bool orphaned;      /* the connection closed meanwhile: the last read frees it */
    void (*resume)(void *handle);
    void *resume_handle;
};

/* ---- stored values ------------------------------------------------------------- */

static uint32_t stored_header_check(const unsigned char *header) {
    unsigned char copy[NATIVE_VALUE_HEADER_SIZE];
    memcpy(copy, header, sizeof(copy));
    memset(copy + 12, 0, 4);
    return crc32c(copy, sizeof(copy));
}

/* Writes the stored header for the entry being read into HEADER. */
static void stored_header_build(const struct native_session *session, unsigned char *header) {
    uint32_t flags = 0;
    if (session->entry_flags & STRATA_PUT_FINGERPRINT) flags |= STORED_FINGERPRINT;
    if (session->entry_flags & STRATA_PUT_DURABLE) flags |= STORED_DURABLE;
    memset(header, 0, NATIVE_VALUE_HEADER_SIZE);
    strata_store32(header, STORED_MAGIC);
    strata_store32(header + 4, flags);
    strata_store32(header + 8, strata_load32(session->entry + 24));
    if (flags & STORED_FINGERPRINT) memcpy(header + 16, session->entry + 32, 16);
    strata_store32(header + 12, stored_header_check(header));
}

/* ---- replies ------------------------------------------------------------------- */

static void write_frame_header(unsigned char *header, uint8_t opcode, uint64_t request_id,
                               uint64_t body_length, uint32_t count, int32_t status) {
    strata_store32(header, STRATA_PROTOCOL_MAGIC);
    header[4] = STRATA_PROTOCOL_VERSION;
    header[5] = opcode;
    header[6] = header[7] = 0;
    strata_store64(header + 8, request_id);
    strata_store64(header + 16, body_length);
    strata_store32(header + 24, count);
    strata_store32(header + 28, (uint32_t)status);
}

/* Queues an error frame for the current request with MESSAGE as its body. */
static void reply_error(struct native_session *session, int32_t status, const char *message) {
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    size_t length = strlen(message);
    write_frame_header(header, session->opcode, session->request_id, length, 0, status);
    output_queue_append(session->output, header, sizeof(header));
    output_queue_append(session->output, message, length);
}

static void drop_results(struct native_session *session);

/* Answers with an error and stops trusting the stream. Returns true (close). */
static bool fail_stream(struct native_session *session, int32_t status, const char *message) {
    drop_results(session);
    reply_error(session, status, message);
    log_event(LOG_WARNING, "protocol_error", "protocol=native client=%s error=\"%s\"",
              session->peer, message);
    session->phase = PHASE_CLOSED;
    return true;
}

/* Answers with an error and skips the rest of the body; the connection goes on. */
static void fail_frame(struct native_session *session, int32_t status, const char *message) {
    drop_results(session);
    reply_error(session, status, message);
    session->skip_remaining = session->body_remaining;
    session->body_remaining = 0;
    session->phase = session->skip_remaining > 0 ? PHASE_SKIP : PHASE_HEADER;
}

/* Releases what the results of an unfinished frame hold. Only slots of a frame whose
 * results were set up (results_live) are looked at: they were all cleared then. */
static void drop_results(struct native_session *session) {
    if (!session->results_live) return;
    session->results_live = false; /* reads still in flight release what they find */
    if (session->opcode != STRATA_OP_GET) return;
    for (uint32_t i = 0; i < session->count; i++) {
        if (session->gets[i].item != NULL) item_release(session->gets[i].item);
        if (session->gets[i].stream != NULL) store_stream_close(session->gets[i].stream);
        session->gets[i].item = NULL;
        session->gets[i].stream = NULL;
    }
}

/* Queues the response to a finished frame. */
static void reply_results(struct native_session *session) {
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    uint32_t count = session->count;
    switch (session->opcode) {
    case STRATA_OP_SHM_REGISTER:
        if (session->statuses[0] != STRATA_OK) {
            reply_error(session, session->statuses[0],
                        "shared memory refused: not a memfd of this host sealed against "
                        "shrinking (F_SEAL_SHRINK), or smaller than the size given");
            return;
        }
        /* fall through */
    case STRATA_OP_PING:
        write_frame_header(header, session->opcode, session->request_id, 0, 0, STRATA_OK);
        output_queue_append(session->output, header, sizeof(header));
        return;
    case STRATA_OP_MATCH_PREFIX: {
        unsigned char body[4];
        strata_store32(body, session->matched);
        write_frame_header(header, session->opcode, session->request_id, 4, 1, STRATA_OK);
        output_queue_append(session->output, header, sizeof(header));
        output_queue_append(session->output, body, sizeof(body));
        return;
    }
    case STRATA_OP_GET: {
        uint64_t body_length = 0;
        for (uint32_t i = 0; i < count; i++) {
            body_length += STRATA_GET_RESULT_SIZE;
            if (session->gets[i].item != NULL || session->gets[i].stream != NULL) {
                body_length += session->gets[i].value_length;
            }
        }
        write_frame_header(header, session->opcode, session->request_id, body_length, count,
                           STRATA_OK);
        output_queue_append(session->output, header, sizeof(header));
        for (uint32_t i = 0; i < count; i++) {
            struct get_result *result = &session->gets[i];
            unsigned char entry[STRATA_GET_RESULT_SIZE];
            strata_store32(entry, (uint32_t)result->status);
            strata_store32(entry + 4, result->checksum);
            strata_store64(entry + 8, result->value_length);
            output_queue_append(session->output, entry, sizeof(entry));
            if (result->stream != NULL) {
                /* From flash, piece by piece: the value after its stored header. */
                struct store_stream *stream = result->stream;
                result->stream = NULL;
                store_stream_send(stream, NATIVE_VALUE_HEADER_SIZE, result->value_length,
                                  session->output, session->resume, session->resume_handle);
                continue;
            }
            if (result->item == NULL) continue;
            const unsigned char *value = item_value(result->item) + NATIVE_VALUE_HEADER_SIZE;
            if (result->value_length < 4096) {
                output_queue_append(session->output, value, result->value_length);
                item_release(result->item);
            } else {
                output_queue_append_reference(session->output, value, result->value_length,
                                              item_release_callback, result->item);
            }
            result->item = NULL;
        }
        return;
    }
    default: {
        size_t length = (size_t)count * 4;
        write_frame_header(header, session->opcode, session->request_id, length, count, STRATA_OK);
        output_queue_append(session->output, header, sizeof(header));
        unsigned char *body = output_queue_reserve(session->output, length > 0 ? length : 1);
        if (body == NULL) return;
        for (uint32_t i = 0; i < count; i++)
            strata_store32(body + 4 * i, (uint32_t)session->statuses[i]);
        output_queue_commit(session->output, length);
        return;
    }
    }
}

/* ---- store results ------------------------------------------------------------- */

/* The protocol status for a store status, in SPACE. */
static int32_t status_of(struct namespace *space, enum store_status status) {
    switch (status) {
    case STORE_OK:
        return STRATA_OK;
    case STORE_NOT_FOUND:
        return STRATA_ERR_NOT_FOUND;
    case STORE_CONDITION_FAILED:
        return STRATA_ERR_EXISTS;
    case STORE_NO_MEMORY:
    case STORE_TOO_LARGE_FOR_BUDGET:
        if (space->is_default) return STRATA_ERR_NO_MEMORY;
        atomic_fetch_add_explicit(&space->quota_errors, 1, memory_order_relaxed);
        return STRATA_ERR_QUOTA;
    case STORE_KEY_TOO_LARGE:
    case STORE_VALUE_TOO_LARGE:
        return STRATA_ERR_TOO_LARGE;
    case STORE_ALLOCATION_FAILED:
        return STRATA_ERR_NO_MEMORY;
    case STORE_FLASH_BUSY:
    case STORE_PENDING:
        return STRATA_ERR_BUSY;
    case STORE_IO_ERROR:
        return STRATA_ERR_IO;
    case STORE_PARENT_MISSING:
        return STRATA_ERR_PARENT_MISSING;
    }
    return STRATA_ERR_IO;
}

/* Makes sure the result arrays hold COUNT entries. Returns false if out of memory. */
static bool reserve_results(struct native_session *session, uint32_t count) {
    if (count <= session->results_capacity) return true;
    size_t capacity = session->results_capacity ? session->results_capacity : 16;
    while (capacity < count)
        capacity *= 2;
    int32_t *statuses = realloc(session->statuses, capacity * sizeof(*statuses));
    if (statuses == NULL) return false;
    session->statuses = statuses;
    struct get_result *gets = realloc(session->gets, capacity * sizeof(*gets));
    if (gets == NULL) return false;
    session->gets = gets;
    session->results_capacity = capacity;
    return true;
}

/* Stores the PUT entry just read, whose value (header included) is VALUE or BLOCK. */
static int32_t finish_put(struct native_session *session, const unsigned char *value,
                          struct value_block *block) {
    struct namespace *space = session->space;
    const unsigned char *data = block != NULL ? block->data : value;
    uint32_t checksum = strata_load32(session->entry + 24);
    if (crc32c(data + NATIVE_VALUE_HEADER_SIZE, session->value_length) != checksum) {
        if (block != NULL) value_block_release(block);
        atomic_fetch_add_explicit(&space->checksum_failures, 1, memory_order_relaxed);
        char quoted[160];
        log_event(
            LOG_WARNING, "checksum_mismatch",
            "protocol=native client=%s namespace=%s key=%s during=put", session->peer, space->name,
            log_quote(quoted, sizeof(quoted), (const char *)session->keys, session->key_length));
        return STRATA_ERR_CHECKSUM;
    }
    uint64_t ttl_ms = strata_load64(session->entry + 16);
    int64_t now = clock_realtime_ms();
    if (ttl_ms > (uint64_t)(INT64_MAX - now)) {
        /* A time to live that would pass the end of time: refused, never wrapped. */
        if (block != NULL) value_block_release(block);
        return STRATA_ERR_INVALID;
    }
    struct store_write write = {
        .condition = session->entry_flags & STRATA_PUT_IF_ABSENT ? STORE_IF_ABSENT : STORE_ALWAYS,
        .expiry = ttl_ms > 0 ? STORE_EXPIRY_SET : STORE_EXPIRY_CLEAR,
        .expire_at_ms = ttl_ms > 0 ? now + (int64_t)ttl_ms : 0,
    };
    write.durable = (session->entry_flags & STRATA_PUT_DURABLE) != 0;
    if (session->entry_flags & STRATA_PUT_PARENT) {
        write.parent = session->keys + session->key_length;
        write.parent_length = session->parent_length;
    }
    enum store_status status;
    if (block != NULL) {
        block->length = NATIVE_VALUE_HEADER_SIZE + session->value_length;
        status =
            store_set_block(space->store, session->keys, session->key_length, block, &write, NULL);
    } else {
        status = store_set(space->store, session->keys, session->key_length, value,
                           NATIVE_VALUE_HEADER_SIZE + session->value_length, &write, NULL);
    }
    atomic_fetch_add_explicit(&space->puts, 1, memory_order_relaxed);
    return status_of(space, status);
}

/* Checks a GET entry's value (its stored header, at HEADER, LENGTH bytes of value after
 * it) against what RESULT asked: a native value, the fingerprint, the caller's buffer.
 * Returns the entry's status (STRATA_OK: send it); sets checksum and value_length. */
static int32_t check_get(struct native_session *session, struct get_result *result,
                         const unsigned char *header, uint64_t stored_length) {
    struct namespace *space = session->space;
    if (stored_length < NATIVE_VALUE_HEADER_SIZE || strata_load32(header) != STORED_MAGIC ||
        strata_load32(header + 12) != stored_header_check(header)) {
        return STRATA_ERR_NOT_NATIVE;
    }
    uint64_t length = stored_length - NATIVE_VALUE_HEADER_SIZE;
    result->checksum = strata_load32(header + 8);
    result->value_length = length;
    if (result->flags & STRATA_GET_FINGERPRINT) {
        if (!(strata_load32(header + 4) & STORED_FINGERPRINT) ||
            memcmp(header + 16, result->fingerprint, 16) != 0) {
            atomic_fetch_add_explicit(&space->fingerprint_mismatches, 1, memory_order_relaxed);
            result->value_length = 0;
            return STRATA_ERR_FINGERPRINT;
        }
    }
    if (length > result->capacity) return STRATA_ERR_BUFFER_TOO_SMALL;
    if (result->flags & STRATA_GET_SHM) {
        if (session->shm == NULL || result->shm_offset > session->shm_size ||
            length > session->shm_size - result->shm_offset) {
            return STRATA_ERR_SHM;
        }
    }
    return STRATA_OK;
}

/* Logs and counts a value whose bytes fail the checksum its writer gave. */
static void checksum_mismatch(struct native_session *session, const unsigned char *key,
                              size_t key_length) {
    struct namespace *space = session->space;
    atomic_fetch_add_explicit(&space->checksum_failures, 1, memory_order_relaxed);
    char quoted[160];
    log_event(LOG_ERROR, "checksum_mismatch", "protocol=native namespace=%s key=%s during=get",
              space->name, log_quote(quoted, sizeof(quoted), (const char *)key, key_length));
}

static void get_read_done(void *context, enum store_status status, struct store_value value);
static void finish_read(struct native_session *session);
static void native_session_free(struct native_session *session);
static void finish_frame(struct native_session *session);

/* A shared-memory GET of a value streamed from flash has been copied. */
static void get_copied(void *context, enum store_status status) {
    struct get_result *result = context;
    struct native_session *session = result->session;
    if (status != STORE_OK) {
        result->status = status_of(session->space, status);
        result->value_length = 0;
    }
    finish_read(session);
}

/* Fills RESULT from what the read of its key found (STATUS, VALUE: taken over). A copy
 * into shared memory of a value streamed from flash counts as a read until it ends. */
static void settle_get(struct native_session *session, struct get_result *result,
                       enum store_status status, struct store_value value) {
    struct namespace *space = session->space;
    if (status != STORE_OK) {
        if (status == STORE_NOT_FOUND) {
            atomic_fetch_add_explicit(&space->misses, 1, memory_order_relaxed);
        }
        result->status = status_of(space, status);
        return;
    }
    atomic_fetch_add_explicit(&space->hits, 1, memory_order_relaxed);
    if (value.stream != NULL) {
        struct store_stream *stream = value.stream;
        size_t head_length;
        const unsigned char *head = store_stream_head(stream, &head_length);
        result->status = head_length >= NATIVE_VALUE_HEADER_SIZE
                             ? check_get(session, result, head, store_stream_length(stream))
                             : STRATA_ERR_NOT_NATIVE;
        if (result->status != STRATA_OK) {
            store_stream_close(stream);
            return;
        }
        if (result->flags & STRATA_GET_SHM) {
            /* The record's checksum is checked as it is copied. */
            session->reads_pending++;
            store_stream_copy(stream, NATIVE_VALUE_HEADER_SIZE, result->value_length,
                              session->shm + result->shm_offset, get_copied, result);
            return;
        }
        result->stream = stream;
        return;
    }
    struct item *item = value.item;
    const unsigned char *header = item_value(item);
    result->status = check_get(session, result, header, item_value_length(item));
    if (result->status == STRATA_OK && item_from_flash(item) &&
        crc32c(header + NATIVE_VALUE_HEADER_SIZE, result->value_length) != result->checksum) {
        /* Read back from flash: check the client's checksum too. */
        size_t key_length;
        const unsigned char *key = item_key(item, &key_length);
        checksum_mismatch(session, key, key_length);
        result->status = STRATA_ERR_CHECKSUM;
        result->value_length = 0;
    }
    if (result->status != STRATA_OK) {
        item_release(item);
        return;
    }
    if (result->flags & STRATA_GET_SHM) {
        memcpy(session->shm + result->shm_offset, header + NATIVE_VALUE_HEADER_SIZE,
               result->value_length);
        item_release(item);
        return;
    }
    result->item = item;
}

/* Starts the GET entry just read; its result goes into RESULT, now or when its read
 * ends (a value on flash is read through the worker's io_ring). */
static void do_get(struct native_session *session, struct get_result *result) {
    struct namespace *space = session->space;
    const unsigned char *entry = session->entry;
    *result = (struct get_result){
        .session = session,
        .flags = strata_load32(entry + 4),
        .capacity = strata_load64(entry + 8),
        .shm_offset = strata_load64(entry + 16),
    };
    memcpy(result->fingerprint, entry + 24, 16);
    atomic_fetch_add_explicit(&space->gets, 1, memory_order_relaxed);
    struct store_read_options options = {.stream = true};
    struct store_value value;
    enum store_status status = store_read(space->store, session->keys, session->key_length,
                                          &options, &value, get_read_done, result);
    if (status == STORE_PENDING) {
        session->reads_pending++;
        return;
    }
    settle_get(session, result, status, value);
}

/* The read of a GET entry's key ended. */
static void get_read_done(void *context, enum store_status status, struct store_value value) {
    struct get_result *result = context;
    struct native_session *session = result->session;
    if (!session->results_live) {
        /* The frame was given up (or the connection closed) meanwhile. */
        if (value.item != NULL) item_release(value.item);
        if (value.stream != NULL) store_stream_close(value.stream);
    } else {
        settle_get(session, result, status, value);
    }
    finish_read(session);
}

/* One read of the frame has ended: the last one answers the frame if all its entries
 * are in, and lets the connection go on. */
static void finish_read(struct native_session *session) {
    if (--session->reads_pending > 0) return;
    if (session->orphaned) {
        native_session_free(session);
        return;
    }
    if (!session->frame_waiting) return; /* entries are still arriving */
    session->frame_waiting = false;
    finish_frame(session);
    session->resume(session->resume_handle); /* may close the connection: last */
}

/* Carries out a key entry (EXISTS, DELETE, TOUCH, PIN, UNPIN, MATCH_PREFIX). */
static int32_t do_key_entry(struct native_session *session) {
    struct store *store = session->space->store;
    const unsigned char *key = session->keys;
    size_t length = session->key_length;
    switch (session->opcode) {
    case STRATA_OP_EXISTS:
        return store_exists(store, key, length) ? STRATA_OK : STRATA_ERR_NOT_FOUND;
    case STRATA_OP_DELETE:
        return status_of(session->space, store_delete(store, key, length, NULL));
    case STRATA_OP_TOUCH:
        return store_touch(store, key, length) ? STRATA_OK : STRATA_ERR_NOT_FOUND;
    case STRATA_OP_PIN:
        return status_of(session->space, store_pin(store, key, length, session->argument));
    case STRATA_OP_UNPIN:
        return status_of(session->space, store_pin(store, key, length, 0));
    case STRATA_OP_MATCH_PREFIX:
        if (!session->match_stopped) {
            bool present = session->argument > 0
                               ? store_pin(store, key, length, session->argument) == STORE_OK
                               : store_exists(store, key, length);
            if (present) {
                session->matched++;
            } else {
                session->match_stopped = true;
            }
        }
        return STRATA_OK;
    }
    return STRATA_ERR_PROTOCOL;
}

/* Maps a client's memfd (see STRATA_OP_SHM_REGISTER). Returns a status. */
static int32_t do_shm_register(struct native_session *session, const unsigned char *entry) {
    uint32_t pid = strata_load32(entry);
    uint32_t fd_number = strata_load32(entry + 4);
    uint64_t size = strata_load64(entry + 8);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%u/fd/%u", pid, fd_number);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return STRATA_ERR_SHM;
    struct stat status;
    int seals = fcntl(fd, F_GET_SEALS);
    int32_t result = STRATA_OK;
    if (fstat(fd, &status) != 0 || !S_ISREG(status.st_mode) || seals < 0 ||
        !(seals & F_SEAL_SHRINK) || size == 0 || (uint64_t)status.st_size < size) {
        result = STRATA_ERR_SHM; /* not a memfd sealed against shrinking, or too small */
    }
    void *map = MAP_FAILED;
    if (result == STRATA_OK) {
        map = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) result = STRATA_ERR_SHM;
    }
    close(fd);
    if (result != STRATA_OK) return result;
    if (session->shm != NULL) munmap(session->shm, (size_t)session->shm_size);
    session->shm = map;
    session->shm_size = size;
    return STRATA_OK;
}

/* ---- the frame parser ---------------------------------------------------------- */

/* Returns a pointer to the next NEEDED bytes, from DATA in place or gathered into the
 * session's staging buffer across calls; advances *POSITION past what it took. Returns
 * NULL when more bytes must arrive first (all of DATA was taken), or on allocation
 * failure (then *FAILED is set). */
static const unsigned char *need(struct native_session *session, const unsigned char *data,
                                 size_t length, size_t *position, size_t needed, bool *failed) {
    size_t available = length - *position;
    if (session->staging_length == 0 && available >= needed) {
        const unsigned char *piece = data + *position;
        *position += needed;
        return piece;
    }
    if (session->staging_capacity < needed) {
        unsigned char *staging = realloc(session->staging, needed);
        if (staging == NULL) {
            *failed = true;
            return NULL;
        }
        session->staging = staging;
        session->staging_capacity = needed;
    }
    size_t take = needed - session->staging_length;
    if (take > available) take = available;
    memcpy(session->staging + session->staging_length, data + *position, take);
    session->staging_length += take;
    *position += take;
    if (session->staging_length < needed) return NULL;
    session->staging_length = 0;
    return session->staging;
}

/* Size of the fixed part of an entry of the frame's opcode. */
static size_t entry_size(uint8_t opcode) {
    switch (opcode) {
    case STRATA_OP_PUT:
        return STRATA_PUT_ENTRY_SIZE;
    case STRATA_OP_GET:
        return STRATA_GET_ENTRY_SIZE;
    case STRATA_OP_SHM_REGISTER:
        return STRATA_SHM_ENTRY_SIZE;
    default:
        return STRATA_KEY_ENTRY_SIZE;
    }
}

/* Takes BYTES out of the body. Returns false if the body is shorter (a broken frame). */
static bool take_body(struct native_session *session, uint64_t bytes) {
    if (bytes > session->body_remaining) return false;
    session->body_remaining -= bytes;
    return true;
}

/* The frame's entries are all read: answer it. */
static void finish_frame(struct native_session *session) {
    if (session->reads_pending > 0) {
        session->frame_waiting = true; /* finish_read() answers it; no input meanwhile */
        return;
    }
    reply_results(session);
    session->results_live = false; /* reply_results() took every item */
    session->phase = PHASE_HEADER;
}

/* Moves on after an entry: the next entry, or the end of the frame. */
static bool next_entry(struct native_session *session) {
    session->entries_done++;
    if (session->entries_done < session->count) {
        session->phase = PHASE_ENTRY;
        return false;
    }
    if (session->body_remaining != 0) {
        return fail_stream(session, STRATA_ERR_PROTOCOL,
                           "bytes left in the body after its entries");
    }
    finish_frame(session);
    return false;
}

static bool on_header(struct native_session *session, const unsigned char *header) {
    session->opcode = header[5];
    session->request_id = strata_load64(header + 8);
    if (strata_load32(header) != STRATA_PROTOCOL_MAGIC) {
        return fail_stream(session, STRATA_ERR_PROTOCOL, "bad frame magic (expected STRN)");
    }
    if (header[4] != STRATA_PROTOCOL_VERSION) {
        char message[96];
        snprintf(message, sizeof(message), "protocol version %u is not supported (this server: %u)",
                 header[4], STRATA_PROTOCOL_VERSION);
        return fail_stream(session, STRATA_ERR_VERSION, message);
    }
    session->body_remaining = strata_load64(header + 16);
    session->count = strata_load32(header + 24);
    session->argument = (int32_t)strata_load32(header + 28);
    session->entries_done = 0;
    session->matched = 0;
    session->match_stopped = false;
    session->space = NULL;
    struct options *options = session->server->environment.options;
    if (session->body_remaining > (uint64_t)options_number(options, NET_OPTION(max_request))) {
        return fail_stream(session, STRATA_ERR_TOO_LARGE, "frame body longer than max-request");
    }
    if (session->count > MAX_FRAME_ENTRIES ||
        (uint64_t)session->count * entry_size(session->opcode) + 2 > session->body_remaining) {
        return fail_stream(session, STRATA_ERR_PROTOCOL,
                           "entry count cannot fit the body length (or over 1048576)");
    }
    session->phase = PHASE_NAMESPACE_LENGTH;
    return false;
}

static bool on_namespace(struct native_session *session, const unsigned char *name, size_t length) {
    uint8_t opcode = session->opcode;
    if (opcode >= STRATA_OP_COUNT) {
        fail_frame(session, STRATA_ERR_PROTOCOL, "unknown opcode");
        return false;
    }
    if (opcode == STRATA_OP_PING || opcode == STRATA_OP_SHM_REGISTER) {
        session->space = NULL;
    } else {
        session->space = namespace_find(session->server->environment.namespaces, name, length);
        if (session->space == NULL) {
            char message[128];
            snprintf(message, sizeof(message), "unknown namespace '%.*s'",
                     (int)(length > 64 ? 64 : length), (const char *)name);
            fail_frame(session, STRATA_ERR_NAMESPACE, message);
            return false;
        }
        if (store_recovering(session->space->store)) {
            fail_frame(session, STRATA_ERR_BUSY,
                       "loading: the server is rebuilding its flash index; try again");
            return false;
        }
    }
    if ((opcode == STRATA_OP_PING && session->count != 0) ||
        (opcode == STRATA_OP_SHM_REGISTER && session->count != 1) ||
        (opcode == STRATA_OP_MATCH_PREFIX && session->argument < 0) ||
        (opcode == STRATA_OP_PIN && (session->argument <= 0 || session->argument > MAX_LEASE_MS))) {
        fail_frame(session, STRATA_ERR_INVALID, "bad count or argument for this opcode");
        return false;
    }
    if (session->argument > MAX_LEASE_MS) session->argument = MAX_LEASE_MS;
    if (!reserve_results(session, session->count)) {
        fail_frame(session, STRATA_ERR_NO_MEMORY, "out of memory for the results");
        return false;
    }
    if (opcode == STRATA_OP_GET && session->count > 0) {
        memset(session->gets, 0, session->count * sizeof(*session->gets));
    }
    session->results_live = true;
    if (session->count == 0) {
        if (session->body_remaining != 0) {
            return fail_stream(session, STRATA_ERR_PROTOCOL,
                               "bytes left in the body after its entries");
        }
        finish_frame(session);
        return false;
    }
    session->phase = PHASE_ENTRY;
    return false;
}

/* The fixed part of an entry has arrived. */
static bool on_entry(struct native_session *session, const unsigned char *entry) {
    size_t size = entry_size(session->opcode);
    memcpy(session->entry, entry, size);
    if (session->opcode == STRATA_OP_SHM_REGISTER) {
        session->statuses[0] = do_shm_register(session, entry);
        if (session->statuses[0] != STRATA_OK) {
            log_event(LOG_WARNING, "shm_refused", "client=%s", session->peer);
        }
        return next_entry(session);
    }
    session->key_length = strata_load32(entry);
    session->entry_flags = 0;
    session->parent_length = 0;
    session->value_length = 0;
    if (session->opcode == STRATA_OP_PUT) {
        session->entry_flags = strata_load32(entry + 4);
        session->value_length = strata_load64(entry + 8);
        if (session->entry_flags & STRATA_PUT_PARENT)
            session->parent_length = strata_load32(entry + 28);
    } else if (session->opcode == STRATA_OP_GET) {
        session->entry_flags = strata_load32(entry + 4);
    }
    if (session->key_length == 0 || session->key_length > 65536 || session->parent_length > 65536 ||
        (session->entry_flags & STRATA_PUT_PARENT && session->parent_length == 0)) {
        return fail_stream(session, STRATA_ERR_PROTOCOL, "key or parent length out of range");
    }
    uint64_t inline_value =
        (session->opcode == STRATA_OP_PUT && !(session->entry_flags & STRATA_PUT_SHM))
            ? session->value_length
            : 0;
    if (session->value_length > (1ULL << 62) ||
        (uint64_t)session->key_length + session->parent_length + inline_value >
            session->body_remaining) {
        return fail_stream(session, STRATA_ERR_PROTOCOL, "entry runs past the end of the body");
    }
    size_t keys = (size_t)session->key_length + session->parent_length;
    if (session->keys_capacity < keys) {
        unsigned char *buffer = realloc(session->keys, keys);
        if (buffer == NULL) return fail_stream(session, STRATA_ERR_NO_MEMORY, "out of memory");
        session->keys = buffer;
        session->keys_capacity = keys;
    }
    session->phase = PHASE_ENTRY_KEYS;
    return false;
}

/* Starts receiving a PUT value (or takes it from shared memory). */
static bool start_value(struct native_session *session) {
    uint32_t index = session->entries_done;
    struct options *options = session->server->environment.options;
    uint64_t max_value = (uint64_t)options_number(options, ENGINE_OPTION(max_value));
    bool from_shm = (session->entry_flags & STRATA_PUT_SHM) != 0;
    if (session->value_length > max_value) {
        session->statuses[index] = STRATA_ERR_TOO_LARGE;
        if (from_shm || session->value_length == 0) return next_entry(session);
        session->skip_remaining = session->value_length;
        session->skip_then_next_entry = true;
        session->body_remaining -= session->value_length;
        session->phase = PHASE_SKIP;
        return false;
    }
    uint64_t total = NATIVE_VALUE_HEADER_SIZE + session->value_length;
    if (from_shm) {
        uint64_t offset = strata_load64(session->entry + 48);
        if (session->shm == NULL || offset > session->shm_size ||
            session->value_length > session->shm_size - offset) {
            session->statuses[index] = STRATA_ERR_SHM;
            return next_entry(session);
        }
        struct value_block *block = value_block_create(total);
        if (block == NULL) {
            session->statuses[index] = STRATA_ERR_NO_MEMORY;
            return next_entry(session);
        }
        stored_header_build(session, block->data);
        memcpy(block->data + NATIVE_VALUE_HEADER_SIZE, session->shm + offset,
               session->value_length);
        session->statuses[index] = finish_put(session, NULL, block);
        return next_entry(session);
    }
    if (session->value_length == 0) {
        unsigned char header[NATIVE_VALUE_HEADER_SIZE];
        stored_header_build(session, header);
        session->statuses[index] = finish_put(session, header, NULL);
        return next_entry(session);
    }
    if (total < 16384) {
        session->phase = PHASE_VALUE_SMALL;
        return false;
    }
    session->block = value_block_create(total);
    if (session->block == NULL) {
        /* Drain the value and answer that there was no room for it. */
        session->statuses[index] = STRATA_ERR_NO_MEMORY;
        session->skip_remaining = session->value_length;
        session->skip_then_next_entry = true;
        session->body_remaining -= session->value_length;
        session->phase = PHASE_SKIP;
        return false;
    }
    stored_header_build(session, session->block->data);
    session->block_filled = NATIVE_VALUE_HEADER_SIZE;
    session->body_remaining -= session->value_length;
    session->phase = PHASE_VALUE_BLOCK;
    return false;
}

/* The key (and parent) of an entry have arrived. */
static bool on_entry_keys(struct native_session *session, const unsigned char *keys) {
    memcpy(session->keys, keys, (size_t)session->key_length + session->parent_length);
    uint32_t index = session->entries_done;
    switch (session->opcode) {
    case STRATA_OP_PUT:
        return start_value(session);
    case STRATA_OP_GET:
        do_get(session, &session->gets[index]);
        return next_entry(session);
    default:
        session->statuses[index] = do_key_entry(session);
        return next_entry(session);
    }
}

bool native_session_data(void *opaque, const unsigned char *data, size_t length, size_t *consumed) {
    struct native_session *session = opaque;
    if (session->phase == PHASE_CLOSED) {
        /* The stream broke while a value was read directly: close now. */
        *consumed = length;
        return true;
    }
    size_t position = 0;
    bool close = false;
    bool failed = false;
    while (!close && position < length && !session->output->failed && !session->frame_waiting) {
        const unsigned char *piece;
        switch (session->phase) {
        case PHASE_CLOSED:
            position = length;
            break;
        case PHASE_HEADER:
            piece = need(session, data, length, &position, STRATA_FRAME_HEADER_SIZE, &failed);
            if (piece != NULL) close = on_header(session, piece);
            break;
        case PHASE_NAMESPACE_LENGTH:
            piece = need(session, data, length, &position, 2, &failed);
            if (piece == NULL) break;
            session->namespace_length = (size_t)piece[0] | (size_t)piece[1] << 8;
            if (!take_body(session, 2 + session->namespace_length)) {
                close = fail_stream(session, STRATA_ERR_PROTOCOL, "namespace runs past the body");
                break;
            }
            session->phase = PHASE_NAMESPACE;
            if (session->namespace_length == 0) close = on_namespace(session, NULL, 0);
            break;
        case PHASE_NAMESPACE:
            piece = need(session, data, length, &position, session->namespace_length, &failed);
            if (piece != NULL) close = on_namespace(session, piece, session->namespace_length);
            break;
        case PHASE_ENTRY: {
            size_t size = entry_size(session->opcode);
            if (session->body_remaining < size) {
                close = fail_stream(session, STRATA_ERR_PROTOCOL,
                                    "entry runs past the end of the body");
                break;
            }
            piece = need(session, data, length, &position, size, &failed);
            if (piece != NULL) {
                session->body_remaining -= size;
                close = on_entry(session, piece);
            }
            break;
        }
        case PHASE_ENTRY_KEYS: {
            size_t size = (size_t)session->key_length + session->parent_length;
            piece = need(session, data, length, &position, size, &failed);
            if (piece != NULL) {
                session->body_remaining -= size;
                close = on_entry_keys(session, piece);
            }
            break;
        }
        case PHASE_VALUE_SMALL: {
            size_t size = (size_t)session->value_length;
            piece = need(session, data, length, &position, size, &failed);
            if (piece != NULL) {
                session->body_remaining -= size;
                unsigned char value[16384];
                stored_header_build(session, value);
                memcpy(value + NATIVE_VALUE_HEADER_SIZE, piece, size);
                session->statuses[session->entries_done] = finish_put(session, value, NULL);
                close = next_entry(session);
            }
            break;
        }
        case PHASE_VALUE_BLOCK: {
            struct value_block *block = session->block;
            uint64_t wanted = block->capacity - session->block_filled;
            size_t take = length - position < wanted ? length - position : (size_t)wanted;
            memcpy(block->data + session->block_filled, data + position, take);
            session->block_filled += take;
            position += take;
            if (session->block_filled == block->capacity) {
                session->block = NULL;
                session->statuses[session->entries_done] = finish_put(session, NULL, block);
                close = next_entry(session);
            }
            break;
        }
        case PHASE_SKIP: {
            size_t take = length - position < session->skip_remaining
                              ? length - position
                              : (size_t)session->skip_remaining;
            position += take;
            session->skip_remaining -= take;
            if (session->skip_remaining > 0) break;
            if (session->skip_then_next_entry) {
                session->skip_then_next_entry = false;
                close = next_entry(session);
            } else {
                session->phase = PHASE_HEADER;
            }
            break;
        }
        }
        if (failed) {
            close = fail_stream(session, STRATA_ERR_NO_MEMORY, "out of memory");
        }
    }
    *consumed = position;
    return close || session->output->failed;
}

bool native_session_direct_target(void *opaque, unsigned char **buffer, size_t *length) {
    struct native_session *session = opaque;
    if (session->phase != PHASE_VALUE_BLOCK) return false;
    struct value_block *block = session->block;
    *buffer = block->data + session->block_filled;
    *length = (size_t)(block->capacity - session->block_filled);
    return *length > 0;
}

void native_session_direct_filled(void *opaque, size_t length) {
    struct native_session *session = opaque;
    session->block_filled += length;
    if (session->block_filled == session->block->capacity) {
        struct value_block *block = session->block;
        session->block = NULL;
        session->statuses[session->entries_done] = finish_put(session, NULL, block);
        if (next_entry(session)) session->phase = PHASE_CLOSED;
    }
}

/* ---- sessions and the server --------------------------------------------------- */

struct native_server *native_server_create(const struct native_environment *environment) {
    struct native_server *server = calloc(1, sizeof(*server));
    if (server != NULL) server->environment = *environment;
    return server;
}

void native_server_destroy(struct native_server *server) {
    free(server);
}

void *native_session_open(struct native_server *server, uint64_t id, const char *peer,
                          struct output_queue *output, void (*resume)(void *handle),
                          void *resume_handle) {
    struct native_session *session = calloc(1, sizeof(*session));
    if (session == NULL) return NULL;
    session->server = server;
    session->output = output;
    session->resume = resume;
    session->resume_handle = resume_handle;
    session->id = id;
    snprintf(session->peer, sizeof(session->peer), "%s", peer);
    return session;
}

/* Frees a closed session that no read refers to any more. */
static void native_session_free(struct native_session *session) {
    if (session->block != NULL) value_block_release(session->block);
    drop_results(session);
    if (session->shm != NULL) munmap(session->shm, (size_t)session->shm_size);
    free(session->staging);
    free(session->keys);
    free(session->statuses);
    free(session->gets);
    free(session);
}

void native_session_close(void *opaque) {
    struct native_session *session = opaque;
    drop_results(session); /* reads still in flight release what they find */
    if (session->reads_pending > 0) {
        session->orphaned = true; /* the last read frees it (and its shared memory) */
        return;
    }
    native_session_free(session);
}
