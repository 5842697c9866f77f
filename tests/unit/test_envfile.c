/* test_envfile.c - rewriting one key of an env file: every other byte kept,
 * quoting and `export` kept, append when absent, CRLF, idempotence,
 * .drd-prev, mode and owner, clear errors with the file unchanged. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drd/conf/envfile.h"
#include "drd/core/log.h"
#include "drd/core/util.h"

#define KEY "DATABASE_URL"
#define NEW_URL "postgresql://app:s3cret@backup:5432/app?sslmode=require"

typedef struct {
    char dir[256];
    char path[300];
    char prev[320];
} fixture;

/* ---- helpers --------------------------------------------------------- */

static void put(const char *path, const char *content, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static char *slurp(const char *path)
{
    char *s = read_file(path, 4 * 1024 * 1024, NULL);
    assert_non_null(s);
    return s;
}

static void assert_file(const char *path, const char *want)
{
    char *got = slurp(path);
    assert_string_equal(got, want);
    free(got);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* No temporary file may be left behind in dir. */
static void assert_no_temp(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".drd-tmp") != NULL)
            fail_msg("temporary file left: %s/%s", dir, e->d_name);
    closedir(d);
}

/* set, which must succeed and report `want_changed`. */
static void set_ok(const char *path, const char *key, const char *value, bool want_changed)
{
    char err[512] = "x";
    bool changed = !want_changed;
    if (!envfile_set(path, key, value, &changed, err, sizeof err))
        fail_msg("envfile_set(%s, %s): %s", path, key, err);
    assert_true(changed == want_changed);
}

/* Replace KEY in `before` and expect exactly `after`. */
static void check_set(fixture *f, const char *before, const char *value, const char *after)
{
    put(f->path, before, 0600);
    set_ok(f->path, KEY, value, strcmp(before, after) != 0);
    assert_file(f->path, after);
    assert_no_temp(f->dir);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/drd-test-envfile.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/.env", f->dir);
    snprintf(f->prev, sizeof f->prev, "%s/.env.drd-prev", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    chmod(f->dir, 0700);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* ---- tests ----------------------------------------------------------- */

static void test_replace_keeps_other_bytes(void **state)
{
    fixture *f = *state;
    check_set(f,
              "# app settings\n"
              "PORT=3000\n"
              "\n"
              "DATABASE_URL=postgresql://app:old@primary:5432/app\n"
              "   # indented comment with DATABASE_URL=nope\n"
              "DATABASE_URL_OLD=keep-me\n"
              "OTHER='x y'   # trailing comment\n"
              "\tSPACED = \"v\"\n"
              "LAST=1",
              NEW_URL,
              "# app settings\n"
              "PORT=3000\n"
              "\n"
              "DATABASE_URL=" NEW_URL "\n"
              "   # indented comment with DATABASE_URL=nope\n"
              "DATABASE_URL_OLD=keep-me\n"
              "OTHER='x y'   # trailing comment\n"
              "\tSPACED = \"v\"\n"
              "LAST=1");
    /* Spacing around '=' and a trailing comment on the key's own line. */
    check_set(f, "A=1\n  DATABASE_URL =  old   # the db\nB=2\n", "new",
              "A=1\n  DATABASE_URL =  new   # the db\nB=2\n");
    /* An empty value followed by a comment stays a comment. */
    check_set(f, "DATABASE_URL= # set me\n", "new", "DATABASE_URL=new # set me\n");
    check_set(f, "DATABASE_URL=\n", "new", "DATABASE_URL=new\n");
    check_set(f, "DATABASE_URL=   \r\n", "new", "DATABASE_URL=new   \r\n");
    check_set(f, "DATABASE_URL=#not-a-comment\n", "new", "DATABASE_URL=new\n");
}

static void test_export_kept(void **state)
{
    fixture *f = *state;
    check_set(f, "export DATABASE_URL=old\n", NEW_URL, "export DATABASE_URL=" NEW_URL "\n");
    check_set(f, "export  DATABASE_URL=\"old\" # c\n", "new",
              "export  DATABASE_URL=\"new\" # c\n");
    check_set(f, "export\tDATABASE_URL='old'\n", "new", "export\tDATABASE_URL='new'\n");
}

static void test_quoting(void **state)
{
    fixture *f = *state;
    /* Quoted stays quoted, in its own style. */
    check_set(f, "DATABASE_URL='old'\n", NEW_URL, "DATABASE_URL='" NEW_URL "'\n");
    check_set(f, "DATABASE_URL=\"old\"\n", NEW_URL, "DATABASE_URL=\"" NEW_URL "\"\n");
    /* Double quotes escape what the shell would expand. */
    check_set(f, "DATABASE_URL=\"old\"\n", "pa$$\"w`\\d",
              "DATABASE_URL=\"pa\\$\\$\\\"w\\`\\\\d\"\n");
    /* A single quote cannot appear inside single quotes: double instead. */
    check_set(f, "DATABASE_URL='old'\n", "it's", "DATABASE_URL=\"it's\"\n");
    /* Unquoted stays unquoted unless the value needs quotes. */
    check_set(f, "DATABASE_URL=old\n", "a b#c", "DATABASE_URL=\"a b#c\"\n");
    check_set(f, "DATABASE_URL=old\n", "x&y", "DATABASE_URL=\"x&y\"\n");
    check_set(f, "DATABASE_URL=old\n", "postgresql://u:p@h:5432/db?sslmode=require",
              "DATABASE_URL=postgresql://u:p@h:5432/db?sslmode=require\n");
}

static void test_append_when_absent(void **state)
{
    fixture *f = *state;
    check_set(f, "A=1\n", "v", "A=1\nDATABASE_URL=v\n");
    check_set(f, "A=1", "v", "A=1\nDATABASE_URL=v\n");
    check_set(f, "", "v", "DATABASE_URL=v\n");
    check_set(f, "# DATABASE_URL=commented\n", "v",
              "# DATABASE_URL=commented\nDATABASE_URL=v\n");
    check_set(f, "A=1\n", "with space", "A=1\nDATABASE_URL=\"with space\"\n");
}

static void test_crlf(void **state)
{
    fixture *f = *state;
    check_set(f, "A=1\r\nDATABASE_URL=old\r\nB=2\r\n", "new",
              "A=1\r\nDATABASE_URL=new\r\nB=2\r\n");
    check_set(f, "A=1\r\nDATABASE_URL=\"old\"  # c\r\n", "new",
              "A=1\r\nDATABASE_URL=\"new\"  # c\r\n");
    /* Appending uses the file's dominant ending. */
    check_set(f, "A=1\r\nB=2\r\n", "v", "A=1\r\nB=2\r\nDATABASE_URL=v\r\n");
    check_set(f, "A=1\r\nB=2", "v", "A=1\r\nB=2\r\nDATABASE_URL=v\r\n");
    check_set(f, "A=1\r\nB=2\nC=3\n", "v", "A=1\r\nB=2\nC=3\nDATABASE_URL=v\n");
    /* A replaced line keeps its own ending in a mixed file. */
    check_set(f, "A=1\nDATABASE_URL=old\r\nB=2\n", "new", "A=1\nDATABASE_URL=new\r\nB=2\n");
}

static void test_all_occurrences_replaced(void **state)
{
    fixture *f = *state;
    check_set(f, "DATABASE_URL=one\nA=1\nexport DATABASE_URL='two'\n", "new",
              "DATABASE_URL=new\nA=1\nexport DATABASE_URL='new'\n");
}

static void test_idempotent_and_prev(void **state)
{
    fixture *f = *state;
    const char *v1 = "A=1\nDATABASE_URL=old\n";
    put(f->path, v1, 0600);
    set_ok(f->path, KEY, "new", true);
    assert_file(f->prev, v1);

    struct stat st1, st2, p1, p2;
    assert_int_equal(stat(f->path, &st1), 0);
    assert_int_equal(stat(f->prev, &p1), 0);
    set_ok(f->path, KEY, "new", false);
    assert_int_equal(stat(f->path, &st2), 0);
    assert_int_equal(stat(f->prev, &p2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_true(st1.st_mtim.tv_sec == st2.st_mtim.tv_sec &&
                st1.st_mtim.tv_nsec == st2.st_mtim.tv_nsec);
    assert_int_equal(p1.st_ino, p2.st_ino);
    assert_file(f->prev, v1);
    assert_file(f->path, "A=1\nDATABASE_URL=new\n");

    /* The same value already there, quoted: nothing to do either. */
    put(f->path, "DATABASE_URL=\"same\"\n", 0600);
    set_ok(f->path, KEY, "same", false);
    assert_file(f->prev, v1);

    /* A later change keeps the content it replaced. */
    set_ok(f->path, KEY, "other", true);
    assert_file(f->prev, "DATABASE_URL=\"same\"\n");
    assert_file(f->path, "DATABASE_URL=\"other\"\n");

    /* changed may be NULL. */
    char err[256];
    assert_true(envfile_set(f->path, KEY, "third", NULL, err, sizeof err));
    assert_no_temp(f->dir);
}

static void test_mode_and_owner_kept(void **state)
{
    fixture *f = *state;
    put(f->path, "DATABASE_URL=old\n", 0640);
    if (geteuid() == 0)
        assert_int_equal(chown(f->path, 1234, 5678), 0);
    set_ok(f->path, KEY, "new", true);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    if (geteuid() == 0) {
        assert_int_equal(st.st_uid, 1234);
        assert_int_equal(st.st_gid, 5678);
    }
    assert_int_equal(stat(f->prev, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
}

static void test_symlink_target_rewritten(void **state)
{
    fixture *f = *state;
    char target[400], link[400];
    snprintf(target, sizeof target, "%s/real.env", f->dir);
    snprintf(link, sizeof link, "%s/link.env", f->dir);
    put(target, "DATABASE_URL=old\n", 0600);
    assert_int_equal(symlink("real.env", link), 0);
    set_ok(link, KEY, "new", true);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_file(target, "DATABASE_URL=new\n");
}

static void test_missing_file(void **state)
{
    fixture *f = *state;
    char err[512] = "";
    bool changed = true;
    assert_false(envfile_set(f->path, KEY, "v", &changed, err, sizeof err));
    assert_false(changed);
    char want[400];
    snprintf(want, sizeof want, "%s: No such file or directory", f->path);
    assert_string_equal(err, want);
    assert_false(exists(f->path));
    assert_false(exists(f->prev));

    /* In a directory that does not exist. */
    char path[400];
    snprintf(path, sizeof path, "%s/nope/.env", f->dir);
    assert_false(envfile_set(path, KEY, "v", NULL, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file or directory"));
}

static void test_unwritable_directory(void **state)
{
    fixture *f = *state;
    char err[512] = "";
    const char *before = "A=1\nDATABASE_URL=old\n";
    put(f->path, before, 0600);
    if (geteuid() != 0) {
        assert_int_equal(chmod(f->dir, 0555), 0);
        assert_false(envfile_set(f->path, KEY, "new", NULL, err, sizeof err));
        assert_non_null(strstr(err, f->dir));
        assert_non_null(strstr(err, "Permission denied"));
        assert_int_equal(chmod(f->dir, 0700), 0);
        assert_file(f->path, before);
        assert_false(exists(f->prev));
    }
    /* Root ignores permissions; a .drd-prev that cannot be written stops
     * the change too, leaving the file as it was and no temporary file. */
    assert_int_equal(mkdir(f->prev, 0700), 0);
    char inner[400];
    snprintf(inner, sizeof inner, "%s/x", f->prev);
    put(inner, "", 0600);                   /* a non-empty directory */
    bool changed = true;
    assert_false(envfile_set(f->path, KEY, "new", &changed, err, sizeof err));
    assert_false(changed);
    assert_non_null(strstr(err, "previous"));
    assert_file(f->path, before);
    assert_no_temp(f->dir);
}

static void test_bad_input(void **state)
{
    fixture *f = *state;
    char err[512];
    put(f->path, "A=1\n", 0600);
    assert_false(envfile_set(f->path, KEY, "two\nlines", NULL, err, sizeof err));
    assert_non_null(strstr(err, "line break"));
    assert_false(envfile_set(f->path, "BAD KEY", "v", NULL, err, sizeof err));
    assert_false(envfile_set(f->path, "1KEY", "v", NULL, err, sizeof err));
    char small[16];
    assert_false(envfile_get(f->path, "", small, sizeof small, err, sizeof err));
    assert_non_null(strstr(err, "invalid key"));
    assert_file(f->path, "A=1\n");

    /* Over 1 MiB. */
    char *big = malloc(1024 * 1024 + 2);
    assert_non_null(big);
    memset(big, '#', 1024 * 1024 + 1);
    big[1024 * 1024 + 1] = '\0';
    put(f->path, big, 0600);
    free(big);
    assert_false(envfile_set(f->path, KEY, "v", NULL, err, sizeof err));
    assert_non_null(strstr(err, f->path));
    char out[64];
    assert_false(envfile_get(f->path, KEY, out, sizeof out, err, sizeof err));
    assert_true(err[0] != '\0');
    assert_no_temp(f->dir);
}

static void get_eq(const char *path, const char *key, const char *want)
{
    char out[256], err[256] = "x";
    if (!envfile_get(path, key, out, sizeof out, err, sizeof err))
        fail_msg("envfile_get(%s): %s", key, err);
    assert_string_equal(out, want);
}

static void test_get(void **state)
{
    fixture *f = *state;
    put(f->path,
        "# comment\r\n"
        "PLAIN=postgresql://u:p@h:5432/db?sslmode=require\r\n"
        "SQ='single # not a comment'\n"
        "DQ=\"say \\\"hi\\\" \\$HOME \\\\ \\`x\\`\"  # comment\n"
        "export EXP=exported\n"
        "  SPACED  =  value with   # comment\n"
        "HASH=a#b\n"
        "EMPTY=\n"
        "TWICE=first\n"
        "TWICE=second\n",
        0600);
    get_eq(f->path, "PLAIN", "postgresql://u:p@h:5432/db?sslmode=require");
    get_eq(f->path, "SQ", "single # not a comment");
    get_eq(f->path, "DQ", "say \"hi\" $HOME \\ `x`");
    get_eq(f->path, "EXP", "exported");
    get_eq(f->path, "SPACED", "value with");
    get_eq(f->path, "HASH", "a#b");
    get_eq(f->path, "EMPTY", "");
    get_eq(f->path, "TWICE", "second");

    char out[8], err[256] = "x";
    assert_false(envfile_get(f->path, "ABSENT", out, sizeof out, err, sizeof err));
    assert_string_equal(err, "");
    assert_false(envfile_get(f->path, "comment", out, sizeof out, err, sizeof err));
    assert_string_equal(err, "");
    /* Too small a buffer is an error, not a silent truncation. */
    assert_false(envfile_get(f->path, "PLAIN", out, sizeof out, err, sizeof err));
    assert_true(err[0] != '\0');

    char missing[400];
    snprintf(missing, sizeof missing, "%s/missing.env", f->dir);
    assert_false(envfile_get(missing, "PLAIN", out, sizeof out, err, sizeof err));
    assert_non_null(strstr(err, "No such file or directory"));
}

/* What we write reads back the same through envfile_get and through a
 * POSIX shell sourcing the file. */
static void test_round_trip_with_shell(void **state)
{
    fixture *f = *state;
    const char *values[] = {
        "plain", "", "a b", "p#q", "it's", "\"dq\"", "$HOME", "back\\slash", "`id`",
        "a&b;c|d", "~root", "postgresql://u:p%40x@h:5432/db?sslmode=require&x=1",
    };
    const char *styles[] = { "DATABASE_URL=x\n", "DATABASE_URL='x'\n",
                             "DATABASE_URL=\"x\"\n", "A=1\n" };
    for (size_t s = 0; s < ARRAY_LEN(styles); s++) {
        for (size_t i = 0; i < ARRAY_LEN(values); i++) {
            put(f->path, styles[s], 0600);
            char err[256];
            assert_true(envfile_set(f->path, KEY, values[i], NULL, err, sizeof err));
            get_eq(f->path, KEY, values[i]);

            int p[2];
            assert_int_equal(pipe(p), 0);
            pid_t pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                dup2(p[1], 1);
                close(p[0]);
                close(p[1]);
                execl("/bin/sh", "sh", "-c", ". \"$1\" && printf %s \"$DATABASE_URL\"", "sh",
                      f->path, (char *)NULL);
                _exit(127);
            }
            close(p[1]);
            char got[512];
            size_t n = 0;
            ssize_t r;
            while ((r = read(p[0], got + n, sizeof got - 1 - n)) > 0)
                n += (size_t)r;
            close(p[0]);
            got[n] = '\0';
            int status;
            assert_int_equal(waitpid(pid, &status, 0), pid);
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            if (strcmp(got, values[i]) != 0)
                fail_msg("style %zu value '%s': the shell read '%s'", s, values[i], got);
        }
    }
}


/* ---- where drd may write (issue 11 item 2) ----------------------------- */

/* The "app user": when we are root, an unprivileged uid that owns the app's
 * directories; when we are not, ourselves (we cannot give files away). */
static uid_t app_uid(void)
{
    if (geteuid() != 0)
        return geteuid();
    struct passwd *pw = getpwnam("nobody");
    return pw != NULL ? pw->pw_uid : 65534;
}

/* mkdir path with mode, owned by uid (as root). */
static void mkdir_as(const char *path, mode_t mode, uid_t uid)
{
    assert_int_equal(mkdir(path, mode), 0);
    assert_int_equal(chmod(path, mode), 0);             /* whatever the umask */
    if (geteuid() == 0)
        assert_int_equal(lchown(path, uid, (gid_t)-1), 0);
}

static void put_as(const char *path, const char *content, mode_t mode, uid_t uid)
{
    put(path, content, mode);
    if (geteuid() == 0)
        assert_int_equal(lchown(path, uid, (gid_t)-1), 0);
}

static void symlink_as(const char *target, const char *link, uid_t uid)
{
    assert_int_equal(symlink(target, link), 0);
    if (geteuid() == 0)
        assert_int_equal(lchown(link, uid, (gid_t)-1), 0);
}

/* A deploy tool's layout, all the app's: current/.env -> shared/.env
 * through current -> releases/1. Allowed; the link stays a link, the
 * backup copy lands next to the real file and belongs to the app. */
static void test_deploy_tool_symlink_allowed(void **state)
{
    fixture *f = *state;
    uid_t app = app_uid();
    char d[400], p[500], cur[500], real[500], prev[520], err[512] = "";
    snprintf(d, sizeof d, "%s/srv", f->dir);
    mkdir_as(d, 0755, app);
    snprintf(p, sizeof p, "%s/shared", d);
    mkdir_as(p, 0755, app);
    snprintf(real, sizeof real, "%s/shared/.env", d);
    put_as(real, "PORT=1\nDATABASE_URL=old\n", 0600, app);
    snprintf(p, sizeof p, "%s/releases", d);
    mkdir_as(p, 0755, app);
    snprintf(p, sizeof p, "%s/releases/1", d);
    mkdir_as(p, 0755, app);
    snprintf(p, sizeof p, "%s/releases/1/.env", d);
    symlink_as("../../shared/.env", p, app);
    snprintf(p, sizeof p, "%s/current", d);
    symlink_as("releases/1", p, app);

    snprintf(cur, sizeof cur, "%s/current/.env", d);
    assert_true(envfile_check(cur, NULL, 0, err, sizeof err));
    set_ok(cur, KEY, NEW_URL, true);
    assert_file(real, "PORT=1\nDATABASE_URL=" NEW_URL "\n");
    snprintf(prev, sizeof prev, "%s.drd-prev", real);
    assert_file(prev, "PORT=1\nDATABASE_URL=old\n");
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    snprintf(p, sizeof p, "%s/releases/1/.env", d);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat(real, &st), 0);
    assert_int_equal(st.st_uid, app);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(prev, &st), 0);
    assert_int_equal(st.st_uid, app);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(p, sizeof p, "%s/shared", d);
    assert_no_temp(p);
}

/* The app's user plants .env -> a root-owned file in its own directory:
 * refused, the target untouched, no .drd-prev and no temporary file
 * anywhere. */
static void test_planted_link_refused(void **state)
{
    fixture *f = *state;
    if (geteuid() != 0) {
        skip();                 /* needs a root-owned file and another user */
        return;
    }
    uid_t app = app_uid();
    char appdir[400], etc[400], victim[500], link[500], err[512] = "";
    const char *content = "root:x:0:0:root:/root:/bin/bash\n";
    snprintf(etc, sizeof etc, "%s/etc", f->dir);
    mkdir_as(etc, 0755, 0);
    snprintf(victim, sizeof victim, "%s/passwd", etc);
    put_as(victim, content, 0644, 0);
    snprintf(appdir, sizeof appdir, "%s/app", f->dir);
    mkdir_as(appdir, 0755, app);
    snprintf(link, sizeof link, "%s/.env", appdir);

    const char *targets[2] = { "../etc/passwd", victim };     /* relative, absolute */
    for (int i = 0; i < 2; i++) {
        unlink(link);
        symlink_as(targets[i], link, app);
        struct stat before, after;
        assert_int_equal(stat(victim, &before), 0);
        bool changed = true;
        err[0] = '\0';
        assert_false(envfile_set(link, KEY, NEW_URL, &changed, err, sizeof err));
        assert_false(changed);
        if (strstr(err, "refusing") == NULL || strstr(err, link) == NULL)
            fail_msg("unclear reason: %s", err);
        assert_file(victim, content);
        assert_int_equal(stat(victim, &after), 0);
        assert_int_equal(before.st_ino, after.st_ino);
        assert_int_equal(after.st_mode & 07777, 0644);
        char prev[520];
        snprintf(prev, sizeof prev, "%s.drd-prev", victim);
        assert_false(exists(prev));
        snprintf(prev, sizeof prev, "%s.drd-prev", link);
        assert_false(exists(prev));
        assert_no_temp(etc);
        assert_no_temp(appdir);
        err[0] = '\0';
        assert_false(envfile_check(link, NULL, 0, err, sizeof err));
        assert_non_null(strstr(err, "refusing"));
    }

    /* A root-owned file the app's user could swap for a link at any time
     * (it owns the directory): refused as well. */
    unlink(link);
    put_as(link, "DATABASE_URL=old\n", 0644, 0);
    assert_false(envfile_set(link, KEY, NEW_URL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "refusing"));
    assert_file(link, "DATABASE_URL=old\n");
}

/* A group-writable directory (no sticky bit) on the way, of the link or of
 * the target: anyone in the group could plant a link. Refused. A sticky
 * one (like /tmp) is not. */
static void test_group_writable_dir_refused(void **state)
{
    fixture *f = *state;
    char shared[400], file[500], link[500], prev[520], err[512] = "";
    const char *content = "DATABASE_URL=old\n";
    snprintf(shared, sizeof shared, "%s/shared", f->dir);
    mkdir_as(shared, 0775, geteuid());
    snprintf(file, sizeof file, "%s/.env", shared);
    put(file, content, 0600);
    snprintf(prev, sizeof prev, "%s.drd-prev", file);

    bool changed = true;
    assert_false(envfile_set(file, KEY, NEW_URL, &changed, err, sizeof err));
    assert_false(changed);
    if (strstr(err, "refusing") == NULL || strstr(err, shared) == NULL ||
        strstr(err, "group") == NULL)
        fail_msg("unclear reason: %s", err);
    assert_file(file, content);
    assert_false(exists(prev));
    assert_no_temp(shared);

    /* Through a link from a safe directory. */
    snprintf(link, sizeof link, "%s/link.env", f->dir);
    symlink_as("shared/.env", link, geteuid());
    assert_false(envfile_set(link, KEY, NEW_URL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "refusing"));
    assert_false(envfile_check(link, NULL, 0, err, sizeof err));
    assert_file(file, content);
    assert_false(exists(prev));

    /* World-writable, no sticky bit. */
    assert_int_equal(chmod(shared, 0757), 0);
    assert_false(envfile_set(file, KEY, NEW_URL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "refusing"));

    /* Sticky: others cannot replace our entries. */
    assert_int_equal(chmod(shared, 01777), 0);
    set_ok(link, KEY, NEW_URL, true);
    assert_file(file, "DATABASE_URL=" NEW_URL "\n");
    assert_file(prev, content);
}

/* A plain file, in a directory of root (or of its owner): allowed, and
 * envfile_check tells where the write lands. */
static void test_plain_file_allowed(void **state)
{
    fixture *f = *state;
    char real[400], err[512] = "";
    put(f->path, "DATABASE_URL=old\n", 0640);
    if (geteuid() == 0)
        assert_int_equal(chown(f->path, app_uid(), (gid_t)-1), 0);
    assert_true(envfile_check(f->path, real, sizeof real, err, sizeof err));
    assert_string_equal(real, f->path);
    set_ok(f->path, KEY, NEW_URL, true);
    assert_file(f->path, "DATABASE_URL=" NEW_URL "\n");
    assert_file(f->prev, "DATABASE_URL=old\n");

    /* The app's own file in the app's own directory. */
    char d[400], p[500];
    snprintf(d, sizeof d, "%s/app", f->dir);
    mkdir_as(d, 0755, app_uid());
    snprintf(p, sizeof p, "%s/.env", d);
    put_as(p, "DATABASE_URL=old\n", 0600, app_uid());
    set_ok(p, KEY, NEW_URL, true);
    assert_file(p, "DATABASE_URL=" NEW_URL "\n");
}

int main(void)
{
    log_set_level(LOG_LVL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replace_keeps_other_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quoting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_when_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_occurrences_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_and_prev, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mode_and_owner_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_target_rewritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_with_shell, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deploy_tool_symlink_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_planted_link_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_writable_dir_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_file_allowed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
