/* check.h - `drctl check`: a preflight that changes nothing and tells
 * whether a failover and a failback would work (config, both databases,
 * the backup writable, the env file, the app commands, health URL,
 * privileges, backup lag, dump disk, webhook). Each check has its own
 * deadline; they run concurrently (one short-lived thread each). */
#ifndef DRD_CHECK_H
#define DRD_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "drd/conf/config.h"

/* Run every check against cfg. status: the daemon's /api/status document,
 * or NULL when unreachable (the active side then comes from the state
 * db's kv 'active', else primary). deadline_ms: mono_ms() bound for the
 * whole run (each check gets at most 2 s of it). Returns an array of
 * {name, status: "ok"|"warn"|"fail", reason, fix} (secrets masked), or
 * NULL on allocation failure. Needs curl_global_init() done. */
json_t *check_run(const config_t *cfg, const json_t *status, int64_t deadline_ms);

/* The array for a configuration that did not load: one failing `config`
 * check whose reason lists the FILE:LINE messages. */
json_t *check_config_failed(const config_errors *errs);

/* One line per check: "ok|warn|fail  NAME  reason  (fix: ...)". */
void check_print(const json_t *checks, FILE *out);

/* Whether the program an (expanded) shell command starts resolves as
 * /bin/sh, started by drd in the config's directory, would find it: a
 * builtin, a path (relative from the config's directory) to an executable
 * file, or a name on PATH; leading VAR=value words skipped. why says which,
 * or why not. Used by the `app-commands` check and the dry run. */
bool check_command_resolves(const config_t *cfg, const char *cmd, char *why, size_t n);

/* Whether [app] env_file exists and drd may rewrite it (read, write, and
 * write its directory: it replaces the file by a rename). why says what
 * holds or not, fix how to fix it. Used by the `env-file` check and the
 * run's preflight. */
bool check_env_writable(const config_t *cfg, char *why, size_t wn, char *fix, size_t fn);

/* true when any check failed. */
bool check_any_failed(const json_t *checks);

#endif
