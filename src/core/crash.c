/* crash.c - a backtrace on stderr when drd dies of a fatal signal (see
 * include/drd/core/crash.h).
 *
 * Why a handler rather than core files: it works where drd runs (the
 * journal keeps it; a core needs a writable cwd, a core_pattern and gdb on
 * the host), and in tests on CI, whose log is all that is left. The
 * handler only calls async-signal-safe functions: write(2), backtrace()
 * (libgcc is loaded at install time, its first call would malloc) and
 * backtrace_symbols_fd(), which does not allocate. */
#include "drd/core/crash.h"

#include <errno.h>
#include <execinfo.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_FRAMES 64
#define ALT_STACK_SIZE (64 * 1024)

static const struct {
    int sig;
    const char *name;
} fatal[] = {
    { SIGSEGV, "SIGSEGV" }, { SIGBUS, "SIGBUS" }, { SIGFPE, "SIGFPE" },
    { SIGILL, "SIGILL" },   { SIGABRT, "SIGABRT" },
};

static bool g_journal;
/* the main thread's alternate stack: a stack overflow still gets a trace */
static char g_alt_stack[ALT_STACK_SIZE];

/* ---- async-signal-safe output ------------------------------------------ */

typedef struct {
    char buf[256];
    size_t len;
} line;

static void put(line *l, const char *s)
{
    while (*s != '\0' && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = *s++;
}

static void put_num(line *l, uintmax_t v, unsigned base)
{
    char d[32];
    size_t n = 0;
    do {
        d[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v > 0 && n < sizeof d);
    if (base == 16)
        put(l, "0x");
    while (n > 0 && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = d[--n];
}

static void emit(line *l)
{
    l->buf[l->len++] = '\n';
    for (size_t off = 0; off < l->len;) {
        ssize_t w = write(STDERR_FILENO, l->buf + off, l->len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    l->len = 0;
}

static void start_line(line *l)
{
    l->len = 0;
    if (g_journal)
        put(l, "<2>");
}

/* ---- the handler ------------------------------------------------------- */

static void on_fatal(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    int saved = errno;
    const char *name = "?";
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        if (fatal[i].sig == sig)
            name = fatal[i].name;
    char thread[17] = "";
    prctl(PR_GET_NAME, thread, 0, 0, 0);

    line l;
    start_line(&l);
    put(&l, "drd: FATAL: signal ");
    put_num(&l, (uintmax_t)sig, 10);
    put(&l, " (");
    put(&l, name);
    put(&l, ")");
    if (si != NULL && si->si_code <= 0) {           /* kill(2), raise(3), abort(3) */
        put(&l, ", sent by pid ");
        put_num(&l, (uintmax_t)si->si_pid, 10);
    } else if (si != NULL && sig != SIGABRT) {
        put(&l, ", address ");
        put_num(&l, (uintmax_t)(uintptr_t)si->si_addr, 16);
    }
    put(&l, ", thread ");
    put_num(&l, (uintmax_t)syscall(SYS_gettid), 10);
    put(&l, " (");
    put(&l, thread);
    put(&l, ")");
    emit(&l);
    start_line(&l);
    put(&l, "drd: backtrace (drd's frames: addr2line -f -i -p -e <drd> 0xOFFSET for each (+0xOFFSET)):");
    emit(&l);

    void *frames[MAX_FRAMES];
    int n = backtrace(frames, MAX_FRAMES);
    for (int i = 0; i < n; i++) {
        if (g_journal) {
            start_line(&l);
            if (write(STDERR_FILENO, l.buf, l.len) < 0)
                break;
        }
        backtrace_symbols_fd(&frames[i], 1, STDERR_FILENO);
    }
    start_line(&l);
    put(&l, "drd: end of backtrace");
    emit(&l);
    errno = saved;
    /* SA_RESETHAND put the default action back: re-raised, it runs now
     * (SA_NODEFER: not blocked in here); a fault would also re-fault on
     * return */
    raise(sig);
}

void crash_sigdel(sigset_t *set)
{
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigdelset(set, fatal[i].sig);
}

void crash_install(bool journal)
{
    g_journal = journal;
    /* load libgcc's unwinder now: its first use allocates */
    void *warm[2];
    backtrace(warm, 2);

    stack_t ss = { .ss_sp = g_alt_stack, .ss_size = sizeof g_alt_stack };
    sigaltstack(&ss, NULL);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        struct sigaction old, sa;
        /* a sanitizer's handler is there already: its report is better */
        if (sigaction(fatal[i].sig, NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) ||
            old.sa_handler != SIG_DFL)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fatal;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(fatal[i].sig, &sa, NULL);
    }
}
