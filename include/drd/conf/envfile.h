/* envfile.h - read and rewrite one key of an app's env file (.env).
 * envfile_set replaces the file atomically (temp file in the same
 * directory, fsync, rename, fsync the directory), keeps the file's mode and
 * owner, keeps every other byte as it was (comments, order, blank lines,
 * `export KEY=...`, other keys' quoting), appends the key if absent, and
 * keeps the previous content as PATH.drd-prev. Setting the value it already
 * has changes nothing (idempotent). */
#ifndef DRD_ENVFILE_H
#define DRD_ENVFILE_H

#include <stdbool.h>
#include <stddef.h>

/* Set key=value. On failure err says why (missing file, permissions, ...)
 * and the file is unchanged. *changed (may be NULL) tells whether it wrote. */
bool envfile_set(const char *path, const char *key, const char *value, bool *changed,
                 char *err, size_t errlen);
/* Get key's value (unquoted). Returns false if the key is absent (err "")
 * or the file cannot be read (err says why). */
bool envfile_get(const char *path, const char *key, char *out, size_t n,
                 char *err, size_t errlen);

/* Whether drd may write path (see envfile.c: where a write lands). On
 * success real (may be NULL) gets the file the write would replace; on
 * failure err says which rule the path breaks. Nothing is written. */
bool envfile_check(const char *path, char *real, size_t realn, char *err, size_t errlen);

#endif
