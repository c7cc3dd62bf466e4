/* proxy/worker: start-up and shutdown of the agent — loading the CA, the
 * policy, the hosts file and the access log; one listening socket per worker
 * (SO_REUSEPORT, so the kernel spreads connections over the cores); worker
 * threads each running a libuv loop; signals (SIGTERM/SIGINT: graceful stop,
 * SIGHUP: reload) handled on the main thread's own loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <dirent.h>
#include <unistd.h>

#include "mgmt/mgmt.h"
#include "proxy/admin.h"
#include "proxy/internal.h"
#include "proxy/splice.h"
#include "tls/upstream.h"
#include "util/log.h"

void proxy_limits_default(struct proxy_limits *l)
{
    l->max_head = 65536;
    l->max_line = 8192;
    l->max_headers = 100;
    l->header_timeout_ms = 30000;
    l->idle_timeout_ms = 120000;
    l->handshake_timeout_ms = 15000;
    l->connect_timeout_ms = 15000;
    l->response_timeout_ms = 120000;
    l->transfer_timeout_ms = 300000;
    l->tunnel_idle_ms = 3600000;
    l->peek_timeout_ms = 3000;
    l->shutdown_grace_ms = 10000;
    l->max_connections = 16384;
    l->pool_per_worker = 64;
    l->pool_idle_ms = 30000;
    l->early_ports[0] = 443;
    l->n_early_ports = 1;
}

/* ---- shared state ------------------------------------------------------------ */

struct policy *proxy_policy_get(struct proxy_shared *sh)
{
    pthread_mutex_lock(&sh->lock);
    struct policy *p = policy_ref(sh->policy);
    pthread_mutex_unlock(&sh->lock);
    return p;
}

size_t proxy_hosts_lookup(struct proxy_shared *sh, const char *name,
                          struct sockaddr_storage *out, size_t max)
{
    pthread_mutex_lock(&sh->lock);
    size_t n = sh->hosts ? hosts_lookup(sh->hosts, name, out, max) : 0;
    pthread_mutex_unlock(&sh->lock);
    if (n == 0)   /* then /etc/hosts, as getaddrinfo would read it first */
        n = syshosts_lookup(&sh->syshosts, name, out, max, util_mono_us() / 1000);
    return n;
}

bool sockaddr_same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                      16) == 0;
    return false;
}

bool sockaddr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (!sockaddr_same_ip(a, b))
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_port == ((const struct sockaddr_in *)b)->sin_port;
    return ((const struct sockaddr_in6 *)a)->sin6_port == ((const struct sockaddr_in6 *)b)->sin6_port;
}

static bool cidr_has(const struct platform_cidr *c, const struct sockaddr_storage *a)
{
    const uint8_t *ip;
    if (a->ss_family == AF_INET && c->family == AF_INET)
        ip = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr;
    else if (a->ss_family == AF_INET6 && c->family == AF_INET6)
        ip = (const uint8_t *)&((const struct sockaddr_in6 *)a)->sin6_addr;
    else
        return false;
    int bits = c->prefix;
    for (int i = 0; bits > 0; i++, bits -= 8) {
        uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
        if ((ip[i] & mask) != (c->addr[i] & mask))
            return false;
    }
    return true;
}

bool sockaddr_is_loopback(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss_family == AF_INET6) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(x) ||
               (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
    }
    return false;
}

/* A listening socket bound to a loopback address (not a wildcard one). */
static bool fd_bound_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(&ss, 0, sizeof ss);
    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && sockaddr_is_loopback(&ss);
}

bool worker_listener_loopback(const struct worker *w, const uv_stream_t *listener)
{
    if (listener == (const uv_stream_t *)&w->listener)
        return w->listener_loopback;
    if (listener == (const uv_stream_t *)&w->tlistener)
        return w->tlistener_loopback;
    return listener == (const uv_stream_t *)&w->tlistener6;   /* always ::1 */
}

/* Never an open relay: loopback clients always, others only when listed. */
bool proxy_client_allowed(const struct proxy_shared *sh, const struct sockaddr_storage *peer)
{
    if (sockaddr_is_loopback(peer))
        return true;
    for (size_t i = 0; i < sh->nallow; i++)
        if (cidr_has(&sh->allow[i], peer))
            return true;
    return false;
}

static int parse_allow(struct proxy_shared *sh, const char *list, char *err, size_t errlen)
{
    char buf[2048];
    if (!list)
        return 0;
    if (!util_strlcpy(buf, list, sizeof buf))
        return util_err(err, errlen, -EINVAL, "--allow-clients: list too long");
    char *save = NULL;
    for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (sh->nallow == UTIL_ARRAY_LEN(sh->allow))
            return util_err(err, errlen, -E2BIG, "--allow-clients: at most %zu networks",
                            UTIL_ARRAY_LEN(sh->allow));
        char e[256];
        if (platform_cidr_parse(t, &sh->allow[sh->nallow], e, sizeof e) < 0)
            return util_err(err, errlen, -EINVAL, "--allow-clients: %s", e);
        sh->nallow++;
    }
    return 0;
}

int pstream_peer(struct pstream *s, struct sockaddr_storage *out)
{
    if (s->peer_sa.sa.sa_family == AF_UNSPEC) {
        int len = sizeof s->peer_sa;
        int r = uv_tcp_getpeername(&s->tcp, &s->peer_sa.sa, &len);
        if (r != 0) {
            s->peer_sa.sa.sa_family = AF_UNSPEC;
            return r;
        }
    }
    memset(out, 0, sizeof *out);
    memcpy(out, &s->peer_sa, sizeof s->peer_sa);
    return 0;
}

void sockaddr_fmt_peer(struct pstream *s, char *out, size_t cap)
{
    if (!s->peer_addr[0]) {   /* asked once per socket: pooled ones are asked again */
        struct sockaddr_storage ss;
        if (pstream_peer(s, &ss) != 0)
            return;
        sockaddr_fmt((struct sockaddr *)&ss, s->peer_addr, sizeof s->peer_addr);
    }
    util_strlcpy(out, s->peer_addr, cap);
}

static void warn_line(const char *msg) { log_warn("%s", msg); }

/* --policy FILE, else (enrolled) the server's policy once it was fetched,
 * else the built-in one. */
static const char *active_policy_path(const struct proxy_shared *sh)
{
    if (sh->cfg->policy_path)
        return sh->cfg->policy_path;
    if (sh->managed_policy[0] && access(sh->managed_policy, F_OK) == 0)
        return sh->managed_policy;
    return NULL;
}

static int load_policy(const struct proxy_shared *sh, struct policy **out, char *err, size_t errlen)
{
    const char *path = active_policy_path(sh);
    if (!path) {
        *out = policy_default();
        return *out ? 0 : util_err(err, errlen, -ENOMEM, "out of memory");
    }
    return policy_load_file(path, out, err, errlen);
}

static int load_hosts(const struct proxy_config *cfg, struct hosts **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->hosts_path)
        return 0;
    struct hosts *h = calloc(1, sizeof *h);
    if (!h)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    int rc = hosts_load(cfg->hosts_path, h, warn_line, err, errlen);
    if (rc < 0) {
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

/* Also called on the mgmt thread after it wrote a new managed policy. */
static void reload_policy(struct proxy_shared *sh)
{
    char err[UTIL_ERRLEN];
    struct policy *p = NULL;
    if (load_policy(sh, &p, err, sizeof err) < 0) {
        log_error("reload: the policy was NOT changed: %s", err);
    } else {
        pthread_mutex_lock(&sh->lock);
        struct policy *old = sh->policy;
        sh->policy = p;
        pthread_mutex_unlock(&sh->lock);
        policy_unref(old);   /* connections holding it keep it alive */
        log_info("reload: policy %s loaded", active_policy_path(sh) ? active_policy_path(sh) : "(built-in)");
    }
}

static void mgmt_reload(void *ctx) { reload_policy(ctx); }
static void mgmt_metrics(void *ctx, struct buf *out) { metrics_render(ctx, out); }

static void reload(struct proxy_shared *sh)
{
    char err[UTIL_ERRLEN];
    struct hosts *h = NULL;
    reload_policy(sh);
    if (sh->cfg->hosts_path) {
        if (load_hosts(sh->cfg, &h, err, sizeof err) < 0) {
            log_error("reload: the hosts file was NOT changed: %s", err);
        } else {
            pthread_mutex_lock(&sh->lock);
            struct hosts *old = sh->hosts;
            sh->hosts = h;
            pthread_mutex_unlock(&sh->lock);
            if (old) {
                hosts_free(old);
                free(old);
            }
        }
    }
    if (sh->alog && access_log_reopen(sh->alog, err, sizeof err) < 0)
        log_error("reload: %s", err);
    if (sh->learned && learned_reload(sh->learned, err, sizeof err) < 0)
        log_error("reload: learned exclusions: %s", err);
}

/* ---- listening sockets -------------------------------------------------------- */

static int parse_listen(const char *spec, struct sockaddr_storage *ss, char *err, size_t errlen)
{
    char host[128];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1])
        return util_err(err, errlen, -EINVAL, "--listen %s: expected ADDRESS:PORT, e.g. 127.0.0.1:3128", spec);
    size_t hl = (size_t)(colon - spec);
    if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
        spec++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        return util_err(err, errlen, -EINVAL, "--listen %s: address too long", spec);
    memcpy(host, spec, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        return util_err(err, errlen, -EINVAL, "--listen: port '%s' is not a number from 1 to 65535", colon + 1);
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
    } else {
        return util_err(err, errlen, -EINVAL, "--listen: '%s' is not an IP address", host);
    }
    return 0;
}

static int open_listener(const struct sockaddr_storage *ss, char *err, size_t errlen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return util_err(err, errlen, -errno, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Accepted sockets inherit TCP_NODELAY from the listener (Linux): one
     * setsockopt here instead of one per connection. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        int e = errno;
        close(fd);
        return util_err(err, errlen, -e, "SO_REUSEPORT: %s", strerror(e));
    }
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    /* Every connection accepted here stays on this machine: it inherits
     * SPLICE_LOCAL_CC (reno) instead of the system's default, whose pacing
     * (BBR) arms a timer per packet for a link with nothing to pace. Best
     * effort; splice.c sets it per tunnel for other listeners. */
    if (sockaddr_is_loopback(ss))
        (void)setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, SPLICE_LOCAL_CC, sizeof SPLICE_LOCAL_CC - 1);
    socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        char a[80];
        sockaddr_fmt((const struct sockaddr *)ss, a, sizeof a);
        close(fd);
        return util_err(err, errlen, -e, "cannot listen on %s: %s%s", a, strerror(e),
                        e == EADDRINUSE ? " (another program, or another shoji, uses that port)" : "");
    }
    return fd;
}

/* ---- workers ------------------------------------------------------------------ */

static void on_connection(uv_stream_t *listener, int status)
{
    struct worker *w = listener->data;
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    conn_accept(w, listener, listener == (uv_stream_t *)&w->tlistener ||
                                 listener == (uv_stream_t *)&w->tlistener6);
}

/* Access-log lines are written in batches, one write(2) for many requests:
 * before the loop waits for events, a full enough batch goes out at once,
 * and a smaller one within LOG_FLUSH_MS of its first line. */
#define LOG_FLUSH_LINES 64
#define LOG_FLUSH_MS 50

static void on_log_timer(uv_timer_t *t)
{
    (void)t;
    access_log_flush();
}

static void on_prepare(uv_prepare_t *p)
{
    struct worker *w = p->data;
    unsigned n = access_log_pending();
    if (n >= LOG_FLUSH_LINES)
        access_log_flush();
    else if (n && !uv_is_active((uv_handle_t *)&w->log_timer))
        uv_timer_start(&w->log_timer, on_log_timer, LOG_FLUSH_MS, 0);
}

/* Streams whose buffers were freed in one sweep above which the heap's
 * free pages are handed back to the system (64 streams: ~2 MiB). */
#define SWEEP_TRIM_STREAMS 64

static void sweep_idle_tls(struct worker *w)
{
    unsigned freed = 0;
    for (struct conn *c = w->conns; c; c = c->next) {
        if (c->dead)
            continue;
        freed += pstream_sweep_idle_tls(c->client);
        freed += pstream_sweep_idle_tls(c->up);
    }
    for (struct pstream *s = w->pool.head; s; s = s->pool_next)
        freed += pstream_sweep_idle_tls(s);
    /* After a burst (many connections gone quiet at once) the freed record
     * buffers are scattered through the heap, where free() leaves them
     * resident: malloc_trim returns their whole pages. Rare and bounded
     * (once a second at most, one walk of the heap). */
    if (freed >= SWEEP_TRIM_STREAMS)
        malloc_trim(0);
}

static void on_pool_timer(uv_timer_t *t)
{
    up_pool_expire(t->data, false);
    sweep_idle_tls(t->data);
    expool_sweep(t->data);
}

static void close_all_conns(struct worker *w, bool idle_only)
{
    struct conn *next;
    for (struct conn *c = w->conns; c; c = next) {
        next = c->next;
        if (c->dead)
            continue;
        if (idle_only && !(c->state == CS_HEAD && (!c->client || c->client->in.len == 0)))
            continue;
        conn_close(c);
        if (!idle_only && c->client)
            pstream_close(c->client);
    }
}

static void on_stop_deadline(uv_timer_t *t)
{
    struct worker *w = t->data;
    if (w->nconns)
        log_warn("worker %d: shutdown deadline reached, closing %u connections", w->index, w->nconns);
    close_all_conns(w, false);
    uv_stop(&w->loop);
}

static void on_wake(uv_async_t *a)
{
    struct worker *w = a->data;
    if (!atomic_load(&w->sh->stopping) || w->stopping)
        return;
    w->stopping = true;
    if (!w->listener_closed) {
        w->listener_closed = true;
        uv_close((uv_handle_t *)&w->listener, NULL);
        if (w->has_tlistener)
            uv_close((uv_handle_t *)&w->tlistener, NULL);
        if (w->has_tlistener6)
            uv_close((uv_handle_t *)&w->tlistener6, NULL);
    }
    up_pool_expire(w, true);
    close_all_conns(w, true);
    if (w->nconns == 0) {
        uv_stop(&w->loop);
        return;
    }
    uv_timer_start(&w->stop_timer, on_stop_deadline, w->sh->cfg->limits.shutdown_grace_ms, 0);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    access_log_batch_begin();
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Stopped: let pending close callbacks run, then close what is left. */
    close_all_conns(w, false);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
    access_log_batch_end();
    bufpool_drain(&w->bufs);
    expool_drain(w);
    buf_free(&w->tx);
    splice_worker_free(w);
    ident_worker_free(w);
    if (w->proc_cache)
        platform_proc_cache_free(w->proc_cache);
}

static int listen_on(struct worker *w, uv_tcp_t *h, int fd, char *err, size_t errlen)
{
    uv_tcp_init(&w->loop, h);
    h->data = w;
    int r = uv_tcp_open(h, fd);
    if (r == 0)
        r = uv_listen((uv_stream_t *)h, 1024, on_connection);
    if (r < 0)
        return util_err(err, errlen, r, "worker %d: cannot listen: %s", w->index, uv_strerror(r));
    return 0;
}

/* The explicit listener's own address, when it is one address (not a
 * wildcard): every connection it accepts has that local end, so the process
 * lookup needs no getsockname per connection (proxy/ident.c). */
static void listener_self(struct worker *w, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    w->has_listen_self = false;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        w->has_listen_self = ((struct sockaddr_in *)&ss)->sin_addr.s_addr != htonl(INADDR_ANY);
    else if (ss.ss_family == AF_INET6)
        w->has_listen_self = !IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    if (w->has_listen_self)
        w->listen_self = ss;
}

static int worker_init(struct worker *w, int index, struct proxy_shared *sh, int fd, int tfd,
                       int tfd6, char *err, size_t errlen)
{
    w->index = index;
    w->sh = sh;
    uv_loop_init(&w->loop);
    w->listener_loopback = fd_bound_loopback(fd);
    w->tlistener_loopback = tfd >= 0 && fd_bound_loopback(tfd);
    if (listen_on(w, &w->listener, fd, err, errlen) < 0)
        return -EINVAL;
    listener_self(w, fd);
    if (tfd >= 0) {
        if (listen_on(w, &w->tlistener, tfd, err, errlen) < 0)
            return -EINVAL;
        w->has_tlistener = true;
    }
    if (tfd6 >= 0) {
        if (listen_on(w, &w->tlistener6, tfd6, err, errlen) < 0)
            return -EINVAL;
        w->has_tlistener6 = true;
    }
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->pool_timer);
    w->pool_timer.data = w;
    uv_timer_start(&w->pool_timer, on_pool_timer, 1000, 1000);
    uv_prepare_init(&w->loop, &w->log_flush);
    w->log_flush.data = w;
    uv_prepare_start(&w->log_flush, on_prepare);
    uv_unref((uv_handle_t *)&w->log_flush);
    uv_timer_init(&w->loop, &w->log_timer);
    buf_init(&w->tx, TLSBIO_TX_MAX);
    buf_init(&w->head_out, 0);
    uv_timer_init(&w->loop, &w->stop_timer);
    w->stop_timer.data = w;
    w->proc_cache = platform_proc_cache_new();   /* NULL: apps stay unknown */
    return 0;
}

/* ---- main thread: signals ----------------------------------------------------- */

struct main_ctx {
    struct proxy_shared *sh;
    int *fds;                  /* 3 per worker: listener, transparent, its IPv6 twin */
    struct admin *admin;
    uv_timer_t heartbeat;
    bool heartbeat_on;
    bool heartbeat_warned;
    struct worker *workers;
    int n;
    uv_signal_t sigterm, sigint, sighup;
    int done_workers;
    uv_timer_t quiet;          /* code pages released again after a quiet spell */
    bool quiet_on;
    uint64_t quiet_seen;       /* connections + requests at the last tick */
    unsigned quiet_ticks;
    bool quiet_released;
};

static void on_signal(uv_signal_t *s, int signum)
{
    struct main_ctx *m = s->data;
    if (signum == SIGHUP) {
        log_info("SIGHUP: reloading");
        reload(m->sh);
        return;
    }
    if (atomic_exchange(&m->sh->stopping, true))
        return;
    if (m->heartbeat_on) {
        char err[UTIL_ERRLEN];
        uv_close((uv_handle_t *)&m->heartbeat, NULL);
        m->heartbeat_on = false;
        if (platform_intercept_down(err, sizeof err) < 0 && !m->heartbeat_warned)
            log_debug("intercept down: %s", err);
    }
    if (m->quiet_on) {
        uv_close((uv_handle_t *)&m->quiet, NULL);
        m->quiet_on = false;
    }
    log_info("%s: stopping (finishing in-flight work, at most %u ms)", signum == SIGTERM ? "SIGTERM" : "SIGINT",
             m->sh->cfg->limits.shutdown_grace_ms);
    for (int i = 0; i < m->n; i++)
        uv_async_send(&m->workers[i].wake);
    admin_stop(m->admin);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sighup, NULL);
}

/* Transparent mode: nftables redirects only while this heartbeat is fresh, so
 * a dead agent fails open or closed as `shoji intercept --fail-mode` says,
 * instead of black-holing traffic. */
static void on_heartbeat(uv_timer_t *t)
{
    struct main_ctx *m = t->data;
    char err[UTIL_ERRLEN];
    int rc = platform_intercept_heartbeat(3000, err, sizeof err);
    if (rc < 0 && !m->heartbeat_warned) {
        m->heartbeat_warned = true;
        log_warn("transparent listener: %s%s", err,
                 rc == -ENOENT ? " (run `shoji intercept enable --port PORT` to redirect traffic here)" : "");
    } else if (rc == 0 && m->heartbeat_warned) {
        m->heartbeat_warned = false;
        log_info("transparent listener: interception is active");
    }
}

/* Every connection holds two sockets (client and origin), so
 * --max-connections needs about twice as many descriptors as the usual soft
 * limit of 1024 allows: raise the soft limit to the hard one, and as root
 * (before the privileges go) the hard one too when it is short. */
static void raise_nofile(unsigned max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t need = 2 * (rlim_t)max_connections + 1024;
    struct rlimit want = { .rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max };
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need && geteuid() == 0)
        want.rlim_cur = want.rlim_max = need;
    if (want.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &want) < 0 &&
        want.rlim_max != rl.rlim_max) {
        want.rlim_cur = want.rlim_max = rl.rlim_max;   /* the hard limit, at least */
        setrlimit(RLIMIT_NOFILE, &want);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        log_info("open files limit %llu: fewer than the %llu that --max-connections %u needs",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)need, max_connections);
}

/* What needs root: the CA key (readable by root only) and the access log
 * (often in a root-owned directory). Runs before the privileges are dropped. */
static int setup_privileged(struct proxy_shared *sh, const struct proxy_config *cfg, char *err,
                            size_t errlen)
{
    int rc = tls_ca_load(cfg->state_dir, &sh->ca, err, errlen);
    if (rc < 0)
        return rc;
    if (cfg->access_log || mgmt_enrolled(cfg->state_dir)) {   /* enrolled: lines are uploaded */
        enum access_format fmt = cfg->log_format && !strcmp(cfg->log_format, "squid") ? ACCESS_SQUID : ACCESS_JSON;
        if ((rc = access_log_open(cfg->access_log, fmt, &sh->alog, err, errlen)) < 0)
            return rc;
    }
    return 0;
}

/* Everything else; runs as the agent's final user, and starts the first
 * helper threads (the certificate cache writer): after the drop, so every
 * thread has the reduced credentials and no_new_privs. */
static int setup_shared(struct proxy_shared *sh, const struct proxy_config *cfg, char *err, size_t errlen)
{
    int rc = tls_minter_new(&sh->ca, cfg->state_dir, 0, &sh->minter, err, errlen);
    if (rc < 0)
        return rc;
    if (!(sh->up_ctx = tls_upstream_ctx_new(cfg->upstream_ca, err, errlen)))
        return -EINVAL;
    if (!(sh->srv_ctx = tls_server_ctx_new(err, errlen)))
        return -EINVAL;
    /* No SSL_MODE_RELEASE_BUFFERS: it allocates and frees both record
     * buffers for every record. Idle decoded connections (the common case
     * on a desktop) still hold none: the pool timer's sweep frees them once
     * a stream has been quiet for a second (pstream_sweep_idle_tls). */
    if (!cfg->policy_path && mgmt_enrolled(cfg->state_dir))
        mgmt_policy_path(cfg->state_dir, sh->managed_policy, sizeof sh->managed_policy);
    if ((rc = load_policy(sh, &sh->policy, err, errlen)) < 0)
        return rc;
    if ((rc = load_hosts(cfg, &sh->hosts, err, errlen)) < 0)
        return rc;
    if ((rc = learned_open(cfg->state_dir, &sh->learned, err, errlen)) < 0)
        return rc;
    if (!(sh->events = events_new()) || !(sh->certmemo = certmemo_new(3600)))
        return util_err(err, errlen, -ENOMEM, "out of memory");
    return 0;
}

static void teardown_shared(struct proxy_shared *sh)
{
    if (sh->alog)
        access_log_close(sh->alog);
    if (sh->learned)
        learned_close(sh->learned);
    events_free(sh->events);
    certmemo_free(sh->certmemo);
    pthread_mutex_destroy(&sh->learned_save_lock);
    syshosts_free(&sh->syshosts);
    if (sh->hosts) {
        hosts_free(sh->hosts);
        free(sh->hosts);
    }
    if (sh->policy)
        policy_unref(sh->policy);
    if (sh->srv_ctx)
        SSL_CTX_free(sh->srv_ctx);
    if (sh->up_ctx)
        SSL_CTX_free(sh->up_ctx);
    if (sh->minter)
        tls_minter_free(sh->minter);
    tls_ca_free(&sh->ca);
    pthread_mutex_destroy(&sh->lock);
}

/* Start-up is over: unmap the library code it faulted in and an idle agent
 * does not run (platform.h: platform_release_clean_text). */
static void release_startup_pages(void)
{
    char err[UTIL_ERRLEN];
    long kib = platform_release_clean_text(err, sizeof err);
    if (kib < 0)
        log_debug("start-up code pages not released: %s", err);
    else
        log_debug("start-up: released %ld KiB of clean code pages", kib);
}

/* A desktop agent is idle most of the time. After QUIET_TICKS ticks of
 * QUIET_TICK_MS with no new connection and no request, the code the last
 * burst of traffic mapped in is released again, once per quiet spell: the
 * next request maps back what it runs (~60 minor faults, ~3 ms of CPU). */
#define QUIET_TICK_MS 15000
#define QUIET_TICKS 4

static void on_quiet_tick(uv_timer_t *t)
{
    struct main_ctx *m = t->data;
    uint64_t seen = atomic_load(&m->sh->m.connections) + atomic_load(&m->sh->m.requests);
    if (seen != m->quiet_seen) {
        m->quiet_seen = seen;
        m->quiet_ticks = 0;
        m->quiet_released = false;
        return;
    }
    if (m->quiet_released || ++m->quiet_ticks < QUIET_TICKS)
        return;
    m->quiet_released = true;
    char err[UTIL_ERRLEN];
    long kib = platform_release_clean_text(err, sizeof err);
    if (kib < 0)
        log_debug("quiet: code pages not released: %s", err);
    else
        log_debug("quiet for %u ticks: released %ld KiB of clean code pages", QUIET_TICKS, kib);
}

static void write_pidfile(const char *state_dir)
{
    char path[4096], pid[32];
    snprintf(path, sizeof path, "%s/shoji.pid", state_dir);
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    char err[UTIL_ERRLEN];
    if (util_write_file_atomic(path, pid, (size_t)n, 0644, err, sizeof err) < 0)
        log_warn("cannot write the pid file: %s", err);
}

static void remove_pidfile(const char *state_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shoji.pid", state_dir);
    unlink(path);
}

/* Hands the state the agent keeps writing (the dir, the certificate cache,
 * learned exclusions) to `user`; the CA key stays root's. */
static int chown_state(const char *dir, int uid, int gid, char *err, size_t errlen)
{
    static const char *const owned[] = { "", "/certs", "/learned.json", "/leaf.key", "/spool", "/spool/logs",
                                         "/spool/conflicts", "/policy.managed.json", "/policy.managed.etag" };
    char path[4096];
    for (size_t i = 0; i < UTIL_ARRAY_LEN(owned); i++) {
        snprintf(path, sizeof path, "%s%s", dir, owned[i]);
        if (chown(path, (uid_t)uid, (gid_t)gid) < 0 && errno != ENOENT)
            return util_err(err, errlen, -errno, "cannot hand %s to the agent's user: %s", path,
                            strerror(errno));
    }
    snprintf(path, sizeof path, "%s/certs", dir);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4400];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (chown(sub, (uid_t)uid, (gid_t)gid) < 0)
            continue;
        DIR *d2 = opendir(sub);
        struct dirent *f;
        while (d2 && (f = readdir(d2))) {
            char file[4700];
            snprintf(file, sizeof file, "%s/%s", sub, f->d_name);
            if (f->d_name[0] != '.' && chown(file, (uid_t)uid, (gid_t)gid) < 0)
                log_warn("cannot chown %s", file);
        }
        if (d2)
            closedir(d2);
    }
    if (d)
        closedir(d);
    return 0;
}

static int drop_privileges(const struct proxy_config *cfg, char *err, size_t errlen)
{
    int uid, gid;
    if (!cfg->user)
        return 0;
    int rc = platform_user_ids(cfg->user, &uid, &gid, err, errlen);
    if (rc == 0)
        rc = chown_state(cfg->state_dir, uid, gid, err, errlen);
    if (rc == 0)
        rc = platform_drop_privileges(cfg->user, cfg->transparent != NULL, NULL, NULL, err, errlen);
    if (rc == 0)
        log_info("running as %s, keeping CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH%s", cfg->user,
                 cfg->transparent ? " and CAP_NET_ADMIN" : "");
    return rc;
}

/* Binds every listening socket (as root: ports below 1024 need it). */
static int open_listeners(struct main_ctx *m, const struct sockaddr_storage *ss,
                          const struct sockaddr_storage *tss, char *err, size_t errlen)
{
    for (int i = 0; i < m->n; i++) {
        int *fd = &m->fds[3 * i];
        fd[0] = fd[1] = fd[2] = -1;
        if ((fd[0] = open_listener(ss, err, errlen)) < 0)
            return fd[0];
        if (tss && (fd[1] = open_listener(tss, err, errlen)) < 0)
            return fd[1];
        if (tss && tss->ss_family == AF_INET && sockaddr_is_loopback(tss)) {
            /* nftables redirects IPv6 to ::1: listen there on the same port
             * too (quietly skipped where the machine has no IPv6). */
            struct sockaddr_storage v6;
            memset(&v6, 0, sizeof v6);
            struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&v6;
            a6->sin6_family = AF_INET6;
            a6->sin6_addr = in6addr_loopback;
            a6->sin6_port = ((const struct sockaddr_in *)tss)->sin_port;
            char e6[UTIL_ERRLEN];
            fd[2] = open_listener(&v6, e6, sizeof e6);
            if (fd[2] < 0 && i == 0)
                log_warn("transparent listener: no IPv6 twin: %s", e6);
        }
    }
    return 0;
}

static int start_workers(struct main_ctx *m, char *err, size_t errlen)
{
    for (int i = 0; i < m->n; i++) {
        int *fd = &m->fds[3 * i];
        if (worker_init(&m->workers[i], i, m->sh, fd[0], fd[1], fd[2], err, errlen) < 0)
            return -EINVAL;
    }
    for (int i = 0; i < m->n; i++)
        if (uv_thread_create(&m->workers[i].thread, worker_main, &m->workers[i]) != 0)
            return util_err(err, errlen, -EAGAIN, "cannot start worker thread %d", i);
    return 0;
}

int proxy_run(const struct proxy_config *cfg, char *err, size_t errlen)
{
    struct sockaddr_storage ss, tss;
    int rc = parse_listen(cfg->listen, &ss, err, errlen);
    if (rc < 0)
        return rc;
    if (cfg->transparent && (rc = parse_listen(cfg->transparent, &tss, err, errlen)) < 0)
        return rc;
    if (!sockaddr_is_loopback(&ss) && !cfg->allow_clients)
        return util_err(err, errlen, -EPERM,
                        "--listen %s is not a loopback address: name the client networks allowed "
                        "to use it with --allow-clients CIDR[,CIDR...] (shoji is never an open relay)",
                        cfg->listen);
    signal(SIGPIPE, SIG_IGN);
    struct proxy_shared *sh = calloc(1, sizeof *sh);
    if (!sh)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    sh->cfg = cfg;
    if ((rc = parse_allow(sh, cfg->allow_clients, err, errlen)) < 0) {
        free(sh);
        return rc;
    }
    pthread_mutex_init(&sh->lock, NULL);
    pthread_mutex_init(&sh->learned_save_lock, NULL);
    syshosts_init(&sh->syshosts, "/etc/hosts", "/etc/nsswitch.conf");
    struct main_ctx m = { .sh = sh };
    m.n = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (m.n < 1)
        m.n = 1;
    m.workers = calloc((size_t)m.n, sizeof *m.workers);
    m.fds = calloc((size_t)m.n * 3, sizeof *m.fds);
    if (!m.workers || !m.fds)
        rc = util_err(err, errlen, -ENOMEM, "out of memory");
    /* Signals are caught from before the sockets are bound: a SIGTERM that
     * arrives while starting is handled (gracefully) once the loop runs. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_signal_init(&loop, &m.sigterm);
    uv_signal_init(&loop, &m.sigint);
    uv_signal_init(&loop, &m.sighup);
    m.sigterm.data = m.sigint.data = m.sighup.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sighup, on_signal, SIGHUP);
    /* Root's part first: sockets bound, CA key read, log opened; then the
     * privileges go (before any thread exists), then the rest. */
    if (rc == 0)
        raise_nofile(cfg->limits.max_connections);
    if (rc == 0)
        rc = open_listeners(&m, &ss, cfg->transparent ? &tss : NULL, err, errlen);
    if (rc == 0)
        rc = setup_privileged(sh, cfg, err, errlen);
    if (rc == 0)
        rc = drop_privileges(cfg, err, errlen);
    if (rc == 0)
        rc = setup_shared(sh, cfg, err, errlen);
    if (rc == 0 && mgmt_enrolled(cfg->state_dir)) {
        struct mgmt_config mc = { .state_dir = cfg->state_dir, .interval_s = cfg->sync_interval_s,
                                  .jitter_pct = MGMT_JITTER_PCT_DEFAULT, .reload = mgmt_reload,
                                  .metrics = mgmt_metrics, .ctx = sh };
        char merr[UTIL_ERRLEN];
        if (mgmt_start(&mc, &sh->mgmt, merr, sizeof merr) < 0)
            log_error("management server sync NOT started: %s", merr);
        else if (sh->alog)
            access_log_set_sink(sh->alog, mgmt_log_line, sh->mgmt);
    }
    if (rc == 0)
        rc = start_workers(&m, err, errlen);
    if (rc == 0) {
        char aerr[UTIL_ERRLEN];
        if (admin_start(&loop, cfg->state_dir, sh->events, &m.admin, aerr, sizeof aerr) < 0)
            log_warn("%s: `shoji watch` will not work", aerr);
    }
    if (rc == 0 && cfg->transparent) {
        uv_timer_init(&loop, &m.heartbeat);
        m.heartbeat.data = &m;
        m.heartbeat_on = true;
        uv_timer_start(&m.heartbeat, on_heartbeat, 0, 1000);
    }
    if (rc == 0) {
        write_pidfile(cfg->state_dir);
        if (cfg->transparent)
            log_info("transparent listener on %s", cfg->transparent);
        log_info("listening on %s with %d workers (state %s, policy %s)", cfg->listen, m.n,
                 cfg->state_dir, active_policy_path(sh) ? active_policy_path(sh) : "built-in: allow all, decode");
        release_startup_pages();
        uv_timer_init(&loop, &m.quiet);
        m.quiet.data = &m;
        m.quiet_on = true;
        m.quiet_released = true;   /* start-up was just released */
        const char *tq = getenv("SHOJI_TEST_QUIET_TICK_MS");   /* tests only */
        uint64_t tick = tq && atoi(tq) > 0 ? (uint64_t)atoi(tq) : QUIET_TICK_MS;
        uv_timer_start(&m.quiet, on_quiet_tick, tick, tick);
        uv_run(&loop, UV_RUN_DEFAULT);
        for (int i = 0; i < m.n; i++)
            uv_thread_join(&m.workers[i].thread);
        remove_pidfile(cfg->state_dir);
        log_info("stopped");
    } else {
        uv_walk(&loop, close_walk, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    mgmt_stop(sh->mgmt);   /* workers are gone: queued lines go to the spool */
    admin_free(m.admin);
    free(m.fds);
    free(m.workers);
    teardown_shared(sh);
    free(sh);
    return rc;
}

/* ---- metrics ----------------------------------------------------------------- */

void metrics_render(struct proxy_shared *sh, struct buf *out)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
#define M(n, h) { "shoji_" #n "_total", h, offsetof(struct proxy_metrics, n) }
        M(connections, "client connections accepted"),
        M(requests, "HTTP requests answered (plain and decoded)"),
        M(decoded, "connections decoded"),
        M(tunnels, "connections tunnelled undecoded"),
        M(bypassed, "connections bypassed (disabled application or bypass list)"),
        M(blocked, "requests blocked by the policy"),
        M(verify_failures, "decoded connections whose origin certificate failed verification"),
        M(upstream_errors, "requests answered 502/504"),
        M(client_rejections, "clients that rejected the minted certificate"),
        M(conflicts_learned, "learned exclusions recorded by automatic avoidance"),
        M(bad_requests, "malformed requests refused"),
        M(overload_refusals, "connections refused past --max-connections"),
        M(upstream_reused, "decoded connections that started from a pooled origin connection"),
        M(upstream_early, "origin connections opened at CONNECT, before the ClientHello"),
        M(upstream_early_dropped, "... of them closed unused (another name, a tunnel, a block)"),
        M(upstream_retried, "requests sent again after an idle origin connection closed under them"),
#undef M
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(counters); i++) {
        atomic_uint_fast64_t *v = (atomic_uint_fast64_t *)((char *)&sh->m + counters[i].off);
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[i].name, counters[i].help,
                   counters[i].name, counters[i].name, (unsigned long long)atomic_load(v));
    }
    buf_printf(out, "# HELP shoji_connections_open client connections open now\n"
                    "# TYPE shoji_connections_open gauge\nshoji_connections_open %u\n",
               atomic_load(&sh->conns));
    if (sh->alog)
        buf_printf(out, "# HELP shoji_access_log_dropped_total access-log lines that could not be written\n"
                        "# TYPE shoji_access_log_dropped_total counter\nshoji_access_log_dropped_total %llu\n",
                   (unsigned long long)access_log_dropped(sh->alog));
    struct tls_mint_stats ms;
    tls_minter_stats(sh->minter, &ms);
    buf_printf(out, "# HELP shoji_leaf_certificates_total leaf certificates by source\n"
                    "# TYPE shoji_leaf_certificates_total counter\n"
                    "shoji_leaf_certificates_total{source=\"memory\"} %lu\n"
                    "shoji_leaf_certificates_total{source=\"disk\"} %lu\n"
                    "shoji_leaf_certificates_total{source=\"minted\"} %lu\n",
               ms.mem_hits, ms.disk_hits, ms.minted);
}
