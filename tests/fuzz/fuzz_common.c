/* Shared state and input driving for the fuzz targets (fuzz_common.h). */
#include "fuzz_common.h"
#include "access/access.h"
#include "engine/engine_options.h"
#include "net/net.h"
#include "proto/http/http.h"
#include "proto/native/native.h"
#include "proto/resp/resp.h"
#include "proto/s3/s3.h"

#include <stdio.h>
#include <stdlib.h>

static struct fuzz_world world;
static bool built;
static int64_t initial_numbers[OPTIONS_CAPACITY]; /* CONFIG SET in one input must not leak */

struct fuzz_world *fuzz_world(void) {
    if (built) {
        for (int id = 0; id < options_count(); id++)
            atomic_store_explicit(&world.options.numbers[id], initial_numbers[id],
                                  memory_order_relaxed);
        return &world;
    }
    char error[256];
    /* The groups of the rooms the targets drive (the server's own group is not linked),
     * s3's among them for fuzz_s3_http, all declared before options_init(). */
    if (options_declare(&net_options) != 0 || options_declare(&engine_options) != 0 ||
        options_declare(&access_options) != 0 || options_declare(&s3_options) != 0 ||
        options_declare(&resp_options) != 0 || options_declare(&http_options) != 0 ||
        options_declare(&native_options) != 0 || metrics_declare(&net_metrics) != 0 ||
        metrics_declare(&access_metrics) != 0 || metrics_declare(&resp_metrics) != 0 ||
        metrics_declare(&http_metrics) != 0 || metrics_declare(&native_metrics) != 0)
        abort();
    if (options_init(&world.options) != 0) abort();
    /* Small limits, so that oversized values and requests are reached quickly. */
    options_set(&world.options, ENGINE_OPTION(max_value), "1mb", false, error, sizeof(error));
    options_set(&world.options, NET_OPTION(max_request), "4mb", false, error, sizeof(error));
    options_set(&world.options, HTTP_OPTION(http_max_header), "8kb", false, error, sizeof(error));
    struct store_config config = {.memory_budget = 16u << 20, .max_value = 1u << 20, .shards = 16};
    world.store = store_create(&config, error, sizeof(error));
    struct store_config tenant = {.memory_budget = 1u << 20, .max_value = 1u << 20, .shards = 16};
    world.tenant = store_create(&tenant, error, sizeof(error));
    if (world.store == NULL || world.tenant == NULL) {
        fprintf(stderr, "fuzz: %s\n", error);
        abort();
    }
    namespace_table_add(&world.namespaces, "default", world.store, 16u << 20, true);
    namespace_table_add(&world.namespaces, "tenant", world.tenant, 1u << 20, false);
    struct stats_environment environment = {
        .store = world.store,
        .options = &world.options,
        .executable = "fuzz",
        .config_file = "",
        .threads = 1,
        .namespaces = &world.namespaces,
    };
    world.stats = stats_create(&environment);
    if (world.stats == NULL) abort();
    world.access = access_create(&world.options, error, sizeof(error));
    if (world.access == NULL) {
        fprintf(stderr, "fuzz: %s\n", error);
        abort();
    }
    stats_set_state(world.stats, SERVER_SERVING);
    for (int id = 0; id < options_count(); id++)
        initial_numbers[id] = options_number(&world.options, id);
    built = true;
    return &world;
}

void fuzz_end_input(struct fuzz_world *shared) {
    store_flush(shared->store);
    store_flush(shared->tenant);
}

void fuzz_drain(struct output_queue *output) {
    struct iovec iovecs[64];
    for (;;) {
        int count = output_queue_iovecs(output, iovecs, 64);
        if (count == 0) break;
        size_t total = 0;
        for (int i = 0; i < count; i++)
            total += iovecs[i].iov_len;
        output_queue_consume(output, total);
    }
}

void fuzz_drive(void *session, fuzz_feed_fn feed, struct output_queue *output,
                const unsigned char *data, size_t size) {
    if (size == 0) return;
    /* Piece sizes: 1, 2, 7, 64 bytes or all at once, chosen by the first byte. */
    static const size_t pieces[] = {1, 2, 7, 64, SIZE_MAX};
    size_t piece = pieces[data[0] % (sizeof(pieces) / sizeof(pieces[0]))];
    data++;
    size--;
    size_t position = 0;
    int stalls = 0;
    while (position < size) {
        size_t length = size - position < piece ? size - position : piece;
        size_t consumed = 0;
        bool close = feed(session, data + position, length, &consumed);
        position += consumed;
        fuzz_drain(output);
        if (close || output->failed) break;
        /* A session that takes nothing now (it waits for its replies to be read) is
         * offered the same bytes again once they are drained, as the network layer does;
         * one that still takes nothing stops the input. */
        stalls = consumed == 0 ? stalls + 1 : 0;
        if (stalls > 2) break;
    }
}
