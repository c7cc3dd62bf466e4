/* hopfloor: what one relay hop costs in latency on this machine, whatever
 * the relay does. `make bench` (bench/run.sh) runs it beside the fixed-rate
 * latency figure.
 *
 * A client sends SIZE bytes and waits for SIZE bytes back, at a fixed rate,
 * over one TCP loopback connection, to an echo process: directly (--hops 0)
 * or through one relay process that only forwards (--hops 1: poll, read,
 * write, nothing else; no TLS, no parsing, no policy). Latency is counted from the
 * scheduled time, as loadgen's rate mode does. The difference between the
 * two is the floor under any proxy's added latency: the two extra process
 * wake-ups per exchange and the two extra loopback transfers.
 *
 * --proxy IP:PORT instead opens a CONNECT tunnel through that proxy to the
 * echo (named --connect-name, default 127.0.0.1; on --echo-port, default any
 * free port): a proxy's tunnel hop with the same client and echo, to set
 * beside the do-nothing relay.
 *
 * --relay-listen PORT --relay-to IP:PORT instead serves as that relay for
 * any TCP stream (one process per connection, poll, read, write) until
 * killed: bench/run.sh's `null-relay` configuration, the loadgen's HTTPS
 * through a hop that does nothing.
 *
 * Prints one JSON object: label, hops, requests, rps, lat_us {p50,p90,p99,max,mean}.
 * Bounded: -n exchanges, and every read and write has a 10 s limit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE 65536

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Reads exactly n bytes; 0 on success, -1 on error, end or time-out. */
static int read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const char *buf, size_t n)
{
    size_t put = 0;
    while (put < n) {
        ssize_t w = write(fd, buf + put, n - put);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        put += (size_t)w;
    }
    return 0;
}

static void tune(int fd)
{
    int one = 1;
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* One connected TCP loopback pair: fd[0] the connecting end, fd[1] the
 * accepted one. */
static int tcp_pair(int fd[2])
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) < 0) {
        perror("hopfloor: listen");
        return -1;
    }
    fd[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (fd[0] < 0 || connect(fd[0], (struct sockaddr *)&a, sizeof a) < 0 ||
        (fd[1] = accept(l, NULL, NULL)) < 0) {
        perror("hopfloor: connect");
        close(l);
        return -1;
    }
    close(l);
    tune(fd[0]);
    tune(fd[1]);
    return 0;
}

/* The echo process: SIZE bytes in, the same SIZE bytes out, until the end. */
static void echo_main(int fd, size_t size)
{
    static char buf[MAX_SIZE];
    while (read_full(fd, buf, size) == 0 && write_full(fd, buf, size) == 0)
        ;
    _exit(0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A listener on 127.0.0.1:*port (0: any free port); its port in *port. */
static int tcp_listener(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)*port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
    if (l >= 0)
        setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) < 0) {
        perror("hopfloor: listen");
        return -1;
    }
    *port = ntohs(a.sin_port);
    return l;
}

/* A TCP connection to IP:PORT; the socket, or -1. */
static int connect_to(const char *ipport)
{
    char host[64];
    const char *colon = strrchr(ipport, ':');
    if (!colon || (size_t)(colon - ipport) >= sizeof host)
        return -1;
    memcpy(host, ipport, (size_t)(colon - ipport));
    host[colon - ipport] = 0;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "hopfloor: connect %s: %s\n", ipport, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    tune(fd);
    return fd;
}

/* Connects to the proxy at IP:PORT and opens a CONNECT tunnel to
 * NAME:port; the socket, or -1. */
static int via_proxy(const char *proxy, const char *name, int port)
{
    int fd = connect_to(proxy);
    if (fd < 0)
        return -1;
    char req[512], resp[4096];
    int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                     name, port, name, port);
    if (write_full(fd, req, (size_t)n) < 0)
        return -1;
    size_t got = 0; /* the answer's head, byte by byte: nothing after it is taken */
    while (got + 1 < sizeof resp && read_full(fd, resp + got, 1) == 0) {
        got++;
        if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    resp[got] = 0;
    if (strncmp(resp, "HTTP/1.1 200", 12) != 0 && strncmp(resp, "HTTP/1.0 200", 12) != 0) {
        fprintf(stderr, "hopfloor: CONNECT refused: %.80s\n", resp);
        close(fd);
        return -1;
    }
    return fd;
}

/* The relay: forwards whatever either side sends to the other, both ways,
 * until both have ended; nothing more. The --hops 1 relay and, one process
 * per connection, the --relay-listen one (any bytes, TLS included). */
static void relay_conn(int a, int b)
{
    static char buf[MAX_SIZE];
    const int fd[2] = { a, b };
    struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
    int open_ways = 2;
    while (open_ways > 0) {
        if (poll(p, 2, 600000) <= 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(fd[i], buf, sizeof buf);
            if (r < 0)
                return;
            if (r == 0) {   /* this way ended: pass the end on, keep the other */
                shutdown(fd[!i], SHUT_WR);
                p[i].fd = -1;
                open_ways--;
            } else if (write_full(fd[!i], buf, (size_t)r) < 0) {
                return;
            }
        }
    }
}

static int serve_relay(int port, const char *to)
{
    int l = tcp_listener(&port);
    if (l < 0)
        return 1;
    signal(SIGCHLD, SIG_IGN);   /* children reaped by the kernel */
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("hopfloor: accept");
            return 1;
        }
        if (fork() == 0) {
            close(l);
            tune(c);
            int up = connect_to(to);
            if (up >= 0)
                relay_conn(c, up);
            _exit(0);
        }
        close(c);
    }
}

/* Forks the echo (up < 0) or a relay; the child keeps only its own sockets,
 * so that the client's close reaches every process as an end of stream. */
static pid_t spawn(int down, int up, size_t size)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (int fd = 3; fd < 64; fd++)
            if (fd != down && fd != up)
                close(fd);
        if (up < 0)
            echo_main(down, size);
        relay_conn(down, up);
        _exit(0);
    }
    return pid;
}

struct opts {
    const char *label;
    const char *proxy;   /* HOST:PORT: through this proxy's CONNECT tunnel */
    const char *name;    /* the name the CONNECT asks for */
    int echo_port;       /* with --proxy: the echo's port (0: any free one) */
    int relay_port;      /* --relay-listen: serve as a relay on this port */
    const char *relay_to;   /* --relay-to IP:PORT: where the relay forwards */
    int hops;
    long n;
    double rate;
    size_t size;
};

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = { { "label", 1, 0, 'l' }, { "hops", 1, 0, 'h' },
        { "rate", 1, 0, 'r' }, { "size", 1, 0, 's' }, { "proxy", 1, 0, 'p' },
        { "connect-name", 1, 0, 'c' }, { "echo-port", 1, 0, 'e' },
        { "relay-listen", 1, 0, 'L' }, { "relay-to", 1, 0, 'T' }, { 0, 0, 0, 0 } };
    int c;
    while ((c = getopt_long(argc, argv, "n:", lo, NULL)) != -1) {
        switch (c) {
        case 'l': o->label = optarg; break;
        case 'h': o->hops = atoi(optarg); break;
        case 'r': o->rate = atof(optarg); break;
        case 's': o->size = (size_t)atol(optarg); break;
        case 'n': o->n = atol(optarg); break;
        case 'p': o->proxy = optarg; break;
        case 'c': o->name = optarg; break;
        case 'e': o->echo_port = atoi(optarg); break;
        case 'L': o->relay_port = atoi(optarg); break;
        case 'T': o->relay_to = optarg; break;
        default: return -1;
        }
    }
    if ((o->hops != 0 && o->hops != 1) || o->n < 1 || o->n > 1000000 || o->rate <= 0 ||
        o->rate > 100000 || o->size < 1 || o->size > MAX_SIZE ||
        o->echo_port < 0 || o->echo_port > 65535 || o->relay_port < 0 || o->relay_port > 65535 ||
        (o->relay_port > 0) != (o->relay_to != NULL))
        return -1;
    return 0;
}

/* Runs the exchanges; fills lat (ns, sorted). 0, or -1 if one failed. */
static int run(const struct opts *o, int fd, uint64_t *lat)
{
    static char buf[MAX_SIZE];
    memset(buf, 'x', o->size);
    uint64_t t0 = now_ns() + 10000000u; /* 10 ms for the children to settle */
    for (long i = 0; i < o->n; i++) {
        uint64_t due = t0 + (uint64_t)((double)i * 1e9 / o->rate);
        struct timespec ts = { .tv_sec = (time_t)(due / 1000000000u),
                               .tv_nsec = (long)(due % 1000000000u) };
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        if (write_full(fd, buf, o->size) < 0 || read_full(fd, buf, o->size) < 0) {
            fprintf(stderr, "hopfloor: exchange %ld failed: %s\n", i, strerror(errno));
            return -1;
        }
        lat[i] = now_ns() - due;
    }
    qsort(lat, (size_t)o->n, sizeof *lat, cmp_u64);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = { .label = "hopfloor", .hops = 0, .n = 800, .rate = 200, .size = 1024 };
    if (parse(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: hopfloor [--label L] [--hops 0|1] [-n N] [--rate R] [--size BYTES]\n"
                        "                [--proxy IP:PORT [--connect-name NAME] [--echo-port PORT]]\n"
                        "       hopfloor --relay-listen PORT --relay-to IP:PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (o.relay_port)
        return serve_relay(o.relay_port, o.relay_to);
    /* the wait before each exchange ends when asked, not up to 50 µs later */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    int p1[2], p2[2] = { -1, -1 };
    pid_t kids[2] = { -1, -1 };
    if (o.proxy) {
        /* the echo accepts one connection: the proxy's */
        int port = o.echo_port, l = tcp_listener(&port);
        if (l < 0)
            return 1;
        pid_t pid = fork();
        if (pid == 0) {
            int fd = accept(l, NULL, NULL);
            if (fd < 0)
                _exit(1);
            tune(fd);
            close(l);
            echo_main(fd, o.size);
        }
        kids[0] = pid;
        close(l);
        if ((p1[0] = via_proxy(o.proxy, o.name ? o.name : "127.0.0.1", port)) < 0) {
            kill(pid, SIGTERM);
            waitpid(pid, NULL, 0);
            return 1;
        }
        p1[1] = -1;
    } else if (tcp_pair(p1) < 0 || (o.hops == 1 && tcp_pair(p2) < 0)) {
        return 1;
    } else if (o.hops == 0) {
        kids[0] = spawn(p1[1], -1, o.size);
    } else {
        kids[0] = spawn(p2[1], -1, o.size);
        kids[1] = spawn(p1[1], p2[0], o.size);
        close(p2[0]);
        close(p2[1]);
    }
    if (p1[1] >= 0)
        close(p1[1]);
    uint64_t *lat = calloc((size_t)o.n, sizeof *lat);
    int rc = lat ? run(&o, p1[0], lat) : -1;
    close(p1[0]);
    for (int i = 0; i < 2; i++)
        if (kids[i] > 0)
            waitpid(kids[i], NULL, 0);
    if (rc < 0) {
        free(lat);
        return 1;
    }
    double sum = 0;
    for (long i = 0; i < o.n; i++)
        sum += (double)lat[i];
    long n = o.n;
    printf("{\"label\":\"%s\",\"mode\":\"hopfloor\",\"hops\":%d,\"requests\":%ld,\"rps\":%.1f,"
           "\"lat_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"max\":%llu,\"mean\":%.0f}}\n",
           o.label, o.hops, n, o.rate, (unsigned long long)(lat[n / 2] / 1000),
           (unsigned long long)(lat[n * 9 / 10] / 1000), (unsigned long long)(lat[n * 99 / 100] / 1000),
           (unsigned long long)(lat[n - 1] / 1000), sum / (double)n / 1000);
    free(lat);
    return 0;
}
