/* cli/enroll: `shoji enroll` and `shoji unenroll` — join or leave a
 * shoji-server (docs/SYNC.md). Every flag is documented here and in
 * docs/CLI.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mgmt/mgmt.h"
#include "util/util.h"

static void enroll_usage(FILE *f)
{
    fprintf(f,
            "usage: shoji enroll --server https://HOST:PORT --token TOKEN [--fingerprint SHA256]\n"
            "                    [--state-dir DIR] [--machine-id-file FILE] [--timeout SECONDS]\n"
            "\n"
            "Enrols this agent with a shoji-server: stores the server URL, its pinned certificate\n"
            "fingerprint and the agent's credential in STATE/mgmt.json (mode 0600). `shoji run`\n"
            "then polls the server's policy, uploads logs and runs remote tasks.\n"
            "\n"
            "  --server URL            the server (https only)\n"
            "  --token TOKEN           an enrolment token (enrol.<id>.<secret>) from the admin\n"
            "  --fingerprint SHA256    the server certificate's SHA-256 fingerprint, as printed by\n"
            "                          shoji-server at start; a mismatch is refused. Without it the\n"
            "                          certificate seen now is trusted and pinned (trust on first use)\n"
            "  --state-dir DIR         default %s\n"
            "  --machine-id-file FILE  the machine identity (default /etc/machine-id; only its\n"
            "                          SHA-256 is sent): the same machine is always the same agent\n"
            "  --timeout SECONDS       network timeout (default 15)\n",
            CLI_DEFAULT_STATE_DIR);
}

static int parse_secs(const char *cmd, const char *v, unsigned *out)
{
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || n < 1 || n > 86400) {
        fprintf(stderr, "shoji %s: --timeout '%s': expected seconds from 1 to 86400\n", cmd, v);
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

int cli_enroll(int argc, char **argv)
{
    struct mgmt_enroll_opts o = { .state_dir = CLI_DEFAULT_STATE_DIR, .timeout_ms = 15000 };
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            enroll_usage(stdout);
            return 0;
        }
        CLI_OPT_STR("--server", o.server)
        CLI_OPT_STR("--token", o.token)
        CLI_OPT_STR("--fingerprint", o.fingerprint)
        CLI_OPT_STR("--state-dir", o.state_dir)
        CLI_OPT_STR("--machine-id-file", o.machine_id_file)
        if ((r = cli_opt(argc, argv, &i, "--timeout", &v)) != 0) {
            unsigned s;
            if (r < 0 || parse_secs("enroll", v, &s) < 0)
                return 2;
            o.timeout_ms = s * 1000;
            continue;
        }
        fprintf(stderr, "shoji enroll: unknown option '%s'\n\n", argv[i]);
        enroll_usage(stderr);
        return 2;
    }
    if (!o.server || !o.token) {
        fprintf(stderr, "shoji enroll: --server and --token are required\n\n");
        enroll_usage(stderr);
        return 2;
    }
    char err[UTIL_ERRLEN];
    struct mgmt_enroll_result res;
    if (mgmt_enroll(&o, &res, err, sizeof err) < 0) {
        fprintf(stderr, "shoji enroll: %s\n", err);
        return 1;
    }
    if (res.tofu)
        printf("no --fingerprint given: trusting the server's certificate on first use and pinning it\n"
               "  SHA-256 fingerprint %s\n"
               "  (compare it with the one shoji-server printed at start)\n",
               res.fingerprint);
    printf("enrolled as agent %s in group %s%s with %s\n", res.agent_id, res.group[0] ? res.group : "default",
           res.reenrolled ? " (this machine was known: same agent, new credential)" : "", o.server);
    printf("state: %s/%s; restart `shoji run` to start syncing\n", o.state_dir, MGMT_STATE_FILE);
    return 0;
}

static void unenroll_usage(FILE *f)
{
    fprintf(f,
            "usage: shoji unenroll [--state-dir DIR] [--timeout SECONDS]\n"
            "\n"
            "Deletes this agent's account on its shoji-server, retrying until the server confirms,\n"
            "then removes STATE/mgmt.json, the managed policy and the upload spool.\n"
            "\n"
            "  --state-dir DIR     default %s\n"
            "  --timeout SECONDS   give up after this long (default 60); the agent stays enrolled\n",
            CLI_DEFAULT_STATE_DIR);
}

int cli_unenroll(int argc, char **argv)
{
    const char *state_dir = CLI_DEFAULT_STATE_DIR;
    unsigned timeout_s = 60;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            unenroll_usage(stdout);
            return 0;
        }
        if ((r = cli_opt(argc, argv, &i, "--state-dir", &v)) != 0) {
            if (r < 0)
                return 2;
            state_dir = v;
            continue;
        }
        if ((r = cli_opt(argc, argv, &i, "--timeout", &v)) != 0) {
            if (r < 0 || parse_secs("unenroll", v, &timeout_s) < 0)
                return 2;
            continue;
        }
        fprintf(stderr, "shoji unenroll: unknown option '%s'\n\n", argv[i]);
        unenroll_usage(stderr);
        return 2;
    }
    char err[UTIL_ERRLEN];
    if (mgmt_unenroll(state_dir, timeout_s * 1000, err, sizeof err) < 0) {
        fprintf(stderr, "shoji unenroll: %s\n", err);
        return 1;
    }
    printf("unenrolled: the server deleted this agent's account; %s/%s removed\n", state_dir,
           MGMT_STATE_FILE);
    return 0;
}
