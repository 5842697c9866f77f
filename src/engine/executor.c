/* executor.c - the runbook executor. See executor.h.
 *
 * Step state machine (each arrow persisted, logged with its reason):
 *
 *   pending ──start──▶ running ──ok──▶ done
 *                        │
 *                        ├─fail, attempts left──▶ pending (after retry_delay)
 *                        ├─fail, on_failure=abort──▶ failed   (run failed)
 *                        ├─fail, on_failure=continue──▶ failed (run goes on, ends failed)
 *                        ├─fail, on_failure=ask──▶ needs_attention ─▶ approval
 *                        └─crash (found at resume)──▶ pending if idempotent,
 *                                                    else needs_attention
 *   needs_attention ──retry──▶ pending   ──skip──▶ skipped   ──abort──▶ failed (run aborted)
 *   approve step: running ──approved──▶ done   ──rejected/expired──▶ failed (run aborted)
 */
#include "drd/engine/executor.h"
#include "drd/engine/approvals.h"
#include "drd/core/log.h"
#include "drd/engine/preflight.h"
#include "drd/conf/runbook.h"
#include "drd/engine/steps.h"
#include "drd/core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PH_IDLE, PH_STEP, PH_RETRY_WAIT, PH_APPROVAL } phase_t;

typedef struct {
    runbook_step def;            /* what to do (from the persisted params) */
    store_step st;               /* its persisted state (params/output not kept here) */
} exec_step;

struct executor {
    loop_t *loop;
    store_t *store;
    monitor_t *monitor;
    fetch_t *fetch;
    const config_t *cfg;         /* the daemon's current one: for new runs */
    executor_done_cb on_done;
    executor_change_cb on_change;
    void *listener_arg;

    /* the active run */
    store_run run;               /* run.id == 0: none */
    const config_t *run_cfg;     /* its configuration (a reference, taken when
                                    it starts or is resumed): a reload does not
                                    change what its steps see */
    exec_step *steps;
    int n_steps;
    int cur;
    phase_t phase;
    bool had_failure;
    step_run *work;
    preflight_t *preflight;      /* the preflight step's checks, while they run */
    uint64_t timer;              /* retry delay or approval expiry */
    uint64_t progress_timer;     /* a running sync step's output, stored every second */
    size_t progress_len;         /* length of the output last stored */
    int64_t approval_id;         /* pending approval we wait on */
    metrics_counters *counters;  /* may be NULL */
    notify_t *notify;            /* may be NULL */
    struct refresh *refresh;     /* may be NULL */
    step_run *unfence;           /* lifting the backup's fence after a failback that did not finish */
    executor_work fake;          /* fake.begin != NULL: does every step's work (tests) */
    void *fake_work;             /* its work in flight */
};

void executor_set_work(executor_t *ex, const executor_work *w)
{
    ex->fake = *w;
}

static void advance(executor_t *ex);
static void begin_step(executor_t *ex, int i);
static void tell(executor_t *ex, const char *what, const char *text, int64_t approval_id);

static void changed(executor_t *ex)
{
    if (ex->on_change != NULL)
        ex->on_change(ex->listener_arg);
}

static const char *S(const char *s) { return s ? s : ""; }

static void event(executor_t *ex, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void event(executor_t *ex, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    mask_vformat(msg, sizeof msg, "\xE2\x80\xA6", fmt, ap);   /* masked whole, then cut */
    va_end(ap);
    log_info("%s", msg);
    store_event_add(ex->store, wall_ms(), "run", "", msg);
}

#define PROGRESS_EVERY_MS 1000
static void progress_stop(executor_t *ex);
static void on_progress(loop_t *loop, void *arg);

static void clear_run(executor_t *ex)
{
    progress_stop(ex);
    step_cancel(ex->work);
    ex->work = NULL;
    if (ex->fake_work != NULL && ex->fake.cancel != NULL)
        ex->fake.cancel(ex->fake.arg, ex->fake_work);
    ex->fake_work = NULL;
    preflight_cancel(ex->preflight);
    ex->preflight = NULL;
    if (ex->timer)
        loop_cancel_timer(ex->loop, ex->timer);
    ex->timer = 0;
    for (int i = 0; i < ex->n_steps; i++)
        runbook_step_clear(&ex->steps[i].def);
    free(ex->steps);
    ex->steps = NULL;
    ex->n_steps = 0;
    ex->cur = -1;
    ex->phase = PH_IDLE;
    ex->had_failure = false;
    ex->approval_id = 0;
    memset(&ex->run, 0, sizeof ex->run);
    config_free(ex->run_cfg);
    ex->run_cfg = NULL;
}

/* Persist one step's state change and log the transition. */
static void set_step_state(executor_t *ex, int i, step_state to, const char *why, const char *output)
{
    exec_step *s = &ex->steps[i];
    char from[20];
    const char *state = step_state_name(to);
    str_copy(from, s->st.state, sizeof from);
    str_copy(s->st.state, state, sizeof s->st.state);
    s->st.output = (char *)output;
    if (!store_step_update(ex->store, &s->st))
        log_error("run %lld: could not persist step %s as %s", (long long)ex->run.id, s->def.name, state);
    s->st.output = NULL;
    s->st.params = NULL;
    log_info("run %lld step %s: %s -> %s%s%s", (long long)ex->run.id, s->def.name, from, state,
             why && *why ? ": " : "", why ? why : "");
}

static void set_run_state(executor_t *ex, run_state to, const char *error)
{
    const char *state = run_state_name(to);
    str_copy(ex->run.state, state, sizeof ex->run.state);
    if (error != NULL)
        str_copy(ex->run.error, error, sizeof ex->run.error);
    bool final = run_state_final(to);
    if (final)
        ex->run.finished_at = wall_ms();
    ex->run.current_step = final ? -1 : ex->cur;
    if (!store_run_update(ex->store, ex->run.id, state, ex->run.current_step, error, ex->run.finished_at))
        log_error("run %lld: could not persist state %s", (long long)ex->run.id, state);
}

static void on_unfence_done(void *arg, const step_outcome *o)
{
    executor_t *ex = arg;
    ex->unfence = NULL;
    step_outcome_persist(ex->store, o);
    if (o->ok)
        event(ex, "the failback ended with the app still on the backup: its fence is lifted again (%s)",
              o->note);
    else
        event(ex, "the failback ended with the app still on the backup, and lifting the backup's fence"
              " failed: %s. Lift it by hand (ALTER DATABASE ... RESET default_transaction_read_only)"
              " before starting the app there", o->error);
}

/* A failback that ends failed or aborted with the app still on the
 * backup, after its fence-backup step fenced it: lift that fence again, so
 * that the app can run on the backup (the next failover, which would lift
 * it, is not coming). Called before the run's steps are cleared. */
static void unfence_backup_after(executor_t *ex, const char *kind, run_state state)
{
    if (strcmp(kind, "failback") != 0 || state == RUN_SUCCEEDED || ex->unfence != NULL ||
        monitor_active(ex->monitor) != TARGET_BACKUP)
        return;
    bool fenced = false;
    for (int i = 0; i < ex->n_steps; i++) {
        const exec_step *s = &ex->steps[i];
        step_state st = step_state_of(s->st.state);
        if (s->def.action == ACT_FENCE && !s->def.lift && s->def.target != NULL &&
            target_or_primary(s->def.target) == TARGET_BACKUP && st != STEP_PENDING && st != STEP_SKIPPED)
            fenced = true;
    }
    if (!fenced)
        return;
    step_env env = { .loop = ex->loop, .cfg = ex->cfg, .monitor = ex->monitor, .fetch = ex->fetch,
                     .store = ex->store, .run_kind = "" };
    log_warn("the failback ended %s with the app still on the backup: lifting the backup's fence",
             run_state_name(state));
    ex->unfence = step_begin_fence(&env, "unfence-backup", target_name(TARGET_BACKUP), true, 10000,
                                   on_unfence_done, ex);
}

static void finish_run(executor_t *ex, run_state to, const char *error)
{
    int64_t id = ex->run.id;
    char kind[16];
    const char *state = run_state_name(to);
    str_copy(kind, ex->run.kind, sizeof kind);
    set_run_state(ex, to, error);
    int64_t took = ex->run.finished_at - ex->run.created_at;
    event(ex, "run %lld (%s) %s after %lld.%03llds%s%s", (long long)id, kind, state,
          (long long)(took / 1000), (long long)(took % 1000), error && *error ? ": " : "", S(error));
    if (ex->counters != NULL) {
        int k = strcmp(kind, "failback") == 0 ? 1 : 0;
        int res = to == RUN_SUCCEEDED ? 0 : to == RUN_FAILED ? 1 : 2;
        ex->counters->runs_total[k][res]++;
    }
    char what[32], text[700];
    snprintf(what, sizeof what, "run_%s", state);
    snprintf(text, sizeof text, "drd: %s run %lld %s after %lld.%llds%s%s", kind, (long long)id, state,
             (long long)(took / 1000), (long long)(took % 1000 / 100), error && *error ? ": " : "", S(error));
    tell(ex, what, text, 0);
    unfence_backup_after(ex, kind, to);
    clear_run(ex);
    changed(ex);
    if (ex->on_done != NULL)
        ex->on_done(ex->listener_arg, id, kind, to);
}

/* ------------------------------------------------------------ approvals */

static void on_approval_expired(loop_t *loop, void *arg);

static void arm_expiry(executor_t *ex, int64_t expires_at)
{
    if (ex->timer)
        loop_cancel_timer(ex->loop, ex->timer);
    ex->timer = 0;
    if (expires_at <= 0)
        return;
    int64_t d = expires_at - wall_ms();
    ex->timer = loop_add_timer(ex->loop, d > 0 ? d : 0, on_approval_expired, ex);
}

static bool wait_approval(executor_t *ex, approval_kind kind, const char *prompt, int64_t expires_ms)
{
    store_approval a;
    memset(&a, 0, sizeof a);
    a.run_id = ex->run.id;
    a.step_idx = ex->cur;
    str_copy(a.kind, approval_kind_name(kind), sizeof a.kind);
    str_copy(a.state, approval_state_name(APPROVAL_PENDING), sizeof a.state);
    mask_secrets(prompt, a.prompt, sizeof a.prompt);
    a.created_at = wall_ms();
    a.expires_at = expires_ms > 0 ? a.created_at + expires_ms : 0;
    int64_t id = store_approval_create(ex->store, &a);
    if (id == 0)
        return false;
    ex->approval_id = id;
    ex->phase = PH_APPROVAL;
    set_run_state(ex, RUN_WAITING, NULL);
    arm_expiry(ex, a.expires_at);
    event(ex, "run %lld waits for approval %lld: %s", (long long)ex->run.id, (long long)id, a.prompt);
    {
        char text[800];
        snprintf(text, sizeof text, "drd: %s run %lld needs a decision (approval %lld): %s", ex->run.kind,
                 (long long)ex->run.id, (long long)id, a.prompt);
        tell(ex, "approval_needed", text, id);
    }
    changed(ex);
    return true;
}

/* What a decision does to the step it is about. */
static void apply_decision(executor_t *ex, const store_approval *a, bool approve, const char *choice,
                           const char *by, const char *reason)
{
    exec_step *s = &ex->steps[ex->cur];
    char why[512];

    ex->approval_id = 0;
    if (ex->timer)
        loop_cancel_timer(ex->loop, ex->timer);
    ex->timer = 0;
    ex->phase = PH_IDLE;

    snprintf(why, sizeof why, "approval %lld %s by %s%s%s", (long long)a->id,
             approve ? "approved" : (strcmp(by, "expiry") == 0 ? "expired" : "rejected"), by,
             reason && *reason ? ": " : "", S(reason));
    approval_choice c = CHOICE_NONE;
    approval_choice_parse(choice, &c);           /* checked by executor_decide */
    approval_outcome o = approval_outcome_of(approval_kind_of(a->kind), approve, c);
    switch (o.effect) {
    case EFFECT_DONE:
        s->st.finished_at = wall_ms();
        s->st.error[0] = '\0';
        set_step_state(ex, ex->cur, STEP_DONE, why, NULL);
        set_run_state(ex, RUN_RUNNING, NULL);
        advance(ex);
        break;
    case EFFECT_SKIP:
        s->st.finished_at = wall_ms();
        set_step_state(ex, ex->cur, STEP_SKIPPED, why, NULL);
        set_run_state(ex, RUN_RUNNING, NULL);
        advance(ex);
        break;
    case EFFECT_ABORT:
        s->st.finished_at = wall_ms();
        str_copy(s->st.error, why, sizeof s->st.error);
        set_step_state(ex, ex->cur, STEP_FAILED, why, NULL);
        finish_run(ex, RUN_ABORTED, why);
        break;
    case EFFECT_RETRY:
        if (o.resolution != CHOICE_NONE)            /* read by the next sync-back attempt */
            store_sync_resolution_set(ex->store, approval_choice_name(o.resolution));
        set_run_state(ex, RUN_RUNNING, NULL);
        begin_step(ex, ex->cur);
        break;
    }
}

static void on_approval_expired(loop_t *loop, void *arg)
{
    executor_t *ex = arg;
    store_approval a;
    ex->timer = 0;
    if (ex->approval_id == 0 || !store_approval_get(ex->store, ex->approval_id, &a))
        return;
    if (!store_approval_decide(ex->store, a.id, approval_state_name(APPROVAL_EXPIRED), "expiry",
                               "not decided in time", NULL, wall_ms()))
        return;
    apply_decision(ex, &a, false, NULL, "expiry", "not decided in time");
}

bool executor_decide(executor_t *ex, int64_t approval_id, bool approve, const char *choice,
                     const char *by, const char *reason, char *err, size_t errlen)
{
    store_approval a;
    if (!store_approval_get(ex->store, approval_id, &a)) {
        snprintf(err, errlen, "no approval %lld", (long long)approval_id);
        return false;
    }
    if (approval_state_of(a.state) == APPROVAL_PENDING &&
        (a.run_id != ex->run.id || ex->phase != PH_APPROVAL || ex->approval_id != approval_id)) {
        snprintf(err, errlen, "approval %lld does not belong to the active run", (long long)approval_id);
        return false;
    }
    bool sync_step = a.step_idx >= 0 && a.step_idx < ex->n_steps &&
                     ex->steps[a.step_idx].def.action == ACT_SYNC_BACK;
    if (!approval_check(&a, choice, sync_step, err, errlen))
        return false;
    if (!store_approval_decide(ex->store, approval_id,
                               approval_state_name(approve ? APPROVAL_APPROVED : APPROVAL_REJECTED), by,
                               reason, choice, wall_ms())) {
        snprintf(err, errlen, "approval %lld could not be decided (already decided?)", (long long)approval_id);
        return false;
    }
    apply_decision(ex, &a, approve, choice, by, reason);
    return true;
}

/* ---------------------------------------------------------------- steps */

static void on_step_done(void *arg, const step_outcome *o);

static void on_retry_timer(loop_t *loop, void *arg)
{
    executor_t *ex = arg;
    ex->timer = 0;
    begin_step(ex, ex->cur);
}

typedef struct {
    executor_t *ex;
    int i;
    const char *why;
} begin_ctx;

static bool persist_begin(store_t *st, void *arg)
{
    begin_ctx *c = arg;
    (void)st;
    set_step_state(c->ex, c->i, STEP_RUNNING, c->why, NULL);
    set_run_state(c->ex, RUN_RUNNING, NULL);
    return true;
}

static void on_preflight_done(void *arg, bool ok, const char *error, const char *report)
{
    executor_t *ex = arg;
    step_outcome o = { .ok = ok, .exit_code = -1, .output = report };

    ex->preflight = NULL;
    str_copy(o.error, error, sizeof o.error);
    if (ok)
        str_copy(o.note, "every step's prerequisites hold (see the output)", sizeof o.note);
    on_step_done(ex, &o);
}

/* The run's first step: the prerequisites of all its other steps
 * (privileges, env file, commands, the target reachable), before any of
 * them changes anything. A failure waits for a decision like any step
 * with on_failure = ask. */
static void begin_preflight(executor_t *ex)
{
    runbook_step *defs = calloc((size_t)ex->n_steps + 1, sizeof *defs);
    size_t n = 0;
    bool up[2] = { monitor_target(ex->monitor, TARGET_PRIMARY)->healthy,
                   monitor_target(ex->monitor, TARGET_BACKUP)->healthy };

    ex->phase = PH_STEP;
    for (int k = 0; defs != NULL && k < ex->n_steps; k++)
        if (ex->steps[k].def.action != ACT_PREFLIGHT)
            defs[n++] = ex->steps[k].def;    /* shallow: preflight_start copies what it keeps */
    ex->preflight = defs != NULL ? preflight_start(ex->loop, ex->run_cfg, ex->run.kind, defs, n, up,
                                                   on_preflight_done, ex)
                                 : NULL;
    free(defs);
    if (ex->preflight == NULL) {
        step_outcome o = { .ok = false, .exit_code = -1 };
        str_copy(o.error, "the preflight could not start (out of memory)", sizeof o.error);
        on_step_done(ex, &o);
    }
}

static void begin_step(executor_t *ex, int i)
{
    exec_step *s = &ex->steps[i];
    char why[64];

    ex->cur = i;
    s->st.attempts++;
    s->st.started_at = wall_ms();
    s->st.finished_at = 0;
    s->st.exit_code = -1;
    snprintf(why, sizeof why, "attempt %d", s->st.attempts);
    /* Persisted before the work starts: a crash from here on is seen. The
     * step and the run's current step in one transaction: one fsync. */
    begin_ctx bc = { ex, i, why };
    if (!store_tx(ex->store, persist_begin, &bc))
        log_error("run %lld: could not persist the start of step %s", (long long)ex->run.id, s->def.name);
    changed(ex);

    if (s->def.action == ACT_APPROVE) {
        if (!wait_approval(ex, APPROVAL_STEP, s->def.prompt, s->def.expires_ms)) {
            str_copy(s->st.error, "could not record the approval", sizeof s->st.error);
            set_step_state(ex, i, STEP_FAILED, s->st.error, NULL);
            finish_run(ex, RUN_FAILED, s->st.error);
        }
        return;
    }
    if (ex->fake.begin != NULL) {
        ex->phase = PH_STEP;
        ex->fake_work = ex->fake.begin(ex->fake.arg, &s->def, s->st.attempts, on_step_done, ex);
        return;
    }
    if (s->def.action == ACT_PREFLIGHT) {
        begin_preflight(ex);
        return;
    }
    step_env env = {
        .loop = ex->loop, .cfg = ex->run_cfg, .monitor = ex->monitor, .fetch = ex->fetch,
        .store = ex->store, .run_id = ex->run.id, .run_kind = ex->run.kind, .refresh = ex->refresh,
        .attempt = s->st.attempts,
    };
    ex->phase = PH_STEP;
    ex->work = step_begin(&env, &s->def, on_step_done, ex);
    if (ex->work != NULL && (s->def.action == ACT_SYNC_BACK || s->def.action == ACT_VERIFY ||
                             s->def.action == ACT_CAPTURE)) {
        progress_stop(ex);
        ex->progress_timer = loop_add_timer(ex->loop, PROGRESS_EVERY_MS, on_progress, ex);
    }
    if (ex->work == NULL) {
        step_outcome o = { .ok = false, .exit_code = -1 };
        str_copy(o.error, "out of memory", sizeof o.error);
        on_step_done(ex, &o);
    }
}

/* While capture, sync-back or verify runs: its progress lines become the
 * step's output (drctl failback and the page show them), once a second
 * when they changed. The step's state is not touched. */
static void on_progress(loop_t *loop, void *arg)
{
    executor_t *ex = arg;
    ex->progress_timer = 0;
    if (ex->work == NULL || ex->phase != PH_STEP || ex->cur < 0)
        return;
    char *out = step_progress(ex->work);
    if (out != NULL && strlen(out) != ex->progress_len) {
        exec_step *s = &ex->steps[ex->cur];
        ex->progress_len = strlen(out);
        s->st.output = out;
        if (!store_step_update(ex->store, &s->st))
            log_warn("run %lld: could not store step %s's progress", (long long)ex->run.id, s->def.name);
        s->st.output = NULL;
        s->st.params = NULL;
        changed(ex);
    }
    free(out);
    ex->progress_timer = loop_add_timer(loop, PROGRESS_EVERY_MS, on_progress, ex);
}

static void progress_stop(executor_t *ex)
{
    if (ex->progress_timer)
        loop_cancel_timer(ex->loop, ex->progress_timer);
    ex->progress_timer = 0;
    ex->progress_len = 0;
}

static void on_step_done(void *arg, const step_outcome *o)
{
    executor_t *ex = arg;
    exec_step *s = &ex->steps[ex->cur];
    char why[600];

    progress_stop(ex);
    step_outcome_persist(ex->store, o);
    ex->work = NULL;                  /* steps.c frees it after this callback */
    ex->fake_work = NULL;
    ex->phase = PH_IDLE;
    s->st.finished_at = wall_ms();
    s->st.exit_code = o->exit_code;
    int64_t took = s->st.finished_at - s->st.started_at;
    if (ex->counters != NULL && (unsigned)s->def.action < METRICS_ACTIONS) {
        ex->counters->step_seconds_sum[s->def.action] += (double)took / 1000.0;
        ex->counters->step_seconds_count[s->def.action]++;
    }

    if (o->ok) {
        str_copy(s->st.error, o->note, sizeof s->st.error);   /* the note is shown as the step's detail */
        snprintf(why, sizeof why, "%lldms%s%s", (long long)took, o->note[0] ? ", " : "", o->note);
        set_step_state(ex, ex->cur, STEP_DONE, why, o->output ? o->output : "");
        if (s->def.action == ACT_SWITCH_ENV)
            monitor_set_active(ex->monitor, target_or_primary(s->def.target));
        advance(ex);
        return;
    }
    str_copy(s->st.error, o->error, sizeof s->st.error);
    snprintf(why, sizeof why, "%s (after %lldms, attempt %d of %lld)", o->error, (long long)took,
             s->st.attempts, (long long)s->def.retries + 1);
    if (o->conflicts) {
        /* Rows changed on both sides: never decided silently, whatever
         * on_failure says. Nothing was written to the primary. */
        set_step_state(ex, ex->cur, STEP_NEEDS_ATTENTION, why, o->output ? o->output : "");
        char prompt[512];
        snprintf(prompt, sizeof prompt,
                 "Step %s found rows changed on both the primary and the backup (see the step's output); "
                 "nothing was written. Approve with choice backup-wins or primary-wins to resolve them that way, "
                 "approve to retry after fixing them by hand, reject to abort.", s->def.name);
        if (!wait_approval(ex, APPROVAL_ATTENTION, prompt, 0))
            finish_run(ex, RUN_FAILED, "could not record the approval");
        return;
    }
    if (s->st.attempts <= s->def.retries) {
        set_step_state(ex, ex->cur, STEP_PENDING, why, o->output ? o->output : "");
        ex->phase = PH_RETRY_WAIT;
        ex->timer = loop_add_timer(ex->loop, s->def.retry_delay_ms, on_retry_timer, ex);
        changed(ex);
        return;
    }
    switch (s->def.on_failure) {
    case ON_FAILURE_CONTINUE:
        set_step_state(ex, ex->cur, STEP_FAILED, why, o->output ? o->output : "");
        ex->had_failure = true;
        advance(ex);
        break;
    case ON_FAILURE_ASK: {
        set_step_state(ex, ex->cur, STEP_NEEDS_ATTENTION, why, o->output ? o->output : "");
        char prompt[512];
        snprintf(prompt, sizeof prompt, "Step %s failed: %s. Approve to retry, approve with skip to skip it, reject to abort the run.",
                 s->def.name, o->error);
        if (!wait_approval(ex, APPROVAL_ATTENTION, prompt, 0))
            finish_run(ex, RUN_FAILED, "could not record the approval");
        break;
    }
    default: {
        set_step_state(ex, ex->cur, STEP_FAILED, why, o->output ? o->output : "");
        char err[600];
        snprintf(err, sizeof err, "step %s failed: %s", s->def.name, o->error);
        finish_run(ex, RUN_FAILED, err);
        break;
    }
    }
}

static void advance(executor_t *ex)
{
    for (int i = 0; i < ex->n_steps; i++) {
        step_state st = step_state_of(ex->steps[i].st.state);
        if (st == STEP_PENDING) {
            begin_step(ex, i);
            return;
        }
        if (st == STEP_FAILED)
            ex->had_failure = true;
    }
    ex->cur = -1;
    if (ex->had_failure)
        finish_run(ex, RUN_FAILED, "a step failed (on_failure = continue)");
    else
        finish_run(ex, RUN_SUCCEEDED, NULL);
}

/* -------------------------------------------------------------- loading */

typedef struct {
    executor_t *ex;
    bool ok;
} load_ctx;

static bool load_step(const store_step *st, void *arg)
{
    load_ctx *c = arg;
    executor_t *ex = c->ex;
    exec_step *grown = realloc(ex->steps, (size_t)(ex->n_steps + 1) * sizeof *grown);
    if (grown == NULL) {
        c->ok = false;
        return false;
    }
    ex->steps = grown;
    exec_step *s = &grown[ex->n_steps];
    memset(s, 0, sizeof *s);
    json_error_t jerr;
    json_t *j = json_loads(st->params ? st->params : "", 0, &jerr);
    if (j == NULL || !runbook_step_from_json(j, &s->def)) {
        log_error("run %lld: step %d has unreadable parameters", (long long)st->run_id, st->idx);
        json_decref(j);
        c->ok = false;
        return false;
    }
    json_decref(j);
    s->st = *st;
    s->st.params = NULL;
    s->st.output = NULL;
    ex->n_steps++;
    return true;
}

static bool load_run(executor_t *ex, int64_t run_id)
{
    load_ctx c = { ex, true };
    if (!store_run_get(ex->store, run_id, &ex->run))
        return false;
    ex->run_cfg = config_ref(ex->cfg);   /* dropped by clear_run */
    if (!store_steps_of(ex->store, run_id, load_step, &c) || !c.ok) {
        clear_run(ex);
        return false;
    }
    return true;
}

/* Why a run of this kind cannot start now (false with err): one is in
 * progress, the app is already there, or the target is known to be down. */
static bool start_allowed(executor_t *ex, bool failover, char *err, size_t errlen)
{
    if (ex->run.id != 0) {
        snprintf(err, errlen, "run %lld (%s) is in progress", (long long)ex->run.id, ex->run.kind);
        return false;
    }
    target_id active = monitor_active(ex->monitor);
    if (failover && active == TARGET_BACKUP) {
        snprintf(err, errlen, "the app is already on the backup");
        return false;
    }
    if (!failover && active == TARGET_PRIMARY) {
        snprintf(err, errlen, "the app is already on the primary");
        return false;
    }
    /* Never towards a target known to be down. */
    target_id to = failover ? TARGET_BACKUP : TARGET_PRIMARY;
    if (monitor_breaker(ex->monitor, to) == BREAKER_OPEN) {
        snprintf(err, errlen, "the %s is not healthy (breaker open%s%s)", target_name(to),
                 monitor_target(ex->monitor, to)->last_error[0] ? ": " : "",
                 monitor_target(ex->monitor, to)->last_error);
        return false;
    }
    return true;
}

/* Nothing irreversible before the prerequisites hold: every run starts
 * with a preflight step (recorded like the others). */
static bool add_preflight(runbook_t *rb)
{
    runbook_step *grown = realloc(rb->steps, (rb->n_steps + 1) * sizeof *grown);
    if (grown == NULL)
        return false;
    rb->steps = grown;
    memmove(&rb->steps[1], &rb->steps[0], rb->n_steps * sizeof *grown);
    memset(&rb->steps[0], 0, sizeof *grown);
    rb->n_steps++;
    str_copy(rb->steps[0].name, "preflight", sizeof rb->steps[0].name);
    rb->steps[0].action = ACT_PREFLIGHT;
    rb->steps[0].timeout_ms = 10000;
    rb->steps[0].on_failure = ON_FAILURE_ASK;
    rb->steps[0].description = strdup("drd's own first step: the prerequisites of every step (privileges, "
                                      "env file, commands, the target reachable) before anything changes.");
    return true;
}

/* Record run r with rb's steps (each as JSON); its id, 0 with err. */
static int64_t record_run(executor_t *ex, const store_run *r, const runbook_t *rb, char *err,
                          size_t errlen)
{
    int64_t id = 0;
    char **names = calloc(rb->n_steps, sizeof *names);
    char **actions = calloc(rb->n_steps, sizeof *actions);
    char **params = calloc(rb->n_steps, sizeof *params);
    if (names == NULL || actions == NULL || params == NULL) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < rb->n_steps; i++) {
        json_t *j = runbook_step_to_json(&rb->steps[i]);
        params[i] = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (params[i] == NULL) {
            snprintf(err, errlen, "out of memory");
            goto cleanup;
        }
        names[i] = (char *)rb->steps[i].name;
        actions[i] = (char *)step_action_name(rb->steps[i].action);
    }
    id = store_run_create(ex->store, r, (const char *const *)names, (const char *const *)actions,
                          (const char *const *)params, (int)rb->n_steps);
    if (id == 0)
        snprintf(err, errlen, "could not record the run (see the log)");
cleanup:
    if (params != NULL)
        for (size_t i = 0; i < rb->n_steps; i++)
            free(params[i]);
    free(params);
    free(names);
    free(actions);
    return id;
}

int64_t executor_start(executor_t *ex, const char *kind, const char *reason, const char *started_by,
                       int64_t request_id, int64_t incident_id, char *err, size_t errlen)
{
    bool failover = strcmp(kind, "failover") == 0;
    const char *path = failover ? ex->cfg->failover_runbook : ex->cfg->failback_runbook;
    config_errors errs = { 0 };
    runbook_t *rb = NULL;
    int64_t id = 0;

    if (!start_allowed(ex, failover, err, errlen))
        return 0;
    rb = runbook_load(path, ex->cfg, &errs);
    if (rb == NULL) {
        snprintf(err, errlen, "runbook %s is invalid: %s", path, errs.n > 0 ? errs.msgs[0] : "unreadable");
        goto cleanup;
    }
    if (!add_preflight(rb)) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    store_run r;
    memset(&r, 0, sizeof r);
    str_copy(r.kind, kind, sizeof r.kind);
    str_copy(r.state, run_state_name(RUN_RUNNING), sizeof r.state);
    mask_secrets(reason ? reason : "", r.reason, sizeof r.reason);
    str_copy(r.started_by, started_by, sizeof r.started_by);
    r.request_id = request_id;
    r.incident_id = incident_id;
    r.created_at = wall_ms();
    r.current_step = -1;
    str_copy(r.runbook, path, sizeof r.runbook);
    if ((id = record_run(ex, &r, rb, err, errlen)) == 0)
        goto cleanup;
    if (!load_run(ex, id)) {
        snprintf(err, errlen, "could not load run %lld back", (long long)id);
        id = 0;
        goto cleanup;
    }
    event(ex, "run %lld (%s, %d steps) started by %s%s%s", (long long)id, kind, ex->n_steps, started_by,
          r.reason[0] ? ": " : "", r.reason);
    char text[700];
    snprintf(text, sizeof text, "drd: %s run %lld started by %s%s%s", kind, (long long)id, started_by,
             r.reason[0] ? ": " : "", r.reason);
    tell(ex, "run_started", text, 0);
    advance(ex);

cleanup:
    runbook_free(rb);
    config_errors_free(&errs);
    return id;
}

typedef struct {
    int step_idx;
    store_approval found;
    bool any;
} find_ctx;

static bool find_pending(const store_approval *a, void *arg)
{
    find_ctx *f = arg;
    if (approval_state_of(a->state) == APPROVAL_PENDING && a->step_idx == f->step_idx) {
        f->found = *a;
        f->any = true;
        return false;
    }
    return true;
}

bool executor_resume(executor_t *ex)
{
    int64_t id = store_run_active(ex->store);
    if (id <= 0)
        return id == 0;
    if (!load_run(ex, id)) {
        log_error("run %lld cannot be resumed: its steps could not be read", (long long)id);
        return false;
    }
    event(ex, "run %lld (%s) resumed after a restart", (long long)id, ex->run.kind);

    for (int i = 0; i < ex->n_steps; i++) {
        exec_step *s = &ex->steps[i];
        bool running = step_state_of(s->st.state) == STEP_RUNNING;
        bool attention = step_state_of(s->st.state) == STEP_NEEDS_ATTENTION;
        if (!running && !attention)
            continue;
        ex->cur = i;
        find_ctx f = { .step_idx = i };
        store_approvals_of_run(ex->store, id, find_pending, &f);
        if (f.any) {                      /* still waiting on a decision */
            ex->approval_id = f.found.id;
            ex->phase = PH_APPROVAL;
            arm_expiry(ex, f.found.expires_at);
            log_info("run %lld: still waiting for approval %lld", (long long)id, (long long)f.found.id);
            changed(ex);
            return true;
        }
        if (running && s->def.action == ACT_APPROVE) {
            /* Its approval is gone or decided without us: ask again. */
            s->st.attempts--;
            begin_step(ex, i);
            return true;
        }
        if (running && step_action_idempotent(s->def.action)) {
            set_step_state(ex, i, STEP_PENDING, "drd restarted while it ran; it is safe to run again", NULL);
            break;
        }
        char prompt[512];
        snprintf(prompt, sizeof prompt,
                 "drd stopped while step %s (%s) was running: it may or may not have taken effect. "
                 "Approve to run it again, approve with skip if it completed, reject to abort the run.",
                 s->def.name, step_action_name(s->def.action));
        if (running)
            set_step_state(ex, i, STEP_NEEDS_ATTENTION, "drd restarted while it ran; not safe to repeat blindly",
                           NULL);
        if (!wait_approval(ex, APPROVAL_ATTENTION, prompt, 0))
            finish_run(ex, RUN_FAILED, "could not record the approval");
        return true;
    }
    advance(ex);
    return true;
}

/* ------------------------------------------------------------- plumbing */

executor_t *executor_new(loop_t *loop, store_t *store, monitor_t *monitor, fetch_t *fetch,
                         const config_t *cfg)
{
    executor_t *ex = calloc(1, sizeof *ex);
    if (ex == NULL)
        return NULL;
    ex->loop = loop;
    ex->store = store;
    ex->monitor = monitor;
    ex->fetch = fetch;
    ex->cfg = cfg;
    ex->cur = -1;
    return ex;
}

void executor_free(executor_t *ex)
{
    if (ex == NULL)
        return;
    step_cancel(ex->unfence);
    clear_run(ex);
    free(ex);
}

void executor_set_refresh(executor_t *ex, struct refresh *r)
{
    ex->refresh = r;
}

void executor_set_observers(executor_t *ex, metrics_counters *c, notify_t *n)
{
    ex->counters = c;
    ex->notify = n;
}

/* Tell the webhook, with the run's fields for format = json. */
static void tell(executor_t *ex, const char *what, const char *text, int64_t approval_id)
{
    if (ex->notify == NULL)
        return;
    json_t *f = json_pack("{s:I, s:s}", "run_id", (json_int_t)ex->run.id, "kind", ex->run.kind);
    if (f != NULL && approval_id > 0)
        json_object_set_new(f, "approval_id", json_integer(approval_id));
    notify_send(ex->notify, what, text, f);
    json_decref(f);
}

void executor_reconfigure(executor_t *ex, const config_t *cfg)
{
    ex->cfg = cfg;
}

void executor_set_listeners(executor_t *ex, executor_done_cb done, executor_change_cb change, void *arg)
{
    ex->on_done = done;
    ex->on_change = change;
    ex->listener_arg = arg;
}

bool executor_busy(const executor_t *ex)
{
    return ex->run.id != 0;
}

int64_t executor_run_id(const executor_t *ex)
{
    return ex->run.id;
}
