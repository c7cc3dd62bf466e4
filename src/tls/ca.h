/* tls/ca: the agent's local certificate authority — creating it, loading it,
 * describing it, and installing it into the system trust store and the NSS
 * databases browsers use.
 * Must never: overwrite an existing CA without being told to, leave the key
 * readable by anyone but its owner, or print the private key. */
#ifndef SHOJI_TLS_CA_H
#define SHOJI_TLS_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

struct tls_ca {
    X509 *cert;
    EVP_PKEY *key;
    char fingerprint[96];   /* SHA-256, "AB:CD:..." upper-case hex */
};

struct tls_ca_init_opts {
    bool rsa;               /* RSA-3072 instead of ECDSA P-256 */
    bool force;             /* replace an existing CA */
    int days;               /* validity, default 3650 */
};

/* Creates DIR/ca.crt (0644) and DIR/ca.key (0600), creating DIR (0700) if
 * needed. CA:TRUE critical, keyUsage keyCertSign+cRLSign critical, subject
 * "CN=shoji local CA (<hostname>), O=shoji". -EEXIST without opts->force. */
int tls_ca_init(const char *state_dir, const struct tls_ca_init_opts *opts,
                char *err, size_t errlen);
/* Loads DIR/ca.crt and DIR/ca.key and checks they belong together and that
 * the certificate is a CA. Clear errors for missing, unreadable, corrupt or
 * mismatched files. */
int tls_ca_load(const char *state_dir, struct tls_ca *ca, char *err, size_t errlen);
void tls_ca_free(struct tls_ca *ca);
/* "SHA256 fingerprint" of any certificate, colon-separated upper-case hex. */
void tls_cert_fingerprint(X509 *cert, char *out, size_t outlen);

/* Installs the CA certificate into the system trust store
 * (/usr/local/share/ca-certificates/shoji-<fp8>.crt + update-ca-certificates)
 * and every NSS database found (root's and users' ~/.pki/nssdb, Firefox
 * profiles) with certutil. Prints each place touched to `report` (one line
 * each). Uninstall undoes exactly that. */
int tls_ca_install(const char *state_dir, FILE *report, char *err, size_t errlen);
int tls_ca_uninstall(const char *state_dir, FILE *report, char *err, size_t errlen);

/* Added by the tls module for its own files and the CLI: */
/* First 8 hex digits of ca->fingerprint, lower-case (names the installed
 * trust-store file, the NSS nickname and the leaf cache directory). */
void tls_ca_fp8(const struct tls_ca *ca, char out[9]);
/* Sets a random positive 128-bit serial number on `x`. 0 or -errno. */
int tls_random_serial(X509 *x);
/* Writes `key` (when not NULL) or else `cert` as PEM to `path` atomically
 * with file mode `mode` (the file never exists with a looser mode). */
int tls_write_pem(const char *path, EVP_PKEY *key, X509 *cert, int mode,
                  char *err, size_t errlen);

#endif
