/* privs_catalog.c - testing the privileges privs.c lists against one
 * side's catalog (privs_check) and writing the GRANTs that are missing
 * (privs_grants): the catalog of the synced schemas, the list expanded
 * to one entry per object, the statements. */
#include "privs_int.h"

/* ------------------------------------------------------------------ */
/* the catalog of one side                                            */

typedef struct {
    char kind;                   /* 'r' table, 'S' sequence */
    char *schema, *name, *qname, *owner, *qowner, *oid, *owned_by;
    unsigned has;                /* the role's privileges (all when superuser) */
    bool owner_member;           /* the role has the owner's privileges */
    bool synced;
    size_t eidx;                 /* its entry's index + 1 (0: none yet) */
} rel_t;

typedef struct {
    char *name, *qname;
    bool usage, public_usage, synced;
    size_t eidx;                 /* its entry's index + 1 (0: none yet) */
} schema_t;

typedef struct {
    rel_t *rel;
    size_t nrel;
    schema_t *sch;
    size_t nsch;
    char *role, *qrole;          /* the role tested */
    bool role_exists, super, replication, createrole, createdb;
    char *db, *qdb, *dbowner, *qdbowner;
    bool db_member;              /* has the database owner's privileges */
    unsigned db_has, db_public;
    bool signal, app_member, srr;
    char *qapp;                  /* the app's role, quoted, or NULL */
} catalog_t;

static void catalog_free(catalog_t *c)
{
    for (size_t i = 0; i < c->nrel; i++) {
        rel_t *r = &c->rel[i];
        free(r->schema); free(r->name); free(r->qname); free(r->owner); free(r->qowner);
        free(r->oid); free(r->owned_by);
    }
    for (size_t i = 0; i < c->nsch; i++) {
        free(c->sch[i].name);
        free(c->sch[i].qname);
    }
    free(c->rel);
    free(c->sch);
    free(c->role); free(c->qrole); free(c->db); free(c->qdb); free(c->dbowner); free(c->qdbowner);
    free(c->qapp);
    memset(c, 0, sizeof *c);
}

static bool in_schemas(const char *schemas, const char *s)
{
    char buf[1024];
    str_copy(buf, schemas, sizeof buf);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
        if (strcmp(str_trim(t), s) == 0)
            return true;
    return false;
}

static unsigned flags(const char *s)
{
    unsigned m = 0;
    for (int i = 0; i < P_COUNT && s[i] != '\0'; i++)
        if (s[i] == 't')
            m |= 1u << i;
    return m;
}

#define F(expr) "CASE WHEN " expr " THEN 't' ELSE 'f' END"

static const char *const role_sql =
    "WITH r AS (SELECT * FROM pg_roles WHERE rolname = coalesce(nullif($1::text, ''), current_user))"
    " SELECT coalesce(nullif($1::text, ''), current_user), quote_ident(coalesce(nullif($1::text, ''), current_user)),"
    "  EXISTS (SELECT 1 FROM r), coalesce((SELECT rolsuper FROM r), false),"
    "  coalesce((SELECT rolreplication FROM r), false), coalesce((SELECT rolcreaterole FROM r), false),"
    "  coalesce((SELECT rolcreatedb FROM r), false),"
    "  d.datname, quote_ident(d.datname), o.rolname, quote_ident(o.rolname),"
    "  coalesce(pg_has_role((SELECT oid FROM r), d.datdba, 'USAGE'), false),"
    "  concat(repeat('f', 7),"
    "   " F("coalesce(has_database_privilege((SELECT oid FROM r), d.oid, 'CREATE'), false)") ","
    "   " F("coalesce(has_database_privilege((SELECT oid FROM r), d.oid, 'TEMPORARY'), false)") ","
    "   " F("coalesce(has_database_privilege((SELECT oid FROM r), d.oid, 'CONNECT'), false)") "),"
    "  concat(repeat('f', 7),"
    "   " F("has_database_privilege('public', d.oid, 'CREATE')") ","
    "   " F("has_database_privilege('public', d.oid, 'TEMPORARY')") ","
    "   " F("has_database_privilege('public', d.oid, 'CONNECT')") "),"
    "  coalesce(pg_has_role((SELECT oid FROM r), 'pg_signal_backend', 'USAGE'), false),"
    "  coalesce(pg_has_role((SELECT oid FROM r), (SELECT oid FROM pg_roles WHERE rolname = $2::text), 'USAGE'), false),"
    "  CASE WHEN $2::text <> '' THEN quote_ident($2::text) END"
    " FROM pg_database d JOIN pg_roles o ON o.oid = d.datdba WHERE d.datname = current_database()";

static const char *const schemas_sql =
    "WITH r AS (SELECT oid FROM pg_roles WHERE rolname = coalesce(nullif($1::text, ''), current_user))"
    " SELECT n.nspname, quote_ident(n.nspname),"
    "  coalesce(has_schema_privilege((SELECT oid FROM r), n.oid, 'USAGE'), false),"
    "  has_schema_privilege('public', n.oid, 'USAGE')"
    " FROM pg_namespace n WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    "  AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'";

/* relations: kind, schema, name, qname, owner, quoted owner, oid, owned
 * by (a sequence's table oid), the role's privileges in priv_names order,
 * member of the owner */
static const char *const rels_sql =
    "WITH r AS (SELECT oid FROM pg_roles WHERE rolname = coalesce(nullif($1::text, ''), current_user))"
    " SELECT c.relkind, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),"
    "  o.rolname, quote_ident(o.rolname), c.oid::text,"
    "  coalesce((SELECT d.refobjid::text FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
    "    AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1), ''),"
    "  CASE WHEN c.relkind = 'S' THEN concat("
    "   " F("coalesce(has_sequence_privilege((SELECT oid FROM r), c.oid, 'SELECT'), false)") ", 'f',"
    "   " F("coalesce(has_sequence_privilege((SELECT oid FROM r), c.oid, 'UPDATE'), false)") ", 'fff',"
    "   " F("coalesce(has_sequence_privilege((SELECT oid FROM r), c.oid, 'USAGE'), false)") ")"
    "  ELSE concat("
    "   " F("coalesce(has_table_privilege((SELECT oid FROM r), c.oid, 'SELECT'), false)") ","
    "   " F("coalesce(has_table_privilege((SELECT oid FROM r), c.oid, 'INSERT'), false)") ","
    "   " F("coalesce(has_table_privilege((SELECT oid FROM r), c.oid, 'UPDATE'), false)") ","
    "   " F("coalesce(has_table_privilege((SELECT oid FROM r), c.oid, 'DELETE'), false)") ","
    "   " F("coalesce(has_table_privilege((SELECT oid FROM r), c.oid, 'TRUNCATE'), false)") ","
    "   " F("coalesce(has_table_privilege((SELECT oid FROM r), c.oid, 'TRIGGER'), false)") ") END,"
    "  coalesce(pg_has_role((SELECT oid FROM r), c.relowner, 'USAGE'), false)"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles o ON o.oid = c.relowner"
    " WHERE c.relkind IN ('r', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    "  AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'"
    " ORDER BY n.nspname, c.relname";

static char *dupv(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

static bool tv(PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col)[0] == 't';
}

static PGresult *query(PGconn *c, const char *sql, int n, const char *const *params, char *err, size_t errlen)
{
    PGresult *r = pgconn_exec(c, sql, n, params, err, errlen);   /* within privs_connect's deadline */
    if (r != NULL && PQresultStatus(r) != PGRES_TUPLES_OK) {
        str_copy(err, "the query returned no rows", errlen);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* The role's attributes and its rights on the database (role_sql's row),
 * and whether it may SET session_replication_role (a right from
 * PostgreSQL 15). */
static bool load_role(PGconn *c, const char *const *p2, catalog_t *cat, char *err, size_t errlen)
{
    PGresult *r = query(c, role_sql, 2, p2, err, errlen);
    if (r == NULL)
        return false;
    if (PQntuples(r) != 1) {
        snprintf(err, errlen, "the current database is not in pg_database");
        PQclear(r);
        return false;
    }
    cat->role = dupv(r, 0, 0);
    cat->qrole = dupv(r, 0, 1);
    cat->role_exists = tv(r, 0, 2);
    cat->super = tv(r, 0, 3);
    cat->replication = tv(r, 0, 4);
    cat->createrole = tv(r, 0, 5);
    cat->createdb = tv(r, 0, 6);
    cat->db = dupv(r, 0, 7);
    cat->qdb = dupv(r, 0, 8);
    cat->dbowner = dupv(r, 0, 9);
    cat->qdbowner = dupv(r, 0, 10);
    cat->db_member = tv(r, 0, 11);
    cat->db_has = flags(PQgetvalue(r, 0, 12));
    cat->db_public = flags(PQgetvalue(r, 0, 13));
    cat->signal = tv(r, 0, 14);
    cat->app_member = tv(r, 0, 15);
    cat->qapp = dupv(r, 0, 16);
    PQclear(r);

    /* SET ON PARAMETER exists from PostgreSQL 15 */
    cat->srr = false;
    char ignored[256];
    r = pgconn_exec(c, "SELECT coalesce(has_parameter_privilege((SELECT oid FROM pg_roles WHERE rolname ="
                       " coalesce(nullif($1::text, ''), current_user)), 'session_replication_role', 'SET'), false)",
                    1, p2, ignored, sizeof ignored);
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        cat->srr = tv(r, 0, 0);
    PQclear(r);
    return true;
}

static bool load_schemas(const privs_list *l, PGconn *c, const char *const *p2, catalog_t *cat,
                         char *err, size_t errlen)
{
    PGresult *r = query(c, schemas_sql, 1, p2, err, errlen);
    if (r == NULL)
        return false;
    cat->sch = calloc((size_t)PQntuples(r) + 1, sizeof *cat->sch);
    if (cat->sch == NULL) {
        snprintf(err, errlen, "out of memory");
        PQclear(r);
        return false;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        schema_t *s = &cat->sch[cat->nsch++];
        s->name = dupv(r, i, 0);
        s->qname = dupv(r, i, 1);
        s->usage = tv(r, i, 2) || cat->super;
        s->public_usage = tv(r, i, 3);
        s->synced = in_schemas(l->schemas, s->name) && strcmp(s->name, "drd") != 0;
    }
    PQclear(r);
    return true;
}

static bool load_rels(const privs_list *l, PGconn *c, const char *const *p2, catalog_t *cat,
                      char *err, size_t errlen)
{
    bool ok = false;
    PGresult *r = query(c, rels_sql, 1, p2, err, errlen);
    if (r == NULL)
        return false;
    cat->rel = calloc((size_t)PQntuples(r) + 1, sizeof *cat->rel);
    if (cat->rel == NULL)
        goto oom;
    for (int i = 0; i < PQntuples(r); i++) {
        rel_t *x = &cat->rel[cat->nrel++];
        x->kind = PQgetvalue(r, i, 0)[0];
        x->schema = dupv(r, i, 1);
        x->name = dupv(r, i, 2);
        x->qname = dupv(r, i, 3);
        x->owner = dupv(r, i, 4);
        x->qowner = dupv(r, i, 5);
        x->oid = dupv(r, i, 6);
        x->owned_by = dupv(r, i, 7);
        x->has = cat->super ? ~0u : flags(PQgetvalue(r, i, 8));
        x->owner_member = tv(r, i, 9) || cat->super;
        x->synced = in_schemas(l->schemas, x->schema) && strcmp(x->schema, "drd") != 0 &&
                    strcmp(x->schema, "drd_refresh") != 0 && !table_excluded(l->exclude, x->schema, x->name);
        if (x->schema == NULL || x->name == NULL || x->qname == NULL || x->owner == NULL ||
            x->qowner == NULL || x->oid == NULL || x->owned_by == NULL)
            goto oom;
    }
    ok = true;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    PQclear(r);
    return ok;
}

static bool catalog_load(const privs_list *l, privs_side side, PGconn *c, const char *role,
                         catalog_t *cat, char *err, size_t errlen)
{
    const char *app = l->app_user[side] != NULL ? l->app_user[side] : "";
    const char *p2[2] = { role != NULL ? role : "", app };
    return load_role(c, p2, cat, err, errlen) && load_schemas(l, c, p2, cat, err, errlen) &&
           load_rels(l, c, p2, cat, err, errlen);
}

/* ------------------------------------------------------------------ */
/* what is needed, object by object                                   */

typedef enum {
    E_ROLE_MEMBER,               /* be a member of a role (db owner, table owner, pg_signal_backend) */
    E_ATTR, E_PARAMETER, E_DATABASE, E_SCHEMA, E_TABLE, E_SEQUENCE,
} entry_kind;

typedef struct {
    entry_kind kind;
    const char *q;               /* quoted name (catalog-owned or static) */
    const char *owner;           /* the object's owner (unquoted), or NULL */
    unsigned need, optional;     /* privilege bits (objects) */
    bool missing, opt;           /* for roles, attributes, parameters */
    unsigned miss;               /* missing bits */
    const char *why;             /* E_ROLE_MEMBER: what it is for */
    struct { const char *label; unsigned privs; } by[24];   /* who needs what (labels: the needs') */
    size_t nby;
} entry_t;

typedef struct {
    entry_t *v;
    size_t n, cap;
    bool oom;
} entries;

/* label needs privs (0: the entry as a whole) of e. */
static void add_label(entry_t *e, const char *label, unsigned privs)
{
    for (size_t i = 0; i < e->nby; i++)
        if (strcmp(e->by[i].label, label) == 0) {
            e->by[i].privs |= privs;
            return;
        }
    if (e->nby == ARRAY_LEN(e->by))
        return;
    e->by[e->nby].label = label;
    e->by[e->nby++].privs = privs;
}

/* The entry of (kind, q), created if new. hint: where the caller keeps
 * its index + 1 (a relation's or a schema's), or NULL: then it is looked
 * up (roles, attributes: a handful). */
static entry_t *entry(entries *es, entry_kind kind, const char *q, const char *owner, size_t *hint)
{
    if (hint != NULL && *hint > 0)
        return &es->v[*hint - 1];
    for (size_t i = 0; hint == NULL && i < es->n; i++)
        if (es->v[i].kind == kind && strcmp(es->v[i].q, q) == 0)
            return &es->v[i];
    if (es->n == es->cap) {
        size_t cap = es->cap ? es->cap * 2 : 64;
        entry_t *g = realloc(es->v, cap * sizeof *g);
        if (g == NULL) {
            es->oom = true;
            return NULL;
        }
        es->v = g;
        es->cap = cap;
    }
    entry_t *e = &es->v[es->n++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->q = q;
    e->owner = owner;
    e->opt = true;               /* until a required need says otherwise */
    if (hint != NULL)
        *hint = es->n;
    return e;
}

static void need_privs(entries *es, entry_kind kind, const char *q, const char *owner, unsigned privs,
                       unsigned has, const privs_need *n, size_t *hint)
{
    entry_t *e = entry(es, kind, q, owner, hint);
    if (e == NULL)
        return;
    if (n->optional)
        e->optional |= privs & ~e->need;
    else {
        e->optional &= ~privs;
        e->opt = false;
    }
    e->need |= privs;
    e->miss |= privs & ~has;
    add_label(e, n->label, privs);
}

static void need_flag(entries *es, entry_kind kind, const char *q, const char *owner, bool have,
                      const char *why, const privs_need *n)
{
    entry_t *e = entry(es, kind, q, owner, NULL);
    if (e == NULL)
        return;
    if (!n->optional)
        e->opt = false;
    e->missing = !have;
    if (why != NULL && e->why == NULL)
        e->why = why;
    add_label(e, n->label, 0);
}

static schema_t *schema_of(catalog_t *cat, const char *name)
{
    for (size_t i = 0; i < cat->nsch; i++)
        if (strcmp(cat->sch[i].name, name) == 0)
            return &cat->sch[i];
    return NULL;
}

static void need_rel(entries *es, catalog_t *cat, rel_t *x, unsigned privs, const privs_need *n)
{
    schema_t *s = schema_of(cat, x->schema);
    if (s != NULL)
        need_privs(es, E_SCHEMA, s->qname, NULL, P_USAGE, s->usage || s->public_usage ? P_USAGE : 0, n, &s->eidx);
    need_privs(es, x->kind == 'S' ? E_SEQUENCE : E_TABLE, x->qname, x->owner, privs, x->has, n, &x->eidx);
}

static const char *const attr_names[] = { "SUPERUSER", "REPLICATION", "CREATEROLE", "CREATEDB" };

static void expand(const privs_list *l, privs_side side, catalog_t *cat, entries *es)
{
    for (size_t k = 0; k < l->n; k++) {
        const privs_need *n = &l->v[k];
        if (n->side != side)
            continue;
        switch (n->object) {
        case PO_TABLES:
        case PO_SEQUENCES:
            for (size_t i = 0; i < cat->nrel; i++)
                if (cat->rel[i].synced && (cat->rel[i].kind == 'S') == (n->object == PO_SEQUENCES))
                    need_rel(es, cat, &cat->rel[i], n->privs, n);
            break;
        case PO_SEQ_OWNED:
            for (size_t i = 0; i < cat->nrel; i++) {
                rel_t *x = &cat->rel[i];
                if (x->kind != 'S' || x->owned_by[0] == '\0')
                    continue;
                need_rel(es, cat, x, n->privs, n);
                for (size_t j = 0; j < cat->nrel; j++)
                    if (strcmp(cat->rel[j].oid, x->owned_by) == 0)
                        need_rel(es, cat, &cat->rel[j], P_SELECT, n);
            }
            break;
        case PO_ALL:
            for (size_t i = 0; i < cat->nrel; i++)
                if (strcmp(cat->rel[i].schema, "drd") != 0 && strcmp(cat->rel[i].schema, "drd_refresh") != 0)
                    need_rel(es, cat, &cat->rel[i], n->privs, n);
            break;
        case PO_DATABASE:
            need_privs(es, E_DATABASE, cat->qdb, cat->dbowner, n->privs,
                       cat->super ? ~0u : cat->db_has | cat->db_public, n, NULL);
            break;
        case PO_DB_OWNER:
            need_flag(es, E_ROLE_MEMBER, cat->qdbowner, cat->dbowner, cat->super || cat->db_member,
                      "owner of the database", n);
            break;
        case PO_SIGNAL_APP:
            need_flag(es, E_ROLE_MEMBER, "pg_signal_backend", NULL,
                      cat->super || cat->signal || cat->app_member, "ends the app's sessions", n);
            break;
        case PO_ATTR:
            for (size_t i = 0; i < ARRAY_LEN(attr_names); i++)
                if (strcmp(attr_names[i], n->name) == 0)
                    need_flag(es, E_ATTR, attr_names[i], NULL,
                              cat->super || (i == 1 && cat->replication) || (i == 2 && cat->createrole) ||
                              (i == 3 && cat->createdb), NULL, n);
            break;
        case PO_PARAMETER:
            need_flag(es, E_PARAMETER, n->name, NULL, cat->super || cat->srr, NULL, n);
            break;
        case PO_TABLE_OWNER:
            for (size_t i = 0; i < cat->nrel; i++)
                if (cat->rel[i].synced && cat->rel[i].kind == 'r')
                    need_flag(es, E_ROLE_MEMBER, cat->rel[i].qowner, cat->rel[i].owner,
                              cat->rel[i].owner_member, "owner of the published tables", n);
            break;
        }
    }
}

/* ------------------------------------------------------------------ */
/* statements                                                         */

static void privlist(unsigned m, char *out, size_t n)
{
    out[0] = '\0';
    for (int i = 0; i < P_COUNT; i++)
        if (m & (1u << i)) {
            if (out[0] != '\0')
                str_append(out, n, ", ");
            str_append(out, n, priv_names[i]);
        }
}

static const char *const kind_words[] = {
    [E_ROLE_MEMBER] = "role", [E_ATTR] = "attribute", [E_PARAMETER] = "parameter",
    [E_DATABASE] = "database", [E_SCHEMA] = "schema", [E_TABLE] = "table", [E_SEQUENCE] = "sequence",
};

/* The statement that gives role m of e (m: privilege bits for objects). */
static void statement(const entry_t *e, unsigned m, const char *qrole, char *out, size_t n)
{
    char p[160];
    privlist(m, p, sizeof p);
    switch (e->kind) {
    case E_ROLE_MEMBER:
        snprintf(out, n, "GRANT %s TO %s;", e->q, qrole);
        break;
    case E_ATTR:
        snprintf(out, n, "ALTER ROLE %s %s;", qrole, e->q);
        break;
    case E_PARAMETER:
        snprintf(out, n, "GRANT SET ON PARAMETER %s TO %s;", e->q, qrole);
        break;
    default: {
        const char *w = e->kind == E_DATABASE ? "DATABASE" : e->kind == E_SCHEMA ? "SCHEMA"
                      : e->kind == E_TABLE ? "TABLE" : "SEQUENCE";
        snprintf(out, n, "GRANT %s ON %s %s TO %s;", p, w, e->q, qrole);
        break;
    }
    }
}

static bool load_entries(const privs_list *l, privs_side side, PGconn *c, const char *role,
                         catalog_t *cat, entries *es, char *err, size_t errlen)
{
    memset(cat, 0, sizeof *cat);
    memset(es, 0, sizeof *es);
    if (!catalog_load(l, side, c, role, cat, err, errlen))
        return false;
    expand(l, side, cat, es);
    if (es->oom) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    return true;
}

/* The labels that need one of the privileges m (m = 0: all of them). */
static json_t *labels_json(const entry_t *e, unsigned m)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < e->nby; i++)
        if (m == 0 || e->by[i].privs == 0 || (e->by[i].privs & m) != 0)
            json_array_append_new(a, json_string(e->by[i].label));
    return a;
}

bool privs_check(const privs_list *l, privs_side side, PGconn *c, const char *role,
                 json_t *items, char *err, size_t errlen)
{
    catalog_t cat;
    entries es;
    bool ok = false;
    const char *sides[2] = { "primary", "backup" };

    if (!load_entries(l, side, c, role, &cat, &es, err, errlen))
        goto cleanup;
    if (!cat.role_exists) {
        snprintf(err, errlen, "role %s does not exist on the %s", cat.role, sides[side]);
        goto cleanup;
    }
    for (int pass = 0; pass < 2 * (E_SEQUENCE + 1); pass++)   /* required first, then optional; by kind */
        for (size_t i = 0; i < es.n; i++) {
            entry_t *e = &es.v[i];
            if ((int)e->kind != pass / 2)
                continue;
            char obj[600], privs[160], fix[800], what[800];
            unsigned m = 0;
            bool optional;
            if (e->kind <= E_PARAMETER) {
                if (!e->missing || e->opt != (pass % 2 == 1))
                    continue;
                optional = e->opt;
                if (e->kind == E_ROLE_MEMBER)
                    snprintf(privs, sizeof privs, "membership (%s)", e->why != NULL ? e->why : "");
                else
                    str_copy(privs, e->kind == E_ATTR ? "role attribute" : "SET", sizeof privs);
            } else {
                m = e->miss & (pass % 2 == 0 ? ~e->optional : e->optional);
                if (m == 0)
                    continue;
                optional = pass % 2 == 1;
                privlist(m, privs, sizeof privs);
            }
            snprintf(obj, sizeof obj, "%s %s", kind_words[e->kind], e->q);
            if (e->kind == E_ROLE_MEMBER)
                snprintf(what, sizeof what, "membership in role %s (%s)", e->q, e->why != NULL ? e->why : "");
            else if (e->kind == E_ATTR)
                snprintf(what, sizeof what, "the %s attribute", e->q);
            else
                snprintf(what, sizeof what, "%s on %s", privs, obj);
            statement(e, m, cat.qrole, fix, sizeof fix);
            json_t *it = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:b}", "side", sides[side], "object", obj,
                                   "privileges", privs, "what", what, "needed_by", labels_json(e, m),
                                   "fix", fix, "optional", optional);
            if (it == NULL || json_array_append_new(items, it) != 0) {
                snprintf(err, errlen, "out of memory");
                goto cleanup;
            }
        }
    ok = true;
cleanup:
    free(es.v);
    catalog_free(&cat);
    return ok;
}

/* Implied for grants: objects the role owns, or whose owner it is made (or
 * already is) a member of by another line of the same output. */
static bool implied(const entries *es, const catalog_t *cat, const entry_t *e)
{
    if (e->owner == NULL)
        return false;
    if (strcmp(e->owner, cat->role) == 0)
        return true;
    for (size_t i = 0; i < es->n; i++) {
        const entry_t *m = &es->v[i];
        if (m != e && m->kind == E_ROLE_MEMBER && !m->opt && m->owner != NULL && strcmp(m->owner, e->owner) == 0)
            return true;
    }
    return false;
}

/* pg_signal_backend is not needed when the role is (or is made by
 * another line) a member of the app's role. */
static bool signal_implied(const privs_list *l, privs_side side, const entries *es, const catalog_t *cat)
{
    const char *app = l->app_user[side];
    if (cat->app_member)
        return true;
    for (size_t i = 0; app != NULL && i < es->n; i++) {
        const entry_t *m = &es->v[i];
        if (m->kind == E_ROLE_MEMBER && !m->opt && m->owner != NULL && strcmp(m->owner, app) == 0)
            return true;
    }
    return false;
}

/* The grants drd cannot work without: roles and attributes, the
 * database, schemas, tables, sequences, in that order. */
static void print_required(FILE *f, const privs_list *l, privs_side side, entries *es, catalog_t *cat)
{
    char line[1200];
    /* roles and attributes, the database, schemas, tables, sequences */
    for (int k = E_ROLE_MEMBER; k <= E_SEQUENCE; k++)
        for (size_t i = 0; i < es->n; i++) {
            entry_t *e = &es->v[i];
            if ((int)e->kind != k)
                continue;
            if (e->kind <= E_PARAMETER) {
                if (e->opt)
                    continue;
                if (e->kind == E_ROLE_MEMBER && e->owner != NULL && strcmp(e->owner, cat->role) == 0)
                    continue;        /* it owns it already */
                if (e->kind == E_ROLE_MEMBER && e->owner == NULL && signal_implied(l, side, es, cat))
                    continue;        /* a member of the app's role: it may end its sessions */
                statement(e, 0, cat->qrole, line, sizeof line);
                fprintf(f, "%s\n", line);
                if (e->kind == E_ROLE_MEMBER && e->why != NULL && strcmp(e->why, "owner of the database") == 0)
                    fprintf(f, "-- (the fence: ALTER DATABASE %s needs its owner's rights; or make %s its owner:\n"
                               "--  ALTER DATABASE %s OWNER TO %s;)\n", cat->db, cat->role, cat->qdb, cat->qrole);
                continue;
            }
            if (implied(es, cat, e))
                continue;
            unsigned pub = e->kind == E_DATABASE ? cat->db_public : 0;
            if (e->kind == E_SCHEMA) {
                const schema_t *s = NULL;
                for (size_t j = 0; j < cat->nsch; j++)
                    if (strcmp(cat->sch[j].qname, e->q) == 0)
                        s = &cat->sch[j];
                if (s != NULL && s->public_usage)
                    pub = P_USAGE;
            }
            unsigned m = e->need & ~e->optional & ~pub;
            if (m != 0) {
                statement(e, m, cat->qrole, line, sizeof line);
                fprintf(f, "%s\n", line);
            }
        }
}

/* The grants that make drd faster or gentler: commented out. */
static void print_optional(FILE *f, entries *es, catalog_t *cat)
{
    char line[1200];
    /* optional: commented out */
    for (size_t i = 0; i < es->n; i++) {
        entry_t *e = &es->v[i];
        unsigned m = e->kind > E_PARAMETER ? e->need & e->optional : 0;
        if ((e->kind <= E_PARAMETER && !e->opt) || (e->kind > E_PARAMETER && (m == 0 || implied(es, cat, e))))
            continue;
        statement(e, m, cat->qrole, line, sizeof line);
        if (e->kind == E_PARAMETER)
            fprintf(f, "-- optional (PostgreSQL 15+, a superuser grants it): sync-back then sets\n"
                       "-- session_replication_role = replica (the primary's triggers and foreign keys are\n"
                       "-- not fired; without it tables are written in foreign-key order):\n-- %s\n", line);
        else
            fprintf(f, "-- optional (faster; without it drd deletes instead): %s\n", line);
    }
}

char *privs_grants(const privs_list *l, privs_side side, PGconn *c, const char *role,
                   char *err, size_t errlen)
{
    catalog_t cat;
    entries es;
    char *text = NULL;
    size_t len = 0;
    FILE *f = NULL;
    const char *sides[2] = { "primary", "backup" };

    if (!load_entries(l, side, c, role, &cat, &es, err, errlen))
        goto cleanup;
    if ((f = open_memstream(&text, &len)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    fprintf(f, "-- drd on the %s: what role %s needs in database %s, computed from the configured\n"
               "-- runbooks, [sync] and [refresh] and the objects there now. Run it as a superuser\n"
               "-- or the objects' owner, e.g.  drctl grants %s | psql -v ON_ERROR_STOP=1 -d %s\n"
               "-- Tables or sequences created later need the same grants (run it again).\n",
            sides[side], cat.role, cat.db, sides[side], cat.db);
    if (!cat.role_exists)
        fprintf(f, "-- role %s does not exist yet: CREATE ROLE %s LOGIN PASSWORD '...'; first\n",
                cat.role, cat.qrole);
    if (cat.super) {
        fprintf(f, "-- %s is a superuser: it needs no grant.\n", cat.role);
        goto done;
    }
    print_required(f, l, side, &es, &cat);
    print_optional(f, &es, &cat);
done:
    if (fclose(f) != 0) {
        f = NULL;
        snprintf(err, errlen, "out of memory");
        free(text);
        text = NULL;
        goto cleanup;
    }
    f = NULL;
cleanup:
    if (f != NULL) {
        fclose(f);
        free(text);
        text = NULL;
    }
    free(es.v);
    catalog_free(&cat);
    return text;
}

/* ------------------------------------------------------------------ */

void privs_summary(const json_t *items, const char *label, bool optional,
                   char *reason, size_t rn, char *fix, size_t fn)
{
    size_t i, j;
    json_t *it, *lb;

    reason[0] = '\0';
    fix[0] = '\0';
    json_array_foreach(items, i, it) {
        if (json_is_true(json_object_get(it, "optional")) != optional)
            continue;
        bool match = label == NULL;
        const json_t *by = json_object_get(it, "needed_by");
        json_array_foreach(by, j, lb)
            if (label != NULL && str_eq(json_string_value(lb), label))
                match = true;
        if (!match)
            continue;
        char one[1200];
        snprintf(one, sizeof one, "%s%s (", reason[0] ? "; " : "", json_string_value(json_object_get(it, "what")));
        json_array_foreach(by, j, lb) {
            if (j > 0)
                str_append(one, sizeof one, ", ");
            str_append(one, sizeof one, json_string_value(lb));
        }
        str_append(one, sizeof one, ")");
        str_append(reason, rn, one);
        if (fix[0] != '\0')
            str_append(fix, fn, " ");
        str_append(fix, fn, json_string_value(json_object_get(it, "fix")));
    }
}
