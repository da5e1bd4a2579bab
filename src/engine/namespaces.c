/* Namespaces: parsing --namespaces and looking names up. */
#include "engine/namespaces.h"

#include "base/numbers.h"

#include <stdio.h>
#include <string.h>

static bool valid_name_character(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int namespace_specs_parse(const char *text, struct namespace_spec *specs, char *error,
                          size_t error_size) {
    int count = 0;
    const char *cursor = text;
    while (*cursor != '\0') {
        const char *end = strchr(cursor, ',');
        size_t length = end != NULL ? (size_t)(end - cursor) : strlen(cursor);
        char item[256];
        if (length == 0 || length >= sizeof(item)) {
            snprintf(error, error_size,
                     "--namespaces: expected NAME=QUOTA items separated by commas");
            return -1;
        }
        memcpy(item, cursor, length);
        item[length] = '\0';
        char *equals = strchr(item, '=');
        if (equals == NULL) {
            snprintf(error, error_size, "--namespaces: '%s' has no quota (write NAME=QUOTA)", item);
            return -1;
        }
        *equals = '\0';
        size_t name_length = strlen(item);
        bool valid = name_length > 0 && name_length <= NAMESPACE_MAX_NAME_LENGTH;
        for (size_t i = 0; valid && i < name_length; i++)
            valid = valid_name_character(item[i]);
        if (!valid) {
            snprintf(error, error_size,
                     "--namespaces: bad name '%s' (1 to %d of A-Z a-z 0-9 . _ -)", item,
                     NAMESPACE_MAX_NAME_LENGTH);
            return -1;
        }
        if (strcmp(item, "default") == 0) {
            snprintf(error, error_size,
                     "--namespaces: 'default' is the Redis keyspace; its size is --memory less "
                     "the other quotas");
            return -1;
        }
        for (int i = 0; i < count; i++) {
            if (strcmp(specs[i].name, item) == 0) {
                snprintf(error, error_size, "--namespaces: '%s' is declared twice", item);
                return -1;
            }
        }
        uint64_t quota;
        if (!parse_size(equals + 1, &quota) || quota < (1u << 20)) {
            snprintf(error, error_size, "--namespaces: bad quota '%s' for '%s' (at least 1mb)",
                     equals + 1, item);
            return -1;
        }
        if (count == NAMESPACE_MAX_COUNT - 1) {
            snprintf(error, error_size, "--namespaces: at most %d namespaces",
                     NAMESPACE_MAX_COUNT - 1);
            return -1;
        }
        memcpy(specs[count].name, item, name_length + 1); /* checked: at most 63 bytes */
        specs[count].quota = quota;
        count++;
        cursor += length;
        if (*cursor == ',') cursor++;
    }
    return count;
}

void namespace_table_add(struct namespace_table *table, const char *name, struct store *store,
                         uint64_t quota, bool is_default) {
    struct namespace *ns = &table->list[table->count++];
    memset(ns, 0, sizeof(*ns));
    snprintf(ns->name, sizeof(ns->name), "%s", name);
    ns->name_length = strlen(ns->name);
    ns->store = store;
    ns->quota = quota;
    ns->is_default = is_default;
}

struct namespace *namespace_find(struct namespace_table *table, const void *name, size_t length) {
    for (int i = 0; i < table->count; i++) {
        struct namespace *ns = &table->list[i];
        if (ns->name_length == length && memcmp(ns->name, name, length) == 0) return ns;
    }
    return NULL;
}
