/* platform/linux/nftlib.c: libnftables through dlopen (see nftlib_int.h). */
#include "platform/linux/nftlib_int.h"
#include "util/util.h"

#include <pthread.h>
#include <string.h>

int nftlib_load(const char *soname, struct nftlib *lib, char *err, size_t errlen)
{
    static const struct util_dl_sym syms[] = {
#define S(f, field) { #f, offsetof(struct nftlib, field) }
        S(nft_ctx_new, ctx_new),
        S(nft_ctx_free, ctx_free),
        S(nft_ctx_buffer_output, buffer_output),
        S(nft_ctx_buffer_error, buffer_error),
        S(nft_run_cmd_from_buffer, run_cmd_from_buffer),
        S(nft_ctx_get_output_buffer, get_output_buffer),
        S(nft_ctx_get_error_buffer, get_error_buffer),
#undef S
    };
    memset(lib, 0, sizeof *lib);
    char why[UTIL_ERRLEN];
    int rc = util_dl_load(soname, "libnftables1", syms, UTIL_ARRAY_LEN(syms), lib, why, sizeof why);
    if (rc < 0) {
        memset(lib, 0, sizeof *lib);
        return util_err(err, errlen, rc, "transparent interception needs nftables' library: %s", why);
    }
    return 0;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct nftlib the_lib;
static int load_rc;
static char load_err[UTIL_ERRLEN];

static void load_once(void)
{
    load_rc = nftlib_load(NFTLIB_SONAME, &the_lib, load_err, sizeof load_err);
}

const struct nftlib *nftlib_get(char *err, size_t errlen)
{
    pthread_once(&once, load_once);
    if (load_rc < 0) {
        util_err(err, errlen, load_rc, "%s", load_err);
        return NULL;
    }
    return &the_lib;
}
