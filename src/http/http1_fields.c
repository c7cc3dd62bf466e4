/* http1_fields: the parts of HTTP/1.1 parsing shared by requests and
 * responses — character classes, the line scanner, field lines, lists and
 * framing fields (RFC 9110 5, 5.6; RFC 9112 2.2, 5, 6). See http1_int.h. */
#include "http/http1_int.h"

#include <string.h>

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 *         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA   (RFC 9110 5.6.2) */
const unsigned char http_tchar_tab[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

void http_limits_default(struct http_limits *lim)
{
    lim->max_head = 65536;
    lim->max_line = 8192;
    lim->max_headers = 100;
}

void http_limits_norm(const struct http_limits *lim, struct http_limits *out)
{
    struct http_limits def;
    http_limits_default(&def);
    *out = lim ? *lim : def;
    /* 0 means "the default", so a zeroed struct is usable. */
    if (out->max_head == 0)
        out->max_head = def.max_head;
    if (out->max_line == 0)
        out->max_line = def.max_line;
    if (out->max_headers == 0)
        out->max_headers = def.max_headers;
    if (out->max_headers > HTTP_MAX_HEADERS)
        out->max_headers = HTTP_MAX_HEADERS;
    if (out->max_head > (size_t)1 << 30)      /* results are ints */
        out->max_head = (size_t)1 << 30;
    if (out->max_line > out->max_head)
        out->max_line = out->max_head;
}

/* True if one of the 8 bytes is < 0x20 or 0x7f: a control byte, or CR/LF/
 * HTAB. Exact per word (bytes >= 0x80 never trigger it). */
static inline bool word_has_ctl(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t lt = (x - ones * 0x20) & ~x & high;
    uint64_t y = x ^ (ones * 0x7f);
    uint64_t del = (y - ones) & ~y & high;
    return (lt | del) != 0;
}

int http_scan_line(const char *b, size_t len, size_t from, size_t wend, size_t *cr,
                   const char **why)
{
    size_t end = len < wend ? len : wend;
    size_t i = from;
    while (i < end) {
        /* Skip 8 plain bytes at a time; look at a word with a control byte
         * one byte at a time, then go back to words. */
        uint64_t x;
        while (i + 8 <= end && (memcpy(&x, b + i, 8), !word_has_ctl(x)))
            i += 8;
        size_t stop = end - i > 8 ? i + 8 : end;
        for (; i < stop; i++) {
            unsigned char c = (unsigned char)b[i];
            if ((c >= 0x20 && c != 0x7f) || c == '\t')
                continue;
            if (c == '\r') {
                if (i + 1 >= end)
                    return end == wend ? HTTP_SCAN_LIMIT : HTTP_NEED_MORE;
                if (b[i + 1] == '\n') {
                    *cr = i;
                    return 1;
                }
                *why = "bare CR in a line (lines must end in CRLF)";
                return HTTP_ERROR;
            }
            *why = c == '\n' ? "bare LF line ending (lines must end in CRLF)"
                             : "control character in the message head";
            return HTTP_ERROR;
        }
    }
    return end == wend ? HTTP_SCAN_LIMIT : HTTP_NEED_MORE;
}

int http_parse_version(struct sv v, int *minor)
{
    if (v.n != 8 || memcmp(v.p, "HTTP/", 5) != 0 || v.p[6] != '.' ||
        (unsigned char)(v.p[5] - '0') > 9 || (unsigned char)(v.p[7] - '0') > 9)
        return -1;
    if (v.p[5] != '1' || (v.p[7] != '0' && v.p[7] != '1'))
        return -2;
    *minor = v.p[7] - '0';
    return 0;
}

/* One field line p[0..n) (without CRLF, n > 0, no control bytes). */
static int parse_field_line(const char *p, size_t n, struct http_header *h, const char **why)
{
    if (p[0] == ' ' || p[0] == '\t') {
        *why = "obs-fold: a field line starts with whitespace";
        return HTTP_ERROR;
    }
    size_t i = 0;
    while (i < n && http_is_tchar((unsigned char)p[i]))
        i++;
    if (i == n || p[i] != ':') {
        if (i == n)
            *why = "field line without a colon";
        else if (p[i] == ' ' || p[i] == '\t')
            *why = "whitespace between field name and colon";
        else
            *why = "invalid character in a field name";
        return HTTP_ERROR;
    }
    if (i == 0) {
        *why = "empty field name";
        return HTTP_ERROR;
    }
    h->name = sv_make(p, i);
    h->value = sv_trim(sv_make(p + i + 1, n - i - 1));
    return 0;
}

int http_parse_fields(const char *b, size_t len, size_t pos, const struct http_limits *lim,
                      struct http_header *h, size_t *nh, int *status, const char **why)
{
    *nh = 0;
    for (;;) {
        size_t wend = UTIL_MIN(pos + lim->max_line + 2, lim->max_head);
        size_t cr = 0;
        int rc = http_scan_line(b, len, pos, wend, &cr, why);
        if (rc == HTTP_NEED_MORE)
            return HTTP_NEED_MORE;
        if (rc == HTTP_SCAN_LIMIT) {
            *status = 431;
            *why = pos + lim->max_line + 2 <= lim->max_head ? "header line too long"
                                                            : "message head too long";
            return HTTP_ERROR;
        }
        if (rc == HTTP_ERROR) {
            *status = 400;
            return HTTP_ERROR;
        }
        if (cr == pos)
            return (int)(cr + 2);
        if (*nh >= lim->max_headers) {
            *status = 431;
            *why = "too many header fields";
            return HTTP_ERROR;
        }
        if (parse_field_line(b + pos, cr - pos, &h[*nh], why) < 0) {
            *status = 400;
            return HTTP_ERROR;
        }
        (*nh)++;
        pos = cr + 2;
    }
}

bool http_list_next(struct sv *rest, struct sv *elem)
{
    if (!rest->p)
        return false;
    const char *comma = memchr(rest->p, ',', rest->n);
    if (comma) {
        size_t k = (size_t)(comma - rest->p);
        *elem = sv_trim(sv_make(rest->p, k));
        rest->p += k + 1;
        rest->n -= k + 1;
    } else {
        *elem = sv_trim(*rest);
        rest->p = NULL;
        rest->n = 0;
    }
    return true;
}

bool http_has_token(const struct http_header *h, size_t n, const char *field, const char *token)
{
    for (size_t i = 0; i < n; i++) {
        if (!sv_ieq_cstr(h[i].name, field))
            continue;
        struct sv rest = h[i].value, e;
        while (http_list_next(&rest, &e))
            if (sv_ieq_cstr(e, token))
                return true;
    }
    return false;
}

/* Content-Length = 1*DIGIT; a list of identical values ("5, 5") is the same
 * as one (RFC 9110 8.6). Anything else is refused. */
static int analyze_cl(struct sv v, struct http_fields_info *fi, const char **why)
{
    struct sv rest = v, e;
    while (http_list_next(&rest, &e)) {
        if (e.n == 0) {
            *why = "empty Content-Length";
            return HTTP_ERROR;
        }
        uint64_t x = 0;
        for (size_t i = 0; i < e.n; i++) {
            unsigned d = (unsigned char)e.p[i] - '0';
            if (d > 9) {
                *why = "Content-Length is not a decimal number";
                return HTTP_ERROR;
            }
            if (x > (UINT64_MAX - d) / 10) {
                *why = "Content-Length too large";
                return HTTP_ERROR;
            }
            x = x * 10 + d;
        }
        if (fi->has_cl && x != fi->cl) {
            *why = "conflicting Content-Length values";
            return HTTP_ERROR;
        }
        fi->has_cl = true;
        fi->cl = x;
    }
    return 0;
}

static bool known_coding(struct sv c)
{
    static const char *const known[] = { "gzip", "x-gzip", "deflate", "compress", "x-compress" };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(known); i++)
        if (sv_ieq_cstr(c, known[i]))
            return true;
    return false;
}

/* Transfer-Encoding = #transfer-coding (RFC 9112 6.1); several fields form
 * one list, so "last coding" is tracked across them. */
static int analyze_te(struct sv v, struct http_fields_info *fi, const char **why)
{
    struct sv rest = v, e;
    fi->has_te = true;
    while (http_list_next(&rest, &e)) {
        const char *semi = memchr(e.p, ';', e.n);
        struct sv name = semi ? sv_trim(sv_make(e.p, (size_t)(semi - e.p))) : e;
        bool tok = name.n > 0;
        for (size_t i = 0; i < name.n && tok; i++)
            tok = http_is_tchar((unsigned char)name.p[i]);
        if (!tok) {
            *why = "malformed Transfer-Encoding";
            return HTTP_ERROR;
        }
        if (HTTP_IEQ(name, "chunked")) {
            if (semi) {
                *why = "chunked transfer coding with parameters";
                return HTTP_ERROR;
            }
            fi->te_chunked++;
            fi->te_last_chunked = true;
        } else {
            fi->te_last_chunked = false;
            if (!known_coding(name))
                fi->te_unknown = true;
        }
    }
    return 0;
}

static void analyze_connection(struct sv v, struct http_fields_info *fi)
{
    struct sv rest = v, e;
    while (http_list_next(&rest, &e)) {
        if (HTTP_IEQ(e, "close"))
            fi->conn_close = true;
        else if (HTTP_IEQ(e, "keep-alive"))
            fi->conn_keep_alive = true;
        else if (HTTP_IEQ(e, "upgrade"))
            fi->conn_upgrade = true;
    }
}

int http_fields_analyze(const struct http_header *h, size_t n, struct http_fields_info *fi,
                        const char **why)
{
    memset(fi, 0, sizeof *fi);
    for (size_t i = 0; i < n; i++) {
        struct sv name = h[i].name;
        int rc = 0;
        /* Dispatch on length first: most fields are none of these. */
        switch (name.n) {
        case 4:
            if (HTTP_IEQ(name, "host") && fi->nhost++ == 0)
                fi->host = &h[i];
            break;
        case 6:
            if (HTTP_IEQ(name, "expect") && !fi->expect)
                fi->expect = &h[i];
            break;
        case 7:
            if (HTTP_IEQ(name, "upgrade") && !fi->upgrade)
                fi->upgrade = &h[i];
            break;
        case 10:
            if (HTTP_IEQ(name, "connection"))
                analyze_connection(h[i].value, fi);
            break;
        case 14:
            if (HTTP_IEQ(name, "content-length"))
                rc = analyze_cl(h[i].value, fi, why);
            break;
        case 17:
            if (HTTP_IEQ(name, "transfer-encoding"))
                rc = analyze_te(h[i].value, fi, why);
            break;
        default:
            break;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

const struct http_header *http_find_header(const struct http_header *h, size_t n,
                                           const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (h[i].name.n == len && sv_ieq(h[i].name, sv_make(name, len)))
            return &h[i];
    return NULL;
}

/* The fields RFC 9110 7.6.1 names hop-by-hop, told apart by length first:
 * this runs for every field of every forwarded message. */
static bool fixed_hop_by_hop(struct sv name)
{
    switch (name.n) {
    case 2:
        return HTTP_IEQ(name, "te");
    case 7:
        return HTTP_IEQ(name, "trailer") || HTTP_IEQ(name, "upgrade");
    case 10:
        return HTTP_IEQ(name, "connection") || HTTP_IEQ(name, "keep-alive");
    case 16:
        return HTTP_IEQ(name, "proxy-connection");
    case 17:
        return HTTP_IEQ(name, "transfer-encoding");
    case 18:
        return HTTP_IEQ(name, "proxy-authenticate");
    case 19:
        return HTTP_IEQ(name, "proxy-authorization");
    default:
        return false;
    }
}

bool http_is_hop_by_hop(const struct http_header *h, size_t n, struct sv name)
{
    if (fixed_hop_by_hop(name))
        return true;
    for (size_t i = 0; i < n; i++) {
        if (!HTTP_IEQ(h[i].name, "connection") && !HTTP_IEQ(h[i].name, "proxy-connection"))
            continue;
        struct sv rest = h[i].value, e;
        while (http_list_next(&rest, &e))
            if (sv_ieq(e, name))
                return true;
    }
    return false;
}
