/* policy: lifetime (ref counting), accessors, names and small helpers of the
 * compiled policy. See policy.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy_int.h"
#include "util/util.h"

struct policy *pol_new(void)
{
    struct policy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->refs = 1;
    p->decode_enabled = true;
    p->auto_avoid.enabled = true;
    p->auto_avoid.ttl = 7 * 86400;
    p->auto_avoid.scope = POLICY_AVOID_APP_HOST;
    return p;
}

struct policy *policy_default(void)
{
    struct policy *p = pol_new();
    if (p && !(p->path = strdup("built-in"))) {
        free(p);
        return NULL;
    }
    return p;
}

struct policy *policy_ref(struct policy *p)
{
    if (p)
        __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
    return p;
}

void pol_cat_rules_free(struct pol_cat_rules *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->r[i].name);
    free(c->r);
    free(c->by_id);
    free(c->rule_of_id);
    memset(c, 0, sizeof *c);
}

static void free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void policy_free(struct policy *p)
{
    free(p->path);
    free(p->template_name);
    if (p->db)
        catdb_close(p->db);
    free(p->db_path);
    pat_set_free(p->bypass);
    pat_set_free(p->allow);
    pat_set_free(p->view_only);
    pat_set_free(p->block);
    pat_set_free(p->exclude);
    free_strv(p->skip_cats, p->nskip);
    free(p->skip_ids);
    free(p->write_ids);
    pol_cat_rules_free(&p->cats);
    for (size_t i = 0; i < p->nsched; i++)
        pol_cat_rules_free(&p->sched[i].cats);
    free(p->sched);
    pmap_free(&p->apps);
    pmap_free(&p->apps15);
    free_strv(p->app_texts, p->napp_texts);
    for (size_t i = 0; i < p->napp_hosts; i++) {
        free(p->app_hosts[i].app);
        pat_set_free(p->app_hosts[i].hosts);
    }
    free(p->app_hosts);
    pmap_free(&p->app_hosts_map);
    free_strv(p->write_cats, p->nwrite);
    free(p->block_page_dir);
    free(p);
}

void policy_unref(struct policy *p)
{
    if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
        policy_free(p);
}

int pol_cat_rules_set(struct pol_cat_rules *c, const char *name, enum pol_cat_action a,
                      bool from_template)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->r[i].name, name) == 0) {
            c->r[i].action = a;
            c->r[i].from_template = from_template;
            return 0;
        }
    }
    struct pol_cat_rule *nr = realloc(c->r, (c->n + 1) * sizeof *nr);
    if (!nr)
        return -ENOMEM;
    c->r = nr;
    if (!(nr[c->n].name = strdup(name)))
        return -ENOMEM;
    nr[c->n].action = a;
    nr[c->n].from_template = from_template;
    c->n++;
    return 0;
}

int pol_cat_rules_resolve(struct pol_cat_rules *c, const struct catdb *db)
{
    if (!db)
        return 0;
    size_t n = catdb_category_count(db);
    c->by_id = calloc(n + 1, 1);
    c->rule_of_id = malloc((n + 1) * sizeof *c->rule_of_id);
    if (!c->by_id || !c->rule_of_id)
        return -ENOMEM;
    for (size_t i = 0; i <= n; i++)
        c->rule_of_id[i] = -1;
    /* Template rules first, so the file's own rules win even when they name
     * an alias of the template's category ("porn" for "adult"). */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < c->n; i++) {
            int id = catdb_category_id(db, c->r[i].name);
            if (c->r[i].from_template != (pass == 0) || id < 0 || (size_t)id >= n)
                continue;
            c->by_id[id] = (uint8_t)c->r[i].action;
            c->rule_of_id[id] = (int32_t)i;
        }
    }
    return 0;
}

int *pol_cat_ids(const struct catdb *db, char *const *names, size_t n)
{
    int *ids = malloc((n + 1) * sizeof *ids);
    for (size_t i = 0; ids && i < n; i++)
        ids[i] = db ? catdb_category_id(db, names[i]) : -1;
    return ids;
}

const char *pol_cat_action_name(enum pol_cat_action a)
{
    switch (a) {
    case PCA_ALLOW: return "allow";
    case PCA_VIEW_ONLY: return "view_only";
    case PCA_BLOCK: return "block";
    default: return "none";
    }
}

bool policy_has_cert_rules(const struct policy *p)
{
    return p && ((p->exclude && pat_set_count(p->exclude) > 0) || p->napp_hosts > 0);
}

const struct catdb *policy_catdb(const struct policy *p) { return p ? p->db : NULL; }
const char *policy_path(const struct policy *p) { return p ? p->path : NULL; }
bool policy_decode_enabled(const struct policy *p) { return p && p->decode_enabled; }
const char *policy_template_name(const struct policy *p) { return p ? p->template_name : NULL; }
const char *policy_block_page_dir(const struct policy *p) { return p ? p->block_page_dir : NULL; }

const struct policy_auto_avoid *policy_auto_avoid(const struct policy *p)
{
    return &p->auto_avoid;
}

bool policy_safe_search(const struct policy *p, enum policy_engine e)
{
    return p && e != POLICY_ENGINE_NONE && (p->safe_search & (1u << e));
}

const char *policy_action_name(enum policy_action a)
{
    switch (a) {
    case POLICY_DECODE: return "decode";
    case POLICY_TUNNEL: return "tunnel";
    case POLICY_BYPASS: return "bypass";
    case POLICY_ALLOW: return "allow";
    case POLICY_BLOCK: return "block";
    }
    return "?";
}

const char *policy_match_on_name(enum policy_match_on m)
{
    static const char *const names[] = { "none", "host", "sni", "ip", "cert", "app", "url", "category" };
    return (unsigned)m < UTIL_ARRAY_LEN(names) ? names[m] : "?";
}

const char *policy_engine_name(enum policy_engine e)
{
    static const char *const names[] = { "none", "google", "bing", "youtube", "duckduckgo" };
    return (unsigned)e < UTIL_ARRAY_LEN(names) ? names[e] : "?";
}

/* Whether `host` is `domain` or ends in ".domain". */
static bool in_domain(const char *host, size_t hn, const char *domain)
{
    size_t dn = strlen(domain);
    if (hn == dn)
        return strncasecmp(host, domain, dn) == 0;
    return hn > dn && host[hn - dn - 1] == '.' && strncasecmp(host + hn - dn, domain, dn) == 0;
}

/* google.com, google.co.jp, www.google.de ...: a "google" label followed by
 * one or two short labels (a public suffix such as "com" or "co.jp"). */
static bool is_google(const char *h, size_t n)
{
    const char *g = strncmp(h, "www.", 4) == 0 ? h + 4 : h;
    if (strncmp(g, "google.", 7) != 0)
        return false;
    const char *tld = g + 7;
    size_t tn = n - (size_t)(tld - h), dots = 0;
    for (size_t i = 0; i < tn; i++) {
        if (tld[i] == '.')
            dots++;
        else if (!((tld[i] >= 'a' && tld[i] <= 'z')))
            return false;
    }
    return tn >= 2 && dots <= 1 && tld[tn - 1] != '.';
}

enum policy_engine policy_search_engine(const char *host)
{
    if (!host)
        return POLICY_ENGINE_NONE;
    char h[256];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof h)
        return POLICY_ENGINE_NONE;
    memcpy(h, host, n + 1);
    util_lower(h);
    if (h[n - 1] == '.')
        h[--n] = '\0';
    if (in_domain(h, n, "youtube.com") || in_domain(h, n, "youtube-nocookie.com") ||
        !strcmp(h, "youtubei.googleapis.com") || !strcmp(h, "youtube.googleapis.com"))
        return POLICY_ENGINE_YOUTUBE;
    if (in_domain(h, n, "bing.com"))
        return POLICY_ENGINE_BING;
    if (in_domain(h, n, "duckduckgo.com"))
        return POLICY_ENGINE_DUCKDUCKGO;
    if (is_google(h, n))
        return POLICY_ENGINE_GOOGLE;
    return POLICY_ENGINE_NONE;
}

int policy_addr_parse(const char *s, struct policy_addr *out)
{
    char buf[64];
    size_t n = s ? strlen(s) : 0;
    memset(out, 0, sizeof *out);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, out->a) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out->a) == 1) {
        out->family = AF_INET6;
        return 0;
    }
    return -EINVAL;
}
