/* probe_classify: an outage (counts toward the breaker) or a
 * misconfiguration (never does), from libpq's messages as PostgreSQL 15
 * and its libpq word them (PQERRORS_VERBOSE: the SQLSTATE follows the
 * severity). The texts are copied from real connection attempts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "drd/health/probe.h"

#define AT "connection to server at \"127.0.0.1\", port 5432 failed: "

static probe_class classify(const char *msg, char *cause)
{
    return probe_classify(msg, false, cause, 256);
}

static void auth_failures(void **st)
{
    (void)st;
    char cause[256];
    assert_int_equal(classify(AT "FATAL:  28P01: password authentication failed for user \"drd\"\n"
                              "LOCATION:  auth_failed, auth.c:334\n", cause), PROBE_AUTH);
    assert_string_equal(cause, "password authentication failed for user \"drd\"");
    assert_int_equal(classify(AT "FATAL:  28000: role \"ghost\" does not exist\n"
                              "LOCATION:  InitializeSessionUserId, miscinit.c:768\n", cause), PROBE_AUTH);
    assert_string_equal(cause, "role \"ghost\" does not exist");
    assert_int_equal(classify(AT "FATAL:  28000: no pg_hba.conf entry for host \"127.0.0.1\", user \"drd\", "
                              "database \"app\", no encryption\n", cause), PROBE_AUTH);
    assert_string_equal(cause, "no pg_hba.conf entry for host \"127.0.0.1\", user \"drd\", database \"app\", "
                        "no encryption");
    assert_int_equal(classify(AT "FATAL:  28000: role \"nol\" is not permitted to log in\n", cause), PROBE_AUTH);
    assert_int_equal(classify(AT "FATAL:  42501: permission denied for database \"postgres\"\n"
                              "DETAIL:  User does not have CONNECT privilege.\n", cause), PROBE_AUTH);
    assert_string_equal(cause, "permission denied for database \"postgres\"");
    /* libpq's own: the server asked for a password, none was given */
    assert_int_equal(classify(AT "fe_sendauth: no password supplied\n", cause), PROBE_AUTH);
    assert_string_equal(cause, "fe_sendauth: no password supplied");
    assert_int_equal(probe_classify("", true, cause, sizeof cause), PROBE_AUTH);
}

static void config_failures(void **st)
{
    (void)st;
    char cause[256];
    assert_int_equal(classify(AT "FATAL:  3D000: database \"nodb\" does not exist\n"
                              "LOCATION:  InitPostgres, postinit.c:948\n", cause), PROBE_CONFIG);
    assert_string_equal(cause, "database \"nodb\" does not exist");
    assert_int_equal(classify(AT "server does not support SSL, but SSL was required\n", cause), PROBE_CONFIG);
    assert_string_equal(cause, "server does not support SSL, but SSL was required");
    assert_int_equal(classify(AT "SSL error: certificate verify failed\n", cause), PROBE_CONFIG);
    assert_int_equal(classify(AT "server certificate for \"db.example.com\" does not match host name "
                              "\"10.0.0.1\"\n", cause), PROBE_CONFIG);
    assert_int_equal(classify(AT "root certificate file \"/root/.postgresql/root.crt\" does not exist\n"
                              "Either provide the file or change sslmode to disable server certificate "
                              "verification.\n", cause), PROBE_CONFIG);
    assert_int_equal(classify("invalid sslmode value: \"bogus\"\n", cause), PROBE_CONFIG);
}

static void outages(void **st)
{
    (void)st;
    char cause[256] = "x";
    assert_int_equal(classify(AT "Connection refused\n\tIs the server running on that host and accepting "
                              "TCP/IP connections?\n", cause), PROBE_UNREACHABLE);
    assert_string_equal(cause, "");
    assert_int_equal(classify(AT "FATAL:  57P03: the database system is starting up\n", cause),
                     PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "FATAL:  57P03: the database system is shutting down\n", cause),
                     PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "FATAL:  57P03: the database system is not yet accepting connections\n"
                              "DETAIL:  Consistent recovery state has not been yet reached.\n", cause),
                     PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "FATAL:  53300: sorry, too many clients already\n", cause), PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "server closed the connection unexpectedly\n\tThis probably means the "
                              "server terminated abnormally\n", cause), PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "No route to host\n", cause), PROBE_UNREACHABLE);
    assert_int_equal(classify("could not translate host name \"db.example\" to address: Name or service "
                              "not known\n", cause), PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "SSL SYSCALL error: EOF detected\n", cause), PROBE_UNREACHABLE);
    /* unknown texts and unknown SQLSTATEs are outages (conservative) */
    assert_int_equal(classify("something nobody has seen before", cause), PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "FATAL:  XX000: database \"x\" does not exist (a lie)\n", cause),
                     PROBE_UNREACHABLE);
    assert_int_equal(classify("", cause), PROBE_UNREACHABLE);
    assert_int_equal(probe_classify(NULL, false, NULL, 0), PROBE_UNREACHABLE);
}

/* Several hosts: misconfigured only when every attempt says so. */
static void several_attempts(void **st)
{
    (void)st;
    char cause[256];
    assert_int_equal(classify(AT "FATAL:  28P01: password authentication failed for user \"drd\"\n"
                              "connection to server at \"10.0.0.2\", port 5432 failed: Connection refused\n"
                              "\tIs the server running on that host and accepting TCP/IP connections?\n",
                              cause), PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "Connection refused\n"
                              "connection to server at \"10.0.0.2\", port 5432 failed: FATAL:  3D000: "
                              "database \"app\" does not exist\n", cause), PROBE_UNREACHABLE);
    assert_int_equal(classify(AT "FATAL:  28P01: password authentication failed for user \"drd\"\n"
                              "connection to server at \"10.0.0.2\", port 5432 failed: FATAL:  28P01: "
                              "password authentication failed for user \"drd\"\n", cause), PROBE_AUTH);
}

/* Texts without a SQLSTATE (as stored in the state file, one line). */
static void short_texts(void **st)
{
    (void)st;
    char cause[256];
    assert_int_equal(classify(AT "FATAL:  password authentication failed for user \"drd\"", cause), PROBE_AUTH);
    assert_string_equal(cause, "password authentication failed for user \"drd\"");
    assert_int_equal(classify(AT "FATAL:  database \"app\" does not exist", cause), PROBE_CONFIG);
    assert_int_equal(classify(AT "FATAL:  role \"x\" does not exist", cause), PROBE_AUTH);
    assert_int_equal(classify("timeout after 1000ms while connecting", cause), PROBE_UNREACHABLE);
}

static void secrets_masked(void **st)
{
    (void)st;
    char cause[256];
    assert_int_equal(classify("invalid connection option \"x\" in host=h password=hunter2", cause),
                     PROBE_CONFIG);
    assert_null(strstr(cause, "hunter2"));
}

static void names(void **st)
{
    (void)st;
    assert_null(probe_class_name(PROBE_OK));
    assert_string_equal(probe_class_name(PROBE_UNREACHABLE), "unreachable");
    assert_string_equal(probe_class_name(PROBE_AUTH), "auth");
    assert_string_equal(probe_class_name(PROBE_CONFIG), "config");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(auth_failures),
        cmocka_unit_test(config_failures),
        cmocka_unit_test(outages),
        cmocka_unit_test(several_attempts),
        cmocka_unit_test(short_texts),
        cmocka_unit_test(secrets_masked),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
