/* api_groups: agent groups and their policy, the agent's policy fetch
 * (ETag / If-None-Match -> 304), and remote tasks (queued per agent,
 * fetched by that agent, results posted back by that agent only). */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiv.h"
#include "util/log.h"
#include "util/util.h"

static void i64(char *buf, size_t cap, int64_t v) { snprintf(buf, cap, "%lld", (long long)v); }

void h_groups_list(struct req *r)
{
    char err[UTIL_ERRLEN];
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT n.name, g.policy_id, p.name,"
                  " (SELECT COUNT(*) FROM agents a WHERE a.grp = n.name AND a.deleted_at IS NULL)"
                  " FROM (SELECT name FROM agent_groups UNION SELECT grp FROM agents"
                  "       UNION SELECT grp FROM enrol_tokens) n"
                  " LEFT JOIN agent_groups g ON g.name = n.name"
                  " LEFT JOIN policies p ON p.id = g.policy_id ORDER BY n.name", 0);
    if (rc < 0) {
        req_db_error(r, rc, "listing groups", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++)
        json_array_append_new(arr, json_pack("{s:s,s:s?,s:s?,s:I}", "name", db_val(res, i, 0),
                              "policy_id", db_val(res, i, 1), "policy_name", db_val(res, i, 2),
                              "agents", (json_int_t)db_int(res, i, 3, 0)));
    db_res_free(res);
    req_json(r, 200, json_pack("{s:o}", "groups", arr));
}

void h_group_put(struct req *r)
{
    if (!apiv_is_name(r->cap[0], 64)) {
        req_error(r, 400, "name", "group names are 1-64 of A-Z a-z 0-9 . _ -");
        return;
    }
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    const char *pid;
    char err[UTIL_ERRLEN], now[24];
    struct db_res *res = NULL;
    if (apiv_str(o, "policy_id", false, 32, "id", &pid, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
    } else if (pid && (db_q(r->db, &res, err, sizeof err, "SELECT id FROM policies WHERE id = $1",
                            1, pid) < 0 || db_nrows(res) != 1)) {
        req_error(r, 400, "policy_id", "no such policy");
    } else {
        i64(now, sizeof now, r->now);
        int rc = db_q(r->db, NULL, err, sizeof err,
                      "INSERT INTO agent_groups (name, policy_id, updated_at) VALUES ($1, $2, $3)"
                      " ON CONFLICT (name) DO UPDATE SET policy_id = excluded.policy_id,"
                      " updated_at = excluded.updated_at", 3, r->cap[0], pid, now);
        if (rc < 0)
            req_db_error(r, rc, "assigning the policy", err);
        else
            req_json(r, 200, json_pack("{s:s,s:s?}", "name", r->cap[0], "policy_id", pid));
    }
    db_res_free(res);
    json_decref(o);
}

/* The agent's policy: its group's, else the "default" group's. */
void h_agent_policy(struct req *r)
{
    char err[UTIL_ERRLEN];
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT v.body, v.etag, p.id, p.name, v.version FROM agents a"
                  " JOIN agent_groups g ON g.name = a.grp OR g.name = 'default'"
                  " JOIN policies p ON p.id = g.policy_id"
                  " JOIN policy_versions v ON v.policy_id = p.id AND v.version = p.current_version"
                  " WHERE a.id = $1 ORDER BY CASE WHEN g.name = a.grp THEN 0 ELSE 1 END LIMIT 1",
                  1, r->agent_id);
    if (rc < 0) {
        req_db_error(r, rc, "loading the agent's policy", err);
        return;
    }
    if (db_nrows(res) != 1) {
        db_res_free(res);
        req_error(r, 404, NULL, "no policy is assigned to this agent's group (nor to group 'default'): keep the local policy");
        return;
    }
    const char *etag = db_val(res, 0, 1);
    char ver[64];
    snprintf(ver, sizeof ver, "%s", db_val(res, 0, 4));
    req_header(r, "ETag", etag);
    req_header(r, "X-Shoji-Policy-Id", db_val(res, 0, 2));
    req_header(r, "X-Shoji-Policy-Version", ver);
    const char *inm = req_hdr(r, "If-None-Match");
    if (inm && (strcmp(inm, etag) == 0 || strcmp(inm, "*") == 0)) {
        req_json(r, 304, NULL);
    } else {
        json_t *doc = json_loads(db_val(res, 0, 0), 0, NULL);
        if (doc)
            req_json(r, 200, doc);
        else
            req_error(r, 500, NULL, "the stored policy is unreadable");
    }
    db_res_free(res);
}

/* ---- remote tasks ---- */

static const char *const task_kinds[] = { "refresh_policy", "collect_diagnostics" };

void h_tasks_create(struct req *r)
{
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    const char *kind;
    char err[UTIL_ERRLEN], id[SRV_ID_HEX + 1], now[24];
    struct db_res *res = NULL;
    bool known = false;
    if (apiv_str(o, "kind", true, 64, "name", &kind, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
        goto out;
    }
    for (size_t i = 0; i < UTIL_ARRAY_LEN(task_kinds); i++)
        known |= strcmp(kind, task_kinds[i]) == 0;
    if (!known) {
        req_error(r, 400, "kind", "unknown task kind: use refresh_policy or collect_diagnostics");
        goto out;
    }
    if (!apiv_is_id(r->cap[0]) ||
        db_q(r->db, &res, err, sizeof err,
             "SELECT id FROM agents WHERE id = $1 AND deleted_at IS NULL", 1, r->cap[0]) < 0 ||
        db_nrows(res) != 1) {
        req_error(r, 404, "id", "no such agent");
        goto out;
    }
    auth_random_hex(id, 16);
    i64(now, sizeof now, r->now);
    int rc = db_q(r->db, NULL, err, sizeof err,
                  "INSERT INTO tasks (id, agent_id, kind, status, created_at, created_by)"
                  " VALUES ($1, $2, $3, 'queued', $4, $5)", 5, id, r->cap[0], kind, now,
                  r->admin_user);
    if (rc < 0)
        req_db_error(r, rc, "queueing the task", err);
    else
        req_json(r, 201, json_pack("{s:s,s:s,s:s,s:s}", "id", id, "agent_id", r->cap[0], "kind",
                                   kind, "status", "queued"));
out:
    db_res_free(res);
    json_decref(o);
}

static json_t *task_json(const struct db_res *res, size_t i)
{
    json_t *t = json_pack("{s:s,s:s,s:s,s:I}", "id", db_val(res, i, 0), "kind", db_val(res, i, 1),
                          "status", db_val(res, i, 2), "created_at", (json_int_t)db_int(res, i, 3, 0));
    json_object_set_new(t, "done_at", db_val(res, i, 4) ? json_integer(db_int(res, i, 4, 0)) : json_null());
    json_t *result = db_val(res, i, 5) ? json_loads(db_val(res, i, 5), JSON_DECODE_ANY, NULL) : NULL;
    json_object_set_new(t, "result", result ? result : json_null());
    return t;
}

void h_tasks_list(struct req *r)
{
    char err[UTIL_ERRLEN];
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such agent");
        return;
    }
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT id, kind, status, created_at, done_at, result FROM tasks"
                  " WHERE agent_id = $1 ORDER BY created_at DESC, id LIMIT 200", 1, r->cap[0]);
    if (rc < 0) {
        req_db_error(r, rc, "listing tasks", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++)
        json_array_append_new(arr, task_json(res, i));
    db_res_free(res);
    req_json(r, 200, json_pack("{s:o}", "tasks", arr));
}

/* Pending tasks (queued, or sent without a result yet: re-delivered until
 * the agent answers; the agent dedupes by id). */
void h_agent_tasks(struct req *r)
{
    char err[UTIL_ERRLEN], now[24];
    i64(now, sizeof now, r->now);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "UPDATE tasks SET status = 'sent', sent_at = $2 WHERE agent_id = $1"
                  " AND status IN ('queued', 'sent')"
                  " RETURNING id, kind, status, created_at, done_at, result", 2, r->agent_id, now);
    if (rc < 0) {
        req_db_error(r, rc, "fetching tasks", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:I}", "id", db_val(res, i, 0), "kind",
                              db_val(res, i, 1), "created_at", (json_int_t)db_int(res, i, 3, 0)));
    db_res_free(res);
    req_json(r, 200, json_pack("{s:o}", "tasks", arr));
}

void h_agent_task_result(struct req *r)
{
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such task");
        return;
    }
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    const char *status;
    char err[UTIL_ERRLEN], now[24];
    if (apiv_str(o, "status", true, 16, "name", &status, &e) < 0 ||
        (strcmp(status, "done") != 0 && strcmp(status, "failed") != 0)) {
        req_error(r, 400, "status", "status must be done or failed");
        json_decref(o);
        return;
    }
    json_t *result = json_object_get(o, "result");
    char *text = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    i64(now, sizeof now, r->now);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "UPDATE tasks SET status = $3, done_at = $4, result = $5"
                  " WHERE id = $1 AND agent_id = $2", 5, r->cap[0], r->agent_id, status, now, text);
    if (rc < 0)
        req_db_error(r, rc, "recording the task result", err);
    else if (db_affected(res) == 0)
        req_error(r, 404, "id", "no such task for this agent");
    else
        req_json(r, 200, json_pack("{s:s,s:s}", "id", r->cap[0], "status", status));
    db_res_free(res);
    free(text);
    json_decref(o);
}
