/* http1_write: the heads shoji forwards (RFC 9110 7.6: hop-by-hop fields
 * removed, Via added) and the standard reason phrases. A failed write
 * leaves `out` as it was. See http1.h. */
#include "http/http1_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define HOP_TOKENS 32

/* The field names a message's Connection (and Proxy-Connection) fields list,
 * collected once so the writer is linear in the number of fields. */
struct hop_set {
    struct sv tok[HOP_TOKENS];
    size_t n;
    bool overflow;
};

static void hop_collect(const struct http_header *h, size_t n, struct hop_set *hs)
{
    hs->n = 0;
    hs->overflow = false;
    for (size_t i = 0; i < n; i++) {
        if (!HTTP_IEQ(h[i].name, "connection") && !HTTP_IEQ(h[i].name, "proxy-connection"))
            continue;
        struct sv rest = h[i].value, e;
        while (http_list_next(&rest, &e)) {
            if (e.n == 0)
                continue;
            if (hs->n == HOP_TOKENS) {
                hs->overflow = true;
                return;
            }
            hs->tok[hs->n++] = e;
        }
    }
}

static bool hop_is(const struct http_header *h, size_t n, const struct hop_set *hs,
                   struct sv name)
{
    if (hs->overflow)
        return http_is_hop_by_hop(h, n, name);
    if (http_is_hop_by_hop(NULL, 0, name))
        return true;
    for (size_t i = 0; i < hs->n; i++)
        if (sv_ieq(hs->tok[i], name))
            return true;
    return false;
}

static int put_sv(struct buf *b, struct sv s) { return buf_append(b, s.p, s.n); }

/* "Name: value\r\n". A field line the parser read as "Name:value\r\n" or
 * "Name: value\r\n" (no trailing whitespace) is still whole in the head it
 * came from: one copy of those bytes. Any other goes out normalised. */
static int put_field(struct buf *out, const struct http_header *f)
{
    const char *p = f->name.p, *v = f->value.p;
    /* As integers: name and value may be unrelated objects (a field made
     * by the proxy); then the gap is anything but 1 or 2, and the bytes
     * around the value are not looked at. */
    uintptr_t gap = (uintptr_t)v - ((uintptr_t)p + f->name.n);
    if (f->name.n && f->value.n && (gap == 1 || (gap == 2 && v[-1] == ' ')) && p[f->name.n] == ':' &&
        v[f->value.n] == '\r' && v[f->value.n + 1] == '\n')
        return buf_append(out, p, f->name.n + gap + f->value.n + 2);
    int rc = put_sv(out, f->name);
    if (!rc)
        rc = buf_append(out, ": ", 2);
    if (!rc)
        rc = put_sv(out, f->value);
    if (!rc)
        rc = buf_append(out, "\r\n", 2);
    return rc;
}

/* The end-to-end fields: all but hop-by-hop ones (and Host for requests,
 * which the writer puts first). Upgrade is kept when `keep_upgrade`. */
static int write_fields(struct buf *out, const struct http_header *h, size_t n, bool skip_host,
                        bool keep_upgrade)
{
    struct hop_set hs;
    hop_collect(h, n, &hs);
    int rc = 0;
    struct sv cl = { NULL, 0 };
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct sv name = h[i].name;
        if (skip_host && HTTP_IEQ(name, "host"))
            continue;
        if (HTTP_IEQ(name, "content-length")) {
            if (!cl.p)   /* the parser made sure all values agree */
                cl = h[i].value;
            continue;
        }
        if (!(keep_upgrade && HTTP_IEQ(name, "upgrade")) && hop_is(h, n, &hs, name))
            continue;
        rc = put_field(out, &h[i]);
    }
    if (cl.p && rc == 0) {
        /* One Content-Length, whatever the message repeated ("5, 5" or the
         * field twice): a strict next hop refuses duplicates. */
        size_t d = 0;
        while (d < cl.n && cl.p[d] >= '0' && cl.p[d] <= '9')
            d++;
        rc = buf_append(out, "Content-Length: ", 16);
        if (!rc)
            rc = buf_append(out, cl.p, d);
        if (!rc)
            rc = buf_append(out, "\r\n", 2);
    }
    return rc;
}

/* Re-sends the message's transfer codings as one field: the proxy re-frames
 * the body with chunked itself, and codings before chunked stay applied. */
static int write_te(struct buf *out, const struct http_header *h, size_t n)
{
    bool first = true;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!HTTP_IEQ(h[i].name, "transfer-encoding"))
            continue;
        rc = buf_append_str(out, first ? "Transfer-Encoding: " : ", ");
        if (!rc)
            rc = put_sv(out, h[i].value);
        first = false;
    }
    if (first && rc == 0)
        return buf_append_str(out, "Transfer-Encoding: chunked\r\n");
    return rc ? rc : buf_append(out, "\r\n", 2);
}

static int write_request_start(struct buf *out, const struct http_request *req)
{
    struct sv target = req->path;
    if (req->form == HTTP_FORM_AUTHORITY)
        target = req->target;
    int rc = put_sv(out, req->method);
    if (!rc)
        rc = buf_append(out, " ", 1);
    if (!rc)
        rc = put_sv(out, target);
    if (!rc)
        rc = buf_append_str(out, " HTTP/1.1\r\n");
    if (rc)
        return rc;
    if (req->form == HTTP_FORM_ABSOLUTE) {
        bool v6 = memchr(req->host.p, ':', req->host.n) != NULL;
        uint16_t def = HTTP_IEQ(req->scheme, "https") ? 443 : 80;
        rc = buf_printf(out, "Host: %s%.*s%s", v6 ? "[" : "", (int)req->host.n, req->host.p,
                        v6 ? "]" : "");
        if (!rc && req->port != def)
            rc = buf_printf(out, ":%u", (unsigned)req->port);
        return rc ? rc : buf_append(out, "\r\n", 2);
    }
    struct sv host = req->form == HTTP_FORM_AUTHORITY ? req->target : req->host_header;
    if (host.n == 0)
        return 0;
    rc = buf_append_str(out, "Host: ");
    if (!rc)
        rc = put_sv(out, host);
    return rc ? rc : buf_append(out, "\r\n", 2);
}

static int write_failed(struct buf *out, size_t start, int rc)
{
    out->len = start;
    return rc == -ENOMEM ? -ENOMEM : -ENOBUFS;
}

int http_write_request_head(struct buf *out, const struct http_request *req,
                            const char *extra)
{
    size_t start = out->len;
    int rc = write_request_start(out, req);
    if (!rc)
        rc = write_fields(out, req->headers, req->nheaders, true, req->upgrade);
    if (!rc && req->body == HTTP_BODY_CHUNKED)
        rc = write_te(out, req->headers, req->nheaders);
    if (!rc && req->upgrade)
        rc = buf_append_str(out, "Connection: upgrade\r\n");
    if (!rc && extra)
        rc = buf_append_str(out, extra);
    if (!rc)
        rc = buf_append_str(out, "Via: 1.1 shoji\r\n\r\n");
    return rc ? write_failed(out, start, rc) : 0;
}

int http_write_response_head(struct buf *out, const struct http_response *resp,
                             bool keep_alive, const char *extra)
{
    size_t start = out->len;
    bool switching = resp->status == 101;
    struct sv reason = resp->reason;
    if (reason.n == 0)
        reason = sv_make(http_reason(resp->status), strlen(http_reason(resp->status)));
    /* The status line, without printf: this runs for every response. */
    char code[5] = { ' ', (char)('0' + resp->status / 100 % 10), (char)('0' + resp->status / 10 % 10),
                     (char)('0' + resp->status % 10), ' ' };
    int rc = buf_append(out, "HTTP/1.1", 8);
    if (!rc)
        rc = buf_append(out, code, sizeof code);
    if (!rc)
        rc = buf_append(out, reason.p, reason.n);
    if (!rc)
        rc = buf_append(out, "\r\n", 2);
    if (!rc)
        rc = write_fields(out, resp->headers, resp->nheaders, false, switching);
    if (!rc && (resp->body == HTTP_BODY_CHUNKED ||
                (resp->body == HTTP_BODY_UNTIL_CLOSE &&
                 http_find_header(resp->headers, resp->nheaders, "transfer-encoding"))))
        rc = write_te(out, resp->headers, resp->nheaders);
    if (!rc && extra)
        rc = buf_append_str(out, extra);
    if (!rc)
        rc = buf_append_str(out, "Via: 1.1 shoji\r\n");
    if (!rc)
        rc = buf_append_str(out, switching    ? "Connection: upgrade\r\n\r\n"
                                 : keep_alive ? "Connection: keep-alive\r\n\r\n"
                                              : "Connection: close\r\n\r\n");
    return rc ? write_failed(out, start, rc) : 0;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 511: return "Network Authentication Required";
    default: return "";
    }
}
