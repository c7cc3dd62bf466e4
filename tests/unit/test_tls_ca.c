/* Unit tests of the local CA: what `shoji ca init` creates (checked with the
 * OpenSSL API and the real openssl command), what loading refuses and why,
 * and install/uninstall into a throwaway trust directory and a real NSS
 * database made with certutil. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls/ca.h"
#include "util/util.h"

struct fx {
    char dir[64];
    char err[UTIL_ERRLEN];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/shoji-test-ca-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static const char *path_in(const struct fx *f, const char *name)
{
    static char p[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "%s/%s", f->dir, name);
    return p[i];
}

static int file_mode(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return (int)(st.st_mode & 07777);
}

/* Runs a shell command and returns its first output line. */
static void run_line(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    if (!fgets(out, (int)cap, p))
        out[0] = '\0';
    pclose(p);
    out[strcspn(out, "\n")] = '\0';
}

static void test_init_creates_ecdsa_ca_with_private_key_mode_0600(void **state)
{
    struct fx *f = *state;
    struct tls_ca ca;
    char sub[128];
    snprintf(sub, sizeof sub, "%s/state", f->dir);
    mode_t old = umask(0);          /* even with a permissive umask */
    int rc = tls_ca_init(sub, NULL, f->err, sizeof f->err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(file_mode(sub), 0700);
    char key[160], crt[160];
    snprintf(key, sizeof key, "%s/ca.key", sub);
    snprintf(crt, sizeof crt, "%s/ca.crt", sub);
    assert_int_equal(file_mode(key), 0600);
    assert_int_equal(file_mode(crt), 0644);
    assert_int_equal(tls_ca_load(sub, &ca, f->err, sizeof f->err), 0);
    assert_int_equal(EVP_PKEY_get_base_id(ca.key), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(ca.key), 256);
    assert_int_equal(X509_get_version(ca.cert), X509_VERSION_3);
    assert_int_equal(X509_check_ca(ca.cert), 1);
    /* the extensions a browser checks, with their criticality */
    int crit = 0;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca.cert, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_true(X509_get_key_usage(ca.cert) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    ASN1_BIT_STRING *ku = X509_get_ext_d2i(ca.cert, NID_key_usage, &crit, NULL);
    assert_int_equal(crit, 1);
    ASN1_BIT_STRING_free(ku);
    assert_non_null(X509_get0_subject_key_id(ca.cert));
    assert_non_null(X509_get0_authority_key_id(ca.cert));
    /* a positive 128-bit serial */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(ca.cert), NULL);
    assert_false(BN_is_negative(bn));
    assert_int_equal(BN_num_bytes(bn), 16);
    BN_free(bn);
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(ca.cert), name, sizeof name);
    assert_non_null(strstr(name, "/CN=shoji local CA ("));
    assert_non_null(strstr(name, "/O=shoji"));
    /* valid for ten years by default */
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(ca.cert)), 1);
    assert_true(days >= 3649 && days <= 3650);
    /* the real openssl agrees on the fingerprint and verifies it as a root */
    char cmd[400], line[256], want[128];
    snprintf(cmd, sizeof cmd, "openssl x509 -in %s -noout -fingerprint -sha256", crt);
    run_line(cmd, line, sizeof line);
    snprintf(want, sizeof want, "sha256 Fingerprint=%s", ca.fingerprint);
    assert_string_equal(line, want);
    snprintf(cmd, sizeof cmd, "openssl verify -CAfile %s %s", crt, crt);
    run_line(cmd, line, sizeof line);
    assert_non_null(strstr(line, ": OK"));
    tls_ca_free(&ca);
}

static void test_init_with_rsa_and_days_gives_rsa3072_for_that_long(void **state)
{
    struct fx *f = *state;
    struct tls_ca ca;
    struct tls_ca_init_opts o = { .rsa = true, .days = 30 };
    assert_int_equal(tls_ca_init(f->dir, &o, f->err, sizeof f->err), 0);
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), 0);
    assert_int_equal(EVP_PKEY_get_base_id(ca.key), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_get_bits(ca.key), 3072);
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(ca.cert)), 1);
    assert_true(days >= 29 && days <= 30);
    tls_ca_free(&ca);
}

static void test_init_refuses_to_replace_a_ca_without_force(void **state)
{
    struct fx *f = *state;
    struct tls_ca a, b;
    assert_int_equal(tls_ca_init(f->dir, NULL, f->err, sizeof f->err), 0);
    assert_int_equal(tls_ca_load(f->dir, &a, f->err, sizeof f->err), 0);
    assert_int_equal(tls_ca_init(f->dir, NULL, f->err, sizeof f->err), -EEXIST);
    assert_non_null(strstr(f->err, "--force"));
    assert_int_equal(tls_ca_load(f->dir, &b, f->err, sizeof f->err), 0);
    assert_string_equal(a.fingerprint, b.fingerprint);    /* untouched */
    tls_ca_free(&b);
    struct tls_ca_init_opts o = { .force = true };
    assert_int_equal(tls_ca_init(f->dir, &o, f->err, sizeof f->err), 0);
    assert_int_equal(tls_ca_load(f->dir, &b, f->err, sizeof f->err), 0);
    assert_string_not_equal(a.fingerprint, b.fingerprint);
    tls_ca_free(&a);
    tls_ca_free(&b);
    struct tls_ca_init_opts bad = { .force = true, .days = -5 };
    assert_int_equal(tls_ca_init(f->dir, &bad, f->err, sizeof f->err), -EINVAL);
}

static void test_load_of_missing_ca_says_how_to_create_one(void **state)
{
    struct fx *f = *state;
    struct tls_ca ca;
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), -ENOENT);
    assert_non_null(strstr(f->err, "shoji ca init"));
    assert_null(ca.cert);
}

static void write_text(const char *p, const char *text, int mode)
{
    assert_int_equal(util_write_file_atomic(p, text, strlen(text), mode, NULL, 0), 0);
}

static void test_load_of_corrupt_or_missing_files_names_the_file(void **state)
{
    struct fx *f = *state;
    struct tls_ca ca;
    assert_int_equal(tls_ca_init(f->dir, NULL, f->err, sizeof f->err), 0);
    char *key = NULL;
    assert_int_equal(util_read_file(path_in(f, "ca.key"), 65536, &key, NULL, NULL, 0), 0);
    write_text(path_in(f, "ca.crt"), "-----BEGIN CERTIFICATE-----\nnot base64!\n", 0644);
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), -EBADMSG);
    assert_non_null(strstr(f->err, "ca.crt is not a valid PEM certificate"));
    unlink(path_in(f, "ca.crt"));
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), -ENOENT);
    assert_non_null(strstr(f->err, "ca.crt"));
    /* a key that is not a key */
    assert_int_equal(tls_ca_init(f->dir, &(struct tls_ca_init_opts){ .force = true }, f->err,
                                 sizeof f->err), 0);
    write_text(path_in(f, "ca.key"), "garbage\n", 0600);
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), -EBADMSG);
    assert_non_null(strstr(f->err, "ca.key is not a valid PEM private key"));
    /* a valid key from another CA */
    write_text(path_in(f, "ca.key"), key, 0600);
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), -EINVAL);
    assert_non_null(strstr(f->err, "does not belong"));
    free(key);
}

/* Writes DIR/ca.crt + DIR/ca.key: a self-signed certificate that is a CA
 * or not, valid from now+nb to now+na seconds. */
static void write_self_signed(const struct fx *f, bool is_ca, long nb, long na)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), nb);
    X509_gmtime_adj(X509_getm_notAfter(x), na);
    X509_set_pubkey(x, k);
    X509V3_CTX c;
    X509V3_set_ctx(&c, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &c, NID_basic_constraints,
                                            is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    assert_int_equal(tls_write_pem(path_in(f, "ca.key"), k, NULL, 0600, NULL, 0), 0);
    assert_int_equal(tls_write_pem(path_in(f, "ca.crt"), NULL, x, 0644, NULL, 0), 0);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_load_refuses_a_certificate_that_is_not_a_ca(void **state)
{
    struct fx *f = *state;
    struct tls_ca ca;
    write_self_signed(f, false, 0, 86400);
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), -EINVAL);
    assert_non_null(strstr(f->err, "not a CA certificate"));
}

static void test_load_refuses_an_expired_ca_and_says_to_rotate(void **state)
{
    struct fx *f = *state;
    struct tls_ca ca;
    write_self_signed(f, true, -10 * 86400, -86400);
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), -EKEYEXPIRED);
    assert_non_null(strstr(f->err, "expired"));
    assert_non_null(strstr(f->err, "shoji ca init --force"));
}

/* Runs tls_ca_load with stderr captured into `out`. */
static int load_capturing_stderr(struct fx *f, struct tls_ca *ca, char *out, size_t cap)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(path_in(f, "stderr.txt"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    int rc = tls_ca_load(f->dir, ca, f->err, sizeof f->err);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    return rc;
}

static void test_load_warns_when_the_key_is_readable_by_others(void **state)
{
    struct fx *f = *state;
    struct tls_ca ca;
    char out[2048];
    assert_int_equal(tls_ca_init(f->dir, NULL, f->err, sizeof f->err), 0);
    assert_int_equal(load_capturing_stderr(f, &ca, out, sizeof out), 0);
    assert_null(strstr(out, "chmod"));
    tls_ca_free(&ca);
    assert_int_equal(chmod(path_in(f, "ca.key"), 0644), 0);
    assert_int_equal(load_capturing_stderr(f, &ca, out, sizeof out), 0);
    assert_non_null(strstr(out, "chmod 600"));
    assert_non_null(strstr(out, "warn"));
    tls_ca_free(&ca);
}

static bool have_certutil(void)
{
    return system("command -v certutil >/dev/null 2>&1") == 0;
}

static int nss_has(const char *db, const char *nick)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "certutil -L -d sql:%s -n '%s' >/dev/null 2>&1", db, nick);
    return system(cmd) == 0;
}

static void test_install_and_uninstall_touch_trust_dir_and_nss_database(void **state)
{
    struct fx *f = *state;
    struct tls_ca ca;
    char cmd[512], db[128], nick[64], trust[128], fp8[9], crtfile[200];
    if (!have_certutil())
        skip();
    assert_int_equal(tls_ca_init(f->dir, NULL, f->err, sizeof f->err), 0);
    assert_int_equal(tls_ca_load(f->dir, &ca, f->err, sizeof f->err), 0);
    tls_ca_fp8(&ca, fp8);
    tls_ca_free(&ca);
    snprintf(db, sizeof db, "%s/profiles/p1", f->dir);
    snprintf(trust, sizeof trust, "%s/trust", f->dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && certutil -N --empty-password -d sql:%s", db, db);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/profiles/*", f->dir);
    setenv("SHOJI_NSSDB_GLOB", cmd, 1);
    setenv("SHOJI_TRUST_DIR", trust, 1);
    setenv("SHOJI_SKIP_UPDATE_CA", "1", 1);
    snprintf(nick, sizeof nick, "shoji local CA %s", fp8);
    snprintf(crtfile, sizeof crtfile, "%s/shoji-%s.crt", trust, fp8);

    char *rep = NULL;
    size_t replen = 0;
    FILE *report = open_memstream(&rep, &replen);
    assert_int_equal(tls_ca_install(f->dir, report, f->err, sizeof f->err), 0);
    fclose(report);
    assert_non_null(strstr(rep, crtfile));
    assert_non_null(strstr(rep, db));
    free(rep);
    assert_true(nss_has(db, nick));
    /* the installed file is the CA certificate itself */
    snprintf(cmd, sizeof cmd, "cmp -s %s/ca.crt %s", f->dir, crtfile);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(file_mode(crtfile), 0644);
    /* installing twice is harmless */
    assert_int_equal(tls_ca_install(f->dir, NULL, f->err, sizeof f->err), 0);

    report = open_memstream(&rep, &replen);
    assert_int_equal(tls_ca_uninstall(f->dir, report, f->err, sizeof f->err), 0);
    fclose(report);
    assert_non_null(strstr(rep, "removed"));
    free(rep);
    assert_false(nss_has(db, nick));
    assert_int_not_equal(access(crtfile, F_OK), 0);

    /* without certutil the error says how to get it */
    const char *path = getenv("PATH");
    char *saved = strdup(path ? path : "");
    setenv("PATH", "/nonexistent", 1);
    int rc = tls_ca_install(f->dir, NULL, f->err, sizeof f->err);
    setenv("PATH", saved, 1);
    free(saved);
    assert_int_equal(rc, -ENOENT);
    assert_non_null(strstr(f->err, "apt-get install libnss3-tools"));
    unsetenv("SHOJI_NSSDB_GLOB");
    unsetenv("SHOJI_TRUST_DIR");
    unsetenv("SHOJI_SKIP_UPDATE_CA");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_creates_ecdsa_ca_with_private_key_mode_0600, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_with_rsa_and_days_gives_rsa3072_for_that_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_refuses_to_replace_a_ca_without_force, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_of_missing_ca_says_how_to_create_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_of_corrupt_or_missing_files_names_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_a_certificate_that_is_not_a_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_an_expired_ca_and_says_to_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_warns_when_the_key_is_readable_by_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_install_and_uninstall_touch_trust_dir_and_nss_database, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
