/* libFuzzer target: catalog files (the site's --catalog FILE) through the
 * loader and validator, then the lookups over whatever was accepted; also the
 * learned-exclusion file loader (STATE/learned.json). Nothing may crash,
 * leak or read out of bounds, whatever the bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compat/compat.h"
#include "policy/learned.h"
#include "util/log.h"
#include "util/util.h"

static char state_dir[64];

static void remove_state_dir(void)
{
    rmdir(state_dir);
}

static void fuzz_learned(const uint8_t *data, size_t size)
{
    if (!state_dir[0]) {
        strcpy(state_dir, "/tmp/shoji-fuzz-compat-XXXXXX");
        if (!mkdtemp(state_dir))
            abort();
        atexit(remove_state_dir);
        log_set_level(LOG_ERROR);
    }
    char path[128], bad[160];
    snprintf(path, sizeof path, "%s/%s", state_dir, LEARNED_FILE);
    snprintf(bad, sizeof bad, "%s.corrupt", path);
    FILE *f = fopen(path, "w");   /* plain write: no fsync per input */
    if (!f)
        return;
    size_t w = fwrite(data, 1, size, f);
    fclose(f);
    if (w != size)
        return;
    struct learned *s;
    char err[UTIL_ERRLEN];
    if (learned_open(state_dir, &s, err, sizeof err) == 0) {
        learned_match(s, "app", "host.example", 1, LEARNED_SCOPE_HOST, err, sizeof err);
        struct learned_entry *v;
        size_t n;
        if (learned_list(s, 0, &v, &n) == 0)
            free(v);
        learned_close(s);
    }
    unlink(path);
    unlink(bad);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[UTIL_ERRLEN];
    struct compat_catalog *c = compat_catalog_new();
    if (!c)
        return 0;
    if (compat_catalog_add_text(c, (const char *)data, size, "fuzz.json", err, sizeof err) > 0) {
        compat_match_host(c, "a.icrc.trendmicro.com");
        compat_match_app(c, "NTRTSCAN.exe");
        for (size_t i = 0; i < compat_catalog_count(c); i++)
            compat_catalog_find(c, compat_catalog_get(c, i)->id);
        /* the same text again: every entry replaces itself */
        compat_catalog_add_text(c, (const char *)data, size, "fuzz2.json", err, sizeof err);
    }
    compat_catalog_free(c);
    /* glob matching on raw halves of the input */
    if (size > 1 && size < 512) {
        char buf[512];
        memcpy(buf, data, size);
        buf[size] = '\0';
        size_t half = strlen(buf) / 2;
        char pat[256];
        memcpy(pat, buf, half);
        pat[half] = '\0';
        compat_glob_match(pat, buf + half);
        compat_app_eq(pat, buf + half);
    }
    fuzz_learned(data, size);
    return 0;
}
