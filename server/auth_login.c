/* auth_login: the admin side of auth — login with lock-out, logout, the
 * session probe, admin API tokens, and the CLI helpers that create admins
 * and tokens. */
#include "server.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apiv.h"
#include "util/log.h"
#include "util/util.h"

static void i64(char *buf, size_t cap, int64_t v) { snprintf(buf, cap, "%lld", (long long)v); }

/* Returns seconds left in a lock-out, 0 if not locked, <0 on db error. */
static int64_t locked_for(struct req *r, const char *user, char *err, size_t errlen)
{
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, errlen,
                  "SELECT locked_until FROM login_failures WHERE username = $1", 1, user);
    if (rc < 0)
        return rc;
    int64_t until = db_int(res, 0, 0, 0);
    db_res_free(res);
    return until > r->now ? until - r->now : 0;
}

static int record_failure(struct req *r, const char *user, char *err, size_t errlen)
{
    const struct srv_config *c = &r->srv->cfg;
    char now[24], window[24], n[24], until[24];
    i64(now, sizeof now, r->now);
    i64(window, sizeof window, r->now - c->lockout_secs);
    i64(n, sizeof n, c->lockout_failures);
    i64(until, sizeof until, r->now + c->lockout_secs);
    return db_q(r->db, NULL, err, errlen,
                "INSERT INTO login_failures (username, failures, first_at, locked_until)"
                " VALUES ($1, 1, $2, CASE WHEN 1 >= CAST($4 AS INTEGER) THEN CAST($5 AS BIGINT) ELSE 0 END)"
                " ON CONFLICT (username) DO UPDATE SET"
                " failures = CASE WHEN login_failures.first_at < $3 THEN 1"
                "   ELSE login_failures.failures + 1 END,"
                " locked_until = CASE WHEN login_failures.first_at >= $3"
                "   AND login_failures.failures + 1 >= $4 THEN $5"
                "   ELSE login_failures.locked_until END,"
                " first_at = CASE WHEN login_failures.first_at < $3 THEN $2"
                "   ELSE login_failures.first_at END",
                5, user, now, window, n, until);
}

static int new_session(struct req *r, const char *admin_id, char token[SRV_SECRET_HEX + 1],
                       char csrf[SRV_SECRET_HEX + 1], char *err, size_t errlen)
{
    char hash[65], now[24], exp[24];
    auth_random_hex(token, 32);
    auth_random_hex(csrf, 32);
    auth_hash_secret(token, hash);
    i64(now, sizeof now, r->now);
    i64(exp, sizeof exp, r->now + r->srv->cfg.session_secs);
    return db_q(r->db, NULL, err, errlen,
                "INSERT INTO sessions (id, admin_id, csrf, created_at, expires_at)"
                " VALUES ($1, $2, $3, $4, $5)", 5, hash, admin_id, csrf, now, exp);
}

/* A fixed argon2id hash verified when the user does not exist, so a login
 * for an unknown name costs the same time as a wrong password. */
static const char *dummy_hash(void)
{
    static char h[crypto_pwhash_STRBYTES];
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        char tmp[crypto_pwhash_STRBYTES];
        if (auth_password_hash("shoji-dummy-password", tmp, sizeof tmp) == 0) {
            memcpy(h, tmp, sizeof h);
            __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
        }
    }
    return h;
}

static void login_ok(struct req *r, const char *admin_id, const char *user)
{
    char err[UTIL_ERRLEN], token[SRV_SECRET_HEX + 1], csrf[SRV_SECRET_HEX + 1], cookie[256];
    db_q(r->db, NULL, err, sizeof err, "DELETE FROM login_failures WHERE username = $1", 1, user);
    int rc = new_session(r, admin_id, token, csrf, err, sizeof err);
    if (rc < 0) {
        req_db_error(r, rc, "creating the session", err);
        return;
    }
    snprintf(cookie, sizeof cookie,
             "shoji_session=%s; Path=/; Max-Age=%lld; HttpOnly; Secure; SameSite=Strict", token,
             (long long)r->srv->cfg.session_secs);
    req_header(r, "Set-Cookie", cookie);
    req_json(r, 200, json_pack("{s:s,s:s,s:I}", "username", user, "csrf_token", csrf,
                               "expires_at", (json_int_t)(r->now + r->srv->cfg.session_secs)));
}

void h_login(struct req *r)
{
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    const char *user, *pw;
    char err[UTIL_ERRLEN];
    if (apiv_str(o, "username", true, 128, "text", &user, &e) < 0 ||
        apiv_str(o, "password", true, 1024, "text", &pw, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
        json_decref(o);
        return;
    }
    int64_t left = locked_for(r, user, err, sizeof err);
    if (left < 0) {
        req_db_error(r, (int)left, "checking the lock-out", err);
    } else if (left > 0) {
        char ra[24];
        i64(ra, sizeof ra, left);
        req_header(r, "Retry-After", ra);
        req_error(r, 429, NULL, "too many failed logins for this user: locked for %lld more seconds",
                  (long long)left);
    } else {
        struct db_res *res = NULL;
        int rc = db_q(r->db, &res, err, sizeof err,
                      "SELECT id, pwhash FROM admins WHERE username = $1", 1, user);
        if (rc < 0) {
            req_db_error(r, rc, "looking up the admin", err);
        } else if (db_nrows(res) == 1 && auth_password_ok(db_val(res, 0, 1), pw)) {
            login_ok(r, db_val(res, 0, 0), user);
        } else {
            if (db_nrows(res) == 0)
                auth_password_ok(dummy_hash(), pw);
            record_failure(r, user, err, sizeof err);
            req_error(r, 401, NULL, "wrong user name or password");
        }
        db_res_free(res);
    }
    json_decref(o);
}

void h_logout(struct req *r)
{
    char err[UTIL_ERRLEN], hash[65];
    const char *cookie = req_cookie(r, "shoji_session");
    if (r->via_cookie && cookie) {
        auth_hash_secret(cookie, hash);
        db_q(r->db, NULL, err, sizeof err, "DELETE FROM sessions WHERE id = $1", 1, hash);
    }
    req_header(r, "Set-Cookie", "shoji_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    req_json(r, 200, json_pack("{s:b}", "logged_out", 1));
}

void h_session(struct req *r)
{
    req_json(r, 200, json_pack("{s:s,s:s,s:b}", "username", r->admin_user, "admin_id",
                               r->admin_id, "cookie", r->via_cookie));
}

void h_api_tokens_create(struct req *r)
{
    json_t *o = req_body_json(r);
    if (!o)
        return;
    struct apiv_error e;
    const char *name;
    if (apiv_str(o, "name", false, 128, "text", &name, &e) < 0) {
        req_error(r, 400, e.field, "%s", e.msg);
        json_decref(o);
        return;
    }
    char id[SRV_ID_HEX + 1], secret[SRV_SECRET_HEX + 1], hash[65], now[24], err[UTIL_ERRLEN];
    auth_random_hex(id, 16);
    auth_random_hex(secret, 32);
    auth_hash_secret(secret, hash);
    i64(now, sizeof now, r->now);
    int rc = db_q(r->db, NULL, err, sizeof err,
                  "INSERT INTO api_tokens (id, admin_id, name, secret_hash, created_at)"
                  " VALUES ($1, $2, $3, $4, $5)", 5, id, r->admin_id, name ? name : "", hash, now);
    if (rc < 0) {
        req_db_error(r, rc, "creating the API token", err);
    } else {
        char tok[160];
        snprintf(tok, sizeof tok, "admin.%s.%s", id, secret);
        req_json(r, 201, json_pack("{s:s,s:s,s:s}", "id", id, "name", name ? name : "", "token", tok));
    }
    json_decref(o);
}

void h_api_tokens_list(struct req *r)
{
    char err[UTIL_ERRLEN];
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT t.id, t.name, a.username, t.created_at, t.last_used, t.revoked_at"
                  " FROM api_tokens t JOIN admins a ON a.id = t.admin_id ORDER BY t.created_at", 0);
    if (rc < 0) {
        req_db_error(r, rc, "listing API tokens", err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++) {
        json_t *t = json_pack("{s:s,s:s,s:s,s:I}", "id", db_val(res, i, 0), "name",
                              db_val(res, i, 1), "admin", db_val(res, i, 2), "created_at",
                              (json_int_t)db_int(res, i, 3, 0));
        json_object_set_new(t, "last_used", db_val(res, i, 4) ? json_integer(db_int(res, i, 4, 0)) : json_null());
        json_object_set_new(t, "revoked", json_boolean(db_val(res, i, 5) != NULL));
        json_array_append_new(arr, t);
    }
    db_res_free(res);
    req_json(r, 200, json_pack("{s:o}", "tokens", arr));
}

void h_api_tokens_revoke(struct req *r)
{
    char err[UTIL_ERRLEN], now[24];
    if (!apiv_is_id(r->cap[0])) {
        req_error(r, 404, "id", "no such API token");
        return;
    }
    i64(now, sizeof now, r->now);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", 2,
                  r->cap[0], now);
    if (rc < 0)
        req_db_error(r, rc, "revoking the API token", err);
    else if (db_affected(res) == 0)
        req_error(r, 404, "id", "no such API token (or already revoked)");
    else
        req_json(r, 200, json_pack("{s:s,s:b}", "id", r->cap[0], "revoked", 1));
    db_res_free(res);
}

int auth_admin_add(struct db *db, const char *user, const char *pw, char *err, size_t errlen)
{
    if (!apiv_is_name(user, 64))
        return util_err(err, errlen, -EINVAL, "user name '%s': use 1-64 of A-Z a-z 0-9 . _ -", user);
    if (strlen(pw) < 8)
        return util_err(err, errlen, -EINVAL, "the password must be at least 8 characters");
    char hash[crypto_pwhash_STRBYTES], id[SRV_ID_HEX + 1], now[24];
    if (auth_password_hash(pw, hash, sizeof hash) < 0)
        return util_err(err, errlen, -ENOMEM, "argon2id hashing failed (out of memory?)");
    auth_random_hex(id, 16);
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    struct db_conn *c = db_acquire(db);
    int rc = db_q(c, NULL, err, errlen,
                  "INSERT INTO admins (id, username, pwhash, created_at) VALUES ($1, $2, $3, $4)"
                  " ON CONFLICT (username) DO UPDATE SET pwhash = excluded.pwhash", 4, id, user,
                  hash, now);
    if (rc == 0)
        rc = db_q(c, NULL, err, errlen, "DELETE FROM login_failures WHERE username = $1", 1, user);
    db_release(db, c);
    return rc;
}

int auth_token_add(struct db *db, const char *user, const char *name, char *tok, size_t toklen,
                   char *err, size_t errlen)
{
    struct db_conn *c = db_acquire(db);
    struct db_res *res = NULL;
    int rc = db_q(c, &res, err, errlen, "SELECT id FROM admins WHERE username = $1", 1, user);
    if (rc == 0 && db_nrows(res) != 1)
        rc = util_err(err, errlen, -ENOENT, "no admin named '%s' (create it with: shoji-server admin add)", user);
    if (rc == 0) {
        char id[SRV_ID_HEX + 1], secret[SRV_SECRET_HEX + 1], hash[65], now[24];
        auth_random_hex(id, 16);
        auth_random_hex(secret, 32);
        auth_hash_secret(secret, hash);
        snprintf(now, sizeof now, "%lld", (long long)time(NULL));
        rc = db_q(c, NULL, err, errlen,
                  "INSERT INTO api_tokens (id, admin_id, name, secret_hash, created_at)"
                  " VALUES ($1, $2, $3, $4, $5)", 5, id, db_val(res, 0, 0), name, hash, now);
        if (rc == 0)
            snprintf(tok, toklen, "admin.%s.%s", id, secret);
    }
    db_res_free(res);
    db_release(db, c);
    return rc;
}
