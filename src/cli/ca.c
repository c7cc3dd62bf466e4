/* cli/ca: `shoji ca init | show | install | uninstall` — see docs/CLI.md and
 * docs/CA.md. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tls/ca.h"
#include "util/util.h"

static void ca_usage(FILE *f)
{
    fprintf(f,
        "usage: shoji ca init [--state-dir DIR] [--rsa] [--force] [--days N]\n"
        "       shoji ca show [--state-dir DIR]\n"
        "       shoji ca install [--state-dir DIR]\n"
        "       shoji ca uninstall [--state-dir DIR]\n"
        "\n"
        "The local CA signs the certificates shoji shows for decoded HTTPS sites.\n"
        "  init       create DIR/ca.crt and DIR/ca.key (0600); ECDSA P-256 by default\n"
        "    --rsa      RSA-3072 key instead (for very old clients)\n"
        "    --force    replace an existing CA (everything trusting the old one must\n"
        "               be given the new one: run `shoji ca install` again)\n"
        "    --days N   validity in days (default 3650)\n"
        "  show       subject, SHA-256 fingerprint, validity and key type\n"
        "  install    add the CA to the system trust store (update-ca-certificates)\n"
        "             and every NSS database found (Chromium, Firefox; needs certutil)\n"
        "  uninstall  remove exactly what install added\n"
        "  --state-dir DIR  where the CA lives (default %s)\n",
        CLI_DEFAULT_STATE_DIR);
}

struct ca_args {
    const char *state_dir;
    struct tls_ca_init_opts init;
};

/* Parses the options after the action; returns 0, or the exit status. */
static int ca_parse(int argc, char **argv, bool is_init, struct ca_args *a)
{
    for (int i = 2; i < argc; i++) {
        const char *val = NULL;
        int r = cli_opt(argc, argv, &i, "--state-dir", &val);
        if (r < 0)
            return 2;
        if (r > 0) {
            a->state_dir = val;
            continue;
        }
        if (is_init && (r = cli_opt(argc, argv, &i, "--days", &val)) != 0) {
            char *end = NULL;
            long d = r > 0 ? strtol(val, &end, 10) : 0;
            if (r < 0 || !end || *end || d < 1 || d > 36500) {
                fprintf(stderr, "shoji ca: --days needs a number of days from 1 to 36500\n");
                return 2;
            }
            a->init.days = (int)d;
        } else if (is_init && cli_flag(argv, i, "--rsa")) {
            a->init.rsa = true;
        } else if (is_init && cli_flag(argv, i, "--force")) {
            a->init.force = true;
        } else {
            fprintf(stderr, "shoji ca %s: unknown option '%s'\n\n", argv[1], argv[i]);
            ca_usage(stderr);
            return 2;
        }
    }
    return 0;
}

static void key_type(EVP_PKEY *key, char *out, size_t cap)
{
    char group[64] = "";
    size_t glen = 0;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC &&
        EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof group, &glen))
        snprintf(out, cap, "ECDSA %s", strcmp(group, "prime256v1") == 0 ? "P-256" : group);
    else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA)
        snprintf(out, cap, "RSA %d", EVP_PKEY_get_bits(key));
    else
        snprintf(out, cap, "%s %d bits", OBJ_nid2sn(EVP_PKEY_get_base_id(key)), EVP_PKEY_get_bits(key));
}

static void print_time(BIO *out, const char *label, const ASN1_TIME *t)
{
    BIO_printf(out, "%-12s ", label);
    ASN1_TIME_print(out, t);
    BIO_printf(out, "\n");
}

static int ca_show(const char *dir)
{
    struct tls_ca ca;
    char err[UTIL_ERRLEN], kt[80];
    if (tls_ca_load(dir, &ca, err, sizeof err) < 0) {
        fprintf(stderr, "shoji ca show: %s\n", err);
        return 1;
    }
    BIO *out = BIO_new_fp(stdout, BIO_NOCLOSE);
    if (!out) {
        tls_ca_free(&ca);
        return 1;
    }
    key_type(ca.key, kt, sizeof kt);
    BIO_printf(out, "%-12s %s/ca.crt\n%-12s ", "certificate", dir, "subject");
    X509_NAME_print_ex(out, X509_get_subject_name(ca.cert), 0, XN_FLAG_ONELINE);
    BIO_printf(out, "\n%-12s %s\n", "sha256", ca.fingerprint);
    print_time(out, "not before", X509_get0_notBefore(ca.cert));
    print_time(out, "not after", X509_get0_notAfter(ca.cert));
    BIO_printf(out, "%-12s %s\n", "key type", kt);
    BIO_free(out);
    tls_ca_free(&ca);
    return 0;
}

static int ca_init(const char *dir, const struct tls_ca_init_opts *opts)
{
    char err[UTIL_ERRLEN];
    int rc = tls_ca_init(dir, opts, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "shoji ca init: %s\n", err);
        return 1;
    }
    printf("created a new CA in %s (ca.crt, ca.key mode 0600)\n", dir);
    rc = ca_show(dir);
    if (rc == 0)
        printf("\nnext: `shoji ca install --state-dir %s` so browsers and tools trust it\n", dir);
    return rc;
}

static int ca_install(const char *dir, bool install)
{
    char err[UTIL_ERRLEN];
    int rc = install ? tls_ca_install(dir, stdout, err, sizeof err)
                     : tls_ca_uninstall(dir, stdout, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "shoji ca %s: %s\n", install ? "install" : "uninstall", err);
        if (rc == -EACCES || rc == -EPERM)
            fprintf(stderr, "(the system trust store needs root: run it with sudo)\n");
        return 1;
    }
    return 0;
}

int cli_ca(int argc, char **argv)
{
    struct ca_args a = { .state_dir = CLI_DEFAULT_STATE_DIR, .init = { .days = 3650 } };
    if (argc < 2) {
        ca_usage(stderr);
        return 2;
    }
    const char *act = argv[1];
    if (!strcmp(act, "--help") || !strcmp(act, "-h") || !strcmp(act, "help")) {
        ca_usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ca_usage(stdout);
            return 0;
        }
    bool known = !strcmp(act, "init") || !strcmp(act, "show") || !strcmp(act, "install") ||
                 !strcmp(act, "uninstall");
    if (!known) {
        fprintf(stderr, "shoji ca: unknown action '%s'\n\n", act);
        ca_usage(stderr);
        return 2;
    }
    int rc = ca_parse(argc, argv, !strcmp(act, "init"), &a);
    if (rc != 0)
        return rc;
    if (!strcmp(act, "init"))
        return ca_init(a.state_dir, &a.init);
    if (!strcmp(act, "show"))
        return ca_show(a.state_dir);
    return ca_install(a.state_dir, !strcmp(act, "install"));
}
