/* migrate: applies server/sql/migrations.c in order; see db.h. Several
 * instances may start at once: SQLite serializes them with BEGIN IMMEDIATE,
 * PostgreSQL with a transaction-scoped advisory lock. */
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/util.h"

#define MIGRATE_LOCK_ID "7271650001"

/* Replaces every "@ID@" with the backend's auto-increment key type. */
static char *dialect(const char *sql, enum db_kind kind)
{
    const char *rep = kind == DB_SQLITE ? "INTEGER PRIMARY KEY" : "BIGSERIAL PRIMARY KEY";
    size_t n = 0;
    for (const char *p = sql; (p = strstr(p, "@ID@")); p += 4)
        n++;
    size_t len = strlen(sql) + n * strlen(rep) + 1;
    char *out = malloc(len), *o = out;
    if (!out)
        return NULL;
    for (const char *p = sql; *p;) {
        if (strncmp(p, "@ID@", 4) == 0) {
            memcpy(o, rep, strlen(rep));
            o += strlen(rep);
            p += 4;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static int apply_one(struct db_conn *c, const struct db_migration *m, char *err, size_t errlen)
{
    char ver[16];
    snprintf(ver, sizeof ver, "%d", m->version);
    struct db_res *r = NULL;
    int rc = db_q(c, &r, err, errlen, "SELECT version FROM schema_migrations WHERE version = $1",
                  1, ver);
    if (rc < 0)
        return rc;
    bool done = db_nrows(r) > 0;
    db_res_free(r);
    if (done)
        return 0;
    char *sql = dialect(m->sql, db_conn_kind(c));
    if (!sql)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    rc = db_script(c, sql, err, errlen);
    free(sql);
    if (rc < 0)
        return rc;
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    return db_q(c, NULL, err, errlen,
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", 3,
                ver, m->name, now);
}

int db_migrate(struct db *db, char *err, size_t errlen)
{
    struct db_conn *c = db_acquire(db);
    int rc = db_begin(c, err, errlen);
    if (rc == 0 && db_conn_kind(c) == DB_PG)
        rc = db_script(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_ID ")", err, errlen);
    if (rc == 0)
        rc = db_script(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                          " applied_at BIGINT NOT NULL)", err, errlen);
    for (size_t i = 0; rc == 0 && i < db_nmigrations; i++) {
        rc = apply_one(c, &db_migrations[i], err, errlen);
        if (rc < 0) {
            char tmp[UTIL_ERRLEN];
            snprintf(tmp, sizeof tmp, "%s", err ? err : "");
            util_err(err, errlen, rc, "migration %d (%s) failed: %s", db_migrations[i].version,
                     db_migrations[i].name, tmp);
        }
    }
    if (rc == 0)
        rc = db_commit(c, err, errlen);
    else
        db_rollback(c);
    db_release(db, c);
    return rc;
}
