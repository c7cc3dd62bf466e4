/* fuzz_http_response: the response-head parser and writer on arbitrary
 * bytes. The first byte picks the request method (it changes the body
 * rules). Checks: views inside the input, refusals are 502, a prefix never
 * gives another verdict, and the head we forward re-parses with the same
 * body framing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

static const char *const methods[] = { "GET", "HEAD", "CONNECT", "POST" };

static void check_view(struct sv v, const char *p, size_t size)
{
    if (v.n && (v.p < p || v.p + v.n > p + size))
        abort();
}

static void check_roundtrip(const struct http_response *r, struct sv method)
{
    static struct http_response again;
    struct buf b;
    buf_init(&b, 1 << 20);
    if (http_write_response_head(&b, r, r->keep_alive, NULL) != 0)
        abort();
    struct http_limits big = { .max_head = 1 << 20, .max_line = 1 << 20, .max_headers = HTTP_MAX_HEADERS };
    int rc = http_parse_response(b.p, b.len, &big, method, &again);
    if (rc != (int)b.len || again.status != r->status || again.body != r->body ||
        (r->body == HTTP_BODY_LENGTH && again.content_length != r->content_length))
        abort();
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct http_response resp, part;
    if (size < 1)
        return 0;
    const char *m = methods[data[0] & 3];
    struct sv method = sv_make(m, strlen(m));
    const char *buf = (const char *)data + 1;
    size--;
    int rc = http_parse_response(buf, size, NULL, method, &resp);
    if (rc > 0) {
        if ((size_t)rc > size || resp.status < 100 || resp.status > 999 || resp.nheaders > 100)
            abort();
        check_view(resp.reason, buf, (size_t)rc);
        for (size_t i = 0; i < resp.nheaders; i++) {
            check_view(resp.headers[i].name, buf, (size_t)rc);
            check_view(resp.headers[i].value, buf, (size_t)rc);
        }
        if (resp.body == HTTP_BODY_UNTIL_CLOSE && resp.keep_alive)
            abort();
        check_roundtrip(&resp, method);
    } else if (rc == HTTP_ERROR) {
        if (resp.error_status != 502 || !resp.error_reason)
            abort();
    } else if (rc != HTTP_NEED_MORE) {
        abort();
    }
    size_t k = size ? (size_t)data[0] * size / 256 : 0;
    int prc = http_parse_response(buf, k, NULL, method, &part);
    if (prc != HTTP_NEED_MORE && prc != rc)
        abort();
    return 0;
}
