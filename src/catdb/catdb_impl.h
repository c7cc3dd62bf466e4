/* catdb_impl: the reader's in-memory handle, shared by catdb.c (open and
 * checks) and catdb_lookup.c (lookups and accessors). Internal to src/catdb/.
 * Must never: be included outside src/catdb/. */
#ifndef SHOJI_CATDB_IMPL_H
#define SHOJI_CATDB_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdatomic.h>

#include "catdb/catdb.h"
#include "catdb/catdb_format.h"

#define CATDB_URL_PATH_MAX CDB_URL_PREFIX_MAX /* request path bytes compared with URL prefixes */
#define CATDB_EXPR_SUBJECT_MAX 4096   /* "host/path" bytes given to expressions */
#define CATDB_RE_ARENA_SIZE (32 * 1024) /* per-lookup PCRE2 memory, on the stack */

/* An expression's JIT-compiled copy. The JIT compiler costs ~0.3 MiB of
 * resident library code plus executable memory, and with the prefilters most
 * agents rarely or never run an expression: so it runs on an expression's
 * first match, not at open (docs/PERFORMANCE.md "Memory"). The thread that
 * moves `state` from CDB_JIT_NONE to CDB_JIT_BUSY compiles a copy of `re[i]`
 * and publishes it; the others use the interpreter on `re[i]` meanwhile,
 * so lookups stay lock-free. */
enum { CDB_JIT_NONE, CDB_JIT_BUSY, CDB_JIT_DONE };
struct cdb_jit {
    _Atomic(pcre2_code *) code;       /* NULL until ready (or when JIT is unavailable) */
    atomic_int state;
};

/* Literal prefilters of the expressions (catdb_prefilter.c). */
#define CDB_PF_MAX_ALTS 32      /* literals per expression */
#define CDB_PF_MAX_LEN 32       /* bytes per literal (a prefix of a longer run) */
#define CDB_PF_MAX_EXPRS 4096   /* expressions past this one always run */
struct cdb_pf_lit {
    char s[CDB_PF_MAX_LEN];
    uint32_t expr;
    uint16_t key;               /* first two bytes */
    uint8_t len;
};
struct cdb_prefilters {
    struct cdb_pf_lit *lits;    /* sorted by key */
    size_t nlits;
    uint8_t bigram[65536 / 8];  /* first two bytes of some literal */
    uint8_t has[CDB_PF_MAX_EXPRS / 8]; /* expression has a prefilter */
};
/* 1 and the literals (lower case) every match of `pattern` contains one of,
 * or 0 when the pattern is not analysed. */
int cdb_pf_extract(const char *pattern, char lits[][CDB_PF_MAX_LEN], uint8_t *lens, size_t *n);
int cdb_pf_build(struct cdb_prefilters *pf, const char *const *patterns, size_t n);
void cdb_pf_free(struct cdb_prefilters *pf);
void cdb_pf_scan(const struct cdb_prefilters *pf, const char *lower, size_t n, uint8_t *may);

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
    const char **names;               /* ncats category names, then nalias alias
                                         names: heap copies, so resolving names
                                         (policy load, logs) never touches the
                                         mapping (catdb.c: copy_names) */
    uint16_t *alias_cat;              /* nalias targets, heap copy */
    pcre2_code **re;                  /* nexprs compiled expressions (checked at
                                         open; matched by the interpreter until
                                         their JIT copy is ready; never modified
                                         after open, so any thread may use them) */
    struct cdb_jit *jit;              /* nexprs: JIT copies, made on first use */
    pcre2_match_context *mctx;
    struct cdb_prefilters pf;
};

#endif
