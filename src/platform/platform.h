/* platform: what the agent needs from the operating system (Linux today).
 *  - socket -> process lookup: which local process owns the client end of a
 *    TCP connection the agent accepted (netlink sock_diag + a cached /proc
 *    scan), so "filtering-disabled applications" can be honoured;
 *  - transparent interception: shoji's own nftables table `inet shoji`
 *    (enable / disable / status), the agent's liveness heartbeat that the
 *    fail modes hang on, and the mark that keeps the agent's own upstream
 *    sockets out of the redirect.
 * Must never: touch any nftables table but `inet shoji`, change the
 * machine's routes, addresses or sysctls, build an nft command from text it
 * did not parse and validate itself, block longer than one bounded /proc scan
 * (the quick lookup never scans),
 * or abort on anything it reads from the kernel or /proc.
 * See docs/INTERCEPT.md. */
#ifndef SHOJI_PLATFORM_H
#define SHOJI_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- socket -> process ------------------------------------------------ */

struct platform_proc {
    int pid;              /* -1 when unknown (see PLATFORM_ENOPID) */
    int uid;              /* owner uid of the client socket; -1 unknown */
    char comm[64];        /* /proc/PID/comm (kernel truncates to 15 chars) */
    char exe[256];        /* readlink /proc/PID/exe; "" when unreadable */
    char exe_base[128];   /* basename of exe, or comm when exe is unreadable */
    uint32_t inode;       /* the client socket's inode (0 unknown) */
    int fd;               /* its fd number in pid (-1 unknown) */
};

/* Lookup results (negative, errno-style, so callers can log them plainly):
 *   0                     found: every field of *out is set
 *   PLATFORM_ENOTLOCAL    no local socket has this 4-tuple: a remote client
 *                         (or the connection is already gone)
 *   PLATFORM_EGONE        the socket exists but no process holds it any more
 *                         (closed / orphaned / TIME_WAIT), or the process
 *                         exited while we looked; out->uid may be set
 *   PLATFORM_EPERM        the socket is found (out->uid set) but its process
 *                         is not visible to us: run as root or grant
 *                         CAP_SYS_PTRACE to read other users' /proc/PID/fd
 *   other negative        netlink / system failure (message in err) */
#define PLATFORM_ENOTLOCAL (-2)   /* -ENOENT */
#define PLATFORM_EGONE (-3)       /* -ESRCH */
#define PLATFORM_EPERM (-13)      /* -EACCES */
#define PLATFORM_EWALK (-11)      /* -EAGAIN: only from the quick form below */

/* A cache of socket inode -> (pid, fd) plus the processes that recently
 * owned connections, kept open (up to 16, three descriptors each: they pin
 * the process, so a reused pid never inherits a cached name). NOT
 * thread-safe: create one per worker thread. Memory is bounded (a
 * fixed-size table; see docs/INTERCEPT.md). */
struct platform_proc_cache;
struct platform_proc_cache *platform_proc_cache_new(void);
void platform_proc_cache_free(struct platform_proc_cache *c);

/* Finds the process owning the CLIENT end of a local TCP connection (IPv4,
 * IPv6, v4-mapped IPv6 on either side).
 *   client: the address the client socket is bound to = the peer address the
 *           agent got from accept();
 *   server: the address the client socket is connected to = for the explicit
 *           proxy, the agent's own address (getsockname); for transparent
 *           (redirected) connections, the ORIGINAL destination from
 *           SO_ORIGINAL_DST, because that is what the client socket sees.
 * Costs one netlink round trip, one readlink to find the socket when it
 * belongs to a recent owner (a few when it is a new one) and two reads for
 * its name; otherwise a /proc walk (recent owners first, newest pids
 * first), which can take milliseconds: platform_proc_lookup_quick + the walk
 * below do the same without blocking. */
int platform_proc_lookup_tcp(struct platform_proc_cache *c,
                             const struct sockaddr *client,
                             const struct sockaddr *server,
                             struct platform_proc *out,
                             char *err, size_t errlen);

/* The same without a /proc walk (bounded: at most ~12 syscalls). Returns
 * what platform_proc_lookup_tcp returns, or PLATFORM_EWALK: the socket
 * exists (out->inode and out->uid set) but its owner is not a recent one;
 * run a walk for out->inode, merge it, then call platform_proc_resolve. */
int platform_proc_lookup_quick(struct platform_proc_cache *c,
                               const struct sockaddr *client,
                               const struct sockaddr *server,
                               struct platform_proc *out,
                               char *err, size_t errlen);
/* Again from p->inode (p->uid kept), after a walk was merged: 0, EGONE,
 * PLATFORM_EWALK (still unknown). No netlink. */
int platform_proc_resolve(struct platform_proc_cache *c, struct platform_proc *p,
                          char *err, size_t errlen);

/* The walk: finds the processes holding up to PLATFORM_PROC_WALK_TARGETS
 * socket inodes at once. begin/merge run on the cache's thread; run touches
 * only the walk object and may run on any thread (a thread pool), while
 * the cache keeps serving quick lookups. */
#define PLATFORM_PROC_WALK_TARGETS 64
struct platform_proc_walk;
struct platform_proc_walk *platform_proc_walk_new(void);
void platform_proc_walk_free(struct platform_proc_walk *wk);
/* Empties wk and gives it the cache's recent owners to scan first. */
void platform_proc_walk_begin(struct platform_proc_cache *c, struct platform_proc_walk *wk);
/* Adds a socket to find; false when wk is full (walk it next time). */
bool platform_proc_walk_add(struct platform_proc_walk *wk, uint32_t inode);
size_t platform_proc_walk_targets(const struct platform_proc_walk *wk);
void platform_proc_walk_run(struct platform_proc_walk *wk);
/* Puts what the walk found and passed into the cache. */
void platform_proc_walk_merge(struct platform_proc_cache *c, struct platform_proc_walk *wk);
/* For one target of the finished walk: 0 found (then platform_proc_resolve
 * names it), PLATFORM_EGONE, PLATFORM_EPERM, or a /proc failure. */
int platform_proc_walk_result(const struct platform_proc_walk *wk, uint32_t inode,
                              char *err, size_t errlen);

/* The connection of p ended: its fd is where that process's next socket
 * is likely to be (the kernel hands out the lowest free fd). */
void platform_proc_release(struct platform_proc_cache *c, const struct platform_proc *p);

/* The same, by pid only (fills comm, exe, exe_base; uid from /proc). */
int platform_proc_describe(int pid, struct platform_proc *out, char *err, size_t errlen);

/* cache_hits: a socket seen before; hint_hits: a new socket of a recent
 * owner (guessed fd, or a walk over the recent owners only); full_scans:
 * walks of all of /proc; walks: every walk; fds_read: fd links read. */
struct platform_proc_stats {
    uint64_t lookups, cache_hits, hint_hits, full_scans, fds_read, walks;
};
void platform_proc_cache_stats(const struct platform_proc_cache *c,
                               struct platform_proc_stats *out);

/* ---- transparent interception (nftables) ------------------------------ */

/* The agent's upstream sockets carry this mark (SO_MARK); the `inet shoji`
 * rules never redirect or reject a packet that carries it. "SHJI" in ASCII. */
#define PLATFORM_UPSTREAM_MARK 0x53484a49u

/* Sets SO_MARK = PLATFORM_UPSTREAM_MARK on fd. Call it on EVERY socket the
 * agent opens towards the network (origin connections, DNS over TCP, the
 * management server), before connect(). Needs CAP_NET_ADMIN (root, or keep
 * that one capability when dropping privileges); without it returns -EPERM
 * and the socket would be redirected back into the agent. */
int platform_mark_upstream_socket(int fd, char *err, size_t errlen);

/* The original destination of a connection the redirect rule sent to the
 * agent's transparent listener (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST).
 * -ENOENT when fd was not redirected (a direct connection to the port). */
int platform_original_dst(int fd, struct sockaddr_storage *out, socklen_t *outlen,
                          char *err, size_t errlen);

#define PLATFORM_TABLE_NAME "shoji"   /* family inet */
#define PLATFORM_MAX_PORTS 16
#define PLATFORM_MAX_EXCLUDES 64
#define PLATFORM_MAX_EXCLUDE_UIDS 16

enum platform_fail_mode { PLATFORM_FAIL_OPEN = 0, PLATFORM_FAIL_CLOSED = 1 };

struct platform_cidr {
    int family;              /* AF_INET or AF_INET6 */
    uint8_t addr[16];        /* network address, host bits cleared */
    int prefix;              /* 0..32 or 0..128 */
};

struct platform_intercept_config {
    uint16_t port;                              /* agent's transparent port */
    uint16_t ports[PLATFORM_MAX_PORTS];         /* redirected TCP ports */
    size_t nports;
    bool block_quic;                            /* reject UDP 443 */
    enum platform_fail_mode fail_mode;
    struct platform_cidr excludes[PLATFORM_MAX_EXCLUDES];
    size_t nexcludes;
    uint32_t exclude_uids[PLATFORM_MAX_EXCLUDE_UIDS]; /* meta skuid bypass */
    size_t nexclude_uids;
};

/* Defaults: ports 80,443, block_quic yes, fail_mode open, no excludes. */
void platform_intercept_config_default(struct platform_intercept_config *cfg);
/* Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128);
 * clears host bits. */
int platform_cidr_parse(const char *s, struct platform_cidr *out, char *err, size_t errlen);
/* Parses "80,443" into cfg->ports. */
int platform_ports_parse(const char *s, struct platform_intercept_config *cfg,
                         char *err, size_t errlen);

/* Renders the nft script that (re)creates table inet shoji atomically.
 * Pure: no I/O. Returns the length, or negative if it does not fit. */
int platform_intercept_render(const struct platform_intercept_config *cfg,
                              char *buf, size_t cap, char *err, size_t errlen);

/* Installs (or atomically replaces) table inet shoji. */
int platform_intercept_enable(const struct platform_intercept_config *cfg,
                              char *err, size_t errlen);
/* Deletes table inet shoji; 0 also when it was not there (*was_enabled
 * tells which; may be NULL). */
int platform_intercept_disable(bool *was_enabled, char *err, size_t errlen);
/* Writes `nft list table inet shoji` (rules, counters, the liveness set)
 * into a heap string the caller frees. -ENOENT when not enabled. */
int platform_intercept_status(char **out, char *err, size_t errlen);

/* Liveness: redirection happens only while the agent's heartbeat is fresh.
 * The agent calls platform_intercept_heartbeat(ttl) every ttl/3 (e.g. every
 * second with ttl 3000 ms) once its transparent listener is bound, and
 * platform_intercept_down() when it stops. If it dies, the element expires
 * after ttl and the fail mode applies (open: traffic flows direct; closed:
 * TCP reset). -ENOENT when interception is not enabled (not an error for an
 * agent started without it: log once, keep going). Each call is one netlink
 * transaction; thread-safe (serialised internally). */
int platform_intercept_heartbeat(unsigned ttl_ms, char *err, size_t errlen);
int platform_intercept_down(char *err, size_t errlen);

/* ---- least privilege ---------------------------------------------------- */

/* Becomes `user` (refusing root), keeping only CAP_SYS_PTRACE (process
 * lookup) and, with keep_net_admin, CAP_NET_ADMIN (SO_MARK, heartbeat);
 * sets no_new_privs. Must be called as root, before any thread starts. */
int platform_drop_privileges(const char *user, bool keep_net_admin, int *uid_out, int *gid_out,
                             char *err, size_t errlen);
/* The uid and gid of `user`. */
int platform_user_ids(const char *user, int *uid, int *gid, char *err, size_t errlen);

/* ---- memory --------------------------------------------------------------- */

/* Start-up (OpenSSL's initialisation and provider setup, PEM and key
 * parsing, the policy and category-db checks) runs code spread over most of
 * libcrypto, libc and the rest, and each page fault on a file mapping maps
 * the 64 KiB around it (the kernel's fault-around): ~6 MiB of library code
 * stays mapped in the process although an idle agent runs none of it.
 * platform_release_clean_text() unmaps, from this process only, the pages of
 * its read-only private file mappings (program and library code and
 * constants): MADV_DONTNEED on each mapping that is not writable and holds
 * no private (anonymous, i.e. once written) page, per /proc/self/smaps; any
 * other mapping is left alone, so no written page is ever dropped. The page
 * cache is not touched: the pages stay cached and shared with every other
 * process, and the next use maps them again (a minor fault per 64 KiB).
 * Returns the KiB of Rss released (>= 0) or a negative errno. Call once,
 * when start-up is over. docs/PERFORMANCE.md "Memory". */
long platform_release_clean_text(char *err, size_t errlen);

#endif
