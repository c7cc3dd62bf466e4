/* load_rules: the rule-bearing keys of the policy file — `template`,
 * `categories`, `schedules`, `write_restriction`, `safe_search`,
 * `auto_avoid`. docs/POLICY.md documents each. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/load_int.h"
#include "util/util.h"

static int check_category(struct lctx *c, const char *path, const char *name)
{
    if (!*name)
        return lctx_fail(c, path, "expected a category name, got an empty string");
    if (c->db && catdb_category_id(c->db, name) >= 0)
        return 0;
    for (size_t i = 0; pol_ut1_categories[i]; i++)
        if (strcmp(pol_ut1_categories[i], name) == 0)
            return 0;
    const char *dym = NULL;
    if (c->db) {   /* strict: the name must be in the database (or a UT1 name) */
        size_t n = catdb_category_count(c->db);
        const char **names = calloc(n + 1, sizeof *names);
        if (!names)
            return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            names[i] = catdb_category_name(c->db, (uint16_t)i);
        dym = pol_did_you_mean(name, names, n);
        char hint[160] = "";
        if (dym)
            snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", dym);
        free(names);
        return lctx_fail(c, path, "unknown category \"%.60s\"%s: not in the category database", name, hint);
    }
    /* No database to check against: a custom name is fine, a near miss of a
     * UT1 name is almost certainly a typo that would silently never match. */
    dym = pol_did_you_mean(name, pol_ut1_categories, SIZE_MAX);
    if (dym)
        return lctx_fail(c, path, "unknown category \"%.60s\" (did you mean \"%s\"?)", name, dym);
    return 0;
}

int lctx_category_list(struct lctx *c, const char *path, const json_t *arr, char ***out, size_t *n)
{
    if (lctx_expect(c, path, arr, JSON_ARRAY, "a list of category names") < 0)
        return -EINVAL;
    char **names = calloc(json_array_size(arr) + 1, sizeof *names);
    if (!names)
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    *out = names;
    *n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        char ip[PATH_BUF];
        lctx_path(ip, sizeof ip, "%s[%zu]", path, i);
        if (lctx_expect(c, ip, v, JSON_STRING, "a category name") < 0 ||
            check_category(c, ip, json_string_value(v)) < 0)
            return -EINVAL;
        if (!(names[(*n)++] = strdup(json_string_value(v))))
            return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    }
    return 0;
}

static int parse_action(struct lctx *c, const char *path, const json_t *v, enum pol_cat_action *a)
{
    static const char *const acts[] = { "allow", "block", "view_only", NULL };
    char g[96];
    if (!json_is_string(v))
        return lctx_fail(c, path, "expected \"allow\", \"block\" or \"view_only\", %s", lctx_got(v, g, sizeof g));
    const char *s = json_string_value(v);
    if (!strcmp(s, "allow"))
        *a = PCA_ALLOW;
    else if (!strcmp(s, "block"))
        *a = PCA_BLOCK;
    else if (!strcmp(s, "view_only"))
        *a = PCA_VIEW_ONLY;
    else {
        const char *dym = pol_did_you_mean(s, acts, SIZE_MAX);
        return lctx_fail(c, path, "expected \"allow\", \"block\" or \"view_only\", got \"%.60s\"%s%s%s", s,
                         dym ? " (did you mean \"" : "", dym ? dym : "", dym ? "\"?)" : "");
    }
    return 0;
}

static int parse_categories(struct lctx *c, const char *path, const json_t *obj,
                            struct pol_cat_rules *rules)
{
    if (lctx_expect(c, path, obj, JSON_OBJECT, "an object {\"CATEGORY\": \"allow\"|\"block\"|\"view_only\"}") < 0)
        return -EINVAL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        char kp[PATH_BUF];
        enum pol_cat_action a = PCA_NONE;
        lctx_path(kp, sizeof kp, "%s.%s", path, k);
        if (check_category(c, kp, k) < 0 || parse_action(c, kp, v, &a) < 0)
            return -EINVAL;
        if (pol_cat_rules_set(rules, k, a, false) < 0)
            return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    }
    return 0;
}

static int parse_template(struct lctx *c, struct policy *p, const json_t *v)
{
    if (lctx_expect(c, "template", v, JSON_STRING, "a template name") < 0)
        return -EINVAL;
    size_t n;
    const struct pol_template_entry *e = pol_template(json_string_value(v), &n);
    if (!e) {
        const char *dym = pol_did_you_mean(json_string_value(v), pol_template_names, SIZE_MAX);
        return lctx_fail(c, "template", "unknown template \"%.60s\"%s%s%s; expected one of: elementary, junior_high, high_school, university, enterprise",
                         json_string_value(v), dym ? " (did you mean \"" : "", dym ? dym : "", dym ? "\"?)" : "");
    }
    if (!(p->template_name = strdup(json_string_value(v))))
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (pol_cat_rules_set(&p->cats, e[i].category, e[i].action, true) < 0)
            return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    return 0;
}

/* "HH:MM" -> minutes; "24:00" allowed when `end`. */
static int parse_hhmm(const char *s, bool end)
{
    if (strlen(s) != 5 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
        s[2] != ':' || !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
        return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && (m || !end)))
        return -1;
    return h * 60 + m;
}

static int parse_days(struct lctx *c, const char *path, const json_t *v, uint8_t *days)
{
    static const char *const names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL };
    if (lctx_expect(c, path, v, JSON_ARRAY, "a list of days like [\"mon\", \"tue\"]") < 0)
        return -EINVAL;
    *days = 0;
    size_t i;
    json_t *d;
    json_array_foreach(v, i, d) {
        char dp[PATH_BUF], g[96];
        lctx_path(dp, sizeof dp, "%s[%zu]", path, i);
        int k = -1;
        for (int j = 0; json_is_string(d) && names[j]; j++)
            if (!strcmp(names[j], json_string_value(d)))
                k = j;
        if (k < 0)
            return lctx_fail(c, dp, "expected one of sun, mon, tue, wed, thu, fri, sat, %s", lctx_got(d, g, sizeof g));
        *days |= (uint8_t)(1u << k);
    }
    if (!*days)
        return lctx_fail(c, path, "expected at least one day");
    return 0;
}

static int parse_schedule(struct lctx *c, const char *path, const json_t *o, struct pol_schedule *s)
{
    static const char *const keys[] = { "name", "days", "from", "to", "categories", NULL };
    char kp[PATH_BUF];
    if (lctx_expect(c, path, o, JSON_OBJECT, "an object {\"days\", \"from\", \"to\", \"categories\"}") < 0 ||
        lctx_check_keys(c, path, o, keys) < 0)
        return -EINVAL;
    s->days = 0x7f;
    json_t *v = json_object_get(o, "days");
    lctx_path(kp, sizeof kp, "%s.days", path);
    if (v && parse_days(c, kp, v, &s->days) < 0)
        return -EINVAL;
    static const char *const ends[] = { "from", "to" };
    int *dst[] = { &s->from, &s->to };
    for (int i = 0; i < 2; i++) {
        lctx_path(kp, sizeof kp, "%s.%s", path, ends[i]);
        v = json_object_get(o, ends[i]);
        if (!v)
            return lctx_fail(c, path, "missing \"%s\" (a time \"HH:MM\")", ends[i]);
        if (!json_is_string(v) || (*dst[i] = parse_hhmm(json_string_value(v), i == 1)) < 0) {
            char g[96];
            return lctx_fail(c, kp, "expected a time \"HH:MM\" (00:00..%s), %s", i ? "24:00" : "23:59",
                             lctx_got(v, g, sizeof g));
        }
    }
    if (s->from == s->to)
        return lctx_fail(c, path, "\"from\" and \"to\" are equal: the window is empty");
    if ((v = json_object_get(o, "name")) && lctx_expect(c, path, v, JSON_STRING, "a string") < 0)
        return -EINVAL;
    lctx_path(kp, sizeof kp, "%s.categories", path);
    if (!(v = json_object_get(o, "categories")))
        return lctx_fail(c, path, "missing \"categories\" (the rules active in this window)");
    return parse_categories(c, kp, v, &s->cats);
}

static int parse_schedules(struct lctx *c, struct policy *p, const json_t *v)
{
    if (lctx_expect(c, "schedules", v, JSON_ARRAY, "a list of time windows") < 0)
        return -EINVAL;
    p->sched = calloc(json_array_size(v) + 1, sizeof *p->sched);
    if (!p->sched)
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    size_t i;
    json_t *o;
    json_array_foreach(v, i, o) {
        char path[PATH_BUF];
        lctx_path(path, sizeof path, "schedules[%zu]", i);
        p->nsched = i + 1;
        if (parse_schedule(c, path, o, &p->sched[i]) < 0)
            return -EINVAL;
    }
    return 0;
}

static int parse_safe_search(struct lctx *c, struct policy *p, const json_t *v)
{
    static const char *const keys[] = { "google", "bing", "youtube", "duckduckgo", NULL };
    if (json_is_boolean(v)) {
        p->safe_search = json_is_true(v) ? 0x1eu : 0;
        return 0;
    }
    if (lctx_expect(c, "safe_search", v, JSON_OBJECT, "true, false or {\"google\": true, ...}") < 0 ||
        lctx_check_keys(c, "safe_search", v, keys) < 0)
        return -EINVAL;
    for (int e = 0; keys[e]; e++) {
        json_t *b = json_object_get(v, keys[e]);
        char kp[PATH_BUF];
        lctx_path(kp, sizeof kp, "safe_search.%s", keys[e]);
        if (b && lctx_expect(c, kp, b, JSON_TRUE, "true or false") < 0)
            return -EINVAL;
        if (json_is_true(b))
            p->safe_search |= 1u << (POLICY_ENGINE_GOOGLE + e);
    }
    return 0;
}

/* "7d", "12h", "30m", "45s", "3600" or 3600 -> seconds; -1 if bad. */
static int64_t parse_ttl(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) > 0 && json_integer_value(v) <= 366LL * 86400 ? json_integer_value(v) : -1;
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    long long n = strtoll(s, &end, 10);
    int64_t mul = !*end ? 1 : !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60
                : !strcmp(end, "h") ? 3600 : !strcmp(end, "d") ? 86400 : -1;
    if (mul < 0 || n <= 0 || n > 366LL * 86400 || n * mul > 366LL * 86400)
        return -1;
    return n * mul;
}

static int parse_auto_avoid(struct lctx *c, struct policy *p, const json_t *v)
{
    static const char *const keys[] = { "enabled", "ttl", "scope", NULL };
    if (lctx_expect(c, "auto_avoid", v, JSON_OBJECT, "an object {\"enabled\", \"ttl\", \"scope\"}") < 0 ||
        lctx_check_keys(c, "auto_avoid", v, keys) < 0)
        return -EINVAL;
    json_t *e = json_object_get(v, "enabled");
    if (e && lctx_expect(c, "auto_avoid.enabled", e, JSON_TRUE, "true or false") < 0)
        return -EINVAL;
    if (e)
        p->auto_avoid.enabled = json_is_true(e);
    char g[96];
    if ((e = json_object_get(v, "ttl")) && (p->auto_avoid.ttl = parse_ttl(e)) < 0)
        return lctx_fail(c, "auto_avoid.ttl", "expected a duration such as \"7d\", \"12h\", \"30m\" or seconds (at most 366 days), %s",
                         lctx_got(e, g, sizeof g));
    if ((e = json_object_get(v, "scope"))) {
        const char *s = json_is_string(e) ? json_string_value(e) : "";
        if (!strcmp(s, "app+host"))
            p->auto_avoid.scope = POLICY_AVOID_APP_HOST;
        else if (!strcmp(s, "host"))
            p->auto_avoid.scope = POLICY_AVOID_HOST;
        else
            return lctx_fail(c, "auto_avoid.scope", "expected \"app+host\" or \"host\", %s", lctx_got(e, g, sizeof g));
    }
    return 0;
}

int lctx_rules(struct lctx *c, struct policy *p, const json_t *root)
{
    json_t *v;
    if ((v = json_object_get(root, "template")) && parse_template(c, p, v) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "categories")) && parse_categories(c, "categories", v, &p->cats) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "schedules")) && parse_schedules(c, p, v) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "write_restriction")) &&
        lctx_category_list(c, "write_restriction", v, &p->write_cats, &p->nwrite) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "safe_search")) && parse_safe_search(c, p, v) < 0)
        return -EINVAL;
    if ((v = json_object_get(root, "auto_avoid")) && parse_auto_avoid(c, p, v) < 0)
        return -EINVAL;
    if (pol_cat_rules_resolve(&p->cats, p->db) < 0)
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    for (size_t i = 0; i < p->nsched; i++)
        if (pol_cat_rules_resolve(&p->sched[i].cats, p->db) < 0)
            return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    if (!(p->write_ids = pol_cat_ids(p->db, p->write_cats, p->nwrite)))
        return util_err(c->err, c->errlen, -ENOMEM, "out of memory");
    return 0;
}
