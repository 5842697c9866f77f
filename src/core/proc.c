/* proc.c - child commands on the event loop.
 *
 * proc_spawn forks `/bin/sh -c COMMAND` into its own process group with
 * stdin on /dev/null and stdout+stderr on one pipe.  Everything the child
 * needs (argv, envp, the /dev/null fd) is prepared before fork(), because
 * drd has other threads (libmicrohttpd, curl) and between fork and exec the
 * child may only make async-signal-safe calls: no malloc, no setenv.
 *
 * The parent watches two fds on the loop:
 *   - the pipe's read end (non-blocking): output goes into a ring buffer
 *     holding the last `output_cap` bytes;
 *   - a pidfd (pidfd_open), readable once the child has exited.  Without
 *     pidfd support (kernel < 5.3) a 20 ms timer polls waitpid(WNOHANG).
 * On exit the child is reaped, the pipe drained of what is already in it,
 * and the callback runs once.  We do not wait for EOF: a background
 * grandchild (`daemon &`) may keep the write end open forever.  Note that
 * such a grandchild later writing to its stdout gets SIGPIPE once we have
 * closed our end, so commands that start long-lived background processes
 * must redirect their output (`app >app.log 2>&1 &`).
 *
 * Deadline / proc_terminate: SIGTERM to the whole group, then SIGKILL to the
 * group after the grace period.  Once the main child has exited after a
 * termination request, whatever is left of its group is SIGKILLed too: the
 * deadline means the whole command is over.  A command that exits normally
 * keeps its background processes.
 */
#include "drd/core/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define PROC_DEFAULT_CAP    65536
#define PROC_DEFAULT_GRACE  5000
#define PROC_POLL_MS        20      /* waitpid polling without pidfd */
#define PROC_READ_BUDGET    (256 * 1024)        /* bytes per output callback */
#define PROC_DRAIN_BUDGET   (4 * 1024 * 1024)   /* bytes drained after exit */

extern char **environ;

struct proc {
    loop_t *loop;
    pid_t pid;                  /* also the process group id */
    int pidfd;                  /* -1 when not used / closed */
    int outfd;                  /* pipe read end, -1 once closed */
    proc_done_cb cb;
    void *arg;

    char *ring;                 /* cap + 1 bytes (room for the final NUL) */
    size_t cap;
    size_t head;                /* next write position */
    uint64_t total;             /* bytes read so far */

    int64_t started_ms;
    int64_t grace_ms;
    uint64_t deadline_timer;
    uint64_t kill_timer;
    uint64_t poll_timer;        /* only without pidfd */

    bool terminating;           /* SIGTERM sent (deadline or proc_terminate) */
    bool timed_out;
    bool done;                  /* reaped; the callback has been / is being called */
};

/* ---- the child -------------------------------------------------------- */

static void child_write(const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, s, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        s += w;
        len -= (size_t)w;
    }
}

__attribute__((noreturn))
static void child_fail(const char *what, const char *arg, int err)
{
    child_write("drd: ");
    child_write(what);
    if (arg != NULL) {
        child_write(" ");
        child_write(arg);
    }
    child_write(": ");
    /* strerrordesc_np returns a static string: no locale, no malloc. */
    const char *desc = strerrordesc_np(err);
    child_write(desc != NULL ? desc : "error");
    child_write("\n");
    _exit(127);
}

static void close_fds_from(int lowfd)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = lowfd; fd < max; fd++)
        close(fd);
}

typedef struct {
    bool set;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int ngroups;
} run_as;

/* Runs between fork and exec: async-signal-safe calls only. */
__attribute__((noreturn))
static void child_exec(int nullfd, int outw, const char *cwd, char *const argv[],
                       char *const envp[], const sigset_t *empty, const run_as *as)
{
    setpgid(0, 0);
    /* Dispositions: handlers are reset by exec anyway, but SIG_IGN (drd
     * ignores SIGPIPE) would be inherited.  Errors for SIGKILL/SIGSTOP and
     * glibc's reserved signals are expected and harmless. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    /* drd blocks SIGTERM/SIGINT/SIGHUP for its signalfd; the command must
     * be killable. */
    sigprocmask(SIG_SETMASK, empty, NULL);

    if (dup2(nullfd, STDIN_FILENO) < 0 || dup2(outw, STDOUT_FILENO) < 0 ||
        dup2(outw, STDERR_FILENO) < 0)
        _exit(127);
    close_fds_from(3);
    /* Groups first, then the gid, then the uid (after which we could not). */
    if (as->set && (setgroups((size_t)as->ngroups, as->groups) != 0 || setgid(as->gid) != 0 ||
                    setuid(as->uid) != 0))
        child_fail("cannot switch to the configured user", "", errno);
    if (cwd != NULL && chdir(cwd) != 0)
        child_fail("cannot change directory to", cwd, errno);
    execve("/bin/sh", argv, envp);
    child_fail("cannot execute", "/bin/sh", errno);
}

/* Move fd above 0..2 (a daemon that closed its stdio gets low numbers from
 * pipe()/open(), and the child's dup2 onto 0..2 would clobber them). */
static bool fd_above_stdio(int *fd)
{
    if (*fd > STDERR_FILENO)
        return true;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    if (nfd < 0)
        return false;
    close(*fd);
    *fd = nfd;
    return true;
}

/* Look up user before fork (getpwnam is not async-signal-safe): ids,
 * supplementary groups and HOME/USER/LOGNAME entries for the environment. */
static bool resolve_user(const char *user, run_as *as, char *env[3], char *err, size_t errlen)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    int rc = getpwnam_r(user, &pw, buf, sizeof buf, &res);
    if (res == NULL) {
        snprintf(err, errlen, "unknown user %s%s%s", user, rc ? ": " : "", rc ? strerror(rc) : "");
        return false;
    }
    int n = 32;
    for (int tries = 0; tries < 4; tries++) {
        gid_t *g = realloc(as->groups, (size_t)n * sizeof *g);
        if (g == NULL) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
        as->groups = g;
        int want = n;
        if (getgrouplist(user, pw.pw_gid, as->groups, &want) >= 0) {
            as->ngroups = want;
            break;
        }
        n = want > n ? want : n * 2;
    }
    as->set = true;
    as->uid = pw.pw_uid;
    as->gid = pw.pw_gid;
    snprintf(env[0], PATH_MAX + 8, "HOME=%s", pw.pw_dir);
    snprintf(env[1], 128, "USER=%s", pw.pw_name);
    snprintf(env[2], 136, "LOGNAME=%s", pw.pw_name);
    return true;
}

/* environ minus the keys overridden by extra, then extra.  Pointers only:
 * the strings stay owned by environ / the caller until exec. */
static char **build_env(char *const *extra, char *err, size_t errlen)
{
    size_t nenv = 0, nextra = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++)
        nenv++;
    for (char *const *x = extra; x != NULL && *x != NULL; x++) {
        const char *eq = strchr(*x, '=');
        if (eq == NULL || eq == *x) {
            snprintf(err, errlen, "invalid environment entry (want KEY=VALUE)");
            return NULL;
        }
        nextra++;
    }
    char **envp = calloc(nenv + nextra + 1, sizeof(*envp));
    if (envp == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < nenv; i++) {
        const char *e = environ[i];
        const char *eq = strchr(e, '=');
        size_t klen = eq != NULL ? (size_t)(eq - e) : strlen(e);
        bool overridden = false;
        for (char *const *x = extra; x != NULL && *x != NULL && !overridden; x++)
            overridden = strncmp(*x, e, klen) == 0 && (*x)[klen] == '=';
        if (!overridden)
            envp[n++] = environ[i];
    }
    for (size_t i = 0; i < nextra; i++)
        envp[n++] = extra[i];
    envp[n] = NULL;
    return envp;
}

/* ---- output ring ------------------------------------------------------ */

static void reverse(char *a, size_t lo, size_t hi)      /* [lo, hi) */
{
    while (lo + 1 < hi) {
        char t = a[lo];
        a[lo++] = a[--hi];
        a[hi] = t;
    }
}

/* Put the ring in order (oldest byte first) in place; returns the length. */
static size_t ring_linearize(proc_t *p)
{
    if (p->total <= p->cap) {
        p->ring[p->total] = '\0';
        return (size_t)p->total;
    }
    /* Full: the oldest byte is at head.  Rotate left by head. */
    reverse(p->ring, 0, p->head);
    reverse(p->ring, p->head, p->cap);
    reverse(p->ring, 0, p->cap);
    p->head = 0;
    p->ring[p->cap] = '\0';
    return p->cap;
}

static void close_output(proc_t *p)
{
    if (p->outfd < 0)
        return;
    loop_del_fd(p->loop, p->outfd);
    close(p->outfd);
    p->outfd = -1;
}

/* Read what is available, up to about `budget` bytes (a writer as fast as
 * we are must not keep the loop here).  Closes the pipe on EOF or error. */
static void read_output(proc_t *p, size_t budget)
{
    size_t got = 0;
    while (p->outfd >= 0 && got < budget) {
        ssize_t r = read(p->outfd, p->ring + p->head, p->cap - p->head);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r < 0) {
            log_warn("proc: pid %d: reading output: %s", (int)p->pid, strerror(errno));
            close_output(p);
            return;
        }
        if (r == 0) {
            close_output(p);
            return;
        }
        got += (size_t)r;
        p->total += (uint64_t)r;
        p->head += (size_t)r;
        if (p->head == p->cap)
            p->head = 0;
    }
}

static void on_output(loop_t *loop, int fd, short revents, void *arg)
{
    (void)loop, (void)fd, (void)revents;
    proc_t *p = arg;
    read_output(p, PROC_READ_BUDGET);
}

/* ---- termination ------------------------------------------------------ */

static void signal_group(proc_t *p, int sig)
{
    /* The group outlives the main child while background members remain. */
    if (kill(-p->pid, sig) != 0 && errno != ESRCH)
        log_warn("proc: kill(-%d, %d): %s", (int)p->pid, sig, strerror(errno));
}

static void on_kill_timer(loop_t *loop, void *arg)
{
    (void)loop;
    proc_t *p = arg;
    p->kill_timer = 0;
    log_warn("proc: pid %d still running %lld ms after SIGTERM, sending SIGKILL",
             (int)p->pid, (long long)p->grace_ms);
    signal_group(p, SIGKILL);
}

static void start_termination(proc_t *p)
{
    if (p->done || p->terminating)
        return;
    p->terminating = true;
    signal_group(p, SIGTERM);
    p->kill_timer = loop_add_timer(p->loop, p->grace_ms, on_kill_timer, p);
    if (p->kill_timer == 0)             /* no timer: do not risk a hang */
        signal_group(p, SIGKILL);
}

static void on_deadline(loop_t *loop, void *arg)
{
    (void)loop;
    proc_t *p = arg;
    p->deadline_timer = 0;
    if (p->done)
        return;
    log_warn("proc: pid %d hit its deadline, terminating its process group", (int)p->pid);
    p->timed_out = true;
    start_termination(p);
}

void proc_terminate(proc_t *p)
{
    if (p == NULL)
        return;
    start_termination(p);
}

/* ---- exit ------------------------------------------------------------- */

static void stop_watching(proc_t *p)
{
    loop_cancel_timer(p->loop, p->deadline_timer);
    loop_cancel_timer(p->loop, p->kill_timer);
    loop_cancel_timer(p->loop, p->poll_timer);
    p->deadline_timer = p->kill_timer = p->poll_timer = 0;
    if (p->pidfd >= 0) {
        loop_del_fd(p->loop, p->pidfd);
        close(p->pidfd);
        p->pidfd = -1;
    }
}

/* The child has exited with wait status `status` (or unknown when
 * known == false).  Drain, report, call back.  p may be freed by the
 * callback: nothing touches it afterwards. */
static void finish(proc_t *p, bool known, int status)
{
    proc_result r;
    memset(&r, 0, sizeof r);

    p->done = true;
    int64_t now = mono_ms();
    stop_watching(p);
    if (p->terminating)
        signal_group(p, SIGKILL);       /* leftovers of a killed command */

    /* Everything the main child wrote is in the pipe by now. */
    read_output(p, PROC_DRAIN_BUDGET);
    close_output(p);

    r.timed_out = p->timed_out;
    r.duration_ms = now - p->started_ms;
    if (known && WIFEXITED(status)) {
        r.exit_code = WEXITSTATUS(status);
    } else if (known && WIFSIGNALED(status)) {
        r.exit_code = -1;
        r.term_signal = WTERMSIG(status);
    } else {
        r.exit_code = -1;
    }
    r.output_len = ring_linearize(p);
    r.output = p->ring;
    r.output_truncated = p->total > p->cap;
    log_debug("proc: pid %d finished: exit %d signal %d in %lld ms%s", (int)p->pid,
              r.exit_code, r.term_signal, (long long)r.duration_ms,
              r.timed_out ? " (timed out)" : "");
    p->cb(p->arg, &r);
}

/* Reap without blocking; true when the child was reaped (or is gone). */
static bool try_reap(proc_t *p, bool *known, int *status)
{
    for (;;) {
        pid_t w = waitpid(p->pid, status, WNOHANG);
        if (w == p->pid) {
            *known = true;
            return true;
        }
        if (w == 0)
            return false;
        if (errno == EINTR)
            continue;
        /* ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN?). */
        log_warn("proc: waitpid %d: %s", (int)p->pid, strerror(errno));
        *known = false;
        return true;
    }
}

static void on_pidfd(loop_t *loop, int fd, short revents, void *arg)
{
    (void)loop, (void)fd, (void)revents;
    proc_t *p = arg;
    bool known = false;
    int status = 0;
    if (try_reap(p, &known, &status))
        finish(p, known, status);
}

static void on_poll_timer(loop_t *loop, void *arg)
{
    proc_t *p = arg;
    bool known = false;
    int status = 0;
    p->poll_timer = 0;
    if (try_reap(p, &known, &status)) {
        finish(p, known, status);
        return;
    }
    p->poll_timer = loop_add_timer(loop, PROC_POLL_MS, on_poll_timer, p);
    if (p->poll_timer == 0)
        log_error("proc: pid %d: cannot arm the exit poll timer", (int)p->pid);
}

/* ---- public ----------------------------------------------------------- */

/* A new, not yet started proc_t (NULL on OOM). */
static proc_t *proc_new(loop_t *loop, const proc_spec *spec, proc_done_cb cb, void *arg)
{
    proc_t *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->loop = loop;
    p->pid = -1;
    p->pidfd = -1;
    p->outfd = -1;
    p->cb = cb;
    p->arg = arg;
    p->cap = spec->output_cap > 0 ? spec->output_cap : PROC_DEFAULT_CAP;
    p->grace_ms = spec->grace_ms > 0 ? spec->grace_ms : PROC_DEFAULT_GRACE;
    p->ring = malloc(p->cap + 1);
    if (p->ring == NULL) {
        free(p);
        return NULL;
    }
    p->ring[0] = '\0';
    return p;
}

/* Checked here for a clear error; the child still reports a failing
 * chdir (the directory may vanish in between) with exit status 127. */
static bool cwd_ok(const char *cwd, char *err, size_t errlen)
{
    struct stat st;

    if (cwd == NULL)
        return true;
    if (stat(cwd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", cwd, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: Not a directory", cwd);
        return false;
    }
    return true;
}

/* spec->env plus the three variables of the user to run as (*extra: the
 * malloc'd list, to free; NULL when there is no user). */
static bool user_env_add(const proc_spec *spec, char *const user_env[3], char ***extra,
                         char *err, size_t errlen)
{
    size_t n = 0;

    while (spec->env != NULL && spec->env[n] != NULL)
        n++;
    *extra = calloc(n + 4, sizeof **extra);
    if (*extra == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++)
        (*extra)[i] = spec->env[i];
    for (size_t i = 0; i < 3; i++)
        (*extra)[n + i] = user_env[i];
    return true;
}

/* The output pipe and /dev/null for stdin, all above the stdio numbers. */
static bool child_fds(int pipefd[2], int *nullfd, char *err, size_t errlen)
{
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return false;
    }
    *nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (*nullfd < 0) {
        snprintf(err, errlen, "/dev/null: %s", strerror(errno));
        return false;
    }
    if (!fd_above_stdio(&pipefd[0]) || !fd_above_stdio(&pipefd[1]) || !fd_above_stdio(nullfd)) {
        snprintf(err, errlen, "fcntl: %s", strerror(errno));
        return false;
    }
    return true;
}

/* fork + exec sh -c command in its own process group; -1 with err. */
static pid_t fork_child(const proc_spec *spec, int nullfd, int outfd, char **envp,
                        const run_as *as, char *err, size_t errlen)
{
    char *argv[] = { "sh", "-c", (char *)spec->command, NULL };
    sigset_t all, old, empty;

    sigfillset(&all);
    sigemptyset(&empty);
    /* Block everything across fork so no drd handler runs in the child
     * before it has reset the dispositions. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        child_exec(nullfd, outfd, spec->cwd, argv, envp, &empty, as);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(fork_errno));
        return -1;
    }
    /* Also from the parent, so the group exists as soon as we return (the
     * child may not have run yet).  EACCES once the child has exec'd: it
     * did it itself by then. */
    setpgid(pid, pid);
    return pid;
}

/* The started child's output, its exit (pidfd, or a waitpid poll) and its
 * deadline, watched by the loop. */
static bool watch_child(proc_t *p, const proc_spec *spec, char *err, size_t errlen)
{
    loop_t *loop = p->loop;

    if (fcntl(p->outfd, F_SETFL, O_NONBLOCK) != 0) {
        snprintf(err, errlen, "fcntl: %s", strerror(errno));
        return false;
    }
    if (!loop_add_fd(loop, p->outfd, POLLIN, on_output, p)) {
        snprintf(err, errlen, "cannot watch the output pipe");
        return false;
    }
    p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (p->pidfd >= 0) {        /* pidfds are always close-on-exec */
        if (!loop_add_fd(loop, p->pidfd, POLLIN, on_pidfd, p)) {
            snprintf(err, errlen, "cannot watch the pidfd");
            return false;
        }
    } else {
        log_debug("proc: pidfd_open: %s; polling waitpid", strerror(errno));
        p->poll_timer = loop_add_timer(loop, PROC_POLL_MS, on_poll_timer, p);
        if (p->poll_timer == 0) {
            snprintf(err, errlen, "cannot arm the exit poll timer");
            return false;
        }
    }
    if (spec->timeout_ms > 0) {
        p->deadline_timer = loop_add_timer(loop, spec->timeout_ms, on_deadline, p);
        if (p->deadline_timer == 0) {
            snprintf(err, errlen, "cannot arm the deadline timer");
            return false;
        }
    }
    return true;
}

proc_t *proc_spawn(loop_t *loop, const proc_spec *spec, proc_done_cb cb, void *arg,
                   char *err, size_t errlen)
{
    proc_t *p = NULL;
    char **envp = NULL;
    int pipefd[2] = { -1, -1 };
    int nullfd = -1;
    run_as as = { 0 };
    char home[PATH_MAX + 8], uenv[128], lenv[136];
    char *user_env[3] = { home, uenv, lenv };
    char **extra = NULL;
    bool ok = false;

    if (loop == NULL || spec == NULL || spec->command == NULL || cb == NULL) {
        snprintf(err, errlen, "invalid arguments");
        return NULL;
    }
    p = proc_new(loop, spec, cb, arg);
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!cwd_ok(spec->cwd, err, errlen))
        goto cleanup;
    if (spec->user != NULL && spec->user[0] != '\0' &&
        (!resolve_user(spec->user, &as, user_env, err, errlen) ||
         !user_env_add(spec, user_env, &extra, err, errlen)))
        goto cleanup;
    envp = build_env(extra != NULL ? extra : spec->env, err, errlen);
    if (envp == NULL || !child_fds(pipefd, &nullfd, err, errlen))
        goto cleanup;
    p->pid = fork_child(spec, nullfd, pipefd[1], envp, &as, err, errlen);
    if (p->pid < 0)
        goto cleanup;
    p->started_ms = mono_ms();
    close(pipefd[1]);
    pipefd[1] = -1;
    p->outfd = pipefd[0];
    pipefd[0] = -1;
    if (!watch_child(p, spec, err, errlen))
        goto cleanup;
    log_debug("proc: started pid %d: %s", (int)p->pid, spec->command);
    ok = true;

cleanup:
    free(envp);
    free(extra);
    free(as.groups);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (nullfd >= 0)
        close(nullfd);
    if (!ok) {
        proc_free(p);       /* kills and reaps a started child */
        p = NULL;
    }
    return p;
}

pid_t proc_pid(const proc_t *p)
{
    return p != NULL ? p->pid : -1;
}

void proc_free(proc_t *p)
{
    if (p == NULL)
        return;
    if (!p->done && p->pid > 0) {
        stop_watching(p);
        signal_group(p, SIGKILL);
        kill(p->pid, SIGKILL);          /* in case setpgid never happened */
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        log_debug("proc: pid %d killed and reaped (freed while running)", (int)p->pid);
    } else {
        stop_watching(p);
    }
    close_output(p);
    free(p->ring);
    free(p);
}
