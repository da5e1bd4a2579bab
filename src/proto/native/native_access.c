/* Who may do what on the native protocol (docs/security.md, "The native protocol"): the
 * AUTH entry, and the rights a frame's opcode needs on its namespace, cached per
 * session and namespace so that a frame pays one atomic load (in
 * access_identity_current(), by the parser) and an array lookup. */
#include "proto/native/native_internal.h"

#include "base/checks.h"
#include "base/log.h"

#include <stdio.h>
#include <string.h>

/* The rights an OPCODE with ARGUMENT needs on its namespace. TOUCH marks keys used, as a
 * GET does; MATCH_PREFIX pins what it finds when given a lease, and pinning is a write. */
static unsigned rights_needed(uint8_t opcode, int32_t argument) {
    switch (opcode) {
    case STRATA_OP_GET:
    case STRATA_OP_EXISTS:
    case STRATA_OP_TOUCH:
        return ACCESS_READ;
    case STRATA_OP_MATCH_PREFIX:
        return argument > 0 ? ACCESS_READ | ACCESS_WRITE : ACCESS_READ;
    case STRATA_OP_PUT:
    case STRATA_OP_DELETE:
    case STRATA_OP_PIN:
    case STRATA_OP_UNPIN:
        return ACCESS_WRITE;
    default:
        return 0; /* PING, AUTH, SHM_REGISTER: no namespace */
    }
}

bool native_allowed(struct native_session *session, struct namespace *ns, const unsigned char *name,
                    size_t length, char *message, size_t size) {
    unsigned needed = rights_needed(session->opcode, session->argument);
    if (needed == 0) return true;
    const struct access_user *user = session->user;
    unsigned rights;
    if (ns != NULL) {
        STRATA_ASSERT(session->rights_user == user); /* on_header() keeps them together */
        size_t index = (size_t)(ns - session->server->environment.namespaces->list);
        if (!(session->rights_known & (1ull << index))) {
            session->rights[index] =
                (uint8_t)access_namespace_rights(user, ns->name, ns->name_length);
            session->rights_known |= 1ull << index;
        }
        rights = session->rights[index];
    } else {
        rights = access_namespace_rights(user, (const char *)name, length);
    }
    if ((rights & needed) == needed) return true;
    metric_add(ACCESS_METRIC(access_denied), 1);
    snprintf(message, size, "NOPERM user '%.64s' has no %s right on namespace '%.*s'", user->name,
             (needed & ~rights & ACCESS_WRITE) ? "write" : "read", (int)(length > 64 ? 64 : length),
             length > 0 ? (const char *)name : "");
    return false;
}

int32_t native_authenticate(struct native_session *session) {
    size_t user_length = session->key_length;
    size_t password_length = session->parent_length;
    const char *user_name = user_length > 0 ? (const char *)session->keys : NULL;
    const char *password = password_length > 0 ? (const char *)session->keys + user_length : "";
    int64_t retry_ms = 0;
    enum access_failure failure =
        access_authenticate(session->server->environment.access, &session->identity, user_name,
                            user_length, password, password_length, session->peer, &retry_ms);
    if (password_length > 0) explicit_bzero(session->keys + user_length, password_length);
    session->auth_retry_ms = retry_ms;
    switch (failure) {
    case ACCESS_OK:
        return STRATA_OK;
    case ACCESS_THROTTLED:
        return STRATA_ERR_THROTTLED;
    case ACCESS_WRONGPASS:
        break;
    }
    return STRATA_ERR_WRONGPASS;
}
