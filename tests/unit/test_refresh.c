/* The refresh module's pure helpers: connection strings, quoting, pgpass,
 * dump names, retention, heartbeat lag, schedule arithmetic. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../src/refresh/refresh_int.h"
#include "drd/core/util.h"

static void quoting(void **st)
{
    (void)st;
    char *s = refresh_sql_ident("we\"ird");
    assert_string_equal(s, "\"we\"\"ird\"");
    free(s);
    s = refresh_sql_literal("it's");
    assert_string_equal(s, "'it''s'");
    free(s);
    s = refresh_sh_quote("a'b c");
    assert_string_equal(s, "'a'\\''b c'");
    free(s);
    s = refresh_xasprintf("%s-%d", "x", 42);
    assert_string_equal(s, "x-42");
    free(s);
}

static void conninfo_from_url(void **st)
{
    (void)st;
    rconn c;
    char err[256];
    assert_true(refresh_rconn_parse("postgresql://app:s3cr%27t@db.example.com:6543/shop?sslmode=require",
                            NULL, &c, err, sizeof err));
    assert_string_equal(c.password, "s3cr't");
    assert_string_equal(c.dbname, "shop");
    assert_string_equal(c.user, "app");
    char *s = refresh_rconn_string(&c, NULL, false, true);
    assert_null(strstr(s, "s3cr"));
    assert_non_null(strstr(s, "dbname='shop'"));
    assert_non_null(strstr(s, "sslmode='require'"));
    assert_non_null(strstr(s, "host='db.example.com'"));
    free(s);
    s = refresh_rconn_string(&c, "shop_drd_new", true, true);
    assert_non_null(strstr(s, "dbname='shop_drd_new'"));
    assert_non_null(strstr(s, "password='s3cr\\'t'"));
    free(s);
    refresh_rconn_free(&c);

    /* the password file wins over the URL's; no dbname: one is added */
    assert_true(refresh_rconn_parse("host=h user=u password=fromurl passfile=/x/pass", "fromfile", &c, err, sizeof err));
    assert_string_equal(c.password, "fromfile");
    s = refresh_rconn_string(&c, "other", false, false);
    assert_non_null(strstr(s, "dbname='other'"));
    assert_non_null(strstr(s, "passfile='/x/pass'"));
    assert_null(strstr(s, "fromurl"));
    free(s);
    s = refresh_rconn_string(&c, NULL, false, true);
    assert_null(strstr(s, "passfile"));
    free(s);
    refresh_rconn_free(&c);

    assert_false(refresh_rconn_parse("postgresql://[::1", NULL, &c, err, sizeof err));
    assert_true(err[0] != '\0');
}

static void pgpass_file(void **st)
{
    (void)st;
    char dir[] = "/tmp/test_refresh.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/p", dir);
    assert_true(refresh_pgpass_write(path, "a:b\\c", err, sizeof err));
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    size_t len;
    char *data = read_file(path, 1024, &len);
    assert_string_equal(data, "*:*:*:*:a\\:b\\\\c\n");
    free(data);
    assert_false(refresh_pgpass_write(path, "again", err, sizeof err));   /* never overwrites */
    unlink(path);
    assert_true(refresh_rm_tree(dir));
}

static void dump_names(void **st)
{
    (void)st;
    char name[64];
    refresh_dump_name(1795294208116LL, 0, name, sizeof name);       /* 2026-11-21 20:50:08 UTC */
    assert_string_equal(name, "backup-2026-11-21-205008.dump");
    assert_true(refresh_dump_name_valid(name));
    refresh_dump_name(1795294208116LL, 2, name, sizeof name);
    assert_string_equal(name, "backup-2026-11-21-205008-2.dump");
    assert_true(refresh_dump_name_valid(name));
    assert_false(refresh_dump_name_valid("backup-2026-11-21-205008.dump.tmp"));
    assert_false(refresh_dump_name_valid("backup-2026-11-21-2050.dump"));
    assert_false(refresh_dump_name_valid("backup-2026-11-21-205008-.dump"));
    assert_false(refresh_dump_name_valid("other.dump"));
}

static void retention(void **st)
{
    (void)st;
    int64_t day = 86400000LL, now = 100 * day;
    dump_file f[] = {
        { "backup-a", now - 1 * day, false }, { "backup-b", now - 2 * day, false },
        { "backup-c", now - 3 * day, false }, { "backup-d", now - 40 * day, false },
        { "backup-new", now - 50 * day, false },   /* just made, odd mtime: kept anyway */
    };
    refresh_retention_plan(f, 5, 2, 30 * day, now, "backup-new");
    for (int i = 0; i < 5; i++) {
        bool want_removed = strcmp(f[i].name, "backup-a") != 0 && strcmp(f[i].name, "backup-new") != 0;
        assert_int_equal(f[i].remove, want_removed);
    }
    /* keep 10, max age 30 d: only the old one goes */
    dump_file g[] = { { "x1", now - day, false }, { "x2", now - 31 * day, false } };
    refresh_retention_plan(g, 2, 10, 30 * day, now, NULL);
    assert_false(g[0].remove);
    assert_true(g[1].remove);
}

static void heartbeat_lag(void **st)
{
    (void)st;
    hb_log h;
    memset(&h, 0, sizeof h);
    const int64_t gap = 3500;
    assert_int_equal(refresh_hb_lag_ms(&h, -1, -1, 1000, gap), -1);       /* nothing known */
    assert_int_equal(refresh_hb_lag_ms(&h, 5, 900, 1000, gap), 100);      /* only the row's time */
    refresh_hb_add(&h, 10, 1000);
    refresh_hb_add(&h, 11, 2000);
    refresh_hb_add(&h, 12, 3000);
    assert_int_equal(refresh_hb_lag_ms(&h, 12, -1, 3500, gap), 0);        /* has the newest */
    assert_int_equal(refresh_hb_lag_ms(&h, 11, -1, 3500, gap), 500);      /* lacks 12 (committed at 3000) */
    assert_int_equal(refresh_hb_lag_ms(&h, 11, -1, 2999, gap), 0);        /* 12 was not committed yet */
    assert_int_equal(refresh_hb_lag_ms(&h, 10, -1, 3500, gap), 1500);     /* lacks 11 */
    assert_int_equal(refresh_hb_lag_ms(&h, 9, 800, 3500, gap), 2500);     /* lacks 10, 200 ms after 9 */
    assert_int_equal(refresh_hb_lag_ms(&h, 9, 800, 900, gap), 100);       /* none of ours yet: the row */
    /* drd restarted: the backup's newest heartbeat (its row says 400) is
     * well older than the first one this process wrote (1000, gap 600 > 500):
     * the data in between is counted missing */
    assert_int_equal(refresh_hb_lag_ms(&h, 7, 400, 3500, 500), 3100);
    assert_int_equal(refresh_hb_lag_ms(&h, 7, 600, 3500, 500), 2500);
    assert_int_equal(refresh_hb_good_at(&h, 11, -1), 2000);
    assert_int_equal(refresh_hb_good_at(&h, 7, 500), 500);
    /* the ring forgets the oldest */
    for (int i = 0; i < HB_RING + 5; i++)
        refresh_hb_add(&h, 100 + i, 10000 + i);
    assert_int_equal(refresh_hb_lag_ms(&h, 104, -1, 20000, gap), 20000 - (10000 + 5));
}

static void schedule(void **st)
{
    (void)st;
    setenv("TZ", "UTC", 1);
    tzset();
    int64_t now = 1795294208000LL;              /* Saturday 2026-11-21 20:50:08 UTC */
    /* every: from the last start; never started: now (but not before not_before) */
    assert_int_equal(refresh_schedule_next(3600000, NULL, 0, now, now + 5000), now + 5000);
    assert_int_equal(refresh_schedule_next(3600000, NULL, now - 600000, now, now), now + 3000000);
    assert_int_equal(refresh_schedule_next(3600000, NULL, now - 7200000, now, now), now);
    assert_int_equal(refresh_schedule_next(0, NULL, 0, now, now), 0);
    /* cron: the next matching minute */
    cron_expr c;
    char err[128];
    assert_true(cron_parse("0 2 * * 0", &c, err, sizeof err));
    assert_int_equal(refresh_schedule_next(0, &c, 0, now, now), 1795312800000LL);   /* Sun 02:00 */
    /* both: the earlier */
    assert_int_equal(refresh_schedule_next(3600000, &c, now, now, now), now + 3600000);
}

static void formats(void **st)
{
    (void)st;
    char b[32];
    refresh_format_age(0.25, b, sizeof b);
    assert_string_equal(b, "0.2 s");
    refresh_format_age(42, b, sizeof b);
    assert_string_equal(b, "42 s");
    refresh_format_age(600, b, sizeof b);
    assert_string_equal(b, "10 min");
    refresh_format_age(3 * 3600, b, sizeof b);
    assert_string_equal(b, "3.0 h");
    char s[] = "a\x1f" "b\x1f\x1f" "c";
    char *f[5];
    assert_int_equal(refresh_split_fields(s, '\x1f', f, 5), 4);
    assert_string_equal(f[0], "a");
    assert_string_equal(f[2], "");
    assert_string_equal(f[3], "c");
}

static void directories(void **st)
{
    (void)st;
    char dir[] = "/tmp/test_refresh.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[256];
    assert_true(refresh_dir_usable(dir, err, sizeof err));
    snprintf(path, sizeof path, "%s/not/yet/there", dir);
    assert_true(refresh_dir_usable(path, err, sizeof err));     /* can be created */
    snprintf(path, sizeof path, "%s/file", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_false(refresh_dir_usable(path, err, sizeof err));    /* a file */
    assert_non_null(strstr(err, "not a directory"));
    snprintf(path, sizeof path, "%s/file/below", dir);
    assert_false(refresh_dir_usable(path, err, sizeof err));
    /* scrub removes what an interrupted refresh left */
    snprintf(path, sizeof path, "%s/" TMP_PREFIX "abc", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/" TMP_PREFIX "abc/dump.partial", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    close(fd);
    refresh_dir_scrub(dir);
    snprintf(path, sizeof path, "%s/" TMP_PREFIX "abc", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_true(refresh_rm_tree(dir));
}

/* 2026-12-03 12:00:00 UTC */
#define T_DEC3 1796299200000LL
#define DAY_MS 86400000LL

static void egress_month_and_runs(void **st)
{
    (void)st;
    int64_t a, b;
    refresh_month_bounds(T_DEC3, &a, &b);
    assert_int_equal(a, 1796083200000LL);          /* 2026-12-01 00:00 UTC */
    assert_int_equal(b, 1798761600000LL);          /* 2027-01-01 00:00 UTC: the year rolls */
    /* every 6 h for one day: 4; none backwards */
    assert_int_equal(refresh_runs_between(6 * 3600000LL, NULL, T_DEC3, T_DEC3 + DAY_MS), 4);
    assert_int_equal(refresh_runs_between(6 * 3600000LL, NULL, T_DEC3, T_DEC3), 0);
    /* a weekly cron over 4 weeks: 4 */
    cron_expr c;
    char err[64];
    assert_true(cron_parse("0 2 * * 0", &c, err, sizeof err));
    assert_int_equal(refresh_runs_between(0, &c, T_DEC3, T_DEC3 + 28 * DAY_MS), 4);
    int64_t p;
    assert_false(refresh_egress_project(0, 10, 10, 10, &p));     /* no budget: never over */
    assert_int_equal(p, 110);
    assert_false(refresh_egress_project(110, 10, 10, 10, &p));   /* exactly the budget: not over */
    assert_true(refresh_egress_project(109, 10, 10, 10, &p));
    assert_false(refresh_egress_project(100, 50, -1, 10, &p));   /* size unknown: what was read */
    int64_t v;
    assert_true(parse_bytes("5GB", &v) && v == 5000000000LL);
    assert_true(parse_bytes("1.5 GiB", &v) && v == 1610612736LL);
    assert_true(parse_bytes("200mb", &v) && v == 200000000LL);
    assert_true(parse_bytes("1024", &v) && v == 1024);
    assert_false(parse_bytes("-1GB", &v));
    assert_false(parse_bytes("5 parsecs", &v));
    assert_false(parse_bytes("", &v));
}

/* A scripted month (the clock injected): a 200 MB dump every `every`
 * against 5 GB. Day by day the month's total grows; the projection warns
 * exactly on the first day it would exceed the budget, never before. */
static void egress_scripted_month(void **st)
{
    (void)st;
    const int64_t budget = 5000000000LL, dump = 200000000LL;
    int64_t start, end;
    refresh_month_bounds(T_DEC3, &start, &end);
    /* weekly: 5 dumps at most in December (1 GB): never over */
    for (int64_t now = start, read = 0; now < end; now += DAY_MS) {
        int64_t p, runs = refresh_runs_between(7 * DAY_MS, NULL, now, end);
        assert_false(refresh_egress_project(budget, read, dump, runs, &p));
        if (((now - start) / DAY_MS) % 7 == 0)
            read += dump;
    }
    /* daily: 31 x 200 MB = 6.2 GB: over from the first day, and the
     * projection equals what the month will have read */
    int64_t p, runs = refresh_runs_between(DAY_MS, NULL, start, end);
    assert_int_equal(runs, 31);
    assert_true(refresh_egress_project(budget, 0, dump, runs, &p));
    assert_int_equal(p, 31 * dump);
    /* a schedule that fits, then a burst: 4 GB read by the 20th with daily
     * 50 MB passes: 4 GB + 12 x 50 MB = 4.6 GB, fine; at 4.5 GB read it
     * crosses (4.5 + 0.6 > 5) */
    int64_t day20 = start + 19 * DAY_MS;
    runs = refresh_runs_between(DAY_MS, NULL, day20, end);
    assert_int_equal(runs, 12);
    assert_false(refresh_egress_project(budget, 4000000000LL, 50000000LL, runs, &p));
    assert_false(refresh_egress_project(budget, 4400000000LL, 50000000LL, runs, &p));   /* = 5.0 GB */
    assert_true(refresh_egress_project(budget, 4400000001LL, 50000000LL, runs, &p));
}

/* ---- the warning over a scripted month (refresh_egress_watch, injected clock) ---- */

typedef struct {
    int notified;                /* egress_budget notifications */
    char text[512];              /* the last one */
} egress_fx;

static bool gate_no(void *ctx) { (void)ctx; return false; }
static breaker_state gate_closed(void *ctx) { (void)ctx; return BREAKER_CLOSED; }
static void gate_notify(void *ctx, const char *event, const char *text)
{
    egress_fx *f = ctx;
    assert_string_equal(event, "egress_budget");
    f->notified++;
    str_copy(f->text, text, sizeof f->text);
}

static bool count_over_events(const store_event *e, void *arg)
{
    if (strstr(e->message, "over [refresh] egress_budget") != NULL)
        (*(int *)arg)++;
    return true;
}

/* December 2026, one dump a day at 12:00 UTC ([refresh] every = 24h), the
 * database growing: day d's dump reads d x 10 MB; budget 3 GB. After day
 * d's dump the month has read 10 MB x d(d+1)/2; the typical refresh is the
 * median of the last (up to 21) dumps, day 1 + d/2's up to day 21, day
 * d - 10's after; 31 - d dumps are left. So the projection is
 *   day 17: 1530 + 90 x 14 = 2790 MB    (under)
 *   day 18: 1710 + 100 x 13 = 3010 MB   (over: the first day)
 *   day 19: 1900 + 100 x 12 = 3100 MB, and more every day after.
 * The warning (event + notification) fires on the 18th, not before, and
 * once for the month, though the projection stays over. */
static void egress_warning_scripted_month(void **st)
{
    (void)st;
    const int64_t MB = 1000000;
    char dir[] = "/tmp/test_refresh.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], conf[1024], err[256];
    snprintf(conf, sizeof conf,
             "[primary]\nurl = postgresql://app@127.0.0.1:1/app\n"
             "[backup]\nurl = postgresql://app@127.0.0.1:2/app\n"
             "[refresh]\nmode = dump\nevery = 24h\ndir = %s/dumps\negress_budget = 3GB\n"
             "[state]\ndb = %s/drd.db\n", dir, dir);
    snprintf(path, sizeof path, "%s/drd.conf", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(conf, fp);
    fclose(fp);
    chmod(path, 0600);
    config_errors errs = { 0 };
    config_t *cfg = config_load(path, &errs);
    if (cfg == NULL)
        fail_msg("config: %s", errs.n ? errs.msgs[0] : "?");
    snprintf(path, sizeof path, "%s/drd.db", dir);
    store_t *store = store_open(path, err, sizeof err);
    assert_non_null(store);
    loop_t *loop = loop_new();
    egress_fx f = { 0 };
    refresh_gate gate = { .ctx = &f, .app_on_backup = gate_no, .run_active = gate_no,
                          .primary_breaker = gate_closed, .notify = gate_notify };
    refresh_t *r = refresh_new(loop, store, &gate, cfg);
    assert_non_null(r);

    int64_t start, end;
    refresh_month_bounds(T_DEC3, &start, &end);
    int warned_on = 0;
    for (int d = 1; d <= 31; d++) {
        int64_t now = start + (d - 1) * DAY_MS + DAY_MS / 2;     /* the dth, 12:00 UTC */
        store_refresh rec = { .started_at = now - 60000, .finished_at = now, .bytes = d * 10 * MB };
        str_copy(rec.mode, "dump", sizeof rec.mode);
        str_copy(rec.trigger, "schedule", sizeof rec.trigger);
        str_copy(rec.state, "succeeded", sizeof rec.state);
        assert_true(store_refresh_add(store, &rec) > 0);
        assert_true(store_egress_add(store, now, rec.bytes));
        refresh_egress_watch(r, now);

        refresh_egress e;
        assert_true(refresh_egress_get(r, now, &e));
        assert_int_equal(e.month_bytes, 10 * MB * d * (d + 1) / 2);
        assert_int_equal(e.runs_left, 31 - d);
        if (d == 17)
            assert_int_equal(e.projected, 2790 * MB);
        if (d == 18)
            assert_int_equal(e.projected, 3010 * MB);
        assert_int_equal(e.over, d >= 18);
        if (f.notified > 0 && warned_on == 0)
            warned_on = d;
    }
    assert_int_equal(warned_on, 18);
    assert_int_equal(f.notified, 1);
    assert_non_null(strstr(f.text, "3.01 GB projected"));
    int events = 0;
    store_events_recent(store, 100, count_over_events, &events);
    assert_int_equal(events, 1);

    refresh_free(r);
    loop_free(loop);
    store_close(store);
    config_free(cfg);
    assert_true(refresh_rm_tree(dir));
}

static void change_column_choice(void **st)
{
    (void)st;
    char *cols[] = { "id", "created_at", "name", "updated_at" };
    assert_int_equal(refresh_change_column("updated_at, created_at", "public.t", cols, 4), 3);
    assert_int_equal(refresh_change_column("modified, created_at", "public.t", cols, 4), 1);
    assert_int_equal(refresh_change_column("updated_at, public.t=name", "public.t", cols, 4), 2);
    assert_int_equal(refresh_change_column("updated_at, public.u=name", "public.t", cols, 4), 3);
    assert_int_equal(refresh_change_column("modified", "public.t", cols, 4), -1);
    assert_int_equal(refresh_change_column(NULL, "public.t", cols, 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quoting),
        cmocka_unit_test(conninfo_from_url),
        cmocka_unit_test(pgpass_file),
        cmocka_unit_test(dump_names),
        cmocka_unit_test(retention),
        cmocka_unit_test(heartbeat_lag),
        cmocka_unit_test(schedule),
        cmocka_unit_test(formats),
        cmocka_unit_test(directories),
        cmocka_unit_test(egress_month_and_runs),
        cmocka_unit_test(egress_scripted_month),
        cmocka_unit_test(egress_warning_scripted_month),
        cmocka_unit_test(change_column_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
