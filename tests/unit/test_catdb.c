/* Unit tests of the category database: lists in the squidGuard/UT1 layout
 * are compiled into a real file, opened with mmap and queried; corrupt files
 * are refused. Also compiles a slice of the real UT1 lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catdb/catdb.h"
#include "catdb/catdb_compile.h"
#include "catdb/catdb_impl.h"   /* struct cdb_jit: when expressions are JIT-compiled */
#include "util/util.h"

struct fx {
    char dir[64];
    char db_path[128];
    struct catdb *db;
    char diag[8192];
};

static void write_file(const char *dir, const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    assert_int_equal(util_mkdirs(p, 0755, NULL, 0), 0);
    *slash = '/';
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm_rf(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int compile_dirs(struct fx *x, const char *const *dirs, size_t n, char *err, size_t errlen)
{
    FILE *d = fmemopen(x->diag, sizeof x->diag - 1, "w");
    assert_non_null(d);
    struct catdb_compile_opts o = { NULL, d, 1700000000, 0 };
    struct catdb_compile_result r;
    int rc = catdb_compile(dirs, n, x->db_path, &o, &r, err, errlen);
    fclose(d);
    return rc;
}

/* Compiles x->dir/lists and opens the result. */
static void build(struct fx *x)
{
    char lists[128], err[UTIL_ERRLEN];
    snprintf(lists, sizeof lists, "%s/lists", x->dir);
    const char *dirs[1] = { lists };
    assert_int_equal(compile_dirs(x, dirs, 1, err, sizeof err), 0);
    assert_int_equal(catdb_open(x->db_path, &x->db, err, sizeof err), 0);
}

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof *x);
    assert_non_null(x);
    strcpy(x->dir, "/tmp/shoji-test-catdb-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    snprintf(x->db_path, sizeof x->db_path, "%s/categories.db", x->dir);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;
    catdb_close(x->db);
    rm_rf(x->dir);
    free(x);
    return 0;
}

/* "gambling, games" for a lookup, "" when none. */
static const char *cats_of(const struct catdb *db, const char *host, const char *path)
{
    static char out[512];
    struct catset s;
    catdb_lookup(db, host, path, &s);
    out[0] = '\0';
    for (uint16_t i = 0; i < s.n; i++) {
        if (i)
            strcat(out, ", ");
        strcat(out, catdb_category_name(db, s.id[i]));
    }
    return out;
}

static void write_basic_lists(const char *dir)
{
    char d[128];
    snprintf(d, sizeof d, "%s/lists", dir);
    write_file(d, "gambling/domains", "casino.example\npoker.test\nexample.com\n");
    write_file(d, "games/domains", "poker.test\n# a comment\n\ngames.example\n");
    write_file(d, "gambling/urls", "games.example/poker\nwww.blog.example/bet/\n");
    write_file(d, "news/urls", "video.example/watch?v=abc\n");
    write_file(d, "news/domains", "bücher.example\n0.2.66\n");
    write_file(d, "malware/domains", "192.0.2.66\n2001:db8::66\n");
    write_file(d, "malware/expressions", "/payload[0-9]+\\.exe$\n");
}

static void test_subdomain_walk_matches_parent_domain_but_not_lookalike(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    assert_string_equal(cats_of(x->db, "example.com", NULL), "gambling");
    assert_string_equal(cats_of(x->db, "a.b.example.com", "/"), "gambling");
    assert_string_equal(cats_of(x->db, "ample.com", NULL), "");
    assert_string_equal(cats_of(x->db, "example.com.evil.test", NULL), "");
    assert_string_equal(cats_of(x->db, "com", NULL), "");
    assert_string_equal(cats_of(x->db, "notcasino.example", NULL), "");
    assert_string_equal(cats_of(x->db, "www.casino.example", NULL), "gambling");
}

static void test_host_in_several_categories_gets_all_of_them(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    assert_string_equal(cats_of(x->db, "poker.test", NULL), "gambling, games");
    assert_string_equal(cats_of(x->db, "eu.poker.test", "/lobby"), "gambling, games");
    /* a domain of one category plus a URL prefix of another */
    assert_string_equal(cats_of(x->db, "games.example", "/poker/table1"), "gambling, games");
    assert_string_equal(cats_of(x->db, "games.example", "/chess"), "games");
}

static void test_host_is_normalised_case_trailing_dot_port(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    assert_string_equal(cats_of(x->db, "CASINO.Example", NULL), "gambling");
    assert_string_equal(cats_of(x->db, "casino.example.", NULL), "gambling");
    assert_string_equal(cats_of(x->db, "casino.example:8443", NULL), "gambling");
    assert_string_equal(cats_of(x->db, "Casino.Example.:443", "/"), "gambling");
    assert_string_equal(cats_of(x->db, "", NULL), "");
    assert_string_equal(cats_of(x->db, "...", NULL), "");
    assert_string_equal(cats_of(x->db, "bad host.example", NULL), "");
}

static void test_idn_hosts_are_converted_to_punycode(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    char h[CATDB_HOST_MAX];
    assert_int_equal(catdb_normalize_host("BÜCHER.example", h, sizeof h, NULL), 21);
    assert_string_equal(h, "xn--bcher-kva.example");
    assert_string_equal(cats_of(x->db, "xn--bcher-kva.example", NULL), "news");
    assert_string_equal(cats_of(x->db, "bücher.example", NULL), "news");
    assert_string_equal(cats_of(x->db, "www.BÜCHER.example:443", NULL), "news");
}

static void test_ip_literals_match_exactly_never_by_suffix(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    int is_ip = 0;
    char h[CATDB_HOST_MAX];
    assert_true(catdb_normalize_host("[2001:DB8::66]:443", h, sizeof h, &is_ip) > 0);
    assert_string_equal(h, "2001:db8::66");
    assert_int_equal(is_ip, 1);
    assert_string_equal(cats_of(x->db, "192.0.2.66", NULL), "malware");
    assert_string_equal(cats_of(x->db, "192.0.2.66:80", "/"), "malware");
    assert_string_equal(cats_of(x->db, "[2001:db8::66]:443", NULL), "malware");
    assert_string_equal(cats_of(x->db, "2001:db8::66", NULL), "malware");
    assert_string_equal(cats_of(x->db, "2001:db8::67", NULL), "");
    /* "0.2.66" is a (silly) domain entry: an IPv4 literal must not reach it
     * by walking its dot-suffixes */
    assert_string_equal(cats_of(x->db, "10.0.2.66", NULL), "");
    assert_string_equal(cats_of(x->db, "x.0.2.66", NULL), "news");
}

static void test_url_prefixes_match_at_path_boundaries(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    assert_string_equal(cats_of(x->db, "games.example", "/poker"), "gambling, games");
    assert_string_equal(cats_of(x->db, "games.example", "/poker?seat=2"), "gambling, games");
    assert_string_equal(cats_of(x->db, "games.example", "/POKER/"), "gambling, games");
    assert_string_equal(cats_of(x->db, "games.example", "/pokerface"), "games");
    /* entry ends with '/': anything below it; www. is dropped on both sides */
    assert_string_equal(cats_of(x->db, "blog.example", "/bet/x/y"), "gambling");
    assert_string_equal(cats_of(x->db, "www.blog.example", "/bet/"), "gambling");
    assert_string_equal(cats_of(x->db, "www2.blog.example", "/bet/1"), "gambling");
    assert_string_equal(cats_of(x->db, "blog.example", "/better"), "");
    assert_string_equal(cats_of(x->db, "blog.example", NULL), "");
    assert_string_equal(cats_of(x->db, "other.blog.example", "/bet/"), "");
    /* a prefix with a query string */
    assert_string_equal(cats_of(x->db, "video.example", "/watch?v=abc"), "news");
    assert_string_equal(cats_of(x->db, "video.example", "/watch?v=abc&t=10"), "news");
    assert_string_equal(cats_of(x->db, "video.example", "/watch?v=abcd"), "");
}

static void test_expressions_match_the_whole_url(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    assert_string_equal(cats_of(x->db, "cdn.example", "/files/payload42.exe"), "malware");
    assert_string_equal(cats_of(x->db, "cdn.example", "/files/PAYLOAD42.EXE"), "malware");
    assert_string_equal(cats_of(x->db, "cdn.example", "/files/payload42.exe.txt"), "");
    assert_string_equal(cats_of(x->db, "cdn.example", "/files/payload.exe"), "");
}

static void test_expressions_with_and_without_required_literals(void **state)
{
    struct fx *x = *state;
    char d[128];
    snprintf(d, sizeof d, "%s/lists", x->dir);
    /* "/banner/|/sponsor/" has required literals (prefiltered); "ab?c" and
     * a look-ahead have none the prefilter can use, so they always run */
    write_file(d, "ads/expressions", "(/BANNER/|/sponsor/)\n");
    write_file(d, "misc/expressions", "ab?c\n^(?=[^/]*/x)[a-z.]+/x[0-9]\n");
    build(x);
    assert_string_equal(cats_of(x->db, "a.example", "/img/banner/1.gif"), "ads");
    assert_string_equal(cats_of(x->db, "a.example", "/Sponsor/"), "ads");
    assert_string_equal(cats_of(x->db, "a.example", "/img/banners"), "");
    assert_string_equal(cats_of(x->db, "a.example", "/ac"), "misc");
    assert_string_equal(cats_of(x->db, "a.example", "/abc"), "misc");
    assert_string_equal(cats_of(x->db, "a.example", "/x7"), "misc");
    assert_string_equal(cats_of(x->db, "a.example", "/y7"), "");
    assert_string_equal(cats_of(x->db, "a.example", "/sponsor/abc"), "ads, misc");
}

static size_t jit_ready(const struct catdb *db)
{
    size_t n = 0;
    for (uint32_t i = 0; i < db->nexprs; i++)
        n += atomic_load(&db->jit[i].code) != NULL;
    return n;
}

static void *lookup_many(void *arg)
{
    struct catdb *db = arg;
    size_t bad = 0;
    for (int i = 0; i < 2000; i++) {
        struct catset s;
        catdb_lookup(db, "cdn.example", i % 2 ? "/files/payload42.exe" : "/files/payload.exe", &s);
        bad += s.n != (size_t)(i % 2);
    }
    return (void *)bad;
}

/* The JIT compiler (and its resident code) runs on an expression's first
 * match, not at open; results do not depend on whether the JIT copy is
 * ready, also when threads race to make it (catdb_impl.h: struct cdb_jit). */
static void test_expressions_are_jit_compiled_on_first_use(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    assert_int_equal(x->db->nexprs, 1);
    assert_int_equal(jit_ready(x->db), 0);
    assert_string_equal(cats_of(x->db, "cdn.example", "/files/setup42.exe"), "");
    assert_int_equal(jit_ready(x->db), 0);    /* no "/payload" in it: the prefilter ruled it out */
    assert_string_equal(cats_of(x->db, "cdn.example", "/files/payload42.exe"), "malware");
    uint32_t jit = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &jit);
    assert_int_equal(jit_ready(x->db), jit ? 1 : 0);
    assert_string_equal(cats_of(x->db, "cdn.example", "/files/payload42.exe"), "malware");
    assert_string_equal(cats_of(x->db, "cdn.example", "/files/payload42.exe.txt"), "");
    /* a fresh handle, first use from 4 threads at once */
    struct catdb *db;
    char err[UTIL_ERRLEN];
    assert_int_equal(catdb_open(x->db_path, &db, err, sizeof err), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, lookup_many, db), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(t[i], &bad);
        assert_int_equal((size_t)bad, 0);
    }
    assert_int_equal(jit_ready(db), jit ? 1 : 0);
    catdb_close(db);
}

static void test_symlinked_folder_is_an_alias_not_a_copy(void **state)
{
    struct fx *x = *state;
    char d[128], link[160];
    snprintf(d, sizeof d, "%s/lists", x->dir);
    write_file(d, "adult/domains", "adult.example\n");
    write_file(d, "drogue/domains", "drugs.example\n");
    write_file(d, "drugs", "drogue\n");              /* UT1 copy without symlinks */
    snprintf(link, sizeof link, "%s/porn", d);
    assert_int_equal(symlink("adult", link), 0);
    build(x);
    assert_int_equal(catdb_category_count(x->db), 2);
    assert_int_equal(catdb_alias_count(x->db), 2);
    assert_int_equal(catdb_category_id(x->db, "porn"), catdb_category_id(x->db, "adult"));
    assert_int_equal(catdb_category_id(x->db, "drugs"), catdb_category_id(x->db, "drogue"));
    assert_int_equal(catdb_category_id(x->db, "nope"), -1);
    struct catdb_info in;
    catdb_get_info(x->db, &in);
    assert_int_equal(in.domains, 2);               /* not counted twice */
    assert_string_equal(cats_of(x->db, "adult.example", NULL), "adult");
}

static void test_display_names_by_language_with_english_fallback(void **state)
{
    struct fx *x = *state;
    char d[128];
    snprintf(d, sizeof d, "%s/lists", x->dir);
    write_file(d, "gambling/domains", "casino.example\n");
    write_file(d, "bank/domains", "bank.example\n");
    write_file(d, "global_usage",
               "# comment\nNAME:\tgambling\nDESC EN: Casinos.\nNAME EN: Gambling\nNAME JA: ギャンブル\n"
               "NAME FR: Jeux d'argent\n\nNAME: unknown_cat\nNAME EN: Nothing\n");
    build(x);
    uint16_t g = (uint16_t)catdb_category_id(x->db, "gambling");
    uint16_t b = (uint16_t)catdb_category_id(x->db, "bank");
    assert_string_equal(catdb_category_display(x->db, g, "ja"), "ギャンブル");
    assert_string_equal(catdb_category_display(x->db, g, "ja-JP"), "ギャンブル");
    assert_string_equal(catdb_category_display(x->db, g, "fr"), "Jeux d'argent");
    assert_string_equal(catdb_category_display(x->db, g, "de"), "Gambling");
    assert_string_equal(catdb_category_display(x->db, g, NULL), "Gambling");
    assert_string_equal(catdb_category_description(x->db, g, "ja"), "Casinos.");
    assert_string_equal(catdb_category_display(x->db, b, "ja"), "bank");   /* no names: the folder name */
    assert_null(catdb_category_name(x->db, 999));
}

static void test_bad_lines_are_reported_with_file_and_line_and_skipped(void **state)
{
    struct fx *x = *state;
    char d[128];
    snprintf(d, sizeof d, "%s/lists", x->dir);
    write_file(d, "gambling/domains", "casino.example\nbad host.example\nbad..example\nok.example\nx/y.example\n");
    write_file(d, "gambling/urls", "games.example/poker\nbad host/path\n");
    write_file(d, "gambling/expressions", "(unclosed\n/fine[0-9]\n");
    build(x);
    char where[512];
    snprintf(where, sizeof where, "%s/gambling/domains:2: ", d);
    assert_non_null(strstr(x->diag, where));
    snprintf(where, sizeof where, "%s/gambling/domains:3: not a valid host name", d);
    assert_non_null(strstr(x->diag, where));
    snprintf(where, sizeof where, "%s/gambling/domains:5: a URL in a domains file", d);
    assert_non_null(strstr(x->diag, where));
    snprintf(where, sizeof where, "%s/gambling/urls:2: ", d);
    assert_non_null(strstr(x->diag, where));
    snprintf(where, sizeof where, "%s/gambling/expressions:1: bad regular expression", d);
    assert_non_null(strstr(x->diag, where));
    /* the good lines around them made it */
    assert_string_equal(cats_of(x->db, "ok.example", NULL), "gambling");
    assert_string_equal(cats_of(x->db, "casino.example", NULL), "gambling");
    assert_string_equal(cats_of(x->db, "games.example", "/poker"), "gambling");
    assert_string_equal(cats_of(x->db, "a.example", "/fine7"), "gambling");
}

static void test_same_category_in_two_folders_is_merged(void **state)
{
    struct fx *x = *state;
    char a[128], b[128], err[UTIL_ERRLEN];
    snprintf(a, sizeof a, "%s/a", x->dir);
    snprintf(b, sizeof b, "%s/b", x->dir);
    write_file(a, "gambling/domains", "casino.example\n");
    write_file(b, "gambling/domains", "bet.example\ncasino.example\n");
    write_file(b, "local/domains", "intranet.example\n");
    const char *dirs[2] = { a, b };
    assert_int_equal(compile_dirs(x, dirs, 2, err, sizeof err), 0);
    assert_int_equal(catdb_open(x->db_path, &x->db, err, sizeof err), 0);
    assert_int_equal(catdb_category_count(x->db), 2);
    assert_string_equal(cats_of(x->db, "bet.example", NULL), "gambling");
    assert_string_equal(cats_of(x->db, "intranet.example", NULL), "local");
    struct catdb_category_stats st;
    catdb_category_stats(x->db, (uint16_t)catdb_category_id(x->db, "gambling"), &st);
    assert_int_equal(st.domains, 2);
}

static void test_compile_refuses_a_folder_without_categories(void **state)
{
    struct fx *x = *state;
    char err[UTIL_ERRLEN], d[128];
    snprintf(d, sizeof d, "%s/empty", x->dir);
    assert_int_equal(util_mkdirs(d, 0755, NULL, 0), 0);
    const char *dirs[1] = { d };
    assert_true(compile_dirs(x, dirs, 1, err, sizeof err) < 0);
    assert_non_null(strstr(err, "no category folders found"));
    assert_int_equal(access(x->db_path, F_OK), -1);     /* no partial file */
    const char *missing[1] = { "/nonexistent/shoji-lists" };
    assert_true(compile_dirs(x, missing, 1, err, sizeof err) < 0);
}

/* ---- corrupt files ---- */

static unsigned char *read_all(const char *path, size_t *n)
{
    char *buf;
    assert_int_equal(util_read_file(path, 1 << 26, &buf, n, NULL, 0), 0);
    return (unsigned char *)buf;
}

static void write_all(const char *path, const unsigned char *p, size_t n)
{
    assert_int_equal(util_write_file_atomic(path, p, n, 0644, NULL, 0), 0);
}

static void expect_refused(const char *path, const char *why)
{
    struct catdb *db = NULL;
    char err[UTIL_ERRLEN] = "";
    assert_true(catdb_open(path, &db, err, sizeof err) < 0);
    assert_null(db);
    if (!strstr(err, why))
        fail_msg("expected '%s' in: %s", why, err);
}

static void test_corrupt_or_truncated_files_are_refused_with_a_clear_error(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    catdb_close(x->db);
    x->db = NULL;
    size_t n;
    unsigned char *good = read_all(x->db_path, &n);
    unsigned char *bad = malloc(n);
    assert_non_null(bad);
    char path[160];
    snprintf(path, sizeof path, "%s/bad.db", x->dir);

    memcpy(bad, good, n);
    bad[n / 2] ^= 0x40;                                  /* one flipped bit in the payload */
    write_all(path, bad, n);
    expect_refused(path, "checksum mismatch");

    memcpy(bad, good, n);
    bad[20] ^= 1;                                        /* in the header (build time) */
    write_all(path, bad, n);
    expect_refused(path, "header checksum mismatch");

    write_all(path, good, n - 100);                      /* truncated */
    expect_refused(path, "truncated");
    write_all(path, good, 10);
    expect_refused(path, "truncated");
    write_all(path, good, 0);
    expect_refused(path, "truncated");

    memcpy(bad, good, n);
    memcpy(bad, "NOTADB!!", 8);                          /* wrong magic */
    write_all(path, bad, n);
    expect_refused(path, "bad magic");

    memcpy(bad, good, n);
    bad[8] = 99;                                         /* format version 99 */
    write_all(path, bad, n);
    expect_refused(path, "unsupported format version 99");

    expect_refused("/nonexistent/categories.db", "No such file");
    free(bad);
    free(good);
}

/* Lists big enough that the database spans several of the 128 KiB reads
 * with which catdb_open verifies the payload: n domains, half with a URL. */
static void write_big_lists(const char *dir, int n)
{
    char p[160];
    snprintf(p, sizeof p, "%s/lists/big", dir);
    assert_int_equal(util_mkdirs(p, 0755, NULL, 0), 0);
    snprintf(p, sizeof p, "%s/lists/big/domains", dir);
    FILE *d = fopen(p, "w");
    snprintf(p, sizeof p, "%s/lists/big/urls", dir);
    FILE *u = fopen(p, "w");
    assert_non_null(d);
    assert_non_null(u);
    for (int i = 0; i < n; i++) {
        fprintf(d, "host%d.d%d.example\n", i, i % 97);
        if (i % 2)
            fprintf(u, "site%d.example/path/%d\n", i, i);
    }
    fclose(d);
    fclose(u);
}

/* Rss of the mapping of `path` in this process, in KiB; -1 if not mapped. */
static long mapping_rss_kib(const char *path)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[1024];
    int in = 0;
    long rss = -1;
    while (fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strchr(line, ':') && line[0] != ' ' && strstr(line, " r")) {
            size_t n = strlen(line);
            if (n && line[n - 1] == '\n')
                line[n - 1] = '\0';
            in = strlen(line) >= strlen(path) && strcmp(line + strlen(line) - strlen(path), path) == 0;
        } else if (in && strncmp(line, "Rss:", 4) == 0) {
            rss = atol(line + 4);
            in = 0;
        }
    }
    fclose(f);
    return rss;
}

static void test_a_flipped_bit_anywhere_in_a_multi_chunk_file_is_refused(void **state)
{
    struct fx *x = *state;
    write_big_lists(x->dir, 20000);
    build(x);
    catdb_close(x->db);
    x->db = NULL;
    size_t n;
    unsigned char *good = read_all(x->db_path, &n);
    assert_true(n > 3 * 128 * 1024);
    unsigned char *bad = malloc(n);
    assert_non_null(bad);
    char path[160];
    snprintf(path, sizeof path, "%s/bad.db", x->dir);
    /* the first payload byte, both sides of each read boundary, the last byte */
    size_t at[] = { 64, 128 * 1024 + 63, 128 * 1024 + 64, 2 * 128 * 1024 + 64, n - 1 };
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        memcpy(bad, good, n);
        bad[at[i]] ^= 0x01;
        write_all(path, bad, n);
        expect_refused(path, "checksum mismatch: the file is corrupt, recompile it");
    }
    write_all(path, good, n);                            /* and the good copy opens */
    struct catdb *db = NULL;
    char err[UTIL_ERRLEN];
    assert_int_equal(catdb_open(path, &db, err, sizeof err), 0);
    catdb_close(db);
    free(bad);
    free(good);
}

/* Opening verifies the whole file without making it resident in the
 * process: the mapping holds no pages until lookups touch them, and an
 * idle agent (names resolved, no lookups) holds none. */
static void test_open_leaves_the_mapping_unresident_until_lookups(void **state)
{
    struct fx *x = *state;
    write_big_lists(x->dir, 20000);
    build(x);
    assert_int_equal(mapping_rss_kib(x->db_path), 0);
    /* resolving names (what the policy does at load) does not touch it either */
    int id = catdb_category_id(x->db, "big");
    assert_true(id >= 0);
    assert_string_equal(catdb_category_name(x->db, (uint16_t)id), "big");
    assert_int_equal(catdb_category_id(x->db, "nosuch"), -1);
    assert_int_equal(mapping_rss_kib(x->db_path), 0);
    assert_string_equal(cats_of(x->db, "a.host77.d77.example", "/"), "big");
    assert_string_equal(cats_of(x->db, "site77.example", "/path/77/x"), "big");
    assert_true(mapping_rss_kib(x->db_path) > 0);
}

static void test_offsets_out_of_range_are_refused_even_with_checksums_off(void **state)
{
    struct fx *x = *state;
    write_basic_lists(x->dir);
    build(x);
    size_t n;
    unsigned char *good = read_all(x->db_path, &n);
    uint64_t *copy = malloc(n + 8);
    assert_non_null(copy);
    struct catdb *db;
    char err[UTIL_ERRLEN];
    unsigned char *b = (unsigned char *)copy;
    /* section table at 64: entries of {u32 id, u32 pad, u64 offset, u64 size} */
    memcpy(b, good, n);
    uint64_t huge = n + 4096;
    memcpy(b + 64 + 8, &huge, 8);                        /* first section's offset */
    assert_true(catdb_open_mem(b, n, CATDB_OPEN_NO_CHECKSUM, &db, err, sizeof err) < 0);
    assert_non_null(strstr(err, "out of range"));
    memcpy(b, good, n);
    memcpy(b + 64 + 16, &huge, 8);                       /* first section's size */
    assert_true(catdb_open_mem(b, n, CATDB_OPEN_NO_CHECKSUM, &db, err, sizeof err) < 0);
    assert_non_null(strstr(err, "out of range"));
    memcpy(b, good, n);
    assert_int_equal(catdb_open_mem(b, n, 0, &db, err, sizeof err), 0);   /* the intact copy opens */
    catdb_close(db);
    assert_true(catdb_open_mem(b + 1, n - 1, 0, &db, err, sizeof err) < 0);  /* misaligned */
    free(copy);
    free(good);
}

/* ---- real data ---- */

static int shared_ut1(char *out, size_t cap)
{
    const char *s = getenv("SHOJI_SHARED_DIR");
    if (s)
        snprintf(out, cap, "%s/data/ut1", s);
    else
        snprintf(out, cap, "%s/../shared/data/ut1",
                 getenv("SHOJI_SOURCE_DIR") ? getenv("SHOJI_SOURCE_DIR") : SHOJI_SOURCE_DIR);
    struct stat st;
    return stat(out, &st) == 0 && S_ISDIR(st.st_mode);
}

static void first_line(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, (int)cap, f));
    out[strcspn(out, "\r\n")] = '\0';
    fclose(f);
}

static void test_real_ut1_slice_compiles_and_finds_known_entries(void **state)
{
    struct fx *x = *state;
    char ut1[600], cmd[3000], line[256], p[700];
    if (!shared_ut1(ut1, sizeof ut1)) {
        print_message("SKIP: UT1 lists not found at %s (set SHOJI_SHARED_DIR)\n", ut1);
        skip();
    }
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/lists' && cp -r '%s/gambling' '%s/bank' '%s/social_networks' '%s/lists/'",
             x->dir, ut1, ut1, ut1, x->dir);
    assert_int_equal(system(cmd), 0);
    build(x);
    assert_int_equal(catdb_category_count(x->db), 3);
    snprintf(p, sizeof p, "%s/gambling/domains", ut1);
    first_line(p, line, sizeof line);
    assert_string_equal(cats_of(x->db, line, NULL), "gambling");
    char sub[300];
    snprintf(sub, sizeof sub, "www.%s", line);
    assert_string_equal(cats_of(x->db, sub, "/"), "gambling");
    snprintf(p, sizeof p, "%s/bank/domains", ut1);
    first_line(p, line, sizeof line);
    assert_string_equal(cats_of(x->db, line, NULL), "bank");
    snprintf(p, sizeof p, "%s/social_networks/domains", ut1);
    first_line(p, line, sizeof line);
    assert_string_equal(cats_of(x->db, line, NULL), "social_networks");
    /* gambling/urls holds host/path prefixes */
    snprintf(p, sizeof p, "%s/gambling/urls", ut1);
    first_line(p, line, sizeof line);
    char *slash = strchr(line, '/');
    assert_non_null(slash);
    *slash = '\0';
    char path[300];
    snprintf(path, sizeof path, "/%s", slash + 1);
    assert_non_null(strstr(cats_of(x->db, line, path), "gambling"));
    assert_string_equal(cats_of(x->db, "shoji-no-such-host.example", NULL), "");
    struct catdb_info in;
    catdb_get_info(x->db, &in);
    assert_true(in.domains > 30000);
}

static void test_shipped_sample_lists_compile(void **state)
{
    struct fx *x = *state;
    char d[600], err[UTIL_ERRLEN];
    snprintf(d, sizeof d, "%s/data/categories", getenv("SHOJI_SOURCE_DIR") ? getenv("SHOJI_SOURCE_DIR") : SHOJI_SOURCE_DIR);
    const char *dirs[1] = { d };
    assert_int_equal(compile_dirs(x, dirs, 1, err, sizeof err), 0);
    assert_string_equal(x->diag, "");                    /* no bad lines in what we ship */
    assert_int_equal(catdb_open(x->db_path, &x->db, err, sizeof err), 0);
    assert_string_equal(cats_of(x->db, "poker.test", NULL), "gambling, games");
    assert_string_equal(cats_of(x->db, "www.casino.example.", NULL), "gambling");
    assert_string_equal(cats_of(x->db, "blog.example", "/news/today"), "news");
    assert_string_equal(cats_of(x->db, "cdn.example", "/payload12.exe"), "malware");
    assert_string_equal(cats_of(x->db, "x.example", "/banner/a.gif"), "ads");
    assert_string_equal(cats_of(x->db, "ample.example", NULL), "");
    assert_int_equal(catdb_category_id(x->db, "porn"), catdb_category_id(x->db, "adult"));
    uint16_t g = (uint16_t)catdb_category_id(x->db, "gambling");
    assert_string_equal(catdb_category_display(x->db, g, "ja"), "ギャンブル");
}

static void test_split_url_and_catset(void **state)
{
    (void)state;
    char h[CATDB_HOST_MAX];
    const char *path;
    assert_int_equal(catdb_split_url("https://user@WWW.Example.COM:8443/a/b?c#d", h, sizeof h, &path), 0);
    assert_string_equal(h, "www.example.com");
    assert_string_equal(path, "/a/b?c#d");
    assert_int_equal(catdb_split_url("example.com", h, sizeof h, &path), 0);
    assert_string_equal(path, "");
    assert_int_equal(catdb_split_url("http://[::1]:80/x", h, sizeof h, &path), 0);
    assert_string_equal(h, "::1");
    assert_true(catdb_split_url("http:///x", h, sizeof h, &path) < 0);
    struct catset s = { 0 };
    for (int i = 40; i >= 0; i--)
        catset_add(&s, (uint16_t)(i % 20));
    assert_int_equal(s.n, CATSET_MAX);
    for (uint16_t i = 1; i < s.n; i++)
        assert_true(s.id[i - 1] < s.id[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_subdomain_walk_matches_parent_domain_but_not_lookalike, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_in_several_categories_gets_all_of_them, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_is_normalised_case_trailing_dot_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idn_hosts_are_converted_to_punycode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_literals_match_exactly_never_by_suffix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url_prefixes_match_at_path_boundaries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expressions_match_the_whole_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expressions_with_and_without_required_literals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expressions_are_jit_compiled_on_first_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinked_folder_is_an_alias_not_a_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_display_names_by_language_with_english_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines_are_reported_with_file_and_line_and_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_category_in_two_folders_is_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compile_refuses_a_folder_without_categories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_or_truncated_files_are_refused_with_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offsets_out_of_range_are_refused_even_with_checksums_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_flipped_bit_anywhere_in_a_multi_chunk_file_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_leaves_the_mapping_unresident_until_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_ut1_slice_compiles_and_finds_known_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_sample_lists_compile, setup, teardown),
        cmocka_unit_test(test_split_url_and_catset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
