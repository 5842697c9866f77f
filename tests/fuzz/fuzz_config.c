/* fuzz_config.c - the INI reader and config_load (src/conf/config.c): every
 * input is written as drd.conf in a private directory and loaded, both as
 * the daemon's configuration and as the drill environment. A file that
 * loads is then used the way drd uses one: dumped (drd -n -v), compared
 * with itself for a restart (must need none), and every value expanded
 * as a runbook's ${section.key} would be. */
#include "fuzz.h"

#include "drd/conf/config.h"

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[128];

    (void)argc;
    (void)argv;
    fuzz_quiet();
    devnull = fopen("/dev/null", "we");
    if (devnull == NULL)
        abort();
    /* what password_file = pw and token_file = token name */
    fuzz_path(path, sizeof path, "pw");
    fuzz_write(path, "s3cret\n", 7);
    fuzz_path(path, sizeof path, "token");
    fuzz_write(path, "0123456789abcdef0123456789abcdef\n", 33);
    return 0;
}

static void use(const config_t *c)
{
    char err[256];
    char *s;

    config_dump(c, devnull);
    s = config_restart_needed(c, c);
    if (s != NULL)
        fuzz_fail("a configuration differs from itself: %s", s);
    for (size_t i = 0; i < c->n_entries; i++) {
        const struct config_entry *e = &c->entries[i];
        if (config_get(c, e->section, e->key) == NULL)
            fuzz_fail("[%s] %s was read but config_get does not find it", e->section, e->key);
        s = config_expand(c, e->value, err, sizeof err);
        free(s);
        s = config_path(c, e->value);
        free(s);
    }
    s = config_drill_dir(c);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    char path[128];
    config_errors errs = { 0 };
    config_t *c;

    fuzz_path(path, sizeof path, "drd.conf");
    fuzz_write(path, data, len);

    c = config_load(path, &errs);
    if (c != NULL) {
        if (errs.n != 0)
            fuzz_fail("config_load succeeded with %zu errors", errs.n);
        use(c);
    } else if (errs.n == 0) {
        fuzz_fail("config_load failed without saying why");
    }
    config_free(c);
    config_errors_free(&errs);

    memset(&errs, 0, sizeof errs);
    c = config_load_drill(path, &errs);
    if (c != NULL)
        use(c);
    config_free(c);
    config_errors_free(&errs);
    /* config_load registers every secret it reads, for the whole process:
     * one input's must not slow down the next ones. */
    mask_clear_secrets();
    return 0;
}
