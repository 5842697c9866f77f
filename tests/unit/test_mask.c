/* test_mask.c - masking by parsing (mask.c) and the UTF-8 truncation
 * helpers (util.c): each form of secret, ordinary words left alone,
 * idempotence, the registry, and multi-byte text near every cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "drd/core/log.h"
#include "drd/core/mask.h"
#include "drd/core/util.h"

static void check_mask(const char *in, const char *want)
{
    char *got = mask_dup(in);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        print_error("mask(%s)\n  got  %s\n  want %s\n", in, got, want);
    assert_string_equal(got, want);
    /* idempotent */
    char *again = mask_dup(got);
    assert_string_equal(again, got);
    free(again);
    free(got);
}

static void urls(void **st)
{
    (void)st;
    check_mask("postgresql://app:s3cret@db.example.com:5432/postgres",
               "postgresql://app:****@db.example.com:5432/postgres");
    check_mask("postgresql://monitor@db/x?sslmode=require", "postgresql://monitor@db/x?sslmode=require");
    /* libpq ends the password only at the '@': ?, #, space, quotes inside */
    check_mask("postgresql://app:Sx?Q7#k Lm9@127.0.0.1:5432/appdb?application_name=a",
               "postgresql://app:****@127.0.0.1:5432/appdb?application_name=a");
    check_mask("url = postgresql://u:a\"b'c@h/d", "url = postgresql://u:****@h/d");
    /* up to the LAST '@' before the host */
    check_mask("postgresql://u:p@ss@word@h:5432/db", "postgresql://u:****@h:5432/db");
    check_mask("DATABASE_URL=postgres://u:pw@h1:1,h2:2/db\nNEXT=1", "DATABASE_URL=postgres://u:****@h1:1,h2:2/db\nNEXT=1");
    check_mask("https://user:pw@hooks.example.com/", "https://user:****@hooks.example.com/");
    check_mask("connect to \"postgresql://a:b@h/d\" failed", "connect to \"postgresql://a:****@h/d\" failed");
    check_mask("postgresql://u:p%40ss@h/db?password=other&sslmode=require",
               "postgresql://u:****@h/db?password=****&sslmode=require");
    check_mask("https://hooks.example.com/x?token=zzz", "https://hooks.example.com/x?token=****");
    /* two URLs on a line, ports without userinfo */
    check_mask("a://u:1@h/ and b://v:2@k/", "a://u:****@h/ and b://v:****@k/");
    check_mask("http://127.0.0.1:8080/health answered 200", "http://127.0.0.1:8080/health answered 200");
}

static void conninfo_and_assignments(void **st)
{
    (void)st;
    check_mask("host=h user=u password=hunter2 dbname=d", "host=h user=u password=**** dbname=d");
    check_mask("host=h password='a b\\' c' dbname=d", "host=h password='****' dbname=d");
    check_mask("host=h password = 'x y' dbname=d", "host=h password = '****' dbname=d");
    check_mask("PGPASSWORD=x psql -h h", "PGPASSWORD=**** psql -h h");
    check_mask("export DB_PASSWORD=\"db sekret\"; run", "export DB_PASSWORD=\"****\"; run");
    check_mask("db_password='a b c' next", "db_password='****' next");
    check_mask("API_TOKEN=abc GITHUB_SECRET=def Client-Secret=ghi", "API_TOKEN=**** GITHUB_SECRET=**** Client-Secret=****");
    check_mask("mypassword=notakey", "mypassword=****");
    check_mask("psql --password=x", "psql --password=****");
    check_mask("{\"password\": \"p w\", \"user\": \"u\"}", "{\"password\": \"****\", \"user\": \"u\"}");
    check_mask("{'api_token':'abc'}", "{'api_token':'****'}");
    /* paths of secrets are not secrets */
    check_mask("http.token_file = /etc/drd/token", "http.token_file = /etc/drd/token");
    check_mask("primary.password_file = /etc/drd/pw", "primary.password_file = /etc/drd/pw");
    /* an empty value stays empty */
    check_mask("password= ", "password= ");
}

static void options_and_headers(void **st)
{
    (void)st;
    check_mask("curl -u alice:pw http://x/", "curl -u alice:**** http://x/");
    check_mask("curl --user alice:pw http://x/", "curl --user alice:**** http://x/");
    check_mask("curl --user=alice:pw http://x/", "curl --user=alice:**** http://x/");
    check_mask("curl -u 'alice:p w' http://x/", "curl -u 'alice:****' http://x/");
    check_mask("curl -ualice:pw http://x/", "curl -ualice:**** http://x/");
    check_mask("curl -u alice http://x/", "curl -u alice http://x/");
    check_mask("Authorization: Basic YWxpY2U6cHc=", "Authorization: Basic ****");
    check_mask("Authorization: Bearer abc.def", "Authorization: Bearer ****");
    check_mask("curl -H 'authorization: token abc' x", "curl -H 'authorization: token ****' x");
    check_mask("Proxy-Authorization: Basic abc", "Proxy-Authorization: Basic ****");
    check_mask("{\"Authorization\": \"Basic abc\"}", "{\"Authorization\": \"Basic ****\"}");
    check_mask("Authorization: abc", "Authorization: ****");
    check_mask("sent with bearer abc, then", "sent with bearer ****, then");
}

static void ordinary_words(void **st)
{
    (void)st;
    check_mask("run 5 (failover, 3 steps) started by token: switch now please",
               "run 5 (failover, 3 steps) started by token: switch now please");
    check_mask("no secrets here: a=b", "no secrets here: a=b");
    check_mask("password authentication failed for user \"app\"",
               "password authentication failed for user \"app\"");
    check_mask("Authorization failed: bad token", "Authorization failed: bad token");
    check_mask("the secret is out", "the secret is out");
    check_mask("", "");
}

static void registry(void **st)
{
    (void)st;
    mask_add_secret("tok-123456");                /* long: anywhere */
    mask_add_secret("abcd");                      /* short: whole words only */
    mask_add_secret("x");                         /* tiny: only where parsed */
    check_mask("token file says tok-123456 and xtok-123456y", "token file says **** and x****y");
    check_mask("abcd and abcdef and (abcd)", "**** and abcdef and (****)");
    check_mask("a x in a text, password=x", "a x in a text, password=****");
    /* a URL registers its password, as written and decoded */
    mask_add_secrets_in("postgresql://u:p%40ssw0rd!@h/db");
    mask_add_secrets_in("host=h password='c0nn info' user=u");
    check_mask("c0nn info", "****");
    check_mask("pw is p@ssw0rd! or p%40ssw0rd!", "pw is **** or ****");
    /* no fixed limit */
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "secret-number-%03d", i);
        mask_add_secret(name);
    }
    check_mask("leak secret-number-000 secret-number-099", "leak **** ****");
    /* log_add_secret is the same registry */
    log_add_secret("via-log-api");
    check_mask("a via-log-api b", "a **** b");
    mask_clear_secrets();
    check_mask("tok-123456 abcd", "tok-123456 abcd");
}

/* Inputs where masking once removed what bounded a form (found by
 * fuzzing): masking again must change nothing. */
static void idempotent_where_forms_touch(void **st)
{
    (void)st;
    static const char *const cases[] = {
        "preqql://u:x password=x PGPASSWORD=abc\xFA\xFFostgres-ql://u:p#b\" a:b@h /d",
        "S!rSpeWRD=Ybcd\"\xA6" "b\"RD=abcdhunter2-Secret\"e",
        "a://u:p token=x/y@h/z",
        "x PASSWORD=a//b://c:d@e/f",
    };
    mask_add_secret("hunter2-Secret");
    mask_add_secret("abcd");
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *once = mask_dup(cases[i]);
        char *twice = mask_dup(once);
        assert_string_equal(twice, once);
        assert_null(strstr(once, "hunter2"));
        free(once);
        free(twice);
    }
    mask_clear_secrets();
}

static void growing_mask_then_cut(void **st)
{
    (void)st;
    /* "password=x " grows by 3 under masking; then 3-byte characters: the
     * cut must fall between characters, the secret never shows. */
    char in[300] = "password=x ";
    for (int i = 0; i < 81; i++)
        str_append(in, sizeof in, "\xE2\x82\xAC");    /* € */
    for (size_t n = 10; n <= 270; n++) {
        char out[300];
        mask_secrets(in, out, n);
        assert_true(strlen(out) < n);
        assert_true(utf8_valid(out, strlen(out)));
        assert_null(strstr(out, "=x"));
    }
    /* the truncation never leaks a partial secret */
    char small[24];
    mask_secrets("postgresql://app:s3cret@db.example.com", small, sizeof small);
    assert_null(strstr(small, "s3c"));
}

static char *fmt(char *out, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static char *fmt(char *out, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    mask_vformat(out, n, "\xE2\x80\xA6", f, ap);
    va_end(ap);
    return out;
}

/* Formatting, masking and cutting in that order: a cut that would fall
 * before the '@' of a URL (where the password could not be recognised any
 * more) never shows a part of it. */
static void format_mask_cut(void **st)
{
    (void)st;
    char out[40];
    for (size_t n = 5; n <= sizeof out; n++) {
        fmt(out, n, "connect %s failed", "postgresql://app:verylongsecretpassword@h/db");
        assert_null(strstr(out, "very"));
        assert_null(strstr(out, "pass"));
        assert_true(strlen(out) < n);
        assert_true(utf8_valid(out, strlen(out)));
    }
    fmt(out, sizeof out, "%s", "postgresql://app:x@h/db and then a long tail");
    assert_string_equal(out, "postgresql://app:****@h/db and then \xE2\x80\xA6");
}

static void utf8_cuts(void **st)
{
    (void)st;
    /* 1-, 2-, 3- and 4-byte characters: every cut point */
    const char *s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";   /* a é € 😀 z */
    size_t len = strlen(s);
    for (size_t n = 1; n <= len + 2; n++) {
        char out[32];
        size_t r = str_copy(out, s, n);
        assert_int_equal(r, len);
        assert_true(strlen(out) < n);
        assert_true(utf8_valid(out, strlen(out)));
        assert_memory_equal(out, s, strlen(out));
        if (n > len)
            assert_string_equal(out, s);
    }
    assert_int_equal(utf8_cut(s, len, 2), 1);
    assert_int_equal(utf8_cut(s, len, 3), 3);
    assert_int_equal(utf8_cut(s, len, 5), 3);
    assert_int_equal(utf8_cut(s, len, 6), 6);
    assert_int_equal(utf8_cut(s, len, 9), 6);
    assert_int_equal(utf8_cut(s, len, 10), 10);
    assert_int_equal(utf8_tail(s, len, 9), 3);          /* "€😀z" */
    assert_int_equal(utf8_tail(s, len, 6), 6);          /* "😀z" */
    assert_int_equal(utf8_tail(s, len, 5), 6);
    assert_int_equal(utf8_tail(s, len, 4), 10);         /* "z" */
    /* a marker */
    char out[16];
    assert_int_equal(str_trunc(out, 9, s, "\xE2\x80\xA6"), len);   /* … */
    assert_string_equal(out, "a\xC3\xA9\xE2\x80\xA6");
    str_trunc(out, sizeof out, "short", "\xE2\x80\xA6");
    assert_string_equal(out, "short");
    str_trunc(out, 3, s, "\xE2\x80\xA6");                           /* no room for it */
    assert_string_equal(out, "a");
}

static void invalid_utf8(void **st)
{
    (void)st;
    assert_true(utf8_valid("plain \xC3\xA9", 8));
    assert_false(utf8_valid("\xC3", 1));
    assert_false(utf8_valid("\xC0\xAF", 2));          /* overlong */
    assert_false(utf8_valid("\xED\xA0\x80", 3));      /* surrogate */
    assert_false(utf8_valid("\xF4\x90\x80\x80", 4));  /* > U+10FFFF */
    char *v = utf8_dup_valid("a\xFF" "b\xE2\x82", 5);
    assert_string_equal(v, "a\xEF\xBF\xBD" "b");      /* bad byte -> U+FFFD, a cut tail dropped */
    free(v);
    char buf[8] = "ab\xFF\xFF\xFF";
    utf8_fix(buf, sizeof buf);
    assert_true(utf8_valid(buf, strlen(buf)));
    assert_memory_equal(buf, "ab\xEF\xBF\xBD", 5);
    /* json_text always gives a string */
    json_t *j = json_text("bad \xE2\x82 then \xFF end");
    assert_non_null(j);
    assert_true(json_is_string(j));
    assert_non_null(strstr(json_string_value(j), "end"));
    json_decref(j);
    j = json_text(NULL);
    assert_true(json_is_null(j));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(urls),
        cmocka_unit_test(conninfo_and_assignments),
        cmocka_unit_test(options_and_headers),
        cmocka_unit_test(ordinary_words),
        cmocka_unit_test(registry),
        cmocka_unit_test(idempotent_where_forms_touch),
        cmocka_unit_test(growing_mask_then_cut),
        cmocka_unit_test(format_mask_cut),
        cmocka_unit_test(utf8_cuts),
        cmocka_unit_test(invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
