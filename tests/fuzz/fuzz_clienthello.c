/* libFuzzer target for the ClientHello peek: any bytes must give one of the
 * four results, never read past the input, and on success hand back a host
 * name made only of the characters the parser promises. The result must not
 * depend on bytes past hello_len (the proxy replays exactly those). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/clienthello.h"

static void check_host(const struct tls_hello *h)
{
    for (const char *p = h->sni; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
            abort();
    }
    if (h->has_sni != (h->sni[0] != '\0'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tls_hello h, again;
    int rc = tls_hello_parse(data, size, &h);
    if (rc < TLS_HELLO_NOT_TLS || rc > TLS_HELLO_DONE)
        abort();
    int s = tls_hello_sniff(data, size);
    if (s < -1 || s > 1)
        abort();
    if (rc != TLS_HELLO_DONE)
        return 0;
    check_host(&h);
    if (h.nalpn > 8 || h.hello_len == 0 || h.hello_len > size)
        abort();
    for (size_t i = 0; i < h.nalpn; i++)
        if (strnlen(h.alpn[i], sizeof h.alpn[i]) >= sizeof h.alpn[i])
            abort();
    /* exactly hello_len bytes give the same answer */
    if (tls_hello_parse(data, h.hello_len, &again) != TLS_HELLO_DONE ||
        strcmp(again.sni, h.sni) != 0 || again.nalpn != h.nalpn)
        abort();
    return 0;
}
