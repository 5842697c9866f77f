/* notify_recv - a stand-in for systemd's notification socket, for tests.
 *
 *   notify_recv SOCKET TIMEOUT_MS [CHECK_SOCKET]
 *
 * Binds a unix datagram socket at SOCKET and prints every datagram it
 * receives, one line per datagram line, prefixed with "notify: ". Exits 0
 * right after a datagram that contains the line READY=1, 1 on timeout or
 * error. With CHECK_SOCKET, at the moment READY=1 arrives it also tries to
 * connect() to that unix stream socket (the daemon's API) and prints
 * "check: connected" or "check: failed: <error>" - the daemon must only
 * report ready once its API listens. SOCKET is removed on exit. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool unix_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof sa->sun_path) {
        fprintf(stderr, "notify_recv: bad socket path '%s'\n", path);
        return false;
    }
    memcpy(sa->sun_path, path, len + 1);
    return true;
}

static void check_connect(const char *path)
{
    struct sockaddr_un sa;
    if (!unix_addr(path, &sa))
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        printf("check: failed: socket: %s\n", strerror(errno));
        return;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        printf("check: connected\n");
    else
        printf("check: failed: %s\n", strerror(errno));
    close(fd);
}

/* Print each line of the datagram; true if one of them is READY=1. */
static bool print_datagram(const char *buf, size_t n)
{
    bool ready = false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || buf[i] == '\n') {
            size_t len = i - start;
            if (len > 0) {
                printf("notify: %.*s\n", (int)len, buf + start);
                if (len == 7 && memcmp(buf + start, "READY=1", 7) == 0)
                    ready = true;
            }
            start = i + 1;
        }
    }
    return ready;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: notify_recv SOCKET TIMEOUT_MS [CHECK_SOCKET]\n");
        return 2;
    }
    const char *path = argv[1];
    char *end = NULL;
    errno = 0;
    long timeout = strtol(argv[2], &end, 10);
    if (errno != 0 || end == argv[2] || *end != '\0' || timeout <= 0) {
        fprintf(stderr, "notify_recv: bad timeout '%s'\n", argv[2]);
        return 2;
    }
    const char *check = argc == 4 ? argv[3] : NULL;

    struct sockaddr_un sa;
    if (!unix_addr(path, &sa))
        return 2;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "notify_recv: socket: %s\n", strerror(errno));
        return 1;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "notify_recv: bind %s: %s\n", path, strerror(errno));
        close(fd);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    int rc = 1;
    int64_t deadline = mono_ms() + timeout;
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            printf("timeout: no READY=1 within %ld ms\n", timeout);
            break;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "notify_recv: poll: %s\n", strerror(errno));
            break;
        }
        if (r == 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            fprintf(stderr, "notify_recv: recv: %s\n", strerror(errno));
            break;
        }
        if (print_datagram(buf, (size_t)n)) {
            if (check)
                check_connect(check);
            rc = 0;
            break;
        }
    }
    close(fd);
    unlink(path);
    return rc;
}
