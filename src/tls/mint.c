/* tls/mint: see mint.h.
 *
 * Lookup order: memory (hash map + LRU list under one mutex; a hit costs a
 * SHA-256 of the names and a few pointer moves), then the disk cache
 * STATE/certs/<CA fp8>/<key>.pem, then minting. The cache key is the SHA-256
 * of the CN and the sorted, de-duplicated name list. Minting happens outside
 * the cache lock, so a slow mint never blocks hits; misses are serialized
 * per key stripe, so one host is minted once even when many connections
 * to it arrive at once. */
/* EVP_PKEY_get1_EC_KEY and friends are deprecated in OpenSSL 3 but are
 * the only way to a fast-encoding public key in 3.0 (see fast_keys). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "tls/mint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "util/log.h"
#include "util/util.h"

#define LEAF_DAYS 397
#define RENEW_BEFORE (24 * 3600)        /* re-mint when < 1 day is left */
#define LEAF_FILE_MAX (64 * 1024)

struct entry {
    unsigned char key[32];
    X509 *cert;
    time_t not_after;
    struct entry *hnext;                /* hash chain */
    struct entry *prev, *next;          /* LRU list, head = most recent */
};

struct wq_item {
    struct wq_item *next;
    X509 *cert;
    unsigned char key[32];              /* its memory-cache entry */
    char path[];
};

#define WQ_MAX 256                      /* pending disk writes; more are dropped */
#define MISS_STRIPES 16

struct tls_minter {
    X509 *ca_cert;
    EVP_PKEY *ca_key;
    EVP_PKEY *leaf_key;
    EVP_MD *sha256;                     /* fetched once: cheap cache keys */
    EVP_PKEY *leaf_pub;                 /* leaf key as a legacy key: see fast_keys */
    EVP_MD_CTX *sign_tmpl;              /* signing context, copied per mint */
    pthread_mutex_t sign_mu;
    /* disk writes happen on a writer thread, off the request path */
    pthread_t writer;
    bool writer_started, wq_stop, wq_busy;
    pthread_mutex_t wq_mu;
    pthread_cond_t wq_cv, wq_idle_cv;
    struct wq_item *wq_head, *wq_tail;
    size_t wq_len;
    time_t ca_not_after;
    char dir[PATH_MAX];                 /* STATE/certs/<fp8> */
    pthread_mutex_t mu;
    pthread_mutex_t miss_mu[MISS_STRIPES];
    struct entry **buckets;
    size_t nbuckets, count, cap;
    struct entry *head, *tail;
    struct tls_mint_stats stats;
};

/* ---- names ------------------------------------------------------------- */

static bool name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '*' || c == ':';
}

/* Adds `s` (len bytes) lower-cased to out->names unless it is empty, too
 * long, has odd characters, or is already there. */
static void names_add(struct tls_names *out, const char *s, size_t len)
{
    char tmp[256];
    if (len == 0 || len >= sizeof tmp || out->n >= UTIL_ARRAY_LEN(out->names))
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (!name_char_ok(c))
            return;
        tmp[i] = (char)c;
    }
    tmp[len] = '\0';
    for (size_t i = 0; i < out->n; i++)
        if (strcmp(out->names[i], tmp) == 0)
            return;
    memcpy(out->names[out->n++], tmp, len + 1);
}

static void names_add_ip(struct tls_names *out, const ASN1_OCTET_STRING *ip)
{
    char txt[INET6_ADDRSTRLEN];
    const unsigned char *p = ASN1_STRING_get0_data(ip);
    int len = ASN1_STRING_length(ip);
    if ((len == 4 && inet_ntop(AF_INET, p, txt, sizeof txt)) ||
        (len == 16 && inet_ntop(AF_INET6, p, txt, sizeof txt)))
        names_add(out, txt, strlen(txt));
}

/* The subject CN as printable ASCII into out->cn (empty if none/odd). */
static void cn_from_cert(X509 *x, struct tls_names *out)
{
    X509_NAME *subj = X509_get_subject_name(x);
    int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    ASN1_STRING *s = idx >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)) : NULL;
    unsigned char *utf8 = NULL;
    int len = s ? ASN1_STRING_to_UTF8(&utf8, s) : -1;
    if (len > 0 && (size_t)len < sizeof out->cn) {
        bool ok = true;
        for (int i = 0; i < len; i++)
            ok = ok && utf8[i] >= 0x20 && utf8[i] < 0x7f;
        if (ok) {
            memcpy(out->cn, utf8, (size_t)len);
            out->cn[len] = '\0';
            util_lower(out->cn);
        }
    }
    OPENSSL_free(utf8);
}

void tls_names_from_cert(X509 *upstream, struct tls_names *out)
{
    memset(out, 0, sizeof *out);
    if (!upstream)
        return;
    cn_from_cert(upstream, out);
    if (out->cn[0])
        names_add(out, out->cn, strlen(out->cn));
    GENERAL_NAMES *san = X509_get_ext_d2i(upstream, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; san && i < sk_GENERAL_NAME_num(san); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
        if (gn->type == GEN_DNS)
            names_add(out, (const char *)ASN1_STRING_get0_data(gn->d.dNSName),
                      (size_t)ASN1_STRING_length(gn->d.dNSName));
        else if (gn->type == GEN_IPADD)
            names_add_ip(out, gn->d.iPAddress);
    }
    GENERAL_NAMES_free(san);
    if (!out->cn[0] && out->n > 0)
        memcpy(out->cn, out->names[0], strlen(out->names[0]) + 1);
}

void tls_names_from_host(const char *host, struct tls_names *out)
{
    memset(out, 0, sizeof *out);
    if (!host)
        return;
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    names_add(out, host, len);
    if (out->n > 0)
        memcpy(out->cn, out->names[0], strlen(out->names[0]) + 1);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* SHA-256 over the CN and the sorted names, each followed by a NUL. */
static bool names_key(const struct tls_minter *m, const struct tls_names *names,
                      unsigned char key[32])
{
    const char *sorted[UTIL_ARRAY_LEN(names->names)];
    char buf[sizeof names->cn + sizeof names->names];
    size_t n = UTIL_MIN(names->n, UTIL_ARRAY_LEN(names->names)), o = 0, len;
    for (size_t i = 0; i < n; i++)
        sorted[i] = names->names[i];
    qsort(sorted, n, sizeof sorted[0], cmp_str);
    len = strnlen(names->cn, sizeof names->cn - 1);
    memcpy(buf, names->cn, len);
    buf[len] = '\0';
    o = len + 1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            continue;
        len = strnlen(sorted[i], sizeof names->names[0] - 1);
        memcpy(buf + o, sorted[i], len);
        buf[o + len] = '\0';
        o += len + 1;
    }
    return EVP_Digest(buf, o, key, NULL, m->sha256, NULL) == 1;
}

/* ---- in-memory LRU ----------------------------------------------------- */

static size_t bucket_of(const struct tls_minter *m, const unsigned char key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    return (size_t)(h & (m->nbuckets - 1));
}

static void lru_unlink(struct tls_minter *m, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        m->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct tls_minter *m, struct entry *e)
{
    e->prev = NULL;
    e->next = m->head;
    if (m->head)
        m->head->prev = e;
    m->head = e;
    if (!m->tail)
        m->tail = e;
}

static struct entry *map_find(struct tls_minter *m, const unsigned char key[32])
{
    for (struct entry *e = m->buckets[bucket_of(m, key)]; e; e = e->hnext)
        if (memcmp(e->key, key, 32) == 0)
            return e;
    return NULL;
}

static void map_remove(struct tls_minter *m, struct entry *e)
{
    struct entry **pp = &m->buckets[bucket_of(m, e->key)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(m, e);
    X509_free(e->cert);
    free(e);
    m->count--;
}

/* Caller holds m->mu. Takes over one reference on `cert`. */
static void map_insert(struct tls_minter *m, const unsigned char key[32], X509 *cert,
                       time_t not_after)
{
    struct entry *e = map_find(m, key);
    if (e) {
        X509_free(e->cert);
        e->cert = cert;
        e->not_after = not_after;
        lru_unlink(m, e);
        lru_push_front(m, e);
        return;
    }
    if (m->count >= m->cap && m->tail)
        map_remove(m, m->tail);
    e = calloc(1, sizeof *e);
    if (!e) {
        X509_free(cert);        /* not cached; the caller has its own ref */
        return;
    }
    memcpy(e->key, key, 32);
    e->cert = cert;
    e->not_after = not_after;
    size_t b = bucket_of(m, key);
    e->hnext = m->buckets[b];
    m->buckets[b] = e;
    lru_push_front(m, e);
    m->count++;
}

static X509 *mem_lookup(struct tls_minter *m, const unsigned char key[32], time_t now)
{
    X509 *x = NULL;
    pthread_mutex_lock(&m->mu);
    struct entry *e = map_find(m, key);
    if (e && e->not_after - now > RENEW_BEFORE) {
        lru_unlink(m, e);
        lru_push_front(m, e);
        X509_up_ref(e->cert);
        x = e->cert;
        m->stats.mem_hits++;
    }
    pthread_mutex_unlock(&m->mu);
    return x;
}

/* ---- disk cache -------------------------------------------------------- */

static time_t asn1_to_time(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

static void cache_path(const struct tls_minter *m, const unsigned char key[32], char *out,
                       size_t cap)
{
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    snprintf(out, cap, "%s/%s.pem", m->dir, hex);
}

/* A cached leaf is reused only when our CA signed it, it carries our leaf
 * key, and it stays valid for more than a day. */
static X509 *disk_lookup(struct tls_minter *m, const char *path, time_t now, time_t *not_after)
{
    char *data = NULL;
    size_t n = 0;
    if (util_read_file(path, LEAF_FILE_MAX, &data, &n, NULL, 0) < 0)
        return NULL;
    BIO *b = BIO_new_mem_buf(data, (int)n);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    free(data);
    ERR_clear_error();
    if (!x)
        return NULL;
    *not_after = asn1_to_time(X509_get0_notAfter(x));
    if (*not_after - now <= RENEW_BEFORE || X509_cmp_current_time(X509_get0_notBefore(x)) > 0 ||
        EVP_PKEY_eq(X509_get0_pubkey(x), m->leaf_key) != 1 ||
        X509_verify(x, m->ca_key) != 1) {
        ERR_clear_error();
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Atomic without fsync: the file is a cache, so after a crash a missing or
 * torn file only means one more mint (a torn file fails to parse). A
 * per-process counter keeps concurrent writers off each other's temp file. */
static void disk_store(const char *path, X509 *x)
{
    static atomic_ulong seq;
    char tmp[PATH_MAX + 160];
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long n = b && PEM_write_bio_X509(b, x) ? BIO_get_mem_data(b, &pem) : 0;
    if (snprintf(tmp, sizeof tmp, "%s.%ld.%lu.tmp", path, (long)getpid(),
                 (unsigned long)atomic_fetch_add(&seq, 1)) >= (int)sizeof tmp)
        n = 0;
    int fd = n > 0 ? open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644) : -1;
    if (fd >= 0) {
        bool ok = write(fd, pem, (size_t)n) == (ssize_t)n;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, path) != 0) {
            log_warn("cannot write leaf cache %s: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    BIO_free(b);
}

/* A certificate signed in this process is encoded afresh by every i2d_X509,
 * and every handshake sends the leaf (~55,000 instructions each time);
 * parsed back from its DER, it keeps that encoding, as one read from the
 * disk cache does. The parse costs ~1.5 M instructions (OpenSSL 3.0 decodes
 * the public key through its provider decoders), so it is done on the
 * writer thread, not on the first connection's path. NULL on failure. */
static X509 *parsed_back(X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    const unsigned char *p = der;
    X509 *y = n > 0 ? d2i_X509(NULL, &p, n) : NULL;
    OPENSSL_free(der);
    if (!y)
        ERR_clear_error();
    return y;
}

/* The memory cache's entry for `key` still holds `old`: it now holds `y`
 * (same certificate, encoding kept). Takes over the reference on `y`. */
static void swap_parsed(struct tls_minter *m, const unsigned char key[32], X509 *old, X509 *y)
{
    pthread_mutex_lock(&m->mu);
    struct entry *e = map_find(m, key);
    if (e && e->cert == old) {
        e->cert = y;
        y = old;                        /* the entry's reference on old goes */
    }
    pthread_mutex_unlock(&m->mu);
    X509_free(y);
}

/* A newly minted leaf, once off the request path: kept parsed back in
 * memory, and written to the disk cache. */
static void store_minted(struct tls_minter *m, const char *path, const unsigned char key[32],
                         X509 *x)
{
    X509 *y = parsed_back(x);
    disk_store(path, y ? y : x);
    if (y)
        swap_parsed(m, key, x, y);
}

/* The writer thread: stores queued leaves until told to stop and the
 * queue is empty. Creating a file costs 0.1-1 ms on a busy ext4, as much as
 * the whole mint, so the first connection to a host does not wait for it. */
static void *writer_main(void *arg)
{
    struct tls_minter *m = arg;
    sigset_t all;
    sigfillset(&all);                   /* signals belong to the event loops */
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    /* Background work: runs when no event loop (nor anything else on the
     * machine) wants the CPU, so it never delays a handshake in flight. */
    struct sched_param sp = { 0 };
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        log_debug("leaf cache writer: cannot lower its priority");
    pthread_mutex_lock(&m->wq_mu);
    for (;;) {
        while (!m->wq_head && !m->wq_stop)
            pthread_cond_wait(&m->wq_cv, &m->wq_mu);
        struct wq_item *it = m->wq_head;
        if (!it)
            break;
        m->wq_head = it->next;
        if (!m->wq_head)
            m->wq_tail = NULL;
        m->wq_len--;
        m->wq_busy = true;
        pthread_mutex_unlock(&m->wq_mu);
        store_minted(m, it->path, it->key, it->cert);
        X509_free(it->cert);
        free(it);
        pthread_mutex_lock(&m->wq_mu);
        m->wq_busy = false;
        if (!m->wq_head)
            pthread_cond_broadcast(&m->wq_idle_cv);
    }
    pthread_mutex_unlock(&m->wq_mu);
    return NULL;
}

/* Called once `x` is in the memory cache under `key`. */
static void disk_enqueue(struct tls_minter *m, const char *path, const unsigned char key[32],
                         X509 *x)
{
    if (!m->writer_started) {
        store_minted(m, path, key, x);
        return;
    }
    size_t len = strlen(path) + 1;
    struct wq_item *it = malloc(sizeof *it + len);
    if (!it)
        return;
    memcpy(it->path, path, len);
    memcpy(it->key, key, sizeof it->key);
    it->next = NULL;
    it->cert = x;
    pthread_mutex_lock(&m->wq_mu);
    if (m->wq_len >= WQ_MAX) {
        pthread_mutex_unlock(&m->wq_mu);
        free(it);
        return;
    }
    X509_up_ref(x);
    if (m->wq_tail)
        m->wq_tail->next = it;
    else
        m->wq_head = it;
    m->wq_tail = it;
    m->wq_len++;
    pthread_cond_signal(&m->wq_cv);
    pthread_mutex_unlock(&m->wq_mu);
}

void tls_minter_flush(struct tls_minter *m)
{
    if (!m || !m->writer_started)
        return;
    pthread_mutex_lock(&m->wq_mu);
    while (m->wq_head || m->wq_busy)
        pthread_cond_wait(&m->wq_idle_cv, &m->wq_mu);
    pthread_mutex_unlock(&m->wq_mu);
}

/* ---- minting ----------------------------------------------------------- */

static int add_ext_i2d(X509 *x, int nid, void *value, int crit)
{
    return X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_DEFAULT) == 1 ? 0 : -ENOMEM;
}

static GENERAL_NAMES *san_from_names(const struct tls_names *names)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    unsigned char ip[16];
    for (size_t i = 0; gens && i < names->n && i < UTIL_ARRAY_LEN(names->names); i++) {
        const char *s = names->names[i];
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_STRING *v = NULL;
        int type = GEN_DNS, iplen = inet_pton(AF_INET, s, ip) == 1 ? 4
                              : inet_pton(AF_INET6, s, ip) == 1 ? 16 : 0;
        if (iplen) {
            type = GEN_IPADD;
            v = ASN1_OCTET_STRING_new();
            if (v && !ASN1_OCTET_STRING_set(v, ip, iplen))
                ASN1_STRING_free(v), v = NULL;
        } else {
            v = ASN1_IA5STRING_new();
            if (v && !ASN1_STRING_set(v, s, (int)strnlen(s, sizeof names->names[0])))
                ASN1_STRING_free(v), v = NULL;
        }
        if (!gn || !v || !sk_GENERAL_NAME_push(gens, gn)) {
            GENERAL_NAME_free(gn);
            ASN1_STRING_free(v);
            GENERAL_NAMES_free(gens);
            return NULL;
        }
        GENERAL_NAME_set0_value(gn, type, v);
    }
    return gens;
}

static int leaf_extensions(struct tls_minter *m, X509 *x, const struct tls_names *names,
                           bool empty_subject)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    GENERAL_NAMES *san = san_from_names(names);
    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(m->ca_cert);
    int rc = -ENOMEM;
    if (!bc || !ku || !eku || !aki || !san)
        goto out;
    bc->ca = 0;
    bool rsa = EVP_PKEY_get_base_id(m->leaf_key) == EVP_PKEY_RSA;
    if (!ASN1_BIT_STRING_set_bit(ku, 0, 1) || (rsa && !ASN1_BIT_STRING_set_bit(ku, 2, 1)) ||
        !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)))
        goto out;
    if (ca_ski && !(aki->keyid = ASN1_OCTET_STRING_dup(ca_ski)))
        goto out;
    rc = add_ext_i2d(x, NID_basic_constraints, bc, 1);
    if (rc == 0)
        rc = add_ext_i2d(x, NID_key_usage, ku, 1);
    if (rc == 0)
        rc = add_ext_i2d(x, NID_ext_key_usage, eku, 0);
    if (rc == 0 && names->n > 0)
        rc = add_ext_i2d(x, NID_subject_alt_name, san, empty_subject);
    if (rc == 0 && ca_ski)
        rc = add_ext_i2d(x, NID_authority_key_identifier, aki, 0);
out:
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
    sk_ASN1_OBJECT_free(eku);       /* OBJ_nid2obj objects are static */
    AUTHORITY_KEYID_free(aki);
    GENERAL_NAMES_free(san);
    return rc;
}

/* CN = names->cn, or the first name; left out when over 64 characters
 * (the X.509 upper bound), in which case the SAN is marked critical. */
static int leaf_subject(X509 *x, const struct tls_names *names, bool *empty)
{
    const char *cn = names->cn[0] ? names->cn : names->n ? names->names[0] : "";
    size_t len = strnlen(cn, sizeof names->cn);
    *empty = len == 0 || len > 64;
    if (*empty)
        return names->n > 0 ? 0 : -EINVAL;
    return X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_ASC,
                                      (const unsigned char *)cn, (int)len, -1, 0) ? 0 : -EINVAL;
}

static X509 *mint(struct tls_minter *m, const struct tls_names *names, time_t now,
                  time_t *not_after, char *err, size_t errlen)
{
    bool empty = false;
    time_t end = now + (time_t)LEAF_DAYS * 86400;
    if (end > m->ca_not_after)
        end = m->ca_not_after;
    if (end <= now) {
        util_err(err, errlen, -EKEYEXPIRED, "the local CA has expired; run `shoji ca init --force`");
        return NULL;
    }
    X509 *x = X509_new();
    EVP_MD_CTX *sctx = EVP_MD_CTX_new();
    pthread_mutex_lock(&m->sign_mu);
    bool sctx_ok = sctx && EVP_MD_CTX_copy_ex(sctx, m->sign_tmpl);
    pthread_mutex_unlock(&m->sign_mu);
    bool ok = x && X509_set_version(x, X509_VERSION_3) && tls_random_serial(x) == 0 &&
              X509_set_issuer_name(x, X509_get_subject_name(m->ca_cert)) &&
              leaf_subject(x, names, &empty) == 0 &&
              X509_time_adj_ex(X509_getm_notBefore(x), 0, -3600, &now) &&
              X509_time_adj_ex(X509_getm_notAfter(x), 0, (long)(end - now), &now) &&
              X509_set_pubkey(x, m->leaf_pub) && leaf_extensions(m, x, names, empty) == 0 &&
              sctx_ok && X509_sign_ctx(x, sctx) > 0;
    EVP_MD_CTX_free(sctx);
    if (!ok) {
        char why[256];
        ERR_error_string_n(ERR_peek_last_error(), why, sizeof why);
        ERR_clear_error();
        util_err(err, errlen, -EIO, "cannot mint a certificate for %s: %s",
                 names->n ? names->names[0] : names->cn, why);
        X509_free(x);
        return NULL;
    }
    *not_after = end;
    return x;
}

X509 *tls_mint_leaf(struct tls_minter *m, const struct tls_names *names,
                    char *err, size_t errlen)
{
    unsigned char key[32];
    char path[PATH_MAX + 80];
    time_t now = time(NULL), not_after = 0;
    if (!m || !names || (names->n == 0 && !names->cn[0])) {
        util_err(err, errlen, -EINVAL, "no names to put in a certificate");
        return NULL;
    }
    if (!names_key(m, names, key)) {
        util_err(err, errlen, -EIO, "cannot hash the certificate names");
        return NULL;
    }
    X509 *x = mem_lookup(m, key, now);
    if (x)
        return x;
    /* A miss: one thread per key stripe fetches or mints, so concurrent
     * first connections to a host all get the same leaf; the others find
     * it in memory once the stripe is free. Hits never wait for this. */
    pthread_mutex_t *stripe = &m->miss_mu[key[0] % MISS_STRIPES];
    pthread_mutex_lock(stripe);
    if ((x = mem_lookup(m, key, now)) != NULL) {
        pthread_mutex_unlock(stripe);
        return x;
    }
    cache_path(m, key, path, sizeof path);
    bool from_disk = (x = disk_lookup(m, path, now, &not_after)) != NULL;
    if (!x)
        x = mint(m, names, now, &not_after, err, errlen);
    if (x) {
        pthread_mutex_lock(&m->mu);
        if (from_disk)
            m->stats.disk_hits++;
        else
            m->stats.minted++;
        X509_up_ref(x);
        map_insert(m, key, x, not_after);
        pthread_mutex_unlock(&m->mu);
        if (!from_disk)
            disk_enqueue(m, path, key, x);
    }
    pthread_mutex_unlock(stripe);
    return x;
}

/* ---- lifecycle --------------------------------------------------------- */

/* STATE/leaf.key: loaded when present, else created (EC P-256, 0600). */
static int leaf_key_load(const char *state_dir, EVP_PKEY **out, char *err, size_t errlen)
{
    char path[PATH_MAX], *data = NULL;
    size_t n = 0;
    *out = NULL;
    if (snprintf(path, sizeof path, "%s/leaf.key", state_dir) >= (int)sizeof path)
        return util_err(err, errlen, -ENAMETOOLONG, "state directory path too long");
    int rc = util_read_file(path, LEAF_FILE_MAX, &data, &n, err, errlen);
    if (rc == 0) {
        BIO *b = BIO_new_mem_buf(data, (int)n);
        *out = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        OPENSSL_cleanse(data, n);
        free(data);
        ERR_clear_error();
        if (!*out)
            return util_err(err, errlen, -EBADMSG, "%s is not a valid PEM private key; "
                            "delete it and a new one is created at start", path);
        return 0;
    }
    if (rc != -ENOENT)
        return rc;
    if (!(*out = EVP_EC_gen("P-256")))
        return util_err(err, errlen, -EIO, "cannot generate the leaf key");
    rc = tls_write_pem(path, *out, NULL, 0600, err, errlen);
    if (rc < 0) {
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    return rc;
}

/* OpenSSL 3.0 encodes a provider-held public key through its generic
 * encoder on every X509_set_pubkey (~0.4 ms, most of a mint), and
 * X509_sign fetches the digest and signature algorithms on every call.
 * So: a legacy (EC_KEY-backed) copy of the leaf key, which encodes in
 * microseconds, and a signing context set up once and copied per mint. */
static int fast_keys(struct tls_minter *m, char *err, size_t errlen)
{
    EC_KEY *ec = EVP_PKEY_get_base_id(m->leaf_key) == EVP_PKEY_EC
                 ? EVP_PKEY_get1_EC_KEY(m->leaf_key) : NULL;
    if (ec && (m->leaf_pub = EVP_PKEY_new()) && EVP_PKEY_assign_EC_KEY(m->leaf_pub, ec))
        ec = NULL;
    EC_KEY_free(ec);
    if (!m->leaf_pub || EVP_PKEY_get0_EC_KEY(m->leaf_pub) == NULL) {
        EVP_PKEY_free(m->leaf_pub);
        m->leaf_pub = m->leaf_key;          /* other key types: the slow path */
        EVP_PKEY_up_ref(m->leaf_pub);
    }
    ERR_clear_error();
    bool ed = EVP_PKEY_get_base_id(m->ca_key) == EVP_PKEY_ED25519;
    m->sign_tmpl = EVP_MD_CTX_new();
    if (!m->sign_tmpl || EVP_DigestSignInit_ex(m->sign_tmpl, NULL, ed ? NULL : "SHA256", NULL,
                                               NULL, m->ca_key, NULL) != 1)
        return util_err(err, errlen, -EIO, "cannot set up signing with the CA key");
    return 0;
}

int tls_minter_new(const struct tls_ca *ca, const char *state_dir, size_t mem_entries,
                   struct tls_minter **out, char *err, size_t errlen)
{
    char fp8[9];
    *out = NULL;
    if (!ca || !ca->cert || !ca->key)
        return util_err(err, errlen, -EINVAL, "no CA loaded");
    struct tls_minter *m = calloc(1, sizeof *m);
    if (!m)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    m->cap = mem_entries ? mem_entries : 1024;
    for (m->nbuckets = 16; m->nbuckets < m->cap * 2 && m->nbuckets < ((size_t)1 << 24);)
        m->nbuckets <<= 1;
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->sign_mu, NULL);
    for (int i = 0; i < MISS_STRIPES; i++)
        pthread_mutex_init(&m->miss_mu[i], NULL);
    pthread_mutex_init(&m->wq_mu, NULL);
    pthread_cond_init(&m->wq_cv, NULL);
    pthread_cond_init(&m->wq_idle_cv, NULL);
    X509_up_ref(ca->cert);
    EVP_PKEY_up_ref(ca->key);
    m->ca_cert = ca->cert;
    m->ca_key = ca->key;
    m->ca_not_after = asn1_to_time(X509_get0_notAfter(ca->cert));
    tls_ca_fp8(ca, fp8);
    m->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    int rc = m->buckets && m->sha256 ? 0 : util_err(err, errlen, -ENOMEM, "out of memory");
    if (rc == 0 && snprintf(m->dir, sizeof m->dir, "%s/certs/%s", state_dir, fp8) >= (int)sizeof m->dir)
        rc = util_err(err, errlen, -ENAMETOOLONG, "state directory path too long");
    if (rc == 0)
        rc = util_mkdirs(m->dir, 0755, err, errlen);
    if (rc == 0)
        rc = leaf_key_load(state_dir, &m->leaf_key, err, errlen);
    if (rc == 0)
        rc = fast_keys(m, err, errlen);
    if (rc == 0)
        m->writer_started = pthread_create(&m->writer, NULL, writer_main, m) == 0;
    if (rc < 0) {
        tls_minter_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void tls_minter_free(struct tls_minter *m)
{
    if (!m)
        return;
    if (m->writer_started) {        /* writes what is queued, then stops */
        pthread_mutex_lock(&m->wq_mu);
        m->wq_stop = true;
        pthread_cond_signal(&m->wq_cv);
        pthread_mutex_unlock(&m->wq_mu);
        pthread_join(m->writer, NULL);
    }
    while (m->head)
        map_remove(m, m->head);
    free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    X509_free(m->ca_cert);
    EVP_PKEY_free(m->ca_key);
    EVP_PKEY_free(m->leaf_key);
    EVP_MD_free(m->sha256);
    EVP_PKEY_free(m->leaf_pub);
    EVP_MD_CTX_free(m->sign_tmpl);
    pthread_mutex_destroy(&m->sign_mu);
    for (int i = 0; i < MISS_STRIPES; i++)
        pthread_mutex_destroy(&m->miss_mu[i]);
    pthread_mutex_destroy(&m->wq_mu);
    pthread_cond_destroy(&m->wq_cv);
    pthread_cond_destroy(&m->wq_idle_cv);
    free(m);
}

EVP_PKEY *tls_minter_leaf_key(struct tls_minter *m)
{
    return m ? m->leaf_key : NULL;
}

void tls_minter_stats(struct tls_minter *m, struct tls_mint_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    *out = m->stats;
    pthread_mutex_unlock(&m->mu);
}
