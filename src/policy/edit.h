/* policy edit: small, careful edits of a policy FILE (not the compiled policy):
 * add decode exclusion hosts and filtering-disabled applications the way
 * `shoji compat apply` and `shoji conflicts promote` need, keeping every other
 * key, its value and the key order; then tell a running agent to reload.
 *
 * The file is written (2-space indent, UTF-8, a final newline, atomically,
 * keeping its mode) only when something was added, so running the same edit
 * twice leaves the file byte-identical the second time.
 *
 * Must never: drop or reorder what it did not add, write a half file, follow
 * a pid file to a process that is not a shoji, or abort on a bad file. */
#ifndef SHOJI_POLICY_EDIT_H
#define SHOJI_POLICY_EDIT_H

#include <stdbool.h>
#include <stddef.h>

#define POLICY_EDIT_FILE_MAX (16u * 1024 * 1024)
#define POLICY_EDIT_PID_FILE "shoji.pid"

struct policy_edit;

/* Opens a policy file for editing. A missing file is an empty policy (it is
 * created on save; policy_edit_created says so). A file that is not a JSON
 * object, has duplicate keys, or has `decode` / `decode.exclude_hosts` /
 * `disabled_apps` of the wrong type is refused with a message. */
int policy_edit_open(const char *path, struct policy_edit **out, char *err, size_t errlen);
void policy_edit_free(struct policy_edit *e);
bool policy_edit_created(const struct policy_edit *e);

/* decode.exclude_hosts: whether `pattern` is listed (ASCII case-insensitive,
 * exact text); add it at the end when it is not. Add returns 1 if added, 0 if
 * already there, negative on error. */
bool policy_edit_has_exclude_host(const struct policy_edit *e, const char *pattern);
int policy_edit_add_exclude_host(struct policy_edit *e, const char *pattern, char *err, size_t errlen);

/* disabled_apps, plain form "NTRTSCAN": whether listed (case-insensitive,
 * with or without .exe); add it when not. */
bool policy_edit_has_disabled_app(const struct policy_edit *e, const char *app);
int policy_edit_add_disabled_app(struct policy_edit *e, const char *app, char *err, size_t errlen);

/* disabled_apps, narrow form {"app": "skypeapp", "hosts": ["login.skype.com"]}:
 * whether the pair is covered (by that form or by the plain app); add it
 * (appending to the app's existing object when there is one). */
bool policy_edit_has_app_host(const struct policy_edit *e, const char *app, const char *host);
int policy_edit_add_app_host(struct policy_edit *e, const char *app, const char *host,
                             char *err, size_t errlen);

/* Whether anything was added since open. */
bool policy_edit_changed(const struct policy_edit *e);
/* Writes the file if changed. Returns 1 if written, 0 if nothing changed. */
int policy_edit_save(struct policy_edit *e, char *err, size_t errlen);

/* Asks a running agent to reload (SIGHUP) if STATE/shoji.pid names a live
 * process whose /proc/PID/comm is "shoji". Returns 1 if signalled (pid in
 * *pid), 0 if no agent runs (msg says why: no pid file, stale pid, ...),
 * negative on error (e.g. not permitted). */
int policy_edit_reload_agent(const char *state_dir, int *pid, char *msg, size_t msglen);

#endif
