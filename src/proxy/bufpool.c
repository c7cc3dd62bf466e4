/* bufpool: per-worker spare input buffers for streams; see internal.h. */
#include "proxy/internal.h"

#include <errno.h>
#include <stdlib.h>

int pstream_in_room(struct pstream *s, size_t min_room)
{
    struct buf *b = &s->in;
    if (b->cap - b->len >= min_room)
        return 0;
    if (!b->p) {
        struct bufpool *bp = &s->w->bufs;
        char *blk = bp->n ? bp->blocks[--bp->n] : malloc(PSTREAM_READ_CHUNK);
        if (!blk)
            return -ENOMEM;
        b->p = blk;
        b->cap = PSTREAM_READ_CHUNK;
        b->len = 0;
        if (min_room <= b->cap)
            return 0;
    }
    return buf_reserve(b, min_room > PSTREAM_READ_CHUNK ? min_room : PSTREAM_READ_CHUNK);
}

void pstream_in_release(struct pstream *s)
{
    struct buf *b = &s->in;
    if (!b->p || b->len)
        return;
    struct bufpool *bp = &s->w->bufs;
    if (b->cap == PSTREAM_READ_CHUNK && bp->n < BUFPOOL_MAX) {
        bp->blocks[bp->n++] = b->p;
        b->p = NULL;
        b->cap = 0;
        return;
    }
    buf_free(b);
}

void bufpool_drain(struct bufpool *bp)
{
    while (bp->n)
        free(bp->blocks[--bp->n]);
}
