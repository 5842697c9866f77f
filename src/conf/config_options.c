/* config_options.c - THE option table (add a setting = add a row to
 * config_options[]), setting a value from its text with its checks, and what
 * the table drives besides loading: config_dump and config_restart_needed. */
#include "config_int.h"

/* ------------------------------------------------------------------ */
/* The option table                                                    */

/* The choices' words are their enums' name tables (choices.h, log.h);
 * an OPT_ENUM field is its enum, stored through an int. */
_Static_assert(sizeof(failover_mode) == sizeof(int) && sizeof(fence_mode) == sizeof(int) &&
               sizeof(metrics_access) == sizeof(int) && sizeof(notify_format) == sizeof(int) &&
               sizeof(no_pk_mode) == sizeof(int) && sizeof(conflicts_mode) == sizeof(int) &&
               sizeof(sync_mode) == sizeof(int) && sizeof(refresh_mode) == sizeof(int) &&
               sizeof(deletes_mode) == sizeof(int) && sizeof(log_level) == sizeof(int),
               "OPT_ENUM fields are stored as int");

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

const config_option config_options[] = {
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

    { "failover", "policy", OPT_ENUM, F(failover_policy), "approve", .words = failover_mode_names },
    { "failover", "min_outage", OPT_DURATION, F(failover_min_outage_ms), "0s",
      .min = 0, .max = 24 * MS_H },
    { "failover", "block", OPT_DURATION, F(failover_block_ms), "1h",
      .min = 0, .max = 7 * 24 * MS_H },
    { "failover", "runbook", OPT_PATH, F(failover_runbook), "runbooks/failover.ini", .flags = 0 },
    { "failover", "fence", OPT_ENUM, F(failover_fence), "read-only", .words = fence_mode_names },
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
    { "http", "metrics", OPT_ENUM, F(http_metrics), "open", .words = metrics_access_names },
    { "http", "secure_cookie", OPT_BOOL, F(http_secure_cookie), "false", .flags = 0 },

    { "state", "db", OPT_PATH, F(state_db), "/var/lib/drd/drd.db", .flags = OPT_RESTART },

    { "notify", "webhook", OPT_STRING, F(notify_webhook), NULL, .flags = OPT_SECRET,
      .check = check_http_url, .hint = "use an http:// or https:// URL" },
    { "notify", "format", OPT_ENUM, F(notify_format), "slack", .words = notify_format_names },
    { "notify", "retries", OPT_INT, F(notify_retries), "5", .min = 0, .max = 100 },
    { "notify", "timeout", OPT_DURATION, F(notify_timeout_ms), "5s", .min = 100, .max = MS_M },
    { "notify", "queue", OPT_INT, F(notify_queue), "100", .min = 1, .max = 100000 },

    { "sync", "schemas", OPT_STRING, F(sync_schemas), "public", .flags = 0 },
    { "sync", "exclude", OPT_STRING, F(sync_exclude), NULL, .flags = 0 },
    { "sync", "no_pk", OPT_ENUM, F(sync_no_pk), "refuse", .words = no_pk_mode_names },
    { "sync", "conflicts", OPT_ENUM, F(sync_conflicts), "ask", .words = conflicts_mode_names },
    { "sync", "mode", OPT_ENUM, F(sync_mode), "incremental", .words = sync_mode_names },
    { "sync", "parallel", OPT_INT, F(sync_parallel), "4", .min = 1, .max = 32 },

    { "refresh", "mode", OPT_ENUM, F(refresh_mode), "off", .words = refresh_mode_names },
    { "refresh", "every", OPT_DURATION, F(refresh_every_ms), NULL, .min = 0, .max = 365 * 24 * MS_H },
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
    { "refresh", "deletes", OPT_ENUM, F(refresh_deletes), "auto", .words = deletes_mode_names },
    { "refresh", "compare_every", OPT_DURATION, F(refresh_compare_every_ms), "10m", .min = 1000, .max = 365 * 24 * MS_H },
    { "refresh", "egress_budget", OPT_STRING, F(refresh_egress_budget), NULL,
      .check = check_size, .hint = "use a size, e.g. 5GB or 500MB" },

    { "log", "level", OPT_ENUM, F(log_level), "info", .words = log_level_names },

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

const size_t config_n_options = ARRAY_LEN(config_options);
_Static_assert(ARRAY_LEN(config_options) <= CONFIG_OPTIONS_MAX, "raise CONFIG_OPTIONS_MAX");

char **cfg_field_str(const config_t *c, size_t offset)
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

static int *field_enum(const config_t *c, size_t offset)
{
    return (int *)((char *)(uintptr_t)c + offset);
}

bool cfg_opt_is_string(const config_option *o)
{
    return o->type != OPT_DURATION && o->type != OPT_INT && o->type != OPT_BOOL &&
           o->type != OPT_ENUM;
}

const config_option *cfg_option_find(const char *section, const char *key)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(config_options[i].section, section) == 0 && strcmp(config_options[i].key, key) == 0)
            return &config_options[i];
    return NULL;
}

/* Index of the first option of a section, or -1 if it is unknown. */
int cfg_section_index(const char *section)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(config_options[i].section, section) == 0)
            return (int)i;
    return -1;
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
            cfg_load_error(x, line, "unsupported scheme \"%.*s\" for %s in [%s] "
                           "(use a postgresql:// URL or key=value conninfo)",
                           (int)n, v, o->key, o->section);
        else
            cfg_load_error(x, line, "bad %s in [%s] (use a postgresql:// URL or key=value conninfo)",
                           o->key, o->section);
        return false;
    }
    if (strchr(v, '=') == NULL) {
        cfg_load_error(x, line, "bad %s in [%s] (use a postgresql:// URL or key=value conninfo)",
                       o->key, o->section);
        return false;
    }
    return true;
}

/* One of o->words (any case) into its enum; else an error naming them. */
static void enum_set(load_ctx *x, const config_option *o, const char *v, int line)
{
    for (int i = 0; o->words[i] != NULL; i++)
        if (strcasecmp(o->words[i], v) == 0) {
            *field_enum(x->c, o->offset) = i;
            return;
        }
    strbuf words = { 0 };
    for (size_t i = 0; o->words[i] != NULL; i++) {
        if (i > 0)
            sb_add(&words, o->words[i + 1] == NULL ? " or " : ", ");
        sb_add(&words, o->words[i]);
    }
    cfg_load_error(x, line, "bad value \"%s\" for %s in [%s] (use %s)",
                   v, o->key, o->section, words.s ? words.s : "?");
    free(words.s);
}

/* Parse one value (from the file, or a default with line 0) into c.
 * One case per option type, as a table would read: kept as one switch. */
void cfg_option_set(load_ctx *x, const config_option *o, const char *v, int line)
{
    config_t *c = x->c;
    char lo[32], hi[32];

    if (*v == '\0') {
        if ((o->flags & (OPT_REQUIRED | OPT_DEFAULT_URL)) || o->def != NULL)
            cfg_load_error(x, line, "empty value for %s in [%s]", o->key, o->section);
        /* else: explicitly unset, the field stays NULL */
        return;
    }
    if (o->check != NULL && !o->check(v)) {
        if (o->flags & OPT_SECRET)
            cfg_load_error(x, line, "bad value for %s in [%s] (%s)", o->key, o->section, o->hint);
        else
            cfg_load_error(x, line, "bad value \"%s\" for %s in [%s] (%s)",
                           v, o->key, o->section, o->hint);
        return;
    }

    switch (o->type) {
    case OPT_STRING:
    case OPT_URL: {
        if (o->type == OPT_URL && !url_ok(x, o, v, line))
            return;
        char *copy = strdup(v);
        if (copy == NULL) {
            cfg_load_error(x, line, "out of memory");
            return;
        }
        free(*cfg_field_str(c, o->offset));
        *cfg_field_str(c, o->offset) = copy;
        return;
    }
    case OPT_ENUM:
        enum_set(x, o, v, line);
        return;
    case OPT_PATH:
    case OPT_SECRET_FILE: {
        char *resolved = config_path(c, v);
        if (resolved == NULL) {
            cfg_load_error(x, line, "out of memory");
            return;
        }
        free(*cfg_field_str(c, o->offset));
        *cfg_field_str(c, o->offset) = resolved;
        return;
    }
    case OPT_DURATION: {
        int64_t ms;
        if (!parse_duration_ms(v, &ms)) {
            cfg_load_error(x, line, "bad duration \"%s\" for %s in [%s] (use e.g. 500ms, 10s, 5m, 1h)",
                           v, o->key, o->section);
            return;
        }
        if (ms < o->min || ms > o->max) {
            cfg_format_ms(o->min, lo, sizeof lo);
            cfg_format_ms(o->max, hi, sizeof hi);
            cfg_load_error(x, line, "%s in [%s] must be between %s and %s (got %s)",
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
            cfg_load_error(x, line, "bad number \"%s\" for %s in [%s]", v, o->key, o->section);
            return;
        }
        if (n < o->min || n > o->max) {
            cfg_load_error(x, line, "%s in [%s] must be between %" PRId64 " and %" PRId64 " (got %s)",
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
        cfg_load_error(x, line, "bad value \"%s\" for %s in [%s] (use true or false)",
                       v, o->key, o->section);
        return;
    }
    }
}

static bool option_equal(const config_option *o, const config_t *a, const config_t *b)
{
    switch (o->type) {
    case OPT_DURATION:
    case OPT_INT:
        return *field_i64(a, o->offset) == *field_i64(b, o->offset);
    case OPT_BOOL:
        return *field_bool(a, o->offset) == *field_bool(b, o->offset);
    case OPT_ENUM:
        return *field_enum(a, o->offset) == *field_enum(b, o->offset);
    default:
        return str_eq(*cfg_field_str(a, o->offset), *cfg_field_str(b, o->offset));
    }
}

char *config_restart_needed(const config_t *old, const config_t *new_)
{
    strbuf out = { 0 };

    if (old == NULL || new_ == NULL)
        return NULL;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const config_option *o = &config_options[i];
        if (!(o->flags & OPT_RESTART) || option_equal(o, old, new_))
            continue;
        if (out.len > 0)
            sb_add(&out, ", ");
        sb_add(&out, o->section);
        sb_add(&out, ".");
        sb_add(&out, o->key);
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
        const config_option *o = &config_options[i];
        char small[64];
        char *masked = NULL;
        const char *text = small;

        switch (o->type) {
        case OPT_DURATION:
            cfg_format_ms(*field_i64(c, o->offset), small, sizeof small);
            break;
        case OPT_INT:
            snprintf(small, sizeof small, "%" PRId64, *field_i64(c, o->offset));
            break;
        case OPT_BOOL:
            snprintf(small, sizeof small, "%s", *field_bool(c, o->offset) ? "true" : "false");
            break;
        case OPT_ENUM:
            /* the index is one of o->words': enum_set stored it */
            snprintf(small, sizeof small, "%s", o->words[*field_enum(c, o->offset)]);
            break;
        default: {
            const char *v = *cfg_field_str(c, o->offset);
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
