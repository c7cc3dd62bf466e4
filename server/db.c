/* db: the connection pool and backend dispatch; see db.h. */
#include "db.h"
#include "db_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define DB_MAX_CONNS 64
#define DB_MAX_PARAMS 32

struct db_conn {
    enum db_kind kind;
    void *h;
    bool busy;
};

struct db {
    enum db_kind kind;
    int n;
    struct db_conn conns[DB_MAX_CONNS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static int conn_open(enum db_kind kind, const char *target, struct db_conn *c, char *err,
                     size_t errlen)
{
    c->kind = kind;
    c->busy = false;
    if (kind == DB_SQLITE)
        return dbsq_connect(target, &c->h, err, errlen);
    return dbpg_connect(target, &c->h, err, errlen);
}

int db_open(const char *url, int nconns, struct db **out, char *err, size_t errlen)
{
    enum db_kind kind;
    const char *target;
    if (strncmp(url, "sqlite:", 7) == 0) {
        kind = DB_SQLITE;
        target = url + 7;
        if (!*target)
            return util_err(err, errlen, -EINVAL, "--db sqlite: needs a file path, e.g. sqlite:/var/lib/shoji/server.db");
    } else if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0) {
        kind = DB_PG;
        target = url;
    } else {
        return util_err(err, errlen, -EINVAL,
                        "--db '%s': expected sqlite:PATH or postgresql://USER@HOST:PORT/DB", url);
    }
    if (nconns < 1)
        nconns = 1;
    if (nconns > DB_MAX_CONNS)
        nconns = DB_MAX_CONNS;
    struct db *db = calloc(1, sizeof *db);
    if (!db)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    db->kind = kind;
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->cv, NULL);
    for (int i = 0; i < nconns; i++) {
        int rc = conn_open(kind, target, &db->conns[i], err, errlen);
        if (rc < 0) {
            db_close(db);
            return rc;
        }
        db->n++;
    }
    *out = db;
    return 0;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    for (int i = 0; i < db->n; i++) {
        if (db->kind == DB_SQLITE)
            dbsq_close(db->conns[i].h);
        else
            dbpg_close(db->conns[i].h);
    }
    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->cv);
    free(db);
}

enum db_kind db_kind(const struct db *db) { return db->kind; }
enum db_kind db_conn_kind(const struct db_conn *c) { return c->kind; }

struct db_conn *db_acquire(struct db *db)
{
    pthread_mutex_lock(&db->mu);
    for (;;) {
        for (int i = 0; i < db->n; i++) {
            if (!db->conns[i].busy) {
                db->conns[i].busy = true;
                pthread_mutex_unlock(&db->mu);
                if (db->kind == DB_PG)
                    dbpg_check(db->conns[i].h);
                return &db->conns[i];
            }
        }
        pthread_cond_wait(&db->cv, &db->mu);
    }
}

void db_release(struct db *db, struct db_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&db->mu);
    c->busy = false;
    pthread_cond_signal(&db->cv);
    pthread_mutex_unlock(&db->mu);
}

int db_exec(struct db_conn *c, const char *sql, const char *const *params, int nparams,
            struct db_res **res, char *err, size_t errlen)
{
    if (res)
        *res = NULL;
    if (nparams < 0 || nparams > DB_MAX_PARAMS)
        return util_err(err, errlen, -EINVAL, "too many SQL parameters (%d)", nparams);
    if (c->kind == DB_SQLITE)
        return dbsq_exec(c->h, sql, params, nparams, res, err, errlen);
    return dbpg_exec(c->h, sql, params, nparams, res, err, errlen);
}

int db_q(struct db_conn *c, struct db_res **res, char *err, size_t errlen, const char *sql,
         int nparams, ...)
{
    const char *p[DB_MAX_PARAMS];
    if (nparams < 0 || nparams > DB_MAX_PARAMS)
        return util_err(err, errlen, -EINVAL, "too many SQL parameters (%d)", nparams);
    va_list ap;
    va_start(ap, nparams);
    for (int i = 0; i < nparams; i++)
        p[i] = va_arg(ap, const char *);
    va_end(ap);
    return db_exec(c, sql, p, nparams, res, err, errlen);
}

int db_script(struct db_conn *c, const char *sql, char *err, size_t errlen)
{
    if (c->kind == DB_SQLITE)
        return dbsq_script(c->h, sql, err, errlen);
    return dbpg_script(c->h, sql, err, errlen);
}

int db_begin(struct db_conn *c, char *err, size_t errlen)
{
    return db_script(c, c->kind == DB_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN", err, errlen);
}

int db_commit(struct db_conn *c, char *err, size_t errlen)
{
    int rc = db_script(c, "COMMIT", err, errlen);
    if (rc < 0)
        db_rollback(c);
    return rc;
}

void db_rollback(struct db_conn *c)
{
    char e[128];
    db_script(c, "ROLLBACK", e, sizeof e);
}

/* ---- results ---- */

struct db_res *db_res_new(size_t ncols)
{
    struct db_res *r = calloc(1, sizeof *r);
    if (r)
        r->ncols = ncols;
    return r;
}

int db_res_add_row(struct db_res *r, const char *const *vals, const size_t *lens)
{
    size_t n = (r->nrows + 1) * r->ncols;
    if (r->ncols) {
        char **cells = realloc(r->cells, n * sizeof *cells);
        if (!cells)
            return -ENOMEM;
        r->cells = cells;
    }
    char **row = r->cells + r->nrows * r->ncols;
    for (size_t i = 0; i < r->ncols; i++)
        row[i] = NULL;
    r->nrows++;
    for (size_t i = 0; i < r->ncols; i++) {
        if (!vals[i])
            continue;
        row[i] = malloc(lens[i] + 1);
        if (!row[i])
            return -ENOMEM;
        memcpy(row[i], vals[i], lens[i]);
        row[i][lens[i]] = '\0';
    }
    return 0;
}

size_t db_nrows(const struct db_res *r) { return r ? r->nrows : 0; }
size_t db_ncols(const struct db_res *r) { return r ? r->ncols : 0; }
long db_affected(const struct db_res *r) { return r ? r->affected : 0; }

const char *db_val(const struct db_res *r, size_t row, size_t col)
{
    if (!r || row >= r->nrows || col >= r->ncols)
        return NULL;
    return r->cells[row * r->ncols + col];
}

int64_t db_int(const struct db_res *r, size_t row, size_t col, int64_t dflt)
{
    const char *v = db_val(r, row, col);
    if (!v || !*v)
        return dflt;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || (*end && *end != '.'))
        return dflt;
    return (int64_t)x;
}

void db_res_free(struct db_res *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nrows * r->ncols; i++)
        free(r->cells[i]);
    free(r->cells);
    free(r);
}
