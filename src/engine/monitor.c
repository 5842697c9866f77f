/* monitor.c - probes, breakers and incidents for the two targets.
 *
 * Probes run at a fixed cadence per target (start times interval apart,
 * independent of how long a probe takes; timeout <= interval is enforced
 * by the config), each with its own hard deadline, so a hung target never
 * delays the other. Results feed the target's breaker; a transition is
 * persisted (event, incident, target row) in one transaction, logged with
 * its reason, then announced to listeners. Between transitions the target
 * row is written at most every PERSIST_EVERY_MS, and probe statistics are
 * kept as per-minute aggregates (pruned after STATS_KEEP_MS). */
#include "drd/engine/monitor.h"
#include "drd/core/log.h"
#include "drd/engine/status.h"
#include "drd/core/util.h"
#include "drd/health/watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PERSIST_EVERY_MS   5000
#define STATS_KEEP_MS      (7LL * 24 * 3600 * 1000)
#define PRUNE_EVERY_MS     (3600LL * 1000)

typedef struct {
    monitor_t *m;
    target_id id;
    probe_t *probe;
    breaker_t breaker;
    store_target st;             /* current state, as shown and persisted */
    bool probed;                 /* at least one result since start */
    uint64_t probe_timer, breaker_timer;
    int64_t next_probe_at;       /* monotonic */
    int64_t last_persist;        /* monotonic */
    int64_t incident_id;         /* open incident, 0 if none */
    store_probe_minute agg;      /* current minute, not yet flushed */
    watch_t *watch;              /* idle connection ([probe] confirm_interval), or NULL */
    bool confirming;             /* its connection dropped: probing every confirm_interval */
} target_t;

struct monitor {
    loop_t *loop;
    store_t *store;
    monitor_change_cb on_change;  /* what the status shows changed */
    void *change_arg;
    const config_t *cfg;
    target_t t[TARGET_COUNT];
    target_id active;            /* the app's side, persisted in kv "active" */
    int64_t started_at;
    uint64_t prune_timer;
    monitor_transition_cb on_transition;
    monitor_probe_cb on_probe;
    void *listener_arg;
    monitor_misconfig_cb on_misconfig;
    void *misconfig_arg;
    metrics_counters *counters;  /* may be NULL */
};

static void changed(monitor_t *m)
{
    if (m->on_change != NULL)
        m->on_change(m->change_arg);
}

static const config_target *target_cfg(const config_t *c, target_id id)
{
    return id == TARGET_PRIMARY ? &c->primary : &c->backup;
}

static breaker_params breaker_params_of(const config_t *c)
{
    breaker_params p = {
        .failures = (int)c->probe_failures,
        .successes = (int)c->probe_successes,
        .cooldown_ms = c->probe_cooldown_ms,
    };
    return p;
}

static void on_probe_done(void *arg, const probe_result *r);
static void arm_breaker_timer(target_t *t);

/* Healthy: probed by this process, breaker closed, and not refusing drd
 * for a misconfiguration (which never moves the breaker). */
static bool target_healthy(const target_t *t, breaker_state b)
{
    return t->probed && b == BREAKER_CLOSED && !PROBE_MISCONFIGURED(t->st.error_class);
}

static void persist_target(target_t *t)
{
    t->st.breaker = t->breaker.state;
    t->st.healthy = target_healthy(t, t->breaker.state);
    if (store_target_put(t->m->store, &t->st))
        t->last_persist = loop_now(t->m->loop);
    /* errors have already been logged */
}

static void flush_stats(target_t *t)
{
    if (t->agg.probes == 0)
        return;
    store_probe_minute_add(t->m->store, &t->agg);
    t->agg.probes = t->agg.failures = t->agg.latency_sum_ms = t->agg.latency_max_ms = 0;
}

static void account(target_t *t, const probe_result *r, int64_t now_wall)
{
    int64_t minute = now_wall / 60000;
    if (t->agg.probes > 0 && t->agg.minute != minute)
        flush_stats(t);
    t->agg.minute = minute;
    t->agg.probes++;
    if (!r->ok)
        t->agg.failures++;
    t->agg.latency_sum_ms += r->latency_ms;
    if (r->latency_ms > t->agg.latency_max_ms)
        t->agg.latency_max_ms = r->latency_ms;
}

typedef struct {
    target_t *t;
    const breaker_transition *tr;
    int64_t at;
} transition_ctx;

static bool persist_transition(store_t *s, void *arg)
{
    transition_ctx *c = arg;
    target_t *t = c->t;
    const char *name = target_name(t->id);
    char msg[512];

    snprintf(msg, sizeof msg, "%s -> %s: %s%s%s%s",
             breaker_state_name(c->tr->from), breaker_state_name(c->tr->to), c->tr->reason,
             t->st.last_error[0] != '\0' && c->tr->to == BREAKER_OPEN ? " (last error: " : "",
             c->tr->to == BREAKER_OPEN ? t->st.last_error : "",
             t->st.last_error[0] != '\0' && c->tr->to == BREAKER_OPEN ? ")" : "");
    if (store_event_add(s, c->at, "breaker", name, msg) == 0)
        return false;

    if (c->tr->to == BREAKER_OPEN && t->incident_id == 0) {
        char reason[256];
        snprintf(reason, sizeof reason, "%s", t->st.last_error[0] ? t->st.last_error : c->tr->reason);
        int64_t id = store_incident_open(s, name, c->at, reason);
        if (id == 0)
            return false;
        snprintf(msg, sizeof msg, "incident %lld: %s unavailable: %s", (long long)id, name, reason);
        if (store_event_add(s, c->at, "incident", name, msg) == 0)
            return false;
        t->incident_id = id;
    } else if (c->tr->to == BREAKER_CLOSED && t->incident_id != 0) {
        if (!store_incident_close(s, t->incident_id, c->at))
            return false;
        snprintf(msg, sizeof msg, "incident %lld: %s available again", (long long)t->incident_id, name);
        if (store_event_add(s, c->at, "incident", name, msg) == 0)
            return false;
        t->incident_id = 0;
    }
    t->st.breaker = c->tr->to;
    t->st.breaker_since = c->at;
    t->st.healthy = target_healthy(t, c->tr->to);
    return store_target_put(s, &t->st);
}

static void apply_transition(target_t *t, const breaker_transition *tr)
{
    transition_ctx c = { t, tr, wall_ms() };
    int64_t before_incident = t->incident_id;

    log_info("%s: breaker %s -> %s: %s", target_name(t->id), breaker_state_name(tr->from),
             breaker_state_name(tr->to), tr->reason);
    if (!store_tx(t->m->store, persist_transition, &c)) {
        /* errors have already been logged; the in-memory state still moves
         * so the daemon keeps deciding on what it sees. */
        t->incident_id = before_incident;
        t->st.breaker = tr->to;
        t->st.breaker_since = c.at;
    } else {
        t->last_persist = loop_now(t->m->loop);
        if (t->incident_id != before_incident)
            log_info("%s: incident %lld %s", target_name(t->id),
                     (long long)(t->incident_id ? t->incident_id : before_incident),
                     t->incident_id ? "opened" : "closed");
    }
    arm_breaker_timer(t);
    if (t->m->counters != NULL) {
        t->m->counters->breaker_transitions_total[t->id]++;
        if (t->incident_id != 0 && t->incident_id != before_incident)
            t->m->counters->incidents_total[t->id]++;
    }
    if (t->m->on_transition != NULL)
        t->m->on_transition(t->m->listener_arg, t->id, tr);
}

static void on_breaker_timer(loop_t *loop, void *arg)
{
    target_t *t = arg;
    breaker_transition tr;
    t->breaker_timer = 0;
    if (breaker_tick(&t->breaker, loop_now(loop), &tr)) {
        apply_transition(t, &tr);
        changed(t->m);
    } else {
        arm_breaker_timer(t);
    }
}

static void arm_breaker_timer(target_t *t)
{
    if (t->breaker_timer != 0) {
        loop_cancel_timer(t->m->loop, t->breaker_timer);
        t->breaker_timer = 0;
    }
    int64_t d = breaker_next_deadline(&t->breaker, loop_now(t->m->loop));
    if (d >= 0)
        t->breaker_timer = loop_add_timer(t->m->loop, d, on_breaker_timer, t);
}

static void on_probe_timer(loop_t *loop, void *arg)
{
    target_t *t = arg;
    int64_t now = loop_now(loop);
    int64_t interval = t->confirming ? t->m->cfg->probe_confirm_ms : t->m->cfg->probe_interval_ms;

    t->probe_timer = 0;
    if (probe_busy(t->probe) && now - t->next_probe_at < interval / 2) {
        /* With timeout == interval (the defaults) the previous probe's
         * deadline and this tick fall on the same millisecond; whichever
         * fires first, let the deadline finish that probe and start this
         * one a moment later instead of skipping a whole interval. */
        t->probe_timer = loop_add_timer(loop, 5, on_probe_timer, t);
        return;
    }
    if (!probe_start(t->probe))
        log_warn("%s: previous probe still running, skipping one", target_name(t->id));
    /* Fixed cadence: the next start is one interval after this one was
     * due; if we fell behind (a stopped process, a slow machine), start
     * over from now rather than firing a burst. */
    t->next_probe_at += interval;
    if (t->next_probe_at < now)
        t->next_probe_at = now + interval;
    t->probe_timer = loop_add_timer(loop, t->next_probe_at - now, on_probe_timer, t);
}

/* A target became misconfigured or stopped being so: loud, once. */
static void misconfig_changed(target_t *t, bool now_misconfigured)
{
    const char *name = target_name(t->id);
    char msg[600];
    if (now_misconfigured) {
        snprintf(msg, sizeof msg,
                 "%s misconfigured (%s): %s; drd's probes are refused, which is not an outage: "
                 "no breaker, no failover until it is fixed",
                 name, probe_class_name(t->st.error_class), t->st.cause);
        log_error("%s", msg);
    } else {
        snprintf(msg, sizeof msg, "%s no longer misconfigured: %s", name,
                 t->st.reachable ? "its probes succeed again" : "it does not answer any more (an outage)");
        log_info("%s", msg);
    }
    store_event_add(t->m->store, wall_ms(), "misconfigured", name, msg);
    /* the healthy flag changed with it */
    persist_target(t);
    if (t->m->on_misconfig != NULL)
        t->m->on_misconfig(t->m->misconfig_arg, t->id, now_misconfigured);
}

static void on_probe_done(void *arg, const probe_result *r)
{
    target_t *t = arg;
    monitor_t *m = t->m;
    int64_t now = loop_now(m->loop), now_wall = wall_ms();
    breaker_transition tr;
    bool was_ok = t->st.reachable;
    bool was_misconfigured = PROBE_MISCONFIGURED(t->st.error_class);
    bool misconfigured = !r->ok && PROBE_MISCONFIGURED(r->cls);

    t->probed = true;
    t->st.reachable = r->ok;
    t->st.latency_ms = r->latency_ms;
    t->st.last_probe_at = now_wall;
    /* Misconfigured ends with a good probe, or when the target turns out
     * to be down (its breaker opens): one slow login that times out in
     * between is not worth two events and two notifications. */
    bool sticky = was_misconfigured && !r->ok && !misconfigured;
    if (!sticky) {
        t->st.error_class = r->ok ? PROBE_OK : r->cls;
        str_copy(t->st.cause, misconfigured ? r->cause : "", sizeof t->st.cause);
    }
    if (r->ok) {
        t->st.in_recovery = r->in_recovery;
        t->st.last_error[0] = '\0';
    } else {
        str_copy(t->st.last_error, r->error, sizeof t->st.last_error);
    }
    account(t, r, now_wall);    /* probe.c has logged the result */
    if (m->counters != NULL) {
        m->counters->probes_total[t->id]++;
        if (!r->ok)
            m->counters->probe_failures_total[t->id]++;
    }

    if ((r->ok || misconfigured) && t->confirming) {
        t->confirming = false;
        log_info("%s: answers again: back to one probe every %lldms", target_name(t->id),
                 (long long)m->cfg->probe_interval_ms);
    }
    /* A misconfiguration is not an outage: it never moves the breaker. */
    bool moved = false;
    if (!misconfigured && breaker_record(&t->breaker, r->ok, now, &tr)) {
        t->confirming = false;
        if (sticky && tr.to == BREAKER_OPEN) {
            t->st.error_class = r->cls;
            t->st.cause[0] = '\0';
        }
        apply_transition(t, &tr);
        moved = true;
    }
    if (PROBE_MISCONFIGURED(t->st.error_class) != was_misconfigured)
        misconfig_changed(t, !was_misconfigured);
    else if (!moved && (now - t->last_persist >= PERSIST_EVERY_MS || r->ok != was_ok))
        persist_target(t);
    if (r->ok && target_healthy(t, t->breaker.state))
        t->st.seen_healthy = true;

    if (m->on_probe != NULL)
        m->on_probe(m->listener_arg, t->id, r);
    changed(m);
}

/* The idle connection dropped: probe now, then every confirm_interval. */
static void on_watch_lost(void *arg)
{
    target_t *t = arg;
    if (t->breaker.state != BREAKER_CLOSED || t->confirming)
        return;
    log_info("%s: the server dropped its idle connection: probing every %lldms to confirm", target_name(t->id),
             (long long)t->m->cfg->probe_confirm_ms);
    t->confirming = true;
    if (t->probe_timer)
        loop_cancel_timer(t->m->loop, t->probe_timer);
    t->next_probe_at = loop_now(t->m->loop);
    t->probe_timer = loop_add_timer(t->m->loop, 0, on_probe_timer, t);
}

static void watch_setup(target_t *t)
{
    const config_t *cfg = t->m->cfg;
    const config_target *tc = target_cfg(cfg, t->id);
    watch_free(t->watch);
    t->watch = NULL;
    t->confirming = false;
    if (cfg->probe_confirm_ms > 0)
        t->watch = watch_new(t->m->loop, target_name(t->id), tc->url, tc->password, cfg->probe_timeout_ms,
                             cfg->probe_interval_ms, on_watch_lost, t);
}

static void on_prune_timer(loop_t *loop, void *arg)
{
    monitor_t *m = arg;
    int64_t n = store_probe_prune(m->store, wall_ms() - STATS_KEEP_MS);
    if (n > 0)
        log_debug("pruned %lld probe statistic rows older than 7 days", (long long)n);
    m->prune_timer = loop_add_timer(loop, PRUNE_EVERY_MS, on_prune_timer, m);
}

monitor_t *monitor_new(loop_t *loop, store_t *store, const config_t *cfg)
{
    monitor_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->loop = loop;
    m->store = store;
    m->cfg = cfg;
    m->started_at = wall_ms();
    char active[STORE_NAME_LEN];
    if (!store_kv_get(store, "active", active, sizeof active) || !target_parse(active, &m->active))
        m->active = TARGET_PRIMARY;

    breaker_params bp = breaker_params_of(cfg);
    int64_t now = loop_now(loop), now_wall = wall_ms();
    for (int i = 0; i < TARGET_COUNT; i++) {
        target_t *t = &m->t[i];
        const config_target *tc = target_cfg(cfg, (target_id)i);
        t->m = m;
        t->id = (target_id)i;
        str_copy(t->agg.target, target_name((target_id)i), sizeof t->agg.target);
        /* Resume where the last run left off: the breaker state survives
         * a restart, so an outage in progress stays one incident. */
        breaker_state initial = BREAKER_CLOSED;
        int64_t since = now;
        if (store_target_get(store, target_name((target_id)i), &t->st)) {
            initial = t->st.breaker;
            if (t->st.breaker_since > 0 && t->st.breaker_since <= now_wall)
                since = now - (now_wall - t->st.breaker_since);
        } else {
            memset(&t->st, 0, sizeof t->st);
            str_copy(t->st.name, target_name((target_id)i), sizeof t->st.name);
            t->st.breaker_since = now_wall;
        }
        t->st.healthy = false;           /* until probed by this process */
        breaker_init(&t->breaker, &bp, initial, since);
        t->incident_id = store_incident_find_open(store, target_name((target_id)i));
        if (t->incident_id < 0)
            t->incident_id = 0;
        t->probe = probe_new(loop, target_name((target_id)i), tc->url, tc->password, cfg->probe_timeout_ms,
                             on_probe_done, t);
        if (t->probe == NULL) {
            monitor_free(m);
            return NULL;
        }
    }
    store_kv_set(store, "active", target_name(m->active));
    char started[32];
    snprintf(started, sizeof started, "%lld", (long long)m->started_at);
    store_kv_set(store, "started_at", started);
    return m;
}

void monitor_start(monitor_t *m)
{
    int64_t now = loop_now(m->loop);
    for (int i = 0; i < TARGET_COUNT; i++) {
        target_t *t = &m->t[i];
        /* Stagger the two targets by half an interval so their probes
         * (and any timeouts) don't coincide. */
        int64_t offset = i == 0 ? 0 : m->cfg->probe_interval_ms / 2;
        t->next_probe_at = now + offset;
        t->probe_timer = loop_add_timer(m->loop, offset, on_probe_timer, t);
        arm_breaker_timer(t);
        watch_setup(t);
    }
    m->prune_timer = loop_add_timer(m->loop, 1000, on_prune_timer, m);
    changed(m);
}

void monitor_reconfigure(monitor_t *m, const config_t *cfg)
{
    breaker_params bp = breaker_params_of(cfg);
    int64_t old_interval = m->cfg->probe_interval_ms;
    m->cfg = cfg;
    for (int i = 0; i < TARGET_COUNT; i++) {
        target_t *t = &m->t[i];
        const config_target *tc = target_cfg(cfg, (target_id)i);
        probe_configure(t->probe, tc->url, tc->password, cfg->probe_timeout_ms);
        breaker_set_params(&t->breaker, &bp);
        watch_setup(t);
        arm_breaker_timer(t);
        if (cfg->probe_interval_ms != old_interval && t->probe_timer != 0) {
            int64_t now = loop_now(m->loop);
            loop_cancel_timer(m->loop, t->probe_timer);
            t->next_probe_at = now + (i == 0 ? 0 : cfg->probe_interval_ms / 2);
            t->probe_timer = loop_add_timer(m->loop, t->next_probe_at - now, on_probe_timer, t);
        }
    }
}

void monitor_set_misconfig_listener(monitor_t *m, monitor_misconfig_cb cb, void *arg)
{
    m->on_misconfig = cb;
    m->misconfig_arg = arg;
}

void monitor_set_counters(monitor_t *m, metrics_counters *c)
{
    m->counters = c;
}

void monitor_set_change_cb(monitor_t *m, monitor_change_cb cb, void *arg)
{
    m->on_change = cb;
    m->change_arg = arg;
}

void monitor_set_listeners(monitor_t *m, monitor_transition_cb on_transition,
                           monitor_probe_cb on_probe, void *arg)
{
    m->on_transition = on_transition;
    m->on_probe = on_probe;
    m->listener_arg = arg;
}

void monitor_flush(monitor_t *m)
{
    for (int i = 0; i < TARGET_COUNT; i++) {
        flush_stats(&m->t[i]);
        persist_target(&m->t[i]);
    }
}

void monitor_free(monitor_t *m)
{
    if (m == NULL)
        return;
    for (int i = 0; i < TARGET_COUNT; i++) {
        target_t *t = &m->t[i];
        if (t->probe_timer)
            loop_cancel_timer(m->loop, t->probe_timer);
        if (t->breaker_timer)
            loop_cancel_timer(m->loop, t->breaker_timer);
        probe_free(t->probe);
        watch_free(t->watch);
    }
    if (m->prune_timer)
        loop_cancel_timer(m->loop, m->prune_timer);
    free(m);
}

const store_target *monitor_target(const monitor_t *m, target_id t)
{
    return &m->t[t].st;
}

breaker_state monitor_breaker(const monitor_t *m, target_id t)
{
    return m->t[t].breaker.state;
}

int64_t monitor_state_age(const monitor_t *m, target_id t)
{
    return loop_now(m->loop) - m->t[t].breaker.since;
}

target_id monitor_active(const monitor_t *m)
{
    return m->active;
}

bool monitor_set_active(monitor_t *m, target_id side)
{
    if ((unsigned)side >= TARGET_COUNT || !store_kv_set(m->store, "active", target_name(side)))
        return false;
    m->active = side;
    changed(m);
    return true;
}

void monitor_status_fill(const monitor_t *m, status_snapshot *s)
{
    memset(s, 0, sizeof *s);
    str_copy(s->active, target_name(m->active), sizeof s->active);
    s->daemon_running = true;
    s->generated_at = wall_ms();
    s->started_at = m->started_at;
    s->primary = m->t[TARGET_PRIMARY].st;
    s->backup = m->t[TARGET_BACKUP].st;
    s->primary.breaker = m->t[TARGET_PRIMARY].breaker.state;
    s->backup.breaker = m->t[TARGET_BACKUP].breaker.state;
    s->primary.healthy = target_healthy(&m->t[TARGET_PRIMARY], s->primary.breaker);
    s->backup.healthy = target_healthy(&m->t[TARGET_BACKUP], s->backup.breaker);
    status_fence_from_store(m->store, s);
}
