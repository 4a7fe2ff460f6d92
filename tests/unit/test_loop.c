/*
 * test_loop.c: worker/loop.c's timer heap, through the loop's own API:
 * timers fire in deadline order (FIFO among equal deadlines), never early,
 * each once; stopped ones never fire, whatever the churn of starts and
 * stops before; a callback may stop or re-arm timers; and a timer that
 * re-arms itself with no delay cannot starve I/O.  Short delays only, and
 * nothing asserts how long anything took.
 */

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_int.h"
#include "loop.h"
#include "suites.h"

#define NT 300

typedef struct {
    ragq_loop_t *loop;
    ragq_timer_t t[NT];
    int          fired[NT];
    size_t       order[NT + 1]; /* indices, in firing order */
    uint64_t     when[NT + 1];
    uint64_t     seq[NT + 1];
    size_t       n;
    int          late; /* fired before its deadline */
} rec_t;

static rec_t r;

static void
on_timer(void *data)
{
    size_t i = (size_t) (uintptr_t) data;

    if (ragq_now_ms() < r.t[i].when) {
        r.late++;
    }
    r.fired[i]++;
    r.when[r.n] = r.t[i].when;
    r.seq[r.n] = r.t[i].seq;
    r.order[r.n++] = i;
}

static void
stop_loop(void *data)
{
    ragq_loop_stop(data);
}

static unsigned long long lcg = 42;

static unsigned
rnd(unsigned n)
{
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned) (lcg >> 33) % n;
}

static void
rec_init(void)
{
    memset(&r, 0, sizeof(r));
    r.loop = ragq_loop_new();
    ck_assert_ptr_nonnull(r.loop);
    for (size_t i = 0; i < NT; i++) {
        ragq_timer_init(&r.t[i], on_timer, (void *) (uintptr_t) i);
        ck_assert(!ragq_timer_active(&r.t[i]));
    }
}

/* Runs the loop until a timer armed after everything else fires. */
static void
run_all(uint64_t after_ms)
{
    ragq_timer_t end;

    ragq_timer_init(&end, stop_loop, r.loop);
    ragq_timer_start(r.loop, &end, after_ms);
    ck_assert_int_eq(ragq_loop_run(r.loop), 0);
}

/* Every fired timer fired once, in (deadline, arming order) order. */
static void
check_order(void)
{
    for (size_t k = 1; k < r.n; k++) {
        ck_assert_msg(
            r.when[k - 1] < r.when[k] ||
                (r.when[k - 1] == r.when[k] && r.seq[k - 1] < r.seq[k]),
            "timer %zu (when %llu) fired after timer %zu (when %llu)",
            r.order[k], (unsigned long long) r.when[k], r.order[k - 1],
            (unsigned long long) r.when[k - 1]);
    }
    ck_assert_int_eq(r.late, 0);
}

START_TEST(deadline_order)
{
    rec_init();
    for (size_t i = 0; i < NT; i++) {
        ragq_timer_start(r.loop, &r.t[i], rnd(25));
    }
    run_all(60);
    ck_assert_uint_eq(r.n, NT);
    for (size_t i = 0; i < NT; i++) {
        ck_assert_int_eq(r.fired[i], 1);
        ck_assert(!ragq_timer_active(&r.t[i]));
    }
    check_order();
    ragq_loop_free(r.loop);
}
END_TEST

START_TEST(zero_delay_is_fifo)
{
    rec_init();
    for (size_t i = 0; i < 100; i++) {
        ragq_timer_start(r.loop, &r.t[i], 0);
    }
    run_all(5);
    ck_assert_uint_eq(r.n, 100);
    for (size_t k = 0; k < r.n; k++) {
        ck_assert_uint_eq(r.order[k], k);
    }
    ragq_loop_free(r.loop);
}
END_TEST

START_TEST(stops_and_restarts)
{
    int active[NT] = {0};

    rec_init();
    /* Random churn: arm, re-arm (moves it) or stop (from anywhere in the
     * heap), then run; exactly the timers left armed must fire, in order. */
    for (int op = 0; op < 20000; op++) {
        size_t i = rnd(NT);

        if (rnd(3) == 0) {
            ragq_timer_stop(r.loop, &r.t[i]);
            ragq_timer_stop(r.loop, &r.t[i]); /* twice is harmless */
            active[i] = 0;
        } else {
            ragq_timer_start(r.loop, &r.t[i], rnd(30));
            active[i] = 1;
        }
    }
    for (size_t i = 0; i < NT; i++) {
        ck_assert_int_eq(ragq_timer_active(&r.t[i]), active[i]);
    }
    run_all(70);
    for (size_t i = 0; i < NT; i++) {
        ck_assert_msg(r.fired[i] == active[i], "timer %zu fired %d times", i,
                      r.fired[i]);
    }
    check_order();
    ragq_loop_free(r.loop);
}
END_TEST

/* A callback stops one timer due with it and re-arms another. */
static void
meddle(void *data)
{
    (void) data;
    ragq_timer_stop(r.loop, &r.t[1]);
    ragq_timer_start(r.loop, &r.t[2], 3);
    on_timer((void *) (uintptr_t) 0);
}

START_TEST(callbacks_stop_and_rearm)
{
    rec_init();
    ragq_timer_init(&r.t[0], meddle, NULL);
    ragq_timer_start(r.loop, &r.t[0], 0);
    ragq_timer_start(r.loop, &r.t[1], 0); /* due in the same pass */
    ragq_timer_start(r.loop, &r.t[2], 0);
    ragq_timer_start(r.loop, &r.t[3], 1);
    run_all(20);
    ck_assert_int_eq(r.fired[0], 1);
    ck_assert_int_eq(r.fired[1], 0);
    ck_assert_int_eq(r.fired[2], 1);
    ck_assert_int_eq(r.fired[3], 1);
    /* t[2] was moved behind t[3] */
    ck_assert_uint_eq(r.order[1], 3);
    ck_assert_uint_eq(r.order[2], 2);
    ragq_loop_free(r.loop);
}
END_TEST

static int reposts, pipe_fds[2];

/* Makes the pipe readable on its first run, then keeps re-arming. */
static void
repost(void *data)
{
    if (reposts++ == 0) {
        ck_assert_int_eq(write(pipe_fds[1], "x", 1), 1);
    }
    ragq_timer_start(r.loop, data, 0);
}

static void
readable(int fd, unsigned events, void *data)
{
    char c;

    (void) events;
    (void) data;
    ck_assert_int_eq(read(fd, &c, 1), 1);
    ragq_loop_stop(r.loop);
}

START_TEST(reposting_timer_cannot_starve_io)
{
    ragq_timer_t t;

    rec_init();
    reposts = 0;
    ck_assert_int_eq(pipe(pipe_fds), 0);
    ragq_timer_init(&t, repost, &t);
    ragq_timer_start(r.loop, &t, 0);
    ck_assert_int_eq(
        ragq_loop_io(r.loop, pipe_fds[0], RAGQ_IO_READ, readable, NULL), 0);
    /*
     * The pipe becomes readable inside a timer pass.  Without the limit of
     * one run per timer and pass, that pass would go on until the clock
     * moves to the next millisecond: thousands of runs, no I/O meanwhile.
     */
    ck_assert_int_eq(ragq_loop_run(r.loop), 0);
    ck_assert_int_le(reposts, 2);
    ragq_timer_stop(r.loop, &t);
    ragq_loop_io(r.loop, pipe_fds[0], 0, NULL, NULL);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    ragq_loop_free(r.loop);
}
END_TEST

/* The aligned batches of queue_out.c and the paced reads of http.c. */
START_TEST(delay_to_boundary_lands_on_it)
{
    static const uint64_t periods[] = {1, 7, 50, 1000};
    size_t                i;

    for (i = 0; i < sizeof(periods) / sizeof(periods[0]); i++) {
        uint64_t before = ragq_now_ms();
        uint64_t d = ragq_ms_to_boundary(periods[i]);
        uint64_t after = ragq_now_ms();
        uint64_t t;
        int      hit = 0;

        ck_assert_uint_ge(d, 1);
        ck_assert_uint_le(d, periods[i]);
        /* The clock read inside lies in [before, after]. */
        for (t = before; t <= after; t++) {
            if ((t + d) % periods[i] == 0) {
                hit = 1;
            }
        }
        ck_assert_int_eq(hit, 1);
    }
}
END_TEST

/*
 * When a streamed body is paced (http.c): an answer sent at once (reads
 * back to back) stays read as it comes, for up to 50 ms; one sent token by
 * token is paced at its first read that follows a pause of 5 ms or more.
 */
START_TEST(pacing_starts_at_a_pause_or_after_the_head)
{
    uint64_t t0 = 1000000;

    /* reads back to back: not paced */
    ck_assert_int_eq(ragq_http_pace_due(t0, t0, t0), 0);
    ck_assert_int_eq(ragq_http_pace_due(t0, t0 + 3, t0 + 4), 0);
    ck_assert_int_eq(ragq_http_pace_due(t0, t0 + 48, t0 + 49), 0);
    /* the head is over, however close the reads */
    ck_assert_int_eq(ragq_http_pace_due(t0, t0 + 49, t0 + 50), 1);
    /* a pause: the model sends token by token */
    ck_assert_int_eq(ragq_http_pace_due(t0, t0, t0 + 5), 1);
    ck_assert_int_eq(ragq_http_pace_due(t0, t0 + 10, t0 + 20), 1);
    ck_assert_int_eq(ragq_http_pace_due(t0, t0 + 10, t0 + 14), 0);
}
END_TEST

Suite *
ragq_suite_loop(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("timers");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, deadline_order);
    tcase_add_test(tc, zero_delay_is_fifo);
    tcase_add_test(tc, stops_and_restarts);
    tcase_add_test(tc, callbacks_stop_and_rearm);
    tcase_add_test(tc, reposting_timer_cannot_starve_io);
    tcase_add_test(tc, delay_to_boundary_lands_on_it);
    tcase_add_test(tc, pacing_starts_at_a_pause_or_after_the_head);
    suite_add_tcase(s, tc);
    return s;
}
