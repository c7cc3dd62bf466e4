/* catdb reader: maps a compiled database, checks it once at open, answers
 * lookups without allocating (see catdb.h; the format is catdb_format.h). */

#include "catdb/catdb.h"
#include "catdb/catdb_impl.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

_Static_assert(sizeof(struct cdb_header) == 64, "header is 64 bytes");
_Static_assert(sizeof(struct cdb_section) == 24, "section entry is 24 bytes");
_Static_assert(sizeof(struct cdb_slot) == 16, "slot is 16 bytes");

#define CATDB_FILE_MAX (1ull << 32)   /* offsets are 32-bit */
#define RE_MATCH_LIMIT 200000u        /* bounds backtracking of a bad expression */

/* ---- open: every check happens here, once ---- */

/* Internal open flag: the payload CRC was already verified, from the file
 * (catdb_open reads it with pread so the mapping is not faulted in). */
#define OPEN_PAYLOAD_VERIFIED 0x100u
#define CRC_CHUNK (128u * 1024)       /* pread buffer: stays in L2 between read and CRC */

static uint32_t crc_mem(const unsigned char *p, size_t left)
{
    uLong crc = crc32(0, Z_NULL, 0);
    while (left) {                     /* zlib takes a uInt length */
        uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
        crc = crc32(crc, p, chunk);
        p += chunk;
        left -= chunk;
    }
    return (uint32_t)crc;
}

static int check_header(struct catdb *db, unsigned flags, char *err, size_t errlen)
{
    const struct cdb_header *h = db->hdr;
    if (db->size < sizeof *h)
        return util_err(err, errlen, -EINVAL, "file too short (%zu bytes) to be a category database", db->size);
    if (memcmp(h->magic, CDB_MAGIC, 8) != 0)
        return util_err(err, errlen, -EINVAL, "bad magic: not a shoji category database (compile one with `shoji catdb compile`)");
    if (h->endian_mark != CDB_ENDIAN_MARK)
        return util_err(err, errlen, -EINVAL, "byte order mark mismatch: file built on a machine of another byte order");
    if (h->version != CDB_VERSION)
        return util_err(err, errlen, -EINVAL, "unsupported format version %u (this shoji reads version %u): recompile the lists",
                        h->version, CDB_VERSION);
    if (h->header_size != sizeof *h)
        return util_err(err, errlen, -EINVAL, "bad header size %u", h->header_size);
    if (!(flags & CATDB_OPEN_NO_CHECKSUM) &&
        (uint32_t)crc32(0, (const Bytef *)h, offsetof(struct cdb_header, header_crc)) != h->header_crc)
        return util_err(err, errlen, -EINVAL, "header checksum mismatch: the file is corrupt");
    if (h->file_size != db->size)
        return util_err(err, errlen, -EINVAL, "file is %zu bytes but its header says %llu: truncated or corrupt",
                        db->size, (unsigned long long)h->file_size);
    if (h->section_count == 0 || h->section_count > CDB_MAX_SECTIONS ||
        sizeof *h + (size_t)h->section_count * sizeof(struct cdb_section) > db->size)
        return util_err(err, errlen, -EINVAL, "bad section count %u", h->section_count);
    if (!(flags & (CATDB_OPEN_NO_CHECKSUM | OPEN_PAYLOAD_VERIFIED)) &&
        crc_mem(db->base + sizeof *h, db->size - sizeof *h) != h->payload_crc)
        return util_err(err, errlen, -EINVAL, "checksum mismatch: the file is corrupt, recompile it");
    return 0;
}

/* Finds section `id`; checks bounds, alignment and record size. A missing
 * optional section is empty. */
static int get_section(struct catdb *db, uint32_t id, size_t recsize, int required,
                       const void **p, size_t *count, char *err, size_t errlen)
{
    const struct cdb_section *tab = (const void *)(db->base + sizeof *db->hdr);
    size_t table_end = sizeof *db->hdr + db->hdr->section_count * sizeof *tab;
    int found = 0;
    *p = NULL;
    *count = 0;
    for (uint32_t i = 0; i < db->hdr->section_count; i++) {
        const struct cdb_section *s = &tab[i];
        if (s->id != id)
            continue;
        if (found++)
            return util_err(err, errlen, -EINVAL, "section %u appears twice", id);
        if (s->offset % 8 || s->offset < table_end || s->offset > db->size || s->size > db->size - s->offset)
            return util_err(err, errlen, -EINVAL, "section %u out of range (offset %llu, size %llu, file %zu)", id,
                            (unsigned long long)s->offset, (unsigned long long)s->size, db->size);
        if (s->size % recsize)
            return util_err(err, errlen, -EINVAL, "section %u has a partial record", id);
        *p = db->base + s->offset;
        *count = (size_t)(s->size / recsize);
    }
    if (required && (!found || *count == 0))
        return util_err(err, errlen, -EINVAL, "required section %u missing", id);
    return 0;
}

static int str_ok(const struct catdb *db, uint32_t off)
{
    return off < db->str_size;   /* the pool ends with NUL, so the string ends inside */
}

static int cats_ok(const struct catdb *db, uint32_t cats)
{
    if (cats == CDB_CATS_NONE)
        return 1;
    if (!(cats & CDB_CATS_POOL))
        return cats < db->ncats;
    uint32_t i = cats & ~CDB_CATS_POOL;
    if (i >= db->npool || db->pool[i] == 0 || db->pool[i] > db->npool - i - 1)
        return 0;
    for (uint32_t k = 1; k <= db->pool[i]; k++)
        if (db->pool[i + k] >= db->ncats)
            return 0;
    return 1;
}

static int load_sections(struct catdb *db, char *err, size_t errlen)
{
    const void *p;
    size_t n;
    int rc;
#define SEC(id, type, req, dst, cnt)                                                 \
    if ((rc = get_section(db, id, sizeof(type), req, &p, &n, err, errlen)) < 0)     \
        return rc;                                                                   \
    dst = p;                                                                         \
    cnt = n;
    size_t nmeta, nslots, nbloom;
    SEC(CDB_SEC_META, struct cdb_meta, 1, db->meta, nmeta);
    SEC(CDB_SEC_STR, char, 1, db->str, db->str_size);
    SEC(CDB_SEC_CATS, struct cdb_cat, 1, db->cats, db->ncats);
    SEC(CDB_SEC_DISP, struct cdb_disp, 0, db->disp, db->ndisp);
    SEC(CDB_SEC_ALIAS, struct cdb_alias, 0, db->alias, db->nalias);
    SEC(CDB_SEC_CATPOOL, uint16_t, 0, db->pool, db->npool);
    SEC(CDB_SEC_SLOTS, struct cdb_slot, 1, db->slots, nslots);
    SEC(CDB_SEC_URLHOSTS, struct cdb_urlhost, 0, db->urlhosts, db->nurlhosts);
    SEC(CDB_SEC_URLS, struct cdb_url, 0, db->urls, db->nurls);
    SEC(CDB_SEC_EXPRS, struct cdb_expr, 0, db->exprs, db->nexprs);
    SEC(CDB_SEC_BLOOM, uint64_t, 1, db->bloom, nbloom);
#undef SEC
    if (nmeta != 1)
        return util_err(err, errlen, -EINVAL, "bad meta section");
    if (db->str[0] != '\0' || db->str[db->str_size - 1] != '\0')
        return util_err(err, errlen, -EINVAL, "string pool not terminated");
    if (db->ncats > 65535)
        return util_err(err, errlen, -EINVAL, "too many categories (%u)", db->ncats);
    if (nslots & (nslots - 1))
        return util_err(err, errlen, -EINVAL, "slot count %zu is not a power of two", nslots);
    db->slot_mask = nslots - 1;
    if ((nbloom & (nbloom - 1)) || nbloom < CDB_BLOOM_BLOCK_WORDS)
        return util_err(err, errlen, -EINVAL, "filter size %zu is not a power of two", nbloom);
    db->bloom_mask = nbloom - 1;
    db->max_probe = db->meta->max_probe;
    if (db->max_probe > nslots)
        return util_err(err, errlen, -EINVAL, "bad probe bound %u", db->max_probe);
    return 0;
}

static int check_tables(const struct catdb *db, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < db->ncats; i++) {
        const struct cdb_cat *c = &db->cats[i];
        if (!str_ok(db, c->name_off) || c->disp_first > db->ndisp || c->disp_count > db->ndisp - c->disp_first)
            return util_err(err, errlen, -EINVAL, "category %u: reference out of range", i);
    }
    for (uint32_t i = 0; i < db->ndisp; i++)
        if (!str_ok(db, db->disp[i].lang_off) || !str_ok(db, db->disp[i].name_off) || !str_ok(db, db->disp[i].desc_off))
            return util_err(err, errlen, -EINVAL, "display name %u: reference out of range", i);
    for (uint32_t i = 0; i < db->nalias; i++)
        if (!str_ok(db, db->alias[i].name_off) || db->alias[i].cat >= db->ncats)
            return util_err(err, errlen, -EINVAL, "alias %u: reference out of range", i);
    for (uint32_t i = 0; i < db->nurlhosts; i++)
        if (db->urlhosts[i].first > db->nurls || db->urlhosts[i].count > db->nurls - db->urlhosts[i].first)
            return util_err(err, errlen, -EINVAL, "URL host %u: range out of bounds", i);
    for (uint32_t i = 0; i < db->nurls; i++) {
        const struct cdb_url *u = &db->urls[i];
        if (!str_ok(db, u->path_off) || u->path_len > db->str_size - u->path_off - 1 ||
            db->str[u->path_off + u->path_len] != '\0' || !cats_ok(db, u->cats))
            return util_err(err, errlen, -EINVAL, "URL entry %u: reference out of range", i);
    }
    for (uint32_t i = 0; i < db->nexprs; i++)
        if (!str_ok(db, db->exprs[i].pattern_off) || db->exprs[i].cat >= db->ncats)
            return util_err(err, errlen, -EINVAL, "expression %u: reference out of range", i);
    return 0;
}

static int compile_exprs(struct catdb *db, char *err, size_t errlen)
{
    if (db->nexprs == 0)
        return 0;
    db->re = calloc(db->nexprs, sizeof *db->re);
    db->jit = calloc(db->nexprs, sizeof *db->jit);
    db->mctx = pcre2_match_context_create(NULL);
    if (!db->re || !db->jit || !db->mctx)
        return util_err(err, errlen, -ENOMEM, "out of memory compiling expressions");
    pcre2_set_match_limit(db->mctx, RE_MATCH_LIMIT);
    for (uint32_t i = 0; i < db->nexprs; i++) {
        int ec;
        PCRE2_SIZE eo;
        const char *pat = db->str + db->exprs[i].pattern_off;
        db->re[i] = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec, &eo, NULL);
        if (!db->re[i]) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return util_err(err, errlen, -EINVAL, "expression %u does not compile: %s", i, (const char *)msg);
        }
        /* JIT: on first use, on a copy (catdb_impl.h: struct cdb_jit) */
    }
    const char **pats = calloc(db->nexprs, sizeof *pats);
    if (!pats)
        return util_err(err, errlen, -ENOMEM, "out of memory compiling expressions");
    for (uint32_t i = 0; i < db->nexprs; i++)
        pats[i] = db->str + db->exprs[i].pattern_off;
    int rc = cdb_pf_build(&db->pf, pats, db->nexprs);
    free(pats);
    if (rc < 0)
        return util_err(err, errlen, -ENOMEM, "out of memory compiling expressions");
    return 0;
}

/* Heap copies of the category and alias names (a few KiB for UT1): the
 * policy resolves names at load and the proxy logs them, and each of those
 * touches would otherwise keep a page-cache folio (up to 2 MiB) of the
 * string pool mapped. Runs after check_tables (every name_off is valid). */
static int copy_names(struct catdb *db, char *err, size_t errlen)
{
    size_t n = (size_t)db->ncats + db->nalias, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t off = i < db->ncats ? db->cats[i].name_off : db->alias[i - db->ncats].name_off;
        bytes += strlen(db->str + off) + 1;
    }
    db->names = malloc(n * sizeof *db->names + bytes);
    db->alias_cat = malloc((db->nalias ? db->nalias : 1) * sizeof *db->alias_cat);
    if (!db->names || !db->alias_cat)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    char *p = (char *)(db->names + n);
    for (size_t i = 0; i < n; i++) {
        uint32_t off = i < db->ncats ? db->cats[i].name_off : db->alias[i - db->ncats].name_off;
        size_t len = strlen(db->str + off) + 1;
        memcpy(p, db->str + off, len);
        db->names[i] = p;
        p += len;
    }
    for (uint32_t i = 0; i < db->nalias; i++)
        db->alias_cat[i] = (uint16_t)db->alias[i].cat;
    return 0;
}

static int open_common(struct catdb *db, unsigned flags, char *err, size_t errlen)
{
    db->hdr = (const struct cdb_header *)db->base;
    int rc = check_header(db, flags, err, errlen);
    if (rc == 0)
        rc = load_sections(db, err, errlen);
    if (rc == 0)
        rc = check_tables(db, err, errlen);
    if (rc == 0)
        rc = copy_names(db, err, errlen);
    if (rc == 0)
        rc = compile_exprs(db, err, errlen);
    return rc;
}

int catdb_open_mem(const void *buf, size_t len, unsigned flags, struct catdb **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!buf || ((uintptr_t)buf % 8))
        return util_err(err, errlen, -EINVAL, "database buffer must be 8-byte aligned");
    struct catdb *db = calloc(1, sizeof *db);
    if (!db)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    db->base = buf;
    db->size = len;
    int rc = open_common(db, flags & ~OPEN_PAYLOAD_VERIFIED, err, errlen);
    if (rc < 0) {
        catdb_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

/* Reads exactly `len` bytes at `off`; -errno, or -EIO on a short file. */
static int pread_full(int fd, void *buf, size_t len, off_t off)
{
    unsigned char *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO;
        p += r;
        len -= (size_t)r;
        off += r;
    }
    return 0;
}

/* CRC32 of bytes [off, off + len) of the file, read through a small buffer:
 * the data passes through the page cache and one 128 KiB buffer (its own
 * mapping, returned at once), never through the database's mapping, so
 * verifying does not make the whole file resident in this process. */
static int crc_file(int fd, off_t off, size_t len, uint32_t *out)
{
    unsigned char *buf = mmap(NULL, CRC_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        return -errno;
    (void)posix_fadvise(fd, off, (off_t)len, POSIX_FADV_SEQUENTIAL);
    uLong crc = crc32(0, Z_NULL, 0);
    int rc = 0;
    while (len && rc == 0) {
        size_t n = len < CRC_CHUNK ? len : CRC_CHUNK;
        rc = pread_full(fd, buf, n, off);
        if (rc == 0) {
            crc = crc32(crc, buf, (uInt)n);
            off += (off_t)n;
            len -= n;
        }
    }
    munmap(buf, CRC_CHUNK);
    *out = (uint32_t)crc;
    return rc;
}

/* The header and the payload CRC, checked from the file before it is mapped.
 * `h` gets the verified header. */
static int verify_file(int fd, size_t size, struct cdb_header *h, char *err, size_t errlen)
{
    int rc = pread_full(fd, h, sizeof *h, 0);
    if (rc < 0)
        return util_err(err, errlen, rc, "read: %s", strerror(-rc));
    struct catdb tmp = { .base = (const unsigned char *)h, .size = size, .hdr = h };
    rc = check_header(&tmp, OPEN_PAYLOAD_VERIFIED, err, errlen);
    if (rc < 0)
        return rc;
    uint32_t crc = 0;
    rc = crc_file(fd, (off_t)sizeof *h, size - sizeof *h, &crc);
    if (rc == -EIO)
        return util_err(err, errlen, -EINVAL, "file shrank while being read: truncated or corrupt");
    if (rc < 0)
        return util_err(err, errlen, rc, "read: %s", strerror(-rc));
    if (crc != h->payload_crc)
        return util_err(err, errlen, -EINVAL, "checksum mismatch: the file is corrupt, recompile it");
    return 0;
}

int catdb_open(const char *path, struct catdb **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return util_err(err, errlen, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return util_err(err, errlen, -EINVAL, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size < sizeof(struct cdb_header) || (uint64_t)st.st_size >= CATDB_FILE_MAX) {
        close(fd);
        return util_err(err, errlen, -EINVAL, "%s: size %lld is not that of a category database (truncated?)", path,
                        (long long)st.st_size);
    }
    char why[UTIL_ERRLEN];
    struct cdb_header h;
    int rc = verify_file(fd, (size_t)st.st_size, &h, why, sizeof why);
    if (rc < 0) {
        close(fd);
        return util_err(err, errlen, rc, "%s: %s", path, why);
    }
    /* No MAP_POPULATE: pages become resident as lookups touch them;
     * MADV_RANDOM keeps a fault from reading ahead pages no lookup needs. */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return util_err(err, errlen, -e, "%s: mmap: %s", path, strerror(e));
    (void)madvise(map, (size_t)st.st_size, MADV_RANDOM);
    struct catdb *db = calloc(1, sizeof *db);
    if (!db) {
        munmap(map, (size_t)st.st_size);
        return util_err(err, errlen, -ENOMEM, "out of memory");
    }
    db->base = map;
    db->size = (size_t)st.st_size;
    db->mapped = 1;
    /* The mapping is of the file just verified (same descriptor); a header
     * that differs means someone rewrote it in place meanwhile. */
    if (memcmp(map, &h, sizeof h) != 0)
        rc = util_err(why, sizeof why, -EINVAL, "file changed while being opened: truncated or corrupt");
    else
        rc = open_common(db, OPEN_PAYLOAD_VERIFIED, why, sizeof why);
    if (rc < 0) {
        catdb_close(db);
        return util_err(err, errlen, rc, "%s: %s", path, why);
    }
    /* The structural checks above read the small tables and, for the URL
     * entries, bytes spread over the whole string pool (each fault maps up
     * to 64 KiB around it): unmap those pages again. The file stays in the
     * page cache; a lookup faults back in only what it reads. */
    (void)madvise(map, (size_t)st.st_size, MADV_DONTNEED);
    *out = db;
    return 0;
}

void catdb_close(struct catdb *db)
{
    if (!db)
        return;
    if (db->re) {
        for (uint32_t i = 0; i < db->nexprs; i++)
            pcre2_code_free(db->re[i]);
        free(db->re);
    }
    if (db->jit) {
        for (uint32_t i = 0; i < db->nexprs; i++)
            pcre2_code_free(atomic_load(&db->jit[i].code));
        free(db->jit);
    }
    pcre2_match_context_free(db->mctx);
    cdb_pf_free(&db->pf);
    free(db->names);
    free(db->alias_cat);
    if (db->mapped)
        munmap((void *)db->base, db->size);
    free(db);
}

