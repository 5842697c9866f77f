/* loop.h - the single-threaded poll(2) event loop: fd watchers and
 * one-shot timers on CLOCK_MONOTONIC. Callbacks must never block. */
#ifndef DRD_LOOP_H
#define DRD_LOOP_H

#include <stdbool.h>
#include <poll.h>
#include <stdint.h>

typedef struct loop loop_t;
typedef void (*loop_fd_cb)(loop_t *loop, int fd, short revents, void *arg);
typedef void (*loop_timer_cb)(loop_t *loop, void *arg);

loop_t *loop_new(void);
void loop_free(loop_t *loop);                 /* accepts NULL */

/* Watch fd for events (POLLIN/POLLOUT). One watcher per fd. */
bool loop_add_fd(loop_t *loop, int fd, short events, loop_fd_cb cb, void *arg);
/* Change the events of a watched fd. */
void loop_mod_fd(loop_t *loop, int fd, short events);
/* Stop watching fd (safe to call from inside a callback, and for unknown fds). */
void loop_del_fd(loop_t *loop, int fd);

/* One-shot timer firing after delay_ms; returns an id > 0 (0 on OOM). */
uint64_t loop_add_timer(loop_t *loop, int64_t delay_ms, loop_timer_cb cb, void *arg);
/* Cancel a pending timer; unknown / fired ids are ignored. */
void loop_cancel_timer(loop_t *loop, uint64_t id);

/* Monotonic time in ms, refreshed on every loop iteration. */
int64_t loop_now(loop_t *loop);

/* Run until loop_stop(). */
void loop_run(loop_t *loop);
void loop_stop(loop_t *loop);

#endif
