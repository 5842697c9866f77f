/* policy.c - see policy.h. */
#include "drd/engine/policy.h"
#include "drd/engine/policy_rules.h"
#include "drd/engine/approvals.h"
#include "drd/refresh/refresh.h"
#include "drd/core/log.h"
#include "drd/engine/steps.h"
#include "drd/core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_BLOCK_UNTIL     "policy_block_until"
#define KV_DECIDED_INCIDENT "policy_incident"
#define KV_BLOCKED_INCIDENT "policy_blocked_incident"   /* decided "no failover" because of the block */
#define POLICY_APPROVAL_EXPIRES_MS (3600LL * 1000)

struct policy {
    loop_t *loop;
    store_t *store;
    monitor_t *monitor;
    executor_t *ex;
    fetch_t *fetch;
    const config_t *cfg;
    uint64_t timer;              /* min_outage, or approval expiry */
    int64_t approval_id;         /* pending policy approval */
    step_run *fence;             /* fence-on-return in flight */
    int64_t fence_started;       /* monotonic, of the fence in flight */
    metrics_counters *counters;  /* may be NULL */
    int64_t fence_backoff_until; /* monotonic: don't retry a failed fence before */
    uint64_t block_timer;        /* republish when the block ends */
    int64_t down_since;          /* wall ms of the primary's first failed probe in a row, 0 = up */
    void (*on_change)(void *arg);
    void *change_arg;
    notify_t *notify;            /* may be NULL */
    refresh_t *refresh;          /* may be NULL */
    int64_t held_incident;       /* the incident whose hold (below) was last said */
    policy_hold held_why;        /* ... and why */
};

void policy_set_refresh(policy_t *p, struct refresh *r)
{
    p->refresh = r;
}

void policy_set_observers(policy_t *p, metrics_counters *c, notify_t *n)
{
    p->counters = c;
    p->notify = n;
}

static void tell(policy_t *p, const char *what, const char *text, int64_t approval_id)
{
    if (p->notify == NULL)
        return;
    json_t *f = approval_id > 0 ? json_pack("{s:I}", "approval_id", (json_int_t)approval_id) : NULL;
    notify_send(p->notify, what, text, f);
    json_decref(f);
}

static void event(policy_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void event(policy_t *p, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    mask_vformat(msg, sizeof msg, "\xE2\x80\xA6", fmt, ap);   /* masked whole, then cut */
    va_end(ap);
    log_info("policy: %s", msg);
    store_event_add(p->store, wall_ms(), "policy", target_name(TARGET_PRIMARY), msg);
    /* Every policy event is a change the status may show. */
    if (p->on_change != NULL)
        p->on_change(p->change_arg);
}

void policy_set_change_cb(policy_t *p, void (*cb)(void *arg), void *arg)
{
    p->on_change = cb;
    p->change_arg = arg;
}

static int64_t kv_int(policy_t *p, const char *key)
{
    char v[32];
    if (!store_kv_get(p->store, key, v, sizeof v) || v[0] == '\0')
        return 0;
    return strtoll(v, NULL, 10);
}

static void kv_put_int(policy_t *p, const char *key, int64_t n)
{
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)n);
    store_kv_set(p->store, key, v);
}

static int64_t current_incident(policy_t *p)
{
    int64_t id = store_incident_find_open(p->store, target_name(TARGET_PRIMARY));
    return id > 0 ? id : 0;
}

static void evaluate(policy_t *p);

static void on_block_end(loop_t *loop, void *arg)
{
    policy_t *p = arg;
    (void)loop;
    p->block_timer = 0;
    log_info("policy: the block after the last failover has ended");
    if (p->on_change != NULL)
        p->on_change(p->change_arg);
}

/* The status shows the block's end: republish when it passes. */
static void arm_block_timer(policy_t *p)
{
    if (p->block_timer)
        loop_cancel_timer(p->loop, p->block_timer);
    p->block_timer = 0;
    int64_t left = kv_int(p, KV_BLOCK_UNTIL) - wall_ms();
    if (left > 0)
        p->block_timer = loop_add_timer(p->loop, left, on_block_end, p);
}

int64_t policy_block_until_stored(store_t *st)
{
    char v[32];
    if (!store_kv_get(st, KV_BLOCK_UNTIL, v, sizeof v) || v[0] == '\0')
        return 0;
    int64_t until = strtoll(v, NULL, 10);
    return until > wall_ms() ? until : 0;
}

int64_t policy_block_until(policy_t *p)
{
    return policy_block_until_stored(p->store);
}

bool policy_unblock(policy_t *p, const char *by, char *err, size_t errlen)
{
    int64_t until = policy_block_until(p);
    if (until == 0) {
        snprintf(err, errlen, "no policy block is active");
        return false;
    }
    kv_put_int(p, KV_BLOCK_UNTIL, 0);
    arm_block_timer(p);
    /* An outage decided as "blocked" is decided again now. */
    int64_t incident = current_incident(p);
    if (incident != 0 && kv_int(p, KV_BLOCKED_INCIDENT) == incident && kv_int(p, KV_DECIDED_INCIDENT) == incident)
        kv_put_int(p, KV_DECIDED_INCIDENT, 0);
    event(p, "the policy block (until %lld) was lifted by %s", (long long)until, by);
    evaluate(p);
    return true;
}

static void on_timer(loop_t *loop, void *arg)
{
    policy_t *p = arg;
    p->timer = 0;
    if (p->approval_id != 0) {           /* the approval expired */
        if (store_approval_decide(p->store, p->approval_id, approval_state_name(APPROVAL_EXPIRED), "expiry",
                                  "not decided in time", NULL, wall_ms()))
            event(p, "approval %lld for a failover expired", (long long)p->approval_id);
        p->approval_id = 0;
        return;
    }
    evaluate(p);
}

void policy_withdraw(policy_t *p, const char *why)
{
    if (p->approval_id == 0)
        return;
    if (store_approval_decide(p->store, p->approval_id, approval_state_name(APPROVAL_EXPIRED), "drd", why, NULL,
                              wall_ms()))
        event(p, "approval %lld withdrawn: %s", (long long)p->approval_id, why);
    p->approval_id = 0;
    if (p->timer)
        loop_cancel_timer(p->loop, p->timer);
    p->timer = 0;
}

/* One way to start a failover, for the policy and for an operator: stop a
 * refresh first (never copy over the backup now), start the run, and
 * withdraw a pending policy approval (the question is answered). */
static int64_t begin_failover(policy_t *p, const char *reason, const char *by, int64_t request_id,
                              int64_t incident, char *err, size_t errlen)
{
    if (p->refresh != NULL && !executor_busy(p->ex))
        refresh_cancel(p->refresh, "a failover is starting");
    int64_t run = executor_start(p->ex, "failover", reason, by, request_id, incident, err, errlen);
    if (run != 0 && p->approval_id != 0)
        policy_withdraw(p, "an operator started the failover");
    return run;
}

int64_t policy_failover(policy_t *p, const char *reason, const char *by, int64_t request_id,
                        char *err, size_t errlen)
{
    return begin_failover(p, reason, by, request_id, current_incident(p), err, errlen);
}

/* A failover the policy starts (auto, or its approval granted): the block
 * begins. */
static int64_t start_failover(policy_t *p, const char *by, int64_t incident)
{
    char err[512], reason[300];
    const store_target *pt = monitor_target(p->monitor, TARGET_PRIMARY);
    snprintf(reason, sizeof reason, "primary unavailable (incident %lld)%s%s", (long long)incident,
             pt->last_error[0] ? ": " : "", pt->last_error);
    int64_t run = begin_failover(p, reason, by, 0, incident, err, sizeof err);
    if (run == 0) {
        event(p, "could not start the failover: %s", err);
        return 0;
    }
    kv_put_int(p, KV_BLOCK_UNTIL, wall_ms() + p->cfg->failover_block_ms);
    arm_block_timer(p);
    return run;
}

/* The facts policy_evaluate decides on. */
static void gather(policy_t *p, int64_t incident, policy_input *in)
{
    const store_target *pt = monitor_target(p->monitor, TARGET_PRIMARY);
    memset(in, 0, sizeof *in);
    in->now = wall_ms();
    in->mode = p->cfg->failover_policy;
    in->min_outage_ms = p->cfg->failover_min_outage_ms;
    in->require_seen_healthy = p->cfg->failover_require_seen_healthy;
    in->incident = incident;
    in->primary_breaker = monitor_breaker(p->monitor, TARGET_PRIMARY);
    in->primary_state_age = monitor_state_age(p->monitor, TARGET_PRIMARY);
    in->primary_misconfigured = PROBE_MISCONFIGURED(pt->error_class);
    in->primary_seen_healthy = pt->seen_healthy;
    in->backup_healthy = monitor_target(p->monitor, TARGET_BACKUP)->healthy;
    in->app_on_primary = monitor_active(p->monitor) == TARGET_PRIMARY;
    in->run_active = executor_busy(p->ex);
    in->approval_pending = p->approval_id != 0;
    in->decided_incident = incident != 0 ? kv_int(p, KV_DECIDED_INCIDENT) : 0;
    in->block_until = kv_int(p, KV_BLOCK_UNTIL);
    in->held_incident = p->held_incident;
    in->held_why = p->held_why;
}

/* Say once per incident and reason why the policy holds back. */
static void say_hold(policy_t *p, int64_t incident, policy_hold why)
{
    const store_target *pt = monitor_target(p->monitor, TARGET_PRIMARY);
    char text[600], note[640];
    p->held_incident = incident;
    p->held_why = why;
    if (why == POLICY_HOLD_MISCONFIGURED)
        snprintf(text, sizeof text, "incident %lld: no automatic failover: the primary is misconfigured "
                 "(%s), not down; fix drd's configuration (`drctl failover` still moves the app by hand)",
                 (long long)incident, pt->cause);
    else
        snprintf(text, sizeof text, "incident %lld: no automatic failover: drd has not seen the primary "
                 "healthy since it started ([failover] require_seen_healthy); check [primary] url. "
                 "`drctl failover` still moves the app by hand", (long long)incident);
    log_warn("policy: %s", text);
    event(p, "%s", text);
    snprintf(note, sizeof note, "drd: %s", text);
    tell(p, "failover_held", note, 0);
}

/* The approval that asks whether to fail over. */
static void ask(policy_t *p, int64_t incident, int64_t down_for)
{
    store_approval a;
    memset(&a, 0, sizeof a);
    const store_target *pt = monitor_target(p->monitor, TARGET_PRIMARY);
    /* The outage began at the first failed probe, not when the breaker
     * opened (that is `failures` probes later). */
    int64_t outage = p->down_since > 0 ? wall_ms() - p->down_since : 0;
    if (outage < down_for)
        outage = down_for;
    char since[32];
    format_duration(outage, since, sizeof since);
    char window[160] = "";
    if (p->refresh != NULL)
        refresh_window_text(p->refresh, window, sizeof window);
    snprintf(a.prompt, sizeof a.prompt,
             "The primary has been unavailable for %s (incident %lld%s%s).%s%s Fail over to the backup?",
             since, (long long)incident, pt->last_error[0] ? ": " : "", pt->last_error,
             window[0] ? " Data-loss window: " : "", window);
    str_copy(a.kind, approval_kind_name(APPROVAL_POLICY), sizeof a.kind);
    str_copy(a.state, approval_state_name(APPROVAL_PENDING), sizeof a.state);
    a.step_idx = -1;
    a.created_at = wall_ms();
    a.expires_at = a.created_at + POLICY_APPROVAL_EXPIRES_MS;
    p->approval_id = store_approval_create(p->store, &a);
    if (p->approval_id == 0)
        return;
    p->timer = loop_add_timer(p->loop, POLICY_APPROVAL_EXPIRES_MS, on_timer, p);
    event(p, "incident %lld: approval %lld asks whether to fail over (drctl approve %lld)",
          (long long)incident, (long long)p->approval_id, (long long)p->approval_id);
    char text[700];
    snprintf(text, sizeof text, "drd: approval %lld needed: %s", (long long)p->approval_id, a.prompt);
    tell(p, "approval_needed", text, p->approval_id);
}

/* Decide whether the current outage calls for a failover now: the facts,
 * the pure decision (policy_rules.c), then its effects. */
static void evaluate(policy_t *p)
{
    policy_input in;
    policy_decision d;
    int64_t incident = current_incident(p);
    gather(p, incident, &in);
    policy_evaluate(&in, &d);
    if (d.decided)
        kv_put_int(p, KV_DECIDED_INCIDENT, incident);
    switch (d.action) {
    case POLICY_NOTHING:
        break;
    case POLICY_WAIT:
        if (p->timer == 0)
            p->timer = loop_add_timer(p->loop, d.wait_ms, on_timer, p);
        break;
    case POLICY_HOLD:
        if (d.announce)
            say_hold(p, incident, d.hold);
        break;
    case POLICY_BLOCKED: {
        char dur[32];
        format_duration(d.blocked_ms, dur, sizeof dur);
        event(p, "incident %lld: no automatic failover for another %s (block after the last one; "
              "drctl unblock lifts it)", (long long)incident, dur);
        kv_put_int(p, KV_BLOCKED_INCIDENT, incident);
        break;
    }
    case POLICY_WAIT_BACKUP:
        log_info("policy: incident %lld: the backup is not healthy; waiting for it before failing over",
                 (long long)incident);
        break;
    case POLICY_FAILOVER:
        event(p, "incident %lld: primary down, starting the failover (policy auto)", (long long)incident);
        start_failover(p, "policy", incident);
        break;
    case POLICY_ASK:
        ask(p, incident, in.primary_state_age);
        break;
    }
}

bool policy_decide(policy_t *p, int64_t approval_id, bool approve, const char *by,
                   const char *reason, int64_t *run_id, char *err, size_t errlen)
{
    store_approval a;
    *run_id = 0;
    if (!store_approval_get(p->store, approval_id, &a) || approval_kind_of(a.kind) != APPROVAL_POLICY) {
        snprintf(err, errlen, "no policy approval %lld", (long long)approval_id);
        return false;
    }
    if (!approval_check(&a, NULL, false, err, errlen))
        return false;
    if (!store_approval_decide(p->store, approval_id,
                               approval_state_name(approve ? APPROVAL_APPROVED : APPROVAL_REJECTED), by, reason, NULL, wall_ms())) {
        snprintf(err, errlen, "approval %lld could not be decided", (long long)approval_id);
        return false;
    }
    if (p->approval_id == approval_id) {
        p->approval_id = 0;
        if (p->timer)
            loop_cancel_timer(p->loop, p->timer);
        p->timer = 0;
    }
    if (!approve) {
        event(p, "approval %lld rejected by %s%s%s: no failover", (long long)approval_id, by,
              reason && *reason ? ": " : "", reason ? reason : "");
        return true;
    }
    event(p, "approval %lld approved by %s: starting the failover", (long long)approval_id, by);
    *run_id = start_failover(p, by, current_incident(p));
    if (*run_id == 0) {
        snprintf(err, errlen, "approved, but the failover could not start (see the events)");
        return false;
    }
    return true;
}

/* ------------------------------------------------------- fence on return */

static void on_fence_done(void *arg, const step_outcome *o)
{
    policy_t *p = arg;
    p->fence = NULL;
    step_outcome_persist(p->store, o);
    char pending[16] = "";
    int64_t took = loop_now(p->loop) - p->fence_started;
    /* Recorded as the fence steps of runs are: its duration in
     * drd_step_duration_seconds{action="fence"}, an event with the outcome. */
    if (p->counters != NULL) {
        p->counters->step_seconds_sum[ACT_FENCE] += (double)took / 1000.0;
        p->counters->step_seconds_count[ACT_FENCE]++;
    }
    store_fence_pending_get(p->store, pending, sizeof pending);
    if (o->ok && pending[0] == '\0') {
        event(p, "the old primary answered again and was fenced after %lld.%03llds: %s",
              (long long)(took / 1000), (long long)(took % 1000), o->note);
        tell(p, "fence_applied", "drd: the old primary answered again and was fenced (it refuses the app's writes)", 0);
    } else {
        event(p, "fencing the returning primary failed: %s", o->ok ? o->note : o->error);
        p->fence_backoff_until = loop_now(p->loop) + 2000;
    }
}

void policy_on_probe(policy_t *p, target_id t, const probe_result *r)
{
    char pending[16] = "";
    target_id fence_target;
    if (t != TARGET_PRIMARY)
        return;
    if (r->ok)
        p->down_since = 0;
    else if (p->down_since == 0)
        p->down_since = wall_ms() - r->latency_ms;     /* when this probe started */
    policy_fence_input in = {
        .primary_probe_ok = r->ok,
        .fence_in_flight = p->fence != NULL,
        .in_backoff = loop_now(p->loop) < p->fence_backoff_until,
        .app_on_backup = monitor_active(p->monitor) == TARGET_BACKUP,
    };
    if (in.primary_probe_ok && !in.fence_in_flight && !in.in_backoff)    /* no store read per probe */
        in.fence_pending_primary = store_fence_pending_get(p->store, pending, sizeof pending) &&
                                   target_parse(pending, &fence_target) && fence_target == TARGET_PRIMARY;
    if (!policy_fence_now(&in))
        return;
    step_env env = { .loop = p->loop, .cfg = p->cfg, .monitor = p->monitor, .fetch = p->fetch,
                     .store = p->store, .run_kind = "" };
    log_warn("policy: the old primary answers again while the app is on the backup: fencing it now");
    p->fence_started = loop_now(p->loop);
    p->fence = step_begin_fence(&env, "fence-on-return", target_name(TARGET_PRIMARY), false, 5000,
                                on_fence_done, p);
}

/* ------------------------------------------------------------- plumbing */

void policy_on_transition(policy_t *p, target_id t, const breaker_transition *tr)
{
    if (t == TARGET_PRIMARY && tr->to == BREAKER_CLOSED) {
        if (p->timer && p->approval_id == 0) {
            loop_cancel_timer(p->loop, p->timer);
            p->timer = 0;
        }
        policy_withdraw(p, "the primary recovered");
        return;
    }
    if (t == TARGET_PRIMARY && policy_says_manual(p->cfg->failover_policy, tr->from, tr->to,
                                                  monitor_active(p->monitor) == TARGET_PRIMARY))
        event(p, "primary down; policy is manual: `drctl failover` moves the app to the backup");
    evaluate(p);
}

void policy_on_run_done(policy_t *p, int64_t run_id, const char *kind, run_state state)
{
    evaluate(p);
}

static bool adopt_pending(const store_approval *a, void *arg)
{
    policy_t *p = arg;
    if (approval_kind_of(a->kind) != APPROVAL_POLICY)
        return true;
    p->approval_id = a->id;
    int64_t left = a->expires_at > 0 ? a->expires_at - wall_ms() : POLICY_APPROVAL_EXPIRES_MS;
    p->timer = loop_add_timer(p->loop, left > 0 ? left : 0, on_timer, p);
    log_info("policy: approval %lld from before the restart is still pending", (long long)a->id);
    return false;
}

void policy_start(policy_t *p)
{
    /* A pending policy approval from before a restart is still ours. */
    store_approvals_pending(p->store, adopt_pending, p);
    arm_block_timer(p);
    evaluate(p);
}

policy_t *policy_new(loop_t *loop, store_t *store, monitor_t *monitor, executor_t *ex,
                     fetch_t *fetch, const config_t *cfg)
{
    policy_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->loop = loop;
    p->store = store;
    p->monitor = monitor;
    p->ex = ex;
    p->fetch = fetch;
    p->cfg = cfg;
    return p;
}

void policy_reconfigure(policy_t *p, const config_t *cfg)
{
    p->cfg = cfg;
}

void policy_free(policy_t *p)
{
    if (p == NULL)
        return;
    if (p->timer)
        loop_cancel_timer(p->loop, p->timer);
    if (p->block_timer)
        loop_cancel_timer(p->loop, p->block_timer);
    step_cancel(p->fence);
    free(p);
}
