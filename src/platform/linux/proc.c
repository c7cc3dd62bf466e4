/* platform/linux/proc.c: socket -> process lookup (see platform.h).
 *
 * Linux has no "who owns this socket" call, so it takes two steps:
 *  1. netlink sock_diag, an exact lookup by 4-tuple (no dump): the client
 *     socket's inode and uid in one round trip;
 *  2. inode -> pid: the only map is the fd tables in /proc/PID/fd.
 * The quick part (platform_proc_lookup_quick) costs a handful of syscalls
 * and never walks /proc:
 *  - processes that owned connections lately ("owners") are kept open:
 *    /proc/PID, /proc/PID/fd and /proc/PID/comm, opened once. These
 *    descriptors pin that very process: once it exits, they fail (ENOENT /
 *    ESRCH) even if its pid number is reused by another program, so a
 *    cached owner can never lend its name to a newcomer. Its name is read
 *    through them on every lookup (pread of comm, readlink of exe: two
 *    syscalls), so exec and prctl(PR_SET_NAME) are seen at once too;
 *  - a socket seen before (inode -> pid, fd) is verified with one readlink
 *    of the owner's fd directory;
 *  - a new socket of an owner is usually at a predictable fd: where one of
 *    its connections just ended (the kernel hands out the lowest free fd;
 *    the proxy reports ended connections with platform_proc_release), or
 *    just above its highest socket. A few readlinks, bounded per lookup.
 * Anything else needs a walk (proc_walk.c), which the proxy runs off its
 * event loop; platform_proc_lookup_tcp does all of it inline. */
#include "platform/linux/proc_int.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define CACHE_SLOTS 8192          /* power of two; ~96 KiB per cache */
#define CACHE_MAX_USED (CACHE_SLOTS * 3 / 4)
#define OWNERS 16                 /* processes kept open (3 fds each) */
#define OWNER_PROBES 4            /* owners probed per lookup, most recent first */
#define PROBE_BUDGET 8            /* readlinks per quick lookup beyond the cache */
#define FREED 8                   /* fds of ended connections remembered per owner */
#define INLINE_SCAN_FDS 64        /* an owner this small is scanned inline, not walked */

struct slot {
    uint32_t inode;               /* 0 = empty */
    int32_t pid;
    int32_t fd;
};

struct owner {
    int pid;                      /* 0: free */
    int pd, fdd, commfd;          /* /proc/PID, /proc/PID/fd, /proc/PID/comm */
    uint64_t used;                /* LRU clock */
    int maxfd;                    /* highest fd seen holding one of its sockets */
    int nfds;                     /* open fds at its last listing (0: not listed yet) */
    int freed[FREED];             /* ring: fds of its connections that ended (-1: used up) */
    unsigned nfreed, freed_next;
};

struct platform_proc_cache {
    int nl;                       /* NETLINK_SOCK_DIAG socket, lazily opened */
    uint32_t seq;
    struct slot *slots;
    size_t used;
    struct owner owners[OWNERS];
    uint64_t clock;
    struct platform_proc_walk *walk;   /* scratch of the synchronous lookup */
    struct platform_proc_stats st;
};

struct endpoint {
    int family;
    uint8_t addr[16];
    uint16_t port;                /* host order */
    uint32_t scope;
};

static void owner_drop(struct owner *o)
{
    if (o->pid == 0)
        return;
    close(o->pd);
    close(o->fdd);
    close(o->commfd);
    memset(o, 0, sizeof *o);
}

struct platform_proc_cache *platform_proc_cache_new(void)
{
    struct platform_proc_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    /* Its own zero-filled mapping: pages become resident as slots are
     * used, so an idle agent holds none of them (calloc from the heap
     * clears, and so touches, whatever part of the heap it reuses). */
    void *slots = mmap(NULL, CACHE_SLOTS * sizeof *c->slots, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) {
        free(c);
        return NULL;
    }
    c->slots = slots;
    c->nl = -1;
    return c;
}

void platform_proc_cache_free(struct platform_proc_cache *c)
{
    if (!c)
        return;
    if (c->nl >= 0)
        close(c->nl);
    for (size_t i = 0; i < OWNERS; i++)
        owner_drop(&c->owners[i]);
    platform_proc_walk_free(c->walk);
    munmap(c->slots, CACHE_SLOTS * sizeof *c->slots);
    free(c);
}

void platform_proc_cache_stats(const struct platform_proc_cache *c,
                               struct platform_proc_stats *out)
{
    *out = c->st;
}

/* ---- inode cache ------------------------------------------------------ */

static size_t slot_hash(uint32_t inode)
{
    return (size_t)((inode * 2654435761u) & (CACHE_SLOTS - 1));
}

static struct slot *cache_find(struct platform_proc_cache *c, uint32_t inode)
{
    for (size_t i = slot_hash(inode), n = 0; n < CACHE_SLOTS; n++, i = (i + 1) & (CACHE_SLOTS - 1)) {
        if (c->slots[i].inode == inode)
            return &c->slots[i];
        if (c->slots[i].inode == 0)
            return NULL;
    }
    return NULL;
}

static void cache_put(struct platform_proc_cache *c, uint32_t inode, int pid, int fd)
{
    struct slot *s = cache_find(c, inode);
    if (s) {
        s->pid = pid;
        s->fd = fd;
        return;
    }
    if (c->used >= CACHE_MAX_USED) {
        /* Bounded: forget everything rather than grow. Live entries come back
         * with the next scan; stale ones (closed sockets) go for good. */
        memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
        c->used = 0;
    }
    size_t i = slot_hash(inode);
    while (c->slots[i].inode != 0)
        i = (i + 1) & (CACHE_SLOTS - 1);
    c->slots[i] = (struct slot){ inode, pid, fd };
    c->used++;
}

/* ---- owners: recent client processes, kept open ----------------------- */

static struct owner *owner_find(struct platform_proc_cache *c, int pid)
{
    for (size_t i = 0; i < OWNERS; i++)
        if (c->owners[i].pid == pid)
            return &c->owners[i];
    return NULL;
}

/* Opens /proc/PID (whoever has that pid NOW: callers verify a socket link
 * through it before trusting it), evicting the least recently used owner. */
static struct owner *owner_open(struct platform_proc_cache *c, int pid)
{
    struct owner *o = &c->owners[0];
    for (size_t i = 0; i < OWNERS; i++) {
        struct owner *x = &c->owners[i];
        if (x->pid == 0) {
            o = x;
            break;
        }
        if (x->used < o->used)
            o = x;
    }
    owner_drop(o);
    char path[32];
    snprintf(path, sizeof path, "/proc/%d", pid);
    int pd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pd < 0)
        return NULL;
    int fdd = openat(pd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int commfd = fdd >= 0 ? openat(pd, "comm", O_RDONLY | O_CLOEXEC) : -1;
    if (commfd < 0) {
        if (fdd >= 0)
            close(fdd);
        close(pd);
        return NULL;
    }
    *o = (struct owner){ .pid = pid, .pd = pd, .fdd = fdd, .commfd = commfd, .maxfd = -1 };
    return o;
}

/* The inode of the socket at fd of o; 0 when fd is not an open socket (or
 * the process is gone). */
static uint32_t owner_link(struct platform_proc_cache *c, const struct owner *o, int fd)
{
    char name[16], link[64];
    snprintf(name, sizeof name, "%d", fd);
    ssize_t n = readlinkat(o->fdd, name, link, sizeof link);
    c->st.fds_read++;
    if (n <= 0 || n >= (ssize_t)sizeof link)
        return 0;
    return proc_parse_socket_link(link, n);
}

static void owner_touch(struct platform_proc_cache *c, struct owner *o, int fd)
{
    o->used = ++c->clock;
    if (fd > o->maxfd)
        o->maxfd = fd;
}

/* The owner of a socket we have seen at (pid, fd): verified through the
 * pinned directory. A pinned process that exited (its pid maybe reused) is
 * dropped and the pid opened afresh, then verified again. */
static struct owner *verify_seen(struct platform_proc_cache *c, const struct slot *s)
{
    struct owner *o = owner_find(c, s->pid);
    if (o && owner_link(c, o, s->fd) == s->inode)
        return o;
    if (o)
        owner_drop(o);
    o = owner_open(c, s->pid);
    if (o && owner_link(c, o, s->fd) == s->inode)
        return o;
    return NULL;
}

/* The recent owners, most recently used first; returns how many. */
static size_t owners_by_recency(struct platform_proc_cache *c, struct owner **out, size_t max)
{
    struct owner *all[OWNERS];
    size_t n = 0;
    for (size_t i = 0; i < OWNERS; i++) {
        struct owner *o = &c->owners[i];
        if (o->pid == 0)
            continue;
        size_t k = n++;
        while (k > 0 && all[k - 1]->used < o->used) {
            all[k] = all[k - 1];
            k--;
        }
        all[k] = o;
    }
    if (n > max)
        n = max;
    memcpy(out, all, n * sizeof *out);
    return n;
}

/* One guess: is inode at fd of o? 1 yes, 0 no socket there (a free fd),
 * -1 another socket (cached on the way). */
static int probe(struct platform_proc_cache *c, struct owner *o, int fd, uint32_t inode, unsigned *budget)
{
    if (fd < 0 || *budget == 0)
        return 0;
    (*budget)--;
    uint32_t ino = owner_link(c, o, fd);
    if (ino == 0)
        return 0;
    if (fd > o->maxfd)
        o->maxfd = fd;
    if (ino != inode) {
        cache_put(c, ino, o->pid, fd);
        return -1;
    }
    return 1;
}

/* The smallest fd in the freed ring not yet tried, or NULL. */
static int *next_freed(struct owner *o, int above)
{
    int *best = NULL;
    for (unsigned i = 0; i < o->nfreed; i++)
        if (o->freed[i] > above && (!best || o->freed[i] < *best))
            best = &o->freed[i];
    return best;
}

/* A new socket of a recent owner: where its connections ended, lowest fd
 * first (the kernel hands out the lowest free fd), then just above its
 * highest socket. A freed fd found holding another socket is forgotten. */
static int probe_owner(struct platform_proc_cache *c, struct owner *o, uint32_t inode, unsigned *budget)
{
    int above = -1, *slot;
    while (*budget && (slot = next_freed(o, above)) != NULL) {
        int fd = *slot;
        above = fd;
        int r = probe(c, o, fd, inode, budget);
        if (r != 0)
            *slot = -1;   /* in use now: by our socket or another */
        if (r == 1)
            return fd;
    }
    for (int k = 1; k <= 3 && *budget; k++) {
        int base = o->maxfd;
        if (probe(c, o, base + k, inode, budget) == 1)
            return base + k;
        if (o->maxfd != base)   /* a socket there that is not ours: look above it */
            k = 0;
    }
    return -1;
}

static int cmp_fd_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* A small owner (up to INLINE_SCAN_FDS fds) read whole through its pinned
 * fd directory, newest fd first: cheaper than a hand-off to the thread
 * pool. Larger ones are left to the walk. */
static int scan_small_owner(struct platform_proc_cache *c, struct owner *o, uint32_t inode)
{
    if (o->nfds > INLINE_SCAN_FDS || lseek(o->fdd, 0, SEEK_SET) != 0)
        return -1;
    int fds[INLINE_SCAN_FDS];
    size_t n = 0;
    char buf[4096];
    for (int calls = 0; calls < 8; calls++) {
        long got = syscall(SYS_getdents64, o->fdd, buf, sizeof buf);
        if (got <= 0)
            break;
        for (long off = 0; off < got;) {
            const char *rec = buf + off;
            unsigned short reclen;
            memcpy(&reclen, rec + 16, sizeof reclen);   /* d_ino 8, d_off 8, d_reclen 2, d_type 1, d_name */
            const char *name = rec + 19;
            if (reclen == 0)
                return -1;
            off += reclen;
            if (name[0] < '0' || name[0] > '9')
                continue;
            if (n == INLINE_SCAN_FDS) {
                o->nfds = INLINE_SCAN_FDS + 1;   /* too big: walk it */
                return -1;
            }
            fds[n++] = atoi(name);
        }
    }
    o->nfds = (int)n;
    if (n > 1)
        qsort(fds, n, sizeof *fds, cmp_fd_desc);
    for (size_t i = 0; i < n; i++) {
        uint32_t ino = owner_link(c, o, fds[i]);
        if (ino == inode)
            return fds[i];
        if (ino)
            cache_put(c, ino, o->pid, fds[i]);
    }
    return -1;
}

/* inode -> (owner, fd) without walking /proc; PLATFORM_EWALK otherwise. */
static int find_quick(struct platform_proc_cache *c, uint32_t inode, struct owner **o_out, int *fd_out,
                      bool count)
{
    struct slot *s = cache_find(c, inode);
    if (s) {
        struct owner *o = verify_seen(c, s);
        if (o) {
            c->st.cache_hits += count;
            *o_out = o;
            *fd_out = s->fd;
            return 0;
        }
    }
    struct owner *recent[OWNER_PROBES];
    size_t n = owners_by_recency(c, recent, OWNER_PROBES);
    unsigned budget = PROBE_BUDGET;
    for (size_t i = 0; i < n && budget; i++) {
        int fd = probe_owner(c, recent[i], inode, &budget);
        if (fd >= 0) {
            c->st.hint_hits += count;
            cache_put(c, inode, recent[i]->pid, fd);
            *o_out = recent[i];
            *fd_out = fd;
            return 0;
        }
    }
    if (n > 0) {   /* the most recent owner, when it is small */
        int fd = scan_small_owner(c, recent[0], inode);
        if (fd >= 0) {
            c->st.hint_hits += count;
            cache_put(c, inode, recent[0]->pid, fd);
            *o_out = recent[0];
            *fd_out = fd;
            return 0;
        }
    }
    return PLATFORM_EWALK;
}

void platform_proc_release(struct platform_proc_cache *c, const struct platform_proc *p)
{
    if (!c || !p || p->pid <= 0 || p->fd < 0)
        return;
    struct owner *o = owner_find(c, p->pid);
    if (!o)
        return;
    for (unsigned i = 0; i < o->nfreed; i++)
        if (o->freed[i] == p->fd)
            return;
    for (unsigned i = 0; i < o->nfreed; i++) {
        if (o->freed[i] < 0) {   /* a slot already used up */
            o->freed[i] = p->fd;
            return;
        }
    }
    o->freed[o->freed_next] = p->fd;
    o->freed_next = (o->freed_next + 1) % FREED;
    if (o->nfreed < FREED)
        o->nfreed++;
}

/* ---- sock_diag -------------------------------------------------------- */

static int to_endpoint(const struct sockaddr *sa, struct endpoint *ep, char *err, size_t errlen)
{
    static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    memset(ep, 0, sizeof *ep);
    if (!sa)
        return util_err(err, errlen, -EINVAL, "no address given");
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        ep->family = AF_INET;
        memcpy(ep->addr, &in->sin_addr, 4);
        ep->port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        ep->port = ntohs(in6->sin6_port);
        if (memcmp(in6->sin6_addr.s6_addr, v4mapped, 12) == 0) {
            /* The kernel hashes v4-mapped connections of dual-stack sockets
             * with the IPv4 ones: an AF_INET lookup finds both. */
            ep->family = AF_INET;
            memcpy(ep->addr, in6->sin6_addr.s6_addr + 12, 4);
            return 0;
        }
        ep->family = AF_INET6;
        memcpy(ep->addr, in6->sin6_addr.s6_addr, 16);
        ep->scope = in6->sin6_scope_id;
        return 0;
    }
    return util_err(err, errlen, -EAFNOSUPPORT, "address family %d is not IPv4 or IPv6", sa->sa_family);
}

static int nl_open(struct platform_proc_cache *c, char *err, size_t errlen)
{
    if (c->nl >= 0)
        return 0;
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return util_err(err, errlen, -errno, "netlink sock_diag socket: %s", strerror(errno));
    struct timeval tv = { .tv_sec = 1, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    c->nl = fd;
    return 0;
}

static int diag_send(struct platform_proc_cache *c, const struct endpoint *cl,
                     const struct endpoint *sv, char *err, size_t errlen)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.nlh.nlmsg_len = sizeof req;
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST;
    req.nlh.nlmsg_seq = ++c->seq;
    req.r.sdiag_family = (uint8_t)cl->family;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = ~0u;
    req.r.id.idiag_sport = htons(cl->port);
    req.r.id.idiag_dport = htons(sv->port);
    memcpy(req.r.id.idiag_src, cl->addr, cl->family == AF_INET ? 4 : 16);
    memcpy(req.r.id.idiag_dst, sv->addr, sv->family == AF_INET ? 4 : 16);
    req.r.id.idiag_if = cl->scope;
    req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    struct sockaddr_nl nladdr = { .nl_family = AF_NETLINK };
    if (sendto(c->nl, &req, sizeof req, 0, (struct sockaddr *)&nladdr, sizeof nladdr) < 0)
        return util_err(err, errlen, -errno, "sock_diag request: %s", strerror(errno));
    return 0;
}

/* Receives the answer to the last request: inode and uid of the socket. */
static int diag_recv(struct platform_proc_cache *c, uint32_t *inode, uint32_t *uid,
                     char *err, size_t errlen)
{
    long buf[2048];
    for (int tries = 0; tries < 8; tries++) {
        ssize_t n = recv(c->nl, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return util_err(err, errlen, -errno, "sock_diag reply: %s", strerror(errno));
        }
        size_t left = (size_t)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != c->seq)
                continue; /* a late answer to an earlier, timed-out request */
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof *e))
                    return util_err(err, errlen, -EPROTO, "sock_diag: short error message");
                if (e->error == -ENOENT)
                    return util_err(err, errlen, PLATFORM_ENOTLOCAL,
                                    "no local socket has this address pair (remote client, or already closed)");
                return util_err(err, errlen, e->error ? e->error : -EPROTO,
                                "sock_diag: %s", strerror(-e->error));
            }
            if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY &&
                h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
                const struct inet_diag_msg *m = NLMSG_DATA(h);
                *inode = m->idiag_inode;
                *uid = m->idiag_uid;
                return 0;
            }
        }
    }
    return util_err(err, errlen, -EPROTO, "sock_diag: no answer to our request");
}

static int diag_lookup(struct platform_proc_cache *c, const struct endpoint *cl,
                       const struct endpoint *sv, uint32_t *inode, uint32_t *uid,
                       char *err, size_t errlen)
{
    int rc = nl_open(c, err, errlen);
    if (rc < 0)
        return rc;
    rc = diag_send(c, cl, sv, err, errlen);
    if (rc < 0)
        return rc;
    return diag_recv(c, inode, uid, err, errlen);
}

/* ---- describing a process -------------------------------------------- */

static void proc_reset(struct platform_proc *out)
{
    memset(out, 0, sizeof *out);
    out->pid = -1;
    out->uid = -1;
    out->fd = -1;
}

static int read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    buf[n] = '\0';
    return (int)n;
}

static int proc_uid(int pid)
{
    char path[48], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    if (read_small(path, buf, sizeof buf) < 0)
        return -1;
    const char *u = strstr(buf, "\nUid:");
    return u ? atoi(u + 5) : -1;
}

static void set_exe_base(struct platform_proc *out)
{
    if (!out->exe[0]) {
        util_strlcpy(out->exe_base, out->comm, sizeof out->exe_base);
        return;
    }
    const char *slash = strrchr(out->exe, '/');
    util_strlcpy(out->exe_base, slash ? slash + 1 : out->exe, sizeof out->exe_base);
    /* A replaced or deleted binary reads "name (deleted)": the name is what
     * matters for disabled-application rules. */
    size_t n = strlen(out->exe_base);
    static const char del[] = " (deleted)";
    if (n > sizeof del - 1 && strcmp(out->exe_base + n - (sizeof del - 1), del) == 0)
        out->exe_base[n - (sizeof del - 1)] = '\0';
}

/* comm, exe, exe_base of pid; the uid only when asked (one more file). */
static int describe(int pid, bool want_uid, struct platform_proc *out, char *err, size_t errlen)
{
    char path[48];
    proc_reset(out);
    out->pid = pid;
    if (pid <= 0)
        return util_err(err, errlen, -EINVAL, "invalid pid %d", pid);
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    int n = read_small(path, out->comm, sizeof out->comm);
    if (n < 0)
        return util_err(err, errlen, PLATFORM_EGONE, "process %d is gone (%s)", pid, strerror(-n));
    out->comm[strcspn(out->comm, "\n")] = '\0';
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t m = readlink(path, out->exe, sizeof out->exe - 1);
    out->exe[m > 0 ? m : 0] = '\0';   /* kernel threads / other users: "" */
    set_exe_base(out);
    if (want_uid)
        out->uid = proc_uid(pid);
    return 0;
}

int platform_proc_describe(int pid, struct platform_proc *out, char *err, size_t errlen)
{
    return describe(pid, true, out, err, errlen);
}

/* comm, exe, exe_base of a pinned owner: two syscalls, always current. */
static int describe_owner(struct platform_proc_cache *c, struct owner *o, struct platform_proc *out,
                          char *err, size_t errlen)
{
    ssize_t n = pread(o->commfd, out->comm, sizeof out->comm - 1, 0);
    if (n <= 0) {
        int pid = o->pid;
        owner_drop(o);
        return util_err(err, errlen, PLATFORM_EGONE, "process %d is gone", pid);
    }
    out->comm[n] = '\0';
    out->comm[strcspn(out->comm, "\n")] = '\0';
    ssize_t m = readlinkat(o->pd, "exe", out->exe, sizeof out->exe - 1);
    out->exe[m > 0 ? m : 0] = '\0';   /* kernel threads / other users: "" */
    set_exe_base(out);
    out->pid = o->pid;
    return 0;
}

/* ---- the lookup ------------------------------------------------------- */

/* p->inode and p->uid known: the owner from the cache and recent owners.
 * `count`: a lookup of its own (not the end of one that walked). */
static int resolve(struct platform_proc_cache *c, struct platform_proc *p, bool count, char *err,
                   size_t errlen)
{
    struct owner *o = NULL;
    int fd = -1;
    if (find_quick(c, p->inode, &o, &fd, count) < 0)
        return util_err(err, errlen, PLATFORM_EWALK,
                        "socket inode %u: not held by a recent owner; a /proc walk is needed", p->inode);
    int rc = describe_owner(c, o, p, err, errlen);
    if (rc < 0) {
        p->pid = -1;
        return rc;
    }
    owner_touch(c, o, fd);
    p->fd = fd;
    return 0;
}

int platform_proc_lookup_quick(struct platform_proc_cache *c,
                               const struct sockaddr *client,
                               const struct sockaddr *server,
                               struct platform_proc *out,
                               char *err, size_t errlen)
{
    struct endpoint cl, sv;
    proc_reset(out);
    if (!c)
        return util_err(err, errlen, -EINVAL, "no process cache");
    c->st.lookups++;
    int rc = to_endpoint(client, &cl, err, errlen);
    if (rc == 0)
        rc = to_endpoint(server, &sv, err, errlen);
    if (rc < 0)
        return rc;
    if (cl.family != sv.family)
        return util_err(err, errlen, PLATFORM_ENOTLOCAL,
                        "client and server addresses are of different families");
    uint32_t inode = 0, uid = 0;
    rc = diag_lookup(c, &cl, &sv, &inode, &uid, err, errlen);
    if (rc < 0)
        return rc;
    out->uid = (int)uid;
    if (inode == 0)
        return util_err(err, errlen, PLATFORM_EGONE,
                        "the client socket is no longer held by a process (closed or TIME_WAIT)");
    out->inode = inode;
    return resolve(c, out, true, err, errlen);
}

int platform_proc_resolve(struct platform_proc_cache *c, struct platform_proc *p, char *err, size_t errlen)
{
    if (!c || !p || p->inode == 0)
        return util_err(err, errlen, -EINVAL, "no process cache or no socket inode");
    return resolve(c, p, false, err, errlen);
}

void platform_proc_walk_begin(struct platform_proc_cache *c, struct platform_proc_walk *wk)
{
    wk->ntargets = wk->nfound = wk->nseen = wk->nhints = 0;
    memset(wk->found, 0, sizeof wk->found);
    wk->rc = 0;
    wk->denied = 0;
    wk->walked = false;
    wk->fds_read = 0;
    wk->err[0] = '\0';
    struct owner *recent[OWNERS];
    size_t n = owners_by_recency(c, recent, OWNERS < PROC_WALK_HINTS ? OWNERS : PROC_WALK_HINTS);
    for (size_t i = 0; i < n; i++)
        wk->hints[wk->nhints++] = recent[i]->pid;
}

void platform_proc_walk_merge(struct platform_proc_cache *c, struct platform_proc_walk *wk)
{
    for (size_t i = 0; i < wk->nseen; i++)
        cache_put(c, wk->seen[i].inode, wk->seen[i].pid, wk->seen[i].fd);
    for (size_t i = 0; i < wk->ntargets; i++)
        if (wk->found[i].pid > 0)
            cache_put(c, wk->found[i].inode, wk->found[i].pid, wk->found[i].fd);
    for (size_t i = 0; i < wk->nseen; i++) {   /* an owner's highest socket so far */
        struct owner *o = owner_find(c, wk->seen[i].pid);
        if (o && wk->seen[i].fd > o->maxfd)
            o->maxfd = wk->seen[i].fd;
    }
    c->st.walks++;
    if (wk->walked)
        c->st.full_scans++;
    else if (wk->nfound)
        c->st.hint_hits++;
    c->st.fds_read += wk->fds_read;
}

int platform_proc_lookup_tcp(struct platform_proc_cache *c,
                             const struct sockaddr *client,
                             const struct sockaddr *server,
                             struct platform_proc *out,
                             char *err, size_t errlen)
{
    int rc = platform_proc_lookup_quick(c, client, server, out, err, errlen);
    if (rc != PLATFORM_EWALK)
        return rc;
    if (!c->walk && !(c->walk = platform_proc_walk_new()))
        return util_err(err, errlen, -ENOMEM, "out of memory for a /proc walk");
    platform_proc_walk_begin(c, c->walk);
    platform_proc_walk_add(c->walk, out->inode);
    platform_proc_walk_run(c->walk);
    platform_proc_walk_merge(c, c->walk);
    rc = platform_proc_walk_result(c->walk, out->inode, err, errlen);
    if (rc == 0)
        rc = resolve(c, out, false, err, errlen);
    if (rc == PLATFORM_EWALK)   /* found, then gone before we could name it */
        rc = util_err(err, errlen, PLATFORM_EGONE, "socket inode %u changed hands during the lookup",
                      out->inode);
    if (rc < 0)
        out->pid = -1;
    return rc;
}
