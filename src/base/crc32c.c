/* CRC32C over isa-l (see crc32c.h). isa-l takes an int length, so long buffers are
 * fed in pieces of at most 1 GiB. */
#include "base/crc32c.h"

#include <isa-l/crc.h>

uint32_t crc32c_update(uint32_t running, const void *data, size_t length) {
    const unsigned char *bytes = data;
    while (length > 0) {
        size_t piece = length < (1u << 30) ? length : (1u << 30);
        running = crc32_iscsi((unsigned char *)bytes, (int)piece, running);
        bytes += piece;
        length -= piece;
    }
    return running;
}

/* MATRIX (32 columns of a GF(2) 32x32 matrix) times VECTOR. */
static uint32_t gf2_matrix_times(const uint32_t *matrix, uint32_t vector) {
    uint32_t sum = 0;
    while (vector != 0) {
        if (vector & 1) sum ^= *matrix;
        vector >>= 1;
        matrix++;
    }
    return sum;
}

/* SQUARE = MATRIX x MATRIX. */
static void gf2_matrix_square(uint32_t *square, const uint32_t *matrix) {
    for (int n = 0; n < 32; n++)
        square[n] = gf2_matrix_times(matrix, matrix[n]);
}

uint32_t crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t length2) {
    if (length2 == 0) return crc1;
    uint32_t even[32];    /* the operator for an even power of two zero bits */
    uint32_t odd[32];     /* and for an odd one */
    odd[0] = 0x82F63B78u; /* one zero bit: the reflected Castagnoli polynomial */
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_matrix_square(even, odd); /* two zero bits */
    gf2_matrix_square(odd, even); /* four zero bits */
    /* Apply LENGTH2 zero bytes to CRC1 (the first square gives one zero byte). */
    do {
        gf2_matrix_square(even, odd);
        if (length2 & 1) crc1 = gf2_matrix_times(even, crc1);
        length2 >>= 1;
        if (length2 == 0) break;
        gf2_matrix_square(odd, even);
        if (length2 & 1) crc1 = gf2_matrix_times(odd, crc1);
        length2 >>= 1;
    } while (length2 != 0);
    return crc1 ^ crc2;
}
