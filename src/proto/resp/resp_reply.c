/* Reply writers: RESP2 and RESP3 encodings of each reply type. */
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends a type byte, a decimal number and CRLF ("$5\r\n"). */
static void header(struct resp_session *session, char type, int64_t number) {
    unsigned char *space = output_queue_reserve(session->output, 24);
    if (space == NULL) return;
    space[0] = (unsigned char)type;
    size_t length = 1 + format_int64((char *)space + 1, number);
    space[length++] = '\r';
    space[length++] = '\n';
    output_queue_commit(session->output, length);
}

static void append(struct resp_session *session, const void *data, size_t length) {
    output_queue_append(session->output, data, length);
}

void reply_simple(struct resp_session *session, const char *text) {
    size_t length = strlen(text);
    unsigned char *space = output_queue_reserve(session->output, length + 3);
    if (space == NULL) return;
    space[0] = '+';
    memcpy(space + 1, text, length);
    space[length + 1] = '\r';
    space[length + 2] = '\n';
    output_queue_commit(session->output, length + 3);
}

void reply_ok(struct resp_session *session) {
    append(session, "+OK\r\n", 5);
}

void reply_error(struct resp_session *session, const char *text) {
    session->error_replies++;
    metric_add(RESP_METRIC(resp_error_replies), 1);
    resp_stats_error(text);
    /* An error is one line: CR and LF from echoed arguments become spaces. */
    size_t length = strlen(text);
    unsigned char *space = output_queue_reserve(session->output, length + 3);
    if (space == NULL) return;
    space[0] = '-';
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        space[1 + i] = (unsigned char)(c == '\r' || c == '\n' ? ' ' : c);
    }
    space[length + 1] = '\r';
    space[length + 2] = '\n';
    output_queue_commit(session->output, length + 3);
}

void reply_errorf(struct resp_session *session, const char *format, ...) {
    char text[1024];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(text, sizeof(text), format, arguments);
    va_end(arguments);
    reply_error(session, text);
}

void reply_integer(struct resp_session *session, int64_t value) {
    header(session, ':', value);
}

void reply_bulk(struct resp_session *session, const void *data, size_t length) {
    unsigned char *space = output_queue_reserve(session->output, length + 26);
    if (space == NULL) return;
    space[0] = '$';
    size_t position = 1 + format_uint64((char *)space + 1, length);
    space[position++] = '\r';
    space[position++] = '\n';
    if (length > 0) memcpy(space + position, data, length);
    position += length;
    space[position++] = '\r';
    space[position++] = '\n';
    output_queue_commit(session->output, position);
}

void reply_bulk_text(struct resp_session *session, const char *text) {
    reply_bulk(session, text, strlen(text));
}

void reply_bulk_integer(struct resp_session *session, int64_t value) {
    char text[24];
    size_t length = format_int64(text, value);
    reply_bulk(session, text, length);
}

void reply_null(struct resp_session *session) {
    if (session->protocol == 3) {
        append(session, "_\r\n", 3);
    } else {
        append(session, "$-1\r\n", 5);
    }
}

void reply_null_array(struct resp_session *session) {
    if (session->protocol == 3) {
        append(session, "_\r\n", 3);
    } else {
        append(session, "*-1\r\n", 5);
    }
}

void reply_array(struct resp_session *session, size_t count) {
    header(session, '*', (int64_t)count);
}

void reply_set(struct resp_session *session, size_t count) {
    header(session, session->protocol == 3 ? '~' : '*', (int64_t)count);
}

void reply_map(struct resp_session *session, size_t pairs) {
    if (session->protocol == 3) {
        header(session, '%', (int64_t)pairs);
    } else {
        header(session, '*', (int64_t)pairs * 2);
    }
}

void reply_verbatim(struct resp_session *session, const void *text, size_t length) {
    if (session->protocol != 3) {
        reply_bulk(session, text, length);
        return;
    }
    header(session, '=', (int64_t)length + 4);
    append(session, "txt:", 4);
    append(session, text, length);
    append(session, "\r\n", 2);
}

void reply_item(struct resp_session *session, struct item *item) {
    if (item_type(item) != STORE_TYPE_STRING) {
        /* A value that became a hash between a command's check and its read: its
         * encoding is never sent as a string. */
        item_release(item);
        reply_error(session, RESP_WRONGTYPE);
        return;
    }
    uint64_t length = item_value_length(item);
    if (length < RESP_REFERENCE_THRESHOLD) {
        reply_bulk(session, item_value(item), (size_t)length);
        item_release(item);
        return;
    }
    header(session, '$', (int64_t)length);
    output_queue_append_reference(session->output, item_value(item), (size_t)length,
                                  item_release_callback, item);
    append(session, "\r\n", 2);
}

void reply_store_error(struct resp_session *session, enum store_status status) {
    char budget[32];
    switch (status) {
    case STORE_NO_MEMORY:
        reply_error(session, "OOM command not allowed when used memory > 'maxmemory'.");
        return;
    case STORE_TOO_LARGE_FOR_BUDGET:
        format_size(
            budget, sizeof(budget),
            (uint64_t)options_number(session->server->environment.options, ENGINE_OPTION(memory)));
        reply_errorf(session,
                     "OOM command not allowed: the value is larger than the whole memory "
                     "budget (memory %s)",
                     budget);
        return;
    case STORE_KEY_TOO_LARGE:
        reply_errorf(session, "ERR key is larger than %d bytes", STORE_MAX_KEY_LENGTH);
        return;
    case STORE_VALUE_TOO_LARGE:
        reply_error(session, "ERR string exceeds maximum allowed size (max-value)");
        return;
    case STORE_ALLOCATION_FAILED:
        reply_error(session, "OOM out of memory: the system refused an allocation");
        return;
    case STORE_NOT_FOUND:
        reply_error(session, "ERR no such key");
        return;
    case STORE_WRONG_TYPE:
        reply_error(session, RESP_WRONGTYPE);
        return;
    case STORE_FLASH_BUSY:
        reply_error(session, "BUSY flash writer behind: the write waited pace-timeout for room "
                             "in DRAM; try again");
        return;
    case STORE_IO_ERROR:
        reply_error(session, "IOERR flash I/O error; see the server log");
        return;
    default:
        reply_errorf(session, "ERR %s", store_status_text(status));
        return;
    }
}

void reply_condition(struct resp_session *session, enum store_status status) {
    if (status == STORE_OK) {
        reply_integer(session, 1);
    } else if (status == STORE_CONDITION_FAILED) {
        reply_integer(session, 0);
    } else {
        reply_store_error(session, status);
    }
}

void reply_wrong_arity(struct resp_session *session, const char *name) {
    reply_errorf(session, "ERR wrong number of arguments for '%s' command", name);
}

void reply_syntax_error(struct resp_session *session) {
    reply_error(session, "ERR syntax error");
}

bool argument_is(const struct resp_request *request, size_t index, const char *word) {
    size_t length = strlen(word);
    if (index >= request->argc || request->lengths[index] != length) return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char a = request->argv[index][i];
        unsigned char b = (unsigned char)word[i];
        if (a >= 'A' && a <= 'Z') a = (unsigned char)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (unsigned char)(b + 32);
        if (a != b) return false;
    }
    return true;
}

bool argument_int64(struct resp_session *session, const struct resp_request *request, size_t index,
                    int64_t *value) {
    if (!parse_int64(request->argv[index], (size_t)request->lengths[index], value)) {
        reply_error(session, "ERR value is not an integer or out of range");
        return false;
    }
    return true;
}

void argument_text(const struct resp_request *request, size_t index, char *output,
                   size_t output_size) {
    size_t length = (size_t)request->lengths[index];
    if (length >= output_size) length = output_size - 1;
    memcpy(output, request->argv[index], length);
    output[length] = '\0';
}

void resp_reply_discard_begin(struct resp_session *session) {
    if (session->replying_to != NULL) return;
    if (session->discarded == NULL) {
        session->discarded = malloc(sizeof(*session->discarded));
        if (session->discarded == NULL) return; /* the reply is sent: nothing is lost */
        output_queue_init(session->discarded);
    }
    session->replying_to = session->output;
    session->output = session->discarded;
}

void resp_reply_discard_end(struct resp_session *session) {
    if (session->replying_to == NULL) return;
    output_queue_clear(session->discarded);
    session->output = session->replying_to;
    session->replying_to = NULL;
}
