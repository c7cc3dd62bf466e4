/* api_upload: agent batch uploads of access-log lines and conflict events.
 * A batch is JSON lines, gzip-compressed; PUT to .../{batch_id} so a retried
 * upload (same id) is stored once: the batch row and its lines commit in one
 * transaction. Lines that fail validation are counted and reported, never
 * silently dropped; a body with no valid line is refused. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiv.h"
#include "util/log.h"
#include "util/util.h"

#define LINE_MAX_BYTES (64 * 1024)
#define MAX_REPORTED_ERRORS 10

enum kind { K_LOGS, K_CONFLICTS };

static void i64(char *buf, size_t cap, int64_t v) { snprintf(buf, cap, "%lld", (long long)v); }

static int store_log(struct req *r, const char *line, size_t len, struct apiv_error *e, char *err,
                     size_t errlen)
{
    struct apiv_log l;
    if (apiv_log_line(line, len, &l, e) < 0)
        return -EINVAL;
    char ts[24], pid[24], st[24], by[24], dur[40];
    char *raw = strndup(line, len);
    i64(ts, sizeof ts, l.ts);
    i64(pid, sizeof pid, l.pid);
    i64(st, sizeof st, l.status);
    i64(by, sizeof by, l.bytes);
    snprintf(dur, sizeof dur, "%.3f", l.duration_ms);
    const char *p[] = { r->agent_id, ts, l.app, l.pid ? pid : NULL, l.method, l.url, l.host,
                        l.category[0] ? l.category : NULL,
                        l.categories[0] ? l.categories : NULL, l.action, l.rule, st, by, dur, raw };
    int rc = raw ? db_exec(r->db,
                           "INSERT INTO logs (agent_id, ts, app, pid, method, url, host, category,"
                           " categories, action, rule, status, bytes, duration_ms, line) VALUES"
                           " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                           p, 15, NULL, err, errlen)
                 : util_err(err, errlen, -ENOMEM, "out of memory");
    free(raw);
    json_decref(l.root);
    return rc < 0 ? (rc == -EINVAL ? -EIO : rc) : 0;
}

static int store_conflict(struct req *r, const char *line, size_t len, struct apiv_error *e,
                          char *err, size_t errlen)
{
    struct apiv_conflict c;
    if (apiv_conflict_line(line, len, &c, e) < 0)
        return -EINVAL;
    char ts[24];
    char *raw = strndup(line, len);
    i64(ts, sizeof ts, c.ts);
    const char *p[] = { r->agent_id, ts, c.app, c.host, c.reason, c.suggestion, raw };
    int rc = raw ? db_exec(r->db,
                           "INSERT INTO conflicts (agent_id, ts, app, host, reason, suggestion,"
                           " line) VALUES ($1, $2, $3, $4, $5, $6, $7)", p, 7, NULL, err, errlen)
                 : util_err(err, errlen, -ENOMEM, "out of memory");
    free(raw);
    json_decref(c.root);
    return rc < 0 ? (rc == -EINVAL ? -EIO : rc) : 0;
}

struct tally {
    long stored, rejected, lines;
    json_t *errors;
};

/* Stores every line of `text`; a db error aborts (returned), a bad line is
 * tallied. */
static int store_lines(struct req *r, enum kind k, char *text, size_t len, struct tally *t,
                       char *err, size_t errlen)
{
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = p;
        p += n + (nl ? 1 : 0);
        if (n && line[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        t->lines++;
        if (t->lines > SRV_BATCH_MAX_LINES)
            return util_err(err, errlen, -E2BIG, "more than %d lines in one batch", SRV_BATCH_MAX_LINES);
        struct apiv_error e = { "", "line too long (at most 64 KiB)" };
        int rc = n > LINE_MAX_BYTES ? -EINVAL
                 : k == K_LOGS ? store_log(r, line, n, &e, err, errlen)
                               : store_conflict(r, line, n, &e, err, errlen);
        if (rc == -EINVAL) {
            t->rejected++;
            if (json_array_size(t->errors) < MAX_REPORTED_ERRORS)
                json_array_append_new(t->errors, json_pack("{s:I,s:s,s:s}", "line",
                                      (json_int_t)t->lines, "field", e.field, "error", e.msg));
        } else if (rc < 0) {
            return rc;
        } else {
            t->stored++;
        }
    }
    return 0;
}

/* The body as text: gunzipped when Content-Encoding says gzip. */
static int body_text(struct req *r, char **text, size_t *len, bool *owned)
{
    const char *ce = req_hdr(r, "Content-Encoding");
    *owned = false;
    if (ce && (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "deflate") == 0)) {
        struct apiv_error e;
        int rc = apiv_gunzip(r->body, r->body_len, SRV_BATCH_RAW_MAX, text, len, &e);
        if (rc < 0) {
            req_error(r, rc == -EFBIG ? 413 : 400, NULL, "%s (at most %u bytes decompressed)",
                      e.msg, SRV_BATCH_RAW_MAX);
            return rc;
        }
        *owned = true;
        return 0;
    }
    if (ce && strcasecmp(ce, "identity") != 0) {
        req_error(r, 415, NULL, "unsupported Content-Encoding '%s' (use gzip)", ce);
        return -EINVAL;
    }
    *text = (char *)r->body;
    *len = r->body_len;
    return 0;
}

static void upload(struct req *r, enum kind k)
{
    const char *batch = r->cap[0];
    const char *kname = k == K_LOGS ? "logs" : "conflicts";
    if (!apiv_is_name(batch, 128)) {
        req_error(r, 400, "batch_id", "batch ids are 1-128 of A-Z a-z 0-9 . _ -");
        return;
    }
    char *text = NULL, err[UTIL_ERRLEN], now[24], nl[24];
    size_t len = 0;
    bool owned;
    if (!r->body_len) {
        req_error(r, 400, NULL, "empty batch: send gzip-compressed JSON lines");
        return;
    }
    if (body_text(r, &text, &len, &owned) < 0)
        return;
    struct tally t = { 0, 0, 0, json_array() };
    struct db_res *res = NULL;
    i64(now, sizeof now, r->now);
    int rc = db_begin(r->db, err, sizeof err);
    if (rc == 0)
        rc = db_q(r->db, &res, err, sizeof err,
                  "INSERT INTO batches (agent_id, kind, batch_id, nlines, received_at)"
                  " VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING", 4, r->agent_id, kname,
                  batch, now);
    bool dup = rc == 0 && db_affected(res) == 0;
    db_res_free(res);
    if (rc == 0 && !dup)
        rc = store_lines(r, k, text, len, &t, err, sizeof err);
    if (rc == 0 && !dup && t.stored == 0) {
        db_rollback(r->db);
        json_t *j = json_pack("{s:s,s:s,s:O}", "error", "no valid line in this batch",
                              "field", "body", "errors", t.errors);
        req_json(r, 400, j);
        goto out;
    }
    if (rc == 0 && !dup) {
        i64(nl, sizeof nl, t.stored);
        rc = db_q(r->db, NULL, err, sizeof err,
                  "UPDATE batches SET nlines = $4 WHERE agent_id = $1 AND kind = $2 AND batch_id = $3",
                  4, r->agent_id, kname, batch, nl);
    }
    if (rc == 0)
        rc = db_commit(r->db, err, sizeof err);
    else
        db_rollback(r->db);
    if (rc == -E2BIG)
        req_error(r, 413, "body", "%s", err);
    else if (rc < 0)
        req_db_error(r, rc, "storing the batch", err);
    else
        req_json(r, dup ? 200 : 201,
                 json_pack("{s:s,s:b,s:I,s:I,s:O}", "batch_id", batch, "duplicate", dup, "stored",
                           (json_int_t)t.stored, "rejected", (json_int_t)t.rejected, "errors",
                           t.errors));
out:
    json_decref(t.errors);
    if (owned)
        free(text);
}

void h_agent_logs_put(struct req *r) { upload(r, K_LOGS); }
void h_agent_conflicts_put(struct req *r) { upload(r, K_CONFLICTS); }

/* Deletes ended sessions and stale login-failure counters; with a retention,
 * also log lines and conflict events older than it, and the batch ids
 * received before it (an agent never retries a batch that old:
 * its spool is bounded well below the retention). */
int data_retention_sweep(struct srv *s, struct db_conn *c, int64_t now, char *err, size_t errlen)
{
    char cut[24], n_now[24], window[24];
    i64(n_now, sizeof n_now, now);
    i64(window, sizeof window, now - s->cfg.lockout_secs);
    /* housekeeping, always: ended sessions and old login-failure counters */
    int hk = db_q(c, NULL, err, errlen, "DELETE FROM sessions WHERE expires_at <= $1", 1, n_now);
    if (hk == 0)
        hk = db_q(c, NULL, err, errlen,
                  "DELETE FROM login_failures WHERE locked_until <= $1 AND first_at < $2", 2,
                  n_now, window);
    if (hk < 0 || s->cfg.retention_secs <= 0)
        return hk;
    i64(cut, sizeof cut, now - s->cfg.retention_secs);
    struct db_res *res = NULL;
    int rc = db_q(c, &res, err, errlen, "DELETE FROM logs WHERE ts < $1", 1, cut);
    long n = db_affected(res);
    db_res_free(res);
    if (rc == 0)
        rc = db_q(c, NULL, err, errlen, "DELETE FROM conflicts WHERE ts < $1", 1, cut);
    if (rc == 0)
        rc = db_q(c, NULL, err, errlen, "DELETE FROM batches WHERE received_at < $1", 1, cut);
    if (rc == 0 && n > 0)
        log_info("retention: deleted %ld log line(s) older than %lld s", n,
                 (long long)s->cfg.retention_secs);
    return rc;
}
