/* bench_proclookup: per-connection cost of finding the owning process of a
 * local TCP client (platform_proc_lookup_tcp), cold and cached.
 *
 * Sets up PROCS child processes, each holding CONNS_PER connections to a
 * loopback listener of this process (plus a few other fds, like real
 * clients), then measures:
 *   cold    a fresh cache per lookup: sock_diag + a full /proc walk
 *   burst   one cache, each connection looked up once in arrival order
 *           (what a worker sees: the first connection of a program walks
 *           /proc, the rest hit the cache or the recent-owner scan)
 *   cached  the same connections again: sock_diag + one readlink + comm/exe
 * and then, with one long-lived client process holding HELD connections,
 * what the agent sees most: a NEW socket of an already-known process
 *   churn   the client closes its oldest connection and opens a new one (the
 *           kernel hands out the lowest free fd: the one just closed), as a
 *           load generator or a browser does
 *   grow    the client opens one more connection (a new, highest fd)
 * usage: bench_proclookup [--procs N] [--conns-per N] [--rounds N]
 *                         [--held N] [--churn N] [--only churn] [--mode churn|churn-norel|grow]
 * Results go to docs/PERFORMANCE.md. */
#include "platform/platform.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CONNS 4096

struct conn {
    struct sockaddr_storage peer, local;
    int fd;
};

static int count_procs(void)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += e->d_name[0] >= '0' && e->d_name[0] <= '9';
    if (d)
        closedir(d);
    return n;
}

static void child(uint16_t port, int per, int hold)
{
    for (int i = 0; i < 8; i++)   /* other fds a real program has open */
        (void)!open("/dev/null", O_RDONLY);
    for (int i = 0; i < per; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port) };
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&in, sizeof in) != 0)
            _exit(1);
    }
    char b;
    (void)!read(hold, &b, 1);
    _exit(0);
}

static int accept_all(int lfd, struct conn *c, int n)
{
    for (int i = 0; i < n; i++) {
        struct pollfd p = { .fd = lfd, .events = POLLIN };
        if (poll(&p, 1, 10000) != 1)
            return -1;
        socklen_t len = sizeof c[i].peer;
        c[i].fd = accept(lfd, (struct sockaddr *)&c[i].peer, &len);
        len = sizeof c[i].local;
        if (c[i].fd < 0 || getsockname(c[i].fd, (struct sockaddr *)&c[i].local, &len) != 0)
            return -1;
    }
    return 0;
}

static int lookup_into(struct platform_proc_cache *pc, struct conn *c, struct platform_proc *out)
{
    struct platform_proc pr;
    char err[UTIL_ERRLEN];
    int rc = platform_proc_lookup_tcp(pc, (struct sockaddr *)&c->peer, (struct sockaddr *)&c->local,
                                      out ? out : &pr, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "lookup failed: %s\n", err);
    return rc;
}

static int lookup(struct platform_proc_cache *pc, struct conn *c)
{
    return lookup_into(pc, c, NULL);
}

static void report(const char *what, uint64_t us, int n)
{
    printf("%-8s %6d lookups  %9.1f us/lookup  %9.0f lookups/s\n", what, n, (double)us / n,
           us ? n * 1e6 / (double)us : 0.0);
}

/* The long-lived client of the churn/grow scenarios: holds `held`
 * connections; on 'c' closes its oldest and opens a new one, on 'o' opens
 * one more; exits at EOF. */
static void churn_child(uint16_t port, int held, int cmd)
{
    int fds[MAX_CONNS], n = 0, oldest = 0;
    for (int i = 0; i < 8; i++)
        (void)!open("/dev/null", O_RDONLY);
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(port) };
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char b;
    while (read(cmd, &b, 1) == 1) {
        if (b == 'c' && n > 0) {
            close(fds[oldest]);
            fds[oldest] = socket(AF_INET, SOCK_STREAM, 0);
            if (fds[oldest] < 0 || connect(fds[oldest], (struct sockaddr *)&in, sizeof in) != 0)
                _exit(1);
            oldest = (oldest + 1) % n;
        } else if (n < MAX_CONNS) {
            fds[n] = socket(AF_INET, SOCK_STREAM, 0);
            if (fds[n] < 0 || connect(fds[n], (struct sockaddr *)&in, sizeof in) != 0)
                _exit(1);
            n++;
        }
    }
    _exit(0);
}

/* One command to the churn client, one accept, one timed lookup. */
static int churn_step(int lfd, int cmd, char what, struct platform_proc_cache *pc, uint64_t *us,
                      int *afd_out, struct platform_proc *pr)
{
    struct conn c;
    if (write(cmd, &what, 1) != 1 || accept_all(lfd, &c, 1) != 0)
        return -1;
    uint64_t t0 = util_mono_us();
    int rc = lookup_into(pc, &c, pr);
    *us += util_mono_us() - t0;
    *afd_out = c.fd;
    return rc;
}

static int run_churn(int held, int steps, int only_mode)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0), cmd[2];
    struct sockaddr_in in = { .sin_family = AF_INET };
    socklen_t len = sizeof in;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int *afds = calloc((size_t)held + (size_t)steps + 1, sizeof *afds);
    if (!afds || lfd < 0 || pipe(cmd) != 0 || bind(lfd, (struct sockaddr *)&in, sizeof in) != 0 ||
        listen(lfd, 1024) != 0 || getsockname(lfd, (struct sockaddr *)&in, &len) != 0)
        return 1;
    pid_t kid = fork();
    if (kid == 0) {
        close(cmd[1]);
        churn_child(ntohs(in.sin_port), held, cmd[0]);
    }
    close(cmd[0]);
    struct platform_proc_cache *pc = platform_proc_cache_new();
    struct platform_proc *prs = calloc((size_t)held, sizeof *prs), pr;
    uint64_t us = 0, first = 0;
    int rc = prs ? 0 : 1, na = 0, oldest = 0;
    for (int i = 0; i < held && rc == 0; i++)   /* the client's existing connections */
        rc = churn_step(lfd, cmd[1], 'o', pc, i == 0 ? &first : &us, &afds[na++], &prs[i]);
    printf("churn/grow: one client holding %d connections (first lookup, a walk: %.1f us)\n", held,
           (double)first);
    struct platform_proc_stats st0, st;
    /* churn: the agent sees the old connection end (and releases it) before
     * the new one arrives; churn-norel: it has not yet; grow: no churn. */
    const char *names[3] = { "churn", "churn-norel", "grow" };
    for (int m = 0; m < 3 && rc == 0; m++) {
        if (only_mode >= 0 && m != only_mode)
            continue;
        platform_proc_cache_stats(pc, &st0);
        us = 0;
        int n = m < 2 ? steps : (steps < 512 ? steps : 512);   /* grow: bounded fds */
        for (int i = 0; i < n && rc == 0; i++) {
            int afd;
#ifdef PLATFORM_EWALK   /* (the bench also builds against the old API, for before/after) */
            if (m == 0)
                platform_proc_release(pc, &prs[oldest]);
#endif
            rc = churn_step(lfd, cmd[1], m < 2 ? 'c' : 'o', pc, &us, &afd, m < 2 ? &prs[oldest] : &pr);
            if (m < 2) {
                oldest = (oldest + 1) % held;
                close(afd);   /* the server side of the connection the client replaced */
            } else {
                afds[na++] = afd;
            }
        }
        report(names[m], us, n);
        platform_proc_cache_stats(pc, &st);
#ifdef PLATFORM_EWALK
        uint64_t walks = st.walks - st0.walks;
#else
        uint64_t walks = st.full_scans - st0.full_scans;   /* (old API: hint scans were inline) */
#endif
        printf("         (walks %llu of which full %llu, cache hits %llu, recent-owner hits %llu, fds read %llu)\n",
               (unsigned long long)walks,
               (unsigned long long)(st.full_scans - st0.full_scans),
               (unsigned long long)(st.cache_hits - st0.cache_hits),
               (unsigned long long)(st.hint_hits - st0.hint_hits),
               (unsigned long long)(st.fds_read - st0.fds_read));
    }
    free(prs);
    platform_proc_cache_free(pc);
    close(cmd[1]);
    waitpid(kid, NULL, 0);
    for (int i = 0; i < na; i++)
        close(afds[i]);
    free(afds);
    close(lfd);
    return rc == 0 ? 0 : 1;
}

static int run(int procs, int per, int rounds)
{
    int total = procs * per, hold[2];
    struct conn *c = calloc((size_t)total, sizeof *c);
    pid_t *kids = calloc((size_t)procs, sizeof *kids);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = { .sin_family = AF_INET };
    socklen_t len = sizeof in;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!c || !kids || lfd < 0 || pipe(hold) != 0 || bind(lfd, (struct sockaddr *)&in, sizeof in) != 0 ||
        listen(lfd, 1024) != 0 || getsockname(lfd, (struct sockaddr *)&in, &len) != 0)
        return 1;
    for (int i = 0; i < procs; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(hold[1]);
            child(ntohs(in.sin_port), per, hold[0]);
        }
    }
    close(hold[0]);
    int rc = accept_all(lfd, c, total);
    printf("processes on this machine: %d (incl. %d bench children); connections: %d\n",
           count_procs(), procs, total);
    for (int r = 0; rc == 0 && r < rounds; r++) {
        uint64_t t0 = util_mono_us();
        int ncold = total < 50 ? total : 50;
        for (int i = 0; i < ncold && rc == 0; i++) {
            struct platform_proc_cache *pc = platform_proc_cache_new();
            rc = pc ? lookup(pc, &c[(i * 7) % total]) : 1;
            platform_proc_cache_free(pc);
        }
        report("cold", util_mono_us() - t0, ncold);
        struct platform_proc_cache *pc = platform_proc_cache_new();
        t0 = util_mono_us();
        for (int i = 0; i < total && rc == 0; i++)
            rc = lookup(pc, &c[i]);
        report("burst", util_mono_us() - t0, total);
        struct platform_proc_stats st;
        platform_proc_cache_stats(pc, &st);
        printf("         (full /proc walks %llu, cache hits %llu, recent-owner hits %llu, fds read %llu)\n",
               (unsigned long long)st.full_scans, (unsigned long long)st.cache_hits,
               (unsigned long long)st.hint_hits, (unsigned long long)st.fds_read);
        t0 = util_mono_us();
        for (int i = 0; i < total && rc == 0; i++)
            rc = lookup(pc, &c[i]);
        report("cached", util_mono_us() - t0, total);
        platform_proc_cache_free(pc);
    }
    close(hold[1]);
    for (int i = 0; i < procs; i++)
        waitpid(kids[i], NULL, 0);
    for (int i = 0; i < total; i++)
        close(c[i].fd);
    close(lfd);
    free(c);
    free(kids);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    int procs = 20, per = 10, rounds = 2, held = 64, steps = 2000;
    bool only_churn = false;
    int only_mode = -1;   /* --mode churn|churn-norel|grow (with --only churn: strace -c per scenario) */
    for (int i = 1; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--only"))
            only_churn = !strcmp(argv[i + 1], "churn");
        else if (!strcmp(argv[i], "--mode"))
            only_mode = !strcmp(argv[i + 1], "churn") ? 0 : !strcmp(argv[i + 1], "churn-norel") ? 1 : 2;
        if (!strcmp(argv[i], "--procs"))
            procs = v;
        else if (!strcmp(argv[i], "--conns-per"))
            per = v;
        else if (!strcmp(argv[i], "--rounds"))
            rounds = v;
        else if (!strcmp(argv[i], "--held"))
            held = v;
        else if (!strcmp(argv[i], "--churn"))
            steps = v;
    }
    if (procs < 1 || per < 1 || rounds < 1 || rounds > 100 || procs * per > MAX_CONNS || procs > 512 ||
        held < 1 || held > 2048 || steps < 1 || steps > 100000) {
        fprintf(stderr, "usage: bench_proclookup [--procs 1..512] [--conns-per N] [--rounds 1..100] "
                        "[--held 1..2048] [--churn 1..100000] [--only churn] (procs*conns-per <= %d)\n",
                MAX_CONNS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = only_churn ? 0 : run(procs, per, rounds);
    return rc ? rc : run_churn(held, steps, only_mode);
}
