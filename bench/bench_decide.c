/* bench_decide: decisions per second of policy_decide() with 10 and with
 * 10,000 decode exclusion patterns and 1,000 disabled applications, in the
 * CONNECT and REQUEST phases — to show the cost per lookup does not grow
 * with the lists. Usage: bench_decide [ITERATIONS [CATDB]] (default
 * 2,000,000; with CATDB, e.g. the UT1 lists compiled by `shoji catdb compile`,
 * every decision also looks up categories under the high_school template). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy.h"
#include "util/util.h"

/* A policy with `npat` exclusion patterns (exact hosts, globs, IPv4 CIDRs,
 * certificate names) and `napps` disabled applications. */
static char *make_policy(int npat, int napps, const char *db)
{
    size_t cap = (size_t)(npat + napps) * 64 + 4096, n = 0;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    n += (size_t)snprintf(t + n, cap - n, "{");
    if (db)
        n += (size_t)snprintf(t + n, cap - n, "\"category_db\": \"%.2000s\", \"template\": \"high_school\", ", db);
    n += (size_t)snprintf(t + n, cap - n, "\"decode\": {\"exclude_hosts\": [");
    for (int i = 0; i < npat; i++) {
        const char *sep = i ? "," : "";
        switch (i % 4) {
        case 0: n += (size_t)snprintf(t + n, cap - n, "%s\"host%d.vendor.example\"", sep, i); break;
        case 1: n += (size_t)snprintf(t + n, cap - n, "%s\"*.zone%d.vendor.example\"", sep, i); break;
        case 2: n += (size_t)snprintf(t + n, cap - n, "%s\"10.%d.%d.0/24\"", sep, (i >> 8) & 255, i & 255); break;
        default: n += (size_t)snprintf(t + n, cap - n, "%s\"cert_name_%d\"", sep, i); break;
        }
    }
    n += (size_t)snprintf(t + n, cap - n, "]}, \"disabled_apps\": [");
    for (int i = 0; i < napps; i++)
        n += (size_t)snprintf(t + n, cap - n, "%s\"app%d.exe\"", i ? "," : "", i);
    snprintf(t + n, cap - n, "], \"block\": [\"blocked.example\", \"*.ads.example\"]}");
    return t;
}

static double run(const struct policy *p, enum policy_phase ph, long iters)
{
    static const char *const hosts[] = { "www.example.com", "host4000.vendor.example",
                                         "a.b.zone4001.vendor.example", "cdn.ads.example",
                                         "www.pokerstars.com", "static.news.example.org" };
    static const char *const apps[] = { "firefox", "app500.exe", "curl", "chromium" };
    struct policy_facts f;
    struct policy_verdict v;
    memset(&f, 0, sizeof f);
    f.phase = ph;
    f.dst.family = AF_INET;
    f.dst.a[0] = 10;
    f.dst.a[1] = 20;
    f.method = "GET";
    f.path = "/index.html?q=1";
    long blocked = 0;
    uint64_t t0 = util_mono_us();
    for (long i = 0; i < iters; i++) {
        f.host = f.sni = hosts[i % 6];
        f.app.name = apps[i % 4];
        f.dst.a[2] = (uint8_t)i;
        policy_decide(p, &f, &v);
        blocked += v.action == POLICY_BLOCK;
    }
    double secs = (double)(util_mono_us() - t0) / 1e6;
    if (blocked < 0)
        puts("");   /* keep the loop from being optimised away */
    return (double)iters / secs;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 2000000;
    const char *db = argc > 2 ? argv[2] : NULL;
    if (iters <= 0 || iters > 1000000000L) {
        fprintf(stderr, "usage: bench_decide [ITERATIONS [CATDB]]\n");
        return 2;
    }
    const int sizes[][2] = { { 10, 10 }, { 10000, 1000 } };
    printf("# policy_decide() decisions per second (%ld iterations each%s%s)\n", iters,
           db ? ", category database " : "", db ? db : "");
    for (size_t s = 0; s < 2; s++) {
        char *text = make_policy(sizes[s][0], sizes[s][1], db), err[UTIL_ERRLEN];
        struct policy *p;
        uint64_t t0 = util_mono_us();
        if (!text || policy_load_text(text, strlen(text), "bench", db ? "." : NULL, &p, err, sizeof err) < 0) {
            fprintf(stderr, "bench_decide: %s\n", text ? err : "out of memory");
            return 1;
        }
        double load_ms = (double)(util_mono_us() - t0) / 1e3;
        double c = run(p, POLICY_PHASE_CONNECT, iters), r = run(p, POLICY_PHASE_REQUEST, iters);
        printf("exclusions=%-6d disabled_apps=%-5d load=%.1fms connect=%.0f/s request=%.0f/s\n",
               sizes[s][0], sizes[s][1], load_ms, c, r);
        policy_unref(p);
        free(text);
    }
    return 0;
}
