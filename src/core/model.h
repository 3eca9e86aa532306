/*
 * model.h - the student: a small decoder-only transformer, Llama style.
 *
 *   x = embed_tokens[tokens]
 *   for each layer:
 *       x += Attention(RMSNorm(x))        rotary positions on q and k
 *       x += SwiGLU_MLP(RMSNorm(x))
 *   logits = logit_scale * RMSNorm(x) @ lm_head^T
 *
 * with an optional prefix-LM mask: the prefix of each sequence ("predict:
 * <input>") attends to itself bidirectionally; the target after it attends
 * to the whole prefix and causally to itself.
 *
 * Parameters live in one contiguous float array described by a tensor
 * table.  Tensor names and layouts are those of Hugging Face Llama / Qwen2
 * checkpoints (weights row-major [out_features, in_features], like
 * torch.nn.Linear; rotary embedding in the "rotate half" layout: dimension
 * i of a head pairs with dimension i + head_dim/2), so a pretrained
 * checkpoint of that family maps onto the table tensor by tensor.  Within a
 * layer, q_proj, k_proj and v_proj are adjacent in memory, and so are
 * gate_proj and up_proj, so each group is also one stacked matrix and runs
 * as one matrix product.
 *
 * Training:
 *
 *     model = model_create(&config, err);
 *     model_init_weights(model, seed);
 *     model_alloc_training(model, max_batch, max_seq, err);
 *     per step: model_zero_grad(model);
 *               loss = model_forward(model, &batch, true);
 *               model_backward(model);
 *               optim_step(optim, model);         (see optim.h)
 *
 * Prediction needs no training buffers: model_score_candidates() and
 * model_generate_greedy() (model_infer.c) allocate what they use per call.
 *
 * Plain C, no PostgreSQL headers.  Memory is malloc'd in a few big blocks
 * and released by model_free().  Nothing is global except the thread
 * counts (model_set_threads()).  With one thread, the same seed and data
 * give bit-identical weights.
 */
#ifndef DISTILL_CORE_MODEL_H
#define DISTILL_CORE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/stop.h"

/* Limits checked by model_config_validate(). */
#define MODEL_MAX_VOCAB		(1 << 20)
#define MODEL_MAX_D_MODEL	(1 << 14)
#define MODEL_MAX_LAYERS	256
#define MODEL_MAX_D_FF		(1 << 16)
#define MODEL_MAX_SEQ_LEN	(1 << 14)
#define MODEL_MAX_HEAD_DIM	1024
#define MODEL_MAX_PARAMS	((size_t) 1 << 31)
#define MODEL_TENSOR_NAME_LEN 64

/*
 * How the rotary frequencies are rescaled for long contexts.  Llama 3.1's
 * "llama3" rope_type divides the low frequencies (wavelengths above
 * original_max_position / low_freq_factor) by factor, keeps the high ones
 * (wavelengths below original_max_position / high_freq_factor), and
 * interpolates smoothly in between, as Hugging Face's
 * _compute_llama3_parameters does.  With ROPE_SCALING_NONE the other
 * fields are 0.
 */
typedef enum ModelRopeScalingKind
{
	ROPE_SCALING_NONE = 0,
	ROPE_SCALING_LLAMA3 = 1
} ModelRopeScalingKind;

typedef struct ModelRopeScaling
{
	ModelRopeScalingKind kind;
	float		factor;
	float		low_freq_factor;
	float		high_freq_factor;
	int			original_max_position;	/* original_max_position_embeddings */
} ModelRopeScaling;

typedef struct ModelConfig
{
	int			vocab_size;
	int			d_model;
	int			n_layers;
	int			n_heads;		/* query heads */
	int			head_dim;		/* size of each head; 0 = d_model / n_heads
								 * (and model_create() writes the size it
								 * resolved); n_heads * head_dim need not be
								 * d_model */
	int			n_kv_heads;		/* key/value heads (grouped-query attention,
								 * as in SmolLM and Qwen2); = n_heads for
								 * plain multi-head attention */
	int			d_ff;			/* SwiGLU hidden size */
	int			max_seq_len;	/* prefix + target tokens */
	bool		tied_embeddings;	/* lm_head is embed_tokens */
	bool		prefix_lm;		/* prefix-LM mask, else plain causal */
	bool		qkv_bias;		/* biases on q/k/v projections (Qwen2) */
	float		dropout;		/* on each residual branch while training */
	float		rope_theta;		/* rotary base: 10000 (Llama 2), 500000
								 * (Llama 3), 1000000 (Qwen2) */
	ModelRopeScaling rope_scaling;
	float		norm_eps;		/* RMSNorm epsilon */
	float		logit_scale;	/* logits = logit_scale * h . lm_head:
								 * d_model^-0.5 from scratch (T5 style),
								 * 1.0 for Llama/Qwen checkpoints */
} ModelConfig;

/*
 * How a tensor is initialized and whether weight decay applies to it.
 * Decay applies to the matrices inside the blocks only: not to the
 * embedding (nor an untied head, initialized and scaled like it), norm
 * gains or biases, which decay would pull toward values that are wrong for
 * them (a gain toward 0 instead of 1, an embedding toward collapse).
 */
typedef enum ModelTensorKind
{
	TENSOR_EMBEDDING,			/* N(0, 1), no decay */
	TENSOR_NORM,				/* 1, no decay */
	TENSOR_BIAS,				/* 0, no decay */
	TENSOR_WEIGHT,				/* N(0, 1/fan_in), decay */
	TENSOR_OUTPUT_WEIGHT		/* N(0, 1/fan_in / (2 n_layers)), decay: a
								 * projection that writes into the residual
								 * stream (o_proj, down_proj) */
} ModelTensorKind;

typedef struct ModelTensor
{
	char		name[MODEL_TENSOR_NAME_LEN];	/* Hugging Face name */
	int			ndim;			/* 1 or 2 */
	int			shape[2];		/* [out, in] for a matrix, [n] for a vector */
	size_t		offset;			/* in floats, into params and grads */
	size_t		numel;
	ModelTensorKind kind;
} ModelTensor;

/*
 * Views into the parameter (or gradient) array, one per tensor group.
 * qkv is q_proj, k_proj, v_proj stacked: [(n_heads + 2 n_kv_heads) *
 * head_dim, d_model]; gate_up is gate_proj, up_proj stacked: [2 d_ff,
 * d_model].
 */
typedef struct LayerWeights
{
	float	   *attn_norm;		/* input_layernorm [d_model] */
	float	   *qkv;
	float	   *qkv_bias;		/* NULL without qkv_bias */
	float	   *o_proj;			/* [d_model, n_heads * head_dim] */
	float	   *mlp_norm;		/* post_attention_layernorm [d_model] */
	float	   *gate_up;
	float	   *down_proj;		/* [d_model, d_ff] */
} LayerWeights;

typedef struct ModelWeights
{
	float	   *embed;			/* [vocab_size, d_model] */
	LayerWeights *layers;		/* [n_layers] */
	float	   *final_norm;		/* [d_model] */
	float	   *lm_head;		/* [vocab_size, d_model]; == embed if tied */
} ModelWeights;

typedef struct ModelActivations ModelActivations;	/* model.c */
typedef struct PackedWeights PackedWeights; /* model_infer.c */
typedef struct LoraAdapters LoraAdapters;	/* lora.h */

typedef struct Model
{
	ModelConfig config;
	int			head_dim;
	int			n_tensors;
	ModelTensor *tensors;
	size_t		n_params;
	float	   *params;			/* [n_params] */
	float	   *grads;			/* [n_params], NULL until
								 * model_alloc_training() */
	ModelWeights w;				/* views into params */
	ModelWeights g;				/* views into grads, while there are any */
	float	   *rope_cos;		/* [max_seq_len, head_dim / 2], computed in
								 * double */
	float	   *rope_sin;
	uint64_t	dropout_seed;
	uint64_t	dropout_step;	/* training forwards so far */
	ModelActivations *acts;		/* NULL until model_alloc_training() */
	PackedWeights *packed;		/* NULL until model_pack_for_prediction() */
	bool		plain_released;	/* by model_pack_for_prediction_only(): the
								 * plain layer matrices read as zeros */
	LoraAdapters *lora;			/* NULL unless adapters are attached
								 * (lora.h), which freezes the base: no
								 * grads, no weight gradients in backward */

	/*
	 * A model made of a prediction image (model_image.h): its weights,
	 * rope tables and packed matrices are views into the image_bytes bytes
	 * at image, params is NULL and plain_released true.  NULL otherwise.
	 */
	const void *image;
	size_t		image_bytes;

	/*
	 * How model_free() releases acts, packed, lora and image: set by the
	 * files that allocate them (model_train.c, model_infer.c, lora.c,
	 * model_image.c), which alone know their layout.  NULL while there is
	 * nothing to release.
	 */
	void		(*free_training) (struct Model *model);
	void		(*free_packed) (struct Model *model);
	void		(*free_lora) (struct Model *model);
	void		(*free_image) (struct Model *model);	/* after the rest */
} Model;

/*
 * A batch of B right-padded sequences of row stride T.
 *
 * weights[b*T + t] weighs the log-probability of tokens[b*T + t] given the
 * tokens before it (predicted at position t - 1).  It must be 0 at t = 0,
 * at padding (t >= lengths[b]) and, with the prefix-LM mask, inside the
 * prefix (t < prefix_lengths[b]), where the model sees the token it would
 * predict.  The loss is sum(weights * -log p), so the trainer picks the
 * averaging: for L_label + lambda L_rationale give each label token
 * 1 / (label tokens in the batch) and each rationale token lambda /
 * (rationale tokens in the batch).
 */
typedef struct ModelBatch
{
	int			batch_size;		/* B */
	int			seq_len;		/* T */
	const int32_t *tokens;		/* [B*T]; padding may hold any valid id */
	const int32_t *lengths;		/* [B], 1..T */
	const int32_t *prefix_lengths;	/* [B], 0..lengths[b]; NULL = all 0;
									 * ignored without prefix_lm */
	const float *weights;		/* [B*T], finite, >= 0 */
	float	   *token_nll;		/* optional output [B*T]: -log p of each
								 * weighted token, 0 elsewhere (for
								 * per-task loss figures) */
} ModelBatch;

/* Configuration */
extern void model_config_default(ModelConfig *config, int vocab_size,
								 int d_model, int n_layers, int n_heads);
extern bool model_config_validate(const ModelConfig *config,
								  CoreError *err);
extern size_t model_count_params(const ModelConfig *config);
/* The head size config gives: head_dim, or d_model / n_heads when 0. */
extern int	model_config_head_dim(const ModelConfig *config);

/*
 * The tensor table config implies: its number of tensors, and the tensors
 * in tensors when it is not NULL (room for that number); *n_params gets
 * the number of parameters.
 */
extern int	model_tensor_table(const ModelConfig *config, ModelTensor *tensors,
							   size_t *n_params);

/* Life cycle; the creators return NULL with the error in err. */
extern Model *model_create(const ModelConfig *config,
						   CoreError *err);
extern void model_init_weights(Model *model, uint64_t seed);
extern void model_seed_dropout(Model *model, uint64_t seed);
extern void model_free(Model *model);
extern const ModelTensor *model_find_tensor(const Model *model,
											const char *name);
/*
 * Gradients, laid out like params (model_alloc_training() calls it), and
 * their release (model_free_training() calls it), which leaves the views
 * of model->g NULL.
 */
extern bool model_alloc_grads(Model *model, CoreError *err);
extern void model_free_grads(Model *model);

/*
 * Training (model_train.c).  model_alloc_training() allocates the
 * gradients and the activations of batches of up to max_batch_size x
 * max_seq_len tokens; model_training_bytes() says how much that is, so the
 * caller can choose a micro-batch (model_backward() accumulates, so a batch
 * may run as several), and model_activation_bytes() how much of it is
 * activations.  model_free_training() releases both and keeps the weights.
 * With LoRA adapters attached (lora.h) the base is frozen: no gradients of
 * the base, the adapters' gradients and activations instead
 * (lora_training_bytes()), and model_zero_grad() and model_backward() work
 * on those.
 */
extern bool model_alloc_training(Model *model, int max_batch_size,
								 int max_seq_len, CoreError *err);
extern size_t model_training_bytes(const ModelConfig *config,
								   int max_batch_size, int max_seq_len);
extern size_t model_activation_bytes(const ModelConfig *config,
									 int max_batch_size, int max_seq_len);
extern void model_free_training(Model *model);
extern void model_zero_grad(Model *model);

/*
 * model_forward() returns sum(weights * -log p(token)), or NaN when the
 * batch fails model_check_batch() (which says why).  training turns
 * dropout on: inverted dropout on the output of each attention and MLP
 * branch, its mask a hash of (seed, training step, layer, branch, element),
 * so backward recomputes it and one thread gives bit-identical runs.
 * model_backward() adds the gradient of the last forward's loss to
 * model->grads; prediction calls in between do not disturb it.
 */
extern bool model_check_batch(const Model *model, const ModelBatch *batch,
							  CoreError *err);
extern float model_forward(Model *model, const ModelBatch *batch,
						   bool training);
extern void model_backward(Model *model);

/*
 * Prediction (model_infer.c).  Both run the prefix once and keep its keys
 * and values (a KV cache); see there.  Both return false / -1 with the
 * error in err on bad arguments (CORE_ERR_INVALID_INPUT: a prefix or a
 * candidate too long for max_seq_len, a token outside the vocabulary), out
 * of memory, or when stop (may be NULL) asks to stop
 * (CORE_ERR_INTERRUPTED), which they do between groups of candidates and
 * between generated tokens.
 *
 * A scorer holds a prefix's cache, so that candidates can come a group at
 * a time: model_scorer_score() writes scores[k] = log p(candidate k |
 * prefix) for any number of candidates of 1 .. max_candidate_len tokens,
 * and may be called again with more.  It runs the candidates in groups of
 * a bounded number of tokens, so its memory depends on max_candidate_len,
 * not on how many candidates there are.  model_score_candidates() is
 * create, score and free in one call.
 */
typedef struct ModelScorer ModelScorer;

extern ModelScorer *model_scorer_create(const Model *model,
										const int32_t *prefix, int prefix_len,
										int max_candidate_len,
										const StopCheck *stop,
										CoreError *err);
extern bool model_scorer_score(ModelScorer *scorer,
							   const int32_t *const *candidates,
							   const int *candidate_lens, int n_candidates,
							   double *scores, CoreError *err);
extern void model_scorer_free(ModelScorer *scorer);

extern bool model_score_candidates(const Model *model,
								   const int32_t *prefix, int prefix_len,
								   const int32_t *const *candidates,
								   const int *candidate_lens,
								   int n_candidates, double *scores,
								   CoreError *err);
extern int	model_generate_greedy(const Model *model,
								  const int32_t *prefix, int prefix_len,
								  int max_new_tokens, int32_t eos_id,
								  int32_t *out, const StopCheck *stop,
								  CoreError *err);
/* The same, ending at any of end_ids[0, n_end_ids) (not written to out). */
extern int	model_generate_greedy_until(const Model *model,
										const int32_t *prefix, int prefix_len,
										int max_new_tokens,
										const int32_t *end_ids, int n_end_ids,
										int32_t *out, const StopCheck *stop,
										CoreError *err);

/*
 * out[p, v] = log p(token v at position p + 1 | tokens[0 .. p]) for every
 * position p < n: the log-softmax of the logits, out being [n, vocab_size]
 * (the caller's).  The mask is causal even for a prefix-LM model.  False
 * with err for n outside 1..max_seq_len, a token outside the vocabulary,
 * or out of memory.
 */
extern bool model_next_logprobs(const Model *model, const int32_t *tokens,
								int n, float *out, CoreError *err);

/*
 * Pack the matrices once for faster prediction (packed.h); from then on the
 * weights must not change.  Prediction works without it, only slower.
 * False with a message when out of memory.
 */
extern bool model_pack_for_prediction(Model *model, CoreError *err);
extern void model_free_packed(Model *model);

/*
 * The same for a model that will only predict: each layer's plain
 * matrices (and an untied head) go back to the system as soon as they are
 * packed, so that the model holds its weights once (the packed matrices,
 * the embedding, the norms) rather than twice, also while packing.  From
 * then on it predicts as before but must not be trained or saved: its
 * plain matrices read as zeros (plain_released).  On failure the model is
 * unusable and must be freed.  Releases nothing unless the packed kernel
 * runs (packed_supported()).
 */
extern bool model_pack_for_prediction_only(Model *model, CoreError *err);

/*
 * Bytes of memory model holds for prediction: weights, tables, packing;
 * of a model made of a prediction image, only its own, not the image's.
 */
extern size_t model_memory_bytes(const Model *model);

/*
 * Threads, the only global state: OpenBLAS's (training's matrix products)
 * and pool.h's (the packed products of prediction, AdamW, the big
 * element-wise loops of training), the same number for both; they take
 * turns, never running at once.  OpenBLAS starts its thread pool when it
 * is loaded, one thread per core; model_single_thread() pins it to one
 * thread and stops the pool (which OpenBLAS starts again when more than
 * one thread is asked for), and stops pool.h's workers, so that a process
 * that forks, like PostgreSQL's postmaster, holds no threads.
 * model_set_threads() of the number already in force does nothing, so one
 * thread never starts either pool; pool.h starts its workers at the first
 * job big enough for them.  The packed products and the pool's loops
 * give the same bits with any number of threads; OpenBLAS's products
 * (training, attention) need not.
 */
extern void model_set_threads(int n_threads);
extern void model_single_thread(void);

#endif
