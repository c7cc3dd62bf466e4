/* The schema of shoji-server, as ordered migrations (see db.h). Portable SQL
 * for SQLite and PostgreSQL: times are unix seconds in BIGINT, booleans are
 * INTEGER 0/1, ids are random hex TEXT except the high-volume log tables,
 * whose `@ID@` becomes INTEGER PRIMARY KEY (SQLite) / BIGSERIAL PRIMARY KEY
 * (PostgreSQL). Never edit an applied migration: add a new one. */
#include "db.h"

static const char m001_init[] =
    "CREATE TABLE admins ("
    "  id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, pwhash TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL);"
    /* lock-out counters live in the db so every instance sees them */
    "CREATE TABLE login_failures ("
    "  username TEXT PRIMARY KEY, failures INTEGER NOT NULL, first_at BIGINT NOT NULL,"
    "  locked_until BIGINT NOT NULL);"
    "CREATE TABLE sessions ("
    "  id TEXT PRIMARY KEY, admin_id TEXT NOT NULL, csrf TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);"
    "CREATE TABLE api_tokens ("
    "  id TEXT PRIMARY KEY, admin_id TEXT NOT NULL, name TEXT NOT NULL,"
    "  secret_hash TEXT NOT NULL, created_at BIGINT NOT NULL, last_used BIGINT,"
    "  revoked_at BIGINT);"
    "CREATE TABLE enrol_tokens ("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL,"
    "  grp TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT,"
    "  max_uses INTEGER, uses INTEGER NOT NULL DEFAULT 0, revoked_at BIGINT);"
    "CREATE TABLE agents ("
    "  id TEXT PRIMARY KEY, machine_id TEXT NOT NULL UNIQUE, secret_hash TEXT NOT NULL,"
    "  hostname TEXT, version TEXT, os TEXT, grp TEXT NOT NULL,"
    "  enrolled_at BIGINT NOT NULL, last_seen BIGINT NOT NULL, policy_etag TEXT,"
    "  enrol_token_id TEXT, deleted_at BIGINT, deleted_reason TEXT);"
    "CREATE TABLE policies ("
    "  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, current_version INTEGER NOT NULL,"
    "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
    "CREATE TABLE policy_versions ("
    "  policy_id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,"
    "  etag TEXT NOT NULL, comment TEXT, created_at BIGINT NOT NULL, created_by TEXT,"
    "  PRIMARY KEY (policy_id, version));"
    "CREATE TABLE agent_groups ("
    "  name TEXT PRIMARY KEY, policy_id TEXT, updated_at BIGINT NOT NULL);"
    "CREATE TABLE batches ("
    "  agent_id TEXT NOT NULL, kind TEXT NOT NULL, batch_id TEXT NOT NULL,"
    "  nlines INTEGER NOT NULL, received_at BIGINT NOT NULL,"
    "  PRIMARY KEY (agent_id, kind, batch_id));"
    "CREATE TABLE logs ("
    "  id @ID@, agent_id TEXT NOT NULL, ts BIGINT NOT NULL, app TEXT, pid INTEGER,"
    "  method TEXT, url TEXT, host TEXT, category TEXT, categories TEXT, action TEXT,"
    "  rule TEXT, status INTEGER, bytes BIGINT, duration_ms DOUBLE PRECISION,"
    "  line TEXT NOT NULL);"
    "CREATE INDEX logs_ts ON logs (ts);"
    "CREATE INDEX logs_agent_ts ON logs (agent_id, ts);"
    "CREATE INDEX logs_host ON logs (host);"
    "CREATE INDEX logs_action_ts ON logs (action, ts);"
    "CREATE TABLE conflicts ("
    "  id @ID@, agent_id TEXT NOT NULL, ts BIGINT NOT NULL, app TEXT, host TEXT,"
    "  reason TEXT, suggestion TEXT, line TEXT NOT NULL);"
    "CREATE INDEX conflicts_host_app ON conflicts (host, app);"
    "CREATE TABLE tasks ("
    "  id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, kind TEXT NOT NULL,"
    "  status TEXT NOT NULL, created_at BIGINT NOT NULL, sent_at BIGINT,"
    "  done_at BIGINT, result TEXT, created_by TEXT);"
    "CREATE INDEX tasks_agent ON tasks (agent_id, status);";

const struct db_migration db_migrations[] = {
    { 1, "initial schema", m001_init },
};
const size_t db_nmigrations = sizeof db_migrations / sizeof db_migrations[0];
