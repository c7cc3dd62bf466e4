/* bench_http1: parses a typical ~400-byte browser request head (and a
 * response head) N times and prints the cost per parse. The parser is on
 * the hot path of every request; the target is well under 1 µs.
 * Usage: bench_http1 [N]   (default 1000000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http1.h"

static const char request[] =
    "GET /search?q=web+filtering+agent&source=hp&ei=abc HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "\r\n";

static const char response[] =
    "HTTP/1.1 200 OK\r\n"
    "Date: Wed, 25 Nov 2026 18:00:00 GMT\r\n"
    "Server: nginx\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Length: 51234\r\n"
    "Cache-Control: private, max-age=0\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    if (n <= 0 || n > 100000000) {
        fprintf(stderr, "usage: bench_http1 [N]  (1..100000000)\n");
        return 2;
    }
    static struct http_request req;
    static struct http_response resp;
    long ok = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        ok += http_parse_request(request, sizeof request - 1, NULL, &req) > 0;
    double t1 = now_ns();
    for (long i = 0; i < n; i++)
        ok += http_parse_response(response, sizeof response - 1, NULL, SV("GET"), &resp) > 0;
    double t2 = now_ns();
    if (ok != 2 * n) {
        fprintf(stderr, "bench_http1: a parse failed\n");
        return 1;
    }
    printf("request head  %zu bytes, %zu fields: %.1f ns/parse\n", sizeof request - 1,
           req.nheaders, (t1 - t0) / (double)n);
    printf("response head %zu bytes, %zu fields: %.1f ns/parse\n", sizeof response - 1,
           resp.nheaders, (t2 - t1) / (double)n);
    return 0;
}
