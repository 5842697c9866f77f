/* test_loop.c - the poll(2) event loop: timers, fd watchers, re-entrancy. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <string.h>
#include <unistd.h>

#include "drd/core/loop.h"
#include "drd/core/util.h"

/* ---- helpers --------------------------------------------------------- */

typedef struct {
    loop_t *loop;
    int order[16];
    int n;
} recorder;

typedef struct {
    recorder *rec;
    int tag;
    bool stop;
} timer_arg;

static void record_timer(loop_t *loop, void *arg)
{
    timer_arg *t = arg;
    assert_true(t->rec->n < 16);
    t->rec->order[t->rec->n++] = t->tag;
    if (t->stop)
        loop_stop(loop);
}

/* A safety net so that a broken loop fails the test instead of hanging. */
static void watchdog(loop_t *loop, void *arg)
{
    (void)loop;
    (void)arg;
    fail_msg("watchdog fired: loop did not stop in time");
}

static void make_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

/* ---- timers ---------------------------------------------------------- */

static void test_timers_fire_in_deadline_order(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    assert_non_null(loop);
    int64_t t0 = mono_ms();
    recorder rec = { .loop = loop };
    timer_arg a30 = { &rec, 30, true }, a10 = { &rec, 10, false },
              a20 = { &rec, 20, false }, a0 = { &rec, 0, false },
              a20b = { &rec, 21, false };
    assert_true(loop_add_timer(loop, 30, record_timer, &a30) > 0);
    assert_true(loop_add_timer(loop, 10, record_timer, &a10) > 0);
    assert_true(loop_add_timer(loop, 20, record_timer, &a20) > 0);
    assert_true(loop_add_timer(loop, 20, record_timer, &a20b) > 0); /* same deadline: FIFO */
    assert_true(loop_add_timer(loop, 0, record_timer, &a0) > 0);
    uint64_t wd = loop_add_timer(loop, 5000, watchdog, NULL);
    loop_run(loop);
    int64_t took = mono_ms() - t0;
    loop_cancel_timer(loop, wd);
    assert_int_equal(rec.n, 5);
    int want[] = { 0, 10, 20, 21, 30 };
    for (int i = 0; i < 5; i++)
        assert_int_equal(rec.order[i], want[i]);
    assert_true(took >= 29);
    assert_true(took < 1000);
    loop_free(loop);
}

static void test_timer_ids_unique_and_loop_now_advances(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    recorder rec = { .loop = loop };
    timer_arg a = { &rec, 1, true };
    int64_t before = loop_now(loop);
    uint64_t id1 = loop_add_timer(loop, 50, record_timer, &a);
    uint64_t id2 = loop_add_timer(loop, 10000, watchdog, NULL);
    assert_true(id1 > 0 && id2 > 0 && id1 != id2);
    loop_run(loop);
    assert_true(loop_now(loop) - before >= 50);
    loop_cancel_timer(loop, id2);
    loop_free(loop);
}

static void test_cancel_before_run(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    recorder rec = { .loop = loop };
    timer_arg a = { &rec, 1, false }, b = { &rec, 2, true };
    uint64_t ida = loop_add_timer(loop, 5, record_timer, &a);
    loop_add_timer(loop, 20, record_timer, &b);
    loop_cancel_timer(loop, ida);
    loop_cancel_timer(loop, ida);        /* twice: ignored */
    loop_cancel_timer(loop, 987654);     /* unknown: ignored */
    loop_cancel_timer(loop, 0);
    loop_run(loop);
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.order[0], 2);
    loop_free(loop);
}

typedef struct {
    recorder *rec;
    uint64_t victim;
    uint64_t self;
} canceller;

static void cancel_other(loop_t *loop, void *arg)
{
    canceller *c = arg;
    c->rec->order[c->rec->n++] = 100;
    loop_cancel_timer(loop, c->victim);  /* due in this same iteration */
    loop_cancel_timer(loop, c->self);    /* itself: already fired, no-op */
}

static void test_cancel_from_inside_callback(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    recorder rec = { .loop = loop };
    canceller c = { .rec = &rec };
    timer_arg victim = { &rec, 1, false }, later = { &rec, 2, false },
              end = { &rec, 3, true };
    /* Same deadline: the canceller (added first) fires first, and the
     * victim is due in the same iteration. */
    c.self = loop_add_timer(loop, 10, cancel_other, &c);
    c.victim = loop_add_timer(loop, 10, record_timer, &victim);
    loop_add_timer(loop, 15, record_timer, &later);
    loop_add_timer(loop, 30, record_timer, &end);
    loop_run(loop);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.order[0], 100);
    assert_int_equal(rec.order[1], 2);
    assert_int_equal(rec.order[2], 3);
    loop_free(loop);
}

/* ---- fd watchers ----------------------------------------------------- */

typedef struct {
    int calls;
    short revents;
    int fd_seen;
    bool stop;
    bool del_self;
} fd_rec;

static void on_readable(loop_t *loop, int fd, short revents, void *arg)
{
    fd_rec *r = arg;
    char buf[64];
    r->calls++;
    r->revents = revents;
    r->fd_seen = fd;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    if (r->del_self)
        loop_del_fd(loop, fd);
    if (r->stop)
        loop_stop(loop);
}

static void test_fd_callback_on_pipe(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    fd_rec r = { .stop = true };
    assert_true(loop_add_fd(loop, p[0], POLLIN, on_readable, &r));
    assert_false(loop_add_fd(loop, p[0], POLLIN, on_readable, &r)); /* one per fd */
    assert_int_equal(write(p[1], "x", 1), 1);
    uint64_t wd = loop_add_timer(loop, 5000, watchdog, NULL);
    loop_run(loop);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.fd_seen, p[0]);
    assert_true(r.revents & POLLIN);
    loop_cancel_timer(loop, wd);
    loop_del_fd(loop, p[0]);
    loop_del_fd(loop, p[0]);          /* unknown now: ignored */
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}

static void on_writable(loop_t *loop, int fd, short revents, void *arg)
{
    fd_rec *r = arg;
    r->calls++;
    r->revents = revents;
    /* Switch to reading: the next event must come from POLLIN. */
    loop_mod_fd(loop, fd, POLLIN);
}

typedef struct {
    int fd;
} writer_arg;

static void write_byte(loop_t *loop, void *arg)
{
    writer_arg *w = arg;
    (void)loop;
    assert_int_equal(write(w->fd, "x", 1), 1);
}

static void test_mod_fd(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    int s[2];
    make_pipe(s);
    fd_rec w = { 0 };
    fd_rec r = { .stop = true };
    /* The write end is writable at once; its callback switches it to
     * POLLIN, which a pipe's write end never reports, so it must not be
     * called again although it stays writable.  The read end stops the
     * loop when a timer writes 30 ms later. */
    assert_true(loop_add_fd(loop, s[1], POLLOUT, on_writable, &w));
    assert_true(loop_add_fd(loop, s[0], POLLIN, on_readable, &r));
    writer_arg wa = { s[1] };
    loop_add_timer(loop, 30, write_byte, &wa);
    uint64_t wd = loop_add_timer(loop, 5000, watchdog, NULL);
    loop_run(loop);
    assert_int_equal(w.calls, 1);
    assert_true(w.revents & POLLOUT);
    assert_int_equal(r.calls, 1);
    loop_cancel_timer(loop, wd);
    loop_mod_fd(loop, 12345, POLLIN);    /* unknown fd: warned, ignored */
    loop_del_fd(loop, s[0]);
    loop_del_fd(loop, s[1]);
    close(s[0]);
    close(s[1]);
    loop_free(loop);
}

/* Deleting another fd from a callback in the same iteration. */
typedef struct {
    int calls;
    int victim_fd;
    bool reuse;          /* close victim and reuse its fd number */
    int new_pipe[2];
    fd_rec *new_rec;
} deleter;

static void on_delete_other(loop_t *loop, int fd, short revents, void *arg)
{
    deleter *d = arg;
    char buf[16];
    (void)revents;
    d->calls++;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    if (d->calls > 1)
        return;
    loop_del_fd(loop, d->victim_fd);
    if (d->reuse) {
        close(d->victim_fd);
        int np[2];
        make_pipe(np);
        /* Put the new read end on the victim's old number. */
        if (np[0] != d->victim_fd) {
            assert_int_equal(dup3(np[0], d->victim_fd, O_CLOEXEC), d->victim_fd);
            close(np[0]);
        }
        d->new_pipe[0] = d->victim_fd;
        d->new_pipe[1] = np[1];
        /* The new pipe is empty: its watcher must not see the revents poll
         * reported for the old owner of this fd number. */
        assert_true(loop_add_fd(loop, d->victim_fd, POLLIN, on_readable, d->new_rec));
    }
}

static void stop_timer(loop_t *loop, void *arg)
{
    (void)arg;
    loop_stop(loop);
}

static void test_delete_other_fd_in_same_iteration(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    fd_rec victim = { 0 };
    deleter d = { .victim_fd = b[0] };
    /* a is added first, so it is dispatched first; both are readable. */
    assert_true(loop_add_fd(loop, a[0], POLLIN, on_delete_other, &d));
    assert_true(loop_add_fd(loop, b[0], POLLIN, on_readable, &victim));
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    loop_add_timer(loop, 30, stop_timer, NULL);
    loop_run(loop);
    assert_int_equal(d.calls, 1);
    assert_int_equal(victim.calls, 0);
    loop_del_fd(loop, a[0]);
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    loop_free(loop);
}

static void test_delete_and_readd_same_fd_number(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    int a[2], b[2];
    make_pipe(a);
    make_pipe(b);
    fd_rec old = { 0 }, fresh = { .stop = true };
    deleter d = { .victim_fd = b[0], .reuse = true, .new_rec = &fresh };
    assert_true(loop_add_fd(loop, a[0], POLLIN, on_delete_other, &d));
    assert_true(loop_add_fd(loop, b[0], POLLIN, on_readable, &old));
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    /* Run one short while: the stale revents must not reach the new
     * watcher. */
    loop_add_timer(loop, 30, stop_timer, NULL);
    loop_run(loop);
    assert_int_equal(d.calls, 1);
    assert_int_equal(old.calls, 0);
    assert_int_equal(fresh.calls, 0);
    /* The new watcher works normally afterwards. */
    assert_int_equal(write(d.new_pipe[1], "y", 1), 1);
    uint64_t wd = loop_add_timer(loop, 5000, watchdog, NULL);
    loop_run(loop);
    assert_int_equal(fresh.calls, 1);
    assert_int_equal(fresh.fd_seen, b[0]);
    loop_cancel_timer(loop, wd);
    loop_del_fd(loop, a[0]);
    loop_del_fd(loop, d.new_pipe[0]);
    close(a[0]); close(a[1]); close(b[1]);
    close(d.new_pipe[0]); close(d.new_pipe[1]);
    loop_free(loop);
}

static void test_delete_self_in_callback(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    fd_rec r = { .del_self = true };
    assert_true(loop_add_fd(loop, p[0], POLLIN, on_readable, &r));
    assert_int_equal(write(p[1], "x", 1), 1);
    loop_add_timer(loop, 30, stop_timer, NULL);
    loop_run(loop);
    assert_int_equal(r.calls, 1);
    /* Removed: the fd can be watched again. */
    assert_true(loop_add_fd(loop, p[0], POLLIN, on_readable, &r));
    loop_del_fd(loop, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}

/* ---- loop_stop, starvation, empty loop ------------------------------- */

static void test_loop_stop_and_rerun(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    recorder rec = { .loop = loop };
    timer_arg first = { &rec, 1, true }, second = { &rec, 2, true };
    loop_add_timer(loop, 10, record_timer, &first);
    loop_add_timer(loop, 200, record_timer, &second);
    int64_t t0 = mono_ms();
    loop_run(loop);
    assert_true(mono_ms() - t0 < 150);   /* returned after the first */
    assert_int_equal(rec.n, 1);
    loop_run(loop);                      /* runs again until the second */
    assert_int_equal(rec.n, 2);
    assert_int_equal(rec.order[1], 2);
    loop_free(loop);
}

typedef struct {
    int fires;
} rearm;

static void rearm_zero(loop_t *loop, void *arg)
{
    rearm *r = arg;
    if (++r->fires > 100000) {
        loop_stop(loop);
        return;
    }
    loop_add_timer(loop, 0, rearm_zero, r);
}

static void test_zero_delay_timers_do_not_starve_fds(void **state)
{
    (void)state;
    loop_t *loop = loop_new();
    int p[2];
    make_pipe(p);
    rearm r = { 0 };
    fd_rec fr = { .stop = true };
    assert_true(loop_add_fd(loop, p[0], POLLIN, on_readable, &fr));
    loop_add_timer(loop, 0, rearm_zero, &r);
    assert_int_equal(write(p[1], "x", 1), 1);
    loop_run(loop);
    assert_int_equal(fr.calls, 1);
    assert_true(r.fires <= 2);          /* once per iteration */
    loop_del_fd(loop, p[0]);
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void test_eintr_is_retried(void **state)
{
    (void)state;
    struct sigaction sa = { 0 }, old;
    sa.sa_handler = on_alarm;          /* no SA_RESTART: poll gets EINTR */
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
    struct itimerval it = { .it_interval = { 0, 5000 }, .it_value = { 0, 5000 } };
    assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);

    loop_t *loop = loop_new();
    recorder rec = { .loop = loop };
    timer_arg t = { &rec, 1, true };
    int64_t t0 = mono_ms();
    loop_add_timer(loop, 60, record_timer, &t);
    loop_run(loop);
    int64_t took = mono_ms() - t0;

    struct itimerval off = { 0 };
    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &old, NULL);
    assert_true(alarms > 0);
    assert_int_equal(rec.n, 1);
    assert_true(took >= 59);
    loop_free(loop);
}

/* Run loop_run(loop) in a child with a 3 s alarm, so that a loop which
 * never returns fails the test (killed by SIGALRM) instead of hanging it.
 * Returns the child's exit status: `result(arg)` after loop_run returned,
 * or -1 if it did not return in time. */
static int run_in_child(loop_t *loop, int (*result)(void *), void *arg, int64_t *took)
{
    int64_t t0 = mono_ms();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(3);
        loop_run(loop);
        _exit(result != NULL ? result(arg) : 0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (took != NULL)
        *took = mono_ms() - t0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int fired_count(void *arg)
{
    return ((recorder *)arg)->n;
}

static int fd_calls(void *arg)
{
    return ((fd_rec *)arg)->calls;
}

/* loop_run returns as soon as there is nothing left to wait for: no live fd
 * watcher and no pending timer, whatever the order they went away in. */
static void test_loop_returns_when_nothing_to_wait_for(void **state)
{
    (void)state;
    int64_t took = 0;

    loop_t *loop = loop_new();           /* nothing at all */
    assert_non_null(loop);
    assert_int_equal(run_in_child(loop, NULL, NULL, &took), 0);
    assert_true(took < 1000);
    loop_free(loop);

    loop = loop_new();                   /* the last timer fired, no stop */
    recorder rec = { .loop = loop };
    timer_arg a = { &rec, 1, false }, b = { &rec, 2, false };
    loop_add_timer(loop, 10, record_timer, &a);
    loop_add_timer(loop, 20, record_timer, &b);
    assert_int_equal(run_in_child(loop, fired_count, &rec, NULL), 2);
    loop_free(loop);

    loop = loop_new();                   /* the only timer was cancelled */
    recorder none = { .loop = loop };
    timer_arg c = { &none, 3, true };
    loop_cancel_timer(loop, loop_add_timer(loop, 5000, record_timer, &c));
    assert_int_equal(run_in_child(loop, fired_count, &none, &took), 0);
    assert_true(took < 1000);            /* not at the cancelled deadline */
    loop_free(loop);

    loop = loop_new();                   /* the last fd watcher deleted itself */
    int p[2];
    make_pipe(p);
    fd_rec r = { .del_self = true };
    assert_true(loop_add_fd(loop, p[0], POLLIN, on_readable, &r));
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(run_in_child(loop, fd_calls, &r, NULL), 1);
    loop_free(loop);
    close(p[0]);
    close(p[1]);

    loop_free(NULL);                     /* accepted */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_timer_ids_unique_and_loop_now_advances),
        cmocka_unit_test(test_cancel_before_run),
        cmocka_unit_test(test_cancel_from_inside_callback),
        cmocka_unit_test(test_fd_callback_on_pipe),
        cmocka_unit_test(test_mod_fd),
        cmocka_unit_test(test_delete_other_fd_in_same_iteration),
        cmocka_unit_test(test_delete_and_readd_same_fd_number),
        cmocka_unit_test(test_delete_self_in_callback),
        cmocka_unit_test(test_loop_stop_and_rerun),
        cmocka_unit_test(test_zero_delay_timers_do_not_starve_fds),
        cmocka_unit_test(test_eintr_is_retried),
        cmocka_unit_test(test_loop_returns_when_nothing_to_wait_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
