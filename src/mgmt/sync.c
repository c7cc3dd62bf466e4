/* mgmt/sync: the running agent's mgmt thread. Once a second it moves the
 * access-log lines queued in memory by the workers into spool batches and
 * uploads what is spooled (oldest first, backing off while the server is
 * unreachable); every interval (+- jitter) it polls the policy with
 * If-None-Match, posts a status heartbeat and runs pending remote tasks. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log/access.h"
#include "mgmt/mgmt_int.h"
#include "mgmt/sync_int.h"
#include "policy/policy.h"
#include "util/log.h"
#include "util/util.h"

#define QUEUE_MAX (16u * 1024 * 1024)   /* per kind, in memory */

void mgmt_note_error(struct mgmt *m, const char *what, const char *err)
{
    char line[UTIL_ERRLEN + 96];
    snprintf(line, sizeof line, "%s: %s", what, err);
    pthread_mutex_lock(&m->lock);
    util_strlcpy(m->errors[m->nerrors % MGMT_ERRORS], line, sizeof m->errors[0]);
    m->nerrors++;
    pthread_mutex_unlock(&m->lock);
    if (!m->failing)
        log_warn("management server: %s", line);
    else
        log_debug("management server: %s", line);
    m->failing = true;
}

static void note_ok(struct mgmt *m)
{
    if (m->failing)
        log_info("management server %s: reachable again", m->e.server);
    m->failing = false;
}

int mgmt_call(struct mgmt *m, const struct mgmt_http_req *rq, struct mgmt_http_resp *r, char *err,
              size_t errlen)
{
    int rc = mgmt_https(&m->u, m->e.fingerprint, rq, r, NULL, 10000, err, errlen);
    m->net_failed = rc < 0;
    if (rc == 0 && r->status >= 500)
        log_debug("management server: %s %s: HTTP %d", rq->method, rq->path, r->status);
    return rc;
}

/* ---- the sink (worker threads) -------------------------------------------------- */

static void enqueue(struct mgmt *m, enum mgmt_kind k, const char *line, size_t len)
{
    pthread_mutex_lock(&m->lock);
    if (buf_reserve(&m->q[k], len + 1) == 0) {
        buf_append(&m->q[k], line, len);
        buf_append(&m->q[k], "\n", 1);
        m->qlines[k]++;
    } else {
        m->mem_dropped++;
    }
    pthread_mutex_unlock(&m->lock);
}

void mgmt_log_line(void *ctx, const struct access_record *r, const char *json, size_t len)
{
    struct mgmt *m = ctx;
    if (!m)
        return;
    if (!r->event || strcmp(r->event, "conflict") != 0) {
        enqueue(m, MGMT_LOGS, json, len);
        return;
    }
    /* A conflict event, in the shape of API.md's conflict line. */
    json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s}", "time", (json_int_t)(r->time_ms / 1000),
                          "app", r->app ? r->app : "", "host", r->host ? r->host : "",
                          "reason", r->error ? r->error : "", "suggestion", r->fix ? r->fix : "");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text) {
        enqueue(m, MGMT_CONFLICTS, text, strlen(text));
        free(text);
    } else {
        pthread_mutex_lock(&m->lock);
        m->mem_dropped++;
        pthread_mutex_unlock(&m->lock);
    }
}

/* ---- memory queue -> spool ------------------------------------------------------ */

static void spool_kind(struct mgmt *m, enum mgmt_kind k, struct buf *b)
{
    size_t off = 0;
    while (off < b->len) {
        size_t end = off;
        uint64_t n = 0;
        while (end < b->len && n < MGMT_BATCH_LINES && end - off < 4u * 1024 * 1024) {
            const char *nl = memchr(b->p + end, '\n', b->len - end);
            end = nl ? (size_t)(nl - b->p) + 1 : b->len;
            n++;
        }
        char err[UTIL_ERRLEN];
        if (mgmt_spool_write(&m->spool, k, b->p + off, end - off, n, err, sizeof err) < 0) {
            log_error("spool: %s; %" PRIu64 " lines dropped", err, n);
            pthread_mutex_lock(&m->lock);
            m->mem_dropped += n;
            pthread_mutex_unlock(&m->lock);
        }
        off = end;
    }
}

void mgmt_flush_queue(struct mgmt *m)
{
    for (int k = 0; k < 2; k++) {
        struct buf b;
        pthread_mutex_lock(&m->lock);
        b = m->q[k];
        buf_init(&m->q[k], QUEUE_MAX);
        m->qlines[k] = 0;
        pthread_mutex_unlock(&m->lock);
        if (b.len)
            spool_kind(m, (enum mgmt_kind)k, &b);
        buf_free(&b);
    }
}

/* ---- upload ------------------------------------------------------------------- */

static unsigned backoff_cap(const struct mgmt *m)
{
    return UTIL_MIN(UTIL_MAX(m->cfg.interval_s * 1000u, 5000u), 60000u);
}

static void fail_later(struct mgmt *m)
{
    m->backoff_ms = UTIL_MIN(UTIL_MAX(m->backoff_ms * 2, 500u), backoff_cap(m));
    m->next_upload_ms = util_mono_us() / 1000 + m->backoff_ms;
}

/* 1 uploaded or dropped (go on), 0 nothing left, -1 failed (retry later). */
static int upload_one(struct mgmt *m)
{
    struct mgmt_batch b;
    if (mgmt_spool_oldest(&m->spool, &b) < 0)
        return 0;
    char *data = NULL, err[UTIL_ERRLEN], path[300];
    size_t len = 0;
    if (util_read_file(b.path, 64u * 1024 * 1024, &data, &len, err, sizeof err) < 0) {
        mgmt_spool_remove(&m->spool, &b, true);
        return 1;
    }
    snprintf(path, sizeof path, "/api/v1/agent/%s/%s", b.kind == MGMT_LOGS ? "logs" : "conflicts", b.id);
    struct mgmt_http_req rq = { .method = "PUT", .path = path, .credential = m->e.credential,
                                .content_type = "application/x-ndjson", .content_encoding = "gzip",
                                .body = data, .body_len = len };
    struct mgmt_http_resp r;
    int rc = mgmt_call(m, &rq, &r, err, sizeof err);
    free(data);
    if (rc < 0) {
        mgmt_note_error(m, "upload", err);
        return -1;
    }
    int st = r.status, out = 1;
    char why[300];
    mgmt_http_error_text(&r, why, sizeof why);
    mgmt_http_resp_free(&r);
    if (st == 200 || st == 201) {
        mgmt_spool_remove(&m->spool, &b, false);
        pthread_mutex_lock(&m->lock);
        m->uploaded_lines += b.lines;
        pthread_mutex_unlock(&m->lock);
        note_ok(m);
    } else if (st >= 500 || st == 401 || st == 429) {
        snprintf(err, sizeof err, "batch %s: HTTP %d: %s", b.id, st, why);
        mgmt_note_error(m, "upload", err);
        out = -1;
    } else {
        log_error("management server refused batch %s (HTTP %d: %s): dropped %" PRIu64 " lines", b.id, st,
                  why, b.lines);
        mgmt_spool_remove(&m->spool, &b, true);
    }
    return out;
}

static void upload_all(struct mgmt *m)
{
    for (int i = 0; i < 1000 && !m->stop; i++) {
        int r = upload_one(m);
        if (r == 0) {
            m->backoff_ms = 0;
            return;
        }
        if (r < 0) {
            fail_later(m);
            return;
        }
    }
}

/* ---- policy --------------------------------------------------------------------- */

static int apply_policy(struct mgmt *m, const struct mgmt_http_resp *r, char *err, size_t errlen)
{
    struct policy *p = NULL;
    int rc = policy_load_text(r->body.p, r->body.len, "server policy", m->cfg.state_dir, &p, err, errlen);
    if (rc < 0)
        return rc;
    policy_unref(p);
    char path[4200];
    mgmt_policy_path(m->cfg.state_dir, path, sizeof path);
    if ((rc = util_write_file_atomic(path, r->body.p, r->body.len, 0644, err, errlen)) < 0)
        return rc;
    snprintf(path, sizeof path, "%s/policy.managed.etag", m->cfg.state_dir);
    util_write_file_atomic(path, r->etag, strlen(r->etag), 0644, NULL, 0);
    pthread_mutex_lock(&m->lock);
    util_strlcpy(m->etag, r->etag, sizeof m->etag);
    pthread_mutex_unlock(&m->lock);
    log_info("management server: new policy %s applied", r->etag);
    if (m->cfg.reload)
        m->cfg.reload(m->cfg.ctx);
    return 0;
}

/* 1 a new policy was applied, 0 unchanged, <0 failed. */
int mgmt_poll_policy(struct mgmt *m)
{
    char etag[160], err[UTIL_ERRLEN];
    pthread_mutex_lock(&m->lock);
    util_strlcpy(etag, m->etag, sizeof etag);
    pthread_mutex_unlock(&m->lock);
    struct mgmt_http_req rq = { .method = "GET", .path = "/api/v1/agent/policy", .credential = m->e.credential,
                                .if_none_match = etag };
    struct mgmt_http_resp r;
    int rc = mgmt_call(m, &rq, &r, err, sizeof err);
    if (rc < 0) {
        mgmt_note_error(m, "policy", err);
        return rc;
    }
    if (r.status == 200) {
        rc = apply_policy(m, &r, err, sizeof err);
        if (rc < 0)
            mgmt_note_error(m, "the server's policy was NOT applied", err);
        else
            rc = 1;
    } else if (r.status != 304 && r.status != 404) {
        char why[300];
        mgmt_http_error_text(&r, why, sizeof why);
        snprintf(err, sizeof err, "HTTP %d: %s", r.status, why);
        mgmt_note_error(m, "policy", err);
        rc = -EPROTO;
    } else {
        note_ok(m);
    }
    mgmt_http_resp_free(&r);
    return rc;
}

/* ---- the thread ------------------------------------------------------------------- */

static uint64_t next_interval_ms(const struct mgmt *m)
{
    uint64_t base = (uint64_t)m->cfg.interval_s * 1000;
    unsigned j = m->cfg.jitter_pct, rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        rnd = (unsigned)util_now_ms();
    if (j == 0)
        return base;
    int64_t pct = (int64_t)(rnd % (2 * j + 1)) - (int64_t)j;
    return (uint64_t)((int64_t)base + (int64_t)base * pct / 100);
}

static void wait_tick(struct mgmt *m, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->lock);
    while (!m->stop && !m->wake)
        if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
            break;
    m->wake = false;
    pthread_mutex_unlock(&m->lock);
}

static void *thread_main(void *arg)
{
    struct mgmt *m = arg;
    uint64_t next_poll = 0;
    while (!m->stop) {
        uint64_t now = util_mono_us() / 1000;
        if (now >= next_poll) {
            /* A network failure skips the rest: each call could wait for
             * its timeout, and a stop must not wait for all of them. */
            mgmt_poll_policy(m);
            if (!m->stop && !m->net_failed) {
                mgmt_post_status(m);
                if (!m->stop)
                    mgmt_run_tasks(m);
            }
            next_poll = util_mono_us() / 1000 + next_interval_ms(m);
        }
        mgmt_flush_queue(m);
        if (util_mono_us() / 1000 >= m->next_upload_ms)
            upload_all(m);
        now = util_mono_us() / 1000;
        wait_tick(m, UTIL_MIN(1000, next_poll > now ? next_poll - now : 0));
    }
    mgmt_flush_queue(m);
    return NULL;
}

int mgmt_start(const struct mgmt_config *cfg, struct mgmt **out, char *err, size_t errlen)
{
    struct mgmt *m = calloc(1, sizeof *m);
    if (!m)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    m->cfg = *cfg;
    util_strlcpy(m->state_dir, cfg->state_dir, sizeof m->state_dir);
    m->cfg.state_dir = m->state_dir;
    if (!m->cfg.interval_s)
        m->cfg.interval_s = MGMT_INTERVAL_DEFAULT;
    if (m->cfg.jitter_pct > 50)
        m->cfg.jitter_pct = 50;
    int rc = mgmt_state_load(m->state_dir, &m->e, err, errlen);
    if (rc == 0)
        rc = mgmt_url_parse(m->e.server, &m->u, err, errlen);
    if (rc == 0)
        rc = mgmt_spool_open(&m->spool, m->state_dir, cfg->spool_max, err, errlen);
    if (rc < 0) {
        free(m);
        return rc;
    }
    buf_init(&m->q[0], QUEUE_MAX);
    buf_init(&m->q[1], QUEUE_MAX);
    char path[4200], *etag = NULL, ppath[4200];
    size_t len;
    snprintf(path, sizeof path, "%s/policy.managed.etag", m->state_dir);
    mgmt_policy_path(m->state_dir, ppath, sizeof ppath);
    if (access(ppath, F_OK) == 0 && util_read_file(path, sizeof m->etag - 1, &etag, &len, NULL, 0) == 0) {
        util_strlcpy(m->etag, etag, sizeof m->etag);
        free(etag);
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&m->thread, NULL, thread_main, m) != 0) {
        pthread_cond_destroy(&m->cond);
        pthread_mutex_destroy(&m->lock);
        free(m);
        return util_err(err, errlen, -EAGAIN, "cannot start the management thread");
    }
    log_info("management server %s: agent %s, polling every %u s", m->e.server, m->e.agent_id,
             m->cfg.interval_s);
    *out = m;
    return 0;
}

void mgmt_stop(struct mgmt *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->stop = true;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->thread, NULL);
    mgmt_flush_queue(m);
    buf_free(&m->q[0]);
    buf_free(&m->q[1]);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void mgmt_get_stats(struct mgmt *m, struct mgmt_stats *s)
{
    memset(s, 0, sizeof *s);
    mgmt_spool_usage(&m->spool, &s->spooled_batches, &s->spooled_bytes);
    pthread_mutex_lock(&m->lock);
    s->queued_lines = m->qlines[0] + m->qlines[1];
    s->uploaded_lines = m->uploaded_lines;
    s->dropped_lines = m->mem_dropped + m->spool.dropped_lines;
    util_strlcpy(s->policy_etag, m->etag, sizeof s->policy_etag);
    pthread_mutex_unlock(&m->lock);
}
