/* proxy: the agent's proxy engine — listeners, worker event loops, the
 * client/upstream connection pair, HTTP forwarding, CONNECT tunnels and
 * HTTPS decoding. It gathers facts and carries out verdicts; it decides
 * nothing itself (policy_decide() does).
 * Must never: block an event loop on the network, hold a whole body in
 * memory, hide an upstream certificate failure, or abort on bad input. */
#ifndef SHOJI_PROXY_H
#define SHOJI_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proxy_limits {
    size_t max_head;             /* request/response head bytes (431 past it) */
    size_t max_line;             /* request line bytes (414 past it) */
    size_t max_headers;          /* header fields (431 past it) */
    unsigned header_timeout_ms;  /* a started head must complete (408) */
    unsigned idle_timeout_ms;    /* keep-alive client idle (silent close) */
    unsigned handshake_timeout_ms; /* client or upstream TLS handshake */
    unsigned connect_timeout_ms; /* upstream TCP connect (504) */
    unsigned response_timeout_ms;/* upstream response head (504) */
    unsigned transfer_timeout_ms;/* no progress in a body transfer */
    unsigned tunnel_idle_ms;     /* no bytes either way in a tunnel */
    unsigned peek_timeout_ms;    /* CONNECT: client silent -> tunnel */
    unsigned shutdown_grace_ms;  /* SIGTERM: in-flight work deadline */
    unsigned max_connections;    /* client connections, all workers (503) */
    unsigned pool_per_worker;    /* idle upstream connections kept per worker */
    unsigned pool_idle_ms;       /* idle upstream connection lifetime */
    /* CONNECT targets on these ports get their origin connection opened
     * while the client prepares its ClientHello (proxy/early.c); none: 0 */
    uint16_t early_ports[8];
    unsigned n_early_ports;
};
void proxy_limits_default(struct proxy_limits *l);

struct proxy_config {
    const char *listen;          /* "127.0.0.1:3128" or "[::1]:3128" */
    const char *transparent;     /* transparent listener (nftables redirect), or NULL */
    const char *state_dir;       /* CA, leaf key, cert cache, learned state */
    const char *policy_path;     /* NULL: built-in allow-all policy */
    const char *hosts_path;      /* hosts(5) file consulted before DNS */
    const char *upstream_ca;     /* extra trust anchors for origins (PEM) */
    const char *access_log;      /* NULL: no access log; "-" = stdout */
    const char *log_format;      /* "json" (default) or "squid" */
    int workers;                 /* 0: number of cores */
    const char *user;            /* drop to this user after binding, or NULL */
    const char *allow_clients;   /* "CIDR,CIDR": who may use a non-loopback listener */
    unsigned sync_interval_s;    /* enrolled: policy poll interval (0: 60 s), docs/SYNC.md */
    struct proxy_limits limits;
};

/* Runs the agent until SIGTERM/SIGINT (graceful: stop accepting, finish
 * in-flight work up to shutdown_grace_ms). SIGHUP reloads the policy and
 * hosts files; a bad file keeps the old one and logs why. Returns 0 after a
 * clean stop, negative with `err` set when start-up fails. */
int proxy_run(const struct proxy_config *cfg, char *err, size_t errlen);

#endif
