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
/* A size: "5GB", "500 MB", "1.5GiB", "1024" (bytes). KB/MB/GB/TB are
 * powers of 1000, KiB/MiB/GiB/TiB of 1024 (case-insensitive, B optional).
 * false on anything else (negative, overflow, bad unit). */
bool parse_bytes(const char *s, int64_t *out);
/* "4.8 GB", "512 kB", "12 B" (powers of 1000). */
void format_bytes(int64_t bytes, char *buf, size_t n);
/* Format milliseconds compactly ("1.5s", "250ms", "2m"). */
void format_duration(int64_t ms, char *buf, size_t n);

/* strlcpy semantics: always NUL-terminates when n > 0, returns strlen(src)
 * (>= n: it was cut). A cut is made on a UTF-8 character boundary:
 * str_trunc(dst, n, src, NULL). */
size_t str_copy(char *dst, const char *src, size_t n);
/* Zero a malloc'd secret (a password, a conninfo holding one) and free
 * it; accepts NULL. */
void str_free_secret(char *s);
/* THE truncation helper for text that is stored or sent: copy src into dst
 * (size n), cut on a UTF-8 character boundary when it does not fit; with
 * `marker` (e.g. "…"), a cut text ends with it (within n). Returns
 * strlen(src): >= n means it was cut. Mask before, never after. */
size_t str_trunc(char *dst, size_t n, const char *src, const char *marker);

/* UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const char *s, size_t len);
/* The largest k <= max (and <= len) such that s[0..k) does not end inside
 * a character: where to cut the head of s to fit max bytes. */
size_t utf8_cut(const char *s, size_t len, size_t max);
/* The smallest offset k >= len - max at which a character starts: s + k
 * is the last (at most) max bytes of s, starting on a boundary. */
size_t utf8_tail(const char *s, size_t len, size_t max);
/* A malloc'd, valid UTF-8 copy of s[0..len): each invalid byte becomes
 * U+FFFD, a sequence cut at the very end is dropped. NULL on OOM. */
char *utf8_dup_valid(const char *s, size_t len);
/* The same in place, bounded by n (the buffer's size): cut on a boundary
 * if the replacements make it longer. */
void utf8_fix(char *s, size_t n);
/* A JSON string of s that jansson always accepts (invalid UTF-8 replaced
 * as by utf8_dup_valid); json null for NULL. NULL only on OOM. Every JSON
 * builder uses it for free text, so no view loses an object to its bytes. */
struct json_t;
struct json_t *json_text(const char *s);
/* Append with truncation; returns false if truncated. */
bool str_append(char *dst, size_t n, const char *src);
bool str_eq(const char *a, const char *b);           /* NULL-safe */
char *str_trim(char *s);                              /* in place */
/* "schema.name" matches one of the comma-separated fnmatch patterns of
 * list ([sync] exclude); NULL or "" matches nothing. */
bool table_excluded(const char *list, const char *schema, const char *name);
/* Constant-time comparison for tokens. */
bool str_ct_equal(const char *a, const char *b);

/* mask_secrets(in, out, n) and the rest of the masking: drd/mask.h. */
#include "drd/core/mask.h"

/* write_file_atomic and atomic_file_replace_at: drd/core/atomic_file.h. */
#include "drd/core/atomic_file.h"
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
