/* proxy internals shared by the files of src/proxy/ (not a public header).
 *
 * Shape: each worker thread runs one libuv loop with its own SO_REUSEPORT
 * listener. A client connection (struct conn) owns up to two streams
 * (struct pstream): the client side and the upstream side. A pstream is a
 * TCP handle plus, when TLS is terminated, an SSL object over memory BIOs;
 * it delivers plaintext into its `in` buffer and takes plaintext to write.
 * The conn's state machine (conn.c) reads the request head, handles CONNECT
 * (peek -> decide -> tunnel or decode), and forward.c carries one HTTP
 * exchange at a time. Upstream streams of plain HTTP go back to a
 * per-worker idle pool (upstream.c) after a clean exchange. A pure tunnel
 * leaves the streams' reads once started and is relayed by splice.c. */
#ifndef SHOJI_PROXY_INTERNAL_H
#define SHOJI_PROXY_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "http/http1.h"
#include "log/access.h"
#include "log/events.h"
#include "platform/platform.h"
#include "policy/learned.h"
#include "policy/policy.h"
#include "proxy/certmemo.h"
#include "proxy/hosts.h"
#include "proxy/syshosts.h"
#include "proxy/proxy.h"
#include "tls/ca.h"
#include "tls/clienthello.h"
#include "tls/mint.h"
#include "util/buf.h"

#define PSTREAM_READ_CHUNK 16384
#define PSTREAM_MIN_ROOM 2048              /* grow the input buffer below this room */
#define FWD_PIPELINE_MAX (64u * 1024)      /* pipelined bytes held during an exchange */
#define PSTREAM_IN_MAX (256u * 1024)       /* unconsumed plaintext per stream */
#define PSTREAM_HIGH_WATER (512u * 1024)   /* stop reading the source above this */
#define PSTREAM_LOW_WATER (64u * 1024)     /* resume below this */
#define PSTREAM_CORK_MAX (16u * 1024)      /* one TLS record's worth */

struct conn;
struct worker;
struct splice_tunnel;   /* proxy/splice.h */
struct splice_worker;
struct tls_names;      /* tls/mint.h */

enum pstream_side { SIDE_CLIENT = 0, SIDE_UPSTREAM = 1 };

struct pstream {
    uv_tcp_t tcp;
    struct worker *w;
    struct conn *conn;         /* NULL while idle in the pool */
    enum pstream_side side;
    SSL *ssl;                  /* NULL: plaintext */
    BIO *rbio, *wbio;          /* owned by ssl (tlsbio.c) */
    struct buf rx;             /* ciphertext left over by the last read */
    size_t rx_off;
    const char *ext_p;         /* ciphertext of the read being processed */
    size_t ext_len;
    struct buf held;           /* TLS records kept back for the next write (tlsbio_hold) */
    bool handshake_done;
    bool tls_hot;              /* TLS records moved since the last idle sweep */
    bool tls_bufs_held;        /* OpenSSL may hold record buffers (~34 KiB) */
    bool want_read;            /* the engine wants bytes */
    bool reading;              /* uv_read_start is active */
    bool eof;                  /* peer finished sending */
    bool closing;
    bool shut;                 /* shutdown requested/done */
    bool lingering;            /* FIN sent; discarding input until the peer's */
    size_t linger_bytes;
    int tls_alert;             /* fatal alert received from the peer, or -1 */
    bool close_notify;         /* the peer ended TLS with close_notify */
    bool corked;               /* writes collect in `cork` until uncorked */
    struct buf cork;           /* plaintext held back to go out as one write */
    int error;                 /* last uv error, 0 if none */
    struct buf in;             /* plaintext received, not yet consumed */
    size_t pending;            /* bytes queued in uv writes */
    uint64_t bytes_read, bytes_written;  /* plaintext */
    /* pool bookkeeping */
    char pool_key[300];
    char peer_addr[64];        /* "ip:port", once asked (sockaddr_fmt_peer) */
    union {                    /* the peer's address, once asked (pstream_peer) */
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } peer_sa;
    uint64_t pool_since_ms;
    struct pstream *pool_next, *pool_prev;
};

enum conn_state {
    CS_HEAD = 0,       /* reading a request head from the client */
    CS_PEEK,           /* CONNECT accepted, waiting for the first client bytes */
    CS_CONNECTING,     /* resolving / connecting upstream */
    CS_UP_HANDSHAKE,   /* TLS handshake with the origin (decode) */
    CS_CL_HANDSHAKE,   /* TLS handshake with the client (decode) */
    CS_EXCHANGE,       /* an HTTP request/response in flight */
    CS_TUNNEL,         /* raw relay both ways */
    CS_CLOSING,
};

enum conn_kind { CK_HTTP = 0, CK_DECODE, CK_TUNNEL };

/* One HTTP exchange (request + response) in flight. Exchanges come from
 * their worker's spare list (expool.c), so a keep-alive request allocates
 * nothing: a reused exchange keeps its head_copy block. */
struct exchange {
    char *head_copy;           /* the request head bytes (owned, kept on reuse) */
    size_t head_cap;           /* head_copy's size */
    /* from here on, zeroed for every request but the header arrays */
    struct http_request req;   /* views into head_copy */
    size_t head_len;
    bool req_body_done;
    uint64_t req_body_left;    /* LENGTH */
    struct http_chunked req_chunk;
    bool resp_head_done;
    struct http_response resp;
    uint64_t resp_body_left;
    struct http_chunked resp_chunk;
    bool resp_done;
    bool upstream_reusable;
    bool client_keep_alive;
    bool sent_to_upstream;     /* the head went out */
    int status;                /* what the client got */
    uint64_t req_bytes, resp_bytes;
    uint64_t t_start_us, t_start_ms;
    char url[2048];
    char host[256];
    char method[24];
    uint16_t port;
    const char *error;         /* for the log */
    uint64_t request_id;
    bool resp_head_sent;
    bool retried;              /* sent again on a new connection once */
    uint64_t up_read_mark;     /* c->up->bytes_read when the head went out */
    bool logged;
    bool blocked;
    bool client_eof;
    bool reused_upstream;
    bool verdict_set;
    struct policy_verdict verdict;
    char path_rewrite[2048];   /* safe search: the rewritten path + query */
    char extra_headers[128];   /* safe search: enforced fields */
    const char *drop_header;   /* a client field replaced by an enforced one */
};

struct conn {
    struct worker *w;
    enum conn_state state;
    enum conn_kind kind;
    struct pstream *client;
    struct pstream *up;
    uv_timer_t timer;
    int refs;                  /* open handles + pending requests */
    bool dead;                 /* closing: ignore further events */
    char client_addr[64];      /* "ip:port" */
    char dst_addr[64];         /* upstream "ip:port" once connected */
    uint64_t id;
    /* CONNECT */
    char target_host[256];     /* CONNECT host (lower-case) */
    uint16_t target_port;
    struct tls_hello hello;
    bool have_hello;
    char verify[160];          /* upstream verification: "ok" or the reason */
    bool verify_failed;
    uint64_t t_connect_us, t_connect_ms;
    uint64_t tunnel_in, tunnel_out;
    /* resolving/connecting */
    uv_getaddrinfo_t gai;
    uv_connect_t connect_req;
    struct sockaddr_storage addrs[8];
    size_t naddrs, addr_idx;
    bool upstream_tls;         /* connect then TLS (decode) */
    bool up_idle;              /* decode: c->up is between requests (reusable) */
    bool up_pinned;            /* decode: c->up carries connection-based auth */
    bool up_hs_open;           /* decode: the client's handshake began on the origin's
                                  certificate; the origin's handshake is still going */
    bool cl_waits_origin;      /* ... and the client's ended first: it waits, paused */
    int last_connect_error;
    bool resolving;
    void (*on_connected)(struct conn *c, int status, const char *why);
    struct exchange *ex;
    struct policy *policy;     /* reference held for the connection */
    struct policy_verdict verdict;  /* the connection-level decision */
    struct policy_verdict connect_block; /* CONNECT said block, decodable */
    bool connect_blocked;
    bool tunnel_rule_set;
    const char *tunnel_mode;   /* "tunnel" / "bypass" for the log */
    bool block_rule_logged;
    bool timer_closing;
    bool upstream_failed;      /* decode: the origin could not be reached */
    int upstream_status;       /* 502/504 for the error page */
    struct conn *next, *prev;  /* the worker's list of connections */
    bool transparent;          /* redirected by nftables, not a proxy client */
    bool client_on_loopback_listener;   /* accepted on 127/8 or ::1 (local CC set) */
    struct sockaddr_storage orig_dst;  /* transparent: where the client wanted to go */
    char orig_ip[64];          /* orig_dst's address as text */
    bool sni_checked;          /* transparent: the SNI claim was checked */
    bool sni_rejected;         /* ... and found false: decide on the address */
    struct platform_proc proc; /* the application that owns the client socket */
    bool have_proc;
    bool ident_pending;        /* proc being looked up off the loop (ident.c) */
    struct conn *ident_next;   /* the worker's queue of connections waiting for it */
    bool evented;              /* an open event was published */
    size_t head_scanned;       /* bytes of client->in already searched for a line end */
    bool head_deadline_set;    /* the header timeout runs for this head */
    bool peek_extended;        /* a stalled ClientHello got the handshake time */
    unsigned requests;         /* requests seen on this connection */
    uint64_t hs_done_us;       /* when the client handshake finished (decode) */
    char cert_name[128];       /* the origin certificate's first name, for watch */
    struct splice_tunnel *splice;   /* a spliced tunnel (splice.c), NULL: copy relay */
    /* early origin connection (early.c): opened at CONNECT, still the
     * client's to adopt or drop; c->state stays CS_PEEK meanwhile */
    bool early;
    bool early_done;           /* ... and finished: early_status, early_why */
    enum conn_state early_state;    /* CS_CONNECTING / CS_UP_HANDSHAKE */
    int early_status;
    char early_why[160];
    void (*early_next)(struct conn *c);   /* runs once a dropped one settled */
};

struct pool {
    struct pstream *head, *tail;
    unsigned n;
};

/* Counters behind GET /metrics (Prometheus text format). */
struct proxy_metrics {
    atomic_uint_fast64_t connections, requests, decoded, tunnels, bypassed, blocked,
        verify_failures, upstream_errors, client_rejections, conflicts_learned, bad_requests,
        overload_refusals, upstream_reused, upstream_retried, upstream_early,
        upstream_early_dropped;
};

/* Shared by all workers; read-only after start except the atomics and the
 * reloadable pointers (swapped under `lock`). */
struct proxy_shared {
    const struct proxy_config *cfg;
    struct tls_ca ca;
    struct tls_minter *minter;
    SSL_CTX *up_ctx;           /* upstream TLS client */
    SSL_CTX *srv_ctx;          /* client-facing TLS server */
    struct access_log *alog;
    pthread_mutex_t lock;
    struct policy *policy;     /* guarded by lock */
    struct hosts *hosts;       /* guarded by lock; refcount via hosts_refs */
    struct syshosts syshosts;  /* /etc/hosts, answered in-process (syshosts.h) */
    atomic_uint conns;         /* client connections open, all workers */
    atomic_uint_fast64_t next_id;
    atomic_bool stopping;
    struct learned *learned;   /* automatic conflict avoidance (thread-safe) */
    struct events *events;     /* live feed for `shoji watch` */
    struct certmemo *certmemo; /* host:port -> origin certificate names */
    struct proxy_metrics m;
    struct platform_cidr allow[32];   /* --allow-clients; empty: loopback only */
    size_t nallow;
    pthread_mutex_t learned_save_lock;
    struct mgmt *mgmt;         /* enrolled: the management-server sync thread */
    char managed_policy[4096]; /* enrolled without --policy: STATE/policy.managed.json */
};

#define BUFPOOL_MAX 64          /* spare blocks kept per worker (1 MiB) */
#define EXPOOL_MAX 16           /* spare exchanges kept per worker (~240 KiB) */
struct bufpool {
    char *blocks[BUFPOOL_MAX];
    unsigned n;
};

struct worker {
    int index;
    uv_loop_t loop;
    uv_tcp_t listener;
    struct sockaddr_storage listen_self;   /* its address, if not a wildcard */
    bool has_listen_self;
    uv_tcp_t tlistener;        /* transparent listener (when configured) */
    bool has_tlistener;
    uv_tcp_t tlistener6;       /* its IPv6 loopback twin (nftables redirects v6 to ::1) */
    bool has_tlistener6;
    bool listener_loopback, tlistener_loopback;   /* bound to 127/8 or ::1 */
    uv_async_t wake;           /* stop / reload notifications */
    uv_timer_t pool_timer;
    uv_prepare_t log_flush;    /* access-log batches (worker.c) */
    uv_timer_t log_timer;
    uv_thread_t thread;
    struct proxy_shared *sh;
    struct pool pool;
    unsigned nconns;
    struct conn *conns;        /* list of open connections */
    uv_timer_t stop_timer;
    struct platform_proc_cache *proc_cache;
    struct bufpool bufs;       /* spare stream input buffers (bufpool.c) */
    struct exchange *ex_spare[EXPOOL_MAX];   /* spare exchanges (expool.c) */
    unsigned nex_spare;
    bool ex_taken;             /* an exchange was taken since the last sweep */
    struct buf head_out;       /* a request or response head being written (expool.c) */
    struct buf tx;             /* ciphertext to send, of one stream (tlsbio.c) */
    struct pstream *tx_owner;
    struct ident_walker *ident;   /* the /proc walk off the loop (ident.c) */
    bool stopping;
    bool listener_closed;
    uint64_t stop_deadline_ms;
    char scratch[65536];       /* ciphertext read buffer for TLS streams */
    struct splice_worker *splice;  /* spliced tunnels' epoll and pipe pool (splice.c) */
};

/* Whether `listener` (one of w's) is bound to a loopback address: its
 * sockets inherited the local congestion control (worker.c). */
bool worker_listener_loopback(const struct worker *w, const uv_stream_t *listener);

/* bufpool.c: each stream's plaintext input buffer comes from its worker's
 * small free list of PSTREAM_READ_CHUNK blocks and goes back to it when the
 * stream is idle, so keep-alive traffic neither calls malloc per request nor
 * holds a buffer per idle connection. */
/* Makes room for at least `min_room` more bytes in s->in (a pooled block
 * when it has none; growing, up to its max, only when the room is short). */
int pstream_in_room(struct pstream *s, size_t min_room);
/* Gives an empty input buffer back to the pool (or frees it). */
void pstream_in_release(struct pstream *s);
void bufpool_drain(struct bufpool *bp);

/* expool.c: the worker's spare exchanges and its head-writing buffer, so a
 * keep-alive request calls malloc for neither. Spares left untouched for a
 * whole sweep period (1 s) are freed: an idle agent holds none. */
/* A zeroed exchange (but for its header arrays, which the HTTP parsers fill
 * and count themselves, and its head_copy block); NULL when out of memory. */
struct exchange *expool_take(struct worker *w);
/* Room for a request head of `len` bytes in ex->head_copy: 0, or -1 when
 * out of memory (the exchange is still whole: give it back). */
int expool_head_room(struct exchange *ex, size_t len);
/* Back to the spare list, or freed when it is full; NULL is a no-op. */
void expool_give(struct worker *w, struct exchange *ex);
/* The once-a-second sweep: frees the spares if none was taken since the
 * last one. */
void expool_sweep(struct worker *w);
void expool_drain(struct worker *w);
/* The worker's buffer for writing one head, emptied, its bound `max`:
 * valid until the next call (the caller hands it to pstream_write, which
 * copies). */
struct buf *expool_head_buf(struct worker *w, size_t max);

/* tlsbio.c: the BIO under every stream's SSL. Reads come straight from the
 * socket read's buffer (what a read leaves, a partial record, is kept in
 * s->rx); writes collect in the worker's tx buffer and go to the socket with
 * one write per flush (pstream_raw_write). Single-threaded per worker: bytes
 * of one stream are flushed before another stream writes. */
#define TLSBIO_TX_KEEP (64u * 1024)        /* tx flushed past this; larger freed */
#define TLSBIO_TX_MAX (TLSBIO_TX_KEEP + 32u * 1024)
#define TLSBIO_RX_MAX (256u * 1024)        /* kept ciphertext when reading stops */
#define TLSBIO_HELD_MAX (4u * 1024)        /* records held back (a TLS 1.3 ticket) */
int tlsbio_attach(struct pstream *s);              /* after SSL_new */
void tlsbio_feed(struct pstream *s, const char *data, size_t len);
int tlsbio_keep_rest(struct pstream *s);           /* copy what the engine left */
void tlsbio_release(struct pstream *s);            /* drop an empty rx buffer */
int tlsbio_flush(struct pstream *s);
/* Keeps what the engine wrote so far (the TLS 1.3 session ticket sent after
 * the handshake) off the socket: it leaves in front of the stream's next
 * records (a response, or the close_notify), one segment instead of two. */
int tlsbio_hold(struct pstream *s);
void tlsbio_forget(struct pstream *s);             /* the stream is going away */
int pstream_raw_write(struct pstream *s, const char *data, size_t len);

/* stream.c */
struct pstream *pstream_new(struct worker *w, struct conn *c, enum pstream_side side);
void pstream_attach(struct pstream *s, struct conn *c);
int pstream_start(struct pstream *s);        /* begin reading (want_read = true) */
void pstream_pause(struct pstream *s);       /* stop reading */
void pstream_resume(struct pstream *s);
/* pstream_resume unless the stream is already reading (no TLS pump, no
 * event-loop change). */
void pstream_keep_reading(struct pstream *s);
int pstream_write(struct pstream *s, const void *data, size_t len);
int pstream_tls_server(struct pstream *s, SSL_CTX *ctx, X509 *leaf, EVP_PKEY *key);
int pstream_tls_client(struct pstream *s, SSL_CTX *ctx, const char *host);
/* Feeds bytes already read as plaintext (a replayed ClientHello) into the
 * TLS engine of a stream that just became TLS. */
int pstream_tls_feed(struct pstream *s, const char *data, size_t len);
void pstream_shutdown_close(struct pstream *s); /* flush, close_notify, FIN, close */
void pstream_close(struct pstream *s);          /* close now */
void pstream_shutdown_write(struct pstream *s); /* half-close: FIN after pending writes */
/* Cork: writes until the uncork go out together (one TLS record and one
 * socket write for a small response head and body). Shutdowns uncork. */
void pstream_cork(struct pstream *s);
int pstream_uncork(struct pstream *s);
void pstream_detach(struct pstream *s);         /* conn no longer owns it */
/* Once a second (the worker's pool timer): a TLS stream that moved no record
 * since the previous sweep gives OpenSSL's record buffers back. Keep-alive
 * traffic keeps its buffers instead of allocating them for every record. */
bool pstream_sweep_idle_tls(struct pstream *s);   /* true: it freed them now */

/* conn.c: events from streams. */
void conn_on_data(struct conn *c, struct pstream *s);
void conn_on_eof(struct conn *c, struct pstream *s);
void conn_on_error(struct conn *c, struct pstream *s, int err);
void conn_on_drain(struct conn *c, struct pstream *s);
void conn_on_handshake(struct conn *c, struct pstream *s);
void conn_on_peer_cert(struct conn *c, struct pstream *s);
void conn_on_stream_closed(struct conn *c, struct pstream *s);
void conn_accept(struct worker *w, uv_stream_t *listener, bool transparent);
const char *conn_connect_host(const struct conn *c);
void conn_close(struct conn *c);
void conn_maybe_free(struct conn *c);
void conn_set_timer(struct conn *c, unsigned ms);
void conn_start_head(struct conn *c);
void conn_log_tunnel(struct conn *c, const char *mode, const char *error);
void conn_fill_facts(struct conn *c, struct policy_facts *f);
/* The CERT-phase policy on the origin certificate's names (tls_names_from_cert). */
bool conn_cert_phase(struct conn *c, const struct tls_names *names);
void conn_client_rejected(struct conn *c, int alert);
void conn_log_decision(struct conn *c, int status, const char *action,
                       const struct policy_verdict *v);
void conn_log_error(struct conn *c, int status, const char *error);
void conn_record_app(const struct conn *c, struct access_record *r);
void conn_ident_ready(struct conn *c);

/* ident.c: the socket -> process lookup of an accepted connection. */
void ident_start(struct conn *c, const struct sockaddr_storage *peer);
void ident_conn_closed(struct conn *c);    /* its fd is likely the owner's next */
void ident_worker_free(struct worker *w);  /* after the loop is closed */
void conn_event(struct conn *c, char kind, const char *url, const char *verdict,
                const char *rule, int status);
void metrics_render(struct proxy_shared *sh, struct buf *out);

/* forward.c: HTTP exchanges. */
void fwd_begin(struct conn *c);              /* a request head is in client->in */
void fwd_on_client_data(struct conn *c);
void fwd_on_upstream_data(struct conn *c);
void fwd_on_upstream_eof(struct conn *c);
void fwd_on_client_eof(struct conn *c);
void fwd_on_drain(struct conn *c, struct pstream *s);
void fwd_timeout(struct conn *c);
void fwd_send_block(struct conn *c, struct exchange *ex);
void fwd_block_done(struct conn *c, bool close_after);
/* Sends a complete error/info page and finishes the exchange. */
void fwd_send_page(struct conn *c, int status, const char *title, const char *detail,
                   bool close_after);

/* upstream.c */
void up_connect(struct conn *c, const char *host, uint16_t port, bool tls,
                void (*done)(struct conn *c, int status, const char *why));
struct pstream *up_pool_take(struct worker *w, const char *key);
/* Decoded connections: between requests, the origin connection of a decoded
 * client connection waits in the worker's pool, keyed by what it was opened
 * for (user, address, port, SNI). The next request of that client, or of
 * another connection of the same user to the same origin, takes it from
 * there, so idle client connections hold no origin connection and a new
 * client connection needs no origin handshake (the pooled connection's
 * certificate, already checked, decides). Connection-based authentication
 * (NTLM, Negotiate) pins the origin connection to its client connection. */
void conn_park_upstream(struct conn *c);
bool conn_take_pooled_upstream(struct conn *c);
bool conn_take_upstream_for_request(struct conn *c);
void up_pool_put(struct worker *w, struct pstream *s, const char *key);
void up_pool_drop(struct worker *w, struct pstream *s);
void up_pool_expire(struct worker *w, bool all);
void up_connect_timeout(struct conn *c);
/* Ends a connect attempt: calls the conn's on_connected once. up_fail also
 * closes the half-made upstream stream. */
void up_finish(struct conn *c, int status, const char *why);
void up_fail(struct conn *c, int status, const char *why);
/* Where the origin connection stands (CS_CONNECTING, CS_UP_HANDSHAKE):
 * c->state, or early_state while an early connection is still the
 * client's to adopt. */
enum conn_state up_state(const struct conn *c);
bool up_pool_has(struct worker *w, const char *key);

/* conn.c, for early.c */
bool conn_pool_key(const struct conn *c, char *key, size_t cap);
bool conn_memo_known(struct conn *c);   /* its certificate was seen in the last hour */
void conn_on_decode_upstream(struct conn *c, int status, const char *why);
void conn_act_on_verdict(struct conn *c);  /* carries out c->verdict (peek phase) */

/* early.c: the origin connection of a decoded CONNECT, opened at CONNECT
 * time with the CONNECT host as SNI, while the client receives "200" and
 * prepares its ClientHello (the name lookup, TCP and the origin's TLS
 * handshake overlap that round trip). The ClientHello's verdict adopts it
 * when it is a decode of the same name; otherwise it is dropped (closed
 * once it settled) and the verdict is carried out as without it. */
void early_maybe_start(struct conn *c, const struct policy_verdict *v);
/* The verdict `v` can use the early connection: decode, same name. */
bool early_fits(const struct conn *c, const struct policy_verdict *v);
/* Decode with it: now, or when it finishes (conn_on_decode_upstream).
 * False when it was lost meanwhile (the origin closed it after its
 * handshake): dropped, and the caller goes on as without it. */
bool early_adopt(struct conn *c);
/* Not used: closed, then `next` runs (at once, or once a name lookup or
 * TCP connect in flight settles). */
void early_then(struct conn *c, void (*next)(struct conn *c));
/* The connection closes with an early connection unused: counted dropped
 * (conn_close closes the stream). */
void early_conn_closed(struct conn *c);

/* pages.c */
int page_render(struct buf *out, int status, const char *title, const char *detail,
                const char *host, uint64_t request_id, bool close_after);
void proxy_pac_render(struct buf *out, const char *listen);

/* worker.c */
struct policy *proxy_policy_get(struct proxy_shared *sh);
/* The --hosts file, then /etc/hosts (syshosts.h): 0 when neither lists it. */
size_t proxy_hosts_lookup(struct proxy_shared *sh, const char *name,
                          struct sockaddr_storage *out, size_t max);
void sockaddr_fmt(const struct sockaddr *sa, char *out, size_t cap);
void sockaddr_fmt_peer(struct pstream *s, char *out, size_t cap);
/* The address `s` is connected to, asked of the kernel once per socket (a
 * pooled upstream serves many connections). 0, or a negative uv error. */
int pstream_peer(struct pstream *s, struct sockaddr_storage *out);
bool sockaddr_same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* 127/8, ::1 or ::ffff:127/104. */
bool sockaddr_is_loopback(const struct sockaddr_storage *a);
bool sockaddr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
bool proxy_client_allowed(const struct proxy_shared *sh, const struct sockaddr_storage *peer);

#endif
