/* vcpustall: how often this machine's CPUs stop running us, and for how long.
 *
 * One thread per online CPU, each pinned to its CPU, reads CLOCK_MONOTONIC in
 * a tight loop for --seconds and counts the gaps between two reads: time the
 * thread did not run although it never blocked. On bare metal these are
 * interrupts (a few µs); in a VM they are also the hypervisor running
 * something else on the physical CPU, which the guest often cannot see
 * (its steal time may read 0). A request whose path is on a CPU during a
 * 2 ms gap is 2 ms late, whatever the proxy does: bench/run.sh reports this
 * beside the fixed-rate latency figure.
 *
 * Prints one JSON object: label, seconds, and per CPU the gaps by size
 * (10-50 µs, 50-250 µs, 0.25-0.5 ms, 0.5-1 ms, 1-2 ms, >= 2 ms), the time
 * lost in gaps of 10 µs or more, and the longest gap. Bounded: at most 60 s,
 * at most 64 CPUs (the first 64 online ones). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CPUS 64
#define NBUCKET 6

static const uint64_t bucket_top_ns[NBUCKET] = { 50000, 250000, 500000, 1000000, 2000000, UINT64_MAX };
static const char *bucket_name[NBUCKET] = { "10-50us", "50-250us", "250-500us", "0.5-1ms", "1-2ms", "2ms+" };

struct probe {
    int cpu;
    double seconds;
    pthread_t th;
    int pinned;
    long count[NBUCKET];
    uint64_t lost_ns, max_ns;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *spin(void *arg)
{
    struct probe *p = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p->cpu, &set);
    p->pinned = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
    uint64_t last = now_ns(), end = last + (uint64_t)(p->seconds * 1e9);
    for (;;) {
        uint64_t t = now_ns(), gap = t - last;
        last = t;
        if (t >= end)
            break;
        if (gap < 10000)
            continue;
        p->lost_ns += gap;
        if (gap > p->max_ns)
            p->max_ns = gap;
        int b = 0;
        while (gap >= bucket_top_ns[b])
            b++;
        p->count[b]++;
    }
    return NULL;
}

static void print_probe(const struct probe *p, double seconds)
{
    printf("{\"cpu\":%d,\"pinned\":%s,\"gaps\":{", p->cpu, p->pinned ? "true" : "false");
    for (int b = 0; b < NBUCKET; b++)
        printf("%s\"%s\":%ld", b ? "," : "", bucket_name[b], p->count[b]);
    printf("},\"lost_ms_per_s\":%.2f,\"max_gap_us\":%.0f}", (double)p->lost_ns / 1e6 / seconds,
           (double)p->max_ns / 1e3);
}

int main(int argc, char **argv)
{
    static struct probe probes[MAX_CPUS];
    double seconds = 3;
    const char *label = "vcpustall";
    static const struct option opts[] = { { "seconds", 1, 0, 's' }, { "label", 1, 0, 'L' }, { 0, 0, 0, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
        if (ch == 's')
            seconds = atof(optarg);
        else if (ch == 'L')
            label = optarg;
        else {
            fprintf(stderr, "usage: vcpustall [--seconds S (0.1-60, default 3)] [--label TEXT]\n");
            return 2;
        }
    }
    if (!(seconds >= 0.1 && seconds <= 60)) {
        fprintf(stderr, "vcpustall: --seconds must be between 0.1 and 60\n");
        return 2;
    }
    cpu_set_t online;
    if (sched_getaffinity(0, sizeof online, &online) != 0) {
        perror("vcpustall: sched_getaffinity");
        return 1;
    }
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < MAX_CPUS; c++)
        if (CPU_ISSET(c, &online)) {
            probes[n] = (struct probe){ .cpu = c, .seconds = seconds };
            if (pthread_create(&probes[n].th, NULL, spin, &probes[n]) != 0) {
                fprintf(stderr, "vcpustall: cannot start a thread for CPU %d\n", c);
                break;
            }
            n++;
        }
    for (int i = 0; i < n; i++)
        pthread_join(probes[i].th, NULL);
    printf("{\"label\":\"%s\",\"seconds\":%.1f,\"cpus\":[", label, seconds);
    for (int i = 0; i < n; i++) {
        if (i)
            printf(",");
        print_probe(&probes[i], seconds);
    }
    printf("]}\n");
    return n ? 0 : 1;
}
