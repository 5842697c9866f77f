/* fuzz_runbook.c - the runbook parser (src/conf/runbook.c): every input is
 * written as a runbook file and loaded against a fixed, realistic drd
 * configuration (so ${section.key} references resolve). A runbook that
 * loads is then persisted the way a run persists its steps: each step
 * to JSON, to text, back, and must come back identical (a step that
 * changes or vanishes on the way changes what a resumed run executes). */
#include "fuzz.h"

#include <jansson.h>

#include "drd/conf/config.h"
#include "drd/conf/runbook.h"

static config_t *cfg;

static const char config_text[] =
    "[primary]\n"
    "url = postgresql://drd:secret@10.0.0.1:5432/app\n"
    "[backup]\n"
    "url = postgresql://drd@10.0.0.2:5432/app\n"
    "[app]\n"
    "env_file = app.env\n"
    "stop = systemctl stop app\n"
    "start = systemctl start app\n"
    "health_url = http://127.0.0.1:8000/health\n"
    "[failover]\n"
    "fence = read-only\n"
    "[refresh]\n"
    "mode = logical\n"
    "[notify]\n"
    "webhook = https://hooks.example/x\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[128];
    config_errors errs = { 0 };

    (void)argc;
    (void)argv;
    fuzz_quiet();
    fuzz_path(path, sizeof path, "drd.conf");
    fuzz_write(path, config_text, sizeof config_text - 1);
    cfg = config_load(path, &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        abort();
    }
    config_errors_free(&errs);
    return 0;
}

static bool str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void same_step(const runbook_step *a, const runbook_step *b)
{
#define SAME(f) if (a->f != b->f) fuzz_fail("step %s: %s changed through JSON", a->name, #f)
#define SAME_STR(f) if (!str_same(a->f, b->f)) fuzz_fail("step %s: %s changed through JSON", a->name, #f)
    SAME_STR(name);
    SAME(action);
    SAME(line);
    SAME(timeout_ms);
    SAME(retries);
    SAME(retry_delay_ms);
    SAME(on_failure);
    SAME_STR(command);
    SAME_STR(target);
    SAME_STR(prompt);
    SAME(expires_ms);
    SAME_STR(message);
    SAME_STR(mode);
    SAME(lift);
    SAME(required);
    SAME(remove);
    SAME_STR(op);
    SAME_STR(description);
#undef SAME
#undef SAME_STR
}

static void round_trip(const runbook_step *s)
{
    json_t *j = runbook_step_to_json(s), *back = NULL;
    char *text = NULL;
    runbook_step copy;

    if (j == NULL)
        fuzz_fail("step %s: no JSON", s->name);
    text = json_dumps(j, JSON_COMPACT);
    if (text == NULL)
        fuzz_fail("step %s: JSON cannot be written", s->name);
    back = json_loads(text, 0, NULL);
    if (back == NULL || !runbook_step_from_json(back, &copy))
        fuzz_fail("step %s: its JSON %s does not load back", s->name, text);
    same_step(s, &copy);
    runbook_step_clear(&copy);
    json_decref(back);
    json_decref(j);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    char path[128];
    config_errors errs = { 0 };
    runbook_t *rb;

    fuzz_path(path, sizeof path, "runbook.ini");
    fuzz_write(path, data, len);
    rb = runbook_load(path, cfg, &errs);
    if (rb != NULL) {
        if (errs.n != 0)
            fuzz_fail("runbook_load succeeded with %zu errors", errs.n);
        for (size_t i = 0; i < rb->n_steps; i++)
            round_trip(&rb->steps[i]);
    } else if (errs.n == 0) {
        fuzz_fail("runbook_load failed without saying why");
    }
    runbook_free(rb);
    config_errors_free(&errs);
    return 0;
}
