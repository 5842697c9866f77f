/* drctl.c - the command-line client of drd's HTTP API (libcurl), over the
 * unix socket by default or over TCP with --url and a token. When the
 * daemon cannot be reached, `status` falls back to the state database,
 * read-only, and says so.
 *
 *   drctl [-c FILE] [--url URL] [--token-file F] COMMAND [ARGS]
 *
 * The files of drctl: see cli_int.h. */
#include "cli_int.h"

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
        "  refresh [--once]                  copy the primary to the backup now ([refresh] mode),\n"
        "                                    follow it, exit 1 if it fails or is refused; --once\n"
        "                                    (cron): wait for one already running, then run one\n"
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


int usage_error(const char *fmt, ...)
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

/* The options without a value: a is one of them (then set). */
static bool set_flag(drctl *x, const char *a)
{
    static const struct { const char *name, *alias; size_t field; } flags[] = {
        { "--json", NULL, offsetof(drctl, json) },
        { "--yes", "-y", offsetof(drctl, yes) },
        { "--skip", NULL, offsetof(drctl, skip) },
        { "--once", NULL, offsetof(drctl, once) },
        { "--dry-run", NULL, offsetof(drctl, dry_run) },
        { "--drill", NULL, offsetof(drctl, drill) },
    };
    for (size_t i = 0; i < ARRAY_LEN(flags); i++)
        if (strcmp(a, flags[i].name) == 0 || str_eq(a, flags[i].alias)) {
            *(bool *)((char *)x + flags[i].field) = true;
            return true;
        }
    return false;
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
            if (set_flag(x, a))
                continue;
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
        if (x->once && strcmp(x->command, "refresh") != 0)
            return usage_error("%s does not take --once", x->command);
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

int load_token(drctl *x)
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
