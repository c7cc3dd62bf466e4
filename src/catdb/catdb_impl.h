/* catdb_impl: the reader's in-memory handle, shared by catdb.c (open and
 * checks) and catdb_lookup.c (lookups and accessors). Internal to src/catdb/.
 * Must never: be included outside src/catdb/. */
#ifndef SHOJI_CATDB_IMPL_H
#define SHOJI_CATDB_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "catdb/catdb.h"
#include "catdb/catdb_format.h"

#define CATDB_URL_PATH_MAX CDB_URL_PREFIX_MAX /* request path bytes compared with URL prefixes */
#define CATDB_EXPR_SUBJECT_MAX 4096   /* "host/path" bytes given to expressions */
#define CATDB_RE_ARENA_SIZE (32 * 1024) /* per-lookup PCRE2 memory, on the stack */

struct catdb {
    const unsigned char *base;
    size_t size;
    int mapped;
    const struct cdb_header *hdr;
    const struct cdb_meta *meta;
    const char *str;
    size_t str_size;
    const struct cdb_cat *cats;
    uint32_t ncats;
    const struct cdb_disp *disp;
    uint32_t ndisp;
    const struct cdb_alias *alias;
    uint32_t nalias;
    const uint16_t *pool;
    size_t npool;
    const struct cdb_slot *slots;
    uint64_t slot_mask;
    const uint64_t *bloom;
    uint64_t bloom_mask;
    uint32_t max_probe;
    const struct cdb_urlhost *urlhosts;
    uint32_t nurlhosts;
    const struct cdb_url *urls;
    uint32_t nurls;
    const struct cdb_expr *exprs;
    uint32_t nexprs;
    pcre2_code **re;                  /* nexprs compiled expressions */
    pcre2_match_context *mctx;
};

#endif
