/* shoji-server: the management server's entry point — command line, start-up
 * (database + migrations, TLS certificate, HTTPS listener), the expiry
 * sweep, and the admin subcommands (admin add, admin token, migrate). */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cert.h"
#include "util/log.h"
#include "util/util.h"

static void usage(FILE *f)
{
    fputs("usage: shoji-server [serve] --listen ADDR:PORT [--db sqlite:PATH|postgresql://...]\n"
          "                    [--tls-cert FILE --tls-key FILE] [--data-dir DIR] [--threads N]\n"
          "                    [--online-secs N] [--stale-secs N] [--expire-secs N]\n"
          "                    [--session-secs N] [--lockout-failures N] [--lockout-secs N]\n"
          "                    [--sweep-secs N] [--retention-days N] [--console-dir DIR]\n"
          "                    [--verbose]\n"
          "       shoji-server admin add --db URL --user NAME [--password-file FILE]\n"
          "                    (password from stdin when no file is given)\n"
          "       shoji-server admin token --db URL --user NAME [--name LABEL]\n"
          "       shoji-server migrate --db URL\n"
          "Defaults: --listen 127.0.0.1:8443, --data-dir /var/lib/shoji-server,\n"
          "--db sqlite:DATA_DIR/server.db, online 300 s, stale 86400 s, expire never.\n"
          "See docs/SERVER.md and docs/API.md.\n", f);
}

/* --name VALUE or --name=VALUE; 1 if matched, -1 if the value is missing. */
static int opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n])
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "shoji-server: %s needs a value\n", name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

static int num(const char *name, const char *v, int64_t lo, int64_t *out)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end || x < lo) {
        fprintf(stderr, "shoji-server: %s '%s': expected an integer >= %lld\n", name, v,
                (long long)lo);
        return -1;
    }
    *out = x;
    return 0;
}

struct opts {
    struct srv_config c;
    const char *user, *pwfile, *name;
    char dbbuf[4200];
};

static int parse(int argc, char **argv, int start, struct opts *o)
{
    static const struct { const char *name; int64_t lo; size_t off; } nums[] = {
        { "--online-secs", 1, offsetof(struct srv_config, online_secs) },
        { "--stale-secs", 1, offsetof(struct srv_config, stale_secs) },
        { "--expire-secs", 0, offsetof(struct srv_config, expire_secs) },
        { "--session-secs", 1, offsetof(struct srv_config, session_secs) },
        { "--lockout-secs", 1, offsetof(struct srv_config, lockout_secs) },
        { "--sweep-secs", 1, offsetof(struct srv_config, sweep_secs) },
        { "--retention-days", 0, offsetof(struct srv_config, retention_secs) },
    };
    for (int i = start; i < argc; i++) {
        const char *v = NULL;
        int m = 0;
        if ((m = opt(argc, argv, &i, "--listen", &o->c.listen)) ||
            (m = opt(argc, argv, &i, "--db", &o->c.db_url)) ||
            (m = opt(argc, argv, &i, "--data-dir", &o->c.data_dir)) ||
            (m = opt(argc, argv, &i, "--tls-cert", &o->c.tls_cert)) ||
            (m = opt(argc, argv, &i, "--tls-key", &o->c.tls_key)) ||
            (m = opt(argc, argv, &i, "--user", &o->user)) ||
            (m = opt(argc, argv, &i, "--password-file", &o->pwfile)) ||
            (m = opt(argc, argv, &i, "--name", &o->name)) ||
            (m = opt(argc, argv, &i, "--console-dir", &o->c.console_dir))) {
            if (m < 0)
                return -1;
            continue;
        }
        for (size_t k = 0; k < UTIL_ARRAY_LEN(nums) && !m; k++) {
            if ((m = opt(argc, argv, &i, nums[k].name, &v)) > 0 &&
                num(nums[k].name, v, nums[k].lo, (int64_t *)((char *)&o->c + nums[k].off)) < 0)
                return -1;
        }
        if (m < 0)
            return -1;
        if (m)
            continue;
        int64_t x;
        if ((m = opt(argc, argv, &i, "--threads", &v)) || (m = opt(argc, argv, &i, "--lockout-failures", &v))) {
            if (m < 0 || num(argv[i - 1], v, 1, &x) < 0)
                return -1;
            if (strcmp(argv[i - 1], "--threads") == 0)
                o->c.threads = (int)(x > 64 ? 64 : x);
            else
                o->c.lockout_failures = (int)(x > 1000 ? 1000 : x);
            continue;
        }
        if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            log_set_level(LOG_DEBUG);
            continue;
        }
        fprintf(stderr, "shoji-server: unknown option '%s'\n", argv[i]);
        usage(stderr);
        return -1;
    }
    if (!o->c.db_url) {
        snprintf(o->dbbuf, sizeof o->dbbuf, "sqlite:%s/server.db", o->c.data_dir);
        o->c.db_url = o->dbbuf;
        char err[UTIL_ERRLEN];
        if (util_mkdirs(o->c.data_dir, 0700, err, sizeof err) < 0) {
            fprintf(stderr, "shoji-server: %s\n", err);
            return -1;
        }
    }
    return 0;
}

static int open_db(struct opts *o, int nconns, struct db **db)
{
    char err[UTIL_ERRLEN];
    if (db_open(o->c.db_url, nconns, db, err, sizeof err) < 0 || db_migrate(*db, err, sizeof err) < 0) {
        fprintf(stderr, "shoji-server: %s\n", err);
        db_close(*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

/* Reads the password from a file or stdin: the first line, without newline. */
static int read_password(const char *file, char *pw, size_t cap)
{
    FILE *f = file ? fopen(file, "r") : stdin;
    if (!f) {
        fprintf(stderr, "shoji-server: cannot read %s: %s\n", file, strerror(errno));
        return -1;
    }
    if (!file && isatty(0))
        fprintf(stderr, "password: ");
    char *ok = fgets(pw, (int)cap, f);
    if (file)
        fclose(f);
    if (!ok) {
        fprintf(stderr, "shoji-server: no password given (stdin or --password-file)\n");
        return -1;
    }
    pw[strcspn(pw, "\r\n")] = '\0';
    return 0;
}

static int cmd_admin(int argc, char **argv, struct opts *o)
{
    if (argc < 3 || (strcmp(argv[2], "add") != 0 && strcmp(argv[2], "token") != 0)) {
        usage(stderr);
        return 2;
    }
    if (parse(argc, argv, 3, o) < 0)
        return 2;
    if (!o->user) {
        fprintf(stderr, "shoji-server: admin %s needs --user NAME\n", argv[2]);
        return 2;
    }
    struct db *db = NULL;
    if (open_db(o, 1, &db) < 0)
        return 1;
    char err[UTIL_ERRLEN], pw[1024], tok[200];
    int rc;
    if (strcmp(argv[2], "add") == 0) {
        bool have_pw = read_password(o->pwfile, pw, sizeof pw) == 0;
        rc = have_pw ? auth_admin_add(db, o->user, pw, err, sizeof err)
                     : util_err(err, sizeof err, -EINVAL, "no password read");
        sodium_memzero(pw, sizeof pw);
        if (rc == 0)
            printf("admin '%s' saved\n", o->user);
    } else {
        rc = auth_token_add(db, o->user, o->name ? o->name : "cli", tok, sizeof tok, err, sizeof err);
        if (rc == 0)
            printf("%s\n", tok);
    }
    if (rc < 0)
        fprintf(stderr, "shoji-server: %s\n", err);
    db_close(db);
    return rc < 0 ? 1 : 0;
}

static int serve(struct opts *o)
{
    struct srv s = { .cfg = o->c };
    char err[UTIL_ERRLEN];
    struct cert_pem cert;
    if (cert_setup(o->c.tls_cert, o->c.tls_key, o->c.data_dir, &cert, err, sizeof err) < 0) {
        fprintf(stderr, "shoji-server: TLS: %s\n", err);
        return 1;
    }
    if (open_db(o, o->c.threads + 2, &s.db) < 0) {
        cert_free(&cert);
        return 1;
    }
    util_strlcpy(s.fingerprint, cert.fingerprint, sizeof s.fingerprint);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);     /* inherited by the HTTP threads */
    signal(SIGPIPE, SIG_IGN);
    int rc = web_start(&s, cert.cert, cert.key, err, sizeof err);
    cert_free(&cert);
    if (rc < 0) {
        fprintf(stderr, "shoji-server: %s\n", err);
        db_close(s.db);
        return 1;
    }
    char host[256];
    const char *colon = strrchr(o->c.listen, ':');
    sv_copy(host, sizeof host, sv_make(o->c.listen, colon ? (size_t)(colon - o->c.listen) : 0));
    printf("shoji-server %s: listening on https://%s:%d (port %d), database %s\n", SHOJI_VERSION,
           host, web_port(), web_port(), db_kind(s.db) == DB_SQLITE ? "sqlite" : "postgresql");
    printf("certificate SHA-256 fingerprint: %s\n", s.fingerprint);
    fflush(stdout);
    for (;;) {
        struct timespec ts = { (time_t)o->c.sweep_secs, 0 };
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        struct db_conn *c = db_acquire(s.db);
        if (agents_sweep(&s, c, (int64_t)time(NULL), err, sizeof err) < 0)
            log_warn("expiry sweep: %s", err);
        if (data_retention_sweep(&s, c, (int64_t)time(NULL), err, sizeof err) < 0)
            log_warn("retention sweep: %s", err);
        db_release(s.db, c);
    }
    log_info("shutting down");
    web_stop();
    db_close(s.db);
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "shoji-server: libsodium failed to initialise\n");
        return 1;
    }
    umask(077);     /* the database and its WAL hold hashes and logs: owner only */
    struct opts o;
    memset(&o, 0, sizeof o);
    o.c = (struct srv_config){ .listen = "127.0.0.1:8443", .data_dir = "/var/lib/shoji-server",
                               .threads = 4, .online_secs = 300, .stale_secs = 86400,
                               .expire_secs = 0, .session_secs = 8 * 3600,
                               .lockout_failures = 5, .lockout_secs = 900, .sweep_secs = 60,
                               .policy_base_dir = "/" };
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("shoji-server %s\n", SHOJI_VERSION);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "admin") == 0)
        return cmd_admin(argc, argv, &o);
    int start = 1;
    bool migrate_only = false;
    if (argc >= 2 && strcmp(argv[1], "migrate") == 0)
        migrate_only = true, start = 2;
    else if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        start = 2;
    if (parse(argc, argv, start, &o) < 0)
        return 2;
    o.c.retention_secs *= 86400;      /* parsed as days */
    if (!o.c.console_dir && access(SHOJI_SOURCE_DIR "/console/index.html", R_OK) == 0)
        o.c.console_dir = SHOJI_SOURCE_DIR "/console";
    if (o.c.stale_secs < o.c.online_secs)
        o.c.stale_secs = o.c.online_secs;
    if (migrate_only) {
        struct db *db = NULL;
        if (open_db(&o, 1, &db) < 0)
            return 1;
        printf("database is at schema version %d\n", db_migrations[db_nmigrations - 1].version);
        db_close(db);
        return 0;
    }
    return serve(&o);
}
