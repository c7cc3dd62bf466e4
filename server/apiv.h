/* apiv: validation of shoji-server API inputs — JSON request bodies, access-
 * log and conflict-event lines of agent batches, gzip bodies — as pure
 * functions that need no running server or database (so they are fuzzed:
 * tests/fuzz/fuzz_server_api.c). Each failure names the offending field.
 * Must never: accept a string past its documented bound, inflate past the
 * given limit (zip bombs), or abort on any input. */
#ifndef SHOJI_SERVER_APIV_H
#define SHOJI_SERVER_APIV_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct apiv_error {
    char field[64];      /* "" when the body as a whole is wrong */
    char msg[256];
};

/* Parses `body` as one JSON object (duplicate keys refused). */
int apiv_object(const char *body, size_t len, json_t **out, struct apiv_error *e);

/* Field helpers: optional string of at most `max` bytes matching `charset`
 * ("id", "name", "text", "machine"); `*out` NULL when absent and !required. */
int apiv_str(json_t *o, const char *key, bool required, size_t max, const char *charset,
             const char **out, struct apiv_error *e);
int apiv_int(json_t *o, const char *key, bool required, int64_t lo, int64_t hi, int64_t dflt,
             int64_t *out, struct apiv_error *e);
/* Whole-string checks used for path segments and query values too. */
bool apiv_is_id(const char *s);            /* 32 lower-case hex */
bool apiv_is_name(const char *s, size_t max);   /* [A-Za-z0-9._-]{1,max} */
bool apiv_is_machine_id(const char *s);    /* [A-Za-z0-9._:-]{8,128} */

struct apiv_enrol {
    const char *token, *machine_id, *hostname, *version, *os;   /* borrowed from the json */
};
int apiv_enrol(json_t *o, struct apiv_enrol *out, struct apiv_error *e);

struct apiv_token_create {
    const char *name, *group;
    int64_t expires_in;          /* seconds from now, 0 = never */
    int64_t max_uses;            /* 0 = unlimited */
};
int apiv_token_create(json_t *o, struct apiv_token_create *out, struct apiv_error *e);

/* A policy document: "document" must be a JSON object (the agent's policy
 * format). Returns its compact text in *text (heap, caller frees). */
int apiv_policy_doc(json_t *o, char **text, struct apiv_error *e);

/* Decompresses a gzip (or zlib) body into a NUL-terminated heap buffer of at
 * most `max` bytes; past that it stops and fails (-EFBIG). */
int apiv_gunzip(const void *in, size_t inlen, size_t max, char **out, size_t *outlen,
                struct apiv_error *e);

/* One access-log line (the agent's JSON line format, see docs/API.md). The
 * strings point into `root`, which the caller json_decref()s. */
struct apiv_log {
    json_t *root;
    int64_t ts;                  /* unix seconds */
    const char *app, *method, *url, *host, *action, *rule;
    char categories[1024];       /* ",a,b," (delimited for LIKE filters), "" if none */
    char category[128];          /* the first category, "" if none */
    int64_t pid, status, bytes;
    double duration_ms;
};
int apiv_log_line(const char *line, size_t len, struct apiv_log *out, struct apiv_error *e);

/* One conflict event line: time, app, host, reason, suggestion. */
struct apiv_conflict {
    json_t *root;
    int64_t ts;
    const char *app, *host, *reason, *suggestion;
};
int apiv_conflict_line(const char *line, size_t len, struct apiv_conflict *out,
                       struct apiv_error *e);

/* "2024-05-01T12:00:00Z", "...12:00:00.123Z", "+09:00" offsets, or a number
 * of unix seconds (milliseconds if > 1e11). */
int apiv_time(json_t *v, int64_t *out);
int apiv_time_str(const char *s, int64_t *out);

#endif
