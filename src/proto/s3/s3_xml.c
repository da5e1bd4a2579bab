/* XML for the S3 front end (s3_xml.h): the response writer, S3's time formats and the
 * small reader for request bodies. */
#include "proto/s3/s3_xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- writing -------------------------------------------------------------------------- */

static void append(struct s3_xml *document, const void *data, size_t length) {
    if (document->failed || length == 0) return;
    if (document->capacity - document->length < length) {
        size_t capacity = document->capacity < 256 ? 256 : document->capacity;
        while (capacity - document->length < length) {
            if (capacity > SIZE_MAX / 2) {
                document->failed = true;
                return;
            }
            capacity *= 2;
        }
        char *grown = realloc(document->data, capacity);
        if (grown == NULL) {
            document->failed = true;
            return;
        }
        document->data = grown;
        document->capacity = capacity;
    }
    memcpy(document->data + document->length, data, length);
    document->length += length;
}

static void append_text(struct s3_xml *document, const char *text) {
    append(document, text, strlen(text));
}

void s3_xml_begin(struct s3_xml *document) {
    *document = (struct s3_xml){0};
    append_text(document, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
}

void s3_xml_free(struct s3_xml *document) {
    free(document->data);
    *document = (struct s3_xml){0};
}

void s3_xml_open(struct s3_xml *document, const char *name, bool with_namespace) {
    append(document, "<", 1);
    append_text(document, name);
    if (with_namespace) append_text(document, " xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"");
    append(document, ">", 1);
}

void s3_xml_close(struct s3_xml *document, const char *name) {
    append(document, "</", 2);
    append_text(document, name);
    append(document, ">", 1);
}

/* Appends TEXT escaped: the five markup characters as their entities, and every C0
 * control byte as a character reference "&#xN;". For tab, LF and CR that is what keeps
 * them intact through XML's whitespace and line-end handling; the other C0 bytes are
 * not characters XML 1.0 allows at all, but S3 keys may hold them and S3 itself writes
 * them this way (clients that need strict XML ask for encoding-type=url). */
static void append_escaped(struct s3_xml *document, const unsigned char *text, size_t length) {
    size_t run = 0; /* start of the bytes not yet written */
    for (size_t i = 0; i < length; i++) {
        const char *entity = NULL;
        char reference[8];
        switch (text[i]) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '"':
            entity = "&quot;";
            break;
        case '\'':
            entity = "&apos;";
            break;
        default:
            if (text[i] < 0x20) {
                snprintf(reference, sizeof(reference), "&#x%X;", text[i]);
                entity = reference;
            }
        }
        if (entity == NULL) continue;
        append(document, text + run, i - run);
        append_text(document, entity);
        run = i + 1;
    }
    append(document, text + run, length - run);
}

void s3_xml_text(struct s3_xml *document, const char *name, const void *text, size_t length) {
    s3_xml_open(document, name, false);
    append_escaped(document, text, length);
    s3_xml_close(document, name);
}

void s3_xml_string(struct s3_xml *document, const char *name, const char *text) {
    s3_xml_text(document, name, text, strlen(text));
}

void s3_xml_number(struct s3_xml *document, const char *name, uint64_t number) {
    char digits[24];
    int length = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)number);
    s3_xml_text(document, name, digits, (size_t)length);
}

void s3_xml_bool(struct s3_xml *document, const char *name, bool value) {
    s3_xml_string(document, name, value ? "true" : "false");
}

void s3_xml_time(struct s3_xml *document, const char *name, int64_t ms) {
    char text[25];
    s3_time_iso8601(ms, text);
    s3_xml_string(document, name, text);
}

void s3_xml_raw(struct s3_xml *document, const char *text, size_t length) {
    append(document, text, length);
}

/* ---- times ---------------------------------------------------------------------------- */

static const char *const DAY_NAMES[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const LONG_DAY_NAMES[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                              "Thursday", "Friday", "Saturday"};
static const char *const MONTH_NAMES[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Splits MS into UTC calendar fields and the milliseconds within the second (flooring,
 * so times before 1970 work too). */
static void split_time(int64_t ms, struct tm *parts, int *millis) {
    int64_t seconds = ms / 1000;
    int64_t rest = ms % 1000;
    if (rest < 0) {
        rest += 1000;
        seconds--;
    }
    time_t t = (time_t)seconds;
    if (gmtime_r(&t, parts) == NULL) memset(parts, 0, sizeof(*parts));
    *millis = (int)rest;
}

void s3_time_iso8601(int64_t ms, char *text) {
    struct tm parts;
    int millis;
    split_time(ms, &parts, &millis);
    int year = parts.tm_year + 1900;
    if (year < 0 || year > 9999) year = year < 0 ? 0 : 9999; /* keep the 24-character form */
    char formatted[80]; /* what the compiler cannot prove fits, then the 24 that do */
    snprintf(formatted, sizeof(formatted), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year,
             parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, millis);
    memcpy(text, formatted, 24);
    text[24] = '\0';
}

void s3_time_http(int64_t ms, char *text) {
    struct tm parts;
    int millis;
    split_time(ms, &parts, &millis);
    int year = parts.tm_year + 1900;
    if (year < 0 || year > 9999) year = year < 0 ? 0 : 9999;
    char formatted[80];
    snprintf(formatted, sizeof(formatted), "%s, %02d %s %04d %02d:%02d:%02d GMT",
             DAY_NAMES[parts.tm_wday % 7], parts.tm_mday, MONTH_NAMES[parts.tm_mon % 12], year,
             parts.tm_hour, parts.tm_min, parts.tm_sec);
    memcpy(text, formatted, 29);
    text[29] = '\0';
}

/* A cursor over the text of an HTTP date. */
struct date_cursor {
    const char *text;
    size_t length;
    size_t at;
};

static bool take_literal(struct date_cursor *cursor, const char *literal) {
    size_t length = strlen(literal);
    if (cursor->length - cursor->at < length || memcmp(cursor->text + cursor->at, literal, length))
        return false;
    cursor->at += length;
    return true;
}

/* Reads exactly DIGITS decimal digits into *VALUE. */
static bool take_number(struct date_cursor *cursor, int digits, int *value) {
    *value = 0;
    int taken = 0;
    while (taken < digits && cursor->at < cursor->length && cursor->text[cursor->at] >= '0' &&
           cursor->text[cursor->at] <= '9') {
        *value = *value * 10 + (cursor->text[cursor->at++] - '0');
        taken++;
    }
    return taken == digits;
}

static bool take_name(struct date_cursor *cursor, const char *const *names, int count, int *index) {
    for (int i = 0; i < count; i++)
        if (take_literal(cursor, names[i])) {
            *index = i;
            return true;
        }
    return false;
}

static bool take_clock(struct date_cursor *cursor, int *hour, int *minute, int *second) {
    return take_number(cursor, 2, hour) && take_literal(cursor, ":") &&
           take_number(cursor, 2, minute) && take_literal(cursor, ":") &&
           take_number(cursor, 2, second);
}

/* Converts validated calendar fields to Unix epoch milliseconds; false if the day does
 * not exist (the 30th of February) or a field is out of range. */
static bool fields_to_ms(int year, int month, int day, int hour, int minute, int second,
                         int64_t *ms) {
    if (month < 0 || month > 11 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return false;
    struct tm parts = {.tm_year = year - 1900,
                       .tm_mon = month,
                       .tm_mday = day,
                       .tm_hour = hour,
                       .tm_min = minute,
                       .tm_sec = second > 59 ? 59 : second}; /* a leap second reads as :59 */
    time_t seconds = timegm(&parts);
    struct tm check;
    if (gmtime_r(&seconds, &check) == NULL || check.tm_mday != day || check.tm_mon != month)
        return false;
    *ms = (int64_t)seconds * 1000;
    return true;
}

bool s3_time_parse_http(const char *text, size_t length, int64_t *ms) {
    struct date_cursor cursor = {text, length, 0};
    int weekday, day, month, year, hour, minute, second;
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (take_name(&cursor, DAY_NAMES, 7, &weekday) && take_literal(&cursor, ", ")) {
        if (take_number(&cursor, 2, &day) && take_literal(&cursor, " ") &&
            take_name(&cursor, MONTH_NAMES, 12, &month) && take_literal(&cursor, " ") &&
            take_number(&cursor, 4, &year) && take_literal(&cursor, " ") &&
            take_clock(&cursor, &hour, &minute, &second) && take_literal(&cursor, " GMT") &&
            cursor.at == length)
            return fields_to_ms(year, month, day, hour, minute, second, ms);
        return false;
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    cursor.at = 0;
    if (take_name(&cursor, LONG_DAY_NAMES, 7, &weekday) && take_literal(&cursor, ", ")) {
        if (!(take_number(&cursor, 2, &day) && take_literal(&cursor, "-") &&
              take_name(&cursor, MONTH_NAMES, 12, &month) && take_literal(&cursor, "-") &&
              take_number(&cursor, 2, &year) && take_literal(&cursor, " ") &&
              take_clock(&cursor, &hour, &minute, &second) && take_literal(&cursor, " GMT") &&
              cursor.at == length))
            return false;
        /* RFC 9110: a two-digit year more than 50 years ahead is in the past century. */
        time_t now = time(NULL);
        struct tm today;
        int this_year = gmtime_r(&now, &today) != NULL ? today.tm_year + 1900 : 2000;
        int full_year = this_year / 100 * 100 + year;
        if (full_year > this_year + 50) full_year -= 100;
        return fields_to_ms(full_year, month, day, hour, minute, second, ms);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    cursor.at = 0;
    if (take_name(&cursor, DAY_NAMES, 7, &weekday) && take_literal(&cursor, " ") &&
        take_name(&cursor, MONTH_NAMES, 12, &month) && take_literal(&cursor, " ")) {
        /* The day is space-padded: "Nov  6", "Nov 16". */
        bool padded = take_literal(&cursor, " ");
        if (take_number(&cursor, padded ? 1 : 2, &day) && take_literal(&cursor, " ") &&
            take_clock(&cursor, &hour, &minute, &second) && take_literal(&cursor, " ") &&
            take_number(&cursor, 4, &year) && cursor.at == length)
            return fields_to_ms(year, month, day, hour, minute, second, ms);
    }
    return false;
}

/* ---- reading -------------------------------------------------------------------------- */

/* A growing byte string for the reader (path and text). */
struct growing {
    char *data;
    size_t length;
    size_t capacity;
};

static bool grow_append(struct growing *string, const void *data, size_t length) {
    if (string->capacity - string->length <= length) {
        size_t capacity = string->capacity < 64 ? 64 : string->capacity;
        while (capacity - string->length <= length)
            capacity *= 2;
        char *grown = realloc(string->data, capacity);
        if (grown == NULL) return false;
        string->data = grown;
        string->capacity = capacity;
    }
    memcpy(string->data + string->length, data, length);
    string->length += length;
    string->data[string->length] = '\0';
    return true;
}

struct xml_reader {
    const char *data;
    size_t length;
    size_t at;
    s3_xml_visit visit;
    void *context;
    const char **reason;
    struct growing path;                     /* "Root/Child/..." of the open elements */
    size_t path_marks[S3_XML_MAX_DEPTH + 1]; /* path length before each open element */
    bool has_children[S3_XML_MAX_DEPTH + 1]; /* per open element */
    struct growing text;                     /* decoded text of the innermost element */
    int depth;
    bool root_seen;
};

static bool reader_fail(struct xml_reader *reader, const char *reason) {
    *reader->reason = reason;
    return false;
}

static bool starts_with(const struct xml_reader *reader, const char *literal) {
    size_t length = strlen(literal);
    return reader->length - reader->at >= length &&
           memcmp(reader->data + reader->at, literal, length) == 0;
}

static bool is_xml_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':' || c >= 0x80;
}

/* Skips up to and past TERMINATOR; false if the input ends first. */
static bool skip_past(struct xml_reader *reader, const char *terminator) {
    size_t length = strlen(terminator);
    while (reader->length - reader->at >= length) {
        if (memcmp(reader->data + reader->at, terminator, length) == 0) {
            reader->at += length;
            return true;
        }
        reader->at++;
    }
    return false;
}

/* Appends code point CODE as UTF-8; false if it is not a character (0, a surrogate,
 * beyond U+10FFFF). Control characters are taken: S3 keys may hold them. */
static bool append_utf8(struct growing *text, unsigned long code) {
    unsigned char bytes[4];
    size_t length;
    if (code == 0 || (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) return false;
    if (code < 0x80) {
        bytes[0] = (unsigned char)code;
        length = 1;
    } else if (code < 0x800) {
        bytes[0] = (unsigned char)(0xC0 | code >> 6);
        bytes[1] = (unsigned char)(0x80 | (code & 0x3F));
        length = 2;
    } else if (code < 0x10000) {
        bytes[0] = (unsigned char)(0xE0 | code >> 12);
        bytes[1] = (unsigned char)(0x80 | (code >> 6 & 0x3F));
        bytes[2] = (unsigned char)(0x80 | (code & 0x3F));
        length = 3;
    } else {
        bytes[0] = (unsigned char)(0xF0 | code >> 18);
        bytes[1] = (unsigned char)(0x80 | (code >> 12 & 0x3F));
        bytes[2] = (unsigned char)(0x80 | (code >> 6 & 0x3F));
        bytes[3] = (unsigned char)(0x80 | (code & 0x3F));
        length = 4;
    }
    return grow_append(text, bytes, length);
}

/* Decodes the reference at the reader's '&' into the text. */
static bool read_reference(struct xml_reader *reader) {
    static const struct {
        const char *name;
        char character;
    } ENTITIES[] = {
        {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
    for (size_t i = 0; i < sizeof(ENTITIES) / sizeof(ENTITIES[0]); i++) {
        if (!starts_with(reader, ENTITIES[i].name)) continue;
        reader->at += strlen(ENTITIES[i].name);
        return grow_append(&reader->text, &ENTITIES[i].character, 1) ||
               reader_fail(reader, "out of memory");
    }
    if (!starts_with(reader, "&#")) return reader_fail(reader, "unknown entity");
    reader->at += 2;
    bool hexadecimal = reader->at < reader->length && reader->data[reader->at] == 'x';
    if (hexadecimal) reader->at++;
    unsigned long code = 0;
    size_t digits = 0;
    while (reader->at < reader->length && reader->data[reader->at] != ';') {
        char c = reader->data[reader->at++];
        int value = c >= '0' && c <= '9'                  ? c - '0'
                    : hexadecimal && c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : hexadecimal && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                          : -1;
        if (value < 0 || ++digits > 8) return reader_fail(reader, "bad character reference");
        code = code * (hexadecimal ? 16 : 10) + (unsigned long)value;
    }
    if (reader->at == reader->length || digits == 0)
        return reader_fail(reader, "bad character reference");
    reader->at++; /* ';' */
    if (!append_utf8(&reader->text, code)) return reader_fail(reader, "bad character reference");
    return true;
}

/* Reads character data up to the next '<' into the text (entities decoded, line ends
 * normalized to LF as XML requires). */
static bool read_text(struct xml_reader *reader) {
    while (reader->at < reader->length && reader->data[reader->at] != '<') {
        char c = reader->data[reader->at];
        if (c == '&') {
            if (!read_reference(reader)) return false;
            continue;
        }
        size_t run = reader->at;
        while (reader->at < reader->length && reader->data[reader->at] != '<' &&
               reader->data[reader->at] != '&' && reader->data[reader->at] != '\r')
            reader->at++;
        if (!grow_append(&reader->text, reader->data + run, reader->at - run))
            return reader_fail(reader, "out of memory");
        if (reader->at < reader->length && reader->data[reader->at] == '\r') {
            reader->at++;
            if (reader->at < reader->length && reader->data[reader->at] == '\n') reader->at++;
            if (!grow_append(&reader->text, "\n", 1)) return reader_fail(reader, "out of memory");
        }
    }
    return true;
}

static bool text_is_blank(const struct growing *text) {
    for (size_t i = 0; i < text->length; i++)
        if (!is_xml_space(text->data[i])) return false;
    return true;
}

/* Reads a name at the reader; false if there is none. */
static bool read_name(struct xml_reader *reader, const char **name, size_t *length) {
    size_t start = reader->at;
    while (reader->at < reader->length && is_name_char((unsigned char)reader->data[reader->at]))
        reader->at++;
    *name = reader->data + start;
    *length = reader->at - start;
    return *length > 0;
}

static void skip_spaces(struct xml_reader *reader) {
    while (reader->at < reader->length && is_xml_space(reader->data[reader->at]))
        reader->at++;
}

/* Skips the attributes of a start tag (name="value" or name='value'), leaving the reader
 * at its '>' or "/>". */
static bool skip_attributes(struct xml_reader *reader) {
    for (;;) {
        size_t before = reader->at;
        skip_spaces(reader);
        if (reader->at == reader->length) return reader_fail(reader, "truncated");
        char c = reader->data[reader->at];
        if (c == '>' || c == '/') return true;
        const char *name;
        size_t name_length;
        if (reader->at == before || !read_name(reader, &name, &name_length))
            return reader_fail(reader, "bad attribute");
        skip_spaces(reader);
        if (!starts_with(reader, "=")) return reader_fail(reader, "bad attribute");
        reader->at++;
        skip_spaces(reader);
        if (reader->at == reader->length) return reader_fail(reader, "truncated");
        char quote = reader->data[reader->at];
        if (quote != '"' && quote != '\'') return reader_fail(reader, "bad attribute");
        reader->at++;
        const char *end = memchr(reader->data + reader->at, quote, reader->length - reader->at);
        if (end == NULL) return reader_fail(reader, "truncated");
        if (memchr(reader->data + reader->at, '<', (size_t)(end - (reader->data + reader->at))))
            return reader_fail(reader, "bad attribute");
        reader->at = (size_t)(end - reader->data) + 1;
    }
}

/* Reports the innermost element closing and pops it. */
static bool close_element(struct xml_reader *reader) {
    int level = reader->depth - 1;
    bool ok;
    if (reader->has_children[level]) {
        if (!text_is_blank(&reader->text)) return reader_fail(reader, "mixed content");
        ok = reader->visit(reader->context, reader->path.data, NULL, 0);
    } else {
        if (!grow_append(&reader->text, "", 0)) return reader_fail(reader, "out of memory");
        ok = reader->visit(reader->context, reader->path.data, reader->text.data,
                           reader->text.length);
    }
    if (!ok) return reader_fail(reader, "stopped");
    reader->path.length = reader->path_marks[level];
    reader->path.data[reader->path.length] = '\0';
    reader->text.length = 0;
    reader->depth--;
    return true;
}

/* Reads a start tag at '<' + name. */
static bool read_start_tag(struct xml_reader *reader) {
    reader->at++; /* '<' */
    const char *name;
    size_t name_length;
    if (!read_name(reader, &name, &name_length)) return reader_fail(reader, "bad tag");
    if (reader->depth == 0 && reader->root_seen)
        return reader_fail(reader, "more than one root element");
    if (reader->depth == S3_XML_MAX_DEPTH) return reader_fail(reader, "too deep");
    if (reader->depth > 0) {
        if (!text_is_blank(&reader->text)) return reader_fail(reader, "mixed content");
        reader->has_children[reader->depth - 1] = true;
    }
    reader->text.length = 0;
    reader->path_marks[reader->depth] = reader->path.length;
    reader->has_children[reader->depth] = false;
    if ((reader->depth > 0 && !grow_append(&reader->path, "/", 1)) ||
        !grow_append(&reader->path, name, name_length))
        return reader_fail(reader, "out of memory");
    reader->depth++;
    reader->root_seen = true;
    if (!skip_attributes(reader)) return false;
    if (starts_with(reader, "/>")) {
        reader->at += 2;
        return close_element(reader);
    }
    if (!starts_with(reader, ">")) return reader_fail(reader, "bad tag");
    reader->at++;
    return true;
}

/* Reads an end tag at "</". */
static bool read_end_tag(struct xml_reader *reader) {
    reader->at += 2;
    const char *name;
    size_t name_length;
    if (!read_name(reader, &name, &name_length)) return reader_fail(reader, "bad tag");
    skip_spaces(reader);
    if (!starts_with(reader, ">")) return reader_fail(reader, "bad tag");
    reader->at++;
    if (reader->depth == 0) return reader_fail(reader, "mismatched tag");
    size_t open_start = reader->path_marks[reader->depth - 1] + (reader->depth > 1 ? 1 : 0);
    if (reader->path.length - open_start != name_length ||
        memcmp(reader->path.data + open_start, name, name_length) != 0)
        return reader_fail(reader, "mismatched tag");
    return close_element(reader);
}

/* Reads "<![CDATA[...]]>" into the text as it is. */
static bool read_cdata(struct xml_reader *reader) {
    if (reader->depth == 0) return reader_fail(reader, "text outside the root element");
    reader->at += strlen("<![CDATA[");
    size_t start = reader->at;
    if (!skip_past(reader, "]]>")) return reader_fail(reader, "truncated");
    if (!grow_append(&reader->text, reader->data + start, reader->at - 3 - start))
        return reader_fail(reader, "out of memory");
    return true;
}

bool s3_xml_parse(const char *data, size_t length, s3_xml_visit visit, void *context,
                  const char **reason) {
    const char *ignored;
    struct xml_reader reader = {.data = data,
                                .length = length,
                                .visit = visit,
                                .context = context,
                                .reason = reason != NULL ? reason : &ignored};
    bool ok = true;
    if (starts_with(&reader, "\xEF\xBB\xBF")) reader.at = 3; /* a UTF-8 byte order mark */
    if (!grow_append(&reader.path, "", 0) || !grow_append(&reader.text, "", 0))
        ok = reader_fail(&reader, "out of memory");
    bool first = true;
    while (ok && reader.at < reader.length) {
        if (reader.data[reader.at] != '<') {
            if (!read_text(&reader)) {
                ok = false;
            } else if (reader.depth == 0 && !text_is_blank(&reader.text)) {
                ok = reader_fail(&reader, "text outside the root element");
            }
            if (reader.depth == 0) reader.text.length = 0;
        } else if (starts_with(&reader, "<?xml") && first) {
            if (!skip_past(&reader, "?>")) ok = reader_fail(&reader, "truncated");
        } else if (starts_with(&reader, "<?")) {
            if (!skip_past(&reader, "?>")) ok = reader_fail(&reader, "truncated");
        } else if (starts_with(&reader, "<!--")) {
            reader.at += 4;
            if (!skip_past(&reader, "-->")) ok = reader_fail(&reader, "truncated");
        } else if (starts_with(&reader, "<![CDATA[")) {
            ok = read_cdata(&reader);
        } else if (starts_with(&reader, "<!DOCTYPE") || starts_with(&reader, "<!ENTITY")) {
            ok = reader_fail(&reader, "DTDs and entity declarations are not allowed");
        } else if (starts_with(&reader, "<!")) {
            ok = reader_fail(&reader, "unsupported markup declaration");
        } else if (starts_with(&reader, "</")) {
            ok = read_end_tag(&reader);
        } else {
            ok = read_start_tag(&reader);
        }
        first = false;
    }
    if (ok && reader.depth > 0) ok = reader_fail(&reader, "truncated");
    if (ok && !reader.root_seen) ok = reader_fail(&reader, "no root element");
    free(reader.path.data);
    free(reader.text.data);
    return ok;
}
