/* strata-server's life cycle: options, start (log, data directory lock, stores, front
 * ends, listeners, workers, housekeeping), the wait for a stop signal, and the stop.
 * The front ends come from the table in frontends.c; nothing here names a protocol. */
#include "server/server.h"
#include "access/access.h"
#include "base/checks.h"
#include "base/fault.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/numbers.h"
#include "base/version.h"
#include "engine/engine_options.h"
#include "engine/objects.h"
#include "engine/store.h"
#include "net/net.h"
#include "observe/stats.h"
#include "proto/s3/s3.h"
#include "server/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Descriptors kept for listeners, logs and files beyond one per client. */
#define RESERVED_DESCRIPTORS 64

/* Prints one line about a bad option or value and exits with status 2. */
static void die_usage(const char *message) {
    fprintf(stderr, "strata-server: %s\n", message);
    exit(2);
}

/* Number of CPUs this process may run on. */
static int available_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0) return count;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

/* Creates DIR and its parents. Returns 0, or -1 with errno set. */
static int make_directories(const char *dir) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *slash = path + 1; *slash; slash++) {
        if (*slash != '/') continue;
        *slash = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return -1;
        *slash = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* Creates the data directory and takes its lock, so that two servers never share
 * one. Returns the lock descriptor, or -1 after logging why. */
static int lock_data_directory(const char *dir) {
    if (make_directories(dir) != 0) {
        fprintf(stderr, "strata-server: cannot create data directory '%s': %s\n", dir,
                strerror(errno));
        return -1;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "strata-server: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "strata-server: data directory '%s' is in use by another strata-server\n",
                dir);
        close(fd);
        return -1;
    }
    char pid[32];
    int length = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)length) != length) {
        log_event(LOG_WARNING, "lock_file", "path=%s error=\"%s\"", path, strerror(errno));
    }
    return fd;
}

/* Raises the descriptor limit to fit max-clients, lowering max-clients if the system
 * will not allow it (as Redis does). */
static void fit_descriptor_limit(struct options *options) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    rlim_t wanted = (rlim_t)options_number(options, NET_OPTION(max_clients)) + RESERVED_DESCRIPTORS;
    if (limit.rlim_cur >= wanted) return;
    rlim_t target =
        limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= wanted ? wanted : limit.rlim_max;
    limit.rlim_cur = target;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < wanted) {
        long long clients = (long long)limit.rlim_cur - RESERVED_DESCRIPTORS;
        if (clients < 1) clients = 1;
        char value[32];
        snprintf(value, sizeof(value), "%lld", clients);
        char error[128];
        options_set(options, NET_OPTION(max_clients), value, false, error, sizeof(error));
        log_event(LOG_WARNING, "max_clients_lowered",
                  "max_clients=%lld reason=\"the open file limit is %llu\"", clients,
                  (unsigned long long)limit.rlim_cur);
    }
}

/* Opens --log-file for appending and sends log lines there. On a reopen (SIGHUP) the
 * new file takes the old one's descriptor number with dup2(), which swaps the file
 * atomically: a thread about to write a line uses a number that always names a log
 * file, never a descriptor closed and reused meanwhile (a client's socket). Returns 0,
 * or -1 with errno set (the old destination stays). */
static int open_log_file(struct server *server) {
    const char *path = options_text(&server->options, SERVER_OPTION(log_file));
    if (path[0] == '\0') return 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    if (server->log_fd < 0) {
        server->log_fd = fd;
        log_set_fd(fd);
        return 0;
    }
    int result = dup3(fd, server->log_fd, O_CLOEXEC);
    int error = errno;
    close(fd);
    errno = error;
    return result < 0 ? -1 : 0;
}

static void request_shutdown(void *context) {
    (void)context;
    kill(getpid(), SIGUSR1);
}

/* The signals the main thread takes with sigwait(); every other thread blocks them. */
static void stop_signals(sigset_t *signals) {
    sigemptyset(signals);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGTERM);
    sigaddset(signals, SIGUSR1);
    sigaddset(signals, SIGHUP);
}

/* Where glibc's malloc takes large blocks from. Left alone, a block above its mmap
 * threshold (128 KiB at start) is a fresh mmap, faulted in page by page, and goes back
 * with munmap; the threshold only rises once such a block has been freed. So every value
 * of 128 KiB and more loaded into a new server is an mmap, and the first pass that
 * overwrites them pays an munmap and 64 page faults per 256 KiB, value after value
 * (docs/performance.md: the first-overwrite loss). Fixing the threshold where glibc's
 * own adjustment would end (32 MiB on 64-bit, with the trim threshold at twice it) serves
 * values from the heap from the start. Values above 32 MiB still use mmap. */
static void tune_allocator(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

/* strata-server --hash-password: reads a password from standard input (one line, its
 * newline dropped) and prints the users file rule that holds its hash. Returns the exit
 * status. */
static int hash_password(void) {
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length = getline(&line, &capacity, stdin);
    if (length < 0) {
        fprintf(stderr, "strata-server: --hash-password reads a password from standard input\n");
        free(line);
        return 2;
    }
    while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r'))
        line[--length] = '\0';
    char hash[ACCESS_HASH_MAX];
    int status = access_hash_password(line, (size_t)length, hash);
    memset(line, 0, (size_t)length);
    free(line);
    if (status != 0) {
        fprintf(stderr, "strata-server: cannot hash the password (out of memory)\n");
        return 1;
    }
    printf("#%s\n", hash);
    return 0;
}

/* Reads --unix-socket-mode's octal TEXT ("0660") into *MODE. Returns false if it is not
 * an octal number from 0 to 0777. */
static bool parse_unix_socket_mode(const char *text, unsigned *mode) {
    if (text[0] == '\0' || strlen(text) > 4 || strspn(text, "01234567") != strlen(text))
        return false;
    *mode = (unsigned)strtoul(text, NULL, 8);
    return *mode <= 0777;
}

/* The paragraph of --help and of the man page's DESCRIPTION. */
#define SERVER_SUMMARY                                                                             \
    "strata-server: a tiered data store for AI inference and training that speaks\nthe Redis "     \
    "protocol, a native protocol, HTTP and S3. With no options it listens\non 127.0.0.1, ports "   \
    "6379 "                                                                                        \
    "(Redis protocol), 6380 (native protocol) and 6381 (HTTP\nand S3).\n\nstrata-server "          \
    "--hash-password reads a password on standard "                                                \
    "input and prints\nthe '#HASH' rule that gives it to a user in a --users file."

/* The man page's sections after OPTIONS (troff). */
#define MAN_SECTIONS                                                                               \
    ".SH SIGNALS\n"                                                                                \
    ".TP\n\\fBSIGTERM\\fR, \\fBSIGINT\\fR\nStop: drain for \\fB\\-\\-drain\\-time\\fR, "           \
    "then close the ports and flush.\n"                                                            \
    ".TP\n\\fBSIGHUP\\fR\nReopen \\fB\\-\\-log\\-file\\fR, read the \\fB\\-\\-users\\fR file "     \
    "and the TLS files again.\n"                                                                   \
    ".SH ENVIRONMENT\n"                                                                            \
    ".TP\n\\fBNOTIFY_SOCKET\\fR\nSet by systemd for \\fBType=notify\\fR: the server sends "        \
    "READY=1 once it serves (after the flash index is rebuilt), RELOADING=1 and READY=1 "          \
    "around SIGHUP, and STOPPING=1 when it stops.\n"                                               \
    ".SH EXIT STATUS\n0 after a clean stop, 1 when the server cannot start, 2 for a bad "          \
    "option or value.\n"                                                                           \
    ".SH SEE ALSO\n\\fBredis\\-cli\\fR(1), \\fBsystemd.service\\fR(5); docs/ in the strata "       \
    "source tree.\n"

int server_configure(struct server *server, int argc, char **argv) {
    tune_allocator();
    if (argc == 2 && strcmp(argv[1], "--hash-password") == 0) return hash_password();
    server->lock_fd = -1;
    server->log_fd = -1;
    if (frontends_declare_tables() != 0) die_usage("the option or metric table is full");
    /* Undocumented in --help: what make install generates the sample config file and
     * the man page from (the option table, so neither can drift from the code). */
    if (argc == 2 && strcmp(argv[1], "--print-config") == 0) {
        options_print_config(stdout, "strata-server");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--man") == 0) {
        options_print_man(stdout, "strata-server", SERVER_SUMMARY, STRATA_VERSION, MAN_SECTIONS);
        return 0;
    }
    if (options_init(&server->options) != 0) die_usage("out of memory");
    char error[512];
    switch (options_parse_command_line(&server->options, argc, argv, error, sizeof(error))) {
    case OPTIONS_PARSE_HELP:
        options_print_help(stdout, "strata-server", SERVER_SUMMARY);
        return 0;
    case OPTIONS_PARSE_VERSION:
        printf("strata-server %s\n", STRATA_VERSION);
        return 0;
    case OPTIONS_PARSE_ERROR:
        die_usage(error);
        break;
    case OPTIONS_PARSE_OK:
        break;
    }
    unsigned mode;
    const char *mode_text = options_text(&server->options, NET_OPTION(unix_socket_mode));
    if (!parse_unix_socket_mode(mode_text, &mode)) {
        snprintf(error, sizeof(error),
                 "invalid value '%.40s' for --unix-socket-mode: an octal mode from 0 to 0777, "
                 "such as 0660",
                 mode_text);
        die_usage(error);
    }
    log_set_level((enum log_level)options_number(&server->options, SERVER_OPTION(log_level)));
#ifdef STRATA_FAULT_INJECTION
    /* The fault-injection build: rules from the environment apply from the start. */
    const char *faults = getenv("STRATA_FAULTS");
    if (faults != NULL && faults[0] != '\0') {
        if (fault_parse(faults, error, sizeof(error)) != 0) die_usage(error);
        log_event(LOG_WARNING, "fault_rules", "rules=%s", faults);
    }
#endif
    if (options_number(&server->options, NET_OPTION(threads)) == 0) {
        char cores[16];
        snprintf(cores, sizeof(cores), "%d", available_cores());
        options_set(&server->options, NET_OPTION(threads), cores, false, error, sizeof(error));
    }
    if (realpath("/proc/self/exe", server->executable) == NULL) server->executable[0] = '\0';
    const char *config = options_text(&server->options, OPTION_config);
    if (config[0] == '\0' || realpath(config, server->config_file) == NULL) {
        snprintf(server->config_file, sizeof(server->config_file), "%s", config);
    }
    return -1;
}

/* True when every address HOST names is a loopback address (127.0.0.0/8, ::1). */
static bool is_loopback(const char *host) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    struct addrinfo *results = NULL;
    if (getaddrinfo(host, NULL, &hints, &results) != 0) return false;
    bool loopback = results != NULL;
    for (struct addrinfo *result = results; result != NULL; result = result->ai_next) {
        if (result->ai_family == AF_INET) {
            uint32_t address = ntohl(((struct sockaddr_in *)result->ai_addr)->sin_addr.s_addr);
            loopback &= (address >> 24) == 127;
        } else if (result->ai_family == AF_INET6) {
            const struct in6_addr *address = &((struct sockaddr_in6 *)result->ai_addr)->sin6_addr;
            loopback &= IN6_IS_ADDR_LOOPBACK(address) ||
                        (IN6_IS_ADDR_V4MAPPED(address) && address->s6_addr[12] == 127);
        } else {
            loopback = false;
        }
    }
    freeaddrinfo(results);
    return loopback;
}

/* Protected mode: with no users configured (anyone who connects may do everything), the
 * server listens on loopback only unless --insecure yes. Returns 0, or -1 with the
 * reason and what to do in ERROR. */
static int check_protected_mode(struct server *server, char *error, size_t error_size) {
    if (options_number(&server->options, ACCESS_OPTION(insecure)) == 1) return 0;
    bool open = access_protected(server->access);
    char *addresses = strdup(options_text(&server->options, NET_OPTION(bind)));
    if (addresses == NULL) {
        snprintf(error, error_size, "out of memory");
        return -1;
    }
    int status = 0;
    char *saved = NULL;
    for (char *host = strtok_r(addresses, " ,", &saved); host != NULL;
         host = strtok_r(NULL, " ,", &saved)) {
        if (is_loopback(host)) continue;
        if (!open) {
            /* Users keep it closed; they must not open it while the server runs. */
            access_guard_protected_mode(server->access);
            break;
        }
        snprintf(error, error_size,
                 "protected mode: refusing to listen on '%.100s' with no users configured, "
                 "since anyone who reaches the port could read, write and delete everything. "
                 "Configure users (--users FILE, or --requirepass PASSWORD), or listen on "
                 "loopback only (--bind 127.0.0.1), or, on a network you trust, turn "
                 "protected mode off with --insecure yes (docs/security.md)",
                 host);
        status = -1;
        break;
    }
    free(addresses);
    return status;
}

/* Sets up every front end in the table and listens on its port. Returns 0, or -1 with
 * a reason in ERROR. */
static int start_frontends(struct server *server, char *error, size_t error_size) {
    for (int i = 0; i < frontend_count; i++) {
        const struct frontend *frontend = frontend_table[i];
        struct frontend_instance *instance = &server->frontends[i];
        instance->frontend = frontend;
        instance->state = frontend->setup(&server->environment);
        if (instance->state == NULL) {
            snprintf(error, error_size, "out of memory");
            return -1;
        }
        int port_option = options_find(frontend->port_option);
        STRATA_ASSERT(port_option >= 0); /* frontends_declare_tables() checked it */
        instance->port =
            net_server_listen(server->net, (int)options_number(&server->options, port_option),
                              &frontend->handler, instance->state, error, error_size);
        if (instance->port < 0) return -1;
        if (frontend->info_port_field != NULL)
            stats_set_port(server->stats, frontend->info_port_field, instance->port);
    }
    return 0;
}

/* Listens on --unix-socket, if given, for the front ends that serve it: those that tell
 * their connections by the first bytes first, then the one that takes the rest. Returns
 * 0, or -1 with a reason in ERROR. */
static int listen_unix_socket(struct server *server, char *error, size_t error_size) {
    const char *path = options_text(&server->options, NET_OPTION(unix_socket));
    if (path[0] == '\0') return 0;
    const struct net_handler *handlers[FRONTENDS_MAX];
    void *contexts[FRONTENDS_MAX];
    int count = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < frontend_count; i++) {
            const struct frontend *frontend = frontend_table[i];
            if (!frontend->unix_socket || (frontend->handler.sniff != NULL) != (pass == 0))
                continue;
            handlers[count] = &frontend->handler;
            contexts[count] = server->frontends[i].state;
            count++;
        }
    }
    unsigned mode = 0660;
    parse_unix_socket_mode(options_text(&server->options, NET_OPTION(unix_socket_mode)), &mode);
    return net_server_listen_unix(server->net, path, mode, handlers, contexts, count, error,
                                  error_size);
}

/* Tears down the front ends set up so far (after the network layer has stopped). */
static void stop_frontends(struct server *server) {
    for (int i = 0; i < frontend_count; i++) {
        struct frontend_instance *instance = &server->frontends[i];
        if (instance->state != NULL) instance->frontend->teardown(instance->state);
        instance->state = NULL;
    }
}

/* Opens the object store (--objects-dir, or DIR/objects) and the S3 API over it.
 * Returns 0, or -1 with a reason in ERROR. */
static int open_objects(struct server *server, char *error, size_t error_size) {
    const struct options *options = &server->options;
    char directory[PATH_MAX];
    const char *configured = options_text(options, S3_OPTION(objects_dir));
    if (configured[0] != '\0') {
        snprintf(directory, sizeof(directory), "%s", configured);
    } else {
        snprintf(directory, sizeof(directory), "%s/objects",
                 options_text(options, SERVER_OPTION(dir)));
    }
    static const enum objects_sync syncs[] = {
        [STORE_FSYNC_NEVER] = OBJECTS_SYNC_NEVER,
        [STORE_FSYNC_EVERYSEC] = OBJECTS_SYNC_EVERYSEC,
        [STORE_FSYNC_ALWAYS] = OBJECTS_SYNC_NOW,
    };
    struct objects_config config = {
        .directory = directory,
        .chunk_size = (uint32_t)options_number(options, S3_OPTION(object_chunk_size)),
        .sync = syncs[options_number(options, ENGINE_OPTION(fsync))],
        .min_part_size = (uint64_t)options_number(options, S3_OPTION(s3_min_part_size)),
    };
    char reason[512];
    server->objects = objects_open(&config, reason, sizeof(reason));
    if (server->objects == NULL) {
        snprintf(error, error_size, "cannot open the object store: %.400s", reason);
        return -1;
    }
    struct s3_environment s3_environment = {
        .objects = server->objects, .options = &server->options, .access = server->access};
    server->s3 = s3_server_create(&s3_environment, error, error_size);
    if (server->s3 == NULL) return -1;
    return 0;
}

/* Closes what open_objects() opened (a clean close: the object index is saved). */
static void close_objects(struct server *server) {
    s3_server_destroy(server->s3);
    server->s3 = NULL;
    if (server->objects != NULL) objects_close(server->objects);
    server->objects = NULL;
}

/* A start that fails after the stores exist: what was started is stopped. Returns the
 * exit status, 1. */
static int start_failed(struct server *server, const char *error) {
    if (error != NULL) fprintf(stderr, "strata-server: %s\n", error);
    if (server->net != NULL) {
        net_server_stop(server->net);
        net_server_destroy(server->net);
        server->net = NULL;
    }
    stop_frontends(server);
    if (server->stats != NULL) stats_destroy(server->stats);
    server->stats = NULL;
    close_objects(server);
    stores_destroy(server, false);
    access_destroy(server->access);
    server->access = NULL;
    return 1;
}

/* Logs where the S3 API answers and how to point aws-cli at it. */
static void log_s3_endpoint(struct server *server) {
    int http_port = 0;
    for (int i = 0; i < frontend_count; i++) {
        if (strcmp(server->frontends[i].frontend->name, "http") == 0)
            http_port = server->frontends[i].port;
    }
    const char *bind = options_text(&server->options, NET_OPTION(bind));
    char host[64];
    size_t length = strcspn(bind, " ,");
    if (length >= sizeof(host)) length = sizeof(host) - 1;
    memcpy(host, bind, length);
    host[length] = '\0';
    if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0') snprintf(host, sizeof(host), "127.0.0.1");
    bool ipv6 = strchr(host, ':') != NULL;
    log_event(LOG_INFO, "s3", "endpoint=%s://%s%s%s:%d credentials=%s hint=\"%s\"",
              net_server_tls(server->net) ? "https" : "http", ipv6 ? "[" : "", host,
              ipv6 ? "]" : "", http_port, s3_has_credentials(server->s3) ? "configured" : "none",
              s3_has_credentials(server->s3)
                  ? "aws --endpoint-url <endpoint> s3 ls, with a configured access key "
                    "(--s3-access-key, or a user's s3key: in --users)"
                  : "AWS_ACCESS_KEY_ID=any AWS_SECRET_ACCESS_KEY=any aws --endpoint-url "
                    "<endpoint> s3 ls (any key is taken, from loopback only, until "
                    "--s3-access-key and --s3-secret-key are set or users are configured)");
}

/* Logs the start and where each front end listens. */
static void log_start(struct server *server) {
    const struct options *options = &server->options;
    char memory[32], max_value[32];
    log_event(LOG_INFO, "start",
              "version=%s pid=%ld threads=%d memory=%s max_value=%s max_clients=%lld dir=%s",
              STRATA_VERSION, (long)getpid(), (int)options_number(options, NET_OPTION(threads)),
              format_size(memory, sizeof(memory),
                          (uint64_t)options_number(options, ENGINE_OPTION(memory))),
              format_size(max_value, sizeof(max_value),
                          (uint64_t)options_number(options, ENGINE_OPTION(max_value))),
              (long long)options_number(options, NET_OPTION(max_clients)),
              options_text(options, SERVER_OPTION(dir)));
    for (int i = 0; i < frontend_count; i++) {
        const struct frontend_instance *instance = &server->frontends[i];
        char fields[128] = "";
        if (instance->frontend->listening_fields != NULL)
            instance->frontend->listening_fields(instance->state, fields, sizeof(fields));
        log_event(LOG_INFO, "listening", "protocol=%s bind=\"%s\" port=%d%s",
                  instance->frontend->name, options_text(options, NET_OPTION(bind)), instance->port,
                  fields);
    }
    const char *unix_socket = options_text(options, NET_OPTION(unix_socket));
    if (unix_socket[0] != '\0') {
        char names[128] = "";
        for (int i = 0; i < frontend_count; i++) {
            if (!frontend_table[i]->unix_socket) continue;
            size_t used = strlen(names);
            snprintf(names + used, sizeof(names) - used, "%s%s", used > 0 ? "," : "",
                     frontend_table[i]->name);
        }
        log_event(LOG_INFO, "listening_unix", "path=%s mode=%s protocols=%s", unix_socket,
                  options_text(options, NET_OPTION(unix_socket_mode)), names);
    }
    log_s3_endpoint(server);
}

int server_start(struct server *server) {
    /* Signals are taken by sigwait() in the main thread only; threads inherit the mask. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t signals;
    stop_signals(&signals);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    if (open_log_file(server) != 0) {
        fprintf(stderr, "strata-server: cannot open log file '%s': %s\n",
                options_text(&server->options, SERVER_OPTION(log_file)), strerror(errno));
        return 1;
    }
    server->lock_fd = lock_data_directory(options_text(&server->options, SERVER_OPTION(dir)));
    if (server->lock_fd < 0) return 1;
    fit_descriptor_limit(&server->options);
    char error[512];
    server->access = access_create(&server->options, error, sizeof(error));
    if (server->access == NULL || check_protected_mode(server, error, sizeof(error)) != 0) {
        fprintf(stderr, "strata-server: %s\n", error);
        access_destroy(server->access);
        server->access = NULL;
        return 1;
    }
    int status = stores_create(server);
    if (status != 0) return status;
    server->options.on_change = server_apply_option;
    server->options.on_change_context = server;
    if (open_objects(server, error, sizeof(error)) != 0) return start_failed(server, error);
    struct stats_environment stats_environment = {
        .store = server->store,
        .options = &server->options,
        .executable = server->executable,
        .config_file = server->config_file,
        .threads = (int)options_number(&server->options, NET_OPTION(threads)),
        .namespaces = &server->namespaces,
        .objects = server->objects,
    };
    server->stats = stats_create(&stats_environment);
    if (server->stats == NULL) return start_failed(server, "out of memory");
    server->environment = (struct frontend_environment){
        .store = server->store,
        .namespaces = &server->namespaces,
        .objects = server->objects,
        .access = server->access,
        .http_extension = s3_http_extension(server->s3),
        .options = &server->options,
        .stats = server->stats,
        .request_shutdown = request_shutdown,
        .shutdown_context = server,
    };
    struct net_config net_config = {
        .bind = options_text(&server->options, NET_OPTION(bind)),
        .threads = stats_environment.threads,
        .options = &server->options,
    };
    server->net = net_server_create(&net_config, error, sizeof(error));
    if (server->net == NULL || start_frontends(server, error, sizeof(error)) != 0 ||
        listen_unix_socket(server, error, sizeof(error)) != 0 ||
        net_server_start(server->net, error, sizeof(error)) != 0) {
        return start_failed(server, error);
    }
    /* The ports are open while the flash index is rebuilt: clients hear LOADING (RESP),
     * BUSY (native) or 503 (HTTP) until it is whole; housekeeping notices the end. */
    if (store_recovering(server->store)) {
        stats_set_state(server->stats, SERVER_RECOVERING);
        log_event(LOG_INFO, "recovering", "reason=\"rebuilding the flash index\"");
        /* Not ready for systemd yet: housekeeping sends READY=1 when the index is whole. */
        notify_service_manager("STATUS=recovering: rebuilding the flash index");
    } else {
        stats_set_state(server->stats, SERVER_SERVING);
        log_event(LOG_INFO, "ready", NULL);
        notify_service_manager("READY=1\nSTATUS=serving");
    }
    housekeeping_start(server);
    log_start(server);
    return 0;
}

/* SIGHUP: reads the TLS certificate, key and CA files again. New connections use them;
 * if they do not load, the ones in use stay and a warning says why. */
static void reload_tls(struct server *server) {
    if (!net_server_tls(server->net)) return;
    char error[512];
    if (net_server_reload_tls(server->net, error, sizeof(error)) != 0) {
        log_event(LOG_WARNING, "tls_reload_failed", "error=\"%s\" kept=\"the certificates in use\"",
                  error);
    } else {
        log_event(LOG_INFO, "tls_reloaded", "cert=%s",
                  options_text(&server->options, NET_OPTION(tls_cert)));
    }
}

void server_wait_for_stop(struct server *server) {
    sigset_t signals;
    stop_signals(&signals);
    for (;;) {
        int received = 0;
        if (sigwait(&signals, &received) != 0) continue;
        if (received == SIGHUP) {
            notify_service_manager("RELOADING=1");
            const char *path = options_text(&server->options, SERVER_OPTION(log_file));
            if (open_log_file(server) != 0) {
                log_event(LOG_ERROR, "log_reopen_failed", "path=%s error=\"%s\"", path,
                          strerror(errno));
            } else {
                log_event(LOG_INFO, "log_reopened", "path=%s", path);
            }
            if (options_text(&server->options, ACCESS_OPTION(users))[0] != '\0') {
                char error[512];
                if (access_reload(server->access, error, sizeof(error)) != 0)
                    log_event(LOG_ERROR, "users_reload_failed", "reason=\"%s\"", error);
            }
            reload_tls(server);
            notify_service_manager(store_recovering(server->store) ? "STATUS=reloaded"
                                                                   : "READY=1\nSTATUS=serving");
            continue;
        }
        log_event(LOG_INFO, "stopping", "reason=%s",
                  received == SIGUSR1  ? "shutdown_command"
                  : received == SIGINT ? "SIGINT"
                                       : "SIGTERM");
        notify_service_manager("STOPPING=1\nSTATUS=stopping");
        return;
    }
}

void server_stop(struct server *server) {
    int64_t drain_seconds = options_number(&server->options, SERVER_OPTION(drain_time));
    if (drain_seconds > 0) {
        /* Keep serving while /health says 503, so load balancers move away first. */
        stats_set_state(server->stats, SERVER_DRAINING);
        log_event(LOG_INFO, "draining", "seconds=%lld", (long long)drain_seconds);
        struct timespec pause = {.tv_sec = (time_t)drain_seconds};
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
        }
    }
    stats_set_state(server->stats, SERVER_STOPPING);
    housekeeping_stop(server);
    net_server_stop(server->net);
    net_server_destroy(server->net);
    server->net = NULL;
    stop_frontends(server);
    stats_destroy(server->stats);
    server->stats = NULL;
    close_objects(server);
    stores_destroy(server, true);
    access_destroy(server->access);
    server->access = NULL;
    log_event(LOG_INFO, "stop", NULL);
    metrics_teardown();
    options_free(&server->options);
    close(server->lock_fd);
    if (server->log_fd >= 0) close(server->log_fd);
}
