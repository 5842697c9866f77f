/* print.c - drctl's readers: `status` and `history`, from the daemon or,
 * when it cannot be reached, from the state database read-only. */
#include "cli_int.h"

/* ------------------------------------------------------------------ */
/* status                                                             */

const char *str_or(json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s != NULL ? s : dflt;
}

static void print_target_row(const char *name, json_t *t)
{
    char latency[32] = "-";
    char err[512];
    const char *recovery = "-";
    json_t *lat = json_object_get(t, "latency_ms");
    json_t *last = json_object_get(t, "last_error");

    /* latency and recovery mean something only when the last probe got in */
    if (json_is_true(json_object_get(t, "reachable"))) {
        if (json_is_integer(lat))
            format_duration((int64_t)json_integer_value(lat), latency, sizeof(latency));
        recovery = json_is_true(json_object_get(t, "in_recovery")) ? "yes" : "no";
    }
    mask_secrets(json_is_string(last) ? json_string_value(last) : "-", err, sizeof(err));
    printf("%-7s %-8s %-10s %-8s %-9s %s\n", name,
           json_is_true(json_object_get(t, "healthy")) ? "yes" : "no",
           str_or(json_object_get(t, "breaker"), "?"), latency, recovery, err);
}

/* Below the table: what makes a target's state more than its row says. */
static void print_target_notes(const char *name, json_t *t)
{
    json_t *probe = json_object_get(t, "probe");
    char cause[512];
    if (str_eq(str_or(json_object_get(probe, "state"), ""), "misconfigured")) {
        mask_secrets(str_or(json_object_get(probe, "cause"), "?"), cause, sizeof(cause));
        printf("%s: MISCONFIGURED (%s): %s; not an outage: no breaker, no failover until it is fixed\n",
               name, str_or(json_object_get(t, "error_class"), "?"), cause);
    }
    if (target_or_primary(name) == TARGET_PRIMARY && json_is_false(json_object_get(t, "seen_healthy")) &&
        json_is_integer(json_object_get(t, "last_probe_at")))
        printf("%s: never seen healthy since drd started: no automatic failover of it "
               "([failover] require_seen_healthy); drctl failover still works\n", name);
}

static void print_run(json_t *run)
{
    json_t *steps = json_object_get(run, "steps");
    json_int_t cur = json_integer_value(json_object_get(run, "current_step"));
    printf("run %" JSON_INTEGER_FORMAT ": %s, %s", json_integer_value(json_object_get(run, "id")),
           str_or(json_object_get(run, "kind"), "?"), str_or(json_object_get(run, "state"), "?"));
    json_t *step = json_array_get(steps, (size_t)cur);
    if (cur >= 0 && step != NULL)
        printf(", step %" JSON_INTEGER_FORMAT "/%zu %s (%s)", cur + 1, json_array_size(steps),
               str_or(json_object_get(step, "name"), "?"), str_or(json_object_get(step, "state"), "?"));
    printf("\n");
}

void format_time(json_t *v, char *buf, size_t n)
{
    struct tm tm;
    time_t t;

    if (!json_is_integer(v)) {
        str_copy(buf, "-", n);
        return;
    }
    t = (time_t)(json_integer_value(v) / 1000);
    if (localtime_r(&t, &tm) == NULL || strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        str_copy(buf, "?", n);
}

/* The first line when a run needs a human, loudest when it left the app
 * stopped; then what to do. */
static void print_attention(json_t *att)
{
    bool stopped = json_is_true(json_object_get(att, "app_stopped"));
    bool waiting = run_state_of(json_string_value(json_object_get(att, "state"))) == RUN_WAITING;
    json_t *ap = json_object_get(att, "approval_id");
    const char *step = json_string_value(json_object_get(att, "step"));
    char reason[600];

    mask_secrets(str_or(json_object_get(att, "reason"), ""), reason, sizeof reason);
    printf("ATTENTION: %s%s run %" JSON_INTEGER_FORMAT " %s%s%s: %s\n",
           stopped ? "THE APP IS STOPPED - " : "", str_or(json_object_get(att, "kind"), "?"),
           json_integer_value(json_object_get(att, "run_id")),
           waiting ? "waits for a decision" : str_or(json_object_get(att, "state"), "failed"),
           step != NULL ? " at step " : "", step != NULL ? step : "", reason);
    if (waiting && json_is_integer(ap)) {
        json_int_t id = json_integer_value(ap);
        printf("  drctl approve %" JSON_INTEGER_FORMAT " (retry)  |  drctl approve %" JSON_INTEGER_FORMAT
               " --skip  |  drctl reject %" JSON_INTEGER_FORMAT " (abort)\n", id, id, id);
    } else if (stopped) {
        printf("  the run has ended with the app stopped: fix the cause, then start the app by hand\n"
               "  or run the %s again (drctl history shows the steps)\n",
               str_or(json_object_get(att, "kind"), "run"));
    }
    printf("\n");
}

/* The pending approvals, each with the commands that decide it. */
static void print_approvals(json_t *approvals)
{
    if (json_array_size(approvals) == 0) {
        printf("approvals: none pending\n");
    } else {
        size_t i;
        json_t *ap;

        printf("approvals pending:\n");
        json_array_foreach(approvals, i, ap) {
            json_int_t id = json_integer_value(json_object_get(ap, "id"));
            json_t *rid = json_object_get(ap, "run_id");
            const char *step = json_string_value(json_object_get(ap, "step"));
            if (json_is_integer(rid) && step != NULL)
                printf("  #%" JSON_INTEGER_FORMAT " (run %" JSON_INTEGER_FORMAT ", step %s): %s\n", id,
                       json_integer_value(rid), step, str_or(json_object_get(ap, "prompt"), ""));
            else if (json_is_integer(rid))
                printf("  #%" JSON_INTEGER_FORMAT " (run %" JSON_INTEGER_FORMAT "): %s\n", id,
                       json_integer_value(rid), str_or(json_object_get(ap, "prompt"), ""));
            else
                printf("  #%" JSON_INTEGER_FORMAT " (%s: start a failover?): %s\n", id,
                       approval_kind_of(json_string_value(json_object_get(ap, "kind"))) == APPROVAL_POLICY
                           ? "policy" : "no run yet",
                       str_or(json_object_get(ap, "prompt"), ""));
            printf("      drctl approve %" JSON_INTEGER_FORMAT
                   "   |   drctl reject %" JSON_INTEGER_FORMAT "\n", id, id);
        }
    }
}

static void print_status(json_t *doc, bool from_db)
{
    json_t *targets = json_object_get(doc, "targets");
    json_t *run = json_object_get(doc, "run");
    json_t *approvals = json_object_get(doc, "approvals");
    json_t *started = json_object_get(doc, "started_at");
    json_t *generated = json_object_get(doc, "generated_at");
    json_t *att = json_object_get(doc, "attention");
    json_t *block = json_object_get(doc, "block_until");

    human(doc);
    if (json_is_object(att))
        print_attention(att);
    printf("%-7s %-8s %-10s %-8s %-9s %s\n",
           "TARGET", "HEALTHY", "BREAKER", "LATENCY", "RECOVERY", "LAST ERROR");
    print_target_row("primary", json_object_get(targets, "primary"));
    print_target_row("backup", json_object_get(targets, "backup"));
    print_target_notes("primary", json_object_get(targets, "primary"));
    print_target_notes("backup", json_object_get(targets, "backup"));
    printf("\n");
    printf("active: %s\n", str_or(json_object_get(doc, "active"), "primary"));
    for (int i = 0; i < 2; i++) {
        const char *name = target_name((target_id)i);
        json_t *f = json_object_get(json_object_get(targets, name), "fenced");
        if (json_is_true(f))
            printf("fence: the %s is fenced (it refuses the app's writes)\n", name);
        else if (str_eq(json_string_value(f), "pending"))
            printf("fence: pending on the %s (applied the moment it answers)\n", name);
    }
    if (json_is_integer(block)) {
        char when[32];
        format_time(block, when, sizeof when);
        printf("policy block: no automatic failover until %s (drctl unblock lifts it)\n", when);
    }
    /* logical mode: rows the last comparison of the two sides left different */
    json_t *diff = json_object_get(json_object_get(doc, "refresh"), "difference");
    json_int_t ndiff = json_integer_value(json_object_get(diff, "rows"));
    if (ndiff > 0) {
        char when[32];
        format_time(json_object_get(diff, "at"), when, sizeof when);
        printf("backup: %" JSON_INTEGER_FORMAT " rows differ from the primary (found by %s at %s; replication"
               " does not carry them): drctl refresh\n", ndiff, str_or(json_object_get(diff, "by"), "?"), when);
    }
    if (from_db) {
        printf("daemon: not running (last known state from DB)\n");
    } else if (json_is_integer(started) && json_is_integer(generated) &&
               json_integer_value(generated) >= json_integer_value(started)) {
        char up[32];
        format_duration((int64_t)(json_integer_value(generated) - json_integer_value(started)),
                        up, sizeof(up));
        printf("daemon: %s (up %s)\n", str_or(json_object_get(doc, "daemon"), "running"), up);
    } else {
        printf("daemon: %s\n", str_or(json_object_get(doc, "daemon"), "running"));
    }
    if (json_is_object(run))
        print_run(run);
    print_approvals(approvals);
}

/* The daemon is down: the last known state from the database. */
static int status_from_db(const drctl *x)
{
    char where[1024], err[512] = "";
    status_snapshot snap;
    store_t *st;
    json_t *doc;

    endpoint_name(x, where, sizeof(where));
    if (x->state_db == NULL) {
        fprintf(stderr, "drctl: drd is not running (cannot reach %s)\n", where);
        return EXIT_UNREACHABLE;
    }
    st = store_open_readonly(x->state_db, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "drctl: drd is not running (cannot reach %s), and its state "
                        "database cannot be read: %s\n", where, err);
        return EXIT_UNREACHABLE;
    }
    json_t *att = NULL;
    if (status_from_store(st, &snap)) {
        att = attention_from_store(st, x->cfg);
        snap.attention = att;
        snap.block_until = policy_block_until_stored(st);
    }
    doc = att != NULL ? status_to_json(&snap) : NULL;
    json_decref(att);
    if (doc == NULL) {
        store_close(st);
        fprintf(stderr, "drctl: drd is not running (cannot reach %s), and its state "
                        "database cannot be read\n", where);
        return EXIT_UNREACHABLE;
    }
    store_close(st);
    if (x->json)
        print_json(doc);
    else
        print_status(doc, true);
    json_decref(doc);
    return EXIT_UNREACHABLE;
}

int cmd_status(const drctl *x)
{
    bool unreachable = false;
    json_t *doc = NULL;
    int ex = get_json(x, "/api/status", &doc, &unreachable);

    if (unreachable)
        return status_from_db(x);
    if (ex >= 0)
        return ex;
    if (x->json)
        print_json(doc);
    else
        print_status(doc, false);
    ex = json_is_true(json_object_get(json_object_get(doc, "attention"), "app_stopped")) ? EXIT_APP_STOPPED
                                                                                         : EXIT_OK;
    json_decref(doc);
    return ex;
}

/* ------------------------------------------------------------------ */
/* history                                                            */

/* drd is down: its state database, read-only, said on stderr (stdout
 * stays what the command prints). NULL (said why) when it cannot be read. */
store_t *fallback_store(const drctl *x)
{
    char where[1024], err[512] = "";
    store_t *st = NULL;

    endpoint_name(x, where, sizeof(where));
    if (x->state_db != NULL)
        st = store_open_readonly(x->state_db, err, sizeof(err));
    if (st == NULL)
        fprintf(stderr, "drctl: drd is not running (cannot reach %s), and its state database "
                        "cannot be read%s%s\n", where, err[0] ? ": " : "", err);
    else
        fprintf(stderr, "drctl: drd is not running (cannot reach %s): from its state database %s\n",
                where, x->state_db);
    return st;
}

/* history's four documents as the API would give them, from the file. */
static bool history_from_db(store_t *st, json_t **inc, json_t **ev, json_t **runs, json_t **drills)
{
    json_t *a = json_array(), *b = json_array(), *c = json_array(), *d = json_array(), *oldest = json_array();
    bool ok = a != NULL && b != NULL && c != NULL && d != NULL && oldest != NULL &&
              store_incidents_recent(st, HISTORY_INCIDENTS, views_add_incident, a) &&
              store_events_recent(st, HISTORY_EVENTS, views_add_event, b) &&
              views_runs(st, HISTORY_RUNS, c) &&
              store_drills_recent(st, 10, views_add_drill, d);
    /* the API gives events oldest first */
    for (size_t i = json_array_size(b); ok && i > 0; i--)
        json_array_append(oldest, json_array_get(b, i - 1));
    json_decref(b);
    *inc = json_pack("{s:o}", "incidents", a != NULL ? a : json_array());
    *ev = json_pack("{s:o}", "events", oldest != NULL ? oldest : json_array());
    *runs = json_pack("{s:o}", "runs", c != NULL ? c : json_array());
    *drills = json_pack("{s:o}", "drills", d != NULL ? d : json_array());
    return ok && *inc != NULL && *ev != NULL && *runs != NULL && *drills != NULL;
}

/* history's four documents (NULL members: not available). */
typedef struct {
    json_t *inc, *ev, *runs, *drills;
} history_docs;

static void history_docs_free(history_docs *h)
{
    json_decref(h->inc);
    json_decref(h->ev);
    json_decref(h->runs);
    json_decref(h->drills);
}

/* From the daemon or, when it cannot be reached, from the state database
 * (*rc = EXIT_UNREACHABLE then). -1 when h is filled, else an exit code
 * (h freed). */
static int history_fetch(const drctl *x, history_docs *h, int *rc)
{
    char path[64], err[256];
    bool unreachable = false;
    buffer reply;
    long code;
    int ex;

    snprintf(path, sizeof(path), "/api/incidents?limit=%d", HISTORY_INCIDENTS);
    if ((ex = get_json(x, path, &h->inc, &unreachable)) >= 0 && !unreachable)
        return ex;
    if (unreachable) {
        store_t *st = fallback_store(x);
        if (st == NULL)
            return EXIT_UNREACHABLE;
        bool ok = history_from_db(st, &h->inc, &h->ev, &h->runs, &h->drills);
        store_close(st);
        if (!ok) {
            fprintf(stderr, "drctl: the state database could not be read\n");
            history_docs_free(h);
            return EXIT_UNREACHABLE;
        }
        *rc = EXIT_UNREACHABLE;
        return -1;
    }
    snprintf(path, sizeof(path), "/api/events?limit=%d", HISTORY_EVENTS);
    if ((ex = get_json(x, path, &h->ev, NULL)) < 0) {
        snprintf(path, sizeof(path), "/api/runs?limit=%d", HISTORY_RUNS);
        ex = get_json(x, path, &h->runs, NULL);
    }
    if (ex >= 0) {
        history_docs_free(h);
        return ex;
    }
    /* drills: a drd older than this drctl has none (404): no section */
    if (http_call(x, "GET", "/api/drills?limit=10", NULL, &code, &reply, err, sizeof err) == CALL_OK &&
        code == 200)
        h->drills = json_loadb(reply.s ? reply.s : "", reply.len, 0, NULL);
    free(reply.s);
    return -1;
}

static void print_incidents(json_t *incidents)
{
    char a[32], b[32], msg[1024];
    size_t i;
    json_t *v;

    if (json_array_size(incidents) == 0) {
        printf("no incidents\n");
        return;
    }
    printf("INCIDENTS\n%-6s %-8s %-19s  %-19s  %s\n", "ID", "TARGET", "STARTED",
           "ENDED", "REASON");
    json_array_foreach(incidents, i, v) {
        json_t *ended = json_object_get(v, "ended_at");
        format_time(json_object_get(v, "started_at"), a, sizeof(a));
        if (json_is_integer(ended))
            format_time(ended, b, sizeof(b));
        else
            str_copy(b, "(ongoing)", sizeof(b));
        mask_secrets(str_or(json_object_get(v, "reason"), ""), msg, sizeof(msg));
        printf("%-6" JSON_INTEGER_FORMAT " %-8s %-19s  %-19s  %s\n",
               json_integer_value(json_object_get(v, "id")),
               str_or(json_object_get(v, "target"), "-"), a, b, msg);
    }
}

static void print_runs(json_t *runs)
{
    char a[32], msg[1024];
    size_t i, k;
    json_t *v, *st;

    if (json_array_size(runs) == 0) {
        printf("no runs\n");
        return;
    }
    printf("RUNS\n");
    json_array_foreach(runs, i, v) {
        json_int_t c0 = json_integer_value(json_object_get(v, "created_at"));
        json_int_t c1 = json_integer_value(json_object_get(v, "finished_at"));
        char took[32] = "-";
        if (c1 > c0)
            format_duration(c1 - c0, took, sizeof(took));
        format_time(json_object_get(v, "created_at"), a, sizeof(a));
        mask_secrets(str_or(json_object_get(v, "error"), str_or(json_object_get(v, "reason"), "")),
                     msg, sizeof(msg));
        printf("run %-4" JSON_INTEGER_FORMAT " %-8s %-9s %s  %6s  by %s  %s\n",
               json_integer_value(json_object_get(v, "id")), str_or(json_object_get(v, "kind"), "?"),
               str_or(json_object_get(v, "state"), "?"), a, took,
               str_or(json_object_get(v, "started_by"), "?"), msg);
        json_array_foreach(json_object_get(v, "steps"), k, st) {
            json_t *d = json_object_get(st, "duration_ms");
            char dur[32] = "";
            if (json_is_integer(d))
                format_duration(json_integer_value(d), dur, sizeof(dur));
            mask_secrets(str_or(json_object_get(st, "detail"), ""), msg, sizeof(msg));
            printf("    %-18s %-12s %-15s %6s  %s\n", str_or(json_object_get(st, "name"), "?"),
                   str_or(json_object_get(st, "action"), "?"), str_or(json_object_get(st, "state"), "?"),
                   dur, msg);
        }
    }
}

/* A report's duration field, or "-". */
static void report_duration(json_t *rep, const char *key, char *out, size_t n)
{
    json_t *v = json_object_get(rep, key);

    if (json_is_integer(v))
        format_duration(json_integer_value(v), out, n);
    else
        str_copy(out, "-", n);
}

static void print_drills(json_t *drills)
{
    char a[32], msg[1024];
    size_t i;
    json_t *v;

    if (json_array_size(drills) == 0)
        return;
    printf("DRILLS\n");
    json_array_foreach(drills, i, v) {
        json_t *rep = json_object_get(v, "report");
        char det[32], rto[32], syn[32];
        report_duration(rep, "detection_ms", det, sizeof det);
        report_duration(rep, "rto_ms", rto, sizeof rto);
        report_duration(rep, "sync_ms", syn, sizeof syn);
        format_time(json_object_get(v, "started_at"), a, sizeof(a));
        mask_secrets(str_or(json_object_get(rep, "error"), ""), msg, sizeof(msg));
        printf("drill %-4" JSON_INTEGER_FORMAT " %-9s %s  detection %s  RTO %s  sync-back %s"
               "  rows %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT "%s%s\n",
               json_integer_value(json_object_get(v, "id")), str_or(json_object_get(v, "result"), "?"),
               a, det, rto, syn, json_integer_value(json_object_get(rep, "rows_found")),
               json_integer_value(json_object_get(rep, "rows_written")), msg[0] ? "  " : "", msg);
    }
    printf("\n");
}

static void print_events(json_t *newest)
{
    char a[32], msg[1024];
    size_t i;
    json_t *v;

    if (json_array_size(newest) == 0) {
        printf("no events\n");
        return;
    }
    printf("EVENTS (newest first)\n%-19s  %-9s %-8s %s\n", "TIME", "KIND", "TARGET", "MESSAGE");
    json_array_foreach(newest, i, v) {
        format_time(json_object_get(v, "at"), a, sizeof(a));
        mask_secrets(str_or(json_object_get(v, "message"), ""), msg, sizeof(msg));
        printf("%-19s  %-9s %-8s %s\n", a, str_or(json_object_get(v, "kind"), "?"),
               str_or(json_object_get(v, "target"), "-"), msg);
    }
}

int cmd_history(const drctl *x)
{
    history_docs h = { 0 };
    json_t *incidents, *events, *newest, *runs, *drills;
    int ex, rc = EXIT_OK;

    if ((ex = history_fetch(x, &h, &rc)) >= 0)
        return ex;
    drills = json_object_get(h.drills, "drills");
    runs = json_object_get(h.runs, "runs");
    incidents = json_object_get(h.inc, "incidents");
    events = json_object_get(h.ev, "events");

    /* the API gives events oldest first; history is newest first */
    newest = json_array();
    for (size_t i = json_array_size(events); i > 0; i--)
        json_array_append(newest, json_array_get(events, i - 1));

    if (x->json) {
        json_t *out = json_pack("{s:o,s:o,s:O,s:o}", "incidents",
                                json_is_array(incidents) ? json_incref(incidents) : json_array(),
                                "runs", json_is_array(runs) ? json_incref(runs) : json_array(),
                                "events", newest,
                                "drills", json_is_array(drills) ? json_incref(drills) : json_array());
        print_json(out);
        json_decref(out);
    } else {
        human(incidents);
        human(runs);
        human(newest);
        human(drills);
        print_incidents(incidents);
        printf("\n");
        print_runs(runs);
        printf("\n");
        print_drills(drills);
        print_events(newest);
    }
    json_decref(newest);
    history_docs_free(&h);
    return rc;
}
