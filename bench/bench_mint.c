/* bench_mint: what the leaf certificate path costs the first connection to a
 * new host (a mint: sign + write to the disk cache), a restart (a disk-cache
 * hit: read + verify), and every later connection (a memory hit).
 * Usage: bench_mint [--mints N] [--lookups N] [--rsa] [--tmp DIR]
 * Uses a throwaway CA in a new directory under DIR (default /tmp; try
 * /dev/shm to leave the file system out); prints one line per case. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls/ca.h"
#include "tls/mint.h"
#include "util/util.h"

static double per_second(unsigned long n, uint64_t us)
{
    return us ? (double)n * 1e6 / (double)us : 0.0;
}

static int run_mints(struct tls_minter *m, int n, const char *tag)
{
    char err[UTIL_ERRLEN], host[64];
    struct tls_names names;
    uint64_t t0 = util_mono_us();
    for (int i = 0; i < n; i++) {
        snprintf(host, sizeof host, "host%d.bench.example", i);
        tls_names_from_host(host, &names);
        X509 *x = tls_mint_leaf(m, &names, err, sizeof err);
        if (!x) {
            fprintf(stderr, "bench_mint: %s\n", err);
            return -1;
        }
        X509_free(x);
    }
    uint64_t us = util_mono_us() - t0;
    printf("%-28s %8d in %8.1f ms  %10.0f /s  %7.1f us each\n", tag, n, us / 1000.0,
           per_second((unsigned long)n, us), (double)us / n);
    return 0;
}

static void run_hits(struct tls_minter *m, int hosts, long lookups)
{
    char err[UTIL_ERRLEN], host[64];
    static struct tls_names names[64];
    int nn = hosts < 64 ? hosts : 64;
    for (int i = 0; i < nn; i++) {
        snprintf(host, sizeof host, "host%d.bench.example", i);
        tls_names_from_host(host, &names[i]);
    }
    uint64_t t0 = util_mono_us();
    for (long i = 0; i < lookups; i++) {
        X509 *x = tls_mint_leaf(m, &names[i % nn], err, sizeof err);
        X509_free(x);
    }
    uint64_t us = util_mono_us() - t0;
    printf("%-28s %8ld in %8.1f ms  %10.0f /s  %7.2f us each\n", "memory hit", lookups,
           us / 1000.0, per_second((unsigned long)lookups, us), (double)us / (double)lookups);
}

int main(int argc, char **argv)
{
    int mints = 2000;
    long lookups = 1000000;
    struct tls_ca_init_opts o = { 0 };
    const char *tmpdir = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mints") && i + 1 < argc)
            mints = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--lookups") && i + 1 < argc)
            lookups = atol(argv[++i]);
        else if (!strcmp(argv[i], "--tmp") && i + 1 < argc)
            tmpdir = argv[++i];
        else if (!strcmp(argv[i], "--rsa"))
            o.rsa = true;
        else {
            fprintf(stderr, "usage: bench_mint [--mints N] [--lookups N] [--rsa] [--tmp DIR]\n");
            return 2;
        }
    }
    if (mints < 1 || mints > 1000000 || lookups < 1 || lookups > 100000000) {
        fprintf(stderr, "bench_mint: --mints 1..1000000, --lookups 1..100000000\n");
        return 2;
    }
    char dir[512], err[UTIL_ERRLEN] = "", cmd[600];
    snprintf(dir, sizeof dir, "%s/shoji-bench-mint-XXXXXX", tmpdir);
    struct tls_ca ca;
    struct tls_minter *m = NULL;
    if (!mkdtemp(dir) || tls_ca_init(dir, &o, err, sizeof err) < 0 ||
        tls_ca_load(dir, &ca, err, sizeof err) < 0 ||
        tls_minter_new(&ca, dir, (size_t)mints, &m, err, sizeof err) < 0) {
        fprintf(stderr, "bench_mint: %s\n", err);
        return 1;
    }
    printf("CA key %s, leaf key ECDSA P-256, cache dir %s/certs\n", o.rsa ? "RSA-3072" : "ECDSA P-256", dir);
    int rc = run_mints(m, mints, "mint (disk write queued)");
    if (rc == 0) {
        run_hits(m, mints, lookups);
        tls_minter_free(m);     /* a restart: memory empty, disk full */
        rc = tls_minter_new(&ca, dir, (size_t)mints, &m, err, sizeof err);
        if (rc == 0)
            rc = run_mints(m, mints, "disk hit (read + verify)");
    }
    struct tls_mint_stats st;
    tls_minter_stats(m, &st);
    tls_minter_flush(m);
    printf("stats after restart: minted %lu, disk hits %lu, memory hits %lu\n", st.minted,
           st.disk_hits, st.mem_hits);
    tls_minter_free(m);
    tls_ca_free(&ca);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_mint: could not remove %s\n", dir);
    return rc == 0 ? 0 : 1;
}
