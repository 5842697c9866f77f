/* test_config.c - config_load, the INI reader, expansion, masking. Every
 * test writes its files under one mkdtemp() directory removed at the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drd/conf/config.h"
#include "drd/core/log.h"
#include "drd/core/util.h"

static char g_dir[256];          /* realpath of the temp dir */

/* Two valid targets: lines 1-4 of most test files. */
#define TARGETS "[primary]\n" "url = postgresql://mon@p.example/db\n" \
                "[backup]\n" "url = postgresql://mon@b.example/db\n"

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

static int group_setup(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/drd-test-config-XXXXXX";
    char real[PATH_MAX];
    if (mkdtemp(tmpl) == NULL || realpath(tmpl, real) == NULL ||
        str_copy(g_dir, real, sizeof g_dir) >= sizeof g_dir)
        return -1;
    log_set_level(LOG_LVL_ERROR);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    log_clear_secrets();
    return nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write dir/name (mode 0600) and return its path in a static buffer
 * rotation (so two paths can be alive at once). */
static const char *write_file(const char *name, const char *text)
{
    static char bufs[4][PATH_MAX];
    static int next;
    char *path = bufs[next++ % 4];
    snprintf(path, PATH_MAX, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0600), 0);
    return path;
}

static config_t *load_ok(const char *name, const char *text)
{
    config_errors errs = { 0 };
    config_t *c = config_load(write_file(name, text), &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("unexpected: %s\n", errs.msgs[i]);
    assert_int_equal(errs.n, 0);
    assert_non_null(c);
    config_errors_free(&errs);
    return c;
}

/* Load text and require exactly the expected errors, in order; "@" in an
 * expected message stands for the file's path. NULL-terminated list. */
static void load_fails(const char *name, const char *text, ...)
{
    const char *path = write_file(name, text);
    config_errors errs = { 0 };
    config_t *c = config_load(path, &errs);
    assert_null(c);

    va_list ap;
    va_start(ap, text);
    size_t i = 0;
    const char *exp;
    while ((exp = va_arg(ap, const char *)) != NULL) {
        char want[1024] = "";
        for (const char *p = exp; *p; p++) {
            char one[2] = { *p, '\0' };
            str_append(want, sizeof want, *p == '@' ? path : one);
        }
        if (i >= errs.n)
            fail_msg("missing error #%zu: %s", i, want);
        if (strcmp(errs.msgs[i], want) != 0)
            fail_msg("error #%zu:\n  got  %s\n  want %s", i, errs.msgs[i], want);
        i++;
    }
    va_end(ap);
    for (size_t j = i; j < errs.n; j++)
        print_error("extra: %s\n", errs.msgs[j]);
    assert_int_equal(errs.n, i);
    config_errors_free(&errs);
}

static char *dir_path(const char *rel)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", g_dir, rel) > 0);
    return p;
}

/* ------------------------------------------------------------------ */

static void test_full_valid(void **state)
{
    (void)state;
    write_file("token", "tok-0123456789abcdef-Xy7Q\n");
    config_t *c = load_ok("full.conf",
        "# drd test config\n"
        "[primary]\n"
        "url = postgresql://mon@p.example:5432/postgres?sslmode=require\n"
        "app_url = postgresql://app@p.example:5432/postgres\n"
        "[backup]\n"
        "url = host=b.example dbname=postgres user=mon\n"
        "[probe]\n"
        "interval = 2s\n"
        "timeout = 500ms\n"
        "failures = 5\n"
        "successes = 4\n"
        "cooldown = 1m\n"
        "[failover]\n"
        "policy = AUTO\n"
        "min_outage = 30s\n"
        "block = 2h\n"
        "runbook = /etc/drd/failover.ini\n"
        "fence = command\n"
        "fence_command = ssh db pg_ctl stop\n"
        "fence_required = yes\n"
        "[failback]\n"
        "runbook = /etc/drd/failback.ini\n"
        "[app]\n"
        "env_file = /srv/app/.env\n"
        "env_key = PG_URL\n"
        "stop = systemctl stop app\n"
        "start = systemctl start app\n"
        "health_url = http://127.0.0.1:3000/health\n"
        "user = app\n"
        "[http]\n"
        "listen = 127.0.0.1:8080\n"
        "socket = /run/x/drd.sock\n"
        "token_file = token\n"
        "web_root = /usr/share/drd/web\n"
        "[state]\n"
        "db = /var/lib/x/drd.db\n"
        "[notify]\n"
        "webhook = https://hooks.example.com/abc\n"
        "[log]\n"
        "level = debug\n");

    assert_string_equal(c->primary.url, "postgresql://mon@p.example:5432/postgres?sslmode=require");
    assert_string_equal(c->primary.app_url, "postgresql://app@p.example:5432/postgres");
    assert_null(c->primary.password_file);
    assert_null(c->primary.password);
    assert_string_equal(c->backup.url, "host=b.example dbname=postgres user=mon");
    assert_string_equal(c->backup.app_url, c->backup.url);       /* default: url */
    assert_int_equal(c->probe_interval_ms, 2000);
    assert_int_equal(c->probe_timeout_ms, 500);
    assert_int_equal(c->probe_failures, 5);
    assert_int_equal(c->probe_successes, 4);
    assert_int_equal(c->probe_cooldown_ms, 60000);
    assert_int_equal(c->failover_policy, FAILOVER_AUTO);
    assert_int_equal(c->failover_min_outage_ms, 30000);
    assert_int_equal(c->failover_block_ms, 2 * 3600 * 1000);
    assert_string_equal(c->failover_runbook, "/etc/drd/failover.ini");
    assert_int_equal(c->failover_fence, FENCE_COMMAND);
    assert_string_equal(c->failover_fence_command, "ssh db pg_ctl stop");
    assert_true(c->failover_fence_required);
    assert_string_equal(c->failback_runbook, "/etc/drd/failback.ini");
    assert_string_equal(c->app_env_file, "/srv/app/.env");
    assert_string_equal(c->app_env_key, "PG_URL");
    assert_string_equal(c->app_stop, "systemctl stop app");
    assert_string_equal(c->app_start, "systemctl start app");
    assert_string_equal(c->app_health_url, "http://127.0.0.1:3000/health");
    assert_string_equal(c->app_user, "app");
    assert_string_equal(c->http_listen, "127.0.0.1:8080");
    assert_string_equal(c->http_socket, "/run/x/drd.sock");
    char *tok = dir_path("token");
    assert_string_equal(c->http_token_file, tok);
    free(tok);
    assert_string_equal(c->http_token, "tok-0123456789abcdef-Xy7Q");
    assert_string_equal(c->http_web_root, "/usr/share/drd/web");
    assert_string_equal(c->state_db, "/var/lib/x/drd.db");
    assert_string_equal(c->notify_webhook, "https://hooks.example.com/abc");
    assert_int_equal(c->log_level, LOG_LVL_DEBUG);

    char *p = dir_path("full.conf");
    assert_string_equal(c->path, p);
    assert_string_equal(c->dir, g_dir);
    free(p);
    assert_int_equal(c->n_entries, 29);
    assert_string_equal(config_get(c, "probe", "interval"), "2s");
    assert_string_equal(config_get(c, "failover", "policy"), "AUTO");   /* raw */
    assert_string_equal(config_get(c, "http", "token_file"), "token");  /* raw */
    assert_null(config_get(c, "probe", "nope"));
    assert_null(config_get(c, "nope", "x"));
    config_free(c);
}

/* Each choice is parsed once, at load, into its enum (any case); drd -n -v
 * prints its name; a bad one is a FILE:LINE error naming the choices. */
static void test_choices_typed(void **state)
{
    (void)state;
    config_t *c = load_ok("choices.conf", TARGETS
        "[failover]\npolicy = Manual\nfence = NOLOGIN\n"
        "[http]\nmetrics = token\n[notify]\nformat = json\n"
        "[sync]\nno_pk = copy\nconflicts = primary-wins\nmode = full\n"
        "[refresh]\nmode = Reconcile\ndeletes = compare\n[log]\nlevel = warn\n");
    assert_int_equal(c->failover_policy, FAILOVER_MANUAL);
    assert_int_equal(c->failover_fence, FENCE_NOLOGIN);
    assert_int_equal(c->http_metrics, METRICS_TOKEN);
    assert_int_equal(c->notify_format, NOTIFY_JSON);
    assert_int_equal(c->sync_no_pk, NO_PK_COPY);
    assert_int_equal(c->sync_conflicts, CONFLICTS_PRIMARY_WINS);
    assert_int_equal(c->sync_mode, SYNC_MODE_FULL);
    assert_int_equal(c->refresh_mode, REFRESH_RECONCILE);
    assert_int_equal(c->refresh_deletes, DELETES_COMPARE);
    assert_int_equal(c->log_level, LOG_LVL_WARN);
    assert_string_equal(config_get(c, "failover", "policy"), "Manual");   /* raw */

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    config_dump(c, f);
    fclose(f);
    assert_non_null(strstr(buf, "failover.policy = manual\n"));
    assert_non_null(strstr(buf, "sync.conflicts = primary-wins\n"));
    assert_non_null(strstr(buf, "refresh.deletes = compare\n"));
    assert_non_null(strstr(buf, "log.level = warn\n"));
    free(buf);

    /* a reload that changes a choice is seen by config_restart_needed's
     * comparison as a change of value (not of a pointer) */
    config_t *d = load_ok("choices2.conf", TARGETS "[failover]\npolicy = manual\n");
    assert_int_equal(d->failover_policy, c->failover_policy);
    config_free(d);
    config_free(c);

    load_fails("badchoice.conf", TARGETS "[refresh]\nmode = sometimes\n",
               "@:6: bad value \"sometimes\" for mode in [refresh] (use off, dump, logical or reconcile)",
               NULL);
}

static void test_defaults(void **state)
{
    (void)state;
    config_t *c = load_ok("min.conf", TARGETS);
    assert_string_equal(c->primary.app_url, c->primary.url);
    assert_string_equal(c->backup.app_url, c->backup.url);
    assert_int_equal(c->probe_interval_ms, 1000);
    assert_int_equal(c->probe_timeout_ms, 1000);
    assert_int_equal(c->probe_failures, 3);
    assert_int_equal(c->probe_successes, 2);
    assert_int_equal(c->probe_cooldown_ms, 10000);
    assert_int_equal(c->failover_policy, FAILOVER_APPROVE);
    assert_int_equal(c->failover_min_outage_ms, 0);
    assert_int_equal(c->failover_block_ms, 3600000);
    assert_int_equal(c->failover_fence, FENCE_READ_ONLY);
    assert_null(c->failover_fence_command);
    assert_false(c->failover_fence_required);
    char *fo = dir_path("runbooks/failover.ini"), *fb = dir_path("runbooks/failback.ini");
    char *web = dir_path("web");
    assert_string_equal(c->failover_runbook, fo);
    assert_string_equal(c->failback_runbook, fb);
    assert_string_equal(c->http_web_root, web);
    free(fo); free(fb); free(web);
    assert_null(c->app_env_file);
    assert_string_equal(c->app_env_key, "DATABASE_URL");
    assert_null(c->app_stop);
    assert_null(c->app_start);
    assert_null(c->app_health_url);
    assert_null(c->app_user);
    assert_null(c->http_listen);
    assert_string_equal(c->http_socket, "/run/drd/drd.sock");
    assert_null(c->http_token_file);
    assert_null(c->http_token);
    assert_string_equal(c->state_db, "/var/lib/drd/drd.db");
    assert_null(c->notify_webhook);
    assert_int_equal(c->log_level, LOG_LVL_INFO);
    /* every choice's default, parsed at load (not all are the enum's 0) */
    assert_int_equal(c->http_metrics, METRICS_OPEN);
    assert_int_equal(c->notify_format, NOTIFY_SLACK);
    assert_int_equal(c->sync_no_pk, NO_PK_REFUSE);
    assert_int_equal(c->sync_conflicts, CONFLICTS_ASK);
    assert_int_equal(c->sync_mode, SYNC_MODE_INCREMENTAL);
    assert_int_equal(c->refresh_mode, REFRESH_OFF);
    assert_int_equal(c->refresh_deletes, DELETES_AUTO);
    /* config_get gives defaults for table options */
    assert_string_equal(config_get(c, "probe", "cooldown"), "10s");
    assert_string_equal(config_get(c, "primary", "app_url"), c->primary.url);
    assert_string_equal(config_get(c, "failover", "runbook"), "runbooks/failover.ini");
    assert_null(config_get(c, "app", "stop"));
    config_free(c);
}

static void test_unknown_section(void **state)
{
    (void)state;
    load_fails("usec.conf", TARGETS "[probes]\ninterval = 1s\n[zzzzzz]\na = b\n",
               "@:5: unknown section [probes] (did you mean [probe]?)",
               "@:7: unknown section [zzzzzz]", NULL);
}

static void test_unknown_key(void **state)
{
    (void)state;
    load_fails("ukey.conf", TARGETS "[probe]\nintervall = 1s\nzzzzzz = 2\n",
               "@:6: unknown key \"intervall\" in [probe] (did you mean \"interval\"?)",
               "@:7: unknown key \"zzzzzz\" in [probe]", NULL);
}

static void test_step_section_rejected(void **state)
{
    (void)state;
    load_fails("step.conf", TARGETS "[step stop-app]\naction = exec\n",
               "@:5: [step stop-app] belongs in a runbook file, not in the configuration", NULL);
}

static void test_bad_duration(void **state)
{
    (void)state;
    load_fails("dur.conf", TARGETS "[probe]\ntimeout = 5 minutes\n",
               "@:6: bad duration \"5 minutes\" for timeout in [probe] (use e.g. 500ms, 10s, 5m, 1h)",
               NULL);
}

static void test_out_of_bounds(void **state)
{
    (void)state;
    load_fails("oob.conf", TARGETS "[probe]\ninterval = 2h\nfailures = 0\nsuccesses = 101\n"
               "cooldown = 50ms\n[failover]\nfailures = 1\n",
               "@:6: interval in [probe] must be between 100ms and 1h (got 2h)",
               "@:7: failures in [probe] must be between 1 and 100 (got 0)",
               "@:8: successes in [probe] must be between 1 and 100 (got 101)",
               "@:11: unknown key \"failures\" in [failover]", NULL);
    load_fails("num.conf", TARGETS "[probe]\nfailures = 3x\n",
               "@:6: bad number \"3x\" for failures in [probe]", NULL);
}

static void test_bad_enum_bool_url(void **state)
{
    (void)state;
    load_fails("enum.conf",
               "[primary]\nurl = mysql://u:pw@h/db\n[backup]\nurl = just-a-host\n"
               "[failover]\npolicy = sometimes\nfence_required = maybe\n"
               "[app]\nenv_key = 1BAD\nhealth_url = ftp://x\n[notify]\nwebhook = hooks\n",
               "@:2: unsupported scheme \"mysql\" for url in [primary] "
               "(use a postgresql:// URL or key=value conninfo)",
               "@:4: bad url in [backup] (use a postgresql:// URL or key=value conninfo)",
               "@:6: bad value \"sometimes\" for policy in [failover] (use auto, approve or manual)",
               "@:7: bad value \"maybe\" for fence_required in [failover] (use true or false)",
               "@:9: bad value \"1BAD\" for env_key in [app] (use a variable name such as DATABASE_URL)",
               "@:10: bad value \"ftp://x\" for health_url in [app] (use an http:// or https:// URL)",
               "@:12: bad value for webhook in [notify] (use an http:// or https:// URL)",
               NULL);
}

static void test_missing_required(void **state)
{
    (void)state;
    load_fails("req1.conf", "[primary]\nurl = postgresql://a@p/db\n[backup]\n"
               "app_url = postgresql://a@b/db\n",
               "@:3: missing required key url in [backup]", NULL);
    load_fails("req2.conf", "[primary]\nurl = postgresql://a@p/db\n",
               "@: missing required key url in [backup]", NULL);
    load_fails("req3.conf", "", "@: missing required key url in [primary]",
               "@: missing required key url in [backup]", NULL);
    load_fails("req4.conf", "[primary]\nurl =\n[backup]\nurl = postgresql://a@b/db\n",
               "@:2: empty value for url in [primary]", NULL);
}

static void test_missing_file(void **state)
{
    (void)state;
    config_errors errs = { 0 };
    char *p = dir_path("does-not-exist.conf");
    char want[PATH_MAX + 64];
    assert_null(config_load(p, &errs));
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof want, "%s: cannot read: No such file or directory", p);
    assert_string_equal(errs.msgs[0], want);
    config_errors_free(&errs);
    free(p);

    assert_null(config_load(g_dir, &errs));           /* a directory */
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof want, "%s: cannot read: Is a directory", g_dir);
    assert_string_equal(errs.msgs[0], want);
    config_errors_free(&errs);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    load_fails("syn.conf",
               "url = postgresql://x@y/z\n"             /* 1: outside section */
               TARGETS                                  /* 2-5 */
               "[primary]\n"                            /* 6: repeated section is fine */
               "url = postgresql://a@c/db\n"            /* 7: duplicate */
               "just some words\n"                      /* 8 */
               "[probe\n"                               /* 9 */
               "[]\n"                                   /* 10 */
               "[app] trailing\n"                       /* 11 */
               "[app]\n"                                /* 12 */
               "stop = \"abc\n"                         /* 13 */
               "start = \"abc\" def\n"                  /* 14 */
               "User = root\n"                          /* 15 */
               " = x\n",                                /* 16 */
               "@:1: key \"url\" outside any [section]",
               "@:7: duplicate key \"url\" in [primary] (first set on line 3)",
               "@:8: line without \"=\" (expected key = value)",
               "@:9: malformed section header (use [name])",
               "@:10: malformed section header (use [name])",
               "@:11: malformed section header (use [name])",
               "@:13: unterminated quote",
               "@:14: unexpected text after the closing quote",
               "@:15: bad key \"User\" (use a-z, 0-9, _ and -)",
               "@:16: bad key \"\" (use a-z, 0-9, _ and -)",
               NULL);
}

static void test_cross_field(void **state)
{
    (void)state;
    load_fails("listen.conf", TARGETS "[http]\nlisten = 127.0.0.1:8080\n",
               "@:6: listen is set, so token_file is required in [http] "
               "(the HTTP API needs a token)", NULL);
    load_fails("listen2.conf", TARGETS "[http]\nlisten = 8080\n",
               "@:6: bad value \"8080\" for listen in [http] (use host:port, e.g. 127.0.0.1:8080)",
               NULL);
    load_fails("tmo.conf", TARGETS "[probe]\ntimeout = 2s\n",
               "@:6: timeout (2s) must not exceed interval (1s) in [probe]", NULL);
    load_fails("tmo2.conf", TARGETS "[probe]\ninterval = 500ms\n",
               "@:6: timeout (1s) must not exceed interval (500ms) in [probe]", NULL);
    load_fails("fence.conf", TARGETS "[failover]\nfence = command\n",
               "@:6: fence = command needs fence_command in [failover]", NULL);
    load_fails("same.conf", "[primary]\nurl = postgresql://a@p/db\n"
               "[backup]\nurl = postgresql://a@p/db\n",
               "@:4: url in [backup] is the same as url in [primary]", NULL);
    /* One database (issue 12): an app_url naming no database makes the app
     * use its user's (libpq's default) while refresh, capture, sync-back
     * and sequences would work in url's: refused. Naming it, or the same
     * name either way, or app_url left to default to url, is fine. */
    load_fails("appdb.conf", "[primary]\nurl = postgresql://drd@p/postgres\n"
               "app_url = postgresql://shop@p:5432\n"
               "[backup]\nurl = postgresql://drd@b/db\n",
               "@:3: app_url in [primary] names no database, so the app uses \"shop\" (its user's"
               " name, libpq's default) while drd refreshes, captures and syncs back in \"postgres\""
               " (url's): name the database in app_url", NULL);
    load_fails("appdb2.conf", "[primary]\nurl = postgresql://drd@p/shop\n"
               "[backup]\nurl = postgresql://drd@b\n"
               "app_url = postgresql://shop@b\n",
               "@:5: app_url in [backup] names no database, so the app uses \"shop\" (its user's"
               " name, libpq's default) while drd refreshes, captures and syncs back in \"drd\""
               " (url's): name the database in app_url", NULL);
    config_free(load_ok("appdb3.conf", "[primary]\nurl = postgresql://drd@p/postgres\n"
                        "app_url = postgresql://shop@p/shop\n"
                        "[backup]\nurl = postgresql://drd@b/shop\napp_url = postgresql://shop@b\n"));
    config_free(load_ok("appdb4.conf", "[primary]\nurl = postgresql://drd@p\n"
                        "[backup]\nurl = postgresql://drd@b\n"));
    /* timeout == interval is fine; listen with a token is fine */
    write_file("tok2", "abcdefghijklmnopqrstuvwxyz\n");
    config_t *c = load_ok("okx.conf", TARGETS "[probe]\ntimeout = 1s\n"
                          "[http]\nlisten = [::1]:8080\ntoken_file = tok2\n");
    assert_string_equal(c->http_listen, "[::1]:8080");
    config_free(c);
}

/* drd -n refuses an API token with less than 128 bits of entropy, at the
 * line of token_file; the token itself is never in the message. */
static void weak_token(const char *name, const char *token, const char *why)
{
    char text[256], exp[PATH_MAX + 256];
    write_file(name, token);
    snprintf(text, sizeof text, TARGETS "[http]\nlisten = 127.0.0.1:9\ntoken_file = %s\n", name);
    char *p = dir_path(name);
    snprintf(exp, sizeof exp, "@:7: token_file %s: %s", p, why);
    free(p);
    load_fails("weak.conf", text, exp, NULL);
}

static void test_token_entropy(void **state)
{
    (void)state;
    weak_token("w1", "t0ken-for-tests\n",
               "the token has about 90 bits of entropy, 128 are needed "
               "(32 hex or 22 base64 characters, e.g. openssl rand -hex 32)");
    weak_token("w2", "0123456789abcdef0123456789abcde\n",          /* 31 hex */
               "the token has about 124 bits of entropy, 128 are needed "
               "(32 hex or 22 base64 characters, e.g. openssl rand -hex 32)");
    weak_token("w3", "AbCdEfGhIjKlMnOpQrStU\n",                     /* 21 base64 */
               "the token has about 126 bits of entropy, 128 are needed "
               "(32 hex or 22 base64 characters, e.g. openssl rand -hex 32)");
    weak_token("w4", "12345678901234567890123456789012345678\n",   /* 38 digits */
               "the token has about 126 bits of entropy, 128 are needed "
               "(32 hex or 22 base64 characters, e.g. openssl rand -hex 32)");
    weak_token("w5", "abababababababababababababababababababab\n",
               "the token has only 2 different characters, so it is not random "
               "(e.g. openssl rand -hex 32)");
    /* enough: 32 hex, 22 base64 (with its padding), 39 digits */
    const char *good[] = { "0123456789abcdef0123456789abcdef\n", "AbCdEfGhIjKlMnOpQrStUv==\n",
                           "123456789012345678901234567890123456789\n",
                           "q7-Zk_0pW3xR9mT2vB8nL5\n" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char text[256];
        write_file("goodtok", good[i]);
        snprintf(text, sizeof text, TARGETS "[http]\nlisten = 127.0.0.1:9\ntoken_file = goodtok\n");
        config_free(load_ok("good.conf", text));
    }
}

static void test_multiple_errors_in_file_order(void **state)
{
    (void)state;
    load_fails("multi.conf",
               "[primary]\n"
               "url = postgresql://a@p/db\n"
               "[probe]\n"
               "timeout = 2s\n"
               "interval = 1s\n"
               "failures = 0\n"
               "[bogus]\n"
               "x = 1\n"
               "junk\n"
               "[app]\n"
               "stop = \"x\n",
               "@:4: timeout (2s) must not exceed interval (1s) in [probe]",
               "@:6: failures in [probe] must be between 1 and 100 (got 0)",
               "@:7: unknown section [bogus]",
               "@:9: line without \"=\" (expected key = value)",
               "@:11: unterminated quote",
               "@: missing required key url in [backup]", NULL);
}

static void test_comments_and_quotes(void **state)
{
    (void)state;
    config_t *c = load_ok("cmt.conf",
        "# full-line comment\n"
        "; another one\n"
        "   # indented comment\n"
        "[primary]   # comment after a header\n"
        "url = postgresql://mon@p/db?application_name=drd#x   # inline\n"
        "[backup]\n"
        "url = postgresql://mon@b/db\n"
        "[app]\n"
        "stop = systemctl stop app ; echo done   # the ; stays\n"
        "start = \"echo '#1' \\\"quoted\\\" back\\\\slash \\n\"   # comment\n"
        "user =   spaced value   \n"
        "health_url = \"\"\n"
        "env_file=/x/.env#y\n");
    assert_string_equal(c->primary.url, "postgresql://mon@p/db?application_name=drd#x");
    assert_string_equal(c->app_stop, "systemctl stop app ; echo done");
    assert_string_equal(c->app_start, "echo '#1' \"quoted\" back\\slash \\n");
    assert_string_equal(c->app_user, "spaced value");
    assert_null(c->app_health_url);                 /* "" = not set */
    assert_string_equal(c->app_env_file, "/x/.env#y");
    config_free(c);
}

static void test_long_line(void **state)
{
    (void)state;
    size_t n = 5000;
    char *cmd = malloc(n + 1), *text = NULL;
    assert_non_null(cmd);
    for (size_t i = 0; i < n; i++)
        cmd[i] = (char)('a' + i % 26);
    cmd[n] = '\0';
    cmd[100] = ' ';
    cmd[101] = ';';                                 /* " ;" must not cut */
    assert_true(asprintf(&text, TARGETS "[app]\nstop = %s\n", cmd) > 0);
    config_t *c = load_ok("long.conf", text);
    assert_int_equal(strlen(c->app_stop), n);
    assert_string_equal(c->app_stop, cmd);
    config_free(c);
    free(text);
    free(cmd);
}

static void test_crlf_and_bom(void **state)
{
    (void)state;
    config_t *c = load_ok("crlf.conf",
        "\xEF\xBB\xBF[primary]\r\n"
        "url = postgresql://mon@p/db\r\n"
        "\r\n"
        "[backup]\r\n"
        "url = postgresql://mon@b/db   # c\r\n"
        "[app]\r\n"
        "stop = \"quoted\"\r\n");
    assert_string_equal(c->primary.url, "postgresql://mon@p/db");
    assert_string_equal(c->backup.url, "postgresql://mon@b/db");
    assert_string_equal(c->app_stop, "quoted");
    assert_string_equal(c->entries[0].section, "primary");
    config_free(c);
}

static void test_expand(void **state)
{
    (void)state;
    config_t *c = load_ok("exp.conf", TARGETS
        "[app]\nstop = systemctl stop app\nstart = echo ${app.stop} $$\n");
    char err[256];
    char *s = config_expand(c, "run ${app.stop} && echo $$HOME $5 ${probe.interval} "
                               "${backup.app_url} $", err, sizeof err);
    assert_non_null(s);
    assert_string_equal(s, "run systemctl stop app && echo $HOME $5 1s "
                           "postgresql://mon@b.example/db $");
    free(s);

    s = config_expand(c, "${app.start}", err, sizeof err);     /* one level only */
    assert_string_equal(s, "echo ${app.stop} $$");
    free(s);

    s = config_expand(c, "", err, sizeof err);
    assert_string_equal(s, "");
    free(s);

    assert_null(config_expand(c, "a ${app.nope} b", err, sizeof err));
    assert_string_equal(err, "unknown variable ${app.nope}");
    assert_null(config_expand(c, "${nope.x}", err, sizeof err));
    assert_string_equal(err, "unknown variable ${nope.x}");
    assert_null(config_expand(c, "${app.health_url}", err, sizeof err));
    assert_string_equal(err, "${app.health_url} is not set in the configuration");
    assert_null(config_expand(c, "x ${app.stop", err, sizeof err));
    assert_string_equal(err, "unterminated ${ (write $$ for a literal $)");
    assert_null(config_expand(c, "${stop}", err, sizeof err));
    assert_string_equal(err, "bad variable ${stop} (use ${section.key})");
    config_free(c);
}

static void test_relative_paths(void **state)
{
    (void)state;
    char sub[512];
    snprintf(sub, sizeof sub, "%s/etc", g_dir);
    assert_true(mkdir(sub, 0700) == 0 || errno == EEXIST);
    write_file("etc/rel.conf", TARGETS
               "[failover]\nrunbook = rb/failover.ini\n"
               "[app]\nenv_file = ../srv/.env\n"
               "[state]\ndb = /abs/drd.db\n");

    /* Load through a relative path: the dir must still come out absolute. */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(g_dir), 0);
    config_errors errs = { 0 };
    config_t *c = config_load("etc/rel.conf", &errs);
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(c);
    assert_int_equal(errs.n, 0);

    char want[PATH_MAX + 64];
    assert_string_equal(c->dir, sub);
    snprintf(want, sizeof want, "%s/rel.conf", sub);
    assert_string_equal(c->path, want);
    snprintf(want, sizeof want, "%s/rb/failover.ini", sub);
    assert_string_equal(c->failover_runbook, want);
    snprintf(want, sizeof want, "%s/../srv/.env", sub);
    assert_string_equal(c->app_env_file, want);
    assert_string_equal(c->state_db, "/abs/drd.db");
    snprintf(want, sizeof want, "%s/web", sub);
    assert_string_equal(c->http_web_root, want);
    /* entries keep the raw value */
    assert_string_equal(config_get(c, "failover", "runbook"), "rb/failover.ini");
    assert_string_equal(config_get(c, "app", "env_file"), "../srv/.env");

    char *p = config_path(c, "x/y");
    snprintf(want, sizeof want, "%s/x/y", sub);
    assert_string_equal(p, want);
    free(p);
    p = config_path(c, "/x/y");
    assert_string_equal(p, "/x/y");
    free(p);
    assert_null(config_path(c, NULL));
    config_free(c);
}

static void test_secrets_masked(void **state)
{
    (void)state;
    write_file("pw.txt", "s3cr3t-pass-word  \nsecond line\n");
    write_file("tok3", "tok-abcdefghijklmnop-Xy7Q\r\n");
    config_t *c = load_ok("sec.conf",
        "[primary]\n"
        "url = postgresql://mon:urlpass99@p.example/db\n"
        "password_file = pw.txt\n"
        "[backup]\n"
        "url = host=b.example user=mon password=connpass77\n"
        "[app]\n"
        "stop = echo s3cr3t-pass-word\n"
        "[http]\n"
        "listen = 127.0.0.1:8080\n"
        "token_file = tok3\n"
        "[notify]\n"
        "webhook = https://hooks.example.com/services/T00/B00/XXXXsecret\n");
    assert_string_equal(c->primary.password, "s3cr3t-pass-word");
    assert_null(c->backup.password);
    assert_string_equal(c->http_token, "tok-abcdefghijklmnop-Xy7Q");

    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    config_dump(c, f);
    assert_int_equal(fclose(f), 0);
    assert_null(strstr(out, "urlpass99"));
    assert_null(strstr(out, "connpass77"));
    assert_null(strstr(out, "s3cr3t-pass-word"));
    assert_null(strstr(out, "tok-abcdefghijklmnop"));
    assert_null(strstr(out, "Xy7Q"));
    assert_null(strstr(out, "XXXXsecret"));
    assert_non_null(strstr(out, "primary.url = postgresql://mon:****@p.example/db\n"));
    assert_non_null(strstr(out, "primary.app_url = postgresql://mon:****@p.example/db\n"));
    assert_non_null(strstr(out, "backup.url = host=b.example user=mon password=****\n"));
    assert_non_null(strstr(out, "app.stop = echo ****\n"));
    assert_non_null(strstr(out, "notify.webhook = https://hooks.example.com/****\n"));
    assert_non_null(strstr(out, "probe.interval = 1s\n"));
    assert_non_null(strstr(out, "probe.failures = 3\n"));
    assert_non_null(strstr(out, "failover.fence_required = false\n"));
    assert_non_null(strstr(out, "failover.block = 1h\n"));
    assert_non_null(strstr(out, "app.user = \n"));
    assert_non_null(strstr(out, "log.level = info\n"));
    free(out);
    config_free(c);

    /* empty and missing secret files are errors at the key's line */
    write_file("empty.txt", " \n");
    char *e = dir_path("empty.txt"), *m = dir_path("missing.txt");
    char exp1[PATH_MAX + 64], exp2[PATH_MAX + 64];
    snprintf(exp1, sizeof exp1, "@:3: password_file %s is empty", e);
    snprintf(exp2, sizeof exp2, "@:7: cannot read token_file %s: No such file or directory", m);
    load_fails("sec2.conf", "[primary]\nurl = postgresql://a@p/db\npassword_file = empty.txt\n"
               "[backup]\nurl = postgresql://a@b/db\n[http]\ntoken_file = missing.txt\n",
               exp1, exp2, NULL);
    free(e);
    free(m);
}

static void test_restart_needed(void **state)
{
    (void)state;
    write_file("tok4", "abcdefghijklmnopqrstuvwxyz\n");
    config_t *a = load_ok("ra.conf", TARGETS "[probe]\ninterval = 1s\n");
    config_t *b = load_ok("rb.conf", TARGETS "[probe]\ninterval = 5s\n");
    config_t *d = load_ok("rd.conf", TARGETS "[http]\nlisten = 127.0.0.1:9\ntoken_file = tok4\n"
                          "[state]\ndb = /tmp/other.db\n");
    assert_null(config_restart_needed(a, b));          /* interval reloads */
    char *r = config_restart_needed(a, d);
    assert_string_equal(r, "http.listen, http.token_file, state.db");
    free(r);
    config_free(a);
    config_free(b);
    config_free(d);
}

/* ini_read on its own, as runbooks use it */
struct rec { char buf[2048]; int stop_at; };

static bool rec_entry(void *arg, const char *section, const char *key,
                      const char *value, int line)
{
    struct rec *r = arg;
    char one[512];
    snprintf(one, sizeof one, "%d:[%s]%s%s%s;", line, section,
             key ? key : "", key ? "=" : "", value ? value : "");
    str_append(r->buf, sizeof r->buf, one);
    return line != r->stop_at;
}

static void test_ini_read(void **state)
{
    (void)state;
    const char *p = write_file("rb.ini",
        "[step stop-app]\n"
        "action = exec\n"
        "command = ${app.stop} ; true   # comment\n"
        "\n"
        "[  step  wait  ]\n"
        "[step stop-app]\n"
        "timeout = 60s\n");
    struct rec r = { "", 0 };
    config_errors errs = { 0 };
    assert_true(ini_read(p, rec_entry, &r, &errs));
    assert_int_equal(errs.n, 0);
    assert_string_equal(r.buf, "1:[step stop-app];2:[step stop-app]action=exec;"
                               "3:[step stop-app]command=${app.stop} ; true;"
                               "5:[step  wait];6:[step stop-app];7:[step stop-app]timeout=60s;");

    /* on_entry returning false stops reading */
    struct rec r2 = { "", 2 };
    assert_false(ini_read(p, rec_entry, &r2, &errs));
    assert_int_equal(errs.n, 0);
    assert_string_equal(r2.buf, "1:[step stop-app];2:[step stop-app]action=exec;");

    /* syntax errors: reported, reading goes on, result false */
    p = write_file("bad.ini", "[a]\nx = 1\nx = 2\nnope\ny = 3\n");
    struct rec r3 = { "", 0 };
    assert_false(ini_read(p, rec_entry, &r3, &errs));
    assert_int_equal(errs.n, 2);
    assert_string_equal(r3.buf, "1:[a];2:[a]x=1;5:[a]y=3;");
    config_errors_free(&errs);
}

static void test_free_null(void **state)
{
    (void)state;
    config_free(NULL);
    config_errors_free(NULL);
    config_errors e = { 0 };
    config_error_add(&e, "%s:%d: %s", "f", 3, "m");
    assert_string_equal(e.msgs[0], "f:3: m");
    config_errors_free(&e);
    assert_int_equal(e.n, 0);
    assert_null(config_get(NULL, "a", "b"));
    assert_null(config_restart_needed(NULL, NULL));
}

/* References: config_free drops one, the last frees (the ASan build of
 * this test reports a use after free or a leak if the count is wrong). */
static void *ref_churn(void *arg)
{
    const config_t *c = arg;
    for (int i = 0; i < 20000; i++) {
        const config_t *r = config_ref(c);
        assert_ptr_equal(r, c);
        if (strcmp(r->primary.url, "postgresql://mon@p.example/db") != 0)
            return (void *)1;
        config_free(r);
    }
    return NULL;
}

static void test_references(void **state)
{
    (void)state;
    config_errors errs = { 0 };
    config_t *c = config_load(write_file("refs.conf", TARGETS "[app]\nhealth_url = http://127.0.0.1:1/h\n"),
                              &errs);
    assert_non_null(c);
    assert_null(config_ref(NULL));

    /* a run holds one while the daemon drops its own (a reload) */
    const config_t *run = config_ref(c);
    config_free(c);
    assert_string_equal(run->app_health_url, "http://127.0.0.1:1/h");
    config_free(run);             /* the last one: freed */

    /* from several threads at once */
    c = config_load(write_file("refs.conf", TARGETS), &errs);
    assert_non_null(c);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, ref_churn, c), 0);
    for (int i = 0; i < 4; i++) {
        void *rv = (void *)1;
        pthread_join(t[i], &rv);
        assert_null(rv);
    }
    assert_int_equal(atomic_load(&c->refs), 0);
    config_free(c);
    config_errors_free(&errs);
}

/* conf/drd.conf (the documented example) loads, and documents every key
 * that config_dump knows about. Found relative to this source file. */
static void test_example_conf(void **state)
{
    (void)state;
    char path[PATH_MAX];
    const char *me = __FILE__;
    const char *tail = strstr(me, "tests/unit/test_config.c");
    assert_non_null(tail);
    snprintf(path, sizeof path, "%.*sconf/drd.conf", (int)(tail - me), me);

    config_errors errs = { 0 };
    config_t *c = config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.msgs[i]);
    assert_int_equal(errs.n, 0);
    assert_non_null(c);
    assert_int_equal(c->failover_policy, FAILOVER_APPROVE);
    assert_null(c->http_listen);

    size_t len = 0;
    char *text = read_file(path, 1 << 20, &len), *dump = NULL;
    assert_non_null(text);
    FILE *f = open_memstream(&dump, &len);
    assert_non_null(f);
    config_dump(c, f);
    assert_int_equal(fclose(f), 0);
    for (char *line = strtok(dump, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char key[128], as_set[160], as_comment[160];
        const char *dot = strchr(line, '.'), *eq = strstr(line, " = ");
        assert_non_null(dot);
        assert_non_null(eq);
        snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
        snprintf(as_set, sizeof as_set, "\n%s = ", key);
        snprintf(as_comment, sizeof as_comment, "\n#%s = ", key);
        if (strstr(text, as_set) == NULL && strstr(text, as_comment) == NULL)
            fail_msg("%s is not documented in %s", key, path);
    }
    free(dump);
    free(text);
    config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_valid),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_choices_typed),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_step_section_rejected),
        cmocka_unit_test(test_bad_duration),
        cmocka_unit_test(test_out_of_bounds),
        cmocka_unit_test(test_bad_enum_bool_url),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_cross_field),
        cmocka_unit_test(test_token_entropy),
        cmocka_unit_test(test_multiple_errors_in_file_order),
        cmocka_unit_test(test_comments_and_quotes),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_crlf_and_bom),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_secrets_masked),
        cmocka_unit_test(test_restart_needed),
        cmocka_unit_test(test_ini_read),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_example_conf),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
