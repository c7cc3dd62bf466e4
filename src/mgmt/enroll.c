/* mgmt/enroll: the enrolment state (STATE/mgmt.json, mode 0600), the
 * machine identity, `shoji enroll` (POST /api/v1/enrol) and `shoji
 * unenroll` (DELETE /api/v1/agent, retried until the server confirms). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "mgmt/mgmt_int.h"
#include "util/util.h"

static void state_path(const char *dir, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

void mgmt_policy_path(const char *state_dir, char *out, size_t cap)
{
    state_path(state_dir, MGMT_POLICY_FILE, out, cap);
}

bool mgmt_enrolled(const char *state_dir)
{
    char p[4200];
    state_path(state_dir, MGMT_STATE_FILE, p, sizeof p);
    return access(p, F_OK) == 0;
}

static int get_str(json_t *o, const char *k, char *out, size_t cap, bool required, const char *path,
                   char *err, size_t errlen)
{
    const char *v = json_string_value(json_object_get(o, k));
    if (!v && !required) {
        out[0] = '\0';
        return 0;
    }
    if (!v || !util_strlcpy(out, v, cap))
        return util_err(err, errlen, -EINVAL, "%s: `%s` is missing or too long (enroll again)", path, k);
    return 0;
}

int mgmt_state_load(const char *state_dir, struct mgmt_enrolment *e, char *err, size_t errlen)
{
    char path[4200];
    state_path(state_dir, MGMT_STATE_FILE, path, sizeof path);
    memset(e, 0, sizeof *e);
    if (access(path, F_OK) != 0)
        return util_err(err, errlen, -ENOENT, "this agent is not enrolled (no %s; run `shoji enroll`)", path);
    json_error_t je;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return util_err(err, errlen, -EINVAL, "%s: %s", path, je.text);
    }
    int rc = get_str(o, "server", e->server, sizeof e->server, true, path, err, errlen);
    if (rc == 0)
        rc = get_str(o, "fingerprint", e->fingerprint, sizeof e->fingerprint, true, path, err, errlen);
    if (rc == 0)
        rc = get_str(o, "agent_id", e->agent_id, sizeof e->agent_id, true, path, err, errlen);
    if (rc == 0)
        rc = get_str(o, "credential", e->credential, sizeof e->credential, true, path, err, errlen);
    if (rc == 0)
        rc = get_str(o, "group", e->group, sizeof e->group, false, path, err, errlen);
    if (rc == 0)
        rc = get_str(o, "machine_id", e->machine_id, sizeof e->machine_id, false, path, err, errlen);
    json_decref(o);
    return rc;
}

int mgmt_state_save(const char *state_dir, const struct mgmt_enrolment *e, char *err, size_t errlen)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "server", e->server, "fingerprint", e->fingerprint,
                          "agent_id", e->agent_id, "credential", e->credential, "group", e->group,
                          "machine_id", e->machine_id);
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (!text)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    char path[4200];
    state_path(state_dir, MGMT_STATE_FILE, path, sizeof path);
    int rc = util_write_file_atomic(path, text, strlen(text), 0600, err, errlen);
    free(text);
    return rc;
}

int mgmt_machine_id(const char *path, char out[65], char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (!path)
        path = "/etc/machine-id";
    int rc = util_read_file(path, 4096, &text, &len, err, errlen);
    if (rc < 0)
        return rc;
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' ' || text[len - 1] == '\r'))
        len--;
    if (len == 0) {
        free(text);
        return util_err(err, errlen, -EINVAL, "%s is empty: the machine has no identity "
                        "(run systemd-machine-id-setup)", path);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int ok = EVP_Digest(text, len, md, &n, EVP_sha256(), NULL);
    free(text);
    if (!ok || n != 32)
        return util_err(err, errlen, -EIO, "SHA-256 failed");
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static void os_name(char *out, size_t cap)
{
    char *text = NULL;
    size_t len = 0;
    snprintf(out, cap, "Linux");
    if (util_read_file("/etc/os-release", 65536, &text, &len, NULL, 0) < 0)
        return;
    const char *p = strstr(text, "PRETTY_NAME=");
    if (p) {
        p += 12;
        if (*p == '"')
            p++;
        size_t n = strcspn(p, "\"\n");
        snprintf(out, cap, "%.*s", (int)UTIL_MIN(n, 120), p);
    }
    free(text);
}

static int enrol_answer(const struct mgmt_http_resp *r, struct mgmt_enrolment *e,
                        struct mgmt_enroll_result *res, char *err, size_t errlen)
{
    if (r->status != 200 && r->status != 201) {
        char why[400];
        mgmt_http_error_text(r, why, sizeof why);
        return util_err(err, errlen, r->status == 401 ? -EACCES : -EPROTO,
                        "the server refused the enrolment (HTTP %d): %s", r->status, why);
    }
    json_t *j = json_loadb(r->body.p, r->body.len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "agent_id"));
    const char *cred = json_string_value(json_object_get(j, "credential"));
    const char *group = json_string_value(json_object_get(j, "group"));
    int rc = 0;
    if (!id || !cred || !util_strlcpy(e->agent_id, id, sizeof e->agent_id) ||
        !util_strlcpy(e->credential, cred, sizeof e->credential))
        rc = util_err(err, errlen, -EPROTO, "the server's enrolment answer has no agent_id/credential");
    if (rc == 0) {
        util_strlcpy(e->group, group ? group : "", sizeof e->group);
        util_strlcpy(res->agent_id, e->agent_id, sizeof res->agent_id);
        util_strlcpy(res->group, e->group, sizeof res->group);
        res->reenrolled = json_is_true(json_object_get(j, "reenrolled"));
    }
    json_decref(j);
    return rc;
}

int mgmt_enroll(const struct mgmt_enroll_opts *o, struct mgmt_enroll_result *res, char *err, size_t errlen)
{
    struct mgmt_url u;
    struct mgmt_enrolment e;
    memset(&e, 0, sizeof e);
    memset(res, 0, sizeof *res);
    int rc = mgmt_url_parse(o->server, &u, err, errlen);
    if (rc < 0)
        return rc;
    char pin[100] = "";
    if (o->fingerprint && !mgmt_fp_normalize(o->fingerprint, pin))
        return util_err(err, errlen, -EINVAL, "--fingerprint '%s': expected 32 bytes of hex "
                        "(AB:CD:... as printed by shoji-server)", o->fingerprint);
    if ((rc = mgmt_machine_id(o->machine_id_file, e.machine_id, err, errlen)) < 0)
        return rc;
    if ((rc = util_mkdirs(o->state_dir, 0755, err, errlen)) < 0)
        return rc;
    char host[256] = "", osn[128];
    gethostname(host, sizeof host - 1);
    os_name(osn, sizeof osn);
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:s}", "token", o->token, "machine_id", e.machine_id,
                             "hostname", host, "version", SHOJI_VERSION, "os", osn);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    struct mgmt_http_req rq = { .method = "POST", .path = "/api/v1/enrol", .content_type = "application/json",
                                .body = text, .body_len = strlen(text) };
    struct mgmt_http_resp r;
    char seen[100] = "";
    rc = mgmt_https(&u, pin, &rq, &r, seen, o->timeout_ms, err, errlen);
    free(text);
    if (rc < 0)
        return rc;
    rc = enrol_answer(&r, &e, res, err, errlen);
    mgmt_http_resp_free(&r);
    if (rc < 0)
        return rc;
    util_strlcpy(e.server, o->server, sizeof e.server);
    size_t sl = strlen(e.server);
    while (sl > 8 && e.server[sl - 1] == '/')
        e.server[--sl] = '\0';
    util_strlcpy(e.fingerprint, seen, sizeof e.fingerprint);
    util_strlcpy(res->fingerprint, seen, sizeof res->fingerprint);
    res->tofu = !o->fingerprint;
    return mgmt_state_save(o->state_dir, &e, err, errlen);
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int mgmt_unenroll(const char *state_dir, unsigned timeout_ms, char *err, size_t errlen)
{
    struct mgmt_enrolment e;
    struct mgmt_url u;
    int rc = mgmt_state_load(state_dir, &e, err, errlen);
    if (rc == 0)
        rc = mgmt_url_parse(e.server, &u, err, errlen);
    if (rc < 0)
        return rc;
    uint64_t deadline = util_mono_us() / 1000 + timeout_ms;
    unsigned backoff = 250;
    for (;;) {
        uint64_t now = util_mono_us() / 1000;
        unsigned left = now < deadline ? (unsigned)(deadline - now) : 0;
        struct mgmt_http_req rq = { .method = "DELETE", .path = "/api/v1/agent", .credential = e.credential };
        struct mgmt_http_resp r;
        rc = mgmt_https(&u, e.fingerprint, &rq, &r, NULL, UTIL_MAX(UTIL_MIN(left, 10000u), 500u), err, errlen);
        if (rc == -EPERM)
            return rc;   /* a pin mismatch is not going to heal by retrying */
        if (rc == 0) {
            int st = r.status;
            if (st != 200 && st != 401) {
                char why[300];
                mgmt_http_error_text(&r, why, sizeof why);
                rc = util_err(err, errlen, -EPROTO, "the server answered HTTP %d: %s", st, why);
            }
            mgmt_http_resp_free(&r);
            if (st == 200 || st == 401)
                break;
        }
        now = util_mono_us() / 1000;
        if (now + backoff >= deadline) {
            char last[UTIL_ERRLEN];
            util_strlcpy(last, err ? err : "the server is unreachable", sizeof last);
            return util_err(err, errlen, rc, "%s; gave up after the --timeout: the agent is still "
                            "enrolled (run `shoji unenroll` again when the server is reachable)", last);
        }
        sleep_ms(backoff);
        backoff = UTIL_MIN(backoff * 2, 5000u);
    }
    char p[4200];
    state_path(state_dir, MGMT_STATE_FILE, p, sizeof p);
    if (unlink(p) < 0 && errno != ENOENT)
        return util_err(err, errlen, -errno, "the server deleted the agent, but %s could not be removed: %s",
                        p, strerror(errno));
    mgmt_policy_path(state_dir, p, sizeof p);
    unlink(p);
    state_path(state_dir, "policy.managed.etag", p, sizeof p);
    unlink(p);
    state_path(state_dir, MGMT_SPOOL_DIR, p, sizeof p);
    remove_tree(p);
    return 0;
}
