/* check_refresh.h - the `refresh` check of drctl check (check_refresh.c):
 * reconcile mode's tables (by change column, copied whole, not refreshed)
 * and the egress the schedule alone makes against [refresh] egress_budget. */
#ifndef DRD_CHECK_REFRESH_H
#define DRD_CHECK_REFRESH_H

#include <stddef.h>
#include <stdint.h>

#include "drd/conf/config.h"

/* 0 ok, 1 warn, 2 fail; reason and fix filled (fix "" when none).
 * Blocking (libpq), within timeout_ms. */
int check_refresh_eval(const config_t *cfg, int64_t timeout_ms, char *reason, size_t n, char *fix, size_t fn);

#endif
