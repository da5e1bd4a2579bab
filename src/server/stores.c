/* The stores of the namespaces: the default one (with the flash tier) and one DRAM
 * store per --namespaces entry, and the run-time option changes that reach them. */
#include "base/log.h"
#include "engine/engine_options.h"
#include "engine/store.h"
#include "server/server.h"

#include <stdio.h>
#include <string.h>

/* The flash tier's directory: --ssd-dir, or DIR/ssd under --dir. */
static void flash_directory(const struct options *options, char *path, size_t size) {
    const char *ssd_dir = options_text(options, ENGINE_OPTION(ssd_dir));
    if (ssd_dir[0] != '\0') {
        snprintf(path, size, "%s", ssd_dir);
    } else {
        snprintf(path, size, "%s/ssd", options_text(options, SERVER_OPTION(dir)));
    }
}

int stores_create(struct server *server) {
    const struct options *options = &server->options;
    char error[512];
    struct namespace_spec specs[NAMESPACE_MAX_COUNT];
    int spec_count = namespace_specs_parse(options_text(options, ENGINE_OPTION(namespaces)), specs,
                                           error, sizeof(error));
    if (spec_count < 0) {
        fprintf(stderr, "strata-server: %s\n", error);
        return 2;
    }
    for (int i = 0; i < spec_count; i++)
        server->namespace_quotas += specs[i].quota;
    uint64_t memory_total = (uint64_t)options_number(options, ENGINE_OPTION(memory));
    if (memory_total <= server->namespace_quotas + (1u << 20)) {
        fprintf(stderr, "strata-server: --memory must exceed the sum of the --namespaces quotas "
                        "by at least 1mb\n");
        return 2;
    }
    char ssd_directory[4096];
    flash_directory(options, ssd_directory, sizeof(ssd_directory));
    struct store_config config = {
        .memory_budget = memory_total - server->namespace_quotas,
        .max_value = (uint64_t)options_number(options, ENGINE_OPTION(max_value)),
        .flash =
            {
                .directory = ssd_directory,
                .size = (uint64_t)options_number(options, ENGINE_OPTION(ssd_size)),
                .segment_size = (uint64_t)options_number(options, ENGINE_OPTION(segment_size)),
                .write_through = options_number(options, ENGINE_OPTION(write_policy)) == 1,
                .fsync = (enum store_fsync)options_number(options, ENGINE_OPTION(fsync)),
                .pace_timeout_ms = options_number(options, ENGINE_OPTION(pace_timeout)),
            },
        .tail_first_window_ms = (uint32_t)options_number(options, ENGINE_OPTION(tail_first_window)),
        .evict_together = options_text(options, ENGINE_OPTION(evict_together)),
    };
    server->store = store_create(&config, error, sizeof(error));
    if (server->store == NULL) {
        fprintf(stderr, "strata-server: cannot start the store: %s\n", error);
        log_event(LOG_ERROR, "store_failed", "error=\"%s\"", error);
        return 1;
    }
    namespace_table_add(&server->namespaces, "default", server->store, config.memory_budget, true);
    for (int i = 0; i < spec_count; i++) {
        /* A namespace is a DRAM store of its own: its quota is its budget. */
        struct store_config namespace_config = {
            .memory_budget = specs[i].quota,
            .max_value = config.max_value,
        };
        struct store *store = store_create(&namespace_config, error, sizeof(error));
        if (store == NULL) {
            fprintf(stderr, "strata-server: cannot create namespace '%s': %s\n", specs[i].name,
                    error);
            stores_destroy(server, false);
            return 1;
        }
        namespace_table_add(&server->namespaces, specs[i].name, store, specs[i].quota, false);
    }
    return 0;
}

void stores_destroy(struct server *server, bool clean) {
    if (server->store != NULL) {
        /* A clean stop: what is only in DRAM goes to flash and the flash index is saved.
         * Otherwise (a failed start) the flash threads are stopped and joined, as after
         * a crash: nothing was served, nothing to save. */
        if (clean) store_shutdown(server->store);
        store_destroy(server->store);
    }
    for (int i = 1; i < server->namespaces.count; i++)
        store_destroy(server->namespaces.list[i].store);
    server->store = NULL;
    server->namespaces.count = 0;
}

int server_apply_option(struct options *options, option_id id, void *context, char *error,
                        size_t error_size) {
    struct server *server = context;
    uint64_t memory = (uint64_t)options_number(options, ENGINE_OPTION(memory));
    if (id == ENGINE_OPTION(memory) && memory <= server->namespace_quotas + (1u << 20)) {
        snprintf(error, error_size, "memory must exceed the namespace quotas (%llu bytes) by 1mb",
                 (unsigned long long)server->namespace_quotas);
        return -1;
    }
    char value[128], quoted[160];
    options_format(options, id, value, sizeof(value));
    log_event(LOG_INFO, "config", "name=%s value=%s", options_name(id),
              log_quote(quoted, sizeof(quoted), value, strlen(value)));
    if (id == ENGINE_OPTION(memory)) {
        store_set_budget(server->store, memory - server->namespace_quotas);
        server->namespaces.list[0].quota = memory - server->namespace_quotas;
    } else if (id == ENGINE_OPTION(max_value)) {
        store_set_max_value(server->store,
                            (uint64_t)options_number(options, ENGINE_OPTION(max_value)));
    } else if (id == SERVER_OPTION(log_level)) {
        log_set_level((enum log_level)options_number(options, SERVER_OPTION(log_level)));
    } else if (id == ENGINE_OPTION(pace_timeout)) {
        store_set_pace_timeout(server->store, options_number(options, ENGINE_OPTION(pace_timeout)));
    }
    return 0;
}
