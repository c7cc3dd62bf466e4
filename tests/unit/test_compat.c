/* Unit tests of the compatibility catalog: the shipped catalog holds every
 * workaround of the vendor note (seed/000_509f17ee690fabc7.txt), bad catalog
 * files are refused naming the entry and field, a site's file extends or
 * replaces entries, lookups by host and application, detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat/compat.h"
#include "util/util.h"

static struct compat_catalog *shipped(void)
{
    char err[UTIL_ERRLEN];
    struct compat_catalog *c = NULL;
    unsetenv("SHOJI_COMPAT_CATALOG");
    int rc = compat_catalog_load_shipped(&c, err, sizeof err);
    if (rc < 0)
        fail_msg("shipped catalog refused: %s", err);
    return c;
}

static bool strs_has(const struct compat_strs *s, const char *v)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], v))
            return true;
    return false;
}

enum wkind { EXCLUDE, DISABLE };

/* Whether entry `id` has `value` as a decode exclusion / disabled app in one
 * of its workarounds. */
static bool entry_has(const struct compat_catalog *c, const char *id, enum wkind k, const char *value)
{
    const struct compat_entry *e = compat_catalog_find(c, id);
    if (!e)
        fail_msg("no catalog entry %s", id);
    for (size_t w = 0; w < e->nworkarounds; w++)
        if (strs_has(k == EXCLUDE ? &e->workarounds[w].exclude_hosts
                                  : &e->workarounds[w].disabled_apps, value))
            return true;
    return false;
}

/* Every host, IP, certificate name and application the vendor note names,
 * with the entry (symptom) it belongs to and the kind of workaround. */
static void test_every_name_of_the_vendor_note_is_in_the_catalog(void **state)
{
    static const struct { const char *id; enum wkind k; const char *v; } note[] = {
        { "trendmicro-bs9-smartscan", EXCLUDE, "*icrc.trendmicro.com" },
        { "trendmicro-bs9-smartscan", DISABLE, "NTRTSCAN" },
        { "trendmicro-vbbss6-smartscan", EXCLUDE, "*icrc.trendmicro.com" },
        { "trendmicro-vbbss6-smartscan", EXCLUDE, "wfbs-svc-nabu.trendmicro.com" },
        { "trendmicro-vbbss6-smartscan", DISABLE, "NTRTSCAN" },
        { "kaspersky-kes10-activation", EXCLUDE, "activation-v2.kaspersky.com" },
        { "kaspersky-ks2017-activation", EXCLUDE, "activation-v2.kaspersky.com" },
        { "mcafee-epe-epo-unreachable", EXCLUDE, "161.69.45.170" },
        { "mcafee-epe-epo-unreachable", EXCLUDE, "ah2.manage.mcafee.com" },
        { "mcafee-epe-epo-unreachable", EXCLUDE, "*mcafee.com" },
        { "mcafee-epe-agent-install", EXCLUDE, "161.69.45.170" },
        { "mcafee-epe-invalid-certificate", EXCLUDE, "trustedsourceserver_imqa01" },
        { "mcafee-tp2017-invalid-certificate", EXCLUDE, "trustedserverserver_imqa01" },
        { "mcafee-tp2017-invalid-certificate", EXCLUDE, "trustedsourceserver_imqa01" },
        { "microsoft-intune-remote-tasks", DISABLE, "omsvchost2" },
        { "microsoft-intune-install", DISABLE, "omsvchost2" },
        { "microsoft-intune-install", EXCLUDE, "*manage.microsoft.com" },
        { "skype-store-signin", DISABLE, "skypeapp" },
        { "skype-store-signin", DISABLE, "skypehost" },
        { "apple-itunes-icloud-certificate-dialog", EXCLUDE, "gsa.apple.com" },
        { "apple-itunes-icloud-signin", EXCLUDE, "*.apple.com" },
        { "apple-itunes-icloud-signin", EXCLUDE, "*.icloud.com" },
    };
    struct compat_catalog *c = shipped();
    for (size_t i = 0; i < sizeof note / sizeof note[0]; i++)
        if (!entry_has(c, note[i].id, note[i].k, note[i].v))
            fail_msg("%s lacks %s %s", note[i].id, note[i].k == EXCLUDE ? "exclusion" : "disabled app",
                     note[i].v);
    /* and never as the other kind */
    assert_false(entry_has(c, "trendmicro-bs9-smartscan", EXCLUDE, "NTRTSCAN"));
    assert_false(entry_has(c, "skype-store-signin", EXCLUDE, "skypeapp"));
    compat_catalog_free(c);
}

/* The PRODUCT.md table's 13 rows (product, symptom) each have an entry; the
 * note's 17 symptoms are 17 entries. */
static void test_every_row_and_symptom_has_an_entry(void **state)
{
    static const char *ids[] = {
        "trendmicro-bs9-smartscan", "trendmicro-vbbss6-smartscan", "symantec-sep14-offline",
        "kaspersky-kes10-activation", "kaspersky-kes10-filtering-disabled",
        "kaspersky-kes10-uninstall-account", "kaspersky-ks2017-activation",
        "mcafee-epe-epo-unreachable", "mcafee-epe-agent-install", "mcafee-epe-invalid-certificate",
        "mcafee-tp2017-invalid-certificate", "eset-eps10-block-page",
        "microsoft-intune-remote-tasks", "microsoft-intune-install", "skype-store-signin",
        "apple-itunes-icloud-certificate-dialog", "apple-itunes-icloud-signin",
    };
    struct compat_catalog *c = shipped();
    assert_int_equal(compat_catalog_count(c), sizeof ids / sizeof ids[0]);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        const struct compat_entry *e = compat_catalog_find(c, ids[i]);
        if (!e)
            fail_msg("missing entry %s", ids[i]);
        assert_non_null(strstr(e->source_title, "InterSafe CATS Ver4.6"));
        assert_string_equal(e->source_date, "2017-11-06");
        assert_true(e->symptom.ja[0] && e->symptom.en[0]);
    }
    /* install-order conditions, as the note states them */
    static const char *ordered[] = { "kaspersky-ks2017-activation", "mcafee-epe-agent-install",
                                     "microsoft-intune-install", "mcafee-tp2017-invalid-certificate" };
    for (size_t i = 0; i < sizeof ordered / sizeof ordered[0]; i++) {
        const struct compat_entry *e = compat_catalog_find(c, ordered[i]);
        assert_non_null(strstr(e->condition_kind, "install_order"));
        assert_string_equal(e->condition_order.v[0], "shoji");
    }
    assert_string_equal(compat_catalog_find(c, "skype-store-signin")->condition_kind, "coexistence");
    compat_catalog_free(c);
}

static void test_steps_name_shoji_and_site_specific_host_is_a_placeholder(void **state)
{
    struct compat_catalog *c = shipped();
    static const char *with_steps[] = { "kaspersky-kes10-filtering-disabled", "eset-eps10-block-page" };
    for (size_t i = 0; i < 2; i++) {
        const struct compat_workaround *w = &compat_catalog_find(c, with_steps[i])->workarounds[0];
        assert_true(w->steps_ja.n > 0 && w->steps_en.n > 0);
        bool names_shoji = false;
        for (size_t k = 0; k < w->steps_en.n; k++) {
            names_shoji |= strstr(w->steps_en.v[k], "shoji") != NULL;
            assert_null(strstr(w->steps_en.v[k], "nsffprx"));
            assert_null(strstr(w->steps_ja.v[k], "nsffprx"));
            assert_null(strstr(w->steps_ja.v[k], "spfgui"));
        }
        assert_true(names_shoji);
    }
    const struct compat_entry *sep = compat_catalog_find(c, "symantec-sep14-offline");
    assert_non_null(sep->workarounds[0].site_specific);
    assert_int_equal(sep->workarounds[0].exclude_hosts.n, 0);
    compat_catalog_free(c);
}

static void test_lookup_by_host_and_by_application(void **state)
{
    struct compat_catalog *c = shipped();
    const struct compat_entry *e = compat_match_host(c, "ds5.ICRC.trendmicro.com");
    assert_non_null(e);
    assert_string_equal(e->vendor, "Trend Micro");
    assert_string_equal(compat_match_host(c, "p25-buy.itunes.apple.com")->id, "apple-itunes-icloud-signin");
    assert_string_equal(compat_match_host(c, "gsa.apple.com")->id, "apple-itunes-icloud-certificate-dialog");
    assert_non_null(compat_match_host(c, "161.69.45.170"));
    assert_null(compat_match_host(c, "www.example.com"));
    assert_null(compat_match_host(c, "apple.com.evil.example"));
    assert_string_equal(compat_match_app(c, "SkypeHost.EXE")->id, "skype-store-signin");
    assert_string_equal(compat_match_app(c, "ntrtscan")->id, "trendmicro-bs9-smartscan");
    assert_non_null(compat_match_app(c, "TmListen"));      /* a detection process */
    assert_null(compat_match_app(c, "firefox"));
    compat_catalog_free(c);
}

static void test_glob_and_app_names(void **state)
{
    assert_true(compat_glob_match("*icrc.trendmicro.com", "icrc.trendmicro.com"));
    assert_true(compat_glob_match("*icrc.trendmicro.com", "a.b.ICRC.trendmicro.com"));
    assert_false(compat_glob_match("*icrc.trendmicro.com", "icrc.trendmicro.com.evil"));
    assert_true(compat_glob_match("*.apple.com", "gsa.apple.com"));
    assert_false(compat_glob_match("*.apple.com", "apple.com"));
    assert_true(compat_glob_match("a*b*c", "aXXbYYbc"));
    assert_false(compat_glob_match("a*b*c", "aXXbYY"));
    assert_true(compat_app_eq("NTRTSCAN.exe", "ntrtscan"));
    assert_true(compat_app_eq("skypehost", "SKYPEHOST.EXE"));
    assert_false(compat_app_eq("skype", "skypehost"));
    assert_false(compat_app_eq(".exe", ""));
}

/* ---- bad catalogs ---- */

static const char *good_entry =
    "{\"id\": \"site-proxy\", \"vendor\": \"Example\", \"product\": \"Example Agent\","
    " \"versions\": \"1\", \"symptom\": {\"ja\": \"接続できない\", \"en\": \"cannot connect\"},"
    " \"condition\": {\"kind\": \"coexistence\", \"ja\": \"同居時\", \"en\": \"together\"},"
    " \"workarounds\": [{\"exclude_hosts\": [\"mgmt.example.com\"]}],"
    " \"detect\": {\"windows_processes\": [], \"linux_processes\": [\"exagent\"], \"debian_packages\": []},"
    " \"source\": {\"title\": \"site notes\", \"date\": \"2024-01-02\", \"section\": \"1\"},"
    " \"uncertain\": []}";

/* A catalog text of two entries: a good one, then the good one with `path`
 * (dot-separated, [n] for arrays) set to `value` (JSON; NULL deletes). */
static char *catalog_with(const char *path, const char *value)
{
    json_t *e0 = json_loads(good_entry, 0, NULL);
    json_t *e1 = json_deep_copy(e0);
    json_object_set_new(e1, "id", json_string("second"));
    assert_non_null(e0);
    json_t *parent = e1;
    char buf[256];
    util_strlcpy(buf, path, sizeof buf);
    char *save, *tok = strtok_r(buf, ".", &save), *next;
    while ((next = strtok_r(NULL, ".", &save)) != NULL) {
        char *br = strchr(tok, '[');
        if (br) {
            *br = '\0';
            parent = json_array_get(json_object_get(parent, tok), (size_t)atoi(br + 1));
        } else {
            parent = json_object_get(parent, tok);
        }
        assert_non_null(parent);
        tok = next;
    }
    if (value)
        json_object_set_new(parent, tok, json_loads(value, JSON_DECODE_ANY, NULL));
    else
        json_object_del(parent, tok);
    json_t *root = json_pack("{s:i, s:[o,o]}", "version", 1, "entries", e0, e1);
    char *text = json_dumps(root, 0);
    json_decref(root);
    return text;
}

static void test_bad_catalogs_are_refused_naming_entry_and_field(void **state)
{
    static const struct { const char *path, *value, *want1, *want2; } cases[] = {
        { "workarounds[0].exclude_hosts", "[\"ok.example\", \"a b\"]",
          "entries[1] (id \"second\")", "field `workarounds[0].exclude_hosts[1]`" },
        { "symptom", NULL, "entries[1] (id \"second\")", "field `symptom`: missing" },
        { "workarounds[0].exclude_host", "[\"x.example\"]", "workarounds[0].exclude_host`", "unknown field" },
        { "id", "\"site-proxy\"", "entries[1] (id \"site-proxy\")", "duplicate id" },
        { "condition.kind", "\"install_order\"", "field `condition.order`", "missing" },
        { "id", "\"Bad_Id\"", "entries[1]", "field `id`" },
        { "workarounds", "[]", "(id \"second\")", "field `workarounds`" },
        { "workarounds", "[{}]", "(id \"second\")", "field `workarounds[0]`" },
        { "source.date", "\"2017/11/06\"", "(id \"second\")", "field `source.date`" },
        { "detect.linux_processes", "[12]", "field `detect.linux_processes[0]`", "got an integer" },
        { "symptom.ja", "\"\"", "field `symptom.ja`", "non-empty" },
        { "vendor", "null", "field `vendor`", "got null" },
    };
    char err[UTIL_ERRLEN];
    struct compat_catalog *c = shipped();
    size_t before = compat_catalog_count(c);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = catalog_with(cases[i].path, cases[i].value);
        err[0] = '\0';
        int rc = compat_catalog_add_text(c, text, strlen(text), "site.json", err, sizeof err);
        free(text);
        if (rc >= 0 || !strstr(err, cases[i].want1) || !strstr(err, cases[i].want2) ||
            !strstr(err, "site.json"))
            fail_msg("case %zu (%s): rc %d, err: %s", i, cases[i].path, rc, err);
        assert_int_equal(compat_catalog_count(c), before);   /* all or nothing */
        assert_null(compat_catalog_find(c, "site-proxy"));
    }
    assert_true(compat_catalog_add_text(c, "{\"version\":1,", 13, "x.json", err, sizeof err) < 0);
    assert_non_null(strstr(err, "not valid JSON"));
    assert_true(compat_catalog_add_text(c, "{\"version\":2,\"entries\":[]}", 26, "x.json", err,
                                        sizeof err) < 0);
    assert_non_null(strstr(err, "version"));
    compat_catalog_free(c);
}

static void test_site_catalog_extends_and_replaces_by_id(void **state)
{
    char err[UTIL_ERRLEN];
    struct compat_catalog *c = shipped();
    size_t before = compat_catalog_count(c);
    char *text = catalog_with("id", "\"skype-store-signin\"");
    int rc = compat_catalog_add_text(c, text, strlen(text), "site.json", err, sizeof err);
    free(text);
    assert_int_equal(rc, 2);
    assert_int_equal(compat_catalog_count(c), before + 1);   /* one new, one replaced */
    const struct compat_entry *e = compat_catalog_find(c, "skype-store-signin");
    assert_string_equal(e->vendor, "Example");
    assert_string_equal(e->origin, "site.json");
    assert_string_equal(e->replaced_origin, "shipped");
    assert_string_equal(compat_catalog_find(c, "site-proxy")->origin, "site.json");
    assert_string_equal(compat_match_host(c, "mgmt.example.com")->vendor, "Example");
    compat_catalog_free(c);
}

static void test_env_replaces_the_shipped_catalog(void **state)
{
    char path[] = "/tmp/shoji-test-compat-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *text = catalog_with("id", "\"other\"");
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    free(text);
    setenv("SHOJI_COMPAT_CATALOG", path, 1);
    char err[UTIL_ERRLEN];
    struct compat_catalog *c;
    assert_int_equal(compat_catalog_load_shipped(&c, err, sizeof err), 0);
    assert_int_equal(compat_catalog_count(c), 2);
    assert_null(compat_catalog_find(c, "skype-store-signin"));
    compat_catalog_free(c);
    unsetenv("SHOJI_COMPAT_CATALOG");
    unlink(path);
}

static void test_detect_finds_products_by_process_and_package(void **state)
{
    struct compat_catalog *c = shipped();
    char *procs[] = { "bash\t1", "NTRTSCAN\t42", "SkypeHost.exe\t43", "notepad\t44" };
    char *pkgs[] = { "coreutils", "kesl" };
    struct compat_scan s = { procs, 4, pkgs, 2 };
    struct compat_found *f;
    size_t n;
    assert_int_equal(compat_detect(c, &s, &f, &n), 0);
    bool trend = false, skype = false, kes = false;
    for (size_t i = 0; i < n; i++) {
        trend |= !strcmp(f[i].entry->id, "trendmicro-bs9-smartscan") &&
                 strstr(f[i].what, "NTRTSCAN (pid 42)");
        skype |= !strcmp(f[i].entry->id, "skype-store-signin");
        kes |= !strcmp(f[i].entry->id, "kaspersky-kes10-activation") &&
               !strcmp(f[i].what, "package kesl");
        assert_null(strstr(f[i].what, "notepad"));
        assert_null(strstr(f[i].what, "bash"));
    }
    assert_true(trend && skype && kes);
    assert_int_equal(n, 2 + 1 + 3);   /* 2 Trend entries, Skype, 3 KES10 entries */
    free(f);
    struct compat_scan none = { procs, 1, NULL, 0 };
    assert_int_equal(compat_detect(c, &none, &f, &n), 0);
    assert_int_equal(n, 0);
    compat_catalog_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_name_of_the_vendor_note_is_in_the_catalog),
        cmocka_unit_test(test_every_row_and_symptom_has_an_entry),
        cmocka_unit_test(test_steps_name_shoji_and_site_specific_host_is_a_placeholder),
        cmocka_unit_test(test_lookup_by_host_and_by_application),
        cmocka_unit_test(test_glob_and_app_names),
        cmocka_unit_test(test_bad_catalogs_are_refused_naming_entry_and_field),
        cmocka_unit_test(test_site_catalog_extends_and_replaces_by_id),
        cmocka_unit_test(test_env_replaces_the_shipped_catalog),
        cmocka_unit_test(test_detect_finds_products_by_process_and_package),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
