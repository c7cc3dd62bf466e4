/* proxy/hosts: a hosts(5) file ("ADDRESS NAME [ALIAS...]", # comments)
 * consulted before DNS, so tests and sites can name local origins.
 * Must never: accept a line it cannot parse silently (bad lines are counted
 * and reported with file:line), or grow without bound. */
#ifndef SHOJI_PROXY_HOSTS_H
#define SHOJI_PROXY_HOSTS_H

#include <stddef.h>
#include <sys/socket.h>

#define HOSTS_MAX_ENTRIES 100000

struct hosts_entry {
    char name[256];                  /* lower-case */
    struct sockaddr_storage addr;    /* port 0 */
};

struct hosts {
    struct hosts_entry *e;           /* sorted by name */
    size_t n;
};

/* Parses `text`; bad lines are reported to `warn` (a callback, may be NULL)
 * as "ORIGIN:LINE: reason" and skipped. */
int hosts_parse(const char *text, size_t len, const char *origin, struct hosts *out,
                void (*warn)(const char *msg), char *err, size_t errlen);
int hosts_load(const char *path, struct hosts *out, void (*warn)(const char *msg),
               char *err, size_t errlen);
void hosts_free(struct hosts *h);
/* Fills up to `max` addresses for `name` (any case, trailing dot allowed);
 * returns how many. */
size_t hosts_lookup(const struct hosts *h, const char *name, struct sockaddr_storage *out,
                    size_t max);

#endif
