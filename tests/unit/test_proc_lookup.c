/* Unit tests for platform_proc_lookup_tcp: real sockets on loopback, real
 * processes (this one, a forked child, a renamed copy of curl). */
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct pair {
    int lfd, cfd, afd;               /* listener, client, accepted */
    struct sockaddr_storage peer;    /* accept(): the client's address */
    struct sockaddr_storage local;   /* getsockname(accepted) */
};

static int listen_on(int family, const char *addr, int v6only)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
        assert_int_equal(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only), 0);
        len = sizeof *in6;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static uint16_t port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                         : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int connect_to(int family, const char *addr, uint16_t port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        inet_pton(AF_INET, addr, &in->sin_addr);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        inet_pton(AF_INET6, addr, &in6->sin6_addr);
        len = sizeof *in6;
    }
    assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
    return fd;
}

/* Accepts one connection within 10 s and records both addresses. */
static int accept_one(int lfd, struct pair *p)
{
    struct pollfd pfd = { .fd = lfd, .events = POLLIN };
    if (poll(&pfd, 1, 10000) != 1)
        return -1;
    socklen_t len = sizeof p->peer;
    p->afd = accept4(lfd, (struct sockaddr *)&p->peer, &len, SOCK_CLOEXEC);
    if (p->afd < 0)
        return -1;
    len = sizeof p->local;
    return getsockname(p->afd, (struct sockaddr *)&p->local, &len);
}

static void make_pair(struct pair *p, int lfamily, const char *laddr, int cfamily, const char *caddr)
{
    memset(p, 0, sizeof *p);
    p->lfd = listen_on(lfamily, laddr, 0);
    p->cfd = connect_to(cfamily, caddr, port_of(p->lfd));
    assert_int_equal(accept_one(p->lfd, p), 0);
}

static void close_pair(struct pair *p)
{
    close(p->afd);
    if (p->cfd >= 0)
        close(p->cfd);
    close(p->lfd);
}

static void self_identity(char *comm, size_t ccap, char *exe, size_t ecap)
{
    FILE *f = fopen("/proc/self/comm", "r");
    assert_non_null(f);
    assert_non_null(fgets(comm, (int)ccap, f));
    fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
    ssize_t n = readlink("/proc/self/exe", exe, ecap - 1);
    assert_true(n > 0);
    exe[n] = '\0';
}

static void expect_self(struct pair *p)
{
    char comm[64], exe[256], err[512] = "";
    struct platform_proc pr;
    struct platform_proc_cache *c = platform_proc_cache_new();
    assert_non_null(c);
    self_identity(comm, sizeof comm, exe, sizeof exe);
    int rc = platform_proc_lookup_tcp(c, (struct sockaddr *)&p->peer, (struct sockaddr *)&p->local,
                                      &pr, err, sizeof err);
    if (rc != 0)
        fail_msg("lookup failed: %d %s", rc, err);
    assert_int_equal(pr.pid, getpid());
    assert_int_equal(pr.uid, (int)getuid());
    assert_string_equal(pr.comm, comm);
    assert_string_equal(pr.exe, exe);
    assert_string_equal(pr.exe_base, strrchr(exe, '/') + 1);
    platform_proc_cache_free(c);
}

static void test_own_ipv4_connection_names_this_process(void **state)
{
    struct pair p;
    make_pair(&p, AF_INET, "127.0.0.1", AF_INET, "127.0.0.1");
    expect_self(&p);
    close_pair(&p);
}

static void test_own_ipv6_connection_names_this_process(void **state)
{
    struct pair p;
    make_pair(&p, AF_INET6, "::1", AF_INET6, "::1");
    expect_self(&p);
    close_pair(&p);
}

/* A dual-stack agent listener sees an IPv4 client as ::ffff:127.0.0.1. */
static void test_v4_mapped_client_of_dual_stack_listener_is_found(void **state)
{
    struct pair p;
    make_pair(&p, AF_INET6, "::", AF_INET, "127.0.0.1");
    assert_int_equal(p.peer.ss_family, AF_INET6);
    expect_self(&p);
    close_pair(&p);
}

static void test_forked_child_is_named_by_its_pid_and_name(void **state)
{
    int lfd = listen_on(AF_INET, "127.0.0.1", 0), go[2];
    uint16_t port = port_of(lfd);
    assert_int_equal(pipe(go), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        prctl(PR_SET_NAME, "shoji-kid", 0, 0, 0);
        close(go[1]);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port) };
        inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
        if (connect(fd, (struct sockaddr *)&in, sizeof in) != 0)
            _exit(1);
        char b;
        (void)!read(go[0], &b, 1);   /* hold the socket until the parent is done */
        _exit(0);
    }
    close(go[0]);
    struct pair p = { .lfd = lfd, .cfd = -1 };
    assert_int_equal(accept_one(lfd, &p), 0);
    struct platform_proc pr;
    char err[512] = "";
    struct platform_proc_cache *c = platform_proc_cache_new();
    int rc = platform_proc_lookup_tcp(c, (struct sockaddr *)&p.peer, (struct sockaddr *)&p.local,
                                      &pr, err, sizeof err);
    close(go[1]);
    int st;
    waitpid(kid, &st, 0);
    if (rc != 0)
        fail_msg("lookup failed: %d %s", rc, err);
    assert_int_equal(pr.pid, kid);
    assert_string_equal(pr.comm, "shoji-kid");
    platform_proc_cache_free(c);
    close_pair(&p);
}

static const char *find_curl(void)
{
    static const char *cands[] = { "/usr/bin/curl", "/usr/local/bin/curl", "/bin/curl" };
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (access(cands[i], X_OK) == 0)
            return cands[i];
    return NULL;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    char buf[65536];
    ssize_t n;
    int rc = (in < 0 || out < 0) ? -1 : 0;
    while (rc == 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0)
        rc = -1;
    return rc;
}

/* A copy of curl named NTRTSCAN in a temporary directory, and a local
 * listener with its URL: false when there is no curl to copy. */
struct renamed_curl {
    char dir[32], exe[64], url[64];
    int lfd;
};

static bool renamed_curl_make(struct renamed_curl *r)
{
    const char *curl = find_curl();
    if (!curl)
        return false;
    snprintf(r->dir, sizeof r->dir, "/tmp/shoji-proc-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->exe, sizeof r->exe, "%s/NTRTSCAN", r->dir);
    assert_int_equal(copy_file(curl, r->exe), 0);
    r->lfd = listen_on(AF_INET, "127.0.0.1", 0);
    snprintf(r->url, sizeof r->url, "http://127.0.0.1:%u/", port_of(r->lfd));
    return true;
}

static void renamed_curl_remove(const struct renamed_curl *r)
{
    unlink(r->exe);
    rmdir(r->dir);
}

/* The vendor note's case: Trend Micro's scanner, NTRTSCAN, must be
 * recognised by name. A copy of curl under that name stands in for it. */
static void test_renamed_curl_is_recognised_as_NTRTSCAN(void **state)
{
    struct renamed_curl rc_;
    if (!renamed_curl_make(&rc_))
        skip();
    const char *exe = rc_.exe, *url = rc_.url;
    int lfd = rc_.lfd;
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execl(exe, "NTRTSCAN", "-s", "-m", "10", url, (char *)NULL);
        _exit(127);
    }
    struct pair p = { .lfd = lfd, .cfd = -1 };
    int arc = accept_one(lfd, &p);
    struct platform_proc pr;
    char err[512] = "";
    struct platform_proc_cache *c = platform_proc_cache_new();
    int rc = arc == 0 ? platform_proc_lookup_tcp(c, (struct sockaddr *)&p.peer,
                                                 (struct sockaddr *)&p.local, &pr, err, sizeof err)
                      : -1;
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    renamed_curl_remove(&rc_);
    assert_int_equal(arc, 0);
    if (rc != 0)
        fail_msg("lookup failed: %d %s", rc, err);
    assert_int_equal(pr.pid, kid);
    assert_string_equal(pr.comm, "NTRTSCAN");
    assert_string_equal(pr.exe_base, "NTRTSCAN");
    assert_string_equal(pr.exe, exe);
    platform_proc_cache_free(c);
    close_pair(&p);
}

static void test_unknown_address_pair_is_not_local(void **state)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(40000) };
    struct sockaddr_in b = { .sin_family = AF_INET, .sin_port = htons(443) };
    inet_pton(AF_INET, "192.0.2.1", &a.sin_addr);
    inet_pton(AF_INET, "192.0.2.2", &b.sin_addr);
    struct platform_proc pr;
    char err[512] = "";
    struct platform_proc_cache *c = platform_proc_cache_new();
    assert_int_equal(platform_proc_lookup_tcp(c, (struct sockaddr *)&a, (struct sockaddr *)&b, &pr,
                                              err, sizeof err),
                     PLATFORM_ENOTLOCAL);
    assert_int_equal(pr.pid, -1);
    assert_true(strlen(err) > 0);
    platform_proc_cache_free(c);
}

/* The client hung up before we asked: its socket lingers (FIN_WAIT) but no
 * process holds it any more. */
static void test_closed_client_socket_reports_gone(void **state)
{
    struct pair p;
    make_pair(&p, AF_INET, "127.0.0.1", AF_INET, "127.0.0.1");
    close(p.cfd);
    p.cfd = -1;
    struct platform_proc pr;
    char err[512] = "";
    struct platform_proc_cache *c = platform_proc_cache_new();
    int rc = platform_proc_lookup_tcp(c, (struct sockaddr *)&p.peer, (struct sockaddr *)&p.local, &pr,
                                      err, sizeof err);
    assert_int_equal(rc, PLATFORM_EGONE);
    assert_int_equal(pr.pid, -1);
    platform_proc_cache_free(c);
    close_pair(&p);
}

/* A burst of connections from one program costs one /proc walk. */
static void test_burst_from_one_process_scans_proc_once(void **state)
{
    enum { N = 8 };
    int lfd = listen_on(AF_INET, "127.0.0.1", 0), cfd[N];
    struct pair p[N];
    for (int i = 0; i < N; i++) {
        cfd[i] = connect_to(AF_INET, "127.0.0.1", port_of(lfd));
        memset(&p[i], 0, sizeof p[i]);
        assert_int_equal(accept_one(lfd, &p[i]), 0);
    }
    struct platform_proc_cache *c = platform_proc_cache_new();
    for (int i = 0; i < N; i++) {
        struct platform_proc pr;
        char err[512] = "";
        int rc = platform_proc_lookup_tcp(c, (struct sockaddr *)&p[i].peer,
                                          (struct sockaddr *)&p[i].local, &pr, err, sizeof err);
        if (rc != 0)
            fail_msg("lookup %d failed: %d %s", i, rc, err);
        assert_int_equal(pr.pid, getpid());
    }
    struct platform_proc_stats st;
    platform_proc_cache_stats(c, &st);
    assert_int_equal(st.lookups, N);
    assert_int_equal(st.full_scans, 1);
    assert_int_equal(st.cache_hits + st.hint_hits, N - 1);
    platform_proc_cache_free(c);
    for (int i = 0; i < N; i++) {
        close(cfd[i]);
        close(p[i].afd);
    }
    close(lfd);
}

static void test_bad_addresses_are_refused_not_crashed(void **state)
{
    struct sockaddr_un_like { sa_family_t f; char path[20]; } u = { AF_UNIX, "x" };
    struct sockaddr_in a = { .sin_family = AF_INET };
    struct sockaddr_in6 b = { .sin6_family = AF_INET6 };
    struct platform_proc pr;
    char err[512];
    struct platform_proc_cache *c = platform_proc_cache_new();
    assert_true(platform_proc_lookup_tcp(c, NULL, (struct sockaddr *)&a, &pr, err, sizeof err) < 0);
    assert_true(platform_proc_lookup_tcp(c, (struct sockaddr *)&u, (struct sockaddr *)&a, &pr, err,
                                         sizeof err) < 0);
    assert_true(platform_proc_lookup_tcp(c, (struct sockaddr *)&a, (struct sockaddr *)&b, &pr, err,
                                         sizeof err) < 0);
    assert_true(platform_proc_lookup_tcp(NULL, (struct sockaddr *)&a, (struct sockaddr *)&a, &pr, err,
                                         sizeof err) < 0);
    assert_true(platform_proc_describe(-5, &pr, err, sizeof err) < 0);
    assert_int_equal(platform_proc_describe(999999999, &pr, err, sizeof err), PLATFORM_EGONE);
    platform_proc_cache_free(c);
}


/* ---- the cache must never return a stale name ----------------------------- */

static int lookup_pair(struct platform_proc_cache *c, struct pair *p, struct platform_proc *pr)
{
    char err[512] = "";
    int rc = platform_proc_lookup_tcp(c, (struct sockaddr *)&p->peer, (struct sockaddr *)&p->local, pr,
                                      err, sizeof err);
    if (rc != 0)
        print_message("lookup: %d %s\n", rc, err);
    return rc;
}

/* A child named `name` that connects to port and holds the socket until
 * `hold` is readable (then exits, or execs `exe` connecting to url). */
static pid_t spawn_named(const char *name, uint16_t port, const int hold[2], const char *exe,
                         const char *url)
{
    pid_t kid = fork();
    if (kid != 0)
        return kid;
    close(hold[1]);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);   /* not CLOEXEC: survives the exec */
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    if (connect(fd, (struct sockaddr *)&in, sizeof in) != 0)
        _exit(1);
    char b;
    (void)!read(hold[0], &b, 1);
    if (exe) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execl(exe, "NTRTSCAN", "-s", "-m", "10", url, (char *)NULL);
    }
    _exit(0);
}

/* Same pid, same start time, another program: a process that execs keeps
 * its pid; the next connection must carry the new name. */
static void test_exec_into_a_renamed_binary_changes_the_name_at_once(void **state)
{
    struct renamed_curl rc_;
    if (!renamed_curl_make(&rc_))
        skip();
    const char *exe = rc_.exe, *url = rc_.url;
    int lfd = rc_.lfd, go[2];
    assert_int_equal(pipe(go), 0);
    pid_t kid = spawn_named("before-exec", port_of(lfd), go, exe, url);
    close(go[0]);
    struct platform_proc_cache *c = platform_proc_cache_new();
    struct pair a = { .lfd = lfd, .cfd = -1 }, b = { .lfd = lfd, .cfd = -1 };
    struct platform_proc pr;
    assert_int_equal(accept_one(lfd, &a), 0);
    int rc1 = lookup_pair(c, &a, &pr);
    char first[64];
    snprintf(first, sizeof first, "%s", pr.comm);
    int pid1 = pr.pid;
    close(go[1]);   /* exec now */
    int arc = accept_one(lfd, &b);
    int rc2 = arc == 0 ? lookup_pair(c, &b, &pr) : -1;
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    renamed_curl_remove(&rc_);
    assert_int_equal(rc1, 0);
    assert_int_equal(pid1, kid);
    assert_string_equal(first, "before-exec");
    assert_int_equal(rc2, 0);
    assert_int_equal(pr.pid, kid);
    assert_string_equal(pr.comm, "NTRTSCAN");
    assert_string_equal(pr.exe, exe);
    platform_proc_cache_free(c);
    close(a.afd);
    close(b.afd);
    close(lfd);
}

/* A child with exactly pid `pid` (clone3 set_tid: root only); -1 if the
 * kernel refuses. */
static pid_t spawn_with_pid(pid_t pid)
{
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    args.set_tid = (uint64_t)(uintptr_t)&pid;
    args.set_tid_size = 1;
    return (pid_t)syscall(SYS_clone3, &args, sizeof args);
}

/* The worst case for a pid-keyed cache: the owner exits and a different
 * program gets its pid number and connects. */
static void test_a_reused_pid_does_not_inherit_the_old_name(void **state)
{
    int lfd = listen_on(AF_INET, "127.0.0.1", 0), go[2], go2[2];
    uint16_t port = port_of(lfd);
    assert_int_equal(pipe(go), 0);
    pid_t old = spawn_named("old-owner", port, go, NULL, NULL);
    close(go[0]);
    struct platform_proc_cache *c = platform_proc_cache_new();
    struct pair a = { .lfd = lfd, .cfd = -1 }, b = { .lfd = lfd, .cfd = -1 };
    struct platform_proc pr;
    assert_int_equal(accept_one(lfd, &a), 0);
    assert_int_equal(lookup_pair(c, &a, &pr), 0);
    assert_int_equal(pr.pid, old);
    assert_string_equal(pr.comm, "old-owner");
    close(go[1]);
    waitpid(old, NULL, 0);   /* gone: its pid number is free */
    close(a.afd);
    assert_int_equal(pipe(go2), 0);
    pid_t kid = spawn_with_pid(old);
    if (kid == 0) {
        close(go2[1]);
        prctl(PR_SET_NAME, "new-owner", 0, 0, 0);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port) };
        inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
        if (connect(fd, (struct sockaddr *)&in, sizeof in) != 0)
            _exit(1);
        char ch;
        (void)!read(go2[0], &ch, 1);
        _exit(0);
    }
    close(go2[0]);
    if (kid < 0) {   /* not root, or the pid was taken meanwhile */
        close(go2[1]);
        platform_proc_cache_free(c);
        close(lfd);
        skip();
    }
    assert_int_equal(kid, old);
    assert_int_equal(accept_one(lfd, &b), 0);
    int rc = lookup_pair(c, &b, &pr);
    close(go2[1]);
    waitpid(kid, NULL, 0);
    assert_int_equal(rc, 0);
    assert_int_equal(pr.pid, old);
    assert_string_equal(pr.comm, "new-owner");
    platform_proc_cache_free(c);
    close(b.afd);
    close(lfd);
}

/* The common case is cheap: a new connection of a process seen before is
 * found without walking /proc — just above its last socket, or where one of
 * its connections ended (the kernel reuses the lowest free fd). */
static void test_new_sockets_of_a_known_process_need_no_walk(void **state)
{
    int lfd = listen_on(AF_INET, "127.0.0.1", 0);
    struct platform_proc_cache *c = platform_proc_cache_new();
    struct pair p[3];
    struct platform_proc pr[3];
    int cfd[3];
    for (int i = 0; i < 2; i++) {
        cfd[i] = connect_to(AF_INET, "127.0.0.1", port_of(lfd));
        memset(&p[i], 0, sizeof p[i]);
        assert_int_equal(accept_one(lfd, &p[i]), 0);
        assert_int_equal(lookup_pair(c, &p[i], &pr[i]), 0);
        assert_int_equal(pr[i].pid, getpid());
        assert_int_equal(pr[i].fd, cfd[i]);
    }
    struct platform_proc_stats st0, st;
    platform_proc_cache_stats(c, &st0);
    /* the client replaces its first connection: same fd number */
    close(cfd[0]);
    platform_proc_release(c, &pr[0]);
    cfd[2] = connect_to(AF_INET, "127.0.0.1", port_of(lfd));
    memset(&p[2], 0, sizeof p[2]);
    assert_int_equal(accept_one(lfd, &p[2]), 0);
    assert_int_equal(lookup_pair(c, &p[2], &pr[2]), 0);
    assert_int_equal(pr[2].pid, getpid());
    assert_int_equal(pr[2].fd, cfd[2]);
    platform_proc_cache_stats(c, &st);
    assert_int_equal(st.walks, st0.walks);
    assert_int_equal(st.hint_hits, st0.hint_hits + 1);
    for (int i = 0; i < 3; i++) {
        if (i)
            close(cfd[i]);
        close(p[i].afd);
    }
    platform_proc_cache_free(c);
    close(lfd);
}

static void *walk_thread(void *arg)
{
    platform_proc_walk_run(arg);
    return NULL;
}

/* The split form the proxy uses: quick (no walk) -> walk on another thread
 * -> merge -> resolve. */
static void test_quick_lookup_defers_the_walk_to_another_thread(void **state)
{
    int lfd = listen_on(AF_INET, "127.0.0.1", 0), go[2];
    assert_int_equal(pipe(go), 0);
    pid_t kid = spawn_named("walked-kid", port_of(lfd), go, NULL, NULL);
    close(go[0]);
    struct pair p = { .lfd = lfd, .cfd = -1 };
    assert_int_equal(accept_one(lfd, &p), 0);
    struct platform_proc_cache *c = platform_proc_cache_new();
    struct platform_proc pr;
    char err[512] = "";
    int rc = platform_proc_lookup_quick(c, (struct sockaddr *)&p.peer, (struct sockaddr *)&p.local, &pr,
                                        err, sizeof err);
    assert_int_equal(rc, PLATFORM_EWALK);
    assert_true(pr.inode != 0);
    assert_int_equal(pr.uid, (int)getuid());
    struct platform_proc_walk *wk = platform_proc_walk_new();
    platform_proc_walk_begin(c, wk);
    assert_true(platform_proc_walk_add(wk, pr.inode));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, walk_thread, wk), 0);
    pthread_join(t, NULL);
    platform_proc_walk_merge(c, wk);
    assert_int_equal(platform_proc_walk_result(wk, pr.inode, err, sizeof err), 0);
    rc = platform_proc_resolve(c, &pr, err, sizeof err);
    close(go[1]);
    waitpid(kid, NULL, 0);
    if (rc != 0)
        fail_msg("resolve: %d %s", rc, err);
    assert_int_equal(pr.pid, kid);
    assert_string_equal(pr.comm, "walked-kid");
    /* a socket nobody holds: the walk says so */
    platform_proc_walk_begin(c, wk);
    assert_true(platform_proc_walk_add(wk, 4000000000u));
    platform_proc_walk_run(wk);
    platform_proc_walk_merge(c, wk);
    assert_int_equal(platform_proc_walk_result(wk, 4000000000u, err, sizeof err), PLATFORM_EGONE);
    platform_proc_walk_free(wk);
    platform_proc_cache_free(c);
    close_pair(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_ipv4_connection_names_this_process),
        cmocka_unit_test(test_own_ipv6_connection_names_this_process),
        cmocka_unit_test(test_v4_mapped_client_of_dual_stack_listener_is_found),
        cmocka_unit_test(test_forked_child_is_named_by_its_pid_and_name),
        cmocka_unit_test(test_renamed_curl_is_recognised_as_NTRTSCAN),
        cmocka_unit_test(test_unknown_address_pair_is_not_local),
        cmocka_unit_test(test_closed_client_socket_reports_gone),
        cmocka_unit_test(test_burst_from_one_process_scans_proc_once),
        cmocka_unit_test(test_bad_addresses_are_refused_not_crashed),
        cmocka_unit_test(test_exec_into_a_renamed_binary_changes_the_name_at_once),
        cmocka_unit_test(test_a_reused_pid_does_not_inherit_the_old_name),
        cmocka_unit_test(test_new_sockets_of_a_known_process_need_no_walk),
        cmocka_unit_test(test_quick_lookup_defers_the_walk_to_another_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
