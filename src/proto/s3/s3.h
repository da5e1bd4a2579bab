/* The S3-compatible API, served on the HTTP port (docs/s3.md): buckets and objects of
 * the engine's object store (engine/objects.h), for aws-cli, boto3, rclone, s3fs and
 * model loaders. Built on top of the HTTP front end as an http_extension: it claims the
 * requests that are S3's (docs/http.md says how they are told apart) and answers them. */
#ifndef STRATA_PROTO_S3_H
#define STRATA_PROTO_S3_H

#include "base/options.h"
#include "proto/http/http.h"

#include <stdbool.h>

/* s3's options (proto/s3/s3_options.def): the group, and each row's place in it. */
enum s3_option_index {
#define OPTION(identifier, ...) S3_OPTION_INDEX_##identifier,
#include "proto/s3/s3_options.def"
#undef OPTION
};
extern struct option_group s3_options;
/* The identifier of s3's option IDENTIFIER in the composed table. */
#define S3_OPTION(identifier) option_in_group(&s3_options, S3_OPTION_INDEX_##identifier)

struct access;
struct objects;
struct s3_server;

struct s3_environment {
    struct objects *objects; /* not owned */
    struct options *options; /* read live */
    /* Users, their S3 keys (s3key: rules) and bucket rights (docs/security.md); not
     * owned. NULL: no users, as with an access object that has none. */
    struct access *access;
};

/* Creates the S3 front end's state: reads the credentials (--s3-access-key and
 * --s3-secret-key, --s3-credentials). Returns NULL with a reason in ERROR. */
struct s3_server *s3_server_create(const struct s3_environment *environment, char *error,
                                   size_t error_size);
void s3_server_destroy(struct s3_server *server);

/* The extension to give the HTTP front end (valid while SERVER lives). */
const struct http_extension *s3_http_extension(struct s3_server *server);

/* Whether requests must be signed with a known key: --s3-access-key or --s3-credentials
 * gave one, or the server has users (it is not in protected mode: access_protected()).
 * Otherwise only loopback clients are served, as the user "default". May change when
 * the users are reloaded. */
bool s3_has_credentials(const struct s3_server *server);

#endif
