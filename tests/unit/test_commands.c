/* commands: the queue the HTTP thread posts requests into (order, bound,
 * request ids, the eventfd that wakes the loop, posts from another thread)
 * and the handler that carries each out through fake engine operations
 * and says what became of it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drd/engine/commands.h"
#include "drd/core/util.h"

static command *make(command_kind kind, const char *actor)
{
    command *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->kind = kind;
    str_copy(c->actor, actor, sizeof c->actor);
    return c;
}

static bool readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void test_queue_order_ids_and_wakeup(void **state)
{
    (void)state;
    command_queue *q = command_queue_new(10, 5000);
    assert_non_null(q);
    assert_false(readable(command_queue_fd(q)));
    assert_null(command_queue_pop(q));
    assert_int_equal(command_queue_push(q, make(CMD_FAILOVER, "socket")), 5000);
    assert_int_equal(command_queue_push(q, make(CMD_APPROVE, "token")), 5001);
    assert_true(readable(command_queue_fd(q)));    /* the loop is woken */
    command *c = command_queue_pop(q);
    assert_int_equal(c->kind, CMD_FAILOVER);
    assert_int_equal(c->request_id, 5000);
    assert_true(readable(command_queue_fd(q)));    /* one still waits */
    command_free(c);
    c = command_queue_pop(q);
    assert_int_equal(c->kind, CMD_APPROVE);
    assert_string_equal(c->actor, "token");
    assert_false(readable(command_queue_fd(q)));   /* empty: cleared */
    command_free(c);
    assert_null(command_queue_pop(q));
    command_queue_free(q);
}

static void test_queue_is_bounded(void **state)
{
    (void)state;
    command_queue *q = command_queue_new(2, 1);
    assert_true(command_queue_push(q, make(CMD_REFRESH, "a")) > 0);
    assert_true(command_queue_push(q, make(CMD_REFRESH, "b")) > 0);
    command *body = make(CMD_DRILL, "c");
    body->body = strdup("{\"result\":\"succeeded\"}");
    assert_int_equal(command_queue_push(q, body), 0);  /* full: refused, freed (ASan sees a leak otherwise) */
    command_free(command_queue_pop(q));
    assert_int_equal(command_queue_push(q, make(CMD_CHECK, "d")), 3);   /* room again */
    command_queue_free(q);                           /* frees what still waits */
    assert_int_equal(command_queue_push(NULL, make(CMD_CHECK, "e")), -1);
}

#define POSTS 500
static void *poster(void *arg)
{
    command_queue *q = arg;
    for (int i = 0; i < POSTS; i++)
        command_queue_push(q, make(CMD_CHECK, "thread"));
    return NULL;
}

/* Two threads post while the loop pops: none is lost, ids are unique. */
static void test_queue_across_threads(void **state)
{
    (void)state;
    command_queue *q = command_queue_new(2 * POSTS, 1);
    pthread_t t1, t2;
    int got = 0;
    int64_t last = 0;
    char *seen = calloc(2 * POSTS + 1, 1);
    assert_int_equal(pthread_create(&t1, NULL, poster, q), 0);
    assert_int_equal(pthread_create(&t2, NULL, poster, q), 0);
    while (got < 2 * POSTS) {
        struct pollfd p = { .fd = command_queue_fd(q), .events = POLLIN };
        assert_true(poll(&p, 1, 5000) == 1);     /* woken, never stuck */
        command *c;
        while ((c = command_queue_pop(q)) != NULL) {
            assert_true(c->request_id >= 1 && c->request_id <= 2 * POSTS);
            assert_false(seen[c->request_id]);
            assert_true(c->request_id > last);    /* popped in the order queued */
            last = c->request_id;
            seen[c->request_id] = 1;
            got++;
            command_free(c);
        }
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_null(command_queue_pop(q));
    free(seen);
    command_queue_free(q);
}

/* ------------------------------------------------------------- handler */

typedef struct {
    char calls[256];             /* "failover(reason,by,id) ..." */
    bool fail;                   /* every operation refuses */
    int64_t run;                 /* what a started run gets */
} fake;

static void called(fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void called(fake *f, const char *fmt, ...)
{
    char one[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(one, sizeof one, fmt, ap);
    va_end(ap);
    size_t n = strlen(f->calls);
    snprintf(f->calls + n, sizeof f->calls - n, "%s%s", n ? " " : "", one);
}

static int64_t f_failover(void *arg, const char *reason, const char *by, int64_t id, char *err, size_t n)
{
    fake *f = arg;
    called(f, "failover(%s,%s,%lld)", reason, by, (long long)id);
    if (f->fail)
        snprintf(err, n, "the app is already on the backup");
    return f->fail ? 0 : f->run;
}

static int64_t f_failback(void *arg, const char *reason, const char *by, int64_t id, char *err, size_t n)
{
    fake *f = arg;
    called(f, "failback(%s,%s,%lld)", reason, by, (long long)id);
    if (f->fail)
        snprintf(err, n, "the app is already on the primary");
    return f->fail ? 0 : f->run;
}

static bool f_decide(void *arg, int64_t aid, bool approve, const char *choice, const char *by,
                     const char *reason, int64_t *run, char *err, size_t n)
{
    fake *f = arg;
    called(f, "decide(%lld,%s,%s,%s,%s)", (long long)aid, approve ? "approve" : "reject", choice, by, reason);
    *run = f->run;
    if (f->fail)
        snprintf(err, n, "approval %lld is already approved", (long long)aid);
    return !f->fail;
}

static bool f_refresh(void *arg, char *err, size_t n)
{
    fake *f = arg;
    called(f, "refresh");
    if (f->fail)
        snprintf(err, n, "a refresh is already running");
    return !f->fail;
}

static bool f_check(void *arg, char *err, size_t n) { called(arg, "check"); return true; }

static bool f_drill(void *arg, const char *body, char *err, size_t n)
{
    called(arg, "drill(%s)", body);
    return true;
}

static bool f_unblock(void *arg, const char *by, char *err, size_t n)
{
    fake *f = arg;
    called(f, "unblock(%s)", by);
    if (f->fail)
        snprintf(err, n, "no policy block is active");
    return !f->fail;
}

static store_request handle(fake *f, command *c)
{
    const command_ops ops = { f, f_failover, f_failback, f_decide, f_refresh, f_check, f_drill, f_unblock };
    store_request rq;
    commands_handle(&ops, c, 1234, &rq);
    return rq;
}

static void test_handler_carries_out_and_records(void **state)
{
    (void)state;
    fake f = { .run = 42 };
    command c = { .request_id = 7, .kind = CMD_FAILOVER };
    str_copy(c.actor, "socket", sizeof c.actor);
    store_request rq = handle(&f, &c);
    assert_string_equal(f.calls, "failover(requested by an operator,socket,7)");
    assert_int_equal(rq.id, 7);
    assert_string_equal(rq.kind, "failover");
    assert_string_equal(rq.state, "accepted");
    assert_string_equal(rq.actor, "socket");
    assert_int_equal(rq.run_id, 42);
    assert_int_equal(rq.at, 1234);
    assert_string_equal(rq.error, "");

    memset(&f, 0, sizeof f);
    f.run = 9;
    c.kind = CMD_FAILBACK;
    str_copy(c.reason, "primary is back", sizeof c.reason);
    rq = handle(&f, &c);
    assert_string_equal(f.calls, "failback(primary is back,socket,7)");
    assert_string_equal(rq.kind, "failback");
    assert_int_equal(rq.run_id, 9);

    memset(&f, 0, sizeof f);
    f.run = 3;
    c.kind = CMD_APPROVE;
    c.approval_id = 11;
    str_copy(c.choice, "skip", sizeof c.choice);
    rq = handle(&f, &c);
    assert_string_equal(f.calls, "decide(11,approve,skip,socket,primary is back)");
    assert_string_equal(rq.kind, "approve");
    assert_int_equal(rq.run_id, 3);                 /* the run it touched */

    memset(&f, 0, sizeof f);
    c.kind = CMD_REJECT;
    c.choice[0] = '\0';
    rq = handle(&f, &c);
    assert_string_equal(f.calls, "decide(11,reject,,socket,primary is back)");
    assert_string_equal(rq.kind, "reject");

    memset(&f, 0, sizeof f);
    command d = { .request_id = 8, .kind = CMD_DRILL, .body = (char *)"{}" };
    rq = handle(&f, &d);
    assert_string_equal(f.calls, "drill({})");
    d.kind = CMD_CHECK;
    memset(&f, 0, sizeof f);
    rq = handle(&f, &d);
    assert_string_equal(f.calls, "check");
    assert_string_equal(rq.state, "accepted");
}

static void test_handler_records_refusals(void **state)
{
    (void)state;
    fake f = { .fail = true };
    command c = { .request_id = 9, .kind = CMD_FAILOVER };
    str_copy(c.actor, "token", sizeof c.actor);
    store_request rq = handle(&f, &c);
    assert_string_equal(rq.state, "refused");
    assert_string_equal(rq.error, "the app is already on the backup");
    assert_int_equal(rq.run_id, 0);
    c.kind = CMD_REFRESH;
    rq = handle(&f, &c);
    assert_string_equal(rq.kind, "refresh");
    assert_string_equal(rq.state, "refused");
    assert_string_equal(rq.error, "a refresh is already running");
    c.kind = CMD_UNBLOCK;
    rq = handle(&f, &c);
    assert_string_equal(rq.kind, "unblock");
    assert_string_equal(rq.error, "no policy block is active");
    memset(&f, 0, sizeof f);
    c.kind = (command_kind)77;                     /* nothing is called */
    rq = handle(&f, &c);
    assert_string_equal(f.calls, "");
    assert_string_equal(rq.state, "refused");
    assert_string_equal(rq.error, "unknown request");
    assert_string_equal(rq.kind, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_order_ids_and_wakeup),
        cmocka_unit_test(test_queue_is_bounded),
        cmocka_unit_test(test_queue_across_threads),
        cmocka_unit_test(test_handler_carries_out_and_records),
        cmocka_unit_test(test_handler_records_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
