/*
 * model_train.c - the training forward and backward passes of the student,
 * and the cross-entropy loss.
 *
 * The forward keeps what backward needs (activations) in buffers sized
 * once by model_alloc_training(); backward walks the layers in reverse,
 * calling each op's backward (model_ops.c), and adds the gradients to
 * model->grads.  With LoRA adapters (lora.h) each adapted product adds its
 * adapters' term after the base product, and backward adds their
 * gradients to the adapters' instead: the base is frozen, so model->grads
 * is NULL, and so are the views in model->g, which the ops take as "do not
 * compute this weight gradient".
 */
#include "core/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/lora.h"
#include "core/model_ops.h"
#include "core/util.h"

/*
 * What the training forward keeps for backward, per layer.  Arrays have
 * one row per token of the batch (N = B*T rows).
 */
typedef struct LayerActivations
{
	float	   *attn_in;		/* RMSNorm(x) [N, d_model] */
	float	   *attn_rstd;		/* [N] */
	float	   *qkv;			/* after rotary [N, qkv_dim] */
	float	   *att_lse;		/* softmax log-normalizers [B, n_heads, T] */
	float	   *att_out;		/* heads concatenated [N, n_heads * head_dim] */
	float	   *mlp_in;			/* RMSNorm(x) [N, d_model] */
	float	   *mlp_rstd;		/* [N] */
	float	   *gate_up;		/* [N, 2 d_ff] */
	float	   *mlp_act;		/* silu(gate) * up [N, d_ff] */
} LayerActivations;

struct ModelActivations
{
	int			max_batch;		/* capacity */
	int			max_seq;

	/* the batch of the last forward, copied */
	int			B;
	int			T;
	bool		dropout_on;
	uint64_t	dropout_step;
	int32_t    *tokens;			/* [N] */
	int32_t    *lengths;		/* [B] */
	int32_t    *prefix_lengths; /* [B] */
	int32_t    *positions;		/* [N] */

	/* the M weighted targets, gathered: row M predicts target_ids[m] */
	int			n_targets;
	int32_t    *target_rows;	/* [M] row of the hidden state */
	int32_t    *target_ids;		/* [M] */
	int32_t    *target_index;	/* [M] index of the token in the batch */
	float	   *target_weights; /* [M] */

	/* forward */
	float	   *residual;		/* [2 n_layers + 1][N, d_model]: the stream
								 * before each sublayer, then at the end */
	LayerActivations *layers;
	float	   *branch;			/* [N, d_model] sublayer output, scratch */
	float	   *att_scratch;	/* attention_scratch_floats(), forward and
								 * backward */
	float	   *final_out;		/* [N, d_model] */
	float	   *final_rstd;		/* [N] */
	float	   *head_in;		/* [M, d_model] */
	float	   *logits;			/* [head_chunk_rows, vocab] */
	float	   *lse;			/* [M] */
	float	   *nll;			/* [M] */

	/* backward scratch, shared by the layers */
	float	   *d_residual;		/* [N, d_model] */
	float	   *d_branch;		/* [N, d_model] */
	float	   *d_norm;			/* [N, d_model] */
	float	   *d_att_out;		/* [N, n_heads * head_dim] */
	float	   *d_qkv;			/* [N, qkv_dim] */
	float	   *d_gate_up;		/* [N, 2 d_ff] */
	float	   *d_mlp_act;		/* [N, d_ff] */
	float	   *d_head_in;		/* [M, d_model] */

	float	   *float_block;	/* what the pointers above point into */
	int32_t    *int_block;
};

/* ---------------------------------------------------------------- */
/* Training buffers */

static void
free_activations(ModelActivations *acts)
{
	if (acts == NULL)
		return;
	free(acts->layers);
	free(acts->float_block);
	free(acts->int_block);
	free(acts);
}

/*
 * Release the gradients and activations (the adapters' too); the weights
 * stay.
 */
void
model_free_training(Model *model)
{
	free_activations(model->acts);
	model->acts = NULL;
	model_free_grads(model);
	if (model->lora != NULL)
		lora_free_training(model->lora);
	model->free_training = NULL;
}

/*
 * The logits of the target rows are computed this many rows at a time, so
 * that their buffer stays near 16 MB whatever the vocabulary (backward
 * computes them again rather than keeping them all).
 */
static int
head_chunk_rows(const ModelConfig *c)
{
	int			rows = (1 << 22) / c->vocab_size;

	return rows > 0 ? rows : 1;
}

static void
layout_activations(const ModelConfig *c, ModelActivations *a, Carver *f,
				   Carver *i)
{
	size_t		N = (size_t) a->max_batch * a->max_seq;
	size_t		B = a->max_batch;
	size_t		T = a->max_seq;
	size_t		d = c->d_model;
	size_t		head_dim = model_config_head_dim(c);
	size_t		q_dim = c->n_heads * head_dim;
	size_t		qkv_dim = (c->n_heads + 2 * c->n_kv_heads) * head_dim;
	size_t		ff = c->d_ff;

	a->tokens = carve(i, N);
	a->lengths = carve(i, B);
	a->prefix_lengths = carve(i, B);
	a->positions = carve(i, N);
	a->target_rows = carve(i, N);
	a->target_ids = carve(i, N);
	a->target_index = carve(i, N);

	a->target_weights = carve(f, N);
	a->residual = carve(f, (2 * c->n_layers + 1) * N * d);
	for (int l = 0; l < c->n_layers; l++)
	{
		LayerActivations counting_only;
		LayerActivations *la = a->layers ? &a->layers[l] : &counting_only;

		la->attn_in = carve(f, N * d);
		la->attn_rstd = carve(f, N);
		la->qkv = carve(f, N * qkv_dim);
		la->att_lse = carve(f, B * c->n_heads * T);
		la->att_out = carve(f, N * q_dim);
		la->mlp_in = carve(f, N * d);
		la->mlp_rstd = carve(f, N);
		la->gate_up = carve(f, N * 2 * ff);
		la->mlp_act = carve(f, N * ff);
	}
	a->branch = carve(f, N * d);
	a->att_scratch = carve(f, attention_scratch_floats(T));
	a->final_out = carve(f, N * d);
	a->final_rstd = carve(f, N);
	a->head_in = carve(f, N * d);
	a->logits = carve(f, (size_t) head_chunk_rows(c) * c->vocab_size);
	a->lse = carve(f, N);
	a->nll = carve(f, N);

	a->d_residual = carve(f, N * d);
	a->d_branch = carve(f, N * d);
	a->d_norm = carve(f, N * d);
	a->d_att_out = carve(f, N * q_dim);
	a->d_qkv = carve(f, N * qkv_dim);
	a->d_gate_up = carve(f, N * 2 * ff);
	a->d_mlp_act = carve(f, N * ff);
	a->d_head_in = carve(f, N * d);
}

/*
 * Allocate gradients and the activations of batches up to max_batch_size
 * sequences of max_seq_len tokens (replacing earlier ones).  Gradients
 * start at zero.  With adapters, theirs instead of the base's.
 */
bool
model_alloc_training(Model *model, int max_batch_size, int max_seq_len,
					 CoreError *err)
{
	ModelActivations *a;
	Carver		f = {NULL, 0, sizeof(float)};
	Carver		i = {NULL, 0, sizeof(int32_t)};

	if (max_batch_size < 1 || max_seq_len < 1 ||
		max_seq_len > model->config.max_seq_len)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "training buffers: batch size %d or sequence length %d outside 1..%d",
				   max_batch_size, max_seq_len, model->config.max_seq_len);
		return false;
	}
	free_activations(model->acts);
	model->acts = NULL;
	model->free_training = model_free_training;
	if (model->lora != NULL
		? !lora_alloc_training(model->lora, max_batch_size * max_seq_len, err)
		: !model_alloc_grads(model, err))
		return false;

	a = calloc(1, sizeof(ModelActivations));
	if (a == NULL)
		goto oom;
	model->acts = a;
	a->max_batch = max_batch_size;
	a->max_seq = max_seq_len;
	a->layers = calloc(model->config.n_layers, sizeof(LayerActivations));
	if (a->layers == NULL)
		goto oom;
	layout_activations(&model->config, a, &f, &i);
	f.base = a->float_block = malloc(f.used * sizeof(float));
	i.base = a->int_block = malloc(i.used * sizeof(int32_t));
	if (f.base == NULL || i.base == NULL)
		goto oom;
	f.used = i.used = 0;
	layout_activations(&model->config, a, &f, &i);
	return true;

oom:
	free_activations(model->acts);
	model->acts = NULL;
	core_error(err, CORE_ERR_NO_MEMORY,
			   "out of memory for training buffers (%zu MB of activations)",
			   f.used * sizeof(float) >> 20);
	return false;
}

/* Bytes of the activations of model_alloc_training(), without adapters. */
size_t
model_activation_bytes(const ModelConfig *config, int max_batch_size,
					   int max_seq_len)
{
	ModelActivations a = {.max_batch = max_batch_size, .max_seq = max_seq_len};
	Carver		f = {NULL, 0, sizeof(float)};
	Carver		i = {NULL, 0, sizeof(int32_t)};

	layout_activations(config, &a, &f, &i);
	return f.used * sizeof(float) + i.used * sizeof(int32_t);
}

/*
 * Bytes model_alloc_training() allocates for this config and batch shape
 * without adapters: gradients and activations (the optimizer adds 2 * 4 *
 * n_params).
 */
size_t
model_training_bytes(const ModelConfig *config, int max_batch_size,
					 int max_seq_len)
{
	return model_count_params(config) * sizeof(float) +
		model_activation_bytes(config, max_batch_size, max_seq_len);
}

void
model_zero_grad(Model *model)
{
	if (model->grads != NULL)
		memset(model->grads, 0, model->n_params * sizeof(float));
	if (model->lora != NULL && model->lora->grads != NULL)
		memset(model->lora->grads, 0, model->lora->n_params * sizeof(float));
}

/* ---------------------------------------------------------------- */
/* Forward */

bool
model_check_batch(const Model *model, const ModelBatch *batch,
				  CoreError *err)
{
	const ModelActivations *a = model->acts;
	int			B = batch->batch_size;
	int			T = batch->seq_len;

	if (a == NULL)
	{
		core_error(err, CORE_ERR_INTERNAL, "batch: model_alloc_training() was not called");
		return false;
	}
	if (B < 1 || B > a->max_batch || T < 1 || T > a->max_seq)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "batch: %d x %d tokens is outside the buffers' %d x %d",
				   B, T, a->max_batch, a->max_seq);
		return false;
	}
	for (int b = 0; b < B; b++)
	{
		int			len = batch->lengths[b];
		int			prefix = 0;

		if (model->config.prefix_lm && batch->prefix_lengths != NULL)
			prefix = batch->prefix_lengths[b];
		if (len < 1 || len > T || prefix < 0 || prefix > len)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "batch: sequence %d has length %d and prefix %d (row length %d)",
					   b, len, prefix, T);
			return false;
		}
		for (int t = 0; t < T; t++)
		{
			int32_t		token = batch->tokens[b * T + t];
			float		w = batch->weights[b * T + t];

			if (token < 0 || token >= model->config.vocab_size)
			{
				core_error(err, CORE_ERR_INVALID_INPUT,
						   "batch: token id %d at [%d, %d] is outside the vocabulary of %d",
						   token, b, t, model->config.vocab_size);
				return false;
			}
			if (!(w >= 0.0f && isfinite(w)) ||
				(w != 0.0f && (t == 0 || t >= len || t < prefix)))
			{
				core_error(err, CORE_ERR_INVALID_INPUT,
						   "batch: weight %g at [%d, %d] is not allowed (length %d, prefix %d)",
						   w, b, t, len, prefix);
				return false;
			}
		}
	}
	return true;
}

/* Copy the batch, and gather the targets: token t is predicted at row t-1. */
static void
record_batch(Model *model, const ModelBatch *batch, bool training)
{
	ModelActivations *a = model->acts;
	int			B = batch->batch_size;
	int			T = batch->seq_len;
	int			m = 0;

	a->B = B;
	a->T = T;
	a->dropout_on = training && model->config.dropout > 0.0f;
	if (a->dropout_on)
		a->dropout_step = model->dropout_step++;
	memcpy(a->tokens, batch->tokens, (size_t) B * T * sizeof(int32_t));
	memcpy(a->lengths, batch->lengths, B * sizeof(int32_t));
	for (int b = 0; b < B; b++)
	{
		a->prefix_lengths[b] = model->config.prefix_lm && batch->prefix_lengths
			? batch->prefix_lengths[b] : 0;
		for (int t = 0; t < T; t++)
		{
			int			row = b * T + t;

			a->positions[row] = t;
			if (batch->weights[row] == 0.0f)
				continue;
			a->target_rows[m] = row - 1;
			a->target_ids[m] = batch->tokens[row];
			a->target_index[m] = row;
			a->target_weights[m] = batch->weights[row];
			m++;
		}
	}
	a->n_targets = m;
}

/* Seed of the dropout mask of one residual branch (site 0 attention, 1 MLP). */
static uint64_t
branch_seed(const Model *model, int layer, int site)
{
	return splitmix64_mix(splitmix64_mix(model->dropout_seed + model->acts->dropout_step) +
				 (uint64_t) layer * 2 + site);
}

static AttentionShape
attention_shape(const Model *model)
{
	AttentionShape s = {model->config.n_heads, model->config.n_kv_heads,
	model->head_dim};

	return s;
}

static void
layer_forward(Model *model, int l)
{
	const ModelConfig *c = &model->config;
	ModelActivations *a = model->acts;
	LayerActivations *la = &a->layers[l];
	const LayerWeights *w = &model->w.layers[l];
	int			N = a->B * a->T;
	int			d = c->d_model;
	int			q_dim = c->n_heads * model->head_dim;
	int			qkv_dim = (c->n_heads + 2 * c->n_kv_heads) * model->head_dim;
	float	   *x = a->residual + (size_t) 2 * l * N * d;
	float	   *x_mid = x + (size_t) N * d;
	float	   *x_out = x_mid + (size_t) N * d;

	/* x_mid = x + Attention(RMSNorm(x)) */
	rmsnorm_forward(la->attn_in, la->attn_rstd, x, w->attn_norm, N, d, c->norm_eps);
	linear_forward(la->qkv, la->attn_in, w->qkv, w->qkv_bias, N, d, qkv_dim);
	if (model->lora != NULL)
		lora_forward(model->lora, l, LORA_SITE_QKV, la->attn_in, la->qkv, N);
	rope_forward(la->qkv, N, qkv_dim, c->n_heads + c->n_kv_heads,
				 model->head_dim, a->positions, model->rope_cos, model->rope_sin);
	attention_forward(la->att_out, la->att_lse, a->att_scratch, la->qkv,
					  a->lengths, a->prefix_lengths, a->B, a->T,
					  attention_shape(model));
	linear_forward(a->branch, la->att_out, w->o_proj, NULL, N, q_dim, d);
	if (model->lora != NULL)
		lora_forward(model->lora, l, LORA_SITE_O, la->att_out, a->branch, N);
	if (a->dropout_on)
		dropout_forward(a->branch, (size_t) N * d, c->dropout, branch_seed(model, l, 0));
	residual_forward(x_mid, x, a->branch, (size_t) N * d);

	/* x_out = x_mid + MLP(RMSNorm(x_mid)) */
	rmsnorm_forward(la->mlp_in, la->mlp_rstd, x_mid, w->mlp_norm, N, d, c->norm_eps);
	linear_forward(la->gate_up, la->mlp_in, w->gate_up, NULL, N, d, 2 * c->d_ff);
	if (model->lora != NULL)
		lora_forward(model->lora, l, LORA_SITE_GATE_UP, la->mlp_in, la->gate_up, N);
	swiglu_forward(la->mlp_act, la->gate_up, N, c->d_ff);
	linear_forward(a->branch, la->mlp_act, w->down_proj, NULL, N, c->d_ff, d);
	if (model->lora != NULL)
		lora_forward(model->lora, l, LORA_SITE_DOWN, la->mlp_act, a->branch, N);
	if (a->dropout_on)
		dropout_forward(a->branch, (size_t) N * d, c->dropout, branch_seed(model, l, 1));
	residual_forward(x_out, x_mid, a->branch, (size_t) N * d);
}

/*
 * Logits of the target rows only (a chunk of rows at a time), and their
 * weighted cross-entropy.
 */
static float
head_loss_forward(Model *model, float *token_nll)
{
	const ModelConfig *c = &model->config;
	ModelActivations *a = model->acts;
	int			M = a->n_targets;
	int			d = c->d_model;
	int			chunk = head_chunk_rows(c);
	double		loss = 0.0;

	for (int m = 0; m < M; m++)
		memcpy(a->head_in + (size_t) m * d,
			   a->final_out + (size_t) a->target_rows[m] * d, d * sizeof(float));
	for (int start = 0; start < M; start += chunk)
	{
		int			rows = M - start < chunk ? M - start : chunk;

		head_forward(a->logits, a->head_in + (size_t) start * d,
					 model->w.lm_head, c->logit_scale, rows, d, c->vocab_size);
		crossentropy_forward(a->nll + start, a->lse + start, a->logits,
							 a->target_ids + start, rows, c->vocab_size);
	}
	for (int m = 0; m < M; m++)
		loss += (double) a->target_weights[m] * a->nll[m];

	if (token_nll != NULL)
	{
		memset(token_nll, 0, (size_t) a->B * a->T * sizeof(float));
		for (int m = 0; m < M; m++)
			token_nll[a->target_index[m]] = a->nll[m];
	}
	return (float) loss;
}

/*
 * Run the batch; return sum(weights * -log p(token)), or NaN when the
 * batch fails model_check_batch().  training turns dropout on.  The
 * activations are kept for model_backward().
 */
float
model_forward(Model *model, const ModelBatch *batch, bool training)
{
	ModelActivations *a = model->acts;
	int			N = batch->batch_size * batch->seq_len;
	int			d = model->config.d_model;
	int			L = model->config.n_layers;

	if (!model_check_batch(model, batch, NULL))
		return NAN;
	record_batch(model, batch, training);
	embedding_forward(a->residual, a->tokens, model->w.embed, N, d);
	for (int l = 0; l < L; l++)
		layer_forward(model, l);
	rmsnorm_forward(a->final_out, a->final_rstd,
					a->residual + (size_t) 2 * L * N * d,
					model->w.final_norm, N, d, model->config.norm_eps);
	return head_loss_forward(model, batch->token_nll);
}

/* ---------------------------------------------------------------- */
/* Backward */

/* d(branch) from d(stream): the stream's gradient through dropout. */
static const float *
branch_gradient(Model *model, int l, int site)
{
	ModelActivations *a = model->acts;
	size_t		n = (size_t) a->B * a->T * model->config.d_model;

	if (!a->dropout_on)
		return a->d_residual;
	memcpy(a->d_branch, a->d_residual, n * sizeof(float));
	dropout_backward(a->d_branch, n, model->config.dropout, branch_seed(model, l, site));
	return a->d_branch;
}

/* On entry d_residual holds d(x_out); on return d(x). */
static void
layer_backward(Model *model, int l)
{
	const ModelConfig *c = &model->config;
	ModelActivations *a = model->acts;
	LayerActivations *la = &a->layers[l];
	const LayerWeights *w = &model->w.layers[l];
	LayerWeights *g = &model->g.layers[l];
	int			N = a->B * a->T;
	int			d = c->d_model;
	int			q_dim = c->n_heads * model->head_dim;
	int			qkv_dim = (c->n_heads + 2 * c->n_kv_heads) * model->head_dim;
	float	   *x = a->residual + (size_t) 2 * l * N * d;
	float	   *x_mid = x + (size_t) N * d;
	const float *d_branch;

	/* MLP branch: d_residual becomes d(x_mid) */
	d_branch = branch_gradient(model, l, 1);
	linear_backward(a->d_mlp_act, g->down_proj, NULL, d_branch, la->mlp_act,
					w->down_proj, N, c->d_ff, d);
	if (model->lora != NULL)
		lora_backward(model->lora, l, LORA_SITE_DOWN, la->mlp_act, d_branch,
					  a->d_mlp_act, N);
	swiglu_backward(a->d_gate_up, a->d_mlp_act, la->gate_up, N, c->d_ff);
	linear_backward(a->d_norm, g->gate_up, NULL, a->d_gate_up, la->mlp_in,
					w->gate_up, N, d, 2 * c->d_ff);
	if (model->lora != NULL)
		lora_backward(model->lora, l, LORA_SITE_GATE_UP, la->mlp_in,
					  a->d_gate_up, a->d_norm, N);
	rmsnorm_backward(a->d_residual, g->mlp_norm, a->d_norm, x_mid,
					 la->mlp_rstd, w->mlp_norm, N, d);

	/* attention branch: d_residual becomes d(x) */
	d_branch = branch_gradient(model, l, 0);
	linear_backward(a->d_att_out, g->o_proj, NULL, d_branch, la->att_out,
					w->o_proj, N, q_dim, d);
	if (model->lora != NULL)
		lora_backward(model->lora, l, LORA_SITE_O, la->att_out, d_branch,
					  a->d_att_out, N);
	attention_backward(a->d_qkv, a->att_scratch, a->d_att_out, la->qkv,
					   la->att_lse, a->lengths, a->prefix_lengths, a->B, a->T,
					   attention_shape(model));
	rope_backward(a->d_qkv, N, qkv_dim, c->n_heads + c->n_kv_heads,
				  model->head_dim, a->positions, model->rope_cos, model->rope_sin);
	linear_backward(a->d_norm, g->qkv, g->qkv_bias, a->d_qkv, la->attn_in,
					w->qkv, N, d, qkv_dim);
	if (model->lora != NULL)
		lora_backward(model->lora, l, LORA_SITE_QKV, la->attn_in, a->d_qkv,
					  a->d_norm, N);
	rmsnorm_backward(a->d_residual, g->attn_norm, a->d_norm, x,
					 la->attn_rstd, w->attn_norm, N, d);
}

/* d(head_in) and the head's weight gradient, recomputing the logits. */
static void
head_loss_backward(Model *model)
{
	const ModelConfig *c = &model->config;
	ModelActivations *a = model->acts;
	int			M = a->n_targets;
	int			d = c->d_model;
	int			chunk = head_chunk_rows(c);

	for (int start = 0; start < M; start += chunk)
	{
		int			rows = M - start < chunk ? M - start : chunk;
		const float *h = a->head_in + (size_t) start * d;

		head_forward(a->logits, h, model->w.lm_head, c->logit_scale, rows, d,
					 c->vocab_size);
		crossentropy_backward(a->logits, a->logits, a->lse + start,
							  a->target_ids + start, a->target_weights + start,
							  rows, c->vocab_size);
		head_backward(a->d_head_in + (size_t) start * d, model->g.lm_head,
					  a->logits, h, model->w.lm_head, c->logit_scale, rows, d,
					  c->vocab_size);
	}
}

/*
 * Add the gradient of the last forward's loss to model->grads, or to the
 * adapters' gradients when the base is frozen (its views in model->g are
 * NULL: the ops skip them).
 */
void
model_backward(Model *model)
{
	const ModelConfig *c = &model->config;
	ModelActivations *a = model->acts;
	int			N = a->B * a->T;
	int			M = a->n_targets;
	int			d = c->d_model;
	int			L = c->n_layers;

	/* head and loss: d(final_out) at the target rows, 0 elsewhere */
	head_loss_backward(model);
	memset(a->d_norm, 0, (size_t) N * d * sizeof(float));
	for (int m = 0; m < M; m++)
		memcpy(a->d_norm + (size_t) a->target_rows[m] * d,
			   a->d_head_in + (size_t) m * d, d * sizeof(float));

	memset(a->d_residual, 0, (size_t) N * d * sizeof(float));
	rmsnorm_backward(a->d_residual, model->g.final_norm, a->d_norm,
					 a->residual + (size_t) 2 * L * N * d, a->final_rstd,
					 model->w.final_norm, N, d);
	for (int l = L - 1; l >= 0; l--)
		layer_backward(model, l);
	if (model->g.embed != NULL)
		embedding_backward(model->g.embed, a->d_residual, a->tokens, N, d);
}
