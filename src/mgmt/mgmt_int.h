/* mgmt internals: the pinned HTTPS client and the on-disk spool, shared by
 * the files of src/mgmt only. */
#ifndef SHOJI_MGMT_INT_H
#define SHOJI_MGMT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mgmt/mgmt.h"
#include "util/buf.h"

/* ---- https.c: one request per TLS connection, pinned by fingerprint ------- */

struct mgmt_url {
    char host[256];          /* without brackets */
    char port[8];
    char authority[300];     /* for the Host header */
    char prefix[256];        /* path prefix without the trailing slash */
};
int mgmt_url_parse(const char *url, struct mgmt_url *u, char *err, size_t errlen);

struct mgmt_http_req {
    const char *method;
    const char *path;            /* "/api/v1/..." (after the URL's prefix) */
    const char *credential;      /* Bearer value, or NULL */
    const char *if_none_match;
    const char *content_type;
    const char *content_encoding;
    const void *body;
    size_t body_len;
};
struct mgmt_http_resp {
    int status;
    char etag[160];
    struct buf body;             /* decoded (de-chunked) body, NUL-terminated */
};
#define MGMT_BODY_MAX (4u * 1024 * 1024)

/* Normalizes a fingerprint (colon hex or plain hex, any case) to upper-case
 * colon hex; false if it is not 32 bytes of hex. */
bool mgmt_fp_normalize(const char *in, char out[100]);
/* Sends one request and reads the answer. `pin` NULL or "" accepts any
 * certificate (trust on first use); the leaf's fingerprint is stored in
 * `seen_fp` (may be NULL). Returns 0 when a response was read (any status;
 * the caller frees resp->body), -EPERM on a fingerprint mismatch, another
 * negative code on network/TLS/protocol errors. */
int mgmt_https(const struct mgmt_url *u, const char *pin, const struct mgmt_http_req *rq,
               struct mgmt_http_resp *resp, char *seen_fp, unsigned timeout_ms, char *err,
               size_t errlen);
void mgmt_http_resp_free(struct mgmt_http_resp *r);
/* Parses a whole answer (head, then a Content-Length, chunked or
 * until-close body) from buf[0..len); `eof`: the connection ended there.
 * 1 complete (resp->status, etag and body set; body NUL-terminated), 0 need
 * more bytes, <0 malformed or too large. resp->body must be initialised. */
int mgmt_http_parse_answer(const char *buf, size_t len, bool eof, const char *method,
                           struct mgmt_http_resp *resp);
/* The "error" member of a JSON error body, or "" */
void mgmt_http_error_text(const struct mgmt_http_resp *r, char *out, size_t cap);

/* ---- spool.c: batches on disk ------------------------------------------------ */

enum mgmt_kind { MGMT_LOGS = 0, MGMT_CONFLICTS = 1 };
#define MGMT_BATCH_LINES 5000

struct mgmt_spool {
    char dir[4096];              /* STATE/spool */
    uint64_t max_bytes;
    uint64_t seq;
    uint64_t dropped_lines;      /* persisted in STATE/spool/dropped */
};
struct mgmt_batch {
    char path[4700];
    char id[160];                /* the file name without ".gz": the batch id */
    enum mgmt_kind kind;
    uint64_t lines;
    uint64_t bytes;
};
int mgmt_spool_open(struct mgmt_spool *s, const char *state_dir, uint64_t max_bytes, char *err,
                    size_t errlen);
/* Writes `lines` (NDJSON, n lines) as one gzip batch file, then enforces the
 * bound by dropping the oldest batches. */
int mgmt_spool_write(struct mgmt_spool *s, enum mgmt_kind kind, const char *data, size_t len,
                     uint64_t nlines, char *err, size_t errlen);
/* The oldest batch of any kind; -ENOENT when the spool is empty. */
int mgmt_spool_oldest(struct mgmt_spool *s, struct mgmt_batch *b);
/* Totals over both kinds. */
void mgmt_spool_usage(struct mgmt_spool *s, uint64_t *batches, uint64_t *bytes);
/* Removes a batch; `dropped` adds its lines to the dropped counter. */
void mgmt_spool_remove(struct mgmt_spool *s, const struct mgmt_batch *b, bool dropped);
/* gzip (RFC 1952) of data into out. */
int mgmt_gzip(const void *data, size_t len, struct buf *out, char *err, size_t errlen);

#endif
