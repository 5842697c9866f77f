/* test_proc.c - child commands on the event loop: exit status, output
 * capture and truncation, deadlines that kill the whole process group,
 * signal hygiene in the child, no blocking, no fd or zombie leaks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drd/core/loop.h"
#include "drd/core/proc.h"
#include "drd/core/util.h"

/* ---- helpers --------------------------------------------------------- */

typedef struct {
    loop_t *loop;
    proc_t *p;
    bool spawning;          /* set while inside proc_spawn */
    bool free_in_cb;
    int calls;
    bool watchdog_fired;
    proc_result r;          /* copy; r.output points to output */
    char *output;
} run_ctx;

static void on_done(void *arg, const proc_result *r)
{
    run_ctx *c = arg;
    assert_false(c->spawning);
    c->calls++;
    c->r = *r;
    free(c->output);
    c->output = malloc(r->output_len + 1);
    assert_non_null(c->output);
    memcpy(c->output, r->output, r->output_len);
    c->output[r->output_len] = '\0';
    assert_int_equal(r->output[r->output_len], '\0');     /* NUL-terminated */
    c->r.output = c->output;
    if (c->free_in_cb) {
        proc_free(c->p);
        c->p = NULL;
    }
    loop_stop(c->loop);
}

/* Stops the loop instead of failing from inside it, so that the test can
 * still clean up the child. */
static void watchdog(loop_t *loop, void *arg)
{
    run_ctx *c = arg;
    c->watchdog_fired = true;
    loop_stop(loop);
}

static void ctx_init(run_ctx *c)
{
    memset(c, 0, sizeof *c);
    c->loop = loop_new();
    assert_non_null(c->loop);
    c->free_in_cb = true;
}

static void ctx_done(run_ctx *c)
{
    proc_free(c->p);
    loop_free(c->loop);
    free(c->output);
    c->output = NULL;
}

/* Spawn spec and run the loop until the callback (or the watchdog). */
static void run_spec(run_ctx *c, const proc_spec *spec, int64_t watchdog_ms)
{
    char err[256] = "";
    c->spawning = true;
    c->p = proc_spawn(c->loop, spec, on_done, c, err, sizeof err);
    c->spawning = false;
    if (c->p == NULL)
        fail_msg("proc_spawn: %s", err);
    uint64_t wd = loop_add_timer(c->loop, watchdog_ms, watchdog, c);
    loop_run(c->loop);
    loop_cancel_timer(c->loop, wd);
    if (c->watchdog_fired) {
        proc_free(c->p);
        c->p = NULL;
        fail_msg("watchdog: '%s' did not finish within %lld ms", spec->command,
                 (long long)watchdog_ms);
    }
    assert_int_equal(c->calls, 1);
}

static void run_cmd(run_ctx *c, const char *command, int64_t timeout_ms, int64_t watchdog_ms)
{
    proc_spec spec = { .command = command, .timeout_ms = timeout_ms };
    run_spec(c, &spec, watchdog_ms);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Dead: no such process, or a zombie waiting for its (new) parent. */
static bool process_dead(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp != NULL && (rp[2] == 'Z' || rp[2] == 'X');
}

static bool wait_dead(pid_t pid, int64_t within_ms)
{
    int64_t end = mono_ms() + within_ms;
    while (!process_dead(pid)) {
        if (mono_ms() > end)
            return false;
        usleep(10000);
    }
    return true;
}

/* The test process must have no child left (nothing unreaped). */
static void assert_no_children(void)
{
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static pid_t parse_pid(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    assert_true(end != s && v > 1);
    return (pid_t)v;
}

/* ---- tests ----------------------------------------------------------- */

static void test_exit_code_and_output(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c);
    run_cmd(&c, "echo out; echo err >&2; exit 3", 0, 5000);
    assert_int_equal(c.r.exit_code, 3);
    assert_int_equal(c.r.term_signal, 0);
    assert_false(c.r.timed_out);
    assert_string_equal(c.r.output, "out\nerr\n");
    assert_int_equal(c.r.output_len, 8);
    assert_false(c.r.output_truncated);
    assert_true(c.r.duration_ms >= 0 && c.r.duration_ms < 2000);
    ctx_done(&c);

    ctx_init(&c);
    run_cmd(&c, "true", 0, 5000);
    assert_int_equal(c.r.exit_code, 0);
    assert_int_equal(c.r.output_len, 0);
    assert_string_equal(c.r.output, "");
    ctx_done(&c);
    assert_no_children();
}

static void test_output_keeps_last_bytes(void **state)
{
    (void)state;
    run_ctx c;
    /* 500 lines of 5 bytes = 2500 bytes; keep the last 1000 = lines 300..499. */
    ctx_init(&c);
    proc_spec spec = {
        .command = "i=0; while [ $i -lt 500 ]; do printf '%04d\\n' $i; i=$((i+1)); done",
        .output_cap = 1000,
    };
    run_spec(&c, &spec, 10000);
    assert_int_equal(c.r.exit_code, 0);
    assert_int_equal(c.r.output_len, 1000);
    assert_true(c.r.output_truncated);
    assert_int_equal(strlen(c.r.output), 1000);
    assert_memory_equal(c.r.output, "0300\n0301\n", 10);
    assert_string_equal(c.r.output + 990, "0498\n0499\n");
    for (int i = 0; i < 200; i++) {
        char want[8];
        snprintf(want, sizeof want, "%04d\n", 300 + i);
        assert_memory_equal(c.r.output + 5 * i, want, 5);
    }
    ctx_done(&c);

    /* Much more than the default cap (and than a pipe buffer). */
    ctx_init(&c);
    run_cmd(&c, "head -c 300000 /dev/zero | tr '\\0' a; echo; echo END", 0, 10000);
    assert_int_equal(c.r.exit_code, 0);
    assert_int_equal(c.r.output_len, 65536);
    assert_true(c.r.output_truncated);
    assert_string_equal(c.r.output + 65536 - 5, "\nEND\n");
    assert_int_equal(c.r.output[0], 'a');
    ctx_done(&c);

    /* Exactly the cap: nothing dropped. */
    ctx_init(&c);
    proc_spec exact = { .command = "printf 0123456789", .output_cap = 10 };
    run_spec(&c, &exact, 5000);
    assert_string_equal(c.r.output, "0123456789");
    assert_false(c.r.output_truncated);
    ctx_done(&c);
    assert_no_children();
}

static void test_deadline_kills_process_group(void **state)
{
    (void)state;
    /* Like drd: these signals blocked (for a signalfd) and SIGPIPE ignored;
     * the child must not inherit that. */
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, &old);

    run_ctx c;
    ctx_init(&c);
    int64_t t0 = mono_ms();
    run_cmd(&c, "sleep 30 & echo $!; sleep 30", 300, 5000);
    int64_t elapsed = mono_ms() - t0;
    assert_true(c.r.timed_out);
    assert_int_equal(c.r.exit_code, -1);
    assert_int_equal(c.r.term_signal, SIGTERM);
    assert_true(c.r.duration_ms >= 250);
    assert_true(c.r.duration_ms < 1500);
    assert_true(elapsed < 1500);
    pid_t bg = parse_pid(c.r.output);
    assert_true(wait_dead(bg, 2000));
    ctx_done(&c);

    sigprocmask(SIG_SETMASK, &old, NULL);
    assert_no_children();
}

static void test_sigterm_ignored_gets_sigkill(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c);
    proc_spec spec = { .command = "trap '' TERM; sleep 30 & echo $!; sleep 30",
                       .timeout_ms = 200, .grace_ms = 200 };
    run_spec(&c, &spec, 5000);
    assert_true(c.r.timed_out);
    assert_int_equal(c.r.exit_code, -1);
    assert_int_equal(c.r.term_signal, SIGKILL);
    assert_true(c.r.duration_ms >= 350);
    assert_true(c.r.duration_ms < 1500);
    assert_true(wait_dead(parse_pid(c.r.output), 2000));
    ctx_done(&c);
    assert_no_children();
}

static void test_deadline_kills_stragglers(void **state)
{
    (void)state;
    /* The main shell dies on SIGTERM at once; a background member that
     * ignores SIGTERM must not outlive the timed-out command. */
    run_ctx c;
    ctx_init(&c);
    proc_spec spec = { .command = "(trap '' TERM; sleep 30) & echo $!; sleep 30",
                       .timeout_ms = 200, .grace_ms = 3000 };
    run_spec(&c, &spec, 5000);
    assert_true(c.r.timed_out);
    assert_int_equal(c.r.term_signal, SIGTERM);
    assert_true(c.r.duration_ms < 1500);       /* did not wait for the grace */
    assert_true(wait_dead(parse_pid(c.r.output), 1000));
    ctx_done(&c);
    assert_no_children();
}

static void test_killed_by_signal(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c);
    run_cmd(&c, "echo before; kill -9 $$", 0, 5000);
    assert_false(c.r.timed_out);
    assert_int_equal(c.r.exit_code, -1);
    assert_int_equal(c.r.term_signal, 9);
    assert_string_equal(c.r.output, "before\n");
    ctx_done(&c);
    assert_no_children();
}

static void test_env_extras_and_cwd(void **state)
{
    (void)state;
    setenv("DRD_TEST_INHERITED", "inherited", 1);
    setenv("DRD_TEST_OVERRIDE", "old", 1);
    char *env[] = { "DRD_TEST_EXTRA=hello world", "DRD_TEST_OVERRIDE=new", NULL };
    run_ctx c;
    ctx_init(&c);
    proc_spec spec = {
        .command = "echo \"$DRD_TEST_EXTRA|$DRD_TEST_OVERRIDE|$DRD_TEST_INHERITED\"; "
                   "env | grep -c '^DRD_TEST_OVERRIDE='; pwd",
        .env = env,
        .cwd = "/tmp",
    };
    run_spec(&c, &spec, 5000);
    assert_int_equal(c.r.exit_code, 0);
    assert_string_equal(c.r.output, "hello world|new|inherited\n1\n/tmp\n");
    ctx_done(&c);
    unsetenv("DRD_TEST_INHERITED");
    unsetenv("DRD_TEST_OVERRIDE");

    /* A cwd that does not exist: refused with the path in the message. */
    ctx_init(&c);
    proc_spec bad = { .command = "echo should-not-run", .cwd = "/nonexistent/drd-test" };
    char cwderr[256] = "";
    assert_null(proc_spawn(c.loop, &bad, on_done, &c, cwderr, sizeof cwderr));
    assert_string_equal(cwderr, "/nonexistent/drd-test: No such file or directory");
    ctx_done(&c);

    /* A malformed env entry is refused up front. */
    ctx_init(&c);
    char *badenv[] = { "NOEQUALS", NULL };
    proc_spec bad2 = { .command = "true", .env = badenv };
    char err[128] = "";
    assert_null(proc_spawn(c.loop, &bad2, on_done, &c, err, sizeof err));
    assert_true(err[0] != '\0');
    ctx_done(&c);
    assert_no_children();
}

static void test_stdin_is_dev_null_and_signals_reset(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c);
    run_cmd(&c, "cat; echo done", 5000, 5000);
    assert_int_equal(c.r.exit_code, 0);
    assert_false(c.r.timed_out);
    assert_string_equal(c.r.output, "done\n");
    assert_true(c.r.duration_ms < 1000);
    ctx_done(&c);

    /* drd blocks TERM/INT/HUP and ignores SIGPIPE; the child starts clean. */
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &old);
    struct sigaction ign = { .sa_handler = SIG_IGN }, oldpipe;
    sigaction(SIGPIPE, &ign, &oldpipe);

    ctx_init(&c);
    /* Signals 1..31 only: glibc keeps its own real-time signals 32 and 33
     * (SIGCANCEL, SIGSETXID) as they were inherited and refuses to reset them. */
    run_cmd(&c, "grep -E '^SigBlk' /proc/self/status; "
                "printf 'SigIgn:%x\\n' $(( 0x$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/self/status) & 0x7fffffff )); "
                "yes | head -n 1", 5000, 5000);
    assert_int_equal(c.r.exit_code, 0);
    /* With SIGPIPE inherited as ignored, `yes` would print "Broken pipe". */
    assert_string_equal(c.r.output, "SigBlk:\t0000000000000000\nSigIgn:0\ny\n");
    ctx_done(&c);

    sigaction(SIGPIPE, &oldpipe, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    assert_no_children();
}

typedef struct {
    int ticks;
    int64_t last;
    int64_t max_gap;
} ticker;

static void on_tick(loop_t *loop, void *arg)
{
    ticker *t = arg;
    int64_t now = mono_ms();
    if (t->last != 0 && now - t->last > t->max_gap)
        t->max_gap = now - t->last;
    t->last = now;
    t->ticks++;
    loop_add_timer(loop, 50, on_tick, t);
}

static void test_loop_not_blocked(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c);
    ticker t = { 0 };
    t.last = mono_ms();
    loop_add_timer(c.loop, 50, on_tick, &t);
    run_cmd(&c, "sleep 1; echo slept", 0, 5000);
    assert_int_equal(c.r.exit_code, 0);
    assert_string_equal(c.r.output, "slept\n");
    /* ~20 ticks in a second; allow for a loaded machine. */
    assert_true(t.ticks >= 12);
    assert_true(t.max_gap < 300);
    ctx_done(&c);
    assert_no_children();
}

static void test_background_grandchild_does_not_delay(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c);
    run_cmd(&c, "sleep 5 & echo $!", 0, 4000);
    assert_int_equal(c.r.exit_code, 0);
    assert_false(c.r.timed_out);
    assert_true(c.r.duration_ms < 1000);
    pid_t bg = parse_pid(c.r.output);
    /* A normally-exiting command keeps its background processes. */
    assert_false(process_dead(bg));
    kill(bg, SIGKILL);
    assert_true(wait_dead(bg, 2000));
    ctx_done(&c);
    assert_no_children();
}

static void on_terminate_timer(loop_t *loop, void *arg)
{
    (void)loop;
    run_ctx *c = arg;
    proc_terminate(c->p);
}

static void test_proc_terminate(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c);
    loop_add_timer(c.loop, 100, on_terminate_timer, &c);
    run_cmd(&c, "sleep 30", 0, 5000);
    assert_false(c.r.timed_out);
    assert_int_equal(c.r.exit_code, -1);
    assert_int_equal(c.r.term_signal, SIGTERM);
    assert_true(c.r.duration_ms < 1500);
    ctx_done(&c);
    assert_no_children();
}

static void stop_timer(loop_t *loop, void *arg)
{
    (void)arg;
    loop_stop(loop);
}

static void test_free_while_running(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c);
    char err[128];
    proc_spec spec = { .command = "sleep 30 & echo $!; sleep 30", .timeout_ms = 10000 };
    c.p = proc_spawn(c.loop, &spec, on_done, &c, err, sizeof err);
    assert_non_null(c.p);
    pid_t pid = proc_pid(c.p);
    assert_true(pid > 0);
    loop_add_timer(c.loop, 200, stop_timer, NULL);
    loop_run(c.loop);
    assert_int_equal(c.calls, 0);
    int64_t t0 = mono_ms();
    proc_free(c.p);
    c.p = NULL;
    assert_true(mono_ms() - t0 < 1000);
    assert_true(process_dead(pid));
    /* The loop holds nothing of the freed proc: it has nothing left to
     * wait for and returns at once, without calling back. */
    loop_run(c.loop);
    assert_int_equal(c.calls, 0);
    ctx_done(&c);
    assert_no_children();
}

static void test_callback_not_freeing(void **state)
{
    (void)state;
    /* The owner may keep the proc after the callback and free it later. */
    run_ctx c;
    ctx_init(&c);
    c.free_in_cb = false;
    run_cmd(&c, "echo kept", 0, 5000);
    assert_non_null(c.p);
    assert_string_equal(c.r.output, "kept\n");
    proc_free(c.p);
    c.p = NULL;
    ctx_done(&c);
    assert_no_children();
}

static void plain_done(void *arg, const proc_result *r)
{
    run_ctx *c = arg;
    c->calls++;
    c->output = strndup(r->output, r->output_len);
    c->r = *r;
    loop_stop(c->loop);
}

/* A daemon that closed its stdio: pipe() and open() hand out 0..2, which
 * the child's own redirections must not clobber. */
static void test_closed_stdio(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {                 /* no cmocka asserts in here */
        close(0);
        close(1);
        close(2);
        run_ctx c;
        memset(&c, 0, sizeof c);
        c.loop = loop_new();
        char err[128];
        proc_spec spec = { .command = "echo hi; cat; echo done >&2", .timeout_ms = 5000 };
        c.p = proc_spawn(c.loop, &spec, plain_done, &c, err, sizeof err);
        if (c.p == NULL)
            _exit(2);
        loop_run(c.loop);
        bool ok = c.calls == 1 && c.r.exit_code == 0 && c.output != NULL &&
                  strcmp(c.output, "hi\ndone\n") == 0;
        proc_free(c.p);
        loop_free(c.loop);
        free(c.output);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_no_children();
}

static void test_no_fd_leak(void **state)
{
    (void)state;
    int before = count_fds();
    for (int i = 0; i < 3; i++) {
        run_ctx c;
        ctx_init(&c);
        run_cmd(&c, "echo a; echo b >&2", 0, 5000);
        ctx_done(&c);
        ctx_init(&c);
        run_cmd(&c, "sleep 30", 100, 5000);
        assert_true(c.r.timed_out);
        ctx_done(&c);
        ctx_init(&c);
        char err[128];
        proc_spec spec = { .command = "sleep 30" };
        c.p = proc_spawn(c.loop, &spec, on_done, &c, err, sizeof err);
        assert_non_null(c.p);
        ctx_done(&c);                       /* freed while running */
    }
    /* The child sees only 0, 1, 2 (and the fd ls itself opens). */
    run_ctx c;
    ctx_init(&c);
    run_cmd(&c, "ls /proc/self/fd | wc -l", 0, 5000);
    assert_int_equal(strtol(c.r.output, NULL, 10), 4);
    ctx_done(&c);
    assert_int_equal(count_fds(), before);
    assert_no_children();
}

/* [app] user: the command runs with that user's ids and HOME. */
static void test_run_as_user(void **state)
{
    (void)state;
    char err[256];
    proc_spec bad = { .command = "true", .user = "no-such-user-drd" };
    run_ctx unused;
    ctx_init(&unused);
    proc_t *p = proc_spawn(unused.loop, &bad, on_done, &unused, err, sizeof err);
    assert_null(p);
    assert_non_null(strstr(err, "unknown user no-such-user-drd"));
    ctx_done(&unused);
    if (geteuid() != 0) {
        skip();
        return;
    }
    run_ctx c;
    ctx_init(&c);
    proc_spec spec = { .command = "id -un; echo $USER", .timeout_ms = 5000, .user = "nobody" };
    run_spec(&c, &spec, 5000);
    assert_int_equal(c.r.exit_code, 0);
    assert_string_equal(c.r.output, "nobody\nnobody\n");
    ctx_done(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_code_and_output),
        cmocka_unit_test(test_output_keeps_last_bytes),
        cmocka_unit_test(test_deadline_kills_process_group),
        cmocka_unit_test(test_sigterm_ignored_gets_sigkill),
        cmocka_unit_test(test_deadline_kills_stragglers),
        cmocka_unit_test(test_killed_by_signal),
        cmocka_unit_test(test_env_extras_and_cwd),
        cmocka_unit_test(test_stdin_is_dev_null_and_signals_reset),
        cmocka_unit_test(test_loop_not_blocked),
        cmocka_unit_test(test_background_grandchild_does_not_delay),
        cmocka_unit_test(test_proc_terminate),
        cmocka_unit_test(test_free_while_running),
        cmocka_unit_test(test_callback_not_freeing),
        cmocka_unit_test(test_closed_stdio),
        cmocka_unit_test(test_no_fd_leak),
        cmocka_unit_test(test_run_as_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
