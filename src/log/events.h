/* log/events: the live feed behind `shoji watch` — a bounded ring of
 * connection events (opened, decided, request, closed) that every worker
 * appends to, read by the agent's admin socket (STATE/admin.sock) and
 * streamed to watchers as JSON lines.
 * Must never: block a worker for more than one short mutex hold, grow
 * (the ring overwrites the oldest events), or let a slow watcher slow the
 * proxy (it skips what it missed and is told how many). */
#ifndef SHOJI_LOG_EVENTS_H
#define SHOJI_LOG_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#define EVENTS_RING 4096

enum event_kind { EV_OPEN = 'o', EV_VERDICT = 'v', EV_REQUEST = 'r', EV_CLOSE = 'c' };

struct event {
    uint64_t seq;            /* set by events_claim */
    uint64_t time_ms;
    uint64_t conn;           /* connection id */
    char kind;               /* enum event_kind */
    int pid;
    int status;
    char app[64];
    char app_path[160];
    char client[64];
    char dst[64];            /* origin ip:port (or the CONNECT target) */
    char sni[128];
    char cert[128];          /* the origin certificate's first name */
    char url[256];
    char verdict[16];        /* decode / tunnel / bypass / block / allow / http */
    char rule[192];
};

struct events;

struct events *events_new(void);
void events_free(struct events *e);
/* The next slot of the ring, with its seq set, the ring locked: the caller
 * sets every field (strings NUL-terminated; only the bytes used are
 * written, which keeps a 1 KiB event from touching 1 KiB of cold memory)
 * and then calls events_publish. No other events call in between. */
struct event *events_claim(struct events *e);
void events_publish(struct events *e);
/* Copies up to `max` events with seq >= *cursor into out, advances *cursor;
 * returns how many, and in *missed how many were overwritten before read. */
size_t events_read(struct events *e, uint64_t *cursor, struct event *out, size_t max,
                   uint64_t *missed);
/* One JSON line (no newline) for an event; returns its length or 0. */
size_t events_format_json(const struct event *ev, char *out, size_t cap);

#endif
