/* http1: the request-head parser (RFC 9112 2-3, 6; RFC 9110 7.2). See
 * http1.h for the contract and docs/HTTP.md for what is refused and why.
 * Every check here runs on complete lines only, in input order, so parsing
 * a prefix of a head gives "need more" or the very same answer. */
#include "http/http1_int.h"

#include <string.h>

static const char slash[] = "/";

static int req_fail(struct http_request *r, int status, const char *why)
{
    r->error_status = status;
    r->error_reason = why;
    return HTTP_ERROR;
}

static void req_reset(struct http_request *r)
{
    /* Not memset: headers[] is 4 KiB and only nheaders entries are valid. */
    r->method = r->target = r->scheme = r->host = r->path = r->host_header = sv_make(NULL, 0);
    r->minor = 0;
    r->form = HTTP_FORM_ORIGIN;
    r->port = 0;
    r->nheaders = 0;
    r->body = HTTP_BODY_NONE;
    r->content_length = 0;
    r->keep_alive = r->expect_continue = r->upgrade = false;
    r->error_status = 0;
    r->error_reason = NULL;
}

/* reg-name characters we accept in a host: letters, digits, "-._~". */
static bool host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static bool ipv6_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
           c == ':' || c == '.';
}

/* port = 1*5DIGIT in 1..65535 */
static int parse_port(struct sv s, uint16_t *port)
{
    if (s.n == 0 || s.n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned d = (unsigned char)s.p[i] - '0';
        if (d > 9)
            return -1;
        v = v * 10 + d;
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* authority = host [ ":" port ], no userinfo (RFC 9110 4.2, 7.2). The host
 * is a reg-name, an IPv4 address or an [IPv6] literal (brackets dropped). */
static int parse_authority(struct sv a, struct sv *host, uint16_t *port, const char **why)
{
    size_t i;
    *port = 0;
    if (a.n && memchr(a.p, '@', a.n)) {
        *why = "userinfo (user@host) in the authority is not allowed";
        return -1;
    }
    if (a.n && a.p[0] == '[') {
        const char *rb = memchr(a.p, ']', a.n);
        size_t hn = rb ? (size_t)(rb - a.p) - 1 : 0;
        bool ok = hn >= 2 && memchr(a.p + 1, ':', hn);
        for (size_t k = 1; ok && k <= hn; k++)
            ok = ipv6_char((unsigned char)a.p[k]);
        if (!ok) {
            *why = "invalid IPv6 literal in the authority";
            return -1;
        }
        *host = sv_make(a.p + 1, hn);
        i = hn + 2;
    } else {
        for (i = 0; i < a.n && host_char((unsigned char)a.p[i]); i++)
            ;
        if (i == 0 || (i < a.n && a.p[i] != ':')) {
            *why = i == 0 ? "empty or invalid host" : "invalid character in the host";
            return -1;
        }
        *host = sv_make(a.p, i);
    }
    if (i == a.n)
        return 0;
    if (a.p[i] != ':' || parse_port(sv_make(a.p + i + 1, a.n - i - 1), port) < 0) {
        *why = "invalid port (must be 1..65535, digits only)";
        return -1;
    }
    return 0;
}

/* absolute-form: scheme "://" authority path-abempty [ "?" query ] with
 * scheme http or https (RFC 9112 3.2.2). */
static int parse_absolute(struct http_request *r, size_t colon, const char **why)
{
    struct sv t = r->target;
    r->scheme = sv_make(t.p, colon);
    bool https = sv_ieq_cstr(r->scheme, "https");
    if (!https && !sv_ieq_cstr(r->scheme, "http")) {
        *why = "only http and https absolute-form targets are supported";
        return -1;
    }
    const char *a = t.p + colon + 3, *end = t.p + t.n;
    const char *p = a;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    if (p < end && *p != '/') {
        *why = "absolute-form target without a path before its query";
        return -1;
    }
    if (parse_authority(sv_make(a, (size_t)(p - a)), &r->host, &r->port, why) < 0)
        return -1;
    if (r->port == 0)
        r->port = https ? 443 : 80;
    r->path = p < end ? sv_make(p, (size_t)(end - p)) : sv_make(slash, 1);
    r->form = HTTP_FORM_ABSOLUTE;
    return 0;
}

/* Which of the four request-target forms (RFC 9112 3.2), and its parts. */
static int parse_target(struct http_request *r, const char **why)
{
    struct sv t = r->target;
    bool connect = sv_eq(r->method, SV("CONNECT"));
    size_t colon = 0;
    while (colon < t.n && (http_is_tchar((unsigned char)t.p[colon])) && t.p[colon] != '/')
        colon++;
    bool absolute = colon > 0 && t.n - colon >= 3 && memcmp(t.p + colon, "://", 3) == 0;
    if (connect) {
        if (t.p[0] == '/' || absolute || parse_authority(t, &r->host, &r->port, why) < 0 ||
            r->port == 0) {
            *why = "CONNECT needs an authority-form target (host:port)";
            return -1;
        }
        r->form = HTTP_FORM_AUTHORITY;
        return 0;
    }
    if (t.p[0] == '/') {
        r->path = t;
        return 0;
    }
    if (t.n == 1 && t.p[0] == '*') {
        if (!sv_eq(r->method, SV("OPTIONS"))) {
            *why = "asterisk-form target is only allowed with OPTIONS";
            return -1;
        }
        r->form = HTTP_FORM_ASTERISK;
        r->path = t;
        return 0;
    }
    if (absolute)
        return parse_absolute(r, colon, why);
    *why = "invalid request target (authority form is only allowed with CONNECT)";
    return -1;
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 3).
 * p[0..n) has no control bytes (the scanner refused them). */
static int parse_request_line(const char *p, size_t n, struct http_request *r)
{
    size_t i = 0;
    while (i < n && http_is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i == n || p[i] != ' ')
        return req_fail(r, 400, "malformed request line (method)");
    r->method = sv_make(p, i);
    const char *t = p + i + 1, *sp = memchr(t, ' ', n - i - 1);
    if (!sp || sp == t)
        return req_fail(r, 400, "malformed request line (target)");
    r->target = sv_make(t, (size_t)(sp - t));
    for (size_t k = 0; k < r->target.n; k++)
        if ((unsigned char)t[k] >= 0x7f)
            return req_fail(r, 400, "request target has bytes outside visible ASCII");
    int rc = http_parse_version(sv_make(sp + 1, (size_t)(p + n - sp - 1)), &r->minor);
    if (rc == -2)
        return req_fail(r, 505, "HTTP version not supported (only HTTP/1.0 and HTTP/1.1)");
    if (rc < 0)
        return req_fail(r, 400, "malformed request line (HTTP version)");
    const char *why = NULL;
    if (parse_target(r, &why) < 0)
        return req_fail(r, 400, why);
    return 0;
}

/* Host (RFC 9110 7.2, RFC 9112 3.2): exactly one in HTTP/1.1, and it must
 * name the same authority as an absolute-form or authority-form target. */
static int check_host(struct http_request *r, const struct http_fields_info *fi)
{
    if (fi->nhost > 1)
        return req_fail(r, 400, "more than one Host field");
    if (fi->nhost == 0) {
        if (r->minor == 1 && r->form != HTTP_FORM_AUTHORITY)
            return req_fail(r, 400, "missing Host field (required in HTTP/1.1)");
        return 0;
    }
    struct sv hh;
    uint16_t hp;
    const char *why = NULL;
    r->host_header = fi->host->value;
    if (parse_authority(r->host_header, &hh, &hp, &why) < 0)
        return req_fail(r, 400, "invalid Host field");
    if (r->form == HTTP_FORM_ORIGIN || r->form == HTTP_FORM_ASTERISK) {
        r->host = hh;
        r->port = hp ? hp : 80;
        return 0;
    }
    if (r->form == HTTP_FORM_ABSOLUTE && hp == 0)
        hp = sv_ieq_cstr(r->scheme, "https") ? 443 : 80;
    if (!sv_ieq(hh, r->host) || (hp != 0 && hp != r->port))
        return req_fail(r, 400, "Host field disagrees with the request target");
    return 0;
}

/* Message body length (RFC 9112 6.1, 6.3): anything two parsers could frame
 * differently is refused. */
static int request_framing(struct http_request *r, const struct http_fields_info *fi)
{
    bool connect = r->form == HTTP_FORM_AUTHORITY;
    if (fi->has_te) {
        if (fi->has_cl)
            return req_fail(r, 400, "both Content-Length and Transfer-Encoding");
        if (r->minor == 0)
            return req_fail(r, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (connect)
            return req_fail(r, 400, "CONNECT request with a body");
        if (fi->te_chunked > 1)
            return req_fail(r, 400, "chunked transfer coding applied more than once");
        if (fi->te_unknown)
            return req_fail(r, 501, "unknown transfer coding");
        if (!fi->te_last_chunked)
            return req_fail(r, 400, "the last transfer coding is not chunked");
        r->body = HTTP_BODY_CHUNKED;
        return 0;
    }
    if (fi->has_cl) {
        if (connect && fi->cl)
            return req_fail(r, 400, "CONNECT request with a body");
        r->content_length = fi->cl;
        r->body = fi->cl ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    }
    return 0;
}

static int request_semantics(struct http_request *r)
{
    struct http_fields_info fi;
    const char *why = NULL;
    if (http_fields_analyze(r->headers, r->nheaders, &fi, &why) < 0)
        return req_fail(r, 400, why);
    if (check_host(r, &fi) < 0 || request_framing(r, &fi) < 0)
        return HTTP_ERROR;
    if (r->minor == 1)
        r->keep_alive = !fi.conn_close;
    else
        r->keep_alive = fi.conn_keep_alive && !fi.conn_close;
    /* RFC 9110 10.1.1: 100-continue in an HTTP/1.0 request is ignored. */
    r->expect_continue = r->minor == 1 && fi.expect &&
                         sv_ieq_cstr(fi.expect->value, "100-continue");
    r->upgrade = fi.conn_upgrade && fi.upgrade && fi.upgrade->value.n > 0;
    return 0;
}

int http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
                       struct http_request *req)
{
    struct http_limits l;
    http_limits_norm(lim, &l);
    req_reset(req);
    /* RFC 9112 2.2: ignore (a bounded number of) empty lines first. */
    size_t pos = 0;
    for (int k = 0; k < HTTP_MAX_LEADING_CRLF && pos + 1 < len && buf[pos] == '\r' &&
                    buf[pos + 1] == '\n'; k++)
        pos += 2;
    size_t wend = UTIL_MIN(pos + l.max_line + 2, l.max_head), cr = 0;
    const char *why = NULL;
    int rc = http_scan_line(buf, len, pos, wend, &cr, &why);
    if (rc == HTTP_NEED_MORE)
        return HTTP_NEED_MORE;
    if (rc == HTTP_SCAN_LIMIT)
        return pos + l.max_line + 2 <= l.max_head
                   ? req_fail(req, 414, "request line too long")
                   : req_fail(req, 431, "request head too long");
    if (rc < 0)
        return req_fail(req, 400, why);
    if (cr == pos)
        return req_fail(req, 400, "too many empty lines before the request line");
    if (parse_request_line(buf + pos, cr - pos, req) < 0)
        return HTTP_ERROR;
    int status = 0;
    rc = http_parse_fields(buf, len, cr + 2, &l, req->headers, &req->nheaders, &status, &why);
    if (rc == HTTP_NEED_MORE)
        return HTTP_NEED_MORE;
    if (rc < 0)
        return req_fail(req, status, why);
    if (request_semantics(req) < 0)
        return HTTP_ERROR;
    return rc;
}

static void rebase_sv(struct sv *v, uintptr_t lo, size_t len, const char *to)
{
    uintptr_t a = (uintptr_t)v->p;
    if (v->p && a >= lo && a - lo <= len)
        v->p = to + (a - lo);
}

void http_request_rebase(struct http_request *req, const char *buf, size_t len,
                         const char *to)
{
    uintptr_t lo = (uintptr_t)buf;
    struct sv *views[] = { &req->method, &req->target, &req->scheme,
                           &req->host, &req->path, &req->host_header };
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        rebase_sv(views[i], lo, len, to);
    for (size_t i = 0; i < req->nheaders; i++) {
        rebase_sv(&req->headers[i].name, lo, len, to);
        rebase_sv(&req->headers[i].value, lo, len, to);
    }
}
