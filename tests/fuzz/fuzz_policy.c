/* Fuzz target: the policy loader (any bytes as a policy file), and when a
 * policy loads, decide() over a few fixed facts in every phase. Neither may
 * crash, leak, or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "policy/policy.h"

static void decide_all(const struct policy *p)
{
    static const char *const hosts[] = { "osce.icrc.trendmicro.com", "a.example", "161.69.45.170", "" };
    static const char *const certs[] = { "trustedsourceserver_imqa01", "*.apple.com" };
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        struct policy_facts f;
        struct policy_verdict v;
        memset(&f, 0, sizeof f);
        f.host = hosts[i];
        f.sni = hosts[i];
        f.app.name = "NTRTSCAN.EXE";
        f.app.exe = "skypeapp";
        f.dst.family = AF_INET;
        f.dst.a[0] = 161;
        f.dst.a[1] = 69;
        f.method = "POST";
        f.path = "/x/y?z";
        f.local_wday = (int)i;
        f.local_minute = (int)(i * 400);
        f.cert_names = certs;
        f.ncert_names = 2;
        for (int ph = POLICY_PHASE_CONNECT; ph <= POLICY_PHASE_REQUEST; ph++) {
            f.phase = (enum policy_phase)ph;
            policy_decide(p, &f, &v);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy *p = NULL;
    char err[512];
    err[0] = '\0';
    if (policy_load_text((const char *)data, size, "fuzz.json", NULL, &p, err, sizeof err) == 0) {
        decide_all(p);
        policy_unref(p);
    } else if (!err[0]) {
        __builtin_trap();   /* every refusal must say why */
    }
    return 0;
}
