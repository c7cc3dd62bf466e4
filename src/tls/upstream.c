/* tls/upstream: see upstream.h.
 *
 * Verification runs inside the handshake (SSL_VERIFY_NONE only stops a
 * failure from aborting it), so SSL_get_verify_result holds the first
 * problem OpenSSL found, including the host name check set up by
 * tls_upstream_prepare. Client sessions that verified are remembered per
 * host in a small direct-mapped table hung off the SSL_CTX, so a second
 * connection to the same origin resumes (keeping its verify result).
 * A handshake can also be made to stop as soon as the origin's certificate
 * is in (tls_upstream_pause_at_cert), so that the caller starts on it
 * while its verification and the rest of the origin's flight wait. */
#include "tls/upstream.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/mint.h"
#include "util/util.h"

#define SESS_SLOTS 512

struct sess_slot {
    char host[256];
    SSL_SESSION *sess;
};

struct sess_cache {
    pthread_mutex_t mu;
    struct sess_slot slots[SESS_SLOTS];
};

static int g_sess_idx = -1;
static int g_pause_idx = -1;   /* SSL ex data: an enum pause */
static pthread_once_t g_sess_once = PTHREAD_ONCE_INIT;

enum pause { PAUSE_OFF, PAUSE_ARMED, PAUSE_HELD };

static void sess_cache_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                            long argl, void *argp)
{
    struct sess_cache *c = ptr;
    if (!c)
        return;
    for (size_t i = 0; i < SESS_SLOTS; i++)
        SSL_SESSION_free(c->slots[i].sess);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void sess_index_init(void)
{
    g_sess_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sess_cache_free);
    g_pause_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static size_t host_slot(const char *host)
{
    uint32_t h = 2166136261u;       /* FNV-1a */
    for (; *host; host++)
        h = (h ^ (unsigned char)*host) * 16777619u;
    return h % SESS_SLOTS;
}

/* The host an SSL was prepared for: its SNI, else the IP it must match. */
static bool ssl_host(SSL *ssl, char *out, size_t cap)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sni)
        return util_strlcpy(out, sni, cap);
    char *ip = X509_VERIFY_PARAM_get1_ip_asc(SSL_get0_param(ssl));
    bool ok = ip && util_strlcpy(out, ip, cap);
    OPENSSL_free(ip);
    return ok;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct sess_cache *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_sess_idx);
    char host[256];
    /* A copy: OpenSSL marks the original unresumable when the connection
     * ends without close_notify, which origins and our own teardown often
     * do; the copy keeps its verify result and peer chain. */
    /* Only verified sessions are kept: a failure must be seen afresh on
     * the next connection, not replayed from a resumed session. */
    if (!c || SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    SSL_SESSION *copy = ssl_host(ssl, host, sizeof host) ? SSL_SESSION_dup(sess) : NULL;
    if (!copy)
        return 0;
    struct sess_slot *s = &c->slots[host_slot(host)];
    pthread_mutex_lock(&c->mu);
    SSL_SESSION_free(s->sess);
    s->sess = copy;
    memcpy(s->host, host, sizeof host);
    pthread_mutex_unlock(&c->mu);
    return 0;                       /* OpenSSL keeps its own reference */
}

static void sess_resume(SSL *ssl, const char *host)
{
    struct sess_cache *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_sess_idx);
    if (!c)
        return;
    struct sess_slot *s = &c->slots[host_slot(host)];
    SSL_SESSION *sess = NULL;
    pthread_mutex_lock(&c->mu);
    if (s->sess && strcmp(s->host, host) == 0 && SSL_SESSION_is_resumable(s->sess)) {
        sess = s->sess;
        SSL_SESSION_up_ref(sess);
    }
    pthread_mutex_unlock(&c->mu);
    if (sess) {
        SSL_set_session(ssl, sess);
        SSL_SESSION_free(sess);
    }
}

static SSL_CTX *ctx_fail(SSL_CTX *ctx, char *err, size_t errlen, const char *what)
{
    char why[256];
    ERR_error_string_n(ERR_peek_last_error(), why, sizeof why);
    ERR_clear_error();
    util_err(err, errlen, -EIO, "%s: %s", what, why);
    SSL_CTX_free(ctx);
    return NULL;
}

/* True if `dir` holds OpenSSL hash links ("1a2b3c4d.0"), as Debian's
 * update-ca-certificates makes for every certificate of the bundle. */
static int dir_has_hash_links(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    for (int n = 0; !found && n < 100000 && (e = readdir(d)); n++) {
        const char *s = e->d_name;
        int hex = 0;
        while (hex < 8 && ((s[hex] >= '0' && s[hex] <= '9') || (s[hex] >= 'a' && s[hex] <= 'f')))
            hex++;
        found = hex == 8 && s[8] == '.' && s[9] >= '0' && s[9] <= '9';
    }
    closedir(d);
    return found;
}

/* The system trust store. When the default certificate directory is hashed
 * (Debian), only a directory lookup is installed: a CA certificate is read
 * when a chain first needs it and then stays cached in the store, instead
 * of parsing the whole bundle at start (146 certificates, 0.86 MiB of heap
 * on Debian 12). With SSL_CERT_FILE or SSL_CERT_DIR set, or no hash links,
 * OpenSSL's defaults (bundle file + directory) as before. */
static int load_system_store(SSL_CTX *ctx)
{
    if (getenv(X509_get_default_cert_file_env()) || getenv(X509_get_default_cert_dir_env()) ||
        !dir_has_hash_links(X509_get_default_cert_dir()))
        return SSL_CTX_set_default_verify_paths(ctx);
    X509_LOOKUP *lu = X509_STORE_add_lookup(SSL_CTX_get_cert_store(ctx), X509_LOOKUP_hash_dir());
    return lu && X509_LOOKUP_add_dir(lu, X509_get_default_cert_dir(), X509_FILETYPE_PEM);
}

/* ---- pausing at the origin's certificate ---------------------------------
 *
 * OpenSSL calls this for every certificate an origin sends, whatever the
 * verify mode. Armed, the first call only asks OpenSSL to stop there
 * (SSL_set_retry_verify; OpenSSL 3.0.2+) and returns: the caller gets the
 * certificate at once. When the handshake goes on, OpenSSL calls it again
 * and the chain is verified then, as it is without a pause (the store, the
 * dates, the host name set by tls_upstream_prepare). */
static enum pause pause_get(SSL *ssl)
{
    return ssl && g_pause_idx >= 0 ? (enum pause)(uintptr_t)SSL_get_ex_data(ssl, g_pause_idx)
                                   : PAUSE_OFF;
}

static void pause_set(SSL *ssl, enum pause st)
{
    SSL_set_ex_data(ssl, g_pause_idx, (void *)(uintptr_t)st);
}

static int cert_verify_cb(X509_STORE_CTX *xs, void *arg)
{
    (void)arg;
    int idx = SSL_get_ex_data_X509_STORE_CTX_idx();
    SSL *ssl = idx >= 0 ? X509_STORE_CTX_get_ex_data(xs, idx) : NULL;
    enum pause st = pause_get(ssl);
    if (st == PAUSE_ARMED && SSL_set_retry_verify(ssl)) {
        pause_set(ssl, PAUSE_HELD);
        return 1;   /* only a positive return makes OpenSSL stop */
    }
    if (st != PAUSE_OFF)
        pause_set(ssl, PAUSE_OFF);
    return X509_verify_cert(xs);
}

/* At the pause, only the host name is checked: 1 when the certificate
 * names the host (or IP) tls_upstream_prepare set. */
static bool names_host(SSL *ssl, X509 *cert)
{
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    const char *host = X509_VERIFY_PARAM_get0_host(p, 0);
    if (host)
        return X509_check_host(cert, host, 0, X509_VERIFY_PARAM_get_hostflags(p), NULL) == 1;
    char *ip = X509_VERIFY_PARAM_get1_ip_asc(p);
    bool ok = !ip || X509_check_ip_asc(cert, ip, 0) == 1;
    OPENSSL_free(ip);
    return ok;
}

int tls_upstream_pause_at_cert(SSL *ssl)
{
    if (!ssl || g_pause_idx < 0)
        return -EINVAL;
    pause_set(ssl, PAUSE_ARMED);
    return 0;
}

X509 *tls_upstream_peer_cert(SSL *ssl)
{
    if (!ssl)
        return NULL;
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (cert)
        return cert;
    /* During a pause OpenSSL has not set the session's peer yet; the chain
     * it received (leaf first) is there. */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    return chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
}

/* TLS 1.3 suites, AES-128-GCM first (as browsers and Mozilla's server
 * guidelines order them): its SHA-256 runs on the CPU's SHA extensions
 * where AES-256-GCM's SHA-384 does not, which makes every key derivation
 * and transcript hash of a handshake cheaper. All three stay offered. */
#define TLS_TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"

SSL_CTX *tls_upstream_ctx_new(const char *extra_ca_file, char *err, size_t errlen)
{
    static const unsigned char alpn[] = "\x08http/1.1";
    pthread_once(&g_sess_once, sess_index_init);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return ctx_fail(NULL, err, errlen, "cannot create a TLS client context");
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        return ctx_fail(ctx, err, errlen, "cannot require TLS 1.2");
    if (!load_system_store(ctx))
        return ctx_fail(ctx, err, errlen, "cannot load the system trust store");
    if (extra_ca_file && !SSL_CTX_load_verify_locations(ctx, extra_ca_file, NULL)) {
        char what[600];
        snprintf(what, sizeof what, "cannot load the CA certificates in %s (PEM expected)",
                 extra_ca_file);
        return ctx_fail(ctx, err, errlen, what);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, NULL);
    if (!SSL_CTX_set_ciphersuites(ctx, TLS_TLS13_SUITES))
        return ctx_fail(ctx, err, errlen, "cannot set the TLS 1.3 cipher suites");
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0)
        return ctx_fail(ctx, err, errlen, "cannot set ALPN");
    struct sess_cache *c = calloc(1, sizeof *c);
    if (!c || g_sess_idx < 0 || !SSL_CTX_set_ex_data(ctx, g_sess_idx, c)) {
        free(c);
        return ctx_fail(ctx, err, errlen, "cannot create the session cache");
    }
    pthread_mutex_init(&c->mu, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    return ctx;
}

int tls_upstream_prepare(SSL *ssl, const char *host)
{
    char h[256];
    unsigned char ip[16];
    if (!ssl || !host)
        return -EINVAL;
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof h)
        return -EINVAL;
    memcpy(h, host, len);
    h[len] = '\0';
    util_lower(h);
    if (inet_pton(AF_INET, h, ip) == 1 || inet_pton(AF_INET6, h, ip) == 1) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), h))
            return -EINVAL;
    } else {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (!SSL_set_tlsext_host_name(ssl, h) || !SSL_set1_host(ssl, h)) {
            ERR_clear_error();
            return -EINVAL;
        }
    }
    sess_resume(ssl, h);
    return 0;
}

/* "name mismatch: the certificate is for a.example, b.example" */
static void mismatch_reason(X509 *cert, char *reason, size_t reasonlen)
{
    struct tls_names names;
    tls_names_from_cert(cert, &names);
    size_t o = (size_t)snprintf(reason, reasonlen, "name mismatch: the certificate is for ");
    if (names.n == 0 && o < reasonlen)
        snprintf(reason + o, reasonlen - o, "no host name");
    for (size_t i = 0; i < names.n && o < reasonlen; i++)
        o += (size_t)snprintf(reason + o, reasonlen - o, "%s%s", i ? ", " : "", names.names[i]);
}

static const char *verify_words(long vr)
{
    switch (vr) {
    case X509_V_ERR_CERT_HAS_EXPIRED: return "certificate has expired";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "certificate is not yet valid";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return "self-signed certificate";
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "self-signed certificate in the chain (untrusted root)";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        return "unknown issuer (unable to get local issuer certificate)";
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return "unknown issuer (unable to verify the first certificate)";
    case X509_V_ERR_CERT_REVOKED: return "certificate has been revoked";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return "certificate signature is invalid";
    case X509_V_ERR_INVALID_CA: return "an issuer in the chain is not a CA";
    case X509_V_ERR_INVALID_PURPOSE: return "certificate is not valid for a TLS server";
    case X509_V_ERR_EE_KEY_TOO_SMALL: return "certificate key is too small";
    case X509_V_ERR_CA_KEY_TOO_SMALL: return "issuer key is too small";
    case X509_V_ERR_CA_MD_TOO_WEAK: return "certificate uses a weak signature algorithm";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: return "certificate chain is too long";
    default: return NULL;
    }
}

int tls_upstream_verify_result(SSL *ssl, char *reason, size_t reasonlen)
{
    char dummy[8];
    if (!reason || reasonlen == 0) {
        reason = dummy;
        reasonlen = sizeof dummy;
    }
    X509 *cert = tls_upstream_peer_cert(ssl);
    if (!cert) {
        snprintf(reason, reasonlen, "the server sent no certificate");
        return -ENOENT;
    }
    long vr = SSL_get_verify_result(ssl);
    if (pause_get(ssl) == PAUSE_HELD) {   /* the chain is verified after the pause */
        if (names_host(ssl, cert)) {
            snprintf(reason, reasonlen, "name ok, chain not verified yet");
            return 1;
        }
        vr = X509_V_ERR_HOSTNAME_MISMATCH;
    }
    if (vr == X509_V_OK) {
        snprintf(reason, reasonlen, "ok");
        return 0;
    }
    const char *words = verify_words(vr);
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
        mismatch_reason(cert, reason, reasonlen);
    else if (words)
        snprintf(reason, reasonlen, "%s", words);
    else
        snprintf(reason, reasonlen, "%s", X509_verify_cert_error_string(vr));
    return -EACCES;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (n == 0 || n > inlen - i - 1)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

SSL_CTX *tls_server_ctx_new(char *err, size_t errlen)
{
    static const unsigned char sid_ctx[] = "shoji";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return ctx_fail(NULL, err, errlen, "cannot create a TLS server context");
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        return ctx_fail(ctx, err, errlen, "cannot require TLS 1.2");
    /* Sessions stay here, in a bounded cache, and a client's ticket (TLS
     * 1.3) or session id (TLS 1.2) only names one: stateless tickets cost
     * every new connection four ASN.1 passes over the session, an AES
     * encryption and an HMAC (about 4% of its CPU), and their key is random
     * per process anyway, so they would not outlive a restart either.
     * OpenSSL uses a TLS 1.3 stateful ticket once; the resumed connection
     * gets a fresh one. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_TICKET);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if (!SSL_CTX_set_ciphersuites(ctx, TLS_TLS13_SUITES))
        return ctx_fail(ctx, err, errlen, "cannot set the TLS 1.3 cipher suites");
    /* One TLS 1.3 ticket per handshake, not OpenSSL's two: a client resumes
     * with one (browsers keep one per site), and each ticket costs a key
     * derivation and a record on every new connection. */
    SSL_CTX_set_num_tickets(ctx, 1);
    /* A bounded cache (the sessions of 1,024 recent handshakes), not
     * OpenSSL's 20,480 sessions held in memory. */
    SSL_CTX_sess_set_cache_size(ctx, 1024);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
    /* The chain is the leaf alone: the CA it chains to is a trust anchor of
     * every client that accepts the leaf at all (RFC 8446 4.4.2 lets a
     * server leave it out), and sending it made each client parse a second
     * certificate on every full handshake (OpenSSL 3.0: ~1.5 M instructions;
     * new decoded connections/s rose from 0.80x to 0.99x of direct without
     * it, docs/PERFORMANCE.md). */
    return ctx;
}

void tls_server_ssl_free(SSL *ssl)
{
    if (!ssl)
        return;
    if (SSL_is_init_finished(ssl))
        SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(ssl);
}
