/* Unit tests for proxy/splice: the pipe pool and one relay direction over
 * real loopback TCP connections (a -> b is the "client", c -> d the
 * "origin"; the direction under test moves b's input to c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/splice.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct link {
    int a, b, c, d;   /* a->b: the source connection; c->d: the destination */
};

static int fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* A connected loopback pair: *x the connecting end, *y the accepted one. */
static void tcp_pair(int *x, int *y, int bufsz)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof in;
    assert_int_equal(bind(l, (struct sockaddr *)&in, sizeof in), 0);
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&in, &len), 0);
    *x = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bufsz) {
        setsockopt(*x, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
        setsockopt(*x, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    }
    assert_int_equal(connect(*x, (struct sockaddr *)&in, sizeof in), 0);
    *y = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*y >= 0);
    if (bufsz) {
        setsockopt(*y, SOL_SOCKET, SO_RCVBUF, &bufsz, sizeof bufsz);
        setsockopt(*y, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    }
    close(l);
    nonblock(*x);
    nonblock(*y);
}

static void link_open(struct link *k, int bufsz)
{
    tcp_pair(&k->a, &k->b, 0);
    tcp_pair(&k->c, &k->d, bufsz);
}

static void link_close(struct link *k)
{
    close(k->a);
    close(k->b);
    close(k->c);
    close(k->d);
}

static unsigned char pat(uint64_t i) { return (unsigned char)(i * 131 + (i >> 9)); }

/* Writes pattern bytes [*off, *off + n) to fd as far as it takes them. */
/* A source link a->b, a destination link c->d, a pipe pool and the
 * direction b -> c under test: what every relay test starts from. */
static void rig_open(struct link *k, struct splice_pool *p, struct splice_dir *d, int dst_bufsz)
{
    link_open(k, dst_bufsz);
    splice_pool_init(p, SPLICE_PIPE_SIZE);
    splice_dir_init(d, k->b, k->c);
}

static void rig_close(struct link *k, struct splice_pool *p, struct splice_dir *d)
{
    splice_dir_release(d, p);
    splice_pool_clear(p);
    link_close(k);
}

static void put(int fd, uint64_t *off, uint64_t end)
{
    unsigned char b[65536];
    while (*off < end) {
        size_t n = end - *off < sizeof b ? (size_t)(end - *off) : sizeof b;
        for (size_t i = 0; i < n; i++)
            b[i] = pat(*off + i);
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        *off += (uint64_t)w;
    }
}

/* Reads what fd has, checking it against the pattern; -1 at EOF. */
static int take(int fd, uint64_t *off)
{
    unsigned char b[65536];
    for (;;) {
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r == 0)
            return -1;
        if (r < 0)
            return 0;
        for (ssize_t i = 0; i < r; i++)
            assert_int_equal(b[i], pat(*off + (uint64_t)i));
        *off += (uint64_t)r;
    }
}

static void wait_readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    poll(&p, 1, 2000);
}

static void test_pool_reuses_and_bounds_its_pipes(void **state)
{
    (void)state;
    struct splice_pool p;
    splice_pool_init(&p, SPLICE_PIPE_SIZE);
    struct splice_pipe pp[SPLICE_POOL_MAX + 2];
    for (int i = 0; i < SPLICE_POOL_MAX + 2; i++)
        assert_int_equal(splice_pool_take(&p, &pp[i]), 0);
    assert_int_equal(p.created, SPLICE_POOL_MAX + 2);
    assert_true(fcntl(pp[0].wr, F_GETPIPE_SZ) >= 65536);
    struct splice_pipe last = pp[SPLICE_POOL_MAX + 1];
    for (int i = 0; i < SPLICE_POOL_MAX + 2; i++) {
        splice_pool_give(&p, &pp[i]);
        assert_int_equal(pp[i].rd, -1);   /* the caller no longer holds it */
    }
    assert_int_equal(p.nfree, SPLICE_POOL_MAX);
    assert_false(fd_open(last.rd));       /* past the bound: closed */
    struct splice_pipe again;
    assert_int_equal(splice_pool_take(&p, &again), 0);
    assert_int_equal(p.created, SPLICE_POOL_MAX + 2);   /* reused, not made */
    splice_pool_give(&p, &again);
    struct splice_pipe kept = p.free[0];
    splice_pool_clear(&p);
    assert_int_equal(p.nfree, 0);
    assert_false(fd_open(kept.rd));
    assert_false(fd_open(kept.wr));
}

static void test_bytes_move_intact_and_an_idle_direction_holds_nothing(void **state)
{
    (void)state;
    struct link k;
    struct splice_pool p;
    struct splice_dir d;
    rig_open(&k, &p, &d, 0);
    uint64_t sent = 0, got = 0, total = 8u << 20;
    for (int i = 0; i < 100000 && got < total; i++) {
        put(k.a, &sent, total);
        int rc = splice_dir_pump(&d, &p, SPLICE_BUDGET);
        assert_true(rc == SPLICE_WANT_READ || rc == SPLICE_WANT_WRITE);
        take(k.d, &got);
    }
    assert_int_equal(got, total);
    assert_int_equal(d.moved, total);
    /* nothing in flight: the pipe went back to the pool */
    assert_int_equal(splice_dir_pump(&d, &p, SPLICE_BUDGET), SPLICE_WANT_READ);
    assert_int_equal(d.parked, 0);
    assert_int_equal(d.pipe.rd, -1);
    assert_null(d.copy);
    assert_true(p.nfree >= 1);
    assert_true(p.created <= 2);
    rig_close(&k, &p, &d);
}

static void test_a_full_destination_parks_the_bytes_and_stops_reading(void **state)
{
    (void)state;
    struct link k;
    struct splice_pool p;
    struct splice_dir d;
    rig_open(&k, &p, &d, 16384);   /* small buffers on the destination */
    uint64_t sent = 0, got = 0, total = 32u << 20;
    int rc = SPLICE_WANT_READ;
    for (int i = 0; i < 1000 && rc != SPLICE_WANT_WRITE; i++) {
        put(k.a, &sent, total);
        rc = splice_dir_pump(&d, &p, SPLICE_BUDGET);
    }
    assert_int_equal(rc, SPLICE_WANT_WRITE);
    assert_true(d.parked > 0);
    assert_true(d.pipe.rd >= 0);          /* held while bytes are in it */
    uint64_t moved = d.moved;
    put(k.a, &sent, total);
    assert_int_equal(splice_dir_pump(&d, &p, SPLICE_BUDGET), SPLICE_WANT_WRITE);
    assert_int_equal(d.moved, moved);     /* the source was not read meanwhile */
    /* the reader catches up: everything arrives, in order */
    for (int i = 0; i < 200000 && got < total; i++) {
        take(k.d, &got);
        put(k.a, &sent, total);
        splice_dir_pump(&d, &p, SPLICE_BUDGET);
    }
    assert_int_equal(got, total);
    rig_close(&k, &p, &d);
}

static void test_eof_is_passed_on_after_the_pipe_drains(void **state)
{
    (void)state;
    struct link k;
    struct splice_pool p;
    struct splice_dir d;
    rig_open(&k, &p, &d, 0);
    uint64_t sent = 0, got = 0, total = 300000;
    put(k.a, &sent, total);
    assert_int_equal(sent, total);
    shutdown(k.a, SHUT_WR);
    int rc = -1, eof = 0;
    for (int i = 0; i < 10000 && !eof; i++) {
        wait_readable(k.b);
        rc = splice_dir_pump(&d, &p, SPLICE_BUDGET);
        assert_true(rc >= 0);
        eof = take(k.d, &got) < 0;
    }
    assert_int_equal(rc, SPLICE_DONE);
    assert_true(eof);
    assert_int_equal(got, total);
    assert_true(d.src_eof && d.dst_shut);
    /* the destination can still send the other way: only its write side shut */
    assert_int_equal(send(k.d, "x", 1, MSG_NOSIGNAL), 1);
    wait_readable(k.c);
    char ch;
    assert_int_equal(recv(k.c, &ch, 1, 0), 1);
    assert_int_equal(splice_dir_pump(&d, &p, SPLICE_BUDGET), SPLICE_DONE);   /* stays done */
    rig_close(&k, &p, &d);
}

static void test_a_reset_source_is_an_error(void **state)
{
    (void)state;
    struct link k;
    struct splice_pool p;
    struct splice_dir d;
    rig_open(&k, &p, &d, 0);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(k.a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(k.a);   /* RST */
    k.a = socket(AF_INET, SOCK_STREAM, 0);
    wait_readable(k.b);
    int rc = splice_dir_pump(&d, &p, SPLICE_BUDGET);
    assert_int_equal(rc, -ECONNRESET);
    assert_int_equal(d.pipe.rd, -1);   /* nothing held after the error */
    rig_close(&k, &p, &d);
}

static void test_release_with_bytes_in_flight_closes_the_pipe(void **state)
{
    (void)state;
    struct link k;
    struct splice_pool p;
    struct splice_dir d;
    rig_open(&k, &p, &d, 16384);
    uint64_t sent = 0, total = 32u << 20;
    int rc = SPLICE_WANT_READ;
    for (int i = 0; i < 1000 && rc != SPLICE_WANT_WRITE; i++) {
        put(k.a, &sent, total);
        rc = splice_dir_pump(&d, &p, SPLICE_BUDGET);
    }
    assert_int_equal(rc, SPLICE_WANT_WRITE);
    struct splice_pipe held = d.pipe;
    unsigned nfree = p.nfree;
    splice_dir_release(&d, &p);
    assert_int_equal(p.nfree, nfree);     /* a pipe with bytes never goes back */
    assert_false(fd_open(held.rd));
    assert_int_equal(d.pipe.rd, -1);
    assert_int_equal(d.parked, 0);
    splice_pool_clear(&p);
    link_close(&k);
}

static void test_without_pipes_it_copies_instead(void **state)
{
    (void)state;
    struct link k;
    struct splice_pool p;
    struct splice_dir d;
    rig_open(&k, &p, &d, 0);
    /* no descriptor left for a pipe: EMFILE */
    struct rlimit old, low;
    getrlimit(RLIMIT_NOFILE, &old);
    int lowest_free = dup(0);   /* every number below it is in use */
    assert_true(lowest_free >= 0);
    close(lowest_free);
    low.rlim_cur = (rlim_t)lowest_free;
    low.rlim_max = old.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    uint64_t sent = 0, got = 0, total = 4u << 20;
    for (int i = 0; i < 100000 && got < total; i++) {
        put(k.a, &sent, total);
        int rc = splice_dir_pump(&d, &p, SPLICE_BUDGET);
        assert_true(rc == SPLICE_WANT_READ || rc == SPLICE_WANT_WRITE);
        take(k.d, &got);
    }
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(got, total);
    assert_true(p.failed > 0);
    assert_int_equal(p.created, 0);
    assert_null(d.copy);   /* drained: the buffer is gone too */
    /* with descriptors again, it splices */
    sent = got = 0;
    for (int i = 0; i < 100000 && got < total; i++) {
        put(k.a, &sent, total);
        splice_dir_pump(&d, &p, SPLICE_BUDGET);
        take(k.d, &got);
    }
    assert_int_equal(got, total);
    assert_true(p.created > 0);
    rig_close(&k, &p, &d);
}

static void test_small_messages_are_copied_and_bulk_is_spliced(void **state)
{
    (void)state;
    struct link k;
    struct splice_pool p;
    struct splice_dir d;
    rig_open(&k, &p, &d, 0);
    uint64_t sent = 0, got = 0;
    for (int i = 0; i < 50; i++) {   /* an interactive exchange: 300 bytes at a time */
        put(k.a, &sent, sent + 300);
        wait_readable(k.b);
        assert_int_equal(splice_dir_pump(&d, &p, SPLICE_BUDGET), SPLICE_WANT_READ);
        wait_readable(k.d);
        take(k.d, &got);
        assert_int_equal(got, sent);
    }
    assert_int_equal(p.created, 0);   /* no pipe for small reads */
    assert_false(d.bulk);
    uint64_t end = sent + (4u << 20);
    for (int i = 0; i < 100000 && got < end; i++) {
        put(k.a, &sent, end);
        splice_dir_pump(&d, &p, SPLICE_BUDGET);
        take(k.d, &got);
    }
    assert_int_equal(got, end);
    assert_true(p.created > 0);       /* bulk went through a pipe */
    assert_int_equal(d.moved, end);
    rig_close(&k, &p, &d);
}

static void test_small_messages_to_a_full_destination_are_parked_in_order(void **state)
{
    (void)state;
    struct link k;
    struct splice_pool p;
    struct splice_dir d;
    rig_open(&k, &p, &d, 16384);
    uint64_t sent = 0, got = 0;
    int rc = SPLICE_WANT_READ;
    for (int i = 0; i < 100000 && rc != SPLICE_WANT_WRITE; i++) {
        put(k.a, &sent, sent + 200);
        wait_readable(k.b);
        rc = splice_dir_pump(&d, &p, SPLICE_BUDGET);
    }
    assert_int_equal(rc, SPLICE_WANT_WRITE);
    assert_true(d.parked > 0 && d.copy != NULL);
    uint64_t moved = d.moved;
    put(k.a, &sent, sent + 200);
    assert_int_equal(splice_dir_pump(&d, &p, SPLICE_BUDGET), SPLICE_WANT_WRITE);
    assert_int_equal(d.moved, moved);
    for (int i = 0; i < 100000 && got < sent; i++) {
        take(k.d, &got);
        splice_dir_pump(&d, &p, SPLICE_BUDGET);
    }
    assert_int_equal(got, sent);
    assert_null(d.copy);
    rig_close(&k, &p, &d);
}

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
    return ss;
}

static void test_a_peer_on_loopback_or_at_our_own_address_is_local(void **state)
{
    (void)state;
    struct sockaddr_storage lo = v4("127.0.0.1"), lo2 = v4("127.3.4.5"), lan = v4("192.168.1.5"),
                            other = v4("192.168.1.9"), lo6 = v6("::1"), m = v6("::ffff:127.0.0.1"),
                            m2 = v6("::ffff:10.0.0.1"), g6 = v6("2001:db8::1"), g6b = v6("2001:db8::2");
    assert_true(splice_peer_is_local(NULL, &lo));
    assert_true(splice_peer_is_local(&lan, &lo2));
    assert_true(splice_peer_is_local(NULL, &lo6));
    assert_true(splice_peer_is_local(NULL, &m));
    /* a client redirected to us from this host's own LAN address */
    assert_true(splice_peer_is_local(&lan, &lan));
    assert_true(splice_peer_is_local(&g6, &g6));
    /* another machine */
    assert_false(splice_peer_is_local(&lan, &other));
    assert_false(splice_peer_is_local(NULL, &other));
    assert_false(splice_peer_is_local(&g6, &g6b));
    assert_false(splice_peer_is_local(&lo, &m2));
}

static void cc_of(int fd, char *out, size_t cap)
{
    socklen_t len = (socklen_t)cap - 1;
    memset(out, 0, cap);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, out, &len), 0);
}

static void test_a_local_client_leg_gets_the_non_pacing_congestion_control(void **state)
{
    (void)state;
    int x, y;
    char before[32], after[32];
    tcp_pair(&x, &y, 0);
    cc_of(y, before, sizeof before);
    assert_int_equal(splice_local_cc(y), 1);
    cc_of(y, after, sizeof after);
    assert_string_equal(after, SPLICE_LOCAL_CC);
    /* the other end (not ours to change) keeps the system's default */
    cc_of(x, after, sizeof after);
    assert_string_equal(after, before);
    close(x);
    close(y);
    /* not a socket: an error, nothing else */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_true(splice_local_cc(p[0]) < 0);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_reuses_and_bounds_its_pipes),
        cmocka_unit_test(test_bytes_move_intact_and_an_idle_direction_holds_nothing),
        cmocka_unit_test(test_a_full_destination_parks_the_bytes_and_stops_reading),
        cmocka_unit_test(test_eof_is_passed_on_after_the_pipe_drains),
        cmocka_unit_test(test_a_reset_source_is_an_error),
        cmocka_unit_test(test_release_with_bytes_in_flight_closes_the_pipe),
        cmocka_unit_test(test_without_pipes_it_copies_instead),
        cmocka_unit_test(test_small_messages_are_copied_and_bulk_is_spliced),
        cmocka_unit_test(test_small_messages_to_a_full_destination_are_parked_in_order),
        cmocka_unit_test(test_a_peer_on_loopback_or_at_our_own_address_is_local),
        cmocka_unit_test(test_a_local_client_leg_gets_the_non_pacing_congestion_control),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
