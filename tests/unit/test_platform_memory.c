/* Unit tests of platform_release_clean_text (platform.h): clean read-only
 * private file mappings lose their pages (and read back the same bytes);
 * written pages, writable mappings and shared mappings are never dropped. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/platform.h"
#include "util/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LEN (256 * 1024)

/* Rss (KiB) of the mapping that starts at p, from /proc/self/smaps. */
static long rss_at(const void *p)
{
    char want[32], line[512];
    snprintf(want, sizeof want, "%lx-", (unsigned long)p);
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    long rss = -1;
    bool in = false;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, want, strlen(want)))
            in = true;
        else if (in && sscanf(line, "Rss: %ld", &rss) == 1)
            break;
    }
    fclose(f);
    return rss;
}

static char *map(int fd, int prot, int flags)
{
    char *p = mmap(NULL, LEN, prot, flags, fd, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

static void touch(const char *p)
{
    volatile char c = 0;
    for (size_t i = 0; i < LEN; i += 4096)
        c ^= p[i];
    (void)c;
}

static void test_clean_readonly_pages_go_written_ones_stay(void **state)
{
    (void)state;
    char path[] = "/tmp/shoji-textpages-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *buf = malloc(LEN);
    assert_non_null(buf);
    memset(buf, 'A', LEN);
    assert_int_equal(write(fd, buf, LEN), LEN);
    free(buf);
    char *ro = map(fd, PROT_READ, MAP_PRIVATE);                     /* like library code */
    char *relro = map(fd, PROT_READ | PROT_WRITE, MAP_PRIVATE);     /* written, then read-only */
    char *rw = map(fd, PROT_READ | PROT_WRITE, MAP_PRIVATE);        /* writable data */
    char *shared = map(fd, PROT_READ, MAP_SHARED);
    touch(ro);
    touch(shared);
    relro[0] = 'B';
    touch(relro);
    assert_int_equal(mprotect(relro, LEN, PROT_READ), 0);
    rw[4096] = 'C';
    assert_true(rss_at(ro) > 0);
    char err[UTIL_ERRLEN];
    long kib = platform_release_clean_text(err, sizeof err);
    assert_true(kib >= rss_at(ro));
    assert_int_equal(rss_at(ro), 0);
    assert_true(rss_at(shared) > 0);        /* shared mappings: not ours to judge */
    assert_true(rss_at(relro) > 0);
    assert_int_equal(relro[0], 'B');        /* a written page is never dropped */
    assert_int_equal(rw[4096], 'C');
    assert_int_equal(ro[LEN - 1], 'A');     /* and a released one reads back the same */
    assert_true(rss_at(ro) > 0);
    munmap(ro, LEN);
    munmap(relro, LEN);
    munmap(rw, LEN);
    munmap(shared, LEN);
    close(fd);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_readonly_pages_go_written_ones_stay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
