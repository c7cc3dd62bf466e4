/* Unit tests of policy file editing (what `shoji compat apply` and `shoji
 * conflicts promote` do to the admin's file): additions keep every other key
 * and the key order, a second identical edit changes nothing, bad files are
 * refused untouched, the result loads with the real policy loader, and the
 * agent reload only signals a process that is a shoji. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "policy/edit.h"
#include "policy/policy.h"
#include "util/util.h"

static char dir[64];

static int setup(void **state)
{
    strcpy(dir, "/tmp/shoji-test-edit-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *get(const char *name)
{
    char p[256], *text = NULL, err[UTIL_ERRLEN];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (util_read_file(p, 1 << 20, &text, NULL, err, sizeof err) < 0)
        return NULL;
    return text;
}

static struct policy_edit *open_ok(const char *name)
{
    char p[256], err[UTIL_ERRLEN];
    struct policy_edit *e = NULL;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (policy_edit_open(p, &e, err, sizeof err) < 0)
        fail_msg("open %s: %s", name, err);
    return e;
}

static const char *admin_policy =
    "{\n"
    "  \"template\": \"junior_high\",\n"
    "  \"categories\": {\"adult\": \"block\", \"games\": \"allow\"},\n"
    "  \"decode\": {\"enabled\": true, \"exclude_hosts\": [\"gsa.apple.com\"], \"skip_categories\": []},\n"
    "  \"block\": [\"bad.example\"],\n"
    "  \"disabled_apps\": [\"skypeapp\", {\"app\": \"curl\", \"hosts\": [\"a.example\"]}],\n"
    "  \"allow\": [\"good.example\"]\n"
    "}\n";

static const char *expected_after =
    "{\n"
    "  \"template\": \"junior_high\",\n"
    "  \"categories\": {\n"
    "    \"adult\": \"block\",\n"
    "    \"games\": \"allow\"\n"
    "  },\n"
    "  \"decode\": {\n"
    "    \"enabled\": true,\n"
    "    \"exclude_hosts\": [\n"
    "      \"gsa.apple.com\",\n"
    "      \"*icrc.trendmicro.com\"\n"
    "    ],\n"
    "    \"skip_categories\": []\n"
    "  },\n"
    "  \"block\": [\n"
    "    \"bad.example\"\n"
    "  ],\n"
    "  \"disabled_apps\": [\n"
    "    \"skypeapp\",\n"
    "    {\n"
    "      \"app\": \"curl\",\n"
    "      \"hosts\": [\n"
    "        \"a.example\",\n"
    "        \"b.example\"\n"
    "      ]\n"
    "    },\n"
    "    \"NTRTSCAN\"\n"
    "  ],\n"
    "  \"allow\": [\n"
    "    \"good.example\"\n"
    "  ]\n"
    "}\n";

/* The same additions run twice: the first run writes exactly the admin's
 * file plus the additions; the second finds everything and writes nothing. */
static void apply_once(int expect_added)
{
    char err[UTIL_ERRLEN];
    struct policy_edit *e = open_ok("policy.json");
    int n = 0;
    n += policy_edit_add_exclude_host(e, "*icrc.trendmicro.com", err, sizeof err);
    n += policy_edit_add_exclude_host(e, "GSA.apple.com", err, sizeof err);   /* present */
    n += policy_edit_add_disabled_app(e, "NTRTSCAN", err, sizeof err);
    n += policy_edit_add_disabled_app(e, "SkypeApp.exe", err, sizeof err);    /* present */
    n += policy_edit_add_app_host(e, "curl", "b.example", err, sizeof err);
    n += policy_edit_add_app_host(e, "skypeapp", "login.skype.com", err, sizeof err); /* covered */
    assert_int_equal(n, expect_added);
    assert_int_equal(policy_edit_changed(e), expect_added > 0);
    assert_int_equal(policy_edit_save(e, err, sizeof err), expect_added > 0 ? 1 : 0);
    policy_edit_free(e);
}

static void test_additions_keep_order_and_other_content_and_are_idempotent(void **state)
{
    put("policy.json", admin_policy);
    char p[256];
    snprintf(p, sizeof p, "%s/policy.json", dir);
    assert_int_equal(chmod(p, 0640), 0);
    apply_once(3);
    char *first = get("policy.json");
    assert_string_equal(first, expected_after);
    struct stat st1, st2;
    assert_int_equal(stat(p, &st1), 0);
    assert_int_equal(st1.st_mode & 0777, 0640);   /* mode kept */
    apply_once(0);
    char *second = get("policy.json");
    assert_string_equal(first, second);            /* byte-identical */
    assert_int_equal(stat(p, &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);      /* not even rewritten */
    free(first);
    free(second);
}

static void test_result_loads_with_the_policy_loader(void **state)
{
    put("policy.json", admin_policy);
    apply_once(3);
    char *text = get("policy.json");
    struct policy *pol = NULL;
    char err[UTIL_ERRLEN];
    /* the template/categories need no category db to load */
    int rc = policy_load_text(text, strlen(text), "policy.json", dir, &pol, err, sizeof err);
    if (rc < 0)
        fail_msg("edited policy refused by the loader: %s", err);
    policy_unref(pol);
    free(text);
}

static void test_missing_file_is_created(void **state)
{
    char err[UTIL_ERRLEN];
    struct policy_edit *e = open_ok("new.json");
    assert_true(policy_edit_created(e));
    assert_int_equal(policy_edit_add_app_host(e, "skypeapp", "login.skype.com", err, sizeof err), 1);
    assert_int_equal(policy_edit_add_exclude_host(e, "161.69.45.170", err, sizeof err), 1);
    assert_int_equal(policy_edit_save(e, err, sizeof err), 1);
    policy_edit_free(e);
    char *text = get("new.json");
    assert_string_equal(text,
        "{\n  \"disabled_apps\": [\n    {\n      \"app\": \"skypeapp\",\n      \"hosts\": [\n"
        "        \"login.skype.com\"\n      ]\n    }\n  ],\n  \"decode\": {\n"
        "    \"exclude_hosts\": [\n      \"161.69.45.170\"\n    ]\n  }\n}\n");
    free(text);
    e = open_ok("new.json");
    assert_false(policy_edit_created(e));
    assert_true(policy_edit_has_app_host(e, "SKYPEAPP.EXE", "Login.Skype.com"));
    assert_false(policy_edit_has_app_host(e, "skypeapp", "www.skype.com"));
    assert_false(policy_edit_has_disabled_app(e, "skypeapp"));   /* narrow form only */
    policy_edit_free(e);
}

static void test_bad_files_are_refused_and_left_alone(void **state)
{
    static const struct { const char *text, *want; } bad[] = {
        { "{\"decode\": 5}", "`decode` is not an object" },
        { "{\"decode\": {\"exclude_hosts\": \"x\"}}", "`decode.exclude_hosts` is not an array" },
        { "{\"disabled_apps\": {}}", "`disabled_apps` is not an array" },
        { "{\"a\": 1, \"a\": 2}", "duplicate" },
        { "[1]", "JSON object" },
        { "{\"decode\": {", "policy.json:1" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put("policy.json", bad[i].text);
        char p[256], err[UTIL_ERRLEN] = "";
        snprintf(p, sizeof p, "%s/policy.json", dir);
        struct policy_edit *e = NULL;
        assert_true(policy_edit_open(p, &e, err, sizeof err) < 0);
        assert_null(e);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: %s", i, err);
        char *after = get("policy.json");
        assert_string_equal(after, bad[i].text);
        free(after);
    }
}

static pid_t spawn_named(const char *name)
{
    char exe[256];
    snprintf(exe, sizeof exe, "%s/%s", dir, name);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp /bin/sleep '%s'", exe);
    assert_int_equal(system(cmd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(exe, name, "30", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {   /* wait for the exec (comm changes) */
        char p[64], comm[32] = "";
        snprintf(p, sizeof p, "/proc/%d/comm", (int)pid);
        FILE *f = fopen(p, "r");
        if (f) {
            if (!fgets(comm, sizeof comm, f))
                comm[0] = '\0';
            fclose(f);
        }
        if (!strncmp(comm, name, strlen(name)))
            break;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return pid;
}

static void test_reload_signals_only_a_shoji(void **state)
{
    char msg[UTIL_ERRLEN], pidtext[32];
    int pid = -1;
    assert_int_equal(policy_edit_reload_agent(dir, &pid, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "no agent running"));

    pid_t other = spawn_named("notshoji");
    snprintf(pidtext, sizeof pidtext, "%d\n", (int)other);
    put(POLICY_EDIT_PID_FILE, pidtext);
    assert_int_equal(policy_edit_reload_agent(dir, &pid, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "stale"));
    kill(other, SIGKILL);
    int status;
    waitpid(other, &status, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);   /* not HUP'd */

    pid_t agent = spawn_named("shoji");
    snprintf(pidtext, sizeof pidtext, "%d\n", (int)agent);
    put(POLICY_EDIT_PID_FILE, pidtext);
    assert_int_equal(policy_edit_reload_agent(dir, &pid, msg, sizeof msg), 1);
    assert_int_equal(pid, agent);
    waitpid(agent, &status, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGHUP);

    put(POLICY_EDIT_PID_FILE, "garbage");
    assert_int_equal(policy_edit_reload_agent(dir, &pid, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "does not hold a pid"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_additions_keep_order_and_other_content_and_are_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_loads_with_the_policy_loader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files_are_refused_and_left_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_signals_only_a_shoji, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
