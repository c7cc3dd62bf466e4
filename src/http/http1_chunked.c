/* http1_chunked: the streaming chunked-body decoder (RFC 9112 7.1). A byte
 * state machine for the size lines and trailers, bulk hand-back of data, so
 * any split of the input gives the same pieces in the same order.
 * Errors set error_status 400; a proxy decoding a response maps it to 502. */
#include "http/http1_int.h"

#include <string.h>

#define CHUNK_MAX_DIGITS 15        /* 60 bits: the size cannot overflow */
#define CHUNK_MAX_LINE 4096        /* size line incl. extensions and CRLF */
#define CHUNK_MAX_TRAILERS 16384

enum {
    CH_SIZE = 0,      /* first byte of a size line */
    CH_DIGITS,        /* more hex digits */
    CH_BWS,           /* whitespace after the size: only ";" may follow */
    CH_EXT,           /* chunk extensions, skipped */
    CH_SIZE_LF,       /* CR seen at the end of the size line */
    CH_DATA,
    CH_DATA_CR,       /* the CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or the final CRLF */
    CH_TRAILER_LINE,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_DONE,
    CH_FAILED,
};

void http_chunked_init(struct http_chunked *c)
{
    memset(c, 0, sizeof *c);
    c->state = CH_SIZE;
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_ctl(unsigned char ch) { return (ch < 0x20 && ch != '\t') || ch == 0x7f; }

static int fail(struct http_chunked *c, const char *why)
{
    c->state = CH_FAILED;
    c->error_status = 400;
    c->error_reason = why;
    return HTTP_ERROR;
}

/* After the size digits: BWS, then only ";" (an extension) may follow. */
static int after_size(struct http_chunked *c, unsigned char ch)
{
    if (ch == ' ' || ch == '\t')
        c->state = CH_BWS;
    else if (ch == ';')
        c->state = CH_EXT;
    else
        return fail(c, "invalid character in a chunk size line");
    return 0;
}

/* The size line: 1*15HEXDIG [ BWS ";" ext ] CRLF */
static int size_byte(struct http_chunked *c, unsigned char ch)
{
    if (++c->line_len > CHUNK_MAX_LINE)
        return fail(c, "chunk size line too long (extensions)");
    int v = hexval(ch);
    switch (c->state) {
    case CH_SIZE:
        if (v < 0)
            return fail(c, "chunk size is not hexadecimal");
        c->remaining = (uint64_t)v;
        c->state = CH_DIGITS;
        return 0;
    case CH_DIGITS:
        if (v >= 0) {
            if (c->line_len > CHUNK_MAX_DIGITS)
                return fail(c, "chunk size has too many digits");
            c->remaining = c->remaining * 16 + (uint64_t)v;
            return 0;
        }
        if (ch == '\r') {
            c->state = CH_SIZE_LF;
            return 0;
        }
        return after_size(c, ch);
    case CH_BWS:
        return after_size(c, ch);
    case CH_EXT:
        if (ch == '\r')
            c->state = CH_SIZE_LF;
        else if (is_ctl(ch))
            return fail(c, "control character in a chunk extension");
        return 0;
    default: /* CH_SIZE_LF */
        if (ch != '\n')
            return fail(c, "bare CR in a chunk size line");
        c->line_len = 0;
        c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
        return 0;
    }
}

/* Trailer section: field lines, dropped, then the final CRLF. */
static int trailer_byte(struct http_chunked *c, unsigned char ch)
{
    if (++c->trailer_len > CHUNK_MAX_TRAILERS)
        return fail(c, "chunked trailers too large");
    switch (c->state) {
    case CH_TRAILER_START:
        if (ch == '\r')
            c->state = CH_END_LF;
        else if (ch == ' ' || ch == '\t')
            return fail(c, "obs-fold in a trailer");
        else if (is_ctl(ch))
            return fail(c, "control character in a trailer");
        else
            c->state = CH_TRAILER_LINE;
        return 0;
    case CH_TRAILER_LINE:
        if (ch == '\r')
            c->state = CH_TRAILER_LF;
        else if (is_ctl(ch))
            return fail(c, "control character in a trailer");
        return 0;
    case CH_TRAILER_LF:
        if (ch != '\n')
            return fail(c, "bare CR in a trailer");
        c->state = CH_TRAILER_START;
        return 0;
    default: /* CH_END_LF */
        if (ch != '\n')
            return fail(c, "bare CR at the end of a chunked body");
        c->state = CH_DONE;
        return 0;
    }
}

static int step_byte(struct http_chunked *c, unsigned char ch)
{
    switch (c->state) {
    case CH_SIZE: case CH_DIGITS: case CH_BWS: case CH_EXT: case CH_SIZE_LF:
        return size_byte(c, ch);
    case CH_DATA_CR:
        if (ch != '\r')
            return fail(c, "missing CRLF after chunk data");
        c->state = CH_DATA_LF;
        return 0;
    case CH_DATA_LF:
        if (ch != '\n')
            return fail(c, "missing CRLF after chunk data");
        c->state = CH_SIZE;
        c->remaining = 0;
        return 0;
    default:
        return trailer_byte(c, ch);
    }
}

int http_chunked_step(struct http_chunked *c, const char *in, size_t len,
                      size_t *consumed, struct sv *data)
{
    size_t i = 0;
    *data = sv_make(NULL, 0);
    *consumed = 0;
    if (c->state == CH_FAILED)
        return HTTP_ERROR;
    if (c->state == CH_DONE)
        return HTTP_CHUNK_DONE;
    while (i < len) {
        if (c->state == CH_DATA) {
            size_t take = len - i < c->remaining ? len - i : (size_t)c->remaining;
            *data = sv_make(in + i, take);
            c->remaining -= take;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            *consumed = i + take;
            return HTTP_CHUNK_DATA;
        }
        int rc = step_byte(c, (unsigned char)in[i++]);
        if (rc < 0) {
            *consumed = i;
            return HTTP_ERROR;
        }
        if (c->state == CH_DONE) {
            *consumed = i;
            return HTTP_CHUNK_DONE;
        }
    }
    *consumed = i;
    return HTTP_CHUNK_NEED_MORE;
}
