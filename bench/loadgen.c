/* loadgen: the HTTPS load generator of `make bench` (bench/run.sh).
 * Speaks HTTPS directly or through an HTTP CONNECT proxy, and plain HTTP
 * directly or through a proxy (absolute-form requests). One epoll loop,
 * non-blocking sockets, OpenSSL over the sockets. Every response is checked
 * (status 200, Content-Length, optional expected length); failures are
 * counted, never hidden. Always bounded: -n requests and -t seconds.
 * Modes:
 *   ka    C keep-alive connections (CONNECT + TLS once), requests back to back
 *   new   a fresh TCP + CONNECT + full TLS handshake per request (no resumption)
 *   bulk  like ka, for big files: reports MB/s of body
 *   rate  fixed rate R req/s over C keep-alive connections; latency measured
 *         from the scheduled time (no coordinated omission)
 *   hold  open H connections (CONNECT + TLS + one request), keep them idle and
 *         report the watched processes' RSS per held connection
 * --watch PID (repeatable) samples CPU time (utime+stime, and stime alone) and
 * RSS of PID and all its descendants over the measured interval (after the
 * warm-up; /proc/PID/stat of a process sums all its threads, live and
 * exited). Prints one JSON object.
 * Must never: run unbounded, or report a response it did not verify. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum mode { M_KA, M_NEW, M_BULK, M_RATE, M_HOLD };
enum cstate { S_CONNECTING, S_PROXY_REQ, S_PROXY_RESP, S_TLS, S_SEND, S_HEAD,
              S_BODY, S_IDLE };
enum errk { E_CONNECT, E_PROXY, E_TLS, E_STATUS, E_LENGTH, E_CLOSED, E_TIMEOUT,
            E_PROTO, E_COUNT };
static const char *err_names[E_COUNT] = { "connect", "proxy", "tls", "status",
    "length", "closed", "timeout", "protocol" };

#define HEAD_CAP 8192
#define MAX_WATCH 16
#define MAX_PROCS 512

struct opts {
    enum mode mode;
    char proxy[256];
    char target_host[256];
    int target_port;
    const char *path;
    const char *cafile;
    bool plain;
    int conns;
    long n;
    double t, warmup, rate, hold_time, io_timeout;
    long expect_len;
    int hold;
    const char *ready_file;
    const char *label;
    const char *lat_log; /* --lat-log: "scheduled_us latency_us" per measured request */
    pid_t watch[MAX_WATCH];
    int nwatch;
};

struct conn {
    int fd;
    SSL *ssl;
    enum cstate st;
    uint32_t events;
    size_t out_off;
    char head[HEAD_CAP];
    size_t head_len;
    long body_left;
    int status;
    long clen;
    bool close_after;
    uint64_t t_start_us, t_progress_us;
    bool in_use;
};

struct procsnap {
    int n;
    pid_t pid[MAX_PROCS];
    unsigned long long ticks[MAX_PROCS];  /* utime + stime */
    unsigned long long sticks[MAX_PROCS]; /* stime (in the kernel) */
    long rss_kib;
};

struct run {
    struct opts o;
    int ep;
    SSL_CTX *ctx;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char proxy_req[600];
    size_t proxy_req_len;
    char req[1200];
    size_t req_len;
    struct conn *conns;
    int nconns, active;
    long issued, done, errors_total, bytes_body;
    long errs[E_COUNT];
    uint64_t t0_us, deadline_us, last_done_us;
    uint32_t *lat;
    long nlat, caplat;
    bool stopping, warm;
    long scheduled; /* rate mode: requests whose time has come */
    long queued;    /* rate mode: scheduled but not yet sent */
    struct procsnap snap0;
    long rss_max_kib, rss_idle_kib;
    uint64_t next_rss_us;
    long established; /* hold mode: connections that completed a request */
    long unfinished;  /* hold mode: handshakes still going when -t ran out */
    double self_cpu0; /* this process's CPU seconds at the start of measuring */
    FILE *lat_log;    /* --lat-log, open while running */
    long opened;      /* TCP connections opened while measuring */
    long idle;        /* connections in S_IDLE */
};

static char scratch[1 << 16];

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- /proc sampling of the proxy under test ---- */

static int proc_stat(pid_t pid, pid_t *ppid, unsigned long long *ticks,
                     unsigned long long *sticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    char state;
    int pp;
    unsigned long long ut, stt;
    if (sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &state, &pp, &ut, &stt) != 4)
        return -1;
    *ppid = pp;
    *ticks = ut + stt;
    *sticks = stt;
    return 0;
}

static long proc_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static bool in_set(const pid_t *set, int n, pid_t p)
{
    for (int i = 0; i < n; i++)
        if (set[i] == p)
            return true;
    return false;
}

/* The watched pids and all their descendants, with CPU ticks and RSS sum. */
static void snap_take(const struct opts *o, struct procsnap *s)
{
    static pid_t all[4096], par[4096];
    static unsigned long long tk[4096], stk[4096];
    int na = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d)) && na < 4096) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t p = (pid_t)atoi(de->d_name);
        if (proc_stat(p, &par[na], &tk[na], &stk[na]) == 0)
            all[na++] = p;
    }
    if (d)
        closedir(d);
    s->n = 0;
    for (int i = 0; i < o->nwatch && s->n < MAX_PROCS; i++)
        s->pid[s->n++] = o->watch[i];
    for (bool grew = true; grew;) { /* transitive closure over ppid */
        grew = false;
        for (int i = 0; i < na && s->n < MAX_PROCS; i++)
            if (!in_set(s->pid, s->n, all[i]) && in_set(s->pid, s->n, par[i])) {
                s->pid[s->n++] = all[i];
                grew = true;
            }
    }
    s->rss_kib = 0;
    for (int i = 0; i < s->n; i++) {
        s->ticks[i] = s->sticks[i] = 0;
        for (int j = 0; j < na; j++)
            if (all[j] == s->pid[i]) {
                s->ticks[i] = tk[j];
                s->sticks[i] = stk[j];
            }
        s->rss_kib += proc_rss_kib(s->pid[i]);
    }
}

/* CPU seconds used between the snapshots (kernel part only if `sys`). */
static double snap_cpu_s(const struct procsnap *a, const struct procsnap *b, bool sys)
{
    unsigned long long sum = 0;
    for (int i = 0; i < b->n; i++) {
        unsigned long long before = 0, now = sys ? b->sticks[i] : b->ticks[i];
        for (int j = 0; j < a->n; j++)
            if (a->pid[j] == b->pid[i])
                before = sys ? a->sticks[j] : a->ticks[j];
        if (now > before)
            sum += now - before;
    }
    return (double)sum / (double)sysconf(_SC_CLK_TCK);
}

static void sample_rss(struct run *r)
{
    if (!r->o.nwatch || now_us() < r->next_rss_us)
        return;
    struct procsnap s;
    snap_take(&r->o, &s);
    if (s.rss_kib > r->rss_max_kib)
        r->rss_max_kib = s.rss_kib;
    r->next_rss_us = now_us() + 500000;
}

/* ---- statistics ---- */

static int lat_push(struct run *r, uint64_t us)
{
    if (r->nlat == r->caplat) {
        long cap = r->caplat ? r->caplat * 2 : 65536;
        uint32_t *p = realloc(r->lat, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        r->lat = p;
        r->caplat = cap;
    }
    r->lat[r->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* ---- connections ---- */

static void set_events(struct run *r, struct conn *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    epoll_ctl(r->ep, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

static void conn_close(struct run *r, struct conn *c)
{
    if (!c->in_use)
        return;
    if (c->st == S_IDLE)
        r->idle--;
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->in_use = false;
    r->active--;
}

static void count_err(struct run *r, enum errk k)
{
    r->errs[k]++;
    r->errors_total++;
}

/* May another request start now? */
static bool may_issue(struct run *r)
{
    if (r->stopping)
        return false;
    if (r->issued >= r->o.n) { /* -n reached: finish what runs, then stop */
        r->stopping = true;
        return false;
    }
    if (now_us() >= r->deadline_us) {
        r->stopping = true;
        return false;
    }
    return true;
}

static int conn_open(struct run *r, struct conn *c)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->in_use = true;
    r->active++;
    r->opened++;
    c->t_start_us = c->t_progress_us = now_us();
    c->st = S_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&r->addr, r->addrlen) < 0 && errno != EINPROGRESS) {
        count_err(r, E_CONNECT);
        conn_close(r, c);
        return -1;
    }
    struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
    c->events = EPOLLOUT;
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &e) < 0) {
        count_err(r, E_CONNECT);
        conn_close(r, c);
        return -1;
    }
    return 0;
}

/* Read/write over TLS or plain: >0 bytes, 0 EOF, -EAGAIN (events set), -EIO. */
static long io_read(struct run *r, struct conn *c, void *buf, size_t len)
{
    if (!c->ssl) {
        ssize_t n = read(c->fd, buf, len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            set_events(r, c, EPOLLIN);
            return -EAGAIN;
        }
        return n < 0 ? -EIO : n;
    }
    int n = SSL_read(c->ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        set_events(r, c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
        return -EAGAIN;
    }
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN ? 0 : -EIO;
}

static long io_write(struct run *r, struct conn *c, const void *buf, size_t len)
{
    if (!c->ssl) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            set_events(r, c, EPOLLOUT);
            return -EAGAIN;
        }
        return n < 0 ? -EIO : n;
    }
    int n = SSL_write(c->ssl, buf, (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        set_events(r, c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
        return -EAGAIN;
    }
    ERR_clear_error();
    return -EIO;
}

static void set_idle(struct run *r, struct conn *c)
{
    c->st = S_IDLE;
    r->idle++;
    set_events(r, c, EPOLLIN);
}

static void begin_request(struct run *r, struct conn *c, uint64_t t_sched)
{
    if (c->st == S_IDLE)
        r->idle--;
    c->st = S_SEND;
    c->out_off = 0;
    c->head_len = 0;
    c->body_left = -1;
    if (r->o.mode != M_NEW)
        c->t_start_us = t_sched ? t_sched : now_us();
    /* the caller writes at once (on_send); EPOLLOUT only if that would block */
}

static void on_send(struct run *r, struct conn *c);

/* The request on `c` finished with or without error; decide what next. */
static void after_response(struct run *r, struct conn *c)
{
    uint64_t t = now_us();
    r->done++;
    r->last_done_us = t;
    lat_push(r, t - c->t_start_us);
    if (r->lat_log && r->warm)
        fprintf(r->lat_log, "%llu %llu\n", (unsigned long long)c->t_start_us,
                (unsigned long long)(t - c->t_start_us));
    if (r->o.mode == M_HOLD) {
        r->established++;
        set_idle(r, c);
        return;
    }
    if (r->o.mode == M_NEW || c->close_after) {
        conn_close(r, c);
        return;
    }
    if (r->o.mode == M_RATE) {
        set_idle(r, c);
        return;
    }
    if (may_issue(r)) {
        r->issued++;
        begin_request(r, c, 0);
        on_send(r, c);
        return;
    }
    conn_close(r, c);
}

/* Connection-level failure: count, close. Lost requests count as errors. */
static void conn_fail(struct run *r, struct conn *c, enum errk k)
{
    count_err(r, k);
    conn_close(r, c);
}

static bool hdr_name_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* Parses a complete response head in c->head[0..end): status, length,
 * connection. Returns 0 or -1 (unusable framing). */
static int parse_head(struct conn *c, size_t end)
{
    c->head[end - 1] = '\0';
    if (strncmp(c->head, "HTTP/1.", 7) != 0 || end < 12)
        return -1;
    c->status = atoi(c->head + 9);
    c->clen = -1;
    c->close_after = c->head[7] == '0';
    for (char *l = strstr(c->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        const char *v = strchr(h, ':');
        if (!v)
            continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        if (hdr_name_is(h, "content-length"))
            c->clen = strtol(v, NULL, 10);
        else if (hdr_name_is(h, "transfer-encoding"))
            return -1;
        else if (hdr_name_is(h, "connection") && strncasecmp(v, "close", 5) == 0)
            c->close_after = true;
    }
    return c->clen < 0 ? -1 : 0;
}

static size_t head_end(const char *p, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
            return i + 1;
    return 0;
}

static void finish_body(struct run *r, struct conn *c)
{
    if (c->status != 200)
        count_err(r, E_STATUS);
    else if (r->o.expect_len >= 0 && c->clen != r->o.expect_len)
        count_err(r, E_LENGTH);
    after_response(r, c);
}

static void on_body(struct run *r, struct conn *c)
{
    while (c->body_left > 0) {
        size_t want = c->body_left < (long)sizeof scratch ? (size_t)c->body_left : sizeof scratch;
        long n = io_read(r, c, scratch, want);
        if (n == -EAGAIN)
            return;
        if (n <= 0)
            return conn_fail(r, c, E_CLOSED);
        c->body_left -= n;
        r->bytes_body += n;
        c->t_progress_us = now_us();
    }
    finish_body(r, c);
}

static void on_head(struct run *r, struct conn *c)
{
    for (;;) {
        if (c->head_len >= HEAD_CAP - 1)
            return conn_fail(r, c, E_PROTO);
        long n = io_read(r, c, c->head + c->head_len, HEAD_CAP - 1 - c->head_len);
        if (n == -EAGAIN)
            return;
        if (n <= 0)
            return conn_fail(r, c, E_CLOSED);
        c->head_len += (size_t)n;
        c->t_progress_us = now_us();
        size_t end = head_end(c->head, c->head_len);
        if (!end)
            continue;
        size_t extra = c->head_len - end;
        if (parse_head(c, end) < 0 || (long)extra > c->clen)
            return conn_fail(r, c, E_PROTO);
        r->bytes_body += (long)extra;
        c->body_left = c->clen - (long)extra;
        c->st = S_BODY;
        return on_body(r, c);
    }
}

static void on_send(struct run *r, struct conn *c)
{
    while (c->out_off < r->req_len) {
        long n = io_write(r, c, r->req + c->out_off, r->req_len - c->out_off);
        if (n == -EAGAIN)
            return;
        if (n <= 0)
            return conn_fail(r, c, E_CLOSED);
        c->out_off += (size_t)n;
    }
    c->st = S_HEAD;
    c->t_progress_us = now_us();
    set_events(r, c, EPOLLIN);
    /* The answer cannot be there yet unless it sits in OpenSSL's read-ahead
     * buffer (level-triggered epoll does not see that): no read to fail. */
    if (c->ssl && SSL_has_pending(c->ssl))
        on_head(r, c);
}

/* The connection is ready for requests: first one, or idle (rate mode). */
static void conn_ready(struct run *r, struct conn *c)
{
    if (r->o.mode == M_RATE)
        return set_idle(r, c);
    if (r->o.mode != M_NEW && r->o.mode != M_HOLD) {
        if (!may_issue(r))
            return conn_close(r, c);
        r->issued++;
    }
    begin_request(r, c, 0);
    on_send(r, c);
}

static void on_tls(struct run *r, struct conn *c)
{
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->t_progress_us = now_us();
        return conn_ready(r, c);
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        set_events(r, c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
        return;
    }
    if (getenv("LOADGEN_DEBUG"))
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    conn_fail(r, c, E_TLS);
}

static void start_tls(struct run *r, struct conn *c)
{
    c->ssl = SSL_new(r->ctx);
    if (!c->ssl)
        return conn_fail(r, c, E_TLS);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, r->o.target_host);
    SSL_set1_host(c->ssl, r->o.target_host);
    SSL_set_connect_state(c->ssl);
    c->st = S_TLS;
    on_tls(r, c);
}

static void after_transport(struct run *r, struct conn *c)
{
    if (r->o.plain)
        conn_ready(r, c);
    else
        start_tls(r, c);
}

static void on_proxy_resp(struct run *r, struct conn *c)
{
    for (;;) {
        if (c->head_len >= HEAD_CAP - 1)
            return conn_fail(r, c, E_PROXY);
        ssize_t n = read(c->fd, c->head + c->head_len, HEAD_CAP - 1 - c->head_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return set_events(r, c, EPOLLIN);
        if (n <= 0)
            return conn_fail(r, c, E_PROXY);
        c->head_len += (size_t)n;
        size_t end = head_end(c->head, c->head_len);
        if (!end)
            continue;
        if (end != c->head_len || strncmp(c->head, "HTTP/1.", 7) != 0 ||
            atoi(c->head + 9) != 200)
            return conn_fail(r, c, E_PROXY);
        c->head_len = 0;
        c->t_progress_us = now_us();
        return after_transport(r, c);
    }
}

static void on_proxy_req(struct run *r, struct conn *c)
{
    while (c->out_off < r->proxy_req_len) {
        ssize_t n = send(c->fd, r->proxy_req + c->out_off, r->proxy_req_len - c->out_off,
                         MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return set_events(r, c, EPOLLOUT);
        if (n <= 0)
            return conn_fail(r, c, E_PROXY);
        c->out_off += (size_t)n;
    }
    c->st = S_PROXY_RESP;
    c->head_len = 0;
    set_events(r, c, EPOLLIN);
}

static void on_connected(struct run *r, struct conn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr)
        return conn_fail(r, c, E_CONNECT);
    c->t_progress_us = now_us();
    if (r->proxy_req_len) {
        c->st = S_PROXY_REQ;
        c->out_off = 0;
        return on_proxy_req(r, c);
    }
    after_transport(r, c);
}

static void on_event(struct run *r, struct conn *c, uint32_t ev)
{
    switch (c->st) {
    case S_CONNECTING: on_connected(r, c); break;
    case S_PROXY_REQ: on_proxy_req(r, c); break;
    case S_PROXY_RESP: on_proxy_resp(r, c); break;
    case S_TLS: on_tls(r, c); break;
    case S_SEND: on_send(r, c); break;
    case S_HEAD: on_head(r, c); break;
    case S_BODY: on_body(r, c); break;
    case S_IDLE: {
        /* TLS 1.3 tickets are consumed here; anything else is a close */
        long n = io_read(r, c, scratch, sizeof scratch);
        if (n != -EAGAIN)
            conn_fail(r, c, E_CLOSED);
        (void)ev;
        break;
    }
    }
}

/* ---- the loop ---- */

static struct conn *free_conn(struct run *r)
{
    static int hint; /* round robin: O(1) on average with 10,000 slots */
    for (int k = 0; k < r->nconns; k++) {
        int i = (hint + k) % r->nconns;
        if (!r->conns[i].in_use) {
            hint = i + 1;
            return &r->conns[i];
        }
    }
    return NULL;
}

static bool too_many_errors(const struct run *r)
{
    return r->errors_total > 1000 && r->errors_total > r->done;
}

static void open_one(struct run *r)
{
    struct conn *c = free_conn(r);
    if (c)
        conn_open(r, c);
}

/* Keeps the configured number of connections (or handshakes) going. */
static void top_up(struct run *r)
{
    if (too_many_errors(r))
        r->stopping = true;
    switch (r->o.mode) {
    case M_KA: case M_BULK: case M_RATE:
        while (r->active < r->o.conns && may_issue(r))
            open_one(r);
        break;
    case M_NEW:
        while (r->active < r->o.conns && may_issue(r)) {
            r->issued++;
            open_one(r);
        }
        break;
    case M_HOLD: {
        /* at most C handshakes at once; r->issued counts opened conns */
        while (r->active - r->idle < r->o.conns && r->issued < r->o.hold &&
               may_issue(r)) {
            r->issued++;
            open_one(r);
        }
        break;
    }
    }
}

/* Rate mode: hands every request whose time has come to an idle connection. */
static void schedule(struct run *r, uint64_t t_base)
{
    uint64_t t = now_us();
    if (!r->stopping && t >= r->deadline_us)
        r->stopping = true;
    long due = (long)((double)(t - t_base) * r->o.rate / 1e6) + 1;
    if (due > r->o.n)
        due = r->o.n;
    while (!r->stopping && r->scheduled < due) {
        r->scheduled++;
        r->queued++;
    }
    for (int i = 0; i < r->nconns && r->queued > 0; i++) {
        struct conn *c = &r->conns[i];
        if (!c->in_use || c->st != S_IDLE)
            continue;
        long idx = r->scheduled - r->queued;
        r->queued--;
        r->issued++;
        begin_request(r, c, t_base + (uint64_t)((double)idx * 1e6 / r->o.rate));
        on_send(r, c);
    }
}

static void check_timeouts(struct run *r)
{
    static uint64_t next;
    uint64_t t = now_us(), lim = (uint64_t)(r->o.io_timeout * 1e6);
    if (t < next)
        return;
    next = t + 100000; /* a scan every 100 ms is plenty for a 10 s limit */
    for (int i = 0; i < r->nconns; i++) {
        struct conn *c = &r->conns[i];
        if (c->in_use && c->st != S_IDLE && t - c->t_progress_us > lim)
            conn_fail(r, c, E_TIMEOUT);
    }
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void reset_stats(struct run *r)
{
    r->self_cpu0 = self_cpu_s();
    r->done = r->bytes_body = r->errors_total = r->nlat = r->opened = 0;
    r->issued = 0;
    memset(r->errs, 0, sizeof r->errs);
    r->t0_us = r->last_done_us = now_us();
    r->deadline_us = r->t0_us + (uint64_t)(r->o.t * 1e6);
    snap_take(&r->o, &r->snap0);
    r->rss_max_kib = r->snap0.rss_kib;
    r->warm = true;
}

/* Waits for events at most `timeout_us` microseconds. epoll_wait's unit is a
 * millisecond: in rate mode a request due 0.1 ms from now would be sent up to
 * a millisecond late, and its latency (counted from the scheduled time) would
 * carry that wait. epoll_pwait2 (Linux 5.11) takes nanoseconds; older kernels
 * fall back to milliseconds, rounded up. */
static void poll_once_us(struct run *r, uint64_t timeout_us)
{
    static bool no_pwait2;
    struct epoll_event evs[256];
    int n = -1;
    if (!no_pwait2) {
        struct timespec ts = { .tv_sec = (time_t)(timeout_us / 1000000u),
                               .tv_nsec = (long)(timeout_us % 1000000u) * 1000 };
        n = epoll_pwait2(r->ep, evs, 256, &ts, NULL);
        if (n < 0 && errno == ENOSYS)
            no_pwait2 = true;
    }
    if (no_pwait2)
        n = epoll_wait(r->ep, evs, 256, (int)((timeout_us + 999) / 1000));
    for (int i = 0; i < n; i++) {
        struct conn *c = evs[i].data.ptr;
        if (c->in_use)
            on_event(r, c, evs[i].events);
    }
}

static void poll_once(struct run *r, int timeout_ms)
{
    poll_once_us(r, (uint64_t)timeout_ms * 1000u);
}

/* Rate mode: how long to wait for events before the next request is due.
 * Only events can help when a due request waits for an idle connection, when
 * all -n are scheduled, or when the run is draining: then 50 ms. */
static uint64_t rate_wait_us(const struct run *r, uint64_t t_base)
{
    if (r->queued > 0 || r->stopping || r->scheduled >= r->o.n)
        return 50000;
    uint64_t due = t_base + (uint64_t)((double)r->scheduled * 1e6 / r->o.rate);
    uint64_t t = now_us();
    if (due <= t)
        return 0;
    return due - t < 50000 ? due - t : 50000;
}

static bool finished(struct run *r, uint64_t grace_end)
{
    if (now_us() > grace_end)
        return true;
    if (!r->stopping)
        return false;
    if (r->o.mode == M_RATE || r->o.mode == M_HOLD) {
        for (int i = 0; i < r->nconns; i++)
            if (r->conns[i].in_use && r->conns[i].st == S_IDLE)
                conn_close(r, &r->conns[i]);
    }
    return r->active == 0;
}

/* Warm-up lasts --warmup seconds and, for keep-alive modes, until every
 * connection has finished a request (slow handshakes stay out of the
 * figures); at most 30 s more. */
static bool warmed_up(const struct run *r, uint64_t warm_end)
{
    uint64_t t = now_us();
    if (t < warm_end)
        return false;
    return r->o.mode == M_NEW || r->done >= r->o.conns || t >= warm_end + 30000000;
}

static void run_load(struct run *r)
{
    uint64_t start = now_us(), warm_end = start + (uint64_t)(r->o.warmup * 1e6);
    r->deadline_us = UINT64_MAX - 10000000;
    r->warm = r->o.warmup <= 0;
    if (r->warm)
        reset_stats(r);
    while (!finished(r, r->deadline_us + 5000000)) {
        if (!r->warm && warmed_up(r, warm_end))
            reset_stats(r);
        top_up(r);
        if (r->o.mode == M_RATE)
            schedule(r, start);
        if (r->o.mode == M_RATE)
            poll_once_us(r, rate_wait_us(r, start));
        else
            poll_once(r, 50);
        check_timeouts(r);
        sample_rss(r);
    }
    for (int i = 0; i < r->nconns; i++)
        if (r->conns[i].in_use) {
            count_err(r, E_TIMEOUT);
            conn_close(r, &r->conns[i]);
        }
}

/* Hold mode: polls (noting closes) for `secs` seconds. */
static void hold_for(struct run *r, double secs)
{
    uint64_t end = now_us() + (uint64_t)(secs * 1e6);
    while (now_us() < end)
        poll_once(r, 100);
}

static void write_ready(const struct run *r, long rss)
{
    if (!r->o.ready_file)
        return;
    FILE *f = fopen(r->o.ready_file, "w");
    if (!f)
        return;
    fprintf(f, "{\"held\":%ld,\"rss_kib\":%ld}\n", r->idle, rss);
    fclose(f);
}

static void run_hold(struct run *r, long *rss_held, long *still_open, double *t_open,
                     double *cpu_s, double *sys_s)
{
    reset_stats(r);
    r->deadline_us = r->t0_us + (uint64_t)(r->o.t * 1e6);
    while (!(r->issued >= r->o.hold && r->active == r->idle) && !r->stopping) {
        top_up(r);
        poll_once(r, 50);
        check_timeouts(r);
        if (now_us() >= r->deadline_us || too_many_errors(r))
            r->stopping = true;
    }
    *t_open = (double)(now_us() - r->t0_us) / 1e6;
    struct procsnap s1;
    snap_take(&r->o, &s1);
    *cpu_s = snap_cpu_s(&r->snap0, &s1, false);
    *sys_s = snap_cpu_s(&r->snap0, &s1, true);
    for (int i = 0; i < r->nconns; i++) /* handshakes cut off by -t */
        if (r->conns[i].in_use && r->conns[i].st != S_IDLE) {
            r->unfinished++;
            conn_close(r, &r->conns[i]);
        }
    double settle = r->o.hold_time < 1.0 ? r->o.hold_time : 1.0;
    hold_for(r, settle);
    struct procsnap s;
    snap_take(&r->o, &s);
    *rss_held = s.rss_kib;
    write_ready(r, s.rss_kib);
    hold_for(r, r->o.hold_time - settle);
    *still_open = r->idle;
    for (int i = 0; i < r->nconns; i++)
        if (r->conns[i].in_use)
            conn_close(r, &r->conns[i]);
}

/* ---- setup and output ---- */

static const char *mode_names[] = { "ka", "new", "bulk", "rate", "hold" };

static int split_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= cap || colon == s)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = atoi(colon + 1);
    return *port > 0 && *port < 65536 ? 0 : -1;
}

static int resolve(struct run *r)
{
    char host[256];
    int port;
    if (r->o.proxy[0]) {
        if (split_hostport(r->o.proxy, host, sizeof host, &port) < 0)
            return -1;
    } else {
        snprintf(host, sizeof host, "%s", r->o.target_host);
        port = r->o.target_port;
    }
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    int rc = getaddrinfo(host, ps, &hints, &ai);
    if (rc) {
        fprintf(stderr, "loadgen: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
    r->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static void build_requests(struct run *r)
{
    const struct opts *o = &r->o;
    char hosthdr[300];
    int defport = o->plain ? 80 : 443;
    if (o->target_port == defport)
        snprintf(hosthdr, sizeof hosthdr, "%s", o->target_host);
    else
        snprintf(hosthdr, sizeof hosthdr, "%s:%d", o->target_host, o->target_port);
    const char *conn = o->mode == M_NEW ? "close" : "keep-alive";
    if (o->proxy[0] && !o->plain)
        r->proxy_req_len = (size_t)snprintf(r->proxy_req, sizeof r->proxy_req,
            "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
            o->target_host, o->target_port, o->target_host, o->target_port);
    r->req_len = (size_t)snprintf(r->req, sizeof r->req,
        "GET %s%s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoji-loadgen\r\n"
        "Accept: */*\r\nConnection: %s\r\n\r\n",
        o->proxy[0] && o->plain ? "http://" : "", o->proxy[0] && o->plain ? hosthdr : "",
        o->path, hosthdr, conn);
}

static int make_ctx(struct run *r)
{
    r->ctx = SSL_CTX_new(TLS_client_method());
    if (!r->ctx)
        return -1;
    SSL_CTX_set_min_proto_version(r->ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(r->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(r->ctx, SSL_OP_NO_TICKET);
    /* A client that costs as little as it can, so that what is measured is
     * the proxy (the keep-alive figure is client-bound on 2 cores): record
     * buffers kept (not allocated and freed per record), and read-ahead (a
     * record in one read(), not a 5-byte header read and then the rest). */
    SSL_CTX_set_mode(r->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(r->ctx, 1);
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(r->ctx, alpn, sizeof alpn - 1);
    if (r->o.cafile && SSL_CTX_load_verify_locations(r->ctx, r->o.cafile, NULL) != 1) {
        fprintf(stderr, "loadgen: cannot load CA file %s\n", r->o.cafile);
        return -1;
    }
    if (!r->o.cafile)
        SSL_CTX_set_default_verify_paths(r->ctx);
    return 0;
}

static void print_common(struct run *r, double secs, double cpu_s, double sys_s)
{
    const struct opts *o = &r->o;
    qsort(r->lat, (size_t)r->nlat, sizeof *r->lat, cmp_u32);
    double mean = 0;
    for (long i = 0; i < r->nlat; i++)
        mean += r->lat[i];
    mean = r->nlat ? mean / (double)r->nlat : 0;
    printf("{\"label\":\"%s\",\"mode\":\"%s\",\"via\":\"%s\",\"plain\":%s,\"path\":\"%s\","
           "\"conns\":%d,", o->label, mode_names[o->mode], o->proxy[0] ? o->proxy : "direct",
           o->plain ? "true" : "false", o->path, o->conns);
    printf("\"requests\":%ld,\"connections\":%ld,\"errors\":%ld,\"errors_by\":{", r->done,
           r->opened, r->errors_total);
    for (int k = 0; k < E_COUNT; k++)
        printf("%s\"%s\":%ld", k ? "," : "", err_names[k], r->errs[k]);
    printf("},\"seconds\":%.3f,\"rps\":%.1f,\"mb_per_s\":%.2f,", secs,
           secs > 0 ? (double)r->done / secs : 0,
           secs > 0 ? (double)r->bytes_body / secs / 1048576.0 : 0);
    printf("\"lat_us\":{\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f,\"max\":%.0f,\"mean\":%.0f},",
           pct(r->lat, r->nlat, 0.5), pct(r->lat, r->nlat, 0.9), pct(r->lat, r->nlat, 0.99),
           pct(r->lat, r->nlat, 1.0), mean);
    printf("\"proxy_procs\":%d,\"proxy_cpu_s\":%.3f,\"proxy_cpu_us_per_req\":%.1f,"
           "\"proxy_rss_start_kib\":%ld,\"proxy_rss_max_kib\":%ld",
           r->snap0.n, cpu_s, r->done ? cpu_s * 1e6 / (double)r->done : 0,
           r->snap0.rss_kib, r->rss_max_kib);
    printf(",\"proxy_sys_s\":%.3f,\"proxy_sys_share\":%.2f", sys_s,
           cpu_s > 0 ? sys_s / cpu_s : 0);
    printf(",\"proxy_user_us_per_req\":%.1f,\"proxy_sys_us_per_req\":%.1f",
           r->done ? (cpu_s - sys_s) * 1e6 / (double)r->done : 0,
           r->done ? sys_s * 1e6 / (double)r->done : 0);
    double self = self_cpu_s() - r->self_cpu0;
    printf(",\"client_cpu_s\":%.3f,\"client_cpu_us_per_req\":%.1f", self,
           r->done ? self * 1e6 / (double)r->done : 0);
}

static void usage(void)
{
    fprintf(stderr,
        "usage: loadgen --target HOST:PORT [--proxy HOST:PORT] [--mode ka|new|bulk|rate|hold]\n"
        "  [--path /1k] [--cafile FILE] [--plain] [-c CONNS] [-n MAXREQ] [-t SECONDS]\n"
        "  [--warmup SECONDS] [--rate R] [--expect-len BYTES] [--hold N] [--hold-time S]\n"
        "  [--ready-file FILE] [--watch PID]... [--label TEXT] [--io-timeout S]\n"
        "  [--lat-log FILE]  (one line per measured request: CLOCK_MONOTONIC µs\n"
        "                     when it was due, and its latency in µs)\n");
}

static const struct option longopts[] = {
    { "mode", 1, 0, 'm' }, { "proxy", 1, 0, 'x' }, { "target", 1, 0, 'T' },
    { "path", 1, 0, 'p' }, { "cafile", 1, 0, 'C' }, { "plain", 0, 0, 'P' },
    { "conns", 1, 0, 'c' }, { "requests", 1, 0, 'n' }, { "time", 1, 0, 't' },
    { "warmup", 1, 0, 'w' }, { "rate", 1, 0, 'r' }, { "expect-len", 1, 0, 'e' },
    { "hold", 1, 0, 'H' }, { "hold-time", 1, 0, 'h' }, { "ready-file", 1, 0, 'R' },
    { "watch", 1, 0, 'W' }, { "label", 1, 0, 'L' }, { "io-timeout", 1, 0, 'i' },
    { "lat-log", 1, 0, 'l' }, { 0, 0, 0, 0 }
};

static int parse_mode(const char *s)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, mode_names[i]) == 0)
            return i;
    return -1;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){ .mode = M_KA, .path = "/1k", .conns = 8, .n = 100000000,
                        .t = 10, .expect_len = -1, .hold = 1000, .hold_time = 3,
                        .label = "run", .io_timeout = 10, .rate = 100 };
    int ch, m;
    while ((ch = getopt_long(argc, argv, "c:n:t:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm': if ((m = parse_mode(optarg)) < 0) return -1; o->mode = (enum mode)m; break;
        case 'x': snprintf(o->proxy, sizeof o->proxy, "%s", optarg); break;
        case 'T':
            if (split_hostport(optarg, o->target_host, sizeof o->target_host, &o->target_port))
                return -1;
            break;
        case 'p': o->path = optarg; break;
        case 'C': o->cafile = optarg; break;
        case 'P': o->plain = true; break;
        case 'c': o->conns = atoi(optarg); break;
        case 'n': o->n = atol(optarg); break;
        case 't': o->t = atof(optarg); break;
        case 'w': o->warmup = atof(optarg); break;
        case 'r': o->rate = atof(optarg); break;
        case 'e': o->expect_len = atol(optarg); break;
        case 'H': o->hold = atoi(optarg); break;
        case 'h': o->hold_time = atof(optarg); break;
        case 'R': o->ready_file = optarg; break;
        case 'W': if (o->nwatch < MAX_WATCH) o->watch[o->nwatch++] = (pid_t)atoi(optarg); break;
        case 'L': o->label = optarg; break;
        case 'i': o->io_timeout = atof(optarg); break;
        case 'l': o->lat_log = optarg; break;
        default: return -1;
        }
    }
    if (!o->target_host[0] || o->conns < 1 || o->conns > 100000 || o->n < 1 ||
        o->t <= 0 || o->t > 3600 || o->rate <= 0 || o->hold < 1 || o->hold > 200000 ||
        o->hold_time < 0 || o->hold_time > 600 || strlen(o->path) > 512 || o->path[0] != '/')
        return -1;
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int setup(struct run *r)
{
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    build_requests(r);
    if (resolve(r) < 0 || make_ctx(r) < 0)
        return -1;
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    r->nconns = r->o.mode == M_HOLD ? r->o.hold : r->o.conns;
    r->conns = calloc((size_t)r->nconns, sizeof *r->conns);
    if (r->ep < 0 || !r->conns)
        return -1;
    if (r->o.lat_log && !(r->lat_log = fopen(r->o.lat_log, "w"))) {
        fprintf(stderr, "loadgen: %s: %s\n", r->o.lat_log, strerror(errno));
        return -1;
    }
    for (int i = 0; i < r->nconns; i++)
        r->conns[i].fd = -1;
    return 0;
}

int main(int argc, char **argv)
{
    static struct run run;
    struct run *r = &run;
    if (parse_opts(argc, argv, &r->o) < 0) {
        usage();
        return 2;
    }
    if (setup(r) < 0)
        return 1;
    /* Timed waits end when asked, not up to 50 µs later (the default slack):
     * in rate mode that slack would be counted as latency. */
    if (r->o.mode == M_RATE)
        prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    if (r->o.mode == M_HOLD) {
        long rss_held = 0, still = 0;
        double t_open = 0, cpu = 0, sys = 0;
        run_hold(r, &rss_held, &still, &t_open, &cpu, &sys);
        print_common(r, t_open, cpu, sys);
        long grow = rss_held - r->snap0.rss_kib;
        printf(",\"hold\":%d,\"unfinished\":%ld,\"established\":%ld,\"still_open\":%ld,\"rss_held_kib\":%ld,"
               "\"kib_per_conn\":%.2f}\n", r->o.hold, r->unfinished, r->established, still, rss_held,
               r->established ? (double)grow / (double)r->established : 0);
        return r->errors_total ? 3 : 0;
    }
    run_load(r);
    struct procsnap s1;
    snap_take(&r->o, &s1);
    double secs = (double)(r->last_done_us - r->t0_us) / 1e6;
    print_common(r, secs, snap_cpu_s(&r->snap0, &s1, false), snap_cpu_s(&r->snap0, &s1, true));
    printf("}\n");
    if (r->lat_log && fclose(r->lat_log) != 0)
        fprintf(stderr, "loadgen: %s: %s\n", r->o.lat_log, strerror(errno));
    return r->errors_total ? 3 : 0;
}
