/* client.c - drctl's transport: HTTP calls to drd over the unix socket
 * or TCP (libcurl), and how an unreachable daemon or an HTTP error is
 * reported. */
#include "cli_int.h"

/* ------------------------------------------------------------------ */
/* HTTP                                                               */

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    buffer *b = arg;
    size_t add = sz * n;

    if (b->len + add > MAX_REPLY)
        return 0;
    sb_addn(b, p, add);
    return b->oom ? 0 : add;
}

/* Where we talk to, for messages (secrets masked). */
void endpoint_name(const drctl *x, char *out, size_t n)
{
    if (x->url != NULL)
        mask_secrets(x->url, out, n);
    else
        str_copy(out, x->socket_path, n);
}

call_rc http_call(const drctl *x, const char *method, const char *path,
                  const char *body, long *code, buffer *reply,
                  char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[2048];
    char auth[4200];
    char cerr[CURL_ERROR_SIZE];
    CURLcode rc;
    call_rc out = CALL_OK;

    *code = 0;
    sb_init(reply);
    err[0] = '\0';
    cerr[0] = '\0';
    if (c == NULL) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return CALL_UNREACHABLE;
    }
    if (x->url != NULL) {
        size_t n = str_copy(url, x->url, sizeof(url));
        while (n > 0 && url[n - 1] == '/')
            url[--n] = '\0';
        if (n >= sizeof(url) - 1 || !str_append(url, sizeof(url), path)) {
            snprintf(err, errlen, "URL too long");
            curl_easy_cleanup(c);
            return CALL_BAD_URL;
        }
        if (x->token != NULL) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", x->token);
            h = curl_slist_append(h, auth);
            explicit_bzero(auth, sizeof(auth));
        }
    } else {
        snprintf(url, sizeof(url), "http://localhost%s", path);
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, x->socket_path);
    }
    h = curl_slist_append(h, "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "drctl");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, reply);
    if (strcmp(method, "POST") == 0) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(body != NULL ? strlen(body) : 0));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);

    rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
    } else {
        char masked[CURL_ERROR_SIZE + 64];

        mask_secrets(cerr[0] != '\0' ? cerr : curl_easy_strerror(rc), masked, sizeof(masked));
        snprintf(err, errlen, "%s", masked);
        out = (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
              ? CALL_BAD_URL : CALL_UNREACHABLE;
        free(reply->s);
        reply->s = NULL;
        reply->len = 0;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return out;
}

/* Message for a transport failure; returns the exit code. */
int report_unreachable(const drctl *x, call_rc rc, const char *err)
{
    char where[1024];

    endpoint_name(x, where, sizeof(where));
    if (rc == CALL_BAD_URL) {
        fprintf(stderr, "drctl: bad --url %s: %s\n", where, err);
        return EXIT_BAD_CONFIG;
    }
    if (x->url == NULL && access(x->socket_path, F_OK) == 0 &&
        access(x->socket_path, W_OK) != 0 && errno == EACCES) {
        fprintf(stderr, "drctl: cannot reach %s: permission denied "
                        "(run as root or as a member of the socket's group)\n", where);
        return EXIT_UNREACHABLE;
    }
    if (x->url != NULL)
        fprintf(stderr, "drctl: drd is not running (cannot reach %s: %s)\n", where, err);
    else
        fprintf(stderr, "drctl: drd is not running (cannot reach %s)\n", where);
    return EXIT_UNREACHABLE;
}

/* Terminal safety.  Text drd sends (reasons, notes, errors, step output)
 * or drctl reads from its state file may hold escape sequences that erase
 * or recolour lines and so fake what drctl shows.  Every printer in human
 * mode first passes what it prints through human(): each string becomes
 * tty_clean's (control characters, C1 controls and invalid UTF-8 as
 * visible escapes); a step's "output", printed line by line, keeps \n and
 * \t.  --json prints what was received, exactly. */
static void tty_json(json_t *v, bool multiline)
{
    const char *key;
    json_t *item;
    size_t i;

    if (json_is_string(v)) {
        if (!tty_is_clean(json_string_value(v), multiline)) {
            char *clean = tty_clean_dup(json_string_value(v), multiline);
            json_string_set(v, clean != NULL ? clean : "?");
            free(clean);
        }
    } else if (json_is_object(v)) {
        json_object_foreach(v, key, item)
            tty_json(item, strcmp(key, "output") == 0);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
            tty_json(item, multiline);
    }
}

json_t *human(json_t *v)
{
    tty_json(v, false);
    return v;
}

/* The daemon answered with an error status: print its message. */
int report_http_error(long code, const buffer *reply)
{
    json_t *doc = reply->s != NULL ? json_loadb(reply->s, reply->len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(human(doc), "error"));

    if (msg != NULL)
        fprintf(stderr, "drctl: %s (HTTP %ld)\n", msg, code);
    else
        fprintf(stderr, "drctl: drd answered HTTP %ld\n", code);
    if (code == 401 || code == 429)   /* 429: a wrong token, throttled */
        fprintf(stderr, "drctl: check the API token (--token-file or [http] token_file)\n");
    json_decref(doc);
    return EXIT_FAILURE_;
}

/* GET path and parse the JSON answer. Returns -1 with *doc set on success,
 * else an exit code, with the message printed - except for an unreachable
 * daemon when `unreachable` is given: then *unreachable=true, nothing is
 * printed, and the caller decides. */
int get_json(const drctl *x, const char *path, json_t **doc, bool *unreachable)
{
    char err[512];
    buffer reply;
    long code;
    json_error_t jerr;
    call_rc rc = http_call(x, "GET", path, NULL, &code, &reply, err, sizeof(err));

    *doc = NULL;
    if (rc != CALL_OK) {
        if (rc == CALL_UNREACHABLE && unreachable != NULL) {
            *unreachable = true;
            return EXIT_UNREACHABLE;
        }
        return report_unreachable(x, rc, err);
    }
    if (code < 200 || code > 299) {
        int ex = report_http_error(code, &reply);
        free(reply.s);
        return ex;
    }
    *doc = json_loadb(reply.s != NULL ? reply.s : "", reply.len, 0, &jerr);
    free(reply.s);
    if (*doc == NULL) {
        fprintf(stderr, "drctl: drd sent malformed JSON for %s: %s\n", path, jerr.text);
        return EXIT_FAILURE_;
    }
    return -1;
}

void print_json(json_t *doc)
{
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if (s != NULL) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}
