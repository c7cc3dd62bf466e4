/* proxy/stream: one side of a proxied connection — a TCP handle, optionally
 * with TLS terminated here through memory BIOs — delivering plaintext into
 * `in` and taking plaintext to write. Flow control: writes are counted in
 * `pending`; the owner pauses the source when the destination is above the
 * high-water mark and resumes it on the drain event.
 * Lifetime: a pstream is freed only in its libuv close callback, so a
 * pointer stays valid for the rest of the loop iteration in which it was
 * closed; callers check `closing` after calling out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>

#include "proxy/internal.h"
#include "tls/upstream.h"
#include "util/log.h"

struct wreq {
    uv_write_t req;
    struct pstream *s;
    size_t len;
    char data[];
};

static void on_close(uv_handle_t *h);

/* SSL_get_error needs an empty error queue before each call; emptying an
 * already empty queue costs more than looking at it (every read/write). */
static void clear_tls_errors(void)
{
    if (ERR_peek_error())
        ERR_clear_error();
}

struct pstream *pstream_new(struct worker *w, struct conn *c, enum pstream_side side)
{
    struct pstream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (uv_tcp_init(&w->loop, &s->tcp) != 0) {
        free(s);
        return NULL;
    }
    s->tcp.data = s;
    s->w = w;
    s->conn = c;
    s->side = side;
    s->tls_alert = -1;
    buf_init(&s->in, PSTREAM_IN_MAX);
    buf_init(&s->cork, PSTREAM_CORK_MAX);
    buf_init(&s->rx, TLSBIO_RX_MAX);
    buf_init(&s->held, TLSBIO_HELD_MAX);
    return s;
}

void pstream_attach(struct pstream *s, struct conn *c) { s->conn = c; }
void pstream_detach(struct pstream *s) { s->conn = NULL; }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct pstream *s = h->data;
    (void)suggested;
    if (s->ssl || s->lingering) {
        b->base = s->w->scratch;
        b->len = sizeof s->w->scratch;
        return;
    }
    if (pstream_in_room(s, PSTREAM_MIN_ROOM) < 0) {
        b->base = NULL;
        b->len = 0;
        return;
    }
    b->base = s->in.p + s->in.len;
    b->len = s->in.cap - s->in.len;
}

static void notify_error(struct pstream *s, int err)
{
    if (s->error == 0)
        s->error = err;
    if (s->conn && !s->closing)
        conn_on_error(s->conn, s, err);
    else if (!s->conn)
        pstream_close(s);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *wr = (struct wreq *)req;
    struct pstream *s = wr->s;
    bool was_high = s->pending >= PSTREAM_HIGH_WATER;
    s->pending -= wr->len;
    s->bytes_written += wr->len;
    free(wr);
    if (s->closing)
        return;
    if (status < 0) {
        notify_error(s, status);
        return;
    }
    if (s->conn && (was_high || s->pending == 0) && s->pending < PSTREAM_LOW_WATER)
        conn_on_drain(s->conn, s);
}

/* Queues raw bytes on the socket; tries a direct write first. */
int pstream_raw_write(struct pstream *s, const char *data, size_t len)
{
    if (s->closing || s->shut)
        return -EPIPE;
    if (s->pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
        if (r > 0) {
            data += r;
            len -= (size_t)r;
        } else if (r < 0 && r != UV_EAGAIN) {
            return r;
        }
        if (len == 0)
            return 0;
    }
    struct wreq *wr = malloc(sizeof *wr + len);
    if (!wr)
        return -ENOMEM;
    wr->s = s;
    wr->len = len;
    memcpy(wr->data, data, len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    int r = uv_write(&wr->req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
    if (r < 0) {
        free(wr);
        return r;
    }
    s->pending += len;
    return 0;
}

/* Moves whatever TLS produced (handshake, records, alerts) to the socket. */
static int flush_wbio(struct pstream *s) { return tlsbio_flush(s); }

static int tls_error_code(struct pstream *s, int ret)
{
    int e = SSL_get_error(s->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return 1;
    unsigned long le = ERR_peek_last_error();
    /* A fatal alert from the peer shows up as reason SSL_AD_REASON_OFFSET +
     * alert code (e.g. 1048 "tlsv1 alert unknown ca"). */
    if (le && ERR_GET_LIB(le) == ERR_LIB_SSL && ERR_GET_REASON(le) >= SSL_AD_REASON_OFFSET &&
        ERR_GET_REASON(le) < SSL_AD_REASON_OFFSET + 256)
        s->tls_alert = ERR_GET_REASON(le) - SSL_AD_REASON_OFFSET;
    if (le)
        log_debug("tls %s: %s", s->side == SIDE_CLIENT ? "client" : "upstream",
                  ERR_reason_error_string(le) ? ERR_reason_error_string(le) : "error");
    return -EPROTO;
}

/* A TLS 1.3 server's handshake ends with the client's Finished, and what it
 * writes then is only the session ticket. When the client's first request
 * came with its Finished, a response (or a close) follows at once: the
 * ticket waits and leaves with it, one write and one segment fewer.
 * TLS 1.2 ends with the server's own Finished, which is never held. */
static bool ticket_can_wait(struct pstream *s)
{
    return s->side == SIDE_CLIENT && SSL_version(s->ssl) == TLS1_3_VERSION &&
           BIO_ctrl_pending(s->rbio) > 0;
}

/* Runs the TLS engine over the ciphertext already fed to rbio: handshake,
 * then decrypt into `in`. Calls out to the conn; returns -1 if the stream
 * got closed while doing so. */
static int tls_pump(struct pstream *s)
{
    if (!s->handshake_done) {
        ERR_clear_error();
        int r = SSL_do_handshake(s->ssl);
        while (r != 1 && SSL_get_error(s->ssl, r) == SSL_ERROR_WANT_RETRY_VERIFY) {
            /* Stopped at the origin's certificate (tls_upstream_pause_at_cert):
             * the conn starts on it, then the handshake goes on over the
             * rest of the flight already read. */
            if (flush_wbio(s) < 0) {
                notify_error(s, -EPIPE);
                return -1;
            }
            if (s->conn)
                conn_on_peer_cert(s->conn, s);
            if (s->closing)
                return -1;
            ERR_clear_error();
            r = SSL_do_handshake(s->ssl);
        }
        int frc = r == 1 && ticket_can_wait(s) ? tlsbio_hold(s) : flush_wbio(s);
        if (r == 1) {
            s->handshake_done = true;
            if (s->conn)
                conn_on_handshake(s->conn, s);
            if (s->closing)
                return -1;
        } else {
            int e = tls_error_code(s, r);
            if (e < 0 || frc < 0) {
                notify_error(s, e < 0 ? e : frc);
                return -1;
            }
            return 0;
        }
    }
    bool got = false, closed = false;
    while (s->want_read) {
        /* Nothing to decrypt: SSL_read is not called (it would set up a
         * record buffer just to find nothing); idle buffers go at the sweep. */
        if (!SSL_has_pending(s->ssl) && BIO_ctrl_pending(s->rbio) == 0)
            break;
        if (pstream_in_room(s, PSTREAM_MIN_ROOM) < 0) {
            pstream_pause(s);   /* the conn has not consumed yet; resume pumps again */
            break;
        }
        clear_tls_errors();
        int r = SSL_read(s->ssl, s->in.p + s->in.len, (int)(s->in.cap - s->in.len));
        if (r > 0) {
            s->in.len += (size_t)r;
            s->bytes_read += (size_t)r;
            got = true;
            continue;
        }
        int e = tls_error_code(s, r);
        if (e == 1) {
            closed = true;
            s->close_notify = true;
        }
        else if (e < 0) {
            flush_wbio(s);
            if (got && s->conn)
                conn_on_data(s->conn, s);
            if (!s->closing)
                notify_error(s, e);
            return -1;
        }
        break;
    }
    flush_wbio(s);
    if (got && s->conn)
        conn_on_data(s->conn, s);
    if (s->closing)
        return -1;
    if (closed && !s->eof) {
        s->eof = true;
        if (s->conn)
            conn_on_eof(s->conn, s);
        else
            pstream_close(s);
    }
    return s->closing ? -1 : 0;
}

/* After a pump over a read's bytes: what the engine did not take yet (a
 * partial record, or all of it when reading stopped) is copied aside, since
 * the read buffer is the worker's. */
static void keep_rest(struct pstream *s)
{
    if (tlsbio_keep_rest(s) < 0 && !s->closing)
        notify_error(s, -ENOBUFS);
    tlsbio_release(s);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct pstream *s = st->data;
    (void)b;
    if (s->closing || nread == 0)
        return;
    if (s->lingering) {       /* after our FIN: discard until the peer's */
        s->linger_bytes += nread > 0 ? (size_t)nread : 0;
        if (nread < 0 || s->linger_bytes > (1u << 20))
            pstream_close(s);
        return;
    }
    if (!s->conn) {           /* idle in the pool: any event ends it */
        up_pool_drop(s->w, s);
        pstream_close(s);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            uv_read_stop(st);
            s->reading = false;
            s->eof = true;
            conn_on_eof(s->conn, s);
        } else if (nread == UV_ENOBUFS) {
            pstream_pause(s);  /* the engine is behind; it resumes us */
        } else {
            notify_error(s, (int)nread);
        }
        return;
    }
    if (s->ssl) {
        s->tls_hot = s->tls_bufs_held = true;
        tlsbio_feed(s, b->base, (size_t)nread);
        tls_pump(s);
        keep_rest(s);
        return;
    }
    s->in.len += (size_t)nread;
    s->bytes_read += (size_t)nread;
    conn_on_data(s->conn, s);
}

int pstream_start(struct pstream *s)
{
    s->want_read = true;
    if (s->reading || s->closing || s->eof)
        return 0;
    int r = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (r == 0)
        s->reading = true;
    return r;
}

void pstream_pause(struct pstream *s)
{
    s->want_read = false;
    if (s->reading && !s->closing) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
}

void pstream_resume(struct pstream *s)
{
    if (s->closing)
        return;
    if (s->ssl && s->handshake_done) {
        s->want_read = true;
        if (tls_pump(s) < 0)
            return;
    }
    pstream_start(s);
}

void pstream_keep_reading(struct pstream *s)
{
    if (!(s->reading && s->want_read))
        pstream_resume(s);
}

void pstream_cork(struct pstream *s) { s->corked = true; }

static int write_now(struct pstream *s, const void *data, size_t len);

int pstream_uncork(struct pstream *s)
{
    s->corked = false;
    if (s->cork.len == 0)
        return 0;
    int rc = s->closing ? -EPIPE : write_now(s, s->cork.p, s->cork.len);
    buf_reset(&s->cork);
    return rc;
}

int pstream_write(struct pstream *s, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (s->corked) {
        if (buf_append(&s->cork, data, len) == 0)
            return 0;
        int rc = pstream_uncork(s);   /* too much to hold: send what we have */
        s->corked = true;
        if (rc < 0)
            return rc;
    }
    return write_now(s, data, len);
}

/* Encrypts into the stream's pending ciphertext, without sending it. */
static int tls_encrypt(struct pstream *s, const void *data, size_t len)
{
    s->tls_hot = s->tls_bufs_held = true;
    const char *p = data;
    while (len) {
        clear_tls_errors();
        int chunk = (int)UTIL_MIN(len, (size_t)1 << 20);
        int r = SSL_write(s->ssl, p, chunk);
        if (r <= 0)
            return -EPROTO;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static int write_now(struct pstream *s, const void *data, size_t len)
{
    if (!s->ssl)
        return pstream_raw_write(s, data, len);
    int rc = tls_encrypt(s, data, len);
    return rc < 0 ? rc : flush_wbio(s);
}

static int tls_setup(struct pstream *s, SSL_CTX *ctx)
{
    s->ssl = SSL_new(ctx);
    if (!s->ssl)
        return -ENOMEM;
    if (tlsbio_attach(s) < 0) {
        SSL_free(s->ssl);
        s->ssl = NULL;
        return -ENOMEM;
    }
    return 0;
}

int pstream_tls_server(struct pstream *s, SSL_CTX *ctx, X509 *leaf, EVP_PKEY *key)
{
    int rc = tls_setup(s, ctx);
    if (rc < 0)
        return rc;
    /* One call: the key is matched to the certificate once (EVP_PKEY_eq),
     * half the cost of SSL_use_certificate + SSL_use_PrivateKey. */
    if (SSL_use_cert_and_key(s->ssl, leaf, key, NULL, 1) != 1)
        return -EPROTO;
    SSL_set_accept_state(s->ssl);
    return 0;
}

int pstream_tls_client(struct pstream *s, SSL_CTX *ctx, const char *host)
{
    int rc = tls_setup(s, ctx);
    if (rc < 0)
        return rc;
    if (tls_upstream_prepare(s->ssl, host) < 0)
        return -EPROTO;
    SSL_set_connect_state(s->ssl);
    s->want_read = true;
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);   /* produces the ClientHello */
    if (r != 1 && tls_error_code(s, r) < 0)
        return -EPROTO;
    rc = flush_wbio(s);
    if (rc < 0)
        return rc;
    return pstream_start(s);
}

int pstream_tls_feed(struct pstream *s, const char *data, size_t len)
{
    tlsbio_feed(s, data, len);
    s->want_read = true;
    int rc = tls_pump(s);
    keep_rest(s);
    if (rc < 0)
        return -EPIPE;
    return pstream_start(s);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct pstream *s = req->data;
    free(req);
    if (s->closing)
        return;
    /* Lingering close: closing a socket with unread input sends RST, which
     * can destroy the response still in flight to the peer. Read and discard
     * until the peer closes too; the conn's timer bounds the wait. */
    if (status == 0 && !s->eof && s->conn) {
        if (s->lingering && s->reading)
            return;   /* reading since the shutdown was asked */
        s->lingering = true;
        s->want_read = true;
        if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) == 0) {
            s->reading = true;
            return;
        }
    }
    pstream_close(s);
}

/* Before a shutdown: what the cork holds and, on TLS, the close_notify
 * alert leave in one write (a short response ending the connection is one
 * segment, not two). */
static void send_close_notify(struct pstream *s)
{
    if (!s->ssl || !s->handshake_done) {
        pstream_uncork(s);
        return;
    }
    s->corked = false;
    if (s->cork.len && !s->closing && tls_encrypt(s, s->cork.p, s->cork.len) < 0)
        log_debug("tls: cannot encrypt the last bytes before close_notify");
    buf_reset(&s->cork);
    ERR_clear_error();
    SSL_shutdown(s->ssl);
    flush_wbio(s);
}

void pstream_shutdown_close(struct pstream *s)
{
    if (s->closing || s->shut)
        return;
    send_close_notify(s);
    s->shut = true;
    /* Nothing left queued: the FIN goes out before the loop polls again, so
     * the lingering read starts now, without stopping and restarting the
     * read (two epoll_ctl calls per connection). */
    if (s->pending == 0 && s->reading && !s->eof && s->conn)
        s->lingering = true;
    else
        pstream_pause(s);
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req) {
        pstream_close(s);
        return;
    }
    req->data = s;
    if (uv_shutdown(req, (uv_stream_t *)&s->tcp, on_shutdown) < 0) {
        free(req);
        pstream_close(s);
    }
}

static void on_shutdown_write(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

void pstream_shutdown_write(struct pstream *s)
{
    if (s->closing || s->shut)
        return;
    send_close_notify(s);
    s->shut = true;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req && uv_shutdown(req, (uv_stream_t *)&s->tcp, on_shutdown_write) < 0)
        free(req);
}

void pstream_close(struct pstream *s)
{
    if (s->closing)
        return;
    s->closing = true;
    if (s->reading)
        uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = false;
    uv_close((uv_handle_t *)&s->tcp, on_close);
}

static void on_close(uv_handle_t *h)
{
    struct pstream *s = h->data;
    if (s->conn)
        conn_on_stream_closed(s->conn, s);
    tlsbio_forget(s);
    if (s->ssl && s->side == SIDE_CLIENT)
        tls_server_ssl_free(s->ssl);   /* its session stays resumable */
    else if (s->ssl)
        SSL_free(s->ssl);
    s->in.len = 0;
    pstream_in_release(s);
    buf_free(&s->cork);
    free(s);
}

bool pstream_sweep_idle_tls(struct pstream *s)
{
    if (!s || !s->ssl || !s->handshake_done || !s->tls_bufs_held || s->closing)
        return false;
    if (s->tls_hot) {
        s->tls_hot = false;   /* busy in this second: look again at the next sweep */
        return false;
    }
    /* Refused (0) while a record is half read or half written: next time. */
    if (SSL_free_buffers(s->ssl) != 1)
        return false;
    s->tls_bufs_held = false;
    return true;
}
