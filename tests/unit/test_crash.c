/* A fatal signal leaves a backtrace (core/crash.c), also when it happens
 * on a worker thread (core/worker.c leaves the fatal signals unblocked
 * there: a blocked SIGSEGV kills the process without the handler). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drd/core/crash.h"
#include "drd/core/worker.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1                /* the sanitizer's handler stays: its report */
#else
#define SANITIZED 0
#endif

typedef struct {
    bool segv_blocked, abrt_blocked, term_blocked, hup_blocked;
    char name[32];
} mask_seen;

static void *look_at_mask(void *arg)
{
    mask_seen *m = arg;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    m->segv_blocked = sigismember(&cur, SIGSEGV) == 1;
    m->abrt_blocked = sigismember(&cur, SIGABRT) == 1;
    m->term_blocked = sigismember(&cur, SIGTERM) == 1;
    m->hup_blocked = sigismember(&cur, SIGHUP) == 1;
    pthread_getname_np(pthread_self(), m->name, sizeof m->name);
    return NULL;
}

/* The loop's signals stay with the loop; the fatal ones reach the handler. */
static void worker_mask(void **st)
{
    (void)st;
    mask_seen m = { 0 };
    pthread_t t;
    assert_true(worker_spawn(&t, false, look_at_mask, &m));
    pthread_join(t, NULL);
    assert_true(m.term_blocked);
    assert_true(m.hup_blocked);
    assert_false(m.segv_blocked);
    assert_false(m.abrt_blocked);
    assert_string_equal(m.name, "drd-worker");
}

static void *fault(void *arg)
{
    (void)arg;
    volatile uintptr_t bad = 16;     /* not a constant NULL: the compiler would trap (SIGILL) */
    *(volatile int *)bad = 1;
    return NULL;
}

/* A child process faults on a worker thread; its stderr is read back. */
static void crash_on_worker(void **st)
{
    (void)st;
    if (SANITIZED)
        return;                      /* the sanitizer reports it (and skip() is a "not ok" in TAP) */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[0]);
        close(pfd[1]);
        /* cmocka catches signals itself: drd starts with the defaults */
        int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        crash_install(false);
        pthread_t t;
        if (worker_spawn(&t, false, fault, NULL))
            pthread_join(t, NULL);
        _exit(0);                    /* survived: the test fails below */
    }
    close(pfd[1]);
    char out[16384];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof out - 1 && (n = read(pfd[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(pfd[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* the default action ran after the trace: killed by the signal */
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
    if (strstr(out, "drd: FATAL: signal 11 (SIGSEGV), address 0x10, thread ") == NULL ||
        strstr(out, "(drd-worker)") == NULL || strstr(out, "drd: end of backtrace") == NULL)
        fail_msg("no crash trace on stderr:\n%s", out);
    /* at least one frame: an address in brackets */
    assert_non_null(strstr(out, ")[0x"));
}

static void other_handler(int sig)
{
    (void)sig;
}

/* A handler already in place (a sanitizer's) is left alone. */
static void keeps_a_handler(void **st)
{
    (void)st;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sigaction sa = { .sa_handler = other_handler }, now;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, NULL);
        crash_install(false);
        sigaction(SIGSEGV, NULL, &now);
        _exit(!(now.sa_flags & SA_SIGINFO) && now.sa_handler == other_handler ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(worker_mask),
        cmocka_unit_test(keeps_a_handler),
        cmocka_unit_test(crash_on_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
