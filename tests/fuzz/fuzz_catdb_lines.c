/* libFuzzer target for the list-line parsers and the host normaliser: any
 * line must be accepted, skipped or refused with a reason; what is accepted
 * is a normalised host (normalising it again changes nothing) and, for URL
 * lines, a lower-case path starting with '/'. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catdb/catdb.h"
#include "catdb/catdb_compile.h"

static void check_host(const char *h)
{
    char again[CATDB_HOST_MAX];
    int n = catdb_normalize_host(h, again, sizeof again, NULL);
    if (n <= 0 || (size_t)n != strlen(h) || strcmp(again, h) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char host[CATDB_HOST_MAX], path[2048];
    const char *why;
    const char *line = (const char *)data;

    int r = catdb_parse_domain_line(line, size, host, sizeof host, &why);
    if (r < -1 || r > 1 || (r < 0 && !why))
        abort();
    if (r == 1)
        check_host(host);

    r = catdb_parse_url_line(line, size, host, sizeof host, path, sizeof path, &why);
    if (r < -1 || r > 1 || (r < 0 && !why))
        abort();
    if (r == 1) {
        check_host(host);
        if (path[0] != '/')
            abort();
        for (const char *p = path; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                abort();
    }

    char *z = malloc(size + 1);          /* the C-string APIs */
    if (!z)
        return 0;
    memcpy(z, data, size);
    z[size] = '\0';
    int is_ip = 0;
    int n = catdb_normalize_host(z, host, sizeof host, &is_ip);
    if (n > 0)
        check_host(host);
    const char *upath;
    if (catdb_split_url(z, host, sizeof host, &upath) == 0) {
        check_host(host);
        if (upath < z || upath > z + strlen(z))
            abort();
    }
    free(z);
    return 0;
}
