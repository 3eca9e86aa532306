/*
 * test_pool.c - the worker threads of pool.h and what runs on them.
 *
 *   - mechanics: every task runs exactly once, with any thread count and
 *     number of tasks; pool_run_range() covers its range exactly once; the
 *     workers block every signal; many start/stop cycles; a forked child
 *     starts workers of its own and its jobs finish;
 *   - results: with 2 threads the packed products, the row-wise ops of
 *     training, prediction (scores, log-probabilities, greedy ids), an
 *     AdamW step and a whole training step (OpenBLAS kept at one thread)
 *     give the same bits as with 1; a small model decodes on one thread;
 *     attention with the pool and OpenBLAS on 2 threads.
 *
 * OpenBLAS stays at one thread (model_single_thread()) until the last
 * test, so the process's thread count shows whether the pool's workers
 * ran: each comparison first checks that the 2-thread run started them.
 *
 * Also runs under ThreadSanitizer (with TSAN_OPTIONS=die_after_fork=0 for
 * the fork; model_ops.c uninstrumented, as TSan cannot run the resolvers
 * of its target_clones).
 */
#include <cblas.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/model.h"
#include "core/model_ops.h"
#include "core/optim.h"
#include "core/packed.h"
#include "core/pool.h"
#include "core/util.h"
#include "helpers.h"
#include "unit.h"

static uint64_t rng_state = 7;

static float
uniform(float lo, float hi)
{
	return lo + (hi - lo) * (float) ((splitmix64_next(&rng_state) >> 40) * 0x1.0p-24);
}

static float *
random_array(size_t n, float scale)
{
	float	   *x = malloc(n * sizeof(float));

	for (size_t i = 0; i < n; i++)
		x[i] = uniform(-scale, scale);
	return x;
}

/* Threads besides the pool's (a sanitizer may have one), from main(). */
static int	other_threads;

/* Threads of the pool: the caller and its workers. */
static int
process_threads(void)
{
	return threads_now() - other_threads;
}

/* ---------------------------------------------------------------- */
/* Mechanics */

typedef struct CountJob
{
	int			runs[1000];
	pthread_t	caller;
	int			by_workers;
	int			unblocked;		/* workers' tasks that found a signal open */
	useconds_t	caller_sleep;	/* per task on the caller, for the workers
								 * to take some */
} CountJob;

static void
count_task(void *arg, int t)
{
	CountJob   *job = arg;

	__atomic_fetch_add(&job->runs[t], 1, __ATOMIC_RELAXED);
	if (pthread_equal(pthread_self(), job->caller))
	{
		if (job->caller_sleep > 0)
			usleep(job->caller_sleep);
	}
	else
	{
		sigset_t	mask;
		static const int signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGHUP};

		pthread_sigmask(SIG_BLOCK, NULL, &mask);
		for (int i = 0; i < (int) (sizeof(signals) / sizeof(signals[0])); i++)
			if (!sigismember(&mask, signals[i]))
				__atomic_fetch_add(&job->unblocked, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&job->by_workers, 1, __ATOMIC_RELAXED);
	}
}

/* Run n_tasks counting tasks; true when each ran exactly once. */
static bool
run_counted(CountJob *job, int n_tasks, useconds_t caller_sleep)
{
	memset(job, 0, sizeof(*job));
	job->caller = pthread_self();
	job->caller_sleep = caller_sleep;
	pool_run(n_tasks, count_task, job);
	for (int t = 0; t < n_tasks; t++)
		if (job->runs[t] != 1)
			return false;
	return true;
}

static void
test_every_task_once(void)
{
	static const int threads[] = {1, 2, 3, 8};
	static const int tasks[] = {0, 1, 2, 7, 1000};
	CountJob	job;

	for (int i = 0; i < 4; i++)
	{
		pool_set_threads(threads[i]);
		CHECK(pool_threads() == threads[i]);
		for (int k = 0; k < 5; k++)
			CHECKF(run_counted(&job, tasks[k], 0), "%d threads, %d tasks",
				   threads[i], tasks[k]);
	}
	pool_set_threads(0);
	CHECK(pool_threads() == 1);
	pool_set_threads(1000);
	CHECK(pool_threads() == POOL_MAX_THREADS);
	pool_set_threads(1);
	CHECK(process_threads() == 1);
}

static void
mark_range(void *arg, size_t begin, size_t end)
{
	int		   *seen = arg;

	for (size_t i = begin; i < end; i++)
		__atomic_fetch_add(&seen[i], 1, __ATOMIC_RELAXED);
}

static void
test_range(void)
{
	static const size_t sizes[] = {0, 1, 5, 64, 999};
	static const size_t mins[] = {0, 1, 3, 64, 1000};
	int			seen[999];

	for (int threads = 1; threads <= 3; threads++)
	{
		pool_set_threads(threads);
		for (int i = 0; i < 5; i++)
			for (int j = 0; j < 5; j++)
			{
				bool		once = true;

				memset(seen, 0, sizeof(seen));
				pool_run_range(sizes[i], mins[j], mark_range, seen);
				for (size_t k = 0; k < sizes[i]; k++)
					once = once && seen[k] == 1;
				CHECKF(once, "%d threads, %zu items, pieces of at least %zu",
					   threads, sizes[i], mins[j]);
			}
	}
	pool_set_threads(1);
}

/* The workers take tasks, and block every signal. */
static void
test_workers_and_signals(void)
{
	CountJob	job;

	pool_set_threads(2);
	CHECK(run_counted(&job, 40, 5000));
	CHECKF(job.by_workers > 0, "no task ran on a worker");
	CHECKF(job.unblocked == 0, "%d signals open in workers", job.unblocked);
	CHECK(process_threads() == 2);
	pool_set_threads(1);
}

static void
test_start_stop_cycles(void)
{
	CountJob	job;
	bool		all = true;

	for (int i = 0; i < 300; i++)
	{
		pool_set_threads(2 + i % 3);
		all = all && run_counted(&job, 1 + i % 9, 0);
		if (i % 2 == 0)
			pool_stop();
		else
			pool_set_threads(1);
	}
	CHECK(all);
	CHECKF(process_threads() == 1, "%d threads left", process_threads());
	pool_stop();
	pool_stop();
}

/*
 * A child forked while the parent's workers wait has only the forking
 * thread; its jobs must still finish (SIGALRM kills a child that hangs).
 */
static void
test_fork(void)
{
	CountJob	job;
	pid_t		pid;
	int			status = 0;

	pool_set_threads(2);
	CHECK(run_counted(&job, 8, 1000));
	CHECK(process_threads() == 2);
	pid = fork();
	if (pid == 0)
	{
		int			before = threads_now();
		bool		ok = true;

		alarm(20);
		for (int i = 0; i < 20; i++)
			ok = ok && run_counted(&job, 16, 1000);
		ok = ok && threads_now() == before + 1;
		pool_set_threads(1);
		ok = ok && threads_now() == before;
		_exit(ok ? 0 : 1);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "child: status %d", status);
	CHECK(run_counted(&job, 8, 0));
	pool_set_threads(1);
}

/* ---------------------------------------------------------------- */
/* The same bits with 1 and 2 threads */

/* Did the last 2-thread run start the workers?  Then stop them again. */
static bool
workers_ran(void)
{
	bool		ran = process_threads() == 2;

	pool_set_threads(1);
	return ran;
}

static void
test_packed_same_bits(void)
{
	static const int shapes[][3] = {{8192, 512, 1}, {1000, 300, 20}, {1536, 576, 64}};

	if (!packed_supported())
		return;
	for (int s = 0; s < 3; s++)
	{
		int			n_out = shapes[s][0],
					n_in = shapes[s][1],
					rows = shapes[s][2];
		float	   *w = random_array((size_t) n_out * n_in, 1.0f);
		float	   *in = random_array((size_t) rows * n_in, 1.0f);
		float	   *bias = random_array(n_out, 1.0f);
		float	   *one = malloc((size_t) rows * n_out * sizeof(float));
		float	   *two = malloc((size_t) rows * n_out * sizeof(float));
		PackedMatrix m;

		CHECK(packed_matrix_init(&m, w, n_out, n_in));
		pool_set_threads(1);
		packed_matmul(one, in, &m, bias, 0.5f, rows);
		pool_set_threads(2);
		packed_matmul(two, in, &m, bias, 0.5f, rows);
		CHECKF(workers_ran(), "%d x %d, %d rows: one thread only", n_out, n_in, rows);
		CHECKF(memcmp(one, two, (size_t) rows * n_out * sizeof(float)) == 0,
			   "%d x %d, %d rows: 2 threads differ", n_out, n_in, rows);
		packed_matrix_free(&m);
		free(w);
		free(in);
		free(bias);
		free(one);
		free(two);
	}
}

/* Bits of n floats of the 2-thread run b against the 1-thread run a. */
static bool
same_floats(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof(float)) == 0;
}

static void
test_row_ops_same_bits(void)
{
	enum
	{
		N = 64, D_FF = 1536, VOCAB = 4096
	};
	float	   *gate_up = random_array((size_t) N * 2 * D_FF, 4.0f);
	float	   *dout = random_array((size_t) N * D_FF, 1.0f);
	float	   *logits = random_array((size_t) N * VOCAB, 8.0f);
	float	   *weights = random_array(N, 1.0f);
	int32_t		targets[N];
	float	   *out[2],
			   *dgate_up[2],
			   *nll[2],
			   *lse[2],
			   *dlogits[2];

	for (int r = 0; r < N; r++)
		targets[r] = (r * 131) % VOCAB;
	for (int t = 0; t < 2; t++)
	{
		out[t] = malloc((size_t) N * D_FF * sizeof(float));
		dgate_up[t] = malloc((size_t) N * 2 * D_FF * sizeof(float));
		nll[t] = malloc(N * sizeof(float));
		lse[t] = malloc(N * sizeof(float));
		dlogits[t] = malloc((size_t) N * VOCAB * sizeof(float));
		pool_set_threads(t + 1);
		swiglu_forward(out[t], gate_up, N, D_FF);
		swiglu_backward(dgate_up[t], dout, gate_up, N, D_FF);
		crossentropy_forward(nll[t], lse[t], logits, targets, N, VOCAB);
		crossentropy_backward(dlogits[t], logits, lse[t], targets, weights, N, VOCAB);
	}
	CHECK(workers_ran());
	CHECK(same_floats(out[0], out[1], (size_t) N * D_FF));
	CHECK(same_floats(dgate_up[0], dgate_up[1], (size_t) N * 2 * D_FF));
	CHECK(same_floats(nll[0], nll[1], N));
	CHECK(same_floats(lse[0], lse[1], N));
	CHECK(same_floats(dlogits[0], dlogits[1], (size_t) N * VOCAB));
	for (int t = 0; t < 2; t++)
	{
		free(out[t]);
		free(dgate_up[t]);
		free(nll[t]);
		free(lse[t]);
		free(dlogits[t]);
	}
	free(gate_up);
	free(dout);
	free(logits);
	free(weights);
}

/* Big enough that decoding's head product and a prompt's products share. */
static Model *
prediction_model(void)
{
	ModelConfig c;
	CoreError	err = {0};
	Model	   *m;

	model_config_default(&c, 8192, 512, 2, 8);
	c.n_kv_heads = 4;
	c.max_seq_len = 128;
	m = model_create(&c, &err);
	CHECKF(m != NULL, "model_create: %s", err.message);
	model_init_weights(m, 3);
	CHECKF(model_pack_for_prediction(m, &err), "%s", err.message);
	return m;
}

static void
test_prediction_same_bits(void)
{
	enum
	{
		P = 40, NEW = 12, CANDS = 5
	};
	Model	   *m = prediction_model();
	int32_t		prefix[P],
				cand[CANDS][3],
				ids[2][NEW];
	const int32_t *cands[CANDS];
	int			lens[CANDS];
	double		scores[2][CANDS];
	float	   *logprobs[2];
	int			n[2];
	CoreError	err = {0};

	for (int i = 0; i < P; i++)
		prefix[i] = (i * 7919) % 8192;
	for (int k = 0; k < CANDS; k++)
	{
		for (int j = 0; j < 3; j++)
			cand[k][j] = (k * 31 + j * 977) % 8192;
		cands[k] = cand[k];
		lens[k] = 1 + k % 3;
	}
	for (int t = 0; t < 2; t++)
	{
		logprobs[t] = malloc((size_t) P * 8192 * sizeof(float));
		pool_set_threads(t + 1);
		CHECKF(model_score_candidates(m, prefix, P, cands, lens, CANDS, scores[t], &err),
			   "%s", err.message);
		n[t] = model_generate_greedy(m, prefix, P, NEW, -1, ids[t], NULL, &err);
		CHECKF(model_next_logprobs(m, prefix, P, logprobs[t], &err), "%s", err.message);
	}
	CHECK(workers_ran());
	CHECK(n[0] == NEW && n[1] == NEW);
	CHECK(memcmp(scores[0], scores[1], sizeof(scores[0])) == 0);
	CHECK(memcmp(ids[0], ids[1], sizeof(ids[0])) == 0);
	CHECK(same_floats(logprobs[0], logprobs[1], (size_t) P * 8192));
	free(logprobs[0]);
	free(logprobs[1]);
	model_free(m);
}

/*
 * A model of stories260K's shape decodes with 2 threads on one: its
 * products are too small to repay waking a worker.
 */
static void
test_small_model_one_thread(void)
{
	ModelConfig c;
	CoreError	err = {0};
	Model	   *m;
	int32_t		prefix[1] = {1},
				out[40];

	model_config_default(&c, 512, 64, 5, 8);
	c.n_kv_heads = 4;
	c.d_ff = 172;
	c.max_seq_len = 64;
	m = model_create(&c, &err);
	CHECKF(m != NULL, "model_create: %s", err.message);
	model_init_weights(m, 5);
	CHECKF(model_pack_for_prediction(m, &err), "%s", err.message);
	pool_set_threads(2);
	CHECK(model_generate_greedy(m, prefix, 1, 40, -1, out, NULL, &err) == 40);
	CHECKF(process_threads() == 1, "%d threads", process_threads());
	pool_set_threads(1);
	model_free(m);
}

/* A small model's training batch: 4 sequences of up to 96 tokens. */
typedef struct TrainCtx
{
	int32_t		tokens[4 * 96];
	int32_t		lengths[4];
	int32_t		prefix[4];
	float		weights[4 * 96];
	ModelBatch	batch;
} TrainCtx;

/*
 * Rows of T tokens (at most 96), lengths T - 3b, prefixes T/4 + b: with
 * T > ATTENTION_TILE_ROWS, attention takes its queries in two tiles.
 */
static Model *
training_model(TrainCtx *ctx, int T)
{
	ModelConfig c;
	CoreError	err = {0};
	Model	   *m;

	model_config_default(&c, 4096, 128, 2, 4);
	c.max_seq_len = T;
	c.dropout = 0.1f;
	m = model_create(&c, &err);
	CHECKF(m != NULL && model_alloc_training(m, 4, T, &err), "%s", err.message);
	model_init_weights(m, 9);
	for (int b = 0; b < 4; b++)
	{
		ctx->lengths[b] = T - 3 * b;
		ctx->prefix[b] = T / 4 + b;
		for (int t = 0; t < T; t++)
		{
			ctx->tokens[b * T + t] = (b * 1009 + t * 7919) % 4096;
			ctx->weights[b * T + t] = t >= ctx->prefix[b] && t < ctx->lengths[b] ? 0.01f : 0.0f;
		}
	}
	ctx->batch = (ModelBatch)
	{
		4, T, ctx->tokens, ctx->lengths, ctx->prefix, ctx->weights, NULL
	};
	return m;
}

/*
 * Three training steps (forward, backward, AdamW) on rows of T tokens with
 * 1 and with 2 pool threads; OpenBLAS has one thread in both, so the bits
 * must agree.
 */
static void
test_training_same_bits(int T)
{
	TrainCtx	ctx[2];
	Model	   *m[2];
	Optimizer  *opt[2];
	OptimConfig oc;
	float		loss[2],
				norm[2];

	optim_config_default(&oc, 1e-3f, 10);
	for (int t = 0; t < 2; t++)
	{
		m[t] = training_model(&ctx[t], T);
		opt[t] = optim_create(m[t], &oc, NULL);
		pool_set_threads(t + 1);
		for (int step = 0; step < 3; step++)
		{
			model_zero_grad(m[t]);
			loss[t] = model_forward(m[t], &ctx[t].batch, true);
			model_backward(m[t]);
			norm[t] = optim_step(opt[t], m[t]);
		}
	}
	CHECK(workers_ran());
	CHECKF(loss[0] == loss[1], "loss %.9g, %.9g", loss[0], loss[1]);
	CHECKF(norm[0] == norm[1], "gradient norm %.9g, %.9g", norm[0], norm[1]);
	CHECK(same_floats(m[0]->params, m[1]->params, m[0]->n_params));
	CHECK(same_floats(opt[0]->m, opt[1]->m, m[0]->n_params));
	CHECK(same_floats(opt[0]->v, opt[1]->v, m[0]->n_params));
	for (int t = 0; t < 2; t++)
	{
		optim_free(opt[t]);
		model_free(m[t]);
	}
}

/*
 * Attention shares its (sequence, key/value head) pairs among the pool's
 * threads, each running OpenBLAS on one thread: with distill.threads = 2
 * (the pool and OpenBLAS at 2, as training sets them) the same bits as on
 * one thread, at SmolLM2-135M's heads (9 over 3), more pairs (12) than
 * lanes, and OpenBLAS's thread count as it was after each call.  Last,
 * since it starts OpenBLAS's threads.
 */
static void
test_attention_same_bits(void)
{
	enum
	{
		B = 4, T = 150, H = 9, KV = 3, HD = 64
	};
	static const int32_t lengths[B] = {150, 97, 65, 1};
	AttentionShape s = {H, KV, HD};
	size_t		n_qkv = (size_t) B * T * (H + 2 * KV) * HD;
	size_t		n_out = (size_t) B * T * H * HD;
	size_t		n_lse = (size_t) B * H * T;
	float	   *qkv = random_array(n_qkv, 2.0f);
	float	   *dout = random_array(n_out, 1.0f);
	float	   *scratch = malloc(attention_scratch_floats(T) * sizeof(float));
	float	   *out[2],
			   *lse[2],
			   *dqkv[2];
	int			blas_after[2];

	CHECK(B * KV > ATTENTION_LANES);
	for (int t = 0; t < 2; t++)
	{
		out[t] = malloc(n_out * sizeof(float));
		lse[t] = calloc(n_lse, sizeof(float));
		dqkv[t] = malloc(n_qkv * sizeof(float));
		model_set_threads(t + 1);
		attention_forward(out[t], lse[t], scratch, qkv, lengths, NULL, B, T, s);
		attention_backward(dqkv[t], scratch, dout, qkv, lse[t], lengths, NULL, B, T, s);
		blas_after[t] = openblas_get_num_threads();
	}
	/* the caller, the pool's worker and OpenBLAS's */
	CHECKF(process_threads() == 3, "%d threads", process_threads());
	CHECKF(blas_after[0] == 1 && blas_after[1] == 2, "OpenBLAS threads after: %d, %d",
		   blas_after[0], blas_after[1]);
	CHECK(same_floats(out[0], out[1], n_out));
	CHECK(same_floats(lse[0], lse[1], n_lse));
	CHECK(same_floats(dqkv[0], dqkv[1], n_qkv));
	model_single_thread();
	for (int t = 0; t < 2; t++)
	{
		free(out[t]);
		free(lse[t]);
		free(dqkv[t]);
	}
	free(qkv);
	free(dout);
	free(scratch);
}

int
main(void)
{
	model_single_thread();
	other_threads = threads_now() - 1;
	test_every_task_once();
	test_range();
	test_workers_and_signals();
	test_start_stop_cycles();
	test_fork();
	test_packed_same_bits();
	test_row_ops_same_bits();
	test_prediction_same_bits();
	test_small_model_one_thread();
	test_training_same_bits(32);
	CHECK(96 > ATTENTION_TILE_ROWS);
	test_training_same_bits(96);
	test_attention_same_bits();
	return unit_summary("pool");
}
