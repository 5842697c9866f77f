/* config.c - drd.conf. A small line-based INI reader (shared with runbook
 * files) and ONE option table that drives parsing, defaults, bounds,
 * validation, ${section.key} expansion, config_dump and the list of
 * options that need a restart. Add a setting = add a row to options[].
 *
 * Errors are collected, never printed here: every message is
 * "FILE:LINE: message" (or "FILE: message" when there is no line), and
 * config_load hands them back sorted by line so they read in file order. */
#include "drd/conf/config.h"
#include "drd/core/cron.h"
#include "drd/core/log.h"
#include "drd/core/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where `make install` puts the page (-DDRD_SHAREDIR from PREFIX). */
#ifndef DRD_SHAREDIR
#define DRD_SHAREDIR "/usr/local/share/drd"
#endif

#define SECRET_FILE_MAX (64 * 1024)
#define MS_S  INT64_C(1000)
#define MS_M  (60 * MS_S)
#define MS_H  (60 * MS_M)

/* ------------------------------------------------------------------ */
/* Errors                                                              */

void config_error_add(config_errors *e, const char *fmt, ...)
{
    char *msg = NULL;
    char **grown = NULL;
    va_list ap;

    va_start(ap, fmt);
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r >= 0)
        grown = realloc(e->msgs, (e->n + 1) * sizeof *grown);
    if (grown == NULL) {
        /* Dropping an error could let a bad configuration load. */
        fputs("drd: out of memory while reporting a configuration error\n", stderr);
        abort();
    }
    e->msgs = grown;
    e->msgs[e->n++] = msg;
}

void config_errors_free(config_errors *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    e->msgs = NULL;
    e->n = 0;
}

/* ------------------------------------------------------------------ */
/* Small string helpers                                                */

static char *skip_space(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\v' || *s == '\f' || *s == '\r')
        s++;
    return s;
}

static char *trim(char *s)
{
    s = skip_space(s);
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_adds(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Levenshtein distance, for "did you mean" hints; short words only. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t prev[64], cur[64];

    if (la >= ARRAY_LEN(prev) || lb >= ARRAY_LEN(prev))
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + (a[i - 1] != b[j - 1]) < best)
                best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            cur[j] = best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* "1h", "5m", "10s", "250ms": exact, for bounds in messages and dumps. */
static void format_ms(int64_t ms, char *buf, size_t n)
{
    if (ms != 0 && ms % MS_H == 0)
        snprintf(buf, n, "%" PRId64 "h", ms / MS_H);
    else if (ms != 0 && ms % MS_M == 0)
        snprintf(buf, n, "%" PRId64 "m", ms / MS_M);
    else if (ms % MS_S == 0)
        snprintf(buf, n, "%" PRId64 "s", ms / MS_S);
    else
        snprintf(buf, n, "%" PRId64 "ms", ms);
}

/* ------------------------------------------------------------------ */
/* INI reader                                                          */

struct ini_seen {
    char *section, *key;
    int line;
};

static bool ini_key_ok(const char *k)
{
    if (*k == '\0')
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
              *k == '_' || *k == '-'))
            return false;
    return true;
}

/* p points at '['. Returns the trimmed name (inside p) or NULL. */
static char *ini_header(char *p)
{
    char *end = strchr(p + 1, ']');
    if (end == NULL)
        return NULL;
    *end = '\0';
    char *name = trim(p + 1);
    if (*name == '\0' || strchr(name, '[') != NULL)
        return NULL;
    char *rest = skip_space(end + 1);
    if (*rest != '\0' && *rest != '#')
        return NULL;
    return name;
}

/* Parse the text after '=' in place. Returns NULL and sets *out, or an
 * error message. */
static const char *ini_value(char *s, char **out)
{
    s = skip_space(s);
    if (*s == '"') {
        char *w = s, *r = s + 1;
        for (;;) {
            if (*r == '\0')
                return "unterminated quote";
            if (*r == '"')
                break;
            if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
                r++;
            *w++ = *r++;
        }
        *w = '\0';
        r = skip_space(r + 1);
        if (*r != '\0' && *r != '#')
            return "unexpected text after the closing quote";
        *out = s;
        return NULL;
    }
    for (char *q = s; *q; q++) {
        if (*q == '#' && (q == s || isspace((unsigned char)q[-1]))) {
            *q = '\0';
            break;
        }
    }
    *out = trim(s);
    return NULL;
}

/* The reader proper. *unreadable tells "could not read the file" apart
 * from syntax errors, which config_load needs. */
static bool ini_parse(const char *path, ini_entry_fn on_entry, void *arg,
                      config_errors *errs, bool *unreadable)
{
    FILE *f = NULL;
    char *buf = NULL, *section = NULL;
    size_t cap = 0, n_seen = 0;
    struct ini_seen *seen = NULL;
    size_t errs_before = errs->n;
    bool stopped = false;
    int lineno = 0;
    ssize_t len;

    *unreadable = false;
    f = fopen(path, "re");
    if (f == NULL) {
        config_error_add(errs, "%s: cannot read: %s", path, strerror(errno));
        *unreadable = true;
        return false;
    }
    errno = 0;
    while ((len = getline(&buf, &cap, f)) != -1) {
        lineno++;
        if ((size_t)len != strlen(buf)) {
            config_error_add(errs, "%s:%d: line contains a NUL byte", path, lineno);
            continue;
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        char *p = buf;
        if (lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
            p += 3;
        p = skip_space(p);
        if (*p == '\0' || *p == '#' || *p == ';')
            continue;

        if (*p == '[') {
            char *name = ini_header(p);
            if (name == NULL) {
                config_error_add(errs, "%s:%d: malformed section header (use [name])",
                                 path, lineno);
                continue;
            }
            /* JSON needs UTF-8: a step, run or event holding the name
             * could not be stored or shown. */
            if (!utf8_valid(name, strlen(name))) {
                config_error_add(errs, "%s:%d: section name is not valid UTF-8", path, lineno);
                continue;
            }
            char *copy = strdup(name);
            if (copy == NULL) {
                config_error_add(errs, "%s:%d: out of memory", path, lineno);
                stopped = true;
                break;
            }
            free(section);
            section = copy;
            if (!on_entry(arg, section, NULL, NULL, lineno)) {
                stopped = true;
                break;
            }
            continue;
        }

        char *eq = strchr(p, '=');
        if (eq == NULL) {
            config_error_add(errs, "%s:%d: line without \"=\" (expected key = value)",
                             path, lineno);
            continue;
        }
        *eq = '\0';
        char *key = trim(p);
        if (!ini_key_ok(key)) {
            config_error_add(errs, "%s:%d: bad key \"%s\" (use a-z, 0-9, _ and -)",
                             path, lineno, key);
            continue;
        }
        if (section == NULL) {
            config_error_add(errs, "%s:%d: key \"%s\" outside any [section]",
                             path, lineno, key);
            continue;
        }
        char *value = NULL;
        const char *problem = ini_value(eq + 1, &value);
        if (problem == NULL && !utf8_valid(value, strlen(value)))
            problem = "value is not valid UTF-8";
        if (problem != NULL) {
            config_error_add(errs, "%s:%d: %s", path, lineno, problem);
            continue;
        }
        const struct ini_seen *dup = NULL;
        for (size_t i = 0; i < n_seen && dup == NULL; i++)
            if (strcmp(seen[i].key, key) == 0 && strcmp(seen[i].section, section) == 0)
                dup = &seen[i];
        if (dup != NULL) {
            config_error_add(errs, "%s:%d: duplicate key \"%s\" in [%s] (first set on line %d)",
                             path, lineno, key, section, dup->line);
            continue;
        }
        struct ini_seen *grown = realloc(seen, (n_seen + 1) * sizeof *grown);
        char *s_copy = strdup(section), *k_copy = strdup(key);
        if (grown != NULL)
            seen = grown;
        if (grown == NULL || s_copy == NULL || k_copy == NULL) {
            free(s_copy);
            free(k_copy);
            config_error_add(errs, "%s:%d: out of memory", path, lineno);
            stopped = true;
            break;
        }
        seen[n_seen++] = (struct ini_seen){ s_copy, k_copy, lineno };
        if (!on_entry(arg, section, key, value, lineno)) {
            stopped = true;
            break;
        }
    }
    if (!stopped && ferror(f)) {
        int e = errno ? errno : EIO;
        config_error_add(errs, "%s: cannot read: %s", path, strerror(e));
        *unreadable = true;
    }

    for (size_t i = 0; i < n_seen; i++) {
        free(seen[i].section);
        free(seen[i].key);
    }
    free(seen);
    free(section);
    free(buf);
    fclose(f);
    return !stopped && !*unreadable && errs->n == errs_before;
}

bool ini_read(const char *path,
              bool (*on_entry)(void *arg, const char *section, const char *key,
                               const char *value, int line),
              void *arg, config_errors *errs)
{
    bool unreadable;
    return ini_parse(path, on_entry, arg, errs, &unreadable);
}

/* ------------------------------------------------------------------ */
/* The option table                                                    */

typedef enum {
    OPT_STRING,
    OPT_PATH,         /* relative paths resolve against the config's dir */
    OPT_SECRET_FILE,  /* a PATH whose first line is read into .secret */
    OPT_URL,          /* postgresql:// URL or key=value conninfo */
    OPT_DURATION,     /* milliseconds; .min/.max in ms */
    OPT_INT,
    OPT_BOOL,
    OPT_ENUM,         /* one of .words */
} opt_type;

enum {
    OPT_REQUIRED    = 1 << 0,
    OPT_SECRET      = 1 << 1,  /* may hold a password or token: mask it */
    OPT_RESTART     = 1 << 2,  /* not reloadable: SIGHUP cannot change it */
    OPT_DEFAULT_URL = 1 << 3,  /* default: the url of the same section */
};

typedef struct {
    const char *section, *key;
    opt_type type;
    size_t offset;              /* of the field in config_t */
    const char *def;            /* default, as it would be written; or NULL */
    int64_t min, max;           /* OPT_INT, OPT_DURATION */
    const char *const *words;   /* OPT_ENUM, NULL-terminated */
    unsigned flags;
    size_t secret;              /* OPT_SECRET_FILE: field for the contents */
    bool (*check)(const char *value);  /* extra validation */
    const char *hint;           /* shown when check fails */
} config_option;

static const char *const policy_words[] = { "auto", "approve", "manual", NULL };
static const char *const fence_words[] = { "read-only", "nologin", "command", "none", NULL };
static const char *const level_words[] = { "debug", "info", "warn", "error", NULL };
static const char *const metrics_words[] = { "open", "token", NULL };
static const char *const format_words[] = { "slack", "json", NULL };
static const char *const no_pk_words[] = { "copy", "refuse", NULL };
static const char *const conflict_words[] = { "ask", "backup-wins", "primary-wins", NULL };
static const char *const sync_mode_words[] = { "incremental", "full", NULL };
static const char *const refresh_words[] = { "off", "dump", "logical", "reconcile", NULL };
static const char *const deletes_words[] = { "auto", "ledger", "compare", NULL };

static bool check_size(const char *v)
{
    int64_t b;
    return parse_bytes(v, &b);
}

static bool check_http_url(const char *v)
{
    return strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0;
}

static bool check_env_key(const char *v)
{
    if (!(isalpha((unsigned char)*v) || *v == '_'))
        return false;
    for (; *v; v++)
        if (!(isalnum((unsigned char)*v) || *v == '_'))
            return false;
    return true;
}

/* host:port, [v6]:port */
static bool check_listen(const char *v)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v)
        return false;
    if (v[0] == '[' && colon[-1] != ']')
        return false;
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    return errno == 0 && end != colon + 1 && *end == '\0' &&
           isdigit((unsigned char)colon[1]) && port >= 1 && port <= 65535;
}

#define F(field) offsetof(config_t, field)

static const config_option options[] = {
    { "primary", "url", OPT_URL, F(primary.url), NULL, .flags = OPT_REQUIRED | OPT_SECRET },
    { "primary", "app_url", OPT_URL, F(primary.app_url), NULL,
      .flags = OPT_SECRET | OPT_DEFAULT_URL },
    { "primary", "password_file", OPT_SECRET_FILE, F(primary.password_file), NULL,
      .secret = F(primary.password) },

    { "backup", "url", OPT_URL, F(backup.url), NULL, .flags = OPT_REQUIRED | OPT_SECRET },
    { "backup", "app_url", OPT_URL, F(backup.app_url), NULL,
      .flags = OPT_SECRET | OPT_DEFAULT_URL },
    { "backup", "password_file", OPT_SECRET_FILE, F(backup.password_file), NULL,
      .secret = F(backup.password) },

    { "probe", "interval", OPT_DURATION, F(probe_interval_ms), "1s", .min = 100, .max = MS_H },
    { "probe", "timeout", OPT_DURATION, F(probe_timeout_ms), "1s", .min = 100, .max = MS_M },
    { "probe", "failures", OPT_INT, F(probe_failures), "3", .min = 1, .max = 100 },
    { "probe", "successes", OPT_INT, F(probe_successes), "2", .min = 1, .max = 100 },
    { "probe", "cooldown", OPT_DURATION, F(probe_cooldown_ms), "10s", .min = 0, .max = MS_H },
    { "probe", "confirm_interval", OPT_DURATION, F(probe_confirm_ms), "0s", .min = 0, .max = MS_M },

    { "failover", "policy", OPT_ENUM, F(failover_policy), "approve", .words = policy_words },
    { "failover", "min_outage", OPT_DURATION, F(failover_min_outage_ms), "0s",
      .min = 0, .max = 24 * MS_H },
    { "failover", "block", OPT_DURATION, F(failover_block_ms), "1h",
      .min = 0, .max = 7 * 24 * MS_H },
    { "failover", "runbook", OPT_PATH, F(failover_runbook), "runbooks/failover.ini", .flags = 0 },
    { "failover", "fence", OPT_ENUM, F(failover_fence), "read-only", .words = fence_words },
    { "failover", "fence_command", OPT_STRING, F(failover_fence_command), NULL, .flags = 0 },
    { "failover", "fence_required", OPT_BOOL, F(failover_fence_required), "false", .flags = 0 },
    { "failover", "require_seen_healthy", OPT_BOOL, F(failover_require_seen_healthy), "true", .flags = 0 },

    { "failback", "runbook", OPT_PATH, F(failback_runbook), "runbooks/failback.ini", .flags = 0 },

    { "app", "env_file", OPT_PATH, F(app_env_file), NULL, .flags = 0 },
    { "app", "env_key", OPT_STRING, F(app_env_key), "DATABASE_URL",
      .check = check_env_key, .hint = "use a variable name such as DATABASE_URL" },
    { "app", "stop", OPT_STRING, F(app_stop), NULL, .flags = 0 },
    { "app", "start", OPT_STRING, F(app_start), NULL, .flags = 0 },
    { "app", "health_url", OPT_STRING, F(app_health_url), NULL,
      .check = check_http_url, .hint = "use an http:// or https:// URL" },
    { "app", "user", OPT_STRING, F(app_user), NULL, .flags = 0 },

    { "http", "listen", OPT_STRING, F(http_listen), NULL, .flags = OPT_RESTART,
      .check = check_listen, .hint = "use host:port, e.g. 127.0.0.1:8080" },
    { "http", "socket", OPT_PATH, F(http_socket), "/run/drd/drd.sock", .flags = OPT_RESTART },
    { "http", "token_file", OPT_SECRET_FILE, F(http_token_file), NULL, .flags = OPT_RESTART,
      .secret = F(http_token) },
    { "http", "web_root", OPT_PATH, F(http_web_root), "web", .flags = OPT_RESTART },
    { "http", "session_ttl", OPT_DURATION, F(http_session_ttl_ms), "12h", .min = 60000, .max = 30 * 24 * MS_H },
    { "http", "metrics", OPT_ENUM, F(http_metrics), "open", .words = metrics_words },
    { "http", "secure_cookie", OPT_BOOL, F(http_secure_cookie), "false", .flags = 0 },

    { "state", "db", OPT_PATH, F(state_db), "/var/lib/drd/drd.db", .flags = OPT_RESTART },

    { "notify", "webhook", OPT_STRING, F(notify_webhook), NULL, .flags = OPT_SECRET,
      .check = check_http_url, .hint = "use an http:// or https:// URL" },
    { "notify", "format", OPT_ENUM, F(notify_format), "slack", .words = format_words },
    { "notify", "retries", OPT_INT, F(notify_retries), "5", .min = 0, .max = 100 },
    { "notify", "timeout", OPT_DURATION, F(notify_timeout_ms), "5s", .min = 100, .max = MS_M },
    { "notify", "queue", OPT_INT, F(notify_queue), "100", .min = 1, .max = 100000 },

    { "sync", "schemas", OPT_STRING, F(sync_schemas), "public", .flags = 0 },
    { "sync", "exclude", OPT_STRING, F(sync_exclude), NULL, .flags = 0 },
    { "sync", "no_pk", OPT_ENUM, F(sync_no_pk), "refuse", .words = no_pk_words },
    { "sync", "conflicts", OPT_ENUM, F(sync_conflicts), "ask", .words = conflict_words },
    { "sync", "mode", OPT_ENUM, F(sync_mode), "incremental", .words = sync_mode_words },
    { "sync", "parallel", OPT_INT, F(sync_parallel), "4", .min = 1, .max = 32 },

    { "refresh", "mode", OPT_ENUM, F(refresh_mode), "off", .words = refresh_words },
    { "refresh", "every", OPT_DURATION, F(refresh_every_ms), NULL, .min = 1000, .max = 365 * 24 * MS_H },
    { "refresh", "schedule", OPT_STRING, F(refresh_schedule), NULL,
      .check = cron_valid, .hint = "use five cron fields, e.g. 0 2 * * 0" },
    { "refresh", "dir", OPT_PATH, F(refresh_dir), "/var/lib/drd/dumps", .flags = 0 },
    { "refresh", "keep", OPT_INT, F(refresh_keep), "7", .min = 1, .max = 1000 },
    { "refresh", "max_age", OPT_DURATION, F(refresh_max_age_ms), "30d", .min = MS_H, .max = 3650 * 24 * MS_H },
    { "refresh", "max_lag", OPT_DURATION, F(refresh_max_lag_ms), "5m", .min = 1000, .max = 365 * 24 * MS_H },
    { "refresh", "jobs", OPT_INT, F(refresh_jobs), "2", .min = 1, .max = 32 },
    { "refresh", "publication", OPT_STRING, F(refresh_publication), "drd_pub", .flags = 0 },
    { "refresh", "subscription", OPT_STRING, F(refresh_subscription), "drd_sub", .flags = 0 },
    { "refresh", "source_url", OPT_URL, F(refresh_source_url), NULL, .flags = OPT_SECRET },
    { "refresh", "tables", OPT_STRING, F(refresh_tables), NULL, .flags = 0 },
    { "refresh", "change_columns", OPT_STRING, F(refresh_change_columns), "updated_at, created_at", .flags = 0 },
    { "refresh", "lookback", OPT_DURATION, F(refresh_lookback_ms), "5m", .min = 0, .max = 7 * 24 * MS_H },
    { "refresh", "batch", OPT_INT, F(refresh_batch), "500", .min = 1, .max = 100000 },
    { "refresh", "full_every", OPT_DURATION, F(refresh_full_every_ms), "24h", .min = 1000, .max = 365 * 24 * MS_H },
    { "refresh", "deletes", OPT_ENUM, F(refresh_deletes), "auto", .words = deletes_words },
    { "refresh", "compare_every", OPT_DURATION, F(refresh_compare_every_ms), "1h", .min = 1000, .max = 365 * 24 * MS_H },
    { "refresh", "egress_budget", OPT_STRING, F(refresh_egress_budget), NULL,
      .check = check_size, .hint = "use a size, e.g. 5GB or 500MB" },

    { "log", "level", OPT_ENUM, F(log_level), "info", .words = level_words },

    { "check", "every", OPT_DURATION, F(check_every_ms), "1h", .min = 0, .max = 30 * 24 * MS_H },

    { "drill", "primary_url", OPT_URL, F(drill_primary_url), NULL, .flags = OPT_SECRET },
    { "drill", "primary_app_url", OPT_URL, F(drill_primary_app_url), NULL, .flags = OPT_SECRET },
    { "drill", "backup_url", OPT_URL, F(drill_backup_url), NULL, .flags = OPT_SECRET },
    { "drill", "backup_app_url", OPT_URL, F(drill_backup_app_url), NULL, .flags = OPT_SECRET },
    { "drill", "env_file", OPT_PATH, F(drill_env_file), NULL, .flags = 0 },
    { "drill", "start", OPT_STRING, F(drill_start), NULL, .flags = 0 },
    { "drill", "stop", OPT_STRING, F(drill_stop), NULL, .flags = 0 },
    { "drill", "health_url", OPT_STRING, F(drill_health_url), NULL,
      .check = check_http_url, .hint = "use an http:// or https:// URL" },
    { "drill", "fault", OPT_STRING, F(drill_fault), NULL, .flags = 0 },
    { "drill", "restore", OPT_STRING, F(drill_restore), NULL, .flags = 0 },
    { "drill", "dir", OPT_PATH, F(drill_dir), NULL, .flags = 0 },
    { "drill", "rows", OPT_INT, F(drill_rows), "100", .min = 1, .max = 1000000 },
    { "drill", "timeout", OPT_DURATION, F(drill_timeout_ms), "10m", .min = 10000, .max = 24 * MS_H },
    { "drill", "warn_after", OPT_DURATION, F(drill_warn_after_ms), "30d", .min = 0, .max = 3650 * 24 * MS_H },
};

#undef F

#define N_OPTIONS ARRAY_LEN(options)

static char **field_str(const config_t *c, size_t offset)
{
    return (char **)((char *)(uintptr_t)c + offset);
}

static int64_t *field_i64(const config_t *c, size_t offset)
{
    return (int64_t *)((char *)(uintptr_t)c + offset);
}

static bool *field_bool(const config_t *c, size_t offset)
{
    return (bool *)((char *)(uintptr_t)c + offset);
}

static bool opt_is_string(const config_option *o)
{
    return o->type != OPT_DURATION && o->type != OPT_INT && o->type != OPT_BOOL;
}

static const config_option *option_find(const char *section, const char *key)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].section, section) == 0 && strcmp(options[i].key, key) == 0)
            return &options[i];
    return NULL;
}

/* Index of the first option of a section, or -1 if it is unknown. */
static int section_index(const char *section)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].section, section) == 0)
            return (int)i;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

typedef struct {
    config_t *c;
    const char *path;            /* as given by the caller, for messages */
    config_errors errs;          /* sorted by line before handing back */
    bool set[N_OPTIONS];         /* the file gave a value (even a bad one) */
    int header_line[N_OPTIONS];  /* per section_index(): first [header] */
} load_ctx;

static void load_error(load_ctx *x, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void load_error(load_ctx *x, int line, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r < 0) {
        fputs("drd: out of memory while reporting a configuration error\n", stderr);
        abort();
    }
    if (line > 0)
        config_error_add(&x->errs, "%s:%d: %s", x->path, line, msg);
    else
        config_error_add(&x->errs, "%s: %s", x->path, msg);
    free(msg);
}

static int entry_line(const config_t *c, const char *section, const char *key)
{
    for (size_t i = 0; i < c->n_entries; i++)
        if (strcmp(c->entries[i].key, key) == 0 && strcmp(c->entries[i].section, section) == 0)
            return c->entries[i].line;
    return 0;
}

static bool entry_add(config_t *c, const char *section, const char *key,
                      const char *value, int line)
{
    struct config_entry *grown = realloc(c->entries, (c->n_entries + 1) * sizeof *grown);
    if (grown == NULL)
        return false;
    c->entries = grown;
    struct config_entry *e = &c->entries[c->n_entries];
    e->section = strdup(section);
    e->key = strdup(key);
    e->value = strdup(value);
    e->line = line;
    if (e->section == NULL || e->key == NULL || e->value == NULL) {
        free(e->section);
        free(e->key);
        free(e->value);
        return false;
    }
    c->n_entries++;
    return true;
}

static bool url_ok(load_ctx *x, const config_option *o, const char *v, int line)
{
    if (strncmp(v, "postgresql://", 13) == 0 || strncmp(v, "postgres://", 11) == 0)
        return true;
    const char *sep = strstr(v, "://");
    if (sep != NULL) {
        /* Name the scheme, never the URL: it may hold a password. */
        size_t n = (size_t)(sep - v);
        bool plain = n > 0 && n <= 32;
        for (size_t i = 0; plain && i < n; i++)
            plain = isalnum((unsigned char)v[i]) || v[i] == '+' || v[i] == '-' || v[i] == '.';
        if (plain)
            load_error(x, line, "unsupported scheme \"%.*s\" for %s in [%s] "
                       "(use a postgresql:// URL or key=value conninfo)",
                       (int)n, v, o->key, o->section);
        else
            load_error(x, line, "bad %s in [%s] (use a postgresql:// URL or key=value conninfo)",
                       o->key, o->section);
        return false;
    }
    if (strchr(v, '=') == NULL) {
        load_error(x, line, "bad %s in [%s] (use a postgresql:// URL or key=value conninfo)",
                   o->key, o->section);
        return false;
    }
    return true;
}

/* Parse one value (from the file, or a default with line 0) into c. */
static void option_set(load_ctx *x, const config_option *o, const char *v, int line)
{
    config_t *c = x->c;
    char lo[32], hi[32];

    if (*v == '\0') {
        if ((o->flags & (OPT_REQUIRED | OPT_DEFAULT_URL)) || o->def != NULL)
            load_error(x, line, "empty value for %s in [%s]", o->key, o->section);
        /* else: explicitly unset, the field stays NULL */
        return;
    }
    if (o->check != NULL && !o->check(v)) {
        if (o->flags & OPT_SECRET)
            load_error(x, line, "bad value for %s in [%s] (%s)", o->key, o->section, o->hint);
        else
            load_error(x, line, "bad value \"%s\" for %s in [%s] (%s)",
                       v, o->key, o->section, o->hint);
        return;
    }

    switch (o->type) {
    case OPT_STRING:
    case OPT_URL:
    case OPT_ENUM: {
        const char *store = v;
        if (o->type == OPT_URL && !url_ok(x, o, v, line))
            return;
        if (o->type == OPT_ENUM) {
            store = NULL;
            for (size_t i = 0; o->words[i] != NULL && store == NULL; i++)
                if (strcasecmp(o->words[i], v) == 0)
                    store = o->words[i];
            if (store == NULL) {
                strbuf words = { 0 };
                for (size_t i = 0; o->words[i] != NULL; i++) {
                    if (i > 0)
                        sb_adds(&words, o->words[i + 1] == NULL ? " or " : ", ");
                    sb_adds(&words, o->words[i]);
                }
                load_error(x, line, "bad value \"%s\" for %s in [%s] (use %s)",
                           v, o->key, o->section, words.s ? words.s : "?");
                free(words.s);
                return;
            }
        }
        char *copy = strdup(store);
        if (copy == NULL) {
            load_error(x, line, "out of memory");
            return;
        }
        free(*field_str(c, o->offset));
        *field_str(c, o->offset) = copy;
        return;
    }
    case OPT_PATH:
    case OPT_SECRET_FILE: {
        char *resolved = config_path(c, v);
        if (resolved == NULL) {
            load_error(x, line, "out of memory");
            return;
        }
        free(*field_str(c, o->offset));
        *field_str(c, o->offset) = resolved;
        return;
    }
    case OPT_DURATION: {
        int64_t ms;
        if (!parse_duration_ms(v, &ms)) {
            load_error(x, line, "bad duration \"%s\" for %s in [%s] (use e.g. 500ms, 10s, 5m, 1h)",
                       v, o->key, o->section);
            return;
        }
        if (ms < o->min || ms > o->max) {
            format_ms(o->min, lo, sizeof lo);
            format_ms(o->max, hi, sizeof hi);
            load_error(x, line, "%s in [%s] must be between %s and %s (got %s)",
                       o->key, o->section, lo, hi, v);
            return;
        }
        *field_i64(c, o->offset) = ms;
        return;
    }
    case OPT_INT: {
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0') {
            load_error(x, line, "bad number \"%s\" for %s in [%s]", v, o->key, o->section);
            return;
        }
        if (n < o->min || n > o->max) {
            load_error(x, line, "%s in [%s] must be between %" PRId64 " and %" PRId64 " (got %s)",
                       o->key, o->section, o->min, o->max, v);
            return;
        }
        *field_i64(c, o->offset) = (int64_t)n;
        return;
    }
    case OPT_BOOL: {
        static const char *const yes[] = { "true", "yes", "on", "1" };
        static const char *const no[] = { "false", "no", "off", "0" };
        for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
            if (strcasecmp(v, yes[i]) == 0) {
                *field_bool(c, o->offset) = true;
                return;
            }
            if (strcasecmp(v, no[i]) == 0) {
                *field_bool(c, o->offset) = false;
                return;
            }
        }
        load_error(x, line, "bad value \"%s\" for %s in [%s] (use true or false)",
                   v, o->key, o->section);
        return;
    }
    }
}

static bool config_on_entry(void *arg, const char *section, const char *key,
                            const char *value, int line)
{
    load_ctx *x = arg;
    int si = section_index(section);

    if (key == NULL) {                       /* a [section] header */
        if (si >= 0) {
            if (x->header_line[si] == 0)
                x->header_line[si] = line;
            return true;
        }
        if (strncmp(section, "step ", 5) == 0) {
            load_error(x, line, "[%s] belongs in a runbook file, not in the configuration",
                       section);
            return true;
        }
        const char *best = NULL;
        size_t best_d = 3;
        for (size_t i = 0; i < N_OPTIONS; i++) {
            size_t d = edit_distance(section, options[i].section);
            if (d < best_d) {
                best_d = d;
                best = options[i].section;
            }
        }
        if (best != NULL)
            load_error(x, line, "unknown section [%s] (did you mean [%s]?)", section, best);
        else
            load_error(x, line, "unknown section [%s]", section);
        return true;
    }

    if (!entry_add(x->c, section, key, value, line)) {
        load_error(x, line, "out of memory");
        return false;
    }
    if (si < 0)
        return true;                         /* reported at its header */
    const config_option *o = option_find(section, key);
    if (o == NULL) {
        const char *best = NULL;
        size_t best_d = 3;
        for (size_t i = 0; i < N_OPTIONS; i++) {
            if (strcmp(options[i].section, section) != 0)
                continue;
            size_t d = edit_distance(key, options[i].key);
            if (d < best_d) {
                best_d = d;
                best = options[i].key;
            }
        }
        if (best != NULL)
            load_error(x, line, "unknown key \"%s\" in [%s] (did you mean \"%s\"?)",
                       key, section, best);
        else
            load_error(x, line, "unknown key \"%s\" in [%s]", key, section);
        return true;
    }
    x->set[o - options] = true;
    option_set(x, o, value, line);
    return true;
}

/* Every secret of the configuration, for the masking of everything drd
 * prints and stores (at start and at each reload, before anything can show
 * them): the passwords in URLs and conninfo strings, password=/-u user:pw
 * in commands, whole secret values (a webhook's URL). Secret files register
 * their contents as they are read. Old secrets stay registered: a run
 * started before a reload may still print them. */
static void register_secrets(const config_t *c)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        if (o->type != OPT_STRING && o->type != OPT_URL)
            continue;
        const char *v = *field_str(c, o->offset);
        if (v == NULL)
            continue;
        mask_add_secrets_in(v);
        if (o->type == OPT_STRING && (o->flags & OPT_SECRET))
            mask_add_secret(v);
    }
}

/* First line of a password/token file, trailing whitespace stripped. */
static void secret_file_read(load_ctx *x, const config_option *o)
{
    const char *file = *field_str(x->c, o->offset);
    int line = entry_line(x->c, o->section, o->key);
    size_t len = 0;
    struct stat st;

    if (file == NULL)
        return;
    char *data = read_file(file, SECRET_FILE_MAX, &len);
    if (data == NULL) {
        load_error(x, line, "cannot read %s %s: %s", o->key, file, strerror(errno));
        return;
    }
    data[strcspn(data, "\r\n")] = '\0';
    size_t n = strlen(data);
    while (n > 0 && isspace((unsigned char)data[n - 1]))
        data[--n] = '\0';
    if (n == 0) {
        load_error(x, line, "%s %s is empty", o->key, file);
    } else {
        char *secret = strdup(data);
        if (secret == NULL) {
            load_error(x, line, "out of memory");
        } else {
            log_add_secret(secret);
            *field_str(x->c, o->secret) = secret;
            if (stat(file, &st) == 0 && (st.st_mode & S_IROTH))
                log_warn("%s: %s is readable by every user; chmod o-r it", x->path, file);
        }
    }
    explicit_bzero(data, len);
    free(data);
}

/* The page can be served from dir: its index.html is readable. */
bool config_web_root_ok(const char *dir)
{
    char p[PATH_MAX];
    if (dir == NULL || (size_t)snprintf(p, sizeof p, "%s/index.html", dir) >= sizeof p)
        return false;
    return access(p, R_OK) == 0;
}

/* [http] web_root: as written (relative to this file) when the page is
 * there. When it is not set (default "web") or relative and not there, the
 * installed page: PREFIX/share/drd/web found from the binary's own place
 * (BINDIR/../share/drd/web, so any PREFIX works without a rebuild), then
 * the compiled-in DRD_SHAREDIR/web, then the source tree a binary not
 * installed was built in (BINDIR/../web). An absolute path is never
 * replaced. */
static void web_root_resolve(config_t *c)
{
    const char *raw = config_get(c, "http", "web_root");
    char exe[PATH_MAX], cand[3][PATH_MAX];
    size_t n = 0;

    if (c->http_web_root == NULL || config_web_root_ok(c->http_web_root) || raw == NULL || raw[0] == '/')
        return;
    bool bindir = false;
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            bindir = true;
            if ((size_t)snprintf(cand[n], sizeof cand[n], "%s/../share/drd/web", exe) < sizeof cand[n])
                n++;
        }
    }
    if ((size_t)snprintf(cand[n], sizeof cand[n], "%s/web", DRD_SHAREDIR) < sizeof cand[n])
        n++;
    /* not installed: the source tree it was built in (bin/../web) */
    if (bindir && (size_t)snprintf(cand[n], sizeof cand[n], "%s/../web", exe) < sizeof cand[n])
        n++;
    for (size_t i = 0; i < n; i++) {
        char *real = realpath(cand[i], NULL);
        if (real != NULL && config_web_root_ok(real)) {
            free(c->http_web_root);
            c->http_web_root = real;
            return;
        }
        free(real);
    }
}

int config_line(const config_t *c, const char *section, const char *key)
{
    return entry_line(c, section, key);
}

/* The API token's entropy, estimated from its characters: its length
 * times the bits of the smallest usual alphabet holding all of them
 * (decimal digits, hexadecimal in one case, base64 / base64url, printable
 * ASCII). Exact for tokens made by `openssl rand -hex|-base64`, an upper
 * bound for anything else; base64 padding counts nothing. In millibits. */
static uint64_t token_millibits(const char *t, unsigned *distinct)
{
    bool seen[256] = { false };
    bool digits = true, lower_hex = true, upper_hex = true, b64 = true;
    size_t n = strlen(t), pad = 0;

    *distinct = 0;
    while (pad < n && t[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (!seen[ch])
            (*distinct)++;
        seen[ch] = true;
        digits = digits && isdigit(ch);
        lower_hex = lower_hex && (isdigit(ch) || (ch >= 'a' && ch <= 'f'));
        upper_hex = upper_hex && (isdigit(ch) || (ch >= 'A' && ch <= 'F'));
        b64 = b64 && (isalnum(ch) || ch == '+' || ch == '/' || ch == '-' || ch == '_');
    }
    /* 1000 * log2(10), log2(16), log2(64), log2(95) */
    return (uint64_t)(n - pad) * (digits ? 3321u : lower_hex || upper_hex ? 4000u : b64 ? 6000u : 6569u);
}

/* The bearer token guards failover over the network: drd refuses one a
 * guesser could find (less than 128 bits), at the line of token_file. */
static void token_check(load_ctx *x)
{
    const config_t *c = x->c;
    unsigned distinct = 0;
    uint64_t mbits;

    if (c->http_token == NULL)
        return;
    mbits = token_millibits(c->http_token, &distinct);
    if (distinct < 8)
        load_error(x, entry_line(c, "http", "token_file"),
                   "token_file %s: the token has only %u different characters, so it is not "
                   "random (e.g. openssl rand -hex 32)", c->http_token_file, distinct);
    else if (mbits < 128000)
        load_error(x, entry_line(c, "http", "token_file"),
                   "token_file %s: the token has about %u bits of entropy, 128 are needed "
                   "(32 hex or 22 base64 characters, e.g. openssl rand -hex 32)",
                   c->http_token_file, (unsigned)(mbits / 1000));
}

/* Checks that involve more than one option. Fields may be NULL when an
 * earlier error left them unset. */
static void cross_checks(load_ctx *x)
{
    config_t *c = x->c;

    if (c->probe_interval_ms > 0 && c->probe_timeout_ms > c->probe_interval_ms) {
        int line = entry_line(c, "probe", "timeout");
        if (line == 0)
            line = entry_line(c, "probe", "interval");
        load_error(x, line, "timeout (%s) must not exceed interval (%s) in [probe]",
                   config_get(c, "probe", "timeout"), config_get(c, "probe", "interval"));
    }
    if (c->http_listen != NULL && c->http_token_file == NULL)
        load_error(x, entry_line(c, "http", "listen"),
                   "listen is set, so token_file is required in [http] "
                   "(the HTTP API needs a token)");
    token_check(x);
    if (str_eq(c->failover_fence, "command") && c->failover_fence_command == NULL)
        load_error(x, entry_line(c, "failover", "fence"),
                   "fence = command needs fence_command in [failover]");
    if (c->refresh_every_ms > 0 && c->refresh_every_ms < 60000 && !str_eq(c->refresh_mode, "reconcile"))
        load_error(x, entry_line(c, "refresh", "every"),
                   "every in [refresh] below 1m is for mode = reconcile only");
    if (c->primary.url != NULL && str_eq(c->primary.url, c->backup.url))
        load_error(x, entry_line(c, "backup", "url"),
                   "url in [backup] is the same as url in [primary]");
}

/* The line of "PATH:LINE: ...", or INT_MAX for "PATH: ..." (sorts last). */
static int msg_line(const char *path, const char *msg)
{
    size_t n = strlen(path);
    if (strncmp(msg, path, n) != 0 || msg[n] != ':' || !isdigit((unsigned char)msg[n + 1]))
        return INT_MAX;
    return (int)strtol(msg + n + 1, NULL, 10);
}

/* Stable insertion sort by line, then move into the caller's list. */
static void errors_hand_back(load_ctx *x, config_errors *out)
{
    config_errors *e = &x->errs;
    for (size_t i = 1; i < e->n; i++) {
        char *m = e->msgs[i];
        int l = msg_line(x->path, m);
        size_t j = i;
        while (j > 0 && msg_line(x->path, e->msgs[j - 1]) > l) {
            e->msgs[j] = e->msgs[j - 1];
            j--;
        }
        e->msgs[j] = m;
    }
    if (out == NULL) {
        config_errors_free(e);
        return;
    }
    for (size_t i = 0; i < e->n; i++) {
        char **grown = realloc(out->msgs, (out->n + 1) * sizeof *grown);
        if (grown == NULL) {
            fputs("drd: out of memory while reporting a configuration error\n", stderr);
            abort();
        }
        out->msgs = grown;
        out->msgs[out->n++] = e->msgs[i];
    }
    free(e->msgs);
    e->msgs = NULL;
    e->n = 0;
}

/* Directory of path, made absolute so that a later chdir() (daemon
 * start-up) does not change what relative paths mean. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = NULL;

    if (slash == NULL)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        return NULL;
    char *abs = realpath(dir, NULL);
    if (abs == NULL)
        return dir;
    free(dir);
    return abs;
}

/* ---- the drill environment ---- */

/* [drill] KEY replaces [SECTION] KEY2 in drill mode. */
static const struct {
    const char *drill_key, *section, *key;
    bool required;
} drill_map[] = {
    { "primary_url",     "primary", "url",        true  },
    { "primary_app_url", "primary", "app_url",    false },
    { "backup_url",      "backup",  "url",        true  },
    { "backup_app_url",  "backup",  "app_url",    false },
    { "env_file",        "app",     "env_file",   true  },
    { "start",           "app",     "start",      true  },
    { "stop",            "app",     "stop",       true  },
    { "health_url",      "app",     "health_url", true  },
};

/* Keys of the real environment a drill must not use. */
static const struct { const char *section, *key; } drill_drop[] = {
    { "primary", "password_file" }, { "backup", "password_file" },
    { "http", "listen" }, { "http", "socket" }, { "state", "db" },
    { "notify", "webhook" }, { "refresh", "every" }, { "refresh", "schedule" },
    { "check", "every" }, { "failover", "block" },
};

typedef struct {
    load_ctx *x;
    char *val[ARRAY_LEN(drill_map)];
    int line[ARRAY_LEN(drill_map)];
    char *dir, *state_db;
    int dir_line, drill_line;
} drill_ctx;

static bool drill_collect(void *arg, const char *section, const char *key, const char *value,
                          int line)
{
    drill_ctx *d = arg;
    if (key == NULL) {
        if (strcmp(section, "drill") == 0 && d->drill_line == 0)
            d->drill_line = line;
        return true;
    }
    char **slot = NULL;
    if (strcmp(section, "drill") == 0) {
        if (strcmp(key, "dir") == 0) {
            slot = &d->dir;
            d->dir_line = line;
        }
        for (size_t i = 0; i < ARRAY_LEN(drill_map); i++)
            if (strcmp(key, drill_map[i].drill_key) == 0) {
                slot = &d->val[i];
                d->line[i] = line;
            }
    } else if (strcmp(section, "state") == 0 && strcmp(key, "db") == 0) {
        slot = &d->state_db;
    }
    if (slot != NULL) {
        free(*slot);
        *slot = strdup(value);
    }
    return true;
}

static bool drill_on_entry(void *arg, const char *section, const char *key, const char *value,
                           int line)
{
    drill_ctx *d = arg;
    if (key != NULL) {
        for (size_t i = 0; i < ARRAY_LEN(drill_drop); i++)
            if (strcmp(section, drill_drop[i].section) == 0 && strcmp(key, drill_drop[i].key) == 0)
                return true;
        for (size_t i = 0; i < ARRAY_LEN(drill_map); i++)
            if (strcmp(section, drill_map[i].section) == 0 && strcmp(key, drill_map[i].key) == 0)
                return true;
    }
    return config_on_entry(d->x, section, key, value, line);
}

static char *drill_dir_of(const char *dir, const char *state_db)
{
    if (dir != NULL)
        return strdup(dir);
    const char *db = state_db != NULL ? state_db : "/var/lib/drd/drd.db";
    const char *slash = strrchr(db, '/');
    char *out = NULL;
    if (slash == NULL)
        return strdup("drill");
    if (asprintf(&out, "%.*s/drill", (int)(slash - db), db) < 0)
        return NULL;
    return out;
}

char *config_drill_dir(const config_t *c)
{
    if (c->drill_dir != NULL)
        return strdup(c->drill_dir);
    char *rel = drill_dir_of(NULL, c->state_db), *out = config_path(c, rel);
    free(rel);
    return out;
}

/* Feed the drill's replacements as if the file had them. */
static void drill_inject(drill_ctx *d, const char *path)
{
    load_ctx *x = d->x;
    if (d->drill_line == 0) {
        load_error(x, 0, "no [drill] section: a drill needs its own environment (see README)");
        return;
    }
    for (size_t i = 0; i < ARRAY_LEN(drill_map); i++) {
        if (d->val[i] != NULL)
            config_on_entry(x, drill_map[i].section, drill_map[i].key, d->val[i], d->line[i]);
        else if (drill_map[i].required)
            load_error(x, d->drill_line, "[drill] %s is required for a drill", drill_map[i].drill_key);
    }
    char *dir = drill_dir_of(d->dir, d->state_db), *db = NULL, *sock = NULL;
    if (dir == NULL || asprintf(&db, "%s/drd.db", dir) < 0 || asprintf(&sock, "%s/drd.sock", dir) < 0) {
        load_error(x, 0, "out of memory");
    } else {
        int line = d->dir_line ? d->dir_line : d->drill_line;
        config_on_entry(x, "state", "db", db, line);
        config_on_entry(x, "http", "socket", sock, line);
        config_on_entry(x, "check", "every", "0s", line);
        /* each drill is a new rehearsal: no block from the last one */
        config_on_entry(x, "failover", "block", "0s", line);
    }
    free(dir);
    free(db);
    free(sock);
    (void)path;
}

static config_t *load(const char *path, bool drill, config_errors *errs);

config_t *config_load(const char *path, config_errors *errs)
{
    return load(path, false, errs);
}

config_t *config_load_drill(const char *path, config_errors *errs)
{
    return load(path, true, errs);
}

static config_t *load(const char *path, bool drill, config_errors *errs)
{
    load_ctx x = { 0 };
    drill_ctx dx = { .x = &x };
    bool unreadable = false;
    config_t *c = calloc(1, sizeof *c);

    x.c = c;
    x.path = path;
    if (c == NULL) {
        load_error(&x, 0, "out of memory");
        goto done;
    }
    c->dir = dir_of(path);
    if (c->dir == NULL) {
        load_error(&x, 0, "out of memory");
        goto done;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (asprintf(&c->path, "%s%s%s", c->dir,
                 c->dir[strlen(c->dir) - 1] == '/' ? "" : "/", base) < 0) {
        c->path = NULL;
        load_error(&x, 0, "out of memory");
        goto done;
    }

    if (drill) {
        config_errors ignored = { 0 };       /* the real pass reports them */
        bool unread = false;
        ini_parse(path, drill_collect, &dx, &ignored, &unread);
        config_errors_free(&ignored);
        ini_parse(path, drill_on_entry, &dx, &x.errs, &unreadable);
        if (unreadable)
            goto done;
        drill_inject(&dx, path);
        c->drill = true;
    } else {
        ini_parse(path, config_on_entry, &x, &x.errs, &unreadable);
        if (unreadable)
            goto done;
    }

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        if (x.set[i])
            continue;
        if (o->flags & OPT_REQUIRED) {
            load_error(&x, x.header_line[section_index(o->section)],
                       "missing required key %s in [%s]", o->key, o->section);
        } else if (o->flags & OPT_DEFAULT_URL) {
            const char *url = *field_str(c, option_find(o->section, "url")->offset);
            if (url != NULL && (*field_str(c, o->offset) = strdup(url)) == NULL)
                load_error(&x, 0, "out of memory");
        } else if (o->def != NULL) {
            option_set(&x, o, o->def, 0);
        }
    }
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type == OPT_SECRET_FILE)
            secret_file_read(&x, &options[i]);
    register_secrets(c);
    cross_checks(&x);
    if (x.errs.n == 0)
        web_root_resolve(c);

done:
    for (size_t i = 0; i < ARRAY_LEN(drill_map); i++)
        free(dx.val[i]);
    free(dx.dir);
    free(dx.state_db);
    if (x.errs.n > 0) {
        errors_hand_back(&x, errs);
        config_free(c);
        return NULL;
    }
    return c;
}

static void free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

const config_t *config_ref(const config_t *c)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&((config_t *)c)->refs, 1, memory_order_relaxed);
    return c;
}

void config_free(const config_t *cc)
{
    config_t *c = (config_t *)cc;
    if (c == NULL)
        return;
    /* refs counts the references beyond the first: 0 here means ours is the last */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) > 0)
        return;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (!opt_is_string(&options[i]))
            continue;
        free(*field_str(c, options[i].offset));
        if (options[i].type == OPT_SECRET_FILE)
            free_secret(*field_str(c, options[i].secret));
    }
    for (size_t i = 0; i < c->n_entries; i++) {
        free(c->entries[i].section);
        free(c->entries[i].key);
        free(c->entries[i].value);
    }
    free(c->entries);
    free(c->path);
    free(c->dir);
    free(c);
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */

const char *config_get(const config_t *c, const char *section, const char *key)
{
    if (c == NULL || section == NULL || key == NULL)
        return NULL;
    for (size_t i = 0; i < c->n_entries; i++)
        if (strcmp(c->entries[i].key, key) == 0 && strcmp(c->entries[i].section, section) == 0)
            return c->entries[i].value;
    const config_option *o = option_find(section, key);
    if (o == NULL)
        return NULL;
    if (o->flags & OPT_DEFAULT_URL)
        return config_get(c, section, "url");
    return o->def;
}

char *config_path(const config_t *c, const char *p)
{
    char *out = NULL;
    if (p == NULL)
        return NULL;
    if (p[0] == '/' || c == NULL || c->dir == NULL)
        return strdup(p);
    size_t n = strlen(c->dir);
    if (asprintf(&out, "%s%s%s", c->dir, n > 0 && c->dir[n - 1] == '/' ? "" : "/", p) < 0)
        return NULL;
    return out;
}

char *config_expand(const config_t *c, const char *in, char *err, size_t errlen)
{
    strbuf out = { 0 };
    const char *p = in;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    sb_add(&out, "", 0);
    while (*p != '\0') {
        const char *dollar = strchr(p, '$');
        if (dollar == NULL) {
            sb_adds(&out, p);
            break;
        }
        sb_add(&out, p, (size_t)(dollar - p));
        if (dollar[1] == '$') {
            sb_add(&out, "$", 1);
            p = dollar + 2;
            continue;
        }
        if (dollar[1] != '{') {
            sb_add(&out, "$", 1);
            p = dollar + 1;
            continue;
        }
        const char *name = dollar + 2;
        const char *close = strchr(name, '}');
        if (close == NULL) {
            if (err != NULL)
                snprintf(err, errlen, "unterminated ${ (write $$ for a literal $)");
            goto fail;
        }
        int len = (int)(close - name);
        const char *dot = NULL;
        for (const char *q = name; q < close; q++)
            if (*q == '.')
                dot = q;
        if (dot == NULL || dot == name || dot + 1 == close) {
            if (err != NULL)
                snprintf(err, errlen, "bad variable ${%.*s} (use ${section.key})", len, name);
            goto fail;
        }
        char *section = strndup(name, (size_t)(dot - name));
        char *key = strndup(dot + 1, (size_t)(close - dot - 1));
        const char *value = (section && key) ? config_get(c, section, key) : NULL;
        bool known = section && key && option_find(section, key) != NULL;
        free(section);
        free(key);
        if (value == NULL || (known && *value == '\0')) {
            if (err != NULL) {
                if (known)
                    snprintf(err, errlen, "${%.*s} is not set in the configuration", len, name);
                else
                    snprintf(err, errlen, "unknown variable ${%.*s}", len, name);
            }
            goto fail;
        }
        sb_adds(&out, value);
        p = close + 1;
    }
    if (out.oom) {
        if (err != NULL)
            snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return out.s;

fail:
    free(out.s);
    return NULL;
}

static bool option_equal(const config_option *o, const config_t *a, const config_t *b)
{
    switch (o->type) {
    case OPT_DURATION:
    case OPT_INT:
        return *field_i64(a, o->offset) == *field_i64(b, o->offset);
    case OPT_BOOL:
        return *field_bool(a, o->offset) == *field_bool(b, o->offset);
    default:
        return str_eq(*field_str(a, o->offset), *field_str(b, o->offset));
    }
}

char *config_restart_needed(const config_t *old, const config_t *new_)
{
    strbuf out = { 0 };

    if (old == NULL || new_ == NULL)
        return NULL;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        if (!(o->flags & OPT_RESTART) || option_equal(o, old, new_))
            continue;
        if (out.len > 0)
            sb_adds(&out, ", ");
        sb_adds(&out, o->section);
        sb_adds(&out, ".");
        sb_adds(&out, o->key);
    }
    if (out.oom) {
        free(out.s);
        return NULL;
    }
    return out.s;
}

/* Keep scheme://host, replace the path: a webhook path is usually a secret. */
static void mask_url_path(const char *in, char *out, size_t n)
{
    const char *host = strstr(in, "://");
    const char *slash = host ? strchr(host + 3, '/') : NULL;
    if (slash == NULL || slash[1] == '\0')
        mask_secrets(in, out, n);
    else
        snprintf(out, n, "%.*s/****", (int)(slash - in), in);
}

void config_dump(const config_t *c, FILE *out)
{
    if (c == NULL || out == NULL)
        return;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &options[i];
        char small[64];
        char *masked = NULL;
        const char *text = small;

        switch (o->type) {
        case OPT_DURATION:
            format_ms(*field_i64(c, o->offset), small, sizeof small);
            break;
        case OPT_INT:
            snprintf(small, sizeof small, "%" PRId64, *field_i64(c, o->offset));
            break;
        case OPT_BOOL:
            snprintf(small, sizeof small, "%s", *field_bool(c, o->offset) ? "true" : "false");
            break;
        default: {
            const char *v = *field_str(c, o->offset);
            if (v == NULL) {
                small[0] = '\0';
                break;
            }
            /* Masking can make short secrets longer ("x" -> "****"). */
            size_t n = 2 * strlen(v) + 64;
            masked = malloc(n);
            if (masked == NULL) {
                text = "(out of memory)";
                break;
            }
            if (o->type == OPT_STRING && (o->flags & OPT_SECRET))
                mask_url_path(v, masked, n);
            else
                mask_secrets(v, masked, n);
            log_mask(masked, n);           /* registered passwords, token */
            text = masked;
        }
        }
        fprintf(out, "%s.%s = %s\n", o->section, o->key, text);
        free(masked);
    }
}
