/* Pattern sets: every pattern form the policy accepts, as the vendor note
 * writes them, and the earliest-pattern-wins rule at scale. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "policy/pattern.h"

static struct pat_set *set_of(unsigned flags, const char *const *pats)
{
    struct pat_set *s = pat_set_new(flags);
    char err[256];
    assert_non_null(s);
    for (int i = 0; pats[i]; i++) {
        if (pat_set_add(s, pats[i], i, err, sizeof err) != 0)
            fail_msg("pattern %s refused: %s", pats[i], err);
    }
    return s;
}

static int addr_match(struct pat_set *s, const char *ip)
{
    uint8_t a[16];
    if (inet_pton(AF_INET, ip, a) == 1)
        return pat_match_addr(s, AF_INET, a);
    assert_int_equal(inet_pton(AF_INET6, ip, a), 1);
    return pat_match_addr(s, AF_INET6, a);
}

static void test_glob_star_matches_any_run_including_dots(void **st)
{
    (void)st;
    const char *const p[] = { "*icrc.trendmicro.com", NULL };
    struct pat_set *s = set_of(PAT_F_CERT, p);
    assert_int_equal(pat_match_host(s, "osce.icrc.trendmicro.com"), 0);
    assert_int_equal(pat_match_host(s, "a.b.c.icrc.trendmicro.com"), 0);
    assert_int_equal(pat_match_host(s, "icrc.trendmicro.com"), 0);
    assert_int_equal(pat_match_host(s, "xicrc.trendmicro.com"), 0);
    assert_int_equal(pat_match_host(s, "www.trendmicro.com"), -1);
    assert_int_equal(pat_match_host(s, "icrc.trendmicro.com.evil.net"), -1);
    assert_int_equal(pat_match_host(s, "OSCE.ICRC.TrendMicro.COM"), 0);
    assert_int_equal(pat_match_host(s, "osce.icrc.trendmicro.com."), 0);
    pat_set_free(s);
}

static void test_dot_glob_needs_a_subdomain(void **st)
{
    (void)st;
    const char *const p[] = { "*.apple.com", "*mcafee.com", NULL };
    struct pat_set *s = set_of(0, p);
    assert_int_equal(pat_match_host(s, "gsa.apple.com"), 0);
    assert_int_equal(pat_match_host(s, "a.b.apple.com"), 0);
    assert_int_equal(pat_match_host(s, "apple.com"), -1);
    assert_int_equal(pat_match_host(s, "pineapple.com"), -1);
    assert_int_equal(pat_match_host(s, "ah2.manage.mcafee.com"), 1);
    assert_int_equal(pat_match_host(s, "mcafee.com"), 1);
    assert_int_equal(pat_match_host(s, "notmcafee.com"), 1);   /* as written: any run */
    pat_set_free(s);
}

static void test_exact_host_and_domain_form(void **st)
{
    (void)st;
    const char *const p[] = { "gsa.apple.com", ".icloud.com", "Activation-V2.Kaspersky.com", NULL };
    struct pat_set *s = set_of(0, p);
    assert_int_equal(pat_match_host(s, "gsa.apple.com"), 0);
    assert_int_equal(pat_match_host(s, "www.gsa.apple.com"), -1);
    assert_int_equal(pat_match_host(s, "icloud.com"), 1);
    assert_int_equal(pat_match_host(s, "p01.icloud.com"), 1);
    assert_int_equal(pat_match_host(s, "evilicloud.com"), -1);
    assert_int_equal(pat_match_host(s, "activation-v2.kaspersky.com"), 2);
    assert_string_equal(pat_set_text(s, 1), ".icloud.com");
    assert_int_equal(pat_set_count(s), 3);
    pat_set_free(s);
}

static void test_ipv4_address_and_cidr(void **st)
{
    (void)st;
    const char *const p[] = { "161.69.45.170", "161.69.0.0/16", "10.0.0.0/8", NULL };
    struct pat_set *s = set_of(0, p);
    assert_int_equal(addr_match(s, "161.69.45.170"), 0);   /* earliest pattern wins */
    assert_int_equal(addr_match(s, "161.69.45.171"), 1);
    assert_int_equal(addr_match(s, "161.69.255.1"), 1);
    assert_int_equal(addr_match(s, "161.70.0.1"), -1);
    assert_int_equal(addr_match(s, "10.200.3.4"), 2);
    assert_int_equal(addr_match(s, "2001:db8::1"), -1);
    /* An IP literal as the host matches address patterns too. */
    assert_int_equal(pat_match_host(s, "161.69.45.170"), 0);
    assert_int_equal(pat_set_kind(s, 1), PAT_CIDR);
    pat_set_free(s);
}

static void test_ipv6_address_and_cidr(void **st)
{
    (void)st;
    const char *const p[] = { "2001:db8:abcd::/48", "2001:db8::5", "::/0", NULL };
    struct pat_set *s = set_of(0, p);
    assert_int_equal(addr_match(s, "2001:db8:abcd:12::1"), 0);
    assert_int_equal(addr_match(s, "2001:db8::5"), 1);
    assert_int_equal(addr_match(s, "2001:db9::1"), 2);
    assert_int_equal(addr_match(s, "192.0.2.1"), -1);     /* ::/0 is IPv6 only */
    assert_int_equal(pat_match_host(s, "[2001:db8::5]"), 1);
    pat_set_free(s);
}

static void test_certificate_name_patterns(void **st)
{
    (void)st;
    const char *const p[] = { "trustedsourceserver_imqa01", "*.apple.com", "McAfee Web Gateway*", NULL };
    struct pat_set *s = set_of(PAT_F_CERT, p);
    assert_true(pat_set_has_cert(s));
    assert_int_equal(pat_match_cert(s, "trustedsourceserver_imqa01"), 0);
    assert_int_equal(pat_match_cert(s, "TrustedSourceServer_IMQA01"), 0);
    assert_int_equal(pat_match_cert(s, "idmsa.apple.com"), 1);     /* host patterns too */
    assert_int_equal(pat_match_cert(s, "McAfee Web Gateway CA 2"), 2);
    /* A certificate name is never matched against the host name. */
    assert_int_equal(pat_match_host(s, "trustedsourceserver_imqa01"), -1);
    pat_set_free(s);
}

static void test_cert_names_refused_where_only_hosts_make_sense(void **st)
{
    (void)st;
    struct pat_set *s = pat_set_new(PAT_F_URL);
    char err[256];
    assert_true(pat_set_add(s, "trustedsourceserver_imqa01", 0, err, sizeof err) < 0);
    assert_non_null(strstr(err, "not a host name"));
    assert_true(pat_set_add(s, "", 1, err, sizeof err) < 0);
    assert_true(pat_set_add(s, " example.com", 2, err, sizeof err) < 0);
    assert_non_null(strstr(err, "spaces"));
    assert_true(pat_set_add(s, "10.1.2.3/8", 3, err, sizeof err) < 0);
    assert_non_null(strstr(err, "did you mean \"10.0.0.0/8\""));
    assert_true(pat_set_add(s, "10.0.0.0/33", 4, err, sizeof err) < 0);
    assert_non_null(strstr(err, "0..32"));
    pat_set_free(s);
    s = pat_set_new(PAT_F_CERT);
    assert_true(pat_set_add(s, "example.com/path", 0, err, sizeof err) < 0);
    assert_non_null(strstr(err, "host/path"));
    pat_set_free(s);
}

static void test_url_prefix_patterns(void **st)
{
    (void)st;
    const char *const p[] = { "example.com/news", "example.com/files/", "*.cdn.example/img", "10.0.0.1/admin", NULL };
    struct pat_set *s = set_of(PAT_F_URL, p);
    assert_int_equal(pat_match_url(s, "example.com", "/news"), 0);
    assert_int_equal(pat_match_url(s, "example.com", "/news/today?x=1"), 0);
    assert_int_equal(pat_match_url(s, "example.com", "/news?x=1"), 0);
    assert_int_equal(pat_match_url(s, "EXAMPLE.com", "/NEWS/a"), 0);
    assert_int_equal(pat_match_url(s, "example.com", "/newsletter"), -1);
    assert_int_equal(pat_match_url(s, "example.com", "/files/a.zip"), 1);
    assert_int_equal(pat_match_url(s, "example.com", "/"), -1);
    assert_int_equal(pat_match_url(s, "www.example.com", "/news"), -1);
    assert_int_equal(pat_match_url(s, "a.cdn.example", "/img/1.png"), 2);
    assert_int_equal(pat_match_url(s, "10.0.0.1", "/admin/x"), 3);
    assert_int_equal(pat_match_host(s, "example.com"), -1);   /* URL patterns need the path */
    pat_set_free(s);
}

static void test_app_names_with_or_without_exe(void **st)
{
    (void)st;
    char a[64], b[64];
    assert_int_equal(pat_app_norm("NTRTSCAN", a, sizeof a), 8);
    assert_int_equal(pat_app_norm("NTRTSCAN.EXE", b, sizeof b), 8);
    assert_string_equal(a, b);
    assert_string_equal(a, "ntrtscan");
    assert_int_equal(pat_app_norm("/opt/skype/SkypeApp.exe", a, sizeof a), 8);
    assert_string_equal(a, "skypeapp");
    assert_int_equal(pat_app_norm("C:\\Program Files\\omsvchost2.exe", a, sizeof a), 10);
    assert_string_equal(a, "omsvchost2");
    assert_int_equal(pat_app_norm(".exe", a, sizeof a), 0);
    assert_int_equal(pat_app_norm("", a, sizeof a), 0);
}

static void test_glob_matcher_backtracks(void **st)
{
    (void)st;
    assert_true(pat_glob_match("*a*b*c", 6, "xxaxxbxxbxxc", 12));
    assert_false(pat_glob_match("*a*b*c", 6, "xxaxxbxxbxxd", 12));
    assert_true(pat_glob_match("a*", 2, "a", 1));
    assert_true(pat_glob_match("*", 1, "", 0));
    assert_false(pat_glob_match("a", 1, "", 0));
    assert_true(pat_glob_match("www.*.example", 13, "www.x.y.example", 15));
}

static void test_ten_thousand_patterns_match_correctly(void **st)
{
    (void)st;
    struct pat_set *s = pat_set_new(PAT_F_CERT);
    char err[256], buf[128];
    for (int i = 0; i < 10000; i++) {
        switch (i % 4) {
        case 0: snprintf(buf, sizeof buf, "host%d.example.com", i); break;
        case 1: snprintf(buf, sizeof buf, "*.zone%d.example.net", i); break;
        case 2: snprintf(buf, sizeof buf, "10.%d.%d.0/24", (i >> 8) & 255, i & 255); break;
        default: snprintf(buf, sizeof buf, "*svc%d.example.org", i); break;
        }
        assert_int_equal(pat_set_add(s, buf, i, err, sizeof err), 0);
    }
    assert_int_equal(pat_set_count(s), 10000);
    for (int i = 0; i < 10000; i++) {
        uint8_t a[4] = { 10, (uint8_t)((i >> 8) & 255), (uint8_t)(i & 255), 77 };
        switch (i % 4) {
        case 0: snprintf(buf, sizeof buf, "host%d.example.com", i); break;
        case 1: snprintf(buf, sizeof buf, "a.b.zone%d.example.net", i); break;
        case 2: assert_int_equal(pat_match_addr(s, AF_INET, a), i); continue;
        default: snprintf(buf, sizeof buf, "eu-svc%d.example.org", i); break;
        }
        if (pat_match_host(s, buf) != i)
            fail_msg("%s matched %d, expected %d", buf, pat_match_host(s, buf), i);
    }
    assert_int_equal(pat_match_host(s, "host1.example.com"), -1);
    assert_int_equal(pat_match_host(s, "zone1.example.net"), -1);
    assert_int_equal(pat_match_host(s, "nothing.example"), -1);
    pat_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glob_star_matches_any_run_including_dots),
        cmocka_unit_test(test_dot_glob_needs_a_subdomain),
        cmocka_unit_test(test_exact_host_and_domain_form),
        cmocka_unit_test(test_ipv4_address_and_cidr),
        cmocka_unit_test(test_ipv6_address_and_cidr),
        cmocka_unit_test(test_certificate_name_patterns),
        cmocka_unit_test(test_cert_names_refused_where_only_hosts_make_sense),
        cmocka_unit_test(test_url_prefix_patterns),
        cmocka_unit_test(test_app_names_with_or_without_exe),
        cmocka_unit_test(test_glob_matcher_backtracks),
        cmocka_unit_test(test_ten_thousand_patterns_match_correctly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
