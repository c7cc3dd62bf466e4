/* Unit tests for proxy/expool: a worker's spare exchanges (reused without
 * malloc, cleared for every request, bounded, freed when a sweep period
 * passes without use) and its head-writing buffer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/internal.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

static struct worker *worker_new(void)
{
    struct worker *w = calloc(1, sizeof *w);
    assert_non_null(w);
    buf_init(&w->head_out, 0);
    return w;
}

static void worker_free(struct worker *w)
{
    expool_drain(w);
    free(w);
}

/* An exchange given back comes back on the next take, with its head block
 * kept and everything a request sets cleared. */
static void test_reuse_clears_and_keeps_head_block(void **state)
{
    (void)state;
    struct worker *w = worker_new();
    struct exchange *ex = expool_take(w);
    assert_non_null(ex);
    assert_int_equal(expool_head_room(ex, 100), 0);
    assert_true(ex->head_cap >= 100);
    char *block = ex->head_copy;
    memcpy(ex->head_copy, "GET / HTTP/1.1\r\n", 16);
    ex->status = 502;
    ex->request_id = 42;
    ex->retried = true;
    snprintf(ex->url, sizeof ex->url, "https://example.test/");
    ex->resp_body_left = 7;
    expool_give(w, ex);
    assert_int_equal(w->nex_spare, 1);

    struct exchange *again = expool_take(w);
    assert_ptr_equal(again, ex);
    assert_int_equal(w->nex_spare, 0);
    assert_ptr_equal(again->head_copy, block);      /* no new allocation */
    assert_int_equal(again->status, 0);
    assert_int_equal(again->request_id, 0);
    assert_false(again->retried);
    assert_string_equal(again->url, "");
    assert_int_equal(again->resp_body_left, 0);
    assert_int_equal(again->req.nheaders, 0);
    assert_int_equal(again->resp.nheaders, 0);
    expool_give(w, again);
    worker_free(w);
}

/* A head longer than the block grows it; a shorter one reuses it. */
static void test_head_room_grows_once(void **state)
{
    (void)state;
    struct worker *w = worker_new();
    struct exchange *ex = expool_take(w);
    assert_int_equal(expool_head_room(ex, 10), 0);
    size_t first = ex->head_cap;
    assert_int_equal(expool_head_room(ex, first + 1000), 0);
    assert_true(ex->head_cap >= first + 1000);
    char *big = ex->head_copy;
    assert_int_equal(expool_head_room(ex, 10), 0);
    assert_ptr_equal(ex->head_copy, big);
    memset(ex->head_copy, 'x', ex->head_cap);       /* the whole block is ours */
    expool_give(w, ex);
    worker_free(w);
}

/* The spare list holds at most EXPOOL_MAX; more given back are freed. */
static void test_spares_bounded(void **state)
{
    (void)state;
    struct worker *w = worker_new();
    struct exchange *ex[EXPOOL_MAX + 3];
    for (int i = 0; i < EXPOOL_MAX + 3; i++) {
        ex[i] = expool_take(w);
        assert_non_null(ex[i]);
    }
    for (int i = 0; i < EXPOOL_MAX + 3; i++)
        expool_give(w, ex[i]);
    assert_int_equal(w->nex_spare, EXPOOL_MAX);
    expool_give(w, NULL);                           /* a no-op */
    assert_int_equal(w->nex_spare, EXPOOL_MAX);
    worker_free(w);
}

/* A sweep after use keeps the spares; the next one, with no use between,
 * frees them and the head buffer: an idle worker holds none. */
static void test_sweep_frees_unused_spares(void **state)
{
    (void)state;
    struct worker *w = worker_new();
    struct exchange *ex = expool_take(w);
    struct buf *b = expool_head_buf(w, 8192);
    assert_int_equal(buf_append(b, "HTTP/1.1 200 OK\r\n", 17), 0);
    expool_give(w, ex);
    expool_sweep(w);
    assert_int_equal(w->nex_spare, 1);
    assert_non_null(w->head_out.p);
    expool_sweep(w);
    assert_int_equal(w->nex_spare, 0);
    assert_null(w->head_out.p);
    worker_free(w);
}

/* The head buffer comes back empty every time, bounded by the max asked
 * for; a lower max than its size starts it afresh. */
static void test_head_buf_reset_and_bound(void **state)
{
    (void)state;
    struct worker *w = worker_new();
    struct buf *b = expool_head_buf(w, 4096);
    assert_int_equal(buf_append(b, "abc", 3), 0);
    b = expool_head_buf(w, 4096);
    assert_int_equal(b->len, 0);
    char big[5000];
    memset(big, 'h', sizeof big);
    assert_int_not_equal(buf_append(b, big, sizeof big), 0);   /* past the bound */
    assert_int_equal(buf_append(b, big, 3000), 0);
    b = expool_head_buf(w, 1024);                   /* the limit went down */
    assert_int_equal(b->len, 0);
    assert_true(b->cap <= 1024);
    assert_int_not_equal(buf_append(b, big, 2000), 0);
    worker_free(w);
}

/* In the AddressSanitizer build a spare is poisoned while it waits (a use
 * after expool_give() is still caught) and whole again when taken. */
static void test_spare_poisoned_under_asan(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    struct worker *w = worker_new();
    struct exchange *ex = expool_take(w);
    assert_int_equal(expool_head_room(ex, 64), 0);
    char *head = ex->head_copy;
    expool_give(w, ex);
    assert_true(__asan_address_is_poisoned(&ex->status));
    assert_true(__asan_address_is_poisoned(head));
    struct exchange *again = expool_take(w);
    assert_false(__asan_address_is_poisoned(&again->status));
    assert_false(__asan_address_is_poisoned(again->head_copy));
    expool_give(w, again);
    worker_free(w);
#else
    skip();   /* only the sanitizer build poisons */
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_clears_and_keeps_head_block),
        cmocka_unit_test(test_head_room_grows_once),
        cmocka_unit_test(test_spares_bounded),
        cmocka_unit_test(test_sweep_frees_unused_spares),
        cmocka_unit_test(test_head_buf_reset_and_bound),
        cmocka_unit_test(test_spare_poisoned_under_asan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
