/* tty.h - text from elsewhere (the daemon's API, its state file) made safe
 * to print on a terminal.  A reason, a step's output or an error message
 * may carry escape sequences that erase or recolour lines (ESC [ 2 K, \r,
 * 8-bit CSI) and so fake what drctl shows; tty_clean replaces every byte a
 * terminal would interpret by a visible escape. */
#ifndef DRD_TTY_H
#define DRD_TTY_H

#include <stdbool.h>
#include <stddef.h>

/* Copy in to out (n bytes, always NUL-terminated when n > 0, never cut
 * inside a character or an escape), replacing C0 controls (all of them, or
 * all but \n and \t when multiline), DEL, C1 controls (U+0080..U+009F)
 * and bidirectional formatting characters (U+200E/F, U+202A..E,
 * U+2066..9, which reorder the line) by \xHH or \uHHHH, and each byte of invalid UTF-8 (overlong forms,
 * surrogates, beyond U+10FFFF, cut sequences) by \xHH.  Valid UTF-8 text
 * without controls is copied unchanged.  Returns false if out was too
 * small (out then holds a clean prefix). */
bool tty_clean(const char *in, bool multiline, char *out, size_t n);
/* The same into a new string (NULL on OOM); free() it. */
char *tty_clean_dup(const char *in, bool multiline);
/* Whether in needs no change. */
bool tty_is_clean(const char *in, bool multiline);

#endif
