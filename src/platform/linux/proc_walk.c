/* platform/linux/proc_walk.c: the slow half of the socket -> process lookup
 * (see platform.h): find the processes holding a set of socket inodes by
 * reading /proc/PID/fd, recent owners first, then every process, newest pid
 * first (a just-started client is usually the newest process). It touches
 * nothing but the walk object, so it can run on any thread (the proxy runs
 * it on libuv's thread pool); what it learns goes into a cache with
 * platform_proc_walk_merge, on the cache's thread. */
#include "platform/linux/proc_int.h"
#include "util/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint32_t proc_parse_socket_link(const char *s, ssize_t n)
{
    if (n < 10 || memcmp(s, "socket:[", 8) != 0 || s[n - 1] != ']')
        return 0;
    uint64_t v = 0;
    for (ssize_t i = 8; i < n - 1; i++) {
        if (!isdigit((unsigned char)s[i]) || v > UINT32_MAX)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v > UINT32_MAX ? 0 : (uint32_t)v;
}

struct platform_proc_walk *platform_proc_walk_new(void)
{
    return calloc(1, sizeof(struct platform_proc_walk));
}

void platform_proc_walk_free(struct platform_proc_walk *wk)
{
    if (!wk)
        return;
    free(wk->pids);
    free(wk->fds);
    free(wk);
}

bool platform_proc_walk_add(struct platform_proc_walk *wk, uint32_t inode)
{
    if (!wk || inode == 0 || wk->ntargets >= PLATFORM_PROC_WALK_TARGETS)
        return false;
    for (size_t i = 0; i < wk->ntargets; i++)
        if (wk->targets[i] == inode)
            return true;
    wk->targets[wk->ntargets++] = inode;
    return true;
}

size_t platform_proc_walk_targets(const struct platform_proc_walk *wk)
{
    return wk ? wk->ntargets : 0;
}

static int cmp_int_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

static bool push_int(int **arr, size_t *cap, size_t n, int v, size_t first_cap)
{
    if (n == *cap) {
        size_t ncap = *cap ? *cap * 2 : first_cap;
        int *p = realloc(*arr, ncap * sizeof *p);
        if (!p)
            return false;
        *arr = p;
        *cap = ncap;
    }
    (*arr)[n] = v;
    return true;
}

/* A socket seen on the way: a target (recorded as found) or one for the
 * cache. True when it was a target. */
static bool note_socket(struct platform_proc_walk *wk, uint32_t ino, int pid, int fd)
{
    for (size_t i = 0; i < wk->ntargets; i++) {
        if (wk->targets[i] != ino)
            continue;
        if (wk->found[i].pid == 0) {
            wk->found[i] = (struct proc_sock){ ino, pid, fd };
            wk->nfound++;
        }
        return true;
    }
    if (wk->nseen < PROC_WALK_SEEN)
        wk->seen[wk->nseen++] = (struct proc_sock){ ino, pid, fd };
    return false;
}

/* Reads the fds of pid, newest (highest numbered) first — a process that
 * keeps opening connections has its newest socket at its highest fd —
 * noting every socket, until every target is found. */
static void scan_pid(struct platform_proc_walk *wk, int pid)
{
    char path[48];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) {
        if (errno == EACCES || errno == EPERM)
            wk->denied++;
        return;
    }
    int dfd = dirfd(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < PROC_MAX_FDS) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (!push_int(&wk->fds, &wk->fds_cap, n, atoi(e->d_name), 256))
            break;
        n++;
    }
    if (n > 1)   /* (qsort with a NULL array is undefined even for n == 0) */
        qsort(wk->fds, n, sizeof *wk->fds, cmp_int_desc);
    for (size_t i = 0; i < n && wk->nfound < wk->ntargets; i++) {
        char name[16], link[64];
        snprintf(name, sizeof name, "%d", wk->fds[i]);
        ssize_t len = readlinkat(dfd, name, link, sizeof link);
        wk->fds_read++;
        if (len <= 0 || len >= (ssize_t)sizeof link)
            continue;
        uint32_t ino = proc_parse_socket_link(link, len);
        if (ino)
            note_socket(wk, ino, pid, wk->fds[i]);
    }
    closedir(d);
}

/* Lists /proc's numeric entries into wk->pids, newest (highest) first. */
static int list_pids(struct platform_proc_walk *wk, size_t *n_out)
{
    DIR *d = opendir("/proc");
    if (!d)
        return util_err(wk->err, sizeof wk->err, -errno, "cannot read /proc: %s", strerror(errno));
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < PROC_MAX_PIDS) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        if (!push_int(&wk->pids, &wk->pids_cap, n, atoi(e->d_name), 1024)) {
            closedir(d);
            return util_err(wk->err, sizeof wk->err, -ENOMEM, "out of memory listing /proc");
        }
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(wk->pids, n, sizeof *wk->pids, cmp_int_desc);
    *n_out = n;
    return 0;
}

static bool is_hint(const struct platform_proc_walk *wk, int pid)
{
    for (size_t i = 0; i < wk->nhints; i++)
        if (wk->hints[i] == pid)
            return true;
    return false;
}

void platform_proc_walk_run(struct platform_proc_walk *wk)
{
    for (size_t i = 0; i < wk->nhints && wk->nfound < wk->ntargets; i++)
        scan_pid(wk, wk->hints[i]);
    if (wk->nfound >= wk->ntargets)
        return;
    wk->walked = true;
    size_t n = 0;
    wk->rc = list_pids(wk, &n);
    for (size_t i = 0; wk->rc == 0 && i < n && wk->nfound < wk->ntargets; i++)
        if (!is_hint(wk, wk->pids[i]))
            scan_pid(wk, wk->pids[i]);
}

int platform_proc_walk_result(const struct platform_proc_walk *wk, uint32_t inode, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < wk->ntargets && wk->targets[i] != inode)
        i++;
    if (i == wk->ntargets)
        return util_err(err, errlen, PLATFORM_EWALK, "socket inode %u was not part of this walk", inode);
    if (wk->found[i].pid > 0)
        return 0;
    if (wk->rc < 0)
        return util_err(err, errlen, wk->rc, "%s", wk->err);
    if (wk->denied)
        return util_err(err, errlen, PLATFORM_EPERM,
                        "socket inode %u: its process is not visible to us (%u fd directories unreadable); "
                        "run the agent as root or with CAP_SYS_PTRACE", inode, wk->denied);
    return util_err(err, errlen, PLATFORM_EGONE,
                    "socket inode %u is held by no process (it exited or closed the socket)", inode);
}
