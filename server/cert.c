/* cert: see cert.h. */
#include "cert.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

#define CERT_MAX_PEM (256 * 1024)

int cert_fingerprint(const char *pem, char fp[CERT_FP_LEN], char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x)
        return util_err(err, errlen, -EINVAL, "not a PEM certificate");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = X509_digest(x, EVP_sha256(), md, &n);
    X509_free(x);
    if (!ok || n != 32)
        return util_err(err, errlen, -EIO, "cannot hash the certificate");
    for (unsigned i = 0; i < n; i++)
        snprintf(fp + i * 3, CERT_FP_LEN - i * 3, "%02X%s", md[i], i + 1 < n ? ":" : "");
    return 0;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e)
        return -1;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

static char *bio_text(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        memcpy(s, p, (size_t)n);
        s[n] = '\0';
    }
    return s;
}

/* Builds a self-signed certificate for CN=shoji-server, SAN localhost and
 * the loopback addresses plus this host's name, valid 10 years. */
static int make_self_signed(char **cert_pem, char **key_pem)
{
    int rc = -1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *bc = BIO_new(BIO_s_mem()), *bk = BIO_new(BIO_s_mem());
    char host[256] = "localhost", san[512];
    if (!k || !x || !bc || !bk)
        goto out;
    gethostname(host, sizeof host - 1);
    snprintf(san, sizeof san, "DNS:localhost,DNS:%s,IP:127.0.0.1,IP:::1", host);
    unsigned char serial[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(serial, 1, sizeof serial, f) != sizeof serial) {
        if (f)
            fclose(f);
        goto out;
    }
    fclose(f);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) {
        BN_free(bn);
        goto out;
    }
    BN_free(bn);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"shoji-server",
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, k);
    if (add_ext(x, NID_subject_alt_name, san) < 0 ||
        add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, NID_ext_key_usage, "serverAuth") < 0)
        goto out;
    if (!X509_sign(x, k, EVP_sha256()))
        goto out;
    if (!PEM_write_bio_X509(bc, x) || !PEM_write_bio_PrivateKey(bk, k, NULL, NULL, 0, NULL, NULL))
        goto out;
    *cert_pem = bio_text(bc);
    *key_pem = bio_text(bk);
    rc = (*cert_pem && *key_pem) ? 0 : -1;
out:
    BIO_free(bc);
    BIO_free(bk);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

static int load_pair(const char *cp, const char *kp, struct cert_pem *out, char *err,
                     size_t errlen)
{
    size_t n;
    int rc = util_read_file(cp, CERT_MAX_PEM, &out->cert, &n, err, errlen);
    if (rc == 0)
        rc = util_read_file(kp, CERT_MAX_PEM, &out->key, &n, err, errlen);
    if (rc == 0 && cert_fingerprint(out->cert, out->fingerprint, err, errlen) < 0)
        rc = util_err(err, errlen, -EINVAL, "%s: not a PEM certificate", cp);
    if (rc == 0 && !strstr(out->key, "PRIVATE KEY-----"))
        rc = util_err(err, errlen, -EINVAL, "%s: not a PEM private key", kp);
    return rc;
}

int cert_setup(const char *cert_path, const char *key_path, const char *data_dir,
               struct cert_pem *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if ((cert_path == NULL) != (key_path == NULL))
        return util_err(err, errlen, -EINVAL, "--tls-cert and --tls-key go together: give both or neither");
    if (cert_path)
        return load_pair(cert_path, key_path, out, err, errlen);
    char cp[4096], kp[4096];
    snprintf(cp, sizeof cp, "%s/server.crt", data_dir);
    snprintf(kp, sizeof kp, "%s/server.key", data_dir);
    if (access(cp, F_OK) == 0 || access(kp, F_OK) == 0)
        return load_pair(cp, kp, out, err, errlen);
    int rc = util_mkdirs(data_dir, 0700, err, errlen);
    if (rc < 0)
        return rc;
    if (make_self_signed(&out->cert, &out->key) < 0) {
        cert_free(out);
        return util_err(err, errlen, -EIO, "cannot create a self-signed certificate (OpenSSL failed)");
    }
    rc = util_write_file_atomic(kp, out->key, strlen(out->key), 0600, err, errlen);
    if (rc == 0)
        rc = util_write_file_atomic(cp, out->cert, strlen(out->cert), 0644, err, errlen);
    if (rc == 0)
        rc = cert_fingerprint(out->cert, out->fingerprint, err, errlen);
    if (rc < 0) {
        cert_free(out);
        return rc;
    }
    out->created = 1;
    return 0;
}

void cert_free(struct cert_pem *c)
{
    free(c->cert);
    if (c->key) {
        memset(c->key, 0, strlen(c->key));
        free(c->key);
    }
    c->cert = c->key = NULL;
}
