/* bench/faultaround.c FILE [ADVICE]: how much of a file mapping one page
 * fault maps, and what mapping it back costs (docs/PERFORMANCE.md "Memory",
 * session 3). Maps FILE (e.g. /lib/x86_64-linux-gnu/libcrypto.so.3)
 * PROT_READ|PROT_EXEC, MAP_PRIVATE, optionally madvises it (random,
 * sequential, nohugepage), touches one byte at a few offsets and prints the
 * mapping's Rss after each; then touches it every 64 KiB, drops its pages
 * with MADV_DONTNEED (the page cache keeps them) and times the refaults,
 * 5 rounds. Read-only: never writes the file or the mapping. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static long rss_kib(const void *p)
{
    char want[32], line[512];
    long rss = -1;
    int in = 0;
    snprintf(want, sizeof want, "%lx-", (unsigned long)p);
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, want, strlen(want)))
            in = 1;
        else if (in && sscanf(line, "Rss: %ld", &rss) == 1)
            break;
    }
    fclose(f);
    return rss;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: faultaround FILE [random|sequential|nohugepage]\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 4096) {
        perror(argv[1]);
        return 1;
    }
    size_t len = (size_t)st.st_size & ~(size_t)4095;
    int adv = argc < 3 ? -1 : !strcmp(argv[2], "random") ? MADV_RANDOM
                            : !strcmp(argv[2], "sequential") ? MADV_SEQUENTIAL
                            : !strcmp(argv[2], "nohugepage") ? MADV_NOHUGEPAGE : -1;
    volatile char c;
    for (int k = 1; k <= 3; k++) {
        char *p = mmap(NULL, len, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        if (adv >= 0)
            madvise(p, len, adv);
        size_t off = (len / 4 * (size_t)k) & ~(size_t)4095;
        c = p[off];
        printf("one byte at %zu KiB: the mapping holds %ld KiB\n", off / 1024, rss_kib(p));
        munmap(p, len);
    }
    char *p = mmap(NULL, len, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return 1;
    for (int r = 0; r < 5; r++) {
        double t0 = now_us();
        size_t n = 0;
        for (size_t i = 0; i < len; i += 65536, n++)
            c = p[i];
        double t1 = now_us();
        printf("touch every 64 KiB: %zu faults, %.0f us (%.1f us each), holds %ld KiB\n", n, t1 - t0,
               (t1 - t0) / (double)n, rss_kib(p));
        madvise(p, len, MADV_DONTNEED);
    }
    (void)c;
    return 0;
}
