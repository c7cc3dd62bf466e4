/* mgmt/https: a small blocking HTTPS/1.1 client for the mgmt thread and the
 * enroll/unenroll commands. One request per connection (Connection: close):
 * the agent talks to its server a few times a minute, so connection reuse is
 * not worth its states. The server certificate is not checked against a CA:
 * it is pinned by the SHA-256 fingerprint of its DER encoding, which is what
 * makes a self-signed server certificate safe. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "http/http1.h"
#include "mgmt/mgmt_int.h"
#include "util/util.h"

int mgmt_url_parse(const char *url, struct mgmt_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (strncmp(url, "https://", 8) != 0)
        return util_err(err, errlen, -EINVAL, "server URL '%s': must start with https://", url);
    const char *p = url + 8, *end = p + strcspn(p, "/?#");
    const char *hs = p, *he, *port = NULL;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (!he)
            return util_err(err, errlen, -EINVAL, "server URL '%s': unclosed [", url);
        if (he + 1 < end && he[1] == ':')
            port = he + 2;
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (he)
            port = he + 1;
        else
            he = end;
    }
    size_t hl = (size_t)(he - hs), pl = port ? (size_t)(end - port) : 0;
    if (hl == 0 || hl >= sizeof u->host || (port && (pl == 0 || pl > 5)))
        return util_err(err, errlen, -EINVAL, "server URL '%s': expected https://HOST[:PORT]", url);
    memcpy(u->host, hs, hl);
    if (port) {
        memcpy(u->port, port, pl);
        for (size_t i = 0; i < pl; i++)
            if (!isdigit((unsigned char)u->port[i]))
                return util_err(err, errlen, -EINVAL, "server URL '%s': bad port", url);
    } else {
        strcpy(u->port, "443");
    }
    if ((size_t)(end - p) >= sizeof u->authority)
        return util_err(err, errlen, -EINVAL, "server URL '%s': too long", url);
    memcpy(u->authority, p, (size_t)(end - p));
    const char *path = end;
    size_t plen = strcspn(path, "?#");
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    if (plen >= sizeof u->prefix)
        return util_err(err, errlen, -EINVAL, "server URL '%s': path too long", url);
    memcpy(u->prefix, path, plen);
    return 0;
}

bool mgmt_fp_normalize(const char *in, char out[100])
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ':')
            continue;
        if (!isxdigit((unsigned char)*p) || n >= 64)
            return false;
        if (n && n % 2 == 0)
            *out++ = ':';
        *out++ = (char)toupper((unsigned char)*p);
        n++;
    }
    *out = '\0';
    return n == 64;
}

static int connect_timeout(const struct mgmt_url *u, unsigned timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC }, *res = NULL;
    int g = getaddrinfo(u->host, u->port, &hints, &res);
    if (g != 0)
        return util_err(err, errlen, -EHOSTUNREACH, "cannot resolve %s: %s", u->host, gai_strerror(g));
    int fd = -1, e = ECONNREFUSED;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            socklen_t sl = sizeof e;
            if (poll(&pfd, 1, (int)timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0)
                rc = e ? -1 : 0;
            else
                e = ETIMEDOUT;
        } else if (rc < 0) {
            e = errno;
        }
        if (rc < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return util_err(err, errlen, -e, "cannot connect to %s port %s: %s", u->host, u->port, strerror(e));
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int leaf_fingerprint(SSL *ssl, char out[100])
{
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert)
        return -EPROTO;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = X509_digest(cert, EVP_sha256(), md, &n);
    X509_free(cert);
    if (!ok || n != 32)
        return -EPROTO;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + i * 3, 4, i + 1 < n ? "%02X:" : "%02X", md[i]);
    return 0;
}

static int tls_open(int fd, const struct mgmt_url *u, const char *pin, char *seen_fp, SSL_CTX **ctxp,
                    SSL **sslp, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return util_err(err, errlen, -ENOMEM, "out of memory (TLS)");
    *ctxp = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);   /* pinned below instead */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return util_err(err, errlen, -ENOMEM, "out of memory (TLS)");
    *sslp = ssl;
    SSL_set_fd(ssl, fd);
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, u->host, &a4) != 1 && inet_pton(AF_INET6, u->host, &a6) != 1)
        SSL_set_tlsext_host_name(ssl, u->host);
    if (SSL_connect(ssl) != 1) {
        unsigned long e = ERR_get_error();
        char why[256];
        ERR_error_string_n(e, why, sizeof why);
        return util_err(err, errlen, -ECONNABORTED, "TLS handshake with %s failed: %s", u->authority,
                        e ? why : "connection closed or timed out");
    }
    char fp[100];
    if (leaf_fingerprint(ssl, fp) < 0)
        return util_err(err, errlen, -EPROTO, "%s sent no certificate", u->authority);
    if (seen_fp)
        memcpy(seen_fp, fp, sizeof fp);
    char want[100];
    if (pin && *pin && (!mgmt_fp_normalize(pin, want) || strcmp(want, fp) != 0))
        return util_err(err, errlen, -EPERM,
                        "the server %s presented a certificate with SHA-256 fingerprint %s, but "
                        "the pinned fingerprint is %s: refusing to talk to it (if the server's "
                        "certificate was really replaced, enroll again with --fingerprint)",
                        u->authority, fp, pin);
    return 0;
}

static int send_request(SSL *ssl, const struct mgmt_url *u, const struct mgmt_http_req *rq, char *err,
                        size_t errlen)
{
    struct buf h;
    buf_init(&h, 16384);
    buf_printf(&h, "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoji/%s\r\nConnection: close\r\n"
                   "Accept: application/json\r\n",
               rq->method, u->prefix, rq->path, u->authority, SHOJI_VERSION);
    if (rq->credential)
        buf_printf(&h, "Authorization: Bearer %s\r\n", rq->credential);
    if (rq->if_none_match && *rq->if_none_match)
        buf_printf(&h, "If-None-Match: %s\r\n", rq->if_none_match);
    if (rq->content_type)
        buf_printf(&h, "Content-Type: %s\r\n", rq->content_type);
    if (rq->content_encoding)
        buf_printf(&h, "Content-Encoding: %s\r\n", rq->content_encoding);
    int rc = buf_printf(&h, "Content-Length: %zu\r\n\r\n", rq->body_len);
    if (rc == 0 && rq->body_len)
        rc = buf_append(&h, rq->body, rq->body_len);
    if (rc < 0) {
        buf_free(&h);
        return util_err(err, errlen, rc, "request too large");
    }
    size_t off = 0;
    while (off < h.len) {
        int n = SSL_write(ssl, h.p + off, (int)UTIL_MIN(h.len - off, 1u << 20));
        if (n <= 0) {
            buf_free(&h);
            return util_err(err, errlen, -EIO, "sending to %s failed (connection closed or timed out)",
                            u->authority);
        }
        off += (size_t)n;
    }
    buf_free(&h);
    return 0;
}

/* 1 when the body is complete (written to resp->body), 0 need more, <0 bad. */
static int body_done(const struct http_response *hr, const char *b, size_t n, bool eof,
                     struct mgmt_http_resp *resp)
{
    buf_reset(&resp->body);
    if (hr->body == HTTP_BODY_NONE)
        return 1;
    if (hr->body == HTTP_BODY_LENGTH) {
        if (n < hr->content_length)
            return eof ? -EPROTO : 0;
        return buf_append(&resp->body, b, (size_t)hr->content_length) < 0 ? -E2BIG : 1;
    }
    if (hr->body == HTTP_BODY_UNTIL_CLOSE)
        return eof ? (buf_append(&resp->body, b, n) < 0 ? -E2BIG : 1) : 0;
    struct http_chunked c;
    http_chunked_init(&c);
    size_t off = 0;
    for (;;) {
        size_t used = 0;
        struct sv d;
        int r = http_chunked_step(&c, b + off, n - off, &used, &d);
        off += used;
        if (r == HTTP_ERROR)
            return -EPROTO;
        if (r == HTTP_CHUNK_DONE)
            return 1;
        if (r == HTTP_CHUNK_DATA && buf_append(&resp->body, d.p, d.n) < 0)
            return -E2BIG;
        if (r == HTTP_CHUNK_NEED_MORE)
            return eof ? -EPROTO : 0;
    }
}

int mgmt_http_parse_answer(const char *buf, size_t len, bool eof, const char *method,
                           struct mgmt_http_resp *resp)
{
    struct http_limits lim;
    http_limits_default(&lim);
    struct http_response hr;
    for (;;) {
        int head = http_parse_response(buf, len, &lim, sv_make(method, strlen(method)), &hr);
        if (head == HTTP_ERROR || (head == 0 && eof))
            return -EPROTO;
        if (head == 0)
            return 0;
        if (hr.status >= 200) {
            int d = body_done(&hr, buf + head, len - (size_t)head, eof, resp);
            if (d == 1) {
                resp->status = hr.status;
                const struct http_header *et = http_find_header(hr.headers, hr.nheaders, "ETag");
                if (et)
                    sv_copy(resp->etag, sizeof resp->etag, et->value);
                if (buf_append(&resp->body, "", 1) < 0)   /* NUL-terminate for jansson */
                    return -E2BIG;
                resp->body.len--;
            }
            return d;
        }
        buf += head;   /* 100 Continue: the next head follows */
        len -= (size_t)head;
    }
}

static int read_response(SSL *ssl, const struct mgmt_url *u, const char *method,
                         struct mgmt_http_resp *resp, char *err, size_t errlen)
{
    struct buf raw;
    buf_init(&raw, MGMT_BODY_MAX + 65536);
    int rc = 0;
    for (;;) {
        bool eof = false;
        if (buf_reserve(&raw, 16384) < 0) {
            rc = util_err(err, errlen, -E2BIG, "the answer from %s is too large", u->authority);
            break;
        }
        int n = SSL_read(ssl, raw.p + raw.len, (int)(raw.cap - raw.len));
        if (n > 0)
            raw.len += (size_t)n;
        else
            eof = true;
        /* Parsed again from the start after every read: simple, and the
         * answers are small. */
        int d = mgmt_http_parse_answer(raw.p, raw.len, eof, method, resp);
        if (d < 0) {
            rc = util_err(err, errlen, d, "%s: %s", u->authority,
                          raw.len == 0 ? "connection closed or timed out before an answer"
                                       : "malformed, truncated or too large answer");
            break;
        }
        if (d == 1)
            break;
    }
    buf_free(&raw);
    return rc;
}

int mgmt_https(const struct mgmt_url *u, const char *pin, const struct mgmt_http_req *rq,
               struct mgmt_http_resp *resp, char *seen_fp, unsigned timeout_ms, char *err,
               size_t errlen)
{
    memset(resp, 0, sizeof *resp);
    buf_init(&resp->body, MGMT_BODY_MAX);
    int fd = connect_timeout(u, timeout_ms ? timeout_ms : 10000, err, errlen);
    if (fd < 0)
        return fd;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int rc = tls_open(fd, u, pin, seen_fp, &ctx, &ssl, err, errlen);
    if (rc == 0)
        rc = send_request(ssl, u, rq, err, errlen);
    if (rc == 0)
        rc = read_response(ssl, u, rq->method, resp, err, errlen);
    if (ssl) {
        if (rc == 0)
            SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
    close(fd);
    if (rc < 0)
        mgmt_http_resp_free(resp);
    return rc;
}

void mgmt_http_resp_free(struct mgmt_http_resp *r)
{
    buf_free(&r->body);
}

void mgmt_http_error_text(const struct mgmt_http_resp *r, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *j = r->body.len ? json_loadb(r->body.p, r->body.len, 0, NULL) : NULL;
    const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
    if (e)
        util_strlcpy(out, e, cap);
    else
        snprintf(out, cap, "HTTP %d", r->status);
    json_decref(j);
}
