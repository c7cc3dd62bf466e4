/* db: the management server's storage, one small interface over two
 * backends — SQLite (WAL, the default, nothing to set up) and PostgreSQL
 * (fleets; several server processes share one database). SQL is written once,
 * portable, with $1..$N placeholders and every value passed as text; results
 * come back as text cells. A pool of connections serves the HTTP threads.
 * Must never: build SQL from request data by string concatenation (values are
 * always parameters), keep state another server instance would miss, or abort
 * on a database error (errors are returned with a message). */
#ifndef SHOJI_SERVER_DB_H
#define SHOJI_SERVER_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum db_kind { DB_SQLITE = 0, DB_PG };

struct db;        /* a pool of connections to one database */
struct db_conn;   /* one connection, used by one thread at a time */
struct db_res;    /* a result: rows x columns of text cells (NULL = SQL NULL) */

/* `url`: "sqlite:PATH" or "postgresql://..." / "postgres://...". Opens
 * `nconns` connections. */
int db_open(const char *url, int nconns, struct db **out, char *err, size_t errlen);
void db_close(struct db *db);
enum db_kind db_kind(const struct db *db);

/* Blocks until a connection is free. Never returns NULL. */
struct db_conn *db_acquire(struct db *db);
void db_release(struct db *db, struct db_conn *c);
enum db_kind db_conn_kind(const struct db_conn *c);

/* Runs one statement. `params[i]` is $i+1 (NULL binds SQL NULL). `res` may be
 * NULL when the caller needs no rows. Returns 0, -EEXIST on a unique
 * constraint violation, -EAGAIN on a serialization failure / busy database,
 * -EIO on other errors (message in err). */
int db_exec(struct db_conn *c, const char *sql, const char *const *params, int nparams,
            struct db_res **res, char *err, size_t errlen);
/* Convenience: params as varargs (`nparams` const char * values). */
int db_q(struct db_conn *c, struct db_res **res, char *err, size_t errlen, const char *sql,
         int nparams, ...);
/* Runs a script of several statements without parameters (migrations). */
int db_script(struct db_conn *c, const char *sql, char *err, size_t errlen);

/* Transactions. SQLite takes the write lock at BEGIN (IMMEDIATE), so two
 * writers never deadlock on a lock upgrade. */
int db_begin(struct db_conn *c, char *err, size_t errlen);
int db_commit(struct db_conn *c, char *err, size_t errlen);
void db_rollback(struct db_conn *c);

size_t db_nrows(const struct db_res *r);
size_t db_ncols(const struct db_res *r);
const char *db_val(const struct db_res *r, size_t row, size_t col);   /* NULL if NULL/out of range */
int64_t db_int(const struct db_res *r, size_t row, size_t col, int64_t dflt);
long db_affected(const struct db_res *r);   /* rows changed by INSERT/UPDATE/DELETE */
void db_res_free(struct db_res *r);

/* Applies the migrations in server/sql/ not yet applied (table
 * schema_migrations); safe to run from several instances at once. */
int db_migrate(struct db *db, char *err, size_t errlen);

/* The migrations (server/sql/migrations.c). `@ID@` in the text becomes the
 * backend's auto-increment primary key type. */
struct db_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct db_migration db_migrations[];
extern const size_t db_nmigrations;

/* Backend internals shared by db.c, db_sqlite.c, db_pg.c. */
struct db_res {
    size_t nrows, ncols;
    char **cells;        /* nrows * ncols, each heap or NULL */
    long affected;
};
struct db_res *db_res_new(size_t ncols);
int db_res_add_row(struct db_res *r, const char *const *vals, const size_t *lens);

#endif
