/* attention: the app-stopped state of the newest run, from the store -
 * what drctl status's first line, exit 4, the page's banner, the metric and
 * the notification rest on. Each test works in its own temp directory. */
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

#include "drd/engine/attention.h"
#include "drd/store/store.h"
#include "drd/core/util.h"

typedef struct {
    char dir[64];
    store_t *st;
    int64_t run;
} fixture;

static const char *const names[] = { "preflight", "stop-app", "switch-env", "start-app" };
static const char *const actions[] = { "preflight", "exec", "switch-env", "exec" };
static const char *const params[] = { "{}", "{\"command\":\"systemctl stop app\"}",
                                      "{\"target\":\"backup\"}", "{\"command\":\"systemctl start app\"}" };

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char path[PATH_MAX], err[256] = "";
    assert_non_null(f);
    str_copy(f->dir, "/tmp/drd-test-att-XXXXXX", sizeof f->dir);
    assert_non_null(mkdtemp(f->dir));
    snprintf(path, sizeof path, "%s/drd.db", f->dir);
    f->st = store_open(path, err, sizeof err);
    if (f->st == NULL)
        fail_msg("store_open: %s", err);
    store_run r = { .created_at = 1000, .current_step = -1 };
    str_copy(r.kind, "failover", sizeof r.kind);
    str_copy(r.state, "running", sizeof r.state);
    str_copy(r.started_by, "token", sizeof r.started_by);
    str_copy(r.runbook, "rb.ini", sizeof r.runbook);
    f->run = store_run_create(f->st, &r, names, actions, params, 4);
    assert_true(f->run > 0);
    *state = f;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->st);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void step(fixture *f, int idx, const char *state)
{
    store_step s = { .run_id = f->run, .idx = idx, .attempts = 1, .started_at = 2000,
                     .finished_at = 2000 + idx, .exit_code = 0 };
    str_copy(s.state, state, sizeof s.state);
    assert_true(store_step_update(f->st, &s));
}

static void run(fixture *f, const char *state, int cur, const char *error)
{
    assert_true(store_run_update(f->st, f->run, state, cur, error, strcmp(state, "waiting") == 0 ? 0 : 5000));
}

static int64_t approval(fixture *f, const char *kind, int idx)
{
    store_approval a = { .run_id = f->run, .step_idx = idx, .created_at = 3000 };
    str_copy(a.kind, kind, sizeof a.kind);
    str_copy(a.state, "pending", sizeof a.state);
    str_copy(a.prompt, "Step start-app failed: exit 1.", sizeof a.prompt);
    return store_approval_create(f->st, &a);
}

/* The app is stopped by a run that ended failed: loud, and says where. */
static void failed_between_stop_and_start(void **state)
{
    fixture *f = *state;
    step(f, 0, "done");
    step(f, 1, "done");
    step(f, 2, "failed");
    run(f, "failed", -1, "step switch-env failed: permission denied");
    json_t *a = attention_from_store(f->st, NULL);
    assert_true(json_is_object(a));
    assert_true(json_is_true(json_object_get(a, "app_stopped")));
    assert_string_equal(json_string_value(json_object_get(a, "step")), "switch-env");
    assert_string_equal(json_string_value(json_object_get(a, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(a, "reason")), "step switch-env failed: permission denied");
    assert_int_equal(json_integer_value(json_object_get(a, "stopped_at")), 2001);
    assert_true(json_is_null(json_object_get(a, "approval_id")));
    json_decref(a);
}

/* Failed before stop-app (e.g. in the preflight): the app runs, no alarm. */
static void failed_before_stop(void **state)
{
    fixture *f = *state;
    step(f, 0, "failed");
    run(f, "failed", -1, "preflight failed");
    json_t *a = attention_from_store(f->st, NULL);
    assert_true(json_is_null(a));
    json_decref(a);
}

/* Waiting on a failed start-app: stopped, with the approval to decide. */
static void waiting_on_start(void **state)
{
    fixture *f = *state;
    step(f, 0, "done");
    step(f, 1, "done");
    step(f, 2, "done");
    step(f, 3, "needs_attention");
    int64_t id = approval(f, "attention", 3);
    run(f, "waiting", 3, NULL);
    json_t *a = attention_from_store(f->st, NULL);
    assert_true(json_is_true(json_object_get(a, "app_stopped")));
    assert_string_equal(json_string_value(json_object_get(a, "step")), "start-app");
    assert_int_equal(json_integer_value(json_object_get(a, "approval_id")), id);
    assert_string_equal(json_string_value(json_object_get(a, "reason")), "Step start-app failed: exit 1.");
    json_decref(a);
}

/* Waiting on a step that needs attention before anything stopped: it
 * needs a human, the app is not stopped. */
static void waiting_before_stop(void **state)
{
    fixture *f = *state;
    step(f, 0, "needs_attention");
    approval(f, "attention", 0);
    run(f, "waiting", 0, NULL);
    json_t *a = attention_from_store(f->st, NULL);
    assert_true(json_is_object(a));
    assert_true(json_is_false(json_object_get(a, "app_stopped")));
    assert_string_equal(json_string_value(json_object_get(a, "step")), "preflight");
    json_decref(a);
}

/* start-app done, or the run succeeded, or still running on its own: nothing. */
static void started_or_running_is_quiet(void **state)
{
    fixture *f = *state;
    step(f, 1, "done");
    step(f, 2, "done");
    run(f, "running", 3, NULL);
    json_t *a = attention_from_store(f->st, NULL);
    assert_true(json_is_null(a));            /* running on its own */
    json_decref(a);
    step(f, 3, "done");
    run(f, "failed", -1, "a step failed (on_failure = continue)");
    a = attention_from_store(f->st, NULL);
    assert_true(json_is_null(a));            /* the app was started again */
    json_decref(a);
    run(f, "succeeded", -1, NULL);
    a = attention_from_store(f->st, NULL);
    assert_true(json_is_null(a));
    json_decref(a);
}

/* A stop-app skipped after a crash ("it completed") counts as stopped. */
static void skipped_stop_counts(void **state)
{
    fixture *f = *state;
    step(f, 1, "skipped");
    step(f, 2, "failed");
    run(f, "aborted", -1, "rejected");
    json_t *a = attention_from_store(f->st, NULL);
    assert_true(json_is_true(json_object_get(a, "app_stopped")));
    json_decref(a);
}

/* No run at all: null. */
static void no_run(void **state)
{
    char path[PATH_MAX], err[256] = "";
    fixture *f = *state;
    snprintf(path, sizeof path, "%s/empty.db", f->dir);
    store_t *st = store_open(path, err, sizeof err);
    assert_non_null(st);
    json_t *a = attention_from_store(st, NULL);
    assert_true(json_is_null(a));
    json_decref(a);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(failed_between_stop_and_start, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_before_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(waiting_on_start, setup, teardown),
        cmocka_unit_test_setup_teardown(waiting_before_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(started_or_running_is_quiet, setup, teardown),
        cmocka_unit_test_setup_teardown(skipped_stop_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(no_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
