/* tls/ca: see ca.h. Creating and loading the local CA; the trust-store
 * installation is at the end of this file. */
#include "tls/ca.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "util/log.h"
#include "util/util.h"

#define CA_FILE_MAX (1024 * 1024)

/* The last OpenSSL error as text (and clears the queue). */
static const char *ossl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        util_strlcpy(buf, "unknown OpenSSL error", cap);
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static int ca_paths(const char *dir, char *crt, char *key, size_t cap, char *err, size_t errlen)
{
    if (snprintf(crt, cap, "%s/ca.crt", dir) >= (int)cap ||
        snprintf(key, cap, "%s/ca.key", dir) >= (int)cap)
        return util_err(err, errlen, -ENAMETOOLONG, "state directory path too long: %s", dir);
    return 0;
}

void tls_cert_fingerprint(X509 *cert, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!out || outlen == 0)
        return;
    out[0] = '\0';
    if (!cert || !X509_digest(cert, EVP_sha256(), md, &mdlen))
        return;
    size_t o = 0;
    for (unsigned int i = 0; i < mdlen && o + 3 <= outlen; i++) {
        out[o++] = hex[md[i] >> 4];
        out[o++] = hex[md[i] & 15];
        if (i + 1 < mdlen && o + 1 < outlen)
            out[o++] = ':';
    }
    out[o < outlen ? o : outlen - 1] = '\0';
}

/* A random positive 128-bit serial number, set on `x`. */
int tls_random_serial(X509 *x)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return -EIO;
    b[0] &= 0x7f;
    b[0] |= 0x01;               /* positive, non-zero, always 16 bytes */
    BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL);
    if (!bn)
        return -ENOMEM;
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    if (!ai)
        return -ENOMEM;
    int ok = X509_set_serialNumber(x, ai);
    ASN1_INTEGER_free(ai);
    return ok ? 0 : -ENOMEM;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext)
        return -EINVAL;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -ENOMEM;
}

static int ca_subject(X509_NAME *name)
{
    char host[48] = "localhost", cn[80];
    if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
        util_strlcpy(host, "localhost", sizeof host);
    host[sizeof host - 1] = '\0';   /* CN must stay within 64 characters */
    snprintf(cn, sizeof cn, "shoji local CA (%s)", host);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"shoji", -1, -1, 0))
        return -EINVAL;
    return 0;
}

static X509 *ca_make_cert(EVP_PKEY *key, int days)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509V3_CTX ctx;
    int ok = X509_set_version(x, X509_VERSION_3) && tls_random_serial(x) == 0 &&
             ca_subject(X509_get_subject_name(x)) == 0 &&
             X509_set_issuer_name(x, X509_get_subject_name(x)) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400L) &&
             X509_set_pubkey(x, key);
    if (ok) {
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        ok = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
             add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
             add_ext(x, &ctx, NID_subject_key_identifier, "hash") == 0 &&
             add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") == 0 &&
             X509_sign(x, key, EVP_sha256()) > 0;
    }
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* PEM-encodes the key or the certificate into a heap buffer (*out, *outlen);
 * the caller cleanses and frees it. */
static int pem_encode(EVP_PKEY *key, X509 *cert, char **out, size_t *outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return -ENOMEM;
    int ok = key ? PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_X509(b, cert);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    *out = NULL;
    if (ok && n > 0 && (*out = malloc((size_t)n)) != NULL) {
        memcpy(*out, p, (size_t)n);
        *outlen = (size_t)n;
    }
    OPENSSL_cleanse(p, n > 0 ? (size_t)n : 0);
    BIO_free(b);
    return *out ? 0 : -ENOMEM;
}

int tls_write_pem(const char *path, EVP_PKEY *key, X509 *cert, int mode, char *err, size_t errlen)
{
    char *pem = NULL;
    size_t n = 0;
    if (pem_encode(key, cert, &pem, &n) < 0)
        return util_err(err, errlen, -ENOMEM, "cannot encode %s", path);
    int rc = util_write_file_atomic(path, pem, n, mode, err, errlen);
    OPENSSL_cleanse(pem, n);
    free(pem);
    return rc;
}

static int ca_refuse_existing(const char *dir, const char *crt, const char *key,
                              char *err, size_t errlen)
{
    struct stat st;
    if (stat(crt, &st) == 0 || stat(key, &st) == 0)
        return util_err(err, errlen, -EEXIST,
                        "a CA already exists in %s; use --force to replace it (browsers and "
                        "systems that trust the old CA must then be given the new one)", dir);
    return 0;
}

int tls_ca_init(const char *state_dir, const struct tls_ca_init_opts *opts,
                char *err, size_t errlen)
{
    char crt[PATH_MAX], keyp[PATH_MAX], why[256];
    struct tls_ca_init_opts o = { .rsa = false, .force = false, .days = 3650 };
    if (opts)
        o = *opts;
    if (o.days == 0)
        o.days = 3650;
    if (o.days < 1 || o.days > 36500)
        return util_err(err, errlen, -EINVAL, "--days must be between 1 and 36500 (got %d)", o.days);
    int rc = ca_paths(state_dir, crt, keyp, sizeof crt, err, errlen);
    if (rc < 0)
        return rc;
    if (!o.force && (rc = ca_refuse_existing(state_dir, crt, keyp, err, errlen)) < 0)
        return rc;
    if ((rc = util_mkdirs(state_dir, 0700, err, errlen)) < 0)
        return rc;
    EVP_PKEY *key = o.rsa ? EVP_RSA_gen(3072) : EVP_EC_gen("P-256");
    if (!key)
        return util_err(err, errlen, -EIO, "cannot generate the CA key: %s",
                        ossl_reason(why, sizeof why));
    X509 *cert = ca_make_cert(key, o.days);
    if (!cert) {
        EVP_PKEY_free(key);
        return util_err(err, errlen, -EIO, "cannot create the CA certificate: %s",
                        ossl_reason(why, sizeof why));
    }
    rc = tls_write_pem(keyp, key, NULL, 0600, err, errlen);
    if (rc == 0)
        rc = tls_write_pem(crt, NULL, cert, 0644, err, errlen);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* Reads one PEM object (certificate when `key` is NULL) from `path`. */
static int read_pem(const char *path, X509 **cert, EVP_PKEY **key, char *err, size_t errlen)
{
    char *data = NULL, why[256];
    size_t n = 0;
    int rc = util_read_file(path, CA_FILE_MAX, &data, &n, err, errlen);
    if (rc < 0)
        return rc;
    BIO *b = BIO_new_mem_buf(data, (int)n);
    if (b && cert)
        *cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    else if (b)
        *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    OPENSSL_cleanse(data, n);
    free(data);
    if ((cert && !*cert) || (key && !*key))
        return util_err(err, errlen, -EBADMSG, "%s is not a valid PEM %s (corrupt?): %s", path,
                        cert ? "certificate" : "private key", ossl_reason(why, sizeof why));
    return 0;
}

static void warn_key_mode(const char *keyp)
{
    struct stat st;
    if (stat(keyp, &st) == 0 && (st.st_mode & 077) != 0)
        log_warn("%s is readable by others (mode %04o): run `chmod 600 %s`", keyp,
                 (unsigned)(st.st_mode & 07777), keyp);
}

static int ca_check(const char *dir, const char *crt, const struct tls_ca *ca,
                    char *err, size_t errlen)
{
    if (EVP_PKEY_eq(X509_get0_pubkey(ca->cert), ca->key) != 1)
        return util_err(err, errlen, -EINVAL,
                        "%s/ca.key does not belong to %s (the files come from different CAs); "
                        "restore the matching pair or run `shoji ca init --force`", dir, crt);
    if (X509_check_ca(ca->cert) == 0)
        return util_err(err, errlen, -EINVAL,
                        "%s is not a CA certificate (basicConstraints CA:TRUE missing); "
                        "run `shoji ca init --force --state-dir %s`", crt, dir);
    if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) < 0)
        return util_err(err, errlen, -EKEYEXPIRED,
                        "the CA in %s has expired; create a new one with "
                        "`shoji ca init --force --state-dir %s` and install it again", crt, dir);
    if (X509_cmp_current_time(X509_get0_notBefore(ca->cert)) > 0)
        log_warn("the CA in %s is not valid yet: is the clock right?", crt);
    return 0;
}

int tls_ca_load(const char *state_dir, struct tls_ca *ca, char *err, size_t errlen)
{
    char crt[PATH_MAX], keyp[PATH_MAX];
    memset(ca, 0, sizeof *ca);
    int rc = ca_paths(state_dir, crt, keyp, sizeof crt, err, errlen);
    if (rc < 0)
        return rc;
    if (access(crt, F_OK) != 0 && access(keyp, F_OK) != 0)
        return util_err(err, errlen, -ENOENT,
                        "no CA in %s: create one with `shoji ca init --state-dir %s`",
                        state_dir, state_dir);
    if ((rc = read_pem(crt, &ca->cert, NULL, err, errlen)) < 0 ||
        (rc = read_pem(keyp, NULL, &ca->key, err, errlen)) < 0 ||
        (rc = ca_check(state_dir, crt, ca, err, errlen)) < 0) {
        tls_ca_free(ca);
        return rc;
    }
    warn_key_mode(keyp);
    tls_cert_fingerprint(ca->cert, ca->fingerprint, sizeof ca->fingerprint);
    return 0;
}

void tls_ca_free(struct tls_ca *ca)
{
    if (!ca)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    ca->cert = NULL;
    ca->key = NULL;
}

void tls_ca_fp8(const struct tls_ca *ca, char out[9])
{
    size_t o = 0;
    for (const char *p = ca->fingerprint; *p && o < 8; p++)
        if (*p != ':')
            out[o++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    out[o] = '\0';
}

/* ---- installation into trust stores ------------------------------------ */

/* Runs argv[0] (searched in PATH) with stdout sent to stderr, as `uid`/`gid`
 * when we are root and they differ (so an NSS database in a home directory
 * keeps its owner); `quiet` sends its output to /dev/null. Returns the exit status, 127 when the program is
 * missing, or a negative code. */
static int run_prog(char *const argv[], uid_t uid, gid_t gid, bool quiet)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        if (quiet && devnull >= 0) {
            dup2(devnull, STDOUT_FILENO);
            dup2(devnull, STDERR_FILENO);
        }
        if (geteuid() == 0 && uid != 0 && (setgid(gid) != 0 || setuid(uid) != 0))
            _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static bool prog_in_path(const char *name)
{
    const char *path = getenv("PATH");
    char dir[PATH_MAX];
    if (!path || !*path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && snprintf(dir, sizeof dir, "%.*s/%s", (int)n, path, name) < (int)sizeof dir &&
            access(dir, X_OK) == 0)
            return true;
        path += n + (path[n] == ':');
    }
    return false;
}

static void report_line(FILE *report, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_line(FILE *report, const char *fmt, ...)
{
    if (!report)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(report, fmt, ap);
    va_end(ap);
    fputc('\n', report);
    fflush(report);
}

static const char *trust_dir(void)
{
    const char *d = getenv("SHOJI_TRUST_DIR");
    return d && *d ? d : "/usr/local/share/ca-certificates";
}

static int update_ca_certificates(FILE *report)
{
    const char *skip = getenv("SHOJI_SKIP_UPDATE_CA");
    if (skip && *skip && strcmp(skip, "0") != 0) {
        report_line(report, "  update-ca-certificates: skipped (SHOJI_SKIP_UPDATE_CA is set)");
        return 0;
    }
    char *argv[] = { "update-ca-certificates", NULL };
    int st = run_prog(argv, 0, 0, false);
    report_line(report, "  update-ca-certificates: %s", st == 0 ? "ok"
                : st == 127 ? "not found (apt-get install ca-certificates)" : "failed");
    return st == 0 ? 0 : -EIO;
}

/* The system store: copy (install) or remove (uninstall) the .crt file. */
static int system_store(const char *crt, const char *fp8, bool install, FILE *report,
                        char *err, size_t errlen)
{
    char dst[PATH_MAX];
    if (snprintf(dst, sizeof dst, "%s/shoji-%s.crt", trust_dir(), fp8) >= (int)sizeof dst)
        return util_err(err, errlen, -ENAMETOOLONG, "trust directory path too long");
    if (install) {
        char *data = NULL;
        size_t n = 0;
        int rc = util_read_file(crt, CA_FILE_MAX, &data, &n, err, errlen);
        if (rc == 0)
            rc = util_mkdirs(trust_dir(), 0755, err, errlen);
        if (rc == 0)
            rc = util_write_file_atomic(dst, data, n, 0644, err, errlen);
        free(data);
        if (rc < 0)
            return rc;
        report_line(report, "system trust store: installed %s", dst);
    } else if (unlink(dst) == 0) {
        report_line(report, "system trust store: removed %s", dst);
    } else if (errno == ENOENT) {
        report_line(report, "system trust store: %s was not installed", dst);
        return 0;
    } else {
        return util_err(err, errlen, -errno, "cannot remove %s: %s", dst, strerror(errno));
    }
    if (update_ca_certificates(report) < 0)
        return util_err(err, errlen, -EIO, "update-ca-certificates failed; run it by hand as root");
    return 0;
}

/* Patterns for NSS databases, colon-separated; SHOJI_NSSDB_GLOB overrides. */
static const char *nssdb_globs(void)
{
    const char *g = getenv("SHOJI_NSSDB_GLOB");
    return g ? g : "/root/.pki/nssdb:/home/*/.pki/nssdb:/etc/pki/nssdb:"
                   "/root/.mozilla/firefox/*:/home/*/.mozilla/firefox/*";
}

/* One NSS database: add or delete our certificate with certutil. */
static int nssdb_one(const char *dir, const char *crt, const char *nick, bool install,
                     FILE *report)
{
    char db[PATH_MAX + 8];
    struct stat st;
    snprintf(db, sizeof db, "sql:%s", dir);
    if (stat(dir, &st) != 0)
        return 0;
    char *add[] = { "certutil", "-d", db, "-A", "-t", "C,,", "-n", (char *)nick, "-i",
                    (char *)crt, NULL };
    char *del[] = { "certutil", "-d", db, "-D", "-n", (char *)nick, NULL };
    int rc = 0;
    if (!install) {
        /* delete every copy under our nickname (certutil removes one a time) */
        int n = 0;
        while (n < 16 && run_prog(del, st.st_uid, st.st_gid, true) == 0)
            n++;
        report_line(report, "NSS database %s: %s", dir, n ? "removed" : "was not installed");
        return 0;
    }
    rc = run_prog(add, st.st_uid, st.st_gid, false);
    report_line(report, "NSS database %s: %s", dir, rc == 0 ? "installed" : "certutil failed");
    return rc == 0 ? 0 : -EIO;
}

static int nss_stores(const char *crt, const char *fp8, bool install, FILE *report,
                      char *err, size_t errlen)
{
    char pat[PATH_MAX], nick[64], file[PATH_MAX + 16];
    const char *g = nssdb_globs();
    int found = 0, failed = 0;
    bool have_certutil = prog_in_path("certutil");
    snprintf(nick, sizeof nick, "shoji local CA %s", fp8);
    while (*g) {
        size_t n = strcspn(g, ":");
        snprintf(pat, sizeof pat, "%.*s", (int)UTIL_MIN(n, sizeof pat - 1), g);
        g += n + (g[n] == ':');
        glob_t gl;
        if (n == 0 || glob(pat, GLOB_NOSORT, NULL, &gl) != 0)
            continue;
        for (size_t i = 0; i < gl.gl_pathc; i++) {
            snprintf(file, sizeof file, "%s/cert9.db", gl.gl_pathv[i]);
            if (access(file, F_OK) != 0)
                continue;       /* no database here (or the old dbm format) */
            found++;
            if (!have_certutil)
                report_line(report, "NSS database %s: skipped, certutil is missing", gl.gl_pathv[i]);
            else if (nssdb_one(gl.gl_pathv[i], crt, nick, install, report) < 0)
                failed++;
        }
        globfree(&gl);
    }
    if (found == 0)
        report_line(report, "NSS databases: none found");
    if (found && !have_certutil)
        return util_err(err, errlen, -ENOENT, "certutil not found: install it with "
                        "`apt-get install libnss3-tools` and run this again");
    if (failed)
        return util_err(err, errlen, -EIO, "certutil failed for %d NSS database(s)", failed);
    return 0;
}

static int ca_trust(const char *state_dir, bool install, FILE *report, char *err, size_t errlen)
{
    struct tls_ca ca;
    char crt[PATH_MAX], keyp[PATH_MAX], fp8[9];
    int rc = ca_paths(state_dir, crt, keyp, sizeof crt, err, errlen);
    if (rc < 0)
        return rc;
    /* install needs a usable CA; uninstall only needs to know which one */
    memset(&ca, 0, sizeof ca);
    rc = install ? tls_ca_load(state_dir, &ca, err, errlen)
                 : read_pem(crt, &ca.cert, NULL, err, errlen);
    if (rc < 0)
        return rc;
    tls_cert_fingerprint(ca.cert, ca.fingerprint, sizeof ca.fingerprint);
    tls_ca_fp8(&ca, fp8);
    tls_ca_free(&ca);
    int rc1 = system_store(crt, fp8, install, report, err, errlen);
    char err2[UTIL_ERRLEN] = "";
    int rc2 = nss_stores(crt, fp8, install, report, err2, sizeof err2);
    if (rc1 == 0 && rc2 < 0)
        util_err(err, errlen, rc2, "%s", err2);
    return rc1 < 0 ? rc1 : rc2;
}

int tls_ca_install(const char *state_dir, FILE *report, char *err, size_t errlen)
{
    return ca_trust(state_dir, true, report, err, errlen);
}

int tls_ca_uninstall(const char *state_dir, FILE *report, char *err, size_t errlen)
{
    return ca_trust(state_dir, false, report, err, errlen);
}
