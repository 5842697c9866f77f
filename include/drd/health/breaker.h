/* breaker.h - a pure circuit breaker with an injected clock.
 *   CLOSED    --failures consecutive failures-->  OPEN
 *   OPEN      --cooldown elapsed (breaker_tick)->  HALF_OPEN
 *   HALF_OPEN --successes consecutive successes-> CLOSED
 *   HALF_OPEN --one failure-->                    OPEN
 * While OPEN, probe results are counted for display but do not move it. */
#ifndef DRD_BREAKER_H
#define DRD_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 } breaker_state;

typedef struct {
    int failures;           /* consecutive failures that open it (>= 1) */
    int successes;          /* consecutive successes in half-open that close it (>= 1) */
    int64_t cooldown_ms;    /* time spent OPEN before HALF_OPEN */
} breaker_params;

typedef struct {
    breaker_state from, to;
    char reason[128];
} breaker_transition;

typedef struct {
    breaker_params p;
    breaker_state state;
    int fail_streak;        /* consecutive failures seen (any state) */
    int ok_streak;          /* consecutive successes seen (any state) */
    int64_t since;          /* clock value when the current state began */
} breaker_t;

void breaker_init(breaker_t *b, const breaker_params *p, breaker_state initial, int64_t now);
/* Change parameters (config reload) without changing the state. */
void breaker_set_params(breaker_t *b, const breaker_params *p);
/* Feed one probe outcome. Returns true and fills *t if the state changed. */
bool breaker_record(breaker_t *b, bool success, int64_t now, breaker_transition *t);
/* Time-driven transitions (OPEN -> HALF_OPEN). Returns true on a change. */
bool breaker_tick(breaker_t *b, int64_t now, breaker_transition *t);
/* ms until breaker_tick could change something, or -1 if never. */
int64_t breaker_next_deadline(const breaker_t *b, int64_t now);

const char *breaker_state_name(breaker_state s);      /* "closed" ... */
bool breaker_state_parse(const char *s, breaker_state *out);

#endif
