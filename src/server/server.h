/* The server room: strata-server's life cycle (server.c), its housekeeping thread
 * (housekeeping.c), the stores of its namespaces (stores.c) and the table of front ends
 * (frontends.c). main.c is a short list of these calls. */
#ifndef STRATA_SERVER_SERVER_H
#define STRATA_SERVER_SERVER_H

#include "base/options.h"
#include "engine/namespaces.h"
#include "proto/frontend.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* server's options (server/server_options.def): the group, and each row's place in it. */
enum server_option_index {
#define OPTION(identifier, ...) SERVER_OPTION_INDEX_##identifier,
#include "server/server_options.def"
#undef OPTION
};
extern struct option_group server_options;
/* The identifier of server's option IDENTIFIER in the composed table. */
#define SERVER_OPTION(identifier) option_in_group(&server_options, SERVER_OPTION_INDEX_##identifier)

/* ---- frontends.c: the table of front ends ---------------------------------------- */

/* Every front end the server runs, in the order they are set up and listed. */
extern const struct frontend *const frontend_table[];
extern const int frontend_count;

/* Declares the option and metric groups of the server, the network layer, the engine
 * and every front end, in --help's order. Start-up, once. Returns 0, or -1 if a table
 * is full (a programming error). */
int frontends_declare_tables(void);

/* ---- server.c --------------------------------------------------------------------- */

struct net_server;
struct stats;
struct store;

/* Most front ends the table may list. */
#define FRONTENDS_MAX 8

/* One running front end. */
struct frontend_instance {
    const struct frontend *frontend;
    void *state; /* what its setup() returned */
    int port;    /* the port bound */
};

struct server {
    struct options options;
    struct store *store; /* the default namespace's store (namespaces.list[0]) */
    struct stats *stats;
    struct namespace_table namespaces;
    struct objects *objects;   /* buckets and durable objects (engine/objects.h) */
    struct s3_server *s3;      /* the S3 API on the HTTP port */
    struct access *access;     /* users and rights (access/access.h) */
    uint64_t namespace_quotas; /* bytes of --memory given to namespaces other than default */
    struct frontend_environment environment;
    struct frontend_instance frontends[FRONTENDS_MAX];
    int log_fd; /* --log-file, or -1 for standard error */
    struct net_server *net;
    int lock_fd;
    char executable[PATH_MAX];
    char config_file[PATH_MAX];
    pthread_t housekeeping;
    bool housekeeping_started;
    pthread_mutex_t housekeeping_lock;
    pthread_cond_t housekeeping_wake;
    bool stopping;
};

/* Reads the options (declared tables, command line, config file). Returns -1 to go
 * on, or the exit status main() returns at once: 0 after --help or --version. A bad
 * option or value prints one line and exits with status 2. */
int server_configure(struct server *server, int argc, char **argv);

/* Opens the log, locks the data directory, creates the stores, sets up the front ends,
 * listens and starts the workers and housekeeping. Returns 0, or the exit status after
 * saying why on standard error (1: cannot start; 2: --namespaces and --memory do not
 * fit together); what was started is stopped again. */
int server_start(struct server *server);

/* Waits for SIGINT, SIGTERM or SHUTDOWN (reopening the log on SIGHUP meanwhile). */
void server_wait_for_stop(struct server *server);

/* Drains (--drain-time), stops the workers and the front ends, saves the flash index
 * and frees everything. */
void server_stop(struct server *server);

/* ---- stores.c: the stores of the namespaces --------------------------------------- */

/* Creates the default store (with the flash tier) and one DRAM store per --namespaces
 * entry, and fills SERVER->namespaces. Returns 0, or the exit status after saying why
 * on standard error (the stores created are destroyed): 2 for a bad --namespaces or a
 * --memory that does not exceed its quotas, 1 when a store cannot start. */
int stores_create(struct server *server);

/* Destroys every namespace's store; with CLEAN, the default store is shut down first
 * (what is only in DRAM goes to flash and the flash index is saved). */
void stores_destroy(struct server *server, bool clean);

/* Applies a run-time option change (CONFIG SET) to the parts that hold a copy, and
 * logs it (option_change_fn; CONTEXT is the server). */
int server_apply_option(struct options *options, option_id id, void *context, char *error,
                        size_t error_size);

/* ---- housekeeping.c ----------------------------------------------------------------- */

/* Starts the thread that runs active expiry, statistics sampling, the eviction summary
 * and the end of recovery, every 100 ms. */
void housekeeping_start(struct server *server);

/* Stops and joins it. */
void housekeeping_stop(struct server *server);

#endif
