/* db_impl: the two storage backends behind db.h (SQLite, PostgreSQL).
 * Private to db.c, db_sqlite.c and db_pg.c.
 * Must never: be included by API code (use db.h). */
#ifndef SHOJI_SERVER_DB_IMPL_H
#define SHOJI_SERVER_DB_IMPL_H

#include "db.h"

int dbsq_connect(const char *path, void **h, char *err, size_t errlen);
void dbsq_close(void *h);
int dbsq_exec(void *h, const char *sql, const char *const *params, int nparams,
              struct db_res **res, char *err, size_t errlen);
int dbsq_script(void *h, const char *sql, char *err, size_t errlen);

int dbpg_connect(const char *url, void **h, char *err, size_t errlen);
void dbpg_close(void *h);
void dbpg_check(void *h);      /* reconnects a broken connection */
int dbpg_exec(void *h, const char *sql, const char *const *params, int nparams,
              struct db_res **res, char *err, size_t errlen);
int dbpg_script(void *h, const char *sql, char *err, size_t errlen);

#endif
