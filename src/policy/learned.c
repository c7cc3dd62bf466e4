/* learned: see learned.h. A fixed array of buckets with chained nodes keyed on
 * the normalised host; app+host and host-only lookups walk the same bucket. */
#include "policy/learned.h"

#include "util/log.h"
#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NBUCKETS 1024
#define FILE_MAX (16u * 1024 * 1024)

struct node {
    struct learned_entry e;
    struct node *next;
};

struct learned {
    pthread_rwlock_t lock;
    struct node *b[NBUCKETS];
    size_t n;
    char path[4096];    /* "" for a memory-only store */
};

void learned_norm_host(const char *in, char *out, size_t outlen)
{
    if (!outlen)
        return;
    size_t i = 0;
    for (; in && in[i] && i + 1 < outlen; i++)
        out[i] = (char)((in[i] >= 'A' && in[i] <= 'Z') ? in[i] + 32 : in[i]);
    out[i] = '\0';
    if (i > 0 && out[i - 1] == '.')
        out[i - 1] = '\0';
}

void learned_norm_app(const char *in, char *out, size_t outlen)
{
    learned_norm_host(in, out, outlen);
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".exe"))
        out[n - 4] = '\0';
}

static unsigned bucket_of(const char *host)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)host; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % NBUCKETS;
}

static void free_all(struct learned *s)
{
    for (size_t i = 0; i < NBUCKETS; i++) {
        struct node *nd = s->b[i];
        while (nd) {
            struct node *next = nd->next;
            free(nd);
            nd = next;
        }
        s->b[i] = NULL;
    }
    s->n = 0;
}

static struct node *find_node(struct learned *s, const char *app, const char *host)
{
    for (struct node *nd = s->b[bucket_of(host)]; nd; nd = nd->next)
        if (!strcmp(nd->e.host, host) && !strcmp(nd->e.app, app))
            return nd;
    return NULL;
}

/* Unlinks the node that expires first (the eviction victim when full). */
static void evict_one(struct learned *s)
{
    struct node **victim = NULL;
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct node **pp = &s->b[i]; *pp; pp = &(*pp)->next)
            if (!victim || (*pp)->e.expires < (*victim)->e.expires)
                victim = pp;
    if (victim) {
        struct node *nd = *victim;
        *victim = nd->next;
        free(nd);
        s->n--;
    }
}

/* Inserts a copy of `e` (already normalised); the caller holds the write lock. */
static int insert_entry(struct learned *s, const struct learned_entry *e)
{
    struct node *nd = calloc(1, sizeof *nd);
    if (!nd)
        return -ENOMEM;
    if (s->n >= LEARNED_MAX)
        evict_one(s);
    nd->e = *e;
    unsigned b = bucket_of(nd->e.host);
    nd->next = s->b[b];
    s->b[b] = nd;
    s->n++;
    return 0;
}

int learned_record(struct learned *s, const char *app, const char *host, const char *reason,
                   int64_t now, int64_t ttl_seconds)
{
    if (!s || !host || !*host || strlen(host) >= LEARNED_HOST_MAX)
        return -EINVAL;
    struct learned_entry e;
    memset(&e, 0, sizeof e);
    learned_norm_app(app ? app : "", e.app, sizeof e.app);
    learned_norm_host(host, e.host, sizeof e.host);
    if (!e.host[0])
        return -EINVAL;
    util_strlcpy(e.reason, reason ? reason : "", sizeof e.reason);
    if (ttl_seconds < 0)
        ttl_seconds = 0;
    int64_t expires = now > INT64_MAX - ttl_seconds ? INT64_MAX : now + ttl_seconds;
    int rc;
    pthread_rwlock_wrlock(&s->lock);
    struct node *nd = find_node(s, e.app, e.host);
    if (nd && nd->e.expires > now) {
        nd->e.count = nd->e.count < UINT32_MAX ? nd->e.count + 1 : UINT32_MAX;
        nd->e.last_seen = now;
        nd->e.expires = expires;
        if (e.reason[0])
            memcpy(nd->e.reason, e.reason, sizeof e.reason);
        rc = 0;
    } else if (nd) {           /* expired: starts over */
        e.first_seen = e.last_seen = now;
        e.expires = expires;
        e.count = 1;
        nd->e = e;
        rc = 1;
    } else {
        e.first_seen = e.last_seen = now;
        e.expires = expires;
        e.count = 1;
        rc = insert_entry(s, &e);
        if (rc == 0)
            rc = 1;
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

static void fmt_time(int64_t t, char *out, size_t outlen)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || !strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, outlen, "%lld", (long long)t);
}

bool learned_match(struct learned *s, const char *app, const char *host, int64_t now,
                   enum learned_scope scope, char *rule, size_t rulelen)
{
    if (!s || !host)
        return false;
    char h[LEARNED_HOST_MAX], a[LEARNED_APP_MAX];
    learned_norm_host(host, h, sizeof h);
    learned_norm_app(app ? app : "", a, sizeof a);
    bool hit = false;
    pthread_rwlock_rdlock(&s->lock);
    for (struct node *nd = s->b[bucket_of(h)]; nd; nd = nd->next) {
        if (nd->e.expires <= now || strcmp(nd->e.host, h) != 0)
            continue;
        if (scope == LEARNED_SCOPE_APP_HOST && strcmp(nd->e.app, a) != 0)
            continue;
        hit = true;
        if (rule && rulelen) {
            char until[32];
            fmt_time(nd->e.expires, until, sizeof until);
            snprintf(rule, rulelen, "\"%s\" -> \"%s\" (%s, %ux, until %s)",
                     nd->e.app[0] ? nd->e.app : "?", nd->e.host,
                     nd->e.reason[0] ? nd->e.reason : "rejected certificate",
                     (unsigned)nd->e.count, until);
        }
        break;
    }
    pthread_rwlock_unlock(&s->lock);
    return hit;
}

static size_t prune_locked(struct learned *s, int64_t now)
{
    size_t dropped = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        struct node **pp = &s->b[i];
        while (*pp) {
            if ((*pp)->e.expires <= now) {
                struct node *nd = *pp;
                *pp = nd->next;
                free(nd);
                s->n--;
                dropped++;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    return dropped;
}

size_t learned_prune(struct learned *s, int64_t now)
{
    if (!s)
        return 0;
    pthread_rwlock_wrlock(&s->lock);
    size_t d = prune_locked(s, now);
    pthread_rwlock_unlock(&s->lock);
    return d;
}

static int cmp_last_seen_desc(const void *a, const void *b)
{
    const struct learned_entry *x = a, *y = b;
    if (x->last_seen != y->last_seen)
        return x->last_seen > y->last_seen ? -1 : 1;
    int c = strcmp(x->host, y->host);
    return c ? c : strcmp(x->app, y->app);
}

int learned_list(struct learned *s, int64_t now, struct learned_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!s)
        return -EINVAL;
    pthread_rwlock_wrlock(&s->lock);
    prune_locked(s, now);
    struct learned_entry *v = NULL;
    if (s->n) {
        v = calloc(s->n, sizeof *v);
        if (!v) {
            pthread_rwlock_unlock(&s->lock);
            return -ENOMEM;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct node *nd = s->b[i]; nd && k < s->n; nd = nd->next)
            v[k++] = nd->e;
    pthread_rwlock_unlock(&s->lock);
    if (k)
        qsort(v, k, sizeof *v, cmp_last_seen_desc);
    *out = v;
    *n = k;
    return 0;
}

size_t learned_clear(struct learned *s, const char *host)
{
    if (!s)
        return 0;
    size_t removed = 0;
    pthread_rwlock_wrlock(&s->lock);
    if (!host) {
        removed = s->n;
        free_all(s);
    } else {
        char h[LEARNED_HOST_MAX];
        learned_norm_host(host, h, sizeof h);
        struct node **pp = &s->b[bucket_of(h)];
        while (*pp) {
            if (!strcmp((*pp)->e.host, h)) {
                struct node *nd = *pp;
                *pp = nd->next;
                free(nd);
                s->n--;
                removed++;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    pthread_rwlock_unlock(&s->lock);
    return removed;
}

size_t learned_count(struct learned *s)
{
    if (!s)
        return 0;
    pthread_rwlock_rdlock(&s->lock);
    size_t n = s->n;
    pthread_rwlock_unlock(&s->lock);
    return n;
}

/* ---- persistence ---- */

static json_t *entry_to_json(const struct learned_entry *e)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "app", e->app, "host", e->host,
                     "reason", e->reason, "first_seen", (json_int_t)e->first_seen,
                     "last_seen", (json_int_t)e->last_seen, "expires", (json_int_t)e->expires,
                     "count", (json_int_t)e->count);
}

int learned_save(struct learned *s, char *err, size_t errlen)
{
    if (!s)
        return util_err(err, errlen, -EINVAL, "no learned store");
    if (!s->path[0])
        return 0;
    json_t *arr = json_array();
    json_t *root = json_pack("{s:i, s:o}", "version", 1, "entries", arr);
    if (!arr || !root) {
        json_decref(root);
        return util_err(err, errlen, -ENOMEM, "out of memory saving learned exclusions");
    }
    int rc = 0;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < NBUCKETS && rc == 0; i++)
        for (struct node *nd = s->b[i]; nd && rc == 0; nd = nd->next)
            if (json_array_append_new(arr, entry_to_json(&nd->e)) < 0)
                rc = -ENOMEM;
    pthread_rwlock_unlock(&s->lock);
    char *text = rc == 0 ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (!text)
        return util_err(err, errlen, -ENOMEM, "out of memory saving learned exclusions");
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (!withnl) {
        free(text);
        return util_err(err, errlen, -ENOMEM, "out of memory saving learned exclusions");
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    rc = util_write_file_atomic(s->path, withnl, len + 1, 0600, err, errlen);
    free(withnl);
    return rc;
}

static bool get_str(json_t *o, const char *k, char *out, size_t outlen, bool required)
{
    json_t *v = json_object_get(o, k);
    if (!v) {
        out[0] = '\0';
        return !required;
    }
    if (!json_is_string(v) || json_string_length(v) >= outlen)
        return false;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return strlen(out) == json_string_length(v);   /* no embedded NUL */
}

static bool get_int(json_t *o, const char *k, int64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v))
        return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* Parses one entry; false (with a reason) when it is malformed. */
static bool parse_entry(json_t *o, struct learned_entry *e, const char **why)
{
    int64_t count = 0;
    memset(e, 0, sizeof *e);
    char raw[LEARNED_HOST_MAX];
    *why = "not an object";
    if (!json_is_object(o))
        return false;
    *why = "bad \"host\"";
    if (!get_str(o, "host", raw, sizeof raw, true) || !raw[0])
        return false;
    learned_norm_host(raw, e->host, sizeof e->host);
    *why = "bad \"app\"";
    if (!get_str(o, "app", raw, sizeof e->app, false))
        return false;
    learned_norm_app(raw, e->app, sizeof e->app);
    *why = "bad \"reason\"";
    if (!get_str(o, "reason", e->reason, sizeof e->reason, false))
        return false;
    *why = "bad times or count";
    if (!get_int(o, "first_seen", &e->first_seen) || !get_int(o, "last_seen", &e->last_seen) ||
        !get_int(o, "expires", &e->expires) || !get_int(o, "count", &count) || count < 0)
        return false;
    e->count = count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
    return true;
}

/* Moves a bad file aside so it is kept for inspection but not read again. */
static void keep_corrupt(const char *path, const char *why)
{
    char bad[4200];
    snprintf(bad, sizeof bad, "%s.corrupt", path);
    if (rename(path, bad) == 0)
        log_warn("learned exclusions: %s is corrupt (%s); kept as %s, starting empty",
                 path, why, bad);
    else
        log_warn("learned exclusions: %s is corrupt (%s) and cannot be moved to %s: %s; "
                 "starting empty", path, why, bad, strerror(errno));
}

/* Loads the file into s (which must be empty); tolerates corruption. */
static int load_file(struct learned *s, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = util_read_file(s->path, FILE_MAX, &text, &len, err, errlen);
    if (rc == -ENOENT)
        return 0;
    if (rc == -EFBIG) {
        keep_corrupt(s->path, "too large");
        return 0;
    }
    if (rc < 0)
        return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    char why[300];
    json_t *arr = root ? json_object_get(root, "entries") : NULL;
    if (!root) {
        snprintf(why, sizeof why, "line %d: %s", je.line, je.text);
    } else if (!json_is_object(root) || !json_is_array(arr)) {
        snprintf(why, sizeof why, "no \"entries\" array");
    } else {
        why[0] = '\0';
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            struct learned_entry e;
            const char *w;
            if (!parse_entry(v, &e, &w)) {
                snprintf(why, sizeof why, "entries[%zu]: %s", i, w);
                break;
            }
            if (!find_node(s, e.app, e.host) && insert_entry(s, &e) < 0) {
                json_decref(root);
                free_all(s);
                return util_err(err, errlen, -ENOMEM, "out of memory loading %s", s->path);
            }
        }
    }
    json_decref(root);
    if (why[0]) {
        free_all(s);
        keep_corrupt(s->path, why);
    }
    return 0;
}

int learned_open(const char *state_dir, struct learned **out, char *err, size_t errlen)
{
    *out = NULL;
    struct learned *s = calloc(1, sizeof *s);
    if (!s)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    if (pthread_rwlock_init(&s->lock, NULL) != 0) {
        free(s);
        return util_err(err, errlen, -ENOMEM, "cannot create a lock");
    }
    if (state_dir) {
        if (snprintf(s->path, sizeof s->path, "%s/%s", state_dir, LEARNED_FILE) >=
            (int)sizeof s->path) {
            learned_close(s);
            return util_err(err, errlen, -ENAMETOOLONG, "state directory path too long");
        }
        int rc = load_file(s, err, errlen);
        if (rc < 0) {
            learned_close(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

int learned_reload(struct learned *s, char *err, size_t errlen)
{
    if (!s)
        return util_err(err, errlen, -EINVAL, "no learned store");
    if (!s->path[0])
        return 0;
    pthread_rwlock_wrlock(&s->lock);
    free_all(s);
    int rc = load_file(s, err, errlen);
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

void learned_close(struct learned *s)
{
    if (!s)
        return;
    free_all(s);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

void learned_permanent_rule(const struct learned_entry *e, enum learned_scope scope,
                            char *out, size_t outlen)
{
    if (scope == LEARNED_SCOPE_APP_HOST && e->app[0])
        snprintf(out, outlen, "disabled_apps += {\"app\": \"%s\", \"hosts\": [\"%s\"]}",
                 e->app, e->host);
    else
        snprintf(out, outlen, "decode.exclude_hosts += \"%s\"", e->host);
}
