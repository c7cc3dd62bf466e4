/* log/access: see access.h. JSON is written by hand (not jansson) because it
 * is on the hot path of every request and the record is flat: fields are
 * appended to a stack buffer by small decimal and string writers (no
 * vsnprintf per field), strings escaped per RFC 8259. */
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

#include "util/fbuf.h"
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

/* This thread's pending lines (access_log_batch_begin). The buffer is
 * allocated at the first batched line, not in the thread-local block: glibc
 * zeroes every thread's static TLS when it creates the thread, so 32 KiB
 * there made every thread of the process (workers, the certificate writer,
 * libuv's pool) 32 KiB bigger from birth (docs/PERFORMANCE.md "Memory"). */
#define BATCH_BUF_SIZE 32768
static _Thread_local struct {
    bool on;
    struct access_log *log;
    size_t len;
    unsigned lines;
    char *buf;          /* BATCH_BUF_SIZE bytes, or NULL until the first line */
} tl_batch;

static void write_lines(struct access_log *l, const char *p, size_t n, unsigned lines);
static void batch_add(struct access_log *l, const char *line, size_t n);

#define ACCESS_LINE_MAX 8192   /* one line, newline included */

static void putf(struct fbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct fbuf *o, const char *fmt, ...)
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

/* Microseconds as milliseconds with three decimals ("%.3f" of us/1000). */
static void put_ms3(struct fbuf *o, uint64_t us)
{
    fbuf_u64(o, us / 1000);
    fbuf_put(o, ".", 1);
    fbuf_u64_pad(o, us % 1000, 3);
}

static void json_str(struct fbuf *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    fbuf_put(o, "\"", 1);
    /* 1 for the bytes JSON needs escaped (and the terminating NUL). */
    static const unsigned char special[256] = {
        [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x7f] = 1,
    };
    const unsigned char *p = (const unsigned char *)s, *run = p;
    for (;; p++) {
        if (!special[*p])
            continue;
        if (!*p)
            break;
        fbuf_put(o, (const char *)run, (size_t)(p - run));
        if (*p == '"' || *p == '\\') {
            char e[2] = { '\\', (char)*p };
            fbuf_put(o, e, 2);
        } else {
            char e[6] = { '\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15] };
            fbuf_put(o, e, 6);
        }
        run = p + 1;
    }
    fbuf_put(o, (const char *)run, (size_t)(p - run));
    fbuf_put(o, "\"", 1);
}

/* ,"key": — keys are our own constants, never escaped. */
static void json_key(struct fbuf *o, const char *k)
{
    fbuf_put(o, ",\"", 2);
    fbuf_puts(o, k);
    fbuf_put(o, "\":", 2);
}

static void json_kv(struct fbuf *o, const char *k, const char *v)
{
    if (!v)
        return;
    json_key(o, k);
    json_str(o, v);
}

/* "YYYY-MM-DDTHH:MM:SS." of a second, cached per thread (one gmtime_r a
 * second instead of one per line). */
static void put_iso_time(struct fbuf *o, uint64_t ms)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32];
    static _Thread_local size_t cached_len;
    time_t s = (time_t)(ms / 1000);
    if (s != cached_sec) {
        struct tm tm;
        gmtime_r(&s, &tm);
        int n = snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (n <= 0 || (size_t)n >= sizeof cached) {
            o->overflow = true;
            return;
        }
        cached_len = (size_t)n;
        cached_sec = s;
    }
    fbuf_put(o, cached, cached_len);
    fbuf_u64_pad(o, ms % 1000, 3);
    fbuf_put(o, "Z", 1);
}

static void format_json(struct fbuf *o, const struct access_record *r)
{
    fbuf_put(o, "{\"time\":\"", 9);
    put_iso_time(o, r->time_ms);
    fbuf_put(o, "\",\"request_id\":", 15);
    fbuf_u64(o, r->request_id);
    json_kv(o, "event", r->event);
    json_kv(o, "client", r->client ? r->client : "");
    json_kv(o, "method", r->method ? r->method : "");
    json_kv(o, "url", r->url ? r->url : "");
    json_kv(o, "host", r->host);
    json_key(o, "status");
    fbuf_i64(o, r->status);
    json_key(o, "bytes_in");
    fbuf_u64(o, r->bytes_in);
    json_key(o, "bytes_out");
    fbuf_u64(o, r->bytes_out);
    json_key(o, "duration_ms");
    put_ms3(o, r->duration_us);
    json_kv(o, "mode", r->mode);
    if (r->upstream_verify)
        json_kv(o, "upstream_verify", r->upstream_verify);
    else
        fbuf_puts(o, ",\"upstream_verify\":null");   /* no TLS towards the origin checked here */
    json_kv(o, "sni", r->sni);
    json_kv(o, "dst", r->dst);
    json_kv(o, "app", r->app);
    json_kv(o, "app_path", r->app_path);
    if (r->pid > 0) {
        json_key(o, "pid");
        fbuf_i64(o, r->pid);
    }
    if (r->uid >= 0) {
        json_key(o, "uid");
        fbuf_i64(o, r->uid);
    }
    if (r->categories) {
        /* "a,b" -> ["a","b"] */
        fbuf_puts(o, ",\"categories\":[");
        const char *p = r->categories;
        bool first = true;
        while (*p) {
            const char *c = strchr(p, ',');
            size_t n = c ? (size_t)(c - p) : strlen(p);
            char name[128];
            sv_copy(name, sizeof name, sv_make(p, n));
            if (!first)
                fbuf_put(o, ",", 1);
            json_str(o, name);
            first = false;
            p += n + (c ? 1 : 0);
        }
        fbuf_put(o, "]", 1);
    }
    json_kv(o, "action", r->action);
    json_kv(o, "rule", r->rule);
    json_kv(o, "error", r->error);
    json_kv(o, "fix", r->fix);
    fbuf_put(o, "}", 1);
}

/* Squid native: time elapsed remotehost code/status bytes method URL rfc931
 * peerstatus/peerhost type */
static void format_squid(struct fbuf *o, const struct access_record *r)
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
    struct fbuf o = fbuf_make(buf, cap);
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
    char line[ACCESS_LINE_MAX];
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
    if (tl_batch.on) {
        batch_add(l, line, n);
        return;
    }
    write_lines(l, line, n, 1);
}

static void write_lines(struct access_log *l, const char *p, size_t n, unsigned lines)
{
    ssize_t w = write(atomic_load(&l->fd), p, n);
    if (w != (ssize_t)n)
        atomic_fetch_add(&l->dropped, lines);
    else
        atomic_fetch_add(&l->written, lines);
}

static void batch_add(struct access_log *l, const char *line, size_t n)
{
    if (!tl_batch.buf && !(tl_batch.buf = malloc(BATCH_BUF_SIZE))) {
        write_lines(l, line, n, 1);       /* no memory: unbatched, still written */
        return;
    }
    if (tl_batch.log != l || tl_batch.len + n > BATCH_BUF_SIZE)
        access_log_flush();
    _Static_assert(BATCH_BUF_SIZE >= 2 * ACCESS_LINE_MAX, "a batch holds whole lines");
    tl_batch.log = l;
    memcpy(tl_batch.buf + tl_batch.len, line, n);
    tl_batch.len += n;
    tl_batch.lines++;
}

void access_log_batch_begin(void) { tl_batch.on = true; }

unsigned access_log_pending(void) { return tl_batch.lines; }

void access_log_flush(void)
{
    if (tl_batch.len && tl_batch.log)
        write_lines(tl_batch.log, tl_batch.buf, tl_batch.len, tl_batch.lines);
    tl_batch.len = 0;
    tl_batch.lines = 0;
}

void access_log_batch_end(void)
{
    access_log_flush();
    tl_batch.on = false;
    tl_batch.log = NULL;
    free(tl_batch.buf);
    tl_batch.buf = NULL;
}
