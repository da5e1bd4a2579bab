/* Streams: XADD XRANGE XREVRANGE XLEN XREAD XDEL XTRIM XSETID XINFO (STREAM GROUPS CONSUMERS)
 * XGROUP (CREATE SETID DESTROY CREATECONSUMER DELCONSUMER) XREADGROUP XACK XPENDING XCLAIM
 * XAUTOCLAIM, with Redis 7.0's replies and errors.
 *
 * A stream is one value of type STORE_TYPE_STREAM in the engine: its entries, its last
 * id, the count of entries ever added, the greatest id ever deleted, its consumer groups
 * (each with its pending entries list and its consumers) and the producers it
 * deduplicates all live in that one value, so a stream is counted in the budget, evicted
 * whole, expires, renames, copies and is watched like any key, and every command on it is
 * atomic. Its bytes are this encoding (version 2, little-endian), which only this file
 * reads or writes. It is laid out so that an append touches only a fixed header and the
 * end of the entries: the header's fields are at fixed offsets (HEADER_*), and what is
 * not entries (groups, producers) comes after them.
 *
 *   header (STREAM_HEADER_SIZE = 61 bytes):
 *     u8  version (2)                                                        offset 0
 *     u64 last id's milliseconds, u64 last id's sequence                     offset 1
 *     u64 greatest deleted id's milliseconds, u64 its sequence (0-0: none)   offset 17
 *     u64 entries ever added                                                 offset 33
 *     u32 entry count                                                        offset 41
 *     u64 byte length of the entries (what follows the header)               offset 45
 *     u64 byte length of the groups (what follows the entries)               offset 53
 *   the entries, by increasing id: u64 ms, u64 seq, u32 string count (fields and values,
 *     even), u32 byte length of what follows, then per string: u32 length, the bytes
 *     (so the first entry's id is at offset 61)
 *   u32 group count
 *     per group: u32 name length, the name, u64 last delivered ms, u64 its seq,
 *                u64 entries read (as int64; -1: unknown),
 *                u32 consumer count; per consumer: u32 name length, the name,
 *                                                  u64 last seen (Unix ms)
 *                u32 pending count; per pending entry, by increasing id: u64 ms, u64 seq,
 *                     u32 its consumer's index in the list above, u64 last delivery
 *                     (Unix ms), u64 delivery count
 *   u32 producer count
 *     per producer, least recently used first: u32 name length, the name, u64 its highest
 *     sequence, u64 ms and u64 seq of the id that sequence got
 *
 * Version 1 (older builds, and values they left on flash) is still read: the same
 * without the two u64 byte lengths in the header. It is decoded whole and becomes
 * version 2 when next written.
 *
 * Deduplicated appends (a strata extension): XADD key IDMP <producer> <sequence> ...
 * (anywhere among XADD's options, before the id) appends only if SEQUENCE is greater
 * than the highest the stream has seen from PRODUCER; a retry of that highest sequence
 * answers the id the first append got, appending nothing, and an older sequence answers
 * an error (the producer has gone past it: it was appended). The stream remembers the
 * PRODUCERS_MAX producers that appended last; one forgotten is new again.
 *
 * XADD appends in place under the key's shard lock (store_edit_in_place(),
 * edit_add_in_place()): the groups and producers move up by the new entry's size, the
 * entry is written after the others, the header updated; its trimming moves the kept
 * entries down over the removed head, and IDMP moves its producer's record to the end.
 * Its cost is the entry, the trim and the groups' and producers' size, not the stream's.
 * A block without room left is first replaced by one with room holding the same bytes
 * (make_room()), then the append is in place. When it cannot be done in place (a value
 * too small to live in a block, held by someone, with a copy on flash, a version-1
 * value, an error to reply, a trim of more than IN_PLACE_TRIM_WALK entries) XADD appends
 * to a copy of the value by the same code and stores it with room to grow
 * (resp_value_update(), with_room), so that the next append is in place again; a value
 * held for a moment is waited for a little first, and a rewrite that loses its race
 * goes back to the in-place append (command_xadd()), so two writers never take turns
 * copying. A version-1 value or an error goes through a whole decode. XLEN reads the
 * header, and so does XREAD for a stream with nothing after the id asked (`$`, or a
 * reader that has caught up: what a blocked XREAD checks when woken).
 * XRANGE and XREVRANGE with COUNT walk the entries' headers from the head instead of
 * decoding (range_by_walk()): XRANGE stops after COUNT entries, XREVRANGE at its end id.
 * Other commands decode the whole value and a change encodes it again, so their time
 * grows with the stream's size: right for agents' event histories (thousands of
 * entries, trimmed with MAXLEN or MINID), slow for streams of millions. A change is a
 * compare-and-swap (resp_value_update()), so concurrent changes never lose one another.
 * XREADGROUP with `>` changes its group's pending list, so it is a write, as in Redis;
 * with several keys it changes each in turn (all checked first), so the keys are not
 * changed atomically together. A stream stays when its last entry goes, as in Redis.
 *
 * XREAD BLOCK and XREADGROUP BLOCK wait through resp_block() (resp_blocking.c): XREAD
 * runs again with `$` replaced by the last id it saw; a group read with `>` simply runs
 * again.
 *
 * Approximate trimming (`~`) removes whole runs of 100 entries from the head (Redis's
 * stream-node-max-entries), never leaving fewer than asked: the same counts as Redis for
 * streams of small entries without deletions (Redis's nodes also close at 4 KiB and
 * count deleted entries until they empty). XINFO's radix-tree-keys and -nodes are
 * estimates from the same runs. */
#include "base/array.h"
#include "base/byte_buffer.h"
#include "base/clock.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"
#include "strata_protocol.h"

#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_VERSION_1 1 /* older builds' encoding: read, never written */
#define STREAM_VERSION_2 2
/* Version 2's header: each field's offset, and its size. */
#define HEADER_LAST_ID        1
#define HEADER_MAX_DELETED    17
#define HEADER_ENTRIES_ADDED  33
#define HEADER_COUNT          41
#define HEADER_ENTRIES_LENGTH 45
#define HEADER_GROUPS_LENGTH  53
#define STREAM_HEADER_SIZE    61
#define ENTRY_HEADER_SIZE     24   /* an entry's id, string count and length */
#define PRODUCER_FIXED_SIZE   28   /* a producer's name length, sequence and id */
#define PRODUCERS_MAX         1000 /* producers a stream deduplicates */
#define PRODUCER_NAME_MAX     512
#define NODE_ENTRIES_DEFAULT  100   /* entries per Redis node when stream-node-max-entries is 0 */
#define APPROXIMATE_LIMIT     10000 /* Redis's default LIMIT with ~ when nodes have no count */
#define AUTOCLAIM_COUNT       100
#define ENTRIES_READ_UNKNOWN  (-1)

#define INVALID_ID_ERROR "ERR Invalid stream ID specified as stream command argument"
#define OOM_ERROR        "OOM out of memory: could not change the stream"

struct stream_id {
    uint64_t ms, seq;
};

static const struct stream_id ID_MAX = {UINT64_MAX, UINT64_MAX};

/* The entries of one of Redis's stream nodes, which approximate trimming removes whole:
 * stream-node-max-entries, or NODE_ENTRIES_DEFAULT when it is 0 (Redis then closes nodes
 * by bytes alone, stream-node-max-bytes, which strata does not model). */
static uint64_t stream_node_entries(struct resp_session *session) {
    int64_t entries =
        options_number(session->server->environment.options, RESP_OPTION(stream_node_max_entries));
    return entries > 0 ? (uint64_t)entries : NODE_ENTRIES_DEFAULT;
}

static int id_compare(struct stream_id a, struct stream_id b) {
    if (a.ms != b.ms) return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq) return a.seq < b.seq ? -1 : 1;
    return 0;
}

static bool id_is_zero(struct stream_id id) {
    return id.ms == 0 && id.seq == 0;
}

/* The next id; false at the greatest. */
static bool id_increment(struct stream_id *id) {
    if (id->seq != UINT64_MAX) {
        id->seq++;
    } else if (id->ms != UINT64_MAX) {
        id->ms++;
        id->seq = 0;
    } else {
        return false;
    }
    return true;
}

/* The previous id; false at 0-0. */
static bool id_decrement(struct stream_id *id) {
    if (id->seq != 0) {
        id->seq--;
    } else if (id->ms != 0) {
        id->ms--;
        id->seq = UINT64_MAX;
    } else {
        return false;
    }
    return true;
}

/* An entry: views of its strings (in the value being read, or in stream->added). */
struct stream_entry {
    struct stream_id id;
    const unsigned char *strings; /* COUNT strings, each u32 length and bytes */
    uint32_t count;
    uint32_t length; /* bytes at STRINGS */
    bool removed;
};

struct stream_consumer {
    const unsigned char *name;
    uint32_t name_length;
    int64_t seen_ms;
    bool removed;
};

struct stream_pending {
    struct stream_id id;
    uint32_t consumer; /* index in the group's consumers */
    int64_t delivered_ms;
    uint64_t deliveries;
    bool removed;
};

struct stream_group {
    const unsigned char *name;
    uint32_t name_length;
    struct stream_id last_delivered;
    int64_t entries_read;
    struct stream_consumer *consumers;
    size_t consumer_count, consumer_capacity;
    struct stream_pending *pending; /* by increasing id, removed ones included */
    size_t pending_count, pending_capacity;
    bool removed;
};

struct stream_producer {
    const unsigned char *name;
    uint32_t name_length;
    uint64_t sequence;
    struct stream_id id;
};

/* A stream decoded into views of its value (and of a command's arguments). */
struct stream {
    struct stream_id last_id, max_deleted;
    uint64_t entries_added;
    struct stream_entry *entries; /* by increasing id, removed ones included */
    size_t count, capacity, live;
    struct stream_group *groups;
    size_t group_count, group_capacity;
    struct stream_producer *producers;
    size_t producer_count, producer_capacity;
    struct byte_buffer added; /* the strings of the entry this change appends */
};

static void stream_free(struct stream *stream) {
    free(stream->entries);
    for (size_t i = 0; i < stream->group_count; i++) {
        free(stream->groups[i].consumers);
        free(stream->groups[i].pending);
    }
    free(stream->groups);
    free(stream->producers);
    byte_buffer_free(&stream->added);
    *stream = (struct stream){0};
}

/* ---- decoding and encoding ------------------------------------------------------------ */

struct reader {
    const unsigned char *at, *end;
    bool failed;
};

static const unsigned char *read_bytes(struct reader *reader, uint64_t length) {
    if (reader->failed || (uint64_t)(reader->end - reader->at) < length) {
        reader->failed = true;
        return NULL;
    }
    const unsigned char *bytes = reader->at;
    reader->at += length;
    return bytes;
}

static uint32_t read_u32(struct reader *reader) {
    const unsigned char *bytes = read_bytes(reader, 4);
    return bytes ? strata_load32(bytes) : 0;
}

static uint64_t read_u64(struct reader *reader) {
    const unsigned char *bytes = read_bytes(reader, 8);
    return bytes ? strata_load64(bytes) : 0;
}

static struct stream_id read_id(struct reader *reader) {
    struct stream_id id;
    id.ms = read_u64(reader);
    id.seq = read_u64(reader);
    return id;
}

/* A name: u32 length and bytes. */
static const unsigned char *read_name(struct reader *reader, uint32_t *length) {
    *length = read_u32(reader);
    return read_bytes(reader, *length);
}

/* True when LENGTH bytes at STRINGS hold exactly COUNT strings. */
static bool strings_valid(const unsigned char *strings, uint32_t length, uint32_t count) {
    struct reader reader = {strings, strings + length, false};
    for (uint32_t i = 0; i < count && !reader.failed; i++)
        read_bytes(&reader, read_u32(&reader));
    return !reader.failed && reader.at == reader.end;
}

enum decode_result { DECODED, DECODE_CORRUPT, DECODE_NO_MEMORY };

static enum decode_result decode_group(struct reader *reader, struct stream_group *group) {
    *group = (struct stream_group){0};
    group->name = read_name(reader, &group->name_length);
    group->last_delivered = read_id(reader);
    group->entries_read = (int64_t)read_u64(reader);
    uint32_t consumers = read_u32(reader);
    if (reader->failed || consumers > (uint64_t)(reader->end - reader->at) / 12)
        return DECODE_CORRUPT;
    if (!array_grow((void **)&group->consumers, &group->consumer_capacity, consumers,
                    sizeof(*group->consumers)))
        return DECODE_NO_MEMORY;
    for (uint32_t i = 0; i < consumers; i++) {
        struct stream_consumer *consumer = &group->consumers[i];
        *consumer = (struct stream_consumer){0};
        consumer->name = read_name(reader, &consumer->name_length);
        consumer->seen_ms = (int64_t)read_u64(reader);
    }
    group->consumer_count = consumers;
    uint32_t pending = read_u32(reader);
    if (reader->failed || pending > (uint64_t)(reader->end - reader->at) / 36)
        return DECODE_CORRUPT;
    if (!array_grow((void **)&group->pending, &group->pending_capacity, pending,
                    sizeof(*group->pending)))
        return DECODE_NO_MEMORY;
    for (uint32_t i = 0; i < pending; i++) {
        struct stream_pending *entry = &group->pending[i];
        *entry = (struct stream_pending){0};
        entry->id = read_id(reader);
        entry->consumer = read_u32(reader);
        entry->delivered_ms = (int64_t)read_u64(reader);
        entry->deliveries = read_u64(reader);
        if (entry->consumer >= consumers) return DECODE_CORRUPT;
        if (i > 0 && id_compare(group->pending[i - 1].id, entry->id) >= 0) return DECODE_CORRUPT;
    }
    group->pending_count = pending;
    return reader->failed ? DECODE_CORRUPT : DECODED;
}

static enum decode_result decode_groups(struct reader *reader, struct stream *stream);
static enum decode_result decode_producers(struct reader *reader, struct stream *stream);

/* Decodes COUNT entries from READER into STREAM (empty on entry). */
static enum decode_result decode_entries(struct reader *reader, uint32_t count,
                                         struct stream *stream) {
    if (count > (uint64_t)(reader->end - reader->at) / ENTRY_HEADER_SIZE) return DECODE_CORRUPT;
    if (!array_grow((void **)&stream->entries, &stream->capacity, count, sizeof(*stream->entries)))
        return DECODE_NO_MEMORY;
    for (uint32_t i = 0; i < count; i++) {
        struct stream_entry *entry = &stream->entries[i];
        *entry = (struct stream_entry){0};
        entry->id = read_id(reader);
        entry->count = read_u32(reader);
        entry->length = read_u32(reader);
        entry->strings = read_bytes(reader, entry->length);
        if (reader->failed || !strings_valid(entry->strings, entry->length, entry->count))
            return DECODE_CORRUPT;
        if (i > 0 && id_compare(stream->entries[i - 1].id, entry->id) >= 0) return DECODE_CORRUPT;
    }
    stream->count = stream->live = count;
    return DECODED;
}

/* Decodes the LENGTH bytes at DATA (version 2, or version 1 as older builds wrote it)
 * into STREAM (empty on entry), whose views point into DATA: it must outlive them. */
static enum decode_result stream_decode(const unsigned char *data, uint64_t length,
                                        struct stream *stream) {
    struct reader reader = {data, data + length, false};
    const unsigned char *version = read_bytes(&reader, 1);
    if (version == NULL || (*version != STREAM_VERSION_1 && *version != STREAM_VERSION_2))
        return DECODE_CORRUPT;
    stream->last_id = read_id(&reader);
    stream->max_deleted = read_id(&reader);
    stream->entries_added = read_u64(&reader);
    uint32_t count = read_u32(&reader);
    enum decode_result result;
    if (*version == STREAM_VERSION_1) {
        if (reader.failed) return DECODE_CORRUPT;
        result = decode_entries(&reader, count, stream);
        if (result == DECODED) result = decode_groups(&reader, stream);
        if (result == DECODED) result = decode_producers(&reader, stream);
        return result;
    }
    uint64_t entries_length = read_u64(&reader), groups_length = read_u64(&reader);
    if (reader.failed || entries_length > (uint64_t)(reader.end - reader.at) ||
        groups_length > (uint64_t)(reader.end - reader.at) - entries_length)
        return DECODE_CORRUPT;
    struct reader entries = {reader.at, reader.at + entries_length, false};
    result = decode_entries(&entries, count, stream);
    if (result != DECODED) return result;
    if (entries.at != entries.end) return DECODE_CORRUPT;
    struct reader groups = {entries.end, entries.end + groups_length, false};
    result = decode_groups(&groups, stream);
    if (result != DECODED) return result;
    if (groups.at != groups.end) return DECODE_CORRUPT;
    struct reader producers = {groups.end, reader.end, false};
    return decode_producers(&producers, stream);
}

/* Decodes the groups (u32 count, then each) from READER into STREAM. */
static enum decode_result decode_groups(struct reader *reader, struct stream *stream) {
    uint32_t groups = read_u32(reader);
    if (reader->failed || groups > (uint64_t)(reader->end - reader->at) / 36) return DECODE_CORRUPT;
    if (!array_grow((void **)&stream->groups, &stream->group_capacity, groups,
                    sizeof(*stream->groups)))
        return DECODE_NO_MEMORY;
    for (uint32_t i = 0; i < groups; i++) {
        stream->group_count = i + 1; /* so that stream_free() frees what it holds */
        enum decode_result result = decode_group(reader, &stream->groups[i]);
        if (result != DECODED) return result;
    }
    return DECODED;
}

/* Decodes the producers (u32 count, then each) from READER into STREAM, up to the end. */
static enum decode_result decode_producers(struct reader *reader, struct stream *stream) {
    uint32_t producers = read_u32(reader);
    if (reader->failed || producers > (uint64_t)(reader->end - reader->at) / 28)
        return DECODE_CORRUPT;
    if (!array_grow((void **)&stream->producers, &stream->producer_capacity, producers,
                    sizeof(*stream->producers)))
        return DECODE_NO_MEMORY;
    for (uint32_t i = 0; i < producers; i++) {
        struct stream_producer *producer = &stream->producers[i];
        producer->name = read_name(reader, &producer->name_length);
        producer->sequence = read_u64(reader);
        producer->id = read_id(reader);
    }
    stream->producer_count = producers;
    if (reader->failed || reader->at != reader->end) return DECODE_CORRUPT;
    return DECODED;
}

static void write_u32(struct byte_buffer *output, uint32_t value) {
    unsigned char bytes[4];
    strata_store32(bytes, value);
    byte_buffer_append(output, bytes, 4);
}

static void write_u64(struct byte_buffer *output, uint64_t value) {
    unsigned char bytes[8];
    strata_store64(bytes, value);
    byte_buffer_append(output, bytes, 8);
}

static void write_id(struct byte_buffer *output, struct stream_id id) {
    write_u64(output, id.ms);
    write_u64(output, id.seq);
}

static void write_name(struct byte_buffer *output, const unsigned char *name, uint32_t length) {
    write_u32(output, length);
    byte_buffer_append(output, name, length);
}

static bool encode_groups(const struct stream *stream, struct byte_buffer *output);
static void encode_producers(const struct stream *stream, struct byte_buffer *output);

/* Appends STREAM's live parts, encoded (version 2), to OUTPUT. Returns false when out of
 * memory. */
static bool stream_encode(const struct stream *stream, struct byte_buffer *output) {
    size_t base = output->length;
    unsigned char version = STREAM_VERSION_2;
    byte_buffer_append(output, &version, 1);
    write_id(output, stream->last_id);
    write_id(output, stream->max_deleted);
    write_u64(output, stream->entries_added);
    write_u32(output, (uint32_t)stream->live);
    write_u64(output, 0); /* the entries' length, written below */
    write_u64(output, 0); /* the groups' length, written below */
    for (size_t i = 0; i < stream->count; i++) {
        const struct stream_entry *entry = &stream->entries[i];
        if (entry->removed) continue;
        write_id(output, entry->id);
        write_u32(output, entry->count);
        write_u32(output, entry->length);
        byte_buffer_append(output, entry->strings, entry->length);
    }
    size_t entries_end = output->length;
    if (!encode_groups(stream, output)) return false;
    size_t groups_end = output->length;
    encode_producers(stream, output);
    if (output->failed) return false;
    strata_store64(output->data + base + HEADER_ENTRIES_LENGTH,
                   entries_end - base - STREAM_HEADER_SIZE);
    strata_store64(output->data + base + HEADER_GROUPS_LENGTH, groups_end - entries_end);
    return true;
}

/* Appends STREAM's groups, encoded, to OUTPUT. Returns false when out of memory. */
static bool encode_groups(const struct stream *stream, struct byte_buffer *output) {
    uint32_t groups = 0;
    for (size_t i = 0; i < stream->group_count; i++)
        groups += !stream->groups[i].removed;
    write_u32(output, groups);
    for (size_t i = 0; i < stream->group_count; i++) {
        const struct stream_group *group = &stream->groups[i];
        if (group->removed) continue;
        write_name(output, group->name, group->name_length);
        write_id(output, group->last_delivered);
        write_u64(output, (uint64_t)group->entries_read);
        /* Consumers are renumbered without the removed ones. */
        uint32_t *numbers = malloc((group->consumer_count + 1) * sizeof(*numbers));
        if (numbers == NULL) return false;
        uint32_t consumers = 0;
        for (size_t j = 0; j < group->consumer_count; j++)
            numbers[j] = group->consumers[j].removed ? UINT32_MAX : consumers++;
        write_u32(output, consumers);
        for (size_t j = 0; j < group->consumer_count; j++) {
            const struct stream_consumer *consumer = &group->consumers[j];
            if (consumer->removed) continue;
            write_name(output, consumer->name, consumer->name_length);
            write_u64(output, (uint64_t)consumer->seen_ms);
        }
        uint32_t pending = 0;
        for (size_t j = 0; j < group->pending_count; j++)
            pending += !group->pending[j].removed;
        write_u32(output, pending);
        for (size_t j = 0; j < group->pending_count; j++) {
            const struct stream_pending *entry = &group->pending[j];
            if (entry->removed) continue;
            write_id(output, entry->id);
            write_u32(output, numbers[entry->consumer]);
            write_u64(output, (uint64_t)entry->delivered_ms);
            write_u64(output, entry->deliveries);
        }
        free(numbers);
    }
    return !output->failed;
}

/* Appends STREAM's producers, encoded, to OUTPUT. */
static void encode_producers(const struct stream *stream, struct byte_buffer *output) {
    write_u32(output, (uint32_t)stream->producer_count);
    for (size_t i = 0; i < stream->producer_count; i++) {
        const struct stream_producer *producer = &stream->producers[i];
        write_name(output, producer->name, producer->name_length);
        write_u64(output, producer->sequence);
        write_id(output, producer->id);
    }
}

/* ---- looking things up ----------------------------------------------------------------- */

/* The index of the first entry (removed ones included) whose id is >= ID. */
static size_t entry_lower_bound(const struct stream *stream, struct stream_id id) {
    size_t low = 0, high = stream->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (id_compare(stream->entries[middle].id, id) < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

/* The live entry of ID, or NULL. */
static struct stream_entry *entry_find(struct stream *stream, struct stream_id id) {
    size_t at = entry_lower_bound(stream, id);
    if (at < stream->count && id_compare(stream->entries[at].id, id) == 0 &&
        !stream->entries[at].removed)
        return &stream->entries[at];
    return NULL;
}

static const struct stream_entry *first_live(const struct stream *stream) {
    for (size_t i = 0; i < stream->count; i++)
        if (!stream->entries[i].removed) return &stream->entries[i];
    return NULL;
}

static const struct stream_entry *last_live(const struct stream *stream) {
    for (size_t i = stream->count; i > 0; i--)
        if (!stream->entries[i - 1].removed) return &stream->entries[i - 1];
    return NULL;
}

static bool names_equal(const unsigned char *name, uint32_t length, const unsigned char *other,
                        uint64_t other_length) {
    return length == other_length && memcmp(name, other, length) == 0;
}

static struct stream_group *group_find(struct stream *stream, const unsigned char *name,
                                       uint64_t length) {
    for (size_t i = 0; i < stream->group_count; i++) {
        struct stream_group *group = &stream->groups[i];
        if (!group->removed && names_equal(group->name, group->name_length, name, length))
            return group;
    }
    return NULL;
}

/* The index of the live consumer NAME in GROUP, or -1. */
static int64_t consumer_find(const struct stream_group *group, const unsigned char *name,
                             uint64_t length) {
    for (size_t i = 0; i < group->consumer_count; i++) {
        const struct stream_consumer *consumer = &group->consumers[i];
        if (!consumer->removed && names_equal(consumer->name, consumer->name_length, name, length))
            return (int64_t)i;
    }
    return -1;
}

/* The consumer NAME of GROUP, created if missing (*CREATED then true): its index, or -1
 * when out of memory. Refreshes its seen time when SEEN_MS is not 0. */
static int64_t consumer_get(struct stream_group *group, const unsigned char *name, uint64_t length,
                            int64_t seen_ms, bool *created) {
    int64_t index = consumer_find(group, name, length);
    if (created != NULL) *created = index < 0;
    if (index < 0) {
        if (!array_grow((void **)&group->consumers, &group->consumer_capacity,
                        group->consumer_count + 1, sizeof(*group->consumers)))
            return -1;
        index = (int64_t)group->consumer_count++;
        group->consumers[index] = (struct stream_consumer){
            .name = name, .name_length = (uint32_t)length, .seen_ms = clock_realtime_ms()};
    }
    if (seen_ms != 0) group->consumers[index].seen_ms = seen_ms;
    return index;
}

/* The index of GROUP's pending slot for ID (removed or not), or where it would go. */
static size_t pending_lower_bound(const struct stream_group *group, struct stream_id id) {
    size_t low = 0, high = group->pending_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (id_compare(group->pending[middle].id, id) < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

static struct stream_pending *pending_find(struct stream_group *group, struct stream_id id) {
    size_t at = pending_lower_bound(group, id);
    if (at < group->pending_count && id_compare(group->pending[at].id, id) == 0 &&
        !group->pending[at].removed)
        return &group->pending[at];
    return NULL;
}

/* Adds ID to GROUP's pending list (or takes over its slot), delivered now to CONSUMER
 * once. Returns the slot, or NULL when out of memory. */
static struct stream_pending *pending_add(struct stream_group *group, struct stream_id id,
                                          uint32_t consumer, int64_t now) {
    size_t at = pending_lower_bound(group, id);
    if (at == group->pending_count || id_compare(group->pending[at].id, id) != 0) {
        if (!array_grow((void **)&group->pending, &group->pending_capacity,
                        group->pending_count + 1, sizeof(*group->pending)))
            return NULL;
        memmove(&group->pending[at + 1], &group->pending[at],
                (group->pending_count - at) * sizeof(*group->pending));
        group->pending_count++;
    }
    group->pending[at] = (struct stream_pending){
        .id = id, .consumer = consumer, .delivered_ms = now, .deliveries = 1};
    return &group->pending[at];
}

static size_t group_pending_count(const struct stream_group *group) {
    size_t count = 0;
    for (size_t i = 0; i < group->pending_count; i++)
        count += !group->pending[i].removed;
    return count;
}

static size_t consumer_pending_count(const struct stream_group *group, size_t consumer) {
    size_t count = 0;
    for (size_t i = 0; i < group->pending_count; i++)
        count += !group->pending[i].removed && group->pending[i].consumer == consumer;
    return count;
}

/* Removes the entry at INDEX (live), as XDEL does. */
static void entry_remove(struct stream *stream, size_t index) {
    stream->entries[index].removed = true;
    stream->live--;
}

/* ---- Redis's entries-read bookkeeping (XINFO GROUPS's entries-read and lag) --------------- */

/* The first entry's id, 0-0 when there is none (Redis's recorded first id). */
static struct stream_id first_id(const struct stream *stream) {
    const struct stream_entry *first = first_live(stream);
    return first ? first->id : (struct stream_id){0, 0};
}

/* True when a deleted entry may lie at or after START (streamRangeHasTombstones()). */
static bool tombstones_from(const struct stream *stream, struct stream_id start) {
    if (stream->live == 0 || id_is_zero(stream->max_deleted)) return false;
    /* The latest deletion is before the first entry: no hole is left in the stream. */
    if (id_compare(first_id(stream), stream->max_deleted) > 0) return false;
    return id_compare(start, stream->max_deleted) <= 0;
}

/* How many entries were added up to ID, or ENTRIES_READ_UNKNOWN (Redis's
 * streamEstimateDistanceFromFirstEverEntry()). */
static int64_t entries_up_to(const struct stream *stream, struct stream_id id) {
    if (stream->entries_added == 0) return 0;
    if (stream->live == 0 && id_compare(id, stream->last_id) < 1)
        return (int64_t)stream->entries_added;
    int last = id_compare(id, stream->last_id);
    if (last == 0) return (int64_t)stream->entries_added;
    if (last > 0) return ENTRIES_READ_UNKNOWN;
    struct stream_id first = first_id(stream);
    int versus_first = id_compare(id, first);
    if (id_is_zero(stream->max_deleted) || id_compare(stream->max_deleted, first) < 0) {
        if (versus_first < 0) return (int64_t)(stream->entries_added - stream->live);
        if (versus_first == 0) return (int64_t)(stream->entries_added - stream->live + 1);
    }
    return ENTRIES_READ_UNKNOWN;
}

/* GROUP has been delivered ID (greater than its last delivered). */
static void group_delivered(const struct stream *stream, struct stream_group *group,
                            struct stream_id id) {
    if (group->entries_read != ENTRIES_READ_UNKNOWN && !tombstones_from(stream, id)) {
        group->entries_read++;
    } else if (stream->entries_added != 0) {
        group->entries_read = entries_up_to(stream, id);
    }
    group->last_delivered = id;
}

/* Writes GROUP's lag, or nil when it cannot be known (streamCGLag()). */
static void reply_lag(struct resp_session *session, const struct stream *stream,
                      const struct stream_group *group) {
    if (stream->entries_added == 0) {
        reply_integer(session, 0);
    } else if (group->entries_read != ENTRIES_READ_UNKNOWN &&
               !tombstones_from(stream, group->last_delivered)) {
        reply_integer(session, (int64_t)stream->entries_added - group->entries_read);
    } else {
        int64_t read = entries_up_to(stream, group->last_delivered);
        if (read == ENTRIES_READ_UNKNOWN) {
            reply_null(session);
        } else {
            reply_integer(session, (int64_t)stream->entries_added - read);
        }
    }
}

/* ---- ids in arguments -------------------------------------------------------------------- */

enum id_form {
    ID_STRICT,  /* ms-seq or ms */
    ID_RANGE,   /* also - and + */
    ID_PARTIAL, /* also ms-* (XADD): *SEQ_GIVEN tells */
};

/* Parses TEXT (LENGTH bytes) as a stream id (Redis's streamGenericParseIDOrReply()):
 * a missing sequence is MISSING_SEQ. Returns false when it is not one. */
static bool parse_id(const unsigned char *text, uint64_t length, uint64_t missing_seq,
                     enum id_form form, struct stream_id *id, bool *seq_given) {
    if (seq_given != NULL) *seq_given = true;
    if (length > 127 || length == 0) return false;
    if (length == 1 && (text[0] == '-' || text[0] == '+')) {
        if (form != ID_RANGE) return false;
        *id = text[0] == '-' ? (struct stream_id){0, 0} : ID_MAX;
        return true;
    }
    const unsigned char *dash = memchr(text, '-', (size_t)length);
    size_t ms_length = dash ? (size_t)(dash - text) : (size_t)length;
    if (!parse_uint64(text, ms_length, &id->ms)) return false;
    if (dash == NULL) {
        id->seq = missing_seq;
        return true;
    }
    size_t seq_length = (size_t)length - ms_length - 1;
    if (form == ID_PARTIAL && seq_length == 1 && dash[1] == '*') {
        id->seq = 0;
        *seq_given = false;
        return true;
    }
    return parse_uint64(dash + 1, seq_length, &id->seq);
}

/* Argument INDEX as a strict id (missing sequence 0); replies the error when not one. */
static bool argument_id(struct resp_session *session, const struct resp_request *request,
                        size_t index, struct stream_id *id) {
    if (parse_id(request->argv[index], request->lengths[index], 0, ID_STRICT, id, NULL))
        return true;
    reply_error(session, INVALID_ID_ERROR);
    return false;
}

/* Argument INDEX as a range bound: -, +, an id, or ( and an id (exclusive, moved one
 * step inwards: up for a START, down for an end). Replies the error when not one. */
static bool argument_bound(struct resp_session *session, const struct resp_request *request,
                           size_t index, bool start, struct stream_id *id) {
    const unsigned char *text = request->argv[index];
    uint64_t length = request->lengths[index];
    uint64_t missing = start ? 0 : UINT64_MAX;
    if (length > 1 && text[0] == '(') {
        if (!parse_id(text + 1, length - 1, missing, ID_STRICT, id, NULL)) {
            reply_error(session, INVALID_ID_ERROR);
            return false;
        }
        if (start ? !id_increment(id) : !id_decrement(id)) {
            reply_error(session, start ? "ERR invalid start ID for the interval"
                                       : "ERR invalid end ID for the interval");
            return false;
        }
        return true;
    }
    if (parse_id(text, length, missing, ID_RANGE, id, NULL)) return true;
    reply_error(session, INVALID_ID_ERROR);
    return false;
}

/* ---- replies ------------------------------------------------------------------------------ */

static void reply_id(struct resp_session *session, struct stream_id id) {
    char text[48];
    int length = snprintf(text, sizeof(text), "%" PRIu64 "-%" PRIu64, id.ms, id.seq);
    reply_bulk(session, text, (size_t)length);
}

/* An entry's strings as an array (fields and values). */
static void reply_strings(struct resp_session *session, const unsigned char *strings,
                          uint32_t count) {
    reply_array(session, count);
    const unsigned char *at = strings;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t length = strata_load32(at);
        reply_bulk(session, at + 4, length);
        at += 4 + length;
    }
}

static void reply_entry(struct resp_session *session, const struct stream_entry *entry) {
    reply_array(session, 2);
    reply_id(session, entry->id);
    reply_strings(session, entry->strings, entry->count);
}

static void reply_decode_error(struct resp_session *session, enum decode_result result) {
    reply_error(session, result == DECODE_CORRUPT ? "ERR the stream's stored encoding is damaged"
                                                  : "OOM out of memory: could not read the stream");
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Reads the stream at argument KEY_INDEX into *STREAM (views into *ITEM, which the caller
 * releases; NULL and an empty stream when the key is absent). Returns false after
 * replying the error (WRONGTYPE, a damaged value, no memory). */
static bool decode_item(struct resp_session *session, struct item **item, struct stream *stream);

static bool read_stream(struct resp_session *session, const struct resp_request *request,
                        size_t key_index, struct item **item, struct stream *stream) {
    *stream = (struct stream){0};
    if (!resp_value_read(session, request, key_index, STORE_TYPE_STREAM, item)) return false;
    return decode_item(session, item, stream);
}

/* Decodes *ITEM (a stream read by resp_value_read(), or NULL: STREAM stays empty) into
 * STREAM (empty on entry; views into *ITEM). Returns false after releasing *ITEM (then
 * NULL) and replying the error. */
static bool decode_item(struct resp_session *session, struct item **item, struct stream *stream) {
    if (*item == NULL) return true;
    enum decode_result decoded = stream_decode(item_value(*item), item_value_length(*item), stream);
    if (decoded == DECODED) return true;
    item_release(*item);
    *item = NULL;
    stream_free(stream);
    reply_decode_error(session, decoded);
    return false;
}

/* The last id in ITEM's header when it holds a version-2 stream: true and *LAST_ID. */
static bool header_last_id(const struct item *item, struct stream_id *last_id) {
    const unsigned char *value = item_value(item);
    if (item_value_length(item) < STREAM_HEADER_SIZE || value[0] != STREAM_VERSION_2) return false;
    last_id->ms = strata_load64(value + HEADER_LAST_ID);
    last_id->seq = strata_load64(value + HEADER_LAST_ID + 8);
    return true;
}

static void done_reading(struct item *item, struct stream *stream) {
    stream_free(stream);
    if (item != NULL) item_release(item);
}

/* XLEN: a version-2 value's header has the count; a version-1 value is decoded. */
void command_xlen(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    if (!resp_value_in_dram(session, request, 1) ||
        !resp_value_read(session, request, 1, STORE_TYPE_STREAM, &item))
        return;
    if (item == NULL) {
        reply_integer(session, 0);
        return;
    }
    const unsigned char *value = item_value(item);
    if (item_value_length(item) >= STREAM_HEADER_SIZE && value[0] == STREAM_VERSION_2) {
        reply_integer(session, (int64_t)strata_load32(value + HEADER_COUNT));
        item_release(item);
        return;
    }
    struct stream stream = {0};
    enum decode_result decoded = stream_decode(value, item_value_length(item), &stream);
    if (decoded == DECODED) {
        reply_integer(session, (int64_t)stream.live);
    } else {
        reply_decode_error(session, decoded);
    }
    done_reading(item, &stream);
}

static bool range_by_walk(struct resp_session *session, const struct item *item,
                          struct stream_id start, struct stream_id end, uint64_t count,
                          bool reverse);

/* XRANGE key start end [COUNT n] and XREVRANGE key end start [COUNT n]. */
static void range_command(struct resp_session *session, const struct resp_request *request,
                          bool reverse) {
    struct stream_id start, end;
    if (!argument_bound(session, request, reverse ? 3 : 2, true, &start) ||
        !argument_bound(session, request, reverse ? 2 : 3, false, &end))
        return;
    int64_t count = -1;
    for (size_t i = 4; i < request->argc; i++) {
        if (argument_is(request, i, "COUNT") && i + 1 < request->argc) {
            if (!argument_int64(session, request, ++i, &count)) return;
            if (count < 0) count = 0;
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    struct item *item;
    struct stream stream = {0};
    if (!resp_value_in_dram(session, request, 1) ||
        !resp_value_read(session, request, 1, STORE_TYPE_STREAM, &item))
        return;
    if (item != NULL && count > 0 &&
        range_by_walk(session, item, start, end, (uint64_t)count, reverse)) {
        item_release(item);
        return;
    }
    if (!decode_item(session, &item, &stream)) return;
    if (count == 0 && item != NULL) {
        reply_null_array(session); /* as Redis 7.0 for COUNT 0 on a stream */
        done_reading(item, &stream);
        return;
    }
    size_t from = entry_lower_bound(&stream, start), matching = 0;
    size_t to = from;
    while (to < stream.count && id_compare(stream.entries[to].id, end) <= 0)
        to++;
    if (count == 0 || id_compare(start, end) > 0) to = from;
    matching = to - from;
    if (count > 0 && (uint64_t)count < matching) matching = (size_t)count;
    reply_array(session, matching);
    for (size_t i = 0; i < matching; i++)
        reply_entry(session, &stream.entries[reverse ? to - 1 - i : from + i]);
    done_reading(item, &stream);
}

void command_xrange(struct resp_session *session, const struct resp_request *request) {
    range_command(session, request, false);
}

void command_xrevrange(struct resp_session *session, const struct resp_request *request) {
    range_command(session, request, true);
}

/* What XREAD and XREADGROUP share: their options. */
struct read_options {
    int64_t count;    /* 0: no limit */
    int64_t block_ms; /* -1: no BLOCK; 0: no time limit */
    size_t streams;   /* the first key's argument */
    size_t keys;
    const unsigned char *group, *consumer;
    uint64_t group_length, consumer_length;
    bool noack;
};

/* Parses XREAD's or XREADGROUP's options (Redis's xreadCommand()). Returns false after
 * replying the error. */
static bool parse_read_options(struct resp_session *session, const struct resp_request *request,
                               bool with_group, struct read_options *options) {
    *options = (struct read_options){.block_ms = -1};
    for (size_t i = 1; i < request->argc; i++) {
        size_t more = request->argc - i - 1;
        if (argument_is(request, i, "BLOCK") && more > 0) {
            if (session->in_script) { /* as Redis: BLOCK means nothing in a script */
                reply_errorf(session,
                             "ERR %.*s command is not allowed with BLOCK option from scripts",
                             (int)request->lengths[0], (const char *)request->argv[0]);
                return false;
            }
            if (!resp_block_timeout(session, request, ++i, true, &options->block_ms)) return false;
        } else if (argument_is(request, i, "COUNT") && more > 0) {
            if (!argument_int64(session, request, ++i, &options->count)) return false;
            if (options->count < 0) options->count = 0;
        } else if (argument_is(request, i, "STREAMS") && more > 0) {
            options->streams = i + 1;
            if (more % 2 != 0) {
                /* Redis 7.0 names XREAD and '$' for XREADGROUP too. */
                reply_error(session, "ERR Unbalanced XREAD list of streams: for each stream key an "
                                     "ID or '$' must be specified.");
                return false;
            }
            options->keys = more / 2;
            break;
        } else if (argument_is(request, i, "GROUP") && more >= 2) {
            if (!with_group) {
                reply_error(session, "ERR The GROUP option is only supported by XREADGROUP. You "
                                     "called XREAD instead.");
                return false;
            }
            options->group = request->argv[i + 1];
            options->group_length = request->lengths[i + 1];
            options->consumer = request->argv[i + 2];
            options->consumer_length = request->lengths[i + 2];
            i += 2;
        } else if (argument_is(request, i, "NOACK")) {
            if (!with_group) {
                reply_error(session, "ERR The NOACK option is only supported by XREADGROUP. You "
                                     "called XREAD instead.");
                return false;
            }
            options->noack = true;
        } else {
            reply_syntax_error(session);
            return false;
        }
    }
    if (options->streams == 0) {
        reply_syntax_error(session);
        return false;
    }
    if (with_group && options->group == NULL) {
        reply_error(session, "ERR Missing GROUP option for XREADGROUP");
        return false;
    }
    return true;
}

static bool argument_equals(const struct resp_request *request, size_t index, const char *text) {
    return request->lengths[index] == strlen(text) &&
           memcmp(request->argv[index], text, strlen(text)) == 0;
}

/* Blocks XREAD, which found nothing after the ids AFTER (one per key, '$' made
 * concrete), until one of its keys is written or its BLOCK time passes (a null array):
 * it runs again with those ids in place of its own (resp_block()). */
static void block_read(struct resp_session *session, const struct resp_request *request,
                       const struct read_options *options, const struct stream_id *after) {
    size_t argc = request->argc, first_id = options->streams + options->keys;
    const unsigned char **argv = malloc(argc * sizeof(*argv));
    uint64_t *lengths = malloc(argc * sizeof(*lengths));
    char(*ids)[48] = malloc((options->keys + 1) * sizeof(*ids));
    if (argv == NULL || lengths == NULL || ids == NULL) {
        reply_error(session, "OOM out of memory: could not block");
    } else {
        for (size_t i = 0; i < argc; i++) {
            argv[i] = request->argv[i];
            lengths[i] = request->lengths[i];
        }
        for (size_t i = 0; i < options->keys; i++) {
            int length =
                snprintf(ids[i], sizeof(ids[i]), "%" PRIu64 "-%" PRIu64, after[i].ms, after[i].seq);
            argv[first_id + i] = (const unsigned char *)ids[i];
            lengths[first_id + i] = (uint64_t)length;
        }
        struct resp_request rewritten = {argc, argv, lengths};
        resp_block(session, &rewritten, options->streams, options->keys, options->block_ms,
                   RESP_BLOCK_NULL_ARRAY, false);
    }
    free(argv);
    free(lengths);
    free(ids);
}

/* XREAD [COUNT count] [BLOCK ms] STREAMS key [key ...] id [id ...]: the entries after
 * each id (nil when none, or after BLOCK's time: 0 waits for ever). */
void command_xread(struct resp_session *session, const struct resp_request *request) {
    struct read_options options;
    if (!parse_read_options(session, request, false, &options)) return;
    size_t keys = options.keys;
    for (size_t i = 0; i < keys; i++) {
        size_t id_index = options.streams + keys + i;
        struct stream_id id;
        if (argument_equals(request, id_index, ">")) {
            reply_error(session, "ERR The > ID can be specified only when calling XREADGROUP "
                                 "using the GROUP <group> <consumer> option.");
            return;
        }
        if (!argument_equals(request, id_index, "$") &&
            !argument_id(session, request, id_index, &id))
            return;
    }
    for (size_t i = 0; i < keys; i++)
        if (!resp_value_in_dram(session, request, options.streams + i)) return;
    struct item **items = calloc(keys, sizeof(*items));
    struct stream *streams = calloc(keys, sizeof(*streams));
    struct stream_id *after = calloc(keys, sizeof(*after));
    if (items == NULL || streams == NULL || after == NULL) {
        reply_error(session, "OOM out of memory: could not read the streams");
        free(items);
        free(streams);
        free(after);
        return;
    }
    size_t read = 0, served = 0;
    bool failed = false;
    for (; read < keys && !failed; read++) {
        size_t key = options.streams + read, id_index = key + keys;
        bool dollar = argument_equals(request, id_index, "$");
        if (!dollar) argument_id(session, request, id_index, &after[read]); /* checked above */
        enum store_type type;
        if (resp_block_waited(session) &&
            store_key_type(store_of(session), request->argv[key], (size_t)request->lengths[key],
                           &type) == STORE_OK &&
            type != STORE_TYPE_STREAM) {
            items[read] = NULL; /* as Redis: no stream to read; it waits on */
        } else if (!resp_value_read(session, request, key, STORE_TYPE_STREAM, &items[read])) {
            failed = true;
            break;
        }
        /* Nothing after the last id (`$`, or a reader caught up): the header says so, and
         * the stream is not decoded. */
        struct stream_id last_id;
        if (items[read] != NULL && header_last_id(items[read], &last_id) &&
            (dollar || id_compare(after[read], last_id) >= 0)) {
            streams[read].last_id = last_id;
            if (dollar) after[read] = last_id;
            continue;
        }
        if (!decode_item(session, &items[read], &streams[read])) {
            failed = true;
            break;
        }
        if (dollar) after[read] = streams[read].last_id;
        const struct stream_entry *last = last_live(&streams[read]);
        if (last != NULL && id_compare(last->id, after[read]) > 0) served++;
    }
    if (!failed && served == 0 && options.block_ms >= 0) {
        block_read(session, request, &options, after);
    } else if (!failed && served == 0) {
        reply_null_array(session);
    } else if (!failed) {
        if (session->protocol == 3) {
            reply_map(session, served);
        } else {
            reply_array(session, served);
        }
        for (size_t i = 0; i < keys; i++) {
            struct stream *stream = &streams[i];
            const struct stream_entry *last = last_live(stream);
            if (last == NULL || id_compare(last->id, after[i]) <= 0) continue;
            if (session->protocol != 3) reply_array(session, 2);
            reply_bulk(session, request->argv[options.streams + i],
                       (size_t)request->lengths[options.streams + i]);
            struct stream_id start = after[i];
            id_increment(&start);
            size_t from = entry_lower_bound(stream, start), matching = 0;
            for (size_t j = from; j < stream->count; j++)
                matching += !stream->entries[j].removed;
            if (options.count > 0 && (uint64_t)options.count < matching)
                matching = (size_t)options.count;
            reply_array(session, matching);
            for (size_t j = from, sent = 0; sent < matching; j++) {
                if (stream->entries[j].removed) continue;
                reply_entry(session, &stream->entries[j]);
                sent++;
            }
        }
    }
    for (size_t i = 0; i < read; i++)
        done_reading(items[i], &streams[i]);
    free(items);
    free(streams);
    free(after);
}

/* Replies "NOGROUP No such key 'KEY' or consumer group 'GROUP'" and TAIL. */
static void reply_no_group(struct resp_session *session, const unsigned char *key,
                           uint64_t key_length, const unsigned char *group, uint64_t group_length,
                           const char *tail) {
    reply_errorf(session, "NOGROUP No such key '%.*s' or consumer group '%.*s'%s",
                 (int)(key_length > 200 ? 200 : key_length), (const char *)key,
                 (int)(group_length > 200 ? 200 : group_length), (const char *)group, tail);
}

/* XPENDING key group [[IDLE min-idle] start end count [consumer]]. */
void command_xpending(struct resp_session *session, const struct resp_request *request) {
    bool summary = request->argc == 3;
    if (request->argc != 3 && (request->argc < 6 || request->argc > 9)) {
        reply_syntax_error(session);
        return;
    }
    struct stream_id start = {0, 0}, end = ID_MAX;
    int64_t count = 0, min_idle = 0;
    size_t consumer_index = 0;
    if (!summary) {
        size_t first = 3;
        if (argument_is(request, 3, "IDLE")) {
            if (!argument_int64(session, request, 4, &min_idle)) return;
            if (request->argc < 8) {
                reply_syntax_error(session);
                return;
            }
            first += 2;
        }
        if (!argument_int64(session, request, first + 2, &count)) return;
        if (count < 0) count = 0;
        if (!argument_bound(session, request, first, true, &start) ||
            !argument_bound(session, request, first + 1, false, &end))
            return;
        if (first + 3 < request->argc) consumer_index = first + 3;
    }
    struct item *item;
    struct stream stream;
    if (!resp_value_in_dram(session, request, 1) ||
        !read_stream(session, request, 1, &item, &stream))
        return;
    struct stream_group *group =
        item ? group_find(&stream, request->argv[2], request->lengths[2]) : NULL;
    if (group == NULL) {
        reply_no_group(session, request->argv[1], request->lengths[1], request->argv[2],
                       request->lengths[2], "");
        done_reading(item, &stream);
        return;
    }
    int64_t now = clock_realtime_ms();
    if (summary) {
        size_t pending = group_pending_count(group);
        reply_array(session, 4);
        reply_integer(session, (int64_t)pending);
        if (pending == 0) {
            reply_null(session);
            reply_null(session);
            reply_null_array(session);
        } else {
            struct stream_pending *first = NULL, *last = NULL;
            for (size_t i = 0; i < group->pending_count; i++) {
                if (group->pending[i].removed) continue;
                if (first == NULL) first = &group->pending[i];
                last = &group->pending[i];
            }
            reply_id(session, first->id);
            reply_id(session, last->id);
            /* Consumers with pending entries, by name (Redis keeps them in a radix tree). */
            size_t *order = malloc((group->consumer_count + 1) * sizeof(*order)), listed = 0;
            for (size_t i = 0; order != NULL && i < group->consumer_count; i++) {
                if (group->consumers[i].removed || consumer_pending_count(group, i) == 0) continue;
                size_t at = listed++;
                while (at > 0) {
                    const struct stream_consumer *a = &group->consumers[order[at - 1]];
                    const struct stream_consumer *b = &group->consumers[i];
                    size_t common =
                        a->name_length < b->name_length ? a->name_length : b->name_length;
                    int compared = memcmp(a->name, b->name, common);
                    if (compared < 0 || (compared == 0 && a->name_length <= b->name_length)) break;
                    order[at] = order[at - 1];
                    at--;
                }
                order[at] = i;
            }
            reply_array(session, listed);
            for (size_t i = 0; i < listed; i++) {
                const struct stream_consumer *consumer = &group->consumers[order[i]];
                reply_array(session, 2);
                reply_bulk(session, consumer->name, consumer->name_length);
                reply_bulk_integer(session, (int64_t)consumer_pending_count(group, order[i]));
            }
            free(order);
        }
        done_reading(item, &stream);
        return;
    }
    int64_t consumer = -1;
    if (consumer_index != 0) {
        consumer =
            consumer_find(group, request->argv[consumer_index], request->lengths[consumer_index]);
        if (consumer < 0) {
            reply_array(session, 0);
            done_reading(item, &stream);
            return;
        }
    }
    /* Two passes: count, then reply. */
    for (int pass = 0; pass < 2; pass++) {
        int64_t left = count, listed = 0;
        for (size_t i = pending_lower_bound(group, start); left > 0 && i < group->pending_count;
             i++) {
            const struct stream_pending *entry = &group->pending[i];
            if (id_compare(entry->id, end) > 0) break;
            if (entry->removed || (consumer >= 0 && entry->consumer != (uint32_t)consumer))
                continue;
            int64_t idle = now - entry->delivered_ms;
            if (idle < 0) idle = 0;
            if (min_idle != 0 && idle < min_idle) continue;
            left--;
            listed++;
            if (pass == 0) continue;
            reply_array(session, 4);
            reply_id(session, entry->id);
            const struct stream_consumer *owner = &group->consumers[entry->consumer];
            reply_bulk(session, owner->name, owner->name_length);
            reply_integer(session, idle);
            reply_integer(session, (int64_t)entry->deliveries);
        }
        if (pass == 0) reply_array(session, (size_t)listed);
    }
    done_reading(item, &stream);
}

/* Sorts ORDER, COUNT indices into NAMES and LENGTHS, by name (bytewise, as Redis's
 * radix trees list consumers and groups). */
static void sort_by_name(size_t *order, size_t count, const unsigned char *const *names,
                         const uint32_t *lengths) {
    for (size_t i = 1; i < count; i++) {
        size_t moving = order[i], at = i;
        while (at > 0) {
            size_t other = order[at - 1];
            size_t common = lengths[other] < lengths[moving] ? lengths[other] : lengths[moving];
            int compared = memcmp(names[other], names[moving], common);
            if (compared < 0 || (compared == 0 && lengths[other] <= lengths[moving])) break;
            order[at] = other;
            at--;
        }
        order[at] = moving;
    }
}

/* XINFO STREAM key. */
/* Writes the live groups (or consumers) of a list in name order into ORDER (room for
 * COUNT + 1); returns how many. NAMES and LENGTHS are scratch of the same room. */
static size_t groups_by_name(const struct stream *stream, size_t *order,
                             const unsigned char **names, uint32_t *lengths) {
    size_t count = 0;
    for (size_t i = 0; i < stream->group_count; i++) {
        names[i] = stream->groups[i].name;
        lengths[i] = stream->groups[i].name_length;
        if (!stream->groups[i].removed) order[count++] = i;
    }
    sort_by_name(order, count, names, lengths);
    return count;
}

static size_t consumers_by_name(const struct stream_group *group, size_t *order,
                                const unsigned char **names, uint32_t *lengths) {
    size_t count = 0;
    for (size_t i = 0; i < group->consumer_count; i++) {
        names[i] = group->consumers[i].name;
        lengths[i] = group->consumers[i].name_length;
        if (!group->consumers[i].removed) order[count++] = i;
    }
    sort_by_name(order, count, names, lengths);
    return count;
}

/* XINFO STREAM key FULL's groups: each with its pending entries and consumers (at most
 * LIMIT pending entries each; 0: all). Returns false when out of memory (nothing
 * replied). */
static bool reply_full_groups(struct resp_session *session, const struct stream *stream,
                              uint64_t limit) {
    size_t room = stream->group_count + 1;
    for (size_t i = 0; i < stream->group_count; i++)
        if (stream->groups[i].consumer_count + 1 > room)
            room = stream->groups[i].consumer_count + 1;
    size_t *order = malloc(room * sizeof(*order)), *consumers = malloc(room * sizeof(*consumers));
    const unsigned char **names = calloc(room, sizeof(*names));
    uint32_t *lengths = calloc(room, sizeof(*lengths));
    bool ok = order != NULL && consumers != NULL && names != NULL && lengths != NULL;
    if (ok) {
        size_t count = groups_by_name(stream, order, names, lengths);
        reply_array(session, count);
        for (size_t g = 0; g < count; g++) {
            const struct stream_group *group = &stream->groups[order[g]];
            size_t pending = group_pending_count(group);
            size_t shown = limit != 0 && limit < pending ? (size_t)limit : pending;
            reply_map(session, 7);
            reply_bulk_text(session, "name");
            reply_bulk(session, group->name, group->name_length);
            reply_bulk_text(session, "last-delivered-id");
            reply_id(session, group->last_delivered);
            reply_bulk_text(session, "entries-read");
            if (group->entries_read == ENTRIES_READ_UNKNOWN) {
                reply_null(session);
            } else {
                reply_integer(session, group->entries_read);
            }
            reply_bulk_text(session, "lag");
            reply_lag(session, stream, group);
            reply_bulk_text(session, "pel-count");
            reply_integer(session, (int64_t)pending);
            reply_bulk_text(session, "pending");
            reply_array(session, shown);
            for (size_t i = 0, sent = 0; sent < shown; i++) {
                const struct stream_pending *entry = &group->pending[i];
                if (entry->removed) continue;
                const struct stream_consumer *owner = &group->consumers[entry->consumer];
                reply_array(session, 4);
                reply_id(session, entry->id);
                reply_bulk(session, owner->name, owner->name_length);
                reply_integer(session, entry->delivered_ms);
                reply_integer(session, (int64_t)entry->deliveries);
                sent++;
            }
            reply_bulk_text(session, "consumers");
            size_t listed = consumers_by_name(group, consumers, names, lengths);
            reply_array(session, listed);
            for (size_t c = 0; c < listed; c++) {
                const struct stream_consumer *consumer = &group->consumers[consumers[c]];
                size_t owned = consumer_pending_count(group, consumers[c]);
                size_t owned_shown = limit != 0 && limit < owned ? (size_t)limit : owned;
                reply_map(session, 4);
                reply_bulk_text(session, "name");
                reply_bulk(session, consumer->name, consumer->name_length);
                reply_bulk_text(session, "seen-time");
                reply_integer(session, consumer->seen_ms);
                reply_bulk_text(session, "pel-count");
                reply_integer(session, (int64_t)owned);
                reply_bulk_text(session, "pending");
                reply_array(session, owned_shown);
                for (size_t i = 0, sent = 0; sent < owned_shown; i++) {
                    const struct stream_pending *entry = &group->pending[i];
                    if (entry->removed || entry->consumer != consumers[c]) continue;
                    reply_array(session, 3);
                    reply_id(session, entry->id);
                    reply_integer(session, entry->delivered_ms);
                    reply_integer(session, (int64_t)entry->deliveries);
                    sent++;
                }
            }
        }
    }
    free(order);
    free(consumers);
    free(names);
    free(lengths);
    return ok;
}

/* XINFO STREAM key [FULL [COUNT count]]: FULL lists the first COUNT entries (10; 0:
 * all) and the groups with their pending entries and consumers. */
static void info_stream(struct resp_session *session, const struct resp_request *request) {
    bool full = request->argc > 3;
    int64_t limit = 10;
    if ((full && !argument_is(request, 3, "FULL")) ||
        (request->argc > 4 && (request->argc != 6 || !argument_is(request, 4, "COUNT")))) {
        char name[32];
        argument_text(request, 1, name, sizeof(name));
        reply_errorf(
            session,
            "ERR unknown subcommand or wrong number of arguments for '%s'. Try XINFO HELP.", name);
        return;
    }
    if (request->argc == 6) {
        if (!argument_int64(session, request, 5, &limit)) return;
        if (limit < 0) limit = 0;
    }
    struct item *item;
    struct stream stream;
    if (!resp_value_in_dram(session, request, 2) ||
        !read_stream(session, request, 2, &item, &stream))
        return;
    if (item == NULL) {
        reply_error(session, "ERR no such key");
        return;
    }
    size_t groups = 0;
    for (size_t i = 0; i < stream.group_count; i++)
        groups += !stream.groups[i].removed;
    const struct stream_entry *first = first_live(&stream), *last = last_live(&stream);
    uint64_t node_entries = stream_node_entries(session);
    size_t nodes = (size_t)((stream.live + node_entries - 1) / node_entries);
    reply_map(session, full ? 9 : 10);
    reply_bulk_text(session, "length");
    reply_integer(session, (int64_t)stream.live);
    reply_bulk_text(session, "radix-tree-keys");
    reply_integer(session, (int64_t)nodes);
    reply_bulk_text(session, "radix-tree-nodes");
    reply_integer(session, (int64_t)nodes + 1);
    reply_bulk_text(session, "last-generated-id");
    reply_id(session, stream.last_id);
    reply_bulk_text(session, "max-deleted-entry-id");
    reply_id(session, stream.max_deleted);
    reply_bulk_text(session, "entries-added");
    reply_integer(session, (int64_t)stream.entries_added);
    reply_bulk_text(session, "recorded-first-entry-id");
    reply_id(session, first_id(&stream));
    if (full) {
        size_t shown = limit != 0 && (uint64_t)limit < stream.live ? (size_t)limit : stream.live;
        reply_bulk_text(session, "entries");
        reply_array(session, shown);
        for (size_t i = 0, sent = 0; sent < shown; i++) {
            if (stream.entries[i].removed) continue;
            reply_entry(session, &stream.entries[i]);
            sent++;
        }
        reply_bulk_text(session, "groups");
        /* Out of memory for the sorting: the groups are left out, the reply stays whole. */
        if (!reply_full_groups(session, &stream, (uint64_t)limit)) reply_array(session, 0);
        done_reading(item, &stream);
        return;
    }
    reply_bulk_text(session, "groups");
    reply_integer(session, (int64_t)groups);
    reply_bulk_text(session, "first-entry");
    if (first != NULL) {
        reply_entry(session, first);
    } else {
        reply_null(session);
    }
    reply_bulk_text(session, "last-entry");
    if (last != NULL) {
        reply_entry(session, last);
    } else {
        reply_null(session);
    }
    done_reading(item, &stream);
}

/* XINFO GROUPS key. */
static void info_groups(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct stream stream;
    if (!resp_value_in_dram(session, request, 2) ||
        !read_stream(session, request, 2, &item, &stream))
        return;
    if (item == NULL) {
        reply_error(session, "ERR no such key");
        return;
    }
    size_t count = 0;
    size_t *order = malloc((stream.group_count + 1) * sizeof(*order));
    const unsigned char **names = calloc((stream.group_count + 1), sizeof(*names));
    uint32_t *lengths = calloc((stream.group_count + 1), sizeof(*lengths));
    if (order == NULL || names == NULL || lengths == NULL) {
        reply_error(session, "OOM out of memory: could not read the stream");
    } else {
        for (size_t i = 0; i < stream.group_count; i++) {
            names[i] = stream.groups[i].name;
            lengths[i] = stream.groups[i].name_length;
            if (!stream.groups[i].removed) order[count++] = i;
        }
        sort_by_name(order, count, names, lengths);
        reply_array(session, count);
        for (size_t i = 0; i < count; i++) {
            const struct stream_group *group = &stream.groups[order[i]];
            size_t consumers = 0;
            for (size_t j = 0; j < group->consumer_count; j++)
                consumers += !group->consumers[j].removed;
            reply_map(session, 6);
            reply_bulk_text(session, "name");
            reply_bulk(session, group->name, group->name_length);
            reply_bulk_text(session, "consumers");
            reply_integer(session, (int64_t)consumers);
            reply_bulk_text(session, "pending");
            reply_integer(session, (int64_t)group_pending_count(group));
            reply_bulk_text(session, "last-delivered-id");
            reply_id(session, group->last_delivered);
            reply_bulk_text(session, "entries-read");
            if (group->entries_read == ENTRIES_READ_UNKNOWN) {
                reply_null(session);
            } else {
                reply_integer(session, group->entries_read);
            }
            reply_bulk_text(session, "lag");
            reply_lag(session, &stream, group);
        }
    }
    free(order);
    free(names);
    free(lengths);
    done_reading(item, &stream);
}

/* XINFO CONSUMERS key group. */
static void info_consumers(struct resp_session *session, const struct resp_request *request) {
    struct item *item;
    struct stream stream;
    if (!resp_value_in_dram(session, request, 2) ||
        !read_stream(session, request, 2, &item, &stream))
        return;
    if (item == NULL) {
        reply_error(session, "ERR no such key");
        return;
    }
    struct stream_group *group = group_find(&stream, request->argv[3], request->lengths[3]);
    if (group == NULL) {
        reply_errorf(session, "NOGROUP No such consumer group '%.*s' for key name '%.*s'",
                     (int)(request->lengths[3] > 200 ? 200 : request->lengths[3]),
                     (const char *)request->argv[3],
                     (int)(request->lengths[2] > 200 ? 200 : request->lengths[2]),
                     (const char *)request->argv[2]);
        done_reading(item, &stream);
        return;
    }
    size_t count = 0, slots = group->consumer_count + 1;
    size_t *order = malloc(slots * sizeof(*order));
    const unsigned char **names = calloc(slots, sizeof(*names));
    uint32_t *lengths = calloc(slots, sizeof(*lengths));
    if (order == NULL || names == NULL || lengths == NULL) {
        reply_error(session, "OOM out of memory: could not read the stream");
    } else {
        for (size_t i = 0; i < group->consumer_count; i++) {
            names[i] = group->consumers[i].name;
            lengths[i] = group->consumers[i].name_length;
            if (!group->consumers[i].removed) order[count++] = i;
        }
        sort_by_name(order, count, names, lengths);
        int64_t now = clock_realtime_ms();
        reply_array(session, count);
        for (size_t i = 0; i < count; i++) {
            const struct stream_consumer *consumer = &group->consumers[order[i]];
            int64_t idle = now - consumer->seen_ms;
            reply_map(session, 3);
            reply_bulk_text(session, "name");
            reply_bulk(session, consumer->name, consumer->name_length);
            reply_bulk_text(session, "pending");
            reply_integer(session, (int64_t)consumer_pending_count(group, order[i]));
            reply_bulk_text(session, "idle");
            reply_integer(session, idle < 0 ? 0 : idle);
        }
    }
    free(order);
    free(names);
    free(lengths);
    done_reading(item, &stream);
}

void command_xinfo(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CONSUMERS <key> <groupname>",
        "    Show consumers of <groupname>.",
        "GROUPS <key>",
        "    Show the stream consumer groups.",
        "STREAM <key> [FULL [COUNT <count>]",
        "    Show information about the stream.",
        "HELP",
        "    Prints this help.",
    };
    if (argument_is(request, 1, "HELP") && request->argc == 2) {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    } else if (argument_is(request, 1, "STREAM") && request->argc >= 3) {
        info_stream(session, request);
    } else if (argument_is(request, 1, "GROUPS") && request->argc == 3) {
        info_groups(session, request);
    } else if (argument_is(request, 1, "CONSUMERS") && request->argc == 4) {
        info_consumers(session, request);
    } else if (argument_is(request, 1, "STREAM") || argument_is(request, 1, "GROUPS") ||
               argument_is(request, 1, "CONSUMERS") || argument_is(request, 1, "HELP")) {
        reply_subcommand_arity(session, request, "xinfo");
    } else {
        reply_unknown_subcommand(session, request, "XINFO");
    }
}

/* ---- changing ------------------------------------------------------------------------------ */

/* A change to a stream: the command's edit works on STREAM, decoded from the current
 * value, and says whether to store it. */
struct stream_change;
typedef bool (*stream_edit_fn)(struct resp_session *session, const struct resp_request *request,
                               struct stream_change *change);
typedef void (*stream_reply_fn)(struct resp_session *session, struct stream_change *change);

/* One entry a command answers: the entry's index in the stream (or -1 for a deleted
 * one, answered as its id and nil) and its id. */
struct answered {
    int64_t entry;
    struct stream_id id;
};

struct stream_change {
    stream_edit_fn edit;
    stream_reply_fn reply;
    void *arguments;       /* the command's parsed arguments */
    struct stream stream;  /* this attempt's stream */
    bool exists;           /* the key held a stream */
    bool changed;          /* store STREAM */
    bool replied_nil;      /* reply nil (XADD NOMKSTREAM on a missing key) */
    bool stored;           /* set by the reply: the change is done */
    int64_t integer;       /* a number the reply answers */
    struct stream_id id;   /* an id the reply answers */
    struct answered *list; /* entries the reply answers */
    size_t list_count, list_capacity;
    struct stream_id *deleted; /* XAUTOCLAIM's ids of deleted entries */
    size_t deleted_count, deleted_capacity;
    /* XADD: after a lost compare-and-swap, go back to the in-place append (see
     * command_xadd()) rather than copying the stream again. */
    unsigned attempts;       /* the attempts started */
    bool may_retry_in_place; /* set by the caller */
    bool wait_for_holder;    /* set by the caller: the in-place edit did not run, and it
                                may wait for whoever held the value for a moment */
    bool retry_in_place;     /* set by the edit: nothing replied, try in place again */
};

static bool answer(struct stream_change *change, int64_t entry, struct stream_id id) {
    if (!array_grow((void **)&change->list, &change->list_capacity, change->list_count + 1,
                    sizeof(*change->list)))
        return false;
    change->list[change->list_count++] = (struct answered){entry, id};
    return true;
}

static void change_reset(struct stream_change *change) {
    stream_free(&change->stream);
    free(change->list);
    free(change->deleted);
    stream_edit_fn edit = change->edit;
    stream_reply_fn reply = change->reply;
    void *arguments = change->arguments;
    bool stored = change->stored, may_retry_in_place = change->may_retry_in_place;
    bool retry_in_place = change->retry_in_place, wait_for_holder = change->wait_for_holder;
    unsigned attempts = change->attempts;
    *change = (struct stream_change){.edit = edit,
                                     .reply = reply,
                                     .arguments = arguments,
                                     .stored = stored,
                                     .attempts = attempts,
                                     .may_retry_in_place = may_retry_in_place,
                                     .wait_for_holder = wait_for_holder,
                                     .retry_in_place = retry_in_place};
}

/* The trimming of XADD and XTRIM. */
enum trim_strategy { TRIM_NONE, TRIM_MAXLEN, TRIM_MINID };

struct trim {
    enum trim_strategy strategy;
    bool approximate;
    int64_t max_length;
    struct stream_id min_id;
    int64_t limit;         /* entries removed at most (0: no limit) */
    uint64_t node_entries; /* approximate: entries per run (stream_node_entries()) */
};

/* XADD's and XTRIM's options. */
struct add_arguments {
    struct trim trim;
    bool no_create;
    bool id_given, seq_given;
    struct stream_id id;
    size_t id_index;
    const unsigned char *producer; /* IDMP, or NULL */
    uint64_t producer_length;
    uint64_t sequence;
};

static bool edit_add(struct resp_session *session, const struct resp_request *request,
                     struct stream_change *change);
static bool append_copy(const struct resp_request *request, struct resp_value_change *value,
                        struct stream_change *change);

static bool stream_update_edit(struct resp_session *session, const struct resp_request *request,
                               struct resp_value_change *value) {
    struct stream_change *change = value->context;
    change_reset(change);
    change->exists = value->exists;
    if (change->edit == edit_add) {
        value->with_room = true; /* so that the next XADD appends in place */
        /* Back to the in-place append (command_xadd()) when another change was stored
         * meanwhile (most likely with room), or when the in-place edit did not run on a
         * value large enough to live in a block: someone held it for a moment (another
         * worker's look-up before its command). Returns false with nothing replied (and
         * nothing stored), which only command_xadd() expects. */
        bool retry = change->attempts > 0
                         ? change->may_retry_in_place
                         : change->wait_for_holder && value->length >= STORE_BLOCK_THRESHOLD;
        change->attempts++;
        if (retry && value->exists) {
            change->retry_in_place = true;
            return false;
        }
        if (value->exists && append_copy(request, value, change)) return true;
        value->encoded.length = 0;
    }
    enum decode_result decoded =
        value->exists ? stream_decode(value->value, value->length, &change->stream) : DECODED;
    if (decoded != DECODED) {
        reply_decode_error(session, decoded);
        return false;
    }
    if (!change->edit(session, request, change)) return false;
    if (!change->changed) return true;
    value->outcome = RESP_VALUE_STORE;
    if (!stream_encode(&change->stream, &value->encoded)) value->encoded.failed = true;
    return true;
}

static void stream_update_reply(struct resp_session *session,
                                const struct resp_value_change *value) {
    struct stream_change *change = value->context;
    change->stored = true;
    change->reply(session, change);
}

static void stream_update_discard(struct resp_value_change *value) {
    struct stream_change *change = value->context;
    stream_free(&change->stream);
}

static const struct resp_value_ops stream_ops = {STORE_TYPE_STREAM, stream_update_edit,
                                                 stream_update_reply, stream_update_discard};

/* Runs a change on the stream at argument KEY_INDEX (resp_value_update()): EDIT changes
 * the decoded stream, REPLY answers once it is stored. Returns whether it was stored
 * and replied (false: an error was replied, or the command waits for a flash read). */
static bool update_stream(struct resp_session *session, const struct resp_request *request,
                          size_t key_index, stream_edit_fn edit, stream_reply_fn reply,
                          void *arguments) {
    struct stream_change change = {.edit = edit, .reply = reply, .arguments = arguments};
    resp_value_update(session, request, key_index, &stream_ops, &change);
    change_reset(&change);
    return change.stored;
}

static void reply_change_integer(struct resp_session *session, struct stream_change *change) {
    reply_integer(session, change->integer);
}

static void reply_change_ok(struct resp_session *session, struct stream_change *change) {
    (void)change;
    reply_ok(session);
}

/* Removes entries from STREAM's head as TRIM says; returns how many. */
static int64_t stream_trim(struct stream *stream, const struct trim *trim) {
    int64_t removed = 0;
    size_t at = 0;
    while (stream->live > 0) {
        while (at < stream->count && stream->entries[at].removed)
            at++;
        if (!trim->approximate) {
            bool goes = trim->strategy == TRIM_MAXLEN
                            ? stream->live > (uint64_t)trim->max_length
                            : id_compare(stream->entries[at].id, trim->min_id) < 0;
            if (!goes) break;
            entry_remove(stream, at);
            removed++;
            continue;
        }
        /* A node: the next node_entries live entries. */
        size_t end = at, in_node = 0;
        struct stream_id last = {0, 0};
        while (end < stream->count && in_node < trim->node_entries) {
            if (!stream->entries[end].removed) {
                in_node++;
                last = stream->entries[end].id;
            }
            end++;
        }
        bool goes = trim->strategy == TRIM_MAXLEN
                        ? stream->live - in_node >= (uint64_t)trim->max_length
                        : id_compare(last, trim->min_id) < 0;
        if (!goes || (trim->limit != 0 && removed + (int64_t)in_node > trim->limit)) break;
        for (size_t i = at; i < end; i++)
            if (!stream->entries[i].removed) entry_remove(stream, i);
        removed += (int64_t)in_node;
        at = end;
    }
    return removed;
}

/* Parses XADD's or XTRIM's options from argument 2 (Redis's
 * streamParseAddOrTrimArgsOrReply()). For XADD, stops at the id: ARGUMENTS->id_index. */
static bool parse_add_or_trim(struct resp_session *session, const struct resp_request *request,
                              bool add, struct add_arguments *arguments) {
    struct trim *trim = &arguments->trim;
    bool limit_given = false;
    size_t i = 2;
    for (; i < request->argc; i++) {
        size_t more = request->argc - 1 - i;
        if (add && argument_equals(request, i, "*")) {
            break;
        } else if ((argument_is(request, i, "MAXLEN") || argument_is(request, i, "MINID")) &&
                   more > 0) {
            bool maxlen = argument_is(request, i, "MAXLEN");
            if (trim->strategy != TRIM_NONE) {
                reply_error(session, "ERR syntax error, MAXLEN and MINID options at the same time "
                                     "are not compatible");
                return false;
            }
            trim->approximate = false;
            if (more >= 2 && argument_equals(request, i + 1, "~")) {
                trim->approximate = true;
                i++;
            } else if (more >= 2 && argument_equals(request, i + 1, "=")) {
                i++;
            }
            if (maxlen) {
                if (!argument_int64(session, request, i + 1, &trim->max_length)) return false;
                if (trim->max_length < 0) {
                    reply_error(session, "ERR The MAXLEN argument must be >= 0.");
                    return false;
                }
                trim->strategy = TRIM_MAXLEN;
            } else {
                if (!argument_id(session, request, i + 1, &trim->min_id)) return false;
                trim->strategy = TRIM_MINID;
            }
            i++;
        } else if (argument_is(request, i, "LIMIT") && more > 0) {
            if (!argument_int64(session, request, i + 1, &trim->limit)) return false;
            if (trim->limit < 0) {
                reply_error(session, "ERR The LIMIT argument must be >= 0.");
                return false;
            }
            limit_given = true;
            i++;
        } else if (add && argument_is(request, i, "NOMKSTREAM")) {
            arguments->no_create = true;
        } else if (add && argument_is(request, i, "IDMP") && more >= 2) {
            /* strata's deduplicated append: IDMP producer sequence. */
            arguments->producer = request->argv[i + 1];
            arguments->producer_length = request->lengths[i + 1];
            if (arguments->producer_length == 0 || arguments->producer_length > PRODUCER_NAME_MAX) {
                reply_error(session, "ERR the IDMP producer must be 1 to 512 bytes");
                return false;
            }
            if (!parse_uint64(request->argv[i + 2], (size_t)request->lengths[i + 2],
                              &arguments->sequence)) {
                reply_error(session, "ERR the IDMP sequence must be a non-negative integer");
                return false;
            }
            i += 2;
        } else if (add) {
            if (!parse_id(request->argv[i], request->lengths[i], 0, ID_PARTIAL, &arguments->id,
                          &arguments->seq_given)) {
                reply_error(session, INVALID_ID_ERROR);
                return false;
            }
            arguments->id_given = true;
            break;
        } else {
            reply_syntax_error(session);
            return false;
        }
    }
    if (trim->limit != 0 && trim->strategy == TRIM_NONE) {
        reply_error(
            session,
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy");
        return false;
    }
    if (!add && trim->strategy == TRIM_NONE) {
        reply_error(session, "ERR syntax error, XTRIM must be called with a trimming strategy");
        return false;
    }
    if (limit_given && !trim->approximate) {
        reply_error(session, "ERR syntax error, LIMIT cannot be used without the special ~ option");
        return false;
    }
    /* As Redis: ~ removes at most 100 nodes unless told otherwise. */
    int64_t node_option =
        options_number(session->server->environment.options, RESP_OPTION(stream_node_max_entries));
    trim->node_entries = stream_node_entries(session);
    if (!limit_given)
        trim->limit = !trim->approximate ? 0
                      : node_option > 0  ? 100 * node_option
                                         : APPROXIMATE_LIMIT;
    arguments->id_index = i;
    return true;
}

/* Remembers that PRODUCER's SEQUENCE got ID, as its most recent use. */
static bool producer_remember(struct stream *stream, const unsigned char *name, uint64_t length,
                              uint64_t sequence, struct stream_id id) {
    size_t at = stream->producer_count;
    for (size_t i = 0; i < stream->producer_count; i++) {
        if (names_equal(stream->producers[i].name, stream->producers[i].name_length, name,
                        length)) {
            at = i;
            break;
        }
    }
    if (at == stream->producer_count) {
        if (!array_grow((void **)&stream->producers, &stream->producer_capacity,
                        stream->producer_count + 1, sizeof(*stream->producers)))
            return false;
        stream->producer_count++;
    }
    memmove(&stream->producers[at], &stream->producers[at + 1],
            (stream->producer_count - at - 1) * sizeof(*stream->producers));
    stream->producers[stream->producer_count - 1] = (struct stream_producer){
        .name = name, .name_length = (uint32_t)length, .sequence = sequence, .id = id};
    if (stream->producer_count > PRODUCERS_MAX) {
        size_t forgotten = stream->producer_count - PRODUCERS_MAX;
        memmove(stream->producers, stream->producers + forgotten,
                PRODUCERS_MAX * sizeof(*stream->producers));
        stream->producer_count = PRODUCERS_MAX;
    }
    return true;
}

#define ID_NOT_GREATER_ERROR                                                                       \
    "ERR The ID specified in XADD is equal or smaller than the target stream top item"

/* The id XADD gives its entry after LAST_ID (Redis's streamAppendItem()): *, ms-* or an
 * explicit one; `*` takes NOW_MS (Unix ms). Returns NULL, or the error to reply. */
static const char *next_id_or_error(const struct add_arguments *arguments, struct stream_id last_id,
                                    uint64_t now_ms, struct stream_id *id) {
    if (id_compare(last_id, ID_MAX) == 0)
        return "ERR The stream has exhausted the last possible ID, unable to add more items";
    if (!arguments->id_given) {
        id->ms = now_ms;
        if (id->ms > last_id.ms) {
            id->seq = 0;
        } else {
            *id = last_id;
            id_increment(id);
        }
    } else if (!arguments->seq_given) {
        /* ms-*: the next sequence of that millisecond (Redis's streamAppendItem()). */
        *id = arguments->id;
        if (last_id.ms == id->ms) {
            if (last_id.seq == UINT64_MAX) return ID_NOT_GREATER_ERROR;
            id->seq = last_id.seq + 1;
        }
        if (id_compare(*id, last_id) <= 0) return ID_NOT_GREATER_ERROR;
    } else {
        *id = arguments->id;
        if (id_compare(*id, last_id) <= 0) return ID_NOT_GREATER_ERROR;
    }
    return NULL;
}

/* The current Unix time in ms, for `*` ids. */
static uint64_t now_ms(void) {
    int64_t now = clock_realtime_ms();
    return now > 0 ? (uint64_t)now : 0;
}

/* next_id_or_error() at this moment, replying the error: false then. */
static bool next_id(struct resp_session *session, const struct add_arguments *arguments,
                    struct stream_id last_id, struct stream_id *id) {
    const char *error = next_id_or_error(arguments, last_id, now_ms(), id);
    if (error != NULL) reply_error(session, error);
    return error == NULL;
}

/* The strings of XADD's entry (from argument FIRST on), encoded, into OUTPUT. */
static void write_strings(const struct resp_request *request, size_t first,
                          struct byte_buffer *output) {
    for (size_t i = first; i < request->argc; i++) {
        write_u32(output, (uint32_t)request->lengths[i]);
        byte_buffer_append(output, request->argv[i], (size_t)request->lengths[i]);
    }
}

enum idmp_check { IDMP_NEW, IDMP_DUPLICATE, IDMP_REFUSED };

/* XADD IDMP's check against STREAM's producers: IDMP_NEW to append (always without
 * IDMP), IDMP_DUPLICATE with *ID the first append's id, or IDMP_REFUSED after replying
 * the error for a sequence below the producer's last. */
static enum idmp_check idmp_check(struct resp_session *session, const struct stream *stream,
                                  const struct add_arguments *arguments, struct stream_id *id) {
    if (arguments->producer == NULL) return IDMP_NEW;
    for (size_t i = 0; i < stream->producer_count; i++) {
        const struct stream_producer *producer = &stream->producers[i];
        if (!names_equal(producer->name, producer->name_length, arguments->producer,
                         arguments->producer_length))
            continue;
        if (arguments->sequence == producer->sequence) {
            *id = producer->id; /* a retry: the first append's id */
            return IDMP_DUPLICATE;
        }
        if (arguments->sequence < producer->sequence) {
            reply_errorf(session,
                         "ERR IDMP sequence %" PRIu64 " is below the producer's last, %" PRIu64
                         ": it was appended already",
                         arguments->sequence, producer->sequence);
            return IDMP_REFUSED;
        }
    }
    return IDMP_NEW;
}

/* ---- XADD in place (version 2) ---------------------------------------------------------- */

#define IN_PLACE_TRIM_WALK   1024 /* head entries an append under the shard lock may trim */
#define ADD_IN_PLACE_ROUNDS  16   /* XADD's returns to the in-place append (command_xadd()) */
#define ADD_UNREACHED_ROUNDS 4    /* those when the value was held (the edit did not run) */

/* What edit_add_in_place() takes and finds. */
struct add_edit {
    const struct resp_request *request;
    const struct add_arguments *arguments;
    uint64_t now_ms;   /* the time `*` takes */
    uint64_t walk_max; /* head entries the trim may walk (UINT64_MAX: any) */
    enum { ADD_DECLINED, ADD_APPENDED, ADD_DUPLICATE, ADD_NO_ROOM } outcome;
    struct stream_id id; /* the appended entry's id, or the duplicate's first id */
    bool reached;        /* the edit ran */
};

/* A walk over a version-2 value's entries, from the head, with the entry being added
 * after the COUNT stored ones (index COUNT). */
struct entry_walk {
    const unsigned char *value;
    uint64_t at, end; /* the current stored entry's offset; the entries' end */
    uint32_t index, count;
    struct stream_id added;
};

/* The id of the walk's current entry; false when the value is damaged. */
static bool walk_id(const struct entry_walk *walk, struct stream_id *id) {
    if (walk->index >= walk->count) {
        *id = walk->added;
        return true;
    }
    if (walk->end - walk->at < ENTRY_HEADER_SIZE) return false;
    id->ms = strata_load64(walk->value + walk->at);
    id->seq = strata_load64(walk->value + walk->at + 8);
    return true;
}

/* Moves the walk to the next entry; false when the value is damaged. */
static bool walk_next(struct entry_walk *walk) {
    if (walk->index < walk->count) {
        if (walk->end - walk->at < ENTRY_HEADER_SIZE) return false;
        uint64_t size = ENTRY_HEADER_SIZE + (uint64_t)strata_load32(walk->value + walk->at + 20);
        if (walk->end - walk->at < size) return false;
        walk->at += size;
    }
    walk->index++;
    return true;
}

/* How many head entries TRIM removes from the TOTAL entries WALK covers (the added one
 * included), as stream_trim() would (all entries live), into *REMOVED, with the walk left
 * at the first kept entry. False to decline: the value is damaged, or more than WALK_MAX
 * entries would be walked. */
static bool trim_plan(const struct trim *trim, struct entry_walk *walk, uint64_t walk_max,
                      uint64_t *removed) {
    uint64_t total = (uint64_t)walk->count + 1, gone = 0;
    if (trim->strategy == TRIM_MAXLEN) {
        uint64_t max = (uint64_t)trim->max_length;
        if (!trim->approximate) {
            gone = total > max ? total - max : 0;
        } else {
            for (uint64_t live = total; live > 0;) {
                uint64_t in_node = live < trim->node_entries ? live : trim->node_entries;
                if (live - in_node < max ||
                    (trim->limit != 0 && gone + in_node > (uint64_t)trim->limit))
                    break;
                gone += in_node;
                live -= in_node;
            }
        }
        if (gone > walk_max) return false;
        for (uint64_t i = 0; i < gone; i++)
            if (!walk_next(walk)) return false;
    } else if (trim->strategy == TRIM_MINID) {
        struct stream_id id;
        while (gone < total) {
            if (gone > walk_max) return false;
            if (!trim->approximate) {
                if (!walk_id(walk, &id)) return false;
                if (id_compare(id, trim->min_id) >= 0) break;
                if (!walk_next(walk)) return false;
                gone++;
                continue;
            }
            /* A node: the next node_entries entries, gone when its last id is below. */
            uint64_t in_node =
                total - gone < trim->node_entries ? total - gone : trim->node_entries;
            if (trim->limit != 0 && gone + in_node > (uint64_t)trim->limit) break;
            struct entry_walk node = *walk;
            for (uint64_t i = 0; i + 1 < in_node; i++)
                if (!walk_next(&node)) return false;
            if (!walk_id(&node, &id)) return false;
            if (id_compare(id, trim->min_id) >= 0) break;
            if (!walk_next(&node)) return false;
            *walk = node;
            gone += in_node;
        }
    }
    *removed = gone;
    return true;
}

/* Finds PRODUCER among the version-2 producers at PRODUCERS (the u32 count, up to END)
 * of VALUE: *RECORD is its record's offset (0 when absent). False when damaged. */
static bool producer_locate(const unsigned char *value, uint64_t producers, uint64_t end,
                            const unsigned char *name, uint64_t name_length, uint64_t *record) {
    *record = 0;
    if (end - producers < 4) return false;
    uint32_t count = strata_load32(value + producers);
    uint64_t at = producers + 4;
    for (uint32_t i = 0; i < count; i++) {
        if (end - at < 4) return false;
        uint32_t length = strata_load32(value + at);
        if (end - at - 4 < (uint64_t)length + 24) return false;
        if (names_equal(value + at + 4, length, name, name_length)) {
            *record = at;
            return true;
        }
        at += PRODUCER_FIXED_SIZE + (uint64_t)length;
    }
    return true;
}

/* Writes a producer record (u32 name length, the name, u64 sequence, the id) at AT. */
static void producer_write(unsigned char *at, const unsigned char *name, uint32_t name_length,
                           uint64_t sequence, struct stream_id id) {
    strata_store32(at, name_length);
    memcpy(at + 4, name, name_length);
    strata_store64(at + 4 + name_length, sequence);
    strata_store64(at + 12 + name_length, id.ms);
    strata_store64(at + 20 + name_length, id.seq);
}

/* XADD on a version-2 value, in its buffer (a store_edit_fn: CONTEXT is a struct
 * add_edit): appends the entry after the others, moving the groups and producers up,
 * trims the head and updates the header and (IDMP) the producer. Declines, changing
 * nothing, for a version-1 or damaged value, an error to reply (the fallback replies it),
 * too little room or a long trim; a duplicate IDMP append also declines, with
 * EDIT->outcome ADD_DUPLICATE and its first id. Allocates nothing. */
static bool edit_add_in_place(void *context, unsigned char *value, uint64_t *length,
                              uint64_t capacity) {
    struct add_edit *edit = context;
    const struct add_arguments *arguments = edit->arguments;
    const struct resp_request *request = edit->request;
    edit->outcome = ADD_DECLINED;
    edit->reached = true;
    uint64_t size = *length;
    if (size < STREAM_HEADER_SIZE || value[0] != STREAM_VERSION_2 || capacity < size) return false;
    uint32_t count = strata_load32(value + HEADER_COUNT);
    uint64_t entries_length = strata_load64(value + HEADER_ENTRIES_LENGTH);
    uint64_t groups_length = strata_load64(value + HEADER_GROUPS_LENGTH);
    if (count == UINT32_MAX || entries_length > size - STREAM_HEADER_SIZE ||
        groups_length > size - STREAM_HEADER_SIZE - entries_length)
        return false;
    uint64_t entries_end = STREAM_HEADER_SIZE + entries_length;
    uint64_t producers = entries_end + groups_length;

    uint64_t record = 0, record_growth = 0;
    if (arguments->producer != NULL) {
        if (!producer_locate(value, producers, size, arguments->producer,
                             arguments->producer_length, &record))
            return false;
        if (record != 0) {
            uint32_t name_length = strata_load32(value + record);
            uint64_t sequence = strata_load64(value + record + 4 + name_length);
            if (arguments->sequence == sequence) {
                edit->id.ms = strata_load64(value + record + 12 + name_length);
                edit->id.seq = strata_load64(value + record + 20 + name_length);
                edit->outcome = ADD_DUPLICATE;
                return false;
            }
            if (arguments->sequence < sequence) return false; /* the fallback replies */
        } else {
            record_growth = PRODUCER_FIXED_SIZE + arguments->producer_length;
        }
    }

    struct stream_id last_id = {strata_load64(value + HEADER_LAST_ID),
                                strata_load64(value + HEADER_LAST_ID + 8)};
    struct stream_id id;
    if (next_id_or_error(arguments, last_id, edit->now_ms, &id) != NULL) return false;
    size_t first = arguments->id_index + 1;
    uint64_t strings_length = 0;
    for (size_t i = first; i < request->argc; i++)
        strings_length += 4 + request->lengths[i];
    if (strings_length > UINT32_MAX) return false;
    uint64_t entry_size = ENTRY_HEADER_SIZE + strings_length;
    if (capacity - size < entry_size + record_growth) {
        edit->outcome = ADD_NO_ROOM; /* declined only for want of room */
        return false;
    }

    struct entry_walk walk = {value, STREAM_HEADER_SIZE, entries_end, 0, count, id};
    uint64_t removed = 0;
    if (!trim_plan(&arguments->trim, &walk, edit->walk_max, &removed)) return false;

    /* The new layout: header, the kept stored entries, the new one (unless trimmed too),
     * then the groups and producers, moved in the order that overwrites nothing unread. */
    bool entry_kept = removed <= count;
    uint64_t kept_from = walk.index <= count ? walk.at : entries_end;
    uint64_t kept = entries_end - kept_from;
    uint64_t new_entries_end = STREAM_HEADER_SIZE + kept + (entry_kept ? entry_size : 0);
    uint64_t tail = size - entries_end;
    if (new_entries_end >= entries_end) {
        memmove(value + new_entries_end, value + entries_end, tail);
        memmove(value + STREAM_HEADER_SIZE, value + kept_from, kept);
    } else {
        memmove(value + STREAM_HEADER_SIZE, value + kept_from, kept);
        memmove(value + new_entries_end, value + entries_end, tail);
    }
    size = new_entries_end + tail;
    if (entry_kept) {
        unsigned char *entry = value + STREAM_HEADER_SIZE + kept;
        strata_store64(entry, id.ms);
        strata_store64(entry + 8, id.seq);
        strata_store32(entry + 16, (uint32_t)(request->argc - first));
        strata_store32(entry + 20, (uint32_t)strings_length);
        unsigned char *at = entry + ENTRY_HEADER_SIZE;
        for (size_t i = first; i < request->argc; i++) {
            strata_store32(at, (uint32_t)request->lengths[i]);
            memcpy(at + 4, request->argv[i], (size_t)request->lengths[i]);
            at += 4 + request->lengths[i];
        }
    }

    if (arguments->producer != NULL) {
        /* The producer becomes the most recent: its record goes last. */
        uint64_t moved = new_entries_end - entries_end; /* modulo 2^64: may be negative */
        producers += moved;
        uint32_t name_length = (uint32_t)arguments->producer_length;
        uint64_t record_size = PRODUCER_FIXED_SIZE + (uint64_t)name_length;
        uint32_t producer_count = strata_load32(value + producers);
        if (record != 0) {
            record += moved;
            memmove(value + record, value + record + record_size, size - record - record_size);
            size -= record_size;
        } else if (producer_count == PRODUCERS_MAX) {
            /* The least recently used producer is forgotten. */
            uint64_t oldest = PRODUCER_FIXED_SIZE + (uint64_t)strata_load32(value + producers + 4);
            memmove(value + producers + 4, value + producers + 4 + oldest,
                    size - producers - 4 - oldest);
            size -= oldest;
        } else {
            producer_count++;
        }
        producer_write(value + size, arguments->producer, name_length, arguments->sequence, id);
        size += record_size;
        strata_store32(value + producers, producer_count);
    }

    strata_store64(value + HEADER_LAST_ID, id.ms);
    strata_store64(value + HEADER_LAST_ID + 8, id.seq);
    strata_store64(value + HEADER_ENTRIES_ADDED, strata_load64(value + HEADER_ENTRIES_ADDED) + 1);
    strata_store32(value + HEADER_COUNT, (uint32_t)((uint64_t)count + 1 - removed));
    strata_store64(value + HEADER_ENTRIES_LENGTH, new_entries_end - STREAM_HEADER_SIZE);
    *length = size;
    edit->id = id;
    edit->outcome = ADD_APPENDED;
    return true;
}

/* XRANGE (or, REVERSE, XREVRANGE) from START to END (inclusive) with COUNT (> 0) on
 * ITEM, a version-2 stream, without decoding it: walks the entries' headers from the
 * head, up to END (forwards: up to the COUNT-th match), keeping the offsets of the last
 * COUNT matches, and replies those entries. Returns false, having replied nothing, when
 * it cannot (version 1, damaged, out of memory): decode the stream instead. */
static bool range_by_walk(struct resp_session *session, const struct item *item,
                          struct stream_id start, struct stream_id end, uint64_t count,
                          bool reverse) {
    const unsigned char *value = item_value(item);
    uint64_t size = item_value_length(item);
    if (size < STREAM_HEADER_SIZE || value[0] != STREAM_VERSION_2) return false;
    uint32_t stored = strata_load32(value + HEADER_COUNT);
    uint64_t entries_length = strata_load64(value + HEADER_ENTRIES_LENGTH);
    if (entries_length > size - STREAM_HEADER_SIZE) return false;
    uint64_t kept = count < stored ? count : stored;
    if (kept == 0) {
        reply_array(session, 0);
        return true;
    }
    uint64_t *offsets = malloc((size_t)kept * sizeof(*offsets));
    if (offsets == NULL) return false;
    struct entry_walk walk = {
        value, STREAM_HEADER_SIZE, STREAM_HEADER_SIZE + entries_length, 0, stored, {0, 0}};
    uint64_t found = 0;
    bool damaged = false; /* the decode replies the error */
    while (id_compare(start, end) <= 0 && walk.index < stored) {
        struct stream_id id;
        uint64_t at = walk.at;
        if (!walk_id(&walk, &id)) {
            damaged = true;
            break;
        }
        if (id_compare(id, end) > 0) break;
        if (!walk_next(&walk)) {
            damaged = true;
            break;
        }
        if (id_compare(id, start) < 0) continue;
        if (!strings_valid(value + at + ENTRY_HEADER_SIZE, strata_load32(value + at + 20),
                           strata_load32(value + at + 16))) {
            damaged = true;
            break;
        }
        offsets[found % kept] = at;
        found++;
        if (!reverse && found == kept) break;
    }
    if (damaged) {
        free(offsets);
        return false;
    }
    uint64_t replied = found < kept ? found : kept;
    reply_array(session, replied);
    for (uint64_t i = 0; i < replied; i++) {
        /* Forwards the walk stopped at the COUNT-th match: the offsets are in order. */
        uint64_t at = offsets[reverse ? (found - 1 - i) % kept : i];
        struct stream_entry entry = {
            .id = {strata_load64(value + at), strata_load64(value + at + 8)},
            .strings = value + at + ENTRY_HEADER_SIZE,
            .count = strata_load32(value + at + 16),
            .length = strata_load32(value + at + 20),
        };
        reply_entry(session, &entry);
    }
    free(offsets);
    return true;
}

/* The room edit_add_in_place() may need beyond the value for REQUEST's entry. */
static uint64_t append_room(const struct resp_request *request,
                            const struct add_arguments *arguments) {
    uint64_t room = ENTRY_HEADER_SIZE + PRODUCER_FIXED_SIZE + arguments->producer_length;
    for (size_t i = arguments->id_index + 1; i < request->argc; i++)
        room += 4 + request->lengths[i];
    return room;
}

/* XADD's read-modify-write on a version-2 value (VALUE, which exists): a copy of the
 * value, appended to by edit_add_in_place() with no limit on the trim, becomes the new
 * value (or a duplicate is answered, storing nothing). Returns false when the copy
 * declined (a version-1 value, an error to reply): decode the stream instead. */
static bool append_copy(const struct resp_request *request, struct resp_value_change *value,
                        struct stream_change *change) {
    const struct add_arguments *arguments = change->arguments;
    uint64_t room = append_room(request, arguments);
    struct byte_buffer *output = &value->encoded;
    output->length = 0;
    if (value->length < 1 || value->value[0] != STREAM_VERSION_2 ||
        !byte_buffer_reserve(output, (size_t)(value->length + room))) {
        output->failed = false;
        return false;
    }
    memcpy(output->data, value->value, (size_t)value->length);
    uint64_t length = value->length;
    struct add_edit edit = {
        .request = request, .arguments = arguments, .now_ms = now_ms(), .walk_max = UINT64_MAX};
    if (edit_add_in_place(&edit, output->data, &length, value->length + room)) {
        output->length = (size_t)length;
        value->outcome = RESP_VALUE_STORE;
        change->id = edit.id;
        return true;
    }
    if (edit.outcome == ADD_DUPLICATE) {
        change->id = edit.id; /* nothing stored */
        return true;
    }
    return false;
}

/* Gives the stream at argument 1, whose block has no room left for an in-place append,
 * a new block with room holding the same bytes (store_replace_if_unchanged_with_room():
 * one copy, where a rewrite would copy into a buffer and again into the block). Returns
 * whether it did; false when the key changed meanwhile or the store refused. */
static bool make_room(struct resp_session *session, const struct resp_request *request) {
    struct store *store = store_of(session);
    const unsigned char *key = request->argv[1];
    size_t key_length = (size_t)request->lengths[1];
    struct item *item;
    if (store_get_typed(store, key, key_length, STORE_TYPE_STREAM, &item) != STORE_OK) return false;
    enum store_status status =
        store_replace_if_unchanged_with_room(store, key, key_length, item, item_value(item),
                                             item_value_length(item), true, STORE_TYPE_STREAM);
    item_release(item);
    return status == STORE_OK;
}

/* Tries XADD (ARGUMENTS) on the stream at argument 1 in place (store_edit_in_place()).
 * Returns true when it is over (appended or a duplicate, and replied; or WRONGTYPE
 * replied), false when the command must take the read-modify-write path (the key is
 * absent, the value cannot change in place, or an error is to be replied). *REACHED
 * tells whether the edit ran (false: absent, small, held by someone, on flash). */
static bool add_in_place(struct resp_session *session, const struct resp_request *request,
                         const struct add_arguments *arguments, bool *reached, bool *no_room) {
    struct add_edit edit = {.request = request,
                            .arguments = arguments,
                            .now_ms = now_ms(),
                            .walk_max = IN_PLACE_TRIM_WALK,
                            .outcome = ADD_DECLINED};
    const unsigned char *key = request->argv[1];
    size_t key_length = (size_t)request->lengths[1];
    enum store_status status = store_edit_in_place(store_of(session), key, key_length,
                                                   STORE_TYPE_STREAM, edit_add_in_place, &edit);
    *reached = edit.reached;
    *no_room = status == STORE_CONDITION_FAILED && edit.outcome == ADD_NO_ROOM;
    if (status == STORE_OK) {
        reply_id(session, edit.id);
        resp_blocking_signal(session->server, key, key_length);
        return true;
    }
    if (status == STORE_WRONG_TYPE) {
        reply_store_error(session, status);
        return true;
    }
    if (status == STORE_CONDITION_FAILED && edit.outcome == ADD_DUPLICATE) {
        reply_id(session, edit.id);
        return true;
    }
    return false;
}

static bool edit_add(struct resp_session *session, const struct resp_request *request,
                     struct stream_change *change) {
    struct add_arguments *arguments = change->arguments;
    struct stream *stream = &change->stream;
    if (!change->exists && arguments->no_create) {
        change->replied_nil = true;
        return true;
    }
    enum idmp_check check = idmp_check(session, stream, arguments, &change->id);
    if (check != IDMP_NEW) return check == IDMP_DUPLICATE;
    struct stream_id id;
    if (!next_id(session, arguments, stream->last_id, &id)) return false;
    /* The entry's strings, in the change's own buffer. */
    size_t first = arguments->id_index + 1;
    write_strings(request, first, &stream->added);
    if (stream->added.failed ||
        !array_grow((void **)&stream->entries, &stream->capacity, stream->count + 1,
                    sizeof(*stream->entries)) ||
        (arguments->producer != NULL &&
         !producer_remember(stream, arguments->producer, arguments->producer_length,
                            arguments->sequence, id))) {
        reply_error(session, OOM_ERROR);
        return false;
    }
    stream->entries[stream->count++] = (struct stream_entry){
        .id = id,
        .strings = stream->added.data,
        .count = (uint32_t)(request->argc - first),
        .length = (uint32_t)stream->added.length,
    };
    stream->live++;
    stream->entries_added++;
    stream->last_id = id;
    if (arguments->trim.strategy != TRIM_NONE) stream_trim(stream, &arguments->trim);
    change->id = id;
    change->changed = true;
    return true;
}

static void reply_added(struct resp_session *session, struct stream_change *change) {
    if (change->replied_nil) {
        reply_null(session);
    } else {
        reply_id(session, change->id);
    }
}

/* XADD key [NOMKSTREAM] [IDMP producer sequence] [MAXLEN|MINID [=|~] threshold [LIMIT
 * count]] *|id field value [field value ...]. */
void command_xadd(struct resp_session *session, const struct resp_request *request) {
    struct add_arguments arguments = {0};
    if (!parse_add_or_trim(session, request, true, &arguments)) return;
    size_t fields = arguments.id_index + 1;
    if (fields >= request->argc || request->argc - fields < 2 ||
        (request->argc - fields) % 2 != 0) {
        reply_wrong_arity(session, "xadd");
        return;
    }
    for (size_t i = fields; i < request->argc; i++) {
        if (request->lengths[i] > UINT32_MAX / 2) {
            reply_error(session, "ERR Elements are too large to be stored");
            return;
        }
    }
    if (arguments.id_given && arguments.seq_given && id_is_zero(arguments.id)) {
        reply_error(session, "ERR The ID specified in XADD must be greater than 0-0");
        return;
    }
    if (!resp_value_in_dram(session, request, 1)) return;
    /* In place when it can; else a rewrite with room, but a rewrite that loses its race
     * goes back to the in-place append: another writer's rewrite, which made it wait,
     * has left room (two writers that took turns copying a long stream would otherwise
     * keep each other from ever appending in place). When the value was held for a
     * moment (another worker's look-up), the in-place append is tried again a few times,
     * yielding between, before a rewrite. */
    int unreached = 0;
    bool grown = false;
    for (int round = 0;; round++) {
        bool reached = false, no_room = false;
        if (add_in_place(session, request, &arguments, &reached, &no_room)) return;
        if (no_room && !grown && round < ADD_IN_PLACE_ROUNDS) {
            grown = true; /* once: an entry larger than the room a block gets is rewritten */
            if (make_room(session, request)) continue;
        }
        unreached += !reached;
        struct stream_change change = {.edit = edit_add,
                                       .reply = reply_added,
                                       .arguments = &arguments,
                                       .may_retry_in_place = round < ADD_IN_PLACE_ROUNDS,
                                       .wait_for_holder =
                                           !reached && unreached <= ADD_UNREACHED_ROUNDS};
        resp_value_update(session, request, 1, &stream_ops, &change);
        bool again = change.retry_in_place;
        change_reset(&change);
        if (!again) return;
        if (!reached) sched_yield(); /* let the holder let go */
    }
}

static bool edit_trim(struct resp_session *session, const struct resp_request *request,
                      struct stream_change *change) {
    (void)session;
    (void)request;
    struct add_arguments *arguments = change->arguments;
    if (!change->exists) return true;
    change->integer = stream_trim(&change->stream, &arguments->trim);
    change->changed = change->integer > 0;
    return true;
}

/* XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]. */
void command_xtrim(struct resp_session *session, const struct resp_request *request) {
    struct add_arguments arguments = {0};
    if (!parse_add_or_trim(session, request, false, &arguments)) return;
    update_stream(session, request, 1, edit_trim, reply_change_integer, &arguments);
}

static bool edit_delete(struct resp_session *session, const struct resp_request *request,
                        struct stream_change *change) {
    if (!change->exists) return true;
    struct stream_id id;
    for (size_t i = 2; i < request->argc; i++)
        if (!argument_id(session, request, i, &id)) return false;
    struct stream *stream = &change->stream;
    for (size_t i = 2; i < request->argc; i++) {
        argument_id(session, request, i, &id);
        size_t at = entry_lower_bound(stream, id);
        if (at >= stream->count || stream->entries[at].removed ||
            id_compare(stream->entries[at].id, id) != 0)
            continue;
        entry_remove(stream, at);
        if (id_compare(id, stream->max_deleted) > 0) stream->max_deleted = id;
        change->integer++;
    }
    change->changed = change->integer > 0;
    return true;
}

/* XDEL key id [id ...]. */
void command_xdel(struct resp_session *session, const struct resp_request *request) {
    update_stream(session, request, 1, edit_delete, reply_change_integer, NULL);
}

/* XSETID's arguments. */
struct set_id_arguments {
    struct stream_id id, max_deleted;
    int64_t entries_added; /* -1: unchanged */
};

static bool edit_set_id(struct resp_session *session, const struct resp_request *request,
                        struct stream_change *change) {
    (void)request;
    const struct set_id_arguments *arguments = change->arguments;
    struct stream *stream = &change->stream;
    if (!change->exists) {
        reply_error(session, "ERR no such key");
        return false;
    }
    const struct stream_entry *last = last_live(stream);
    if (last != NULL && id_compare(arguments->id, last->id) < 0) {
        reply_error(session,
                    "ERR The ID specified in XSETID is smaller than the target stream top item");
        return false;
    }
    if (last != NULL && arguments->entries_added != -1 &&
        stream->live > (uint64_t)arguments->entries_added) {
        reply_error(session, "ERR The entries_added specified in XSETID is smaller than the target "
                             "stream length");
        return false;
    }
    stream->last_id = arguments->id;
    if (arguments->entries_added != -1) stream->entries_added = (uint64_t)arguments->entries_added;
    if (!id_is_zero(arguments->max_deleted)) stream->max_deleted = arguments->max_deleted;
    change->changed = true;
    return true;
}

/* XSETID key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]. */
void command_xsetid(struct resp_session *session, const struct resp_request *request) {
    struct set_id_arguments arguments = {.entries_added = -1};
    if (!argument_id(session, request, 2, &arguments.id)) return;
    for (size_t i = 3; i < request->argc; i += 2) {
        bool more = i + 1 < request->argc;
        if (argument_is(request, i, "ENTRIESADDED") && more) {
            if (!argument_int64(session, request, i + 1, &arguments.entries_added)) return;
            if (arguments.entries_added < 0) {
                reply_error(session, "ERR entries_added must be positive");
                return;
            }
        } else if (argument_is(request, i, "MAXDELETEDID") && more) {
            if (!argument_id(session, request, i + 1, &arguments.max_deleted)) return;
            if (id_compare(arguments.id, arguments.max_deleted) < 0) {
                reply_error(session, "ERR The ID specified in XSETID is smaller than the provided "
                                     "max_deleted_entry_id");
                return;
            }
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    update_stream(session, request, 1, edit_set_id, reply_change_ok, &arguments);
}

/* ---- consumer groups ----------------------------------------------------------------------- */

static void reply_group_missing(struct resp_session *session, const struct resp_request *request) {
    reply_errorf(session, "NOGROUP No such consumer group '%.*s' for key name '%.*s'",
                 (int)(request->lengths[3] > 200 ? 200 : request->lengths[3]),
                 (const char *)request->argv[3],
                 (int)(request->lengths[2] > 200 ? 200 : request->lengths[2]),
                 (const char *)request->argv[2]);
}

struct group_arguments {
    bool create_stream;
    int64_t entries_read;
};

/* The id in argument 4 of XGROUP CREATE or SETID ($: the stream's last). */
static bool group_start_id(struct resp_session *session, const struct resp_request *request,
                           const struct stream *stream, struct stream_id *id) {
    if (argument_equals(request, 4, "$")) {
        *id = stream->last_id;
        return true;
    }
    return argument_id(session, request, 4, id);
}

static bool edit_group_create(struct resp_session *session, const struct resp_request *request,
                              struct stream_change *change) {
    struct group_arguments *arguments = change->arguments;
    struct stream *stream = &change->stream;
    if (!change->exists && !arguments->create_stream) {
        reply_error(session, "ERR The XGROUP subcommand requires the key to exist. Note that for "
                             "CREATE you may want to use the MKSTREAM option to create an empty "
                             "stream automatically.");
        return false;
    }
    struct stream_id id;
    if (!group_start_id(session, request, stream, &id)) return false;
    if (group_find(stream, request->argv[3], request->lengths[3]) != NULL) {
        reply_error(session, "BUSYGROUP Consumer Group name already exists");
        return false;
    }
    if (!array_grow((void **)&stream->groups, &stream->group_capacity, stream->group_count + 1,
                    sizeof(*stream->groups))) {
        reply_error(session, OOM_ERROR);
        return false;
    }
    stream->groups[stream->group_count++] = (struct stream_group){
        .name = request->argv[3],
        .name_length = (uint32_t)request->lengths[3],
        .last_delivered = id,
        .entries_read = arguments->entries_read,
    };
    change->changed = true;
    return true;
}

/* The group in argument 3 of XGROUP, replying NOGROUP (or the missing key's error) when
 * there is none. */
static struct stream_group *xgroup_group(struct resp_session *session,
                                         const struct resp_request *request,
                                         struct stream_change *change) {
    if (!change->exists) {
        reply_error(session, "ERR The XGROUP subcommand requires the key to exist. Note that for "
                             "CREATE you may want to use the MKSTREAM option to create an empty "
                             "stream automatically.");
        return NULL;
    }
    struct stream_group *group = group_find(&change->stream, request->argv[3], request->lengths[3]);
    if (group == NULL) reply_group_missing(session, request);
    return group;
}

static bool edit_group_setid(struct resp_session *session, const struct resp_request *request,
                             struct stream_change *change) {
    struct group_arguments *arguments = change->arguments;
    struct stream_group *group = xgroup_group(session, request, change);
    struct stream_id id;
    if (group == NULL) return false;
    /* As Redis 7.0, SETID (not CREATE) also takes - and + (the first and last ids). */
    if (argument_equals(request, 4, "-")) {
        id = (struct stream_id){0, 0};
    } else if (argument_equals(request, 4, "+")) {
        id = ID_MAX;
    } else if (!group_start_id(session, request, &change->stream, &id)) {
        return false;
    }
    group->last_delivered = id;
    group->entries_read = arguments->entries_read;
    change->changed = true;
    return true;
}

static bool edit_group_destroy(struct resp_session *session, const struct resp_request *request,
                               struct stream_change *change) {
    if (!change->exists) {
        xgroup_group(session, request, change);
        return false;
    }
    struct stream_group *group = group_find(&change->stream, request->argv[3], request->lengths[3]);
    if (group != NULL) {
        group->removed = true;
        change->integer = 1;
        change->changed = true;
    }
    return true;
}

static bool edit_consumer_create(struct resp_session *session, const struct resp_request *request,
                                 struct stream_change *change) {
    struct stream_group *group = xgroup_group(session, request, change);
    if (group == NULL) return false;
    bool created;
    if (consumer_get(group, request->argv[4], request->lengths[4], 0, &created) < 0) {
        reply_error(session, OOM_ERROR);
        return false;
    }
    change->integer = created;
    change->changed = created;
    return true;
}

static bool edit_consumer_delete(struct resp_session *session, const struct resp_request *request,
                                 struct stream_change *change) {
    struct stream_group *group = xgroup_group(session, request, change);
    if (group == NULL) return false;
    int64_t consumer = consumer_find(group, request->argv[4], request->lengths[4]);
    if (consumer < 0) return true;
    for (size_t i = 0; i < group->pending_count; i++) {
        struct stream_pending *entry = &group->pending[i];
        if (entry->removed || entry->consumer != (uint32_t)consumer) continue;
        entry->removed = true;
        change->integer++;
    }
    group->consumers[consumer].removed = true;
    change->changed = true;
    return true;
}

/* ENTRIESREAD's value in argument INDEX. */
static bool argument_entries_read(struct resp_session *session, const struct resp_request *request,
                                  size_t index, int64_t *value) {
    if (!argument_int64(session, request, index, value)) return false;
    if (*value < 0 && *value != ENTRIES_READ_UNKNOWN) {
        reply_error(session, "ERR value for ENTRIESREAD must be positive or -1");
        return false;
    }
    return true;
}

void command_xgroup(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CREATE <key> <groupname> <id|$> [option]",
        "    Create a new consumer group. Options are:",
        "    * MKSTREAM",
        "      Create the empty stream if it does not exist.",
        "    * ENTRIESREAD entries_read",
        "      Set the group's entries_read counter (internal use).",
        "CREATECONSUMER <key> <groupname> <consumer>",
        "    Create a new consumer in the specified group.",
        "DELCONSUMER <key> <groupname> <consumer>",
        "    Remove the specified consumer.",
        "DESTROY <key> <groupname>",
        "    Remove the specified group.",
        "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
        "    Set the current group ID and entries_read counter.",
        "HELP",
        "    Prints this help.",
    };
    static const struct {
        const char *name;
        int arity;
        stream_edit_fn edit;
        stream_reply_fn reply;
    } subcommands[] = {
        {"CREATE", -5, edit_group_create, reply_change_ok},
        {"SETID", -5, edit_group_setid, reply_change_ok},
        {"DESTROY", 4, edit_group_destroy, reply_change_integer},
        {"CREATECONSUMER", 5, edit_consumer_create, reply_change_integer},
        {"DELCONSUMER", 5, edit_consumer_delete, reply_change_integer},
        {"HELP", 2, NULL, NULL},
    };
    size_t argc = request->argc, chosen = 0, known = sizeof(subcommands) / sizeof(subcommands[0]);
    while (chosen < known && !argument_is(request, 1, subcommands[chosen].name))
        chosen++;
    if (chosen == known) {
        reply_unknown_subcommand(session, request, "XGROUP");
        return;
    }
    int arity = subcommands[chosen].arity;
    if (arity > 0 ? argc != (size_t)arity : argc < (size_t)-arity) {
        reply_subcommand_arity(session, request, "xgroup");
        return;
    }
    if (subcommands[chosen].edit == NULL) {
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
        return;
    }
    char name[32];
    argument_text(request, 1, name, sizeof(name));
    struct group_arguments arguments = {.entries_read = ENTRIES_READ_UNKNOWN};
    bool create = subcommands[chosen].edit == edit_group_create;
    bool setid = subcommands[chosen].edit == edit_group_setid;
    for (size_t i = 5; create && i < argc;) {
        if (argument_is(request, i, "MKSTREAM")) {
            arguments.create_stream = true;
            i++;
        } else if (argument_is(request, i, "ENTRIESREAD") && i + 1 < argc) {
            if (!argument_entries_read(session, request, i + 1, &arguments.entries_read)) return;
            i += 2;
        } else {
            create = false;
            argc = 0; /* a syntax error */
        }
    }
    if ((create && argc > 8) || (setid && argc != 5 && argc != 7) || argc == 0) {
        reply_errorf(
            session,
            "ERR unknown subcommand or wrong number of arguments for '%s'. Try XGROUP HELP.", name);
        return;
    }
    if (setid && argc == 7) {
        if (!argument_is(request, 5, "ENTRIESREAD")) {
            reply_errorf(session,
                         "ERR unknown subcommand or wrong number of arguments for '%s'. Try XGROUP "
                         "HELP.",
                         name);
            return;
        }
        if (!argument_entries_read(session, request, 6, &arguments.entries_read)) return;
    }
    update_stream(session, request, 2, subcommands[chosen].edit, subcommands[chosen].reply,
                  &arguments);
}

/* XACK key group id [id ...]. */
static bool edit_ack(struct resp_session *session, const struct resp_request *request,
                     struct stream_change *change) {
    struct stream_id id;
    for (size_t i = 3; i < request->argc; i++)
        if (!argument_id(session, request, i, &id)) return false;
    struct stream_group *group =
        change->exists ? group_find(&change->stream, request->argv[2], request->lengths[2]) : NULL;
    if (group == NULL) return true;
    for (size_t i = 3; i < request->argc; i++) {
        argument_id(session, request, i, &id);
        struct stream_pending *entry = pending_find(group, id);
        if (entry == NULL) continue;
        entry->removed = true;
        change->integer++;
    }
    change->changed = change->integer > 0;
    return true;
}

void command_xack(struct resp_session *session, const struct resp_request *request) {
    update_stream(session, request, 1, edit_ack, reply_change_integer, NULL);
}

/* Replies the entries CHANGE->list names: each entry, or its id and nil when deleted;
 * with JUST_IDS only the ids. */
static void reply_answered(struct resp_session *session, const struct stream_change *change,
                           bool just_ids) {
    reply_array(session, change->list_count);
    for (size_t i = 0; i < change->list_count; i++) {
        const struct answered *answered = &change->list[i];
        if (just_ids) {
            reply_id(session, answered->id);
        } else if (answered->entry >= 0) {
            reply_entry(session, &change->stream.entries[answered->entry]);
        } else {
            reply_array(session, 2);
            reply_id(session, answered->id);
            reply_null_array(session);
        }
    }
}

/* XCLAIM's and XAUTOCLAIM's arguments. */
struct claim_arguments {
    int64_t min_idle;
    int64_t delivered_ms; /* -1: now */
    int64_t retry_count;  /* -1: add one (unless JUST_IDS) */
    bool force, just_ids;
    size_t last_id_index; /* XCLAIM: the ids are arguments 5 to this */
    struct stream_id last_id;
    struct stream_id start; /* XAUTOCLAIM */
    int64_t count;
};

/* Hands the pending ENTRY to CONSUMER as XCLAIM does. */
static void claim_entry(struct stream_pending *entry, uint32_t consumer,
                        const struct claim_arguments *arguments, int64_t delivered_ms) {
    entry->consumer = consumer;
    entry->delivered_ms = delivered_ms;
    if (arguments->retry_count >= 0) {
        entry->deliveries = (uint64_t)arguments->retry_count;
    } else if (!arguments->just_ids) {
        entry->deliveries++;
    }
}

static bool edit_claim(struct resp_session *session, const struct resp_request *request,
                       struct stream_change *change) {
    struct claim_arguments arguments = {.delivered_ms = -1, .retry_count = -1};
    struct stream *stream = &change->stream;
    struct stream_group *group =
        change->exists ? group_find(stream, request->argv[2], request->lengths[2]) : NULL;
    if (group == NULL) {
        reply_no_group(session, request->argv[1], request->lengths[1], request->argv[2],
                       request->lengths[2], "");
        return false;
    }
    int64_t min_idle;
    if (!parse_int64(request->argv[4], (size_t)request->lengths[4], &min_idle)) {
        reply_error(session, "ERR Invalid min-idle-time argument for XCLAIM");
        return false;
    }
    if (min_idle < 0) min_idle = 0;
    size_t j = 5;
    struct stream_id id;
    while (j < request->argc &&
           parse_id(request->argv[j], request->lengths[j], 0, ID_STRICT, &id, NULL))
        j++;
    size_t last_id_index = j;
    int64_t now = clock_realtime_ms();
    struct stream_id last_id = {0, 0};
    for (; j < request->argc; j++) {
        bool more = j + 1 < request->argc;
        int64_t value;
        if (argument_is(request, j, "FORCE")) {
            arguments.force = true;
        } else if (argument_is(request, j, "JUSTID")) {
            arguments.just_ids = true;
        } else if (argument_is(request, j, "IDLE") && more) {
            j++;
            if (!parse_int64(request->argv[j], (size_t)request->lengths[j], &value)) {
                reply_error(session, "ERR Invalid IDLE option argument for XCLAIM");
                return false;
            }
            arguments.delivered_ms = now - value;
        } else if (argument_is(request, j, "TIME") && more) {
            j++;
            if (!parse_int64(request->argv[j], (size_t)request->lengths[j], &value)) {
                reply_error(session, "ERR Invalid TIME option argument for XCLAIM");
                return false;
            }
            arguments.delivered_ms = value;
        } else if (argument_is(request, j, "RETRYCOUNT") && more) {
            j++;
            if (!parse_int64(request->argv[j], (size_t)request->lengths[j], &value)) {
                reply_error(session, "ERR Invalid RETRYCOUNT option argument for XCLAIM");
                return false;
            }
            arguments.retry_count = value;
        } else if (argument_is(request, j, "LASTID") && more) {
            if (!argument_id(session, request, ++j, &last_id)) return false;
        } else {
            char option[64];
            argument_text(request, j, option, sizeof(option));
            reply_errorf(session, "ERR Unrecognized XCLAIM option '%s'", option);
            return false;
        }
    }
    if (id_compare(last_id, group->last_delivered) > 0) {
        group->last_delivered = last_id;
        change->changed = true;
    }
    if (arguments.delivered_ms < 0 || arguments.delivered_ms > now) arguments.delivered_ms = now;
    int64_t consumer = -1;
    for (size_t i = 5; i < last_id_index; i++) {
        parse_id(request->argv[i], request->lengths[i], 0, ID_STRICT, &id, NULL);
        struct stream_pending *entry = pending_find(group, id);
        struct stream_entry *found = entry_find(stream, id);
        if (found == NULL) {
            if (entry != NULL) {
                entry->removed = true; /* its entry is gone */
                change->changed = true;
            }
            continue;
        }
        bool forced = false;
        if (entry == NULL && arguments.force) {
            entry = pending_add(group, id, UINT32_MAX, now);
            forced = true;
            if (entry == NULL) {
                reply_error(session, OOM_ERROR);
                return false;
            }
        }
        if (entry == NULL) continue;
        if (!forced && min_idle != 0 && now - entry->delivered_ms < min_idle) continue;
        if (consumer < 0) {
            consumer = consumer_get(group, request->argv[3], request->lengths[3], now, NULL);
            if (consumer < 0) {
                reply_error(session, OOM_ERROR);
                return false;
            }
        }
        claim_entry(entry, (uint32_t)consumer, &arguments, arguments.delivered_ms);
        if (!answer(change, found - stream->entries, id)) {
            reply_error(session, OOM_ERROR);
            return false;
        }
        change->changed = true;
    }
    change->integer = arguments.just_ids;
    return true;
}

static void reply_claimed(struct resp_session *session, struct stream_change *change) {
    reply_answered(session, change, change->integer != 0);
}

/* XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME ms] [RETRYCOUNT n]
 * [FORCE] [JUSTID] [LASTID id]. */
void command_xclaim(struct resp_session *session, const struct resp_request *request) {
    update_stream(session, request, 1, edit_claim, reply_claimed, NULL);
}

static bool edit_autoclaim(struct resp_session *session, const struct resp_request *request,
                           struct stream_change *change) {
    const struct claim_arguments *arguments = change->arguments;
    struct stream *stream = &change->stream;
    struct stream_group *group =
        change->exists ? group_find(stream, request->argv[2], request->lengths[2]) : NULL;
    if (group == NULL) {
        reply_no_group(session, request->argv[1], request->lengths[1], request->argv[2],
                       request->lengths[2], "");
        return false;
    }
    int64_t now = clock_realtime_ms(), count = arguments->count;
    int64_t attempts = count * 10, consumer = -1;
    size_t at = pending_lower_bound(group, arguments->start);
    for (; attempts > 0 && count > 0; at++) {
        while (at < group->pending_count && group->pending[at].removed)
            at++;
        if (at >= group->pending_count) break;
        attempts--;
        struct stream_pending *entry = &group->pending[at];
        struct stream_entry *found = entry_find(stream, entry->id);
        if (found == NULL) {
            entry->removed = true;
            if (!array_grow((void **)&change->deleted, &change->deleted_capacity,
                            change->deleted_count + 1, sizeof(*change->deleted))) {
                reply_error(session, OOM_ERROR);
                return false;
            }
            change->deleted[change->deleted_count++] = entry->id;
            change->changed = true;
            count--;
            continue;
        }
        if (arguments->min_idle != 0 && now - entry->delivered_ms < arguments->min_idle) continue;
        if (consumer < 0) {
            consumer = consumer_get(group, request->argv[3], request->lengths[3], now, NULL);
            if (consumer < 0) {
                reply_error(session, OOM_ERROR);
                return false;
            }
        }
        claim_entry(entry, (uint32_t)consumer, arguments, now);
        if (!answer(change, found - stream->entries, entry->id)) {
            reply_error(session, OOM_ERROR);
            return false;
        }
        change->changed = true;
        count--;
    }
    /* The cursor: the next pending entry not looked at, or 0-0. */
    while (at < group->pending_count && group->pending[at].removed)
        at++;
    change->id = at < group->pending_count ? group->pending[at].id : (struct stream_id){0, 0};
    change->integer = arguments->just_ids;
    return true;
}

static void reply_autoclaimed(struct resp_session *session, struct stream_change *change) {
    reply_array(session, 3);
    reply_id(session, change->id);
    reply_answered(session, change, change->integer != 0);
    reply_array(session, change->deleted_count);
    for (size_t i = 0; i < change->deleted_count; i++)
        reply_id(session, change->deleted[i]);
}

/* XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]. */
void command_xautoclaim(struct resp_session *session, const struct resp_request *request) {
    struct claim_arguments arguments = {.retry_count = -1, .count = AUTOCLAIM_COUNT};
    if (!parse_int64(request->argv[4], (size_t)request->lengths[4], &arguments.min_idle)) {
        reply_error(session, "ERR Invalid min-idle-time argument for XAUTOCLAIM");
        return;
    }
    if (arguments.min_idle < 0) arguments.min_idle = 0;
    if (!argument_bound(session, request, 5, true, &arguments.start)) return;
    for (size_t j = 6; j < request->argc; j++) {
        if (argument_is(request, j, "COUNT") && j + 1 < request->argc) {
            int64_t count;
            if (!parse_int64(request->argv[j + 1], (size_t)request->lengths[j + 1], &count) ||
                count < 1 || count > INT64_MAX / 16) {
                reply_error(session, "ERR COUNT must be > 0");
                return;
            }
            arguments.count = count;
            j++;
        } else if (argument_is(request, j, "JUSTID")) {
            arguments.just_ids = true;
        } else {
            reply_syntax_error(session);
            return;
        }
    }
    update_stream(session, request, 1, edit_autoclaim, reply_autoclaimed, &arguments);
}

/* ---- XREADGROUP ---------------------------------------------------------------------------- */

/* One key of an XREADGROUP: what its change answered, copied (the stream's views end
 * with the change). */
struct group_read {
    const struct read_options *options;
    size_t key;          /* its position among the keys */
    struct stream_id id; /* the id argument; ID_MAX for > */
    bool served;
    size_t answered;
    struct byte_buffer entries; /* per entry: u64 ms, u64 seq, u8 present, u32 count,
                                   u32 length, the strings */
};

static bool edit_read_group(struct resp_session *session, const struct resp_request *request,
                            struct stream_change *change) {
    struct group_read *read = change->arguments;
    const struct read_options *options = read->options;
    struct stream *stream = &change->stream;
    size_t key = options->streams + read->key;
    struct stream_group *group =
        change->exists ? group_find(stream, options->group, options->group_length) : NULL;
    if (group == NULL) {
        reply_no_group(session, request->argv[key], request->lengths[key], options->group,
                       options->group_length, " in XREADGROUP with GROUP option");
        return false;
    }
    int64_t now = clock_realtime_ms();
    bool history = id_compare(read->id, ID_MAX) != 0;
    if (!history) {
        const struct stream_entry *last = last_live(stream);
        if (last == NULL || id_compare(last->id, group->last_delivered) <= 0) return true;
    }
    int64_t consumer = consumer_get(group, options->consumer, options->consumer_length, now, NULL);
    if (consumer < 0) {
        reply_error(session, OOM_ERROR);
        return false;
    }
    change->changed = true; /* its seen time, at least */
    uint64_t left = options->count > 0 ? (uint64_t)options->count : UINT64_MAX;
    if (history) {
        struct stream_id start = read->id;
        id_increment(&start);
        for (size_t i = pending_lower_bound(group, start); left > 0 && i < group->pending_count;
             i++) {
            struct stream_pending *entry = &group->pending[i];
            if (entry->removed || entry->consumer != (uint32_t)consumer) continue;
            struct stream_entry *found = entry_find(stream, entry->id);
            if (found != NULL) { /* delivered again, as Redis counts it */
                entry->delivered_ms = now;
                entry->deliveries++;
            }
            if (!answer(change, found ? found - stream->entries : -1, entry->id)) {
                reply_error(session, OOM_ERROR);
                return false;
            }
            left--;
        }
        return true;
    }
    struct stream_id start = group->last_delivered;
    id_increment(&start);
    for (size_t i = entry_lower_bound(stream, start); left > 0 && i < stream->count; i++) {
        struct stream_entry *entry = &stream->entries[i];
        if (entry->removed) continue;
        group_delivered(stream, group, entry->id);
        if (!options->noack && pending_add(group, entry->id, (uint32_t)consumer, now) == NULL) {
            reply_error(session, OOM_ERROR);
            return false;
        }
        if (!answer(change, (int64_t)i, entry->id)) {
            reply_error(session, OOM_ERROR);
            return false;
        }
        left--;
    }
    return true;
}

/* Copies what the change answers into READ's buffer, for the reply after every key. */
static void keep_group_read(struct resp_session *session, struct stream_change *change) {
    (void)session;
    struct group_read *read = change->arguments;
    bool history = id_compare(read->id, ID_MAX) != 0;
    read->served = history || change->list_count > 0;
    read->answered = change->list_count;
    for (size_t i = 0; i < change->list_count; i++) {
        const struct answered *answered = &change->list[i];
        write_id(&read->entries, answered->id);
        unsigned char present = answered->entry >= 0;
        byte_buffer_append(&read->entries, &present, 1);
        if (!present) continue;
        const struct stream_entry *entry = &change->stream.entries[answered->entry];
        write_u32(&read->entries, entry->count);
        write_u32(&read->entries, entry->length);
        byte_buffer_append(&read->entries, entry->strings, entry->length);
    }
}

static void reply_group_read(struct resp_session *session, const struct resp_request *request,
                             const struct group_read *read) {
    size_t key = read->options->streams + read->key;
    if (session->protocol != 3) reply_array(session, 2);
    reply_bulk(session, request->argv[key], (size_t)request->lengths[key]);
    reply_array(session, read->answered);
    const unsigned char *data = read->entries.data; /* NULL when nothing was kept */
    struct reader reader = {data, data != NULL ? data + read->entries.length : NULL, false};
    for (size_t i = 0; i < read->answered; i++) {
        struct stream_id id = read_id(&reader);
        const unsigned char *present = read_bytes(&reader, 1);
        reply_array(session, 2);
        reply_id(session, id);
        if (present == NULL || !*present) {
            reply_null_array(session);
            continue;
        }
        uint32_t count = read_u32(&reader), length = read_u32(&reader);
        const unsigned char *strings = read_bytes(&reader, length);
        reply_strings(session, strings, count);
    }
}

/* resp_value_update() on a key this command has brought to DRAM already (or, evicted
 * again since, reads from flash in place): with the session marked as rerunning,
 * resp_value_in_dram() starts no read, which would run the command again after some of
 * its keys were changed already. */
static bool update_in_place(struct resp_session *session, const struct resp_request *request,
                            size_t key_index, stream_edit_fn edit, stream_reply_fn reply,
                            void *arguments) {
    bool rerunning = session->rerunning;
    session->rerunning = true;
    bool stored = update_stream(session, request, key_index, edit, reply, arguments);
    session->rerunning = rerunning;
    return stored;
}

/* XREADGROUP GROUP group consumer [COUNT count] [BLOCK ms] [NOACK] STREAMS key [key ...]
 * id [id ...]: > reads new entries (adding them to the group's pending list unless
 * NOACK), another id the consumer's pending entries after it. With BLOCK, a > read that
 * finds nothing new waits for a write to one of its keys or for BLOCK's time (a null
 * array; 0 waits for ever). */
void command_xreadgroup(struct resp_session *session, const struct resp_request *request) {
    struct read_options options;
    if (!parse_read_options(session, request, true, &options)) return;
    size_t keys = options.keys;
    for (size_t i = 0; i < keys; i++)
        if (!resp_value_in_dram(session, request, options.streams + i)) return;
    struct group_read *reads = calloc(keys, sizeof(*reads));
    if (reads == NULL) {
        reply_error(session, "OOM out of memory: could not read the streams");
        return;
    }
    /* Every key and group must exist and every id parse before anything changes. */
    bool ok = true;
    for (size_t i = 0; i < keys && ok; i++) {
        size_t key = options.streams + i, id_index = key + keys;
        reads[i] = (struct group_read){.options = &options, .key = i};
        struct item *item;
        struct stream stream;
        enum store_type type;
        if (resp_block_waited(session) &&
            (store_key_type(store_of(session), request->argv[key], (size_t)request->lengths[key],
                            &type) != STORE_OK ||
             type != STORE_TYPE_STREAM)) {
            /* As Redis 7.0: a blocked group read whose stream went (deleted, flushed, set
             * to another type) ends with this error; the group went with it. */
            reply_error(session, "UNBLOCKED the stream key no longer exists");
            ok = false;
            break;
        }
        if (!read_stream(session, request, key, &item, &stream)) {
            ok = false;
            break;
        }
        bool found = item != NULL && group_find(&stream, options.group, options.group_length);
        done_reading(item, &stream);
        if (!found && resp_block_waited(session)) {
            reply_error(session,
                        "NOGROUP the consumer group this client was blocked on no longer exists");
            ok = false;
        } else if (!found) {
            reply_no_group(session, request->argv[key], request->lengths[key], options.group,
                           options.group_length, " in XREADGROUP with GROUP option");
            ok = false;
        } else if (argument_equals(request, id_index, "$")) {
            reply_error(session, "ERR The $ ID is meaningless in the context of XREADGROUP: you "
                                 "want to read the history of this consumer by specifying a "
                                 "proper ID, or use the > ID to get new messages. The $ ID would "
                                 "just return an empty result set.");
            ok = false;
        } else if (argument_equals(request, id_index, ">")) {
            reads[i].id = ID_MAX;
        } else {
            ok = argument_id(session, request, id_index, &reads[i].id);
        }
    }
    size_t served = 0;
    for (size_t i = 0; i < keys && ok; i++) {
        ok = update_in_place(session, request, options.streams + i, edit_read_group,
                             keep_group_read, &reads[i]);
        served += reads[i].served;
    }
    if (ok && served == 0 && options.block_ms >= 0) {
        /* Only > reads get here (a history read always answers): they run again when a
         * key is written, each woken (they may read different groups). */
        resp_block(session, request, options.streams, keys, options.block_ms, RESP_BLOCK_NULL_ARRAY,
                   false);
    } else if (ok && served == 0) {
        reply_null_array(session);
    } else if (ok) {
        if (session->protocol == 3) {
            reply_map(session, served);
        } else {
            reply_array(session, served);
        }
        for (size_t i = 0; i < keys; i++)
            if (reads[i].served) reply_group_read(session, request, &reads[i]);
    }
    for (size_t i = 0; i < keys; i++)
        byte_buffer_free(&reads[i].entries);
    free(reads);
}
