/* catdb_build: the in-memory database and its serialiser (see catdb_build.h). */
#include "catdb/catdb_build.h"
#include "catdb/catdb.h"
#include "catdb/catdb_format.h"
#include "util/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define NIL 0xFFFFFFFFu
#define BUILD_MAX_CATEGORIES 65535u
#define BUILD_MAX_BYTES 0xF0000000u     /* all offsets fit in 32 bits */

struct key {            /* one distinct host */
    uint64_t hash;
    uint32_t key_off, key_len;
    uint32_t cat_head;  /* list of struct catnode (domain entries) */
    uint32_t url_head;  /* list of struct urlnode */
};
struct catnode {
    uint32_t next;
    uint16_t cat;
};
struct urlnode {
    uint32_t next;
    uint32_t key;
    uint32_t path_off, path_len;
    uint16_t cat;
};
struct disp {
    uint32_t cat, lang_off, name_off, desc_off;
};
struct bcat {
    uint32_t name_off, n_exprs;
    uint64_t n_domains, n_urls;
};
struct pair {
    uint32_t a, b;      /* (name_off, cat) for aliases, (pattern_off, cat) for expressions */
};

/* Open-addressing index of u32 ids (id + 1 stored, 0 = empty). */
struct index {
    uint32_t *slot;
    size_t cap;         /* power of two */
    size_t used;
};

struct cdb_builder {
    char *str;
    size_t nstr, capstr;
    struct bcat *cats;
    size_t ncats, capcats;
    struct key *keys;
    size_t nkeys, capkeys;
    struct catnode *cn;
    size_t ncn, capcn;
    struct urlnode *un;
    size_t nun, capun;
    struct disp *disp;
    size_t ndisp, capdisp;
    struct pair *alias, *expr;
    size_t nalias, capalias, nexpr, capexpr;
    struct index kidx, uidx;
    uint64_t n_domains, n_urls;
};

static int grow(void *pp, size_t *cap, size_t need, size_t elem)
{
    void **p = pp;
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    if (n > SIZE_MAX / elem)
        return -ENOMEM;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* Appends s[0..n) + NUL to the string pool; returns its offset or 0 on failure
 * (offset 0 is the empty string, never a real result except for ""). */
static uint32_t str_add(struct cdb_builder *b, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (b->nstr + n + 1 > BUILD_MAX_BYTES || grow(&b->str, &b->capstr, b->nstr + n + 1, 1) < 0)
        return 0;
    uint32_t off = (uint32_t)b->nstr;
    memcpy(b->str + b->nstr, s, n);
    b->str[b->nstr + n] = '\0';
    b->nstr += n + 1;
    return off;
}

struct cdb_builder *cdb_builder_new(void)
{
    struct cdb_builder *b = calloc(1, sizeof *b);
    if (!b || grow(&b->str, &b->capstr, 1 << 16, 1) < 0) {
        free(b);
        return NULL;
    }
    b->str[0] = '\0';
    b->nstr = 1;
    return b;
}

void cdb_builder_free(struct cdb_builder *b)
{
    if (!b)
        return;
    free(b->str);
    free(b->cats);
    free(b->keys);
    free(b->cn);
    free(b->un);
    free(b->disp);
    free(b->alias);
    free(b->expr);
    free(b->kidx.slot);
    free(b->uidx.slot);
    free(b);
}

int cdb_builder_find_category(const struct cdb_builder *b, const char *name)
{
    for (size_t i = 0; i < b->ncats; i++)
        if (strcmp(b->str + b->cats[i].name_off, name) == 0)
            return (int)i;
    return -1;
}

int cdb_builder_add_category(struct cdb_builder *b, const char *name)
{
    int id = cdb_builder_find_category(b, name);
    if (id >= 0)
        return id;
    if (b->ncats >= BUILD_MAX_CATEGORIES || grow(&b->cats, &b->capcats, b->ncats + 1, sizeof *b->cats) < 0)
        return -ENOMEM;
    uint32_t off = str_add(b, name, strlen(name));
    if (!off)
        return -ENOMEM;
    memset(&b->cats[b->ncats], 0, sizeof b->cats[0]);
    b->cats[b->ncats].name_off = off;
    return (int)b->ncats++;
}

int cdb_builder_add_alias(struct cdb_builder *b, const char *name, uint16_t cat)
{
    if (grow(&b->alias, &b->capalias, b->nalias + 1, sizeof *b->alias) < 0)
        return -ENOMEM;
    uint32_t off = str_add(b, name, strlen(name));
    if (!off)
        return -ENOMEM;
    b->alias[b->nalias++] = (struct pair){ off, cat };
    return 0;
}

int cdb_builder_set_display(struct cdb_builder *b, uint16_t cat, const char *lang, const char *name, const char *desc)
{
    for (size_t i = 0; i < b->ndisp; i++) {
        struct disp *d = &b->disp[i];
        if (d->cat == cat && strcmp(b->str + d->lang_off, lang) == 0) {
            if (name && *name)
                d->name_off = str_add(b, name, strlen(name));
            if (desc && *desc)
                d->desc_off = str_add(b, desc, strlen(desc));
            return 0;
        }
    }
    if (grow(&b->disp, &b->capdisp, b->ndisp + 1, sizeof *b->disp) < 0)
        return -ENOMEM;
    struct disp d = { cat, str_add(b, lang, strlen(lang)), 0, 0 };
    if (!d.lang_off)
        return -ENOMEM;
    if (name && *name)
        d.name_off = str_add(b, name, strlen(name));
    if (desc && *desc)
        d.desc_off = str_add(b, desc, strlen(desc));
    b->disp[b->ndisp++] = d;
    return 0;
}

int cdb_builder_add_expr(struct cdb_builder *b, const char *pattern, uint16_t cat)
{
    for (size_t i = 0; i < b->nexpr; i++)
        if (b->expr[i].b == cat && strcmp(b->str + b->expr[i].a, pattern) == 0)
            return 0;
    if (grow(&b->expr, &b->capexpr, b->nexpr + 1, sizeof *b->expr) < 0)
        return -ENOMEM;
    uint32_t off = str_add(b, pattern, strlen(pattern));
    if (!off)
        return -ENOMEM;
    b->expr[b->nexpr++] = (struct pair){ off, cat };
    b->cats[cat].n_exprs++;
    return 1;
}

/* ---- the index tables (keys by host, URL nodes by key+path+category) ---- */

static int index_rehash(struct index *ix, size_t cap, void (*hash_of)(const void *, uint32_t, uint64_t *),
                        const void *ctx)
{
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (!slot)
        return -ENOMEM;
    for (size_t i = 0; i < ix->cap; i++) {
        if (!ix->slot[i])
            continue;
        uint64_t h;
        hash_of(ctx, ix->slot[i] - 1, &h);
        size_t j = h & (cap - 1);
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = ix->slot[i];
    }
    free(ix->slot);
    ix->slot = slot;
    ix->cap = cap;
    return 0;
}

static void key_hash_of(const void *ctx, uint32_t id, uint64_t *h)
{
    const struct cdb_builder *b = ctx;
    *h = b->keys[id].hash;
}

static uint64_t url_hash(uint32_t key, const char *path, size_t n, uint16_t cat)
{
    uint64_t h = CDB_FNV_OFFSET;
    for (size_t i = 0; i < n; i++)
        h = cdb_hash_step(h, (unsigned char)path[i]);
    return cdb_hash_final(h ^ ((uint64_t)key << 16) ^ cat);
}

static void url_hash_of(const void *ctx, uint32_t id, uint64_t *h)
{
    const struct cdb_builder *b = ctx;
    const struct urlnode *u = &b->un[id];
    *h = url_hash(u->key, b->str + u->path_off, u->path_len, u->cat);
}

static int index_reserve(struct index *ix, void (*hash_of)(const void *, uint32_t, uint64_t *),
                         const void *ctx)
{
    if ((ix->used + 1) * 2 <= ix->cap)
        return 0;
    return index_rehash(ix, ix->cap ? ix->cap * 2 : 1024, hash_of, ctx);
}

/* The key for host[0..n), created when missing; NIL on failure. */
static uint32_t key_get(struct cdb_builder *b, const char *host, size_t n)
{
    if (n == 0 || n >= CATDB_HOST_MAX)
        return NIL;
    if (index_reserve(&b->kidx, key_hash_of, b) < 0)
        return NIL;
    uint64_t h = cdb_hash_key(host, (uint32_t)n);
    size_t mask = b->kidx.cap - 1, j = h & mask;
    for (; b->kidx.slot[j]; j = (j + 1) & mask) {
        const struct key *k = &b->keys[b->kidx.slot[j] - 1];
        if (k->hash == h && k->key_len == n && memcmp(b->str + k->key_off, host, n) == 0)
            return b->kidx.slot[j] - 1;
    }
    if (grow(&b->keys, &b->capkeys, b->nkeys + 1, sizeof *b->keys) < 0)
        return NIL;
    uint32_t off = str_add(b, host, n);
    if (!off)
        return NIL;
    b->keys[b->nkeys] = (struct key){ h, off, (uint32_t)n, NIL, NIL };
    b->kidx.slot[j] = (uint32_t)++b->nkeys;
    b->kidx.used++;
    return (uint32_t)(b->nkeys - 1);
}

int cdb_builder_add_domain(struct cdb_builder *b, const char *host, size_t n, uint16_t cat)
{
    uint32_t k = key_get(b, host, n);
    if (k == NIL)
        return -ENOMEM;
    for (uint32_t c = b->keys[k].cat_head; c != NIL; c = b->cn[c].next)
        if (b->cn[c].cat == cat)
            return 0;
    if (grow(&b->cn, &b->capcn, b->ncn + 1, sizeof *b->cn) < 0)
        return -ENOMEM;
    b->cn[b->ncn] = (struct catnode){ b->keys[k].cat_head, cat };
    b->keys[k].cat_head = (uint32_t)b->ncn++;
    b->cats[cat].n_domains++;
    b->n_domains++;
    return 1;
}

int cdb_builder_add_url(struct cdb_builder *b, const char *host, size_t hn, const char *path, size_t pn, uint16_t cat)
{
    uint32_t k = key_get(b, host, hn);
    if (k == NIL)
        return -ENOMEM;
    if (pn == 0 || pn >= BUILD_MAX_BYTES)
        return -EINVAL;
    if (index_reserve(&b->uidx, url_hash_of, b) < 0)
        return -ENOMEM;
    uint64_t h = url_hash(k, path, pn, cat);
    size_t mask = b->uidx.cap - 1, j = h & mask;
    for (; b->uidx.slot[j]; j = (j + 1) & mask) {
        const struct urlnode *u = &b->un[b->uidx.slot[j] - 1];
        if (u->key == k && u->cat == cat && u->path_len == pn && memcmp(b->str + u->path_off, path, pn) == 0)
            return 0;
    }
    if (grow(&b->un, &b->capun, b->nun + 1, sizeof *b->un) < 0)
        return -ENOMEM;
    uint32_t off = str_add(b, path, pn);
    if (!off)
        return -ENOMEM;
    b->un[b->nun] = (struct urlnode){ b->keys[k].url_head, k, off, (uint32_t)pn, cat };
    b->keys[k].url_head = (uint32_t)b->nun++;
    b->uidx.slot[j] = (uint32_t)b->nun;
    b->uidx.used++;
    b->cats[cat].n_urls++;
    b->n_urls++;
    return 1;
}

void cdb_builder_counts(const struct cdb_builder *b, struct cdb_build_counts *out)
{
    out->categories = (uint32_t)b->ncats;
    out->aliases = (uint32_t)b->nalias;
    out->keys = (uint32_t)b->nkeys;
    out->expressions = (uint32_t)b->nexpr;
    out->domains = b->n_domains;
    out->urls = b->n_urls;
}

void cdb_builder_category_counts(const struct cdb_builder *b, uint16_t cat, uint64_t *domains, uint64_t *urls,
                                 uint32_t *exprs)
{
    *domains = cat < b->ncats ? b->cats[cat].n_domains : 0;
    *urls = cat < b->ncats ? b->cats[cat].n_urls : 0;
    *exprs = cat < b->ncats ? b->cats[cat].n_exprs : 0;
}


/* ---- serialisation ---- */

struct vec16 {
    uint16_t *v;
    size_t n, cap;
};

/* Encodes ids[0..n) (sorted here) as a single id or an index into the pool. */
static uint32_t encode_ids(uint16_t *ids, size_t n, struct vec16 *pool)
{
    if (n == 0)
        return CDB_CATS_NONE;
    if (n == 1)
        return ids[0];
    for (size_t i = 1; i < n; i++)             /* insertion sort: lists are short */
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            uint16_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    if (pool->n + n + 1 >= CDB_CATS_POOL || grow(&pool->v, &pool->cap, pool->n + n + 1, sizeof *pool->v) < 0)
        return NIL;
    uint32_t at = (uint32_t)pool->n;
    pool->v[pool->n++] = (uint16_t)n;
    memcpy(pool->v + pool->n, ids, n * sizeof *ids);
    pool->n += n;
    return at | CDB_CATS_POOL;
}

static uint32_t encode_cats(const struct cdb_builder *b, uint32_t head, struct vec16 *pool, uint16_t *tmp)
{
    size_t n = 0;
    for (uint32_t c = head; c != NIL && n < BUILD_MAX_CATEGORIES; c = b->cn[c].next)
        tmp[n++] = b->cn[c].cat;
    return encode_ids(tmp, n, pool);
}

struct tables {
    struct cdb_meta meta;
    struct cdb_slot *slots;
    size_t nslots;
    uint64_t *bloom;
    size_t nbloom;
    struct vec16 pool;
    struct cdb_urlhost *uh;
    size_t nuh;
    struct cdb_url *urls;
    size_t nurls;
    struct cdb_cat *cats;
    struct cdb_disp *disp;
    struct cdb_alias *alias;
    struct cdb_expr *expr;
    uint16_t *tmp;      /* scratch for category lists, ncats entries */
    uint32_t *order;    /* scratch for URL node indices */
};

static void tables_free(struct tables *t)
{
    free(t->slots);
    free(t->bloom);
    free(t->pool.v);
    free(t->uh);
    free(t->urls);
    free(t->cats);
    free(t->disp);
    free(t->alias);
    free(t->expr);
    free(t->tmp);
    free(t->order);
}

static const struct cdb_builder *g_sort_b;   /* qsort has no context pointer in C11 */

static int url_node_cmp(const void *a, const void *b)
{
    const struct urlnode *x = &g_sort_b->un[*(const uint32_t *)a], *y = &g_sort_b->un[*(const uint32_t *)b];
    size_t n = x->path_len < y->path_len ? x->path_len : y->path_len;
    int c = memcmp(g_sort_b->str + x->path_off, g_sort_b->str + y->path_off, n);
    if (c)
        return c;
    if (x->path_len != y->path_len)
        return x->path_len < y->path_len ? -1 : 1;
    return (int)x->cat - (int)y->cat;
}

/* Writes one key's URL entries (sorted by path, one record per path). */
static uint32_t build_key_urls(const struct cdb_builder *b, struct tables *t, uint32_t head)
{
    size_t n = 0;
    for (uint32_t u = head; u != NIL; u = b->un[u].next)
        t->order[n++] = u;
    g_sort_b = b;
    qsort(t->order, n, sizeof *t->order, url_node_cmp);
    uint32_t first = (uint32_t)t->nurls;
    for (size_t i = 0; i < n;) {
        const struct urlnode *u = &b->un[t->order[i]];
        size_t j = i, m = 0;
        while (j < n && b->un[t->order[j]].path_len == u->path_len &&
               memcmp(b->str + b->un[t->order[j]].path_off, b->str + u->path_off, u->path_len) == 0) {
            if (m < BUILD_MAX_CATEGORIES)
                t->tmp[m++] = b->un[t->order[j]].cat;
            j++;
        }
        uint32_t cats = encode_ids(t->tmp, m, &t->pool);
        if (cats == NIL)
            return NIL;
        t->urls[t->nurls++] = (struct cdb_url){ u->path_off, u->path_len, cats };
        i = j;
    }
    t->uh[t->nuh] = (struct cdb_urlhost){ first, (uint32_t)(t->nurls - first) };
    return (uint32_t)t->nuh++;
}

static int build_slots(const struct cdb_builder *b, struct tables *t)
{
    size_t cap = 8;
    /* Load factor <= 0.85: the Bloom filter keeps most absent suffixes away
     * from the table, so a fuller table costs little and halves its size. */
    while (cap * 17 < (b->nkeys + 1) * 20)
        cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    t->uh = calloc(b->nkeys ? b->nkeys : 1, sizeof *t->uh);
    t->urls = calloc(b->nun ? b->nun : 1, sizeof *t->urls);
    t->order = calloc(b->nun ? b->nun : 1, sizeof *t->order);
    t->tmp = calloc(BUILD_MAX_CATEGORIES + 1, sizeof *t->tmp);
    if (!t->slots || !t->uh || !t->urls || !t->order || !t->tmp)
        return -ENOMEM;
    t->nslots = cap;
    t->nbloom = CDB_BLOOM_BLOCK_WORDS;
    while (t->nbloom * 8 < b->nkeys)          /* at least 8 bits per key */
        t->nbloom *= 2;
    if (!(t->bloom = calloc(t->nbloom, sizeof *t->bloom)))
        return -ENOMEM;
    for (size_t i = 0; i < b->nkeys; i++) {
        const struct key *k = &b->keys[i];
        struct cdb_slot s = { (uint32_t)(k->hash >> 32), k->key_off, CDB_CATS_NONE, CDB_NO_URLS };
        uint64_t bit = 1ull << cdb_label_bit(cdb_count_labels(b->str + k->key_off, k->key_len));
        if (k->cat_head != NIL) {
            if ((s.cats = encode_cats(b, k->cat_head, &t->pool, t->tmp)) == NIL)
                return -ENOMEM;
            t->meta.dom_label_mask |= bit;
        }
        if (k->url_head != NIL) {
            if ((s.urls = build_key_urls(b, t, k->url_head)) == NIL)
                return -ENOMEM;
            t->meta.url_label_mask |= bit;
        }
        const char *ks = b->str + k->key_off;
        uint32_t bs = cdb_base_start(ks, k->key_len);
        uint64_t base = cdb_hash_key(ks + bs, k->key_len - bs);
        t->bloom[cdb_bloom_word(base, k->hash, t->nbloom - 1)] |= cdb_bloom_bits(k->hash);
        size_t j = k->hash & (cap - 1);
        uint32_t dist = 0;
        while (t->slots[j].key_off) {
            j = (j + 1) & (cap - 1);
            dist++;
        }
        t->slots[j] = s;
        if (dist > t->meta.max_probe)
            t->meta.max_probe = dist;
    }
    t->meta.n_keys = (uint32_t)b->nkeys;
    t->meta.n_domains = b->n_domains;
    t->meta.n_urls = b->n_urls;
    return 0;
}

static int build_small(const struct cdb_builder *b, struct tables *t)
{
    t->cats = calloc(b->ncats ? b->ncats : 1, sizeof *t->cats);
    t->disp = calloc(b->ndisp ? b->ndisp : 1, sizeof *t->disp);
    t->alias = calloc(b->nalias ? b->nalias : 1, sizeof *t->alias);
    t->expr = calloc(b->nexpr ? b->nexpr : 1, sizeof *t->expr);
    if (!t->cats || !t->disp || !t->alias || !t->expr)
        return -ENOMEM;
    size_t nd = 0;
    for (size_t c = 0; c < b->ncats; c++) {
        const struct bcat *bc = &b->cats[c];
        t->cats[c] = (struct cdb_cat){ bc->name_off, (uint32_t)bc->n_domains, (uint32_t)bc->n_urls, bc->n_exprs,
                                       (uint32_t)nd, 0 };
        for (size_t i = 0; i < b->ndisp; i++)
            if (b->disp[i].cat == c) {
                t->disp[nd++] = (struct cdb_disp){ b->disp[i].lang_off, b->disp[i].name_off, b->disp[i].desc_off };
                t->cats[c].disp_count++;
            }
    }
    for (size_t i = 0; i < b->nalias; i++)
        t->alias[i] = (struct cdb_alias){ b->alias[i].a, b->alias[i].b };
    for (size_t i = 0; i < b->nexpr; i++)
        t->expr[i] = (struct cdb_expr){ b->expr[i].a, b->expr[i].b };
    return 0;
}

struct sec {
    uint32_t id;
    const void *p;
    size_t size;
};

static int assemble(const struct cdb_builder *b, const struct tables *t, int64_t build_time, unsigned char **out,
                    size_t *outlen, char *err, size_t errlen)
{
    struct sec secs[] = {
        { CDB_SEC_META, &t->meta, sizeof t->meta },
        { CDB_SEC_STR, b->str, b->nstr },
        { CDB_SEC_CATS, t->cats, b->ncats * sizeof *t->cats },
        { CDB_SEC_DISP, t->disp, b->ndisp * sizeof *t->disp },
        { CDB_SEC_ALIAS, t->alias, b->nalias * sizeof *t->alias },
        { CDB_SEC_CATPOOL, t->pool.v, t->pool.n * sizeof *t->pool.v },
        { CDB_SEC_SLOTS, t->slots, t->nslots * sizeof *t->slots },
        { CDB_SEC_URLHOSTS, t->uh, t->nuh * sizeof *t->uh },
        { CDB_SEC_URLS, t->urls, t->nurls * sizeof *t->urls },
        { CDB_SEC_EXPRS, t->expr, b->nexpr * sizeof *t->expr },
        { CDB_SEC_BLOOM, t->bloom, t->nbloom * sizeof *t->bloom },
    };
    size_t nsec = UTIL_ARRAY_LEN(secs);
    struct cdb_section tab[UTIL_ARRAY_LEN(secs)];
    size_t off = sizeof(struct cdb_header) + sizeof tab;
    for (size_t i = 0; i < nsec; i++) {
        off = (off + 7) & ~(size_t)7;
        tab[i] = (struct cdb_section){ secs[i].id, 0, off, secs[i].size };
        off += secs[i].size;
    }
    if (off >= BUILD_MAX_BYTES)
        return util_err(err, errlen, -EFBIG, "database would be %zu bytes, over the 4 GiB format limit", off);
    unsigned char *buf = calloc(1, off);
    if (!buf)
        return util_err(err, errlen, -ENOMEM, "out of memory assembling the database (%zu bytes)", off);
    memcpy(buf + sizeof(struct cdb_header), tab, sizeof tab);
    for (size_t i = 0; i < nsec; i++)
        if (secs[i].size)
            memcpy(buf + tab[i].offset, secs[i].p, secs[i].size);
    struct cdb_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CDB_MAGIC, 8);
    h.version = CDB_VERSION;
    h.header_size = sizeof h;
    h.build_time = build_time;
    h.file_size = off;
    h.section_count = (uint32_t)nsec;
    h.endian_mark = CDB_ENDIAN_MARK;
    h.payload_crc = (uint32_t)crc32(0, buf + sizeof h, (uInt)(off - sizeof h));
    h.header_crc = (uint32_t)crc32(0, (const Bytef *)&h, offsetof(struct cdb_header, header_crc));
    memcpy(buf, &h, sizeof h);
    *out = buf;
    *outlen = off;
    return 0;
}

int cdb_builder_serialize(struct cdb_builder *b, int64_t build_time, unsigned char **out, size_t *outlen, char *err,
                          size_t errlen)
{
    struct tables t;
    memset(&t, 0, sizeof t);
    *out = NULL;
    *outlen = 0;
    int rc = build_slots(b, &t);
    if (rc == 0)
        rc = build_small(b, &t);
    if (rc < 0)
        rc = util_err(err, errlen, rc, "out of memory building the database tables");
    else
        rc = assemble(b, &t, build_time, out, outlen, err, errlen);
    tables_free(&t);
    return rc;
}
