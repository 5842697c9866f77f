/* fuzz_envfile.c - the env-file reader and writer (src/conf/envfile.c) on a
 * temporary file. Input: "KEY\nVALUE\n" then the file's content. After
 * envfile_set(KEY, VALUE) succeeds:
 *   - envfile_get(KEY) gives VALUE back (the app sees what drd wrote);
 *   - setting it again changes nothing (idempotent);
 *   - every other key reads as before (every other byte is kept);
 *   - PATH.drd-prev holds the previous content exactly. */
#include "fuzz.h"

#include <errno.h>

#include "drd/conf/envfile.h"

#define VAL_MAX 8192

static char path[128], prev[160];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    fuzz_path(path, sizeof path, "app.env");
    snprintf(prev, sizeof prev, "%s.drd-prev", path);
    /* The harness is useless if the writer refuses its directory. */
    char err[512];
    fuzz_write(path, "A=1\n", 4);
    if (!envfile_set(path, "A", "2", NULL, err, sizeof err)) {
        fprintf(stderr, "envfile_set refuses the harness's own file: %s\n", err);
        abort();
    }
    return 0;
}

/* The keys assigned in text (start of line, optional `export `), at most
 * max of them, as NUL-terminated strings in keys[]. */
static size_t keys_of(const char *text, size_t len, char keys[][64], size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < len && n < max;) {
        size_t e = i;
        while (e < len && text[e] != '\n')
            e++;
        size_t k = i;
        while (k < e && (text[k] == ' ' || text[k] == '\t'))
            k++;
        if (e - k > 7 && memcmp(text + k, "export ", 7) == 0)
            k += 7;
        size_t s = k;
        while (k < e && k - s < 63 &&
               ((text[k] >= 'A' && text[k] <= 'Z') || (text[k] >= 'a' && text[k] <= 'z') ||
                text[k] == '_' || (k > s && text[k] >= '0' && text[k] <= '9')))
            k++;
        if (k > s) {
            memcpy(keys[n], text + s, k - s);
            keys[n][k - s] = '\0';
            n++;
        }
        i = e + 1;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static char before[16][VAL_MAX], got[VAL_MAX];
    char keys[16][64], err[512];
    bool had[16], changed = false;
    const char *nl1, *nl2;
    char *key = NULL, *value = NULL, *old = NULL;
    size_t nkeys, old_len = 0;

    nl1 = memchr(data, '\n', len);
    if (nl1 == NULL)
        return 0;
    nl2 = memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - (const char *)data));
    if (nl2 == NULL)
        return 0;
    key = fuzz_str(data, (size_t)(nl1 - (const char *)data));
    value = fuzz_str((const uint8_t *)nl1 + 1, (size_t)(nl2 - nl1 - 1));
    const char *text = nl2 + 1;
    size_t text_len = len - (size_t)(text - (const char *)data);

    unlink(prev);
    fuzz_write(path, text, text_len);
    nkeys = keys_of(text, text_len, keys, 16);
    for (size_t i = 0; i < nkeys; i++)
        had[i] = envfile_get(path, keys[i], before[i], VAL_MAX, err, sizeof err);
    envfile_get(path, key, got, sizeof got, err, sizeof err);

    if (!envfile_set(path, key, value, &changed, err, sizeof err))
        goto done;
    if (!envfile_get(path, key, got, sizeof got, err, sizeof err))
        fuzz_fail("%s set but not found again: %s", key, err);
    if (strcmp(got, value) != 0)
        fuzz_fail("%s set to \"%s\" reads back as \"%s\"", key, value, got);
    if (changed) {
        old = read_file(prev, 2 * 1024 * 1024, &old_len);
        if (old == NULL)
            fuzz_fail("no %s after a change: %s", prev, strerror(errno));
        if (old_len != text_len || memcmp(old, text, text_len) != 0)
            fuzz_fail("%s is not the previous content", prev);
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (strcmp(keys[i], key) == 0)
            continue;
        bool has = envfile_get(path, keys[i], got, sizeof got, err, sizeof err);
        if (has != had[i] || (has && strcmp(got, before[i]) != 0))
            fuzz_fail("setting %s changed %s from \"%s\" to \"%s\"", key, keys[i],
                      had[i] ? before[i] : "(absent)", has ? got : "(absent)");
    }
    if (!envfile_set(path, key, value, &changed, err, sizeof err))
        fuzz_fail("setting %s a second time failed: %s", key, err);
    if (changed)
        fuzz_fail("setting %s to the value it has rewrote the file", key);
done:
    free(old);
    free(key);
    free(value);
    return 0;
}
