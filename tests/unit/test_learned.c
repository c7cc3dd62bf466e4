/* Unit tests of the learned-exclusion store (automatic conflict avoidance):
 * matching by scope, renewal, expiry, persistence, corrupt-file tolerance. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "policy/learned.h"
#include "util/util.h"

#define T0 1700000000

static char *make_state_dir(void)
{
    char *d = strdup("/tmp/shoji-test-learned-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_state_dir(char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool file_exists(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static void test_app_host_scope_matches_only_that_application(void **state)
{
    struct learned *s;
    char err[UTIL_ERRLEN], rule[256];
    assert_int_equal(learned_open(NULL, &s, err, sizeof err), 0);
    assert_int_equal(learned_record(s, "SkypeApp.exe", "Login.Skype.com.", "tls alert unknown_ca",
                                    T0, 3600), 1);
    assert_true(learned_match(s, "skypeapp", "login.skype.com", T0 + 1, LEARNED_SCOPE_APP_HOST,
                              rule, sizeof rule));
    assert_non_null(strstr(rule, "\"skypeapp\" -> \"login.skype.com\""));
    assert_non_null(strstr(rule, "unknown_ca"));
    assert_false(learned_match(s, "curl", "login.skype.com", T0 + 1, LEARNED_SCOPE_APP_HOST,
                               NULL, 0));
    assert_true(learned_match(s, "curl", "login.skype.com", T0 + 1, LEARNED_SCOPE_HOST, NULL, 0));
    assert_false(learned_match(s, "skypeapp", "www.skype.com", T0 + 1, LEARNED_SCOPE_HOST,
                               NULL, 0));
    learned_close(s);
}

static void test_second_rejection_renews_and_counts(void **state)
{
    struct learned *s;
    char err[UTIL_ERRLEN];
    assert_int_equal(learned_open(NULL, &s, err, sizeof err), 0);
    assert_int_equal(learned_record(s, "ntrtscan", "a.icrc.trendmicro.com", "bad_certificate",
                                    T0, 100), 1);
    assert_int_equal(learned_record(s, "NTRTSCAN.EXE", "a.icrc.trendmicro.com", "unknown_ca",
                                    T0 + 50, 100), 0);
    struct learned_entry *v;
    size_t n;
    assert_int_equal(learned_list(s, T0 + 60, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].count, 2);
    assert_int_equal(v[0].first_seen, T0);
    assert_int_equal(v[0].last_seen, T0 + 50);
    assert_int_equal(v[0].expires, T0 + 150);
    assert_string_equal(v[0].reason, "unknown_ca");
    free(v);
    learned_close(s);
}

static void test_expired_entries_are_ignored_and_pruned(void **state)
{
    struct learned *s;
    char err[UTIL_ERRLEN];
    assert_int_equal(learned_open(NULL, &s, err, sizeof err), 0);
    learned_record(s, "a", "old.example", "x", T0, 10);
    learned_record(s, "a", "new.example", "x", T0, 1000);
    assert_false(learned_match(s, "a", "old.example", T0 + 10, LEARNED_SCOPE_APP_HOST, NULL, 0));
    assert_true(learned_match(s, "a", "old.example", T0 + 9, LEARNED_SCOPE_APP_HOST, NULL, 0));
    assert_int_equal(learned_count(s), 2);
    assert_int_equal(learned_prune(s, T0 + 20), 1);
    assert_int_equal(learned_count(s), 1);
    /* a rejection after expiry starts a new entry */
    assert_int_equal(learned_record(s, "a", "new.example", "x", T0 + 2000, 10), 1);
    learned_close(s);
}

static void test_entries_survive_a_restart(void **state)
{
    char *dir = make_state_dir();
    struct learned *s;
    char err[UTIL_ERRLEN];
    assert_int_equal(learned_open(dir, &s, err, sizeof err), 0);
    learned_record(s, "skypehost", "login.live.com", "tls alert bad_certificate", T0, 86400);
    learned_record(s, "", "gsa.apple.com", "hang-up after handshake", T0 + 5, 86400);
    assert_int_equal(learned_save(s, err, sizeof err), 0);
    learned_close(s);

    assert_int_equal(learned_open(dir, &s, err, sizeof err), 0);
    assert_int_equal(learned_count(s), 2);
    assert_true(learned_match(s, "SkypeHost.exe", "login.live.com", T0 + 10,
                              LEARNED_SCOPE_APP_HOST, NULL, 0));
    assert_true(learned_match(s, "", "gsa.apple.com", T0 + 10, LEARNED_SCOPE_APP_HOST, NULL, 0));
    struct learned_entry *v;
    size_t n;
    assert_int_equal(learned_list(s, T0 + 10, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].host, "gsa.apple.com");   /* most recent first */
    assert_string_equal(v[1].reason, "tls alert bad_certificate");
    free(v);
    /* clear one host, save, reload: gone for good */
    assert_int_equal(learned_clear(s, "LOGIN.live.com"), 1);
    assert_int_equal(learned_save(s, err, sizeof err), 0);
    assert_int_equal(learned_reload(s, err, sizeof err), 0);
    assert_int_equal(learned_count(s), 1);
    assert_int_equal(learned_clear(s, NULL), 1);
    learned_close(s);
    remove_state_dir(dir);
}

static void test_corrupt_file_is_kept_aside_and_store_starts_empty(void **state)
{
    static const char *bad[] = {
        "{\"version\":1,\"entries\":[{\"host\":\"a\"",          /* truncated */
        "[1,2,3]",                                              /* wrong shape */
        ("{\"entries\":[{\"host\":\"a.example\",\"app\":\"x\",\"first_seen\":1,"
         "\"last_seen\":1,\"expires\":\"soon\",\"count\":1}]}"), /* wrong type */
        "{\"entries\":[{\"host\":\"\",\"first_seen\":1,\"last_seen\":1,\"expires\":9,\"count\":1}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *dir = make_state_dir();
        write_file(dir, LEARNED_FILE, bad[i]);
        struct learned *s;
        char err[UTIL_ERRLEN];
        assert_int_equal(learned_open(dir, &s, err, sizeof err), 0);
        assert_int_equal(learned_count(s), 0);
        assert_true(file_exists(dir, LEARNED_FILE ".corrupt"));
        assert_false(file_exists(dir, LEARNED_FILE));
        /* and the store still works and saves a good file */
        learned_record(s, "a", "b.example", "r", T0, 10);
        assert_int_equal(learned_save(s, err, sizeof err), 0);
        learned_close(s);
        assert_int_equal(learned_open(dir, &s, err, sizeof err), 0);
        assert_int_equal(learned_count(s), 1);
        learned_close(s);
        remove_state_dir(dir);
    }
}

static void test_table_is_bounded(void **state)
{
    struct learned *s;
    char err[UTIL_ERRLEN], host[64];
    assert_int_equal(learned_open(NULL, &s, err, sizeof err), 0);
    for (int i = 0; i < LEARNED_MAX + 10; i++) {
        snprintf(host, sizeof host, "h%d.example", i);
        assert_int_equal(learned_record(s, "app", host, "r", T0, 1000 + i), 1);
    }
    assert_int_equal(learned_count(s), LEARNED_MAX);
    /* the ones expiring first went */
    assert_false(learned_match(s, "app", "h0.example", T0, LEARNED_SCOPE_HOST, NULL, 0));
    assert_true(learned_match(s, "app", "h4100.example", T0, LEARNED_SCOPE_HOST, NULL, 0));
    assert_int_equal(learned_record(s, "app", "", "r", T0, 10), -EINVAL);
    learned_close(s);
}

struct race { struct learned *s; int id; };

static void *racer(void *arg)
{
    struct race *r = arg;
    char host[64], rule[256];
    for (int i = 0; i < 2000; i++) {
        snprintf(host, sizeof host, "h%d.example", i % 50);
        if (r->id % 2)
            learned_record(r->s, "app", host, "r", T0 + i, 100);
        else
            learned_match(r->s, "app", host, T0 + i, LEARNED_SCOPE_APP_HOST, rule, sizeof rule);
    }
    return NULL;
}

static void test_concurrent_record_and_match(void **state)
{
    struct learned *s;
    char err[UTIL_ERRLEN];
    assert_int_equal(learned_open(NULL, &s, err, sizeof err), 0);
    pthread_t t[4];
    struct race r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){ s, i };
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(learned_count(s), 50);
    learned_close(s);
}

static void test_permanent_rule_text(void **state)
{
    struct learned_entry e = { .app = "skypeapp", .host = "login.skype.com" };
    char out[256];
    learned_permanent_rule(&e, LEARNED_SCOPE_APP_HOST, out, sizeof out);
    assert_string_equal(out, "disabled_apps += {\"app\": \"skypeapp\", \"hosts\": [\"login.skype.com\"]}");
    learned_permanent_rule(&e, LEARNED_SCOPE_HOST, out, sizeof out);
    assert_string_equal(out, "decode.exclude_hosts += \"login.skype.com\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_app_host_scope_matches_only_that_application),
        cmocka_unit_test(test_second_rejection_renews_and_counts),
        cmocka_unit_test(test_expired_entries_are_ignored_and_pruned),
        cmocka_unit_test(test_entries_survive_a_restart),
        cmocka_unit_test(test_corrupt_file_is_kept_aside_and_store_starts_empty),
        cmocka_unit_test(test_table_is_bounded),
        cmocka_unit_test(test_concurrent_record_and_match),
        cmocka_unit_test(test_permanent_rule_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
