/* catdb lookups and accessors (see catdb.h). Everything here reads the
 * mapped file only; every offset that catdb.c did not check at open is
 * bounds-checked where it is used, so a crafted file cannot make a lookup
 * read outside the mapping. No allocation: PCRE2 gets a stack arena. */
#include "catdb/catdb_impl.h"

#include <string.h>
#include <strings.h>

static void add_cats(const struct catdb *db, uint32_t cats, struct catset *out)
{
    if (cats == CDB_CATS_NONE)
        return;
    if (!(cats & CDB_CATS_POOL)) {
        if (cats < db->ncats)
            catset_add(out, (uint16_t)cats);
        return;
    }
    uint32_t i = cats & ~CDB_CATS_POOL;
    if (i >= db->npool)
        return;
    uint32_t n = db->pool[i];
    if (n > db->npool - i - 1)
        return;
    for (uint32_t k = 1; k <= n; k++)
        if (db->pool[i + k] < db->ncats)
            catset_add(out, db->pool[i + k]);
}

/* The slot holding key s[0..n) with hash h, or NULL. The probe run is
 * bounded by the compiler's longest run, so even a corrupt table ends. */
static const struct cdb_slot *probe(const struct catdb *db, const char *s, size_t n, uint64_t h)
{
    uint32_t tag = (uint32_t)(h >> 32);
    uint64_t i = h & db->slot_mask;
    for (uint32_t step = 0; step <= db->max_probe; step++, i = (i + 1) & db->slot_mask) {
        const struct cdb_slot *sl = &db->slots[i];
        if (sl->key_off == 0)
            return NULL;
        if (sl->tag != tag || sl->key_off >= db->str_size)
            continue;
        /* The pool ends with NUL and s has none, so this stops inside it. */
        const char *k = db->str + sl->key_off;
        size_t j = 0;
        while (j < n && k[j] == s[j])
            j++;
        if (j == n && k[n] == '\0')
            return sl;
    }
    return NULL;
}

static int is_next_sep(char c)
{
    return c == '/' || c == '?' || c == '&' || c == '#' || c == ';';
}

static int is_tail_sep(char c)
{
    return is_next_sep(c) || c == '=';
}

static int path_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an < bn ? -1 : an > bn);
}

/* Exact path p[0..n) among a host's URL entries (sorted by path_cmp). */
static const struct cdb_url *find_path(const struct catdb *db, const struct cdb_urlhost *uh, const char *p, size_t n)
{
    size_t lo = 0, hi = uh->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct cdb_url *u = &db->urls[uh->first + mid];
        int c = path_cmp(db->str + u->path_off, u->path_len, p, n);
        if (c == 0)
            return u;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* A URL entry matches when it is a prefix of the request path ending at a
 * boundary: the path's end, before one of / ? & # ;, or after an entry that
 * itself ends with one of / ? & = # ;. */
static void match_urls(const struct catdb *db, uint32_t urls, const char *path, struct catset *out)
{
    if (urls >= db->nurlhosts || db->urlhosts[urls].count == 0)
        return;
    const struct cdb_urlhost *uh = &db->urlhosts[urls];
    char p[CATDB_URL_PATH_MAX];
    size_t n = 0;
    if (!path || path[0] != '/')
        p[n++] = '/';
    for (; path && *path && n < sizeof p; path++)
        p[n++] = (char)((*path >= 'A' && *path <= 'Z') ? *path + 32 : *path);
    for (size_t k = 1; k <= n; k++) {
        if (!(k == n || is_next_sep(p[k]) || is_tail_sep(p[k - 1])))
            continue;
        const struct cdb_url *u = find_path(db, uh, p, k);
        if (u)
            add_cats(db, u->cats, out);
    }
}

/* Walks the host's dot-suffixes, hashing backwards once. Suffixes that the
 * label-count masks let through are checked against the Bloom filter (one
 * block for all suffixes of two labels or more), and those that pass are
 * probed in the slot table, prefetched together so the misses overlap. */
#define WALK_MAX 128   /* a 253-byte host has at most 127 labels */
static void walk(const struct catdb *db, const char *h, size_t n, int is_ip, const char *path, struct catset *out)
{
    size_t ustart = is_ip ? 0 : cdb_www_strip(h, (uint32_t)n);
    uint64_t hash = CDB_FNV_OFFSET, dmask = db->meta->dom_label_mask, umask = db->meta->url_label_mask;
    uint64_t hs[WALK_MAX], base = 0;
    size_t at[WALK_MAX], nc = 0;
    unsigned labels = 0;
    for (size_t i = n; i-- > 0 && nc < WALK_MAX;) {
        hash = cdb_hash_step(hash, (unsigned char)h[i]);
        if (i != 0 && h[i - 1] != '.')
            continue;
        uint64_t f = cdb_hash_final(hash);
        if (++labels <= 2) {
            base = f;                       /* a key's block is its last two labels' hash */
            __builtin_prefetch(&db->bloom[cdb_bloom_word(base, 0, db->bloom_mask)]);
        }
        if (is_ip && i != 0)
            continue;                       /* IP literals match exactly */
        uint64_t bit = 1ull << cdb_label_bit(labels);
        if (!(dmask & bit) && !(i == ustart && (umask & bit)))
            continue;
        uint64_t want = cdb_bloom_bits(f);
        if ((db->bloom[cdb_bloom_word(base, f, db->bloom_mask)] & want) != want)
            continue;
        __builtin_prefetch(&db->slots[f & db->slot_mask]);
        hs[nc] = f;
        at[nc++] = i;
    }
    for (size_t c = 0; c < nc; c++) {
        const struct cdb_slot *sl = probe(db, h + at[c], n - at[c], hs[c]);
        if (!sl)
            continue;
        add_cats(db, sl->cats, out);
        if (at[c] == ustart && sl->urls != CDB_NO_URLS)
            match_urls(db, sl->urls, path, out);
    }
}

/* PCRE2 allocates its match data (and, without JIT, its frames) from this
 * arena on the caller's stack; when it is exhausted the match fails. */
struct re_arena {
    size_t used;
    _Alignas(16) unsigned char buf[CATDB_RE_ARENA_SIZE];
};

static void *arena_malloc(PCRE2_SIZE size, void *data)
{
    struct re_arena *a = data;
    size_t need = (size + 15) & ~(size_t)15;
    if (need < size || need > sizeof a->buf - a->used)
        return NULL;
    void *p = a->buf + a->used;
    a->used += need;
    return p;
}

static void arena_free(void *p, void *data)
{
    (void)p;
    (void)data;
}

/* Builds "host/path" in lower case: the expressions are caseless (ASCII
 * only, the default PCRE2 tables), so they see the same URL the prefilter
 * scans. */
static size_t expr_subject(const char *h, size_t n, const char *path, char *low, size_t cap)
{
    size_t len = n < cap ? n : cap;
    memcpy(low, h, len);                  /* the host is lower case already */
    if (len < cap && (!path || path[0] != '/'))
        low[len++] = '/';
    for (; path && *path && len < cap; path++)
        low[len++] = (char)((*path >= 'A' && *path <= 'Z') ? *path + 32 : *path);
    return len;
}

/* The code to match expression i with: its JIT copy when ready; the first
 * caller compiles it (struct cdb_jit), everyone else meanwhile and for good
 * when JIT is unavailable gets the interpreted original. */
static const pcre2_code *expr_code(const struct catdb *db, uint32_t i)
{
    struct cdb_jit *j = &db->jit[i];
    pcre2_code *c = atomic_load_explicit(&j->code, memory_order_acquire);
    if (c)
        return c;
    int expect = CDB_JIT_NONE;
    if (!atomic_compare_exchange_strong(&j->state, &expect, CDB_JIT_BUSY))
        return db->re[i];
    c = pcre2_code_copy(db->re[i]);
    if (c && pcre2_jit_compile(c, PCRE2_JIT_COMPLETE) != 0) {
        pcre2_code_free(c);
        c = NULL;
    }
    if (c)
        atomic_store_explicit(&j->code, c, memory_order_release);
    atomic_store(&j->state, CDB_JIT_DONE);
    return c ? c : db->re[i];
}

static void match_exprs(const struct catdb *db, const char *h, size_t n, const char *path, struct catset *out)
{
    char low[CATDB_EXPR_SUBJECT_MAX];
    uint8_t may[CDB_PF_MAX_EXPRS / 8];
    size_t len = expr_subject(h, n, path, low, sizeof low);
    size_t nbytes = (db->nexprs < CDB_PF_MAX_EXPRS ? db->nexprs + 7 : CDB_PF_MAX_EXPRS) / 8;
    memset(may, 0, nbytes);
    cdb_pf_scan(&db->pf, low, len, may);
    struct re_arena arena;
    arena.used = 0;
    pcre2_general_context *gctx = NULL;
    pcre2_match_data *md = NULL;
    for (uint32_t i = 0; i < db->nexprs; i++) {
        uint16_t cat = (uint16_t)db->exprs[i].cat;
        if (catset_has(out, cat))
            continue;
        if (i < CDB_PF_MAX_EXPRS && (db->pf.has[i >> 3] & (1u << (i & 7))) && !(may[i >> 3] & (1u << (i & 7))))
            continue;                     /* none of its required literals is in the URL */
        if (!md) {
            gctx = pcre2_general_context_create(arena_malloc, arena_free, &arena);
            md = gctx ? pcre2_match_data_create(1, gctx) : NULL;
            if (!md)
                return;
        }
        if (pcre2_match(expr_code(db, i), (PCRE2_SPTR)low, len, 0, 0, md, db->mctx) >= 0)
            catset_add(out, cat);
    }
}

void catdb_lookup(const struct catdb *db, const char *host, const char *path, struct catset *out)
{
    out->n = 0;
    if (!db || !host)
        return;
    char h[CATDB_HOST_MAX];
    int is_ip = 0;
    int n = catdb_normalize_host(host, h, sizeof h, &is_ip);
    if (n <= 0)
        return;
    walk(db, h, (size_t)n, is_ip, path, out);
    if (db->nexprs)
        match_exprs(db, h, (size_t)n, path, out);
}

/* ---- accessors ---- */

size_t catdb_category_count(const struct catdb *db)
{
    return db ? db->ncats : 0;
}

const char *catdb_category_name(const struct catdb *db, uint16_t id)
{
    if (!db || id >= db->ncats)
        return NULL;
    return db->names[id];
}

/* "ja-JP" and "ja_JP" match "ja". */
static int lang_eq(const char *stored, const char *want)
{
    size_t n = strcspn(want, "-_");
    return n && strlen(stored) == n && strncasecmp(stored, want, n) == 0;
}

/* The display name (field 0) or description (field 1) in `lang`, else in
 * English; NULL when neither is there. */
static const char *find_text(const struct catdb *db, uint16_t id, const char *lang, int field)
{
    if (!db || id >= db->ncats)
        return NULL;
    const struct cdb_cat *c = &db->cats[id];
    const char *tries[2] = { lang ? lang : "en", "en" };
    for (int t = 0; t < 2; t++)
        for (uint32_t i = 0; i < c->disp_count; i++) {
            const struct cdb_disp *d = &db->disp[c->disp_first + i];
            const char *text = db->str + (field ? d->desc_off : d->name_off);
            if (lang_eq(db->str + d->lang_off, tries[t]) && text[0])
                return text;
        }
    return NULL;
}

const char *catdb_category_display(const struct catdb *db, uint16_t id, const char *lang)
{
    const char *t = find_text(db, id, lang, 0);
    return t ? t : catdb_category_name(db, id);
}

const char *catdb_category_description(const struct catdb *db, uint16_t id, const char *lang)
{
    const char *t = find_text(db, id, lang, 1);
    return t ? t : "";
}

int catdb_category_id(const struct catdb *db, const char *name)
{
    if (!db || !name)
        return -1;
    for (uint32_t i = 0; i < db->ncats; i++)
        if (strcmp(db->names[i], name) == 0)
            return (int)i;
    for (uint32_t i = 0; i < db->nalias; i++)
        if (strcmp(db->names[db->ncats + i], name) == 0)
            return (int)db->alias_cat[i];
    return -1;
}

void catdb_get_info(const struct catdb *db, struct catdb_info *out)
{
    memset(out, 0, sizeof *out);
    if (!db)
        return;
    out->format_version = db->hdr->version;
    out->build_time = db->hdr->build_time;
    out->file_size = db->size;
    out->categories = db->ncats;
    out->aliases = db->nalias;
    out->keys = db->meta->n_keys;
    out->domains = db->meta->n_domains;
    out->urls = db->meta->n_urls;
    out->expressions = db->nexprs;
}

void catdb_category_stats(const struct catdb *db, uint16_t id, struct catdb_category_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!db || id >= db->ncats)
        return;
    out->domains = db->cats[id].n_domains;
    out->urls = db->cats[id].n_urls;
    out->expressions = db->cats[id].n_exprs;
}

size_t catdb_alias_count(const struct catdb *db)
{
    return db ? db->nalias : 0;
}

const char *catdb_alias_name(const struct catdb *db, size_t i, uint16_t *target)
{
    if (!db || i >= db->nalias)
        return NULL;
    if (target)
        *target = db->alias_cat[i];
    return db->names[db->ncats + i];
}
