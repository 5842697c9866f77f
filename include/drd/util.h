/* util.h - small shared helpers: clocks, durations, bounded strings,
 * secret masking, atomic file replacement, exit codes, sd_notify. */
#ifndef DRD_UTIL_H
#define DRD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Exit codes, shared by drd and drctl (DESIGN.md §3). */
#define EXIT_OK          0
#define EXIT_FAILURE_    1
#define EXIT_BAD_CONFIG  2   /* usage or configuration error */
#define EXIT_UNREACHABLE 3   /* daemon unreachable */
#define EXIT_APP_STOPPED 4   /* drctl status: a run failed or waits while the app is stopped */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* CLOCK_MONOTONIC in milliseconds: for deadlines and intervals. */
int64_t mono_ms(void);
/* CLOCK_REALTIME in milliseconds since the epoch: for records. */
int64_t wall_ms(void);

/* "250ms", "1s", "5m", "1h", "1h30m"; a bare number is seconds.
 * Returns false on anything else (empty, negative, overflow, bad unit). */
bool parse_duration_ms(const char *s, int64_t *out);
/* Format milliseconds compactly ("1.5s", "250ms", "2m"). */
void format_duration(int64_t ms, char *buf, size_t n);

/* strlcpy semantics: always NUL-terminates when n > 0, returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t n);
/* Append with truncation; returns false if truncated. */
bool str_append(char *dst, size_t n, const char *src);
bool str_eq(const char *a, const char *b);           /* NULL-safe */
char *str_trim(char *s);                              /* in place */
/* Constant-time comparison for tokens. */
bool str_ct_equal(const char *a, const char *b);

/* Mask secrets in free text: the password part of URLs
 * (scheme://user:SECRET@host -> scheme://user:****@host), "password=..."
 * key/value pairs (conninfo and URL query), and "Bearer TOKEN".
 * Output always NUL-terminated; returns out. */
char *mask_secrets(const char *in, char *out, size_t n);

/* Write data to path atomically: temp file in the same directory, fsync,
 * rename, fsync the directory. mode applied to the new file. */
bool write_file_atomic(const char *path, const void *data, size_t len,
                       mode_t mode, char *err, size_t errlen);
/* mkdir -p of the directory part of path; new directories get mode.
 * false with a message in err on failure. */
bool mkdir_parents(const char *path, mode_t mode, char *err, size_t errlen);
/* Read a whole small file (<= max bytes) into a malloc'd NUL-terminated
 * buffer. Returns NULL and sets errno on failure. */
char *read_file(const char *path, size_t max, size_t *len_out);

/* sd_notify(3) without libsystemd: send msg to $NOTIFY_SOCKET if set.
 * Returns true if sent or if no NOTIFY_SOCKET is set. */
bool sd_notify_send(const char *msg);

#endif
