/* proxy/splice: the zero-copy relay of a pure tunnel (see splice.h). */
#include "proxy/splice.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/internal.h"
#include "util/log.h"

/* ---- the pipe pool ----------------------------------------------------------- */

void splice_pool_init(struct splice_pool *p, size_t pipe_size)
{
    memset(p, 0, sizeof *p);
    p->want_size = pipe_size;
}

static void pipe_close(struct splice_pipe *pp)
{
    if (pp->rd >= 0)
        close(pp->rd);
    if (pp->wr >= 0)
        close(pp->wr);
    pp->rd = pp->wr = -1;
}

int splice_pool_take(struct splice_pool *p, struct splice_pipe *out)
{
    if (p->nfree) {
        *out = p->free[--p->nfree];
        return 0;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        int e = errno;
        p->failed++;
        return -e;
    }
    /* Larger pipes move more per splice (fewer syscalls and wake-ups per
     * MiB). Refused past the per-user pipe quota (unprivileged): the
     * default size still works. */
    if (p->want_size)
        (void)fcntl(fds[1], F_SETPIPE_SZ, (int)p->want_size);
    out->rd = fds[0];
    out->wr = fds[1];
    p->created++;
    return 0;
}

void splice_pool_give(struct splice_pool *p, struct splice_pipe *pp)
{
    if (pp->rd < 0)
        return;
    if (p->nfree < SPLICE_POOL_MAX)
        p->free[p->nfree++] = *pp;
    else
        pipe_close(pp);
    pp->rd = pp->wr = -1;
}

void splice_pool_clear(struct splice_pool *p)
{
    while (p->nfree)
        pipe_close(&p->free[--p->nfree]);
}

/* ---- one direction ------------------------------------------------------------- */

void splice_dir_init(struct splice_dir *d, int src, int dst)
{
    memset(d, 0, sizeof *d);
    d->src = src;
    d->dst = dst;
    d->pipe.rd = d->pipe.wr = -1;
}

/* Gives back what an idle direction holds (nothing in flight). */
static void dir_drop(struct splice_dir *d, struct splice_pool *p)
{
    if (d->parked)
        return;
    splice_pool_give(p, &d->pipe);
    free(d->copy);
    d->copy = NULL;
}

void splice_dir_release(struct splice_dir *d, struct splice_pool *p)
{
    if (d->parked && d->pipe.rd >= 0)
        pipe_close(&d->pipe);   /* bytes in it: never back to the pool */
    d->parked = 0;
    dir_drop(d, p);
}

/* Parked bytes -> dst. >0 written, or -errno (-EAGAIN: dst is full). */
static ssize_t dir_out(struct splice_dir *d)
{
    ssize_t n;
    do {
        if (d->copy)
            n = send(d->dst, d->copy + d->copy_off, d->parked, MSG_NOSIGNAL | MSG_DONTWAIT);
        else
            n = splice(d->pipe.rd, NULL, d->dst, NULL, d->parked, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -EPIPE;
    if (d->copy)
        d->copy_off += (size_t)n;
    d->parked -= (size_t)n;
    return n;
}

/* src -> a pipe (or the copy buffer). >0 read, 0 EOF, or -errno. */
static ssize_t dir_in(struct splice_dir *d, struct splice_pool *p, size_t *cap)
{
    ssize_t n;
    if (!d->copy_only && d->pipe.rd < 0 && splice_pool_take(p, &d->pipe) < 0)
        d->pipe.rd = d->pipe.wr = -1;   /* no pipe to be had: copy this round */
    if (d->pipe.rd >= 0) {
        *cap = p->want_size ? p->want_size : 65536;
        do
            n = splice(d->src, NULL, d->pipe.wr, NULL, *cap, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        while (n < 0 && errno == EINTR);
        if (n >= 0 || (errno != EINVAL && errno != ENOSYS))
            return n < 0 ? -errno : n;
        d->copy_only = true;    /* this socket cannot splice: copy from now on */
        splice_pool_give(p, &d->pipe);
    }
    if (!d->copy && !(d->copy = malloc(SPLICE_COPY_CHUNK)))
        return -ENOMEM;
    *cap = SPLICE_COPY_CHUNK;
    d->copy_off = 0;
    do
        n = recv(d->src, d->copy, SPLICE_COPY_CHUNK, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/* Small mode: src -> a stack buffer -> dst. >0 read, 0 EOF, or -errno; what
 * dst does not take is parked in the copy buffer. */
static ssize_t dir_small(struct splice_dir *d)
{
    char b[SPLICE_SMALL];
    ssize_t n, w;
    do
        n = recv(d->src, b, sizeof b, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n < 0 ? -errno : 0;
    do
        w = send(d->dst, b, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return -errno;
    if (w < 0)
        w = 0;
    if (w < n) {
        if (!d->copy && !(d->copy = malloc(SPLICE_COPY_CHUNK)))
            return -ENOMEM;
        memcpy(d->copy, b + w, (size_t)(n - w));
        d->copy_off = 0;
        d->parked = (size_t)(n - w);
    }
    return n;
}

static int dir_finish(struct splice_dir *d)
{
    if (!d->dst_shut) {
        d->dst_shut = true;
        if (shutdown(d->dst, SHUT_WR) < 0 && errno != ENOTCONN)
            return -errno;
    }
    return SPLICE_DONE;
}

/* What one read of `n` bytes means for the round: TOOK_MORE to go on (bytes
 * counted, or EOF noted), else what splice_dir_pump returns. */
#define TOOK_MORE (-1000000)
static int took(struct splice_dir *d, ssize_t n, size_t *got)
{
    if (n == -EAGAIN || n == -EWOULDBLOCK)
        return SPLICE_WANT_READ;
    if (n < 0)
        return (int)n;
    if (n == 0) {
        d->src_eof = true;
        return TOOK_MORE;
    }
    *got += (size_t)n;
    d->moved += (size_t)n;
    d->last_in = (size_t)n;
    return TOOK_MORE;
}

int splice_dir_pump(struct splice_dir *d, struct splice_pool *p, size_t budget)
{
    size_t got = 0, cap = 0;
    for (;;) {
        while (d->parked) {
            ssize_t n = dir_out(d);
            if (n == -EAGAIN || n == -EWOULDBLOCK)
                return SPLICE_WANT_WRITE;   /* keep the bytes; src is not read */
            if (n < 0)
                return (int)n;
        }
        dir_drop(d, p);
        if (d->src_eof)
            return dir_finish(d);
        /* A short read most likely emptied src: let (level-triggered) epoll
         * say when there is more rather than paying an EAGAIN. */
        if (got >= budget || (got && d->last_in < cap / 2))
            return SPLICE_WANT_READ;
        if (!d->bulk) {
            ssize_t n = dir_small(d);
            int r = took(d, n, &got);
            if (r != TOOK_MORE)
                return r;
            if (n > 0) {
                cap = 2 * SPLICE_SMALL;   /* a short read ends the round */
                d->bulk = n == SPLICE_SMALL;
            }
            continue;
        }
        ssize_t n = dir_in(d, p, &cap);
        int r = took(d, n, &got);
        if (r != TOOK_MORE) {
            dir_drop(d, p);
            return r;
        }
        if (n > 0) {
            d->parked = (size_t)n;
            d->bulk = n >= SPLICE_SMALL;
        }
    }
}

/* ---- the client's leg on this host ----------------------------------------------- */

bool splice_peer_is_local(const struct sockaddr_storage *self, const struct sockaddr_storage *peer)
{
    return sockaddr_is_loopback(peer) || (self && sockaddr_same_ip(self, peer));
}

int splice_local_cc(int fd)
{
    struct sockaddr_storage self, peer;
    socklen_t ls = sizeof self, lp = sizeof peer;
    memset(&self, 0, sizeof self);
    memset(&peer, 0, sizeof peer);
    if (getpeername(fd, (struct sockaddr *)&peer, &lp) < 0)
        return -errno;
    bool local = sockaddr_is_loopback(&peer);
    if (!local && getsockname(fd, (struct sockaddr *)&self, &ls) == 0)
        local = splice_peer_is_local(&self, &peer);
    if (!local)
        return 0;
    static const char cc[] = SPLICE_LOCAL_CC;
    if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)(sizeof cc - 1)) < 0)
        return -errno;
    return 1;
}

/* ---- tunnels: the conn glue ------------------------------------------------------ */

struct splice_tunnel {
    struct conn *c;
    struct splice_dir dir[2];  /* [0] client -> upstream, [1] upstream -> client */
    int fd[2];                 /* [0] client socket, [1] upstream socket */
    int want[2];               /* last enum splice_want of each direction */
    uint32_t mask[2];          /* epoll events registered per socket; 0: none */
    uint64_t base_in, base_out;   /* c->tunnel_in/out when the splice began */
    bool dead;
    struct splice_tunnel *next_dead;
};

struct splice_worker {
    uv_poll_t poll;            /* watches epfd in the worker's loop */
    int epfd;
    struct splice_pool pool;
    bool dispatching;
    bool broken;               /* the uv_poll could not start: never splice */
    struct splice_tunnel *graveyard;   /* stopped during a dispatch: freed after it */
};

static void on_ready(uv_poll_t *h, int status, int events);

static struct splice_worker *worker_state(struct worker *w)
{
    if (w->splice)
        return w->splice->broken ? NULL : w->splice;
    struct splice_worker *sw = calloc(1, sizeof *sw);
    if (!sw)
        return NULL;
    sw->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sw->epfd < 0) {
        free(sw);
        return NULL;
    }
    if (uv_poll_init(&w->loop, &sw->poll, sw->epfd) != 0) {
        close(sw->epfd);
        free(sw);
        return NULL;
    }
    sw->poll.data = sw;
    splice_pool_init(&sw->pool, SPLICE_PIPE_SIZE);
    w->splice = sw;   /* owned by the worker from here: freed by splice_worker_free */
    if (uv_poll_start(&sw->poll, UV_READABLE, on_ready) != 0) {
        log_warn("splice: cannot watch the tunnels' epoll: tunnels are copied");
        sw->broken = true;
    }
    return sw->broken ? NULL : sw;
}

void splice_worker_free(struct worker *w)
{
    struct splice_worker *sw = w->splice;
    if (!sw)
        return;
    w->splice = NULL;
    splice_pool_clear(&sw->pool);
    close(sw->epfd);
    free(sw);
}

/* Socket `side` is read by dir[side] and written by dir[!side]. A socket
 * nobody waits on is taken out of epoll: its EPOLLHUP would otherwise fire
 * on every turn of the loop. */
static int sync_masks(struct splice_tunnel *t, struct splice_worker *sw)
{
    for (int s = 0; s < 2; s++) {
        uint32_t m = (t->want[s] == SPLICE_WANT_READ ? EPOLLIN : 0) |
                     (t->want[!s] == SPLICE_WANT_WRITE ? EPOLLOUT : 0);
        if (m == t->mask[s])
            continue;
        struct epoll_event ev = { .events = m, .data.u64 = (uint64_t)(uintptr_t)t | (uint64_t)s };
        int op = m == 0 ? EPOLL_CTL_DEL : t->mask[s] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(sw->epfd, op, t->fd[s], &ev) < 0)
            return -errno;
        t->mask[s] = m;
    }
    return 0;
}

static void account(struct splice_tunnel *t)
{
    t->c->tunnel_in = t->base_in + t->dir[0].moved;
    t->c->tunnel_out = t->base_out + t->dir[1].moved;
}

/* Both ways finished cleanly: both FINs passed on. */
static void finish(struct splice_tunnel *t)
{
    struct conn *c = t->c;
    struct pstream *cl = c->client, *up = c->up;
    splice_tunnel_stop(c);
    if (up)
        pstream_close(up);
    if (cl)
        pstream_close(cl);
    conn_close(c);   /* logs the tunnel */
}

static void fail(struct splice_tunnel *t, int err)
{
    struct conn *c = t->c;
    log_debug("conn %llu: tunnel: %s", (unsigned long long)c->id, strerror(-err));
    conn_close(c);   /* stops the splice first */
}

static int pump(struct splice_tunnel *t, struct splice_worker *sw, int d)
{
    int rc = splice_dir_pump(&t->dir[d], &sw->pool, SPLICE_BUDGET);
    if (rc < 0)
        return rc;
    t->want[d] = rc;
    struct conn *c = t->c;
    struct pstream *src = d == 0 ? c->client : c->up, *dst = d == 0 ? c->up : c->client;
    if (t->dir[d].src_eof && src)
        src->eof = true;
    if (t->dir[d].dst_shut && dst)
        dst->shut = true;
    return 0;
}

static void side_event(struct splice_tunnel *t, struct splice_worker *sw, int s, uint32_t ev)
{
    uint64_t before = t->dir[0].moved + t->dir[1].moved;
    int rc = 0;
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && t->want[s] == SPLICE_WANT_READ)
        rc = pump(t, sw, s);
    if (rc == 0 && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && t->want[!s] == SPLICE_WANT_WRITE)
        rc = pump(t, sw, !s);
    account(t);
    if (rc == 0 && t->want[0] == SPLICE_DONE && t->want[1] == SPLICE_DONE) {
        finish(t);
        return;
    }
    if (rc == 0)
        rc = sync_masks(t, sw);
    if (rc < 0) {
        fail(t, rc);
        return;
    }
    if (t->dir[0].moved + t->dir[1].moved != before)
        conn_set_timer(t->c, t->c->w->sh->cfg->limits.tunnel_idle_ms);
}

static void on_ready(uv_poll_t *h, int status, int events)
{
    struct splice_worker *sw = h->data;
    (void)events;
    if (status < 0) {
        log_error("splice: polling the tunnels failed: %s", uv_strerror(status));
        return;
    }
    struct epoll_event ev[64];
    int n = epoll_wait(sw->epfd, ev, 64, 0);
    sw->dispatching = true;
    for (int i = 0; i < n; i++) {
        struct splice_tunnel *t = (struct splice_tunnel *)(uintptr_t)(ev[i].data.u64 & ~(uint64_t)1);
        if (!t->dead)
            side_event(t, sw, (int)(ev[i].data.u64 & 1), ev[i].events);
    }
    sw->dispatching = false;
    while (sw->graveyard) {
        struct splice_tunnel *t = sw->graveyard;
        sw->graveyard = t->next_dead;
        free(t);
    }
}

static bool stream_idle(const struct pstream *s)
{
    return s && !s->ssl && !s->closing && !s->eof && !s->shut && !s->lingering && !s->pending &&
           !s->in.len && !s->cork.len && !s->corked;
}

bool splice_tunnel_start(struct conn *c)
{
    struct pstream *cl = c->client, *up = c->up;
    if (c->splice || c->dead || c->state != CS_TUNNEL || !stream_idle(cl) || !stream_idle(up))
        return false;
    if (c->tunnel_mode && strcmp(c->tunnel_mode, "upgrade") == 0)
        return false;   /* an HTTP upgrade keeps the copy relay */
    struct splice_worker *sw = worker_state(c->w);
    uv_os_fd_t fcl, fup;
    if (!sw || uv_fileno((uv_handle_t *)&cl->tcp, &fcl) != 0 ||
        uv_fileno((uv_handle_t *)&up->tcp, &fup) != 0)
        return false;
    struct splice_pipe pp;
    if (splice_pool_take(&sw->pool, &pp) < 0)
        return false;   /* no pipe to be had now (EMFILE...): copy */
    splice_pool_give(&sw->pool, &pp);
    struct splice_tunnel *t = calloc(1, sizeof *t);
    if (!t)
        return false;
    t->c = c;
    t->fd[0] = fcl;
    t->fd[1] = fup;
    splice_dir_init(&t->dir[0], fcl, fup);
    splice_dir_init(&t->dir[1], fup, fcl);
    t->want[0] = t->want[1] = SPLICE_WANT_READ;
    /* A loopback listener's sockets have it already (worker.c). */
    if (!c->client_on_loopback_listener)
        (void)splice_local_cc(fcl);   /* best effort: the system's default otherwise */
    t->base_in = c->tunnel_in;
    t->base_out = c->tunnel_out;
    if (sync_masks(t, sw) < 0) {
        for (int s = 0; s < 2; s++)
            if (t->mask[s])
                epoll_ctl(sw->epfd, EPOLL_CTL_DEL, t->fd[s], NULL);
        free(t);
        return false;
    }
    pstream_pause(cl);
    pstream_pause(up);
    /* An idle tunnel holds no user-space buffer. */
    buf_free(&cl->in);
    buf_free(&up->in);
    buf_free(&cl->cork);
    buf_free(&up->cork);
    c->splice = t;
    return true;
}

void splice_tunnel_stop(struct conn *c)
{
    struct splice_tunnel *t = c->splice;
    if (!t)
        return;
    c->splice = NULL;
    struct splice_worker *sw = c->w->splice;
    account(t);
    for (int s = 0; s < 2; s++)
        if (t->mask[s])
            epoll_ctl(sw->epfd, EPOLL_CTL_DEL, t->fd[s], NULL);
    splice_dir_release(&t->dir[0], &sw->pool);
    splice_dir_release(&t->dir[1], &sw->pool);
    t->dead = true;
    if (sw->dispatching) {
        t->next_dead = sw->graveyard;
        sw->graveyard = t;
    } else {
        free(t);
    }
}
