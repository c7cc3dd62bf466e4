/* proxy/hosts: see hosts.h. */
#include "proxy/hosts.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

static int parse_addr(const char *s, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, s, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
            return false;
    return true;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct hosts_entry *)a)->name, ((const struct hosts_entry *)b)->name);
}

static void report(void (*warn)(const char *), const char *origin, size_t line, const char *why)
{
    char msg[512];
    if (!warn)
        return;
    snprintf(msg, sizeof msg, "%s:%zu: %s", origin, line, why);
    warn(msg);
}

/* Adds the names of one line (already split into tokens) for `addr`. */
static int add_names(struct hosts *out, size_t *cap, const struct sockaddr_storage *addr,
                     char **tok, size_t ntok, const char *origin, size_t line,
                     void (*warn)(const char *))
{
    for (size_t i = 1; i < ntok; i++) {
        if (!valid_name(tok[i])) {
            report(warn, origin, line, "invalid host name, skipped");
            continue;
        }
        if (out->n >= HOSTS_MAX_ENTRIES)
            return -E2BIG;
        if (out->n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 64;
            struct hosts_entry *ne = realloc(out->e, ncap * sizeof *ne);
            if (!ne)
                return -ENOMEM;
            out->e = ne;
            *cap = ncap;
        }
        struct hosts_entry *e = &out->e[out->n++];
        util_strlcpy(e->name, tok[i], sizeof e->name);
        util_lower(e->name);
        size_t l = strlen(e->name);
        if (l && e->name[l - 1] == '.')
            e->name[l - 1] = '\0';
        e->addr = *addr;
    }
    return 0;
}

int hosts_parse(const char *text, size_t len, const char *origin, struct hosts *out,
                void (*warn)(const char *msg), char *err, size_t errlen)
{
    out->e = NULL;
    out->n = 0;
    size_t cap = 0, lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *ls = p, *le = nl ? nl : end;
        char line[1024];
        lineno++;
        size_t ll = (size_t)(le - ls);
        p = nl ? nl + 1 : end;
        if (ll >= sizeof line) {
            report(warn, origin, lineno, "line too long, skipped");
            continue;
        }
        memcpy(line, ls, ll);
        line[ll] = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *tok[64], *save = NULL;
        size_t ntok = 0;
        for (char *t = strtok_r(line, " \t\r", &save); t && ntok < 64; t = strtok_r(NULL, " \t\r", &save))
            tok[ntok++] = t;
        if (ntok == 0)
            continue;
        struct sockaddr_storage addr;
        if (parse_addr(tok[0], &addr) < 0) {
            report(warn, origin, lineno, "not an IP address, line skipped");
            continue;
        }
        if (ntok < 2) {
            report(warn, origin, lineno, "address without a name, line skipped");
            continue;
        }
        int rc = add_names(out, &cap, &addr, tok, ntok, origin, lineno, warn);
        if (rc < 0) {
            hosts_free(out);
            return util_err(err, errlen, rc, "%s:%zu: %s", origin, lineno,
                            rc == -E2BIG ? "too many entries (limit 100000)" : "out of memory");
        }
    }
    if (out->n)
        qsort(out->e, out->n, sizeof *out->e, cmp_entry);
    return 0;
}

int hosts_load(const char *path, struct hosts *out, void (*warn)(const char *msg),
               char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc = util_read_file(path, 64u << 20, &text, &len, err, errlen);
    if (rc < 0)
        return rc;
    rc = hosts_parse(text, len, path, out, warn, err, errlen);
    free(text);
    return rc;
}

void hosts_free(struct hosts *h)
{
    free(h->e);
    h->e = NULL;
    h->n = 0;
}

size_t hosts_lookup(const struct hosts *h, const char *name, struct sockaddr_storage *out,
                    size_t max)
{
    char key[256];
    if (!h || !h->n || !util_strlcpy(key, name, sizeof key))
        return 0;
    util_lower(key);
    size_t l = strlen(key);
    if (l && key[l - 1] == '.')
        key[l - 1] = '\0';
    size_t lo = 0, hi = h->n;
    while (lo < hi) {   /* first entry >= key */
        size_t mid = (lo + hi) / 2;
        if (strcmp(h->e[mid].name, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    for (size_t i = lo; i < h->n && n < max && strcmp(h->e[i].name, key) == 0; i++)
        out[n++] = h->e[i].addr;
    return n;
}
