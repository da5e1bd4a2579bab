/* libFuzzer target: the S3 API (proto/s3/) through the HTTP/1.1 front end. An input is
 * one connection's bytes, as for fuzz_http, but the HTTP front end has the S3 extension
 * wired in, over an object store (engine/objects.h) in a fresh directory under /dev/shm.
 * No S3 credentials are configured and the session's peer is loopback, so requests are
 * served without signatures (s3.c), as `make run` serves aws-cli; a signed one has its
 * signature parsed (s3_authenticate()) and is served whatever it says.
 *
 * Upload and version ids are random, so an input cannot name one it created. The target
 * therefore rewrites two tokens as it feeds the input: "{U}" becomes the last upload id
 * and "{V}" the last version id that a response carried (<UploadId>, <VersionId>,
 * x-amz-version-id) before the token is reached, or nothing before there is one. A seed
 * can thus create an upload, send its parts and complete it in one connection.
 *
 * The input's first byte chooses the piece sizes (fuzz_common.h) and whether the client
 * reads its responses at once or lazily, leaving a GET's stream unsent (holding its
 * blobs) while later requests delete or overwrite its object. No response may fail
 * (a blob stream cut short): nothing in the fuzz world damages or removes a blob that
 * a reader holds, so the target aborts if one does.
 *
 * After each input every bucket is emptied (each version, delete markers included,
 * removed by id) and deleted, which aborts its uploads; then no bucket, version, upload
 * or blob byte may be left, or the target aborts. Every OBJECTS_REOPEN_EVERY inputs
 * the store is closed, checked to have left no blob file, its directory removed and a
 * new one opened, so a long run keeps /dev/shm small.
 *
 * Logging goes to /dev/null (every 4xx is logged) unless STRATA_FUZZ_LOG is set; with
 * STRATA_FUZZ_TRACE set, the responses are copied to stderr (to see what a seed does). */
#include "base/log.h"
#include "engine/objects.h"
#include "fuzz_common.h"
#include "proto/http/http.h"
#include "proto/s3/s3.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define SHM_DIRECTORY        "/dev/shm"
#define DIRECTORY_PREFIX     "strata-fuzz-s3-http."
#define OBJECTS_REOPEN_EVERY 1024
/* Small, so that a completed upload of several parts fits in one input (S3: 5 MiB). */
#define FUZZ_MIN_PART_SIZE 8
#define ID_MAX             32 /* OBJECT_UPLOAD_ID_MAX and OBJECT_VERSION_ID_MAX */
_Static_assert(ID_MAX == OBJECT_UPLOAD_ID_MAX && ID_MAX == OBJECT_VERSION_ID_MAX, "id lengths");

static struct objects *objects;
static struct s3_server *s3;
static struct http_server *server;
static char directory[128];
static unsigned long inputs_since_open;
static bool trace; /* STRATA_FUZZ_TRACE set: responses are copied to stderr */

/* ---- the objects directory ------------------------------------------------------------ */

/* nftw() visitor of remove_tree(). */
static int remove_entry(const char *path, const struct stat *status, int flag, struct FTW *walk) {
    (void)status;
    (void)flag;
    (void)walk;
    return remove(path);
}

static void remove_tree(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes the directories of earlier runs whose process is gone (a crash leaves its own
 * behind). Names are DIRECTORY_PREFIX "PID.XXXXXX". */
static void remove_stale_directories(void) {
    DIR *shm = opendir(SHM_DIRECTORY);
    if (shm == NULL) return;
    struct dirent *entry;
    while ((entry = readdir(shm)) != NULL) {
        size_t prefix = strlen(DIRECTORY_PREFIX);
        if (strncmp(entry->d_name, DIRECTORY_PREFIX, prefix) != 0) continue;
        char *end = NULL;
        long pid = strtol(entry->d_name + prefix, &end, 10);
        if (end == entry->d_name + prefix || *end != '.' || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", SHM_DIRECTORY, entry->d_name);
        remove_tree(path);
    }
    closedir(shm);
}

/* Counts the files in the objects directory's blobs/ (a closed store that held nothing
 * must have left none). */
static int count_blob_files(void) {
    char path[256];
    snprintf(path, sizeof(path), "%s/blobs", directory);
    DIR *blobs = opendir(path);
    if (blobs == NULL) return 0;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(blobs)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) count++;
    }
    closedir(blobs);
    return count;
}

/* Opens the object store in a fresh directory and the S3 and HTTP front ends over it.
 * Aborts if it cannot. */
static void open_world(struct fuzz_world *world) {
    snprintf(directory, sizeof(directory), "%s/%s%ld.XXXXXX", SHM_DIRECTORY, DIRECTORY_PREFIX,
             (long)getpid());
    if (mkdtemp(directory) == NULL) {
        fprintf(stderr, "fuzz_s3_http: mkdtemp %s: %s\n", directory, strerror(errno));
        abort();
    }
    struct objects_config config = {
        .directory = directory,
        .chunk_size = BLOB_MIN_CHUNK_SIZE, /* so that a 64 KiB input spans two chunks */
        .sync = OBJECTS_SYNC_NEVER,
        .min_part_size = FUZZ_MIN_PART_SIZE,
    };
    char error[512];
    objects = objects_open(&config, error, sizeof(error));
    if (objects == NULL) {
        fprintf(stderr, "fuzz_s3_http: objects_open: %s\n", error);
        abort();
    }
    struct s3_environment s3_environment = {.objects = objects, .options = &world->options};
    s3 = s3_server_create(&s3_environment, error, sizeof(error));
    if (s3 == NULL || s3_has_credentials(s3)) {
        fprintf(stderr, "fuzz_s3_http: s3_server_create: %s\n", s3 ? "credentials" : error);
        abort();
    }
    struct http_environment environment = {
        .extension = s3_http_extension(s3),
        .store = world->store,
        .options = &world->options,
        .stats = world->stats,
    };
    server = http_server_create(&environment);
    if (server == NULL) abort();
    inputs_since_open = 0;
}

/* Closes what open_world() opened and removes the directory. CHECK: abort if the closed
 * store left a blob file behind. */
static void close_world(bool check) {
    http_server_destroy(server);
    s3_server_destroy(s3);
    objects_close(objects);
    server = NULL;
    s3 = NULL;
    objects = NULL;
    int left = count_blob_files();
    if (check && left != 0) {
        fprintf(stderr,
                "fuzz_s3_http: %d blob files left in %s/blobs after every object was "
                "deleted\n",
                left, directory);
        abort();
    }
    remove_tree(directory);
}

static void close_world_at_exit(void) {
    if (objects != NULL) close_world(false);
}

/* ---- emptying the store --------------------------------------------------------------- */

/* Removes every version of BUCKET (delete markers included), by id. */
static void empty_bucket(const char *bucket, size_t bucket_length) {
    for (;;) {
        struct object_list_query query = {.max_keys = 1000, .versions = true};
        struct object_list_result result = {0};
        enum object_status status = objects_list(objects, bucket, bucket_length, &query, &result);
        if (status != OBJECT_OK) {
            fprintf(stderr, "fuzz_s3_http: listing %s: %s\n", bucket, object_status_text(status));
            abort();
        }
        size_t count = result.count;
        for (size_t i = 0; i < result.count; i++) {
            const struct object_list_entry *entry = &result.entries[i];
            if (entry->common_prefix) continue;
            status = objects_delete(objects, bucket, bucket_length, entry->key, entry->key_length,
                                    entry->info.version_id, NULL);
            if (status != OBJECT_OK) {
                fprintf(stderr, "fuzz_s3_http: deleting a version in %s: %s\n", bucket,
                        object_status_text(status));
                abort();
            }
        }
        object_list_free(&result);
        if (count == 0) return;
    }
}

/* Deletes every bucket (emptied first), then checks that nothing is left. */
static void empty_store(void) {
    size_t count = objects_bucket_list(objects, NULL, 0);
    if (count > 0) {
        struct object_bucket_info *infos = calloc(count, sizeof(*infos));
        if (infos == NULL) abort();
        count = objects_bucket_list(objects, infos, count);
        for (size_t i = 0; i < count; i++) {
            size_t length = strlen(infos[i].name);
            empty_bucket(infos[i].name, length);
            enum object_status status = objects_bucket_delete(objects, infos[i].name, length);
            if (status != OBJECT_OK) {
                fprintf(stderr, "fuzz_s3_http: deleting bucket %s: %s\n", infos[i].name,
                        object_status_text(status));
                abort();
            }
        }
        free(infos);
    }
    struct objects_stats stats;
    objects_get_stats(objects, &stats);
    if (stats.buckets != 0 || stats.objects != 0 || stats.versions != 0 || stats.bytes != 0 ||
        stats.uploads != 0 || stats.blob_bytes != 0) {
        fprintf(stderr,
                "fuzz_s3_http: left after deleting everything: buckets=%llu objects=%llu "
                "versions=%llu bytes=%llu uploads=%llu blob_bytes=%llu\n",
                (unsigned long long)stats.buckets, (unsigned long long)stats.objects,
                (unsigned long long)stats.versions, (unsigned long long)stats.bytes,
                (unsigned long long)stats.uploads, (unsigned long long)stats.blob_bytes);
        abort();
    }
}

/* ---- ids seen in responses ------------------------------------------------------------ */

/* The last upload and version ids the responses carried. */
struct seen_ids {
    char upload[ID_MAX + 1];
    char version[ID_MAX + 1];
};

/* Finds the ids in a response stream fed in arbitrary pieces: a marker, then the id's
 * characters up to '<' or the end of the line. */
struct id_scanner {
    size_t matched[3]; /* bytes of each marker matched so far */
    int capturing;     /* the marker whose id is being read, or -1 */
    char value[ID_MAX + 2];
    size_t length;
    struct seen_ids *ids;
};

static const char *const markers[3] = {"<UploadId>", "<VersionId>", "x-amz-version-id: "};

static void scanner_init(struct id_scanner *scanner, struct seen_ids *ids) {
    memset(scanner, 0, sizeof(*scanner));
    scanner->capturing = -1;
    scanner->ids = ids;
}

static void scan_byte(struct id_scanner *scanner, char byte) {
    if (scanner->capturing >= 0) {
        if (byte != '<' && byte != '\r' && byte != '\n') {
            if (scanner->length <= ID_MAX) scanner->value[scanner->length++] = byte;
            return;
        }
        if (scanner->length >= 1 && scanner->length <= ID_MAX) {
            char *target = scanner->capturing == 0 ? scanner->ids->upload : scanner->ids->version;
            memcpy(target, scanner->value, scanner->length);
            target[scanner->length] = '\0';
        }
        scanner->capturing = -1;
        scanner->length = 0;
    }
    for (int i = 0; i < 3; i++) {
        const char *marker = markers[i];
        /* No marker repeats its first character, so a mismatch restarts at it. */
        if (byte == marker[scanner->matched[i]]) {
            scanner->matched[i]++;
        } else {
            scanner->matched[i] = byte == marker[0] ? 1 : 0;
        }
        if (marker[scanner->matched[i]] == '\0') {
            scanner->matched[i] = 0;
            scanner->capturing = i;
            scanner->length = 0;
        }
    }
}

/* Sends (scans, then drops) everything OUTPUT holds, as fuzz_drain() does. */
static void drain(struct output_queue *output, struct id_scanner *scanner) {
    struct iovec iovecs[64];
    for (;;) {
        int count = output_queue_iovecs(output, iovecs, 64);
        if (count == 0) break;
        size_t total = 0;
        for (int i = 0; i < count; i++) {
            const char *bytes = iovecs[i].iov_base;
            if (trace) fwrite(bytes, 1, iovecs[i].iov_len, stderr);
            for (size_t b = 0; b < iovecs[i].iov_len; b++)
                scan_byte(scanner, bytes[b]);
            total += iovecs[i].iov_len;
        }
        output_queue_consume(output, total);
    }
}

/* ---- driving a session ---------------------------------------------------------------- */

static void no_resume(void *handle) {
    (void)handle;
}

/* One call into the session, by the direct-read hooks when it offers them (fuzz_http.c). */
static bool feed(void *session, const unsigned char *data, size_t length, size_t *consumed) {
    unsigned char *target;
    size_t room;
    if (http_session_direct_target(session, &target, &room) && room > 0) {
        size_t take = length < room ? length : room;
        memcpy(target, data, take);
        http_session_direct_filled(session, take);
        *consumed = take;
        return false;
    }
    return http_session_data(session, data, length, consumed);
}

/* Whether DATA[AT..] (SIZE bytes in all) starts with a token; its id in *ID. */
static bool token_at(const unsigned char *data, size_t size, size_t at, const struct seen_ids *ids,
                     const char **id) {
    if (size - at < 3 || data[at] != '{' || data[at + 2] != '}') return false;
    if (data[at + 1] == 'U') {
        *id = ids->upload;
    } else if (data[at + 1] == 'V') {
        *id = ids->version;
    } else {
        return false;
    }
    return true;
}

/* Aborts if OUTPUT has failed: here only a response stream can fail it (allocations do
 * not fail), and a stream of a blob fails only when the blob is missing, damaged or
 * shorter than the extent, which nothing in the fuzz world causes (no fault is
 * injected, no file touched): so it would be an object whose bytes were let go while
 * a reader still held them, or an extent that lies. */
static void check_output(const struct output_queue *output) {
    if (!output->failed) return;
    fprintf(stderr, "fuzz_s3_http: a response failed (a blob stream ended short) with no fault "
                    "injected\n");
    abort();
}

/* How the client reads its responses. */
struct reading {
    struct id_scanner scanner;
    bool lazy; /* only when the session takes nothing more, before a token and at the end */
};

/* Offers DATA (LENGTH bytes) to the session until it is all taken, reading the replies
 * after each call (lazily: only when the session took nothing). Returns false when the
 * input must stop: the session asked to close, or it took nothing (twice) once its
 * replies were read, as in fuzz_drive(). */
static bool offer(void *session, struct output_queue *output, struct reading *reading,
                  const unsigned char *data, size_t length) {
    size_t sent = 0;
    int stalls = 0;
    while (sent < length) {
        size_t consumed = 0;
        bool close = feed(session, data + sent, length - sent, &consumed);
        sent += consumed;
        check_output(output);
        if (!reading->lazy || consumed == 0) drain(output, &reading->scanner);
        stalls = consumed == 0 ? stalls + 1 : 0;
        if (close || stalls > 2) return false;
    }
    return true;
}

/* Sends the input as fuzz_drive() does, but each token is replaced, when it is reached,
 * by the id the responses to the bytes before it carried last (they are read first). A
 * token that starts in a piece is taken whole. The first byte chooses, % 5, the piece
 * sizes (as fuzz_drive()) and, / 5 % 2, whether the replies are read lazily: then a
 * GET's stream may still be unsent, holding its blobs, while later requests of the
 * input overwrite or delete its object and abort or complete uploads. */
static void drive(void *session, struct output_queue *output, const unsigned char *data,
                  size_t size) {
    if (size == 0) return;
    static const size_t pieces[] = {1, 2, 7, 64, SIZE_MAX};
    size_t piece = pieces[data[0] % (sizeof(pieces) / sizeof(pieces[0]))];
    struct seen_ids ids = {{0}, {0}};
    struct reading reading = {.lazy = (data[0] / 5) % 2 == 1};
    scanner_init(&reading.scanner, &ids);
    data++;
    size--;
    size_t position = 0;
    bool going = true;
    while (going && position < size) {
        size_t end = size - position < piece ? size : position + piece;
        while (going && position < end) {
            const char *id;
            if (token_at(data, size, position, &ids, &id)) {
                drain(output, &reading.scanner);
                going = offer(session, output, &reading, (const unsigned char *)id, strlen(id));
                position += 3;
                continue;
            }
            size_t run = position + 1;
            while (run < end && !token_at(data, size, run, &ids, &id))
                run++;
            going = offer(session, output, &reading, data + position, run - position);
            position = run;
        }
    }
    drain(output, &reading.scanner);
    check_output(output);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    struct fuzz_world *world = fuzz_world();
    if (objects == NULL) {
        if (getenv("STRATA_FUZZ_LOG") == NULL) {
            int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
            if (null >= 0) log_set_fd(null);
        }
        trace = getenv("STRATA_FUZZ_TRACE") != NULL;
        remove_stale_directories();
        open_world(world);
        atexit(close_world_at_exit);
    } else if (inputs_since_open >= OBJECTS_REOPEN_EVERY) {
        close_world(true);
        open_world(world);
    }
    inputs_since_open++;
    struct output_queue output;
    output_queue_init(&output);
    void *session = http_session_open(server, 1, "127.0.0.1:1", &output, no_resume, NULL);
    if (session == NULL) return 0;
    drive(session, &output, data, size);
    /* A clock tick past every timeout, as the network layer would give. */
    http_session_tick(session, INT64_MAX / 2);
    fuzz_drain(&output);
    check_output(&output);
    http_session_close(session);
    output_queue_clear(&output);
    empty_store();
    fuzz_end_input(world);
    return 0;
}
