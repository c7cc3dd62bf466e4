/* compat catalog: loading and validating catalog files, lookups. See compat.h.
 * Strings point into the parsed JSON documents, which the catalog keeps alive;
 * each entry owns its string vectors. */
#include "compat/compat.h"

#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Generated at build time from data/compat.json (see CMakeLists.txt). */
extern const unsigned char compat_shipped_json[];
extern const size_t compat_shipped_json_len;

struct compat_catalog {
    struct compat_entry *e;
    size_t n, cap;
    json_t **docs;          /* kept alive: entries point into them */
    size_t ndocs;
};

/* Where in which file we are, for error messages. */
struct ctx {
    const char *origin;
    size_t idx;
    const char *id;
    char *err;
    size_t errlen;
};

static int bad(struct ctx *x, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct ctx *x, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (x->id)
        return util_err(x->err, x->errlen, -EINVAL, "%s: entries[%zu] (id \"%.64s\"): field `%s`: %s",
                        x->origin, x->idx, x->id, field, msg);
    return util_err(x->err, x->errlen, -EINVAL, "%s: entries[%zu]: field `%s`: %s",
                    x->origin, x->idx, field, msg);
}

static const char *type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

enum kind { K_TEXT, K_NAME };

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._*:/+[]-", c)) || c == '\0')
            return false;
    }
    return true;
}

/* Checks one string value of the given kind. */
static int check_str(struct ctx *x, json_t *v, const char *field, enum kind k, const char **out)
{
    if (!json_is_string(v))
        return bad(x, field, "expected a string, got %s", type_name(v));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strlen(s) != n)
        return bad(x, field, "contains a NUL character");
    if (k == K_TEXT && (n == 0 || n > 1024))
        return bad(x, field, "expected a non-empty text of at most 1024 bytes");
    if (k == K_NAME && !name_ok(s, n))
        return bad(x, field, "expected a host, IP, certificate, process or package name "
                   "(letters, digits, . _ * : / + [ ] -), got \"%.80s\"", s);
    *out = s;
    return 0;
}

static int get_str(struct ctx *x, json_t *obj, const char *prefix, const char *key,
                   enum kind k, bool required, const char **out)
{
    char field[128];
    snprintf(field, sizeof field, "%s%s", prefix, key);
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return required ? bad(x, field, "missing") : 0;
    return check_str(x, v, field, k, out);
}

static int get_strs(struct ctx *x, json_t *obj, const char *prefix, const char *key,
                    enum kind k, size_t min, bool required, struct compat_strs *out)
{
    char field[160];
    snprintf(field, sizeof field, "%s%s", prefix, key);
    out->v = NULL;
    out->n = 0;
    json_t *arr = json_object_get(obj, key);
    if (!arr)
        return required ? bad(x, field, "missing") : 0;
    if (!json_is_array(arr))
        return bad(x, field, "expected an array, got %s", type_name(arr));
    size_t n = json_array_size(arr);
    if (n < min)
        return bad(x, field, "expected at least %zu item(s)", min);
    if (n > 256)
        return bad(x, field, "too many items (%zu, at most 256)", n);
    if (n && !(out->v = calloc(n, sizeof *out->v)))
        return util_err(x->err, x->errlen, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char f[192];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        int rc = check_str(x, json_array_get(arr, i), f, k, &out->v[i]);
        if (rc < 0)
            return rc;   /* out->v is freed with the entry */
        out->n = i + 1;
    }
    return 0;
}

/* Refuses keys outside `allowed` (a NULL-terminated list): catches typos
 * such as "exclude_host" that would otherwise silently do nothing. */
static int check_keys(struct ctx *x, json_t *obj, const char *prefix, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(key, allowed[i]);
        if (!ok) {
            char field[160];
            snprintf(field, sizeof field, "%s%.80s", prefix, key);
            return bad(x, field, "unknown field");
        }
    }
    return 0;
}

static int get_obj(struct ctx *x, json_t *parent, const char *key, json_t **out)
{
    *out = json_object_get(parent, key);
    if (!*out)
        return bad(x, key, "missing");
    if (!json_is_object(*out))
        return bad(x, key, "expected an object, got %s", type_name(*out));
    return 0;
}

static int get_ja_en(struct ctx *x, json_t *e, const char *key, struct compat_ja_en *out)
{
    static const char *const keys[] = { "ja", "en", NULL };
    json_t *o;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.", key);
    int rc = get_obj(x, e, key, &o);
    if (rc == 0) rc = check_keys(x, o, prefix, keys);
    if (rc == 0) rc = get_str(x, o, prefix, "ja", K_TEXT, true, &out->ja);
    if (rc == 0) rc = get_str(x, o, prefix, "en", K_TEXT, true, &out->en);
    return rc;
}

static void free_entry(struct compat_entry *e)
{
    for (size_t i = 0; i < e->nworkarounds; i++) {
        struct compat_workaround *w = &e->workarounds[i];
        free(w->exclude_hosts.v);
        free(w->disabled_apps.v);
        free(w->steps_ja.v);
        free(w->steps_en.v);
    }
    free(e->workarounds);
    free(e->condition_order.v);
    free(e->windows_processes.v);
    free(e->linux_processes.v);
    free(e->debian_packages.v);
    free(e->uncertain.v);
    memset(e, 0, sizeof *e);
}

static int parse_steps(struct ctx *x, json_t *w, const char *prefix, struct compat_workaround *out)
{
    static const char *const keys[] = { "ja", "en", NULL };
    json_t *st = json_object_get(w, "steps");
    if (!st)
        return 0;
    char p[96];
    snprintf(p, sizeof p, "%ssteps", prefix);
    if (!json_is_object(st))
        return bad(x, p, "expected an object {\"ja\": [...], \"en\": [...]}, got %s", type_name(st));
    snprintf(p, sizeof p, "%ssteps.", prefix);
    int rc = check_keys(x, st, p, keys);
    if (rc == 0) rc = get_strs(x, st, p, "ja", K_TEXT, 1, true, &out->steps_ja);
    if (rc == 0) rc = get_strs(x, st, p, "en", K_TEXT, 1, true, &out->steps_en);
    return rc;
}

static int parse_workaround(struct ctx *x, json_t *w, size_t i, struct compat_workaround *out)
{
    static const char *const keys[] = { "exclude_hosts", "disabled_apps",
                                        "exclude_hosts_site_specific", "steps", NULL };
    char prefix[64];
    snprintf(prefix, sizeof prefix, "workarounds[%zu].", i);
    if (!json_is_object(w)) {
        snprintf(prefix, sizeof prefix, "workarounds[%zu]", i);
        return bad(x, prefix, "expected an object, got %s", type_name(w));
    }
    int rc = check_keys(x, w, prefix, keys);
    if (rc == 0) rc = get_strs(x, w, prefix, "exclude_hosts", K_NAME, 1, false, &out->exclude_hosts);
    if (rc == 0) rc = get_strs(x, w, prefix, "disabled_apps", K_NAME, 1, false, &out->disabled_apps);
    if (rc == 0) rc = get_str(x, w, prefix, "exclude_hosts_site_specific", K_TEXT, false,
                              &out->site_specific);
    if (rc == 0) rc = parse_steps(x, w, prefix, out);
    if (rc == 0 && !out->exclude_hosts.n && !out->disabled_apps.n && !out->site_specific &&
        !out->steps_ja.n) {
        snprintf(prefix, sizeof prefix, "workarounds[%zu]", i);
        return bad(x, prefix, "names nothing to do (needs exclude_hosts, disabled_apps, "
                   "exclude_hosts_site_specific or steps)");
    }
    return rc;
}

static int parse_workarounds(struct ctx *x, json_t *e, struct compat_entry *out)
{
    json_t *arr = json_object_get(e, "workarounds");
    if (!arr)
        return bad(x, "workarounds", "missing");
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 64)
        return bad(x, "workarounds", "expected an array of 1 to 64 workarounds");
    size_t n = json_array_size(arr);
    out->workarounds = calloc(n, sizeof *out->workarounds);
    if (!out->workarounds)
        return util_err(x->err, x->errlen, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        out->nworkarounds = i + 1;
        int rc = parse_workaround(x, json_array_get(arr, i), i, &out->workarounds[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_condition(struct ctx *x, json_t *e, struct compat_entry *out)
{
    static const char *const keys[] = { "kind", "order", "ja", "en", NULL };
    json_t *c;
    int rc = get_obj(x, e, "condition", &c);
    if (rc == 0) rc = check_keys(x, c, "condition.", keys);
    if (rc == 0) rc = get_str(x, c, "condition.", "kind", K_TEXT, true, &out->condition_kind);
    if (rc < 0)
        return rc;
    bool order = !strcmp(out->condition_kind, "install_order") ||
                 !strcmp(out->condition_kind, "install_order_or_coexistence");
    if (!order && strcmp(out->condition_kind, "coexistence") != 0)
        return bad(x, "condition.kind", "expected coexistence, install_order or "
                   "install_order_or_coexistence, got \"%.40s\"", out->condition_kind);
    rc = get_strs(x, c, "condition.", "order", K_TEXT, 2, order, &out->condition_order);
    if (rc == 0) rc = get_str(x, c, "condition.", "ja", K_TEXT, true, &out->condition.ja);
    if (rc == 0) rc = get_str(x, c, "condition.", "en", K_TEXT, true, &out->condition.en);
    return rc;
}

static int parse_detect(struct ctx *x, json_t *e, struct compat_entry *out)
{
    static const char *const keys[] = { "windows_processes", "linux_processes",
                                        "debian_packages", NULL };
    json_t *d;
    int rc = get_obj(x, e, "detect", &d);
    if (rc == 0) rc = check_keys(x, d, "detect.", keys);
    if (rc == 0) rc = get_strs(x, d, "detect.", "windows_processes", K_NAME, 0, true,
                               &out->windows_processes);
    if (rc == 0) rc = get_strs(x, d, "detect.", "linux_processes", K_NAME, 0, true,
                               &out->linux_processes);
    if (rc == 0) rc = get_strs(x, d, "detect.", "debian_packages", K_NAME, 0, true,
                               &out->debian_packages);
    return rc;
}

static bool date_ok(const char *s)
{
    static const char shape[] = "dddd-dd-dd";
    if (strlen(s) != sizeof shape - 1)
        return false;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != '-')
            return false;
    return true;
}

static int parse_source(struct ctx *x, json_t *e, struct compat_entry *out)
{
    static const char *const keys[] = { "title", "publisher", "date", "section", "page", NULL };
    json_t *s;
    int rc = get_obj(x, e, "source", &s);
    if (rc == 0) rc = check_keys(x, s, "source.", keys);
    if (rc == 0) rc = get_str(x, s, "source.", "title", K_TEXT, true, &out->source_title);
    if (rc == 0) rc = get_str(x, s, "source.", "publisher", K_TEXT, false, &out->source_publisher);
    if (rc == 0) rc = get_str(x, s, "source.", "date", K_TEXT, true, &out->source_date);
    if (rc == 0 && !date_ok(out->source_date))
        return bad(x, "source.date", "expected YYYY-MM-DD, got \"%.40s\"", out->source_date);
    if (rc == 0) rc = get_str(x, s, "source.", "section", K_TEXT, true, &out->source_section);
    json_t *page = json_object_get(s, "page");
    if (rc == 0 && page) {
        if (!json_is_integer(page) || json_integer_value(page) < 1 ||
            json_integer_value(page) > 100000)
            return bad(x, "source.page", "expected a page number");
        out->source_page = (int)json_integer_value(page);
    }
    return rc;
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || *s == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static int parse_entry(struct ctx *x, json_t *e, struct compat_entry *out)
{
    static const char *const keys[] = { "id", "vendor", "product", "product_as_in_note",
        "versions", "symptom", "condition", "workarounds", "detect", "source", "uncertain", NULL };
    if (!json_is_object(e))
        return bad(x, "(entry)", "expected an object, got %s", type_name(e));
    int rc = get_str(x, e, "", "id", K_TEXT, true, &out->id);
    if (rc < 0)
        return rc;
    if (!id_ok(out->id))
        return bad(x, "id", "expected lower-case letters, digits and '-' (at most 64), got \"%.64s\"",
                   out->id);
    x->id = out->id;
    rc = check_keys(x, e, "", keys);
    if (rc == 0) rc = get_str(x, e, "", "vendor", K_TEXT, true, &out->vendor);
    if (rc == 0) rc = get_str(x, e, "", "product", K_TEXT, true, &out->product);
    if (rc == 0) rc = get_str(x, e, "", "product_as_in_note", K_TEXT, false, &out->product_as_in_note);
    if (rc == 0) rc = get_str(x, e, "", "versions", K_TEXT, true, &out->versions);
    if (rc == 0) rc = get_ja_en(x, e, "symptom", &out->symptom);
    if (rc == 0) rc = parse_condition(x, e, out);
    if (rc == 0) rc = parse_workarounds(x, e, out);
    if (rc == 0) rc = parse_detect(x, e, out);
    if (rc == 0) rc = parse_source(x, e, out);
    if (rc == 0) rc = get_strs(x, e, "", "uncertain", K_TEXT, 0, true, &out->uncertain);
    return rc;
}

/* Parses and validates a whole document into a fresh entry array. */
static int parse_doc(json_t *root, struct ctx *x, struct compat_entry **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (!json_is_object(root))
        return util_err(x->err, x->errlen, -EINVAL, "%s: expected a JSON object with \"entries\"",
                        x->origin);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "catalog") && strcmp(key, "version") && strcmp(key, "entries"))
            return util_err(x->err, x->errlen, -EINVAL, "%s: unknown top-level field `%.80s`",
                            x->origin, key);
    }
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        return util_err(x->err, x->errlen, -EINVAL, "%s: field `version`: expected 1", x->origin);
    json_t *cat = json_object_get(root, "catalog");
    if (cat && !json_is_string(cat))
        return util_err(x->err, x->errlen, -EINVAL, "%s: field `catalog`: expected a string",
                        x->origin);
    json_t *arr = json_object_get(root, "entries");
    if (!json_is_array(arr))
        return util_err(x->err, x->errlen, -EINVAL, "%s: field `entries`: expected an array",
                        x->origin);
    size_t n = json_array_size(arr);
    if (n > COMPAT_ENTRIES_MAX)
        return util_err(x->err, x->errlen, -EINVAL, "%s: too many entries (%zu, at most %u)",
                        x->origin, n, COMPAT_ENTRIES_MAX);
    struct compat_entry *v2 = n ? calloc(n, sizeof *v2) : NULL;
    if (n && !v2)
        return util_err(x->err, x->errlen, -ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        x->idx = i;
        x->id = NULL;
        rc = parse_entry(x, json_array_get(arr, i), &v2[i]);
        for (size_t j = 0; j < i && rc == 0; j++)
            if (!strcmp(v2[j].id, v2[i].id))
                rc = bad(x, "id", "duplicate id (also entries[%zu])", j);
    }
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free_entry(&v2[i]);
        free(v2);
        return rc;
    }
    *out = v2;
    *nout = n;
    return 0;
}

struct compat_catalog *compat_catalog_new(void)
{
    return calloc(1, sizeof(struct compat_catalog));
}

void compat_catalog_free(struct compat_catalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free_entry(&c->e[i]);
    free(c->e);
    for (size_t i = 0; i < c->ndocs; i++)
        json_decref(c->docs[i]);
    free(c->docs);
    free(c);
}

/* Reserves room for `more` entries and one more document. */
static int reserve(struct compat_catalog *c, size_t more)
{
    if (c->n + more > c->cap) {
        size_t cap = c->n + more + 16;
        struct compat_entry *e = realloc(c->e, cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        c->e = e;
        c->cap = cap;
    }
    json_t **d = realloc(c->docs, (c->ndocs + 1) * sizeof *d);
    if (!d)
        return -ENOMEM;
    c->docs = d;
    return 0;
}

int compat_catalog_add_text(struct compat_catalog *c, const char *text, size_t len,
                            const char *origin, char *err, size_t errlen)
{
    if (!c || !text)
        return util_err(err, errlen, -EINVAL, "no catalog");
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return util_err(err, errlen, -EINVAL, "%s:%d: not valid JSON: %s", origin, je.line, je.text);
    struct ctx x = { origin, 0, NULL, err, errlen };
    struct compat_entry *v = NULL;
    size_t n = 0;
    int rc = parse_doc(root, &x, &v, &n);
    /* The origin must outlive the call: keep a copy inside the document
     * (added after validation, which refuses unknown top-level fields). */
    const char *kept_origin = NULL;
    json_t *o = rc == 0 ? json_string(origin) : NULL;
    if (rc == 0 && (!o || json_object_set_new(root, "\x01origin", o) < 0))
        rc = util_err(err, errlen, -ENOMEM, "out of memory");
    else if (rc == 0)
        kept_origin = json_string_value(o);
    if (rc == 0 && reserve(c, n) < 0)
        rc = util_err(err, errlen, -ENOMEM, "out of memory");
    if (rc < 0) {
        if (v) {
            for (size_t i = 0; i < n; i++)
                free_entry(&v[i]);
            free(v);
        }
        json_decref(root);
        return rc;
    }
    c->docs[c->ndocs++] = root;
    for (size_t i = 0; i < n; i++) {
        v[i].origin = kept_origin;
        struct compat_entry *old = (struct compat_entry *)compat_catalog_find(c, v[i].id);
        if (old) {
            v[i].replaced_origin = old->origin;
            free_entry(old);
            *old = v[i];
        } else {
            c->e[c->n++] = v[i];
        }
    }
    free(v);
    return (int)n;
}

int compat_catalog_add_file(struct compat_catalog *c, const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc = util_read_file(path, COMPAT_FILE_MAX, &text, &len, err, errlen);
    if (rc < 0)
        return rc;
    rc = compat_catalog_add_text(c, text, len, path, err, errlen);
    free(text);
    return rc;
}

int compat_catalog_load_shipped(struct compat_catalog **out, char *err, size_t errlen)
{
    *out = NULL;
    struct compat_catalog *c = compat_catalog_new();
    if (!c)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    const char *env = getenv("SHOJI_COMPAT_CATALOG");
    int rc;
    if (env && *env)
        rc = compat_catalog_add_file(c, env, err, errlen);
    else
        rc = compat_catalog_add_text(c, (const char *)compat_shipped_json, compat_shipped_json_len,
                                     "shipped", err, errlen);
    if (rc < 0) {
        compat_catalog_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

size_t compat_catalog_count(const struct compat_catalog *c) { return c ? c->n : 0; }

const struct compat_entry *compat_catalog_get(const struct compat_catalog *c, size_t i)
{
    return c && i < c->n ? &c->e[i] : NULL;
}

const struct compat_entry *compat_catalog_find(const struct compat_catalog *c, const char *id)
{
    for (size_t i = 0; c && id && i < c->n; i++)
        if (!strcmp(c->e[i].id, id))
            return &c->e[i];
    return NULL;
}

static char lc(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

bool compat_glob_match(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = ++p;
            resume = s;
        } else if (*p && lc(*p) == lc(*s)) {
            p++;
            s++;
        } else if (star) {
            p = star;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

bool compat_app_eq(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 4 && !strcasecmp(a + na - 4, ".exe"))
        na -= 4;
    if (nb > 4 && !strcasecmp(b + nb - 4, ".exe"))
        nb -= 4;
    return na == nb && !strncasecmp(a, b, na);
}

const struct compat_entry *compat_match_host(const struct compat_catalog *c, const char *host)
{
    if (!c || !host || !*host)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        for (size_t w = 0; w < c->e[i].nworkarounds; w++) {
            const struct compat_strs *h = &c->e[i].workarounds[w].exclude_hosts;
            for (size_t k = 0; k < h->n; k++)
                if (compat_glob_match(h->v[k], host))
                    return &c->e[i];
        }
    return NULL;
}

static bool strs_has_app(const struct compat_strs *s, const char *app)
{
    for (size_t k = 0; k < s->n; k++)
        if (compat_app_eq(s->v[k], app))
            return true;
    return false;
}

const struct compat_entry *compat_match_app(const struct compat_catalog *c, const char *app)
{
    if (!c || !app || !*app)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        for (size_t w = 0; w < c->e[i].nworkarounds; w++)
            if (strs_has_app(&c->e[i].workarounds[w].disabled_apps, app))
                return &c->e[i];
    for (size_t i = 0; i < c->n; i++)
        if (strs_has_app(&c->e[i].windows_processes, app) ||
            strs_has_app(&c->e[i].linux_processes, app))
            return &c->e[i];
    return NULL;
}
