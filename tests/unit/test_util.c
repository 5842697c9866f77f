/* Durations, bounded strings, secret masking, atomic file writes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

static void durations_valid(void **st)
{
    (void)st;
    static const struct { const char *in; int64_t ms; } cases[] = {
        { "250ms", 250 }, { "1s", 1000 }, { "5m", 300000 }, { "1h", 3600000 },
        { "2d", 172800000 }, { "1h30m", 5400000 }, { "1m30s", 90000 }, { "10", 10000 },
        { " 3s ", 3000 }, { "0s", 0 }, { "1s500ms", 1500 },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int64_t ms = -1;
        assert_true(parse_duration_ms(cases[i].in, &ms));
        assert_int_equal(ms, cases[i].ms);
    }
}

static void durations_invalid(void **st)
{
    (void)st;
    static const char *const bad[] = {
        "", " ", "s", "-1s", "1.5s", "5 minutes", "1x", "1hh", "1h 30m", "abc",
        "99999999999999999999s", "9223372036854775807h", "1h30", NULL,
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int64_t ms = 42;
        assert_false(parse_duration_ms(bad[i], &ms));
        assert_int_equal(ms, 42);
    }
}

static void duration_format(void **st)
{
    (void)st;
    char b[32];
    format_duration(250, b, sizeof b);
    assert_string_equal(b, "250ms");
    format_duration(1500, b, sizeof b);
    assert_string_equal(b, "1.5s");
    format_duration(90000, b, sizeof b);
    assert_string_equal(b, "1m30s");
}

static void bounded_strings(void **st)
{
    (void)st;
    char b[8];
    assert_int_equal(str_copy(b, "hello world", sizeof b), 11);
    assert_string_equal(b, "hello w");
    str_copy(b, "ab", sizeof b);
    assert_true(str_append(b, sizeof b, "cd"));
    assert_string_equal(b, "abcd");
    assert_false(str_append(b, sizeof b, "efghij"));
    assert_string_equal(b, "abcdefg");
    assert_true(str_ct_equal("token", "token"));
    assert_false(str_ct_equal("token", "tokem"));
    assert_false(str_ct_equal("tok", "token"));
    assert_false(str_ct_equal("token-longer", "token"));
    assert_true(str_eq(NULL, NULL));
    assert_false(str_eq("a", NULL));
    char t[] = "  x y \n";
    assert_string_equal(str_trim(t), "x y");
}

static void masking(void **st)
{
    (void)st;
    static const struct { const char *in, *out; } cases[] = {
        { "postgresql://app:s3cret@db.example.com:5432/postgres",
          "postgresql://app:****@db.example.com:5432/postgres" },
        { "postgresql://monitor@db/x?sslmode=require", "postgresql://monitor@db/x?sslmode=require" },
        { "postgresql://u:p%40ss@h/db?password=other&sslmode=require",
          "postgresql://u:****@h/db?password=****&sslmode=require" },
        { "host=h user=u password=hunter2 dbname=d", "host=h user=u password=**** dbname=d" },
        { "host=h password='a b\\' c' dbname=d", "host=h password='****' dbname=d" },
        { "Authorization: Bearer abc.def", "Authorization: Bearer ****" },
        { "https://hooks.example.com/x?token=zzz", "https://hooks.example.com/x?token=****" },
        { "https://user:pw@hooks.example.com/", "https://user:****@hooks.example.com/" },
        { "no secrets here: a=b", "no secrets here: a=b" },
        { "mypassword=akey", "mypassword=****" },
        { "connect to \"postgresql://a:b@h/d\" failed", "connect to \"postgresql://a:****@h/d\" failed" },
    };
    char out[256];
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        assert_string_equal(mask_secrets(cases[i].in, out, sizeof out), cases[i].out);
    /* truncation keeps a terminated prefix and never leaks a partial secret */
    char small[24];
    mask_secrets("postgresql://app:s3cret@db.example.com", small, sizeof small);
    assert_null(strstr(small, "s3c"));
    assert_int_equal(strlen(small), sizeof small - 1);
}

static void log_masks_registered_secrets(void **st)
{
    (void)st;
    log_add_secret("tok-123456");
    char buf[128] = "token file says tok-123456 and tok-123456";
    log_mask(buf, sizeof buf);
    assert_string_equal(buf, "token file says **** and ****");
    log_clear_secrets();
}

static void atomic_write(void **st)
{
    (void)st;
    char dir[] = "/tmp/drd-util-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[256];
    snprintf(path, sizeof path, "%s/f.env", dir);
    assert_true(write_file_atomic(path, "A=1\n", 4, 0640, err, sizeof err));
    assert_true(write_file_atomic(path, "A=2\nB=3\n", 8, 0640, err, sizeof err));
    size_t len;
    char *got = read_file(path, 1024, &len);
    assert_non_null(got);
    assert_int_equal(len, 8);
    assert_string_equal(got, "A=2\nB=3\n");
    free(got);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0640);
    /* no temp files left behind */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    /* an unwritable place is a clear error */
    assert_false(write_file_atomic("/nonexistent-dir/x", "x", 1, 0600, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent-dir/x"));
    /* read_file size cap */
    assert_null(read_file(path, 4, NULL));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(durations_valid),
        cmocka_unit_test(durations_invalid),
        cmocka_unit_test(duration_format),
        cmocka_unit_test(bounded_strings),
        cmocka_unit_test(masking),
        cmocka_unit_test(log_masks_registered_secrets),
        cmocka_unit_test(atomic_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
