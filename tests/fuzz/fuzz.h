/* fuzz.h - helpers shared by the libFuzzer harnesses in tests/fuzz/.
 *
 * Each harness is one fuzz_NAME.c with LLVMFuzzerTestOneInput (and maybe
 * LLVMFuzzerInitialize), linked against the library objects built with
 * ASan+UBSan+fuzzer instrumentation (make fuzz). Files a harness needs
 * live in a private temporary directory, removed at exit. A property a
 * harness checks beyond "no crash" fails through fuzz_fail(), which
 * aborts: libFuzzer reports it as a crash and saves the input. */
#ifndef DRD_FUZZ_H
#define DRD_FUZZ_H

#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

static char fuzz_dir[64];

static inline int fuzz_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    remove(p);
    return 0;
}

static inline void fuzz_cleanup(void)
{
    if (fuzz_dir[0] != '\0')
        nftw(fuzz_dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The private directory (created on first use), in /dev/shm when there
 * is one: fsync costs nothing there, and envfile_set fsyncs three times. */
static inline const char *fuzz_tmpdir(void)
{
    if (fuzz_dir[0] == '\0') {
        str_copy(fuzz_dir, access("/dev/shm", W_OK) == 0 ? "/dev/shm/drd-fuzz-XXXXXX"
                                                          : "/tmp/drd-fuzz-XXXXXX",
                 sizeof fuzz_dir);
        if (mkdtemp(fuzz_dir) == NULL) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return fuzz_dir;
}

/* dir/name into out. */
static inline void fuzz_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", fuzz_tmpdir(), name);
}

/* Replace the file at path with exactly these bytes. */
static inline void fuzz_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "we");

    if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* A NUL-terminated copy of data (a NUL inside ends the string early). */
static inline char *fuzz_str(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);

    if (s == NULL)
        abort();
    memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* A broken property: print why and abort (libFuzzer saves the input). */
__attribute__((format(printf, 1, 2), noreturn))
static inline void fuzz_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("fuzz: property broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* drd's own log lines would drown libFuzzer's; keep errors only. */
static inline void fuzz_quiet(void)
{
    log_set_level(LOG_LVL_ERROR);
}

#endif
