/* The policy loader: a bad file is refused with the file, the line, the key
 * and what was expected; good files (the shipped sample, every template)
 * load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy/policy.h"
#include "util/util.h"

/* Loads `text` (validation only: no category database is opened) and
 * checks the error names the line and contains every given fragment. */
static void refused(const char *text, int line, const char *frag1, const char *frag2)
{
    char err[UTIL_ERRLEN], want[64];
    struct policy *p = (struct policy *)1;
    int r = policy_load_text(text, strlen(text), "t.json", NULL, &p, err, sizeof err);
    if (r >= 0)
        fail_msg("accepted: %s", text);
    assert_null(p);
    snprintf(want, sizeof want, "t.json:%d: ", line);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("expected line %d in: %s", line, err);
    if (frag1 && !strstr(err, frag1))
        fail_msg("expected \"%s\" in: %s", frag1, err);
    if (frag2 && !strstr(err, frag2))
        fail_msg("expected \"%s\" in: %s", frag2, err);
}

static void accepted(const char *text)
{
    char err[UTIL_ERRLEN];
    struct policy *p = NULL;
    if (policy_load_text(text, strlen(text), "t.json", NULL, &p, err, sizeof err) != 0)
        fail_msg("refused: %s\n%s", err, text);
    policy_unref(p);
}

static void test_unknown_key_is_refused_with_did_you_mean(void **st)
{
    (void)st;
    refused("{\n  \"name\": \"x\",\n  \"defualt_action\": \"block\"\n}", 3,
            "key `defualt_action`: unknown key (did you mean `default_action`?)", NULL);
    refused("{\"decode\": {\n \"enabled\": true,\n \"exclude_host\": []}}", 3,
            "key `decode.exclude_host`", "did you mean `exclude_hosts`?");
    refused("{\"zzz\": 1}", 1, "unknown key; expected one of: version", NULL);
}

static void test_wrong_type_names_key_line_and_expectation(void **st)
{
    (void)st;
    refused("{\n\"decode\": {\n  \"exclude_hosts\": [\n    \"a.example\",\n    \"b.example\",\n    12\n  ]\n}}", 6,
            "key `decode.exclude_hosts[2]`: expected a pattern string, got 12", NULL);
    refused("{\"default_action\": \"deny\"}", 1, "key `default_action`: expected \"allow\" or \"block\", got \"deny\"", NULL);
    refused("{\n\"decode\": {\"enabled\": \"yes\"}}", 2, "key `decode.enabled`: expected true or false, got \"yes\"", NULL);
    refused("{\"block\": \"x.example\"}", 1, "key `block`: expected a list of patterns", NULL);
    refused("{\"safe_search\": {\"gogle\": true}}", 1, "did you mean `google`?", NULL);
}

static void test_bad_patterns_are_refused(void **st)
{
    (void)st;
    refused("{\"allow\": [\"ok.example\",\n\"bad host\"]}", 2, "key `allow[1]`", "is not a host name");
    refused("{\"decode\": {\"exclude_hosts\": [\n\"161.69.45.0/33\"]}}", 2, "key `decode.exclude_hosts[0]`", "0..32");
    refused("{\"decode\": {\"exclude_hosts\": [\"example.com/path\"]}}", 1, "host/path pattern is not allowed", NULL);
    refused("{\"block\": [\"\"]}", 1, "empty pattern", NULL);
}

static void test_bad_category_rules_are_refused(void **st)
{
    (void)st;
    refused("{\"categories\": {\n\"gambling\": \"blok\"}}", 2, "key `categories.gambling`", "did you mean \"block\"?");
    refused("{\"categories\": {\"gamblng\": \"block\"}}", 1, "unknown category \"gamblng\" (did you mean \"gambling\"?)", NULL);
    refused("{\"write_restriction\": [\"webmail\", \"socal_networks\"]}", 1, "key `write_restriction[1]`", "social_networks");
    refused("{\"template\": \"highschool\"}", 1, "unknown template", "did you mean \"high_school\"?");
    /* A custom category name (not near any UT1 name) is fine without a db. */
    accepted("{\"categories\": {\"company_blocked_sites\": \"block\"}}");
}

static void test_bad_schedules_are_refused(void **st)
{
    (void)st;
    refused("{\"schedules\": [\n{\"from\": \"25:00\", \"to\": \"26:00\", \"categories\": {}}]}", 2,
            "key `schedules[0].from`", "expected a time \"HH:MM\"");
    refused("{\"schedules\": [{\"from\": \"08:00\", \"to\": \"08:00\", \"categories\": {}}]}", 1, "window is empty", NULL);
    refused("{\"schedules\": [{\"days\": [\"monday\"], \"from\": \"08:00\", \"to\": \"09:00\", \"categories\": {}}]}", 1,
            "key `schedules[0].days[0]`", "expected one of sun, mon");
    refused("{\"schedules\": [{\"from\": \"08:00\", \"to\": \"09:00\"}]}", 1, "missing \"categories\"", NULL);
    accepted("{\"schedules\": [{\"name\": \"night\", \"from\": \"22:00\", \"to\": \"24:00\", \"categories\": {\"games\": \"block\"}}]}");
}

static void test_bad_apps_auto_avoid_and_syntax(void **st)
{
    (void)st;
    refused("{\"disabled_apps\": [\"ok\",\n {\"app\": \"skypeapp\"}]}", 2, "key `disabled_apps[1]`", "missing \"hosts\"");
    refused("{\"disabled_apps\": [42]}", 1, "expected an application name", "got 42");
    refused("{\"auto_avoid\": {\"ttl\": \"7 days\"}}", 1, "key `auto_avoid.ttl`", "\"7d\"");
    refused("{\"auto_avoid\": {\"scope\": \"app\"}}", 1, "key `auto_avoid.scope`", "\"app+host\"");
    char err[UTIL_ERRLEN];
    struct policy *p;
    const char *bad = "{\n\"allow\": [\n\"a\",\n]}";
    assert_true(policy_load_text(bad, strlen(bad), "t.json", NULL, &p, err, sizeof err) < 0);
    assert_non_null(strstr(err, "t.json:4: not valid JSON"));
    const char *dup = "{\"allow\": [], \"allow\": []}";
    assert_true(policy_load_text(dup, strlen(dup), "t.json", NULL, &p, err, sizeof err) < 0);
    assert_non_null(strstr(err, "duplicate"));
    assert_true(policy_load_text("[]", 2, "t.json", NULL, &p, err, sizeof err) < 0);
    assert_non_null(strstr(err, "must be a JSON object"));
}

static void test_missing_files_are_clear_errors(void **st)
{
    (void)st;
    char err[UTIL_ERRLEN];
    struct policy *p;
    assert_true(policy_load_file("/nonexistent/policy.json", &p, err, sizeof err) < 0);
    assert_non_null(strstr(err, "/nonexistent/policy.json"));
    const char *t = "{\n\"category_db\": \"no-such.db\"}";
    assert_true(policy_load_text(t, strlen(t), "t.json", "/tmp", &p, err, sizeof err) < 0);
    assert_non_null(strstr(err, "t.json:2: key `category_db`: cannot open the category database"));
}

static void test_every_template_loads(void **st)
{
    (void)st;
    const char *names[] = { "elementary", "junior_high", "high_school", "university", "enterprise" };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(names); i++) {
        char text[128];
        snprintf(text, sizeof text, "{\"template\": \"%s\"}", names[i]);
        accepted(text);
    }
}

static void test_shipped_sample_policy_loads(void **st)
{
    (void)st;
    const char *src = getenv("SHOJI_SOURCE_DIR");
    char path[1024], *text, err[UTIL_ERRLEN];
    size_t len;
    snprintf(path, sizeof path, "%s/data/policy.sample.json", src ? src : SHOJI_SOURCE_DIR);
    assert_int_equal(util_read_file(path, 1 << 20, &text, &len, err, sizeof err), 0);
    struct policy *p = NULL;
    /* Without base_dir the category database is not opened: validation only. */
    if (policy_load_text(text, len, path, NULL, &p, err, sizeof err) != 0)
        fail_msg("sample refused: %s", err);
    assert_true(policy_has_cert_rules(p));
    policy_unref(p);
    free(text);
}

static void test_ten_thousand_exclusions_and_a_thousand_apps_decide_correctly(void **st)
{
    (void)st;
    size_t cap = 1 << 20, n = 0;
    char *t = malloc(cap), err[UTIL_ERRLEN];
    assert_non_null(t);
    n += (size_t)snprintf(t + n, cap - n, "{\"decode\": {\"exclude_hosts\": [");
    for (int i = 0; i < 10000; i++)
        n += (size_t)snprintf(t + n, cap - n, "%s\"%s%d.vendor.example\"", i ? "," : "", i % 2 ? "*.zone" : "host", i);
    n += (size_t)snprintf(t + n, cap - n, "]}, \"disabled_apps\": [");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(t + n, cap - n, "%s\"app%d.exe\"", i ? "," : "", i);
    snprintf(t + n, cap - n, "]}");
    struct policy *p;
    if (policy_load_text(t, strlen(t), "big.json", NULL, &p, err, sizeof err) != 0)
        fail_msg("%s", err);
    struct policy_facts f = { 0 };
    struct policy_verdict v;
    f.phase = POLICY_PHASE_CONNECT;
    for (int i = 0; i < 10000; i += 7) {
        char host[64], want[128];
        snprintf(host, sizeof host, i % 2 ? "x.zone%d.vendor.example" : "host%d.vendor.example", i);
        f.host = f.sni = host;
        policy_decide(p, &f, &v);
        snprintf(want, sizeof want, "decode.exclude_hosts[%d] ", i);
        assert_int_equal(v.action, POLICY_TUNNEL);
        assert_non_null(strstr(v.rule, want));
    }
    f.host = f.sni = "host1.vendor.example";   /* index 1 is a glob for zone1 */
    policy_decide(p, &f, &v);
    assert_int_equal(v.action, POLICY_DECODE);
    f.app.name = "APP999";
    policy_decide(p, &f, &v);
    assert_int_equal(v.action, POLICY_BYPASS);
    assert_string_equal(v.rule, "disabled_apps[999] \"app999.exe\" matched app APP999");
    f.app.name = "app1000";
    policy_decide(p, &f, &v);
    assert_int_equal(v.action, POLICY_DECODE);
    policy_unref(p);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_key_is_refused_with_did_you_mean),
        cmocka_unit_test(test_wrong_type_names_key_line_and_expectation),
        cmocka_unit_test(test_bad_patterns_are_refused),
        cmocka_unit_test(test_bad_category_rules_are_refused),
        cmocka_unit_test(test_bad_schedules_are_refused),
        cmocka_unit_test(test_bad_apps_auto_avoid_and_syntax),
        cmocka_unit_test(test_missing_files_are_clear_errors),
        cmocka_unit_test(test_every_template_loads),
        cmocka_unit_test(test_shipped_sample_policy_loads),
        cmocka_unit_test(test_ten_thousand_exclusions_and_a_thousand_apps_decide_correctly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
