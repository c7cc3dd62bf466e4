/* fuzz_http_request: the request-head parser and writer on arbitrary bytes.
 * Checks, beyond "no crash": every view lies inside the input; a prefix of
 * the input never gives a verdict the whole input does not; a head we
 * accept and forward re-parses with the same framing (the proxy and the
 * upstream agree on where the body ends). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

static void check_view(struct sv v, const uint8_t *data, size_t size)
{
    if (v.n == 0)
        return;
    const char *p = (const char *)data;
    if (v.p < p || v.p + v.n > p + size)
        abort();
}

static void check_request(const struct http_request *r, const uint8_t *data, size_t size)
{
    check_view(r->method, data, size);
    check_view(r->target, data, size);
    check_view(r->scheme, data, size);
    check_view(r->host, data, size);
    check_view(r->host_header, data, size);
    if (!(r->path.n == 1 && r->path.p[0] == '/'))
        check_view(r->path, data, size);
    if (r->nheaders > 100 || r->method.n == 0)
        abort();
    for (size_t i = 0; i < r->nheaders; i++) {
        check_view(r->headers[i].name, data, size);
        check_view(r->headers[i].value, data, size);
    }
    if ((r->body == HTTP_BODY_LENGTH) != (r->content_length > 0) ||
        r->body == HTTP_BODY_UNTIL_CLOSE)
        abort();
}

/* The forwarded head must frame the body exactly as we did. */
static void check_roundtrip(const struct http_request *r)
{
    static struct http_request again;
    struct buf b;
    buf_init(&b, 1 << 20);
    if (http_write_request_head(&b, r, "X-Fuzz: 1\r\n") != 0)
        abort();
    bool has_host = r->form != HTTP_FORM_ORIGIN && r->form != HTTP_FORM_ASTERISK
                        ? true : r->host_header.n > 0;
    struct http_limits big = { .max_head = 1 << 20, .max_line = 1 << 20, .max_headers = HTTP_MAX_HEADERS };
    int rc = http_parse_request(b.p, b.len, &big, &again);
    if (has_host) {
        if (rc != (int)b.len || again.body != r->body || again.content_length != r->content_length ||
            !sv_eq(again.method, r->method) || again.port != r->port || !sv_ieq(again.host, r->host))
            abort();
    }
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct http_request req, part;
    const char *buf = (const char *)data;
    int rc = http_parse_request(buf, size, NULL, &req);
    if (rc > 0) {
        if ((size_t)rc > size)
            abort();
        check_request(&req, data, (size_t)rc);
        check_roundtrip(&req);
    } else if (rc == HTTP_ERROR) {
        if (req.error_status < 400 || req.error_status > 505 || !req.error_reason)
            abort();
    } else if (rc != HTTP_NEED_MORE) {
        abort();
    }
    /* A prefix: "need more" or the same verdict. */
    size_t k = size ? (size_t)data[0] * size / 256 : 0;
    int prc = http_parse_request(buf, k, NULL, &part);
    if (prc != HTTP_NEED_MORE &&
        (prc != rc || (rc == HTTP_ERROR && part.error_status != req.error_status)))
        abort();
    return 0;
}
