/* db_pg: the PostgreSQL backend of db.h (libpq, text parameters). */
#include "db_impl.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* Server notices ("relation already exists, skipping") are not errors. */
static void quiet_notice(void *arg, const char *msg) { (void)arg; (void)msg; }

int dbpg_connect(const char *url, void **h, char *err, size_t errlen)
{
    PGconn *c = PQconnectdb(url);
    if (!c)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        util_err(err, errlen, -EIO, "cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        return -EIO;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    *h = c;
    return 0;
}

void dbpg_close(void *h) { PQfinish((PGconn *)h); }

void dbpg_check(void *h)
{
    PGconn *c = h;
    if (PQstatus(c) != CONNECTION_OK)
        PQreset(c);
}

static int map_err(PGresult *pr, PGconn *c, char *err, size_t errlen)
{
    const char *state = pr ? PQresultErrorField(pr, PG_DIAG_SQLSTATE) : NULL;
    int code = -EIO;
    if (state && strcmp(state, "23505") == 0)
        code = -EEXIST;
    else if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
        code = -EAGAIN;
    util_err(err, errlen, code, "PostgreSQL: %s", pr ? PQresultErrorMessage(pr) : PQerrorMessage(c));
    /* strip libpq's trailing newline */
    if (err && errlen) {
        size_t n = strlen(err);
        while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
    }
    return code;
}

static struct db_res *to_res(PGresult *pr)
{
    int nr = PQntuples(pr), nc = PQnfields(pr);
    struct db_res *r = db_res_new(nc > 64 ? 64 : (size_t)nc);
    if (!r)
        return NULL;
    const char *vals[64];
    size_t lens[64];
    for (int i = 0; i < nr; i++) {
        for (size_t j = 0; j < r->ncols; j++) {
            vals[j] = PQgetisnull(pr, i, (int)j) ? NULL : PQgetvalue(pr, i, (int)j);
            lens[j] = (size_t)PQgetlength(pr, i, (int)j);
        }
        if (db_res_add_row(r, vals, lens) < 0) {
            db_res_free(r);
            return NULL;
        }
    }
    const char *t = PQcmdTuples(pr);
    r->affected = t && *t ? atol(t) : 0;
    return r;
}

/* A connection the server lost (PostgreSQL restarted, failover) is reset
 * and the statement retried once — only outside a transaction, where
 * running it again cannot split a unit of work. */
static PGresult *exec_retry(PGconn *c, const char *sql, const char *const *params, int nparams,
                            bool with_params)
{
    bool idle = PQtransactionStatus(c) == PQTRANS_IDLE;
    PGresult *pr = with_params ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0)
                               : PQexec(c, sql);
    ExecStatusType st = pr ? PQresultStatus(pr) : PGRES_FATAL_ERROR;
    if ((st == PGRES_FATAL_ERROR || !pr) && idle && PQstatus(c) == CONNECTION_BAD) {
        PQclear(pr);
        PQreset(c);
        if (PQstatus(c) != CONNECTION_OK)
            return NULL;
        pr = with_params ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0)
                         : PQexec(c, sql);
    }
    return pr;
}

int dbpg_exec(void *h, const char *sql, const char *const *params, int nparams,
              struct db_res **res, char *err, size_t errlen)
{
    PGconn *c = h;
    PGresult *pr = exec_retry(c, sql, params, nparams, true);
    ExecStatusType st = pr ? PQresultStatus(pr) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int e = map_err(pr, c, err, errlen);
        PQclear(pr);
        return e;
    }
    struct db_res *r = to_res(pr);
    PQclear(pr);
    if (!r)
        return util_err(err, errlen, -ENOMEM, "out of memory reading rows");
    if (res)
        *res = r;
    else
        db_res_free(r);
    return 0;
}

int dbpg_script(void *h, const char *sql, char *err, size_t errlen)
{
    PGconn *c = h;
    PGresult *pr = exec_retry(c, sql, NULL, 0, false);
    ExecStatusType st = pr ? PQresultStatus(pr) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        int e = map_err(pr, c, err, errlen);
        PQclear(pr);
        return e;
    }
    PQclear(pr);
    return 0;
}
