/* Unit tests of the list encoding (src/proto/resp/resp_list_codec.c): version 1, as
 * older builds wrote it, still decodes and walks; version 2 is what is written, walked
 * from either end; the in-place pushes and pops agree with a decode-and-encode. */
#include "proto/resp/resp_list_codec.h"
#include "strata_protocol.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* A version-1 encoding of ELEMENTS (NUL-terminated texts), as the builds before version
 * 2 wrote it: u8 1, u32 count, then u32 length and bytes per element. */
static size_t encode_v1(const char *const *elements, size_t count, unsigned char *out) {
    out[0] = LIST_VERSION_1;
    strata_store32(out + 1, (uint32_t)count);
    size_t at = LIST_V1_HEADER_SIZE;
    for (size_t i = 0; i < count; i++) {
        uint32_t length = (uint32_t)strlen(elements[i]);
        strata_store32(out + at, length);
        memcpy(out + at + 4, elements[i], length);
        at += 4 + length;
    }
    return at;
}

static bool element_equals(const struct list_element *element, const char *text) {
    return element->length == strlen(text) && memcmp(element->data, text, element->length) == 0;
}

/* Whether the encoded list at DATA holds exactly ELEMENTS, checked by a whole decode, by
 * list_seek() + list_next() at every index and by the header's count. */
static bool list_holds(const unsigned char *data, uint64_t length, const char *const *elements,
                       size_t count) {
    struct list_elements list = {0};
    bool same = list_decode(data, length, &list) == LIST_DECODED && list.count == count;
    for (size_t i = 0; same && i < count; i++)
        same = element_equals(&list.elements[i], elements[i]);
    list_elements_free(&list);
    uint32_t header_count = 0;
    same = same && list_count(data, length, &header_count) && header_count == count;
    for (size_t i = 0; same && i < count; i++) {
        uint64_t offset;
        struct list_element element;
        same = list_seek(data, length, (uint32_t)i, &offset) &&
               list_next(data, length, &offset, &element) && element_equals(&element, elements[i]);
    }
    return same;
}

static void test_version_1_still_reads(void) {
    const char *const elements[] = {"alpha", "", "gamma", "delta", "\x01\x02"};
    unsigned char v1[128];
    size_t length = encode_v1(elements, 5, v1);
    CHECK(list_holds(v1, length, elements, 5));
    /* Version 1 is never changed in place: the command re-encodes it in version 2. */
    unsigned char buffer[256];
    memcpy(buffer, v1, length);
    uint64_t edited = length;
    const unsigned char *pushed[] = {(const unsigned char *)"x"};
    uint64_t pushed_lengths[] = {1};
    CHECK(!list_push_in_place(buffer, &edited, sizeof(buffer), false, pushed, pushed_lengths, 1));
    struct byte_buffer popped = {0};
    CHECK(!list_pop_in_place(buffer, &edited, true, 1, &popped));
    CHECK(edited == length && memcmp(buffer, v1, length) == 0);
    byte_buffer_free(&popped);
    /* Decoded and encoded again, it is version 2 with the same elements. */
    struct list_elements list = {0};
    REQUIRE(list_decode(v1, length, &list) == LIST_DECODED);
    struct byte_buffer v2 = {0};
    list_encode(&list, &v2);
    list_elements_free(&list);
    REQUIRE(!v2.failed);
    CHECK(v2.data[0] == LIST_VERSION_2);
    CHECK(v2.length == LIST_HEADER_SIZE + 5 * LIST_V2_OVERHEAD + 5 + 0 + 5 + 5 + 2);
    CHECK(list_holds(v2.data, v2.length, elements, 5));
    byte_buffer_free(&v2);
    /* Damage: a count past the bytes, a short element, an unknown version. */
    unsigned char damaged[128];
    memcpy(damaged, v1, length);
    strata_store32(damaged + 1, 6);
    struct list_elements none = {0};
    CHECK(list_decode(damaged, length, &none) == LIST_CORRUPT);
    list_elements_free(&none);
    CHECK(list_decode(v1, length - 1, &none) == LIST_CORRUPT);
    list_elements_free(&none);
    damaged[0] = 3;
    uint32_t count;
    CHECK(!list_count(damaged, length, &count));
}

static void test_version_2_in_place(void) {
    /* Pushes and pops in place against a model list of texts. */
    enum { MODEL = 64 };
    char texts[MODEL][32];
    const char *model[MODEL];
    size_t first = MODEL / 2, count = 0; /* model[first .. first + count) */
    size_t capacity = 4096;
    unsigned char *value = malloc(capacity);
    REQUIRE(value != NULL);
    struct list_elements empty = {0};
    struct byte_buffer encoded = {0};
    list_encode(&empty, &encoded);
    REQUIRE(!encoded.failed && encoded.length == LIST_HEADER_SIZE);
    memcpy(value, encoded.data, encoded.length);
    uint64_t length = encoded.length;
    byte_buffer_free(&encoded);
    for (int i = 0; i < MODEL; i++)
        snprintf(texts[i], sizeof(texts[i]), "e%d%.*s", i, i % 7, "xxxxxxx");

    /* RPUSH a b, LPUSH c d (d ends up first), RPUSH e ... */
    int next = 0;
    for (int round = 0; round < 10; round++) {
        bool left = round % 2 == 1;
        const unsigned char *pushed[2] = {(const unsigned char *)texts[next],
                                          (const unsigned char *)texts[next + 1]};
        uint64_t lengths[2] = {strlen(texts[next]), strlen(texts[next + 1])};
        REQUIRE(list_push_in_place(value, &length, capacity, left, pushed, lengths, 2));
        if (left) {
            model[--first] = texts[next];
            model[--first] = texts[next + 1];
        } else {
            model[first + count] = texts[next];
            model[first + count + 1] = texts[next + 1];
        }
        count += 2;
        next += 2;
        CHECK(list_holds(value, length, model + first, count));
    }
    /* No room: declined, unchanged. */
    uint64_t before = length;
    const unsigned char *big[] = {(const unsigned char *)"big"};
    uint64_t big_length[] = {capacity};
    CHECK(!list_push_in_place(value, &length, capacity, false, big, big_length, 1));
    CHECK(length == before && list_holds(value, length, model + first, count));

    /* Pops from both ends hand the elements back in pop order. */
    struct byte_buffer popped = {0};
    REQUIRE(list_pop_in_place(value, &length, true, 3, &popped));
    REQUIRE(popped.length >= 4);
    const unsigned char *at = popped.data;
    for (int i = 0; i < 3; i++) {
        uint32_t size = strata_load32(at);
        CHECK(size == strlen(model[first + i]) && memcmp(at + 4, model[first + i], size) == 0);
        at += 4 + size;
    }
    CHECK(at == popped.data + popped.length);
    first += 3;
    count -= 3;
    CHECK(list_holds(value, length, model + first, count));
    byte_buffer_clear(&popped);
    REQUIRE(list_pop_in_place(value, &length, false, 2, &popped));
    at = popped.data;
    for (int i = 0; i < 2; i++) {
        const char *expected = model[first + count - 1 - i];
        uint32_t size = strata_load32(at);
        CHECK(size == strlen(expected) && memcmp(at + 4, expected, size) == 0);
        at += 4 + size;
    }
    count -= 2;
    CHECK(list_holds(value, length, model + first, count));
    /* A pop that would empty the list is declined: the key must go instead. */
    byte_buffer_clear(&popped);
    before = length;
    CHECK(!list_pop_in_place(value, &length, true, (uint32_t)count, &popped));
    CHECK(!list_pop_in_place(value, &length, false, (uint32_t)count + 5, &popped));
    CHECK(length == before && list_holds(value, length, model + first, count));
    /* A damaged trailing length is found by the walk from the end. */
    value[length - 1] ^= 0x40;
    uint64_t offset;
    CHECK(!list_seek(value, length, (uint32_t)count - 1, &offset));
    CHECK(!list_pop_in_place(value, &length, false, 1, &popped));
    byte_buffer_free(&popped);
    free(value);
}

static uint32_t front_room(const unsigned char *value) {
    return strata_load32(value + 5);
}

/* The front room: pushes at the head write into it and pops give it bytes back, without
 * moving the body; the body moves up only when it is short, and down when a drained
 * list's room dwarfs it. */
static void test_front_room(void) {
    enum { ELEMENTS = 2000 };
    char texts[ELEMENTS][16];
    const char *model[2 * ELEMENTS];
    size_t first = ELEMENTS, count = 0;
    uint64_t capacity = 256 * 1024;
    unsigned char *value = malloc(capacity);
    REQUIRE(value != NULL);
    struct list_elements empty = {0};
    struct byte_buffer encoded = {0};
    list_encode(&empty, &encoded);
    REQUIRE(!encoded.failed);
    memcpy(value, encoded.data, encoded.length);
    uint64_t length = encoded.length;
    byte_buffer_free(&encoded);
    CHECK(front_room(value) == 0);
    int moves = 0;
    for (int i = 0; i < ELEMENTS; i++) {
        snprintf(texts[i], sizeof(texts[i]), "%d", i);
        const unsigned char *pushed[] = {(const unsigned char *)texts[i]};
        uint64_t lengths[] = {strlen(texts[i])};
        uint64_t before = length;
        uint32_t room_before = front_room(value);
        REQUIRE(list_push_in_place(value, &length, capacity, true, pushed, lengths, 1));
        model[--first] = texts[i];
        count++;
        if (length == before) {
            /* Written into the room. */
            CHECK(front_room(value) == room_before - (lengths[0] + LIST_V2_OVERHEAD));
        } else {
            moves++;
            CHECK(front_room(value) > 0 || i == 0);
        }
    }
    CHECK(list_holds(value, length, model + first, count));
    /* The body moved a handful of times for 2,000 pushes, not once per push. */
    CHECK(moves > 0 && moves < 40);
    /* Pops from the head give their bytes to the room: the length stays. */
    struct byte_buffer popped = {0};
    uint64_t before = length;
    uint32_t room_before = front_room(value);
    REQUIRE(list_pop_in_place(value, &length, true, 10, &popped));
    first += 10;
    count -= 10;
    CHECK(length == before && front_room(value) > room_before);
    CHECK(list_holds(value, length, model + first, count));
    /* Pushes at the tail and pops there leave the room alone. */
    const unsigned char *tail[] = {(const unsigned char *)"tail"};
    uint64_t tail_length[] = {4};
    room_before = front_room(value);
    REQUIRE(list_push_in_place(value, &length, capacity, false, tail, tail_length, 1));
    model[first + count++] = "tail";
    CHECK(front_room(value) == room_before && list_holds(value, length, model + first, count));
    byte_buffer_clear(&popped);
    REQUIRE(list_pop_in_place(value, &length, false, 1, &popped));
    count--;
    CHECK(popped.length == 8 && memcmp(popped.data + 4, "tail", 4) == 0);
    CHECK(front_room(value) == room_before && list_holds(value, length, model + first, count));
    /* Draining all but a few: the body moves down over the room. */
    byte_buffer_clear(&popped);
    REQUIRE(list_pop_in_place(value, &length, true, (uint32_t)count - 3, &popped));
    first += count - 3;
    count = 3;
    CHECK(front_room(value) == 0 && length < 100);
    CHECK(list_holds(value, length, model + first, count));
    byte_buffer_free(&popped);
    free(value);
}

int main(void) {
    RUN_TEST(test_version_1_still_reads);
    RUN_TEST(test_version_2_in_place);
    RUN_TEST(test_front_room);
    return test_main_result();
}
