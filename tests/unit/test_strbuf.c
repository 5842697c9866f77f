/* The one string buffer (core/strbuf) and the one SQL quoting (pg/quote). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/strbuf.h"
#include "drd/pg/quote.h"

static void appends_and_grows(void **st)
{
    (void)st;
    strbuf b = STRBUF_INIT;
    assert_string_equal(sb_str(&b), "");
    for (int i = 0; i < 1000; i++)
        sb_printf(&b, "%03d,", i);
    assert_int_equal(b.len, 4000);
    assert_false(b.oom);
    assert_memory_equal(b.s + 3996, "999,", 5);
    sb_addn(&b, "xyz", 2);
    sb_addc(&b, '!');
    sb_add(&b, "");
    assert_int_equal(b.len, 4003);
    assert_string_equal(b.s + 4000, "xy!");
    sb_reset(&b);
    assert_string_equal(sb_str(&b), "");
    sb_add(&b, "again");
    char *s = sb_take(&b);
    assert_string_equal(s, "again");
    assert_null(b.s);
    free(s);
    sb_free(&b);
}

static void take_empty_and_oom(void **st)
{
    (void)st;
    strbuf b = STRBUF_INIT;
    char *s = sb_take(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    sb_add(&b, "partial");
    b.oom = true;                   /* an append failed earlier */
    sb_add(&b, " more");
    assert_string_equal(sb_str(&b), "partial");
    assert_null(sb_take(&b));
    assert_null(b.s);
}

static void quotes_sql(void **st)
{
    (void)st;
    strbuf b = STRBUF_INIT;
    sb_ident(&b, "we\"ird");
    sb_add(&b, " ");
    sb_literal(&b, "it's \\ ok");
    assert_string_equal(sb_str(&b), "\"we\"\"ird\" 'it''s \\ ok'");
    sb_free(&b);

    char *i = pg_ident_dup("a\"b"), *l = pg_literal_dup("");
    assert_string_equal(i, "\"a\"\"b\"");
    assert_string_equal(l, "''");
    free(i);
    free(l);

    char out[8];
    assert_true(pg_ident_buf(out, sizeof out, "abcd"));
    assert_string_equal(out, "\"abcd\"");
    /* never cut: a name that does not fit is refused */
    assert_false(pg_ident_buf(out, sizeof out, "abcdef"));
    assert_string_equal(out, "");
    assert_false(pg_literal_buf(out, sizeof out, "ab'cd"));
    assert_true(pg_literal_buf(out, sizeof out, "ab'c"));
    assert_string_equal(out, "'ab''c'");
}

static void quotes_shell(void **st)
{
    (void)st;
    strbuf b = STRBUF_INIT;
    sb_quote(&b, "it's", '\'', "'\\''");
    assert_string_equal(sb_str(&b), "'it'\\''s'");
    sb_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appends_and_grows),
        cmocka_unit_test(take_empty_and_oom),
        cmocka_unit_test(quotes_sql),
        cmocka_unit_test(quotes_shell),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
