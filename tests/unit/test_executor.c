/* executor: the runbook state machine with a fake step runner (the
 * executor_work seam): what each outcome does to the step and the run
 * (ok, failed, retried, skipped, aborted, approve steps), what is
 * persisted, and the resume after a crash from the persisted state. Real
 * loop and store (a temp dir); no step does real work. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drd/engine/executor.h"
#include "drd/core/util.h"

/* --------------------------------------------------------- fake runner */

typedef struct fake_work fake_work;
typedef struct {
    loop_t *loop;
    const char *script;          /* "name=ok,fail;name2=hang" : outcomes per attempt */
    char log[512];               /* "name#attempt ..." as begun */
    fake_work *inflight;
    bool stop_on_begin;          /* stop the loop when a step that hangs begins */
} fake;

struct fake_work {
    fake *f;
    uint64_t timer;
    bool ok;
    char what[16];               /* the script's word: ok, fail, pending, spent */
    char name[64];
    void (*cb)(void *, const step_outcome *);
    void *cb_arg;
};

/* The outcome of attempt n of step name: the script's n-th word, the last
 * one repeated; "ok" when the step is not in the script. */
static const char *outcome(const fake *f, const char *name, int n)
{
    static char word[16];
    size_t nl = strlen(name);
    const char *p = f->script;
    str_copy(word, "ok", sizeof word);
    while (p != NULL && *p != '\0') {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            const char *w = p + nl + 1;
            for (int i = 1;; i++) {
                size_t len = strcspn(w, ",;");
                snprintf(word, sizeof word, "%.*s", (int)len, w);
                if (i >= n || w[len] != ',')
                    return word;
                w += len + 1;
            }
        }
        p = strchr(p, ';');
        if (p != NULL)
            p++;
    }
    return word;
}

static void fake_fire(loop_t *loop, void *arg)
{
    fake_work *w = arg;
    step_outcome o = { .ok = w->ok, .exit_code = w->ok ? 0 : 1 };
    (void)loop;
    if (strcmp(w->what, "pending") == 0) {        /* a fence step that could not reach the primary */
        o.fence = FENCE_PENDING;
        o.fence_target = TARGET_PRIMARY;
    }
    o.resolution_spent = strcmp(w->what, "spent") == 0;   /* a sync-back that used the decision */
    if (!w->ok)
        snprintf(o.error, sizeof o.error, "%s failed", w->name);
    w->f->inflight = NULL;
    w->cb(w->cb_arg, &o);
    free(w);
}

static void *fake_begin(void *arg, const runbook_step *s, int attempt, void (*cb)(void *, const step_outcome *),
                        void *cb_arg)
{
    fake *f = arg;
    fake_work *w = calloc(1, sizeof *w);
    size_t n = strlen(f->log);
    snprintf(f->log + n, sizeof f->log - n, "%s%s#%d", n ? " " : "", s->name, attempt);
    w->f = f;
    w->cb = cb;
    w->cb_arg = cb_arg;
    str_copy(w->name, s->name, sizeof w->name);
    const char *what = outcome(f, s->name, attempt);
    f->inflight = w;
    if (strcmp(what, "hang") == 0) {
        if (f->stop_on_begin)
            loop_stop(f->loop);
        return w;
    }
    w->ok = strcmp(what, "fail") != 0;
    str_copy(w->what, what, sizeof w->what);
    w->timer = loop_add_timer(f->loop, 0, fake_fire, w);   /* never from inside begin */
    return w;
}

static void fake_cancel(void *arg, void *work)
{
    fake_work *w = work;
    fake *f = arg;
    if (w->timer)
        loop_cancel_timer(f->loop, w->timer);
    f->inflight = NULL;
    free(w);
}

/* ------------------------------------------------------------- fixture */

typedef struct {
    char dir[64];
    config_t *cfg;
    loop_t *loop;
    store_t *st;
    monitor_t *mon;
    executor_t *ex;
    fake f;
    int64_t done_run;
    run_state done_state;
    uint64_t guard;
} fixture;

static const char *const RUNBOOK =
    "[step one]\naction = exec\ncommand = true\n"
    "[step two]\naction = exec\ncommand = true\nretries = 1\nretry_delay = 10ms\n"
    "[step three]\naction = exec\ncommand = true\non_failure = ask\n"
    "[step four]\naction = notify\nmessage = hello\non_failure = continue\n"
    "[step five]\naction = exec\ncommand = true\n";

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void on_done(void *arg, int64_t run_id, const char *kind, run_state state)
{
    fixture *x = arg;
    x->done_run = run_id;
    x->done_state = state;
    loop_stop(x->loop);
}

/* Stop the loop whenever the run waits for a decision. */
static void on_change(void *arg)
{
    fixture *x = arg;
    store_run r;
    int64_t id = store_run_active(x->st);
    if (id > 0 && store_run_get(x->st, id, &r) && run_state_of(r.state) == RUN_WAITING)
        loop_stop(x->loop);
}

static void new_executor(fixture *x)
{
    x->ex = executor_new(x->loop, x->st, x->mon, NULL, x->cfg);
    assert_non_null(x->ex);
    executor_set_listeners(x->ex, on_done, on_change, x);
    executor_work w = { &x->f, fake_begin, fake_cancel };
    executor_set_work(x->ex, &w);
}

static int setup_with(void **state, const char *runbook)
{
    fixture *x = calloc(1, sizeof *x);
    char path[PATH_MAX], conf[PATH_MAX * 2], err[256] = "";
    config_errors errs = { 0 };
    str_copy(x->dir, "/tmp/drd-test-ex-XXXXXX", sizeof x->dir);
    assert_non_null(mkdtemp(x->dir));
    snprintf(path, sizeof path, "%s/failover.ini", x->dir);
    write_file(path, runbook);
    snprintf(path, sizeof path, "%s/failback.ini", x->dir);
    write_file(path, "[step only]\naction = exec\ncommand = true\n");
    snprintf(conf, sizeof conf,
             "[primary]\nurl = postgresql://app@127.0.0.1:1/app\n"
             "[backup]\nurl = postgresql://app@127.0.0.1:2/app\n"
             "[failover]\nrunbook = failover.ini\n[failback]\nrunbook = failback.ini\n"
             "[state]\ndb = %s/drd.db\n", x->dir);
    snprintf(path, sizeof path, "%s/drd.conf", x->dir);
    write_file(path, conf);
    x->cfg = config_load(path, &errs);
    if (x->cfg == NULL)
        fail_msg("config: %s", errs.n ? errs.msgs[0] : "?");
    x->loop = loop_new();
    snprintf(path, sizeof path, "%s/drd.db", x->dir);
    x->st = store_open(path, err, sizeof err);
    assert_non_null(x->st);
    x->mon = monitor_new(x->loop, x->st, x->cfg);
    assert_non_null(x->mon);
    x->f.loop = x->loop;
    x->f.script = "";
    new_executor(x);
    *state = x;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, RUNBOOK);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    fixture *x = *state;
    executor_free(x->ex);
    monitor_free(x->mon);
    store_close(x->st);
    loop_free(x->loop);
    config_free(x->cfg);
    nftw(x->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(x);
    return 0;
}

static void on_guard(loop_t *loop, void *arg)
{
    fixture *x = arg;
    x->guard = 0;
    loop_stop(loop);
    fail_msg("the loop did not stop within 5 s (steps: %s)", x->f.log);
}

/* Run the loop until the run ends, waits, or a hanging step begins. */
static void run_loop(fixture *x)
{
    x->guard = loop_add_timer(x->loop, 5000, on_guard, x);
    loop_run(x->loop);
    if (x->guard)
        loop_cancel_timer(x->loop, x->guard);
    x->guard = 0;
}

static int64_t start(fixture *x)
{
    char err[256] = "";
    int64_t id = executor_start(x->ex, "failover", "test", "socket", 0, 0, err, sizeof err);
    if (id == 0)
        fail_msg("executor_start: %s", err);
    return id;
}

/* The persisted step states, "preflight:done one:done ...". */
typedef struct {
    char out[512];
} states_ctx;

static bool add_state(const store_step *s, void *arg)
{
    states_ctx *c = arg;
    size_t n = strlen(c->out);
    snprintf(c->out + n, sizeof c->out - n, "%s%s:%s/%d", n ? " " : "", s->name, s->state, s->attempts);
    return true;
}

static const char *steps_of(fixture *x, int64_t run)
{
    static states_ctx c;
    c.out[0] = '\0';
    store_steps_of(x->st, run, add_state, &c);
    return c.out;
}

static const char *run_state_in_store(fixture *x, int64_t run)
{
    static store_run r;
    assert_true(store_run_get(x->st, run, &r));
    return r.state;
}

typedef struct {
    store_approval a;
    int n;
} pend_ctx;

static bool add_pending(const store_approval *a, void *arg)
{
    pend_ctx *p = arg;
    p->a = *a;
    p->n++;
    return true;
}

static store_approval pending(fixture *x)
{
    pend_ctx p = { .n = 0 };
    store_approvals_pending(x->st, add_pending, &p);
    assert_int_equal(p.n, 1);
    return p.a;
}

/* --------------------------------------------------------------- tests */

static void test_every_step_ok(void **state)
{
    fixture *x = *state;
    int64_t run = start(x);
    run_loop(x);
    assert_int_equal(x->done_run, run);
    assert_int_equal(x->done_state, RUN_SUCCEEDED);
    assert_string_equal(run_state_in_store(x, run), "succeeded");
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:done/1 three:done/1 four:done/1 five:done/1");
    assert_string_equal(x->f.log, "preflight#1 one#1 two#1 three#1 four#1 five#1");
    assert_false(executor_busy(x->ex));
}

/* Steps report what they leave (a pending fence, a spent sync decision)
 * in their outcome; the executor writes it to the store. */
static void test_outcome_persisted_by_the_executor(void **state)
{
    fixture *x = *state;
    char v[32];
    assert_true(store_sync_resolution_set(x->st, "backup-wins"));
    x->f.script = "one=pending;two=spent";
    start(x);
    run_loop(x);
    assert_int_equal(x->done_state, RUN_SUCCEEDED);
    assert_true(store_fence_pending_get(x->st, v, sizeof v));
    assert_string_equal(v, "primary");
    store_sync_resolution_get(x->st, v, sizeof v);
    assert_string_equal(v, "");
}

/* What each fence effect does to the pending and fenced targets. */
static void test_outcome_persist_fence(void **state)
{
    fixture *x = *state;
    char pending[32], fenced[32];
    step_outcome o = { .ok = true, .fence = FENCE_PENDING, .fence_target = TARGET_BACKUP };
    step_outcome_persist(x->st, &o);
    o.fence = FENCE_APPLIED;                     /* the primary: the backup's stays pending */
    o.fence_target = TARGET_PRIMARY;
    step_outcome_persist(x->st, &o);
    store_fence_pending_get(x->st, pending, sizeof pending);
    store_fenced_get(x->st, fenced, sizeof fenced);
    assert_string_equal(pending, "backup");
    assert_string_equal(fenced, "primary");
    o.fence_target = TARGET_BACKUP;              /* the pending one done */
    step_outcome_persist(x->st, &o);
    store_fence_pending_get(x->st, pending, sizeof pending);
    store_fenced_get(x->st, fenced, sizeof fenced);
    assert_string_equal(pending, "");
    assert_string_equal(fenced, "backup");
    o.fence = FENCE_LIFTED;
    step_outcome_persist(x->st, &o);
    store_fenced_get(x->st, fenced, sizeof fenced);
    assert_string_equal(fenced, "");
    o.fence = FENCE_LEFT_ALONE;                  /* nothing, and a NULL store is accepted */
    step_outcome_persist(NULL, &o);
}

static void test_failure_aborts_the_run(void **state)
{
    fixture *x = *state;
    x->f.script = "one=fail";
    int64_t run = start(x);
    run_loop(x);
    assert_int_equal(x->done_state, RUN_FAILED);
    assert_string_equal(run_state_in_store(x, run), "failed");
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:failed/1 two:pending/0 three:pending/0 four:pending/0 five:pending/0");
}

static void test_retry_then_ok(void **state)
{
    fixture *x = *state;
    x->f.script = "two=fail,ok";
    int64_t run = start(x);
    run_loop(x);
    assert_int_equal(x->done_state, RUN_SUCCEEDED);
    assert_string_equal(x->f.log, "preflight#1 one#1 two#1 two#2 three#1 four#1 five#1");
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:done/2 three:done/1 four:done/1 five:done/1");
}

static void test_retries_exhausted_fail(void **state)
{
    fixture *x = *state;
    x->f.script = "two=fail";
    int64_t run = start(x);
    run_loop(x);
    assert_int_equal(x->done_state, RUN_FAILED);
    assert_string_equal(x->f.log, "preflight#1 one#1 two#1 two#2");
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:failed/2 three:pending/0 four:pending/0 five:pending/0");
}

static void test_continue_goes_on_and_ends_failed(void **state)
{
    fixture *x = *state;
    x->f.script = "four=fail";
    int64_t run = start(x);
    run_loop(x);
    assert_int_equal(x->done_state, RUN_FAILED);          /* never succeeded with a failed step */
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:done/1 three:done/1 four:failed/1 five:done/1");
}

/* on_failure = ask: the step needs attention; the decision says what next. */
static void test_ask_then_skip(void **state)
{
    fixture *x = *state;
    char err[256] = "";
    x->f.script = "three=fail";
    int64_t run = start(x);
    run_loop(x);
    assert_string_equal(run_state_in_store(x, run), "waiting");
    store_approval a = pending(x);
    assert_string_equal(a.kind, "attention");
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:done/1 three:needs_attention/1 four:pending/0 five:pending/0");
    /* a choice that does not fit is refused, nothing changes */
    assert_false(executor_decide(x->ex, a.id, true, "backup-wins", "alice", "", err, sizeof err));
    assert_string_equal(err, "backup-wins only applies to a sync-back step with conflicts");
    assert_true(executor_decide(x->ex, a.id, true, "skip", "alice", "it is done", err, sizeof err));
    run_loop(x);
    assert_int_equal(x->done_state, RUN_SUCCEEDED);
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:done/1 three:skipped/1 four:done/1 five:done/1");
    store_approval got;
    assert_true(store_approval_get(x->st, a.id, &got));
    assert_string_equal(got.state, "approved");
    assert_string_equal(got.choice, "skip");
    assert_false(executor_decide(x->ex, a.id, true, NULL, "bob", "", err, sizeof err));
    assert_string_equal(err, "approval 1 is already approved by alice");
}

static void test_ask_then_retry(void **state)
{
    fixture *x = *state;
    char err[256] = "";
    x->f.script = "three=fail,ok";
    int64_t run = start(x);
    run_loop(x);
    store_approval a = pending(x);
    assert_true(executor_decide(x->ex, a.id, true, NULL, "alice", "", err, sizeof err));   /* = retry */
    run_loop(x);
    assert_int_equal(x->done_state, RUN_SUCCEEDED);
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:done/1 three:done/2 four:done/1 five:done/1");
}

static void test_ask_then_reject_aborts(void **state)
{
    fixture *x = *state;
    char err[256] = "";
    x->f.script = "three=fail";
    int64_t run = start(x);
    run_loop(x);
    store_approval a = pending(x);
    assert_true(executor_decide(x->ex, a.id, false, NULL, "alice", "no", err, sizeof err));
    assert_int_equal(x->done_state, RUN_ABORTED);
    assert_string_equal(run_state_in_store(x, run), "aborted");
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:done/1 three:failed/1 four:pending/0 five:pending/0");
}

static int setup_approve(void **state)
{
    return setup_with(state, "[step ask]\naction = approve\nprompt = go?\n"
                             "[step after]\naction = exec\ncommand = true\n");
}

static void test_approve_step(void **state)
{
    fixture *x = *state;
    char err[256] = "";
    int64_t run = start(x);
    run_loop(x);
    store_approval a = pending(x);
    assert_string_equal(a.kind, "step");
    assert_string_equal(a.prompt, "go?");
    assert_false(executor_decide(x->ex, a.id, true, "skip", "alice", "", err, sizeof err));
    assert_string_equal(err, "a choice (skip) only applies to a step that needs attention");
    assert_true(executor_decide(x->ex, a.id, true, NULL, "alice", "", err, sizeof err));
    run_loop(x);
    assert_int_equal(x->done_state, RUN_SUCCEEDED);
    assert_string_equal(steps_of(x, run), "preflight:done/1 ask:done/1 after:done/1");
    assert_string_equal(x->f.log, "preflight#1 after#1");    /* an approve step does no work */
}

static void test_approve_step_rejected(void **state)
{
    fixture *x = *state;
    char err[256] = "";
    int64_t run = start(x);
    run_loop(x);
    store_approval a = pending(x);
    assert_true(executor_decide(x->ex, a.id, false, NULL, "alice", "", err, sizeof err));
    assert_int_equal(x->done_state, RUN_ABORTED);
    assert_string_equal(steps_of(x, run), "preflight:done/1 ask:failed/1 after:pending/0");
}

/* kill -9 while a step runs: the persisted state is all a new process has. */
static void crash_at(fixture *x, const char *script)
{
    x->f.script = script;
    x->f.stop_on_begin = true;
    start(x);
    run_loop(x);
    assert_non_null(x->f.inflight);
    executor_free(x->ex);                  /* the process is gone: its work too */
    x->f.stop_on_begin = false;
    x->f.script = "";
    x->f.log[0] = '\0';
    new_executor(x);
}

static void test_resume_reruns_an_idempotent_step(void **state)
{
    fixture *x = *state;
    crash_at(x, "four=hang");              /* notify: idempotent */
    int64_t run = store_run_active(x->st);
    assert_true(run > 0);
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:done/1 three:done/1 four:running/1 five:pending/0");
    assert_true(executor_resume(x->ex));
    run_loop(x);
    assert_int_equal(x->done_state, RUN_SUCCEEDED);
    assert_string_equal(x->f.log, "four#2 five#1");        /* run again, nothing before it */
}

static void test_resume_asks_before_repeating_an_exec(void **state)
{
    fixture *x = *state;
    char err[256] = "";
    crash_at(x, "two=hang");               /* exec: not safe to repeat blindly */
    int64_t run = store_run_active(x->st);
    assert_true(executor_resume(x->ex));   /* waits at once, before any step */
    assert_string_equal(run_state_in_store(x, run), "waiting");
    store_approval a = pending(x);
    assert_string_equal(a.kind, "attention");
    assert_string_equal(steps_of(x, run),
                        "preflight:done/1 one:done/1 two:needs_attention/1 three:pending/0 four:pending/0 five:pending/0");
    assert_string_equal(x->f.log, "");     /* nothing was run again */
    /* crash again while it waits: the same approval is still the one */
    executor_free(x->ex);
    new_executor(x);
    assert_true(executor_resume(x->ex));
    assert_int_equal(pending(x).id, a.id);
    assert_true(executor_decide(x->ex, a.id, true, "skip", "alice", "it completed", err, sizeof err));
    run_loop(x);
    assert_int_equal(x->done_state, RUN_SUCCEEDED);
    assert_string_equal(x->f.log, "three#1 four#1 five#1");
}

static void test_refuses_a_second_run(void **state)
{
    fixture *x = *state;
    char err[256] = "";
    x->f.script = "one=hang";
    x->f.stop_on_begin = true;
    start(x);
    run_loop(x);
    assert_true(executor_busy(x->ex));
    assert_int_equal(executor_start(x->ex, "failback", "test", "socket", 0, 0, err, sizeof err), 0);
    assert_string_equal(err, "run 1 (failover) is in progress");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_step_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_aborts_the_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcome_persisted_by_the_executor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcome_persist_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_exhausted_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continue_goes_on_and_ends_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_then_skip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_then_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_then_reject_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approve_step, setup_approve, teardown),
        cmocka_unit_test_setup_teardown(test_approve_step_rejected, setup_approve, teardown),
        cmocka_unit_test_setup_teardown(test_resume_reruns_an_idempotent_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_asks_before_repeating_an_exec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_a_second_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
