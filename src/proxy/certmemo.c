/* proxy/certmemo: see certmemo.h. */
#include "proxy/certmemo.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define CERTMEMO_SLOTS 2048

struct slot {
    char key[300];
    int64_t expires;
    struct certmemo_entry e;
};

struct certmemo {
    pthread_mutex_t lock;
    unsigned ttl;
    struct slot slots[CERTMEMO_SLOTS];
};

struct certmemo *certmemo_new(unsigned ttl_seconds)
{
    struct certmemo *m = calloc(1, sizeof *m);
    if (m) {
        pthread_mutex_init(&m->lock, NULL);
        m->ttl = ttl_seconds;
    }
    return m;
}

void certmemo_free(struct certmemo *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct slot *slot_for(struct certmemo *m, const char *key)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return &m->slots[h % CERTMEMO_SLOTS];
}

void certmemo_put(struct certmemo *m, const char *host, uint16_t port,
                  const char *const *names, size_t n, const struct policy_addr *dst, int64_t now)
{
    char key[300];
    if (!m || snprintf(key, sizeof key, "%s:%u", host, port) >= (int)sizeof key)
        return;
    pthread_mutex_lock(&m->lock);
    struct slot *s = slot_for(m, key);
    memcpy(s->key, key, sizeof key);
    s->expires = now + m->ttl;
    s->e.n = 0;
    for (size_t i = 0; i < n && s->e.n < CERTMEMO_NAMES; i++)
        if (names[i] && util_strlcpy(s->e.names[s->e.n], names[i], CERTMEMO_NAMELEN))
            s->e.n++;
    if (dst)
        s->e.dst = *dst;
    else
        memset(&s->e.dst, 0, sizeof s->e.dst);
    pthread_mutex_unlock(&m->lock);
}

bool certmemo_get(struct certmemo *m, const char *host, uint16_t port, int64_t now,
                  struct certmemo_entry *out)
{
    char key[300];
    if (!m || snprintf(key, sizeof key, "%s:%u", host, port) >= (int)sizeof key)
        return false;
    pthread_mutex_lock(&m->lock);
    struct slot *s = slot_for(m, key);
    bool ok = s->expires > now && strcmp(s->key, key) == 0;
    if (ok)
        *out = s->e;
    pthread_mutex_unlock(&m->lock);
    return ok;
}
