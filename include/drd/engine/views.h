/* views.h - rows of the state database as the API's JSON objects: the one
 * place the loop (the status's run and approvals), GET
 * /api/{events,incidents,runs,refreshes,drills} and drctl
 * (reading the file when drd is down) build them, so both always agree.
 * The add_* functions are store callbacks: arg is the json array to append
 * to; they return false only when out of memory. */
#ifndef DRD_VIEWS_H
#define DRD_VIEWS_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "drd/store/store.h"

bool views_add_event(const store_event *e, void *arr);
bool views_add_incident(const store_incident *i, void *arr);
bool views_add_refresh(const store_refresh *r, void *arr);
bool views_add_drill(const store_drill *d, void *arr);
/* A run with its steps (output too with with_output) and approvals
 * (GET /api/runs/{id}, drctl history, the status's "run"); NULL if none. */
json_t *views_run(store_t *st, int64_t run_id, bool with_output);
/* Every pending approval, with the name of the step it is about. */
json_t *views_approvals_pending(store_t *st);
/* The newest limit runs, with their steps (no output) and approvals. */
bool views_runs(store_t *st, int limit, json_t *arr);

#endif
