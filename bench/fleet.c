/* fleet: the fleet simulation of `make bench` (bench/fleet.sh): N simulated
 * agents against one running shoji-server over real TLS (fingerprint pinned).
 * Each agent keeps one keep-alive HTTPS connection. Phase 1 (enrolment):
 * every agent enrols with one enrolment token (POST /api/v1/enrol, 201),
 * fetches its policy (200 + ETag) and posts its status. Phase 2 (measured,
 * bounded by -t seconds and -n requests): every agent, in turn, polls its
 * policy with If-None-Match (304 expected), posts its status (200), fetches
 * its tasks (200, none queued) — what the agent does every sync interval,
 * src/mgmt/sync.c and tasks.c — and every
 * --log-every turns uploads a gzip batch of --lines JSON lines with a new
 * batch id (201). T threads with blocking sockets serve N/T agents each, one
 * request at a time: at most T requests are in flight (a closed loop).
 * Every response's status is checked; anything else counts as an error.
 * --watch PID / --watch-db PID: CPU time (utime+stime from /proc) of the
 * process and its descendants over the measured phase, per request.
 * Prints one JSON object on stdout.
 * Must never: run unbounded, connect anywhere but the given loopback port,
 * or report a response it did not check. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <zlib.h>

enum ep { EP_ENROL, EP_POLL_FIRST, EP_STATUS_FIRST, EP_POLL, EP_STATUS, EP_TASKS, EP_LOGS,
          EP_COUNT };
static const char *ep_names[EP_COUNT] = { "enrol", "poll_first", "status_first", "poll",
                                          "status", "tasks", "logs" };

#define RBUF_CAP (256 * 1024)
#define SAMPLE_CAP (1u << 22)
#define MAX_PROCS 4096

struct opts {
    char host[64];
    int port;
    unsigned char pin[32];
    char token[256];
    char prefix[32];
    char label[128];
    int agents, threads, log_every, lines;
    double secs, enrol_secs;
    long max_requests;
    pid_t watch, watch_db;
};

struct agent {
    int idx;
    int fd;
    SSL *ssl;
    char cred[256];
    char etag[160];
    unsigned turn, batch;
    bool enrolled;
};

struct samples { uint32_t *v; size_t n, cap; };

struct worker {
    pthread_t tid;
    int id;
    const struct opts *o;
    SSL_CTX *ctx;
    struct agent *agents;   /* this worker's agents */
    int nagents;
    char *rbuf;             /* response buffer */
    char *wbuf;             /* request buffer */
    size_t wcap;
    unsigned char *gz;      /* the gzip log batch */
    size_t gzlen;
    struct samples lat[EP_COUNT];
    long ok[EP_COUNT], err_net[EP_COUNT], err_status[EP_COUNT];
    long connects;
    char last_err[160];
};

struct resp { int status; bool close; char etag[160]; const char *body; size_t blen; };

static atomic_long g_requests;
static pthread_barrier_t g_barrier;
static double g_deadline, g_enrol_deadline;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- /proc CPU sampling: PID and all its descendants ---- */

static int proc_read(pid_t pid, pid_t *ppid, unsigned long long *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    int pp = 0;
    unsigned long long ut = 0, st = 0;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &pp, &ut, &st) != 3)
        return -1;
    *ppid = pp;
    *ticks = ut + st;
    return 0;
}

/* CPU seconds used so far by root and its descendants (0 if root is 0). */
static double tree_cpu_s(pid_t root)
{
    static pid_t pid[MAX_PROCS], par[MAX_PROCS];
    static unsigned long long tk[MAX_PROCS];
    static bool in[MAX_PROCS];
    if (root <= 0)
        return 0;
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && n < MAX_PROCS && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid[n] = (pid_t)atoi(e->d_name);
        if (proc_read(pid[n], &par[n], &tk[n]) == 0) {
            in[n] = pid[n] == root;
            n++;
        }
    }
    if (d)
        closedir(d);
    for (bool grew = true; grew;) {
        grew = false;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n && !in[i]; j++)
                if (in[j] && par[i] == pid[j])
                    in[i] = grew = true;
    }
    unsigned long long sum = 0;
    for (int i = 0; i < n; i++)
        if (in[i])
            sum += tk[i];
    return (double)sum / (double)sysconf(_SC_CLK_TCK);
}

/* ---- samples ---- */

static void sample_add(struct samples *s, double secs)
{
    if (s->n == s->cap) {
        if (s->cap >= SAMPLE_CAP)
            return;
        size_t nc = s->cap ? s->cap * 2 : 1024;
        uint32_t *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv)
            return;
        s->v = nv;
        s->cap = nc;
    }
    double us = secs * 1e6;
    s->v[s->n++] = us > 4e9 ? 4000000000u : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const struct samples *s, double p)
{
    if (s->n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->v[i] / 1000.0;
}

static int merge(struct samples *dst, const struct samples *src)
{
    if (src->n == 0)
        return 0;
    uint32_t *nv = realloc(dst->v, (dst->n + src->n) * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    memcpy(nv + dst->n, src->v, src->n * sizeof *nv);
    dst->v = nv;
    dst->n += src->n;
    dst->cap = dst->n;
    return 0;
}

/* ---- connections ---- */

static void conn_close(struct agent *a)
{
    if (a->ssl)
        SSL_free(a->ssl);
    if (a->fd >= 0)
        close(a->fd);
    a->ssl = NULL;
    a->fd = -1;
}

static int pin_check(SSL *ssl, const unsigned char pin[32])
{
    X509 *c = SSL_get1_peer_certificate(ssl);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = c && X509_digest(c, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32 &&
             memcmp(md, pin, 32) == 0;
    X509_free(c);
    return ok ? 0 : -1;
}

static int conn_open(struct worker *w, struct agent *a)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)w->o->port) };
    struct timeval tv = { .tv_sec = 15 };
    int one = 1;
    if (inet_pton(AF_INET, w->o->host, &sa.sin_addr) != 1)
        return -EINVAL;
    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (a->fd < 0)
        return -errno;
    setsockopt(a->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(a->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(a->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = -errno;
        conn_close(a);
        snprintf(w->last_err, sizeof w->last_err, "connect: %s", strerror(-e));
        return e;
    }
    a->ssl = SSL_new(w->ctx);
    if (!a->ssl || SSL_set_fd(a->ssl, a->fd) != 1 || SSL_connect(a->ssl) != 1 ||
        pin_check(a->ssl, w->o->pin) != 0) {
        conn_close(a);
        snprintf(w->last_err, sizeof w->last_err, "TLS handshake or fingerprint");
        return -EPROTO;
    }
    return 0;
}

/* ---- HTTP/1.1 exchange ---- */

static bool hdr_is(const char *line, size_t len, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return false;
    const char *v = line + n + 1;
    while (*v == ' ')
        v++;
    *val = v;
    return true;
}

/* Parses the head in buf[0..hlen) into r; returns the Content-Length or -1. */
static long parse_head(const char *buf, size_t hlen, struct resp *r)
{
    long clen = 0;
    if (hlen < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    r->status = atoi(buf + 9);
    const char *p = memchr(buf, '\n', hlen), *end = buf + hlen, *v;
    while (p && ++p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (hdr_is(p, len, "Content-Length", &v))
            clen = strtol(v, NULL, 10);
        else if (hdr_is(p, len, "Transfer-Encoding", &v))
            return -1;   /* the server sends Content-Length; chunked is not expected */
        else if (hdr_is(p, len, "Connection", &v) && strncasecmp(v, "close", 5) == 0)
            r->close = true;
        else if (hdr_is(p, len, "ETag", &v)) {
            size_t el = (size_t)(p + len - v);
            while (el && (v[el - 1] == '\r' || v[el - 1] == ' '))
                el--;
            if (el < sizeof r->etag) {
                memcpy(r->etag, v, el);
                r->etag[el] = 0;
            }
        }
        p = nl;
    }
    return clen >= 0 && clen < RBUF_CAP / 2 ? clen : -1;
}

static int read_resp(struct worker *w, struct agent *a, struct resp *r)
{
    size_t have = 0, hlen = 0;
    long clen = -1;
    memset(r, 0, sizeof *r);
    for (;;) {
        if (hlen == 0) {
            char *e = have >= 4 ? memmem(w->rbuf, have, "\r\n\r\n", 4) : NULL;
            if (e) {
                hlen = (size_t)(e - w->rbuf) + 4;
                if ((clen = parse_head(w->rbuf, hlen, r)) < 0)
                    return -EPROTO;
            }
        }
        if (hlen && have >= hlen + (size_t)clen)
            break;
        if (have >= RBUF_CAP - 1)
            return -EMSGSIZE;
        int n = SSL_read(a->ssl, w->rbuf + have, (int)(RBUF_CAP - 1 - have));
        if (n <= 0)
            return -EIO;
        have += (size_t)n;
    }
    w->rbuf[hlen + (size_t)clen] = 0;
    r->body = w->rbuf + hlen;
    r->blen = (size_t)clen;
    return 0;
}

/* One request on the agent's connection (opened if needed); the time taken
 * is recorded under ep when the exchange completed. */
static int exchange(struct worker *w, struct agent *a, enum ep ep, const char *method,
                    const char *path, const char *extra, const void *body, size_t blen,
                    struct resp *r)
{
    double t0 = now_s();
    if (a->fd < 0) {
        if (conn_open(w, a) != 0)
            goto fail;
        w->connects++;
    }
    int hl = snprintf(w->wbuf, w->wcap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s%s"
                      "Content-Length: %zu\r\n\r\n", method, path, w->o->host, w->o->port,
                      a->cred[0] ? "Authorization: Bearer " : "", a->cred,
                      a->cred[0] ? "\r\n" : "", extra, blen);
    if (hl < 0 || (size_t)hl + blen > w->wcap)
        goto fail;
    memcpy(w->wbuf + hl, body, blen);
    if (SSL_write(a->ssl, w->wbuf, (int)((size_t)hl + blen)) <= 0 || read_resp(w, a, r) != 0) {
        snprintf(w->last_err, sizeof w->last_err, "%s %s: connection failed", method, path);
        conn_close(a);
        goto fail;
    }
    sample_add(&w->lat[ep], now_s() - t0);
    atomic_fetch_add(&g_requests, 1);
    if (r->close)
        conn_close(a);
    return 0;
fail:
    w->err_net[ep]++;
    atomic_fetch_add(&g_requests, 1);
    return -EIO;
}

/* ---- agent actions ---- */

static void bad_status(struct worker *w, enum ep ep, const struct resp *r)
{
    w->err_status[ep]++;
    snprintf(w->last_err, sizeof w->last_err, "%s: status %d: %.100s", ep_names[ep],
             r->status, r->body ? r->body : "");
}

static int agent_enrol(struct worker *w, struct agent *a)
{
    char body[512];
    struct resp r;
    int n = snprintf(body, sizeof body, "{\"token\": \"%s\", \"machine_id\": \"fleet.%s.%06d\", "
                     "\"hostname\": \"pc-%05d\", \"version\": \"0.1.0\", \"os\": \"fleet\"}",
                     w->o->token, w->o->prefix, a->idx, a->idx);
    if (n < 0 || (size_t)n >= sizeof body)
        return -EINVAL;
    if (exchange(w, a, EP_ENROL, "POST", "/api/v1/enrol",
                 "Content-Type: application/json\r\n", body, (size_t)n, &r) != 0)
        return -EIO;
    json_t *j = r.status == 201 ? json_loadb(r.body, r.blen, 0, NULL) : NULL;
    const char *cred = json_string_value(json_object_get(j, "credential"));
    if (!cred || strlen(cred) >= sizeof a->cred) {
        json_decref(j);
        bad_status(w, EP_ENROL, &r);
        return -EPROTO;
    }
    snprintf(a->cred, sizeof a->cred, "%s", cred);
    json_decref(j);
    w->ok[EP_ENROL]++;
    a->enrolled = true;
    return 0;
}

static int agent_poll(struct worker *w, struct agent *a, enum ep ep)
{
    char extra[200] = "";
    struct resp r;
    if (a->etag[0])
        snprintf(extra, sizeof extra, "If-None-Match: %s\r\n", a->etag);
    if (exchange(w, a, ep, "GET", "/api/v1/agent/policy", extra, "", 0, &r) != 0)
        return -EIO;
    int want = ep == EP_POLL_FIRST ? 200 : 304;
    if (r.status != want || (want == 200 && !r.etag[0])) {
        bad_status(w, ep, &r);
        return -EPROTO;
    }
    if (want == 200)
        memcpy(a->etag, r.etag, sizeof a->etag);
    w->ok[ep]++;
    return 0;
}

static int agent_status(struct worker *w, struct agent *a, enum ep ep)
{
    char body[400];
    struct resp r;
    int n = snprintf(body, sizeof body, "{\"hostname\": \"pc-%05d\", \"version\": \"0.1.0\", "
                     "\"os\": \"fleet\", \"policy_etag\": \"%s\"}", a->idx,
                     a->etag[0] == '"' ? "" : a->etag);
    /* the ETag itself contains quotes: send it escaped */
    if (a->etag[0] == '"') {
        size_t el = strlen(a->etag);
        n = snprintf(body, sizeof body, "{\"hostname\": \"pc-%05d\", \"version\": \"0.1.0\", "
                     "\"os\": \"fleet\", \"policy_etag\": \"\\\"%.*s\\\"\"}", a->idx,
                     (int)(el >= 2 ? el - 2 : 0), a->etag + 1);
    }
    if (n < 0 || (size_t)n >= sizeof body)
        return -EINVAL;
    if (exchange(w, a, ep, "POST", "/api/v1/agent/status",
                 "Content-Type: application/json\r\n", body, (size_t)n, &r) != 0)
        return -EIO;
    if (r.status != 200) {
        bad_status(w, ep, &r);
        return -EPROTO;
    }
    w->ok[ep]++;
    return 0;
}

static int agent_logs(struct worker *w, struct agent *a)
{
    char path[200];
    struct resp r;
    snprintf(path, sizeof path, "/api/v1/agent/logs/%s-%06d-%06u", w->o->prefix, a->idx,
             a->batch++);
    if (exchange(w, a, EP_LOGS, "PUT", path, "Content-Encoding: gzip\r\n"
                 "Content-Type: application/x-ndjson\r\n", w->gz, w->gzlen, &r) != 0)
        return -EIO;
    if (r.status != 201) {
        bad_status(w, EP_LOGS, &r);
        return -EPROTO;
    }
    w->ok[EP_LOGS]++;
    return 0;
}

/* GET /api/v1/agent/tasks: none are queued, so 200 with an empty list. */
static int agent_tasks(struct worker *w, struct agent *a)
{
    struct resp r;
    if (exchange(w, a, EP_TASKS, "GET", "/api/v1/agent/tasks", "", "", 0, &r) != 0)
        return -EIO;
    if (r.status != 200 || !r.body || !strstr(r.body, "\"tasks\"")) {
        bad_status(w, EP_TASKS, &r);
        return -EPROTO;
    }
    w->ok[EP_TASKS]++;
    return 0;
}

/* ---- the log batch ---- */

static int make_batch(struct worker *w)
{
    static const char *apps[] = { "firefox", "chrome", "teams", "curl" };
    static const char *cats[] = { "news", "games", "social_networks", "education" };
    size_t cap = (size_t)w->o->lines * 512 + 1;
    char *txt = malloc(cap);
    size_t len = 0;
    if (!txt)
        return -ENOMEM;
    long t = (long)time(NULL);
    for (int i = 0; i < w->o->lines; i++) {
        int blk = i % 5 == 1;
        int n = snprintf(txt + len, cap - len, "{\"time\": %ld, \"method\": \"GET\", \"url\": "
            "\"https://site%d.test/page/%d\", \"host\": \"site%d.test\", \"status\": %d, "
            "\"bytes_in\": 310, \"bytes_out\": %d, \"duration_ms\": %.1f, \"mode\": \"decode\", "
            "\"app\": \"%s\", \"pid\": %d, \"categories\": [\"%s\"], \"action\": \"%s\", "
            "\"rule\": \"%s\"}\n", t - i, i % 37, i, i % 37, blk ? 403 : 200, 1000 + 17 * i,
            0.5 + i % 9, apps[i % 4], 1000 + i, cats[i % 4], blk ? "block" : "allow",
            blk ? "categories.games" : "default");
        if (n < 0 || (size_t)n >= cap - len) {
            free(txt);
            return -ENOSPC;
        }
        len += (size_t)n;
    }
    z_stream z = { 0 };
    uLong bound = compressBound((uLong)len) + 64;
    w->gz = malloc(bound);
    int rc = w->gz && deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    if (rc) {
        z.next_in = (Bytef *)txt;
        z.avail_in = (uInt)len;
        z.next_out = w->gz;
        z.avail_out = (uInt)bound;
        rc = deflate(&z, Z_FINISH) == Z_STREAM_END;
        w->gzlen = z.total_out;
        deflateEnd(&z);
    }
    free(txt);
    return rc ? 0 : -EIO;
}

/* ---- workers ---- */

static bool bounded_out(void)
{
    return now_s() >= g_deadline;
}

/* Phase 1: enrol, first policy fetch (200), first status. */
static void phase_enrol(struct worker *w)
{
    for (int i = 0; i < w->nagents && now_s() < g_enrol_deadline; i++) {
        struct agent *a = &w->agents[i];
        if (agent_enrol(w, a) == 0 && agent_poll(w, a, EP_POLL_FIRST) == 0)
            agent_status(w, a, EP_STATUS_FIRST);
    }
}

/* Phase 2: each agent in turn: poll (304), status, every K turns a batch. */
static void phase_steady(struct worker *w)
{
    const struct opts *o = w->o;
    for (;;) {
        for (int i = 0; i < w->nagents; i++) {
            struct agent *a = &w->agents[i];
            if (bounded_out() || atomic_load(&g_requests) >= o->max_requests)
                return;
            if (!a->enrolled)
                continue;
            agent_poll(w, a, EP_POLL);
            agent_status(w, a, EP_STATUS);
            agent_tasks(w, a);
            if (o->log_every > 0 && a->turn % (unsigned)o->log_every ==
                                    (unsigned)a->idx % (unsigned)o->log_every)
                agent_logs(w, a);
            a->turn++;
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    phase_enrol(w);
    pthread_barrier_wait(&g_barrier);   /* enrolment done everywhere */
    pthread_barrier_wait(&g_barrier);   /* main took its CPU snapshot */
    phase_steady(w);
    for (int i = 0; i < w->nagents; i++)
        conn_close(&w->agents[i]);
    return NULL;
}

/* ---- options ---- */

static void usage(void)
{
    fprintf(stderr,
        "usage: fleet --port P --fingerprint AB:CD:.. --token enrol.X.Y [--host 127.0.0.1]\n"
        "             [--agents 1000] [--threads 16] [-t SECS] [-n MAX_REQUESTS]\n"
        "             [--log-every 4] [--lines 50] [--prefix ID] [--label L]\n"
        "             [--enrol-timeout SECS] [--watch PID] [--watch-db PID]\n");
}

static int parse_pin(const char *s, unsigned char pin[32])
{
    int n = 0;
    while (*s && n < 32) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1 || !isxdigit((unsigned char)s[1]))
            return -EINVAL;
        pin[n++] = (unsigned char)v;
        s += 2;
        if (*s == ':')
            s++;
    }
    return n == 32 && *s == 0 ? 0 : -EINVAL;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        { "host", 1, 0, 'H' }, { "port", 1, 0, 'p' }, { "fingerprint", 1, 0, 'f' },
        { "token", 1, 0, 'k' }, { "agents", 1, 0, 'a' }, { "threads", 1, 0, 'c' },
        { "log-every", 1, 0, 'l' }, { "lines", 1, 0, 'L' }, { "prefix", 1, 0, 'P' },
        { "label", 1, 0, 'b' }, { "enrol-timeout", 1, 0, 'e' }, { "watch", 1, 0, 'w' },
        { "watch-db", 1, 0, 'W' }, { 0, 0, 0, 0 } };
    int c, pinned = 0;
    *o = (struct opts){ .host = "127.0.0.1", .agents = 1000, .threads = 16, .log_every = 4,
                        .lines = 50, .secs = 10, .enrol_secs = 300, .max_requests = 5000000,
                        .prefix = "p", .label = "fleet" };
    while ((c = getopt_long(argc, argv, "t:n:", lo, NULL)) != -1) {
        switch (c) {
        case 'H': snprintf(o->host, sizeof o->host, "%s", optarg); break;
        case 'p': o->port = atoi(optarg); break;
        case 'f': pinned = parse_pin(optarg, o->pin) == 0; break;
        case 'k': snprintf(o->token, sizeof o->token, "%s", optarg); break;
        case 'a': o->agents = atoi(optarg); break;
        case 'c': o->threads = atoi(optarg); break;
        case 'l': o->log_every = atoi(optarg); break;
        case 'L': o->lines = atoi(optarg); break;
        case 'P': snprintf(o->prefix, sizeof o->prefix, "%s", optarg); break;
        case 'b': snprintf(o->label, sizeof o->label, "%s", optarg); break;
        case 'e': o->enrol_secs = atof(optarg); break;
        case 'w': o->watch = (pid_t)atoi(optarg); break;
        case 'W': o->watch_db = (pid_t)atoi(optarg); break;
        case 't': o->secs = atof(optarg); break;
        case 'n': o->max_requests = atol(optarg); break;
        default: return -EINVAL;
        }
    }
    if (!pinned || o->port <= 0 || o->port > 65535 || !o->token[0] || o->agents < 1 ||
        o->agents > 100000 || o->threads < 1 || o->threads > 1024 || o->lines < 1 ||
        o->lines > 10000 || o->secs <= 0 || o->secs > 3600 || o->max_requests < 1 ||
        o->enrol_secs <= 0 || o->enrol_secs > 3600)
        return -EINVAL;
    o->threads = o->threads > o->agents ? o->agents : o->threads;
    return 0;
}

/* ---- report ---- */

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

struct totals {
    struct samples lat[EP_COUNT], all;
    long ok[EP_COUNT], err_net[EP_COUNT], err_status[EP_COUNT], connects;
    char last_err[160];
};

static int sum_workers(struct worker *ws, int n, struct totals *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < n; i++) {
        for (int e = 0; e < EP_COUNT; e++) {
            if (merge(&t->lat[e], &ws[i].lat[e]) != 0 ||
                (e >= EP_POLL && merge(&t->all, &ws[i].lat[e]) != 0))
                return -ENOMEM;
            t->ok[e] += ws[i].ok[e];
            t->err_net[e] += ws[i].err_net[e];
            t->err_status[e] += ws[i].err_status[e];
        }
        t->connects += ws[i].connects;
        if (ws[i].last_err[0])
            memcpy(t->last_err, ws[i].last_err, sizeof t->last_err);
    }
    for (int e = 0; e < EP_COUNT; e++)
        qsort(t->lat[e].v, t->lat[e].n, sizeof(uint32_t), cmp_u32);
    qsort(t->all.v, t->all.n, sizeof(uint32_t), cmp_u32);
    return 0;
}

static void print_ep(const struct totals *t, int e, double secs)
{
    printf("\"%s\": {\"answered\": %zu, \"ok\": %ld, \"rps\": %.1f, \"p50_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"errors_net\": %ld, \"errors_status\": %ld}", ep_names[e],
           t->lat[e].n, t->ok[e], secs > 0 ? (double)t->lat[e].n / secs : 0,
           pct_ms(&t->lat[e], 0.5), pct_ms(&t->lat[e], 0.99), t->err_net[e], t->err_status[e]);
}

struct measure { double enrol_secs, secs, srv_cpu, db_cpu, self_cpu; };

static void report(const struct opts *o, const struct totals *t, const struct measure *m)
{
    long errs = 0;
    for (int e = EP_POLL; e < EP_COUNT; e++)
        errs += t->err_net[e] + t->err_status[e];
    long enrol_errs = 0;
    for (int e = EP_ENROL; e < EP_POLL; e++)
        enrol_errs += t->err_net[e] + t->err_status[e];
    double req = (double)t->all.n;
    printf("{\"label\": \"%s\", \"agents\": %d, \"threads\": %d, \"log_every\": %d, "
           "\"lines\": %d, \"enrolled\": %ld, \"enrol_secs\": %.2f, \"enrol_rps\": %.1f, "
           "\"enrol_errors\": %ld, ", o->label, o->agents, o->threads, o->log_every, o->lines,
           t->ok[EP_ENROL], m->enrol_secs,
           m->enrol_secs > 0 ? (double)t->ok[EP_ENROL] / m->enrol_secs : 0, enrol_errs);
    printf("\"secs\": %.2f, \"requests\": %.0f, \"rps\": %.1f, \"p50_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"errors\": %ld, \"connects\": %ld, \"lines_stored\": %ld, ",
           m->secs, req, m->secs > 0 ? req / m->secs : 0, pct_ms(&t->all, 0.5),
           pct_ms(&t->all, 0.99), errs, t->connects, t->ok[EP_LOGS] * (long)o->lines);
    printf("\"server_cpu_us_per_req\": %.1f, \"server_cpu_pct\": %.1f, "
           "\"db_cpu_us_per_req\": %.1f, \"db_cpu_pct\": %.1f, \"client_cpu_pct\": %.1f, ",
           req > 0 ? m->srv_cpu * 1e6 / req : 0, m->secs > 0 ? 100 * m->srv_cpu / m->secs : 0,
           req > 0 ? m->db_cpu * 1e6 / req : 0, m->secs > 0 ? 100 * m->db_cpu / m->secs : 0,
           m->secs > 0 ? 100 * m->self_cpu / m->secs : 0);
    printf("\"endpoints\": {");
    for (int e = 0; e < EP_COUNT; e++) {
        print_ep(t, e, e >= EP_POLL ? m->secs : m->enrol_secs);
        printf(e + 1 < EP_COUNT ? ", " : "}");
    }
    json_t *le = json_string(t->last_err);
    char *les = le ? json_dumps(le, JSON_ENCODE_ANY) : NULL;
    printf(", \"last_error\": %s}\n", les ? les : "\"\"");
    free(les);
    json_decref(le);
}

/* ---- main ---- */

static int workers_init(const struct opts *o, SSL_CTX *ctx, struct agent *agents,
                        struct worker *ws)
{
    int per = o->agents / o->threads, extra = o->agents % o->threads, at = 0;
    for (int i = 0; i < o->agents; i++)
        agents[i] = (struct agent){ .idx = i, .fd = -1 };
    for (int i = 0; i < o->threads; i++) {
        struct worker *w = &ws[i];
        w->id = i;
        w->o = o;
        w->ctx = ctx;
        w->agents = agents + at;
        w->nagents = per + (i < extra);
        at += w->nagents;
        w->rbuf = malloc(RBUF_CAP);
        w->wcap = 64 * 1024 + (size_t)o->lines * 512;
        w->wbuf = malloc(w->wcap);
        if (!w->rbuf || !w->wbuf || make_batch(w) != 0 || w->gzlen + 2048 > w->wcap)
            return -ENOMEM;
    }
    return 0;
}

static int run(const struct opts *o, struct worker *ws, struct measure *m)
{
    double t_start = now_s();
    g_enrol_deadline = t_start + o->enrol_secs;
    g_deadline = t_start + o->enrol_secs + o->secs;   /* refined below */
    pthread_barrier_init(&g_barrier, NULL, (unsigned)o->threads + 1);
    int started = 0;
    for (; started < o->threads; started++)
        if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) != 0)
            break;
    if (started < o->threads) {
        fprintf(stderr, "fleet: could not start %d threads\n", o->threads);
        _exit(1);   /* the started ones wait on a barrier that never fills */
    }
    pthread_barrier_wait(&g_barrier);
    m->enrol_secs = now_s() - t_start;
    atomic_store(&g_requests, 0);
    double s0 = tree_cpu_s(o->watch), d0 = tree_cpu_s(o->watch_db), c0 = self_cpu_s();
    double t0 = now_s();
    g_deadline = t0 + o->secs;
    pthread_barrier_wait(&g_barrier);
    for (int i = 0; i < o->threads; i++)
        pthread_join(ws[i].tid, NULL);
    m->secs = now_s() - t0;
    m->srv_cpu = tree_cpu_s(o->watch) - s0;
    m->db_cpu = tree_cpu_s(o->watch_db) - d0;
    m->self_cpu = self_cpu_s() - c0;
    pthread_barrier_destroy(&g_barrier);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) != 0) {
        usage();
        return 2;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct agent *agents = calloc((size_t)o.agents, sizeof *agents);
    struct worker *ws = calloc((size_t)o.threads, sizeof *ws);
    if (!ctx || !agents || !ws || workers_init(&o, ctx, agents, ws) != 0) {
        fprintf(stderr, "fleet: out of memory\n");
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);   /* pinned by fingerprint instead */
    struct measure m = { 0 };
    struct totals t;
    run(&o, ws, &m);
    if (sum_workers(ws, o.threads, &t) != 0) {
        fprintf(stderr, "fleet: out of memory\n");
        return 1;
    }
    report(&o, &t, &m);
    for (int i = 0; i < o.threads; i++) {
        for (int e = 0; e < EP_COUNT; e++)
            free(ws[i].lat[e].v);
        free(ws[i].rbuf);
        free(ws[i].wbuf);
        free(ws[i].gz);
    }
    for (int e = 0; e < EP_COUNT; e++)
        free(t.lat[e].v);
    free(t.all.v);
    free(agents);
    free(ws);
    SSL_CTX_free(ctx);
    return t.ok[EP_ENROL] == o.agents ? 0 : 1;
}
