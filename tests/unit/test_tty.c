/* test_tty.c - tty_clean: server text made safe for a terminal (issue 11
 * item 8): C0 (with or without \n and \t), DEL, C1 and invalid UTF-8
 * replaced by visible escapes; valid UTF-8 kept; never cut inside one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "drd/core/tty.h"

static void check(const char *in, bool multiline, const char *want)
{
    char out[256];
    assert_true(tty_clean(in, multiline, out, sizeof out));
    if (strcmp(out, want) != 0)
        fail_msg("tty_clean(%s): got '%s', want '%s'", multiline ? "multi" : "single", out, want);
    assert_true(tty_is_clean(out, multiline));
    assert_int_equal(tty_is_clean(in, multiline), strcmp(in, want) == 0);
    char *d = tty_clean_dup(in, multiline);
    assert_non_null(d);
    assert_string_equal(d, want);
    free(d);
}

static void test_controls(void **state)
{
    (void)state;
    check("plain text, ünïcödé ✓ 😀", false, "plain text, ünïcödé ✓ 😀");
    check("\x1b[2K\rrequested by socket", false, "\\x1b[2K\\x0drequested by socket");
    check("a\nb\tc", false, "a\\x0ab\\x09c");
    check("a\nb\tc\r\n", true, "a\nb\tc\\x0d\n");
    check("bell\x07 del\x7f", true, "bell\\x07 del\\x7f");
    check("csi \xc2\x9b" "31m nel \xc2\x85 nbsp \xc2\xa0", false, "csi \\u009b31m nel \\u0085 nbsp \xc2\xa0");
    /* bidi overrides reorder the line; other punctuation of that block stays */
    check("by \xe2\x80\xaetekcos\xe2\x80\xac \xe2\x81\xa6x\xe2\x81\xa9 \xe2\x80\x94 \xe2\x80\x8e", false,
          "by \\u202etekcos\\u202c \\u2066x\\u2069 \xe2\x80\x94 \\u200e");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    check("\xff\xfe", false, "\\xff\\xfe");
    check("over\xc0\xaf" "long", false, "over\\xc0\\xaflong");          /* overlong '/' */
    check("\xe0\x80\xaf", false, "\\xe0\\x80\\xaf");                    /* overlong, 3 bytes */
    check("sur\xed\xa0\x80", false, "sur\\xed\\xa0\\x80");              /* U+D800 */
    check("\xf4\x90\x80\x80", false, "\\xf4\\x90\\x80\\x80");           /* > U+10FFFF */
    check("cut \xe2\x9c", false, "cut \\xe2\\x9c");                     /* truncated ✓ */
    check("\x80 lone", false, "\\x80 lone");
    /* an escape hidden as a cut sequence followed by ESC */
    check("\xe2\x1b[31m", false, "\\xe2\\x1b[31m");
}

static void test_small_buffer(void **state)
{
    (void)state;
    char out[8];
    assert_false(tty_clean("ab\x1b" "cdef", false, out, sizeof out));
    assert_string_equal(out, "ab\\x1bc");
    assert_false(tty_clean("ab\x1b" "cdef", false, out, 6));
    assert_string_equal(out, "ab");                       /* the whole escape or none */
    assert_false(tty_clean("a\xe2\x9c\x93\xe2\x9c\x93\xe2\x9c\x93", false, out, 6));
    assert_string_equal(out, "a\xe2\x9c\x93");            /* whole characters */
    assert_false(tty_clean("x", false, out, 0));
    assert_true(tty_clean("", false, out, 1));
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_controls),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
