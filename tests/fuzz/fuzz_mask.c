/* fuzz_mask.c - secret masking (mask.c: mask_dup, mask_secrets; log.c:
 * log_mask) on any text:
 *   - masking is idempotent, and a registered secret never survives it;
 *   - valid UTF-8 stays valid UTF-8;
 *   - mask_secrets into a buffer of any size is the masked text cut on a
 *     character boundary, terminated inside the buffer (ASan sees any
 *     overrun: the buffers are exactly that size);
 *   - the input used as a URL password ("postgresql://app:INPUT@db/app",
 *     INPUT without '/' or control characters) is never shown. */
#include "fuzz.h"

#define SECRET "hunter2-Secret"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    mask_add_secret(SECRET);
    return 0;
}

static void url_password(const char *pw)
{
#define HEAD "connect to postgresql://app:"
#define TAIL "@db.example:5432/app failed"
    static const char head[] = HEAD, tail[] = TAIL;
    size_t n = strlen(pw);
    char *text, *out;

    if (n == 0 || !utf8_valid(pw, n))
        return;
    for (const char *p = pw; *p != '\0'; p++)
        if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f)
            return;
    text = malloc(sizeof head + n + sizeof tail);
    if (text == NULL)
        abort();
    snprintf(text, sizeof head + n + sizeof tail, "%s%s%s", head, pw, tail);
    out = mask_dup(text);
    if (out == NULL)
        abort();
    if (strstr(out, pw) != NULL && strstr(HEAD "****" TAIL, pw) == NULL)
        fuzz_fail("the URL password \"%s\" is shown: \"%s\"", pw, out);
    free(out);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const size_t sizes[] = { 1, 2, 3, 4, 5, 8, 16, 64, 256, 4096 };
    char *in = fuzz_str(data, len), *out, *again;
    size_t olen;
    bool valid = utf8_valid(in, strlen(in));

    out = mask_dup(in);
    if (out == NULL)
        abort();
    olen = strlen(out);
    if (strstr(out, SECRET) != NULL)
        fuzz_fail("the registered secret survives: \"%s\"", out);
    if (valid && !utf8_valid(out, olen))
        fuzz_fail("valid UTF-8 in, invalid out: \"%s\"", out);
    again = mask_dup(out);
    if (again == NULL)
        abort();
    if (strcmp(again, out) != 0)
        fuzz_fail("masking twice differs: \"%s\" then \"%s\"", out, again);

    for (size_t i = 0; i <= ARRAY_LEN(sizes); i++) {
        size_t n = i < ARRAY_LEN(sizes) ? sizes[i] : olen + 1;
        char *o = malloc(n), *b = malloc(n);
        if (o == NULL || b == NULL)
            abort();
        if (mask_secrets(in, o, n) != o)
            fuzz_fail("mask_secrets does not return its buffer");
        size_t k = strnlen(o, n);
        if (k == n)
            fuzz_fail("mask_secrets: no NUL in %zu bytes", n);
        if (k != utf8_cut(out, olen, n - 1) || memcmp(o, out, k) != 0)
            fuzz_fail("mask_secrets into %zu bytes: \"%s\", not a cut of \"%s\"", n, o, out);
        if (valid && !utf8_valid(o, k))
            fuzz_fail("mask_secrets into %zu bytes cut a character: \"%s\"", n, o);
        str_copy(b, in, n);
        log_mask(b, n);
        if (strnlen(b, n) == n)
            fuzz_fail("log_mask: no NUL in %zu bytes", n);
        if (strstr(b, SECRET) != NULL)
            fuzz_fail("log_mask left the registered secret in \"%s\"", b);
        free(o);
        free(b);
    }
    url_password(in);
    free(again);
    free(out);
    free(in);
    return 0;
}
