/* platform/linux/proc_int.h: what proc.c (the cache, on its owner's thread)
 * and proc_walk.c (the /proc walk, on any thread) share. Not a public
 * header: see platform.h. */
#ifndef SHOJI_PLATFORM_PROC_INT_H
#define SHOJI_PLATFORM_PROC_INT_H

#include "platform/platform.h"

#include <sys/types.h>

#define PROC_WALK_SEEN 2048        /* sockets a walk remembers for the cache */
#define PROC_WALK_HINTS 16         /* recent owners a walk scans first */
#define PROC_MAX_PIDS (1u << 20)   /* bound on one /proc listing */
#define PROC_MAX_FDS (1u << 16)    /* bound on one fd directory */

struct proc_sock {
    uint32_t inode;
    int32_t pid;
    int32_t fd;
};

struct platform_proc_walk {
    /* in: set on the cache's thread */
    uint32_t targets[PLATFORM_PROC_WALK_TARGETS];
    size_t ntargets;
    int hints[PROC_WALK_HINTS];   /* owners to scan before the rest of /proc */
    size_t nhints;
    /* out */
    struct proc_sock found[PLATFORM_PROC_WALK_TARGETS];   /* pid 0: not found */
    size_t nfound;
    struct proc_sock seen[PROC_WALK_SEEN];   /* other sockets passed on the way */
    size_t nseen;
    int rc;                       /* <0: /proc itself could not be listed */
    unsigned denied;              /* fd directories we could not read */
    bool walked;                  /* went beyond the hints: a full /proc walk */
    uint64_t fds_read;
    char err[256];
    /* scratch */
    int *pids;
    size_t pids_cap;
    int *fds;
    size_t fds_cap;
};

/* "socket:[12345]" -> 12345; 0 when the link is not a socket. */
uint32_t proc_parse_socket_link(const char *s, ssize_t n);

#endif
