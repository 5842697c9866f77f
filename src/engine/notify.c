/* notify.c - webhook notifications (see include/drd/notify.h).
 *
 * Every notification is an `item` in one FIFO list, oldest first. An item
 * is in one of three states:
 *   READY    waiting for a delivery slot;
 *   SENDING  a request is in flight (fetch.h, at most NOTIFY_MAX_SENDING
 *            at a time);
 *   WAITING  the last attempt failed; a loop timer makes it READY again
 *            after the backoff.
 * pump() walks the list from the oldest item and starts READY ones while
 * there are free slots, so deliveries go out in order and a retry keeps its
 * place ahead of younger notifications.
 *
 * The list holds at most [notify] queue items, whatever their state. When
 * it is full, notify_send drops the oldest item that is not in flight
 * (READY or WAITING); if all of them are in flight, the new notification is
 * the one dropped. A dropped notification is recorded as `dropped`.
 *
 * Attempt k (k = 1, 2, ...) that fails (transport error or a non-2xx
 * answer) is retried after base * 2^(k-1) ms, capped at 5 min, as long as
 * k <= [notify] retries; then the notification is `failed`. base is 1000
 * ms; the environment variable DRD_NOTIFY_BACKOFF_MS (1..300000), read by
 * notify_new, overrides it - for tests only.
 *
 * Every attempt's outcome is written to the notification's row
 * (store_notification_update): attempts, http_status, error, the time the
 * attempt started and the state (pending while it will be retried).
 *
 * Secrets: the text and every string of the extra fields are masked
 * (log_mask: registered secrets, URL passwords, password=...) before they
 * are stored or sent. The webhook URL itself often carries a token in its
 * path, so it is never logged: messages name the webhook by its host only,
 * the URL is registered with log_add_secret (so that fetch.c's debug line
 * and any text quoting it are masked too), and errors are scrubbed of it.
 *
 * Reconfiguration copies what it needs from the new config: queued items
 * go to the new URL, and items waiting for a retry are retried at once
 * when the URL changed. Without a webhook any more, what is not in flight
 * is dropped.
 *
 * Lifetime: notify_free cancels requests in flight (fetch_cancel) and the
 * retry timers; it must run before fetch_free and loop_free, and not from
 * inside a fetch callback. Rows of notifications still queued stay
 * `pending` in the store. */
#include "drd/engine/notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drd/core/log.h"
#include "drd/core/util.h"

#define NOTIFY_MAX_SENDING      4
#define NOTIFY_TEXT_MAX         4096          /* log_mask's working limit */
#define NOTIFY_BACKOFF_BASE_MS  1000
#define NOTIFY_BACKOFF_MAX_MS   (300 * 1000)
#define NOTIFY_BACKOFF_ENV      "DRD_NOTIFY_BACKOFF_MS"

typedef enum { IT_READY, IT_SENDING, IT_WAITING } item_state;

typedef struct item {
    struct item *prev, *next;
    notify_t *n;
    item_state st;
    store_notification rec;      /* the stored row as we last wrote it */
    char *text;                  /* masked */
    json_t *fields;              /* masked copy, or NULL */
    uint64_t fetch_id;           /* SENDING */
    uint64_t timer_id;           /* WAITING */
} item;

struct notify {
    loop_t *loop;
    fetch_t *fetch;
    store_t *store;
    metrics_counters *counters;

    char *url;                   /* NULL: no webhook */
    char host[256];              /* for log messages */
    bool json;                   /* format = json (else slack) */
    int64_t retries, timeout_ms;
    size_t queue_max;
    int64_t backoff_base_ms;

    item *head, *tail;
    size_t count, sending;
};

enum { CNT_SENT, CNT_FAILED, CNT_DROPPED };

static void pump(notify_t *n);

/* ---- small helpers ------------------------------------------------------- */

static void count(notify_t *n, int which)
{
    if (n->counters != NULL)
        n->counters->notifications_total[which]++;
}

/* Replace every occurrence of needle in buf (size n) by repl. */
static void replace_all(char *buf, size_t n, const char *needle, const char *repl)
{
    size_t nl = strlen(needle);
    if (nl == 0 || n == 0)
        return;
    char out[NOTIFY_TEXT_MAX];
    size_t o = 0;
    const char *p = buf;
    bool changed = false;
    while (*p != '\0' && o + 1 < sizeof out) {
        if (strncmp(p, needle, nl) == 0) {
            for (const char *r = repl; *r != '\0' && o + 1 < sizeof out; r++)
                out[o++] = *r;
            p += nl;
            changed = true;
        } else {
            out[o++] = *p++;
        }
    }
    if (!changed)
        return;
    out[o] = '\0';
    str_copy(buf, out, n);
}

/* A masked, valid UTF-8, malloc'd copy of s (at most NOTIFY_TEXT_MAX - 1
 * bytes), or NULL on OOM. */
static char *mask_text(notify_t *n, const char *s)
{
    char buf[NOTIFY_TEXT_MAX];
    char *m = mask_dup(s != NULL ? s : "");          /* masked whole, then cut */
    str_copy(buf, m != NULL ? m : "****", sizeof buf);
    free(m);
    if (n->url != NULL)
        replace_all(buf, sizeof buf, n->url, "****");
    utf8_fix(buf, sizeof buf);
    return strdup(buf);
}

/* A deep copy of v with every string masked; NULL on OOM. */
static json_t *mask_json(notify_t *n, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        json_t *o = json_object();
        const char *key;
        json_t *val;
        if (o == NULL)
            return NULL;
        json_object_foreach(v, key, val) {
            json_t *c = mask_json(n, val);
            if (c == NULL || json_object_set_new(o, key, c) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    case JSON_ARRAY: {
        json_t *a = json_array();
        size_t i;
        json_t *val;
        if (a == NULL)
            return NULL;
        json_array_foreach(v, i, val) {
            json_t *c = mask_json(n, val);
            if (c == NULL || json_array_append_new(a, c) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case JSON_STRING: {
        char *m = mask_text(n, json_string_value(v));
        json_t *s = m != NULL ? json_string(m) : NULL;
        free(m);
        return s;
    }
    default:
        return json_deep_copy(v);
    }
}

/* "2024-05-01T12:34:56.789Z" */
static void iso8601(int64_t ms, char *out, size_t n)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char date[32];
    if (gmtime_r(&secs, &tm) == NULL || strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        str_copy(out, "", n);
        return;
    }
    snprintf(out, n, "%s.%03dZ", date, (int)(ms % 1000));
}

/* host[:port] of url, without user info: what the logs may name. */
static void url_host(const char *url, char *out, size_t n)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    size_t alen = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (p[i] == '@')
            at = p + i;
    if (at != NULL) {
        alen -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (alen >= n)
        alen = n - 1;
    memcpy(out, p, alen);
    out[alen] = '\0';
}

static int64_t backoff_ms(const notify_t *n, int attempts)
{
    int64_t d = n->backoff_base_ms;
    for (int i = 1; i < attempts && d < NOTIFY_BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < NOTIFY_BACKOFF_MAX_MS ? d : NOTIFY_BACKOFF_MAX_MS;
}

static int64_t backoff_base_from_env(void)
{
    const char *s = getenv(NOTIFY_BACKOFF_ENV);
    if (s == NULL || *s == '\0')
        return NOTIFY_BACKOFF_BASE_MS;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > NOTIFY_BACKOFF_MAX_MS) {
        log_warn("notify: ignoring %s=%s (want 1..%d ms)", NOTIFY_BACKOFF_ENV, s,
                 NOTIFY_BACKOFF_MAX_MS);
        return NOTIFY_BACKOFF_BASE_MS;
    }
    return (int64_t)v;
}

/* ---- items ----------------------------------------------------------------- */

static void item_unlink(notify_t *n, item *it)
{
    if (it->prev != NULL)
        it->prev->next = it->next;
    else
        n->head = it->next;
    if (it->next != NULL)
        it->next->prev = it->prev;
    else
        n->tail = it->prev;
    it->prev = it->next = NULL;
    n->count--;
}

static void item_push(notify_t *n, item *it)
{
    it->next = NULL;
    it->prev = n->tail;
    if (n->tail != NULL)
        n->tail->next = it;
    else
        n->head = it;
    n->tail = it;
    n->count++;
}

/* Cancel whatever the item has pending on the loop; no callback follows. */
static void item_detach(notify_t *n, item *it)
{
    if (it->fetch_id != 0) {
        fetch_cancel(n->fetch, it->fetch_id);
        it->fetch_id = 0;
        n->sending--;
    }
    if (it->timer_id != 0) {
        loop_cancel_timer(n->loop, it->timer_id);
        it->timer_id = 0;
    }
}

static void item_free(item *it)
{
    if (it == NULL)
        return;
    free(it->text);
    json_decref(it->fields);
    free(it);
}

static void record(notify_t *n, item *it)
{
    if (n->store != NULL && it->rec.id != 0)
        store_notification_update(n->store, &it->rec);   /* errors have been logged */
}

/* Take the item out of the queue for good in state `state`, record it, free it. */
static void item_finish(notify_t *n, item *it, const char *state)
{
    item_detach(n, it);
    str_copy(it->rec.state, state, sizeof it->rec.state);
    record(n, it);
    item_unlink(n, it);
    item_free(it);
}

static void item_drop(notify_t *n, item *it, const char *why)
{
    char when[40];
    iso8601(it->rec.at, when, sizeof when);
    log_warn("notify: dropped the %s notification of %s (%s)", it->rec.event, when, why);
    str_copy(it->rec.error, why, sizeof it->rec.error);
    count(n, CNT_DROPPED);
    item_finish(n, it, "dropped");
}

/* ---- delivery ---------------------------------------------------------------- */

/* The request body for the current format (malloc'd), or NULL on OOM. */
static char *build_body(const notify_t *n, const item *it)
{
    json_t *o;
    if (n->json) {
        char at[40];
        iso8601(it->rec.at, at, sizeof at);
        o = json_pack("{s:s, s:s, s:I, s:s}", "event", it->rec.event, "at", at,
                      "at_ms", (json_int_t)it->rec.at, "text", it->text);
        if (o != NULL && it->fields != NULL && json_object_update_missing(o, it->fields) != 0) {
            json_decref(o);
            o = NULL;
        }
    } else {
        o = json_pack("{s:s}", "text", it->text);
    }
    char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return body;
}

static void on_retry_timer(loop_t *loop, void *arg)
{
    item *it = arg;
    (void)loop;
    it->timer_id = 0;
    it->st = IT_READY;
    pump(it->n);
}

/* The attempt that just ended failed with status (0: none) and error. */
static void attempt_failed(notify_t *n, item *it, long status, const char *error)
{
    char err[sizeof it->rec.error];
    str_copy(err, error, sizeof err);
    log_mask(err, sizeof err);
    if (n->url != NULL)
        replace_all(err, sizeof err, n->url, "****");
    utf8_fix(err, sizeof err);
    it->rec.http_status = status;
    str_copy(it->rec.error, err, sizeof it->rec.error);

    if ((int64_t)it->rec.attempts > n->retries || n->url == NULL) {
        log_warn("notify: giving up on the %s notification to webhook %s after %d attempt(s): %s",
                 it->rec.event, n->host, it->rec.attempts, err);
        count(n, CNT_FAILED);
        item_finish(n, it, "failed");
        return;
    }
    int64_t delay = backoff_ms(n, it->rec.attempts);
    it->timer_id = loop_add_timer(n->loop, delay, on_retry_timer, it);
    if (it->timer_id == 0) {
        log_error("notify: out of memory scheduling a retry of the %s notification",
                  it->rec.event);
        count(n, CNT_FAILED);
        item_finish(n, it, "failed");
        return;
    }
    char d[32];
    format_duration(delay, d, sizeof d);
    log_warn("notify: %s notification to webhook %s failed (attempt %d of %lld): %s; retrying in %s",
             it->rec.event, n->host, it->rec.attempts, (long long)n->retries + 1, err, d);
    it->st = IT_WAITING;
    str_copy(it->rec.state, "pending", sizeof it->rec.state);
    record(n, it);
}

static void on_fetch_done(void *arg, const fetch_result *r)
{
    item *it = arg;
    notify_t *n = it->n;
    it->fetch_id = 0;
    n->sending--;
    if (r->status >= 200 && r->status < 300) {
        it->rec.http_status = r->status;
        it->rec.error[0] = '\0';
        log_info("notify: %s notification delivered to webhook %s (HTTP %ld, attempt %d)",
                 it->rec.event, n->host, r->status, it->rec.attempts);
        count(n, CNT_SENT);
        item_finish(n, it, "sent");
    } else if (r->status != 0) {
        char err[64];
        snprintf(err, sizeof err, "HTTP %ld", r->status);
        attempt_failed(n, it, r->status, err);
    } else {
        attempt_failed(n, it, 0, r->error[0] != '\0' ? r->error : "no answer");
    }
    pump(n);
}

static void item_attempt(notify_t *n, item *it)
{
    char err[256] = "";
    it->rec.attempts++;
    it->rec.last_attempt_at = wall_ms();
    char *body = build_body(n, it);
    if (body == NULL) {
        attempt_failed(n, it, 0, "out of memory building the body");
        return;
    }
    it->fetch_id = fetch_start(n->fetch, "POST", n->url, body, "application/json",
                               n->timeout_ms, on_fetch_done, it, err, sizeof err);
    free(body);
    if (it->fetch_id == 0) {
        attempt_failed(n, it, 0, err);
        return;
    }
    it->st = IT_SENDING;
    n->sending++;
    log_debug("notify: sending the %s notification to webhook %s (attempt %d)", it->rec.event,
              n->host, it->rec.attempts);
}

static void pump(notify_t *n)
{
    if (n->url == NULL)
        return;
    item *next;
    for (item *it = n->head; it != NULL && n->sending < NOTIFY_MAX_SENDING; it = next) {
        next = it->next;          /* item_attempt may finish (free) it, never another */
        if (it->st == IT_READY)
            item_attempt(n, it);
    }
}

/* Drop the oldest item not in flight; false if every item is in flight. */
static bool drop_oldest(notify_t *n, const char *why)
{
    for (item *it = n->head; it != NULL; it = it->next)
        if (it->st != IT_SENDING) {
            item_drop(n, it, why);
            return true;
        }
    return false;
}

/* ---- configuration ------------------------------------------------------------ */

/* Copy the [notify] settings; false on OOM (the old URL is kept then). */
static bool apply_config(notify_t *n, const config_t *cfg)
{
    const char *url = cfg->notify_webhook;
    char *copy = NULL;
    if (url != NULL && url[0] != '\0') {
        copy = strdup(url);
        if (copy == NULL) {
            log_error("notify: out of memory");
            return false;
        }
        log_add_secret(url);
    }
    free(n->url);
    n->url = copy;
    if (copy != NULL)
        url_host(copy, n->host, sizeof n->host);
    else
        str_copy(n->host, "(none)", sizeof n->host);
    n->json = cfg->notify_format == NOTIFY_JSON;
    n->retries = cfg->notify_retries > 0 ? cfg->notify_retries : 0;
    n->timeout_ms = cfg->notify_timeout_ms > 0 ? cfg->notify_timeout_ms : 5000;
    n->queue_max = cfg->notify_queue > 0 ? (size_t)cfg->notify_queue : 1;
    return true;
}

notify_t *notify_new(loop_t *loop, fetch_t *fetch, store_t *store, const config_t *cfg,
                     metrics_counters *counters)
{
    if (loop == NULL || fetch == NULL || cfg == NULL) {
        log_error("notify: invalid arguments");
        return NULL;
    }
    notify_t *n = calloc(1, sizeof *n);
    if (n == NULL) {
        log_error("notify: out of memory");
        return NULL;
    }
    n->loop = loop;
    n->fetch = fetch;
    n->store = store;
    n->counters = counters;
    n->backoff_base_ms = backoff_base_from_env();
    if (!apply_config(n, cfg)) {
        free(n);
        return NULL;
    }
    if (n->url != NULL)
        log_info("notify: webhook %s, format %s, %lld retries, queue %zu", n->host,
                 n->json ? "json" : "slack", (long long)n->retries, n->queue_max);
    return n;
}

void notify_free(notify_t *n)
{
    if (n == NULL)
        return;
    if (n->count > 0)
        log_info("notify: %zu notification(s) not delivered stay pending", n->count);
    item *it;
    while ((it = n->head) != NULL) {
        item_detach(n, it);
        item_unlink(n, it);
        item_free(it);
    }
    free(n->url);
    free(n);
}

void notify_reconfigure(notify_t *n, const config_t *cfg)
{
    if (n == NULL || cfg == NULL)
        return;
    char *old = n->url != NULL ? strdup(n->url) : NULL;
    bool had = n->url != NULL;
    if (!apply_config(n, cfg)) {
        free(old);
        return;
    }
    bool changed = had != (n->url != NULL) || (old != NULL && n->url != NULL && strcmp(old, n->url) != 0);
    free(old);

    if (n->url == NULL) {
        if (had)
            log_info("notify: webhook removed from the configuration");
        item *next;
        for (item *it = n->head; it != NULL; it = next) {
            next = it->next;
            if (it->st != IT_SENDING)
                item_drop(n, it, "webhook removed from the configuration");
        }
        return;
    }
    if (changed) {
        log_info("notify: webhook is now %s (format %s)", n->host, n->json ? "json" : "slack");
        /* The failures were the old webhook's: try the new one now. */
        for (item *it = n->head; it != NULL; it = it->next)
            if (it->st == IT_WAITING) {
                loop_cancel_timer(n->loop, it->timer_id);
                it->timer_id = 0;
                it->st = IT_READY;
            }
    }
    while (n->count > n->queue_max && drop_oldest(n, "queue full after a reload"))
        ;
    pump(n);
}

/* ---- public ------------------------------------------------------------------ */

bool notify_send(notify_t *n, const char *event, const char *text, json_t *fields)
{
    if (n == NULL || n->url == NULL)
        return true;
    if (event == NULL || event[0] == '\0') {
        log_error("notify: notification without an event name");
        return false;
    }
    item *it = calloc(1, sizeof *it);
    if (it == NULL) {
        log_error("notify: out of memory");
        return false;
    }
    it->n = n;
    it->st = IT_READY;
    it->rec.at = wall_ms();
    str_copy(it->rec.event, event, sizeof it->rec.event);
    str_copy(it->rec.state, "pending", sizeof it->rec.state);
    it->text = mask_text(n, text);
    if (fields != NULL && !json_is_object(fields))
        log_warn("notify: %s: extra fields are not a JSON object; ignored", event);
    else if (fields != NULL)
        it->fields = mask_json(n, fields);
    if (it->text == NULL || (fields != NULL && json_is_object(fields) && it->fields == NULL)) {
        log_error("notify: out of memory");
        item_free(it);
        return false;
    }
    str_copy(it->rec.summary, it->text, sizeof it->rec.summary);
    if (n->store != NULL)
        it->rec.id = store_notification_add(n->store, &it->rec);  /* 0: errors have been logged */

    while (n->count >= n->queue_max) {
        if (!drop_oldest(n, "queue full")) {
            /* Everything queued is in flight: the newcomer gives way. */
            item_push(n, it);
            item_drop(n, it, "queue full");
            return true;
        }
    }
    item_push(n, it);
    pump(n);
    return true;
}

size_t notify_pending(const notify_t *n)
{
    return n != NULL ? n->count : 0;
}
