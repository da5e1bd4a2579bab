/* The engine as a library: the one header a program that embeds the store includes.
 *
 * Build `make` (it builds build/libstrata-engine.a from src/base and src/engine only),
 * compile with -Isrc, and link the archive with the system libraries it uses:
 *     cc -std=c11 -pthread -Isrc prog.c build/libstrata-engine.a \
 *        -lxxhash -luring -lisal -lcrypto -lm
 * docs/engine.md ("Embedding the engine") says more; examples/engine_embed.c is a whole
 * program.
 *
 * What it declares: the store API (engine/store.h: its comments are the contracts),
 * the output queue that store_stream_send() fills with a value too large for DRAM
 * (base/output_queue.h), where the engine's log lines go (base/log.h: standard error by
 * default) and the process-wide counters the engine keeps (base/metrics.h;
 * metrics_teardown() frees them once every thread that used the store has ended). Nothing here
 * comes from the network, protocol, statistics or server code: this header and everything it
 * includes live in src/engine and src/base. */
#ifndef STRATA_ENGINE_ENGINE_H
#define STRATA_ENGINE_ENGINE_H

#include "base/log.h"
#include "base/metrics.h"
#include "base/output_queue.h"
#include "engine/store.h"

#endif
