/* policy_decide(): every step of the precedence, each phase, schedules,
 * templates, safe search — against a real policy file and a real category
 * database compiled from small squidGuard-layout lists. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "catdb/catdb_compile.h"
#include "policy/policy.h"
#include "util/util.h"

static char tmpdir[256];

static void write_text(const char *rel, const char *text)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    char dir[512];
    util_strlcpy(dir, path, sizeof dir);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(util_mkdirs(dir, 0755, err, sizeof err), 0);
    assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0644, err, sizeof err), 0);
}

static int setup_db(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/shoji-test-decide-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    write_text("lists/gambling/domains", "casino.example\n");
    write_text("lists/bank/domains", "mybank.example\n");
    write_text("lists/games/domains", "games.example\n");
    write_text("lists/webmail/domains", "mail.example\n");
    write_text("lists/social_networks/domains", "social.example\n");
    write_text("lists/press/domains", "news.example\n");
    write_text("lists/sports/urls", "news.example/sports\n");
    write_text("lists/drogue/domains", "pharma.example\n");
    char link[512];
    snprintf(link, sizeof link, "%s/lists/drugs", tmpdir);
    assert_int_equal(symlink("drogue", link), 0);   /* an alias, as in UT1 */
    char lists[512], db[512], err[256];
    snprintf(lists, sizeof lists, "%s/lists", tmpdir);
    snprintf(db, sizeof db, "%s/categories.db", tmpdir);
    const char *dirs[] = { lists };
    struct catdb_compile_opts o = { 0 };
    struct catdb_compile_result r;
    if (catdb_compile(dirs, 1, db, &o, &r, err, sizeof err) != 0)
        fail_msg("catdb_compile: %s", err);
    return 0;
}

static int teardown_db(void **st)
{
    (void)st;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Loads a policy whose text is `body` plus "category_db". */
static struct policy *load(const char *body)
{
    char text[8192], err[UTIL_ERRLEN];
    snprintf(text, sizeof text, "{\"category_db\": \"categories.db\"%s%s}", *body ? ", " : "", body);
    write_text("policy.json", text);
    char path[512];
    snprintf(path, sizeof path, "%s/policy.json", tmpdir);
    struct policy *p = NULL;
    if (policy_load_file(path, &p, err, sizeof err) != 0)
        fail_msg("policy refused: %s\n%s", err, text);
    return p;
}

static struct policy_facts connect_facts(const char *host)
{
    struct policy_facts f = { 0 };
    f.phase = POLICY_PHASE_CONNECT;
    f.host = host;
    f.sni = host;
    f.tls = true;
    f.port = 443;
    f.app.uid = -1;
    return f;
}

static struct policy_facts request_facts(const char *method, const char *host, const char *path)
{
    struct policy_facts f = connect_facts(host);
    f.phase = POLICY_PHASE_REQUEST;
    f.method = method;
    f.path = path;
    f.upload = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    return f;
}

static void expect(const struct policy *p, const struct policy_facts *f, enum policy_action a,
                   const char *rule_part)
{
    struct policy_verdict v;
    policy_decide(p, f, &v);
    if (v.action != a || (rule_part && !strstr(v.rule, rule_part)))
        fail_msg("got %s (%s), expected %s (%s)", policy_action_name(v.action), v.rule,
                 policy_action_name(a), rule_part ? rule_part : "");
}

static void test_disabled_application_is_neither_decoded_nor_filtered(void **st)
{
    (void)st;
    struct policy *p = load("\"disabled_apps\": [\"omsvchost2\", \"NTRTSCAN\"],"
                            "\"block\": [\"osce.icrc.trendmicro.com\"], \"bypass\": [\"x.example\"]");
    struct policy_facts f = connect_facts("osce.icrc.trendmicro.com");
    f.app.name = "NTRTSCAN.EXE";
    expect(p, &f, POLICY_BYPASS, "disabled_apps[1] \"NTRTSCAN\" matched app NTRTSCAN.EXE");
    f.app.name = "ntrtscan";
    expect(p, &f, POLICY_BYPASS, "disabled_apps[1]");
    f.app.name = "bash";
    f.app.exe = "NtRtScan.exe";
    expect(p, &f, POLICY_BYPASS, "matched app NtRtScan.exe");
    f.phase = POLICY_PHASE_REQUEST;
    f.method = "GET";
    f.path = "/";
    expect(p, &f, POLICY_BYPASS, "disabled_apps[1]");
    f.app.exe = "curl";
    expect(p, &f, POLICY_BLOCK, "block[0]");
    policy_unref(p);
}

static void test_disabled_application_matches_truncated_linux_comm(void **st)
{
    (void)st;
    struct policy *p = load("\"disabled_apps\": [\"verylongprocessname.exe\"]");
    struct policy_facts f = connect_facts("a.example");
    f.app.name = "verylongprocess";   /* comm: 15 bytes */
    expect(p, &f, POLICY_BYPASS, "disabled_apps[0]");
    f.app.name = "verylongproces";
    expect(p, &f, POLICY_DECODE, NULL);
    policy_unref(p);
}

static void test_app_with_hosts_tunnels_only_those_hosts_still_filtered(void **st)
{
    (void)st;
    struct policy *p = load("\"disabled_apps\": [{\"app\": \"skypeapp\", \"hosts\": [\"*.skype.com\"]}],"
                            "\"block\": [\"bad.skype.com\"]");
    struct policy_facts f = connect_facts("login.skype.com");
    f.app.name = "SkypeApp.exe";
    expect(p, &f, POLICY_TUNNEL, "disabled_apps[0] {\"app\": \"skypeapp\"} hosts[0] \"*.skype.com\"");
    f.host = f.sni = "www.example.com";
    expect(p, &f, POLICY_DECODE, NULL);
    f.host = f.sni = "bad.skype.com";
    expect(p, &f, POLICY_BLOCK, "block[0] \"bad.skype.com\"");
    f.host = f.sni = "login.skype.com";
    f.app.name = "firefox";
    expect(p, &f, POLICY_DECODE, NULL);
    policy_unref(p);
}

static void test_bypass_beats_allow_and_block(void **st)
{
    (void)st;
    struct policy *p = load("\"bypass\": [\"casino.example\"], \"block\": [\"casino.example\"],"
                            "\"categories\": {\"gambling\": \"block\"}");
    struct policy_facts f = connect_facts("casino.example");
    expect(p, &f, POLICY_BYPASS, "bypass[0] \"casino.example\" matched host casino.example");
    f = request_facts("GET", "casino.example", "/");
    expect(p, &f, POLICY_BYPASS, "bypass[0]");
    policy_unref(p);
}

static void test_allow_list_beats_block_list_and_categories(void **st)
{
    (void)st;
    struct policy *p = load("\"allow\": [\"casino.example\"], \"block\": [\"*.example\"],"
                            "\"categories\": {\"gambling\": \"block\"}");
    struct policy_facts f = request_facts("GET", "casino.example", "/");
    expect(p, &f, POLICY_ALLOW, "allow[0] \"casino.example\"");
    f = connect_facts("casino.example");
    expect(p, &f, POLICY_DECODE, NULL);
    f = request_facts("GET", "games.example", "/");
    expect(p, &f, POLICY_BLOCK, "block[0] \"*.example\" matched host games.example");
    policy_unref(p);
}

static void test_view_only_list_allows_reading_blocks_uploads(void **st)
{
    (void)st;
    struct policy *p = load("\"view_only\": [\"social.example\"], \"block\": [\"social.example\"]");
    struct policy_facts f = request_facts("GET", "social.example", "/feed");
    struct policy_verdict v;
    policy_decide(p, &f, &v);
    assert_int_equal(v.action, POLICY_ALLOW);
    assert_true(v.view_only);
    f = request_facts("POST", "social.example", "/post");
    expect(p, &f, POLICY_BLOCK, "view_only[0] \"social.example\" matched host social.example: view only, upload blocked");
    policy_unref(p);
}

static void test_block_list_beats_category_allow(void **st)
{
    (void)st;
    struct policy *p = load("\"block\": [\"news.example/politics\"], \"categories\": {\"press\": \"allow\"}");
    struct policy_facts f = request_facts("GET", "news.example", "/politics/today");
    expect(p, &f, POLICY_BLOCK, "block[0] \"news.example/politics\" matched url news.example/politics/today");
    f = request_facts("GET", "news.example", "/weather");
    expect(p, &f, POLICY_ALLOW, "categories.press = allow");
    /* A path pattern never blocks the whole host at CONNECT. */
    f = connect_facts("news.example");
    expect(p, &f, POLICY_DECODE, NULL);
    policy_unref(p);
}

static void test_category_rules_block_at_connect_and_request(void **st)
{
    (void)st;
    struct policy *p = load("\"categories\": {\"gambling\": \"block\", \"sports\": \"block\"}");
    struct policy_facts f = connect_facts("www.casino.example");
    struct policy_verdict v;
    policy_decide(p, &f, &v);
    assert_int_equal(v.action, POLICY_BLOCK);
    assert_int_equal(v.on, POLICY_ON_CATEGORY);
    assert_string_equal(v.rule, "categories.gambling = block");
    assert_int_equal(v.cats.n, 1);
    f = request_facts("GET", "casino.example", "/");
    expect(p, &f, POLICY_BLOCK, "categories.gambling = block");
    /* URL categories apply per request, not to the whole host. */
    f = request_facts("GET", "news.example", "/sports/1");
    expect(p, &f, POLICY_BLOCK, "categories.sports = block");
    f = connect_facts("news.example");
    expect(p, &f, POLICY_DECODE, NULL);
    policy_unref(p);
}

static void test_category_view_only_and_write_restriction(void **st)
{
    (void)st;
    struct policy *p = load("\"categories\": {\"social_networks\": \"view_only\", \"webmail\": \"allow\"},"
                            "\"write_restriction\": [\"webmail\"]");
    struct policy_facts f = request_facts("GET", "social.example", "/");
    expect(p, &f, POLICY_ALLOW, "categories.social_networks = view_only");
    f = request_facts("PUT", "social.example", "/photo");
    expect(p, &f, POLICY_BLOCK, "categories.social_networks = view_only: view only, upload blocked");
    f = request_facts("GET", "mail.example", "/inbox");
    expect(p, &f, POLICY_ALLOW, "categories.webmail = allow");
    f = request_facts("POST", "mail.example", "/send");
    expect(p, &f, POLICY_BLOCK, "write_restriction[0] \"webmail\" matched category webmail: upload blocked");
    f = request_facts("PATCH", "mail.example", "/draft");
    f.upload = false;   /* the method alone counts as a write */
    expect(p, &f, POLICY_BLOCK, "write_restriction[0]");
    policy_unref(p);
}

static void test_default_action(void **st)
{
    (void)st;
    struct policy *p = load("\"default_action\": \"block\", \"allow\": [\"ok.example\"],"
                            "\"decode\": {\"exclude_hosts\": [\"*.excluded.example\", \"ok.example\"]}");
    struct policy_facts f = request_facts("GET", "other.example", "/");
    expect(p, &f, POLICY_BLOCK, "default_action = block");
    f = request_facts("GET", "ok.example", "/");
    expect(p, &f, POLICY_ALLOW, "allow[0]");
    /* Not decoded means decided on the host right away. */
    f = connect_facts("a.excluded.example");
    expect(p, &f, POLICY_BLOCK, "default_action = block (not decoded: decode.exclude_hosts[0]");
    f = connect_facts("ok.example");
    expect(p, &f, POLICY_TUNNEL, "decode.exclude_hosts[1]");
    f = connect_facts("other.example");
    expect(p, &f, POLICY_DECODE, NULL);   /* the block page comes per request */
    policy_unref(p);
    p = load("");
    f = request_facts("GET", "other.example", "/");
    expect(p, &f, POLICY_ALLOW, "default_action = allow");
    policy_unref(p);
}

static void test_decode_exclusion_by_sni_ip_cidr_and_category(void **st)
{
    (void)st;
    struct policy *p = load("\"decode\": {\"exclude_hosts\": [\"*icrc.trendmicro.com\", \"161.69.0.0/16\","
                            "\"2001:db8::/32\", \"trustedsourceserver_imqa01\"], \"skip_categories\": [\"bank\"]}");
    struct policy_facts f = connect_facts(NULL);
    f.sni = "osce.icrc.trendmicro.com";
    struct policy_verdict v;
    policy_decide(p, &f, &v);
    assert_int_equal(v.action, POLICY_TUNNEL);
    assert_int_equal(v.on, POLICY_ON_SNI);
    assert_string_equal(v.rule, "decode.exclude_hosts[0] \"*icrc.trendmicro.com\" matched sni osce.icrc.trendmicro.com");
    assert_string_equal(v.matched, "osce.icrc.trendmicro.com");
    f.sni = "www.trendmicro.com";
    expect(p, &f, POLICY_DECODE, "no decode exclusion matched");
    f = connect_facts("ah2.manage.mcafee.com");
    assert_int_equal(policy_addr_parse("161.69.45.170", &f.dst), 0);
    expect(p, &f, POLICY_TUNNEL, "decode.exclude_hosts[1] \"161.69.0.0/16\" matched ip 161.69.45.170");
    assert_int_equal(policy_addr_parse("[2001:db8::10]", &f.dst), 0);
    expect(p, &f, POLICY_TUNNEL, "matched ip 2001:db8::10");
    f = connect_facts("www.mybank.example");
    expect(p, &f, POLICY_TUNNEL, "decode.skip_categories[0] \"bank\" matched category bank");
    policy_unref(p);
}

static void test_decode_disabled_and_learned_exclusion_tunnel(void **st)
{
    (void)st;
    struct policy *p = load("\"decode\": {\"enabled\": false}");
    assert_false(policy_decode_enabled(p));
    struct policy_facts f = connect_facts("a.example");
    expect(p, &f, POLICY_TUNNEL, "decode.enabled = false");
    policy_unref(p);
    p = load("");
    f.learned = "curl a.example (tls alert unknown_ca)";
    expect(p, &f, POLICY_TUNNEL, "learned exclusion curl a.example");
    policy_unref(p);
}

static void test_exclusion_by_certificate_name_tunnels_without_decoding(void **st)
{
    (void)st;
    struct policy *p = load("\"decode\": {\"exclude_hosts\": [\"trustedsourceserver_imqa01\", \"*.apple.com\"]}");
    assert_true(policy_has_cert_rules(p));
    struct policy_facts f = connect_facts("tau.mcafee.example");
    expect(p, &f, POLICY_DECODE, NULL);
    const char *names[] = { "TrustedSourceServer_IMQA01" };
    f.phase = POLICY_PHASE_CERT;
    f.cert_names = names;
    f.ncert_names = 1;
    struct policy_verdict v;
    policy_decide(p, &f, &v);
    assert_int_equal(v.action, POLICY_TUNNEL);
    assert_int_equal(v.on, POLICY_ON_CERT);
    assert_string_equal(v.rule, "decode.exclude_hosts[0] \"trustedsourceserver_imqa01\" matched cert TrustedSourceServer_IMQA01");
    const char *apple[] = { "example.net", "gsa.apple.com" };
    f.cert_names = apple;
    f.ncert_names = 2;
    expect(p, &f, POLICY_TUNNEL, "\"*.apple.com\" matched cert gsa.apple.com");
    f.ncert_names = 1;
    expect(p, &f, POLICY_DECODE, NULL);
    policy_unref(p);
}

static void test_schedules_apply_inside_their_window(void **st)
{
    (void)st;
    struct policy *p = load("\"categories\": {\"games\": \"allow\"}, \"schedules\": ["
                            "{\"days\": [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"], \"from\": \"08:00\", \"to\": \"16:00\","
                            " \"categories\": {\"games\": \"block\"}},"
                            "{\"from\": \"22:00\", \"to\": \"06:00\", \"categories\": {\"social_networks\": \"block\"}}]");
    struct policy_facts f = request_facts("GET", "games.example", "/");
    f.local_wday = 1;
    f.local_minute = 9 * 60;
    expect(p, &f, POLICY_BLOCK, "schedules[0].categories.games = block (08:00-16:00)");
    f.local_minute = 16 * 60;
    expect(p, &f, POLICY_ALLOW, "categories.games = allow");
    f.local_wday = 6;
    f.local_minute = 9 * 60;
    expect(p, &f, POLICY_ALLOW, "categories.games = allow");
    f = request_facts("GET", "social.example", "/");
    f.local_wday = 3;
    f.local_minute = 23 * 60;
    expect(p, &f, POLICY_BLOCK, "schedules[1]");
    f.local_minute = 5 * 60;
    expect(p, &f, POLICY_BLOCK, "schedules[1]");
    f.local_minute = 12 * 60;
    expect(p, &f, POLICY_ALLOW, "default_action = allow");
    policy_unref(p);
}

static void test_templates_map_categories_and_the_file_overrides_them(void **st)
{
    (void)st;
    struct policy *p = load("\"template\": \"elementary\"");
    assert_string_equal(policy_template_name(p), "elementary");
    struct policy_facts f = request_facts("GET", "games.example", "/");
    expect(p, &f, POLICY_BLOCK, "template elementary: games = block");
    f = request_facts("GET", "casino.example", "/");
    expect(p, &f, POLICY_BLOCK, "template elementary: gambling = block");
    policy_unref(p);
    p = load("\"template\": \"elementary\", \"categories\": {\"games\": \"allow\"}");
    f = request_facts("GET", "games.example", "/");
    expect(p, &f, POLICY_ALLOW, "categories.games = allow");
    policy_unref(p);
    /* The file's rule wins even when it names an alias of the template's category. */
    p = load("\"template\": \"elementary\", \"categories\": {\"drogue\": \"allow\"}, \"decode\": {\"skip_categories\": [\"drugs\"]}");
    f = request_facts("GET", "pharma.example", "/");
    expect(p, &f, POLICY_ALLOW, "categories.drogue = allow");
    f = connect_facts("pharma.example");
    expect(p, &f, POLICY_TUNNEL, "decode.skip_categories[0] \"drugs\"");
    policy_unref(p);
    p = load("\"template\": \"university\"");
    f = request_facts("GET", "games.example", "/");
    expect(p, &f, POLICY_ALLOW, "default_action = allow");
    policy_unref(p);
}

static void test_safe_search_per_engine(void **st)
{
    (void)st;
    struct policy *p = load("\"safe_search\": {\"google\": true, \"youtube\": true}");
    struct policy_facts f = request_facts("GET", "www.google.co.jp", "/search?q=x");
    struct policy_verdict v;
    policy_decide(p, &f, &v);
    assert_true(v.safe_search);
    f.host = "www.bing.com";
    policy_decide(p, &f, &v);
    assert_false(v.safe_search);
    assert_true(policy_safe_search(p, POLICY_ENGINE_YOUTUBE));
    assert_false(policy_safe_search(p, POLICY_ENGINE_DUCKDUCKGO));
    assert_int_equal(policy_search_engine("m.youtube.com"), POLICY_ENGINE_YOUTUBE);
    assert_int_equal(policy_search_engine("google.com"), POLICY_ENGINE_GOOGLE);
    assert_int_equal(policy_search_engine("notgoogle.com"), POLICY_ENGINE_NONE);
    assert_int_equal(policy_search_engine("mail.google.com"), POLICY_ENGINE_NONE);
    assert_int_equal(policy_search_engine("DuckDuckGo.com"), POLICY_ENGINE_DUCKDUCKGO);
    policy_unref(p);
    p = load("\"safe_search\": true");
    f.host = "www.bing.com";
    policy_decide(p, &f, &v);
    assert_true(v.safe_search);
    policy_unref(p);
}

static void test_accessors_and_defaults(void **st)
{
    (void)st;
    struct policy *p = load("\"auto_avoid\": {\"enabled\": true, \"ttl\": \"12h\", \"scope\": \"host\"},"
                            "\"block_page\": \"pages\"");
    const struct policy_auto_avoid *a = policy_auto_avoid(p);
    assert_true(a->enabled);
    assert_int_equal(a->ttl, 12 * 3600);
    assert_int_equal(a->scope, POLICY_AVOID_HOST);
    assert_non_null(strstr(policy_block_page_dir(p), "/pages"));
    assert_non_null(strstr(policy_path(p), "policy.json"));
    assert_non_null(policy_catdb(p));
    policy_unref(p);
    p = policy_default();
    assert_true(policy_decode_enabled(p));
    assert_int_equal(policy_auto_avoid(p)->ttl, 7 * 86400);
    struct policy_facts f = connect_facts("a.example");
    expect(p, &f, POLICY_DECODE, NULL);
    f = request_facts("POST", "a.example", "/");
    expect(p, &f, POLICY_ALLOW, "default_action = allow");
    policy_unref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disabled_application_is_neither_decoded_nor_filtered),
        cmocka_unit_test(test_disabled_application_matches_truncated_linux_comm),
        cmocka_unit_test(test_app_with_hosts_tunnels_only_those_hosts_still_filtered),
        cmocka_unit_test(test_bypass_beats_allow_and_block),
        cmocka_unit_test(test_allow_list_beats_block_list_and_categories),
        cmocka_unit_test(test_view_only_list_allows_reading_blocks_uploads),
        cmocka_unit_test(test_block_list_beats_category_allow),
        cmocka_unit_test(test_category_rules_block_at_connect_and_request),
        cmocka_unit_test(test_category_view_only_and_write_restriction),
        cmocka_unit_test(test_default_action),
        cmocka_unit_test(test_decode_exclusion_by_sni_ip_cidr_and_category),
        cmocka_unit_test(test_decode_disabled_and_learned_exclusion_tunnel),
        cmocka_unit_test(test_exclusion_by_certificate_name_tunnels_without_decoding),
        cmocka_unit_test(test_schedules_apply_inside_their_window),
        cmocka_unit_test(test_templates_map_categories_and_the_file_overrides_them),
        cmocka_unit_test(test_safe_search_per_engine),
        cmocka_unit_test(test_accessors_and_defaults),
    };
    return cmocka_run_group_tests(tests, setup_db, teardown_db);
}
