/*
 * pool.h - a small pool of worker threads for the loops of src/core.
 *
 * pool_run() runs tasks 0 .. n_tasks - 1 of a job on the calling thread
 * and on pool_threads() - 1 workers, and returns when all are done.  The
 * tasks of a job must be independent (each writes its own outputs), so
 * which thread runs a task changes nothing: a loop split into tasks whose
 * boundaries do not depend on the thread count gives bit-identical results
 * with any number of threads.
 *
 * Why not OpenMP or OpenBLAS's threads: a PostgreSQL backend always shares
 * its cores with other processes, and worker threads that spin while they
 * wait for work collapse (25x slower) whenever another process holds a
 * core.  These workers never spin: an idle worker sleeps on a condition
 * variable, tasks are claimed one at a time under the pool's mutex, and a
 * worker that is not scheduled in time leaves its tasks to the caller,
 * which then only waits for the tasks already started.
 *
 * The workers are started by the first pool_run() that has work for them,
 * never when the library is loaded, since PostgreSQL's postmaster forks
 * its backends and a forked child has only the thread that forked.  A
 * child that inherits the pool's bookkeeping notices (the process id
 * differs) and starts workers of its own.  The workers block every signal,
 * so that PostgreSQL's handlers run in the backend's own thread only.
 *
 * Everything here is called from one thread (the backend's); tasks must
 * not call pool_run() themselves.  Plain C, no PostgreSQL headers.
 */
#ifndef DISTILL_CORE_POOL_H
#define DISTILL_CORE_POOL_H

#include <stddef.h>

/* The most threads pool_set_threads() accepts (more are capped). */
#define POOL_MAX_THREADS 64

typedef void (*PoolTask) (void *arg, int task);

/* Task range(arg, begin, end) of pool_run_range(): items [begin, end). */
typedef void (*PoolRange) (void *arg, size_t begin, size_t end);

/*
 * Threads for the jobs from now on, the caller included (1 = the caller
 * alone, the default).  A new count stops the current workers; the next
 * pool_run() with work for them starts as many as needed.
 */
extern void pool_set_threads(int n_threads);
extern int	pool_threads(void);

/* Run task(arg, t) for t = 0 .. n_tasks - 1; returns when all are done. */
extern void pool_run(int n_tasks, PoolTask task, void *arg);

/*
 * range(arg, begin, end) over pieces that cover [0, n): on one thread, or
 * for fewer than 2 * min_items items, one call over all of them; else
 * pieces of at least min_items items, a few per thread so that a thread
 * that another process delays leaves its share to the others.  For
 * element-wise work only, since the pieces depend on the thread count.
 */
extern void pool_run_range(size_t n, size_t min_items, PoolRange range,
						   void *arg);

/* Join the workers (none are left running); the thread count stays. */
extern void pool_stop(void);

#endif
