/*
 * optim.c - AdamW, learning-rate schedule, gradient clipping.
 */
#include "core/optim.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
optim_create(const Model *model, const OptimConfig *config,
			 CoreError *err)
{
	Optimizer  *opt = calloc(1, sizeof(Optimizer));

	if (opt != NULL)
	{
		opt->config = *config;
		opt->n_params = model->n_params;
		opt->m = calloc(2 * model->n_params, sizeof(float));
		opt->v = opt->m + model->n_params;
	}
	if (opt == NULL || opt->m == NULL)
	{
		free(opt);
		core_error(err, CORE_ERR_NO_MEMORY,
				   "out of memory for the optimizer state of %zu parameters",
				   model->n_params);
		return NULL;
	}
	return opt;
}

void
optim_free(Optimizer *opt)
{
	if (opt == NULL)
		return;
	free(opt->m);
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

static double
global_norm(const float *x, size_t n)
{
	double		sumsq = 0.0;

	for (size_t i = 0; i < n; i++)
		sumsq += (double) x[i] * x[i];
	return sqrt(sumsq);
}

/* Adam on n parameters, with decoupled decay factor (1 - lr * wd). */
static void
adamw_update(float *params, const float *grads, float *m, float *v, size_t n,
			 float lr, float decay_factor, float grad_scale,
			 const OptimConfig *c, float bias1, float bias2)
{
	for (size_t i = 0; i < n; i++)
	{
		float		g = grads[i] * grad_scale;
		float		m_hat;
		float		v_hat;

		m[i] = c->beta1 * m[i] + (1.0f - c->beta1) * g;
		v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * g * g;
		m_hat = m[i] / bias1;
		v_hat = v[i] / bias2;
		params[i] = params[i] * decay_factor - lr * m_hat / (sqrtf(v_hat) + c->eps);
	}
}

float
optim_step(Optimizer *opt, Model *model)
{
	const OptimConfig *c = &opt->config;
	double		norm = global_norm(model->grads, model->n_params);
	float		grad_scale = 1.0f;
	float		lr = optim_lr(c, opt->step);
	float		bias1;
	float		bias2;

	if (!isfinite(norm))
		return (float) norm;
	if (c->grad_clip > 0.0f && norm > c->grad_clip)
		grad_scale = (float) (c->grad_clip / norm);
	opt->step++;
	bias1 = 1.0f - powf(c->beta1, (float) opt->step);
	bias2 = 1.0f - powf(c->beta2, (float) opt->step);

	for (int i = 0; i < model->n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];
		bool		decays = t->kind == TENSOR_WEIGHT ||
			t->kind == TENSOR_OUTPUT_WEIGHT;

		adamw_update(model->params + t->offset, model->grads + t->offset,
					 opt->m + t->offset, opt->v + t->offset, t->numel, lr,
					 decays ? 1.0f - lr * c->weight_decay : 1.0f,
					 grad_scale, c, bias1, bias2);
	}
	opt->last_lr = lr;
	return (float) norm;
}
