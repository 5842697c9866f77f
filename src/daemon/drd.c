/* drd.c - the supervisor daemon's main: arguments, signals and wiring.
 *
 *   drd -c FILE [-f]     run (in the foreground with -f)
 *   drd -c FILE -n       check the configuration and exit
 */
#include "drd/http/api.h"
#include "drd/engine/attention.h"
#include "drd/engine/commands.h"
#include "drd/conf/config.h"
#include "drd/conf/envfile.h"
#include "drd/engine/executor.h"
#include "drd/core/crash.h"
#include "drd/core/fetch.h"
#include "drd/core/log.h"
#include "drd/core/loop.h"
#include "drd/engine/metrics.h"
#include "drd/engine/monitor.h"
#include "drd/engine/notify.h"
#include "drd/engine/policy.h"
#include "drd/engine/readiness.h"
#include "drd/engine/snapshot.h"
#include "drd/refresh/refresh.h"
#include "drd/conf/runbook.h"
#include "drd/store/store.h"
#include "drd/core/util.h"
#include "drd/core/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DRD_VERSION
#define DRD_VERSION "0.1.0"
#endif

typedef struct {
    const char *config_path;
    config_t *cfg;
    loop_t *loop;
    store_t *store;
    api_t *api;
    monitor_t *monitor;
    fetch_t *fetch;
    executor_t *executor;
    policy_t *policy;
    refresh_t *refresh;
    notify_t *notify;
    readiness_t *readiness;
    snapshot_t *snapshot;    /* assembles and publishes the status */
    bool drill;              /* -D: the [drill] environment */
    uint64_t drill_timer;    /* -D: grants pending approvals (on_drill_grant) */
    metrics_counters counters;
    int64_t approvals_pending;   /* as last published */
    bool app_stopped;            /* as last published (attention.app_stopped) */
    int sigfd;
    int lockfd;
    int ready_fd;            /* write end of the pipe the parent waits on (-1 with -f) */
    int64_t started_at;      /* wall ms */
} daemon_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: drd -c FILE [-f] [-D] [-n [-v]]\n"
            "Watches the [primary] and [backup] databases of FILE and fails the app over\n"
            "as its [failover] policy says; drctl talks to it.\n"
            "  -c FILE   configuration file (default /etc/drd/drd.conf)\n"
            "  -D        drill: run against the file's [drill] environment (drctl drill\n"
            "            starts it); approvals of approve steps are granted at once\n"
            "  -f        stay in the foreground\n"
            "  -n        check the configuration, print 'configuration OK' or the errors\n"
            "  -v        with -n: also print every option's effective value (secrets masked)\n"
            "  -V        print the version\n"
            "  -h        this help (also --help; --version is -V)\n"
            "Exit status: 0 ok, 1 failure, 2 usage or configuration error.\n");
}

static void print_errors(const config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msgs[i]);
}

static void apply_log_settings(const config_t *cfg)
{
    log_set_level(cfg->log_level);
}

/* Both runbooks must load: a daemon that cannot fail over is misconfigured. */
static bool check_runbooks(const config_t *cfg, config_errors *errs)
{
    runbook_t *a = runbook_load(cfg->failover_runbook, cfg, errs);
    runbook_t *b = runbook_load(cfg->failback_runbook, cfg, errs);
    bool ok = a != NULL && b != NULL;
    ok = refresh_check_config(cfg, errs) && ok;     /* what the parser cannot check */
    runbook_free(a);
    runbook_free(b);
    return ok;
}

/* With [http] listen set, the page must be servable: an error at the line
 * of web_root (or of listen when web_root is the default). */
static bool check_page(const config_t *cfg, config_errors *errs)
{
    if (cfg->http_listen == NULL || cfg->http_listen[0] == '\0' || config_web_root_ok(cfg->http_web_root))
        return true;
    int line = config_line(cfg, "http", "web_root");
    if (line > 0)
        config_error_add(errs, "%s:%d: web_root %s has no readable index.html: the page cannot be served "
                         "(point it at the installed page, PREFIX/share/drd/web, or remove it)",
                         cfg->path, line, cfg->http_web_root);
    else
        config_error_add(errs, "%s:%d: listen is set but the page cannot be served: no index.html in %s "
                         "nor in the installed share directory (make install, or set [http] web_root)",
                         cfg->path, config_line(cfg, "http", "listen"), cfg->http_web_root);
    return false;
}

static void reload(daemon_t *d)
{
    config_errors errs = { 0 };
    config_t *fresh = d->drill ? config_load_drill(d->config_path, &errs)
                               : config_load(d->config_path, &errs);
    if (fresh == NULL) {
        log_error("reload: %s has errors, keeping the running configuration:", d->config_path);
        for (size_t i = 0; i < errs.n; i++)
            log_error("  %s", errs.msgs[i]);
        config_errors_free(&errs);
        return;
    }
    if (!check_runbooks(fresh, &errs)) {
        log_error("reload: a runbook has errors, keeping the running configuration:");
        for (size_t i = 0; i < errs.n; i++)
            log_error("  %s", errs.msgs[i]);
        config_errors_free(&errs);
        config_free(fresh);
        return;
    }
    config_errors_free(&errs);
    char *restart = config_restart_needed(d->cfg, fresh);
    if (restart != NULL) {
        log_warn("reload: %s changed; these take effect after a restart", restart);
        free(restart);
    }
    apply_log_settings(fresh);
    monitor_reconfigure(d->monitor, fresh);
    notify_reconfigure(d->notify, fresh);
    refresh_reconfigure(d->refresh, fresh);
    executor_reconfigure(d->executor, fresh);
    policy_reconfigure(d->policy, fresh);
    readiness_reconfigure(d->readiness, fresh);
    config_free(d->cfg);
    d->cfg = fresh;
    readiness_run_now(d->readiness);
    store_event_add(d->store, wall_ms(), "config", "", "configuration reloaded");
    log_info("reload: configuration reloaded from %s", d->config_path);
}

static void on_signal(loop_t *loop, int fd, short revents, void *arg)
{
    daemon_t *d = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            log_info("received %s, stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            loop_stop(loop);
            break;
        case SIGHUP:
            log_info("received SIGHUP, reloading %s", d->config_path);
            reload(d);
            break;
        default:
            break;
        }
    }
}

/* Render /metrics from the counters and the current state. */
static void publish_metrics(daemon_t *d)
{
    if (d->api == NULL)
        return;
    refresh_egress eg;
    bool eg_ok = refresh_egress_get(d->refresh, wall_ms(), &eg);
    metrics_input in = {
        .c = &d->counters,
        .target = { monitor_target(d->monitor, TARGET_PRIMARY), monitor_target(d->monitor, TARGET_BACKUP) },
        .active = target_name(monitor_active(d->monitor)),
        .run_in_progress = executor_busy(d->executor),
        .approvals_pending = d->approvals_pending,
        .backup_lag_seconds = refresh_lag_seconds(d->refresh),
        .last_refresh_at = refresh_last_good_at(d->refresh),
        .egress_month_bytes = eg_ok ? eg.month_bytes : -1,
        .egress_projected_bytes = eg_ok ? eg.projected : -1,
        .egress_budget_bytes = eg_ok ? eg.budget : 0,
        .started_at = d->started_at,
        .version = DRD_VERSION,
        .ready = readiness_ready(d->readiness),
        .checks = readiness_checks(d->readiness),
        .last_drill_ok_at = readiness_drill_ok_at(d->readiness),
        .app_stopped = d->app_stopped,
    };
    char *text = metrics_render(&in);
    if (text != NULL)
        api_publish_metrics(d->api, text);
    free(text);
}

#define KV_APP_STOPPED_TOLD "app_stopped_notified"   /* run id last notified */

/* A run failed or waits while the app is stopped: say it loudly, once per
 * run (also across restarts). */
static void tell_app_stopped(daemon_t *d, const json_t *att)
{
    char told[32] = "", text[900];
    json_int_t run = json_integer_value(json_object_get(att, "run_id"));
    store_kv_get(d->store, KV_APP_STOPPED_TOLD, told, sizeof told);
    if (strtoll(told, NULL, 10) == (long long)run)
        return;
    snprintf(told, sizeof told, "%lld", (long long)run);
    store_kv_set(d->store, KV_APP_STOPPED_TOLD, told);
    const char *step = json_string_value(json_object_get(att, "step"));
    snprintf(text, sizeof text, "drd: THE APP IS STOPPED: %s run %lld %s%s%s: %s",
             json_string_value(json_object_get(att, "kind")), (long long)run,
             run_state_of(json_string_value(json_object_get(att, "state"))) == RUN_WAITING
                 ? "waits for a decision" : "ended",
             step != NULL ? " at step " : "", step != NULL ? step : "",
             json_string_value(json_object_get(att, "reason")));
    char msg[600];
    str_copy(msg, text + 5, sizeof msg);
    store_event_add(d->store, wall_ms(), "run", "", msg);
    log_warn("%s", msg);
    json_t *f = json_pack("{s:I, s:O}", "run_id", run, "attention", att);
    notify_send(d->notify, "app_stopped", text, f);
    json_decref(f);
}

/* refresh's interlock reads the engine through these (refresh_gate). */
static bool gate_app_on_backup(void *arg)
{
    return monitor_active(((daemon_t *)arg)->monitor) == TARGET_BACKUP;
}

static bool gate_run_active(void *arg)
{
    return ((daemon_t *)arg)->executor != NULL && executor_busy(((daemon_t *)arg)->executor);
}

static breaker_state gate_primary_breaker(void *arg)
{
    return monitor_breaker(((daemon_t *)arg)->monitor, TARGET_PRIMARY);
}

static void gate_notify(void *arg, const char *event, const char *text)
{
    notify_send(((daemon_t *)arg)->notify, event, text, NULL);
}

static void on_drill_grant(loop_t *loop, void *arg);

/* What the status shows of the engine changed (a run, an approval, the
 * policy, a refresh, readiness): the snapshot publishes it at the end of
 * this loop turn. */
static void republish(void *arg)
{
    daemon_t *d = arg;
    if (d->drill && d->drill_timer == 0)          /* grant what was just asked, from the loop */
        d->drill_timer = loop_add_timer(d->loop, 0, on_drill_grant, d);
    snapshot_changed(d->snapshot, SNAPSHOT_ENGINE);
}

/* A probe, a transition, the active side. */
static void targets_changed(void *arg)
{
    snapshot_changed(((daemon_t *)arg)->snapshot, SNAPSHOT_TARGETS);
}

/* The snapshot's document: to the HTTP side, then the metrics and the
 * app-stopped notification that derive from it. */
static void on_status(void *arg, const char *text, const json_t *doc, bool engine)
{
    daemon_t *d = arg;
    api_publish_status(d->api, text);
    if (engine) {
        json_t *att = json_object_get(doc, "attention");
        d->approvals_pending = (int64_t)json_array_size(json_object_get(doc, "approvals"));
        d->app_stopped = json_is_true(json_object_get(att, "app_stopped"));
        if (d->app_stopped)
            tell_app_stopped(d, att);
    }
    publish_metrics(d);
}

static json_t *status_now(void *arg)
{
    daemon_t *d = arg;
    return d->snapshot != NULL ? snapshot_status(d->snapshot) : NULL;
}

static void on_transition(void *arg, target_id t, const breaker_transition *tr)
{
    daemon_t *d = arg;
    char text[600];
    const store_target *st = monitor_target(d->monitor, t);
    if (tr->from == BREAKER_CLOSED && tr->to == BREAKER_OPEN) {
        snprintf(text, sizeof text, "drd: the %s database is down (%s)%s%s", target_name(t), tr->reason,
                 st->last_error[0] ? ": " : "", st->last_error);
        json_t *f = json_pack("{s:s}", "target", target_name(t));
        notify_send(d->notify, "incident_start", text, f);
        json_decref(f);
    } else if (tr->to == BREAKER_CLOSED) {
        snprintf(text, sizeof text, "drd: the %s database is available again", target_name(t));
        json_t *f = json_pack("{s:s}", "target", target_name(t));
        notify_send(d->notify, "incident_end", text, f);
        json_decref(f);
    }
    policy_on_transition(d->policy, t, tr);
    readiness_run_now(d->readiness);     /* what it checks just changed */
    republish(d);
}

static void on_probe(void *arg, target_id t, const probe_result *r)
{
    daemon_t *d = arg;
    policy_on_probe(d->policy, t, r);
}

static void on_misconfig(void *arg, target_id t, bool misconfigured)
{
    daemon_t *d = arg;
    char text[600];
    const store_target *st = monitor_target(d->monitor, t);
    json_t *f = json_pack("{s:s,s:s?}", "target", target_name(t), "cause",
                          misconfigured ? st->cause : NULL);
    if (misconfigured)
        snprintf(text, sizeof text, "drd: the %s database refuses drd (%s): %s. A misconfiguration, not an "
                 "outage: no failover until it is fixed", target_name(t), probe_class_name(st->error_class),
                 st->cause);
    else
        snprintf(text, sizeof text, "drd: the %s database no longer refuses drd", target_name(t));
    notify_send(d->notify, misconfigured ? "misconfigured" : "misconfigured_end", text, f);
    json_decref(f);
    republish(d);
}

static void on_run_done(void *arg, int64_t run_id, const char *kind, run_state state)
{
    daemon_t *d = arg;
    policy_on_run_done(d->policy, run_id, kind, state);
    readiness_run_now(d->readiness);     /* the active side, the fence, the ledger changed */
    republish(d);
}

/* A drill report from drctl drill: masked, stored, shown. */
static bool record_drill(daemon_t *d, const char *body, char *err, size_t errlen)
{
    json_t *doc = body != NULL ? json_loads(body, 0, NULL) : NULL;
    store_drill dr;
    bool ok = false;
    memset(&dr, 0, sizeof dr);
    if (doc == NULL) {
        snprintf(err, errlen, "malformed drill report");
        return false;
    }
    dr.started_at = json_integer_value(json_object_get(doc, "started_at"));
    dr.ended_at = json_integer_value(json_object_get(doc, "ended_at"));
    str_copy(dr.result, json_string_value(json_object_get(doc, "result")), sizeof dr.result);
    json_decref(doc);
    /* "****" may be longer than the password it replaces (at most 4x) */
    size_t n = 4 * strlen(body) + 16;
    char *masked = malloc(n);
    if (masked == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    mask_secrets(body, masked, n);
    dr.report = masked;
    int64_t id = store_drill_add(d->store, &dr);
    if (id == 0) {
        snprintf(err, errlen, "the drill report could not be stored");
    } else {
        char msg[160];
        snprintf(msg, sizeof msg, "drill %lld recorded: %s", (long long)id, dr.result);
        store_event_add(d->store, wall_ms(), "drill", "", msg);
        log_info("%s", msg);
        readiness_drill_recorded(d->readiness);
        readiness_run_now(d->readiness);
        ok = true;
    }
    free(masked);
    return ok;
}

/* Decide an approval: the policy's or the active run's. */
static bool decide_approval(daemon_t *d, int64_t id, bool approve, const char *choice, const char *by,
                            const char *reason, int64_t *run, char *err, size_t errlen)
{
    store_approval a;
    *run = 0;
    if (!store_approval_get(d->store, id, &a)) {
        snprintf(err, errlen, "no approval %lld", (long long)id);
        return false;
    }
    if (approval_kind_of(a.kind) == APPROVAL_POLICY)
        return policy_decide(d->policy, id, approve, by, reason, run, err, errlen);
    *run = a.run_id;
    return executor_decide(d->executor, id, approve, choice, by, reason, err, errlen);
}

/* Inside a drill (drd -D) the approvals the policy and approve steps ask
 * for are granted at once, by "drill", here and only here; a step that
 * needs attention is not: the drill fails there. */
static bool collect_grantable(const store_approval *a, void *arg)
{
    int64_t *ids = arg;
    approval_kind k = approval_kind_of(a->kind);
    for (int i = 0; i < 8; i++)
        if (ids[i] == 0 && (k == APPROVAL_POLICY || k == APPROVAL_STEP)) {
            ids[i] = a->id;
            break;
        }
    return true;
}

static void on_drill_grant(loop_t *loop, void *arg)
{
    daemon_t *d = arg;
    int64_t ids[8] = { 0 }, run;
    char err[256];
    d->drill_timer = 0;
    store_approvals_pending(d->store, collect_grantable, ids);
    for (int i = 0; i < 8 && ids[i] != 0; i++)
        if (!decide_approval(d, ids[i], true, NULL, "drill", "granted inside a drill", &run, err, sizeof err))
            log_warn("drill: approval %lld: %s", (long long)ids[i], err);
}

/* The engine's operations a request calls (commands.h). */
static int64_t op_failover(void *arg, const char *reason, const char *by, int64_t request_id,
                           char *err, size_t errlen)
{
    return policy_failover(((daemon_t *)arg)->policy, reason, by, request_id, err, errlen);
}

static int64_t op_failback(void *arg, const char *reason, const char *by, int64_t request_id,
                           char *err, size_t errlen)
{
    daemon_t *d = arg;
    int64_t incident = store_incident_find_open(d->store, target_name(TARGET_PRIMARY));
    return executor_start(d->executor, "failback", reason, by, request_id, incident > 0 ? incident : 0,
                          err, errlen);
}

static bool op_decide(void *arg, int64_t approval_id, bool approve, const char *choice, const char *by,
                      const char *reason, int64_t *run_id, char *err, size_t errlen)
{
    return decide_approval(arg, approval_id, approve, choice, by, reason, run_id, err, errlen);
}

static bool op_refresh(void *arg, char *err, size_t errlen)
{
    return refresh_request(((daemon_t *)arg)->refresh, REFRESH_BY_HAND, err, errlen) != 0;
}

static bool op_check(void *arg, char *err, size_t errlen)
{
    daemon_t *d = arg;
    if (d->readiness == NULL) {
        str_copy(err, "readiness checks are not available", errlen);
        return false;
    }
    readiness_run_now(d->readiness);
    return true;
}

static bool op_drill(void *arg, const char *body, char *err, size_t errlen)
{
    return record_drill(arg, body, err, errlen);
}

static bool op_unblock(void *arg, const char *by, char *err, size_t errlen)
{
    return policy_unblock(((daemon_t *)arg)->policy, by, err, errlen);
}

/* Carry out one queued API request and record what became of it. */
static void handle_cmd(daemon_t *d, const command *c)
{
    const command_ops ops = { d, op_failover, op_failback, op_decide, op_refresh, op_check, op_drill,
                              op_unblock };
    store_request rq;
    commands_handle(&ops, c, wall_ms(), &rq);
    store_request_put(d->store, &rq);
    republish(d);
}

static void on_api_cmd(loop_t *loop, int fd, short revents, void *arg)
{
    daemon_t *d = arg;
    command *c;
    while ((c = command_queue_pop(api_commands(d->api))) != NULL) {
        handle_cmd(d, c);
        command_free(c);
    }
}

/* The env file is what the app really uses: at start the active side
 * follows it (an operator may have switched it by hand, or drd died between
 * a switch-env's rename and recording the new side). */
static void sync_active_from_env(daemon_t *d)
{
    const config_t *c = d->cfg;
    char value[4096], err[512];
    if (c->app_env_file == NULL || c->app_env_key == NULL)
        return;
    if (!envfile_get(c->app_env_file, c->app_env_key, value, sizeof value, err, sizeof err)) {
        if (err[0] != '\0')
            log_warn("cannot read %s to see which database the app uses: %s", c->app_env_file, err);
        else
            log_warn("%s has no %s: the app uses neither database", c->app_env_file, c->app_env_key);
        return;
    }
    target_id side = strcmp(value, c->backup.app_url) == 0 ? TARGET_BACKUP
                   : strcmp(value, c->primary.app_url) == 0 ? TARGET_PRIMARY : TARGET_COUNT;
    target_id was = monitor_active(d->monitor);
    if (side == TARGET_COUNT) {
        log_warn("%s in %s matches neither [primary] nor [backup] app_url; keeping active = %s",
                 c->app_env_key, c->app_env_file, target_name(was));
        return;
    }
    if (side != was) {
        char msg[256];
        snprintf(msg, sizeof msg, "the env file points at the %s: active side is now %s (was %s)",
                 target_name(side), target_name(side), target_name(was));
        log_warn("%s", msg);
        store_event_add(d->store, wall_ms(), "daemon", "", msg);
        monitor_set_active(d->monitor, side);
    }
}

/* One daemon per state database: an exclusive lock next to it. */
static bool lock_state(daemon_t *d)
{
    char path[PATH_MAX], err[512];
    if ((size_t)snprintf(path, sizeof path, "%s.lock", d->cfg->state_db) >= sizeof path) {
        log_error("state db path too long");
        return false;
    }
    if (!mkdir_parents(path, 0700, err, sizeof err)) {
        log_error("%s", err);
        return false;
    }
    d->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lockfd < 0) {
        log_error("cannot open lock file %s: %s", path, strerror(errno));
        return false;
    }
    if (flock(d->lockfd, LOCK_EX | LOCK_NB) != 0) {
        log_error("another drd is already running with state %s", d->cfg->state_db);
        return false;
    }
    return true;
}

/* Without -f: fork, let the child start, and exit 0 in the parent once the
 * child reports it is ready (or 1 if it dies first). */
static int background(daemon_t *d)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        perror("drd: pipe");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("drd: fork");
        return -1;
    }
    if (pid > 0) {
        char c;
        close(p[1]);
        ssize_t r = read(p[0], &c, 1);
        _exit(r == 1 ? EXIT_OK : EXIT_FAILURE_);
    }
    close(p[0]);
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
    d->ready_fd = p[1];
    return 0;
}

/* The command line. -1 to go on, or an exit code. */
static int parse_cli(int argc, char **argv, daemon_t *d, bool *foreground, bool *check_only,
                     bool *verbose)
{
    int opt;

    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    while ((opt = getopt_long(argc, argv, "c:fnvhVD", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': d->config_path = optarg; break;
        case 'D': d->drill = true; break;
        case 'f': *foreground = true; break;
        case 'n': *check_only = true; break;
        case 'v': *verbose = true; break;
        case 'V': printf("drd %s\n", DRD_VERSION); return EXIT_OK;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_BAD_CONFIG;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EXIT_BAD_CONFIG;
    }
    return -1;
}

/* The config and its runbooks (drd -n stops here). -1 to go on, or an
 * exit code. */
static int load_checked_config(daemon_t *d, bool check_only, bool verbose)
{
    config_errors errs = { 0 };
    d->cfg = d->drill ? config_load_drill(d->config_path, &errs) : config_load(d->config_path, &errs);
    if (d->cfg == NULL) {
        print_errors(&errs);
        config_errors_free(&errs);
        return EXIT_BAD_CONFIG;
    }
    if (!check_runbooks(d->cfg, &errs) || (!d->drill && !check_page(d->cfg, &errs))) {
        print_errors(&errs);
        config_errors_free(&errs);
        config_free(d->cfg);
        d->cfg = NULL;
        return EXIT_BAD_CONFIG;
    }
    config_errors_free(&errs);
    if (check_only) {
        printf("configuration OK\n");
        if (verbose)
            config_dump(d->cfg, stdout);
        config_free(d->cfg);
        d->cfg = NULL;
        return EXIT_OK;
    }
    return -1;
}

/* SIGTERM, SIGINT and SIGHUP through a signalfd; SIGPIPE ignored. */
static bool signals_setup(daemon_t *d)
{
    signal(SIGPIPE, SIG_IGN);       /* a client going away must not kill us */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    d->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d->sigfd < 0) {
        log_error("signalfd: %s", strerror(errno));
        return false;
    }
    return true;
}

/* Every component, wired to the others, and the loop's fds: the order is
 * the dependency order (store, monitor, notify, executor, policy,
 * refresh, readiness, API). false after logging. */
static bool components_new(daemon_t *d)
{
    char err[512];
    d->loop = loop_new();
    if (d->loop == NULL)
        return false;
    if (!lock_state(d))
        return false;
    d->store = store_open(d->cfg->state_db, err, sizeof err);
    if (d->store == NULL) {
        log_error("cannot open state %s: %s", d->cfg->state_db, err);
        return false;
    }
    d->monitor = monitor_new(d->loop, d->store, d->cfg);
    d->fetch = fetch_new(d->loop);
    if (d->monitor == NULL || d->fetch == NULL)
        return false;
    d->notify = notify_new(d->loop, d->fetch, d->store, d->cfg, &d->counters);
    if (d->notify == NULL)
        return false;
    monitor_set_counters(d->monitor, &d->counters);
    d->executor = executor_new(d->loop, d->store, d->monitor, d->fetch, d->cfg);
    d->policy = d->executor ? policy_new(d->loop, d->store, d->monitor, d->executor, d->fetch, d->cfg) : NULL;
    if (d->policy == NULL)
        return false;
    monitor_set_listeners(d->monitor, on_transition, on_probe, d);
    monitor_set_misconfig_listener(d->monitor, on_misconfig, d);
    executor_set_listeners(d->executor, on_run_done, republish, d);
    executor_set_observers(d->executor, &d->counters, d->notify);
    refresh_gate gate = { d, gate_app_on_backup, gate_run_active, gate_primary_breaker, gate_notify };
    d->refresh = refresh_new(d->loop, d->store, &gate, d->cfg);
    if (d->refresh == NULL)
        return false;
    executor_set_refresh(d->executor, d->refresh);
    refresh_set_listener(d->refresh, republish, d);
    policy_set_refresh(d->policy, d->refresh);
    policy_set_observers(d->policy, &d->counters, d->notify);
    policy_set_change_cb(d->policy, republish, d);
    if (!d->drill) {
        d->readiness = readiness_new(d->loop, d->store, d->notify, d->cfg, d->config_path, status_now,
                                    republish, d);
        if (d->readiness == NULL)
            return false;
    }
    api_options ao = {
        .listen = d->cfg->http_listen,
        .socket_path = d->cfg->http_socket,
        .token = d->cfg->http_token,
        .db_path = d->cfg->state_db,
        .web_root = d->cfg->http_web_root,
        .session_ttl_ms = d->cfg->http_session_ttl_ms,
        .metrics_need_token = d->cfg->http_metrics == METRICS_TOKEN,
        .secure_cookie = d->cfg->http_secure_cookie,
    };
    d->api = api_start(&ao, err, sizeof err);
    if (d->api == NULL) {
        log_error("cannot start the API: %s", err);
        return false;
    }
    snapshot_parts sp = { .monitor = d->monitor, .executor = d->executor, .policy = d->policy,
                          .refresh = d->refresh, .readiness = d->readiness, .store = d->store,
                          .cfg = (const config_t *const *)&d->cfg, .drill = d->drill };
    d->snapshot = snapshot_new(d->loop, &sp, on_status, d);
    if (d->snapshot == NULL)
        return false;
    monitor_set_change_cb(d->monitor, targets_changed, d);
    if (!loop_add_fd(d->loop, d->sigfd, POLLIN, on_signal, d) ||
        !loop_add_fd(d->loop, command_queue_fd(api_commands(d->api)), POLLIN, on_api_cmd, d))
        return false;
    return true;
}

/* Start everything, run the loop until a signal stops it. */
static void run(daemon_t *d)
{
    char msg[256];
    d->started_at = wall_ms();
    snprintf(msg, sizeof msg, "drd %s started (pid %ld)", DRD_VERSION, (long)getpid());
    store_event_add(d->store, wall_ms(), "daemon", "", msg);
    log_info("%s; socket %s%s%s; state %s", msg, d->cfg->http_socket,
             d->cfg->http_listen && *d->cfg->http_listen ? ", listening on " : "",
             d->cfg->http_listen && *d->cfg->http_listen ? d->cfg->http_listen : "", d->cfg->state_db);
    monitor_start(d->monitor);
    executor_resume(d->executor);
    sync_active_from_env(d);
    policy_start(d->policy);
    refresh_start(d->refresh);
    republish(d);
    sd_notify_send("READY=1");
    if (d->ready_fd >= 0) {
        ssize_t w = write(d->ready_fd, "1", 1);
        (void)w;
        close(d->ready_fd);
        d->ready_fd = -1;
    }

    loop_run(d->loop);

    sd_notify_send("STOPPING=1");
    monitor_flush(d->monitor);
    store_event_add(d->store, wall_ms(), "daemon", "", "drd stopped");
    log_info("stopped");
}

static void daemon_free(daemon_t *d)
{
    if (d->drill_timer)
        loop_cancel_timer(d->loop, d->drill_timer);
    snapshot_free(d->snapshot);
    api_stop(d->api);
    readiness_free(d->readiness);
    policy_free(d->policy);
    refresh_free(d->refresh);
    executor_free(d->executor);
    notify_free(d->notify);
    monitor_free(d->monitor);
    fetch_free(d->fetch);
    store_close(d->store);
    loop_free(d->loop);
    if (d->sigfd >= 0)
        close(d->sigfd);
    if (d->lockfd >= 0)
        close(d->lockfd);
    config_free(d->cfg);
    log_clear_secrets();
}

int main(int argc, char **argv)
{
    daemon_t d = { .config_path = "/etc/drd/drd.conf", .sigfd = -1, .lockfd = -1, .ready_fd = -1 };
    bool foreground = false, check_only = false, verbose = false;
    int rc;

    if ((rc = parse_cli(argc, argv, &d, &foreground, &check_only, &verbose)) >= 0)
        return rc;
    if (getenv("JOURNAL_STREAM") != NULL)
        log_set_journal(true);
    crash_install(getenv("JOURNAL_STREAM") != NULL);   /* a fatal signal prints a backtrace */
    if ((rc = load_checked_config(&d, check_only, verbose)) >= 0)
        return rc;
    apply_log_settings(d.cfg);
    rc = EXIT_FAILURE_;
    if ((foreground || background(&d) == 0) && signals_setup(&d) && components_new(&d)) {
        run(&d);
        rc = EXIT_OK;
    }
    daemon_free(&d);
    /* A detached worker the loop gave up on (a readiness check, a
     * preflight) may still be inside libpq: exit() would run the
     * libraries' destructors under it (libkrb5 aborted so at a stop). */
    if (worker_detached_running() > 0) {
        fflush(NULL);
        _exit(rc);
    }
    return rc;
}
