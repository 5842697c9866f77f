/* refresh_util.c - the refresh module's pure helpers: connection strings,
 * quoting, pgpass files, dump file names and retention, heartbeat lag and
 * schedule arithmetic. No loop, no store: unit-tested on their own. */
#include "refresh_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "drd/core/log.h"
#include "drd/core/strbuf.h"
#include "drd/pg/quote.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"

/* ---- strings ----------------------------------------------------------- */

char *refresh_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

char *refresh_sql_ident(const char *s) { return pg_ident_dup(s); }
char *refresh_sql_literal(const char *s) { return pg_literal_dup(s); }

/* 's' for /bin/sh: each ' inside becomes '\'' */
char *refresh_sh_quote(const char *s)
{
    strbuf b = STRBUF_INIT;

    sb_quote(&b, s, '\'', "'\\''");
    return sb_take(&b);
}

static const char *const sub_state_names[] = { "", "enabled", "disabled", "missing", "broken" };

const char *refresh_sub_state_name(subscription_state s)
{
    return (unsigned)s < ARRAY_LEN(sub_state_names) ? sub_state_names[s] : "";
}

subscription_state refresh_sub_state_of(const char *s)
{
    for (size_t i = 1; s != NULL && i < ARRAY_LEN(sub_state_names); i++)
        if (strcmp(s, sub_state_names[i]) == 0)
            return (subscription_state)i;
    return SUB_UNKNOWN;
}

size_t refresh_split_fields(char *s, char sep, char **fields, size_t max)
{
    size_t n = 0;
    if (max == 0)
        return 0;
    fields[n++] = s;
    for (char *p = s; *p; p++) {
        if (*p == sep && n < max) {
            *p = '\0';
            fields[n++] = p + 1;
        }
    }
    return n;
}

/* ---- connection strings ---------------------------------------------- */

void refresh_rconn_free(rconn *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->keys[i]);
        free(c->vals[i]);
    }
    free(c->keys);
    free(c->vals);
    free(c->dbname);
    free(c->user);
    if (c->password != NULL) {
        explicit_bzero(c->password, strlen(c->password));
        free(c->password);
    }
    free(c->passfile);
    memset(c, 0, sizeof *c);
}

bool refresh_rconn_parse(const char *url, const char *password, rconn *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url != NULL ? url : "", &msg);
    if (opts == NULL) {
        char line[256] = "out of memory";
        if (msg != NULL) {
            str_copy(line, msg, sizeof line);
            char *nl = strchr(line, '\n');
            if (nl != NULL)
                *nl = '\0';
            PQfreemem(msg);
        }
        mask_secrets(line, err, errlen);
        return false;
    }
    size_t count = 0;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        count++;
    out->keys = calloc(count + 1, sizeof *out->keys);
    out->vals = calloc(count + 1, sizeof *out->vals);
    bool ok = out->keys != NULL && out->vals != NULL;
    for (PQconninfoOption *o = opts; ok && o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        if (strcmp(o->keyword, "password") == 0) {
            if (password == NULL && (out->password = strdup(o->val)) == NULL)
                ok = false;
            continue;
        }
        if (strcmp(o->keyword, "passfile") == 0) {
            ok = (out->passfile = strdup(o->val)) != NULL;
            continue;
        }
        if (strcmp(o->keyword, "dbname") == 0 && (out->dbname = strdup(o->val)) == NULL)
            ok = false;
        if (strcmp(o->keyword, "user") == 0 && (out->user = strdup(o->val)) == NULL)
            ok = false;
        out->keys[out->n] = strdup(o->keyword);
        out->vals[out->n] = strdup(o->val);
        if (out->keys[out->n] == NULL || out->vals[out->n] == NULL)
            ok = false;
        out->n++;
    }
    if (ok && password != NULL && password[0] != '\0')
        ok = (out->password = strdup(password)) != NULL;
    PQconninfoFree(opts);
    if (!ok) {
        refresh_rconn_free(out);
        snprintf(err, errlen, "out of memory");
    }
    return ok;
}

bool refresh_rconn_parse_target(const config_target *t, rconn *out, char *err, size_t errlen)
{
    if (!refresh_rconn_parse(t->url, t->password, out, err, errlen))
        return false;
    char *db = t->app_url != NULL ? pgconn_dbname(t->app_url) : NULL;
    if (db == NULL)
        return true;                 /* no app_url, or it names no database: url's */
    size_t k = 0;
    while (k < out->n && strcmp(out->keys[k], "dbname") != 0)
        k++;
    bool ok = true;
    if (k == out->n) {               /* keys/vals were calloc'd with room for one more */
        ok = (out->keys[k] = strdup("dbname")) != NULL;
        if (ok)
            out->n++;
    }
    if (ok) {
        free(out->vals[k]);
        ok = (out->vals[k] = strdup(db)) != NULL;
    }
    free(out->dbname);
    out->dbname = db;
    if (!ok) {
        refresh_rconn_free(out);
        snprintf(err, errlen, "out of memory");
    }
    return ok;
}

/* libpq conninfo value: single quotes, backslash-escaped ' and \. */
static void append_conn_value(strbuf *b, const char *key, const char *val)
{
    if (b->len > 0)
        sb_addc(b, ' ');
    sb_add(b, key);
    sb_add(b, "='");
    for (const char *p = val; *p; p++) {
        if (*p == '\'' || *p == '\\')
            sb_addc(b, '\\');
        sb_addc(b, *p);
    }
    sb_addc(b, '\'');
}

char *refresh_rconn_string(const rconn *c, const char *db, bool with_password, bool use_own_passfile)
{
    strbuf b = STRBUF_INIT;
    bool have_db = false;

    for (size_t i = 0; i < c->n; i++) {
        const char *v = c->vals[i];
        if (strcmp(c->keys[i], "dbname") == 0) {
            have_db = true;
            if (db != NULL)
                v = db;
        }
        append_conn_value(&b, c->keys[i], v);
    }
    if (!have_db && db != NULL)
        append_conn_value(&b, "dbname", db);
    if (c->passfile != NULL && !use_own_passfile)
        append_conn_value(&b, "passfile", c->passfile);
    if (with_password && c->password != NULL)
        append_conn_value(&b, "password", c->password);
    if (b.oom && b.s != NULL)
        explicit_bzero(b.s, b.cap);     /* may hold the password */
    return sb_take(&b);
}

bool refresh_pgpass_write(const char *path, const char *password, char *err, size_t errlen)
{
    /* hostname:port:database:username:password, with \ and : escaped */
    size_t n = strlen(password);
    char *line = malloc(2 * n + 16);
    if (line == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    char *o = line;
    memcpy(o, "*:*:*:*:", 8);
    o += 8;
    for (const char *p = password; *p; p++) {
        if (*p == '\\' || *p == ':')
            *o++ = '\\';
        *o++ = *p;
    }
    *o++ = '\n';
    size_t len = (size_t)(o - line);
    bool ok = false;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    } else {
        ok = write(fd, line, len) == (ssize_t)len && fchmod(fd, 0600) == 0;
        if (!ok)
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        if (close(fd) != 0 && ok) {
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            ok = false;
        }
        if (!ok)
            unlink(path);
    }
    explicit_bzero(line, 2 * n + 16);
    free(line);
    return ok;
}

void refresh_pg_bindir(int version_num, const char *root, char *out, size_t n)
{
    char major[16], path[PATH_MAX];
    if (version_num >= 100000)
        snprintf(major, sizeof major, "%d", version_num / 10000);
    else
        snprintf(major, sizeof major, "%d.%d", version_num / 10000, version_num / 100 % 100);
    snprintf(path, sizeof path, "%s/%s/bin/pg_dump", root != NULL ? root : "/usr/lib/postgresql", major);
    if (version_num > 0 && access(path, X_OK) == 0) {
        char *slash = strrchr(path, '/');
        *slash = '\0';
        str_copy(out, path, n);
    } else {
        str_copy(out, "", n);
    }
}

/* ---- dump files --------------------------------------------------------- */

void refresh_dump_name(int64_t at_ms, int seq, char *buf, size_t n)
{
    time_t t = (time_t)(at_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%d-%H%M%S", &tm);
    if (seq > 0)
        snprintf(buf, n, DUMP_PREFIX "%s-%d" DUMP_SUFFIX, stamp, seq);
    else
        snprintf(buf, n, DUMP_PREFIX "%s" DUMP_SUFFIX, stamp);
}

bool refresh_dump_name_valid(const char *name)
{
    /* backup-YYYY-MM-DD-HHMMSS[-N].dump */
    static const char pat[] = "dddd-dd-dd-dddddd";
    size_t plen = strlen(DUMP_PREFIX), slen = strlen(DUMP_SUFFIX), len = strlen(name);
    if (len < plen + sizeof pat - 1 + slen || strncmp(name, DUMP_PREFIX, plen) != 0 ||
        strcmp(name + len - slen, DUMP_SUFFIX) != 0)
        return false;
    const char *p = name + plen;
    for (size_t i = 0; i < sizeof pat - 1; i++, p++) {
        if (pat[i] == 'd' ? (*p < '0' || *p > '9') : *p != pat[i])
            return false;
    }
    const char *end = name + len - slen;
    if (p == end)
        return true;
    if (*p++ != '-' || p == end)
        return false;
    for (; p < end; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

static int newest_first(const void *a, const void *b)
{
    const dump_file *x = a, *y = b;
    if (x->mtime_ms != y->mtime_ms)
        return x->mtime_ms > y->mtime_ms ? -1 : 1;
    return -strcmp(x->name, y->name);
}

void refresh_retention_plan(dump_file *f, size_t n, int64_t keep, int64_t max_age_ms,
                    int64_t now_ms, const char *just_made)
{
    qsort(f, n, sizeof *f, newest_first);
    int64_t kept = 0;
    /* the new file always counts as kept, whatever its mtime says */
    if (just_made != NULL)
        for (size_t i = 0; i < n; i++)
            if (strcmp(f[i].name, just_made) == 0)
                kept++;
    for (size_t i = 0; i < n; i++) {
        if (just_made != NULL && strcmp(f[i].name, just_made) == 0) {
            f[i].remove = false;
            continue;
        }
        bool too_old = max_age_ms > 0 && now_ms - f[i].mtime_ms > max_age_ms;
        f[i].remove = too_old || kept >= keep;
        if (!f[i].remove)
            kept++;
    }
}

int refresh_retention_apply(const char *dir, int64_t keep, int64_t max_age_ms, int64_t now_ms,
                    const char *just_made)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        log_error("refresh: cannot list %s: %s", dir, strerror(errno));
        return -1;
    }
    dump_file *files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!refresh_dump_name_valid(e->d_name) || strlen(e->d_name) >= sizeof files[0].name)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            dump_file *nf = realloc(files, ncap * sizeof *nf);
            if (nf == NULL)
                break;
            files = nf;
            cap = ncap;
        }
        str_copy(files[n].name, e->d_name, sizeof files[n].name);
        files[n].mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        files[n].remove = false;
        n++;
    }
    refresh_retention_plan(files, n, keep, max_age_ms, now_ms, just_made);
    int removed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!files[i].remove)
            continue;
        if (unlinkat(dirfd(d), files[i].name, 0) == 0) {
            removed++;
            log_info("refresh: removed %s/%s (retention: keep %lld, max age %lld d)", dir,
                     files[i].name, (long long)keep, (long long)(max_age_ms / 86400000));
        } else {
            log_warn("refresh: cannot remove %s/%s: %s", dir, files[i].name, strerror(errno));
        }
    }
    closedir(d);
    free(files);
    return removed;
}

bool refresh_rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT;
    bool ok = true;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            continue;
        if (errno == EISDIR || errno == EPERM) {
            char sub[PATH_MAX];
            if ((size_t)snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) < sizeof sub && refresh_rm_tree(sub))
                continue;
        }
        ok = false;
    }
    closedir(d);
    if (rmdir(dir) != 0 && errno != ENOENT)
        ok = false;
    return ok;
}

void refresh_dir_scrub(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0)
            continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path)
            continue;
        if (refresh_rm_tree(path))
            log_info("refresh: removed %s, left by an interrupted refresh", path);
        else
            log_warn("refresh: cannot remove %s: %s", path, strerror(errno));
    }
    closedir(d);
}

static bool writable_dir(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", path);
        return false;
    }
    struct statvfs vfs;
    if (access(path, W_OK | X_OK) != 0 ||
        (statvfs(path, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))) {
        snprintf(err, errlen, "%s is not writable%s", path,
                 errno == EROFS || (statvfs(path, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
                     ? " (read-only file system)" : "");
        return false;
    }
    return true;
}

bool refresh_dir_usable(const char *dir, char *err, size_t errlen)
{
    if (dir == NULL || dir[0] == '\0') {
        snprintf(err, errlen, "no directory");
        return false;
    }
    char path[PATH_MAX];
    if (str_copy(path, dir, sizeof path) >= sizeof path) {
        snprintf(err, errlen, "path too long");
        return false;
    }
    struct stat st;
    if (stat(path, &st) == 0)
        return writable_dir(path, err, errlen);
    if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    /* Missing: drd creates it at start; its nearest existing parent must
     * be a writable directory. */
    for (;;) {
        char *slash = strrchr(path, '/');
        if (slash == NULL)
            return writable_dir(".", err, errlen);
        if (slash == path) {
            path[1] = '\0';
        } else {
            *slash = '\0';
        }
        if (stat(path, &st) == 0) {
            if (!writable_dir(path, err, errlen))
                return false;
            return true;
        }
        if (errno != ENOENT) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return false;
        }
        if (strcmp(path, "/") == 0)
            return writable_dir("/", err, errlen);
    }
}

/* ---- heartbeat lag ------------------------------------------------------- */

void refresh_hb_add(hb_log *h, int64_t seq, int64_t at_ms)
{
    h->seq[h->head] = seq;
    h->at[h->head] = at_ms;
    h->head = (h->head + 1) % HB_RING;
    if (h->count < HB_RING)
        h->count++;
}

/* index of the i-th entry, oldest first */
static size_t hb_index(const hb_log *h, size_t i)
{
    return (h->head + HB_RING - h->count + i) % HB_RING;
}

static int64_t age(int64_t now, int64_t t)
{
    return now > t ? now - t : 0;
}

int64_t refresh_hb_lag_ms(const hb_log *h, int64_t seen_seq, int64_t seen_at_ms, int64_t as_of_ms,
                          int64_t max_gap_ms)
{
    if (seen_seq < 0)
        return -1;
    /* t_seen: when the newest heartbeat the backup has was committed;
     * t_next: when the oldest one it lacks was (among those committed by
     * as_of: a later one could not be there yet). The truth lies between. */
    int64_t t_seen = refresh_hb_good_at(h, seen_seq, seen_at_ms), t_next = -1;
    bool any = false;
    for (size_t i = 0; i < h->count; i++) {
        size_t k = hb_index(h, i);
        if (h->at[k] > as_of_ms)
            break;
        any = true;
        if (h->seq[k] > seen_seq) {
            t_next = h->at[k];
            break;
        }
    }
    if (!any)
        return t_seen > 0 ? age(as_of_ms, t_seen) : -1;
    if (t_next < 0)
        return 0;                          /* it has every heartbeat it could have */
    /* Heartbeats every period: t_next is within one period of the truth.
     * A longer gap between the two (drd was down, heartbeats failed) makes
     * the data in between unknown: count it as missing. */
    if (t_seen > 0 && t_next - t_seen > max_gap_ms)
        return age(as_of_ms, t_seen);
    return age(as_of_ms, t_next);
}

int64_t refresh_hb_good_at(const hb_log *h, int64_t seen_seq, int64_t seen_at_ms)
{
    if (seen_seq < 0)
        return 0;
    for (size_t i = h->count; i-- > 0;) {
        size_t k = hb_index(h, i);
        if (h->seq[k] == seen_seq)
            return h->at[k];
        if (h->seq[k] < seen_seq)
            break;
    }
    return seen_at_ms > 0 ? seen_at_ms : 0;
}

/* ---- schedule ------------------------------------------------------------- */

int64_t refresh_schedule_next(int64_t every_ms, const cron_expr *cron, int64_t last_start_ms,
                      int64_t now_ms, int64_t not_before_ms)
{
    int64_t next = 0;
    if (every_ms > 0)
        next = last_start_ms > 0 ? last_start_ms + every_ms : now_ms;
    if (cron != NULL) {
        time_t t = cron_next(cron, (time_t)(now_ms / 1000));
        if (t > 0 && (next == 0 || (int64_t)t * 1000 < next))
            next = (int64_t)t * 1000;
    }
    if (next != 0 && next < not_before_ms)
        next = not_before_ms;
    return next;
}

void refresh_format_age(double s, char *buf, size_t n)
{
    if (s < 0)
        s = 0;
    if (s < 10)
        snprintf(buf, n, "%.1f s", s);
    else if (s < 120)
        snprintf(buf, n, "%.0f s", s);
    else if (s < 2 * 3600)
        snprintf(buf, n, "%.0f min", s / 60);
    else if (s < 2 * 86400)
        snprintf(buf, n, "%.1f h", s / 3600);
    else
        snprintf(buf, n, "%.1f d", s / 86400);
}
