/* catdb_norm: host normalisation, URL splitting and category sets (see
 * catdb.h). The compiler and every lookup go through the same function, so a
 * list entry and a request host always meet in the same form. */
#include "catdb/catdb.h"

#include "util/util.h"

#include <errno.h>
#include <idn2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NORM_IN_MAX 1024 /* longest raw host we look at */

static int is_v6_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == ':' || c == '.';
}

static int is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Copies an IPv6 literal (without brackets), lower-cased and checked. */
static int copy_v6(const char *p, size_t n, char *out, size_t cap)
{
    int colons = 0;
    if (n == 0 || n + 1 > cap || n > 45)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        colons += p[i] == ':';
    if (colons < 2)
        return -EINVAL;    /* not IPv6, and "a:b" would read as host:port */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = lower((unsigned char)p[i]);
        if (!is_v6_char(c))
            return -EINVAL;
        out[i] = (char)c;
    }
    out[n] = '\0';
    return (int)n;
}

/* Lower-cases and checks an ASCII name: allowed characters, no empty label,
 * at most 253 bytes; one pass that also tells a dotted-quad IPv4 literal.
 * Returns -EILSEQ at the first non-ASCII byte (the caller converts IDN). */
static int copy_ascii_name(const char *p, size_t n, char *out, size_t cap, int *ipv4)
{
    int v4 = 1, dots = 0, digits = 0;
    if (n == 0 || n > 253 || n + 1 > cap)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = lower((unsigned char)p[i]);
        if (c >= 0x80)
            return -EILSEQ;
        if (!is_host_char(c))
            return -EINVAL;
        if (c == '.') {
            if (i == 0 || out[i - 1] == '.')
                return -EINVAL;
            v4 &= digits > 0;
            dots++;
            digits = 0;
        } else if (c >= '0' && c <= '9') {
            v4 &= ++digits <= 3;
        } else {
            v4 = 0;
        }
        out[i] = (char)c;
    }
    out[n] = '\0';
    if (ipv4)
        *ipv4 = v4 && digits > 0 && dots == 3;
    return (int)n;
}

/* libidn2 (and libunistring under it, ~0.2 MiB resident) is loaded on the
 * first non-ASCII name (util_dl_load): request hosts are ASCII, so an agent
 * whose lists and policy are ASCII never maps it. */
#define IDN_SONAME "libidn2.so.0"
static struct {
    __typeof__(&idn2_to_ascii_8z) to_ascii_8z;
    __typeof__(&idn2_free) free;
} idn;
static pthread_once_t idn_once = PTHREAD_ONCE_INIT;
static int idn_rc;

static void idn_load(void)
{
    static const struct util_dl_sym syms[] = {
        { "idn2_to_ascii_8z", offsetof(__typeof__(idn), to_ascii_8z) },
        { "idn2_free", offsetof(__typeof__(idn), free) },
    };
    idn_rc = util_dl_load(IDN_SONAME, "libidn2-0", syms, UTIL_ARRAY_LEN(syms), &idn, NULL, 0);
}

/* Non-ASCII name: UTS#46 mapping + punycode by libidn2. This is the only
 * path of a lookup that allocates (libidn2 has no caller-buffer API); hosts
 * taken off the wire (SNI, Host) are ASCII by protocol and never come here.
 * -ELIBACC when libidn2 cannot be loaded. */
static int copy_idn(const char *p, size_t n, char *out, size_t cap, int *ipv4)
{
    char in[NORM_IN_MAX + 1];
    char *ascii = NULL;
    if (n > NORM_IN_MAX)
        return -ENAMETOOLONG;
    pthread_once(&idn_once, idn_load);
    if (idn_rc < 0)
        return idn_rc;
    memcpy(in, p, n);
    in[n] = '\0';
    int rc = idn.to_ascii_8z(in, &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK) {
        /* Some names are valid under the transitional rules only. */
        rc = idn.to_ascii_8z(in, &ascii, IDN2_NFC_INPUT | IDN2_TRANSITIONAL);
        if (rc != IDN2_OK)
            return -EINVAL;
    }
    int len = copy_ascii_name(ascii, strlen(ascii), out, cap, ipv4);
    idn.free(ascii);
    return len == -EILSEQ ? -EINVAL : len;
}

int catdb_normalize_host(const char *host, char *out, size_t cap, int *is_ip)
{
    int ip = 0;
    if (is_ip)
        *is_ip = 0;
    if (!host || !out || cap == 0)
        return -EINVAL;
    out[0] = '\0';
    size_t n = strnlen(host, NORM_IN_MAX + 1);
    if (n > NORM_IN_MAX)
        return -ENAMETOOLONG;
    const char *p = host;
    if (n && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close)
            return -EINVAL;
        if (is_ip)
            *is_ip = 1;
        return copy_v6(p + 1, (size_t)(close - p - 1), out, cap);
    }
    const char *colon = memchr(p, ':', n);
    if (colon && memchr(colon + 1, ':', n - (size_t)(colon - p) - 1)) {
        if (is_ip)
            *is_ip = 1;
        return copy_v6(p, n, out, cap);   /* bare IPv6 literal */
    }
    if (colon)
        n = (size_t)(colon - p);          /* host:port */
    while (n && p[n - 1] == '.')
        n--;
    while (n && p[0] == '.') {
        p++;
        n--;
    }
    int len = copy_ascii_name(p, n, out, cap, &ip);
    if (len == -EILSEQ)
        len = copy_idn(p, n, out, cap, &ip);
    if (len < 0) {
        out[0] = '\0';
        return len;
    }
    if (is_ip)
        *is_ip = ip;
    return len;
}

int catdb_split_url(const char *url, char *host, size_t cap, const char **path)
{
    if (!url || !host || !path)
        return -EINVAL;
    const char *p = url;
    const char *scheme = strstr(p, "://");
    const char *first_sep = strpbrk(p, "/?#");
    if (scheme && (!first_sep || scheme < first_sep))
        p = scheme + 3;
    size_t alen = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (p[i] == '@')
            at = p + i;
    const char *h = at ? at + 1 : p;
    size_t hlen = alen - (size_t)(h - p);
    char tmp[NORM_IN_MAX + 1];
    if (hlen > NORM_IN_MAX)
        return -ENAMETOOLONG;
    memcpy(tmp, h, hlen);
    tmp[hlen] = '\0';
    *path = p + alen;
    int rc = catdb_normalize_host(tmp, host, cap, NULL);
    return rc < 0 ? rc : 0;
}

void catset_add(struct catset *s, uint16_t id)
{
    uint16_t i = 0;
    while (i < s->n && s->id[i] < id)
        i++;
    if (i < s->n && s->id[i] == id)
        return;
    if (s->n >= CATSET_MAX)
        return;
    memmove(&s->id[i + 1], &s->id[i], (size_t)(s->n - i) * sizeof s->id[0]);
    s->id[i] = id;
    s->n++;
}

int catset_has(const struct catset *s, uint16_t id)
{
    for (uint16_t i = 0; i < s->n; i++)
        if (s->id[i] == id)
            return 1;
    return 0;
}
