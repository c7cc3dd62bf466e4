/* platform/linux/nft.c: shoji's nftables table `inet shoji` (see platform.h
 * and docs/INTERCEPT.md for the design).
 *
 * Every command we send is rendered here from parsed, validated numbers
 * (ports, uids, addresses printed back with inet_ntop): no user text ever
 * reaches the nft parser. Every command names `inet shoji`, nothing else. */
#include "platform/linux/nftlib_int.h"
#include "platform/platform.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE "inet " PLATFORM_TABLE_NAME

void platform_intercept_config_default(struct platform_intercept_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ports[0] = 80;
    cfg->ports[1] = 443;
    cfg->nports = 2;
    cfg->block_quic = true;
    cfg->fail_mode = PLATFORM_FAIL_OPEN;
}

int platform_cidr_parse(const char *s, struct platform_cidr *out, char *err, size_t errlen)
{
    char addr[64];
    const char *slash = s ? strchr(s, '/') : NULL;
    size_t alen = slash ? (size_t)(slash - s) : (s ? strlen(s) : 0);
    memset(out, 0, sizeof *out);
    if (!s || alen == 0 || alen >= sizeof addr)
        return util_err(err, errlen, -EINVAL, "'%s' is not an address or CIDR block (e.g. 10.0.0.0/8, 2001:db8::/32)",
                        s ? s : "");
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, addr, out->addr) == 1)
        out->family = AF_INET6;
    else
        return util_err(err, errlen, -EINVAL, "'%s': '%s' is not an IPv4 or IPv6 address", s, addr);
    int max = out->family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash) {
        char *end = NULL;
        long p = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || p < 0 || p > max)
            return util_err(err, errlen, -EINVAL, "'%s': prefix length must be 0..%d", s, max);
        out->prefix = (int)p;
    }
    for (int bit = out->prefix; bit < max; bit++)   /* clear host bits */
        out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    return 0;
}

int platform_ports_parse(const char *s, struct platform_intercept_config *cfg,
                         char *err, size_t errlen)
{
    uint16_t ports[PLATFORM_MAX_PORTS];   /* cfg is untouched on error */
    size_t n = 0;
    const char *p = s;
    if (!s || !*s)
        return util_err(err, errlen, -EINVAL, "empty port list (e.g. --ports 80,443)");
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65535 || (*end && *end != ','))
            return util_err(err, errlen, -EINVAL, "'%s': ports are numbers 1..65535 separated by commas", s);
        if (n == PLATFORM_MAX_PORTS)
            return util_err(err, errlen, -E2BIG, "at most %d ports", PLATFORM_MAX_PORTS);
        for (size_t i = 0; i < n; i++)
            if (ports[i] == v)
                return util_err(err, errlen, -EINVAL, "'%s': port %ld given twice", s, v);
        ports[n++] = (uint16_t)v;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return util_err(err, errlen, -EINVAL, "'%s': trailing comma", s);
    }
    memcpy(cfg->ports, ports, n * sizeof ports[0]);
    cfg->nports = n;
    return 0;
}

/* ---- rendering -------------------------------------------------------- */

struct out {
    char *p;
    size_t cap, len;
    bool overflow;
};

__attribute__((format(printf, 2, 3)))
static void put(struct out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        o->overflow = true;
    else
        o->len += (size_t)n;
}

static void put_ports(struct out *o, const struct platform_intercept_config *cfg)
{
    put(o, "{ ");
    for (size_t i = 0; i < cfg->nports; i++)
        put(o, "%s%u", i ? ", " : "", cfg->ports[i]);
    put(o, " }");
}

static size_t count_family(const struct platform_intercept_config *cfg, int family)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->nexcludes; i++)
        n += cfg->excludes[i].family == family;
    return n;
}

static void put_exclude_set(struct out *o, const struct platform_intercept_config *cfg, int family)
{
    if (count_family(cfg, family) == 0)
        return;
    put(o, "  set exclude%c {\n    type %s; flags interval; auto-merge;\n    elements = { ",
        family == AF_INET ? '4' : '6', family == AF_INET ? "ipv4_addr" : "ipv6_addr");
    bool first = true;
    for (size_t i = 0; i < cfg->nexcludes; i++) {
        const struct platform_cidr *c = &cfg->excludes[i];
        char a[INET6_ADDRSTRLEN];
        if (c->family != family || !inet_ntop(family, c->addr, a, sizeof a))
            continue;
        put(o, "%s%s/%d", first ? "" : ", ", a, c->prefix);
        first = false;
    }
    put(o, " }\n  }\n");
}

/* The rules both chains start with: what is never touched. */
static void put_bypass(struct out *o, const struct platform_intercept_config *cfg)
{
    put(o, "    meta mark 0x%08x counter return comment \"agent upstream\"\n", PLATFORM_UPSTREAM_MARK);
    if (cfg->nexclude_uids) {
        put(o, "    meta skuid { ");
        for (size_t i = 0; i < cfg->nexclude_uids; i++)
            put(o, "%s%u", i ? ", " : "", cfg->exclude_uids[i]);
        put(o, " } counter return comment \"excluded uids\"\n");
    }
    put(o, "    fib daddr type local return comment \"this machine, loopback\"\n");
    if (count_family(cfg, AF_INET))
        put(o, "    ip daddr @exclude4 counter return comment \"excluded\"\n");
    if (count_family(cfg, AF_INET6))
        put(o, "    ip6 daddr @exclude6 counter return comment \"excluded\"\n");
}

static int validate(const struct platform_intercept_config *cfg, char *err, size_t errlen)
{
    if (cfg->port == 0)
        return util_err(err, errlen, -EINVAL, "the agent's transparent port is missing (--port PORT)");
    if (cfg->nports == 0 || cfg->nports > PLATFORM_MAX_PORTS)
        return util_err(err, errlen, -EINVAL, "1..%d ports to redirect are needed", PLATFORM_MAX_PORTS);
    for (size_t i = 0; i < cfg->nports; i++)
        if (cfg->ports[i] == 0 || cfg->ports[i] == cfg->port)
            return util_err(err, errlen, -EINVAL,
                            "port %u cannot be both redirected and the agent's port", cfg->ports[i]);
    if (cfg->nexcludes > PLATFORM_MAX_EXCLUDES || cfg->nexclude_uids > PLATFORM_MAX_EXCLUDE_UIDS)
        return util_err(err, errlen, -E2BIG, "too many exclusions");
    for (size_t i = 0; i < cfg->nexcludes; i++)
        if (cfg->excludes[i].family != AF_INET && cfg->excludes[i].family != AF_INET6)
            return util_err(err, errlen, -EINVAL, "exclusion %zu has no address family", i);
    return 0;
}

int platform_intercept_render(const struct platform_intercept_config *cfg,
                              char *buf, size_t cap, char *err, size_t errlen)
{
    int rc = validate(cfg, err, errlen);
    if (rc < 0)
        return rc;
    struct out o = { buf, cap, 0, cap == 0 };
    bool closed = cfg->fail_mode == PLATFORM_FAIL_CLOSED;
    /* "add, delete, add" in one transaction: replaces the table atomically
     * whether or not it existed. */
    put(&o, "table " TABLE " {}\ndelete table " TABLE "\ntable " TABLE " {\n");
    put(&o, "  comment \"shoji transparent interception: port %u, fail-mode %s, quic %s. "
            "Managed by 'shoji intercept'; do not edit.\"\n",
        cfg->port, closed ? "closed" : "open", cfg->block_quic ? "blocked" : "allowed");
    put(&o, "  set live {\n    type inet_proto; flags timeout;\n"
            "    comment \"agent heartbeat: redirect only while fresh\"\n  }\n");
    put_exclude_set(&o, cfg, AF_INET);
    put_exclude_set(&o, cfg, AF_INET6);
    put(&o, "  chain nat_out {\n    type nat hook output priority -100; policy accept;\n");
    put_bypass(&o, cfg);
    put(&o, "    tcp dport ");
    put_ports(&o, cfg);
    put(&o, " meta l4proto @live counter redirect to :%u comment \"to the agent\"\n  }\n", cfg->port);
    if (cfg->block_quic || closed) {
        put(&o, "  chain filter_out {\n    type filter hook output priority filter; policy accept;\n");
        put_bypass(&o, cfg);
        if (cfg->block_quic)
            put(&o, "    udp dport 443 counter reject comment \"QUIC: fall back to TCP\"\n");
        if (closed) {
            /* Redirected packets already carry the agent's port here (NAT
             * runs first), so this only sees traffic the agent did not take. */
            put(&o, "    tcp dport ");
            put_ports(&o, cfg);
            put(&o, " counter reject with tcp reset comment \"fail closed: agent down\"\n");
        }
        put(&o, "  }\n");
    }
    put(&o, "}\n");
    if (o.overflow)
        return util_err(err, errlen, -ENOSPC, "rules do not fit in %zu bytes", cap);
    return (int)o.len;
}

/* ---- running nft commands ------------------------------------------- */

static pthread_mutex_t nft_lock = PTHREAD_MUTEX_INITIALIZER;

static int map_nft_error(const char *msg, char *err, size_t errlen)
{
    char first[400];
    size_t n = strcspn(msg ? msg : "", "\n");
    if (n >= sizeof first)
        n = sizeof first - 1;
    memcpy(first, msg ? msg : "", n);
    first[n] = '\0';
    if (msg && strstr(msg, "Operation not permitted"))
        return util_err(err, errlen, -EPERM, "nftables: %s (needs root / CAP_NET_ADMIN)", first);
    if (msg && strstr(msg, "No such file or directory"))
        return util_err(err, errlen, -ENOENT, "interception is not enabled (no table " TABLE ")");
    return util_err(err, errlen, -EIO, "nftables refused the rules: %s", first[0] ? first : "unknown error");
}

/* Runs cmd; on success and when out is non-NULL stores nft's output
 * (heap, caller frees). libnftables is loaded on the first call
 * (nftlib_int.h): -ELIBACC when it cannot be. */
static int nft_run(const char *cmd, char **out, char *err, size_t errlen)
{
    const struct nftlib *nft = nftlib_get(err, errlen);
    if (!nft)
        return -ELIBACC;
    pthread_mutex_lock(&nft_lock);
    struct nft_ctx *ctx = nft->ctx_new(NFT_CTX_DEFAULT);
    if (!ctx) {
        pthread_mutex_unlock(&nft_lock);
        return util_err(err, errlen, -ENOMEM, "libnftables: cannot create a context");
    }
    nft->buffer_output(ctx);
    nft->buffer_error(ctx);
    int rc = 0;
    if (nft->run_cmd_from_buffer(ctx, cmd) != 0) {
        rc = map_nft_error(nft->get_error_buffer(ctx), err, errlen);
    } else if (out) {
        const char *o = nft->get_output_buffer(ctx);
        *out = strdup(o ? o : "");
        if (!*out)
            rc = util_err(err, errlen, -ENOMEM, "out of memory");
    }
    nft->ctx_free(ctx);
    pthread_mutex_unlock(&nft_lock);
    return rc;
}

int platform_intercept_enable(const struct platform_intercept_config *cfg,
                              char *err, size_t errlen)
{
    size_t cap = 16384;
    char *buf = malloc(cap);
    if (!buf)
        return util_err(err, errlen, -ENOMEM, "out of memory");
    int rc = platform_intercept_render(cfg, buf, cap, err, errlen);
    if (rc >= 0)
        rc = nft_run(buf, NULL, err, errlen);
    free(buf);
    return rc < 0 ? rc : 0;
}

int platform_intercept_disable(bool *was_enabled, char *err, size_t errlen)
{
    char *o = NULL;
    int rc = nft_run("list table " TABLE, &o, NULL, 0);
    free(o);
    if (was_enabled)
        *was_enabled = rc == 0;
    if (rc == -EPERM)
        return nft_run("list table " TABLE, NULL, err, errlen);
    return nft_run("table " TABLE " {}\ndelete table " TABLE "\n", NULL, err, errlen);
}

int platform_intercept_status(char **out, char *err, size_t errlen)
{
    *out = NULL;
    return nft_run("list table " TABLE, out, err, errlen);
}

int platform_intercept_heartbeat(unsigned ttl_ms, char *err, size_t errlen)
{
    char cmd[160];
    if (ttl_ms < 100 || ttl_ms > 3600u * 1000u)
        return util_err(err, errlen, -EINVAL, "heartbeat ttl must be 100 ms .. 1 h");
    /* flush + add in one transaction: the timeout restarts atomically and
     * no packet ever sees an empty set in between. */
    snprintf(cmd, sizeof cmd, "flush set " TABLE " live\nadd element " TABLE " live { tcp timeout %ums }\n",
             ttl_ms);
    return nft_run(cmd, NULL, err, errlen);
}

int platform_intercept_down(char *err, size_t errlen)
{
    return nft_run("flush set " TABLE " live\n", NULL, err, errlen);
}
