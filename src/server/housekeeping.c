/* The housekeeping thread: active expiry in every namespace, statistics sampling, the
 * eviction summary in the log, and noticing the end of flash recovery. */
#include "base/clock.h"
#include "base/log.h"
#include "engine/objects.h"
#include "engine/store.h"
#include "observe/stats.h"
#include "server/notify.h"
#include "server/server.h"

#include <time.h>

/* How often background work runs, and how long one expiry pass may take. */
#define HOUSEKEEPING_INTERVAL_MS 100
/* While the flash index is rebuilt, systemd's start timeout is extended by
 * RECOVERY_EXTEND_USEC every RECOVERY_EXTEND_INTERVAL_MS (src/server/notify.h). */
#define RECOVERY_EXTEND_USEC        "60000000"
#define RECOVERY_EXTEND_INTERVAL_MS 20000
#define EXPIRY_PASS_LIMIT_MS        20
/* How often a summary of evictions is logged, when there were any. */
#define EVICTION_SUMMARY_INTERVAL_MS 10000
/* How often objects written under --fsync everysec are synced. */
#define OBJECT_SYNC_INTERVAL_MS 1000

/* Logs how many items were evicted and writes refused, every namespace together, since
 * the last summary. */
static void log_eviction_summary(struct stats *stats, int64_t *last_evicted,
                                 int64_t *last_rejected) {
    struct store_stats counters;
    stats_read_store_counters(stats, &counters);
    int64_t evicted = (int64_t)counters.evicted;
    int64_t rejected = (int64_t)counters.rejected_writes;
    if (evicted < *last_evicted || rejected < *last_rejected) { /* CONFIG RESETSTAT */
        *last_evicted = evicted;
        *last_rejected = rejected;
        return;
    }
    if (evicted != *last_evicted || rejected != *last_rejected) {
        log_event(LOG_INFO, "evictions", "tier=dram evicted=%lld rejected_writes=%lld seconds=%d",
                  (long long)(evicted - *last_evicted), (long long)(rejected - *last_rejected),
                  EVICTION_SUMMARY_INTERVAL_MS / 1000);
    }
    *last_evicted = evicted;
    *last_rejected = rejected;
}

/* Active expiry on every namespace's store (default included), in turns, while the
 * last turn found expired keys and for at most EXPIRY_PASS_LIMIT_MS. */
static void expire_namespaces(struct server *server) {
    int64_t started = clock_monotonic_ms();
    bool found = true;
    while (found && clock_monotonic_ms() - started < EXPIRY_PASS_LIMIT_MS) {
        found = false;
        for (int i = 0; i < server->namespaces.count; i++) {
            if (store_expire_cycle(server->namespaces.list[i].store, 4096) > 0) found = true;
        }
    }
}

/* The thread: runs the work above every HOUSEKEEPING_INTERVAL_MS until stopping. */
static void *housekeeping_main(void *argument) {
    struct server *server = argument;
    int64_t next_summary = clock_monotonic_ms() + EVICTION_SUMMARY_INTERVAL_MS;
    int64_t next_object_sync = clock_monotonic_ms() + OBJECT_SYNC_INTERVAL_MS;
    int64_t next_extend = 0;
    struct store_stats counters;
    stats_read_store_counters(server->stats, &counters);
    int64_t last_evicted = (int64_t)counters.evicted;
    int64_t last_rejected = (int64_t)counters.rejected_writes;
    pthread_mutex_lock(&server->housekeeping_lock);
    while (!server->stopping) {
        pthread_mutex_unlock(&server->housekeeping_lock);
        if (!store_recovering(server->store) &&
            stats_change_state(server->stats, SERVER_RECOVERING, SERVER_SERVING)) {
            log_event(LOG_INFO, "ready", "reason=\"the flash index is whole\"");
            notify_service_manager("READY=1\nSTATUS=serving");
        } else if (store_recovering(server->store) && clock_monotonic_ms() >= next_extend) {
            /* A long recovery is progress, not a hung start: push systemd's start
             * timeout (TimeoutStartSec) on while it lasts. */
            notify_service_manager("EXTEND_TIMEOUT_USEC=" RECOVERY_EXTEND_USEC);
            next_extend = clock_monotonic_ms() + RECOVERY_EXTEND_INTERVAL_MS;
        }
        expire_namespaces(server);
        stats_sample(server->stats);
        if (server->objects != NULL && clock_monotonic_ms() >= next_object_sync) {
            objects_sync_pending(server->objects); /* --fsync everysec; failures are logged */
            next_object_sync = clock_monotonic_ms() + OBJECT_SYNC_INTERVAL_MS;
        }
        if (clock_monotonic_ms() >= next_summary) {
            log_eviction_summary(server->stats, &last_evicted, &last_rejected);
            next_summary += EVICTION_SUMMARY_INTERVAL_MS;
        }
        pthread_mutex_lock(&server->housekeeping_lock);
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += HOUSEKEEPING_INTERVAL_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        if (!server->stopping) {
            pthread_cond_timedwait(&server->housekeeping_wake, &server->housekeeping_lock,
                                   &deadline);
        }
    }
    pthread_mutex_unlock(&server->housekeeping_lock);
    return NULL;
}

void housekeeping_start(struct server *server) {
    pthread_mutex_init(&server->housekeeping_lock, NULL);
    pthread_cond_init(&server->housekeeping_wake, NULL);
    if (pthread_create(&server->housekeeping, NULL, housekeeping_main, server) == 0) {
        server->housekeeping_started = true;
    }
}

void housekeeping_stop(struct server *server) {
    pthread_mutex_lock(&server->housekeeping_lock);
    server->stopping = true;
    pthread_cond_signal(&server->housekeeping_wake);
    pthread_mutex_unlock(&server->housekeeping_lock);
    if (server->housekeeping_started) pthread_join(server->housekeeping, NULL);
    server->housekeeping_started = false;
    pthread_mutex_destroy(&server->housekeeping_lock);
    pthread_cond_destroy(&server->housekeeping_wake);
}
