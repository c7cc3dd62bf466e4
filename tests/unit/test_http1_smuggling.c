/* Request smuggling and strictness: every known framing ambiguity is refused
 * with the status a client would see, and a few look-alikes that are legal
 * are accepted (so the refusals are not just "refuse everything odd"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http1.h"

struct vector {
    const char *name;
    const char *head;
    size_t len;      /* 0: strlen(head) */
    int status;      /* expected error_status; 0 = accepted */
};

#define H11 "POST / HTTP/1.1\r\nHost: example.com\r\n"

static const struct vector request_vectors[] = {
    /* Framing: Content-Length vs Transfer-Encoding (RFC 9112 6.1, 6.3). */
    { "CL and TE", H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400 },
    { "TE and CL", H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, 400 },
    { "CL and TE:identity", H11 "Content-Length: 5\r\nTransfer-Encoding: identity\r\n\r\n", 0, 400 },
    { "differing repeated CL", H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, 400 },
    { "differing CL list", H11 "Content-Length: 5, 6\r\n\r\n", 0, 400 },
    { "CL list with empty element", H11 "Content-Length: 5,\r\n\r\n", 0, 400 },
    { "CL with a sign", H11 "Content-Length: +5\r\n\r\n", 0, 400 },
    { "CL negative", H11 "Content-Length: -1\r\n\r\n", 0, 400 },
    { "CL hex", H11 "Content-Length: 0x5\r\n\r\n", 0, 400 },
    { "CL with a letter", H11 "Content-Length: 5a\r\n\r\n", 0, 400 },
    { "CL with inner space", H11 "Content-Length: 5 5\r\n\r\n", 0, 400 },
    { "CL empty", H11 "Content-Length: \r\n\r\n", 0, 400 },
    { "CL overflowing 64 bits", H11 "Content-Length: 18446744073709551616\r\n\r\n", 0, 400 },
    { "TE last coding not chunked", H11 "Transfer-Encoding: chunked, gzip\r\n\r\n", 0, 400 },
    { "TE gzip only", H11 "Transfer-Encoding: gzip\r\n\r\n", 0, 400 },
    { "TE chunked twice", H11 "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, 400 },
    { "TE chunked twice in two fields",
      H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400 },
    { "TE chunked with parameters", H11 "Transfer-Encoding: chunked;q=1\r\n\r\n", 0, 400 },
    { "TE unknown coding", H11 "Transfer-Encoding: xchunked\r\n\r\n", 0, 501 },
    { "TE unknown coding before chunked", H11 "Transfer-Encoding: foo, chunked\r\n\r\n", 0, 501 },
    { "TE empty", H11 "Transfer-Encoding: \r\n\r\n", 0, 400 },
    { "TE with vertical tab", H11 "Transfer-Encoding: \vchunked\r\n\r\n", 0, 400 },
    { "TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400 },
    /* Field syntax (RFC 9112 2.2, 5.1, 5.2). */
    { "whitespace before colon", H11 "Transfer-Encoding : chunked\r\n\r\n", 0, 400 },
    { "tab before colon", H11 "Content-Length\t: 5\r\n\r\n", 0, 400 },
    { "obs-fold", H11 "X-A: a\r\n b\r\n\r\n", 0, 400 },
    { "obs-fold of TE", H11 "Transfer-Encoding:\r\n chunked\r\n\r\n", 0, 400 },
    { "whitespace before first field", "GET / HTTP/1.1\r\n Host: example.com\r\n\r\n", 0, 400 },
    { "bare LF line endings", "GET / HTTP/1.1\nHost: example.com\n\n", 0, 400 },
    { "bare LF in a field line", H11 "X-A: a\nContent-Length: 5\r\n\r\n", 0, 400 },
    { "bare CR in a field line", H11 "X-A: a\rContent-Length: 5\r\n\r\n", 0, 400 },
    { "bare CR in the request line", "GET /\r HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "NUL in a value", H11 "X-A: a\0b\r\n\r\n", sizeof(H11 "X-A: a\0b\r\n\r\n") - 1, 400 },
    { "NUL in a name", H11 "X\0A: b\r\n\r\n", sizeof(H11 "X\0A: b\r\n\r\n") - 1, 400 },
    { "DEL in a value", H11 "X-A: a\x7f" "b\r\n\r\n", 0, 400 },
    { "escape in a value", H11 "X-A: a\x1b[0m\r\n\r\n", 0, 400 },
    { "control byte in the target", "GET /a\x01 HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "non-ASCII byte in the target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "empty field name", H11 ": x\r\n\r\n", 0, 400 },
    { "field line without colon", H11 "X-A\r\n\r\n", 0, 400 },
    { "non-token field name", H11 "X(A): b\r\n\r\n", 0, 400 },
    /* Request line (RFC 9112 3). */
    { "double space in request line", "GET  / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "space in target", "GET /a b HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "non-token method", "G(T / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "lowercase version", "GET / http/1.1\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "malformed version", "GET / HTTP/1.1x\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "no version", "GET /\r\nHost: example.com\r\n\r\n", 0, 400 },
    { "HTTP/2.0", "GET / HTTP/2.0\r\nHost: example.com\r\n\r\n", 0, 505 },
    { "HTTP/1.2", "GET / HTTP/1.2\r\nHost: example.com\r\n\r\n", 0, 505 },
    { "HTTP/0.9", "GET / HTTP/0.9\r\nHost: example.com\r\n\r\n", 0, 505 },
    { "too many leading empty lines",
      "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, 400 },
    /* Host and target (RFC 9110 7.2, RFC 9112 3.2). */
    { "absolute URI host disagrees with Host",
      "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", 0, 400 },
    { "absolute URI port disagrees with Host",
      "GET http://a.example:8080/ HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "https default port disagrees with Host port 80",
      "GET https://a.example/ HTTP/1.1\r\nHost: a.example:80\r\n\r\n", 0, 400 },
    { "two Host fields", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "missing Host in HTTP/1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 0, 400 },
    { "missing Host with absolute URI in HTTP/1.1", "GET http://a.example/ HTTP/1.1\r\n\r\n", 0, 400 },
    { "empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 0, 400 },
    { "Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a.example\r\n\r\n", 0, 400 },
    { "Host with port 0", "GET / HTTP/1.1\r\nHost: a.example:0\r\n\r\n", 0, 400 },
    { "Host with port 65536", "GET / HTTP/1.1\r\nHost: a.example:65536\r\n\r\n", 0, 400 },
    { "Host with non-digit port", "GET / HTTP/1.1\r\nHost: a.example:8o\r\n\r\n", 0, 400 },
    { "Host with empty port", "GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n", 0, 400 },
    { "Host with a slash", "GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n", 0, 400 },
    { "absolute URI with userinfo",
      "GET http://user:pw@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "absolute URI with another scheme", "GET ftp://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "absolute URI with empty host", "GET http:/// HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "CONNECT with origin form", "CONNECT / HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "CONNECT with absolute form",
      "CONNECT http://a.example:443/ HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "CONNECT without port", "CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "CONNECT to another Host", "CONNECT a.example:443 HTTP/1.1\r\nHost: b.example\r\n\r\n", 0, 400 },
    { "CONNECT with a body", "CONNECT a.example:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 0, 400 },
    { "authority form without CONNECT", "GET a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    { "asterisk form without OPTIONS", "GET * HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 400 },
    /* Legal look-alikes: these must pass. */
    { "identical repeated CL", H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 0 },
    { "identical CL list", H11 "Content-Length: 5, 5\r\n\r\n", 0, 0 },
    { "TE with tab OWS and upper case", H11 "Transfer-Encoding:\tCHUNKED\r\n\r\n", 0, 0 },
    { "TE gzip then chunked", H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", 0, 0 },
    { "tab inside a value", H11 "X-A: a\tb\r\n\r\n", 0, 0 },
    { "obs-text in a value", H11 "X-A: caf\xc3\xa9\r\n\r\n", 0, 0 },
    { "one leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 0 },
    { "four leading empty lines", "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, 0 },
    { "absolute URI agreeing with Host on default port",
      "GET http://A.example:80/ HTTP/1.1\r\nHost: a.EXAMPLE\r\n\r\n", 0, 0 },
    { "HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0, 0 },
    { "CONNECT without Host", "CONNECT a.example:443 HTTP/1.1\r\n\r\n", 0, 0 },
};

static void check_vector(const struct vector *v, const struct http_limits *lim)
{
    struct http_request req;
    size_t len = v->len ? v->len : strlen(v->head);
    int rc = http_parse_request(v->head, len, lim, &req);
    if (v->status == 0) {
        if (rc != (int)len)
            fail_msg("%s: expected acceptance, got rc=%d status=%d (%s)", v->name, rc,
                     req.error_status, req.error_reason ? req.error_reason : "");
        return;
    }
    if (rc != HTTP_ERROR || req.error_status != v->status)
        fail_msg("%s: expected %d, got rc=%d status=%d", v->name, v->status, rc, req.error_status);
    assert_non_null(req.error_reason);
    assert_true(strlen(req.error_reason) > 0);
}

static void test_every_smuggling_vector_is_refused_with_its_status(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof request_vectors / sizeof request_vectors[0]; i++)
        check_vector(&request_vectors[i], NULL);
}

/* The verdict does not depend on how the bytes arrived: every prefix says
 * "need more" or gives the same verdict as the whole head. */
static void test_smuggling_verdicts_do_not_depend_on_the_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof request_vectors / sizeof request_vectors[0]; i++) {
        const struct vector *v = &request_vectors[i];
        size_t len = v->len ? v->len : strlen(v->head);
        struct http_request full, part;
        int want = http_parse_request(v->head, len, NULL, &full);
        for (size_t k = 0; k < len; k++) {
            int rc = http_parse_request(v->head, k, NULL, &part);
            if (rc == HTTP_NEED_MORE)
                continue;
            if (rc != want || (rc == HTTP_ERROR && part.error_status != full.error_status))
                fail_msg("%s: prefix %zu gives rc=%d status=%d, whole head rc=%d status=%d",
                         v->name, k, rc, part.error_status, want, full.error_status);
        }
    }
}

static void test_request_with_both_content_length_and_transfer_encoding_is_refused(void **state)
{
    (void)state;
    check_vector(&request_vectors[0], NULL);
    check_vector(&request_vectors[1], NULL);
}

/* Builds "GET /<target> HTTP/1.1\r\nHost: a\r\n" + n fields of `vlen` bytes. */
static size_t build_head(char *out, size_t cap, size_t target, size_t nfields, size_t vlen)
{
    size_t o = (size_t)snprintf(out, cap, "GET /");
    memset(out + o, 'a', target);
    o += target;
    o += (size_t)snprintf(out + o, cap - o, " HTTP/1.1\r\nHost: a\r\n");
    for (size_t i = 0; i < nfields; i++) {
        o += (size_t)snprintf(out + o, cap - o, "X-%03zu: ", i);
        memset(out + o, 'v', vlen);
        o += vlen;
        o += (size_t)snprintf(out + o, cap - o, "\r\n");
    }
    o += (size_t)snprintf(out + o, cap - o, "\r\n");
    assert_true(o < cap);
    return o;
}

static int parse_status(const char *h, size_t len, const struct http_limits *lim)
{
    struct http_request req;
    int rc = http_parse_request(h, len, lim, &req);
    return rc > 0 ? 0 : rc == HTTP_NEED_MORE ? -1 : req.error_status;
}

static void test_request_line_too_long_is_refused_with_414(void **state)
{
    (void)state;
    static char h[200000];
    struct http_limits lim = { .max_head = 4096, .max_line = 100, .max_headers = 10 };
    /* "GET /" + target + " HTTP/1.1" is 14 + target bytes. */
    size_t len = build_head(h, sizeof h, 86, 0, 0);
    assert_int_equal(parse_status(h, len, &lim), 0);
    len = build_head(h, sizeof h, 87, 0, 0);
    assert_int_equal(parse_status(h, len, &lim), 414);
    /* Refused as soon as the line is over the limit, without its end. */
    assert_int_equal(parse_status(h, 103, &lim), 414);
    /* Default limits: 8 KiB request line. */
    len = build_head(h, sizeof h, 9000, 0, 0);
    assert_int_equal(parse_status(h, len, NULL), 414);
}

static void test_header_line_too_long_or_too_many_fields_is_refused_with_431(void **state)
{
    (void)state;
    static char h[200000];
    struct http_limits lim = { .max_head = 4096, .max_line = 100, .max_headers = 5 };
    /* "X-000: " + value is 7 + vlen bytes; Host counts as a field. */
    size_t len = build_head(h, sizeof h, 1, 4, 93);
    assert_int_equal(parse_status(h, len, &lim), 0);
    len = build_head(h, sizeof h, 1, 4, 94);
    assert_int_equal(parse_status(h, len, &lim), 431);
    len = build_head(h, sizeof h, 1, 5, 1);
    assert_int_equal(parse_status(h, len, &lim), 431);
    len = build_head(h, sizeof h, 1, 101, 1);
    assert_int_equal(parse_status(h, len, NULL), 431);
    len = build_head(h, sizeof h, 1, 1, 9000);
    assert_int_equal(parse_status(h, len, NULL), 431);
}

static void test_head_too_long_is_refused_with_431(void **state)
{
    (void)state;
    static char h[200000];
    struct http_limits lim = { .max_head = 300, .max_line = 100, .max_headers = 50 };
    size_t len = build_head(h, sizeof h, 1, 3, 60);   /* 18 + 9 + 3 * 69 + 2 = 236 */
    assert_int_equal(parse_status(h, len, &lim), 0);
    len = build_head(h, sizeof h, 1, 4, 60);          /* 305 */
    assert_int_equal(parse_status(h, len, &lim), 431);
    /* Default limits: 64 KiB head, refused before the end arrives. */
    len = build_head(h, sizeof h, 1, 90, 1000);
    assert_int_equal(parse_status(h, len, NULL), 431);
    assert_int_equal(parse_status(h, 65537, NULL), 431);
    /* An endless stream of empty-ish data without a line end is bounded. */
    memset(h, 'A', 70000);
    assert_int_equal(parse_status(h, 70000, NULL), 414);
}

struct resp_vector {
    const char *name;
    const char *method;
    const char *head;
};

static const struct resp_vector response_vectors[] = {
    { "CL and TE", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" },
    { "differing CL", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n" },
    { "non-digit CL", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\n" },
    { "chunked twice", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n" },
    { "TE in HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" },
    { "bare LF", "GET", "HTTP/1.1 200 OK\nContent-Length: 0\n\n" },
    { "obs-fold", "GET", "HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\n\r\n" },
    { "space before colon", "GET", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n" },
    { "HTTP/2.0", "GET", "HTTP/2.0 200 OK\r\n\r\n" },
    { "two-digit status", "GET", "HTTP/1.1 20 OK\r\n\r\n" },
    { "four-digit status", "GET", "HTTP/1.1 2000 OK\r\n\r\n" },
    { "status 099", "GET", "HTTP/1.1 099 Odd\r\n\r\n" },
    { "control byte in reason", "GET", "HTTP/1.1 200 O\x01K\r\n\r\n" },
    { "not HTTP", "GET", "ICY 200 OK\r\n\r\n" },
};

static void test_every_upstream_response_smuggling_vector_is_refused_with_502(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof response_vectors / sizeof response_vectors[0]; i++) {
        const struct resp_vector *v = &response_vectors[i];
        struct http_response resp;
        int rc = http_parse_response(v->head, strlen(v->head), NULL,
                                     sv_make(v->method, strlen(v->method)), &resp);
        if (rc != HTTP_ERROR || resp.error_status != 502)
            fail_msg("%s: expected 502, got rc=%d status=%d", v->name, rc, resp.error_status);
    }
}

struct chunk_vector {
    const char *name;
    const char *body;
};

static const struct chunk_vector chunk_vectors[] = {
    { "non-hex size", "g\r\nabc\r\n0\r\n\r\n" },
    { "empty size line", "\r\n0\r\n\r\n" },
    { "0x prefix", "0x5\r\nhello\r\n0\r\n\r\n" },
    { "negative size", "-5\r\nhello\r\n0\r\n\r\n" },
    { "16 hex digits", "0000000000000005\r\nhello\r\n0\r\n\r\n" },
    { "overflowing size", "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n" },
    { "missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n" },
    { "LF only after data", "5\r\nhello\n0\r\n\r\n" },
    { "bare LF after size", "5\nhello\r\n0\r\n\r\n" },
    { "whitespace without extension", "5 \r\nhello\r\n0\r\n\r\n" },
    { "bare LF in extension", "5;a\nb\r\nhello\r\n0\r\n\r\n" },
    { "control byte in extension", "5;a=\x01\r\nhello\r\n0\r\n\r\n" },
    { "obs-fold in trailer", "0\r\nX-A: a\r\n b\r\n\r\n" },
    { "bare CR at the end", "0\r\n\r\r" },
    { "bare LF in trailer", "0\r\nX-A: a\n\r\n" },
};

static int decode_all(const char *in, size_t len)
{
    struct http_chunked c;
    http_chunked_init(&c);
    size_t off = 0;
    while (off <= len) {
        size_t used = 0;
        struct sv data;
        int rc = http_chunked_step(&c, in + off, len - off, &used, &data);
        off += used;
        if (rc != HTTP_CHUNK_DATA)
            return rc;
    }
    return HTTP_ERROR;
}

static void test_every_malformed_chunked_body_is_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof chunk_vectors / sizeof chunk_vectors[0]; i++) {
        const struct chunk_vector *v = &chunk_vectors[i];
        if (decode_all(v->body, strlen(v->body)) != HTTP_ERROR)
            fail_msg("%s: not refused", v->name);
    }
}

static void test_chunk_extension_longer_than_4096_bytes_is_refused(void **state)
{
    (void)state;
    static char b[10000];
    size_t o = (size_t)snprintf(b, sizeof b, "5;x=");
    memset(b + o, 'e', 4000);
    o += 4000;
    o += (size_t)snprintf(b + o, sizeof b - o, "\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(decode_all(b, o), HTTP_CHUNK_DONE);
    o = (size_t)snprintf(b, sizeof b, "5;x=");
    memset(b + o, 'e', 5000);
    o += 5000;
    o += (size_t)snprintf(b + o, sizeof b - o, "\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(decode_all(b, o), HTTP_ERROR);
}

static void test_trailers_larger_than_16k_are_refused(void **state)
{
    (void)state;
    static char b[40000];
    size_t o = (size_t)snprintf(b, sizeof b, "0\r\n");
    for (int i = 0; i < 400; i++)
        o += (size_t)snprintf(b + o, sizeof b - o, "X-Trailer-%03d: %040d\r\n", i, i);
    o += (size_t)snprintf(b + o, sizeof b - o, "\r\n");
    assert_int_equal(decode_all(b, o), HTTP_ERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_smuggling_vector_is_refused_with_its_status),
        cmocka_unit_test(test_smuggling_verdicts_do_not_depend_on_the_split),
        cmocka_unit_test(test_request_with_both_content_length_and_transfer_encoding_is_refused),
        cmocka_unit_test(test_request_line_too_long_is_refused_with_414),
        cmocka_unit_test(test_header_line_too_long_or_too_many_fields_is_refused_with_431),
        cmocka_unit_test(test_head_too_long_is_refused_with_431),
        cmocka_unit_test(test_every_upstream_response_smuggling_vector_is_refused_with_502),
        cmocka_unit_test(test_every_malformed_chunked_body_is_refused),
        cmocka_unit_test(test_chunk_extension_longer_than_4096_bytes_is_refused),
        cmocka_unit_test(test_trailers_larger_than_16k_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
