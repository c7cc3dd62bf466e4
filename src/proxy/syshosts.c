/* proxy/syshosts: see syshosts.h. */
#include "proxy/syshosts.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/util.h"

#define RECHECK_MS 1000

void syshosts_init(struct syshosts *s, const char *hosts_path, const char *nsswitch_path)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    util_strlcpy(s->hosts_path, hosts_path, sizeof s->hosts_path);
    util_strlcpy(s->nsswitch_path, nsswitch_path, sizeof s->nsswitch_path);
}

void syshosts_free(struct syshosts *s)
{
    hosts_free(&s->h);
    pthread_mutex_destroy(&s->mu);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* True when the `hosts:` line's first source is `files`. */
static bool files_first(const char *text)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "hosts:", 6) != 0)
            continue;
        p += 6;
        while (*p == ' ' || *p == '\t')
            p++;
        return strncmp(p, "files", 5) == 0 && (p[5] == '\0' || isspace((unsigned char)p[5]));
    }
    return false;   /* no hosts line: glibc's default asks DNS first */
}

static bool load_nsswitch(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (util_read_file(path, SYSHOSTS_MAX_BYTES, &text, &len, NULL, 0) < 0)
        return false;
    bool ok = files_first(text);
    free(text);
    return ok;
}

/* Caller holds s->mu. Re-reads both files when either changed. */
static void refresh(struct syshosts *s, uint64_t now_ms)
{
    struct stat hst, nst;
    if (s->checked && now_ms - s->checked_ms < RECHECK_MS)
        return;
    s->checked_ms = now_ms;
    bool have_h = stat(s->hosts_path, &hst) == 0, have_n = stat(s->nsswitch_path, &nst) == 0;
    if (s->checked && have_h && have_n && same_file(&hst, &s->hosts_st) &&
        same_file(&nst, &s->ns_st))
        return;
    s->checked = true;
    s->usable = false;
    hosts_free(&s->h);
    memset(&s->hosts_st, 0, sizeof s->hosts_st);
    memset(&s->ns_st, 0, sizeof s->ns_st);
    if (!have_h || !have_n)
        return;
    s->hosts_st = hst;
    s->ns_st = nst;
    if (hst.st_size > SYSHOSTS_MAX_BYTES || !load_nsswitch(s->nsswitch_path))
        return;
    char *text = NULL, err[UTIL_ERRLEN];
    size_t len = 0, lines = 0;
    if (util_read_file(s->hosts_path, SYSHOSTS_MAX_BYTES, &text, &len, err, sizeof err) < 0) {
        log_debug("%s: not used by the agent (%s)", s->hosts_path, err);
        return;
    }
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    /* more lines than names allowed (comments count too): not parsed */
    int rc = lines <= SYSHOSTS_MAX_NAMES ? hosts_parse(text, len, s->hosts_path, &s->h, NULL, err,
                                                       sizeof err)
                                         : -1;
    free(text);
    if (rc < 0 || s->h.n > SYSHOSTS_MAX_NAMES) {
        log_debug("%s: more than %d names, or unreadable: left to getaddrinfo", s->hosts_path,
                  SYSHOSTS_MAX_NAMES);
        hosts_free(&s->h);
        return;
    }
    s->usable = true;
}

size_t syshosts_lookup(struct syshosts *s, const char *name, struct sockaddr_storage *out,
                       size_t max, uint64_t now_ms)
{
    pthread_mutex_lock(&s->mu);
    refresh(s, now_ms);
    size_t n = s->usable ? hosts_lookup(&s->h, name, out, max) : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}
