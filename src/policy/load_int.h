/* load_int: helpers shared by the policy loader's files (load.c for the
 * structure, lists, decode and applications; load_rules.c for categories,
 * templates, schedules, write restriction, safe search and auto_avoid).
 * Internal to src/policy/.
 * Must never: be included outside src/policy/. */
#ifndef SHOJI_POLICY_LOAD_INT_H
#define SHOJI_POLICY_LOAD_INT_H

#include <jansson.h>

#include "policy/policy_int.h"

#define PATH_BUF 256        /* a key path such as "schedules[3].categories.games" */
#define POL_APP_MAX 128     /* normalized application name, with NUL */

struct lctx {
    const char *text;       /* the JSON source, to find lines in */
    size_t len;
    const char *origin;     /* file name in messages */
    const char *base_dir;   /* for relative paths; NULL: validate only */
    const struct catdb *db; /* once category_db is open: names are checked */
    char *err;
    size_t errlen;
};

/* Formats a key path ("schedules[3].from"); truncates silently (a path
 * longer than PATH_BUF only shortens a message). */
void lctx_path(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "ORIGIN:LINE: key `path`: MESSAGE"; returns -EINVAL. */
int lctx_fail(struct lctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "got 12", "got a list", ... */
const char *lctx_got(const json_t *v, char *buf, size_t cap);
/* JSON_TRUE stands for "a boolean". */
int lctx_expect(struct lctx *c, const char *path, const json_t *v, json_type t, const char *what);
int lctx_check_keys(struct lctx *c, const char *path, const json_t *obj, const char *const *allowed);
int lctx_patterns(struct lctx *c, const char *path, const json_t *arr, unsigned flags,
                  struct pat_set **out);
/* A list of category names (validated) -> strdup'ed array. */
int lctx_category_list(struct lctx *c, const char *path, const json_t *arr, char ***out, size_t *n);
/* template, categories, schedules, write_restriction, safe_search, auto_avoid. */
int lctx_rules(struct lctx *c, struct policy *p, const json_t *root);

#endif
