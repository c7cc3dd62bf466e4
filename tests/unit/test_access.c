/* Unit tests of the access log's JSON writer (hand-written, no printf per
 * field) and of the per-thread batching the workers use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/access.h"

static size_t fmt(const struct access_record *r, char *out, size_t cap)
{
    size_t n = access_log_format(ACCESS_JSON, r, out, cap);
    if (n < cap)
        out[n] = '\0';
    return n;
}

static void test_every_field_in_order(void **state)
{
    (void)state;
    struct access_record r = {
        .time_ms = 1700000000123ull, /* 2023-11-14T22:13:20.123Z */
        .request_id = 18446744073709551615ull,
        .client = "127.0.0.1:5000",
        .method = "GET",
        .url = "https://a.test/x?y=1",
        .host = "a.test",
        .status = 200,
        .bytes_in = 0,
        .bytes_out = 1024,
        .duration_us = 1234567,
        .mode = "decode",
        .upstream_verify = "ok",
        .sni = "a.test",
        .dst = "10.0.0.1:443",
        .app = "curl",
        .app_path = "/usr/bin/curl",
        .pid = 42,
        .uid = 0,
        .categories = "news,social",
        .action = "allow",
        .rule = "default",
    };
    char out[2048];
    assert_true(fmt(&r, out, sizeof out) > 0);
    assert_string_equal(out,
        "{\"time\":\"2023-11-14T22:13:20.123Z\",\"request_id\":18446744073709551615,"
        "\"client\":\"127.0.0.1:5000\",\"method\":\"GET\",\"url\":\"https://a.test/x?y=1\","
        "\"host\":\"a.test\",\"status\":200,\"bytes_in\":0,\"bytes_out\":1024,"
        "\"duration_ms\":1234.567,\"mode\":\"decode\",\"upstream_verify\":\"ok\","
        "\"sni\":\"a.test\",\"dst\":\"10.0.0.1:443\",\"app\":\"curl\","
        "\"app_path\":\"/usr/bin/curl\",\"pid\":42,\"uid\":0,"
        "\"categories\":[\"news\",\"social\"],\"action\":\"allow\",\"rule\":\"default\"}");
}

/* "%.3f" of us / 1000.0 for the durations a log sees. */
static void test_duration_matches_printf(void **state)
{
    (void)state;
    static const uint64_t us[] = { 0, 1, 9, 10, 999, 1000, 1001, 59999, 123456789, 86400000000ull };
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        struct access_record r = { .time_ms = 0, .duration_us = us[i], .uid = -1 };
        char out[512], want[64];
        assert_true(fmt(&r, out, sizeof out) > 0);
        snprintf(want, sizeof want, "\"duration_ms\":%.3f,", (double)us[i] / 1000.0);
        assert_non_null(strstr(out, want));
    }
}

static void test_strings_are_escaped_and_absent_fields_left_out(void **state)
{
    (void)state;
    struct access_record r = {
        .time_ms = 0,
        .url = "a\"b\\c\x01\x7f\n",
        .status = -1,
        .uid = -1,
    };
    char out[512];
    assert_true(fmt(&r, out, sizeof out) > 0);
    assert_non_null(strstr(out, "\"url\":\"a\\\"b\\\\c\\u0001\\u007f\\u000a\""));
    assert_non_null(strstr(out, "\"time\":\"1970-01-01T00:00:00.000Z\""));
    assert_non_null(strstr(out, "\"status\":-1,"));
    assert_non_null(strstr(out, "\"upstream_verify\":null"));
    assert_null(strstr(out, "\"uid\""));
    assert_null(strstr(out, "\"pid\""));
    assert_null(strstr(out, "\"sni\""));
}

static void test_too_small_a_buffer_is_refused_not_truncated(void **state)
{
    (void)state;
    struct access_record r = { .time_ms = 0, .url = "https://a.test/", .uid = -1 };
    char out[40];
    assert_int_equal(access_log_format(ACCESS_JSON, &r, out, sizeof out), 0);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_batched_lines_reach_the_file_on_flush(void **state)
{
    (void)state;
    char path[] = "/tmp/shoji-test-access-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct access_log *l;
    char err[256];
    assert_int_equal(access_log_open(path, ACCESS_JSON, &l, err, sizeof err), 0);
    struct access_record r = { .time_ms = 1, .url = "u", .uid = -1 };

    access_log_batch_begin();
    for (int i = 0; i < 3; i++)
        access_log_write(l, &r);
    assert_int_equal(access_log_pending(), 3);
    assert_int_equal(file_size(path), 0);   /* held until the flush */
    assert_int_equal(access_log_written(l), 0);
    access_log_flush();
    assert_int_equal(access_log_pending(), 0);
    assert_int_equal(access_log_written(l), 3);
    off_t three = file_size(path);
    assert_true(three > 0);

    /* A full batch goes out by itself: far more lines than one batch holds. */
    for (int i = 0; i < 1000; i++)
        access_log_write(l, &r);
    assert_true(access_log_pending() < 1000);
    access_log_batch_end();   /* writes the rest */
    assert_int_equal(access_log_written(l), 1003);
    assert_int_equal(file_size(path), three / 3 * 1003);

    /* After batch_end, a line is written at once. */
    access_log_write(l, &r);
    assert_int_equal(access_log_written(l), 1004);
    access_log_close(l);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_in_order),
        cmocka_unit_test(test_duration_matches_printf),
        cmocka_unit_test(test_strings_are_escaped_and_absent_fields_left_out),
        cmocka_unit_test(test_too_small_a_buffer_is_refused_not_truncated),
        cmocka_unit_test(test_batched_lines_reach_the_file_on_flush),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
