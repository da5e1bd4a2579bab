/* CRC32C (Castagnoli), the checksum of every record strata writes to flash, computed
 * with isa-l's hardware-accelerated routine (SSE4.2 crc32 and PCLMULQDQ folding).
 *
 * crc32c(data, length) is the standard CRC32C ("123456789" -> 0xE3069283). To checksum
 * pieces, start from CRC32C_START, feed each piece to crc32c_update() and finish with
 * crc32c_finish(). */
#ifndef STRATA_BASE_CRC32C_H
#define STRATA_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#define CRC32C_START 0xFFFFFFFFu

/* Continues a running CRC (from CRC32C_START or an earlier update) over LENGTH bytes. */
uint32_t crc32c_update(uint32_t running, const void *data, size_t length);

/* The final CRC of a running one. */
static inline uint32_t crc32c_finish(uint32_t running) {
    return running ^ 0xFFFFFFFFu;
}

/* The CRC32C of LENGTH bytes at DATA. */
static inline uint32_t crc32c(const void *data, size_t length) {
    return crc32c_finish(crc32c_update(CRC32C_START, data, length));
}

/* The CRC32C of A followed by B, from CRC1 = crc32c(A), CRC2 = crc32c(B) and B's
 * length LENGTH2 (zlib's crc32_combine() for the Castagnoli polynomial: CRC1 is carried
 * through LENGTH2 zero bytes by squaring the GF(2) shift-by-one-bit matrix, O(log
 * LENGTH2)). */
uint32_t crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t length2);

#endif
