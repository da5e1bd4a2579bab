/* s3load: the HTTP load generator of bench/s3.py: large-object GETs (whole or in ranges)
 * and PUTs (whole, or as the parts of a multipart upload) against strata's S3 API and its
 * /keys/ paths, fast enough that the server, not the client, sets the pace.
 *
 * Plain HTTP/1.1 with keep-alive, unsigned (a strata started without S3 credentials
 * serves loopback clients unsigned: docs/s3.md), one thread and one connection per
 * CONNECTIONS, blocking sockets. A body is received into a 1 MiB buffer per connection
 * and dropped (the one copy out of the socket any client makes); a body sent comes from
 * a 1 MiB buffer, so the client touches no disk and generates nothing as it goes.
 *
 * The object's bytes are a function of their offset: byte O is BASE[O % 1 MiB] (BASE: 1
 * MiB of fixed pseudo-random bytes), except that the 8 bytes at every multiple of 4 KiB
 * hold that offset (little-endian, XORed with a constant). A GET checks the 8 stamped
 * bytes and 8 base bytes of every 4 KiB it receives (2 bytes in 512, so the check costs
 * the client nothing measurable): a wrong range, a wrong offset, a shifted or missing
 * piece is caught, and a single wrong byte stops the run with exit status 1.
 *
 * Requests:
 *   GET (default): REQUESTS requests in all (default: one per connection, or one pass
 *     over the object with --range-size), handed out in order to whichever connection
 *     is free; with --range-size R the object is N = ceil(SIZE / R) consecutive ranges
 *     (the last may be shorter) and request I asks for range I % N (the loader pattern:
 *     a file read as consecutive ranges by many connections at once, pass after pass).
 *   PUT (--put): with --part-size P, the parts of an upload: part K (from 1) is bytes
 *     [(K-1)*P, K*P) of the object, sent to PATH?partNumber=K&QUERY; without, one PUT of
 *     the whole object to PATH. The ETag of each part is reported.
 *
 * Output: one JSON object on stdout: requests, body bytes moved, seconds (from when
 * every connection is open and the first worker starts to the last response), MB/s (10^6 bytes),
 * per-request latency (p50, p99, max, ms), errors with the first, and the parts' ETags for --put.
 * Usage: s3load --help. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BASE_SIZE   (1u << 20) /* the period of the object's bytes */
#define STAMP_EVERY 4096u
#define STAMP_SALT  0x5354524154414242ULL
#define BUFFER_SIZE (1u << 20)
#define HEAD_MAX    16384
#define ETAG_MAX    80

struct settings {
    const char *host;
    const char *port;
    const char *path;
    const char *query; /* PUT parts: appended after partNumber=K& */
    uint64_t object_size;
    uint64_t range_size;
    uint64_t part_size;
    uint64_t requests;
    int connections;
    bool put;
    bool verify;
};

static struct settings settings = {
    .host = "127.0.0.1",
    .port = "6381",
    .connections = 1,
    .verify = true,
};

static unsigned char *base; /* BASE_SIZE bytes */

static _Atomic uint64_t next_request;
static _Atomic bool stop_now;

struct worker {
    pthread_t thread;
    int fd;
    unsigned char *buffer;  /* BUFFER_SIZE: received bodies, or the body being sent */
    uint64_t buffer_window; /* PUT: the 1 MiB-aligned offset BUFFER holds, or UINT64_MAX */
    char head[HEAD_MAX + 1];
    double *latencies; /* ms, one per request this worker ran */
    uint64_t latency_count, latency_capacity;
    uint64_t requests, bytes, errors, mismatches;
    double started, finished; /* seconds: when it passed the start barrier, when it ended */
    char first_error[200];
};

static char (*etags)[ETAG_MAX]; /* PUT parts: indexed by part number - 1 */
static pthread_barrier_t start_barrier;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb3fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static double now_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* The object's byte at OFFSET. */
static unsigned char object_byte(uint64_t offset) {
    uint64_t within = offset % STAMP_EVERY;
    if (within < 8) {
        uint64_t stamp = (offset - within) ^ STAMP_SALT;
        return (unsigned char)(stamp >> (8 * within));
    }
    return base[offset % BASE_SIZE];
}

/* Fills BUFFER with the object's bytes [WINDOW, WINDOW + BUFFER_SIZE) (WINDOW a multiple
 * of BASE_SIZE): the base bytes, then the stamps of the window. */
static void fill_window(unsigned char *buffer, uint64_t window) {
    memcpy(buffer, base, BUFFER_SIZE);
    for (uint64_t at = 0; at < BUFFER_SIZE; at += STAMP_EVERY) {
        uint64_t stamp = (window + at) ^ STAMP_SALT;
        for (int i = 0; i < 8; i++)
            buffer[at + (uint64_t)i] = (unsigned char)(stamp >> (8 * i));
    }
}

static void note_error(struct worker *worker, const char *format, const char *detail) {
    worker->errors++;
    if (worker->first_error[0] == 0) {
        snprintf(worker->first_error, sizeof worker->first_error, format, detail);
        for (char *c = worker->first_error; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 32) *c = ' ';
    }
    atomic_store(&stop_now, true);
}

/* Checks LENGTH received bytes, the object's bytes from OFFSET on: at every multiple of
 * STAMP_EVERY they cover, the 8 stamped bytes and 8 bytes from the middle. */
static void verify(struct worker *worker, const unsigned char *bytes, size_t length,
                   uint64_t offset) {
    uint64_t end = offset + length;
    for (uint64_t block = offset - offset % STAMP_EVERY; block < end; block += STAMP_EVERY) {
        static const uint64_t probes[2] = {0, STAMP_EVERY / 2};
        for (int p = 0; p < 2; p++) {
            for (uint64_t at = block + probes[p]; at < block + probes[p] + 8; at++) {
                if (at < offset || at >= end) continue;
                if (bytes[at - offset] != object_byte(at)) {
                    if (worker->mismatches++ < 5)
                        fprintf(stderr, "s3load: WRONG BYTE at object offset %llu\n",
                                (unsigned long long)at);
                    atomic_store(&stop_now, true);
                    return;
                }
            }
        }
    }
}

static int connect_to_server(void) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found;
    int status = getaddrinfo(settings.host, settings.port, &hints, &found);
    if (status != 0) {
        fprintf(stderr, "s3load: %s:%s: %s\n", settings.host, settings.port, gai_strerror(status));
        exit(2);
    }
    int fd = socket(found->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
        fprintf(stderr, "s3load: connect to %s:%s: %s\n", settings.host, settings.port,
                strerror(errno));
        exit(2);
    }
    freeaddrinfo(found);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static bool send_all(int fd, const void *data, size_t length) {
    const char *cursor = data;
    while (length > 0) {
        ssize_t sent = send(fd, cursor, length, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        cursor += sent;
        length -= (size_t)sent;
    }
    return true;
}

/* Sends the object's bytes [OFFSET, OFFSET + LENGTH) from the worker's window buffer. */
static bool send_object_bytes(struct worker *worker, uint64_t offset, uint64_t length) {
    while (length > 0) {
        uint64_t window = offset - offset % BUFFER_SIZE;
        if (worker->buffer_window != window) {
            fill_window(worker->buffer, window);
            worker->buffer_window = window;
        }
        uint64_t within = offset - window;
        uint64_t piece = BUFFER_SIZE - within;
        if (piece > length) piece = length;
        if (!send_all(worker->fd, worker->buffer + within, (size_t)piece)) return false;
        offset += piece;
        length -= piece;
    }
    return true;
}

/* Reads a response head into worker->head; bytes read past it (the start of the body)
 * are moved to the start of worker->buffer. Returns the status code (0 on a broken
 * connection or a malformed head), sets *CONTENT_LENGTH and *EXTRA (bytes of body
 * already in the buffer). */
static int read_head(struct worker *worker, uint64_t *content_length, size_t *extra) {
    size_t have = 0;
    char *end = NULL;
    while (end == NULL) {
        if (have == HEAD_MAX) return 0;
        ssize_t got = recv(worker->fd, worker->head + have, HEAD_MAX - have, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return 0;
        have += (size_t)got;
        worker->head[have] = 0;
        end = strstr(worker->head, "\r\n\r\n");
    }
    size_t head_length = (size_t)(end - worker->head) + 4;
    *extra = have - head_length;
    memcpy(worker->buffer, worker->head + head_length, *extra);
    *end = 0;
    int status = 0;
    if (sscanf(worker->head, "HTTP/1.%*d %d", &status) != 1) return 0;
    *content_length = UINT64_MAX;
    for (char *line = strstr(worker->head, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            *content_length = strtoull(line + 15, NULL, 10);
        else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0)
            return 0; /* not sent by strata for these requests; not handled */
    }
    if (*content_length == UINT64_MAX) return 0;
    return status;
}

/* The value of header NAME (with its colon) in worker->head, copied into OUT. */
static void header_value(const struct worker *worker, const char *name, char *out, size_t size) {
    out[0] = 0;
    size_t name_length = strlen(name);
    for (const char *line = strstr(worker->head, "\r\n"); line != NULL;
         line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, name_length) != 0) continue;
        const char *value = line + name_length;
        while (*value == ' ')
            value++;
        size_t length = strcspn(value, "\r");
        if (length >= size) length = size - 1;
        memcpy(out, value, length);
        out[length] = 0;
        return;
    }
}

/* Receives a body of LENGTH bytes whose first EXTRA are in the buffer already; checks
 * them as the object's bytes from OFFSET on when CHECK. Returns false on a broken
 * connection. */
static bool receive_body(struct worker *worker, uint64_t length, size_t extra, uint64_t offset,
                         bool check) {
    if (extra > length) return false; /* bytes past the body: a framing error */
    if (check && settings.verify && extra > 0) verify(worker, worker->buffer, extra, offset);
    uint64_t left = length - extra;
    offset += extra;
    while (left > 0) {
        size_t want = left < BUFFER_SIZE ? (size_t)left : BUFFER_SIZE;
        ssize_t got = recv(worker->fd, worker->buffer, want, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        if (check && settings.verify) verify(worker, worker->buffer, (size_t)got, offset);
        offset += (uint64_t)got;
        left -= (uint64_t)got;
    }
    return true;
}

static void record_latency(struct worker *worker, double milliseconds) {
    if (worker->latency_count == worker->latency_capacity) {
        worker->latency_capacity = worker->latency_capacity ? 2 * worker->latency_capacity : 64;
        worker->latencies =
            realloc(worker->latencies, worker->latency_capacity * sizeof *worker->latencies);
        if (worker->latencies == NULL) exit(2);
    }
    worker->latencies[worker->latency_count++] = milliseconds;
}

/* One GET: request INDEX. */
static bool run_get(struct worker *worker, uint64_t index) {
    char request[HEAD_MAX];
    uint64_t offset = 0, length = settings.object_size;
    int n;
    if (settings.range_size > 0) {
        uint64_t ranges = (settings.object_size + settings.range_size - 1) / settings.range_size;
        offset = index % ranges * settings.range_size;
        length = settings.range_size;
        if (length > settings.object_size - offset) length = settings.object_size - offset;
        n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nRange: bytes=%llu-%llu\r\n\r\n", settings.path,
                     settings.host, (unsigned long long)offset,
                     (unsigned long long)(offset + length - 1));
    } else {
        n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", settings.path,
                     settings.host);
    }
    if (!send_all(worker->fd, request, (size_t)n)) {
        note_error(worker, "send failed%s", "");
        return false;
    }
    uint64_t content_length;
    size_t extra;
    int status = read_head(worker, &content_length, &extra);
    if (status == 0) {
        note_error(worker, "connection closed or bad response head%s", "");
        return false;
    }
    int wanted = settings.range_size > 0 ? 206 : 200;
    bool right = status == wanted && (settings.object_size == 0 || content_length == length);
    if (!receive_body(worker, content_length, extra, offset, right)) {
        note_error(worker, "connection closed in a body%s", "");
        return false;
    }
    if (!right) {
        note_error(worker, "unexpected response: %.150s", worker->head);
        return false;
    }
    worker->bytes += content_length;
    return true;
}

/* One PUT: part INDEX + 1, or the whole object. */
static bool run_put(struct worker *worker, uint64_t index) {
    char request[HEAD_MAX];
    uint64_t offset = 0, length = settings.object_size;
    int n;
    if (settings.part_size > 0) {
        offset = index * settings.part_size;
        length = settings.part_size;
        if (length > settings.object_size - offset) length = settings.object_size - offset;
        n = snprintf(request, sizeof request,
                     "PUT %s?partNumber=%llu&%s HTTP/1.1\r\nHost: %s\r\nContent-Length: "
                     "%llu\r\n\r\n",
                     settings.path, (unsigned long long)index + 1, settings.query, settings.host,
                     (unsigned long long)length);
    } else {
        n = snprintf(request, sizeof request,
                     "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %llu\r\n\r\n", settings.path,
                     settings.host, (unsigned long long)length);
    }
    if (!send_all(worker->fd, request, (size_t)n) || !send_object_bytes(worker, offset, length)) {
        note_error(worker, "send failed%s", "");
        return false;
    }
    uint64_t content_length;
    size_t extra;
    int status = read_head(worker, &content_length, &extra);
    if (status == 0) {
        note_error(worker, "connection closed or bad response head%s", "");
        return false;
    }
    worker->buffer_window = UINT64_MAX; /* the response body may land in the buffer */
    if (!receive_body(worker, content_length, extra, 0, false)) {
        note_error(worker, "connection closed in a body%s", "");
        return false;
    }
    if (status != 200 && status != 201 && status != 204) {
        note_error(worker, "unexpected response: %.150s", worker->head);
        return false;
    }
    if (settings.part_size > 0) {
        /* kept without its quotes (none of its characters need escaping in JSON) */
        char etag[ETAG_MAX];
        header_value(worker, "ETag:", etag, sizeof etag);
        size_t kept = strcspn(etag + (etag[0] == '"'), "\"\\");
        memcpy(etags[index], etag + (etag[0] == '"'), kept);
        etags[index][kept] = 0;
    }
    worker->bytes += length;
    return true;
}

static void *run_worker(void *argument) {
    struct worker *worker = argument;
    pthread_barrier_wait(&start_barrier);
    worker->started = now_seconds();
    while (!atomic_load(&stop_now)) {
        uint64_t index = atomic_fetch_add(&next_request, 1);
        if (index >= settings.requests) break;
        double started = now_seconds();
        bool ok = settings.put ? run_put(worker, index) : run_get(worker, index);
        if (!ok) break;
        worker->requests++;
        record_latency(worker, (now_seconds() - started) * 1e3);
    }
    worker->finished = now_seconds();
    return NULL;
}

static uint64_t parse_size(const char *text) {
    char *end;
    double number = strtod(text, &end);
    uint64_t unit = 1;
    switch (*end) {
    case 'k':
    case 'K':
        unit = 1ULL << 10;
        break;
    case 'm':
    case 'M':
        unit = 1ULL << 20;
        break;
    case 'g':
    case 'G':
        unit = 1ULL << 30;
        break;
    default:
        break;
    }
    return (uint64_t)(number * (double)unit);
}

static void usage(void) {
    fputs("usage: s3load --path PATH --size BYTES [options]\n"
          "  --host HOST --port PORT   the HTTP port (127.0.0.1:6381)\n"
          "  --path PATH               /BUCKET/KEY or /keys/KEY\n"
          "  --size BYTES              the object's size; k, m, g suffixes\n"
          "  --connections N           connections, one thread each (1)\n"
          "  --requests N              requests in all (GET: one per connection, or one pass\n"
          "                            over the object with --range-size; PUT: one, or every\n"
          "                            part)\n"
          "  --range-size BYTES        GET consecutive ranges of this size\n"
          "  --put                     PUT the object's bytes instead of GETting them\n"
          "  --part-size BYTES         PUT: parts of this size to PATH?partNumber=K&QUERY\n"
          "  --query QUERY             PUT parts: the rest of the query (uploadId=...)\n"
          "  --no-verify               do not check the bytes received\n",
          stderr);
}

static void parse_arguments(int argc, char **argv) {
    static const struct option options[] = {
        {"host", required_argument, 0, 'h'},
        {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'P'},
        {"size", required_argument, 0, 's'},
        {"connections", required_argument, 0, 'c'},
        {"requests", required_argument, 0, 'n'},
        {"range-size", required_argument, 0, 'r'},
        {"put", no_argument, 0, 'w'},
        {"part-size", required_argument, 0, 'b'},
        {"query", required_argument, 0, 'q'},
        {"no-verify", no_argument, 0, 'V'},
        {"help", no_argument, 0, 'H'},
        {0, 0, 0, 0},
    };
    int option;
    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (option) {
        case 'h':
            settings.host = optarg;
            break;
        case 'p':
            settings.port = optarg;
            break;
        case 'P':
            settings.path = optarg;
            break;
        case 's':
            settings.object_size = parse_size(optarg);
            break;
        case 'c':
            settings.connections = atoi(optarg);
            break;
        case 'n':
            settings.requests = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            settings.range_size = parse_size(optarg);
            break;
        case 'w':
            settings.put = true;
            break;
        case 'b':
            settings.part_size = parse_size(optarg);
            break;
        case 'q':
            settings.query = optarg;
            break;
        case 'V':
            settings.verify = false;
            break;
        default:
            usage();
            exit(option == 'H' ? 0 : 2);
        }
    }
    bool bad = settings.path == NULL || settings.object_size == 0 || settings.connections < 1 ||
               settings.connections > 1024;
    if (settings.put) {
        bad = bad || settings.range_size > 0 || (settings.part_size > 0 && settings.query == NULL);
        uint64_t parts = settings.part_size > 0
                             ? (settings.object_size + settings.part_size - 1) / settings.part_size
                             : 1;
        bad = bad || parts > 10000;
        if (settings.requests == 0 || settings.requests > parts) settings.requests = parts;
    } else {
        bad = bad || settings.part_size > 0;
        uint64_t ranges =
            settings.range_size > 0
                ? (settings.object_size + settings.range_size - 1) / settings.range_size
                : 0;
        if (settings.requests == 0)
            settings.requests = ranges > 0 ? ranges : (uint64_t)settings.connections;
    }
    if (bad) {
        fprintf(stderr, "s3load: bad arguments\n");
        usage();
        exit(2);
    }
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    parse_arguments(argc, argv);
    base = malloc(BASE_SIZE);
    if (base == NULL) return 2;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < BASE_SIZE; i++) {
        seed = mix64(seed + i);
        base[i] = (unsigned char)seed;
    }
    if (settings.put && settings.part_size > 0) {
        etags = calloc(settings.requests, sizeof *etags);
        if (etags == NULL) return 2;
    }
    struct worker *workers = calloc((size_t)settings.connections, sizeof *workers);
    if (workers == NULL) return 2;
    pthread_barrier_init(&start_barrier, NULL, (unsigned)settings.connections + 1);
    for (int i = 0; i < settings.connections; i++) {
        workers[i].fd = connect_to_server();
        workers[i].buffer = malloc(BUFFER_SIZE);
        if (workers[i].buffer == NULL) return 2;
        memset(workers[i].buffer, 0, BUFFER_SIZE); /* touched before the clock starts */
        workers[i].buffer_window = UINT64_MAX;
        pthread_create(&workers[i].thread, NULL, run_worker, &workers[i]);
    }
    pthread_barrier_wait(&start_barrier);
    /* Timed by the workers themselves: with every thread on one core, this thread may
     * not run again until they are done. */
    double started = 0, finished = 0;
    for (int i = 0; i < settings.connections; i++) {
        pthread_join(workers[i].thread, NULL);
        if (i == 0 || workers[i].started < started) started = workers[i].started;
        if (workers[i].finished > finished) finished = workers[i].finished;
    }
    double seconds = finished - started;
    uint64_t requests = 0, bytes = 0, errors = 0, mismatches = 0, count = 0;
    const char *first_error = "";
    for (int i = 0; i < settings.connections; i++) {
        requests += workers[i].requests;
        bytes += workers[i].bytes;
        errors += workers[i].errors;
        mismatches += workers[i].mismatches;
        count += workers[i].latency_count;
        if (first_error[0] == 0) first_error = workers[i].first_error;
        close(workers[i].fd);
    }
    double *latencies = malloc((count + 1) * sizeof *latencies);
    if (latencies == NULL) return 2;
    uint64_t at = 0;
    for (int i = 0; i < settings.connections; i++) {
        if (workers[i].latency_count == 0) continue; /* no latencies allocated */
        memcpy(latencies + at, workers[i].latencies, workers[i].latency_count * sizeof(double));
        at += workers[i].latency_count;
    }
    qsort(latencies, count, sizeof *latencies, compare_doubles);
    double p50 = count ? latencies[count / 2] : 0;
    double p99 = count ? latencies[count * 99 / 100 < count ? count * 99 / 100 : count - 1] : 0;
    double most = count ? latencies[count - 1] : 0;
    printf("{\"requests\": %llu, \"bytes\": %llu, \"seconds\": %.4f, \"mb_per_s\": %.1f, "
           "\"p50_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f, \"connections\": %d, "
           "\"errors\": %llu, \"mismatches\": %llu, \"first_error\": \"%s\"",
           (unsigned long long)requests, (unsigned long long)bytes, seconds,
           seconds > 0 ? (double)bytes / seconds / 1e6 : 0.0, p50, p99, most, settings.connections,
           (unsigned long long)errors, (unsigned long long)mismatches, first_error);
    if (etags != NULL) {
        printf(", \"etags\": [");
        for (uint64_t i = 0; i < settings.requests; i++) {
            for (char *c = etags[i]; *c; c++)
                if ((unsigned char)*c < 32) *c = ' ';
            printf("%s\"%s\"", i ? ", " : "", etags[i]);
        }
        printf("]");
    }
    printf("}\n");
    for (int i = 0; i < settings.connections; i++) {
        free(workers[i].buffer);
        free(workers[i].latencies);
    }
    free(workers);
    free(latencies);
    free(etags);
    free(base);
    return mismatches > 0 ? 1 : (errors > 0 ? 3 : 0);
}
