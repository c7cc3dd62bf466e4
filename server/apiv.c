/* apiv: see apiv.h. */
#include "apiv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define APIV_LINE_MAX (64 * 1024)

static int fail(struct apiv_error *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct apiv_error *e, const char *field, const char *fmt, ...)
{
    if (e) {
        snprintf(e->field, sizeof e->field, "%s", field ? field : "");
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

int apiv_object(const char *body, size_t len, json_t **out, struct apiv_error *e)
{
    *out = NULL;
    if (!body || len == 0)
        return fail(e, "", "the request needs a JSON object body");
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return fail(e, "", "malformed JSON at line %d column %d: %s", je.line, je.column, je.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return fail(e, "", "the body must be a JSON object");
    }
    *out = j;
    return 0;
}

static bool in_charset(unsigned char c, const char *cs)
{
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (strcmp(cs, "text") == 0)
        return c >= 0x20 && c != 0x7f;          /* printable + UTF-8 */
    if (strcmp(cs, "name") == 0)
        return alnum || c == '.' || c == '_' || c == '-';
    if (strcmp(cs, "machine") == 0)
        return alnum || c == '.' || c == '_' || c == '-' || c == ':';
    if (strcmp(cs, "id") == 0)
        return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9');
    return false;
}

int apiv_str(json_t *o, const char *key, bool required, size_t max, const char *charset,
             const char **out, struct apiv_error *e)
{
    *out = NULL;
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return fail(e, key, "`%s` is required", key);
        return 0;
    }
    if (!json_is_string(v))
        return fail(e, key, "`%s` must be a string", key);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 && (required || strcmp(charset, "text") != 0))
        return fail(e, key, "`%s` must not be empty", key);
    if (n > max)
        return fail(e, key, "`%s` is too long (%zu bytes, at most %zu)", key, n, max);
    if (strlen(s) != n)
        return fail(e, key, "`%s` must not contain NUL characters", key);
    for (size_t i = 0; i < n; i++)
        if (!in_charset((unsigned char)s[i], charset))
            return fail(e, key, "`%s` contains a character not allowed here (0x%02x)", key,
                        (unsigned char)s[i]);
    *out = s;
    return 0;
}

int apiv_int(json_t *o, const char *key, bool required, int64_t lo, int64_t hi, int64_t dflt,
             int64_t *out, struct apiv_error *e)
{
    *out = dflt;
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return fail(e, key, "`%s` is required", key);
        return 0;
    }
    if (!json_is_integer(v))
        return fail(e, key, "`%s` must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return fail(e, key, "`%s` must be between %lld and %lld", key, (long long)lo,
                    (long long)hi);
    *out = x;
    return 0;
}

static bool all_in(const char *s, size_t lo, size_t hi, const char *cs)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n < lo || n > hi)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!in_charset((unsigned char)s[i], cs))
            return false;
    return true;
}

bool apiv_is_id(const char *s) { return all_in(s, 32, 32, "id"); }
bool apiv_is_name(const char *s, size_t max) { return all_in(s, 1, max, "name"); }
bool apiv_is_machine_id(const char *s) { return all_in(s, 8, 128, "machine"); }

int apiv_enrol(json_t *o, struct apiv_enrol *out, struct apiv_error *e)
{
    memset(out, 0, sizeof *out);
    if (apiv_str(o, "token", true, 200, "text", &out->token, e) < 0 ||
        apiv_str(o, "machine_id", true, 128, "machine", &out->machine_id, e) < 0 ||
        apiv_str(o, "hostname", false, 255, "text", &out->hostname, e) < 0 ||
        apiv_str(o, "version", false, 64, "text", &out->version, e) < 0 ||
        apiv_str(o, "os", false, 128, "text", &out->os, e) < 0)
        return -EINVAL;
    if (strlen(out->machine_id) < 8)
        return fail(e, "machine_id", "`machine_id` must be 8 to 128 characters (e.g. a SHA-256 of /etc/machine-id)");
    return 0;
}

int apiv_token_create(json_t *o, struct apiv_token_create *out, struct apiv_error *e)
{
    memset(out, 0, sizeof *out);
    if (apiv_str(o, "name", false, 128, "text", &out->name, e) < 0 ||
        apiv_str(o, "group", false, 64, "name", &out->group, e) < 0 ||
        apiv_int(o, "expires_in", false, 0, 10LL * 365 * 86400, 0, &out->expires_in, e) < 0 ||
        apiv_int(o, "max_uses", false, 0, 1000000000, 0, &out->max_uses, e) < 0)
        return -EINVAL;
    if (!out->name)
        out->name = "";
    if (!out->group)
        out->group = "default";
    return 0;
}

int apiv_policy_doc(json_t *o, char **text, struct apiv_error *e)
{
    *text = NULL;
    json_t *d = json_object_get(o, "document");
    if (!d)
        return fail(e, "document", "`document` (the policy, a JSON object) is required");
    if (!json_is_object(d))
        return fail(e, "document", "`document` must be a JSON object in the agent policy format");
    *text = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    if (!*text)
        return fail(e, "document", "cannot serialize the document");
    return 0;
}
