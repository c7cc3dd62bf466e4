/* catdb_parse: the list-line parsers of catdb_compile.h. Pure functions over
 * a line; bounded output buffers; never allocate. */
#include "catdb/catdb_compile.h"
#include "catdb/catdb.h"
#include "catdb/catdb_format.h"

#include <string.h>

#define LINE_MAX_BYTES 4096

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Trims the line; returns 0 when it is blank or a comment. */
static int trim(const char **p, size_t *n)
{
    while (*n && is_space((*p)[0])) {
        (*p)++;
        (*n)--;
    }
    while (*n && is_space((*p)[*n - 1]))
        (*n)--;
    return *n != 0 && (*p)[0] != '#';
}

/* The first token; fails when anything but a comment follows it. */
static int one_token(const char *p, size_t n, size_t *tok)
{
    size_t t = 0;
    while (t < n && !is_space(p[t]))
        t++;
    size_t r = t;
    while (r < n && is_space(p[r]))
        r++;
    *tok = t;
    return r == n || p[r] == '#';
}

static int norm(const char *p, size_t n, char *host, size_t cap)
{
    char tmp[CATDB_HOST_MAX * 4];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    return catdb_normalize_host(tmp, host, cap, NULL);
}

int catdb_parse_domain_line(const char *line, size_t len, char *host, size_t cap, const char **reason)
{
    size_t tok;
    *reason = NULL;
    if (cap)
        host[0] = '\0';
    if (!trim(&line, &len))
        return 0;
    if (len > LINE_MAX_BYTES) {
        *reason = "line too long";
        return -1;
    }
    if (!one_token(line, len, &tok)) {
        *reason = "more than one word on the line (one domain per line)";
        return -1;
    }
    if (tok >= 2 && line[0] == '*' && line[1] == '.') {
        line += 2;
        tok -= 2;
    }
    if (memchr(line, '/', tok)) {
        *reason = "a URL in a domains file (host/path prefixes belong in `urls`)";
        return -1;
    }
    if (memchr(line, '*', tok)) {
        *reason = "wildcard inside a domain (a domain already matches all its subdomains)";
        return -1;
    }
    if (norm(line, tok, host, cap) <= 0) {
        *reason = "not a valid host name";
        return -1;
    }
    return 1;
}

static size_t skip_scheme(const char *p, size_t n)
{
    for (size_t i = 0; i + 2 < n && i < 16; i++) {
        if (p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/')
            return i + 3;
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')))
            return 0;
    }
    return 0;
}

int catdb_parse_url_line(const char *line, size_t len, char *host, size_t hcap, char *path, size_t pcap,
                         const char **reason)
{
    size_t tok;
    *reason = NULL;
    if (hcap)
        host[0] = '\0';
    if (pcap)
        path[0] = '\0';
    if (!trim(&line, &len))
        return 0;
    if (len > LINE_MAX_BYTES || pcap < 2) {
        *reason = "line too long";
        return -1;
    }
    if (!one_token(line, len, &tok)) {
        *reason = "more than one word on the line (one host/path per line)";
        return -1;
    }
    size_t s = skip_scheme(line, tok);
    line += s;
    tok -= s;
    size_t hl = 0;
    while (hl < tok && line[hl] != '/' && line[hl] != '?')
        hl++;
    int n = norm(line, hl, host, hcap);
    if (n <= 0) {
        *reason = "not a valid host name before the path";
        return -1;
    }
    uint32_t w = cdb_www_strip(host, (uint32_t)n);
    if (w)
        memmove(host, host + w, (size_t)n - w + 1);
    const char *rest = line + hl;
    size_t rn = tok - hl, o = 0;
    if (rn == 0 || rest[0] != '/')
        path[o++] = '/';
    if (o + rn + 1 > pcap || o + rn + 1 > CDB_URL_PREFIX_MAX) {
        *reason = "path too long";
        return -1;
    }
    for (size_t i = 0; i < rn; i++)
        path[o++] = (char)((rest[i] >= 'A' && rest[i] <= 'Z') ? rest[i] + 32 : rest[i]);
    path[o] = '\0';
    return 1;
}
