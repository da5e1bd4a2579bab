/* Unit tests of the RESP request parser: every split point of valid streams, the
 * direct-read path for large arguments, limits and protocol errors. */
#include "base/metrics.h"
#include "engine/store.h"
#include "engine/value_block.h"
#include "proto/resp/resp_parser.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static const struct resp_parser_limits default_limits = {
    .max_request = 1ULL << 30, .max_value = 512ULL << 20, .max_arguments = 1024};

/* A parsed command, flattened as "arg|arg|arg" with lengths kept separately. */
struct parsed {
    int commands;
    struct byte_buffer text; /* each command: for every argument, length then bytes */
};

static void record(struct parsed *out, const struct resp_parser *parser) {
    out->commands++;
    char header[32];
    int length = snprintf(header, sizeof(header), "[%zu]", parser->argc);
    byte_buffer_append(&out->text, header, (size_t)length);
    for (size_t i = 0; i < parser->argc; i++) {
        length =
            snprintf(header, sizeof(header), "(%llu)", (unsigned long long)parser->argv_lengths[i]);
        byte_buffer_append(&out->text, header, (size_t)length);
        byte_buffer_append(&out->text, parser->argv[i], (size_t)parser->argv_lengths[i]);
    }
}

/* Feeds DATA in pieces ending at the CUTS (sorted offsets) and records every command.
 * Returns the last parse result. */
static enum resp_parse_result feed_pieces(struct resp_parser *parser, const unsigned char *data,
                                          size_t length, const size_t *cuts, size_t cut_count,
                                          struct parsed *out) {
    size_t start = 0;
    enum resp_parse_result result = RESP_NEED_MORE;
    for (size_t piece = 0; piece <= cut_count; piece++) {
        size_t end = piece < cut_count ? cuts[piece] : length;
        while (start < end) {
            size_t consumed = 0;
            result = resp_parser_feed(parser, data + start, end - start, &consumed);
            start += consumed;
            if (result == RESP_COMMAND_READY) {
                record(out, parser);
                resp_parser_next_command(parser);
            } else if (result == RESP_PROTOCOL_ERROR) {
                return result;
            }
        }
    }
    return result;
}

static struct byte_buffer build_stream(void) {
    struct byte_buffer stream = BYTE_BUFFER_INIT;
    byte_buffer_append_text(&stream, "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n");
    byte_buffer_append_text(&stream, "*2\r\n$3\r\nGET\r\n$0\r\n\r\n");
    byte_buffer_append_text(&stream, "PING\r\n");
    byte_buffer_append_text(&stream, "*0\r\n*-1\r\n*-10\r\n\r\n"); /* ignored, as by Redis */
    byte_buffer_append_text(&stream, "set k \"a b\\r\\n\\x41\" 'c \\'d' plain\n");
    /* A bulk argument holding CR, LF and NUL bytes. */
    byte_buffer_append(&stream, "*2\r\n$4\r\nECHO\r\n$6\r\n\r\n\0\r\0\n\r\n", 26);
    return stream;
}

static void expected_parse(struct parsed *out) {
    const char *expected = "[3](3)SET(3)key(5)value"
                           "[2](3)GET(0)"
                           "[1](4)PING"
                           "[5](3)set(1)k(6)a b\r\nA(4)c 'd(5)plain";
    byte_buffer_append_text(&out->text, expected);
    byte_buffer_append(&out->text, "[2](4)ECHO(6)\r\n\0\r\0\n", 19);
    out->commands = 5;
}

static bool same(const struct parsed *a, const struct parsed *b) {
    return a->commands == b->commands && a->text.length == b->text.length &&
           memcmp(a->text.data, b->text.data, a->text.length) == 0;
}

static void test_every_split_point(void) {
    struct byte_buffer stream = build_stream();
    struct parsed expected = {0, BYTE_BUFFER_INIT};
    expected_parse(&expected);

    /* Whole, then every two-piece split, then every three-piece split. */
    int mismatches = 0;
    for (size_t first = 0; first <= stream.length; first++) {
        for (size_t second = first; second <= stream.length; second++) {
            struct resp_parser parser;
            resp_parser_init(&parser, &default_limits);
            struct parsed got = {0, BYTE_BUFFER_INIT};
            size_t cuts[2] = {first, second};
            enum resp_parse_result result =
                feed_pieces(&parser, stream.data, stream.length, cuts, 2, &got);
            if (result == RESP_PROTOCOL_ERROR || !same(&got, &expected)) mismatches++;
            CHECK(!resp_parser_in_command(&parser));
            byte_buffer_free(&got.text);
            resp_parser_free(&parser);
        }
    }
    CHECK(mismatches == 0);

    /* One byte at a time. */
    struct resp_parser parser;
    resp_parser_init(&parser, &default_limits);
    struct parsed got = {0, BYTE_BUFFER_INIT};
    size_t *cuts = malloc(stream.length * sizeof(size_t));
    for (size_t i = 0; i < stream.length; i++)
        cuts[i] = i;
    CHECK(feed_pieces(&parser, stream.data, stream.length, cuts, stream.length, &got) !=
          RESP_PROTOCOL_ERROR);
    CHECK(same(&got, &expected));
    free(cuts);
    byte_buffer_free(&got.text);
    resp_parser_free(&parser);
    byte_buffer_free(&expected.text);
    byte_buffer_free(&stream);
}

/* A large argument lands in a value block, at every split point and via direct reads. */
static void test_large_argument(void) {
    size_t size = STORE_BLOCK_THRESHOLD + 1000;
    struct byte_buffer stream = BYTE_BUFFER_INIT;
    byte_buffer_appendf(&stream, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%zu\r\n", size);
    size_t body_start = stream.length;
    for (size_t i = 0; i < size; i++) {
        unsigned char byte = (unsigned char)(i % 251);
        byte_buffer_append(&stream, &byte, 1);
    }
    byte_buffer_append_text(&stream, "\r\n*1\r\n$4\r\nPING\r\n");

    int failures = 0;
    for (size_t cut = 0; cut <= stream.length; cut += (cut < body_start + 64 ? 1 : 997)) {
        struct resp_parser parser;
        resp_parser_init(&parser, &default_limits);
        size_t consumed = 0;
        enum resp_parse_result result = resp_parser_feed(&parser, stream.data, cut, &consumed);
        size_t position = consumed;
        if (result != RESP_COMMAND_READY) {
            result = resp_parser_feed(&parser, stream.data + position, stream.length - position,
                                      &consumed);
            position += consumed;
        }
        if (result != RESP_COMMAND_READY || parser.argc != 3 || parser.argv_lengths[2] != size) {
            failures++;
        } else {
            struct value_block *block = resp_parser_take_block(&parser, 2);
            if (block == NULL || block->length != size ||
                memcmp(block->data, stream.data + body_start, size) != 0) {
                failures++;
            }
            if (block != NULL) value_block_release(block);
            resp_parser_next_command(&parser);
            result = resp_parser_feed(&parser, stream.data + position, stream.length - position,
                                      &consumed);
            if (result != RESP_COMMAND_READY || parser.argc != 1) failures++;
            resp_parser_next_command(&parser);
        }
        resp_parser_free(&parser);
    }
    CHECK(failures == 0);

    /* Direct reads: the caller copies body bytes straight into the block. */
    struct resp_parser parser;
    resp_parser_init(&parser, &default_limits);
    size_t consumed;
    CHECK(resp_parser_feed(&parser, stream.data, body_start + 10, &consumed) == RESP_NEED_MORE);
    unsigned char *target;
    size_t room;
    REQUIRE(resp_parser_direct_target(&parser, &target, &room));
    CHECK(room == size - 10);
    memcpy(target, stream.data + body_start + 10, 5000);
    resp_parser_direct_advance(&parser, 5000);
    REQUIRE(resp_parser_direct_target(&parser, &target, &room));
    CHECK(room == size - 5010);
    memcpy(target, stream.data + body_start + 5010, room);
    resp_parser_direct_advance(&parser, room);
    CHECK(!resp_parser_direct_target(&parser, &target, &room));
    size_t rest = body_start + size;
    CHECK(resp_parser_feed(&parser, stream.data + rest, stream.length - rest, &consumed) ==
          RESP_COMMAND_READY);
    CHECK(parser.argc == 3 && memcmp(parser.argv[2], stream.data + body_start, size) == 0);
    /* A block nobody takes is released with the command (checked by LeakSanitizer). */
    resp_parser_next_command(&parser);
    resp_parser_free(&parser);

    /* A client gone in the middle of a large argument: its block is freed too, also when
     * the argument array has grown past the arguments begun so far. */
    for (size_t cut = body_start - 3; cut < body_start + 100; cut += 50) {
        resp_parser_init(&parser, &default_limits);
        CHECK(resp_parser_feed(&parser, stream.data, cut, &consumed) == RESP_NEED_MORE);
        resp_parser_free(&parser);
    }
    struct byte_buffer many = BYTE_BUFFER_INIT;
    byte_buffer_append_text(&many, "*20\r\n");
    for (int i = 0; i < 9; i++)
        byte_buffer_append_text(&many, "$1\r\na\r\n");
    byte_buffer_append_text(&many, "$");
    resp_parser_init(&parser, &default_limits);
    CHECK(resp_parser_feed(&parser, many.data, many.length, &consumed) == RESP_NEED_MORE);
    resp_parser_free(&parser);
    byte_buffer_free(&many);
    byte_buffer_free(&stream);
}

/* Feeds TEXT to a fresh parser with LIMITS and returns the result and the error. */
static enum resp_parse_result parse_text(const char *text, size_t length,
                                         const struct resp_parser_limits *limits, char *error,
                                         size_t *argc) {
    struct resp_parser parser;
    resp_parser_init(&parser, limits);
    size_t consumed;
    enum resp_parse_result result =
        resp_parser_feed(&parser, (const unsigned char *)text, length, &consumed);
    snprintf(error, 128, "%s", parser.error);
    if (argc != NULL) *argc = parser.argc;
    resp_parser_free(&parser);
    return result;
}

static void test_protocol_errors(void) {
    char error[128];
    struct {
        const char *input;
        const char *error;
    } cases[] = {
        {"*abc\r\n", "Protocol error: invalid multibulk length"},
        {"*1\r\n+PING\r\n", "Protocol error: expected '+', got"},
        {"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"},
        {"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"},
        {"*1\r\n$1099511627776\r\n", "Protocol error: invalid bulk length"},
        {"*1000000\r\n", "Protocol error: invalid multibulk length"},
        {"*-0\r\n", "Protocol error: invalid multibulk length"},
        {"*01\r\n$4\r\nPING\r\n", "Protocol error: invalid multibulk length"},
        {"*1\r\n$04\r\nPING\r\n", "Protocol error: invalid bulk length"},
        {"*99999999999999999999999\r\n", "Protocol error: invalid multibulk length"},
        {"*1\r\n$4\r\nPINGxx", "Protocol error: expected CRLF after bulk data"},
        {"SET k \"unterminated\r\n", "Protocol error: unbalanced quotes in request"},
        {"SET k \"a\"b\r\n", "Protocol error: unbalanced quotes in request"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum resp_parse_result result =
            parse_text(cases[i].input, strlen(cases[i].input), &default_limits, error, NULL);
        CHECK(result == RESP_PROTOCOL_ERROR);
        if (strstr(cases[i].error, "expected '+'") != NULL) {
            CHECK(strcmp(error, "Protocol error: expected '$', got '+'") == 0);
        } else if (strcmp(error, cases[i].error) != 0) {
            fprintf(stderr, "    input %zu: got '%s', expected '%s'\n", i, error, cases[i].error);
            CHECK(false);
        }
    }

    /* An inline command longer than the limit. */
    size_t long_length = RESP_MAX_INLINE + 10;
    char *long_line = malloc(long_length);
    REQUIRE(long_line != NULL);
    memset(long_line, 'a', long_length);
    CHECK(parse_text(long_line, long_length, &default_limits, error, NULL) == RESP_PROTOCOL_ERROR);
    CHECK(strcmp(error, "Protocol error: too big inline request") == 0);
    free(long_line);

    /* A command larger than max_request, made of arguments each within max_value. */
    struct resp_parser_limits small = {.max_request = 100, .max_value = 60, .max_arguments = 10};
    const char *too_big = "*3\r\n$3\r\nSET\r\n$50\r\n";
    size_t argc;
    CHECK(parse_text(too_big, strlen(too_big), &small, error, &argc) == RESP_NEED_MORE);
    const char *over = "*3\r\n$3\r\nSET\r\n$50\r\n"
                       "01234567890123456789012345678901234567890123456789\r\n$50\r\n";
    CHECK(parse_text(over, strlen(over), &small, error, &argc) == RESP_PROTOCOL_ERROR);
}

/* An argument over max_value is drained: the command is flagged, the stream goes on. */
static void test_oversized_argument(void) {
    struct resp_parser_limits limits = {
        .max_request = 1 << 20, .max_value = 10, .max_arguments = 10};
    struct resp_parser parser;
    resp_parser_init(&parser, &limits);
    const char *input = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20\r\n01234567890123456789\r\n"
                        "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    size_t consumed;
    size_t length = strlen(input);
    CHECK(resp_parser_feed(&parser, (const unsigned char *)input, length, &consumed) ==
          RESP_COMMAND_READY);
    CHECK(parser.oversized_length == 20);
    CHECK(parser.argc == 3 && parser.argv_lengths[2] == 0);
    resp_parser_next_command(&parser);
    size_t position = consumed;
    CHECK(resp_parser_feed(&parser, (const unsigned char *)input + position, length - position,
                           &consumed) == RESP_COMMAND_READY);
    CHECK(parser.oversized_length == 0);
    CHECK(parser.argc == 2 && memcmp(parser.argv[0], "GET", 3) == 0);
    resp_parser_next_command(&parser);
    resp_parser_free(&parser);
}

int main(void) {
    fprintf(stderr, "test_resp_parser\n");
    RUN_TEST(test_every_split_point);
    RUN_TEST(test_large_argument);
    RUN_TEST(test_protocol_errors);
    RUN_TEST(test_oversized_argument);
    metrics_teardown();
    return test_main_result();
}
