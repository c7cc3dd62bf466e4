/* `shoji catdb`: compile | lookup | info the category database (see
 * docs/CLI.md and docs/CATDB.md). */
#include "catdb/catdb.h"
#include "catdb/catdb_compile.h"
#include "cli/cli.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CATDB_DEFAULT_PATH CLI_DEFAULT_STATE_DIR "/categories.db"
#define MAX_DIRS 64

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shoji catdb compile DIR... -o FILE [--quiet]\n"
            "       shoji catdb lookup [--db FILE] [--lang LANG] URL...\n"
            "       shoji catdb info [--db FILE]\n"
            "\n"
            "compile  reads squidGuard/UT1 list folders (DIR/CATEGORY/domains, urls,\n"
            "         expressions; DIR/global_usage) into one database file\n"
            "lookup   prints the categories of each URL (host or scheme://host/path)\n"
            "info     prints the database's categories, counts, build time and format\n"
            "--db defaults to %s\n",
            CATDB_DEFAULT_PATH);
}

static int cmd_compile(int argc, char **argv)
{
    const char *dirs[MAX_DIRS], *out = NULL;
    size_t ndirs = 0;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "-o", &out)) != 0 || (r = cli_opt(argc, argv, &i, "--output", &out)) != 0) {
            if (r < 0)
                return 2;
        } else if (cli_flag(argv, i, "--quiet") || cli_flag(argv, i, "-q")) {
            quiet = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "shoji catdb compile: unknown option %s\n", argv[i]);
            return 2;
        } else if (ndirs == MAX_DIRS) {
            fprintf(stderr, "shoji catdb compile: at most %d folders\n", MAX_DIRS);
            return 2;
        } else {
            dirs[ndirs++] = argv[i];
        }
    }
    if (!out || ndirs == 0) {
        fprintf(stderr, "shoji catdb compile: needs at least one DIR and -o FILE\n");
        usage(stderr);
        return 2;
    }
    struct catdb_compile_opts o = { quiet ? NULL : stderr, stderr, 0, 0 };
    struct catdb_compile_result r;
    char err[UTIL_ERRLEN];
    if (!quiet)
        fprintf(stderr, "compiling %zu folder%s into %s\n", ndirs, ndirs == 1 ? "" : "s", out);
    if (catdb_compile(dirs, ndirs, out, &o, &r, err, sizeof err) < 0) {
        fprintf(stderr, "shoji catdb compile: %s\n", err);
        return 1;
    }
    fprintf(stderr,
            "compiled %u categories (+%u aliases): %llu domains, %llu URL prefixes, %u expressions, "
            "%llu duplicates skipped, %llu bad lines; wrote %s (%.1f MiB) in %.2f s\n",
            r.categories, r.aliases, (unsigned long long)r.domains, (unsigned long long)r.urls, r.expressions,
            (unsigned long long)r.duplicates, (unsigned long long)r.bad_lines, out,
            (double)r.file_size / (1024.0 * 1024.0), r.seconds);
    return 0;
}

/* Parses the common options of lookup/info; returns the index of the first
 * operand, or -1 on a usage error. */
static int db_opts(int argc, char **argv, const char **db, const char **lang)
{
    int i = 1;
    for (; i < argc; i++) {
        int r;
        if ((r = cli_opt(argc, argv, &i, "--db", db)) != 0) {
            if (r < 0)
                return -1;
        } else if (lang && (r = cli_opt(argc, argv, &i, "--lang", lang)) != 0) {
            if (r < 0)
                return -1;
        } else if (!strcmp(argv[i], "--")) {
            return i + 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "shoji catdb: unknown option %s\n", argv[i]);
            return -1;
        } else {
            break;
        }
    }
    return i;
}

static void print_set(const struct catdb *db, const struct catset *s, const char *lang)
{
    if (s->n == 0) {
        printf("(none)");
        return;
    }
    for (uint16_t k = 0; k < s->n; k++)
        printf("%s%s (%s)", k ? ", " : "", catdb_category_name(db, s->id[k]),
               catdb_category_display(db, s->id[k], lang));
}

static int cmd_lookup(int argc, char **argv)
{
    const char *path = CATDB_DEFAULT_PATH, *lang = "en";
    int i = db_opts(argc, argv, &path, &lang);
    if (i < 0 || i >= argc) {
        if (i >= 0)
            fprintf(stderr, "shoji catdb lookup: needs at least one URL\n");
        usage(stderr);
        return 2;
    }
    struct catdb *db;
    char err[UTIL_ERRLEN];
    if (catdb_open(path, &db, err, sizeof err) < 0) {
        fprintf(stderr, "shoji catdb lookup: %s\n", err);
        return 1;
    }
    int rc = 0;
    for (; i < argc; i++) {
        char host[CATDB_HOST_MAX];
        const char *upath;
        if (catdb_split_url(argv[i], host, sizeof host, &upath) < 0) {
            fprintf(stderr, "shoji catdb lookup: %s: not a valid URL or host name\n", argv[i]);
            rc = 1;
            continue;
        }
        struct catset s;
        catdb_lookup(db, host, upath, &s);
        printf("%s -> ", argv[i]);
        print_set(db, &s, lang);
        putchar('\n');
    }
    catdb_close(db);
    return rc;
}

static void print_info(const struct catdb *db, const char *path, double load_ms)
{
    struct catdb_info in;
    catdb_get_info(db, &in);
    char when[64];
    time_t t = (time_t)in.build_time;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm))
        util_strlcpy(when, "?", sizeof when);
    printf("file            %s\nformat version  %u\nbuilt           %s (%lld)\n", path, in.format_version, when,
           (long long)in.build_time);
    printf("size            %llu bytes (%.1f MiB)\nload            %.2f ms (open + verify)\n",
           (unsigned long long)in.file_size, (double)in.file_size / (1024.0 * 1024.0), load_ms);
    printf("categories      %u (+%u aliases)\nhosts           %u\ndomains         %llu\nURL prefixes    %llu\n"
           "expressions     %u\n\n",
           in.categories, in.aliases, in.keys, (unsigned long long)in.domains, (unsigned long long)in.urls,
           in.expressions);
    printf("%-26s %9s %7s %5s  %s\n", "category", "domains", "urls", "expr", "name (en / ja / fr)");
    for (uint16_t id = 0; id < catdb_category_count(db); id++) {
        struct catdb_category_stats st;
        catdb_category_stats(db, id, &st);
        printf("%-26s %9u %7u %5u  %s / %s / %s\n", catdb_category_name(db, id), st.domains, st.urls, st.expressions,
               catdb_category_display(db, id, "en"), catdb_category_display(db, id, "ja"),
               catdb_category_display(db, id, "fr"));
    }
    for (size_t i = 0; i < catdb_alias_count(db); i++) {
        uint16_t target;
        const char *name = catdb_alias_name(db, i, &target);
        printf("%-26s alias of %s\n", name, catdb_category_name(db, target));
    }
}

static int cmd_info(int argc, char **argv)
{
    const char *path = CATDB_DEFAULT_PATH;
    int i = db_opts(argc, argv, &path, NULL);
    if (i < 0 || i < argc) {
        if (i >= 0)
            fprintf(stderr, "shoji catdb info: unexpected argument %s\n", argv[i]);
        usage(stderr);
        return 2;
    }
    struct catdb *db;
    char err[UTIL_ERRLEN];
    uint64_t t0 = util_mono_us();
    if (catdb_open(path, &db, err, sizeof err) < 0) {
        fprintf(stderr, "shoji catdb info: %s\n", err);
        return 1;
    }
    print_info(db, path, (double)(util_mono_us() - t0) / 1000.0);
    catdb_close(db);
    return 0;
}

int cli_catdb(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "compile"))
        return cmd_compile(argc - 1, argv + 1);
    if (!strcmp(argv[1], "lookup"))
        return cmd_lookup(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info"))
        return cmd_info(argc - 1, argv + 1);
    fprintf(stderr, "shoji catdb: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
