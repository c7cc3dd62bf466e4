/* server: shoji-server's shared internals — the configuration, the request
 * being handled (routing captures, body, auth, response), and the handlers
 * of every API endpoint (documented in docs/API.md).
 * Must never: let a handler touch another agent's rows than the one
 * authenticated (agent endpoints take the agent id from the credential,
 * never from the request), or answer an error that is not JSON. */
#ifndef SHOJI_SERVER_H
#define SHOJI_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

#define SRV_JSON_MAX (1u << 20)          /* JSON request bodies */
#define SRV_BATCH_MAX (8u << 20)         /* compressed log/conflict batch */
#define SRV_BATCH_RAW_MAX (64u << 20)    /* decompressed batch */
#define SRV_BATCH_MAX_LINES 100000
#define SRV_ID_HEX 32                    /* ids: 16 random bytes as hex */
#define SRV_SECRET_HEX 64                /* secrets: 32 random bytes as hex */

struct srv_config {
    const char *listen;          /* "127.0.0.1:8443" */
    const char *db_url;
    const char *data_dir;
    const char *tls_cert, *tls_key;
    int threads;                 /* HTTP worker threads */
    int64_t online_secs;         /* last seen within: online */
    int64_t stale_secs;          /* silent longer: stale (between: offline) */
    int64_t expire_secs;         /* silent longer: deleted automatically (0 = never) */
    int64_t session_secs;        /* admin session lifetime */
    int lockout_failures;        /* failed logins before lock-out */
    int64_t lockout_secs;        /* lock-out duration and failure window */
    int64_t sweep_secs;          /* how often expiry runs */
    int64_t retention_secs;      /* logs/conflicts/batch ids older: deleted (0 = keep) */
    const char *policy_base_dir; /* base dir for relative paths in policies */
    const char *console_dir;     /* static console files, served under /console/ */
};

struct srv {
    struct srv_config cfg;
    struct db *db;
    char fingerprint[96];
};

enum srv_auth { AUTH_PUBLIC = 0, AUTH_ADMIN, AUTH_AGENT };

#define REQ_MAX_CAPS 3
#define REQ_MAX_HDRS 4

struct req {
    struct srv *srv;
    void *mc;                    /* struct MHD_Connection * */
    const char *method;
    char path[1024];
    const char *cap[REQ_MAX_CAPS];   /* '*' segments of the route, in path storage */
    char capbuf[1024];
    const char *body;
    size_t body_len;
    struct db_conn *db;
    int64_t now;
    /* who */
    enum srv_auth who;
    char admin_id[SRV_ID_HEX + 1];
    char admin_user[128];
    bool via_cookie;
    char agent_id[SRV_ID_HEX + 1];
    /* response */
    int status;
    json_t *resp;                /* owned; NULL for an empty body */
    char hdr_name[REQ_MAX_HDRS][32];
    char hdr_val[REQ_MAX_HDRS][512];
    int nhdr;
};

/* ---- responses and request helpers (web.c) ---- */
void req_json(struct req *r, int status, json_t *body);          /* steals body */
void req_error(struct req *r, int status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void req_header(struct req *r, const char *name, const char *value);
const char *req_query(struct req *r, const char *key);
const char *req_hdr(struct req *r, const char *name);
const char *req_cookie(struct req *r, const char *name);
/* Parses the body as a JSON object; on failure answers 400 and returns NULL. */
json_t *req_body_json(struct req *r);
/* A database failure: logs it, answers 500 (503 if busy). */
void req_db_error(struct req *r, int rc, const char *what, const char *err);

int web_start(struct srv *s, const char *cert_pem, const char *key_pem, char *err, size_t errlen);
void web_stop(void);
int web_port(void);
/* The console's static files (web_static.c); NULL dir: not installed. */
void web_static_dir(const char *dir);

/* ---- auth.c ---- */
void auth_random_hex(char *out, size_t nbytes);          /* out: 2*nbytes+1 */
void auth_hash_secret(const char *secret, char out[65]); /* BLAKE2b-256 hex */
bool auth_hash_eq(const char *a, const char *b);         /* constant time */
int auth_password_hash(const char *pw, char *out, size_t outlen);
bool auth_password_ok(const char *hash, const char *pw);
/* Authenticates the request for the route's kind; on failure has answered
 * 401/403 and returns false. */
bool auth_check(struct req *r, enum srv_auth need);
int auth_admin_add(struct db *db, const char *user, const char *pw, char *err, size_t errlen);
int auth_token_add(struct db *db, const char *user, const char *name, char *tok, size_t toklen,
                   char *err, size_t errlen);
void h_login(struct req *r);
void h_logout(struct req *r);
void h_session(struct req *r);
void h_api_tokens_create(struct req *r);
void h_api_tokens_list(struct req *r);
void h_api_tokens_revoke(struct req *r);

/* ---- api_agents.c ---- */
void h_health(struct req *r);
void h_enrol_tokens_create(struct req *r);
void h_enrol_tokens_list(struct req *r);
void h_enrol_tokens_revoke(struct req *r);
void h_enrol(struct req *r);
void h_agents_list(struct req *r);
void h_agent_get(struct req *r);
void h_agent_delete(struct req *r);
void h_agent_restore(struct req *r);
void h_agent_self(struct req *r);
void h_agent_status(struct req *r);
void h_agent_unenrol(struct req *r);
int agents_sweep(struct srv *s, struct db_conn *c, int64_t now, char *err, size_t errlen);
int data_retention_sweep(struct srv *s, struct db_conn *c, int64_t now, char *err, size_t errlen);
const char *agent_state(const struct srv *s, int64_t last_seen, int64_t now);

/* ---- api_policy.c ---- */
void h_policies_list(struct req *r);
void h_policies_create(struct req *r);
void h_policy_get(struct req *r);
void h_policy_versions(struct req *r);
void h_policy_version_get(struct req *r);
void h_policy_add_version(struct req *r);
void h_policy_rollback(struct req *r);
void h_groups_list(struct req *r);
void h_group_put(struct req *r);
void h_agent_policy(struct req *r);
void h_tasks_create(struct req *r);
void h_tasks_list(struct req *r);
void h_agent_tasks(struct req *r);
void h_agent_task_result(struct req *r);

/* ---- api_logs.c ---- */
void h_agent_logs_put(struct req *r);
void h_agent_conflicts_put(struct req *r);
void h_logs_query(struct req *r);
void h_conflicts_query(struct req *r);
void h_stats_blocked(struct req *r);

#endif
