/*
 * model.c - the student transformer: configuration, the parameters and
 * their tensor table, initialization.
 *
 * Training forward and backward are in model_train.c, the operations they
 * chain in model_ops.c, prediction with a KV cache in model_infer.c,
 * serialization in model_io.c.
 */
#include "core/model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model_ops.h"
#include "core/pool.h"
#include "core/util.h"

/* OpenBLAS's own, not in cblas.h: joins its pool's threads. */
extern int	blas_thread_shutdown_(void);

void
model_set_threads(int n_threads)
{
	n_threads = n_threads < 1 ? 1 : n_threads;
	/* asking again would start the pool if model_single_thread() stopped it */
	if (n_threads != openblas_get_num_threads())
		openblas_set_num_threads(n_threads);
	pool_set_threads(n_threads);
}

void
model_single_thread(void)
{
	openblas_set_num_threads(1);
	blas_thread_shutdown_();
	pool_set_threads(1);		/* which stops its workers */
}

/* ---------------------------------------------------------------- */
/* Configuration */

/*
 * Defaults for a model trained from scratch: SwiGLU hidden size 8/3
 * d_model rounded up to a multiple of 32 (Llama's rule, which keeps the
 * MLP's parameter count that of a 4x GELU MLP), tied embeddings with T5's
 * d_model^-0.5 logit scale, prefix-LM mask, no dropout.
 */
void
model_config_default(ModelConfig *config, int vocab_size, int d_model,
					 int n_layers, int n_heads)
{
	memset(config, 0, sizeof(*config));
	config->vocab_size = vocab_size;
	config->d_model = d_model;
	config->n_layers = n_layers;
	config->n_heads = n_heads;
	config->n_kv_heads = n_heads;
	config->d_ff = (8 * d_model / 3 + 31) / 32 * 32;
	config->max_seq_len = 256;
	config->tied_embeddings = true;
	config->prefix_lm = true;
	config->qkv_bias = false;
	config->dropout = 0.0f;
	config->rope_theta = 10000.0f;
	config->norm_eps = 1e-6f;
	config->logit_scale = 1.0f / sqrtf((float) d_model);
}

static bool
int_in_range(const char *name, int value, int min, int max,
			 CoreError *err)
{
	if (value >= min && value <= max)
		return true;
	core_error(err, CORE_ERR_INVALID_INPUT, "model config: %s = %d is outside %d..%d",
			   name, value, min, max);
	return false;
}

int
model_config_head_dim(const ModelConfig *config)
{
	if (config->head_dim != 0)
		return config->head_dim;
	return config->n_heads > 0 ? config->d_model / config->n_heads : 0;
}

static bool
check_heads(const ModelConfig *c, CoreError *err)
{
	if (c->head_dim == 0 && c->d_model % c->n_heads != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "model config: d_model (%d) must be n_heads (%d) times the head size when head_dim is not given",
				   c->d_model, c->n_heads);
		return false;
	}
	if (!int_in_range("head_dim", model_config_head_dim(c), 2, MODEL_MAX_HEAD_DIM, err))
		return false;
	if (model_config_head_dim(c) % 2 != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "model config: the head size (%d) must be even, for rotary positions",
				   model_config_head_dim(c));
		return false;
	}
	if (c->n_heads % c->n_kv_heads != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "model config: n_heads (%d) must be a multiple of n_kv_heads (%d)",
				   c->n_heads, c->n_kv_heads);
		return false;
	}
	return true;
}

/*
 * Hugging Face's checks of a "llama3" rope_scaling, and none of the fields
 * set without it, so that each config has one spelling.
 */
static bool
check_rope_scaling(const ModelRopeScaling *r, CoreError *err)
{
	bool		ok;

	if (r->kind == ROPE_SCALING_NONE)
		ok = r->factor == 0.0f && r->low_freq_factor == 0.0f &&
			r->high_freq_factor == 0.0f && r->original_max_position == 0;
	else if (r->kind == ROPE_SCALING_LLAMA3)
		ok = r->factor >= 1.0f && isfinite(r->factor) &&
			r->low_freq_factor > 0.0f &&
			r->high_freq_factor > r->low_freq_factor &&
			isfinite(r->high_freq_factor) &&
			r->original_max_position >= 1;
	else
		ok = false;
	if (!ok)
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "model config: rope scaling (kind %d, factor %g, low_freq_factor %g, high_freq_factor %g, original_max_position %d) is not valid",
				   (int) r->kind, r->factor, r->low_freq_factor,
				   r->high_freq_factor, r->original_max_position);
	return ok;
}

bool
model_config_validate(const ModelConfig *c, CoreError *err)
{
	if (!int_in_range("vocab_size", c->vocab_size, 2, MODEL_MAX_VOCAB, err) ||
		!int_in_range("d_model", c->d_model, 2, MODEL_MAX_D_MODEL, err) ||
		!int_in_range("n_layers", c->n_layers, 1, MODEL_MAX_LAYERS, err) ||
		!int_in_range("n_heads", c->n_heads, 1, c->d_model, err) ||
		!int_in_range("n_kv_heads", c->n_kv_heads, 1, c->n_heads, err) ||
		!int_in_range("head_dim", c->head_dim, 0, MODEL_MAX_HEAD_DIM, err) ||
		!int_in_range("d_ff", c->d_ff, 1, MODEL_MAX_D_FF, err) ||
		!int_in_range("max_seq_len", c->max_seq_len, 2, MODEL_MAX_SEQ_LEN, err))
		return false;
	if (!check_heads(c, err) || !check_rope_scaling(&c->rope_scaling, err))
		return false;
	if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "model config: dropout = %g is outside [0, 1)",
					c->dropout);
		return false;
	}
	if (!(c->rope_theta > 0.0f && isfinite(c->rope_theta)) ||
		!(c->norm_eps > 0.0f && c->norm_eps < 1.0f) ||
		!(c->logit_scale > 0.0f && isfinite(c->logit_scale)))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "model config: rope_theta, norm_eps and logit_scale must be positive and finite (norm_eps < 1)");
		return false;
	}
	if (model_count_params(c) > MODEL_MAX_PARAMS)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "model config: %zu parameters is more than the %zu supported",
				   model_count_params(c), MODEL_MAX_PARAMS);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------- */
/* Tensor table */

static void
add_tensor(ModelTensor *tensors, int *n, size_t *offset, ModelTensorKind kind,
		   int rows, int cols, const char *fmt, int layer)
{
	size_t		numel = (size_t) rows * (cols > 0 ? cols : 1);

	if (tensors != NULL)
	{
		ModelTensor *t = &tensors[*n];

		snprintf(t->name, sizeof(t->name), fmt, layer);
		t->ndim = cols > 0 ? 2 : 1;
		t->shape[0] = rows;
		t->shape[1] = cols > 0 ? cols : 0;
		t->offset = *offset;
		t->numel = numel;
		t->kind = kind;
	}
	(*n)++;
	*offset += numel;
}

/*
 * Lay out the parameters: fill tensors (when not NULL), return their count
 * and the total number of floats in *n_params.  bind_weights() walks the
 * same order.
 */
static int
build_tensor_table(const ModelConfig *c, ModelTensor *tensors,
				   size_t *n_params)
{
	int			d = c->d_model;
	int			hd = model_config_head_dim(c);
	int			q_dim = c->n_heads * hd;
	int			kv_dim = c->n_kv_heads * hd;
	int			n = 0;
	size_t		offset = 0;

	add_tensor(tensors, &n, &offset, TENSOR_EMBEDDING, c->vocab_size, d,
			   "model.embed_tokens.weight", 0);
	for (int l = 0; l < c->n_layers; l++)
	{
		add_tensor(tensors, &n, &offset, TENSOR_NORM, d, 0,
				   "model.layers.%d.input_layernorm.weight", l);
		add_tensor(tensors, &n, &offset, TENSOR_WEIGHT, q_dim, d,
				   "model.layers.%d.self_attn.q_proj.weight", l);
		add_tensor(tensors, &n, &offset, TENSOR_WEIGHT, kv_dim, d,
				   "model.layers.%d.self_attn.k_proj.weight", l);
		add_tensor(tensors, &n, &offset, TENSOR_WEIGHT, kv_dim, d,
				   "model.layers.%d.self_attn.v_proj.weight", l);
		if (c->qkv_bias)
		{
			add_tensor(tensors, &n, &offset, TENSOR_BIAS, q_dim, 0,
					   "model.layers.%d.self_attn.q_proj.bias", l);
			add_tensor(tensors, &n, &offset, TENSOR_BIAS, kv_dim, 0,
					   "model.layers.%d.self_attn.k_proj.bias", l);
			add_tensor(tensors, &n, &offset, TENSOR_BIAS, kv_dim, 0,
					   "model.layers.%d.self_attn.v_proj.bias", l);
		}
		add_tensor(tensors, &n, &offset, TENSOR_OUTPUT_WEIGHT, d, q_dim,
				   "model.layers.%d.self_attn.o_proj.weight", l);
		add_tensor(tensors, &n, &offset, TENSOR_NORM, d, 0,
				   "model.layers.%d.post_attention_layernorm.weight", l);
		add_tensor(tensors, &n, &offset, TENSOR_WEIGHT, c->d_ff, d,
				   "model.layers.%d.mlp.gate_proj.weight", l);
		add_tensor(tensors, &n, &offset, TENSOR_WEIGHT, c->d_ff, d,
				   "model.layers.%d.mlp.up_proj.weight", l);
		add_tensor(tensors, &n, &offset, TENSOR_OUTPUT_WEIGHT, d, c->d_ff,
				   "model.layers.%d.mlp.down_proj.weight", l);
	}
	add_tensor(tensors, &n, &offset, TENSOR_NORM, d, 0, "model.norm.weight", 0);
	if (!c->tied_embeddings)
		add_tensor(tensors, &n, &offset, TENSOR_EMBEDDING, c->vocab_size, d,
				   "lm_head.weight", 0);
	*n_params = offset;
	return n;
}

size_t
model_count_params(const ModelConfig *config)
{
	size_t		n_params;

	build_tensor_table(config, NULL, &n_params);
	return n_params;
}

int
model_tensor_table(const ModelConfig *config, ModelTensor *tensors,
				   size_t *n_params)
{
	return build_tensor_table(config, tensors, n_params);
}

/* Point views at base (params or grads), in build_tensor_table()'s order. */
static void
bind_weights(const Model *model, ModelWeights *views, float *base)
{
	const ModelTensor *t = model->tensors;

	views->embed = base + (t++)->offset;
	for (int l = 0; l < model->config.n_layers; l++)
	{
		LayerWeights *lw = &views->layers[l];

		lw->attn_norm = base + (t++)->offset;
		lw->qkv = base + t->offset;
		t += 3;
		lw->qkv_bias = NULL;
		if (model->config.qkv_bias)
		{
			lw->qkv_bias = base + t->offset;
			t += 3;
		}
		lw->o_proj = base + (t++)->offset;
		lw->mlp_norm = base + (t++)->offset;
		lw->gate_up = base + t->offset;
		t += 2;
		lw->down_proj = base + (t++)->offset;
	}
	views->final_norm = base + (t++)->offset;
	views->lm_head = model->config.tied_embeddings ? views->embed
		: base + (t++)->offset;
}

const ModelTensor *
model_find_tensor(const Model *model, const char *name)
{
	for (int i = 0; i < model->n_tensors; i++)
		if (strcmp(model->tensors[i].name, name) == 0)
			return &model->tensors[i];
	return NULL;
}

/* ---------------------------------------------------------------- */
/* Life cycle */

/*
 * Inverse frequency of rotary pair i: theta^(-2i / head_dim), rescaled by
 * a "llama3" rope_scaling as Hugging Face's _compute_llama3_parameters
 * does (in double here, where it uses float32).
 */
static double
rope_inv_freq(const ModelConfig *c, int head_dim, int i)
{
	const ModelRopeScaling *r = &c->rope_scaling;
	double		inv_freq = pow(c->rope_theta, -2.0 * i / head_dim);
	double		wavelen,
				low_freq_wavelen,
				high_freq_wavelen,
				smooth;

	if (r->kind != ROPE_SCALING_LLAMA3)
		return inv_freq;
	wavelen = 2.0 * M_PI / inv_freq;
	low_freq_wavelen = (double) r->original_max_position / r->low_freq_factor;
	high_freq_wavelen = (double) r->original_max_position / r->high_freq_factor;
	if (wavelen < high_freq_wavelen)
		return inv_freq;
	if (wavelen > low_freq_wavelen)
		return inv_freq / r->factor;
	smooth = ((double) r->original_max_position / wavelen - r->low_freq_factor) /
		((double) r->high_freq_factor - r->low_freq_factor);
	return (1.0 - smooth) * inv_freq / r->factor + smooth * inv_freq;
}

/*
 * In double: with rope_theta 1e6 and thousands of positions, angles
 * computed in float drift by more than the weights can tell apart.
 */
static void
compute_rope_tables(Model *model)
{
	int			half = model->head_dim / 2;

	for (int i = 0; i < half; i++)
	{
		double		inv_freq = rope_inv_freq(&model->config, model->head_dim, i);

		for (int pos = 0; pos < model->config.max_seq_len; pos++)
		{
			model->rope_cos[(size_t) pos * half + i] = (float) cos(pos * inv_freq);
			model->rope_sin[(size_t) pos * half + i] = (float) sin(pos * inv_freq);
		}
	}
}

Model *
model_create(const ModelConfig *config, CoreError *err)
{
	Model	   *model;
	size_t		rope_size;

	if (!model_config_validate(config, err))
		return NULL;
	model = calloc(1, sizeof(Model));
	if (model == NULL)
		goto oom;
	model->config = *config;
	model->head_dim = model_config_head_dim(config);
	model->config.head_dim = model->head_dim;
	model->n_tensors = build_tensor_table(config, NULL, &model->n_params);
	model->tensors = calloc(model->n_tensors, sizeof(ModelTensor));
	model->params = calloc(model->n_params, sizeof(float));
	model->w.layers = calloc(config->n_layers, sizeof(LayerWeights));
	model->g.layers = calloc(config->n_layers, sizeof(LayerWeights));
	rope_size = (size_t) config->max_seq_len * (model->head_dim / 2);
	model->rope_cos = malloc(2 * rope_size * sizeof(float));
	if (!model->tensors || !model->params || !model->w.layers ||
		!model->g.layers || !model->rope_cos)
		goto oom;
	model->rope_sin = model->rope_cos + rope_size;
	build_tensor_table(config, model->tensors, &model->n_params);
	bind_weights(model, &model->w, model->params);
	compute_rope_tables(model);
	return model;

oom:
	model_free(model);
	core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a model of %zu parameters",
			   model_count_params(config));
	return NULL;
}

void
model_free(Model *model)
{
	if (model == NULL)
		return;
	if (model->free_training != NULL)
		model->free_training(model);
	if (model->free_packed != NULL)
		model->free_packed(model);
	if (model->free_lora != NULL)
		model->free_lora(model);
	free(model->grads);
	free(model->tensors);
	free(model->params);
	free(model->w.layers);
	free(model->g.layers);
	if (model->image == NULL)	/* else a view into the image */
		free(model->rope_cos);
	if (model->free_image != NULL)
		model->free_image(model);
	free(model);
}

/* Gradients, laid out like the parameters, starting at zero. */
bool
model_alloc_grads(Model *model, CoreError *err)
{
	if (model->grads != NULL)
		return true;
	model->grads = calloc(model->n_params, sizeof(float));
	if (model->grads == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the gradients of %zu parameters",
				   model->n_params);
		return false;
	}
	bind_weights(model, &model->g, model->grads);
	return true;
}

/*
 * Release the gradients; the views in model->g become NULL, which
 * backward takes as a frozen weight (lora.h).
 */
void
model_free_grads(Model *model)
{
	LayerWeights *layers = model->g.layers;

	free(model->grads);
	model->grads = NULL;
	memset(layers, 0, model->config.n_layers * sizeof(LayerWeights));
	memset(&model->g, 0, sizeof(ModelWeights));
	model->g.layers = layers;
}

/* Next N(0, 1) sample of a SplitMix64 stream (Box-Muller, one of the two). */
static double
next_normal(uint64_t *state)
{
	double		u1,
				u2;

	u1 = ((splitmix64_next(state) >> 11) + 1) * 0x1.0p-53;	/* (0, 1] */
	u2 = (splitmix64_next(state) >> 11) * 0x1.0p-53;
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/*
 * T5-style initialization: a reference experiment showed that GPT-2's
 * N(0, 0.02) embeddings with an unscaled tied head leave a small model
 * stuck at the class prior, while N(0, 1) embeddings with logits scaled by
 * d_model^-0.5 learn.  Matrices get N(0, 1/fan_in), which keeps the
 * variance of activations; projections into the residual stream are
 * further scaled by 1/sqrt(2 n_layers) so that the stream's variance stays
 * near 1 whatever the depth.  An untied lm_head is initialized like the
 * embedding and shares its logit scale, so both layouts start alike.
 */
void
model_init_weights(Model *model, uint64_t seed)
{
	uint64_t	state = seed;

	for (int i = 0; i < model->n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];
		float	   *p = model->params + t->offset;
		double		std = 0.0;

		switch (t->kind)
		{
			case TENSOR_EMBEDDING:
				std = 1.0;
				break;
			case TENSOR_WEIGHT:
				std = 1.0 / sqrt(t->shape[1]);
				break;
			case TENSOR_OUTPUT_WEIGHT:
				std = 1.0 / sqrt(t->shape[1] * 2.0 * model->config.n_layers);
				break;
			case TENSOR_NORM:
			case TENSOR_BIAS:
				break;
		}
		for (size_t j = 0; j < t->numel; j++)
			p[j] = t->kind == TENSOR_NORM ? 1.0f
				: t->kind == TENSOR_BIAS ? 0.0f
				: (float) (std * next_normal(&state));
	}
	model_seed_dropout(model, seed);
}

void
model_seed_dropout(Model *model, uint64_t seed)
{
	model->dropout_seed = splitmix64_mix(seed ^ 0xD15711D15711ull);
	model->dropout_step = 0;
}
