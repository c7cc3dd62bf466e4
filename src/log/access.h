/* log/access: the access log — one line per request and per tunnel, as JSON
 * (default) or in Squid's native access.log format for existing analysers.
 * Thread-safe: each line is one write(2) to an O_APPEND file.
 * Must never: block the proxy on a full disk (a failed write is counted and
 * dropped, never retried in a loop), or write a partial JSON line. */
#ifndef SHOJI_LOG_ACCESS_H
#define SHOJI_LOG_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum access_format { ACCESS_JSON = 0, ACCESS_SQUID };

struct access_record {
    uint64_t time_ms;          /* wall clock at the start of the request */
    const char *client;        /* "127.0.0.1:50412" */
    const char *method;        /* "GET", "CONNECT" */
    const char *url;           /* full URL, or host:port for tunnels */
    const char *host;
    int status;                /* 0 when the connection failed before a status */
    uint64_t bytes_in;         /* from the client (request body / tunnel bytes) */
    uint64_t bytes_out;        /* to the client */
    uint64_t duration_us;
    const char *mode;          /* "http", "decode", "tunnel", "bypass", "block" */
    const char *upstream_verify; /* "ok", a failure reason, or NULL (not TLS) */
    const char *sni;
    const char *dst;           /* upstream address "ip:port" when connected */
    /* The application that owns the client socket, when known. */
    const char *app;
    const char *app_path;
    int pid;                   /* 0 unknown */
    int uid;                   /* -1 unknown */
    /* The decision. */
    const char *categories;    /* "gambling,games" or NULL */
    const char *action;        /* "allow", "block", "tunnel", ... */
    const char *rule;
    const char *error;         /* what went wrong, when something did */
    const char *event;         /* NULL for requests; "conflict" for a learned exclusion */
    const char *fix;           /* for events: the permanent rule that would fix it */
    uint64_t request_id;
};

struct access_log;

/* `path` "-" is stdout; NULL: no file (lines go to the sink only). */
int access_log_open(const char *path, enum access_format fmt, struct access_log **out,
                    char *err, size_t errlen);
void access_log_close(struct access_log *l);
/* Reopens the file (log rotation on SIGHUP). */
int access_log_reopen(struct access_log *l, char *err, size_t errlen);
void access_log_write(struct access_log *l, const struct access_record *r);
/* A sink receives every record with its JSON line (no newline), whatever the
 * file's format, on the writing (worker) thread: it must return at once
 * (mgmt_log_line queues the line). Set before the workers start. */
typedef void access_sink_fn(void *ctx, const struct access_record *r, const char *json, size_t len);
void access_log_set_sink(struct access_log *l, access_sink_fn *sink, void *ctx);
/* Batching, for event-loop threads: between access_log_batch_begin() and
 * access_log_batch_end(), this thread's lines are kept in a thread-local
 * buffer (bounded; written out when full) and written with one write(2) by
 * access_log_flush(), which the worker calls a short time after the first
 * pending line (see proxy/worker.c). Other threads write each line at once. */
void access_log_batch_begin(void);
unsigned access_log_pending(void);   /* this thread's lines not written yet */
void access_log_flush(void);
void access_log_batch_end(void);   /* flushes */
/* Lines that could not be written (full disk, I/O error). */
uint64_t access_log_dropped(const struct access_log *l);
uint64_t access_log_written(const struct access_log *l);
/* Formats one record into `out` (capacity cap) without the newline; returns
 * the length, or 0 if it does not fit. Exposed for tests. */
size_t access_log_format(enum access_format fmt, const struct access_record *r, char *out,
                         size_t cap);

#endif
