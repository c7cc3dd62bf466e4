/* web_static: serves the admin console's static files (HTML/CSS/JS/SVG)
 * from the console directory under /console/, with a strict Content-
 * Security-Policy. Paths are checked segment by segment: only
 * [A-Za-z0-9._-] names, none starting with '.', regular files only, so
 * nothing outside the directory can be named. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define STATIC_MAX_FILE (8u << 20)

static const char *g_dir;

void web_static_dir(const char *dir) { g_dir = dir; }

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        { ".html", "text/html; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" }, { ".json", "application/json" },
        { ".svg", "image/svg+xml" }, { ".png", "image/png" }, { ".ico", "image/x-icon" },
        { ".woff2", "font/woff2" }, { ".txt", "text/plain; charset=utf-8" },
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < UTIL_ARRAY_LEN(types); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

/* "/console/a/b.js" -> "a/b.js"; false if any segment is not a plain name. */
static bool safe_rel(const char *url, char *rel, size_t cap)
{
    const char *p = url + strlen("/console/");
    if (!*p)
        p = "index.html";
    if (strlen(p) >= cap)
        return false;
    bool seg_start = true;
    for (const char *q = p; *q; q++) {
        char c = *q;
        if (c == '/') {
            if (seg_start)
                return false;          /* empty segment */
            seg_start = true;
            continue;
        }
        if (seg_start && c == '.')
            return false;              /* ".", "..", hidden files */
        seg_start = false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    if (seg_start)
        return false;                  /* trailing slash */
    snprintf(rel, cap, "%s", p);
    return true;
}

static enum MHD_Result plain(struct MHD_Connection *mc, unsigned status, const char *msg,
                             const char *location)
{
    char body[256];
    snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (location)
        MHD_add_response_header(r, "Location", location);
    enum MHD_Result ret = MHD_queue_response(mc, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result web_static_serve(struct MHD_Connection *mc, const char *url)
{
    if (strcmp(url, "/") == 0 || strcmp(url, "/console") == 0)
        return plain(mc, 302, "the console is at /console/", "/console/");
    char rel[512], path[4096];
    const char *type;
    if (strncmp(url, "/console/", 9) != 0 || !safe_rel(url, rel, sizeof rel) ||
        !(type = content_type(rel)))
        return plain(mc, 404, "not found", NULL);
    if (!g_dir)
        return plain(mc, 404, "the console is not installed (--console-dir)", NULL);
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX_FILE) {
        if (fd >= 0)
            close(fd);
        return plain(mc, 404, "not found", NULL);
    }
    struct MHD_Response *r = MHD_create_response_from_fd((size_t)st.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                            "base-uri 'none'; frame-ancestors 'none'; form-action 'self'");
    enum MHD_Result ret = MHD_queue_response(mc, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}
