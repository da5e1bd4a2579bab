/* The peer for bench/http_server_choice.sh: libmicrohttpd serving the same two
 * responses strata's HTTP server is measured on, so the two can be compared in one
 * run. GET /health answers a 12-byte text; GET /big answers SIZE bytes from memory
 * (MHD_RESPMEM_PERSISTENT: sent from the buffer, no copy), like /keys/ in strata.
 *
 * Usage: http_microhttpd PORT SIZE_BYTES THREADS   (runs until killed) */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char *big_body;
static size_t big_size;

/* Answers one request: /health or /big, 404 otherwise. */
static enum MHD_Result answer(void *context, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **request_state) {
    (void)context;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)request_state;
    if (strcmp(method, "GET") != 0) return MHD_NO;
    struct MHD_Response *response;
    unsigned int status = MHD_HTTP_OK;
    if (strcmp(url, "/big") == 0) {
        response = MHD_create_response_from_buffer(big_size, big_body, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(response, "Content-Type", "application/octet-stream");
    } else if (strcmp(url, "/health") == 0) {
        response =
            MHD_create_response_from_buffer(12, (void *)"ok: serving\n", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(response, "Content-Type", "text/plain; charset=utf-8");
    } else {
        response = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    }
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT SIZE_BYTES THREADS\n", argv[0]);
        return 2;
    }
    big_size = (size_t)strtoull(argv[2], NULL, 10);
    big_body = malloc(big_size ? big_size : 1);
    if (big_body == NULL) return 1;
    for (size_t i = 0; i < big_size; i++)
        big_body[i] = (unsigned char)(i * 131);
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)atoi(argv[1]), NULL, NULL,
        answer, NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)atoi(argv[3]),
        MHD_OPTION_CONNECTION_LIMIT, 10000u, MHD_OPTION_END);
    if (daemon == NULL) {
        fprintf(stderr, "cannot start libmicrohttpd on port %s\n", argv[1]);
        return 1;
    }
    printf("listening port=%s\n", argv[1]);
    fflush(stdout);
    pause();
    MHD_stop_daemon(daemon);
    free(big_body);
    return 0;
}
