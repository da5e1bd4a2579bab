/* Options: parsing, validation and storage for the table in options.def.
 *
 * Numbers (INTEGER, SIZE, CHOICE as the index of the choice) are stored as atomics
 * and may be read from any thread at any time. TEXT options cannot change while the
 * server runs. */
#ifndef STRATA_BASE_OPTIONS_H
#define STRATA_BASE_OPTIONS_H

#include "base/checks.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* An option's identifier: its place in the composed table. The base group (below) is
 * always first, so its identifiers are constants; a module's identifiers are its group's
 * `first` plus the option's place in the module's own .def file (see NET_OPTION() in
 * net/net.h for the pattern). */
typedef int option_id;

/* The base group: the options the option machinery itself reads (base/options.def). */
enum {
#define OPTION(identifier, ...) OPTION_##identifier,
#include "base/options.def"
#undef OPTION
    OPTION_BASE_COUNT
};

/* Most options the composed table holds, all groups together. */
#define OPTIONS_CAPACITY 96

enum option_type { OPTION_TYPE_TEXT, OPTION_TYPE_INTEGER, OPTION_TYPE_SIZE, OPTION_TYPE_CHOICE };

enum { OPTION_MUTABLE = 1, OPTION_AUTO = 2, OPTION_COMMAND_LINE = 4, OPTION_SECRET = 8 };

struct options;

/* One row of an options .def file, as a module declares it:
 * OPTION(identifier, name, type, default, minimum, maximum, choices, flags, metavar, help). */
struct option_definition {
    const char *name;
    enum option_type type;
    const char *default_text;
    int64_t minimum;
    int64_t maximum;
    const char *choices; /* "a|b|c" for CHOICE */
    int flags;
    const char *metavar;
    const char *help;
};

/* Expands a .def row into a struct option_definition initializer. */
#define OPTION_DEFINITION(identifier, name, type, default_text, minimum, maximum, choices, flags,  \
                          metavar, help)                                                           \
    {name, OPTION_TYPE_##type, default_text, minimum, maximum, choices, flags, metavar, help},

/* A module's options, declared beside the module and composed into the one table that
 * --help, the config file, CONFIG GET/SET, INFO and docs/configuration.md come from. */
struct option_group {
    const char *title;                           /* a heading for --help ("HTTP") */
    const struct option_definition *definitions; /* the module's rows, in .def order */
    int count;                                   /* rows */
    /* Optional: checks rules that involve this group's options and others'. Returns 0,
     * or -1 with a reason in ERROR. Runs after parsing and on every run-time change. */
    int (*validate)(const struct options *options, char *error, size_t error_size);
    int first;     /* the identifier of its first row; set by options_declare() */
    bool declared; /* set by options_declare(): until then FIRST means nothing */
};

/* Adds GROUP to the table (start-up, one thread, before options_init()). Declaring a
 * group twice is harmless (the first declaration stands). Returns 0, or -1 if the table
 * is full or a name is taken (a programming error: the caller stops). */
int options_declare(struct option_group *group);

/* How many options the table holds now. */
int options_count(void);

/* The option's identifier in GROUP's numbering: GROUP's first plus INDEX. */
static inline option_id option_in_group(const struct option_group *group, int index) {
    STRATA_ASSERT(group->declared && index < group->count);
    return group->first + index;
}

/* Called after an option changed at run time (CONFIG SET), with the new value in
 * place. Returns 0, or -1 with a reason in ERROR to refuse (the old value is then
 * restored). */
typedef int (*option_change_fn)(struct options *options, option_id id, void *context, char *error,
                                size_t error_size);

struct options {
    _Atomic int64_t numbers[OPTIONS_CAPACITY];
    char *texts[OPTIONS_CAPACITY]; /* owned; NULL for non-TEXT options */
    option_change_fn on_change;
    void *on_change_context;
    /* Serialises run-time changes: the swap, the cross-option check, the change hook
     * and an undo happen as one step, so two CONFIG SETs never interleave. */
    pthread_mutex_t change_lock;
};

/* Results of options_parse_command_line(). */
enum options_parse_result {
    OPTIONS_PARSE_OK = 0,
    OPTIONS_PARSE_ERROR = 1,   /* ERROR holds one line naming the option */
    OPTIONS_PARSE_HELP = 2,    /* --help was given */
    OPTIONS_PARSE_VERSION = 3, /* --version was given */
};

/* Fills OPTIONS with the defaults of every group declared so far. Returns 0, or -1 if
 * out of memory. */
int options_init(struct options *options);

/* Frees the TEXT values. */
void options_free(struct options *options);

/* Parses the command line: --name value, --name=value, --config FILE, --help,
 * --version. A config file is read first so that the command line overrides it.
 * The groups' cross-option rules are checked at the end. */
enum options_parse_result options_parse_command_line(struct options *options, int argc, char **argv,
                                                     char *error, size_t error_size);

/* Reads a config file: one "name value" per line, '#' starts a comment, a value may
 * be in double quotes. Returns 0, or -1 with ERROR set to "FILE:LINE: reason". */
int options_load_file(struct options *options, const char *path, char *error, size_t error_size);

/* Looks up an option by name. Returns its id, or -1. */
int options_find(const char *name);

/* Parses VALUE for option ID and stores it. At run time (RUNNING true) only mutable
 * options may change, the cross-option rules are checked, and the change hook runs,
 * all under change_lock (the hook runs with it held and must not call options_set).
 * Returns 0, or -1 with a reason in ERROR (without the option's name). */
int options_set(struct options *options, option_id id, const char *value, bool running, char *error,
                size_t error_size);

/* Checks every group's rules that involve more than one option. Returns 0, or -1 with
 * ERROR set. */
int options_validate(const struct options *options, char *error, size_t error_size);

/* Writes the current value as CONFIG GET shows it: sizes and integers in plain
 * decimal, choices by name. Returns OUTPUT. */
char *options_format(const struct options *options, option_id id, char *output, size_t output_size);

/* The table's fields for an option. */
const char *options_name(option_id id);
const char *options_default_text(option_id id);
const char *options_help(option_id id);
enum option_type options_type(option_id id);
int options_flags(option_id id);

/* Current value of a numeric option. Safe from any thread. */
static inline int64_t options_number(const struct options *options, option_id id) {
    return atomic_load_explicit(&options->numbers[id], memory_order_relaxed);
}

/* Current value of a TEXT option. */
static inline const char *options_text(const struct options *options, option_id id) {
    return options->texts[id];
}

/* Prints the usage text: PROGRAM's usage line, SUMMARY (a paragraph about the program),
 * then every declared group under its title, each option with its default and meaning. */
void options_print_help(FILE *stream, const char *program, const char *summary);

/* Prints a sample config file: every declared option that a file may set, under its
 * group's title, with its help as a comment and "# name default" commented out (an
 * empty default as ""). Loading it changes nothing: every line is a comment. */
void options_print_config(FILE *stream, const char *program);

/* Prints a man page (troff, man macros, section 1) for PROGRAM: NAME, SYNOPSIS,
 * DESCRIPTION (SUMMARY; a blank line starts a paragraph), then OPTIONS from the table
 * as --help lists them, with defaults. EXTRA (troff, or NULL) is appended as is: the
 * caller's further sections (SIGNALS, FILES, SEE ALSO). VERSION goes in the footer. */
void options_print_man(FILE *stream, const char *program, const char *summary, const char *version,
                       const char *extra);

#endif
