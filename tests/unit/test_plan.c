/* plan_build / plan_print: `drctl failover|failback --dry-run` over a temp
 * config and runbooks with a checks array made here: steps in file order,
 * commands expanded and masked, the env change described (the env file
 * only read), prerequisites mapped to their check, "ok" false when one
 * fails, notes when the plan does not fit the state. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "drd/conf/config.h"
#include "drd/check/plan.h"

static char dir[64];
static char conf_path[128], fo_path[128], fb_path[128], env_path[128], db_path[128];
static config_t *cfg;

#define PRIMARY_APP "postgresql://app:appsecret@127.0.0.1:5432/appdb"
#define BACKUP_APP  "postgresql://app:bksecret@127.0.0.1:5433/appdb"
#define ENV_TEXT    "# app env\nAPP_NAME=shop\nDATABASE_URL=" PRIMARY_APP "\nOTHER=\"keep\"\n"

static const char *const secrets[] = { "appsecret", "bksecret", "s3cretpw", "hunter2", "tok3n" };

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int setup(void **st)
{
    char text[4096];
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/drd-plan-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(conf_path, sizeof conf_path, "%s/drd.conf", dir);
    snprintf(fo_path, sizeof fo_path, "%s/failover.ini", dir);
    snprintf(fb_path, sizeof fb_path, "%s/failback.ini", dir);
    snprintf(env_path, sizeof env_path, "%s/app.env", dir);
    snprintf(db_path, sizeof db_path, "%s/state.db", dir);
    write_file(env_path, ENV_TEXT);
    snprintf(text, sizeof text,
             "[primary]\nurl = postgresql://drd:s3cretpw@127.0.0.1:5432/postgres\napp_url = " PRIMARY_APP "\n"
             "[backup]\nurl = postgresql://drd@127.0.0.1:5433/postgres\napp_url = " BACKUP_APP "\n"
             "[failover]\nrunbook = %s\nfence = read-only\n"
             "[failback]\nrunbook = %s\n"
             "[app]\nenv_file = %s\nstop = PGPASSWORD=hunter2 true stop-the-app\nstart = true start-the-app\n"
             "health_url = http://127.0.0.1:9/health\n"
             "[state]\ndb = %s\n",
             fo_path, fb_path, env_path, db_path);
    write_file(conf_path, text);
    write_file(fo_path,
               "[step check-backup]\naction = wait-healthy\ntarget = backup\ntimeout = 30s\n"
               "[step stop-app]\naction = exec\ncommand = ${app.stop}\ntimeout = 30s\non_failure = ask\n"
               "[step ok]\naction = approve\nprompt = Move the app to the backup?\nexpires = 10m\n"
               "[step capture]\naction = capture\n"
               "[step switch-env]\naction = switch-env\ntarget = backup\n"
               "[step show]\naction = exec\ncommand = echo ${backup.app_url} API_TOKEN=tok3n\n"
               "[step start-app]\naction = exec\ncommand = ${app.start}\n"
               "[step fence-primary]\naction = fence\ntarget = primary\ntimeout = 5s\n"
               "[step check-app]\naction = wait-healthy\ntarget = app\n"
               "[step tell]\naction = notify\nmessage = moved off ${primary.url}\n");
    write_file(fb_path,
               "[step sync-back]\naction = sync-back\n"
               "[step verify]\naction = verify\n"
               "[step switch-env]\naction = switch-env\ntarget = primary\n"
               "[step unfence]\naction = fence\ntarget = primary\nlift = true\nrequired = true\n"
               "[step gone]\naction = exec\ncommand = /nonexistent/drd-plan-test start\n"
               "[step resume]\naction = refresh\nop = recreate-subscription\n");
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
    unlink(fo_path);
    unlink(fb_path);
    unlink(env_path);
    rmdir(dir);
    return 0;
}

/* Every check ok, but `failing` (may be NULL) with status fail. */
static json_t *checks_with(const char *failing)
{
    static const char *const names[] = { "config", "primary", "backup", "backup-writable", "env-file",
                                         "app-commands", "health-url", "privileges-backup",
                                         "privileges-primary", "backup-lag", "dump-disk", "webhook" };
    json_t *arr = json_array();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        bool f = failing != NULL && strcmp(names[i], failing) == 0;
        char reason[128];
        snprintf(reason, sizeof reason, "%s %s", names[i], f ? "is broken" : "is fine");
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "name", names[i],
                                             "status", f ? "fail" : "ok", "reason", reason,
                                             "fix", f ? "repair it" : ""));
    }
    return arr;
}

static json_t *step_named(const json_t *plan, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(plan, "steps"), i, s)
        if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
            return s;
    fail_msg("no step %s", name);
    return NULL;
}

static const char *field(const json_t *plan, const char *step, const char *key)
{
    return json_string_value(json_object_get(step_named(plan, step), key));
}

static const char *pre(const json_t *plan, const char *step, const char *key)
{
    return json_string_value(json_object_get(json_object_get(step_named(plan, step), "prerequisite"), key));
}

static void assert_contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        fail_msg("\"%s\" does not contain \"%s\"", hay ? hay : "(null)", needle);
}

static void assert_no_secret(const json_t *plan)
{
    char *dump = json_dumps(plan, JSON_COMPACT);
    assert_non_null(dump);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        if (strstr(dump, secrets[i]) != NULL)
            fail_msg("secret %s in %s", secrets[i], dump);
    free(dump);
}

static void failover_steps_in_order_expanded_masked(void **st)
{
    (void)st;
    static const char *const order[] = { "check-backup", "stop-app", "ok", "capture", "switch-env", "show",
                                         "start-app", "fence-primary", "check-app", "tell" };
    char err[1024];
    json_t *checks = checks_with(NULL);
    json_t *plan = plan_build(cfg, false, checks, NULL, err, sizeof err);
    assert_non_null(plan);

    assert_string_equal(json_string_value(json_object_get(plan, "kind")), "failover");
    assert_string_equal(json_string_value(json_object_get(plan, "runbook")), fo_path);
    json_t *steps = json_object_get(plan, "steps");
    assert_int_equal(json_array_size(steps), 10);
    for (size_t i = 0; i < 10; i++) {
        json_t *s = json_array_get(steps, i);
        assert_string_equal(json_string_value(json_object_get(s, "name")), order[i]);
        assert_int_equal(json_integer_value(json_object_get(s, "n")), (json_int_t)i + 1);
    }
    /* commands as they would run: expanded, then masked */
    assert_string_equal(field(plan, "stop-app", "command"), "PGPASSWORD=**** true stop-the-app");
    assert_string_equal(field(plan, "show", "command"),
                        "echo postgresql://app:****@127.0.0.1:5433/appdb API_TOKEN=****");
    assert_string_equal(field(plan, "start-app", "command"), "true start-the-app");
    assert_true(json_is_null(json_object_get(step_named(plan, "switch-env"), "command")));
    assert_true(json_is_null(json_object_get(step_named(plan, "capture"), "command")));
    assert_no_secret(plan);

    /* what each would change */
    assert_contains(field(plan, "stop-app", "changes"), "stops the app: runs `PGPASSWORD=**** true stop-the-app`");
    assert_contains(field(plan, "stop-app", "changes"), "timeout 30s, retries 0");
    assert_contains(field(plan, "stop-app", "changes"), "on failure: ask");
    const char *sw = field(plan, "switch-env", "changes");
    assert_contains(sw, "sets DATABASE_URL in ");
    assert_contains(sw, "from postgresql://app:****@127.0.0.1:5432/appdb");
    assert_contains(sw, "to the backup's app_url postgresql://app:****@127.0.0.1:5433/appdb");
    assert_contains(sw, ".drd-prev");
    assert_contains(field(plan, "ok", "changes"), "asks for an approval: Move the app to the backup? (expires after 10m");
    assert_contains(field(plan, "check-backup", "changes"), "waits up to 30s for the backup");
    assert_contains(field(plan, "check-app", "changes"), "GET http://127.0.0.1:9/health");
    assert_contains(field(plan, "capture", "changes"), "installs the change ledger and triggers on the backup");
    assert_contains(field(plan, "capture", "changes"), "schemas public");
    assert_contains(field(plan, "fence-primary", "changes"),
                    "ALTER DATABASE \"appdb\" SET default_transaction_read_only = on");
    assert_contains(field(plan, "fence-primary", "changes"), "role app");
    assert_contains(field(plan, "tell", "changes"), "no [notify] webhook");

    /* prerequisites mapped to their checks */
    assert_string_equal(pre(plan, "switch-env", "check"), "env-file");
    assert_string_equal(pre(plan, "stop-app", "check"), "app-commands");
    assert_string_equal(pre(plan, "start-app", "check"), "app-commands");
    assert_true(json_is_null(json_object_get(json_object_get(step_named(plan, "show"), "prerequisite"), "check")));
    assert_string_equal(pre(plan, "show", "status"), "ok");
    assert_string_equal(pre(plan, "check-app", "check"), "health-url");
    assert_string_equal(pre(plan, "check-backup", "check"), "backup");
    assert_string_equal(pre(plan, "capture", "check"), "privileges-backup");
    assert_string_equal(pre(plan, "fence-primary", "check"), "privileges-primary");
    assert_string_equal(pre(plan, "tell", "check"), "webhook");
    assert_string_equal(pre(plan, "ok", "status"), "unknown");
    assert_string_equal(pre(plan, "ok", "reason"), "no check applies");
    assert_string_equal(pre(plan, "switch-env", "status"), "ok");
    assert_true(json_is_true(json_object_get(plan, "ok")));
    /* no daemon: the active side comes from the env file */
    assert_string_equal(json_string_value(json_object_get(plan, "active")), "primary");
    json_decref(plan);
    json_decref(checks);
}

static void failing_check_fails_the_plan(void **st)
{
    (void)st;
    char err[1024];
    static const struct { const char *check, *step; } cases[] = {
        { "env-file", "switch-env" }, { "privileges-backup", "capture" }, { "health-url", "check-app" },
        { "backup-writable", "check-backup" }, { "privileges-primary", "fence-primary" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *checks = checks_with(cases[i].check);
        json_t *plan = plan_build(cfg, false, checks, NULL, err, sizeof err);
        assert_non_null(plan);
        assert_string_equal(pre(plan, cases[i].step, "status"), "fail");
        assert_string_equal(pre(plan, cases[i].step, "check"), cases[i].check);
        assert_contains(pre(plan, cases[i].step, "reason"), "is broken");
        assert_false(json_is_true(json_object_get(plan, "ok")));
        json_decref(plan);
        json_decref(checks);
    }
}

static void unreachable_primary_leaves_fence_pending(void **st)
{
    (void)st;
    char err[1024];
    json_t *checks = checks_with("primary");
    json_t *plan = plan_build(cfg, false, checks, NULL, err, sizeof err);
    assert_non_null(plan);
    assert_string_equal(pre(plan, "fence-primary", "status"), "warn");
    assert_contains(pre(plan, "fence-primary", "reason"), "pending");
    assert_true(json_is_true(json_object_get(plan, "ok")));
    json_decref(plan);
    json_decref(checks);
}

static void no_checks_means_unknown(void **st)
{
    (void)st;
    char err[1024];
    json_t *plan = plan_build(cfg, false, NULL, NULL, err, sizeof err);
    assert_non_null(plan);
    assert_string_equal(pre(plan, "switch-env", "status"), "unknown");
    assert_string_equal(pre(plan, "capture", "status"), "unknown");
    assert_true(json_is_true(json_object_get(plan, "ok")));
    json_decref(plan);
}

static void failback_plan_and_notes(void **st)
{
    (void)st;
    char err[1024];
    json_t *checks = checks_with(NULL);
    json_t *status = json_pack("{s:s, s:n, s:{s:{s:s}, s:{s:s}}}", "active", "primary", "run",
                               "targets", "primary", "breaker", "closed", "backup", "breaker", "closed");
    json_t *plan = plan_build(cfg, true, checks, status, err, sizeof err);
    assert_non_null(plan);
    assert_string_equal(json_string_value(json_object_get(plan, "kind")), "failback");
    assert_string_equal(json_string_value(json_object_get(plan, "active")), "primary");
    /* a failback while on the primary does not fit: said in the notes */
    assert_false(json_is_true(json_object_get(plan, "fits")));
    char *notes = json_dumps(json_object_get(plan, "notes"), 0);
    assert_contains(notes, "already on the primary");
    free(notes);
    assert_contains(field(plan, "switch-env", "changes"), "already set: no change");
    assert_contains(field(plan, "sync-back", "changes"),
                    "copies the rows changed on the backup during the outage to the primary");
    assert_contains(field(plan, "sync-back", "changes"), "conflicts: ask");
    assert_contains(field(plan, "verify", "changes"), "compares every synced table on both sides (count+checksum");
    assert_contains(field(plan, "unfence", "changes"), "RESET default_transaction_read_only");
    assert_contains(field(plan, "resume", "changes"), "nothing");
    assert_string_equal(pre(plan, "sync-back", "check"), "privileges-primary");
    /* an exec whose program does not exist fails by itself */
    assert_string_equal(field(plan, "gone", "command"), "/nonexistent/drd-plan-test start");
    assert_string_equal(pre(plan, "gone", "status"), "fail");
    assert_contains(pre(plan, "gone", "reason"), "not an executable file");
    assert_false(json_is_true(json_object_get(plan, "ok")));
    assert_no_secret(plan);

    /* readable form */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    plan_print(plan, f);
    fclose(f);
    assert_contains(text, "failback plan");
    assert_contains(text, "note: the app is already on the primary");
    assert_contains(text, " 1. sync-back (sync-back)");
    assert_contains(text, "prerequisite: fail");
    const char *last = "dry run: nothing was run or changed\n";
    assert_true(len >= strlen(last));
    assert_string_equal(text + len - strlen(last), last);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        assert_null(strstr(text, secrets[i]));
    free(text);
    json_decref(plan);
    json_decref(status);
    json_decref(checks);
}

/* The privileges checks carry their lacking objects ("items", privs.c):
 * each step shows its own (with the GRANT that fixes it), and a step none
 * of them names is not failed by the check's overall status. */
static void privilege_items_go_to_their_step(void **st)
{
    (void)st;
    char err[1024];
    json_t *checks = checks_with("privileges-backup");
    size_t i;
    json_t *c;
    json_array_foreach(checks, i, c)
        if (strcmp(json_string_value(json_object_get(c, "name")), "privileges-backup") == 0)
            json_object_set_new(c, "items", json_pack("[{s:s, s:s, s:s, s:s, s:[s], s:s, s:b}]",
                "side", "backup", "object", "sequence public.orders_id_seq", "privileges", "SELECT, UPDATE",
                "what", "SELECT, UPDATE on sequence public.orders_id_seq", "needed_by", "failover: capture",
                "fix", "GRANT SELECT, UPDATE ON SEQUENCE public.orders_id_seq TO drd;", "optional", false));
    json_t *plan = plan_build(cfg, false, checks, NULL, err, sizeof err);
    assert_non_null(plan);
    assert_string_equal(pre(plan, "capture", "status"), "fail");
    assert_string_equal(pre(plan, "capture", "check"), "privileges-backup");
    assert_contains(pre(plan, "capture", "reason"), "SELECT, UPDATE on sequence public.orders_id_seq");
    assert_contains(pre(plan, "capture", "reason"), "fix: GRANT SELECT, UPDATE ON SEQUENCE public.orders_id_seq TO drd;");
    assert_string_equal(pre(plan, "fence-primary", "status"), "ok");
    assert_false(json_is_true(json_object_get(plan, "ok")));
    json_decref(plan);
    json_decref(checks);
}

static void changes_nothing(void **st)
{
    (void)st;
    char err[1024];
    struct stat before, after;
    json_t *checks = checks_with(NULL);
    assert_int_equal(stat(env_path, &before), 0);
    json_t *a = plan_build(cfg, false, checks, NULL, err, sizeof err);
    json_t *b = plan_build(cfg, true, checks, NULL, err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    char *now = slurp(env_path);
    assert_string_equal(now, ENV_TEXT);
    free(now);
    assert_int_equal(stat(env_path, &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
    assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    char prev[160];
    snprintf(prev, sizeof prev, "%s.drd-prev", env_path);
    assert_int_not_equal(access(prev, F_OK), 0);
    assert_int_not_equal(access(db_path, F_OK), 0);    /* no state db created */
    json_decref(a);
    json_decref(b);
    json_decref(checks);
}

static void bad_runbook_is_an_error(void **st)
{
    (void)st;
    char err[1024], path[160];
    snprintf(path, sizeof path, "%s/bad.ini", dir);
    write_file(path, "[step a]\naction = teleport\n");
    char *saved = cfg->failover_runbook;
    cfg->failover_runbook = path;
    json_t *plan = plan_build(cfg, false, NULL, NULL, err, sizeof err);
    cfg->failover_runbook = saved;
    unlink(path);
    assert_null(plan);
    char want[200];
    snprintf(want, sizeof want, "%s:2: ", path);
    assert_contains(err, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failover_steps_in_order_expanded_masked),
        cmocka_unit_test(failing_check_fails_the_plan),
        cmocka_unit_test(unreachable_primary_leaves_fence_pending),
        cmocka_unit_test(no_checks_means_unknown),
        cmocka_unit_test(failback_plan_and_notes),
        cmocka_unit_test(privilege_items_go_to_their_step),
        cmocka_unit_test(changes_nothing),
        cmocka_unit_test(bad_runbook_is_an_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
