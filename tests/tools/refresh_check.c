/* refresh_check - drive the refresh module against real clusters, outside
 * the daemon: loads a drd config and builds loop, store, monitor, executor
 * and refresh as src/daemon/drd.c does (no API, no policy).
 *
 *   refresh_check -c CONF [-q] COMMAND
 *     run [manual|schedule]     one refresh now; waits for its end and prints
 *                               its record as JSON; exit 0 succeeded, 1 failed
 *                               or refused
 *     daemon SECONDS [N [KEY]]  refresh_start (schedule, watcher) and run for
 *                               SECONDS, or until N refreshes have ended (0:
 *                               no limit), or until the status JSON's KEY is
 *                               true (KEY), a number above X (KEY>X) or a
 *                               string containing TEXT (KEY~TEXT);
 *                               prints the status JSON and the window text
 *     watch SECONDS INTERVAL_MS logical mode: sample every INTERVAL_MS and
 *                               print "lag_ms N bytes N sub S" lines
 *     disable | recreate | bump the runbook helpers; prints "ok: ..." or
 *                               "fail: ..."; exit 0 / 1
 *     set-active primary|backup the kv "active" (as a failover would)
 *     refreshes                 the recorded refreshes, newest first, JSON lines
 *     check-config              refresh_check_config: errors, exit 2
 *     cancel-after MS           run a refresh and cancel it after MS
 *
 * Used by tests/integration/t_refresh_*.sh and tests/bench_refresh.sh. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/conf/config.h"
#include "drd/engine/executor.h"
#include "drd/core/fetch.h"
#include "drd/core/log.h"
#include "drd/core/loop.h"
#include "drd/engine/monitor.h"
#include "drd/refresh/refresh.h"
#include "drd/store/store.h"
#include "drd/core/util.h"

typedef struct {
    config_t *cfg;
    loop_t *loop;
    store_t *store;
    monitor_t *monitor;
    fetch_t *fetch;
    executor_t *ex;
    refresh_t *refresh;
    int64_t deadline_mono;
    long until;              /* stop after this many refreshes ended (daemon) */
    const char *until_key;   /* or when this status key is true / above until_above */
    double until_above;
    long ended;
    bool was_busy;
    int64_t interval_ms;
    int64_t cancel_at;
    bool helper_done, helper_ok;
    int64_t started_id;
    int64_t started_wall;
    long changes;            /* refresh_set_listener calls */
} tool;

static void on_changed(void *arg)
{
    tool *t = arg;
    t->changes++;
    json_decref(refresh_status_json(t->refresh));     /* callable from the listener */
}

static void usage(void)
{
    fprintf(stderr, "usage: refresh_check -c CONF [-q] run [manual|schedule] | daemon SECONDS [N [KEY[>X|~TEXT]]] |"
                    " watch SECONDS INTERVAL_MS | disable | recreate | bump | set-active SIDE |"
                    " refreshes | check-config | cancel-after MS\n");
}

static bool parse_long(const char *s, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min)
        return false;
    *out = v;
    return true;
}

static json_t *refresh_row_json(const store_refresh *r)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "id", (json_int_t)r->id,
                     "mode", r->mode, "trigger", r->trigger, "state", r->state,
                     "started_at", (json_int_t)r->started_at, "finished_at", (json_int_t)r->finished_at,
                     "bytes", (json_int_t)r->bytes, "file", r->file, "error", r->error);
}

static void print_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    printf("%s\n", s ? s : "null");
    fflush(stdout);
    free(s);
    json_decref(j);
}

typedef struct {
    int64_t id;
    store_refresh row;
    bool found;
} find_ctx;

/* refresh's interlock reads the engine through these (refresh_gate). */
static bool gate_app_on_backup(void *arg)
{
    return monitor_active(((tool *)arg)->monitor) == TARGET_BACKUP;
}

static bool gate_run_active(void *arg)
{
    return ((tool *)arg)->ex != NULL && executor_busy(((tool *)arg)->ex);
}

static breaker_state gate_primary_breaker(void *arg)
{
    return monitor_breaker(((tool *)arg)->monitor, TARGET_PRIMARY);
}

static bool find_cb(const store_refresh *r, void *arg)
{
    find_ctx *f = arg;
    if (r->id == f->id) {
        f->row = *r;
        f->found = true;
        return false;
    }
    return true;
}

static bool print_cb(const store_refresh *r, void *arg)
{
    print_json(refresh_row_json(r));
    return true;
}

/* The daemon's KEY condition: the status JSON's KEY is true, a number
 * above t->until_above (KEY>X), or a string containing TEXT (KEY~TEXT). */
static bool until_key_met(tool *t)
{
    if (t->until_key == NULL)
        return false;
    char key[64];
    const char *op = t->until_key + strcspn(t->until_key, ">~");
    size_t n = (size_t)(op - t->until_key);
    if (n >= sizeof key)
        return false;
    memcpy(key, t->until_key, n);
    key[n] = '\0';
    json_t *st = refresh_status_json(t->refresh);
    json_t *v = json_object_get(st, key);
    bool met = *op == '>'   ? json_is_number(v) && json_number_value(v) > t->until_above
               : *op == '~' ? json_is_string(v) && strstr(json_string_value(v), op + 1) != NULL
                            : json_is_true(v);
    json_decref(st);
    return met;
}

static void on_tick(loop_t *loop, void *arg)
{
    tool *t = arg;
    bool busy = refresh_busy(t->refresh);
    if (t->was_busy && !busy)
        t->ended++;
    t->was_busy = busy;
    if (t->cancel_at > 0 && loop_now(loop) >= t->cancel_at && busy) {
        refresh_cancel(t->refresh, "cancelled by refresh_check");
        t->cancel_at = 0;
    }
    if ((t->until > 0 && t->ended >= t->until) || (t->deadline_mono > 0 && loop_now(loop) >= t->deadline_mono) ||
        until_key_met(t)) {
        loop_stop(loop);
        return;
    }
    loop_add_timer(loop, 50, on_tick, t);
}

static void on_watch(loop_t *loop, void *arg)
{
    tool *t = arg;
    if (loop_now(loop) >= t->deadline_mono) {
        loop_stop(loop);
        return;
    }
    json_t *st = refresh_status_json(t->refresh);
    json_t *lag = json_object_get(st, "lag_seconds"), *bytes = json_object_get(st, "lag_bytes"),
           *sub = json_object_get(st, "subscription");
    printf("lag_ms %lld bytes %lld sub %s\n",
           json_is_number(lag) ? (long long)(json_number_value(lag) * 1000.0 + 0.5) : -1LL,
           json_is_integer(bytes) ? (long long)json_integer_value(bytes) : -1LL,
           json_is_string(sub) ? json_string_value(sub) : "-");
    fflush(stdout);
    json_decref(st);
    loop_add_timer(loop, t->interval_ms, on_watch, t);
}

static void on_helper(void *arg, bool ok, const char *error)
{
    tool *t = arg;
    t->helper_done = true;
    t->helper_ok = ok;
    if (ok)
        printf("ok\n");
    else
        printf("fail: %s\n", error ? error : "?");
    fflush(stdout);
    loop_stop(t->loop);
}

static void on_settle(loop_t *loop, void *arg)
{
    tool *t = arg;
    breaker_state b = monitor_breaker(t->monitor, TARGET_PRIMARY);
    const store_target *st = monitor_target(t->monitor, TARGET_PRIMARY);
    bool probed = st->last_probe_at >= t->started_wall;
    if ((b == BREAKER_CLOSED && probed && st->reachable) || (b == BREAKER_OPEN && probed && !st->reachable) ||
        loop_now(loop) >= t->deadline_mono) {
        loop_stop(loop);
        return;
    }
    loop_add_timer(loop, 50, on_settle, t);
}

static int cmd_run(tool *t, const char *trigger)
{
    char err[512] = "";
    /* like a daemon that has been running: the primary's breaker reflects
     * its probes (it may have been left open by an earlier run): wait until
     * a probe succeeded with the breaker closed, or the breaker is open */
    t->deadline_mono = loop_now(t->loop) + 20000;
    loop_add_timer(t->loop, 0, on_settle, t);
    loop_run(t->loop);
    t->deadline_mono = 0;
    int64_t id = refresh_request(t->refresh, strcmp(trigger, "schedule") == 0 ? REFRESH_BY_SCHEDULE
                                                                                : REFRESH_BY_HAND,
                                 err, sizeof err);
    if (id == 0) {
        printf("refused: %s\n", err);
        return 1;
    }
    t->was_busy = refresh_busy(t->refresh);
    t->until = 1;
    if (t->was_busy) {
        loop_add_timer(t->loop, 50, on_tick, t);
        loop_run(t->loop);
    }
    find_ctx f = { .id = id };
    store_refreshes_recent(t->store, 50, find_cb, &f);
    if (!f.found) {
        printf("refresh %lld not recorded\n", (long long)id);
        return 1;
    }
    print_json(refresh_row_json(&f.row));
    return strcmp(f.row.state, "succeeded") == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    bool quiet = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:q")) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'q': quiet = true; break;
        default: usage(); return 2;
        }
    }
    if (conf == NULL || optind >= argc) {
        usage();
        return 2;
    }
    const char *cmd = argv[optind];
    char **args = argv + optind + 1;
    int nargs = argc - optind - 1;

    tool t = { 0 };
    t.started_wall = wall_ms();
    int rc = 1;
    config_errors errs = { 0 };
    t.cfg = config_load(conf, &errs);
    if (t.cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        config_errors_free(&errs);
        return 2;
    }
    if (strcmp(cmd, "check-config") == 0) {
        bool ok = refresh_check_config(t.cfg, &errs);
        for (size_t i = 0; i < errs.n; i++)
            printf("%s\n", errs.msgs[i]);
        if (ok)
            printf("refresh configuration OK\n");
        config_errors_free(&errs);
        config_free(t.cfg);
        return ok ? 0 : 2;
    }
    config_errors_free(&errs);
    log_set_level(quiet ? LOG_LVL_WARN : t.cfg->log_level);

    char err[512];
    t.loop = loop_new();
    if (t.loop == NULL)
        goto cleanup;
    t.store = store_open(t.cfg->state_db, err, sizeof err);
    if (t.store == NULL) {
        fprintf(stderr, "refresh_check: %s: %s\n", t.cfg->state_db, err);
        goto cleanup;
    }
    if (strcmp(cmd, "set-active") == 0) {
        if (nargs != 1 || (strcmp(args[0], "primary") != 0 && strcmp(args[0], "backup") != 0)) {
            usage();
            rc = 2;
        } else {
            rc = store_kv_set(t.store, "active", args[0]) ? 0 : 1;
        }
        goto cleanup;
    }
    if (strcmp(cmd, "refreshes") == 0) {
        rc = store_refreshes_recent(t.store, 100, print_cb, NULL) ? 0 : 1;
        goto cleanup;
    }
    t.monitor = monitor_new(t.loop, t.store, t.cfg);
    t.fetch = fetch_new(t.loop);
    if (t.monitor == NULL || t.fetch == NULL)
        goto cleanup;
    t.ex = executor_new(t.loop, t.store, t.monitor, t.fetch, t.cfg);
    if (t.ex == NULL)
        goto cleanup;
    refresh_gate gate = { &t, gate_app_on_backup, gate_run_active, gate_primary_breaker, NULL };
    t.refresh = refresh_new(t.loop, t.store, &gate, t.cfg);
    if (t.refresh == NULL)
        goto cleanup;
    refresh_set_listener(t.refresh, on_changed, &t);
    monitor_start(t.monitor);

    if (strcmp(cmd, "run") == 0) {
        rc = cmd_run(&t, nargs > 0 ? args[0] : "manual");
    } else if (strcmp(cmd, "cancel-after") == 0) {
        long ms;
        if (nargs != 1 || !parse_long(args[0], 0, &ms)) {
            usage();
            rc = 2;
            goto cleanup;
        }
        t.cancel_at = loop_now(t.loop) + ms;
        rc = cmd_run(&t, "manual");
    } else if (strcmp(cmd, "daemon") == 0) {
        long secs, n = 0;
        if (nargs < 1 || nargs > 3 || !parse_long(args[0], 1, &secs) || (nargs > 1 && !parse_long(args[1], 0, &n))) {
            usage();
            rc = 2;
            goto cleanup;
        }
        t.deadline_mono = loop_now(t.loop) + secs * 1000;
        t.until = n;
        if (nargs > 2) {
            const char *gt = strchr(args[2], '>');
            char *end = NULL;
            t.until_key = args[2];
            if (gt != NULL && ((t.until_above = strtod(gt + 1, &end)), end == gt + 1 || *end != '\0')) {
                usage();
                rc = 2;
                goto cleanup;
            }
        }
        refresh_start(t.refresh);
        loop_add_timer(t.loop, 50, on_tick, &t);
        loop_run(t.loop);
        print_json(refresh_status_json(t.refresh));
        char text[512];
        refresh_window_text(t.refresh, text, sizeof text);
        printf("window: %s\n", text);
        printf("listener: %ld calls\n", t.changes);
        rc = n > 0 && t.ended < n ? 1 : 0;
    } else if (strcmp(cmd, "watch") == 0) {
        long secs, ms;
        if (nargs != 2 || !parse_long(args[0], 1, &secs) || !parse_long(args[1], 10, &ms)) {
            usage();
            rc = 2;
            goto cleanup;
        }
        t.deadline_mono = loop_now(t.loop) + secs * 1000;
        t.interval_ms = ms;
        refresh_set_watch_interval(t.refresh, ms);
        refresh_start(t.refresh);
        loop_add_timer(t.loop, ms, on_watch, &t);
        loop_run(t.loop);
        char text[512];
        refresh_window_text(t.refresh, text, sizeof text);
        printf("window: %s\n", text);
        print_json(refresh_status_json(t.refresh));
        rc = 0;
    } else if (strcmp(cmd, "disable") == 0 || strcmp(cmd, "recreate") == 0 || strcmp(cmd, "bump") == 0) {
        bool ok = strcmp(cmd, "disable") == 0 ? refresh_subscription_disable(t.refresh, NULL, on_helper, &t)
                : strcmp(cmd, "recreate") == 0 ? refresh_subscription_recreate(t.refresh, NULL, on_helper, &t)
                : refresh_bump_sequences(t.refresh, NULL, on_helper, &t);
        if (!ok) {
            printf("fail: could not start\n");
            goto cleanup;
        }
        if (t.helper_done) {
            printf("bug: callback from inside the call\n");
            goto cleanup;
        }
        loop_run(t.loop);
        rc = t.helper_ok ? 0 : 1;
    } else {
        usage();
        rc = 2;
    }

cleanup:
    refresh_free(t.refresh);
    executor_free(t.ex);
    monitor_free(t.monitor);
    fetch_free(t.fetch);
    store_close(t.store);
    loop_free(t.loop);
    config_free(t.cfg);
    log_clear_secrets();
    return rc;
}
