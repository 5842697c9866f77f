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
 *
 * Where a write lands.  drd runs as root and the env file is the app's:
 * whoever can change where the configured path leads (replace a directory
 * or plant a link on the way) chooses which file drd rewrites - a link
 * .env -> /etc/shadow planted in the app's own directory would have drd
 * append a password to a root-owned file.  So the path is resolved one
 * component at a time (openat with O_NOFOLLOW from "/", links read and
 * followed by hand, at most 40) and the write is allowed only if
 *   - no directory drd looks a name up in is writable by its group or by
 *     others without the sticky bit (anyone there could plant a link), and
 *   - everyone who can change where the path leads - the owner of each of
 *     those directories, and in a sticky directory the owner of the entry -
 *     is root, drd's own user or the owner of the file finally reached.
 * A deploy tool's current/.env -> ../shared/.env, all the app's, passes; a
 * link planted by the app's user towards a file it does not own does not,
 * and neither does root's file in the app's directory (the app could swap
 * it for a link).  The write then goes through the directory found by the
 * walk (an open descriptor, not the path again): the file is opened with
 * O_NOFOLLOW and must be the one checked, the temporary file is created
 * with O_EXCL|O_NOFOLLOW, and both renames happen in that directory.  A
 * refusal writes nothing anywhere.
 */
#include "drd/conf/envfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drd/core/atomic_file.h"
#include "drd/core/log.h"
#include "drd/core/strbuf.h"
#include "drd/core/util.h"

#define ENVFILE_MAX (1024 * 1024)
#define MAX_LINKS 40            /* as the kernel's ELOOP limit */
#define MAX_OWNERS 8

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
static void unquote(const char *raw, size_t len, quote_style q, strbuf *b)
{
    if (q == Q_SINGLE) {
        sb_addn(b, raw + 1, len - 2);
        return;
    }
    if (q == Q_NONE) {
        sb_addn(b, raw, len);
        return;
    }
    for (size_t i = 1; i + 1 < len; i++) {
        char c = raw[i];
        if (c == '\\' && i + 2 < len) {
            char n = raw[i + 1];
            if (n == '\\' || n == '"' || n == '$' || n == '`') {
                sb_addn(b, &n, 1);
                i++;
                continue;
            }
            if (n == 'n') {                     /* dotenv: \n in double quotes */
                sb_addn(b, "\n", 1);
                i++;
                continue;
            }
        }
        sb_addn(b, &c, 1);
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

static void encode_double(const char *v, strbuf *b)
{
    sb_addn(b, "\"", 1);
    for (const char *s = v; *s != '\0'; s++) {
        if (*s == '\\' || *s == '"' || *s == '$' || *s == '`')
            sb_addn(b, "\\", 1);
        sb_addn(b, s, 1);
    }
    sb_addn(b, "\"", 1);
}

/* The value as it is written in a line whose current style is q. */
static void encode_value(const char *v, quote_style q, strbuf *b)
{
    if (q == Q_SINGLE && strchr(v, '\'') == NULL) {
        sb_addn(b, "'", 1);
        sb_add(b, v);
        sb_addn(b, "'", 1);
    } else if (q == Q_DOUBLE || q == Q_SINGLE || needs_quotes(v)) {
        encode_double(v, b);
    } else {
        sb_add(b, v);
    }
}

/* ---- reading ---------------------------------------------------------- */

/* Read the open file fd (at most ENVFILE_MAX bytes) into a NUL-terminated
 * buffer and return its stat; path names it in messages.  fd is closed. */
static char *load_fd(int fd, const char *path, struct stat *st, size_t *len, char *err,
                     size_t errlen)
{
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

/* Read path into a NUL-terminated buffer, with its stat.  The file is
 * opened once, so the stat and the content belong to the same file.
 * O_NONBLOCK: opening a FIFO must not stall drd's loop; anything but a
 * regular file is refused. */
static char *load(const char *path, struct stat *st, size_t *len, char *err, size_t errlen)
{
    return load_fd(open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), path, st, len, err, errlen);
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
    strbuf val = { 0 };
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
    sb_addn(&val, "", 0);           /* make sure data is allocated */
    if (val.oom) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    if (val.len >= n) {
        snprintf(err, errlen, "%s: value of %s is too long (%zu bytes)", path, key, val.len);
        goto cleanup;
    }
    memcpy(out, val.s, val.len + 1);
    ok = true;
cleanup:
    free(val.s);
    free(lines);
    free(text);
    return ok;
}

/* ---- where a write lands ---------------------------------------------- */

/* Someone other than root and drd who can change where the path leads, and
 * the first place that lets them (for the message). */
typedef struct {
    uid_t uid;
    char where[PATH_MAX];
} path_owner;

/* The file a path leads to, found by walk(). */
typedef struct {
    int dirfd;                          /* its directory (O_PATH), or -1 */
    char name[NAME_MAX + 1];            /* its name there */
    char dir[PATH_MAX];                 /* the directory's resolved path */
    char real[PATH_MAX];                /* its resolved path */
    struct stat st;                     /* lstat of it, found by the walk */
    path_owner owners[MAX_OWNERS];
    size_t nowners;
} walk_t;

static void walk_free(walk_t *w)
{
    if (w->dirfd >= 0)
        close(w->dirfd);
    w->dirfd = -1;
}

static void user_name(uid_t uid, char *out, size_t n)
{
    struct passwd pw, *res = NULL;
    char buf[1024];

    if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res != NULL)
        snprintf(out, n, "%s (uid %u)", res->pw_name, (unsigned)uid);
    else
        snprintf(out, n, "uid %u", (unsigned)uid);
}

static bool shared_dir(const struct stat *d)
{
    return (d->st_mode & (S_IWGRP | S_IWOTH)) != 0;
}

/* uid can change what a name in `where` leads to. */
static bool add_owner(walk_t *w, uid_t uid, const char *where, const char *path, char *err,
                      size_t errlen)
{
    if (uid == 0 || uid == geteuid())
        return true;
    for (size_t i = 0; i < w->nowners; i++)
        if (w->owners[i].uid == uid)
            return true;
    if (w->nowners == MAX_OWNERS) {
        snprintf(err, errlen, "refusing to write %s: more than %d users own directories on the way",
                 path, MAX_OWNERS);
        return false;
    }
    w->owners[w->nowners].uid = uid;
    str_copy(w->owners[w->nowners].where, where[0] != '\0' ? where : "/", PATH_MAX);
    w->nowners++;
    return true;
}

/* drd is about to look a name up in the directory d (resolved path dpath). */
static bool lookup_in(walk_t *w, const struct stat *d, const char *dpath, const char *path,
                      char *err, size_t errlen)
{
    if (shared_dir(d) && (d->st_mode & S_ISVTX) == 0) {
        snprintf(err, errlen,
                 "refusing to write %s: directory %s is writable by %s (mode %04o) and has no "
                 "sticky bit, so others could plant a link there; no directory on the way may "
                 "be writable by others than its owner",
                 path, dpath[0] != '\0' ? dpath : "/",
                 (d->st_mode & S_IWOTH) != 0 ? "everyone" : "its group",
                 (unsigned)(d->st_mode & 07777));
        return false;
    }
    return add_owner(w, d->st_uid, dpath, path, err, errlen);
}

static bool open_root(int *fd, struct stat *st, char *cur, const char *path, char *err,
                      size_t errlen)
{
    if (*fd >= 0)
        close(*fd);
    *fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0 || fstat(*fd, st) != 0) {
        snprintf(err, errlen, "%s: /: %s", path, strerror(errno));
        return false;
    }
    cur[0] = '\0';                      /* "" is "/" */
    return true;
}

/* Resolve path one component at a time, recording who can change where it
 * leads; it must end at a regular file.
 * Long on purpose: one loop whose every branch moves the same state (the
 * directory fd, its resolved path and stat, the rest of the path, the link
 * count); split into helpers, all of it would travel in and out of each,
 * and a security check is easier to review in one place. */
static bool walk(const char *path, walk_t *w, char *err, size_t errlen)
{
    char rest[2 * PATH_MAX], link[PATH_MAX], tmp[2 * PATH_MAX], comp[NAME_MAX + 1];
    char cur[PATH_MAX];                 /* resolved path of dirfd */
    struct stat cur_st, st;
    int dirfd = -1, fd = -1;
    unsigned links = 0;
    bool ok = false;

    memset(w, 0, sizeof *w);
    w->dirfd = -1;
    if (path[0] == '/') {
        str_copy(rest, path, sizeof rest);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL ||
            (size_t)snprintf(rest, sizeof rest, "%s/%s", cwd, path) >= sizeof rest) {
            snprintf(err, errlen, "%s: cannot make it absolute", path);
            return false;
        }
    }
    if (!open_root(&dirfd, &cur_st, cur, path, err, errlen))
        goto cleanup;
    for (;;) {
        const char *p = rest;
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (n == 0) {
            snprintf(err, errlen, "%s: not a regular file", path);
            goto cleanup;
        }
        if (n > NAME_MAX) {
            snprintf(err, errlen, "%s: %s", path, strerror(ENAMETOOLONG));
            goto cleanup;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        p += n;
        while (*p == '/')
            p++;
        bool last = *p == '\0';
        memmove(rest, p, strlen(p) + 1);

        if (strcmp(comp, ".") == 0 && !last)
            continue;
        if (!lookup_in(w, &cur_st, cur, path, err, errlen))
            goto cleanup;
        if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
            if (last) {
                snprintf(err, errlen, "%s: not a regular file", path);
                goto cleanup;
            }
            if (comp[1] == '\0' || cur[0] == '\0')
                continue;                               /* "." or "/.." */
            fd = openat(dirfd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0 || fstat(fd, &st) != 0) {
                snprintf(err, errlen, "%s: %s/..: %s", path, cur, strerror(errno));
                goto cleanup;
            }
            close(dirfd);
            dirfd = fd;
            fd = -1;
            cur_st = st;
            *strrchr(cur, '/') = '\0';
            continue;
        }
        fd = openat(dirfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto cleanup;
        }
        char here[PATH_MAX];
        if ((size_t)snprintf(here, sizeof here, "%s/%s", cur, comp) >= sizeof here) {
            snprintf(err, errlen, "%s: %s", path, strerror(ENAMETOOLONG));
            goto cleanup;
        }
        /* In a sticky shared directory the entry's owner may replace it. */
        if (shared_dir(&cur_st) && !add_owner(w, st.st_uid, here, path, err, errlen))
            goto cleanup;
        if (S_ISLNK(st.st_mode)) {
            if (++links > MAX_LINKS) {
                snprintf(err, errlen, "%s: %s", path, strerror(ELOOP));
                goto cleanup;
            }
            ssize_t k = readlinkat(fd, "", link, sizeof link);
            if (k < 0 || (size_t)k >= sizeof link) {
                snprintf(err, errlen, "%s: cannot read link %s: %s", path, here,
                         k < 0 ? strerror(errno) : strerror(ENAMETOOLONG));
                goto cleanup;
            }
            link[k] = '\0';
            close(fd);
            fd = -1;
            if ((size_t)snprintf(tmp, sizeof tmp, "%s%s%s", link, rest[0] != '\0' ? "/" : "",
                                 rest) >= sizeof rest) {
                snprintf(err, errlen, "%s: %s", path, strerror(ENAMETOOLONG));
                goto cleanup;
            }
            str_copy(rest, tmp, sizeof rest);
            if (link[0] == '/' && !open_root(&dirfd, &cur_st, cur, path, err, errlen))
                goto cleanup;
            continue;
        }
        if (S_ISDIR(st.st_mode) && !last) {
            close(dirfd);
            dirfd = fd;
            fd = -1;
            cur_st = st;
            str_copy(cur, here, sizeof cur);
            continue;
        }
        if (!last) {
            snprintf(err, errlen, "%s: %s", path, strerror(ENOTDIR));
            goto cleanup;
        }
        if (!S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "%s: not a regular file", path);
            goto cleanup;
        }
        w->dirfd = dirfd;
        dirfd = -1;
        w->st = st;
        str_copy(w->name, comp, sizeof w->name);
        str_copy(w->dir, cur[0] != '\0' ? cur : "/", sizeof w->dir);
        str_copy(w->real, here, sizeof w->real);
        ok = true;
        break;
    }
cleanup:
    if (fd >= 0)
        close(fd);
    if (dirfd >= 0)
        close(dirfd);
    return ok;
}

/* The rule: everyone who can change where the path leads is root, drd's
 * user or the owner of the file it leads to. */
static bool walk_allowed(const char *path, const walk_t *w, char *err, size_t errlen)
{
    for (size_t i = 0; i < w->nowners; i++) {
        if (w->owners[i].uid == w->st.st_uid)
            continue;
        char file_owner[128], other[128];
        user_name(w->st.st_uid, file_owner, sizeof file_owner);
        user_name(w->owners[i].uid, other, sizeof other);
        snprintf(err, errlen,
                 "refusing to write %s: it leads to %s, owned by %s, but %s belongs to %s, who "
                 "could point it elsewhere; every directory and link on the way must belong to "
                 "root or to the file's owner",
                 path, w->real, file_owner, w->owners[i].where, other);
        return false;
    }
    return true;
}

bool envfile_check(const char *path, char *real, size_t realn, char *err, size_t errlen)
{
    walk_t w;
    bool ok;

    if (errlen > 0)
        err[0] = '\0';
    ok = walk(path, &w, err, errlen) && walk_allowed(path, &w, err, errlen);
    if (ok && real != NULL)
        str_copy(real, w.real, realn);
    walk_free(&w);
    return ok;
}

/* ---- writing ---------------------------------------------------------- */

/* The new content: every line with the key gets the new value, every other
 * byte is copied; the key is appended if absent. */
static bool build_content(const char *text, size_t len, const char *key, const char *value,
                          strbuf *out)
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
        sb_addn(out, text + copied, l->val_off - copied);
        encode_value(value, l->quote, out);
        copied = l->val_off + l->val_len;
    }
    sb_addn(out, text + copied, len - copied);
    if (!found) {
        const char *eol = crlf > lf ? "\r\n" : "\n";
        if (len > 0 && text[len - 1] != '\n')
            sb_add(out, eol);
        sb_add(out, key);
        sb_addn(out, "=", 1);
        encode_value(value, Q_NONE, out);
        sb_add(out, eol);
    }
    sb_addn(out, "", 0);            /* allocated even when empty */
    free(lines);
    return !out->oom;
}

bool envfile_set(const char *path, const char *key, const char *value, bool *changed,
                 char *err, size_t errlen)
{
    char prev[NAME_MAX + 16], perr[512];
    char *text = NULL;
    strbuf out = { 0 };
    walk_t w = { .dirfd = -1 };
    struct stat st;
    size_t len = 0;
    int dirfd = -1;
    bool ok = false, renamed = false;

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
    /* Work on the file a symlink points to (replacing the link itself by a
     * regular file would detach the app's configuration), if the rule
     * allows it; from here on, only through the directory found. */
    if (!walk(path, &w, err, errlen) || !walk_allowed(path, &w, err, errlen))
        goto cleanup;
    dirfd = openat(w.dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        snprintf(err, errlen, "%s: %s: %s", path, w.dir, strerror(errno));
        goto cleanup;
    }
    text = load_fd(openat(dirfd, w.name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), path,
                   &st, &len, err, errlen);
    if (text == NULL)
        goto cleanup;
    if (st.st_dev != w.st.st_dev || st.st_ino != w.st.st_ino) {
        snprintf(err, errlen, "%s changed while drd checked where it leads; not written", path);
        goto cleanup;
    }
    if (!build_content(text, len, key, value, &out)) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    if (out.len == len && memcmp(out.s, text, len) == 0) {
        log_debug("envfile: %s already has that %s", path, key);
        ok = true;                              /* idempotent: nothing to do */
        goto cleanup;
    }
    if ((size_t)snprintf(prev, sizeof prev, "%s.drd-prev", w.name) >= sizeof prev) {
        snprintf(err, errlen, "%s: path too long", path);
        goto cleanup;
    }
    /* The previous content first (same owner and mode: it holds the same
     * secrets): once the file is replaced, .drd-prev must already hold what
     * it replaced. */
    if (!atomic_file_replace_at(dirfd, w.dir, prev, text, len, &st, &renamed, perr, sizeof perr)) {
        snprintf(err, errlen, "cannot keep the previous %s: %s", path, perr);
        goto cleanup;
    }
    if (!atomic_file_replace_at(dirfd, w.dir, w.name, out.s, out.len, &st, &renamed, err, errlen)) {
        if (renamed && changed != NULL)
            *changed = true;
        goto cleanup;
    }
    if (changed != NULL)
        *changed = true;
    log_info("envfile: %s: %s updated (previous file kept as %s/%s)", path, key, w.dir, prev);
    ok = true;
cleanup:
    if (dirfd >= 0)
        close(dirfd);
    walk_free(&w);
    free(out.s);
    free(text);
    return ok;
}
