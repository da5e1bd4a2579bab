/* C tests of libstrata against a real server, run by tests/integration/test_native.py:
 *
 *   test_libstrata PORT                 every check below against the server on PORT
 *   test_libstrata timeout PORT         PORT accepts but never answers: expect TIMEOUT
 *   test_libstrata keys                 prints the docs/kv-keys.md vectors' keys in hex
 *   test_libstrata unix PATH            shared memory through the server's Unix socket PATH
 *   test_libstrata auth PORT USER PASS  credentials against a server whose USER (password
 *                                       PASS) may read and write namespace "a" only
 *
 * Prints one line per failed check and exits 1 if any failed. */
#include "strata.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(condition)                                                                           \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition);          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static strata_client *connect_to(int port, const char *name_space) {
    struct strata_config config = {.port = port, .name_space = name_space, .timeout_ms = 20000};
    strata_client *client = NULL;
    int error = strata_connect(&config, &client);
    if (error != 0) fprintf(stderr, "connect: %s\n", strata_strerror(error));
    return client;
}

static void fill(unsigned char *buffer, size_t length, unsigned seed) {
    for (size_t i = 0; i < length; i++)
        buffer[i] = (unsigned char)((i * 2654435761u + seed) >> 13);
}

/* Batch PUT and GET straight into caller buffers, of sizes from 0 bytes to 3 MiB. */
static void test_batches(strata_client *client) {
    enum { COUNT = 8 };
    static const size_t sizes[COUNT] = {0, 1, 100, 4096, 16383, 16384, 262144, 3 << 20};
    unsigned char *values[COUNT], *buffers[COUNT];
    char keys[COUNT][32];
    struct strata_put_item puts[COUNT];
    struct strata_get_item gets[COUNT];
    for (int i = 0; i < COUNT; i++) {
        values[i] = malloc(sizes[i] + 1);
        buffers[i] = malloc(sizes[i] + 1);
        fill(values[i], sizes[i], (unsigned)i);
        snprintf(keys[i], sizeof(keys[i]), "c/batch/%d", i);
        puts[i] = (struct strata_put_item){.key = keys[i],
                                           .key_length = strlen(keys[i]),
                                           .value = values[i],
                                           .value_length = sizes[i]};
        gets[i] = (struct strata_get_item){.key = keys[i],
                                           .key_length = strlen(keys[i]),
                                           .buffer = buffers[i],
                                           .capacity = sizes[i] + 1};
    }
    CHECK(strata_put_batch(client, puts, COUNT) == 0);
    for (int i = 0; i < COUNT; i++)
        CHECK(puts[i].status == 0);
    CHECK(strata_get_batch(client, gets, COUNT) == 0);
    for (int i = 0; i < COUNT; i++) {
        CHECK(gets[i].status == 0);
        CHECK(gets[i].value_length == sizes[i]);
        CHECK(memcmp(values[i], buffers[i], sizes[i]) == 0);
    }
    /* A buffer one byte short: the value is not sent, the length needed is. */
    gets[7].capacity = sizes[7] - 1;
    CHECK(strata_get_batch(client, &gets[7], 1) == 0);
    CHECK(gets[7].status == STRATA_ERR_BUFFER_TOO_SMALL);
    CHECK(gets[7].value_length == sizes[7]);
    /* The connection is still good after that. */
    CHECK(strata_ping(client) == 0);
    for (int i = 0; i < COUNT; i++) {
        free(values[i]);
        free(buffers[i]);
    }
}

static void test_keys_and_conditions(strata_client *client) {
    CHECK(strata_put(client, "c/one", 5, "first", 5) == 0);
    struct strata_put_item again = {.key = "c/one",
                                    .key_length = 5,
                                    .value = "second",
                                    .value_length = 6,
                                    .flags = STRATA_PUT_IF_ABSENT};
    CHECK(strata_put_batch(client, &again, 1) == 0);
    CHECK(again.status == STRATA_ERR_EXISTS);
    char buffer[16];
    size_t length = 0;
    CHECK(strata_get(client, "c/one", 5, buffer, sizeof(buffer), &length) == 0);
    CHECK(length == 5 && memcmp(buffer, "first", 5) == 0);
    struct strata_key keys[3] = {{"c/one", 5}, {"c/none", 6}, {"c/batch/1", 9}};
    int statuses[3];
    CHECK(strata_exists_batch(client, keys, 3, statuses) == 0);
    CHECK(statuses[0] == 0 && statuses[1] == STRATA_ERR_NOT_FOUND && statuses[2] == 0);
    CHECK(strata_touch_batch(client, keys, 3, statuses) == 0);
    CHECK(statuses[0] == 0 && statuses[1] == STRATA_ERR_NOT_FOUND);
    CHECK(strata_delete_batch(client, keys, 2, statuses) == 0);
    CHECK(statuses[0] == 0 && statuses[1] == STRATA_ERR_NOT_FOUND);
    CHECK(strata_get(client, "c/one", 5, buffer, sizeof(buffer), &length) == STRATA_ERR_NOT_FOUND);
    /* Bad arguments are refused before anything is sent. */
    struct strata_put_item empty_key = {
        .key = "", .key_length = 0, .value = "x", .value_length = 1};
    CHECK(strata_put_batch(client, &empty_key, 1) == STRATA_ERR_INVALID);
    CHECK(strata_pin_batch(client, keys, 1, 0, statuses) == STRATA_ERR_INVALID);
}

static void test_fingerprints(strata_client *client) {
    unsigned char model_a[16], model_b[16];
    memset(model_a, 'a', 16);
    memset(model_b, 'b', 16);
    struct strata_put_item put = {.key = "c/fp",
                                  .key_length = 4,
                                  .value = "kv-block",
                                  .value_length = 8,
                                  .fingerprint = model_a};
    CHECK(strata_put_batch(client, &put, 1) == 0 && put.status == 0);
    char buffer[16] = {0};
    struct strata_get_item get = {.key = "c/fp",
                                  .key_length = 4,
                                  .buffer = buffer,
                                  .capacity = sizeof(buffer),
                                  .fingerprint = model_b};
    CHECK(strata_get_batch(client, &get, 1) == 0);
    CHECK(get.status == STRATA_ERR_FINGERPRINT);
    CHECK(buffer[0] == 0); /* never the bytes */
    get.fingerprint = model_a;
    CHECK(strata_get_batch(client, &get, 1) == 0);
    CHECK(get.status == 0 && memcmp(buffer, "kv-block", 8) == 0);
    get.fingerprint = NULL; /* naming none accepts any */
    CHECK(strata_get_batch(client, &get, 1) == 0 && get.status == 0);
}

static void test_chains(strata_client *client) {
    enum { LINKS = 6 };
    unsigned char keys[LINKS][32];
    struct strata_put_item puts[LINKS];
    uint32_t tokens[16];
    for (int i = 0; i < LINKS; i++) {
        for (int t = 0; t < 16; t++)
            tokens[t] = (uint32_t)(i * 16 + t);
        CHECK(strata_kv_key(i == 0 ? NULL : keys[i - 1], tokens, 16, NULL, 0, keys[i]) == 0);
        puts[i] = (struct strata_put_item){.key = keys[i],
                                           .key_length = 32,
                                           .value = tokens,
                                           .value_length = sizeof(tokens),
                                           .parent = i == 0 ? NULL : keys[i - 1],
                                           .parent_length = i == 0 ? 0 : 32};
    }
    CHECK(strata_put_batch(client, puts, 4) == 0); /* the first four links */
    struct strata_key chain[LINKS];
    for (int i = 0; i < LINKS; i++)
        chain[i] = (struct strata_key){keys[i], 32};
    size_t matched = 99;
    CHECK(strata_match_prefix(client, chain, LINKS, 0, &matched) == 0);
    CHECK(matched == 4);
    CHECK(strata_match_prefix(client, chain, LINKS, 5000, &matched) == 0);
    CHECK(matched == 4);
    int statuses[LINKS];
    CHECK(strata_unpin_batch(client, chain, 4, statuses) == 0 && statuses[0] == 0);
    CHECK(strata_pin_batch(client, chain, LINKS, 1000, statuses) == 0);
    CHECK(statuses[3] == 0 && statuses[4] == STRATA_ERR_NOT_FOUND);
    /* A link whose parent is absent is refused (it would be a hole). */
    CHECK(strata_put_batch(client, &puts[5], 1) == 0);
    CHECK(puts[5].status == STRATA_ERR_PARENT_MISSING);
}

struct thread_work {
    strata_client *client;
    int index;
    int errors;
};

/* Many threads share one client (and its pool of four connections). */
static void *thread_main(void *argument) {
    struct thread_work *work = argument;
    unsigned char value[70000], buffer[70000];
    char key[32];
    for (int round = 0; round < 50; round++) {
        snprintf(key, sizeof(key), "c/thread/%d/%d", work->index, round);
        fill(value, sizeof(value), (unsigned)(work->index * 1000 + round));
        if (strata_put(work->client, key, strlen(key), value, sizeof(value)) != 0) work->errors++;
        size_t length = 0;
        if (strata_get(work->client, key, strlen(key), buffer, sizeof(buffer), &length) != 0 ||
            length != sizeof(value) || memcmp(value, buffer, sizeof(value)) != 0) {
            work->errors++;
        }
    }
    return NULL;
}

static void test_threads(strata_client *client) {
    enum { THREADS = 8 };
    pthread_t threads[THREADS];
    struct thread_work work[THREADS];
    for (int i = 0; i < THREADS; i++) {
        work[i] = (struct thread_work){client, i, 0};
        pthread_create(&threads[i], NULL, thread_main, &work[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(work[i].errors == 0);
    }
}

/* Shared memory needs the Unix socket: over TCP it is refused before anything is sent. */
static void test_shared_memory_needs_the_socket(int port) {
    strata_client *client = connect_to(port, "default");
    CHECK(client != NULL);
    if (client == NULL) return;
    void *region = NULL;
    CHECK(strata_shm_create(client, 1 << 20, &region) == STRATA_ERR_SHM && region == NULL);
    CHECK(strata_ping(client) == 0);
    strata_close(client);
}

/* PUT from and GET into the region, over the Unix socket PATH. */
static int test_shared_memory(const char *path) {
    struct strata_config config = {.unix_socket = path, .timeout_ms = 20000};
    strata_client *client = NULL;
    CHECK(strata_connect(&config, &client) == 0);
    if (client == NULL) return 1;
    void *region_pointer = NULL;
    size_t size = 8 << 20;
    CHECK(strata_shm_create(client, size, &region_pointer) == 0);
    if (region_pointer == NULL) {
        strata_close(client);
        return 1;
    }
    unsigned char *region = region_pointer;
    fill(region, 2 << 20, 7);
    struct strata_put_item put = {
        .key = "c/shm", .key_length = 5, .value = region, .value_length = 2 << 20};
    CHECK(strata_put_batch(client, &put, 1) == 0 && put.status == 0);
    struct strata_get_item get = {
        .key = "c/shm", .key_length = 5, .buffer = region + (4 << 20), .capacity = 2 << 20};
    CHECK(strata_get_batch(client, &get, 1) == 0 && get.status == 0);
    CHECK(memcmp(region, region + (4 << 20), 2 << 20) == 0);
    /* A buffer outside the region goes over the socket as usual. */
    unsigned char *heap = malloc(2 << 20);
    get.buffer = heap;
    CHECK(strata_get_batch(client, &get, 1) == 0 && get.status == 0);
    CHECK(memcmp(region, heap, 2 << 20) == 0);
    free(heap);
    /* Many threads share the client: each of its connections registers the region. */
    test_threads(client);
    strata_close(client);
    printf("unix: %d failures\n", failures);
    return failures ? 1 : 0;
}

static int print_key_vectors(void) {
    /* The vectors of docs/kv-keys.md. */
    unsigned char first[32], second[32], salted[32], empty[32];
    uint32_t tokens_a[4] = {1, 2, 3, 4};
    uint32_t tokens_b[4] = {5, 6, 7, 4294967295u};
    if (strata_kv_key(NULL, tokens_a, 4, NULL, 0, first) != 0 ||
        strata_kv_key(first, tokens_b, 4, NULL, 0, second) != 0 ||
        strata_kv_key(NULL, tokens_a, 4, "lora:7", 6, salted) != 0 ||
        strata_kv_key(NULL, NULL, 0, NULL, 0, empty) != 0) {
        return 1;
    }
    unsigned char *keys[4] = {first, second, salted, empty};
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 32; i++)
            printf("%02x", keys[k][i]);
        printf("\n");
    }
    return 0;
}

/* AUTH from libstrata: the right password, a wrong one, none, and a namespace the user
 * has no right on (tests/integration/test_native_auth.py). */
static int test_auth(int port, const char *user, const char *password) {
    struct strata_config config = {
        .port = port, .name_space = "a", .user = user, .password = password, .connections = 2};
    strata_client *client = NULL;
    CHECK(strata_connect(&config, &client) == 0);
    if (client != NULL) {
        CHECK(strata_put(client, "c/auth", 6, "value", 5) == 0);
        char buffer[8];
        size_t length = 0;
        CHECK(strata_get(client, "c/auth", 6, buffer, sizeof(buffer), &length) == 0);
        CHECK(length == 5 && memcmp(buffer, "value", 5) == 0);
        strata_close(client);
    }
    config.name_space = "b";
    client = NULL;
    CHECK(strata_connect(&config, &client) == 0); /* PING needs no right */
    if (client != NULL) {
        CHECK(strata_put(client, "c/auth", 6, "value", 5) == STRATA_ERR_NOPERM);
        CHECK(strata_ping(client) == 0);
        strata_close(client);
    }
    config.name_space = "a";
    config.password = "not the password";
    client = NULL;
    CHECK(strata_connect(&config, &client) == STRATA_ERR_WRONGPASS && client == NULL);
    config.user = NULL;
    config.password = NULL;
    CHECK(strata_connect(&config, &client) == STRATA_ERR_NOAUTH && client == NULL);
    CHECK(strcmp(strata_strerror(STRATA_ERR_WRONGPASS),
                 "invalid user name or password, or the user is disabled") == 0);
    printf("auth: %d failures\n", failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "keys") == 0) return print_key_vectors();
    if (argc == 5 && strcmp(argv[1], "auth") == 0)
        return test_auth(atoi(argv[2]), argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[1], "unix") == 0) return test_shared_memory(argv[2]);
    if (argc == 3 && strcmp(argv[1], "timeout") == 0) {
        struct strata_config config = {.port = atoi(argv[2]), .timeout_ms = 300};
        strata_client *client = NULL;
        int error = strata_connect(&config, &client);
        CHECK(error == STRATA_ERR_TIMEOUT);
        printf("timeout: %s\n", strata_strerror(error));
        return failures ? 1 : 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_libstrata PORT | timeout PORT | keys\n");
        return 2;
    }
    int port = atoi(argv[1]);
    strata_client *client = connect_to(port, "default");
    if (client == NULL) return 1;
    test_batches(client);
    test_keys_and_conditions(client);
    test_fingerprints(client);
    test_chains(client);
    test_threads(client);
    strata_close(client);
    test_shared_memory_needs_the_socket(port);
    /* Nothing listens on port 1. */
    struct strata_config nowhere = {.port = 1};
    strata_client *absent = NULL;
    CHECK(strata_connect(&nowhere, &absent) == STRATA_ERR_CONNECT && absent == NULL);
    CHECK(strcmp(strata_strerror(STRATA_ERR_QUOTA), "the namespace is at its quota") == 0);
    printf("libstrata: %d failures\n", failures);
    return failures ? 1 : 0;
}
