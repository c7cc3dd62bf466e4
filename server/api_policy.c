/* api_policy: versioned policy documents (validated with the agent's own
 * policy_load_text()), their assignment to agent groups, and the agent's
 * policy fetch with ETag / If-None-Match. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiv.h"
#include "policy/policy.h"
#include "util/log.h"
#include "util/util.h"

static void i64(char *buf, size_t cap, int64_t v) { snprintf(buf, cap, "%lld", (long long)v); }

/* Validates a document exactly as an agent would load it. `category_db` is
 * the agent's own file (a path on the endpoint, usually absent on the
 * server), so it is left out of the server-side check. */
static int validate_doc(struct req *r, const char *text)
{
    char err[UTIL_ERRLEN];
    json_t *d = json_loads(text, 0, NULL);
    if (!d) {
        req_error(r, 400, "document", "the document is not valid JSON");
        return -EINVAL;
    }
    json_object_del(d, "category_db");
    char *check = json_dumps(d, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(d);
    if (!check) {
        req_error(r, 500, NULL, "out of memory");
        return -ENOMEM;
    }
    struct policy *p = NULL;
    int rc = policy_load_text(check, strlen(check), "document", r->srv->cfg.policy_base_dir, &p,
                              err, sizeof err);
    free(check);
    if (rc < 0) {
        req_error(r, 400, "document", "%s", err);
        return rc;
    }
    policy_unref(p);
    return 0;
}

static void etag_of(const char *body, char out[40])
{
    char h[65];
    auth_hash_secret(body, h);
    snprintf(out, 40, "\"%.32s\"", h);
}

/* Inserts version `ver` of policy `id` and makes it current. */
static int add_version(struct req *r, const char *id, int64_t ver, const char *body,
                       const char *comment, char *err, size_t errlen)
{
    char v[24], now[24], etag[40];
    i64(v, sizeof v, ver);
    i64(now, sizeof now, r->now);
    etag_of(body, etag);
    int rc = db_q(r->db, NULL, err, errlen,
                  "INSERT INTO policy_versions (policy_id, version, body, etag, comment,"
                  " created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)", 7, id, v, body,
                  etag, comment ? comment : "", now, r->admin_user);
    if (rc == 0)
        rc = db_q(r->db, NULL, err, errlen,
                  "UPDATE policies SET current_version = $2, updated_at = $3 WHERE id = $1", 3,
                  id, v, now);
    return rc;
}

static void answer_version(struct req *r, int status, const char *id, int64_t ver,
                           const char *body)
{
    char etag[40];
    etag_of(body, etag);
    req_json(r, status, json_pack("{s:s,s:I,s:s}", "id", id, "version", (json_int_t)ver, "etag", etag));
}

void h_policies_create(struct req *r)
{
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    const char *name, *comment;
    char *doc = NULL, id[SRV_ID_HEX + 1], now[24], err[UTIL_ERRLEN];
    if (apiv_str(o, "name", true, 128, "text", &name, &e) < 0 ||
        apiv_str(o, "comment", false, 1024, "text", &comment, &e) < 0 ||
        apiv_policy_doc(o, &doc, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
    } else if (validate_doc(r, doc) == 0) {
        auth_random_hex(id, 16);
        i64(now, sizeof now, r->now);
        int rc = db_begin(r->db, err, sizeof err);
        if (rc == 0)
            rc = db_q(r->db, NULL, err, sizeof err,
                      "INSERT INTO policies (id, name, current_version, created_at, updated_at)"
                      " VALUES ($1, $2, 1, $3, $3)", 3, id, name, now);
        if (rc == 0)
            rc = add_version(r, id, 1, doc, comment, err, sizeof err);
        if (rc == 0)
            rc = db_commit(r->db, err, sizeof err);
        else
            db_rollback(r->db);
        if (rc == -EEXIST)
            req_error(r, 409, "name", "a policy with this name exists");
        else if (rc < 0)
            req_db_error(r, rc, "creating the policy", err);
        else
            answer_version(r, 201, id, 1, doc);
    }
    free(doc);
    json_decref(o);
}

void h_policies_list(struct req *r)
{
    char err[UTIL_ERRLEN];
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT p.id, p.name, p.current_version, p.updated_at, v.etag FROM policies p"
                  " JOIN policy_versions v ON v.policy_id = p.id AND v.version = p.current_version"
                  " ORDER BY p.name", 0);
    if (rc < 0) {
        req_db_error(r, rc, "listing policies", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++)
        json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:I,s:s}", "id", db_val(res, i, 0),
                              "name", db_val(res, i, 1), "current_version",
                              (json_int_t)db_int(res, i, 2, 0), "updated_at",
                              (json_int_t)db_int(res, i, 3, 0), "etag", db_val(res, i, 4)));
    db_res_free(res);
    req_json(r, 200, json_pack("{s:o}", "policies", arr));
}

/* One version (the current one if ver <= 0) as JSON; answers 404 itself. */
static void show_version(struct req *r, const char *id, int64_t ver)
{
    char err[UTIL_ERRLEN], v[24];
    if (!apiv_is_id(id)) {
        req_error(r, 404, "id", "no such policy");
        return;
    }
    i64(v, sizeof v, ver);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT p.name, p.current_version, v.version, v.body, v.etag, v.comment,"
                  " v.created_at, v.created_by FROM policies p JOIN policy_versions v"
                  " ON v.policy_id = p.id AND v.version ="
                  " CASE WHEN CAST($2 AS INTEGER) > 0 THEN CAST($2 AS INTEGER) ELSE p.current_version END"
                  " WHERE p.id = $1", 2, id, v);
    if (rc < 0) {
        req_db_error(r, rc, "loading the policy", err);
        return;
    }
    if (db_nrows(res) != 1) {
        db_res_free(res);
        req_error(r, 404, "version", "no such policy or version");
        return;
    }
    json_t *doc = json_loads(db_val(res, 0, 3), 0, NULL);
    req_json(r, 200, json_pack("{s:s,s:s,s:I,s:I,s:o,s:s,s:s?,s:I,s:s?}", "id", id, "name",
                               db_val(res, 0, 0), "current_version",
                               (json_int_t)db_int(res, 0, 1, 0), "version",
                               (json_int_t)db_int(res, 0, 2, 0), "document",
                               doc ? doc : json_null(), "etag", db_val(res, 0, 4), "comment",
                               db_val(res, 0, 5), "created_at", (json_int_t)db_int(res, 0, 6, 0),
                               "created_by", db_val(res, 0, 7)));
    db_res_free(res);
}

void h_policy_get(struct req *r) { show_version(r, r->cap[0], 0); }

void h_policy_version_get(struct req *r)
{
    char *end;
    long long v = strtoll(r->cap[1], &end, 10);
    if (*end || v < 1) {
        req_error(r, 404, "version", "versions are numbered from 1");
        return;
    }
    show_version(r, r->cap[0], v);
}

void h_policy_versions(struct req *r)
{
    char err[UTIL_ERRLEN];
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such policy");
        return;
    }
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT version, etag, comment, created_at, created_by FROM policy_versions"
                  " WHERE policy_id = $1 ORDER BY version DESC", 1, r->cap[0]);
    if (rc < 0) {
        req_db_error(r, rc, "listing versions", err);
        return;
    }
    if (db_nrows(res) == 0) {
        db_res_free(res);
        req_error(r, 404, "id", "no such policy");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++)
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s?,s:I,s:s?}", "version",
                              (json_int_t)db_int(res, i, 0, 0), "etag", db_val(res, i, 1),
                              "comment", db_val(res, i, 2), "created_at",
                              (json_int_t)db_int(res, i, 3, 0), "created_by", db_val(res, i, 4)));
    db_res_free(res);
    req_json(r, 200, json_pack("{s:s,s:o}", "id", r->cap[0], "versions", arr));
}

/* Appends a version with `body`; if base >= 1 it must be the current version
 * (optimistic concurrency: two admins editing at once get a 409). */
static void append_version(struct req *r, const char *id, const char *body, const char *comment,
                           int64_t base)
{
    char err[UTIL_ERRLEN];
    struct db_res *res = NULL;
    int rc = db_begin(r->db, err, sizeof err);
    if (rc == 0)
        rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT current_version, (SELECT MAX(version) FROM policy_versions"
                  " WHERE policy_id = $1) FROM policies WHERE id = $1", 1, id);
    if (rc == 0 && db_nrows(res) != 1) {
        db_rollback(r->db);
        db_res_free(res);
        req_error(r, 404, "id", "no such policy");
        return;
    }
    int64_t cur = db_int(res, 0, 0, 0), max = db_int(res, 0, 1, 0);
    db_res_free(res);
    if (rc == 0 && base > 0 && base != cur) {
        db_rollback(r->db);
        req_error(r, 409, "base_version", "the policy changed meanwhile (now version %lld): reload and edit again", (long long)cur);
        return;
    }
    if (rc == 0)
        rc = add_version(r, id, max + 1, body, comment, err, sizeof err);
    if (rc == 0)
        rc = db_commit(r->db, err, sizeof err);
    else
        db_rollback(r->db);
    if (rc == -EEXIST)
        req_error(r, 409, "base_version", "another version was saved at the same moment: retry");
    else if (rc < 0)
        req_db_error(r, rc, "saving the version", err);
    else
        answer_version(r, 201, id, max + 1, body);
}

void h_policy_add_version(struct req *r)
{
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such policy");
        return;
    }
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    const char *comment;
    int64_t base;
    char *doc = NULL;
    if (apiv_str(o, "comment", false, 1024, "text", &comment, &e) < 0 ||
        apiv_int(o, "base_version", false, 1, INT32_MAX, 0, &base, &e) < 0 ||
        apiv_policy_doc(o, &doc, &e) < 0)
        req_error(r, 400, e.field, "%s", e.msg);
    else if (validate_doc(r, doc) == 0)
        append_version(r, r->cap[0], doc, comment, base);
    free(doc);
    json_decref(o);
}

void h_policy_rollback(struct req *r)
{
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such policy");
        return;
    }
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    int64_t ver;
    char err[UTIL_ERRLEN], v[24], comment[64];
    struct db_res *res = NULL;
    if (apiv_int(o, "version", true, 1, INT32_MAX, 0, &ver, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
    } else {
        i64(v, sizeof v, ver);
        int rc = db_q(r->db, &res, err, sizeof err,
                      "SELECT body FROM policy_versions WHERE policy_id = $1 AND version = $2", 2,
                      r->cap[0], v);
        if (rc < 0)
            req_db_error(r, rc, "loading the version", err);
        else if (db_nrows(res) != 1)
            req_error(r, 404, "version", "no such policy or version");
        else {
            snprintf(comment, sizeof comment, "rollback to version %lld", (long long)ver);
            append_version(r, r->cap[0], db_val(res, 0, 0), comment, 0);
        }
    }
    db_res_free(res);
    json_decref(o);
}
