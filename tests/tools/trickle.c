/* trickle.c - slow HTTP clients for the slow-client test: N connections
 * that each send a request line and then one more header line every
 * INTERVAL ms, never finishing the request. Waits for the server to close
 * every one of them and reports how long each lived.
 *
 * usage: trickle [-n N] [-i INTERVAL_MS] [-t LIMIT_MS] [-s SRC_IPV4 [-k PER_SRC]]
 *                HOST PORT
 *   -n N          connections (default 60)
 *   -i MS         time between two header lines of a connection (default 2000)
 *   -t MS         give up this long after the start (default 15000)
 *   -s IPV4       bind the connections to this source address, the next
 *                 PER_SRC ones to the next address (127.0.0.2, 127.0.0.3, ...)
 *   -k PER_SRC    connections per source address (default: all on one)
 *
 * Prints "connected N" once every connection is open, then one line
 * "closed C/N min_ms A max_ms B" (lifetimes from connect to the server's
 * close). Exit 0 when the server closed all N within LIMIT_MS, 1 if not,
 * 2 on a usage or connect error. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024

typedef struct {
    int fd;
    int64_t opened, next_line, closed;   /* mono ms; closed 0 = still open */
    int lines;
} client;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool parse_num(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int open_conn(const struct sockaddr_in *dst, const struct in_addr *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (src != NULL) {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr = *src;
        if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;

    while (off < n) {
        ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        off += (size_t)w;
    }
    return true;
}

int main(int argc, char **argv)
{
    static client cs[MAX_CONNS];
    static struct pollfd pfd[MAX_CONNS];
    static size_t idx[MAX_CONNS];
    long n = 60, interval = 2000, limit = 15000, per_src = 0;
    const char *src_s = NULL;
    struct sockaddr_in dst;
    struct in_addr src;
    int64_t start, min_life = -1, max_life = -1;
    long closed = 0, port;
    int opt;

    while ((opt = getopt(argc, argv, "n:i:t:s:k:")) != -1) {
        bool good = true;
        switch (opt) {
        case 'n': good = parse_num(optarg, 1, MAX_CONNS, &n); break;
        case 'i': good = parse_num(optarg, 1, 3600000, &interval); break;
        case 't': good = parse_num(optarg, 1, 3600000, &limit); break;
        case 'k': good = parse_num(optarg, 1, MAX_CONNS, &per_src); break;
        case 's': src_s = optarg; break;
        default: good = false; break;
        }
        if (!good) {
            fprintf(stderr, "trickle: bad option -%c\n", opt);
            return 2;
        }
    }
    memset(&dst, 0, sizeof(dst));
    dst.sin_family = AF_INET;
    if (argc - optind != 2 || inet_pton(AF_INET, argv[optind], &dst.sin_addr) != 1 ||
        !parse_num(argv[optind + 1], 1, 65535, &port) ||
        (src_s != NULL && inet_pton(AF_INET, src_s, &src) != 1)) {
        fprintf(stderr, "usage: trickle [-n N] [-i MS] [-t MS] [-s SRC_IPV4 [-k PER_SRC]] "
                        "HOST_IPV4 PORT\n");
        return 2;
    }
    dst.sin_port = htons((uint16_t)port);

    start = now_ms();
    for (long i = 0; i < n; i++) {
        struct in_addr a;
        char req[128];

        if (src_s != NULL) {
            a.s_addr = htonl(ntohl(src.s_addr) + (uint32_t)(per_src > 0 ? i / per_src : 0));
        }
        cs[i].fd = open_conn(&dst, src_s != NULL ? &a : NULL);
        if (cs[i].fd < 0) {
            fprintf(stderr, "trickle: connection %ld: %s\n", i, strerror(errno));
            return 2;
        }
        cs[i].opened = now_ms();
        cs[i].next_line = cs[i].opened + interval;
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s:%ld\r\n", argv[optind], port);
        if (!send_all(cs[i].fd, req))
            cs[i].closed = now_ms();
    }
    printf("connected %ld\n", n);
    fflush(stdout);

    for (;;) {
        int64_t now = now_ms(), wake = start + limit;
        nfds_t np = 0;
        int timeout;

        closed = 0;
        for (long i = 0; i < n; i++) {
            if (cs[i].closed != 0) {
                closed++;
                continue;
            }
            if (now >= cs[i].next_line) {
                char line[64];
                snprintf(line, sizeof(line), "X-Trickle-%d: %ld\r\n", cs[i].lines++, i);
                if (!send_all(cs[i].fd, line)) {
                    cs[i].closed = now;
                    closed++;
                    continue;
                }
                cs[i].next_line = now + interval;
            }
            if (cs[i].next_line < wake)
                wake = cs[i].next_line;
            pfd[np].fd = cs[i].fd;
            pfd[np].events = POLLIN | POLLRDHUP;
            pfd[np].revents = 0;
            idx[np++] = (size_t)i;
        }
        if (closed == n || now >= start + limit)
            break;
        timeout = (int)(wake > now ? wake - now : 0);
        if (poll(pfd, np, timeout) < 0 && errno != EINTR) {
            perror("trickle: poll");
            return 2;
        }
        now = now_ms();
        for (nfds_t k = 0; k < np; k++) {
            client *c = &cs[idx[k]];
            char buf[512];
            ssize_t r;

            if (pfd[k].revents == 0)
                continue;
            r = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) ||
                (pfd[k].revents & (POLLHUP | POLLERR | POLLRDHUP)) != 0)
                c->closed = now;
        }
    }

    for (long i = 0; i < n; i++) {
        if (cs[i].closed != 0) {
            int64_t life = cs[i].closed - cs[i].opened;
            if (min_life < 0 || life < min_life)
                min_life = life;
            if (life > max_life)
                max_life = life;
        }
        close(cs[i].fd);
    }
    printf("closed %ld/%ld min_ms %lld max_ms %lld\n", closed, n, (long long)min_life,
           (long long)max_life);
    return closed == n ? 0 : 1;
}
