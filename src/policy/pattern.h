/* pattern: compiled sets of policy patterns (internal to the policy module).
 * One pat_set holds one policy list (e.g. decode.exclude_hosts) and answers
 * "which pattern of this list matches this host / IP / certificate name /
 * URL" in time independent of the list's length: exact names in a hash set,
 * globs indexed by their literal suffix after the last `*`, addresses and
 * CIDR blocks in a binary radix tree, URL prefixes hashed by host.
 * When several patterns match, the one earliest in the list is reported.
 * Must never: allocate or lock while matching, keep pointers to the caller's
 * strings, or abort on a bad pattern (it is refused with a message). */
#ifndef SHOJI_POLICY_PATTERN_H
#define SHOJI_POLICY_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAT_NAME_MAX 256     /* longest host / certificate name matched */

/* What kinds of pattern a list accepts. */
#define PAT_F_CERT 0x1       /* names that are not host names: certificate names */
#define PAT_F_URL  0x2       /* host/path prefixes */

enum pat_kind { PAT_HOST = 1, PAT_HOST_GLOB, PAT_DOMAIN, PAT_IP, PAT_CIDR, PAT_CERT,
                PAT_CERT_GLOB, PAT_URL };

/* A string -> int map (keys ASCII-lower-cased on insert and on lookup),
 * open addressing; used for host names and application names. */
struct pmap_ent {
    uint64_t h;
    char *key;               /* owned; NULL = empty slot */
    uint32_t klen;
    int32_t val;
};
struct pmap {
    struct pmap_ent *e;
    uint32_t cap;            /* power of two */
    uint32_t n;
};
/* The hash used everywhere here: FNV-1a over the lower-cased bytes taken
 * from the LAST to the first, so the hash of every suffix of a name comes
 * out of one right-to-left pass (see pat_match_host). */
uint64_t pmap_hash(const char *s, size_t n);
/* Inserts key -> val; if the key is present keeps the existing value and
 * returns 1 (so the earliest pattern wins). 0 inserted, -ENOMEM. */
int pmap_put(struct pmap *m, const char *key, size_t n, int32_t val, int32_t **slot);
/* Returns a pointer to the value or NULL. `h` must be pmap_hash(key, n). */
int32_t *pmap_get_h(const struct pmap *m, uint64_t h, const char *key, size_t n);
int32_t *pmap_get(const struct pmap *m, const char *key, size_t n);
void pmap_free(struct pmap *m);

/* `*` matches any run of characters (dots included); ASCII case-insensitive. */
bool pat_glob_match(const char *pat, size_t pn, const char *s, size_t sn);
/* A syntactically valid DNS host name (letters, digits, `-`, `_` not allowed,
 * dot-separated non-empty labels, at most 253 bytes; a trailing dot is
 * accepted). */
bool pat_is_host_name(const char *s, size_t n);

struct pat_set;

struct pat_set *pat_set_new(unsigned flags);
void pat_set_free(struct pat_set *s);
/* Adds the pattern `text` (the list's item number `index`). Returns 0, or
 * negative with a sentence in err saying what is wrong with it. */
int pat_set_add(struct pat_set *s, const char *text, int index, char *err, size_t errlen);
size_t pat_set_count(const struct pat_set *s);
/* The original text of the pattern with list index `index` (NULL if none). */
const char *pat_set_text(const struct pat_set *s, int index);
enum pat_kind pat_set_kind(const struct pat_set *s, int index);
/* Whether the set holds any pattern matched against certificate names. */
bool pat_set_has_cert(const struct pat_set *s);

/* Each returns the list index of the earliest matching pattern, or -1.
 * host: a host name (any case, optional trailing dot); IP literals match IP
 * and CIDR patterns too. */
int pat_match_host(const struct pat_set *s, const char *host);
/* family AF_INET (4 bytes) or AF_INET6 (16 bytes). */
int pat_match_addr(const struct pat_set *s, int family, const uint8_t *addr);
/* A certificate subject name: host patterns and certificate-name patterns. */
int pat_match_cert(const struct pat_set *s, const char *name);
/* host + path (path+query; NULL = "/"): URL prefix patterns only. A prefix
 * matches the path itself, or a longer path whose next character is `/`, `?`
 * or `#`, or any longer path if the prefix ends in `/`. Case-insensitive. */
int pat_match_url(const struct pat_set *s, const char *host, const char *path);

/* Normalizes an application name for matching: lower case, without a
 * trailing ".exe", without a directory. Returns the length (0 if it does not
 * fit in cap or is empty). */
size_t pat_app_norm(const char *name, char *out, size_t cap);

#endif
