/* shoji: command-line entry point; dispatches to the subcommands in cli/. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    { "run", cli_run, "run the agent (explicit proxy, HTTPS decode)" },
    { "ca", cli_ca, "init | show | install | uninstall the local CA" },
    { "catdb", cli_catdb, "compile | lookup | info the category database" },
    { "intercept", cli_intercept, "enable | disable | status: transparent interception (nftables)" },
    { "compat", cli_compat, "list | show | detect | apply: the compatibility catalog" },
    { "conflicts", cli_conflicts, "list | clear | promote: learned exclusions (automatic avoidance)" },
    { "explain", cli_explain, "URL [--app NAME] [--json]: the decision path for a request" },
    { "watch", cli_watch, "live view of connections: process, destination, SNI, verdict, rule" },
    { "uninstall", cli_uninstall, "unenrol, remove the CA from the trust stores and the nftables table" },
    { "enroll", cli_enroll, "--server URL --token T: join a shoji-server (docs/SYNC.md)" },
    { "unenroll", cli_unenroll, "leave the shoji-server: delete this agent's account there" },
};

static void usage(FILE *f)
{
    fprintf(f, "shoji %s — endpoint web-filtering agent\n\nusage: shoji COMMAND [options]\n\ncommands:\n",
            SHOJI_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`shoji COMMAND --help` describes a command; docs/CLI.md describes them all.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("shoji %s\n", SHOJI_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "shoji: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
