/* The strata native protocol, version 1: the wire format shared by the server
 * (src/proto/native/native.c) and libstrata (client/strata.c). docs/protocol.md describes it
 * in prose; this header is its exact layout. Every integer is little-endian.
 *
 * A request is a 32-byte frame header, then BODY_LENGTH bytes of body: a 16-bit
 * namespace length and the namespace name, then COUNT entries of the opcode's kind.
 * The server answers every request with one response frame carrying the same
 * request id, in request order (requests may be pipelined). */
#ifndef STRATA_PROTOCOL_H
#define STRATA_PROTOCOL_H

#include <stdint.h>

/* Little-endian loads and stores of the wire's integers, for the server and clients. */
static inline void strata_store32(unsigned char *p, uint32_t value) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(value >> (8 * i));
}

static inline void strata_store64(unsigned char *p, uint64_t value) {
    strata_store32(p, (uint32_t)value);
    strata_store32(p + 4, (uint32_t)(value >> 32));
}

static inline uint32_t strata_load32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t strata_load64(const unsigned char *p) {
    return (uint64_t)strata_load32(p) | (uint64_t)strata_load32(p + 4) << 32;
}

#define STRATA_PROTOCOL_MAGIC    0x4E525453u /* "STRN" as little-endian bytes */
#define STRATA_PROTOCOL_VERSION  1
#define STRATA_FRAME_HEADER_SIZE 32

/* Frame header, requests and responses alike:
 *   0  u32 magic        STRATA_PROTOCOL_MAGIC
 *   4  u8  version      STRATA_PROTOCOL_VERSION
 *   5  u8  opcode       enum strata_opcode (a response repeats its request's)
 *   6  u16 flags        0 (reserved)
 *   8  u64 request_id   chosen by the client, echoed by the server
 *  16  u64 body_length  bytes of body after the header
 *  24  u32 count        entries in the body
 *  28  i32 argument     request: per opcode (a lease in ms for PIN and MATCH_PREFIX);
 *                       response: the frame status (0, or a negative STRATA_ERR_*; then
 *                       the body is a UTF-8 message and count is 0) */

enum strata_opcode {
    STRATA_OP_PING = 0,         /* no entries; answers an empty body */
    STRATA_OP_PUT = 1,          /* PUT entries; answers COUNT i32 statuses */
    STRATA_OP_GET = 2,          /* GET entries; answers COUNT GET results */
    STRATA_OP_EXISTS = 3,       /* key entries; answers COUNT i32 statuses */
    STRATA_OP_DELETE = 4,       /* key entries; answers COUNT i32 statuses */
    STRATA_OP_TOUCH = 5,        /* key entries; answers COUNT i32 statuses */
    STRATA_OP_MATCH_PREFIX = 6, /* key entries (a chain in order); answers one u32: how
                                   many leading keys are present (pinned for ARGUMENT ms
                                   when ARGUMENT > 0) */
    STRATA_OP_PIN = 7,          /* key entries; pins for ARGUMENT ms; i32 statuses */
    STRATA_OP_UNPIN = 8,        /* key entries; i32 statuses */
    STRATA_OP_SHM_REGISTER = 9, /* one SHM_REGISTER entry; answers an empty body */
    STRATA_OP_AUTH = 10,        /* one AUTH entry; answers an empty body (a refusal is a
                                   frame status: WRONGPASS or THROTTLED) */
};
#define STRATA_OP_COUNT 11

/* PUT entry: 56 bytes, then the key, the parent key, and (unless the value is in
 * shared memory) VALUE_LENGTH bytes of value.
 *   0  u32 key_length     1 to 65536
 *   4  u32 flags          STRATA_PUT_*
 *   8  u64 value_length
 *  16  u64 ttl_ms         0: no expiry
 *  24  u32 checksum       CRC32C (Castagnoli) of the value bytes
 *  28  u32 parent_length  0 unless STRATA_PUT_PARENT
 *  32  u8[16] fingerprint (meaningful with STRATA_PUT_FINGERPRINT)
 *  48  u64 shm_offset     with STRATA_PUT_SHM: where the value is in the region */
#define STRATA_PUT_ENTRY_SIZE 56
enum {
    STRATA_PUT_IF_ABSENT = 1,   /* store only if the key is absent (else STRATA_ERR_EXISTS) */
    STRATA_PUT_DURABLE = 2,     /* class durable: never evicted (counts against the quota) */
    STRATA_PUT_FINGERPRINT = 4, /* the value carries the fingerprint */
    STRATA_PUT_PARENT = 8,      /* the key is a link of a chain; the parent key follows */
    STRATA_PUT_SHM = 16,        /* the value is in the registered shared memory region */
};

/* GET entry: 40 bytes, then the key.
 *   0  u32 key_length
 *   4  u32 flags          STRATA_GET_*
 *   8  u64 capacity       the caller's buffer: a longer value is not sent
 *  16  u64 shm_offset     with STRATA_GET_SHM: where to put the value in the region
 *  24  u8[16] fingerprint (with STRATA_GET_FINGERPRINT: the value must carry this one)
 * GET result: 16 bytes, then (status 0, not shared memory) VALUE_LENGTH value bytes.
 *   0  i32 status         0, or a negative STRATA_ERR_*
 *   4  u32 checksum       CRC32C of the value, as given at PUT
 *   8  u64 value_length   with STRATA_ERR_BUFFER_TOO_SMALL: the length needed */
#define STRATA_GET_ENTRY_SIZE  40
#define STRATA_GET_RESULT_SIZE 16
enum {
    STRATA_GET_FINGERPRINT = 4,
    STRATA_GET_SHM = 16,
};

/* Key entry (EXISTS, DELETE, TOUCH, MATCH_PREFIX, PIN, UNPIN): u32 key_length, key. */
#define STRATA_KEY_ENTRY_SIZE 4

/* SHM_REGISTER entry: 16 bytes. Only on the server's Unix socket: the region's memfd
 * travels with the frame as SCM_RIGHTS ancillary data on the sendmsg() that carries
 * the frame's first byte. The server checks that it is a memfd sealed against
 * shrinking (F_SEAL_SHRINK), not against writing, of exactly SIZE bytes, and maps it
 * for this connection (a later SHM_REGISTER replaces it); otherwise the frame status
 * is STRATA_ERR_SHM and the descriptor is closed. Over TCP it is always refused.
 *   0  u64 reserved      0
 *   8  u64 size */
#define STRATA_SHM_ENTRY_SIZE 16

/* AUTH entry: 8 bytes, then the user name and the password (no terminators). A
 * connection to a server with users must send AUTH before any other frame (PING
 * included, as Redis does); another frame is answered STRATA_ERR_NOAUTH and the
 * connection is closed.
 *   0  u32 user_length      0 to 128; 0 means the user "default"
 *   4  u32 password_length  0 to 1024 */
#define STRATA_AUTH_ENTRY_SIZE 8

/* Statuses: per entry in responses, and the return values of libstrata. */
#define STRATA_OK                   0
#define STRATA_ERR_NOT_FOUND        (-1)  /* no such key */
#define STRATA_ERR_EXISTS           (-2)  /* if-absent PUT found the key */
#define STRATA_ERR_FINGERPRINT      (-3)  /* the value carries another fingerprint */
#define STRATA_ERR_CHECKSUM         (-4)  /* the value's bytes do not match its checksum */
#define STRATA_ERR_QUOTA            (-5)  /* the namespace is at its quota */
#define STRATA_ERR_NAMESPACE        (-6)  /* no such namespace */
#define STRATA_ERR_TOO_LARGE        (-7)  /* key or value over the server's limits */
#define STRATA_ERR_BUFFER_TOO_SMALL (-8)  /* the caller's buffer cannot hold the value */
#define STRATA_ERR_NO_MEMORY        (-9)  /* the server could not make room */
#define STRATA_ERR_BUSY             (-10) /* the flash writer is behind; try again */
#define STRATA_ERR_IO               (-11) /* the server's storage failed */
#define STRATA_ERR_PROTOCOL         (-12) /* malformed frame; the connection is closed */
#define STRATA_ERR_VERSION          (-13) /* unsupported protocol version */
#define STRATA_ERR_CONNECT          (-14) /* cannot connect */
#define STRATA_ERR_TIMEOUT          (-15) /* no answer within the timeout */
#define STRATA_ERR_CLOSED           (-16) /* the connection closed */
#define STRATA_ERR_INVALID          (-17) /* bad argument */
#define STRATA_ERR_NOT_NATIVE       (-18) /* the value was not written by a native PUT */
#define STRATA_ERR_SHM              (-19) /* shared memory missing, unusable or out of range */
#define STRATA_ERR_PARENT_MISSING   (-20) /* the parent key of a chained PUT is not present */
#define STRATA_ERR_SYSTEM           (-21) /* a system call failed (errno) */
#define STRATA_ERR_NOAUTH                                                                          \
    (-22)                          /* authentication required: AUTH first (frame status;           \
                                      the server closes the connection) */
#define STRATA_ERR_WRONGPASS (-23) /* unknown user, wrong password, or user off */
#define STRATA_ERR_NOPERM                                                                          \
    (-24) /* the user lacks the right on the namespace (frame                                      \
             status: nothing of the frame was done) */
#define STRATA_ERR_THROTTLED                                                                       \
    (-25) /* too many failed AUTHs from this client lately;                                        \
             refused unchecked, try later */

#endif
