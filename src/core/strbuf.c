/* strbuf.c - the growable string buffer (see include/drd/core/strbuf.h). */
#include "drd/core/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(strbuf *b)
{
    *b = (strbuf)STRBUF_INIT;
}

void sb_free(strbuf *b)
{
    free(b->s);
    *b = (strbuf)STRBUF_INIT;
}

void sb_reset(strbuf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->s != NULL)
        b->s[0] = '\0';
}

/* Room for `more` bytes and the NUL. */
static bool sb_grow(strbuf *b, size_t more)
{
    size_t cap;
    char *s;

    if (b->oom)
        return false;
    if (more > SIZE_MAX / 2 - b->len - 1) {
        b->oom = true;
        return false;
    }
    if (b->len + more + 1 <= b->cap)
        return true;
    cap = b->cap != 0 ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    s = realloc(b->s, cap);
    if (s == NULL) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

void sb_addn(strbuf *b, const char *s, size_t n)
{
    if (!sb_grow(b, n))
        return;
    if (n > 0)
        memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sb_add(strbuf *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

void sb_addc(strbuf *b, char c)
{
    sb_addn(b, &c, 1);
}

void sb_vprintf(strbuf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (!sb_grow(b, (size_t)n))
        return;
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

void sb_quote(strbuf *b, const char *s, char q, const char *esc)
{
    sb_addc(b, q);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == q)
            sb_add(b, esc);
        else
            sb_addc(b, *p);
    }
    sb_addc(b, q);
}

const char *sb_str(const strbuf *b)
{
    return b->s != NULL ? b->s : "";
}

char *sb_take(strbuf *b)
{
    char *s;

    if (!b->oom && b->s == NULL)
        sb_grow(b, 0);
    if (b->oom) {
        sb_free(b);
        return NULL;
    }
    b->s[b->len] = '\0';
    s = b->s;
    *b = (strbuf)STRBUF_INIT;
    return s;
}
