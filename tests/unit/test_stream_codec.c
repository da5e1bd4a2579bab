/* Unit tests of the stream encoding (src/proto/resp/resp_streams.c, whose codec is
 * static: this file includes it, and the Makefile links this test with the library
 * but for resp_streams.o): version 1, as older builds wrote it, still decodes and is
 * written back as version 2; version 2's header agrees with its parts; the in-place
 * XADD (edit_add_in_place()) leaves the encoding a whole decode and encode would write,
 * declines a version-1 value, a damaged one and one without room, changing nothing. */
#include "proto/resp/resp_streams.c"

#include "test.h"

/* A version-1 encoding, as the builds before version 2 wrote it: last id 9-2, greatest
 * deleted id 3-0, 5 added, entries 1-1 {a: 1}, 2-0 {b: 22, c: ""} and 9-2 {d: 4444};
 * group "g" (last delivered 2-0, 2 read) with consumers "alice" and "bob", 2-0 pending
 * for bob; producer "p" at sequence 7, which got 9-2. */
static void encode_v1(struct byte_buffer *out) {
    unsigned char version = STREAM_VERSION_1;
    byte_buffer_append(out, &version, 1);
    write_id(out, (struct stream_id){9, 2});
    write_id(out, (struct stream_id){3, 0});
    write_u64(out, 5);
    write_u32(out, 3);
    static const struct {
        uint64_t ms, seq;
        uint32_t count;
        const char *strings[4];
    } entries[] = {
        {1, 1, 2, {"a", "1"}}, {2, 0, 4, {"b", "22", "c", ""}}, {9, 2, 2, {"d", "4444"}}};
    for (size_t i = 0; i < 3; i++) {
        write_id(out, (struct stream_id){entries[i].ms, entries[i].seq});
        write_u32(out, entries[i].count);
        uint32_t length = 0;
        for (uint32_t j = 0; j < entries[i].count; j++)
            length += 4 + (uint32_t)strlen(entries[i].strings[j]);
        write_u32(out, length);
        for (uint32_t j = 0; j < entries[i].count; j++)
            write_name(out, (const unsigned char *)entries[i].strings[j],
                       (uint32_t)strlen(entries[i].strings[j]));
    }
    write_u32(out, 1);
    write_name(out, (const unsigned char *)"g", 1);
    write_id(out, (struct stream_id){2, 0});
    write_u64(out, 2);
    write_u32(out, 2);
    write_name(out, (const unsigned char *)"alice", 5);
    write_u64(out, 1000);
    write_name(out, (const unsigned char *)"bob", 3);
    write_u64(out, 2000);
    write_u32(out, 1);
    write_id(out, (struct stream_id){2, 0});
    write_u32(out, 1);
    write_u64(out, 1500);
    write_u64(out, 3);
    write_u32(out, 1);
    write_name(out, (const unsigned char *)"p", 1);
    write_u64(out, 7);
    write_id(out, (struct stream_id){9, 2});
}

static bool entry_is(const struct stream_entry *entry, uint64_t ms, uint64_t seq, uint32_t count,
                     const char *first_string) {
    uint32_t length = strata_load32(entry->strings);
    return entry->id.ms == ms && entry->id.seq == seq && entry->count == count &&
           length == strlen(first_string) && memcmp(entry->strings + 4, first_string, length) == 0;
}

/* The stream encode_v1() wrote, decoded from either version. */
static void check_example(const struct stream *stream, uint64_t added) {
    CHECK(stream->last_id.ms == 9 && stream->last_id.seq == 2);
    CHECK(stream->max_deleted.ms == 3 && stream->max_deleted.seq == 0);
    CHECK(stream->entries_added == added && stream->count == 3 && stream->live == 3);
    CHECK(entry_is(&stream->entries[0], 1, 1, 2, "a"));
    CHECK(entry_is(&stream->entries[1], 2, 0, 4, "b"));
    CHECK(entry_is(&stream->entries[2], 9, 2, 2, "d"));
    CHECK(stream->group_count == 1 && stream->groups[0].consumer_count == 2);
    CHECK(stream->groups[0].pending_count == 1 && stream->groups[0].pending[0].consumer == 1);
    CHECK(stream->groups[0].pending[0].deliveries == 3 && stream->groups[0].entries_read == 2);
    CHECK(stream->producer_count == 1 && stream->producers[0].sequence == 7);
}

/* Whether the LENGTH bytes at VALUE decode, and encode again to the same bytes. */
static bool canonical(const unsigned char *value, uint64_t length) {
    struct stream stream = {0};
    struct byte_buffer again = {0};
    bool same = stream_decode(value, length, &stream) == DECODED &&
                stream_encode(&stream, &again) && again.length == length &&
                memcmp(again.data, value, (size_t)length) == 0;
    stream_free(&stream);
    byte_buffer_free(&again);
    return same;
}

static void test_version_1_reads_and_becomes_version_2(void) {
    struct byte_buffer v1 = {0}, v2 = {0};
    encode_v1(&v1);
    REQUIRE(!v1.failed);
    struct stream stream = {0};
    REQUIRE(stream_decode(v1.data, v1.length, &stream) == DECODED);
    check_example(&stream, 5);
    REQUIRE(stream_encode(&stream, &v2));
    stream_free(&stream);
    /* Version 2: the same parts and 16 more bytes (the two lengths in the header). */
    CHECK(v2.data[0] == STREAM_VERSION_2 && v2.length == v1.length + 16);
    CHECK(strata_load32(v2.data + HEADER_COUNT) == 3);
    CHECK(strata_load64(v2.data + HEADER_ENTRIES_ADDED) == 5);
    CHECK(strata_load64(v2.data + HEADER_LAST_ID) == 9);
    uint64_t entries_length = strata_load64(v2.data + HEADER_ENTRIES_LENGTH);
    uint64_t groups_length = strata_load64(v2.data + HEADER_GROUPS_LENGTH);
    CHECK(entries_length ==
          3 * ENTRY_HEADER_SIZE + (4 + 1 + 4 + 1) + (4 + 1 + 4 + 2 + 4 + 1 + 4) + (4 + 1 + 4 + 4));
    /* After the groups: the producers (u32 count 1, then "p"). */
    CHECK(strata_load32(v2.data + STREAM_HEADER_SIZE + entries_length + groups_length) == 1);
    CHECK(strata_load64(v2.data + STREAM_HEADER_SIZE) == 1); /* the first entry's ms */
    REQUIRE(stream_decode(v2.data, v2.length, &stream) == DECODED);
    check_example(&stream, 5);
    stream_free(&stream);
    CHECK(canonical(v2.data, v2.length));
    /* A version-1 value is not appended to in place: nothing changes. */
    const unsigned char *argv[] = {(const unsigned char *)"XADD", (const unsigned char *)"k",
                                   (const unsigned char *)"*", (const unsigned char *)"f",
                                   (const unsigned char *)"v"};
    const uint64_t lengths[] = {4, 1, 1, 1, 1};
    struct resp_request request = {5, argv, lengths};
    struct add_arguments arguments = {.id_index = 2};
    struct add_edit edit = {&request, &arguments, 100, UINT64_MAX, ADD_DECLINED, {0, 0}, false};
    unsigned char copy[1024];
    REQUIRE(v1.length < sizeof(copy));
    memcpy(copy, v1.data, v1.length);
    uint64_t length = v1.length;
    CHECK(!edit_add_in_place(&edit, copy, &length, sizeof(copy)));
    CHECK(edit.outcome == ADD_DECLINED && length == v1.length);
    CHECK(memcmp(copy, v1.data, v1.length) == 0);
    byte_buffer_free(&v1);
    byte_buffer_free(&v2);
}

/* XADD key [IDMP producer sequence] [MAXLEN|MINID [~] threshold] id|* f v, in place on
 * VALUE. Returns what edit_add_in_place() returned; *ID gets the edit's id. */
static bool add(unsigned char *value, uint64_t *length, uint64_t capacity, const char *producer,
                uint64_t sequence, enum trim_strategy strategy, bool approximate,
                int64_t max_length, struct stream_id min_id, const struct stream_id *given,
                struct add_edit *edit) {
    static const unsigned char *argv[] = {(const unsigned char *)"XADD", (const unsigned char *)"k",
                                          (const unsigned char *)"*", (const unsigned char *)"f",
                                          (const unsigned char *)"value"};
    static const uint64_t lengths[] = {4, 1, 1, 1, 5};
    static struct resp_request request = {5, argv, lengths};
    static struct add_arguments arguments;
    arguments = (struct add_arguments){.id_index = 2};
    arguments.trim = (struct trim){.strategy = strategy,
                                   .approximate = approximate,
                                   .max_length = max_length,
                                   .min_id = min_id,
                                   .limit = approximate ? APPROXIMATE_LIMIT : 0,
                                   .node_entries = NODE_ENTRIES_DEFAULT};
    if (producer != NULL) {
        arguments.producer = (const unsigned char *)producer;
        arguments.producer_length = strlen(producer);
        arguments.sequence = sequence;
    }
    if (given != NULL) {
        arguments.id_given = arguments.seq_given = true;
        arguments.id = *given;
    }
    *edit = (struct add_edit){&request, &arguments, 1000, UINT64_MAX, ADD_DECLINED, {0, 0}, false};
    return edit_add_in_place(edit, value, length, capacity);
}

static void test_in_place_appends_stay_canonical(void) {
    struct byte_buffer v1 = {0}, v2 = {0};
    encode_v1(&v1);
    struct stream stream = {0};
    REQUIRE(stream_decode(v1.data, v1.length, &stream) == DECODED);
    REQUIRE(stream_encode(&stream, &v2));
    stream_free(&stream);
    uint64_t capacity = 64 * 1024;
    unsigned char *value = malloc(capacity);
    REQUIRE(value != NULL);
    memcpy(value, v2.data, v2.length);
    uint64_t length = v2.length;
    struct add_edit edit;
    /* `*` at 1000 ms after 9-2: 1000-0, 1000-1, ... */
    for (int i = 0; i < 300; i++) {
        REQUIRE(add(value, &length, capacity, NULL, 0, TRIM_NONE, false, 0,
                    (struct stream_id){0, 0}, NULL, &edit));
        CHECK(edit.outcome == ADD_APPENDED && edit.id.ms == 1000 && edit.id.seq == (uint64_t)i);
    }
    CHECK(strata_load32(value + HEADER_COUNT) == 303);
    CHECK(canonical(value, length));
    /* Approximate MAXLEN 150 of 304 entries: one node of 100 goes (204 stay, at least
     * 150); the next would leave 104: 204 entries. */
    REQUIRE(add(value, &length, capacity, NULL, 0, TRIM_MAXLEN, true, 150, (struct stream_id){0, 0},
                NULL, &edit));
    CHECK(strata_load32(value + HEADER_COUNT) == 204 && canonical(value, length));
    /* Exact MAXLEN 10. */
    REQUIRE(add(value, &length, capacity, NULL, 0, TRIM_MAXLEN, false, 10, (struct stream_id){0, 0},
                NULL, &edit));
    CHECK(strata_load32(value + HEADER_COUNT) == 10 && canonical(value, length));
    /* MINID 1000-299: the entries before it go. */
    REQUIRE(add(value, &length, capacity, NULL, 0, TRIM_MINID, false, 0,
                (struct stream_id){1000, 299}, NULL, &edit));
    CHECK(strata_load32(value + HEADER_COUNT) == 4 && canonical(value, length));
    CHECK(strata_load64(value + STREAM_HEADER_SIZE + 8) == 299);
    /* IDMP: "p" at 7 is a duplicate (its first id, 9-2); 6 declines (the error is the
     * fallback's to reply); 8 appends and moves "p" to the end; a new producer joins. */
    uint64_t before = length;
    CHECK(!add(value, &length, capacity, "p", 7, TRIM_NONE, false, 0, (struct stream_id){0, 0},
               NULL, &edit));
    CHECK(edit.outcome == ADD_DUPLICATE && edit.id.ms == 9 && edit.id.seq == 2 && length == before);
    CHECK(!add(value, &length, capacity, "p", 6, TRIM_NONE, false, 0, (struct stream_id){0, 0},
               NULL, &edit));
    CHECK(edit.outcome == ADD_DECLINED && length == before);
    REQUIRE(add(value, &length, capacity, "q", 1, TRIM_NONE, false, 0, (struct stream_id){0, 0},
                NULL, &edit));
    REQUIRE(add(value, &length, capacity, "p", 8, TRIM_MAXLEN, false, 3, (struct stream_id){0, 0},
                NULL, &edit));
    struct stream_id p_id = edit.id;
    CHECK(canonical(value, length));
    REQUIRE(stream_decode(value, length, &stream) == DECODED);
    CHECK(stream.count == 3 && stream.producer_count == 2);
    CHECK(names_equal(stream.producers[1].name, stream.producers[1].name_length,
                      (const unsigned char *)"p", 1));
    CHECK(stream.producers[1].sequence == 8 && id_compare(stream.producers[1].id, p_id) == 0);
    CHECK(stream.group_count == 1 && stream.groups[0].pending_count == 1);
    CHECK(stream.entries_added == 5 + 300 + 3 + 2);
    stream_free(&stream);
    /* An explicit id not above the last declines (the fallback replies the error). */
    before = length;
    CHECK(!add(value, &length, capacity, NULL, 0, TRIM_NONE, false, 0, (struct stream_id){0, 0},
               &p_id, &edit));
    CHECK(length == before);
    /* MAXLEN 0: the new entry goes too; the stream stays, empty. */
    REQUIRE(add(value, &length, capacity, NULL, 0, TRIM_MAXLEN, false, 0, (struct stream_id){0, 0},
                NULL, &edit));
    CHECK(strata_load32(value + HEADER_COUNT) == 0 && canonical(value, length));
    CHECK(strata_load64(value + HEADER_ENTRIES_LENGTH) == 0);
    /* No room: declines, changing nothing. */
    before = length;
    CHECK(!add(value, &length, length + 10, NULL, 0, TRIM_NONE, false, 0, (struct stream_id){0, 0},
               NULL, &edit));
    CHECK(length == before && canonical(value, length) && edit.outcome == ADD_NO_ROOM);
    /* A damaged header (entries longer than the value) declines, and does not decode. */
    strata_store64(value + HEADER_ENTRIES_LENGTH, length);
    CHECK(!add(value, &length, capacity, NULL, 0, TRIM_NONE, false, 0, (struct stream_id){0, 0},
               NULL, &edit));
    CHECK(stream_decode(value, length, &stream) == DECODE_CORRUPT);
    stream_free(&stream);
    free(value);
    byte_buffer_free(&v1);
    byte_buffer_free(&v2);
}

int main(void) {
    RUN_TEST(test_version_1_reads_and_becomes_version_2);
    RUN_TEST(test_in_place_appends_stay_canonical);
    return test_main_result();
}
