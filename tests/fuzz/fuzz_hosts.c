/* libFuzzer target: the hosts(5) file parser behind `shoji run --hosts`
 * (src/proxy/hosts.c), then lookups of names taken from the input. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/hosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hosts h;
    char err[256];
    if (hosts_parse((const char *)data, size, "fuzz", &h, NULL, err, sizeof err) < 0)
        return 0;
    struct sockaddr_storage out[4];
    char name[300];
    size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, n);
    name[n] = '\0';
    hosts_lookup(&h, name, out, 4);
    for (size_t i = 0; i < h.n && i < 16; i++)
        hosts_lookup(&h, h.e[i].name, out, 4);
    hosts_free(&h);
    return 0;
}
