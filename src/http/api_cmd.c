/* api_cmd.c - the command queue: POSTs that ask drd to act are checked
 * here and queued for the main loop (woken by an eventfd), answered 202
 * with the request id. */
#include "api_int.h"
#include "drd/engine/approvals.h"

/* ------------------------------------------------------------------ */
/* the command queue                                                  */

/* Returns the request id, 0 when the queue is full, -1 on error. */
static int64_t queue_cmd(api_t *a, command_kind kind, int64_t approval_id,
                         const char *reason, const char *choice, const char *actor, char *body)
{
    command *cmd = calloc(1, sizeof(*cmd));

    if (cmd == NULL) {
        free(body);
        return -1;
    }
    cmd->body = body;
    cmd->kind = kind;
    cmd->approval_id = approval_id;
    str_copy(cmd->reason, reason, sizeof(cmd->reason));
    str_copy(cmd->choice, choice, sizeof(cmd->choice));
    str_copy(cmd->actor, actor, sizeof(cmd->actor));
    return command_queue_push(a->cmds, cmd);
}

static bool body_is_blank(const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)b[i]))
            return false;
    return true;
}

/* The optional body {"reason": "..."}. false with a message for a 400. */
static bool parse_body(const request *rq, char *reason, size_t n, char *choice, size_t cn,
                       char *msg, size_t msglen)
{
    json_error_t jerr;
    json_t *doc, *r;
    bool ok = false;

    reason[0] = '\0';
    choice[0] = '\0';
    if (rq->len == 0 || body_is_blank(rq->body, rq->len))
        return true;
    doc = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(msg, msglen, "malformed JSON body: %s (line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
        return false;
    }
    if (!json_is_object(doc)) {
        snprintf(msg, msglen, "the body must be a JSON object");
        goto done;
    }
    r = json_object_get(doc, "reason");
    if (r != NULL && !json_is_null(r)) {
        if (!json_is_string(r)) {
            snprintf(msg, msglen, "reason must be a string");
            goto done;
        }
        if (json_string_length(r) >= n) {
            snprintf(msg, msglen, "reason is too long (at most %zu bytes)", n - 1);
            goto done;
        }
        str_copy(reason, json_string_value(r), n);
    }
    r = json_object_get(doc, "choice");
    if (r != NULL && !json_is_null(r)) {
        const char *v = json_string_value(r);
        approval_choice ch;
        if (v == NULL || *v == '\0' || !approval_choice_parse(v, &ch)) {
            snprintf(msg, msglen, "choice must be \"retry\", \"skip\", \"abort\", \"backup-wins\" or \"primary-wins\"");
            goto done;
        }
        str_copy(choice, v, cn);
    }
    ok = true;
done:
    json_decref(doc);
    return ok;
}

/* POST /api/drill: record a drill's report (drctl drill sends it). The
 * body: {"started_at": ms, "ended_at": ms, "result": "succeeded"|"failed",
 * ...figures}; stored as given, after masking, by the main loop. */
static enum MHD_Result post_drill(listener *l, struct MHD_Connection *c, request *rq)
{
    json_error_t jerr;
    json_t *doc = json_loadb(rq->body ? rq->body : "", rq->len, JSON_REJECT_DUPLICATES, &jerr);
    char msg[256];
    const char *res;

    if (doc == NULL) {
        snprintf(msg, sizeof msg, "malformed JSON body: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, msg);
    }
    res = json_string_value(json_object_get(doc, "result"));
    if (!json_is_object(doc) || res == NULL ||
        (strcmp(res, "succeeded") != 0 && strcmp(res, "failed") != 0) ||
        !json_is_integer(json_object_get(doc, "started_at")) ||
        !json_is_integer(json_object_get(doc, "ended_at"))) {
        json_decref(doc);
        return api_send_error(c, MHD_HTTP_BAD_REQUEST,
                              "a drill report needs result (succeeded|failed), started_at and ended_at");
    }
    json_int_t t0 = json_integer_value(json_object_get(doc, "started_at"));
    json_int_t t1 = json_integer_value(json_object_get(doc, "ended_at"));
    if (t0 <= 0 || t1 < t0 || t1 > wall_ms() + 60000) {
        json_decref(doc);
        return api_send_error(c, MHD_HTTP_BAD_REQUEST,
                              "a drill report's started_at <= ended_at, in wall ms, not in the future");
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL)
        return MHD_NO;
    int64_t id = queue_cmd(l->api, CMD_DRILL, 0, "", "", rq->actor, text);
    if (id == 0)
        return api_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many queued requests");
    if (id < 0)
        return MHD_NO;
    return api_send_json(c, MHD_HTTP_ACCEPTED,
                         json_pack("{s:I,s:s}", "request_id", (json_int_t)id, "status", "queued"));
}

enum MHD_Result api_post_command(listener *l, struct MHD_Connection *c, request *rq)
{
    api_t *a = l->api;
    char reason[sizeof(((command *)0)->reason)];
    char choice[sizeof(((command *)0)->choice)];
    char msg[256];
    int64_t approval_id = 0, id;
    command_kind kind;

    if (rq->r.id == R_DRILL)
        return post_drill(l, c, rq);
    if (!parse_body(rq, reason, sizeof(reason), choice, sizeof(choice), msg, sizeof(msg)))
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, msg);

    switch (rq->r.id) {
    case R_FAILOVER: kind = CMD_FAILOVER; break;
    case R_FAILBACK: kind = CMD_FAILBACK; break;
    case R_REFRESH:  kind = CMD_REFRESH; break;
    case R_CHECKS:   kind = CMD_CHECK; break;
    case R_UNBLOCK:  kind = CMD_UNBLOCK; break;
    case R_APPROVE:  kind = CMD_APPROVE; break;
    case R_REJECT:   kind = CMD_REJECT; break;
    default:
        return api_send_error(c, MHD_HTTP_NOT_FOUND, "not found");
    }
    if (kind == CMD_APPROVE || kind == CMD_REJECT) {
        if (rq->r.id_too_long || !api_parse_id(rq->r.id_str, false, &approval_id))
            return api_send_error(c, MHD_HTTP_BAD_REQUEST,
                                  "approval id must be a positive integer");
    }
    if (choice[0] != '\0' && kind != CMD_APPROVE)
        return api_send_error(c, MHD_HTTP_BAD_REQUEST, "choice only applies to approve");
    id = queue_cmd(a, kind, approval_id, reason, choice, rq->actor, NULL);
    if (id == 0)
        return api_send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many queued requests");
    if (id < 0)
        return MHD_NO;
    return api_send_json(c, MHD_HTTP_ACCEPTED,
                         json_pack("{s:I,s:s}", "request_id", (json_int_t)id, "status", "queued"));
}
