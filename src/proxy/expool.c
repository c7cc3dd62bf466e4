/* expool: per-worker spare exchanges and head-writing buffer; see internal.h. */
#include "proxy/internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A spare exchange is poisoned for AddressSanitizer while it waits, so a
 * use after expool_give() is still caught in the test build, as it was when
 * every exchange was freed. (The macros are empty in other builds.) */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SHOJI_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SHOJI_ASAN 1
#endif
#ifdef SHOJI_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* A typical request head fits; a longer one grows the block once, and the
 * block (up to the head limit) stays with the exchange. */
#define HEAD_COPY_MIN 2048

/* Zeroes *obj except its array member `arr` (which a parser fills and
 * counts itself). */
#define ZERO_EXCEPT(obj, arr)                                                              \
    do {                                                                                   \
        char *base_ = (char *)(obj);                                                       \
        size_t a_ = offsetof(__typeof__(*(obj)), arr), e_ = a_ + sizeof((obj)->arr);       \
        memset(base_, 0, a_);                                                              \
        memset(base_ + e_, 0, sizeof *(obj) - e_);                                         \
    } while (0)

/* Zeroes everything from `req` on but the two header arrays (8 KiB). */
static void exchange_clear(struct exchange *ex)
{
    char *base = (char *)ex;
    size_t rq = offsetof(struct exchange, req), rs = offsetof(struct exchange, resp);
    ZERO_EXCEPT(&ex->req, headers);
    memset(base + rq + sizeof ex->req, 0, rs - (rq + sizeof ex->req));
    ZERO_EXCEPT(&ex->resp, headers);
    memset(base + rs + sizeof ex->resp, 0, sizeof *ex - (rs + sizeof ex->resp));
}

static void exchange_free(struct exchange *ex)
{
    free(ex->head_copy);
    free(ex);
}

struct exchange *expool_take(struct worker *w)
{
    struct exchange *ex = w->nex_spare ? w->ex_spare[--w->nex_spare] : NULL;
    if (ex) {
        UNPOISON(ex, sizeof *ex);
        UNPOISON(ex->head_copy, ex->head_cap);
    } else {
        ex = malloc(sizeof *ex);
        if (!ex)
            return NULL;
        ex->head_copy = NULL;
        ex->head_cap = 0;
    }
    w->ex_taken = true;
    exchange_clear(ex);
    return ex;
}

int expool_head_room(struct exchange *ex, size_t len)
{
    if (len <= ex->head_cap)
        return 0;
    size_t cap = len > HEAD_COPY_MIN ? len : HEAD_COPY_MIN;
    char *p = malloc(cap);
    if (!p)
        return -1;
    free(ex->head_copy);
    ex->head_copy = p;
    ex->head_cap = cap;
    return 0;
}

void expool_give(struct worker *w, struct exchange *ex)
{
    if (!ex)
        return;
    if (w->nex_spare < EXPOOL_MAX) {
        POISON(ex->head_copy, ex->head_cap);
        POISON(ex, sizeof *ex);
        w->ex_spare[w->nex_spare++] = ex;
    } else {
        exchange_free(ex);
    }
}

void expool_drain(struct worker *w)
{
    while (w->nex_spare) {
        struct exchange *ex = w->ex_spare[--w->nex_spare];
        UNPOISON(ex, sizeof *ex);
        UNPOISON(ex->head_copy, ex->head_cap);
        exchange_free(ex);
    }
    buf_free(&w->head_out);
}

void expool_sweep(struct worker *w)
{
    if (!w->ex_taken)
        expool_drain(w);
    w->ex_taken = false;
}

struct buf *expool_head_buf(struct worker *w, size_t max)
{
    struct buf *b = &w->head_out;
    buf_reset(b);
    if (b->cap > max)   /* the limit went down (a reload): start afresh */
        buf_free(b);
    b->max = max;
    return b;
}
