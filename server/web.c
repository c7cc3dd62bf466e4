/* web: the HTTPS front of shoji-server — libmicrohttpd (internal thread
 * pool, GnuTLS), the route table, bounded request bodies, and JSON replies.
 * Every error answer is JSON {"error": "...", "field": "..."}. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/util.h"

struct route {
    const char *method;
    const char *pattern;      /* '*' matches one non-empty path segment */
    enum srv_auth auth;
    size_t max_body;
    void (*fn)(struct req *r);
};

#define J SRV_JSON_MAX
#define B SRV_BATCH_MAX
static const struct route routes[] = {
    { "GET", "/api/v1/health", AUTH_PUBLIC, 0, h_health },
    { "POST", "/api/v1/login", AUTH_PUBLIC, J, h_login },
    { "POST", "/api/v1/logout", AUTH_ADMIN, J, h_logout },
    { "GET", "/api/v1/session", AUTH_ADMIN, 0, h_session },
    { "GET", "/api/v1/api-tokens", AUTH_ADMIN, 0, h_api_tokens_list },
    { "POST", "/api/v1/api-tokens", AUTH_ADMIN, J, h_api_tokens_create },
    { "DELETE", "/api/v1/api-tokens/*", AUTH_ADMIN, 0, h_api_tokens_revoke },
    { "GET", "/api/v1/enrol-tokens", AUTH_ADMIN, 0, h_enrol_tokens_list },
    { "POST", "/api/v1/enrol-tokens", AUTH_ADMIN, J, h_enrol_tokens_create },
    { "DELETE", "/api/v1/enrol-tokens/*", AUTH_ADMIN, 0, h_enrol_tokens_revoke },
    { "POST", "/api/v1/enrol", AUTH_PUBLIC, J, h_enrol },
    { "GET", "/api/v1/agents", AUTH_ADMIN, 0, h_agents_list },
    { "GET", "/api/v1/agents/*", AUTH_ADMIN, 0, h_agent_get },
    { "DELETE", "/api/v1/agents/*", AUTH_ADMIN, 0, h_agent_delete },
    { "POST", "/api/v1/agents/*/restore", AUTH_ADMIN, J, h_agent_restore },
    { "GET", "/api/v1/agents/*/tasks", AUTH_ADMIN, 0, h_tasks_list },
    { "POST", "/api/v1/agents/*/tasks", AUTH_ADMIN, J, h_tasks_create },
    { "GET", "/api/v1/policies", AUTH_ADMIN, 0, h_policies_list },
    { "POST", "/api/v1/policies", AUTH_ADMIN, J, h_policies_create },
    { "GET", "/api/v1/policies/*", AUTH_ADMIN, 0, h_policy_get },
    { "GET", "/api/v1/policies/*/versions", AUTH_ADMIN, 0, h_policy_versions },
    { "POST", "/api/v1/policies/*/versions", AUTH_ADMIN, J, h_policy_add_version },
    { "GET", "/api/v1/policies/*/versions/*", AUTH_ADMIN, 0, h_policy_version_get },
    { "POST", "/api/v1/policies/*/rollback", AUTH_ADMIN, J, h_policy_rollback },
    { "GET", "/api/v1/groups", AUTH_ADMIN, 0, h_groups_list },
    { "PUT", "/api/v1/groups/*", AUTH_ADMIN, J, h_group_put },
    { "GET", "/api/v1/logs", AUTH_ADMIN, 0, h_logs_query },
    { "GET", "/api/v1/conflicts", AUTH_ADMIN, 0, h_conflicts_query },
    { "GET", "/api/v1/stats/blocked", AUTH_ADMIN, 0, h_stats_blocked },
    { "GET", "/api/v1/agent", AUTH_AGENT, 0, h_agent_self },
    { "DELETE", "/api/v1/agent", AUTH_AGENT, 0, h_agent_unenrol },
    { "POST", "/api/v1/agent/status", AUTH_AGENT, J, h_agent_status },
    { "GET", "/api/v1/agent/policy", AUTH_AGENT, 0, h_agent_policy },
    { "PUT", "/api/v1/agent/logs/*", AUTH_AGENT, B, h_agent_logs_put },
    { "PUT", "/api/v1/agent/conflicts/*", AUTH_AGENT, B, h_agent_conflicts_put },
    { "GET", "/api/v1/agent/tasks", AUTH_AGENT, 0, h_agent_tasks },
    { "POST", "/api/v1/agent/tasks/*/result", AUTH_AGENT, J, h_agent_task_result },
};
#undef J
#undef B

enum MHD_Result web_static_serve(struct MHD_Connection *mc, const char *url);

static struct MHD_Daemon *g_daemon;
static struct srv *g_srv;

/* Matches `path` against `pattern`; captures '*' segments into r. */
static bool match(const char *pattern, const char *path, struct req *r)
{
    const char *p = pattern, *s = path;
    size_t ncap = 0, used = 0;
    while (*p && *s) {
        if (*p == '*') {
            const char *end = strchr(s, '/');
            size_t n = end ? (size_t)(end - s) : strlen(s);
            if (n == 0 || ncap >= REQ_MAX_CAPS || used + n + 1 > sizeof r->capbuf)
                return false;
            if (r) {
                memcpy(r->capbuf + used, s, n);
                r->capbuf[used + n] = '\0';
                r->cap[ncap] = r->capbuf + used;
            }
            ncap++;
            used += n + 1;
            s += n;
            p++;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return false;
        }
    }
    return *p == '\0' && *s == '\0';
}

/* 0: found; -ENOENT: no such path; -EPERM: path exists, not with this method. */
static int find_route(const char *method, const char *path, const struct route **out)
{
    bool path_ok = false;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(routes); i++) {
        if (!match(routes[i].pattern, path, NULL))
            continue;
        path_ok = true;
        if (strcmp(routes[i].method, method) == 0) {
            *out = &routes[i];
            return 0;
        }
    }
    return path_ok ? -EPERM : -ENOENT;
}

struct conn_ctx {
    const struct route *rt;
    struct buf body;
    bool overflow;
    size_t discarded;
};

/* ---- request helpers ---- */

void req_json(struct req *r, int status, json_t *body)
{
    json_decref(r->resp);
    r->status = status;
    r->resp = body;
}

void req_error(struct req *r, int status, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:s}", "error", msg);
    if (j && field && *field)
        json_object_set_new(j, "field", json_string(field));
    req_json(r, status, j);
}

void req_header(struct req *r, const char *name, const char *value)
{
    if (r->nhdr >= REQ_MAX_HDRS)
        return;
    util_strlcpy(r->hdr_name[r->nhdr], name, sizeof r->hdr_name[0]);
    util_strlcpy(r->hdr_val[r->nhdr], value, sizeof r->hdr_val[0]);
    r->nhdr++;
}

const char *req_query(struct req *r, const char *key)
{
    return MHD_lookup_connection_value(r->mc, MHD_GET_ARGUMENT_KIND, key);
}

const char *req_hdr(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, name);
}

const char *req_cookie(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->mc, MHD_COOKIE_KIND, name);
}

json_t *req_body_json(struct req *r)
{
    json_error_t je;
    if (!r->body || r->body_len == 0) {
        req_error(r, 400, NULL, "this request needs a JSON object body");
        return NULL;
    }
    json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        req_error(r, 400, NULL, "malformed JSON at line %d column %d: %s", je.line, je.column,
                  je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        req_error(r, 400, NULL, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

void req_db_error(struct req *r, int rc, const char *what, const char *err)
{
    log_error("%s %s: %s: %s", r->method, r->path, what, err);
    if (rc == -EAGAIN)
        req_error(r, 503, NULL, "the database is busy; retry shortly");
    else
        req_error(r, 500, NULL, "internal error while %s (see the server log)", what);
}

/* ---- MHD glue ---- */

static enum MHD_Result send_json(struct MHD_Connection *mc, int status, json_t *body,
                                 const struct req *r)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    size_t len = text ? strlen(text) : 0;
    struct MHD_Response *resp =
        text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    if (text)
        MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (int i = 0; r && i < r->nhdr; i++)
        MHD_add_response_header(resp, r->hdr_name[i], r->hdr_val[i]);
    enum MHD_Result ret = MHD_queue_response(mc, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *mc, int status, const char *msg)
{
    json_t *j = json_pack("{s:s}", "error", msg);
    enum MHD_Result ret = send_json(mc, status, j, NULL);
    json_decref(j);
    return ret;
}

static enum MHD_Result dispatch(struct MHD_Connection *mc, const char *url, const char *method,
                                struct conn_ctx *cx)
{
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return send_error(mc, 503, "out of memory");
    r->srv = g_srv;
    r->mc = mc;
    r->method = method;
    util_strlcpy(r->path, url, sizeof r->path);
    match(cx->rt->pattern, r->path, r);
    r->body = cx->body.p;
    r->body_len = cx->body.len;
    r->now = (int64_t)time(NULL);
    r->status = 500;
    uint64_t t0 = util_mono_us();
    r->db = db_acquire(g_srv->db);
    if (auth_check(r, cx->rt->auth))
        cx->rt->fn(r);
    db_release(g_srv->db, r->db);
    if (r->status == 500 && !r->resp)
        req_error(r, 500, NULL, "internal error");
    log_debug("%s %s -> %d (%llu us)", method, url, r->status,
              (unsigned long long)(util_mono_us() - t0));
    enum MHD_Result ret = send_json(mc, r->status, r->resp, r);
    json_decref(r->resp);
    free(r);
    return ret;
}

static enum MHD_Result first_call(struct MHD_Connection *mc, const char *url, const char *method,
                                  void **con_cls)
{
    struct conn_ctx *cx = calloc(1, sizeof *cx);
    if (!cx)
        return MHD_NO;
    *con_cls = cx;
    if (strlen(url) >= sizeof ((struct req *)0)->path)
        return send_error(mc, 414, "the URL is too long");
    if (strncmp(url, "/api/", 5) != 0 &&
        (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0))
        return web_static_serve(mc, url);
    int rc = find_route(method, url, &cx->rt);
    if (rc == -ENOENT)
        return send_error(mc, 404, "no such API endpoint (see docs/API.md)");
    if (rc == -EPERM)
        return send_error(mc, 405, "this endpoint does not take that method");
    buf_init(&cx->body, cx->rt->max_body);
    const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > cx->rt->max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is too large (at most %zu bytes here)",
                 cx->rt->max_body);
        cx->rt = NULL;
        return send_error(mc, 413, msg);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct conn_ctx *cx = *con_cls;
    if (!cx)
        return first_call(mc, url, method, con_cls);
    if (!cx->rt) {                     /* an error was already queued: drain */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!cx->overflow && buf_append(&cx->body, upload_data, *upload_data_size) < 0) {
            cx->overflow = true;
            buf_free(&cx->body);
        }
        if (cx->overflow) {
            cx->discarded += *upload_data_size;
            if (cx->discarded > 4 * (cx->rt->max_body + 1))
                return MHD_NO;         /* a sender that does not stop: hang up */
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (cx->overflow) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is too large (at most %zu bytes here)",
                 cx->rt->max_body);
        return send_error(mc, 413, msg);
    }
    return dispatch(mc, url, method, cx);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct conn_ctx *cx = *con_cls;
    if (!cx)
        return;
    buf_free(&cx->body);
    free(cx);
    *con_cls = NULL;
}

static int parse_listen(const char *s, struct sockaddr_storage *ss, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return util_err(err, errlen, -EINVAL, "--listen '%s': expected ADDR:PORT, e.g. 127.0.0.1:8443", s);
    size_t hn = (size_t)(colon - s);
    if (s[0] == '[' && hn >= 2 && s[hn - 1] == ']')
        sv_copy(host, sizeof host, sv_make(s + 1, hn - 2));
    else
        sv_copy(host, sizeof host, sv_make(s, hn));
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return util_err(err, errlen, -EINVAL, "--listen '%s': bad port", s);
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
    } else {
        return util_err(err, errlen, -EINVAL, "--listen '%s': '%s' is not an IP address", s, host);
    }
    return 0;
}

int web_start(struct srv *s, const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return util_err(err, errlen, -ENOTSUP, "this libmicrohttpd has no TLS support (install Debian's libmicrohttpd12, built with GnuTLS)");
    struct sockaddr_storage ss;
    int rc = parse_listen(s->cfg.listen, &ss, err, errlen);
    if (rc < 0)
        return rc;
    g_srv = s;
    web_static_dir(s->cfg.console_dir);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_TLS | MHD_USE_ERROR_LOG |
                     MHD_USE_EPOLL;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    g_daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
                                MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->cfg.threads,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)4000,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                MHD_OPTION_HTTPS_MEM_CERT, cert_pem,
                                MHD_OPTION_HTTPS_MEM_KEY, key_pem,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                MHD_OPTION_END);
    if (!g_daemon)
        return util_err(err, errlen, -EADDRINUSE, "cannot listen on %s (address in use, or the TLS certificate/key is unusable)", s->cfg.listen);
    return 0;
}

int web_port(void)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(g_daemon, MHD_DAEMON_INFO_BIND_PORT);
    return i ? (int)i->port : -1;
}

void web_stop(void)
{
    if (g_daemon)
        MHD_stop_daemon(g_daemon);
    g_daemon = NULL;
}
