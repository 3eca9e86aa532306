/*
 * pool.c - the worker threads of src/core (see pool.h for why and how).
 *
 * One job at a time: the caller publishes it under the mutex, wakes the
 * workers and runs tasks itself; every thread claims the next task under
 * the mutex, so a task never runs twice, and a worker that wakes after
 * the job is over finds nothing to claim and sleeps again.  The caller
 * returns once every task is finished, so the job's fields are only ever
 * rewritten while no task of the previous job is running.  Nothing spins:
 * both sides wait on condition variables.
 */
#include "core/pool.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

/* Pieces per thread in pool_run_range(): slack for a delayed thread. */
#define PIECES_PER_THREAD 4

static struct
{
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* a job or a stop for the workers */
	pthread_cond_t finished;	/* the job's last task is done */
	int			n_threads;		/* wanted, the caller included */
	int			n_workers;		/* started */
	pid_t		pid;			/* of the process that started them */
	bool		stopping;
	pthread_t	workers[POOL_MAX_THREADS];
	/* the job: written by the caller only while no task runs */
	PoolTask	task;
	void	   *arg;
	int			n_tasks;
	int			next_task;		/* the next to claim */
	int			done;			/* tasks finished */
}			pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
	.finished = PTHREAD_COND_INITIALIZER,
	.n_threads = 1,
};

/*
 * Claim and run the job's tasks until none is left; called and returns
 * with the lock held.
 */
static void
run_tasks(void)
{
	while (pool.next_task < pool.n_tasks)
	{
		int			t = pool.next_task++;
		PoolTask	task = pool.task;
		void	   *arg = pool.arg;

		pthread_mutex_unlock(&pool.lock);
		task(arg, t);
		pthread_mutex_lock(&pool.lock);
		if (++pool.done == pool.n_tasks)
			pthread_cond_signal(&pool.finished);
	}
}

static void *
worker_main(void *unused)
{
	pthread_mutex_lock(&pool.lock);
	while (!pool.stopping)
	{
		run_tasks();
		if (!pool.stopping)
			pthread_cond_wait(&pool.wake, &pool.lock);
	}
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

/*
 * In a forked child the workers do not exist, and the pool's mutex may
 * have been held by one of them at the fork: start afresh.
 */
static void
forget_parent_workers(void)
{
	pthread_mutex_init(&pool.lock, NULL);
	pthread_cond_init(&pool.wake, NULL);
	pthread_cond_init(&pool.finished, NULL);
	pool.n_workers = 0;
	pool.stopping = false;
	pool.n_tasks = pool.next_task = pool.done = 0;
}

/*
 * Start the missing workers with every signal blocked (a new thread
 * inherits the mask); fewer if the system refuses threads.  Returns how
 * many there are.
 */
static int
start_workers(void)
{
	sigset_t	all,
				old;

	if (pool.n_workers > 0 && pool.pid != getpid())
		forget_parent_workers();
	if (pool.n_workers >= pool.n_threads - 1)
		return pool.n_workers;
	pool.pid = getpid();
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (pool.n_workers < pool.n_threads - 1 &&
		   pthread_create(&pool.workers[pool.n_workers], NULL, worker_main, NULL) == 0)
		pool.n_workers++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pool.n_workers;
}

void
pool_stop(void)
{
	if (pool.n_workers > 0 && pool.pid != getpid())
		forget_parent_workers();
	if (pool.n_workers == 0)
		return;
	pthread_mutex_lock(&pool.lock);
	pool.stopping = true;
	pthread_cond_broadcast(&pool.wake);
	pthread_mutex_unlock(&pool.lock);
	for (int i = 0; i < pool.n_workers; i++)
		pthread_join(pool.workers[i], NULL);
	pool.n_workers = 0;
	pool.stopping = false;
}

void
pool_set_threads(int n_threads)
{
	n_threads = n_threads < 1 ? 1 : n_threads;
	n_threads = n_threads > POOL_MAX_THREADS ? POOL_MAX_THREADS : n_threads;
	if (n_threads == pool.n_threads)
		return;
	pool_stop();
	pool.n_threads = n_threads;
}

int
pool_threads(void)
{
	return pool.n_threads;
}

void
pool_run(int n_tasks, PoolTask task, void *arg)
{
	if (n_tasks <= 0)
		return;
	if (n_tasks == 1 || pool.n_threads == 1 || start_workers() == 0)
	{
		for (int t = 0; t < n_tasks; t++)
			task(arg, t);
		return;
	}
	pthread_mutex_lock(&pool.lock);
	pool.task = task;
	pool.arg = arg;
	pool.n_tasks = n_tasks;
	pool.next_task = pool.done = 0;
	pthread_cond_broadcast(&pool.wake);
	run_tasks();
	while (pool.done < pool.n_tasks)
		pthread_cond_wait(&pool.finished, &pool.lock);
	pool.n_tasks = pool.next_task = pool.done = 0;
	pthread_mutex_unlock(&pool.lock);
}

typedef struct RangeJob
{
	PoolRange	range;
	void	   *arg;
	size_t		n;
	int			n_pieces;
} RangeJob;

static void
range_task(void *arg, int t)
{
	RangeJob   *job = arg;

	job->range(job->arg, job->n * t / job->n_pieces,
			   job->n * (t + 1) / job->n_pieces);
}

void
pool_run_range(size_t n, size_t min_items, PoolRange range, void *arg)
{
	size_t		most = min_items < 1 ? n : n / min_items;
	size_t		wanted = (size_t) pool.n_threads * PIECES_PER_THREAD;
	RangeJob	job = {range, arg, n, most < wanted ? (int) most : (int) wanted};

	if (n == 0)
		return;
	if (pool.n_threads == 1 || job.n_pieces < 2)
	{
		range(arg, 0, n);
		return;
	}
	pool_run(job.n_pieces, range_task, &job);
}
