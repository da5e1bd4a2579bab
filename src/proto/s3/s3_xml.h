/* XML for the S3 front end: a writer for responses (escaped text, S3's date format) and
 * a small reader for the request bodies S3 takes (CompleteMultipartUpload, Delete,
 * VersioningConfiguration, CreateBucketConfiguration). The reader is not a general XML
 * parser: it takes elements, text, the five predefined entities and numeric character
 * references, an XML declaration, comments and attributes (ignored); it refuses DTDs,
 * CDATA it cannot decode, and nesting deeper than S3_XML_MAX_DEPTH. */
#ifndef STRATA_PROTO_S3_XML_H
#define STRATA_PROTO_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growing response body. After an allocation failure `failed` is set and further
 * calls do nothing. */
struct s3_xml {
    char *data;
    size_t length;
    size_t capacity;
    bool failed;
};

/* Starts DOCUMENT with the XML declaration. */
void s3_xml_begin(struct s3_xml *document);
/* Frees the document's storage. */
void s3_xml_free(struct s3_xml *document);

/* <NAME> (with xmlns="http://s3.amazonaws.com/doc/2006-03-01/" when WITH_NAMESPACE). */
void s3_xml_open(struct s3_xml *document, const char *name, bool with_namespace);
/* </NAME> */
void s3_xml_close(struct s3_xml *document, const char *name);
/* <NAME>TEXT</NAME>, TEXT (LENGTH bytes) escaped. */
void s3_xml_text(struct s3_xml *document, const char *name, const void *text, size_t length);
/* s3_xml_text() with a NUL-terminated string. */
void s3_xml_string(struct s3_xml *document, const char *name, const char *text);
/* <NAME>NUMBER</NAME> */
void s3_xml_number(struct s3_xml *document, const char *name, uint64_t number);
/* <NAME>true|false</NAME> */
void s3_xml_bool(struct s3_xml *document, const char *name, bool value);
/* <NAME>2026-11-30T03:07:01.000Z</NAME> for Unix epoch milliseconds MS. */
void s3_xml_time(struct s3_xml *document, const char *name, int64_t ms);
/* Appends raw text (already valid XML). */
void s3_xml_raw(struct s3_xml *document, const char *text, size_t length);

/* Formats MS (Unix epoch milliseconds) as ISO 8601 "2026-11-30T03:07:01.000Z" into TEXT
 * (room for 25 bytes). */
void s3_time_iso8601(int64_t ms, char *text);
/* Formats MS as an HTTP date "Mon, 30 Nov 2026 03:07:01 GMT" into TEXT (room for 30). */
void s3_time_http(int64_t ms, char *text);
/* Parses an HTTP date (IMF-fixdate, RFC 850 or asctime form) into Unix epoch
 * milliseconds. Returns false if TEXT is not one. */
bool s3_time_parse_http(const char *text, size_t length, int64_t *ms);

/* ---- reading ----------------------------------------------------------------------- */

#define S3_XML_MAX_DEPTH 8

/* Called for each element that holds text only (no child elements), with its path from
 * the root ("Delete/Object/Key"), its decoded text (TEXT_LENGTH bytes, NUL-terminated)
 * and, when the element closes. Also called with TEXT NULL when an element that has
 * child elements closes ("Delete/Object"), so records can be finished. Returns false to
 * stop the parse (s3_xml_parse() then returns false with *REASON "stopped"). */
typedef bool (*s3_xml_visit)(void *context, const char *path, const char *text, size_t text_length);

/* Parses DATA (LENGTH bytes). Returns true if it is well-formed and every VISIT call
 * returned true; false with *REASON (a static string) otherwise. */
bool s3_xml_parse(const char *data, size_t length, s3_xml_visit visit, void *context,
                  const char **reason);

#endif
