/* catdb: the URL category database — a compiler from squidGuard/UT1 lists to
 * one versioned, checksummed file, and a reader that maps that file and
 * answers "which categories is this URL in" without allocating.
 * Must never: trust the file (every offset and count is checked at open and
 * a corrupt file is refused with a clear error), or allocate per lookup. */
#ifndef SHOJI_CATDB_H
#define SHOJI_CATDB_H

#include <stddef.h>
#include <stdint.h>

#define CATSET_MAX 16
/* A set of category ids (indices into the database's category table). */
struct catset {
    uint16_t n;
    uint16_t id[CATSET_MAX];
};

struct catdb;

int catdb_open(const char *path, struct catdb **out, char *err, size_t errlen);
void catdb_close(struct catdb *db);

/* Categories of a URL given as host (any case, optional trailing dot and
 * :port; IDN converted to punycode; IP literals as they are) and path
 * (path+query, may be NULL or empty): the union of every domain suffix match
 * and every URL-prefix match. Pure over the mapped file; thread-safe. */
void catdb_lookup(const struct catdb *db, const char *host, const char *path,
                  struct catset *out);

size_t catdb_category_count(const struct catdb *db);
const char *catdb_category_name(const struct catdb *db, uint16_t id);   /* "gambling" */
/* Display name in a language ("en", "ja", "fr", ...), falling back to English
 * then to the name. */
const char *catdb_category_display(const struct catdb *db, uint16_t id, const char *lang);
int catdb_category_id(const struct catdb *db, const char *name);        /* -1 if none */

/* ---- additions (info, normalisation, in-memory open for tests/fuzzing) ---- */

/* Opens a database held in memory (it must stay valid and unchanged until
 * catdb_close, and be 8-byte aligned). CATDB_OPEN_NO_CHECKSUM skips the two
 * CRCs (fuzzing only: the structure is still checked in full). */
#define CATDB_OPEN_NO_CHECKSUM 1u
int catdb_open_mem(const void *buf, size_t len, unsigned flags, struct catdb **out,
                   char *err, size_t errlen);

struct catdb_info {
    uint32_t format_version;
    int64_t build_time;         /* unix seconds */
    uint64_t file_size;
    uint32_t categories;
    uint32_t aliases;
    uint32_t keys;              /* distinct hosts in the hash table */
    uint64_t domains;           /* domain entries, summed over categories */
    uint64_t urls;              /* URL-prefix entries, summed over categories */
    uint32_t expressions;
};
void catdb_get_info(const struct catdb *db, struct catdb_info *out);

struct catdb_category_stats {
    uint32_t domains, urls, expressions;
};
void catdb_category_stats(const struct catdb *db, uint16_t id, struct catdb_category_stats *out);
/* Description in a language (same fallback as the display name), "" if none. */
const char *catdb_category_description(const struct catdb *db, uint16_t id, const char *lang);

/* Aliases (symlinked category folders, e.g. "porn" -> "adult"):
 * catdb_category_id() resolves them too. Returns the alias name, sets *target. */
size_t catdb_alias_count(const struct catdb *db);
const char *catdb_alias_name(const struct catdb *db, size_t i, uint16_t *target);

/* The host normalisation every lookup applies: lower case, trailing dots and
 * :port removed, [v6] brackets removed, non-ASCII converted to punycode.
 * Writes a NUL-terminated host into out (cap >= CATDB_HOST_MAX is enough for
 * any valid host); returns its length, or a negative errno code if the host is
 * empty, too long or not a valid name (-ELIBACC: a non-ASCII name and libidn2,
 * loaded on first use, cannot be loaded). *is_ip tells an IPv4/IPv6 literal
 * (matched exactly, never by suffix). */
#define CATDB_HOST_MAX 256
int catdb_normalize_host(const char *host, char *out, size_t cap, int *is_ip);

/* Splits "scheme://user@host:port/path?q#frag" (scheme optional) into a
 * normalised host (as catdb_normalize_host) and a pointer to the path inside
 * url ("" if none; the fragment is not removed). Returns 0 or negative. */
int catdb_split_url(const char *url, char *host, size_t cap, const char **path);

/* Adds id to a set (kept sorted, no duplicates, at most CATSET_MAX). */
void catset_add(struct catset *s, uint16_t id);
int catset_has(const struct catset *s, uint16_t id);

#endif
