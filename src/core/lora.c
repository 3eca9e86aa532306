/*
 * lora.c - LoRA adapters over a frozen base (lora.h): configuration,
 * attaching and initializing, the adapted products of training and their
 * backward, merging into the base.  Serialization is in lora_io.c.
 *
 * Every product is one cblas_sgemm over all the rows of a batch, so an
 * adapter costs 2 n rank (in + out) multiply-adds forward and twice that
 * backward, against the base product's n in out: at rank 16 on SmolLM2's
 * 576 x 1536 matrices, about 4%.
 */
#include "core/lora.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static const char *const target_names[LORA_N_TARGETS] = {
	"q", "k", "v", "o", "gate", "up", "down"
};

/* The targets of each site (LoraSite order), as bits. */
static const unsigned site_targets[] = {
	LORA_Q | LORA_K | LORA_V, LORA_O, LORA_GATE | LORA_UP, LORA_DOWN
};

unsigned
lora_target_from_name(const char *name)
{
	for (int t = 0; t < LORA_N_TARGETS; t++)
		if (strcmp(name, target_names[t]) == 0)
			return 1u << t;
	return 0;
}

const char *
lora_target_name(unsigned target)
{
	for (int t = 0; t < LORA_N_TARGETS; t++)
		if (target == 1u << t)
			return target_names[t];
	return NULL;
}

/*
 * Where target t (0-based) lives: its matrix is in x out (W [out, in]),
 * and its rows start at row `first_row` of the fused matrix of its site,
 * whose product has `width` columns.
 */
typedef struct TargetShape
{
	int			in;
	int			out;
	int			first_row;
	int			width;
} TargetShape;

static TargetShape
target_shape(const ModelConfig *c, int t)
{
	int			head_dim = model_config_head_dim(c);
	int			d = c->d_model;
	int			q_dim = c->n_heads * head_dim;
	int			kv_dim = c->n_kv_heads * head_dim;
	int			qkv_dim = q_dim + 2 * kv_dim;

	switch (1u << t)
	{
		case LORA_Q:
			return (TargetShape) {d, q_dim, 0, qkv_dim};
		case LORA_K:
			return (TargetShape) {d, kv_dim, q_dim, qkv_dim};
		case LORA_V:
			return (TargetShape) {d, kv_dim, q_dim + kv_dim, qkv_dim};
		case LORA_O:
			return (TargetShape) {q_dim, d, 0, d};
		case LORA_GATE:
			return (TargetShape) {d, c->d_ff, 0, 2 * c->d_ff};
		case LORA_UP:
			return (TargetShape) {d, c->d_ff, c->d_ff, 2 * c->d_ff};
		default:
			return (TargetShape) {c->d_ff, d, 0, d};
	}
}

/* The base matrix of target t in layer w: its first row. */
static float *
target_weight(const ModelConfig *c, const LayerWeights *w, int t)
{
	TargetShape s = target_shape(c, t);
	unsigned	bit = 1u << t;
	float	   *fused = bit & site_targets[LORA_SITE_QKV] ? w->qkv
		: bit == LORA_O ? w->o_proj
		: bit & site_targets[LORA_SITE_GATE_UP] ? w->gate_up
		: w->down_proj;

	return fused + (size_t) s.first_row * s.in;
}

bool
lora_config_validate(const LoraConfig *lora, const ModelConfig *config,
					 CoreError *err)
{
	if (lora->rank < 1 || lora->rank > LORA_MAX_RANK)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "LoRA: rank %d is outside 1..%d",
				   lora->rank, LORA_MAX_RANK);
		return false;
	}
	if (!(lora->alpha > 0.0f && isfinite(lora->alpha)))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "LoRA: alpha %g must be positive and finite", lora->alpha);
		return false;
	}
	if (lora->targets == 0 || (lora->targets & ~LORA_ALL_TARGETS) != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "LoRA: the targets (0x%x) must be a non-empty set of q, k, v, o, gate, up, down",
				   lora->targets);
		return false;
	}
	for (int t = 0; t < LORA_N_TARGETS; t++)
	{
		TargetShape s = target_shape(config, t);

		if ((lora->targets & (1u << t)) &&
			(lora->rank > s.in || lora->rank > s.out))
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "LoRA: rank %d is more than the smallest side of the %s matrix (%d x %d)",
					   lora->rank, target_names[t], s.out, s.in);
			return false;
		}
	}
	return true;
}

size_t
lora_n_params(const ModelConfig *config, const LoraConfig *lora)
{
	size_t		per_layer = 0;

	for (int t = 0; t < LORA_N_TARGETS; t++)
		if (lora->targets & (1u << t))
		{
			TargetShape s = target_shape(config, t);

			per_layer += (size_t) lora->rank * (s.in + s.out);
		}
	return per_layer * config->n_layers;
}

/* Matrices with adapters: layers x targets. */
static int
n_matrices(const ModelConfig *config, const LoraConfig *lora)
{
	int			n = 0;

	for (int t = 0; t < LORA_N_TARGETS; t++)
		n += (lora->targets >> t) & 1;
	return n * config->n_layers;
}

/* u of every matrix, then du: rows x rank each. */
size_t
lora_activation_floats(const ModelConfig *config, const LoraConfig *lora,
					   int rows)
{
	return (size_t) (n_matrices(config, lora) + 1) * rows * lora->rank;
}

size_t
lora_training_bytes(const ModelConfig *config, const LoraConfig *lora,
					int max_batch_size, int max_seq_len)
{
	size_t		adapters = lora_n_params(config, lora);

	/* params, grads, AdamW's m and v */
	return model_activation_bytes(config, max_batch_size, max_seq_len) +
		(lora_activation_floats(config, lora, max_batch_size * max_seq_len) +
		 4 * adapters) * sizeof(float);
}

/* ---------------------------------------------------------------- */
/* Life cycle */

static void
free_adapters(LoraAdapters *lora)
{
	if (lora == NULL)
		return;
	free(lora->grads);
	free(lora->act_block);
	free(lora->params);
	free(lora->matrices);
	free(lora);
}

static void
free_model_lora(Model *model)
{
	free_adapters(model->lora);
	model->lora = NULL;
	model->free_lora = NULL;
}

/* Point each matrix's A and B (or dA and dB) into base, in layout order. */
static void
bind_matrices(LoraAdapters *lora, float *base, bool grads)
{
	size_t		offset = 0;

	for (int i = 0; i < lora->n_layers * LORA_N_TARGETS; i++)
	{
		LoraMatrix *m = &lora->matrices[i];

		if (m->in == 0)
			continue;
		*(grads ? &m->dA : &m->A) = base + offset;
		offset += (size_t) lora->config.rank * m->in;
		*(grads ? &m->dB : &m->B) = base + offset;
		offset += (size_t) lora->config.rank * m->out;
	}
}

/* Adapters of configuration config for a model of c, all zero; NULL with err. */
static LoraAdapters *
new_adapters(const ModelConfig *c, const LoraConfig *config, CoreError *err)
{
	LoraAdapters *lora = calloc(1, sizeof(LoraAdapters));

	if (lora != NULL)
	{
		lora->config = *config;
		lora->scale = config->alpha / config->rank;
		lora->n_layers = c->n_layers;
		lora->n_params = lora_n_params(c, config);
		lora->params = calloc(lora->n_params, sizeof(float));
		lora->matrices = calloc((size_t) c->n_layers * LORA_N_TARGETS, sizeof(LoraMatrix));
		lora->range = (OptimRange) {0, lora->n_params, true};
	}
	if (lora == NULL || lora->params == NULL || lora->matrices == NULL)
	{
		free_adapters(lora);
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for %zu LoRA parameters",
				   lora_n_params(c, config));
		return NULL;
	}
	for (int l = 0; l < c->n_layers; l++)
		for (int t = 0; t < LORA_N_TARGETS; t++)
			if (config->targets & (1u << t))
			{
				TargetShape s = target_shape(c, t);
				LoraMatrix *m = &lora->matrices[l * LORA_N_TARGETS + t];

				m->in = s.in;
				m->out = s.out;
				m->first = s.first_row;
				m->width = s.width;
			}
	bind_matrices(lora, lora->params, false);
	return lora;
}

/* Checks before adapters go on model. */
static bool
can_attach(const Model *model, const LoraConfig *config, CoreError *err)
{
	if (model->lora != NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "LoRA: the model already has adapters");
		return false;
	}
	if (model->plain_released)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "LoRA: the model was packed for prediction only and cannot be trained");
		return false;
	}
	return lora_config_validate(config, &model->config, err);
}

/* Attach lora (which the model takes) and freeze the base. */
static void
attach_adapters(Model *model, LoraAdapters *lora)
{
	model_free_training(model);
	model->lora = lora;
	model->free_lora = free_model_lora;
}

/*
 * PEFT's reset_lora_parameters(): kaiming_uniform_(A, a = sqrt(5)), whose
 * bound gain * sqrt(3 / fan_in) with gain sqrt(2 / (1 + 5)) is
 * 1 / sqrt(fan_in); B = 0.  Uniform numbers from a SplitMix64 stream,
 * matrix after matrix in layout order.
 */
static void
init_adapters(LoraAdapters *lora, uint64_t seed)
{
	uint64_t	state = seed;

	for (int i = 0; i < lora->n_layers * LORA_N_TARGETS; i++)
	{
		LoraMatrix *m = &lora->matrices[i];
		size_t		n = (size_t) lora->config.rank * m->in;
		double		bound = m->in > 0 ? 1.0 / sqrt(m->in) : 0.0;

		for (size_t j = 0; j < n; j++)
		{
			double		u = (splitmix64_next(&state) >> 11) * 0x1.0p-53;	/* [0, 1) */

			m->A[j] = (float) (bound * (2.0 * u - 1.0));
		}
	}
}

bool
lora_attach(Model *model, const LoraConfig *config, uint64_t seed,
			CoreError *err)
{
	LoraAdapters *lora;

	if (!can_attach(model, config, err))
		return false;
	lora = new_adapters(&model->config, config, err);
	if (lora == NULL)
		return false;
	init_adapters(lora, seed);
	attach_adapters(model, lora);
	return true;
}

bool
lora_attach_values(Model *model, const LoraConfig *config,
				   const float *params, CoreError *err)
{
	LoraAdapters *lora;

	if (!can_attach(model, config, err))
		return false;
	lora = new_adapters(&model->config, config, err);
	if (lora == NULL)
		return false;
	memcpy(lora->params, params, lora->n_params * sizeof(float));
	attach_adapters(model, lora);
	return true;
}

void
lora_detach(Model *model)
{
	if (model->lora == NULL)
		return;
	model_free_training(model);
	free_model_lora(model);
}

bool
lora_merge(Model *model, CoreError *err)
{
	LoraAdapters *lora = model->lora;
	const ModelConfig *c = &model->config;

	if (lora == NULL)
	{
		core_error(err, CORE_ERR_INTERNAL, "LoRA: the model has no adapters to merge");
		return false;
	}
	if (model->packed != NULL || model->plain_released)
	{
		core_error(err, CORE_ERR_INTERNAL,
				   "LoRA: merge adapters before packing the model for prediction");
		return false;
	}
	for (int l = 0; l < c->n_layers; l++)
		for (int t = 0; t < LORA_N_TARGETS; t++)
		{
			const LoraMatrix *m = &lora->matrices[l * LORA_N_TARGETS + t];

			if (m->in == 0)
				continue;
			/* W [out, in] += scale * B [out, rank] A [rank, in] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
						m->out, m->in, lora->config.rank, lora->scale,
						m->B, lora->config.rank, m->A, m->in,
						1.0f, target_weight(c, &model->w.layers[l], t), m->in);
		}
	lora_detach(model);
	return true;
}

const ParamBlock *
lora_param_block(Model *model, ParamBlock *block)
{
	LoraAdapters *lora = model->lora;

	block->params = lora->params;
	block->grads = lora->grads;
	block->n_params = lora->n_params;
	block->ranges = &lora->range;
	block->n_ranges = 1;
	return block;
}

/* ---------------------------------------------------------------- */
/* Training */

void
lora_free_training(LoraAdapters *lora)
{
	free(lora->grads);
	lora->grads = NULL;
	free(lora->act_block);
	lora->act_block = NULL;
	lora->du = NULL;
	for (int i = 0; i < lora->n_layers * LORA_N_TARGETS; i++)
	{
		lora->matrices[i].dA = NULL;
		lora->matrices[i].dB = NULL;
		lora->matrices[i].u = NULL;
	}
}

bool
lora_alloc_training(LoraAdapters *lora, int rows, CoreError *err)
{
	size_t		per_matrix = (size_t) rows * lora->config.rank;
	size_t		n_acts = 0;

	lora_free_training(lora);
	for (int i = 0; i < lora->n_layers * LORA_N_TARGETS; i++)
		n_acts += lora->matrices[i].in > 0 ? per_matrix : 0;
	lora->grads = calloc(lora->n_params, sizeof(float));
	lora->act_block = malloc((n_acts + per_matrix) * sizeof(float));
	if (lora->grads == NULL || lora->act_block == NULL)
	{
		lora_free_training(lora);
		core_error(err, CORE_ERR_NO_MEMORY,
				   "out of memory for the gradients and activations of %zu LoRA parameters",
				   lora->n_params);
		return false;
	}
	bind_matrices(lora, lora->grads, true);
	n_acts = 0;
	for (int i = 0; i < lora->n_layers * LORA_N_TARGETS; i++)
		if (lora->matrices[i].in > 0)
		{
			lora->matrices[i].u = lora->act_block + n_acts;
			n_acts += per_matrix;
		}
	lora->du = lora->act_block + n_acts;
	return true;
}

/* u [n, r] = x [n, in] A^T;  y[:, first ..] += scale u B^T */
static void
adapt_product(const LoraAdapters *lora, const LoraMatrix *m, const float *x,
			  float *y, int n, float *u)
{
	int			r = lora->config.rank;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, m->in,
				1.0f, x, m->in, m->A, m->in, 0.0f, u, r);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m->out, r,
				lora->scale, u, r, m->B, r, 1.0f, y + m->first, m->width);
}

void
lora_forward(LoraAdapters *lora, int layer, LoraSite site, const float *x,
			 float *y, int n)
{
	for (int t = 0; t < LORA_N_TARGETS && n > 0; t++)
	{
		const LoraMatrix *m = &lora->matrices[layer * LORA_N_TARGETS + t];

		if (m->in != 0 && (site_targets[site] & (1u << t)))
			adapt_product(lora, m, x, y, n, m->u);
	}
}

void
lora_apply(const LoraAdapters *lora, int layer, LoraSite site, const float *x,
		   float *y, int n, float *u)
{
	for (int t = 0; t < LORA_N_TARGETS && n > 0; t++)
	{
		const LoraMatrix *m = &lora->matrices[layer * LORA_N_TARGETS + t];

		if (m->in != 0 && (site_targets[site] & (1u << t)))
			adapt_product(lora, m, x, y, n, u);
	}
}

/*
 * With dy the target's columns of the product's gradient and
 * du = scale dy B [n, r]:
 *   dB += scale dy^T u,  dA += du^T x,  dx += du A.
 */
void
lora_backward(LoraAdapters *lora, int layer, LoraSite site, const float *x,
			  const float *dy, float *dx, int n)
{
	int			r = lora->config.rank;
	float	   *du = lora->du;

	for (int t = 0; t < LORA_N_TARGETS && n > 0; t++)
	{
		const LoraMatrix *m = &lora->matrices[layer * LORA_N_TARGETS + t];
		const float *dyt = dy + m->first;

		if (m->in == 0 || !(site_targets[site] & (1u << t)))
			continue;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m->out, r, n,
					lora->scale, dyt, m->width, m->u, r, 1.0f, m->dB, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, m->out,
					lora->scale, dyt, m->width, m->B, r, 0.0f, du, r);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, m->in, n,
					1.0f, du, r, x, m->in, 1.0f, m->dA, m->in);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, m->in, r,
					1.0f, du, r, m->A, m->in, 1.0f, dx, m->in);
	}
}
