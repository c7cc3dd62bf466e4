/* api_agents: enrolment tokens, enrolment, the agent list (online / offline
 * / stale by last contact), delete / restore / expiry, and the agent's own
 * account endpoints. An agent's identity is its machine id: enrolling the
 * same machine again (a reinstall) revives its account, never duplicates it. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiv.h"
#include "util/log.h"
#include "util/util.h"

static void i64(char *buf, size_t cap, int64_t v) { snprintf(buf, cap, "%lld", (long long)v); }

static json_t *jint_or_null(const struct db_res *res, size_t row, size_t col)
{
    return db_val(res, row, col) ? json_integer(db_int(res, row, col, 0)) : json_null();
}

void h_health(struct req *r)
{
    req_json(r, 200, json_pack("{s:s,s:s,s:s,s:I}", "status", "ok", "version", SHOJI_VERSION,
                               "database", db_conn_kind(r->db) == DB_SQLITE ? "sqlite" : "postgresql",
                               "time", (json_int_t)r->now));
}

/* ---- enrolment tokens ---- */

void h_enrol_tokens_create(struct req *r)
{
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_token_create t;
    struct apiv_error e;
    if (apiv_token_create(o, &t, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
        json_decref(o);
        return;
    }
    char id[SRV_ID_HEX + 1], secret[SRV_SECRET_HEX + 1], hash[65], now[24], exp[24], uses[24];
    char err[UTIL_ERRLEN], tok[160];
    auth_random_hex(id, 16);
    auth_random_hex(secret, 32);
    auth_hash_secret(secret, hash);
    i64(now, sizeof now, r->now);
    i64(exp, sizeof exp, r->now + t.expires_in);
    i64(uses, sizeof uses, t.max_uses);
    int rc = db_q(r->db, NULL, err, sizeof err,
                  "INSERT INTO enrol_tokens (id, name, secret_hash, grp, created_at, expires_at,"
                  " max_uses, uses) VALUES ($1, $2, $3, $4, $5, $6, $7, 0)", 7, id, t.name, hash,
                  t.group, now, t.expires_in ? exp : NULL, t.max_uses ? uses : NULL);
    if (rc < 0) {
        req_db_error(r, rc, "creating the enrolment token", err);
    } else {
        snprintf(tok, sizeof tok, "enrol.%s.%s", id, secret);
        json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "id", id, "token", tok, "name", t.name,
                              "group", t.group);
        json_object_set_new(j, "expires_at", t.expires_in ? json_integer(r->now + t.expires_in) : json_null());
        json_object_set_new(j, "max_uses", t.max_uses ? json_integer(t.max_uses) : json_null());
        req_json(r, 201, j);
    }
    json_decref(o);
}

void h_enrol_tokens_list(struct req *r)
{
    char err[UTIL_ERRLEN];
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT id, name, grp, created_at, expires_at, max_uses, uses, revoked_at"
                  " FROM enrol_tokens ORDER BY created_at, id", 0);
    if (rc < 0) {
        req_db_error(r, rc, "listing enrolment tokens", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++) {
        int64_t exp = db_int(res, i, 4, 0), max = db_int(res, i, 5, 0), uses = db_int(res, i, 6, 0);
        const char *state = db_val(res, i, 7) ? "revoked"
                            : (exp && exp <= r->now) ? "expired"
                            : (max && uses >= max) ? "used_up" : "active";
        json_t *t = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "id", db_val(res, i, 0), "name",
                              db_val(res, i, 1), "group", db_val(res, i, 2), "created_at",
                              (json_int_t)db_int(res, i, 3, 0), "uses", (json_int_t)uses,
                              "state", state);
        json_object_set_new(t, "expires_at", jint_or_null(res, i, 4));
        json_object_set_new(t, "max_uses", jint_or_null(res, i, 5));
        json_object_set_new(t, "revoked_at", jint_or_null(res, i, 7));
        json_array_append_new(arr, t);
    }
    db_res_free(res);
    req_json(r, 200, json_pack("{s:o}", "tokens", arr));
}

void h_enrol_tokens_revoke(struct req *r)
{
    char err[UTIL_ERRLEN], now[24];
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such enrolment token");
        return;
    }
    i64(now, sizeof now, r->now);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "UPDATE enrol_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                  2, r->cap[0], now);
    if (rc < 0)
        req_db_error(r, rc, "revoking the enrolment token", err);
    else if (db_affected(res) == 0)
        req_error(r, 404, "id", "no such enrolment token (or already revoked)");
    else
        req_json(r, 200, json_pack("{s:s,s:b}", "id", r->cap[0], "revoked", 1));
    db_res_free(res);
}

/* ---- enrolment ---- */

/* Why a token cannot be used, for a clear refusal; NULL if usable. */
static const char *token_problem(struct req *r, const char *tok, char grp[72], char id[SRV_ID_HEX + 1])
{
    char err[UTIL_ERRLEN], hash[65];
    const char *p = tok;
    if (strncmp(p, "enrol.", 6) != 0 || strlen(p) != 6 + SRV_ID_HEX + 1 + SRV_SECRET_HEX ||
        p[6 + SRV_ID_HEX] != '.')
        return "malformed enrolment token (expected enrol.ID.SECRET as printed at creation)";
    memcpy(id, p + 6, SRV_ID_HEX);
    id[SRV_ID_HEX] = '\0';
    if (!apiv_is_id(id))
        return "malformed enrolment token";
    auth_hash_secret(p + 7 + SRV_ID_HEX, hash);
    struct db_res *res = NULL;
    if (db_q(r->db, &res, err, sizeof err,
             "SELECT secret_hash, grp, expires_at, max_uses, uses, revoked_at FROM enrol_tokens"
             " WHERE id = $1", 1, id) < 0)
        return "the enrolment token could not be checked (database error)";
    const char *why = NULL;
    if (db_nrows(res) != 1 || !auth_hash_eq(db_val(res, 0, 0), hash))
        why = "unknown enrolment token";
    else if (db_val(res, 0, 5))
        why = "this enrolment token was revoked";
    else if (db_val(res, 0, 2) && db_int(res, 0, 2, 0) <= r->now)
        why = "this enrolment token has expired";
    else if (db_val(res, 0, 3) && db_int(res, 0, 4, 0) >= db_int(res, 0, 3, 0))
        why = "this enrolment token has been used up (max_uses reached)";
    else
        util_strlcpy(grp, db_val(res, 0, 1), 72);
    db_res_free(res);
    return why;
}

/* Takes one use of the token atomically (a concurrent enrolment cannot
 * overshoot max_uses), then creates or revives the machine's agent. */
static int enrol_tx(struct req *r, const struct apiv_enrol *en, const char *tok_id,
                    const char *grp, char agent_id[SRV_ID_HEX + 1], const char *hash,
                    bool *revived, char *err, size_t errlen)
{
    char now[24];
    i64(now, sizeof now, r->now);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, errlen,
                  "UPDATE enrol_tokens SET uses = uses + 1 WHERE id = $1 AND revoked_at IS NULL"
                  " AND (expires_at IS NULL OR expires_at > $2)"
                  " AND (max_uses IS NULL OR uses < max_uses)", 2, tok_id, now);
    long n = db_affected(res);
    db_res_free(res);
    if (rc < 0)
        return rc;
    if (n != 1)
        return util_err(err, errlen, -EACCES, "this enrolment token is no longer usable");
    rc = db_q(r->db, &res, err, errlen, "SELECT id FROM agents WHERE machine_id = $1", 1,
              en->machine_id);
    if (rc < 0)
        return rc;
    *revived = db_nrows(res) == 1;
    if (*revived)
        util_strlcpy(agent_id, db_val(res, 0, 0), SRV_ID_HEX + 1);
    db_res_free(res);
    if (*revived)
        return db_q(r->db, NULL, err, errlen,
                    "UPDATE agents SET secret_hash = $2, hostname = $3, version = $4, os = $5,"
                    " last_seen = $6, enrol_token_id = $7, grp = $8, deleted_at = NULL,"
                    " deleted_reason = NULL WHERE id = $1", 8, agent_id, hash, en->hostname,
                    en->version, en->os, now, tok_id, grp);
    auth_random_hex(agent_id, 16);
    return db_q(r->db, NULL, err, errlen,
                "INSERT INTO agents (id, machine_id, secret_hash, hostname, version, os, grp,"
                " enrolled_at, last_seen, enrol_token_id) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                " $8, $8, $9)", 9, agent_id, en->machine_id, hash, en->hostname, en->version,
                en->os, grp, now, tok_id);
}

void h_enrol(struct req *r)
{
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_enrol en;
    struct apiv_error e;
    char grp[72], tok_id[SRV_ID_HEX + 1], agent_id[SRV_ID_HEX + 1], secret[SRV_SECRET_HEX + 1];
    char hash[65], err[UTIL_ERRLEN];
    const char *why;
    bool revived = false;
    if (apiv_enrol(o, &en, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
    } else if ((why = token_problem(r, en.token, grp, tok_id))) {
        req_error(r, 401, "token", "%s", why);
    } else {
        auth_random_hex(secret, 32);
        auth_hash_secret(secret, hash);
        int rc = db_begin(r->db, err, sizeof err);
        if (rc == 0)
            rc = enrol_tx(r, &en, tok_id, grp, agent_id, hash, &revived, err, sizeof err);
        if (rc == 0)
            rc = db_commit(r->db, err, sizeof err);
        else
            db_rollback(r->db);
        if (rc == -EACCES) {
            req_error(r, 401, "token", "%s", err);
        } else if (rc < 0) {
            req_db_error(r, rc, "enrolling the agent", err);
        } else {
            char cred[160];
            snprintf(cred, sizeof cred, "agent.%s.%s", agent_id, secret);
            log_info("agent %s enrolled (machine %s, %s)", agent_id, en.machine_id,
                     revived ? "re-enrolled" : "new");
            req_json(r, revived ? 200 : 201,
                     json_pack("{s:s,s:s,s:s,s:b}", "agent_id", agent_id, "credential", cred,
                               "group", grp, "reenrolled", revived));
        }
    }
    json_decref(o);
}
