/* decide: policy_decide(), the one pure function from facts to a verdict and
 * the rule that decided. Precedence, as documented in docs/POLICY.md:
 * disabled application > bypass > allow > view_only > block > category
 * rules (schedules first) > write restriction > default_action; in the
 * CONNECT/CERT phases, decode exclusions then choose tunnel or decode.
 * Must never: read a clock, do I/O, allocate, or keep pointers to facts. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "policy/policy_int.h"
#include "util/util.h"

struct hit {
    int idx;                     /* list index, -1 none */
    enum policy_match_on on;
    char value[256];             /* the fact that matched */
};

#define F_SNI 0x1                /* also match the SNI */
#define F_PATH 0x2               /* URL patterns against host + path */
#define F_ROOT 0x4               /* URL patterns against host + "/" */
#define F_CERT 0x8               /* certificate names */

static void rulef(struct policy_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rulef(struct policy_verdict *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->rule, sizeof v->rule, fmt, ap);
    va_end(ap);
}

static void consider(struct hit *h, int idx, enum policy_match_on on, const char *value)
{
    if (idx < 0 || (h->idx >= 0 && idx >= h->idx))
        return;
    h->idx = idx;
    h->on = on;
    util_strlcpy(h->value, value, sizeof h->value);
}

static const char *addr_text(const struct policy_addr *a, char *buf, size_t cap)
{
    if (a->family != AF_INET && a->family != AF_INET6)
        return NULL;
    return inet_ntop(a->family, a->a, buf, (socklen_t)cap);
}

/* The host a request names: Host / CONNECT target, else the SNI. */
static const char *fact_host(const struct policy_facts *f)
{
    return f->host && *f->host ? f->host : f->sni && *f->sni ? f->sni : NULL;
}

/* The earliest pattern of `s` matching any of the facts selected by flags. */
static bool match_facts(const struct pat_set *s, const struct policy_facts *f, unsigned flags,
                        struct hit *h)
{
    h->idx = -1;
    h->on = POLICY_ON_NONE;
    h->value[0] = '\0';
    if (!s || pat_set_count(s) == 0)
        return false;
    const char *host = fact_host(f);
    if (host)
        consider(h, pat_match_host(s, host), f->host && *f->host ? POLICY_ON_HOST : POLICY_ON_SNI, host);
    if ((flags & F_SNI) && f->sni && *f->sni && host != f->sni)
        consider(h, pat_match_host(s, f->sni), POLICY_ON_SNI, f->sni);
    int ai = pat_match_addr(s, f->dst.family, f->dst.a);
    char ip[INET6_ADDRSTRLEN];
    if (ai >= 0 && (h->idx < 0 || ai < h->idx) && addr_text(&f->dst, ip, sizeof ip))
        consider(h, ai, POLICY_ON_IP, ip);
    if (host && (flags & (F_PATH | F_ROOT))) {
        const char *path = (flags & F_PATH) && f->path && *f->path ? f->path : "/";
        int idx = pat_match_url(s, host, path);
        if (idx >= 0 && (h->idx < 0 || idx < h->idx)) {
            consider(h, idx, POLICY_ON_URL, host);
            size_t n = strlen(h->value);
            snprintf(h->value + n, sizeof h->value - n, "%s", path);
        }
    }
    for (size_t i = 0; (flags & F_CERT) && i < f->ncert_names; i++)
        if (f->cert_names[i])
            consider(h, pat_match_cert(s, f->cert_names[i]), POLICY_ON_CERT, f->cert_names[i]);
    return h->idx >= 0;
}

static void list_verdict(struct policy_verdict *v, enum policy_action a, const char *list,
                         const struct pat_set *s, const struct hit *h, const char *tail)
{
    v->action = a;
    v->on = h->on;
    util_strlcpy(v->matched, h->value, sizeof v->matched);
    rulef(v, "%s[%d] \"%s\" matched %s %s%s", list, h->idx, pat_set_text(s, h->idx),
          policy_match_on_name(h->on), h->value, tail ? tail : "");
}

/* ---- applications ----------------------------------------------------------- */

/* Up to three normalized identities of the application: comm, exe, path. */
static size_t app_ids(const struct policy_app *app, char ids[3][128], const char *orig[3])
{
    const char *cand[3] = { app->name, app->exe, app->path };
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        if (!cand[i] || !*cand[i] || !pat_app_norm(cand[i], ids[n], sizeof ids[n]))
            continue;
        bool dup = false;
        for (size_t k = 0; k < n; k++)
            dup = dup || strcmp(ids[k], ids[n]) == 0;
        if (!dup)
            orig[n++] = cand[i];
    }
    return n;
}

static bool disabled_app(const struct policy *p, const struct policy_facts *f, struct policy_verdict *v)
{
    char ids[3][128];
    const char *orig[3];
    size_t n = app_ids(&f->app, ids, orig);
    int best = -1;
    const char *which = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(ids[i]);
        int32_t *x = pmap_get(&p->apps, ids[i], len);
        if (!x && len == 15)   /* Linux truncates comm to 15 bytes */
            x = pmap_get(&p->apps15, ids[i], len);
        if (x && (best < 0 || *x < best)) {
            best = *x;
            which = orig[i];
        }
    }
    if (best < 0)
        return false;
    v->action = POLICY_BYPASS;
    v->on = POLICY_ON_APP;
    util_strlcpy(v->matched, which, sizeof v->matched);
    rulef(v, "disabled_apps[%d] \"%s\" matched app %s", best, p->app_texts[best], which);
    return true;
}

/* The narrow form {"app", "hosts"}: fills rule text for a TUNNEL. */
static bool app_hosts(const struct policy *p, const struct policy_facts *f, unsigned flags,
                      char *rule, size_t cap)
{
    if (!p->napp_hosts)
        return false;
    char ids[3][128];
    const char *orig[3];
    size_t n = app_ids(&f->app, ids, orig);
    for (size_t i = 0; i < n; i++) {
        int32_t *head = pmap_get(&p->app_hosts_map, ids[i], strlen(ids[i]));
        for (int32_t pos = head ? *head : -1; pos >= 0; pos = p->app_hosts[pos].next) {
            const struct pol_app_hosts *e = &p->app_hosts[pos];
            struct hit h;
            if (match_facts(e->hosts, f, flags, &h)) {
                snprintf(rule, cap, "disabled_apps[%d] {\"app\": \"%s\"} hosts[%d] \"%s\" matched app %s and %s %s",
                         e->index, e->app, h.idx, pat_set_text(e->hosts, h.idx), orig[i],
                         policy_match_on_name(h.on), h.value);
                return true;
            }
        }
    }
    return false;
}

/* ---- categories ------------------------------------------------------------- */

static bool sched_active(const struct pol_schedule *s, const struct policy_facts *f)
{
    int wd = f->local_wday, m = f->local_minute;
    if (wd < 0 || wd > 6 || m < 0 || m >= 24 * 60)
        return false;
    if (s->from < s->to)
        return (s->days & (1u << wd)) && m >= s->from && m < s->to;
    if (m >= s->from)                       /* window crosses midnight */
        return s->days & (1u << wd);
    return m < s->to && (s->days & (1u << ((wd + 6) % 7)));
}

/* The most restrictive action `rules` give any of the categories. */
static enum pol_cat_action cats_action(const struct pol_cat_rules *r, const struct catset *cs,
                                       int *cat)
{
    enum pol_cat_action best = PCA_NONE;
    for (uint16_t i = 0; r->by_id && i < cs->n; i++) {
        enum pol_cat_action a = r->by_id[cs->id[i]];
        if (a > best) {
            best = a;
            *cat = cs->id[i];
        }
    }
    return best;
}

/* Category rules: the first active schedule with a rule for one of the
 * categories, else the base rules (template + `categories`). */
static enum pol_cat_action cat_rule(const struct policy *p, const struct policy_facts *f,
                                    const struct catset *cs, char *rule, size_t cap, int *catp)
{
    int cat = -1;
    *catp = -1;
    for (size_t i = 0; i < p->nsched; i++) {
        const struct pol_schedule *s = &p->sched[i];
        enum pol_cat_action a;
        if (!sched_active(s, f) || (a = cats_action(&s->cats, cs, &cat)) == PCA_NONE)
            continue;
        snprintf(rule, cap, "schedules[%zu].categories.%s = %s (%02d:%02d-%02d:%02d)", i,
                 catdb_category_name(p->db, (uint16_t)cat), pol_cat_action_name(a),
                 s->from / 60, s->from % 60, s->to / 60, s->to % 60);
        *catp = cat;
        return a;
    }
    enum pol_cat_action a = cats_action(&p->cats, cs, &cat);
    if (a != PCA_NONE) {
        const struct pol_cat_rule *r = &p->cats.r[p->cats.rule_of_id[cat]];
        if (r->from_template)
            snprintf(rule, cap, "template %s: %s = %s", p->template_name, r->name, pol_cat_action_name(a));
        else
            snprintf(rule, cap, "categories.%s = %s", r->name, pol_cat_action_name(a));
        *catp = cat;
    }
    return a;
}

/* The first category of `cs` among `ids`; -1 if none. */
static int cat_in(const struct catset *cs, const int *ids, size_t n, size_t *which)
{
    for (uint16_t i = 0; ids && i < cs->n; i++) {
        for (size_t k = 0; k < n; k++) {
            if (ids[k] == (int)cs->id[i]) {
                *which = k;
                return cs->id[i];
            }
        }
    }
    return -1;
}

static void lookup_cats(const struct policy *p, const struct policy_facts *f, bool with_path,
                        struct catset *out)
{
    out->n = 0;
    const char *host = fact_host(f);
    char ip[INET6_ADDRSTRLEN];
    if (!host)
        host = addr_text(&f->dst, ip, sizeof ip);
    if (p->db && host)
        catdb_lookup(p->db, host, with_path ? f->path : NULL, out);
}

static void cat_verdict(const struct policy *p, struct policy_verdict *v, enum policy_action a,
                        const char *rule, int cat)
{
    v->action = a;
    v->on = POLICY_ON_CATEGORY;
    util_strlcpy(v->rule, rule, sizeof v->rule);
    const char *cn = cat >= 0 ? catdb_category_name(p->db, (uint16_t)cat) : NULL;
    util_strlcpy(v->matched, cn ? cn : "", sizeof v->matched);
}

/* ---- phases ----------------------------------------------------------------- */

/* Host-level filtering before any decode: 1 = blocked (verdict set), 0 =
 * not blocked; *allowed says an allow rule (list or category) applied. */
static int host_filter(const struct policy *p, const struct policy_facts *f,
                       struct policy_verdict *v, bool *allowed)
{
    struct hit h;
    *allowed = false;
    if (match_facts(p->allow, f, F_SNI | F_ROOT, &h) || match_facts(p->view_only, f, F_SNI | F_ROOT, &h)) {
        *allowed = true;
        return 0;
    }
    if (match_facts(p->block, f, F_SNI | F_ROOT, &h)) {
        list_verdict(v, POLICY_BLOCK, "block", p->block, &h, NULL);
        return 1;
    }
    char rule[256] = "";
    int cat;
    enum pol_cat_action a = cat_rule(p, f, &v->cats, rule, sizeof rule, &cat);
    if (a == PCA_BLOCK) {
        cat_verdict(p, v, POLICY_BLOCK, rule, cat);
        return 1;
    }
    *allowed = a != PCA_NONE;
    return 0;
}

/* Decode exclusions: true (verdict TUNNEL set) if the connection must not
 * be decoded. */
static bool excluded(const struct policy *p, const struct policy_facts *f, bool cert,
                     struct policy_verdict *v)
{
    struct hit h;
    size_t k;
    if (!p->decode_enabled) {
        v->action = POLICY_TUNNEL;
        rulef(v, "decode.enabled = false");
        return true;
    }
    if (match_facts(p->exclude, f, F_SNI | (cert ? F_CERT : 0), &h)) {
        list_verdict(v, POLICY_TUNNEL, "decode.exclude_hosts", p->exclude, &h, NULL);
        return true;
    }
    if (f->learned && *f->learned) {
        v->action = POLICY_TUNNEL;
        v->on = f->host ? POLICY_ON_HOST : POLICY_ON_SNI;
        util_strlcpy(v->matched, fact_host(f) ? fact_host(f) : "", sizeof v->matched);
        rulef(v, "learned exclusion %s", f->learned);
        return true;
    }
    int cat = cat_in(&v->cats, p->skip_ids, p->nskip, &k);
    if (cat >= 0) {
        v->action = POLICY_TUNNEL;
        v->on = POLICY_ON_CATEGORY;
        util_strlcpy(v->matched, p->skip_cats[k], sizeof v->matched);
        rulef(v, "decode.skip_categories[%zu] \"%s\" matched category %s", k, p->skip_cats[k], p->skip_cats[k]);
        return true;
    }
    return false;
}

static void decide_connect(const struct policy *p, const struct policy_facts *f, bool cert,
                           struct policy_verdict *v)
{
    struct hit h;
    char narrow[256];
    if (disabled_app(p, f, v))
        return;
    bool is_narrow = app_hosts(p, f, F_SNI | (cert ? F_CERT : 0), narrow, sizeof narrow);
    if (match_facts(p->bypass, f, F_SNI | F_ROOT, &h)) {
        list_verdict(v, POLICY_BYPASS, "bypass", p->bypass, &h, NULL);
        return;
    }
    lookup_cats(p, f, false, &v->cats);
    bool allowed;
    if (host_filter(p, f, v, &allowed)) {
        /* A blocked host whose TLS would be decoded is decoded, so that the
         * user gets the block page instead of a connection error. */
        struct policy_verdict x = *v;
        v->decode_to_block = !is_narrow && !excluded(p, f, cert, &x);
        return;
    }
    if (is_narrow) {
        v->action = POLICY_TUNNEL;
        v->on = POLICY_ON_APP;
        util_strlcpy(v->rule, narrow, sizeof v->rule);
        util_strlcpy(v->matched, f->app.name ? f->app.name : f->app.exe ? f->app.exe : "", sizeof v->matched);
    } else if (!excluded(p, f, cert, v)) {
        v->action = POLICY_DECODE;
        v->on = POLICY_ON_NONE;
        rulef(v, "no decode exclusion matched: decode");
        return;
    }
    if (!allowed && p->default_block) {   /* not decoded: decide by host now */
        char why[sizeof v->rule];
        util_strlcpy(why, v->rule, sizeof why);
        v->action = POLICY_BLOCK;
        rulef(v, "default_action = block (not decoded: %.200s)", why);
    }
}

static bool is_write(const struct policy_facts *f)
{
    return f->upload || (f->method && (!strcasecmp(f->method, "POST") || !strcasecmp(f->method, "PUT") ||
                                       !strcasecmp(f->method, "PATCH")));
}

static void view_only_verdict(const struct policy_facts *f, struct policy_verdict *v)
{
    v->view_only = true;
    if (is_write(f)) {
        v->action = POLICY_BLOCK;
        size_t n = strlen(v->rule);
        snprintf(v->rule + n, sizeof v->rule - n, ": view only, upload blocked");
    } else {
        v->action = POLICY_ALLOW;
    }
}

static void decide_request(const struct policy *p, const struct policy_facts *f, struct policy_verdict *v)
{
    struct hit h;
    if (disabled_app(p, f, v))
        return;
    if (match_facts(p->bypass, f, F_PATH, &h)) {
        list_verdict(v, POLICY_BYPASS, "bypass", p->bypass, &h, NULL);
        return;
    }
    lookup_cats(p, f, true, &v->cats);
    if (match_facts(p->allow, f, F_PATH, &h)) {
        list_verdict(v, POLICY_ALLOW, "allow", p->allow, &h, NULL);
        return;
    }
    if (match_facts(p->view_only, f, F_PATH, &h)) {
        list_verdict(v, POLICY_ALLOW, "view_only", p->view_only, &h, NULL);
        view_only_verdict(f, v);
        return;
    }
    if (match_facts(p->block, f, F_PATH, &h)) {
        list_verdict(v, POLICY_BLOCK, "block", p->block, &h, NULL);
        return;
    }
    char rule[256] = "";
    int cat;
    enum pol_cat_action a = cat_rule(p, f, &v->cats, rule, sizeof rule, &cat);
    if (a == PCA_BLOCK) {
        cat_verdict(p, v, POLICY_BLOCK, rule, cat);
        return;
    }
    if (a == PCA_VIEW_ONLY) {
        cat_verdict(p, v, POLICY_ALLOW, rule, cat);
        view_only_verdict(f, v);
        return;
    }
    size_t k;
    int wc = cat_in(&v->cats, p->write_ids, p->nwrite, &k);
    if (wc >= 0 && is_write(f)) {
        v->action = POLICY_BLOCK;
        v->on = POLICY_ON_CATEGORY;
        util_strlcpy(v->matched, p->write_cats[k], sizeof v->matched);
        rulef(v, "write_restriction[%zu] \"%s\" matched category %s: upload blocked", k, p->write_cats[k],
              p->write_cats[k]);
        return;
    }
    v->view_only = wc >= 0;
    if (a == PCA_ALLOW) {
        cat_verdict(p, v, POLICY_ALLOW, rule, cat);
        return;
    }
    v->action = p->default_block ? POLICY_BLOCK : POLICY_ALLOW;
    v->on = POLICY_ON_NONE;
    rulef(v, "default_action = %s", p->default_block ? "block" : "allow");
}

void policy_decide(const struct policy *p, const struct policy_facts *f, struct policy_verdict *v)
{
    memset(v, 0, sizeof *v);
    if (!p || !f) {
        v->action = f && f->phase == POLICY_PHASE_REQUEST ? POLICY_ALLOW : POLICY_DECODE;
        rulef(v, "no policy");
        return;
    }
    switch (f->phase) {
    case POLICY_PHASE_CONNECT:
        decide_connect(p, f, false, v);
        break;
    case POLICY_PHASE_CERT:
        decide_connect(p, f, true, v);
        break;
    case POLICY_PHASE_REQUEST:
        decide_request(p, f, v);
        if (v->action == POLICY_ALLOW && p->safe_search)
            v->safe_search = policy_safe_search(p, policy_search_engine(fact_host(f)));
        break;
    default:
        v->action = POLICY_BLOCK;
        rulef(v, "unknown phase %d", (int)f->phase);
    }
}
