/* cmd.c - drctl's commands that act: failover, failback, approve, reject,
 * refresh, unblock (queued by drd and followed here), and the local ones:
 * check, grants and the --dry-run plan. */
#include "cli_int.h"

/* ------------------------------------------------------------------ */
/* actions                                                            */

/* Ask on the terminal. Returns -1 to go on, or an exit code. */
static int confirm(const drctl *x, const char *what)
{
    char line[64];
    json_t *doc = NULL;
    int ex;

    if (x->yes)
        return -1;
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "drctl: %s needs confirmation: stdin is not a terminal, "
                        "pass --yes to proceed\n", x->command);
        return EXIT_BAD_CONFIG;
    }
    /* Show where things stand, and find out now whether drd is there. */
    if ((ex = get_json(x, "/api/status", &doc, NULL)) >= 0)
        return ex;
    human(doc);
    {
        json_t *t = json_object_get(doc, "targets");
        fprintf(stderr, "active: %s; primary %s; backup %s\n",
                str_or(json_object_get(doc, "active"), "?"),
                json_is_true(json_object_get(json_object_get(t, "primary"), "healthy"))
                    ? "healthy" : "unhealthy",
                json_is_true(json_object_get(json_object_get(t, "backup"), "healthy"))
                    ? "healthy" : "unhealthy");
    }
    json_decref(doc);
    fprintf(stderr, "%s. Proceed? [y/N] ", what);
    fflush(stderr);
    if (fgets(line, sizeof(line), stdin) == NULL) {
        fprintf(stderr, "\ndrctl: aborted\n");
        return EXIT_FAILURE_;
    }
    str_trim(line);
    if (strcasecmp(line, "y") != 0 && strcasecmp(line, "yes") != 0) {
        fprintf(stderr, "drctl: aborted\n");
        return EXIT_FAILURE_;
    }
    return -1;
}

/* POST; print the request id and store it in *request_id. */
int post_action(const drctl *x, const char *path, const char *label, int64_t *request_id)
{
    char err[512];
    char *body = NULL;
    buffer reply;
    long code;
    call_rc rc;
    json_t *doc;
    int ex = EXIT_OK;

    *request_id = 0;
    if (x->has_reason || x->skip || x->choice) {
        json_t *o = json_object();
        if (x->has_reason)
            json_object_set_new(o, "reason", json_string(x->reason));
        if (x->skip || x->choice)
            json_object_set_new(o, "choice", json_string(x->skip ? "skip" : x->choice));
        if (x->has_reason && json_object_get(o, "reason") == NULL) {
            json_decref(o);
            o = NULL;
        }
        if (o == NULL) {
            fprintf(stderr, "drctl: the reason must be valid UTF-8\n");
            return EXIT_BAD_CONFIG;
        }
        body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    rc = http_call(x, "POST", path, body, &code, &reply, err, sizeof(err));
    free(body);
    if (rc != CALL_OK)
        return report_unreachable(x, rc, err);
    if (code < 200 || code > 299) {
        ex = report_http_error(code, &reply);
        free(reply.s);
        return ex;
    }
    doc = reply.s != NULL ? json_loadb(reply.s, reply.len, 0, NULL) : NULL;
    free(reply.s);
    /* with --json (drill) stdout is the report alone */
    FILE *out = x->json ? stderr : stdout;
    if (json_is_integer(json_object_get(doc, "request_id"))) {
        *request_id = json_integer_value(json_object_get(doc, "request_id"));
        fprintf(out, "%s queued (request %" JSON_INTEGER_FORMAT ")\n", label,
                json_integer_value(json_object_get(doc, "request_id")));
    } else
        fprintf(out, "%s accepted\n", label);
    json_decref(doc);
    return ex;
}

void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Wait for the daemon to take request id; returns -1 with *run_id when it
 * was accepted, or an exit code. */
int await_request(const drctl *x, int64_t id, int64_t *run_id)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/requests/%lld", (long long)id);
    *run_id = 0;
    for (int i = 0; i < 100; i++) {            /* 10 s */
        char err[512];
        buffer reply;
        long code;
        call_rc rc = http_call(x, "GET", path, NULL, &code, &reply, err, sizeof(err));
        if (rc != CALL_OK)
            return report_unreachable(x, rc, err);
        if (code == 404) {                      /* not taken yet */
            free(reply.s);
            sleep_ms(100);
            continue;
        }
        if (code != 200) {
            int ex = report_http_error(code, &reply);
            free(reply.s);
            return ex;
        }
        json_t *doc = human(json_loadb(reply.s, reply.len, 0, NULL));
        free(reply.s);
        const char *state = str_or(json_object_get(doc, "state"), "?");
        if (strcmp(state, "accepted") != 0) {
            char msg[512];
            mask_secrets(str_or(json_object_get(doc, "error"), "refused"), msg, sizeof(msg));
            fprintf(stderr, "drctl: refused: %s\n", msg);
            json_decref(doc);
            return EXIT_FAILURE_;
        }
        *run_id = json_integer_value(json_object_get(doc, "run_id"));
        json_decref(doc);
        return -1;
    }
    fprintf(stderr, "drctl: the daemon has not taken request %lld after 10 s\n", (long long)id);
    return EXIT_FAILURE_;
}

/* A running step's progress: the complete lines of output added after
 * its first `shown` bytes, masked. Returns the bytes shown now. */
static size_t print_progress(const char *output, size_t shown)
{
    const char *from = output + shown, *end = strrchr(from, '\n');
    if (end == NULL)
        return shown;
    for (const char *l = from; l < end;) {
        const char *nl = memchr(l, '\n', (size_t)(end - l) + 1);
        char line[600], masked[600];
        snprintf(line, sizeof line, "%.*s", (int)(nl - l), l);
        mask_secrets(line, masked, sizeof masked);
        printf("        %s\n", masked);
        l = nl + 1;
    }
    return (size_t)(end - output) + 1;
}

/* Print each step as it changes, until the run ends or waits for a human. */
static int follow_run(const drctl *x, int64_t run_id)
{
    char path[64];
    char seen[64][24];
    size_t shown[64];                /* bytes of a sync step's output printed */
    memset(seen, 0, sizeof(seen));
    memset(shown, 0, sizeof(shown));
    snprintf(path, sizeof(path), "/api/runs/%lld", (long long)run_id);
    printf("following run %lld (Ctrl-C stops following, not the run)\n", (long long)run_id);
    for (;;) {
        json_t *run = NULL;
        int ex = get_json(x, path, &run, NULL);
        if (ex >= 0)
            return ex;
        human(run);
        json_t *steps = json_object_get(run, "steps"), *st;
        size_t i, n = json_array_size(steps);
        json_array_foreach(steps, i, st) {
            if (i >= 64)
                break;
            const char *state = str_or(json_object_get(st, "state"), "?");
            const char *action = str_or(json_object_get(st, "action"), "");
            const char *output = str_or(json_object_get(st, "output"), "");
            step_state ss = step_state_of(state);
            /* while it runs, and once more when it has ended: the lines
             * written since the last poll (pre-sync's last ones: the tail
             * and the expected stop window) */
            bool ended_now = ss != STEP_RUNNING && ss != STEP_PENDING && strcmp(seen[i], state) != 0;
            if ((ss == STEP_RUNNING || ended_now) && strlen(output) > shown[i] &&
                (strcmp(action, "sync-back") == 0 || strcmp(action, "verify") == 0 ||
                 strcmp(action, "capture") == 0))
                shown[i] = print_progress(output, shown[i]);
            if (strcmp(seen[i], state) == 0 || ss == STEP_PENDING)
                continue;
            str_copy(seen[i], state, sizeof(seen[i]));
            char dur[32] = "", detail[600];
            json_t *d = json_object_get(st, "duration_ms");
            if (json_is_integer(d) && ss != STEP_RUNNING)
                format_duration(json_integer_value(d), dur, sizeof(dur));
            mask_secrets(str_or(json_object_get(st, "detail"), ""), detail, sizeof(detail));
            printf("  [%zu/%zu] %-18s %-12s %-15s %6s  %s\n", i + 1, n,
                   str_or(json_object_get(st, "name"), "?"), str_or(json_object_get(st, "action"), "?"),
                   state, dur, detail);
        }
        fflush(stdout);
        const char *state = str_or(json_object_get(run, "state"), "?");
        run_state rs = run_state_of(state);
        if (rs == RUN_WAITING) {
            json_t *a;
            json_array_foreach(json_object_get(run, "approvals"), i, a) {
                if (approval_state_of(json_string_value(json_object_get(a, "state"))) != APPROVAL_PENDING)
                    continue;
                char prompt[600];
                json_int_t aid = json_integer_value(json_object_get(a, "id"));
                mask_secrets(str_or(json_object_get(a, "prompt"), ""), prompt, sizeof(prompt));
                printf("run %lld waits for approval %" JSON_INTEGER_FORMAT ": %s\n"
                       "  drctl approve %" JSON_INTEGER_FORMAT "%s   |   drctl reject %" JSON_INTEGER_FORMAT "\n",
                       (long long)run_id, aid, prompt, aid,
                       approval_kind_of(json_string_value(json_object_get(a, "kind"))) == APPROVAL_ATTENTION
                           ? " [--skip]" : "", aid);
            }
            json_decref(run);
            return EXIT_OK;
        }
        if (rs != RUN_RUNNING) {
            char err[600];
            mask_secrets(str_or(json_object_get(run, "error"), ""), err, sizeof(err));
            json_int_t c0 = json_integer_value(json_object_get(run, "created_at"));
            json_int_t c1 = json_integer_value(json_object_get(run, "finished_at"));
            char took[32];
            format_duration(c1 > c0 ? c1 - c0 : 0, took, sizeof(took));
            printf("run %lld %s in %s%s%s\n", (long long)run_id, state, took, err[0] ? ": " : "", err);
            int rc = rs == RUN_SUCCEEDED ? EXIT_OK : EXIT_FAILURE_;
            json_decref(run);           /* state points into run */
            return rc;
        }
        json_decref(run);
        sleep_ms(200);
    }
}

static void print_refresh(json_t *r)
{
    char a[32], took[32] = "-", err[600];
    human(r);
    json_int_t s0 = json_integer_value(json_object_get(r, "started_at"));
    json_int_t s1 = json_integer_value(json_object_get(r, "finished_at"));
    if (s1 > s0)
        format_duration(s1 - s0, took, sizeof(took));
    format_time(json_object_get(r, "started_at"), a, sizeof(a));
    mask_secrets(str_or(json_object_get(r, "error"), str_or(json_object_get(r, "file"), "")), err, sizeof(err));
    printf("%-5" JSON_INTEGER_FORMAT " %-8s %-9s %-10s %s  %7s  %10" JSON_INTEGER_FORMAT "  %s\n",
           json_integer_value(json_object_get(r, "id")), str_or(json_object_get(r, "mode"), "?"),
           str_or(json_object_get(r, "trigger"), "?"), str_or(json_object_get(r, "state"), "?"), a, took,
           json_integer_value(json_object_get(r, "bytes")), err);
}

int cmd_refreshes(const drctl *x)
{
    json_t *doc = NULL, *r;
    size_t i;
    bool unreachable = false;
    int rc = EXIT_OK;
    int ex = get_json(x, "/api/refreshes?limit=20", &doc, &unreachable);
    if (unreachable) {
        store_t *st = fallback_store(x);
        json_t *a = json_array();
        bool ok = st != NULL && a != NULL && store_refreshes_recent(st, 20, views_add_refresh, a);
        store_close(st);
        if (!ok) {
            json_decref(a);
            return EXIT_UNREACHABLE;
        }
        doc = json_pack("{s:o}", "refreshes", a);
        rc = EXIT_UNREACHABLE;
    } else if (ex >= 0) {
        return ex;
    }
    json_t *arr = json_object_get(doc, "refreshes");
    if (x->json) {
        print_json(arr);
    } else if (json_array_size(arr) == 0) {
        printf("no refreshes\n");
    } else {
        printf("%-5s %-8s %-9s %-10s %-19s  %7s  %10s  %s\n", "ID", "MODE", "TRIGGER", "STATE", "STARTED",
               "TOOK", "BYTES", "FILE / ERROR");
        json_array_foreach(arr, i, r)
            print_refresh(r);
    }
    json_decref(doc);
    return rc;
}

int cmd_unblock(const drctl *x)
{
    int64_t req, run;
    int ex = post_action(x, "/api/unblock", "unblock", &req);
    if (ex != EXIT_OK || req == 0)
        return ex;
    if ((ex = await_request(x, req, &run)) >= 0)
        return ex;
    printf("the policy block is lifted: an outage may start a failover again (as [failover] policy says)\n");
    return EXIT_OK;
}

/* Start a refresh and follow it until it ends. */
/* --once: until the newest refresh is not running (a scheduled pass that
 * a cron pass would otherwise collide with), at most an hour. */
static int wait_not_running(const drctl *x)
{
    for (int i = 0; i < 36000; i++) {
        json_t *doc = NULL;
        int ex = get_json(x, "/api/refreshes?limit=1", &doc, NULL);
        if (ex >= 0)
            return ex;
        const char *state = str_or(json_object_get(json_array_get(json_object_get(doc, "refreshes"), 0),
                                                   "state"), "");
        bool running = refresh_state_of(state) == REFRESH_RUNNING;
        json_decref(doc);
        if (!running)
            return -1;
        sleep_ms(100);
    }
    fprintf(stderr, "drctl: a refresh has been running for an hour; drctl refreshes shows it\n");
    return EXIT_FAILURE_;
}

int cmd_refresh(const drctl *x)
{
    int64_t req, run, newest = 0;
    json_t *doc = NULL;
    int ex = x->once ? wait_not_running(x) : -1;
    if (ex >= 0)
        return ex;
    ex = get_json(x, "/api/refreshes?limit=1", &doc, NULL);
    if (ex >= 0)
        return ex;
    newest = json_integer_value(json_object_get(json_array_get(json_object_get(doc, "refreshes"), 0), "id"));
    json_decref(doc);
    ex = post_action(x, "/api/refresh", "refresh", &req);
    if (ex != EXIT_OK || req == 0)
        return ex;
    if ((ex = await_request(x, req, &run)) >= 0)
        return ex;
    for (int i = 0; i < 36000; i++) {          /* up to an hour, every 100 ms */
        doc = NULL;
        if ((ex = get_json(x, "/api/refreshes?limit=1", &doc, NULL)) >= 0)
            return ex;
        json_t *r = json_array_get(json_object_get(doc, "refreshes"), 0);
        const char *state = str_or(json_object_get(r, "state"), "");
        if (json_integer_value(json_object_get(r, "id")) > newest && refresh_state_of(state) != REFRESH_RUNNING) {
            print_refresh(r);
            int rc = refresh_state_of(state) == REFRESH_SUCCEEDED ? EXIT_OK : EXIT_FAILURE_;
            json_decref(doc);
            return rc;
        }
        json_decref(doc);
        sleep_ms(100);
    }
    fprintf(stderr, "drctl: the refresh is still running; drctl refreshes shows it\n");
    return EXIT_FAILURE_;
}

int cmd_failover(const drctl *x, bool back)
{
    int64_t req, run;
    int ex = confirm(x, back ? "This switches the app back to the primary"
                             : "This switches the app over to the backup");
    if (ex >= 0)
        return ex;
    ex = post_action(x, back ? "/api/failback" : "/api/failover", back ? "failback" : "failover", &req);
    if (ex != EXIT_OK || req == 0)
        return ex;
    if ((ex = await_request(x, req, &run)) >= 0)
        return ex;
    return run > 0 ? follow_run(x, run) : EXIT_OK;
}

int cmd_decide(const drctl *x, bool approve)
{
    char path[128], label[96];
    const char *id = x->args[0];
    int64_t req, run;
    int ex;

    if (*id == '\0' || strspn(id, "0123456789") != strlen(id) || strlen(id) > 18 ||
        strspn(id, "0") == strlen(id))
        return usage_error("approval ID must be a positive integer, not '%s'", id);
    snprintf(path, sizeof(path), "/api/approvals/%s/%s", id, approve ? "approve" : "reject");
    snprintf(label, sizeof(label), "approval %s: %s%s", id, approve ? "approve" : "reject",
             x->skip ? " (skip the step)" : "");
    ex = post_action(x, path, label, &req);
    if (ex != EXIT_OK || req == 0)
        return ex;
    if ((ex = await_request(x, req, &run)) >= 0)
        return ex;
    printf("approval %s %s\n", id, approve ? "approved" : "rejected");
    return run > 0 ? follow_run(x, run) : EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* check                                                              */

/* Loads the full configuration itself (errors become a failing `config`
 * check), asks the daemon for its status when it answers, runs check.c. */
int cmd_check(drctl *x)
{
    config_errors errs = { 0 };
    json_t *checks, *doc = NULL;
    bool unreachable = false;
    int64_t deadline = mono_ms() + 2000;

    x->cfg = x->drill ? config_load_drill(x->config_path, &errs) : config_load(x->config_path, &errs);
    if (x->cfg == NULL) {
        checks = check_config_failed(&errs);
        config_errors_free(&errs);
    } else {
        config_errors_free(&errs);
        x->socket_path = x->cfg->http_socket;
        x->state_db = x->cfg->state_db;
        if (load_token(x) < 0 && curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) {
            if (get_json(x, "/api/status", &doc, &unreachable) >= 0)
                doc = NULL;
            checks = check_run(x->cfg, doc, deadline);
            json_decref(doc);
            curl_global_cleanup();
        } else {
            return EXIT_BAD_CONFIG;
        }
    }
    if (checks == NULL) {
        fprintf(stderr, "drctl: out of memory\n");
        return EXIT_FAILURE_;
    }
    if (x->json)
        print_json(checks);
    else
        check_print(human(checks), stdout);
    int ex = check_any_failed(checks) ? EXIT_FAILURE_ : EXIT_OK;
    json_decref(checks);
    return ex;
}

/* drctl grants primary|backup: the SQL from privs.c, computed against the
 * objects on that side. Connects with drd's url (else the app's, whose
 * role can read the catalog too) to the app's database. */
int cmd_grants(drctl *x)
{
    config_errors errs = { 0 };
    privs_list l = { 0 };
    char err[1024], err2[1024], role[128];
    PGconn *c = NULL;
    char *db = NULL, *sql = NULL;
    int ex = EXIT_FAILURE_;
    target_id tid;
    if (!target_parse(x->args[0], &tid))
        return usage_error("grants needs primary or backup, not %s", x->args[0]);
    privs_side side = tid == TARGET_BACKUP ? PRIV_BACKUP : PRIV_PRIMARY;
    x->cfg = x->drill ? config_load_drill(x->config_path, &errs) : config_load(x->config_path, &errs);
    if (x->cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        config_errors_free(&errs);
        return EXIT_BAD_CONFIG;
    }
    config_errors_free(&errs);
    if (!privs_for_config(&l, x->cfg, err, sizeof err)) {
        fprintf(stderr, "drctl: %s\n", err);
        ex = EXIT_BAD_CONFIG;
        goto cleanup;
    }
    const config_target *t = side == PRIV_BACKUP ? &x->cfg->backup : &x->cfg->primary;
    config_target as_app = { .url = t->app_url != NULL ? t->app_url : t->url };
    db = pgconn_dbname(as_app.url);
    privs_role(t, role, sizeof role);
    c = privs_connect(t, db, 5000, "drctl-grants", err, sizeof err);
    if (c == NULL && role[0] != '\0')          /* drd's role may not work yet */
        c = privs_connect(&as_app, db, 5000, "drctl-grants", err2, sizeof err2);
    if (c == NULL) {
        fprintf(stderr, "drctl: grants reads the object names from the %s and cannot connect: %s\n",
                x->args[0], err);
        goto cleanup;
    }
    sql = privs_grants(&l, side, c, role, err, sizeof err);
    if (sql == NULL) {
        fprintf(stderr, "drctl: %s\n", err);
        goto cleanup;
    }
    fputs(sql, stdout);
    ex = EXIT_OK;
cleanup:
    if (c != NULL)
        PQfinish(c);
    free(sql);
    free(db);
    privs_list_free(&l);
    return ex;
}

/* failover|failback --dry-run: the plan with each step's prerequisite
 * (the same checks as `drctl check`), nothing run. */
int cmd_plan(drctl *x, bool back)
{
    config_errors errs = { 0 };
    json_t *checks = NULL, *doc = NULL, *plan = NULL;
    bool unreachable = false;
    char err[2048] = "";
    int ex = EXIT_FAILURE_;

    x->cfg = x->drill ? config_load_drill(x->config_path, &errs) : config_load(x->config_path, &errs);
    if (x->cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        config_errors_free(&errs);
        return EXIT_BAD_CONFIG;
    }
    config_errors_free(&errs);
    x->socket_path = x->cfg->http_socket;
    x->state_db = x->cfg->state_db;
    if (load_token(x) >= 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return EXIT_BAD_CONFIG;
    if (get_json(x, "/api/status", &doc, &unreachable) >= 0)
        doc = NULL;
    checks = check_run(x->cfg, doc, mono_ms() + 2000);
    plan = plan_build(x->cfg, back, checks, doc, err, sizeof(err));
    if (plan == NULL) {
        fprintf(stderr, "drctl: %s\n", err);
        ex = EXIT_BAD_CONFIG;
    } else {
        if (x->json)
            print_json(plan);
        else
            plan_print(human(plan), stdout);
        ex = json_is_true(json_object_get(plan, "ok")) ? EXIT_OK : EXIT_FAILURE_;
    }
    json_decref(plan);
    json_decref(checks);
    json_decref(doc);
    curl_global_cleanup();
    return ex;
}
