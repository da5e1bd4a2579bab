/* Unit tests of the object store (engine/objects.h): buckets, versions, listing,
 * multipart uploads, the journal and snapshot, recovery, and crc32c_combine().
 *
 * Most tests do not use the blob writer: a test "blob" is a file named as blob_path()
 * names it, holding some bytes, with a blob_digest filled in by hand (MD5 through
 * OpenSSL, CRC32C from base/crc32c.h). The tests of readers of replaced versions write
 * real blobs (blob_writer_*) of multipart objects and read them back while the objects
 * are overwritten and deleted, on one thread and on several. */
#include "base/crc32c.h"
#include "base/output_queue.h"
#include "engine/blob_internal.h"
#include "engine/objects.h"
#include "engine/objects_internal.h"
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t next_blob_id = 0x1000;
static pthread_mutex_t blob_id_lock = PTHREAD_MUTEX_INITIALIZER;

static int remove_entry(const char *path, const struct stat *status, int flag, struct FTW *walk) {
    (void)status;
    (void)flag;
    (void)walk;
    return remove(path);
}

static void remove_tree(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory under /tmp (static storage; one at a time per test). */
static char *fresh_directory(char *buffer, size_t size) {
    snprintf(buffer, size, "/tmp/strata-objects-XXXXXX");
    return mkdtemp(buffer);
}

static struct objects *open_store(const char *directory, enum objects_sync sync) {
    struct objects_config config = {
        .directory = directory, .chunk_size = 0, .sync = sync, .min_part_size = 100};
    char error[512];
    struct objects *objects = objects_open(&config, error, sizeof(error));
    if (objects == NULL) fprintf(stderr, "objects_open: %s\n", error);
    return objects;
}

static void md5_of(const void *data, size_t length, unsigned char md5[16]) {
    unsigned int md5_length = 0;
    EVP_Digest(data, length, md5, &md5_length, EVP_md5(), NULL);
}

static void hex16(const unsigned char bytes[16], char text[33]) {
    for (int i = 0; i < 16; i++)
        snprintf(text + 2 * i, 3, "%02x", bytes[i]);
}

/* Writes a blob file holding LENGTH bytes of DATA and describes it in *DIGEST. */
static bool make_blob(struct objects *objects, const void *data, size_t length,
                      struct blob_digest *digest) {
    pthread_mutex_lock(&blob_id_lock);
    uint64_t id = next_blob_id++;
    pthread_mutex_unlock(&blob_id_lock);
    char path[4096];
    blob_path(objects_blobs(objects), id, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return false;
    bool written = length == 0 || write(fd, data, length) == (ssize_t)length;
    close(fd);
    digest->id = id;
    digest->length = length;
    md5_of(data, length, digest->md5);
    digest->crc32c = crc32c(data, length);
    return written;
}

static bool blob_exists(struct objects *objects, uint64_t id) {
    char path[4096];
    blob_path(objects_blobs(objects), id, path, sizeof(path));
    return access(path, F_OK) == 0;
}

#define BUCKET(name) name, strlen(name)

static enum object_status put_text(struct objects *objects, const char *bucket, const char *key,
                                   const char *text, struct object_info *info, uint64_t *blob_id) {
    struct blob_digest digest;
    if (!make_blob(objects, text, strlen(text), &digest)) return OBJECT_IO_ERROR;
    if (blob_id != NULL) *blob_id = digest.id;
    return objects_put(objects, bucket, strlen(bucket), key, strlen(key), &digest, "attr", 4, info);
}

/* The key's current version's info (status returned). */
static enum object_status get_info(struct objects *objects, const char *bucket, const char *key,
                                   const char *version_id, struct object_info *info,
                                   struct blob_extent *first_extent) {
    struct object_handle handle;
    enum object_status status =
        objects_get(objects, bucket, strlen(bucket), key, strlen(key), version_id, &handle);
    if (info != NULL) *info = handle.info;
    if (info != NULL) info->attributes = NULL;
    if (first_extent != NULL && handle.extent_count > 0) *first_extent = handle.extents[0];
    object_handle_clear(&handle);
    return status;
}

static bool is_hex(const char *text, size_t length) {
    if (strlen(text) != length) return false;
    for (size_t i = 0; i < length; i++) {
        if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* Lists BUCKET into RESULT with the given query fields. */
static enum object_status list(struct objects *objects, const char *bucket, const char *prefix,
                               const char *delimiter, const char *after, size_t max_keys,
                               bool versions, struct object_list_result *result) {
    struct object_list_query query = {
        .prefix = prefix,
        .prefix_length = prefix ? strlen(prefix) : 0,
        .delimiter = delimiter,
        .delimiter_length = delimiter ? strlen(delimiter) : 0,
        .after = after,
        .after_length = after ? strlen(after) : 0,
        .max_keys = max_keys,
        .versions = versions,
    };
    return objects_list(objects, bucket, strlen(bucket), &query, result);
}

/* Whether RESULT's entries are exactly the comma-separated NAMES (common prefixes end
 * with the delimiter, so they read as written). */
static bool entries_are(const struct object_list_result *result, const char *names) {
    char joined[4096] = "";
    size_t used = 0;
    for (size_t i = 0; i < result->count; i++) {
        int wrote = snprintf(joined + used, sizeof(joined) - used, "%s%.*s", i ? "," : "",
                             (int)result->entries[i].key_length, result->entries[i].key);
        if (wrote < 0 || (size_t)wrote >= sizeof(joined) - used) return false;
        used += (size_t)wrote;
    }
    if (strcmp(joined, names) != 0) {
        fprintf(stderr, "    listed \"%s\", expected \"%s\"\n", joined, names);
        return false;
    }
    return true;
}

/* ---- crc32c_combine ------------------------------------------------------------------ */

static void test_crc32c_combine(void) {
    static unsigned char data[1 << 20];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < sizeof(data); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data[i] = (unsigned char)x;
    }
    size_t splits[][2] = {{0, 0},     {0, 10},    {10, 0},         {1, 1},
                          {3, 5},     {100, 7},   {4096, 4096},    {1000, 65537},
                          {12345, 1}, {1, 99999}, {524288, 524288}};
    for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
        size_t a = splits[i][0], b = splits[i][1];
        uint32_t whole = crc32c(data, a + b);
        uint32_t combined = crc32c_combine(crc32c(data, a), crc32c(data + a, b), b);
        CHECK(whole == combined);
    }
    /* Three pieces, left to right. */
    uint32_t running = crc32c(data, 300);
    running = crc32c_combine(running, crc32c(data + 300, 7000), 7000);
    running = crc32c_combine(running, crc32c(data + 7300, 20000), 20000);
    CHECK(running == crc32c(data, 27300));
    CHECK(crc32c("123456789", 9) == 0xE3069283u);
    CHECK(crc32c_combine(crc32c("1234", 4), crc32c("56789", 5), 5) == 0xE3069283u);
}

/* ---- buckets ------------------------------------------------------------------------- */

static void test_bucket_names(void) {
    struct {
        const char *name;
        bool valid;
    } table[] = {
        {"abc", true},
        {"my-bucket.example", true},
        {"a1", false},
        {"ab", false},
        {"0bucket9", true},
        {"Bucket", false},
        {"bucket_name", false},
        {"-bucket", false},
        {"bucket-", false},
        {".bucket", false},
        {"bucket.", false},
        {"my..bucket", false},
        {"my.bucket", true},
        {"192.168.5.4", false},
        {"192.168.5", true},
        {"1.2.3.4.5", true},
        {"1234.1.1.1", true},
        {"xn--bucket", false},
        {"xn-bucket", true},
        {"bucket-s3alias", false},
        {"bucket-s3aliasx", true},
        {"bucket with space", false},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true},   /* 63 */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, /* 64 */
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        bool valid = objects_bucket_name_valid(table[i].name, strlen(table[i].name));
        if (valid != table[i].valid) fprintf(stderr, "    bucket name %s\n", table[i].name);
        CHECK(valid == table[i].valid);
    }
    CHECK(!objects_bucket_name_valid("abc\0def", 7));
}

static void test_buckets(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    CHECK(objects_bucket_create(objects, BUCKET("Bad_Name")) == OBJECT_INVALID_BUCKET_NAME);
    CHECK(objects_bucket_create(objects, BUCKET("zeta")) == OBJECT_OK);
    CHECK(objects_bucket_create(objects, BUCKET("alpha")) == OBJECT_OK);
    CHECK(objects_bucket_create(objects, BUCKET("mid.bucket")) == OBJECT_OK);
    CHECK(objects_bucket_create(objects, BUCKET("alpha")) == OBJECT_BUCKET_EXISTS);
    struct object_bucket_info infos[8];
    CHECK(objects_bucket_list(objects, infos, 8) == 3);
    CHECK(strcmp(infos[0].name, "alpha") == 0);
    CHECK(strcmp(infos[1].name, "mid.bucket") == 0);
    CHECK(strcmp(infos[2].name, "zeta") == 0);
    CHECK(objects_bucket_list(objects, infos, 1) == 3);
    struct object_bucket_info info;
    CHECK(objects_bucket_info(objects, BUCKET("alpha"), &info) == OBJECT_OK);
    CHECK(info.versioning == OBJECT_VERSIONING_OFF && info.objects == 0 && info.created_ms > 0);
    CHECK(objects_bucket_info(objects, BUCKET("nope"), &info) == OBJECT_NO_SUCH_BUCKET);

    /* Not empty while a version (a delete marker too) exists. */
    uint64_t blob;
    CHECK(put_text(objects, "alpha", "k", "value", NULL, &blob) == OBJECT_OK);
    CHECK(objects_bucket_delete(objects, BUCKET("alpha")) == OBJECT_BUCKET_NOT_EMPTY);
    CHECK(objects_bucket_set_versioning(objects, BUCKET("alpha"), OBJECT_VERSIONING_OFF) ==
          OBJECT_INVALID_RANGE);
    CHECK(objects_bucket_set_versioning(objects, BUCKET("alpha"), OBJECT_VERSIONING_ENABLED) ==
          OBJECT_OK);
    struct object_delete_result deleted;
    CHECK(objects_delete(objects, BUCKET("alpha"), "k", 1, NULL, &deleted) == OBJECT_OK);
    CHECK(deleted.delete_marker);
    CHECK(objects_delete(objects, BUCKET("alpha"), "k", 1, "null", &deleted) == OBJECT_OK);
    CHECK(!blob_exists(objects, blob));
    CHECK(objects_bucket_delete(objects, BUCKET("alpha")) == OBJECT_BUCKET_NOT_EMPTY);
    CHECK(objects_bucket_info(objects, BUCKET("alpha"), &info) == OBJECT_OK);
    CHECK(info.versions == 1 && info.objects == 0);

    /* Deleting a bucket aborts its uploads and removes their parts. */
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    CHECK(objects_upload_create(objects, BUCKET("zeta"), "big", 3, NULL, 0, upload_id) ==
          OBJECT_OK);
    struct blob_digest part;
    REQUIRE(make_blob(objects, "part", 4, &part));
    CHECK(objects_upload_part(objects, BUCKET("zeta"), upload_id, 1, &part, NULL) == OBJECT_OK);
    CHECK(objects_bucket_delete(objects, BUCKET("zeta")) == OBJECT_OK);
    CHECK(!blob_exists(objects, part.id));
    CHECK(objects_bucket_delete(objects, BUCKET("zeta")) == OBJECT_NO_SUCH_BUCKET);
    CHECK(objects_bucket_list(objects, infos, 8) == 2);

    /* At most OBJECTS_MAX_BUCKETS. */
    char name[32];
    for (int i = 0; i < OBJECTS_MAX_BUCKETS - 2; i++) {
        snprintf(name, sizeof(name), "bucket-%04d", i);
        if (objects_bucket_create(objects, BUCKET(name)) != OBJECT_OK) {
            CHECK(false);
            break;
        }
    }
    CHECK(objects_bucket_create(objects, BUCKET("one-too-many")) == OBJECT_TOO_MANY_BUCKETS);
    CHECK(objects_bucket_list(objects, NULL, 0) == OBJECTS_MAX_BUCKETS);
    objects_close(objects);
    remove_tree(directory);
}

/* ---- versions ------------------------------------------------------------------------ */

static void test_put_get_delete(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NOW);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("photos")) == OBJECT_OK);

    struct object_info info;
    uint64_t first_blob, second_blob;
    CHECK(put_text(objects, "photos", "cat.jpg", "meow", &info, &first_blob) == OBJECT_OK);
    unsigned char md5[16];
    char etag[33];
    md5_of("meow", 4, md5);
    hex16(md5, etag);
    CHECK(strcmp(info.etag, etag) == 0);
    CHECK(strcmp(info.version_id, "null") == 0 && info.is_latest && !info.delete_marker);
    CHECK(info.length == 4 && info.crc32c == crc32c("meow", 4) && info.parts == 0);

    struct object_handle handle;
    CHECK(objects_get(objects, BUCKET("photos"), "cat.jpg", 7, NULL, &handle) == OBJECT_OK);
    CHECK(handle.extent_count == 1 && handle.extents[0].id == first_blob &&
          handle.extents[0].offset == 0 && handle.extents[0].length == 4);
    CHECK(handle.info.attributes_length == 4 && memcmp(handle.info.attributes, "attr", 4) == 0);
    CHECK(strcmp(handle.info.etag, etag) == 0 && handle.info.is_latest);
    object_handle_clear(&handle);

    /* Overwrite: the old blob file goes. */
    CHECK(put_text(objects, "photos", "cat.jpg", "purr!", &info, &second_blob) == OBJECT_OK);
    CHECK(!blob_exists(objects, first_blob));
    CHECK(blob_exists(objects, second_blob));
    struct object_bucket_info bucket;
    CHECK(objects_bucket_info(objects, BUCKET("photos"), &bucket) == OBJECT_OK);
    CHECK(bucket.objects == 1 && bucket.versions == 1 && bucket.bytes == 5);

    /* Errors take the blob too. */
    struct blob_digest digest;
    REQUIRE(make_blob(objects, "x", 1, &digest));
    CHECK(objects_put(objects, BUCKET("nobucket"), "k", 1, &digest, NULL, 0, NULL) ==
          OBJECT_NO_SUCH_BUCKET);
    CHECK(!blob_exists(objects, digest.id));
    static char long_key[OBJECT_MAX_KEY_LENGTH + 1];
    memset(long_key, 'k', sizeof(long_key));
    REQUIRE(make_blob(objects, "x", 1, &digest));
    CHECK(objects_put(objects, BUCKET("photos"), long_key, sizeof(long_key), &digest, NULL, 0,
                      NULL) == OBJECT_KEY_TOO_LONG);
    CHECK(!blob_exists(objects, digest.id));
    REQUIRE(make_blob(objects, "x", 1, &digest));
    CHECK(objects_put(objects, BUCKET("photos"), long_key, OBJECT_MAX_KEY_LENGTH, &digest, NULL, 0,
                      NULL) == OBJECT_OK);
    CHECK(blob_exists(objects, digest.id));
    REQUIRE(make_blob(objects, "x", 1, &digest));
    CHECK(objects_put(objects, BUCKET("photos"), "", 0, &digest, NULL, 0, NULL) ==
          OBJECT_KEY_TOO_LONG);
    static unsigned char big_attributes[OBJECT_MAX_ATTRIBUTES + 1];
    REQUIRE(make_blob(objects, "x", 1, &digest));
    CHECK(objects_put(objects, BUCKET("photos"), "k", 1, &digest, big_attributes,
                      sizeof(big_attributes), NULL) == OBJECT_ATTRIBUTES_TOO_LARGE);
    CHECK(!blob_exists(objects, digest.id));

    /* Quota: a put that would pass it is refused; a smaller overwrite is not. */
    CHECK(objects_bucket_set_quota(objects, BUCKET("photos"), 10) == OBJECT_OK);
    CHECK(put_text(objects, "photos", "big", "0123456789", NULL, NULL) == OBJECT_QUOTA_EXCEEDED);
    CHECK(put_text(objects, "photos", "cat.jpg", "mew", NULL, NULL) == OBJECT_OK);
    CHECK(objects_bucket_set_quota(objects, BUCKET("photos"), 0) == OBJECT_OK);

    /* Delete (versioning off): the key and its blob go; deleting again is fine. */
    struct object_delete_result deleted;
    CHECK(objects_delete(objects, BUCKET("photos"), "cat.jpg", 7, NULL, &deleted) == OBJECT_OK);
    CHECK(!deleted.delete_marker);
    CHECK(get_info(objects, "photos", "cat.jpg", NULL, &info, NULL) == OBJECT_NO_SUCH_KEY);
    CHECK(!info.delete_marker);
    CHECK(objects_delete(objects, BUCKET("photos"), "cat.jpg", 7, NULL, NULL) == OBJECT_OK);
    CHECK(objects_delete(objects, BUCKET("nobucket"), "cat.jpg", 7, NULL, NULL) ==
          OBJECT_NO_SUCH_BUCKET);
    CHECK(get_info(objects, "photos", "cat.jpg", "null", NULL, NULL) == OBJECT_NO_SUCH_VERSION);

    /* Empty value. */
    CHECK(put_text(objects, "photos", "empty", "", &info, NULL) == OBJECT_OK);
    CHECK(info.length == 0 && strcmp(info.etag, "d41d8cd98f00b204e9800998ecf8427e") == 0);

    struct objects_stats stats;
    objects_get_stats(objects, &stats);
    CHECK(stats.buckets == 1 && stats.objects == 2 && stats.versions == 2);
    CHECK(stats.bytes == 1 && stats.metadata_bytes > 0 && stats.journal_bytes > 0);
    objects_close(objects);
    remove_tree(directory);
}

static void test_versioning(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("docs")) == OBJECT_OK);
    /* A null version from before versioning stays among the versions. */
    uint64_t null_blob, v1_blob, v2_blob;
    struct object_info null_info, v1, v2, info;
    CHECK(put_text(objects, "docs", "k", "old", &null_info, &null_blob) == OBJECT_OK);
    REQUIRE(objects_bucket_set_versioning(objects, BUCKET("docs"), OBJECT_VERSIONING_ENABLED) ==
            OBJECT_OK);
    CHECK(put_text(objects, "docs", "k", "one", &v1, &v1_blob) == OBJECT_OK);
    CHECK(put_text(objects, "docs", "k", "two", &v2, &v2_blob) == OBJECT_OK);
    CHECK(is_hex(v1.version_id, 32) && is_hex(v2.version_id, 32));
    CHECK(strcmp(v1.version_id, v2.version_id) != 0);
    CHECK(blob_exists(objects, null_blob) && blob_exists(objects, v1_blob));

    CHECK(get_info(objects, "docs", "k", NULL, &info, NULL) == OBJECT_OK);
    CHECK(strcmp(info.version_id, v2.version_id) == 0 && info.is_latest);
    CHECK(get_info(objects, "docs", "k", v1.version_id, &info, NULL) == OBJECT_OK);
    CHECK(info.length == 3 && !info.is_latest && info.crc32c == crc32c("one", 3));
    CHECK(get_info(objects, "docs", "k", "null", &info, NULL) == OBJECT_OK);
    CHECK(info.crc32c == crc32c("old", 3) && !info.is_latest);
    CHECK(get_info(objects, "docs", "k", "0000000000000000ffffffffffffffff", NULL, NULL) ==
          OBJECT_NO_SUCH_VERSION);

    /* A delete marker hides the key; asking for it by id says so. */
    struct object_delete_result deleted;
    CHECK(objects_delete(objects, BUCKET("docs"), "k", 1, NULL, &deleted) == OBJECT_OK);
    CHECK(deleted.delete_marker && is_hex(deleted.version_id, 32));
    CHECK(get_info(objects, "docs", "k", NULL, &info, NULL) == OBJECT_NO_SUCH_KEY);
    CHECK(info.delete_marker && info.is_latest && strcmp(info.version_id, deleted.version_id) == 0);
    CHECK(get_info(objects, "docs", "k", deleted.version_id, &info, NULL) ==
          OBJECT_IS_DELETE_MARKER);
    CHECK(info.delete_marker);
    struct object_list_result result;
    CHECK(list(objects, "docs", NULL, NULL, NULL, 100, false, &result) == OBJECT_OK);
    CHECK(result.count == 0 && !result.truncated);
    object_list_free(&result);
    CHECK(list(objects, "docs", NULL, NULL, NULL, 100, true, &result) == OBJECT_OK);
    REQUIRE(result.count == 4);
    CHECK(result.entries[0].info.delete_marker && result.entries[0].info.is_latest);
    CHECK(strcmp(result.entries[1].info.version_id, v2.version_id) == 0);
    CHECK(!result.entries[1].info.is_latest);
    CHECK(strcmp(result.entries[2].info.version_id, v1.version_id) == 0);
    CHECK(strcmp(result.entries[3].info.version_id, "null") == 0);
    object_list_free(&result);
    struct object_bucket_info bucket;
    CHECK(objects_bucket_info(objects, BUCKET("docs"), &bucket) == OBJECT_OK);
    CHECK(bucket.objects == 0 && bucket.versions == 4 && bucket.bytes == 9);

    /* Removing the marker by id brings v2 back. */
    CHECK(objects_delete(objects, BUCKET("docs"), "k", 1, deleted.version_id, &deleted) ==
          OBJECT_OK);
    CHECK(deleted.delete_marker);
    CHECK(get_info(objects, "docs", "k", NULL, &info, NULL) == OBJECT_OK);
    CHECK(strcmp(info.version_id, v2.version_id) == 0 && info.is_latest);
    /* Removing v2 makes v1 current; its blob goes. */
    CHECK(objects_delete(objects, BUCKET("docs"), "k", 1, v2.version_id, &deleted) == OBJECT_OK);
    CHECK(!deleted.delete_marker && strcmp(deleted.version_id, v2.version_id) == 0);
    CHECK(!blob_exists(objects, v2_blob));
    CHECK(get_info(objects, "docs", "k", NULL, &info, NULL) == OBJECT_OK);
    CHECK(strcmp(info.version_id, v1.version_id) == 0 && info.is_latest);
    /* A version that is not there: OK, nothing changes. */
    CHECK(objects_delete(objects, BUCKET("docs"), "k", 1, v2.version_id, NULL) == OBJECT_OK);
    CHECK(objects_bucket_info(objects, BUCKET("docs"), &bucket) == OBJECT_OK);
    CHECK(bucket.objects == 1 && bucket.versions == 2);

    /* Suspended: puts replace the null version wherever it is and become current. */
    REQUIRE(objects_bucket_set_versioning(objects, BUCKET("docs"), OBJECT_VERSIONING_SUSPENDED) ==
            OBJECT_OK);
    uint64_t suspended_blob;
    CHECK(put_text(objects, "docs", "k", "three", &info, &suspended_blob) == OBJECT_OK);
    CHECK(strcmp(info.version_id, "null") == 0);
    CHECK(!blob_exists(objects, null_blob));
    CHECK(list(objects, "docs", NULL, NULL, NULL, 100, true, &result) == OBJECT_OK);
    REQUIRE(result.count == 2);
    CHECK(strcmp(result.entries[0].info.version_id, "null") == 0);
    CHECK(result.entries[0].info.is_latest && result.entries[0].info.length == 5);
    CHECK(strcmp(result.entries[1].info.version_id, v1.version_id) == 0);
    object_list_free(&result);
    /* A delete is a null delete marker replacing the null version. */
    CHECK(objects_delete(objects, BUCKET("docs"), "k", 1, NULL, &deleted) == OBJECT_OK);
    CHECK(deleted.delete_marker && strcmp(deleted.version_id, "null") == 0);
    CHECK(!blob_exists(objects, suspended_blob));
    CHECK(get_info(objects, "docs", "k", NULL, &info, NULL) == OBJECT_NO_SUCH_KEY);
    CHECK(info.delete_marker);
    CHECK(objects_bucket_info(objects, BUCKET("docs"), &bucket) == OBJECT_OK);
    CHECK(bucket.versions == 2 && bucket.objects == 0 && bucket.bytes == 3);
    /* Enabled again: a delete of a key never written leaves a marker. */
    REQUIRE(objects_bucket_set_versioning(objects, BUCKET("docs"), OBJECT_VERSIONING_ENABLED) ==
            OBJECT_OK);
    CHECK(objects_delete(objects, BUCKET("docs"), "ghost", 5, NULL, &deleted) == OBJECT_OK);
    CHECK(deleted.delete_marker);
    CHECK(objects_bucket_info(objects, BUCKET("docs"), &bucket) == OBJECT_OK);
    CHECK(bucket.versions == 3);
    objects_close(objects);
    remove_tree(directory);
}

static void test_copy(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("source")) == OBJECT_OK);
    REQUIRE(objects_bucket_create(objects, BUCKET("target")) == OBJECT_OK);
    uint64_t blob;
    struct object_info original, copied, info;
    CHECK(put_text(objects, "source", "a", "hello", &original, &blob) == OBJECT_OK);
    CHECK(objects_copy(objects, BUCKET("source"), "a", 1, NULL, BUCKET("target"), "b", 1, NULL, 0,
                       &copied) == OBJECT_OK);
    CHECK(strcmp(copied.etag, original.etag) == 0 && copied.crc32c == original.crc32c);
    struct blob_extent extent;
    CHECK(get_info(objects, "target", "b", NULL, &info, &extent) == OBJECT_OK);
    CHECK(extent.id == blob && info.length == 5);
    struct object_handle handle;
    CHECK(objects_get(objects, BUCKET("target"), "b", 1, NULL, &handle) == OBJECT_OK);
    CHECK(handle.info.attributes_length == 4); /* the source's attributes */
    object_handle_clear(&handle);
    /* New attributes replace the source's. */
    CHECK(objects_copy(objects, BUCKET("source"), "a", 1, NULL, BUCKET("target"), "c", 1, "new", 3,
                       NULL) == OBJECT_OK);
    CHECK(objects_get(objects, BUCKET("target"), "c", 1, NULL, &handle) == OBJECT_OK);
    CHECK(handle.info.attributes_length == 3 && memcmp(handle.info.attributes, "new", 3) == 0);
    object_handle_clear(&handle);
    /* Onto itself: the blob stays. */
    CHECK(objects_copy(objects, BUCKET("source"), "a", 1, NULL, BUCKET("source"), "a", 1, "m", 1,
                       NULL) == OBJECT_OK);
    CHECK(blob_exists(objects, blob));
    CHECK(objects_copy(objects, BUCKET("source"), "zz", 2, NULL, BUCKET("target"), "d", 1, NULL, 0,
                       NULL) == OBJECT_NO_SUCH_KEY);
    CHECK(objects_copy(objects, BUCKET("source"), "a", 1, "nope", BUCKET("target"), "d", 1, NULL, 0,
                       NULL) == OBJECT_NO_SUCH_VERSION);
    CHECK(objects_copy(objects, BUCKET("nobucket"), "a", 1, NULL, BUCKET("target"), "d", 1, NULL, 0,
                       NULL) == OBJECT_NO_SUCH_BUCKET);

    /* Deleting the source leaves the copies and the blob. */
    CHECK(objects_delete(objects, BUCKET("source"), "a", 1, NULL, NULL) == OBJECT_OK);
    CHECK(blob_exists(objects, blob));
    struct object_list_result result;
    CHECK(list(objects, "target", NULL, NULL, NULL, 10, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "b,c"));
    object_list_free(&result);
    CHECK(objects_delete(objects, BUCKET("target"), "b", 1, NULL, NULL) == OBJECT_OK);
    CHECK(blob_exists(objects, blob));
    CHECK(objects_delete(objects, BUCKET("target"), "c", 1, NULL, NULL) == OBJECT_OK);
    CHECK(!blob_exists(objects, blob));
    objects_close(objects);
    remove_tree(directory);
}

/* ---- listing ------------------------------------------------------------------------- */

static void test_list(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("bkt")) == OBJECT_OK);
    const char *keys[] = {"a",
                          "a/1",
                          "a/2",
                          "a/b/1",
                          "a/b/2",
                          "a/c/1",
                          "b",
                          "b/x",
                          "c/d/e",
                          "photos/2024/jan.jpg",
                          "photos/2024/feb.jpg",
                          "photos/2025/mar.jpg",
                          "photos/readme",
                          "z"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        REQUIRE(put_text(objects, "bkt", keys[i], "v", NULL, NULL) == OBJECT_OK);
    struct object_list_result result;

    CHECK(list(objects, "bkt", NULL, NULL, NULL, 1000, false, &result) == OBJECT_OK);
    CHECK(result.count == sizeof(keys) / sizeof(keys[0]) && !result.truncated);
    CHECK(result.entries[0].info.is_latest && result.entries[0].info.length == 1);
    object_list_free(&result);

    CHECK(list(objects, "bkt", "a/", NULL, NULL, 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "a/1,a/2,a/b/1,a/b/2,a/c/1"));
    object_list_free(&result);

    CHECK(list(objects, "bkt", NULL, "/", NULL, 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "a,a/,b,b/,c/,photos/,z"));
    CHECK(result.entries[1].common_prefix && !result.entries[0].common_prefix);
    object_list_free(&result);

    CHECK(list(objects, "bkt", "a/", "/", NULL, 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "a/1,a/2,a/b/,a/c/"));
    object_list_free(&result);

    CHECK(list(objects, "bkt", "photos/", "/", NULL, 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "photos/2024/,photos/2025/,photos/readme"));
    object_list_free(&result);

    CHECK(list(objects, "bkt", "photos/2024/", "/", NULL, 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "photos/2024/feb.jpg,photos/2024/jan.jpg"));
    object_list_free(&result);

    /* A delimiter of more than one byte. */
    CHECK(list(objects, "bkt", "photos", "/20", NULL, 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "photos/20,photos/readme"));
    object_list_free(&result);

    /* After: exclusive; a common prefix equal to it, or holding it, is not listed again. */
    CHECK(list(objects, "bkt", NULL, "/", "a/", 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "b,b/,c/,photos/,z"));
    object_list_free(&result);
    CHECK(list(objects, "bkt", NULL, "/", "a/b/1", 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "b,b/,c/,photos/,z"));
    object_list_free(&result);
    CHECK(list(objects, "bkt", "a/", "/", "a/b/1", 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "a/c/"));
    object_list_free(&result);
    CHECK(list(objects, "bkt", NULL, NULL, "a/b/1", 3, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "a/b/2,a/c/1,b") && result.truncated);
    object_list_free(&result);
    CHECK(list(objects, "bkt", "photos/", NULL, "a", 1000, false, &result) == OBJECT_OK);
    CHECK(result.count == 4); /* an after before the prefix starts at the prefix */
    object_list_free(&result);
    CHECK(list(objects, "bkt", "a/", NULL, "b", 1000, false, &result) == OBJECT_OK);
    CHECK(result.count == 0 && !result.truncated);
    object_list_free(&result);

    /* max_keys: truncated only when more follow. */
    CHECK(list(objects, "bkt", NULL, "/", NULL, 7, false, &result) == OBJECT_OK);
    CHECK(result.count == 7 && !result.truncated);
    object_list_free(&result);
    CHECK(list(objects, "bkt", NULL, "/", NULL, 6, false, &result) == OBJECT_OK);
    CHECK(result.count == 6 && result.truncated);
    object_list_free(&result);
    CHECK(list(objects, "bkt", NULL, "/", NULL, 0, false, &result) == OBJECT_OK);
    CHECK(result.count == 0);
    object_list_free(&result);
    CHECK(list(objects, "bkt", NULL, "/", "photos/", 1, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "z") && !result.truncated);
    object_list_free(&result);
    CHECK(list(objects, "nobucket", NULL, NULL, NULL, 10, false, &result) == OBJECT_NO_SUCH_BUCKET);

    /* A key hidden by a delete marker: gone from listings, its prefix too when it was
     * the only key under it. */
    REQUIRE(objects_bucket_set_versioning(objects, BUCKET("bkt"), OBJECT_VERSIONING_ENABLED) ==
            OBJECT_OK);
    CHECK(objects_delete(objects, BUCKET("bkt"), "c/d/e", 5, NULL, NULL) == OBJECT_OK);
    CHECK(objects_delete(objects, BUCKET("bkt"), "b", 1, NULL, NULL) == OBJECT_OK);
    CHECK(list(objects, "bkt", NULL, "/", NULL, 1000, false, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "a,a/,b/,photos/,z"));
    object_list_free(&result);
    CHECK(list(objects, "bkt", NULL, "/", NULL, 1000, true, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "a,a/,b,b,b/,c/,photos/,z"));
    object_list_free(&result);

    /* Versions paging with after_version_id. */
    struct object_info v[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(put_text(objects, "bkt", "m", "v", &v[i], NULL) == OBJECT_OK);
    struct object_list_query query = {
        .prefix = "m", .prefix_length = 1, .max_keys = 2, .versions = true};
    CHECK(objects_list(objects, BUCKET("bkt"), &query, &result) == OBJECT_OK);
    CHECK(result.count == 2 && result.truncated);
    CHECK(strcmp(result.entries[0].info.version_id, v[3].version_id) == 0);
    CHECK(result.entries[0].info.is_latest && !result.entries[1].info.is_latest);
    CHECK(strcmp(result.entries[1].info.version_id, v[2].version_id) == 0);
    object_list_free(&result);
    query.after = "m";
    query.after_length = 1;
    query.after_version_id = v[2].version_id;
    CHECK(objects_list(objects, BUCKET("bkt"), &query, &result) == OBJECT_OK);
    CHECK(result.count == 2 && !result.truncated);
    CHECK(strcmp(result.entries[0].info.version_id, v[1].version_id) == 0);
    CHECK(strcmp(result.entries[1].info.version_id, v[0].version_id) == 0);
    object_list_free(&result);
    /* The version to resume after was removed meanwhile: resume at the older ones. */
    CHECK(objects_delete(objects, BUCKET("bkt"), "m", 1, v[2].version_id, NULL) == OBJECT_OK);
    CHECK(objects_list(objects, BUCKET("bkt"), &query, &result) == OBJECT_OK);
    CHECK(result.count == 2 && strcmp(result.entries[0].info.version_id, v[1].version_id) == 0);
    object_list_free(&result);
    /* After alone skips every version of the key. */
    query.after_version_id = NULL;
    query.prefix = NULL;
    query.prefix_length = 0;
    CHECK(objects_list(objects, BUCKET("bkt"), &query, &result) == OBJECT_OK);
    CHECK(entries_are(&result, "photos/2024/feb.jpg,photos/2024/jan.jpg") && result.truncated);
    object_list_free(&result);
    objects_close(objects);
    remove_tree(directory);
}

/* One expected listing entry. */
struct expected_entry {
    char key[16];
    char version_id[OBJECT_VERSION_ID_MAX + 1];
};

static int compare_strings(const void *left, const void *right) {
    return strcmp(*(char *const *)left, *(char *const *)right);
}

/* Lists with max_keys PAGE repeatedly, following the markers, until done; appends every
 * entry to ENTRIES (room for CAPACITY). Returns how many, or SIZE_MAX on an error. */
static size_t list_paged(struct objects *objects, const char *prefix, const char *delimiter,
                         bool versions, size_t page, struct expected_entry *entries,
                         size_t capacity) {
    size_t count = 0;
    char after[16] = "";
    char after_version[OBJECT_VERSION_ID_MAX + 1] = "";
    for (int rounds = 0; rounds < 100000; rounds++) {
        struct object_list_query query = {
            .prefix = prefix,
            .prefix_length = prefix ? strlen(prefix) : 0,
            .delimiter = delimiter,
            .delimiter_length = delimiter ? strlen(delimiter) : 0,
            .after = after,
            .after_length = strlen(after),
            .after_version_id = after_version[0] ? after_version : NULL,
            .max_keys = page,
            .versions = versions,
        };
        struct object_list_result result;
        if (objects_list(objects, BUCKET("rnd"), &query, &result) != OBJECT_OK) return SIZE_MAX;
        if (result.count > page || (result.truncated && result.count == 0)) {
            object_list_free(&result);
            return SIZE_MAX;
        }
        for (size_t i = 0; i < result.count && count < capacity; i++) {
            struct object_list_entry *entry = &result.entries[i];
            snprintf(entries[count].key, sizeof(entries[count].key), "%.*s", (int)entry->key_length,
                     entry->key);
            snprintf(entries[count].version_id, sizeof(entries[count].version_id), "%s",
                     entry->common_prefix ? "" : entry->info.version_id);
            count++;
        }
        bool more = result.truncated;
        if (more) {
            struct object_list_entry *last = &result.entries[result.count - 1];
            snprintf(after, sizeof(after), "%.*s", (int)last->key_length, last->key);
            snprintf(after_version, sizeof(after_version), "%s",
                     versions && !last->common_prefix ? last->info.version_id : "");
        }
        object_list_free(&result);
        if (!more) return count;
    }
    return SIZE_MAX;
}

static void test_list_random_paging(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("rnd")) == OBJECT_OK);
    REQUIRE(objects_bucket_set_versioning(objects, BUCKET("rnd"), OBJECT_VERSIONING_ENABLED) ==
            OBJECT_OK);
    REQUIRE(put_text(objects, "rnd", "source", "value", NULL, NULL) == OBJECT_OK);

    enum { KEYS = 3000 };
    static char key_storage[KEYS + 1][16];
    static char *keys[KEYS + 1];
    static bool hidden[KEYS + 1];
    uint64_t x = 0x2545F4914F6CDD1Dull;
    size_t distinct = 0;
    for (int i = 0; i < KEYS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int length = 1 + (int)(x % 8);
        for (int c = 0; c < length; c++)
            key_storage[i][c] = "ab/c"[(x >> (8 + 2 * c)) & 3];
        key_storage[i][length] = '\0';
        /* Copies (no blob files); some keys come twice. */
        CHECK(objects_copy(objects, BUCKET("rnd"), "source", 6, NULL, BUCKET("rnd"), key_storage[i],
                           strlen(key_storage[i]), NULL, 0, NULL) == OBJECT_OK);
    }
    snprintf(key_storage[KEYS], sizeof(key_storage[KEYS]), "source");
    /* The distinct keys, sorted; every fifth hidden by a delete marker. */
    for (int i = 0; i <= KEYS; i++)
        keys[i] = key_storage[i];
    qsort(keys, KEYS + 1, sizeof(keys[0]), compare_strings);
    for (int i = 0; i <= KEYS; i++) {
        if (distinct > 0 && strcmp(keys[i], keys[distinct - 1]) == 0) continue;
        keys[distinct++] = keys[i];
    }
    for (size_t i = 0; i < distinct; i++) {
        hidden[i] = i % 5 == 2;
        if (hidden[i]) {
            CHECK(objects_delete(objects, BUCKET("rnd"), keys[i], strlen(keys[i]), NULL, NULL) ==
                  OBJECT_OK);
        }
    }
    const char *prefixes[] = {NULL, "a", "ab/", "b/c", "/"};
    const char *delimiters[] = {NULL, "/", "b/"};
    static struct expected_entry expected[KEYS + 1], whole[4 * KEYS], paged[4 * KEYS];
    for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++) {
        for (size_t d = 0; d < sizeof(delimiters) / sizeof(delimiters[0]); d++) {
            const char *prefix = prefixes[p] ? prefixes[p] : "";
            const char *delimiter = delimiters[d];
            /* Brute force over the sorted keys. */
            size_t count = 0;
            for (size_t i = 0; i < distinct; i++) {
                if (hidden[i]) continue;
                const char *key = keys[i];
                if (strncmp(key, prefix, strlen(prefix)) != 0) continue;
                char entry[16];
                snprintf(entry, sizeof(entry), "%s", key);
                if (delimiter != NULL) {
                    const char *found = strstr(key + strlen(prefix), delimiter);
                    if (found != NULL) {
                        snprintf(entry, sizeof(entry), "%.*s",
                                 (int)(found - key + strlen(delimiter)), key);
                    }
                }
                if (count > 0 && strcmp(expected[count - 1].key, entry) == 0) continue;
                snprintf(expected[count++].key, sizeof(expected[0].key), "%s", entry);
            }
            if (p == 0 && d == 0) CHECK(count > 1000);
            size_t listed =
                list_paged(objects, prefixes[p], delimiter, false, 100000, whole, 4 * KEYS);
            CHECK(listed == count);
            bool same = listed == count;
            for (size_t i = 0; same && i < count; i++)
                same = strcmp(whole[i].key, expected[i].key) == 0;
            CHECK(same);
            for (size_t page = 1; page <= 7; page++) {
                size_t got =
                    list_paged(objects, prefixes[p], delimiter, false, page, paged, 4 * KEYS);
                bool equal = got == listed;
                for (size_t i = 0; equal && i < got; i++)
                    equal = strcmp(paged[i].key, whole[i].key) == 0;
                if (!equal) {
                    fprintf(stderr, "    paging prefix=%s delimiter=%s page=%zu differs\n", prefix,
                            delimiter ? delimiter : "(none)", page);
                }
                CHECK(equal);
            }
            /* Versions: paged as one big listing. */
            size_t all_versions =
                list_paged(objects, prefixes[p], delimiter, true, 1000000, whole, 4 * KEYS);
            CHECK(all_versions != SIZE_MAX && all_versions >= count);
            for (size_t page = 1; page <= 7; page += 3) {
                size_t got =
                    list_paged(objects, prefixes[p], delimiter, true, page, paged, 4 * KEYS);
                bool equal = got == all_versions;
                for (size_t i = 0; equal && i < got; i++) {
                    equal = strcmp(paged[i].key, whole[i].key) == 0 &&
                            strcmp(paged[i].version_id, whole[i].version_id) == 0;
                }
                CHECK(equal);
            }
        }
    }
    objects_close(objects);
    remove_tree(directory);
}

/* ---- multipart ----------------------------------------------------------------------- */

static void test_multipart(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("mpu")) == OBJECT_OK);
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    CHECK(objects_upload_create(objects, BUCKET("mpu"), "video", 5, "type", 4, upload_id) ==
          OBJECT_OK);
    CHECK(is_hex(upload_id, 32));
    unsigned char key[OBJECT_MAX_KEY_LENGTH];
    size_t key_length = 0;
    CHECK(objects_upload_key(objects, BUCKET("mpu"), upload_id, key, &key_length) == OBJECT_OK);
    CHECK(key_length == 5 && memcmp(key, "video", 5) == 0);
    CHECK(objects_upload_key(objects, BUCKET("mpu"), "00000000000000000000000000000000", key,
                             &key_length) == OBJECT_NO_SUCH_UPLOAD);

    /* Parts: 1 and 2 of 150 bytes, 3 of 20, a 4th that will not be named, and part 2
     * uploaded twice. */
    static unsigned char data[4][150];
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < 150; i++)
            data[p][i] = (unsigned char)(p * 31 + i);
    size_t lengths[4] = {150, 150, 20, 150};
    struct blob_digest digests[4], replaced;
    char etags[4][OBJECT_ETAG_MAX + 1];
    REQUIRE(make_blob(objects, "first try", 9, &replaced));
    CHECK(objects_upload_part(objects, BUCKET("mpu"), upload_id, 2, &replaced, NULL) == OBJECT_OK);
    for (int p = 0; p < 4; p++) {
        REQUIRE(make_blob(objects, data[p], lengths[p], &digests[p]));
        CHECK(objects_upload_part(objects, BUCKET("mpu"), upload_id, p + 1, &digests[p],
                                  etags[p]) == OBJECT_OK);
        char expected[33];
        hex16(digests[p].md5, expected);
        CHECK(strcmp(etags[p], expected) == 0);
    }
    CHECK(!blob_exists(objects, replaced.id)); /* the re-upload replaced it */
    struct blob_digest stray;
    REQUIRE(make_blob(objects, "x", 1, &stray));
    CHECK(objects_upload_part(objects, BUCKET("mpu"), upload_id, 0, &stray, NULL) ==
          OBJECT_INVALID_RANGE);
    CHECK(!blob_exists(objects, stray.id));
    REQUIRE(make_blob(objects, "x", 1, &stray));
    CHECK(objects_upload_part(objects, BUCKET("mpu"), "nope", 1, &stray, NULL) ==
          OBJECT_NO_SUCH_UPLOAD);
    CHECK(!blob_exists(objects, stray.id));

    /* List parts, two at a time. */
    struct object_parts_result parts;
    CHECK(objects_upload_list_parts(objects, BUCKET("mpu"), upload_id, 0, 2, &parts) == OBJECT_OK);
    CHECK(parts.count == 2 && parts.truncated && parts.parts[0].part_number == 1 &&
          parts.parts[1].part_number == 2 && parts.parts[1].length == 150);
    CHECK(parts.key_length == 5 && memcmp(parts.key, "video", 5) == 0);
    CHECK(parts.attributes_length == 4 && memcmp(parts.attributes, "type", 4) == 0);
    object_parts_free(&parts);
    CHECK(objects_upload_list_parts(objects, BUCKET("mpu"), upload_id, 2, 2, &parts) == OBJECT_OK);
    CHECK(parts.count == 2 && !parts.truncated && parts.parts[0].part_number == 3 &&
          parts.parts[0].crc32c == digests[2].crc32c);
    object_parts_free(&parts);

    /* The checks of Complete leave the upload as it was. */
    struct object_part_ref refs[3] = {{1, ""}, {2, ""}, {3, ""}};
    for (int p = 0; p < 3; p++)
        memcpy(refs[p].etag, etags[p], sizeof(refs[p].etag));
    struct object_part_ref bad[3];
    memcpy(bad, refs, sizeof(bad));
    bad[2].part_number = 7;
    struct object_info info;
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), upload_id, bad, 3, &info) ==
          OBJECT_INVALID_PART);
    memcpy(bad, refs, sizeof(bad));
    bad[1].etag[0] = bad[1].etag[0] == '0' ? '1' : '0';
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), upload_id, bad, 3, &info) ==
          OBJECT_INVALID_PART);
    memcpy(bad, refs, sizeof(bad));
    bad[0] = refs[1];
    bad[1] = refs[0];
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), upload_id, bad, 3, &info) ==
          OBJECT_INVALID_PART_ORDER);
    bad[0] = refs[2];
    bad[1] = refs[2];
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), upload_id, bad, 2, &info) ==
          OBJECT_INVALID_PART_ORDER);
    bad[0] = refs[2]; /* 20 bytes, not last */
    bad[1].part_number = 4;
    memcpy(bad[1].etag, etags[3], sizeof(bad[1].etag));
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), upload_id, bad, 2, &info) ==
          OBJECT_ENTITY_TOO_SMALL);
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), upload_id, refs, 0, &info) ==
          OBJECT_INVALID_PART);
    CHECK(objects_upload_list_parts(objects, BUCKET("mpu"), upload_id, 0, 100, &parts) ==
          OBJECT_OK);
    CHECK(parts.count == 4);
    object_parts_free(&parts);

    /* Quoted, upper-case etags are accepted. */
    for (size_t i = 0; refs[1].etag[i]; i++)
        if (refs[1].etag[i] >= 'a' && refs[1].etag[i] <= 'f') refs[1].etag[i] -= 32;
    char quoted[OBJECT_ETAG_MAX + 1];
    snprintf(quoted, sizeof(quoted), "\"%.32s\"", etags[0]);
    memcpy(refs[0].etag, quoted, sizeof(refs[0].etag));
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), upload_id, refs, 3, &info) == OBJECT_OK);
    unsigned char md5s[48], combined[16];
    for (int p = 0; p < 3; p++)
        memcpy(md5s + 16 * p, digests[p].md5, 16);
    md5_of(md5s, 48, combined);
    char expected_etag[OBJECT_ETAG_MAX + 1];
    hex16(combined, expected_etag);
    strcat(expected_etag, "-3");
    CHECK(strcmp(info.etag, expected_etag) == 0);
    CHECK(info.parts == 3 && info.length == 320);
    unsigned char whole[320];
    memcpy(whole, data[0], 150);
    memcpy(whole + 150, data[1], 150);
    memcpy(whole + 300, data[2], 20);
    CHECK(info.crc32c == crc32c(whole, 320));
    struct object_handle handle;
    CHECK(objects_get(objects, BUCKET("mpu"), "video", 5, NULL, &handle) == OBJECT_OK);
    CHECK(handle.extent_count == 3);
    for (size_t p = 0; p < 3 && p < handle.extent_count; p++) {
        CHECK(handle.extents[p].id == digests[p].id && handle.extents[p].offset == 0 &&
              handle.extents[p].length == lengths[p]);
    }
    CHECK(handle.info.attributes_length == 4 && memcmp(handle.info.attributes, "type", 4) == 0);
    CHECK(strcmp(handle.info.etag, expected_etag) == 0);
    object_handle_clear(&handle);
    CHECK(!blob_exists(objects, digests[3].id)); /* not named: removed */
    CHECK(blob_exists(objects, digests[0].id));
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), upload_id, refs, 3, &info) ==
          OBJECT_NO_SUCH_UPLOAD);
    CHECK(objects_upload_abort(objects, BUCKET("mpu"), upload_id) == OBJECT_NO_SUCH_UPLOAD);

    /* Upload part copy: ranges of the completed object, by reference. */
    char copy_id[OBJECT_UPLOAD_ID_MAX + 1];
    CHECK(objects_upload_create(objects, BUCKET("mpu"), "copy", 4, NULL, 0, copy_id) == OBJECT_OK);
    unsigned char range_md5[16];
    md5_of(whole + 100, 120, range_md5);
    char copy_etag[OBJECT_ETAG_MAX + 1];
    CHECK(objects_upload_part_copy(objects, BUCKET("mpu"), copy_id, 1, BUCKET("mpu"), "video", 5,
                                   NULL, 100, 120, range_md5, crc32c(whole + 100, 120),
                                   copy_etag) == OBJECT_OK);
    CHECK(objects_upload_part_copy(objects, BUCKET("mpu"), copy_id, 2, BUCKET("mpu"), "video", 5,
                                   NULL, 300, 21, range_md5, 0, NULL) == OBJECT_INVALID_RANGE);
    CHECK(objects_upload_part_copy(objects, BUCKET("mpu"), copy_id, 2, BUCKET("mpu"), "nothing", 7,
                                   NULL, 0, 1, range_md5, 0, NULL) == OBJECT_NO_SUCH_KEY);
    md5_of(whole + 310, 10, range_md5);
    CHECK(objects_upload_part_copy(objects, BUCKET("mpu"), copy_id, 2, BUCKET("mpu"), "video", 5,
                                   NULL, 310, 10, range_md5, crc32c(whole + 310, 10),
                                   NULL) == OBJECT_OK);
    struct object_part_ref copy_refs[2] = {{1, ""}, {2, ""}};
    memcpy(copy_refs[0].etag, copy_etag, sizeof(copy_refs[0].etag));
    hex16(range_md5, copy_refs[1].etag);
    CHECK(objects_upload_complete(objects, BUCKET("mpu"), copy_id, copy_refs, 2, &info) ==
          OBJECT_OK);
    CHECK(info.length == 130);
    unsigned char copied[130];
    memcpy(copied, whole + 100, 120);
    memcpy(copied + 120, whole + 310, 10);
    CHECK(info.crc32c == crc32c(copied, 130));
    CHECK(objects_get(objects, BUCKET("mpu"), "copy", 4, NULL, &handle) == OBJECT_OK);
    CHECK(handle.extent_count == 3);
    if (handle.extent_count == 3) {
        CHECK(handle.extents[0].id == digests[0].id && handle.extents[0].offset == 100 &&
              handle.extents[0].length == 50);
        CHECK(handle.extents[1].id == digests[1].id && handle.extents[1].offset == 0 &&
              handle.extents[1].length == 70);
        CHECK(handle.extents[2].id == digests[2].id && handle.extents[2].offset == 10 &&
              handle.extents[2].length == 10);
    }
    object_handle_clear(&handle);
    /* Deleting the first object keeps the blobs the copy refers to. */
    CHECK(objects_delete(objects, BUCKET("mpu"), "video", 5, NULL, NULL) == OBJECT_OK);
    CHECK(blob_exists(objects, digests[0].id) && blob_exists(objects, digests[2].id));
    CHECK(objects_delete(objects, BUCKET("mpu"), "copy", 4, NULL, NULL) == OBJECT_OK);
    CHECK(!blob_exists(objects, digests[0].id) && !blob_exists(objects, digests[2].id));

    /* Abort removes the parts' blobs. */
    char abort_id[OBJECT_UPLOAD_ID_MAX + 1];
    CHECK(objects_upload_create(objects, BUCKET("mpu"), "gone", 4, NULL, 0, abort_id) == OBJECT_OK);
    struct blob_digest part;
    REQUIRE(make_blob(objects, "part", 4, &part));
    CHECK(objects_upload_part(objects, BUCKET("mpu"), abort_id, 1, &part, NULL) == OBJECT_OK);
    CHECK(objects_upload_abort(objects, BUCKET("mpu"), abort_id) == OBJECT_OK);
    CHECK(!blob_exists(objects, part.id));
    CHECK(objects_upload_list_parts(objects, BUCKET("mpu"), abort_id, 0, 10, &parts) ==
          OBJECT_NO_SUCH_UPLOAD);

    /* List uploads: by key, then by start; prefix; markers. */
    const char *upload_keys[] = {"b", "a", "b", "c/1", "b"};
    char ids[5][OBJECT_UPLOAD_ID_MAX + 1];
    for (int i = 0; i < 5; i++) {
        CHECK(objects_upload_create(objects, BUCKET("mpu"), upload_keys[i], strlen(upload_keys[i]),
                                    NULL, 0, ids[i]) == OBJECT_OK);
    }
    struct object_uploads_result uploads;
    CHECK(objects_upload_list(objects, BUCKET("mpu"), NULL, 0, NULL, 0, NULL, 100, &uploads) ==
          OBJECT_OK);
    REQUIRE(uploads.count == 5);
    CHECK(strcmp(uploads.entries[0].upload_id, ids[1]) == 0);
    CHECK(strcmp(uploads.entries[1].upload_id, ids[0]) == 0);
    CHECK(strcmp(uploads.entries[2].upload_id, ids[2]) == 0);
    CHECK(strcmp(uploads.entries[3].upload_id, ids[4]) == 0);
    CHECK(strcmp(uploads.entries[4].upload_id, ids[3]) == 0);
    CHECK(uploads.entries[0].initiated_ms > 0 && !uploads.truncated);
    object_uploads_free(&uploads);
    CHECK(objects_upload_list(objects, BUCKET("mpu"), NULL, 0, "b", 1, ids[0], 2, &uploads) ==
          OBJECT_OK);
    REQUIRE(uploads.count == 2);
    CHECK(strcmp(uploads.entries[0].upload_id, ids[2]) == 0);
    CHECK(strcmp(uploads.entries[1].upload_id, ids[4]) == 0 && uploads.truncated);
    object_uploads_free(&uploads);
    CHECK(objects_upload_list(objects, BUCKET("mpu"), NULL, 0, "b", 1, NULL, 2, &uploads) ==
          OBJECT_OK);
    CHECK(uploads.count == 1 && strcmp(uploads.entries[0].upload_id, ids[3]) == 0);
    CHECK(!uploads.truncated);
    object_uploads_free(&uploads);
    CHECK(objects_upload_list(objects, BUCKET("mpu"), "c/", 2, NULL, 0, NULL, 10, &uploads) ==
          OBJECT_OK);
    CHECK(uploads.count == 1 && uploads.entries[0].key_length == 3 &&
          memcmp(uploads.entries[0].key, "c/1", 3) == 0);
    object_uploads_free(&uploads);
    struct object_bucket_info bucket;
    CHECK(objects_bucket_info(objects, BUCKET("mpu"), &bucket) == OBJECT_OK);
    CHECK(bucket.uploads == 5);
    objects_close(objects);
    remove_tree(directory);
}

/* ---- durability ---------------------------------------------------------------------- */

/* Everything a user can see of the store, as text: buckets, every version with its
 * extents and attributes, uploads and their parts. Freed by the caller. */
static char *dump_state(struct objects *objects) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (out == NULL) return NULL;
    static struct object_bucket_info infos[OBJECTS_MAX_BUCKETS];
    size_t count = objects_bucket_list(objects, infos, OBJECTS_MAX_BUCKETS);
    for (size_t b = 0; b < count; b++) {
        const struct object_bucket_info *info = &infos[b];
        fprintf(out,
                "bucket %s created=%lld versioning=%d quota=%llu objects=%llu versions=%llu "
                "bytes=%llu uploads=%llu\n",
                info->name, (long long)info->created_ms, (int)info->versioning,
                (unsigned long long)info->quota, (unsigned long long)info->objects,
                (unsigned long long)info->versions, (unsigned long long)info->bytes,
                (unsigned long long)info->uploads);
        struct object_list_query query = {.max_keys = SIZE_MAX, .versions = true};
        struct object_list_result result;
        if (objects_list(objects, info->name, strlen(info->name), &query, &result) != OBJECT_OK) {
            fprintf(out, "list failed\n");
            continue;
        }
        for (size_t i = 0; i < result.count; i++) {
            const struct object_list_entry *entry = &result.entries[i];
            const struct object_info *version = &entry->info;
            fprintf(out,
                    "  %.*s %s etag=%s marker=%d latest=%d length=%llu crc=%08x modified=%lld "
                    "parts=%u",
                    (int)entry->key_length, entry->key, version->version_id, version->etag,
                    version->delete_marker, version->is_latest, (unsigned long long)version->length,
                    version->crc32c, (long long)version->modified_ms, version->parts);
            struct object_handle handle;
            if (objects_get(objects, info->name, strlen(info->name), entry->key, entry->key_length,
                            version->version_id, &handle) == OBJECT_OK) {
                for (size_t e = 0; e < handle.extent_count; e++) {
                    fprintf(out, " [%llx %llu %llu]", (unsigned long long)handle.extents[e].id,
                            (unsigned long long)handle.extents[e].offset,
                            (unsigned long long)handle.extents[e].length);
                }
                fprintf(out, " attributes=%.*s", (int)handle.info.attributes_length,
                        (const char *)handle.info.attributes);
            }
            object_handle_clear(&handle);
            fprintf(out, "\n");
        }
        object_list_free(&result);
        struct object_uploads_result uploads;
        if (objects_upload_list(objects, info->name, strlen(info->name), NULL, 0, NULL, 0, NULL,
                                SIZE_MAX, &uploads) != OBJECT_OK) {
            fprintf(out, "upload list failed\n");
            continue;
        }
        for (size_t u = 0; u < uploads.count; u++) {
            const struct object_upload_entry *upload = &uploads.entries[u];
            fprintf(out, "  upload %.*s %s initiated=%lld\n", (int)upload->key_length, upload->key,
                    upload->upload_id, (long long)upload->initiated_ms);
            struct object_parts_result parts;
            if (objects_upload_list_parts(objects, info->name, strlen(info->name),
                                          upload->upload_id, 0, SIZE_MAX, &parts) != OBJECT_OK) {
                fprintf(out, "part list failed\n");
                continue;
            }
            fprintf(out, "    attributes=%.*s\n", (int)parts.attributes_length,
                    (const char *)parts.attributes);
            for (size_t p = 0; p < parts.count; p++) {
                fprintf(out, "    part %d %s %llu %08x %lld\n", parts.parts[p].part_number,
                        parts.parts[p].etag, (unsigned long long)parts.parts[p].length,
                        parts.parts[p].crc32c, (long long)parts.parts[p].modified_ms);
            }
            object_parts_free(&parts);
        }
        object_uploads_free(&uploads);
    }
    fclose(out);
    return text;
}

/* Whether two dumps are the same (prints both when not). */
static bool same_dump(const char *before, const char *after) {
    if (before != NULL && after != NULL && strcmp(before, after) == 0) return true;
    fprintf(stderr, "    state before:\n%s\n    state after:\n%s\n", before ? before : "(none)",
            after ? after : "(none)");
    return false;
}

/* Builds a state with a bit of everything in OBJECTS. */
static void build_state(struct objects *objects) {
    CHECK(objects_bucket_create(objects, BUCKET("plain")) == OBJECT_OK);
    CHECK(objects_bucket_create(objects, BUCKET("versioned")) == OBJECT_OK);
    CHECK(objects_bucket_create(objects, BUCKET("suspended")) == OBJECT_OK);
    CHECK(objects_bucket_create(objects, BUCKET("deleted")) == OBJECT_OK);
    CHECK(objects_bucket_set_quota(objects, BUCKET("plain"), 1000000) == OBJECT_OK);
    CHECK(objects_bucket_set_versioning(objects, BUCKET("versioned"), OBJECT_VERSIONING_ENABLED) ==
          OBJECT_OK);
    CHECK(objects_bucket_set_versioning(objects, BUCKET("suspended"), OBJECT_VERSIONING_ENABLED) ==
          OBJECT_OK);
    char key[32], value[32];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "dir%d/file%d", i % 3, i);
        snprintf(value, sizeof(value), "value %d", i);
        CHECK(put_text(objects, "plain", key, value, NULL, NULL) == OBJECT_OK);
        CHECK(put_text(objects, "versioned", i % 2 ? "odd" : "even", value, NULL, NULL) ==
              OBJECT_OK);
        CHECK(put_text(objects, "suspended", key, value, NULL, NULL) == OBJECT_OK);
    }
    CHECK(objects_delete(objects, BUCKET("plain"), "dir0/file3", 10, NULL, NULL) == OBJECT_OK);
    CHECK(objects_delete(objects, BUCKET("versioned"), "odd", 3, NULL, NULL) == OBJECT_OK);
    CHECK(objects_bucket_set_versioning(objects, BUCKET("suspended"),
                                        OBJECT_VERSIONING_SUSPENDED) == OBJECT_OK);
    CHECK(put_text(objects, "suspended", "dir1/file1", "null one", NULL, NULL) == OBJECT_OK);
    CHECK(objects_delete(objects, BUCKET("suspended"), "dir2/file2", 10, NULL, NULL) == OBJECT_OK);
    CHECK(objects_copy(objects, BUCKET("plain"), "dir1/file4", 10, NULL, BUCKET("versioned"),
                       "copied", 6, "new attributes", 14, NULL) == OBJECT_OK);
    CHECK(objects_bucket_delete(objects, BUCKET("deleted")) == OBJECT_OK);
    /* A completed upload and one in progress. */
    char completed[OBJECT_UPLOAD_ID_MAX + 1], open_upload[OBJECT_UPLOAD_ID_MAX + 1];
    CHECK(objects_upload_create(objects, BUCKET("plain"), "large", 5, "a=b", 3, completed) ==
          OBJECT_OK);
    CHECK(objects_upload_create(objects, BUCKET("versioned"), "pending", 7, "c=d", 3,
                                open_upload) == OBJECT_OK);
    static unsigned char part_data[200];
    memset(part_data, 'p', sizeof(part_data));
    struct object_part_ref refs[2];
    for (int p = 0; p < 2; p++) {
        struct blob_digest digest;
        REQUIRE(make_blob(objects, part_data, p == 0 ? 200 : 50, &digest));
        refs[p].part_number = p + 1;
        CHECK(objects_upload_part(objects, BUCKET("plain"), completed, p + 1, &digest,
                                  refs[p].etag) == OBJECT_OK);
        REQUIRE(make_blob(objects, part_data, 120, &digest));
        CHECK(objects_upload_part(objects, BUCKET("versioned"), open_upload, 3 * p + 2, &digest,
                                  NULL) == OBJECT_OK);
    }
    CHECK(objects_upload_complete(objects, BUCKET("plain"), completed, refs, 2, NULL) == OBJECT_OK);
    unsigned char md5[16];
    md5_of(part_data, 10, md5);
    CHECK(objects_upload_part_copy(objects, BUCKET("versioned"), open_upload, 9, BUCKET("plain"),
                                   "large", 5, NULL, 190, 10, md5, crc32c(part_data, 10),
                                   NULL) == OBJECT_OK);
}

static off_t file_size(const char *directory, const char *name) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", directory, name);
    struct stat status;
    return stat(path, &status) == 0 ? status.st_size : -1;
}

static void test_persistence(void) {
    enum objects_sync modes[] = {OBJECTS_SYNC_NEVER, OBJECTS_SYNC_EVERYSEC, OBJECTS_SYNC_NOW};
    for (size_t m = 0; m < 3; m++) {
        char directory[64];
        REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
        struct objects *objects = open_store(directory, modes[m]);
        REQUIRE(objects != NULL);
        build_state(objects);
        CHECK(objects_sync_pending(objects) == OBJECT_OK);
        char *before = dump_state(objects);
        REQUIRE(before != NULL);
        CHECK(strstr(before, "bucket versioned") != NULL && strstr(before, "part 5") != NULL);
        CHECK(strstr(before, "bucket deleted") == NULL);

        /* A clean close: a snapshot and an empty journal. */
        objects_close(objects);
        CHECK(file_size(directory, "snapshot") > 40);
        CHECK(file_size(directory, "journal") == 24);
        objects = open_store(directory, modes[m]);
        REQUIRE(objects != NULL);
        char *after = dump_state(objects);
        CHECK(same_dump(before, after));
        free(after);

        /* A crash: what was acknowledged is there. */
        CHECK(put_text(objects, "plain", "after/crash", "survives", NULL, NULL) == OBJECT_OK);
        CHECK(objects_delete(objects, BUCKET("versioned"), "even", 4, NULL, NULL) == OBJECT_OK);
        char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
        CHECK(objects_upload_create(objects, BUCKET("plain"), "x", 1, NULL, 0, upload_id) ==
              OBJECT_OK);
        CHECK(objects_upload_abort(objects, BUCKET("plain"), upload_id) == OBJECT_OK);
        free(before);
        before = dump_state(objects);
        struct objects_stats stats;
        objects_get_stats(objects, &stats);
        objects_abandon(objects);
        objects = open_store(directory, modes[m]);
        REQUIRE(objects != NULL);
        after = dump_state(objects);
        CHECK(same_dump(before, after));
        struct objects_stats reopened;
        objects_get_stats(objects, &reopened);
        CHECK(reopened.versions == stats.versions && reopened.objects == stats.objects &&
              reopened.bytes == stats.bytes && reopened.uploads == stats.uploads);
        free(before);
        free(after);
        objects_close(objects);
        remove_tree(directory);
    }
}

static void test_torn_tail_and_orphans(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    build_state(objects);
    char *before = dump_state(objects);
    off_t good = file_size(directory, "journal");
    uint64_t last_blob;
    CHECK(put_text(objects, "plain", "the/last/one", "lost", NULL, &last_blob) == OBJECT_OK);
    struct blob_digest orphan;
    REQUIRE(make_blob(objects, "nobody refers to me", 19, &orphan));
    objects_abandon(objects);

    /* The last record loses its last 3 bytes, as a crash in its write would. */
    char path[4096];
    snprintf(path, sizeof(path), "%s/journal", directory);
    off_t torn = file_size(directory, "journal");
    REQUIRE(torn > good);
    REQUIRE(truncate(path, torn - 3) == 0);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    char *after = dump_state(objects);
    CHECK(same_dump(before, after));
    CHECK(file_size(directory, "journal") == good);
    /* The lost put's blob and the orphan were swept. */
    CHECK(!blob_exists(objects, last_blob));
    CHECK(!blob_exists(objects, orphan.id));
    free(after);

    /* A zero-filled tail (a file system that extended the file but never wrote it). */
    objects_abandon(objects);
    int fd = open(path, O_WRONLY | O_APPEND);
    REQUIRE(fd >= 0);
    static const unsigned char zeros[100];
    CHECK(write(fd, zeros, sizeof(zeros)) == (ssize_t)sizeof(zeros));
    close(fd);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    after = dump_state(objects);
    CHECK(same_dump(before, after));
    CHECK(file_size(directory, "journal") == good);
    free(after);
    free(before);
    objects_abandon(objects);

    /* A damaged record with more after it: the open fails and names the offset. */
    fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    unsigned char byte;
    off_t middle = 24 + 20; /* inside the first record */
    CHECK(pread(fd, &byte, 1, middle) == 1);
    byte ^= 0x40;
    CHECK(pwrite(fd, &byte, 1, middle) == 1);
    close(fd);
    struct objects_config config = {.directory = directory, .sync = OBJECTS_SYNC_NEVER};
    char error[512] = "";
    struct objects *damaged = objects_open(&config, error, sizeof(error));
    CHECK(damaged == NULL);
    CHECK(strstr(error, "offset 24") != NULL && strstr(error, "journal") != NULL);
    if (damaged != NULL) objects_abandon(damaged);
    remove_tree(directory);
}

static void test_compaction(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    objects_set_compaction_minimum(objects, 4096);
    build_state(objects);
    CHECK(file_size(directory, "snapshot") > 0); /* build_state writes more than 4 KiB */
    uint64_t generation = objects->snapshot_generation;
    CHECK(generation >= 1);
    char key[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "many/%d", i % 300);
        CHECK(objects_copy(objects, BUCKET("plain"), "large", 5, NULL, BUCKET("versioned"), key,
                           strlen(key), "attributes", 10, NULL) == OBJECT_OK);
    }
    CHECK(objects->snapshot_generation > generation + 1);
    struct objects_stats stats;
    objects_get_stats(objects, &stats);
    CHECK(stats.journal_bytes <= 2 * (uint64_t)file_size(directory, "snapshot") + 4096);
    CHECK((off_t)stats.journal_bytes == file_size(directory, "journal"));
    char *before = dump_state(objects);

    /* A crash after compactions: snapshot plus journal give the same state. */
    objects_abandon(objects);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    char *after = dump_state(objects);
    CHECK(same_dump(before, after));
    free(after);

    /* A crash between a snapshot's rename and the new journal's: the old journal is the
     * snapshot's base and is replayed only from the snapshot's offset. */
    CHECK(put_text(objects, "plain", "before/snapshot", "v", NULL, NULL) == OBJECT_OK);
    char path[4096];
    snprintf(path, sizeof(path), "%s/journal", directory);
    off_t old_size = file_size(directory, "journal");
    unsigned char *old_journal = malloc((size_t)old_size);
    REQUIRE(old_journal != NULL);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    CHECK(read(fd, old_journal, (size_t)old_size) == old_size);
    close(fd);
    CHECK(objects_compact(objects, true));
    free(before);
    before = dump_state(objects);
    objects_abandon(objects);
    fd = open(path, O_WRONLY | O_TRUNC);
    REQUIRE(fd >= 0);
    CHECK(write(fd, old_journal, (size_t)old_size) == old_size);
    close(fd);
    free(old_journal);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    after = dump_state(objects);
    CHECK(same_dump(before, after));
    free(after);
    /* It started the snapshot's generation at once. */
    CHECK(objects->journal_generation == objects->snapshot_generation);

    /* A journal of another generation is refused. */
    objects_abandon(objects);
    fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    unsigned char header[24];
    CHECK(read(fd, header, 24) == 24);
    header[8] ^= 0x10; /* another generation, with a good header CRC */
    uint32_t crc = crc32c(header, 20);
    memcpy(header + 20, &crc, 4);
    CHECK(pwrite(fd, header, 24, 0) == 24);
    close(fd);
    struct objects_config config = {.directory = directory, .sync = OBJECTS_SYNC_NEVER};
    char error[512] = "";
    struct objects *refused = objects_open(&config, error, sizeof(error));
    CHECK(refused == NULL && strstr(error, "generation") != NULL);
    if (refused != NULL) objects_abandon(refused);

    /* Close and reopen after all that (the snapshot alone). */
    header[8] ^= 0x10;
    crc = crc32c(header, 20);
    memcpy(header + 20, &crc, 4);
    fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    CHECK(pwrite(fd, header, 24, 0) == 24);
    close(fd);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    objects_close(objects);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    after = dump_state(objects);
    CHECK(same_dump(before, after));
    free(after);
    free(before);
    objects_close(objects);
    remove_tree(directory);
}

static void test_journal_errors(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("full")) == OBJECT_OK);
    CHECK(put_text(objects, "full", "kept", "v", NULL, NULL) == OBJECT_OK);
    char *before = dump_state(objects);
    /* The journal on a full device: nothing changes, the new blob goes. */
    int saved = dup(objects->journal_fd);
    int full = open("/dev/full", O_WRONLY);
    REQUIRE(saved >= 0 && full >= 0);
    REQUIRE(dup2(full, objects->journal_fd) >= 0);
    close(full);
    uint64_t blob;
    CHECK(put_text(objects, "full", "new", "v", NULL, &blob) == OBJECT_NO_SPACE);
    CHECK(!blob_exists(objects, blob));
    CHECK(objects_delete(objects, BUCKET("full"), "kept", 4, NULL, NULL) == OBJECT_NO_SPACE);
    CHECK(objects_bucket_create(objects, BUCKET("other")) == OBJECT_NO_SPACE);
    char *during = dump_state(objects);
    CHECK(same_dump(before, during));
    free(during);
    REQUIRE(dup2(saved, objects->journal_fd) >= 0);
    close(saved);
    CHECK(put_text(objects, "full", "new", "v", NULL, NULL) == OBJECT_OK);
    objects_abandon(objects);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    struct object_info info;
    CHECK(get_info(objects, "full", "new", NULL, &info, NULL) == OBJECT_OK);
    CHECK(get_info(objects, "full", "kept", NULL, &info, NULL) == OBJECT_OK);
    free(before);
    objects_close(objects);
    remove_tree(directory);

    /* A record written whose sync fails and that cannot be cut back (a pipe): changes are
     * refused until a compaction starts a new journal, which the failed call itself
     * begins. */
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    objects = open_store(directory, OBJECTS_SYNC_NOW);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("sync")) == OBJECT_OK);
    CHECK(put_text(objects, "sync", "kept", "v", NULL, NULL) == OBJECT_OK);
    int pipe_ends[2];
    REQUIRE(pipe(pipe_ends) == 0);
    saved = dup(objects->journal_fd);
    REQUIRE(saved >= 0 && dup2(pipe_ends[1], objects->journal_fd) >= 0);
    close(pipe_ends[1]);
    CHECK(put_text(objects, "sync", "lost", "v", NULL, &blob) == OBJECT_IO_ERROR);
    CHECK(!blob_exists(objects, blob));
    CHECK(!atomic_load(&objects->journal_failed)); /* a new journal took over */
    CHECK(put_text(objects, "sync", "after", "v", NULL, NULL) == OBJECT_OK);
    close(pipe_ends[0]);
    close(saved);
    objects_abandon(objects);
    objects = open_store(directory, OBJECTS_SYNC_NOW);
    REQUIRE(objects != NULL);
    CHECK(get_info(objects, "sync", "kept", NULL, &info, NULL) == OBJECT_OK);
    CHECK(get_info(objects, "sync", "after", NULL, &info, NULL) == OBJECT_OK);
    CHECK(get_info(objects, "sync", "lost", NULL, &info, NULL) == OBJECT_NO_SUCH_KEY);
    objects_close(objects);
    remove_tree(directory);
}

/* ---- readers of replaced versions ---------------------------------------------------- */

#define PART_LENGTH 3000
#define MOST_PARTS  8

/* Fills DATA (LENGTH >= 8 bytes) with version SEED's bytes: the seed, then bytes
 * drawn from it. */
static void version_bytes(uint64_t seed, unsigned char *data, size_t length) {
    memcpy(data, &seed, sizeof(seed));
    uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = sizeof(seed); i < length; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data[i] = (unsigned char)(state >> 24);
    }
}

/* Whether DATA (LENGTH bytes) is one whole version as version_bytes() makes them. */
static bool version_right(const unsigned char *data, size_t length) {
    if (length < 8) return false;
    uint64_t seed;
    memcpy(&seed, data, sizeof(seed));
    unsigned char *expected = malloc(length);
    version_bytes(seed, expected, length);
    bool right = memcmp(expected, data, length) == 0;
    free(expected);
    return right;
}

/* Writes LENGTH bytes of DATA as a real blob (readable, unlike make_blob()'s). */
static bool write_real_blob(struct objects *objects, const unsigned char *data, size_t length,
                            struct blob_digest *digest) {
    struct blob_writer *writer;
    if (blob_writer_open(objects_blobs(objects), &writer) != BLOB_OK) return false;
    if (blob_writer_append(writer, data, length) != BLOB_OK) {
        blob_writer_abort(writer);
        return false;
    }
    return blob_writer_finish(writer, digest) == BLOB_OK;
}

/* Makes KEY of BUCKET a multipart object of PARTS parts of PART_LENGTH bytes, version
 * SEED's bytes; sets IDS[i] (when IDS is not NULL) to part i's blob. */
static enum object_status put_multipart(struct objects *objects, const char *bucket,
                                        const char *key, uint64_t seed, int parts, uint64_t *ids) {
    unsigned char *data = malloc((size_t)parts * PART_LENGTH);
    version_bytes(seed, data, (size_t)parts * PART_LENGTH);
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    struct object_part_ref refs[MOST_PARTS];
    enum object_status status = objects_upload_create(objects, bucket, strlen(bucket), key,
                                                      strlen(key), NULL, 0, upload_id);
    for (int p = 0; p < parts && status == OBJECT_OK; p++) {
        struct blob_digest digest;
        if (!write_real_blob(objects, data + (size_t)p * PART_LENGTH, PART_LENGTH, &digest)) {
            status = OBJECT_IO_ERROR;
            break;
        }
        if (ids != NULL) ids[p] = digest.id;
        refs[p].part_number = p + 1;
        status = objects_upload_part(objects, bucket, strlen(bucket), upload_id, p + 1, &digest,
                                     refs[p].etag);
    }
    if (status == OBJECT_OK) {
        status = objects_upload_complete(objects, bucket, strlen(bucket), upload_id, refs,
                                         (size_t)parts, NULL);
    }
    free(data);
    return status;
}

/* Blob files in OBJECTS's blob directory (-1 when it cannot be listed). */
static int count_blobs(const char *directory) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/blobs", directory);
    DIR *listing = opendir(path);
    if (listing == NULL) return -1;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(listing)) != NULL) {
        uint64_t id;
        if (blob_name_parse(entry->d_name, &id)) count++;
    }
    closedir(listing);
    return count;
}

/* A reader of KEY's current version (NULL when it has none, or on a failure). The
 * handle is cleared before it returns: the reader holds the blobs alone. */
static struct blob_reader *open_current(struct objects *objects, const char *bucket,
                                        const char *key) {
    struct object_handle handle;
    struct blob_reader *reader = NULL;
    if (objects_get(objects, bucket, strlen(bucket), key, strlen(key), NULL, &handle) ==
        OBJECT_OK) {
        if (blob_reader_open(objects_blobs(objects), handle.extents, handle.extent_count,
                             &reader) != BLOB_OK) {
            reader = NULL;
        }
    }
    object_handle_clear(&handle);
    return reader;
}

static void test_readers_outlive_their_version(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("keep")) == OBJECT_OK);
    enum { LENGTH = 3 * PART_LENGTH };
    unsigned char old_bytes[LENGTH], back[LENGTH];
    version_bytes(1, old_bytes, LENGTH);
    uint64_t old_ids[MOST_PARTS], new_ids[MOST_PARTS];

    /* A reader that read only the first part when its object was overwritten, then
     * deleted, still reads it all: every blob stays until the reader is closed. */
    REQUIRE(put_multipart(objects, "keep", "big", 1, 3, old_ids) == OBJECT_OK);
    struct blob_reader *reader = open_current(objects, "keep", "big");
    REQUIRE(reader != NULL);
    CHECK(blob_reader_length(reader) == LENGTH);
    CHECK(blob_reader_read(reader, 0, 100, back) == BLOB_OK);
    CHECK(put_multipart(objects, "keep", "big", 2, 3, new_ids) == OBJECT_OK);
    CHECK(objects_delete(objects, BUCKET("keep"), "big", 3, NULL, NULL) == OBJECT_OK);
    CHECK(get_info(objects, "keep", "big", NULL, NULL, NULL) == OBJECT_NO_SUCH_KEY);
    for (int p = 0; p < 3; p++) {
        CHECK(blob_exists(objects, old_ids[p]));
        CHECK(!blob_exists(objects, new_ids[p])); /* nobody read these */
    }
    memset(back, 0, sizeof(back));
    CHECK(blob_reader_read(reader, 0, LENGTH, back) == BLOB_OK);
    CHECK(memcmp(back, old_bytes, LENGTH) == 0);
    blob_reader_close(reader);
    for (int p = 0; p < 3; p++)
        CHECK(!blob_exists(objects, old_ids[p]));
    CHECK(count_blobs(directory) == 0);

    /* An overwrite between objects_get() and blob_reader_open(): the handle holds. */
    REQUIRE(put_multipart(objects, "keep", "big", 1, 3, old_ids) == OBJECT_OK);
    struct object_handle handle;
    REQUIRE(objects_get(objects, BUCKET("keep"), "big", 3, NULL, &handle) == OBJECT_OK);
    CHECK(put_text(objects, "keep", "big", "replaced", NULL, NULL) == OBJECT_OK);
    CHECK(blob_exists(objects, old_ids[0]) && blob_exists(objects, old_ids[2]));
    CHECK(blob_reader_open(objects_blobs(objects), handle.extents, handle.extent_count, &reader) ==
          BLOB_OK);
    object_handle_clear(&handle);
    CHECK(blob_exists(objects, old_ids[0])); /* the reader holds them now */
    memset(back, 0, sizeof(back));
    CHECK(blob_reader_read(reader, 0, LENGTH, back) == BLOB_OK);
    CHECK(memcmp(back, old_bytes, LENGTH) == 0);
    blob_reader_close(reader);
    for (int p = 0; p < 3; p++)
        CHECK(!blob_exists(objects, old_ids[p]));
    CHECK(count_blobs(directory) == 1); /* "replaced" */

    /* A handle alone holds too, and clearing it removes what was unlinked meanwhile. */
    REQUIRE(put_multipart(objects, "keep", "big", 1, 3, old_ids) == OBJECT_OK);
    REQUIRE(objects_get(objects, BUCKET("keep"), "big", 3, NULL, &handle) == OBJECT_OK);
    CHECK(objects_delete(objects, BUCKET("keep"), "big", 3, NULL, NULL) == OBJECT_OK);
    CHECK(count_blobs(directory) == 3);
    object_handle_clear(&handle);
    CHECK(count_blobs(directory) == 0);

    /* A crash while a removal waits for a reader: the next open sweeps the blobs (here
     * the files are put back, as they were at the crash, once the reader is gone). */
    REQUIRE(put_multipart(objects, "keep", "big", 1, 3, old_ids) == OBJECT_OK);
    reader = open_current(objects, "keep", "big");
    REQUIRE(reader != NULL);
    CHECK(objects_delete(objects, BUCKET("keep"), "big", 3, NULL, NULL) == OBJECT_OK);
    char saved[3][4096], path[4096];
    for (int p = 0; p < 3; p++) {
        snprintf(saved[p], sizeof(saved[p]), "%s/saved-%d", directory, p);
        blob_path(objects_blobs(objects), old_ids[p], path, sizeof(path));
        CHECK(link(path, saved[p]) == 0);
    }
    blob_reader_close(reader);
    CHECK(count_blobs(directory) == 0);
    objects_close(objects);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    for (int p = 0; p < 3; p++) {
        blob_path(objects_blobs(objects), old_ids[p], path, sizeof(path));
        CHECK(rename(saved[p], path) == 0);
    }
    objects_close(objects);
    objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    CHECK(count_blobs(directory) == 0);
    CHECK(get_info(objects, "keep", "big", NULL, NULL, NULL) == OBJECT_NO_SUCH_KEY);
    objects_close(objects);
    remove_tree(directory);
}

static void test_stream_outlives_its_version(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("keep")) == OBJECT_OK);
    enum { LENGTH = MOST_PARTS * PART_LENGTH };
    static unsigned char old_bytes[LENGTH], received[LENGTH];
    version_bytes(3, old_bytes, LENGTH);
    /* More parts than a stream reads ahead (BLOB_SEND_WINDOW chunks): the last ones are
     * not reached when the object goes. */
    REQUIRE(put_multipart(objects, "keep", "film", 3, MOST_PARTS, NULL) == OBJECT_OK);
    struct blob_reader *reader = open_current(objects, "keep", "film");
    REQUIRE(reader != NULL);
    struct output_queue queue;
    output_queue_init(&queue);
    CHECK(blob_reader_send(reader, 0, LENGTH, &queue, NULL, NULL));
    size_t length = 0;
    bool changed = false;
    for (;;) {
        struct iovec iovecs[8];
        int count = output_queue_iovecs(&queue, iovecs, 8);
        if (count == 0) break;
        size_t take = iovecs[0].iov_len < 1000 ? iovecs[0].iov_len : 1000;
        if (length + take > LENGTH) break;
        memcpy(received + length, iovecs[0].iov_base, take);
        output_queue_consume(&queue, take);
        length += take;
        if (!changed && length >= 1000) {
            CHECK(put_multipart(objects, "keep", "film", 4, 2, NULL) == OBJECT_OK);
            CHECK(objects_delete(objects, BUCKET("keep"), "film", 4, NULL, NULL) == OBJECT_OK);
            CHECK(count_blobs(directory) == MOST_PARTS); /* the stream's */
            changed = true;
        }
    }
    CHECK(changed);
    CHECK(!queue.failed);
    CHECK(length == LENGTH);
    CHECK(memcmp(received, old_bytes, LENGTH) == 0);
    output_queue_clear(&queue);
    CHECK(count_blobs(directory) == 0); /* the stream ended */
    objects_close(objects);
    remove_tree(directory);
}

/* Readers on several threads open, read and close the keys' current versions while
 * another thread overwrites and deletes them: every version a reader found reads whole
 * (never a missing blob), and no blob is left once all is deleted. TSan watches. */

#define BUSY_KEYS     4
#define BUSY_READERS  3
#define BUSY_PARTS    3
#define BUSY_VERSIONS 120

struct busy {
    struct objects *objects;
    _Atomic bool stop;
};

struct busy_reader {
    struct busy *busy;
    uint64_t state;
    int reads;
    int wrong;
};

static void *busy_read(void *argument) {
    struct busy_reader *self = argument;
    struct objects *objects = self->busy->objects;
    enum { LENGTH = BUSY_PARTS * PART_LENGTH };
    unsigned char *back = malloc(LENGTH);
    for (int round = 0; !atomic_load(&self->busy->stop) || (self->reads < 20 && round < 100000);
         round++) {
        self->state ^= self->state << 13;
        self->state ^= self->state >> 7;
        self->state ^= self->state << 17;
        char key[16];
        snprintf(key, sizeof(key), "k%d", (int)(self->state % BUSY_KEYS));
        struct blob_reader *reader = open_current(objects, "busy", key);
        if (reader == NULL) continue; /* deleted just now */
        if (blob_reader_length(reader) != LENGTH) {
            self->wrong++;
            blob_reader_close(reader);
            continue;
        }
        if (round % 3 == 2) {
            /* As a GET does: a stream, drained a little at a time. */
            struct output_queue queue;
            output_queue_init(&queue);
            size_t length = 0;
            if (blob_reader_send(reader, 0, LENGTH, &queue, NULL, NULL)) {
                struct iovec iovec;
                while (output_queue_iovecs(&queue, &iovec, 1) == 1 && length < LENGTH) {
                    size_t take = iovec.iov_len < 700 ? iovec.iov_len : 700;
                    if (take > LENGTH - length) take = LENGTH - length;
                    memcpy(back + length, iovec.iov_base, take);
                    output_queue_consume(&queue, take);
                    length += take;
                    sched_yield();
                }
            }
            if (queue.failed || length != LENGTH || !version_right(back, LENGTH)) self->wrong++;
            output_queue_clear(&queue);
        } else {
            /* Read in three pieces, letting the writer in between. */
            enum blob_status status = BLOB_OK;
            for (int piece = 0; piece < 3 && status == BLOB_OK; piece++) {
                status = blob_reader_read(reader, (uint64_t)piece * (LENGTH / 3), LENGTH / 3,
                                          back + piece * (LENGTH / 3));
                sched_yield();
            }
            if (status != BLOB_OK || !version_right(back, LENGTH)) self->wrong++;
            blob_reader_close(reader);
        }
        self->reads++;
    }
    free(back);
    return NULL;
}

static void test_readers_while_overwritten(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("busy")) == OBJECT_OK);
    char key[16];
    for (int k = 0; k < BUSY_KEYS; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        REQUIRE(put_multipart(objects, "busy", key, 100 + (uint64_t)k, BUSY_PARTS, NULL) ==
                OBJECT_OK);
    }
    struct busy busy = {.objects = objects};
    struct busy_reader readers[BUSY_READERS];
    pthread_t threads[BUSY_READERS];
    for (int i = 0; i < BUSY_READERS; i++) {
        readers[i] = (struct busy_reader){.busy = &busy, .state = 77 + (uint64_t)i};
        REQUIRE(pthread_create(&threads[i], NULL, busy_read, &readers[i]) == 0);
    }
    int failures = 0;
    for (int v = 0; v < BUSY_VERSIONS; v++) {
        snprintf(key, sizeof(key), "k%d", v % BUSY_KEYS);
        if (put_multipart(objects, "busy", key, 1000 + (uint64_t)v, BUSY_PARTS, NULL) !=
            OBJECT_OK) {
            failures++;
        }
        if (v % 5 == 4 &&
            objects_delete(objects, BUCKET("busy"), key, strlen(key), NULL, NULL) != OBJECT_OK) {
            failures++;
        }
    }
    atomic_store(&busy.stop, true);
    int reads = 0, wrong = 0;
    for (int i = 0; i < BUSY_READERS; i++) {
        pthread_join(threads[i], NULL);
        reads += readers[i].reads;
        wrong += readers[i].wrong;
    }
    fprintf(stderr, "    %d versions written, %d reads of them, %d wrong\n", BUSY_VERSIONS, reads,
            wrong);
    CHECK(failures == 0);
    CHECK(wrong == 0);
    CHECK(reads >= BUSY_READERS * 20);
    for (int k = 0; k < BUSY_KEYS; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        CHECK(objects_delete(objects, BUCKET("busy"), key, strlen(key), NULL, NULL) == OBJECT_OK);
    }
    CHECK(count_blobs(directory) == 0);
    CHECK(blob_store_bytes(objects_blobs(objects)) == 0);
    objects_close(objects);
    remove_tree(directory);
}

/* ---- threads ------------------------------------------------------------------------- */

struct worker {
    struct objects *objects;
    int number;
    int failures;
};

static void *work(void *context) {
    struct worker *worker = context;
    struct objects *objects = worker->objects;
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(worker->number + 1);
    char key[16], value[32];
    for (int i = 0; i < 400; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        snprintf(key, sizeof(key), "k/%d", (int)(x % 12));
        switch ((x >> 8) % 6) {
        case 0:
        case 1: {
            snprintf(value, sizeof(value), "w%d i%d", worker->number, i);
            if (put_text(objects, "shared", key, value, NULL, NULL) != OBJECT_OK) {
                worker->failures++;
            }
            break;
        }
        case 2: {
            struct object_info info;
            enum object_status status = get_info(objects, "shared", key, NULL, &info, NULL);
            if (status != OBJECT_OK && status != OBJECT_NO_SUCH_KEY) worker->failures++;
            if (status == OBJECT_OK && (info.length < 5 || !info.is_latest)) worker->failures++;
            break;
        }
        case 3: {
            struct object_list_result result;
            if (list(objects, "shared", "k/", "/", NULL, 5, (x >> 20) & 1, &result) != OBJECT_OK) {
                worker->failures++;
                break;
            }
            for (size_t e = 1; e < result.count; e++) {
                if (key_compare(result.entries[e - 1].key, result.entries[e - 1].key_length,
                                result.entries[e].key, result.entries[e].key_length) > 0) {
                    worker->failures++;
                }
            }
            object_list_free(&result);
            break;
        }
        case 4:
            if (objects_delete(objects, BUCKET("shared"), key, strlen(key), NULL, NULL) !=
                OBJECT_OK) {
                worker->failures++;
            }
            break;
        default:
            if (objects_copy(objects, BUCKET("shared"), key, strlen(key), NULL, BUCKET("shared"),
                             "copy", 4, NULL, 0, NULL) == OBJECT_IO_ERROR) {
                worker->failures++;
            }
            break;
        }
    }
    return NULL;
}

static void test_threads(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_EVERYSEC);
    REQUIRE(objects != NULL);
    objects_set_compaction_minimum(objects, 32768); /* compactions run among the workers */
    REQUIRE(objects_bucket_create(objects, BUCKET("shared")) == OBJECT_OK);
    REQUIRE(objects_bucket_set_versioning(objects, BUCKET("shared"), OBJECT_VERSIONING_ENABLED) ==
            OBJECT_OK);
    struct worker workers[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        workers[i] = (struct worker){.objects = objects, .number = i};
        REQUIRE(pthread_create(&threads[i], NULL, work, &workers[i]) == 0);
    }
    for (int i = 0; i < 20; i++) {
        CHECK(objects_sync_pending(objects) == OBJECT_OK);
        struct objects_stats stats;
        objects_get_stats(objects, &stats);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        CHECK(workers[i].failures == 0);
    }
    char *before = dump_state(objects);
    objects_close(objects);
    objects = open_store(directory, OBJECTS_SYNC_EVERYSEC);
    REQUIRE(objects != NULL);
    char *after = dump_state(objects);
    CHECK(same_dump(before, after));
    free(before);
    free(after);
    objects_close(objects);
    remove_tree(directory);
}

/* Conditional writes: if_absent and if_etag are checked under the write's lock; a write
 * whose condition is false changes nothing and its blob goes. */
static void test_conditional_writes(void) {
    char directory[64];
    REQUIRE(fresh_directory(directory, sizeof(directory)) != NULL);
    struct objects *objects = open_store(directory, OBJECTS_SYNC_NEVER);
    REQUIRE(objects != NULL);
    REQUIRE(objects_bucket_create(objects, BUCKET("locks")) == OBJECT_OK);
    struct object_condition absent = {.if_absent = true};
    struct blob_digest digest;
    struct object_info info;
    REQUIRE(make_blob(objects, "one", 3, &digest));
    CHECK(objects_put_if(objects, BUCKET("locks"), "l", 1, &digest, NULL, 0, &absent, &info) ==
          OBJECT_OK);
    char first_etag[OBJECT_ETAG_MAX + 1];
    snprintf(first_etag, sizeof(first_etag), "%s", info.etag);
    REQUIRE(make_blob(objects, "two", 3, &digest));
    CHECK(objects_put_if(objects, BUCKET("locks"), "l", 1, &digest, NULL, 0, &absent, &info) ==
          OBJECT_PRECONDITION_FAILED);
    CHECK(!blob_exists(objects, digest.id));
    struct object_condition match = {.if_etag = "00000000000000000000000000000000"};
    REQUIRE(make_blob(objects, "three", 5, &digest));
    CHECK(objects_put_if(objects, BUCKET("locks"), "l", 1, &digest, NULL, 0, &match, &info) ==
          OBJECT_PRECONDITION_FAILED);
    match.if_etag = first_etag;
    REQUIRE(make_blob(objects, "four", 4, &digest));
    CHECK(objects_put_if(objects, BUCKET("locks"), "l", 1, &digest, NULL, 0, &match, &info) ==
          OBJECT_OK);
    CHECK(info.length == 4);
    REQUIRE(make_blob(objects, "five", 4, &digest));
    CHECK(objects_put_if(objects, BUCKET("locks"), "none", 4, &digest, NULL, 0, &match, &info) ==
          OBJECT_NO_SUCH_KEY);
    /* A completed upload with a false condition leaves the upload as it was. */
    char upload_id[OBJECT_UPLOAD_ID_MAX + 1];
    REQUIRE(objects_upload_create(objects, BUCKET("locks"), "l", 1, NULL, 0, upload_id) ==
            OBJECT_OK);
    REQUIRE(make_blob(objects, "part", 4, &digest));
    struct object_part_ref part = {.part_number = 1};
    REQUIRE(objects_upload_part(objects, BUCKET("locks"), upload_id, 1, &digest, part.etag) ==
            OBJECT_OK);
    CHECK(objects_upload_complete_if(objects, BUCKET("locks"), upload_id, &part, 1, &absent,
                                     &info) == OBJECT_PRECONDITION_FAILED);
    struct object_parts_result parts;
    CHECK(objects_upload_list_parts(objects, BUCKET("locks"), upload_id, 0, 10, &parts) ==
          OBJECT_OK);
    CHECK(parts.count == 1);
    object_parts_free(&parts);
    CHECK(objects_upload_complete_if(objects, BUCKET("locks"), upload_id, &part, 1, NULL, &info) ==
          OBJECT_OK);
    CHECK(info.length == 4 && info.parts == 1);
    objects_close(objects);
    remove_tree(directory);
}

int main(void) {
    RUN_TEST(test_crc32c_combine);
    RUN_TEST(test_bucket_names);
    RUN_TEST(test_buckets);
    RUN_TEST(test_put_get_delete);
    RUN_TEST(test_conditional_writes);
    RUN_TEST(test_versioning);
    RUN_TEST(test_copy);
    RUN_TEST(test_list);
    RUN_TEST(test_list_random_paging);
    RUN_TEST(test_multipart);
    RUN_TEST(test_persistence);
    RUN_TEST(test_torn_tail_and_orphans);
    RUN_TEST(test_compaction);
    RUN_TEST(test_journal_errors);
    RUN_TEST(test_threads);
    RUN_TEST(test_readers_outlive_their_version);
    RUN_TEST(test_stream_outlives_its_version);
    RUN_TEST(test_readers_while_overwritten);
    return test_main_result();
}
