/* libFuzzer target for what the agent parses from its management server:
 * whole HTTP answers (head + Content-Length / chunked / until-close body),
 * fed at once and split in two reads; server URLs; pinned fingerprints.
 * Any input must be accepted or refused, never crash; a complete answer's
 * body stays within its bound and is NUL-terminated. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/mgmt_int.h"

static void answer(const char *p, size_t n, bool eof)
{
    struct mgmt_http_resp r;
    memset(&r, 0, sizeof r);
    buf_init(&r.body, 1 << 16);
    int d = mgmt_http_parse_answer(p, n, eof, "GET", &r);
    if (d > 1 || (d == 1 && (r.status < 200 || r.status > 999 || r.body.len > (1 << 16) ||
                             (r.body.p && r.body.p[r.body.len] != '\0'))))
        abort();
    if (d == 0 && eof)
        abort();
    buf_free(&r.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    answer(p, size, true);
    answer(p, size / 2, false);
    char s[1024];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    struct mgmt_url u;
    if (mgmt_url_parse(s, &u, NULL, 0) == 0 && (!u.host[0] || !u.port[0]))
        abort();
    char fp[100], again[100];
    if (mgmt_fp_normalize(s, fp) && (!mgmt_fp_normalize(fp, again) || strcmp(fp, again) != 0 ||
                                     strlen(fp) != 95))
        abort();
    return 0;
}
