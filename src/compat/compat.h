/* compat: the compatibility catalog — products known to break under HTTPS
 * inspection, their symptoms, and the workarounds as data (decode exclusion
 * hosts, filtering-disabled applications, steps in the other product) — and
 * detection of those products on this machine.
 *
 * The shipped catalog (data/compat.json) is compiled into the binary; env
 * SHOJI_COMPAT_CATALOG names a file that replaces it (development). A site's
 * own catalog file (same schema, data/compat.schema.json) extends it: an entry
 * with the same id replaces the shipped one.
 *
 * Must never: accept a catalog that breaks the schema (the whole file is
 * refused, naming the entry and field), keep half a file, trust sizes or
 * strings in it, or abort. */
#ifndef SHOJI_COMPAT_H
#define SHOJI_COMPAT_H

#include <stdbool.h>
#include <stddef.h>

#define COMPAT_FILE_MAX (4u * 1024 * 1024)
#define COMPAT_ENTRIES_MAX 4096

/* A list of strings owned by the catalog. */
struct compat_strs {
    const char **v;
    size_t n;
};

struct compat_ja_en {
    const char *ja, *en;
};

/* One way to fix a symptom: every item is needed; any one workaround of an
 * entry is enough. */
struct compat_workaround {
    struct compat_strs exclude_hosts;   /* decode.exclude_hosts patterns */
    struct compat_strs disabled_apps;   /* filtering-disabled application names */
    const char *site_specific;          /* a host the admin must name, described; or NULL */
    struct compat_strs steps_ja;        /* steps in the other product; n == 0 if none */
    struct compat_strs steps_en;
};

struct compat_entry {
    const char *id, *vendor, *product, *product_as_in_note, *versions;
    struct compat_ja_en symptom;
    const char *condition_kind;         /* coexistence | install_order | install_order_or_coexistence */
    struct compat_strs condition_order; /* install order, first to last */
    struct compat_ja_en condition;
    struct compat_workaround *workarounds;
    size_t nworkarounds;
    struct compat_strs windows_processes, linux_processes, debian_packages;
    const char *source_title, *source_publisher, *source_date, *source_section;
    int source_page;                    /* 0 if not given */
    struct compat_strs uncertain;
    const char *origin;                 /* "shipped" or the file it came from */
    const char *replaced_origin;        /* the origin it replaced, or NULL */
};

struct compat_catalog;

/* An empty catalog. */
struct compat_catalog *compat_catalog_new(void);
void compat_catalog_free(struct compat_catalog *c);

/* The shipped catalog (or SHOJI_COMPAT_CATALOG's file). */
int compat_catalog_load_shipped(struct compat_catalog **out, char *err, size_t errlen);

/* Adds the entries of a catalog text / file. All or nothing: on error the
 * catalog is unchanged and err reads e.g.
 *   "site.json: entry 3 (\"foo-bar\"): field `workarounds[0].exclude_hosts[1]`: expected a host, IP or certificate name, got \"a b\""
 * An entry whose id is already present replaces it (entry->replaced_origin
 * says which origin lost). Returns the number of entries added or replaced. */
int compat_catalog_add_text(struct compat_catalog *c, const char *text, size_t len,
                            const char *origin, char *err, size_t errlen);
int compat_catalog_add_file(struct compat_catalog *c, const char *path, char *err, size_t errlen);

size_t compat_catalog_count(const struct compat_catalog *c);
const struct compat_entry *compat_catalog_get(const struct compat_catalog *c, size_t i);
const struct compat_entry *compat_catalog_find(const struct compat_catalog *c, const char *id);

/* The first entry one of whose exclude_hosts patterns matches `host` (glob
 * with `*`, case-insensitive, exact IP or certificate name), or NULL. */
const struct compat_entry *compat_match_host(const struct compat_catalog *c, const char *host);
/* The first entry naming `app` as a disabled application or a detection
 * process (case-insensitive, with or without ".exe"), or NULL. */
const struct compat_entry *compat_match_app(const struct compat_catalog *c, const char *app);

/* Case-insensitive glob (`*` = any run of characters) over whole strings. */
bool compat_glob_match(const char *pattern, const char *s);
/* Application names equal ignoring case and a trailing ".exe". */
bool compat_app_eq(const char *a, const char *b);

/* ---- detection (detect.c) ---- */

/* What was found of one entry on this machine. */
struct compat_found {
    const struct compat_entry *entry;
    char what[256];      /* "process NTRTSCAN (pid 1234)" or "package kesl" */
};

/* Names of the running processes (comm and exe basename) and installed
 * Debian packages; filled by compat_scan_system, freed by compat_scan_free. */
struct compat_scan {
    char **procs;        /* "name\tpid" */
    size_t nprocs;
    char **pkgs;
    size_t npkgs;
};
int compat_scan_system(struct compat_scan *s, char *err, size_t errlen);
void compat_scan_free(struct compat_scan *s);

/* Entries whose processes or packages appear in the scan, in catalog order;
 * heap array the caller frees. */
int compat_detect(const struct compat_catalog *c, const struct compat_scan *s,
                  struct compat_found **out, size_t *n);

#endif
