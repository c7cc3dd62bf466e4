/* learned: the store of learned decode exclusions (automatic conflict
 * avoidance). When a client application rejects a minted certificate, the
 * proxy records {app, host}; while the entry lives (a TTL, renewed on every
 * new rejection) connections of that pair are tunnelled undecoded. The table
 * is in memory (a hash keyed on the host, so a lookup is one bucket walk under
 * a read lock) and persisted as JSON in STATE/learned.json, written atomically.
 *
 * Names: hosts are compared lower-case without a trailing dot; applications
 * lower-case without a trailing ".exe" ("NTRTSCAN.EXE" == "ntrtscan"). An
 * empty app ("") means the application was unknown.
 *
 * Must never: block a reader for long (no I/O under the lock except in
 * learned_save/learned_reload), grow without bound (at most LEARNED_MAX
 * entries: the one expiring first is evicted), trust the file on disk (a
 * corrupt file is logged, kept as learned.json.corrupt, and the store starts
 * empty), or abort. */
#ifndef SHOJI_LEARNED_H
#define SHOJI_LEARNED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEARNED_MAX 4096
#define LEARNED_APP_MAX 128      /* bytes incl. NUL */
#define LEARNED_HOST_MAX 256
#define LEARNED_REASON_MAX 128
#define LEARNED_FILE "learned.json"

struct learned;   /* opaque, thread-safe */

struct learned_entry {
    char app[LEARNED_APP_MAX];       /* normalised; "" if unknown */
    char host[LEARNED_HOST_MAX];     /* normalised */
    char reason[LEARNED_REASON_MAX]; /* e.g. "tls alert unknown_ca" */
    int64_t first_seen;              /* unix seconds */
    int64_t last_seen;
    int64_t expires;                 /* unix seconds; ignored from then on */
    uint32_t count;                  /* rejections seen */
};

/* What a match must agree on. */
enum learned_scope {
    LEARNED_SCOPE_APP_HOST = 0,  /* the same application and host */
    LEARNED_SCOPE_HOST = 1,      /* the host, whichever application */
};

/* Opens the store of `state_dir` (loads STATE/learned.json if present). A
 * NULL state_dir gives a memory-only store (learned_save is then a no-op).
 * A corrupt file is not an error (see above); an unreadable one is. */
int learned_open(const char *state_dir, struct learned **out, char *err, size_t errlen);
void learned_close(struct learned *s);

/* Records a rejection at time `now` (unix seconds) that lives `ttl_seconds`.
 * Returns 1 if the pair is new (or its old entry had expired), 0 if an
 * existing live entry was renewed (count+1, last_seen, expires, reason), or
 * -EINVAL for an empty/overlong host. Does not write the file. */
int learned_record(struct learned *s, const char *app, const char *host, const char *reason,
                   int64_t now, int64_t ttl_seconds);

/* Whether a live entry matches. On a match writes a rule text naming the
 * entry into `rule` (may be NULL), e.g.
 *   "skypeapp" -> "login.skype.com" (tls alert unknown CA, 3x, until 2026-11-25T10:00:00Z)
 * (the policy's rule text then reads `learned exclusion "skypeapp" -> ...`).
 * Thread-safe, read lock only; never allocates. */
bool learned_match(struct learned *s, const char *app, const char *host, int64_t now,
                   enum learned_scope scope, char *rule, size_t rulelen);

/* Drops entries expired at `now`; returns how many were dropped. */
size_t learned_prune(struct learned *s, int64_t now);

/* Copies the live entries (after pruning at `now`), most recently seen first,
 * into a heap array the caller frees. *out is NULL when there are none. */
int learned_list(struct learned *s, int64_t now, struct learned_entry **out, size_t *n);

/* Removes every entry for `host` (all applications), or all entries when
 * host is NULL. Returns the number removed. Does not write the file. */
size_t learned_clear(struct learned *s, const char *host);

/* Writes the table to STATE/learned.json atomically (mode 0600). */
int learned_save(struct learned *s, char *err, size_t errlen);
/* Replaces the table with the file's content (e.g. after `shoji conflicts
 * clear` edited it and sent SIGHUP). Same corrupt-file tolerance as open. */
int learned_reload(struct learned *s, char *err, size_t errlen);

/* Number of entries in the table (live or not yet pruned). */
size_t learned_count(struct learned *s);

/* The permanent policy rule that would replace an entry, as JSON text:
 *   scope APP_HOST with a known app: disabled_apps += {"app": "skypeapp", "hosts": ["login.skype.com"]}
 *   otherwise:                       decode.exclude_hosts += "login.skype.com" */
void learned_permanent_rule(const struct learned_entry *e, enum learned_scope scope,
                            char *out, size_t outlen);

/* Normalises names as the store does (for callers that compare). */
void learned_norm_app(const char *in, char *out, size_t outlen);
void learned_norm_host(const char *in, char *out, size_t outlen);

#endif
