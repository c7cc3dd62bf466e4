/* log/events: see events.h. */
#include "log/events.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/access.h"
#include "util/util.h"

struct events {
    pthread_mutex_t lock;
    uint64_t next;           /* seq of the next event */
    struct event ring[EVENTS_RING];
};

struct events *events_new(void)
{
    struct events *e = calloc(1, sizeof *e);
    if (e) {
        pthread_mutex_init(&e->lock, NULL);
        e->next = 1;
    }
    return e;
}

void events_free(struct events *e)
{
    if (!e)
        return;
    pthread_mutex_destroy(&e->lock);
    free(e);
}

struct event *events_claim(struct events *e)
{
    pthread_mutex_lock(&e->lock);
    struct event *ev = &e->ring[e->next % EVENTS_RING];
    ev->seq = e->next++;
    return ev;
}

void events_publish(struct events *e) { pthread_mutex_unlock(&e->lock); }

size_t events_read(struct events *e, uint64_t *cursor, struct event *out, size_t max,
                   uint64_t *missed)
{
    size_t n = 0;
    *missed = 0;
    pthread_mutex_lock(&e->lock);
    uint64_t oldest = e->next > EVENTS_RING ? e->next - EVENTS_RING : 1;
    if (*cursor == 0)
        *cursor = oldest;   /* a new watcher starts with what is still there */
    if (*cursor < oldest) {
        *missed = oldest - *cursor;
        *cursor = oldest;
    }
    while (*cursor < e->next && n < max)
        out[n++] = e->ring[(*cursor)++ % EVENTS_RING];
    pthread_mutex_unlock(&e->lock);
    return n;
}

static size_t put_str(char *out, size_t cap, size_t off, const char *key, const char *v)
{
    if (!v || !*v || off >= cap)
        return off;
    int n = snprintf(out + off, cap - off, ",\"%s\":\"", key);
    if (n < 0 || (size_t)n >= cap - off)
        return cap;
    off += (size_t)n;
    for (const unsigned char *p = (const unsigned char *)v; *p && off + 8 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[off++] = '\\';
            out[off++] = (char)*p;
        } else if (*p < 0x20) {
            off += (size_t)snprintf(out + off, cap - off, "\\u%04x", *p);
        } else {
            out[off++] = (char)*p;
        }
    }
    if (off + 1 >= cap)
        return cap;
    out[off++] = '"';
    return off;
}

size_t events_format_json(const struct event *ev, char *out, size_t cap)
{
    int n = snprintf(out, cap, "{\"seq\":%llu,\"time_ms\":%llu,\"conn\":%llu,\"kind\":\"%c\",\"pid\":%d,\"status\":%d",
                     (unsigned long long)ev->seq, (unsigned long long)ev->time_ms,
                     (unsigned long long)ev->conn, ev->kind, ev->pid, ev->status);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t off = (size_t)n;
    off = put_str(out, cap, off, "app", ev->app);
    off = put_str(out, cap, off, "app_path", ev->app_path);
    off = put_str(out, cap, off, "client", ev->client);
    off = put_str(out, cap, off, "dst", ev->dst);
    off = put_str(out, cap, off, "sni", ev->sni);
    off = put_str(out, cap, off, "cert", ev->cert);
    off = put_str(out, cap, off, "url", ev->url);
    off = put_str(out, cap, off, "verdict", ev->verdict);
    off = put_str(out, cap, off, "rule", ev->rule);
    if (off + 2 >= cap)
        return 0;
    out[off++] = '}';
    out[off] = '\0';
    return off;
}
