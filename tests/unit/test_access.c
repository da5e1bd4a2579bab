/* Unit tests of src/access/: the users file, rules, authentication, throttling, rights,
 * reloads, and identities that follow a change of the users. */
#include "access/access.h"

#include "test.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char directory[] = "/tmp/strata-access-XXXXXX";
static char users_path[256];
/* One hash of "secret", made once. */
static char secret_hash[ACCESS_HASH_MAX];

static void write_users(const char *text) {
    FILE *file = fopen(users_path, "w");
    fputs(text, file);
    fclose(file);
    chmod(users_path, 0600);
}

/* An access over the users file (or, with USERS NULL, over REQUIREPASS). */
static struct access *create(const char *users, const char *requirepass, char *error,
                             size_t error_size) {
    struct options options;
    if (options_init(&options) != 0) return NULL;
    if (users != NULL) {
        write_users(users);
        options_set(&options, ACCESS_OPTION(users), users_path, false, error, error_size);
    }
    if (requirepass != NULL)
        options_set(&options, ACCESS_OPTION(requirepass), requirepass, false, error, error_size);
    struct access *access = access_create(&options, error, error_size);
    options_free(&options);
    return access;
}

static enum access_failure login(struct access *access, struct access_identity *identity,
                                 const char *user, const char *password, const char *peer) {
    int64_t retry;
    return access_authenticate(access, identity, user, user != NULL ? strlen(user) : 0, password,
                               strlen(password), peer, &retry);
}

static void test_no_users_is_protected_and_open(void) {
    char error[256];
    struct access *access = create(NULL, NULL, error, sizeof(error));
    REQUIRE(access != NULL);
    CHECK(access_protected(access));
    struct access_identity identity;
    access_identity_init(access, &identity);
    const struct access_user *user = access_identity_current(access, &identity);
    REQUIRE(user != NULL);
    CHECK(strcmp(user->name, "default") == 0);
    CHECK(access_namespace_rights(user, "kv", 2) == ACCESS_ALL);
    CHECK(access_bucket_rights(user, "models", 6) == ACCESS_ALL);
    CHECK(access_is_admin(user));
    access_identity_release(&identity);
    access_destroy(access);
}

static void test_requirepass(void) {
    char error[256];
    struct access *access = create(NULL, "hunter2", error, sizeof(error));
    REQUIRE(access != NULL);
    CHECK(!access_protected(access));
    struct access_identity identity;
    access_identity_init(access, &identity);
    CHECK(access_identity_current(access, &identity) == NULL);
    CHECK(login(access, &identity, NULL, "wrong", "127.0.0.2:1") == ACCESS_WRONGPASS);
    CHECK(access_identity_current(access, &identity) == NULL);
    CHECK(login(access, &identity, NULL, "hunter2", "127.0.0.2:1") == ACCESS_OK);
    const struct access_user *user = access_identity_current(access, &identity);
    CHECK(user != NULL && strcmp(user->name, "default") == 0 && access_is_admin(user));
    /* Again: from the verified cache this time, same answer. */
    CHECK(login(access, &identity, "default", "hunter2", "127.0.0.2:2") == ACCESS_OK);
    CHECK(login(access, &identity, "default", "hunter", "127.0.0.2:2") == ACCESS_WRONGPASS);
    access_identity_release(&identity);
    /* The password never reaches the description in clear. */
    char *text = access_describe_all(access);
    REQUIRE(text != NULL);
    CHECK(strstr(text, "hunter2") == NULL);
    CHECK(strstr(text, "#$argon2id$") != NULL);
    free(text);
    access_destroy(access);
}

static void test_users_file_rights(void) {
    char error[256], text[2048];
    snprintf(text, sizeof(text),
             "# a comment\n"
             "\n"
             "user alice on #%s namespace:kv=read,write bucket:models=read\n"
             "user ops on #%s namespace:*=all bucket:*=all\n"
             "user loader on nopass s3key:LOADERKEY:loadersecret bucket:data-*=read,write\n"
             "user gone off #%s namespace:*=all\n",
             secret_hash, secret_hash, secret_hash);
    struct access *access = create(text, NULL, error, sizeof(error));
    REQUIRE(access != NULL);
    /* No default in the file: a new connection is nobody. */
    CHECK(!access_protected(access));
    struct access_identity identity;
    access_identity_init(access, &identity);
    CHECK(access_identity_current(access, &identity) == NULL);

    CHECK(login(access, &identity, "alice", "secret", "10.0.0.1:5") == ACCESS_OK);
    const struct access_user *alice = access_identity_current(access, &identity);
    REQUIRE(alice != NULL);
    CHECK(access_namespace_rights(alice, "kv", 2) == (ACCESS_READ | ACCESS_WRITE));
    CHECK(access_namespace_rights(alice, "other", 5) == 0);
    CHECK(access_bucket_rights(alice, "models", 6) == ACCESS_READ);
    CHECK(!access_is_admin(alice));

    CHECK(login(access, &identity, "gone", "secret", "10.0.0.1:5") == ACCESS_WRONGPASS);
    CHECK(login(access, &identity, "nobody", "secret", "10.0.0.1:5") == ACCESS_WRONGPASS);
    /* A failed AUTH leaves the identity as it was. */
    CHECK(access_identity_current(access, &identity) == alice);

    char secret[ACCESS_SECRET_MAX + 1];
    struct access_identity keyed;
    memset(&keyed, 0, sizeof(keyed));
    CHECK(!access_identify_key(access, &keyed, "NOKEY", 5, secret, sizeof(secret)));
    CHECK(access_identify_key(access, &keyed, "LOADERKEY", 9, secret, sizeof(secret)));
    CHECK(strcmp(secret, "loadersecret") == 0);
    const struct access_user *loader = access_identity_current(access, &keyed);
    CHECK(loader != NULL && access_bucket_rights(loader, "data-2026", 9) == 3);
    CHECK(access_bucket_rights(loader, "models", 6) == 0);
    access_identity_release(&keyed);
    access_identity_release(&identity);
    access_destroy(access);
}

static void test_bad_users_files(void) {
    char error[256];
    CHECK(create("user alice on >plain\n", NULL, error, sizeof(error)) == NULL);
    CHECK(strstr(error, "line 1") != NULL && strstr(error, "hash") != NULL);
    CHECK(strstr(error, "plain") == NULL); /* a password in clear is never echoed */
    CHECK(create("user a on\nuser a off\n", NULL, error, sizeof(error)) == NULL);
    CHECK(strstr(error, "line 2") != NULL);
    CHECK(create("user a on namespace:kv=fly\n", NULL, error, sizeof(error)) == NULL);
    CHECK(create("usr a on\n", NULL, error, sizeof(error)) == NULL);
    CHECK(create("user a on #notahash\n", NULL, error, sizeof(error)) == NULL);
    CHECK(create("user a s3key:K:1\nuser b s3key:K:2\n", NULL, error, sizeof(error)) == NULL);
    CHECK(strstr(error, "two users") != NULL);
    /* --users and --requirepass together. */
    CHECK(create("user a on\n", "pw", error, sizeof(error)) == NULL);
    CHECK(strstr(error, "requirepass") != NULL);
    struct options options;
    REQUIRE(options_init(&options) == 0);
    options_set(&options, ACCESS_OPTION(users), "/nonexistent/users", false, error, sizeof(error));
    CHECK(access_create(&options, error, sizeof(error)) == NULL);
    CHECK(strstr(error, "/nonexistent/users") != NULL);
    options_free(&options);
}

static void test_throttle_after_failures(void) {
    char error[256], text[512];
    snprintf(text, sizeof(text), "user default on #%s namespace:*=all\n", secret_hash);
    struct access *access = create(text, NULL, error, sizeof(error));
    REQUIRE(access != NULL);
    struct access_identity identity;
    access_identity_init(access, &identity);
    int64_t retry = 0;
    enum access_failure result = ACCESS_OK;
    int attempts = 0;
    for (; attempts < 10; attempts++) {
        result = access_authenticate(access, &identity, NULL, 0, "wrong", 5, "192.0.2.9:1", &retry);
        if (result == ACCESS_THROTTLED) break;
    }
    CHECK(result == ACCESS_THROTTLED);
    CHECK(attempts == 5); /* five free failures, then a delay */
    CHECK(retry > 0 && retry <= 1000);
    /* Throttled: even the right password is refused until the delay passes ... */
    CHECK(login(access, &identity, NULL, "secret", "192.0.2.9:2") == ACCESS_THROTTLED);
    /* ... but another address is not slowed down. */
    CHECK(login(access, &identity, NULL, "secret", "192.0.2.10:2") == ACCESS_OK);
    /* Unix-socket peers are told apart by process. */
    for (int i = 0; i < 6; i++)
        login(access, &identity, NULL, "wrong", "unix:101");
    CHECK(login(access, &identity, NULL, "secret", "unix:101") == ACCESS_THROTTLED);
    CHECK(login(access, &identity, NULL, "secret", "unix:102") == ACCESS_OK);
    usleep((useconds_t)(retry + 50) * 1000);
    CHECK(login(access, &identity, NULL, "secret", "192.0.2.9:3") == ACCESS_OK);
    access_identity_release(&identity);
    access_destroy(access);
}

static void test_reload_and_setuser_follow_identities(void) {
    char error[256], text[1024];
    snprintf(text, sizeof(text),
             "user default on nopass namespace:*=read\nuser bob on #%s "
             "namespace:kv=read\n",
             secret_hash);
    struct access *access = create(text, NULL, error, sizeof(error));
    REQUIRE(access != NULL);
    CHECK(access_protected(access));
    struct access_identity identity;
    access_identity_init(access, &identity);
    REQUIRE(login(access, &identity, "bob", "secret", "127.0.0.1:9") == ACCESS_OK);
    const struct access_user *bob = access_identity_current(access, &identity);
    CHECK(access_namespace_rights(bob, "kv", 2) == ACCESS_READ);

    /* SETUSER: bob gains write; the identity sees it at its next look. */
    char second[ACCESS_HASH_MAX + 1] = "#";
    REQUIRE(crypto_pwhash_str(second + 1, "second", 6, crypto_pwhash_OPSLIMIT_MIN,
                              crypto_pwhash_MEMLIMIT_MIN) == 0);
    const char *rules[] = {"namespace:kv=read,write", second};
    size_t lengths[] = {strlen(rules[0]), strlen(rules[1])};
    CHECK(access_set_user(access, "bob", rules, lengths, 2, error, sizeof(error)) == 0);
    bob = access_identity_current(access, &identity);
    REQUIRE(bob != NULL);
    CHECK(access_namespace_rights(bob, "kv", 2) == (ACCESS_READ | ACCESS_WRITE));
    CHECK(bob->hash_count == 2);
    struct access_identity other;
    memset(&other, 0, sizeof(other));
    CHECK(login(access, &other, "bob", "second", "127.0.0.1:10") == ACCESS_OK);
    access_identity_release(&other);

    /* A bad rule changes nothing. */
    const char *bad[] = {"namespace:kv=all", "fly"};
    size_t bad_lengths[] = {strlen(bad[0]), strlen(bad[1])};
    CHECK(access_set_user(access, "bob", bad, bad_lengths, 2, error, sizeof(error)) != 0);
    CHECK(strstr(error, "'fly'") != NULL);
    const char *wrong[] = {"<not-her-password"};
    size_t wrong_lengths[] = {strlen(wrong[0])};
    CHECK(access_set_user(access, "bob", wrong, wrong_lengths, 1, error, sizeof(error)) != 0);
    CHECK(strstr(error, "no such password") != NULL && strstr(error, "not-her") == NULL);
    bob = access_identity_current(access, &identity);
    CHECK(bob != NULL && access_namespace_rights(bob, "kv", 2) == (ACCESS_READ | ACCESS_WRITE));

    /* SAVE writes hashes and rights; a reload reads them back. */
    CHECK(access_save(access, error, sizeof(error)) == 0);
    FILE *file = fopen(users_path, "r");
    REQUIRE(file != NULL);
    char saved[4096] = {0};
    size_t got = fread(saved, 1, sizeof(saved) - 1, file);
    fclose(file);
    CHECK(got > 0 && strstr(saved, "second") == NULL && strstr(saved, "namespace:kv=read,write"));
    struct stat status;
    CHECK(stat(users_path, &status) == 0 && (status.st_mode & 0777) == 0600);

    /* A save that cannot write its temporary file is an error, and the file stays. */
    char temporary[300];
    snprintf(temporary, sizeof(temporary), "%s.tmp", users_path);
    REQUIRE(mkdir(temporary, 0700) == 0);
    CHECK(access_save(access, error, sizeof(error)) != 0);
    CHECK(strstr(error, "cannot write") != NULL);
    rmdir(temporary);
    FILE *kept = fopen(users_path, "r");
    REQUIRE(kept != NULL);
    char again[4096] = {0};
    CHECK(fread(again, 1, sizeof(again) - 1, kept) == got && strcmp(again, saved) == 0);
    fclose(kept);

    /* The file changes under it: bob switched off. Reload; the identity loses bob. */
    write_users("user default on nopass\nuser bob off\n");
    CHECK(access_reload(access, error, sizeof(error)) == 0);
    CHECK(access_identity_current(access, &identity) == NULL);
    /* A broken file keeps the users as they are. */
    write_users("user bob on >clear\n");
    CHECK(access_reload(access, error, sizeof(error)) != 0);
    CHECK(access_protected(access));

    const char *names[] = {"default"};
    CHECK(access_delete_users(access, names, 1, error, sizeof(error)) == -1);
    const char *bobs[] = {"bob", "nobody"};
    CHECK(access_delete_users(access, bobs, 2, error, sizeof(error)) == 1);
    char *all = access_describe_all(access);
    CHECK(all != NULL && strstr(all, "bob") == NULL && strstr(all, "user default on nopass"));
    free(all);
    access_identity_release(&identity);
    access_destroy(access);
}

static void test_protected_mode_kept_while_running(void) {
    char error[256], text[512];
    snprintf(text, sizeof(text), "user default on #%s namespace:*=all\n", secret_hash);
    struct access *access = create(text, NULL, error, sizeof(error));
    REQUIRE(access != NULL);
    access_guard_protected_mode(access);
    const char *rules[] = {"nopass"};
    size_t lengths[] = {6};
    CHECK(access_set_user(access, "default", rules, lengths, 1, error, sizeof(error)) != 0);
    CHECK(strstr(error, "protected mode") != NULL);
    write_users("user default on nopass\n");
    CHECK(access_reload(access, error, sizeof(error)) != 0);
    CHECK(strstr(error, "protected mode") != NULL);
    CHECK(!access_protected(access));
    write_users("user default off\nuser ops on nopass namespace:*=all\n");
    CHECK(access_reload(access, error, sizeof(error)) == 0); /* default stays closed */
    access_destroy(access);
}

static void test_redis_style_rules(void) {
    char error[256];
    struct access *access = create("user default on nopass\n", NULL, error, sizeof(error));
    REQUIRE(access != NULL);
    const char *rules[] = {"reset", "on", "nopass", "~*", "&*", "+@all"};
    size_t lengths[6];
    for (int i = 0; i < 6; i++)
        lengths[i] = strlen(rules[i]);
    CHECK(access_set_user(access, "carol", rules, lengths, 6, error, sizeof(error)) == 0);
    struct access_identity identity;
    memset(&identity, 0, sizeof(identity));
    CHECK(login(access, &identity, "carol", "anything", "127.0.0.1:1") == ACCESS_OK);
    const struct access_user *carol = access_identity_current(access, &identity);
    CHECK(carol != NULL && access_is_admin(carol) &&
          access_namespace_rights(carol, "x", 1) == ACCESS_ALL);
    access_identity_release(&identity);
    access_destroy(access);
}

/* uid:N rules: a Unix-socket peer with that uid is the user, without a password. */
static void test_peer_uids(void) {
    char error[256], text[512];
    snprintf(text, sizeof(text),
             "user local on #%s uid:1000 uid:0 namespace:kv=read\n"
             "user switched off uid:1001 namespace:*=all\n",
             secret_hash);
    struct access *access = create(text, NULL, error, sizeof(error));
    REQUIRE(access != NULL);
    struct access_identity identity;
    access_identity_init(access, &identity);
    CHECK(access_identity_current(access, &identity) == NULL);
    CHECK(!access_identify_peer(access, &identity, 1001)); /* its user is off */
    CHECK(!access_identify_peer(access, &identity, 4242));
    CHECK(access_identity_current(access, &identity) == NULL);
    CHECK(access_identify_peer(access, &identity, 0));
    const struct access_user *local = access_identity_current(access, &identity);
    CHECK(local != NULL && strcmp(local->name, "local") == 0);
    CHECK(access_namespace_rights(local, "kv", 2) == ACCESS_READ);
    access_identity_release(&identity);
    /* The rules survive a description (ACL SAVE) and go with resetuids and reset. */
    char *all = access_describe_all(access);
    REQUIRE(all != NULL);
    CHECK(strstr(all, " uid:1000 uid:0") != NULL);
    free(all);
    const char *rules[] = {"resetuids", "uid:77"};
    size_t lengths[] = {9, 6};
    CHECK(access_set_user(access, "local", rules, lengths, 2, error, sizeof(error)) == 0);
    CHECK(!access_identify_peer(access, &identity, 0));
    CHECK(access_identify_peer(access, &identity, 77));
    access_identity_release(&identity);
    const char *reset[] = {"reset", "on"};
    size_t reset_lengths[] = {5, 2};
    CHECK(access_set_user(access, "local", reset, reset_lengths, 2, error, sizeof(error)) == 0);
    CHECK(!access_identify_peer(access, &identity, 77));
    const char *bad[] = {"uid:", "uid:x1", "uid:4294967295", "uid:99999999999"};
    for (int i = 0; i < 4; i++) {
        size_t length = strlen(bad[i]);
        CHECK(access_set_user(access, "local", &bad[i], &length, 1, error, sizeof(error)) != 0);
        CHECK(strstr(error, "uid:N") != NULL);
    }
    access_destroy(access);
}

static void test_equal(void) {
    CHECK(access_equal("token", 5, "token", 5));
    CHECK(!access_equal("token", 5, "tokeN", 5));
    CHECK(!access_equal("token", 5, "token!", 6));
    CHECK(!access_equal("", 0, "a", 1));
}

int main(void) {
    if (options_declare(&access_options) != 0 || metrics_declare(&access_metrics) != 0) return 1;
    metric_register_thread();
    if (mkdtemp(directory) == NULL) return 1;
    snprintf(users_path, sizeof(users_path), "%s/users", directory);
    /* The cheapest Argon2id parameters: a hash records its own, and these tests check
     * logic, not cost (test_requirepass checks one at the real cost). */
    if (crypto_pwhash_str(secret_hash, "secret", 6, crypto_pwhash_OPSLIMIT_MIN,
                          crypto_pwhash_MEMLIMIT_MIN) != 0)
        return 1;
    RUN_TEST(test_no_users_is_protected_and_open);
    RUN_TEST(test_requirepass);
    RUN_TEST(test_users_file_rights);
    RUN_TEST(test_bad_users_files);
    RUN_TEST(test_throttle_after_failures);
    RUN_TEST(test_reload_and_setuser_follow_identities);
    RUN_TEST(test_protected_mode_kept_while_running);
    RUN_TEST(test_redis_style_rules);
    RUN_TEST(test_peer_uids);
    RUN_TEST(test_equal);
    unlink(users_path);
    char temporary[300];
    snprintf(temporary, sizeof(temporary), "%s.tmp", users_path);
    unlink(temporary);
    rmdir(directory);
    return test_main_result();
}
