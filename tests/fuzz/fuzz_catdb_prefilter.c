/* libFuzzer target for the expression prefilter: input = pattern, a NUL
 * byte, a URL. Whenever PCRE2 (caseless, as the database uses it) finds a
 * match, the prefilter must not have ruled the expression out: one of the
 * literals it extracted is in the lower-cased URL, and the bigram scan says
 * so too. A miss here would be a URL silently left uncategorised. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catdb/catdb_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul || nul == data || (size_t)(nul - data) > 512)
        return 0;
    char *pat = strndup((const char *)data, (size_t)(nul - data));
    size_t n = size - (size_t)(nul - data) - 1;
    const char *subj = (const char *)nul + 1;
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pat ? pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec, &eo, NULL) : NULL;
    if (!re) {
        free(pat);
        return 0;
    }
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    pcre2_set_match_limit(mc, 100000);
    int matched = pcre2_match(re, (PCRE2_SPTR)subj, n, 0, 0, md, mc) >= 0;

    char lits[CDB_PF_MAX_ALTS][CDB_PF_MAX_LEN];
    uint8_t lens[CDB_PF_MAX_ALTS];
    size_t k;
    int active = cdb_pf_extract(pat, lits, lens, &k);
    char *low = malloc(n + 1);
    if (low) {
        for (size_t i = 0; i < n; i++)
            low[i] = (char)((subj[i] >= 'A' && subj[i] <= 'Z') ? subj[i] + 32 : subj[i]);
        int present = 0;
        for (size_t i = 0; active && i < k; i++)
            present |= memmem(low, n, lits[i], lens[i]) != NULL;
        if (active && matched && !present)
            abort();                       /* the prefilter would hide a real match */
        struct cdb_prefilters *pf = malloc(sizeof *pf);
        const char *pats[1] = { pat };
        if (pf && cdb_pf_build(pf, pats, 1) == 0) {
            uint8_t may[1] = { 0 };
            cdb_pf_scan(pf, low, n, may);
            if ((pf->has[0] & 1) != (active ? 1 : 0) || (active && (may[0] & 1) != present))
                abort();                   /* the scan must agree with the literals */
            cdb_pf_free(pf);
        }
        free(pf);
        free(low);
    }
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_code_free(re);
    free(pat);
    return 0;
}
