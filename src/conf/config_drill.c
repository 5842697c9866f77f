/* config_drill.c - loading drd.conf for a drill: the [drill] section
 * replaces the real environment's connections, app and state. */
#include "config_int.h"

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
        cfg_load_error(x, 0, "no [drill] section: a drill needs its own environment (see README)");
        return;
    }
    for (size_t i = 0; i < ARRAY_LEN(drill_map); i++) {
        if (d->val[i] != NULL)
            config_on_entry(x, drill_map[i].section, drill_map[i].key, d->val[i], d->line[i]);
        else if (drill_map[i].required)
            cfg_load_error(x, d->drill_line, "[drill] %s is required for a drill", drill_map[i].drill_key);
    }
    char *dir = drill_dir_of(d->dir, d->state_db), *db = NULL, *sock = NULL;
    if (dir == NULL || asprintf(&db, "%s/drd.db", dir) < 0 || asprintf(&sock, "%s/drd.sock", dir) < 0) {
        cfg_load_error(x, 0, "out of memory");
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

/* The drill pass of config_load_drill: [drill] collected first, then the
 * file read with the drill's substitutions, then the drill environment
 * injected. False when the file cannot be read. */
bool config_drill_read(load_ctx *x, const char *path)
{
    drill_ctx dx = { .x = x };
    config_errors ignored = { 0 };       /* the real pass reports them */
    bool unread = false, unreadable = false;

    ini_parse(path, drill_collect, &dx, &ignored, &unread);
    config_errors_free(&ignored);
    ini_parse(path, drill_on_entry, &dx, &x->errs, &unreadable);
    if (!unreadable)
        drill_inject(&dx, path);
    for (size_t i = 0; i < ARRAY_LEN(drill_map); i++)
        free(dx.val[i]);
    free(dx.dir);
    free(dx.state_db);
    return !unreadable;
}
