/* log/access: see access.h. JSON is written by hand (not jansson) because it
 * is on the hot path of every request and the record is flat: one snprintf
 * chain into a stack buffer, with strings escaped per RFC 8259. */
#include "log/access.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

struct access_log {
    char path[4096];
    enum access_format fmt;
    atomic_int fd;
    atomic_uint_fast64_t dropped;
    atomic_uint_fast64_t written;
    pthread_mutex_t reopen_lock;
    access_sink_fn *sink;      /* set before the workers start, never changed */
    void *sink_ctx;
};

int access_log_open(const char *path, enum access_format fmt, struct access_log **out,
                    char *err, size_t errlen)
{
    struct access_log *l = calloc(1, sizeof *l);
    if (!l)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    util_strlcpy(l->path, path ? path : "", sizeof l->path);
    l->fmt = fmt;
    pthread_mutex_init(&l->reopen_lock, NULL);
    if (!path) {
        atomic_store(&l->fd, -1);   /* no file: lines go to the sink only */
    } else if (strcmp(path, "-") == 0) {
        atomic_store(&l->fd, STDOUT_FILENO);
    } else {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            int e = errno;
            free(l);
            return util_err(err, errlen, -e, "cannot open access log %s: %s", path, strerror(e));
        }
        atomic_store(&l->fd, fd);
    }
    *out = l;
    return 0;
}

void access_log_close(struct access_log *l)
{
    if (!l)
        return;
    int fd = atomic_load(&l->fd);
    if (fd > STDERR_FILENO)
        close(fd);
    pthread_mutex_destroy(&l->reopen_lock);
    free(l);
}

void access_log_set_sink(struct access_log *l, access_sink_fn *sink, void *ctx)
{
    l->sink = sink;
    l->sink_ctx = ctx;
}

int access_log_reopen(struct access_log *l, char *err, size_t errlen)
{
    if (l->path[0] == '\0' || strcmp(l->path, "-") == 0)
        return 0;
    int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return util_err(err, errlen, -errno, "cannot reopen access log %s: %s", l->path,
                        strerror(errno));
    pthread_mutex_lock(&l->reopen_lock);
    int old = atomic_exchange(&l->fd, fd);
    pthread_mutex_unlock(&l->reopen_lock);
    /* A writer may still hold `old` for one write: closing it then makes that
     * one write fail with EBADF and be counted as dropped. Acceptable for a
     * rotation; never a crash. */
    if (old > STDERR_FILENO)
        close(old);
    return 0;
}

uint64_t access_log_dropped(const struct access_log *l) { return atomic_load(&l->dropped); }
uint64_t access_log_written(const struct access_log *l) { return atomic_load(&l->written); }

struct out {
    char *p;
    size_t len, cap;
    bool overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->overflow || n > o->cap - o->len) {
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->overflow = true;
    else
        o->len += (size_t)n;
}

static void json_str(struct out *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    put(o, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = { '\\', (char)*p };
            put(o, e, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15] };
            put(o, e, 6);
        } else {
            put(o, (const char *)p, 1);
        }
    }
    put(o, "\"", 1);
}

static void json_kv(struct out *o, const char *k, const char *v)
{
    if (!v)
        return;
    putf(o, ",\"%s\":", k);
    json_str(o, v);
}

static void iso_time(uint64_t ms, char *buf, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

static void format_json(struct out *o, const struct access_record *r)
{
    char ts[64];
    iso_time(r->time_ms, ts, sizeof ts);
    putf(o, "{\"time\":\"%s\",\"request_id\":%llu", ts, (unsigned long long)r->request_id);
    json_kv(o, "event", r->event);
    json_kv(o, "client", r->client ? r->client : "");
    json_kv(o, "method", r->method ? r->method : "");
    json_kv(o, "url", r->url ? r->url : "");
    json_kv(o, "host", r->host);
    putf(o, ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f", r->status,
         (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
         (double)r->duration_us / 1000.0);
    json_kv(o, "mode", r->mode);
    if (r->upstream_verify)
        json_kv(o, "upstream_verify", r->upstream_verify);
    else
        puts_(o, ",\"upstream_verify\":null");   /* no TLS towards the origin checked here */
    json_kv(o, "sni", r->sni);
    json_kv(o, "dst", r->dst);
    json_kv(o, "app", r->app);
    json_kv(o, "app_path", r->app_path);
    if (r->pid > 0)
        putf(o, ",\"pid\":%d", r->pid);
    if (r->uid >= 0)
        putf(o, ",\"uid\":%d", r->uid);
    if (r->categories) {
        /* "a,b" -> ["a","b"] */
        puts_(o, ",\"categories\":[");
        const char *p = r->categories;
        bool first = true;
        while (*p) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            char name[128];
            sv_copy(name, sizeof name, sv_make(p, n));
            if (!first)
                put(o, ",", 1);
            json_str(o, name);
            first = false;
            p += n + (c ? 1 : 0);
        }
        put(o, "]", 1);
    }
    json_kv(o, "action", r->action);
    json_kv(o, "rule", r->rule);
    json_kv(o, "error", r->error);
    json_kv(o, "fix", r->fix);
    put(o, "}", 1);
}

/* Squid native: time elapsed remotehost code/status bytes method URL rfc931
 * peerstatus/peerhost type */
static void format_squid(struct out *o, const struct access_record *r)
{
    const char *code = "TCP_MISS";
    if (r->action && strcmp(r->action, "block") == 0)
        code = "TCP_DENIED";
    else if (r->mode && (strcmp(r->mode, "tunnel") == 0 || strcmp(r->mode, "bypass") == 0))
        code = "TCP_TUNNEL";
    char client[64];
    util_strlcpy(client, r->client ? r->client : "-", sizeof client);
    char *colon = strrchr(client, ':');
    if (colon && strchr(client, '.'))
        *colon = '\0';
    const char *dst = r->dst ? r->dst : "-";
    putf(o, "%llu.%03u %6llu %s %s/%03d %llu %s %s %s %s/%s -",
         (unsigned long long)(r->time_ms / 1000), (unsigned)(r->time_ms % 1000),
         (unsigned long long)(r->duration_us / 1000), client, code, r->status,
         (unsigned long long)r->bytes_out, r->method ? r->method : "-", r->url ? r->url : "-",
         r->app ? r->app : "-", r->dst ? "HIER_DIRECT" : "HIER_NONE", dst);
}

size_t access_log_format(enum access_format fmt, const struct access_record *r, char *buf,
                         size_t cap)
{
    struct out o = { buf, 0, cap, false };
    if (fmt == ACCESS_SQUID)
        format_squid(&o, r);
    else
        format_json(&o, r);
    return o.overflow ? 0 : o.len;
}

void access_log_write(struct access_log *l, const struct access_record *r)
{
    if (!l)
        return;
    char line[8192];
    size_t n = access_log_format(l->fmt, r, line, sizeof line - 1);
    if (n == 0) {
        /* A record too long for the line bound: log it without the long
         * optional fields rather than dropping the fact it happened. */
        struct access_record s = *r;
        s.url = "(url too long)";
        s.rule = s.error = s.app_path = s.categories = NULL;
        n = access_log_format(l->fmt, &s, line, sizeof line - 1);
    }
    if (n == 0) {
        atomic_fetch_add(&l->dropped, 1);
        return;
    }
    if (l->sink) {
        char js[8192];
        size_t jn = l->fmt == ACCESS_JSON ? n : access_log_format(ACCESS_JSON, r, js, sizeof js);
        if (jn)
            l->sink(l->sink_ctx, r, l->fmt == ACCESS_JSON ? line : js, jn);
    }
    if (atomic_load(&l->fd) < 0)
        return;
    line[n++] = '\n';
    ssize_t w = write(atomic_load(&l->fd), line, n);
    if (w != (ssize_t)n)
        atomic_fetch_add(&l->dropped, 1);
    else
        atomic_fetch_add(&l->written, 1);
}
