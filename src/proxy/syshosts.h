/* proxy/syshosts: the system hosts file (/etc/hosts) answered inside the
 * agent, as Squid's hosts_file does by default. A name listed there is
 * resolved on the event loop in microseconds instead of a round trip to
 * libuv's thread pool for getaddrinfo (~0.1-0.3 ms on a small VM, on the
 * path of every first connection to a host). Everything else still goes to
 * getaddrinfo, so DNS, mDNS and the rest of nsswitch keep working.
 * Used only while it changes nothing about what a name resolves to: the
 * `hosts:` line of nsswitch.conf lists `files` first, and the file has at
 * most SYSHOSTS_MAX_NAMES lines and SYSHOSTS_MAX_BYTES (large ad-blocking
 * hosts files are left to glibc rather than held in memory). Both files are checked again at most
 * once a second; a change is picked up then.
 * Must never: answer a name glibc would answer differently, grow without
 * bound, or block (two small local files, read at most once a second). */
#ifndef SHOJI_PROXY_SYSHOSTS_H
#define SHOJI_PROXY_SYSHOSTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "proxy/hosts.h"

#define SYSHOSTS_MAX_NAMES 1024
#define SYSHOSTS_MAX_BYTES (64 * 1024)

struct syshosts {
    pthread_mutex_t mu;
    char hosts_path[256];
    char nsswitch_path[256];
    bool usable;                 /* files first, small enough, loaded */
    struct hosts h;
    uint64_t checked_ms;         /* last look at the two files */
    bool checked;
    struct stat hosts_st, ns_st; /* identity of what was loaded */
};

/* Paths: "/etc/hosts", "/etc/nsswitch.conf" in the agent; tests use their
 * own. Nothing is read until the first lookup. */
void syshosts_init(struct syshosts *s, const char *hosts_path, const char *nsswitch_path);
void syshosts_free(struct syshosts *s);
/* Up to `max` addresses (port 0) for `name` from the hosts file, or 0 when
 * the file does not list it or is not used; `now_ms` is a monotonic clock
 * in milliseconds. Thread-safe. */
size_t syshosts_lookup(struct syshosts *s, const char *name, struct sockaddr_storage *out,
                       size_t max, uint64_t now_ms);

#endif
