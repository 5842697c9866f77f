/* fuzz_api_json.c - JSON request bodies through the API handlers: the
 * first byte picks a POST route, the rest is the body, sent over the
 * unix socket to the real server in this process. Every answer is HTTP
 * with a JSON body; a 202 queued exactly one command of the route's kind,
 * with the reason the body gave. */
#include "fuzz_api.h"

static const struct {
    const char *path;
    int kind;                  /* command_kind, or 0: no command */
} routes[] = {
    { "/api/failover", CMD_FAILOVER },
    { "/api/failback", CMD_FAILBACK },
    { "/api/approvals/1/approve", CMD_APPROVE },
    { "/api/approvals/7/reject", CMD_REJECT },
    { "/api/refresh", CMD_REFRESH },
    { "/api/checks", CMD_CHECK },
    { "/api/drill", CMD_DRILL },
    { "/api/login", 0 },
    { "/api/logout", 0 },
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_api_start();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    char head[256];
    size_t reply_len, hlen;
    char *req, *reply;
    int status;
    json_t *given = NULL;

    if (len < 1)
        return 0;
    size_t r = data[0] % ARRAY_LEN(routes);
    const uint8_t *body = data + 1;
    size_t blen = len - 1;

    hlen = (size_t)snprintf(head, sizeof head,
                            "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                            routes[r].path, blen);
    req = malloc(hlen + blen);
    if (req == NULL)
        abort();
    memcpy(req, head, hlen);
    memcpy(req + hlen, body, blen);
    reply = fuzz_api_send(false, req, hlen + blen, &reply_len);
    status = fuzz_api_check_reply(reply, reply_len, false, NULL);
    if (status == 0)
        fuzz_fail("%s: no answer", routes[r].path);

    command *c = command_queue_pop(api_commands(fuzz_api));
    if (status == 202) {
        if (c == NULL || (int)c->kind != routes[r].kind)
            fuzz_fail("%s: 202 but %s", routes[r].path, c == NULL ? "nothing queued" : "another kind queued");
        given = json_loadb((const char *)body, blen, 0, NULL);
        const char *reason = json_string_value(json_object_get(given, "reason"));
        if (reason != NULL && strcmp(reason, c->reason) != 0)
            fuzz_fail("%s: reason \"%s\" queued as \"%s\"", routes[r].path, reason, c->reason);
        if (c->kind == CMD_DRILL) {
            json_t *report = c->body != NULL ? json_loads(c->body, 0, NULL) : NULL;
            if (report == NULL)
                fuzz_fail("%s: the queued report is not JSON", routes[r].path);
            json_decref(report);
        }
    } else if (c != NULL) {
        fuzz_fail("%s: status %d but a command was queued", routes[r].path, status);
    }
    json_decref(given);
    command_free(c);
    fuzz_api_drain();
    free(reply);
    free(req);
    return 0;
}
