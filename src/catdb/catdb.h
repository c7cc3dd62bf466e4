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

#endif
