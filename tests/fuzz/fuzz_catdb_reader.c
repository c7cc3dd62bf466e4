/* libFuzzer target for the category database reader: any bytes, opened as a
 * database (checksums off so the fuzzer reaches the structure checks, and on),
 * must be refused with a message or give a handle whose lookups and accessors
 * stay inside the buffer (ASan) and return ids below the category count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catdb/catdb.h"
#include "util/util.h"

static const char *const hosts[] = {
    "poker.test", "www.casino.example.", "games.example:443", "192.0.2.66", "[2001:db8::66]:443",
    "a.b.c.d.e.f.g.example.com", "xn--bcher-kva.example", "blog.example", "www.video.example", "com",
};
static const char *const paths[] = { NULL, "", "/", "/poker/x?y=1", "watch?v=adult1&t=3", "/banner/a.gif" };

static void exercise(const struct catdb *db)
{
    size_t n = catdb_category_count(db);
    for (size_t h = 0; h < UTIL_ARRAY_LEN(hosts); h++)
        for (size_t p = 0; p < UTIL_ARRAY_LEN(paths); p++) {
            struct catset s;
            catdb_lookup(db, hosts[h], paths[p], &s);
            if (s.n > CATSET_MAX)
                abort();
            for (uint16_t i = 0; i < s.n; i++)
                if (s.id[i] >= n || (i && s.id[i - 1] >= s.id[i]))
                    abort();
        }
    for (uint16_t id = 0; id < n && id < 512; id++) {
        if (!catdb_category_name(db, id) || !catdb_category_display(db, id, "ja"))
            abort();
        (void)strlen(catdb_category_description(db, id, "fr"));
        struct catdb_category_stats st;
        catdb_category_stats(db, id, &st);
        (void)catdb_category_id(db, catdb_category_name(db, id));
    }
    for (size_t i = 0; i < catdb_alias_count(db); i++) {
        uint16_t t;
        if (!catdb_alias_name(db, i, &t) || t >= n)
            abort();
    }
    struct catdb_info in;
    catdb_get_info(db, &in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t *buf = malloc(size + 8);     /* the reader wants 8-byte alignment */
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    char err[UTIL_ERRLEN];
    for (int pass = 0; pass < 2; pass++) {
        struct catdb *db = NULL;
        err[0] = '\0';
        int rc = catdb_open_mem(buf, size, pass ? 0 : CATDB_OPEN_NO_CHECKSUM, &db, err, sizeof err);
        if (rc < 0) {
            if (db || err[0] == '\0')
                abort();                   /* a refusal always says why */
            continue;
        }
        exercise(db);
        catdb_close(db);
    }
    free(buf);
    return 0;
}
