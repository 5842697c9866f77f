/* refresh.c - keeping the backup fresh: the object, its schedule, the
 * interlock, the records, and what the status and the approval prompt say.
 *
 * A refresh (either mode) is one job (refresh_job.c) at a time. Each
 * request is recorded in the refreshes table: refused at once with the
 * interlock's reason, or running until the job ends succeeded/failed. The
 * schedule is a loop timer: `every` counts from the last start, `schedule`
 * is the next cron minute (local time); the first run after start waits
 * until the probes have had time to judge the primary. Logical mode also
 * runs the watcher (refresh_logical.c), which sets replication up once by
 * itself when there is no subscription yet. */
#include "refresh_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define SCHED_MAX_SLEEP_MS  (3600LL * 1000)   /* re-check the wall clock at least hourly */

static bool mode_is(const refresh_t *r, refresh_mode m)
{
    return r->cfg->refresh_mode == m;
}

const char *refresh_trigger_name(refresh_trigger t)
{
    return t == REFRESH_BY_SCHEDULE ? "schedule" : "manual";
}

refresh_mode refresh_mode_of(const store_refresh *rec)
{
    refresh_mode m = REFRESH_OFF;
    refresh_mode_parse(rec->mode, &m);
    return m;
}

void refresh_record_event(refresh_t *r, bool warn, const char *fmt, ...)
{
    char masked[512];
    va_list ap;
    va_start(ap, fmt);
    mask_vformat(masked, sizeof masked, "\xE2\x80\xA6", fmt, ap);   /* masked whole, then cut */
    va_end(ap);
    if (warn)
        log_warn("refresh: %s", masked);
    else
        log_info("refresh: %s", masked);
    store_event_add(r->store, wall_ms(), "refresh", "backup", masked);
}

bool refresh_interlock(const refresh_t *r, char *why, size_t n)
{
    why[0] = '\0';
    breaker_state b = r->gate.primary_breaker(r->gate.ctx);
    if (r->gate.app_on_backup(r->gate.ctx))
        snprintf(why, n, "the app is on the backup: a refresh would overwrite what it writes there");
    else if (r->gate.run_active != NULL && r->gate.run_active(r->gate.ctx))
        snprintf(why, n, "a runbook run is in progress");
    else if (b != BREAKER_CLOSED)
        snprintf(why, n, "the primary's breaker is %s", breaker_state_name(b));
    return why[0] == '\0';
}

/* ---- schedule ---------------------------------------------------------------- */

typedef struct {
    refresh_mode mode;
    int64_t started_at;
} last_start_ctx;

static bool last_start_cb(const store_refresh *rec, void *arg)
{
    last_start_ctx *c = arg;
    if (refresh_mode_of(rec) != c->mode || refresh_state_of(rec->state) == REFRESH_REFUSED)
        return true;
    c->started_at = rec->started_at;
    return false;
}

static void arm_schedule(refresh_t *r);

static void on_schedule(loop_t *loop, void *arg)
{
    refresh_t *r = arg;
    r->sched_timer = 0;
    if (r->next_at > 0 && wall_ms() + 1000 < r->next_at) {
        arm_schedule(r);           /* woke early (long sleeps are split) */
        return;
    }
    char err[256];
    if (r->job == NULL)
        refresh_request(r, REFRESH_BY_SCHEDULE, err, sizeof err);
    arm_schedule(r);
}

static void arm_schedule(refresh_t *r)
{
    loop_cancel_timer(r->loop, r->sched_timer);
    r->sched_timer = 0;
    r->next_at = 0;
    if (!r->started || mode_is(r, REFRESH_OFF) || r->job != NULL)
        return;
    int64_t every = refresh_every_effective(r->cfg);
    if (every <= 0 && !r->has_cron)
        return;
    last_start_ctx c = { r->cfg->refresh_mode, 0 };
    store_refreshes_recent(r->store, 50, last_start_cb, &c);
    /* a refused scheduled attempt is retried one interval later, not at once */
    int64_t last = c.started_at > r->last_attempt_at ? c.started_at : r->last_attempt_at;
    int64_t now = wall_ms();
    /* the first run waits until the probes have judged the primary */
    const config_t *cfg = r->cfg;
    int64_t settle = cfg->probe_interval_ms * (cfg->probe_failures + 1);
    if (settle < 1000)
        settle = 1000;
    if (settle > 30000)
        settle = 30000;
    int64_t remaining = r->started_mono + settle - loop_now(r->loop);
    int64_t next = refresh_schedule_next(every, r->has_cron ? &r->cron : NULL, last, now,
                                 now + (remaining > 0 ? remaining : 0));
    if (next == 0)
        return;
    r->next_at = next;
    int64_t delay = next - now;
    if (delay < 0)
        delay = 0;
    if (delay > SCHED_MAX_SLEEP_MS)
        delay = SCHED_MAX_SLEEP_MS;
    r->sched_timer = loop_add_timer(r->loop, delay, on_schedule, r);
    log_debug("refresh: next scheduled refresh in %lld s", (long long)((next - now) / 1000));
}

/* ---- the object ---------------------------------------------------------------- */

static void load_cron(refresh_t *r)
{
    char err[128];
    r->has_cron = r->cfg->refresh_schedule != NULL && r->cfg->refresh_schedule[0] != '\0' &&
                  cron_parse(r->cfg->refresh_schedule, &r->cron, err, sizeof err);
}

typedef struct {
    store_refresh rows[20];
    int n;
} stale_ctx;

/* When process pid started, in seconds since the epoch, or -1. */
static long long started_at_s(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ppid pgrp ... starttime(22nd)": comm may hold spaces */
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long start = 0;
    int field = 2;
    for (char *save = NULL, *t = strtok_r((char *)p + 1, " ", &save); t != NULL;
         t = strtok_r(NULL, " ", &save)) {
        if (++field == 22) {
            start = strtoull(t, NULL, 10);
            break;
        }
    }
    long long btime = -1;
    if ((f = fopen("/proc/stat", "re")) == NULL)
        return -1;
    while (fgets(buf, sizeof buf, f) != NULL)
        if (sscanf(buf, "btime %lld", &btime) == 1)
            break;
    fclose(f);
    long tck = sysconf(_SC_CLK_TCK);
    return field == 22 && btime > 0 && tck > 0 ? btime + (long long)(start / (unsigned long long)tck) : -1;
}

/* A drd killed during a refresh leaves its pg_dump / pg_restore running
 * (their process group outlives drd): end that group if its leader is the
 * process drd started (same pid, started within 2 s of the recorded time). */
static void kill_leftover(store_t *store)
{
    char v[48] = "";
    if (!store_kv_get(store, REFRESH_PGID_KEY, v, sizeof v) || v[0] == '\0')
        return;
    store_kv_set(store, REFRESH_PGID_KEY, "");
    long pgid;
    long long at;
    if (sscanf(v, "%ld:%lld", &pgid, &at) != 2 || pgid <= 1)
        return;
    long long st = started_at_s(pgid);
    if (st < 0 || st < at - 2 || st > at + 2 || getpgid((pid_t)pgid) != (pid_t)pgid)
        return;                              /* gone, or not ours any more */
    if (kill((pid_t)-pgid, SIGKILL) == 0)
        log_warn("refresh: ended process group %ld, left running by a drd that stopped during a refresh",
                 pgid);
}

static bool stale_cb(const store_refresh *rec, void *arg)
{
    stale_ctx *c = arg;
    if (refresh_state_of(rec->state) == REFRESH_RUNNING && c->n < (int)ARRAY_LEN(c->rows))
        c->rows[c->n++] = *rec;
    return true;
}

typedef struct {
    refresh_mode mode;
    store_refresh good;
    bool have_good, have_last, have_pass;
    int64_t pass_at;
    char last_error[512];
} history_ctx;

static bool history_cb(const store_refresh *rec, void *arg)
{
    history_ctx *h = arg;
    refresh_mode mode = refresh_mode_of(rec);
    refresh_state state = refresh_state_of(rec->state);
    if (!h->have_pass && mode == REFRESH_RECONCILE && state == REFRESH_SUCCEEDED) {
        h->have_pass = true;
        h->pass_at = rec->started_at;
    }
    if (mode == REFRESH_DUMP && state == REFRESH_SUCCEEDED && !h->have_good) {
        h->good = *rec;
        h->have_good = true;
    }
    if (!h->have_last && mode == h->mode && (state == REFRESH_SUCCEEDED || state == REFRESH_FAILED)) {
        h->have_last = true;
        if (state == REFRESH_FAILED)
            str_copy(h->last_error, rec->error, sizeof h->last_error);
    }
    return !(h->have_good && h->have_last && (h->have_pass || h->mode != REFRESH_RECONCILE));
}

/* The last good dump (what dump mode's freshness is measured from) and
 * whether the last refresh of the current mode failed (the status shows
 * its error until one succeeds). */
static void load_history(refresh_t *r)
{
    history_ctx h;
    memset(&h, 0, sizeof h);
    h.mode = r->cfg->refresh_mode;
    store_refreshes_recent(r->store, 500, history_cb, &h);
    if (h.have_good)
        r->last_good = h.good;
    else
        memset(&r->last_good, 0, sizeof r->last_good);
    str_copy(r->last_error, h.last_error, sizeof r->last_error);
    r->rec_good_at = h.have_pass ? h.pass_at : 0;
}

refresh_t *refresh_new(loop_t *loop, store_t *store, const refresh_gate *gate,
                       const config_t *cfg)
{
    refresh_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        log_error("refresh: out of memory");
        return NULL;
    }
    r->loop = loop;
    r->store = store;
    r->gate = *gate;
    r->cfg = cfg;
    r->w.seen_seq = r->w.seen_at_ms = r->w.lag_bytes = r->w.errors_seen = r->w.lag_at_sample = -1;
    load_cron(r);
    kill_leftover(store);
    /* A refresh found running was cut short by the end of a previous drd. */
    stale_ctx sc = { .n = 0 };
    store_refreshes_recent(store, 20, stale_cb, &sc);
    for (int i = 0; i < sc.n; i++) {
        store_refresh *s = &sc.rows[i];
        str_copy(s->state, refresh_state_name(REFRESH_FAILED), sizeof s->state);
        str_copy(s->error, "drd stopped during this refresh", sizeof s->error);
        s->finished_at = wall_ms();
        s->bytes = 0;
        s->file[0] = '\0';
        store_refresh_update(store, s);
    }
    load_history(r);
    r->has_diff = store_difference_get(store, &r->diff);
    return r;
}

void refresh_note_difference(refresh_t *r, int64_t rows, int64_t found, const char *by)
{
    if (!mode_is(r, REFRESH_LOGICAL))
        return;
    bool was = r->has_diff && r->diff.rows > 0;
    r->diff.rows = rows;
    r->diff.found = found;
    r->diff.at = wall_ms();
    str_copy(r->diff.by, by, sizeof r->diff.by);
    r->has_diff = true;
    store_difference_set(r->store, &r->diff);
    if (rows > 0)
        refresh_record_event(r, true, "the backup differs from the primary in %" PRId64 " rows (found by %s):"
                             " replication does not carry them; drctl refresh copies the primary whole", rows, by);
    else if (was)
        refresh_record_event(r, false, "the backup equals the primary again (%s)", by);
    refresh_changed(r);
}

void refresh_free(refresh_t *r)
{
    if (r == NULL)
        return;
    if (r->job != NULL && r->job->recorded) {
        refresh_job_free(r->job);            /* only housekeeping was left */
        r->job = NULL;
    }
    if (r->job != NULL) {
        store_refresh rec = r->job->rec;
        str_copy(rec.state, refresh_state_name(REFRESH_FAILED), sizeof rec.state);
        str_copy(rec.error, "drd stopped during this refresh", sizeof rec.error);
        rec.finished_at = wall_ms();
        rec.bytes = 0;
        rec.file[0] = '\0';
        store_refresh_update(r->store, &rec);
        refresh_job_free(r->job);
        r->job = NULL;
    }
    refresh_watch_stop(r);
    refresh_helpers_free(r);
    loop_cancel_timer(r->loop, r->sched_timer);
    free(r->rec_catalog);
    free(r);
}

void refresh_start(refresh_t *r)
{
    r->started = true;
    r->started_mono = loop_now(r->loop);
    if (mode_is(r, REFRESH_OFF))
        return;
    if (r->cfg->refresh_dir != NULL) {
        char probe[PATH_MAX], err[256];
        snprintf(probe, sizeof probe, "%s/.", r->cfg->refresh_dir);
        if (!mkdir_parents(probe, 0700, err, sizeof err))
            log_warn("refresh: %s", err);
        refresh_dir_scrub(r->cfg->refresh_dir);
    }
    if (mode_is(r, REFRESH_LOGICAL))
        refresh_watch_start(r);
    arm_schedule(r);
    char when[64] = "none scheduled";
    if (r->next_at > 0) {
        time_t t = (time_t)(r->next_at / 1000);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(when, sizeof when, "next at %Y-%m-%d %H:%M:%S", &tm);
    }
    log_info("refresh: mode %s, dir %s; %s", refresh_mode_name(r->cfg->refresh_mode),
             r->cfg->refresh_dir ? r->cfg->refresh_dir : "-", when);
}

void refresh_reconfigure(refresh_t *r, const config_t *cfg)
{
    bool was_logical = mode_is(r, REFRESH_LOGICAL);
    r->cfg = cfg;
    r->rec_catalog_at = 0;             /* tables, URLs may have changed */
    r->rec_no_ledger_at = 0;           /* privileges too: try the ledger again */
    load_cron(r);
    load_history(r);
    if (!r->started)
        return;
    if (mode_is(r, REFRESH_LOGICAL))
        refresh_watch_start(r);          /* URLs or names may have changed */
    else if (was_logical)
        refresh_watch_stop(r);
    arm_schedule(r);
}

void refresh_set_listener(refresh_t *r, void (*changed)(void *arg), void *arg)
{
    r->changed = changed;
    r->changed_arg = arg;
}

void refresh_changed(refresh_t *r)
{
    if (r->changed != NULL)
        r->changed(r->changed_arg);
}

void refresh_set_watch_interval(refresh_t *r, int64_t ms)
{
    r->watch_interval_ms = ms;
    r->w.interval_ms = ms > 0 ? ms : 1000;
}

int64_t refresh_request(refresh_t *r, refresh_trigger by, char *err, size_t errlen)
{
    const char *trigger = refresh_trigger_name(by);
    refresh_mode rm = r->cfg->refresh_mode;
    const char *mode = refresh_mode_name(rm);
    char why[256] = "";
    if (rm == REFRESH_OFF)
        snprintf(why, sizeof why, "[refresh] mode is off");
    else if (r->job != NULL)
        snprintf(why, sizeof why, "refresh %" PRId64 " is already running (%s)", r->job->rec.id,
                 refresh_job_phase_name(r->job));
    else
        refresh_interlock(r, why, sizeof why);
    if (by == REFRESH_BY_SCHEDULE)
        r->last_attempt_at = wall_ms();

    store_refresh rec;
    memset(&rec, 0, sizeof rec);
    str_copy(rec.mode, mode, sizeof rec.mode);
    str_copy(rec.trigger, trigger, sizeof rec.trigger);
    rec.started_at = wall_ms();
    if (why[0] != '\0') {
        str_copy(rec.state, refresh_state_name(REFRESH_REFUSED), sizeof rec.state);
        rec.finished_at = rec.started_at;
        str_copy(rec.error, why, sizeof rec.error);
        rec.id = store_refresh_add(r->store, &rec);
        log_warn("refresh refused (%s): %s", trigger, why);
        snprintf(err, errlen, "%s", why);
        return 0;
    }
    str_copy(rec.state, refresh_state_name(REFRESH_RUNNING), sizeof rec.state);
    rec.id = store_refresh_add(r->store, &rec);
    if (rec.id == 0) {
        snprintf(err, errlen, "cannot record the refresh in the state database");
        return 0;
    }
    char jerr[256] = "";
    job_kind kind = rm == REFRESH_DUMP ? JOB_DUMP
                  : rm == REFRESH_RECONCILE ? JOB_RECONCILE : JOB_LOGICAL;
    job_t *j = refresh_job_start(r, kind, rec.id, trigger, jerr, sizeof jerr);
    if (j == NULL) {
        str_copy(rec.state, refresh_state_name(REFRESH_FAILED), sizeof rec.state);
        rec.finished_at = wall_ms();
        mask_secrets(jerr, rec.error, sizeof rec.error);
        store_refresh_update(r->store, &rec);
        str_copy(r->last_error, rec.error, sizeof r->last_error);
        log_error("refresh %" PRId64 " failed to start: %s", rec.id, rec.error);
        snprintf(err, errlen, "%s", rec.error);
        return rec.id;
    }
    j->rec.started_at = rec.started_at;
    r->job = j;
    loop_cancel_timer(r->loop, r->sched_timer);     /* re-armed when it ends */
    r->sched_timer = 0;
    r->next_at = 0;
    log_info("refresh %" PRId64 " started (%s, %s)", rec.id, mode, trigger);
    refresh_changed(r);
    return rec.id;
}

void refresh_job_record(refresh_t *r, job_t *j)
{
    store_refresh *rec = &j->rec;
    if (j->recorded)
        return;
    j->recorded = true;
    store_refresh_update(r->store, rec);
    /* egress: what it read from the primary, succeeded or not */
    int64_t egress = j->kind == JOB_RECONCILE ? j->egress : j->kind == JOB_DUMP ? rec->bytes : 0;
    if (egress > 0)
        store_egress_add(r->store, rec->started_at, egress);
    double secs = (double)(rec->finished_at - rec->started_at) / 1000.0;
    bool succeeded = refresh_state_of(rec->state) == REFRESH_SUCCEEDED;
    if (succeeded && j->kind == JOB_RECONCILE) {
        r->last_error[0] = '\0';
        r->rec_good_at = rec->started_at;
        if (r->rec_whole > 0 || r->rec_rows >= 10000) {
            char msg[256];
            snprintf(msg, sizeof msg, "reconcile pass %" PRId64 ": %" PRId64 " row(s) copied (%zu table(s) "
                     "whole), %" PRId64 " deleted in %.1f s, %.1f MB read from the primary", rec->id,
                     r->rec_rows, r->rec_whole, r->rec_deleted, secs, (double)egress / 1e6);
            log_info("%s", msg);
            store_event_add(r->store, wall_ms(), "refresh", "backup", msg);
        }
        store_refreshes_prune(r->store, refresh_mode_name(REFRESH_RECONCILE), 500);
    } else if (succeeded) {
        r->last_error[0] = '\0';
        if (j->kind == JOB_DUMP) {
            r->last_good = *rec;
            char msg[768];
            snprintf(msg, sizeof msg, "dump refresh %" PRId64 " succeeded in %.1f s: the backup now holds "
                     "the primary's data as of its start; %s (%.1f MB)", rec->id, secs,
                     rec->file[0] ? rec->file : "no dump file kept", (double)rec->bytes / 1e6);
            log_info("%s", msg);
            store_event_add(r->store, wall_ms(), "refresh", "backup", msg);
        } else if (!j->done_early) {
            char msg[256];
            snprintf(msg, sizeof msg, "logical replication set up in %.1f s (refresh %" PRId64 ")",
                     secs, rec->id);
            log_info("%s", msg);
            store_event_add(r->store, wall_ms(), "refresh", "backup", msg);
        }
    } else {
        str_copy(r->last_error, rec->error, sizeof r->last_error);
        r->rec_catalog_at = 0;         /* read the catalogs again */
        refresh_record_event(r, true, "refresh %" PRId64 " (%s) failed after %.1f s; %s: %s",
                             rec->id, rec->mode, secs, j->kind == JOB_RECONCILE
                             ? "the batches committed before stay, the watermarks with them"
                             : "the backup is unchanged", rec->error);
    }
    refresh_egress_watch(r, wall_ms());
    refresh_changed(r);
}

void refresh_job_ended(refresh_t *r, job_t *j)
{
    refresh_job_record(r, j);
    /* a whole copy (dump restored, or logical set-up swapped in) leaves
     * nothing different */
    if (refresh_state_of(j->rec.state) == REFRESH_SUCCEEDED && (j->kind == JOB_DUMP || j->swapped))
        refresh_note_difference(r, 0, 0, "refresh");
    r->job = NULL;
    refresh_job_free(j);
    arm_schedule(r);
    refresh_changed(r);
}

bool refresh_busy(const refresh_t *r)
{
    return r->job != NULL;
}

bool refresh_cancel(refresh_t *r, const char *reason)
{
    if (r->job == NULL)
        return false;
    return refresh_job_abort(r->job, reason != NULL ? reason : "cancelled");
}

/* ---- freshness -------------------------------------------------------------------- */

double refresh_lag_seconds(const refresh_t *r)
{
    if (mode_is(r, REFRESH_LOGICAL)) {
        int64_t ms = refresh_watch_lag_ms(r);
        return ms < 0 ? -1.0 : (double)ms / 1000.0;
    }
    if (mode_is(r, REFRESH_DUMP) && r->last_good.id != 0) {
        int64_t age = wall_ms() - r->last_good.started_at;
        return age < 0 ? 0.0 : (double)age / 1000.0;
    }
    /* reconcile: every change older than the last good pass's start is
     * on the backup: the oldest one that may not be is at most that old */
    if (mode_is(r, REFRESH_RECONCILE) && r->rec_good_at > 0) {
        int64_t age = wall_ms() - r->rec_good_at;
        return age < 0 ? 0.0 : (double)age / 1000.0;
    }
    return -1.0;
}

int64_t refresh_last_good_at(const refresh_t *r)
{
    if (mode_is(r, REFRESH_LOGICAL))
        return refresh_watch_good_at(r);
    if (mode_is(r, REFRESH_RECONCILE))
        return r->rec_good_at;
    /* the copy holds the primary as of the dump's start */
    return r->last_good.id != 0 ? r->last_good.started_at : 0;
}

static json_t *num_or_null(double v, bool known)
{
    return known ? json_real(v) : json_null();
}

json_t *refresh_status_json(const refresh_t *r)
{
    refresh_mode rm = r->cfg->refresh_mode;
    const char *mode = refresh_mode_name(rm);
    bool logical = rm == REFRESH_LOGICAL;
    double lag = refresh_lag_seconds(r);
    int64_t good = refresh_last_good_at(r);
    const char *error = NULL;
    if (logical && r->w.error[0] != '\0')
        error = r->w.error;
    else if (r->last_error[0] != '\0')
        error = r->last_error;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "mode", json_string(mode));
    json_object_set_new(o, "running", json_boolean(r->job != NULL));
    json_object_set_new(o, "lag_seconds", num_or_null(lag, lag >= 0));
    json_object_set_new(o, "lag_bytes", logical && r->w.lag_bytes >= 0 ? json_integer(r->w.lag_bytes) : json_null());
    json_object_set_new(o, "last_good_at", good > 0 ? json_integer(good) : json_null());
    json_object_set_new(o, "next_at", r->next_at > 0 ? json_integer(r->next_at) : json_null());
    json_object_set_new(o, "error", json_text(error));
    /* additions: what is running, and logical mode's details */
    json_object_set_new(o, "refresh_id", r->job ? json_integer(r->job->rec.id) : json_null());
    json_object_set_new(o, "phase", r->job ? json_string(refresh_job_phase_name(r->job)) : json_null());
    json_object_set_new(o, "subscription", logical && r->w.sub_state != SUB_UNKNOWN
                                                ? json_string(refresh_sub_state_name(r->w.sub_state))
                                                : json_null());
    json_object_set_new(o, "schema_drift", logical ? json_boolean(r->w.drift) : json_null());
    json_object_set_new(o, "difference", logical && r->has_diff
        ? json_pack("{s:I,s:I,s:I,s:s}", "rows", (json_int_t)r->diff.rows, "found", (json_int_t)r->diff.found,
                    "at", (json_int_t)r->diff.at, "by", r->diff.by)
        : json_null());
    refresh_egress e;
    if (refresh_egress_get(r, wall_ms(), &e))
        json_object_set_new(o, "egress", refresh_egress_json(&e));
    if (rm == REFRESH_RECONCILE)
        json_object_set_new(o, "reconcile", json_pack("{s:I, s:I, s:I, s:I, s:s?, s:o}",
                            "tables", (json_int_t)r->rec_tables, "rows_copied", (json_int_t)r->rec_rows,
                            "rows_deleted", (json_int_t)r->rec_deleted, "tables_whole", (json_int_t)r->rec_whole,
                            "deletes", r->rec_deletes_by == REC_DELETES_COMPARE ? "compare"
                                       : r->rec_deletes_by == REC_DELETES_LEDGER ? "ledger" : NULL,
                            "compare", refresh_compare_json(&r->cmp)));
    return o;
}

void refresh_window_text(const refresh_t *r, char *buf, size_t n)
{
    char age[32];
    double lag = refresh_lag_seconds(r);
    if (mode_is(r, REFRESH_OFF)) {
        snprintf(buf, n, "drd does not refresh the backup ([refresh] mode = off): how far behind "
                 "the primary it is, is unknown");
    } else if (mode_is(r, REFRESH_RECONCILE)) {
        if (lag < 0) {
            snprintf(buf, n, "no reconcile pass has completed yet: how far behind the primary the backup "
                     "is, is unknown");
        } else {
            refresh_format_age(lag, age, sizeof age);
            snprintf(buf, n, "the backup is at most %s behind the primary (its last reconcile pass started "
                     "then)", age);
        }
    } else if (mode_is(r, REFRESH_DUMP)) {
        if (lag < 0) {
            snprintf(buf, n, "the backup has never been refreshed by drd: how far behind the primary "
                     "it is, is unknown");
        } else {
            refresh_format_age(lag, age, sizeof age);
            snprintf(buf, n, "the backup's last copy is %s old: writes made on the primary since "
                     "then are not on the backup", age);
        }
    } else if (lag < 0) {
        snprintf(buf, n, "the backup's replication lag is unknown%s%s", r->w.error[0] ? ": " : "",
                 r->w.error);
    } else {
        /* when the primary stopped answering, say how old the measure is */
        char when[96] = "";
        int64_t beat = refresh_watch_last_beat(r), since = wall_ms() - beat;
        if (beat > 0 && since > 5000) {
            char a[32];
            refresh_format_age((double)since / 1000.0, a, sizeof a);
            snprintf(when, sizeof when, " (as of %s ago, when drd last wrote to the primary)", a);
        }
        refresh_format_age(lag, age, sizeof age);
        snprintf(buf, n, "the backup is %s behind the primary%s%s%s", age, when,
                 r->w.error[0] ? "; " : "", r->w.error);
    }
}

/* ---- configuration check ------------------------------------------------------------ */

bool refresh_check_config(const config_t *cfg, config_errors *errs)
{
    if (cfg->refresh_mode == REFRESH_OFF || cfg->refresh_mode == REFRESH_RECONCILE)
        return true;                   /* reconcile writes no files */
    char err[512];
    if (refresh_dir_usable(cfg->refresh_dir, err, sizeof err))
        return true;
    int line = config_line(cfg, "refresh", "dir");
    if (line > 0)
        config_error_add(errs, "%s:%d: [refresh] dir: %s", cfg->path, line, err);
    else
        config_error_add(errs, "%s: [refresh] dir (default %s): %s", cfg->path,
                         cfg->refresh_dir ? cfg->refresh_dir : "?", err);
    return false;
}
