/* platform/linux/proc.c: socket -> process lookup (see platform.h).
 *
 * Two steps, because Linux has no direct "who owns this socket" call:
 *  1. netlink sock_diag, an exact lookup by 4-tuple (no dump): gives the
 *     client socket's inode and uid in one round trip;
 *  2. inode -> pid: the only map is the fd tables in /proc/PID/fd. A full
 *     walk of every process is expensive, so we cache inode -> (pid, fd)
 *     (verified on use with a single readlink), scan the processes that
 *     recently owned connections first (a browser opens many), and only then
 *     walk /proc, newest pids first (a just-started client such as curl is
 *     usually the newest process). Every socket seen on the way is cached, so
 *     a burst of connections from one program costs one scan. */
#include "platform/platform.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define CACHE_SLOTS 8192          /* power of two; ~96 KiB per cache */
#define CACHE_MAX_USED (CACHE_SLOTS * 3 / 4)
#define HINTS 32                  /* recent owner pids scanned first */
#define MAX_PIDS (1u << 20)       /* bound on one /proc walk */
#define MAX_FDS_PER_PID 65536     /* bound on one fd directory */

struct slot {
    uint32_t inode;               /* 0 = empty */
    int32_t pid;
    int32_t fd;
};

struct platform_proc_cache {
    int nl;                       /* NETLINK_SOCK_DIAG socket, lazily opened */
    uint32_t seq;
    struct slot *slots;
    size_t used;
    int hints[HINTS];
    size_t nhints, hint_next;
    int *pids;                    /* scratch for the /proc walk */
    size_t pids_cap;
    int *fds;                     /* scratch for one fd directory */
    size_t fds_cap;
    unsigned denied;              /* fd dirs we could not read in this lookup */
    struct platform_proc_stats st;
};

struct endpoint {
    int family;
    uint8_t addr[16];
    uint16_t port;                /* host order */
    uint32_t scope;
};

struct platform_proc_cache *platform_proc_cache_new(void)
{
    struct platform_proc_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->slots = calloc(CACHE_SLOTS, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->nl = -1;
    return c;
}

void platform_proc_cache_free(struct platform_proc_cache *c)
{
    if (!c)
        return;
    if (c->nl >= 0)
        close(c->nl);
    free(c->slots);
    free(c->pids);
    free(c->fds);
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

static void hint_add(struct platform_proc_cache *c, int pid)
{
    for (size_t i = 0; i < c->nhints; i++)
        if (c->hints[i] == pid)
            return;
    c->hints[c->hint_next] = pid;
    c->hint_next = (c->hint_next + 1) % HINTS;
    if (c->nhints < HINTS)
        c->nhints++;
}

static bool is_hint(const struct platform_proc_cache *c, int pid)
{
    for (size_t i = 0; i < c->nhints; i++)
        if (c->hints[i] == pid)
            return true;
    return false;
}

/* "socket:[12345]" -> 12345; 0 when the link is not a socket. */
static uint32_t parse_socket_link(const char *s, ssize_t n)
{
    if (n < 10 || memcmp(s, "socket:[", 8) != 0 || s[n - 1] != ']')
        return 0;
    uint64_t v = 0;
    for (ssize_t i = 8; i < n - 1; i++) {
        if (!isdigit((unsigned char)s[i]) || v > UINT32_MAX)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v > UINT32_MAX ? 0 : (uint32_t)v;
}

static bool cache_entry_valid(const struct slot *s)
{
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", s->pid, s->fd);
    ssize_t n = readlink(path, link, sizeof link);
    return n > 0 && n < (ssize_t)sizeof link && parse_socket_link(link, n) == s->inode;
}

/* ---- /proc walk ------------------------------------------------------- */

static int cmp_int_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* Reads the fds of pid, newest (highest numbered) first, caching the
 * sockets seen, until `want` is found. A process that opens many
 * connections gets each new socket at its highest fd, so the one we look
 * for is usually among the first links read instead of the last. 1: want
 * found (*fd_out set), 0: not there, <0: directory unreadable. */
static int scan_pid(struct platform_proc_cache *c, int pid, uint32_t want, int *fd_out)
{
    char path[48];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) {
        if (errno == EACCES || errno == EPERM)
            c->denied++;
        return -errno;
    }
    int dfd = dirfd(d), found = 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_FDS_PER_PID) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (n == c->fds_cap) {
            size_t cap = c->fds_cap ? c->fds_cap * 2 : 256;
            int *p = realloc(c->fds, cap * sizeof *p);
            if (!p)
                break;
            c->fds = p;
            c->fds_cap = cap;
        }
        c->fds[n++] = atoi(e->d_name);
    }
    if (n > 1)   /* (qsort with a NULL array is undefined even for n == 0) */
        qsort(c->fds, n, sizeof *c->fds, cmp_int_desc);
    for (size_t i = 0; i < n && !found; i++) {
        char name[16], link[64];
        snprintf(name, sizeof name, "%d", c->fds[i]);
        ssize_t len = readlinkat(dfd, name, link, sizeof link);
        c->st.fds_read++;
        if (len <= 0 || len >= (ssize_t)sizeof link)
            continue;
        uint32_t ino = parse_socket_link(link, len);
        if (!ino)
            continue;
        cache_put(c, ino, pid, c->fds[i]);
        if (ino == want) {
            *fd_out = c->fds[i];
            found = 1;
        }
    }
    closedir(d);
    return found;
}

static int cmp_pid_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* Lists /proc's numeric entries into c->pids, newest (highest) first. */
static int list_pids(struct platform_proc_cache *c, size_t *n_out, char *err, size_t errlen)
{
    DIR *d = opendir("/proc");
    if (!d)
        return util_err(err, errlen, -errno, "cannot read /proc: %s", strerror(errno));
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_PIDS) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (n == c->pids_cap) {
            size_t cap = c->pids_cap ? c->pids_cap * 2 : 1024;
            int *p = realloc(c->pids, cap * sizeof *p);
            if (!p) {
                closedir(d);
                return util_err(err, errlen, -ENOMEM, "out of memory listing /proc");
            }
            c->pids = p;
            c->pids_cap = cap;
        }
        c->pids[n++] = atoi(e->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(c->pids, n, sizeof *c->pids, cmp_pid_desc);
    *n_out = n;
    return 0;
}

/* inode -> pid. 0 found, PLATFORM_EGONE / PLATFORM_EPERM not found. */
static int inode_to_pid(struct platform_proc_cache *c, uint32_t inode, int *pid,
                        char *err, size_t errlen)
{
    struct slot *s = cache_find(c, inode);
    if (s && cache_entry_valid(s)) {
        c->st.cache_hits++;
        *pid = s->pid;
        return 0;
    }
    int fd;
    c->denied = 0;
    for (size_t i = 0; i < c->nhints; i++) {
        if (scan_pid(c, c->hints[i], inode, &fd) == 1) {
            c->st.hint_hits++;
            *pid = c->hints[i];
            return 0;
        }
    }
    c->st.full_scans++;
    size_t n = 0;
    int rc = list_pids(c, &n, err, errlen);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (is_hint(c, c->pids[i]))
            continue;
        if (scan_pid(c, c->pids[i], inode, &fd) == 1) {
            *pid = c->pids[i];
            return 0;
        }
    }
    if (c->denied)
        return util_err(err, errlen, PLATFORM_EPERM,
                        "socket inode %u: its process is not visible to us (%u fd directories unreadable); "
                        "run the agent as root or with CAP_SYS_PTRACE", inode, c->denied);
    return util_err(err, errlen, PLATFORM_EGONE,
                    "socket inode %u is held by no process (it exited or closed the socket)", inode);
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
    memset(out, 0, sizeof *out);
    out->pid = pid;
    out->uid = -1;
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

/* ---- the lookup ------------------------------------------------------- */

int platform_proc_lookup_tcp(struct platform_proc_cache *c,
                             const struct sockaddr *client,
                             const struct sockaddr *server,
                             struct platform_proc *out,
                             char *err, size_t errlen)
{
    struct endpoint cl, sv;
    memset(out, 0, sizeof *out);
    out->pid = -1;
    out->uid = -1;
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
    int pid = -1;
    rc = inode_to_pid(c, inode, &pid, err, errlen);
    if (rc < 0)
        return rc;
    rc = describe(pid, false, out, err, errlen);
    out->uid = (int)uid;   /* the socket's owner */
    if (rc < 0) {
        out->pid = -1;
        return rc;
    }
    hint_add(c, pid);
    return 0;
}
