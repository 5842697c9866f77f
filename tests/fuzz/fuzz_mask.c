/* fuzz_mask.c - secret masking (util.c mask_secrets, log.c log_mask), on
 * any text, into buffers of every size that matters: the output is always
 * terminated inside its buffer, and a registered secret never survives
 * log_mask. */
#include "fuzz.h"

#define SECRET "hunter2-Secret"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    log_add_secret(SECRET);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static const size_t sizes[] = { 1, 2, 5, 8, 16, 64, 256, 512, 4096 };
    char *in = fuzz_str(data, len);
    size_t big = 4 * len + 16;
    char *out = malloc(big);

    if (out == NULL)
        abort();
    /* A buffer exactly as large as asked for: ASan sees any overrun. */
    for (size_t i = 0; i <= ARRAY_LEN(sizes); i++) {
        size_t n = i < ARRAY_LEN(sizes) ? sizes[i] : big;
        char *o = malloc(n);
        if (o == NULL)
            abort();
        if (mask_secrets(in, o, n) != o)
            fuzz_fail("mask_secrets does not return its buffer");
        if (memchr(o, '\0', n) == NULL)
            fuzz_fail("mask_secrets: no NUL in %zu bytes", n);
        free(o);
    }
    mask_secrets(in, out, big);

    for (size_t i = 0; i <= ARRAY_LEN(sizes); i++) {
        size_t n = i < ARRAY_LEN(sizes) ? sizes[i] : len + 1;
        char *b = malloc(n);
        if (b == NULL)
            abort();
        str_copy(b, in, n);
        log_mask(b, n);
        if (memchr(b, '\0', n) == NULL)
            fuzz_fail("log_mask: no NUL in %zu bytes", n);
        if (strstr(b, SECRET) != NULL)
            fuzz_fail("log_mask left the registered secret in \"%s\"", b);
        free(b);
    }
    free(out);
    free(in);
    return 0;
}
