#include "base/options.h"

#include "base/numbers.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const struct option_definition base_definitions[] = {
#define OPTION OPTION_DEFINITION
#include "base/options.def"
#undef OPTION
};

static struct option_group base_group = {
    .title = "General",
    .definitions = base_definitions,
    .count = OPTION_BASE_COUNT,
};

/* The composed table: every declared group's rows, in the order declared (the base
 * group first). Written only at start-up, before any other thread runs. */
static const struct option_definition *definitions[OPTIONS_CAPACITY];
static int definition_count;
static struct option_group *groups[OPTIONS_CAPACITY];
static int group_count;

int options_declare(struct option_group *group) {
    if (group != &base_group && group_count == 0 && options_declare(&base_group) != 0) return -1;
    for (int i = 0; i < group_count; i++) {
        if (groups[i] == group) return 0;
    }
    if (definition_count + group->count > OPTIONS_CAPACITY || group_count == OPTIONS_CAPACITY)
        return -1;
    for (int row = 0; row < group->count; row++) {
        if (options_find(group->definitions[row].name) >= 0) return -1;
        for (int other = 0; other < row; other++) {
            if (strcmp(group->definitions[other].name, group->definitions[row].name) == 0)
                return -1;
        }
    }
    group->first = definition_count;
    for (int row = 0; row < group->count; row++)
        definitions[definition_count++] = &group->definitions[row];
    groups[group_count++] = group;
    group->declared = true;
    return 0;
}

int options_count(void) {
    if (group_count == 0) options_declare(&base_group);
    return definition_count;
}

const char *options_name(option_id id) {
    return definitions[id]->name;
}

const char *options_default_text(option_id id) {
    return definitions[id]->default_text;
}

const char *options_help(option_id id) {
    return definitions[id]->help;
}

enum option_type options_type(option_id id) {
    return definitions[id]->type;
}

int options_flags(option_id id) {
    return definitions[id]->flags;
}

int options_find(const char *name) {
    for (int id = 0; id < definition_count; id++) {
        if (strcmp(definitions[id]->name, name) == 0) return id;
    }
    return -1;
}

static void set_error(char *error, size_t error_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *error, size_t error_size, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(error, error_size, format, arguments);
    va_end(arguments);
}

/* Finds VALUE among the '|'-separated CHOICES. Returns its index, or -1. */
static int choice_index(const char *choices, const char *value) {
    size_t value_length = strlen(value);
    int index = 0;
    const char *start = choices;
    for (;;) {
        const char *end = strchr(start, '|');
        size_t length = end ? (size_t)(end - start) : strlen(start);
        if (length == value_length && strncmp(start, value, length) == 0) return index;
        if (end == NULL) return -1;
        start = end + 1;
        index++;
    }
}

/* Writes choice number INDEX of CHOICES into OUTPUT. */
static void choice_name(const char *choices, int64_t index, char *output, size_t output_size) {
    const char *start = choices;
    for (int64_t i = 0; i < index && start != NULL; i++) {
        start = strchr(start, '|');
        if (start != NULL) start++;
    }
    if (start == NULL) {
        snprintf(output, output_size, "?");
        return;
    }
    const char *end = strchr(start, '|');
    int length = end ? (int)(end - start) : (int)strlen(start);
    snprintf(output, output_size, "%.*s", length, start);
}

/* Parses VALUE for option ID without storing it. Numeric results go to *number, TEXT
 * results stay in VALUE. Returns 0, or -1 with a reason in ERROR. */
static int parse_value(option_id id, const char *value, int64_t *number, char *error,
                       size_t error_size) {
    const struct option_definition *definition = definitions[id];
    char low[32];
    switch (definition->type) {
    case OPTION_TYPE_TEXT:
        if (value[0] == '\0' && definition->default_text[0] != '\0') {
            set_error(error, error_size, "must not be empty");
            return -1;
        }
        return 0;
    case OPTION_TYPE_INTEGER: {
        if ((definition->flags & OPTION_AUTO) && strcmp(value, "auto") == 0) {
            *number = 0;
            return 0;
        }
        int64_t parsed;
        if (!parse_int64(value, strlen(value), &parsed) || parsed < definition->minimum ||
            parsed > definition->maximum) {
            set_error(error, error_size, "expected an integer from %lld to %lld%s",
                      (long long)definition->minimum, (long long)definition->maximum,
                      (definition->flags & OPTION_AUTO) ? " or auto" : "");
            return -1;
        }
        *number = parsed;
        return 0;
    }
    case OPTION_TYPE_SIZE: {
        uint64_t parsed;
        if (!parse_size(value, &parsed) || parsed > (uint64_t)INT64_MAX) {
            set_error(error, error_size, "expected a size such as 64mb or 1gb");
            return -1;
        }
        if ((int64_t)parsed < definition->minimum || (int64_t)parsed > definition->maximum) {
            format_size(low, sizeof(low), (uint64_t)definition->minimum);
            set_error(error, error_size, "expected a size of at least %s", low);
            return -1;
        }
        *number = (int64_t)parsed;
        return 0;
    }
    case OPTION_TYPE_CHOICE: {
        int index = choice_index(definition->choices, value);
        if (index < 0) {
            set_error(error, error_size, "expected one of %s", definition->choices);
            return -1;
        }
        *number = index;
        return 0;
    }
    }
    set_error(error, error_size, "unknown option type");
    return -1;
}

/* Stores an already parsed value. Returns 0, or -1 if out of memory. */
static int store_value(struct options *options, option_id id, const char *value, int64_t number) {
    if (definitions[id]->type == OPTION_TYPE_TEXT) {
        char *copy = strdup(value);
        if (copy == NULL) return -1;
        free(options->texts[id]);
        options->texts[id] = copy;
    } else {
        atomic_store_explicit(&options->numbers[id], number, memory_order_relaxed);
    }
    return 0;
}

int options_init(struct options *options) {
    memset(options, 0, sizeof(*options));
    pthread_mutex_init(&options->change_lock, NULL);
    for (int id = 0; id < options_count(); id++) {
        int64_t number = 0;
        char error[128];
        if (parse_value(id, definitions[id]->default_text, &number, error, sizeof(error)) != 0 ||
            store_value(options, id, definitions[id]->default_text, number) != 0) {
            options_free(options);
            return -1;
        }
    }
    return 0;
}

void options_free(struct options *options) {
    for (int id = 0; id < options_count(); id++) {
        free(options->texts[id]);
        options->texts[id] = NULL;
    }
    pthread_mutex_destroy(&options->change_lock);
}

int options_validate(const struct options *options, char *error, size_t error_size) {
    for (int i = 0; i < group_count; i++) {
        if (groups[i]->validate != NULL && groups[i]->validate(options, error, error_size) != 0)
            return -1;
    }
    return 0;
}

int options_set(struct options *options, option_id id, const char *value, bool running, char *error,
                size_t error_size) {
    if (running && !(definitions[id]->flags & OPTION_MUTABLE)) {
        set_error(error, error_size, "can't set immutable config");
        return -1;
    }
    int64_t number = 0;
    if (parse_value(id, value, &number, error, error_size) != 0) return -1;
    if (!running) {
        if (store_value(options, id, value, number) != 0) {
            set_error(error, error_size, "out of memory");
            return -1;
        }
        return 0;
    }
    /* Mutable options are all numeric: swap, check, and undo on refusal, as one step. */
    pthread_mutex_lock(&options->change_lock);
    int64_t previous = options_number(options, id);
    atomic_store_explicit(&options->numbers[id], number, memory_order_relaxed);
    int result = 0;
    if (options_validate(options, error, error_size) != 0 ||
        (options->on_change != NULL &&
         options->on_change(options, id, options->on_change_context, error, error_size) != 0)) {
        atomic_store_explicit(&options->numbers[id], previous, memory_order_relaxed);
        result = -1;
    }
    pthread_mutex_unlock(&options->change_lock);
    return result;
}

char *options_format(const struct options *options, option_id id, char *output,
                     size_t output_size) {
    const struct option_definition *definition = definitions[id];
    switch (definition->type) {
    case OPTION_TYPE_TEXT:
        snprintf(output, output_size, "%s", options->texts[id] ? options->texts[id] : "");
        break;
    case OPTION_TYPE_CHOICE:
        choice_name(definition->choices, options_number(options, id), output, output_size);
        break;
    default:
        snprintf(output, output_size, "%lld", (long long)options_number(options, id));
        break;
    }
    return output;
}

/* Removes leading and trailing blanks in place. Returns the new start. */
static char *trim(char *text) {
    while (*text == ' ' || *text == '\t')
        text++;
    size_t length = strlen(text);
    while (length > 0 && (text[length - 1] == ' ' || text[length - 1] == '\t' ||
                          text[length - 1] == '\r' || text[length - 1] == '\n')) {
        text[--length] = '\0';
    }
    return text;
}

/* Turns a double-quoted config value into its text in place (\" and \\ escapes).
 * Returns 0, or -1 if the quotes are unbalanced. */
static int unquote(char *value) {
    size_t length = strlen(value);
    if (length == 0 || value[0] != '"') return 0;
    if (length < 2 || value[length - 1] != '"') return -1;
    size_t out = 0;
    for (size_t in = 1; in < length - 1; in++) {
        if (value[in] == '\\' && in + 1 < length - 1) in++;
        value[out++] = value[in];
    }
    value[out] = '\0';
    return 0;
}

int options_load_file(struct options *options, const char *path, char *error, size_t error_size) {
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        set_error(error, error_size, "cannot read config file '%s': %s", path, strerror(errno));
        return -1;
    }
    char line[8192];
    int line_number = 0;
    int result = 0;
    while (fgets(line, sizeof(line), file) != NULL) {
        line_number++;
        char *text = trim(line);
        if (text[0] == '\0' || text[0] == '#') continue;
        char *value = text;
        while (*value != '\0' && *value != ' ' && *value != '\t')
            value++;
        if (*value != '\0') *value++ = '\0';
        value = trim(value);
        int id = options_find(text);
        if (id < 0 || (definitions[id]->flags & OPTION_COMMAND_LINE)) {
            set_error(error, error_size, "%s:%d: unknown option '%s'", path, line_number, text);
            result = -1;
            break;
        }
        if (unquote(value) != 0) {
            set_error(error, error_size, "%s:%d: unbalanced quotes in the value of '%s'", path,
                      line_number, text);
            result = -1;
            break;
        }
        char reason[256];
        if (options_set(options, id, value, false, reason, sizeof(reason)) != 0) {
            set_error(error, error_size, "%s:%d: invalid value '%s' for %s: %s", path, line_number,
                      value, text, reason);
            result = -1;
            break;
        }
    }
    fclose(file);
    return result;
}

enum options_parse_result options_parse_command_line(struct options *options, int argc, char **argv,
                                                     char *error, size_t error_size) {
    /* Two passes: the first finds --help, --version, --config and checks the shape of
     * every argument; the second applies the values over the config file. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i < argc; i++) {
            const char *argument = argv[i];
            if (strcmp(argument, "--help") == 0 || strcmp(argument, "-h") == 0) {
                return OPTIONS_PARSE_HELP;
            }
            if (strcmp(argument, "--version") == 0 || strcmp(argument, "-v") == 0) {
                return OPTIONS_PARSE_VERSION;
            }
            if (strncmp(argument, "--", 2) != 0) {
                set_error(error, error_size, "unexpected argument '%s' (see --help)", argument);
                return OPTIONS_PARSE_ERROR;
            }
            char name[64];
            const char *value;
            const char *equals = strchr(argument + 2, '=');
            size_t name_length = equals ? (size_t)(equals - argument - 2) : strlen(argument + 2);
            if (name_length >= sizeof(name)) name_length = sizeof(name) - 1;
            memcpy(name, argument + 2, name_length);
            name[name_length] = '\0';
            int id = options_find(name);
            if (id < 0) {
                set_error(error, error_size, "unknown option '--%s' (see --help)", name);
                return OPTIONS_PARSE_ERROR;
            }
            if (equals != NULL) {
                value = equals + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                set_error(error, error_size, "option '--%s' needs a value", name);
                return OPTIONS_PARSE_ERROR;
            }
            if (pass == 0) {
                if (id == OPTION_config &&
                    options_set(options, OPTION_config, value, false, error, error_size) != 0) {
                    return OPTIONS_PARSE_ERROR;
                }
                continue;
            }
            char reason[256];
            if (options_set(options, id, value, false, reason, sizeof(reason)) != 0) {
                set_error(error, error_size, "invalid value '%s' for --%s: %s", value, name,
                          reason);
                return OPTIONS_PARSE_ERROR;
            }
        }
        if (pass == 0 && options_text(options, OPTION_config)[0] != '\0' &&
            options_load_file(options, options_text(options, OPTION_config), error, error_size) !=
                0) {
            return OPTIONS_PARSE_ERROR;
        }
    }
    if (options_validate(options, error, error_size) != 0) return OPTIONS_PARSE_ERROR;
    return OPTIONS_PARSE_OK;
}

/* What every size option accepts: --help, the sample config and the man page say it. */
#define SIZES_TEXT                                                                                 \
    "Sizes accept b, kb, mb, gb, tb (powers of 1024) and k, m, g, t (powers of 1000)."

void options_print_help(FILE *stream, const char *program, const char *summary) {
    fprintf(stream,
            "Usage: %s [--config FILE] [--OPTION VALUE ...]\n"
            "\n"
            "%s\n"
            "\n"
            "Options (each may also be set in a config file as 'name value'):\n",
            program, summary);
    options_count(); /* declares the base group if nothing else has */
    for (int g = 0; g < group_count; g++) {
        const struct option_group *group = groups[g];
        fprintf(stream, "\n%s:\n", group->title);
        for (int row = 0; row < group->count; row++) {
            const struct option_definition *definition = &group->definitions[row];
            char left[64];
            snprintf(left, sizeof(left), "--%s %s", definition->name, definition->metavar);
            fprintf(stream, "  %-30s  %s\n", left, definition->help);
            if (definition->default_text[0] != '\0') {
                fprintf(stream, "  %-30s  (default: %s)\n", "", definition->default_text);
            }
        }
        if (group == &base_group) {
            fprintf(stream, "  %-30s  %s\n", "--help", "print this text and exit");
            fprintf(stream, "  %-30s  %s\n", "--version", "print the version and exit");
        }
    }
    fprintf(stream, "\n" SIZES_TEXT "\n");
}

/* Writes TEXT as comment lines "# ..." of at most WIDTH columns, broken at spaces (a
 * word longer than the line stays whole). */
static void print_comment(FILE *stream, const char *text, int width) {
    while (*text != '\0') {
        int length = (int)strlen(text);
        int take = length;
        if (length > width) {
            take = width;
            while (take > 0 && text[take] != ' ')
                take--;
            if (take == 0) take = (int)strcspn(text, " ");
        }
        fprintf(stream, "# %.*s\n", take, text);
        text += take;
        while (*text == ' ')
            text++;
    }
}

void options_print_config(FILE *stream, const char *program) {
    fprintf(stream,
            "# %s configuration: one 'name value' per line, '#' starts a comment, a value may\n"
            "# be in double quotes. Every option is shown commented out at its default;\n"
            "# the command line overrides this file (%s --config FILE --OPTION VALUE).\n"
            "# " SIZES_TEXT "\n",
            program, program);
    options_count(); /* declares the base group if nothing else has */
    for (int g = 0; g < group_count; g++) {
        const struct option_group *group = groups[g];
        bool titled = false;
        for (int row = 0; row < group->count; row++) {
            const struct option_definition *definition = &group->definitions[row];
            if (definition->flags & OPTION_COMMAND_LINE) continue; /* not allowed in a file */
            if (!titled) fprintf(stream, "\n# ---- %s ----\n", group->title);
            titled = true;
            fprintf(stream, "\n");
            print_comment(stream, definition->help, 86);
            if (definition->default_text[0] == '\0') {
                fprintf(stream, "# %s \"\"\n", definition->name);
            } else {
                fprintf(stream, "# %s %s\n", definition->name, definition->default_text);
            }
        }
    }
}

/* Writes TEXT for troff: backslashes and hyphens escaped, a line that would start with
 * a control character ('.' or '\'') guarded, and a blank line made a paragraph break. */
static void print_troff(FILE *stream, const char *text) {
    bool line_start = true;
    for (const char *at = text; *at != '\0'; at++) {
        if (line_start && (*at == '.' || *at == '\'')) fputs("\\&", stream);
        line_start = false;
        switch (*at) {
        case '\\':
            fputs("\\e", stream);
            break;
        case '-':
            fputs("\\-", stream);
            break;
        case '\n':
            if (at[1] == '\n') {
                fputs("\n.PP\n", stream);
                while (at[1] == '\n')
                    at++;
            } else {
                fputc('\n', stream);
            }
            line_start = true;
            break;
        default:
            fputc(*at, stream);
        }
    }
}

void options_print_man(FILE *stream, const char *program, const char *summary, const char *version,
                       const char *extra) {
    fputs(".TH ", stream);
    for (const char *at = program; *at != '\0'; at++) {
        if (*at == '-') {
            fputs("\\-", stream);
        } else {
            fputc(*at >= 'a' && *at <= 'z' ? *at - 'a' + 'A' : *at, stream);
        }
    }
    fprintf(stream, " 1 \"\" \"strata %s\" \"User Commands\"\n.SH NAME\n", version);
    print_troff(stream, program);
    fputs(" \\- a tiered data store that speaks the Redis protocol, HTTP and S3\n"
          ".SH SYNOPSIS\n.B ",
          stream);
    print_troff(stream, program);
    fputs("\n[\\fB\\-\\-config\\fR \\fIFILE\\fR] [\\fB\\-\\-\\fIOPTION\\fR \\fIVALUE\\fR ...]\n"
          ".SH DESCRIPTION\n",
          stream);
    print_troff(stream, summary);
    fputs("\n.PP\nEvery option may also be set in a configuration file given with "
          "\\fB\\-\\-config\\fR, one \\(oqname value\\(cq per line; the command line "
          "overrides the file. " SIZES_TEXT "\n.SH OPTIONS\n",
          stream);
    options_count(); /* declares the base group if nothing else has */
    for (int g = 0; g < group_count; g++) {
        const struct option_group *group = groups[g];
        fputs(".SS ", stream);
        print_troff(stream, group->title);
        fputc('\n', stream);
        for (int row = 0; row < group->count; row++) {
            const struct option_definition *definition = &group->definitions[row];
            fputs(".TP\n\\fB\\-\\-", stream);
            print_troff(stream, definition->name);
            fputs("\\fR", stream);
            if (definition->metavar[0] != '\0') {
                fputs(" \\fI", stream);
                print_troff(stream, definition->metavar);
                fputs("\\fR", stream);
            }
            fputc('\n', stream);
            print_troff(stream, definition->help);
            if (definition->default_text[0] != '\0') {
                fputs("\n.br\nDefault: \\fB", stream);
                print_troff(stream, definition->default_text);
                fputs("\\fR.", stream);
            }
            fputc('\n', stream);
        }
        if (group == &base_group) {
            fputs(".TP\n\\fB\\-\\-help\\fR\nPrint the usage text and exit.\n"
                  ".TP\n\\fB\\-\\-version\\fR\nPrint the version and exit.\n",
                  stream);
        }
    }
    if (extra != NULL) fputs(extra, stream);
}
