/* The transparent path end to end inside a private network namespace: the
 * `inet shoji` redirect takes a connection to 192.0.2.2:443 to our listener,
 * platform_original_dst() recovers 192.0.2.2:443, and the process lookup by
 * (client, original destination) names this process. IPv4 and IPv6.
 * The test process moves itself into a new network namespace (unshare) with
 * only lo and a veth pair; it never touches the machine's network.
 * Skipped unless root. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/platform.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define AGENT_PORT 3129

static int in_netns;

static int setup_netns(void **state)
{
    if (geteuid() != 0 || (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0))
        return 0;
    if (unshare(CLONE_NEWNET) != 0)
        return 0;
    /* Our own namespace: lo, and a veth pair (both ends here) carrying
     * 192.0.2.1 so that 192.0.2.2 is routable (the redirect takes the
     * packets before they would leave). */
    if (system("ip link set lo up && ip link add shd0 type veth peer name shd1 && "
               "ip addr add 192.0.2.1/24 dev shd0 && ip -6 addr add 2001:db8:5::1/64 dev shd0 nodad && "
               "ip link set shd1 up && ip link set shd0 up") != 0)
        return -1;
    in_netns = 1;
    return 0;
}

static void sa_make(struct sockaddr_storage *ss, socklen_t *len, const char *addr, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
        *len = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
        *len = sizeof *in;
    }
}

static int listen_at(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, fd = socket(strchr(addr, ':') ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    sa_make(&ss, &len, addr, AGENT_PORT);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (strchr(addr, ':'))
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

static void fmt(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ss;
        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        snprintf(out, cap, "%s:%u", a, ntohs(in->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const void *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
        snprintf(out, cap, "[%s]:%u", a, ntohs(in6->sin6_port));
    }
}

/* Connects to dst:port through the redirect, accepts on lfd, and checks the
 * original destination and the owning process. */
static void check_redirected(int lfd, const char *dst, uint16_t port, const char *want)
{
    struct sockaddr_storage ss, peer, odst;
    socklen_t len, plen = sizeof peer, olen = 0;
    char err[512] = "", got[80];
    sa_make(&ss, &len, dst, port);
    int cfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cfd >= 0);
    if (connect(cfd, (struct sockaddr *)&ss, len) != 0)
        fail_msg("connect %s:%u: %s", dst, port, strerror(errno));
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 5000), 1);
    int afd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    assert_true(afd >= 0);
    int rc = platform_original_dst(afd, &odst, &olen, err, sizeof err);
    if (rc != 0)
        fail_msg("original dst: %d %s", rc, err);
    fmt(&odst, got, sizeof got);
    assert_string_equal(got, want);
    struct platform_proc_cache *c = platform_proc_cache_new();
    struct platform_proc pr;
    rc = platform_proc_lookup_tcp(c, (struct sockaddr *)&peer, (struct sockaddr *)&odst, &pr, err, sizeof err);
    if (rc != 0)
        fail_msg("lookup by original destination: %d %s", rc, err);
    assert_int_equal(pr.pid, getpid());
    /* Asking with the agent's own address instead finds nothing: the client
     * socket never learns about the redirect. */
    struct sockaddr_storage local;
    socklen_t llen = sizeof local;
    getsockname(afd, (struct sockaddr *)&local, &llen);
    assert_int_equal(platform_proc_lookup_tcp(c, (struct sockaddr *)&peer, (struct sockaddr *)&local, &pr,
                                              err, sizeof err),
                     PLATFORM_ENOTLOCAL);
    platform_proc_cache_free(c);
    close(afd);
    close(cfd);
}

static void test_redirected_connection_gives_original_destination_and_its_process(void **state)
{
    if (!in_netns)
        skip();
    struct platform_intercept_config cfg;
    char err[512] = "";
    platform_intercept_config_default(&cfg);
    cfg.port = AGENT_PORT;
    int l4 = listen_at("127.0.0.1"), l6 = listen_at("::1");
    if (platform_intercept_enable(&cfg, err, sizeof err) != 0)
        fail_msg("enable: %s", err);
    assert_int_equal(platform_intercept_heartbeat(30000, err, sizeof err), 0);
    check_redirected(l4, "192.0.2.2", 443, "192.0.2.2:443");
    check_redirected(l4, "192.0.2.77", 80, "192.0.2.77:80");
    check_redirected(l6, "2001:db8:5::2", 443, "[2001:db8:5::2]:443");
    assert_int_equal(platform_intercept_down(err, sizeof err), 0);
    bool was = false;
    assert_int_equal(platform_intercept_disable(&was, err, sizeof err), 0);
    assert_true(was);
    close(l4);
    close(l6);
}

static void test_direct_connection_has_no_original_destination(void **state)
{
    if (!in_netns)
        skip();
    int lfd = listen_at("127.0.0.1");
    struct sockaddr_storage ss, odst;
    socklen_t len;
    char err[512] = "";
    sa_make(&ss, &len, "127.0.0.1", AGENT_PORT);
    int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&ss, len), 0);
    int afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(afd >= 0);
    assert_int_equal(platform_original_dst(afd, &odst, NULL, err, sizeof err), -ENOENT);
    assert_true(strlen(err) > 0);
    assert_true(platform_original_dst(-1, &odst, NULL, err, sizeof err) < 0);
    close(afd);
    close(cfd);
    close(lfd);
}

static void test_heartbeat_without_table_says_not_enabled(void **state)
{
    if (!in_netns)
        skip();
    char err[512] = "";
    assert_int_equal(platform_intercept_heartbeat(3000, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "not enabled"));
    assert_true(platform_intercept_heartbeat(5, err, sizeof err) < 0);   /* ttl out of range */
    char *out = NULL;
    assert_int_equal(platform_intercept_status(&out, err, sizeof err), -ENOENT);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redirected_connection_gives_original_destination_and_its_process),
        cmocka_unit_test(test_direct_connection_has_no_original_destination),
        cmocka_unit_test(test_heartbeat_without_table_says_not_enabled),
    };
    return cmocka_run_group_tests(tests, setup_netns, NULL);
}
