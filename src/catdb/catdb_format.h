/* catdb_format: the on-disk layout of a compiled category database, shared by
 * the compiler (catdb_build.c) and the reader (catdb.c), and the host hash
 * both must compute identically. Internal to src/catdb/.
 * Must never: be included outside src/catdb/ (other modules use catdb.h), or
 * change without bumping CDB_VERSION.
 *
 * File = header (64 bytes) + section table (section_count x 24 bytes) +
 * sections, each at an 8-byte aligned offset. All integers little-endian
 * (the reader refuses a file whose endian mark does not read 0x01020304).
 * payload_crc is zlib crc32 over every byte after the header; header_crc is
 * crc32 over the header's first 60 bytes. docs/CATDB.md describes it all. */
#ifndef SHOJI_CATDB_FORMAT_H
#define SHOJI_CATDB_FORMAT_H

#include <stdint.h>

#define CDB_MAGIC "SHOJICDB"
#define CDB_VERSION 1u
#define CDB_ENDIAN_MARK 0x01020304u
#define CDB_MAX_SECTIONS 32u
#define CDB_URL_PREFIX_MAX 2048u /* longest URL-prefix path, bytes incl. NUL; lookups compare this much */

struct cdb_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;       /* sizeof(struct cdb_header) */
    int64_t build_time;         /* unix seconds */
    uint64_t file_size;
    uint32_t section_count;
    uint32_t endian_mark;
    uint32_t payload_crc;
    uint32_t reserved[4];
    uint32_t header_crc;
};

struct cdb_section {
    uint32_t id;                /* enum cdb_section_id */
    uint32_t reserved;
    uint64_t offset;            /* from the start of the file, 8-aligned */
    uint64_t size;              /* bytes */
};

enum cdb_section_id {
    CDB_SEC_META = 1,           /* struct cdb_meta */
    CDB_SEC_STR = 2,            /* string pool: NUL-terminated strings; byte 0 is "" */
    CDB_SEC_CATS = 3,           /* struct cdb_cat[], sorted by name */
    CDB_SEC_DISP = 4,           /* struct cdb_disp[] */
    CDB_SEC_ALIAS = 5,          /* struct cdb_alias[] */
    CDB_SEC_CATPOOL = 6,        /* uint16_t[]: n, id_1 .. id_n, n, ... */
    CDB_SEC_SLOTS = 7,          /* struct cdb_slot[], power-of-two count */
    CDB_SEC_URLHOSTS = 8,       /* struct cdb_urlhost[] */
    CDB_SEC_URLS = 9,           /* struct cdb_url[] */
    CDB_SEC_EXPRS = 10,         /* struct cdb_expr[] */
    CDB_SEC_BLOOM = 11,         /* uint64_t[], power-of-two count >= 8 (cdb_bloom_word) */
};

struct cdb_meta {
    uint64_t dom_label_mask;    /* bit min(labels,63) set if a domain key has that many labels */
    uint64_t url_label_mask;    /* the same for URL-prefix hosts */
    uint32_t max_probe;         /* longest linear-probe run the compiler produced */
    uint32_t n_keys;            /* used slots */
    uint64_t n_domains;         /* domain entries (per category, after de-duplication) */
    uint64_t n_urls;            /* URL-prefix entries */
};

struct cdb_cat {
    uint32_t name_off;
    uint32_t n_domains;
    uint32_t n_urls;
    uint32_t n_exprs;
    uint32_t disp_first;        /* index into DISP */
    uint32_t disp_count;
};

struct cdb_disp {
    uint32_t lang_off;          /* "en", "ja", ... (lower case) */
    uint32_t name_off;          /* display name */
    uint32_t desc_off;          /* description, "" if none */
};

struct cdb_alias {
    uint32_t name_off;
    uint32_t cat;
};

/* cats field of slots and URL entries. */
#define CDB_CATS_NONE 0xFFFFFFFFu
#define CDB_CATS_POOL 0x80000000u  /* set: low 31 bits index CATPOOL; clear: one category id */
#define CDB_NO_URLS 0xFFFFFFFFu

/* One open-addressing slot (linear probing); key_off == 0 marks it empty. */
struct cdb_slot {
    uint32_t tag;               /* high 32 bits of the key's hash */
    uint32_t key_off;           /* host key in STR */
    uint32_t cats;              /* categories of the domain entry, CDB_CATS_NONE if none */
    uint32_t urls;              /* index into URLHOSTS, CDB_NO_URLS if none */
};

struct cdb_urlhost {
    uint32_t first;             /* index into URLS; entries sorted by path */
    uint32_t count;
};

struct cdb_url {
    uint32_t path_off;          /* lower-case path starting with '/' */
    uint32_t path_len;
    uint32_t cats;
};

struct cdb_expr {
    uint32_t pattern_off;       /* PCRE2 pattern, matched caseless on "host/path" */
    uint32_t cat;
};

/* The host hash: FNV-1a 64 over the bytes from the LAST to the first, then a
 * finaliser. Hashing backwards lets a lookup get every dot-suffix's hash in
 * one pass over the host. */
#define CDB_FNV_OFFSET 0xcbf29ce484222325ull
#define CDB_FNV_PRIME 0x100000001b3ull

static inline uint64_t cdb_hash_step(uint64_t h, unsigned char c)
{
    return (h ^ c) * CDB_FNV_PRIME;
}

static inline uint64_t cdb_hash_final(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static inline uint64_t cdb_hash_key(const char *s, uint32_t n)
{
    uint64_t h = CDB_FNV_OFFSET;
    while (n)
        h = cdb_hash_step(h, (unsigned char)s[--n]);
    return cdb_hash_final(h);
}

/* The Bloom filter in front of the slot table, blocked by base domain: a
 * key's two bits lie in one 64-byte block chosen by the hash of its last two
 * labels (of its only label if it has one), so every suffix of a host with
 * two labels or more is checked in a single cache line. About 11 bits per
 * key; absent suffixes reach the table a few percent of the time. */
#define CDB_BLOOM_BLOCK_WORDS 8u

static inline uint64_t cdb_bloom_word(uint64_t base, uint64_t h, uint64_t nwords_mask)
{
    /* block from the high half of base, bits from the low half of h: for a
     * two-label key base == h, and the two must not be correlated */
    return (((base >> 32) * CDB_BLOOM_BLOCK_WORDS) + ((h >> 12) & (CDB_BLOOM_BLOCK_WORDS - 1))) & nwords_mask;
}

static inline uint64_t cdb_bloom_bits(uint64_t h)
{
    return (1ull << (h & 63)) | (1ull << ((h >> 6) & 63));
}

/* Start of the last two labels of h[0..n) (0 if it has fewer). */
static inline uint32_t cdb_base_start(const char *h, uint32_t n)
{
    int dots = 0;
    for (uint32_t i = n; i-- > 0;)
        if (h[i] == '.' && ++dots == 2)
            return i + 1;
    return 0;
}

static inline unsigned cdb_label_bit(unsigned labels)
{
    return labels > 63 ? 63 : labels;
}

/* Offset of the host that URL entries are filed under: a leading "www.",
 * "www2." ... is dropped (as squidGuard does), unless no dot would remain. */
static inline uint32_t cdb_www_strip(const char *h, uint32_t n)
{
    if (n < 4 || h[0] != 'w' || h[1] != 'w' || h[2] != 'w')
        return 0;
    uint32_t i = 3;
    while (i < n && h[i] >= '0' && h[i] <= '9')
        i++;
    if (i + 1 >= n || h[i] != '.')
        return 0;
    for (uint32_t j = i + 1; j < n; j++)
        if (h[j] == '.')
            return i + 1;
    return 0;
}

static inline unsigned cdb_count_labels(const char *h, uint32_t n)
{
    unsigned labels = 1;
    for (uint32_t i = 0; i < n; i++)
        labels += h[i] == '.';
    return labels;
}

#endif
