#include "base/numbers.h"
#include "engine/engine_options.h"
#include "net/net.h"
#include "server/server.h"

#include <stdio.h>

static const struct option_definition server_option_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "server/server_options.def"
#undef OPTION
};

/* The rules that span groups: max-request (the network layer's) must be at least
 * max-value (the engine's). Returns 0, or -1 with a reason in ERROR. */
static int validate(const struct options *options, char *error, size_t error_size) {
    int64_t request = options_number(options, NET_OPTION(max_request));
    int64_t value = options_number(options, ENGINE_OPTION(max_value));
    if (request < value) {
        char request_text[32], value_text[32];
        snprintf(error, error_size, "max-request (%s) must be at least max-value (%s)",
                 format_size(request_text, sizeof(request_text), (uint64_t)request),
                 format_size(value_text, sizeof(value_text), (uint64_t)value));
        return -1;
    }
    return 0;
}

struct option_group server_options = {
    .title = "Server",
    .definitions = server_option_definitions,
    .count = sizeof(server_option_definitions) / sizeof(server_option_definitions[0]),
    .validate = validate,
};
