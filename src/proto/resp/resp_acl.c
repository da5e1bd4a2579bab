/* AUTH and ACL: who a RESP connection is, and the users (docs/security.md, "RESP").
 * The users themselves live in src/access/; this file only speaks Redis's words for
 * them. The rights each command needs are checked before it runs (resp_session.c). */
#include "access/access.h"
#include "base/byte_buffer.h"
#include "base/log.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct access *access_of(struct resp_session *session) {
    return session->server->environment.access;
}

bool resp_authenticate(struct resp_session *session, const unsigned char *user, size_t user_length,
                       const unsigned char *password, size_t password_length) {
    int64_t retry_ms = 0;
    enum access_failure failure =
        access_authenticate(access_of(session), &session->identity, (const char *)user, user_length,
                            (const char *)password, password_length, session->peer, &retry_ms);
    if (failure == ACCESS_OK) {
        resp_session_set_rights(session, session->identity.user);
        return true;
    }
    if (failure == ACCESS_THROTTLED) {
        reply_errorf(session,
                     "ERR too many failed authentication attempts from this address; try again "
                     "in %lld ms",
                     (long long)retry_ms);
    } else {
        reply_error(session, "WRONGPASS invalid username-password pair or user is disabled.");
    }
    return false;
}

/* AUTH [username] password. The one-argument form authenticates the user "default". */
void command_auth(struct resp_session *session, const struct resp_request *request) {
    if (request->argc > 3) {
        reply_syntax_error(session);
        return;
    }
    if (request->argc == 2 && access_protected(access_of(session))) {
        /* Redis 7's answer when the default user needs no password. */
        reply_error(session, "ERR AUTH <password> called without any password configured for "
                             "the default user. Are you sure your configuration is correct?");
        return;
    }
    size_t last = request->argc - 1;
    const unsigned char *user = request->argc == 3 ? request->argv[1] : NULL;
    size_t user_length = request->argc == 3 ? (size_t)request->lengths[1] : 0;
    if (resp_authenticate(session, user, user_length, request->argv[last],
                          (size_t)request->lengths[last])) {
        reply_ok(session);
    }
}

/* ---- the users as text ------------------------------------------------------------ */

/* The users file lines (access_describe_all()), or NULL after replying the error. The
 * caller frees it with users_text_free() (it holds hashes and S3 secrets). */
static char *users_text(struct resp_session *session) {
    char *text = access_describe_all(access_of(session));
    if (text == NULL) reply_store_error(session, STORE_ALLOCATION_FAILED);
    return text;
}

static void users_text_free(char *text) {
    if (text == NULL) return;
    sodium_memzero(text, strlen(text));
    free(text);
}

static size_t line_count(const char *text) {
    size_t count = 0;
    for (; *text; text++)
        count += *text == '\n';
    return count;
}

/* Splits the users file line LINE (changed in place) into its words. Returns how many,
 * at most CAPACITY. */
static size_t split_words(char *line, char **words, size_t capacity) {
    size_t count = 0;
    char *saved = NULL;
    for (char *word = strtok_r(line, " ", &saved); word != NULL && count < capacity;
         word = strtok_r(NULL, " ", &saved))
        words[count++] = word;
    return count;
}

#define LINE_WORDS_MAX 1024

/* The rights of a "read,write,admin" list (an unknown word counts as nothing). */
static unsigned parse_rights(const char *text) {
    unsigned rights = 0;
    while (*text) {
        size_t length = strcspn(text, ",");
        if (length == 4 && memcmp(text, "read", 4) == 0) rights |= ACCESS_READ;
        if (length == 5 && memcmp(text, "write", 5) == 0) rights |= ACCESS_WRITE;
        if (length == 5 && memcmp(text, "admin", 5) == 0) rights |= ACCESS_ADMIN;
        text += length;
        if (*text == ',') text++;
    }
    return rights;
}

/* ---- ACL subcommands -------------------------------------------------------------- */

static void acl_whoami(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    const struct access_user *user = resp_session_user(session);
    /* The dispatch let an authenticated connection in; a reload in between may not. */
    if (user == NULL) {
        reply_error(session, "NOAUTH Authentication required.");
    } else {
        reply_bulk_text(session, user->name);
    }
}

/* ACL LIST: one users file line per user, as Redis does, but with each S3 secret
 * replaced by "(hidden)": passwords appear as their hashes only. */
static void acl_list(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    char *text = users_text(session);
    if (text == NULL) return;
    reply_array(session, line_count(text));
    char *saved = NULL;
    for (char *line = strtok_r(text, "\n", &saved); line != NULL;
         line = strtok_r(NULL, "\n", &saved)) {
        struct byte_buffer shown = BYTE_BUFFER_INIT;
        char *words[LINE_WORDS_MAX];
        size_t count = split_words(line, words, LINE_WORDS_MAX);
        for (size_t i = 0; i < count; i++) {
            const char *colon =
                strncmp(words[i], "s3key:", 6) == 0 ? strchr(words[i] + 6, ':') : NULL;
            if (colon != NULL) {
                byte_buffer_appendf(&shown, "%s%.*s:(hidden)", i ? " " : "",
                                    (int)(colon - words[i]), words[i]);
            } else {
                byte_buffer_appendf(&shown, "%s%s", i ? " " : "", words[i]);
            }
        }
        if (shown.failed) {
            reply_error(session, "OOM out of memory");
        } else {
            reply_bulk(session, shown.data ? shown.data : (const unsigned char *)"", shown.length);
        }
        byte_buffer_free(&shown);
    }
    users_text_free(text);
}

static void acl_users(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    char *text = users_text(session);
    if (text == NULL) return;
    reply_array(session, line_count(text));
    char *saved = NULL;
    for (char *line = strtok_r(text, "\n", &saved); line != NULL;
         line = strtok_r(NULL, "\n", &saved)) {
        char *words[2];
        size_t count = split_words(line, words, 2);
        reply_bulk_text(session, count == 2 ? words[1] : "");
    }
    users_text_free(text);
}

/* Replies with the rule words of WORDS that start with PREFIX, without it, as an array. */
static void reply_rules(struct resp_session *session, char **words, size_t count,
                        const char *prefix) {
    size_t length = strlen(prefix), matching = 0;
    for (size_t i = 0; i < count; i++)
        matching += strncmp(words[i], prefix, length) == 0;
    reply_array(session, matching);
    for (size_t i = 0; i < count; i++)
        if (strncmp(words[i], prefix, length) == 0) reply_bulk_text(session, words[i] + length);
}

/* ACL GETUSER name: Redis 7's map (flags, passwords, commands, keys, channels,
 * selectors; what redis-py's acl_getuser() parses) and strata's own fields: namespaces
 * and buckets ("PATTERN=RIGHTS" each) and s3keys (the access key ids, not the secrets).
 * "keys" describes the namespace "default" that RESP serves: ~* (read and write), %R~*,
 * %W~*, or "" (neither); "commands" is +@all for an admin, else +@all -@admin. */
static void acl_getuser(struct resp_session *session, const struct resp_request *request) {
    char *text = users_text(session);
    if (text == NULL) return;
    char *words[LINE_WORDS_MAX];
    size_t count = 0;
    char *saved = NULL;
    for (char *line = strtok_r(text, "\n", &saved); line != NULL;
         line = strtok_r(NULL, "\n", &saved)) {
        count = split_words(line, words, LINE_WORDS_MAX);
        if (count >= 3 && strlen(words[1]) == request->lengths[2] &&
            memcmp(words[1], request->argv[2], (size_t)request->lengths[2]) == 0)
            break;
        count = 0;
    }
    if (count == 0) {
        reply_null(session);
        users_text_free(text);
        return;
    }
    /* The user's grants, for its rights on "default" and whether it is an admin. */
    struct access_grant grants[LINE_WORDS_MAX];
    struct access_user user = {.namespaces = grants};
    bool nopass = false;
    for (size_t i = 2; i < count; i++) {
        nopass |= strcmp(words[i], "nopass") == 0;
        if (strncmp(words[i], "namespace:", 10) != 0) continue;
        const char *equals = strchr(words[i], '=');
        if (equals == NULL) continue;
        char *pattern = strndup(words[i] + 10, (size_t)(equals - words[i] - 10));
        if (pattern == NULL) continue;
        grants[user.namespace_count++] = (struct access_grant){pattern, parse_rights(equals + 1)};
    }
    unsigned rights = access_namespace_rights(&user, "default", 7);
    bool admin = access_is_admin(&user);
    for (size_t i = 0; i < user.namespace_count; i++)
        free(grants[i].pattern);
    reply_map(session, 9);
    reply_bulk_text(session, "flags");
    reply_array(session, nopass ? 2 : 1);
    reply_bulk_text(session, words[2]); /* on or off */
    if (nopass) reply_bulk_text(session, "nopass");
    reply_bulk_text(session, "passwords");
    reply_rules(session, words + 2, count - 2, "#");
    reply_bulk_text(session, "commands");
    reply_bulk_text(session, admin ? "+@all" : "+@all -@admin");
    reply_bulk_text(session, "keys");
    unsigned both = ACCESS_READ | ACCESS_WRITE;
    reply_bulk_text(session, (rights & both) == both   ? "~*"
                             : (rights & ACCESS_READ)  ? "%R~*"
                             : (rights & ACCESS_WRITE) ? "%W~*"
                                                       : "");
    reply_bulk_text(session, "channels");
    reply_bulk_text(session, "");
    reply_bulk_text(session, "selectors");
    reply_array(session, 0);
    reply_bulk_text(session, "namespaces");
    reply_rules(session, words + 2, count - 2, "namespace:");
    reply_bulk_text(session, "buckets");
    reply_rules(session, words + 2, count - 2, "bucket:");
    reply_bulk_text(session, "s3keys");
    for (size_t i = 2; i < count; i++) {
        char *colon = strncmp(words[i], "s3key:", 6) == 0 ? strchr(words[i] + 6, ':') : NULL;
        if (colon != NULL) *colon = '\0'; /* the key id without its secret */
    }
    reply_rules(session, words + 2, count - 2, "s3key:");
    users_text_free(text);
}

/* Copies argument INDEX into a new NUL-terminated string; NULL if it holds a NUL byte
 * (no user name does) or memory runs out. */
static char *argument_copy(const struct resp_request *request, size_t index) {
    size_t length = (size_t)request->lengths[index];
    if (memchr(request->argv[index], '\0', length) != NULL) return NULL;
    return strndup((const char *)request->argv[index], length);
}

static void log_change(struct resp_session *session, const char *event,
                       const struct resp_request *request) {
    char quoted[ACCESS_NAME_MAX * 4 + 8];
    size_t length = (size_t)request->lengths[2];
    log_event(LOG_INFO, event, "user=%s client=%llu peer=%s",
              log_quote(quoted, sizeof(quoted), (const char *)request->argv[2],
                        length > ACCESS_NAME_MAX ? ACCESS_NAME_MAX : length),
              (unsigned long long)session->id, session->peer);
}

/* ACL SETUSER name rule...: the rules are never logged (">password" is in clear). */
static void acl_setuser(struct resp_session *session, const struct resp_request *request) {
    char error[512];
    size_t count = request->argc - 3;
    const char **rules = calloc(count + 1, sizeof(*rules));
    size_t *lengths = calloc(count + 1, sizeof(*lengths));
    bool bad_name = memchr(request->argv[2], '\0', (size_t)request->lengths[2]) != NULL;
    char *name = bad_name ? NULL : argument_copy(request, 2);
    if (bad_name) {
        reply_error(session, "ERR Error in ACL SETUSER: bad user name");
    } else if (rules == NULL || lengths == NULL || name == NULL) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
    } else {
        for (size_t i = 0; i < count; i++) {
            rules[i] = (const char *)request->argv[3 + i];
            lengths[i] = (size_t)request->lengths[3 + i];
        }
        if (access_set_user(access_of(session), name, rules, lengths, count, error,
                            sizeof(error)) != 0) {
            reply_errorf(session, "ERR %s", error);
        } else {
            log_change(session, "acl_setuser", request);
            reply_ok(session);
        }
    }
    free(name);
    free(rules);
    free(lengths);
}

/* ACL DELUSER name...: the number of users deleted. Their connections are not closed:
 * each gets NOAUTH at its next command (and may AUTH again as another user). */
static void acl_deluser(struct resp_session *session, const struct resp_request *request) {
    size_t count = request->argc - 2;
    char **names = calloc(count, sizeof(*names));
    size_t named = 0;
    if (names == NULL) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        char *name = argument_copy(request, 2 + i);
        if (name != NULL) names[named++] = name; /* a name with a NUL byte matches nobody */
    }
    char error[256];
    int deleted = access_delete_users(access_of(session), (const char *const *)names, named, error,
                                      sizeof(error));
    if (deleted < 0) {
        reply_errorf(session, "ERR %s", error);
    } else {
        if (deleted > 0) log_change(session, "acl_deluser", request);
        reply_integer(session, deleted);
    }
    for (size_t i = 0; i < named; i++)
        free(names[i]);
    free(names);
}

static void acl_load(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    char error[512];
    if (access_reload(access_of(session), error, sizeof(error)) != 0) {
        reply_errorf(session, "ERR %s", error);
    } else {
        reply_ok(session);
    }
}

static void acl_save(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    char error[512];
    if (access_save(access_of(session), error, sizeof(error)) != 0) {
        reply_errorf(session, "ERR %s", error);
    } else {
        log_event(LOG_INFO, "users_saved", "client=%llu peer=%s", (unsigned long long)session->id,
                  session->peer);
        reply_ok(session);
    }
}

/* The ACL categories COMMAND INFO gives commands (resp_command_categories()). */
static const char *const categories[] = {
    "read",  "write",     "keyspace", "string",      "hash",       "list",
    "set",   "sortedset", "stream",   "transaction", "connection", "scripting",
    "admin", "fast",      "slow",     "blocking",    "dangerous",  "bitmap"};
#define CATEGORY_COUNT (sizeof(categories) / sizeof(categories[0]))

/* ACL CAT [category]: the categories, or the commands in one. */
static void acl_cat(struct resp_session *session, const struct resp_request *request) {
    if (request->argc == 2) {
        reply_array(session, CATEGORY_COUNT);
        for (size_t i = 0; i < CATEGORY_COUNT; i++)
            reply_bulk_text(session, categories[i]);
        return;
    }
    char wanted[64];
    argument_text(request, 2, wanted, sizeof(wanted));
    const char *category = NULL;
    for (size_t i = 0; i < CATEGORY_COUNT && category == NULL; i++)
        if (strcasecmp(wanted, categories[i]) == 0) category = categories[i];
    if (category == NULL) {
        reply_errorf(session, "ERR Unknown category '%s'", wanted);
        return;
    }
    size_t count, matching = 0;
    const struct resp_command *table = resp_command_table(&count);
    bool *in = calloc(count, sizeof(*in));
    if (in == NULL) {
        reply_store_error(session, STORE_ALLOCATION_FAILED);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        char text[128], *saved = NULL;
        resp_command_categories(&table[i], text, sizeof(text));
        for (char *word = strtok_r(text, " ", &saved); word != NULL && !in[i];
             word = strtok_r(NULL, " ", &saved))
            in[i] = strcmp(word, category) == 0;
        matching += in[i];
    }
    reply_array(session, matching);
    for (size_t i = 0; i < count; i++)
        if (in[i]) reply_bulk_text(session, table[i].name);
    free(in);
}

/* ACL LOG [count|RESET]: strata keeps no log of denials (they are counted, and failed
 * authentications are logged to the server log): always empty. */
static void acl_log(struct resp_session *session, const struct resp_request *request) {
    if (request->argc == 3 && argument_is(request, 2, "RESET")) {
        reply_ok(session);
        return;
    }
    int64_t count;
    if (request->argc == 3 && !argument_int64(session, request, 2, &count)) return;
    reply_array(session, 0);
}

/* ACL GENPASS [bits]: a random password, BITS (default 256) rounded up to hex digits,
 * from libsodium's random generator. */
static void acl_genpass(struct resp_session *session, const struct resp_request *request) {
    int64_t bits = 256;
    if (request->argc == 3 && (!parse_int64(request->argv[2], (size_t)request->lengths[2], &bits) ||
                               bits <= 0 || bits > 4096)) {
        reply_error(session, "ERR ACL GENPASS argument must be the number of bits for the output "
                             "password, a positive number up to 4096");
        return;
    }
    unsigned char random[512];
    char hex[1025];
    size_t digits = (size_t)(bits + 3) / 4;
    randombytes_buf(random, (digits + 1) / 2);
    sodium_bin2hex(hex, sizeof(hex), random, (digits + 1) / 2);
    reply_bulk(session, hex, digits);
    sodium_memzero(random, sizeof(random));
    sodium_memzero(hex, sizeof(hex));
}

static void acl_help(struct resp_session *session, const struct resp_request *request) {
    (void)request;
    static const char *const help[] = {
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bit-count>]",
        "    Generate a secure 256-bit user password. The optional `bit-count` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format (S3 secrets hidden).",
        "LOAD",
        "    Reload users from the users file (--users).",
        "LOG [<count> | RESET]",
        "    Always empty: strata logs failed authentications to its log file.",
        "SAVE",
        "    Save the current users to the users file (--users).",
        "SETUSER <username> <rule> [<rule> ...]",
        "    Create or modify a user with the specified rules (docs/security.md).",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
        "HELP",
        "    Print this help.",
    };
    reply_help(session, help, sizeof(help) / sizeof(help[0]));
}

/* The subcommands, with the argument counts they take (the command's name included). */
static const struct {
    const char *name;
    size_t minimum, maximum;
    resp_command_fn handler;
} subcommands[] = {
    {"WHOAMI", 2, 2, acl_whoami},
    {"LIST", 2, 2, acl_list},
    {"USERS", 2, 2, acl_users},
    {"GETUSER", 3, 3, acl_getuser},
    {"SETUSER", 3, SIZE_MAX, acl_setuser},
    {"DELUSER", 3, SIZE_MAX, acl_deluser},
    {"LOAD", 2, 2, acl_load},
    {"SAVE", 2, 2, acl_save},
    {"CAT", 2, 3, acl_cat},
    {"LOG", 2, 3, acl_log},
    {"GENPASS", 2, 3, acl_genpass},
    {"HELP", 2, 2, acl_help},
};

void command_acl(struct resp_session *session, const struct resp_request *request) {
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        if (!argument_is(request, 1, subcommands[i].name)) continue;
        if (request->argc < subcommands[i].minimum || request->argc > subcommands[i].maximum) {
            reply_subcommand_arity(session, request, "acl");
        } else {
            subcommands[i].handler(session, request);
        }
        return;
    }
    reply_unknown_subcommand(session, request, "ACL");
}

bool resp_user_exists(struct resp_session *session, const unsigned char *name, size_t length) {
    char *text = access_describe_all(access_of(session));
    if (text == NULL) return false;
    size_t total = strlen(text); /* strtok_r() cuts it: wipe it all at the end */
    bool found = false;
    char *saved = NULL;
    for (char *line = strtok_r(text, "\n", &saved); line != NULL && !found;
         line = strtok_r(NULL, "\n", &saved)) {
        char *words[LINE_WORDS_MAX];
        size_t count = split_words(line, words, LINE_WORDS_MAX);
        found = count >= 2 && strlen(words[1]) == length && memcmp(words[1], name, length) == 0;
    }
    sodium_memzero(text, total);
    free(text);
    return found;
}
