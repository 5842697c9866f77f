/* ini.c - the small line-based INI reader shared by drd.conf and runbook
 * files, and the string helpers of the conf room. */
#include "config_int.h"

/* ------------------------------------------------------------------ */
/* Small string helpers                                                */

static char *skip_space(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\v' || *s == '\f' || *s == '\r')
        s++;
    return s;
}

static char *trim(char *s)
{
    s = skip_space(s);
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Levenshtein distance, for "did you mean" hints; short words only. */
size_t cfg_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t prev[64], cur[64];

    if (la >= ARRAY_LEN(prev) || lb >= ARRAY_LEN(prev))
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + (a[i - 1] != b[j - 1]) < best)
                best = prev[j - 1] + (a[i - 1] != b[j - 1]);
            cur[j] = best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* "1h", "5m", "10s", "250ms": exact, for bounds in messages and dumps. */
void cfg_format_ms(int64_t ms, char *buf, size_t n)
{
    if (ms != 0 && ms % MS_H == 0)
        snprintf(buf, n, "%" PRId64 "h", ms / MS_H);
    else if (ms != 0 && ms % MS_M == 0)
        snprintf(buf, n, "%" PRId64 "m", ms / MS_M);
    else if (ms % MS_S == 0)
        snprintf(buf, n, "%" PRId64 "s", ms / MS_S);
    else
        snprintf(buf, n, "%" PRId64 "ms", ms);
}

/* ------------------------------------------------------------------ */
/* INI reader                                                          */

struct ini_seen {
    char *section, *key;
    int line;
};

static bool ini_key_ok(const char *k)
{
    if (*k == '\0')
        return false;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
              *k == '_' || *k == '-'))
            return false;
    return true;
}

/* p points at '['. Returns the trimmed name (inside p) or NULL. */
static char *ini_header(char *p)
{
    char *end = strchr(p + 1, ']');
    if (end == NULL)
        return NULL;
    *end = '\0';
    char *name = trim(p + 1);
    if (*name == '\0' || strchr(name, '[') != NULL)
        return NULL;
    char *rest = skip_space(end + 1);
    if (*rest != '\0' && *rest != '#')
        return NULL;
    return name;
}

/* Parse the text after '=' in place. Returns NULL and sets *out, or an
 * error message. */
static const char *ini_value(char *s, char **out)
{
    s = skip_space(s);
    if (*s == '"') {
        char *w = s, *r = s + 1;
        for (;;) {
            if (*r == '\0')
                return "unterminated quote";
            if (*r == '"')
                break;
            if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
                r++;
            *w++ = *r++;
        }
        *w = '\0';
        r = skip_space(r + 1);
        if (*r != '\0' && *r != '#')
            return "unexpected text after the closing quote";
        *out = s;
        return NULL;
    }
    for (char *q = s; *q; q++) {
        if (*q == '#' && (q == s || isspace((unsigned char)q[-1]))) {
            *q = '\0';
            break;
        }
    }
    *out = trim(s);
    return NULL;
}

/* The reader proper. *unreadable tells "could not read the file" apart
 * from syntax errors, which config_load needs. */
/* One file being read. */
typedef struct {
    const char *path;
    ini_entry_fn on_entry;
    void *arg;
    config_errors *errs;
    char *section;               /* the current [section], or NULL */
    struct ini_seen *seen;       /* keys so far, for duplicates */
    size_t n_seen;
    int lineno;
} ini_state;

/* A [section] line. false: stop reading. */
static bool ini_section_line(ini_state *st, char *p)
{
    char *name = ini_header(p), *copy;

    if (name == NULL) {
        config_error_add(st->errs, "%s:%d: malformed section header (use [name])", st->path, st->lineno);
        return true;
    }
    /* JSON needs UTF-8: a step, run or event holding the name could not
     * be stored or shown. */
    if (!utf8_valid(name, strlen(name))) {
        config_error_add(st->errs, "%s:%d: section name is not valid UTF-8", st->path, st->lineno);
        return true;
    }
    copy = strdup(name);
    if (copy == NULL) {
        config_error_add(st->errs, "%s:%d: out of memory", st->path, st->lineno);
        return false;
    }
    free(st->section);
    st->section = copy;
    return st->on_entry(st->arg, st->section, NULL, NULL, st->lineno);
}

/* Remember key of the current section: 1 new, 0 a duplicate (reported),
 * -1 out of memory (reported). */
static int ini_remember(ini_state *st, const char *key)
{
    for (size_t i = 0; i < st->n_seen; i++)
        if (strcmp(st->seen[i].key, key) == 0 && strcmp(st->seen[i].section, st->section) == 0) {
            config_error_add(st->errs, "%s:%d: duplicate key \"%s\" in [%s] (first set on line %d)",
                             st->path, st->lineno, key, st->section, st->seen[i].line);
            return 0;
        }
    struct ini_seen *grown = realloc(st->seen, (st->n_seen + 1) * sizeof *grown);
    char *s_copy = strdup(st->section), *k_copy = strdup(key);
    if (grown != NULL)
        st->seen = grown;
    if (grown == NULL || s_copy == NULL || k_copy == NULL) {
        free(s_copy);
        free(k_copy);
        config_error_add(st->errs, "%s:%d: out of memory", st->path, st->lineno);
        return -1;
    }
    st->seen[st->n_seen++] = (struct ini_seen){ s_copy, k_copy, st->lineno };
    return 1;
}

/* A key = value line. false: stop reading. */
static bool ini_key_line(ini_state *st, char *p)
{
    char *eq = strchr(p, '='), *key, *value = NULL;
    const char *problem;
    int r;

    if (eq == NULL) {
        config_error_add(st->errs, "%s:%d: line without \"=\" (expected key = value)", st->path, st->lineno);
        return true;
    }
    *eq = '\0';
    key = trim(p);
    if (!ini_key_ok(key)) {
        config_error_add(st->errs, "%s:%d: bad key \"%s\" (use a-z, 0-9, _ and -)", st->path, st->lineno, key);
        return true;
    }
    if (st->section == NULL) {
        config_error_add(st->errs, "%s:%d: key \"%s\" outside any [section]", st->path, st->lineno, key);
        return true;
    }
    problem = ini_value(eq + 1, &value);
    if (problem == NULL && !utf8_valid(value, strlen(value)))
        problem = "value is not valid UTF-8";
    if (problem != NULL) {
        config_error_add(st->errs, "%s:%d: %s", st->path, st->lineno, problem);
        return true;
    }
    if ((r = ini_remember(st, key)) <= 0)
        return r == 0;
    return st->on_entry(st->arg, st->section, key, value, st->lineno);
}

bool ini_parse(const char *path, ini_entry_fn on_entry, void *arg,
               config_errors *errs, bool *unreadable)
{
    ini_state st = { .path = path, .on_entry = on_entry, .arg = arg, .errs = errs };
    FILE *f = NULL;
    char *buf = NULL;
    size_t cap = 0;
    size_t errs_before = errs->n;
    bool stopped = false;
    ssize_t len;

    *unreadable = false;
    f = fopen(path, "re");
    if (f == NULL) {
        config_error_add(errs, "%s: cannot read: %s", path, strerror(errno));
        *unreadable = true;
        return false;
    }
    errno = 0;
    while (!stopped && (len = getline(&buf, &cap, f)) != -1) {
        st.lineno++;
        if ((size_t)len != strlen(buf)) {
            config_error_add(errs, "%s:%d: line contains a NUL byte", path, st.lineno);
            continue;
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        char *p = buf;
        if (st.lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
            p += 3;
        p = skip_space(p);
        if (*p == '\0' || *p == '#' || *p == ';')
            continue;
        stopped = !(*p == '[' ? ini_section_line(&st, p) : ini_key_line(&st, p));
    }
    if (!stopped && ferror(f)) {
        int e = errno ? errno : EIO;
        config_error_add(errs, "%s: cannot read: %s", path, strerror(e));
        *unreadable = true;
    }

    for (size_t i = 0; i < st.n_seen; i++) {
        free(st.seen[i].section);
        free(st.seen[i].key);
    }
    free(st.seen);
    free(st.section);
    free(buf);
    fclose(f);
    return !stopped && !*unreadable && errs->n == errs_before;
}

bool ini_read(const char *path,
              bool (*on_entry)(void *arg, const char *section, const char *key,
                               const char *value, int line),
              void *arg, config_errors *errs)
{
    bool unreadable;
    return ini_parse(path, on_entry, arg, errs, &unreadable);
}
