#include "proto/resp/resp_parser.h"

#include "base/metrics.h"
#include "engine/store.h"
#include "engine/value_block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum parser_state {
    STATE_START,        /* between commands */
    STATE_ARRAY_LENGTH, /* digits after '*' */
    STATE_ARRAY_LF,     /* '\n' after the array length */
    STATE_BULK_PREFIX,  /* expecting '$' */
    STATE_BULK_LENGTH,  /* digits after '$' */
    STATE_BULK_LF,      /* '\n' after the bulk length */
    STATE_BULK_BODY,    /* argument bytes */
    STATE_BULK_CR,      /* '\r' after the argument */
    STATE_BULK_END_LF,  /* '\n' after the argument */
    STATE_INLINE,       /* an inline command line */
    STATE_READY,        /* a command is complete and not yet released */
    STATE_ERROR,        /* a protocol error happened; nothing more is accepted */
};

/* Longest number accepted in a header: 18 digits, far beyond any limit. */
#define MAX_NUMBER_DIGITS 18

/* Arenas larger than this are freed after their command instead of kept. */
#define ARENA_KEEP_LIMIT (1024 * 1024)

void resp_parser_init(struct resp_parser *parser, const struct resp_parser_limits *limits) {
    memset(parser, 0, sizeof(*parser));
    parser->limits = *limits;
    parser->state = STATE_START;
}

void resp_parser_set_limits(struct resp_parser *parser, const struct resp_parser_limits *limits) {
    parser->limits = *limits;
}

/* Releases the blocks of the arguments read so far, including one still being read
 * (which sits at index argument_count until it is complete). */
static void release_arguments(struct resp_parser *parser) {
    size_t started = parser->argument_count < parser->argument_capacity ? parser->argument_count + 1
                                                                        : parser->argument_count;
    for (size_t i = 0; i < started; i++) {
        if (parser->arguments[i].block != NULL) {
            value_block_release(parser->arguments[i].block);
            parser->arguments[i].block = NULL;
        }
        free(parser->arguments[i].head);
        parser->arguments[i].head = NULL;
        parser->arguments[i].head_length = 0;
        parser->arguments[i].taken = false;
    }
    parser->argument_count = 0;
}

void resp_parser_free(struct resp_parser *parser) {
    release_arguments(parser);
    free(parser->arguments);
    free(parser->argv);
    free(parser->argv_lengths);
    byte_buffer_free(&parser->arena);
    parser->arguments = NULL;
    parser->argv = NULL;
    parser->argv_lengths = NULL;
    parser->argv_capacity = 0;
    parser->argument_capacity = 0;
}

static enum resp_parse_result fail(struct resp_parser *parser, const char *format, int byte) {
    snprintf(parser->error, sizeof(parser->error), format, byte);
    parser->state = STATE_ERROR;
    release_arguments(parser);
    return RESP_PROTOCOL_ERROR;
}

/* Makes room for one more argument. Returns false if out of memory. */
static bool grow_arguments(struct resp_parser *parser) {
    if (parser->argument_count < parser->argument_capacity) return true;
    size_t capacity = parser->argument_capacity ? parser->argument_capacity * 2 : 8;
    struct resp_argument *arguments = realloc(parser->arguments, capacity * sizeof(*arguments));
    if (arguments == NULL) return false;
    /* Unused slots hold no block, so that releasing never sees garbage. */
    memset(arguments + parser->argument_capacity, 0,
           (capacity - parser->argument_capacity) * sizeof(*arguments));
    parser->arguments = arguments;
    parser->argument_capacity = capacity;
    return true;
}

/* Builds argc/argv for the completed command. Returns false if out of memory. */
static bool publish(struct resp_parser *parser) {
    size_t count = parser->argument_count;
    /* argv and argv_lengths keep the arguments' capacity (which never shrinks), so a
     * command costs no allocation once the parser has seen one as long. */
    if (parser->argv_capacity < parser->argument_capacity || parser->argv_capacity == 0) {
        size_t capacity = parser->argument_capacity ? parser->argument_capacity : 1;
        const unsigned char **grown_argv = realloc(parser->argv, capacity * sizeof(*grown_argv));
        if (grown_argv == NULL) return false;
        parser->argv = grown_argv;
        uint64_t *grown_lengths = realloc(parser->argv_lengths, capacity * sizeof(*grown_lengths));
        if (grown_lengths == NULL) return false;
        parser->argv_lengths = grown_lengths;
        parser->argv_capacity = capacity;
    }
    const unsigned char **argv = parser->argv;
    uint64_t *lengths = parser->argv_lengths;
    for (size_t i = 0; i < count; i++) {
        const struct resp_argument *argument = &parser->arguments[i];
        if (argument->block != NULL) {
            argv[i] = argument->block->data;
        } else if (parser->arena.data != NULL) {
            argv[i] = parser->arena.data + argument->offset;
        } else {
            argv[i] = (const unsigned char *)""; /* only empty arguments so far */
        }
        lengths[i] = argument->length;
    }
    parser->argc = count;
    parser->state = STATE_READY;
    return true;
}

/* Starts reading a bulk argument of LENGTH bytes. Returns false on a protocol error. */
static bool begin_bulk(struct resp_parser *parser, uint64_t length) {
    if (length > parser->limits.max_request ||
        parser->request_bytes > parser->limits.max_request - length) {
        return false;
    }
    parser->request_bytes += length;
    parser->bulk_length = length;
    parser->bulk_received = 0;
    parser->bulk_drained = false;
    struct resp_argument *argument = &parser->arguments[parser->argument_count];
    argument->offset = parser->arena.length;
    argument->length = length;
    argument->block = NULL;
    if (length > parser->limits.max_value) {
        parser->bulk_drained = true;
        if (parser->oversized_length == 0) parser->oversized_length = length;
        argument->length = 0;
    } else if (length >= STORE_BLOCK_THRESHOLD) {
        argument->block = value_block_create(length);
        if (argument->block == NULL) {
            parser->bulk_drained = true;
            parser->allocation_failed = true;
            argument->length = 0;
        }
    } else if (!byte_buffer_reserve(&parser->arena, (size_t)length)) {
        metric_add(METRIC_allocation_failures, 1);
        parser->bulk_drained = true;
        parser->allocation_failed = true;
        argument->length = 0;
    }
    parser->state = length == 0 ? STATE_BULK_CR : STATE_BULK_BODY;
    return true;
}

/* Stores LENGTH body bytes of the current bulk argument. */
static void take_body(struct resp_parser *parser, const unsigned char *data, size_t length) {
    struct resp_argument *argument = &parser->arguments[parser->argument_count];
    if (!parser->bulk_drained) {
        if (argument->block != NULL) {
            memcpy(argument->block->data + parser->bulk_received, data, length);
        } else {
            memcpy(parser->arena.data + parser->arena.length, data, length);
            parser->arena.length += length;
        }
    }
    parser->bulk_received += length;
    if (parser->bulk_received == parser->bulk_length) {
        if (argument->block != NULL) argument->block->length = parser->bulk_length;
        parser->state = STATE_BULK_CR;
    }
}

/* Splits the inline line held in the arena (LINE_LENGTH bytes from offset 0) into
 * arguments appended after it, with the quoting rules of redis-cli. Returns false on
 * unbalanced quotes. */
static bool split_inline(struct resp_parser *parser, size_t line_length) {
    /* Unquoted arguments never outgrow the line, so one reservation keeps the line's
     * bytes in place while arguments are copied after it. */
    if (!byte_buffer_reserve(&parser->arena, line_length + 1)) return false;
    const unsigned char *line = parser->arena.data;
    size_t position = 0;
    while (position < line_length) {
        while (position < line_length && (line[position] == ' ' || line[position] == '\t')) {
            position++;
        }
        if (position >= line_length) break;
        if (!grow_arguments(parser)) return false;
        struct resp_argument *argument = &parser->arguments[parser->argument_count];
        argument->offset = parser->arena.length;
        argument->block = NULL;
        unsigned char *output = parser->arena.data + parser->arena.length;
        size_t written = 0;
        int quote = 0;
        if (line[position] == '"' || line[position] == '\'') quote = line[position++];
        for (;;) {
            if (position >= line_length) {
                if (quote) return false; /* no closing quote */
                break;
            }
            unsigned char c = line[position];
            if (!quote && (c == ' ' || c == '\t')) break;
            if (quote && c == quote) {
                position++;
                /* A closing quote must end the argument. */
                if (position < line_length && line[position] != ' ' && line[position] != '\t') {
                    return false;
                }
                break;
            }
            if (quote == '"' && c == '\\' && position + 1 < line_length) {
                unsigned char next = line[position + 1];
                static const char hex[] = "0123456789abcdef";
                const char *high = NULL, *low = NULL;
                if (next == 'x' && position + 3 < line_length) {
                    high = strchr(hex, line[position + 2] | 0x20);
                    low = strchr(hex, line[position + 3] | 0x20);
                }
                if (high != NULL && low != NULL && line[position + 2] && line[position + 3]) {
                    output[written++] = (unsigned char)(((high - hex) << 4) | (low - hex));
                    position += 4;
                    continue;
                }
                switch (next) {
                case 'n':
                    c = '\n';
                    break;
                case 'r':
                    c = '\r';
                    break;
                case 't':
                    c = '\t';
                    break;
                case 'b':
                    c = '\b';
                    break;
                case 'a':
                    c = '\a';
                    break;
                default:
                    c = next;
                    break;
                }
                output[written++] = c;
                position += 2;
                continue;
            }
            if (quote == '\'' && c == '\\' && position + 1 < line_length &&
                line[position + 1] == '\'') {
                output[written++] = '\'';
                position += 2;
                continue;
            }
            output[written++] = c;
            position++;
        }
        argument->length = written;
        parser->arena.length += written;
        parser->argument_count++;
    }
    return true;
}

/* Reads one decimal header digit or sign into the number being parsed. Returns false
 * if BYTE cannot be part of it. */
static bool number_byte(struct resp_parser *parser, unsigned char byte) {
    if (byte == '-' && parser->number_digits == 0 && !parser->number_negative) {
        parser->number_negative = true;
        return true;
    }
    if (byte < '0' || byte > '9' || parser->number_digits >= MAX_NUMBER_DIGITS) return false;
    if (parser->number_digits == 1 && parser->number == 0) return false; /* "01", as Redis */
    parser->number = parser->number * 10 + (byte - '0');
    parser->number_digits++;
    return true;
}

static void number_reset(struct resp_parser *parser) {
    parser->number = 0;
    parser->number_digits = 0;
    parser->number_negative = false;
}

enum resp_parse_result resp_parser_feed(struct resp_parser *parser, const unsigned char *data,
                                        size_t length, size_t *consumed) {
    size_t position = 0;
    enum resp_parse_result result = RESP_NEED_MORE;
    while (position < length && result == RESP_NEED_MORE) {
        unsigned char byte = data[position];
        switch (parser->state) {
        case STATE_START:
            parser->request_bytes = 0;
            parser->oversized_length = 0;
            parser->allocation_failed = false;
            if (byte == '*') {
                number_reset(parser);
                parser->state = STATE_ARRAY_LENGTH;
                position++;
            } else {
                parser->state = STATE_INLINE;
            }
            break;

        case STATE_ARRAY_LENGTH:
            /* Redis's number rules: no leading zero (number_byte()), no "-0". */
            if (byte == '\r' && parser->number_digits > 0 &&
                !(parser->number_negative && parser->number == 0)) {
                parser->state = STATE_ARRAY_LF;
            } else if (!number_byte(parser, byte)) {
                result = fail(parser, "Protocol error: invalid multibulk length", 0);
                break;
            }
            position++;
            break;

        case STATE_ARRAY_LF: {
            if (byte != '\n') {
                result = fail(parser, "Protocol error: invalid multibulk length", 0);
                break;
            }
            position++;
            int64_t count = parser->number_negative ? -parser->number : parser->number;
            if (count > (int64_t)parser->limits.max_arguments) {
                result = fail(parser, "Protocol error: invalid multibulk length", 0);
                break;
            }
            parser->request_bytes = (uint64_t)parser->number_digits + 3;
            if (count <= 0) {
                /* "*0", "*-1", "*-10": an empty command, ignored, as by Redis. */
                parser->state = STATE_START;
                break;
            }
            parser->arguments_expected = count;
            parser->argument_count = 0;
            parser->state = STATE_BULK_PREFIX;
            break;
        }

        case STATE_BULK_PREFIX:
            if (byte != '$') {
                result = fail(parser, "Protocol error: expected '$', got '%c'",
                              byte >= ' ' && byte < 0x7f ? byte : '?');
                break;
            }
            number_reset(parser);
            parser->state = STATE_BULK_LENGTH;
            position++;
            break;

        case STATE_BULK_LENGTH:
            if (byte == '\r' && parser->number_digits > 0) {
                parser->state = STATE_BULK_LF;
            } else if (!number_byte(parser, byte)) {
                result = fail(parser, "Protocol error: invalid bulk length", 0);
                break;
            }
            position++;
            break;

        case STATE_BULK_LF:
            if (byte != '\n' || parser->number_negative) {
                result = fail(parser, "Protocol error: invalid bulk length", 0);
                break;
            }
            position++;
            if (!grow_arguments(parser)) {
                result = fail(parser, "Protocol error: out of memory for arguments", 0);
                break;
            }
            parser->request_bytes += (uint64_t)parser->number_digits + 5;
            if (!begin_bulk(parser, (uint64_t)parser->number)) {
                result = fail(parser, "Protocol error: invalid bulk length", 0);
            }
            break;

        case STATE_BULK_BODY: {
            uint64_t wanted = parser->bulk_length - parser->bulk_received;
            size_t available = length - position;
            size_t taken = wanted < available ? (size_t)wanted : available;
            take_body(parser, data + position, taken);
            position += taken;
            break;
        }

        case STATE_BULK_CR:
            if (byte != '\r') {
                result = fail(parser, "Protocol error: expected CRLF after bulk data", 0);
                break;
            }
            parser->state = STATE_BULK_END_LF;
            position++;
            break;

        case STATE_BULK_END_LF:
            if (byte != '\n') {
                result = fail(parser, "Protocol error: expected CRLF after bulk data", 0);
                break;
            }
            position++;
            parser->argument_count++;
            if ((int64_t)parser->argument_count < parser->arguments_expected) {
                parser->state = STATE_BULK_PREFIX;
            } else if (!publish(parser)) {
                result = fail(parser, "Protocol error: out of memory for arguments", 0);
            } else {
                result = RESP_COMMAND_READY;
            }
            break;

        case STATE_INLINE: {
            const unsigned char *newline = memchr(data + position, '\n', length - position);
            size_t piece = newline ? (size_t)(newline - (data + position)) : length - position;
            if (parser->arena.length + piece > RESP_MAX_INLINE) {
                result = fail(parser, "Protocol error: too big inline request", 0);
                break;
            }
            byte_buffer_append(&parser->arena, data + position, piece);
            parser->request_bytes += piece + (newline != NULL); /* CLIENT LIST's qbuf */
            if (parser->arena.failed) {
                result = fail(parser, "Protocol error: out of memory for arguments", 0);
                break;
            }
            position += piece;
            if (newline == NULL) break;
            position++; /* the '\n' */
            size_t line_length = parser->arena.length;
            if (line_length > 0 && parser->arena.data[line_length - 1] == '\r') line_length--;
            parser->argument_count = 0;
            if (!split_inline(parser, line_length)) {
                result = fail(parser, "Protocol error: unbalanced quotes in request", 0);
                break;
            }
            if (parser->argument_count == 0) {
                byte_buffer_clear(&parser->arena); /* empty lines are ignored */
                parser->state = STATE_START;
                break;
            }
            if (!publish(parser)) {
                result = fail(parser, "Protocol error: out of memory for arguments", 0);
            } else {
                result = RESP_COMMAND_READY;
            }
            break;
        }

        case STATE_READY:
            /* The caller must call resp_parser_next_command() first. */
            *consumed = position;
            return RESP_COMMAND_READY;

        case STATE_ERROR:
        default:
            *consumed = position;
            return RESP_PROTOCOL_ERROR;
        }
    }
    if (parser->state == STATE_ERROR) result = RESP_PROTOCOL_ERROR;
    *consumed = position;
    return result;
}

bool resp_parser_direct_target(struct resp_parser *parser, unsigned char **buffer, size_t *length) {
    if (parser->state != STATE_BULK_BODY || parser->bulk_drained) return false;
    struct resp_argument *argument = &parser->arguments[parser->argument_count];
    if (argument->block == NULL) return false;
    *buffer = argument->block->data + parser->bulk_received;
    *length = (size_t)(parser->bulk_length - parser->bulk_received);
    return true;
}

void resp_parser_direct_advance(struct resp_parser *parser, size_t length) {
    struct resp_argument *argument = &parser->arguments[parser->argument_count];
    parser->bulk_received += length;
    if (parser->bulk_received == parser->bulk_length) {
        argument->block->length = parser->bulk_length;
        parser->state = STATE_BULK_CR;
    }
}

struct value_block *resp_parser_take_block(struct resp_parser *parser, size_t index) {
    if (index >= parser->argument_count) return NULL;
    struct resp_argument *argument = &parser->arguments[index];
    struct value_block *block = argument->block;
    if (block == NULL) return NULL;
    argument->block = NULL;
    argument->taken = true;
    size_t keep =
        argument->length < RESP_ARGUMENT_HEAD ? (size_t)argument->length : RESP_ARGUMENT_HEAD;
    argument->head = malloc(keep > 0 ? keep : 1);
    if (argument->head != NULL) {
        memcpy(argument->head, parser->argv[index], keep);
        argument->head_length = keep;
        parser->argv[index] = argument->head;
    } else {
        argument->head_length = 0;
        parser->argv[index] = (const unsigned char *)"";
    }
    return block;
}

uint64_t resp_parser_readable(const struct resp_parser *parser, size_t index) {
    if (index >= parser->argument_count) return 0;
    const struct resp_argument *argument = &parser->arguments[index];
    return argument->taken ? argument->head_length : argument->length;
}

void resp_parser_next_command(struct resp_parser *parser) {
    if (parser->state == STATE_ERROR) return;
    release_arguments(parser);
    parser->argc = 0;
    if (parser->arena.capacity > ARENA_KEEP_LIMIT) {
        byte_buffer_free(&parser->arena);
    } else {
        byte_buffer_clear(&parser->arena);
    }
    parser->state = STATE_START;
}

void resp_parser_usage(const struct resp_parser *parser, struct resp_parser_usage *usage) {
    bool idle = parser->state == STATE_START || parser->state == STATE_ERROR;
    usage->request = idle ? 0 : parser->request_bytes;
    usage->buffer_free = parser->arena.capacity - parser->arena.length;
    usage->arguments = 0;
    usage->memory =
        parser->arena.capacity +
        parser->argument_capacity *
            (sizeof(struct resp_argument) + sizeof(*parser->argv) + sizeof(*parser->argv_lengths));
    size_t count = parser->state == STATE_READY ? parser->argc : parser->argument_count;
    if (idle) count = 0;
    for (size_t i = 0; i < count && i < parser->argument_capacity; i++) {
        usage->arguments += parser->arguments[i].length;
        if (parser->arguments[i].block != NULL) usage->memory += parser->arguments[i].length;
    }
}

bool resp_parser_in_command(const struct resp_parser *parser) {
    return parser->state != STATE_START && parser->state != STATE_READY &&
           parser->state != STATE_ERROR;
}
