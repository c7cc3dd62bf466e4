/* apiv_lines: gzip bodies and the JSON lines of agent batches; see apiv.h. */
#include "apiv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static int fail(struct apiv_error *e, const char *field, const char *msg)
{
    if (e) {
        snprintf(e->field, sizeof e->field, "%s", field);
        snprintf(e->msg, sizeof e->msg, "%s", msg);
    }
    return -EINVAL;
}

int apiv_gunzip(const void *in, size_t inlen, size_t max, char **out, size_t *outlen,
                struct apiv_error *e)
{
    *out = NULL;
    *outlen = 0;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 32) != Z_OK)     /* +32: gzip or zlib header */
        return fail(e, "", "cannot initialise zlib");
    size_t cap = inlen * 4 + 1024 < max + 1 ? inlen * 4 + 1024 : max + 1;
    char *buf = malloc(cap);
    if (!buf) {
        inflateEnd(&z);
        return fail(e, "", "out of memory");
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)inlen;
    size_t len = 0;
    int zr = Z_OK, rc = 0;
    while (zr != Z_STREAM_END) {
        if (len == cap) {
            if (cap > max) {
                rc = -EFBIG;
                fail(e, "", "the decompressed body is larger than the limit");
                break;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = fail(e, "", "out of memory");
                break;
            }
            buf = nb;
            cap = ncap;
        }
        z.next_out = (Bytef *)buf + len;
        z.avail_out = (uInt)(cap - len);
        zr = inflate(&z, Z_NO_FLUSH);
        len = cap - z.avail_out;
        if (zr != Z_OK && zr != Z_STREAM_END) {
            rc = fail(e, "", zr == Z_BUF_ERROR ? "the gzip body is truncated"
                                               : "the body is not valid gzip data");
            break;
        }
    }
    if (rc == 0 && len > max)
        rc = -EFBIG, fail(e, "", "the decompressed body is larger than the limit");
    inflateEnd(&z);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    char *nb = realloc(buf, len + 1);
    if (!nb) {
        free(buf);
        return fail(e, "", "out of memory");
    }
    nb[len] = '\0';
    *out = nb;
    *outlen = len;
    return 0;
}

static int two(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int apiv_time_str(const char *s, int64_t *out)
{
    /* YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) */
    size_t n = strlen(s);
    if (n < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2) || (s[10] != 'T' && s[10] != ' ') || !digits(s + 11, 2) ||
        s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
        return -EINVAL;
    struct tm tm = { 0 };
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = two(s + 5) - 1;
    tm.tm_mday = two(s + 8);
    tm.tm_hour = two(s + 11);
    tm.tm_min = two(s + 14);
    tm.tm_sec = two(s + 17);
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -EINVAL;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        size_t k = 0;
        while (p[k] >= '0' && p[k] <= '9' && k < 9)
            k++;
        if (k == 0)
            return -EINVAL;
        p += k;
    }
    int64_t off = 0;
    if (*p == 'Z' && p[1] == '\0') {
        off = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && digits(p + 1, 2) && p[3] == ':' &&
               digits(p + 4, 2)) {
        off = (int64_t)(two(p + 1) * 3600 + two(p + 4) * 60) * (*p == '+' ? 1 : -1);
    } else {
        return -EINVAL;
    }
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    *out = (int64_t)t - off;
    return 0;
}

int apiv_time(json_t *v, int64_t *out)
{
    if (json_is_string(v))
        return apiv_time_str(json_string_value(v), out);
    if (json_is_integer(v) || json_is_real(v)) {
        double d = json_number_value(v);
        if (!isfinite(d) || d < 0 || d > 1e15)
            return -EINVAL;
        if (d > 1e11)
            d /= 1000.0;
        *out = (int64_t)d;
        return 0;
    }
    return -EINVAL;
}

/* Optional bounded string field; wrong types are refused, not guessed. */
static int opt_str(json_t *o, const char *key, size_t max, const char **out, struct apiv_error *e)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return fail(e, key, "must be a string");
    if (json_string_length(v) > max)
        return fail(e, key, "is too long");
    *out = json_string_value(v);
    return 0;
}

static int64_t opt_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v) && isfinite(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
        return (int64_t)json_real_value(v);
    return 0;
}

static int cats(json_t *o, struct apiv_log *l, struct apiv_error *e)
{
    json_t *v = json_object_get(o, "categories");
    l->categories[0] = l->category[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return fail(e, "categories", "must be an array of strings");
    size_t i, pos = 0;
    json_t *c;
    json_array_foreach(v, i, c) {
        if (!json_is_string(c) || json_string_length(c) == 0 || json_string_length(c) > 100 ||
            strchr(json_string_value(c), ','))
            return fail(e, "categories", "each category must be a non-empty string without commas");
        const char *s = json_string_value(c);
        int n = snprintf(l->categories + pos, sizeof l->categories - pos, "%s%s,",
                         pos ? "" : ",", s);
        if (n < 0 || (size_t)n >= sizeof l->categories - pos)
            return fail(e, "categories", "too many categories");
        pos += (size_t)n;
        if (i == 0)
            snprintf(l->category, sizeof l->category, "%s", s);
    }
    return 0;
}

static int line_object(const char *line, size_t len, json_t **root, struct apiv_error *e)
{
    json_error_t je;
    *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!*root)
        return fail(e, "", "malformed JSON line");
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return fail(e, "", "each line must be a JSON object");
    }
    return 0;
}

int apiv_log_line(const char *line, size_t len, struct apiv_log *l, struct apiv_error *e)
{
    memset(l, 0, sizeof *l);
    if (line_object(line, len, &l->root, e) < 0)
        return -EINVAL;
    json_t *o = l->root;
    int rc = 0;
    json_t *t = json_object_get(o, "time");
    if (!t || apiv_time(t, &l->ts) < 0)
        rc = fail(e, "time", "`time` is required: RFC 3339 UTC text or unix seconds");
    if (rc == 0 && (opt_str(o, "app", 256, &l->app, e) < 0 ||
                    opt_str(o, "method", 32, &l->method, e) < 0 ||
                    opt_str(o, "url", 8192, &l->url, e) < 0 ||
                    opt_str(o, "host", 512, &l->host, e) < 0 ||
                    opt_str(o, "action", 32, &l->action, e) < 0 ||
                    opt_str(o, "rule", 512, &l->rule, e) < 0 || cats(o, l, e) < 0))
        rc = -EINVAL;
    if (rc == 0 && !l->host && !l->url)
        rc = fail(e, "host", "a line needs `host` or `url`");
    if (rc < 0) {
        json_decref(l->root);
        l->root = NULL;
        return rc;
    }
    l->pid = opt_int(o, "pid");
    l->status = opt_int(o, "status");
    l->bytes = opt_int(o, "bytes_out") + opt_int(o, "bytes_in") + opt_int(o, "bytes");
    json_t *d = json_object_get(o, "duration_ms");
    l->duration_ms = json_is_number(d) && isfinite(json_number_value(d)) ? json_number_value(d) : 0;
    return 0;
}

int apiv_conflict_line(const char *line, size_t len, struct apiv_conflict *c,
                       struct apiv_error *e)
{
    memset(c, 0, sizeof *c);
    if (line_object(line, len, &c->root, e) < 0)
        return -EINVAL;
    json_t *o = c->root;
    int rc = 0;
    json_t *t = json_object_get(o, "time");
    if (!t || apiv_time(t, &c->ts) < 0)
        rc = fail(e, "time", "`time` is required: RFC 3339 UTC text or unix seconds");
    if (rc == 0 && (opt_str(o, "app", 256, &c->app, e) < 0 ||
                    opt_str(o, "host", 512, &c->host, e) < 0 ||
                    opt_str(o, "reason", 512, &c->reason, e) < 0 ||
                    opt_str(o, "suggestion", 1024, &c->suggestion, e) < 0))
        rc = -EINVAL;
    if (rc == 0 && (!c->host || !*c->host))
        rc = fail(e, "host", "a conflict event needs `host`");
    if (rc < 0) {
        json_decref(c->root);
        c->root = NULL;
    }
    return rc;
}
