/* cert: the server's TLS certificate — loads the given PEM files, or creates
 * a self-signed ECDSA P-256 certificate in the data dir on first start, and
 * computes the SHA-256 fingerprint agents pin at enrolment.
 * Must never: write the private key readable by others (mode 0600), or
 * overwrite an existing certificate. */
#ifndef SHOJI_SERVER_CERT_H
#define SHOJI_SERVER_CERT_H

#include <stddef.h>

#define CERT_FP_LEN 96   /* "AB:CD:..." 32 bytes -> 95 chars + NUL */

struct cert_pem {
    char *cert;          /* heap, NUL-terminated PEM */
    char *key;
    char fingerprint[CERT_FP_LEN];   /* SHA-256 of the DER certificate, colon hex */
    int created;         /* 1 if created just now */
};

/* With cert_path and key_path (both or neither): loads them. Otherwise uses
 * DATA_DIR/server.crt + server.key, creating them if absent. */
int cert_setup(const char *cert_path, const char *key_path, const char *data_dir,
               struct cert_pem *out, char *err, size_t errlen);
void cert_free(struct cert_pem *c);
/* SHA-256 fingerprint of the first certificate in a PEM text. */
int cert_fingerprint(const char *pem, char fp[CERT_FP_LEN], char *err, size_t errlen);

#endif
