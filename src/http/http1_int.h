/* http1_int: helpers shared by the http1*.c files only (character classes,
 * the line scanner, the field-block parser, list and framing analysis).
 * Not part of the public API: the proxy includes http1.h, never this.
 * Must never: read past the `len` it is given, allocate, or abort. */
#ifndef SHOJI_HTTP1_INT_H
#define SHOJI_HTTP1_INT_H

#include "http/http1.h"

/* http_scan_line() result when the line did not end inside its window. */
#define HTTP_SCAN_LIMIT (-2)
/* At most this many empty lines (CRLF) are skipped before a request line. */
#define HTTP_MAX_LEADING_CRLF 4

extern const unsigned char http_tchar_tab[256];
static inline bool http_is_tchar(unsigned char c) { return http_tchar_tab[c] != 0; }

/* ASCII case-insensitive match of a token against a lower-case literal
 * (no strlen, no locale: this runs for every field of every message). */
static inline bool http_ieq_n(struct sv a, const char *lower, size_t n)
{
    if (a.n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a.p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i])
            return false;
    }
    return true;
}
#define HTTP_IEQ(sv, lit) http_ieq_n((sv), lit, sizeof(lit) - 1)

/* Copies `lim` (or the defaults when NULL) and clamps max_headers. */
void http_limits_norm(const struct http_limits *lim, struct http_limits *out);

/* Finds the CRLF ending the line that starts at `from`, looking only at
 * b[from .. min(len, wend)). Returns 1 and sets *cr to the CR's index; 0 when
 * more bytes are needed; HTTP_SCAN_LIMIT when the window is full without a
 * line end; HTTP_ERROR (and *why) on a bare CR, a bare LF or a control byte
 * other than HTAB. Bytes >= 0x80 pass (obs-text). */
int http_scan_line(const char *b, size_t len, size_t from, size_t wend, size_t *cr,
                   const char **why);

/* "HTTP/1.0" or "HTTP/1.1": 0 and *minor; another HTTP/d.d: -2 (505);
 * anything else: -1. */
int http_parse_version(struct sv v, int *minor);

/* Parses field lines from `pos` through the empty line. Returns the offset
 * just past the empty line, HTTP_NEED_MORE, or HTTP_ERROR with *status 400
 * (syntax) or 431 (limits) and *why. */
int http_parse_fields(const char *b, size_t len, size_t pos, const struct http_limits *lim,
                      struct http_header *h, size_t *nh, int *status, const char **why);

/* Iterates a comma-separated list: sets *elem to the next element with OWS
 * trimmed (possibly empty) and advances *rest; false when nothing is left. */
bool http_list_next(struct sv *rest, struct sv *elem);
/* True if any field called `field` lists `token` (case-insensitive). */
bool http_has_token(const struct http_header *h, size_t n, const char *field, const char *token);

/* What the framing and connection fields of one message say. */
struct http_fields_info {
    bool has_cl;
    uint64_t cl;
    bool has_te;
    unsigned te_chunked;        /* how many times chunked appears */
    bool te_last_chunked;
    bool te_unknown;            /* a coding we do not know */
    bool conn_close, conn_keep_alive, conn_upgrade;
    size_t nhost;
    const struct http_header *host;
    const struct http_header *expect;
    const struct http_header *upgrade;
};
/* Fills *fi. HTTP_ERROR (and *why) for a malformed, overflowing or
 * disagreeing Content-Length or a malformed Transfer-Encoding list. */
int http_fields_analyze(const struct http_header *h, size_t n, struct http_fields_info *fi,
                        const char **why);

#endif
