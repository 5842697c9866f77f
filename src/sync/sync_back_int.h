/* sync_back_int.h - what sync_back.c and sync_back_check.c share: a
 * sync-back's state (not a contract with other modules). */
#ifndef DRD_SYNC_BACK_INT_H
#define DRD_SYNC_BACK_INT_H

#include "sync_int.h"

typedef struct {
    stable *t;               /* in the backup's catalog */
    size_t idx;              /* temp table suffix */
    int64_t entries;
    bool whole;              /* copy the whole table */
    bool skip;               /* whole table already equal (or kept: primary-wins) */
    bool whole_conflict;     /* keyless: the primary's table changed since capture too */
    bool text;               /* COPY rows in text format */
    int64_t n_apply, n_same, n_conflict;
    int64_t written, deleted;
    int64_t ms;
} changed;

typedef struct {
    sync_ctx *c;
    sconn b, p;
    scatalog bcat, pcat;
    changed *ch;
    size_t nch;
    bool replica;            /* session_replication_role = replica on the primary */
    bool primary_wins, backup_wins;
    sbuf q, q2;
} backctx;

/* sync_back_check.c: the ledger and its triggers on the backup, the
 * primary role's privileges, the conflict report, the keyless tables'
 * fingerprints after a pass. Each false = the job failed (logged). */
bool back_check_ledger(backctx *x);
bool back_check_triggers(backctx *x);
bool back_check_privileges(backctx *x);
bool back_report_conflicts(backctx *x, int64_t total);
bool back_keyless_fingerprints(backctx *x);

#endif
