/* breaker.c - a pure circuit breaker. The transitions live in one table;
 * breaker_record/breaker_tick find the row that applies and fire it.
 * No I/O, no clock of its own: the caller passes `now`. */
#include "drd/health/breaker.h"
#include "drd/core/util.h"

#include <stdio.h>
#include <string.h>

typedef enum { EV_SUCCESS, EV_FAILURE, EV_TICK } breaker_event;

typedef struct {
    breaker_state from;
    breaker_event event;
    breaker_state to;
    /* Does this row fire, given the counters after the event is counted? */
    bool (*guard)(const breaker_t *b, int64_t now);
    const char *comment;
} breaker_row;

static bool enough_failures(const breaker_t *b, int64_t now)
{
    (void)now;
    return b->fail_streak >= b->p.failures;
}

static bool enough_successes(const breaker_t *b, int64_t now)
{
    (void)now;
    return b->ok_streak >= b->p.successes;
}

static bool always(const breaker_t *b, int64_t now)
{
    (void)b;
    (void)now;
    return true;
}

static bool cooled_down(const breaker_t *b, int64_t now)
{
    return now - b->since >= b->p.cooldown_ms;
}

static const breaker_row transitions[] = {
    { BREAKER_CLOSED,    EV_FAILURE, BREAKER_OPEN,      enough_failures,  "consecutive failures reached the threshold" },
    { BREAKER_OPEN,      EV_TICK,    BREAKER_HALF_OPEN, cooled_down,      "cooldown elapsed, trying again" },
    { BREAKER_HALF_OPEN, EV_SUCCESS, BREAKER_CLOSED,    enough_successes, "consecutive successes while half-open" },
    { BREAKER_HALF_OPEN, EV_FAILURE, BREAKER_OPEN,      always,           "failure while half-open" },
};

static const char *const state_names[] = { "closed", "open", "half_open" };

const char *breaker_state_name(breaker_state s)
{
    return (unsigned)s < ARRAY_LEN(state_names) ? state_names[s] : "unknown";
}

bool breaker_state_parse(const char *s, breaker_state *out)
{
    for (size_t i = 0; i < ARRAY_LEN(state_names); i++)
        if (strcmp(s, state_names[i]) == 0) {
            *out = (breaker_state)i;
            return true;
        }
    return false;
}

void breaker_init(breaker_t *b, const breaker_params *p, breaker_state initial, int64_t now)
{
    memset(b, 0, sizeof *b);
    breaker_set_params(b, p);
    b->state = initial;
    b->since = now;
}

void breaker_set_params(breaker_t *b, const breaker_params *p)
{
    b->p = *p;
    if (b->p.failures < 1)
        b->p.failures = 1;
    if (b->p.successes < 1)
        b->p.successes = 1;
    if (b->p.cooldown_ms < 0)
        b->p.cooldown_ms = 0;
}

static bool fire(breaker_t *b, breaker_event ev, int64_t now, breaker_transition *t)
{
    for (size_t i = 0; i < ARRAY_LEN(transitions); i++) {
        const breaker_row *r = &transitions[i];
        if (r->from != b->state || r->event != ev || !r->guard(b, now))
            continue;
        if (t != NULL) {
            t->from = b->state;
            t->to = r->to;
            if (ev == EV_FAILURE && r->to == BREAKER_OPEN && r->from == BREAKER_CLOSED)
                snprintf(t->reason, sizeof t->reason, "%d consecutive failures", b->fail_streak);
            else if (ev == EV_SUCCESS)
                snprintf(t->reason, sizeof t->reason, "%d consecutive successes while half-open", b->ok_streak);
            else
                snprintf(t->reason, sizeof t->reason, "%s", r->comment);
        }
        b->state = r->to;
        b->since = now;
        /* A fresh state starts fresh counts for what it is waiting for. */
        if (r->to == BREAKER_HALF_OPEN)
            b->ok_streak = b->fail_streak = 0;
        return true;
    }
    return false;
}

bool breaker_record(breaker_t *b, bool success, int64_t now, breaker_transition *t)
{
    /* While OPEN results are only counted: the way out is breaker_tick
     * after the cooldown (the caller arms a timer with
     * breaker_next_deadline), so every transition is reported. */
    if (success) {
        b->ok_streak++;
        b->fail_streak = 0;
    } else {
        b->fail_streak++;
        b->ok_streak = 0;
    }
    return fire(b, success ? EV_SUCCESS : EV_FAILURE, now, t);
}

bool breaker_tick(breaker_t *b, int64_t now, breaker_transition *t)
{
    return fire(b, EV_TICK, now, t);
}

int64_t breaker_next_deadline(const breaker_t *b, int64_t now)
{
    if (b->state != BREAKER_OPEN)
        return -1;
    int64_t left = b->since + b->p.cooldown_ms - now;
    return left > 0 ? left : 0;
}
