/* Fault-injection sweep over src/access/ (the fault build: allocations fail at their Nth
 * call, once or from then on). Each change of the users (create, reload, SETUSER,
 * DELUSER, describe, save) either happens whole or fails with an error and leaves the
 * users as they were; nothing crashes or leaks (the fault build is an ASan build, run
 * with detect_leaks=1). */
#include "access/access.h"
#include "base/fault.h"

#include "../unit/test.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char directory[] = "/tmp/strata-access-faults-XXXXXX";
static char users_path[256];
static char users_text[2048];

static void write_users(const char *text) {
    FILE *file = fopen(users_path, "w");
    fputs(text, file);
    fclose(file);
    chmod(users_path, 0600);
}

static struct access *create(void) {
    struct options options;
    char error[256];
    if (options_init(&options) != 0) return NULL;
    options_set(&options, ACCESS_OPTION(users), users_path, false, error, sizeof(error));
    struct access *access = access_create(&options, error, sizeof(error));
    options_free(&options);
    return access;
}

/* The users as ACCESS describes them, made with no fault in force; "" if that fails. */
static void describe(struct access *access, char *output, size_t size) {
    fault_reset();
    char *text = access != NULL ? access_describe_all(access) : NULL;
    snprintf(output, size, "%s", text != NULL ? text : "");
    free(text);
}

/* A change of the users under test; returns the access function's status. */
typedef int (*change_fn)(struct access *access);

static int change_setuser(struct access *access) {
    const char *rules[] = {"on",
                           "nopass",
                           "namespace:kv-*=read,write",
                           "bucket:models=read",
                           "s3key:NEWKEY:newsecret",
                           "uid:1234"};
    size_t lengths[6];
    for (int i = 0; i < 6; i++)
        lengths[i] = strlen(rules[i]);
    char error[256];
    return access_set_user(access, "carol", rules, lengths, 6, error, sizeof(error));
}

static int change_deluser(struct access *access) {
    const char *names[] = {"alice"};
    char error[256];
    return access_delete_users(access, names, 1, error, sizeof(error));
}

static int change_reload(struct access *access) {
    char error[256];
    return access_reload(access, error, sizeof(error));
}

static int change_describe(struct access *access) {
    char *text = access_describe_all(access);
    free(text);
    return text != NULL ? 0 : -1;
}

/* Applies CHANGE to a fresh access with RULE in force for the allocations, and checks
 * that it happened whole or not at all: afterwards the users read as before it, or (when
 * it succeeded) as AFTER. A NULL CHANGE sweeps access_create() itself: it may fail, but
 * what it creates must be whole. Returns false if a rule broke; *FIRED says whether the
 * rule injected a failure. */
static bool run(change_fn change, const char *after, const struct fault_rule *rule, bool *fired) {
    static char before[4096], now[4096];
    struct fault_counts counts;
    if (change == NULL) fault_configure(FAULT_alloc, rule);
    struct access *access = create();
    fault_get_counts(FAULT_alloc, &counts);
    describe(access, before, sizeof(before));
    if (access == NULL || change == NULL) {
        *fired = counts.injected > 0;
        bool right = access == NULL || strcmp(before, after) == 0;
        access_destroy(access);
        return right;
    }
    fault_configure(FAULT_alloc, rule);
    int status = change(access);
    fault_get_counts(FAULT_alloc, &counts);
    *fired = counts.injected > 0;
    describe(access, now, sizeof(now));
    bool right = strcmp(now, status < 0 ? before : after) == 0;
    access_destroy(access);
    return right;
}

/* Sweeps CHANGE: allocation N fails (once, then from N on) for N = 1, 2, ... until a
 * run injects nothing. */
static void sweep(const char *name, change_fn change) {
    char after[4096];
    struct access *access = create();
    if (change != NULL) change(access);
    describe(access, after, sizeof(after));
    access_destroy(access);
    for (int persistent = 0; persistent < 2; persistent++) {
        uint64_t n = 1;
        for (;; n++) {
            struct fault_rule rule = {.nth = n, .persistent = persistent == 1};
            bool fired = false;
            bool right = run(change, after, &rule, &fired);
            fault_reset();
            if (!right) {
                fprintf(stderr, "%s: broken with allocation %llu failing%s\n", name,
                        (unsigned long long)n, persistent ? " onwards" : "");
            }
            CHECK(right);
            if (!fired) break;
        }
        fprintf(stderr, "    %-10s alloc ENOMEM %s failed at calls 1 to %llu\n", name,
                persistent ? "persistent" : "once      ", (unsigned long long)n - 1);
    }
}

int main(void) {
    if (!fault_built_in()) {
        fprintf(stderr, "test_access_faults needs the fault-injection build\n");
        return 1;
    }
    if (options_declare(&access_options) != 0 || metrics_declare(&access_metrics) != 0) return 1;
    metric_register_thread();
    if (sodium_init() < 0 || mkdtemp(directory) == NULL) return 1;
    snprintf(users_path, sizeof(users_path), "%s/users", directory);
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, "secret", 6, crypto_pwhash_OPSLIMIT_MIN,
                          crypto_pwhash_MEMLIMIT_MIN) != 0)
        return 1;
    snprintf(users_text, sizeof(users_text),
             "user default off\n"
             "user ops on #%s namespace:*=all bucket:*=all\n"
             "user alice on #%s namespace:kv=read,write s3key:ALICEKEY:alicesecret uid:77\n",
             hash, hash);
    write_users(users_text);
    sweep("create", NULL);
    sweep("setuser", change_setuser);
    sweep("deluser", change_deluser);
    sweep("reload", change_reload);
    sweep("describe", change_describe);
    unlink(users_path);
    rmdir(directory);
    return test_main_result();
}
