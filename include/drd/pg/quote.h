/* quote.h - THE SQL quoting: identifiers ("name", quotes doubled: any
 * name) and literals ('text', quotes doubled; standard_conforming_strings
 * = on, so backslashes are plain). Never cut: a quoted name that does not
 * fit is an error, not a different name. */
#ifndef DRD_PG_QUOTE_H
#define DRD_PG_QUOTE_H

#include <stdbool.h>
#include <stddef.h>

#include "drd/core/strbuf.h"

/* Appended to a strbuf. */
void sb_ident(strbuf *b, const char *name);
void sb_literal(strbuf *b, const char *s);
/* malloc'd; NULL on OOM. */
char *pg_ident_dup(const char *name);
char *pg_literal_dup(const char *s);
/* Into out[n]; false (out = "") when the quoted text does not fit. */
bool pg_ident_buf(char *out, size_t n, const char *name);
bool pg_literal_buf(char *out, size_t n, const char *s);

#endif
