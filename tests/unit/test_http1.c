/* The HTTP/1.1 parser and writers: what the proxy reads out of a request or
 * response head, how chunked bodies decode whatever the split, and what the
 * forwarded heads look like. The smuggling refusals are in
 * test_http1_smuggling.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http/http1.h"

static void assert_sv(struct sv got, const char *want)
{
    if (got.n != strlen(want) || (got.n && memcmp(got.p, want, got.n) != 0))
        fail_msg("got \"%.*s\", want \"%s\"", (int)got.n, got.p ? got.p : "", want);
}

static int parse(const char *head, struct http_request *req)
{
    return http_parse_request(head, strlen(head), NULL, req);
}

static const char browser_head[] =
    "GET /search?q=shoji&lang=en HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=0123456789abcdef; theme=dark\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "\r\n";

static void test_typical_browser_request_is_parsed_into_views(void **state)
{
    (void)state;
    struct http_request req;
    assert_int_equal(parse(browser_head, &req), (int)strlen(browser_head));
    assert_sv(req.method, "GET");
    assert_sv(req.target, "/search?q=shoji&lang=en");
    assert_int_equal(req.minor, 1);
    assert_int_equal(req.form, HTTP_FORM_ORIGIN);
    assert_sv(req.scheme, "");
    assert_sv(req.host, "www.example.com");
    assert_int_equal(req.port, 80);
    assert_sv(req.path, "/search?q=shoji&lang=en");
    assert_sv(req.host_header, "www.example.com");
    assert_int_equal(req.nheaders, 8);
    assert_sv(req.headers[1].name, "User-Agent");
    assert_sv(req.headers[6].value, "session=0123456789abcdef; theme=dark");
    assert_int_equal(req.body, HTTP_BODY_NONE);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_false(req.upgrade);
    /* Views point into the caller's buffer: nothing was copied. */
    assert_true(req.path.p > browser_head && req.path.p < browser_head + sizeof browser_head);
    const struct http_header *h = http_find_header(req.headers, req.nheaders, "accept-ENCODING");
    assert_non_null(h);
    assert_sv(h->value, "gzip, deflate, br");
    assert_null(http_find_header(req.headers, req.nheaders, "Accept-Encodin"));
}

static void test_field_values_lose_surrounding_whitespace_only(void **state)
{
    (void)state;
    struct http_request req;
    assert_true(parse("GET / HTTP/1.1\r\nHost:a.example\r\nX-A: \t a  b \t\r\nX-B:\r\n\r\n", &req) > 0);
    assert_sv(req.headers[0].value, "a.example");
    assert_sv(req.headers[1].value, "a  b");
    assert_sv(req.headers[2].value, "");
}

struct target_case {
    const char *head;
    enum http_target_form form;
    const char *scheme, *host;
    unsigned port;
    const char *path;
};

static void test_request_target_forms_give_scheme_host_port_and_path(void **state)
{
    (void)state;
    static const struct target_case cases[] = {
        { "GET http://example.com/a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
          HTTP_FORM_ABSOLUTE, "http", "example.com", 80, "/a?b=1" },
        { "GET HTTPS://Example.COM:8443 HTTP/1.1\r\nHost: example.com:8443\r\n\r\n",
          HTTP_FORM_ABSOLUTE, "HTTPS", "Example.COM", 8443, "/" },
        { "GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
          HTTP_FORM_ABSOLUTE, "https", "example.com", 443, "/" },
        { "GET http://[2001:db8::1]:8080/x HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
          HTTP_FORM_ABSOLUTE, "http", "2001:db8::1", 8080, "/x" },
        { "GET http://192.0.2.7/ HTTP/1.0\r\n\r\n",
          HTTP_FORM_ABSOLUTE, "http", "192.0.2.7", 80, "/" },
        { "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
          HTTP_FORM_AUTHORITY, "", "example.com", 443, "" },
        { "CONNECT [::1]:8443 HTTP/1.1\r\n\r\n", HTTP_FORM_AUTHORITY, "", "::1", 8443, "" },
        { "GET /p HTTP/1.1\r\nHost: internal.example:8080\r\n\r\n",
          HTTP_FORM_ORIGIN, "", "internal.example", 8080, "/p" },
        { "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
          HTTP_FORM_ASTERISK, "", "example.com", 80, "*" },
        { "GET / HTTP/1.0\r\n\r\n", HTTP_FORM_ORIGIN, "", "", 0, "/" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_request req;
        const struct target_case *c = &cases[i];
        int rc = parse(c->head, &req);
        if (rc <= 0)
            fail_msg("case %zu refused: %s", i, req.error_reason);
        assert_int_equal(req.form, c->form);
        assert_sv(req.scheme, c->scheme);
        assert_sv(req.host, c->host);
        assert_int_equal(req.port, c->port);
        assert_sv(req.path, c->path);
    }
}

static void test_keep_alive_follows_version_and_connection_tokens(void **state)
{
    (void)state;
    static const struct {
        const char *version, *connection;
        bool keep_alive;
    } cases[] = {
        { "1.1", NULL, true },
        { "1.1", "close", false },
        { "1.1", "Keep-Alive, CLOSE", false },
        { "1.1", "keep-alive", true },
        { "1.0", NULL, false },
        { "1.0", "keep-alive", true },
        { "1.0", "foo,  Keep-Alive ", true },
        { "1.0", "closed", false },
        { "1.1", "closed", true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char head[256];
        snprintf(head, sizeof head, "GET / HTTP/%s\r\nHost: a\r\n%s%s%s\r\n", cases[i].version,
                 cases[i].connection ? "Connection: " : "",
                 cases[i].connection ? cases[i].connection : "", cases[i].connection ? "\r\n" : "");
        struct http_request req;
        assert_true(parse(head, &req) > 0);
        if (req.keep_alive != cases[i].keep_alive)
            fail_msg("case %zu: HTTP/%s Connection: %s", i, cases[i].version, cases[i].connection);
    }
}

static void test_request_body_framing_is_read_from_content_length_or_chunked(void **state)
{
    (void)state;
    struct http_request req;
    assert_true(parse("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123\r\n\r\n", &req) > 0);
    assert_int_equal(req.body, HTTP_BODY_LENGTH);
    assert_true(req.content_length == 1234567890123ull);
    assert_true(parse("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &req) > 0);
    assert_int_equal(req.body, HTTP_BODY_NONE);
    assert_true(parse("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\n\r\n", &req) > 0);
    assert_int_equal(req.body, HTTP_BODY_LENGTH);
    assert_int_equal(req.content_length, 7);
    assert_true(parse("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &req) > 0);
    assert_int_equal(req.body, HTTP_BODY_CHUNKED);
    assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &req) > 0);
    assert_int_equal(req.body, HTTP_BODY_NONE);
}

static void test_expect_continue_and_upgrade_are_reported(void **state)
{
    (void)state;
    struct http_request req;
    assert_true(parse("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n"
                      "Content-Length: 5\r\n\r\n", &req) > 0);
    assert_true(req.expect_continue);
    assert_true(parse("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", &req) > 0);
    assert_false(req.expect_continue);
    assert_true(parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                      "Upgrade: websocket\r\n\r\n", &req) > 0);
    assert_true(req.upgrade);
    assert_true(parse("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &req) > 0);
    assert_false(req.upgrade);
}

static void test_consumed_length_stops_at_the_empty_line(void **state)
{
    (void)state;
    const char *msg = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n";
    struct http_request req;
    int rc = http_parse_request(msg, strlen(msg), NULL, &req);
    assert_int_equal(rc, (int)(strstr(msg, "hello") - msg));
    assert_int_equal(parse("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &req), 31);
}

static void test_head_split_at_every_byte_needs_more_until_complete(void **state)
{
    (void)state;
    static const char *heads[] = {
        browser_head,
        "\r\nPOST http://a.example:81/x HTTP/1.1\r\nHost: a.example:81\r\nContent-Length: 3\r\n\r\n",
        "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        size_t len = strlen(heads[i]);
        struct http_request whole, part;
        assert_int_equal(http_parse_request(heads[i], len, NULL, &whole), (int)len);
        for (size_t k = 0; k < len; k++)
            if (http_parse_request(heads[i], k, NULL, &part) != HTTP_NEED_MORE)
                fail_msg("head %zu: prefix of %zu bytes did not need more", i, k);
        assert_int_equal(http_parse_request(heads[i], len, NULL, &part), (int)len);
        assert_true(sv_eq(part.host, whole.host) && sv_eq(part.path, whole.path));
        assert_int_equal(part.nheaders, whole.nheaders);
        assert_int_equal(part.content_length, whole.content_length);
    }
}

struct resp_case {
    const char *method, *head;
    int status;
    enum http_body body;
    unsigned long long cl;
    bool keep_alive;
    const char *reason;
};

static void test_response_body_rules_follow_rfc9112_section_6_3(void **state)
{
    (void)state;
    static const struct resp_case cases[] = {
        { "GET", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", 200, HTTP_BODY_LENGTH, 12, true, "OK" },
        { "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, HTTP_BODY_CHUNKED, 0, true, "OK" },
        { "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 200, HTTP_BODY_CHUNKED, 0, true, "OK" },
        { "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 200, HTTP_BODY_UNTIL_CLOSE, 0, false, "OK" },
        { "GET", "HTTP/1.1 200 OK\r\n\r\n", 200, HTTP_BODY_UNTIL_CLOSE, 0, false, "OK" },
        { "GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 200, HTTP_BODY_LENGTH, 1, false, "OK" },
        { "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", 200, HTTP_BODY_LENGTH, 1, true, "OK" },
        { "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 200, HTTP_BODY_NONE, 99, true, "OK" },
        { "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, HTTP_BODY_NONE, 0, true, "OK" },
        { "GET", "HTTP/1.1 204 No Content\r\n\r\n", 204, HTTP_BODY_NONE, 0, true, "No Content" },
        { "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", 304, HTTP_BODY_NONE, 50, true, "Not Modified" },
        { "POST", "HTTP/1.1 100 Continue\r\n\r\n", 100, HTTP_BODY_NONE, 0, true, "Continue" },
        { "GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 101, HTTP_BODY_NONE, 0, true, "Switching Protocols" },
        { "CONNECT", "HTTP/1.1 200 Connection established\r\n\r\n", 200, HTTP_BODY_NONE, 0, true, "Connection established" },
        { "CONNECT", "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\n", 407, HTTP_BODY_LENGTH, 2, true, "Proxy Auth" },
        { "GET", "HTTP/1.1 404 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 404, HTTP_BODY_NONE, 0, false, "" },
        { "GET", "HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n", 500, HTTP_BODY_NONE, 0, true, "" },
        { "GET", "HTTP/1.1 299 Ca\xc3\xa7" "a va\r\nContent-Length: 0\r\n\r\n", 299, HTTP_BODY_NONE, 0, true, "Ca\xc3\xa7" "a va" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct resp_case *c = &cases[i];
        struct http_response resp;
        size_t len = strlen(c->head);
        int rc = http_parse_response(c->head, len, NULL, sv_make(c->method, strlen(c->method)), &resp);
        if (rc != (int)len)
            fail_msg("case %zu: rc=%d (%s)", i, rc, resp.error_reason ? resp.error_reason : "");
        assert_int_equal(resp.status, c->status);
        if (resp.body != c->body || resp.keep_alive != c->keep_alive)
            fail_msg("case %zu: body %d keep_alive %d", i, resp.body, resp.keep_alive);
        assert_true(resp.content_length == c->cl);
        assert_sv(resp.reason, c->reason);
        for (size_t k = 0; k < len; k++)
            assert_int_equal(http_parse_response(c->head, k, NULL, SV("GET"), &resp), HTTP_NEED_MORE);
    }
}

/* Decodes `in` feeding pieces whose sizes come from `next_split`; returns
 * the decoder result, the body in out/outlen and where the body ended. */
static int decode(const char *in, size_t len, size_t (*next_split)(size_t), char *out,
                  size_t *outlen, size_t *end)
{
    struct http_chunked c;
    http_chunked_init(&c);
    size_t off = 0, avail = 0;
    *outlen = 0;
    for (;;) {
        if (avail < len) {
            size_t piece = next_split(len - avail);
            avail += piece < len - avail ? piece : len - avail;
        }
        for (;;) {
            size_t used = 0;
            struct sv data;
            int rc = http_chunked_step(&c, in + off, avail - off, &used, &data);
            off += used;
            if (rc == HTTP_CHUNK_DATA) {
                assert_true(data.p >= in && data.p + data.n <= in + avail);
                memcpy(out + *outlen, data.p, data.n);
                *outlen += data.n;
                continue;
            }
            if (rc != HTTP_CHUNK_NEED_MORE) {
                *end = off;
                return rc;
            }
            assert_int_equal(off, avail);
            break;
        }
        if (avail == len)
            return HTTP_CHUNK_NEED_MORE;
    }
}

static size_t split_whole(size_t left) { return left; }
static size_t split_one(size_t left) { (void)left; return 1; }
static size_t split_random(size_t left) { return left ? 1 + (size_t)rand() % left : 0; }

static void test_chunked_body_decodes_the_same_whatever_the_split(void **state)
{
    (void)state;
#define CHUNK_CASE(in, body) { in, sizeof(in) - 1, body, sizeof(body) - 1 }
    static const struct {
        const char *in;
        size_t len;
        const char *body;
        size_t want;
    } cases[] = {
        CHUNK_CASE("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
        CHUNK_CASE("A;name=\"va;l\"\r\n0123456789\r\n00\r\n\r\n", "0123456789"),
        CHUNK_CASE("1 ;ext\r\nx\r\n0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n", "x"),
        CHUNK_CASE("0\r\n\r\n", ""),
        CHUNK_CASE("000000000000003\r\nabc\r\n0\r\n\r\n", "abc"),
        CHUNK_CASE("f\r\n\0\x01\r\n\xff zero byte\r\n0\r\n\r\n", "\0\x01\r\n\xff zero byte"),
    };
    size_t (*splits[])(size_t) = { split_whole, split_one, split_random };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len, want = cases[i].want;
        char in[128];
        memcpy(in, cases[i].in, len);
        memcpy(in + len, "GET", 3);                 /* the next pipelined message */
        for (size_t s = 0; s < 3; s++) {
            for (int round = 0; round < (s == 2 ? 50 : 1); round++) {
                char out[128];
                size_t outlen = 0, end = 0;
                int rc = decode(in, len + 3, splits[s], out, &outlen, &end);
                if (rc != HTTP_CHUNK_DONE)
                    fail_msg("case %zu split %zu: rc=%d", i, s, rc);
                assert_int_equal(end, len);
                assert_int_equal(outlen, want);
                assert_memory_equal(out, cases[i].body, want);
            }
        }
    }
}

static void test_chunked_decoder_after_done_or_error_stays_put(void **state)
{
    (void)state;
    struct http_chunked c;
    size_t used;
    struct sv data;
    http_chunked_init(&c);
    assert_int_equal(http_chunked_step(&c, "0\r\n\r\nXYZ", 8, &used, &data), HTTP_CHUNK_DONE);
    assert_int_equal(used, 5);
    assert_int_equal(http_chunked_step(&c, "XYZ", 3, &used, &data), HTTP_CHUNK_DONE);
    assert_int_equal(used, 0);
    http_chunked_init(&c);
    assert_int_equal(http_chunked_step(&c, "z\r\n", 3, &used, &data), HTTP_ERROR);
    assert_int_equal(c.error_status, 400);
    assert_non_null(c.error_reason);
    assert_int_equal(http_chunked_step(&c, "0\r\n\r\n", 5, &used, &data), HTTP_ERROR);
    http_chunked_init(&c);
    assert_int_equal(http_chunked_step(&c, "", 0, &used, &data), HTTP_CHUNK_NEED_MORE);
}

static void write_req(const char *head, const char *extra, char *out, size_t cap)
{
    struct http_request req;
    struct buf b;
    assert_true(parse(head, &req) > 0);
    buf_init(&b, 65536);
    assert_int_equal(http_write_request_head(&b, &req, extra), 0);
    assert_true(b.len < cap);
    memcpy(out, b.p, b.len);
    out[b.len] = '\0';
    buf_free(&b);
}

static void test_forwarded_request_uses_origin_form_and_drops_hop_by_hop_fields(void **state)
{
    (void)state;
    char out[2048];
    write_req("GET http://example.com:8080/a?b HTTP/1.1\r\nHost: example.com:8080\r\n"
              "Proxy-Connection: keep-alive\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\n"
              "Keep-Alive: 300\r\nAccept: */*\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n"
              "Cookie: a=1\r\n\r\n", "X-Shoji: yes\r\n", out, sizeof out);
    assert_string_equal(out, "GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n"
                             "Cookie: a=1\r\nX-Shoji: yes\r\nVia: 1.1 shoji\r\n\r\n");
    write_req("GET https://[2001:db8::1]/ HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", NULL, out,
              sizeof out);
    assert_string_equal(out, "GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\nVia: 1.1 shoji\r\n\r\n");
    write_req("GET /x HTTP/1.1\r\nAccept: a\r\nHost: Example.com\r\n\r\n", NULL, out, sizeof out);
    assert_string_equal(out, "GET /x HTTP/1.1\r\nHost: Example.com\r\nAccept: a\r\nVia: 1.1 shoji\r\n\r\n");
}

/* A field line sent as "Name: value" or "Name:value" goes out as it came
 * (one copy); any other spacing goes out as "Name: value"; the value never
 * carries the whitespace around it. */
static void test_forwarded_fields_keep_plain_lines_and_normalise_the_rest(void **state)
{
    (void)state;
    char out[2048];
    write_req("GET /f HTTP/1.1\r\nHost: a\r\nA: one\r\nB:two\r\nC:   three  \r\nD:\tfour\r\n"
              "E: five \r\nF:\r\nG: \r\n\r\n", NULL, out, sizeof out);
    assert_string_equal(out, "GET /f HTTP/1.1\r\nHost: a\r\nA: one\r\nB:two\r\nC: three\r\n"
                             "D: four\r\nE: five\r\nF: \r\nG: \r\nVia: 1.1 shoji\r\n\r\n");
}

static void test_forwarded_request_keeps_its_body_framing(void **state)
{
    (void)state;
    char out[2048];
    write_req("POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
              NULL, out, sizeof out);
    assert_string_equal(out, "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nVia: 1.1 shoji\r\n\r\n");
    write_req("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", NULL, out, sizeof out);
    assert_string_equal(out, "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                             "Via: 1.1 shoji\r\n\r\n");
    write_req("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
              NULL, out, sizeof out);
    assert_string_equal(out, "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n"
                             "Via: 1.1 shoji\r\n\r\n");
    write_req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
              NULL, out, sizeof out);
    assert_string_equal(out, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                             "Connection: upgrade\r\nVia: 1.1 shoji\r\n\r\n");
}

static void test_forwarded_response_drops_hop_by_hop_and_states_connection(void **state)
{
    (void)state;
    const char *head = "HTTP/1.1 200 \r\nDate: x\r\nConnection: X-Hop\r\nX-Hop: 1\r\n"
                       "Transfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nServer: s\r\n\r\n";
    struct http_response resp;
    struct buf b;
    assert_true(http_parse_response(head, strlen(head), NULL, SV("GET"), &resp) > 0);
    buf_init(&b, 4096);
    assert_int_equal(http_write_response_head(&b, &resp, true, NULL), 0);
    assert_int_equal(b.len, strlen("HTTP/1.1 200 OK\r\nDate: x\r\nServer: s\r\n"
                                   "Transfer-Encoding: chunked\r\nVia: 1.1 shoji\r\n"
                                   "Connection: keep-alive\r\n\r\n"));
    assert_memory_equal(b.p, "HTTP/1.1 200 OK\r\nDate: x\r\nServer: s\r\nTransfer-Encoding: chunked\r\n"
                             "Via: 1.1 shoji\r\nConnection: keep-alive\r\n\r\n", b.len);
    buf_reset(&b);
    head = "HTTP/1.0 404 Nope\r\nContent-Length: 3\r\n\r\n";
    assert_true(http_parse_response(head, strlen(head), NULL, SV("GET"), &resp) > 0);
    assert_int_equal(http_write_response_head(&b, &resp, false, "X-A: b\r\n"), 0);
    assert_memory_equal(b.p, "HTTP/1.1 404 Nope\r\nContent-Length: 3\r\nX-A: b\r\nVia: 1.1 shoji\r\n"
                             "Connection: close\r\n\r\n", b.len);
    buf_reset(&b);
    head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    assert_true(http_parse_response(head, strlen(head), NULL, SV("GET"), &resp) > 0);
    assert_int_equal(http_write_response_head(&b, &resp, true, NULL), 0);
    assert_memory_equal(b.p, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Via: 1.1 shoji\r\nConnection: upgrade\r\n\r\n", b.len);
    buf_free(&b);
}

static void test_writer_that_does_not_fit_fails_and_leaves_the_buffer_unchanged(void **state)
{
    (void)state;
    struct http_request req;
    struct buf b;
    assert_true(parse(browser_head, &req) > 0);
    buf_init(&b, 100);
    assert_int_equal(buf_append_str(&b, "keep"), 0);
    assert_int_equal(http_write_request_head(&b, &req, NULL), -ENOBUFS);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.p, "keep", 4);
    buf_free(&b);
}

static void test_reason_phrases_are_the_standard_ones(void **state)
{
    (void)state;
    assert_string_equal(http_reason(200), "OK");
    assert_string_equal(http_reason(400), "Bad Request");
    assert_string_equal(http_reason(414), "URI Too Long");
    assert_string_equal(http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_reason(502), "Bad Gateway");
    assert_string_equal(http_reason(505), "HTTP Version Not Supported");
    assert_string_equal(http_reason(799), "");
}

static void test_hop_by_hop_includes_fields_named_in_connection(void **state)
{
    (void)state;
    struct http_request req;
    assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-a , X-B\r\n\r\n", &req) > 0);
    assert_true(http_is_hop_by_hop(req.headers, req.nheaders, SV("X-A")));
    assert_true(http_is_hop_by_hop(req.headers, req.nheaders, SV("x-b")));
    assert_true(http_is_hop_by_hop(req.headers, req.nheaders, SV("Transfer-Encoding")));
    assert_true(http_is_hop_by_hop(req.headers, req.nheaders, SV("proxy-authorization")));
    assert_false(http_is_hop_by_hop(req.headers, req.nheaders, SV("X-C")));
    assert_false(http_is_hop_by_hop(req.headers, req.nheaders, SV("Content-Length")));
}

/* Real clients: curl sends through a loopback socket we listen on. */
static int listen_loopback(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Reads from fd until pred says stop; at most `cap` bytes, 10 s per read. */
static size_t read_more(int fd, char *buf, size_t have, size_t cap)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    assert_true(have < cap);
    assert_int_equal(poll(&p, 1, 10000), 1);
    ssize_t n = read(fd, buf + have, cap - have);
    assert_true(n > 0);
    return have + (size_t)n;
}

static int accept_and_read_head(int lfd, char *buf, size_t cap, size_t *have,
                                struct http_request *req)
{
    struct pollfd p = { .fd = lfd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 10000), 1);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    int rc;
    *have = 0;
    while ((rc = http_parse_request(buf, *have, NULL, req)) == HTTP_NEED_MORE)
        *have = read_more(fd, buf, *have, cap);
    if (rc < 0)
        fail_msg("curl's request refused: %d %s", req->error_status, req->error_reason);
    return fd;
}

static bool have_curl(void) { return system("curl --version >/dev/null 2>&1") == 0; }

static void test_real_curl_request_through_the_proxy_port_is_parsed_and_answered(void **state)
{
    (void)state;
    if (!have_curl())
        skip();
    unsigned port;
    int lfd = listen_loopback(&port);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "curl -s -m 10 -x http://127.0.0.1:%u -H 'X-Test: yes' "
             "-H 'Connection: X-Test' 'http://Example.TEST:8081/a/b?c=d'", port);
    FILE *out = popen(cmd, "r");
    assert_non_null(out);
    static char buf[65536];
    size_t have;
    struct http_request req;
    int fd = accept_and_read_head(lfd, buf, sizeof buf, &have, &req);
    assert_int_equal(req.form, HTTP_FORM_ABSOLUTE);
    assert_sv(req.host, "Example.TEST");
    assert_int_equal(req.port, 8081);
    assert_sv(req.path, "/a/b?c=d");
    assert_true(req.keep_alive);
    assert_int_equal(req.body, HTTP_BODY_NONE);
    /* Forwarding drops the field curl named in Connection. */
    struct buf fwd;
    buf_init(&fwd, 65536);
    assert_int_equal(http_write_request_head(&fwd, &req, NULL), 0);
    assert_null(memmem(fwd.p, fwd.len, "X-Test", 6));
    const char *start = "GET /a/b?c=d HTTP/1.1\r\nHost: Example.TEST:8081\r\n";
    assert_true(fwd.len > strlen(start) && memcmp(fwd.p, start, strlen(start)) == 0);
    buf_free(&fwd);
    /* Answer with a head made by the response writer: curl must take it. */
    const char *origin = "HTTP/1.1 200 \r\nContent-Length: 16\r\nConnection: X-Secret\r\nX-Secret: 1\r\n\r\n";
    struct http_response resp;
    struct buf b;
    assert_true(http_parse_response(origin, strlen(origin), NULL, SV("GET"), &resp) > 0);
    buf_init(&b, 4096);
    assert_int_equal(http_write_response_head(&b, &resp, false, NULL), 0);
    assert_int_equal(buf_append_str(&b, "hello from shoji"), 0);
    assert_int_equal(write(fd, b.p, b.len), (ssize_t)b.len);
    buf_free(&b);
    char body[64] = { 0 };
    size_t n = fread(body, 1, sizeof body - 1, out);
    int st = pclose(out);
    close(fd);
    close(lfd);
    assert_int_equal(n, 16);
    assert_string_equal(body, "hello from shoji");
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_real_curl_chunked_upload_decodes_to_the_file_it_sent(void **state)
{
    (void)state;
    if (!have_curl())
        skip();
    char path[] = "/tmp/shoji-http1-upload-XXXXXX";
    int tfd = mkstemp(path);
    assert_true(tfd >= 0);
    static unsigned char file[300000];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof file; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        file[i] = (unsigned char)x;
    }
    assert_int_equal(write(tfd, file, sizeof file), (ssize_t)sizeof file);
    close(tfd);
    unsigned port;
    int lfd = listen_loopback(&port);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "curl -s -m 10 -o /dev/null -w '%%{http_code}' -x http://127.0.0.1:%u "
             "-H 'Transfer-Encoding: chunked' -H 'Expect:' --data-binary @%s http://upload.test/up",
             port, path);
    FILE *out = popen(cmd, "r");
    assert_non_null(out);
    static char buf[1 << 20];
    static unsigned char got[sizeof file];
    size_t have, got_len = 0;
    struct http_request req;
    int fd = accept_and_read_head(lfd, buf, sizeof buf, &have, &req);
    assert_int_equal(req.body, HTTP_BODY_CHUNKED);
    size_t off = (size_t)http_parse_request(buf, have, NULL, &req);
    struct http_chunked c;
    http_chunked_init(&c);
    for (int rounds = 0; rounds < 100000; rounds++) {
        size_t used;
        struct sv data;
        int rc = http_chunked_step(&c, buf + off, have - off, &used, &data);
        off += used;
        if (rc == HTTP_CHUNK_DONE)
            break;
        assert_int_not_equal(rc, HTTP_ERROR);
        if (rc == HTTP_CHUNK_DATA) {
            assert_true(got_len + data.n <= sizeof got);
            memcpy(got + got_len, data.p, data.n);
            got_len += data.n;
            continue;
        }
        off = have = 0;                 /* all consumed: read the next piece */
        have = read_more(fd, buf, 0, sizeof buf);
    }
    const char *ok = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(fd, ok, strlen(ok)), (ssize_t)strlen(ok));
    char code[8] = { 0 };
    assert_true(fread(code, 1, sizeof code - 1, out) > 0);
    int st = pclose(out);
    close(fd);
    close(lfd);
    unlink(path);
    assert_int_equal(got_len, sizeof file);
    assert_memory_equal(got, file, sizeof file);
    assert_string_equal(code, "201");
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static bool same_view(struct sv a, struct sv b) { return a.p == b.p && a.n == b.n; }

/* The proxy keeps a request's head in a copy of its own and moves the views
 * onto it: after the original buffer is reused, the copy still reads right. */
static void test_rebased_views_read_the_copy_after_the_original_is_overwritten(void **state)
{
    (void)state;
    static const char *heads[] = {
        browser_head,
        "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof heads / sizeof heads[0]; k++) {
        size_t n = strlen(heads[k]);
        char *orig = malloc(n), *copy = malloc(n);
        assert_non_null(orig);
        assert_non_null(copy);
        memcpy(orig, heads[k], n);
        struct http_request a, b;
        assert_int_equal(http_parse_request(orig, n, NULL, &a), (int)n);
        memcpy(copy, orig, n);
        http_request_rebase(&a, orig, n, copy);
        memset(orig, 'x', n);
        /* Exactly the views a parse of the copy gives, literals included. */
        assert_int_equal(http_parse_request(copy, n, NULL, &b), (int)n);
        assert_true(same_view(a.method, b.method) && same_view(a.target, b.target));
        assert_true(same_view(a.host, b.host) && same_view(a.path, b.path));
        assert_true(same_view(a.scheme, b.scheme) && same_view(a.host_header, b.host_header));
        assert_int_equal(a.nheaders, b.nheaders);
        for (size_t i = 0; i < a.nheaders; i++) {
            assert_true(same_view(a.headers[i].name, b.headers[i].name));
            assert_true(same_view(a.headers[i].value, b.headers[i].value));
        }
        free(orig);
        free(copy);
    }
}

/* RFC 9110 7.6.1's list, whatever the case, and nothing that merely looks
 * like one of them. */
static void test_every_standard_hop_by_hop_field_is_known_in_any_case(void **state)
{
    (void)state;
    static const char *const hop[] = {
        "Connection", "KEEP-ALIVE", "proxy-connection", "Te", "Trailer", "Transfer-Encoding",
        "upgrade", "Proxy-Authenticate", "Proxy-Authorization",
    };
    static const char *const not_hop[] = {
        "Trailers", "T", "Connections", "Keep-Alive2", "Upgrade-Insecure-Requests",
        "Transfer-Encodinx", "Proxy-Authenticat", "Authorization", "Content-Length", "",
    };
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (!http_is_hop_by_hop(NULL, 0, sv_make(hop[i], strlen(hop[i]))))
            fail_msg("%s should be hop-by-hop", hop[i]);
    for (size_t i = 0; i < sizeof not_hop / sizeof not_hop[0]; i++)
        if (http_is_hop_by_hop(NULL, 0, sv_make(not_hop[i], strlen(not_hop[i]))))
            fail_msg("%s should not be hop-by-hop", not_hop[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typical_browser_request_is_parsed_into_views),
        cmocka_unit_test(test_rebased_views_read_the_copy_after_the_original_is_overwritten),
        cmocka_unit_test(test_field_values_lose_surrounding_whitespace_only),
        cmocka_unit_test(test_request_target_forms_give_scheme_host_port_and_path),
        cmocka_unit_test(test_keep_alive_follows_version_and_connection_tokens),
        cmocka_unit_test(test_request_body_framing_is_read_from_content_length_or_chunked),
        cmocka_unit_test(test_expect_continue_and_upgrade_are_reported),
        cmocka_unit_test(test_consumed_length_stops_at_the_empty_line),
        cmocka_unit_test(test_head_split_at_every_byte_needs_more_until_complete),
        cmocka_unit_test(test_response_body_rules_follow_rfc9112_section_6_3),
        cmocka_unit_test(test_chunked_body_decodes_the_same_whatever_the_split),
        cmocka_unit_test(test_chunked_decoder_after_done_or_error_stays_put),
        cmocka_unit_test(test_forwarded_request_uses_origin_form_and_drops_hop_by_hop_fields),
        cmocka_unit_test(test_every_standard_hop_by_hop_field_is_known_in_any_case),
        cmocka_unit_test(test_forwarded_fields_keep_plain_lines_and_normalise_the_rest),
        cmocka_unit_test(test_forwarded_request_keeps_its_body_framing),
        cmocka_unit_test(test_forwarded_response_drops_hop_by_hop_and_states_connection),
        cmocka_unit_test(test_writer_that_does_not_fit_fails_and_leaves_the_buffer_unchanged),
        cmocka_unit_test(test_reason_phrases_are_the_standard_ones),
        cmocka_unit_test(test_hop_by_hop_includes_fields_named_in_connection),
        cmocka_unit_test(test_real_curl_request_through_the_proxy_port_is_parsed_and_answered),
        cmocka_unit_test(test_real_curl_chunked_upload_decodes_to_the_file_it_sent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
