/* snapshot: the status is assembled in one place and published once per
 * loop turn, however many changes the turn had (a probe that moves a
 * breaker used to serialise it twice); a probe re-reads only the targets,
 * an engine change the engine's parts too. Real loop, store, monitor (not
 * probing), executor, policy and refresh (off) over a temp dir. */
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

#include "drd/engine/snapshot.h"
#include "drd/core/util.h"

typedef struct {
    char dir[64];
    config_t *cfg;
    loop_t *loop;
    store_t *st;
    monitor_t *mon;
    executor_t *ex;
    policy_t *pol;
    refresh_t *ref;
    snapshot_t *snap;
    int published, engine_reads;
    char last[8192];
} fixture;

static void on_status(void *arg, const char *text, const json_t *doc, bool engine)
{
    fixture *x = arg;
    x->published++;
    if (engine)
        x->engine_reads++;
    str_copy(x->last, text, sizeof x->last);
    assert_non_null(json_object_get(doc, "targets"));
}

static bool no(void *ctx) { return false; }
static breaker_state closed(void *ctx) { return BREAKER_CLOSED; }

static int setup(void **state)
{
    fixture *x = calloc(1, sizeof *x);
    char path[PATH_MAX], conf[PATH_MAX * 2], err[256] = "";
    config_errors errs = { 0 };
    str_copy(x->dir, "/tmp/drd-test-snap-XXXXXX", sizeof x->dir);
    assert_non_null(mkdtemp(x->dir));
    snprintf(path, sizeof path, "%s/rb.ini", x->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("[step one]\naction = exec\ncommand = true\n", fp);
    fclose(fp);
    snprintf(conf, sizeof conf,
             "[primary]\nurl = postgresql://app@127.0.0.1:1/app\n"
             "[backup]\nurl = postgresql://app@127.0.0.1:2/app\n"
             "[failover]\nrunbook = rb.ini\n[failback]\nrunbook = rb.ini\n"
             "[state]\ndb = %s/drd.db\n", x->dir);
    snprintf(path, sizeof path, "%s/drd.conf", x->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(conf, fp);
    fclose(fp);
    x->cfg = config_load(path, &errs);
    if (x->cfg == NULL)
        fail_msg("config: %s", errs.n ? errs.msgs[0] : "?");
    x->loop = loop_new();
    snprintf(path, sizeof path, "%s/drd.db", x->dir);
    x->st = store_open(path, err, sizeof err);
    assert_non_null(x->st);
    x->mon = monitor_new(x->loop, x->st, x->cfg);
    x->ex = executor_new(x->loop, x->st, x->mon, NULL, x->cfg);
    x->pol = policy_new(x->loop, x->st, x->mon, x->ex, NULL, x->cfg);
    refresh_gate gate = { x, no, no, closed, NULL };
    x->ref = refresh_new(x->loop, x->st, &gate, x->cfg);
    assert_non_null(x->ref);
    snapshot_parts p = { .monitor = x->mon, .executor = x->ex, .policy = x->pol, .refresh = x->ref,
                         .store = x->st, .cfg = (const config_t *const *)&x->cfg };
    x->snap = snapshot_new(x->loop, &p, on_status, x);
    assert_non_null(x->snap);
    *state = x;
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    fixture *x = *state;
    snapshot_free(x->snap);
    policy_free(x->pol);
    refresh_free(x->ref);
    executor_free(x->ex);
    monitor_free(x->mon);
    store_close(x->st);
    loop_free(x->loop);
    config_free(x->cfg);
    nftw(x->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(x);
    return 0;
}

static void stop(loop_t *loop, void *arg)
{
    loop_stop(loop);
}

/* Let the loop run its pending turn(s). */
static void turn(fixture *x)
{
    loop_add_timer(x->loop, 20, stop, x);
    loop_run(x->loop);
}

static void test_first_publication(void **state)
{
    fixture *x = *state;
    assert_int_equal(x->published, 0);             /* never from inside snapshot_new */
    turn(x);
    assert_int_equal(x->published, 1);
    assert_int_equal(x->engine_reads, 1);
    json_t *doc = json_loads(x->last, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "active")), "primary");
    assert_true(json_is_null(json_object_get(doc, "run")));
    assert_int_equal(json_array_size(json_object_get(doc, "approvals")), 0);
    assert_true(json_is_null(json_object_get(doc, "attention")));
    assert_null(json_object_get(doc, "drill_mode"));
    json_decref(doc);
}

/* A breaker transition: the monitor's change and the engine's republish
 * in the same turn - one document. */
static void test_one_publication_per_turn(void **state)
{
    fixture *x = *state;
    turn(x);
    x->published = x->engine_reads = 0;
    snapshot_changed(x->snap, SNAPSHOT_TARGETS);
    snapshot_changed(x->snap, SNAPSHOT_ENGINE);
    snapshot_changed(x->snap, SNAPSHOT_TARGETS);
    assert_int_equal(x->published, 0);             /* at the end of the turn, not now */
    turn(x);
    assert_int_equal(x->published, 1);
    assert_int_equal(x->engine_reads, 1);
    turn(x);
    assert_int_equal(x->published, 1);             /* nothing changed since */
}

static void test_a_probe_reads_only_the_targets(void **state)
{
    fixture *x = *state;
    turn(x);
    x->published = x->engine_reads = 0;
    snapshot_changed(x->snap, SNAPSHOT_TARGETS);
    turn(x);
    snapshot_changed(x->snap, SNAPSHOT_TARGETS);
    turn(x);
    assert_int_equal(x->published, 2);
    assert_int_equal(x->engine_reads, 0);
}

static void test_the_document_now_reads_everything(void **state)
{
    fixture *x = *state;
    assert_true(monitor_set_active(x->mon, TARGET_BACKUP));
    json_t *doc = snapshot_status(x->snap);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "active")), "backup");
    assert_string_equal(json_string_value(json_object_get(doc, "daemon")), "running");
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_publication, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_publication_per_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_probe_reads_only_the_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_document_now_reads_everything, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
