/* bench_catdb: compile time, load time, lookup rate, file size and RSS of the
 * category database over a real list collection (UT1 by default).
 * Usage: bench_catdb [LISTS_DIR [DB_PATH [LOOKUPS]]]
 * LISTS_DIR defaults to $SHOJI_SHARED_DIR/data/ut1, else
 * $SHOJI_SOURCE_DIR/../shared/data/ut1. Only a benchmark: nothing in shoji
 * reads these lists at run time. Results: docs/CATDB.md. */
#include "catdb/catdb.h"
#include "catdb/catdb_compile.h"
#include "util/util.h"

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_HOSTS 200000
#define HOST_CAP 128

struct query {
    char host[HOST_CAP];
    const char *path;
};

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n))
            v = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *default_dir(char *buf, size_t cap)
{
    const char *shared = getenv("SHOJI_SHARED_DIR");
    if (shared)
        snprintf(buf, cap, "%s/data/ut1", shared);
    else
        snprintf(buf, cap, "%s/../shared/data/ut1", getenv("SHOJI_SOURCE_DIR") ? getenv("SHOJI_SOURCE_DIR") : SHOJI_SOURCE_DIR);
    return buf;
}

/* Every 5th listed domain (as itself, www. or a deeper subdomain) is a hit;
 * as many made-up names are misses. */
static size_t make_queries(const char *dir, struct query *q, size_t max)
{
    char pat[4200];
    glob_t g;
    size_t n = 0, seen = 0;
    static const char *paths[] = { "/", "/index.html", "/search?q=shoji", NULL, "/a/b/c.js" };
    snprintf(pat, sizeof pat, "%s/*/domains", dir);
    if (glob(pat, 0, NULL, &g) != 0)
        return 0;
    for (size_t f = 0; f < g.gl_pathc && n < max; f++) {
        FILE *fp = fopen(g.gl_pathv[f], "r");
        char line[100];
        while (fp && n + 1 < max && fgets(line, sizeof line, fp)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (!line[0] || seen++ % 5)
                continue;
            const char *pre = (n % 3 == 0) ? "" : (n % 3 == 1) ? "www." : "cdn.static.";
            snprintf(q[n].host, HOST_CAP, "%s%s", pre, line);
            q[n].path = paths[n % 5];
            n++;
            snprintf(q[n].host, HOST_CAP, "nohit%zu.miss-%zu.%s", n * 7919 % 100003, n, (n & 1) ? "com" : "net");
            q[n].path = paths[n % 5];
            n++;
        }
        if (fp)
            fclose(fp);
    }
    globfree(&g);
    for (size_t i = n; i > 1; i--) {   /* shuffle, fixed seed */
        size_t j = (size_t)(((uint64_t)i * 2654435761u + 12345) % i);
        struct query t = q[i - 1];
        q[i - 1] = q[j];
        q[j] = t;
    }
    return n;
}

static double bench_open(const char *db_path, int rounds)
{
    double best = 1e9;
    for (int r = 0; r < rounds; r++) {
        struct catdb *db;
        char err[UTIL_ERRLEN];
        uint64_t t0 = util_mono_us();
        if (catdb_open(db_path, &db, err, sizeof err) < 0) {
            fprintf(stderr, "open: %s\n", err);
            exit(1);
        }
        double ms = (double)(util_mono_us() - t0) / 1000.0;
        catdb_close(db);
        if (ms < best)
            best = ms;
    }
    return best;
}

/* Lookup rate over the first nq queries, cycling; CPU time is what one core
 * gives (the wall clock also counts time other processes took). */
static void run_lookups(const struct catdb *db, const struct query *q, size_t nq, long lookups, const char *label)
{
    size_t hits = 0;
    uint64_t t0 = util_mono_us();
    double c0 = cpu_seconds();
    for (long i = 0; i < lookups; i++) {
        struct catset s;
        const struct query *x = &q[(size_t)i % nq];
        catdb_lookup(db, x->host, x->path, &s);
        hits += s.n != 0;
    }
    double secs = (double)(util_mono_us() - t0) / 1e6, cpu = cpu_seconds() - c0;
    printf("lookups %-5s   %.2f M/s per CPU-second on one thread (%.2f M/s wall clock; %ld lookups cycling over %zu "
           "hosts, %.0f%% categorised, paths mixed)\n", label, (double)lookups / cpu / 1e6,
           (double)lookups / secs / 1e6, lookups, nq, 100.0 * (double)hits / (double)lookups);
}

int main(int argc, char **argv)
{
    char dirbuf[4096], err[UTIL_ERRLEN];
    const char *dir = argc > 1 ? argv[1] : default_dir(dirbuf, sizeof dirbuf);
    const char *db_path = argc > 2 ? argv[2] : "/tmp/bench_catdb.db";
    long lookups = argc > 3 ? atol(argv[3]) : 10000000L;
    struct catdb_compile_result r;
    const char *dirs[1] = { dir };
    if (catdb_compile(dirs, 1, db_path, NULL, &r, err, sizeof err) < 0) {
        fprintf(stderr, "bench_catdb: %s (set SHOJI_SHARED_DIR or pass the lists folder)\n", err);
        return 1;
    }
    printf("lists           %s\n", dir);
    printf("compile         %.2f s (%u categories, %u aliases, %llu domains, %llu URL prefixes, %u expressions)\n",
           r.seconds, r.categories, r.aliases, (unsigned long long)r.domains, (unsigned long long)r.urls,
           r.expressions);
    printf("file size       %llu bytes (%.1f MiB)\n", (unsigned long long)r.file_size,
           (double)r.file_size / 1048576.0);
    printf("load            %.2f ms (open + verify, best of 20, file in page cache)\n", bench_open(db_path, 20));

    struct query *q = calloc(MAX_HOSTS, sizeof *q);
    size_t nq = q ? make_queries(dir, q, MAX_HOSTS) : 0;
    if (nq == 0) {
        fprintf(stderr, "bench_catdb: no queries built from %s\n", dir);
        return 1;
    }
    long rss0 = status_kb("VmRSS:");
    struct catdb *db;
    if (catdb_open(db_path, &db, err, sizeof err) < 0) {
        fprintf(stderr, "bench_catdb: %s\n", err);
        return 1;
    }
    long rss1 = status_kb("VmRSS:");
    run_lookups(db, q, nq, lookups, "200k");
    run_lookups(db, q, nq < 20000 ? nq : 20000, lookups, "20k");
    printf("rss             %ld KiB before open, %ld KiB after open, %ld KiB after lookups (peak %ld KiB)\n", rss0,
           rss1, status_kb("VmRSS:"), status_kb("VmHWM:"));
    catdb_close(db);
    free(q);
    return 0;
}
