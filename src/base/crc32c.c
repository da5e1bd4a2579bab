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
