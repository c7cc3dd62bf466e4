/* proxy/early: the origin connection of a CONNECT opened before the
 * ClientHello arrives; see internal.h ("early.c").
 *
 * Why: a never-seen host costs the name lookup, TCP and a full TLS
 * handshake with the origin before the client's handshake can start (the
 * leaf mirrors the origin certificate, and certificate-name exclusions are
 * checked on it). Started when the "200" goes out, that work overlaps the
 * client's round trip (its key share, its ClientHello). Only when the
 * CONNECT verdict is a decode, on a port listed in --early-connect (443 by
 * default: a TLS port, so the origin never gets a ClientHello it cannot
 * read), for a host:port not decoded in the last hour (no certificate
 * memo: a known host's connections come from the pool). The SNI sent is
 * the CONNECT host; a ClientHello naming another host, or any verdict but
 * decode, drops it.
 * Must never: let the early connection decide anything (the ClientHello's
 * verdict does), reuse c->gai while a lookup is pending, or leave a dropped
 * connection open. */
#include <errno.h>
#include <strings.h>

#include "proxy/internal.h"
#include "util/log.h"
#include "util/util.h"

static bool port_listed(const struct proxy_limits *l, uint16_t port)
{
    for (unsigned i = 0; i < l->n_early_ports && i < UTIL_ARRAY_LEN(l->early_ports); i++)
        if (l->early_ports[i] == port)
            return true;
    return false;
}

static void on_early_done(struct conn *c, int status, const char *why)
{
    c->early_done = true;
    c->early_status = status;
    util_strlcpy(c->early_why, why ? why : "", sizeof c->early_why);
}

void early_maybe_start(struct conn *c, const struct policy_verdict *v)
{
    struct proxy_shared *sh = c->w->sh;
    char key[sizeof c->client->pool_key];
    if (c->transparent || c->early || c->up || c->connect_blocked || v->action != POLICY_DECODE ||
        !port_listed(&sh->cfg->limits, c->target_port) || c->w->stopping)
        return;
    if (!conn_pool_key(c, key, sizeof key) || up_pool_has(c->w, key))
        return;   /* not poolable, or a pooled one will serve it */
    /* A host decoded in the last hour (the certificate memo): its client
     * connections are served from the pool, or open one at the ClientHello
     * as before. A burst of new connections to it must not open one origin
     * connection each while pooled ones come back (a browser's six), and a
     * remembered certificate may say "tunnel". Early connections are for
     * the first contact. */
    if (conn_memo_known(c))
        return;
    c->early = true;
    c->early_done = false;
    c->early_state = CS_CONNECTING;
    atomic_fetch_add(&sh->m.upstream_early, 1);
    up_connect(c, conn_connect_host(c), c->target_port, true, on_early_done);
}

bool early_fits(const struct conn *c, const struct policy_verdict *v)
{
    if (v->action != POLICY_DECODE || v->decode_to_block)
        return false;
    return !(c->have_hello && c->hello.has_sni) || strcasecmp(c->hello.sni, c->target_host) == 0;
}

static unsigned state_timeout(const struct conn *c, enum conn_state st)
{
    const struct proxy_limits *l = &c->w->sh->cfg->limits;
    return st == CS_CONNECTING ? l->connect_timeout_ms : l->handshake_timeout_ms;
}

/* Still opening: from now on it is the connection's own connect, with its
 * state and timer; `done` runs when it finishes. */
static void take_over(struct conn *c, void (*done)(struct conn *c, int status, const char *why))
{
    c->early = false;
    c->state = c->early_state;
    c->on_connected = done;
    conn_set_timer(c, state_timeout(c, c->state));
    pstream_pause(c->client);
}

static void forget(struct conn *c)
{
    c->early = false;
    c->early_done = false;
    c->early_next = NULL;
    atomic_fetch_add(&c->w->sh->m.upstream_early_dropped, 1);
}

void early_conn_closed(struct conn *c)
{
    if (c->early || c->early_next)   /* unused, or settling to be dropped */
        forget(c);
}

static void drop(struct conn *c)
{
    forget(c);
    c->on_connected = NULL;   /* a handshake in flight ends with its stream */
    if (c->up) {
        struct pstream *s = c->up;
        c->up = NULL;
        pstream_close(s);
    }
}

bool early_adopt(struct conn *c)
{
    if (!c->early_done) {
        take_over(c, conn_on_decode_upstream);
        return true;
    }
    if (c->early_status == 0 && !c->up) {
        drop(c);   /* the origin closed it after its handshake */
        return false;
    }
    c->early = false;
    c->early_done = false;
    /* Opened a while ago and idle since (paused: its close goes unseen),
     * like a pooled one: the origin may have closed it meanwhile, so a safe
     * request is allowed one retry on a new connection (forward.c). */
    if (c->early_status == 0)
        c->up_idle = true;
    pstream_pause(c->client);
    conn_on_decode_upstream(c, c->early_status, c->early_status < 0 ? c->early_why : NULL);
    return true;
}

static void on_dropped_settled(struct conn *c, int status, const char *why)
{
    (void)status;
    (void)why;
    void (*next)(struct conn *c) = c->early_next;
    if (c->resolving) {
        /* a lookup that timed out is still pending on c->gai: the next
         * step would need it (the same name), and could not fail better */
        conn_log_tunnel(c, "tunnel", "resolving the name timed out");
        conn_close(c);
        return;
    }
    drop(c);
    c->state = CS_PEEK;
    next(c);
}

void early_then(struct conn *c, void (*next)(struct conn *c))
{
    /* A lookup or TCP connect in flight owns c->gai / c->connect_req, which
     * the next step may need: it settles first. A TLS handshake is only its
     * stream's: closed at once. */
    if (!c->early_done && c->early_state == CS_CONNECTING) {
        c->early_next = next;
        c->upstream_tls = false;   /* settled once TCP is up: no TLS started */
        take_over(c, on_dropped_settled);
        return;
    }
    drop(c);
    next(c);
}
