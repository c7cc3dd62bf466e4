/* platform/linux/textpages.c: platform_release_clean_text (platform.h). */
#include "platform/platform.h"
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define TEXT_MAX_RANGES 1024   /* bound on the mappings released in one call */

struct range {
    unsigned long lo, hi;
    long rss_kib;
};

/* The mapping being read from smaps: its header line and the fields that
 * decide whether it may be released. */
struct vma {
    unsigned long lo, hi;
    bool candidate;            /* private, not writable, backed by a file */
    long rss_kib, anon_kib;
    bool locked;               /* VmFlags "lo": mlock'ed, leave it */
};

/* "lo-hi perms offset dev inode path": a candidate is "r-xp" or "r--p" with
 * an inode (a real file, not [vdso] / [vvar] / anonymous memory). */
static bool parse_header(const char *line, struct vma *v)
{
    char perms[8];
    unsigned long lo, hi, inode;
    int path = 0;
    /* field lines ("AnonHugePages:  0 kB") never parse this far */
    if (sscanf(line, "%lx-%lx %7s %*x %*s %lu %n", &lo, &hi, perms, &inode, &path) < 4 || lo >= hi)
        return false;
    v->lo = lo;
    v->hi = hi;
    v->candidate = perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p' && inode != 0 &&
                   path > 0 && line[path] == '/';
    v->rss_kib = v->anon_kib = -1;
    v->locked = false;
    return true;
}

/* A mapping whose block is complete (its VmFlags line read): released when
 * every check passed and it has pages mapped. */
static void finish(const struct vma *v, struct range *r, size_t *n)
{
    if (!v->candidate || v->locked || v->anon_kib != 0 || v->rss_kib <= 0 || *n >= TEXT_MAX_RANGES)
        return;
    r[*n] = (struct range){ v->lo, v->hi, v->rss_kib };
    (*n)++;
}

long platform_release_clean_text(char *err, size_t errlen)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return util_err(err, errlen, -errno, "/proc/self/smaps: %s", strerror(errno));
    struct range *r = calloc(TEXT_MAX_RANGES, sizeof *r);
    if (!r) {
        fclose(f);
        return util_err(err, errlen, -ENOMEM, "out of memory");
    }
    size_t n = 0;
    struct vma v = { 0 };
    bool in = false;
    char line[512];
    long kib;
    while (fgets(line, sizeof line, f)) {
        if (!strchr(line, '\n') && !feof(f)) {      /* a long path: skip the rest of it */
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
        }
        if (sscanf(line, "Rss: %ld kB", &kib) == 1) {
            v.rss_kib = kib;
        } else if (sscanf(line, "Anonymous: %ld kB", &kib) == 1) {
            v.anon_kib = kib;
        } else if (!strncmp(line, "VmFlags:", 8)) {
            v.locked = strstr(line, " lo") != NULL;
            if (in)
                finish(&v, r, &n);
            in = false;
        } else if (parse_header(line, &v)) {   /* field names never parse as "hex-hex " */
            in = true;
        }
    }
    fclose(f);
    /* Applied after the read, so the walk never sees its own changes
     * (MADV_DONTNEED splits or merges no mapping anyway). */
    long released = 0;
    for (size_t i = 0; i < n; i++)
        if (madvise((void *)r[i].lo, r[i].hi - r[i].lo, MADV_DONTNEED) == 0)
            released += r[i].rss_kib;
    free(r);
    return released;
}
