/*
 * train_bench.c - training speed of the student model (src/core) next to
 * the machine's cblas_sgemm peak, and the data for the PyTorch cross-check
 * in train_torch.py.  bench/train builds and runs it; see bench/README.md.
 *
 *   train_bench blas                 -> the kernels OpenBLAS chose
 *   train_bench peak THREADS         -> "GFLOP/s" of a square cblas_sgemm
 *   train_bench train D_MODEL THREADS
 *                    -> "tokens/s GFLOP/s sgemm-share GFLOP-per-step
 *                       peak-GFLOP/s" of training steps
 *   train_bench dump D_MODEL DIR     -> initial weights, batches and C
 *                    results on the check batch, as raw little-endian files
 *   train_bench pretrained full|lora THREADS
 *                    -> "s/step tokens/s GFLOP/s GFLOP-per-step
 *                       peak-GFLOP/s peak-RSS-kB sgemm-share" of training
 *                       steps of SmolLM2-135M's shape (bench/pretrained)
 *
 * Each mode prints one line of numbers on stdout (medians over repetitions:
 * the machine is shared and noisy); bench/train and bench/pretrained format
 * them.  Sizes and repetitions come from the environment (env_int() calls
 * below).
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/lora.h"
#include "core/model.h"
#include "core/model_ops.h"
#include "core/optim.h"
#include "core/util.h"

#include "bench.h"
#include "bench_135m.h"

/* Shape of the benchmark: the model besides d_model, the batch, repetitions. */
typedef struct BenchParams
{
	int			n_layers;
	int			n_heads;
	int			vocab_size;
	int			batch_size;
	int			seq_len;
	int			micro_batch;	/* sequences per forward and backward */
	int			steps;			/* timed training steps, after one warm-up */
	int			peak_size;		/* n of the n x n x n sgemm */
	int			peak_reps;
} BenchParams;

/* What make_batch() makes (see there). */
typedef enum BatchKind
{
	BATCH_PREFIX_LM,			/* full rows, loss after a prefix */
	BATCH_CHECK,				/* every kind of row */
	BATCH_CAUSAL				/* full rows, loss on every token */
} BatchKind;

/* A batch and the arrays behind its ModelBatch. */
typedef struct BenchBatch
{
	ModelBatch	mb;
	int32_t    *tokens;
	int32_t    *lengths;
	int32_t    *prefix_lengths;
	float	   *weights;
	int			n_tokens;		/* real (unpadded) tokens */
	int			n_targets;		/* tokens with a weight */
} BenchBatch;

static void
die(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	fprintf(stderr, "train_bench: ");
	vfprintf(stderr, fmt, args);
	fprintf(stderr, "\n");
	va_end(args);
	exit(1);
}

static int
env_int(const char *name, int fallback)
{
	const char *value = getenv(name);

	return value != NULL && *value != '\0' ? atoi(value) : fallback;
}

/* The batch's shape defaults to batch_size x seq_len. */
static BenchParams
read_params(int batch_size, int seq_len)
{
	BenchParams p;

	p.n_layers = env_int("BENCH_LAYERS", 4);
	p.n_heads = env_int("BENCH_HEADS", 4);
	p.vocab_size = env_int("BENCH_VOCAB", 4096);
	p.batch_size = env_int("BENCH_BATCH", batch_size);
	p.seq_len = env_int("BENCH_SEQ", seq_len);
	p.micro_batch = env_int("MICRO_BATCH", p.batch_size);
	p.steps = env_int("STEPS", 5);
	p.peak_size = env_int("PEAK_SIZE", 2048);
	p.peak_reps = env_int("PEAK_REPS", 5);
	if (p.steps < 1 || p.peak_reps < 1 || p.seq_len < 2 || p.batch_size < 1)
		die("STEPS, PEAK_REPS and BENCH_BATCH must be >= 1, BENCH_SEQ >= 2");
	if (p.micro_batch < 1 || p.micro_batch > p.batch_size)
		die("MICRO_BATCH must be 1 .. BENCH_BATCH");
	return p;
}

static void *
xmalloc(size_t size)
{
	void	   *p = malloc(size);

	if (p == NULL)
		die("out of memory (%zu bytes)", size);
	return p;
}

/* ---------------------------------------------------------------- */
/* Time spent in matrix products */

/*
 * Seconds spent inside cblas_sgemm since the last reset.  This definition
 * comes first in symbol lookup, ahead of OpenBLAS's, so the model's calls
 * land here too; it forwards to the real one.  The share of a training
 * step outside it is the non-matmul work (norms, softmax, rotary, SwiGLU,
 * cross-entropy, AdamW, copies).
 */
static double sgemm_seconds;

typedef void (*SgemmFunction) (enum CBLAS_ORDER, enum CBLAS_TRANSPOSE,
							   enum CBLAS_TRANSPOSE, blasint, blasint, blasint,
							   float, const float *, blasint, const float *,
							   blasint, float, float *, blasint);

void
cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER order,
			OPENBLAS_CONST enum CBLAS_TRANSPOSE trans_a,
			OPENBLAS_CONST enum CBLAS_TRANSPOSE trans_b,
			OPENBLAS_CONST blasint m, OPENBLAS_CONST blasint n,
			OPENBLAS_CONST blasint k, OPENBLAS_CONST float alpha,
			OPENBLAS_CONST float *a, OPENBLAS_CONST blasint lda,
			OPENBLAS_CONST float *b, OPENBLAS_CONST blasint ldb,
			OPENBLAS_CONST float beta, float *c, OPENBLAS_CONST blasint ldc)
{
	static SgemmFunction real_sgemm;
	double		start = now();

	if (real_sgemm == NULL)
	{
		real_sgemm = (SgemmFunction) dlsym(RTLD_NEXT, "cblas_sgemm");
		if (real_sgemm == NULL)
			die("cblas_sgemm not found in the loaded libraries");
	}
	real_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta,
			   c, ldc);
	sgemm_seconds += now() - start;
}

/* ---------------------------------------------------------------- */
/* sgemm peak */

/* C = A B with n x n matrices: the peak the training steps are held to. */
typedef struct PeakProblem
{
	int			n;
	float	   *a;
	float	   *b;
	float	   *c;
} PeakProblem;

static PeakProblem
create_peak_problem(int n)
{
	size_t		size = (size_t) n * n;
	PeakProblem pp = {n, xmalloc(3 * size * sizeof(float)), NULL, NULL};

	pp.b = pp.a + size;
	pp.c = pp.b + size;
	for (size_t i = 0; i < 2 * size; i++)
		pp.a[i] = (float) (i % 7) - 3.0f;
	memset(pp.c, 0, size * sizeof(float));	/* its pages, before any timing */
	return pp;
}

static void
free_peak_problem(PeakProblem *pp)
{
	free(pp->a);
}

/* GFLOP/s of one product. */
static double
peak_gflops(PeakProblem *pp)
{
	double		start = now();

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, pp->n, pp->n, pp->n,
				1.0f, pp->a, pp->n, pp->b, pp->n, 0.0f, pp->c, pp->n);
	return 2.0 * pp->n * pp->n * pp->n / (now() - start) / 1e9;
}

/* Median GFLOP/s of peak_reps products after a warm-up one. */
static void
run_peak(const BenchParams *p, int threads)
{
	PeakProblem pp = create_peak_problem(p->peak_size);
	double	   *gflops = xmalloc(p->peak_reps * sizeof(double));

	model_set_threads(threads);
	peak_gflops(&pp);
	for (int r = 0; r < p->peak_reps; r++)
		gflops[r] = peak_gflops(&pp);
	printf("%.1f\n", median(gflops, p->peak_reps));
	free(gflops);
	free_peak_problem(&pp);
}

/* ---------------------------------------------------------------- */
/* Model and batches */

/*
 * A model of config with random weights, LoRA adapters of lora (NULL:
 * none) and buffers for p's batches.
 */
static Model *
create_training_model(const ModelConfig *config, const LoraConfig *lora,
					  const BenchParams *p)
{
	CoreError	err;
	Model	   *model = model_create(config, &err);

	if (model == NULL)
		die("%s", err.message);
	model_init_weights(model, 1234);
	if ((lora != NULL && !lora_attach(model, lora, 1234, &err)) ||
		!model_alloc_training(model, p->micro_batch, p->seq_len, &err))
		die("%s", err.message);
	return model;
}

static Model *
create_model(const BenchParams *p, int d_model)
{
	ModelConfig config;

	model_config_default(&config, p->vocab_size, d_model, p->n_layers,
						 p->n_heads);
	config.max_seq_len = p->seq_len;
	return create_training_model(&config, NULL, p);
}

static int
random_below(uint64_t *state, int n)
{
	return (int) (splitmix64_next(state) % (uint64_t) n);
}

/*
 * A batch of random tokens, like a training batch of the prefix-LM: each
 * sequence has a prefix (the task and input) and a target after it, whose
 * tokens weigh 1 / (targets in the batch), a mean over them.
 *
 * The speed batch (BATCH_PREFIX_LM) is full (every sequence seq_len
 * tokens) with prefixes of 1/4 to 3/4 of it.  The check batch has every
 * kind of row: lengths from 2 to seq_len (padding after them), prefixes
 * from 0 (plain causal) to length - 1.  BATCH_CAUSAL is full with no
 * prefix: the loss is on every token but the first, as in fine-tuning a
 * causal LM on plain text.
 */
static BenchBatch
make_batch(const BenchParams *p, BatchKind kind, uint64_t seed)
{
	int			B = p->batch_size;
	int			T = p->seq_len;
	BenchBatch	b = {0};
	uint64_t	state = seed;

	b.tokens = xmalloc((size_t) B * T * sizeof(int32_t));
	b.lengths = xmalloc(B * sizeof(int32_t));
	b.prefix_lengths = xmalloc(B * sizeof(int32_t));
	b.weights = xmalloc((size_t) B * T * sizeof(float));
	for (int s = 0; s < B; s++)
	{
		int			len = kind == BATCH_CHECK
			? 2 + random_below(&state, T - 1) : T;
		int			prefix = kind == BATCH_PREFIX_LM
			? T / 4 + random_below(&state, T / 2 + 1)
			: kind == BATCH_CHECK ? random_below(&state, len) : 0;

		b.lengths[s] = len;
		b.prefix_lengths[s] = prefix;
		b.n_tokens += len;
		for (int t = 0; t < T; t++)
		{
			bool		target = t >= 1 && t >= prefix && t < len;

			b.tokens[s * T + t] = random_below(&state, p->vocab_size);
			b.weights[s * T + t] = target ? 1.0f : 0.0f;
			b.n_targets += target;
		}
	}
	for (int i = 0; i < B * T; i++)
		b.weights[i] /= b.n_targets;
	b.mb = (ModelBatch) {
		.batch_size = B, .seq_len = T, .tokens = b.tokens,
		.lengths = b.lengths, .prefix_lengths = b.prefix_lengths,
		.weights = b.weights
	};
	return b;
}

static void
free_batch(BenchBatch *b)
{
	free(b->tokens);
	free(b->lengths);
	free(b->prefix_lengths);
	free(b->weights);
}

/* ---------------------------------------------------------------- */
/* Training speed */

/*
 * FLOPs of the matrix products of one training step, 2 m n k each: the
 * linear layers over all rows of the batch, attention (Q K^T and P V) over
 * the length x length block of each sequence and head, the tied head over
 * the target rows.  Backward does two products per forward one, so a step
 * is 3x the forward.  A nominal count, the same for PyTorch: the model
 * skips the keys the causal mask hides (about (T + 64) / 2T of the block)
 * and makes Q K^T and the head's logits again in backward (memory
 * savings); neither is counted.
 *
 * With LoRA adapters the base is frozen: backward computes the input
 * gradient of each base product and not its weight gradient, so the
 * linear layers and the head count 2x the forward, attention still 3x;
 * each adapter adds 3x its forward, 2 rows (in + out) rank.
 */
static double
training_flops(const Model *model, const BenchBatch *b)
{
	const ModelConfig *c = &model->config;
	double		d = c->d_model;
	double		q_dim = (double) c->n_heads * model->head_dim;
	double		qkv_dim = q_dim + 2.0 * c->n_kv_heads * model->head_dim;
	double		rows = (double) b->mb.batch_size * b->mb.seq_len;
	double		per_row = 2.0 * (d * qkv_dim + q_dim * d + d * 2.0 * c->d_ff +
								 c->d_ff * d);
	double		attention = 0.0;

	double		head = 2.0 * b->n_targets * d * c->vocab_size;

	for (int s = 0; s < b->mb.batch_size; s++)
		attention += 2.0 * 2.0 * b->lengths[s] * b->lengths[s] * q_dim;
	if (model->lora != NULL)
		return 2.0 * (c->n_layers * rows * per_row + head) +
			3.0 * c->n_layers * attention +
			3.0 * 2.0 * rows * model->lora->n_params;
	return 3.0 * (c->n_layers * (rows * per_row + attention) + head);
}

/*
 * One optimizer step on the batch (of the adapters, if any), its
 * sequences micro_batch at a time (backward accumulates; the weights are
 * the whole batch's, so the losses add up to its loss); the loss.
 */
static float
train_step(Model *model, Optimizer *opt, const BenchBatch *b, int micro_batch)
{
	float		loss = 0.0f;
	ParamBlock	block;

	model_zero_grad(model);
	for (int first = 0; first < b->mb.batch_size; first += micro_batch)
	{
		size_t		cells = (size_t) first * b->mb.seq_len;
		ModelBatch	mb = b->mb;

		mb.batch_size = b->mb.batch_size - first < micro_batch
			? b->mb.batch_size - first : micro_batch;
		mb.tokens += cells;
		mb.lengths += first;
		mb.prefix_lengths += first;
		mb.weights += cells;
		if (mb.token_nll != NULL)
			mb.token_nll += cells;
		loss += model_forward(model, &mb, true);
		if (isnan(loss))
			die("the model rejected the batch");
		model_backward(model);
	}
	if (model->lora != NULL)
		optim_step_block(opt, lora_param_block(model, &block));
	else
		optim_step(opt, model);
	return loss;
}

/* AdamW with optim.c's defaults, of the model or of its adapters. */
static Optimizer *
create_optimizer(const Model *model)
{
	OptimConfig config;
	CoreError	err;
	Optimizer  *opt;

	optim_config_default(&config, 1e-3f, 1000);
	opt = model->lora != NULL
		? optim_create_for(model->lora->n_params, &config, &err)
		: optim_create(model, &config, &err);
	if (opt == NULL)
		die("%s", err.message);
	return opt;
}

/* Medians over the timed steps of a training run. */
typedef struct StepFigures
{
	double		seconds;		/* of a step */
	double		sgemm_share;	/* of a step's time inside cblas_sgemm */
	double		peak;			/* sgemm GFLOP/s measured between the steps */
} StepFigures;

/*
 * Times p->steps training steps on the batch after a warm-up step (first
 * touch of the buffers, BLAS threads), and measures the sgemm peak between
 * them: the machine is shared, so "of peak" compares figures of the same
 * moments.  The peak's matrices are allocated for each measurement and
 * freed after it (they are big enough to be mapped and unmapped), so that
 * they are no part of the process's peak RSS.
 */
static StepFigures
time_training_steps(const BenchParams *p, Model *model, Optimizer *opt,
					const BenchBatch *b, int threads)
{
	double	   *seconds = xmalloc(3 * p->steps * sizeof(double));
	double	   *sgemm_share = seconds + p->steps;
	double	   *peak = sgemm_share + p->steps;
	StepFigures figures;

	model_set_threads(threads);
	train_step(model, opt, b, p->micro_batch);
	for (int s = 0; s < p->steps; s++)
	{
		double		start = now();
		PeakProblem pp;

		sgemm_seconds = 0.0;
		train_step(model, opt, b, p->micro_batch);
		seconds[s] = now() - start;
		sgemm_share[s] = sgemm_seconds / seconds[s];
		pp = create_peak_problem(p->peak_size);
		peak[s] = peak_gflops(&pp);
		free_peak_problem(&pp);
	}
	figures.seconds = median(seconds, p->steps);
	figures.sgemm_share = median(sgemm_share, p->steps);
	figures.peak = median(peak, p->steps);
	free(seconds);
	return figures;
}

/*
 * Tokens/s and GFLOP/s of forward + backward + AdamW on the speed batch,
 * the share of the step spent in cblas_sgemm, the GFLOP of one step, and
 * the sgemm peak measured between the steps.
 */
static void
run_training(const BenchParams *p, int d_model, int threads)
{
	Model	   *model = create_model(p, d_model);
	Optimizer  *opt = create_optimizer(model);
	BenchBatch	b = make_batch(p, BATCH_PREFIX_LM, 1);
	double		flops = training_flops(model, &b);
	StepFigures f = time_training_steps(p, model, opt, &b, threads);

	printf("%.0f %.1f %.3f %.1f %.1f\n", b.n_tokens / f.seconds,
		   flops / f.seconds / 1e9, f.sgemm_share, flops / 1e9, f.peak);
	free_batch(&b);
	optim_free(opt);
	model_free(model);
}

/* ---------------------------------------------------------------- */
/* Training a model of SmolLM2-135M's shape */

/* The process's peak resident set so far, in kB. */
static long
peak_rss_kb(void)
{
	struct rusage usage;

	return getrusage(RUSAGE_SELF, &usage) == 0 ? usage.ru_maxrss : -1;
}

/*
 * Fine-tuning SmolLM2-135M's shape (random weights) on a batch of
 * batch_size x seq_len random ids (BENCH_BATCH, BENCH_SEQ: 8 x 256), the
 * loss on every token but the first of each row: "full" trains every
 * parameter with AdamW, "lora" adapters of rank LORA_RANK (16), alpha
 * LORA_ALPHA (32) on every projection of the blocks (q, k, v, o, gate, up,
 * down) over the frozen base, as train_torch.py does in PyTorch.  Prints
 * seconds a step, tokens/s, GFLOP/s, the GFLOP of one step
 * (training_flops()), the sgemm peak measured between the steps, the
 * process's peak RSS in kB (everything it allocated: weights, gradients,
 * AdamW's moments, activations), and the share of a step inside
 * cblas_sgemm.
 */
static void
run_pretrained(BenchParams p, const char *mode, int threads)
{
	ModelConfig config;
	LoraConfig	lora = {
		.rank = env_int("LORA_RANK", 16),
		.alpha = env_int("LORA_ALPHA", 32),
		.targets = LORA_ALL_TARGETS
	};
	Model	   *model;
	Optimizer  *opt;
	BenchBatch	b;
	double		flops;
	StepFigures f;

	if (strcmp(mode, "full") != 0 && strcmp(mode, "lora") != 0)
		die("unknown training mode \"%s\" (full, lora)", mode);
	config_135m(&config);
	model = create_training_model(&config, strcmp(mode, "lora") == 0 ? &lora : NULL, &p);
	p.vocab_size = model->config.vocab_size;
	opt = create_optimizer(model);
	b = make_batch(&p, BATCH_CAUSAL, 1);
	flops = training_flops(model, &b);
	f = time_training_steps(&p, model, opt, &b, threads);
	printf("%.3f %.0f %.1f %.1f %.1f %ld %.3f\n", f.seconds,
		   b.n_tokens / f.seconds, flops / f.seconds / 1e9, flops / 1e9,
		   f.peak, peak_rss_kb(), f.sgemm_share);
	free_batch(&b);
	optim_free(opt);
	model_free(model);
}

/* ---------------------------------------------------------------- */
/* Data for the PyTorch cross-check */

static void
write_file(const char *dir, const char *name, const void *data, size_t size)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
		die("cannot write %s", path);
}

static FILE *
open_text(const char *dir, const char *name)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		die("cannot write %s", path);
	return f;
}

/* config.txt: "key value" lines, everything train_torch.py needs. */
static void
write_config(const Model *model, const OptimConfig *oc, const char *dir)
{
	const ModelConfig *c = &model->config;
	FILE	   *f = open_text(dir, "config.txt");

	fprintf(f, "vocab_size %d\nd_model %d\nn_layers %d\nn_heads %d\n"
			"n_kv_heads %d\nd_ff %d\nmax_seq_len %d\ntied_embeddings %d\n"
			"prefix_lm %d\nqkv_bias %d\nrope_theta %.9g\nnorm_eps %.9g\n"
			"logit_scale %.9g\nlr %.9g\nbeta1 %.9g\nbeta2 %.9g\neps %.9g\n"
			"weight_decay %.9g\ngrad_clip %.9g\n",
			c->vocab_size, c->d_model, c->n_layers, c->n_heads, c->n_kv_heads,
			c->d_ff, c->max_seq_len, c->tied_embeddings, c->prefix_lm,
			c->qkv_bias, c->rope_theta, c->norm_eps, c->logit_scale, oc->lr,
			oc->beta1, oc->beta2, oc->eps, oc->weight_decay, oc->grad_clip);
	if (fclose(f) != 0)
		die("cannot write config.txt");
}

/* tensors.txt: "name offset rows cols decays" per tensor (cols 0: vector). */
static void
write_tensor_table(const Model *model, const char *dir)
{
	FILE	   *f = open_text(dir, "tensors.txt");

	for (int i = 0; i < model->n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];

		fprintf(f, "%s %zu %d %d %d\n", t->name, t->offset, t->shape[0],
				t->ndim == 2 ? t->shape[1] : 0,
				t->kind == TENSOR_WEIGHT || t->kind == TENSOR_OUTPUT_WEIGHT);
	}
	if (fclose(f) != 0)
		die("cannot write tensors.txt");
}

/* NAME_tokens.i32, NAME_lengths.i32, NAME_prefix.i32, NAME_weights.f32 */
static void
write_batch(const BenchBatch *b, const char *dir, const char *name)
{
	size_t		n = (size_t) b->mb.batch_size * b->mb.seq_len;
	size_t		B = b->mb.batch_size;
	char		file[256];

	snprintf(file, sizeof(file), "%s_tokens.i32", name);
	write_file(dir, file, b->tokens, n * sizeof(int32_t));
	snprintf(file, sizeof(file), "%s_lengths.i32", name);
	write_file(dir, file, b->lengths, B * sizeof(int32_t));
	snprintf(file, sizeof(file), "%s_prefix.i32", name);
	write_file(dir, file, b->prefix_lengths, B * sizeof(int32_t));
	snprintf(file, sizeof(file), "%s_weights.f32", name);
	write_file(dir, file, b->weights, n * sizeof(float));
}

/*
 * The initial weights (params.f32, laid out by tensors.txt), the check and
 * speed batches, and what the C model computes on the check batch: -log p
 * of every target token (check_nll.f32) and the gradient of the loss
 * (grads.f32, laid out like the weights).
 */
static void
run_dump(const BenchParams *p, int d_model, const char *dir)
{
	Model	   *model = create_model(p, d_model);
	Optimizer  *opt = create_optimizer(model);
	BenchBatch	check = make_batch(p, BATCH_CHECK, 2);
	BenchBatch	speed = make_batch(p, BATCH_PREFIX_LM, 1);
	size_t		n = (size_t) p->batch_size * p->seq_len;
	float	   *nll = xmalloc(n * sizeof(float));

	write_config(model, &opt->config, dir);
	write_tensor_table(model, dir);
	write_file(dir, "params.f32", model->params, model->n_params * sizeof(float));
	write_batch(&check, dir, "check");
	write_batch(&speed, dir, "speed");

	check.mb.token_nll = nll;
	model_zero_grad(model);
	if (isnan(model_forward(model, &check.mb, false)))
		die("the model rejected the check batch");
	model_backward(model);
	write_file(dir, "check_nll.f32", nll, n * sizeof(float));
	write_file(dir, "grads.f32", model->grads, model->n_params * sizeof(float));

	free(nll);
	free_batch(&check);
	free_batch(&speed);
	optim_free(opt);
	model_free(model);
}

int
main(int argc, char **argv)
{
	bool		pretrained = argc == 4 && strcmp(argv[1], "pretrained") == 0;
	BenchParams p = pretrained ? read_params(8, 256) : read_params(32, 128);

	if (pretrained)
		run_pretrained(p, argv[2], atoi(argv[3]));
	else if (argc == 2 && strcmp(argv[1], "blas") == 0)
		printf("%s\n", openblas_get_corename());
	else if (argc == 3 && strcmp(argv[1], "peak") == 0)
		run_peak(&p, atoi(argv[2]));
	else if (argc == 4 && strcmp(argv[1], "train") == 0)
		run_training(&p, atoi(argv[2]), atoi(argv[3]));
	else if (argc == 4 && strcmp(argv[1], "dump") == 0)
		run_dump(&p, atoi(argv[2]), argv[3]);
	else
		die("usage: train_bench blas | peak THREADS | train D_MODEL THREADS | dump D_MODEL DIR"
			" | pretrained full|lora THREADS");
	return 0;
}
