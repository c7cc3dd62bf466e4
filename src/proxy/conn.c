/* proxy/conn: the client connection's state machine — accept, read a request
 * head, CONNECT (peek the first bytes -> decide -> tunnel or decode), the
 * TLS handshakes of a decoded connection, raw tunnels, timeouts, and the
 * orderly end of it all. HTTP exchanges themselves live in forward.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include "proxy/internal.h"
#include "proxy/splice.h"
#include "tls/upstream.h"
#include "util/fbuf.h"
#include "util/log.h"

static void on_timer(uv_timer_t *t);
static void base_record(struct conn *c, struct access_record *r);
static void act_on_connect_verdict(struct conn *c, const struct policy_verdict *vp);
static void check_sni_claim(struct conn *c);
static const char *learned_fact(struct conn *c, char *rule, size_t rulelen);
static void start_tunnel(struct conn *c);
static void peek(struct conn *c);

/* ---- lifetime ------------------------------------------------------------ */

static void on_timer_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->refs--;
    conn_maybe_free(c);
}

static void close_timer_if_done(struct conn *c)
{
    if (c->dead && !c->client && !c->up && !c->timer_closing) {
        c->timer_closing = true;
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    }
}

void conn_maybe_free(struct conn *c)
{
    if (!c->dead || c->refs > 0)
        return;
    struct worker *w = c->w;
    if (c->policy)
        policy_unref(c->policy);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    w->nconns--;
    atomic_fetch_sub(&w->sh->conns, 1);
    if (w->stopping && w->nconns == 0)
        uv_stop(&w->loop);
}

void conn_close(struct conn *c)
{
    splice_tunnel_stop(c);
    if (!c->dead) {
        c->dead = true;
        if (c->evented)
            conn_event(c, EV_CLOSE, NULL, NULL, NULL, 0);
        if (c->kind == CK_TUNNEL && c->state == CS_TUNNEL)
            conn_log_tunnel(c, c->tunnel_mode ? c->tunnel_mode : "tunnel", NULL);
        c->state = CS_CLOSING;
        ident_conn_closed(c);
        early_conn_closed(c);
        if (c->ex) {
            expool_give(c->w, c->ex);
            c->ex = NULL;
        }
    }
    conn_park_upstream(c);
    if (c->up)
        pstream_close(c->up);
    if (c->client) {
        pstream_shutdown_close(c->client);
        if (!c->timer_closing)
            uv_timer_start(&c->timer, on_timer, 2000, 0);   /* bounds the linger */
    }
    close_timer_if_done(c);
    conn_maybe_free(c);
}

void conn_on_stream_closed(struct conn *c, struct pstream *s)
{
    if (c->client == s)
        c->client = NULL;
    if (c->up == s)
        c->up = NULL;
    c->refs--;
    if (!c->dead && c->client == NULL)
        conn_close(c);        /* the client went away: nothing left to do */
    close_timer_if_done(c);
    conn_maybe_free(c);
}

void conn_set_timer(struct conn *c, unsigned ms)
{
    if (!c->dead && !c->timer_closing)
        uv_timer_start(&c->timer, on_timer, ms ? ms : 1, 0);
}

/* ---- accept --------------------------------------------------------------- */

void sockaddr_fmt(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        snprintf(out, cap, "?");
    }
}

void conn_record_app(const struct conn *c, struct access_record *r)
{
    r->uid = -1;
    if (!c->have_proc)
        return;
    r->app = c->proc.comm;
    r->app_path = c->proc.exe[0] ? c->proc.exe : NULL;
    r->pid = c->proc.pid;
    r->uid = c->proc.uid;
}

static const char overload_response[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    "Content-Length: 46\r\n\r\nshoji: too many connections, try again later\r\n";

/* Transparent: the destination the client asked for, before nftables
 * redirected it here. False for a direct connection to our port (which
 * would loop) or when the kernel has no record. */
static bool original_dst(struct conn *c)
{
    int fd;
    if (uv_fileno((uv_handle_t *)&c->client->tcp, &fd) != 0)
        return false;
    socklen_t len = sizeof c->orig_dst;
    memset(&c->orig_dst, 0, sizeof c->orig_dst);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &c->orig_dst, &len) != 0) {
        len = sizeof c->orig_dst;
        if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &c->orig_dst, &len) != 0)
            return false;
    }
    struct sockaddr_storage self;
    int slen = sizeof self;
    if (uv_tcp_getsockname(&c->client->tcp, (struct sockaddr *)&self, &slen) == 0 &&
        sockaddr_same(&self, &c->orig_dst))
        return false;
    char ipport[80];
    sockaddr_fmt((struct sockaddr *)&c->orig_dst, ipport, sizeof ipport);
    char *colon = strrchr(ipport, ':');
    if (!colon)
        return false;
    *colon = '\0';
    const char *ip = ipport[0] == '[' ? ipport + 1 : ipport;
    size_t n = strlen(ip);
    util_strlcpy(c->orig_ip, ip, sizeof c->orig_ip);
    if (n && c->orig_ip[n - 1] == ']')
        c->orig_ip[n - 1] = '\0';
    util_strlcpy(c->target_host, c->orig_ip, sizeof c->target_host);
    c->target_port = (uint16_t)atoi(colon + 1);
    return true;
}

const char *conn_connect_host(const struct conn *c)
{
    return c->transparent ? c->orig_ip : c->target_host;
}

void conn_accept(struct worker *w, uv_stream_t *listener, bool transparent)
{
    struct proxy_shared *sh = w->sh;
    struct conn *c = calloc(1, sizeof *c);
    struct pstream *s = c ? pstream_new(w, c, SIDE_CLIENT) : NULL;
    if (!s || uv_accept(listener, (uv_stream_t *)&s->tcp) != 0) {
        free(c);
        if (s) {
            s->conn = NULL;
            pstream_close(s);
        }
        return;
    }
    c->w = w;
    c->client = s;
    c->refs = 2;   /* client stream + timer */
    c->id = atomic_fetch_add(&sh->next_id, 1) + 1;
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    w->nconns++;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    unsigned n = atomic_fetch_add(&sh->conns, 1) + 1;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0)
        sockaddr_fmt((struct sockaddr *)&ss, c->client_addr, sizeof c->client_addr);
    /* TCP_NODELAY: inherited from the listener (worker.c open_listener) */
    c->transparent = transparent;
    c->client_on_loopback_listener = worker_listener_loopback(w, listener);
    if (!transparent && !proxy_client_allowed(sh, &ss)) {
        log_warn("refused a client from %s: not in --allow-clients", c->client_addr);
        conn_close(c);
        return;
    }
    if (transparent && !original_dst(c)) {
        log_warn("transparent listener: connection from %s has no original destination "
                 "(not redirected by `shoji intercept`?): closed", c->client_addr);
        conn_close(c);
        return;
    }
    if (n > sh->cfg->limits.max_connections || w->stopping) {
        if (!transparent)
            pstream_write(s, overload_response, sizeof overload_response - 1);
        atomic_fetch_add(&sh->m.overload_refusals, 1);
        log_warn("refused a connection from %s: %u connections open (limit %u)", c->client_addr,
                 n - 1, sh->cfg->limits.max_connections);
        conn_close(c);
        return;
    }
    ident_start(c, &ss);   /* who the client is: inline, or pending (proxy/ident.c) */
    atomic_fetch_add(&sh->m.connections, 1);
    c->evented = true;
    conn_event(c, EV_OPEN, NULL, NULL, NULL, 0);
    if (transparent) {
        c->policy = proxy_policy_get(sh);
        c->t_connect_us = util_mono_us();
        c->t_connect_ms = util_now_ms();
        c->state = CS_PEEK;
        conn_set_timer(c, sh->cfg->limits.peek_timeout_ms);
        pstream_start(s);
        return;
    }
    conn_start_head(c);
}

/* ---- reading request heads ------------------------------------------------ */

void conn_start_head(struct conn *c)
{
    c->state = CS_HEAD;
    c->head_scanned = 0;
    c->head_deadline_set = c->client->in.len > 0;   /* pipelined: the head has begun */
    conn_set_timer(c, c->client->in.len ? c->w->sh->cfg->limits.header_timeout_ms
                                        : c->w->sh->cfg->limits.idle_timeout_ms);
    if (c->client->in.len == 0)
        pstream_in_release(c->client);   /* idle keep-alive: hold no buffer */
    pstream_resume(c->client);
    if (!c->dead && c->state == CS_HEAD && c->client && c->client->in.len)
        conn_on_data(c, c->client);
}

/* The header timeout runs from the first byte of a head, and progress does
 * not extend it (a client trickling a byte at a time still gets its 408). */
static void head_deadline(struct conn *c)
{
    if (c->head_deadline_set)
        return;
    c->head_deadline_set = true;
    conn_set_timer(c, c->w->sh->cfg->limits.header_timeout_ms);
}

static bool valid_connect_host(const char *h)
{
    if (!*h)
        return false;
    for (const char *p = h; *p; p++)
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') && *p != '-' && *p != '.' &&
            *p != '_' && *p != ':')
            return false;
    return true;
}

static void reply_and_close(struct conn *c, int status, const char *title, const char *detail)
{
    struct buf b;
    buf_init(&b, 64 * 1024);
    if (page_render(&b, status, title, detail, c->target_host, c->id, true) == 0 && c->client)
        pstream_write(c->client, b.p, b.len);
    buf_free(&b);
    conn_close(c);
}

static void handle_connect(struct conn *c, struct http_request *req, size_t head_len)
{
    sv_copy(c->target_host, sizeof c->target_host, req->host);
    util_lower(c->target_host);
    c->target_port = req->port;
    c->t_connect_us = util_mono_us();
    c->t_connect_ms = util_now_ms();
    buf_consume(&c->client->in, head_len);
    if (!valid_connect_host(c->target_host) || c->target_port == 0) {
        reply_and_close(c, 400, "Bad Request", "The CONNECT target is not a valid host:port.");
        return;
    }
    if (c->kind == CK_DECODE) {
        reply_and_close(c, 400, "Bad Request", "CONNECT inside a decoded connection is not supported.");
        return;
    }
    struct policy_facts f;
    struct policy_verdict v;
    char lrule[300];
    conn_fill_facts(c, &f);
    f.phase = POLICY_PHASE_CONNECT;
    f.learned = learned_fact(c, lrule, sizeof lrule);
    policy_decide(c->policy, &f, &v);
    if (v.action == POLICY_BLOCK && !v.decode_to_block) {
        c->block_rule_logged = true;
        conn_log_decision(c, 403, "block", &v);
        reply_and_close(c, 403, "Forbidden", v.rule);
        return;
    }
    if (v.action == POLICY_BLOCK) {
        c->connect_block = v;   /* decodable: refused later unless it is TLS we decode */
        c->connect_blocked = true;
    }
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    if (pstream_write(c->client, ok, sizeof ok - 1) < 0) {
        conn_close(c);
        return;
    }
    if (v.action == POLICY_BYPASS) {
        c->tunnel_mode = "bypass";
        c->tunnel_rule_set = true;
        c->verdict = v;
        start_tunnel(c);
        return;
    }
    c->state = CS_PEEK;
    conn_set_timer(c, c->w->sh->cfg->limits.peek_timeout_ms);
    if (c->client->in.len)
        peek(c);
    else
        early_maybe_start(c, &v);
}

static void handle_head(struct conn *c)
{
    struct http_limits lim = {
        .max_head = c->w->sh->cfg->limits.max_head,
        .max_line = c->w->sh->cfg->limits.max_line,
        .max_headers = c->w->sh->cfg->limits.max_headers,
    };
    struct http_request req;
    struct pstream *s = c->client;
    /* The parser keeps no state: re-run it only when a line has ended since
     * the last try, so a client sending a byte at a time costs linear time. */
    if (c->head_scanned < s->in.len && s->in.len < lim.max_head &&
        !memchr(s->in.p + c->head_scanned, '\n', s->in.len - c->head_scanned)) {
        c->head_scanned = s->in.len;
        head_deadline(c);
        return;
    }
    c->head_scanned = s->in.len;
    int r = http_parse_request(s->in.p, s->in.len, &lim, &req);
    if (r == HTTP_NEED_MORE) {
        if (s->in.len >= lim.max_head) {
            reply_and_close(c, 431, "Request Header Fields Too Large", "The request head is too large.");
            return;
        }
        head_deadline(c);
        return;
    }
    if (r < 0) {
        log_debug("conn %llu: bad request from %s: %s", (unsigned long long)c->id, c->client_addr,
                  req.error_reason ? req.error_reason : "?");
        conn_log_error(c, req.error_status ? req.error_status : 400, req.error_reason);
        atomic_fetch_add(&c->w->sh->m.bad_requests, 1);
        reply_and_close(c, req.error_status ? req.error_status : 400, http_reason(req.error_status ? req.error_status : 400),
                        req.error_reason ? req.error_reason : "The request could not be parsed.");
        return;
    }
    if (c->policy == NULL)
        c->policy = proxy_policy_get(c->w->sh);
    if (req.form == HTTP_FORM_AUTHORITY) {
        handle_connect(c, &req, (size_t)r);
        return;
    }
    fwd_begin(c);
}

/* ---- CONNECT: peek, decide, tunnel or decode ------------------------------ */

/* A learned exclusion (automatic avoidance) for this application and the
 * SNI or CONNECT host, as a fact for decide(). */
static const char *learned_fact(struct conn *c, char *rule, size_t rulelen)
{
    struct learned *L = c->w->sh->learned;
    const struct policy_auto_avoid *aa = policy_auto_avoid(c->policy);
    if (!L || !aa || !aa->enabled)
        return NULL;
    enum learned_scope scope = aa->scope == POLICY_AVOID_HOST ? LEARNED_SCOPE_HOST : LEARNED_SCOPE_APP_HOST;
    const char *app = c->have_proc ? c->proc.comm : "";
    int64_t now = (int64_t)time(NULL);
    if (c->have_hello && c->hello.has_sni && !c->sni_rejected &&
        learned_match(L, app, c->hello.sni, now, scope, rule, rulelen))
        return rule;
    if (learned_match(L, app, c->target_host, now, scope, rule, rulelen))
        return rule;
    return NULL;
}

/* The local weekday and minute of the day (for time-of-day rules) at
 * `now`: one localtime_r per wall-clock minute and thread, not per
 * request. Exact: a local time's minute changes only on a UTC minute
 * boundary (zone offsets are whole minutes), and glibc itself reads the
 * zone once. */
static void local_minute(time_t now, int *wday, int *minute)
{
    static __thread time_t cached = -1;
    static __thread int c_wday, c_minute;
    if (now / 60 != cached) {
        struct tm tm;
        localtime_r(&now, &tm);
        cached = now / 60;
        c_wday = tm.tm_wday;
        c_minute = tm.tm_hour * 60 + tm.tm_min;
    }
    *wday = c_wday;
    *minute = c_minute;
}

void conn_fill_facts(struct conn *c, struct policy_facts *f)
{
    memset(f, 0, sizeof *f);
    f->app.uid = -1;
    if (c->have_proc) {
        f->app.name = c->proc.comm;
        f->app.exe = c->proc.exe_base;
        f->app.path = c->proc.exe;
        f->app.pid = c->proc.pid;
        f->app.uid = c->proc.uid;
    }
    f->host = c->target_host;
    f->port = c->target_port;
    f->sni = c->have_hello && c->hello.has_sni && !c->sni_rejected ? c->hello.sni : NULL;
    f->tls = c->have_hello;
    time_t now = time(NULL);
    f->now = (int64_t)now;
    local_minute(now, &f->local_wday, &f->local_minute);
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, c->target_host, &a4) == 1) {
        f->dst.family = AF_INET;
        memcpy(f->dst.a, &a4, 4);
    } else if (inet_pton(AF_INET6, c->target_host, &a6) == 1) {
        f->dst.family = AF_INET6;
        memcpy(f->dst.a, &a6, 16);
    }
}

static void on_tunnel_ready(struct conn *c, int status, const char *why)
{
    if (status < 0) {
        conn_log_tunnel(c, c->tunnel_mode ? c->tunnel_mode : "tunnel", why);
        c->kind = CK_HTTP;   /* already logged */
        conn_close(c);
        return;
    }
    c->kind = CK_TUNNEL;
    c->state = CS_TUNNEL;
    atomic_fetch_add(c->tunnel_mode && !strcmp(c->tunnel_mode, "bypass") ? &c->w->sh->m.bypassed
                                                                         : &c->w->sh->m.tunnels, 1);
    struct pstream *cl = c->client, *up = c->up;
    if (cl->in.len) {
        c->tunnel_in += cl->in.len;
        pstream_write(up, cl->in.p, cl->in.len);
        buf_reset(&cl->in);
    }
    conn_set_timer(c, c->w->sh->cfg->limits.tunnel_idle_ms);
    if (splice_tunnel_start(c))
        return;   /* zero-copy from here on (splice.c) */
    pstream_resume(cl);
    pstream_start(up);
}

static void start_tunnel(struct conn *c)
{
    if (c->early) {   /* every way into a tunnel closes the early connection first */
        early_then(c, start_tunnel);
        return;
    }
    pstream_pause(c->client);
    c->kind = CK_TUNNEL;
    up_connect(c, conn_connect_host(c), c->target_port, false, on_tunnel_ready);
}

static void start_client_tls(struct conn *c, const struct tls_names *names)
{
    struct proxy_shared *sh = c->w->sh;
    char err[UTIL_ERRLEN];
    X509 *leaf = tls_mint_leaf(sh->minter, names, err, sizeof err);
    if (!leaf) {
        log_error("cannot mint a certificate for %s: %s", c->target_host, err);
        conn_log_tunnel(c, "decode", "could not mint a certificate");
        conn_close(c);
        return;
    }
    struct pstream *cl = c->client;
    int rc = pstream_tls_server(cl, sh->srv_ctx, leaf, tls_minter_leaf_key(sh->minter));
    X509_free(leaf);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    c->kind = CK_DECODE;
    c->state = CS_CL_HANDSHAKE;
    atomic_fetch_add(&sh->m.decoded, 1);
    if (c->verify_failed)
        atomic_fetch_add(&sh->m.verify_failures, 1);
    conn_set_timer(c, sh->cfg->limits.handshake_timeout_ms);
    /* Replay the ClientHello (and anything after it) into the TLS engine. */
    size_t n = cl->in.len;
    char *copy = n ? malloc(n) : NULL;
    if (n && !copy) {
        conn_close(c);
        return;
    }
    if (n)
        memcpy(copy, cl->in.p, n);
    buf_reset(&cl->in);
    pstream_tls_feed(cl, copy, n);
    free(copy);
}

static void decode_on_cert(struct conn *c);

/* Every request of the connection gets the error page saying `why` (502;
 * 504 for a timeout), titled as an unreachable origin or, with
 * `unreachable` false, as a certificate problem. */
static void decode_failed(struct conn *c, int status, const char *why, bool unreachable)
{
    c->verify_failed = true;
    c->upstream_failed = c->upstream_failed || unreachable;
    c->upstream_status = status == UV_ETIMEDOUT ? 504 : 502;
    util_strlcpy(c->verify, why, sizeof c->verify);
}

void conn_on_decode_upstream(struct conn *c, int status, const char *why)
{
    struct tls_names names;
    if (status < 0) {
        /* The client still gets a certificate for the name it asked for, and
         * then an error page saying why, instead of a bare reset. */
        decode_failed(c, status, why ? why : "the origin could not be reached", true);
        if (c->up) {
            struct pstream *s = c->up;
            c->up = NULL;
            pstream_close(s);
        }
        tls_names_from_host(c->have_hello && c->hello.has_sni ? c->hello.sni : c->target_host, &names);
        start_client_tls(c, &names);
        return;
    }
    decode_on_cert(c);
}

/* The origin's certificate is in: verified, or (at the pause of
 * conn_on_peer_cert) with only its name checked so far. The certificate
 * phase of the policy, then the client's handshake with a leaf mirroring
 * it. */
static void decode_on_cert(struct conn *c)
{
    struct tls_names names;
    char reason[160];
    X509 *cert = tls_upstream_peer_cert(c->up->ssl);
    /* 1: at the pause, the name matches and the chain is verified later
     * (origin_verdict_late) */
    if (tls_upstream_verify_result(c->up->ssl, reason, sizeof reason) >= 0)
        util_strlcpy(c->verify, "ok", sizeof c->verify);
    else
        decode_failed(c, -EACCES, reason, false);
    if (cert) {
        X509_NAME *sn = X509_get_subject_name(cert);
        if (!sn || X509_NAME_get_text_by_NID(sn, NID_commonName, c->cert_name, sizeof c->cert_name) < 0)
            c->cert_name[0] = '\0';
    }
    if (cert)   /* read once: for the policy and for the leaf */
        tls_names_from_cert(cert, &names);
    if (cert && conn_cert_phase(c, &names))
        return;   /* a certificate-name exclusion: re-connected as a tunnel */
    if (!cert || c->verify_failed)
        tls_names_from_host(c->have_hello && c->hello.has_sni ? c->hello.sni : c->target_host, &names);
    start_client_tls(c, &names);
}

/* The origin's certificate arrived, the rest of its flight not yet
 * processed and only its name checked (tls/upstream.h,
 * tls_upstream_pause_at_cert): the leaf is minted and the client's
 * handshake started now, and the origin's chain, CertificateVerify and
 * Finished are checked while the client works on our flight. Nothing
 * reaches the origin before its handshake ends: the client's first request
 * waits for it (cl_waits_origin), and an origin that fails it then gets the
 * error page (origin_failed_late). An early
 * connection the client has not chosen yet, or any other waiter, just goes
 * on with the handshake. */
void conn_on_peer_cert(struct conn *c, struct pstream *s)
{
    if (c->dead || s != c->up || c->early || c->on_connected != conn_on_decode_upstream ||
        up_state(c) != CS_UP_HANDSHAKE)
        return;
    c->on_connected = NULL;
    c->up_hs_open = true;
    log_debug("conn %llu: the origin's certificate is in: answering the client while the origin's "
              "handshake goes on", (unsigned long long)c->id);
    decode_on_cert(c);
    if (c->up != s || s->closing)
        c->up_hs_open = false;   /* tunnelled on the certificate, or closed */
}

/* The origin's handshake ended after the client's began: its chain was
 * verified after the pause, and a failure there turns the connection to
 * the error page, as a failure found before the client's handshake does
 * (the leaf mirrors the certificate's names then, which include the host:
 * a certificate not naming it was caught at the pause). */
static void origin_verdict_late(struct conn *c)
{
    char reason[160];
    if (c->verify_failed || tls_upstream_verify_result(c->up->ssl, reason, sizeof reason) == 0)
        return;
    atomic_fetch_add(&c->w->sh->m.verify_failures, 1);
    decode_failed(c, -EACCES, reason, false);
}

/* The origin's handshake is over, one way or the other: a client that
 * finished its own first goes on to its request. */
static void origin_settled(struct conn *c)
{
    c->up_hs_open = false;
    if (c->cl_waits_origin) {
        c->cl_waits_origin = false;
        conn_start_head(c);
    }
}

/* The origin's handshake failed or timed out after the client's had begun:
 * the client's connection goes on to the error page, as when the origin
 * fails before (conn_on_decode_upstream). */
static void origin_failed_late(struct conn *c, int status, const char *why)
{
    if (!c->verify_failed)
        atomic_fetch_add(&c->w->sh->m.verify_failures, 1);
    decode_failed(c, status, why, true);
    if (c->up) {
        struct pstream *u = c->up;
        c->up = NULL;
        pstream_close(u);
    }
    origin_settled(c);
}

/* The address the upstream stream is connected to, as a policy fact. */
static void upstream_dst(struct conn *c, struct policy_addr *out)
{
    struct sockaddr_storage ss;
    memset(out, 0, sizeof *out);
    if (!c->up || pstream_peer(c->up, &ss) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        out->family = AF_INET;
        memcpy(out->a, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        out->family = AF_INET6;
        memcpy(out->a, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    }
}

/* CERT-phase decision on known certificate names and destination address.
 * Returns true when the connection was turned into a tunnel (a fresh raw
 * connection to which the buffered ClientHello is replayed). */
static bool cert_decide(struct conn *c, const char *const *names, size_t n,
                        const struct policy_addr *dst, bool remembered)
{
    struct policy_facts f;
    struct policy_verdict v;
    conn_fill_facts(c, &f);
    f.phase = POLICY_PHASE_CERT;
    f.cert_names = names;
    f.ncert_names = n;
    if (dst && dst->family)
        f.dst = *dst;
    policy_decide(c->policy, &f, &v);
    if (v.action != POLICY_TUNNEL && v.action != POLICY_BYPASS)
        return false;
    if (remembered) {
        size_t l = strlen(v.rule);
        snprintf(v.rule + l, sizeof v.rule - l, " (remembered from an earlier connection)");
    }
    conn_event(c, EV_VERDICT, NULL, policy_action_name(v.action), v.rule, 0);
    c->verdict = v;
    c->tunnel_rule_set = true;
    c->tunnel_mode = v.action == POLICY_BYPASS ? "bypass" : "tunnel";
    if (c->up) {
        struct pstream *s = c->up;
        c->up = NULL;
        pstream_close(s);
    }
    start_tunnel(c);
    return true;
}

/* CERT phase: the upstream certificate's names (and the address reached)
 * are known; remember them for the next connection, then decide. */
bool conn_cert_phase(struct conn *c, const struct tls_names *tn)
{
    const char *names[33];
    size_t n = 0;
    if (tn->cn[0])
        names[n++] = tn->cn;
    for (size_t i = 0; i < tn->n && n < 33; i++)
        names[n++] = tn->names[i];
    struct policy_addr dst;
    upstream_dst(c, &dst);
    certmemo_put(c->w->sh->certmemo, c->target_host, c->target_port, names, n, &dst,
                 (int64_t)time(NULL));
    if (!policy_has_cert_rules(c->policy))
        return false;
    return cert_decide(c, names, n, &dst, false);
}

/* Before probing the origin: what its certificate said last time may
 * already decide (certificate-name and IP exclusions). */
static bool memo_get(struct conn *c, struct certmemo_entry *e)
{
    return certmemo_get(c->w->sh->certmemo, c->target_host, c->target_port, (int64_t)time(NULL), e);
}

static bool remembered_cert_phase(struct conn *c)
{
    struct certmemo_entry e;
    if (!policy_has_cert_rules(c->policy) || !memo_get(c, &e))
        return false;
    const char *names[CERTMEMO_NAMES];
    for (size_t i = 0; i < e.n; i++)
        names[i] = e.names[i];
    return cert_decide(c, names, e.n, &e.dst, true);
}

bool conn_memo_known(struct conn *c)
{
    struct certmemo_entry e;
    return memo_get(c, &e);
}

/* A request line starts with a method token and a space. */
static bool looks_like_http(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && i < 24 && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    return i > 0 && i < n && p[i] == ' ';
}

static void peek(struct conn *c)
{
    struct pstream *cl = c->client;
    int sniff = tls_hello_sniff((const uint8_t *)cl->in.p, cl->in.len);
    if (sniff < 0)
        return;   /* need more bytes */
    if (sniff == 0) {
        if (c->transparent && looks_like_http(cl->in.p, cl->in.len)) {
            c->kind = CK_HTTP;   /* plain HTTP: filtered by its Host header */
            conn_start_head(c);
            return;
        }
        if (c->connect_blocked) {   /* a blocked host that is not TLS: no page possible */
            conn_log_decision(c, 403, "block", &c->connect_block);
            conn_close(c);
            return;
        }
        c->tunnel_mode = "tunnel";
        start_tunnel(c);   /* neither TLS nor HTTP: tunnelled untouched */
        return;
    }
    int r = tls_hello_parse((const uint8_t *)cl->in.p, cl->in.len, &c->hello);
    if (r == TLS_HELLO_NEED_MORE) {
        if (cl->in.len > 20000) {
            conn_log_tunnel(c, "decode", "ClientHello too large");
            conn_close(c);
        }
        return;
    }
    if (r != TLS_HELLO_DONE) {
        if (c->connect_blocked) {
            conn_log_decision(c, 403, "block", &c->connect_block);
            conn_close(c);
            return;
        }
        c->tunnel_mode = "tunnel";
        start_tunnel(c);   /* TLS we cannot read: do not break it, pass it */
        return;
    }
    c->have_hello = true;
    if (c->transparent && c->hello.has_sni)
        util_strlcpy(c->target_host, c->hello.sni, sizeof c->target_host);
    struct policy_facts f;
    struct policy_verdict v;
    char lrule[300];
    conn_fill_facts(c, &f);
    f.phase = POLICY_PHASE_CONNECT;
    f.learned = learned_fact(c, lrule, sizeof lrule);
    policy_decide(c->policy, &f, &v);
    if (c->transparent && c->hello.has_sni && !c->sni_checked && v.action != POLICY_BLOCK &&
        v.action != POLICY_DECODE && v.on != POLICY_ON_APP && v.on != POLICY_ON_IP) {
        check_sni_claim(c);   /* decides again once the name is resolved */
        return;
    }
    act_on_connect_verdict(c, &v);
}

/* Carries out the CONNECT-phase verdict on a peeked ClientHello. */
static void act_on_connect_verdict(struct conn *c, const struct policy_verdict *vp)
{
    struct pstream *cl = c->client;
    struct policy_verdict v = *vp;
    c->verdict = v;
    if (c->early && !early_fits(c, &v)) {
        early_then(c, conn_act_on_verdict);   /* closed first, then as without it */
        return;
    }
    conn_event(c, EV_VERDICT, NULL, v.decode_to_block ? "decode" : policy_action_name(v.action), v.rule, 0);
    c->tunnel_rule_set = true;
    if (v.action == POLICY_BLOCK && !v.decode_to_block) {
        conn_log_decision(c, 403, "block", &v);
        conn_close(c);   /* a TLS stream already started: close it */
        return;
    }
    if (v.action == POLICY_TUNNEL || v.action == POLICY_BYPASS) {
        c->tunnel_mode = v.action == POLICY_BYPASS ? "bypass" : "tunnel";
        start_tunnel(c);
        return;
    }
    c->tunnel_rule_set = false;
    if (c->early && early_adopt(c))
        return;   /* its certificate decides, as a fresh one's would */
    if (remembered_cert_phase(c))
        return;
    if (conn_take_pooled_upstream(c))
        return;   /* straight into the client handshake: the client keeps reading */
    pstream_pause(cl);
    up_connect(c, conn_connect_host(c), c->target_port, true, conn_on_decode_upstream);
}

void conn_act_on_verdict(struct conn *c)
{
    act_on_connect_verdict(c, &c->verdict);
}

/* False when the key does not fit (such names are not pooled). */
bool conn_pool_key(const struct conn *c, char *key, size_t cap)
{
    const char *sni = c->have_hello && c->hello.has_sni ? c->hello.sni : c->target_host;
    /* Never shared between users of the machine: an origin connection may
     * carry state of the user who opened it. */
    int uid = c->have_proc ? c->proc.uid : -1;
    /* "tls|UID|HOST|PORT|SNI", built for every request (park and take). */
    struct fbuf k = fbuf_make(key, cap);
    fbuf_put(&k, "tls|", 4);
    fbuf_i64(&k, uid);
    fbuf_put(&k, "|", 1);
    fbuf_puts(&k, conn_connect_host(c));
    fbuf_put(&k, "|", 1);
    fbuf_u64(&k, c->target_port);
    fbuf_put(&k, "|", 1);
    fbuf_puts(&k, sni);
    return fbuf_cstr(&k);
}

void conn_park_upstream(struct conn *c)
{
    struct pstream *u = c->up;
    if (!u || !c->up_idle || c->up_pinned || c->kind != CK_DECODE || c->verify_failed || !u->ssl ||
        !u->handshake_done || u->eof || u->closing || u->in.len || u->pending || c->w->stopping)
        return;
    char key[sizeof u->pool_key];
    if (!conn_pool_key(c, key, sizeof key))
        return;
    c->up = NULL;
    c->up_idle = false;
    pstream_detach(u);   /* still reading: the pool notices the origin closing it */
    c->refs--;
    up_pool_put(c->w, u, key);
}

/* Makes a pooled origin connection for this connection's origin c->up. */
static bool attach_pooled(struct conn *c)
{
    char key[sizeof c->client->pool_key];
    if (c->up || !conn_pool_key(c, key, sizeof key))
        return false;
    struct pstream *s = up_pool_take(c->w, key);
    if (!s)
        return false;
    pstream_attach(s, c);
    c->up = s;
    c->refs++;
    sockaddr_fmt_peer(s, c->dst_addr, sizeof c->dst_addr);
    return true;
}

/* The decoded connection's next request: a pooled origin connection for the
 * same origin, if there is one. */
bool conn_take_upstream_for_request(struct conn *c) { return attach_pooled(c); }

bool conn_take_pooled_upstream(struct conn *c)
{
    if (!attach_pooled(c))
        return false;
    c->upstream_tls = true;
    c->up_idle = true;   /* it served requests before: a retry is allowed */
    atomic_fetch_add(&c->w->sh->m.upstream_reused, 1);
    conn_on_decode_upstream(c, 0, NULL);
    return true;
}

/* An SNI is a claim, not a fact: in transparent mode a connection that would
 * go undecoded because of its SNI is tunnelled only if the original
 * destination address belongs to that name (our own resolution). Otherwise
 * it is decided without the claim, on its address (and, when decoded, on
 * the origin certificate's names). */
static void sni_claim_result(struct conn *c, bool ok)
{
    struct policy_facts f;
    struct policy_verdict v;
    char lrule[300];
    c->sni_checked = true;
    conn_fill_facts(c, &f);
    f.phase = POLICY_PHASE_CONNECT;
    f.learned = learned_fact(c, lrule, sizeof lrule);
    if (!ok) {
        log_info("conn %llu: SNI %s does not belong to %s: deciding on the address", (unsigned long long)c->id,
                 c->hello.sni, c->orig_ip);
        /* From here on, every phase decides on the address and the origin
         * certificate's names, never on the claim. */
        c->sni_rejected = true;
        util_strlcpy(c->target_host, c->orig_ip, sizeof c->target_host);
        conn_fill_facts(c, &f);
        f.phase = POLICY_PHASE_CONNECT;
        f.learned = NULL;
    }
    policy_decide(c->policy, &f, &v);
    act_on_connect_verdict(c, &v);
}

static bool addr_in(const struct sockaddr_storage *a, const struct sockaddr_storage *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (sockaddr_same_ip(a, &list[i]))
            return true;
    return false;
}

static void on_sni_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct conn *c = req->data;
    c->refs--;
    c->resolving = false;
    bool ok = false;
    for (struct addrinfo *ai = res; status == 0 && ai; ai = ai->ai_next) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        ok = ok || addr_in(&c->orig_dst, &ss, 1);
    }
    if (res)
        uv_freeaddrinfo(res);
    if (c->dead) {
        conn_maybe_free(c);
        return;
    }
    sni_claim_result(c, ok);
}

static void check_sni_claim(struct conn *c)
{
    struct sockaddr_storage addrs[8];
    size_t n = proxy_hosts_lookup(c->w->sh, c->hello.sni, addrs, 8);
    if (n) {
        sni_claim_result(c, addr_in(&c->orig_dst, addrs, n));
        return;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    c->gai.data = c;
    c->refs++;
    c->resolving = true;
    pstream_pause(c->client);
    if (uv_getaddrinfo(&c->w->loop, &c->gai, on_sni_gai, c->hello.sni, NULL, &hints) < 0) {
        c->refs--;
        c->resolving = false;
        sni_claim_result(c, false);
    }
}

/* ---- events from the streams ---------------------------------------------- */

static void tunnel_relay(struct conn *c, struct pstream *from)
{
    struct pstream *to = from == c->client ? c->up : c->client;
    if (!to || from->in.len == 0)
        return;
    if (from == c->client)
        c->tunnel_in += from->in.len;
    else
        c->tunnel_out += from->in.len;
    int rc = pstream_write(to, from->in.p, from->in.len);
    buf_reset(&from->in);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    if (to->pending >= PSTREAM_HIGH_WATER)
        pstream_pause(from);
    conn_set_timer(c, c->w->sh->cfg->limits.tunnel_idle_ms);
}

void conn_on_data(struct conn *c, struct pstream *s)
{
    if (c->dead)
        return;
    if (c->ident_pending && s == c->client && (c->state == CS_HEAD || c->state == CS_PEEK)) {
        pstream_pause(s);   /* decisions wait for the client's identity: conn_ident_ready */
        return;
    }
    switch (c->state) {
    case CS_HEAD:
        if (s == c->client)
            handle_head(c);
        break;
    case CS_PEEK:
        if (s == c->client)
            peek(c);
        break;
    case CS_EXCHANGE:
        if (s == c->client)
            fwd_on_client_data(c);
        else
            fwd_on_upstream_data(c);
        break;
    case CS_TUNNEL:
        tunnel_relay(c, s);
        break;
    default:
        /* CONNECTING / handshakes: keep the bytes; do not read more. */
        if (s == c->client)
            pstream_pause(s);
        break;
    }
}

/* The client's identity arrived (proxy/ident.c): go on with what waited. */
void conn_ident_ready(struct conn *c)
{
    if (c->dead || !c->client || (c->state != CS_HEAD && c->state != CS_PEEK))
        return;
    pstream_resume(c->client);
    if (!c->dead && c->client && c->client->in.len)
        conn_on_data(c, c->client);
}

static void tunnel_eof(struct conn *c, struct pstream *s)
{
    struct pstream *other = s == c->client ? c->up : c->client;
    if (!other || other->eof) {
        conn_close(c);
        return;
    }
    pstream_shutdown_write(other);   /* pass the half-close on */
}

/* A client that completes the handshake with our certificate and hangs up
 * at once without a request has most likely refused it after the handshake
 * (certificate pinning checked by the application, as curl --pinnedpubkey
 * does). */
static bool hung_up_after_handshake(struct conn *c, struct pstream *s)
{
    /* Only a deliberate TLS close (close_notify or an alert) counts: a
     * client that merely drops the socket after looking at the certificate
     * (a probe, a monitoring check) is not refusing it. */
    return s == c->client && c->kind == CK_DECODE && c->state == CS_HEAD && c->requests == 0 &&
           c->hs_done_us && util_mono_us() - c->hs_done_us < 1000000 &&
           (s->close_notify || s->tls_alert >= 0);
}

void conn_on_eof(struct conn *c, struct pstream *s)
{
    if (c->dead)
        return;
    if (hung_up_after_handshake(c, s)) {
        conn_client_rejected(c, -2);
        return;
    }
    if (c->early && s == c->up) {   /* the client has not chosen yet: its verdict will see it */
        up_fail(c, -ECONNRESET, "the origin closed the connection during the TLS handshake");
        return;
    }
    if (s == c->up && c->up_hs_open) {
        origin_failed_late(c, -ECONNRESET, "the origin closed the connection during the TLS handshake");
        return;
    }
    switch (c->state) {
    case CS_TUNNEL:
        tunnel_eof(c, s);
        break;
    case CS_EXCHANGE:
        if (s == c->client)
            fwd_on_client_eof(c);
        else
            fwd_on_upstream_eof(c);
        break;
    case CS_CL_HANDSHAKE:
        if (s == c->client)
            conn_client_rejected(c, -1);   /* hung up after our server flight */
        else
            conn_close(c);
        break;
    case CS_UP_HANDSHAKE:
        if (s == c->up) {
            up_fail(c, -ECONNRESET, "the origin closed the connection during the TLS handshake");
            break;
        }
        conn_close(c);
        break;
    default:
        if (s == c->up && c->state == CS_HEAD) {
            struct pstream *u = c->up;   /* origin closed an idle decoded upstream */
            c->up = NULL;
            pstream_close(u);
            break;
        }
        conn_close(c);
        break;
    }
}

void conn_on_error(struct conn *c, struct pstream *s, int err)
{
    if (c->dead)
        return;
    if (s == c->up && (up_state(c) == CS_UP_HANDSHAKE || c->early || c->up_hs_open)) {
        char why[200];
        snprintf(why, sizeof why, "the TLS handshake with the origin failed%s",
                 s->tls_alert >= 0 ? " (the origin sent an alert)" : "");
        if (c->up_hs_open)   /* the client's handshake began on its certificate */
            origin_failed_late(c, -EPROTO, why);
        else
            up_fail(c, -EPROTO, why);
        return;
    }
    if (c->state == CS_CL_HANDSHAKE && s == c->client) {
        conn_client_rejected(c, s->tls_alert);
        return;
    }
    if (hung_up_after_handshake(c, s)) {
        conn_client_rejected(c, s->tls_alert >= 0 ? s->tls_alert : -2);
        return;
    }
    if (c->state == CS_EXCHANGE && s == c->up) {
        fwd_on_upstream_eof(c);
        return;
    }
    if (c->state == CS_HEAD && s == c->up) {
        struct pstream *u = c->up;
        c->up = NULL;
        pstream_close(u);
        return;
    }
    log_debug("conn %llu: %s stream error: %s", (unsigned long long)c->id,
              s->side == SIDE_CLIENT ? "client" : "upstream", uv_strerror(err));
    conn_close(c);
}

void conn_on_drain(struct conn *c, struct pstream *s)
{
    if (c->dead)
        return;
    if (c->state == CS_TUNNEL) {
        if (splice_tunnel_start(c))
            return;   /* the copy relay's backlog is out: splice from here on */
        struct pstream *from = s == c->client ? c->up : c->client;
        if (from && !from->eof)
            pstream_resume(from);
    } else if (c->state == CS_EXCHANGE) {
        fwd_on_drain(c, s);
    }
}

void conn_on_handshake(struct conn *c, struct pstream *s)
{
    if (c->dead)
        return;
    if (s == c->up && up_state(c) == CS_UP_HANDSHAKE) {
        pstream_pause(s);
        up_finish(c, 0, NULL);
        return;
    }
    if (s == c->up && c->up_hs_open) {   /* finished after the client's began */
        pstream_pause(s);
        origin_verdict_late(c);
        origin_settled(c);
        return;
    }
    if (s == c->client && c->state == CS_CL_HANDSHAKE) {
        c->hs_done_us = util_mono_us();
        if (c->up_hs_open) {   /* the request waits for the origin's handshake */
            c->cl_waits_origin = true;
            pstream_pause(s);
            return;
        }
        conn_start_head(c);
    }
}

/* Automatic conflict avoidance: remember {application, host} so the next
 * connections of that pair are tunnelled, persist it, and log a conflict
 * event that names both and the permanent rule that would fix it. */
static void learn_conflict(struct conn *c, int alert)
{
    struct proxy_shared *sh = c->w->sh;
    const struct policy_auto_avoid *aa = policy_auto_avoid(c->policy);
    if (!sh->learned || !aa || !aa->enabled)
        return;
    const char *host = c->have_hello && c->hello.has_sni ? c->hello.sni : c->target_host;
    const char *app = c->have_proc ? c->proc.comm : "";
    char reason[LEARNED_REASON_MAX];
    if (alert >= 0)
        snprintf(reason, sizeof reason, "tls alert %s", SSL_alert_desc_string_long(alert));
    else if (alert == -2)
        snprintf(reason, sizeof reason, "hang-up right after the handshake, before any request");
    else
        snprintf(reason, sizeof reason, "hang-up after the server handshake");
    int64_t now = (int64_t)time(NULL);
    int isnew = learned_record(sh->learned, app, host, reason, now, aa->ttl);
    if (isnew < 0)
        return;
    atomic_fetch_add(&sh->m.conflicts_learned, 1);
    char err[UTIL_ERRLEN];
    pthread_mutex_lock(&sh->learned_save_lock);
    if (learned_save(sh->learned, err, sizeof err) < 0)
        log_error("automatic avoidance: cannot save the learned exclusions: %s", err);
    pthread_mutex_unlock(&sh->learned_save_lock);
    struct learned_entry e = { .count = 1 };
    learned_norm_app(app, e.app, sizeof e.app);
    util_strlcpy(e.host, host, sizeof e.host);
    char fix[600];
    learned_permanent_rule(&e, aa->scope == POLICY_AVOID_HOST ? LEARNED_SCOPE_HOST : LEARNED_SCOPE_APP_HOST,
                           fix, sizeof fix);
    log_warn("conflict: %s rejected the decoded connection to %s (%s); tunnelling this pair "
             "from now on; permanent fix: %s", app[0] ? app : "an unknown application", host, reason, fix);
    struct access_record r;
    base_record(c, &r);
    r.event = "conflict";
    r.method = "CONNECT";
    r.host = host;
    r.url = host;
    r.mode = "decode";
    r.action = isnew ? "learned" : "renewed";
    r.error = reason;
    r.fix = fix;
    access_log_write(sh->alog, &r);
}

/* The client refused our certificate (an alert) or hung up right after our
 * handshake flight. Logged now; automatic avoidance builds on this. */
void conn_client_rejected(struct conn *c, int alert)
{
    char why[160];
    if (alert >= 0)
        snprintf(why, sizeof why, "the client rejected the certificate (TLS alert %d: %s)", alert,
                 SSL_alert_desc_string_long(alert));
    else if (alert == -2)
        snprintf(why, sizeof why, "the client closed the connection right after the TLS handshake, "
                                  "before any request (certificate pinning?)");
    else
        snprintf(why, sizeof why, "the client closed the connection during the TLS handshake");
    log_info("conn %llu: %s for %s", (unsigned long long)c->id, why, c->target_host);
    atomic_fetch_add(&c->w->sh->m.client_rejections, 1);
    conn_log_tunnel(c, "decode", why);
    learn_conflict(c, alert);
    conn_close(c);
}

/* ---- timers ----------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    switch (c->state) {
    case CS_CLOSING:
        if (c->client)
            pstream_close(c->client);
        break;
    case CS_HEAD:
        if (c->client && c->client->in.len)
            reply_and_close(c, 408, "Request Timeout", "The request head did not arrive in time.");
        else
            conn_close(c);   /* idle keep-alive connection */
        break;
    case CS_PEEK:
        if (c->client && c->client->in.len == 0 && !c->connect_blocked) {
            c->tunnel_mode = "tunnel";
            start_tunnel(c);   /* a client that waits for the server to speak */
        } else if (c->client && c->client->in.len && !c->peek_extended) {
            /* Started a ClientHello and stalled: give it the handshake
             * time, never a free pass — tunnelling a slow hello would let
             * any client skip the filter by trickling its first bytes. */
            c->peek_extended = true;
            conn_set_timer(c, c->w->sh->cfg->limits.handshake_timeout_ms);
        } else {
            conn_log_tunnel(c, "tunnel", c->connect_blocked ? "blocked host, nothing to decode"
                                                            : "the ClientHello did not arrive in time");
            c->kind = CK_HTTP;   /* logged */
            conn_close(c);
        }
        break;
    case CS_CONNECTING:
        up_connect_timeout(c);
        break;
    case CS_UP_HANDSHAKE:
        if (c->on_connected)
            up_fail(c, UV_ETIMEDOUT, "the TLS handshake with the origin timed out");
        break;
    case CS_CL_HANDSHAKE:
        if (c->cl_waits_origin) {
            origin_failed_late(c, UV_ETIMEDOUT, "the TLS handshake with the origin timed out");
            break;
        }
        conn_log_tunnel(c, "decode", "the client did not finish the TLS handshake in time");
        conn_close(c);
        break;
    case CS_EXCHANGE:
        fwd_timeout(c);
        break;
    case CS_TUNNEL:
        conn_close(c);
        break;
    }
}

/* ---- access log for connections ---------------------------------------------- */

static void base_record(struct conn *c, struct access_record *r)
{
    memset(r, 0, sizeof *r);
    r->time_ms = c->t_connect_ms ? c->t_connect_ms : util_now_ms();
    r->client = c->client_addr;
    r->request_id = c->id;
    r->uid = -1;
    r->sni = c->have_hello && c->hello.has_sni ? c->hello.sni : NULL;
    r->dst = c->dst_addr[0] ? c->dst_addr : NULL;
    conn_record_app(c, r);
    r->duration_us = c->t_connect_us ? util_mono_us() - c->t_connect_us : 0;
}

void conn_log_tunnel(struct conn *c, const char *mode, const char *error)
{
    char url[300];
    struct access_record r;
    base_record(c, &r);
    snprintf(url, sizeof url, "%s:%u", c->target_host, c->target_port);
    r.method = "CONNECT";
    r.url = url;
    r.host = c->target_host;
    r.status = error ? 0 : 200;
    r.bytes_in = c->tunnel_in;
    r.bytes_out = c->tunnel_out;
    r.mode = mode;
    r.error = error;
    r.action = strcmp(mode, "decode") == 0 ? "decode" : mode;
    if (c->tunnel_rule_set)
        r.rule = c->verdict.rule;
    access_log_write(c->w->sh->alog, &r);
}

void conn_log_decision(struct conn *c, int status, const char *action,
                       const struct policy_verdict *v)
{
    conn_event(c, EV_VERDICT, NULL, action, v->rule, status);
    char url[300];
    struct access_record r;
    base_record(c, &r);
    snprintf(url, sizeof url, "%s:%u", c->target_host, c->target_port);
    r.method = "CONNECT";
    r.url = url;
    r.host = c->target_host;
    r.status = status;
    r.mode = c->have_hello ? "tunnel" : "http";
    r.action = action;
    r.rule = v->rule;
    access_log_write(c->w->sh->alog, &r);
}

/* The live feed for `shoji watch`: one event per step of a connection. */
/* A string field of an event: only its bytes and the NUL are written. */
static void ev_str(char *dst, size_t cap, const char *src)
{
    util_strlcpy(dst, src ? src : "", cap);
}

void conn_event(struct conn *c, char kind, const char *url, const char *verdict,
                const char *rule, int status)
{
    struct events *evs = c->w->sh->events;
    if (!evs)
        return;
    char dst[64];
    if (c->dst_addr[0])
        util_strlcpy(dst, c->dst_addr, sizeof dst);
    else if (c->target_host[0])
        snprintf(dst, sizeof dst, "%.50s:%u", c->transparent ? c->orig_ip : c->target_host,
                 c->target_port);
    else
        dst[0] = '\0';
    uint64_t now = util_now_ms();
    struct event *ev = events_claim(evs);
    ev->time_ms = now;
    ev->conn = c->id;
    ev->kind = kind;
    ev->status = status;
    ev->pid = c->have_proc ? c->proc.pid : 0;
    ev_str(ev->app, sizeof ev->app, c->have_proc ? c->proc.comm : NULL);
    ev_str(ev->app_path, sizeof ev->app_path, c->have_proc ? c->proc.exe : NULL);
    ev_str(ev->client, sizeof ev->client, c->client_addr);
    ev_str(ev->dst, sizeof ev->dst, dst);
    ev_str(ev->sni, sizeof ev->sni, c->have_hello && c->hello.has_sni ? c->hello.sni : NULL);
    ev_str(ev->cert, sizeof ev->cert, c->cert_name);
    ev_str(ev->url, sizeof ev->url, url);
    ev_str(ev->verdict, sizeof ev->verdict, verdict);
    ev_str(ev->rule, sizeof ev->rule, rule);
    events_publish(evs);
}

void conn_log_error(struct conn *c, int status, const char *error)
{
    struct access_record r;
    base_record(c, &r);
    r.method = "-";
    r.url = "-";
    r.status = status;
    r.mode = c->kind == CK_DECODE ? "decode" : "http";
    r.error = error;
    access_log_write(c->w->sh->alog, &r);
}
