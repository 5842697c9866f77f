/* webhook_recv - a webhook receiver for tests.
 *
 *   webhook_recv PORT FILE [FAIL_FIRST]
 *
 * Listens on 127.0.0.1:PORT (SO_REUSEADDR, so it can be restarted on the
 * same port at once) and handles one HTTP/1.1 request per connection, one
 * connection at a time: it appends the request body to FILE as one line
 * (CR and LF in the body become spaces) and answers 200 - or 500 to the
 * first FAIL_FIRST requests (those bodies are appended too, to FILE.failed
 * instead of FILE). Prints "listening on 127.0.0.1:PORT" once it accepts
 * connections. Runs until killed. Exit status 1 on a setup error, 2 on
 * bad usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQ_MAX (256 * 1024)

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* recv with a 5 s deadline per call; <= 0 on EOF, error or timeout. */
static ssize_t recv_some(int fd, char *buf, size_t n)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int r;
    while ((r = poll(&pfd, 1, 5000)) < 0 && errno == EINTR)
        ;
    if (r <= 0)
        return -1;
    ssize_t got;
    while ((got = recv(fd, buf, n, 0)) < 0 && errno == EINTR)
        ;
    return got;
}

/* Content-Length from the header block (NUL-terminated), 0 if absent. */
static size_t content_length(const char *hdrs)
{
    for (const char *line = strstr(hdrs, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, "Content-Length:", 15) == 0) {
            long v;
            char num[32];
            const char *p = h + 15;
            while (*p == ' ')
                p++;
            size_t l = strcspn(p, "\r\n");
            if (l >= sizeof num)
                return 0;
            memcpy(num, p, l);
            num[l] = '\0';
            return parse_long(num, 0, REQ_MAX, &v) ? (size_t)v : 0;
        }
    }
    return 0;
}

static void append_line(const char *path, const char *body, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "webhook_recv: %s: %s\n", path, strerror(errno));
        return;
    }
    char *line = malloc(len + 1);
    if (line != NULL) {
        for (size_t i = 0; i < len; i++)
            line[i] = body[i] == '\n' || body[i] == '\r' ? ' ' : body[i];
        line[len] = '\n';
        /* one write(2) with O_APPEND: a reader never sees half a line */
        if (write(fd, line, len + 1) != (ssize_t)(len + 1))
            fprintf(stderr, "webhook_recv: write %s: %s\n", path, strerror(errno));
        free(line);
    }
    close(fd);
}

static void handle(int fd, const char *file, const char *failed_file, long *fail_left)
{
    char *buf = malloc(REQ_MAX + 1);
    size_t len = 0;
    char *end = NULL;
    if (buf == NULL)
        return;
    while (end == NULL && len < REQ_MAX) {
        ssize_t r = recv_some(fd, buf + len, REQ_MAX - len);
        if (r <= 0)
            goto out;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL)
        goto out;
    end[2] = '\0';
    char *body = end + 4;
    size_t hlen = (size_t)(body - buf);
    size_t want = content_length(buf);
    if (want > REQ_MAX - hlen)
        goto out;
    while (len - hlen < want) {
        ssize_t r = recv_some(fd, buf + len, REQ_MAX - len);
        if (r <= 0)
            goto out;
        len += (size_t)r;
    }
    const char *reply;
    if (*fail_left > 0) {
        (*fail_left)--;
        append_line(failed_file, body, want);
        reply = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                "Content-Length: 4\r\nConnection: close\r\n\r\nfail";
    } else {
        append_line(file, body, want);
        reply = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                "Content-Length: 2\r\nConnection: close\r\n\r\nok";
    }
    send_all(fd, reply, strlen(reply));
out:
    free(buf);
}

int main(int argc, char **argv)
{
    long port, fail_left = 0;
    if (argc < 3 || argc > 4 || !parse_long(argv[1], 1, 65535, &port)
        || (argc == 4 && !parse_long(argv[3], 0, 1000000, &fail_left))) {
        fprintf(stderr, "usage: webhook_recv PORT FILE [FAIL_FIRST]\n");
        return 2;
    }
    const char *file = argv[2];
    size_t fl = strlen(file) + sizeof ".failed";
    char *failed_file = malloc(fl);
    if (failed_file == NULL)
        return 1;
    snprintf(failed_file, fl, "%s.failed", file);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0) {
        fprintf(stderr, "webhook_recv: 127.0.0.1:%ld: %s\n", port, strerror(errno));
        free(failed_file);
        return 1;
    }
    printf("listening on 127.0.0.1:%ld\n", port);
    fflush(stdout);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "webhook_recv: accept: %s\n", strerror(errno));
            break;
        }
        handle(fd, file, failed_file, &fail_left);
        close(fd);
    }
    close(lfd);
    free(failed_file);
    return 1;
}
