/* proxy/splice: the zero-copy relay of a pure tunnel.
 *
 * Once a tunnel's two TCP sockets are connected and the bytes shoji had
 * already read (the peeked ClientHello) are flushed, the bytes move
 * socket -> pipe -> socket with splice(2) and never enter user space.
 *
 * Shape:
 *  - a direction (struct splice_dir) holds a pipe only while it has bytes in
 *    flight, and gives it back to the worker's pool (struct splice_pool)
 *    once drained: an idle tunnel holds no pipe and no buffer;
 *  - a destination that cannot take more (EAGAIN) keeps the bytes parked in
 *    the pipe and the source is not read meanwhile (back-pressure);
 *  - EOF from a source: SHUT_WR on the destination once the pipe is empty;
 *  - small reads (< SPLICE_SMALL) are copied through the stack instead;
 *  - when no pipe can be had (EMFILE, ENOMEM) a direction falls back to
 *    read/write through a heap buffer of SPLICE_COPY_CHUNK, freed when drained.
 *
 * The sockets stay owned by libuv (the conn's pstreams); libuv is simply not
 * reading them. Readiness comes from a per-worker epoll instance of our own,
 * itself watched by one uv_poll_t: an epoll registration belongs to its
 * epoll instance, so the same socket in libuv's epoll and ours do not
 * interfere, and no dup()'ed fd per socket is needed.
 *
 * The client's socket, when the client is on this host (loopback, or its
 * address is ours), is switched to SPLICE_LOCAL_CC: the loopback leg has no
 * bottleneck to pace for, and a pacing congestion control (BBR, the
 * default on some kernels) arms a timer per packet sent.
 *
 * Must never: return a pipe holding bytes to the pool, read a source whose
 * bytes are still parked, or write to a destination after its SHUT_WR. */
#ifndef SHOJI_PROXY_SPLICE_H
#define SHOJI_PROXY_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct worker;

#ifndef SPLICE_PIPE_SIZE
/* F_SETPIPE_SZ of each pipe: 1 MiB moved a MiB for 0.6x the CPU of 256 KiB
 * and 0.45x that of the 64 KiB default (4 MiB was worse again); it is also
 * /proc/sys/fs/pipe-max-size, the most an unprivileged process may ask for.
 * Only capacity: an empty pipe holds no pages. See docs/PERFORMANCE.md. */
#define SPLICE_PIPE_SIZE (1024u * 1024)
#endif
#define SPLICE_POOL_MAX 8                /* empty pipes kept per worker */
#define SPLICE_COPY_CHUNK (64u * 1024)   /* fallback buffer when no pipe can be had */
#define SPLICE_BUDGET (2u << 20)         /* bytes per direction per event (fairness) */
/* A direction whose reads are smaller than this (an interactive exchange,
 * a handshake) copies them through the stack: for a few hundred bytes
 * recv+send is cheaper than moving page references through a pipe. The
 * first read that fills it switches the direction back to splice. */
#define SPLICE_SMALL 4096

/* Congestion control of a tunnel's client leg on this host: "reno" is
 * built in and always allowed unprivileged (tcp_allowed_congestion_control);
 * it does not pace. With BBR the agent's CPU per MiB relayed was ~30%
 * higher (the pacing hrtimer per packet). See docs/PERFORMANCE.md. */
#ifndef SPLICE_LOCAL_CC
#define SPLICE_LOCAL_CC "reno"
#endif

struct splice_pipe {
    int rd, wr;                /* -1: none */
};

/* Empty pipes of one worker (one thread: no locking). */
struct splice_pool {
    struct splice_pipe free[SPLICE_POOL_MAX];
    unsigned nfree;
    size_t want_size;          /* F_SETPIPE_SZ asked for each new pipe */
    uint64_t created;          /* pipes made */
    uint64_t failed;           /* pipe2 failures (fallback to copying) */
};

void splice_pool_init(struct splice_pool *p, size_t pipe_size);
/* An empty pipe: from the pool, or a new one. 0, or -errno (EMFILE...). */
int splice_pool_take(struct splice_pool *p, struct splice_pipe *out);
/* Gives back an EMPTY pipe (kept, or closed past SPLICE_POOL_MAX). */
void splice_pool_give(struct splice_pool *p, struct splice_pipe *pp);
void splice_pool_clear(struct splice_pool *p);   /* closes every kept pipe */

/* One direction: src socket -> dst socket. */
struct splice_dir {
    int src, dst;
    struct splice_pipe pipe;   /* held while bytes are in flight */
    char *copy;                /* fallback: bytes read, not yet written */
    size_t copy_off;
    size_t parked;             /* bytes in the pipe (or copy) not yet written */
    size_t last_in;            /* bytes of the last read from src */
    uint64_t moved;            /* bytes read from src, in total */
    bool src_eof;              /* src sent FIN (read returned 0) */
    bool dst_shut;             /* SHUT_WR done on dst */
    bool copy_only;            /* splice refused (EINVAL): read/write only */
    bool bulk;                 /* the last read was >= SPLICE_SMALL: splice */
};

enum splice_want {
    SPLICE_DONE = 0,           /* src finished, drained, dst shut */
    SPLICE_WANT_READ = 1,      /* call again when src is readable */
    SPLICE_WANT_WRITE = 2,     /* bytes parked: call again when dst is writable */
};

void splice_dir_init(struct splice_dir *d, int src, int dst);
/* Moves bytes until src has none, dst is full, or `budget` bytes were read.
 * Returns an enum splice_want, or -errno (the tunnel is broken). */
int splice_dir_pump(struct splice_dir *d, struct splice_pool *p, size_t budget);
/* Drops what the direction holds: an empty pipe goes back to the pool, a
 * pipe with bytes in it is closed, the copy buffer is freed. */
void splice_dir_release(struct splice_dir *d, struct splice_pool *p);

/* Whether a socket whose ends are `self` and `peer` stays on this host:
 * peer on loopback (127/8, ::1, ::ffff:127/104) or peer address == ours.
 * `self` may be NULL (loopback only). */
struct sockaddr_storage;
bool splice_peer_is_local(const struct sockaddr_storage *self, const struct sockaddr_storage *peer);
/* TCP socket `fd`: SPLICE_LOCAL_CC when its peer is on this host. 1 set,
 * 0 not local (left alone), or -errno. */
int splice_local_cc(int fd);

/* conn.c hooks. Turns a CS_TUNNEL conn whose streams are plain TCP, with
 * nothing pending either way, into a spliced tunnel; false (nothing
 * changed) when it cannot: the copy relay goes on. */
bool splice_tunnel_start(struct conn *c);
/* Unhooks the splice relay (idempotent); the pstreams are left to the caller. */
void splice_tunnel_stop(struct conn *c);
/* After the worker's loop closed its handles: the epoll fd and the pool. */
void splice_worker_free(struct worker *w);

#endif
