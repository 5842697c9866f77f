/* config.h - drd's INI configuration: one option table drives parsing,
 * defaults, bounds, validation ("FILE:LINE: message"), ${section.key}
 * expansion and masking. Reload = load a fresh config_t, then swap.
 *
 * A config_t is reference-counted: config_load gives one reference, each
 * config_ref() adds one, config_free() drops one and frees at zero. What
 * outlives one loop turn and must keep seeing the configuration it started
 * with (a run, a step, a job) holds a reference for its duration, so a
 * reload, which drops the daemon's reference to the old configuration,
 * never frees it under them. The count is atomic; the rest is immutable
 * once loaded, so any thread may read a configuration it holds. */
#ifndef DRD_CONFIG_H
#define DRD_CONFIG_H

#include "drd/conf/choices.h"
#include "drd/core/log.h"
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char *url;              /* libpq URI or conninfo used by drd's probes */
    char *app_url;          /* what the app gets in DATABASE_URL (default: url) */
    char *password_file;    /* optional; first line is the password */
    char *password;         /* loaded from password_file, or NULL */
} config_target;

/* The choices (choices.h) are parsed once, at load, into their enums. */
typedef struct config {
    char *path;             /* the file this came from */
    char *dir;              /* its directory: relative paths resolve here */

    config_target primary, backup;

    int64_t probe_interval_ms, probe_timeout_ms, probe_cooldown_ms;
    int64_t probe_failures, probe_successes;
    int64_t probe_confirm_ms;    /* 0 = off; else an idle watch connection per target and quick confirmation probes when it drops */

    failover_mode failover_policy;
    int64_t failover_min_outage_ms, failover_block_ms;
    char *failover_runbook;
    fence_mode failover_fence;
    char *failover_fence_command;
    bool failover_fence_required;
    bool failover_require_seen_healthy; /* no policy failover of a primary not seen healthy */

    char *failback_runbook;

    char *app_env_file, *app_env_key, *app_stop, *app_start, *app_health_url;
    char *app_user;          /* optional: run app commands as this user */

    char *http_listen;       /* host:port, or NULL/"" for none */
    char *http_socket;       /* unix socket path */
    char *http_token_file;
    char *http_token;        /* loaded from token_file */
    char *http_web_root;
    int64_t http_session_ttl_ms; /* dashboard sessions expire after this */
    metrics_access http_metrics;
    bool http_secure_cookie;     /* add Secure to the session cookie (behind TLS) */

    char *state_db;

    char *notify_webhook;
    notify_format notify_format;
    int64_t notify_retries, notify_timeout_ms, notify_queue;

    char *sync_schemas;          /* comma-separated */
    char *sync_exclude;          /* comma-separated schema.table patterns, or NULL */
    no_pk_mode sync_no_pk;
    conflicts_mode sync_conflicts;
    sync_mode sync_mode;
    int64_t sync_parallel;

    refresh_mode refresh_mode;
    int64_t refresh_every_ms;    /* 0 = not by interval */
    char *refresh_schedule;      /* cron expression, or NULL */
    char *refresh_dir;
    int64_t refresh_keep, refresh_max_age_ms, refresh_max_lag_ms, refresh_jobs;
    char *refresh_publication, *refresh_subscription;
    /* reconcile mode (and the egress budget, every mode) */
    char *refresh_source_url;    /* NULL: [primary] url; may be a transaction-mode pooler */
    char *refresh_tables;        /* comma-separated schema.table, NULL: every keyed table */
    char *refresh_change_columns; /* candidates in order, and schema.table=column overrides */
    int64_t refresh_lookback_ms, refresh_batch, refresh_full_every_ms, refresh_compare_every_ms;
    deletes_mode refresh_deletes;
    char *refresh_egress_budget; /* a size ("5GB"), NULL: no budget */

    log_level log_level;

    int64_t check_every_ms;      /* [check] every: readiness checks in drd; 0 = off */

    /* [drill]: the rehearsal environment (drd --drill, drctl drill) */
    char *drill_primary_url, *drill_primary_app_url, *drill_backup_url, *drill_backup_app_url;
    char *drill_env_file, *drill_start, *drill_stop, *drill_health_url;
    char *drill_fault, *drill_restore; /* make the primary unreachable / bring it back */
    char *drill_dir;             /* the drill drd's state and socket (default: next to [state] db) */
    int64_t drill_rows, drill_timeout_ms, drill_warn_after_ms;
    bool drill;                  /* this config is the drill environment (config_load_drill) */

    /* every (section, key, value, line) as read, for ${section.key} */
    struct config_entry { char *section, *key, *value; int line; } *entries;
    size_t n_entries;

    atomic_int refs;             /* references beyond the first (config_ref) */
} config_t;

typedef struct {
    char **msgs;             /* "FILE:LINE: message" or "FILE: message" */
    size_t n;
} config_errors;

/* Parse and validate. Returns NULL if there was any error (all collected
 * in errs, which the caller frees with config_errors_free). */
config_t *config_load(const char *path, config_errors *errs);
/* The drill environment of the file at path: as config_load, with [drill]
 * primary_url, primary_app_url, backup_url, backup_app_url, env_file,
 * start, stop and health_url in place of the [primary], [backup] and [app]
 * keys (password_file dropped), state and socket in [drill] dir, no TCP
 * listener, webhook, scheduled refresh or scheduled checks; drill = true.
 * A [drill] key needed for that and missing is a "FILE:LINE:" error. */
config_t *config_load_drill(const char *path, config_errors *errs);
/* [drill] dir as configured or derived from [state] db (malloc'd). */
char *config_drill_dir(const config_t *c);
/* Another reference to c (returns c; accepts NULL). */
const config_t *config_ref(const config_t *c);
/* Drop a reference; the last one frees c. Accepts NULL. */
void config_free(const config_t *c);
void config_errors_free(config_errors *e);
void config_error_add(config_errors *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Raw value of section.key as written in the file (after defaults are
 * applied for table options), or NULL. Sections like "step x" allowed. */
const char *config_get(const config_t *c, const char *section, const char *key);

/* Expand ${section.key} references in `in`. Returns a malloc'd string, or
 * NULL with a message in err naming the unknown variable. "$$" is "$". */
char *config_expand(const config_t *c, const char *in, char *err, size_t errlen);

/* Line of section.key in the file, 0 when it was not written there. */
int config_line(const config_t *c, const char *section, const char *key);
/* The page (index.html) can be served from dir. */
bool config_web_root_ok(const char *dir);

/* Resolve a path relative to the config file's directory (malloc'd). */
char *config_path(const config_t *c, const char *p);

/* Options that need a restart to change; returns a malloc'd, comma
 * separated list of the ones that differ, or NULL if none. */
char *config_restart_needed(const config_t *old, const config_t *new_);

/* Print every option with its effective value, secrets masked (drd -n -v). */
void config_dump(const config_t *c, FILE *out);

/* The INI reader behind config_load, also for runbook files.
 * Syntax: "[section]" (name trimmed, may contain spaces: "[step stop-app]");
 * "key = value" (key: a-z 0-9 _ -); full-line comments start with # or ;;
 * an inline comment is whitespace followed by # ("a ; b" stays "a ; b");
 * a value in double quotes is literal (may hold #), with \" and \\ escapes;
 * no line length limit; a UTF-8 BOM is skipped; CRLF is accepted; section
 * names and values must be valid UTF-8.
 * on_entry is called for each "key = value" in file order, and once per
 * section header with key == NULL and value == NULL (so empty sections and
 * header lines are seen). Strings are only valid during the call. Return
 * false from on_entry to stop reading. Syntax errors ("FILE:LINE: ...":
 * line without "=", key outside a section, bad key, malformed header,
 * unterminated quote, duplicate key in a section) are added to errs and
 * reading goes on. Returns false if the file could not be read, on_entry
 * stopped it, or any error was added to errs during the call. */
typedef bool (*ini_entry_fn)(void *arg, const char *section, const char *key,
                             const char *value, int line);
bool ini_read(const char *path,
              bool (*on_entry)(void *arg, const char *section, const char *key,
                               const char *value, int line),
              void *arg, config_errors *errs);

#endif
