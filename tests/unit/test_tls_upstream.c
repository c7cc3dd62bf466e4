/* Unit tests of the upstream (client) and decode-side (server) TLS contexts:
 * full handshakes in memory between tls_upstream_ctx_new and a server
 * presenting a leaf minted by tls_mint_leaf or a deliberately bad
 * certificate, checking the verdict in words; ALPN; session resumption. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls/ca.h"
#include "tls/mint.h"
#include "tls/upstream.h"
#include "util/util.h"

struct fx {
    char dir[64];
    char cafile[128];
    char err[UTIL_ERRLEN];
    struct tls_ca ca;
    struct tls_minter *m;
    SSL_CTX *client, *server;
    /* handshake() with tls_upstream_pause_at_cert: what it saw at the pause */
    bool pause;
    int pauses, pause_rc;
    char pause_reason[256];
    X509 *pause_cert;       /* tls_upstream_peer_cert then (a reference) */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/shoji-test-upstream-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->cafile, sizeof f->cafile, "%s/ca.crt", f->dir);
    if (tls_ca_init(f->dir, NULL, f->err, sizeof f->err) < 0 ||
        tls_ca_load(f->dir, &f->ca, f->err, sizeof f->err) < 0 ||
        tls_minter_new(&f->ca, f->dir, 0, &f->m, f->err, sizeof f->err) < 0 ||
        !(f->client = tls_upstream_ctx_new(f->cafile, f->err, sizeof f->err)) ||
        !(f->server = tls_server_ctx_new(f->err, sizeof f->err)))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    SSL_CTX_free(f->client);
    SSL_CTX_free(f->server);
    tls_minter_free(f->m);
    tls_ca_free(&f->ca);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* A certificate for `host` signed by `issuer_key` (self-signed when
 * `issuer` is NULL), valid from now+nb to now+na seconds. */
static X509 *make_cert(const char *host, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       long nb, long na)
{
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)host, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), nb);
    X509_gmtime_adj(X509_getm_notAfter(x), na);
    X509_set_pubkey(x, key);
    char san[300];
    snprintf(san, sizeof san, "DNS:%s", host);
    X509V3_CTX c;
    X509V3_set_ctx(&c, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &c, NID_subject_alt_name, san);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
    return x;
}

/* Pumps a handshake between a client prepared for `host` (ALPN as the
 * upstream ctx sets it unless `alpn` is given) and a server presenting
 * `cert`. Returns the client SSL (caller frees) and sets *server. */
static SSL *handshake(struct fx *f, const char *host, X509 *cert, EVP_PKEY *key,
                      const char *alpn, size_t alpn_len, SSL **server)
{
    SSL *c = SSL_new(f->client), *s = SSL_new(f->server);
    BIO *bc = NULL, *bs = NULL;
    assert_non_null(c);
    assert_non_null(s);
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    assert_int_equal(tls_upstream_prepare(c, host), 0);
    if (f->pause)
        assert_int_equal(tls_upstream_pause_at_cert(c), 0);
    if (alpn)
        SSL_set_alpn_protos(c, (const unsigned char *)alpn, (unsigned)alpn_len);
    assert_int_equal(SSL_use_certificate(s, cert), 1);
    assert_int_equal(SSL_use_PrivateKey(s, key), 1);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    int cdone = 0, sdone = 0;
    for (int i = 0; i < 50 && !(cdone && sdone); i++) {
        if (!cdone) {
            int r = SSL_do_handshake(c);
            cdone = r == 1;
            if (!cdone && SSL_get_error(c, r) == SSL_ERROR_WANT_RETRY_VERIFY) {
                f->pauses++;
                f->pause_rc = tls_upstream_verify_result(c, f->pause_reason, sizeof f->pause_reason);
                X509_free(f->pause_cert);
                f->pause_cert = tls_upstream_peer_cert(c);
                if (f->pause_cert)
                    X509_up_ref(f->pause_cert);
            }
        }
        if (!sdone)
            sdone = SSL_do_handshake(s) == 1;
    }
    assert_true(cdone && sdone);
    /* let the client read the session tickets TLS 1.3 sends afterwards */
    char buf[16];
    for (int i = 0; i < 4; i++) {
        SSL_read(c, buf, sizeof buf);
        SSL_write(s, "", 0);
    }
    ERR_clear_error();
    *server = s;
    return c;
}

static int verdict(struct fx *f, const char *host, X509 *cert, EVP_PKEY *key, char *reason,
                   size_t cap)
{
    SSL *s = NULL;
    SSL *c = handshake(f, host, cert, key, NULL, 0, &s);
    int rc = tls_upstream_verify_result(c, reason, cap);
    SSL_free(c);
    tls_server_ssl_free(s);
    return rc;
}

static void test_minted_leaf_from_trusted_ca_verifies_and_speaks_http11(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    char reason[256];
    tls_names_from_host("good.example", &n);
    X509 *leaf = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    SSL *s = NULL;
    SSL *c = handshake(f, "good.example", leaf, tls_minter_leaf_key(f->m), NULL, 0, &s);
    assert_int_equal(tls_upstream_verify_result(c, reason, sizeof reason), 0);
    assert_string_equal(reason, "ok");
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL_get0_alpn_selected(c, &proto, &plen);
    assert_int_equal(plen, 8);
    assert_memory_equal(proto, "http/1.1", 8);
    assert_true(SSL_version(c) >= TLS1_2_VERSION);
    /* the server sends the leaf alone: the CA is the client's trust anchor
     * (and verification above found it there) */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c);
    assert_int_equal(sk_X509_num(chain), 1);
    SSL_free(c);
    tls_server_ssl_free(s);
    X509_free(leaf);
}

static void test_expired_certificate_is_reported_as_expired(void **state)
{
    struct fx *f = *state;
    char reason[256];
    X509 *x = make_cert("good.example", tls_minter_leaf_key(f->m), f->ca.cert, f->ca.key,
                        -30 * 86400, -86400);
    assert_int_equal(verdict(f, "good.example", x, tls_minter_leaf_key(f->m), reason,
                             sizeof reason), -EACCES);
    assert_string_equal(reason, "certificate has expired");
    X509_free(x);
    /* same host again: the failed session is not resumed, the new
     * certificate is judged afresh */
    x = make_cert("good.example", tls_minter_leaf_key(f->m), f->ca.cert, f->ca.key,
                  86400, 30 * 86400);
    assert_int_equal(verdict(f, "good.example", x, tls_minter_leaf_key(f->m), reason,
                             sizeof reason), -EACCES);
    assert_string_equal(reason, "certificate is not yet valid");
    X509_free(x);
}

static void test_self_signed_certificate_is_reported_as_self_signed(void **state)
{
    struct fx *f = *state;
    char reason[256];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = make_cert("good.example", k, NULL, k, -60, 86400);
    assert_int_equal(verdict(f, "good.example", x, k, reason, sizeof reason), -EACCES);
    assert_string_equal(reason, "self-signed certificate");
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_certificate_from_unknown_ca_is_reported_as_unknown_issuer(void **state)
{
    struct fx *f = *state;
    char reason[256];
    EVP_PKEY *other = EVP_EC_gen("P-256");
    X509 *other_ca = make_cert("other-ca", other, NULL, other, -60, 86400);
    X509 *x = make_cert("good.example", tls_minter_leaf_key(f->m), other_ca, other, -60, 86400);
    assert_int_equal(verdict(f, "good.example", x, tls_minter_leaf_key(f->m), reason,
                             sizeof reason), -EACCES);
    assert_string_equal(reason, "unknown issuer (unable to get local issuer certificate)");
    X509_free(x);
    X509_free(other_ca);
    EVP_PKEY_free(other);
}

static void test_wrong_name_is_reported_with_the_names_the_certificate_has(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    char reason[256];
    memset(&n, 0, sizeof n);
    util_strlcpy(n.cn, "other.example", sizeof n.cn);
    util_strlcpy(n.names[n.n++], "other.example", sizeof n.names[0]);
    util_strlcpy(n.names[n.n++], "www.other.example", sizeof n.names[0]);
    X509 *leaf = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_int_equal(verdict(f, "good.example", leaf, tls_minter_leaf_key(f->m), reason,
                             sizeof reason), -EACCES);
    assert_string_equal(reason, "name mismatch: the certificate is for other.example, "
                                "www.other.example");
    X509_free(leaf);
}

static void test_ip_literal_host_is_checked_against_ip_sans(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    char reason[256];
    tls_names_from_host("127.0.0.1", &n);
    X509 *leaf = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_int_equal(verdict(f, "127.0.0.1", leaf, tls_minter_leaf_key(f->m), reason,
                             sizeof reason), 0);
    assert_int_equal(verdict(f, "127.0.0.2", leaf, tls_minter_leaf_key(f->m), reason,
                             sizeof reason), -EACCES);
    assert_string_equal(reason, "name mismatch: the certificate is for 127.0.0.1");
    X509_free(leaf);
}

static void test_server_accepts_only_http11_and_clients_without_alpn(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL *s = NULL, *c;
    tls_names_from_host("alpn.example", &n);
    X509 *leaf = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    EVP_PKEY *k = tls_minter_leaf_key(f->m);
    c = handshake(f, "alpn.example", leaf, k, "\x02h2\x08http/1.1", 12, &s);
    SSL_get0_alpn_selected(c, &proto, &plen);
    assert_int_equal(plen, 8);
    assert_memory_equal(proto, "http/1.1", 8);
    SSL_free(c);
    tls_server_ssl_free(s);
    c = handshake(f, "alpn.example", leaf, k, "\x02h2", 3, &s);   /* h2 only: no ALPN */
    SSL_get0_alpn_selected(c, &proto, &plen);
    assert_int_equal(plen, 0);
    SSL_free(c);
    tls_server_ssl_free(s);
    X509_free(leaf);
}

static void test_second_connection_to_same_host_resumes_the_session(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    char reason[64];
    SSL *s = NULL, *c;
    tls_names_from_host("resume.example", &n);
    X509 *leaf = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    EVP_PKEY *k = tls_minter_leaf_key(f->m);
    c = handshake(f, "resume.example", leaf, k, NULL, 0, &s);
    assert_false(SSL_session_reused(c));
    SSL_free(c);
    tls_server_ssl_free(s);
    c = handshake(f, "resume.example", leaf, k, NULL, 0, &s);
    assert_true(SSL_session_reused(c));
    assert_int_equal(tls_upstream_verify_result(c, reason, sizeof reason), 0);
    SSL_free(c);
    tls_server_ssl_free(s);
    /* another host does not get that session */
    tls_names_from_host("fresh.example", &n);
    X509 *leaf2 = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    c = handshake(f, "fresh.example", leaf2, k, NULL, 0, &s);
    assert_false(SSL_session_reused(c));
    SSL_free(c);
    tls_server_ssl_free(s);
    X509_free(leaf);
    X509_free(leaf2);
}

/* One pause, at the origin's certificate, with the certificate readable
 * there (OpenSSL has not set the session's peer yet) and only its name
 * checked; the handshake then completes with the chain verified, and the
 * resumed session of a second connection has no certificate and no pause. */
static void test_pause_at_cert_stops_once_with_the_verdict_ready(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    char reason[256];
    SSL *s = NULL, *c;
    tls_names_from_host("pause.example", &n);
    X509 *leaf = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    EVP_PKEY *k = tls_minter_leaf_key(f->m);
    f->pause = true;
    c = handshake(f, "pause.example", leaf, k, NULL, 0, &s);
    assert_int_equal(f->pauses, 1);
    assert_int_equal(f->pause_rc, 1);
    assert_string_equal(f->pause_reason, "name ok, chain not verified yet");
    assert_non_null(f->pause_cert);
    assert_int_equal(X509_cmp(f->pause_cert, leaf), 0);
    assert_int_equal(tls_upstream_verify_result(c, reason, sizeof reason), 0);
    assert_int_equal(X509_cmp(SSL_get0_peer_certificate(c), leaf), 0);
    SSL_free(c);
    tls_server_ssl_free(s);
    c = handshake(f, "pause.example", leaf, k, NULL, 0, &s);
    assert_true(SSL_session_reused(c));
    assert_int_equal(f->pauses, 1);
    assert_int_equal(tls_upstream_verify_result(c, reason, sizeof reason), 0);
    SSL_free(c);
    tls_server_ssl_free(s);
    X509_free(f->pause_cert);
    X509_free(leaf);
}

/* A name mismatch is found at the pause and stays the verdict after it;
 * the handshake still completes (the caller shows the error page). */
static void test_pause_at_cert_keeps_a_failure(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    char reason[256];
    SSL *s = NULL, *c;
    tls_names_from_host("other.example", &n);
    X509 *leaf = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    f->pause = true;
    c = handshake(f, "wanted.example", leaf, tls_minter_leaf_key(f->m), NULL, 0, &s);
    assert_int_equal(f->pauses, 1);
    assert_int_equal(f->pause_rc, -EACCES);
    assert_string_equal(f->pause_reason, "name mismatch: the certificate is for other.example");
    assert_int_equal(tls_upstream_verify_result(c, reason, sizeof reason), -EACCES);
    assert_string_equal(reason, f->pause_reason);
    SSL_free(c);
    tls_server_ssl_free(s);
    X509_free(f->pause_cert);
    X509_free(leaf);
}

/* A certificate naming the host whose chain fails (expired here, then one
 * from an unknown issuer): the name passes at the pause, the failure is the
 * verdict once the handshake has ended, and such a session is not kept. */
/* One paused handshake with `cert`: a fresh session, one more pause where
 * the name passed (1), and `why` as the verdict once it has ended. */
static void paused_handshake_fails_with(struct fx *f, X509 *cert, EVP_PKEY *key, int pauses,
                                        const char *why)
{
    char reason[256];
    SSL *s = NULL;
    SSL *c = handshake(f, "late.example", cert, key, NULL, 0, &s);
    assert_false(SSL_session_reused(c));
    assert_int_equal(f->pauses, pauses);
    assert_int_equal(f->pause_rc, 1);
    assert_int_equal(tls_upstream_verify_result(c, reason, sizeof reason), -EACCES);
    assert_string_equal(reason, why);
    SSL_free(c);
    tls_server_ssl_free(s);
    X509_free(f->pause_cert);
    f->pause_cert = NULL;
}

static void test_pause_at_cert_finds_a_chain_failure_after_the_pause(void **state)
{
    struct fx *f = *state;
    X509 *x = make_cert("late.example", tls_minter_leaf_key(f->m), f->ca.cert, f->ca.key,
                        -30 * 86400, -86400);
    f->pause = true;
    paused_handshake_fails_with(f, x, tls_minter_leaf_key(f->m), 1, "certificate has expired");
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *y = make_cert("late.example", k, NULL, k, -60, 86400);
    paused_handshake_fails_with(f, y, k, 2, "self-signed certificate");
    X509_free(x);
    X509_free(y);
    EVP_PKEY_free(k);
}

static void test_missing_extra_ca_file_is_a_clear_error(void **state)
{
    struct fx *f = *state;
    SSL_CTX *ctx = tls_upstream_ctx_new("/nonexistent/ca.pem", f->err, sizeof f->err);
    assert_null(ctx);
    assert_non_null(strstr(f->err, "/nonexistent/ca.pem"));
    SSL *ssl = SSL_new(f->client);
    char reason[64];
    assert_int_equal(tls_upstream_verify_result(ssl, reason, sizeof reason), -ENOENT);
    assert_int_equal(tls_upstream_prepare(ssl, ""), -EINVAL);
    SSL_free(ssl);
}

/* The system trust store is a hashed-directory lookup (Debian): nothing is
 * parsed when the context is made, and a system root is still found when a
 * chain needs it. Skipped where the default directory has no hash links. */
static void test_system_roots_are_found_on_demand_not_loaded_at_start(void **state)
{
    (void)state;
    const char *dir = X509_get_default_cert_dir();
    DIR *d = opendir(dir);
    char path[1024] = "";
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strlen(e->d_name) == 10 && strcmp(e->d_name + 8, ".0") == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            break;
        }
    if (d)
        closedir(d);
    if (!path[0])
        skip();
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *root = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(root);
    char *env_file = getenv("SSL_CERT_FILE"), *env_dir = getenv("SSL_CERT_DIR");
    char *keep_file = env_file ? strdup(env_file) : NULL, *keep_dir = env_dir ? strdup(env_dir) : NULL;
    unsetenv("SSL_CERT_FILE");
    unsetenv("SSL_CERT_DIR");
    char err[UTIL_ERRLEN];
    SSL_CTX *ctx = tls_upstream_ctx_new(NULL, err, sizeof err);
    assert_non_null(ctx);
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    assert_int_equal(sk_X509_OBJECT_num(X509_STORE_get0_objects(st)), 0);   /* nothing parsed */
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    assert_non_null(sc);
    assert_int_equal(X509_STORE_CTX_init(sc, st, NULL, NULL), 1);
    X509_OBJECT *o = X509_STORE_CTX_get_obj_by_subject(sc, X509_LU_X509, X509_get_subject_name(root));
    assert_non_null(o);
    assert_int_equal(X509_cmp(X509_OBJECT_get0_X509(o), root), 0);
    X509_OBJECT_free(o);
    X509_STORE_CTX_free(sc);
    SSL_CTX_free(ctx);
    X509_free(root);
    if (keep_file)
        setenv("SSL_CERT_FILE", keep_file, 1);
    if (keep_dir)
        setenv("SSL_CERT_DIR", keep_dir, 1);
    free(keep_file);
    free(keep_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_minted_leaf_from_trusted_ca_verifies_and_speaks_http11, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_certificate_is_reported_as_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_signed_certificate_is_reported_as_self_signed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certificate_from_unknown_ca_is_reported_as_unknown_issuer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_name_is_reported_with_the_names_the_certificate_has, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_literal_host_is_checked_against_ip_sans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_accepts_only_http11_and_clients_without_alpn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_connection_to_same_host_resumes_the_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_at_cert_stops_once_with_the_verdict_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_at_cert_keeps_a_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_at_cert_finds_a_chain_failure_after_the_pause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_extra_ca_file_is_a_clear_error, setup, teardown),
        cmocka_unit_test(test_system_roots_are_found_on_demand_not_loaded_at_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
