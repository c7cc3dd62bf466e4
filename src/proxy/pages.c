/* proxy/pages: the pages shoji itself answers with — error pages (400, 408,
 * 431, 502, 504, ...), the block page (Japanese or English by
 * Accept-Language) and the PAC file. Every value put into HTML is escaped. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy/internal.h"

static void html_escape(struct buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': buf_append_str(b, "&lt;"); break;
        case '>': buf_append_str(b, "&gt;"); break;
        case '&': buf_append_str(b, "&amp;"); break;
        case '"': buf_append_str(b, "&quot;"); break;
        case '\'': buf_append_str(b, "&#39;"); break;
        default: buf_append(b, s, 1); break;
        }
    }
}

static const char style[] =
    "<style>body{font-family:system-ui,sans-serif;margin:3em auto;max-width:44em;color:#222}"
    "h1{font-size:1.5em;border-bottom:3px solid #b22;padding-bottom:.3em}"
    "dt{font-weight:bold;margin-top:.6em}dd{margin-left:1em;word-break:break-all}"
    "footer{margin-top:2em;color:#777;font-size:.85em}</style>";

/* Wraps an HTML body into a full response with headers. */
static int respond(struct buf *out, int status, const struct buf *html, bool close_after)
{
    return buf_printf(out,
                      "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
                      "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                      "X-Content-Type-Options: nosniff\r\n%s\r\n",
                      status, http_reason(status), html->len,
                      close_after ? "Connection: close\r\n" : "") ||
           buf_append(out, html->p, html->len);
}

int page_render(struct buf *out, int status, const char *title, const char *detail,
                const char *host, uint64_t request_id, bool close_after)
{
    struct buf h;
    buf_init(&h, 32 * 1024);
    buf_printf(&h, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>%d ", status);
    html_escape(&h, title);
    buf_printf(&h, "</title>%s</head><body><h1>", style);
    html_escape(&h, title);
    buf_append_str(&h, "</h1><p>");
    html_escape(&h, detail);
    buf_append_str(&h, "</p><dl>");
    if (host && *host) {
        buf_append_str(&h, "<dt>Host</dt><dd>");
        html_escape(&h, host);
        buf_append_str(&h, "</dd>");
    }
    buf_printf(&h, "<dt>Status</dt><dd>%d %s</dd><dt>Request id</dt><dd>%llu</dd></dl>"
                   "<footer>shoji web filter</footer></body></html>\n",
               status, http_reason(status), (unsigned long long)request_id);
    int rc = respond(out, status, &h, close_after);
    buf_free(&h);
    return rc;
}

/* True when the client prefers Japanese over English (first match wins in
 * the order listed; q-values are not weighed: browsers list by preference). */
static bool wants_japanese(const struct http_request *req)
{
    const struct http_header *h = http_find_header(req->headers, req->nheaders, "accept-language");
    if (!h)
        return false;
    for (size_t i = 0; i + 1 < h->value.n; i++) {
        char a = (char)(h->value.p[i] | 0x20), b = (char)(h->value.p[i + 1] | 0x20);
        bool start = i == 0 || h->value.p[i - 1] == ',' || h->value.p[i - 1] == ' ';
        if (!start)
            continue;
        if (a == 'j' && b == 'a')
            return true;
        if (a == 'e' && b == 'n')
            return false;
    }
    return false;
}

static void block_html(struct buf *h, bool ja, const char *url, const char *cats,
                       const char *rule, uint64_t id)
{
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tm);
    buf_printf(h, "<!doctype html><html lang=\"%s\"><head><meta charset=\"utf-8\"><title>%s</title>%s</head><body><h1>%s</h1><p>%s</p><dl>",
               ja ? "ja" : "en", ja ? "アクセスがブロックされました" : "Access blocked", style,
               ja ? "このページへのアクセスはブロックされました" : "This page has been blocked",
               ja ? "管理者のポリシーにより、このページは表示できません。業務や学習に必要な場合は管理者に連絡してください。"
                  : "Your administrator's policy does not allow this page. If you need it for work or study, contact your administrator.");
    buf_printf(h, "<dt>%s</dt><dd>", "URL");
    html_escape(h, url);
    buf_printf(h, "</dd><dt>%s</dt><dd>", ja ? "カテゴリ" : "Category");
    html_escape(h, cats && *cats ? cats : (ja ? "(なし)" : "(none)"));
    buf_printf(h, "</dd><dt>%s</dt><dd>", ja ? "ルール" : "Rule");
    html_escape(h, rule);
    buf_printf(h, "</dd><dt>%s</dt><dd>%s</dd><dt>%s</dt><dd>%llu</dd></dl>"
                  "<footer>shoji web filter</footer></body></html>\n",
               ja ? "日時" : "Time", when, ja ? "リクエスト ID" : "Request id", (unsigned long long)id);
}

void fwd_send_block(struct conn *c, struct exchange *ex)
{
    const struct catdb *db = policy_catdb(c->policy);
    bool ja = wants_japanese(&ex->req);
    char cats[512] = "";
    size_t off = 0;
    for (uint16_t i = 0; db && i < ex->verdict.cats.n; i++) {
        const char *name = catdb_category_display(db, ex->verdict.cats.id[i], ja ? "ja" : "en");
        int n = snprintf(cats + off, sizeof cats - off, "%s%s", i ? ", " : "", name ? name : "?");
        if (n < 0 || (size_t)n >= sizeof cats - off)
            break;
        off += (size_t)n;
    }
    struct buf h, out;
    buf_init(&h, 32 * 1024);
    buf_init(&out, 40 * 1024);
    block_html(&h, ja, ex->url, cats, ex->verdict.rule, ex->request_id);
    bool close_after = !ex->req_body_done || !ex->req.keep_alive;
    respond(&out, 403, &h, close_after);
    pstream_write(c->client, out.p, out.len);
    ex->resp_bytes = out.len;
    ex->status = 403;
    ex->resp_head_sent = true;
    buf_free(&h);
    buf_free(&out);
    c->ex = ex;
    /* logged by the caller path below */
    fwd_block_done(c, close_after);
}

void proxy_pac_render(struct buf *out, const char *listen)
{
    buf_printf(out,
               "// shoji proxy auto-config\n"
               "function FindProxyForURL(url, host) {\n"
               "  if (isPlainHostName(host) || host == \"localhost\" || shExpMatch(host, \"127.*\"))\n"
               "    return \"DIRECT\";\n"
               "  return \"PROXY %s\";\n"
               "}\n",
               listen);
}
