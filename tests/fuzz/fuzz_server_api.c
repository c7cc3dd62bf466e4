/* libFuzzer target for shoji-server's input validation (server/apiv.h): the
 * first byte picks a parser — enrolment, token and policy bodies, access-log
 * and conflict lines, gzip batches (bounded), RFC 3339 times — and the rest
 * is its input. Every input must be accepted or refused with a message;
 * what is accepted must respect the documented bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apiv.h"

static void check_refusal(int rc, const struct apiv_error *e)
{
    if (rc < 0 && e->msg[0] == '\0')
        abort();                       /* a refusal must say why */
}

static void body(uint8_t mode, const char *p, size_t n)
{
    struct apiv_error e = { "", "" };
    json_t *o = NULL;
    int rc = apiv_object(p, n, &o, &e);
    check_refusal(rc, &e);
    if (rc < 0)
        return;
    e.msg[0] = '\0';
    if (mode == 0) {
        struct apiv_enrol en;
        rc = apiv_enrol(o, &en, &e);
        if (rc == 0 && (strlen(en.machine_id) < 8 || strlen(en.machine_id) > 128 ||
                        strlen(en.token) > 200))
            abort();
    } else if (mode == 1) {
        struct apiv_token_create t;
        rc = apiv_token_create(o, &t, &e);
        if (rc == 0 && (t.max_uses < 0 || t.expires_in < 0 || !apiv_is_name(t.group, 64)))
            abort();
    } else {
        char *text = NULL;
        rc = apiv_policy_doc(o, &text, &e);
        if (rc == 0 && (!text || text[0] != '{'))
            abort();
        free(text);
    }
    check_refusal(rc, &e);
    json_decref(o);
}

static void line(uint8_t mode, const char *p, size_t n)
{
    struct apiv_error e = { "", "" };
    if (mode == 3) {
        struct apiv_log l;
        int rc = apiv_log_line(p, n, &l, &e);
        check_refusal(rc, &e);
        if (rc == 0) {
            if (!l.host && !l.url)
                abort();
            if (l.categories[0] && (l.categories[0] != ',' || !l.category[0]))
                abort();
            json_decref(l.root);
        }
    } else {
        struct apiv_conflict c;
        int rc = apiv_conflict_line(p, n, &c, &e);
        check_refusal(rc, &e);
        if (rc == 0) {
            if (!c.host || !*c.host)
                abort();
            json_decref(c.root);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 7;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (mode <= 2) {
        body(mode, p, n);
    } else if (mode <= 4) {
        line(mode, p, n);
    } else if (mode == 5) {
        struct apiv_error e = { "", "" };
        char *out = NULL;
        size_t outlen = 0;
        int rc = apiv_gunzip(p, n, 1 << 20, &out, &outlen, &e);
        check_refusal(rc, &e);
        if (rc == 0 && (outlen > (1 << 20) || out[outlen] != '\0'))
            abort();
        free(out);
    } else {
        char s[64];
        size_t k = n < sizeof s - 1 ? n : sizeof s - 1;
        memcpy(s, p, k);
        s[k] = '\0';
        int64_t t;
        (void)apiv_time_str(s, &t);
    }
    return 0;
}
