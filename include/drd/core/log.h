/* log.h - leveled logging to stderr, journald-friendly, secrets masked. */
#ifndef DRD_LOG_H
#define DRD_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR } log_level;

/* "debug", "info", "warn", "error", indexed by log_level, NULL-terminated. */
extern const char *const log_level_names[];
void log_set_level(log_level lvl);
bool log_parse_level(const char *s, log_level *out);
/* With journal=true lines carry "<N>" syslog prefixes instead of timestamps
 * (set when stderr is the journal, JOURNAL_STREAM). */
void log_set_journal(bool journal);
/* Register a literal secret (token, password) that must never be printed
 * (mask_add_secret: no limit, any length, see mask.h). Copies the string. */
void log_add_secret(const char *secret);
void log_clear_secrets(void);

void log_msg(log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

/* Mask buf in place (mask_dup: registered secrets and every parsed form),
 * cut to n on a UTF-8 boundary. */
void log_mask(char *buf, size_t n);

#endif
