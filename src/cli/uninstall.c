/* cli/uninstall: `shoji uninstall` — takes the agent off this machine's
 * trust and network: unenrols from the management server (retried until the
 * server confirms, so no account is left behind on it — the vendor note's
 * lesson), removes the CA from the trust stores and removes the nftables
 * table. It leaves the state directory in place (delete it yourself). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "mgmt/mgmt.h"
#include "platform/platform.h"
#include "tls/ca.h"
#include "util/util.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: shoji uninstall [--state-dir DIR] [--timeout SECONDS] [--keep-enrolment]\n"
               "                       [--keep-interception]\n\n"
               "Unenrols the agent from its management server (retrying until confirmed),\n"
               "removes the CA from the system and browser trust stores, and removes the\n"
               "`inet shoji` nftables table. Stop `shoji run` first. The state dir stays.\n");
}

int cli_uninstall(int argc, char **argv)
{
    const char *state_dir = CLI_DEFAULT_STATE_DIR, *timeout = "60";
    bool keep_enrolment = false, keep_interception = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (cli_flag(argv, i, "--help") || cli_flag(argv, i, "-h")) {
            usage(stdout);
            return 0;
        } else if (cli_flag(argv, i, "--keep-enrolment")) {
            keep_enrolment = true;
        } else if (cli_flag(argv, i, "--keep-interception")) {
            keep_interception = true;
        } else if ((r = cli_opt(argc, argv, &i, "--state-dir", &v)) != 0) {
            if (r < 0)
                return 2;
            state_dir = v;
        } else if ((r = cli_opt(argc, argv, &i, "--timeout", &v)) != 0) {
            if (r < 0)
                return 2;
            timeout = v;
        } else {
            fprintf(stderr, "shoji uninstall: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    int rc = 0;
    if (!keep_enrolment && mgmt_enrolled(state_dir)) {
        char *uargv[] = { "unenroll", "--state-dir", (char *)state_dir, "--timeout", (char *)timeout, NULL };
        if (cli_unenroll(5, uargv) != 0)
            rc = 1;   /* said why; the rest still runs */
    } else {
        printf("not enrolled with a management server: nothing to unenrol\n");
    }
    char err[UTIL_ERRLEN];
    if (tls_ca_uninstall(state_dir, stdout, err, sizeof err) < 0) {
        fprintf(stderr, "shoji uninstall: CA: %s\n", err);
        rc = 1;
    }
    bool was = false;
    if (keep_interception) {
        printf("interception left as it is (--keep-interception)\n");
    } else if (platform_intercept_disable(&was, err, sizeof err) < 0) {
        fprintf(stderr, "shoji uninstall: interception: %s\n", err);
        rc = 1;
    } else {
        printf("%s\n", was ? "removed the nftables table inet shoji" : "interception was not enabled");
    }
    return rc;
}
