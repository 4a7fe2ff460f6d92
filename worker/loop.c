/*
 * loop.c: the epoll event loop, timer heap and signalfd declared in loop.h
 * (the logger is log.c).
 */

#include "loop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define RAGQ_TIMER_IDLE ((size_t) -1)

typedef struct {
    ragq_io_cb cb;
    void      *data;
    unsigned   events;
    /*
     * Still registered with the kernel although nobody watches: curl drops
     * its watch on every connection it puts back in its cache and asks
     * again for the next request, so the EPOLL_CTL_DEL (~2.5 us here) is
     * left until an event actually arrives for the idle fd, or never.
     */
    int lazy;
    /*
     * Bumped whenever the watch is removed, so an event already fetched by
     * epoll_wait for a closed fd is not handed to the next owner of that fd
     * number within the same batch.
     */
    uint32_t gen;
} ragq_io_t;

struct ragq_loop_s {
    int            epfd;
    int            stop;
    ragq_io_t     *ios;
    size_t         nios;
    ragq_timer_t **heap;
    size_t         nheap, heap_cap;
    uint64_t       seq;
    int            sigfd;
    ragq_signal_cb sig_cb;
    void          *sig_data;
};

uint64_t
ragq_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

uint64_t
ragq_ms_to_boundary(uint64_t period)
{
    return period - ragq_now_ms() % period;
}

int64_t
ragq_epoch_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ragq_loop_t *
ragq_loop_new(void)
{
    ragq_loop_t *loop = calloc(1, sizeof(*loop));

    if (loop == NULL) {
        return NULL;
    }
    loop->sigfd = -1;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    return loop;
}

void
ragq_loop_free(ragq_loop_t *loop)
{
    if (loop == NULL) {
        return;
    }
    if (loop->sigfd >= 0) {
        close(loop->sigfd);
    }
    close(loop->epfd);
    free(loop->ios);
    free(loop->heap);
    free(loop);
}

void
ragq_loop_stop(ragq_loop_t *loop)
{
    loop->stop = 1;
}

int
ragq_loop_io(ragq_loop_t *loop, int fd, unsigned events, ragq_io_cb cb,
             void *data)
{
    struct epoll_event ev;
    ragq_io_t         *io;
    int                op;

    if (fd < 0) {
        return -1;
    }
    if ((size_t) fd >= loop->nios) {
        size_t     n = loop->nios ? loop->nios : 64;
        ragq_io_t *ios;

        if (events == 0) {
            return 0;
        }
        while (n <= (size_t) fd) {
            n *= 2;
        }
        ios = realloc(loop->ios, n * sizeof(*ios));
        if (ios == NULL) {
            return -1;
        }
        memset(ios + loop->nios, 0, (n - loop->nios) * sizeof(*ios));
        loop->ios = ios;
        loop->nios = n;
    }
    io = &loop->ios[fd];

    if (events == 0) {
        /* Kept registered (see lazy); the gen bump voids its events. */
        io->lazy = io->lazy || io->events != 0;
        io->events = 0;
        io->cb = NULL;
        io->data = NULL;
        io->gen++;
        return 0;
    }

    memset(&ev, 0, sizeof(ev));
    ev.events = ((events & RAGQ_IO_READ) ? EPOLLIN : 0) |
                ((events & RAGQ_IO_WRITE) ? EPOLLOUT : 0);
    if (io->events == 0) {
        io->gen++;
    }
    ev.data.u64 = (uint64_t) (uint32_t) fd | ((uint64_t) io->gen << 32);
    /* A lazy registration may be gone (fd closed, number reused): the
     * fallback below turns a failed MOD into an ADD. */
    op = (io->events || io->lazy) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, fd, &ev) < 0) {
        /*
         * Our table can be stale when the owner closed an fd without
         * telling us and the number was reused (or the reverse).
         */
        op = (errno == ENOENT) ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(loop->epfd, op, fd, &ev) < 0) {
            return -1;
        }
    }
    io->events = events;
    io->cb = cb;
    io->data = data;
    io->lazy = 0;
    return 0;
}

/* An event for an fd nobody watches: drop its lazy registration now. */
static void
io_unregister(ragq_loop_t *loop, int fd, ragq_io_t *io)
{
    /* The fd may be closed and its registration gone: ignore errors. */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    io->lazy = 0;
}

/* Heap order: earliest deadline first, then first armed. */
static int
timer_less(const ragq_timer_t *a, const ragq_timer_t *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void
heap_swap(ragq_loop_t *loop, size_t i, size_t j)
{
    ragq_timer_t *t = loop->heap[i];

    loop->heap[i] = loop->heap[j];
    loop->heap[j] = t;
    loop->heap[i]->index = i;
    loop->heap[j]->index = j;
}

static void
heap_up(ragq_loop_t *loop, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (!timer_less(loop->heap[i], loop->heap[p])) {
            break;
        }
        heap_swap(loop, i, p);
        i = p;
    }
}

static void
heap_down(ragq_loop_t *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < loop->nheap && timer_less(loop->heap[l], loop->heap[m])) {
            m = l;
        }
        if (r < loop->nheap && timer_less(loop->heap[r], loop->heap[m])) {
            m = r;
        }
        if (m == i) {
            break;
        }
        heap_swap(loop, i, m);
        i = m;
    }
}

void
ragq_timer_init(ragq_timer_t *t, ragq_timer_cb cb, void *data)
{
    memset(t, 0, sizeof(*t));
    t->index = RAGQ_TIMER_IDLE;
    t->cb = cb;
    t->data = data;
}

int
ragq_timer_active(const ragq_timer_t *t)
{
    return t->index != RAGQ_TIMER_IDLE;
}

void
ragq_timer_stop(ragq_loop_t *loop, ragq_timer_t *t)
{
    size_t i = t->index;

    if (i == RAGQ_TIMER_IDLE) {
        return;
    }
    t->index = RAGQ_TIMER_IDLE;
    loop->nheap--;
    if (i != loop->nheap) {
        loop->heap[i] = loop->heap[loop->nheap];
        loop->heap[i]->index = i;
        heap_down(loop, i);
        heap_up(loop, i);
    }
}

void
ragq_timer_start(ragq_loop_t *loop, ragq_timer_t *t, uint64_t ms)
{
    ragq_timer_stop(loop, t);
    if (loop->nheap == loop->heap_cap) {
        size_t         cap = loop->heap_cap ? loop->heap_cap * 2 : 256;
        ragq_timer_t **heap = realloc(loop->heap, cap * sizeof(*heap));

        if (heap == NULL) {
            /* Nothing sane is left to do without timers. */
            ragq_log(RAGQ_LOG_ERROR, "out of memory for timers");
            abort();
        }
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    t->when = ragq_now_ms() + ms;
    t->seq = loop->seq++;
    t->index = loop->nheap;
    loop->heap[loop->nheap++] = t;
    heap_up(loop, t->index);
}

static void
signal_ready(int fd, unsigned events, void *data)
{
    ragq_loop_t            *loop = data;
    struct signalfd_siginfo si;

    (void) events;
    while (read(fd, &si, sizeof(si)) == (ssize_t) sizeof(si)) {
        loop->sig_cb((int) si.ssi_signo, loop->sig_data);
    }
}

int
ragq_loop_signals(ragq_loop_t *loop, ragq_signal_cb cb, void *data)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
        return -1;
    }
    loop->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (loop->sigfd < 0) {
        return -1;
    }
    loop->sig_cb = cb;
    loop->sig_data = data;
    return ragq_loop_io(loop, loop->sigfd, RAGQ_IO_READ, signal_ready, loop);
}

static void
run_timers(ragq_loop_t *loop)
{
    uint64_t now = ragq_now_ms();
    uint64_t seq_limit = loop->seq;

    /*
     * Timers armed by callbacks in this pass (seq >= seq_limit) wait for the
     * next turn, so a callback that re-posts itself cannot starve I/O.
     */
    while (loop->nheap > 0 && loop->heap[0]->when <= now &&
           loop->heap[0]->seq < seq_limit) {
        ragq_timer_t *t = loop->heap[0];

        ragq_timer_stop(loop, t);
        t->cb(t->data);
    }
}

int
ragq_loop_run(ragq_loop_t *loop)
{
    struct epoll_event evs[256];

    loop->stop = 0;
    while (!loop->stop) {
        int timeout = -1, n, i;

        if (loop->nheap > 0) {
            uint64_t now = ragq_now_ms(), when = loop->heap[0]->when;

            timeout = when <= now ? 0 : (int) (when - now);
        }
        n = epoll_wait(loop->epfd, evs, 256, timeout);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ragq_log(RAGQ_LOG_ERROR, "epoll_wait: %s", strerror(errno));
            return -1;
        }
        for (i = 0; i < n && !loop->stop; i++) {
            int        fd = (int) (uint32_t) evs[i].data.u64;
            uint32_t   gen = (uint32_t) (evs[i].data.u64 >> 32);
            unsigned   got = 0;
            ragq_io_t *io;

            if ((size_t) fd >= loop->nios) {
                continue;
            }
            io = &loop->ios[fd];
            if (io->cb == NULL) {
                if (io->lazy) {
                    io_unregister(loop, fd, io);
                }
                continue;
            }
            if (io->gen != gen) {
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                got |= RAGQ_IO_READ;
            }
            if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
                got |= RAGQ_IO_WRITE;
            }
            got &= io->events;
            if (got) {
                io->cb(fd, got, io->data);
            }
        }
        if (!loop->stop) {
            run_timers(loop);
        }
    }
    return 0;
}
