/* policy_int: the compiled policy, shared by the loader (load.c), decide()
 * (decide.c) and the templates (templates.c). Internal to src/policy/.
 * Must never: be included from outside src/policy/ (use policy.h). */
#ifndef SHOJI_POLICY_INT_H
#define SHOJI_POLICY_INT_H

#include "policy/pattern.h"
#include "policy/policy.h"

/* Category actions. 0 = no rule. */
enum pol_cat_action { PCA_NONE = 0, PCA_ALLOW, PCA_VIEW_ONLY, PCA_BLOCK };

/* A per-category rule by name, before it is resolved against the db. */
struct pol_cat_rule {
    char *name;                  /* "gambling" */
    enum pol_cat_action action;
    bool from_template;          /* else from the file's `categories` */
};

struct pol_cat_rules {
    struct pol_cat_rule *r;
    size_t n;
    uint8_t *by_id;              /* resolved: category id -> action (db count) */
    int32_t *rule_of_id;         /* category id -> index into r, -1 */
};

struct pol_schedule {
    uint8_t days;                /* bit 0 = Sunday */
    int from, to;                /* minutes since midnight; to < from crosses midnight */
    struct pol_cat_rules cats;
};

/* {"app": "skypeapp", "hosts": [...]} */
struct pol_app_hosts {
    char *app;                   /* as written */
    struct pat_set *hosts;
    int index;                   /* position in disabled_apps */
    int32_t next;                /* next entry for the same app (position) */
};

struct policy {
    int refs;                    /* atomic */
    char *path;                  /* the file, or the origin of a text */
    char *template_name;
    bool default_block;
    bool default_allow_explicit;
    struct catdb *db;
    char *db_path;
    struct pat_set *bypass, *allow, *view_only, *block;
    bool decode_enabled;
    struct pat_set *exclude;
    char **skip_cats;            /* names */
    int *skip_ids;               /* their ids in db (-1: not in it) */
    size_t nskip;
    struct pol_cat_rules cats;   /* template + file's `categories` */
    struct pol_schedule *sched;
    size_t nsched;
    struct pmap apps;            /* normalized app name -> disabled_apps index */
    char **app_texts;            /* disabled_apps[i] text as written (or NULL) */
    size_t napp_texts;
    struct pmap apps15;          /* first 15 bytes (Linux comm) -> index */
    struct pol_app_hosts *app_hosts;
    size_t napp_hosts;
    struct pmap app_hosts_map;   /* normalized app -> first app_hosts position */
    char **write_cats;
    int *write_ids;
    size_t nwrite;
    unsigned safe_search;        /* bit per enum policy_engine */
    struct policy_auto_avoid auto_avoid;
    char *block_page_dir;
};

struct policy *pol_new(void);
void pol_cat_rules_free(struct pol_cat_rules *c);
/* Resolves rule names to ids of `db` (no-op without a db). */
int pol_cat_rules_resolve(struct pol_cat_rules *c, const struct catdb *db);
/* Sets (or overrides) the action for a category name. */
int pol_cat_rules_set(struct pol_cat_rules *c, const char *name, enum pol_cat_action a,
                      bool from_template);
const char *pol_cat_action_name(enum pol_cat_action a);
/* Category names -> ids of db (aliases resolved; -1 when absent). Heap. */
int *pol_cat_ids(const struct catdb *db, char *const *names, size_t n);

/* templates.c */
struct pol_template_entry {
    const char *category;
    enum pol_cat_action action;
};
/* The entries of a template (NULL if the name is unknown). */
const struct pol_template_entry *pol_template(const char *name, size_t *n);
extern const char *const pol_template_names[];
/* Known UT1 category names (for "did you mean" and validation). */
extern const char *const pol_ut1_categories[];

/* jsonpos.c */
/* The 1-based line of the value at `path` ("decode.exclude_hosts[2]") in a
 * JSON text, or of the closest enclosing value found; 0 if none. */
int pol_json_line(const char *text, size_t len, const char *path);
/* The closest candidate to `word` within a small edit distance, or NULL. */
const char *pol_did_you_mean(const char *word, const char *const *cands, size_t n);

#endif
