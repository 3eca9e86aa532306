/*
 * lora.h - LoRA adapters (Hu et al. 2021, arXiv 2106.09685) on the block
 * matrices of the student, over a frozen base.
 *
 * For a target matrix W [out, in] of a layer, the adapted product is
 *
 *     y = W x + scale * B (A x),    A [rank, in], B [out, rank],
 *                                   scale = alpha / rank
 *
 * as in Hugging Face PEFT's LoraConfig(r = rank, lora_alpha = alpha,
 * target_modules = the targets, lora_dropout = 0): A starts like PEFT's
 * (kaiming_uniform_ with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))),
 * B at zero, so the adapted model starts equal to the base.  The targets
 * are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj and down_proj of
 * every layer; q, k and v live in one fused qkv matrix (rows q, then k,
 * then v; k and v have n_kv_heads * head_dim rows) and gate and up in one
 * gate_up matrix (rows gate, then up): each adapter writes its own rows of
 * the fused product.  The model's residual dropout (ModelConfig.dropout)
 * applies to the adapted branch as a whole; there is no dropout of LoRA's
 * own.
 *
 * While adapters are attached the base is frozen: model_alloc_training()
 * allocates no gradients of the base (model->grads stays NULL), and
 * model_backward() computes only the input gradients and the adapters'
 * gradients, no product of a base weight's gradient.  The adapters'
 * parameters are one contiguous array with gradients of their own;
 * lora_param_block() describes it to the optimizer (optim.h), which
 * updates it alone:
 *
 *     lora_attach(model, &lora_config, seed, err);
 *     model_alloc_training(model, max_batch, max_seq, err);
 *     opt = optim_create_for(model->lora->n_params, &optim_config, err);
 *     per step: model_zero_grad(model);
 *               loss = model_forward(model, &batch, true);
 *               model_backward(model);
 *               optim_step_block(opt, lora_param_block(model, &block));
 *
 * Weight decay applies to every element of A and B, as PyTorch's AdamW
 * does to every parameter it is given (PEFT trains exactly those, and
 * Hugging Face's Trainer exempts only biases and norm weights).
 *
 * Prediction (model_infer.c) applies attached adapters unmerged
 * (lora_apply(): a validation pass while training); to serve, lora_merge()
 * them into the base (W += scale * B A), then pack.  lora_save() and
 * lora_load() store adapters apart from their base (below).
 *
 * Plain C, no PostgreSQL headers.
 */
#ifndef DISTILL_CORE_LORA_H
#define DISTILL_CORE_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/model.h"
#include "core/optim.h"

/* Target bits, in the order of the adapters' layout. */
#define LORA_Q		(1u << 0)
#define LORA_K		(1u << 1)
#define LORA_V		(1u << 2)
#define LORA_O		(1u << 3)
#define LORA_GATE	(1u << 4)
#define LORA_UP		(1u << 5)
#define LORA_DOWN	(1u << 6)
#define LORA_N_TARGETS 7
#define LORA_ALL_TARGETS ((1u << LORA_N_TARGETS) - 1)
#define LORA_MAX_RANK 256

typedef struct LoraConfig
{
	int			rank;			/* 1 .. LORA_MAX_RANK, <= min(in, out) of
								 * every target matrix */
	float		alpha;			/* > 0, finite; scale = alpha / rank */
	unsigned	targets;		/* LORA_Q | ...: at least one */
} LoraConfig;

/* One adapted matrix of a layer: views into the adapters' arrays. */
typedef struct LoraMatrix
{
	int			in;				/* columns of W */
	int			out;			/* rows of W */
	int			first;			/* W's first row in the fused matrix: its
								 * first column in the product */
	int			width;			/* columns of the fused product */
	float	   *A;				/* [rank, in] */
	float	   *B;				/* [out, rank] */
	float	   *dA;				/* gradients, NULL without training buffers */
	float	   *dB;
	float	   *u;				/* A x of the last training forward
								 * [rows, rank] */
} LoraMatrix;

struct LoraAdapters
{
	LoraConfig	config;
	float		scale;			/* alpha / rank */
	int			n_layers;
	size_t		n_params;
	float	   *params;			/* [n_params]: per layer, per target in bit
								 * order, A then B, row-major */
	float	   *grads;			/* [n_params], NULL until
								 * model_alloc_training() */
	LoraMatrix *matrices;		/* [n_layers * LORA_N_TARGETS]; in = 0 for a
								 * target not adapted */
	OptimRange	range;			/* all of params, with decay */
	float	   *act_block;		/* u of every matrix, then du */
	float	   *du;				/* [rows, rank] backward scratch */
};

/*
 * "q", "k", "v", "o", "gate", "up", "down" -> its bit; 0 for any other
 * name.  lora_target_name() is the inverse for one bit (NULL otherwise).
 */
extern unsigned lora_target_from_name(const char *name);
extern const char *lora_target_name(unsigned target);

/*
 * Is lora a valid configuration for a model of config (which must itself
 * be valid)?  The message says which field, and for a rank too large the
 * smallest target matrix.
 */
extern bool lora_config_validate(const LoraConfig *lora,
								 const ModelConfig *config, CoreError *err);

/* Parameters of the adapters (A and B of every target of every layer). */
extern size_t lora_n_params(const ModelConfig *config,
							const LoraConfig *lora);

/*
 * Bytes that LoRA fine-tuning of a model of config needs besides the base
 * weights themselves, with micro-batches of up to max_batch_size x
 * max_seq_len tokens: the activations model_alloc_training() allocates
 * (the adapters' included; no gradients of the base), the adapters'
 * parameters and gradients, and AdamW's two moments of them.  Linear in
 * max_batch_size, like model_training_bytes().
 */
extern size_t lora_training_bytes(const ModelConfig *config,
								  const LoraConfig *lora,
								  int max_batch_size, int max_seq_len);

/*
 * Attach new adapters to model, initialized from seed (A as PEFT, B = 0),
 * which freezes the base.  Releases the model's training buffers
 * (model_free_training()): call model_alloc_training() after it.  False
 * with the error in err when lora is not valid for the model, the model
 * already has adapters, its plain matrices were released
 * (model_pack_for_prediction_only()), or out of memory.
 */
extern bool lora_attach(Model *model, const LoraConfig *lora, uint64_t seed,
						CoreError *err);

/*
 * The same with the adapters' values: params holds lora_n_params() floats
 * in the layout of LoraAdapters.params.
 */
extern bool lora_attach_values(Model *model, const LoraConfig *lora,
							   const float *params, CoreError *err);

/*
 * Remove the adapters without merging them, and the training buffers
 * (model_free_training()); the base is as it was.  Nothing to do without
 * adapters.
 */
extern void lora_detach(Model *model);

/*
 * W += scale * B A for every adapted matrix, in the plain float weights,
 * then lora_detach().  The model must not be packed for prediction yet
 * (pack after merging).  False with err when it has no adapters or is
 * packed.
 */
extern bool lora_merge(Model *model, CoreError *err);

/*
 * The block of parameters the optimizer updates (optim_step_block()): the
 * adapters' params and grads, one range with decay.  Returns block; the
 * model must have adapters and training buffers.
 */
extern const ParamBlock *lora_param_block(Model *model, ParamBlock *block);

/*
 * Adapters as bytes (lora_io.c), all integers and floats little-endian:
 *
 *   "DLRA"                      magic
 *   u32 format_version          1
 *   u32 rank
 *   f32 alpha
 *   u32 targets                 the LORA_* bits
 *   u32 n_layers, d_model, q_dim, kv_dim, d_ff
 *                               the shape of the base they fit (q_dim =
 *                               n_heads * head_dim, kv_dim = n_kv_heads *
 *                               head_dim)
 *   u32 base_checksum           the caller's checksum of the base
 *   u64 n_params
 *   f32 params[n_params]        LoraAdapters.params
 *   u32 crc32c                  CRC-32C of every byte before it
 *
 * lora_save() returns a malloc'd blob of *len bytes (NULL when out of
 * memory or without adapters).  base_checksum identifies the base, for
 * lora_load() to compare with its own: distill passes the CRC-32C of the
 * base's stored data.
 *
 * lora_load() checks everything before it attaches: length, magic,
 * version, checksum, configuration, that the shape is base's and
 * base_checksum is expected_base_checksum (else the adapters belong to
 * another base), that every float is finite.  Then it attaches the
 * adapters as lora_attach() does, with the stored values.  False with err
 * (CORE_ERR_CORRUPT for bytes that fail their checks, CORE_ERR_INVALID_INPUT
 * for adapters of another base, as for lora_attach()), the base untouched.
 */
#define LORA_IO_MAGIC "DLRA"
#define LORA_IO_VERSION 1

extern void *lora_save(const Model *model, uint32_t base_checksum,
					   size_t *len);
extern bool lora_load(Model *base, const void *blob, size_t len,
					  uint32_t expected_base_checksum, CoreError *err);

/*
 * The hooks of model_train.c.  A site is a base matrix product of a
 * layer; its adapters add into its output y (n rows, of the product's
 * width) from its input x (n rows).
 */
typedef enum LoraSite
{
	LORA_SITE_QKV,				/* targets q, k, v */
	LORA_SITE_O,				/* o */
	LORA_SITE_GATE_UP,			/* gate, up */
	LORA_SITE_DOWN				/* down */
} LoraSite;

/* Training buffers of rows x rank floats per matrix, and the gradients. */
extern bool lora_alloc_training(LoraAdapters *lora, int rows, CoreError *err);
extern void lora_free_training(LoraAdapters *lora);
extern size_t lora_activation_floats(const ModelConfig *config,
									 const LoraConfig *lora, int rows);

/* y += scale * B (A x) for the site's targets; keeps u = A x. */
extern void lora_forward(LoraAdapters *lora, int layer, LoraSite site,
						 const float *x, float *y, int n);

/*
 * The same for prediction with the adapters unmerged (a validation pass
 * during training): u is scratch of [n, rank] floats, nothing is kept.
 */
extern void lora_apply(const LoraAdapters *lora, int layer, LoraSite site,
					   const float *x, float *y, int n, float *u);

/*
 * From dy (the site's output gradient): dA and dB accumulate (+=), and
 * so does dx (the input gradient the base product wrote).
 */
extern void lora_backward(LoraAdapters *lora, int layer, LoraSite site,
						  const float *x, const float *dy, float *dx, int n);

#endif
