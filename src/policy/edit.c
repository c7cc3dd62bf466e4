/* policy edit: see edit.h. jansson keeps object keys in insertion order, so a
 * load / append / dump round trip keeps the admin's order. */
#include "policy/edit.h"

#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

struct policy_edit {
    char path[4096];
    json_t *root;
    bool created;
    bool changed;
    int mode;
};

static bool app_eq(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 4 && !strcasecmp(a + na - 4, ".exe"))
        na -= 4;
    if (nb > 4 && !strcasecmp(b + nb - 4, ".exe"))
        nb -= 4;
    return na == nb && !strncasecmp(a, b, na);
}

/* Checks the shapes this module edits; the rest is the loader's business. */
static int check_shapes(const struct policy_edit *e, char *err, size_t errlen)
{
    json_t *dec = json_object_get(e->root, "decode");
    if (dec && !json_is_object(dec))
        return util_err(err, errlen, -EINVAL, "%s: `decode` is not an object; fix the file by hand",
                        e->path);
    json_t *ex = dec ? json_object_get(dec, "exclude_hosts") : NULL;
    if (ex && !json_is_array(ex))
        return util_err(err, errlen, -EINVAL,
                        "%s: `decode.exclude_hosts` is not an array; fix the file by hand", e->path);
    json_t *da = json_object_get(e->root, "disabled_apps");
    if (da && !json_is_array(da))
        return util_err(err, errlen, -EINVAL,
                        "%s: `disabled_apps` is not an array; fix the file by hand", e->path);
    return 0;
}

int policy_edit_open(const char *path, struct policy_edit **out, char *err, size_t errlen)
{
    *out = NULL;
    struct policy_edit *e = calloc(1, sizeof *e);
    if (!e)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    if (!util_strlcpy(e->path, path, sizeof e->path)) {
        free(e);
        return util_err(err, errlen, -ENAMETOOLONG, "policy path too long");
    }
    e->mode = 0644;
    char *text = NULL;
    size_t len = 0;
    int rc = util_read_file(path, POLICY_EDIT_FILE_MAX, &text, &len, err, errlen);
    if (rc == -ENOENT) {
        e->root = json_object();
        e->created = true;
        if (!e->root) {
            free(e);
            return util_err(err, errlen, -ENOMEM, "out of memory");
        }
        *out = e;
        return 0;
    }
    if (rc < 0) {
        free(e);
        return rc;
    }
    struct stat st;
    if (stat(path, &st) == 0)
        e->mode = (int)(st.st_mode & 07777);
    json_error_t je;
    e->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!e->root || !json_is_object(e->root)) {
        rc = e->root ? util_err(err, errlen, -EINVAL, "%s: a policy is a JSON object", path)
                     : util_err(err, errlen, -EINVAL, "%s:%d:%d: %s", path, je.line, je.column,
                                je.text);
        policy_edit_free(e);
        return rc;
    }
    rc = check_shapes(e, err, errlen);
    if (rc < 0) {
        policy_edit_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void policy_edit_free(struct policy_edit *e)
{
    if (!e)
        return;
    json_decref(e->root);
    free(e);
}

bool policy_edit_created(const struct policy_edit *e) { return e && e->created; }
bool policy_edit_changed(const struct policy_edit *e) { return e && e->changed; }

/* Returns the array at root[key] (or root.decode[key]), creating it (and
 * `decode`) at the end when absent. */
static json_t *get_array(struct policy_edit *e, bool in_decode, const char *key,
                         char *err, size_t errlen)
{
    json_t *parent = e->root;
    if (in_decode) {
        parent = json_object_get(e->root, "decode");
        if (!parent) {
            parent = json_object();
            if (!parent || json_object_set_new(e->root, "decode", parent) < 0) {
                util_err(err, errlen, -ENOMEM, "out of memory");
                return NULL;
            }
        }
    }
    json_t *arr = json_object_get(parent, key);
    if (!arr) {
        arr = json_array();
        if (!arr || json_object_set_new(parent, key, arr) < 0) {
            util_err(err, errlen, -ENOMEM, "out of memory");
            return NULL;
        }
    }
    return arr;
}

bool policy_edit_has_exclude_host(const struct policy_edit *e, const char *pattern)
{
    json_t *ex = json_object_get(json_object_get(e->root, "decode"), "exclude_hosts");
    size_t i;
    json_t *v;
    json_array_foreach(ex, i, v)
        if (json_is_string(v) && !strcasecmp(json_string_value(v), pattern))
            return true;
    return false;
}

static int append_string(json_t *arr, const char *s, char *err, size_t errlen)
{
    if (json_array_append_new(arr, json_string(s)) < 0)
        return util_err(err, errlen, -EINVAL, "cannot add \"%s\" (not UTF-8, or out of memory)", s);
    return 0;
}

int policy_edit_add_exclude_host(struct policy_edit *e, const char *pattern, char *err, size_t errlen)
{
    if (!pattern || !*pattern)
        return util_err(err, errlen, -EINVAL, "empty host pattern");
    if (policy_edit_has_exclude_host(e, pattern))
        return 0;
    json_t *arr = get_array(e, true, "exclude_hosts", err, errlen);
    if (!arr)
        return -ENOMEM;
    int rc = append_string(arr, pattern, err, errlen);
    if (rc < 0)
        return rc;
    e->changed = true;
    return 1;
}

bool policy_edit_has_disabled_app(const struct policy_edit *e, const char *app)
{
    json_t *da = json_object_get(e->root, "disabled_apps");
    size_t i;
    json_t *v;
    json_array_foreach(da, i, v)
        if (json_is_string(v) && app_eq(json_string_value(v), app))
            return true;
    return false;
}

int policy_edit_add_disabled_app(struct policy_edit *e, const char *app, char *err, size_t errlen)
{
    if (!app || !*app)
        return util_err(err, errlen, -EINVAL, "empty application name");
    if (policy_edit_has_disabled_app(e, app))
        return 0;
    json_t *arr = get_array(e, false, "disabled_apps", err, errlen);
    if (!arr)
        return -ENOMEM;
    int rc = append_string(arr, app, err, errlen);
    if (rc < 0)
        return rc;
    e->changed = true;
    return 1;
}

/* The {"app": A, "hosts": [...]} object for `app`, or NULL. */
static json_t *app_object(const struct policy_edit *e, const char *app)
{
    json_t *da = json_object_get(e->root, "disabled_apps");
    size_t i;
    json_t *v;
    json_array_foreach(da, i, v) {
        json_t *a = json_object_get(v, "app");
        if (json_is_object(v) && json_is_string(a) && app_eq(json_string_value(a), app))
            return v;
    }
    return NULL;
}

bool policy_edit_has_app_host(const struct policy_edit *e, const char *app, const char *host)
{
    if (policy_edit_has_disabled_app(e, app))
        return true;
    json_t *o = app_object(e, app);
    json_t *hosts = o ? json_object_get(o, "hosts") : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(hosts, i, v)
        if (json_is_string(v) && !strcasecmp(json_string_value(v), host))
            return true;
    return false;
}

int policy_edit_add_app_host(struct policy_edit *e, const char *app, const char *host,
                             char *err, size_t errlen)
{
    if (!app || !*app || !host || !*host)
        return util_err(err, errlen, -EINVAL, "empty application or host");
    if (policy_edit_has_app_host(e, app, host))
        return 0;
    json_t *o = app_object(e, app);
    if (o) {
        json_t *hosts = json_object_get(o, "hosts");
        if (!hosts) {
            hosts = json_array();
            if (!hosts || json_object_set_new(o, "hosts", hosts) < 0)
                return util_err(err, errlen, -ENOMEM, "out of memory");
        }
        if (!json_is_array(hosts))
            return util_err(err, errlen, -EINVAL, "%s: `hosts` of disabled app \"%s\" is not an "
                            "array; fix the file by hand", e->path, app);
        int rc = append_string(hosts, host, err, errlen);
        if (rc < 0)
            return rc;
        e->changed = true;
        return 1;
    }
    json_t *arr = get_array(e, false, "disabled_apps", err, errlen);
    if (!arr)
        return -ENOMEM;
    json_t *obj = json_pack("{s:s, s:[s]}", "app", app, "hosts", host);
    if (!obj || json_array_append_new(arr, obj) < 0)
        return util_err(err, errlen, -EINVAL, "cannot add {\"app\": \"%s\", ...}", app);
    e->changed = true;
    return 1;
}

int policy_edit_save(struct policy_edit *e, char *err, size_t errlen)
{
    if (!e->changed)
        return 0;
    char *text = json_dumps(e->root, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    if (!text)
        return util_err(err, errlen, -ENOMEM, "out of memory writing %s", e->path);
    size_t len = strlen(text);
    char *t2 = realloc(text, len + 2);
    if (!t2) {
        free(text);
        return util_err(err, errlen, -ENOMEM, "out of memory writing %s", e->path);
    }
    t2[len] = '\n';
    t2[len + 1] = '\0';
    int rc = util_write_file_atomic(e->path, t2, len + 1, e->mode, err, errlen);
    free(t2);
    if (rc < 0)
        return rc;
    e->changed = false;
    e->created = false;
    return 1;
}

int policy_edit_reload_agent(const char *state_dir, int *pid, char *msg, size_t msglen)
{
    char path[4096], *text = NULL;
    *pid = 0;
    snprintf(path, sizeof path, "%s/%s", state_dir, POLICY_EDIT_PID_FILE);
    int rc = util_read_file(path, 64, &text, NULL, msg, msglen);
    if (rc == -ENOENT) {
        util_err(msg, msglen, 0, "no agent running (no %s)", path);
        return 0;
    }
    if (rc < 0)
        return 0;   /* msg says why */
    char *end;
    long v = strtol(text, &end, 10);
    bool ok = end != text && (*end == '\0' || *end == '\n') && v > 0 && v < 1L << 30;
    free(text);
    if (!ok) {
        util_err(msg, msglen, 0, "no agent reloaded: %s does not hold a pid", path);
        return 0;
    }
    char comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", v);
    FILE *f = fopen(path, "re");
    if (f) {
        if (fgets(comm, sizeof comm, f))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
    }
    if (strcmp(comm, "shoji") != 0) {
        util_err(msg, msglen, 0, "no agent running (stale pid file: process %ld %s)", v,
                 comm[0] ? "is not shoji" : "is gone");
        return 0;
    }
    if (kill((pid_t)v, SIGHUP) < 0)
        return util_err(msg, msglen, -errno, "cannot signal the agent (pid %ld): %s", v,
                        strerror(errno));
    *pid = (int)v;
    util_err(msg, msglen, 0, "reloaded the running agent (pid %ld)", v);
    return 1;
}
