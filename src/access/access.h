/* Users, their rights and their credentials (docs/security.md): who a connection is, and
 * what it may do. Every front end asks here; none keeps passwords of its own.
 *
 * A user has a name, is on or off, has password hashes (Argon2id strings from libsodium's
 * crypto_pwhash_str; a password is never kept in clear), or "nopass", rights per
 * namespace and per bucket (read, write, admin; the name may be a glob such as "*"),
 * and S3 access keys. The users come from --users FILE (reloaded by access_reload():
 * SIGHUP and ACL LOAD), or from --requirepass (one user, "default"), or, with neither,
 * the one user "default" with no password and every right: no users are configured,
 * and the server then keeps to loopback (protected mode, access_protected()).
 *
 * The users live in an immutable table; a change (reload, ACL SETUSER, ACL DELUSER)
 * builds a new table and swaps it in. A connection's identity (struct access_identity)
 * holds a reference to the table its user came from and notices a newer table on its
 * next access_identity_current() call, re-resolving its user by name there: a user
 * deleted or switched off loses its rights at the next command.
 *
 * Thread safety: every function may be called from any thread unless it says otherwise;
 * an identity belongs to one connection and is used by one thread at a time. */
#ifndef STRATA_ACCESS_ACCESS_H
#define STRATA_ACCESS_ACCESS_H

#include "base/metrics.h"
#include "base/options.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* access's options (access/access_options.def): the group, and each row's place in it. */
enum access_option_index {
#define OPTION(identifier, ...) ACCESS_OPTION_INDEX_##identifier,
#include "access/access_options.def"
#undef OPTION
};
extern struct option_group access_options;
#define ACCESS_OPTION(identifier) option_in_group(&access_options, ACCESS_OPTION_INDEX_##identifier)

/* access's metrics (access/access_metrics.def). */
enum access_metric_index {
#define METRIC(identifier, ...) ACCESS_METRIC_INDEX_##identifier,
#define HISTOGRAM(identifier, ...)
#include "access/access_metrics.def"
#undef HISTOGRAM
#undef METRIC
};
extern struct metric_group access_metrics;
#define ACCESS_METRIC(identifier) metric_in_group(&access_metrics, ACCESS_METRIC_INDEX_##identifier)

/* Rights, combined as a bit set. */
enum {
    ACCESS_READ = 1u << 0,  /* read values, list keys and objects */
    ACCESS_WRITE = 1u << 1, /* write and delete values and objects */
    ACCESS_ADMIN = 1u << 2, /* on a namespace or bucket: create, delete, configure it; on
                               the namespace "*": the server's own commands (CONFIG,
                               SHUTDOWN, DEBUG, ACL, FLUSHALL, CLIENT KILL) */
    ACCESS_ALL = ACCESS_READ | ACCESS_WRITE | ACCESS_ADMIN,
};

/* The longest user name, password, hash, access key or secret accepted. */
#define ACCESS_NAME_MAX     128
#define ACCESS_PASSWORD_MAX 1024
#define ACCESS_HASH_MAX     128 /* crypto_pwhash_STRBYTES */
#define ACCESS_SECRET_MAX   128

/* A right on the namespaces or buckets whose name matches PATTERN (a glob). */
struct access_grant {
    char *pattern;
    unsigned rights;
};

/* An S3 access key and its secret (SigV4 needs the secret itself, so it is kept as
 * given; the users file must be private: docs/security.md). */
struct access_key {
    char *access_key;
    char *secret;
};

/* One user, as the table holds it. Read-only to everyone but access.c. */
struct access_user {
    char *name;
    bool enabled;
    bool nopass;   /* any password (or none) is accepted */
    char **hashes; /* Argon2id strings */
    size_t hash_count;
    struct access_grant *namespaces;
    size_t namespace_count;
    struct access_grant *buckets;
    size_t bucket_count;
    struct access_key *keys;
    size_t key_count;
    struct access_verified *verified; /* passwords already verified (access.c) */
    uint32_t *uids; /* uid:N rules: a Unix-socket peer with one of these uids is this user */
    size_t uid_count;
};

struct access;
struct access_table;

/* Creates the users from OPTIONS (--users, --requirepass). Returns NULL with a reason in
 * ERROR (an unreadable file, a bad line with its number, --users and --requirepass both
 * given, libsodium failing to start). */
struct access *access_create(const struct options *options, char *error, size_t error_size);

void access_destroy(struct access *access);

/* True when the user "default" is on with no password: anyone who reaches a port is
 * that user without AUTH, as when no users are configured. The server then refuses to
 * listen beyond loopback unless --insecure (protected mode). False: a new connection
 * must authenticate before it may do anything. */
bool access_protected(struct access *access);

/* Keeps protected mode while the server runs: from now on a change of the users (reload,
 * ACL SETUSER) that would make "default" open is refused. The server calls it when it
 * listens beyond loopback without --insecure. */
void access_guard_protected_mode(struct access *access);

/* Reads the users file again and swaps it in. Returns 0, or -1 with a reason in ERROR and
 * the users unchanged (also when the server has no users file). */
int access_reload(struct access *access, char *error, size_t error_size);

/* Writes the users to the users file (ACL SAVE): a temporary file, fsync, rename, mode
 * 0600. Returns 0, or -1 with a reason in ERROR. */
int access_save(struct access *access, char *error, size_t error_size);

/* Applies Redis-style ACL SETUSER rules to user NAME (created off with no rights if new)
 * and swaps the result in. RULES are COUNT rules of the users file's syntax
 * (docs/security.md): on, off, >password, <password, #hash, !hash, nopass, resetpass,
 * reset, namespace:PATTERN=RIGHTS, bucket:PATTERN=RIGHTS, s3key:KEY:SECRET, and the
 * Redis forms ~* / allkeys (read,write on every namespace), +@all / allcommands (admin
 * on every namespace and bucket), resetkeys, nocommands. Returns 0, or -1 with a reason
 * in ERROR ("Error in ACL SETUSER modifier '...': ...") and nothing changed. */
int access_set_user(struct access *access, const char *name, const char *const *rules,
                    const size_t *rule_lengths, size_t count, char *error, size_t error_size);

/* Deletes the users named; "default" cannot be deleted. Returns the number deleted, or
 * -1 with a reason in ERROR and nothing deleted. */
int access_delete_users(struct access *access, const char *const *names, size_t count, char *error,
                        size_t error_size);

/* The users as the users file writes them, one "user NAME rule..." line each, in name
 * order, in a string the caller frees. Returns NULL if out of memory. */
char *access_describe_all(struct access *access);

/* ---- identities --------------------------------------------------------------- */

/* Who a connection is. Zeroed or access_identity_init()ed; released with
 * access_identity_release(). */
struct access_identity {
    struct access_table *table;     /* referenced while user is set */
    const struct access_user *user; /* NULL: not authenticated */
    char name[ACCESS_NAME_MAX + 1]; /* the user's name, kept across tables */
};

/* Starts a new connection's identity: the user "default" if it needs no password,
 * otherwise none (the connection must authenticate). */
void access_identity_init(struct access *access, struct access_identity *identity);

/* Drops the identity's user and table reference. */
void access_identity_release(struct access_identity *identity);

/* Why an authentication failed. */
enum access_failure {
    ACCESS_OK = 0,
    ACCESS_WRONGPASS, /* unknown user, wrong password, or user off: one answer for all */
    ACCESS_THROTTLED, /* PEER failed too often; refused without checking, try later */
};

/* Authenticates USER (NULL: "default") with PASSWORD for the connection from PEER
 * ("1.2.3.4:5678", "[::1]:5", or "unix"; the port is ignored) and, on success, makes it
 * IDENTITY's user. A password already verified for that user is recognised quickly;
 * otherwise the slow hash is checked (about 0.2 s; the calling thread waits). Failures
 * are logged, counted, and slow PEER down: after a few, its attempts are refused for a
 * growing time (*RETRY_MS says how long) without being checked. Comparisons are
 * constant-time. Returns ACCESS_OK or the failure; IDENTITY is unchanged on failure. */
enum access_failure access_authenticate(struct access *access, struct access_identity *identity,
                                        const char *user, size_t user_length, const char *password,
                                        size_t password_length, const char *peer,
                                        int64_t *retry_ms);

/* Authenticates by S3 access key: finds the user holding ACCESS_KEY, copies its secret
 * into SECRET (SECRET_SIZE bytes, NUL-terminated) and makes it IDENTITY's user (the
 * caller then checks the signature with the secret and releases the identity if it is
 * wrong). Returns false if no enabled user holds the key. */
bool access_identify_key(struct access *access, struct access_identity *identity,
                         const char *access_key, size_t access_key_length, char *secret,
                         size_t secret_size);

/* Authenticates a connection on the Unix socket by its peer's credentials: makes the
 * first enabled user (in name order) whose uid:N rule names UID (SO_PEERCRED's) IDENTITY's
 * user, without a password. Returns false, IDENTITY unchanged, if no user names UID. */
bool access_identify_peer(struct access *access, struct access_identity *identity, uint32_t uid);

/* The identity's user as of the newest table: re-resolves it by name if the users
 * changed since (one atomic load when they did not). Returns NULL when not
 * authenticated, or when the user was deleted or switched off (the identity is then
 * cleared). */
const struct access_user *access_identity_current(struct access *access,
                                                  struct access_identity *identity);

/* The rights USER has on namespace (or bucket) NAME: the union of its grants whose
 * pattern matches. 0 for a NULL user. */
unsigned access_namespace_rights(const struct access_user *user, const char *name,
                                 size_t name_length);
unsigned access_bucket_rights(const struct access_user *user, const char *name, size_t name_length);

/* True when USER may run the server's own commands (admin on namespace "*"). */
bool access_is_admin(const struct access_user *user);

/* Compares two byte strings in time that depends only on their lengths. */
bool access_equal(const void *a, size_t a_length, const void *b, size_t b_length);

/* Hashes PASSWORD into OUTPUT (ACCESS_HASH_MAX bytes) with Argon2id at libsodium's
 * interactive limits. Returns 0, or -1 if out of memory. (strata-server --hash-password.) */
int access_hash_password(const char *password, size_t password_length, char *output);

#endif
