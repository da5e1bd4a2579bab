/* Base64 with the standard alphabet and padding (RFC 4648 section 4): S3's Content-MD5,
 * checksums and continuation tokens, and HTTP Basic credentials. */
#ifndef STRATA_BASE_BASE64_H
#define STRATA_BASE_BASE64_H

#include <stddef.h>

/* Base64 of LENGTH bytes at DATA into TEXT (room for 4 * ((LENGTH + 2) / 3) + 1),
 * NUL-terminated. */
void base64_encode(const unsigned char *data, size_t length, char *text);

/* Decodes base64 TEXT (TEXT_LENGTH characters) into OUTPUT (room for MAXIMUM bytes).
 * Returns the bytes decoded, or -1 if TEXT is not valid padded base64 or too long. */
long base64_decode(const char *text, size_t text_length, unsigned char *output, size_t maximum);

#endif
