/* mask.c - secrets out of text, by parsing. See mask.h for the forms.
 *
 * Two passes over the text: first every registered literal secret is
 * replaced (they may hold characters that would confuse the parser: '@',
 * '/', quotes), then one left-to-right scan recognises the forms secrets
 * take and replaces each value by "****". The scan copies a word it does
 * not recognise as a whole, so its cost is linear in the text. A masked
 * text masks to itself. */
#include "drd/core/mask.h"
#include "drd/core/strbuf.h"
#include "drd/core/util.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MASK "****"
#define MASK_ANYWHERE 8      /* literal secrets this long are masked inside words too */
#define MASK_WORD     4      /* this long: as whole words; shorter: only where parsed */
#define MASK_PASSES   4      /* at most this many scans of the forms */

/* ---- the registry ------------------------------------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char **g_sec;         /* longest first, so the longest match wins */
static size_t *g_len;
static size_t g_n, g_cap;

static void add_literal(const char *s, size_t len)
{
    size_t stars = 0;
    while (stars < len && s[stars] == '*')
        stars++;
    if (len == 0 || stars == len)
        return;                                   /* "****" is what masking writes */
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_n; i++)
        if (g_len[i] == len && memcmp(g_sec[i], s, len) == 0)
            goto out;
    if (g_n == g_cap) {
        size_t cap = g_cap ? g_cap * 2 : 16;
        char **ns = realloc(g_sec, cap * sizeof *ns);
        if (ns == NULL)
            goto out;
        g_sec = ns;
        size_t *nl = realloc(g_len, cap * sizeof *nl);
        if (nl == NULL)
            goto out;
        g_len = nl;
        g_cap = cap;
    }
    char *copy = strndup(s, len);
    if (copy == NULL)
        goto out;
    size_t at = 0;
    while (at < g_n && g_len[at] >= len)
        at++;
    memmove(g_sec + at + 1, g_sec + at, (g_n - at) * sizeof *g_sec);
    memmove(g_len + at + 1, g_len + at, (g_n - at) * sizeof *g_len);
    g_sec[at] = copy;
    g_len[at] = len;
    g_n++;
out:
    pthread_mutex_unlock(&g_mu);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

void mask_add_secret(const char *secret)
{
    if (secret != NULL)
        add_literal(secret, strlen(secret));
}

/* Register s[from, to) and, when it holds %XX escapes, its decoded form. */
static void add_value(const char *s, size_t from, size_t to)
{
    add_literal(s + from, to - from);
    if (memchr(s + from, '%', to - from) == NULL)
        return;
    char *dec = malloc(to - from + 1);
    if (dec == NULL)
        return;
    size_t o = 0;
    for (size_t i = from; i < to; i++) {
        if (s[i] == '%' && i + 2 < to && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            dec[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            dec[o++] = s[i];
        }
    }
    add_literal(dec, o);
    explicit_bzero(dec, o);
    free(dec);
}

void mask_clear_secrets(void)
{
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_n; i++)
        free(g_sec[i]);
    free(g_sec);
    free(g_len);
    g_sec = NULL;
    g_len = NULL;
    g_n = g_cap = 0;
    pthread_mutex_unlock(&g_mu);
}

/* ---- pass 1: registered literals ---------------------------------------- */

static bool is_word_byte(unsigned char c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

static char *mask_literals(const char *in, size_t len)
{
    strbuf b = { 0 };
    size_t plain = 0;                             /* start of the text not yet copied */
    bool first[256] = { false };                  /* first bytes of the secrets matched here */
    pthread_mutex_lock(&g_mu);
    for (size_t k = 0; k < g_n; k++)
        if (g_len[k] >= MASK_WORD)
            first[(unsigned char)g_sec[k][0]] = true;
    for (size_t i = 0; i < len && g_n > 0;) {
        size_t hit = 0;
        if (!first[(unsigned char)in[i]]) {
            i++;
            continue;
        }
        for (size_t k = 0; k < g_n && hit == 0; k++) {
            size_t sl = g_len[k];
            if (sl < MASK_WORD || sl > len - i || in[i] != g_sec[k][0] || memcmp(in + i, g_sec[k], sl) != 0)
                continue;
            if (sl < MASK_ANYWHERE && ((i > 0 && is_word_byte((unsigned char)in[i - 1]))
                                       || (i + sl < len && is_word_byte((unsigned char)in[i + sl]))))
                continue;                         /* part of a longer word */
            hit = sl;
        }
        if (hit == 0) {
            i++;
            continue;
        }
        sb_addn(&b, in + plain, i - plain);
        sb_addn(&b, MASK, 4);
        i += hit;
        plain = i;
    }
    pthread_mutex_unlock(&g_mu);
    sb_addn(&b, in + plain, len - plain);
    return sb_take(&b);
}

/* ---- pass 2: the forms -------------------------------------------------- */

static bool is_key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool ends_ci(const char *s, size_t len, const char *word)
{
    size_t wl = strlen(word);
    return len >= wl && strncasecmp(s + len - wl, word, wl) == 0;
}

static bool eq_ci(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

/* A key naming a secret: PGPASSWORD, db_password, csrf_token, --password,
 * client-secret, api_key... but not the path of one (token_file). */
static bool secret_key(const char *k, size_t len)
{
    static const struct { const char *w; size_t len; } words[] = {
        { "password", 8 }, { "passwd", 6 }, { "token", 5 }, { "secret", 6 },
        { "apikey", 6 }, { "api_key", 7 }, { "api-key", 7 },
    };
    static const char *const not_suffix[] = { "file", "path", "dir" };
    bool hit = false;
    for (size_t i = 0; i + 5 <= len && !hit; i++) {       /* the words are 5 bytes or more */
        char c = lower(k[i]);
        if (c != 'p' && c != 't' && c != 's' && c != 'a')
            continue;
        for (size_t w = 0; w < ARRAY_LEN(words) && !hit; w++) {
            size_t wl = words[w].len, j = 0;
            if (words[w].w[0] != c)
                continue;
            while (j < wl && i + j < len && lower(k[i + j]) == words[w].w[j])
                j++;
            hit = j == wl;
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(not_suffix) && hit; i++)
        if (ends_ci(k, len, not_suffix[i]))
            hit = false;
    return hit;
}

/* End of a quoted value starting at s[i] (the opening quote): just past the
 * closing one (backslash escapes, as in conninfo), or len when it is not
 * closed (*closed false). */
static size_t quoted_end(const char *s, size_t len, size_t i, bool *closed)
{
    char q = s[i];
    *closed = false;
    for (i++; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len)
            i++;
        else if (s[i] == q) {
            *closed = true;
            return i + 1;
        }
    }
    return len;
}

/* End of a bare value at s[i]: whitespace or '&' (URL query); backslash
 * escapes a character (conninfo). */
static size_t bare_end(const char *s, size_t len, size_t i)
{
    for (; i < len && !is_space(s[i]) && s[i] != '&'; i++)
        if (s[i] == '\\' && i + 1 < len && !is_space(s[i + 1]))
            i++;
    return i;
}

/* End of a shell-like word at s[i]: a quoted string or up to whitespace. */
static size_t word_end(const char *s, size_t len, size_t i)
{
    bool closed;
    if (i < len && (s[i] == '\'' || s[i] == '"'))
        return quoted_end(s, len, i, &closed);
    while (i < len && !is_space(s[i]))
        i++;
    return i;
}

static size_t skip_blanks(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

static bool url_password(const char *s, size_t len, size_t at, size_t *from, size_t *to)
{
    /* s + at is "://". The authority runs to the first '/' or line end; the
     * userinfo to its last '@'; the user to the first ':' in it. */
    size_t auth = at + 3, end = auth, last_at = 0;
    bool any = false;
    while (end < len && s[end] != '/' && s[end] != '\n' && s[end] != '\r') {
        if (s[end] == '@') {
            last_at = end;
            any = true;
        }
        end++;
    }
    if (!any)
        return false;
    for (size_t i = auth; i < last_at; i++) {
        if (s[i] == ':') {
            *from = i + 1;
            *to = last_at;
            return true;
        }
        if (is_space(s[i]) || s[i] == '@')
            return false;                         /* not a user name: no userinfo here */
    }
    return false;
}

typedef struct {
    const char *s;
    size_t len;
    strbuf *out;
    bool collect;            /* register each value found (mask_add_secrets_in) */
} scan;

/* Copy s[from, to) then "****" for the value s[to, vend); returns vend. */
static size_t emit_masked(scan *c, size_t from, size_t to, size_t vend)
{
    sb_addn(c->out, c->s + from, to - from);
    sb_addn(c->out, MASK, 4);
    if (c->collect && vend > to)
        add_value(c->s, to, vend);
    return vend;
}

/* key=value or "key": "value" after a secret key s[k, i). Returns where the
 * scan goes on, or 0 when it is not an assignment. */
static size_t assignment(scan *c, size_t k, size_t i)
{
    const char *s = c->s;
    size_t len = c->len;
    char open = k > 0 ? s[k - 1] : '\0';
    if ((open == '"' || open == '\'') && i < len && s[i] == open) {
        /* "key": "value" (JSON, Python): mask what is inside the quotes */
        size_t j = skip_blanks(s, len, i + 1);
        if (j >= len || s[j] != ':')
            return 0;
        j = skip_blanks(s, len, j + 1);
        if (j >= len || (s[j] != '"' && s[j] != '\''))
            return 0;
        bool closed;
        size_t e = quoted_end(s, len, j, &closed);
        size_t ve = closed ? e - 1 : e;
        if (ve == j + 1)
            return 0;                             /* empty */
        return emit_masked(c, k, j + 1, ve);
    }
    size_t j = skip_blanks(s, len, i);
    if (j >= len || s[j] != '=')
        return 0;
    j = skip_blanks(s, len, j + 1);
    if (j < len && (s[j] == '\'' || s[j] == '"')) {
        /* quoted: the quotes are kept ('****'), so that what follows them
         * is still read as before when the text is masked again */
        bool closed;
        size_t e = quoted_end(s, len, j, &closed);
        size_t ve = closed ? e - 1 : e;
        if (ve == j + 1)
            return 0;                             /* '' */
        return emit_masked(c, k, j + 1, ve);
    }
    size_t e = bare_end(s, len, j);
    if (e == j)
        return 0;                                 /* empty value */
    return emit_masked(c, k, j, e);
}

/* -u USER:PW, --user=USER:PW, -uUSER:PW: mask after the first ':'. */
static size_t user_option(scan *c, size_t k, size_t i)
{
    const char *s = c->s;
    size_t len = c->len, v;
    if (i - k > 2 && s[k + 1] == 'u')             /* -uUSER:PW: the key run ended at ':' */
        v = k + 2;
    else if (i < len && s[i] == '=')
        v = i + 1;
    else if (i < len && is_space(s[i]))
        v = i + 1;
    else
        return 0;
    while (v < len && (s[v] == ' ' || s[v] == '\t'))
        v++;
    size_t e = word_end(s, len, v);
    bool q = v < len && (s[v] == '\'' || s[v] == '"');
    size_t ve = q && e > v + 1 && s[e - 1] == s[v] ? e - 1 : e;
    const char *colon = memchr(s + v, ':', ve - v);
    if (colon == NULL || (size_t)(colon - s) + 1 >= ve)
        return 0;
    return emit_masked(c, k, (size_t)(colon - s) + 1, ve);
}

/* Authorization: SCHEME CREDENTIALS (or a bare credential). */
static size_t authorization(scan *c, size_t k, size_t i)
{
    const char *s = c->s;
    size_t len = c->len;
    char open = k > 0 ? s[k - 1] : '\0';
    size_t j = i;
    if ((open == '"' || open == '\'') && j < len && s[j] == open)
        j++;                                      /* "Authorization": "Basic x" */
    j = skip_blanks(s, len, j);
    if (j >= len || (s[j] != ':' && s[j] != '='))
        return 0;
    j = skip_blanks(s, len, j + 1);
    if (j < len && (s[j] == '"' || s[j] == '\''))
        j++;
    size_t w1 = j;
    while (j < len && !is_space(s[j]) && s[j] != '"' && s[j] != '\'')
        j++;
    if (j == w1)
        return 0;
    size_t w2 = skip_blanks(s, len, j), e = w2;
    while (e < len && !is_space(s[e]) && s[e] != '"' && s[e] != '\'' && s[e] != ',')
        e++;
    if (e > w2)
        return emit_masked(c, k, w2, e);          /* scheme kept, credentials masked */
    return emit_masked(c, k, w1, j);              /* a bare credential */
}

/* Bearer TOKEN anywhere. */
static size_t bearer(scan *c, size_t k, size_t i)
{
    const char *s = c->s;
    size_t len = c->len;
    if (i >= len || s[i] != ' ')
        return 0;
    size_t v = skip_blanks(s, len, i), e = v;
    while (e < len && !is_space(s[e]) && s[e] != '"' && s[e] != '\'' && s[e] != ',')
        e++;
    if (e == v)
        return 0;
    return emit_masked(c, k, v, e);
}

static char *mask_forms(const char *s, size_t len, bool collect)
{
    strbuf b = { 0 };
    scan c = { s, len, &b, collect };
    size_t plain = 0, i = 0;
    while (i < len) {
        if (s[i] == ':' && i + 2 < len && s[i + 1] == '/' && s[i + 2] == '/') {
            size_t from, to;
            if (url_password(s, len, i, &from, &to) && to > from) {
                plain = i = emit_masked(&c, plain, from, to);   /* on at the '@' */
                continue;
            }
            i += 3;
            continue;
        }
        if (!is_key_char(s[i]) || (i > 0 && is_key_char(s[i - 1]))) {
            i++;
            continue;
        }
        size_t k = i, e = i;
        while (e < len && is_key_char(s[e]))
            e++;
        size_t klen = e - k, next = 0;
        bool at_word = k == 0 || is_space(s[k - 1]) || s[k - 1] == '"' || s[k - 1] == '\'';
        sb_addn(&b, s + plain, k - plain);
        plain = k;
        if (at_word && s[k] == '-' && (eq_ci(s + k, klen, "-u") || eq_ci(s + k, klen, "--user")
                                       || eq_ci(s + k, klen, "--proxy-user")
                                       || (s[k + 1] == 'u' && klen > 2 && e < len && s[e] == ':')))
            next = user_option(&c, k, e);
        else if (ends_ci(s + k, klen, "authorization"))
            next = authorization(&c, k, e);
        else if (eq_ci(s + k, klen, "bearer"))
            next = bearer(&c, k, e);
        else if (secret_key(s + k, klen))
            next = assignment(&c, k, e);
        if (next > 0) {
            plain = i = next;
        } else {
            i = e;                                /* not a secret: copied as it is below */
        }
    }
    sb_addn(&b, s + plain, len - plain);
    return sb_take(&b);
}

char *mask_dup(const char *in)
{
    /* Masking removes characters that bound a form (a '/' ending a URL's
     * authority, the blank ending a value, the letter next to a short
     * secret, a quoted value with a space in a URL's user name hiding the
     * URL's password, "scheme://password='a b':PW@host"): the masked text
     * may show a form the original did not. Mask again until nothing
     * changes (only ever more is masked), so that masking is idempotent
     * (both found by fuzzing). */
    char *out = strdup(in != NULL ? in : "");
    for (int pass = 0; out != NULL && pass < MASK_PASSES; pass++) {
        char *lit = mask_literals(out, strlen(out));
        char *next = lit != NULL ? mask_forms(lit, strlen(lit), false) : NULL;
        free(lit);
        bool same = next != NULL && strcmp(next, out) == 0;
        free(out);
        out = next;
        if (same)
            break;
    }
    return out;
}

void mask_add_secrets_in(const char *text)
{
    if (text == NULL)
        return;
    free(mask_forms(text, strlen(text), true));
}

char *mask_secrets(const char *in, char *out, size_t n)
{
    if (n == 0)
        return out;
    char *m = mask_dup(in);
    str_copy(out, m != NULL ? m : MASK, n);
    free(m);
    return out;
}

char *mask_vformat(char *out, size_t n, const char *marker, const char *fmt, va_list ap)
{
    char *full = NULL;
    if (n == 0)
        return out;
    int len = vasprintf(&full, fmt, ap);
    char *m = len >= 0 ? mask_dup(full) : NULL;
    if (len >= 0) {
        explicit_bzero(full, (size_t)len);
        free(full);
    }
    str_trunc(out, n, m != NULL ? m : MASK, marker);
    free(m);
    return out;
}
