/* fbuf: text built into a caller's fixed array, without printf — for what is
 * formatted on the event loop for every request (log lines, pool keys,
 * URLs). An append that does not fit sets `overflow` and is dropped, as is
 * everything after it; nothing is ever written past `cap`.
 * Must never: write past cap, or allocate. */
#ifndef SHOJI_FBUF_H
#define SHOJI_FBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fbuf {
    char *p;
    size_t len, cap;
    bool overflow;
};

static inline struct fbuf fbuf_make(char *p, size_t cap) { return (struct fbuf){ p, 0, cap, false }; }
/* Inline: a log line is dozens of short appends of constant length. */
static inline void fbuf_put(struct fbuf *o, const char *s, size_t n)
{
    if (o->overflow || n > o->cap - o->len) {
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}
static inline void fbuf_puts(struct fbuf *o, const char *s) { fbuf_put(o, s, strlen(s)); }
void fbuf_u64(struct fbuf *o, uint64_t v);
void fbuf_i64(struct fbuf *o, int64_t v);
void fbuf_u64_pad(struct fbuf *o, uint64_t v, size_t width);   /* zero-padded to width */
/* NUL-terminates (the terminator needs room too). False on overflow, and
 * then p holds "" when cap > 0. */
bool fbuf_cstr(struct fbuf *o);

#endif
