/* util: see util.h. */
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int util_err(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code < 0 ? code : -EINVAL;
}

bool sv_eq(struct sv a, struct sv b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

bool sv_ieq(struct sv a, struct sv b)
{
    if (a.n != b.n)
        return false;
    for (size_t i = 0; i < a.n; i++)
        if (tolower((unsigned char)a.p[i]) != tolower((unsigned char)b.p[i]))
            return false;
    return true;
}

bool sv_ieq_cstr(struct sv a, const char *b)
{
    return sv_ieq(a, sv_make(b, strlen(b)));
}

bool sv_istarts(struct sv a, const char *prefix)
{
    size_t n = strlen(prefix);
    return a.n >= n && sv_ieq(sv_make(a.p, n), sv_make(prefix, n));
}

struct sv sv_trim(struct sv a)
{
    while (a.n && (a.p[0] == ' ' || a.p[0] == '\t')) {
        a.p++;
        a.n--;
    }
    while (a.n && (a.p[a.n - 1] == ' ' || a.p[a.n - 1] == '\t'))
        a.n--;
    return a;
}

bool sv_copy(char *dst, size_t cap, struct sv a)
{
    if (cap == 0)
        return false;
    size_t n = a.n < cap - 1 ? a.n : cap - 1;
    if (n)
        memcpy(dst, a.p, n);
    dst[n] = '\0';
    return n == a.n;
}

bool util_strlcpy(char *dst, const char *src, size_t cap)
{
    return sv_copy(dst, cap, sv_make(src, strlen(src)));
}

void util_lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

int util_write_file_atomic(const char *path, const void *data, size_t len,
                           int mode, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return util_err(err, errlen, -ENAMETOOLONG, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return util_err(err, errlen, -errno, "cannot create %s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno ? errno : EIO;
            close(fd);
            unlink(tmp);
            return util_err(err, errlen, -e, "cannot write %s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, (mode_t)mode) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return util_err(err, errlen, -e, "cannot sync %s: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return util_err(err, errlen, -e, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return 0;
}

int util_read_file(const char *path, size_t max, char **out, size_t *outlen,
                   char *err, size_t errlen)
{
    *out = NULL;
    if (outlen)
        *outlen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return util_err(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return util_err(err, errlen, -EINVAL, "%s is not a regular file", path);
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return util_err(err, errlen, -EFBIG, "%s is too large (%lld bytes, at most %zu)",
                        path, (long long)st.st_size, max);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return util_err(err, errlen, -ENOMEM, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return util_err(err, errlen, -e, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    if (outlen)
        *outlen = got;
    return 0;
}

int util_mkdirs(const char *path, int mode, char *err, size_t errlen)
{
    char buf[4096];
    if (!util_strlcpy(buf, path, sizeof buf))
        return util_err(err, errlen, -ENAMETOOLONG, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return util_err(err, errlen, -errno, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, (mode_t)mode) < 0 && errno != EEXIST)
        return util_err(err, errlen, -errno, "cannot create directory %s: %s", buf, strerror(errno));
    return 0;
}

uint64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t util_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
