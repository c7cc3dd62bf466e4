/* mgmt/spool: upload batches on disk, STATE/spool/{logs,conflicts}/NAME.gz.
 * A batch is written once (gzip, atomically) and never changed; its file
 * name is its batch id, so a retried upload is stored once by the server:
 *     <unix ms, 13 digits>-<seq, 6 digits>-<lines>-<16 random hex>.gz
 * Names sort by age. The spool is bounded in bytes: past the bound the
 * oldest batches are dropped and their lines added to a persisted counter
 * (STATE/spool/dropped), reported in the status and diagnostics. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "mgmt/mgmt_int.h"
#include "util/util.h"

static const char *const kind_dir[] = { "logs", "conflicts" };

int mgmt_gzip(const void *data, size_t len, struct buf *out, char *err, size_t errlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return util_err(err, errlen, -ENOMEM, "zlib: cannot start deflate");
    size_t bound = deflateBound(&z, (uLong)len);
    int rc = buf_reserve(out, bound);
    if (rc < 0) {
        deflateEnd(&z);
        return util_err(err, errlen, rc, "batch too large to compress");
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out->p + out->len;
    z.avail_out = (uInt)(out->cap - out->len);
    int zr = deflate(&z, Z_FINISH);
    if (zr == Z_STREAM_END)
        out->len += z.total_out;
    deflateEnd(&z);
    return zr == Z_STREAM_END ? 0 : util_err(err, errlen, -EIO, "zlib: deflate failed (%d)", zr);
}

static void save_dropped(struct mgmt_spool *s)
{
    char p[4200], text[32];
    snprintf(p, sizeof p, "%s/dropped", s->dir);
    int n = snprintf(text, sizeof text, "%" PRIu64 "\n", s->dropped_lines);
    util_write_file_atomic(p, text, (size_t)n, 0600, NULL, 0);
}

int mgmt_spool_open(struct mgmt_spool *s, const char *state_dir, uint64_t max_bytes, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s/%s", state_dir, MGMT_SPOOL_DIR);
    s->max_bytes = max_bytes ? max_bytes : MGMT_SPOOL_MAX_DEFAULT;
    for (size_t k = 0; k < UTIL_ARRAY_LEN(kind_dir); k++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", s->dir, kind_dir[k]);
        int rc = util_mkdirs(p, 0700, err, errlen);
        if (rc < 0)
            return rc;
    }
    char p[4200], *text = NULL;
    size_t len;
    snprintf(p, sizeof p, "%s/dropped", s->dir);
    if (util_read_file(p, 64, &text, &len, NULL, 0) == 0) {
        s->dropped_lines = strtoull(text, NULL, 10);
        free(text);
    }
    return 0;
}

/* Parses a batch name; false for anything that is not one of ours. */
static bool batch_name(const char *name, uint64_t *lines)
{
    size_t n = strlen(name);
    if (n < 10 || n > 120 || strcmp(name + n - 3, ".gz") != 0 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n - 3; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f') || name[i] == '-'))
            return false;
    const char *d1 = strchr(name, '-'), *d2 = d1 ? strchr(d1 + 1, '-') : NULL;
    if (!d2)
        return false;
    *lines = strtoull(d2 + 1, NULL, 10);
    return true;
}

struct scan {
    uint64_t batches, bytes;
    bool have;
    struct mgmt_batch oldest;
};

static void scan_kind(struct mgmt_spool *s, enum mgmt_kind k, struct scan *sc)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->dir, kind_dir[k]);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        uint64_t lines;
        if (!batch_name(de->d_name, &lines))
            continue;
        char p[4700];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (stat(p, &st) < 0)
            continue;
        sc->batches++;
        sc->bytes += (uint64_t)st.st_size;
        if (!sc->have || strcmp(de->d_name, strrchr(sc->oldest.path, '/') + 1) < 0) {
            sc->have = true;
            util_strlcpy(sc->oldest.path, p, sizeof sc->oldest.path);
            size_t nl = strlen(de->d_name) - 3;
            snprintf(sc->oldest.id, sizeof sc->oldest.id, "%.*s", (int)nl, de->d_name);
            sc->oldest.kind = k;
            sc->oldest.lines = lines;
            sc->oldest.bytes = (uint64_t)st.st_size;
        }
    }
    if (d)
        closedir(d);
}

static void scan_all(struct mgmt_spool *s, struct scan *sc)
{
    memset(sc, 0, sizeof *sc);
    scan_kind(s, MGMT_LOGS, sc);
    scan_kind(s, MGMT_CONFLICTS, sc);
}

int mgmt_spool_oldest(struct mgmt_spool *s, struct mgmt_batch *b)
{
    struct scan sc;
    scan_all(s, &sc);
    if (!sc.have)
        return -ENOENT;
    *b = sc.oldest;
    return 0;
}

void mgmt_spool_usage(struct mgmt_spool *s, uint64_t *batches, uint64_t *bytes)
{
    struct scan sc;
    scan_all(s, &sc);
    *batches = sc.batches;
    *bytes = sc.bytes;
}

void mgmt_spool_remove(struct mgmt_spool *s, const struct mgmt_batch *b, bool dropped)
{
    if (unlink(b->path) == 0 && dropped) {
        s->dropped_lines += b->lines;
        save_dropped(s);
    }
}

int mgmt_spool_write(struct mgmt_spool *s, enum mgmt_kind kind, const char *data, size_t len, uint64_t nlines,
                     char *err, size_t errlen)
{
    struct buf gz;
    buf_init(&gz, 64u * 1024 * 1024);
    int rc = mgmt_gzip(data, len, &gz, err, errlen);
    if (rc < 0) {
        buf_free(&gz);
        return rc;
    }
    uint8_t rnd[8] = { 0 };
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        buf_free(&gz);
        return util_err(err, errlen, -EIO, "getrandom failed");
    }
    char p[4700];
    int n = snprintf(p, sizeof p, "%s/%s/%013" PRIu64 "-%06" PRIu64 "-%" PRIu64 "-", s->dir, kind_dir[kind],
                     util_now_ms(), s->seq++ % 1000000, nlines);
    for (size_t i = 0; i < sizeof rnd; i++)
        n += snprintf(p + n, sizeof p - (size_t)n, "%02x", rnd[i]);
    snprintf(p + n, sizeof p - (size_t)n, ".gz");
    rc = util_write_file_atomic(p, gz.p, gz.len, 0600, err, errlen);
    buf_free(&gz);
    if (rc < 0)
        return rc;
    /* The bound: drop the oldest batches (never the one just written). */
    for (int guard = 0; guard < 100000; guard++) {
        struct scan sc;
        scan_all(s, &sc);
        if (sc.bytes <= s->max_bytes || sc.batches <= 1 || !strcmp(sc.oldest.path, p))
            break;
        mgmt_spool_remove(s, &sc.oldest, true);
    }
    return 0;
}
