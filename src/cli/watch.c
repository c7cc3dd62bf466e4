/* cli/watch: `shoji watch` — a live view of the agent's connections: per
 * connection the process, destination, SNI, certificate name, URL, verdict
 * and the rule, read from the agent's admin socket (STATE/admin.sock).
 * Admins fill their exclusion lists from this view. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "util/util.h"

#define WATCH_ROWS 256

struct row {
    unsigned long long conn;
    bool used, closed;
    unsigned long long last_ms;
    int pid;
    char app[160], dst[64], sni[128], cert[128], url[256], verdict[16], rule[192];
};

struct watch {
    struct row rows[WATCH_ROWS];
    bool json, tty;
    long count;
    unsigned long long seen, missed;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: shoji watch [--state-dir DIR] [--once] [--json] [--count N]\n\n"
               "Live view of the agent's connections (process, destination, SNI, certificate\n"
               "name, URL, verdict, rule), from DIR/admin.sock of a running `shoji run`.\n"
               "  --once      print what the agent still remembers, then exit\n"
               "  --json      print the raw events, one JSON object per line\n"
               "  --count N   exit after N events\n"
               "On a terminal the view refreshes; piped, it prints one line per event.\n");
}

static void copy_str(json_t *o, const char *key, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (v)
        util_strlcpy(out, v, cap);
}

static struct row *row_for(struct watch *w, unsigned long long conn)
{
    struct row *oldest = NULL;
    for (size_t i = 0; i < WATCH_ROWS; i++) {
        struct row *r = &w->rows[i];
        if (r->used && r->conn == conn)
            return r;
        if (!r->used)
            oldest = oldest && !oldest->used ? oldest : r;
        else if (!oldest || (oldest->used && r->closed && (!oldest->closed || r->last_ms < oldest->last_ms)))
            oldest = r;
    }
    memset(oldest, 0, sizeof *oldest);
    oldest->used = true;
    oldest->conn = conn;
    return oldest;
}

static void apply(struct watch *w, json_t *ev)
{
    const char *kind = json_string_value(json_object_get(ev, "kind"));
    if (!kind)
        return;
    if (!strcmp(kind, "missed")) {
        w->missed += (unsigned long long)json_integer_value(json_object_get(ev, "count"));
        return;
    }
    struct row *r = row_for(w, (unsigned long long)json_integer_value(json_object_get(ev, "conn")));
    r->last_ms = (unsigned long long)json_integer_value(json_object_get(ev, "time_ms"));
    if (json_integer_value(json_object_get(ev, "pid")))
        r->pid = (int)json_integer_value(json_object_get(ev, "pid"));
    copy_str(ev, "app_path", r->app, sizeof r->app);
    if (!r->app[0])
        copy_str(ev, "app", r->app, sizeof r->app);
    copy_str(ev, "dst", r->dst, sizeof r->dst);
    copy_str(ev, "sni", r->sni, sizeof r->sni);
    copy_str(ev, "cert", r->cert, sizeof r->cert);
    copy_str(ev, "url", r->url, sizeof r->url);
    copy_str(ev, "verdict", r->verdict, sizeof r->verdict);
    copy_str(ev, "rule", r->rule, sizeof r->rule);
    if (!strcmp(kind, "c"))
        r->closed = true;
}

static void print_row(const struct row *r)
{
    printf("%-7llu %-6s %-28.28s %6d %-21.21s %-24.24s %-24.24s %-7s %-40.40s %s\n", r->conn,
           r->closed ? "closed" : "open", r->app[0] ? r->app : "-", r->pid, r->dst[0] ? r->dst : "-",
           r->sni[0] ? r->sni : "-", r->cert[0] ? r->cert : "-", r->verdict[0] ? r->verdict : "-",
           r->url[0] ? r->url : "-", r->rule);
}

static void print_table(struct watch *w)
{
    if (w->tty)
        fputs("\033[H\033[2J", stdout);
    printf("%-7s %-6s %-28s %6s %-21s %-24s %-24s %-7s %-40s %s\n", "CONN", "STATE", "PROCESS", "PID",
           "DESTINATION", "SNI", "CERTIFICATE", "VERDICT", "URL", "RULE");
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < WATCH_ROWS; i++)
            if (w->rows[i].used && w->rows[i].closed == (pass == 1))
                print_row(&w->rows[i]);
    if (w->missed)
        printf("(%llu events were missed: the view could not keep up)\n", w->missed);
    fflush(stdout);
}

static int connect_admin(const char *state_dir)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/admin.sock", state_dir) >= (int)sizeof sa.sun_path) {
        fprintf(stderr, "shoji watch: state dir path too long\n");
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "shoji watch: cannot connect to %s: %s\n"
                        "  is `shoji run --state-dir %s` running (and are you its user)?\n",
                sa.sun_path, strerror(errno), state_dir);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Handles the complete lines in buf; returns false when --count is reached. */
static bool handle_lines(struct watch *w, char *buf, size_t *len)
{
    char *start = buf, *nl;
    bool go_on = true;
    while (go_on && (nl = memchr(start, '\n', (size_t)(buf + *len - start)))) {
        *nl = '\0';
        json_t *ev = json_loads(start, 0, NULL);
        if (ev) {
            if (w->json) {
                puts(start);
                fflush(stdout);
            }
            apply(w, ev);
            json_decref(ev);
            w->seen++;
            if (w->count > 0 && w->seen >= (unsigned long long)w->count)
                go_on = false;
        }
        start = nl + 1;
    }
    *len = (size_t)(buf + *len - start);
    memmove(buf, start, *len);
    return go_on;
}

static int loop(struct watch *w, int fd, bool once)
{
    char buf[65536];
    size_t len = 0;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, once ? 400 : 500);
        if (r < 0 && errno != EINTR)
            return 1;
        if (r == 0) {
            if (once)
                break;
            if (w->tty && !w->json)
                print_table(w);
            continue;
        }
        ssize_t n = read(fd, buf + len, sizeof buf - len - 1);
        if (n <= 0) {
            fprintf(stderr, "shoji watch: the agent closed the admin socket\n");
            break;
        }
        len += (size_t)n;
        if (!handle_lines(w, buf, &len))
            break;
        if (len == sizeof buf - 1)
            len = 0;   /* a line longer than any event: drop it */
    }
    if (!w->json)
        print_table(w);
    return 0;
}

int cli_watch(int argc, char **argv)
{
    const char *state_dir = CLI_DEFAULT_STATE_DIR;
    struct watch *w = calloc(1, sizeof *w);
    bool once = false;
    if (!w)
        return 1;
    w->count = -1;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            free(w);
            return 0;
        } else if (cli_flag(argv, i, "--once")) {
            once = true;
        } else if (cli_flag(argv, i, "--json")) {
            w->json = true;
        } else if ((r = cli_opt(argc, argv, &i, "--state-dir", &v)) != 0) {
            if (r < 0)
                goto usage_error;
            state_dir = v;
        } else if ((r = cli_opt(argc, argv, &i, "--count", &v)) != 0) {
            if (r < 0 || (w->count = strtol(v, NULL, 10)) <= 0)
                goto usage_error;
        } else {
            fprintf(stderr, "shoji watch: unknown option '%s'\n", argv[i]);
            goto usage_error;
        }
    }
    w->tty = isatty(STDOUT_FILENO) && !once;
    int fd = connect_admin(state_dir);
    if (fd < 0) {
        free(w);
        return 1;
    }
    int rc = loop(w, fd, once);
    close(fd);
    free(w);
    return rc;
usage_error:
    usage(stderr);
    free(w);
    return 2;
}
