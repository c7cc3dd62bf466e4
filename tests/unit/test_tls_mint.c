/* Unit tests of leaf minting: what a minted certificate contains (checked by
 * OpenSSL's own chain and host verification), the memory and disk caches,
 * reuse across restarts, the leaf key file, bounds and thread safety. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include "tls/ca.h"
#include "tls/mint.h"
#include "util/util.h"

struct fx {
    char dir[64];
    char err[UTIL_ERRLEN];
    struct tls_ca ca;
    struct tls_minter *m;
};

static int setup_days(void **state, int days)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/shoji-test-mint-XXXXXX");
    struct tls_ca_init_opts o = { .days = days };
    if (!mkdtemp(f->dir) || tls_ca_init(f->dir, &o, f->err, sizeof f->err) < 0 ||
        tls_ca_load(f->dir, &f->ca, f->err, sizeof f->err) < 0 ||
        tls_minter_new(&f->ca, f->dir, 0, &f->m, f->err, sizeof f->err) < 0)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state) { return setup_days(state, 0); }
static int setup_short_ca(void **state) { return setup_days(state, 10); }

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    tls_minter_free(f->m);
    tls_ca_free(&f->ca);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void names_of(struct tls_names *n, const char *cn, const char *const *list)
{
    memset(n, 0, sizeof *n);
    util_strlcpy(n->cn, cn, sizeof n->cn);
    for (; *list; list++)
        util_strlcpy(n->names[n->n++], *list, sizeof n->names[0]);
}

/* OpenSSL's verdict on `leaf` for `host` with only our CA trusted. */
static int verify_for(const struct fx *f, X509 *leaf, const char *host, const char *ip)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_add_cert(store, f->ca.cert);
    X509_STORE_CTX_init(ctx, store, leaf, NULL);
    X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(p, X509_PURPOSE_SSL_SERVER);
    if (host)
        X509_VERIFY_PARAM_set1_host(p, host, 0);
    if (ip)
        X509_VERIFY_PARAM_set1_ip_asc(p, ip);
    int ok = X509_verify_cert(ctx);
    int e = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return e;
}

static long seconds_from_now(const ASN1_TIME *t)
{
    int d = 0, s = 0;
    assert_int_equal(ASN1_TIME_diff(&d, &s, NULL, t), 1);
    return (long)d * 86400 + s;
}

static void test_minted_leaf_verifies_for_each_name_and_only_those(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    names_of(&n, "www.example.com",
             (const char *const[]){ "www.example.com", "*.cdn.example.com", "10.1.2.3", "::1", NULL });
    X509 *x = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_non_null(x);
    assert_int_equal(verify_for(f, x, "www.example.com", NULL), X509_V_OK);
    assert_int_equal(verify_for(f, x, "img.cdn.example.com", NULL), X509_V_OK);
    assert_int_equal(verify_for(f, x, NULL, "10.1.2.3"), X509_V_OK);
    assert_int_equal(verify_for(f, x, NULL, "::1"), X509_V_OK);
    assert_int_equal(verify_for(f, x, "example.com", NULL), X509_V_ERR_HOSTNAME_MISMATCH);
    assert_int_equal(verify_for(f, x, NULL, "10.1.2.4"), X509_V_ERR_IP_ADDRESS_MISMATCH);
    /* issuer, key, profile */
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(f->ca.cert)), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), tls_minter_leaf_key(f->m)), 1);
    assert_int_equal(X509_check_ca(x), 0);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    char cn[128];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "www.example.com");
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_false(BN_is_negative(bn));
    assert_int_equal(BN_num_bytes(bn), 16);
    BN_free(bn);
    /* valid from an hour ago for 397 days */
    long nb = seconds_from_now(X509_get0_notBefore(x));
    long na = seconds_from_now(X509_get0_notAfter(x));
    assert_true(nb <= -3590 && nb >= -3610);
    assert_true(na <= 397L * 86400 && na >= 397L * 86400 - 10);
    X509_free(x);
}

static void test_leaf_never_outlives_the_ca(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    tls_names_from_host("short.example", &n);
    X509 *x = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_non_null(x);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(f->ca.cert)), 0);
    assert_int_equal(verify_for(f, x, "short.example", NULL), X509_V_OK);
    X509_free(x);
}

static void test_same_names_in_any_order_hit_the_memory_cache(void **state)
{
    struct fx *f = *state;
    struct tls_names a, b, c;
    struct tls_mint_stats st;
    names_of(&a, "a.example", (const char *const[]){ "a.example", "b.example", NULL });
    names_of(&b, "a.example", (const char *const[]){ "b.example", "a.example", "a.example", NULL });
    names_of(&c, "a.example", (const char *const[]){ "a.example", "c.example", NULL });
    X509 *x = tls_mint_leaf(f->m, &a, f->err, sizeof f->err);
    X509 *y = tls_mint_leaf(f->m, &b, f->err, sizeof f->err);
    X509 *z = tls_mint_leaf(f->m, &c, f->err, sizeof f->err);
    assert_ptr_equal(x, y);
    assert_ptr_not_equal(x, z);
    tls_minter_stats(f->m, &st);
    assert_int_equal(st.minted, 2);
    assert_int_equal(st.mem_hits, 1);
    assert_int_equal(st.disk_hits, 0);
    X509_free(x);
    X509_free(y);
    X509_free(z);
}

static void test_restart_reuses_leaf_key_and_certificates_from_disk(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    struct tls_mint_stats st;
    char p[128];
    tls_names_from_host("persist.example", &n);
    X509 *x = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_non_null(x);
    snprintf(p, sizeof p, "%s/leaf.key", f->dir);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    tls_minter_free(f->m);
    assert_int_equal(tls_minter_new(&f->ca, f->dir, 0, &f->m, f->err, sizeof f->err), 0);
    X509 *y = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_non_null(y);
    assert_int_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(y)), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(y), tls_minter_leaf_key(f->m)), 1);
    tls_minter_stats(f->m, &st);
    assert_int_equal(st.disk_hits, 1);
    assert_int_equal(st.minted, 0);
    X509_free(x);
    X509_free(y);
}

/* The one cached file for the CA in the fixture. */
static void cached_file(const struct fx *f, char *out, size_t cap)
{
    char pat[128];
    glob_t g;
    snprintf(pat, sizeof pat, "%s/certs/*/*.pem", f->dir);
    assert_int_equal(glob(pat, 0, NULL, &g), 0);
    assert_int_equal(g.gl_pathc, 1);
    util_strlcpy(out, g.gl_pathv[0], cap);
    globfree(&g);
}

static void test_corrupt_or_foreign_disk_cache_is_reminted(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    struct tls_mint_stats st;
    char p[256], keyp[128];
    tls_names_from_host("corrupt.example", &n);
    X509_free(tls_mint_leaf(f->m, &n, f->err, sizeof f->err));
    tls_minter_flush(f->m);        /* disk writes are asynchronous */
    cached_file(f, p, sizeof p);
    tls_minter_free(f->m);
    assert_int_equal(util_write_file_atomic(p, "-----BEGIN CERT", 15, 0644, NULL, 0), 0);
    assert_int_equal(tls_minter_new(&f->ca, f->dir, 0, &f->m, f->err, sizeof f->err), 0);
    X509 *x = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_non_null(x);
    assert_int_equal(verify_for(f, x, "corrupt.example", NULL), X509_V_OK);
    tls_minter_stats(f->m, &st);
    assert_int_equal(st.minted, 1);
    X509_free(x);
    /* a new leaf key makes the cached certificate unusable */
    tls_minter_free(f->m);
    snprintf(keyp, sizeof keyp, "%s/leaf.key", f->dir);
    unlink(keyp);
    assert_int_equal(tls_minter_new(&f->ca, f->dir, 0, &f->m, f->err, sizeof f->err), 0);
    x = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), tls_minter_leaf_key(f->m)), 1);
    tls_minter_stats(f->m, &st);
    assert_int_equal(st.minted, 1);
    assert_int_equal(st.disk_hits, 0);
    X509_free(x);
}

static void test_memory_cache_is_bounded_and_evicts_least_recent(void **state)
{
    struct fx *f = *state;
    struct tls_names a, b, c;
    struct tls_mint_stats st;
    tls_minter_free(f->m);
    assert_int_equal(tls_minter_new(&f->ca, f->dir, 2, &f->m, f->err, sizeof f->err), 0);
    tls_names_from_host("a.example", &a);
    tls_names_from_host("b.example", &b);
    tls_names_from_host("c.example", &c);
    X509_free(tls_mint_leaf(f->m, &a, f->err, sizeof f->err));
    X509_free(tls_mint_leaf(f->m, &b, f->err, sizeof f->err));
    X509_free(tls_mint_leaf(f->m, &a, f->err, sizeof f->err));   /* a is recent */
    X509_free(tls_mint_leaf(f->m, &c, f->err, sizeof f->err));   /* evicts b */
    X509_free(tls_mint_leaf(f->m, &a, f->err, sizeof f->err));
    tls_minter_flush(f->m);
    X509_free(tls_mint_leaf(f->m, &b, f->err, sizeof f->err));   /* from disk */
    tls_minter_stats(f->m, &st);
    assert_int_equal(st.minted, 3);
    assert_int_equal(st.mem_hits, 2);
    assert_int_equal(st.disk_hits, 1);
}

static void test_names_from_cert_are_lowercased_deduplicated_and_bounded(void **state)
{
    struct fx *f = *state;
    struct tls_names n, back;
    memset(&n, 0, sizeof n);
    util_strlcpy(n.cn, "Mixed.Example", sizeof n.cn);
    for (int i = 0; i < 32; i++)
        snprintf(n.names[n.n++], sizeof n.names[0], "h%d.example", i);
    util_strlcpy(n.names[3], "MIXED.example", sizeof n.names[0]);
    util_strlcpy(n.names[4], "192.0.2.7", sizeof n.names[0]);
    X509 *x = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_non_null(x);
    tls_names_from_cert(x, &back);
    assert_string_equal(back.cn, "mixed.example");
    assert_int_equal(back.n, 32);                  /* the CN counted once */
    assert_string_equal(back.names[0], "mixed.example");
    bool ip = false;
    for (size_t i = 0; i < back.n; i++)
        ip = ip || strcmp(back.names[i], "192.0.2.7") == 0;
    assert_true(ip);
    X509_free(x);
    tls_names_from_host("[2001:DB8::1]", &back);
    assert_int_equal(back.n, 1);
    assert_string_equal(back.names[0], "2001:db8::1");
    tls_names_from_host("bad host/name", &back);
    assert_int_equal(back.n, 0);
    assert_null(tls_mint_leaf(f->m, &back, f->err, sizeof f->err));
}

static void test_long_common_name_is_left_out_but_san_verifies(void **state)
{
    struct fx *f = *state;
    struct tls_names n;
    char host[128];
    memset(host, 'a', 70);
    strcpy(host + 60, ".long.example");
    tls_names_from_host(host, &n);
    X509 *x = tls_mint_leaf(f->m, &n, f->err, sizeof f->err);
    assert_non_null(x);
    assert_int_equal(verify_for(f, x, host, NULL), X509_V_OK);
    X509_free(x);
}

struct worker {
    struct fx *f;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char err[UTIL_ERRLEN], host[64];
    struct tls_names n;
    for (int i = 0; i < 300; i++) {
        snprintf(host, sizeof host, "t%d.example", i % 17);
        tls_names_from_host(host, &n);
        X509 *x = tls_mint_leaf(w->f->m, &n, err, sizeof err);
        if (!x || verify_for(w->f, x, host, NULL) != X509_V_OK)
            w->failures++;
        X509_free(x);
    }
    return NULL;
}

static void test_concurrent_first_connections_to_a_host_share_one_mint(void **state)
{
    struct fx *f = *state;
    struct worker w[4];
    pthread_t t[4];
    struct tls_mint_stats st;
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){ f, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    tls_minter_stats(f->m, &st);
    assert_int_equal(st.mem_hits + st.disk_hits + st.minted, 1200);
    assert_int_equal(st.minted, 17);      /* one mint per host, however many ask at once */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_minted_leaf_verifies_for_each_name_and_only_those, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leaf_never_outlives_the_ca, setup_short_ca, teardown),
        cmocka_unit_test_setup_teardown(test_same_names_in_any_order_hit_the_memory_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_reuses_leaf_key_and_certificates_from_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_or_foreign_disk_cache_is_reminted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_cache_is_bounded_and_evicts_least_recent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_from_cert_are_lowercased_deduplicated_and_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_common_name_is_left_out_but_san_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_first_connections_to_a_host_share_one_mint, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
