/* util.c - small shared helpers. */
#include "drd/core/util.h"

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
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

bool parse_bytes(const char *s, int64_t *out)
{
    static const struct { const char *unit; double mult; } units[] = {
        { "", 1 }, { "b", 1 }, { "k", 1e3 }, { "kb", 1e3 }, { "m", 1e6 }, { "mb", 1e6 },
        { "g", 1e9 }, { "gb", 1e9 }, { "t", 1e12 }, { "tb", 1e12 },
        { "kib", 1024.0 }, { "mib", 1048576.0 }, { "gib", 1073741824.0 }, { "tib", 1099511627776.0 },
    };
    if (s == NULL)
        return false;
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno != 0 || v < 0)
        return false;
    while (isspace((unsigned char)*end))
        end++;
    char unit[8];
    size_t ulen = 0;
    while (end[ulen] != '\0' && !isspace((unsigned char)end[ulen]) && ulen < sizeof unit - 1) {
        unit[ulen] = (char)tolower((unsigned char)end[ulen]);
        ulen++;
    }
    unit[ulen] = '\0';
    const char *rest = end + ulen;
    while (isspace((unsigned char)*rest))
        rest++;
    if (*rest != '\0')
        return false;
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (strcmp(unit, units[i].unit) != 0)
            continue;
        double b = v * units[i].mult;
        if (b >= 9.2e18)
            return false;
        *out = (int64_t)(b + 0.5);
        return true;
    }
    return false;
}

void format_bytes(int64_t bytes, char *buf, size_t n)
{
    double b = (double)bytes;
    if (bytes < 1000)
        snprintf(buf, n, "%lld B", (long long)bytes);
    else if (b < 1e6)
        snprintf(buf, n, "%.1f kB", b / 1e3);
    else if (b < 1e9)
        snprintf(buf, n, "%.1f MB", b / 1e6);
    else
        snprintf(buf, n, "%.2f GB", b / 1e9);
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

/* Length of the valid UTF-8 sequence at p (avail bytes there), 0 when it
 * is invalid or runs past avail. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;          /* range of the 2nd byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;                            /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F;                            /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;                            /* <= U+10FFFF */
    } else
        return 0;
    if (avail < len)
        return 0;
    for (size_t i = 1; i < len; i++)
        if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xBF))
            return 0;
    return len;
}

/* Bytes a lead byte announces (1 for ASCII and for anything that is not a
 * lead byte: such a byte is cut like a character of its own). */
static size_t utf8_lead_len(unsigned char c)
{
    return c >= 0xF0 && c <= 0xF7 ? 4 : c >= 0xE0 ? (c <= 0xEF ? 3 : 1) : c >= 0xC0 ? 2 : 1;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

size_t utf8_cut(const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len <= max)
        return len;
    /* s[max] is the first byte dropped: if it continues a character, back
     * up to that character's lead byte (at most 3 bytes). */
    size_t k = max;
    for (int back = 0; back < 3 && k > 0 && (p[k] & 0xC0) == 0x80; back++)
        k--;
    if ((p[k] & 0xC0) == 0x80)
        return max;                               /* not UTF-8 here: a plain byte cut */
    if (k < max && k + utf8_lead_len(p[k]) <= max)
        return max;                               /* stray continuation bytes, no character split */
    return k;
}

size_t utf8_tail(const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len <= max)
        return 0;
    size_t k = len - max;
    for (int fwd = 0; fwd < 3 && k < len && (p[k] & 0xC0) == 0x80; fwd++)
        k++;                                      /* skip the rest of a cut character */
    return k;
}

size_t str_trunc(char *dst, size_t n, const char *src, const char *marker)
{
    size_t len = strlen(src);
    if (n == 0)
        return len;
    if (len < n) {
        memcpy(dst, src, len + 1);
        return len;
    }
    size_t ml = marker != NULL ? strlen(marker) : 0;
    if (ml >= n)
        ml = 0;                                   /* no room for it: a plain cut */
    size_t k = utf8_cut(src, len, n - 1 - ml);
    memcpy(dst, src, k);
    memcpy(dst + k, marker != NULL ? marker : "", ml);
    dst[k + ml] = '\0';
    return len;
}

size_t str_copy(char *dst, const char *src, size_t n)
{
    return str_trunc(dst, n, src, NULL);
}

char *utf8_dup_valid(const char *s, size_t len)
{
    static const char repl[] = "\xEF\xBF\xBD";     /* U+FFFD */
    const unsigned char *p = (const unsigned char *)s;
    size_t bad = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k == 0) {
            bad++;
            k = 1;
        }
        i += k;
    }
    char *out = malloc(len + 2 * bad + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k > 0) {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
            continue;
        }
        /* A lead byte whose character was cut by the end of the text:
         * drop the remains (a truncation, not garbage). */
        size_t want = utf8_lead_len(p[i]);
        if (want > 1 && i + want > len) {
            size_t j = i + 1;
            while (j < len && (p[j] & 0xC0) == 0x80)
                j++;
            if (j == len)
                break;
        }
        memcpy(out + o, repl, 3);
        o += 3;
        i++;
    }
    out[o] = '\0';
    return out;
}

void utf8_fix(char *s, size_t n)
{
    if (n == 0)
        return;
    size_t len = strnlen(s, n - 1);
    s[len] = '\0';
    if (utf8_valid(s, len))
        return;
    char *v = utf8_dup_valid(s, len);
    if (v != NULL) {
        str_copy(s, v, n);
        free(v);
        return;
    }
    unsigned char *p = (unsigned char *)s;       /* out of memory: '?' for each bad byte */
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k == 0) {
            p[i] = '?';
            k = 1;
        }
        i += k;
    }
}

json_t *json_text(const char *s)
{
    if (s == NULL)
        return json_null();
    size_t len = strlen(s);
    if (utf8_valid(s, len))
        return json_stringn(s, len);
    char *v = utf8_dup_valid(s, len);
    json_t *j = v != NULL ? json_string(v) : NULL;
    free(v);
    return j;
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

bool table_excluded(const char *list, const char *schema, const char *name)
{
    char full[600], pat[600];
    if (list == NULL || list[0] == '\0')
        return false;
    snprintf(full, sizeof full, "%s.%s", schema, name);
    for (const char *p = list; *p != '\0';) {
        size_t len = strcspn(p, ",");
        size_t l = len < sizeof pat - 1 ? len : sizeof pat - 1;
        memcpy(pat, p, l);
        pat[l] = '\0';
        const char *t = str_trim(pat);
        if (*t != '\0' && fnmatch(t, full, 0) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

void str_free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}
