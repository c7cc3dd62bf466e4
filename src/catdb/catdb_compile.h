/* catdb_compile: reads category lists in the squidGuard / UT1 layout (one
 * folder per category holding `domains`, `urls`, `expressions`; symlinked
 * folders, or small files naming a sibling folder, are aliases; a top-level
 * `global_usage` gives display names) and writes one database file for
 * catdb_open(). Used by `shoji catdb compile`.
 * Must never: stop at a bad line (it is reported as file:line: reason and
 * skipped), follow an alias into a copy of a category, or leave a partial
 * output file (the file is written atomically). */
#ifndef SHOJI_CATDB_COMPILE_H
#define SHOJI_CATDB_COMPILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct catdb_compile_opts {
    FILE *progress;         /* one line per category and a summary; NULL: quiet */
    FILE *diag;             /* bad lines as "file:line: reason"; NULL: not shown */
    int64_t build_time;     /* unix seconds written into the file; 0: now */
    uint64_t max_diag;      /* bad lines shown before "... more"; 0: 1000 */
};

struct catdb_compile_result {
    uint32_t categories, aliases, keys, expressions;
    uint64_t domains, urls;     /* entries after de-duplication */
    uint64_t bad_lines, duplicates;
    uint64_t file_size;
    double seconds;
};

/* Each DIR is either a collection (a folder of category folders, like UT1's
 * root) or one category folder (holding `domains`/`urls` itself; the folder
 * name is the category). Categories of the same name in several DIRs are
 * merged. Returns 0 (bad lines are not an error) or negative with err set. */
int catdb_compile(const char *const *dirs, size_t ndirs, const char *out_path,
                  const struct catdb_compile_opts *opts, struct catdb_compile_result *res,
                  char *err, size_t errlen);

/* The line parsers (exposed for tests and the fuzzer). Return 1 for an
 * entry, 0 for a blank or comment line, -1 for a bad line with *reason set.
 * domains: "example.com" (a leading "." or "*." is accepted) -> host.
 * urls: "example.com/path" (scheme tolerated) -> host with a leading
 * "www[0-9]*." removed, and the lower-case path starting with '/'. */
int catdb_parse_domain_line(const char *line, size_t len, char *host, size_t cap,
                            const char **reason);
int catdb_parse_url_line(const char *line, size_t len, char *host, size_t hcap,
                         char *path, size_t pcap, const char **reason);

#endif
