/* Unit tests of the agent's management-server module: server URLs, pinned
 * fingerprints, the hashed machine identity, the enrolment state file, the
 * gzip batches and the bounded on-disk spool, and the access-log sink that
 * feeds it. (End to end against the real server: tests/integration/
 * test_agent_sync.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "log/access.h"
#include "mgmt/mgmt_int.h"
#include "util/util.h"

static char *make_dir(void)
{
    char *d = strdup("/tmp/shoji-test-mgmt-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(char *d)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
    free(d);
}

static void test_server_url_needs_https_and_keeps_port_and_prefix(void **state)
{
    (void)state;
    struct mgmt_url u;
    char err[UTIL_ERRLEN];
    assert_int_equal(mgmt_url_parse("https://mgmt.example:8443/shoji/", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "mgmt.example");
    assert_string_equal(u.port, "8443");
    assert_string_equal(u.authority, "mgmt.example:8443");
    assert_string_equal(u.prefix, "/shoji");
    assert_int_equal(mgmt_url_parse("https://[::1]:9443", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.port, "9443");
    assert_string_equal(u.authority, "[::1]:9443");
    assert_string_equal(u.prefix, "");
    assert_int_equal(mgmt_url_parse("https://host", &u, err, sizeof err), 0);
    assert_string_equal(u.port, "443");
    assert_int_equal(mgmt_url_parse("http://host:80", &u, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "https://"));
    assert_int_equal(mgmt_url_parse("https://:8443", &u, err, sizeof err), -EINVAL);
    assert_int_equal(mgmt_url_parse("https://host:84x3", &u, err, sizeof err), -EINVAL);
    assert_int_equal(mgmt_url_parse("https://host:123456", &u, err, sizeof err), -EINVAL);
}

static void test_fingerprints_compare_in_any_spelling(void **state)
{
    (void)state;
    char out[100];
    const char *plain = "a42f90062a14c44e8346f74317de755be58eeefe53e36064f9b4bd9d3eb91a47";
    assert_true(mgmt_fp_normalize(plain, out));
    assert_string_equal(out, "A4:2F:90:06:2A:14:C4:4E:83:46:F7:43:17:DE:75:5B:E5:8E:EE:FE:53:E3:60:64:"
                             "F9:B4:BD:9D:3E:B9:1A:47");
    char again[100];
    assert_true(mgmt_fp_normalize(out, again));
    assert_string_equal(again, out);
    assert_false(mgmt_fp_normalize("A4:2F", out));                       /* too short */
    assert_false(mgmt_fp_normalize("zz2f90062a14c44e8346f74317de755be58eeefe53e36064f9b4bd9d3eb91a47", out));
    char longer[80];
    snprintf(longer, sizeof longer, "%s00", plain);
    assert_false(mgmt_fp_normalize(longer, out));
}

static void test_machine_id_is_the_sha256_of_the_trimmed_file(void **state)
{
    (void)state;
    char *d = make_dir(), path[4200], id[65], id2[65], err[UTIL_ERRLEN];
    snprintf(path, sizeof path, "%s/machine-id", d);
    assert_int_equal(util_write_file_atomic(path, "abc\n", 4, 0644, err, sizeof err), 0);
    assert_int_equal(mgmt_machine_id(path, id, err, sizeof err), 0);
    assert_string_equal(id, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(util_write_file_atomic(path, "abc", 3, 0644, err, sizeof err), 0);
    assert_int_equal(mgmt_machine_id(path, id2, err, sizeof err), 0);
    assert_string_equal(id, id2);                /* a reinstall is the same machine */
    assert_int_equal(util_write_file_atomic(path, "\n", 1, 0644, err, sizeof err), 0);
    assert_int_equal(mgmt_machine_id(path, id, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "empty"));
    remove_dir(d);
}

static void test_enrolment_state_round_trips_with_mode_0600(void **state)
{
    (void)state;
    char *d = make_dir(), err[UTIL_ERRLEN], path[4200];
    struct mgmt_enrolment e = { .server = "https://127.0.0.1:8443", .agent_id = "714d",
                                .credential = "agent.714d.secret", .group = "lab", .machine_id = "3b5d" };
    strcpy(e.fingerprint, "AB:CD");
    assert_false(mgmt_enrolled(d));
    struct mgmt_enrolment got;
    assert_int_equal(mgmt_state_load(d, &got, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "shoji enroll"));
    assert_int_equal(mgmt_state_save(d, &e, err, sizeof err), 0);
    assert_true(mgmt_enrolled(d));
    snprintf(path, sizeof path, "%s/mgmt.json", d);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(mgmt_state_load(d, &got, err, sizeof err), 0);
    assert_string_equal(got.server, e.server);
    assert_string_equal(got.credential, e.credential);
    assert_string_equal(got.fingerprint, e.fingerprint);
    assert_string_equal(got.group, "lab");
    /* A damaged file is an error naming the file, not a crash. */
    assert_int_equal(util_write_file_atomic(path, "{\"server\": 1}", 13, 0600, err, sizeof err), 0);
    assert_int_equal(mgmt_state_load(d, &got, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "server"));
    remove_dir(d);
}

static void test_gzip_batches_inflate_to_the_same_lines(void **state)
{
    (void)state;
    const char *lines = "{\"host\":\"a.test\"}\n{\"host\":\"b.test\"}\n";
    struct buf gz;
    buf_init(&gz, 1 << 20);
    char err[UTIL_ERRLEN];
    assert_int_equal(mgmt_gzip(lines, strlen(lines), &gz, err, sizeof err), 0);
    assert_true(gz.len > 10);
    assert_int_equal((unsigned char)gz.p[0], 0x1f);  /* gzip magic */
    assert_int_equal((unsigned char)gz.p[1], 0x8b);
    char out[256];
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)gz.p;
    z.avail_in = (uInt)gz.len;
    z.next_out = (Bytef *)out;
    z.avail_out = sizeof out;
    assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(z.total_out, strlen(lines));
    assert_memory_equal(out, lines, strlen(lines));
    inflateEnd(&z);
    buf_free(&gz);
}

static void test_spool_batches_come_back_oldest_first_with_unique_ids(void **state)
{
    (void)state;
    char *d = make_dir(), err[UTIL_ERRLEN];
    struct mgmt_spool s;
    assert_int_equal(mgmt_spool_open(&s, d, 0, err, sizeof err), 0);
    struct mgmt_batch b;
    assert_int_equal(mgmt_spool_oldest(&s, &b), -ENOENT);
    assert_int_equal(mgmt_spool_write(&s, MGMT_LOGS, "{\"a\":1}\n", 8, 1, err, sizeof err), 0);
    assert_int_equal(mgmt_spool_write(&s, MGMT_CONFLICTS, "{\"c\":1}\n", 8, 1, err, sizeof err), 0);
    assert_int_equal(mgmt_spool_write(&s, MGMT_LOGS, "{\"a\":2}\n{\"a\":3}\n", 16, 2, err, sizeof err), 0);
    uint64_t n, bytes;
    mgmt_spool_usage(&s, &n, &bytes);
    assert_int_equal(n, 3);
    enum mgmt_kind order[] = { MGMT_LOGS, MGMT_CONFLICTS, MGMT_LOGS };
    uint64_t lines[] = { 1, 1, 2 };
    char ids[3][160];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mgmt_spool_oldest(&s, &b), 0);
        assert_int_equal(b.kind, order[i]);
        assert_int_equal(b.lines, lines[i]);
        /* A valid server batch id: 1-128 of [A-Za-z0-9._-]. */
        assert_true(strlen(b.id) >= 1 && strlen(b.id) <= 128);
        assert_int_equal(strspn(b.id, "0123456789abcdef-"), strlen(b.id));
        strcpy(ids[i], b.id);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[j], b.id);
        mgmt_spool_remove(&s, &b, false);
    }
    assert_int_equal(mgmt_spool_oldest(&s, &b), -ENOENT);
    assert_int_equal(s.dropped_lines, 0);
    remove_dir(d);
}

static void test_spool_past_its_bound_drops_the_oldest_and_counts_its_lines(void **state)
{
    (void)state;
    char *d = make_dir(), err[UTIL_ERRLEN];
    struct mgmt_spool s;
    assert_int_equal(mgmt_spool_open(&s, d, 6000, err, sizeof err), 0);
    static char data[4096];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(getrandom(data, sizeof data, 0), (ssize_t)sizeof data);   /* incompressible */
        assert_int_equal(mgmt_spool_write(&s, MGMT_LOGS, data, sizeof data, 10 + (uint64_t)i, err, sizeof err), 0);
        uint64_t n, bytes;
        mgmt_spool_usage(&s, &n, &bytes);
        assert_true(bytes <= 6000 || n == 1);
    }
    /* Only the newest batch fits; the four older (10+11+12+13 lines) were dropped. */
    uint64_t n, bytes;
    mgmt_spool_usage(&s, &n, &bytes);
    assert_int_equal(n, 1);
    assert_int_equal(s.dropped_lines, 46);
    struct mgmt_batch b;
    assert_int_equal(mgmt_spool_oldest(&s, &b), 0);
    assert_int_equal(b.lines, 14);
    /* The counter survives a restart; dropping a refused batch adds to it. */
    struct mgmt_spool s2;
    assert_int_equal(mgmt_spool_open(&s2, d, 6000, err, sizeof err), 0);
    assert_int_equal(s2.dropped_lines, 46);
    mgmt_spool_remove(&s2, &b, true);
    assert_int_equal(s2.dropped_lines, 60);
    remove_dir(d);
}

struct sink_seen {
    int calls;
    char line[8192];
    const char *event;
};

static void sink(void *ctx, const struct access_record *r, const char *json, size_t len)
{
    struct sink_seen *s = ctx;
    s->calls++;
    s->event = r->event;
    snprintf(s->line, sizeof s->line, "%.*s", (int)len, json);
}

static void test_access_log_sink_gets_json_lines_whatever_the_file_format(void **state)
{
    (void)state;
    char *d = make_dir(), err[UTIL_ERRLEN], path[4200];
    struct access_record r = { .time_ms = 1700000000123ull, .client = "127.0.0.1:5", .method = "GET",
                               .url = "http://games.test/", .host = "games.test", .status = 403,
                               .mode = "http", .app = "curl", .uid = -1, .categories = "games",
                               .action = "block", .rule = "categories.games" };
    /* No file (enrolled without --access-log): the sink alone. */
    struct access_log *l;
    struct sink_seen seen = { 0 };
    assert_int_equal(access_log_open(NULL, ACCESS_JSON, &l, err, sizeof err), 0);
    access_log_set_sink(l, sink, &seen);
    access_log_write(l, &r);
    assert_int_equal(seen.calls, 1);
    assert_non_null(strstr(seen.line, "\"host\":\"games.test\""));
    assert_null(strchr(seen.line, '\n'));
    assert_int_equal(access_log_reopen(l, err, sizeof err), 0);
    access_log_close(l);
    /* A Squid-format file: the file gets Squid, the sink still gets JSON. */
    snprintf(path, sizeof path, "%s/access.log", d);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(access_log_open(path, ACCESS_SQUID, &l, err, sizeof err), 0);
    access_log_set_sink(l, sink, &seen);
    r.event = "conflict";
    access_log_write(l, &r);
    access_log_close(l);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.event, "conflict");
    assert_int_equal(seen.line[0], '{');
    assert_non_null(strstr(seen.line, "\"categories\":[\"games\"]"));
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(util_read_file(path, 65536, &text, &len, err, sizeof err), 0);
    assert_true(len > 0 && text[0] != '{');
    free(text);
    remove_dir(d);
}

/* Concatenates every gzip batch in `dir` into out; returns the batch count.
 * (The mgmt thread may have cut the lines into more than one batch.) */
static size_t gunzip_dir(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0, len = 0;
    out[0] = '\0';
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4700];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        gzFile f = gzopen(path, "rb");
        assert_non_null(f);
        int r = gzread(f, out + len, (unsigned)(cap - 1 - len));
        gzclose(f);
        assert_true(r >= 0);
        len += (size_t)r;
        out[len] = '\0';
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

static void test_lines_queued_while_the_server_is_down_are_spooled_at_stop(void **state)
{
    (void)state;
    char *d = make_dir(), err[UTIL_ERRLEN], dir[4200];
    struct mgmt_enrolment e = { .server = "https://127.0.0.1:1", .agent_id = "a1", .credential = "agent.a1.x" };
    strcpy(e.fingerprint, "AB:CD");
    assert_int_equal(mgmt_state_save(d, &e, err, sizeof err), 0);
    struct mgmt_config cfg = { .state_dir = d, .interval_s = 3600 };
    struct mgmt *m = NULL;
    assert_int_equal(mgmt_start(&cfg, &m, err, sizeof err), 0);
    struct access_record r = { .time_ms = 1700000000000ull, .method = "GET", .url = "http://a.test/",
                               .host = "a.test", .status = 200, .action = "allow", .uid = -1 };
    mgmt_log_line(m, &r, "{\"host\":\"a.test\"}", 17);
    mgmt_log_line(m, &r, "{\"host\":\"b.test\"}", 17);
    struct access_record c = r;
    c.event = "conflict";
    c.app = "NTRTSCAN";
    c.host = "x.icrc.trendmicro.com";
    c.error = "tls alert unknown CA";
    c.fix = "decode.exclude_hosts += \"x.icrc.trendmicro.com\"";
    mgmt_log_line(m, &c, "{}", 2);
    mgmt_stop(m);
    char text[4096];
    snprintf(dir, sizeof dir, "%s/spool/logs", d);
    assert_true(gunzip_dir(dir, text, sizeof text) >= 1);
    assert_int_equal(strlen(text), 36);
    assert_non_null(strstr(text, "{\"host\":\"a.test\"}\n"));
    assert_non_null(strstr(text, "{\"host\":\"b.test\"}\n"));
    snprintf(dir, sizeof dir, "%s/spool/conflicts", d);
    assert_int_equal(gunzip_dir(dir, text, sizeof text), 1);
    /* The conflict line in the server's shape (API.md). */
    assert_non_null(strstr(text, "\"time\":1700000000"));
    assert_non_null(strstr(text, "\"app\":\"NTRTSCAN\""));
    assert_non_null(strstr(text, "\"host\":\"x.icrc.trendmicro.com\""));
    assert_non_null(strstr(text, "\"reason\":\"tls alert unknown CA\""));
    assert_non_null(strstr(text, "\"suggestion\":"));
    remove_dir(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_url_needs_https_and_keeps_port_and_prefix),
        cmocka_unit_test(test_fingerprints_compare_in_any_spelling),
        cmocka_unit_test(test_machine_id_is_the_sha256_of_the_trimmed_file),
        cmocka_unit_test(test_enrolment_state_round_trips_with_mode_0600),
        cmocka_unit_test(test_gzip_batches_inflate_to_the_same_lines),
        cmocka_unit_test(test_spool_batches_come_back_oldest_first_with_unique_ids),
        cmocka_unit_test(test_spool_past_its_bound_drops_the_oldest_and_counts_its_lines),
        cmocka_unit_test(test_access_log_sink_gets_json_lines_whatever_the_file_format),
        cmocka_unit_test(test_lines_queued_while_the_server_is_down_are_spooled_at_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
