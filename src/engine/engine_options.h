/* The engine's options (engine/engine_options.def): the DRAM budget, namespaces and
 * the flash tier. The engine itself takes a struct store_config; the server reads these
 * options to build one. */
#ifndef STRATA_ENGINE_ENGINE_OPTIONS_H
#define STRATA_ENGINE_ENGINE_OPTIONS_H

#include "base/options.h"

/* engine's options (engine/engine_options.def): the group, and each row's place in it. */
enum engine_option_index {
#define OPTION(identifier, ...) ENGINE_OPTION_INDEX_##identifier,
#include "engine/engine_options.def"
#undef OPTION
};
extern struct option_group engine_options;
/* The identifier of engine's option IDENTIFIER in the composed table. */
#define ENGINE_OPTION(identifier) option_in_group(&engine_options, ENGINE_OPTION_INDEX_##identifier)

#endif
