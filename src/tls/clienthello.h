/* tls/clienthello: reads the SNI and ALPN of a TLS ClientHello from the first
 * bytes of a connection, without OpenSSL and without consuming them (the
 * caller keeps the bytes to replay them to a decoder or to the origin).
 * Must never: read past `len`, allocate, or trust any length field. */
#ifndef SHOJI_TLS_CLIENTHELLO_H
#define SHOJI_TLS_CLIENTHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_HELLO_NOT_TLS (-2)  /* the bytes are not a TLS handshake */
#define TLS_HELLO_ERROR (-1)    /* TLS, but a malformed ClientHello */
#define TLS_HELLO_NEED_MORE 0   /* looks like TLS so far; read more */
#define TLS_HELLO_DONE 1

struct tls_hello {
    char sni[256];          /* host_name, lower-cased; empty if none */
    bool has_sni;
    char alpn[8][32];       /* offered protocols, in order */
    size_t nalpn;
    uint16_t legacy_version;
    bool has_supported_versions_tls13;
    size_t hello_len;       /* bytes of the records that carry the hello */
};

/* Parses the ClientHello, which may span several TLS records (bounded to
 * 16 KiB of handshake data). Returns one of the codes above. */
int tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *out);

/* Quick test of the first bytes: 1 = looks like TLS, 0 = not, -1 = too few bytes. */
int tls_hello_sniff(const uint8_t *buf, size_t len);

#endif
