/* catdb_compile: list folders -> database file (see catdb_compile.h). The
 * folders are scanned first into a plan (categories sorted by name, aliases),
 * then every list is read into the builder, then the file is written. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "catdb/catdb_compile.h"
#include "catdb/catdb.h"
#include "catdb/catdb_build.h"
#include "catdb/catdb_format.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NAME_CAP 128
#define LIST_FILE_MAX (1u << 30)
#define ALIAS_FILE_MAX 256

struct plan_cat {
    char name[NAME_CAP];
    char dir[PATH_MAX];
};
struct plan_alias {
    char name[NAME_CAP];
    char target[NAME_CAP];
};
struct plan {
    struct plan_cat *cats;
    size_t ncats, capcats;
    struct plan_alias *aliases;
    size_t naliases, capaliases;
};

struct plan;
struct ctx {
    struct cdb_builder *b;
    const struct catdb_compile_opts *o;
    struct catdb_compile_result *r;
    uint64_t max_diag;
    const struct plan *plan;
};

static void diag(struct ctx *c, const char *file, size_t line, const char *reason)
{
    c->r->bad_lines++;
    if (!c->o->diag)
        return;
    if (c->r->bad_lines <= c->max_diag && line)
        fprintf(c->o->diag, "%s:%zu: %s\n", file, line, reason);
    else if (c->r->bad_lines <= c->max_diag)
        fprintf(c->o->diag, "%s: %s\n", file, reason);
    else if (c->r->bad_lines == c->max_diag + 1)
        fprintf(c->o->diag, "... more bad lines not shown\n");
}

/* ---- scanning ---- */

static int plan_add_cat(struct plan *p, const char *name, const char *dir)
{
    if (p->ncats == p->capcats) {
        size_t n = p->capcats ? p->capcats * 2 : 32;
        void *q = realloc(p->cats, n * sizeof *p->cats);
        if (!q)
            return -ENOMEM;
        p->cats = q;
        p->capcats = n;
    }
    struct plan_cat *pc = &p->cats[p->ncats];
    if (!util_strlcpy(pc->name, name, sizeof pc->name) || !util_strlcpy(pc->dir, dir, sizeof pc->dir))
        return -ENAMETOOLONG;
    p->ncats++;
    return 0;
}

static int plan_add_alias(struct plan *p, const char *name, const char *target)
{
    if (p->naliases == p->capaliases) {
        size_t n = p->capaliases ? p->capaliases * 2 : 16;
        void *q = realloc(p->aliases, n * sizeof *p->aliases);
        if (!q)
            return -ENOMEM;
        p->aliases = q;
        p->capaliases = n;
    }
    struct plan_alias *a = &p->aliases[p->naliases];
    if (!util_strlcpy(a->name, name, sizeof a->name) || !util_strlcpy(a->target, target, sizeof a->target))
        return -ENAMETOOLONG;
    p->naliases++;
    return 0;
}

static int is_file(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    return snprintf(p, sizeof p, "%s/%s", dir, name) < (int)sizeof p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A small regular file whose whole content names a sibling folder is an
 * alias (how symlinks look in a copy that lost them). */
static int alias_file_target(const char *root, const char *path, const struct stat *st, char *target, size_t cap)
{
    if (st->st_size <= 0 || st->st_size > ALIAS_FILE_MAX)
        return 0;
    char *txt = NULL;
    size_t n = 0;
    if (util_read_file(path, ALIAS_FILE_MAX, &txt, &n, NULL, 0) < 0)
        return 0;
    struct sv v = sv_trim(sv_make(txt, n));
    while (v.n && (v.p[v.n - 1] == '\n' || v.p[v.n - 1] == '\r'))
        v.n--;
    int ok = v.n > 0 && !memchr(v.p, '/', v.n) && !memchr(v.p, '\n', v.n) && v.p[0] != '.' && sv_copy(target, cap, v);
    free(txt);
    char tp[PATH_MAX];
    return ok && snprintf(tp, sizeof tp, "%s/%s", root, target) < (int)sizeof tp && is_dir(tp);
}

/* A symlink to a folder directly inside the same root is an alias. */
static int symlink_target(const char *root, const char *path, char *target, size_t cap)
{
    char rroot[PATH_MAX], rt[PATH_MAX];
    if (!realpath(root, rroot) || !realpath(path, rt) || !is_dir(rt))
        return 0;
    char *slash = strrchr(rt, '/');
    if (!slash || slash == rt)
        return 0;
    *slash = '\0';
    return strcmp(rt, rroot) == 0 && util_strlcpy(target, slash + 1, cap);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int scan_entry(struct plan *p, const char *root, const char *name)
{
    char path[PATH_MAX], target[NAME_CAP];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s", root, name) >= (int)sizeof path || lstat(path, &st) < 0)
        return 0;
    if (S_ISDIR(st.st_mode))
        return plan_add_cat(p, name, path);
    if (S_ISLNK(st.st_mode)) {
        if (symlink_target(root, path, target, sizeof target))
            return plan_add_alias(p, name, target);
        return is_dir(path) ? plan_add_cat(p, name, path) : 0;
    }
    if (S_ISREG(st.st_mode) && alias_file_target(root, path, &st, target, sizeof target))
        return plan_add_alias(p, name, target);
    return 0;
}

static int scan_root(struct plan *p, const char *root, char *err, size_t errlen)
{
    if (!is_dir(root))
        return util_err(err, errlen, -ENOTDIR, "%s: not a folder of category lists", root);
    if (is_file(root, "domains") || is_file(root, "urls") || is_file(root, "expressions")) {
        char rp[PATH_MAX];
        const char *base = realpath(root, rp) ? strrchr(rp, '/') + 1 : root;
        return plan_add_cat(p, base, root);
    }
    DIR *d = opendir(root);
    if (!d)
        return util_err(err, errlen, -errno, "%s: %s", root, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **q = realloc(names, cap * sizeof *names);
            if (!q) { rc = -ENOMEM; break; }
            names = q;
        }
        if (!(names[n] = strdup(de->d_name))) { rc = -ENOMEM; break; }
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    size_t before = p->ncats + p->naliases;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = scan_entry(p, root, names[i]);
        free(names[i]);
    }
    free(names);
    if (rc < 0)
        return util_err(err, errlen, rc, "%s: %s", root, strerror(-rc));
    if (p->ncats + p->naliases == before)
        return util_err(err, errlen, -ENOENT, "%s: no category folders found (expected %s/CATEGORY/domains)", root, root);
    return 0;
}

static int cmp_plan_cat(const void *a, const void *b)
{
    return strcmp(((const struct plan_cat *)a)->name, ((const struct plan_cat *)b)->name);
}

/* ---- reading lists ---- */

struct lines {
    const char *p, *end;
    size_t no;
};

static int next_line(struct lines *l, const char **s, size_t *n)
{
    if (l->p >= l->end)
        return 0;
    const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
    *s = l->p;
    *n = nl ? (size_t)(nl - l->p) : (size_t)(l->end - l->p);
    l->p = nl ? nl + 1 : l->end;
    l->no++;
    return 1;
}

static int read_lines(struct ctx *c, const char *path, char **buf, struct lines *l)
{
    size_t n = 0;
    char why[UTIL_ERRLEN];
    *buf = NULL;
    if (access(path, F_OK) < 0)
        return 0;
    if (util_read_file(path, LIST_FILE_MAX, buf, &n, why, sizeof why) < 0) {
        diag(c, path, 0, why);
        return 0;
    }
    *l = (struct lines){ *buf, *buf + n, 0 };
    return 1;
}

static int add_result(struct ctx *c, int rc)
{
    if (rc == 0)
        c->r->duplicates++;
    return rc < 0 ? rc : 0;
}

static int read_domains(struct ctx *c, const char *dir, uint16_t cat)
{
    char path[PATH_MAX + 16], *buf, host[CATDB_HOST_MAX];
    struct lines l;
    const char *s, *why;
    size_t n;
    int rc = 0;
    snprintf(path, sizeof path, "%s/domains", dir);
    if (!read_lines(c, path, &buf, &l))
        return 0;
    while (rc == 0 && next_line(&l, &s, &n)) {
        int r = catdb_parse_domain_line(s, n, host, sizeof host, &why);
        if (r < 0)
            diag(c, path, l.no, why);
        else if (r > 0)
            rc = add_result(c, cdb_builder_add_domain(c->b, host, strlen(host), cat));
    }
    free(buf);
    return rc;
}

static int read_urls(struct ctx *c, const char *dir, uint16_t cat)
{
    char path[PATH_MAX + 16], *buf, host[CATDB_HOST_MAX], upath[CDB_URL_PREFIX_MAX];
    struct lines l;
    const char *s, *why;
    size_t n;
    int rc = 0;
    snprintf(path, sizeof path, "%s/urls", dir);
    if (!read_lines(c, path, &buf, &l))
        return 0;
    while (rc == 0 && next_line(&l, &s, &n)) {
        int r = catdb_parse_url_line(s, n, host, sizeof host, upath, sizeof upath, &why);
        if (r < 0)
            diag(c, path, l.no, why);
        else if (r > 0)
            rc = add_result(c, cdb_builder_add_url(c->b, host, strlen(host), upath, strlen(upath), cat));
    }
    free(buf);
    return rc;
}

/* Expressions are compiled here too, so a bad one is reported with its
 * line and never reaches the file (where it would make the reader refuse it). */
static int read_exprs(struct ctx *c, const char *dir, uint16_t cat)
{
    char path[PATH_MAX + 16], *buf, pat[4096];
    struct lines l;
    const char *s;
    size_t n;
    int rc = 0;
    snprintf(path, sizeof path, "%s/expressions", dir);
    if (!read_lines(c, path, &buf, &l))
        return 0;
    while (rc == 0 && next_line(&l, &s, &n)) {
        while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n == 0 || s[0] == '#')
            continue;
        if (n >= sizeof pat || memchr(s, '\0', n)) {
            diag(c, path, l.no, "expression too long or holds a NUL byte");
            continue;
        }
        memcpy(pat, s, n);
        pat[n] = '\0';
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, n, PCRE2_CASELESS, &ec, &eo, NULL);
        if (!re) {
            char msg[256], why[320];
            pcre2_get_error_message(ec, (PCRE2_UCHAR *)msg, sizeof msg);
            snprintf(why, sizeof why, "bad regular expression at offset %zu: %s", (size_t)eo, msg);
            diag(c, path, l.no, why);
            continue;
        }
        pcre2_code_free(re);
        rc = add_result(c, cdb_builder_add_expr(c->b, pat, cat));
    }
    free(buf);
    return rc;
}


/* ---- global_usage: "NAME: cat" starts a block; "NAME XX: text" and
 * "DESC XX: text" give the display name and description in language xx ---- */

static int usage_key(struct sv line, const char *key, char *lang, size_t lcap, struct sv *val)
{
    size_t kn = strlen(key);
    if (line.n <= kn || memcmp(line.p, key, kn) != 0)
        return 0;
    const char *colon = memchr(line.p, ':', line.n);
    if (!colon)
        return 0;
    struct sv l = sv_trim(sv_make(line.p + kn, (size_t)(colon - line.p) - kn));
    if (!sv_copy(lang, lcap, l))
        return 0;
    util_lower(lang);
    *val = sv_trim(sv_make(colon + 1, line.n - (size_t)(colon + 1 - line.p)));
    return 1;
}

static int read_usage(struct ctx *c, const char *root)
{
    char path[PATH_MAX + 16], *buf, lang[16], text[1024];
    struct lines l;
    const char *s;
    size_t n;
    int cur = -1, rc = 0;
    snprintf(path, sizeof path, "%s/global_usage", root);
    if (!read_lines(c, path, &buf, &l))
        return 0;
    while (rc == 0 && next_line(&l, &s, &n)) {
        struct sv line = sv_make(s, n), val;
        while (line.n && (line.p[line.n - 1] == '\r'))
            line.n--;
        if (line.n == 0 || line.p[0] == '#')
            continue;
        if (usage_key(line, "NAME", lang, sizeof lang, &val) && lang[0] == '\0') {
            sv_copy(text, sizeof text, val);
            cur = cdb_builder_find_category(c->b, text);
            if (cur < 0)
                for (size_t i = 0; c->plan && i < c->plan->naliases; i++)
                    if (strcmp(c->plan->aliases[i].name, text) == 0)
                        cur = cdb_builder_find_category(c->b, c->plan->aliases[i].target);
        } else if (cur >= 0 && usage_key(line, "NAME ", lang, sizeof lang, &val) && lang[0]) {
            sv_copy(text, sizeof text, val);
            rc = cdb_builder_set_display(c->b, (uint16_t)cur, lang, text, NULL);
        } else if (cur >= 0 && usage_key(line, "DESC ", lang, sizeof lang, &val) && lang[0]) {
            sv_copy(text, sizeof text, val);
            rc = cdb_builder_set_display(c->b, (uint16_t)cur, lang, NULL, text);
        }
    }
    free(buf);
    return rc;
}

/* ---- orchestration ---- */

static int read_category(struct ctx *c, const struct plan *p, size_t first, size_t end, uint16_t id)
{
    int rc = 0;
    uint64_t bad0 = c->r->bad_lines;
    for (size_t i = first; rc == 0 && i < end; i++) {
        rc = read_domains(c, p->cats[i].dir, id);
        if (rc == 0)
            rc = read_urls(c, p->cats[i].dir, id);
        if (rc == 0)
            rc = read_exprs(c, p->cats[i].dir, id);
    }
    if (rc == 0 && c->o->progress) {
        uint64_t d, u;
        uint32_t e;
        cdb_builder_category_counts(c->b, id, &d, &u, &e);
        fprintf(c->o->progress, "  %-26s %9llu domains %7llu urls %3u expressions", p->cats[first].name,
                (unsigned long long)d, (unsigned long long)u, e);
        if (c->r->bad_lines > bad0)
            fprintf(c->o->progress, "  (%llu bad lines)", (unsigned long long)(c->r->bad_lines - bad0));
        fputc('\n', c->o->progress);
    }
    return rc;
}

static int add_aliases(struct ctx *c, const struct plan *p)
{
    for (size_t i = 0; i < p->naliases; i++) {
        const struct plan_alias *a = &p->aliases[i];
        int id = cdb_builder_find_category(c->b, a->target);
        if (cdb_builder_find_category(c->b, a->name) >= 0)
            continue;                     /* a real folder of that name wins */
        if (id < 0) {
            diag(c, a->name, 0, "alias of a category that does not exist");
            continue;
        }
        int dup = 0;
        for (size_t j = 0; j < i; j++)
            dup |= strcmp(p->aliases[j].name, a->name) == 0;
        if (!dup && cdb_builder_add_alias(c->b, a->name, (uint16_t)id) < 0)
            return -ENOMEM;
        if (!dup && c->o->progress)
            fprintf(c->o->progress, "  %-26s alias of %s\n", a->name, a->target);
    }
    return 0;
}

static int compile_plan(struct ctx *c, struct plan *p, const char *const *dirs, size_t ndirs)
{
    int rc = 0;
    if (p->ncats)
        qsort(p->cats, p->ncats, sizeof *p->cats, cmp_plan_cat);  /* ids = name order */
    for (size_t i = 0; rc >= 0 && i < p->ncats; i++)
        rc = cdb_builder_add_category(c->b, p->cats[i].name);
    for (size_t i = 0; rc >= 0 && i < p->ncats;) {
        size_t j = i;
        while (j < p->ncats && strcmp(p->cats[j].name, p->cats[i].name) == 0)
            j++;
        rc = read_category(c, p, i, j, (uint16_t)cdb_builder_find_category(c->b, p->cats[i].name));
        i = j;
    }
    if (rc >= 0)
        rc = add_aliases(c, p);
    for (size_t i = 0; rc >= 0 && i < ndirs; i++)
        rc = read_usage(c, dirs[i]);
    return rc < 0 ? rc : 0;
}

static int write_db(struct ctx *c, const char *out_path, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int64_t when = c->o->build_time ? c->o->build_time : (int64_t)time(NULL);
    int rc = cdb_builder_serialize(c->b, when, &buf, &len, err, errlen);
    if (rc == 0)
        rc = util_write_file_atomic(out_path, buf, len, 0644, err, errlen);
    free(buf);
    c->r->file_size = rc == 0 ? len : 0;
    return rc;
}

int catdb_compile(const char *const *dirs, size_t ndirs, const char *out_path, const struct catdb_compile_opts *opts,
                  struct catdb_compile_result *res, char *err, size_t errlen)
{
    struct catdb_compile_opts none;
    struct catdb_compile_result local;
    struct plan plan;
    memset(&none, 0, sizeof none);
    memset(&plan, 0, sizeof plan);
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!opts)
        opts = &none;
    uint64_t t0 = util_mono_us();
    struct ctx c = { cdb_builder_new(), opts, res, opts->max_diag ? opts->max_diag : 1000, &plan };
    int rc = c.b ? 0 : util_err(err, errlen, -ENOMEM, "out of memory");
    if (rc == 0 && ndirs == 0)
        rc = util_err(err, errlen, -EINVAL, "no list folder given");
    for (size_t i = 0; rc == 0 && i < ndirs; i++)
        rc = scan_root(&plan, dirs[i], err, errlen);
    if (rc == 0 && (rc = compile_plan(&c, &plan, dirs, ndirs)) < 0)
        rc = util_err(err, errlen, rc, "compiling the lists failed: %s", strerror(-rc));
    if (rc == 0) {
        struct cdb_build_counts k;
        cdb_builder_counts(c.b, &k);
        res->categories = k.categories;
        res->aliases = k.aliases;
        res->keys = k.keys;
        res->expressions = k.expressions;
        res->domains = k.domains;
        res->urls = k.urls;
        rc = write_db(&c, out_path, err, errlen);
    }
    res->seconds = (double)(util_mono_us() - t0) / 1e6;
    cdb_builder_free(c.b);
    free(plan.cats);
    free(plan.aliases);
    return rc;
}
