/* Unit tests of proxy/syshosts: /etc/hosts answered inside the agent only
 * while glibc would answer the same (nsswitch lists files first), bounded
 * in size, and re-read when it changes (at most once a second). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/syshosts.h"

struct fx {
    char dir[64], hosts[128], ns[128];
    struct syshosts s;
};

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof *x);
    assert_non_null(x);
    strcpy(x->dir, "/tmp/shoji-test-syshosts-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    snprintf(x->hosts, sizeof x->hosts, "%s/hosts", x->dir);
    snprintf(x->ns, sizeof x->ns, "%s/nsswitch.conf", x->dir);
    put(x->hosts, "# comment\n127.0.0.1 localhost\n10.1.2.3 web.example.test Web2.Example.Test\n"
                  "::1 ip6-localhost\n");
    put(x->ns, "passwd: files\nhosts:          files mdns4_minimal [NOTFOUND=return] dns\n");
    syshosts_init(&x->s, x->hosts, x->ns);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;
    syshosts_free(&x->s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", x->dir);
    assert_int_equal(system(cmd), 0);
    free(x);
    return 0;
}

static const char *v4(const struct sockaddr_storage *ss, char *buf)
{
    assert_int_equal(ss->ss_family, AF_INET);
    return inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, 64);
}

static void test_listed_names_are_answered_when_files_come_first(void **state)
{
    struct fx *x = *state;
    struct sockaddr_storage a[4];
    char b[64];
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 1000), 1);
    assert_string_equal(v4(&a[0], b), "10.1.2.3");
    assert_int_equal(syshosts_lookup(&x->s, "WEB2.example.test.", a, 4, 1000), 1);   /* alias */
    assert_int_equal(syshosts_lookup(&x->s, "ip6-localhost", a, 4, 1000), 1);
    assert_int_equal(a[0].ss_family, AF_INET6);
    assert_int_equal(syshosts_lookup(&x->s, "elsewhere.test", a, 4, 1000), 0);
}

static void test_nothing_is_answered_when_dns_comes_first(void **state)
{
    struct fx *x = *state;
    struct sockaddr_storage a[4];
    put(x->ns, "hosts: dns files\n");
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 1000), 0);
    put(x->ns, "passwd: files\n");   /* no hosts line: glibc asks DNS first */
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 5000), 0);
    put(x->ns, "hosts: filesystem dns\n");   /* not the files source */
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 9000), 0);
}

static void test_a_change_is_seen_after_a_second_not_before(void **state)
{
    struct fx *x = *state;
    struct sockaddr_storage a[4];
    char b[64];
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 10000), 1);
    put(x->hosts, "10.9.9.9 web.example.test\n192.0.2.7 new.example.test\n");
    assert_int_equal(syshosts_lookup(&x->s, "new.example.test", a, 4, 10500), 0);
    assert_int_equal(syshosts_lookup(&x->s, "new.example.test", a, 4, 11000), 1);
    assert_string_equal(v4(&a[0], b), "192.0.2.7");
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 11000), 1);
    assert_string_equal(v4(&a[0], b), "10.9.9.9");
    unlink(x->hosts);   /* gone: nothing answered, nothing kept */
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 12000), 0);
}

static void test_large_hosts_files_are_left_to_getaddrinfo(void **state)
{
    struct fx *x = *state;
    struct sockaddr_storage a[4];
    size_t cap = 80 * 1024, o = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int i = 0; i < SYSHOSTS_MAX_NAMES + 1; i++)   /* one line too many */
        o += (size_t)snprintf(text + o, cap - o, "0.0.0.0 ad%d.test\n", i);
    put(x->hosts, text);
    assert_int_equal(syshosts_lookup(&x->s, "ad1.test", a, 4, 1000), 0);
    o = 0;   /* few lines, but more bytes than allowed */
    for (int i = 0; o < SYSHOSTS_MAX_BYTES + 100; i++)
        o += (size_t)snprintf(text + o, cap - o, "# %0200d\n", i);
    snprintf(text + o, cap - o, "10.1.2.3 web.example.test\n");
    put(x->hosts, text);
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 5000), 0);
    put(x->hosts, "10.1.2.3 web.example.test\n");   /* small again: used again */
    assert_int_equal(syshosts_lookup(&x->s, "web.example.test", a, 4, 9000), 1);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_listed_names_are_answered_when_files_come_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_nothing_is_answered_when_dns_comes_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_change_is_seen_after_a_second_not_before, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_large_hosts_files_are_left_to_getaddrinfo, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
