/* util/dl.c: libraries loaded on demand (util.h: util_dl_load). */
#include "util/util.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

static const char *dl_reason(void)
{
    const char *e = dlerror();
    return e ? e : "unknown error";
}

int util_dl_load(const char *soname, const char *package, const struct util_dl_sym *syms,
                 size_t nsyms, void *table, char *err, size_t errlen)
{
    /* RTLD_LOCAL: its symbols (and its dependencies') never interpose on
     * anything else in the process. */
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return util_err(err, errlen, -ELIBACC, "cannot load %s (%s): install the %s package",
                        soname, dl_reason(), package);
    for (size_t i = 0; i < nsyms; i++) {
        dlerror();
        void *p = dlsym(h, syms[i].name);
        if (!p) {
            /* The message first: dlclose frees the string dlerror returned. */
            int rc = util_err(err, errlen, -ELIBACC, "%s has no %s (%s): unsupported version of %s",
                              soname, syms[i].name, dl_reason(), package);
            dlclose(h);
            return rc;
        }
        /* POSIX: dlsym's result converts to a function pointer. */
        memcpy((char *)table + syms[i].off, &p, sizeof p);
    }
    return 0;
}
