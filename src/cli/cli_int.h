/* cli_int.h - what the files of drctl share (drctl is a client: none of
 * this is linked into drd).
 *
 *   drctl.c   usage, arguments, the config and token, main
 *   client.c  HTTP to drd (libcurl), error reporting, JSON output
 *   print.c   status and history (with the read-only database fallback)
 *   cmd.c     the commands that act (followed to their end), check,
 *             grants, the --dry-run plan
 *   drill.c   the drill orchestrator (`drctl drill`)
 */
#ifndef DRD_CLI_INT_H
#define DRD_CLI_INT_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <jansson.h>

#include "drd/engine/attention.h"
#include "drd/check/check.h"
#include "drd/check/plan.h"
#include "drd/check/privs.h"
#include "drd/conf/config.h"
#include "drd/conf/envfile.h"
#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/engine/policy.h"
#include "drd/engine/status.h"
#include "drd/store/store.h"
#include "drd/core/tty.h"
#include "drd/core/strbuf.h"
#include "drd/core/util.h"
#include "drd/engine/views.h"

#define DEFAULT_CONFIG   "/etc/drd/drd.conf"
#define DEFAULT_SOCKET   "/run/drd/drd.sock"
#define CONNECT_TIMEOUT_MS 2000L
#define TOTAL_TIMEOUT_MS   10000L
#define MAX_REPLY        (16 * 1024 * 1024)
#define HISTORY_INCIDENTS 20
#define HISTORY_EVENTS    50
#define HISTORY_RUNS      10

typedef struct {
    /* command line */
    const char *config_path;
    bool config_explicit;
    const char *url;             /* --url: TCP instead of the unix socket */
    const char *token_file;
    const char *command;
    const char *args[4];         /* positional arguments after the command */
    size_t nargs;
    bool json, yes, skip;
    bool once;                   /* refresh --once: wait for a running one, then one more */
    bool dry_run;                /* failover|failback --dry-run */
    bool drill;                  /* --drill: the [drill] environment's drd */
    const char *choice;          /* approve --choice WORD (--skip = skip) */
    const char *reason;
    bool has_reason;

    /* resolved */
    config_t *cfg;
    const char *state_db;
    char *own_socket, *own_db;   /* when the config had errors */
    char *token;                 /* never printed */
    const char *socket_path;
} drctl;

/* An HTTP answer's body (NULL .s: none). */
typedef strbuf buffer;

typedef enum {
    CALL_OK,                     /* an HTTP answer (any status) */
    CALL_UNREACHABLE,            /* no answer: refused, missing socket, timeout */
    CALL_BAD_URL,                /* --url is unusable */
} call_rc;

/* drctl.c */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int load_token(drctl *x);

/* client.c */
void endpoint_name(const drctl *x, char *out, size_t n);
call_rc http_call(const drctl *x, const char *method, const char *path,
                  const char *body, long *code, buffer *reply,
                  char *err, size_t errlen);
int report_unreachable(const drctl *x, call_rc rc, const char *err);
json_t *human(json_t *v);
int report_http_error(long code, const buffer *reply);
int get_json(const drctl *x, const char *path, json_t **doc, bool *unreachable);
void print_json(json_t *doc);

/* print.c */
const char *str_or(json_t *v, const char *dflt);
void format_time(json_t *v, char *buf, size_t n);
int cmd_status(const drctl *x);
store_t *fallback_store(const drctl *x);
int cmd_history(const drctl *x);

/* cmd.c */
int post_action(const drctl *x, const char *path, const char *label, int64_t *request_id);
void sleep_ms(long ms);
int await_request(const drctl *x, int64_t id, int64_t *run_id);
int cmd_refreshes(const drctl *x);
int cmd_unblock(const drctl *x);
int cmd_refresh(const drctl *x);
int cmd_failover(const drctl *x, bool back);
int cmd_decide(const drctl *x, bool approve);
int cmd_check(drctl *x);
int cmd_grants(drctl *x);
int cmd_plan(drctl *x, bool back);

/* drill.c */
int cmd_drill(drctl *x);

#endif
