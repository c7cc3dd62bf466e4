/* shoji explain URL: the exact decision path for a request, without sending
 * it — the same policy_decide() the proxy calls, phase by phase (connect,
 * certificate, request), with the list, pattern or category that decided
 * and which fact (host, SNI, IP, certificate name, app) matched. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli/cli.h"
#include "policy/policy.h"
#include "util/util.h"

#define EXPLAIN_DEFAULT_POLICY "/etc/shoji/policy.json"
#define EXPLAIN_MAX_CERTS 16

struct explain_opts {
    const char *url, *app, *method, *policy, *sni, *ip, *at, *learned;
    const char *certs[EXPLAIN_MAX_CERTS];
    size_t ncerts;
    bool json;
};

struct explain_url {
    bool tls;
    char host[256];
    unsigned port;
    char path[2048];
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shoji explain URL [--app NAME] [--method M] [--policy FILE] [--json]\n"
            "                         [--sni NAME] [--ip ADDR] [--cert-name NAME]...\n"
            "                         [--at \"DAY HH:MM\"] [--learned TEXT]\n"
            "Prints the decision path of the policy for URL (connect, certificate and\n"
            "request phases) without sending anything. The policy defaults to %s.\n"
            "  --app NAME        the application (process name, with or without .exe)\n"
            "  --method M        request method (default GET; POST/PUT/PATCH count as uploads)\n"
            "  --sni NAME        TLS SNI if different from the URL's host\n"
            "  --ip ADDR         destination address (default: the URL's host if it is an IP)\n"
            "  --cert-name NAME  a name of the upstream certificate (repeatable)\n"
            "  --at \"mon 09:30\"  the local day and time for schedules (default: now)\n"
            "  --learned TEXT    pretend a learned exclusion matches (automatic avoidance)\n"
            "  --json            one JSON object instead of text\n",
            EXPLAIN_DEFAULT_POLICY);
}

static int parse_url(const char *url, struct explain_url *u)
{
    const char *p = url;
    u->tls = true;
    if (!strncasecmp(p, "https://", 8)) {
        p += 8;
    } else if (!strncasecmp(p, "http://", 7)) {
        u->tls = false;
        p += 7;
    } else if (strstr(p, "://")) {
        return -1;
    }
    size_t hl = strcspn(p, "/?#");
    const char *hp = p, *rest = p + hl;
    if (hl == 0 || hl >= sizeof u->host)
        return -1;
    size_t hostlen = hl;
    u->port = u->tls ? 443 : 80;
    const char *colon = hp[0] == '[' ? memchr(hp, ']', hl) : memchr(hp, ':', hl);
    if (colon && hp[0] == '[')
        colon = (colon + 1 < hp + hl && colon[1] == ':') ? colon + 1 : NULL;
    if (colon) {
        hostlen = (size_t)(colon - hp);
        char *end;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (end != hp + hl || port == 0 || port > 65535)
            return -1;
        u->port = (unsigned)port;
    }
    if (hostlen == 0)
        return -1;
    memcpy(u->host, hp, hostlen);
    u->host[hostlen] = '\0';
    util_lower(u->host);
    snprintf(u->path, sizeof u->path, "%s%s", *rest == '/' ? "" : "/", rest);
    return 0;
}

static int parse_at(const char *at, int *wday, int *minute)
{
    static const char *const days[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };
    char d[4];
    int h, m;
    if (sscanf(at, "%3s %d:%d", d, &h, &m) != 3 || h < 0 || h > 23 || m < 0 || m > 59)
        return -1;
    for (int i = 0; i < 7; i++) {
        if (!strcasecmp(d, days[i])) {
            *wday = i;
            *minute = h * 60 + m;
            return 0;
        }
    }
    return -1;
}

static int parse_args(int argc, char **argv, struct explain_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (cli_flag(argv, i, "--json")) {
            o->json = true;
        } else if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            exit(0);
        } else if ((r = cli_opt(argc, argv, &i, "--cert-name", &v)) != 0) {
            if (r < 0 || o->ncerts == EXPLAIN_MAX_CERTS)
                return -1;
            o->certs[o->ncerts++] = v;
        } else if ((r = cli_opt(argc, argv, &i, "--app", &o->app)) || (r = cli_opt(argc, argv, &i, "--method", &o->method)) ||
                   (r = cli_opt(argc, argv, &i, "--policy", &o->policy)) || (r = cli_opt(argc, argv, &i, "--sni", &o->sni)) ||
                   (r = cli_opt(argc, argv, &i, "--ip", &o->ip)) || (r = cli_opt(argc, argv, &i, "--at", &o->at)) ||
                   (r = cli_opt(argc, argv, &i, "--learned", &o->learned))) {
            if (r < 0)
                return -1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "shoji explain: unknown option %s\n", argv[i]);
            return -1;
        } else if (!o->url) {
            o->url = argv[i];
        } else {
            fprintf(stderr, "shoji explain: one URL only (got %s and %s)\n", o->url, argv[i]);
            return -1;
        }
    }
    if (!o->url) {
        fprintf(stderr, "shoji explain: which URL?\n");
        return -1;
    }
    return 0;
}

static const char *phase_name(enum policy_phase ph)
{
    return ph == POLICY_PHASE_CONNECT ? "connect" : ph == POLICY_PHASE_CERT ? "certificate" : "request";
}

static const char *meaning(enum policy_phase ph, const struct policy_verdict *v)
{
    switch (v->action) {
    case POLICY_DECODE: return "decoded (inspected): every request is decided on its own";
    case POLICY_TUNNEL: return "tunnelled without decoding; still filtered by host name";
    case POLICY_BYPASS: return "neither decoded nor filtered";
    case POLICY_ALLOW: return v->view_only ? "forwarded (view only: uploads are blocked)" : "forwarded";
    case POLICY_BLOCK:
        return ph == POLICY_PHASE_REQUEST ? "blocked: the block page is shown"
                                          : "blocked at connect: the connection is refused and logged";
    }
    return "";
}

static json_t *cats_json(const struct policy *p, const struct catset *cs)
{
    json_t *a = json_array();
    for (uint16_t i = 0; a && i < cs->n; i++) {
        const char *n = catdb_category_name(policy_catdb(p), cs->id[i]);
        json_array_append_new(a, json_string(n ? n : "?"));
    }
    return a;
}

static void print_step(const struct policy *p, enum policy_phase ph, const struct policy_verdict *v,
                       json_t *steps, bool as_json)
{
    if (as_json) {
        json_t *s = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:b, s:b}", "phase", phase_name(ph),
                              "action", policy_action_name(v->action), "on", policy_match_on_name(v->on),
                              "rule", v->rule, "matched", v->matched, "categories", cats_json(p, &v->cats),
                              "view_only", v->view_only, "safe_search", v->safe_search);
        if (s)
            json_array_append_new(steps, s);
        return;
    }
    printf("%-12s %s\n", phase_name(ph), policy_action_name(v->action));
    printf("             rule: %s\n", v->rule);
    if (v->on != POLICY_ON_NONE)
        printf("             matched on %s: %s\n", policy_match_on_name(v->on), v->matched);
    printf("             => %s\n", meaning(ph, v));
}

static void fill_facts(const struct explain_opts *o, const struct explain_url *u, struct policy_facts *f)
{
    memset(f, 0, sizeof *f);
    f->app.name = o->app;
    f->app.exe = o->app;
    f->app.uid = -1;
    f->host = u->host;
    f->sni = u->tls ? (o->sni ? o->sni : u->host) : NULL;
    if (o->ip)
        policy_addr_parse(o->ip, &f->dst);
    else
        policy_addr_parse(u->host, &f->dst);
    f->port = (uint16_t)u->port;
    f->tls = u->tls;
    f->method = o->method ? o->method : "GET";
    f->path = u->path;
    f->upload = !strcasecmp(f->method, "POST") || !strcasecmp(f->method, "PUT") || !strcasecmp(f->method, "PATCH");
    f->learned = o->learned;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    f->now = (int64_t)now;
    f->local_wday = tm.tm_wday;
    f->local_minute = tm.tm_hour * 60 + tm.tm_min;
    if (o->at)
        parse_at(o->at, &f->local_wday, &f->local_minute);
}

/* Runs the phases the proxy would run; returns the final verdict. */
static void run_phases(const struct policy *p, const struct explain_opts *o, struct policy_facts *f,
                       json_t *steps, struct policy_verdict *v)
{
    if (f->tls) {
        f->phase = POLICY_PHASE_CONNECT;
        policy_decide(p, f, v);
        print_step(p, f->phase, v, steps, o->json);
        if (v->action != POLICY_DECODE)
            return;
        if (o->ncerts) {
            f->phase = POLICY_PHASE_CERT;
            f->cert_names = o->certs;
            f->ncert_names = o->ncerts;
            policy_decide(p, f, v);
            print_step(p, f->phase, v, steps, o->json);
            if (v->action != POLICY_DECODE)
                return;
        } else if (policy_has_cert_rules(p) && !o->json) {
            printf("certificate  (not checked: pass --cert-name NAME to test the exclusions against certificate names)\n");
        }
    }
    f->phase = POLICY_PHASE_REQUEST;
    policy_decide(p, f, v);
    print_step(p, f->phase, v, steps, o->json);
    if (v->safe_search && !o->json)
        printf("             safe search: enforced for %s\n", policy_engine_name(policy_search_engine(f->host)));
}

int cli_explain(int argc, char **argv)
{
    struct explain_opts o = { 0 };
    if (parse_args(argc, argv, &o) < 0) {
        usage(stderr);
        return 2;
    }
    struct explain_url u;
    struct policy_addr tmp;
    int wd, mi;
    if (parse_url(o.url, &u) < 0) {
        fprintf(stderr, "shoji explain: cannot parse URL '%s' (expected [http[s]://]HOST[:PORT][/PATH])\n", o.url);
        return 2;
    }
    if ((o.ip && policy_addr_parse(o.ip, &tmp) < 0) || (o.at && parse_at(o.at, &wd, &mi) < 0)) {
        fprintf(stderr, "shoji explain: bad %s (expected %s)\n", o.ip && policy_addr_parse(o.ip, &tmp) < 0 ? "--ip" : "--at",
                o.ip && policy_addr_parse(o.ip, &tmp) < 0 ? "an IPv4 or IPv6 address" : "\"DAY HH:MM\", e.g. \"mon 09:30\"");
        return 2;
    }
    const char *path = o.policy ? o.policy : EXPLAIN_DEFAULT_POLICY;
    struct policy *p;
    char err[UTIL_ERRLEN];
    if (policy_load_file(path, &p, err, sizeof err) < 0) {
        fprintf(stderr, "shoji explain: %s\n", err);
        if (!o.policy)
            fprintf(stderr, "shoji explain: no --policy given, so the default %s was used; pass --policy FILE\n", path);
        return 1;
    }
    struct policy_facts f;
    struct policy_verdict v;
    fill_facts(&o, &u, &f);
    json_t *steps = o.json ? json_array() : NULL;
    if (!o.json)
        printf("policy       %s%s%s\nrequest      %s %s://%s:%u%s%s%s\n", policy_path(p),
               policy_template_name(p) ? ", template " : "", policy_template_name(p) ? policy_template_name(p) : "",
               f.method, u.tls ? "https" : "http", u.host, u.port, u.path, o.app ? " app " : "", o.app ? o.app : "");
    run_phases(p, &o, &f, steps, &v);
    if (o.json) {
        json_t *out = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:o}", "url", o.url, "policy", policy_path(p),
                                "method", f.method, "categories", cats_json(p, &v.cats), "result",
                                policy_action_name(v.action), "rule", v.rule, "phases", steps);
        if (out && o.app)
            json_object_set_new(out, "app", json_string(o.app));
        char *s = out ? json_dumps(out, JSON_INDENT(2)) : NULL;
        if (s)
            puts(s);
        free(s);
        json_decref(out);
    } else {
        printf("categories   ");
        for (uint16_t i = 0; i < v.cats.n; i++)
            printf("%s%s", i ? ", " : "", catdb_category_name(policy_catdb(p), v.cats.id[i]));
        printf("%s\nresult       %s — %s\n", v.cats.n ? "" : (policy_catdb(p) ? "none" : "(no category database)"),
               policy_action_name(v.action), v.rule);
    }
    policy_unref(p);
    return 0;
}
