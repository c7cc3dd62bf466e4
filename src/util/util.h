/* util: small helpers every module uses — error messages returned as values,
 * string views into buffers, bounded string copies, atomic file writes.
 * Must never: allocate behind the caller's back (except where a function says
 * it returns heap memory), abort, or print. */
#ifndef SHOJI_UTIL_H
#define SHOJI_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define UTIL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define UTIL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Error convention: functions that can fail return 0 on success and a
 * negative errno-style code on failure, and write a human sentence (what was
 * wrong and, where useful, what to do) into `err` (capacity `errlen`).
 * `err` may be NULL. */
#define UTIL_ERRLEN 512
int util_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A view into someone else's bytes: never owns, never NUL-terminated. */
struct sv {
    const char *p;
    size_t n;
};
#define SV(lit) ((struct sv){ (lit), sizeof(lit) - 1 })
static inline struct sv sv_make(const char *p, size_t n) { return (struct sv){ p, n }; }
bool sv_eq(struct sv a, struct sv b);
bool sv_ieq(struct sv a, struct sv b);           /* ASCII case-insensitive */
bool sv_ieq_cstr(struct sv a, const char *b);
bool sv_istarts(struct sv a, const char *prefix);
struct sv sv_trim(struct sv a);                  /* strip SP and HTAB */
/* Copies at most cap-1 bytes and NUL-terminates; returns false if truncated. */
bool sv_copy(char *dst, size_t cap, struct sv a);

/* strlcpy semantics: returns false if `src` did not fit. */
bool util_strlcpy(char *dst, const char *src, size_t cap);
void util_lower(char *s);

/* Writes `len` bytes to `path` atomically: a temporary file in the same
 * directory, fsync, rename. A crash leaves either the old or the new file. */
int util_write_file_atomic(const char *path, const void *data, size_t len,
                           int mode, char *err, size_t errlen);
/* Reads a whole (small) file into a NUL-terminated heap buffer, at most `max`
 * bytes; caller frees. */
int util_read_file(const char *path, size_t max, char **out, size_t *outlen,
                   char *err, size_t errlen);
/* mkdir -p with a mode for the last component. */
int util_mkdirs(const char *path, int mode, char *err, size_t errlen);

/* Libraries loaded on demand (docs/ARCHITECTURE.md "Libraries loaded on
 * demand"): a library only some modes need is opened with dlopen when first
 * used, so the agent does not map it otherwise. util_dl_load opens `soname`
 * (RTLD_NOW | RTLD_LOCAL; never closed) and stores each symbol's address at
 * `table` + off (a struct of typed function pointers). 0, or -ELIBACC with
 * err naming the library, the reason and `package` to install. */
struct util_dl_sym {
    const char *name;
    size_t off;
};
int util_dl_load(const char *soname, const char *package, const struct util_dl_sym *syms,
                 size_t nsyms, void *table, char *err, size_t errlen);

/* Monotonic and wall clocks in milliseconds / microseconds. */
uint64_t util_now_ms(void);
uint64_t util_mono_us(void);

#endif
