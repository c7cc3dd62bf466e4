/* shoji intercept: turns transparent interception on and off (nftables
 * table `inet shoji`), shows it, and drives the agent-liveness heartbeat.
 * Every option is documented in usage() below and in docs/CLI.md. */
#include "cli/cli.h"
#include "platform/platform.h"
#include "util/util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
        "usage: shoji intercept enable --port PORT [--ports 80,443] [--block-quic yes|no]\n"
        "                              [--fail-mode open|closed] [--exclude CIDR]... [--exclude-uid UID]...\n"
        "                              [--dry-run]\n"
        "       shoji intercept disable\n"
        "       shoji intercept status\n"
        "       shoji intercept heartbeat [--ttl SECONDS] [--loop]\n"
        "\n"
        "enable      install (or atomically replace) nftables table 'inet shoji': outgoing TCP to\n"
        "            --ports (default 80,443) of local processes is redirected to the agent's\n"
        "            transparent listener on 127.0.0.1:PORT / [::1]:PORT while the agent is alive.\n"
        "  --port PORT          the agent's transparent port (prefer one below 1024: only root can\n"
        "                       bind it, so no other program can catch the traffic)\n"
        "  --ports LIST         TCP destination ports to redirect (default 80,443)\n"
        "  --block-quic yes|no  reject outgoing UDP 443 so browsers fall back to TCP (default yes)\n"
        "  --fail-mode open     agent down: traffic flows direct, unfiltered (default)\n"
        "  --fail-mode closed   agent down: connections are refused at once (TCP reset)\n"
        "  --exclude CIDR       never redirect this destination (repeatable; e.g. the management\n"
        "                       server). This machine's own addresses and loopback are always excluded\n"
        "  --exclude-uid UID    never redirect traffic of this user (repeatable)\n"
        "  --dry-run            print the nft rules instead of installing them\n"
        "disable     delete table 'inet shoji' (nothing else is touched)\n"
        "status      show the rules, their counters and whether the agent is live\n"
        "heartbeat   mark the agent alive for --ttl seconds (default 3); --loop repeats every\n"
        "            ttl/3 until killed (a stand-in or supervisor for the agent); SIGTERM/SIGINT\n"
        "            mark it down at once\n"
        "Needs root (CAP_NET_ADMIN). See docs/INTERCEPT.md.\n");
}

static int parse_uid(const char *s, uint32_t *uid)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || v >= UINT32_MAX || s[0] == '-')
        return -1;
    *uid = (uint32_t)v;
    return 0;
}

static int parse_yes_no(const char *opt, const char *v, bool *out)
{
    if (!strcmp(v, "yes")) {
        *out = true;
        return 0;
    }
    if (!strcmp(v, "no")) {
        *out = false;
        return 0;
    }
    fprintf(stderr, "shoji intercept: %s takes yes or no, not '%s'\n", opt, v);
    return -1;
}

/* One option of `enable`; returns 1 consumed, 0 not this one, -1 error. */
static int enable_opt(int argc, char **argv, int *i, struct platform_intercept_config *cfg,
                      char *err, size_t errlen)
{
    const char *v = NULL;
    int r;
    if ((r = cli_opt(argc, argv, i, "--port", &v)) != 0) {
        char *end = NULL;
        long p = r > 0 ? strtol(v, &end, 10) : 0;
        if (r < 0 || !*v || *end || p < 1 || p > 65535)
            return util_err(err, errlen, -EINVAL, "--port takes a port number 1..65535"), -1;
        cfg->port = (uint16_t)p;
        return 1;
    }
    if ((r = cli_opt(argc, argv, i, "--ports", &v)) != 0)
        return r < 0 || platform_ports_parse(v, cfg, err, errlen) < 0 ? -1 : 1;
    if ((r = cli_opt(argc, argv, i, "--block-quic", &v)) != 0)
        return r < 0 || parse_yes_no("--block-quic", v, &cfg->block_quic) < 0 ? -1 : 1;
    if ((r = cli_opt(argc, argv, i, "--fail-mode", &v)) != 0) {
        if (r > 0 && !strcmp(v, "open"))
            cfg->fail_mode = PLATFORM_FAIL_OPEN;
        else if (r > 0 && !strcmp(v, "closed"))
            cfg->fail_mode = PLATFORM_FAIL_CLOSED;
        else
            return util_err(err, errlen, -EINVAL, "--fail-mode takes open or closed"), -1;
        return 1;
    }
    if ((r = cli_opt(argc, argv, i, "--exclude", &v)) != 0) {
        if (r < 0)
            return -1;
        if (cfg->nexcludes == PLATFORM_MAX_EXCLUDES)
            return util_err(err, errlen, -E2BIG, "at most %d --exclude", PLATFORM_MAX_EXCLUDES), -1;
        if (platform_cidr_parse(v, &cfg->excludes[cfg->nexcludes], err, errlen) < 0)
            return -1;
        cfg->nexcludes++;
        return 1;
    }
    if ((r = cli_opt(argc, argv, i, "--exclude-uid", &v)) != 0) {
        if (r < 0)
            return -1;
        if (cfg->nexclude_uids == PLATFORM_MAX_EXCLUDE_UIDS ||
            parse_uid(v, &cfg->exclude_uids[cfg->nexclude_uids]) < 0)
            return util_err(err, errlen, -EINVAL, "--exclude-uid takes a numeric uid (at most %d)",
                            PLATFORM_MAX_EXCLUDE_UIDS), -1;
        cfg->nexclude_uids++;
        return 1;
    }
    return 0;
}

static int cmd_enable(int argc, char **argv)
{
    struct platform_intercept_config cfg;
    char err[UTIL_ERRLEN] = "";
    bool dry = false;
    platform_intercept_config_default(&cfg);
    for (int i = 1; i < argc; i++) {
        if (cli_flag(argv, i, "--dry-run")) {
            dry = true;
            continue;
        }
        int r = enable_opt(argc, argv, &i, &cfg, err, sizeof err);
        if (r < 0) {
            if (err[0])
                fprintf(stderr, "shoji intercept: %s\n", err);
            return 2;
        }
        if (r == 0) {
            fprintf(stderr, "shoji intercept enable: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (cfg.port == 0) {
        fprintf(stderr, "shoji intercept enable: --port PORT is required (the agent's transparent port)\n");
        return 2;
    }
    char buf[16384];   /* render first: a bad combination is a usage error */
    int n = platform_intercept_render(&cfg, buf, sizeof buf, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "shoji intercept: %s\n", err);
        return 2;
    }
    if (dry) {
        fwrite(buf, 1, (size_t)n, stdout);
        return 0;
    }
    if (platform_intercept_enable(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "shoji intercept: %s\n", err);
        return 1;
    }
    printf("interception enabled: TCP to ports");
    for (size_t i = 0; i < cfg.nports; i++)
        printf("%s%u", i ? "," : " ", cfg.ports[i]);
    printf(" -> local port %u while the agent is live; fail-mode %s; QUIC %s\n", cfg.port,
           cfg.fail_mode == PLATFORM_FAIL_CLOSED ? "closed" : "open",
           cfg.block_quic ? "blocked" : "allowed");
    return 0;
}

static int cmd_disable(int argc, char **argv)
{
    char err[UTIL_ERRLEN] = "";
    bool was = false;
    if (argc > 1) {
        fprintf(stderr, "shoji intercept disable: takes no options\n");
        return 2;
    }
    if (platform_intercept_disable(&was, err, sizeof err) < 0) {
        fprintf(stderr, "shoji intercept: %s\n", err);
        return 1;
    }
    printf("%s\n", was ? "interception disabled (table inet shoji removed)"
                       : "interception was not enabled; nothing to do");
    return 0;
}

static int cmd_status(int argc, char **argv)
{
    char err[UTIL_ERRLEN] = "";
    char *out = NULL;
    int rc = platform_intercept_status(&out, err, sizeof err);
    if (rc == -ENOENT) {
        printf("interception: disabled\n");
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "shoji intercept: %s\n", err);
        return 1;
    }
    /* The live set lists an element with its expiry only while the agent's
     * heartbeat is fresh. */
    const char *live = strstr(out, "set live");
    const char *end = live ? strchr(live, '}') : NULL;
    const char *elem = live ? strstr(live, "elements") : NULL;
    bool up = elem && end && elem < end;
    printf("interception: enabled; agent %s\n\n%s", up ? "live (redirecting)" : "not live (fail mode applies)",
           out);
    free(out);
    return 0;
}

static volatile sig_atomic_t stop_flag;
static void on_stop(int sig) { stop_flag = sig; }

static int cmd_heartbeat(int argc, char **argv)
{
    char err[UTIL_ERRLEN] = "";
    long ttl = 3;
    bool loop = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r = cli_opt(argc, argv, &i, "--ttl", &v);
        if (r < 0)
            return 2;
        if (r > 0) {
            char *end = NULL;
            ttl = strtol(v, &end, 10);
            if (!*v || *end || ttl < 1 || ttl > 3600) {
                fprintf(stderr, "shoji intercept heartbeat: --ttl takes 1..3600 seconds\n");
                return 2;
            }
        } else if (cli_flag(argv, i, "--loop")) {
            loop = true;
        } else {
            fprintf(stderr, "shoji intercept heartbeat: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    do {
        if (platform_intercept_heartbeat((unsigned)ttl * 1000u, err, sizeof err) < 0) {
            fprintf(stderr, "shoji intercept: %s\n", err);
            return 1;
        }
        if (!loop)
            return 0;
        struct timespec ts = { .tv_sec = ttl / 3, .tv_nsec = (ttl % 3) * 333000000L };
        nanosleep(&ts, NULL);   /* a signal cuts the sleep short */
    } while (!stop_flag);
    if (platform_intercept_down(err, sizeof err) < 0) {
        fprintf(stderr, "shoji intercept: %s\n", err);
        return 1;
    }
    return 0;
}

int cli_intercept(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "enable"))
        return cmd_enable(argc - 1, argv + 1);
    if (!strcmp(sub, "disable"))
        return cmd_disable(argc - 1, argv + 1);
    if (!strcmp(sub, "status"))
        return cmd_status(argc - 1, argv + 1);
    if (!strcmp(sub, "heartbeat"))
        return cmd_heartbeat(argc - 1, argv + 1);
    fprintf(stderr, "shoji intercept: unknown subcommand '%s'\n", sub);
    usage(stderr);
    return 2;
}
