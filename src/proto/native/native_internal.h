/* Shared by the files of the native front end (native.c: sessions, the frame parser,
 * replies and the server; native_batch.c: the entries of a batch, carried out against
 * the store, and the stored value header). Not used outside src/proto/native/. */
#ifndef STRATA_PROTO_NATIVE_INTERNAL_H
#define STRATA_PROTO_NATIVE_INTERNAL_H

#include "access/access.h"
#include "base/output_queue.h"
#include "engine/namespaces.h"
#include "engine/store.h"
#include "engine/value_block.h"
#include "proto/native/native.h"
#include "strata_protocol.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct namespace;

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

    /* Who the connection is (access/access.h), and the rights of that user on each
     * namespace, cached: rights[i] is valid for namespaces->list[i] when bit i of
     * rights_known is set, and the cache belongs to rights_user (a user of a newer
     * users table, after a reload or AUTH, starts it afresh). */
    struct access_identity identity;
    const struct access_user *user; /* the current user, as of the frame's header */
    const struct access_user *rights_user;
    uint64_t rights_known;
    uint8_t rights[NAMESPACE_MAX_COUNT];
    int64_t auth_retry_ms; /* AUTH refused as THROTTLED: how long to wait */
    bool unix_socket;      /* on the Unix socket: shared memory may be registered */

    /* Bytes of a piece that arrived split across reads. */
    unsigned char *staging;
    size_t staging_length;
    size_t staging_capacity;

    /* The frame being read. */
    uint8_t opcode;
    uint64_t request_id;
    int64_t frame_started_ns; /* monotonic time its header arrived (the latency histogram) */
    uint64_t body_remaining;  /* body bytes not yet consumed */
    uint32_t count;
    uint32_t entries_done;
    int32_t argument;
    size_t namespace_length;
    struct namespace *ns;
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

    /* The shared memory region registered on this connection; the descriptor passed for
     * the next SHM_REGISTER (-1: none); why the last SHM_REGISTER was refused. */
    unsigned char *shm;
    uint64_t shm_size;
    int shm_descriptor;
    char shm_refusal[192];

    /* GET entries whose value is being read from flash: the frame is answered when the
     * last one ends, and no more input is taken meanwhile once its entries are in. */
    uint32_t reads_pending;
    bool frame_waiting; /* every entry is in; the reply waits for the reads */
    bool orphaned;      /* the connection closed meanwhile: the last read frees it */
    void (*resume)(void *handle);
    void *resume_handle;
};

/* ---- native.c: the frame parser ------------------------------------------------ */

/* Moves on after an entry: the next entry, or the end of the frame. Returns true when
 * the stream is broken (an error frame is queued; close the connection). */
bool native_next_entry(struct native_session *session);

/* The frame's entries are all read: answer it, or, while GET reads are pending, mark it
 * waiting (the last read, in native_batch.c, answers it then). */
void native_finish_frame(struct native_session *session);

/* Frees a closed session that no read refers to any more. */
void native_session_free(struct native_session *session);

/* ---- native_batch.c: the entries of a batch ------------------------------------ */

/* Writes the stored header for the entry being read into HEADER
 * (NATIVE_VALUE_HEADER_SIZE bytes, owned by the caller). */
void native_stored_header_build(const struct native_session *session, unsigned char *header);

/* Stores the PUT entry just read, whose value (header included) is VALUE (borrowed) or
 * BLOCK (taken over: stored or released). Returns the entry's status. */
int32_t native_finish_put(struct native_session *session, const unsigned char *value,
                          struct value_block *block);

/* Starts receiving a PUT value (or takes it from shared memory): sets the session's
 * phase to gather or skip it, or stores it at once and moves on to the next entry.
 * Returns true when the stream is broken (close the connection). */
bool native_start_put_value(struct native_session *session);

/* Starts the GET entry just read; its result goes into RESULT, now or when its read
 * ends (a value on flash is read through the worker's io_ring). */
void native_start_get(struct native_session *session, struct get_result *result);

/* Carries out a key entry (EXISTS, DELETE, TOUCH, PIN, UNPIN, MATCH_PREFIX). Returns
 * its status. */
int32_t native_key_entry(struct native_session *session);

/* ---- native_access.c: who may do what ------------------------------------------ */

/* Checks that the session's user (session->user, not NULL) has the rights the frame's
 * opcode needs on namespace NS (found by the caller), or on the namespace called NAME
 * (LENGTH bytes) when NS is NULL (it does not exist: a user without the right hears
 * NOPERM, not whether it exists). Cached per namespace while the user stays the same.
 * Returns true when allowed; false after writing a NOPERM message into MESSAGE (SIZE
 * bytes) and counting the refusal. */
bool native_allowed(struct native_session *session, struct namespace *ns, const unsigned char *name,
                    size_t length, char *message, size_t size);

/* Carries out the AUTH entry just read (user name then password in session->keys, both
 * wiped afterwards): on success the session's identity becomes that user. Returns the
 * entry's status (STRATA_OK, STRATA_ERR_WRONGPASS, STRATA_ERR_THROTTLED); the slow
 * password check runs on the calling worker thread. */
int32_t native_authenticate(struct native_session *session);

/* Maps the memfd the client passed with SCM_RIGHTS (session->shm_descriptor, taken
 * over and closed) as described by ENTRY (its fixed part, borrowed; see
 * STRATA_OP_SHM_REGISTER), replacing any region mapped before. Returns a status; a
 * refusal says why in session->shm_refusal. */
int32_t native_shm_register(struct native_session *session, const unsigned char *entry);

#endif
