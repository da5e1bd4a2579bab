/* The store API: what every protocol front end calls. No protocol knowledge here.
 *
 * A store maps keys (1 byte to 64 KiB, binary) to values (0 bytes to max-value,
 * binary) with an optional expiry time. It lives in a DRAM tier with a hard byte
 * budget that counts every byte the tier allocates; when a write needs room, items
 * are evicted by S3-FIFO (see docs/engine.md).
 *
 * Threads: every function may be called from any thread at the same time. Reads
 * return a reference to an immutable item: the caller may use the value without any
 * lock until it calls item_release(); a later write of the same key creates a new
 * item and never disturbs a reader of the old one.
 *
 * Times are milliseconds since the Unix epoch; an expiry time of 0 means none. */
#ifndef STRATA_ENGINE_STORE_H
#define STRATA_ENGINE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct output_queue;
struct store;
struct item;
struct value_block;

/* Longest key, in bytes. */
#define STORE_MAX_KEY_LENGTH 65536

/* Values of at least this many bytes live in their own value block (shared by
 * copies, sent without copying, appended to in place); smaller ones live inside the
 * item. The RESP parser receives arguments this large straight into a block. */
#define STORE_BLOCK_THRESHOLD (16 * 1024)

enum store_status {
    STORE_OK = 0,
    STORE_NOT_FOUND,            /* no live item under the key */
    STORE_CONDITION_FAILED,     /* a write's condition (absent, present, unchanged) was false */
    STORE_NO_MEMORY,            /* eviction could not make room within the budget */
    STORE_TOO_LARGE_FOR_BUDGET, /* the item is larger than the whole budget */
    STORE_KEY_TOO_LARGE,        /* key longer than STORE_MAX_KEY_LENGTH */
    STORE_VALUE_TOO_LARGE,      /* value longer than max-value */
    STORE_ALLOCATION_FAILED,    /* the system allocator refused */
    STORE_PENDING,              /* a flash read is in flight; its callback will run */
    STORE_FLASH_BUSY,           /* the write waited pace-timeout for the flash writer */
    STORE_IO_ERROR,             /* flash I/O failed (details in the log) */
    STORE_PARENT_MISSING,       /* a chained write's parent key is not present */
    STORE_WRONG_TYPE,           /* the key holds a value of another type (a hash, not a string) */
};

/* What a value is. A string is bytes as written; the other types are bytes in the
 * encoding of the front end that made them (RESP's hashes, lists, sets, sorted sets and streams:
 * docs/redis-compatibility.md), which the engine never looks into. A value of any type
 * moves to flash and back whole, its type in the record's flags and the flash index node. */
enum store_type {
    STORE_TYPE_STRING = 0,
    STORE_TYPE_HASH = 1,
    STORE_TYPE_LIST = 2,
    STORE_TYPE_SET = 3,
    STORE_TYPE_ZSET = 4, /* a sorted set */
    STORE_TYPE_STREAM = 5,
    STORE_TYPE_LAST = STORE_TYPE_STREAM, /* the highest type (3 bits in an item's flags) */
};

/* A short English description of a status ("out of memory"). */
const char *store_status_text(enum store_status status);

enum store_fsync {
    STORE_FSYNC_NEVER = 0,
    STORE_FSYNC_EVERYSEC,
    STORE_FSYNC_ALWAYS,
};

/* The flash tier (docs/flash-tier.md). A size of 0 turns it off. */
struct store_flash_config {
    const char *directory;
    uint64_t size;           /* bytes of segment files at most */
    uint64_t segment_size;   /* bytes per segment file */
    bool write_through;      /* every write reaches flash before it is acknowledged */
    enum store_fsync fsync;  /* when written segments are synced */
    int64_t pace_timeout_ms; /* longest a write waits for the flash writer */
};

struct store_config {
    uint64_t memory_budget; /* bytes */
    uint64_t max_value;     /* bytes */
    unsigned shards;        /* index shards, a power of two; 0 means the default (256) */
    struct store_flash_config flash;
    /* Tail-first eviction: keys written within the same window of this many milliseconds
     * leave DRAM newest first, the oldest window first, so chunks of one request written
     * in order leave tail first and what stays is a prefix. 0: S3-FIFO order. */
    uint32_t tail_first_window_ms;
    /* Comma-separated key suffixes (at most 8, e.g. "kv_bytes,metadata"): keys that
     * differ only in one of them are evicted together. NULL or "": none. Copied. */
    const char *evict_together;
};

/* Creates a store. With a flash tier, the store starts *recovering*: a thread rebuilds
 * the index of what the flash directory holds (from the saved index, or by scanning the
 * segments) while the caller goes on (a server opens its ports and answers that it is
 * loading). While store_recovering() is true no other store function may be called but
 * store_get_stats(), store_get_flash_stats(), store_count*(), store_set_budget(),
 * store_set_pace_timeout(), store_set_max_value(), store_expire_cycle() (which does
 * nothing meanwhile) and store_shutdown()/store_destroy() (which stop the recovery).
 * Returns NULL with a reason in ERROR if the budget cannot even hold the store's fixed
 * structures, memory is short, or the flash directory cannot be used. */
struct store *store_create(const struct store_config *config, char *error, size_t error_size);

/* Whether the store is still rebuilding its flash index (see store_create()). */
bool store_recovering(const struct store *store);

/* Waits until the store has recovered (for tools and tests). */
void store_wait_ready(const struct store *store);

/* Destroys a store and every item in it. No other thread may use it any more, and
 * every item reference must have been released. The flash tier's writer finishes what
 * is queued, but DRAM-only items are not written and the index is not saved (as after
 * a crash): call store_shutdown() first for a clean stop. */
void store_destroy(struct store *store);

/* A clean stop of the flash tier: writes every DRAM item that has no copy on flash (as
 * far as flash has room) and saves the flash index, so the next start is warm without
 * a scan. No other thread may use the store any more. Does nothing without flash. */
void store_shutdown(struct store *store);

/* ---- items -------------------------------------------------------------------- */

/* The key of an item; sets *length. */
const unsigned char *item_key(const struct item *item, size_t *length);

/* The value bytes of an item (item_value_length() of them). */
const unsigned char *item_value(const struct item *item);
uint64_t item_value_length(const struct item *item);

/* Whether the item was built from a record read back from flash (its value passed the
 * record's checksum on the way). Fixed for the item's life: safe with only a reference. */
bool item_from_flash(const struct item *item);

/* The type of the value ITEM holds (or a flash index node: always a string). Fixed for
 * the item's life: safe with only a reference. */
enum store_type item_type(const struct item *item);

/* Drops a reference returned by a store function. */
void item_release(struct item *item);

/* item_release() with a void pointer, for output_queue_append_reference(). */
void item_release_callback(void *item);

/* ---- reads -------------------------------------------------------------------- */

/* Looks up KEY, a string (STORE_WRONG_TYPE for a value of another type). On STORE_OK,
 * *item holds a reference the caller must release. Counts
 * a keyspace hit or miss and marks the item as recently used. A value that lives only
 * on flash is read (blocking the calling thread) and brought back to DRAM. For threads
 * without an io_ring (tests, tools); network workers use store_read(). */
enum store_status store_get(struct store *store, const void *key, size_t key_length,
                            struct item **item);

struct store_stream;

/* What a read found: the whole value in DRAM (a reference to an item), or a value too
 * large to bring into DRAM whole, to be sent from flash piece by piece (a stream). At
 * most one is set; the caller owns it (item_release(), or store_stream_send() or
 * store_stream_close()). */
struct store_value {
    struct item *item;
    struct store_stream *stream;
    bool held; /* the read took the hold asked for: end it with store_release_hold() */
};

struct store_read_options {
    /* Bring the value back to DRAM whatever the promotion policy says (a command is
     * about to read and change it there). */
    bool promote;
    /* With promote: keep the key from leaving DRAM until store_release_hold(), so the
     * command that follows finds it there without reading flash again. */
    bool hold;
    /* Read a value of any type (RENAME, COPY, EXPIRE bring any key back); otherwise a key
     * holding a value that is not a string answers STORE_WRONG_TYPE (GET, the native
     * protocol, HTTP). */
    bool any_type;
    /* The caller can take a stream: a value larger than a quarter of the DRAM budget
     * (or one that DRAM cannot make room for) is not read whole. Otherwise such a read
     * fails with STORE_TOO_LARGE_FOR_BUDGET or STORE_NO_MEMORY. */
    bool stream;
};

/* Called when a read that store_read() answered with STORE_PENDING ends, on the thread
 * that started it: STORE_OK with VALUE (the callee's), STORE_NOT_FOUND, or an error. */
typedef void (*store_read_done)(void *context, enum store_status status, struct store_value value);

/* Looks up KEY like store_get(), without ever blocking the calling thread on flash when
 * it has an io_ring (base/io_ring.h, every network worker): a value that lives only on
 * flash is read through the ring, STORE_PENDING is returned and DONE runs later on this
 * thread. Otherwise returns STORE_OK with *VALUE set, STORE_NOT_FOUND, or an error
 * (DONE does not run). Without a ring, flash is read synchronously. A value read from
 * flash moves back to DRAM on its second read (docs/flash-tier.md), or at once with
 * OPTIONS->promote. */
enum store_status store_read(struct store *store, const void *key, size_t key_length,
                             const struct store_read_options *options, struct store_value *value,
                             store_read_done done, void *context);

/* Ends a hold that store_read() took (OPTIONS->hold) on KEY. */
void store_release_hold(struct store *store, const void *key, size_t key_length);

/* Reads KEY's value length from the index, without reading the value (STRLEN). Returns
 * STORE_OK, STORE_NOT_FOUND, or STORE_WRONG_TYPE when it holds a value that is not a
 * string. */
enum store_status store_value_length(struct store *store, const void *key, size_t key_length,
                                     uint64_t *length);

/* What OBJECT and MEMORY USAGE tell about a key (store_key_info()). */
struct store_key_info {
    /* DRAM bytes the key takes, as the budget charges them: its item's allocation and,
     * for a value of STORE_BLOCK_THRESHOLD bytes or more, its value block's (counted in
     * full even when COPY shares the block with another key). For a value that lives
     * only on flash: its flash index entry (the key and 32 bytes), not the value. */
    uint64_t memory_bytes;
    uint64_t value_length;
    uint8_t frequency; /* S3-FIFO's 2-bit access count, 0 to 3; 0 when only on flash */
    enum store_type type;
    bool on_flash_only; /* the value is on flash, not in DRAM */
    /* The whole value when it is in DRAM and at most sizeof(head) bytes long (so that an
     * integer can be recognised without a read); head_length is 0 otherwise. */
    unsigned char head[24];
    size_t head_length;
};

/* Fills *INFO about KEY from the index, without reading flash and without counting a
 * hit, a miss or an access. Returns STORE_OK or STORE_NOT_FOUND. */
enum store_status store_key_info(struct store *store, const void *key, size_t key_length,
                                 struct store_key_info *info);

/* ---- streams: values sent from flash piece by piece --------------------------- */

/* The value's length. */
uint64_t store_stream_length(const struct store_stream *stream);

/* The first bytes of the value, already read and inside a record whose header was
 * checked (the rest is checked as it streams): sets *LENGTH (at least the first 64 KiB,
 * or the whole value when shorter). */
const unsigned char *store_stream_head(const struct store_stream *stream, size_t *length);

/* Appends bytes [OFFSET, OFFSET + LENGTH) of the value to QUEUE as a stream chunk
 * (base/output_queue.h), fed as flash reads complete on this thread's io_ring; WAKE(
 * WAKE_CONTEXT) is called (last, on this thread) whenever a piece has been added later,
 * so the connection sends it. It is not called from inside this call: the caller
 * resumes the connection once its reply is queued. The whole record is read and its checksum
 * verified before the piece holding the last requested byte is added: a record that fails is never
 * sent whole (the queue fails, and its connection closes). Takes over STREAM. Returns false if the
 * chunk could not be queued (the queue has failed; STREAM is closed). */
bool store_stream_send(struct store_stream *stream, uint64_t offset, uint64_t length,
                       struct output_queue *queue, void (*wake)(void *context), void *wake_context);

/* Called when store_stream_copy() ends: STORE_OK, or an error (the destination holds
 * part of the value, or bytes that failed their checksum). */
typedef void (*store_copy_done)(void *context, enum store_status status);

/* Copies bytes [OFFSET, OFFSET + LENGTH) of the value into DESTINATION (shared memory),
 * reading the whole record and checking its checksum; DONE runs on this thread when it
 * ends. Takes over STREAM. Returns STORE_PENDING (DONE will run) or an error. */
enum store_status store_stream_copy(struct store_stream *stream, uint64_t offset, uint64_t length,
                                    unsigned char *destination, store_copy_done done,
                                    void *context);

/* Gives a stream up without sending it. */
void store_stream_close(struct store_stream *stream);

/* Sets *VERSION to a number that changes whenever KEY changes: written, deleted, expired,
 * evicted, its expiry set or removed, or flushed (WATCH compares it at EXEC). It also
 * changes, rarely, when another key sharing its counter changes (1 in 65,536 keys) or
 * when KEY comes back from flash to DRAM: a transaction then fails when it need not, never
 * the other way round. The first call allocates the counters (256 KiB, counted in the
 * budget); returns false when that fails. Any thread, no lock held. */
bool store_key_version(struct store *store, const void *key, size_t key_length, uint32_t *version);

/* Reports whether KEY holds a live item, without marking it used. */
bool store_exists(struct store *store, const void *key, size_t key_length);

/* Marks KEY as used. Returns true if it holds a live item. */
bool store_touch(struct store *store, const void *key, size_t key_length);

/* Reads KEY's expiry time into *expire_at_ms (0: none). Returns STORE_NOT_FOUND if
 * there is no live item. */
enum store_status store_get_expiry(struct store *store, const void *key, size_t key_length,
                                   int64_t *expire_at_ms);

/* ---- writes ------------------------------------------------------------------- */

enum store_condition {
    STORE_ALWAYS = 0,
    STORE_IF_ABSENT,  /* NX */
    STORE_IF_PRESENT, /* XX */
};

enum store_expiry_mode {
    STORE_EXPIRY_CLEAR = 0, /* the new item has no expiry */
    STORE_EXPIRY_SET,       /* the new item expires at expire_at_ms */
    STORE_EXPIRY_KEEP,      /* the new item keeps the replaced item's expiry */
};

struct store_write {
    enum store_condition condition;
    enum store_expiry_mode expiry;
    int64_t expire_at_ms; /* with STORE_EXPIRY_SET; a time already past deletes the key */
    /* The key's parent in a KV-cache chain, or NULL. The write is refused with
     * STORE_PARENT_MISSING when the parent is not present. While the key is present its
     * parent is not evicted before it (without a flash tier; with one, the parent moves
     * to flash instead), so a chain loses its tail first (docs/kv-cache.md). */
    const void *parent;
    size_t parent_length;
    /* Class durable: the value is never chosen for eviction (nor moved to flash, whose
     * reclaim could drop it) while it is present. Set with the write itself, so no
     * eviction can come between the write and its protection. Otherwise class cache. */
    bool durable;
};

/* Stores VALUE under KEY (copying it). When PREVIOUS is not NULL, *previous receives a
 * reference to the item that was there before (or NULL), whether or not the write
 * happened. Returns STORE_OK, STORE_CONDITION_FAILED, or an error (nothing changed). */
enum store_status store_set(struct store *store, const void *key, size_t key_length,
                            const void *value, uint64_t value_length,
                            const struct store_write *write, struct item **previous);

/* As store_set(), with the value in BLOCK (its length bytes). The store takes over
 * the caller's reference to BLOCK in every case: adopts it on success, releases it
 * otherwise. */
enum store_status store_set_block(struct store *store, const void *key, size_t key_length,
                                  struct value_block *block, const struct store_write *write,
                                  struct item **previous);

/* Replaces KEY's item with VALUE only if the current item is still EXPECTED (NULL:
 * only if KEY holds no live item). The caller holds a reference to EXPECTED, so it
 * cannot be reused meanwhile. With KEEP_EXPIRY the new item keeps the old expiry.
 * This is the building block of read-modify-write commands (INCR, SETRANGE). */
enum store_status store_replace_if_unchanged(struct store *store, const void *key,
                                             size_t key_length, const struct item *expected,
                                             const void *value, uint64_t value_length,
                                             bool keep_expiry, enum store_type type);

/* As store_replace_if_unchanged(), but a value of STORE_BLOCK_THRESHOLD bytes or more
 * gets a block with room to grow (as APPEND's: as much again, up to 1 MiB more), so
 * that the next store_edit_in_place() on it can grow it in place. The room is charged
 * to the budget. For values that change at their ends often (lists). */
enum store_status store_replace_if_unchanged_with_room(struct store *store, const void *key,
                                                       size_t key_length,
                                                       const struct item *expected,
                                                       const void *value, uint64_t value_length,
                                                       bool keep_expiry, enum store_type type);

/* An edit of a value's bytes in place, for store_edit_in_place(). VALUE holds *LENGTH
 * bytes in a buffer of CAPACITY bytes (never more than the store's max-value); the
 * function may rewrite, grow (up to CAPACITY), shrink or move them, and sets *LENGTH to
 * the new length (at least 1). It returns false to decline, having changed nothing: the
 * caller then makes the change another way (store_replace_if_unchanged_with_room()).
 * It runs with the key's shard locked: it must be short, must not call into the store
 * and should not allocate more than what it hands back (popped bytes). */
typedef bool (*store_edit_fn)(void *context, unsigned char *value, uint64_t *length,
                              uint64_t capacity);

/* Changes KEY's value of TYPE in place with EDIT, under the key's shard lock, when that
 * is safe: the value lives in a value block, nobody but the index holds the item or
 * the block (no reader sees the bytes change), and it has no copy on flash (which would
 * go stale). Keeps the type, the expiry and the item; counts the length change in the
 * S3-FIFO queue's bytes (the budget charged the block's whole capacity already), marks
 * the item used and bumps the key's WATCH version. Returns STORE_OK when EDIT changed
 * the value, STORE_NOT_FOUND when KEY is absent, STORE_WRONG_TYPE when it holds another
 * type, STORE_CONDITION_FAILED when the value cannot be edited in place (shared, a small
 * value not in a block, on flash only or with a flash copy) or EDIT declined: then the
 * caller falls back to a read-modify-write by compare-and-swap. Never blocks on flash. */
enum store_status store_edit_in_place(struct store *store, const void *key, size_t key_length,
                                      enum store_type type, store_edit_fn edit, void *context);

/* As store_edit_in_place(), and also for a value small enough to be held in its item
 * (below STORE_BLOCK_THRESHOLD): EDIT then gets a CAPACITY equal to *LENGTH and must
 * leave *LENGTH as it is (it declines a change that would not keep the length). For
 * changes that often keep a value's length: a hash field set to a value as long as the
 * one it had. */
enum store_status store_overwrite_in_place(struct store *store, const void *key, size_t key_length,
                                           enum store_type type, store_edit_fn edit, void *context);

/* Removes KEY only if it still holds EXPECTED (a DRAM item the caller holds a reference
 * to). Returns STORE_OK or STORE_CONDITION_FAILED. (HDEL of a hash's last field.) */
enum store_status store_delete_if_unchanged(struct store *store, const void *key, size_t key_length,
                                            const struct item *expected);

/* Looks KEY up for a command on a value of TYPE, which is not a string (those are read
 * with store_read()). On STORE_OK, *item holds a reference the caller must release.
 * Returns STORE_NOT_FOUND when KEY is absent, STORE_WRONG_TYPE when it holds another
 * type, or a flash read's error. A value of TYPE that lives on flash is read back to DRAM
 * first, blocking the caller: network workers bring the key back beforehand with an
 * asynchronous store_read() (promote, hold, any_type). Counts a hit or a miss and marks
 * the item used. */
enum store_status store_get_typed(struct store *store, const void *key, size_t key_length,
                                  enum store_type type, struct item **item);

/* Sets *TYPE to the type of KEY's value, without marking it used (TYPE). Returns
 * STORE_OK or STORE_NOT_FOUND. */
enum store_status store_key_type(struct store *store, const void *key, size_t key_length,
                                 enum store_type *type);

/* Appends DATA to KEY's value (creating it if absent), keeping the expiry. Large
 * values grow in place when no reader holds them. Sets *new_length. STORE_WRONG_TYPE
 * when KEY holds a value that is not a string. */
enum store_status store_append(struct store *store, const void *key, size_t key_length,
                               const void *data, uint64_t data_length, uint64_t *new_length);

/* Removes KEY. When REMOVED is not NULL, *removed receives a reference to the removed
 * item. Returns STORE_OK or STORE_NOT_FOUND. */
enum store_status store_delete(struct store *store, const void *key, size_t key_length,
                               struct item **removed);

/* Pins KEY against eviction (from DRAM, and so from the store) until LEASE_MS
 * milliseconds from now (a longer lease already held stays), or ends its pin when
 * LEASE_MS is 0. A pin also ends when the key is deleted, overwritten or expires.
 * Returns STORE_OK, STORE_NOT_FOUND (no live key) or STORE_NO_MEMORY. */
enum store_status store_pin(struct store *store, const void *key, size_t key_length,
                            int64_t lease_ms);

enum store_expiry_condition {
    STORE_EXPIRY_ALWAYS = 0,
    STORE_EXPIRY_IF_NONE,    /* NX: only if the key has no expiry */
    STORE_EXPIRY_IF_ANY,     /* XX: only if the key has an expiry */
    STORE_EXPIRY_IF_GREATER, /* GT: only if later than the current one (none is forever) */
    STORE_EXPIRY_IF_LESS,    /* LT: only if earlier than the current one (none is forever) */
};

/* Sets KEY's expiry to EXPIRE_AT_MS (0 removes it; a time already past deletes the
 * key) if CONDITION holds. When ITEM is not NULL, *item receives a reference to the
 * item as it was found (GETEX). Returns STORE_OK, STORE_NOT_FOUND or
 * STORE_CONDITION_FAILED. */
enum store_status store_set_expiry(struct store *store, const void *key, size_t key_length,
                                   int64_t expire_at_ms, enum store_expiry_condition condition,
                                   struct item **item);

/* Moves SOURCE's value and expiry to DESTINATION, replacing what was there unless
 * ONLY_IF_ABSENT. Atomic. Returns STORE_OK, STORE_NOT_FOUND (no source) or
 * STORE_CONDITION_FAILED (destination exists and ONLY_IF_ABSENT). */
enum store_status store_rename(struct store *store, const void *source, size_t source_length,
                               const void *destination, size_t destination_length,
                               bool only_if_absent);

/* Copies SOURCE's value and expiry to DESTINATION (sharing large values). Returns
 * STORE_OK, STORE_NOT_FOUND or STORE_CONDITION_FAILED (destination exists and not
 * REPLACE). */
enum store_status store_copy(struct store *store, const void *source, size_t source_length,
                             const void *destination, size_t destination_length, bool replace);

struct store_pair {
    const void *key;
    size_t key_length;
    const void *value;         /* copied, when block is NULL */
    uint64_t value_length;     /* when block is NULL */
    struct value_block *block; /* or the value in a block; the store takes the reference */
};

/* Stores COUNT pairs atomically (MSET). With ONLY_IF_NONE_EXIST nothing is stored
 * if any key exists (MSETNX) and STORE_CONDITION_FAILED is returned. The store takes
 * over every pair's block reference in every case. */
enum store_status store_set_many(struct store *store, size_t count, const struct store_pair *pairs,
                                 bool only_if_none_exist);

/* A key named ahead of the command that will look it up (store_prefetch()). */
struct store_key {
    const void *key;
    size_t length;
};

/* Most keys one store_prefetch() call looks at; the rest are ignored. */
#define STORE_PREFETCH_MAX 32

/* A hint: asks the CPU to bring into cache the index buckets and the first index node
 * of each of KEYS (COUNT of them; at most STORE_PREFETCH_MAX are used), so a pipelined
 * batch of commands waits on memory once for all its keys instead of once per key
 * (docs/performance.md). Changes nothing in the store. Takes and releases each key's
 * shard lock: call it with no shard lock held. */
void store_prefetch(struct store *store, const struct store_key *keys, size_t count);

/* ---- the keyspace ------------------------------------------------------------- */

/* Items stored (including expired ones not yet reclaimed). */
uint64_t store_count(struct store *store);

/* Items stored that have an expiry time. */
uint64_t store_count_expiring(struct store *store);

/* Removes every item. */
void store_flush(struct store *store);

/* Returns a reference to a random live item in *item, or STORE_NOT_FOUND if empty. */
enum store_status store_random(struct store *store, struct item **item);

/* Called for each live item a scan visits, with the item's shard locked: it must not
 * call the store, and may retain the item only by copying what it needs. */
typedef void (*store_visit_fn)(void *context, const struct item *item);

/* Visits about COUNT items from CURSOR (0 to start) and returns the cursor to continue
 * from, or 0 when the scan is complete. Every item present for the whole scan is
 * visited at least once, even if the index grows or shrinks meanwhile. */
uint64_t store_scan(struct store *store, uint64_t cursor, size_t count, store_visit_fn visit,
                    void *context);

/* Returns true if CURSOR could have come from store_scan(). */
bool store_scan_cursor_valid(const struct store *store, uint64_t cursor);

/* Active expiry: examines up to BUCKETS index buckets of shards holding expiring
 * items and removes the expired items found. Returns how many were removed. Run it
 * periodically off the request path. */
size_t store_expire_cycle(struct store *store, size_t buckets);

/* ---- budget and statistics ---------------------------------------------------- */

/* Changes the budget. A smaller budget evicts down to it as far as items can be
 * evicted (items being sent to clients are freed when the send ends). */
void store_set_budget(struct store *store, uint64_t bytes);

/* Changes how long a write may wait for the flash writer (pace-timeout). */
void store_set_pace_timeout(struct store *store, int64_t milliseconds);

/* Changes the largest value accepted by writes. */
void store_set_max_value(struct store *store, uint64_t bytes);

struct store_stats {
    uint64_t budget;         /* bytes the tier may use */
    uint64_t used;           /* bytes the tier holds now; never more than budget */
    uint64_t peak;           /* highest value of used */
    uint64_t fixed;          /* bytes of the store's fixed structures (in used) */
    uint64_t index;          /* bytes of hash buckets (in used) */
    uint64_t items;          /* items stored */
    uint64_t expiring_items; /* items with an expiry time */
    uint64_t small_queue_items;
    uint64_t main_queue_items;
    uint64_t chained_keys;        /* keys in the chain table (chained or pinned) */
    uint64_t chain_link_failures; /* chain links not recorded for want of memory */
    /* Counters since the start or the last store_reset_counters(). */
    uint64_t hits;            /* lookups that found a live key */
    uint64_t misses;          /* lookups that found no live key */
    uint64_t expired;         /* keys removed because their time to live ran out */
    uint64_t evicted;         /* items removed from DRAM to make room within the budget */
    uint64_t rejected_writes; /* writes refused because the budget could not make room */
};

/* Fills STATS with a snapshot. */
void store_get_stats(struct store *store, struct store_stats *stats);

/* Starts the counters of store_stats (hits to rejected_writes) again from zero (CONFIG
 * RESETSTAT). Any thread; an event counted at the same moment may be lost. */
void store_reset_counters(struct store *store);

/* The flash tier's figures, for INFO and /metrics. */
struct flash_stats {
    uint64_t capacity;
    uint64_t used; /* bytes of segment files */
    uint64_t live; /* bytes of records still in the index */
    uint64_t segments;
    uint64_t items;
    uint64_t index_bytes;
    uint64_t bytes_written;
    uint64_t bytes_read;
    uint64_t reads;
    uint64_t promotions;
    uint64_t reclaims;
    uint64_t reinsertions;
    uint64_t evictions;
    uint64_t paced_writes;
    uint64_t pace_timeouts;
    uint64_t write_errors;
    uint64_t sync_errors;
    uint64_t read_errors;
    uint64_t submit_failures;
    uint64_t blocking_reads;
    uint64_t checksum_failures;
    uint64_t recovery_ms;
    uint64_t recovered_items;
    const char *recovery_source; /* "index", "scan" or "empty" */
    bool direct_io;
};
/* Fills STATS with the flash tier's figures. Returns false (and zeros) without one. */
bool store_get_flash_stats(struct store *store, struct flash_stats *stats);

#endif
