/* shoji compat list|show|detect|apply: the compatibility catalog at the
 * command line (docs/COMPAT.md, docs/CLI.md). */
#include "cli/cli.h"

#include "compat/compat.h"
#include "policy/edit.h"
#include "util/buf.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct compat_opts {
    const char *catalog;     /* --catalog FILE: the site's own entries */
    const char *policy;      /* --policy FILE */
    const char *state_dir;   /* --state-dir DIR */
    const char *lang;        /* --lang ja|en */
    int workaround;          /* --workaround N (1-based); 0 = first not yet covered */
    bool detected;           /* --detected */
    char **args;             /* positional arguments */
    int nargs;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: shoji compat list [--catalog FILE]\n"
        "       shoji compat show ID [--lang ja|en] [--catalog FILE]\n"
        "       shoji compat detect [--policy FILE] [--catalog FILE]\n"
        "       shoji compat apply ID... --policy FILE [--workaround N] [--state-dir DIR] [--catalog FILE]\n"
        "       shoji compat apply --detected --policy FILE [--state-dir DIR] [--catalog FILE]\n"
        "\n"
        "The catalog lists products that break under HTTPS inspection and the exclusions\n"
        "that fix them. `apply` adds an entry's workaround to the policy file (only what\n"
        "is missing; key order and other content kept) and reloads a running agent.\n"
        "  --catalog FILE    extra catalog entries (same schema); same id replaces the shipped one\n"
        "  --workaround N    apply the entry's N-th workaround (default: the first)\n"
        "  --state-dir DIR   where the agent's shoji.pid is (default %s)\n"
        "env SHOJI_COMPAT_CATALOG=FILE replaces the shipped catalog (development).\n",
        CLI_DEFAULT_STATE_DIR);
}

static int parse_opts(int argc, char **argv, struct compat_opts *o)
{
    memset(o, 0, sizeof *o);
    o->state_dir = CLI_DEFAULT_STATE_DIR;
    o->lang = "en";
    o->args = calloc((size_t)argc + 1, sizeof *o->args);
    if (!o->args)
        return -1;
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        int r;
        if ((r = cli_opt(argc, argv, &i, "--catalog", &o->catalog)) != 0 ||
            (r = cli_opt(argc, argv, &i, "--policy", &o->policy)) != 0 ||
            (r = cli_opt(argc, argv, &i, "--state-dir", &o->state_dir)) != 0 ||
            (r = cli_opt(argc, argv, &i, "--lang", &o->lang)) != 0) {
            if (r < 0)
                return -1;
        } else if ((r = cli_opt(argc, argv, &i, "--workaround", &v)) != 0) {
            char *end;
            long n = r > 0 ? strtol(v, &end, 10) : 0;
            if (r < 0 || *end || n < 1 || n > 64) {
                fprintf(stderr, "shoji compat: --workaround takes a number from 1\n");
                return -1;
            }
            o->workaround = (int)n;
        } else if (cli_flag(argv, i, "--detected")) {
            o->detected = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "shoji compat: unknown option %s\n", argv[i]);
            return -1;
        } else {
            o->args[o->nargs++] = argv[i];
        }
    }
    if (strcmp(o->lang, "ja") && strcmp(o->lang, "en")) {
        fprintf(stderr, "shoji compat: --lang is ja or en\n");
        return -1;
    }
    return 0;
}

/* The shipped catalog plus the site's file; notes replaced entries. */
static struct compat_catalog *load_catalog(const struct compat_opts *o)
{
    char err[UTIL_ERRLEN];
    struct compat_catalog *c;
    if (compat_catalog_load_shipped(&c, err, sizeof err) < 0) {
        fprintf(stderr, "shoji compat: the catalog is invalid: %s\n", err);
        return NULL;
    }
    if (o->catalog) {
        if (compat_catalog_add_file(c, o->catalog, err, sizeof err) < 0) {
            fprintf(stderr, "shoji compat: refusing catalog %s: %s\n", o->catalog, err);
            compat_catalog_free(c);
            return NULL;
        }
        for (size_t i = 0; i < compat_catalog_count(c); i++) {
            const struct compat_entry *e = compat_catalog_get(c, i);
            if (e->replaced_origin)
                fprintf(stderr, "shoji compat: note: %s's entry %s replaces the %s one\n",
                        e->origin, e->id, e->replaced_origin);
        }
    }
    return c;
}

static void append_list(struct buf *b, const struct compat_strs *s, const char *sep)
{
    for (size_t i = 0; i < s->n; i++)
        buf_printf(b, "%s%s", i ? sep : "", s->v[i]);
}

/* One line describing a workaround: "exclude A, B + disable C". */
static void describe_workaround(struct buf *b, const struct compat_entry *e,
                                const struct compat_workaround *w)
{
    const char *sep = "";
    if (w->exclude_hosts.n) {
        buf_append_str(b, "exclude ");
        append_list(b, &w->exclude_hosts, ", ");
        sep = " + ";
    }
    if (w->disabled_apps.n) {
        buf_printf(b, "%sdisable app ", sep);
        append_list(b, &w->disabled_apps, ", ");
        sep = " + ";
    }
    if (w->site_specific) {
        buf_printf(b, "%sexclude <site-specific host>", sep);
        sep = " + ";
    }
    if (w->steps_en.n)
        buf_printf(b, "%ssteps in %s", sep, e->vendor);
}

static int cmd_list(const struct compat_opts *o)
{
    struct compat_catalog *c = load_catalog(o);
    if (!c)
        return 1;
    printf("%-40s %-52s %s\n", "ID", "PRODUCT", "WORKAROUND (any one of, separated by |)");
    for (size_t i = 0; i < compat_catalog_count(c); i++) {
        const struct compat_entry *e = compat_catalog_get(c, i);
        struct buf b, p;
        buf_init(&b, 4096);
        buf_init(&p, 512);
        buf_printf(&p, "%s %s", e->product, strcmp(e->versions, "unspecified") ? e->versions : "");
        for (size_t w = 0; w < e->nworkarounds; w++) {
            if (w)
                buf_append_str(&b, " | ");
            describe_workaround(&b, e, &e->workarounds[w]);
        }
        printf("%-40s %-52.*s %.*s\n", e->id, (int)UTIL_MIN(p.len, 52), p.p ? p.p : "", (int)b.len,
               b.p ? b.p : "");
        buf_free(&b);
        buf_free(&p);
    }
    printf("%zu entries; `shoji compat show ID` for the details\n", compat_catalog_count(c));
    compat_catalog_free(c);
    return 0;
}

static void print_lines(const char *label, const struct compat_strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        printf("  %-13s %s\n", i ? "" : label, s->v[i]);
}

static void print_joined(const char *label, const struct compat_strs *s)
{
    printf("  %-13s %s", label, s->n ? "" : "-");
    for (size_t i = 0; i < s->n; i++)
        printf("%s%s", i ? ", " : "", s->v[i]);
    printf("\n");
}

static void print_workarounds(const struct compat_entry *e, bool ja)
{
    printf("  workaround%s\n", e->nworkarounds > 1 ? "s (any one of them is enough):" : ":");
    for (size_t i = 0; i < e->nworkarounds; i++) {
        const struct compat_workaround *w = &e->workarounds[i];
        printf("    %zu.", i + 1);
        const char *ind = " ";
        if (w->exclude_hosts.n) {
            printf("%sdecode.exclude_hosts: ", ind);
            for (size_t k = 0; k < w->exclude_hosts.n; k++)
                printf("%s%s", k ? ", " : "", w->exclude_hosts.v[k]);
            printf("\n");
            ind = "       ";
        }
        if (w->disabled_apps.n) {
            printf("%sdisabled_apps: ", ind);
            for (size_t k = 0; k < w->disabled_apps.n; k++)
                printf("%s%s", k ? ", " : "", w->disabled_apps.v[k]);
            printf("\n");
            ind = "       ";
        }
        if (w->site_specific) {
            printf("%sdecode.exclude_hosts: <%s> (you name it)\n", ind, w->site_specific);
            ind = "       ";
        }
        const struct compat_strs *steps = ja ? &w->steps_ja : &w->steps_en;
        if (steps->n) {
            printf("%sin %s:\n", ind, e->product);
            for (size_t k = 0; k < steps->n; k++)
                printf("         %s\n", steps->v[k]);
        }
    }
}

static void print_entry(const struct compat_entry *e, bool ja)
{
    printf("%s\n", e->id);
    printf("  %-13s %s %s (%s)\n", "product:", e->product, e->versions, e->vendor);
    if (e->product_as_in_note)
        printf("  %-13s %s\n", "as in note:", e->product_as_in_note);
    printf("  %-13s %s\n", "symptom:", ja ? e->symptom.ja : e->symptom.en);
    printf("  %-13s %s: %s\n", "condition:", e->condition_kind, ja ? e->condition.ja : e->condition.en);
    if (e->condition_order.n) {
        printf("  %-13s ", "order:");
        for (size_t i = 0; i < e->condition_order.n; i++)
            printf("%s%zu. %s", i ? ", " : "", i + 1, e->condition_order.v[i]);
        printf("\n");
    }
    print_workarounds(e, ja);
    print_joined("processes:", &e->windows_processes);
    print_joined("linux procs:", &e->linux_processes);
    print_joined("packages:", &e->debian_packages);
    printf("  %-13s %s%s%s, %s, %s", "source:", e->source_title,
           e->source_publisher ? ", " : "", e->source_publisher ? e->source_publisher : "",
           e->source_date, e->source_section);
    if (e->source_page)
        printf(", p. %d", e->source_page);
    printf("\n");
    print_lines("uncertain:", &e->uncertain);
    printf("  %-13s %s%s%s\n", "origin:", e->origin, e->replaced_origin ? ", replacing " : "",
           e->replaced_origin ? e->replaced_origin : "");
}

static int cmd_show(const struct compat_opts *o)
{
    if (o->nargs < 1) {
        fprintf(stderr, "shoji compat show: which entry? (`shoji compat list` shows the ids)\n");
        return 2;
    }
    struct compat_catalog *c = load_catalog(o);
    if (!c)
        return 1;
    int rc = 0;
    for (int i = 0; i < o->nargs; i++) {
        const struct compat_entry *e = compat_catalog_find(c, o->args[i]);
        if (!e) {
            fprintf(stderr, "shoji compat show: no entry \"%s\" (`shoji compat list` shows the ids)\n",
                    o->args[i]);
            rc = 1;
            continue;
        }
        if (i)
            printf("\n");
        print_entry(e, !strcmp(o->lang, "ja"));
    }
    compat_catalog_free(c);
    return rc;
}

/* Whether the policy already has every data item of a workaround. Steps and
 * site-specific hosts cannot be checked: such a workaround never counts. */
static bool workaround_in_policy(const struct policy_edit *pe, const struct compat_workaround *w)
{
    if (w->site_specific || w->steps_en.n || (!w->exclude_hosts.n && !w->disabled_apps.n))
        return false;
    for (size_t k = 0; k < w->exclude_hosts.n; k++)
        if (!policy_edit_has_exclude_host(pe, w->exclude_hosts.v[k]))
            return false;
    for (size_t k = 0; k < w->disabled_apps.n; k++)
        if (!policy_edit_has_disabled_app(pe, w->disabled_apps.v[k]))
            return false;
    return true;
}

/* The 1-based index of the first workaround the policy has, or 0. */
static size_t covered_by(const struct policy_edit *pe, const struct compat_entry *e)
{
    for (size_t w = 0; w < e->nworkarounds; w++)
        if (workaround_in_policy(pe, &e->workarounds[w]))
            return w + 1;
    return 0;
}

static void print_lacks(const struct policy_edit *pe, const struct compat_entry *e)
{
    size_t have = covered_by(pe, e);
    if (have) {
        struct buf b;
        buf_init(&b, 4096);
        describe_workaround(&b, e, &e->workarounds[have - 1]);
        printf("    policy has workaround %zu: %.*s\n", have, (int)b.len, b.p ? b.p : "");
        buf_free(&b);
        return;
    }
    const struct compat_workaround *w = &e->workarounds[0];
    for (size_t k = 0; k < w->exclude_hosts.n; k++)
        if (!policy_edit_has_exclude_host(pe, w->exclude_hosts.v[k]))
            printf("    policy lacks: decode.exclude_hosts \"%s\"\n", w->exclude_hosts.v[k]);
    for (size_t k = 0; k < w->disabled_apps.n; k++)
        if (!policy_edit_has_disabled_app(pe, w->disabled_apps.v[k]))
            printf("    policy lacks: disabled_apps \"%s\"\n", w->disabled_apps.v[k]);
    if (w->site_specific)
        printf("    check by hand: decode.exclude_hosts must name %s\n", w->site_specific);
    if (w->steps_en.n)
        printf("    to do in %s (cannot be checked from here): `shoji compat show %s`\n",
               e->product, e->id);
    if (e->nworkarounds > 1)
        printf("    (or another of its %zu workarounds: `shoji compat show %s`)\n",
               e->nworkarounds, e->id);
}

static int detect_found(const struct compat_catalog *c, struct compat_found **found, size_t *nfound,
                        size_t *nprocs, size_t *npkgs)
{
    char err[UTIL_ERRLEN];
    struct compat_scan scan;
    if (compat_scan_system(&scan, err, sizeof err) < 0) {
        fprintf(stderr, "shoji compat detect: %s\n", err);
        return -1;
    }
    *nprocs = scan.nprocs;
    *npkgs = scan.npkgs;
    int rc = compat_detect(c, &scan, found, nfound);
    compat_scan_free(&scan);
    if (rc < 0)
        fprintf(stderr, "shoji compat detect: out of memory\n");
    return rc;
}

static int cmd_detect(const struct compat_opts *o)
{
    char err[UTIL_ERRLEN];
    struct policy_edit *pe = NULL;
    if (o->policy && policy_edit_open(o->policy, &pe, err, sizeof err) < 0) {
        fprintf(stderr, "shoji compat detect: %s\n", err);
        return 1;
    }
    struct compat_catalog *c = load_catalog(o);
    struct compat_found *found = NULL;
    size_t n = 0, np = 0, nk = 0;
    if (!c || detect_found(c, &found, &n, &np, &nk) < 0) {
        compat_catalog_free(c);
        policy_edit_free(pe);
        return 1;
    }
    if (!n)
        printf("no product of the catalog found (%zu process names, %zu packages looked at)\n", np, nk);
    else
        printf("found %zu catalog entr%s on this machine:\n", n, n == 1 ? "y" : "ies");
    for (size_t i = 0; i < n; i++) {
        const struct compat_entry *e = found[i].entry;
        printf("  %-40s %s %s: %s\n", e->id, e->product, e->versions, found[i].what);
        if (pe) {
            print_lacks(pe, e);
        } else {
            struct buf b;
            buf_init(&b, 4096);
            describe_workaround(&b, e, &e->workarounds[0]);
            printf("    workaround: %.*s\n", (int)b.len, b.p ? b.p : "");
            buf_free(&b);
        }
    }
    if (n && pe && policy_edit_created(pe))
        printf("(policy %s does not exist yet)\n", o->policy);
    if (n)
        printf("`shoji compat apply --detected --policy FILE` adds what is missing.\n");
    free(found);
    compat_catalog_free(c);
    policy_edit_free(pe);
    return 0;
}

/* Adds one entry's workaround; prints each addition. Returns additions or <0. */
static int apply_entry(struct policy_edit *pe, const struct compat_entry *e, int choice)
{
    char err[UTIL_ERRLEN];
    size_t have = covered_by(pe, e);
    if (!choice && have) {
        printf("%s: already covered by workaround %zu\n", e->id, have);
        return 0;
    }
    if (choice > (int)e->nworkarounds) {
        fprintf(stderr, "shoji compat apply: %s has %zu workaround(s), not %d\n", e->id,
                e->nworkarounds, choice);
        return -1;
    }
    const struct compat_workaround *w = &e->workarounds[choice ? choice - 1 : 0];
    int added = 0;
    for (size_t k = 0; k < w->exclude_hosts.n; k++) {
        int r = policy_edit_add_exclude_host(pe, w->exclude_hosts.v[k], err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "shoji compat apply: %s\n", err);
            return -1;
        }
        if (r > 0)
            printf("%s: added decode.exclude_hosts \"%s\"\n", e->id, w->exclude_hosts.v[k]);
        added += r;
    }
    for (size_t k = 0; k < w->disabled_apps.n; k++) {
        int r = policy_edit_add_disabled_app(pe, w->disabled_apps.v[k], err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "shoji compat apply: %s\n", err);
            return -1;
        }
        if (r > 0)
            printf("%s: added disabled_apps \"%s\"\n", e->id, w->disabled_apps.v[k]);
        added += r;
    }
    if (w->site_specific)
        printf("%s: left for you: add %s to decode.exclude_hosts\n", e->id, w->site_specific);
    if (w->steps_en.n)
        printf("%s: left for you: steps in %s (`shoji compat show %s`)\n", e->id, e->product, e->id);
    if (!added && !w->site_specific && !w->steps_en.n)
        printf("%s: already in the policy\n", e->id);
    return added;
}

/* The entries to apply: the named ones or the detected ones. */
static int select_entries(const struct compat_opts *o, const struct compat_catalog *c,
                          const struct compat_entry ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (o->detected) {
        struct compat_found *found;
        size_t nf, np, nk;
        if (detect_found(c, &found, &nf, &np, &nk) < 0)
            return -1;
        *out = calloc(nf + 1, sizeof **out);
        for (size_t i = 0; *out && i < nf; i++)
            (*out)[(*n)++] = found[i].entry;
        free(found);
        return *out ? 0 : -1;
    }
    *out = calloc((size_t)o->nargs + 1, sizeof **out);
    if (!*out)
        return -1;
    for (int i = 0; i < o->nargs; i++) {
        const struct compat_entry *e = compat_catalog_find(c, o->args[i]);
        if (!e) {
            fprintf(stderr, "shoji compat apply: no entry \"%s\" (`shoji compat list` shows "
                    "the ids); nothing changed\n", o->args[i]);
            return -1;
        }
        (*out)[(*n)++] = e;
    }
    return 0;
}

static void reload_agent(const char *state_dir)
{
    char msg[UTIL_ERRLEN];
    int pid;
    int r = policy_edit_reload_agent(state_dir, &pid, msg, sizeof msg);
    if (r < 0)
        fprintf(stderr, "shoji: warning: %s; reload it yourself (kill -HUP)\n", msg);
    else
        printf("%s\n", msg);
}

static int cmd_apply(const struct compat_opts *o)
{
    if (!o->policy || (!o->detected && o->nargs == 0) || (o->detected && o->nargs)) {
        fprintf(stderr, "shoji compat apply: give entry ids or --detected, and --policy FILE\n");
        return 2;
    }
    char err[UTIL_ERRLEN];
    struct policy_edit *pe = NULL;
    struct compat_catalog *c = NULL;
    const struct compat_entry **sel = NULL;
    size_t n = 0;
    int rc = 1;
    if (policy_edit_open(o->policy, &pe, err, sizeof err) < 0) {
        fprintf(stderr, "shoji compat apply: %s\n", err);
        goto out;
    }
    if (!(c = load_catalog(o)) || select_entries(o, c, &sel, &n) < 0)
        goto out;
    if (o->detected && !n) {
        printf("no product of the catalog detected on this machine; nothing to apply\n");
        rc = 0;
        goto out;
    }
    int added = 0;
    for (size_t i = 0; i < n; i++) {
        int r = apply_entry(pe, sel[i], o->workaround);
        if (r < 0)
            goto out;   /* nothing written */
        added += r;
    }
    bool created = policy_edit_created(pe);
    int w = policy_edit_save(pe, err, sizeof err);
    if (w < 0) {
        fprintf(stderr, "shoji compat apply: %s\n", err);
        goto out;
    }
    if (w == 0) {
        printf("nothing to change: %s already has these workarounds (no agent reload needed)\n",
               o->policy);
    } else {
        printf("%s %s (%d addition%s)\n", created ? "created" : "updated", o->policy, added,
               added == 1 ? "" : "s");
        reload_agent(o->state_dir);
    }
    rc = 0;
out:
    free(sel);
    compat_catalog_free(c);
    policy_edit_free(pe);
    return rc;
}

int cli_compat(int argc, char **argv)
{
    if (argc < 2 || cli_flag(argv, 1, "--help") || cli_flag(argv, 1, "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    struct compat_opts o;
    if (parse_opts(argc, argv, &o) < 0) {
        free(o.args);
        return 2;
    }
    int rc;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "list"))
        rc = cmd_list(&o);
    else if (!strcmp(cmd, "show"))
        rc = cmd_show(&o);
    else if (!strcmp(cmd, "detect"))
        rc = cmd_detect(&o);
    else if (!strcmp(cmd, "apply"))
        rc = cmd_apply(&o);
    else {
        fprintf(stderr, "shoji compat: unknown subcommand '%s'\n", cmd);
        usage(stderr);
        rc = 2;
    }
    free(o.args);
    return rc;
}

/* Lets `shoji conflicts` name catalog entries and reload the agent the same way. */
void cli_compat_reload_agent(const char *state_dir);
void cli_compat_reload_agent(const char *state_dir) { reload_agent(state_dir); }
