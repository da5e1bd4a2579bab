/* Users, rights and credentials (see access.h; the file format is in docs/security.md).
 *
 * Locks: `lock` guards `current` (the pointer may also be read atomically, to notice a
 * change) and table reference counts taken from it; `change_lock` serialises the
 * builders of a new table (reload, SETUSER, DELUSER), which may hash passwords slowly
 * while readers go on; `throttle_lock` guards the failure table. A user's cache of
 * verified passwords has a lock of its own. None is held while another is taken,
 * except change_lock, which is taken first. */
#include "access/access.h"

#include "base/checks.h"
#include "base/clock.h"
#include "base/glob.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct option_definition access_option_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "access/access_options.def"
#undef OPTION
};

struct option_group access_options = {
    .title = "Users and access",
    .definitions = access_option_definitions,
    .count = sizeof(access_option_definitions) / sizeof(access_option_definitions[0]),
};

static const struct metric_definition access_metric_definitions[] = {
#define METRIC METRIC_DEFINITION
#define HISTOGRAM(...)
#include "access/access_metrics.def"
#undef HISTOGRAM
#undef METRIC
    {NULL, METRIC_COUNTER, NULL},
};

static const struct histogram_definition access_histogram_definitions[] = {
    {NULL, NULL, NULL, NULL, NULL},
};

struct metric_group access_metrics = {
    .name = "access",
    .metrics = access_metric_definitions,
    .histograms = access_histogram_definitions,
};

/* Passwords a user recently proved, kept as keyed digests (never in clear) so that the
 * next AUTH with the same password costs a hash, not an Argon2id verification. */
#define VERIFIED_SLOTS 8
struct access_verified {
    pthread_mutex_t lock;
    unsigned char digests[VERIFIED_SLOTS][crypto_generichash_BYTES];
    int count;
    int next;
};

struct access_table {
    _Atomic long references;
    struct access_user **users; /* sorted by name */
    size_t count;
};

/* Failures from one client address. */
#define THROTTLE_SLOTS        1024
#define THROTTLE_FREE_FAILURE 5      /* failures before attempts are delayed */
#define THROTTLE_MAX_DELAY_MS 60000  /* the longest an address is refused */
#define THROTTLE_FORGET_MS    600000 /* failures older than this are forgotten */
struct throttle_entry {
    char address[64];
    uint32_t failures;
    int64_t last_failure_ms;
    int64_t refused_until_ms;
};

struct access {
    pthread_mutex_t lock;
    pthread_mutex_t change_lock;
    struct access_table *_Atomic current;
    char *users_file; /* NULL: none */
    unsigned char digest_key[crypto_generichash_KEYBYTES];
    char dummy_hash[crypto_pwhash_STRBYTES]; /* checked for unknown users: same cost */
    pthread_mutex_t throttle_lock;
    struct throttle_entry throttle[THROTTLE_SLOTS];
    _Atomic bool guarded; /* access_guard_protected_mode(): never open "default" */
};

/* ---- users and tables ---------------------------------------------------------- */

static void user_free(struct access_user *user) {
    if (user == NULL) return;
    free(user->name);
    for (size_t i = 0; i < user->hash_count; i++)
        free(user->hashes[i]);
    free(user->hashes);
    for (size_t i = 0; i < user->namespace_count; i++)
        free(user->namespaces[i].pattern);
    free(user->namespaces);
    for (size_t i = 0; i < user->bucket_count; i++)
        free(user->buckets[i].pattern);
    free(user->buckets);
    for (size_t i = 0; i < user->key_count; i++) {
        free(user->keys[i].access_key);
        if (user->keys[i].secret != NULL) {
            sodium_memzero(user->keys[i].secret, strlen(user->keys[i].secret));
            free(user->keys[i].secret);
        }
    }
    free(user->keys);
    free(user->uids);
    if (user->verified != NULL) {
        pthread_mutex_destroy(&user->verified->lock);
        sodium_memzero(user->verified, sizeof(*user->verified));
        free(user->verified);
    }
    free(user);
}

/* A new user NAME (LENGTH bytes): off, no password, no rights. NULL if out of memory. */
static struct access_user *user_new(const char *name, size_t length) {
    struct access_user *user = calloc(1, sizeof(*user));
    if (user == NULL) return NULL;
    user->name = strndup(name, length);
    user->verified = calloc(1, sizeof(*user->verified));
    if (user->name == NULL || user->verified == NULL) {
        free(user->name);
        free(user->verified);
        free(user);
        return NULL;
    }
    pthread_mutex_init(&user->verified->lock, NULL);
    return user;
}

/* Copies COUNT grants at SOURCE into a new array at *TARGET; *TARGET_COUNT counts those
 * copied, also when it fails (so that user_free() frees them). Returns 0, or -1 if out
 * of memory. */
static int grants_copy(const struct access_grant *source, size_t count,
                       struct access_grant **target, size_t *target_count) {
    if (count == 0) return 0;
    *target = calloc(count, sizeof(**target));
    if (*target == NULL) return -1;
    for (; *target_count < count; (*target_count)++) {
        (*target)[*target_count].rights = source[*target_count].rights;
        (*target)[*target_count].pattern = strdup(source[*target_count].pattern);
        if ((*target)[*target_count].pattern == NULL) return -1;
    }
    return 0;
}

/* A deep copy of USER with an empty verified cache. NULL if out of memory. */
static struct access_user *user_copy(const struct access_user *user) {
    struct access_user *copy = user_new(user->name, strlen(user->name));
    if (copy == NULL) return NULL;
    copy->enabled = user->enabled;
    copy->nopass = user->nopass;
    if (user->hash_count > 0) {
        copy->hashes = calloc(user->hash_count, sizeof(char *));
        if (copy->hashes == NULL) goto fail;
        for (; copy->hash_count < user->hash_count; copy->hash_count++) {
            copy->hashes[copy->hash_count] = strdup(user->hashes[copy->hash_count]);
            if (copy->hashes[copy->hash_count] == NULL) goto fail;
        }
    }
    if (grants_copy(user->namespaces, user->namespace_count, &copy->namespaces,
                    &copy->namespace_count) != 0 ||
        grants_copy(user->buckets, user->bucket_count, &copy->buckets, &copy->bucket_count) != 0)
        goto fail;
    if (user->key_count > 0) {
        copy->keys = calloc(user->key_count, sizeof(struct access_key));
        if (copy->keys == NULL) goto fail;
        for (; copy->key_count < user->key_count; copy->key_count++) {
            struct access_key *key = &copy->keys[copy->key_count];
            key->access_key = strdup(user->keys[copy->key_count].access_key);
            key->secret = strdup(user->keys[copy->key_count].secret);
            if (key->access_key == NULL || key->secret == NULL) {
                copy->key_count++;
                goto fail;
            }
        }
    }
    if (user->uid_count > 0) {
        copy->uids = malloc(user->uid_count * sizeof(*copy->uids));
        if (copy->uids == NULL) goto fail;
        memcpy(copy->uids, user->uids, user->uid_count * sizeof(*copy->uids));
        copy->uid_count = user->uid_count;
    }
    return copy;
fail:
    user_free(copy);
    return NULL;
}

static void table_free(struct access_table *table) {
    for (size_t i = 0; i < table->count; i++)
        user_free(table->users[i]);
    free(table->users);
    free(table);
}

static void table_release(struct access_table *table) {
    if (table != NULL && atomic_fetch_sub(&table->references, 1) == 1) table_free(table);
}

/* The current table with a reference the caller releases. */
static struct access_table *table_acquire(struct access *access) {
    pthread_mutex_lock(&access->lock);
    struct access_table *table = atomic_load(&access->current);
    atomic_fetch_add(&table->references, 1);
    pthread_mutex_unlock(&access->lock);
    return table;
}

/* Makes TABLE (one reference, handed over) the current table. */
static void table_publish(struct access *access, struct access_table *table) {
    pthread_mutex_lock(&access->lock);
    struct access_table *old = atomic_load(&access->current);
    atomic_store(&access->current, table);
    pthread_mutex_unlock(&access->lock);
    table_release(old);
}

/* The user NAME in TABLE, or NULL. */
static struct access_user *table_find(const struct access_table *table, const char *name,
                                      size_t length) {
    size_t low = 0, high = table->count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        const char *candidate = table->users[middle]->name;
        size_t candidate_length = strlen(candidate);
        int order = memcmp(candidate, name, candidate_length < length ? candidate_length : length);
        if (order == 0) order = (candidate_length > length) - (candidate_length < length);
        if (order == 0) return table->users[middle];
        if (order < 0) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return NULL;
}

/* Adds USER (owned) to TABLE at its place in name order. Returns 0, or -1 if out of
 * memory (USER is then freed). */
static int table_add(struct access_table *table, struct access_user *user) {
    struct access_user **grown = realloc(table->users, (table->count + 1) * sizeof(*grown));
    if (grown == NULL) {
        user_free(user);
        return -1;
    }
    table->users = grown;
    size_t place = table->count;
    while (place > 0 && strcmp(grown[place - 1]->name, user->name) > 0)
        place--;
    memmove(&grown[place + 1], &grown[place], (table->count - place) * sizeof(*grown));
    grown[place] = user;
    table->count++;
    return 0;
}

static struct access_table *table_new(void) {
    struct access_table *table = calloc(1, sizeof(*table));
    if (table != NULL) atomic_init(&table->references, 1);
    return table;
}

/* A deep copy of TABLE without the SKIP_COUNT users named in SKIP; *SKIPPED (if not
 * NULL) counts those left out. NULL if out of memory. */
static struct access_table *table_copy(const struct access_table *table, const char *const *skip,
                                       size_t skip_count, int *skipped) {
    struct access_table *copy = table_new();
    if (copy == NULL) return NULL;
    copy->users = calloc(table->count > 0 ? table->count : 1, sizeof(*copy->users));
    if (copy->users == NULL) {
        free(copy);
        return NULL;
    }
    if (skipped != NULL) *skipped = 0;
    for (size_t i = 0; i < table->count; i++) {
        bool left_out = false;
        for (size_t n = 0; n < skip_count && !left_out; n++)
            left_out = strcmp(table->users[i]->name, skip[n]) == 0;
        if (left_out) {
            if (skipped != NULL) (*skipped)++;
            continue;
        }
        struct access_user *user = user_copy(table->users[i]);
        if (user == NULL) {
            table_free(copy);
            return NULL;
        }
        copy->users[copy->count++] = user; /* TABLE is in order, and so is the copy */
    }
    return copy;
}

/* ---- rules ----------------------------------------------------------------------- */

/* Parses RIGHTS ("read,write", "all", "none"). Returns 0, or -1 for an unknown word. */
static int parse_rights(const char *text, size_t length, unsigned *rights) {
    *rights = 0;
    size_t start = 0;
    while (start <= length) {
        size_t end = start;
        while (end < length && text[end] != ',')
            end++;
        const char *word = text + start;
        size_t word_length = end - start;
#define IS(literal) (word_length == sizeof(literal) - 1 && memcmp(word, literal, word_length) == 0)
        if (IS("read") || IS("r")) {
            *rights |= ACCESS_READ;
        } else if (IS("write") || IS("w")) {
            *rights |= ACCESS_WRITE;
        } else if (IS("admin") || IS("a")) {
            *rights |= ACCESS_ADMIN;
        } else if (IS("all")) {
            *rights |= ACCESS_ALL;
        } else if (!IS("none")) {
            return -1;
        }
#undef IS
        start = end + 1;
    }
    return 0;
}

/* Sets the rights of PATTERN in the grant list *GRANTS (*COUNT entries) to RIGHTS
 * (MERGE: adds them to what it has); 0 rights removes the grant. Returns 0 or -1. */
static int set_grant(struct access_grant **grants, size_t *count, const char *pattern,
                     size_t pattern_length, unsigned rights, bool merge) {
    for (size_t i = 0; i < *count; i++) {
        struct access_grant *grant = &(*grants)[i];
        if (strlen(grant->pattern) != pattern_length ||
            memcmp(grant->pattern, pattern, pattern_length) != 0) {
            continue;
        }
        grant->rights = merge ? grant->rights | rights : rights;
        if (grant->rights == 0) {
            free(grant->pattern);
            memmove(grant, grant + 1, (*count - i - 1) * sizeof(*grant));
            (*count)--;
        }
        return 0;
    }
    if (rights == 0) return 0;
    struct access_grant *grown = realloc(*grants, (*count + 1) * sizeof(*grown));
    if (grown == NULL) return -1;
    *grants = grown;
    grown[*count].pattern = strndup(pattern, pattern_length);
    if (grown[*count].pattern == NULL) return -1;
    grown[*count].rights = rights;
    (*count)++;
    return 0;
}

static void clear_grants(struct access_grant **grants, size_t *count) {
    for (size_t i = 0; i < *count; i++)
        free((*grants)[i].pattern);
    free(*grants);
    *grants = NULL;
    *count = 0;
}

static void clear_hashes(struct access_user *user) {
    for (size_t i = 0; i < user->hash_count; i++)
        free(user->hashes[i]);
    free(user->hashes);
    user->hashes = NULL;
    user->hash_count = 0;
    pthread_mutex_lock(&user->verified->lock);
    user->verified->count = 0;
    pthread_mutex_unlock(&user->verified->lock);
}

static int add_hash(struct access_user *user, const char *hash, size_t length) {
    for (size_t i = 0; i < user->hash_count; i++)
        if (strlen(user->hashes[i]) == length && memcmp(user->hashes[i], hash, length) == 0)
            return 0;
    char **grown = realloc(user->hashes, (user->hash_count + 1) * sizeof(*grown));
    if (grown == NULL) return -1;
    user->hashes = grown;
    grown[user->hash_count] = strndup(hash, length);
    if (grown[user->hash_count] == NULL) return -1;
    user->hash_count++;
    user->nopass = false;
    return 0;
}

/* Removes hash INDEX of USER. */
static void remove_hash(struct access_user *user, size_t index) {
    free(user->hashes[index]);
    memmove(&user->hashes[index], &user->hashes[index + 1],
            (user->hash_count - index - 1) * sizeof(char *));
    user->hash_count--;
    pthread_mutex_lock(&user->verified->lock);
    user->verified->count = 0; /* a removed password must not pass from the cache */
    pthread_mutex_unlock(&user->verified->lock);
}

/* True when TEXT looks like a libsodium Argon2 hash string. */
static bool is_password_hash(const char *text, size_t length) {
    if (length >= crypto_pwhash_STRBYTES) return false;
    static const char *const prefixes[] = {"$argon2id$", "$argon2i$"};
    for (size_t i = 0; i < 2; i++)
        if (length > strlen(prefixes[i]) && memcmp(text, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* True when TEXT (LENGTH bytes) is printable with no space: a name, key or secret that
 * can be written back to the users file. */
static bool is_word(const char *text, size_t length) {
    if (length == 0) return false;
    for (size_t i = 0; i < length; i++)
        if ((unsigned char)text[i] <= ' ' || (unsigned char)text[i] >= 127) return false;
    return true;
}

/* The peer-credential rules: uid:N (a Unix-socket peer whose uid is N is this user, with
 * no password; a user may have several) and resetuids (none). RULE is LENGTH bytes.
 * Returns 0, or -1 with the reason in ERROR. */
static int apply_uid_rule(struct access_user *user, const char *rule, size_t length, char *error,
                          size_t error_size) {
    if (length == 9 && memcmp(rule, "resetuids", 9) == 0) {
        free(user->uids);
        user->uids = NULL;
        user->uid_count = 0;
        return 0;
    }
    uint64_t uid = 0;
    size_t digits = length - 4;
    for (size_t i = 4; i < length && uid <= UINT32_MAX; i++)
        uid = rule[i] >= '0' && rule[i] <= '9' ? uid * 10 + (uint64_t)(rule[i] - '0') : UINT64_MAX;
    if (digits == 0 || digits > 10 || uid >= UINT32_MAX) {
        snprintf(error, error_size, "expected uid:N, N a user id from 0 to 4294967294");
        return -1;
    }
    for (size_t i = 0; i < user->uid_count; i++)
        if (user->uids[i] == uid) return 0;
    uint32_t *grown = realloc(user->uids, (user->uid_count + 1) * sizeof(*grown));
    if (grown == NULL) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    user->uids = grown;
    grown[user->uid_count++] = (uint32_t)uid;
    return 0;
}

/* Applies one rule (RULE, LENGTH bytes) to USER. FROM_FILE refuses clear passwords
 * (a users file holds hashes only). Returns 0, or -1 with the reason in ERROR. */
static int apply_rule(struct access_user *user, const char *rule, size_t length, bool from_file,
                      char *error, size_t error_size) {
#define IS(literal) (length == sizeof(literal) - 1 && memcmp(rule, literal, length) == 0)
#define STARTS(literal)                                                                            \
    (length >= sizeof(literal) - 1 && memcmp(rule, literal, sizeof(literal) - 1) == 0)
    if (IS("on")) {
        user->enabled = true;
    } else if (IS("off")) {
        user->enabled = false;
    } else if (IS("nopass")) {
        clear_hashes(user);
        user->nopass = true;
    } else if (IS("resetpass")) {
        clear_hashes(user);
        user->nopass = false;
    } else if (IS("reset")) {
        clear_hashes(user);
        user->nopass = false;
        user->enabled = false;
        clear_grants(&user->namespaces, &user->namespace_count);
        clear_grants(&user->buckets, &user->bucket_count);
        if (apply_uid_rule(user, "resetuids", 9, error, error_size) != 0) return -1;
    } else if (STARTS("uid:") || IS("resetuids")) {
        if (apply_uid_rule(user, rule, length, error, error_size) != 0) return -1;
    } else if (IS("~*") || IS("allkeys")) {
        if (set_grant(&user->namespaces, &user->namespace_count, "*", 1, ACCESS_READ | ACCESS_WRITE,
                      true) != 0)
            goto out_of_memory;
    } else if (IS("+@all") || IS("allcommands")) {
        if (set_grant(&user->namespaces, &user->namespace_count, "*", 1, ACCESS_ALL, true) != 0 ||
            set_grant(&user->buckets, &user->bucket_count, "*", 1, ACCESS_ALL, true) != 0)
            goto out_of_memory;
    } else if (IS("-@all") || IS("nocommands") || IS("resetkeys")) {
        clear_grants(&user->namespaces, &user->namespace_count);
        clear_grants(&user->buckets, &user->bucket_count);
    } else if (IS("&*") || IS("allchannels") || IS("resetchannels")) {
        /* no Pub/Sub: nothing to grant */
    } else if (rule[0] == '>' || rule[0] == '<') {
        if (from_file) {
            snprintf(error, error_size,
                     "a users file holds password hashes only ('#HASH', from strata-server "
                     "--hash-password), never a password in clear");
            return -1;
        }
        if (length - 1 > ACCESS_PASSWORD_MAX) {
            snprintf(error, error_size, "the password is longer than %d bytes",
                     ACCESS_PASSWORD_MAX);
            return -1;
        }
        if (rule[0] == '>') {
            char hash[ACCESS_HASH_MAX];
            if (access_hash_password(rule + 1, length - 1, hash) != 0) goto out_of_memory;
            if (add_hash(user, hash, strlen(hash)) != 0) goto out_of_memory;
        } else {
            bool found = false;
            for (size_t i = 0; i < user->hash_count; i++) {
                if (crypto_pwhash_str_verify(user->hashes[i], rule + 1, length - 1) == 0) {
                    remove_hash(user, i);
                    found = true;
                    break;
                }
            }
            if (!found) {
                snprintf(error, error_size, "no such password");
                return -1;
            }
        }
    } else if (rule[0] == '#' || rule[0] == '!') {
        if (!is_password_hash(rule + 1, length - 1)) {
            snprintf(error, error_size,
                     "not an Argon2 password hash (make one with strata-server "
                     "--hash-password)");
            return -1;
        }
        if (rule[0] == '#') {
            if (add_hash(user, rule + 1, length - 1) != 0) goto out_of_memory;
        } else {
            bool found = false;
            for (size_t i = 0; i < user->hash_count; i++) {
                if (strlen(user->hashes[i]) == length - 1 &&
                    memcmp(user->hashes[i], rule + 1, length - 1) == 0) {
                    remove_hash(user, i);
                    found = true;
                    break;
                }
            }
            if (!found) {
                snprintf(error, error_size, "no such password hash");
                return -1;
            }
        }
    } else if (STARTS("namespace:") || STARTS("bucket:")) {
        bool namespace = STARTS("namespace:");
        const char *pattern = rule + (namespace ? 10 : 7);
        const char *equals = memchr(pattern, '=', length - (size_t)(pattern - rule));
        unsigned rights;
        if (equals == NULL || equals == pattern || !is_word(pattern, (size_t)(equals - pattern)) ||
            parse_rights(equals + 1, length - (size_t)(equals + 1 - rule), &rights) != 0) {
            snprintf(error, error_size,
                     "expected %s:PATTERN=RIGHTS, RIGHTS a list of read, write, admin, all, "
                     "none",
                     namespace ? "namespace" : "bucket");
            return -1;
        }
        int status = namespace ? set_grant(&user->namespaces, &user->namespace_count, pattern,
                                           (size_t)(equals - pattern), rights, false)
                               : set_grant(&user->buckets, &user->bucket_count, pattern,
                                           (size_t)(equals - pattern), rights, false);
        if (status != 0) goto out_of_memory;
    } else if (STARTS("s3key:")) {
        const char *key = rule + 6;
        size_t rest = length - 6;
        const char *colon = memchr(key, ':', rest);
        size_t key_length = colon != NULL ? (size_t)(colon - key) : rest;
        const char *secret = colon != NULL ? colon + 1 : NULL;
        size_t secret_length = colon != NULL ? rest - key_length - 1 : 0;
        if (!is_word(key, key_length) || key_length > ACCESS_NAME_MAX ||
            (secret != NULL &&
             (!is_word(secret, secret_length) || secret_length > ACCESS_SECRET_MAX))) {
            snprintf(error, error_size,
                     "expected s3key:ACCESS_KEY:SECRET (or s3key:ACCESS_KEY to remove it)");
            return -1;
        }
        for (size_t i = 0; i < user->key_count; i++) {
            if (strlen(user->keys[i].access_key) != key_length ||
                memcmp(user->keys[i].access_key, key, key_length) != 0) {
                continue;
            }
            free(user->keys[i].access_key);
            sodium_memzero(user->keys[i].secret, strlen(user->keys[i].secret));
            free(user->keys[i].secret);
            memmove(&user->keys[i], &user->keys[i + 1],
                    (user->key_count - i - 1) * sizeof(user->keys[0]));
            user->key_count--;
            break;
        }
        if (secret != NULL) {
            struct access_key *grown = realloc(user->keys, (user->key_count + 1) * sizeof(*grown));
            if (grown == NULL) goto out_of_memory;
            user->keys = grown;
            grown[user->key_count].access_key = strndup(key, key_length);
            grown[user->key_count].secret = strndup(secret, secret_length);
            user->key_count++;
            if (grown[user->key_count - 1].access_key == NULL ||
                grown[user->key_count - 1].secret == NULL)
                goto out_of_memory;
        }
    } else {
        snprintf(error, error_size, "Syntax error");
        return -1;
    }
    return 0;
out_of_memory:
    snprintf(error, error_size, "out of memory");
    return -1;
#undef STARTS
#undef IS
}

/* Writes into OUTPUT (SIZE bytes) how RULE (LENGTH bytes) may be shown in an error or a
 * log line: a rule that carries a password or a secret in clear is shown without it. */
static void rule_shown(const char *rule, size_t length, char *output, size_t size) {
    if (length > 0 && (rule[0] == '>' || rule[0] == '<')) {
        snprintf(output, size, "%c...", rule[0]);
    } else if (length >= 6 && memcmp(rule, "s3key:", 6) == 0) {
        snprintf(output, size, "s3key:...");
    } else {
        snprintf(output, size, "%.*s", (int)(length > 60 ? 60 : length), rule);
    }
}

/* True when an S3 access key is held by a user of TABLE other than EXCEPT. */
static bool key_taken(const struct access_table *table, const struct access_user *except,
                      const char *key) {
    for (size_t i = 0; i < table->count; i++) {
        const struct access_user *user = table->users[i];
        if (user == except || strcmp(user->name, except->name) == 0) continue;
        for (size_t k = 0; k < user->key_count; k++)
            if (strcmp(user->keys[k].access_key, key) == 0) return true;
    }
    return false;
}

/* True when TABLE lets anyone in: "default" on with no password. */
static bool table_open(const struct access_table *table) {
    const struct access_user *user = table_find(table, "default", 7);
    return user != NULL && user->enabled && user->nopass;
}

/* Refuses TABLE when the server listens beyond loopback and TABLE would let anyone in
 * (protected mode, kept while running). Returns 0, or -1 with a reason in ERROR. */
static int guard_table(struct access *access, const struct access_table *table, char *error,
                       size_t error_size) {
    if (!atomic_load(&access->guarded) || !table_open(table)) return 0;
    snprintf(error, error_size,
             "protected mode: the server listens beyond loopback, and this would let anyone in "
             "as 'default' without a password; give 'default' a password or switch it off "
             "(or start the server with --insecure yes)");
    return -1;
}

/* ---- the users file ------------------------------------------------------------- */

/* Reads PATH into a new table. Returns it, or NULL with a reason in ERROR. */
static struct access_table *load_file(const char *path, char *error, size_t error_size) {
    FILE *file = fopen(path, "re");
    if (file == NULL) {
        snprintf(error, error_size, "cannot read users file '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat status;
    /* Others may not touch it, nor its group write it: 0600, or 0640 with a group only
     * the service is in (a systemd DynamicUser reads it through its group). */
    if (fstat(fileno(file), &status) == 0 && (status.st_mode & 0027) != 0) {
        log_event(LOG_WARNING, "users_file_readable",
                  "file=%s mode=%03o advice=\"it holds S3 secrets and password hashes: chmod "
                  "600, or 640 with a group only the server is in\"",
                  path, (unsigned)(status.st_mode & 0777));
    }
    struct access_table *table = table_new();
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    int number = 0;
    char reason[256];
    if (table == NULL) goto out_of_memory;
    while ((length = getline(&line, &capacity, file)) >= 0) {
        number++;
        char *words[512];
        size_t word_count = 0;
        char *saved = NULL;
        for (char *word = strtok_r(line, " \t\r\n", &saved); word != NULL;
             word = strtok_r(NULL, " \t\r\n", &saved)) {
            if (word_count == sizeof(words) / sizeof(words[0])) {
                snprintf(reason, sizeof(reason), "too many rules");
                goto bad_line;
            }
            words[word_count++] = word;
        }
        if (word_count == 0 || words[0][0] == '#') continue;
        if (strcmp(words[0], "user") != 0 || word_count < 2) {
            snprintf(reason, sizeof(reason), "expected 'user NAME RULE...'");
            goto bad_line;
        }
        if (!is_word(words[1], strlen(words[1])) || strlen(words[1]) > ACCESS_NAME_MAX) {
            snprintf(reason, sizeof(reason), "bad user name");
            goto bad_line;
        }
        if (table_find(table, words[1], strlen(words[1])) != NULL) {
            snprintf(reason, sizeof(reason), "user '%s' appears twice", words[1]);
            goto bad_line;
        }
        struct access_user *user = user_new(words[1], strlen(words[1]));
        if (user == NULL) goto out_of_memory;
        for (size_t i = 2; i < word_count; i++) {
            char why[200];
            if (apply_rule(user, words[i], strlen(words[i]), true, why, sizeof(why)) != 0) {
                char shown[64];
                rule_shown(words[i], strlen(words[i]), shown, sizeof(shown));
                snprintf(reason, sizeof(reason), "rule '%s': %.180s", shown, why);
                user_free(user);
                goto bad_line;
            }
        }
        for (size_t k = 0; k < user->key_count; k++) {
            if (key_taken(table, user, user->keys[k].access_key)) {
                snprintf(reason, sizeof(reason), "S3 access key '%.40s' belongs to two users",
                         user->keys[k].access_key);
                user_free(user);
                goto bad_line;
            }
        }
        if (table_add(table, user) != 0) goto out_of_memory;
    }
    free(line);
    fclose(file);
    if (table_find(table, "default", 7) == NULL) {
        /* A users file without "default": anonymous connections may do nothing. */
        struct access_user *user = user_new("default", 7);
        if (user == NULL || table_add(table, user) != 0) {
            table_free(table);
            snprintf(error, error_size, "out of memory");
            return NULL;
        }
    }
    return table;
bad_line:
    snprintf(error, error_size, "users file '%s' line %d: %s", path, number, reason);
    goto fail;
out_of_memory:
    snprintf(error, error_size, "out of memory reading users file '%s'", path);
fail:
    free(line);
    fclose(file);
    if (table != NULL) table_free(table);
    return NULL;
}

/* Appends the users file line of USER to the text at *TEXT (*LENGTH bytes, *CAPACITY
 * allocated). Returns 0, or -1 if out of memory. */
static int describe_user(const struct access_user *user, char **text, size_t *length,
                         size_t *capacity) {
    size_t needed = 64 + strlen(user->name);
    for (size_t i = 0; i < user->hash_count; i++)
        needed += strlen(user->hashes[i]) + 2;
    for (size_t i = 0; i < user->namespace_count; i++)
        needed += strlen(user->namespaces[i].pattern) + 32;
    for (size_t i = 0; i < user->bucket_count; i++)
        needed += strlen(user->buckets[i].pattern) + 32;
    for (size_t i = 0; i < user->key_count; i++)
        needed += strlen(user->keys[i].access_key) + strlen(user->keys[i].secret) + 10;
    needed += user->uid_count * 16;
    if (*length + needed > *capacity) {
        size_t grown_capacity = (*length + needed) * 2;
        char *grown = realloc(*text, grown_capacity);
        if (grown == NULL) return -1;
        *text = grown;
        *capacity = grown_capacity;
    }
    char *out = *text + *length;
    char *start = out;
    out += sprintf(out, "user %s %s", user->name, user->enabled ? "on" : "off");
    if (user->nopass) out += sprintf(out, " nopass");
    for (size_t i = 0; i < user->hash_count; i++)
        out += sprintf(out, " #%s", user->hashes[i]);
    for (int kind = 0; kind < 2; kind++) {
        const struct access_grant *grants = kind == 0 ? user->namespaces : user->buckets;
        size_t count = kind == 0 ? user->namespace_count : user->bucket_count;
        for (size_t i = 0; i < count; i++) {
            unsigned rights = grants[i].rights;
            out += sprintf(out, " %s:%s=", kind == 0 ? "namespace" : "bucket", grants[i].pattern);
            const char *separator = "";
            if (rights & ACCESS_READ) out += sprintf(out, "%sread", separator), separator = ",";
            if (rights & ACCESS_WRITE) out += sprintf(out, "%swrite", separator), separator = ",";
            if (rights & ACCESS_ADMIN) out += sprintf(out, "%sadmin", separator);
        }
    }
    for (size_t i = 0; i < user->key_count; i++)
        out += sprintf(out, " s3key:%s:%s", user->keys[i].access_key, user->keys[i].secret);
    for (size_t i = 0; i < user->uid_count; i++)
        out += sprintf(out, " uid:%u", (unsigned)user->uids[i]);
    *out++ = '\n';
    *out = '\0';
    *length += (size_t)(out - start);
    return 0;
}

static char *describe_table(const struct access_table *table) {
    char *text = NULL;
    size_t length = 0, capacity = 0;
    for (size_t i = 0; i < table->count; i++) {
        if (describe_user(table->users[i], &text, &length, &capacity) != 0) {
            free(text);
            return NULL;
        }
    }
    if (text == NULL) text = calloc(1, 1);
    return text;
}

/* ---- creation ----------------------------------------------------------------------- */

struct access *access_create(const struct options *options, char *error, size_t error_size) {
    if (sodium_init() < 0) {
        snprintf(error, error_size, "libsodium failed to start");
        return NULL;
    }
    const char *users_file = options_text(options, ACCESS_OPTION(users));
    const char *requirepass = options_text(options, ACCESS_OPTION(requirepass));
    if (users_file[0] != '\0' && requirepass[0] != '\0') {
        snprintf(error, error_size,
                 "--users and --requirepass both define users: give the user 'default' a "
                 "password in the users file instead");
        return NULL;
    }
    struct access *access = calloc(1, sizeof(*access));
    if (access == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&access->lock, NULL);
    pthread_mutex_init(&access->change_lock, NULL);
    pthread_mutex_init(&access->throttle_lock, NULL);
    randombytes_buf(access->digest_key, sizeof(access->digest_key));
    struct access_table *table = NULL;
    if (users_file[0] != '\0') {
        access->users_file = strdup(users_file);
        table = load_file(users_file, error, error_size);
        if (table == NULL) {
            access_destroy(access);
            return NULL;
        }
    } else {
        table = table_new();
        struct access_user *user = user_new("default", 7);
        char why[200];
        if (table == NULL || user == NULL) {
            user_free(user);
            goto out_of_memory;
        }
        user->enabled = true;
        user->nopass = requirepass[0] == '\0';
        if (apply_rule(user, "+@all", 5, false, why, sizeof(why)) != 0) {
            user_free(user);
            goto out_of_memory;
        }
        if (requirepass[0] != '\0') {
            char hash[ACCESS_HASH_MAX];
            if (strlen(requirepass) > ACCESS_PASSWORD_MAX) {
                snprintf(error, error_size, "--requirepass is longer than %d bytes",
                         ACCESS_PASSWORD_MAX);
                user_free(user);
                table_free(table);
                access_destroy(access);
                return NULL;
            }
            if (access_hash_password(requirepass, strlen(requirepass), hash) != 0 ||
                add_hash(user, hash, strlen(hash)) != 0) {
                user_free(user);
                goto out_of_memory;
            }
        }
        if (table_add(table, user) != 0) goto out_of_memory;
    }
    atomic_store(&access->current, table);
    return access;
out_of_memory:
    if (table != NULL) table_free(table);
    snprintf(error, error_size, "out of memory");
    access_destroy(access);
    return NULL;
}

void access_destroy(struct access *access) {
    if (access == NULL) return;
    table_release(atomic_load(&access->current));
    free(access->users_file);
    pthread_mutex_destroy(&access->lock);
    pthread_mutex_destroy(&access->change_lock);
    pthread_mutex_destroy(&access->throttle_lock);
    sodium_memzero(access->digest_key, sizeof(access->digest_key));
    free(access);
}

bool access_protected(struct access *access) {
    struct access_table *table = table_acquire(access);
    bool open = table_open(table);
    table_release(table);
    return open;
}

void access_guard_protected_mode(struct access *access) {
    atomic_store(&access->guarded, true);
}

int access_reload(struct access *access, char *error, size_t error_size) {
    if (access->users_file == NULL) {
        snprintf(error, error_size, "no users file: start the server with --users FILE");
        return -1;
    }
    pthread_mutex_lock(&access->change_lock);
    struct access_table *table = load_file(access->users_file, error, error_size);
    if (table != NULL && guard_table(access, table, error, error_size) != 0) {
        table_free(table);
        table = NULL;
    }
    if (table != NULL) table_publish(access, table);
    pthread_mutex_unlock(&access->change_lock);
    if (table == NULL) return -1;
    log_event(LOG_INFO, "users_loaded", "file=%s users=%zu", access->users_file, table->count);
    return 0;
}

int access_save(struct access *access, char *error, size_t error_size) {
    if (access->users_file == NULL) {
        snprintf(error, error_size, "no users file: start the server with --users FILE");
        return -1;
    }
    pthread_mutex_lock(&access->change_lock);
    struct access_table *table = table_acquire(access);
    char *text = describe_table(table);
    table_release(table);
    int status = -1;
    char temporary[4096];
    snprintf(temporary, sizeof(temporary), "%s.tmp", access->users_file);
    int fd = -1;
    if (text == NULL) {
        snprintf(error, error_size, "out of memory");
        goto done;
    }
    fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(error, error_size, "cannot write '%s': %s", temporary, strerror(errno));
        goto done;
    }
    static const char header[] = "# strata users file (docs/security.md), written by ACL SAVE\n";
    size_t length = strlen(text);
    if (write(fd, header, sizeof(header) - 1) != (ssize_t)(sizeof(header) - 1) ||
        write(fd, text, length) != (ssize_t)length || fsync(fd) != 0) {
        snprintf(error, error_size, "cannot write '%s': %s", temporary, strerror(errno));
        unlink(temporary);
        goto done;
    }
    if (rename(temporary, access->users_file) != 0) {
        snprintf(error, error_size, "cannot replace '%s': %s", access->users_file, strerror(errno));
        unlink(temporary);
        goto done;
    }
    status = 0;
done:
    if (fd >= 0) close(fd);
    if (text != NULL) {
        sodium_memzero(text, strlen(text));
        free(text);
    }
    pthread_mutex_unlock(&access->change_lock);
    return status;
}

int access_set_user(struct access *access, const char *name, const char *const *rules,
                    const size_t *rule_lengths, size_t count, char *error, size_t error_size) {
    size_t name_length = strlen(name);
    if (!is_word(name, name_length) || name_length > ACCESS_NAME_MAX) {
        snprintf(error, error_size, "Error in ACL SETUSER: bad user name");
        return -1;
    }
    pthread_mutex_lock(&access->change_lock);
    struct access_table *old = table_acquire(access);
    struct access_table *table = table_copy(old, NULL, 0, NULL);
    int status = -1;
    if (table == NULL) goto out_of_memory;
    struct access_user *changed = table_find(table, name, name_length);
    if (changed == NULL) {
        changed = user_new(name, name_length);
        if (changed == NULL || table_add(table, changed) != 0) goto out_of_memory;
    }
    for (size_t i = 0; i < count; i++) {
        char why[256];
        if (apply_rule(changed, rules[i], rule_lengths[i], false, why, sizeof(why)) != 0) {
            char shown[64];
            rule_shown(rules[i], rule_lengths[i], shown, sizeof(shown));
            snprintf(error, error_size, "Error in ACL SETUSER modifier '%s': %s", shown, why);
            goto done;
        }
    }
    for (size_t k = 0; k < changed->key_count; k++) {
        if (key_taken(table, changed, changed->keys[k].access_key)) {
            snprintf(error, error_size,
                     "Error in ACL SETUSER: S3 access key '%.40s' belongs to another user",
                     changed->keys[k].access_key);
            goto done;
        }
    }
    if (guard_table(access, table, error, error_size) != 0) goto done;
    table_publish(access, table);
    table = NULL;
    status = 0;
    goto done;
out_of_memory:
    snprintf(error, error_size, "out of memory");
done:
    if (table != NULL) table_free(table);
    table_release(old);
    pthread_mutex_unlock(&access->change_lock);
    return status;
}

int access_delete_users(struct access *access, const char *const *names, size_t count, char *error,
                        size_t error_size) {
    for (size_t i = 0; i < count; i++) {
        if (strcmp(names[i], "default") == 0) {
            snprintf(error, error_size, "The 'default' user cannot be removed");
            return -1;
        }
    }
    pthread_mutex_lock(&access->change_lock);
    struct access_table *old = table_acquire(access);
    int deleted = 0;
    struct access_table *table = table_copy(old, names, count, &deleted);
    table_release(old);
    if (table == NULL) {
        snprintf(error, error_size, "out of memory");
        deleted = -1;
    } else {
        table_publish(access, table);
    }
    pthread_mutex_unlock(&access->change_lock);
    return deleted;
}

char *access_describe_all(struct access *access) {
    struct access_table *table = table_acquire(access);
    char *text = describe_table(table);
    table_release(table);
    return text;
}

/* ---- authentication --------------------------------------------------------------- */

/* Copies PEER's address without its port ("1.2.3.4:5" -> "1.2.3.4", "[::1]:5" -> "::1");
 * a Unix-socket peer is kept whole. */
static void peer_address(const char *peer, char *output, size_t output_size) {
    if (peer == NULL) peer = "?";
    if (strncmp(peer, "unix", 4) == 0) {
        /* A Unix-socket peer ("unix:PID") is one process: one local process that fails
         * must not lock every other local client out. */
        snprintf(output, output_size, "%s", peer);
        return;
    }
    const char *start = peer;
    const char *end = strrchr(peer, ':');
    if (peer[0] == '[') {
        start = peer + 1;
        end = strchr(start, ']');
    }
    if (end == NULL || end < start) end = peer + strlen(peer);
    snprintf(output, output_size, "%.*s", (int)(end - start), start);
}

static struct throttle_entry *throttle_slot(struct access *access, const char *address) {
    uint64_t hash = 1469598103934665603ull;
    for (const char *c = address; *c; c++)
        hash = (hash ^ (unsigned char)*c) * 1099511628211ull;
    return &access->throttle[hash % THROTTLE_SLOTS];
}

/* How long ADDRESS is still refused, in ms; 0: it may try. */
static int64_t throttle_check(struct access *access, const char *address, int64_t now) {
    pthread_mutex_lock(&access->throttle_lock);
    struct throttle_entry *entry = throttle_slot(access, address);
    int64_t wait = 0;
    if (strcmp(entry->address, address) == 0 && entry->refused_until_ms > now)
        wait = entry->refused_until_ms - now;
    pthread_mutex_unlock(&access->throttle_lock);
    return wait;
}

/* Records the outcome of an attempt from ADDRESS. Returns its failures so far. */
static uint32_t throttle_record(struct access *access, const char *address, bool failed,
                                int64_t now) {
    pthread_mutex_lock(&access->throttle_lock);
    struct throttle_entry *entry = throttle_slot(access, address);
    if (strcmp(entry->address, address) != 0 || now - entry->last_failure_ms > THROTTLE_FORGET_MS) {
        memset(entry, 0, sizeof(*entry));
        snprintf(entry->address, sizeof(entry->address), "%s", address);
    }
    uint32_t failures = 0;
    if (!failed) {
        entry->failures = 0;
        entry->refused_until_ms = 0;
    } else {
        failures = ++entry->failures;
        entry->last_failure_ms = now;
        if (failures >= THROTTLE_FREE_FAILURE) {
            uint32_t shift = failures - THROTTLE_FREE_FAILURE;
            int64_t delay = shift >= 16 ? THROTTLE_MAX_DELAY_MS : (int64_t)1000 << shift;
            if (delay > THROTTLE_MAX_DELAY_MS) delay = THROTTLE_MAX_DELAY_MS;
            entry->refused_until_ms = now + delay;
        }
    }
    pthread_mutex_unlock(&access->throttle_lock);
    return failures;
}

/* True when PASSWORD is in USER's cache of verified passwords (DIGEST is its keyed
 * digest); compares every slot, in constant time each. */
static bool verified_contains(struct access_user *user, const unsigned char *digest) {
    bool found = false;
    pthread_mutex_lock(&user->verified->lock);
    for (int i = 0; i < user->verified->count; i++)
        found |= sodium_memcmp(user->verified->digests[i], digest, crypto_generichash_BYTES) == 0;
    pthread_mutex_unlock(&user->verified->lock);
    return found;
}

static void verified_add(struct access_user *user, const unsigned char *digest) {
    pthread_mutex_lock(&user->verified->lock);
    struct access_verified *verified = user->verified;
    memcpy(verified->digests[verified->next], digest, crypto_generichash_BYTES);
    verified->next = (verified->next + 1) % VERIFIED_SLOTS;
    if (verified->count < VERIFIED_SLOTS) verified->count++;
    pthread_mutex_unlock(&user->verified->lock);
}

/* Checks PASSWORD against a hash of a random password made at the cost new hashes
 * have (made once, at the first need), so that an unknown user or a user with no hash
 * costs what a known one does. */
static void check_dummy(struct access *access, const char *password, size_t password_length) {
    pthread_mutex_lock(&access->throttle_lock);
    if (access->dummy_hash[0] == '\0') {
        unsigned char dummy[32];
        randombytes_buf(dummy, sizeof(dummy));
        if (access_hash_password((const char *)dummy, sizeof(dummy), access->dummy_hash) != 0)
            access->dummy_hash[0] = '\0';
    }
    char hash[crypto_pwhash_STRBYTES];
    memcpy(hash, access->dummy_hash, sizeof(hash));
    pthread_mutex_unlock(&access->throttle_lock);
    if (hash[0] == '\0') return;
    int ignored = crypto_pwhash_str_verify(hash, password, password_length);
    (void)ignored;
}

/* True when PASSWORD is one of USER's (USER may be NULL: then the same work is done
 * against a dummy hash, so an unknown user costs what a known one does). */
static bool check_password(struct access *access, struct access_user *user, const char *password,
                           size_t password_length) {
    if (user != NULL && user->nopass) return true;
    unsigned char digest[crypto_generichash_BYTES];
    crypto_generichash(digest, sizeof(digest), (const unsigned char *)password, password_length,
                       access->digest_key, sizeof(access->digest_key));
    if (user != NULL && verified_contains(user, digest)) return true;
    bool matched = false;
    if (user == NULL || user->hash_count == 0) check_dummy(access, password, password_length);
    for (size_t i = 0; user != NULL && i < user->hash_count && !matched; i++)
        matched = crypto_pwhash_str_verify(user->hashes[i], password, password_length) == 0;
    if (matched) verified_add(user, digest);
    sodium_memzero(digest, sizeof(digest));
    return matched;
}

/* Makes USER of TABLE (a reference handed over) IDENTITY's user. */
static void identity_set(struct access_identity *identity, struct access_table *table,
                         const struct access_user *user) {
    access_identity_release(identity);
    identity->table = table;
    identity->user = user;
    snprintf(identity->name, sizeof(identity->name), "%s", user->name);
}

enum access_failure access_authenticate(struct access *access, struct access_identity *identity,
                                        const char *user_name, size_t user_length,
                                        const char *password, size_t password_length,
                                        const char *peer, int64_t *retry_ms) {
    char address[64];
    peer_address(peer, address, sizeof(address));
    int64_t now = clock_monotonic_ms();
    *retry_ms = throttle_check(access, address, now);
    char quoted[ACCESS_NAME_MAX * 4 + 8];
    if (user_name == NULL) {
        user_name = "default";
        user_length = 7;
    }
    log_quote(quoted, sizeof(quoted), user_name,
              user_length > ACCESS_NAME_MAX ? ACCESS_NAME_MAX : user_length);
    if (*retry_ms > 0) {
        metric_add(ACCESS_METRIC(auth_throttled), 1);
        log_event(LOG_WARNING, "auth_throttled", "user=%s client=%s retry_ms=%lld", quoted,
                  peer != NULL ? peer : "?", (long long)*retry_ms);
        return ACCESS_THROTTLED;
    }
    struct access_table *table = table_acquire(access);
    struct access_user *user =
        user_length <= ACCESS_NAME_MAX ? table_find(table, user_name, user_length) : NULL;
    bool matched = password_length <= ACCESS_PASSWORD_MAX &&
                   check_password(access, user, password, password_length);
    if (matched && user != NULL && user->enabled) {
        identity_set(identity, table, user);
        throttle_record(access, address, false, now);
        metric_add(ACCESS_METRIC(auth_successes), 1);
        return ACCESS_OK;
    }
    table_release(table);
    uint32_t failures = throttle_record(access, address, true, clock_monotonic_ms());
    metric_add(ACCESS_METRIC(auth_failures), 1);
    log_event(LOG_WARNING, "auth_failed", "user=%s client=%s reason=\"%s\" failures=%u", quoted,
              peer != NULL ? peer : "?",
              user == NULL ? "unknown user"
              : !matched   ? "wrong password"
                           : "user is off",
              failures);
    return ACCESS_WRONGPASS;
}

bool access_identify_key(struct access *access, struct access_identity *identity,
                         const char *access_key, size_t access_key_length, char *secret,
                         size_t secret_size) {
    struct access_table *table = table_acquire(access);
    for (size_t i = 0; i < table->count; i++) {
        const struct access_user *user = table->users[i];
        for (size_t k = 0; k < user->key_count; k++) {
            const struct access_key *key = &user->keys[k];
            if (strlen(key->access_key) != access_key_length ||
                memcmp(key->access_key, access_key, access_key_length) != 0)
                continue;
            if (!user->enabled || strlen(key->secret) + 1 > secret_size) break;
            memcpy(secret, key->secret, strlen(key->secret) + 1);
            identity_set(identity, table, user);
            return true;
        }
    }
    table_release(table);
    return false;
}

bool access_identify_peer(struct access *access, struct access_identity *identity, uint32_t uid) {
    struct access_table *table = table_acquire(access);
    for (size_t i = 0; i < table->count; i++) {
        const struct access_user *user = table->users[i];
        if (!user->enabled) continue;
        for (size_t k = 0; k < user->uid_count; k++) {
            if (user->uids[k] != uid) continue;
            identity_set(identity, table, user);
            metric_add(ACCESS_METRIC(auth_successes), 1);
            return true;
        }
    }
    table_release(table);
    return false;
}

/* ---- identities ---------------------------------------------------------------------- */

void access_identity_init(struct access *access, struct access_identity *identity) {
    memset(identity, 0, sizeof(*identity));
    struct access_table *table = table_acquire(access);
    const struct access_user *user = table_find(table, "default", 7);
    if (user != NULL && user->enabled && user->nopass) {
        identity_set(identity, table, user);
    } else {
        table_release(table);
    }
}

void access_identity_release(struct access_identity *identity) {
    if (identity->user != NULL) table_release(identity->table);
    identity->table = NULL;
    identity->user = NULL;
}

const struct access_user *access_identity_current(struct access *access,
                                                  struct access_identity *identity) {
    if (identity->user == NULL) return NULL;
    if (atomic_load_explicit(&access->current, memory_order_acquire) == identity->table)
        return identity->user;
    struct access_table *table = table_acquire(access);
    const struct access_user *user = table_find(table, identity->name, strlen(identity->name));
    access_identity_release(identity);
    if (user == NULL || !user->enabled) {
        table_release(table);
        return NULL;
    }
    identity->table = table;
    identity->user = user;
    return user;
}

/* ---- rights --------------------------------------------------------------------------- */

static unsigned grant_rights(const struct access_grant *grants, size_t count, const char *name,
                             size_t name_length) {
    unsigned rights = 0;
    for (size_t i = 0; i < count; i++) {
        const char *pattern = grants[i].pattern;
        if (glob_match((const unsigned char *)pattern, strlen(pattern), (const unsigned char *)name,
                       name_length))
            rights |= grants[i].rights;
    }
    return rights;
}

unsigned access_namespace_rights(const struct access_user *user, const char *name,
                                 size_t name_length) {
    if (user == NULL) return 0;
    return grant_rights(user->namespaces, user->namespace_count, name, name_length);
}

unsigned access_bucket_rights(const struct access_user *user, const char *name,
                              size_t name_length) {
    if (user == NULL) return 0;
    return grant_rights(user->buckets, user->bucket_count, name, name_length);
}

bool access_is_admin(const struct access_user *user) {
    if (user == NULL) return false;
    for (size_t i = 0; i < user->namespace_count; i++)
        if (strcmp(user->namespaces[i].pattern, "*") == 0 &&
            (user->namespaces[i].rights & ACCESS_ADMIN))
            return true;
    return false;
}

bool access_equal(const void *a, size_t a_length, const void *b, size_t b_length) {
    /* Digests of both, compared in constant time: the time depends on the lengths
     * only, never on where the bytes differ. */
    unsigned char digest_a[crypto_generichash_BYTES], digest_b[crypto_generichash_BYTES];
    crypto_generichash(digest_a, sizeof(digest_a), a, a_length, NULL, 0);
    crypto_generichash(digest_b, sizeof(digest_b), b, b_length, NULL, 0);
    return sodium_memcmp(digest_a, digest_b, sizeof(digest_a)) == 0 && a_length == b_length;
}

int access_hash_password(const char *password, size_t password_length, char *output) {
    if (sodium_init() < 0) return -1;
    return crypto_pwhash_str(output, password, password_length, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE);
}
