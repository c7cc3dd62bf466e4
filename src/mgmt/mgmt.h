/* mgmt: the agent's side of the management server protocol (docs/API.md,
 * docs/SYNC.md) — enrolment, policy polling with ETag, access-log and
 * conflict upload through a bounded on-disk spool, remote tasks, status
 * heartbeats and unenrolment. Everything network-facing runs on one mgmt
 * thread with blocking sockets and timeouts; it talks only HTTPS, and only to
 * a server whose certificate's SHA-256 fingerprint was pinned at enrolment.
 * Must never: block a proxy worker (mgmt_log_line only appends to a bounded
 * in-memory queue), talk to a server whose certificate does not match the
 * pin, write a policy the agent's own loader refuses, or let the spool grow
 * past its bound (the oldest batch is dropped and counted instead). */
#ifndef SHOJI_MGMT_H
#define SHOJI_MGMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct access_record;

#define MGMT_STATE_FILE "mgmt.json"                 /* in the state dir, mode 0600 */
#define MGMT_POLICY_FILE "policy.managed.json"      /* the server's policy, as applied */
#define MGMT_SPOOL_DIR "spool"
#define MGMT_SPOOL_MAX_DEFAULT (64u * 1024 * 1024)
#define MGMT_INTERVAL_DEFAULT 60
#define MGMT_JITTER_PCT_DEFAULT 10

/* What `shoji enroll` stores (STATE/mgmt.json). */
struct mgmt_enrolment {
    char server[512];        /* https://host:port */
    char fingerprint[100];   /* AB:CD:... (SHA-256 of the server certificate, DER) */
    char agent_id[72];
    char credential[256];    /* agent.<id>.<secret> */
    char group[72];
    char machine_id[72];     /* SHA-256 hex of /etc/machine-id */
};

/* -ENOENT when the agent is not enrolled (no mgmt.json). */
int mgmt_state_load(const char *state_dir, struct mgmt_enrolment *e, char *err, size_t errlen);
int mgmt_state_save(const char *state_dir, const struct mgmt_enrolment *e, char *err, size_t errlen);
bool mgmt_enrolled(const char *state_dir);
/* STATE/policy.managed.json */
void mgmt_policy_path(const char *state_dir, char *out, size_t cap);
/* SHA-256 hex (64 chars + NUL) of the trimmed contents of `path`
 * (default /etc/machine-id): the raw id never leaves the machine. */
int mgmt_machine_id(const char *path, char out[65], char *err, size_t errlen);

struct mgmt_enroll_opts {
    const char *server;          /* https://host[:port] */
    const char *token;           /* enrol.<id>.<secret> */
    const char *fingerprint;     /* NULL: trust on first use */
    const char *state_dir;
    const char *machine_id_file; /* NULL: /etc/machine-id */
    unsigned timeout_ms;         /* per connection step */
};
struct mgmt_enroll_result {
    char agent_id[72];
    char group[72];
    char fingerprint[100];       /* the pinned fingerprint */
    bool tofu;                   /* no --fingerprint was given */
    bool reenrolled;             /* the server already knew this machine */
};
int mgmt_enroll(const struct mgmt_enroll_opts *o, struct mgmt_enroll_result *res, char *err,
                size_t errlen);
/* Deletes the agent's account on the server, retrying with backoff (at most
 * `timeout_ms` in all) until the server confirms (200, or 401: already gone);
 * then removes mgmt.json, the managed policy and the spool. */
int mgmt_unenroll(const char *state_dir, unsigned timeout_ms, char *err, size_t errlen);

/* The running agent's sync thread. */
struct mgmt_config {
    const char *state_dir;
    unsigned interval_s;         /* policy poll / status / tasks; 0: default 60 */
    unsigned jitter_pct;         /* +- this % of the interval; default 10 */
    uint64_t spool_max;          /* bytes on disk; 0: 64 MiB */
    /* Called on the mgmt thread after a new STATE/policy.managed.json was
     * written: the proxy swaps its policy (open connections keep theirs). */
    void (*reload)(void *ctx);
    /* Appends the agent's /metrics text (collect_diagnostics task). */
    void (*metrics)(void *ctx, struct buf *out);
    void *ctx;
};
struct mgmt;

int mgmt_start(const struct mgmt_config *cfg, struct mgmt **out, char *err, size_t errlen);
/* Stops the thread; lines still queued in memory are written to the spool
 * (uploaded at the next start). Call after the workers stopped. */
void mgmt_stop(struct mgmt *m);
/* The access-log sink: thread-safe, called by proxy workers for every
 * access-log record with its JSON line (no newline). Copies it into a
 * bounded in-memory queue; past the bound the line is counted as dropped. */
void mgmt_log_line(void *m, const struct access_record *r, const char *json, size_t len);

struct mgmt_stats {
    uint64_t queued_lines;       /* in memory, not yet spooled */
    uint64_t spooled_batches;
    uint64_t spooled_bytes;
    uint64_t uploaded_lines;
    uint64_t dropped_lines;      /* memory queue full or spool bound exceeded */
    char policy_etag[160];
};
void mgmt_get_stats(struct mgmt *m, struct mgmt_stats *s);

#endif
