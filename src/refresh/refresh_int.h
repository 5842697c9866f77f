/* refresh_int.h - internals of the refresh module, shared by src/refresh*.c
 * and tests/unit/test_refresh.c. Not a contract: include/drd/refresh.h is.
 *
 *   refresh.c          the object: schedule, interlock, records, status, lag
 *   refresh_job.c      one refresh as a table-driven sequence of phases, and
 *                      the phases both modes share (server versions, the
 *                      scratch database, the swap)
 *   refresh_dump.c     dump mode's own phases (pipeline, check, indexes, files)
 *   refresh_logical.c  logical mode: set-up phases, the watcher, the runbook
 *                      helpers
 *   refresh_util.c     pure helpers: conninfo, quoting, pgpass, file names,
 *                      retention, heartbeat lag, schedule arithmetic */
#ifndef DRD_REFRESH_INT_H
#define DRD_REFRESH_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drd/core/cron.h"
#include "drd/pg/pgexec.h"
#include "drd/core/proc.h"
#include "drd/refresh/refresh.h"

/* ---- connection strings (refresh_util.c) ----------------------------- */

/* A libpq URL or conninfo taken apart (PQconninfoParse), so that drd can
 * point it at another database of the same server and hand the password to
 * children through a pgpass file instead of argv. */
typedef struct {
    char **keys, **vals;     /* every keyword with a value, but password and passfile */
    size_t n;
    char *dbname;            /* from the URL, NULL if none */
    char *user;              /* from the URL, NULL if none */
    char *password;          /* the [x] password_file's, else the URL's; NULL = libpq finds it */
    char *passfile;          /* the URL's passfile=, NULL if none */
} rconn;

bool refresh_rconn_parse(const char *url, const char *password, rconn *out, char *err, size_t errlen);
void refresh_rconn_free(rconn *c);
/* A target's url (drd's role, host, TLS) and password, in the database its
 * app_url names (when it names one): refresh, capture, sync-back and
 * bump-sequences all work in the app's database, whatever url's names. */
bool refresh_rconn_parse_target(const config_target *t, rconn *out, char *err, size_t errlen);
/* "key='value' ..." (values quoted for libpq), dbname replaced by db when
 * db != NULL, the password included only when with_password. The URL's
 * passfile is kept only when !use_own_passfile. malloc'd, NULL on OOM. */
char *refresh_rconn_string(const rconn *c, const char *db, bool with_password, bool use_own_passfile);

/* Quoting. All malloc'd (NULL on OOM). */
char *refresh_sql_ident(const char *s);          /* "na""me" */
char *refresh_sql_literal(const char *s);        /* 'it''s' (standard_conforming_strings) */
char *refresh_sh_quote(const char *s);           /* 'it'\''s' for /bin/sh */
/* printf into a malloc'd string; NULL on OOM. */
char *refresh_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A pgpass file (mode 0600) whose one line matches any server. */
bool refresh_pgpass_write(const char *path, const char *password, char *err, size_t errlen);

/* The directory of pg_dump/pg_restore for a server version
 * (server_version_num): /usr/lib/postgresql/MAJOR/bin when it holds
 * pg_dump, else "" (= PATH). root: the directory holding the versions
 * (NULL = /usr/lib/postgresql), for tests. */
void refresh_pg_bindir(int version_num, const char *root, char *out, size_t n);

/* ---- dump files ----------------------------------------------------- */

#define DUMP_PREFIX "backup-"
#define DUMP_SUFFIX ".dump"
#define TMP_PREFIX  ".drd-refresh-"

/* backup-YYYY-MM-DD-HHMMSS.dump for wall ms (UTC); seq > 0 appends -N
 * (two dumps in one second). */
void refresh_dump_name(int64_t at_ms, int seq, char *buf, size_t n);
/* A name refresh_dump_name() could have made. */
bool refresh_dump_name_valid(const char *name);

typedef struct {
    char name[64];
    int64_t mtime_ms;
    bool remove;             /* set by refresh_retention_plan */
} dump_file;

/* Mark the files to delete: beyond the `keep` newest (by mtime, then name),
 * and those older than max_age_ms; never just_made (may be NULL). */
void refresh_retention_plan(dump_file *f, size_t n, int64_t keep, int64_t max_age_ms,
                    int64_t now_ms, const char *just_made);
/* List dir's dump files, plan and delete. Returns files deleted, -1 on a
 * listing error (logged). */
int refresh_retention_apply(const char *dir, int64_t keep, int64_t max_age_ms, int64_t now_ms,
                    const char *just_made);
/* rm -r of a directory drd made (files and one level of subdirectories). */
bool refresh_rm_tree(const char *dir);
/* Remove what a previous process left behind in dir (TMP_PREFIX entries). */
void refresh_dir_scrub(const char *dir);
/* The directory can hold dump files: exists (or can be created below its
 * nearest existing parent) and is writable. false with a reason. */
bool refresh_dir_usable(const char *dir, char *err, size_t errlen);

/* ---- heartbeat lag (logical mode) ------------------------------------- */

#define HB_RING 1024

typedef struct {
    int64_t seq[HB_RING];
    int64_t at[HB_RING];     /* wall ms when drd knew the heartbeat committed */
    size_t head;             /* next slot */
    size_t count;
} hb_log;

void refresh_hb_add(hb_log *h, int64_t seq, int64_t at_ms);
/* How far behind the backup was at as_of_ms (when its heartbeat row was
 * read), in ms: 0 when it had every heartbeat drd had committed by then;
 * otherwise as_of minus when the oldest heartbeat it lacked was committed,
 * or, when that one came more than max_gap_ms after the newest one it had
 * (a gap in the heartbeats), as_of minus when that newest one was
 * committed. seen_at_ms (the primary's clock, stored in the heartbeat row,
 * -1 unknown) stands in when drd's log does not cover seen_seq. -1 when
 * unknown. */
int64_t refresh_hb_lag_ms(const hb_log *h, int64_t seen_seq, int64_t seen_at_ms, int64_t as_of_ms,
                          int64_t max_gap_ms);
/* The wall ms the backup is known to be complete up to, 0 if unknown. */
int64_t refresh_hb_good_at(const hb_log *h, int64_t seen_seq, int64_t seen_at_ms);

/* ---- schedule ----------------------------------------------------------- */

/* The next scheduled start (wall ms), or 0 when neither `every` nor a
 * schedule is set. every: last_start + every, now if never started;
 * schedule: the next cron minute after now (no catch-up of missed ones);
 * the earlier of the two, never before not_before. */
int64_t refresh_schedule_next(int64_t every_ms, const cron_expr *cron, int64_t last_start_ms,
                      int64_t now_ms, int64_t not_before_ms);

/* "42 s", "3.5 s", "12 min", "3 h", "2 d" */
void refresh_format_age(double seconds, char *buf, size_t n);

/* Split s in place at sep (e.g. '\x1f'); up to max fields. Returns the count. */
size_t refresh_split_fields(char *s, char sep, char **fields, size_t max);

/* A subscription's state on the backup, as the SQL samples name it
 * ("enabled", "disabled", "missing"); broken: enabled, but the watcher
 * saw it fail (a full copy is due). */
typedef enum { SUB_UNKNOWN = 0, SUB_ENABLED, SUB_DISABLED, SUB_MISSING, SUB_BROKEN } subscription_state;
const char *refresh_sub_state_name(subscription_state s);   /* "" for SUB_UNKNOWN */
subscription_state refresh_sub_state_of(const char *s);      /* SUB_UNKNOWN when unknown */

/* ---- the object ----------------------------------------------------------- */

typedef struct job job_t;
typedef struct helper_op helper_op;
typedef struct rec_pass rec_pass;

/* A table reconcile mode keeps in step (refresh_reconcile.c). */
typedef struct {
    char *name;              /* schema.table, as the state database knows it */
    char *qname;             /* "schema"."table" */
    size_t ncols;
    char **cols;             /* quoted column names */
    char **types;            /* format_type() of each */
    size_t nkey;
    size_t *key;             /* the primary key: indexes into cols */
    int chg;                 /* the change column's index, -1 none */
    bool chg_time;           /* a time (the look-back applies) */
    bool trigger;            /* drd's delete triggers are in place on the source */
    size_t nrefs;
    char **refs;             /* tables it references (foreign keys), schema.table */
} rec_table;

typedef enum { REC_DELETES_UNKNOWN, REC_DELETES_LEDGER, REC_DELETES_COMPARE } rec_deletes;

/* What a key comparison did (refresh_compare.c). */
typedef struct {
    int64_t started_at, finished_at;   /* wall ms */
    size_t tables;
    int64_t ranges;          /* ranges whose digests were compared */
    int64_t differ;          /* of them, differing */
    int64_t keys_checked;    /* backup keys looked up on the source */
    int64_t deleted;         /* keys deleted on the backup */
    int64_t bytes;           /* read from the source */
} rec_compare_stats;

typedef struct {
    bool enabled;            /* logical mode and started */
    uint64_t timer;
    pgexec_t *beat_sql, *back_sql;  /* in-flight samples */
    pgexec_t *fp_prim, *fp_back;
    char fp_p[64], fp_b[64]; /* fingerprints of the last check, "" unknown */
    int fp_pending;
    int64_t next_fp_mono;
    hb_log hb;
    int64_t seen_seq, seen_at_ms;  /* newest heartbeat on the backup, -1 unknown */
    int64_t sampled_mono;    /* last successful backup sample, 0 never */
    int64_t back_started;    /* wall ms the sample in flight was started */
    int64_t sample_at;       /* wall ms the last successful sample was started */
    int64_t lag_at_sample;   /* the lag then, ms, -1 unknown */
    int64_t lag_bytes;       /* slot lag, -1 unknown */
    subscription_state sub_state;
    int64_t no_worker_since; /* mono ms since the worker is missing, 0 = it runs */
    int64_t errors_seen;     /* apply+sync error count at the last sample, -1 unknown */
    int64_t errors_base;     /* the count when the error was raised */
    char error[512];         /* what is wrong with replication now, "" none */
    char warned_error[512];  /* the last one recorded as an event */
    bool over_lag;           /* max_lag exceeded (event sent) */
    bool drift;              /* schema fingerprints differ (event sent) */
    bool auto_setup_done;    /* the one automatic set-up attempt was made */
    int64_t interval_ms;
    int64_t started_mono;    /* watch_start() */
    rconn prim, back;
    char *c_prim, *c_back;   /* conninfo (no password) */
    char *q_beat, *q_back, *q_fp;
} rwatch_t;

struct refresh {
    loop_t *loop;
    store_t *store;
    refresh_gate gate;
    const config_t *cfg;
    bool started;

    uint64_t sched_timer;
    int64_t next_at;               /* wall ms of the next scheduled start, 0 none */
    int64_t started_mono;          /* refresh_start(), for the first-run delay */
    int64_t last_attempt_at;       /* wall ms of the last scheduled attempt (refused ones too) */
    cron_expr cron;
    bool has_cron;

    job_t *job;                    /* the refresh running now, NULL if none */
    store_difference diff;         /* the last comparison of the two sides */
    bool has_diff;                 /* false: never compared */
    store_refresh last_good;       /* id 0 = none */
    char last_error[512];          /* the last refresh's error, "" if it succeeded */

    rwatch_t w;
    helper_op *ops;                /* runbook helpers in flight */
    int64_t watch_interval_ms;     /* 0 = default */
    void (*changed)(void *arg);    /* refresh_set_listener */
    void *changed_arg;

    /* reconcile mode */
    int64_t rec_good_at;           /* wall ms the last good pass started, 0 never */
    size_t rec_tables;             /* tables the last pass covered */
    int64_t rec_rows, rec_deleted; /* what the last pass copied / deleted */
    size_t rec_whole;              /* tables it copied whole */
    bool rec_warned_ledger;        /* the "no triggers" event was recorded */
    char *rec_catalog;             /* the source's catalog (JSON) of the last good pass */
    int64_t rec_catalog_at;        /* loop ms it was read and checked on the backup, 0 = stale */
    bool rec_back_super;           /* the backup's role is a superuser */
    int64_t rec_lb_at;             /* loop ms of the last look-back */
    int64_t rec_no_ledger_at;      /* loop ms the ledger was refused (deletes = auto), 0 = not */
    rec_deletes rec_deletes_by;    /* how the last pass found deletes */
    int64_t rec_cmp_at;            /* loop ms the last key comparison started, 0 never */
    rec_compare_stats cmp;         /* the last finished one (started_at 0: none) */
    /* egress (refresh_egress.c) */
    bool egress_over;              /* the projection exceeds the budget (warned) */
};

/* Tell the listener the status changed. */
void refresh_changed(refresh_t *r);

/* ---- one refresh: a sequence of phases (refresh_job.c) --------------------- */

typedef enum { JOB_DUMP, JOB_LOGICAL, JOB_RECONCILE } job_kind;

typedef enum {
    PH_PRIMARY_INFO,        /* primary: version (and, logical, its checks + publication) */
    PH_BACKUP_INFO,         /* backup: database name, superuser, version, subscription */
    PH_DB_SPEC,             /* backup: how the live database was created */
    PH_SCRUB_NEW,           /* scratch database left by a crash: drop its subscription */
    PH_PREPARE,             /* drop stale scratch databases, create the new one */
    PH_DUMP_COPY,           /* pg_dump | tee FILE | pg_restore pre-data + data */
    PH_DUMP_VERIFY,         /* pg_restore --list FILE, fsync it */
    PH_DUMP_POSTDATA,       /* pg_restore --section=post-data -j N */
    PH_LOG_PUBLISH,         /* primary: checks, heartbeat table, publication */
    PH_LOG_UNSUBSCRIBE,     /* backup: drop a disabled or broken subscription */
    PH_LOG_DROP_SLOT,       /* primary: drop the subscription's slot */
    PH_LOG_SCHEMA,          /* pg_dump -s | pg_restore into the new database */
    PH_LOG_SUBSCRIBE,       /* new database: CREATE SUBSCRIPTION (copy_data) */
    PH_LOG_SYNC,            /* wait until every table is copied and caught up */
    PH_LOG_PAUSE,           /* new database: disable the subscription for the swap */
    PH_SWAP,                /* rename live -> _drd_old, new -> live, in one transaction */
    PH_LOG_RESUME,          /* live database: enable the subscription again */
    PH_DUMP_KEEP,           /* rename the file into place, retention */
    PH_DONE,                /* the copy is live: record the success */
    PH_DROP_OLD,            /* drop the previous database (housekeeping) */
    PH_CLEAN_SCRUB,         /* failure: the scratch database's subscription */
    PH_CLEAN_SLOT,          /* failure: the slot it created */
    PH_CLEAN_DROP,          /* failure: the scratch database */
    PH_REC_PASS,            /* reconcile: one pass (refresh_reconcile.c) */
    PH_END,
} phase_id;

typedef bool (*job_sql_cb)(job_t *j, const char *value);
typedef bool (*job_cmd_cb)(job_t *j, const proc_result *res);

/* What a phase's enter function returns. */
#define PHASE_ASYNC   1     /* started: refresh_job_phase_done() follows */
#define PHASE_OK      0     /* done already (or nothing to do) */
#define PHASE_FAILED (-1)   /* failed now, j->error says why */

struct job {
    refresh_t *r;
    job_kind kind;
    store_refresh rec;
    const phase_id *seq;
    size_t n_seq, idx;
    phase_id phase;
    bool cleaning;           /* on the failure path */
    bool done_early;         /* nothing to do (logical, already replicating) */
    char error[512];         /* why the refresh failed */
    char clean_error[512];   /* a cleanup phase's failure (logged only) */

    rconn prim, back;
    char *c_prim;            /* conninfo of the primary (no password) */
    char *c_back;            /* the backup's live database */
    char *c_maint;           /* the backup's maintenance database */
    char *c_new;             /* the scratch database */
    char *db, *new_db, *old_db, *maint_db;
    bool superuser;
    int prim_version, back_version;
    subscription_state sub_state;  /* on the backup's live database */
    char bindir[PATH_MAX];   /* "" = PATH */
    char tmpdir[PATH_MAX];   /* private directory for this refresh, "" none */
    char final_name[64];
    char *create_sql;        /* CREATE DATABASE for the scratch database */
    char *settings_sql;      /* copies the live database's grants and settings */
    bool new_created, sub_created, swapped;
    bool recorded;           /* the outcome is in the store (PH_DONE) */

    pgexec_t *sql;
    bool again;              /* set by a refresh_job_sql callback: poll again, the phase goes on */
    job_sql_cb sql_cb;
    unsigned sql_flags;
    char sql_what[64];
    proc_t *proc;
    job_cmd_cb cmd_cb;
    int (*poll_fn)(job_t *j);
    uint64_t poll_timer, guard_timer;
    int64_t poll_started_mono, progress_mono;

    /* configuration copied at start: a reload does not change a running refresh */
    char *dir, *pub, *sub;
    int64_t jobs, keep, max_age_ms;

    rec_pass *rp;            /* reconcile: the pass under way */
    int64_t egress;          /* bytes read from the primary (recorded even on failure) */
};

/* The job driver's building blocks, for the phase functions. */
void refresh_job_phase_done(job_t *j, bool ok);
void refresh_job_fail(job_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Run statements on conninfo (password: which side's), then on_ok with the
 * last statement's value (may be NULL: nothing to check). */
#define JOB_SQL_MISSING_OK 1u   /* "... does not exist" counts as success */
int refresh_job_sql(job_t *j, const char *conninfo, const char *password, const char *const *stmts,
            size_t n, int64_t timeout_ms, job_sql_cb on_ok, const char *what, unsigned flags);
int refresh_job_cmd(job_t *j, const char *command, int64_t timeout_ms, job_cmd_cb on_exit);
/* Poll: call fn again after delay_ms (fn returns like an enter function). */
int refresh_job_poll_later(job_t *j, int64_t delay_ms, int (*fn)(job_t *j));
/* The shell words for a client program and its password file:
 * "PGPASSFILE='dir/x.pgpass' '/usr/lib/postgresql/15/bin/pg_dump'" (malloc'd). */
char *refresh_job_client(job_t *j, const char *program, bool primary_side);
/* Children report each program's exit status as a line "rc NAME N" on their
 * output (no files: the directory may be full): N, or -1 if absent. */
int refresh_job_out_rc(const proc_result *res, const char *name);
/* The message of program prog ("pg_dump", "tee"...) in a child's output:
 * its first line with "error", else its last line; one line, at most n. */
void refresh_job_out_message(const proc_result *res, const char *prog, char *out, size_t n);

/* dump phases (refresh_dump.c) */
int refresh_dump_copy_enter(job_t *j);
int refresh_dump_verify_enter(job_t *j);
int refresh_dump_postdata_enter(job_t *j);
int refresh_dump_keep_enter(job_t *j);
/* logical phases (refresh_logical.c) */
int refresh_logical_publish_enter(job_t *j);
int refresh_logical_unsubscribe_enter(job_t *j);
int refresh_logical_drop_slot_enter(job_t *j);
int refresh_logical_schema_enter(job_t *j);
int refresh_logical_subscribe_enter(job_t *j);
int refresh_logical_sync_enter(job_t *j);
int refresh_logical_pause_enter(job_t *j);
int refresh_logical_resume_enter(job_t *j);
int refresh_logical_clean_scrub_enter(job_t *j);
int refresh_logical_clean_slot_enter(job_t *j);
/* SQL: disable and drop the subscription `name` (NULL: every one) of the
 * connected database, without touching its slot on the primary. malloc'd. */
char *refresh_sql_drop_subscriptions(const char *name);
/* SQL: on the primary, wait up to 10 s for the slot to be released, then
 * drop it if it exists. malloc'd. */
char *refresh_sql_drop_slot(const char *slot);

/* egress (refresh_egress.c): after a refresh is recorded, warn (event and
 * notification) once when the month's projection crosses the budget.
 * now_ms: the wall clock (injected: tests script a month). */
void refresh_egress_watch(refresh_t *r, int64_t now_ms);

/* The last key comparison for the status: {started_at, ...}, null if none. */
json_t *refresh_compare_json(const rec_compare_stats *s);

/* reconcile (refresh_reconcile.c) */
int refresh_reconcile_pass_enter(job_t *j);
void refresh_reconcile_pass_free(rec_pass *p);     /* stops its SQL, no callback; accepts NULL */

/* refresh.c */
/* An event (kind "refresh", target "backup"), logged at warn or info. */
void refresh_record_event(refresh_t *r, bool warn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Why a refresh may not start now ("" = it may), for the interlock. */
bool refresh_interlock(const refresh_t *r, char *why, size_t n);
/* Record the job's outcome (store, events, status) once. */
void refresh_job_record(refresh_t *r, job_t *j);
/* A job ended (called by the job driver): record if not yet done, free it,
 * schedule the next. */
void refresh_job_ended(refresh_t *r, job_t *j);

/* refresh_job.c */
job_t *refresh_job_start(refresh_t *r, job_kind kind, int64_t id, const char *trigger, char *err, size_t errlen);
void refresh_job_free(job_t *j);                       /* kills children, no callbacks */
/* Fail now (cleanup runs); false when it is past the point of no return
 * (the swap) or already failing. */
bool refresh_job_abort(job_t *j, const char *why);
const char *refresh_job_phase_name(const job_t *j);

/* refresh_logical.c */
void refresh_watch_start(refresh_t *r);
void refresh_watch_stop(refresh_t *r);
void refresh_helpers_free(refresh_t *r);
int64_t refresh_watch_lag_ms(const refresh_t *r);
int64_t refresh_watch_good_at(const refresh_t *r);
/* Wall ms of the newest heartbeat drd wrote on the primary, 0 if none. */
int64_t refresh_watch_last_beat(const refresh_t *r);

/* kv key: the process group of the refresh's running child command
 * ("" or absent: none), recorded so a restarted drd can end it. */
#define REFRESH_PGID_KEY "refresh_pgid"

/* SQL: the current database's oid (for pg_subscription.subdbid). */
#define CUR_DB_OID "(SELECT oid FROM pg_database WHERE datname = current_database())"

#endif
