/* mgmt/tasks: the status heartbeat (POST /api/v1/agent/status) and remote
 * tasks (GET /api/v1/agent/tasks, POST .../result): refresh_policy polls the
 * policy at once; collect_diagnostics posts the version, the applied policy
 * ETag, spool sizes, dropped lines, recent errors and the /metrics text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "mgmt/sync_int.h"
#include "util/log.h"
#include "util/util.h"

static json_t *stats_json(struct mgmt *m)
{
    struct mgmt_stats s;
    mgmt_get_stats(m, &s);
    return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "version", SHOJI_VERSION, "policy_etag", s.policy_etag,
                     "spool_batches", (json_int_t)s.spooled_batches, "spool_bytes", (json_int_t)s.spooled_bytes,
                     "queued_lines", (json_int_t)s.queued_lines, "uploaded_lines", (json_int_t)s.uploaded_lines,
                     "dropped_lines", (json_int_t)s.dropped_lines);
}

/* POSTs a JSON body; returns the HTTP status, or <0 on a network error. */
static int post_json(struct mgmt *m, const char *path, json_t *body, const char *what)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text)
        return -ENOMEM;
    char err[UTIL_ERRLEN];
    struct mgmt_http_req rq = { .method = "POST", .path = path, .credential = m->e.credential,
                                .content_type = "application/json", .body = text, .body_len = strlen(text) };
    struct mgmt_http_resp r;
    int rc = mgmt_call(m, &rq, &r, err, sizeof err);
    free(text);
    if (rc < 0) {
        mgmt_note_error(m, what, err);
        return rc;
    }
    rc = r.status;
    if (rc != 200 && rc != 201) {
        mgmt_http_error_text(&r, err, sizeof err);
        mgmt_note_error(m, what, err);
    }
    mgmt_http_resp_free(&r);
    return rc;
}

void mgmt_post_status(struct mgmt *m)
{
    json_t *o = stats_json(m);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    if (o)
        json_object_set_new(o, "hostname", json_string(host));
    /* An empty ETag means no managed policy yet: do not send one. */
    if (o && !json_string_length(json_object_get(o, "policy_etag")))
        json_object_del(o, "policy_etag");
    post_json(m, "/api/v1/agent/status", o, "status");
    json_decref(o);
}

static json_t *diagnostics(struct mgmt *m)
{
    json_t *o = stats_json(m);
    if (!o)
        return NULL;
    json_object_set_new(o, "agent_id", json_string(m->e.agent_id));
    json_object_set_new(o, "server", json_string(m->e.server));
    json_t *errs = json_array();
    pthread_mutex_lock(&m->lock);
    unsigned n = UTIL_MIN(m->nerrors, (unsigned)MGMT_ERRORS);
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(errs, json_string(m->errors[(m->nerrors - n + i) % MGMT_ERRORS]));
    pthread_mutex_unlock(&m->lock);
    json_object_set_new(o, "recent_errors", errs);
    if (m->cfg.metrics) {
        struct buf b;
        buf_init(&b, 256 * 1024);
        m->cfg.metrics(m->cfg.ctx, &b);
        json_object_set_new(o, "metrics", json_stringn(b.p ? b.p : "", b.len));
        buf_free(&b);
    }
    return o;
}

static bool task_done(const struct mgmt *m, const char *id)
{
    for (unsigned i = 0; i < UTIL_MIN(m->ndone, (unsigned)MGMT_DONE_TASKS); i++)
        if (!strcmp(m->done[i], id))
            return true;
    return false;
}

static void run_task(struct mgmt *m, const char *id, const char *kind)
{
    json_t *result;
    const char *status = "done";
    if (!strcmp(kind, "refresh_policy")) {
        int rc = mgmt_poll_policy(m);
        result = json_pack("{s:b,s:s}", "changed", rc == 1, "policy_etag", m->etag);
        if (rc < 0)
            status = "failed";
    } else if (!strcmp(kind, "collect_diagnostics")) {
        result = diagnostics(m);
    } else {
        status = "failed";
        result = json_pack("{s:s}", "error", "this agent does not know this task kind");
    }
    json_t *body = json_pack("{s:s,s:o*}", "status", status, "result", result);
    char path[200];
    snprintf(path, sizeof path, "/api/v1/agent/tasks/%s/result", id);
    int st = post_json(m, path, body, "task result");
    json_decref(body);
    if (st == 200 || st == 201 || st == 404) {
        util_strlcpy(m->done[m->ndone % MGMT_DONE_TASKS], id, sizeof m->done[0]);
        m->ndone++;
        log_info("management server: task %s (%s) %s", id, kind, status);
    }
}

void mgmt_run_tasks(struct mgmt *m)
{
    char err[UTIL_ERRLEN];
    struct mgmt_http_req rq = { .method = "GET", .path = "/api/v1/agent/tasks", .credential = m->e.credential };
    struct mgmt_http_resp r;
    if (mgmt_call(m, &rq, &r, err, sizeof err) < 0) {
        mgmt_note_error(m, "tasks", err);
        return;
    }
    json_t *j = r.status == 200 ? json_loadb(r.body.p, r.body.len, 0, NULL) : NULL;
    mgmt_http_resp_free(&r);
    json_t *tasks = json_object_get(j, "tasks");
    for (size_t i = 0; i < json_array_size(tasks) && i < 100 && !m->stop; i++) {
        json_t *t = json_array_get(tasks, i);
        const char *id = json_string_value(json_object_get(t, "id"));
        const char *kind = json_string_value(json_object_get(t, "kind"));
        if (!id || !kind || strlen(id) > 64 || strspn(id, "0123456789abcdef") != strlen(id) || task_done(m, id))
            continue;
        run_task(m, id, kind);
    }
    json_decref(j);
}
