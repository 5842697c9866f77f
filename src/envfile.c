/* envfile.c - read and rewrite one key of an app's env file (.env).
 *
 * Syntax understood (dotenv / systemd EnvironmentFile / POSIX sh subset):
 *   # comment            blank lines            KEY=value
 *   export KEY=value     KEY='single quoted'    KEY="double \"quoted\""
 *   KEY=value # comment  spaces around '='      LF or CRLF line ends
 *
 * envfile_set rewrites only the value bytes of the key's line(s): the
 * indentation, `export `, spacing, a trailing comment and the line ending
 * stay as they were, and so does every other line.  The new value keeps the
 * line's quoting style; an unquoted value that needs quoting is written in
 * double quotes.  The file is replaced atomically; the previous content is
 * written to PATH.drd-prev first, so a crash leaves either the old file (and
 * maybe a fresh .drd-prev) or the new one with its .drd-prev.
 */
#include "drd/envfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drd/log.h"
#include "drd/util.h"

#define ENVFILE_MAX (1024 * 1024)

typedef enum { Q_NONE, Q_SINGLE, Q_DOUBLE } quote_style;

/* One line of the file; offsets are relative to the file's start. */
typedef struct {
    size_t start, end;          /* the line without its ending */
    size_t eol_len;             /* 0 (last line, no newline), 1 (LF) or 2 (CRLF) */
    bool assignment;
    size_t key_off, key_len;
    size_t val_off, val_len;    /* raw value, quotes included */
    quote_style quote;
} env_line;

/* A growing byte buffer. */
typedef struct {
    char *data;
    size_t len, cap;
    bool oom;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_adds(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* ---- parsing ---------------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_key_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_key_char(char c)
{
    return is_key_start(c) || (c >= '0' && c <= '9');
}

/* Fill in the assignment fields of l from text[l->start, l->end). */
static void parse_assignment(const char *text, env_line *l)
{
    size_t i = l->start, end = l->end;

    l->assignment = false;
    while (i < end && is_blank(text[i]))
        i++;
    if (i + 6 < end && memcmp(text + i, "export", 6) == 0 && is_blank(text[i + 6])) {
        i += 6;
        while (i < end && is_blank(text[i]))
            i++;
    }
    if (i >= end || !is_key_start(text[i]))
        return;                                 /* blank, comment, or junk */
    l->key_off = i;
    while (i < end && is_key_char(text[i]))
        i++;
    l->key_len = i - l->key_off;
    while (i < end && is_blank(text[i]))
        i++;
    if (i >= end || text[i] != '=')
        return;
    size_t eq = i++;
    while (i < end && is_blank(text[i]))
        i++;
    l->val_off = i;
    l->quote = Q_NONE;
    if (i < end && (text[i] == '\'' || text[i] == '"')) {
        char q = text[i];
        size_t j = i + 1;
        while (j < end && text[j] != q) {
            if (q == '"' && text[j] == '\\' && j + 1 < end)
                j++;
            j++;
        }
        if (j < end) {                          /* closed on this line */
            l->quote = q == '"' ? Q_DOUBLE : Q_SINGLE;
            l->val_len = j + 1 - i;
            l->assignment = true;
            return;
        }
        /* Unterminated (or a multi-line value): treat the rest as raw. */
    }
    /* Unquoted: up to a comment (`#` after a blank) or the end of the line,
     * without trailing blanks. */
    size_t j = i, last = i;
    while (j < end) {
        if (text[j] == '#' && is_blank(text[j - 1]))     /* j >= val_off > 0 */
            break;
        if (!is_blank(text[j]))
            last = j + 1;
        j++;
    }
    l->val_len = last - i;
    /* An empty value is placed right after '=': `KEY= # comment` must
     * become `KEY=value # comment`, not `KEY= value`, which a shell runs as
     * a command. */
    if (l->val_len == 0)
        l->val_off = eq + 1;
    l->assignment = true;
}

/* Split text into lines.  Returns a malloc'd array (NULL on OOM). */
static env_line *split_lines(const char *text, size_t len, size_t *nlines)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            n++;
    env_line *lines = calloc(n, sizeof(*lines));
    if (lines == NULL)
        return NULL;
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] != '\n')
            continue;
        if (i == len && start == len)
            break;                              /* nothing after the last newline */
        env_line *l = &lines[k++];
        l->start = start;
        l->end = i;
        l->eol_len = i < len ? 1 : 0;
        if (i < len && i > start && text[i - 1] == '\r') {
            l->end = i - 1;
            l->eol_len = 2;
        }
        parse_assignment(text, l);
        start = i + 1;
    }
    *nlines = k;
    return lines;
}

static bool line_has_key(const char *text, const env_line *l, const char *key)
{
    size_t klen = strlen(key);
    return l->assignment && l->key_len == klen && memcmp(text + l->key_off, key, klen) == 0;
}

/* The value of a raw (possibly quoted) value, unquoted, into b. */
static void unquote(const char *raw, size_t len, quote_style q, buf_t *b)
{
    if (q == Q_SINGLE) {
        buf_add(b, raw + 1, len - 2);
        return;
    }
    if (q == Q_NONE) {
        buf_add(b, raw, len);
        return;
    }
    for (size_t i = 1; i + 1 < len; i++) {
        char c = raw[i];
        if (c == '\\' && i + 2 < len) {
            char n = raw[i + 1];
            if (n == '\\' || n == '"' || n == '$' || n == '`') {
                buf_add(b, &n, 1);
                i++;
                continue;
            }
            if (n == 'n') {                     /* dotenv: \n in double quotes */
                buf_add(b, "\n", 1);
                i++;
                continue;
            }
        }
        buf_add(b, &c, 1);
    }
}

/* ---- encoding --------------------------------------------------------- */

/* Characters that make an unquoted value mean something else to dotenv or
 * to a shell sourcing the file (`set -a; . .env`): blanks, comments, quotes,
 * expansions, escapes, and the shell's operators.  `?`, `*`, `:`, `@`, `/`,
 * `=`, `%` and `&`-free URLs stay unquoted (no pathname expansion happens in
 * assignments), so postgresql://u:p@h:5432/db?sslmode=require is written as
 * is. */
static bool needs_quotes(const char *v)
{
    return strpbrk(v, " \t#'\"$`\\;&|<>()~") != NULL;
}

static void encode_double(const char *v, buf_t *b)
{
    buf_add(b, "\"", 1);
    for (const char *s = v; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"' || *s == '$' || *s == '`')
            buf_add(b, "\\", 1);
        buf_add(b, s, 1);
    }
    buf_add(b, "\"", 1);
}

/* The value as it is written in a line whose current style is q. */
static void encode_value(const char *v, quote_style q, buf_t *b)
{
    if (q == Q_SINGLE && strchr(v, '\'') == NULL) {
        buf_add(b, "'", 1);
        buf_adds(b, v);
        buf_add(b, "'", 1);
    } else if (q == Q_DOUBLE || q == Q_SINGLE || needs_quotes(v)) {
        encode_double(v, b);
    } else {
        buf_adds(b, v);
    }
}

/* ---- reading ---------------------------------------------------------- */

/* Read path (at most ENVFILE_MAX bytes) into a NUL-terminated buffer and
 * return its stat.  The file is opened once, so the stat and the content
 * belong to the same file. */
static char *load(const char *path, struct stat *st, size_t *len, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO must not stall drd's loop; anything but
     * a regular file is refused just below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    char *data = NULL;
    size_t n = 0;

    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    if (st->st_size > ENVFILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, ENVFILE_MAX);
        goto fail;
    }
    data = malloc(ENVFILE_MAX + 2);
    if (data == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, data + n, ENVFILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > ENVFILE_MAX) {
            snprintf(err, errlen, "%s: larger than %d bytes", path, ENVFILE_MAX);
            goto fail;
        }
    }
    close(fd);
    data[n] = '\0';
    *len = n;
    return data;
fail:
    free(data);
    close(fd);
    return NULL;
}

static bool key_valid(const char *key)
{
    if (key == NULL || !is_key_start(key[0]))
        return false;
    for (const char *s = key; *s != '\0'; s++)
        if (!is_key_char(*s))
            return false;
    return true;
}

bool envfile_get(const char *path, const char *key, char *out, size_t n,
                 char *err, size_t errlen)
{
    struct stat st;
    size_t len = 0, nlines = 0;
    env_line *lines = NULL;
    buf_t val = { 0 };
    bool found = false, ok = false;
    char *text;

    if (errlen > 0)
        err[0] = '\0';
    if (!key_valid(key)) {
        snprintf(err, errlen, "invalid key '%s'", key != NULL ? key : "");
        return false;
    }
    text = load(path, &st, &len, err, errlen);
    if (text == NULL)
        return false;
    lines = split_lines(text, len, &nlines);
    if (lines == NULL) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    /* The last assignment wins, as for dotenv, systemd and the shell. */
    for (size_t i = nlines; i-- > 0 && !found;) {
        if (line_has_key(text, &lines[i], key)) {
            unquote(text + lines[i].val_off, lines[i].val_len, lines[i].quote, &val);
            found = true;
        }
    }
    if (!found) {
        ok = false;                 /* absent: err stays "" */
        goto cleanup;
    }
    buf_add(&val, "", 0);           /* make sure data is allocated */
    if (val.oom) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    if (val.len >= n) {
        snprintf(err, errlen, "%s: value of %s is too long (%zu bytes)", path, key, val.len);
        goto cleanup;
    }
    memcpy(out, val.data, val.len + 1);
    ok = true;
cleanup:
    free(val.data);
    free(lines);
    free(text);
    return ok;
}

/* ---- writing ---------------------------------------------------------- */

/* The new content: every line with the key gets the new value, every other
 * byte is copied; the key is appended if absent. */
static bool build_content(const char *text, size_t len, const char *key, const char *value,
                          buf_t *out)
{
    size_t nlines = 0, crlf = 0, lf = 0;
    env_line *lines = split_lines(text, len, &nlines);
    bool found = false;
    size_t copied = 0;

    if (lines == NULL)
        return false;
    for (size_t i = 0; i < nlines; i++) {
        const env_line *l = &lines[i];
        if (l->eol_len == 2)
            crlf++;
        else if (l->eol_len == 1)
            lf++;
        /* Every occurrence is replaced, not only the last one that dotenv
         * and systemd's EnvironmentFile would use: a reader that takes the
         * first one must not keep seeing the old database. */
        if (!line_has_key(text, l, key))
            continue;
        found = true;
        buf_add(out, text + copied, l->val_off - copied);
        encode_value(value, l->quote, out);
        copied = l->val_off + l->val_len;
    }
    buf_add(out, text + copied, len - copied);
    if (!found) {
        const char *eol = crlf > lf ? "\r\n" : "\n";
        if (len > 0 && text[len - 1] != '\n')
            buf_adds(out, eol);
        buf_adds(out, key);
        buf_add(out, "=", 1);
        encode_value(value, Q_NONE, out);
        buf_adds(out, eol);
    }
    buf_add(out, "", 0);            /* allocated even when empty */
    free(lines);
    return !out->oom;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return ok;
}

bool envfile_set(const char *path, const char *key, const char *value, bool *changed,
                 char *err, size_t errlen)
{
    char real[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX], prev[PATH_MAX];
    char *text = NULL;
    buf_t out = { 0 };
    struct stat st;
    size_t len = 0;
    int fd = -1;
    bool ok = false, tmp_created = false;

    if (changed != NULL)
        *changed = false;
    if (errlen > 0)
        err[0] = '\0';
    if (!key_valid(key)) {
        snprintf(err, errlen, "invalid key '%s'", key != NULL ? key : "");
        return false;
    }
    if (value == NULL || strpbrk(value, "\r\n") != NULL) {
        snprintf(err, errlen, "the value for %s contains a line break", key);
        return false;
    }
    /* Work on the file a symlink points to: replacing the link itself by a
     * regular file would detach the app's configuration. */
    if (realpath(path, real) == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    text = load(real, &st, &len, err, errlen);
    if (text == NULL)
        goto cleanup;
    if (!build_content(text, len, key, value, &out)) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    if (out.len == len && memcmp(out.data, text, len) == 0) {
        log_debug("envfile: %s already has that %s", path, key);
        ok = true;                              /* idempotent: nothing to do */
        goto cleanup;
    }

    str_copy(dir, real, sizeof dir);
    str_copy(dir, dirname(dir), sizeof dir);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.drd-tmp.XXXXXX", real) >= sizeof tmp ||
        (size_t)snprintf(prev, sizeof prev, "%s.drd-prev", real) >= sizeof prev) {
        snprintf(err, errlen, "%s: path too long", path);
        goto cleanup;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file in %s: %s", dir, strerror(errno));
        goto cleanup;
    }
    tmp_created = true;
    if (!write_all(fd, out.data, out.len)) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    /* Same owner and group as the original (the app must still read it);
     * chown first, since it may clear mode bits. */
    if ((st.st_uid != geteuid() || st.st_gid != getegid()) &&
        fchown(fd, st.st_uid, st.st_gid) != 0) {
        if (errno == EPERM && st.st_uid == geteuid()) {
            log_warn("envfile: cannot keep group %d of %s: %s", (int)st.st_gid, path,
                     strerror(errno));
        } else {
            snprintf(err, errlen, "cannot give the new %s owner %d:%d: %s", path,
                     (int)st.st_uid, (int)st.st_gid, strerror(errno));
            goto cleanup;
        }
    }
    if (fchmod(fd, st.st_mode & 07777) != 0) {
        snprintf(err, errlen, "cannot set the mode of %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (fsync(fd) != 0) {
        snprintf(err, errlen, "cannot fsync %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    fd = -1;
    /* The previous content first: once the rename is done, .drd-prev must
     * already hold what it replaced. */
    char perr[512];
    if (!write_file_atomic(prev, text, len, st.st_mode & 0777, perr, sizeof perr)) {
        snprintf(err, errlen, "cannot keep the previous %s: %s", path, perr);
        goto cleanup;
    }
    if (rename(tmp, real) != 0) {
        snprintf(err, errlen, "cannot replace %s: %s", path, strerror(errno));
        goto cleanup;
    }
    tmp_created = false;
    if (changed != NULL)
        *changed = true;
    if (!fsync_dir(dir)) {
        /* Replaced but maybe not durable: report it, the caller retries. */
        snprintf(err, errlen, "%s replaced, but fsync of %s failed: %s", path, dir,
                 strerror(errno));
        goto cleanup;
    }
    log_info("envfile: %s: %s updated (previous file kept as %s)", path, key, prev);
    ok = true;
cleanup:
    if (fd >= 0)
        close(fd);
    if (tmp_created)
        unlink(tmp);
    free(out.data);
    free(text);
    return ok;
}
