/* Statistics shared by every front end: INFO (RESP), /metrics, /info and the status
 * page's history all come from one table (stats.def) and one snapshot, so they never
 * disagree. Also holds the server's life-cycle state that /health reports. */
#ifndef STRATA_OBSERVE_STATS_H
#define STRATA_OBSERVE_STATS_H

#include "base/metrics.h"
#include "base/options.h"
#include "engine/store.h"

#include <stdbool.h>
#include <stdint.h>

struct byte_buffer;
struct namespace_table;
struct stats;

/* Where the server is in its life; /health answers 200 only in SERVER_SERVING. */
enum server_state {
    SERVER_STARTING = 0,
    SERVER_RECOVERING,
    SERVER_SERVING,
    SERVER_DRAINING, /* stopping soon: still serving, but telling load balancers to leave */
    SERVER_STOPPING,
};

/* What INFO's server section and the figures need from the process. */
struct objects;

struct stats_environment {
    struct store *store;
    const struct options *options;
    const char *executable;  /* absolute path of the binary */
    const char *config_file; /* absolute path, or "" */
    int threads;
    struct namespace_table *namespaces; /* per-namespace figures; may be NULL */
    struct objects *objects;            /* buckets and objects (INFO objects); may be NULL */
};

/* INFO sections, as a bit mask. */
enum stats_section {
    STATS_SECTION_SERVER = 1,
    STATS_SECTION_CLIENTS = 2,
    STATS_SECTION_MEMORY = 4,
    STATS_SECTION_STATS = 8,
    STATS_SECTION_KEYSPACE = 16,
    STATS_SECTION_STRATA = 32,
    STATS_SECTION_FLASH = 64,
    STATS_SECTION_NAMESPACES = 128,
    STATS_SECTION_FAULTS = 256, /* the fault-injection build only */
    STATS_SECTION_OBJECTS = 512,
    STATS_SECTION_ALL = 1023,
};

/* Creates the statistics state. ENVIRONMENT is copied (its strings must outlive the
 * stats). Returns NULL if out of memory. */
struct stats *stats_create(const struct stats_environment *environment);
void stats_destroy(struct stats *stats);

/* Most port fields INFO's server section lists. */
#define STATS_MAX_PORTS 8

/* Sets INFO's server-section FIELD ("tcp_port", a constant that outlives the stats) to
 * PORT, adding the field after those set before. Start-up only, before serving. */
void stats_set_port(struct stats *stats, const char *field, int port);

/* Starts every counter again from zero (CONFIG RESETSTAT): the process-wide metrics and
 * the event counters of every namespace's store. */
void stats_reset_counters(struct stats *stats);

/* Sums the event counters (hits, misses, expired, evicted, rejected_writes) of every
 * namespace's store into TOTAL (its other fields are zero). */
void stats_read_store_counters(const struct stats *stats, struct store_stats *total);

/* Takes a throughput sample; call about every 100 ms. Every tenth sample also goes
 * into the history the status page plots. */
void stats_sample(struct stats *stats);

/* The life-cycle state, readable and settable from any thread. */
void stats_set_state(struct stats *stats, enum server_state state);
/* Moves the state from FROM to TO if it is still FROM (another thread may have moved it
 * on, to draining say). Returns whether it did. */
bool stats_change_state(struct stats *stats, enum server_state from, enum server_state to);
enum server_state stats_state(const struct stats *stats);

/* A one-line reason for the state ("serving", "shutting down"). */
const char *stats_state_reason(enum server_state state);

/* The section bit for an INFO section name ("memory", "all"), or 0 if unknown. */
int stats_section_bit(const char *name, size_t length);

/* Appends INFO text (CRLF lines) for the SECTIONS bit mask. */
void stats_info_text(struct stats *stats, int sections, struct byte_buffer *text);

/* Appends every section of INFO as one JSON object: {"server": {...}, ...}. Numbers
 * are JSON numbers; other values strings. */
void stats_info_json(struct stats *stats, struct byte_buffer *text);

/* Appends the Prometheus text exposition format (version 0.0.4). */
void stats_prometheus_text(struct stats *stats, struct byte_buffer *text);

/* Appends the status page's history as JSON: one array per series, oldest first. */
void stats_history_json(struct stats *stats, struct byte_buffer *text);

#endif
