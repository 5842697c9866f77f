/* runbook.c - parse and validate runbook files into typed steps.
 * One table says which keys each action takes and needs. */
#include "drd/conf/runbook.h"
#include "drd/core/log.h"
#include "drd/core/util.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const action_names[ACT_COUNT] = {
    "exec", "switch-env", "wait-healthy", "approve", "fence",
    "capture", "sync-back", "verify", "notify", "refresh", "preflight",
};

/* Key flags per action: which keys are allowed (A) and required (R). */
enum {
    K_COMMAND = 1 << 0, K_TARGET = 1 << 1, K_PROMPT = 1 << 2, K_EXPIRES = 1 << 3,
    K_MESSAGE = 1 << 4, K_MODE = 1 << 5, K_LIFT = 1 << 6, K_REQUIRED = 1 << 7,
    K_REMOVE = 1 << 8, K_OP = 1 << 9,
};

static const struct {
    unsigned allowed, required;
    int64_t default_timeout_ms;
    bool idempotent;
    bool available;               /* implemented in this version */
    const char *targets;          /* allowed values of target, '|'-separated */
} action_spec[ACT_COUNT] = {
    [ACT_EXEC]         = { K_COMMAND, K_COMMAND, 60000, false, true, NULL },
    [ACT_SWITCH_ENV]   = { K_TARGET, K_TARGET, 10000, true, true, "primary|backup" },
    [ACT_WAIT_HEALTHY] = { K_TARGET, K_TARGET, 60000, true, true, "app|primary|backup" },
    [ACT_APPROVE]      = { K_PROMPT | K_EXPIRES, K_PROMPT, 0, false, true, NULL },
    [ACT_FENCE]        = { K_TARGET | K_MODE | K_LIFT | K_REQUIRED | K_COMMAND, 0, 30000, true, true, "primary|backup" },
    [ACT_CAPTURE]      = { K_REMOVE, 0, 300000, true, true, NULL },
    [ACT_SYNC_BACK]    = { K_MODE, 0, 3600000, false, true, NULL },   /* mode = online: pre-sync */
    [ACT_VERIFY]       = { 0, 0, 600000, true, true, NULL },
    [ACT_NOTIFY]       = { K_MESSAGE, K_MESSAGE, 10000, true, true, NULL },
    [ACT_REFRESH]      = { K_OP, K_OP, 60000, true, true, NULL },
    [ACT_PREFLIGHT]    = { 0, 0, 10000, true, false, NULL },
};

static const char *const on_failure_names[] = { "abort", "continue", "ask" };

const char *step_action_name(step_action a)
{
    return (unsigned)a < ACT_COUNT ? action_names[a] : "?";
}

bool step_action_parse(const char *s, step_action *out)
{
    for (int i = 0; i < ACT_COUNT; i++)
        if (strcmp(s, action_names[i]) == 0) {
            *out = (step_action)i;
            return true;
        }
    return false;
}

bool step_action_idempotent(step_action a)
{
    return (unsigned)a < ACT_COUNT && action_spec[a].idempotent;
}

const char *step_on_failure_name(step_on_failure f)
{
    return (unsigned)f < ARRAY_LEN(on_failure_names) ? on_failure_names[f] : "?";
}

static bool one_of(const char *v, const char *list)
{
    size_t vl = strlen(v);
    for (const char *p = list; *p != '\0';) {
        size_t l = strcspn(p, "|");
        if (l == vl && strncmp(p, v, l) == 0)
            return true;
        p += l;
        if (*p == '|')
            p++;
    }
    return false;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" }, *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcmp(v, yes[i]) == 0) { *out = true; return true; }
        if (strcmp(v, no[i]) == 0) { *out = false; return true; }
    }
    return false;
}

/* A step under construction: raw keys first, checked once the section ends. */
typedef struct {
    char *key, *value;
    int line;
} raw_kv;

typedef struct {
    const config_t *cfg;
    config_errors *errs;
    const char *path;
    runbook_t *rb;
    bool in_step;                 /* current section is a valid [step X] */
    raw_kv *kv;                   /* keys of the current step */
    size_t n_kv;
} load_ctx;

static void rb_error(load_ctx *x, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rb_error(load_ctx *x, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    config_error_add(x->errs, "%s:%d: %s", x->path, line, msg);
}

static const raw_kv *kv_find(load_ctx *x, const char *key)
{
    for (size_t i = 0; i < x->n_kv; i++)
        if (strcmp(x->kv[i].key, key) == 0)
            return &x->kv[i];
    return NULL;
}

static void kv_clear(load_ctx *x)
{
    for (size_t i = 0; i < x->n_kv; i++) {
        free(x->kv[i].key);
        free(x->kv[i].value);
    }
    free(x->kv);
    x->kv = NULL;
    x->n_kv = 0;
}

static bool get_duration(load_ctx *x, const char *key, int64_t *out)
{
    const raw_kv *kv = kv_find(x, key);
    if (kv == NULL)
        return true;
    if (!parse_duration_ms(kv->value, out)) {
        rb_error(x, kv->line, "bad duration \"%s\" for %s (use e.g. 500ms, 10s, 5m, 1h)", kv->value, key);
        return false;
    }
    return true;
}

/* The step's action: known, available, not drd's own. */
static bool parse_action(load_ctx *x, runbook_step *s)
{
    const raw_kv *kv;

    kv = kv_find(x, "action");
    if (kv == NULL) {
        rb_error(x, s->line, "step %s has no action (one of exec, switch-env, wait-healthy, approve, fence, notify)", s->name);
        return false;
    }
    if (!step_action_parse(kv->value, &s->action)) {
        rb_error(x, kv->line, "unknown action \"%s\" in step %s", kv->value, s->name);
        return false;
    }
    if (s->action == ACT_PREFLIGHT) {
        rb_error(x, kv->line, "action preflight is drd's own first step of every run; it cannot be in a runbook (step %s)",
                 s->name);
        return false;
    }
    if (!action_spec[s->action].available) {
        rb_error(x, kv->line, "action %s is not available in this version of drd (step %s)", kv->value, s->name);
        return false;
    }
    return true;
}

/* Every key known, and allowed for the action; the required ones there. */
static bool check_keys(load_ctx *x, const runbook_step *s)
{
    bool ok = true;

    unsigned allowed = action_spec[s->action].allowed, required = action_spec[s->action].required;
    static const struct { const char *key; unsigned flag; } keyflags[] = {
        { "command", K_COMMAND }, { "target", K_TARGET }, { "prompt", K_PROMPT }, { "expires", K_EXPIRES },
        { "message", K_MESSAGE }, { "mode", K_MODE }, { "lift", K_LIFT }, { "required", K_REQUIRED },
        { "remove", K_REMOVE }, { "op", K_OP },
    };
    static const char *const common[] = { "action", "timeout", "retries", "retry_delay", "on_failure", "description" };

    for (size_t i = 0; i < x->n_kv; i++) {
        bool known = false;
        for (size_t k = 0; k < ARRAY_LEN(common) && !known; k++)
            known = strcmp(x->kv[i].key, common[k]) == 0;
        for (size_t k = 0; k < ARRAY_LEN(keyflags) && !known; k++)
            if (strcmp(x->kv[i].key, keyflags[k].key) == 0) {
                known = true;
                if (!(allowed & keyflags[k].flag)) {
                    rb_error(x, x->kv[i].line, "key %s does not apply to action %s", x->kv[i].key, action_names[s->action]);
                    ok = false;
                }
            }
        if (!known) {
            rb_error(x, x->kv[i].line, "unknown key \"%s\" in step %s", x->kv[i].key, s->name);
            ok = false;
        }
    }
    for (size_t k = 0; k < ARRAY_LEN(keyflags); k++)
        if ((required & keyflags[k].flag) && kv_find(x, keyflags[k].key) == NULL) {
            rb_error(x, s->line, "step %s (action %s) needs a value for %s", s->name,
                     action_names[s->action], keyflags[k].key);
            ok = false;
        }

    return ok;
}

/* Durations, numbers, choices and booleans, with their defaults. */
static bool parse_values(load_ctx *x, runbook_step *s)
{
    const raw_kv *kv;
    bool ok = true;

    s->timeout_ms = action_spec[s->action].default_timeout_ms;
    s->expires_ms = 3600000;
    s->retry_delay_ms = 1000;
    ok = get_duration(x, "timeout", &s->timeout_ms) && ok;
    ok = get_duration(x, "expires", &s->expires_ms) && ok;
    ok = get_duration(x, "retry_delay", &s->retry_delay_ms) && ok;
    if ((kv = kv_find(x, "retries")) != NULL) {
        char *end;
        long long n = strtoll(kv->value, &end, 10);
        if (*kv->value == '\0' || *end != '\0' || n < 0 || n > 100) {
            rb_error(x, kv->line, "bad retries \"%s\" (a number from 0 to 100)", kv->value);
            ok = false;
        }
        s->retries = n;
    }
    if ((kv = kv_find(x, "on_failure")) != NULL) {
        bool found = false;
        for (size_t i = 0; i < ARRAY_LEN(on_failure_names); i++)
            if (strcmp(kv->value, on_failure_names[i]) == 0) {
                s->on_failure = (step_on_failure)i;
                found = true;
            }
        if (!found) {
            rb_error(x, kv->line, "bad on_failure \"%s\" (abort, continue or ask)", kv->value);
            ok = false;
        }
    }
    if ((kv = kv_find(x, "target")) != NULL && action_spec[s->action].targets != NULL &&
        !one_of(kv->value, action_spec[s->action].targets)) {
        rb_error(x, kv->line, "bad target \"%s\" (one of %s)", kv->value, action_spec[s->action].targets);
        ok = false;
    }
    if ((kv = kv_find(x, "lift")) != NULL && !parse_bool(kv->value, &s->lift)) {
        rb_error(x, kv->line, "bad value \"%s\" for %s (true or false)", kv->value, "lift");
        ok = false;
    }
    if ((kv = kv_find(x, "remove")) != NULL && !parse_bool(kv->value, &s->remove)) {
        rb_error(x, kv->line, "bad value \"%s\" for %s (true or false)", kv->value, "remove");
        ok = false;
    }
    s->required = x->cfg->failover_fence_required;
    if ((kv = kv_find(x, "required")) != NULL && !parse_bool(kv->value, &s->required)) {
        rb_error(x, kv->line, "bad value \"%s\" for %s (true or false)", kv->value, "required");
        ok = false;
    }
    if ((kv = kv_find(x, "op")) != NULL &&
        !one_of(kv->value, "disable-subscription|recreate-subscription|bump-sequences")) {
        rb_error(x, kv->line, "bad op \"%s\" (disable-subscription, recreate-subscription or bump-sequences)",
                 kv->value);
        ok = false;
    }
    if ((kv = kv_find(x, "mode")) != NULL && s->action == ACT_SYNC_BACK && strcmp(kv->value, "online") != 0) {
        rb_error(x, kv->line, "bad sync-back mode \"%s\" (online: replay while the app still runs, before"
                 " stop-app; without mode: the outage's changes, or the tail after an online one)", kv->value);
        ok = false;
    } else if ((kv = kv_find(x, "mode")) != NULL && s->action == ACT_FENCE &&
               !choice_parse(fence_mode_names, kv->value, &(int){ 0 })) {
        rb_error(x, kv->line, "bad fence mode \"%s\" (%s)", kv->value, "read-only, nologin, command or none");
        ok = false;
    }

    return ok;
}

/* The string keys, with ${section.key} expanded. */
static bool expand_strings(load_ctx *x, runbook_step *s)
{
    const raw_kv *kv;
    bool ok = true;

    static const struct { const char *key; size_t off; } strs[] = {
        { "command", offsetof(runbook_step, command) }, { "target", offsetof(runbook_step, target) },
        { "prompt", offsetof(runbook_step, prompt) }, { "message", offsetof(runbook_step, message) },
        { "mode", offsetof(runbook_step, mode) }, { "description", offsetof(runbook_step, description) },
        { "op", offsetof(runbook_step, op) },
    };
    for (size_t k = 0; k < ARRAY_LEN(strs); k++) {
        if ((kv = kv_find(x, strs[k].key)) == NULL)
            continue;
        char err[256];
        char *v = config_expand(x->cfg, kv->value, err, sizeof err);
        if (v == NULL) {
            rb_error(x, kv->line, "%s (in %s)", err, strs[k].key);
            ok = false;
            continue;
        }
        *(char **)((char *)s + strs[k].off) = v;
    }
    return ok;
}

/* A step's mode (checked at load) into its enum or flag. */
static void step_parse_mode(runbook_step *s)
{
    int v;
    s->fence = s->action == ACT_FENCE && choice_parse(fence_mode_names, s->mode, &v)
                   ? (fence_mode)v : FENCE_READ_ONLY;
    s->online = s->action == ACT_SYNC_BACK && str_eq(s->mode, "online");
}

/* What a fence takes from the config; an exec needs a command. */
static bool apply_defaults(load_ctx *x, runbook_step *s)
{
    bool ok = true;

    if (s->action == ACT_FENCE && s->mode == NULL)
        s->mode = strdup(fence_mode_name(x->cfg->failover_fence));
    step_parse_mode(s);
    if (s->action == ACT_FENCE) {
        if (s->target == NULL)
            s->target = strdup("primary");
        if (s->command == NULL && x->cfg->failover_fence_command != NULL)
            s->command = strdup(x->cfg->failover_fence_command);
        if (s->fence == FENCE_COMMAND && (s->command == NULL || *s->command == '\0')) {
            rb_error(x, s->line, "step %s: fence mode command needs a command (or [failover] fence_command)", s->name);
            ok = false;
        }
    }
    if (s->action == ACT_EXEC && s->command != NULL && *str_trim(s->command) == '\0') {
        rb_error(x, s->line, "step %s: command is empty", s->name);
        ok = false;
    }
    return ok;
}

/* Validate the raw keys of the step just read and add it to the runbook:
 * every check runs, so that all of a step's errors are reported at once. */
static void finish_step(load_ctx *x)
{
    if (!x->in_step)
        return;
    x->in_step = false;
    runbook_step *s = &x->rb->steps[x->rb->n_steps - 1];

    /* each returns false after reporting an error; the errors are what counts */
    if (parse_action(x, s)) {
        check_keys(x, s);
        parse_values(x, s);
        expand_strings(x, s);
        apply_defaults(x, s);
    }
    kv_clear(x);
}

static bool on_entry(void *arg, const char *section, const char *key, const char *value, int line)
{
    load_ctx *x = arg;

    if (key == NULL) {                       /* a section header */
        finish_step(x);
        if (strncmp(section, "step ", 5) != 0) {
            rb_error(x, line, "unknown section [%s] (runbook sections are [step NAME])", section);
            return true;
        }
        const char *name = section + 5;
        while (*name == ' ')
            name++;
        size_t nl = strlen(name);
        bool valid = nl > 0 && nl < STEP_NAME_LEN;
        for (size_t i = 0; i < nl && valid; i++)
            valid = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
                    name[i] == '-' || name[i] == '_';
        if (!valid) {
            rb_error(x, line, "bad step name \"%s\" (a-z, 0-9, - and _, at most 63)", name);
            return true;
        }
        for (size_t i = 0; i < x->rb->n_steps; i++)
            if (strcmp(x->rb->steps[i].name, name) == 0) {
                rb_error(x, line, "duplicate step name \"%s\" (first at line %d)", name, x->rb->steps[i].line);
                return true;
            }
        runbook_step *grown = realloc(x->rb->steps, (x->rb->n_steps + 1) * sizeof *grown);
        if (grown == NULL)
            return false;
        x->rb->steps = grown;
        runbook_step *s = &grown[x->rb->n_steps++];
        memset(s, 0, sizeof *s);
        str_copy(s->name, name, sizeof s->name);
        s->line = line;
        x->in_step = true;
        return true;
    }
    if (!x->in_step)
        return true;                         /* the header was already reported */
    raw_kv *grown = realloc(x->kv, (x->n_kv + 1) * sizeof *grown);
    if (grown == NULL)
        return false;
    x->kv = grown;
    x->kv[x->n_kv].key = strdup(key);
    x->kv[x->n_kv].value = strdup(value);
    x->kv[x->n_kv].line = line;
    x->n_kv++;
    return true;
}

runbook_t *runbook_load(const char *path, const config_t *cfg, config_errors *errs)
{
    runbook_t *rb = calloc(1, sizeof *rb);
    if (rb == NULL)
        return NULL;
    rb->path = strdup(path);
    load_ctx x = { .cfg = cfg, .errs = errs, .path = path, .rb = rb };
    size_t errors_before = errs->n;

    bool read_ok = ini_read(path, on_entry, &x, errs);
    finish_step(&x);
    kv_clear(&x);
    if (read_ok && errs->n == errors_before && rb->n_steps == 0)
        config_error_add(errs, "%s: no steps", path);
    if (!read_ok || errs->n != errors_before) {
        runbook_free(rb);
        return NULL;
    }
    return rb;
}

void runbook_step_clear(runbook_step *s)
{
    free(s->command);
    free(s->target);
    free(s->prompt);
    free(s->message);
    free(s->mode);
    free(s->description);
    free(s->op);
    memset(s, 0, sizeof *s);
}

void runbook_free(runbook_t *rb)
{
    if (rb == NULL)
        return;
    for (size_t i = 0; i < rb->n_steps; i++)
        runbook_step_clear(&rb->steps[i]);
    free(rb->steps);
    free(rb->path);
    free(rb);
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v != NULL)
        json_object_set_new(o, k, json_string(v));
}

json_t *runbook_step_to_json(const runbook_step *s)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "action", json_string(step_action_name(s->action)));
    json_object_set_new(o, "line", json_integer(s->line));
    json_object_set_new(o, "timeout_ms", json_integer(s->timeout_ms));
    json_object_set_new(o, "retries", json_integer(s->retries));
    json_object_set_new(o, "retry_delay_ms", json_integer(s->retry_delay_ms));
    json_object_set_new(o, "on_failure", json_string(step_on_failure_name(s->on_failure)));
    set_str(o, "command", s->command);
    set_str(o, "target", s->target);
    set_str(o, "prompt", s->prompt);
    json_object_set_new(o, "expires_ms", json_integer(s->expires_ms));
    set_str(o, "message", s->message);
    set_str(o, "mode", s->mode);
    json_object_set_new(o, "lift", json_boolean(s->lift));
    json_object_set_new(o, "required", json_boolean(s->required));
    json_object_set_new(o, "remove", json_boolean(s->remove));
    set_str(o, "description", s->description);
    set_str(o, "op", s->op);
    return o;
}

static char *dup_str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v != NULL ? strdup(v) : NULL;
}

bool runbook_step_from_json(json_t *j, runbook_step *out)
{
    memset(out, 0, sizeof *out);
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *action = json_string_value(json_object_get(j, "action"));
    if (name == NULL || action == NULL || !step_action_parse(action, &out->action))
        return false;
    str_copy(out->name, name, sizeof out->name);
    out->line = (int)json_integer_value(json_object_get(j, "line"));
    out->timeout_ms = json_integer_value(json_object_get(j, "timeout_ms"));
    out->retries = json_integer_value(json_object_get(j, "retries"));
    out->retry_delay_ms = json_integer_value(json_object_get(j, "retry_delay_ms"));
    const char *of = json_string_value(json_object_get(j, "on_failure"));
    for (size_t i = 0; of != NULL && i < ARRAY_LEN(on_failure_names); i++)
        if (strcmp(of, on_failure_names[i]) == 0)
            out->on_failure = (step_on_failure)i;
    out->command = dup_str(j, "command");
    out->target = dup_str(j, "target");
    out->prompt = dup_str(j, "prompt");
    out->expires_ms = json_integer_value(json_object_get(j, "expires_ms"));
    out->message = dup_str(j, "message");
    out->mode = dup_str(j, "mode");
    step_parse_mode(out);
    out->lift = json_is_true(json_object_get(j, "lift"));
    out->required = json_is_true(json_object_get(j, "required"));
    out->remove = json_is_true(json_object_get(j, "remove"));
    out->description = dup_str(j, "description");
    out->op = dup_str(j, "op");
    return true;
}
