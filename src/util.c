/* util.c - small shared helpers. */
#include "drd/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool parse_duration_ms(const char *s, int64_t *out)
{
    static const struct { const char *unit; int64_t ms; } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
    };
    int64_t total = 0;
    bool any = false;

    if (s == NULL)
        return false;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return false;
    while (*s != '\0' && !isspace((unsigned char)*s)) {
        if (!isdigit((unsigned char)*s))
            return false;
        errno = 0;
        char *end;
        long long n = strtoll(s, &end, 10);
        if (errno != 0 || n < 0)
            return false;
        s = end;
        size_t ulen = 0;
        while (isalpha((unsigned char)s[ulen]))
            ulen++;
        int64_t mult = 0;
        if (ulen == 0) {
            if (any)             /* "1h30" is ambiguous */
                return false;
            mult = 1000;         /* a bare number is seconds */
        } else {
            for (size_t i = 0; i < ARRAY_LEN(units); i++)
                if (strlen(units[i].unit) == ulen && strncmp(s, units[i].unit, ulen) == 0)
                    mult = units[i].ms;
            if (mult == 0)
                return false;
        }
        if (n > (INT64_MAX - total) / mult)
            return false;
        total += n * mult;
        s += ulen;
        any = true;
        if (ulen == 0)
            break;
    }
    while (isspace((unsigned char)*s))
        s++;
    if (*s != '\0')
        return false;
    *out = total;
    return true;
}

void format_duration(int64_t ms, char *buf, size_t n)
{
    if (ms < 1000)
        snprintf(buf, n, "%lldms", (long long)ms);
    else if (ms < 60000)
        snprintf(buf, n, "%lld.%llds", (long long)(ms / 1000), (long long)(ms % 1000 / 100));
    else if (ms < 3600000)
        snprintf(buf, n, "%lldm%llds", (long long)(ms / 60000), (long long)(ms % 60000 / 1000));
    else
        snprintf(buf, n, "%lldh%lldm", (long long)(ms / 3600000), (long long)(ms % 3600000 / 60000));
}

size_t str_copy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);
    if (n > 0) {
        size_t k = len < n - 1 ? len : n - 1;
        memcpy(dst, src, k);
        dst[k] = '\0';
    }
    return len;
}

bool str_append(char *dst, size_t n, const char *src)
{
    size_t have = strnlen(dst, n);
    if (have >= n)
        return false;
    return str_copy(dst + have, src, n - have) < n - have;
}

bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

char *str_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

bool str_ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    /* Always walk the full length of b so timing depends only on the input. */
    for (size_t i = 0; i < lb; i++)
        diff |= (unsigned char)(((i < la) ? (unsigned char)a[i] : 0) ^ (unsigned char)b[i]);
    return diff == 0;
}

/* Out-buffer writer that never overflows. */
typedef struct { char *p; size_t n, len; } outbuf;

static void out_put(outbuf *o, const char *s, size_t k)
{
    for (size_t i = 0; i < k && o->len + 1 < o->n; i++)
        o->p[o->len++] = s[i];
    o->p[o->len] = '\0';
}

static bool is_key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Length of a secret value that starts at s: until whitespace, '&', or
 * (for quoted conninfo values) the closing quote. */
static size_t secret_len(const char *s, bool *quoted)
{
    size_t i = 0;
    *quoted = (*s == '\'');
    if (*quoted) {
        for (i = 1; s[i] != '\0'; i++) {
            if (s[i] == '\\' && s[i + 1] != '\0')
                i++;
            else if (s[i] == '\'')
                return i + 1;
        }
        return i;
    }
    while (s[i] != '\0' && !isspace((unsigned char)s[i]) && s[i] != '&' && s[i] != '"' && s[i] != ',')
        i++;
    return i;
}

char *mask_secrets(const char *in, char *out, size_t n)
{
    outbuf o = { out, n, 0 };
    if (n == 0)
        return out;
    out[0] = '\0';
    if (in == NULL)
        return out;

    const char *s = in;
    while (*s != '\0') {
        /* scheme://user:password@host  ->  scheme://user:****@host */
        if (s[0] == ':' && s[1] == '/' && s[2] == '/') {
            const char *auth = s + 3;
            size_t alen = strcspn(auth, "/?#@ \t\r\n\"'");
            if (auth[alen] == '@') {
                const char *colon = memchr(auth, ':', alen);
                if (colon != NULL) {
                    out_put(&o, s, (size_t)(colon + 1 - s));
                    out_put(&o, "****", 4);
                    s = auth + alen;      /* continue at '@' */
                    continue;
                }
            }
        }
        /* password=..., passwd=..., token=..., secret=... (conninfo, query) */
        static const char *const keys[] = { "password", "passwd", "token", "secret", "apikey", "api_key" };
        bool matched = false;
        if (s == in || !is_key_char(s[-1])) {
            for (size_t k = 0; k < ARRAY_LEN(keys) && !matched; k++) {
                size_t kl = strlen(keys[k]);
                if (strncasecmp(s, keys[k], kl) != 0)
                    continue;
                const char *v = s + kl;
                while (*v == ' ')
                    v++;
                if (*v != '=' && *v != ':')
                    continue;
                v++;
                while (*v == ' ')
                    v++;
                bool quoted;
                size_t vl = secret_len(v, &quoted);
                if (vl == 0)
                    continue;
                out_put(&o, s, (size_t)(v - s));
                out_put(&o, "****", 4);
                s = v + vl;
                matched = true;
            }
            /* Authorization: Bearer TOKEN */
            if (!matched && strncasecmp(s, "bearer ", 7) == 0) {
                const char *v = s + 7;
                bool quoted;
                size_t vl = secret_len(v, &quoted);
                if (vl > 0) {
                    out_put(&o, s, 7);
                    out_put(&o, "****", 4);
                    s = v + vl;
                    matched = true;
                }
            }
        }
        if (!matched) {
            out_put(&o, s, 1);
            s++;
        }
    }
    return out;
}

static bool fsync_dir_of(const char *path)
{
    char tmp[PATH_MAX];
    str_copy(tmp, path, sizeof tmp);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

bool write_file_atomic(const char *path, const void *data, size_t len,
                       mode_t mode, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    int fd = -1;
    bool ok = false;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.drd-tmp.XXXXXX", path) >= sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", path);
        return false;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create temporary file next to %s: %s", path, strerror(errno));
        return false;
    }
    if (fchmod(fd, mode) != 0) {
        snprintf(err, errlen, "chmod %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            snprintf(err, errlen, "write %s: %s", tmp, strerror(errno));
            goto cleanup;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        snprintf(err, errlen, "fsync %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "close %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "rename %s -> %s: %s", tmp, path, strerror(errno));
        goto cleanup;
    }
    if (!fsync_dir_of(path)) {
        snprintf(err, errlen, "fsync directory of %s: %s", path, strerror(errno));
        return false;   /* the rename happened; the caller must know it may not be durable */
    }
    ok = true;
cleanup:
    if (fd >= 0)
        close(fd);
    if (!ok)
        unlink(tmp);
    return ok;
}

bool mkdir_parents(const char *path, mode_t mode, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    if (str_copy(dir, path, sizeof dir) >= sizeof dir) {
        snprintf(err, errlen, "path too long: %s", path);
        return false;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return true;                       /* in the cwd or in / */
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(dir, mode) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
            return false;
        }
        *p = c;
        if (c == '\0')
            return true;
    }
}

char *read_file(const char *path, size_t max, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        goto fail;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max + 1) {
                errno = EFBIG;
                goto fail;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                goto fail;
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max) {
            errno = EFBIG;
            goto fail;
        }
    }
    close(fd);
    buf[len] = '\0';
    if (len_out != NULL)
        *len_out = len;
    return buf;
fail:;
    int saved = errno;
    free(buf);
    close(fd);
    errno = saved;
    return NULL;
}

bool sd_notify_send(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || *path == '\0')
        return true;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t plen = strlen(path);
    if (plen >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@'))
        return false;
    memcpy(sa.sun_path, path, plen);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';           /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    ssize_t w = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    close(fd);
    return w == (ssize_t)strlen(msg);
}
