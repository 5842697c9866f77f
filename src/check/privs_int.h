/* privs_int.h - what privs.c (the rules, the list of needs) and
 * privs_catalog.c (testing them, writing the GRANTs) share. */
#ifndef DRD_CHECK_PRIVS_INT_H
#define DRD_CHECK_PRIVS_INT_H

#include "drd/check/privs.h"
#include "drd/pg/pgconn.h"
#include "drd/core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* privilege bits, in the order statements list them */
enum {
    P_SELECT = 1 << 0, P_INSERT = 1 << 1, P_UPDATE = 1 << 2, P_DELETE = 1 << 3,
    P_TRUNCATE = 1 << 4, P_TRIGGER = 1 << 5, P_USAGE = 1 << 6, P_CREATE = 1 << 7,
    P_TEMPORARY = 1 << 8, P_CONNECT = 1 << 9,
};
#define P_COUNT 10
extern const char *const priv_names[P_COUNT];

typedef enum {
    PO_TABLES,          /* every synced table ([sync] schemas minus exclude and drd) */
    PO_SEQUENCES,       /* every synced sequence */
    PO_SEQ_OWNED,       /* every sequence owned by a column, any schema; SELECT on its table */
    PO_ALL,             /* every table and sequence of the database (pg_dump) */
    PO_DATABASE,        /* the app's database */
    PO_DB_OWNER,        /* own the app's database (or be a member of its owner) */
    PO_SIGNAL_APP,      /* end the app role's sessions */
    PO_ATTR,            /* a role attribute */
    PO_PARAMETER,       /* SET on a parameter */
    PO_TABLE_OWNER,     /* own every synced table (or be a member of its owner) */
} priv_object;

struct privs_need {
    privs_side side;
    priv_object object;
    unsigned privs;
    const char *name;
    bool optional;
    bool required;               /* must hold now (false: a fence that may stay pending) */
    char label[96];              /* "failover: capture" */
};

#endif
