/* sd_notify over a datagram socket (src/server/notify.h). */
#include "server/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_service_manager(const char *message) {
    const char *name = getenv("NOTIFY_SOCKET");
    if (name == NULL || name[0] == '\0') return 0;
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    size_t length = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || length < 2 || length >= sizeof(address.sun_path)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(address.sun_path, name, length);
    if (name[0] == '@') address.sun_path[0] = '\0'; /* abstract: no terminating NUL counted */
    socklen_t address_length =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length + (name[0] == '/' ? 1 : 0));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t sent = sendto(fd, message, strlen(message), MSG_NOSIGNAL,
                          (const struct sockaddr *)&address, address_length);
    int saved = errno;
    close(fd);
    errno = saved;
    return sent == (ssize_t)strlen(message) ? 0 : -1;
}
