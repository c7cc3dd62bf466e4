/* platform/linux/privdrop: least privilege for the agent. After the
 * listening sockets are bound and the CA key is in memory, the agent becomes
 * an unprivileged user and keeps only the capabilities it still needs:
 *   CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH  list and read /proc/PID/fd of
 *                   other users' processes (to find the application that
 *                   owns a client socket);
 *   CAP_NET_ADMIN   only with --transparent: SO_MARK on upstream sockets and
 *                   the nftables heartbeat.
 * It also sets no_new_privs, so nothing it could exec regains privileges. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "platform/platform.h"
#include "util/util.h"

static int set_caps(uint64_t keep)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    d[0].permitted = d[0].effective = (uint32_t)keep;
    d[1].permitted = d[1].effective = (uint32_t)(keep >> 32);
    return (int)syscall(SYS_capset, &h, d);
}

int platform_drop_privileges(const char *user, bool keep_net_admin, int *uid_out, int *gid_out,
                             char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(user);
    if (!pw)
        return util_err(err, errlen, -ENOENT, "--user %s: no such user (create it, e.g. "
                        "`useradd --system --no-create-home shoji`)", user);
    if (pw->pw_uid == 0)
        return util_err(err, errlen, -EINVAL, "--user %s is root: name an unprivileged user", user);
    if (geteuid() != 0)
        return util_err(err, errlen, -EPERM, "--user needs the agent to start as root");
    uint64_t keep = (1ull << CAP_SYS_PTRACE) | (1ull << CAP_DAC_READ_SEARCH);
    if (keep_net_admin)
        keep |= 1ull << CAP_NET_ADMIN;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 ||
        setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
        return util_err(err, errlen, -errno, "cannot become user %s: %s", user, strerror(errno));
    if (set_caps(keep) < 0)
        return util_err(err, errlen, -errno, "cannot keep capabilities: %s", strerror(errno));
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    /* setuid() made us non-dumpable; /proc/self stays root-owned then, which
     * is what we want for a process holding a CA key. */
    if (uid_out)
        *uid_out = (int)pw->pw_uid;
    if (gid_out)
        *gid_out = (int)pw->pw_gid;
    return 0;
}

int platform_user_ids(const char *user, int *uid, int *gid, char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(user);
    if (!pw)
        return util_err(err, errlen, -ENOENT, "--user %s: no such user (create it, e.g. "
                        "`useradd --system --no-create-home shoji`)", user);
    *uid = (int)pw->pw_uid;
    *gid = (int)pw->pw_gid;
    return 0;
}
