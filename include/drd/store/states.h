/* states.h - the state file's states as enums with name tables: targets,
 * run, step, approval and refresh states, approval kinds. The names are the text
 * SQLite, the API and the page carry (the contract); code compares the
 * enums, never the text. *_parse returns false for an unknown name. */
#ifndef DRD_STATES_H
#define DRD_STATES_H

#include <stdbool.h>

typedef enum { TARGET_PRIMARY = 0, TARGET_BACKUP = 1, TARGET_COUNT = 2 } target_id;
const char *target_name(target_id t);                 /* "primary" | "backup" */
bool target_parse(const char *s, target_id *out);
/* The target named s: the backup only when s names it, else the primary. */
target_id target_or_primary(const char *s);

typedef enum { RUN_RUNNING = 0, RUN_WAITING, RUN_SUCCEEDED, RUN_FAILED, RUN_ABORTED, RUN_STATE_COUNT } run_state;
const char *run_state_name(run_state s);
bool run_state_parse(const char *s, run_state *out);
/* running and waiting are active; the others are final. */
bool run_state_final(run_state s);
/* The state named s, or RUN_STATE_COUNT when unknown. */
run_state run_state_of(const char *s);

typedef enum {
    STEP_PENDING = 0, STEP_RUNNING, STEP_DONE, STEP_FAILED, STEP_SKIPPED, STEP_NEEDS_ATTENTION,
    STEP_STATE_COUNT
} step_state;
const char *step_state_name(step_state s);
bool step_state_parse(const char *s, step_state *out);
step_state step_state_of(const char *s);          /* STEP_STATE_COUNT when unknown */

typedef enum { APPROVAL_PENDING = 0, APPROVAL_APPROVED, APPROVAL_REJECTED, APPROVAL_EXPIRED,
               APPROVAL_STATE_COUNT } approval_state;
const char *approval_state_name(approval_state s);
bool approval_state_parse(const char *s, approval_state *out);
approval_state approval_state_of(const char *s);  /* APPROVAL_STATE_COUNT when unknown */

typedef enum { APPROVAL_POLICY = 0, APPROVAL_STEP, APPROVAL_ATTENTION, APPROVAL_KIND_COUNT } approval_kind;
const char *approval_kind_name(approval_kind k);
bool approval_kind_parse(const char *s, approval_kind *out);
approval_kind approval_kind_of(const char *s);    /* APPROVAL_KIND_COUNT when unknown */

/* A backup refresh's state (store_refresh.state). */
typedef enum { REFRESH_RUNNING = 0, REFRESH_SUCCEEDED, REFRESH_FAILED, REFRESH_REFUSED,
               REFRESH_STATE_COUNT } refresh_state;
const char *refresh_state_name(refresh_state s);
refresh_state refresh_state_of(const char *s);    /* REFRESH_STATE_COUNT when unknown */

#endif
