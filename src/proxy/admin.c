/* proxy/admin: the agent's local admin socket, STATE/admin.sock (mode 0600,
 * so only the agent's own user — root — can read it). A client that
 * connects receives the live event feed (log/events.h) as JSON lines: first
 * what is still in the ring, then new events every 200 ms. `shoji watch`
 * is that client. Runs on the main thread's loop, never on a worker's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/admin.h"
#include "util/log.h"
#include "util/util.h"

#define ADMIN_MAX_CLIENTS 16
#define ADMIN_BACKLOG_MAX (4u << 20)   /* a watcher this far behind is skipped ahead */

struct admin_client {
    uv_pipe_t pipe;
    struct admin *a;
    uint64_t cursor;
    size_t queued;
    bool used;
};

struct admin {
    uv_pipe_t server;
    uv_timer_t timer;
    struct events *events;
    struct admin_client clients[ADMIN_MAX_CLIENTS];
    char path[4096];
    bool open;
};

struct admin_write {
    uv_write_t req;
    struct admin_client *cl;
    size_t len;
    char data[];
};

static void on_client_closed(uv_handle_t *h)
{
    struct admin_client *cl = h->data;
    cl->used = false;
}

static void drop_client(struct admin_client *cl)
{
    if (!uv_is_closing((uv_handle_t *)&cl->pipe))
        uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct admin_write *w = (struct admin_write *)req;
    w->cl->queued -= w->len;
    if (status < 0)
        drop_client(w->cl);
    free(w);
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n < 0)   /* the watcher went away (we ignore what it sends) */
        drop_client(s->data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char sink[256];
    (void)h;
    (void)suggested;
    *b = uv_buf_init(sink, sizeof sink);
}

static void flush_client(struct admin_client *cl)
{
    struct event evs[64];
    char line[2048];
    for (int round = 0; round < 16; round++) {
        uint64_t missed = 0;
        size_t n = events_read(cl->a->events, &cl->cursor, evs, UTIL_ARRAY_LEN(evs), &missed);
        if (n == 0 && missed == 0)
            return;
        size_t cap = n * sizeof line + 128;
        struct admin_write *w = malloc(sizeof *w + cap);
        if (!w)
            return;
        size_t off = 0;
        if (missed)
            off += (size_t)snprintf(w->data, cap, "{\"kind\":\"missed\",\"count\":%llu}\n",
                                    (unsigned long long)missed);
        for (size_t i = 0; i < n; i++) {
            size_t l = events_format_json(&evs[i], line, sizeof line);
            if (l && off + l + 1 < cap) {
                memcpy(w->data + off, line, l);
                off += l;
                w->data[off++] = '\n';
            }
        }
        w->cl = cl;
        w->len = off;
        uv_buf_t b = uv_buf_init(w->data, (unsigned)off);
        if (uv_write(&w->req, (uv_stream_t *)&cl->pipe, &b, 1, on_written) < 0) {
            free(w);
            drop_client(cl);
            return;
        }
        cl->queued += off;
        if (n < UTIL_ARRAY_LEN(evs))
            return;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct admin *a = t->data;
    for (size_t i = 0; i < ADMIN_MAX_CLIENTS; i++) {
        struct admin_client *cl = &a->clients[i];
        if (!cl->used || uv_is_closing((uv_handle_t *)&cl->pipe))
            continue;
        if (cl->queued > ADMIN_BACKLOG_MAX)
            continue;   /* a slow watcher: it will be told what it missed */
        flush_client(cl);
    }
}

static void free_handle(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status)
{
    struct admin *a = server->data;
    if (status < 0)
        return;
    struct admin_client *cl = NULL;
    for (size_t i = 0; i < ADMIN_MAX_CLIENTS && !cl; i++)
        if (!a->clients[i].used)
            cl = &a->clients[i];
    uv_pipe_t *p = cl ? &cl->pipe : malloc(sizeof *p);
    if (!p)
        return;
    uv_pipe_init(server->loop, p, 0);
    if (uv_accept(server, (uv_stream_t *)p) != 0 || !cl) {
        if (!cl)
            log_warn("admin socket: too many watchers (at most %d)", ADMIN_MAX_CLIENTS);
        uv_close((uv_handle_t *)p, cl ? NULL : free_handle);
        return;
    }
    cl->used = true;
    cl->a = a;
    cl->cursor = 0;
    cl->queued = 0;
    cl->pipe.data = cl;
    uv_read_start((uv_stream_t *)&cl->pipe, on_alloc, on_client_read);
    flush_client(cl);
}

int admin_start(uv_loop_t *loop, const char *state_dir, struct events *events, struct admin **out,
                char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    a->events = events;
    snprintf(a->path, sizeof a->path, "%s/admin.sock", state_dir);
    unlink(a->path);   /* a stale socket of a previous run */
    uv_pipe_init(loop, &a->server, 0);
    a->server.data = a;
    mode_t old = umask(0077);
    int r = uv_pipe_bind(&a->server, a->path);
    umask(old);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&a->server, 16, on_connection);
    if (r < 0) {
        uv_close((uv_handle_t *)&a->server, NULL);
        *out = a;   /* freed by admin_stop after the close completes */
        return util_err(err, errlen, r, "admin socket %s: %s", a->path, uv_strerror(r));
    }
    chmod(a->path, 0600);
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, on_tick, 200, 200);
    a->open = true;
    *out = a;
    return 0;
}

void admin_stop(struct admin *a)
{
    if (!a || !a->open)
        return;
    a->open = false;
    uv_close((uv_handle_t *)&a->timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&a->server))
        uv_close((uv_handle_t *)&a->server, NULL);
    for (size_t i = 0; i < ADMIN_MAX_CLIENTS; i++)
        if (a->clients[i].used)
            drop_client(&a->clients[i]);
    unlink(a->path);
}

void admin_free(struct admin *a) { free(a); }
