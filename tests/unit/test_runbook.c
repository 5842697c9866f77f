/* Runbook parsing and validation: every bad-input case names FILE:LINE. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drd/conf/config.h"
#include "drd/conf/runbook.h"

static char dir[64];
static char conf_path[128], rb_path[128];
static config_t *cfg;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/drd-rb-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(conf_path, sizeof conf_path, "%s/drd.conf", dir);
    snprintf(rb_path, sizeof rb_path, "%s/rb.ini", dir);
    write_file(conf_path,
               "[primary]\nurl = postgresql://app:pw@127.0.0.1:5432/app\n"
               "[backup]\nurl = postgresql://app@127.0.0.1:5433/app\n"
               "[app]\nenv_file = /tmp/x.env\nstop = systemctl stop app\nstart = systemctl start app\n"
               "[state]\ndb = state.db\n");
    config_errors errs = { 0 };
    cfg = config_load(conf_path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    config_errors_free(&errs);
    return cfg != NULL ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    config_free(cfg);
    unlink(conf_path);
    unlink(rb_path);
    rmdir(dir);
    return 0;
}

/* Load text as a runbook; return the first error (static) or NULL if it loaded. */
static const char *first_error(const char *text, size_t *n_errors)
{
    static char msg[512];
    config_errors errs = { 0 };
    write_file(rb_path, text);
    runbook_t *rb = runbook_load(rb_path, cfg, &errs);
    if (n_errors)
        *n_errors = errs.n;
    if (rb != NULL) {
        assert_int_equal(errs.n, 0);
        runbook_free(rb);
        config_errors_free(&errs);
        return NULL;
    }
    assert_true(errs.n > 0);
    snprintf(msg, sizeof msg, "%s", errs.msgs[0]);
    config_errors_free(&errs);
    return msg;
}

static void expect_error(const char *text, int line, const char *needle)
{
    const char *e = first_error(text, NULL);
    assert_non_null(e);
    char prefix[200];
    snprintf(prefix, sizeof prefix, "%s:%d: ", rb_path, line);
    if (strncmp(e, prefix, strlen(prefix)) != 0 || strstr(e, needle) == NULL) {
        fprintf(stderr, "got: %s\nwant prefix %s and \"%s\"\n", e, prefix, needle);
        fail();
    }
}

static void good_runbook_loads_with_expansion(void **st)
{
    (void)st;
    config_errors errs = { 0 };
    write_file(rb_path,
               "# comment\n"
               "[step stop-app]\naction = exec\ncommand = ${app.stop} --now\ntimeout = 5s\nretries = 2\n"
               "on_failure = ask\n\n"
               "[step switch]\naction = switch-env\ntarget = backup\n"
               "[step wait]\naction = wait-healthy\ntarget = app\n"
               "[step ok]\naction = approve\nprompt = Go on?\nexpires = 10m\n"
               "[step fence]\naction = fence\n"
               "[step tell]\naction = notify\nmessage = failover of ${primary.url} done\n");
    runbook_t *rb = runbook_load(rb_path, cfg, &errs);
    assert_non_null(rb);
    assert_int_equal(rb->n_steps, 6);
    assert_string_equal(rb->steps[0].name, "stop-app");
    assert_int_equal(rb->steps[0].action, ACT_EXEC);
    assert_string_equal(rb->steps[0].command, "systemctl stop app --now");
    assert_int_equal(rb->steps[0].timeout_ms, 5000);
    assert_int_equal(rb->steps[0].retries, 2);
    assert_int_equal(rb->steps[0].on_failure, ON_FAILURE_ASK);
    assert_int_equal(rb->steps[1].action, ACT_SWITCH_ENV);
    assert_string_equal(rb->steps[1].target, "backup");
    assert_int_equal(rb->steps[3].expires_ms, 600000);
    assert_string_equal(rb->steps[4].target, "primary");     /* fence defaults */
    assert_string_equal(rb->steps[4].mode, "read-only");
    assert_int_equal(rb->steps[1].line, 9);
    /* round trip through the persisted JSON */
    json_t *j = runbook_step_to_json(&rb->steps[0]);
    runbook_step back;
    assert_true(runbook_step_from_json(j, &back));
    assert_string_equal(back.command, rb->steps[0].command);
    assert_int_equal(back.on_failure, ON_FAILURE_ASK);
    assert_int_equal(back.retries, 2);
    runbook_step_clear(&back);
    json_decref(j);
    runbook_free(rb);
    config_errors_free(&errs);
}

static void unknown_action(void **st)
{
    (void)st;
    expect_error("[step a]\naction = exec\ncommand = true\n[step b]\naction = teleport\n", 5,
                 "unknown action \"teleport\"");
}

/* preflight is drd's own first step of every run, never a runbook's. */
static void preflight_is_not_a_runbook_action(void **st)
{
    (void)st;
    expect_error("[step a]\naction = exec\ncommand = true\n[step p]\naction = preflight\n", 5,
                 "drd's own first step of every run");
}

static void missing_action_and_key(void **st)
{
    (void)st;
    expect_error("[step a]\ncommand = true\n", 1, "has no action");
    expect_error("[step a]\naction = exec\n", 1, "needs a value for command");
    expect_error("[step a]\naction = switch-env\n", 1, "needs a value for target");
}

static void unknown_variable(void **st)
{
    (void)st;
    expect_error("[step a]\naction = exec\ncommand = ${app.restart}\n", 3, "${app.restart}");
}

static void duplicate_step(void **st)
{
    (void)st;
    expect_error("[step a]\naction = exec\ncommand = true\n\n[step a]\naction = exec\ncommand = false\n", 5,
                 "duplicate step name \"a\" (first at line 1)");
}

static void bad_values(void **st)
{
    (void)st;
    expect_error("[step a]\naction = exec\ncommand = true\ntimeout = soon\n", 4, "bad duration");
    expect_error("[step a]\naction = exec\ncommand = true\nretries = -1\n", 4, "bad retries");
    expect_error("[step a]\naction = exec\ncommand = true\non_failure = panic\n", 4, "bad on_failure");
    expect_error("[step a]\naction = switch-env\ntarget = moon\n", 3, "bad target \"moon\"");
    expect_error("[step a]\naction = exec\ncommand = true\ntarget = app\n", 4, "does not apply to action exec");
    expect_error("[step a]\naction = exec\ncommand = true\nfoo = 1\n", 4, "unknown key \"foo\"");
    expect_error("[notastep]\naction = exec\n", 1, "unknown section");
    expect_error("[step Bad Name]\naction = exec\ncommand = true\n", 1, "bad step name");
    expect_error("[step a]\naction = capture\nremove = maybe\n", 3, "bad value \"maybe\" for remove");
    expect_error("[step a]\naction = sync-back\nmode = later\n", 3, "bad sync-back mode \"later\"");
    expect_error("[step a]\naction = sync-back\nmode = read-only\n", 3, "bad sync-back mode");
    expect_error("[step a]\naction = fence\nmode = online\n", 3, "bad fence mode");
    expect_error("[step a]\naction = verify\nmode = online\n", 3, "does not apply to action verify");
}

static void empty_runbook_and_missing_file(void **st)
{
    (void)st;
    const char *e = first_error("# nothing\n", NULL);
    assert_non_null(e);
    assert_non_null(strstr(e, "no steps"));
    config_errors errs = { 0 };
    assert_null(runbook_load("/nonexistent/rb.ini", cfg, &errs));
    assert_true(errs.n > 0);
    assert_non_null(strstr(errs.msgs[0], "/nonexistent/rb.ini"));
    config_errors_free(&errs);
}

static void all_errors_reported(void **st)
{
    (void)st;
    size_t n = 0;
    /* unknown action, missing command, duplicate step (and the reader's own
     * duplicate-key note for the repeated section) */
    first_error("[step a]\naction = nope\n[step b]\naction = exec\n[step a]\naction = exec\ncommand = x\n", &n);
    assert_true(n >= 3);
}

static void shipped_runbooks_load(void **st)
{
    (void)st;
    static const char *const files[] = { "runbooks/failover.ini", "runbooks/failback.ini" };
    for (size_t i = 0; i < 2; i++) {
        config_errors errs = { 0 };
        runbook_t *rb = runbook_load(files[i], cfg, &errs);
        for (size_t k = 0; k < errs.n; k++)
            fprintf(stderr, "%s\n", errs.msgs[k]);
        assert_non_null(rb);
        assert_true(rb->n_steps >= 4);
        if (i == 1) {            /* pre-sync: sync-back online, before stop-app (issue 13) */
            size_t pre = rb->n_steps, stop = rb->n_steps;
            for (size_t k = 0; k < rb->n_steps; k++) {
                if (strcmp(rb->steps[k].name, "pre-sync") == 0)
                    pre = k;
                if (strcmp(rb->steps[k].name, "stop-app") == 0)
                    stop = k;
            }
            assert_true(pre < stop && stop < rb->n_steps);
            assert_int_equal(rb->steps[pre].action, ACT_SYNC_BACK);
            assert_string_equal(rb->steps[pre].mode, "online");
        }
        runbook_free(rb);
        config_errors_free(&errs);
    }
}

static void idempotency_table(void **st)
{
    (void)st;
    assert_true(step_action_idempotent(ACT_SWITCH_ENV));
    assert_true(step_action_idempotent(ACT_WAIT_HEALTHY));
    assert_true(step_action_idempotent(ACT_VERIFY));
    assert_true(step_action_idempotent(ACT_CAPTURE));
    assert_false(step_action_idempotent(ACT_EXEC));
    assert_false(step_action_idempotent(ACT_APPROVE));
    assert_false(step_action_idempotent(ACT_SYNC_BACK));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_runbook_loads_with_expansion),
        cmocka_unit_test(preflight_is_not_a_runbook_action),
        cmocka_unit_test(unknown_action),
        cmocka_unit_test(missing_action_and_key),
        cmocka_unit_test(unknown_variable),
        cmocka_unit_test(duplicate_step),
        cmocka_unit_test(bad_values),
        cmocka_unit_test(empty_runbook_and_missing_file),
        cmocka_unit_test(all_errors_reported),
        cmocka_unit_test(shipped_runbooks_load),
        cmocka_unit_test(idempotency_table),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
