/* drctl.c - the command-line client of drd's HTTP API (libcurl), over the
 * unix socket by default or over TCP with --url and a token. When the
 * daemon cannot be reached, `status` falls back to the state database,
 * read-only, and says so.
 *
 *   drctl [-c FILE] [--url URL] [--token-file F] COMMAND [ARGS]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <jansson.h>

#include "drd/engine/attention.h"
#include "drd/check/check.h"
#include "drd/check/plan.h"
#include "drd/check/privs.h"
#include "drd/conf/config.h"
#include "drd/conf/envfile.h"
#include "drd/core/log.h"
#include "drd/pg/pgconn.h"
#include "drd/engine/policy.h"
#include "drd/engine/status.h"
#include "drd/store/store.h"
#include "drd/core/tty.h"
#include "drd/core/util.h"
#include "drd/engine/views.h"

#define DEFAULT_CONFIG   "/etc/drd/drd.conf"
#define DEFAULT_SOCKET   "/run/drd/drd.sock"
#define CONNECT_TIMEOUT_MS 2000L
#define TOTAL_TIMEOUT_MS   10000L
#define MAX_REPLY        (16 * 1024 * 1024)
#define HISTORY_INCIDENTS 20
#define HISTORY_EVENTS    50
#define HISTORY_RUNS      10

typedef struct {
    /* command line */
    const char *config_path;
    bool config_explicit;
    const char *url;             /* --url: TCP instead of the unix socket */
    const char *token_file;
    const char *command;
    const char *args[4];         /* positional arguments after the command */
    size_t nargs;
    bool json, yes, skip;
    bool dry_run;                /* failover|failback --dry-run */
    bool drill;                  /* --drill: the [drill] environment's drd */
    const char *choice;          /* approve --choice WORD (--skip = skip) */
    const char *reason;
    bool has_reason;

    /* resolved */
    config_t *cfg;
    const char *state_db;
    char *own_socket, *own_db;   /* when the config had errors */
    char *token;                 /* never printed */
    const char *socket_path;
} drctl;

typedef struct {
    char *data;
    size_t len;
} buffer;

typedef enum {
    CALL_OK,                     /* an HTTP answer (any status) */
    CALL_UNREACHABLE,            /* no answer: refused, missing socket, timeout */
    CALL_BAD_URL,                /* --url is unusable */
} call_rc;

static void usage(FILE *out)
{
    fprintf(out,
        "usage: drctl [-c FILE] [--url URL] [--token-file FILE] COMMAND [ARGS]\n"
        "\n"
        "Commands:\n"
        "  status [--json]                   targets, active side, daemon state, approvals;\n"
        "                                    first line ATTENTION when the app is left stopped\n"
        "  history [--json]                  recent incidents and events, newest first\n"
        "  failover [--yes] [--reason TEXT]  switch the app to the backup\n"
        "  failback [--yes] [--reason TEXT]  switch the app back to the primary\n"
        "  failover|failback --dry-run [--json]\n"
        "                                    print the plan (commands, changes, prerequisites);\n"
        "                                    runs nothing; exit 1 when a prerequisite fails\n"
        "  approve ID [--skip|--choice C] [--reason T]\n"
        "                                    approve a pending approval; for a step that needs\n"
        "                                    attention: --skip, or --choice retry|skip|abort|\n"
        "                                    backup-wins|primary-wins (sync-back conflicts)\n"
        "  reject ID [--reason TEXT]         reject a pending approval\n"
        "  refresh                           copy the primary to the backup now ([refresh] mode)\n"
        "  refreshes [--json]                recent backup refreshes, newest first\n"
        "  check [--json]                    preflight: would a failover and a failback work?\n"
        "                                    changes nothing; exit 1 when a check fails\n"
        "  grants primary|backup             the SQL that gives drd's role on that side exactly\n"
        "                                    what the runbooks and [refresh] need (pipe it into\n"
        "                                    psql as a superuser or the owner); reads the object\n"
        "                                    names from the server\n"
        "  drill [--json]                    rehearse a failover and failback in the [drill]\n"
        "                                    environment and report the figures\n"
        "  unblock                           lift the policy block after an automatic failover\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE   drd's configuration (default " DEFAULT_CONFIG ")\n"
        "  --url URL           talk to drd over HTTP at URL (e.g. http://10.0.0.5:8080)\n"
        "                      instead of its unix socket; needs the API token\n"
        "  --token-file FILE   file with the API token (default: [http] token_file)\n"
        "  --drill             talk to the [drill] environment's drd and check the [drill]\n"
        "                      environment (status, history, check, failback, ...)\n"
        "  -h, --help          show this help\n"
        "\n"
        "Exit status: 0 ok, 1 failure, 2 usage or configuration error,\n"
        "3 drd unreachable (status, history and refreshes then show the last known state\n"
        "from its database), 4 (status) a run failed or waits while the app is stopped\n"
        "(the first line of status says so).\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "drctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n");
    usage(stderr);
    return EXIT_BAD_CONFIG;
}

/* ------------------------------------------------------------------ */
/* arguments                                                          */

/* "--name VALUE" or "--name=VALUE". Returns 1 if matched (value set, *i
 * advanced), 0 if not this option, -1 if the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *shortname,
                     const char *longname, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(longname);

    if ((shortname != NULL && strcmp(a, shortname) == 0) || strcmp(a, longname) == 0) {
        if (*i + 1 >= argc)
            return -1;
        *value = argv[++*i];
        return 1;
    }
    if (strncmp(a, longname, n) == 0 && a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    return 0;
}

/* Options may come before or after the command. Returns -1 to go on,
 * or an exit code. */
static int parse_args(drctl *x, int argc, char **argv)
{
    bool options_done = false;

    x->config_path = DEFAULT_CONFIG;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        int m;

        if (!options_done && a[0] == '-' && a[1] != '\0') {
            if (strcmp(a, "--") == 0) {
                options_done = true;
                continue;
            }
            if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                usage(stdout);
                return EXIT_OK;
            }
            if (strcmp(a, "--json") == 0) {
                x->json = true;
                continue;
            }
            if (strcmp(a, "--yes") == 0 || strcmp(a, "-y") == 0) {
                x->yes = true;
                continue;
            }
            if (strcmp(a, "--skip") == 0) {
                x->skip = true;
                continue;
            }
            if (strcmp(a, "--dry-run") == 0) {
                x->dry_run = true;
                continue;
            }
            if (strcmp(a, "--drill") == 0) {
                x->drill = true;
                continue;
            }
            if ((m = opt_value(argc, argv, &i, "-c", "--config", &v)) != 0) {
                if (m < 0)
                    return usage_error("%s needs a file", a);
                x->config_path = v;
                x->config_explicit = true;
                continue;
            }
            if ((m = opt_value(argc, argv, &i, NULL, "--url", &v)) != 0) {
                if (m < 0 || *v == '\0')
                    return usage_error("%s needs a URL", a);
                x->url = v;
                continue;
            }
            if ((m = opt_value(argc, argv, &i, NULL, "--token-file", &v)) != 0) {
                if (m < 0 || *v == '\0')
                    return usage_error("%s needs a file", a);
                x->token_file = v;
                continue;
            }
            if ((m = opt_value(argc, argv, &i, NULL, "--choice", &v)) != 0) {
                if (m < 0 || *v == '\0')
                    return usage_error("%s needs one of retry, skip, abort, backup-wins, primary-wins", a);
                x->choice = v;
                continue;
            }
            if ((m = opt_value(argc, argv, &i, NULL, "--reason", &v)) != 0) {
                if (m < 0)
                    return usage_error("%s needs a text", a);
                x->reason = v;
                x->has_reason = true;
                continue;
            }
            return usage_error("unknown option %s", a);
        }
        if (x->command == NULL) {
            x->command = a;
        } else {
            if (x->nargs >= ARRAY_LEN(x->args))
                return usage_error("too many arguments (%s)", a);
            x->args[x->nargs++] = a;
        }
    }
    if (x->command == NULL)
        return usage_error("no command given");
    if (strcmp(x->command, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    return -1;
}

/* Check that the command accepts what was given. Returns -1 or an exit code. */
static int check_command_args(const drctl *x)
{
    static const struct {
        const char *name;
        size_t nargs;
        bool json, yes, reason;
    } cmds[] = {
        { "status",   0, true,  false, false },
        { "history",  0, true,  false, false },
        { "failover", 0, false, true,  true  },
        { "failback", 0, false, true,  true  },
        { "approve",  1, false, false, true  },
        { "reject",   1, false, false, true  },
        { "refresh",  0, false, false, false },
        { "refreshes", 0, true, false, false },
        { "check",    0, true,  false, false },
        { "grants",   1, false, false, false },
        { "drill",    0, true,  true,  false },
        { "unblock",  0, false, false, false },
    };

    for (size_t i = 0; i < ARRAY_LEN(cmds); i++) {
        if (strcmp(cmds[i].name, x->command) != 0)
            continue;
        if (x->nargs < cmds[i].nargs)
            return usage_error(strcmp(x->command, "grants") == 0 ? "%s needs primary or backup"
                                                                  : "%s needs an approval ID", x->command);
        if (x->nargs > cmds[i].nargs)
            return usage_error("unexpected argument %s", x->args[cmds[i].nargs]);
        bool plan = x->dry_run && (strcmp(x->command, "failover") == 0 ||
                                   strcmp(x->command, "failback") == 0);
        if (x->dry_run && !plan)
            return usage_error("%s does not take --dry-run", x->command);
        if (x->json && !cmds[i].json && !plan)
            return usage_error("%s does not take --json", x->command);
        if (x->yes && !cmds[i].yes)
            return usage_error("%s does not take --yes", x->command);
        if (x->has_reason && !cmds[i].reason)
            return usage_error("%s does not take --reason", x->command);
        if ((x->skip || x->choice) && strcmp(x->command, "approve") != 0)
            return usage_error("%s does not take --skip or --choice", x->command);
        if (x->skip && x->choice != NULL)
            return usage_error("--skip and --choice are one or the other");
        return -1;
    }
    return usage_error("unknown command %s", x->command);
}

/* ------------------------------------------------------------------ */
/* configuration and token                                            */

typedef struct {
    char *socket, *db;
} fallback_ctx;

static bool fallback_entry(void *arg, const char *section, const char *key, const char *value, int line)
{
    fallback_ctx *f = arg;
    char **slot = NULL;
    (void)line;
    if (key == NULL)
        return true;
    if (strcmp(section, "http") == 0 && strcmp(key, "socket") == 0)
        slot = &f->socket;
    else if (strcmp(section, "state") == 0 && strcmp(key, "db") == 0)
        slot = &f->db;
    if (slot != NULL) {
        free(*slot);
        *slot = strdup(value);
    }
    return true;
}

/* A path from the file, relative to its directory (malloc'd). */
static char *resolve(const char *config_path, const char *p)
{
    if (p[0] == '/')
        return strdup(p);
    char dir[PATH_MAX];
    str_copy(dir, config_path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        str_copy(dir, ".", sizeof dir);
    else
        *slash = '\0';
    size_t n = strlen(dir) + strlen(p) + 2;
    char *out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "%s/%s", dir, p);
    return out;
}

/* [http] socket and [state] db straight from the file, with their defaults. */
static bool fallback_settings(drctl *x)
{
    fallback_ctx f = { NULL, NULL };
    config_errors errs = { 0 };
    bool readable = ini_read(x->config_path, fallback_entry, &f, &errs) || f.socket || f.db;
    config_errors_free(&errs);
    if (!readable && access(x->config_path, R_OK) != 0) {
        free(f.socket);
        free(f.db);
        return false;
    }
    x->own_socket = resolve(x->config_path, f.socket ? f.socket : DEFAULT_SOCKET);
    x->own_db = resolve(x->config_path, f.db ? f.db : "/var/lib/drd/drd.db");
    free(f.socket);
    free(f.db);
    x->socket_path = x->own_socket;
    x->state_db = x->own_db;
    fprintf(stderr, "drctl: warning: %s has errors (`drd -n -c %s` lists them); "
                    "using its [http] socket and [state] db\n", x->config_path, x->config_path);
    return true;
}

static int load_config(drctl *x)
{
    config_errors errs = { 0 };

    /* With --url, a missing default config is fine: everything needed can
     * come from the command line. */
    if (x->url != NULL && !x->config_explicit && access(x->config_path, F_OK) != 0)
        return -1;
    x->cfg = x->drill ? config_load_drill(x->config_path, &errs) : config_load(x->config_path, &errs);
    if (x->cfg == NULL) {
        /* drctl needs only [http] and [state]: an error elsewhere (a file
         * being edited, a password file only drd may read) must not leave
         * the operator blind. Say so, and go on with those two. */
        config_errors_free(&errs);
        if (fallback_settings(x))
            return -1;
        x->cfg = x->drill ? config_load_drill(x->config_path, &errs) : config_load(x->config_path, &errs);   /* again, to print the errors */
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "drctl: %s\n", errs.msgs[i]);
        if (errs.n == 0)
            fprintf(stderr, "drctl: cannot load %s\n", x->config_path);
        config_errors_free(&errs);
        return EXIT_BAD_CONFIG;
    }
    config_errors_free(&errs);
    x->socket_path = x->cfg->http_socket;
    x->state_db = x->cfg->state_db;
    return -1;
}

static int load_token(drctl *x)
{
    if (x->token_file != NULL) {
        size_t len = 0;
        char *raw = read_file(x->token_file, 4096, &len);
        char *t;

        if (raw == NULL) {
            fprintf(stderr, "drctl: cannot read token file %s: %s\n", x->token_file,
                    strerror(errno));
            return EXIT_BAD_CONFIG;
        }
        if (strlen(raw) != len) {
            free(raw);
            fprintf(stderr, "drctl: token file %s contains a NUL byte\n", x->token_file);
            return EXIT_BAD_CONFIG;
        }
        t = str_trim(raw);
        if (*t == '\0') {
            free(raw);
            fprintf(stderr, "drctl: token file %s is empty\n", x->token_file);
            return EXIT_BAD_CONFIG;
        }
        x->token = strdup(t);
        free(raw);
    } else if (x->cfg != NULL && x->cfg->http_token != NULL && x->cfg->http_token[0] != '\0') {
        x->token = strdup(x->cfg->http_token);
    }
    if (x->token != NULL)
        log_add_secret(x->token);
    return -1;
}

/* ------------------------------------------------------------------ */
/* HTTP                                                               */

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    buffer *b = arg;
    size_t add = sz * n;
    char *nb;

    if (b->len + add > MAX_REPLY)
        return 0;
    nb = realloc(b->data, b->len + add + 1);
    if (nb == NULL)
        return 0;
    memcpy(nb + b->len, p, add);
    b->len += add;
    nb[b->len] = '\0';
    b->data = nb;
    return add;
}

/* Where we talk to, for messages (secrets masked). */
static void endpoint_name(const drctl *x, char *out, size_t n)
{
    if (x->url != NULL)
        mask_secrets(x->url, out, n);
    else
        str_copy(out, x->socket_path, n);
}

static call_rc http_call(const drctl *x, const char *method, const char *path,
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
    reply->data = NULL;
    reply->len = 0;
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
        free(reply->data);
        reply->data = NULL;
        reply->len = 0;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return out;
}

/* Message for a transport failure; returns the exit code. */
static int report_unreachable(const drctl *x, call_rc rc, const char *err)
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

static json_t *human(json_t *v)
{
    tty_json(v, false);
    return v;
}

/* The daemon answered with an error status: print its message. */
static int report_http_error(long code, const buffer *reply)
{
    json_t *doc = reply->data != NULL ? json_loadb(reply->data, reply->len, 0, NULL) : NULL;
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
static int get_json(const drctl *x, const char *path, json_t **doc, bool *unreachable)
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
        free(reply.data);
        return ex;
    }
    *doc = json_loadb(reply.data != NULL ? reply.data : "", reply.len, 0, &jerr);
    free(reply.data);
    if (*doc == NULL) {
        fprintf(stderr, "drctl: drd sent malformed JSON for %s: %s\n", path, jerr.text);
        return EXIT_FAILURE_;
    }
    return -1;
}

static void print_json(json_t *doc)
{
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if (s != NULL) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

/* ------------------------------------------------------------------ */
/* status                                                             */

static const char *str_or(json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s != NULL ? s : dflt;
}

static void print_target_row(const char *name, json_t *t)
{
    char latency[32] = "-";
    char err[512];
    const char *recovery = "-";
    json_t *lat = json_object_get(t, "latency_ms");
    json_t *last = json_object_get(t, "last_error");

    /* latency and recovery mean something only when the last probe got in */
    if (json_is_true(json_object_get(t, "reachable"))) {
        if (json_is_integer(lat))
            format_duration((int64_t)json_integer_value(lat), latency, sizeof(latency));
        recovery = json_is_true(json_object_get(t, "in_recovery")) ? "yes" : "no";
    }
    mask_secrets(json_is_string(last) ? json_string_value(last) : "-", err, sizeof(err));
    printf("%-7s %-8s %-10s %-8s %-9s %s\n", name,
           json_is_true(json_object_get(t, "healthy")) ? "yes" : "no",
           str_or(json_object_get(t, "breaker"), "?"), latency, recovery, err);
}

/* Below the table: what makes a target's state more than its row says. */
static void print_target_notes(const char *name, json_t *t)
{
    json_t *probe = json_object_get(t, "probe");
    char cause[512];
    if (str_eq(str_or(json_object_get(probe, "state"), ""), "misconfigured")) {
        mask_secrets(str_or(json_object_get(probe, "cause"), "?"), cause, sizeof(cause));
        printf("%s: MISCONFIGURED (%s): %s; not an outage: no breaker, no failover until it is fixed\n",
               name, str_or(json_object_get(t, "error_class"), "?"), cause);
    }
    if (str_eq(name, "primary") && json_is_false(json_object_get(t, "seen_healthy")) &&
        json_is_integer(json_object_get(t, "last_probe_at")))
        printf("%s: never seen healthy since drd started: no automatic failover of it "
               "([failover] require_seen_healthy); drctl failover still works\n", name);
}

static void print_run(json_t *run)
{
    json_t *steps = json_object_get(run, "steps");
    json_int_t cur = json_integer_value(json_object_get(run, "current_step"));
    printf("run %" JSON_INTEGER_FORMAT ": %s, %s", json_integer_value(json_object_get(run, "id")),
           str_or(json_object_get(run, "kind"), "?"), str_or(json_object_get(run, "state"), "?"));
    json_t *step = json_array_get(steps, (size_t)cur);
    if (cur >= 0 && step != NULL)
        printf(", step %" JSON_INTEGER_FORMAT "/%zu %s (%s)", cur + 1, json_array_size(steps),
               str_or(json_object_get(step, "name"), "?"), str_or(json_object_get(step, "state"), "?"));
    printf("\n");
}

static void format_time(json_t *v, char *buf, size_t n)
{
    struct tm tm;
    time_t t;

    if (!json_is_integer(v)) {
        str_copy(buf, "-", n);
        return;
    }
    t = (time_t)(json_integer_value(v) / 1000);
    if (localtime_r(&t, &tm) == NULL || strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        str_copy(buf, "?", n);
}

/* The first line when a run needs a human, loudest when it left the app
 * stopped; then what to do. */
static void print_attention(json_t *att)
{
    bool stopped = json_is_true(json_object_get(att, "app_stopped"));
    bool waiting = str_eq(json_string_value(json_object_get(att, "state")), "waiting");
    json_t *ap = json_object_get(att, "approval_id");
    const char *step = json_string_value(json_object_get(att, "step"));
    char reason[600];

    mask_secrets(str_or(json_object_get(att, "reason"), ""), reason, sizeof reason);
    printf("ATTENTION: %s%s run %" JSON_INTEGER_FORMAT " %s%s%s: %s\n",
           stopped ? "THE APP IS STOPPED - " : "", str_or(json_object_get(att, "kind"), "?"),
           json_integer_value(json_object_get(att, "run_id")),
           waiting ? "waits for a decision" : str_or(json_object_get(att, "state"), "failed"),
           step != NULL ? " at step " : "", step != NULL ? step : "", reason);
    if (waiting && json_is_integer(ap)) {
        json_int_t id = json_integer_value(ap);
        printf("  drctl approve %" JSON_INTEGER_FORMAT " (retry)  |  drctl approve %" JSON_INTEGER_FORMAT
               " --skip  |  drctl reject %" JSON_INTEGER_FORMAT " (abort)\n", id, id, id);
    } else if (stopped) {
        printf("  the run has ended with the app stopped: fix the cause, then start the app by hand\n"
               "  or run the %s again (drctl history shows the steps)\n",
               str_or(json_object_get(att, "kind"), "run"));
    }
    printf("\n");
}

static void print_status(json_t *doc, bool from_db)
{
    json_t *targets = json_object_get(doc, "targets");
    json_t *run = json_object_get(doc, "run");
    json_t *approvals = json_object_get(doc, "approvals");
    json_t *started = json_object_get(doc, "started_at");
    json_t *generated = json_object_get(doc, "generated_at");
    json_t *att = json_object_get(doc, "attention");
    json_t *block = json_object_get(doc, "block_until");

    human(doc);
    if (json_is_object(att))
        print_attention(att);
    printf("%-7s %-8s %-10s %-8s %-9s %s\n",
           "TARGET", "HEALTHY", "BREAKER", "LATENCY", "RECOVERY", "LAST ERROR");
    print_target_row("primary", json_object_get(targets, "primary"));
    print_target_row("backup", json_object_get(targets, "backup"));
    print_target_notes("primary", json_object_get(targets, "primary"));
    print_target_notes("backup", json_object_get(targets, "backup"));
    printf("\n");
    printf("active: %s\n", str_or(json_object_get(doc, "active"), "primary"));
    for (int i = 0; i < 2; i++) {
        const char *name = i == 0 ? "primary" : "backup";
        json_t *f = json_object_get(json_object_get(targets, name), "fenced");
        if (json_is_true(f))
            printf("fence: the %s is fenced (it refuses the app's writes)\n", name);
        else if (str_eq(json_string_value(f), "pending"))
            printf("fence: pending on the %s (applied the moment it answers)\n", name);
    }
    if (json_is_integer(block)) {
        char when[32];
        format_time(block, when, sizeof when);
        printf("policy block: no automatic failover until %s (drctl unblock lifts it)\n", when);
    }
    if (from_db) {
        printf("daemon: not running (last known state from DB)\n");
    } else if (json_is_integer(started) && json_is_integer(generated) &&
               json_integer_value(generated) >= json_integer_value(started)) {
        char up[32];
        format_duration((int64_t)(json_integer_value(generated) - json_integer_value(started)),
                        up, sizeof(up));
        printf("daemon: %s (up %s)\n", str_or(json_object_get(doc, "daemon"), "running"), up);
    } else {
        printf("daemon: %s\n", str_or(json_object_get(doc, "daemon"), "running"));
    }
    if (json_is_object(run))
        print_run(run);
    if (json_array_size(approvals) == 0) {
        printf("approvals: none pending\n");
    } else {
        size_t i;
        json_t *ap;

        printf("approvals pending:\n");
        json_array_foreach(approvals, i, ap) {
            json_int_t id = json_integer_value(json_object_get(ap, "id"));
            json_t *rid = json_object_get(ap, "run_id");
            const char *step = json_string_value(json_object_get(ap, "step"));
            if (json_is_integer(rid) && step != NULL)
                printf("  #%" JSON_INTEGER_FORMAT " (run %" JSON_INTEGER_FORMAT ", step %s): %s\n", id,
                       json_integer_value(rid), step, str_or(json_object_get(ap, "prompt"), ""));
            else if (json_is_integer(rid))
                printf("  #%" JSON_INTEGER_FORMAT " (run %" JSON_INTEGER_FORMAT "): %s\n", id,
                       json_integer_value(rid), str_or(json_object_get(ap, "prompt"), ""));
            else
                printf("  #%" JSON_INTEGER_FORMAT " (%s: start a failover?): %s\n", id,
                       str_eq(json_string_value(json_object_get(ap, "kind")), "policy") ? "policy" : "no run yet",
                       str_or(json_object_get(ap, "prompt"), ""));
            printf("      drctl approve %" JSON_INTEGER_FORMAT
                   "   |   drctl reject %" JSON_INTEGER_FORMAT "\n", id, id);
        }
    }
}

/* The daemon is down: the last known state from the database. */
static int status_from_db(const drctl *x)
{
    char where[1024], err[512] = "";
    status_snapshot snap;
    store_t *st;
    json_t *doc;

    endpoint_name(x, where, sizeof(where));
    if (x->state_db == NULL) {
        fprintf(stderr, "drctl: drd is not running (cannot reach %s)\n", where);
        return EXIT_UNREACHABLE;
    }
    st = store_open_readonly(x->state_db, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "drctl: drd is not running (cannot reach %s), and its state "
                        "database cannot be read: %s\n", where, err);
        return EXIT_UNREACHABLE;
    }
    json_t *att = NULL;
    if (status_from_store(st, &snap)) {
        att = attention_from_store(st, x->cfg);
        snap.attention = att;
        snap.block_until = policy_block_until_stored(st);
    }
    doc = att != NULL ? status_to_json(&snap) : NULL;
    json_decref(att);
    if (doc == NULL) {
        store_close(st);
        fprintf(stderr, "drctl: drd is not running (cannot reach %s), and its state "
                        "database cannot be read\n", where);
        return EXIT_UNREACHABLE;
    }
    store_close(st);
    if (x->json)
        print_json(doc);
    else
        print_status(doc, true);
    json_decref(doc);
    return EXIT_UNREACHABLE;
}

static int cmd_status(const drctl *x)
{
    bool unreachable = false;
    json_t *doc = NULL;
    int ex = get_json(x, "/api/status", &doc, &unreachable);

    if (unreachable)
        return status_from_db(x);
    if (ex >= 0)
        return ex;
    if (x->json)
        print_json(doc);
    else
        print_status(doc, false);
    ex = json_is_true(json_object_get(json_object_get(doc, "attention"), "app_stopped")) ? EXIT_APP_STOPPED
                                                                                         : EXIT_OK;
    json_decref(doc);
    return ex;
}

/* ------------------------------------------------------------------ */
/* history                                                            */

/* drd is down: its state database, read-only, said on stderr (stdout
 * stays what the command prints). NULL (said why) when it cannot be read. */
static store_t *fallback_store(const drctl *x)
{
    char where[1024], err[512] = "";
    store_t *st = NULL;

    endpoint_name(x, where, sizeof(where));
    if (x->state_db != NULL)
        st = store_open_readonly(x->state_db, err, sizeof(err));
    if (st == NULL)
        fprintf(stderr, "drctl: drd is not running (cannot reach %s), and its state database "
                        "cannot be read%s%s\n", where, err[0] ? ": " : "", err);
    else
        fprintf(stderr, "drctl: drd is not running (cannot reach %s): from its state database %s\n",
                where, x->state_db);
    return st;
}

/* history's four documents as the API would give them, from the file. */
static bool history_from_db(store_t *st, json_t **inc, json_t **ev, json_t **runs, json_t **drills)
{
    json_t *a = json_array(), *b = json_array(), *c = json_array(), *d = json_array(), *oldest = json_array();
    bool ok = a != NULL && b != NULL && c != NULL && d != NULL && oldest != NULL &&
              store_incidents_recent(st, HISTORY_INCIDENTS, views_add_incident, a) &&
              store_events_recent(st, HISTORY_EVENTS, views_add_event, b) &&
              views_runs(st, HISTORY_RUNS, c) &&
              store_drills_recent(st, 10, views_add_drill, d);
    /* the API gives events oldest first */
    for (size_t i = json_array_size(b); ok && i > 0; i--)
        json_array_append(oldest, json_array_get(b, i - 1));
    json_decref(b);
    *inc = json_pack("{s:o}", "incidents", a != NULL ? a : json_array());
    *ev = json_pack("{s:o}", "events", oldest != NULL ? oldest : json_array());
    *runs = json_pack("{s:o}", "runs", c != NULL ? c : json_array());
    *drills = json_pack("{s:o}", "drills", d != NULL ? d : json_array());
    return ok && *inc != NULL && *ev != NULL && *runs != NULL && *drills != NULL;
}

static int cmd_history(const drctl *x)
{
    char path[64];
    json_t *inc_doc = NULL, *ev_doc = NULL, *runs_doc = NULL, *incidents, *events, *newest, *runs;
    json_t *drills_doc = NULL, *drills;
    int ex, rc = EXIT_OK;
    bool unreachable = false;
    size_t i;
    json_t *v;

    snprintf(path, sizeof(path), "/api/incidents?limit=%d", HISTORY_INCIDENTS);
    if ((ex = get_json(x, path, &inc_doc, &unreachable)) >= 0 && !unreachable)
        return ex;
    if (unreachable) {
        store_t *st = fallback_store(x);
        if (st == NULL)
            return EXIT_UNREACHABLE;
        bool ok = history_from_db(st, &inc_doc, &ev_doc, &runs_doc, &drills_doc);
        store_close(st);
        if (!ok) {
            fprintf(stderr, "drctl: the state database could not be read\n");
            json_decref(inc_doc);
            json_decref(ev_doc);
            json_decref(runs_doc);
            json_decref(drills_doc);
            return EXIT_UNREACHABLE;
        }
        rc = EXIT_UNREACHABLE;
        goto print;
    }
    snprintf(path, sizeof(path), "/api/events?limit=%d", HISTORY_EVENTS);
    if ((ex = get_json(x, path, &ev_doc, NULL)) >= 0) {
        json_decref(inc_doc);
        return ex;
    }
    snprintf(path, sizeof(path), "/api/runs?limit=%d", HISTORY_RUNS);
    if ((ex = get_json(x, path, &runs_doc, NULL)) >= 0) {
        json_decref(inc_doc);
        json_decref(ev_doc);
        return ex;
    }
    /* drills: a drd older than this drctl has none (404): no section */
    {
        char err[256];
        buffer reply;
        long code;
        if (http_call(x, "GET", "/api/drills?limit=10", NULL, &code, &reply, err, sizeof err) == CALL_OK &&
            code == 200)
            drills_doc = json_loadb(reply.data ? reply.data : "", reply.len, 0, NULL);
        free(reply.data);
    }
print:
    drills = json_object_get(drills_doc, "drills");
    runs = json_object_get(runs_doc, "runs");
    incidents = json_object_get(inc_doc, "incidents");
    events = json_object_get(ev_doc, "events");

    /* the API gives events oldest first; history is newest first */
    newest = json_array();
    for (i = json_array_size(events); i > 0; i--)
        json_array_append(newest, json_array_get(events, i - 1));

    if (x->json) {
        json_t *out = json_pack("{s:o,s:o,s:O,s:o}", "incidents",
                                json_is_array(incidents) ? json_incref(incidents) : json_array(),
                                "runs", json_is_array(runs) ? json_incref(runs) : json_array(),
                                "events", newest,
                                "drills", json_is_array(drills) ? json_incref(drills) : json_array());
        print_json(out);
        json_decref(out);
    } else {
        char a[32], b[32], msg[1024];

        human(incidents);
        human(runs);
        human(newest);
        human(drills);

        if (json_array_size(incidents) == 0) {
            printf("no incidents\n");
        } else {
            printf("INCIDENTS\n%-6s %-8s %-19s  %-19s  %s\n", "ID", "TARGET", "STARTED",
                   "ENDED", "REASON");
            json_array_foreach(incidents, i, v) {
                json_t *ended = json_object_get(v, "ended_at");
                format_time(json_object_get(v, "started_at"), a, sizeof(a));
                if (json_is_integer(ended))
                    format_time(ended, b, sizeof(b));
                else
                    str_copy(b, "(ongoing)", sizeof(b));
                mask_secrets(str_or(json_object_get(v, "reason"), ""), msg, sizeof(msg));
                printf("%-6" JSON_INTEGER_FORMAT " %-8s %-19s  %-19s  %s\n",
                       json_integer_value(json_object_get(v, "id")),
                       str_or(json_object_get(v, "target"), "-"), a, b, msg);
            }
        }
        printf("\n");
        if (json_array_size(runs) == 0) {
            printf("no runs\n");
        } else {
            printf("RUNS\n");
            json_array_foreach(runs, i, v) {
                json_t *st;
                size_t k;
                json_int_t c0 = json_integer_value(json_object_get(v, "created_at"));
                json_int_t c1 = json_integer_value(json_object_get(v, "finished_at"));
                char took[32] = "-";
                if (c1 > c0)
                    format_duration(c1 - c0, took, sizeof(took));
                format_time(json_object_get(v, "created_at"), a, sizeof(a));
                mask_secrets(str_or(json_object_get(v, "error"), str_or(json_object_get(v, "reason"), "")),
                             msg, sizeof(msg));
                printf("run %-4" JSON_INTEGER_FORMAT " %-8s %-9s %s  %6s  by %s  %s\n",
                       json_integer_value(json_object_get(v, "id")), str_or(json_object_get(v, "kind"), "?"),
                       str_or(json_object_get(v, "state"), "?"), a, took,
                       str_or(json_object_get(v, "started_by"), "?"), msg);
                json_array_foreach(json_object_get(v, "steps"), k, st) {
                    json_t *d = json_object_get(st, "duration_ms");
                    char dur[32] = "";
                    if (json_is_integer(d))
                        format_duration(json_integer_value(d), dur, sizeof(dur));
                    mask_secrets(str_or(json_object_get(st, "detail"), ""), msg, sizeof(msg));
                    printf("    %-18s %-12s %-15s %6s  %s\n", str_or(json_object_get(st, "name"), "?"),
                           str_or(json_object_get(st, "action"), "?"), str_or(json_object_get(st, "state"), "?"),
                           dur, msg);
                }
            }
        }
        printf("\n");
        if (json_array_size(drills) > 0) {
            printf("DRILLS\n");
            json_array_foreach(drills, i, v) {
                json_t *rep = json_object_get(v, "report");
                char det[32] = "-", rto[32] = "-", syn[32] = "-";
                if (json_is_integer(json_object_get(rep, "detection_ms")))
                    format_duration(json_integer_value(json_object_get(rep, "detection_ms")), det, sizeof det);
                if (json_is_integer(json_object_get(rep, "rto_ms")))
                    format_duration(json_integer_value(json_object_get(rep, "rto_ms")), rto, sizeof rto);
                if (json_is_integer(json_object_get(rep, "sync_ms")))
                    format_duration(json_integer_value(json_object_get(rep, "sync_ms")), syn, sizeof syn);
                format_time(json_object_get(v, "started_at"), a, sizeof(a));
                mask_secrets(str_or(json_object_get(rep, "error"), ""), msg, sizeof(msg));
                printf("drill %-4" JSON_INTEGER_FORMAT " %-9s %s  detection %s  RTO %s  sync-back %s"
                       "  rows %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT "%s%s\n",
                       json_integer_value(json_object_get(v, "id")), str_or(json_object_get(v, "result"), "?"),
                       a, det, rto, syn, json_integer_value(json_object_get(rep, "rows_found")),
                       json_integer_value(json_object_get(rep, "rows_written")), msg[0] ? "  " : "", msg);
            }
            printf("\n");
        }
        if (json_array_size(newest) == 0) {
            printf("no events\n");
        } else {
            printf("EVENTS (newest first)\n%-19s  %-9s %-8s %s\n", "TIME", "KIND", "TARGET",
                   "MESSAGE");
            json_array_foreach(newest, i, v) {
                format_time(json_object_get(v, "at"), a, sizeof(a));
                mask_secrets(str_or(json_object_get(v, "message"), ""), msg, sizeof(msg));
                printf("%-19s  %-9s %-8s %s\n", a, str_or(json_object_get(v, "kind"), "?"),
                       str_or(json_object_get(v, "target"), "-"), msg);
            }
        }
    }
    json_decref(newest);
    json_decref(drills_doc);
    json_decref(inc_doc);
    json_decref(ev_doc);
    json_decref(runs_doc);
    return rc;
}

/* ------------------------------------------------------------------ */
/* actions                                                            */

/* Ask on the terminal. Returns -1 to go on, or an exit code. */
static int confirm(const drctl *x, const char *what)
{
    char line[64];
    json_t *doc = NULL;
    int ex;

    if (x->yes)
        return -1;
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "drctl: %s needs confirmation: stdin is not a terminal, "
                        "pass --yes to proceed\n", x->command);
        return EXIT_BAD_CONFIG;
    }
    /* Show where things stand, and find out now whether drd is there. */
    if ((ex = get_json(x, "/api/status", &doc, NULL)) >= 0)
        return ex;
    human(doc);
    {
        json_t *t = json_object_get(doc, "targets");
        fprintf(stderr, "active: %s; primary %s; backup %s\n",
                str_or(json_object_get(doc, "active"), "?"),
                json_is_true(json_object_get(json_object_get(t, "primary"), "healthy"))
                    ? "healthy" : "unhealthy",
                json_is_true(json_object_get(json_object_get(t, "backup"), "healthy"))
                    ? "healthy" : "unhealthy");
    }
    json_decref(doc);
    fprintf(stderr, "%s. Proceed? [y/N] ", what);
    fflush(stderr);
    if (fgets(line, sizeof(line), stdin) == NULL) {
        fprintf(stderr, "\ndrctl: aborted\n");
        return EXIT_FAILURE_;
    }
    str_trim(line);
    if (strcasecmp(line, "y") != 0 && strcasecmp(line, "yes") != 0) {
        fprintf(stderr, "drctl: aborted\n");
        return EXIT_FAILURE_;
    }
    return -1;
}

/* POST; print the request id and store it in *request_id. */
static int post_action(const drctl *x, const char *path, const char *label, int64_t *request_id)
{
    char err[512];
    char *body = NULL;
    buffer reply;
    long code;
    call_rc rc;
    json_t *doc;
    int ex = EXIT_OK;

    *request_id = 0;
    if (x->has_reason || x->skip || x->choice) {
        json_t *o = json_object();
        if (x->has_reason)
            json_object_set_new(o, "reason", json_string(x->reason));
        if (x->skip || x->choice)
            json_object_set_new(o, "choice", json_string(x->skip ? "skip" : x->choice));
        if (x->has_reason && json_object_get(o, "reason") == NULL) {
            json_decref(o);
            o = NULL;
        }
        if (o == NULL) {
            fprintf(stderr, "drctl: the reason must be valid UTF-8\n");
            return EXIT_BAD_CONFIG;
        }
        body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
    }
    rc = http_call(x, "POST", path, body, &code, &reply, err, sizeof(err));
    free(body);
    if (rc != CALL_OK)
        return report_unreachable(x, rc, err);
    if (code < 200 || code > 299) {
        ex = report_http_error(code, &reply);
        free(reply.data);
        return ex;
    }
    doc = reply.data != NULL ? json_loadb(reply.data, reply.len, 0, NULL) : NULL;
    free(reply.data);
    /* with --json (drill) stdout is the report alone */
    FILE *out = x->json ? stderr : stdout;
    if (json_is_integer(json_object_get(doc, "request_id"))) {
        *request_id = json_integer_value(json_object_get(doc, "request_id"));
        fprintf(out, "%s queued (request %" JSON_INTEGER_FORMAT ")\n", label,
                json_integer_value(json_object_get(doc, "request_id")));
    } else
        fprintf(out, "%s accepted\n", label);
    json_decref(doc);
    return ex;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Wait for the daemon to take request id; returns -1 with *run_id when it
 * was accepted, or an exit code. */
static int await_request(const drctl *x, int64_t id, int64_t *run_id)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/requests/%lld", (long long)id);
    *run_id = 0;
    for (int i = 0; i < 100; i++) {            /* 10 s */
        char err[512];
        buffer reply;
        long code;
        call_rc rc = http_call(x, "GET", path, NULL, &code, &reply, err, sizeof(err));
        if (rc != CALL_OK)
            return report_unreachable(x, rc, err);
        if (code == 404) {                      /* not taken yet */
            free(reply.data);
            sleep_ms(100);
            continue;
        }
        if (code != 200) {
            int ex = report_http_error(code, &reply);
            free(reply.data);
            return ex;
        }
        json_t *doc = human(json_loadb(reply.data, reply.len, 0, NULL));
        free(reply.data);
        const char *state = str_or(json_object_get(doc, "state"), "?");
        if (strcmp(state, "accepted") != 0) {
            char msg[512];
            mask_secrets(str_or(json_object_get(doc, "error"), "refused"), msg, sizeof(msg));
            fprintf(stderr, "drctl: refused: %s\n", msg);
            json_decref(doc);
            return EXIT_FAILURE_;
        }
        *run_id = json_integer_value(json_object_get(doc, "run_id"));
        json_decref(doc);
        return -1;
    }
    fprintf(stderr, "drctl: the daemon has not taken request %lld after 10 s\n", (long long)id);
    return EXIT_FAILURE_;
}

/* Print each step as it changes, until the run ends or waits for a human. */
static int follow_run(const drctl *x, int64_t run_id)
{
    char path[64];
    char seen[64][24];
    size_t shown[64];                /* bytes of a sync step's output printed */
    memset(seen, 0, sizeof(seen));
    memset(shown, 0, sizeof(shown));
    snprintf(path, sizeof(path), "/api/runs/%lld", (long long)run_id);
    printf("following run %lld (Ctrl-C stops following, not the run)\n", (long long)run_id);
    for (;;) {
        json_t *run = NULL;
        int ex = get_json(x, path, &run, NULL);
        if (ex >= 0)
            return ex;
        human(run);
        json_t *steps = json_object_get(run, "steps"), *st;
        size_t i, n = json_array_size(steps);
        json_array_foreach(steps, i, st) {
            if (i >= 64)
                break;
            const char *state = str_or(json_object_get(st, "state"), "?");
            const char *action = str_or(json_object_get(st, "action"), "");
            const char *output = str_or(json_object_get(st, "output"), "");
            if (strcmp(state, "running") == 0 && strlen(output) > shown[i] &&
                (strcmp(action, "sync-back") == 0 || strcmp(action, "verify") == 0 ||
                 strcmp(action, "capture") == 0)) {
                /* progress: the complete lines added since the last poll */
                const char *from = output + shown[i], *end = strrchr(from, '\n');
                if (end != NULL) {
                    for (const char *l = from; l < end;) {
                        const char *nl = memchr(l, '\n', (size_t)(end - l) + 1);
                        char line[600], masked[600];
                        snprintf(line, sizeof line, "%.*s", (int)(nl - l), l);
                        mask_secrets(line, masked, sizeof masked);
                        printf("        %s\n", masked);
                        l = nl + 1;
                    }
                    shown[i] = (size_t)(end - output) + 1;
                }
            }
            if (strcmp(seen[i], state) == 0 || strcmp(state, "pending") == 0)
                continue;
            str_copy(seen[i], state, sizeof(seen[i]));
            char dur[32] = "", detail[600];
            json_t *d = json_object_get(st, "duration_ms");
            if (json_is_integer(d) && strcmp(state, "running") != 0)
                format_duration(json_integer_value(d), dur, sizeof(dur));
            mask_secrets(str_or(json_object_get(st, "detail"), ""), detail, sizeof(detail));
            printf("  [%zu/%zu] %-18s %-12s %-15s %6s  %s\n", i + 1, n,
                   str_or(json_object_get(st, "name"), "?"), str_or(json_object_get(st, "action"), "?"),
                   state, dur, detail);
        }
        fflush(stdout);
        const char *state = str_or(json_object_get(run, "state"), "?");
        if (strcmp(state, "waiting") == 0) {
            json_t *a;
            json_array_foreach(json_object_get(run, "approvals"), i, a) {
                if (strcmp(str_or(json_object_get(a, "state"), ""), "pending") != 0)
                    continue;
                char prompt[600];
                json_int_t aid = json_integer_value(json_object_get(a, "id"));
                mask_secrets(str_or(json_object_get(a, "prompt"), ""), prompt, sizeof(prompt));
                printf("run %lld waits for approval %" JSON_INTEGER_FORMAT ": %s\n"
                       "  drctl approve %" JSON_INTEGER_FORMAT "%s   |   drctl reject %" JSON_INTEGER_FORMAT "\n",
                       (long long)run_id, aid, prompt, aid,
                       strcmp(str_or(json_object_get(a, "kind"), ""), "attention") == 0 ? " [--skip]" : "", aid);
            }
            json_decref(run);
            return EXIT_OK;
        }
        if (strcmp(state, "running") != 0) {
            char err[600];
            mask_secrets(str_or(json_object_get(run, "error"), ""), err, sizeof(err));
            json_int_t c0 = json_integer_value(json_object_get(run, "created_at"));
            json_int_t c1 = json_integer_value(json_object_get(run, "finished_at"));
            char took[32];
            format_duration(c1 > c0 ? c1 - c0 : 0, took, sizeof(took));
            printf("run %lld %s in %s%s%s\n", (long long)run_id, state, took, err[0] ? ": " : "", err);
            int rc = strcmp(state, "succeeded") == 0 ? EXIT_OK : EXIT_FAILURE_;
            json_decref(run);           /* state points into run */
            return rc;
        }
        json_decref(run);
        sleep_ms(200);
    }
}

static void print_refresh(json_t *r)
{
    char a[32], took[32] = "-", err[600];
    human(r);
    json_int_t s0 = json_integer_value(json_object_get(r, "started_at"));
    json_int_t s1 = json_integer_value(json_object_get(r, "finished_at"));
    if (s1 > s0)
        format_duration(s1 - s0, took, sizeof(took));
    format_time(json_object_get(r, "started_at"), a, sizeof(a));
    mask_secrets(str_or(json_object_get(r, "error"), str_or(json_object_get(r, "file"), "")), err, sizeof(err));
    printf("%-5" JSON_INTEGER_FORMAT " %-8s %-9s %-10s %s  %7s  %10" JSON_INTEGER_FORMAT "  %s\n",
           json_integer_value(json_object_get(r, "id")), str_or(json_object_get(r, "mode"), "?"),
           str_or(json_object_get(r, "trigger"), "?"), str_or(json_object_get(r, "state"), "?"), a, took,
           json_integer_value(json_object_get(r, "bytes")), err);
}

static int cmd_refreshes(const drctl *x)
{
    json_t *doc = NULL, *r;
    size_t i;
    bool unreachable = false;
    int rc = EXIT_OK;
    int ex = get_json(x, "/api/refreshes?limit=20", &doc, &unreachable);
    if (unreachable) {
        store_t *st = fallback_store(x);
        json_t *a = json_array();
        bool ok = st != NULL && a != NULL && store_refreshes_recent(st, 20, views_add_refresh, a);
        store_close(st);
        if (!ok) {
            json_decref(a);
            return EXIT_UNREACHABLE;
        }
        doc = json_pack("{s:o}", "refreshes", a);
        rc = EXIT_UNREACHABLE;
    } else if (ex >= 0) {
        return ex;
    }
    json_t *arr = json_object_get(doc, "refreshes");
    if (x->json) {
        print_json(arr);
    } else if (json_array_size(arr) == 0) {
        printf("no refreshes\n");
    } else {
        printf("%-5s %-8s %-9s %-10s %-19s  %7s  %10s  %s\n", "ID", "MODE", "TRIGGER", "STATE", "STARTED",
               "TOOK", "BYTES", "FILE / ERROR");
        json_array_foreach(arr, i, r)
            print_refresh(r);
    }
    json_decref(doc);
    return rc;
}

static int cmd_unblock(const drctl *x)
{
    int64_t req, run;
    int ex = post_action(x, "/api/unblock", "unblock", &req);
    if (ex != EXIT_OK || req == 0)
        return ex;
    if ((ex = await_request(x, req, &run)) >= 0)
        return ex;
    printf("the policy block is lifted: an outage may start a failover again (as [failover] policy says)\n");
    return EXIT_OK;
}

/* Start a refresh and follow it until it ends. */
static int cmd_refresh(const drctl *x)
{
    int64_t req, run, newest = 0;
    json_t *doc = NULL;
    int ex = get_json(x, "/api/refreshes?limit=1", &doc, NULL);
    if (ex >= 0)
        return ex;
    newest = json_integer_value(json_object_get(json_array_get(json_object_get(doc, "refreshes"), 0), "id"));
    json_decref(doc);
    ex = post_action(x, "/api/refresh", "refresh", &req);
    if (ex != EXIT_OK || req == 0)
        return ex;
    if ((ex = await_request(x, req, &run)) >= 0)
        return ex;
    for (int i = 0; i < 36000; i++) {          /* up to an hour, every 100 ms */
        doc = NULL;
        if ((ex = get_json(x, "/api/refreshes?limit=1", &doc, NULL)) >= 0)
            return ex;
        json_t *r = json_array_get(json_object_get(doc, "refreshes"), 0);
        const char *state = str_or(json_object_get(r, "state"), "");
        if (json_integer_value(json_object_get(r, "id")) > newest && strcmp(state, "running") != 0) {
            print_refresh(r);
            int rc = strcmp(state, "succeeded") == 0 ? EXIT_OK : EXIT_FAILURE_;
            json_decref(doc);
            return rc;
        }
        json_decref(doc);
        sleep_ms(100);
    }
    fprintf(stderr, "drctl: the refresh is still running; drctl refreshes shows it\n");
    return EXIT_FAILURE_;
}

static int cmd_failover(const drctl *x, bool back)
{
    int64_t req, run;
    int ex = confirm(x, back ? "This switches the app back to the primary"
                             : "This switches the app over to the backup");
    if (ex >= 0)
        return ex;
    ex = post_action(x, back ? "/api/failback" : "/api/failover", back ? "failback" : "failover", &req);
    if (ex != EXIT_OK || req == 0)
        return ex;
    if ((ex = await_request(x, req, &run)) >= 0)
        return ex;
    return run > 0 ? follow_run(x, run) : EXIT_OK;
}

static int cmd_decide(const drctl *x, bool approve)
{
    char path[128], label[96];
    const char *id = x->args[0];
    int64_t req, run;
    int ex;

    if (*id == '\0' || strspn(id, "0123456789") != strlen(id) || strlen(id) > 18 ||
        strspn(id, "0") == strlen(id))
        return usage_error("approval ID must be a positive integer, not '%s'", id);
    snprintf(path, sizeof(path), "/api/approvals/%s/%s", id, approve ? "approve" : "reject");
    snprintf(label, sizeof(label), "approval %s: %s%s", id, approve ? "approve" : "reject",
             x->skip ? " (skip the step)" : "");
    ex = post_action(x, path, label, &req);
    if (ex != EXIT_OK || req == 0)
        return ex;
    if ((ex = await_request(x, req, &run)) >= 0)
        return ex;
    printf("approval %s %s\n", id, approve ? "approved" : "rejected");
    return run > 0 ? follow_run(x, run) : EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* check                                                              */

/* Loads the full configuration itself (errors become a failing `config`
 * check), asks the daemon for its status when it answers, runs check.c. */
static int cmd_check(drctl *x)
{
    config_errors errs = { 0 };
    json_t *checks, *doc = NULL;
    bool unreachable = false;
    int64_t deadline = mono_ms() + 2000;

    x->cfg = x->drill ? config_load_drill(x->config_path, &errs) : config_load(x->config_path, &errs);
    if (x->cfg == NULL) {
        checks = check_config_failed(&errs);
        config_errors_free(&errs);
    } else {
        config_errors_free(&errs);
        x->socket_path = x->cfg->http_socket;
        x->state_db = x->cfg->state_db;
        if (load_token(x) < 0 && curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) {
            if (get_json(x, "/api/status", &doc, &unreachable) >= 0)
                doc = NULL;
            checks = check_run(x->cfg, doc, deadline);
            json_decref(doc);
            curl_global_cleanup();
        } else {
            return EXIT_BAD_CONFIG;
        }
    }
    if (checks == NULL) {
        fprintf(stderr, "drctl: out of memory\n");
        return EXIT_FAILURE_;
    }
    if (x->json)
        print_json(checks);
    else
        check_print(human(checks), stdout);
    int ex = check_any_failed(checks) ? EXIT_FAILURE_ : EXIT_OK;
    json_decref(checks);
    return ex;
}

/* drctl grants primary|backup: the SQL from privs.c, computed against the
 * objects on that side. Connects with drd's url (else the app's, whose
 * role can read the catalog too) to the app's database. */
static int cmd_grants(drctl *x)
{
    config_errors errs = { 0 };
    privs_list l = { 0 };
    char err[1024], err2[1024], role[128];
    PGconn *c = NULL;
    char *db = NULL, *sql = NULL;
    int ex = EXIT_FAILURE_;
    privs_side side = strcmp(x->args[0], "backup") == 0 ? PRIV_BACKUP : PRIV_PRIMARY;

    if (strcmp(x->args[0], "primary") != 0 && strcmp(x->args[0], "backup") != 0)
        return usage_error("grants needs primary or backup, not %s", x->args[0]);
    x->cfg = x->drill ? config_load_drill(x->config_path, &errs) : config_load(x->config_path, &errs);
    if (x->cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        config_errors_free(&errs);
        return EXIT_BAD_CONFIG;
    }
    config_errors_free(&errs);
    if (!privs_for_config(&l, x->cfg, err, sizeof err)) {
        fprintf(stderr, "drctl: %s\n", err);
        ex = EXIT_BAD_CONFIG;
        goto cleanup;
    }
    const config_target *t = side == PRIV_BACKUP ? &x->cfg->backup : &x->cfg->primary;
    config_target as_app = { .url = t->app_url != NULL ? t->app_url : t->url };
    db = pgconn_dbname(as_app.url);
    privs_role(t, role, sizeof role);
    c = privs_connect(t, db, 5000, "drctl-grants", err, sizeof err);
    if (c == NULL && role[0] != '\0')          /* drd's role may not work yet */
        c = privs_connect(&as_app, db, 5000, "drctl-grants", err2, sizeof err2);
    if (c == NULL) {
        fprintf(stderr, "drctl: grants reads the object names from the %s and cannot connect: %s\n",
                x->args[0], err);
        goto cleanup;
    }
    sql = privs_grants(&l, side, c, role, err, sizeof err);
    if (sql == NULL) {
        fprintf(stderr, "drctl: %s\n", err);
        goto cleanup;
    }
    fputs(sql, stdout);
    ex = EXIT_OK;
cleanup:
    if (c != NULL)
        PQfinish(c);
    free(sql);
    free(db);
    privs_list_free(&l);
    return ex;
}

/* ------------------------------------------------------------------ */
/* drill                                                              */

/* A rehearsal against the [drill] environment: a drd of its own (drd -D,
 * approvals granted), the operator's fault and restore commands, rows
 * written on the backup during the outage and looked for on the primary
 * after the failback. The report goes to the main drd (POST /api/drill). */

#define DRILL_TABLE "drd_drill_rows"

typedef struct {
    drctl dx;                    /* talks to the drill's drd */
    config_t *dc;
    char dir[PATH_MAX], log_path[PATH_MAX + 16], schema[128];
    int log_fd;
    pid_t drd_pid;
    bool faulted, restored;
    int64_t t_fault, deadline;   /* wall ms; mono ms */
    int64_t tag;                 /* this drill's id in the rows: its start time */
    json_t *rep;
    char err[1024], phase[32];
} drill_t;

static bool dr_fail(drill_t *d, const char *phase, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool dr_fail(drill_t *d, const char *phase, const char *fmt, ...)
{
    char raw[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    mask_secrets(raw, d->err, sizeof d->err);
    str_copy(d->phase, phase, sizeof d->phase);
    return false;
}

static void dr_say(const drill_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dr_say(const drill_t *d, const char *fmt, ...)
{
    char raw[1024], masked[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    mask_secrets(raw, masked, sizeof masked);
    tty_clean(masked, false, raw, sizeof raw);
    fprintf(stderr, "drill: %s\n", raw);
    (void)d;
}

/* /bin/sh -c cmd, output to the drill log, killed (group) after timeout. */
static bool dr_sh(drill_t *d, const char *what, const char *cmd, int64_t timeout_ms)
{
    pid_t pid = fork();
    if (pid < 0)
        return dr_fail(d, what, "%s: fork: %s", what, strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        if (d->log_fd >= 0) {
            dup2(d->log_fd, STDOUT_FILENO);
            dup2(d->log_fd, STDERR_FILENO);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int64_t end = mono_ms() + timeout_ms;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (mono_ms() > end) {
            kill(-pid, SIGTERM);
            sleep_ms(2000);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            return dr_fail(d, what, "%s: `%s` did not finish within %lld s", what, cmd,
                           (long long)(timeout_ms / 1000));
        }
        sleep_ms(20);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return dr_fail(d, what, "%s: `%s` failed (%s %d; output in %s)", what, cmd,
                       WIFEXITED(status) ? "exit" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), d->log_path);
    return true;
}

/* Blocking libpq (drctl is a command, not the loop); dbname: the database
 * to use instead of the URL's (NULL: the URL's). */
static PGconn *dr_connect(drill_t *d, const char *url, const char *dbname, const char *what)
{
    const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL, NULL };
    const char *vals[] = { url, "5", "drd-drill", NULL, NULL };
    if (dbname != NULL) {
        keys[3] = "dbname";
        vals[3] = dbname;
    }
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        dr_fail(d, what, "cannot connect to %s: %s", what, c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return NULL;
    }
    /* drd's own session: a fence (the backup after a failback) is for the app */
    PQclear(PQexec(c, "SET default_transaction_read_only = off"));
    return c;
}

/* drd's role on side t, in the app's database. */
static PGconn *dr_admin(drill_t *d, const config_target *t, const char *what)
{
    char *db = pgconn_dbname(t->app_url);
    PGconn *c = dr_connect(d, t->url, db, what);
    free(db);
    return c;
}

static bool dr_exec(drill_t *d, PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        dr_fail(d, what, "%s: %s", what, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* The user name in a libpq URL or conninfo ("" if none). */
static void url_user(const char *url, char *out, size_t n)
{
    char db[256];
    pgconn_identity(url, out, n, db, sizeof db);
}

/* The drill's table on one side: fresh, empty, writable by the app's role. */
static bool dr_table(drill_t *d, const config_target *t, const char *side)
{
    char sql[1024], app_user[128], admin_user[128];
    PGconn *c = dr_admin(d, t, side);
    if (c == NULL)
        return false;
    char *qs = PQescapeIdentifier(c, d->schema, strlen(d->schema));
    /* durable before the fault, whatever the server's synchronous_commit */
    snprintf(sql, sizeof sql,
             "SET synchronous_commit = on;"
             "DROP TABLE IF EXISTS %s." DRILL_TABLE ";"
             "CREATE TABLE %s." DRILL_TABLE " (id bigint PRIMARY KEY, drill bigint NOT NULL,"
             " n int NOT NULL, at timestamptz NOT NULL DEFAULT now())", qs, qs);
    bool ok = dr_exec(d, c, sql, "prepare");
    url_user(t->app_url, app_user, sizeof app_user);
    url_user(t->url, admin_user, sizeof admin_user);
    if (ok && app_user[0] && strcmp(app_user, admin_user) != 0) {
        char *qu = PQescapeIdentifier(c, app_user, strlen(app_user));
        snprintf(sql, sizeof sql, "GRANT USAGE ON SCHEMA %s TO %s;"
                 "GRANT SELECT, INSERT ON %s." DRILL_TABLE " TO %s", qs, qu, qs, qu);
        ok = dr_exec(d, c, sql, "prepare");
        PQfreemem(qu);
    }
    PQfreemem(qs);
    PQfinish(c);
    return ok;
}

static void dr_drop_tables(drill_t *d)
{
    const config_target *t[] = { &d->dc->primary, &d->dc->backup };
    for (size_t i = 0; i < 2; i++) {
        PGconn *c = dr_admin(d, t[i], i == 0 ? "primary" : "backup");
        if (c == NULL)
            continue;
        char sql[512], *qs = PQescapeIdentifier(c, d->schema, strlen(d->schema));
        snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s." DRILL_TABLE, qs);
        dr_exec(d, c, sql, "cleanup");
        PQfreemem(qs);
        PQfinish(c);
    }
    d->err[0] = '\0';
}

static bool dr_child_alive(drill_t *d)
{
    int st;
    if (d->drd_pid <= 0)
        return false;
    if (waitpid(d->drd_pid, &st, WNOHANG) == d->drd_pid) {
        d->drd_pid = 0;
        return false;
    }
    return true;
}

static bool dr_start_drd(drill_t *d, const char *config_path)
{
    char exe[PATH_MAX], drd_path[PATH_MAX + 8] = "drd";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(drd_path, sizeof drd_path, "%s/drd", exe);
            if (access(drd_path, X_OK) != 0)
                str_copy(drd_path, "drd", sizeof drd_path);
        }
    }
    pid_t pid = fork();
    if (pid < 0)
        return dr_fail(d, "start", "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        dup2(d->log_fd, STDOUT_FILENO);
        dup2(d->log_fd, STDERR_FILENO);
        execlp(drd_path, "drd", "-f", "-D", "-c", config_path, (char *)NULL);
        _exit(127);
    }
    d->drd_pid = pid;
    return true;
}

static void dr_stop_drd(drill_t *d)
{
    if (!dr_child_alive(d))
        return;
    kill(d->drd_pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (!dr_child_alive(d))
            return;
        sleep_ms(50);
    }
    kill(-d->drd_pid, SIGKILL);
    waitpid(d->drd_pid, NULL, 0);
    d->drd_pid = 0;
}

/* The drill drd's status, quietly (NULL while it does not answer). */
static json_t *dr_status(drill_t *d)
{
    json_t *doc = NULL;
    bool unreachable = false;
    if (get_json(&d->dx, "/api/status", &doc, &unreachable) >= 0)
        return NULL;
    return doc;
}

static const char *breaker_of(json_t *st, const char *t)
{
    return str_or(json_object_get(json_object_get(json_object_get(st, "targets"), t), "breaker"), "");
}

static bool healthy_of(json_t *st, const char *t)
{
    return json_is_true(json_object_get(json_object_get(json_object_get(st, "targets"), t), "healthy"));
}

static bool dr_time_left(drill_t *d, const char *phase, const char *what)
{
    if (mono_ms() < d->deadline && (d->drd_pid == 0 || dr_child_alive(d)))
        return true;
    if (d->drd_pid == 0)
        return dr_fail(d, phase, "the drill's drd exited (see %s)", d->log_path);
    return dr_fail(d, phase, "%s: not within [drill] timeout", what);
}

/* The newest run of kind created at or after since (wall ms): its id, 0 if none. */
static int64_t dr_find_run(drill_t *d, const char *kind, int64_t since)
{
    json_t *doc = NULL, *r;
    size_t i;
    int64_t id = 0;
    if (get_json(&d->dx, "/api/runs?limit=5", &doc, NULL) >= 0)
        return 0;
    json_array_foreach(json_object_get(doc, "runs"), i, r) {
        if (strcmp(str_or(json_object_get(r, "kind"), ""), kind) == 0 &&
            json_integer_value(json_object_get(r, "created_at")) >= since - 1000) {
            id = json_integer_value(json_object_get(r, "id"));
            break;
        }
    }
    json_decref(doc);
    return id;
}

/* Wait for run id to end; an approval that needs a human fails the drill
 * (approve steps are granted by the drill's drd). Returns the run (new
 * reference) whatever its end, NULL on timeout. */
static json_t *dr_wait_run(drill_t *d, int64_t id, const char *phase)
{
    char path[64];
    snprintf(path, sizeof path, "/api/runs/%lld", (long long)id);
    while (dr_time_left(d, phase, "the run did not end")) {
        json_t *run = NULL;
        if (get_json(&d->dx, path, &run, NULL) >= 0) {
            sleep_ms(200);
            continue;
        }
        const char *state = str_or(json_object_get(run, "state"), "");
        if (strcmp(state, "running") != 0 && strcmp(state, "waiting") != 0)
            return run;
        if (strcmp(state, "waiting") == 0) {
            json_t *a;
            size_t i;
            json_array_foreach(json_object_get(run, "approvals"), i, a) {
                if (strcmp(str_or(json_object_get(a, "state"), ""), "pending") == 0 &&
                    strcmp(str_or(json_object_get(a, "kind"), ""), "step") != 0)
                    return run;      /* needs a human: the drill stops here */
            }
        }
        json_decref(run);
        sleep_ms(100);
    }
    return NULL;
}

/* Steps of a run into the report; *last_healthy: when its last
 * wait-healthy step ended; *sync_ms: its sync-back step's duration. */
static void dr_steps(drill_t *d, json_t *run, const char *kind, int64_t *last_healthy, int64_t *sync_ms)
{
    json_t *steps = json_object_get(d->rep, "steps"), *st;
    size_t i;
    json_array_foreach(json_object_get(run, "steps"), i, st) {
        const char *action = str_or(json_object_get(st, "action"), "");
        json_t *dur = json_object_get(st, "duration_ms");
        json_array_append_new(steps, json_pack("{s:s, s:s, s:s, s:s, s:O}", "run", kind,
                              "name", str_or(json_object_get(st, "name"), "?"), "action", action,
                              "state", str_or(json_object_get(st, "state"), "?"),
                              "ms", json_is_integer(dur) ? dur : json_null()));
        if (last_healthy != NULL && strcmp(action, "wait-healthy") == 0 &&
            strcmp(str_or(json_object_get(st, "state"), ""), "done") == 0)
            *last_healthy = json_integer_value(json_object_get(st, "finished_at"));
        if (sync_ms != NULL && strcmp(action, "sync-back") == 0 && json_is_integer(dur))
            *sync_ms = json_integer_value(dur);
    }
}

/* Why a run did not succeed, from its error, failed step or approval. */
static void dr_run_failure(drill_t *d, json_t *run, const char *phase)
{
    const char *state = str_or(json_object_get(run, "state"), "?");
    json_t *st;
    size_t i;
    const char *why = str_or(json_object_get(run, "error"), "");
    char step[64] = "";
    json_array_foreach(json_object_get(run, "steps"), i, st) {
        const char *s = str_or(json_object_get(st, "state"), "");
        if (strcmp(s, "failed") == 0 || strcmp(s, "needs_attention") == 0 || strcmp(s, "waiting") == 0) {
            str_copy(step, str_or(json_object_get(st, "name"), "?"), sizeof step);
            if (*str_or(json_object_get(st, "detail"), "") != '\0')
                why = str_or(json_object_get(st, "detail"), "");
        }
    }
    dr_fail(d, phase, "%s run %lld %s%s%s%s%s", phase, (long long)json_integer_value(json_object_get(run, "id")),
            strcmp(state, "waiting") == 0 ? "stopped for a human decision" : state,
            step[0] ? " at step " : "", step, why[0] ? ": " : "", why);
}

static bool dr_wait_breaker(drill_t *d, const char *target, const char *want, const char *phase,
                            int64_t *at)
{
    while (dr_time_left(d, phase, "the breaker did not change")) {
        json_t *st = dr_status(d);
        bool hit = st != NULL && strcmp(breaker_of(st, target), want) == 0;
        json_decref(st);
        if (hit) {
            if (at != NULL)
                *at = wall_ms();
            return true;
        }
        sleep_ms(50);
    }
    return false;
}

static bool dr_write_rows(drill_t *d)
{
    char url[4096], err[512], sql[512];
    if (!envfile_get(d->dc->app_env_file, d->dc->app_env_key, url, sizeof url, err, sizeof err))
        return dr_fail(d, "write", "cannot read %s from %s: %s", d->dc->app_env_key,
                       d->dc->app_env_file, err[0] ? err : "absent");
    if (strcmp(url, d->dc->backup.app_url) != 0)
        return dr_fail(d, "write", "after the failover %s in %s is not the backup's app_url",
                       d->dc->app_env_key, d->dc->app_env_file);
    PGconn *c = dr_connect(d, url, NULL, "the backup (as the app)");
    if (c == NULL)
        return false;
    char *qs = PQescapeIdentifier(c, d->schema, strlen(d->schema));
    int64_t written = 0;
    for (int64_t i = 1; i <= d->dc->drill_rows; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO %s." DRILL_TABLE " (id, drill, n) VALUES (%lld, %lld, %lld)",
                 qs, (long long)i, (long long)d->tag, (long long)i);
        if (!dr_exec(d, c, sql, "write"))
            break;
        written++;
    }
    PQfreemem(qs);
    PQfinish(c);
    json_object_set_new(d->rep, "rows_written", json_integer(written));
    return written == d->dc->drill_rows;
}

static bool dr_count_rows(drill_t *d)
{
    char sql[512];
    PGconn *c = dr_admin(d, &d->dc->primary, "primary");
    if (c == NULL)
        return false;
    char *qs = PQescapeIdentifier(c, d->schema, strlen(d->schema));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s." DRILL_TABLE " WHERE drill = %lld", qs,
             (long long)d->tag);
    PQfreemem(qs);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok)
        json_object_set_new(d->rep, "rows_found", json_integer(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
    else
        dr_fail(d, "count", "counting the rows on the primary: %s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    return ok;
}

static bool dr_run(drill_t *d, const char *config_path)
{
    json_t *st = NULL, *run = NULL;
    int64_t id, t_open = 0, last_healthy = 0, sync_ms = -1;

    /* 1. preflight: the same checks as drctl --drill check */
    json_t *checks = check_run(d->dc, NULL, mono_ms() + 2000);
    size_t i;
    json_t *c;
    json_array_foreach(checks, i, c) {
        if (strcmp(str_or(json_object_get(c, "status"), ""), "fail") == 0) {
            dr_fail(d, "preflight", "check %s fails: %s", str_or(json_object_get(c, "name"), "?"),
                    str_or(json_object_get(c, "reason"), ""));
            json_decref(checks);
            return false;
        }
    }
    json_decref(checks);

    /* 2. the drill's table, then its drd, healthy, on the primary */
    dr_say(d, "preparing %s.%s on both sides", d->schema, DRILL_TABLE);
    if (!dr_table(d, &d->dc->primary, "primary") || !dr_table(d, &d->dc->backup, "backup"))
        return false;
    dr_say(d, "starting the drill's drd (log %s)", d->log_path);
    if (!dr_start_drd(d, config_path))
        return false;
    for (;;) {
        if (!dr_time_left(d, "start", "the drill's drd did not become healthy"))
            return false;
        st = dr_status(d);
        if (st != NULL && healthy_of(st, "primary") && healthy_of(st, "backup"))
            break;
        json_decref(st);
        st = NULL;
        sleep_ms(100);
    }
    const char *active = str_or(json_object_get(st, "active"), "?");
    bool busy = json_is_object(json_object_get(st, "run"));
    if (strcmp(active, "primary") != 0 || busy) {
        dr_fail(d, "start", "the drill environment is %s (active %s): finish it first "
                "(drctl --drill status, drctl --drill failback)", busy ? "running a runbook" : "not on its primary",
                active);
        json_decref(st);
        return false;
    }
    json_decref(st);

    /* 3. the fault, detected, the failover run */
    dr_say(d, "fault: %s", d->dc->drill_fault);
    d->t_fault = wall_ms();
    d->faulted = true;
    if (!dr_sh(d, "fault", d->dc->drill_fault, 120000))
        return false;
    if (!dr_wait_breaker(d, "primary", "open", "detect", &t_open))
        return false;
    json_object_set_new(d->rep, "detection_ms", json_integer(t_open - d->t_fault));
    dr_say(d, "detected after %lld ms", (long long)(t_open - d->t_fault));
    int64_t asked = 0;
    while ((id = dr_find_run(d, "failover", d->t_fault)) == 0) {
        if (!dr_time_left(d, "failover", "no failover run started"))
            return false;
        if (asked == 0 && strcmp(d->dc->failover_policy, "manual") == 0) {
            int64_t req;
            if (post_action(&d->dx, "/api/failover", "failover (policy manual)", &req) != EXIT_OK)
                return dr_fail(d, "failover", "the failover could not be requested");
            asked = req;
        }
        sleep_ms(100);
    }
    json_object_set_new(d->rep, "failover_run", json_integer(id));
    if ((run = dr_wait_run(d, id, "failover")) == NULL)
        return false;
    dr_steps(d, run, "failover", &last_healthy, NULL);
    if (strcmp(str_or(json_object_get(run, "state"), ""), "succeeded") != 0) {
        dr_run_failure(d, run, "failover");
        json_decref(run);
        return false;
    }
    int64_t healthy_at = last_healthy > 0 ? last_healthy : json_integer_value(json_object_get(run, "finished_at"));
    json_decref(run);
    json_object_set_new(d->rep, "rto_ms", json_integer(healthy_at - d->t_fault));
    dr_say(d, "failover done: the app is healthy on the backup %lld ms after the fault",
           (long long)(healthy_at - d->t_fault));

    /* 4. the outage's writes, through the app's URL */
    if (!dr_write_rows(d))
        return false;
    dr_say(d, "wrote %lld rows on the backup", (long long)d->dc->drill_rows);

    /* 5. the primary back, the failback */
    dr_say(d, "restore: %s", d->dc->drill_restore);
    if (!dr_sh(d, "restore", d->dc->drill_restore, 300000))
        return false;
    d->restored = true;
    if (!dr_wait_breaker(d, "primary", "closed", "restore", NULL))
        return false;
    int64_t req = 0, t_back = wall_ms();
    if (post_action(&d->dx, "/api/failback", "failback", &req) != EXIT_OK || req == 0)
        return dr_fail(d, "failback", "the failback could not be requested");
    if (await_request(&d->dx, req, &id) >= 0 || id == 0)
        return dr_fail(d, "failback", "the failback was refused");
    (void)t_back;
    json_object_set_new(d->rep, "failback_run", json_integer(id));
    if ((run = dr_wait_run(d, id, "failback")) == NULL)
        return false;
    dr_steps(d, run, "failback", NULL, &sync_ms);
    if (sync_ms >= 0)
        json_object_set_new(d->rep, "sync_ms", json_integer(sync_ms));
    if (strcmp(str_or(json_object_get(run, "state"), ""), "succeeded") != 0) {
        dr_run_failure(d, run, "failback");
        json_decref(run);
        return false;
    }
    json_decref(run);

    /* 6. every outage write on the primary? */
    if (!dr_count_rows(d))
        return false;
    int64_t found = json_integer_value(json_object_get(d->rep, "rows_found"));
    if (found != d->dc->drill_rows)
        return dr_fail(d, "verify", "%lld of the %lld rows written during the outage are on the primary",
                       (long long)found, (long long)d->dc->drill_rows);
    return true;
}

static void dr_print(json_t *rep)
{
    char a[32], b[32];
    human(rep);                         /* printed last: already posted */
    const char *res = str_or(json_object_get(rep, "result"), "?");
    format_time(json_object_get(rep, "started_at"), a, sizeof a);
    printf("drill %s: %s\n", a, res);
    static const struct { const char *key, *label, *what; } figs[] = {
        { "detection_ms", "detection", "fault -> primary breaker open" },
        { "rto_ms", "RTO", "fault -> app healthy on the backup" },
        { "sync_ms", "sync-back", "the failback's sync-back step" },
    };
    for (size_t i = 0; i < ARRAY_LEN(figs); i++) {
        json_t *v = json_object_get(rep, figs[i].key);
        if (!json_is_integer(v))
            continue;
        format_duration(json_integer_value(v), b, sizeof b);
        printf("  %-10s %8s   (%s)\n", figs[i].label, b, figs[i].what);
    }
    if (json_is_integer(json_object_get(rep, "rows_written")))
        printf("  %-10s %8" JSON_INTEGER_FORMAT "   written on the backup during the outage, %s found on the primary\n",
               "rows", json_integer_value(json_object_get(rep, "rows_written")),
               json_is_integer(json_object_get(rep, "rows_found"))
                   ? (json_integer_value(json_object_get(rep, "rows_found")) ==
                              json_integer_value(json_object_get(rep, "rows_written")) ? "all" : "NOT all")
                   : "not yet");
    json_t *st;
    size_t i;
    const char *prev = "";
    json_array_foreach(json_object_get(rep, "steps"), i, st) {
        const char *run = str_or(json_object_get(st, "run"), "");
        if (strcmp(run, prev) != 0)
            printf("  %s run:\n", run);
        prev = run;
        b[0] = '\0';
        if (json_is_integer(json_object_get(st, "ms")))
            format_duration(json_integer_value(json_object_get(st, "ms")), b, sizeof b);
        printf("    %-18s %-12s %-15s %8s\n", str_or(json_object_get(st, "name"), "?"),
               str_or(json_object_get(st, "action"), "?"), str_or(json_object_get(st, "state"), "?"), b);
    }
    if (json_is_string(json_object_get(rep, "error")))
        printf("  failed at %s: %s\n", str_or(json_object_get(rep, "phase"), "?"),
               str_or(json_object_get(rep, "error"), ""));
}

static int cmd_drill(drctl *x)
{
    config_errors errs = { 0 };
    drill_t d;
    int ex = EXIT_FAILURE_;

    memset(&d, 0, sizeof d);
    d.log_fd = -1;
    x->cfg = config_load(x->config_path, &errs);
    if (x->cfg != NULL) {
        config_errors_free(&errs);
        d.dc = config_load_drill(x->config_path, &errs);
    }
    if (x->cfg == NULL || d.dc == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "drctl: %s\n", errs.msgs[i]);
        config_errors_free(&errs);
        config_free(d.dc);
        return EXIT_BAD_CONFIG;
    }
    config_errors_free(&errs);
    if (d.dc->drill_fault == NULL || d.dc->drill_restore == NULL) {
        fprintf(stderr, "drctl: %s: [drill] needs fault and restore commands (how to make the drill's "
                        "primary unreachable, and how to bring it back)\n", x->config_path);
        config_free(d.dc);
        return EXIT_BAD_CONFIG;
    }
    x->socket_path = x->cfg->http_socket;
    x->state_db = x->cfg->state_db;
    if ((ex = load_token(x)) >= 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        config_free(d.dc);
        return ex >= 0 ? ex : EXIT_FAILURE_;
    }
    d.dx = *x;
    d.dx.url = NULL;
    d.dx.token = NULL;
    d.dx.socket_path = d.dc->http_socket;
    char *dir = config_drill_dir(x->cfg), err[512];
    str_copy(d.dir, dir ? dir : "drill", sizeof d.dir);
    free(dir);
    snprintf(d.log_path, sizeof d.log_path, "%s/drill.log", d.dir);
    char probe[PATH_MAX + 8];
    snprintf(probe, sizeof probe, "%s/x", d.dir);
    if (!mkdir_parents(probe, 0700, err, sizeof err) ||
        (d.log_fd = open(d.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
        fprintf(stderr, "drctl: drill directory %s: %s\n", d.dir, err[0] ? err : strerror(errno));
        config_free(d.dc);
        curl_global_cleanup();
        return EXIT_FAILURE_;
    }
    const char *schemas = d.dc->sync_schemas ? d.dc->sync_schemas : "public";
    size_t sl = strcspn(schemas, ",");
    snprintf(d.schema, sizeof d.schema, "%.*s", (int)sl, schemas);
    str_copy(d.schema, str_trim(d.schema), sizeof d.schema);

    d.tag = wall_ms();
    d.deadline = mono_ms() + d.dc->drill_timeout_ms;
    d.rep = json_pack("{s:I, s:[]}", "started_at", (json_int_t)d.tag, "steps");
    char pm[512], bm[512];
    mask_secrets(d.dc->primary.url, pm, sizeof pm);
    mask_secrets(d.dc->backup.url, bm, sizeof bm);
    json_object_set_new(d.rep, "environment", json_pack("{s:s, s:s}", "primary", pm, "backup", bm));

    bool ok = dr_run(&d, x->config_path);
    char saved_err[1024], saved_phase[32];
    str_copy(saved_err, d.err, sizeof saved_err);
    str_copy(saved_phase, d.phase, sizeof saved_phase);
    if (d.faulted && !d.restored) {
        dr_say(&d, "bringing the primary back: %s", d.dc->drill_restore);
        dr_sh(&d, "restore", d.dc->drill_restore, 300000);
    }
    if (ok)
        dr_drop_tables(&d);
    dr_stop_drd(&d);
    json_object_set_new(d.rep, "ended_at", json_integer(wall_ms()));
    json_object_set_new(d.rep, "result", json_string(ok ? "succeeded" : "failed"));
    if (!ok) {
        json_object_set_new(d.rep, "error", json_string(saved_err));
        json_object_set_new(d.rep, "phase", json_string(saved_phase));
    }

    /* record it with the real drd */
    char *body = json_dumps(d.rep, JSON_COMPACT);
    buffer reply = { 0 };
    long code = 0;
    call_rc rc = body ? http_call(x, "POST", "/api/drill", body, &code, &reply, err, sizeof err)
                      : CALL_UNREACHABLE;
    free(body);
    free(reply.data);
    json_object_set_new(d.rep, "recorded", json_boolean(rc == CALL_OK && code == 202));
    if (x->json)
        print_json(d.rep);
    else
        dr_print(d.rep);
    if (rc != CALL_OK || code != 202)
        fprintf(stderr, "drctl: the drill report was not recorded (drd %s)\n",
                rc != CALL_OK ? "is not running" : "refused it");
    if (!ok)
        fprintf(stderr, "drctl: the drill environment may need attention: drctl -c %s --drill check;\n"
                        "drctl: its drd (stopped; log %s) keeps the run: start it with drd -D -c %s\n"
                        "drctl: to see or finish the run: drctl -c %s --drill status | approve ID | reject ID\n",
                x->config_path, d.log_path, x->config_path, x->config_path);
    ex = ok ? EXIT_OK : EXIT_FAILURE_;
    json_decref(d.rep);
    close(d.log_fd);
    config_free(d.dc);
    curl_global_cleanup();
    return ex;
}

/* failover|failback --dry-run: the plan with each step's prerequisite
 * (the same checks as `drctl check`), nothing run. */
static int cmd_plan(drctl *x, bool back)
{
    config_errors errs = { 0 };
    json_t *checks = NULL, *doc = NULL, *plan = NULL;
    bool unreachable = false;
    char err[2048] = "";
    int ex = EXIT_FAILURE_;

    x->cfg = x->drill ? config_load_drill(x->config_path, &errs) : config_load(x->config_path, &errs);
    if (x->cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        config_errors_free(&errs);
        return EXIT_BAD_CONFIG;
    }
    config_errors_free(&errs);
    x->socket_path = x->cfg->http_socket;
    x->state_db = x->cfg->state_db;
    if (load_token(x) >= 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return EXIT_BAD_CONFIG;
    if (get_json(x, "/api/status", &doc, &unreachable) >= 0)
        doc = NULL;
    checks = check_run(x->cfg, doc, mono_ms() + 2000);
    plan = plan_build(x->cfg, back, checks, doc, err, sizeof(err));
    if (plan == NULL) {
        fprintf(stderr, "drctl: %s\n", err);
        ex = EXIT_BAD_CONFIG;
    } else {
        if (x->json)
            print_json(plan);
        else
            plan_print(human(plan), stdout);
        ex = json_is_true(json_object_get(plan, "ok")) ? EXIT_OK : EXIT_FAILURE_;
    }
    json_decref(plan);
    json_decref(checks);
    json_decref(doc);
    curl_global_cleanup();
    return ex;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    drctl x;
    int ex;

    memset(&x, 0, sizeof(x));
    log_set_level(LOG_LVL_WARN);
    if ((ex = parse_args(&x, argc, argv)) >= 0)
        return ex;
    if ((ex = check_command_args(&x)) >= 0)
        return ex;
    if (strcmp(x.command, "check") == 0) {
        ex = cmd_check(&x);
        goto done;
    }
    if (strcmp(x.command, "grants") == 0) {
        ex = cmd_grants(&x);
        goto done;
    }
    if (x.dry_run) {
        ex = cmd_plan(&x, strcmp(x.command, "failback") == 0);
        goto done;
    }
    if (strcmp(x.command, "drill") == 0) {
        ex = cmd_drill(&x);
        goto done;
    }
    if ((ex = load_config(&x)) >= 0)
        goto done;
    if ((ex = load_token(&x)) >= 0)
        goto done;
    if (x.socket_path == NULL)
        x.socket_path = DEFAULT_SOCKET;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "drctl: cannot initialise libcurl\n");
        ex = EXIT_FAILURE_;
        goto done;
    }
    if (strcmp(x.command, "status") == 0)
        ex = cmd_status(&x);
    else if (strcmp(x.command, "history") == 0)
        ex = cmd_history(&x);
    else if (strcmp(x.command, "failover") == 0)
        ex = cmd_failover(&x, false);
    else if (strcmp(x.command, "failback") == 0)
        ex = cmd_failover(&x, true);
    else if (strcmp(x.command, "approve") == 0)
        ex = cmd_decide(&x, true);
    else if (strcmp(x.command, "refresh") == 0)
        ex = cmd_refresh(&x);
    else if (strcmp(x.command, "refreshes") == 0)
        ex = cmd_refreshes(&x);
    else if (strcmp(x.command, "unblock") == 0)
        ex = cmd_unblock(&x);
    else
        ex = cmd_decide(&x, false);
    curl_global_cleanup();
done:
    if (x.token != NULL) {
        explicit_bzero(x.token, strlen(x.token));
        free(x.token);
    }
    config_free(x.cfg);
    free(x.own_socket);
    free(x.own_db);
    return ex;
}
