/* cli/run: `shoji run` — starts the agent. Every flag is documented here and
 * in docs/CLI.md. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "proxy/proxy.h"
#include "util/log.h"
#include "util/util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shoji run --listen ADDR:PORT --state-dir DIR [options]\n"
            "\n"
            "Runs the agent as an explicit HTTP proxy that decodes HTTPS with the local CA.\n"
            "\n"
            "  --listen ADDR:PORT     where to accept proxy clients (default 127.0.0.1:3128)\n"
            "  --transparent ADDR:PORT  also accept connections redirected by `shoji intercept`\n"
            "                         (original destination from SO_ORIGINAL_DST; docs/INTERCEPT.md)\n"
            "  --state-dir DIR        CA, leaf key, certificate cache, learned state\n"
            "                         (default %s; create the CA with `shoji ca init`)\n"
            "  --policy FILE          policy file (JSON, docs/POLICY.md); default: allow all, decode all\n"
            "  --hosts FILE           hosts(5) file consulted before DNS\n"
            "  --upstream-ca FILE     extra CA certificates (PEM) trusted for origins, besides the system store\n"
            "  --access-log FILE      access log, one line per request and per tunnel ('-' = stdout)\n"
            "  --log-format FMT       json (default) or squid\n"
            "  --allow-clients CIDRS  client networks allowed on a non-loopback --listen\n"
            "                         (required for one: shoji is never an open relay)\n"
            "  --workers N            event-loop threads (default: the number of cores)\n"
            "  --max-connections N    client connections at once; past it: 503 (default 16384)\n"
            "  --early-connect PORTS  CONNECT targets on these ports (comma-separated, at most 8)\n"
            "                         get their origin connection opened before the ClientHello\n"
            "                         arrives; 'none' turns it off (default 443; docs/OPERATIONS.md)\n"
            "  --user NAME            after binding, run as NAME keeping only the capabilities\n"
            "                         it needs (docs/SECURITY.md)\n"
            "  --header-timeout MS, --idle-timeout MS, --handshake-timeout MS,\n"
            "  --connect-timeout MS, --response-timeout MS, --transfer-timeout MS,\n"
            "  --tunnel-idle-timeout MS, --shutdown-grace MS\n"
            "                         limits in milliseconds (defaults in docs/OPERATIONS.md)\n"
            "  --sync-interval SECS   enrolled agents (`shoji enroll`): poll the server's policy and\n"
            "                         tasks this often, +-10%% jitter (default 60; docs/SYNC.md)\n"
            "  --verbose              debug messages on stderr\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the policy and hosts files\n"
            "and reopens the access log.\n",
            CLI_DEFAULT_STATE_DIR);
}

/* "443,8443" or "none". */
static int parse_ports(const char *v, struct proxy_limits *l)
{
    l->n_early_ports = 0;
    if (strcmp(v, "none") == 0)
        return 0;
    const char *p = v;
    for (;;) {
        char *end;
        unsigned long n = strtoul(p, &end, 10);
        if (end == p || n < 1 || n > 65535 || (*end && *end != ',') ||
            l->n_early_ports >= UTIL_ARRAY_LEN(l->early_ports)) {
            fprintf(stderr, "shoji run: --early-connect '%s': expected 'none' or up to %zu ports "
                            "from 1 to 65535, comma-separated\n",
                    v, UTIL_ARRAY_LEN(l->early_ports));
            return -1;
        }
        l->early_ports[l->n_early_ports++] = (uint16_t)n;
        if (!*end)
            return 0;
        p = end + 1;
    }
}

static int parse_uint(const char *flag, const char *v, unsigned max, unsigned *out)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || n < 1 || n > max) {
        fprintf(stderr, "shoji run: %s '%s': expected a number from 1 to %u\n", flag, v, max);
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

/* Timeouts settable from the command line, in milliseconds. */
struct timeout_flag {
    const char *flag;
    size_t off;
};
#define TF(f, field) { f, offsetof(struct proxy_limits, field) }
static const struct timeout_flag timeout_flags[] = {
    TF("--header-timeout", header_timeout_ms),
    TF("--idle-timeout", idle_timeout_ms),
    TF("--handshake-timeout", handshake_timeout_ms),
    TF("--connect-timeout", connect_timeout_ms),
    TF("--response-timeout", response_timeout_ms),
    TF("--transfer-timeout", transfer_timeout_ms),
    TF("--tunnel-idle-timeout", tunnel_idle_ms),
    TF("--shutdown-grace", shutdown_grace_ms),
};
#undef TF

/* 1 when argv[*i] was a timeout flag (parsed into cfg), 0 when not, -1 on error. */
static int timeout_opt(int argc, char **argv, int *i, struct proxy_config *cfg)
{
    for (size_t k = 0; k < sizeof timeout_flags / sizeof timeout_flags[0]; k++) {
        const char *v = NULL;
        int r = cli_opt(argc, argv, i, timeout_flags[k].flag, &v);
        if (r == 0)
            continue;
        if (r < 0 || parse_uint(timeout_flags[k].flag, v, 86400000u,
                                (unsigned *)((char *)&cfg->limits + timeout_flags[k].off)) < 0)
            return -1;
        return 1;
    }
    return 0;
}

int cli_run(int argc, char **argv)
{
    struct proxy_config cfg = { .listen = "127.0.0.1:3128", .state_dir = CLI_DEFAULT_STATE_DIR };
    proxy_limits_default(&cfg.limits);
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            return 0;
        }
        if (cli_flag(argv, i, "--verbose")) {
            log_set_level(LOG_DEBUG);
            continue;
        }
        CLI_OPT_STR("--listen", cfg.listen)
        CLI_OPT_STR("--transparent", cfg.transparent)
        CLI_OPT_STR("--state-dir", cfg.state_dir)
        CLI_OPT_STR("--policy", cfg.policy_path)
        CLI_OPT_STR("--hosts", cfg.hosts_path)
        CLI_OPT_STR("--upstream-ca", cfg.upstream_ca)
        CLI_OPT_STR("--access-log", cfg.access_log)
        CLI_OPT_STR("--log-format", cfg.log_format)
        CLI_OPT_STR("--allow-clients", cfg.allow_clients)
        CLI_OPT_STR("--user", cfg.user)
        if ((r = cli_opt(argc, argv, &i, "--workers", &v)) != 0) {
            unsigned n;
            if (r < 0 || parse_uint("--workers", v, 256, &n) < 0)
                return 2;
            cfg.workers = (int)n;
            continue;
        }
        if ((r = cli_opt(argc, argv, &i, "--sync-interval", &v)) != 0) {
            if (r < 0 || parse_uint("--sync-interval", v, 86400, &cfg.sync_interval_s) < 0)
                return 2;
            continue;
        }
        if ((r = timeout_opt(argc, argv, &i, &cfg)) != 0) {
            if (r < 0)
                return 2;
            continue;
        }
        if ((r = cli_opt(argc, argv, &i, "--max-connections", &v)) != 0) {
            if (r < 0 || parse_uint("--max-connections", v, 1000000, &cfg.limits.max_connections) < 0)
                return 2;
            continue;
        }
        if ((r = cli_opt(argc, argv, &i, "--early-connect", &v)) != 0) {
            if (r < 0 || parse_ports(v, &cfg.limits) < 0)
                return 2;
            continue;
        }
        fprintf(stderr, "shoji run: unknown option '%s'\n\n", argv[i]);
        usage(stderr);
        return 2;
    }
    if (cfg.log_format && strcmp(cfg.log_format, "json") && strcmp(cfg.log_format, "squid")) {
        fprintf(stderr, "shoji run: --log-format '%s': expected json or squid\n", cfg.log_format);
        return 2;
    }
    char err[UTIL_ERRLEN];
    if (proxy_run(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "shoji run: %s\n", err);
        return 1;
    }
    return 0;
}
