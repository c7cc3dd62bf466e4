/* policy: the admin's policy (JSON file) compiled into fast matchers, and
 * decide(): the one pure function that turns the facts of a connection or a
 * request into a verdict plus the rule that decided. The proxy and
 * `shoji explain` call the very same policy_decide().
 * Must never: do I/O or read a clock inside policy_decide() (time is a fact),
 * keep pointers into the facts after returning, or abort on a bad file. */
#ifndef SHOJI_POLICY_H
#define SHOJI_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catdb/catdb.h"

struct policy;   /* immutable once loaded; shared by all workers; refcounted */

/* Loads and compiles a policy file. On error returns negative and writes
 * "FILE:LINE: key `decode.exclude_hosts[2]`: expected a string, got 12"-like
 * text into err. Opens the category database named by `category_db`
 * (relative paths are relative to the policy file's directory). */
int policy_load_file(const char *path, struct policy **out, char *err, size_t errlen);
/* Same, from a JSON text (used by the server to validate documents with the
 * same code as the agent); `origin` names the text in messages. */
int policy_load_text(const char *text, size_t len, const char *origin, const char *base_dir,
                     struct policy **out, char *err, size_t errlen);
/* The built-in policy used when no file is given: allow everything, decode. */
struct policy *policy_default(void);
struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/* An address as a fact: family 0 means unknown. */
struct policy_addr {
    int family;             /* AF_INET / AF_INET6 / 0 */
    uint8_t a[16];
};

/* The application that owns the client socket, when known. */
struct policy_app {
    const char *name;       /* comm, e.g. "curl"; NULL if unknown */
    const char *exe;        /* executable basename, e.g. "NTRTSCAN.EXE" */
    const char *path;       /* full executable path */
    int pid;                /* 0 if unknown */
    int uid;                /* -1 if unknown */
};

enum policy_phase {
    POLICY_PHASE_CONNECT = 0, /* before any TLS: tunnel, decode, or block? */
    POLICY_PHASE_CERT,        /* the upstream certificate's names are known */
    POLICY_PHASE_REQUEST,     /* one HTTP request (plain or decoded) */
};

struct policy_facts {
    enum policy_phase phase;
    struct policy_app app;
    const char *host;         /* CONNECT target / Host / URL host, lower-case, no port */
    const char *sni;          /* TLS SNI, NULL if none */
    struct policy_addr dst;   /* destination (original dst or resolved) */
    uint16_t port;
    const char *const *cert_names;  /* CERT phase: upstream CN + SANs */
    size_t ncert_names;
    bool tls;                 /* the client speaks TLS on this connection */
    /* REQUEST phase: */
    const char *method;       /* "GET" */
    const char *path;         /* path + query, "/" at least */
    bool upload;              /* a body is being sent (POST/PUT/PATCH with body) */
    /* Time, as facts (never read from a clock inside decide): */
    int64_t now;              /* unix seconds */
    int local_wday;           /* 0 = Sunday */
    int local_minute;         /* minutes since local midnight */
    /* A matching learned exclusion from automatic avoidance (the caller looks
     * it up in its store); NULL if none. Its text names it in the rule. */
    const char *learned;
};

enum policy_action {
    POLICY_DECODE = 0,        /* CONNECT phase: decode (inspect) */
    POLICY_TUNNEL,            /* CONNECT/CERT phase: pass through undecoded, still filtered by host */
    POLICY_BYPASS,            /* neither decoded nor filtered (disabled app, bypass list) */
    POLICY_ALLOW,             /* REQUEST phase: forward */
    POLICY_BLOCK,             /* refuse: block page, 403, or close */
};

enum policy_match_on { POLICY_ON_NONE = 0, POLICY_ON_HOST, POLICY_ON_SNI, POLICY_ON_IP,
                       POLICY_ON_CERT, POLICY_ON_APP, POLICY_ON_URL, POLICY_ON_CATEGORY };

struct policy_verdict {
    enum policy_action action;
    enum policy_match_on on;    /* what matched */
    char rule[256];             /* "decode.exclude_hosts[3] \"*.apple.com\"" */
    char matched[256];          /* the value that matched, e.g. the SNI */
    struct catset cats;         /* categories of the host/URL */
    bool safe_search;           /* REQUEST: rewrite for safe search */
    bool view_only;             /* reads allowed, uploads blocked */
    bool decode_to_block;       /* CONNECT/CERT BLOCK on a connection that would be
                                   decoded: decode it and show the block page on
                                   its requests instead of refusing it */
};

/* The decision. Precedence (the reference product's order): disabled
 * application > bypass list > allow list > view_only list > block list >
 * category rules > write restriction > default; in the CONNECT and CERT
 * phases also decode exclusions (exclude_hosts, learned, skip_categories)
 * decide tunnel vs decode. Pure: no I/O, no clock, thread-safe. */
void policy_decide(const struct policy *p, const struct policy_facts *f,
                   struct policy_verdict *v);

/* Whether any decode.exclude_hosts pattern is a certificate-name pattern (so
 * the proxy must look at the upstream certificate before deciding). As
 * implemented: true when decode.exclude_hosts or a disabled_apps {"app",
 * "hosts"} entry has any pattern, because host patterns are matched against
 * the certificate's names too (docs/POLICY.md). */
bool policy_has_cert_rules(const struct policy *p);
const struct catdb *policy_catdb(const struct policy *p);   /* may be NULL */
const char *policy_action_name(enum policy_action a);
const char *policy_match_on_name(enum policy_match_on m);

/* ---- accessors for the proxy (added with the implementation) ---- */

/* The policy file's path (or the origin given to policy_load_text; "built-in"
 * for policy_default()). */
const char *policy_path(const struct policy *p);
/* decode.enabled (default true). */
bool policy_decode_enabled(const struct policy *p);
/* `template` name, or NULL. */
const char *policy_template_name(const struct policy *p);
/* `block_page` template directory override (absolute, resolved against the
 * policy file's directory), or NULL for the built-in pages. */
const char *policy_block_page_dir(const struct policy *p);

/* Safe-search enforcement. The proxy asks which engine a host belongs to and
 * whether the policy enforces it there; policy_decide() also sets
 * verdict.safe_search for REQUEST-phase ALLOW verdicts on such hosts. */
enum policy_engine { POLICY_ENGINE_NONE = 0, POLICY_ENGINE_GOOGLE, POLICY_ENGINE_BING,
                     POLICY_ENGINE_YOUTUBE, POLICY_ENGINE_DUCKDUCKGO };
/* google.TLD / www.google.co.jp ..., bing.com, youtube.com (+ m., music.,
 * youtubei.googleapis.com, youtube-nocookie.com), duckduckgo.com. */
enum policy_engine policy_search_engine(const char *host);
bool policy_safe_search(const struct policy *p, enum policy_engine e);
const char *policy_engine_name(enum policy_engine e);   /* "google" */

/* auto_avoid: automatic conflict avoidance settings (defaults: enabled,
 * ttl 7 days, scope app+host). */
enum policy_avoid_scope { POLICY_AVOID_APP_HOST = 0, POLICY_AVOID_HOST };
struct policy_auto_avoid {
    bool enabled;
    int64_t ttl;                     /* seconds */
    enum policy_avoid_scope scope;
};
const struct policy_auto_avoid *policy_auto_avoid(const struct policy *p);

/* Parses an IPv4 or IPv6 literal (brackets allowed) into a fact. 0 or -EINVAL. */
int policy_addr_parse(const char *s, struct policy_addr *out);

#endif
