/* choices.h - the configuration's choices as enums with name tables.
 * The config file keeps each choice as its text (the option table checks
 * it against the same names, and `drd -n -v` prints it); code asks for the
 * enum through the config_*() accessors below instead of comparing text.
 * Each *_names table is indexed by its enum and NULL-terminated (the option
 * table's word list). */
#ifndef DRD_CHOICES_H
#define DRD_CHOICES_H

#include <stdbool.h>

struct config;

typedef enum { FAILOVER_AUTO = 0, FAILOVER_APPROVE, FAILOVER_MANUAL } failover_mode;
typedef enum { FENCE_READ_ONLY = 0, FENCE_NOLOGIN, FENCE_COMMAND, FENCE_NONE } fence_mode;
typedef enum { METRICS_OPEN = 0, METRICS_TOKEN } metrics_access;
typedef enum { NOTIFY_SLACK = 0, NOTIFY_JSON } notify_format;
typedef enum { NO_PK_COPY = 0, NO_PK_REFUSE } no_pk_mode;
typedef enum { CONFLICTS_ASK = 0, CONFLICTS_BACKUP_WINS, CONFLICTS_PRIMARY_WINS } conflicts_mode;
typedef enum { SYNC_MODE_INCREMENTAL = 0, SYNC_MODE_FULL } sync_mode;
typedef enum { REFRESH_OFF = 0, REFRESH_DUMP, REFRESH_LOGICAL, REFRESH_RECONCILE } refresh_mode;

extern const char *const failover_mode_names[];
extern const char *const fence_mode_names[];
extern const char *const metrics_access_names[];
extern const char *const notify_format_names[];
extern const char *const no_pk_mode_names[];
extern const char *const conflicts_mode_names[];
extern const char *const sync_mode_names[];
extern const char *const refresh_mode_names[];

/* The index of s in a NULL-terminated name table; false if absent. */
bool choice_parse(const char *const *names, const char *s, int *out);

const char *failover_mode_name(failover_mode m);
bool failover_mode_parse(const char *s, failover_mode *out);
const char *refresh_mode_name(refresh_mode m);
bool refresh_mode_parse(const char *s, refresh_mode *out);
const char *conflicts_mode_name(conflicts_mode m);
bool conflicts_mode_parse(const char *s, conflicts_mode *out);

/* The configured choice; the option's default when unset (a config built
 * by hand in a test). */
failover_mode config_failover_mode(const struct config *c);
fence_mode config_fence_mode(const struct config *c);
metrics_access config_metrics_access(const struct config *c);
notify_format config_notify_format(const struct config *c);
no_pk_mode config_no_pk(const struct config *c);
conflicts_mode config_conflicts(const struct config *c);
sync_mode config_sync_mode(const struct config *c);
refresh_mode config_refresh_mode(const struct config *c);

#endif
