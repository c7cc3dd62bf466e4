/* platform/linux/sockopt.c: the two socket options transparent interception
 * rests on — the mark that keeps the agent's upstream sockets out of the
 * redirect, and the original destination of a redirected connection. */
#include "platform/platform.h"
#include "util/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

/* From linux/netfilter_ipv4.h and linux/netfilter_ipv6/ip6_tables.h, which
 * cannot be included next to the libc socket headers. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

int platform_mark_upstream_socket(int fd, char *err, size_t errlen)
{
    unsigned mark = PLATFORM_UPSTREAM_MARK;
    if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0)
        return util_err(err, errlen, -errno,
                        "SO_MARK on an upstream socket: %s (the agent needs CAP_NET_ADMIN for "
                        "transparent interception, or its own traffic loops back into it)",
                        strerror(errno));
    return 0;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

int platform_original_dst(int fd, struct sockaddr_storage *out, socklen_t *outlen,
                          char *err, size_t errlen)
{
    struct sockaddr_storage local;
    socklen_t llen = sizeof local;
    memset(out, 0, sizeof *out);
    if (getsockname(fd, (struct sockaddr *)&local, &llen) != 0)
        return util_err(err, errlen, -errno, "getsockname: %s", strerror(errno));
    int rc;
    socklen_t len;
    if (local.ss_family == AF_INET6) {
        const struct sockaddr_in6 *l6 = (const void *)&local;
        bool mapped = IN6_IS_ADDR_V4MAPPED(&l6->sin6_addr);
        len = mapped ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        rc = mapped ? getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len)
                    : getsockopt(fd, IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, out, &len);
    } else if (local.ss_family == AF_INET) {
        len = sizeof(struct sockaddr_in);
        rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len);
    } else {
        return util_err(err, errlen, -EAFNOSUPPORT, "not an IPv4 or IPv6 socket");
    }
    if (rc != 0)
        return util_err(err, errlen, errno == ENOENT ? -ENOENT : -errno,
                        "no original destination (%s): the connection was not redirected",
                        strerror(errno));
    /* With conntrack loaded, a direct (not redirected) connection reports
     * its own local address: that is not an original destination. */
    if (local.ss_family == AF_INET6 && out->ss_family == AF_INET) {
        const struct sockaddr_in6 l6 = *(const struct sockaddr_in6 *)&local;
        struct sockaddr_in *l4 = (struct sockaddr_in *)&local;
        memset(&local, 0, sizeof local);
        l4->sin_family = AF_INET;      /* compare a v4-mapped local as IPv4 */
        l4->sin_port = l6.sin6_port;
        memcpy(&l4->sin_addr, l6.sin6_addr.s6_addr + 12, 4);
    }
    if (same_addr(out, &local))
        return util_err(err, errlen, -ENOENT, "the connection was not redirected");
    if (outlen)
        *outlen = len;
    return 0;
}
