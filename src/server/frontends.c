/* The table of front ends. Adding a front end is a folder under src/proto/ that exports
 * a `struct frontend`, and one row here (docs/architecture.md). */
#include "access/access.h"
#include "engine/engine_options.h"
#include "net/net.h"
#include "server/server.h"

#include "proto/http/http.h"
#include "proto/native/native.h"
#include "proto/resp/resp.h"
#include "proto/s3/s3.h"

const struct frontend *const frontend_table[] = {
    &resp_frontend,
    &http_frontend,
    &native_frontend,
};
const int frontend_count = (int)(sizeof(frontend_table) / sizeof(frontend_table[0]));

int frontends_declare_tables(void) {
    if (options_declare(&server_options) != 0 || options_declare(&net_options) != 0 ||
        options_declare(&engine_options) != 0 || options_declare(&access_options) != 0 ||
        options_declare(&s3_options) != 0 || metrics_declare(&net_metrics) != 0 ||
        metrics_declare(&access_metrics) != 0) {
        return -1;
    }
    if (frontend_count > FRONTENDS_MAX) return -1;
    for (int i = 0; i < frontend_count; i++) {
        const struct frontend *frontend = frontend_table[i];
        if (frontend->options != NULL && options_declare(frontend->options) != 0) return -1;
        if (frontend->metrics != NULL && metrics_declare(frontend->metrics) != 0) return -1;
    }
    /* Each front end's port option must be an integer option some group declared. */
    for (int i = 0; i < frontend_count; i++) {
        int port_option = options_find(frontend_table[i]->port_option);
        if (port_option < 0 || options_type(port_option) != OPTION_TYPE_INTEGER) return -1;
    }
    return 0;
}
