/* What the fuzz targets share: one process-wide set of front-end state (options, a
 * DRAM-only store and a namespace, statistics) built on the first input and reused, as
 * a server reuses it across connections, and a way to send bytes and drain replies.
 *
 * A target feeds each input to a fresh session in pieces whose sizes come from the
 * input's own first bytes, so split points are fuzzed too, and throws the replies away
 * as a client that reads them would. ASan and UBSan (and the sanitizer build's rule
 * checks) turn any memory error, overflow or broken rule into a crash. */
#ifndef STRATA_TESTS_FUZZ_COMMON_H
#define STRATA_TESTS_FUZZ_COMMON_H

#include "base/options.h"
#include "base/output_queue.h"
#include "engine/namespaces.h"
#include "engine/store.h"
#include "observe/stats.h"

#include <stddef.h>
#include <stdint.h>

struct access;

struct fuzz_world {
    struct options options;
    struct store *store;  /* the default namespace: DRAM only, 16 MiB */
    struct store *tenant; /* a second namespace, "tenant", 1 MiB */
    struct namespace_table namespaces;
    struct stats *stats;
    struct access *access; /* no users configured: every session is "default", all rights */
};

/* The shared state, built on first use. Aborts if it cannot be built. */
struct fuzz_world *fuzz_world(void);

/* Sends bytes of the connection input at DATA (SIZE bytes) to a session through
 * FEED in pieces, draining OUTPUT after each, until the input is used up or FEED asks to
 * close. The first byte of the input sets the piece size pattern. */
typedef bool (*fuzz_feed_fn)(void *session, const unsigned char *data, size_t length,
                             size_t *consumed);
void fuzz_drive(void *session, fuzz_feed_fn feed, struct output_queue *output,
                const unsigned char *data, size_t size);

/* Sends everything queued in OUTPUT (nowhere) and releases it. */
void fuzz_drain(struct output_queue *output);

/* Ends an input: empties the stores, so that every input starts from the same state (a
 * crash reproduces from its input alone) and nothing an input stored looks leaked. */
void fuzz_end_input(struct fuzz_world *shared);

#endif
