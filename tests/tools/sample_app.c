/* sample_app - a small stand-in for an application that writes to PostgreSQL
 * through DATABASE_URL from its env file. Used by drd's tests, `make demo`
 * and `make bench` (tests/app/appctl starts and stops it).
 *
 *   sample_app ENV_FILE [--key DATABASE_URL] [--health-port PORT]
 *              [--interval-ms 100] [--table drd_app_writes] [--log FILE]
 *
 * - Reads KEY from ENV_FILE once, at start (dotenv syntax: KEY=value,
 *   export KEY=value, '...' / "..." quoting, # comments; the last
 *   assignment wins). Like a real app it must be restarted to switch.
 * - Inserts one row (writer = HOST:PID, seq = attempt counter) into TABLE
 *   every interval, creating the table if missing. Every failure is logged
 *   on one line (passwords masked) and retried with a backoff of
 *   100 ms .. 1 s; it never exits because of the database.
 * - Everything is non-blocking on one poll loop: connecting has a 2 s
 *   deadline, each query 1.5 s (statement_timeout 1 s on the server side),
 *   after which the connection is dropped and made again. A frozen server
 *   (SIGSTOP) therefore never holds it for more than ~2 s per attempt.
 * - Log lines ("YYYY-MM-DD HH:MM:SS.mmm MESSAGE", flushed at once) on each
 *   state change: "connected to HOST:PORT/DB", "write failed: ...",
 *   "writing (seq N)" for the first write, "writing again (seq N)" for the
 *   first write after failures. Info goes to stdout, failures to stderr,
 *   both to FILE with --log.
 * - --health-port: HTTP on 127.0.0.1:PORT. GET /health -> 200 "ok" when the
 *   last write succeeded less than max(1 s, 2 intervals) ago, otherwise
 *   503 "unhealthy: REASON"; other paths 404.
 * - SIGTERM/SIGINT: closes the connection and exits 0 at once.
 * Exit status: 0 after a signal, 1 on a start-up failure (health port
 * taken, log file not writable), 2 on a usage or env file error.
 *
 * Self-contained (libpq + libc) on purpose: it plays the part of a foreign
 * application, not of drd. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

enum {
    CONNECT_TIMEOUT_MS = 2000,
    QUERY_TIMEOUT_MS = 1500,
    BACKOFF_MIN_MS = 100,
    BACKOFF_MAX_MS = 1000,
    HEALTH_WINDOW_MS = 1000,
    MAX_CLIENTS = 16,
    CLIENT_TIMEOUT_MS = 2000,
    TEXT_MAX = 1024,
};

/* ------------------------------------------------------------ helpers -- */

static volatile sig_atomic_t g_stop;
static FILE *g_log;                 /* --log FILE, or NULL: stdout/stderr */
static char g_secrets[2][256];      /* the URL's password, decoded and as written */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void buf_add(char *out, size_t n, size_t *len, const char *s, size_t slen)
{
    while (slen-- > 0 && *len + 1 < n)
        out[(*len)++] = *s++;
    out[*len] = '\0';
}

/* Copy in to out, masking passwords: the URL's own password wherever it
 * appears, the SECRET of scheme://user:SECRET@host and password=VALUE
 * (conninfo or URL query). Newlines and tabs become single spaces and the
 * result is trimmed, so that a libpq message stays on one line. */
static void mask_text(const char *in, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; in[i] != '\0';) {
        size_t slen = 0;
        for (size_t k = 0; k < 2 && slen == 0; k++) {
            size_t l = strlen(g_secrets[k]);
            if (l > 0 && strncmp(in + i, g_secrets[k], l) == 0)
                slen = l;
        }
        if (slen > 0) {
            buf_add(out, n, &len, "****", 4);
            i += slen;
        } else if (strncmp(in + i, "://", 3) == 0) {
            buf_add(out, n, &len, "://", 3);
            i += 3;
            size_t end = i, at = 0, colon = 0;
            bool has_at = false, has_colon = false;
            while (in[end] != '\0' && !strchr("/?#\"' \t\r\n", in[end]))
                end++;
            for (size_t j = i; j < end; j++)
                if (in[j] == '@') {
                    at = j;
                    has_at = true;
                }
            for (size_t j = i; has_at && j < at; j++)
                if (in[j] == ':') {
                    colon = j;
                    has_colon = true;
                    break;
                }
            if (has_colon) {
                buf_add(out, n, &len, in + i, colon - i);
                buf_add(out, n, &len, ":****", 5);
                i = at;
            }
        } else if (strncasecmp(in + i, "password=", 9) == 0) {
            buf_add(out, n, &len, in + i, 9);
            buf_add(out, n, &len, "****", 4);
            i += 9;
            if (in[i] == '\'') {
                for (i++; in[i] != '\0' && in[i] != '\''; i++)
                    if (in[i] == '\\' && in[i + 1] != '\0')
                        i++;
                if (in[i] == '\'')
                    i++;
            } else {
                while (in[i] != '\0' && !strchr("& \t\r\n\"'", in[i]))
                    i++;
            }
        } else if (in[i] == '\n' || in[i] == '\t' || in[i] == '\r') {
            if (len > 0 && out[len - 1] != ' ')
                buf_add(out, n, &len, " ", 1);
            i++;
        } else {
            buf_add(out, n, &len, in + i, 1);
            i++;
        }
    }
    while (len > 0 && out[len - 1] == ' ')
        out[--len] = '\0';
}

__attribute__((format(printf, 2, 3)))
static void say(bool failure, const char *fmt, ...)
{
    char raw[TEXT_MAX * 2], text[TEXT_MAX * 2], stamp[32] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    mask_text(raw, text, sizeof text);

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (localtime_r(&ts.tv_sec, &tm) != NULL)
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    FILE *f = g_log != NULL ? g_log : failure ? stderr : stdout;
    fprintf(f, "%s.%03ld %s\n", stamp, ts.tv_nsec / 1000000L, text);
    fflush(f);
}

/* ----------------------------------------------------------- env file -- */

/* Parse one dotenv value starting at p (after '=' and blanks) into out. */
static bool env_value(const char *p, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    if (*p == '\'') {
        for (p++; *p != '\0' && *p != '\'' && *p != '\n'; p++)
            buf_add(out, n, &len, p, 1);
    } else if (*p == '"') {
        for (p++; *p != '\0' && *p != '"' && *p != '\n'; p++) {
            char c = *p;
            if (c == '\\' && p[1] != '\0' && p[1] != '\n') {
                c = *++p;
                if (c == 'n')
                    c = '\n';
                else if (c == 't')
                    c = '\t';
                else if (c == 'r')
                    c = '\r';
            }
            buf_add(out, n, &len, &c, 1);
        }
    } else {
        for (; *p != '\0' && *p != '\n' && *p != '\r'; p++) {
            if (*p == '#' && len > 0 && (out[len - 1] == ' ' || out[len - 1] == '\t'))
                break;
            buf_add(out, n, &len, p, 1);
        }
        while (len > 0 && (out[len - 1] == ' ' || out[len - 1] == '\t'))
            out[--len] = '\0';
    }
    return len + 1 < n;   /* false: truncated */
}

/* The value of key in the dotenv file path (the last assignment wins).
 * Returns false with err set if the file cannot be read, the key is
 * absent or its value is empty or too long. */
static bool env_read(const char *path, const char *key, char *out, size_t n,
                     char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    char *line = NULL;
    size_t cap = 0, keylen = strlen(key);
    bool found = false, ok = true;
    int lineno = 0;
    while (getline(&line, &cap, f) != -1) {
        const char *p = line;
        lineno++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
            p += 6;
            while (*p == ' ' || *p == '\t')
                p++;
        }
        if (strncmp(p, key, keylen) != 0)
            continue;
        p += keylen;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '=')
            continue;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        found = true;
        if (!env_value(p, out, n)) {
            snprintf(err, errlen, "%s:%d: value of %s is too long", path, lineno, key);
            ok = false;
        } else {
            ok = true;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        ok = false;
    }
    free(line);
    fclose(f);
    if (!found) {
        snprintf(err, errlen, "%s is not set in %s", key, path);
        return false;
    }
    if (ok && out[0] == '\0') {
        snprintf(err, errlen, "%s is empty in %s", key, path);
        return false;
    }
    return ok;
}

static void add_secret(const char *p, size_t len)
{
    for (size_t k = 0; k < 2; k++) {
        if (len == 0 || len >= sizeof g_secrets[k] ||
            (strlen(g_secrets[k]) == len && memcmp(g_secrets[k], p, len) == 0))
            return;
        if (g_secrets[k][0] == '\0') {
            memcpy(g_secrets[k], p, len);
            g_secrets[k][len] = '\0';
            return;
        }
    }
}

/* Remember the URL's password so that it is masked wherever it might
 * appear: as libpq decodes it, and as written (libpq quotes fragments of a
 * URL it cannot parse in its error messages). */
static void remember_password(const char *url)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    if (opts != NULL) {
        for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
            if (strcmp(o->keyword, "password") == 0 && o->val != NULL)
                add_secret(o->val, strlen(o->val));
        PQconninfoFree(opts);
    }
    const char *p = strstr(url, "://");
    if (p != NULL) {                       /* scheme://user:SECRET@host */
        const char *auth = p + 3, *end = auth + strcspn(auth, "/?#"), *at = NULL;
        for (const char *q = auth; q < end; q++)
            if (*q == '@')
                at = q;
        const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon != NULL)
            add_secret(colon + 1, (size_t)(at - colon - 1));
    }
    for (p = url; (p = strstr(p, "password")) != NULL;) {   /* password = SECRET */
        p += 8;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '=')
            continue;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\'') {
            p++;
            add_secret(p, strcspn(p, "'"));
        } else {
            add_secret(p, strcspn(p, " \t&#"));
        }
    }
}

/* ------------------------------------------------------------ database -- */

typedef enum { DB_DISCONNECTED, DB_CONNECTING, DB_READY, DB_BUSY } db_state;
typedef enum { OP_SETUP, OP_CREATE, OP_INSERT } db_op;
static const char *const op_names[] = { "setup", "create table", "insert" };

typedef struct {
    const char *url, *table;
    char writer[320];
    int64_t interval_ms;

    PGconn *conn;
    db_state state;
    db_op op;
    PostgresPollingStatusType poll_dir;  /* while connecting */
    bool flushing;                       /* query not fully sent yet */
    int64_t deadline;                    /* of the connect or the query */
    int64_t next_attempt;                /* when disconnected */
    int64_t next_write;                  /* when ready */
    int64_t backoff;
    bool table_ready;

    bool op_failed, op_table_exists;
    char op_error[TEXT_MAX];

    int64_t seq, writes_ok, last_ok;
    bool ever_ok, failing;
    char last_error[TEXT_MAX];
} app_t;

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void db_close(app_t *a)
{
    PQfinish(a->conn);
    a->conn = NULL;
    a->state = DB_DISCONNECTED;
    a->flushing = false;
}

/* A failed attempt: log it, drop the connection if asked (or if it is
 * broken), and schedule the next attempt after the backoff. */
static void db_fail(app_t *a, int64_t now, const char *what, const char *detail, bool drop)
{
    char one[TEXT_MAX];
    mask_text(detail != NULL && detail[0] != '\0' ? detail : "unknown error", one, sizeof one);
    snprintf(a->last_error, sizeof a->last_error, "%.40s: %.900s", what, one);
    a->failing = true;
    say(true, "write failed: %s", a->last_error);
    if (drop || a->conn == NULL || PQstatus(a->conn) != CONNECTION_OK) {
        db_close(a);
        a->next_attempt = now + a->backoff;
    } else {
        a->state = DB_READY;
        a->next_write = now + a->backoff;
    }
    a->backoff = a->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : a->backoff * 2;
}

static void db_send(app_t *a, int64_t now, db_op op)
{
    char sql[512];
    int sent;
    a->op = op;
    a->op_failed = false;
    a->op_table_exists = false;
    a->op_error[0] = '\0';
    if (op == OP_SETUP) {
        snprintf(sql, sizeof sql,
                 "SET statement_timeout = 1000; SET client_min_messages = warning; "
                 "SELECT to_regclass('%s') IS NOT NULL", a->table);
        sent = PQsendQuery(a->conn, sql);
    } else if (op == OP_CREATE) {
        snprintf(sql, sizeof sql,
                 "CREATE TABLE IF NOT EXISTS %s (id bigserial PRIMARY KEY, "
                 "at timestamptz NOT NULL DEFAULT now(), writer text NOT NULL, "
                 "seq bigint NOT NULL)", a->table);
        sent = PQsendQuery(a->conn, sql);
    } else {
        char seq[24];
        const char *params[2] = { a->writer, seq };
        snprintf(seq, sizeof seq, "%" PRId64, ++a->seq);
        snprintf(sql, sizeof sql, "INSERT INTO %s (writer, seq) VALUES ($1, $2)", a->table);
        sent = PQsendQueryParams(a->conn, sql, 2, NULL, params, NULL, NULL, 0);
        /* Keep the cadence; after a stall, write at once but not in a burst. */
        a->next_write += a->interval_ms;
        if (a->next_write <= now)
            a->next_write = now;
    }
    if (!sent) {
        db_fail(a, now, op_names[op], PQerrorMessage(a->conn), true);
        return;
    }
    int f = PQflush(a->conn);
    if (f < 0) {
        db_fail(a, now, op_names[op], PQerrorMessage(a->conn), true);
        return;
    }
    a->flushing = f == 1;
    a->state = DB_BUSY;
    a->deadline = now + QUERY_TIMEOUT_MS;
}

static void db_connected(app_t *a, int64_t now)
{
    const char *host = PQhost(a->conn), *port = PQport(a->conn), *db = PQdb(a->conn);
    say(false, "connected to %s:%s/%s", host != NULL ? host : "?",
        port != NULL && port[0] != '\0' ? port : "5432", db != NULL ? db : "?");
    PQsetNoticeProcessor(a->conn, ignore_notice, NULL);
    if (PQsetnonblocking(a->conn, 1) != 0) {
        db_fail(a, now, "connect", PQerrorMessage(a->conn), true);
        return;
    }
    a->state = DB_READY;
    a->table_ready = false;
    db_send(a, now, OP_SETUP);
}

static void db_connect(app_t *a, int64_t now)
{
    /* The URL comes last so that its own settings win. keepalives and
     * tcp_user_timeout make the kernel notice a dead peer; the deadlines
     * below do the rest (libpq's connect_timeout only applies to blocking
     * connects). */
    static const char *const keys[] = {
        "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout", "application_name", "dbname", NULL
    };
    const char *values[] = { "2", "1", "2", "1", "2", "2000", "drd_sample_app", a->url, NULL };
    a->conn = PQconnectStartParams(keys, values, 1);
    if (a->conn == NULL) {
        db_fail(a, now, "connect", "out of memory", true);
        return;
    }
    if (PQstatus(a->conn) == CONNECTION_BAD) {
        db_fail(a, now, "connect", PQerrorMessage(a->conn), true);
        return;
    }
    a->state = DB_CONNECTING;
    a->poll_dir = PGRES_POLLING_WRITING;
    a->deadline = now + CONNECT_TIMEOUT_MS;
}

/* All results of the current query are in. */
static void db_done(app_t *a, int64_t now)
{
    if (a->op_failed) {
        db_fail(a, now, op_names[a->op], a->op_error, false);
        return;
    }
    a->state = DB_READY;
    switch (a->op) {
    case OP_SETUP:
        if (!a->op_table_exists) {
            db_send(a, now, OP_CREATE);
            return;
        }
        a->table_ready = true;
        a->next_write = now;
        break;
    case OP_CREATE:
        a->table_ready = true;
        a->next_write = now;
        break;
    case OP_INSERT:
        a->writes_ok++;
        a->last_ok = now;
        a->backoff = BACKOFF_MIN_MS;
        if (!a->ever_ok)
            say(false, "writing (seq %" PRId64 ")", a->seq);
        else if (a->failing)
            say(false, "writing again (seq %" PRId64 ")", a->seq);
        a->ever_ok = true;
        a->failing = false;
        a->last_error[0] = '\0';
        break;
    }
}

/* Time-driven transitions: attempts that are due, deadlines that passed. */
static void db_tick(app_t *a, int64_t now)
{
    switch (a->state) {
    case DB_DISCONNECTED:
        if (now >= a->next_attempt)
            db_connect(a, now);
        break;
    case DB_CONNECTING:
        if (now >= a->deadline) {
            char msg[384];
            const char *host = PQhost(a->conn), *port = PQport(a->conn);
            snprintf(msg, sizeof msg, "timeout after %d ms (no answer from %.256s:%.16s)",
                     CONNECT_TIMEOUT_MS, host != NULL ? host : "?",
                     port != NULL && port[0] != '\0' ? port : "5432");
            db_fail(a, now, "connect", msg, true);
        }
        break;
    case DB_READY:
        if (now >= a->next_write)
            db_send(a, now, a->table_ready ? OP_INSERT : OP_SETUP);
        break;
    case DB_BUSY:
        if (now >= a->deadline) {
            char msg[80];
            snprintf(msg, sizeof msg, "timeout after %d ms waiting for the server",
                     QUERY_TIMEOUT_MS);
            db_fail(a, now, op_names[a->op], msg, true);
        }
        break;
    }
}

/* Milliseconds until db_tick has something to do. */
static int64_t db_wait_ms(const app_t *a, int64_t now)
{
    int64_t at;
    switch (a->state) {
    case DB_DISCONNECTED: at = a->next_attempt; break;
    case DB_READY:        at = a->next_write; break;
    default:              at = a->deadline; break;
    }
    return at > now ? at - now : 0;
}

static bool db_pollfd(const app_t *a, struct pollfd *p)
{
    if (a->conn == NULL || (a->state != DB_CONNECTING && a->state != DB_BUSY))
        return false;
    p->fd = PQsocket(a->conn);
    if (p->fd < 0)
        return false;
    if (a->state == DB_CONNECTING)
        p->events = a->poll_dir == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    else
        p->events = (short)(POLLIN | (a->flushing ? POLLOUT : 0));
    p->revents = 0;
    return true;
}

static void db_io(app_t *a, int64_t now, short revents)
{
    if (a->state == DB_CONNECTING) {
        PostgresPollingStatusType r = PQconnectPoll(a->conn);
        if (r == PGRES_POLLING_OK)
            db_connected(a, now);
        else if (r == PGRES_POLLING_FAILED)
            db_fail(a, now, "connect", PQerrorMessage(a->conn), true);
        else
            a->poll_dir = r;
        return;
    }
    if (a->state != DB_BUSY)
        return;
    if (a->flushing && (revents & POLLOUT)) {
        int f = PQflush(a->conn);
        if (f < 0) {
            db_fail(a, now, op_names[a->op], PQerrorMessage(a->conn), true);
            return;
        }
        a->flushing = f == 1;
    }
    if ((revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(a->conn)) {
        db_fail(a, now, op_names[a->op], PQerrorMessage(a->conn), true);
        return;
    }
    while (!PQisBusy(a->conn)) {
        PGresult *res = PQgetResult(a->conn);
        if (res == NULL) {
            db_done(a, now);
            return;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK && a->op == OP_SETUP && PQntuples(res) == 1)
            a->op_table_exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !a->op_failed) {
            const char *m = PQresultErrorMessage(res);
            a->op_failed = true;
            snprintf(a->op_error, sizeof a->op_error, "%s",
                     m != NULL && m[0] != '\0' ? m : PQresStatus(st));
        }
        PQclear(res);
    }
}

/* ---------------------------------------------------------- health HTTP -- */

typedef struct {
    int fd;                 /* -1: free slot */
    char in[2048];
    size_t in_len;
    char out[TEXT_MAX + 256];
    size_t out_len, out_off;
    bool responding;
    int64_t deadline;
} client_t;

static int http_listen(int port)
{
    struct sockaddr_in sa;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void client_close(client_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static bool app_healthy(const app_t *a, int64_t now, char *why, size_t n)
{
    int64_t window = a->interval_ms * 2 > HEALTH_WINDOW_MS ? a->interval_ms * 2 : HEALTH_WINDOW_MS;
    if (a->failing)
        snprintf(why, n, "last write failed: %.960s", a->last_error);
    else if (!a->ever_ok)
        snprintf(why, n, "no successful write yet");
    else if (now - a->last_ok > window)
        snprintf(why, n, "no successful write for %" PRId64 " ms", now - a->last_ok);
    else
        return true;
    return false;
}

static void client_respond(client_t *c, const app_t *a, int64_t now)
{
    char method[16] = "", path[256] = "", body[TEXT_MAX + 32], why[TEXT_MAX];
    const char *status, *extra = "";
    char *eol = memchr(c->in, '\n', c->in_len);
    if (eol != NULL)
        *eol = '\0';
    else
        c->in[sizeof c->in - 1] = '\0';
    if (sscanf(c->in, "%15s %255s", method, path) != 2) {
        status = "400 Bad Request";
        snprintf(body, sizeof body, "bad request\n");
    } else {
        path[strcspn(path, "?#")] = '\0';
        if (strcmp(path, "/health") != 0) {
            status = "404 Not Found";
            snprintf(body, sizeof body, "not found\n");
        } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            status = "405 Method Not Allowed";
            extra = "Allow: GET, HEAD\r\n";
            snprintf(body, sizeof body, "method not allowed\n");
        } else if (app_healthy(a, now, why, sizeof why)) {
            status = "200 OK";
            snprintf(body, sizeof body, "ok\n");
        } else {
            status = "503 Service Unavailable";
            snprintf(body, sizeof body, "unhealthy: %s\n", why);
        }
    }
    bool head = strcmp(method, "HEAD") == 0;
    int len = snprintf(c->out, sizeof c->out,
                       "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       "Content-Length: %zu\r\n%sConnection: close\r\nCache-Control: no-store\r\n\r\n%s",
                       status, strlen(body), extra, head ? "" : body);
    c->out_len = len < 0 ? 0 : (size_t)len >= sizeof c->out ? sizeof c->out - 1 : (size_t)len;
    c->out_off = 0;
    c->responding = true;
}

static void client_io(client_t *c, const app_t *a, int64_t now, short revents)
{
    if (!c->responding && (revents & (POLLIN | POLLERR | POLLHUP))) {
        ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            client_close(c);
            return;
        }
        if (r > 0) {
            c->in_len += (size_t)r;
            c->in[c->in_len] = '\0';
            if (strstr(c->in, "\r\n\r\n") != NULL || strstr(c->in, "\n\n") != NULL ||
                c->in_len == sizeof c->in - 1)
                client_respond(c, a, now);
        }
    }
    if (c->responding) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            client_close(c);
            return;
        }
        if (w > 0)
            c->out_off += (size_t)w;
        if (c->out_off >= c->out_len)
            client_close(c);
    }
}

static void http_accept(int lfd, client_t *clients, int64_t now)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        client_t *slot = NULL;
        for (int i = 0; i < MAX_CLIENTS && slot == NULL; i++)
            if (clients[i].fd < 0)
                slot = &clients[i];
        if (slot == NULL) {
            close(fd);
            continue;
        }
        slot->fd = fd;
        slot->in_len = 0;
        slot->in[0] = '\0';
        slot->responding = false;
        slot->deadline = now + CLIENT_TIMEOUT_MS;
    }
}

/* ---------------------------------------------------------------- main -- */

static void usage(void)
{
    fprintf(stderr,
            "usage: sample_app ENV_FILE [--key DATABASE_URL] [--health-port PORT]\n"
            "                  [--interval-ms 100] [--table drd_app_writes] [--log FILE]\n");
}

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* [schema.]name, plain lower-case identifiers: safe to put into SQL as is. */
static bool valid_table(const char *t)
{
    bool start = true;
    size_t len = strlen(t);
    if (len == 0 || len > 127)
        return false;
    for (; *t != '\0'; t++) {
        if (*t == '.' && !start) {
            start = true;
            continue;
        }
        if (!(islower((unsigned char)*t) || *t == '_' || (!start && isdigit((unsigned char)*t))))
            return false;
        start = false;
    }
    return !start;
}

int main(int argc, char **argv)
{
    const char *env_file = NULL, *key = "DATABASE_URL", *table = "drd_app_writes";
    const char *log_path = NULL;
    long health_port = 0, interval = 100;
    static char url[8192];
    char err[TEXT_MAX + 256], host[256];
    static client_t clients[MAX_CLIENTS];
    static app_t a;
    int lfd = -1;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL;
        const char *opts[] = { "--key", "--health-port", "--interval-ms", "--table", "--log" };
        size_t k;
        for (k = 0; k < sizeof opts / sizeof opts[0]; k++) {
            size_t ol = strlen(opts[k]);
            if (strcmp(arg, opts[k]) == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "sample_app: %s needs a value\n", arg);
                    usage();
                    return 2;
                }
                val = argv[++i];
                break;
            }
            if (strncmp(arg, opts[k], ol) == 0 && arg[ol] == '=') {
                val = arg + ol + 1;
                break;
            }
        }
        if (k == 0)
            key = val;
        else if (k == 1 && !parse_long(val, 1, 65535, &health_port)) {
            fprintf(stderr, "sample_app: bad --health-port '%s'\n", val);
            return 2;
        } else if (k == 2 && !parse_long(val, 1, 3600000, &interval)) {
            fprintf(stderr, "sample_app: bad --interval-ms '%s'\n", val);
            return 2;
        } else if (k == 3)
            table = val;
        else if (k == 4)
            log_path = val;
        else if (k == sizeof opts / sizeof opts[0]) {
            if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
                usage();
                return 0;
            }
            if (arg[0] == '-' || env_file != NULL) {
                fprintf(stderr, "sample_app: unexpected argument '%s'\n", arg);
                usage();
                return 2;
            }
            env_file = arg;
        }
    }
    if (env_file == NULL) {
        usage();
        return 2;
    }
    if (key[0] == '\0' || !valid_table(table)) {
        fprintf(stderr, "sample_app: bad --key or --table (plain lower-case identifiers)\n");
        return 2;
    }
    if (log_path != NULL && (g_log = fopen(log_path, "ae")) == NULL) {
        fprintf(stderr, "sample_app: cannot open %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    if (!env_read(env_file, key, url, sizeof url, err, sizeof err)) {
        say(true, "sample_app: %s", err);
        if (g_log != NULL)
            fclose(g_log);
        return 2;
    }
    remember_password(url);

    /* Signals are blocked except inside ppoll: no lost wake-up. */
    sigset_t block, orig;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &orig);
    sigdelset(&orig, SIGTERM);
    sigdelset(&orig, SIGINT);

    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    if (health_port > 0 && (lfd = http_listen((int)health_port)) < 0) {
        say(true, "sample_app: cannot listen on 127.0.0.1:%ld: %s", health_port, strerror(errno));
        if (g_log != NULL)
            fclose(g_log);
        return 1;
    }

    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    snprintf(a.writer, sizeof a.writer, "%s:%ld", host, (long)getpid());
    a.url = url;
    a.table = table;
    a.interval_ms = interval;
    a.backoff = BACKOFF_MIN_MS;
    a.state = DB_DISCONNECTED;
    a.next_attempt = clock_ms();
    char health[64] = "";
    if (lfd >= 0)
        snprintf(health, sizeof health, ", health on 127.0.0.1:%ld", health_port);
    say(false, "sample_app %s started: %s from %s, table %s, every %ld ms%s",
        a.writer, key, env_file, table, interval, health);

    while (!g_stop) {
        int64_t now = clock_ms();
        db_tick(&a, now);

        struct pollfd pfd[2 + MAX_CLIENTS];
        int who[2 + MAX_CLIENTS];        /* -2 listener, -1 database, else client */
        nfds_t n = 0;
        int64_t wait = db_wait_ms(&a, now);
        if (wait > 1000)
            wait = 1000;
        if (db_pollfd(&a, &pfd[n]))
            who[n++] = -1;
        if (lfd >= 0) {
            pfd[n] = (struct pollfd){ .fd = lfd, .events = POLLIN };
            who[n++] = -2;
        }
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd < 0)
                continue;
            if (now >= clients[i].deadline) {
                client_close(&clients[i]);
                continue;
            }
            if (clients[i].deadline - now < wait)
                wait = clients[i].deadline - now;
            pfd[n] = (struct pollfd){ .fd = clients[i].fd,
                                      .events = clients[i].responding ? POLLOUT : POLLIN };
            who[n++] = i;
        }
        struct timespec ts = { .tv_sec = wait / 1000, .tv_nsec = (long)(wait % 1000) * 1000000L };
        int rc = ppoll(pfd, n, &ts, &orig);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            say(true, "sample_app: poll: %s", strerror(errno));
            break;
        }
        now = clock_ms();
        for (nfds_t i = 0; i < n; i++) {
            if (pfd[i].revents == 0)
                continue;
            if (who[i] == -1)
                db_io(&a, now, pfd[i].revents);
            else if (who[i] == -2)
                http_accept(lfd, clients, now);
            else
                client_io(&clients[who[i]], &a, now, pfd[i].revents);
        }
    }

    say(false, "stopping: %" PRId64 " writes ok", a.writes_ok);
    db_close(&a);
    for (int i = 0; i < MAX_CLIENTS; i++)
        client_close(&clients[i]);
    if (lfd >= 0)
        close(lfd);
    if (g_log != NULL)
        fclose(g_log);
    return g_stop ? 0 : 1;
}
