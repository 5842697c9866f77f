/* config_int.h - what the files of drd.conf's loader share (not a
 * contract with other modules; see include/drd/conf/config.h for that).
 *
 *   config.c          loading: the load context, entries, secrets, checks
 *                     across options, errors; config_get, config_expand
 *   config_options.c  the option table, setting one option, dump, restart
 *   config_drill.c    the drill environment ([drill] replaces the real one)
 *   ini.c             the INI reader (shared with runbook files), strings
 */
#ifndef DRD_CONF_CONFIG_INT_H
#define DRD_CONF_CONFIG_INT_H

#include "drd/conf/config.h"
#include "drd/core/cron.h"
#include "drd/core/log.h"
#include "drd/core/strbuf.h"
#include "drd/core/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_FILE_MAX (64 * 1024)
#define MS_S  INT64_C(1000)
#define MS_M  (60 * MS_S)
#define MS_H  (60 * MS_M)


typedef enum {
    OPT_STRING,
    OPT_PATH,         /* relative paths resolve against the config's dir */
    OPT_SECRET_FILE,  /* a PATH whose first line is read into .secret */
    OPT_URL,          /* postgresql:// URL or key=value conninfo */
    OPT_DURATION,     /* milliseconds; .min/.max in ms */
    OPT_INT,
    OPT_BOOL,
    OPT_ENUM,         /* one of .words */
} opt_type;

enum {
    OPT_REQUIRED    = 1 << 0,
    OPT_SECRET      = 1 << 1,  /* may hold a password or token: mask it */
    OPT_RESTART     = 1 << 2,  /* not reloadable: SIGHUP cannot change it */
    OPT_DEFAULT_URL = 1 << 3,  /* default: the url of the same section */
};

typedef struct {
    const char *section, *key;
    opt_type type;
    size_t offset;              /* of the field in config_t */
    const char *def;            /* default, as it would be written; or NULL */
    int64_t min, max;           /* OPT_INT, OPT_DURATION */
    const char *const *words;   /* OPT_ENUM, NULL-terminated */
    unsigned flags;
    size_t secret;              /* OPT_SECRET_FILE: field for the contents */
    bool (*check)(const char *value);  /* extra validation */
    const char *hint;           /* shown when check fails */
} config_option;


/* The option table (config_options.c). */
extern const config_option config_options[];
extern const size_t config_n_options;
#define N_OPTIONS config_n_options
#define CONFIG_OPTIONS_MAX 256   /* bound of the per-option arrays below */

typedef struct {
    config_t *c;
    const char *path;            /* as given by the caller, for messages */
    config_errors errs;          /* sorted by line before handing back */
    bool set[CONFIG_OPTIONS_MAX];         /* the file gave a value (even a bad one) */
    int header_line[CONFIG_OPTIONS_MAX];  /* per cfg_section_index(): first [header] */
} load_ctx;

/* config.c */
void cfg_load_error(load_ctx *x, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool config_on_entry(void *arg, const char *section, const char *key,
                     const char *value, int line);

/* ini.c */
size_t cfg_edit_distance(const char *a, const char *b);
void cfg_format_ms(int64_t ms, char *buf, size_t n);
bool ini_parse(const char *path, ini_entry_fn on_entry, void *arg,
               config_errors *errs, bool *unreadable);

/* config_options.c */
char **cfg_field_str(const config_t *c, size_t offset);
bool cfg_opt_is_string(const config_option *o);
const config_option *cfg_option_find(const char *section, const char *key);
int cfg_section_index(const char *section);
void cfg_option_set(load_ctx *x, const config_option *o, const char *v, int line);

/* config_drill.c */
bool config_drill_read(load_ctx *x, const char *path);

#endif
