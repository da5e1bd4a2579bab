/* The entries of a native batch, carried out against the store as each arrives: PUT
 * (its value from the stream or from shared memory), GET (answered now, or when its
 * read of flash ends), the key entries (EXISTS, DELETE, TOUCH, PIN, UNPIN,
 * MATCH_PREFIX) and SHM_REGISTER; and the stored value header a native PUT writes in
 * front of the value. The frame parser that calls these is in native.c. */
#include "engine/engine_options.h"
#include "proto/native/native_internal.h"

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "engine/namespaces.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Stored value header (NATIVE_VALUE_HEADER_SIZE bytes, in front of the value):
 *   0  u32 magic "SKV1"
 *   4  u32 flags (STORED_FINGERPRINT, STORED_DURABLE)
 *   8  u32 checksum of the value (CRC32C)
 *  12  u32 CRC32C of this header with these four bytes zero
 *  16  u8[16] fingerprint */
#define STORED_MAGIC       0x31564B53u
#define STORED_FINGERPRINT 1u
#define STORED_DURABLE     2u

/* ---- stored values ------------------------------------------------------------- */

/* The CRC32C of a stored header (at HEADER, NATIVE_VALUE_HEADER_SIZE bytes) with its own
 * check field taken as zero. */
static uint32_t stored_header_check(const unsigned char *header) {
    unsigned char copy[NATIVE_VALUE_HEADER_SIZE];
    memcpy(copy, header, sizeof(copy));
    memset(copy + 12, 0, 4);
    return crc32c(copy, sizeof(copy));
}

/* Writes the stored header for the entry being read into HEADER. */
void native_stored_header_build(const struct native_session *session, unsigned char *header) {
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

/* ---- store results ------------------------------------------------------------- */

/* The protocol status for a store status, in SPACE. */
static int32_t status_of(struct namespace *ns, enum store_status status) {
    switch (status) {
    case STORE_OK:
        return STRATA_OK;
    case STORE_NOT_FOUND:
        return STRATA_ERR_NOT_FOUND;
    case STORE_CONDITION_FAILED:
        return STRATA_ERR_EXISTS;
    case STORE_NO_MEMORY:
    case STORE_TOO_LARGE_FOR_BUDGET:
        if (ns->is_default) return STRATA_ERR_NO_MEMORY;
        atomic_fetch_add_explicit(&ns->quota_errors, 1, memory_order_relaxed);
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
    case STORE_WRONG_TYPE:
        return STRATA_ERR_NOT_NATIVE; /* a Redis hash: not a value a native PUT wrote */
    }
    return STRATA_ERR_IO;
}

/* Stores the PUT entry just read, whose value (header included) is VALUE or BLOCK. */
int32_t native_finish_put(struct native_session *session, const unsigned char *value,
                          struct value_block *block) {
    struct namespace *ns = session->ns;
    const unsigned char *data = block != NULL ? block->data : value;
    uint32_t checksum = strata_load32(session->entry + 24);
    if (crc32c(data + NATIVE_VALUE_HEADER_SIZE, session->value_length) != checksum) {
        if (block != NULL) value_block_release(block);
        atomic_fetch_add_explicit(&ns->checksum_failures, 1, memory_order_relaxed);
        char quoted[160];
        log_event(
            LOG_WARNING, "checksum_mismatch",
            "protocol=native client=%s namespace=%s key=%s during=put", session->peer, ns->name,
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
            store_set_block(ns->store, session->keys, session->key_length, block, &write, NULL);
    } else {
        status = store_set(ns->store, session->keys, session->key_length, value,
                           NATIVE_VALUE_HEADER_SIZE + session->value_length, &write, NULL);
    }
    atomic_fetch_add_explicit(&ns->puts, 1, memory_order_relaxed);
    return status_of(ns, status);
}

/* Checks a GET entry's value (its stored header, at HEADER, LENGTH bytes of value after
 * it) against what RESULT asked: a native value, the fingerprint, the caller's buffer.
 * Returns the entry's status (STRATA_OK: send it); sets checksum and value_length. */
static int32_t check_get(struct native_session *session, struct get_result *result,
                         const unsigned char *header, uint64_t stored_length) {
    struct namespace *ns = session->ns;
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
            atomic_fetch_add_explicit(&ns->fingerprint_mismatches, 1, memory_order_relaxed);
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
    struct namespace *ns = session->ns;
    atomic_fetch_add_explicit(&ns->checksum_failures, 1, memory_order_relaxed);
    char quoted[160];
    log_event(LOG_ERROR, "checksum_mismatch", "protocol=native namespace=%s key=%s during=get",
              ns->name, log_quote(quoted, sizeof(quoted), (const char *)key, key_length));
}

static void get_read_done(void *context, enum store_status status, struct store_value value);
static void finish_read(struct native_session *session);

/* A shared-memory GET of a value streamed from flash has been copied. */
static void get_copied(void *context, enum store_status status) {
    struct get_result *result = context;
    struct native_session *session = result->session;
    if (status != STORE_OK) {
        result->status = status_of(session->ns, status);
        result->value_length = 0;
    }
    finish_read(session);
}

/* Fills RESULT from what the read of its key found (STATUS, VALUE: taken over). A copy
 * into shared memory of a value streamed from flash counts as a read until it ends. */
static void settle_get(struct native_session *session, struct get_result *result,
                       enum store_status status, struct store_value value) {
    struct namespace *ns = session->ns;
    if (status != STORE_OK) {
        if (status == STORE_NOT_FOUND) {
            atomic_fetch_add_explicit(&ns->misses, 1, memory_order_relaxed);
        }
        result->status = status_of(ns, status);
        return;
    }
    atomic_fetch_add_explicit(&ns->hits, 1, memory_order_relaxed);
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
void native_start_get(struct native_session *session, struct get_result *result) {
    struct namespace *ns = session->ns;
    const unsigned char *entry = session->entry;
    *result = (struct get_result){
        .session = session,
        .flags = strata_load32(entry + 4),
        .capacity = strata_load64(entry + 8),
        .shm_offset = strata_load64(entry + 16),
    };
    memcpy(result->fingerprint, entry + 24, 16);
    atomic_fetch_add_explicit(&ns->gets, 1, memory_order_relaxed);
    struct store_read_options options = {.stream = true};
    struct store_value value;
    enum store_status status = store_read(ns->store, session->keys, session->key_length, &options,
                                          &value, get_read_done, result);
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
    native_finish_frame(session);
    session->resume(session->resume_handle); /* may close the connection: last */
}

/* Carries out a key entry (EXISTS, DELETE, TOUCH, PIN, UNPIN, MATCH_PREFIX). */
int32_t native_key_entry(struct native_session *session) {
    struct store *store = session->ns->store;
    const unsigned char *key = session->keys;
    size_t length = session->key_length;
    switch (session->opcode) {
    case STRATA_OP_EXISTS:
        return store_exists(store, key, length) ? STRATA_OK : STRATA_ERR_NOT_FOUND;
    case STRATA_OP_DELETE:
        return status_of(session->ns, store_delete(store, key, length, NULL));
    case STRATA_OP_TOUCH:
        return store_touch(store, key, length) ? STRATA_OK : STRATA_ERR_NOT_FOUND;
    case STRATA_OP_PIN:
        return status_of(session->ns, store_pin(store, key, length, session->argument));
    case STRATA_OP_UNPIN:
        return status_of(session->ns, store_pin(store, key, length, 0));
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

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

/* Checks that FD is a memfd the server may map as a region of SIZE bytes: a memfd (or
 * shmem file: only they answer F_GET_SEALS), sealed against shrinking, so that the
 * mapping can never lose pages under the server (a fault, not an error), and not
 * against writing, since GET values are written into it; exactly SIZE bytes. Returns
 * NULL, or why not (a constant string). */
static const char *shm_unusable(int fd, uint64_t size, char *reason, size_t reason_size) {
    struct stat status;
    if (fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
        return "the descriptor is not a memfd (not a regular file)";
    }
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) return "the descriptor is not a memfd (F_GET_SEALS fails on it)";
    if (!(seals & F_SEAL_SHRINK)) {
        return "the memfd is not sealed against shrinking (F_SEAL_SHRINK)";
    }
    if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) {
        return "the memfd is sealed against writing (F_SEAL_WRITE): GET values are written "
               "into it";
    }
    if (size == 0 || (uint64_t)status.st_size != size) {
        snprintf(reason, reason_size,
                 "the memfd's size (%llu bytes) is not the size the frame gives (%llu)",
                 (unsigned long long)status.st_size, (unsigned long long)size);
        return reason;
    }
    return NULL;
}

/* Maps the memfd the client passed for this SHM_REGISTER. Returns a status. */
int32_t native_shm_register(struct native_session *session, const unsigned char *entry) {
    int fd = session->shm_descriptor;
    session->shm_descriptor = -1; /* this frame uses it, whatever the outcome */
    uint64_t reserved = strata_load64(entry);
    uint64_t size = strata_load64(entry + 8);
    char reason[sizeof(session->shm_refusal)];
    const char *refusal = NULL;
    if (!session->unix_socket) {
        refusal = "shared memory needs the Unix socket (--unix-socket): the memfd is passed "
                  "with SCM_RIGHTS";
    } else if (fd < 0) {
        refusal = "no descriptor came with SHM_REGISTER: pass the memfd with SCM_RIGHTS on "
                  "the frame's first byte";
    } else if (reserved != 0) {
        refusal = "the SHM entry's first 8 bytes are reserved (0): the descriptor travels "
                  "with SCM_RIGHTS, not as a pid and number";
    } else {
        refusal = shm_unusable(fd, size, reason, sizeof(reason));
    }
    void *map = MAP_FAILED;
    if (refusal == NULL) {
        map = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            snprintf(reason, sizeof(reason), "cannot map the memfd: %s", strerror(errno));
            refusal = reason;
        }
    }
    if (fd >= 0) close(fd); /* the mapping keeps the memory */
    if (refusal != NULL) {
        snprintf(session->shm_refusal, sizeof(session->shm_refusal),
                 "shared memory refused: %.160s", refusal);
        return STRATA_ERR_SHM;
    }
    if (session->shm != NULL) munmap(session->shm, (size_t)session->shm_size);
    session->shm = map;
    session->shm_size = size;
    return STRATA_OK;
}

/* Starts receiving a PUT value (or takes it from shared memory). */
bool native_start_put_value(struct native_session *session) {
    uint32_t index = session->entries_done;
    struct options *options = session->server->environment.options;
    uint64_t max_value = (uint64_t)options_number(options, ENGINE_OPTION(max_value));
    bool from_shm = (session->entry_flags & STRATA_PUT_SHM) != 0;
    if (session->value_length > max_value) {
        session->statuses[index] = STRATA_ERR_TOO_LARGE;
        if (from_shm || session->value_length == 0) return native_next_entry(session);
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
            return native_next_entry(session);
        }
        struct value_block *block = value_block_create(total);
        if (block == NULL) {
            session->statuses[index] = STRATA_ERR_NO_MEMORY;
            return native_next_entry(session);
        }
        native_stored_header_build(session, block->data);
        memcpy(block->data + NATIVE_VALUE_HEADER_SIZE, session->shm + offset,
               session->value_length);
        session->statuses[index] = native_finish_put(session, NULL, block);
        return native_next_entry(session);
    }
    if (session->value_length == 0) {
        unsigned char header[NATIVE_VALUE_HEADER_SIZE];
        native_stored_header_build(session, header);
        session->statuses[index] = native_finish_put(session, header, NULL);
        return native_next_entry(session);
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
    native_stored_header_build(session, session->block->data);
    session->block_filled = NATIVE_VALUE_HEADER_SIZE;
    session->body_remaining -= session->value_length;
    session->phase = PHASE_VALUE_BLOCK;
    return false;
}
