/* fuzz_http_chunked: the chunked decoder on arbitrary bytes, fed whole, one
 * byte at a time and in pseudo-random pieces. All three must give the same
 * result, the same body bytes and stop at the same offset: a body cannot
 * decode differently depending on how the network split it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http1.h"

struct result {
    int rc;
    size_t end;     /* input offset where decoding stopped */
    size_t outlen;
};

/* mode 0: whole; 1: one byte at a time; 2: pieces from a xorshift PRNG. */
static struct result decode(const uint8_t *in, size_t len, int mode, uint8_t *out)
{
    struct http_chunked c;
    struct result r = { HTTP_CHUNK_NEED_MORE, 0, 0 };
    uint32_t x = 2463534242u ^ (uint32_t)len;
    size_t avail = 0, off = 0;
    http_chunked_init(&c);
    while (avail < len) {
        size_t piece = len - avail;
        if (mode == 1)
            piece = 1;
        else if (mode == 2) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            piece = 1 + x % (piece < 64 ? piece : 64);
        }
        avail += piece;
        for (;;) {
            size_t used = 0;
            struct sv data;
            int rc = http_chunked_step(&c, (const char *)in + off, avail - off, &used, &data);
            if (used > avail - off)
                abort();
            off += used;
            if (rc == HTTP_CHUNK_DATA) {
                if (data.n == 0 || data.p < (const char *)in || data.p + data.n > (const char *)in + off)
                    abort();
                memcpy(out + r.outlen, data.p, data.n);
                r.outlen += data.n;
                continue;
            }
            if (rc == HTTP_CHUNK_NEED_MORE) {
                if (off != avail)
                    abort();
                break;
            }
            r.rc = rc;
            r.end = off;
            if (rc == HTTP_ERROR && (c.error_status != 400 || !c.error_reason))
                abort();
            return r;
        }
    }
    r.end = off;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *a = malloc(size + 1), *b = malloc(size + 1), *c = malloc(size + 1);
    if (!a || !b || !c)
        abort();
    struct result ra = decode(data, size, 0, a);
    struct result rb = decode(data, size, 1, b);
    struct result rc = decode(data, size, 2, c);
    if (ra.rc != rb.rc || ra.rc != rc.rc || ra.outlen != rb.outlen || ra.outlen != rc.outlen ||
        memcmp(a, b, ra.outlen) != 0 || memcmp(a, c, ra.outlen) != 0)
        abort();
    /* Done and error stop at the same byte; need-more consumed everything. */
    if (ra.end != rb.end || ra.end != rc.end)
        abort();
    free(a);
    free(b);
    free(c);
    return 0;
}
