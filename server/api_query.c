/* api_query: the admin's reading side of agent data — the access-log query
 * (filters + keyset pagination), conflicts aggregated across agents by
 * host and application, and blocked-request statistics per hour and
 * category. Filters become SQL parameters, never SQL text. */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiv.h"
#include "util/log.h"
#include "util/util.h"

#define QMAX_PARAMS 16

struct q {
    char sql[4096];
    const char *p[QMAX_PARAMS];
    char own[QMAX_PARAMS][600];   /* storage for parameters built here */
    int np;
};

/* Appends `frag` with its "$?" replaced by the next parameter number. */
static void q_add(struct q *q, const char *frag, const char *value)
{
    if (q->np >= QMAX_PARAMS)
        return;
    util_strlcpy(q->own[q->np], value, sizeof q->own[0]);
    q->p[q->np] = q->own[q->np];
    q->np++;
    size_t l = strlen(q->sql);
    for (const char *f = frag; *f && l + 4 < sizeof q->sql; f++) {
        if (f[0] == '$' && f[1] == '?') {
            l += (size_t)snprintf(q->sql + l, sizeof q->sql - l, "$%d", q->np);
            f++;
        } else {
            q->sql[l++] = *f;
        }
    }
    q->sql[l] = '\0';
}

/* A time bound: unix seconds or RFC 3339. */
static int parse_time(struct req *r, const char *key, int64_t dflt, int64_t *out)
{
    const char *v = req_query(r, key);
    *out = dflt;
    if (!v || !*v)
        return 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*end && x >= 0) {
        *out = x;
        return 0;
    }
    if (apiv_time_str(v, out) == 0)
        return 0;
    req_error(r, 400, key, "`%s` must be unix seconds or RFC 3339 (2024-05-01T12:00:00Z)", key);
    return -EINVAL;
}

/* LIKE pattern with %, _ and \ escaped (ESCAPE '\'). */
static void like_escape(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in && o + 3 < cap; in++) {
        if (*in == '%' || *in == '_' || *in == '\\')
            out[o++] = '\\';
        out[o++] = *in;
    }
    out[o] = '\0';
}

static int common_filters(struct req *r, struct q *q, bool with_text_filters)
{
    int64_t from, to;
    char b[64];
    if (parse_time(r, "from", 0, &from) < 0 || parse_time(r, "to", INT64_MAX / 2, &to) < 0)
        return -EINVAL;
    snprintf(b, sizeof b, "%lld", (long long)from);
    q_add(q, " AND l.ts >= $?", b);
    snprintf(b, sizeof b, "%lld", (long long)to);
    q_add(q, " AND l.ts < $?", b);
    const char *agent = req_query(r, "agent");
    if (agent) {
        if (!apiv_is_id(agent)) {
            req_error(r, 400, "agent", "`agent` must be an agent id");
            return -EINVAL;
        }
        q_add(q, " AND l.agent_id = $?", agent);
    }
    const char *app = req_query(r, "app"), *host = req_query(r, "host");
    if (app && strlen(app) <= 256)
        q_add(q, " AND LOWER(l.app) = LOWER($?)", app);
    if (host && strlen(host) <= 512) {
        char pat[600];
        if (strncmp(host, "*.", 2) == 0) {
            char esc[560];
            like_escape(host + 1, esc, sizeof esc);   /* "*.x.com" -> "%.x.com" or "x.com" */
            snprintf(pat, sizeof pat, "%%%s", esc);
            q_add(q, " AND (l.host LIKE $? ESCAPE '\\'", pat);
            q_add(q, " OR l.host = $?)", host + 2);
        } else {
            q_add(q, " AND l.host = $?", host);
        }
    }
    if (!with_text_filters)
        return 0;
    const char *cat = req_query(r, "category"), *action = req_query(r, "action");
    if (cat) {
        char esc[300], pat[320];
        if (strlen(cat) > 100 || strchr(cat, ',')) {
            req_error(r, 400, "category", "bad category name");
            return -EINVAL;
        }
        like_escape(cat, esc, sizeof esc);
        snprintf(pat, sizeof pat, "%%,%s,%%", esc);
        q_add(q, " AND l.categories LIKE $? ESCAPE '\\'", pat);
    }
    if (action && strlen(action) <= 32)
        q_add(q, " AND l.action = $?", action);
    return 0;
}

static json_t *log_row(const struct db_res *res, size_t i)
{
    json_t *j = json_pack("{s:I,s:s,s:s?,s:I}", "id", (json_int_t)db_int(res, i, 0, 0), "agent_id",
                          db_val(res, i, 1), "agent_hostname", db_val(res, i, 2), "time",
                          (json_int_t)db_int(res, i, 3, 0));
    json_t *line = json_loads(db_val(res, i, 4), 0, NULL);
    json_object_set_new(j, "line", line ? line : json_null());
    return j;
}

void h_logs_query(struct req *r)
{
    struct q *q = calloc(1, sizeof *q);
    char err[UTIL_ERRLEN], b[64];
    if (!q) {
        req_error(r, 503, NULL, "out of memory");
        return;
    }
    snprintf(q->sql, sizeof q->sql, "SELECT l.id, l.agent_id, a.hostname, l.ts, l.line FROM logs l"
             " LEFT JOIN agents a ON a.id = l.agent_id WHERE 1 = 1");
    long limit = 100;
    const char *lim = req_query(r, "limit"), *cursor = req_query(r, "cursor");
    if (lim && (limit = strtol(lim, NULL, 10)) < 1)
        limit = 1;
    if (limit > 1000)
        limit = 1000;
    if (common_filters(r, q, true) < 0)
        goto out;
    if (cursor) {   /* "TS.ID" of the last row of the previous page */
        long long cts, cid;
        if (sscanf(cursor, "%lld.%lld", &cts, &cid) != 2) {
            req_error(r, 400, "cursor", "bad cursor: pass `next` from the previous page");
            goto out;
        }
        snprintf(b, sizeof b, "%lld", cts);
        q_add(q, " AND (l.ts < $?", b);
        q_add(q, " OR (l.ts = $?", b);
        snprintf(b, sizeof b, "%lld", cid);
        q_add(q, " AND l.id < $?))", b);
    }
    snprintf(b, sizeof b, "%ld", limit + 1);
    strncat(q->sql, " ORDER BY l.ts DESC, l.id DESC", sizeof q->sql - strlen(q->sql) - 1);
    q_add(q, " LIMIT $?", b);
    struct db_res *res = NULL;
    int rc = db_exec(r->db, q->sql, q->p, q->np, &res, err, sizeof err);
    if (rc < 0) {
        req_db_error(r, rc, "querying logs", err);
        goto out;
    }
    json_t *arr = json_array();
    size_t n = db_nrows(res) > (size_t)limit ? (size_t)limit : db_nrows(res);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, log_row(res, i));
    json_t *j = json_pack("{s:o}", "logs", arr);
    if (db_nrows(res) > (size_t)limit) {
        snprintf(b, sizeof b, "%lld.%lld", (long long)db_int(res, n - 1, 3, 0),
                 (long long)db_int(res, n - 1, 0, 0));
        json_object_set_new(j, "next", json_string(b));
    } else {
        json_object_set_new(j, "next", json_null());
    }
    db_res_free(res);
    req_json(r, 200, j);
out:
    free(q);
}

void h_conflicts_query(struct req *r)
{
    struct q *q = calloc(1, sizeof *q);
    char err[UTIL_ERRLEN];
    if (!q) {
        req_error(r, 503, NULL, "out of memory");
        return;
    }
    snprintf(q->sql, sizeof q->sql,
             "SELECT l.host, l.app, COUNT(*), COUNT(DISTINCT l.agent_id), MIN(l.ts), MAX(l.ts),"
             " MAX(l.reason), MAX(l.suggestion) FROM conflicts l WHERE 1 = 1");
    if (common_filters(r, q, false) < 0)
        goto out;
    strncat(q->sql, " GROUP BY l.host, l.app ORDER BY COUNT(*) DESC, l.host LIMIT 1000",
            sizeof q->sql - strlen(q->sql) - 1);
    struct db_res *res = NULL;
    int rc = db_exec(r->db, q->sql, q->p, q->np, &res, err, sizeof err);
    if (rc < 0) {
        req_db_error(r, rc, "querying conflicts", err);
        goto out;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++)
        json_array_append_new(arr, json_pack("{s:s?,s:s?,s:I,s:I,s:I,s:I,s:s?,s:s?}",
                              "host", db_val(res, i, 0), "app", db_val(res, i, 1), "events",
                              (json_int_t)db_int(res, i, 2, 0), "agents",
                              (json_int_t)db_int(res, i, 3, 0), "first_seen",
                              (json_int_t)db_int(res, i, 4, 0), "last_seen",
                              (json_int_t)db_int(res, i, 5, 0), "reason", db_val(res, i, 6),
                              "suggestion", db_val(res, i, 7)));
    db_res_free(res);
    req_json(r, 200, json_pack("{s:o}", "conflicts", arr));
out:
    free(q);
}

static json_t *stats_rows(struct req *r, struct q *q, const char *select_tail, bool hourly)
{
    char err[UTIL_ERRLEN];
    struct db_res *res = NULL;
    size_t l = strlen(q->sql);
    snprintf(q->sql + l, sizeof q->sql - l, "%s", select_tail);
    int rc = db_exec(r->db, q->sql, q->p, q->np, &res, err, sizeof err);
    if (rc < 0) {
        req_db_error(r, rc, "computing statistics", err);
        return NULL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < db_nrows(res); i++) {
        if (hourly)
            json_array_append_new(arr, json_pack("{s:I,s:s,s:I}", "hour",
                                  (json_int_t)db_int(res, i, 0, 0), "category",
                                  db_val(res, i, 1) ? db_val(res, i, 1) : "uncategorized",
                                  "blocked", (json_int_t)db_int(res, i, 2, 0)));
        else
            json_array_append_new(arr, json_pack("{s:s,s:I}", "host",
                                  db_val(res, i, 0) ? db_val(res, i, 0) : "",
                                  "blocked", (json_int_t)db_int(res, i, 1, 0)));
    }
    db_res_free(res);
    return arr;
}

/* Blocked requests per hour and (first) category; default: the last 24 h. */
void h_stats_blocked(struct req *r)
{
    struct q *q = calloc(1, sizeof *q);
    if (!q) {
        req_error(r, 503, NULL, "out of memory");
        return;
    }
    char def[24];
    snprintf(def, sizeof def, "%lld", (long long)(r->now - 86400));
    snprintf(q->sql, sizeof q->sql,
             "SELECT (l.ts / 3600) * 3600 AS hour, l.category, COUNT(*) FROM logs l"
             " WHERE l.action = 'block'");
    if (!req_query(r, "from"))
        q_add(q, " AND l.ts >= $?", def);
    if (common_filters(r, q, false) < 0) {
        free(q);
        return;
    }
    struct q *q2 = malloc(sizeof *q2);
    if (!q2) {
        free(q);
        req_error(r, 503, NULL, "out of memory");
        return;
    }
    *q2 = *q;
    for (int i = 0; i < q2->np; i++)
        q2->p[i] = q2->own[i];
    snprintf(q2->sql, sizeof q2->sql, "SELECT l.host, COUNT(*) FROM logs l WHERE l.action = 'block'%s",
             strstr(q->sql, "WHERE l.action = 'block'") + strlen("WHERE l.action = 'block'"));
    json_t *hours = stats_rows(r, q, " GROUP BY (l.ts / 3600) * 3600, l.category ORDER BY 1, 2", true);
    json_t *top = hours ? stats_rows(r, q2, " GROUP BY l.host ORDER BY 2 DESC, 1 LIMIT 20", false) : NULL;
    if (hours && top)
        req_json(r, 200, json_pack("{s:o,s:o}", "per_hour", hours, "top_hosts", top));
    else {
        json_decref(hours);
        json_decref(top);
    }
    free(q);
    free(q2);
}
