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
bool ini_parse(const char *path, ini_entry_fn on_entry, void *arg,
               config_errors *errs, bool *unreadable)
{
    FILE *f = NULL;
    char *buf = NULL, *section = NULL;
    size_t cap = 0, n_seen = 0;
    struct ini_seen *seen = NULL;
    size_t errs_before = errs->n;
    bool stopped = false;
    int lineno = 0;
    ssize_t len;

    *unreadable = false;
    f = fopen(path, "re");
    if (f == NULL) {
        config_error_add(errs, "%s: cannot read: %s", path, strerror(errno));
        *unreadable = true;
        return false;
    }
    errno = 0;
    while ((len = getline(&buf, &cap, f)) != -1) {
        lineno++;
        if ((size_t)len != strlen(buf)) {
            config_error_add(errs, "%s:%d: line contains a NUL byte", path, lineno);
            continue;
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        char *p = buf;
        if (lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
            p += 3;
        p = skip_space(p);
        if (*p == '\0' || *p == '#' || *p == ';')
            continue;

        if (*p == '[') {
            char *name = ini_header(p);
            if (name == NULL) {
                config_error_add(errs, "%s:%d: malformed section header (use [name])",
                                 path, lineno);
                continue;
            }
            /* JSON needs UTF-8: a step, run or event holding the name
             * could not be stored or shown. */
            if (!utf8_valid(name, strlen(name))) {
                config_error_add(errs, "%s:%d: section name is not valid UTF-8", path, lineno);
                continue;
            }
            char *copy = strdup(name);
            if (copy == NULL) {
                config_error_add(errs, "%s:%d: out of memory", path, lineno);
                stopped = true;
                break;
            }
            free(section);
            section = copy;
            if (!on_entry(arg, section, NULL, NULL, lineno)) {
                stopped = true;
                break;
            }
            continue;
        }

        char *eq = strchr(p, '=');
        if (eq == NULL) {
            config_error_add(errs, "%s:%d: line without \"=\" (expected key = value)",
                             path, lineno);
            continue;
        }
        *eq = '\0';
        char *key = trim(p);
        if (!ini_key_ok(key)) {
            config_error_add(errs, "%s:%d: bad key \"%s\" (use a-z, 0-9, _ and -)",
                             path, lineno, key);
            continue;
        }
        if (section == NULL) {
            config_error_add(errs, "%s:%d: key \"%s\" outside any [section]",
                             path, lineno, key);
            continue;
        }
        char *value = NULL;
        const char *problem = ini_value(eq + 1, &value);
        if (problem == NULL && !utf8_valid(value, strlen(value)))
            problem = "value is not valid UTF-8";
        if (problem != NULL) {
            config_error_add(errs, "%s:%d: %s", path, lineno, problem);
            continue;
        }
        const struct ini_seen *dup = NULL;
        for (size_t i = 0; i < n_seen && dup == NULL; i++)
            if (strcmp(seen[i].key, key) == 0 && strcmp(seen[i].section, section) == 0)
                dup = &seen[i];
        if (dup != NULL) {
            config_error_add(errs, "%s:%d: duplicate key \"%s\" in [%s] (first set on line %d)",
                             path, lineno, key, section, dup->line);
            continue;
        }
        struct ini_seen *grown = realloc(seen, (n_seen + 1) * sizeof *grown);
        char *s_copy = strdup(section), *k_copy = strdup(key);
        if (grown != NULL)
            seen = grown;
        if (grown == NULL || s_copy == NULL || k_copy == NULL) {
            free(s_copy);
            free(k_copy);
            config_error_add(errs, "%s:%d: out of memory", path, lineno);
            stopped = true;
            break;
        }
        seen[n_seen++] = (struct ini_seen){ s_copy, k_copy, lineno };
        if (!on_entry(arg, section, key, value, lineno)) {
            stopped = true;
            break;
        }
    }
    if (!stopped && ferror(f)) {
        int e = errno ? errno : EIO;
        config_error_add(errs, "%s: cannot read: %s", path, strerror(e));
        *unreadable = true;
    }

    for (size_t i = 0; i < n_seen; i++) {
        free(seen[i].section);
        free(seen[i].key);
    }
    free(seen);
    free(section);
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
