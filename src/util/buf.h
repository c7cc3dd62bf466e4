/* buf: a growable byte buffer with a hard upper bound. Appends past the bound
 * fail instead of growing, so every buffer in shoji has a limit.
 * Must never: grow past `max`, or abort on allocation failure. */
#ifndef SHOJI_BUF_H
#define SHOJI_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct buf {
    char *p;
    size_t len;   /* bytes used */
    size_t cap;   /* bytes allocated */
    size_t max;   /* hard bound on cap */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);                      /* len = 0, keeps memory */
/* 0 on success, -ENOBUFS past the bound, -ENOMEM on allocation failure. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append_slow(struct buf *b, const void *data, size_t n);   /* grows first */
/* Inline when it fits: headers and log lines are many short appends. */
static inline int buf_append(struct buf *b, const void *data, size_t n)
{
    if (n && n <= b->cap - b->len) {
        memcpy(b->p + b->len, data, n);
        b->len += n;
        return 0;
    }
    return buf_append_slow(b, data, n);
}
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_consume(struct buf *b, size_t n);          /* drop n bytes from the front */

#endif
