#include "engine/engine_options.h"

static const struct option_definition engine_option_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "engine/engine_options.def"
#undef OPTION
};

struct option_group engine_options = {
    .title = "Engine: the DRAM and flash tiers",
    .definitions = engine_option_definitions,
    .count = sizeof(engine_option_definitions) / sizeof(engine_option_definitions[0]),
};
