/* tls/upstream: the TLS client contexts used towards origins — the system
 * trust store plus the extra CA files given with --upstream-ca, host name
 * checks, client session resumption — and the verification verdict in words.
 * Must never: hide a failed verification (the result is always reported to
 * the caller, who shows it to the user), or skip the host name check. */
#ifndef SHOJI_TLS_UPSTREAM_H
#define SHOJI_TLS_UPSTREAM_H

#include <stddef.h>
#include <openssl/ssl.h>

/* A client SSL_CTX: TLS 1.2+, default verify paths (the system store) plus
 * `extra_ca_file` (PEM, may hold several certificates; NULL for none),
 * SSL_VERIFY_NONE so the handshake completes and the caller reads the result
 * (we must still mint a certificate and show an error page), ALPN http/1.1,
 * client session cache on. */
SSL_CTX *tls_upstream_ctx_new(const char *extra_ca_file, char *err, size_t errlen);

/* Prepares `ssl` for `host`: SNI (unless host is an IP literal) and the
 * host name / IP check that verification applies. */
int tls_upstream_prepare(SSL *ssl, const char *host);

/* Makes the handshake of `ssl` (prepared, not yet past the origin's
 * certificate) stop as soon as that certificate has been received:
 * SSL_do_handshake then returns -1 with SSL_get_error ==
 * SSL_ERROR_WANT_RETRY_VERIFY, and the next SSL_do_handshake goes on. At
 * the pause nothing of the origin is proven yet: the certificate's chain,
 * signatures and dates are verified when the handshake goes on, and its
 * CertificateVerify and Finished are checked after that. So at the pause
 * tls_upstream_verify_result checks only the host name, and returns 1 when
 * it matches; its whole verdict is known once the handshake has ended, and
 * nothing may be sent to the origin before. Resumed sessions carry no
 * certificate and do not stop. */
int tls_upstream_pause_at_cert(SSL *ssl);

/* The origin's certificate: after the handshake, or during the pause above;
 * NULL if it sent none. Owned by `ssl`. */
X509 *tls_upstream_peer_cert(SSL *ssl);

/* After the handshake: 0 when the certificate verified for the host; else a
 * negative code and a short reason ("certificate has expired",
 * "self-signed certificate", "unknown issuer", "name mismatch: the
 * certificate is for a.example, b.example") in `reason`. At the pause
 * above: 1 ("name ok, chain not verified yet") or the name mismatch. */
int tls_upstream_verify_result(SSL *ssl, char *reason, size_t reasonlen);

/* A server SSL_CTX for the client side of decoded connections: TLS 1.2+,
 * ALPN selection that accepts only http/1.1 (and lets a client without ALPN
 * through), session resumption through a bounded in-memory session cache
 * (TLS 1.3 tickets and TLS 1.2 session ids name a cached session).
 * Certificates are set per SSL with SSL_use_cert_and_key (leaf from
 * tls_mint_leaf, key from tls_minter_leaf_key) and sent alone: the CA
 * certificate is the client's trust anchor, not part of the chain. Free
 * its SSLs with tls_server_ssl_free. */
SSL_CTX *tls_server_ctx_new(char *err, size_t errlen);

/* SSL_free for an SSL of that context. OpenSSL drops a session from the
 * cache when its connection ends without our close_notify (a TLS 1.0 rule;
 * TLS 1.1 and later allow resuming it), which would make a client's ticket
 * useless after a reset or a timeout: the session is kept instead. */
void tls_server_ssl_free(SSL *ssl);

#endif
