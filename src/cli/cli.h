/* cli: the `shoji` subcommands. Each takes the arguments after its own name
 * (argv[0] is the subcommand name) and returns the process exit status:
 * 0 success, 1 failure (with a message on stderr saying what to do), 2 usage.
 * Must never: be called from the proxy's event loops. */
#ifndef SHOJI_CLI_H
#define SHOJI_CLI_H

int cli_run(int argc, char **argv);       /* run.c */
int cli_ca(int argc, char **argv);        /* ca.c */
int cli_catdb(int argc, char **argv);     /* catdb.c */
int cli_explain(int argc, char **argv);   /* explain.c */
int cli_compat(int argc, char **argv);    /* compat.c */
int cli_conflicts(int argc, char **argv); /* conflicts.c */
int cli_watch(int argc, char **argv);     /* watch.c */
int cli_intercept(int argc, char **argv); /* intercept.c */
int cli_enroll(int argc, char **argv);    /* enroll.c */
int cli_unenroll(int argc, char **argv);  /* enroll.c */
int cli_uninstall(int argc, char **argv); /* uninstall.c */

/* Shared option helpers. */
/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; on a match advances
 * *i past the value and stores it. Prints a usage error and returns -1 when
 * the value is missing; returns 0 when argv[*i] is another option. */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **val);
int cli_flag(char **argv, int i, const char *name);
#define CLI_DEFAULT_STATE_DIR "/var/lib/shoji"

/* Inside an option loop over argv with `int i, r; const char *v;` in scope:
 * "--name VALUE" (or --name=VALUE) stored into a const char * field;
 * a missing value returns 2 (usage) from the calling function. */
#define CLI_OPT_STR(name, field)                         \
    if ((r = cli_opt(argc, argv, &i, name, &v)) != 0) {  \
        if (r < 0)                                       \
            return 2;                                    \
        field = v;                                       \
        continue;                                        \
    }

#endif
