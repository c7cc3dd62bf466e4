/* auth: who is calling — admin sessions (cookie + CSRF token), admin API
 * tokens, agent credentials — plus login with lock-out, and password and
 * secret hashing. Secrets are stored only as hashes: passwords with argon2id
 * (crypto_pwhash_str), random 256-bit tokens with BLAKE2b (they need no
 * stretching). Every counter and session lives in the database, so any
 * server instance can check any request. */
#include "server.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiv.h"
#include "util/log.h"
#include "util/util.h"

#define COOKIE_NAME "shoji_session"

void auth_random_hex(char *out, size_t nbytes)
{
    unsigned char b[64];
    if (nbytes > sizeof b)
        nbytes = sizeof b;
    randombytes_buf(b, nbytes);
    sodium_bin2hex(out, nbytes * 2 + 1, b, nbytes);
}

void auth_hash_secret(const char *secret, char out[65])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)secret, strlen(secret), NULL, 0);
    sodium_bin2hex(out, 65, h, sizeof h);
}

bool auth_hash_eq(const char *a, const char *b)
{
    if (!a || !b || strlen(a) != strlen(b))
        return false;
    return sodium_memcmp(a, b, strlen(a)) == 0;
}

int auth_password_hash(const char *pw, char *out, size_t outlen)
{
    if (outlen < crypto_pwhash_STRBYTES)
        return -ENOBUFS;
    if (crypto_pwhash_str(out, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return -ENOMEM;
    return 0;
}

bool auth_password_ok(const char *hash, const char *pw)
{
    return crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0;
}

/* "Bearer KIND.ID.SECRET" -> id, secret. */
static bool parse_bearer(const char *h, const char *kind, char id[SRV_ID_HEX + 1],
                         char secret[SRV_SECRET_HEX + 1])
{
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    size_t kl = strlen(kind);
    if (strncmp(h, kind, kl) != 0 || h[kl] != '.')
        return false;
    h += kl + 1;
    const char *dot = strchr(h, '.');
    if (!dot || dot - h != SRV_ID_HEX || strlen(dot + 1) != SRV_SECRET_HEX)
        return false;
    memcpy(id, h, SRV_ID_HEX);
    id[SRV_ID_HEX] = '\0';
    memcpy(secret, dot + 1, SRV_SECRET_HEX + 1);
    return apiv_is_id(id);
}

static bool check_agent(struct req *r)
{
    char id[SRV_ID_HEX + 1], secret[SRV_SECRET_HEX + 1], hash[65], err[UTIL_ERRLEN];
    if (!parse_bearer(req_hdr(r, "Authorization"), "agent", id, secret)) {
        req_error(r, 401, NULL, "agent credential missing or malformed (Authorization: Bearer agent.ID.SECRET)");
        return false;
    }
    auth_hash_secret(secret, hash);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT secret_hash FROM agents WHERE id = $1 AND deleted_at IS NULL", 1, id);
    if (rc < 0) {
        req_db_error(r, rc, "checking the agent credential", err);
        return false;
    }
    bool ok = db_nrows(res) == 1 && auth_hash_eq(db_val(res, 0, 0), hash);
    db_res_free(res);
    if (!ok) {
        req_error(r, 401, NULL, "unknown, deleted or wrong agent credential: enrol again");
        return false;
    }
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)r->now);
    db_q(r->db, NULL, err, sizeof err, "UPDATE agents SET last_seen = $2 WHERE id = $1", 2, id, now);
    util_strlcpy(r->agent_id, id, sizeof r->agent_id);
    r->who = AUTH_AGENT;
    return true;
}

static bool check_api_token(struct req *r, const char *authz)
{
    char id[SRV_ID_HEX + 1], secret[SRV_SECRET_HEX + 1], hash[65], err[UTIL_ERRLEN];
    if (!parse_bearer(authz, "admin", id, secret)) {
        req_error(r, 401, NULL, "admin API token malformed (Authorization: Bearer admin.ID.SECRET)");
        return false;
    }
    auth_hash_secret(secret, hash);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT t.secret_hash, a.id, a.username FROM api_tokens t JOIN admins a"
                  " ON a.id = t.admin_id WHERE t.id = $1 AND t.revoked_at IS NULL", 1, id);
    if (rc < 0) {
        req_db_error(r, rc, "checking the API token", err);
        return false;
    }
    bool ok = db_nrows(res) == 1 && auth_hash_eq(db_val(res, 0, 0), hash);
    if (ok) {
        util_strlcpy(r->admin_id, db_val(res, 0, 1), sizeof r->admin_id);
        util_strlcpy(r->admin_user, db_val(res, 0, 2), sizeof r->admin_user);
    }
    db_res_free(res);
    if (!ok) {
        req_error(r, 401, NULL, "unknown or revoked API token");
        return false;
    }
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)r->now);
    db_q(r->db, NULL, err, sizeof err, "UPDATE api_tokens SET last_used = $2 WHERE id = $1", 2,
         id, now);
    r->who = AUTH_ADMIN;
    return true;
}

static bool check_session(struct req *r, const char *token)
{
    char hash[65], err[UTIL_ERRLEN], now[24];
    auth_hash_secret(token, hash);
    snprintf(now, sizeof now, "%lld", (long long)r->now);
    struct db_res *res = NULL;
    int rc = db_q(r->db, &res, err, sizeof err,
                  "SELECT s.csrf, a.id, a.username FROM sessions s JOIN admins a"
                  " ON a.id = s.admin_id WHERE s.id = $1 AND s.expires_at > $2", 2, hash, now);
    if (rc < 0) {
        req_db_error(r, rc, "checking the session", err);
        return false;
    }
    if (db_nrows(res) != 1) {
        db_res_free(res);
        req_error(r, 401, NULL, "not logged in, or the session expired: log in again");
        return false;
    }
    bool safe = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    const char *csrf = req_hdr(r, "X-CSRF-Token");
    bool csrf_ok = safe || auth_hash_eq(csrf, db_val(res, 0, 0));
    util_strlcpy(r->admin_id, db_val(res, 0, 1), sizeof r->admin_id);
    util_strlcpy(r->admin_user, db_val(res, 0, 2), sizeof r->admin_user);
    db_res_free(res);
    if (!csrf_ok) {
        req_error(r, 403, "X-CSRF-Token", "missing or wrong X-CSRF-Token header (the csrf_token from login)");
        return false;
    }
    r->via_cookie = true;
    r->who = AUTH_ADMIN;
    return true;
}

bool auth_check(struct req *r, enum srv_auth need)
{
    if (need == AUTH_PUBLIC)
        return true;
    if (need == AUTH_AGENT)
        return check_agent(r);
    const char *authz = req_hdr(r, "Authorization");
    if (authz)
        return check_api_token(r, authz);
    const char *cookie = req_cookie(r, COOKIE_NAME);
    if (cookie && strlen(cookie) == SRV_SECRET_HEX)
        return check_session(r, cookie);
    req_error(r, 401, NULL, "admin login required (session cookie or Authorization: Bearer admin.ID.SECRET)");
    return false;
}
