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
 * leaves the entries before the one being received done, and nothing of that one.
 *
 * This file holds sessions, the frame parser, replies and the server; what each entry
 * does against the store is in native_batch.c (native_internal.h joins them). */
#include "engine/engine_options.h"
#include "net/net.h"
#include "proto/native/native_internal.h"

#include "base/clock.h"
#include "base/log.h"
#include "engine/namespaces.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

static const struct metric_definition native_metric_definitions[] = {
#define METRIC METRIC_DEFINITION
#define HISTOGRAM(...)
#include "proto/native/native_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, METRIC_COUNTER, NULL},
};

static const struct histogram_definition native_histogram_definitions[] = {
#define METRIC(...)
#define HISTOGRAM HISTOGRAM_DEFINITION
#include "proto/native/native_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, NULL, NULL, NULL, NULL},
};

struct metric_group native_metrics = {
    .name = "native",
    .metrics = native_metric_definitions,
    .histograms = native_histogram_definitions,
};

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

/* ---- replies ------------------------------------------------------------------- */

/* Counts the frame being answered (native_requests, and native_keys for the keys its
 * entries named, KEYS) and the time since its header arrived. Called once per answer,
 * error answers included, just before the answer is queued. */
static void count_answer(struct native_session *session, uint32_t keys) {
    metric_add(NATIVE_METRIC(native_requests), 1);
    if (keys > 0) metric_add(NATIVE_METRIC(native_keys), keys);
    int64_t started = session->frame_started_ns ? session->frame_started_ns : clock_monotonic_ns();
    metric_observe(NATIVE_HISTOGRAM(native_request), clock_monotonic_ns() - started);
}

/* Writes a response frame header (STRATA_FRAME_HEADER_SIZE bytes) into HEADER. */
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
    count_answer(session, 0);
    reply_error(session, status, message);
    log_event(LOG_WARNING, "protocol_error", "protocol=native client=%s error=\"%s\"",
              session->peer, message);
    session->phase = PHASE_CLOSED;
    return true;
}

/* Answers with an error and skips the rest of the body; the connection goes on. */
static void fail_frame(struct native_session *session, int32_t status, const char *message) {
    drop_results(session);
    count_answer(session, 0);
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

/* Queues the response to a finished GET frame: each entry's result, then its value, sent
 * from the item (copied when small, else by reference) or streamed from flash. Takes
 * over every item and stream the results hold, leaving their slots empty. */
static void reply_get_results(struct native_session *session) {
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    uint32_t count = session->count;
    uint64_t body_length = 0;
    for (uint32_t i = 0; i < count; i++) {
        body_length += STRATA_GET_RESULT_SIZE;
        if (session->gets[i].item != NULL || session->gets[i].stream != NULL) {
            body_length += session->gets[i].value_length;
        }
    }
    write_frame_header(header, session->opcode, session->request_id, body_length, count, STRATA_OK);
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
}

/* Queues the response to a finished frame. */
static void reply_results(struct native_session *session) {
    unsigned char header[STRATA_FRAME_HEADER_SIZE];
    uint32_t count = session->count;
    switch (session->opcode) {
    case STRATA_OP_AUTH:
        if (session->statuses[0] == STRATA_ERR_WRONGPASS) {
            reply_error(session, STRATA_ERR_WRONGPASS,
                        "WRONGPASS invalid username-password pair or user is disabled.");
            return;
        }
        if (session->statuses[0] != STRATA_OK) {
            char message[128];
            snprintf(message, sizeof(message),
                     "too many failed authentications from this client: try again in %lld ms",
                     (long long)session->auth_retry_ms);
            reply_error(session, session->statuses[0], message);
            return;
        }
        write_frame_header(header, session->opcode, session->request_id, 0, 0, STRATA_OK);
        output_queue_append(session->output, header, sizeof(header));
        return;
    case STRATA_OP_SHM_REGISTER:
        if (session->statuses[0] != STRATA_OK) {
            reply_error(session, session->statuses[0], session->shm_refusal);
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
    case STRATA_OP_GET:
        reply_get_results(session);
        return;
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
    case STRATA_OP_AUTH:
        return STRATA_AUTH_ENTRY_SIZE;
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
void native_finish_frame(struct native_session *session) {
    if (session->reads_pending > 0) {
        session->frame_waiting = true; /* finish_read() answers it; no input meanwhile */
        return;
    }
    uint8_t opcode = session->opcode;
    bool keyed =
        opcode != STRATA_OP_PING && opcode != STRATA_OP_AUTH && opcode != STRATA_OP_SHM_REGISTER;
    count_answer(session, keyed ? session->count : 0);
    reply_results(session);
    session->results_live = false; /* reply_results() took every item */
    session->phase = PHASE_HEADER;
}

/* Moves on after an entry: the next entry, or the end of the frame. */
bool native_next_entry(struct native_session *session) {
    session->entries_done++;
    if (session->entries_done < session->count) {
        session->phase = PHASE_ENTRY;
        return false;
    }
    if (session->body_remaining != 0) {
        return fail_stream(session, STRATA_ERR_PROTOCOL,
                           "bytes left in the body after its entries");
    }
    native_finish_frame(session);
    return false;
}

/* The frame header (STRATA_FRAME_HEADER_SIZE bytes at HEADER) has arrived: checks its magic,
 * version, opcode and lengths, and starts the frame. Returns true to close the
 * connection (the frame cannot be parsed past), false to go on. */
static bool on_header(struct native_session *session, const unsigned char *header) {
    session->frame_started_ns = clock_monotonic_ns();
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
    /* Who the connection is, as of this frame: one atomic load unless the users changed. */
    session->user =
        access_identity_current(session->server->environment.access, &session->identity);
    /* The cached rights belong to one user object: a new one (AUTH, a reload) starts the
     * cache afresh now, while the old object's address cannot have been reused. */
    if (session->user != session->rights_user) {
        session->rights_user = session->user;
        session->rights_known = 0;
    }
    if (session->user == NULL && session->opcode != STRATA_OP_AUTH) {
        return fail_stream(session, STRATA_ERR_NOAUTH,
                           "NOAUTH Authentication required: send an AUTH frame first");
    }
    session->body_remaining = strata_load64(header + 16);
    session->count = strata_load32(header + 24);
    session->argument = (int32_t)strata_load32(header + 28);
    session->entries_done = 0;
    session->matched = 0;
    session->match_stopped = false;
    session->ns = NULL;
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

/* The frame's namespace (LENGTH bytes at NAME) has arrived: finds it, or answers the
 * frame with an error and skips its body. Returns true to close the connection, false to
 * go on. */
static bool on_namespace(struct native_session *session, const unsigned char *name, size_t length) {
    uint8_t opcode = session->opcode;
    if (opcode >= STRATA_OP_COUNT) {
        fail_frame(session, STRATA_ERR_PROTOCOL, "unknown opcode");
        return false;
    }
    char message[160];
    if (opcode == STRATA_OP_PING || opcode == STRATA_OP_SHM_REGISTER || opcode == STRATA_OP_AUTH) {
        session->ns = NULL;
    } else {
        session->ns = namespace_find(session->server->environment.namespaces, name, length);
        if (!native_allowed(session, session->ns, name, length, message, sizeof(message))) {
            fail_frame(session, STRATA_ERR_NOPERM, message);
            return false;
        }
        if (session->ns == NULL) {
            snprintf(message, sizeof(message), "unknown namespace '%.*s'",
                     (int)(length > 64 ? 64 : length), (const char *)name);
            fail_frame(session, STRATA_ERR_NAMESPACE, message);
            return false;
        }
        if (store_recovering(session->ns->store)) {
            fail_frame(session, STRATA_ERR_BUSY,
                       "loading: the server is rebuilding its flash index; try again");
            return false;
        }
    }
    if ((opcode == STRATA_OP_PING && session->count != 0) ||
        ((opcode == STRATA_OP_SHM_REGISTER || opcode == STRATA_OP_AUTH) && session->count != 1) ||
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
        native_finish_frame(session);
        return false;
    }
    session->phase = PHASE_ENTRY;
    return false;
}

static bool on_entry_keys(struct native_session *session, const unsigned char *keys);

/* The fixed part of an entry has arrived. */
static bool on_entry(struct native_session *session, const unsigned char *entry) {
    size_t size = entry_size(session->opcode);
    memcpy(session->entry, entry, size);
    if (session->opcode == STRATA_OP_SHM_REGISTER) {
        session->statuses[0] = native_shm_register(session, entry);
        if (session->statuses[0] != STRATA_OK) {
            log_event(LOG_WARNING, "shm_refused", "client=%s reason=\"%s\"", session->peer,
                      session->shm_refusal);
        }
        return native_next_entry(session);
    }
    session->key_length = strata_load32(entry);
    session->entry_flags = 0;
    session->parent_length = 0;
    session->value_length = 0;
    if (session->opcode == STRATA_OP_AUTH) {
        /* The user name and the password ride where a key and its parent would. */
        session->parent_length = strata_load32(entry + 4);
        if (session->key_length > ACCESS_NAME_MAX || session->parent_length > ACCESS_PASSWORD_MAX) {
            return fail_stream(session, STRATA_ERR_PROTOCOL,
                               "AUTH user name over 128 bytes or password over 1024");
        }
    } else if (session->opcode == STRATA_OP_PUT) {
        session->entry_flags = strata_load32(entry + 4);
        session->value_length = strata_load64(entry + 8);
        if (session->entry_flags & STRATA_PUT_PARENT)
            session->parent_length = strata_load32(entry + 28);
    } else if (session->opcode == STRATA_OP_GET) {
        session->entry_flags = strata_load32(entry + 4);
    }
    if ((session->opcode != STRATA_OP_AUTH && session->key_length == 0) ||
        session->key_length > 65536 || session->parent_length > 65536 ||
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
    if (keys == 0) return on_entry_keys(session, NULL); /* AUTH as "default", no password */
    return false;
}

/* The key (and parent) of an entry have arrived. */
static bool on_entry_keys(struct native_session *session, const unsigned char *keys) {
    size_t size = (size_t)session->key_length + session->parent_length;
    if (size > 0) memcpy(session->keys, keys, size);
    uint32_t index = session->entries_done;
    switch (session->opcode) {
    case STRATA_OP_AUTH:
        if (size > 0 && keys == session->staging)
            explicit_bzero(session->staging, size); /* the password */
        session->statuses[0] = native_authenticate(session);
        return native_next_entry(session);
    case STRATA_OP_PUT:
        return native_start_put_value(session);
    case STRATA_OP_GET:
        native_start_get(session, &session->gets[index]);
        return native_next_entry(session);
    default:
        session->statuses[index] = native_key_entry(session);
        return native_next_entry(session);
    }
}

/* The namespace length (2 bytes at PIECE) has arrived. Returns true to close. */
static bool on_namespace_length(struct native_session *session, const unsigned char *piece) {
    session->namespace_length = (size_t)piece[0] | (size_t)piece[1] << 8;
    if (!take_body(session, 2 + session->namespace_length)) {
        return fail_stream(session, STRATA_ERR_PROTOCOL, "namespace runs past the body");
    }
    session->phase = PHASE_NAMESPACE;
    if (session->namespace_length == 0) return on_namespace(session, NULL, 0);
    return false;
}

/* A small PUT value (value_length bytes at PIECE, borrowed) has arrived: stores it with
 * its stored header in front. Returns true to close. */
static bool on_value_small(struct native_session *session, const unsigned char *piece) {
    size_t size = (size_t)session->value_length;
    session->body_remaining -= size;
    unsigned char value[16384];
    native_stored_header_build(session, value);
    memcpy(value + NATIVE_VALUE_HEADER_SIZE, piece, size);
    session->statuses[session->entries_done] = native_finish_put(session, value, NULL);
    return native_next_entry(session);
}

/* Copies what it can of the AVAILABLE bytes at DATA into the value block being filled,
 * advancing *POSITION past them; a full block is stored (the store takes it over).
 * Returns true to close. */
static bool fill_value_block(struct native_session *session, const unsigned char *data,
                             size_t available, size_t *position) {
    struct value_block *block = session->block;
    uint64_t wanted = block->capacity - session->block_filled;
    size_t take = available < wanted ? available : (size_t)wanted;
    memcpy(block->data + session->block_filled, data, take);
    session->block_filled += take;
    *position += take;
    if (session->block_filled < block->capacity) return false;
    session->block = NULL;
    session->statuses[session->entries_done] = native_finish_put(session, NULL, block);
    return native_next_entry(session);
}

/* Drops up to AVAILABLE bytes of what PHASE_SKIP skips, advancing *POSITION past them;
 * when the skip ends, moves on to the next entry or the next frame. Returns true to
 * close. */
static bool skip_bytes(struct native_session *session, size_t available, size_t *position) {
    size_t take = available < session->skip_remaining ? available : (size_t)session->skip_remaining;
    *position += take;
    session->skip_remaining -= take;
    if (session->skip_remaining > 0) return false;
    if (session->skip_then_next_entry) {
        session->skip_then_next_entry = false;
        return native_next_entry(session);
    }
    session->phase = PHASE_HEADER;
    return false;
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
            if (piece != NULL) close = on_namespace_length(session, piece);
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
            if (piece != NULL) close = on_value_small(session, piece);
            break;
        }
        case PHASE_VALUE_BLOCK:
            close = fill_value_block(session, data + position, length - position, &position);
            break;
        case PHASE_SKIP:
            close = skip_bytes(session, length - position, &position);
            break;
        }
        if (failed) {
            close = fail_stream(session, STRATA_ERR_NO_MEMORY, "out of memory");
        }
    }
    *consumed = position;
    return close || session->output->failed;
}

bool native_session_descriptor(void *opaque, int fd) {
    struct native_session *session = opaque;
    if (session->shm_descriptor >= 0) close(session->shm_descriptor);
    session->shm_descriptor = fd;
    return true;
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
        session->statuses[session->entries_done] = native_finish_put(session, NULL, block);
        if (native_next_entry(session)) session->phase = PHASE_CLOSED;
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

void *native_session_open(struct native_server *server, uint64_t id, const struct native_peer *peer,
                          struct output_queue *output, void (*resume)(void *handle),
                          void *resume_handle) {
    struct native_session *session = calloc(1, sizeof(*session));
    if (session == NULL) return NULL;
    session->server = server;
    session->output = output;
    session->resume = resume;
    session->resume_handle = resume_handle;
    session->id = id;
    session->shm_descriptor = -1;
    snprintf(session->peer, sizeof(session->peer), "%s", peer->name);
    session->unix_socket = peer->unix_socket;
    access_identity_init(server->environment.access, &session->identity);
    if (peer->unix_socket &&
        access_identify_peer(server->environment.access, &session->identity, peer->uid)) {
        log_event(LOG_DEBUG, "auth_peer", "protocol=native client=%s uid=%u", session->peer,
                  (unsigned)peer->uid);
    }
    return session;
}

/* Frees a closed session that no read refers to any more. */
void native_session_free(struct native_session *session) {
    if (session->block != NULL) value_block_release(session->block);
    drop_results(session);
    if (session->shm != NULL) munmap(session->shm, (size_t)session->shm_size);
    if (session->shm_descriptor >= 0) close(session->shm_descriptor);
    access_identity_release(&session->identity);
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
