/* A streaming parser for Redis protocol requests: multibulk arrays of bulk strings
 * ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") and inline commands ("GET k\r\n").
 *
 * Bytes may arrive split at any point. The parser copies what it needs, so the caller
 * may reuse its read buffer as soon as resp_parser_feed() returns. Small arguments go
 * to an arena; an argument of STORE_BLOCK_THRESHOLD bytes or more goes into a value
 * block of its own, which the caller may take (SET adopts it as the stored value with
 * no copy) and into which the caller may read the socket directly
 * (resp_parser_direct_target()).
 *
 * Limits: a bulk argument longer than max_value is read and thrown away, and the
 * command is flagged (`oversized_length`) so it can be refused with an error while
 * the connection stays usable. A length beyond max_request, a malformed header, or
 * more than max_arguments arguments is a protocol error: the stream can no longer be
 * trusted and the connection should be closed after the error reply. */
#ifndef STRATA_PROTO_RESP_PARSER_H
#define STRATA_PROTO_RESP_PARSER_H

#include "base/byte_buffer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct value_block;

/* Longest inline command line, as in Redis. */
#define RESP_MAX_INLINE (64 * 1024)

struct resp_parser_limits {
    uint64_t max_request;   /* bytes in one command, all arguments together */
    uint64_t max_value;     /* longest argument kept; longer ones are drained */
    uint64_t max_arguments; /* most arguments in one command */
};

enum resp_parse_result {
    RESP_NEED_MORE = 0,  /* all input consumed, no command complete yet */
    RESP_COMMAND_READY,  /* a command is complete: see argc/argv */
    RESP_PROTOCOL_ERROR, /* see error; the parser accepts nothing more */
};

struct resp_argument {
    size_t offset; /* in the arena, when block is NULL */
    uint64_t length;
    struct value_block *block; /* large argument, or NULL */
    /* After resp_parser_take_block(): a copy of the argument's first bytes (at most
     * RESP_ARGUMENT_HEAD; NULL if it could not be allocated), which argv now points to,
     * since the block may be gone once its taker is done (the slow log and MONITOR read
     * the arguments after the command). */
    unsigned char *head;
    size_t head_length;
    bool taken;
};

/* Bytes of a taken argument kept for the slow log and MONITOR. */
#define RESP_ARGUMENT_HEAD 128

struct resp_parser {
    struct resp_parser_limits limits;
    int state;
    int64_t arguments_expected;
    size_t argument_count;
    size_t argument_capacity;
    struct resp_argument *arguments;
    struct byte_buffer arena;
    uint64_t bulk_length;   /* current bulk argument */
    uint64_t bulk_received; /* bytes of it read so far */
    bool bulk_drained;      /* the current argument is being thrown away */
    int64_t number;         /* header number being read */
    int number_digits;
    bool number_negative;
    uint64_t request_bytes; /* bytes of the current command so far */
    char error[128];        /* protocol error text, without "ERR " */

    /* Set for the current command: */
    uint64_t oversized_length; /* length of an argument over max_value that was dropped */
    bool allocation_failed;    /* an argument could not be allocated and was dropped */

    /* Valid between RESP_COMMAND_READY and resp_parser_next_command(): */
    size_t argc;
    const unsigned char **argv;
    uint64_t *argv_lengths;
    size_t argv_capacity; /* entries argv and argv_lengths have room for */
};

/* Prepares a parser. */
void resp_parser_init(struct resp_parser *parser, const struct resp_parser_limits *limits);

/* Frees everything the parser holds, blocks included. */
void resp_parser_free(struct resp_parser *parser);

/* Changes the limits; they apply from the next command header on. */
void resp_parser_set_limits(struct resp_parser *parser, const struct resp_parser_limits *limits);

/* Consumes bytes from DATA (LENGTH of them) up to the end of at most one command and
 * sets *CONSUMED. Returns RESP_COMMAND_READY when a command is complete (the rest of
 * DATA is left for the next call), RESP_NEED_MORE when everything was consumed, or
 * RESP_PROTOCOL_ERROR. */
enum resp_parse_result resp_parser_feed(struct resp_parser *parser, const unsigned char *data,
                                        size_t length, size_t *consumed);

/* When the parser is in the middle of a large argument, sets *BUFFER and *LENGTH to
 * the rest of that argument's block, so the caller can read the socket straight into
 * it, and returns true. Returns false otherwise. */
bool resp_parser_direct_target(struct resp_parser *parser, unsigned char **buffer, size_t *length);

/* Records that LENGTH bytes were written into the direct target. */
void resp_parser_direct_advance(struct resp_parser *parser, size_t length);

/* Takes the value block holding argument INDEX of the ready command (NULL if that
 * argument is small). The caller then owns the block's reference; argv[INDEX] then
 * points to a copy of the argument's first RESP_ARGUMENT_HEAD bytes (argv_lengths keeps
 * the whole length: see resp_parser_readable()). */
struct value_block *resp_parser_take_block(struct resp_parser *parser, size_t index);

/* How many bytes of argv[INDEX] of the ready command can be read: its length, or for a
 * taken argument the bytes of its head. */
uint64_t resp_parser_readable(const struct resp_parser *parser, size_t index);

/* Forgets the ready command, releasing blocks nobody took, and prepares for the next. */
void resp_parser_next_command(struct resp_parser *parser);

/* What a parser holds, for CLIENT LIST. */
struct resp_parser_usage {
    uint64_t request;     /* protocol bytes of the command being read or run (0 between commands) */
    uint64_t buffer_free; /* room left in the argument buffer (qbuf-free) */
    uint64_t arguments;   /* bytes of the arguments read so far (argv-mem) */
    uint64_t memory;      /* bytes allocated: buffer, argument tables, large arguments */
};

/* Fills *USAGE from PARSER. On the parser's own thread. */
void resp_parser_usage(const struct resp_parser *parser, struct resp_parser_usage *usage);

/* True while a command has been started but not completed. */
bool resp_parser_in_command(const struct resp_parser *parser);

#endif
