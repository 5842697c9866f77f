/* quote.c - SQL identifiers and literals (see include/drd/pg/quote.h). */
#include "drd/pg/quote.h"

#include <stdlib.h>
#include <string.h>

#include "drd/core/util.h"

void sb_ident(strbuf *b, const char *name)
{
    sb_quote(b, name, '"', "\"\"");
}

void sb_literal(strbuf *b, const char *s)
{
    sb_quote(b, s, '\'', "''");
}

char *pg_ident_dup(const char *name)
{
    strbuf b = STRBUF_INIT;

    sb_ident(&b, name);
    return sb_take(&b);
}

char *pg_literal_dup(const char *s)
{
    strbuf b = STRBUF_INIT;

    sb_literal(&b, s);
    return sb_take(&b);
}

static bool quote_buf(char *out, size_t n, char *quoted)
{
    bool ok = quoted != NULL && strlen(quoted) < n;

    if (n > 0)
        str_copy(out, ok ? quoted : "", n);
    free(quoted);
    return ok;
}

bool pg_ident_buf(char *out, size_t n, const char *name)
{
    return quote_buf(out, n, pg_ident_dup(name));
}

bool pg_literal_buf(char *out, size_t n, const char *s)
{
    return quote_buf(out, n, pg_literal_dup(s));
}
