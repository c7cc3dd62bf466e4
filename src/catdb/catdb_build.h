/* catdb_build: the in-memory database the list reader fills (categories,
 * domains, URL prefixes, expressions, display names) and its writer to the
 * on-disk format of catdb_format.h. Internal to src/catdb/.
 * Must never: accept an unnormalised host (callers pass catdb_normalize_host
 * output), or write a file the reader would refuse. */
#ifndef SHOJI_CATDB_BUILD_H
#define SHOJI_CATDB_BUILD_H

#include <stddef.h>
#include <stdint.h>

struct cdb_builder;

struct cdb_builder *cdb_builder_new(void);
void cdb_builder_free(struct cdb_builder *b);

/* Category ids are given in call order: add categories sorted by name. */
int cdb_builder_add_category(struct cdb_builder *b, const char *name);      /* id or -errno */
int cdb_builder_find_category(const struct cdb_builder *b, const char *name); /* id or -1 */
int cdb_builder_add_alias(struct cdb_builder *b, const char *name, uint16_t cat);
int cdb_builder_set_display(struct cdb_builder *b, uint16_t cat, const char *lang,
                            const char *name, const char *desc);

/* Return 1 when added, 0 when already present for that category, -errno. */
int cdb_builder_add_domain(struct cdb_builder *b, const char *host, size_t n, uint16_t cat);
int cdb_builder_add_url(struct cdb_builder *b, const char *host, size_t hn,
                        const char *path, size_t pn, uint16_t cat);
int cdb_builder_add_expr(struct cdb_builder *b, const char *pattern, uint16_t cat);

struct cdb_build_counts {
    uint32_t categories, aliases, keys, expressions;
    uint64_t domains, urls;
};
void cdb_builder_counts(const struct cdb_builder *b, struct cdb_build_counts *out);
/* Per-category counts as they will be written (URLs after de-duplication). */
void cdb_builder_category_counts(const struct cdb_builder *b, uint16_t cat,
                                 uint64_t *domains, uint64_t *urls, uint32_t *exprs);

/* Serialises the database into a heap buffer (caller frees). */
int cdb_builder_serialize(struct cdb_builder *b, int64_t build_time, unsigned char **out,
                          size_t *outlen, char *err, size_t errlen);

#endif
