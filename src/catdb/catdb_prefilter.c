/* catdb_prefilter: skips regular expressions that cannot match a URL.
 *
 * For each expression a small, conservative parser finds a set of literal
 * strings such that every match contains at least one of them (for
 * "(/banner/|/sponsor/)" that is {"/banner/", "/sponsor/"}; for
 * ".*\/ymsgr*\.exe" it is {"/ymsg"}). A lookup lowercases the URL once, scans
 * it once for the first two bytes of every literal (a 64 Kib bigram bitmap),
 * and runs only the expressions one of whose literals is present, plus those
 * the parser could not analyse. Anything the parser does not fully
 * understand (look-arounds, back-references, \Q..\E, \x.., non-ASCII, ...)
 * gives "no requirement": that expression always runs. Correctness needs
 * only that a reported literal really is in every match; the fuzz target
 * fuzz_catdb_prefilter checks exactly that against PCRE2. */
#include "catdb/catdb_impl.h"

#include <stdlib.h>
#include <string.h>

#define PF_DEPTH_MAX 32

struct req {                 /* "some match contains one of these", or none */
    int none;
    size_t n;
    uint8_t len[CDB_PF_MAX_ALTS];
    char s[CDB_PF_MAX_ALTS][CDB_PF_MAX_LEN];
};

struct pf_parser {
    const char *p, *end;
    int bail;
    int depth;
};

enum quant { Q_ONE, Q_OPTIONAL, Q_ATLEAST1 };

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static size_t req_score(const struct req *r)
{
    if (r->none || r->n == 0)
        return 0;
    size_t m = CDB_PF_MAX_LEN;
    for (size_t i = 0; i < r->n; i++)
        if (r->len[i] < m)
            m = r->len[i];
    return m;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "{n}", "{n,}" or "{n,m}" at p: its length and n, else 0 (a literal '{'). */
static size_t brace_quant(const char *p, const char *end, unsigned *min)
{
    const char *q = p + 1;
    unsigned n = 0;
    if (q >= end || !is_digit(*q))
        return 0;
    while (q < end && is_digit(*q)) {
        n = n > 100000 ? n : n * 10 + (unsigned)(*q - '0');
        q++;
    }
    if (q < end && *q == ',')
        for (q++; q < end && is_digit(*q); q++)
            ;
    if (q >= end || *q != '}')
        return 0;
    *min = n;
    return (size_t)(q + 1 - p);
}

static enum quant parse_quant(struct pf_parser *ps)
{
    enum quant k = Q_ONE;
    unsigned min = 0;
    size_t bl;
    if (ps->p < ps->end && (*ps->p == '*' || *ps->p == '?')) {
        k = Q_OPTIONAL;
        ps->p++;
    } else if (ps->p < ps->end && *ps->p == '+') {
        k = Q_ATLEAST1;
        ps->p++;
    } else if (ps->p < ps->end && *ps->p == '{' && (bl = brace_quant(ps->p, ps->end, &min)) != 0) {
        k = min == 0 ? Q_OPTIONAL : Q_ATLEAST1;
        ps->p += bl;
    } else {
        return Q_ONE;
    }
    if (ps->p < ps->end && (*ps->p == '?' || *ps->p == '+'))
        ps->p++;                          /* lazy / possessive */
    return k;
}

/* Skips a character class starting at '['. */
static void skip_class(struct pf_parser *ps)
{
    const char *p = ps->p + 1;
    if (p < ps->end && *p == '^')
        p++;
    if (p < ps->end && *p == ']')
        p++;
    while (p < ps->end && *p != ']') {
        if (*p == '\\')
            p++;
        else if (*p == '[' && p + 1 < ps->end && p[1] == ':') {
            /* "[:alpha:]" (or "[:^alpha:]") only; else '[' is a member */
            const char *q = p + 2;
            if (q < ps->end && *q == '^')
                q++;
            while (q < ps->end && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
                q++;
            if (q + 1 < ps->end && q[0] == ':' && q[1] == ']')
                p = q + 1;
        }
        p++;
    }
    if (p >= ps->end)
        ps->bail = 1;
    else
        ps->p = p + 1;
}

static void consider(struct req *best, const struct req *cand)
{
    if (req_score(cand) > req_score(best))
        *best = *cand;
}

static void flush_run(struct req *best, const char *run, size_t *rlen)
{
    if (*rlen) {
        struct req c = { 0, 1, { (uint8_t)*rlen }, { { 0 } } };
        memcpy(c.s[0], run, *rlen);
        consider(best, &c);
    }
    *rlen = 0;
}

static void parse_alt(struct pf_parser *ps, struct req *out);

/* One atom that is not a literal character: '(', '[', '.', '^', '$', \d ... */
static void parse_other(struct pf_parser *ps, struct req *best, char *run, size_t *rlen)
{
    char c = *ps->p;
    struct req sub;
    sub.none = 1;
    if (c == '(') {
        ps->p++;
        if (ps->p < ps->end && *ps->p == '?' && ps->p + 1 < ps->end && ps->p[1] == ':')
            ps->p += 2;
        else if (ps->p < ps->end && (*ps->p == '?' || *ps->p == '*'))
            ps->bail = 1;
        if (ps->bail || ++ps->depth > PF_DEPTH_MAX) {
            ps->bail = 1;
            return;
        }
        parse_alt(ps, &sub);
        ps->depth--;
        if (ps->bail || ps->p >= ps->end || *ps->p != ')') {
            ps->bail = 1;
            return;
        }
        ps->p++;
    } else if (c == '[') {
        skip_class(ps);
    } else if (c == '\\') {
        ps->p++;                          /* parse_seq checked it is a class escape */
        ps->p++;
    } else {
        ps->p++;                          /* '.', '^', '$' */
    }
    if (ps->bail)
        return;
    enum quant q = parse_quant(ps);
    flush_run(best, run, rlen);
    if (q != Q_OPTIONAL && !sub.none)
        consider(best, &sub);
}

static void add_literal(struct pf_parser *ps, struct req *best, char *run, size_t *rlen, unsigned char ch)
{
    enum quant q = parse_quant(ps);
    if (q == Q_OPTIONAL) {
        flush_run(best, run, rlen);
        return;
    }
    if (*rlen < CDB_PF_MAX_LEN)           /* a prefix of a required run is required too */
        run[(*rlen)++] = (char)lower(ch);
    if (q == Q_ATLEAST1)
        flush_run(best, run, rlen);
}

static void parse_seq(struct pf_parser *ps, struct req *out)
{
    char run[CDB_PF_MAX_LEN];
    size_t rlen = 0;
    struct req best;
    memset(&best, 0, sizeof best);
    best.none = 1;
    while (!ps->bail && ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
        unsigned char c = (unsigned char)*ps->p;
        if (c >= 0x80 || c == '*' || c == '+' || c == '?' || c == '{') {
            /* '{' that is no quantifier is a literal in PCRE2 10.42 but
             * "{,n}" is a quantifier from 10.43 on: not analysed */
            ps->bail = 1;
        } else if (c == '\\') {
            if (ps->p + 1 >= ps->end) {
                ps->bail = 1;
                break;
            }
            unsigned char e = (unsigned char)ps->p[1];
            if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9') || e >= 0x80) {
                if (!strchr("dDwWsSbBAzZGhHvVRN", e) || e == 0)
                    ps->bail = 1;         /* \x.., \Q, \1, \p{..}, \e ...: not analysed */
                else
                    parse_other(ps, &best, run, &rlen);
            } else {
                ps->p += 2;
                add_literal(ps, &best, run, &rlen, e);
            }
        } else if (c == '(' || c == '[' || c == '.' || c == '^' || c == '$') {
            parse_other(ps, &best, run, &rlen);
        } else {
            ps->p++;
            add_literal(ps, &best, run, &rlen, c);
        }
    }
    flush_run(&best, run, &rlen);
    *out = best;
}

static void parse_alt(struct pf_parser *ps, struct req *out)
{
    parse_seq(ps, out);
    while (!ps->bail && ps->p < ps->end && *ps->p == '|') {
        struct req next;
        ps->p++;
        parse_seq(ps, &next);
        if (out->none || next.none || out->n + next.n > CDB_PF_MAX_ALTS) {
            out->none = 1;
            out->n = 0;
            continue;
        }
        for (size_t i = 0; i < next.n; i++) {
            out->len[out->n] = next.len[i];
            memcpy(out->s[out->n], next.s[i], next.len[i]);
            out->n++;
        }
    }
}

int cdb_pf_extract(const char *pattern, char lits[][CDB_PF_MAX_LEN], uint8_t *lens, size_t *n)
{
    struct pf_parser ps = { pattern, pattern + strlen(pattern), 0, 0 };
    struct req r;
    *n = 0;
    parse_alt(&ps, &r);
    if (ps.bail || ps.p != ps.end || r.none || req_score(&r) < 2)
        return 0;
    for (size_t i = 0; i < r.n; i++) {
        memcpy(lits[i], r.s[i], r.len[i]);
        lens[i] = r.len[i];
    }
    *n = r.n;
    return 1;
}

/* ---- the set of all expressions' literals ---- */

static uint16_t bigram(const char *s)
{
    return (uint16_t)((unsigned char)s[0] << 8 | (unsigned char)s[1]);
}

static int lit_cmp(const void *a, const void *b)
{
    const struct cdb_pf_lit *x = a, *y = b;
    return (int)x->key - (int)y->key;
}

int cdb_pf_build(struct cdb_prefilters *pf, const char *const *patterns, size_t n)
{
    memset(pf, 0, sizeof *pf);
    size_t cap = 0;
    for (size_t e = 0; e < n && e < CDB_PF_MAX_EXPRS; e++) {
        char lits[CDB_PF_MAX_ALTS][CDB_PF_MAX_LEN];
        uint8_t lens[CDB_PF_MAX_ALTS];
        size_t k;
        if (!cdb_pf_extract(patterns[e], lits, lens, &k))
            continue;
        if (pf->nlits + k > cap) {
            size_t nc = (pf->nlits + k) * 2;
            void *q = realloc(pf->lits, nc * sizeof *pf->lits);
            if (!q)
                return -1;
            pf->lits = q;
            cap = nc;
        }
        for (size_t i = 0; i < k; i++) {
            struct cdb_pf_lit *l = &pf->lits[pf->nlits++];
            memcpy(l->s, lits[i], lens[i]);
            l->len = lens[i];
            l->expr = (uint32_t)e;
            l->key = bigram(l->s);
            pf->bigram[l->key >> 3] |= (uint8_t)(1u << (l->key & 7));
        }
        pf->has[e >> 3] |= (uint8_t)(1u << (e & 7));
    }
    if (pf->nlits)
        qsort(pf->lits, pf->nlits, sizeof *pf->lits, lit_cmp);
    return 0;
}

void cdb_pf_free(struct cdb_prefilters *pf)
{
    free(pf->lits);
    pf->lits = NULL;
    pf->nlits = 0;
}

/* Sets bit e of may[] for every expression that may match s[0..n) (already
 * lower case); expressions without a prefilter are the caller's to run. */
void cdb_pf_scan(const struct cdb_prefilters *pf, const char *s, size_t n, uint8_t *may)
{
    for (size_t i = 0; i + 1 < n; i++) {
        uint16_t key = bigram(s + i);
        if (!(pf->bigram[key >> 3] & (1u << (key & 7))))
            continue;
        size_t lo = 0, hi = pf->nlits;
        while (lo < hi) {                 /* first literal with this bigram */
            size_t mid = lo + (hi - lo) / 2;
            if (pf->lits[mid].key < key)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t j = lo; j < pf->nlits && pf->lits[j].key == key; j++) {
            const struct cdb_pf_lit *l = &pf->lits[j];
            if (l->len <= n - i && memcmp(s + i, l->s, l->len) == 0)
                may[l->expr >> 3] |= (uint8_t)(1u << (l->expr & 7));
        }
    }
}
