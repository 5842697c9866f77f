/* proc.h - child commands on the event loop: `/bin/sh -c COMMAND` in its
 * own process group, stdin from /dev/null, stdout+stderr captured (the
 * last `output_cap` bytes kept), exit noticed through a pidfd, a hard
 * deadline (SIGTERM to the group, SIGKILL after `grace_ms`). Never blocks
 * the loop. */
#ifndef DRD_PROC_H
#define DRD_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "drd/core/loop.h"

typedef struct {
    const char *command;       /* run with /bin/sh -c */
    char *const *env;          /* extra "K=V" entries added to drd's environment, NULL-terminated; may be NULL */
    int64_t timeout_ms;        /* 0 = no deadline */
    int64_t grace_ms;          /* between SIGTERM and SIGKILL; 0 -> 5000 */
    const char *cwd;           /* NULL = inherit */
    const char *user;          /* run as this user (its groups, HOME, USER, LOGNAME); NULL = drd's own */
    size_t output_cap;         /* 0 -> 65536 */
} proc_spec;

typedef struct {
    bool timed_out;            /* the deadline was hit and the group was killed */
    int exit_code;             /* 0..255 when exited normally, -1 when killed by a signal */
    int term_signal;           /* the signal when exit_code == -1 */
    int64_t duration_ms;
    const char *output;        /* last output_cap bytes of stdout+stderr, NUL-terminated; valid during the callback */
    size_t output_len;
    bool output_truncated;     /* earlier output was dropped */
} proc_result;

typedef struct proc proc_t;
typedef void (*proc_done_cb)(void *arg, const proc_result *r);

/* Start the command. NULL with a message in err if it could not start
 * (fork/pipe failure). The callback runs once, from the loop, after the
 * process has exited and its output has been drained; it may call proc_free. */
proc_t *proc_spawn(loop_t *loop, const proc_spec *spec, proc_done_cb cb, void *arg,
                   char *err, size_t errlen);
pid_t proc_pid(const proc_t *p);
/* Ask it to stop now (SIGTERM to the group, SIGKILL after grace). */
void proc_terminate(proc_t *p);
/* Free; if still running, the group is killed with SIGKILL and reaped
 * without calling the callback. Accepts NULL. */
void proc_free(proc_t *p);

#endif
