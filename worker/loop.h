/*
 * loop.h: the worker's single-threaded event loop: level-triggered epoll fd
 * watchers, monotonic-ms timers in a binary heap (a zero-delay timer is how
 * work is "posted" to run soon, never recursively), SIGTERM/SIGINT through a
 * signalfd; and, through log.h, the logger every worker file uses.
 */

#ifndef RAGQ_LOOP_H
#define RAGQ_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef struct ragq_loop_s ragq_loop_t;

#define RAGQ_IO_READ  1u
#define RAGQ_IO_WRITE 2u

typedef void (*ragq_io_cb)(int fd, unsigned events, void *data);
typedef void (*ragq_timer_cb)(void *data);
typedef void (*ragq_signal_cb)(int signo, void *data);

/* Embedded in its owner, so stopping it is always safe and allocation-free. */
typedef struct {
    uint64_t      when;
    uint64_t      seq;   /* FIFO among timers due at the same ms */
    size_t        index; /* position in the heap, (size_t)-1 when idle */
    ragq_timer_cb cb;
    void         *data;
} ragq_timer_t;

ragq_loop_t *ragq_loop_new(void);
void         ragq_loop_free(ragq_loop_t *loop);

/* Runs until ragq_loop_stop(); returns 0, or -1 if epoll failed. */
int  ragq_loop_run(ragq_loop_t *loop);
void ragq_loop_stop(ragq_loop_t *loop);

/*
 * Watches fd for events (RAGQ_IO_READ | RAGQ_IO_WRITE), replacing any
 * earlier watch of the same fd; events 0 removes it.  Level-triggered.
 */
int ragq_loop_io(ragq_loop_t *loop, int fd, unsigned events, ragq_io_cb cb,
                 void *data);

void ragq_timer_init(ragq_timer_t *t, ragq_timer_cb cb, void *data);
/* (Re)arms t to fire once after ms milliseconds; 0 = on the next turn. */
void ragq_timer_start(ragq_loop_t *loop, ragq_timer_t *t, uint64_t ms);
void ragq_timer_stop(ragq_loop_t *loop, ragq_timer_t *t);
int  ragq_timer_active(const ragq_timer_t *t);

/* Blocks SIGTERM and SIGINT and delivers them through a signalfd. */
int ragq_loop_signals(ragq_loop_t *loop, ragq_signal_cb cb, void *data);

uint64_t ragq_now_ms(void); /* monotonic */
/* Milliseconds (1..period) to the monotonic clock's next multiple of
 * period: timers of many jobs aligned so their work leaves in one write. */
uint64_t ragq_ms_to_boundary(uint64_t period);
int64_t  ragq_epoch_ms(void); /* wall clock, for the job hash */


#endif
