/* fbuf: see fbuf.h. */
#include "util/fbuf.h"


void fbuf_u64_pad(struct fbuf *o, uint64_t v, size_t width)
{
    char d[20];
    size_t n = 0;
    do {
        d[sizeof d - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < sizeof d);
    while (n < width && n < sizeof d)
        d[sizeof d - ++n] = '0';
    fbuf_put(o, d + sizeof d - n, n);
}

void fbuf_u64(struct fbuf *o, uint64_t v) { fbuf_u64_pad(o, v, 0); }

void fbuf_i64(struct fbuf *o, int64_t v)
{
    if (v < 0) {
        fbuf_put(o, "-", 1);
        fbuf_u64(o, (uint64_t)0 - (uint64_t)v);
        return;
    }
    fbuf_u64(o, (uint64_t)v);
}

bool fbuf_cstr(struct fbuf *o)
{
    if (!o->overflow && o->len < o->cap) {
        o->p[o->len] = '\0';
        return true;
    }
    o->overflow = true;
    if (o->cap)
        o->p[0] = '\0';
    return false;
}
