/* platform/linux/nftlib_int.h: libnftables, loaded with dlopen on first use.
 * Only transparent interception (`shoji intercept`, `shoji run --transparent`
 * heartbeats, `shoji uninstall`) talks to nftables; the explicit proxy never
 * does, so it does not map libnftables and what it pulls in (libnftnl,
 * libmnl, libgmp, libxtables): ~0.5 MiB of resident library pages in an
 * idle agent (docs/ARCHITECTURE.md "Libraries loaded on
 * demand", docs/PERFORMANCE.md "Memory"). Not a public header: see
 * platform.h. */
#ifndef SHOJI_PLATFORM_NFTLIB_INT_H
#define SHOJI_PLATFORM_NFTLIB_INT_H

#include <nftables/libnftables.h>
#include <stddef.h>

/* The library the build was checked against (Debian 12: libnftables1). */
#define NFTLIB_SONAME "libnftables.so.1"

/* The libnftables functions shoji uses; the types come from the header, so
 * a prototype change is a compile error, not a crash. */
struct nftlib {
    __typeof__(&nft_ctx_new) ctx_new;
    __typeof__(&nft_ctx_free) ctx_free;
    __typeof__(&nft_ctx_buffer_output) buffer_output;
    __typeof__(&nft_ctx_buffer_error) buffer_error;
    __typeof__(&nft_run_cmd_from_buffer) run_cmd_from_buffer;
    __typeof__(&nft_ctx_get_output_buffer) get_output_buffer;
    __typeof__(&nft_ctx_get_error_buffer) get_error_buffer;
};

/* The process-wide table, loading NFTLIB_SONAME the first time (thread-safe;
 * the library stays loaded). NULL when it cannot be loaded or lacks a
 * symbol: the reason, with the package to install, is in err. */
const struct nftlib *nftlib_get(char *err, size_t errlen);

/* Loads `soname` into *lib (no caching): what nftlib_get does once. 0, or
 * -ELIBACC with the reason and the package to install in err; *lib is all
 * NULL then. For tests (a missing library). */
int nftlib_load(const char *soname, struct nftlib *lib, char *err, size_t errlen);

#endif
