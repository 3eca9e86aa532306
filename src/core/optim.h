/*
 * optim.h - AdamW with a warmup + decay learning-rate schedule and
 * global-norm gradient clipping, for the student model.
 *
 * Weight decay is decoupled (Loshchilov & Hutter; PyTorch's AdamW) and
 * applies to the matrices inside the blocks only (ModelTensorKind in
 * model.h): not to norm gains, biases, or the embedding / lm_head, which
 * the T5-style initialization keeps at N(0, 1) on purpose.
 *
 * optim_create() and optim_step() update a whole model (model->params from
 * model->grads).  optim_create_for() and optim_step_block() update any
 * other block of parameters with gradients of their own, such as LoRA
 * adapters over a frozen base (lora.h: lora_param_block()), with a decay
 * flag per range of the block.
 */
#ifndef DISTILL_CORE_OPTIM_H
#define DISTILL_CORE_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/model.h"

typedef enum LrDecay
{
	LR_DECAY_COSINE,
	LR_DECAY_LINEAR,
	LR_DECAY_NONE
} LrDecay;

typedef struct OptimConfig
{
	float		lr;				/* peak learning rate */
	int			warmup_steps;	/* linear from lr/warmup_steps up to lr */
	int			total_steps;	/* the decay reaches min_lr_ratio * lr here */
	LrDecay		decay;
	float		min_lr_ratio;
	float		beta1;
	float		beta2;
	float		eps;
	float		weight_decay;
	float		grad_clip;		/* max global L2 norm; 0 = no clipping */
} OptimConfig;

/*
 * A block of parameters to update: params and grads [n_params], and the
 * ranges of it that the optimizer updates, in order and not overlapping,
 * each with or without weight decay.  Elements outside every range stay
 * as they are.
 */
typedef struct OptimRange
{
	size_t		offset;
	size_t		numel;
	bool		decay;
} OptimRange;

typedef struct ParamBlock
{
	float	   *params;
	const float *grads;
	size_t		n_params;
	const OptimRange *ranges;
	int			n_ranges;
} ParamBlock;

typedef struct Optimizer
{
	OptimConfig config;
	size_t		n_params;
	OptimRange *model_ranges;	/* optim_create(): the model's tensors, with
								 * the decay of their kind; NULL for
								 * optim_create_for() */
	int			n_model_ranges;
	float	   *m;				/* first moment [n_params] */
	float	   *v;				/* second moment [n_params] */
	double	   *norm_parts;		/* the gradient norm's partial sums, one
								 * per chunk of optim.c */
	int64_t		step;			/* updates made */
	float		last_lr;		/* of the last update, for logging */
} Optimizer;

/*
 * Defaults: warmup over the first 5% of the steps (at most 500), cosine
 * decay to 10% of lr, betas 0.9 / 0.999, eps 1e-8, weight decay 0.01,
 * clipping at norm 1.
 */
extern void optim_config_default(OptimConfig *config, float lr,
								 int total_steps);
extern Optimizer *optim_create(const Model *model, const OptimConfig *config,
							   CoreError *err);
/* An optimizer of a block of n_params parameters (optim_step_block()). */
extern Optimizer *optim_create_for(size_t n_params, const OptimConfig *config,
								   CoreError *err);
extern void optim_free(Optimizer *opt);

/* The learning rate of update number step (0-based). */
extern float optim_lr(const OptimConfig *config, int64_t step);

/*
 * One update of model->params from model->grads: clip, decay, Adam.
 * Returns the gradient's global norm before clipping; when it is not
 * finite nothing is updated (the caller decides whether to go on).  A
 * model with LoRA adapters has no model->grads (its base is frozen): its
 * adapters are updated with optim_step_block() and lora_param_block().
 */
extern float optim_step(Optimizer *opt, Model *model);

/*
 * The same for a block of the size optim_create_for() was given: the norm
 * is that of block->grads, all n_params of them.
 */
extern float optim_step_block(Optimizer *opt, const ParamBlock *block);

#endif
