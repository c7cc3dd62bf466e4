/* firstconn: first contact with never-seen hosts through a warm proxy, the
 * "minting" figure of `make bench` (bench/run.sh).
 *
 * One process does the whole series, so the client (OpenSSL, its trust
 * store) and the proxy (its leaf key, its socket -> process cache for this
 * client) are warm, and what is left is what a never-seen host costs: the
 * mint of its leaf and the upstream handshake to a new name. For each name,
 * one after another, three new connections (TCP + TLS + GET, no resumption,
 * `Connection: close`):
 *   direct  straight to the origin (the limit);
 *   first   through the proxy (CONNECT): a name the proxy has never seen;
 *   cached  through the proxy again: the same name, its leaf now cached.
 * Before the series, --warm connections of each kind to --warm-host (not
 * counted). Every response is checked (status 200, Content-Length, optional
 * expected length), and each side trusts only the CA that must sign what it
 * sees (--proxy-ca for the proxied ones, --origin-ca for direct ones), so a
 * proxy that tunnels instead of decoding fails every request.
 * Blocking sockets, each step bounded by --io-timeout, the series by -t.
 * Prints one JSON object: per kind the latency percentiles (whole request,
 * and the part until the TLS handshake completed), the per-name differences
 * first - direct and cached - direct, errors, and the proxy's CPU (user and
 * kernel) over the series when --watch PID is given.
 * Must never: run unbounded, or report a response it did not verify. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
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
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define FC_MAX_NAMES 1024
#define FC_HEAD_CAP 8192

enum fc_kind { FC_DIRECT, FC_FIRST, FC_CACHED, FC_KINDS };
static const char *fc_kind_names[FC_KINDS] = { "direct", "first", "cached" };

enum fc_err { FCE_CONNECT, FCE_PROXY, FCE_TLS, FCE_IO, FCE_STATUS, FCE_LENGTH, FCE_COUNT };
static const char *fc_err_names[FCE_COUNT] = { "connect", "proxy", "tls", "io", "status",
                                               "length" };

struct fc_opts {
    char proxy_host[256];
    int proxy_port;
    int port;
    const char *proxy_ca, *origin_ca, *warm_host, *path, *label;
    char *names[FC_MAX_NAMES];
    int nnames;
    int warm;
    long expect_len;
    double io_timeout, t;
    pid_t watch;
};

/* One connection's outcome: 0 or an fc_err; times in µs from its start. */
struct fc_sample {
    uint64_t total_us, tls_us;
};

struct fc_run {
    struct fc_opts o;
    SSL_CTX *ctx_proxy, *ctx_origin;
    struct sockaddr_storage proxy_addr, origin_addr;
    socklen_t proxy_len, origin_len;
    struct fc_sample s[FC_KINDS][FC_MAX_NAMES];
    bool ok[FC_KINDS][FC_MAX_NAMES];
    long errs[FCE_COUNT], errors;
    int done_names;
};

static uint64_t fc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- CPU of the watched process (all its threads: /proc/PID/stat of the
 * thread-group leader sums them) ---- */

static int fc_proc_cpu(pid_t pid, unsigned long long *ut, unsigned long long *st)
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
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", ut, st) != 2)
        return -1;
    return 0;
}

/* ---- one connection ---- */

static void fc_timeouts(int fd, double secs)
{
    struct timeval tv = { .tv_sec = (time_t)secs,
                          .tv_usec = (suseconds_t)((secs - (double)(time_t)secs) * 1e6) };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int fc_dial(const struct sockaddr_storage *a, socklen_t len, double timeout)
{
    int fd = socket(a->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fc_timeouts(fd, timeout); /* SO_SNDTIMEO bounds connect(2) too */
    if (connect(fd, (const struct sockaddr *)a, len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static size_t fc_head_end(const char *p, size_t n)
{
    for (size_t i = 3; i < n; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* CONNECT name:port; the proxy's answer must be exactly one 200 head. */
static int fc_connect_req(int fd, const char *name, int port)
{
    char req[700], head[FC_HEAD_CAP];
    int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", name,
                     port, name, port);
    if (n <= 0 || (size_t)n >= sizeof req || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    size_t len = 0;
    while (len < sizeof head - 1) {
        ssize_t r = recv(fd, head + len, sizeof head - 1 - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        size_t end = fc_head_end(head, len);
        if (end)
            return end == len && strncmp(head, "HTTP/1.", 7) == 0 && atoi(head + 9) == 200
                       ? 0 : -1;
    }
    return -1;
}

static long fc_content_length(char *head, size_t end)
{
    head[end - 1] = '\0';
    long clen = -1;
    for (char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, "transfer-encoding:", 18) == 0)
            return -1;
        if (strncasecmp(h, "content-length:", 15) == 0)
            clen = strtol(h + 15, NULL, 10);
    }
    return clen;
}

/* GET over TLS, `Connection: close`; reads and checks the whole response. */
static enum fc_err fc_exchange(struct fc_run *r, SSL *ssl, const char *name)
{
    static char buf[1 << 16];
    char req[1200], head[FC_HEAD_CAP];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoji-firstconn"
                     "\r\nAccept: */*\r\nConnection: close\r\n\r\n", r->o.path, name);
    if (n <= 0 || (size_t)n >= sizeof req || SSL_write(ssl, req, n) != n)
        return FCE_IO;
    size_t len = 0, end = 0;
    while (!end) {
        if (len >= sizeof head - 1)
            return FCE_IO;
        int k = SSL_read(ssl, head + len, (int)(sizeof head - 1 - len));
        if (k <= 0)
            return FCE_IO;
        len += (size_t)k;
        end = fc_head_end(head, len);
    }
    if (strncmp(head, "HTTP/1.", 7) != 0 || len < 12)
        return FCE_IO;
    int status = atoi(head + 9);
    long clen = fc_content_length(head, end);
    if (clen < 0 || (long)(len - end) > clen)
        return FCE_LENGTH;
    long left = clen - (long)(len - end);
    while (left > 0) {
        int k = SSL_read(ssl, buf, left < (long)sizeof buf ? (int)left : (int)sizeof buf);
        if (k <= 0)
            return FCE_IO;
        left -= k;
    }
    if (status != 200)
        return FCE_STATUS;
    if (r->o.expect_len >= 0 && clen != r->o.expect_len)
        return FCE_LENGTH;
    return FCE_COUNT; /* no error */
}

/* One new connection of `kind` to `name`; FCE_COUNT when it succeeded. */
static enum fc_err fc_one(struct fc_run *r, enum fc_kind kind, const char *name,
                          struct fc_sample *out)
{
    bool via = kind != FC_DIRECT;
    uint64_t t0 = fc_now_us();
    int fd = via ? fc_dial(&r->proxy_addr, r->proxy_len, r->o.io_timeout)
                 : fc_dial(&r->origin_addr, r->origin_len, r->o.io_timeout);
    if (fd < 0)
        return FCE_CONNECT;
    enum fc_err e = FCE_COUNT;
    SSL *ssl = NULL;
    if (via && fc_connect_req(fd, name, r->o.port) < 0)
        e = FCE_PROXY;
    if (e == FCE_COUNT) {
        ssl = SSL_new(via ? r->ctx_proxy : r->ctx_origin);
        if (!ssl || !SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, name) ||
            !SSL_set1_host(ssl, name) || SSL_connect(ssl) != 1)
            e = FCE_TLS;
    }
    out->tls_us = fc_now_us() - t0;
    if (e == FCE_COUNT)
        e = fc_exchange(r, ssl, name);
    out->total_us = fc_now_us() - t0;
    if (getenv("LOADGEN_DEBUG") && e != FCE_COUNT)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return e;
}

static bool fc_record(struct fc_run *r, enum fc_kind kind, int i, const char *name)
{
    enum fc_err e = fc_one(r, kind, name, &r->s[kind][i]);
    r->ok[kind][i] = e == FCE_COUNT;
    if (e != FCE_COUNT) {
        r->errs[e]++;
        r->errors++;
        fprintf(stderr, "firstconn: %s %s: %s\n", fc_kind_names[kind], name, fc_err_names[e]);
    }
    return e == FCE_COUNT;
}

/* The warm-up, then the series; the proxy's CPU is read around the series. */
static void fc_series(struct fc_run *r, unsigned long long cpu0[2], unsigned long long cpu1[2])
{
    for (int i = 0; i < r->o.warm; i++) { /* slot 0 is overwritten below; errors count */
        fc_record(r, FC_DIRECT, 0, r->o.warm_host);
        fc_record(r, FC_CACHED, 0, r->o.warm_host);
    }
    if (r->o.watch)
        fc_proc_cpu(r->o.watch, &cpu0[0], &cpu0[1]);
    uint64_t deadline = fc_now_us() + (uint64_t)(r->o.t * 1e6);
    for (int i = 0; i < r->o.nnames && fc_now_us() < deadline; i++) {
        fc_record(r, FC_DIRECT, i, r->o.names[i]);
        fc_record(r, FC_FIRST, i, r->o.names[i]);
        fc_record(r, FC_CACHED, i, r->o.names[i]);
        r->done_names = i + 1;
    }
    if (r->o.watch)
        fc_proc_cpu(r->o.watch, &cpu1[0], &cpu1[1]);
}

/* ---- statistics and output ---- */

static int fc_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double fc_pct(const int64_t *v, int n, double p)
{
    return n ? (double)v[(int)(p * (double)(n - 1) + 0.5)] : 0;
}

/* Prints "NAME":{"n":..,"p50":..,...} over the values v[0..n) (sorted here). */
static void fc_print_stats(const char *name, int64_t *v, int n)
{
    if (n == 0) { /* no figure: the report shows none rather than a 0 */
        printf(",\"%s\":{\"n\":0}", name);
        return;
    }
    qsort(v, (size_t)n, sizeof *v, fc_cmp_i64);
    double mean = 0;
    for (int i = 0; i < n; i++)
        mean += (double)v[i];
    mean = n ? mean / n : 0;
    printf(",\"%s\":{\"n\":%d,\"p50\":%.0f,\"p90\":%.0f,\"min\":%.0f,\"max\":%.0f,"
           "\"mean\":%.0f}", name, n, fc_pct(v, n, 0.5), fc_pct(v, n, 0.9),
           fc_pct(v, n, 0), fc_pct(v, n, 1), mean);
}

static void fc_report(struct fc_run *r, double cpu_user, double cpu_sys)
{
    static int64_t v[FC_MAX_NAMES];
    char key[48];
    int n;
    printf("{\"label\":\"%s\",\"mode\":\"first\",\"names\":%d,\"errors\":%ld,\"errors_by\":{",
           r->o.label, r->done_names, r->errors);
    for (int k = 0; k < FCE_COUNT; k++)
        printf("%s\"%s\":%ld", k ? "," : "", fc_err_names[k], r->errs[k]);
    printf("}");
    for (int k = 0; k < FC_KINDS; k++) {
        n = 0;
        for (int i = 0; i < r->done_names; i++)
            if (r->ok[k][i])
                v[n++] = (int64_t)r->s[k][i].total_us;
        fc_print_stats(fc_kind_names[k], v, n);
        n = 0;
        for (int i = 0; i < r->done_names; i++)
            if (r->ok[k][i])
                v[n++] = (int64_t)r->s[k][i].tls_us;
        snprintf(key, sizeof key, "%s_tls", fc_kind_names[k]);
        fc_print_stats(key, v, n);
    }
    for (int k = FC_FIRST; k < FC_KINDS; k++) { /* paired: same name, moments apart */
        n = 0;
        for (int i = 0; i < r->done_names; i++)
            if (r->ok[k][i] && r->ok[FC_DIRECT][i])
                v[n++] = (int64_t)r->s[k][i].total_us - (int64_t)r->s[FC_DIRECT][i].total_us;
        snprintf(key, sizeof key, "added_%s", fc_kind_names[k]);
        fc_print_stats(key, v, n);
    }
    n = 0;
    for (int i = 0; i < r->done_names; i++)
        if (r->ok[FC_FIRST][i] && r->ok[FC_CACHED][i])
            v[n++] = (int64_t)r->s[FC_FIRST][i].total_us - (int64_t)r->s[FC_CACHED][i].total_us;
    fc_print_stats("first_minus_cached", v, n);
    printf(",\"proxy_user_s\":%.3f,\"proxy_sys_s\":%.3f,\"proxy_cpu_s\":%.3f}\n", cpu_user,
           cpu_sys, cpu_user + cpu_sys);
}

/* ---- setup ---- */

static int fc_resolve(const char *host, int port, struct sockaddr_storage *a, socklen_t *len)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    int rc = getaddrinfo(host, ps, &hints, &ai);
    if (rc) {
        fprintf(stderr, "firstconn: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    memcpy(a, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static SSL_CTX *fc_ctx(const char *cafile)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
        fprintf(stderr, "firstconn: cannot load CA file %s\n", cafile);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int fc_split_names(struct fc_opts *o, char *list)
{
    for (char *save = NULL, *tok = strtok_r(list, ", \n", &save); tok;
         tok = strtok_r(NULL, ", \n", &save)) {
        if (o->nnames >= FC_MAX_NAMES || strlen(tok) > 253)
            return -1;
        o->names[o->nnames++] = tok;
    }
    return 0;
}

static void fc_usage(void)
{
    fprintf(stderr,
        "usage: firstconn --proxy HOST:PORT --proxy-ca FILE --origin-ca FILE\n"
        "  --names NAME,NAME,... [--port 443] [--warm-host NAME] [--warm N] [--path /1k]\n"
        "  [--expect-len BYTES] [--io-timeout S] [-t SECONDS] [--watch PID] [--label TEXT]\n");
}

static const struct option fc_longopts[] = {
    { "proxy", 1, 0, 'x' }, { "proxy-ca", 1, 0, 'P' }, { "origin-ca", 1, 0, 'O' },
    { "names", 1, 0, 'N' }, { "port", 1, 0, 'p' }, { "warm-host", 1, 0, 'H' },
    { "warm", 1, 0, 'w' }, { "path", 1, 0, 'u' }, { "expect-len", 1, 0, 'e' },
    { "io-timeout", 1, 0, 'i' }, { "time", 1, 0, 't' }, { "watch", 1, 0, 'W' },
    { "label", 1, 0, 'L' }, { 0, 0, 0, 0 }
};

static int fc_parse(int argc, char **argv, struct fc_opts *o)
{
    *o = (struct fc_opts){ .port = 443, .warm = 5, .path = "/1k", .label = "first",
                           .expect_len = -1, .io_timeout = 10, .t = 120 };
    int ch;
    char *colon;
    while ((ch = getopt_long(argc, argv, "t:", fc_longopts, NULL)) != -1) {
        switch (ch) {
        case 'x':
            colon = strrchr(optarg, ':');
            if (!colon || colon == optarg || (size_t)(colon - optarg) >= sizeof o->proxy_host)
                return -1;
            memcpy(o->proxy_host, optarg, (size_t)(colon - optarg));
            o->proxy_port = atoi(colon + 1);
            break;
        case 'P': o->proxy_ca = optarg; break;
        case 'O': o->origin_ca = optarg; break;
        case 'N': if (fc_split_names(o, optarg) < 0) return -1; break;
        case 'p': o->port = atoi(optarg); break;
        case 'H': o->warm_host = optarg; break;
        case 'w': o->warm = atoi(optarg); break;
        case 'u': o->path = optarg; break;
        case 'e': o->expect_len = atol(optarg); break;
        case 'i': o->io_timeout = atof(optarg); break;
        case 't': o->t = atof(optarg); break;
        case 'W': o->watch = (pid_t)atoi(optarg); break;
        case 'L': o->label = optarg; break;
        default: return -1;
        }
    }
    if (!o->proxy_host[0] || o->proxy_port <= 0 || o->proxy_port > 65535 || !o->proxy_ca ||
        !o->origin_ca || o->nnames < 1 || o->port <= 0 || o->port > 65535 || o->warm < 0 ||
        o->warm > 1000 || (o->warm && !o->warm_host) || o->io_timeout <= 0 ||
        o->io_timeout > 60 || o->t <= 0 || o->t > 3600 || o->path[0] != '/' ||
        strlen(o->path) > 512)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    static struct fc_run run;
    struct fc_run *r = &run;
    if (fc_parse(argc, argv, &r->o) < 0) {
        fc_usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    r->ctx_proxy = fc_ctx(r->o.proxy_ca);
    r->ctx_origin = fc_ctx(r->o.origin_ca);
    /* every name resolves to the origin (the bench's hosts file): resolve the first */
    if (!r->ctx_proxy || !r->ctx_origin ||
        fc_resolve(r->o.proxy_host, r->o.proxy_port, &r->proxy_addr, &r->proxy_len) < 0 ||
        fc_resolve(r->o.names[0], r->o.port, &r->origin_addr, &r->origin_len) < 0)
        return 1;
    unsigned long long c0[2] = { 0, 0 }, c1[2] = { 0, 0 };
    fc_series(r, c0, c1);
    double tck = (double)sysconf(_SC_CLK_TCK);
    if (c1[0] < c0[0] || c1[1] < c0[1]) /* the proxy went away: no CPU figure */
        c1[0] = c0[0], c1[1] = c0[1];
    fc_report(r, (double)(c1[0] - c0[0]) / tck, (double)(c1[1] - c0[1]) / tck);
    return r->errors ? 3 : 0;
}
