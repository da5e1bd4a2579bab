/* memcpy_probe: the machine's memory copy bandwidth, the ceiling that `make bench`
 * holds the shared-memory GET path against.
 *
 * It copies PIECE-byte pieces (default 2 MiB, the size of the shared-memory GET target)
 * from a SOURCE-byte buffer (default 1 GiB, so reads come from DRAM as a server's
 * values do) into a 32 MiB destination reused round after round (as a client's shared
 * memory region is), for about SECONDS seconds, and prints one JSON object:
 * {"piece": bytes, "mb_per_s": copied bytes per second / 10^6}.
 * Usage: memcpy_probe [PIECE_BYTES [SECONDS [SOURCE_BYTES]]] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    size_t piece = argc > 1 ? strtoull(argv[1], NULL, 10) : 2u << 20;
    double seconds = argc > 2 ? strtod(argv[2], NULL) : 2.0;
    size_t source_size = argc > 3 ? strtoull(argv[3], NULL, 10) : 1u << 30;
    size_t destination_size = 32u << 20;
    if (piece == 0 || piece > destination_size || piece > source_size) {
        fprintf(stderr, "usage: memcpy_probe [PIECE_BYTES<=32MiB [SECONDS [SOURCE_BYTES]]]\n");
        return 2;
    }
    unsigned char *source = malloc(source_size);
    unsigned char *destination = malloc(destination_size);
    if (source == NULL || destination == NULL) return 2;
    memset(source, 0x5a, source_size); /* fault every page in before timing */
    memset(destination, 0, destination_size);
    size_t source_pieces = source_size / piece, destination_pieces = destination_size / piece;
    uint64_t copied = 0, round = 0;
    double started = now_seconds(), elapsed = 0;
    do {
        /* a batch of pieces between clock reads keeps the clock's cost out */
        for (int i = 0; i < 16; i++, round++) {
            memcpy(destination + (round % destination_pieces) * piece,
                   source + ((round * 7919) % source_pieces) * piece, piece);
            copied += piece;
        }
        elapsed = now_seconds() - started;
    } while (elapsed < seconds);
    /* read the destination so the copies cannot be optimised away */
    unsigned checksum = 0;
    for (size_t i = 0; i < destination_size; i += 4096)
        checksum += destination[i];
    printf("{\"piece\": %zu, \"mb_per_s\": %.1f, \"check\": %u}\n", piece,
           (double)copied / elapsed / 1e6, checksum);
    free(source);
    free(destination);
    return 0;
}
