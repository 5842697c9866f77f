/* privs.h - what drd's own role needs on each side, per runbook action, in
 * one list (privs.c's rule table): table privileges (SELECT, INSERT,
 * UPDATE, DELETE, TRUNCATE, TRIGGER), sequence privileges (SELECT, UPDATE),
 * schema USAGE, CREATE/TEMPORARY on the app's database, ownership of the
 * database (also through membership in its owner role), the role
 * attributes (REPLICATION, CREATEROLE, CREATEDB, SUPERUSER) and SET on
 * session_replication_role.
 *
 * The same list serves `drctl check` (privileges-primary/-backup), the dry
 * run (each step's prerequisite), the run's preflight (before stop-app)
 * and `drctl grants`: a need is expanded against the real objects of the
 * app's database (every table and sequence sync, capture and
 * bump-sequences touch), tested with has_*_privilege()/pg_has_role() for
 * the configured role, and a missing one is reported with the statement
 * that fixes it, with real names. */
#ifndef DRD_PRIVS_H
#define DRD_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "drd/conf/config.h"
#include "drd/conf/runbook.h"

typedef enum { PRIV_PRIMARY = 0, PRIV_BACKUP = 1 } privs_side;

typedef struct privs_need privs_need;

/* The needs of a set of steps (and of [refresh] mode), with the config
 * values they are expanded with, copied: a list outlives its config and
 * can be evaluated on a worker thread. */
typedef struct {
    privs_need *v;
    size_t n;
    char *schemas, *exclude;     /* [sync] */
    char *app_user[2];           /* the app's role on each side (from app_url), or NULL */
} privs_list;

/* Every need of both configured runbooks and of [refresh] mode. false on
 * a runbook that does not load (err says why) or out of memory. */
bool privs_for_config(privs_list *l, const config_t *cfg, char *err, size_t errlen);
/* The needs of these steps of a run of kind ("failover" | "failback"). */
bool privs_for_steps(privs_list *l, const config_t *cfg, const char *kind,
                     const runbook_step *steps, size_t n);
void privs_list_free(privs_list *l);                 /* accepts a zeroed list */

/* Whether side has needs, and whether one of them must be met now (all
 * but a fence that may be left pending when the side is unreachable). */
bool privs_side_used(const privs_list *l, privs_side side, bool *required);

/* Blocking connection to side's app database (the database of its
 * app_url) with drd's url and password; the connect and every
 * pgconn_exec on it within timeout_ms each (a timeout the client keeps: no
 * session state, so a transaction-mode pooler will do). NULL with err
 * (masked). */
PGconn *privs_connect(const config_target *t, const char *dbname, int64_t timeout_ms,
                      const char *app_name, char *err, size_t errlen);
/* The role a side's url connects as ("" when the URL names none: then
 * the connection's current_user is meant). */
void privs_role(const config_target *t, char *out, size_t n);

/* Test every need of side on c (connected to that side's app database).
 * Appends to items one object per lacking object:
 *   {"side", "object", "privileges", "what", "needed_by": [...], "fix", "optional"}
 * (fix: the statement, e.g. GRANT SELECT ON TABLE public.orders TO drd;).
 * false with err when a query failed. */
bool privs_check(const privs_list *l, privs_side side, PGconn *c, const char *role,
                 json_t *items, char *err, size_t errlen);

/* The SQL that gives role what side needs (malloc'd text, one statement a
 * line, comments for what is optional or already given to PUBLIC); NULL
 * with err when a query failed. */
char *privs_grants(const privs_list *l, privs_side side, PGconn *c, const char *role,
                   char *err, size_t errlen);

/* Items (privs_check's) as one line: "table public.orders: SELECT, INSERT
 * (failback: sync-back); ..." and their fixes joined with spaces. Only the
 * items needed by label (e.g. "failover: capture"; NULL = all) and
 * optional or not as asked. */
void privs_summary(const json_t *items, const char *label, bool optional,
                   char *reason, size_t rn, char *fix, size_t fn);

#endif
