/* crash.h - a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT)
 * leaves a trace: one stderr block naming the signal, the faulting address
 * and the thread, then the crashing thread's backtrace, written with
 * async-signal-safe calls only (backtrace_symbols_fd), before the signal's
 * default action (core dump, exit status 128+N) runs as if nothing had
 * caught it. stderr is the journal under systemd and $DRD_LOG in tests
 * (tests/lib/drd.sh symbolises the frames with addr2line).
 *
 *   drd: FATAL: signal 11 (SIGSEGV), address 0x10, thread 4242 (drd-worker)
 *   drd: backtrace (drd's frames: addr2line -f -i -p -e <drd> 0xOFFSET ...):
 *   /usr/local/bin/drd(+0x2a1f3)[0x55d0c0e2a1f3]
 *   ...
 *   drd: end of backtrace
 *
 * A frame in drd is printed as (+0xOFFSET): its offset in the executable,
 * what addr2line wants. Nothing is installed where a handler is already
 * in place (ASan, TSan: their reports are better). */
#ifndef DRD_CORE_CRASH_H
#define DRD_CORE_CRASH_H

#include <signal.h>
#include <stdbool.h>

/* Install the handlers (main thread, early: before any thread starts).
 * journal: prefix each line with <2> (critical) for the systemd journal. */
void crash_install(bool journal);

/* Remove the signals crash_install handles from set: a thread that blocks
 * signals must leave them unblocked (a fault in a thread that blocks its
 * signal kills the process without running the handler). */
void crash_sigdel(sigset_t *set);

#endif
