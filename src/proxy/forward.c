/* proxy/forward: one HTTP exchange at a time on a client connection — the
 * request head rewritten for the origin, the request body streamed up
 * (chunked bodies re-encoded, never held whole), the response head and body
 * streamed down, 1xx and 101 handled, keep-alive on both sides, and the
 * access-log line. Used for plain HTTP (absolute-form requests, upstream
 * connections pooled per worker) and inside decoded TLS (the upstream is the
 * connection's own TLS stream). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "proxy/internal.h"
#include "tls/upstream.h"
#include "util/fbuf.h"
#include "util/log.h"

static void finish(struct conn *c);
static void to_upstream(struct conn *c);
static void pump_request(struct conn *c);
static void pump_response(struct conn *c);

/* ---- logging ------------------------------------------------------------------ */

static void log_exchange(struct conn *c, const char *error)
{
    struct exchange *ex = c->ex;
    struct access_record r;
    memset(&r, 0, sizeof r);
    r.time_ms = ex->t_start_ms;
    r.client = c->client_addr;
    r.method = ex->method;
    r.url = ex->url;
    r.host = ex->host;
    r.status = ex->status;
    r.bytes_in = ex->req_bytes;
    r.bytes_out = ex->resp_bytes;
    r.duration_us = util_mono_us() - ex->t_start_us;
    r.mode = c->kind == CK_DECODE ? "decode" : "http";
    r.upstream_verify = c->kind == CK_DECODE ? c->verify : NULL;
    r.sni = c->have_hello && c->hello.has_sni ? c->hello.sni : NULL;
    r.dst = c->dst_addr[0] ? c->dst_addr : NULL;
    conn_record_app(c, &r);
    r.request_id = ex->request_id;
    r.error = error ? error : ex->error;
    r.action = ex->blocked ? "block" : "allow";
    r.rule = ex->verdict_set ? ex->verdict.rule : NULL;
    char cats[512];
    if (ex->verdict_set && ex->verdict.cats.n && policy_catdb(c->policy)) {
        size_t off = 0;
        cats[0] = '\0';
        for (uint16_t i = 0; i < ex->verdict.cats.n; i++) {
            const char *name = catdb_category_name(policy_catdb(c->policy), ex->verdict.cats.id[i]);
            int n = snprintf(cats + off, sizeof cats - off, "%s%s", i ? "," : "", name ? name : "?");
            if (n < 0 || (size_t)n >= sizeof cats - off)
                break;
            off += (size_t)n;
        }
        r.categories = cats;
    } else if (ex->verdict_set) {
        r.categories = "";   /* decided, in no category: an empty list */
    }
    access_log_write(c->w->sh->alog, &r);
    ex->logged = true;
    struct proxy_metrics *m = &c->w->sh->m;
    atomic_fetch_add(&m->requests, 1);
    if (ex->blocked)
        atomic_fetch_add(&m->blocked, 1);
    if (ex->status == 502 || ex->status == 504)
        atomic_fetch_add(&m->upstream_errors, 1);
    conn_event(c, EV_REQUEST, ex->url, ex->blocked ? "block" : "allow", r.rule, ex->status);
}

/* ---- pages --------------------------------------------------------------------- */

void fwd_send_page(struct conn *c, int status, const char *title, const char *detail,
                   bool close_after)
{
    struct exchange *ex = c->ex;
    if (ex && ex->resp_head_sent) {   /* too late for a page: cut the response */
        if (!ex->logged)
            log_exchange(c, detail);
        conn_close(c);
        return;
    }
    if (ex && !ex->req_body_done)
        close_after = true;   /* cannot find the next request after an unread body */
    struct buf b;
    buf_init(&b, 64 * 1024);
    const char *host = ex ? ex->host : c->target_host;
    if (page_render(&b, status, title, detail, host, ex ? ex->request_id : c->id, close_after) == 0) {
        pstream_write(c->client, b.p, b.len);
        if (ex)
            ex->resp_bytes += b.len;
    }
    buf_free(&b);
    if (ex) {
        ex->status = status;
        if (!ex->logged)
            log_exchange(c, detail);
    }
    if (c->up && (ex == NULL || ex->sent_to_upstream)) {
        struct pstream *u = c->up;   /* mid-exchange upstream cannot be reused */
        c->up = NULL;
        pstream_close(u);
    }
    if (close_after || !c->client) {
        conn_close(c);
        return;
    }
    expool_give(c->w, c->ex);
    c->ex = NULL;
    conn_start_head(c);
}

/* ---- starting an exchange ---------------------------------------------------- */

static void serve_local(struct conn *c, const char *type, struct buf *body);

static void serve_pac(struct conn *c)
{
    struct buf body;
    buf_init(&body, 8192);
    proxy_pac_render(&body, c->w->sh->cfg->listen);
    serve_local(c, "application/x-ns-proxy-autoconfig", &body);
    buf_free(&body);
}

static void serve_local(struct conn *c, const char *type, struct buf *body)
{
    struct buf out;
    buf_init(&out, body->len + 1024);
    buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-cache\r\n\r\n", type, body->len);
    buf_append(&out, body->p, body->len);
    pstream_write(c->client, out.p, out.len);
    c->ex->status = 200;
    c->ex->resp_bytes = out.len;
    log_exchange(c, NULL);
    buf_free(&out);
    bool keep = c->ex->req.keep_alive;
    expool_give(c->w, c->ex);
    c->ex = NULL;
    if (keep)
        conn_start_head(c);
    else
        conn_close(c);
}

/* Prometheus metrics, for loopback clients only. */
static void serve_metrics(struct conn *c)
{
    if (strncmp(c->client_addr, "127.", 4) != 0 && strncmp(c->client_addr, "[::1]", 5) != 0) {
        fwd_send_page(c, 403, "Forbidden", "Metrics are served to this machine only.", true);
        return;
    }
    struct buf body;
    buf_init(&body, 64 * 1024);
    metrics_render(c->w->sh, &body);
    serve_local(c, "text/plain; version=0.0.4", &body);
    buf_free(&body);
}

/* Removes a field from the request so an enforced value is the only one. */
static void drop_header(struct http_request *rq, const char *name)
{
    size_t o = 0;
    for (size_t i = 0; i < rq->nheaders; i++)
        if (!sv_ieq_cstr(rq->headers[i].name, name))
            rq->headers[o++] = rq->headers[i];
    rq->nheaders = o;
}

static void send_head(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct buf *b = expool_head_buf(c->w, c->w->sh->cfg->limits.max_head + 4096);
    if (ex->drop_header)
        drop_header(&ex->req, ex->drop_header);
    if (http_write_request_head(b, &ex->req, ex->extra_headers[0] ? ex->extra_headers : NULL) < 0) {
        fwd_send_page(c, 431, "Request Header Fields Too Large", "The request head is too large to forward.", true);
        return;
    }
    int rc = pstream_write(c->up, b->p, b->len);
    if (rc < 0) {
        fwd_send_page(c, 502, "Bad Gateway", "The connection to the origin failed while sending the request.", true);
        return;
    }
    ex->sent_to_upstream = true;
    ex->up_read_mark = c->up->bytes_read;
    c->up_idle = false;
    conn_set_timer(c, c->w->sh->cfg->limits.response_timeout_ms);
    pstream_resume(c->up);
    if (c->dead)
        return;
    pump_request(c);
    if (!c->dead && c->ex && c->up && c->up->in.len)
        pump_response(c);
}

static void on_upstream_ready(struct conn *c, int status, const char *why)
{
    if (!c->ex)
        return;
    if (status < 0) {
        int code = status == UV_ETIMEDOUT ? 504 : 502;
        fwd_send_page(c, code, code == 504 ? "Gateway Timeout" : "Bad Gateway", why, true);
        return;
    }
    c->state = CS_EXCHANGE;
    if (c->kind == CK_DECODE) {
        char reason[160];
        if (tls_upstream_verify_result(c->up->ssl, reason, sizeof reason) != 0) {
            c->verify_failed = true;
            util_strlcpy(c->verify, reason, sizeof c->verify);
            fwd_send_page(c, 502, "Certificate problem", reason, true);
            return;
        }
    }
    send_head(c);
}

/* Fills method, host, port and URL; returns false after answering. */
/* ex->url from the scheme, ex->host, ex->port (left out when it is the
 * scheme's default) and at most 1,700 bytes of the path. */
static void make_url(struct exchange *ex, const char *scheme, unsigned default_port, struct sv path)
{
    struct fbuf u = fbuf_make(ex->url, sizeof ex->url);
    fbuf_puts(&u, scheme);
    fbuf_puts(&u, ex->host);
    if (ex->port != default_port) {
        fbuf_put(&u, ":", 1);
        fbuf_u64(&u, ex->port);
    }
    /* A NUL in the path (the parser refuses them) would end the URL there,
     * as the %s this replaces did. */
    const char *nul = memchr(path.p, '\0', path.n);
    fbuf_put(&u, path.p, UTIL_MIN(nul ? (size_t)(nul - path.p) : path.n, (size_t)1700));
    fbuf_cstr(&u);
}

static bool describe(struct conn *c, struct exchange *ex)
{
    struct http_request *rq = &ex->req;
    sv_copy(ex->method, sizeof ex->method, rq->method);
    if (c->kind == CK_DECODE) {
        if (rq->host.n)
            sv_copy(ex->host, sizeof ex->host, rq->host);
        else
            util_strlcpy(ex->host, c->target_host, sizeof ex->host);
        util_lower(ex->host);
        ex->port = c->target_port;
        make_url(ex, "https://", 443, rq->path);
        return true;
    }
    if (c->transparent && rq->form == HTTP_FORM_ORIGIN) {
        /* Redirected plain HTTP: named by its Host header, sent to the
         * address the client chose. */
        if (rq->host.n)
            sv_copy(ex->host, sizeof ex->host, rq->host);
        else
            util_strlcpy(ex->host, c->orig_ip, sizeof ex->host);
        util_lower(ex->host);
        ex->port = c->target_port;
        make_url(ex, "http://", 80, rq->path);
        return true;
    }
    if (rq->form == HTTP_FORM_ORIGIN) {
        if (sv_eq(rq->path, SV("/proxy.pac")) || sv_eq(rq->path, SV("/wpad.dat"))) {
            serve_pac(c);
            return false;
        }
        if (sv_eq(rq->path, SV("/metrics"))) {
            serve_metrics(c);
            return false;
        }
        fwd_send_page(c, 400, "Bad Request",
                      "This is the shoji proxy: send requests in absolute form "
                      "(configure it as an HTTP proxy), or fetch /proxy.pac.", true);
        return false;
    }
    if (rq->form != HTTP_FORM_ABSOLUTE || !sv_ieq_cstr(rq->scheme, "http")) {
        fwd_send_page(c, 400, "Bad Request",
                      "Only http:// URLs can be proxied this way; use CONNECT for https.", true);
        return false;
    }
    sv_copy(ex->host, sizeof ex->host, rq->host);
    util_lower(ex->host);
    ex->port = rq->port ? rq->port : 80;
    sv_copy(ex->url, sizeof ex->url, rq->target);
    return true;
}

/* Rewrites `path` so that query parameter `name` has `value`: earlier values
 * of it are removed, the enforced one appended. */
static void set_query_param(char *path, size_t cap, const char *name, const char *value)
{
    char out[2048];
    size_t nl = strlen(name), o = 0;
    char *q = strchr(path, '?');
    if (q) {
        o = (size_t)(q - path);
        memcpy(out, path, o);
        char *p = q + 1;
        while (*p) {
            char *amp = strchr(p, '&');
            size_t n = amp ? (size_t)(amp - p) : strlen(p);
            bool same = n >= nl && strncasecmp(p, name, nl) == 0 && (n == nl || p[nl] == '=');
            if (!same && n && o + n + 2 < sizeof out) {
                char sep = o == (size_t)(q - path) ? '?' : '&';
                out[o++] = sep;
                memcpy(out + o, p, n);
                o += n;
            }
            p += n + (amp ? 1 : 0);
        }
    } else {
        o = strlen(path);
        if (o >= sizeof out)
            return;
        memcpy(out, path, o);
    }
    out[o] = '\0';
    if (o + strlen(name) + strlen(value) + 3 > cap)
        return;   /* no room to enforce: leave the path as it was */
    snprintf(path, cap, "%.*s%c%s=%s", (int)o, out, strchr(out, '?') ? '&' : '?', name, value);
}

/* Safe search on decoded traffic: Google safe=active, Bing adlt=strict,
 * DuckDuckGo kp=1 (query parameters), YouTube the YouTube-Restrict header. */
static void safe_search(struct exchange *ex)
{
    enum policy_engine e = policy_search_engine(ex->host);
    if (e == POLICY_ENGINE_YOUTUBE) {
        util_strlcpy(ex->extra_headers, "YouTube-Restrict: Strict\r\n", sizeof ex->extra_headers);
        ex->drop_header = "youtube-restrict";
        return;
    }
    const char *name = e == POLICY_ENGINE_GOOGLE ? "safe" : e == POLICY_ENGINE_BING ? "adlt"
                     : e == POLICY_ENGINE_DUCKDUCKGO ? "kp" : NULL;
    const char *value = e == POLICY_ENGINE_GOOGLE ? "active" : e == POLICY_ENGINE_BING ? "strict" : "1";
    if (!name || ex->req.path.n >= sizeof ex->path_rewrite - 32)
        return;
    sv_copy(ex->path_rewrite, sizeof ex->path_rewrite, ex->req.path);
    set_query_param(ex->path_rewrite, sizeof ex->path_rewrite, name, value);
    ex->req.path = sv_make(ex->path_rewrite, strlen(ex->path_rewrite));
}

/* REQUEST phase of the policy; returns false after answering with a block. */
static bool decide_request(struct conn *c, struct exchange *ex)
{
    struct policy_facts f;
    conn_fill_facts(c, &f);
    char path[2048];
    sv_copy(path, sizeof path, ex->req.path);
    f.phase = POLICY_PHASE_REQUEST;
    f.host = ex->host;
    f.port = ex->port;
    f.method = ex->method;
    f.path = path[0] ? path : "/";
    f.upload = ex->req.body != HTTP_BODY_NONE;
    f.tls = c->kind == CK_DECODE;
    policy_decide(c->policy, &f, &ex->verdict);
    ex->verdict_set = true;
    if (ex->verdict.action != POLICY_BLOCK) {
        if (ex->verdict.safe_search)
            safe_search(ex);
        return true;
    }
    ex->blocked = true;
    fwd_send_block(c, ex);
    return false;
}

/* Idle upstream connections are shared by what they connect to: the name
 * for proxy requests, the original address for redirected ones. */
static void pool_key(const struct conn *c, const struct exchange *ex, char *key, size_t cap)
{
    struct fbuf k = fbuf_make(key, cap);
    if (c->transparent) {
        fbuf_put(&k, "=", 1);
        fbuf_puts(&k, c->orig_ip);
    } else {
        fbuf_puts(&k, ex->host);
    }
    fbuf_put(&k, ":", 1);
    fbuf_u64(&k, ex->port);
    fbuf_cstr(&k);
}

void fwd_begin(struct conn *c)
{
    struct pstream *cl = c->client;
    struct exchange *ex = expool_take(c->w);
    struct http_limits lim = {
        .max_head = c->w->sh->cfg->limits.max_head,
        .max_line = c->w->sh->cfg->limits.max_line,
        .max_headers = c->w->sh->cfg->limits.max_headers,
    };
    int r = ex ? http_parse_request(cl->in.p, cl->in.len, &lim, &ex->req) : -1;
    if (r <= 0 || expool_head_room(ex, (size_t)r) < 0) {
        expool_give(c->w, ex);
        conn_close(c);
        return;
    }
    /* Keep the head in a buffer of its own: client->in moves on. */
    memcpy(ex->head_copy, cl->in.p, (size_t)r);
    http_request_rebase(&ex->req, cl->in.p, (size_t)r, ex->head_copy);
    buf_consume(&cl->in, (size_t)r);
    ex->head_len = (size_t)r;
    ex->t_start_us = util_mono_us();
    ex->t_start_ms = util_now_ms();
    ex->request_id = atomic_fetch_add(&c->w->sh->next_id, 1) + 1;
    ex->req_body_left = ex->req.content_length;
    ex->req_body_done = ex->req.body == HTTP_BODY_NONE;
    http_chunked_init(&ex->req_chunk);
    http_chunked_init(&ex->resp_chunk);
    c->ex = ex;
    c->state = CS_EXCHANGE;
    c->requests++;
    /* A request without a body leaves the client stream reading: what comes
     * next (a pipelined request, the client's EOF) waits in its buffer, and
     * the event loop is not asked to stop and restart watching the socket
     * for every request. A body waits until the origin is reached. */
    if (!ex->req_body_done)
        pstream_pause(cl);
    if (!describe(c, ex) || !decide_request(c, ex))
        return;
    if (c->kind == CK_DECODE && c->verify_failed) {
        const char *title = c->upstream_failed ? (c->upstream_status == 504 ? "Gateway Timeout" : "Bad Gateway")
                                               : "Certificate problem";
        fwd_send_page(c, c->upstream_status ? c->upstream_status : 502, title, c->verify, true);
        return;
    }
    to_upstream(c);
}

/* Sends the head on the connection's upstream, a pooled one, or a new one. */
static void to_upstream(struct conn *c)
{
    struct exchange *ex = c->ex;
    if (c->kind == CK_DECODE) {
        if (c->up && !c->up->eof && !c->up->closing) {
            ex->reused_upstream = c->up_idle;   /* it served a request before */
            send_head(c);
            return;
        }
        if (!c->up && conn_take_upstream_for_request(c)) {
            ex->reused_upstream = true;
            send_head(c);
            return;
        }
        up_connect(c, conn_connect_host(c), c->target_port, true, on_upstream_ready);
        return;
    }
    char key[300];
    pool_key(c, ex, key, sizeof key);
    struct pstream *s = up_pool_take(c->w, key);
    if (s) {
        pstream_attach(s, c);
        c->up = s;
        c->refs++;
        ex->reused_upstream = true;
        sockaddr_fmt_peer(s, c->dst_addr, sizeof c->dst_addr);
        send_head(c);
        return;
    }
    up_connect(c, c->transparent ? c->orig_ip : ex->host, ex->port, false, on_upstream_ready);
}

/* ---- request body ------------------------------------------------------------ */

static int write_up(struct conn *c, const char *p, size_t n)
{
    c->ex->req_bytes += n;
    return pstream_write(c->up, p, n);
}

static int chunk_out(struct pstream *to, const char *p, size_t n)
{
    char hdr[24];
    int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
    int rc = pstream_write(to, hdr, (size_t)hl);
    if (rc == 0)
        rc = pstream_write(to, p, n);
    if (rc == 0)
        rc = pstream_write(to, "\r\n", 2);
    return rc;
}

/* Bytes after a complete request wait in the client's buffer; past a bound
 * the client stream stops reading until the exchange is over. */
static void hold_pipelined(struct pstream *cl)
{
    if (cl->in.len >= FWD_PIPELINE_MAX)
        pstream_pause(cl);
}

static void pump_request(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct pstream *cl = c->client;
    if (!ex->sent_to_upstream || !c->up)
        return;
    while (!ex->req_body_done && cl->in.len) {
        if (ex->req.body == HTTP_BODY_LENGTH) {
            size_t n = (size_t)UTIL_MIN((uint64_t)cl->in.len, ex->req_body_left);
            if (write_up(c, cl->in.p, n) < 0)
                break;
            buf_consume(&cl->in, n);
            ex->req_body_left -= n;
            ex->req_body_done = ex->req_body_left == 0;
            continue;
        }
        size_t used = 0;
        struct sv data = { 0 };
        int r = http_chunked_step(&ex->req_chunk, cl->in.p, cl->in.len, &used, &data);
        if (r == HTTP_ERROR) {
            fwd_send_page(c, 400, "Bad Request", ex->req_chunk.error_reason ? ex->req_chunk.error_reason
                                                                            : "malformed chunked body", true);
            return;
        }
        if (r == HTTP_CHUNK_DATA) {
            ex->req_bytes += data.n;
            chunk_out(c->up, data.p, data.n);
        } else if (r == HTTP_CHUNK_DONE) {
            pstream_write(c->up, "0\r\n\r\n", 5);
            ex->req_body_done = true;
        }
        buf_consume(&cl->in, used);
    }
    if (ex->req_body_done)
        hold_pipelined(cl);
    else if (c->up->pending >= PSTREAM_HIGH_WATER)
        pstream_pause(cl);
    else
        pstream_keep_reading(cl);
}

void fwd_on_client_data(struct conn *c)
{
    if (c->ex && c->ex->req_body_done) {
        hold_pipelined(c->client);   /* the next request: read once this one is done */
        return;
    }
    if (!c->ex || !c->ex->sent_to_upstream || !c->up) {
        pstream_pause(c->client);   /* wait until the origin is reached */
        return;
    }
    pump_request(c);
}

/* ---- response ------------------------------------------------------------------ */

/* NTLM and Negotiate authenticate the connection, not the request: any
 * `field` of the message offering or using them. */
static bool auth_on_connection(const struct http_header *h, size_t n, const char *field)
{
    for (size_t i = 0; i < n; i++) {
        if (!sv_ieq_cstr(h[i].name, field))
            continue;
        struct sv v = h[i].value;
        if ((v.n >= 4 && strncasecmp(v.p, "NTLM", 4) == 0) ||
            (v.n >= 9 && strncasecmp(v.p, "Negotiate", 9) == 0))
            return true;
    }
    return false;
}

/* The request's own field (its head is kept in head_copy); the response's
 * WWW-Authenticate was looked at in response_head. */
static bool connection_auth(const struct exchange *ex)
{
    return auth_on_connection(ex->req.headers, ex->req.nheaders, "authorization");
}

static bool response_head(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct pstream *up = c->up;
    struct http_limits lim = {
        .max_head = c->w->sh->cfg->limits.max_head,
        .max_line = c->w->sh->cfg->limits.max_line,
        .max_headers = c->w->sh->cfg->limits.max_headers,
    };
    for (;;) {
        int r = http_parse_response(up->in.p, up->in.len, &lim, ex->req.method, &ex->resp);
        if (r == HTTP_NEED_MORE)
            return false;
        if (r < 0) {
            fwd_send_page(c, 502, "Bad Gateway", ex->resp.error_reason ? ex->resp.error_reason
                                                                      : "The origin sent a malformed response.", true);
            return false;
        }
        if (ex->resp.status == 101 && ex->req.upgrade) {
            ex->status = 101;
            pstream_write(c->client, up->in.p, (size_t)r);   /* switch to a tunnel */
            buf_consume(&up->in, (size_t)r);
            ex->resp_head_sent = true;
            log_exchange(c, NULL);
            expool_give(c->w, c->ex);
            c->ex = NULL;
            c->kind = CK_TUNNEL;
            c->tunnel_mode = "upgrade";
            c->state = CS_TUNNEL;
            conn_set_timer(c, c->w->sh->cfg->limits.tunnel_idle_ms);
            pstream_resume(c->client);
            if (!c->dead && c->client && c->client->in.len)
                conn_on_data(c, c->client);   /* sent after the request, before the 101 */
            if (!c->dead && c->up)
                conn_on_data(c, c->up);
            return false;
        }
        if (ex->resp.status < 200) {   /* interim: pass on, wait for the final one */
            if (ex->resp.status != 101)
                pstream_write(c->client, up->in.p, (size_t)r);
            buf_consume(&up->in, (size_t)r);
            continue;
        }
        /* Read the head's fields now: they point into up->in, which the
         * body moves over and which goes back to the pool when idle. */
        if (c->kind == CK_DECODE && auth_on_connection(ex->resp.headers, ex->resp.nheaders, "www-authenticate"))
            c->up_pinned = true;
        ex->client_keep_alive = ex->req.keep_alive && ex->resp.body != HTTP_BODY_UNTIL_CLOSE &&
                                !c->w->stopping && !ex->client_eof;
        struct buf *b = expool_head_buf(c->w, lim.max_head + 4096);
        int rc = http_write_response_head(b, &ex->resp, ex->client_keep_alive, NULL);
        if (rc == 0)
            rc = pstream_write(c->client, b->p, b->len);
        ex->resp_bytes += b->len;
        buf_consume(&up->in, (size_t)r);
        ex->resp.nheaders = 0;   /* its views into up->in end here */
        ex->resp.reason = (struct sv){ 0 };
        if (rc < 0) {
            conn_close(c);
            return false;
        }
        ex->status = ex->resp.status;
        ex->resp_head_sent = true;
        ex->resp_body_left = ex->resp.content_length;
        ex->resp_done = ex->resp.body == HTTP_BODY_NONE ||
                        (ex->resp.body == HTTP_BODY_LENGTH && ex->resp_body_left == 0);
        conn_set_timer(c, c->w->sh->cfg->limits.transfer_timeout_ms);
        return true;
    }
}

/* Passes on what the origin sent; true when the response is complete and
 * finish() is due (the caller decides when: see pump_response). */
static bool pump_response_inner(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct pstream *up = c->up;
    if (!ex->resp_head_sent && !response_head(c))
        return false;
    while (!ex->resp_done && up->in.len) {
        if (ex->resp.body == HTTP_BODY_LENGTH || ex->resp.body == HTTP_BODY_UNTIL_CLOSE) {
            size_t n = up->in.len;
            if (ex->resp.body == HTTP_BODY_LENGTH)
                n = (size_t)UTIL_MIN((uint64_t)n, ex->resp_body_left);
            if (pstream_write(c->client, up->in.p, n) < 0) {
                conn_close(c);
                return false;
            }
            ex->resp_bytes += n;
            buf_consume(&up->in, n);
            if (ex->resp.body == HTTP_BODY_LENGTH) {
                ex->resp_body_left -= n;
                ex->resp_done = ex->resp_body_left == 0;
            }
            continue;
        }
        size_t used = 0;
        struct sv data = { 0 };
        int r = http_chunked_step(&ex->resp_chunk, up->in.p, up->in.len, &used, &data);
        if (r == HTTP_ERROR) {
            ex->error = "the origin sent a malformed chunked body";
            log_exchange(c, ex->error);
            conn_close(c);
            return false;
        }
        if (r == HTTP_CHUNK_DATA) {
            ex->resp_bytes += data.n;
            chunk_out(c->client, data.p, data.n);
        } else if (r == HTTP_CHUNK_DONE) {
            pstream_write(c->client, "0\r\n\r\n", 5);
            ex->resp_done = true;
        }
        buf_consume(&up->in, used);
    }
    if (ex->resp_done)
        return true;
    conn_set_timer(c, c->w->sh->cfg->limits.transfer_timeout_ms);
    if (c->client->pending >= PSTREAM_HIGH_WATER)
        pstream_pause(up);
    return false;
}

/* What one read of the origin produced goes to the client as one write: a
 * small response's head and body share a TLS record and a syscall.
 * A complete response that keeps the connection leaves before finish()'s
 * bookkeeping (the access-log line, the origin connection parked, the next
 * head armed: ~7,000 instructions, more with cold caches at desktop rates),
 * which is then off the client's wait. One that ends the connection stays
 * corked through finish(): the close sends it with the close_notify in one
 * write. */
static void pump_response(struct conn *c)
{
    struct pstream *cl = c->client;
    pstream_cork(cl);
    bool complete = pump_response_inner(c);
    bool keeps = complete && c->ex->client_keep_alive && c->ex->req_body_done;
    if (complete && !keeps)
        finish(c);
    pstream_uncork(cl);   /* cl stays valid until its close callback */
    if (keeps)
        finish(c);
}

void fwd_on_upstream_data(struct conn *c)
{
    if (c->ex)
        pump_response(c);
}

static void finish(struct conn *c)
{
    struct exchange *ex = c->ex;
    log_exchange(c, NULL);
    bool reusable = ex->resp.keep_alive && ex->req_body_done && ex->resp.body != HTTP_BODY_UNTIL_CLOSE &&
                    c->up && c->up->in.len == 0 && !c->up->eof;
    if (c->up && c->kind == CK_HTTP) {
        struct pstream *u = c->up;
        c->up = NULL;
        if (reusable) {
            pstream_pause(u);
            pstream_detach(u);
            c->refs--;
            char key[300];
            pool_key(c, ex, key, sizeof key);
            up_pool_put(c->w, u, key);
        } else {
            pstream_close(u);
        }
    } else if (c->up && !reusable) {
        struct pstream *u = c->up;
        c->up = NULL;
        pstream_close(u);
    } else if (c->up) {
        pstream_in_release(c->up);    /* idle between requests: hold no buffer */
        pstream_resume(c->up);   /* keep an eye on it between requests */
        c->up_idle = true;
        if (connection_auth(ex))
            c->up_pinned = true;
    }
    bool keep = ex->client_keep_alive && ex->req_body_done;
    if (keep && c->up_idle)
        conn_park_upstream(c);
    expool_give(c->w, ex);
    c->ex = NULL;
    if (!keep) {
        conn_close(c);
        return;
    }
    conn_start_head(c);
}

/* ---- ends and timeouts ---------------------------------------------------------- */

/* An idle connection the origin closed just as a request went out on it is
 * not a failure of the request: a request that is safe to repeat (RFC 9110
 * 9.2.2: no body, a safe method) goes again, once, on a new connection. */
static bool retry_on_new_connection(struct conn *c)
{
    struct exchange *ex = c->ex;
    if (ex->retried || !ex->reused_upstream || !ex->sent_to_upstream || !c->up ||
        c->up->bytes_read != ex->up_read_mark || ex->req.body != HTTP_BODY_NONE ||
        ex->resp_bytes || c->w->stopping)
        return false;
    if (strcmp(ex->method, "GET") != 0 && strcmp(ex->method, "HEAD") != 0 &&
        strcmp(ex->method, "OPTIONS") != 0)
        return false;
    struct pstream *u = c->up;
    c->up = NULL;
    c->up_idle = false;
    pstream_close(u);
    ex->retried = true;
    ex->reused_upstream = false;
    ex->sent_to_upstream = false;
    atomic_fetch_add(&c->w->sh->m.upstream_retried, 1);
    to_upstream(c);
    return true;
}

void fwd_on_upstream_eof(struct conn *c)
{
    struct exchange *ex = c->ex;
    if (!ex) {
        struct pstream *u = c->up;
        c->up = NULL;
        if (u)
            pstream_close(u);
        return;
    }
    if (ex->resp_head_sent && ex->resp.body == HTTP_BODY_UNTIL_CLOSE) {
        if (c->up && c->up->in.len)
            pump_response(c);
        if (c->ex) {
            ex->resp_done = true;
            finish(c);
        }
        return;
    }
    if (!ex->resp_head_sent && retry_on_new_connection(c))
        return;
    if (!ex->resp_head_sent) {
        fwd_send_page(c, 502, "Bad Gateway", "The origin closed the connection without answering.", true);
        return;
    }
    ex->error = "the origin closed the connection in the middle of the response";
    log_exchange(c, ex->error);
    conn_close(c);   /* the client sees a truncated response, not a hang */
}

void fwd_on_client_eof(struct conn *c)
{
    struct exchange *ex = c->ex;
    if (!ex || !ex->req_body_done) {
        if (ex && !ex->logged) {
            ex->status = ex->status ? ex->status : 499;
            log_exchange(c, "the client closed the connection before the request was complete");
        }
        conn_close(c);
        return;
    }
    ex->client_eof = true;   /* half-closed: still deliver the response */
}

void fwd_on_drain(struct conn *c, struct pstream *s)
{
    if (!c->ex)
        return;
    if (s == c->client && c->up && !c->up->eof)
        pstream_resume(c->up);
    else if (s == c->up && !c->ex->req_body_done)
        pstream_resume(c->client);
}

void fwd_timeout(struct conn *c)
{
    struct exchange *ex = c->ex;
    if (ex && !ex->resp_head_sent) {
        fwd_send_page(c, 504, "Gateway Timeout", "The origin did not answer in time.", true);
        return;
    }
    if (ex) {
        ex->error = "the transfer stalled";
        log_exchange(c, ex->error);
    }
    conn_close(c);
}

void fwd_block_done(struct conn *c, bool close_after)
{
    log_exchange(c, NULL);
    if (close_after) {
        conn_close(c);
        return;
    }
    expool_give(c->w, c->ex);
    c->ex = NULL;
    conn_start_head(c);
}
