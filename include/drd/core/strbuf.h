/* strbuf.h - THE growable string buffer (SQL text, reports, metrics, env
 * files, masked text): appends never fail loudly; an allocation failure
 * sets `oom` and every later append does nothing, so a builder checks once
 * at the end. The text is always NUL-terminated once anything was added.
 *
 *   strbuf b = STRBUF_INIT;
 *   sb_add(&b, "SELECT "); sb_printf(&b, "%d", n);
 *   char *s = sb_take(&b);   // NULL if an append failed
 */
#ifndef DRD_CORE_STRBUF_H
#define DRD_CORE_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct strbuf {
    char *s;                 /* NULL until the first append */
    size_t len, cap;
    bool oom;                /* an append failed: the text is incomplete */
} strbuf;

#define STRBUF_INIT { 0 }

void sb_init(strbuf *b);
void sb_free(strbuf *b);
/* Empty again, keeping the memory (and clearing oom). */
void sb_reset(strbuf *b);
void sb_addn(strbuf *b, const char *s, size_t n);
void sb_add(strbuf *b, const char *s);
void sb_addc(strbuf *b, char c);
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(strbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* s surrounded by q, each q inside replaced by esc (e.g. "''" for SQL,
 * "'\\''" for a shell). */
void sb_quote(strbuf *b, const char *s, char q, const char *esc);
/* The text so far ("" before the first append). */
const char *sb_str(const strbuf *b);
/* The malloc'd text ("" when nothing was added), the buffer left empty;
 * NULL (and the buffer freed) if an append failed or on OOM. */
char *sb_take(strbuf *b);

#endif
