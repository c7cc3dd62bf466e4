/* api_agents_list: the admin's view of agents (list, detail, delete,
 * restore), automatic expiry of silent agents, and the agent's own account
 * endpoints (self, status report, unenrol). */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiv.h"
#include "util/log.h"
#include "util/util.h"

#define AGENT_COLS "id, machine_id, hostname, version, os, grp, enrolled_at, last_seen," \
                   " policy_etag, deleted_at, deleted_reason"

static void i64(char *buf, size_t cap, int64_t v) { snprintf(buf, cap, "%lld", (long long)v); }

const char *agent_state(const struct srv *s, int64_t last_seen, int64_t now)
{
    int64_t silent = now - last_seen;
    if (silent <= s->cfg.online_secs)
        return "online";
    if (silent > s->cfg.stale_secs)
        return "stale";
    return "offline";
}

static json_t *agent_json(struct req *r, const struct db_res *res, size_t i)
{
    const char *keys[] = { "id", "machine_id", "hostname", "version", "os", "group" };
    json_t *a = json_object();
    for (size_t k = 0; k < UTIL_ARRAY_LEN(keys); k++) {
        const char *v = db_val(res, i, k);
        json_object_set_new(a, keys[k], v ? json_string(v) : json_null());
    }
    int64_t seen = db_int(res, i, 7, 0);
    json_object_set_new(a, "enrolled_at", json_integer(db_int(res, i, 6, 0)));
    json_object_set_new(a, "last_seen", json_integer(seen));
    json_object_set_new(a, "policy_etag", db_val(res, i, 8) ? json_string(db_val(res, i, 8)) : json_null());
    bool deleted = db_val(res, i, 9) != NULL;
    json_object_set_new(a, "state", json_string(deleted ? "deleted" : agent_state(r->srv, seen, r->now)));
    json_object_set_new(a, "deleted_at", deleted ? json_integer(db_int(res, i, 9, 0)) : json_null());
    json_object_set_new(a, "deleted_reason", db_val(res, i, 10) ? json_string(db_val(res, i, 10)) : json_null());
    return a;
}

int agents_sweep(struct srv *s, struct db_conn *c, int64_t now, char *err, size_t errlen)
{
    if (s->cfg.expire_secs <= 0)
        return 0;
    char cut[24], n[24];
    i64(cut, sizeof cut, now - s->cfg.expire_secs);
    i64(n, sizeof n, now);
    struct db_res *res = NULL;
    int rc = db_q(c, &res, err, errlen,
                  "UPDATE agents SET deleted_at = $2, deleted_reason = 'expired'"
                  " WHERE deleted_at IS NULL AND last_seen < $1", 2, cut, n);
    if (rc == 0 && db_affected(res) > 0)
        log_info("expired %ld agent(s) silent for more than %lld s", db_affected(res),
                 (long long)s->cfg.expire_secs);
    db_res_free(res);
    return rc;
}

void h_agents_list(struct req *r)
{
    const char *state = req_query(r, "state"), *group = req_query(r, "group");
    const char *del = req_query(r, "deleted");
    char sql[1024], err[UTIL_ERRLEN], t1[24], t2[24];
    const char *params[4];
    int np = 0;
    agents_sweep(r->srv, r->db, r->now, err, sizeof err);
    snprintf(sql, sizeof sql, "SELECT " AGENT_COLS " FROM agents WHERE %s",
             del && strcmp(del, "only") == 0 ? "deleted_at IS NOT NULL"
             : del && strcmp(del, "include") == 0 ? "1 = 1" : "deleted_at IS NULL");
    if (group) {
        if (!apiv_is_name(group, 64)) {
            req_error(r, 400, "group", "bad group name");
            return;
        }
        params[np++] = group;
        snprintf(sql + strlen(sql), sizeof sql - strlen(sql), " AND grp = $%d", np);
    }
    i64(t1, sizeof t1, r->now - r->srv->cfg.online_secs);
    i64(t2, sizeof t2, r->now - r->srv->cfg.stale_secs);
    if (state) {
        size_t l = strlen(sql);
        if (strcmp(state, "online") == 0) {
            params[np++] = t1;
            snprintf(sql + l, sizeof sql - l, " AND last_seen >= $%d", np);
        } else if (strcmp(state, "stale") == 0) {
            params[np++] = t2;
            snprintf(sql + l, sizeof sql - l, " AND last_seen < $%d", np);
        } else if (strcmp(state, "offline") == 0) {
            params[np++] = t2;
            params[np++] = t1;
            snprintf(sql + l, sizeof sql - l, " AND last_seen >= $%d AND last_seen < $%d",
                     np - 1, np);
        } else {
            req_error(r, 400, "state", "state must be online, offline or stale");
            return;
        }
    }
    strncat(sql, " ORDER BY hostname, id LIMIT 10000", sizeof sql - strlen(sql) - 1);
    struct db_res *res = NULL;
    int rc = db_exec(r->db, sql, params, np, &res, err, sizeof err);
    if (rc < 0) {
        req_db_error(r, rc, "listing agents", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++)
        json_array_append_new(arr, agent_json(r, res, i));
    db_res_free(res);
    req_json(r, 200, json_pack("{s:o,s:{s:I,s:I}}", "agents", arr, "thresholds", "online_secs",
                               (json_int_t)r->srv->cfg.online_secs, "stale_secs",
                               (json_int_t)r->srv->cfg.stale_secs));
}

/* Loads one agent by id into a JSON object; answers 404 itself. */
static json_t *load_agent(struct req *r, const char *id, bool with_deleted)
{
    char err[UTIL_ERRLEN];
    if (!apiv_is_id(id)) {
        req_error(r, 404, "id", "no such agent");
        return NULL;
    }
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  with_deleted ? "SELECT " AGENT_COLS " FROM agents WHERE id = $1"
                               : "SELECT " AGENT_COLS " FROM agents WHERE id = $1 AND deleted_at IS NULL",
                  1, id);
    if (rc < 0) {
        req_db_error(r, rc, "loading the agent", err);
        return NULL;
    }
    json_t *a = db_nrows(res) == 1 ? agent_json(r, res, 0) : NULL;
    db_res_free(res);
    if (!a)
        req_error(r, 404, "id", "no such agent");
    return a;
}

void h_agent_get(struct req *r)
{
    json_t *a = load_agent(r, r->cap[0], true);
    if (!a)
        return;
    char err[UTIL_ERRLEN];
    struct db_res *res = NULL;
    json_t *recent = json_array();
    if (db_q(r->db, &res, err, sizeof err,
             "SELECT ts, app, host, reason FROM conflicts WHERE agent_id = $1"
             " ORDER BY ts DESC, id DESC LIMIT 20", 1, r->cap[0]) == 0) {
        for (size_t i = 0; i < db_nrows(res); i++)
            json_array_append_new(recent, json_pack("{s:I,s:s?,s:s?,s:s?}", "time",
                                  (json_int_t)db_int(res, i, 0, 0), "app", db_val(res, i, 1),
                                  "host", db_val(res, i, 2), "reason", db_val(res, i, 3)));
    }
    db_res_free(res);
    json_object_set_new(a, "recent_conflicts", recent);
    req_json(r, 200, a);
}

static void set_deleted(struct req *r, const char *id, const char *reason)
{
    char err[UTIL_ERRLEN], now[24];
    i64(now, sizeof now, r->now);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "UPDATE agents SET deleted_at = $2, deleted_reason = $3"
                  " WHERE id = $1 AND deleted_at IS NULL", 3, id, now, reason);
    if (rc < 0)
        req_db_error(r, rc, "deleting the agent", err);
    else if (db_affected(res) == 0)
        req_error(r, 404, "id", "no such agent (or already deleted)");
    else
        req_json(r, 200, json_pack("{s:s,s:b,s:s}", "id", id, "deleted", 1, "reason", reason));
    db_res_free(res);
}

void h_agent_delete(struct req *r)
{
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such agent");
        return;
    }
    set_deleted(r, r->cap[0], "deleted by admin");
}

void h_agent_restore(struct req *r)
{
    char err[UTIL_ERRLEN], now[24];
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such agent");
        return;
    }
    i64(now, sizeof now, r->now);
    struct db_res *res = NULL;
    /* A restored agent counts as just seen, so expiry does not take it again at once. */
    int rc = db_q(r->db, &res, err, sizeof err,
                  "UPDATE agents SET deleted_at = NULL, deleted_reason = NULL, last_seen = $2"
                  " WHERE id = $1 AND deleted_at IS NOT NULL", 2, r->cap[0], now);
    long n = db_affected(res);
    db_res_free(res);
    if (rc < 0) {
        req_db_error(r, rc, "restoring the agent", err);
        return;
    }
    if (n == 0) {
        req_error(r, 404, "id", "no deleted agent with this id");
        return;
    }
    json_t *a = load_agent(r, r->cap[0], false);
    if (a)
        req_json(r, 200, a);
}

void h_agent_self(struct req *r)
{
    json_t *a = load_agent(r, r->agent_id, false);
    if (a) {
        json_object_del(a, "deleted_at");
        json_object_del(a, "deleted_reason");
        req_json(r, 200, a);
    }
}

void h_agent_status(struct req *r)
{
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    const char *host, *ver, *os, *etag;
    char err[UTIL_ERRLEN];
    if (apiv_str(o, "hostname", false, 255, "text", &host, &e) < 0 ||
        apiv_str(o, "version", false, 64, "text", &ver, &e) < 0 ||
        apiv_str(o, "os", false, 128, "text", &os, &e) < 0 ||
        apiv_str(o, "policy_etag", false, 128, "text", &etag, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
    } else {
        int rc = db_q(r->db, NULL, err, sizeof err,
                      "UPDATE agents SET hostname = COALESCE($2, hostname),"
                      " version = COALESCE($3, version), os = COALESCE($4, os),"
                      " policy_etag = COALESCE($5, policy_etag) WHERE id = $1", 5, r->agent_id,
                      host, ver, os, etag);
        if (rc < 0)
            req_db_error(r, rc, "recording the agent status", err);
        else
            req_json(r, 200, json_pack("{s:b,s:I}", "ok", 1, "time", (json_int_t)r->now));
    }
    json_decref(o);
}

void h_agent_unenrol(struct req *r)
{
    set_deleted(r, r->agent_id, "unenrolled");
    if (r->status == 200)
        log_info("agent %s unenrolled itself", r->agent_id);
}
