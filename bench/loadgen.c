/* loadgen: the closed-loop load generator that drives every server in `make bench`.
 *
 * It speaks the Redis protocol (RESP), the memcached text protocol and strata's native
 * protocol, so strata, Redis and memcached face the same client. Each connection keeps
 * PIPELINE requests in flight (a native request is one frame of BATCH entries); keys are
 * picked uniformly at random, a request is a GET with probability GET_RATIO, else a SET.
 * Every value it reads is compared byte for byte with what it wrote: the value of key K
 * is a slice of one random pattern starting at an offset derived from K, so a stale,
 * foreign or damaged value is caught. A single mismatch makes it exit with status 1.
 *
 * Output: one JSON object on stdout (ops/s, MB/s of values moved, p50/p99/p999 latency
 * in microseconds, counts of GETs, SETs, misses, errors and mismatches).
 * Usage: loadgen --help. */
#include <errno.h>
#include <getopt.h>
#include <isa-l/crc.h>
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
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "strata_protocol.h"

enum protocol { PROTOCOL_RESP, PROTOCOL_MEMCACHE, PROTOCOL_NATIVE };

/* Everything the command line sets; shared read-only by the threads. */
struct settings {
    enum protocol protocol;
    const char *host;
    const char *port;
    size_t value_size;
    uint64_t keys;
    uint64_t key_start; /* keys used are [key_start, keys) */
    double get_ratio;
    int connections;
    int pipeline;
    int batch; /* native: entries per frame */
    int threads;
    double duration_seconds;
    bool prefill;
    const char *namespace_name;
};

static struct settings settings = {
    .protocol = PROTOCOL_RESP,
    .host = "127.0.0.1",
    .port = "6379",
    .value_size = 100,
    .keys = 10000,
    .get_ratio = 0.9,
    .connections = 4,
    .pipeline = 1,
    .batch = 1,
    .threads = 1,
    .duration_seconds = 5,
    .namespace_name = "default",
};

/* The value pattern: random bytes, PATTERN_SPREAD longer than a value. */
#define PATTERN_SPREAD (1u << 20)
static unsigned char *pattern;

#define KEY_LENGTH     16 /* "bench:" and ten digits: the 16-byte keys of the issue */
#define INPUT_CAPACITY (256 * 1024)

/* Latency histogram: log-linear buckets over nanoseconds, 32 sub-buckets per power of
 * two (relative error under 3%), enough powers for an hour. */
#define SUB_BUCKETS 32
#define POWERS      42
struct histogram {
    uint64_t counts[POWERS * SUB_BUCKETS];
};

static size_t histogram_bucket(uint64_t nanoseconds) {
    if (nanoseconds < SUB_BUCKETS) return (size_t)nanoseconds;
    int power = 63 - __builtin_clzll(nanoseconds); /* >= 5 */
    size_t sub = (size_t)(nanoseconds >> (power - 5)) & (SUB_BUCKETS - 1);
    size_t index = (size_t)(power - 4) * SUB_BUCKETS + sub;
    return index < POWERS * SUB_BUCKETS ? index : POWERS * SUB_BUCKETS - 1;
}

/* The smallest latency (ns) that bucket INDEX holds. */
static uint64_t histogram_bucket_floor(size_t index) {
    if (index < SUB_BUCKETS) return index;
    size_t power = index / SUB_BUCKETS + 4;
    return ((uint64_t)(SUB_BUCKETS + index % SUB_BUCKETS)) << (power - 5);
}

/* The latency at quantile Q (0..1) in microseconds; 0 for an empty histogram. */
static double histogram_quantile(const struct histogram *histogram, double quantile) {
    uint64_t total = 0;
    for (size_t i = 0; i < POWERS * SUB_BUCKETS; i++)
        total += histogram->counts[i];
    if (total == 0) return 0;
    uint64_t rank = (uint64_t)(quantile * (double)total);
    if (rank >= total) rank = total - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < POWERS * SUB_BUCKETS; i++) {
        seen += histogram->counts[i];
        if (seen > rank) return (double)histogram_bucket_floor(i) / 1000.0;
    }
    return 0;
}

static uint64_t now_nanoseconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb3fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Where key K's value starts in the pattern. */
static const unsigned char *expected_value(uint64_t key) {
    return pattern + mix64(key) % PATTERN_SPREAD;
}

/* Native protocol: CRC32C of key K's value, computed once per key (bit 32 marks a
 * computed entry); threads may compute the same entry, which stores the same value. */
static _Atomic uint64_t *checksums;

static uint32_t value_checksum(uint64_t key) {
    uint64_t known = atomic_load_explicit(&checksums[key], memory_order_relaxed);
    if (known >> 32) return (uint32_t)known;
    uint32_t checksum =
        ~crc32_iscsi((unsigned char *)expected_value(key), (int)settings.value_size, ~0u);
    atomic_store_explicit(&checksums[key], checksum | (1ULL << 32), memory_order_relaxed);
    return checksum;
}

static void format_key(char *out, uint64_t key) {
    /* snprintf would need room for the terminator; write the digits by hand */
    memcpy(out, "bench:", 6);
    for (int i = 15; i >= 6; i--) {
        out[i] = (char)('0' + key % 10);
        key /= 10;
    }
}

/* One request in flight: what it asked for and the bytes of its header. */
struct request {
    bool is_get;
    int entries;         /* native: entries in the frame; else 1 */
    uint64_t *keys;      /* ENTRIES keys */
    uint64_t started;    /* ns */
    unsigned char *head; /* protocol bytes around the values */
};

/* Reply parser state. */
enum parse_state {
    PARSE_LINE,          /* RESP or memcached: waiting for a full line */
    PARSE_VALUE,         /* comparing value bytes against the expected value */
    PARSE_VALUE_CRLF,    /* the CRLF after a RESP bulk or memcached data block */
    PARSE_MEMCACHE_END,  /* memcached: "END" after a value */
    PARSE_FRAME,         /* native: the 32-byte frame header */
    PARSE_PUT_STATUS,    /* native: one i32 status */
    PARSE_GET_RESULT,    /* native: one 16-byte GET result */
    PARSE_FRAME_MESSAGE, /* native: a refused frame's message */
};

struct thread_state;

struct connection {
    int fd;
    struct thread_state *thread;
    struct request *requests; /* ring of PIPELINE slots */
    int head, in_flight;      /* oldest slot, slots in flight */
    struct iovec *output;     /* ring of pending output pieces */
    int output_capacity, output_head, output_count;
    unsigned char *input;
    size_t input_start, input_end;
    enum parse_state state;
    size_t value_remaining, value_done; /* bytes of the current value */
    const unsigned char *value_expected;
    int entry; /* native: entry of the current frame being parsed */
    uint64_t next_prefill_key, prefill_end;
    uint64_t random;
};

struct thread_state {
    pthread_t thread;
    int epoll_fd;
    struct connection *connections;
    int connection_count;
    uint64_t deadline;
    struct histogram histogram;
    uint64_t gets, sets, misses, errors, mismatches, value_bytes, operations;
    char first_error[160];
};

static void note_error(struct thread_state *thread, const char *what, const char *detail,
                       size_t length) {
    thread->errors++;
    if (thread->first_error[0] == 0)
        snprintf(thread->first_error, sizeof thread->first_error, "%s: %.*s", what,
                 (int)(length > 100 ? 100 : length), detail);
}

static void note_mismatch(struct thread_state *thread, uint64_t key, const char *why) {
    if (thread->mismatches++ < 10)
        fprintf(stderr, "loadgen: WRONG VALUE for key %llu: %s\n", (unsigned long long)key, why);
}

static uint64_t next_random(struct connection *connection) {
    connection->random ^= connection->random << 13;
    connection->random ^= connection->random >> 7;
    connection->random ^= connection->random << 17;
    return connection->random;
}

static void output_push(struct connection *connection, const void *base, size_t length) {
    if (length == 0) return;
    int slot = (connection->output_head + connection->output_count) % connection->output_capacity;
    connection->output[slot].iov_base = (void *)base;
    connection->output[slot].iov_len = length;
    connection->output_count++;
}

/* Bytes each request slot reserves for its protocol head. */
static size_t head_capacity(void) {
    return 64 + (size_t)settings.batch * (STRATA_PUT_ENTRY_SIZE + KEY_LENGTH + 8) + 256;
}

/* Picks the next keys and operation and queues the request's bytes. Returns false when
 * a prefill has no keys left. */
static bool issue_request(struct connection *connection) {
    int slot_index = (connection->head + connection->in_flight) % settings.pipeline;
    struct request *request = &connection->requests[slot_index];
    int entries = settings.protocol == PROTOCOL_NATIVE ? settings.batch : 1;
    if (settings.prefill) {
        if (connection->next_prefill_key >= connection->prefill_end) return false;
        request->is_get = false;
        uint64_t left = connection->prefill_end - connection->next_prefill_key;
        if ((uint64_t)entries > left) entries = (int)left;
        for (int i = 0; i < entries; i++)
            request->keys[i] = connection->next_prefill_key++;
    } else {
        request->is_get =
            (double)(next_random(connection) % 1000000) < settings.get_ratio * 1000000.0;
        for (int i = 0; i < entries; i++)
            request->keys[i] =
                settings.key_start + next_random(connection) % (settings.keys - settings.key_start);
    }
    request->entries = entries;
    request->started = now_nanoseconds();
    unsigned char *head = request->head;
    size_t size = settings.value_size;
    char key[KEY_LENGTH];
    if (settings.protocol == PROTOCOL_RESP) {
        format_key(key, request->keys[0]);
        if (request->is_get) {
            int n = sprintf((char *)head, "*2\r\n$3\r\nGET\r\n$%d\r\n%.*s\r\n", KEY_LENGTH,
                            KEY_LENGTH, key);
            output_push(connection, head, (size_t)n);
        } else {
            int n = sprintf((char *)head, "*3\r\n$3\r\nSET\r\n$%d\r\n%.*s\r\n$%zu\r\n", KEY_LENGTH,
                            KEY_LENGTH, key, size);
            memcpy(head + n, "\r\n", 2);
            output_push(connection, head, (size_t)n);
            output_push(connection, expected_value(request->keys[0]), size);
            output_push(connection, head + n, 2);
        }
    } else if (settings.protocol == PROTOCOL_MEMCACHE) {
        format_key(key, request->keys[0]);
        if (request->is_get) {
            int n = sprintf((char *)head, "get %.*s\r\n", KEY_LENGTH, key);
            output_push(connection, head, (size_t)n);
        } else {
            int n = sprintf((char *)head, "set %.*s 0 0 %zu\r\n", KEY_LENGTH, key, size);
            memcpy(head + n, "\r\n", 2);
            output_push(connection, head, (size_t)n);
            output_push(connection, expected_value(request->keys[0]), size);
            output_push(connection, head + n, 2);
        }
    } else {
        size_t namespace_length = strlen(settings.namespace_name);
        size_t entry_size = request->is_get ? STRATA_GET_ENTRY_SIZE : STRATA_PUT_ENTRY_SIZE;
        size_t body = 2 + namespace_length +
                      (size_t)entries * (entry_size + KEY_LENGTH + (request->is_get ? 0 : size));
        memset(head, 0, STRATA_FRAME_HEADER_SIZE);
        strata_store32(head, STRATA_PROTOCOL_MAGIC);
        head[4] = STRATA_PROTOCOL_VERSION;
        head[5] = request->is_get ? STRATA_OP_GET : STRATA_OP_PUT;
        strata_store64(head + 8, (uint64_t)slot_index);
        strata_store64(head + 16, body);
        strata_store32(head + 24, (uint32_t)entries);
        unsigned char *cursor = head + STRATA_FRAME_HEADER_SIZE;
        cursor[0] = (unsigned char)namespace_length;
        cursor[1] = (unsigned char)(namespace_length >> 8);
        memcpy(cursor + 2, settings.namespace_name, namespace_length);
        cursor += 2 + namespace_length;
        unsigned char *piece_start = head;
        for (int i = 0; i < entries; i++) {
            memset(cursor, 0, entry_size);
            strata_store32(cursor, KEY_LENGTH);
            strata_store64(cursor + 8, size);
            if (!request->is_get) {
                strata_store32(cursor + 24, value_checksum(request->keys[i]));
            }
            format_key((char *)cursor + entry_size, request->keys[i]);
            cursor += entry_size + KEY_LENGTH;
            if (!request->is_get) {
                output_push(connection, piece_start, (size_t)(cursor - piece_start));
                output_push(connection, expected_value(request->keys[i]), size);
                piece_start = cursor;
            }
        }
        output_push(connection, piece_start, (size_t)(cursor - piece_start));
    }
    connection->in_flight++;
    return true;
}

/* Writes what the connection has queued until the socket is full. Returns false when
 * the connection broke. */
static bool flush_output(struct connection *connection) {
    while (connection->output_count > 0) {
        struct iovec pieces[64];
        int count = 0;
        for (; count < connection->output_count && count < 64; count++)
            pieces[count] =
                connection->output[(connection->output_head + count) % connection->output_capacity];
        ssize_t written = writev(connection->fd, pieces, count);
        if (written < 0) {
            if (errno == EAGAIN || errno == EINTR) return true;
            return false;
        }
        size_t left = (size_t)written;
        while (left > 0) {
            struct iovec *piece = &connection->output[connection->output_head];
            if (left >= piece->iov_len) {
                left -= piece->iov_len;
                connection->output_head =
                    (connection->output_head + 1) % connection->output_capacity;
                connection->output_count--;
            } else {
                piece->iov_base = (char *)piece->iov_base + left;
                piece->iov_len -= left;
                left = 0;
            }
        }
    }
    return true;
}

/* One value was read whole or acknowledged as written at NOW: count its bytes when it
 * falls inside the measured window. */
static void count_value(struct thread_state *thread, uint64_t now) {
    if (now <= thread->deadline || settings.prefill) thread->value_bytes += settings.value_size;
}

/* The oldest request finished: record it and, unless time is up, send another. */
static void complete_request(struct connection *connection, uint64_t now) {
    struct thread_state *thread = connection->thread;
    struct request *request = &connection->requests[connection->head];
    if (now <= thread->deadline || settings.prefill) {
        thread->histogram.counts[histogram_bucket(now - request->started)]++;
        thread->operations += (uint64_t)request->entries;
    }
    connection->head = (connection->head + 1) % settings.pipeline;
    connection->in_flight--;
    if (now < thread->deadline || settings.prefill) issue_request(connection);
}

static struct request *oldest(struct connection *connection) {
    return &connection->requests[connection->head];
}

/* Starts comparing a value of LENGTH bytes for the oldest request's key ENTRY. */
static void begin_value(struct connection *connection, uint64_t key, size_t length) {
    connection->value_expected = expected_value(key);
    connection->value_remaining = length;
    connection->value_done = 0;
    connection->state = PARSE_VALUE;
}

/* Finds a CRLF-terminated line at the input's start; returns its length without the
 * CRLF, or -1 when incomplete. */
static ssize_t find_line(struct connection *connection) {
    unsigned char *start = connection->input + connection->input_start;
    size_t available = connection->input_end - connection->input_start;
    unsigned char *newline = memchr(start, '\n', available);
    if (newline == NULL) return -1;
    size_t length = (size_t)(newline - start);
    return length > 0 && start[length - 1] == '\r' ? (ssize_t)length - 1 : (ssize_t)length;
}

/* Handles one complete line (RESP or memcached) for the oldest request. */
static void handle_line(struct connection *connection, const char *line, size_t length,
                        uint64_t now) {
    struct thread_state *thread = connection->thread;
    struct request *request = oldest(connection);
    if (settings.protocol == PROTOCOL_RESP) {
        if (line[0] == '$') {
            long long size = strtoll(line + 1, NULL, 10);
            if (size < 0) {
                thread->misses++;
                thread->gets++;
                complete_request(connection, now);
            } else if ((size_t)size != settings.value_size) {
                note_mismatch(thread, request->keys[0], "length differs");
                begin_value(connection, request->keys[0], (size_t)size);
                connection->value_expected = NULL;
            } else {
                begin_value(connection, request->keys[0], (size_t)size);
            }
        } else if (line[0] == '+') {
            thread->sets++;
            count_value(thread, now);
            complete_request(connection, now);
        } else {
            note_error(thread, "server error", line, length);
            complete_request(connection, now);
        }
    } else if (connection->state == PARSE_MEMCACHE_END) {
        if (length != 3 || memcmp(line, "END", 3) != 0)
            note_error(thread, "expected END", line, length);
        thread->gets++;
        complete_request(connection, now);
        connection->state = PARSE_LINE;
    } else if (length >= 6 && memcmp(line, "VALUE ", 6) == 0) {
        const char *last_space = memrchr(line, ' ', length);
        size_t size = (size_t)strtoull(last_space + 1, NULL, 10);
        if (length < 6 + KEY_LENGTH || size != settings.value_size) {
            note_mismatch(thread, request->keys[0], "length differs");
            begin_value(connection, request->keys[0], size);
            connection->value_expected = NULL;
        } else {
            char key[KEY_LENGTH];
            format_key(key, request->keys[0]);
            if (memcmp(line + 6, key, KEY_LENGTH) != 0)
                note_mismatch(thread, request->keys[0], "other key");
            begin_value(connection, request->keys[0], size);
        }
    } else if (length == 3 && memcmp(line, "END", 3) == 0) {
        thread->misses++;
        thread->gets++;
        complete_request(connection, now);
    } else if (length == 6 && memcmp(line, "STORED", 6) == 0) {
        thread->sets++;
        count_value(thread, now);
        complete_request(connection, now);
    } else {
        note_error(thread, "server error", line, length);
        complete_request(connection, now);
    }
}

/* Parses what the input buffer holds, as far as it goes. */
static void parse_input(struct connection *connection, uint64_t now) {
    struct thread_state *thread = connection->thread;
    while (connection->input_start < connection->input_end && connection->in_flight > 0) {
        unsigned char *start = connection->input + connection->input_start;
        size_t available = connection->input_end - connection->input_start;
        struct request *request = oldest(connection);
        switch (connection->state) {
        case PARSE_LINE:
        case PARSE_MEMCACHE_END: {
            ssize_t length = find_line(connection);
            if (length < 0) return;
            size_t consumed = (size_t)(memchr(start, '\n', available) - (void *)start) + 1;
            connection->input_start += consumed;
            handle_line(connection, (const char *)start, (size_t)length, now);
            break;
        }
        case PARSE_VALUE: {
            size_t take =
                available < connection->value_remaining ? available : connection->value_remaining;
            if (connection->value_expected != NULL &&
                memcmp(start, connection->value_expected + connection->value_done, take) != 0) {
                note_mismatch(thread, request->keys[connection->entry], "bytes differ");
                connection->value_expected = NULL;
            }
            connection->value_done += take;
            connection->value_remaining -= take;
            connection->input_start += take;
            if (connection->value_remaining > 0) break;
            count_value(thread, now);
            if (settings.protocol == PROTOCOL_NATIVE) {
                thread->gets++;
                if (++connection->entry == request->entries) {
                    complete_request(connection, now);
                    connection->state = PARSE_FRAME;
                } else {
                    connection->state = PARSE_GET_RESULT;
                }
            } else {
                connection->state = PARSE_VALUE_CRLF;
            }
            break;
        }
        case PARSE_VALUE_CRLF:
            if (available < 2) return;
            if (start[0] != '\r' || start[1] != '\n')
                note_error(thread, "no CRLF after value", "", 0);
            connection->input_start += 2;
            if (settings.protocol == PROTOCOL_MEMCACHE) {
                connection->state = PARSE_MEMCACHE_END;
            } else {
                thread->gets++;
                connection->state = PARSE_LINE;
                complete_request(connection, now);
            }
            break;
        case PARSE_FRAME: {
            if (available < STRATA_FRAME_HEADER_SIZE) return;
            int32_t status = (int32_t)strata_load32(start + 28);
            connection->input_start += STRATA_FRAME_HEADER_SIZE;
            connection->entry = 0;
            if (strata_load32(start) != STRATA_PROTOCOL_MAGIC) {
                note_error(thread, "bad frame magic", "", 0);
                connection->in_flight = 0; /* give up on this connection's stream */
                return;
            }
            if (status != 0) {
                connection->value_remaining = strata_load64(start + 16);
                connection->state = PARSE_FRAME_MESSAGE;
            } else {
                connection->state = request->is_get ? PARSE_GET_RESULT : PARSE_PUT_STATUS;
            }
            break;
        }
        case PARSE_FRAME_MESSAGE: {
            size_t take =
                available < connection->value_remaining ? available : connection->value_remaining;
            if (take > 0) note_error(thread, "frame refused", (const char *)start, take);
            connection->input_start += take;
            connection->value_remaining -= take;
            if (connection->value_remaining == 0) {
                complete_request(connection, now);
                connection->state = PARSE_FRAME;
            }
            break;
        }
        case PARSE_PUT_STATUS: {
            if (available < 4) return;
            int32_t status = (int32_t)strata_load32(start);
            connection->input_start += 4;
            if (status != 0) {
                char text[32];
                int n = snprintf(text, sizeof text, "status %d", status);
                note_error(thread, "PUT refused", text, (size_t)n);
            } else {
                count_value(thread, now);
            }
            thread->sets++;
            if (++connection->entry == request->entries) {
                complete_request(connection, now);
                connection->state = PARSE_FRAME;
            }
            break;
        }
        case PARSE_GET_RESULT: {
            if (available < STRATA_GET_RESULT_SIZE) return;
            int32_t status = (int32_t)strata_load32(start);
            uint64_t length = strata_load64(start + 8);
            uint64_t key = request->keys[connection->entry];
            connection->input_start += STRATA_GET_RESULT_SIZE;
            if (status == 0) {
                if (length != settings.value_size ||
                    strata_load32(start + 4) != value_checksum(key))
                    note_mismatch(thread, key, "length or checksum differs");
                begin_value(connection, key, length);
                if (length != settings.value_size) connection->value_expected = NULL;
                break;
            }
            if (status == STRATA_ERR_NOT_FOUND) {
                thread->misses++;
            } else {
                char text[32];
                int n = snprintf(text, sizeof text, "status %d", status);
                note_error(thread, "GET refused", text, (size_t)n);
            }
            thread->gets++;
            if (++connection->entry == request->entries) {
                complete_request(connection, now);
                connection->state = PARSE_FRAME;
            }
            break;
        }
        }
    }
}

/* Reads and parses until the socket is empty. Returns false when the connection ended. */
static bool read_input(struct connection *connection) {
    for (;;) {
        if (connection->input_start == connection->input_end) {
            connection->input_start = connection->input_end = 0;
        } else if (connection->input_end == INPUT_CAPACITY) {
            size_t left = connection->input_end - connection->input_start;
            if (connection->input_start == 0) return false; /* a line longer than the buffer */
            memmove(connection->input, connection->input + connection->input_start, left);
            connection->input_start = 0;
            connection->input_end = left;
        }
        ssize_t got = read(connection->fd, connection->input + connection->input_end,
                           INPUT_CAPACITY - connection->input_end);
        if (got < 0) return errno == EAGAIN || errno == EINTR;
        if (got == 0) return false;
        connection->input_end += (size_t)got;
        parse_input(connection, now_nanoseconds());
        if ((size_t)got < INPUT_CAPACITY / 2) return true;
    }
}

static int connect_to_server(void) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *addresses;
    int rc = getaddrinfo(settings.host, settings.port, &hints, &addresses);
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", settings.host, settings.port, gai_strerror(rc));
        exit(2);
    }
    int fd = -1;
    for (struct addrinfo *address = addresses; address != NULL; address = address->ai_next) {
        fd = socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK, 0);
        if (fd < 0) continue;
        if (connect(fd, address->ai_addr, address->ai_addrlen) == 0 || errno == EINPROGRESS) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        fprintf(stderr, "loadgen: cannot connect to %s:%s: %s\n", settings.host, settings.port,
                strerror(errno));
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void *run_thread(void *argument) {
    struct thread_state *thread = argument;
    struct epoll_event events[64];
    for (int i = 0; i < thread->connection_count; i++) {
        struct connection *connection = &thread->connections[i];
        for (int p = 0; p < settings.pipeline; p++)
            if (!issue_request(connection)) break;
        struct epoll_event event = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = connection};
        epoll_ctl(thread->epoll_fd, EPOLL_CTL_ADD, connection->fd, &event);
    }
    int open_connections = thread->connection_count;
    while (open_connections > 0) {
        uint64_t now = now_nanoseconds();
        if (!settings.prefill && now > thread->deadline) break;
        int ready = epoll_wait(thread->epoll_fd, events, 64, 100);
        for (int e = 0; e < ready; e++) {
            struct connection *connection = events[e].data.ptr;
            if (connection->fd < 0) continue;
            bool alive = true;
            if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) alive = read_input(connection);
            if (alive) alive = flush_output(connection);
            if (alive && connection->in_flight == 0) alive = false; /* done (prefill) */
            if (!alive) {
                if (connection->in_flight > 0) note_error(thread, "connection closed", "", 0);
                epoll_ctl(thread->epoll_fd, EPOLL_CTL_DEL, connection->fd, NULL);
                close(connection->fd);
                connection->fd = -1;
                open_connections--;
            }
        }
    }
    return NULL;
}

static size_t parse_size(const char *text) {
    char *end;
    double number = strtod(text, &end);
    size_t unit = 1;
    if (*end == 'k' || *end == 'K') unit = 1024;
    if (*end == 'm' || *end == 'M') unit = 1024 * 1024;
    return (size_t)(number * (double)unit);
}

static void usage(void) {
    fputs("usage: loadgen [options]\n"
          "  --protocol resp|memcache|native  (resp)\n"
          "  --host HOST --port PORT          (127.0.0.1:6379)\n"
          "  --size BYTES                     value size; k and m suffixes (100)\n"
          "  --keys N                         use keys bench:<key-start>..bench:<N-1> (10000)\n"
          "  --get-ratio R                    share of GETs, 0..1 (0.9)\n"
          "  --connections N --pipeline N     (4, 1)\n"
          "  --batch N                        native: entries per frame (1)\n"
          "  --threads N                      client threads (1)\n"
          "  --duration SECONDS               (5)\n"
          "  --key-start N                    first key (0)\n"
          "  --prefill                        write every key once, then stop\n"
          "  --namespace NAME                 native namespace (default)\n",
          stderr);
}

static void parse_arguments(int argc, char **argv) {
    static const struct option options[] = {{"protocol", required_argument, 0, 'P'},
                                            {"host", required_argument, 0, 'h'},
                                            {"port", required_argument, 0, 'p'},
                                            {"size", required_argument, 0, 's'},
                                            {"keys", required_argument, 0, 'k'},
                                            {"get-ratio", required_argument, 0, 'r'},
                                            {"connections", required_argument, 0, 'c'},
                                            {"pipeline", required_argument, 0, 'd'},
                                            {"batch", required_argument, 0, 'b'},
                                            {"threads", required_argument, 0, 't'},
                                            {"duration", required_argument, 0, 'D'},
                                            {"prefill", no_argument, 0, 'f'},
                                            {"key-start", required_argument, 0, 'S'},
                                            {"namespace", required_argument, 0, 'n'},
                                            {"help", no_argument, 0, 'H'},
                                            {0, 0, 0, 0}};
    int option;
    while ((option = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (option) {
        case 'P':
            if (strcmp(optarg, "resp") == 0)
                settings.protocol = PROTOCOL_RESP;
            else if (strcmp(optarg, "memcache") == 0)
                settings.protocol = PROTOCOL_MEMCACHE;
            else if (strcmp(optarg, "native") == 0)
                settings.protocol = PROTOCOL_NATIVE;
            else {
                fprintf(stderr, "loadgen: unknown protocol %s\n", optarg);
                exit(2);
            }
            break;
        case 'h':
            settings.host = optarg;
            break;
        case 'p':
            settings.port = optarg;
            break;
        case 's':
            settings.value_size = parse_size(optarg);
            break;
        case 'k':
            settings.keys = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            settings.get_ratio = strtod(optarg, NULL);
            break;
        case 'c':
            settings.connections = atoi(optarg);
            break;
        case 'd':
            settings.pipeline = atoi(optarg);
            break;
        case 'b':
            settings.batch = atoi(optarg);
            break;
        case 't':
            settings.threads = atoi(optarg);
            break;
        case 'D':
            settings.duration_seconds = strtod(optarg, NULL);
            break;
        case 'f':
            settings.prefill = true;
            break;
        case 'S':
            settings.key_start = strtoull(optarg, NULL, 10);
            break;
        case 'n':
            settings.namespace_name = optarg;
            break;
        default:
            usage();
            exit(option == 'H' ? 0 : 2);
        }
    }
    if (settings.connections < 1 || settings.pipeline < 1 || settings.batch < 1 ||
        settings.threads < 1 || settings.keys == 0 || settings.value_size > (1u << 30) ||
        settings.keys > 9999999999ULL || settings.get_ratio < 0 || settings.get_ratio > 1 ||
        settings.key_start >= settings.keys || strlen(settings.namespace_name) > 255) {
        fprintf(stderr, "loadgen: bad arguments\n");
        usage();
        exit(2);
    }
    if (settings.threads > settings.connections) settings.threads = settings.connections;
}

int main(int argc, char **argv) {
    parse_arguments(argc, argv);
    pattern = malloc(settings.value_size + PATTERN_SPREAD);
    if (pattern == NULL) return 2;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < settings.value_size + PATTERN_SPREAD; i++) {
        seed = mix64(seed + i);
        pattern[i] = (unsigned char)seed;
    }
    if (settings.protocol == PROTOCOL_NATIVE) {
        checksums = calloc(settings.keys, sizeof *checksums);
        if (checksums == NULL) return 2;
    }
    struct thread_state *threads = calloc((size_t)settings.threads, sizeof *threads);
    struct connection *connections = calloc((size_t)settings.connections, sizeof *connections);
    int output_capacity = settings.pipeline * (2 * settings.batch + 4);
    uint64_t prefill_keys = settings.keys - settings.key_start;
    for (int c = 0; c < settings.connections; c++) {
        struct connection *connection = &connections[c];
        connection->fd = connect_to_server();
        connection->requests = calloc((size_t)settings.pipeline, sizeof *connection->requests);
        for (int p = 0; p < settings.pipeline; p++) {
            connection->requests[p].keys = calloc((size_t)settings.batch, sizeof(uint64_t));
            connection->requests[p].head = malloc(head_capacity());
        }
        connection->output = calloc((size_t)output_capacity, sizeof *connection->output);
        connection->output_capacity = output_capacity;
        connection->input = malloc(INPUT_CAPACITY);
        connection->state = settings.protocol == PROTOCOL_NATIVE ? PARSE_FRAME : PARSE_LINE;
        connection->random = mix64((uint64_t)c + 1) | 1;
        connection->next_prefill_key =
            settings.key_start + prefill_keys * (uint64_t)c / (uint64_t)settings.connections;
        connection->prefill_end =
            settings.key_start + prefill_keys * (uint64_t)(c + 1) / (uint64_t)settings.connections;
    }
    /* Give each thread a contiguous run of connections. */
    int per_thread_start = 0;
    for (int t = 0; t < settings.threads; t++) {
        int count = settings.connections / settings.threads +
                    (t < settings.connections % settings.threads ? 1 : 0);
        threads[t].connections = &connections[per_thread_start];
        threads[t].connection_count = count;
        for (int c = per_thread_start; c < per_thread_start + count; c++)
            connections[c].thread = &threads[t];
        per_thread_start += count;
        threads[t].epoll_fd = epoll_create1(0);
    }
    uint64_t started = now_nanoseconds();
    uint64_t deadline = started + (uint64_t)(settings.duration_seconds * 1e9);
    for (int t = 0; t < settings.threads; t++) {
        threads[t].deadline = deadline;
        pthread_create(&threads[t].thread, NULL, run_thread, &threads[t]);
    }
    for (int t = 0; t < settings.threads; t++)
        pthread_join(threads[t].thread, NULL);
    uint64_t finished = now_nanoseconds();
    double elapsed =
        settings.prefill ? (double)(finished - started) / 1e9 : settings.duration_seconds;
    struct thread_state total = {0};
    for (int t = 0; t < settings.threads; t++) {
        for (size_t i = 0; i < POWERS * SUB_BUCKETS; i++)
            total.histogram.counts[i] += threads[t].histogram.counts[i];
        total.gets += threads[t].gets;
        total.sets += threads[t].sets;
        total.misses += threads[t].misses;
        total.errors += threads[t].errors;
        total.mismatches += threads[t].mismatches;
        total.operations += threads[t].operations;
        total.value_bytes += threads[t].value_bytes;
        if (total.first_error[0] == 0 && threads[t].first_error[0] != 0)
            memcpy(total.first_error, threads[t].first_error, sizeof total.first_error);
    }
    /* MB/s counts value bytes moved either way: read and verified, or written */
    double moved = (double)total.value_bytes;
    for (char *c = total.first_error; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 32) *c = ' ';
    printf("{\"ops\": %llu, \"seconds\": %.3f, \"ops_per_s\": %.0f, \"mb_per_s\": %.1f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"gets\": %llu, \"sets\": %llu, "
           "\"misses\": %llu, \"errors\": %llu, \"mismatches\": %llu, \"first_error\": \"%s\"}\n",
           (unsigned long long)total.operations, elapsed, (double)total.operations / elapsed,
           moved / elapsed / 1e6, histogram_quantile(&total.histogram, 0.50),
           histogram_quantile(&total.histogram, 0.99), histogram_quantile(&total.histogram, 0.999),
           (unsigned long long)total.gets, (unsigned long long)total.sets,
           (unsigned long long)total.misses, (unsigned long long)total.errors,
           (unsigned long long)total.mismatches, total.first_error);
    return total.mismatches > 0 ? 1 : 0;
}
