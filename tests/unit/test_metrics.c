/* test_metrics.c - the Prometheus text of GET /metrics (format 0.0.4). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/engine/metrics.h"
#include "drd/core/util.h"

/* One sample line: name, optional labels (escaped values), a value. */
static const char SAMPLE_RE[] =
    "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
    "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\""
    "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\")*\\})?"
    " (NaN|[+-]Inf|[-+]?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?)$";
static const char HELP_RE[] = "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\n]+$";
static const char TYPE_RE[] = "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|summary|histogram|untyped)$";

typedef struct {
    store_target primary, backup;
    metrics_counters c;
    metrics_input in;
} fixture;

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof(*f));
    str_copy(f->primary.name, "primary", sizeof(f->primary.name));
    f->primary.healthy = false;
    f->primary.reachable = false;
    f->primary.breaker = BREAKER_OPEN;
    f->primary.latency_ms = 1000;
    f->primary.last_probe_at = 1700000000123;
    str_copy(f->backup.name, "backup", sizeof(f->backup.name));
    f->backup.healthy = true;
    f->backup.reachable = true;
    f->backup.breaker = BREAKER_CLOSED;
    f->backup.latency_ms = 3;
    f->backup.last_probe_at = 1700000000456;

    f->c.probes_total[0] = 120;
    f->c.probes_total[1] = 118;
    f->c.probe_failures_total[0] = 7;
    f->c.incidents_total[0] = 2;
    f->c.breaker_transitions_total[0] = 3;
    f->c.runs_total[0][0] = 1;        /* failover succeeded */
    f->c.runs_total[1][1] = 2;        /* failback failed */
    f->c.step_seconds_sum[0] = 1.5;   /* exec */
    f->c.step_seconds_count[0] = 3;
    f->c.notifications_total[0] = 4;
    f->c.notifications_total[2] = 1;

    f->in.c = &f->c;
    f->in.target[0] = &f->primary;
    f->in.target[1] = &f->backup;
    f->in.active = "backup";
    f->in.run_in_progress = true;
    f->in.approvals_pending = 2;
    f->in.backup_lag_seconds = -1;
    f->in.last_refresh_at = 0;
    f->in.started_at = 1700000000000;
    f->in.version = "0.1.0";
    f->in.ready = true;
}

/* The text parses: every line is a HELP, a TYPE or a sample; every sample
 * belongs to a family declared (HELP + TYPE) before it; no family twice;
 * the text ends with a newline. Returns the number of samples. */
static int check_format(const char *text)
{
    regex_t sample, help, type;
    regmatch_t m[3];
    char *copy = strdup(text), *save = NULL, *line;
    char declared[128][64];
    int n_declared = 0, n_samples = 0;
    char last_help[64] = "";

    assert_non_null(copy);
    assert_int_equal(regcomp(&sample, SAMPLE_RE, REG_EXTENDED), 0);
    assert_int_equal(regcomp(&help, HELP_RE, REG_EXTENDED), 0);
    assert_int_equal(regcomp(&type, TYPE_RE, REG_EXTENDED), 0);
    assert_true(strlen(text) > 0);
    assert_int_equal(text[strlen(text) - 1], '\n');
    assert_null(strstr(text, "\n\n"));

    for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char name[64];

        if (regexec(&help, line, 2, m, 0) == 0) {
            snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
            for (int i = 0; i < n_declared; i++)
                if (strcmp(declared[i], name) == 0)
                    fail_msg("family %s declared twice", name);
            str_copy(last_help, name, sizeof(last_help));
            continue;
        }
        if (regexec(&type, line, 3, m, 0) == 0) {
            snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
            if (strcmp(name, last_help) != 0)
                fail_msg("TYPE %s does not follow its HELP line", name);
            assert_true(n_declared < 128);
            str_copy(declared[n_declared++], name, sizeof(declared[0]));
            continue;
        }
        if (line[0] == '#')
            fail_msg("unexpected comment line: %s", line);
        if (regexec(&sample, line, 2, m, 0) != 0)
            fail_msg("not a valid sample line: '%s'", line);
        snprintf(name, sizeof(name), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), line + m[1].rm_so);
        assert_true(strncmp(name, "drd_", 4) == 0);
        {
            /* the sample's family is the last one declared (summaries:
             * name_sum / name_count) */
            const char *fam = n_declared > 0 ? declared[n_declared - 1] : "";
            size_t fl = strlen(fam);
            bool ok = strcmp(name, fam) == 0 ||
                      (strncmp(name, fam, fl) == 0 &&
                       (strcmp(name + fl, "_sum") == 0 || strcmp(name + fl, "_count") == 0));
            if (!ok)
                fail_msg("sample %s outside its family (last declared: %s)", name, fam);
        }
        n_samples++;
    }
    regfree(&sample);
    regfree(&help);
    regfree(&type);
    free(copy);
    return n_samples;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
        p += n;
    }
    return false;
}

static void test_regex_self_check(void **state)
{
    regex_t re;

    (void)state;
    assert_int_equal(regcomp(&re, SAMPLE_RE, REG_EXTENDED), 0);
    assert_int_equal(regexec(&re, "drd_x 1", 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, "drd_x{a=\"b\",c=\"d\\\"e\"} 0.5", 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, "drd_x{a=\"b\"} NaN", 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, "drd_x{a=\"b\"} 1e+06", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(&re, "drd_x{a=\"b\"c\"} 1", 0, NULL, 0), 0);   /* raw quote */
    assert_int_not_equal(regexec(&re, "drd_x{a=b} 1", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(&re, "drd-x 1", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(&re, "drd_x  1", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(&re, "drd_x 1 2 3", 0, NULL, 0), 0);
    regfree(&re);
}

static void test_render(void **state)
{
    fixture f;
    char *t;

    (void)state;
    fixture_init(&f);
    t = metrics_render(&f.in);
    assert_non_null(t);
    assert_true(check_format(t) > 40);

    assert_true(has_line(t, "drd_build_info{version=\"0.1.0\"} 1"));
    assert_true(has_line(t, "drd_start_time_seconds 1700000000"));
    assert_true(has_line(t, "drd_ready 1"));
    assert_true(has_line(t, "drd_active{side=\"primary\"} 0"));
    assert_true(has_line(t, "drd_active{side=\"backup\"} 1"));
    assert_true(has_line(t, "drd_target_up{target=\"primary\"} 0"));
    assert_true(has_line(t, "drd_target_up{target=\"backup\"} 1"));
    assert_true(has_line(t, "drd_target_healthy{target=\"backup\"} 1"));
    assert_true(has_line(t, "drd_probe_latency_seconds{target=\"primary\"} 1"));
    assert_true(has_line(t, "drd_probe_latency_seconds{target=\"backup\"} 0.003"));
    assert_true(has_line(t, "drd_breaker_state{target=\"primary\",state=\"closed\"} 0"));
    assert_true(has_line(t, "drd_breaker_state{target=\"primary\",state=\"open\"} 1"));
    assert_true(has_line(t, "drd_breaker_state{target=\"primary\",state=\"half_open\"} 0"));
    assert_true(has_line(t, "drd_breaker_state{target=\"backup\",state=\"closed\"} 1"));
    assert_true(has_line(t, "drd_probes_total{target=\"primary\"} 120"));
    assert_true(has_line(t, "drd_probe_failures_total{target=\"primary\"} 7"));
    assert_true(has_line(t, "drd_probe_failures_total{target=\"backup\"} 0"));
    assert_true(has_line(t, "drd_incidents_total{target=\"primary\"} 2"));
    assert_true(has_line(t, "drd_runs_total{kind=\"failover\",result=\"succeeded\"} 1"));
    assert_true(has_line(t, "drd_runs_total{kind=\"failback\",result=\"failed\"} 2"));
    assert_true(has_line(t, "drd_runs_total{kind=\"failback\",result=\"aborted\"} 0"));
    assert_true(has_line(t, "drd_run_in_progress 1"));
    assert_true(has_line(t, "drd_step_duration_seconds_sum{action=\"exec\"} 1.5"));
    assert_true(has_line(t, "drd_step_duration_seconds_count{action=\"exec\"} 3"));
    assert_true(has_line(t, "drd_step_duration_seconds_count{action=\"switch-env\"} 0"));
    assert_true(has_line(t, "# TYPE drd_step_duration_seconds summary"));
    assert_true(has_line(t, "# TYPE drd_runs_total counter"));
    assert_true(has_line(t, "# TYPE drd_active gauge"));
    assert_true(has_line(t, "drd_approvals_pending 2"));
    assert_true(has_line(t, "drd_notifications_total{result=\"sent\"} 4"));
    assert_true(has_line(t, "drd_notifications_total{result=\"dropped\"} 1"));
    /* unknown: left out */
    assert_null(strstr(t, "drd_backup_lag_seconds"));
    assert_null(strstr(t, "drd_last_refresh_timestamp_seconds"));
    /* served by the HTTP side, not here */
    assert_null(strstr(t, "drd_http_requests_total"));
    free(t);

    /* known lag and refresh; a target never probed has no latency */
    f.in.backup_lag_seconds = 42.5;
    f.in.last_refresh_at = 1700000001500;
    f.primary.last_probe_at = 0;
    f.in.run_in_progress = false;
    f.in.ready = false;
    f.in.active = "primary";
    t = metrics_render(&f.in);
    assert_non_null(t);
    check_format(t);
    assert_true(has_line(t, "drd_backup_lag_seconds 42.5"));
    assert_true(has_line(t, "drd_last_refresh_timestamp_seconds 1700000001.5"));
    assert_true(has_line(t, "# TYPE drd_backup_lag_seconds gauge"));
    assert_null(strstr(t, "drd_probe_latency_seconds{target=\"primary\"}"));
    assert_true(has_line(t, "drd_target_up{target=\"primary\"} 0"));
    assert_true(has_line(t, "drd_run_in_progress 0"));
    assert_true(has_line(t, "drd_ready 0"));
    assert_true(has_line(t, "drd_active{side=\"primary\"} 1"));
    free(t);
}

static void test_escaping_and_missing(void **state)
{
    fixture f;
    char *t;

    (void)state;
    fixture_init(&f);
    f.in.version = "1.0 \"beta\"\\x\nnext";
    f.in.c = NULL;               /* no counters yet: zeros */
    f.in.target[1] = NULL;       /* no backup state yet */
    f.in.active = NULL;
    t = metrics_render(&f.in);
    assert_non_null(t);
    check_format(t);
    assert_true(has_line(t, "drd_build_info{version=\"1.0 \\\"beta\\\"\\\\x\\nnext\"} 1"));
    assert_true(has_line(t, "drd_probes_total{target=\"primary\"} 0"));
    assert_true(has_line(t, "drd_target_up{target=\"backup\"} 0"));
    assert_true(has_line(t, "drd_breaker_state{target=\"backup\",state=\"closed\"} 0"));
    assert_true(has_line(t, "drd_active{side=\"primary\"} 0"));
    assert_true(has_line(t, "drd_active{side=\"backup\"} 0"));
    free(t);

    assert_null(metrics_render(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regex_self_check),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_escaping_and_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
