/* proxy/upstream: reaching origins — names from the --hosts file, then
 * /etc/hosts (syshosts.h), then DNS (libuv's getaddrinfo on its thread
 * pool), TCP connect with a timeout and fallback over the addresses, the
 * TLS client handshake for decoded connections — and the per-worker pool
 * of idle plain-HTTP connections. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/internal.h"
#include "tls/upstream.h"
#include "util/log.h"

static void try_next(struct conn *c);

enum conn_state up_state(const struct conn *c)
{
    return c->early ? c->early_state : c->state;
}

/* An early connection moves on its own: the client is still peeking, with
 * the peek timer running (early.c arms the connect/handshake timer when the
 * client's verdict takes it over). */
static void up_enter(struct conn *c, enum conn_state st, unsigned timer_ms)
{
    if (c->early) {
        c->early_state = st;
        return;
    }
    c->state = st;
    if (timer_ms)
        conn_set_timer(c, timer_ms);
}

void up_finish(struct conn *c, int status, const char *why)
{
    void (*done)(struct conn *, int, const char *) = c->on_connected;
    c->on_connected = NULL;
    if (done)
        done(c, status, why);
}

void up_fail(struct conn *c, int status, const char *why)
{
    if (c->up) {
        struct pstream *u = c->up;
        c->up = NULL;
        pstream_close(u);
    }
    up_finish(c, status, why);
}

static int parse_ip(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        return 0;
    }
    return -1;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct conn *c = req->data;
    c->refs--;
    c->resolving = false;
    if (c->dead || !c->on_connected) {   /* closed, or timed out meanwhile */
        if (res)
            uv_freeaddrinfo(res);
        conn_maybe_free(c);
        return;
    }
    if (status < 0 || !res) {
        char why[300];
        snprintf(why, sizeof why, "the name %s could not be resolved (%s)", c->ex ? c->ex->host : c->target_host,
                 uv_strerror(status));
        if (res)
            uv_freeaddrinfo(res);
        up_finish(c, status < 0 ? status : -ENOENT, why);
        return;
    }
    c->naddrs = 0;
    for (struct addrinfo *ai = res; ai && c->naddrs < UTIL_ARRAY_LEN(c->addrs); ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        memcpy(&c->addrs[c->naddrs++], ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    c->addr_idx = 0;
    try_next(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->dead || !c->up || c->up->closing)
        return;
    if (status < 0) {
        log_debug("conn %llu: connect to %s failed: %s", (unsigned long long)c->id, c->dst_addr,
                  uv_strerror(status));
        struct pstream *s = c->up;
        c->up = NULL;
        pstream_close(s);
        c->last_connect_error = status;
        try_next(c);
        return;
    }
    uv_tcp_nodelay(&c->up->tcp, 1);
    if (c->upstream_tls) {
        up_enter(c, CS_UP_HANDSHAKE, c->w->sh->cfg->limits.handshake_timeout_ms);
        const char *sni = c->have_hello && c->hello.has_sni ? c->hello.sni : c->target_host;
        /* Stop at the origin's certificate (conn_on_peer_cert). */
        if (pstream_tls_client(c->up, c->w->sh->up_ctx, sni) < 0 ||
            tls_upstream_pause_at_cert(c->up->ssl) < 0)
            up_finish(c, -EPROTO, "could not start TLS towards the origin");
        return;   /* conn_on_handshake / conn_on_error finish it */
    }
    up_finish(c, 0, NULL);
}

/* With transparent interception on, every upstream socket carries the mark
 * that the `inet shoji` rules never redirect: the agent's own traffic must
 * not loop back into it. */
static int open_marked(struct pstream *s, int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    char err[UTIL_ERRLEN];
    int rc = platform_mark_upstream_socket(fd, err, sizeof err);
    if (rc < 0) {
        static bool warned;
        if (!warned)
            log_error("cannot mark upstream sockets (%s): intercepted traffic would loop", err);
        warned = true;
        close(fd);
        return rc;
    }
    rc = uv_tcp_open(&s->tcp, fd);
    if (rc < 0)
        close(fd);
    return rc;
}

static void try_next(struct conn *c)
{
    if (c->addr_idx >= c->naddrs) {
        char why[300];
        int e = c->last_connect_error ? c->last_connect_error : -ECONNREFUSED;
        snprintf(why, sizeof why, "could not connect to %s (%s)", c->dst_addr[0] ? c->dst_addr : "the origin",
                 e == UV_ETIMEDOUT ? "timed out" : uv_strerror(e));
        up_finish(c, e, why);
        return;
    }
    struct sockaddr_storage *ss = &c->addrs[c->addr_idx++];
    sockaddr_fmt((struct sockaddr *)ss, c->dst_addr, sizeof c->dst_addr);
    c->up = pstream_new(c->w, c, SIDE_UPSTREAM);
    if (!c->up) {
        up_finish(c, -ENOMEM, "out of memory");
        return;
    }
    c->refs++;
    c->connect_req.data = c;
    up_enter(c, CS_CONNECTING, c->w->sh->cfg->limits.connect_timeout_ms);
    int r = c->w->sh->cfg->transparent ? open_marked(c->up, ss->ss_family) : 0;
    if (r == 0)
        r = uv_tcp_connect(&c->connect_req, &c->up->tcp, (struct sockaddr *)ss, on_connect);
    if (r < 0) {
        struct pstream *s = c->up;
        c->up = NULL;
        pstream_close(s);
        c->last_connect_error = r;
        try_next(c);
    }
}

void up_connect(struct conn *c, const char *host, uint16_t port, bool tls,
                void (*done)(struct conn *c, int status, const char *why))
{
    c->on_connected = done;
    c->upstream_tls = tls;
    up_enter(c, CS_CONNECTING, 0);
    c->naddrs = c->addr_idx = 0;
    c->last_connect_error = 0;
    c->dst_addr[0] = '\0';
    if (parse_ip(host, port, &c->addrs[0]) == 0) {
        c->naddrs = 1;
        try_next(c);
        return;
    }
    size_t n = proxy_hosts_lookup(c->w->sh, host, c->addrs, UTIL_ARRAY_LEN(c->addrs));
    if (n) {
        for (size_t i = 0; i < n; i++)
            set_port(&c->addrs[i], port);
        c->naddrs = n;
        try_next(c);
        return;
    }
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    c->gai.data = c;
    c->refs++;
    c->resolving = true;
    up_enter(c, CS_CONNECTING, c->w->sh->cfg->limits.connect_timeout_ms);
    int r = uv_getaddrinfo(&c->w->loop, &c->gai, on_gai, host, portstr, &hints);
    if (r < 0) {
        c->refs--;
        c->resolving = false;
        char why[300];
        snprintf(why, sizeof why, "the name %s could not be resolved (%s)", host, uv_strerror(r));
        up_finish(c, r, why);
    }
}

/* Called when the connect timer fires during CONNECTING. */
void up_connect_timeout(struct conn *c)
{
    if (c->up) {
        struct pstream *s = c->up;
        c->up = NULL;
        pstream_close(s);
    }
    if (c->resolving) {
        /* on_gai still runs later (cancelled or not) and sees we finished */
        uv_cancel((uv_req_t *)&c->gai);
        up_finish(c, UV_ETIMEDOUT, "resolving the name timed out");
        return;
    }
    c->last_connect_error = UV_ETIMEDOUT;
    try_next(c);
}

/* ---- idle pool ---------------------------------------------------------- */

static void pool_unlink(struct pool *p, struct pstream *s)
{
    if (s->pool_prev)
        s->pool_prev->pool_next = s->pool_next;
    else
        p->head = s->pool_next;
    if (s->pool_next)
        s->pool_next->pool_prev = s->pool_prev;
    else
        p->tail = s->pool_prev;
    s->pool_next = s->pool_prev = NULL;
    p->n--;
}

/* Newest first: the most recently used connection is the likeliest alive. */
static struct pstream *pool_find(struct worker *w, const char *key)
{
    for (struct pstream *s = w->pool.tail; s; s = s->pool_prev)
        if (strcmp(s->pool_key, key) == 0 && !s->closing && !s->eof)
            return s;
    return NULL;
}

bool up_pool_has(struct worker *w, const char *key)
{
    return pool_find(w, key) != NULL;
}

struct pstream *up_pool_take(struct worker *w, const char *key)
{
    struct pstream *s = pool_find(w, key);
    if (s)
        pool_unlink(&w->pool, s);
    return s;
}

void up_pool_put(struct worker *w, struct pstream *s, const char *key)
{
    unsigned max = w->sh->cfg->limits.pool_per_worker;
    if (max == 0 || w->stopping || s->closing || s->eof || s->in.len) {
        pstream_close(s);
        return;
    }
    if (w->pool.n >= max) {
        struct pstream *old = w->pool.head;
        pool_unlink(&w->pool, old);
        pstream_close(old);
    }
    util_strlcpy(s->pool_key, key, sizeof s->pool_key);
    s->pool_since_ms = uv_now(&w->loop);
    s->pool_prev = w->pool.tail;
    s->pool_next = NULL;
    if (w->pool.tail)
        w->pool.tail->pool_next = s;
    else
        w->pool.head = s;
    w->pool.tail = s;
    w->pool.n++;
    pstream_in_release(s);
    pstream_start(s);   /* notice the origin closing it */
}

void up_pool_drop(struct worker *w, struct pstream *s)
{
    if (s->pool_prev || s->pool_next || w->pool.head == s)
        pool_unlink(&w->pool, s);
}

void up_pool_expire(struct worker *w, bool all)
{
    uint64_t now = uv_now(&w->loop);
    unsigned idle = w->sh->cfg->limits.pool_idle_ms;
    while (w->pool.head && (all || now - w->pool.head->pool_since_ms >= idle)) {
        struct pstream *s = w->pool.head;
        pool_unlink(&w->pool, s);
        pstream_close(s);
    }
}
