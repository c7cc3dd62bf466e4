/* shoji conflicts list|clear|promote: the learned exclusions of automatic
 * conflict avoidance (STATE/learned.json), see docs/TROUBLESHOOTING.md. */
#include "cli/cli.h"

#include "compat/compat.h"
#include "policy/edit.h"
#include "policy/learned.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_compat_reload_agent(const char *state_dir);   /* compat.c */

struct conflicts_opts {
    const char *state_dir;
    const char *policy;
    const char *catalog;
    const char *scope;     /* app-host | host */
    const char *arg;       /* HOST */
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: shoji conflicts list [--state-dir DIR] [--catalog FILE]\n"
        "       shoji conflicts clear [HOST] [--state-dir DIR]\n"
        "       shoji conflicts promote HOST --policy FILE [--scope app+host|host] [--state-dir DIR]\n"
        "\n"
        "When an application rejects shoji's certificate, the agent stops decoding that\n"
        "application's traffic to that host for a while and records it here (learned\n"
        "exclusions, STATE/%s).\n"
        "  list      the learned exclusions, with the catalog entry that explains each\n"
        "  clear     forget them (all, or those of HOST): the agent decodes again\n"
        "  promote   make them permanent policy rules: scope app+host (default) adds\n"
        "            {\"app\": APP, \"hosts\": [HOST]} to disabled_apps; scope host adds\n"
        "            HOST to decode.exclude_hosts. Then reloads a running agent.\n"
        "  --state-dir DIR   the agent's state directory (default %s)\n",
        LEARNED_FILE, CLI_DEFAULT_STATE_DIR);
}

static int parse_opts(int argc, char **argv, struct conflicts_opts *o)
{
    memset(o, 0, sizeof *o);
    o->state_dir = CLI_DEFAULT_STATE_DIR;
    o->scope = "app+host";
    for (int i = 2; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--state-dir", &o->state_dir)) != 0 ||
            (r = cli_opt(argc, argv, &i, "--policy", &o->policy)) != 0 ||
            (r = cli_opt(argc, argv, &i, "--catalog", &o->catalog)) != 0 ||
            (r = cli_opt(argc, argv, &i, "--scope", &o->scope)) != 0) {
            if (r < 0)
                return -1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "shoji conflicts: unknown option %s\n", argv[i]);
            return -1;
        } else if (!o->arg) {
            o->arg = argv[i];
        } else {
            fprintf(stderr, "shoji conflicts: one HOST at a time\n");
            return -1;
        }
    }
    if (!strcmp(o->scope, "app-host"))
        o->scope = "app+host";   /* accepted spelling */
    if (strcmp(o->scope, "app+host") && strcmp(o->scope, "host")) {
        fprintf(stderr, "shoji conflicts: --scope is app+host or host (as auto_avoid.scope)\n");
        return -1;
    }
    return 0;
}

static struct learned *open_store(const struct conflicts_opts *o)
{
    char err[UTIL_ERRLEN];
    struct learned *s;
    if (learned_open(o->state_dir, &s, err, sizeof err) < 0) {
        fprintf(stderr, "shoji conflicts: %s\n", err);
        return NULL;
    }
    return s;
}

static void fmt_time(int64_t t, char *out, size_t outlen)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || !strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, outlen, "%lld", (long long)t);
}

/* The catalog entry that explains an entry: by host first, then by app. */
static const char *catalog_id(const struct compat_catalog *c, const struct learned_entry *e)
{
    const struct compat_entry *ce = compat_match_host(c, e->host);
    if (!ce && e->app[0])
        ce = compat_match_app(c, e->app);
    return ce ? ce->id : "-";
}

static int cmd_list(const struct conflicts_opts *o)
{
    char err[UTIL_ERRLEN];
    struct compat_catalog *c = NULL;
    if (compat_catalog_load_shipped(&c, err, sizeof err) < 0 ||
        (o->catalog && compat_catalog_add_file(c, o->catalog, err, sizeof err) < 0)) {
        fprintf(stderr, "shoji conflicts: catalog: %s\n", err);
        compat_catalog_free(c);
        return 1;
    }
    struct learned *s = open_store(o);
    struct learned_entry *v = NULL;
    size_t n = 0;
    if (!s || learned_list(s, (int64_t)time(NULL), &v, &n) < 0) {
        learned_close(s);
        compat_catalog_free(c);
        return 1;
    }
    if (!n)
        printf("no learned exclusions in %s/%s\n", o->state_dir, LEARNED_FILE);
    else
        printf("%-16s %-32s %-24s %5s %-20s %-20s %-20s %s\n", "APP", "HOST", "REASON", "COUNT",
               "FIRST SEEN", "LAST SEEN", "EXPIRES", "CATALOG");
    for (size_t i = 0; i < n; i++) {
        char f[32], l[32], x[32];
        fmt_time(v[i].first_seen, f, sizeof f);
        fmt_time(v[i].last_seen, l, sizeof l);
        fmt_time(v[i].expires, x, sizeof x);
        printf("%-16s %-32s %-24s %5u %-20s %-20s %-20s %s\n", v[i].app[0] ? v[i].app : "?",
               v[i].host, v[i].reason[0] ? v[i].reason : "-", (unsigned)v[i].count, f, l, x,
               catalog_id(c, &v[i]));
    }
    if (n)
        printf("%zu learned exclusion%s; `shoji conflicts promote HOST --policy FILE` makes one "
               "permanent\n", n, n == 1 ? "" : "s");
    free(v);
    learned_close(s);
    compat_catalog_free(c);
    return 0;
}

static int cmd_clear(const struct conflicts_opts *o)
{
    char err[UTIL_ERRLEN];
    struct learned *s = open_store(o);
    if (!s)
        return 1;
    size_t removed = learned_clear(s, o->arg);
    int rc = 0;
    if (!removed) {
        printf("nothing to clear%s%s\n", o->arg ? " for " : "", o->arg ? o->arg : "");
    } else if (learned_save(s, err, sizeof err) < 0) {
        fprintf(stderr, "shoji conflicts clear: %s\n", err);
        rc = 1;
    } else {
        printf("cleared %zu learned exclusion%s%s%s\n", removed, removed == 1 ? "" : "s",
               o->arg ? " for " : "", o->arg ? o->arg : "");
        cli_compat_reload_agent(o->state_dir);
    }
    learned_close(s);
    return rc;
}

/* Adds the permanent rules for the learned entries of one host. */
static int promote_entries(struct policy_edit *pe, const struct learned_entry *v, size_t n,
                           const char *host, bool app_scope, size_t *matched)
{
    char err[UTIL_ERRLEN], h[LEARNED_HOST_MAX];
    learned_norm_host(host, h, sizeof h);
    *matched = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].host, h) != 0)
            continue;
        (*matched)++;
        bool by_app = app_scope && v[i].app[0];
        int r = by_app ? policy_edit_add_app_host(pe, v[i].app, v[i].host, err, sizeof err)
                       : policy_edit_add_exclude_host(pe, v[i].host, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "shoji conflicts promote: %s\n", err);
            return -1;
        }
        char rule[600];
        learned_permanent_rule(&v[i], by_app ? LEARNED_SCOPE_APP_HOST : LEARNED_SCOPE_HOST,
                               rule, sizeof rule);
        printf("%s %s\n", r ? "added" : "already in the policy:", rule);
    }
    return 0;
}

static int cmd_promote(const struct conflicts_opts *o)
{
    if (!o->arg || !o->policy) {
        fprintf(stderr, "shoji conflicts promote: give HOST and --policy FILE\n");
        return 2;
    }
    char err[UTIL_ERRLEN];
    struct policy_edit *pe = NULL;
    struct learned_entry *v = NULL;
    size_t n = 0, matched = 0;
    int rc = 1;
    struct learned *s = open_store(o);
    if (!s)
        return 1;
    if (policy_edit_open(o->policy, &pe, err, sizeof err) < 0) {
        fprintf(stderr, "shoji conflicts promote: %s\n", err);
        goto out;
    }
    if (learned_list(s, (int64_t)time(NULL), &v, &n) < 0 ||
        promote_entries(pe, v, n, o->arg, !strcmp(o->scope, "app+host"), &matched) < 0)
        goto out;
    if (!matched) {
        fprintf(stderr, "shoji conflicts promote: no learned exclusion for %s "
                "(`shoji conflicts list` shows them)\n", o->arg);
        goto out;
    }
    int w = policy_edit_save(pe, err, sizeof err);
    if (w < 0) {
        fprintf(stderr, "shoji conflicts promote: %s\n", err);
        goto out;
    }
    printf("%s %s\n", w ? "updated" : "nothing to change in", o->policy);
    /* now permanent: the learned entries are no longer needed */
    learned_clear(s, o->arg);
    if (learned_save(s, err, sizeof err) < 0)
        fprintf(stderr, "shoji conflicts promote: warning: %s\n", err);
    cli_compat_reload_agent(o->state_dir);
    rc = 0;
out:
    free(v);
    policy_edit_free(pe);
    learned_close(s);
    return rc;
}

int cli_conflicts(int argc, char **argv)
{
    if (argc < 2 || cli_flag(argv, 1, "--help") || cli_flag(argv, 1, "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    struct conflicts_opts o;
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "list"))
        return cmd_list(&o);
    if (!strcmp(cmd, "clear"))
        return cmd_clear(&o);
    if (!strcmp(cmd, "promote"))
        return cmd_promote(&o);
    fprintf(stderr, "shoji conflicts: unknown subcommand '%s'\n", cmd);
    usage(stderr);
    return 2;
}
