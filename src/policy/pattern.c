/* pattern: see pattern.h. */
#include "policy/pattern.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util/util.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL
#define PAT_TEXT_MAX 1024

static inline char lc(char c) { return (char)tolower((unsigned char)c); }

/* ---- string map ---------------------------------------------------------- */

uint64_t pmap_hash(const char *s, size_t n)
{
    uint64_t h = FNV_OFFSET;
    while (n--) {
        h ^= (unsigned char)lc(s[n]);
        h *= FNV_PRIME;
    }
    return h;
}

static bool key_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lc(a[i]) != lc(b[i]))
            return false;
    return true;
}

static int pmap_grow(struct pmap *m)
{
    uint32_t ncap = m->cap ? m->cap * 2 : 16;
    if (ncap < m->cap)
        return -ENOMEM;
    struct pmap_ent *ne = calloc(ncap, sizeof *ne);
    if (!ne)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->e[i].key)
            continue;
        uint32_t j = (uint32_t)m->e[i].h & (ncap - 1);
        while (ne[j].key)
            j = (j + 1) & (ncap - 1);
        ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne;
    m->cap = ncap;
    return 0;
}

int32_t *pmap_get_h(const struct pmap *m, uint64_t h, const char *key, size_t n)
{
    if (!m->cap)
        return NULL;
    for (uint32_t j = (uint32_t)h & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        struct pmap_ent *e = &m->e[j];
        if (!e->key)
            return NULL;
        if (e->h == h && e->klen == n && key_ieq(e->key, key, n))
            return &e->val;
    }
}

int32_t *pmap_get(const struct pmap *m, const char *key, size_t n)
{
    return pmap_get_h(m, pmap_hash(key, n), key, n);
}

int pmap_put(struct pmap *m, const char *key, size_t n, int32_t val, int32_t **slot)
{
    uint64_t h = pmap_hash(key, n);
    int32_t *v = pmap_get_h(m, h, key, n);
    if (v) {
        if (slot)
            *slot = v;
        return 1;
    }
    if ((m->n + 1) * 4 > m->cap * 3 && pmap_grow(m) < 0)
        return -ENOMEM;
    char *k = malloc(n + 1);
    if (!k)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        k[i] = lc(key[i]);
    k[n] = '\0';
    uint32_t j = (uint32_t)h & (m->cap - 1);
    while (m->e[j].key)
        j = (j + 1) & (m->cap - 1);
    m->e[j] = (struct pmap_ent){ h, k, (uint32_t)n, val };
    m->n++;
    if (slot)
        *slot = &m->e[j].val;
    return 0;
}

void pmap_free(struct pmap *m)
{
    for (uint32_t i = 0; i < m->cap; i++)
        free(m->e[i].key);
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* ---- glob and name syntax -------------------------------------------------- */

bool pat_glob_match(const char *pat, size_t pn, const char *s, size_t sn)
{
    size_t p = 0, i = 0, star_p = (size_t)-1, star_i = 0;
    while (i < sn) {
        if (p < pn && pat[p] == '*') {
            star_p = p++;
            star_i = i;
        } else if (p < pn && lc(pat[p]) == lc(s[i])) {
            p++;
            i++;
        } else if (star_p != (size_t)-1) {
            p = star_p + 1;
            i = ++star_i;
        } else {
            return false;
        }
    }
    while (p < pn && pat[p] == '*')
        p++;
    return p == pn;
}

bool pat_is_host_name(const char *s, size_t n)
{
    if (n && s[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-')
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return s[n - 1] != '-';
}

/* A host-name glob: host-name characters and `*`. */
static bool is_host_glob(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '*')
            return false;
    return n > 0;
}

size_t pat_app_norm(const char *name, char *out, size_t cap)
{
    if (!name || !cap)
        return 0;
    const char *b = name;
    for (const char *q = name; *q; q++)
        if (*q == '/' || *q == '\\')
            b = q + 1;
    size_t n = strlen(b);
    if (n >= 4 && key_ieq(b + n - 4, ".exe", 4))
        n -= 4;
    if (n == 0 || n >= cap)
        return 0;
    for (size_t i = 0; i < n; i++)
        out[i] = lc(b[i]);
    out[n] = '\0';
    return n;
}

/* ---- the set --------------------------------------------------------------- */

struct pat {
    char *text;       /* as written */
    char *norm;       /* lower case: name, glob, or URL host */
    char *path;       /* URL: path prefix */
    int index;        /* position in the policy list */
    enum pat_kind kind;
    int32_t next;     /* next pattern (array position) in the same bucket */
};

/* Exact names and globs, for host names or for certificate names. */
struct name_index {
    struct pmap exact;          /* name -> list index */
    struct pmap suffix;         /* glob's literal suffix -> first pat position */
    uint64_t suffix_lens[(PAT_NAME_MAX + 64) / 64];  /* lengths present in suffix */
    int32_t *tail_star;         /* globs ending in `*`: scanned */
    size_t ntail_star;
};

struct radix_node {
    int32_t child[2];
    int32_t idx;                /* list index of a prefix ending here, or -1 */
};

struct pat_set {
    unsigned flags;
    struct pat *pats;
    size_t n, cap;
    struct name_index host, cert;
    struct radix_node *nodes;
    size_t nnodes, capnodes;
    int32_t root[2];            /* [0] IPv4, [1] IPv6; -1 = none */
    struct pmap url_hosts;      /* URL host -> first pat position */
    int32_t *url_globs;         /* URL patterns whose host is a glob */
    size_t nurl_globs;
    size_t nlist;               /* distinct list indices added */
    bool has_cert;
};

struct pat_set *pat_set_new(unsigned flags)
{
    struct pat_set *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->flags = flags;
    s->root[0] = s->root[1] = -1;
    return s;
}

static void name_index_free(struct name_index *ix)
{
    pmap_free(&ix->exact);
    pmap_free(&ix->suffix);
    free(ix->tail_star);
}

void pat_set_free(struct pat_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->pats[i].text);
        free(s->pats[i].norm);
        free(s->pats[i].path);
    }
    free(s->pats);
    name_index_free(&s->host);
    name_index_free(&s->cert);
    free(s->nodes);
    pmap_free(&s->url_hosts);
    free(s->url_globs);
    free(s);
}

size_t pat_set_count(const struct pat_set *s) { return s ? s->nlist : 0; }
bool pat_set_has_cert(const struct pat_set *s) { return s && s->has_cert; }

static const struct pat *find_index(const struct pat_set *s, int index)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {   /* pats are added with non-decreasing indices */
        size_t mid = lo + (hi - lo) / 2;
        if (s->pats[mid].index < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->pats[lo].index == index ? &s->pats[lo] : NULL;
}

const char *pat_set_text(const struct pat_set *s, int index)
{
    const struct pat *p = s ? find_index(s, index) : NULL;
    return p ? p->text : NULL;
}

enum pat_kind pat_set_kind(const struct pat_set *s, int index)
{
    const struct pat *p = s ? find_index(s, index) : NULL;
    return p ? p->kind : 0;
}

static int push_i32(int32_t **arr, size_t *n, int32_t v)
{
    int32_t *na = realloc(*arr, (*n + 1) * sizeof **arr);
    if (!na)
        return -ENOMEM;
    na[(*n)++] = v;
    *arr = na;
    return 0;
}

/* Appends a pat record; returns its position or -ENOMEM. */
static int32_t new_pat(struct pat_set *s, const char *text, const char *norm, size_t nn,
                       const char *path, int index, enum pat_kind kind)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        struct pat *np = realloc(s->pats, ncap * sizeof *np);
        if (!np)
            return -ENOMEM;
        s->pats = np;
        s->cap = ncap;
    }
    struct pat *p = &s->pats[s->n];
    memset(p, 0, sizeof *p);
    p->text = strdup(text);
    p->norm = strndup(norm, nn);
    p->path = path ? strdup(path) : NULL;
    if (!p->text || !p->norm || (path && !p->path)) {
        free(p->text);
        free(p->norm);
        free(p->path);
        return -ENOMEM;
    }
    for (char *c = p->norm; *c; c++)
        *c = lc(*c);
    if (p->path)
        for (char *c = p->path; *c; c++)
            *c = lc(*c);
    p->index = index;
    p->kind = kind;
    p->next = -1;
    return (int32_t)s->n++;
}

static int index_name(struct pat_set *s, struct name_index *ix, int32_t pos)
{
    struct pat *p = &s->pats[pos];
    size_t n = strlen(p->norm);
    const char *star = memrchr(p->norm, '*', n);
    if (!star) {
        int32_t *slot;
        int r = pmap_put(&ix->exact, p->norm, n, p->index, &slot);
        if (r == 1 && p->index < *slot)
            *slot = p->index;
        return r < 0 ? r : 0;
    }
    size_t sl = n - (size_t)(star + 1 - p->norm);
    if (sl == 0)
        return push_i32(&ix->tail_star, &ix->ntail_star, pos);
    int32_t *slot;
    int r = pmap_put(&ix->suffix, star + 1, sl, pos, &slot);
    if (r < 0)
        return r;
    if (sl <= PAT_NAME_MAX)
        ix->suffix_lens[sl / 64] |= 1ULL << (sl % 64);
    if (r == 1) {   /* chain in list order: the earliest match is found first */
        int32_t *link = slot;
        while (*link >= 0)
            link = &s->pats[*link].next;
        *link = pos;
    }
    return 0;
}

static int radix_node(struct pat_set *s)
{
    if (s->nnodes == s->capnodes) {
        size_t ncap = s->capnodes ? s->capnodes * 2 : 64;
        struct radix_node *nn = realloc(s->nodes, ncap * sizeof *nn);
        if (!nn)
            return -ENOMEM;
        s->nodes = nn;
        s->capnodes = ncap;
    }
    s->nodes[s->nnodes] = (struct radix_node){ { -1, -1 }, -1 };
    return (int)s->nnodes++;
}

static int radix_insert(struct pat_set *s, int fam6, const uint8_t *a, int bits, int index)
{
    if (s->root[fam6] < 0) {
        int r = radix_node(s);
        if (r < 0)
            return r;
        s->root[fam6] = r;
    }
    int32_t cur = s->root[fam6];
    for (int i = 0; i < bits; i++) {
        int b = (a[i / 8] >> (7 - i % 8)) & 1;
        if (s->nodes[cur].child[b] < 0) {
            int r = radix_node(s);
            if (r < 0)
                return r;
            s->nodes[cur].child[b] = r;
        }
        cur = s->nodes[cur].child[b];
    }
    if (s->nodes[cur].idx < 0 || index < s->nodes[cur].idx)
        s->nodes[cur].idx = index;
    return 0;
}

/* Parses "ADDR" or "ADDR/LEN". Returns 1 if it is an address pattern, 0 if
 * not, negative (with err) if it is an address pattern with a mistake. */
static int parse_ip(const char *t, uint8_t a[16], int *fam6, int *bits, char *err, size_t errlen)
{
    char buf[64];
    const char *slash = strchr(t, '/');
    size_t an = slash ? (size_t)(slash - t) : strlen(t);
    if (an == 0 || an >= sizeof buf || (slash && !isdigit((unsigned char)slash[1])))
        return 0;   /* "10.0.0.1/admin" is a URL prefix, not a CIDR block */
    memcpy(buf, t, an);
    buf[an] = '\0';
    if (inet_pton(AF_INET, buf, a) == 1)
        *fam6 = 0;
    else if (inet_pton(AF_INET6, buf, a) == 1)
        *fam6 = 1;
    else
        return 0;
    int maxb = *fam6 ? 128 : 32;
    *bits = maxb;
    if (!slash)
        return 1;
    char *end;
    errno = 0;
    long l = strtol(slash + 1, &end, 10);
    if (*end || errno || l < 0 || l > maxb)
        return util_err(err, errlen, -EINVAL, "bad CIDR prefix length in \"%s\" (expected 0..%d)", t, maxb);
    *bits = (int)l;
    for (int i = *bits; i < maxb; i++) {
        if (a[i / 8] & (1u << (7 - i % 8))) {
            for (int j = *bits; j < maxb; j++)
                a[j / 8] &= (uint8_t)~(1u << (7 - j % 8));
            char net[INET6_ADDRSTRLEN];
            inet_ntop(*fam6 ? AF_INET6 : AF_INET, a, net, sizeof net);
            return util_err(err, errlen, -EINVAL,
                            "CIDR \"%s\" has host bits set (did you mean \"%s/%d\"?)", t, net, *bits);
        }
    }
    return 1;
}

static int add_url(struct pat_set *s, const char *text, int index, char *err, size_t errlen)
{
    const char *slash = strchr(text, '/');
    size_t hn = (size_t)(slash - text);
    if (!(s->flags & PAT_F_URL))
        return util_err(err, errlen, -EINVAL,
                        "\"%s\": a host/path pattern is not allowed in this list (host names, globs, IP addresses and CIDR blocks only)", text);
    if (hn == 0 || !is_host_glob(text, hn))
        return util_err(err, errlen, -EINVAL, "\"%s\": the part before `/` must be a host name or a `*` glob", text);
    for (const char *c = slash; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return util_err(err, errlen, -EINVAL, "\"%s\": spaces or control characters in the path", text);
    int32_t pos = new_pat(s, text, text, hn, slash, index, PAT_URL);
    if (pos < 0)
        return util_err(err, errlen, pos, "out of memory");
    struct pat *p = &s->pats[pos];
    int r;
    if (memchr(p->norm, '*', hn)) {
        r = push_i32(&s->url_globs, &s->nurl_globs, pos);
    } else {
        int32_t *slot;
        r = pmap_put(&s->url_hosts, p->norm, hn, pos, &slot);
        if (r == 1) {
            int32_t *link = slot;
            while (*link >= 0)
                link = &s->pats[*link].next;
            *link = pos;
            r = 0;
        }
    }
    return r < 0 ? util_err(err, errlen, r, "out of memory") : 0;
}

static int add_name(struct pat_set *s, const char *text, size_t n, int index, char *err, size_t errlen)
{
    bool glob = memchr(text, '*', n) != NULL;
    const char *norm = text;
    size_t nn = n;
    if (nn > 1 && norm[nn - 1] == '.' && norm[nn - 2] != '.')
        nn--;   /* "example.com." */
    enum pat_kind kind;
    bool domain = false;
    if (text[0] == '.' && n > 1 && pat_is_host_name(text + 1, n - 1)) {
        domain = true;      /* ".apple.com": the domain and every subdomain */
        kind = PAT_DOMAIN;
    } else if (glob ? is_host_glob(norm, nn) : pat_is_host_name(norm, nn)) {
        kind = glob ? PAT_HOST_GLOB : PAT_HOST;
    } else if (s->flags & PAT_F_CERT) {
        kind = glob ? PAT_CERT_GLOB : PAT_CERT;
    } else {
        return util_err(err, errlen, -EINVAL,
                        "\"%s\" is not a host name, `*` glob, IP address, CIDR block%s", text,
                        (s->flags & PAT_F_URL) ? " or host/path prefix" : "");
    }
    if (nn > PAT_NAME_MAX)
        return util_err(err, errlen, -EINVAL, "\"%.40s...\" is longer than %d bytes", text, PAT_NAME_MAX);
    struct name_index *ix = (kind == PAT_CERT || kind == PAT_CERT_GLOB) ? &s->cert : &s->host;
    if (ix == &s->cert)
        s->has_cert = true;
    int32_t pos = domain ? new_pat(s, text, norm + 1, nn - 1, NULL, index, kind)
                         : new_pat(s, text, norm, nn, NULL, index, kind);
    if (pos < 0 || index_name(s, ix, pos) < 0)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    if (domain) {
        char g[PAT_NAME_MAX + 2];
        snprintf(g, sizeof g, "*%.*s", (int)(nn), norm);
        pos = new_pat(s, text, g, strlen(g), NULL, index, kind);
        if (pos < 0 || index_name(s, ix, pos) < 0)
            return util_err(err, errlen, -ENOMEM, "out of memory");
    }
    return 0;
}

int pat_set_add(struct pat_set *s, const char *text, int index, char *err, size_t errlen)
{
    size_t n = strlen(text);
    if (n == 0)
        return util_err(err, errlen, -EINVAL, "empty pattern");
    if (n > PAT_TEXT_MAX)
        return util_err(err, errlen, -EINVAL, "pattern longer than %d bytes", PAT_TEXT_MAX);
    if (isspace((unsigned char)text[0]) || isspace((unsigned char)text[n - 1]))
        return util_err(err, errlen, -EINVAL, "\"%s\" has leading or trailing spaces", text);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
            return util_err(err, errlen, -EINVAL, "pattern contains a control character");
    if (s->n && index < s->pats[s->n - 1].index)
        return util_err(err, errlen, -EINVAL, "patterns must be added in list order");
    if (!s->n || s->pats[s->n - 1].index != index)
        s->nlist++;
    uint8_t a[16] = { 0 };
    int fam6 = 0, bits = 0;
    int r = parse_ip(text, a, &fam6, &bits, err, errlen);
    if (r < 0)
        return r;
    if (r == 1) {
        int32_t pos = new_pat(s, text, text, n, NULL, index, strchr(text, '/') ? PAT_CIDR : PAT_IP);
        if (pos < 0 || radix_insert(s, fam6, a, bits, index) < 0)
            return util_err(err, errlen, -ENOMEM, "out of memory");
        return 0;
    }
    if (strchr(text, '/'))
        return add_url(s, text, index, err, errlen);
    return add_name(s, text, n, index, err, errlen);
}

/* ---- matching -------------------------------------------------------------- */

static inline void take(int *best, int idx)
{
    if (idx >= 0 && (*best < 0 || idx < *best))
        *best = idx;
}

static int name_index_match(const struct pat_set *s, const struct name_index *ix,
                            const char *name, size_t n)
{
    int best = -1;
    int32_t *v = pmap_get(&ix->exact, name, n);
    if (v)
        take(&best, *v);
    if (ix->suffix.n) {
        uint64_t h = FNV_OFFSET;
        for (size_t i = n; i-- > 0;) {
            h ^= (unsigned char)lc(name[i]);
            h *= FNV_PRIME;
            size_t sl = n - i;   /* probe only lengths some glob suffix has */
            if (!(ix->suffix_lens[sl / 64] & (1ULL << (sl % 64))))
                continue;
            int32_t *head = pmap_get_h(&ix->suffix, h, name + i, n - i);
            for (int32_t pos = head ? *head : -1; pos >= 0; pos = s->pats[pos].next) {
                const struct pat *p = &s->pats[pos];
                if (best >= 0 && p->index >= best)
                    break;   /* chains are in list order */
                if (pat_glob_match(p->norm, strlen(p->norm), name, n)) {
                    take(&best, p->index);
                    break;
                }
            }
        }
    }
    for (size_t k = 0; k < ix->ntail_star; k++) {
        const struct pat *p = &s->pats[ix->tail_star[k]];
        if ((best < 0 || p->index < best) && pat_glob_match(p->norm, strlen(p->norm), name, n))
            take(&best, p->index);
    }
    return best;
}

int pat_match_addr(const struct pat_set *s, int family, const uint8_t *addr)
{
    int fam6 = family == AF_INET6 ? 1 : family == AF_INET ? 0 : -1;
    if (!s || fam6 < 0 || s->root[fam6] < 0)
        return -1;
    int best = -1, maxb = fam6 ? 128 : 32;
    int32_t cur = s->root[fam6];
    for (int i = 0; cur >= 0; i++) {
        take(&best, s->nodes[cur].idx);
        if (i == maxb)
            break;
        cur = s->nodes[cur].child[(addr[i / 8] >> (7 - i % 8)) & 1];
    }
    return best;
}

/* Copies a name without a trailing dot or IPv6 brackets; false if too long. */
static bool norm_name(const char *in, char *out, size_t *n)
{
    size_t l = strlen(in);
    if (l >= 2 && in[0] == '[' && in[l - 1] == ']') {
        in++;
        l -= 2;
    }
    if (l > 1 && in[l - 1] == '.')
        l--;
    if (l == 0 || l >= PAT_NAME_MAX + 1)
        return false;
    memcpy(out, in, l);
    out[l] = '\0';
    *n = l;
    return true;
}

static int match_literal_ip(const struct pat_set *s, const char *name)
{
    uint8_t a[16];
    if (s->root[0] >= 0 && inet_pton(AF_INET, name, a) == 1)
        return pat_match_addr(s, AF_INET, a);
    if (s->root[1] >= 0 && inet_pton(AF_INET6, name, a) == 1)
        return pat_match_addr(s, AF_INET6, a);
    return -1;
}

int pat_match_host(const struct pat_set *s, const char *host)
{
    char buf[PAT_NAME_MAX + 1];
    size_t n;
    if (!s || !host || !norm_name(host, buf, &n))
        return -1;
    int best = name_index_match(s, &s->host, buf, n);
    take(&best, match_literal_ip(s, buf));
    return best;
}

int pat_match_cert(const struct pat_set *s, const char *name)
{
    char buf[PAT_NAME_MAX + 1];
    size_t n;
    if (!s || !name || !norm_name(name, buf, &n))
        return -1;
    int best = name_index_match(s, &s->host, buf, n);
    take(&best, name_index_match(s, &s->cert, buf, n));
    take(&best, match_literal_ip(s, buf));
    return best;
}

static bool path_prefix(const char *prefix, const char *path)
{
    size_t pn = strlen(prefix);
    if (strncasecmp(prefix, path, pn) != 0)
        return false;
    char next = path[pn];
    return next == '\0' || next == '/' || next == '?' || next == '#' || prefix[pn - 1] == '/';
}

int pat_match_url(const struct pat_set *s, const char *host, const char *path)
{
    char buf[PAT_NAME_MAX + 1];
    size_t n;
    if (!s || !host || (!s->url_hosts.n && !s->nurl_globs) || !norm_name(host, buf, &n))
        return -1;
    if (!path || !*path)
        path = "/";
    int best = -1;
    int32_t *head = pmap_get(&s->url_hosts, buf, n);
    for (int32_t pos = head ? *head : -1; pos >= 0; pos = s->pats[pos].next) {
        if (path_prefix(s->pats[pos].path, path)) {
            take(&best, s->pats[pos].index);
            break;
        }
    }
    for (size_t k = 0; k < s->nurl_globs; k++) {
        const struct pat *p = &s->pats[s->url_globs[k]];
        if ((best < 0 || p->index < best) && pat_glob_match(p->norm, strlen(p->norm), buf, n) &&
            path_prefix(p->path, path))
            take(&best, p->index);
    }
    return best;
}
