/* tls/clienthello: see clienthello.h.
 *
 * A strict, allocation-free parser. The handshake message may be split over
 * several TLS records, so the record payloads are first copied into a local
 * 16 KiB buffer (the bound on the ClientHello we accept), then the
 * ClientHello is parsed from that buffer with a bounds-checked reader. Every
 * length field is checked against what actually remains; nothing is trusted. */
#include "tls/clienthello.h"

#include <string.h>

#define HELLO_MAX 16384         /* handshake bytes we reassemble at most */
#define RECORD_MAX 16384        /* TLSPlaintext.length limit (RFC 8446 5.1) */

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_SUPPORTED_VERSIONS 43

/* A bounds-checked reader over a byte range. Once `bad` is set every read
 * returns zero, so callers check `bad` once after a group of reads. */
struct rd {
    const uint8_t *p;
    size_t n;
    bool bad;
};

static uint32_t rd_uint(struct rd *r, size_t width)
{
    if (r->bad || r->n < width) {
        r->bad = true;
        return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | r->p[i];
    r->p += width;
    r->n -= width;
    return v;
}

/* Splits off the next `len` bytes as a sub-reader. */
static struct rd rd_sub(struct rd *r, size_t len)
{
    struct rd s = { r->p, len, r->bad };
    if (r->bad || r->n < len) {
        r->bad = true;
        s.bad = true;
        s.n = 0;
        return s;
    }
    r->p += len;
    r->n -= len;
    return s;
}

/* A vector with a `width`-byte length prefix. */
static struct rd rd_vec(struct rd *r, size_t width)
{
    size_t len = rd_uint(r, width);
    return rd_sub(r, len);
}

static bool version_ok(uint8_t major, uint8_t minor)
{
    return major == 3 && minor >= 1 && minor <= 4;
}

int tls_hello_sniff(const uint8_t *buf, size_t len)
{
    if (len < 1)
        return -1;
    if (buf[0] != 22)
        return 0;
    if (len < 2)
        return -1;
    if (buf[1] != 3)
        return 0;
    if (len < 3)
        return -1;
    if (buf[2] < 1 || buf[2] > 4)
        return 0;
    if (len < 5)
        return -1;
    size_t rlen = ((size_t)buf[3] << 8) | buf[4];
    return rlen > 0 && rlen <= RECORD_MAX ? 1 : 0;
}

/* A host name as we accept it in SNI: 1..253 bytes of letters, digits,
 * '-', '_' and '.', no empty label, no label over 63 bytes, no trailing dot
 * (RFC 6066 3). Copied lower-case into `out`. */
static bool copy_host(struct rd name, char *out, size_t cap)
{
    if (name.n == 0 || name.n > 253 || name.n >= cap)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < name.n; i++) {
        uint8_t c = name.p[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else if (c >= 'A' && c <= 'Z') {
            c = (uint8_t)(c - 'A' + 'a');
            label++;
        } else {
            return false;
        }
        if (label > 63)
            return false;
        out[i] = (char)c;
    }
    out[name.n] = '\0';
    return label > 0;
}

static int parse_sni(struct rd ext, struct tls_hello *out)
{
    struct rd list = rd_vec(&ext, 2);
    if (ext.bad || ext.n != 0 || list.n == 0)
        return TLS_HELLO_ERROR;
    while (list.n > 0) {
        uint32_t type = rd_uint(&list, 1);
        struct rd name = rd_vec(&list, 2);
        if (list.bad)
            return TLS_HELLO_ERROR;
        if (type != 0)
            continue;           /* unknown name types are skipped */
        if (out->has_sni)       /* at most one host_name (RFC 6066 3) */
            return TLS_HELLO_ERROR;
        if (!copy_host(name, out->sni, sizeof out->sni))
            return TLS_HELLO_ERROR;
        out->has_sni = true;
    }
    return TLS_HELLO_DONE;
}

static bool alpn_printable(struct rd proto)
{
    for (size_t i = 0; i < proto.n; i++)
        if (proto.p[i] < 0x21 || proto.p[i] > 0x7e)
            return false;
    return true;
}

/* Keeps the first 8 printable protocol names that fit; skips the others
 * (GREASE, odd bytes) rather than failing the whole hello. */
static int parse_alpn(struct rd ext, struct tls_hello *out)
{
    struct rd list = rd_vec(&ext, 2);
    if (ext.bad || ext.n != 0 || list.n < 2)
        return TLS_HELLO_ERROR;
    while (list.n > 0) {
        struct rd proto = rd_vec(&list, 1);
        if (list.bad || proto.n == 0)
            return TLS_HELLO_ERROR;
        if (out->nalpn < 8 && proto.n < sizeof out->alpn[0] && alpn_printable(proto)) {
            memcpy(out->alpn[out->nalpn], proto.p, proto.n);
            out->alpn[out->nalpn][proto.n] = '\0';
            out->nalpn++;
        }
    }
    return TLS_HELLO_DONE;
}

static int parse_versions(struct rd ext, struct tls_hello *out)
{
    struct rd list = rd_vec(&ext, 1);
    if (ext.bad || ext.n != 0 || list.n < 2 || list.n % 2 != 0)
        return TLS_HELLO_ERROR;
    while (list.n > 0)
        if (rd_uint(&list, 2) == 0x0304)
            out->has_supported_versions_tls13 = true;
    return TLS_HELLO_DONE;
}

static int parse_extensions(struct rd exts, struct tls_hello *out)
{
    bool seen_sni = false, seen_alpn = false, seen_sv = false;
    while (exts.n > 0) {
        uint32_t type = rd_uint(&exts, 2);
        struct rd ext = rd_vec(&exts, 2);
        if (exts.bad)
            return TLS_HELLO_ERROR;
        bool *seen = type == EXT_SERVER_NAME ? &seen_sni
                   : type == EXT_ALPN ? &seen_alpn
                   : type == EXT_SUPPORTED_VERSIONS ? &seen_sv : NULL;
        if (!seen)
            continue;
        if (*seen)              /* duplicate extension (RFC 8446 4.2) */
            return TLS_HELLO_ERROR;
        *seen = true;
        int rc = type == EXT_SERVER_NAME ? parse_sni(ext, out)
               : type == EXT_ALPN ? parse_alpn(ext, out)
               : parse_versions(ext, out);
        if (rc != TLS_HELLO_DONE)
            return rc;
    }
    return TLS_HELLO_DONE;
}

/* The ClientHello body (after the 4-byte handshake header). */
static int parse_body(struct rd body, struct tls_hello *out)
{
    out->legacy_version = (uint16_t)rd_uint(&body, 2);
    rd_sub(&body, 32);                          /* random */
    struct rd sid = rd_vec(&body, 1);
    struct rd suites = rd_vec(&body, 2);
    struct rd comp = rd_vec(&body, 1);
    if (body.bad || sid.n > 32 || suites.n < 2 || suites.n % 2 != 0 || comp.n < 1)
        return TLS_HELLO_ERROR;
    if ((out->legacy_version >> 8) != 3)
        return TLS_HELLO_ERROR;
    if (body.n == 0)
        return TLS_HELLO_DONE;                  /* no extensions at all */
    struct rd exts = rd_vec(&body, 2);
    if (body.bad || body.n != 0)                /* trailing bytes */
        return TLS_HELLO_ERROR;
    return parse_extensions(exts, out);
}

/* Copies record payloads into `hs` until the whole handshake message is
 * there. Returns DONE with *msg_len and out->hello_len set, or another code. */
static int reassemble(const uint8_t *buf, size_t len, uint8_t *hs, size_t *msg_len,
                      struct tls_hello *out)
{
    size_t off = 0, have = 0, need = 0;
    for (int first = 1;; first = 0) {
        if (len - off < 5)
            return first && tls_hello_sniff(buf, len) == 0 ? TLS_HELLO_NOT_TLS
                                                           : TLS_HELLO_NEED_MORE;
        const uint8_t *h = buf + off;
        size_t rlen = ((size_t)h[3] << 8) | h[4];
        if (h[0] != 22 || !version_ok(h[1], h[2]))
            return first ? TLS_HELLO_NOT_TLS : TLS_HELLO_ERROR;
        if (rlen == 0 || rlen > RECORD_MAX)
            return first ? TLS_HELLO_NOT_TLS : TLS_HELLO_ERROR;
        if (len - off - 5 < rlen)
            return TLS_HELLO_NEED_MORE;
        if (rlen > HELLO_MAX - have)
            return TLS_HELLO_ERROR;
        memcpy(hs + have, h + 5, rlen);
        have += rlen;
        off += 5 + rlen;
        if (need == 0 && have >= 4) {
            if (hs[0] != 1)                     /* not a ClientHello */
                return TLS_HELLO_ERROR;
            need = 4 + (((size_t)hs[1] << 16) | ((size_t)hs[2] << 8) | hs[3]);
            if (need > HELLO_MAX)
                return TLS_HELLO_ERROR;
        }
        if (need != 0 && have >= need) {
            *msg_len = need;
            out->hello_len = off;
            return TLS_HELLO_DONE;
        }
    }
}

int tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *out)
{
    uint8_t hs[HELLO_MAX];
    size_t msg_len = 0;
    memset(out, 0, sizeof *out);
    if (!buf)
        return len ? TLS_HELLO_ERROR : TLS_HELLO_NEED_MORE;
    int rc = reassemble(buf, len, hs, &msg_len, out);
    if (rc != TLS_HELLO_DONE)
        return rc;
    struct rd body = { hs + 4, msg_len - 4, false };
    rc = parse_body(body, out);
    if (rc != TLS_HELLO_DONE) {
        size_t hello_len = out->hello_len;
        memset(out, 0, sizeof *out);
        out->hello_len = hello_len;
    }
    return rc;
}
