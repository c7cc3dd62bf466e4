/* proxy/ident: who is the client — the process that owns the other end of
 * an accepted connection, without stalling the worker's event loop.
 *
 * At accept, the quick lookup (platform_proc_lookup_quick: one netlink
 * round trip and a few /proc reads of processes that connected lately)
 * answers almost every connection inline. When it cannot (the first
 * connection of a program the worker has not seen), the connection is
 * marked `ident_pending` and waits in the worker's queue while a /proc walk
 * runs on libuv's thread pool; its bytes stay unread (conn_on_data parks it)
 * and every decision waits for the answer, which the access log and the
 * live view carry too. One walk at a time per worker, looking for every
 * waiting socket at once (up to PLATFORM_PROC_WALK_TARGETS); the worker's
 * cache keeps serving quick lookups meanwhile (the walk touches only its
 * own object). A waiting connection holds a reference, so one that closes
 * during the walk is freed when the walk comes back. */
#include "proxy/internal.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ident_walker {
    uv_work_t req;
    struct worker *w;
    struct platform_proc_walk *wk;
    bool running;
    unsigned delay_ms;            /* tests only: SHOJI_TEST_IDENT_DELAY_MS */
    struct conn *head, *tail;     /* waiting connections, in arrival order */
};

static void walk_start(struct worker *w);

static void waiter_push(struct ident_walker *iw, struct conn *c)
{
    c->ident_next = NULL;
    if (iw->tail)
        iw->tail->ident_next = c;
    else
        iw->head = c;
    iw->tail = c;
}

/* The answer is final: resume a live connection, free a dead one. */
static void ident_settle(struct conn *c, int rc, const char *err)
{
    c->ident_pending = false;
    c->have_proc = rc == 0;
    if (rc < 0 && rc != PLATFORM_ENOTLOCAL && rc != PLATFORM_EGONE)
        log_debug("conn %llu: owning process of %s not found: %s", (unsigned long long)c->id,
                  c->client_addr, err);
    c->refs--;
    if (c->dead) {
        conn_maybe_free(c);
        return;
    }
    conn_ident_ready(c);
}

static void on_walk(uv_work_t *req)
{
    struct ident_walker *iw = req->data;
    if (iw->delay_ms)   /* tests: a walk slower than the client (head, hang-up) */
        usleep(iw->delay_ms * 1000u);
    platform_proc_walk_run(iw->wk);
}

static void after_walk(uv_work_t *req, int status)
{
    struct ident_walker *iw = req->data;
    struct worker *w = iw->w;
    (void)status;
    iw->running = false;
    platform_proc_walk_merge(w->proc_cache, iw->wk);
    struct conn *c = iw->head;
    iw->head = iw->tail = NULL;
    while (c) {
        struct conn *next = c->ident_next;
        char err[UTIL_ERRLEN] = "";
        int rc;
        if (c->dead) {
            rc = PLATFORM_EGONE;   /* nobody will read the answer */
        } else if ((rc = platform_proc_walk_result(iw->wk, c->proc.inode, err, sizeof err)) == 0 ||
                   rc == PLATFORM_EWALK) {
            /* found by this walk, or not one of its targets: from the cache */
            bool target = rc == 0;
            rc = platform_proc_resolve(w->proc_cache, &c->proc, err, sizeof err);
            if (rc == PLATFORM_EWALK && target)
                rc = PLATFORM_EGONE;   /* found, then gone before we could name it */
        }
        if (rc == PLATFORM_EWALK)
            waiter_push(iw, c);   /* beyond this walk's targets: the next one */
        else
            ident_settle(c, rc, err);
        c = next;
    }
    if (iw->head)
        walk_start(w);
}

static void walk_start(struct worker *w)
{
    struct ident_walker *iw = w->ident;
    platform_proc_walk_begin(w->proc_cache, iw->wk);
    for (struct conn *c = iw->head; c; c = c->ident_next)
        if (!c->dead && !platform_proc_walk_add(iw->wk, c->proc.inode))
            break;
    iw->req.data = iw;
    iw->running = true;
    if (uv_queue_work(&w->loop, &iw->req, on_walk, after_walk) < 0) {
        /* No thread pool: walk here (the old, blocking behaviour). */
        on_walk(&iw->req);
        after_walk(&iw->req, 0);
    }
}

static struct ident_walker *walker(struct worker *w)
{
    if (w->ident)
        return w->ident;
    struct ident_walker *iw = calloc(1, sizeof *iw);
    if (!iw)
        return NULL;
    iw->wk = platform_proc_walk_new();
    if (!iw->wk) {
        free(iw);
        return NULL;
    }
    const char *d = getenv("SHOJI_TEST_IDENT_DELAY_MS");
    iw->delay_ms = d ? (unsigned)strtoul(d, NULL, 10) : 0;
    if (iw->delay_ms > 10000)
        iw->delay_ms = 10000;
    iw->w = w;
    w->ident = iw;
    return iw;
}

void ident_start(struct conn *c, const struct sockaddr_storage *peer)
{
    struct worker *w = c->w;
    struct sockaddr_storage self;
    int len = sizeof self;
    c->proc.pid = -1;
    c->proc.fd = -1;
    if (!w->proc_cache)
        return;
    if (c->transparent)
        self = c->orig_dst;   /* what the client's socket is connected to */
    else if (w->has_listen_self)
        self = w->listen_self;   /* bound to one address: the local end */
    else if (uv_tcp_getsockname(&c->client->tcp, (struct sockaddr *)&self, &len) != 0)
        return;
    char err[UTIL_ERRLEN];
    int rc = platform_proc_lookup_quick(w->proc_cache, (const struct sockaddr *)peer,
                                        (const struct sockaddr *)&self, &c->proc, err, sizeof err);
    struct ident_walker *iw = rc == PLATFORM_EWALK ? walker(w) : NULL;
    if (rc == PLATFORM_EWALK && !iw)
        rc = platform_proc_lookup_tcp(w->proc_cache, (const struct sockaddr *)peer,
                                      (const struct sockaddr *)&self, &c->proc, err, sizeof err);
    if (rc != PLATFORM_EWALK) {
        c->have_proc = rc == 0;
        if (rc < 0 && rc != PLATFORM_ENOTLOCAL && rc != PLATFORM_EGONE)
            log_debug("conn %llu: owning process of %s not found: %s", (unsigned long long)c->id,
                      c->client_addr, err);
        return;
    }
    c->ident_pending = true;
    c->refs++;
    waiter_push(iw, c);
    if (!iw->running)
        walk_start(w);
}

void ident_conn_closed(struct conn *c)
{
    if (c->have_proc && c->w->proc_cache)
        platform_proc_release(c->w->proc_cache, &c->proc);
}

void ident_worker_free(struct worker *w)
{
    struct ident_walker *iw = w->ident;
    if (!iw)
        return;
    platform_proc_walk_free(iw->wk);
    free(iw);
    w->ident = NULL;
}
