/* http1_response: the response-head parser (RFC 9112 4, 6.3). Same
 * strictness as requests; every refusal is a 502 for the client, since it
 * is the upstream that misbehaved. See http1.h. */
#include "http/http1_int.h"

#include <string.h>

static int resp_fail(struct http_response *r, const char *why)
{
    r->error_status = 502;
    r->error_reason = why;
    return HTTP_ERROR;
}

static void resp_reset(struct http_response *r)
{
    r->status = 0;
    r->minor = 0;
    r->reason = sv_make(NULL, 0);
    r->nheaders = 0;
    r->body = HTTP_BODY_NONE;
    r->content_length = 0;
    r->keep_alive = false;
    r->error_status = 0;
    r->error_reason = NULL;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ]. A missing
 * SP after the code is accepted (common, and it cannot affect framing). */
static int parse_status_line(const char *p, size_t n, struct http_response *r)
{
    if (n < 12 || p[8] != ' ')
        return resp_fail(r, "malformed status line");
    int rc = http_parse_version(sv_make(p, 8), &r->minor);
    if (rc < 0)
        return resp_fail(r, rc == -2 ? "upstream HTTP version not supported"
                                     : "malformed status line (HTTP version)");
    int code = 0;
    for (int i = 9; i < 12; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9)
            return resp_fail(r, "malformed status code");
        code = code * 10 + (int)d;
    }
    if (code < 100)
        return resp_fail(r, "status code out of range (100..999)");
    if (n > 12 && p[12] != ' ')
        return resp_fail(r, "malformed status line (after the status code)");
    r->status = code;
    r->reason = n > 13 ? sv_make(p + 13, n - 13) : sv_make(p + n, 0);
    return 0;
}

/* RFC 9112 6.3, in order: no body for HEAD, 1xx, 204, 304 and a 2xx to
 * CONNECT; then Transfer-Encoding; then Content-Length; else until close. */
static int response_framing(struct http_response *r, const struct http_fields_info *fi,
                            struct sv method)
{
    if (fi->has_te && fi->has_cl)
        return resp_fail(r, "upstream sent both Content-Length and Transfer-Encoding");
    if (fi->has_te && r->minor == 0)
        return resp_fail(r, "Transfer-Encoding in an HTTP/1.0 response");
    if (fi->te_chunked > 1)
        return resp_fail(r, "chunked transfer coding applied more than once");
    r->content_length = fi->cl;
    if (sv_eq(method, SV("HEAD")) || r->status < 200 || r->status == 204 || r->status == 304 ||
        (sv_eq(method, SV("CONNECT")) && r->status < 300)) {
        r->body = HTTP_BODY_NONE;
        return 0;
    }
    if (fi->has_te) {
        /* Not ending in chunked: the body runs until the server closes. */
        r->body = fi->te_last_chunked ? HTTP_BODY_CHUNKED : HTTP_BODY_UNTIL_CLOSE;
        return 0;
    }
    if (fi->has_cl) {
        r->body = fi->cl ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
        return 0;
    }
    r->body = HTTP_BODY_UNTIL_CLOSE;
    return 0;
}

int http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
                        struct sv request_method, struct http_response *resp)
{
    struct http_limits l;
    http_limits_norm(lim, &l);
    resp_reset(resp);
    size_t wend = UTIL_MIN(l.max_line + 2, l.max_head), cr = 0;
    const char *why = NULL;
    int rc = http_scan_line(buf, len, 0, wend, &cr, &why);
    if (rc == HTTP_NEED_MORE)
        return HTTP_NEED_MORE;
    if (rc == HTTP_SCAN_LIMIT)
        return resp_fail(resp, "upstream status line too long");
    if (rc < 0)
        return resp_fail(resp, why);
    if (parse_status_line(buf, cr, resp) < 0)
        return HTTP_ERROR;
    int status = 0;
    rc = http_parse_fields(buf, len, cr + 2, &l, resp->headers, &resp->nheaders, &status, &why);
    if (rc == HTTP_NEED_MORE)
        return HTTP_NEED_MORE;
    if (rc < 0)
        return resp_fail(resp, why);
    struct http_fields_info fi;
    if (http_fields_analyze(resp->headers, resp->nheaders, &fi, &why) < 0)
        return resp_fail(resp, why);
    if (response_framing(resp, &fi, request_method) < 0)
        return HTTP_ERROR;
    if (resp->minor == 1)
        resp->keep_alive = !fi.conn_close;
    else
        resp->keep_alive = fi.conn_keep_alive && !fi.conn_close;
    if (resp->body == HTTP_BODY_UNTIL_CLOSE)
        resp->keep_alive = false;
    return rc;
}
