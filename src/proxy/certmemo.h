/* proxy/certmemo: what the origin's certificate said, per host:port — so a
 * certificate-name or IP exclusion decides the next connection without
 * probing the origin first. Shared by all workers (mutex), bounded (a fixed
 * table; a new entry replaces whatever hashed to its slot), entries expire.
 * Must never: grow, or be trusted past its ttl. */
#ifndef SHOJI_PROXY_CERTMEMO_H
#define SHOJI_PROXY_CERTMEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy/policy.h"

#define CERTMEMO_NAMES 16
#define CERTMEMO_NAMELEN 128

struct certmemo;

struct certmemo_entry {
    char names[CERTMEMO_NAMES][CERTMEMO_NAMELEN];
    size_t n;
    struct policy_addr dst;
};

struct certmemo *certmemo_new(unsigned ttl_seconds);
void certmemo_free(struct certmemo *m);
void certmemo_put(struct certmemo *m, const char *host, uint16_t port,
                  const char *const *names, size_t n, const struct policy_addr *dst, int64_t now);
bool certmemo_get(struct certmemo *m, const char *host, uint16_t port, int64_t now,
                  struct certmemo_entry *out);

#endif
