/* choices.h - the configuration's choices as enums with name tables.
 * config_load parses each choice once into its enum (config_t's fields);
 * code compares the enums, never the text. Each *_names table is indexed
 * by its enum and NULL-terminated (the option table's word list, the
 * text `drd -n -v` prints). The first name of each table is not always
 * the default: the option table (config_options.c) holds the defaults. */
#ifndef DRD_CHOICES_H
#define DRD_CHOICES_H

#include <stdbool.h>

typedef enum { FAILOVER_AUTO = 0, FAILOVER_APPROVE, FAILOVER_MANUAL } failover_mode;
typedef enum { FENCE_READ_ONLY = 0, FENCE_NOLOGIN, FENCE_COMMAND, FENCE_NONE } fence_mode;
typedef enum { METRICS_OPEN = 0, METRICS_TOKEN } metrics_access;
typedef enum { NOTIFY_SLACK = 0, NOTIFY_JSON } notify_format;
typedef enum { NO_PK_COPY = 0, NO_PK_REFUSE } no_pk_mode;
typedef enum { CONFLICTS_ASK = 0, CONFLICTS_BACKUP_WINS, CONFLICTS_PRIMARY_WINS } conflicts_mode;
typedef enum { SYNC_MODE_INCREMENTAL = 0, SYNC_MODE_FULL } sync_mode;
typedef enum { REFRESH_OFF = 0, REFRESH_DUMP, REFRESH_LOGICAL, REFRESH_RECONCILE } refresh_mode;
typedef enum { DELETES_AUTO = 0, DELETES_LEDGER, DELETES_COMPARE } deletes_mode;

extern const char *const failover_mode_names[];
extern const char *const fence_mode_names[];
extern const char *const metrics_access_names[];
extern const char *const notify_format_names[];
extern const char *const no_pk_mode_names[];
extern const char *const conflicts_mode_names[];
extern const char *const sync_mode_names[];
extern const char *const refresh_mode_names[];
extern const char *const deletes_mode_names[];

/* The index of s in a NULL-terminated name table; false if absent. */
bool choice_parse(const char *const *names, const char *s, int *out);

/* A choice's name ("?" when out of range). */
const char *failover_mode_name(failover_mode m);
const char *fence_mode_name(fence_mode m);
const char *no_pk_mode_name(no_pk_mode m);
const char *conflicts_mode_name(conflicts_mode m);
const char *sync_mode_name(sync_mode m);
const char *refresh_mode_name(refresh_mode m);
const char *deletes_mode_name(deletes_mode m);
bool refresh_mode_parse(const char *s, refresh_mode *out);
bool conflicts_mode_parse(const char *s, conflicts_mode *out);

#endif
