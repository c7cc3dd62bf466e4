/* Unit tests for the pure parts of `shoji intercept`: CIDR and port parsing,
 * and the nft script rendered from a configuration. The rules themselves are
 * proved with real packets in tests/integration/test_intercept_rules.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/linux/nftlib_int.h"
#include "platform/platform.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* libnftables is loaded on first use (nftlib_int.h): the real one resolves
 * every function; a missing one is a clear error naming the package, and
 * nothing half-loaded is left behind. */
static void test_nftables_library_loads_on_demand_or_says_what_to_install(void **state)
{
    (void)state;
    char err[UTIL_ERRLEN] = "";
    struct nftlib lib;
    assert_int_equal(nftlib_load(NFTLIB_SONAME, &lib, err, sizeof err), 0);
    assert_non_null(lib.ctx_new);
    assert_non_null(lib.run_cmd_from_buffer);
    assert_non_null(lib.get_error_buffer);
    assert_non_null(nftlib_get(err, sizeof err));
    assert_int_equal(nftlib_load("libnftables-missing.so.99", &lib, err, sizeof err), -ELIBACC);
    assert_non_null(strstr(err, "libnftables-missing.so.99"));
    assert_non_null(strstr(err, "install the libnftables1 package"));
    assert_null(lib.ctx_new);
    /* a library without the symbols (libc) is refused too */
    assert_int_equal(nftlib_load("libc.so.6", &lib, err, sizeof err), -ELIBACC);
    assert_non_null(strstr(err, "has no nft_ctx_new"));
    assert_null(lib.ctx_new);
}

static void test_cidr_clears_host_bits_and_bare_addresses_are_hosts(void **state)
{
    struct platform_cidr c;
    char err[256], s[64];
    assert_int_equal(platform_cidr_parse("10.1.2.3/8", &c, err, sizeof err), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_string_equal(inet_ntop(AF_INET, c.addr, s, sizeof s), "10.0.0.0");
    assert_int_equal(platform_cidr_parse("2001:db8::1", &c, err, sizeof err), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(platform_cidr_parse("2001:db8:ffff::1/33", &c, err, sizeof err), 0);
    assert_string_equal(inet_ntop(AF_INET6, c.addr, s, sizeof s), "2001:db8:8000::");
    assert_int_equal(platform_cidr_parse("0.0.0.0/0", &c, err, sizeof err), 0);
}

static void test_bad_cidrs_are_refused_with_a_message(void **state)
{
    static const char *bad[] = { "", "abc", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8x",
                                 "::1/129", "10.0.0.1; flush ruleset", "1.2.3.4.5",
                                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/8" };
    struct platform_cidr c;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        assert_true(platform_cidr_parse(bad[i], &c, err, sizeof err) < 0);
        assert_true(strlen(err) > 0);
    }
    assert_true(platform_cidr_parse(NULL, &c, NULL, 0) < 0);
}

static void test_port_lists_parse_and_bad_ones_are_refused(void **state)
{
    struct platform_intercept_config cfg;
    char err[256];
    platform_intercept_config_default(&cfg);
    assert_int_equal(platform_ports_parse("80,443,8080", &cfg, err, sizeof err), 0);
    assert_int_equal(cfg.nports, 3);
    assert_int_equal(cfg.ports[2], 8080);
    static const char *bad[] = { "", "0", "65536", "80,,443", "80,", ",80", "80,80", "x", "80 443",
                                 "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        platform_intercept_config_default(&cfg);
        assert_true(platform_ports_parse(bad[i], &cfg, err, sizeof err) < 0);
        assert_int_equal(cfg.nports, 2);   /* untouched on error */
        assert_int_equal(cfg.ports[0], 80);
        assert_int_equal(cfg.ports[1], 443);
    }
}

static int render(const struct platform_intercept_config *cfg, char *buf, size_t cap)
{
    char err[256] = "";
    int n = platform_intercept_render(cfg, buf, cap, err, sizeof err);
    if (n >= 0)
        assert_int_equal(strlen(buf), (size_t)n);
    return n;
}

/* Every table the script names is inet shoji: nothing else is touched. */
static void assert_only_our_table(const char *s)
{
    for (const char *p = strstr(s, "table "); p; p = strstr(p + 1, "table "))
        assert_memory_equal(p, "table inet shoji", 16);
    assert_null(strstr(s, "ruleset"));
}

static void test_default_rules_redirect_80_443_block_quic_and_fail_open(void **state)
{
    struct platform_intercept_config cfg;
    char buf[16384];
    platform_intercept_config_default(&cfg);
    cfg.port = 3129;
    assert_true(render(&cfg, buf, sizeof buf) > 0);
    assert_only_our_table(buf);
    assert_non_null(strstr(buf, "tcp dport { 80, 443 } meta l4proto @live counter redirect to :3129"));
    assert_non_null(strstr(buf, "meta mark 0x53484a49"));
    assert_non_null(strstr(buf, "fib daddr type local return"));
    assert_non_null(strstr(buf, "udp dport 443 counter reject"));
    assert_null(strstr(buf, "reject with tcp reset"));   /* open: nothing refused */
    assert_null(strstr(buf, "@exclude"));
}

static void test_closed_mode_resets_and_quic_no_leaves_udp_alone(void **state)
{
    struct platform_intercept_config cfg;
    char buf[16384], err[128];
    platform_intercept_config_default(&cfg);
    cfg.port = 3129;
    cfg.fail_mode = PLATFORM_FAIL_CLOSED;
    cfg.block_quic = false;
    assert_int_equal(platform_cidr_parse("198.51.100.0/24", &cfg.excludes[0], err, sizeof err), 0);
    assert_int_equal(platform_cidr_parse("2001:db8:99::/48", &cfg.excludes[1], err, sizeof err), 0);
    cfg.nexcludes = 2;
    cfg.exclude_uids[0] = 65534;
    cfg.nexclude_uids = 1;
    assert_true(render(&cfg, buf, sizeof buf) > 0);
    assert_only_our_table(buf);
    assert_non_null(strstr(buf, "tcp dport { 80, 443 } counter reject with tcp reset"));
    assert_null(strstr(buf, "udp dport 443"));
    assert_non_null(strstr(buf, "elements = { 198.51.100.0/24 }"));
    assert_non_null(strstr(buf, "elements = { 2001:db8:99::/48 }"));
    assert_non_null(strstr(buf, "meta skuid { 65534 } counter return"));
}

static void test_impossible_configs_and_small_buffers_are_refused(void **state)
{
    struct platform_intercept_config cfg;
    char buf[16384];
    platform_intercept_config_default(&cfg);
    assert_true(render(&cfg, buf, sizeof buf) < 0);            /* no --port */
    cfg.port = 443;
    assert_true(render(&cfg, buf, sizeof buf) < 0);            /* loops into itself */
    cfg.port = 3129;
    cfg.nports = 0;
    assert_true(render(&cfg, buf, sizeof buf) < 0);
    cfg.nports = 2;
    cfg.nexcludes = 1;                                         /* family 0 */
    assert_true(render(&cfg, buf, sizeof buf) < 0);
    cfg.nexcludes = 0;
    char small[64];
    char err[128];
    assert_int_equal(platform_intercept_render(&cfg, small, sizeof small, err, sizeof err), -ENOSPC);
    assert_int_equal(platform_intercept_render(&cfg, NULL, 0, err, sizeof err), -ENOSPC);
}

static void test_upstream_mark_is_set_or_refused_without_privilege(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char err[256] = "";
    assert_true(fd >= 0);
    int rc = platform_mark_upstream_socket(fd, err, sizeof err);
    if (geteuid() == 0) {
        unsigned mark = 0;
        socklen_t len = sizeof mark;
        assert_int_equal(rc, 0);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_MARK, &mark, &len), 0);
        assert_int_equal(mark, PLATFORM_UPSTREAM_MARK);
    } else {
        assert_int_equal(rc, -EPERM);
        assert_non_null(strstr(err, "CAP_NET_ADMIN"));
    }
    close(fd);
    assert_true(platform_mark_upstream_socket(-1, err, sizeof err) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nftables_library_loads_on_demand_or_says_what_to_install),
        cmocka_unit_test(test_cidr_clears_host_bits_and_bare_addresses_are_hosts),
        cmocka_unit_test(test_bad_cidrs_are_refused_with_a_message),
        cmocka_unit_test(test_port_lists_parse_and_bad_ones_are_refused),
        cmocka_unit_test(test_default_rules_redirect_80_443_block_quic_and_fail_open),
        cmocka_unit_test(test_closed_mode_resets_and_quic_no_leaves_udp_alone),
        cmocka_unit_test(test_impossible_configs_and_small_buffers_are_refused),
        cmocka_unit_test(test_upstream_mark_is_set_or_refused_without_privilege),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
