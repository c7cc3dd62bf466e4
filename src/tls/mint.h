/* tls/mint: leaf certificates for decoded connections, signed by the local
 * CA, mirroring the upstream certificate's names; cached in memory (bounded
 * LRU, shared by all workers, thread-safe) and on disk in the state dir so a
 * restart reuses them (same serial).
 * Must never: generate a key on the request path (one leaf key per agent,
 * loaded or created at start and kept in STATE/leaf.key, 0600), or hand out a
 * certificate that outlives the CA or 397 days. */
#ifndef SHOJI_TLS_MINT_H
#define SHOJI_TLS_MINT_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tls/ca.h"

struct tls_minter;

/* `cache_dir` (e.g. STATE/certs) is created if missing; `mem_entries` bounds
 * the in-memory LRU (default 1024 when 0). Takes references on the CA. */
int tls_minter_new(const struct tls_ca *ca, const char *state_dir, size_t mem_entries,
                   struct tls_minter **out, char *err, size_t errlen);
void tls_minter_free(struct tls_minter *m);
EVP_PKEY *tls_minter_leaf_key(struct tls_minter *m);   /* borrowed */

/* The names to put in a leaf: the subject CN and the DNS/IP SANs of
 * `upstream`, or only `host` when `upstream` is NULL (used when the upstream
 * failed and the client must still read our error page). */
struct tls_names {
    char cn[256];
    size_t n;
    char names[32][256];    /* DNS names or IP literals, at most 32 */
};
void tls_names_from_cert(X509 *upstream, struct tls_names *out);
void tls_names_from_host(const char *host, struct tls_names *out);

/* Returns a leaf (a new reference: X509_free it) for `names`: from memory,
 * else from disk, else minted (random 128-bit serial, notBefore now-1h,
 * notAfter min(CA notAfter, now+397d), SAN = names, EKU serverAuth) and
 * written to disk atomically. Thread-safe. */
X509 *tls_mint_leaf(struct tls_minter *m, const struct tls_names *names,
                    char *err, size_t errlen);

struct tls_mint_stats {
    unsigned long mem_hits, disk_hits, minted;
};
void tls_minter_stats(struct tls_minter *m, struct tls_mint_stats *out);

/* Added: waits until every minted leaf queued for the disk cache is written
 * (writes happen on a background thread; tls_minter_free also waits). */
void tls_minter_flush(struct tls_minter *m);

#endif
