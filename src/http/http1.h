/* http1: a strict HTTP/1.1 message parser (RFC 9110 / 9112) and the writer of
 * forwarded heads. The parsers are pure functions over a caller's buffer: no
 * allocation, no I/O; they return "need more", "error" or "done" and fill
 * zero-copy views (struct sv) into that buffer.
 * Must never: accept a message whose framing two implementations could read
 * differently (request smuggling), read past `len`, allocate, or abort. */
#ifndef SHOJI_HTTP1_H
#define SHOJI_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/util.h"

#define HTTP_MAX_HEADERS 128          /* hard cap on the array size */

struct http_limits {
    size_t max_head;        /* whole head incl. request line, default 65536 */
    size_t max_line;        /* request/status line, default 8192 */
    size_t max_headers;     /* header count, default 100 (<= HTTP_MAX_HEADERS) */
};
void http_limits_default(struct http_limits *lim);

/* Parser results: > 0 is the length of the head consumed (through the empty
 * line); HTTP_NEED_MORE means the head is incomplete but within limits;
 * HTTP_ERROR means the message is refused: see `error_status` (400, 414,
 * 431, 501, 505) and `error_reason` (a static English phrase). */
#define HTTP_NEED_MORE 0
#define HTTP_ERROR (-1)

enum http_body {
    HTTP_BODY_NONE = 0,     /* no body (or Content-Length: 0) */
    HTTP_BODY_LENGTH,       /* content_length bytes */
    HTTP_BODY_CHUNKED,      /* Transfer-Encoding ends in chunked */
    HTTP_BODY_UNTIL_CLOSE,  /* responses only: delimited by connection close */
};

enum http_target_form {
    HTTP_FORM_ORIGIN = 0,   /* /path?query */
    HTTP_FORM_ABSOLUTE,     /* http://host[:port]/path */
    HTTP_FORM_AUTHORITY,    /* host:port (CONNECT only) */
    HTTP_FORM_ASTERISK,     /* * (OPTIONS only) */
};

struct http_header {
    struct sv name;
    struct sv value;        /* leading/trailing OWS removed */
};

struct http_request {
    struct sv method;
    struct sv target;       /* as sent */
    int minor;              /* 0 or 1 (HTTP/1.x) */
    enum http_target_form form;
    /* From the target (absolute or authority form), else from Host: */
    struct sv scheme;       /* "http" / "https" (absolute form), else empty */
    struct sv host;         /* without port; IPv6 without brackets */
    uint16_t port;          /* explicit, or the scheme's default; 0 if none */
    struct sv path;         /* path + query for origin/absolute ("/" if empty) */
    struct sv host_header;  /* the Host field's value, empty if absent */

    struct http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;

    enum http_body body;
    uint64_t content_length;
    bool keep_alive;        /* after this exchange, per version + Connection */
    bool expect_continue;   /* Expect: 100-continue */
    bool upgrade;           /* Connection: upgrade with an Upgrade field */

    int error_status;
    const char *error_reason;
};

struct http_response {
    int status;             /* 100..999 */
    int minor;
    struct sv reason;
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    enum http_body body;
    uint64_t content_length;
    bool keep_alive;
    int error_status;       /* 502 when an upstream response is refused */
    const char *error_reason;
};

/* Parses a request head from buf[0..len). Rules (each violation -> 400 unless
 * noted): method is a token; target has no control bytes, spaces or bytes
 * >= 0x7f; version HTTP/1.0 or HTTP/1.1 (other HTTP/x.y -> 505); lines end
 * in CRLF (bare CR or bare LF -> 400); no obs-fold; no whitespace between
 * field name and colon; field names are tokens; values have no NUL or control
 * bytes except HTAB; at most one Host, and it must be present in HTTP/1.1
 * (except CONNECT) and agree with an absolute-form or authority-form target;
 * Content-Length values are digits only, repeated values must be identical;
 * both Content-Length and Transfer-Encoding -> 400; Transfer-Encoding whose
 * last coding is not chunked, chunked twice, or Transfer-Encoding in HTTP/1.0
 * -> 400 (an unknown coding -> 501); CONNECT needs authority form, authority
 * form needs CONNECT; line longer than max_line -> 414 (request line) or 431;
 * head longer than max_head or more than max_headers fields -> 431. */
int http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
                       struct http_request *req);

/* After the caller copied the parsed head buf[0..len) to `to`: moves every
 * view that points into buf onto the copy (views of literals, such as the
 * path "/" of an empty target, stay). Cheaper than parsing the copy again. */
void http_request_rebase(struct http_request *req, const char *buf, size_t len,
                         const char *to);

/* Parses a response head. `request_method` decides the body rules: HEAD and
 * 1xx/204/304 have no body; a 2xx answer to CONNECT has none. Refusals use
 * error_status 502. Same strictness as requests (duplicate differing
 * Content-Length, CL with TE, bad line endings, control bytes). A response
 * with neither CL nor chunked is HTTP_BODY_UNTIL_CLOSE. */
int http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
                        struct sv request_method, struct http_response *resp);

/* Streaming chunked-body decoder. Feed it bytes; it hands back the data
 * pieces. Chunk-size lines are strictly hex (at most 15 digits), extensions
 * are bounded (the whole size line at most 4096 bytes), trailers are bounded
 * (at most 16384 bytes) and dropped. */
struct http_chunked {
    int state;
    uint64_t remaining;     /* bytes left in the current chunk */
    size_t line_len;        /* bytes of the current size/trailer line seen */
    size_t trailer_len;
    int error_status;
    const char *error_reason;
};
#define HTTP_CHUNK_NEED_MORE 0   /* consumed everything, no data ready */
#define HTTP_CHUNK_DATA 1        /* *data is a piece of body */
#define HTTP_CHUNK_DONE 2        /* the last chunk and trailers were read */
void http_chunked_init(struct http_chunked *c);
/* Consumes bytes from in[0..len); sets *consumed. On HTTP_CHUNK_DATA, `data`
 * points into `in`. Returns HTTP_ERROR on malformed input. Call again with
 * the rest of the input after DATA. */
int http_chunked_step(struct http_chunked *c, const char *in, size_t len,
                      size_t *consumed, struct sv *data);

/* Header helpers. */
const struct http_header *http_find_header(const struct http_header *h, size_t n,
                                           const char *name);
/* True for the hop-by-hop fields of RFC 9110 7.6.1 (Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
 * Proxy-Authenticate, Proxy-Authorization) and for any field named in a
 * Connection header of the same message. */
bool http_is_hop_by_hop(const struct http_header *h, size_t n, struct sv name);

/* Writes the request head to send upstream: origin-form target, HTTP/1.1,
 * hop-by-hop fields removed, Host set to the target's authority,
 * Transfer-Encoding: chunked re-added when the body is chunked, `extra`
 * (already formatted "Name: value\r\n" lines, may be NULL) appended, and
 * "Via: 1.1 shoji". -ENOBUFS if it does not fit. */
int http_write_request_head(struct buf *out, const struct http_request *req,
                            const char *extra);
/* Writes the response head to send to the client: hop-by-hop fields removed,
 * Transfer-Encoding: chunked re-added when the body is chunked, then
 * "Connection: keep-alive" or "Connection: close" per `keep_alive`. */
int http_write_response_head(struct buf *out, const struct http_response *resp,
                             bool keep_alive, const char *extra);

/* The standard reason phrase for a status code ("Bad Request"), or "". */
const char *http_reason(int status);

#endif
