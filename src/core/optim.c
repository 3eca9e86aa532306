/*
 * optim.c - AdamW, learning-rate schedule, gradient clipping.
 *
 * A step streams through the parameters, the gradients and both moments
 * (16 bytes a parameter, 2 GB for 135M), twice: once for the gradient's
 * norm, once for the update.  Both passes go a chunk of OPTIM_CHUNK
 * parameters per task of pool.h, so they use every thread of
 * model_set_threads(); the chunks do not depend on the thread count, and
 * the norm adds their partial sums in chunk order, so the step gives the
 * same bits with any number of threads.
 */
#include "core/optim.h"
#include "core/pool.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parameters per task (256 KB of each array). */
#define OPTIM_CHUNK (1 << 16)

static int
n_chunks(size_t n_params)
{
	return (int) ((n_params + OPTIM_CHUNK - 1) / OPTIM_CHUNK);
}

void
optim_config_default(OptimConfig *config, float lr, int total_steps)
{
	int			warmup = total_steps / 20;

	memset(config, 0, sizeof(*config));
	config->lr = lr;
	config->warmup_steps = warmup < 500 ? warmup : 500;
	config->total_steps = total_steps;
	config->decay = LR_DECAY_COSINE;
	config->min_lr_ratio = 0.1f;
	config->beta1 = 0.9f;
	config->beta2 = 0.999f;
	config->eps = 1e-8f;
	config->weight_decay = 0.01f;
	config->grad_clip = 1.0f;
}

Optimizer *
optim_create_for(size_t n_params, const OptimConfig *config, CoreError *err)
{
	Optimizer  *opt = calloc(1, sizeof(Optimizer));

	if (opt != NULL)
	{
		opt->config = *config;
		opt->n_params = n_params;
		opt->m = calloc(2 * n_params, sizeof(float));
		opt->v = opt->m + n_params;
		opt->norm_parts = malloc((n_chunks(n_params) + 1) * sizeof(double));
	}
	if (opt == NULL || opt->m == NULL || opt->norm_parts == NULL)
	{
		optim_free(opt);
		core_error(err, CORE_ERR_NO_MEMORY,
				   "out of memory for the optimizer state of %zu parameters",
				   n_params);
		return NULL;
	}
	return opt;
}

/* Decay applies to the matrices inside the blocks only (optim.h). */
static bool
kind_decays(ModelTensorKind kind)
{
	return kind == TENSOR_WEIGHT || kind == TENSOR_OUTPUT_WEIGHT;
}

Optimizer *
optim_create(const Model *model, const OptimConfig *config,
			 CoreError *err)
{
	Optimizer  *opt = optim_create_for(model->n_params, config, err);

	if (opt == NULL)
		return NULL;
	opt->model_ranges = malloc(model->n_tensors * sizeof(OptimRange));
	if (opt->model_ranges == NULL)
	{
		optim_free(opt);
		core_error(err, CORE_ERR_NO_MEMORY,
				   "out of memory for the optimizer state of %zu parameters",
				   model->n_params);
		return NULL;
	}
	opt->n_model_ranges = model->n_tensors;
	for (int i = 0; i < model->n_tensors; i++)
	{
		opt->model_ranges[i].offset = model->tensors[i].offset;
		opt->model_ranges[i].numel = model->tensors[i].numel;
		opt->model_ranges[i].decay = kind_decays(model->tensors[i].kind);
	}
	return opt;
}

void
optim_free(Optimizer *opt)
{
	if (opt == NULL)
		return;
	free(opt->m);
	free(opt->norm_parts);
	free(opt->model_ranges);
	free(opt);
}

/* Linear warmup to lr, then decay to min_lr_ratio * lr at total_steps. */
float
optim_lr(const OptimConfig *c, int64_t step)
{
	int			decay_steps = c->total_steps - c->warmup_steps;
	double		progress;
	double		factor;

	if (step < c->warmup_steps)
		return c->lr * (float) (step + 1) / c->warmup_steps;
	if (c->decay == LR_DECAY_NONE || decay_steps <= 0)
		return c->lr;
	progress = (double) (step - c->warmup_steps) / decay_steps;
	progress = progress > 1.0 ? 1.0 : progress;
	factor = c->decay == LR_DECAY_COSINE
		? 0.5 * (1.0 + cos(M_PI * progress))
		: 1.0 - progress;
	return c->lr * (float) (c->min_lr_ratio + (1.0 - c->min_lr_ratio) * factor);
}

/* What the tasks of a step share. */
typedef struct StepJob
{
	Optimizer  *opt;
	const ParamBlock *block;
	float		lr;
	float		grad_scale;
	float		bias1;
	float		bias2;
} StepJob;

/* The parameters [begin, end) of chunk t. */
static void
chunk_bounds(const StepJob *job, int t, size_t *begin, size_t *end)
{
	*begin = (size_t) t * OPTIM_CHUNK;
	*end = *begin + OPTIM_CHUNK < job->block->n_params
		? *begin + OPTIM_CHUNK : job->block->n_params;
}

static void
norm_task(void *arg, int t)
{
	StepJob    *job = arg;
	const float *g = job->block->grads;
	size_t		begin,
				end;
	double		sumsq = 0.0;

	chunk_bounds(job, t, &begin, &end);
#pragma omp simd reduction(+:sumsq)
	for (size_t i = begin; i < end; i++)
		sumsq += (double) g[i] * g[i];
	job->opt->norm_parts[t] = sumsq;
}

static double
global_norm(StepJob *job)
{
	int			n = n_chunks(job->block->n_params);
	double		sumsq = 0.0;

	pool_run(n, norm_task, job);
	for (int t = 0; t < n; t++)
		sumsq += job->opt->norm_parts[t];
	return sqrt(sumsq);
}

/*
 * Adam on n parameters, with decoupled decay factor (1 - lr * wd).  The
 * constants are copied into locals so that the loop vectorizes (the
 * stores could otherwise change them).
 */
static void
adamw_update(float *restrict params, const float *restrict grads,
			 float *restrict m, float *restrict v, size_t n, float lr,
			 float decay_factor, float grad_scale, const OptimConfig *c,
			 float bias1, float bias2)
{
	float		beta1 = c->beta1;
	float		beta2 = c->beta2;
	float		eps = c->eps;

#pragma omp simd
	for (size_t i = 0; i < n; i++)
	{
		float		g = grads[i] * grad_scale;
		float		m_hat;
		float		v_hat;

		m[i] = beta1 * m[i] + (1.0f - beta1) * g;
		v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
		m_hat = m[i] / bias1;
		v_hat = v[i] / bias2;
		params[i] = params[i] * decay_factor - lr * m_hat / (sqrtf(v_hat) + eps);
	}
}

/* The update of chunk t: the parts of the ranges inside it. */
static void
update_task(void *arg, int t)
{
	StepJob    *job = arg;
	const ParamBlock *block = job->block;
	Optimizer  *opt = job->opt;
	const OptimConfig *c = &opt->config;
	size_t		begin,
				end;

	chunk_bounds(job, t, &begin, &end);
	for (int i = 0; i < block->n_ranges; i++)
	{
		const OptimRange *range = &block->ranges[i];
		size_t		first = range->offset > begin ? range->offset : begin;
		size_t		last = range->offset + range->numel < end
			? range->offset + range->numel : end;

		if (first >= last)
			continue;
		adamw_update(block->params + first, block->grads + first,
					 opt->m + first, opt->v + first, last - first, job->lr,
					 range->decay ? 1.0f - job->lr * c->weight_decay : 1.0f,
					 job->grad_scale, c, job->bias1, job->bias2);
	}
}

float
optim_step_block(Optimizer *opt, const ParamBlock *block)
{
	const OptimConfig *c = &opt->config;
	StepJob		job = {.opt = opt, .block = block, .lr = optim_lr(c, opt->step),
	.grad_scale = 1.0f};
	double		norm = global_norm(&job);

	if (!isfinite(norm))
		return (float) norm;
	if (c->grad_clip > 0.0f && norm > c->grad_clip)
		job.grad_scale = (float) (c->grad_clip / norm);
	opt->step++;
	job.bias1 = 1.0f - powf(c->beta1, (float) opt->step);
	job.bias2 = 1.0f - powf(c->beta2, (float) opt->step);
	pool_run(n_chunks(block->n_params), update_task, &job);
	opt->last_lr = job.lr;
	return (float) norm;
}

float
optim_step(Optimizer *opt, Model *model)
{
	ParamBlock	block = {model->params, model->grads, model->n_params,
	opt->model_ranges, opt->n_model_ranges};

	return optim_step_block(opt, &block);
}
