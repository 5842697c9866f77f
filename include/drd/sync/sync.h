/* sync.h - moving the writes made on the backup during an outage back to
 * the primary, without losing any:
 *
 *   capture    on the backup: schema "drd" with a change ledger and an
 *              AFTER INSERT/UPDATE/DELETE (row) + TRUNCATE (statement)
 *              trigger on every table of [sync] schemas minus exclude;
 *              idempotent. Tables without a primary key (or replica
 *              identity) are listed and handled per [sync] no_pk.
 *   uncapture  removes the triggers and the drd schema from the backup.
 *   sync-back  replays the ledger to the primary: per changed key, delete it
 *              there and COPY the backup's current row in; sequences set to
 *              at least the backup's values. Conflicts (the primary's row
 *              differs from the row image captured before the key's first
 *              outage change) are detected before anything is written and,
 *              with [sync] conflicts = ask, reported without writing.
 *              Idempotent: replaying twice gives the same result.
 *   verify     per table, row count and an order-independent checksum
 *              computed by each server; any mismatch fails (extra primary
 *              rows excepted), and so does any foreign key touching a
 *              synced table that the primary's rows violate. After an
 *              online pre-sync of the same run: every key the outage
 *              touched (and changed keyless tables), see sync_window.c;
 *              the foreign keys were checked whole online, the tail's rows
 *              by sync-back.
 *   pre-sync   (sync-back with online = true) while the app still runs on
 *              the backup: the ledger replayed in passes, each recorded on
 *              the backup (drd.passes) with its snapshot, so that the next
 *              sync-back replays only what came after; a full verify
 *              against one snapshot of the backup, kept per table
 *              (drd.verified).
 *   full       whole tables backup -> primary with COPY streamed between the
 *              two connections, several tables at once, from one snapshot.
 *   converge   the other way, after a verified failback: the backup made
 *              equal to the primary, table by table, moving only the rows
 *              that differ (logical mode, before the subscription is
 *              recreated without a copy).
 *
 * All database work runs on a worker thread with its own blocking libpq
 * connections; the loop only sees the completion (and progress lines),
 * so it never blocks. One job at a time per call. */
#ifndef DRD_SYNC_H
#define DRD_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "drd/conf/config.h"
#include "drd/core/loop.h"

typedef enum { SYNC_CAPTURE, SYNC_UNCAPTURE, SYNC_BACK, SYNC_VERIFY, SYNC_FULL, SYNC_CONVERGE } sync_op;

/* How conflicts are resolved for this job: from [sync] conflicts, or
 * overridden by an operator's decision ("backup-wins" | "primary-wins"). */
typedef struct {
    sync_op op;
    const char *resolution;      /* NULL = use [sync] conflicts */
    int64_t timeout_ms;          /* 0 = none; past it the job is cancelled (as by sync_job_free) and fails */
    bool resync;                 /* verify: first replay what the ledger has that was not applied
                                    yet (sync-back, with resolution), e.g. a late row */
    bool online;                 /* sync-back: the pre-sync passes (the app still runs) */
    int64_t run_id;              /* the run (stamps the online verify's results); 0 = none */
} sync_request;

typedef struct {
    bool ok;
    bool conflicts;              /* sync-back stopped on conflicts (nothing written) */
    char error[512];             /* why it failed, masked; "" when ok */
    const char *report;          /* progress + result text (tables, rows, seconds, conflicts with both rows), masked; valid during the callback */
    int64_t rows;                /* rows moved / verified */
    int64_t tables;
    int64_t duration_ms;
    /* rows known to differ between the two sides: verify, the backup's
     * rows the primary has other versions of, deleted, or does not have
     * yet (the outage never touched them; the primary's stand); converge,
     * the rows it found different (and copied or deleted on the backup) */
    int64_t differing;
} sync_result;

typedef void (*sync_done_cb)(void *arg, const sync_result *r);
typedef struct sync_job sync_job;

/* Start the job (copies what it needs from cfg). NULL with err on failure
 * to start. The callback runs once, from the loop, never from inside
 * sync_start; it may call sync_job_free. */
sync_job *sync_start(loop_t *loop, const config_t *cfg, const sync_request *req,
                     sync_done_cb cb, void *arg, char *err, size_t errlen);
/* Cancel and join; no callback. Accepts NULL. Cancelling shuts the job's
 * sockets down: its blocked libpq calls return at once and each server,
 * which checks its client every second, aborts the statement and rolls
 * back (PQcancel itself could hang on a frozen server). Bounded time. */
void sync_job_free(sync_job *j);

/* The report so far (progress lines: tables, rows, seconds), masked;
 * malloc'd, the caller frees it; NULL on OOM. Safe to call from the loop
 * while the job runs (e.g. on a timer, to show progress in the step's
 * output), never blocks on the database. */
char *sync_job_progress(const sync_job *j);

#endif
