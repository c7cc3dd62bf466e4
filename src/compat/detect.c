/* compat detect: which catalog products are present on this machine, from the
 * running processes (/proc: comm and the executable's basename) and the
 * installed Debian packages (dpkg-query). See compat.h. */
#include "compat/compat.h"

#include "util/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define SCAN_MAX 100000   /* names kept from /proc or dpkg, each */

static int push(char ***v, size_t *n, size_t *cap, const char *s)
{
    if (*n >= SCAN_MAX)
        return 0;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        char **nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = nc;
    }
    if (!((*v)[*n] = strdup(s)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* Reads /proc/PID/comm and the basename of /proc/PID/exe (either may be
 * unreadable: kernel threads, other users' processes when not root). */
static void proc_names(const char *pid, char *comm, size_t commlen, char *exe, size_t exelen)
{
    char p[64];
    comm[0] = exe[0] = '\0';
    snprintf(p, sizeof p, "/proc/%.20s/comm", pid);   /* a pid: at most 10 digits */
    FILE *f = fopen(p, "re");
    if (f) {
        if (fgets(comm, (int)commlen, f))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
    }
    char link[4096];
    snprintf(p, sizeof p, "/proc/%.20s/exe", pid);
    ssize_t r = readlink(p, link, sizeof link - 1);
    if (r > 0) {
        link[r] = '\0';
        char *del = strstr(link, " (deleted)");
        if (del && del[10] == '\0')
            *del = '\0';
        const char *base = strrchr(link, '/');
        util_strlcpy(exe, base ? base + 1 : link, exelen);
    }
}

static int scan_procs(struct compat_scan *s, size_t *cap)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -errno;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        char comm[64], exe[256], item[600];
        proc_names(de->d_name, comm, sizeof comm, exe, sizeof exe);
        if (comm[0]) {
            snprintf(item, sizeof item, "%s\t%s", comm, de->d_name);
            rc = push(&s->procs, &s->nprocs, cap, item);
        }
        if (rc == 0 && exe[0] && strcmp(exe, comm) != 0) {
            snprintf(item, sizeof item, "%s\t%s", exe, de->d_name);
            rc = push(&s->procs, &s->nprocs, cap, item);
        }
    }
    closedir(d);
    return rc;
}

/* Installed packages: "ii  name" lines of dpkg-query. No dpkg: no packages. */
static int scan_pkgs(struct compat_scan *s)
{
    size_t cap = 0;
    FILE *p = popen("dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' 2>/dev/null", "re");
    if (!p)
        return 0;
    char line[512];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "ii ", 3) != 0)
            continue;
        char *name = line + 3;
        while (*name == ' ')
            name++;
        name[strcspn(name, ": ")] = '\0';
        if (*name)
            rc = push(&s->pkgs, &s->npkgs, &cap, name);
    }
    pclose(p);
    return rc;
}

int compat_scan_system(struct compat_scan *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    size_t cap = 0;
    int rc = scan_procs(s, &cap);
    if (rc < 0) {
        compat_scan_free(s);
        return util_err(err, errlen, rc, "cannot list processes in /proc: %s", strerror(-rc));
    }
    rc = scan_pkgs(s);
    if (rc < 0) {
        compat_scan_free(s);
        return util_err(err, errlen, rc, "out of memory listing packages");
    }
    return 0;
}

void compat_scan_free(struct compat_scan *s)
{
    for (size_t i = 0; i < s->nprocs; i++)
        free(s->procs[i]);
    for (size_t i = 0; i < s->npkgs; i++)
        free(s->pkgs[i]);
    free(s->procs);
    free(s->pkgs);
    memset(s, 0, sizeof *s);
}

/* Whether a process named in `names` runs; describes the first into `what`. */
static bool find_proc(const struct compat_strs *names, const struct compat_scan *s,
                      char *what, size_t whatlen)
{
    for (size_t i = 0; i < s->nprocs; i++) {
        char name[300];
        util_strlcpy(name, s->procs[i], sizeof name);
        char *tab = strchr(name, '\t');
        const char *pid = "?";
        if (tab) {
            *tab = '\0';
            pid = tab + 1;
        }
        for (size_t k = 0; k < names->n; k++)
            if (compat_app_eq(names->v[k], name)) {
                snprintf(what, whatlen, "process %.200s (pid %.20s)", name, pid);
                return true;
            }
    }
    return false;
}

static bool find_pkg(const struct compat_strs *names, const struct compat_scan *s,
                     char *what, size_t whatlen)
{
    for (size_t i = 0; i < s->npkgs; i++)
        for (size_t k = 0; k < names->n; k++)
            if (!strcasecmp(names->v[k], s->pkgs[i])) {
                snprintf(what, whatlen, "package %s", s->pkgs[i]);
                return true;
            }
    return false;
}

int compat_detect(const struct compat_catalog *c, const struct compat_scan *s,
                  struct compat_found **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t total = compat_catalog_count(c);
    if (!total)
        return 0;
    struct compat_found *v = calloc(total, sizeof *v);
    if (!v)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < total; i++) {
        const struct compat_entry *e = compat_catalog_get(c, i);
        char what[256];
        if (find_proc(&e->windows_processes, s, what, sizeof what) ||
            find_proc(&e->linux_processes, s, what, sizeof what) ||
            find_pkg(&e->debian_packages, s, what, sizeof what)) {
            v[k].entry = e;
            util_strlcpy(v[k].what, what, sizeof v[k].what);
            k++;
        }
    }
    if (!k) {
        free(v);
        return 0;
    }
    *out = v;
    *n = k;
    return 0;
}
