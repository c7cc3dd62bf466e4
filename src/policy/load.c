/* load: the policy file (JSON) -> struct policy. Strict: an unknown key, a
 * wrong type or a bad pattern refuses the whole file with
 * "FILE:LINE: key `path`: what was wrong (and what was expected)".
 * docs/POLICY.md documents every key parsed here. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/load_int.h"
#include "util/util.h"

#define POLICY_FILE_MAX (16u << 20)

int lctx_fail(struct lctx *c, const char *path, const char *fmt, ...)
{
    char msg[UTIL_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = pol_json_line(c->text, c->len, path);
    return util_err(c->err, c->errlen, -EINVAL, "%s:%d: key `%s`: %s", c->origin, line, path, msg);
}

void lctx_path(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

const char *lctx_got(const json_t *v, char *buf, size_t cap)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "got an object";
    case JSON_ARRAY: return "got a list";
    case JSON_STRING: snprintf(buf, cap, "got \"%.60s\"", json_string_value(v)); return buf;
    case JSON_INTEGER: snprintf(buf, cap, "got %lld", (long long)json_integer_value(v)); return buf;
    case JSON_REAL: snprintf(buf, cap, "got %g", json_real_value(v)); return buf;
    case JSON_TRUE: return "got true";
    case JSON_FALSE: return "got false";
    case JSON_NULL: return "got null";
    }
    return "got something else";
}

int lctx_expect(struct lctx *c, const char *path, const json_t *v, json_type t, const char *what)
{
    if (json_typeof(v) == t || (t == JSON_TRUE && json_is_boolean(v)))
        return 0;
    char g[96];
    return lctx_fail(c, path, "expected %s, %s", what, lctx_got(v, g, sizeof g));
}

int lctx_check_keys(struct lctx *c, const char *path, const json_t *obj, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            ok = ok || strcmp(k, allowed[i]) == 0;
        if (ok)
            continue;
        char full[PATH_BUF], list[400] = "";
        lctx_path(full, sizeof full, "%s%s%s", path, *path ? "." : "", k);
        for (size_t i = 0; allowed[i]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", allowed[i]);
        const char *dym = pol_did_you_mean(k, allowed, SIZE_MAX);
        if (dym)
            return lctx_fail(c, full, "unknown key (did you mean `%s`?); expected one of: %s", dym, list);
        return lctx_fail(c, full, "unknown key; expected one of: %s", list);
    }
    return 0;
}

/* A list of patterns into a new pat_set. */
int lctx_patterns(struct lctx *c, const char *path, const json_t *arr, unsigned flags,
                  struct pat_set **out)
{
    if (lctx_expect(c, path, arr, JSON_ARRAY, "a list of patterns") < 0)
        return -EINVAL;
    struct pat_set *s = pat_set_new(flags);
    if (!s)
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        char ip[PATH_BUF], perr[UTIL_ERRLEN];
        lctx_path(ip, sizeof ip, "%s[%zu]", path, i);
        if (lctx_expect(c, ip, v, JSON_STRING, "a pattern string") < 0 ||
            (pat_set_add(s, json_string_value(v), (int)i, perr, sizeof perr) < 0 &&
             lctx_fail(c, ip, "%s", perr) < 0)) {
            pat_set_free(s);
            return -EINVAL;
        }
    }
    *out = s;
    return 0;
}

static int parse_default_action(struct lctx *c, struct policy *p, const json_t *v)
{
    if (lctx_expect(c, "default_action", v, JSON_STRING, "\"allow\" or \"block\"") < 0)
        return -EINVAL;
    const char *s = json_string_value(v);
    if (strcmp(s, "allow") && strcmp(s, "block"))
        return lctx_fail(c, "default_action", "expected \"allow\" or \"block\", got \"%.60s\"", s);
    p->default_block = strcmp(s, "block") == 0;
    p->default_allow_explicit = true;
    return 0;
}

static char *join_path(const char *base, const char *rel)
{
    char buf[PATH_MAX];
    if (rel[0] == '/' || !base || !*base)
        snprintf(buf, sizeof buf, "%s", rel);
    else if (snprintf(buf, sizeof buf, "%s/%s", base, rel) >= (int)sizeof buf)
        return NULL;
    return strdup(buf);
}

static int parse_category_db(struct lctx *c, struct policy *p, const json_t *v)
{
    if (lctx_expect(c, "category_db", v, JSON_STRING, "a file path") < 0)
        return -EINVAL;
    if (!*json_string_value(v))
        return lctx_fail(c, "category_db", "expected a file path, got an empty string");
    p->db_path = join_path(c->base_dir, json_string_value(v));
    if (!p->db_path)
        return lctx_fail(c, "category_db", "path too long");
    if (!c->base_dir)
        return 0;   /* validation only: the caller has no file system context */
    char derr[UTIL_ERRLEN];
    if (catdb_open(p->db_path, &p->db, derr, sizeof derr) < 0)
        return lctx_fail(c, "category_db", "cannot open the category database: %s", derr);
    return 0;
}

static int parse_lists(struct lctx *c, struct policy *p, const json_t *root)
{
    static const char *const names[] = { "bypass", "allow", "view_only", "block" };
    struct pat_set **dst[] = { &p->bypass, &p->allow, &p->view_only, &p->block };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(names); i++) {
        json_t *v = json_object_get(root, names[i]);
        if (v && lctx_patterns(c, names[i], v, PAT_F_URL, dst[i]) < 0)
            return -EINVAL;
    }
    return 0;
}

static int parse_decode(struct lctx *c, struct policy *p, const json_t *v)
{
    static const char *const keys[] = { "enabled", "exclude_hosts", "skip_categories", NULL };
    if (lctx_expect(c, "decode", v, JSON_OBJECT, "an object {\"enabled\", \"exclude_hosts\", \"skip_categories\"}") < 0 ||
        lctx_check_keys(c, "decode", v, keys) < 0)
        return -EINVAL;
    json_t *e = json_object_get(v, "enabled");
    if (e) {
        if (lctx_expect(c, "decode.enabled", e, JSON_TRUE, "true or false") < 0)
            return -EINVAL;
        p->decode_enabled = json_is_true(e);
    }
    json_t *x = json_object_get(v, "exclude_hosts");
    if (x && lctx_patterns(c, "decode.exclude_hosts", x, PAT_F_CERT, &p->exclude) < 0)
        return -EINVAL;
    json_t *s = json_object_get(v, "skip_categories");
    if (s && lctx_category_list(c, "decode.skip_categories", s, &p->skip_cats, &p->nskip) < 0)
        return -EINVAL;
    if (!(p->skip_ids = pol_cat_ids(p->db, p->skip_cats, p->nskip)))
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    return 0;
}

static int add_app(struct lctx *c, struct policy *p, const char *path, const char *name, int index)
{
    char norm[POL_APP_MAX];
    size_t n = pat_app_norm(name, norm, sizeof norm);
    if (n == 0)
        return lctx_fail(c, path, "expected an application name (1..%d bytes, e.g. \"NTRTSCAN\")",
                         POL_APP_MAX - 1);
    int32_t *slot;
    if (pmap_put(&p->apps, norm, n, index, &slot) < 0 ||
        (n > 15 && pmap_put(&p->apps15, norm, 15, index, &slot) < 0))
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    return 0;
}

static int add_app_hosts(struct lctx *c, struct policy *p, const char *path, const json_t *o, int index)
{
    static const char *const keys[] = { "app", "hosts", NULL };
    char sub[PATH_BUF];
    if (lctx_check_keys(c, path, o, keys) < 0)
        return -EINVAL;
    json_t *app = json_object_get(o, "app"), *hosts = json_object_get(o, "hosts");
    lctx_path(sub, sizeof sub, "%s.app", path);
    if (!app)
        return lctx_fail(c, path, "missing \"app\" (the application's process name)");
    if (lctx_expect(c, sub, app, JSON_STRING, "an application name") < 0)
        return -EINVAL;
    char norm[POL_APP_MAX];
    size_t n = pat_app_norm(json_string_value(app), norm, sizeof norm);
    if (n == 0)
        return lctx_fail(c, sub, "expected an application name, got \"%.60s\"", json_string_value(app));
    if (!hosts)
        return lctx_fail(c, path, "missing \"hosts\" (without it, list the application as a plain string)");
    lctx_path(sub, sizeof sub, "%s.hosts", path);
    struct pol_app_hosts *na = realloc(p->app_hosts, (p->napp_hosts + 1) * sizeof *na);
    if (!na)
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    p->app_hosts = na;
    struct pol_app_hosts *e = &na[p->napp_hosts];
    memset(e, 0, sizeof *e);
    e->index = index;
    e->next = -1;
    if (lctx_patterns(c, sub, hosts, 0, &e->hosts) < 0)
        return -EINVAL;
    if (pat_set_count(e->hosts) == 0) {
        pat_set_free(e->hosts);
        return lctx_fail(c, sub, "expected at least one host pattern");
    }
    e->app = strdup(json_string_value(app));
    int32_t pos = (int32_t)p->napp_hosts++, *slot;
    if (!e->app)
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    int r = pmap_put(&p->app_hosts_map, norm, n, pos, &slot);
    if (r < 0)
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    if (r == 1) {
        int32_t *link = slot;
        while (*link >= 0)
            link = &p->app_hosts[*link].next;
        *link = pos;
    }
    return 0;
}

static int parse_disabled_apps(struct lctx *c, struct policy *p, const json_t *v)
{
    if (lctx_expect(c, "disabled_apps", v, JSON_ARRAY, "a list of application names") < 0)
        return -EINVAL;
    p->app_texts = calloc(json_array_size(v) + 1, sizeof *p->app_texts);
    if (!p->app_texts)
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    p->napp_texts = json_array_size(v);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char path[PATH_BUF], g[96];
        lctx_path(path, sizeof path, "disabled_apps[%zu]", i);
        int r;
        if (json_is_string(e)) {
            p->app_texts[i] = strdup(json_string_value(e));
            r = p->app_texts[i] ? add_app(c, p, path, json_string_value(e), (int)i)
                                : util_err(c->err, c->errlen, -ENOMEM, "out of memory");
        } else if (json_is_object(e)) {
            r = add_app_hosts(c, p, path, e, (int)i);
        } else {
            r = lctx_fail(c, path, "expected an application name or {\"app\": NAME, \"hosts\": [...]}, %s",
                          lctx_got(e, g, sizeof g));
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static int parse_block_page(struct lctx *c, struct policy *p, const json_t *v)
{
    if (lctx_expect(c, "block_page", v, JSON_STRING, "a template directory path") < 0)
        return -EINVAL;
    if (!*json_string_value(v))
        return lctx_fail(c, "block_page", "expected a directory path, got an empty string");
    p->block_page_dir = join_path(c->base_dir, json_string_value(v));
    return p->block_page_dir ? 0 : lctx_fail(c, "block_page", "path too long");
}

static const char *const top_keys[] = {
    "version", "name", "description", "$schema", "default_action", "category_db",
    "categories", "bypass", "allow", "view_only", "block", "decode", "template",
    "disabled_apps", "write_restriction", "safe_search", "schedules", "auto_avoid",
    "block_page", NULL,
};

static int check_free_fields(struct lctx *c, const json_t *root)
{
    static const char *const str_keys[] = { "name", "description", "$schema" };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(str_keys); i++) {
        json_t *v = json_object_get(root, str_keys[i]);
        if (v && lctx_expect(c, str_keys[i], v, JSON_STRING, "a string") < 0)
            return -EINVAL;
    }
    json_t *v = json_object_get(root, "version");
    if (v && !json_is_string(v) && !json_is_integer(v)) {
        char g[96];
        return lctx_fail(c, "version", "expected a string or an integer, %s", lctx_got(v, g, sizeof g));
    }
    return 0;
}

static int compile(struct lctx *c, struct policy *p, const json_t *root)
{
    json_t *v;
    if (!json_is_object(root))
        return util_err(c->err, c->errlen, -EINVAL, "%s:1: the policy must be a JSON object {...}", c->origin);
    if (lctx_check_keys(c, "", root, top_keys) < 0 || check_free_fields(c, root) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "default_action")) && parse_default_action(c, p, v) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "category_db")) && parse_category_db(c, p, v) < 0)
        return -EINVAL;
    c->db = p->db;
    if (lctx_rules(c, p, root) < 0 || parse_lists(c, p, root) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "decode")) && parse_decode(c, p, v) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "disabled_apps")) && parse_disabled_apps(c, p, v) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "block_page")) && parse_block_page(c, p, v) < 0)
        return -EINVAL;
    return 0;
}

int policy_load_text(const char *text, size_t len, const char *origin, const char *base_dir,
                     struct policy **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!origin)
        origin = "policy";
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return util_err(err, errlen, -EINVAL, "%s:%d: not valid JSON: %s (column %d)", origin,
                        je.line, je.text, je.column);
    struct policy *p = pol_new();
    if (!p) {
        json_decref(root);
        return util_err(err, errlen, -ENOMEM, "out of memory");
    }
    p->path = strdup(origin);
    struct lctx c = { text, len, origin, base_dir, NULL, err, errlen };
    int r = p->path ? compile(&c, p, root) : util_err(err, errlen, -ENOMEM, "out of memory");
    json_decref(root);
    if (r < 0) {
        policy_unref(p);
        return r;
    }
    *out = p;
    return 0;
}

int policy_load_file(const char *path, struct policy **out, char *err, size_t errlen)
{
    *out = NULL;
    char *text;
    size_t len;
    int r = util_read_file(path, POLICY_FILE_MAX, &text, &len, err, errlen);
    if (r < 0)
        return r;
    char dir[PATH_MAX];
    util_strlcpy(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        util_strlcpy(dir, ".", sizeof dir);
    r = policy_load_text(text, len, path, dir, out, err, errlen);
    free(text);
    return r;
}
