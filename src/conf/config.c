/* config.c - drd.conf. A small line-based INI reader (shared with runbook
 * files) and ONE option table that drives parsing, defaults, bounds,
 * validation, ${section.key} expansion, config_dump and the list of
 * options that need a restart. Add a setting = add a row to config_options[].
 *
 * Errors are collected, never printed here: every message is
 * "FILE:LINE: message" (or "FILE: message" when there is no line), and
 * config_load hands them back sorted by line so they read in file order.
 *
 * The files of the loader: see config_int.h. */
#include "config_int.h"
#include "drd/pg/pgconn.h"

/* Where `make install` puts the page (-DDRD_SHAREDIR from PREFIX). */
#ifndef DRD_SHAREDIR
#define DRD_SHAREDIR "/usr/local/share/drd"
#endif

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
/* Loading                                                             */

void cfg_load_error(load_ctx *x, int line, const char *fmt, ...)
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

bool config_on_entry(void *arg, const char *section, const char *key,
                     const char *value, int line)
{
    load_ctx *x = arg;
    int si = cfg_section_index(section);

    if (key == NULL) {                       /* a [section] header */
        if (si >= 0) {
            if (x->header_line[si] == 0)
                x->header_line[si] = line;
            return true;
        }
        if (strncmp(section, "step ", 5) == 0) {
            cfg_load_error(x, line, "[%s] belongs in a runbook file, not in the configuration",
                           section);
            return true;
        }
        const char *best = NULL;
        size_t best_d = 3;
        for (size_t i = 0; i < N_OPTIONS; i++) {
            size_t d = cfg_edit_distance(section, config_options[i].section);
            if (d < best_d) {
                best_d = d;
                best = config_options[i].section;
            }
        }
        if (best != NULL)
            cfg_load_error(x, line, "unknown section [%s] (did you mean [%s]?)", section, best);
        else
            cfg_load_error(x, line, "unknown section [%s]", section);
        return true;
    }

    if (!entry_add(x->c, section, key, value, line)) {
        cfg_load_error(x, line, "out of memory");
        return false;
    }
    if (si < 0)
        return true;                         /* reported at its header */
    const config_option *o = cfg_option_find(section, key);
    if (o == NULL) {
        const char *best = NULL;
        size_t best_d = 3;
        for (size_t i = 0; i < N_OPTIONS; i++) {
            if (strcmp(config_options[i].section, section) != 0)
                continue;
            size_t d = cfg_edit_distance(key, config_options[i].key);
            if (d < best_d) {
                best_d = d;
                best = config_options[i].key;
            }
        }
        if (best != NULL)
            cfg_load_error(x, line, "unknown key \"%s\" in [%s] (did you mean \"%s\"?)",
                           key, section, best);
        else
            cfg_load_error(x, line, "unknown key \"%s\" in [%s]", key, section);
        return true;
    }
    x->set[o - config_options] = true;
    cfg_option_set(x, o, value, line);
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
        const config_option *o = &config_options[i];
        if (o->type != OPT_STRING && o->type != OPT_URL)
            continue;
        const char *v = *cfg_field_str(c, o->offset);
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
    const char *file = *cfg_field_str(x->c, o->offset);
    int line = entry_line(x->c, o->section, o->key);
    size_t len = 0;
    struct stat st;

    if (file == NULL)
        return;
    char *data = read_file(file, SECRET_FILE_MAX, &len);
    if (data == NULL) {
        cfg_load_error(x, line, "cannot read %s %s: %s", o->key, file, strerror(errno));
        return;
    }
    data[strcspn(data, "\r\n")] = '\0';
    size_t n = strlen(data);
    while (n > 0 && isspace((unsigned char)data[n - 1]))
        data[--n] = '\0';
    if (n == 0) {
        cfg_load_error(x, line, "%s %s is empty", o->key, file);
    } else {
        char *secret = strdup(data);
        if (secret == NULL) {
            cfg_load_error(x, line, "out of memory");
        } else {
            log_add_secret(secret);
            *cfg_field_str(x->c, o->secret) = secret;
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
        cfg_load_error(x, entry_line(c, "http", "token_file"),
                       "token_file %s: the token has only %u different characters, so it is not "
                       "random (e.g. openssl rand -hex 32)", c->http_token_file, distinct);
    else if (mbits < 128000)
        cfg_load_error(x, entry_line(c, "http", "token_file"),
                       "token_file %s: the token has about %u bits of entropy, 128 are needed "
                       "(32 hex or 22 base64 characters, e.g. openssl rand -hex 32)",
                       c->http_token_file, (unsigned)(mbits / 1000));
}

/* One database per side (issue 12): refresh, capture, sync-back and the
 * sequences work in the database app_url names, with url's role; when
 * app_url names none, in url's. The app, though, then gets libpq's
 * default, its user's name: if that is not url's database, drd would keep
 * fresh, capture and sync back a database the app does not use. (When
 * either URL names no user, the fence already refuses it.) */
static void one_database(load_ctx *x, const config_target *t, const char *section)
{
    char *app_db = t->app_url != NULL ? pgconn_dbname(t->app_url) : NULL;
    char au[128], ad[128], uu[128], ud[128];
    if (app_db == NULL && t->app_url != NULL && t->url != NULL &&
        pgconn_identity(t->app_url, au, sizeof au, ad, sizeof ad) &&
        pgconn_identity(t->url, uu, sizeof uu, ud, sizeof ud) && strcmp(ad, ud) != 0)
        cfg_load_error(x, entry_line(x->c, section, "app_url"),
                       "app_url in [%s] names no database, so the app uses \"%s\" (its user's name,"
                       " libpq's default) while drd refreshes, captures and syncs back in \"%s\""
                       " (url's): name the database in app_url", section, ad, ud);
    free(app_db);
}

/* Checks that involve more than one option. Fields may be NULL when an
 * earlier error left them unset. */
static void cross_checks(load_ctx *x)
{
    config_t *c = x->c;

    one_database(x, &c->primary, "primary");
    one_database(x, &c->backup, "backup");

    if (c->probe_interval_ms > 0 && c->probe_timeout_ms > c->probe_interval_ms) {
        int line = entry_line(c, "probe", "timeout");
        if (line == 0)
            line = entry_line(c, "probe", "interval");
        cfg_load_error(x, line, "timeout (%s) must not exceed interval (%s) in [probe]",
                       config_get(c, "probe", "timeout"), config_get(c, "probe", "interval"));
    }
    if (c->http_listen != NULL && c->http_token_file == NULL)
        cfg_load_error(x, entry_line(c, "http", "listen"),
                       "listen is set, so token_file is required in [http] "
                       "(the HTTP API needs a token)");
    token_check(x);
    if (c->failover_fence == FENCE_COMMAND && c->failover_fence_command == NULL)
        cfg_load_error(x, entry_line(c, "failover", "fence"),
                       "fence = command needs fence_command in [failover]");
    bool reconcile = c->refresh_mode == REFRESH_RECONCILE;
    if (c->refresh_every_ms > 0 && c->refresh_every_ms < (reconcile ? 1000 : 60000))
        cfg_load_error(x, entry_line(c, "refresh", "every"), "every in [refresh] must be at least %s",
                       reconcile ? "1s" : "1m (1s with mode = reconcile)");
    if (c->primary.url != NULL && str_eq(c->primary.url, c->backup.url))
        cfg_load_error(x, entry_line(c, "backup", "url"),
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
    bool unreadable = false;
    config_t *c = calloc(1, sizeof *c);

    x.c = c;
    x.path = path;
    if (c == NULL) {
        cfg_load_error(&x, 0, "out of memory");
        goto done;
    }
    c->dir = dir_of(path);
    if (c->dir == NULL) {
        cfg_load_error(&x, 0, "out of memory");
        goto done;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (asprintf(&c->path, "%s%s%s", c->dir,
                 c->dir[strlen(c->dir) - 1] == '/' ? "" : "/", base) < 0) {
        c->path = NULL;
        cfg_load_error(&x, 0, "out of memory");
        goto done;
    }

    if (drill) {
        if (!config_drill_read(&x, path))
            goto done;
        c->drill = true;
    } else {
        ini_parse(path, config_on_entry, &x, &x.errs, &unreadable);
        if (unreadable)
            goto done;
    }

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &config_options[i];
        if (x.set[i])
            continue;
        if (o->flags & OPT_REQUIRED) {
            cfg_load_error(&x, x.header_line[cfg_section_index(o->section)],
                           "missing required key %s in [%s]", o->key, o->section);
        } else if (o->flags & OPT_DEFAULT_URL) {
            const char *url = *cfg_field_str(c, cfg_option_find(o->section, "url")->offset);
            if (url != NULL && (*cfg_field_str(c, o->offset) = strdup(url)) == NULL)
                cfg_load_error(&x, 0, "out of memory");
        } else if (o->def != NULL) {
            cfg_option_set(&x, o, o->def, 0);
        }
    }
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (config_options[i].type == OPT_SECRET_FILE)
            secret_file_read(&x, &config_options[i]);
    register_secrets(c);
    cross_checks(&x);
    if (x.errs.n == 0)
        web_root_resolve(c);

done:
    if (x.errs.n > 0) {
        errors_hand_back(&x, errs);
        config_free(c);
        return NULL;
    }
    return c;
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
        if (!cfg_opt_is_string(&config_options[i]))
            continue;
        free(*cfg_field_str(c, config_options[i].offset));
        if (config_options[i].type == OPT_SECRET_FILE)
            str_free_secret(*cfg_field_str(c, config_options[i].secret));
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
    const config_option *o = cfg_option_find(section, key);
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
    sb_addn(&out, "", 0);
    while (*p != '\0') {
        const char *dollar = strchr(p, '$');
        if (dollar == NULL) {
            sb_add(&out, p);
            break;
        }
        sb_addn(&out, p, (size_t)(dollar - p));
        if (dollar[1] == '$') {
            sb_addn(&out, "$", 1);
            p = dollar + 2;
            continue;
        }
        if (dollar[1] != '{') {
            sb_addn(&out, "$", 1);
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
        bool known = section && key && cfg_option_find(section, key) != NULL;
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
        sb_add(&out, value);
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
