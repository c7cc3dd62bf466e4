/* db_sqlite: the SQLite backend of db.h (WAL mode, busy timeout). */
#include "db_impl.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

int dbsq_connect(const char *path, void **h, char *err, size_t errlen)
{
    sqlite3 *s = NULL;
    int rc = sqlite3_open_v2(path, &s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                           SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        util_err(err, errlen, -EIO, "cannot open SQLite database %s: %s", path,
                 s ? sqlite3_errmsg(s) : sqlite3_errstr(rc));
        sqlite3_close(s);
        return -EIO;
    }
    sqlite3_busy_timeout(s, 10000);
    rc = sqlite3_exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                         "PRAGMA foreign_keys=ON;", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        util_err(err, errlen, -EIO, "cannot set up SQLite database %s: %s (is it a SQLite file?)",
                 path, sqlite3_errmsg(s));
        sqlite3_close(s);
        return -EIO;
    }
    *h = s;
    return 0;
}

void dbsq_close(void *h) { sqlite3_close((sqlite3 *)h); }

static int map_err(sqlite3 *s, int rc, const char *what, char *err, size_t errlen)
{
    int ext = sqlite3_extended_errcode(s);
    int code = -EIO;
    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        code = -EEXIST;
    else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        code = -EAGAIN;
    return util_err(err, errlen, code, "SQLite %s: %s", what, sqlite3_errmsg(s));
}

/* A canonical decimal integer ("0", "-12", no leading zeros, fits int64) is
 * bound as an integer so LIMIT and arithmetic see numbers; anything else is
 * text. TEXT columns store such values back as the same text. */
static bool canon_int(const char *v, long long *out)
{
    const char *p = v;
    if (*p == '-')
        p++;
    if (!*p || (p[0] == '0' && p[1]) || strlen(p) > 18)
        return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    *out = strtoll(v, NULL, 10);
    return true;
}

static int bind_params(sqlite3_stmt *st, const char *const *params, int nparams)
{
    for (int i = 0; i < nparams; i++) {
        char name[16];
        snprintf(name, sizeof name, "$%d", i + 1);
        int idx = sqlite3_bind_parameter_index(st, name);
        if (idx <= 0)
            continue;
        long long iv;
        int rc;
        if (!params[i])
            rc = sqlite3_bind_null(st, idx);
        else if (canon_int(params[i], &iv))
            rc = sqlite3_bind_int64(st, idx, iv);
        else
            rc = sqlite3_bind_text(st, idx, params[i], -1, SQLITE_TRANSIENT);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static int collect_row(sqlite3_stmt *st, struct db_res *r)
{
    const char *vals[64];
    size_t lens[64];
    size_t n = r->ncols < 64 ? r->ncols : 64;
    for (size_t i = 0; i < n; i++) {
        vals[i] = (const char *)sqlite3_column_text(st, (int)i);
        lens[i] = (size_t)sqlite3_column_bytes(st, (int)i);
    }
    return db_res_add_row(r, vals, lens);
}

int dbsq_exec(void *h, const char *sql, const char *const *params, int nparams,
              struct db_res **res, char *err, size_t errlen)
{
    sqlite3 *s = h;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_err(s, rc, "prepare", err, errlen);
    rc = bind_params(st, params, nparams);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return map_err(s, rc, "bind", err, errlen);
    }
    int ncols = sqlite3_column_count(st);
    struct db_res *r = db_res_new(ncols > 64 ? 64 : (size_t)ncols);
    if (!r) {
        sqlite3_finalize(st);
        return util_err(err, errlen, -ENOMEM, "out of memory");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (collect_row(st, r) < 0) {
            sqlite3_finalize(st);
            db_res_free(r);
            return util_err(err, errlen, -ENOMEM, "out of memory reading rows");
        }
    }
    if (rc != SQLITE_DONE) {
        int e = map_err(s, rc, "step", err, errlen);
        sqlite3_finalize(st);
        db_res_free(r);
        return e;
    }
    r->affected = sqlite3_changes(s);
    sqlite3_finalize(st);
    if (res)
        *res = r;
    else
        db_res_free(r);
    return 0;
}

int dbsq_script(void *h, const char *sql, char *err, size_t errlen)
{
    sqlite3 *s = h;
    int rc = sqlite3_exec(s, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return map_err(s, rc, "exec", err, errlen);
    return 0;
}
