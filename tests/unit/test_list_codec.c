/* Unit tests of the list encoding (src/proto/resp/resp_list_codec.c): versions 1 and
 * 2, as older builds wrote them, still decode and walk; version 3 is what is written,
 * walked from either end, with varint lengths right at their size boundaries; the
 * in-place pushes and pops agree with a decode-and-encode. */
#include "base/varint.h"
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
    /* Version 1 is never changed in place: the command re-encodes it in version 3. */
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
    /* Decoded and encoded again, it is version 3 with the same elements. */
    struct list_elements list = {0};
    REQUIRE(list_decode(v1, length, &list) == LIST_DECODED);
    struct byte_buffer v3 = {0};
    list_encode(&list, &v3);
    list_elements_free(&list);
    REQUIRE(!v3.failed);
    CHECK(v3.data[0] == LIST_VERSION_3);
    CHECK(v3.length == LIST_HEADER_SIZE + 5 * 2 + 5 + 0 + 5 + 5 + 2);
    CHECK(list_holds(v3.data, v3.length, elements, 5));
    byte_buffer_free(&v3);
    /* Damage: a count past the bytes, a short element, an unknown version. */
    unsigned char damaged[128];
    memcpy(damaged, v1, length);
    strata_store32(damaged + 1, 6);
    struct list_elements none = {0};
    CHECK(list_decode(damaged, length, &none) == LIST_CORRUPT);
    list_elements_free(&none);
    CHECK(list_decode(v1, length - 1, &none) == LIST_CORRUPT);
    list_elements_free(&none);
    damaged[0] = 4;
    uint32_t count;
    CHECK(!list_count(damaged, length, &count));
}

static void test_version_3_in_place(void) {
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

/* A version-2 encoding of ELEMENTS, as the builds before version 3 wrote it: the
 * 9-byte header with no front room, then u32 length, bytes, u32 length per element. */
static size_t encode_v2(const char *const *elements, size_t count, unsigned char *out) {
    out[0] = LIST_VERSION_2;
    strata_store32(out + 1, (uint32_t)count);
    strata_store32(out + 5, 0);
    size_t at = LIST_HEADER_SIZE;
    for (size_t i = 0; i < count; i++) {
        uint32_t length = (uint32_t)strlen(elements[i]);
        strata_store32(out + at, length);
        memcpy(out + at + 4, elements[i], length);
        strata_store32(out + at + 4 + length, length);
        at += LIST_V2_OVERHEAD + length;
    }
    return at;
}

static void test_version_2_still_reads(void) {
    const char *const elements[] = {"one", "", "three", "four", "five", "six", "seven"};
    unsigned char v2[256];
    size_t length = encode_v2(elements, 7, v2);
    /* list_holds() seeks every index: the upper half is walked from the end. */
    CHECK(list_holds(v2, length, elements, 7));
    /* Not changed in place: the command rewrites it whole, in version 3. */
    unsigned char buffer[512];
    memcpy(buffer, v2, length);
    uint64_t edited = length;
    const unsigned char *pushed[] = {(const unsigned char *)"x"};
    uint64_t pushed_lengths[] = {1};
    CHECK(!list_push_in_place(buffer, &edited, sizeof(buffer), true, pushed, pushed_lengths, 1));
    CHECK(!list_push_in_place(buffer, &edited, sizeof(buffer), false, pushed, pushed_lengths, 1));
    struct byte_buffer popped = {0};
    CHECK(!list_pop_in_place(buffer, &edited, false, 1, &popped));
    CHECK(edited == length && memcmp(buffer, v2, length) == 0);
    byte_buffer_free(&popped);
    struct list_elements list = {0};
    REQUIRE(list_decode(v2, length, &list) == LIST_DECODED);
    struct byte_buffer v3 = {0};
    list_encode(&list, &v3);
    list_elements_free(&list);
    REQUIRE(!v3.failed);
    CHECK(v3.data[0] == LIST_VERSION_3 && v3.length == length - 7 * (LIST_V2_OVERHEAD - 2));
    CHECK(list_holds(v3.data, v3.length, elements, 7));
    byte_buffer_free(&v3);
    /* A damaged trailing u32 length is found by the walk from the end. */
    v2[length - 1] ^= 0x01;
    uint64_t offset;
    CHECK(!list_seek(v2, length, 6, &offset));
    CHECK(list_decode(v2, length, &list) == LIST_CORRUPT);
    list_elements_free(&list);
}

static void test_varints(void) {
    const uint64_t values[] = {0, 1, 127, 128, 129, 16383, 16384, 70000, UINT32_MAX, UINT64_MAX};
    const size_t sizes[] = {1, 1, 1, 2, 2, 2, 3, 3, 5, 10};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        unsigned char bytes[VARINT_MAX_SIZE];
        uint64_t read = 0;
        CHECK(varint_size(values[i]) == sizes[i]);
        CHECK(varint_put(bytes, values[i]) == bytes + sizes[i]);
        CHECK(varint_get(bytes, sizes[i], &read) == sizes[i] && read == values[i]);
        /* Cut short: not read. */
        CHECK(varint_get(bytes, sizes[i] - 1, &read) == 0);
        CHECK(varint_put_backward(bytes + sizes[i], values[i]) == bytes);
        read = 0;
        CHECK(varint_get_backward(bytes + sizes[i], sizes[i], &read) == sizes[i] &&
              read == values[i]);
        CHECK(varint_get_backward(bytes + sizes[i], sizes[i] - 1, &read) == 0);
    }
    /* Only the shortest form is read: 0x81 0x00 would be 1 in two bytes. */
    const unsigned char padded[] = {0x81, 0x00};
    uint64_t read;
    CHECK(varint_get(padded, 2, &read) == 0);
    const unsigned char padded_backward[] = {0x00, 0x81};
    CHECK(varint_get_backward(padded_backward + 2, 2, &read) == 0);
    /* Past 64 bits. */
    const unsigned char huge[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    CHECK(varint_get(huge, sizeof(huge), &read) == 0);
    /* What an element costs at the boundaries. */
    CHECK(list_element_size(0) == 2 && list_element_size(127) == 129);
    CHECK(list_element_size(128) == 132 && list_element_size(16383) == 16387);
    CHECK(list_element_size(16384) == 16390 && list_element_size(70000) == 70006);
}

/* Lengths at the varint boundaries, empty and big elements: encoded whole, walked from
 * both ends, pushed in place at both ends and popped back. */
static void test_boundary_lengths(void) {
    enum { SIZES = 9 };
    const uint32_t sizes[SIZES] = {0, 1, 127, 128, 129, 16383, 16384, 16385, 70000};
    unsigned char *contents[SIZES];
    struct list_elements list = {0};
    REQUIRE(list_elements_grow(&list, SIZES));
    uint64_t total = LIST_HEADER_SIZE;
    for (int i = 0; i < SIZES; i++) {
        contents[i] = malloc(sizes[i] + 1);
        REQUIRE(contents[i] != NULL);
        for (uint32_t b = 0; b < sizes[i]; b++)
            contents[i][b] = (unsigned char)(i * 31 + b * 7);
        list.elements[i] = (struct list_element){contents[i], sizes[i]};
        total += list_element_size(sizes[i]);
    }
    list.count = SIZES;
    struct byte_buffer encoded = {0};
    list_encode(&list, &encoded);
    list_elements_free(&list);
    REQUIRE(!encoded.failed);
    CHECK(encoded.length == total);
    /* Every index, by seek (from the nearer end) and by a whole decode. */
    struct list_elements decoded = {0};
    REQUIRE(list_decode(encoded.data, encoded.length, &decoded) == LIST_DECODED);
    CHECK(decoded.count == SIZES);
    for (int i = 0; i < SIZES; i++) {
        CHECK(decoded.elements[i].length == sizes[i] &&
              memcmp(decoded.elements[i].data, contents[i], sizes[i]) == 0);
        uint64_t offset;
        struct list_element element;
        REQUIRE(list_seek(encoded.data, encoded.length, (uint32_t)i, &offset));
        REQUIRE(list_next(encoded.data, encoded.length, &offset, &element));
        CHECK(element.length == sizes[i] && memcmp(element.data, contents[i], sizes[i]) == 0);
    }
    list_elements_free(&decoded);
    /* Cut anywhere in the last element: damaged. */
    for (uint64_t cut = 1; cut <= 4; cut++) {
        CHECK(list_decode(encoded.data, encoded.length - cut, &decoded) == LIST_CORRUPT);
        list_elements_free(&decoded);
    }

    /* In place: each size pushed at the tail, then each at the head, onto one element;
     * then popped from both ends. */
    uint64_t capacity = 2 * total + 4096;
    unsigned char *value = malloc(capacity);
    REQUIRE(value != NULL);
    struct list_elements seed = {0};
    REQUIRE(list_elements_grow(&seed, 1));
    seed.elements[0] = (struct list_element){(const unsigned char *)"seed", 4};
    seed.count = 1;
    byte_buffer_clear(&encoded);
    list_encode(&seed, &encoded);
    list_elements_free(&seed);
    REQUIRE(!encoded.failed);
    memcpy(value, encoded.data, encoded.length);
    uint64_t length = encoded.length;
    for (int i = 0; i < SIZES; i++) {
        const unsigned char *pushed[] = {contents[i]};
        uint64_t lengths[] = {sizes[i]};
        REQUIRE(list_push_in_place(value, &length, capacity, false, pushed, lengths, 1));
        REQUIRE(list_push_in_place(value, &length, capacity, true, pushed, lengths, 1));
    }
    uint32_t count;
    CHECK(list_count(value, length, &count) && count == 2 * SIZES + 1);
    REQUIRE(list_decode(value, length, &decoded) == LIST_DECODED);
    for (int i = 0; i < SIZES; i++) {
        const struct list_element *head = &decoded.elements[SIZES - 1 - i];
        const struct list_element *tail = &decoded.elements[SIZES + 1 + i];
        CHECK(head->length == sizes[i] && memcmp(head->data, contents[i], sizes[i]) == 0);
        CHECK(tail->length == sizes[i] && memcmp(tail->data, contents[i], sizes[i]) == 0);
    }
    CHECK(decoded.elements[SIZES].length == 4);
    list_elements_free(&decoded);
    struct byte_buffer popped = {0};
    for (int left = 0; left < 2; left++) {
        byte_buffer_clear(&popped);
        REQUIRE(list_pop_in_place(value, &length, left, SIZES, &popped));
        const unsigned char *at = popped.data;
        for (int i = SIZES - 1; i >= 0; i--) {
            uint32_t size = strata_load32(at);
            CHECK(size == sizes[i] && memcmp(at + 4, contents[i], size) == 0);
            at += 4 + (size_t)size;
        }
        CHECK(at == popped.data + popped.length);
    }
    const char *const rest[] = {"seed"};
    CHECK(list_holds(value, length, rest, 1));
    byte_buffer_free(&popped);
    byte_buffer_free(&encoded);
    free(value);
    for (int i = 0; i < SIZES; i++)
        free(contents[i]);
}

static uint32_t front_room(const unsigned char *value) {
    return strata_load32(value + 5);
}

/* list_push_copy() gives what list_push_in_place() leaves, without front room, from a
 * version-3 list with or without room; it declines older versions, changing nothing. */
static void test_push_copy(void) {
    const char *const start[] = {"b", "", "c"};
    struct list_elements list = {0};
    REQUIRE(list_elements_grow(&list, 3));
    for (int i = 0; i < 3; i++)
        list.elements[i] =
            (struct list_element){(const unsigned char *)start[i], (uint32_t)strlen(start[i])};
    list.count = 3;
    struct byte_buffer encoded = {0};
    list_encode(&list, &encoded);
    list_elements_free(&list);
    REQUIRE(!encoded.failed);
    /* A copy with front room, as an in-place pop at the head leaves it. */
    unsigned char roomy[256];
    memcpy(roomy, encoded.data, encoded.length);
    uint64_t roomy_length = encoded.length;
    const unsigned char *first[] = {(const unsigned char *)"a"};
    uint64_t first_length[] = {1};
    REQUIRE(list_push_in_place(roomy, &roomy_length, sizeof(roomy), true, first, first_length, 1));
    struct byte_buffer popped = {0};
    REQUIRE(list_pop_in_place(roomy, &roomy_length, true, 1, &popped));
    CHECK(front_room(roomy) > 0);
    byte_buffer_free(&popped);

    unsigned char *big = malloc(16384);
    REQUIRE(big != NULL);
    memset(big, 'z', 16384);
    const unsigned char *pushed[] = {(const unsigned char *)"x", big, (const unsigned char *)""};
    uint64_t lengths[] = {1, 16384, 0};
    for (int source = 0; source < 2; source++) {
        const unsigned char *value = source ? roomy : encoded.data;
        uint64_t length = source ? roomy_length : encoded.length;
        for (int left = 0; left < 2; left++) {
            struct byte_buffer copy = {0};
            REQUIRE(list_push_copy(value, length, left, pushed, lengths, 3, &copy));
            CHECK(copy.data[0] == LIST_VERSION_3 && front_room(copy.data) == 0);
            struct list_elements got = {0};
            REQUIRE(list_decode(copy.data, copy.length, &got) == LIST_DECODED);
            CHECK(got.count == 6);
            /* RPUSH x big "": b "" c x big ""; LPUSH: "" big x b "" c. */
            size_t x = left ? 2 : 3, z = left ? 1 : 4, empty = left ? 0 : 5, b = left ? 3 : 0;
            CHECK(got.elements[x].length == 1 && got.elements[x].data[0] == 'x');
            CHECK(got.elements[z].length == 16384 && memcmp(got.elements[z].data, big, 16384) == 0);
            CHECK(got.elements[empty].length == 0);
            CHECK(got.elements[b].length == 1 && got.elements[b].data[0] == 'b');
            CHECK(got.elements[b + 1].length == 0 && got.elements[b + 2].data[0] == 'c');
            list_elements_free(&got);
            /* The same bytes as pushing in place onto a roomless copy. */
            unsigned char *in_place = malloc(length + 20000);
            REQUIRE(in_place != NULL);
            memcpy(in_place, encoded.data, encoded.length);
            uint64_t in_place_length = encoded.length;
            REQUIRE(list_push_in_place(in_place, &in_place_length, encoded.length + 20000, false,
                                       pushed, lengths, 3));
            if (!left)
                CHECK(in_place_length == copy.length &&
                      memcmp(in_place, copy.data, copy.length) == 0);
            free(in_place);
            byte_buffer_free(&copy);
        }
    }
    /* Older versions are declined, the output untouched. */
    const char *const old[] = {"one", "two"};
    unsigned char v2[64];
    size_t v2_length = encode_v2(old, 2, v2);
    struct byte_buffer untouched = {0};
    CHECK(!list_push_copy(v2, v2_length, true, pushed, lengths, 3, &untouched));
    CHECK(untouched.length == 0 && !untouched.failed);
    byte_buffer_free(&untouched);
    free(big);
    byte_buffer_free(&encoded);
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
            CHECK(front_room(value) == room_before - list_element_size(lengths[0]));
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
    RUN_TEST(test_version_2_still_reads);
    RUN_TEST(test_varints);
    RUN_TEST(test_boundary_lengths);
    RUN_TEST(test_version_3_in_place);
    RUN_TEST(test_push_copy);
    RUN_TEST(test_front_room);
    return test_main_result();
}
