/* tlsbio: the BIO between a stream's TLS engine and its socket; see
 * internal.h. Replaces a pair of OpenSSL memory BIOs, which copied every
 * byte of ciphertext twice more (socket buffer -> memory BIO, memory BIO ->
 * write buffer) and allocated as they grew. */
#include "proxy/internal.h"

#include <pthread.h>
#include <string.h>

static BIO_METHOD *g_method;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Ciphertext to read: what a previous read left (a partial record), then
 * the bytes of the read being processed. */
static size_t rx_avail(const struct pstream *s)
{
    return (s->rx.len - s->rx_off) + s->ext_len;
}

static int tb_read(BIO *b, char *out, int len)
{
    struct pstream *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    size_t want = (size_t)len, got = 0;
    size_t kept = s->rx.len - s->rx_off;
    if (kept) {
        size_t n = want < kept ? want : kept;
        memcpy(out, s->rx.p + s->rx_off, n);
        s->rx_off += n;
        got = n;
        if (s->rx_off == s->rx.len)
            s->rx.len = s->rx_off = 0;
    }
    if (got < want && s->ext_len) {
        size_t n = want - got < s->ext_len ? want - got : s->ext_len;
        memcpy(out + got, s->ext_p, n);
        s->ext_p += n;
        s->ext_len -= n;
        got += n;
    }
    if (got == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    return (int)got;
}

/* Makes `s` the owner of the worker's tx buffer: another stream's bytes go
 * out first, then what `s` held back leads its new records. */
static int take_tx(struct pstream *s)
{
    struct worker *w = s->w;
    if (w->tx_owner)
        tlsbio_flush(w->tx_owner);
    w->tx_owner = s;
    if (s->held.len == 0)
        return 0;
    int rc = buf_append(&w->tx, s->held.p, s->held.len);
    buf_free(&s->held);
    return rc;
}

static int tb_write(BIO *b, const char *data, int len)
{
    struct pstream *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    struct worker *w = s->w;
    if (w->tx_owner == s && w->tx.len + (size_t)len > TLSBIO_TX_KEEP)
        tlsbio_flush(s);             /* a bulk write: out in 64 KiB pieces */
    if (w->tx_owner != s && take_tx(s) < 0)
        return -1;
    if (buf_append(&w->tx, data, (size_t)len) < 0)
        return -1;
    return len;
}

static long tb_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct pstream *s = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return s ? (long)rx_avail(s) : 0;
    case BIO_CTRL_WPENDING:
        return s && s->w->tx_owner == s ? (long)s->w->tx.len : 0;
    default:
        return 0;
    }
}

static int tb_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int tb_destroy(BIO *b)
{
    BIO_set_data(b, NULL);
    return 1;
}

static void make_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "shoji stream");
    if (!m)
        return;
    if (!BIO_meth_set_write(m, tb_write) || !BIO_meth_set_read(m, tb_read) ||
        !BIO_meth_set_ctrl(m, tb_ctrl) || !BIO_meth_set_create(m, tb_create) ||
        !BIO_meth_set_destroy(m, tb_destroy)) {
        BIO_meth_free(m);
        return;
    }
    g_method = m;
}

int tlsbio_attach(struct pstream *s)
{
    pthread_once(&g_once, make_method);
    if (!g_method)
        return -ENOMEM;
    BIO *r = BIO_new(g_method), *wr = BIO_new(g_method);
    if (!r || !wr) {
        BIO_free(r);
        BIO_free(wr);
        return -ENOMEM;
    }
    BIO_set_data(r, s);
    BIO_set_data(wr, s);
    s->rbio = r;
    s->wbio = wr;
    SSL_set_bio(s->ssl, r, wr);
    return 0;
}

void tlsbio_feed(struct pstream *s, const char *data, size_t len)
{
    s->ext_p = data;
    s->ext_len = len;
}

int tlsbio_keep_rest(struct pstream *s)
{
    if (s->ext_len == 0)
        return 0;
    if (s->rx_off) {   /* keep what is left of rx at its front */
        memmove(s->rx.p, s->rx.p + s->rx_off, s->rx.len - s->rx_off);
        s->rx.len -= s->rx_off;
        s->rx_off = 0;
    }
    int rc = buf_append(&s->rx, s->ext_p, s->ext_len);
    s->ext_p = NULL;
    s->ext_len = 0;
    return rc;
}

void tlsbio_release(struct pstream *s)
{
    if (s->rx.len == s->rx_off) {
        buf_free(&s->rx);
        s->rx_off = 0;
    }
}

int tlsbio_hold(struct pstream *s)
{
    struct worker *w = s->w;
    if (w->tx_owner != s || w->tx.len == 0)
        return 0;
    if (buf_append(&s->held, w->tx.p, w->tx.len) < 0)
        return tlsbio_flush(s);      /* more than a ticket: send it now */
    w->tx_owner = NULL;
    w->tx.len = 0;
    return 0;
}

int tlsbio_flush(struct pstream *s)
{
    struct worker *w = s->w;
    if (w->tx_owner != s || w->tx.len == 0)
        return 0;   /* what is held waits for the stream's next records */
    w->tx_owner = NULL;
    int rc = pstream_raw_write(s, w->tx.p, w->tx.len);
    w->tx.len = 0;
    if (w->tx.cap > TLSBIO_TX_KEEP)
        buf_free(&w->tx);   /* a bulk write's buffer is not kept */
    return rc;
}

void tlsbio_forget(struct pstream *s)
{
    struct worker *w = s->w;
    if (w->tx_owner == s) {
        w->tx_owner = NULL;
        w->tx.len = 0;
    }
    buf_free(&s->rx);
    buf_free(&s->held);
    s->rx_off = 0;
    s->ext_p = NULL;
    s->ext_len = 0;
}
