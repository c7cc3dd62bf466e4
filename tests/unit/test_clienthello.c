/* Unit tests of the ClientHello peek: real ClientHellos produced by OpenSSL's
 * own client (SSL_connect into a memory BIO), whole, split at every byte,
 * spread over several records, and with corrupted length fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "tls/clienthello.h"

struct hello_bytes {
    uint8_t b[8192];
    size_t n;
};

/* The first flight of a real OpenSSL client: its ClientHello record(s). */
static void real_hello(const char *sni, const char *alpn_wire, size_t alpn_len, int max_version,
                       struct hello_bytes *out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    if (max_version)
        assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    if (sni)
        assert_int_equal(SSL_set_tlsext_host_name(ssl, sni), 1);
    if (alpn_wire)
        assert_int_equal(SSL_set_alpn_protos(ssl, (const unsigned char *)alpn_wire,
                                             (unsigned)alpn_len), 0);
    SSL_set_connect_state(ssl);
    assert_true(SSL_do_handshake(ssl) <= 0);   /* waits for the server */
    int n = BIO_read(wb, out->b, sizeof out->b);
    assert_true(n > 50);
    out->n = (size_t)n;
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

static void test_hello_with_sni_and_alpn_gives_lowercased_host_and_protocols(void **state)
{
    static const char alpn[] = "\x02h2\x08http/1.1";
    struct hello_bytes h;
    struct tls_hello out;
    real_hello("WWW.Example.COM", alpn, sizeof alpn - 1, 0, &h);
    assert_int_equal(tls_hello_sniff(h.b, h.n), 1);
    assert_int_equal(tls_hello_parse(h.b, h.n, &out), TLS_HELLO_DONE);
    assert_true(out.has_sni);
    assert_string_equal(out.sni, "www.example.com");
    assert_int_equal(out.nalpn, 2);
    assert_string_equal(out.alpn[0], "h2");
    assert_string_equal(out.alpn[1], "http/1.1");
    assert_true(out.has_supported_versions_tls13);
    assert_int_equal(out.legacy_version, 0x0303);
    assert_int_equal(out.hello_len, h.n);
}

static void test_hello_without_sni_or_alpn_parses_with_empty_sni(void **state)
{
    struct hello_bytes h;
    struct tls_hello out;
    real_hello(NULL, NULL, 0, 0, &h);
    assert_int_equal(tls_hello_parse(h.b, h.n, &out), TLS_HELLO_DONE);
    assert_false(out.has_sni);
    assert_string_equal(out.sni, "");
    assert_int_equal(out.nalpn, 0);
}

static void test_tls12_only_client_has_no_tls13_version(void **state)
{
    struct hello_bytes h;
    struct tls_hello out;
    real_hello("old.example", NULL, 0, TLS1_2_VERSION, &h);
    assert_int_equal(tls_hello_parse(h.b, h.n, &out), TLS_HELLO_DONE);
    assert_string_equal(out.sni, "old.example");
    assert_false(out.has_supported_versions_tls13);
}

static void test_every_truncation_needs_more_and_bytes_after_are_not_counted(void **state)
{
    struct hello_bytes h;
    struct tls_hello out;
    real_hello("split.example", "\x08http/1.1", 9, 0, &h);
    for (size_t i = 0; i < h.n; i++)
        assert_int_equal(tls_hello_parse(h.b, i, &out), TLS_HELLO_NEED_MORE);
    /* application data after the hello does not change the result */
    memcpy(h.b + h.n, "\x17\x03\x03\x00\x01X", 6);
    assert_int_equal(tls_hello_parse(h.b, h.n + 6, &out), TLS_HELLO_DONE);
    assert_int_equal(out.hello_len, h.n);
    assert_string_equal(out.sni, "split.example");
}

/* The same handshake bytes re-framed into records of `frag` bytes each. */
static size_t reframe(const struct hello_bytes *h, size_t frag, uint8_t *out)
{
    size_t body = h->n - 5, o = 0;
    for (size_t off = 0; off < body; off += frag) {
        size_t n = body - off < frag ? body - off : frag;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (uint8_t)(n >> 8);
        out[o++] = (uint8_t)n;
        memcpy(out + o, h->b + 5 + off, n);
        o += n;
    }
    return o;
}

static void test_hello_spread_over_several_records_is_reassembled(void **state)
{
    struct hello_bytes h;
    struct tls_hello out;
    static uint8_t multi[16384];
    real_hello("frag.example", "\x08http/1.1", 9, 0, &h);
    size_t sizes[] = { 1, 3, 7, 100, 200 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = reframe(&h, sizes[s], multi);
        assert_int_equal(tls_hello_parse(multi, n, &out), TLS_HELLO_DONE);
        assert_string_equal(out.sni, "frag.example");
        assert_int_equal(out.hello_len, n);
        assert_int_equal(tls_hello_parse(multi, n - 1, &out), TLS_HELLO_NEED_MORE);
    }
}

static void test_plain_http_and_other_protocols_are_not_tls(void **state)
{
    struct tls_hello out;
    const char *get = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    assert_int_equal(tls_hello_parse((const uint8_t *)get, strlen(get), &out), TLS_HELLO_NOT_TLS);
    assert_int_equal(tls_hello_sniff((const uint8_t *)get, strlen(get)), 0);
    assert_int_equal(tls_hello_parse((const uint8_t *)"G", 1, &out), TLS_HELLO_NOT_TLS);
    assert_int_equal(tls_hello_parse((const uint8_t *)"SSH-2.0-x\r\n", 11, &out), TLS_HELLO_NOT_TLS);
    /* a TLS record that is not a handshake (alert) */
    assert_int_equal(tls_hello_parse((const uint8_t *)"\x15\x03\x03\x00\x02\x02\x28", 7, &out),
                     TLS_HELLO_NOT_TLS);
    /* SSLv3 record version is not accepted */
    assert_int_equal(tls_hello_parse((const uint8_t *)"\x16\x03\x00\x00\x10", 5, &out),
                     TLS_HELLO_NOT_TLS);
    assert_int_equal(tls_hello_sniff((const uint8_t *)"\x16", 1), -1);
    assert_int_equal(tls_hello_sniff((const uint8_t *)"\x16\x03\x01\x02\x00", 5), 1);
    assert_int_equal(tls_hello_parse(NULL, 0, &out), TLS_HELLO_NEED_MORE);
}

/* Offsets of the length fields of a single-record ClientHello. */
struct offs {
    size_t sid, suites, comp, exts, sni_name;
};

static void find_offsets(const struct hello_bytes *h, const char *sni, struct offs *o)
{
    o->sid = 5 + 4 + 2 + 32;
    o->suites = o->sid + 1 + h->b[o->sid];
    o->comp = o->suites + 2 + ((size_t)h->b[o->suites] << 8 | h->b[o->suites + 1]);
    o->exts = o->comp + 1 + h->b[o->comp];
    const uint8_t *p = memmem(h->b, h->n, sni, strlen(sni));
    assert_non_null(p);
    o->sni_name = (size_t)(p - h->b);
}

static int parse_patched(const struct hello_bytes *h, size_t at, int delta)
{
    struct hello_bytes c = *h;
    struct tls_hello out;
    c.b[at] = (uint8_t)(c.b[at] + delta);
    int rc = tls_hello_parse(c.b, c.n, &out);
    if (rc != TLS_HELLO_DONE) {
        assert_false(out.has_sni);
        assert_int_equal(out.nalpn, 0);
    }
    return rc;
}

static void test_corrupted_length_fields_are_errors(void **state)
{
    struct hello_bytes h;
    struct offs o;
    real_hello("bad.example", "\x08http/1.1", 9, 0, &h);
    find_offsets(&h, "bad.example", &o);
    assert_int_equal(parse_patched(&h, o.sid, 40), TLS_HELLO_ERROR);         /* sid > 32 */
    assert_int_equal(parse_patched(&h, o.suites + 1, 1), TLS_HELLO_ERROR);   /* odd suites */
    assert_int_equal(parse_patched(&h, o.comp, 1), TLS_HELLO_ERROR);
    assert_int_equal(parse_patched(&h, o.exts + 1, 1), TLS_HELLO_ERROR);     /* too long */
    assert_int_equal(parse_patched(&h, o.exts + 1, -1), TLS_HELLO_ERROR);    /* trailing */
    assert_int_equal(parse_patched(&h, o.sni_name - 1, 1), TLS_HELLO_ERROR); /* name len */
    assert_int_equal(parse_patched(&h, o.sni_name - 4, 1), TLS_HELLO_ERROR); /* list len */
    assert_int_equal(parse_patched(&h, o.sni_name - 6, 1), TLS_HELLO_ERROR); /* ext len */
    assert_int_equal(parse_patched(&h, 5, 1), TLS_HELLO_ERROR);              /* ServerHello */
    /* a handshake length beyond the 16 KiB bound */
    assert_int_equal(parse_patched(&h, 6, 1), TLS_HELLO_ERROR);
    /* the original still parses */
    assert_int_equal(parse_patched(&h, 0, 0), TLS_HELLO_DONE);
}

static void test_sni_with_characters_outside_a_host_name_is_an_error(void **state)
{
    struct hello_bytes h;
    struct offs o;
    real_hello("evil.example", NULL, 0, 0, &h);
    find_offsets(&h, "evil.example", &o);
    struct hello_bytes c = h;
    c.b[o.sni_name + 4] = '/';
    struct tls_hello out;
    assert_int_equal(tls_hello_parse(c.b, c.n, &out), TLS_HELLO_ERROR);
    c = h;
    c.b[o.sni_name + 4] = '\0';
    assert_int_equal(tls_hello_parse(c.b, c.n, &out), TLS_HELLO_ERROR);
    c = h;
    c.b[o.sni_name + 11] = '.';    /* trailing dot */
    assert_int_equal(tls_hello_parse(c.b, c.n, &out), TLS_HELLO_ERROR);
    c = h;
    c.b[o.sni_name + 4] = '_';     /* underscores occur in real host names */
    assert_int_equal(tls_hello_parse(c.b, c.n, &out), TLS_HELLO_DONE);
    assert_string_equal(out.sni, "evil_example");
}

static void test_every_single_byte_corruption_is_handled_without_crash(void **state)
{
    struct hello_bytes h;
    real_hello("fuzz.example", "\x02h2\x08http/1.1", 12, 0, &h);
    for (size_t i = 0; i < h.n; i++)
        for (int d = 1; d < 256; d += 37) {
            int rc = parse_patched(&h, i, d);
            assert_true(rc >= TLS_HELLO_NOT_TLS && rc <= TLS_HELLO_DONE);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_with_sni_and_alpn_gives_lowercased_host_and_protocols),
        cmocka_unit_test(test_hello_without_sni_or_alpn_parses_with_empty_sni),
        cmocka_unit_test(test_tls12_only_client_has_no_tls13_version),
        cmocka_unit_test(test_every_truncation_needs_more_and_bytes_after_are_not_counted),
        cmocka_unit_test(test_hello_spread_over_several_records_is_reassembled),
        cmocka_unit_test(test_plain_http_and_other_protocols_are_not_tls),
        cmocka_unit_test(test_corrupted_length_fields_are_errors),
        cmocka_unit_test(test_sni_with_characters_outside_a_host_name_is_an_error),
        cmocka_unit_test(test_every_single_byte_corruption_is_handled_without_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
