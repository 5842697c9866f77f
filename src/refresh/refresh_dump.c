/* refresh_dump.c - dump mode's own phases.
 *
 * One child streams the primary into the scratch database and into the
 * dump file at once:
 *
 *   pg_dump -Fc -Z1 | tee dump.partial | pg_restore --section=pre-data --section=data
 *
 * so the copy takes about as long as the slower of the two ends, like the
 * usual `pg_dump | psql`, and the file costs no second pass. Then the file
 * is checked (`pg_restore --list`) and fsynced, the indexes, constraints and
 * triggers are built with `pg_restore --section=post-data -j [refresh] jobs`
 * from the file, the databases are swapped (refresh_job.c), and the file is
 * renamed to backup-YYYY-MM-DD-HHMMSS.dump (UTC) and retention applied.
 *
 * All of it happens in a private directory (mode 0700) inside [refresh]
 * dir, removed at the end: a failure leaves no partial file behind.
 * /bin/sh has no pipefail: each program of the pipeline reports its exit
 * status as a line "rc NAME N" on the child's captured output (not in
 * files: the directory may be the thing that is full), next to the
 * programs' own messages, and the first real error is what the refresh
 * records. Passwords reach the programs through PGPASSFILE (mode 0600
 * files in the private directory), never argv. Restores run with
 * synchronous_commit = off: the swap's commit makes all of it durable.
 *
 * Owners: a superuser on the backup restores owners and grants as on the
 * primary (the roles must exist there: pg_dumpall --roles-only); any other
 * role restores with --no-owner --no-privileges and owns everything. */
#include "refresh_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define COPY_TIMEOUT_MS     (24LL * 3600 * 1000)
#define VERIFY_TIMEOUT_MS   (3600LL * 1000)

static const char *owner_opts(const job_t *j)
{
    /* A superuser on the backup restores owners and grants as on the
     * primary (the roles must exist there); any other role owns what it
     * restores, and grants are skipped (they could name missing roles). */
    return j->superuser ? "" : " --no-owner --no-privileges";
}

static bool sigpipe_status(int rc)
{
    return rc == 141 || rc == 128 + 13;
}

static bool copy_done(job_t *j, const proc_result *res)
{
    if (res->timed_out) {
        refresh_job_fail(j, "the copy did not finish within %lld h", (long long)(COPY_TIMEOUT_MS / 3600000));
        return false;
    }
    int dump = refresh_job_out_rc(res, "dump"), tee = refresh_job_out_rc(res, "tee"), rest = refresh_job_out_rc(res, "restore");
    if (dump == 0 && tee == 0 && rest == 0)
        return true;
    /* The first real error: the file (disk full...), then pg_dump unless it
     * only lost its reader, then pg_restore. */
    char msg[400];
    if (tee != 0 && !sigpipe_status(tee)) {
        refresh_job_out_message(res, "tee", msg, sizeof msg);
        refresh_job_fail(j, "writing the dump file in %s failed: %s", j->dir, msg[0] ? msg : "tee failed");
        return false;
    }
    refresh_job_out_message(res, "pg_dump", msg, sizeof msg);
    if (dump != 0 && !sigpipe_status(dump) && strstr(msg, "Broken pipe") == NULL) {
        refresh_job_fail(j, "pg_dump failed (exit %d): %s", dump, msg[0] ? msg : "no message");
        return false;
    }
    if (rest != 0) {
        refresh_job_out_message(res, "pg_restore", msg, sizeof msg);
        refresh_job_fail(j, "pg_restore into the scratch database failed (exit %d): %s", rest,
                 msg[0] ? msg : "no message");
        return false;
    }
    refresh_job_fail(j, "pg_dump failed (exit %d): %s", dump, msg[0] ? msg : "no message");
    return false;
}

int refresh_dump_copy_enter(job_t *j)
{
    /* created here, mode 0600: tee keeps the mode when it opens it */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/dump.partial", j->tmpdir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        refresh_job_fail(j, "cannot create a file in %s: %s", j->dir, strerror(errno));
        return PHASE_FAILED;
    }
    close(fd);
    char *dump = refresh_job_client(j, "pg_dump", true), *restore = refresh_job_client(j, "pg_restore", false);
    char *src = refresh_sh_quote(j->c_prim), *dst = refresh_sh_quote(j->c_new);
    char *cmd = NULL;
    if (dump && restore && src && dst)
        cmd = refresh_xasprintf(
            "umask 077; exec 3>&1; "
            "{ %s -Fc -Z1 --no-publications --no-subscriptions -d %s 2>&3; echo \"rc dump $?\" >&3; } | "
            "{ tee dump.partial 2>&3; echo \"rc tee $?\" >&3; } | "
            "{ %s --section=pre-data --section=data --exit-on-error%s -d %s 2>&3; "
            "echo \"rc restore $?\" >&3; }",
            dump, src, restore, owner_opts(j), dst);
    free(dump);
    free(restore);
    free(src);
    free(dst);
    if (cmd == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    log_info("refresh %" PRId64 ": copying the primary into %s on the backup and into a dump file",
             j->rec.id, j->new_db);
    int rc = refresh_job_cmd(j, cmd, COPY_TIMEOUT_MS, copy_done);
    free(cmd);
    return rc;
}

static bool verify_done(job_t *j, const proc_result *res)
{
    if (res->timed_out || res->exit_code != 0) {
        char msg[400];
        refresh_job_out_message(res, "pg_restore", msg, sizeof msg);
        if (msg[0] == '\0')
            refresh_job_out_message(res, "sync", msg, sizeof msg);
        refresh_job_fail(j, "the dump file does not read back (pg_restore --list): %s",
                 msg[0] ? msg : res->timed_out ? "timed out" : "failed");
        return false;
    }
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/dump.partial", j->tmpdir);
    if (stat(path, &st) != 0 || st.st_size == 0) {
        refresh_job_fail(j, "the dump file is empty");
        return false;
    }
    j->rec.bytes = (int64_t)st.st_size;
    return true;
}

int refresh_dump_verify_enter(job_t *j)
{
    char *restore = refresh_job_client(j, "pg_restore", false);
    char *cmd = restore ? refresh_xasprintf("%s --list dump.partial >/dev/null && sync dump.partial",
                                    restore) : NULL;
    free(restore);
    if (cmd == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    int rc = refresh_job_cmd(j, cmd, VERIFY_TIMEOUT_MS, verify_done);
    free(cmd);
    return rc;
}

static bool postdata_done(job_t *j, const proc_result *res)
{
    if (res->timed_out || res->exit_code != 0) {
        char msg[400];
        refresh_job_out_message(res, "pg_restore", msg, sizeof msg);
        refresh_job_fail(j, "pg_restore of indexes and constraints failed: %s",
                 msg[0] ? msg : res->timed_out ? "timed out" : "failed");
        return false;
    }
    return true;
}

int refresh_dump_postdata_enter(job_t *j)
{
    char *restore = refresh_job_client(j, "pg_restore", false), *dst = refresh_sh_quote(j->c_new);
    char *cmd = restore && dst
        ? refresh_xasprintf("%s --section=post-data -j %lld --exit-on-error%s -d %s dump.partial",
                    restore, (long long)j->jobs, owner_opts(j), dst)
        : NULL;
    free(restore);
    free(dst);
    if (cmd == NULL) {
        refresh_job_fail(j, "out of memory");
        return PHASE_FAILED;
    }
    int rc = refresh_job_cmd(j, cmd, COPY_TIMEOUT_MS, postdata_done);
    free(cmd);
    return rc;
}

static bool fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

/* The copy is live: give the file its final name (never replacing one),
 * then apply retention. Soft: the backup is refreshed whatever happens. */
int refresh_dump_keep_enter(job_t *j)
{
    char from[PATH_MAX], to[PATH_MAX];
    snprintf(from, sizeof from, "%s/dump.partial", j->tmpdir);
    for (int seq = 0; seq < 100; seq++) {
        refresh_dump_name(j->rec.started_at, seq, j->final_name, sizeof j->final_name);
        snprintf(to, sizeof to, "%s/%s", j->dir, j->final_name);
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) {
            if (!fsync_dir(j->dir))
                log_warn("refresh: cannot fsync %s: %s", j->dir, strerror(errno));
            str_copy(j->rec.file, to, sizeof j->rec.file);
            log_info("refresh %" PRId64 ": dump kept as %s (%" PRId64 " bytes)", j->rec.id, to, j->rec.bytes);
            refresh_retention_apply(j->dir, j->keep, j->max_age_ms, wall_ms(), j->final_name);
            return PHASE_OK;
        }
        if (errno != EEXIST)
            break;
    }
    refresh_job_fail(j, "the backup was refreshed but the dump file could not be moved to %s: %s",
             to, strerror(errno));
    return PHASE_FAILED;
}
