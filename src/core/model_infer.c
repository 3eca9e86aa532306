/*
 * model_infer.c - prediction: scoring candidate continuations and greedy
 * decoding, with a KV cache.
 *
 * The prefix ("predict: <input>") runs once and its keys and values at
 * every layer stay in a cache.  Then
 *   - scoring: the candidates run in groups of up to SCORE_GROUP_TOKENS
 *     tokens, each group as one set of rows (each linear layer is one
 *     matrix product over all of them); in attention each candidate sees
 *     the cached prefix and, causally, its own tokens, whose keys and
 *     values are written into the cache slots after the prefix one
 *     candidate at a time.  The buffers are sized for one group, so a
 *     thousand candidates take no more memory than a few;
 *   - greedy decoding: one token per step, appended to the cache;
 *   - next-token log-probabilities at every position of a sequence (for
 *     comparing with reference implementations), a chunk at a time.
 * The mask rule is the training one (attention_cached_forward), so the
 * numbers equal the training forward's up to float rounding; test_model.c
 * checks it.  Nothing here touches the model, so a cached model may serve
 * any number of predictions.
 *
 * The matrix products go through packed.h: on the matrices packed by
 * model_pack_for_prediction() when the model has them, else on the plain
 * weights (a model in training, whose weights change).
 */
#include "core/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/lora.h"
#include "core/model_ops.h"
#include "core/model_packed.h"
#include "core/util.h"

/*
 * Candidate tokens per forward pass when scoring (or one candidate's, when
 * it is longer): enough rows for efficient matrix products, few enough
 * that the logits ([rows, vocab]) stay a few megabytes.
 */
#define SCORE_GROUP_TOKENS 128

/* Views of layer l's plain weights, in packed.h's terms. */
void
plain_layer_matrices(const Model *model, int l, LayerMatrices *plain)
{
	const ModelConfig *c = &model->config;
	const LayerWeights *w = &model->w.layers[l];
	int			q_dim = c->n_heads * model->head_dim;
	int			qkv_dim = q_dim + 2 * c->n_kv_heads * model->head_dim;

	packed_matrix_plain(&plain->qkv, w->qkv, qkv_dim, c->d_model);
	packed_matrix_plain(&plain->o_proj, w->o_proj, c->d_model, q_dim);
	packed_matrix_plain(&plain->gate_up, w->gate_up, 2 * c->d_ff, c->d_model);
	packed_matrix_plain(&plain->down_proj, w->down_proj, c->d_model, c->d_ff);
}

/* Layer l's matrices: the packed ones, else views in *plain. */
static const LayerMatrices *
layer_matrices(const Model *model, int l, LayerMatrices *plain)
{
	if (model->packed != NULL)
		return &model->packed->layers[l];
	plain_layer_matrices(model, l, plain);
	return plain;
}

static const PackedMatrix *
head_matrix(const Model *model, PackedMatrix *plain)
{
	if (model->packed != NULL)
		return &model->packed->head;
	packed_matrix_plain(plain, model->w.lm_head, model->config.vocab_size,
						model->config.d_model);
	return plain;
}

static bool
pack_like(PackedMatrix *packed, const PackedMatrix *plain)
{
	return packed_matrix_init(packed, plain->w, plain->n_out, plain->n_in);
}

/*
 * Return the whole pages inside floats [w, w + n) to the system; they read
 * as zeros afterwards.  (The array stays allocated, so free() is as
 * before.)
 */
static void
release_pages(const float *w, size_t n)
{
	uintptr_t	page = (uintptr_t) sysconf(_SC_PAGESIZE);
	uintptr_t	begin = ((uintptr_t) w + page - 1) & ~(page - 1);
	uintptr_t	end = ((uintptr_t) (w + n)) & ~(page - 1);

	if (end > begin)
		(void) madvise((void *) begin, end - begin, MADV_DONTNEED);
}

static void
release_plain(const PackedMatrix *m)
{
	release_pages(m->w, (size_t) m->n_out * m->n_in);
}

static bool
pack_layer(Model *model, int l, bool release)
{
	LayerMatrices *packed = &model->packed->layers[l];
	LayerMatrices plain;

	plain_layer_matrices(model, l, &plain);
	if (!pack_like(&packed->qkv, &plain.qkv) ||
		!pack_like(&packed->o_proj, &plain.o_proj) ||
		!pack_like(&packed->gate_up, &plain.gate_up) ||
		!pack_like(&packed->down_proj, &plain.down_proj))
		return false;
	if (release)
	{
		release_plain(&plain.qkv);
		release_plain(&plain.o_proj);
		release_plain(&plain.gate_up);
		release_plain(&plain.down_proj);
	}
	return true;
}

/*
 * Pack every matrix; with release, give back each plain copy as soon as
 * its layer is packed, so that the model never holds both copies of more
 * than one layer.
 */
static bool
pack_model(Model *model, bool release, CoreError *err)
{
	int			n_layers = model->config.n_layers;
	PackedMatrix head;
	bool		ok;

	if (model->packed != NULL)
		return true;
	release = release && packed_supported();
	model->packed = calloc(1, sizeof(PackedWeights));
	model->free_packed = model_free_packed;
	ok = model->packed != NULL &&
		(model->packed->layers = calloc(n_layers, sizeof(LayerMatrices))) != NULL;
	for (int l = 0; ok && l < n_layers; l++)
		ok = pack_layer(model, l, release);
	packed_matrix_plain(&head, model->w.lm_head, model->config.vocab_size,
						model->config.d_model);
	ok = ok && pack_like(&model->packed->head, &head);
	/* a tied head is the embedding, whose rows the forward pass looks up */
	if (ok && release && !model->config.tied_embeddings)
		release_plain(&head);
	model->plain_released = release;
	if (!ok)
	{
		model_free_packed(model);
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for the packed weights of %zu parameters",
				   model->n_params);
	}
	return ok;
}

bool
model_pack_for_prediction(Model *model, CoreError *err)
{
	return pack_model(model, false, err);
}

bool
model_pack_for_prediction_only(Model *model, CoreError *err)
{
	return pack_model(model, true, err);
}

/* Bytes of the packed matrices; 0 when the model has none. */
static size_t
packed_bytes(const Model *model)
{
	const PackedWeights *packed = model->packed;
	size_t		bytes;

	if (packed == NULL)
		return 0;
	bytes = sizeof(PackedWeights) + packed_matrix_bytes(&packed->head) +
		model->config.n_layers * sizeof(LayerMatrices);
	for (int l = 0; l < model->config.n_layers; l++)
		bytes += packed_matrix_bytes(&packed->layers[l].qkv) +
			packed_matrix_bytes(&packed->layers[l].o_proj) +
			packed_matrix_bytes(&packed->layers[l].gate_up) +
			packed_matrix_bytes(&packed->layers[l].down_proj);
	return bytes;
}

void
model_free_packed(Model *model)
{
	PackedWeights *packed = model->packed;

	if (packed == NULL)
		return;
	for (int l = 0; packed->layers != NULL && l < model->config.n_layers; l++)
	{
		packed_matrix_free(&packed->layers[l].qkv);
		packed_matrix_free(&packed->layers[l].o_proj);
		packed_matrix_free(&packed->layers[l].gate_up);
		packed_matrix_free(&packed->layers[l].down_proj);
	}
	packed_matrix_free(&packed->head);
	free(packed->layers);
	free(packed);
	model->packed = NULL;
	model->free_packed = NULL;
}

/* Floats of the plain matrices model_pack_for_prediction_only() released. */
static size_t
released_floats(const Model *model)
{
	const ModelConfig *c = &model->config;
	size_t		floats = 0;

	if (!model->plain_released)
		return 0;
	for (int l = 0; l < c->n_layers; l++)
	{
		LayerMatrices plain;

		plain_layer_matrices(model, l, &plain);
		floats += (size_t) plain.qkv.n_out * plain.qkv.n_in +
			(size_t) plain.o_proj.n_out * plain.o_proj.n_in +
			(size_t) plain.gate_up.n_out * plain.gate_up.n_in +
			(size_t) plain.down_proj.n_out * plain.down_proj.n_in;
	}
	if (!c->tied_embeddings)
		floats += (size_t) c->vocab_size * c->d_model;
	return floats;
}

size_t
model_memory_bytes(const Model *model)
{
	int			n_layers = model->config.n_layers;
	size_t		rope_size = (size_t) model->config.max_seq_len * (model->head_dim / 2);
	size_t		tables = sizeof(Model) + model->n_tensors * sizeof(ModelTensor) +
		2 * n_layers * sizeof(LayerWeights);

	/* the weights, rope tables and panels of an image are the image's */
	if (model->image != NULL)
		return tables + sizeof(PackedWeights) + n_layers * sizeof(LayerMatrices);
	return tables + (model->n_params - released_floats(model)) * sizeof(float) +
		2 * rope_size * sizeof(float) + packed_bytes(model);
}

typedef struct KVCache
{
	int			capacity;		/* positions */
	int			n_past;			/* positions kept */
	float	   *k;				/* [n_layers][capacity, kv_dim] */
	float	   *v;
} KVCache;

/* Per-call buffers for up to max_rows new tokens. */
typedef struct Workspace
{
	float	   *x;				/* residual stream [rows, d_model] */
	float	   *xn;				/* normalized stream [rows, d_model] */
	float	   *rstd;			/* [rows] */
	float	   *qkv;			/* [rows, qkv_dim] */
	float	   *att_out;		/* [rows, n_heads * head_dim] */
	float	   *branch;			/* [rows, d_model] */
	float	   *gate_up;		/* [rows, 2 d_ff] */
	float	   *mlp_act;		/* [rows, d_ff] */
	float	   *scores;			/* attention scores, scratch */
	float	   *lora_u;			/* [rows, rank] with adapters attached */
	float	   *prefix_state;	/* [d_model] the prefix's last hidden state */
	float	   *logits;			/* [logit_rows, vocab] */
	float	   *lse;			/* [logit_rows] */
	float	   *nll;			/* [logit_rows] */
	int32_t    *positions;		/* [rows] */
	int32_t    *targets;		/* [rows] */
	KVCache		cache;
	void	   *float_block;
	void	   *int_block;
} Workspace;

static void
layout_workspace(const Model *model, Workspace *ws, int max_rows,
				 int logit_rows, int cache_capacity, size_t score_size,
				 Carver *f, Carver *i)
{
	const ModelConfig *c = &model->config;
	size_t		rows = max_rows;
	size_t		kv_dim = (size_t) c->n_kv_heads * model->head_dim;
	size_t		cache_size = (size_t) c->n_layers * cache_capacity * kv_dim;

	ws->x = carve(f, rows * c->d_model);
	ws->xn = carve(f, rows * c->d_model);
	ws->rstd = carve(f, rows);
	ws->qkv = carve(f, rows * (c->n_heads + 2 * c->n_kv_heads) * model->head_dim);
	ws->att_out = carve(f, rows * c->n_heads * model->head_dim);
	ws->branch = carve(f, rows * c->d_model);
	ws->gate_up = carve(f, rows * 2 * c->d_ff);
	ws->mlp_act = carve(f, rows * c->d_ff);
	ws->scores = carve(f, score_size);
	ws->lora_u = carve(f, model->lora != NULL ? rows * model->lora->config.rank : 0);
	ws->prefix_state = carve(f, c->d_model);
	ws->logits = carve(f, (size_t) logit_rows * c->vocab_size);
	ws->lse = carve(f, logit_rows);
	ws->nll = carve(f, logit_rows);
	ws->cache.k = carve(f, cache_size);
	ws->cache.v = carve(f, cache_size);
	ws->positions = carve(i, rows);
	ws->targets = carve(i, rows);
}

/*
 * Allocate buffers for up to max_rows tokens per forward_cached() call,
 * logits of logit_rows tokens, and a cache of cache_capacity positions
 * (which is also the most keys a query sees).
 */
static bool
workspace_alloc(const Model *model, Workspace *ws, int max_rows,
				int logit_rows, int cache_capacity, CoreError *err)
{
	Carver		f = {NULL, 0, sizeof(float)};
	Carver		i = {NULL, 0, sizeof(int32_t)};
	size_t		score_size = (size_t) max_rows * cache_capacity;

	memset(ws, 0, sizeof(*ws));
	layout_workspace(model, ws, max_rows, logit_rows, cache_capacity,
					 score_size, &f, &i);
	f.base = ws->float_block = malloc(f.used * sizeof(float));
	i.base = ws->int_block = malloc(i.used * sizeof(int32_t));
	if (f.base == NULL || i.base == NULL)
	{
		free(ws->float_block);
		free(ws->int_block);
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for prediction buffers (%zu MB)",
				   f.used * sizeof(float) >> 20);
		return false;
	}
	f.used = i.used = 0;
	layout_workspace(model, ws, max_rows, logit_rows, cache_capacity,
					 score_size, &f, &i);
	ws->cache.capacity = cache_capacity;
	ws->cache.n_past = 0;
	return true;
}

static void
workspace_free(Workspace *ws)
{
	free(ws->float_block);
	free(ws->int_block);
}

/*
 * Add the attached adapters' part of a product (lora.h); a training's
 * validation predicts with them unmerged.  A stored model has none: they
 * are merged before packing.
 */
static inline void
adapt(const Model *model, Workspace *ws, int layer, LoraSite site,
	  const float *x, float *y, int rows)
{
	if (model->lora != NULL)
		lora_apply(model->lora, layer, site, x, y, rows, ws->lora_u);
}

/*
 * Run n_seqs sequences of new tokens (concatenated in tokens) after the
 * cached positions; each sees the cache and, causally, itself (positions
 * below n_bidir see each other both ways: the prefix-LM prefix).  Leaves
 * the final normalized hidden states in ws->xn.  Each sequence writes its
 * keys and values to the slots after the cached ones in turn; the cache
 * keeps them (for the next call) only when the caller then advances
 * n_past.
 */
static void
forward_cached(const Model *model, Workspace *ws, const int32_t *tokens,
			   const int *seq_lens, int n_seqs, int n_bidir)
{
	const ModelConfig *c = &model->config;
	KVCache    *cache = &ws->cache;
	AttentionShape shape = {c->n_heads, c->n_kv_heads, model->head_dim};
	int			d = c->d_model;
	int			q_dim = c->n_heads * model->head_dim;
	int			kv_dim = c->n_kv_heads * model->head_dim;
	int			qkv_dim = q_dim + 2 * kv_dim;
	int			rows = 0;

	for (int s = 0; s < n_seqs; s++)
		for (int j = 0; j < seq_lens[s]; j++)
			ws->positions[rows++] = cache->n_past + j;
	embedding_forward(ws->x, tokens, model->w.embed, rows, d);

	for (int l = 0; l < c->n_layers; l++)
	{
		const LayerWeights *w = &model->w.layers[l];
		LayerMatrices plain;
		const LayerMatrices *m = layer_matrices(model, l, &plain);
		float	   *k_cache = cache->k + (size_t) l * cache->capacity * kv_dim;
		float	   *v_cache = cache->v + (size_t) l * cache->capacity * kv_dim;
		int			row = 0;

		rmsnorm_forward(ws->xn, ws->rstd, ws->x, w->attn_norm, rows, d, c->norm_eps);
		packed_matmul(ws->qkv, ws->xn, &m->qkv, w->qkv_bias, 1.0f, rows);
		adapt(model, ws, l, LORA_SITE_QKV, ws->xn, ws->qkv, rows);
		rope_forward(ws->qkv, rows, qkv_dim, c->n_heads + c->n_kv_heads,
					 model->head_dim, ws->positions, model->rope_cos, model->rope_sin);
		for (int s = 0; s < n_seqs; s++)
		{
			for (int j = 0; j < seq_lens[s]; j++)
			{
				const float *src = ws->qkv + (size_t) (row + j) * qkv_dim;
				size_t		slot = (size_t) (cache->n_past + j) * kv_dim;

				memcpy(k_cache + slot, src + q_dim, kv_dim * sizeof(float));
				memcpy(v_cache + slot, src + q_dim + kv_dim, kv_dim * sizeof(float));
			}
			attention_cached_forward(ws->att_out + (size_t) row * q_dim, ws->scores,
									 ws->qkv + (size_t) row * qkv_dim, qkv_dim,
									 k_cache, v_cache, cache->n_past, seq_lens[s],
									 n_bidir, shape);
			row += seq_lens[s];
		}
		packed_matmul(ws->branch, ws->att_out, &m->o_proj, NULL, 1.0f, rows);
		adapt(model, ws, l, LORA_SITE_O, ws->att_out, ws->branch, rows);
		residual_forward(ws->x, ws->x, ws->branch, (size_t) rows * d);

		rmsnorm_forward(ws->xn, ws->rstd, ws->x, w->mlp_norm, rows, d, c->norm_eps);
		packed_matmul(ws->gate_up, ws->xn, &m->gate_up, NULL, 1.0f, rows);
		adapt(model, ws, l, LORA_SITE_GATE_UP, ws->xn, ws->gate_up, rows);
		swiglu_forward(ws->mlp_act, ws->gate_up, rows, c->d_ff);
		packed_matmul(ws->branch, ws->mlp_act, &m->down_proj, NULL, 1.0f, rows);
		adapt(model, ws, l, LORA_SITE_DOWN, ws->mlp_act, ws->branch, rows);
		residual_forward(ws->x, ws->x, ws->branch, (size_t) rows * d);
	}
	rmsnorm_forward(ws->xn, ws->rstd, ws->x, model->w.final_norm, rows, d, c->norm_eps);
}

static bool
check_tokens(const Model *model, const char *what, const int32_t *tokens,
			 int n, CoreError *err)
{
	for (int j = 0; j < n; j++)
		if (tokens[j] < 0 || tokens[j] >= model->config.vocab_size)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "%s: token id %d is outside the vocabulary of %d",
					   what, tokens[j], model->config.vocab_size);
			return false;
		}
	return true;
}

static bool
check_prefix(const Model *model, const int32_t *prefix, int prefix_len,
			 CoreError *err)
{
	if (prefix_len < 1 || prefix_len > model->config.max_seq_len)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "prefix of %d tokens is outside 1..%d",
				   prefix_len, model->config.max_seq_len);
		return false;
	}
	return check_tokens(model, "prefix", prefix, prefix_len, err);
}

/* Positions below this see each other both ways. */
static int
bidirectional_part(const Model *model, int prefix_len)
{
	return model->config.prefix_lm ? prefix_len : 0;
}

struct ModelScorer
{
	const Model *model;
	const StopCheck *stop;
	int			prefix_len;
	int			group_rows;		/* most candidate tokens per forward */
	int			max_candidate_len;
	Workspace	ws;				/* the prefix's cache, and a group's rows */
	int32_t    *tokens;			/* [group_rows] a group's tokens */
};

void
model_scorer_free(ModelScorer *scorer)
{
	if (scorer == NULL)
		return;
	workspace_free(&scorer->ws);
	free(scorer->tokens);
	free(scorer);
}

ModelScorer *
model_scorer_create(const Model *model, const int32_t *prefix, int prefix_len,
					int max_candidate_len, const StopCheck *stop,
					CoreError *err)
{
	const ModelConfig *c = &model->config;
	ModelScorer *scorer;
	int			group_rows = max_candidate_len > SCORE_GROUP_TOKENS
		? max_candidate_len : SCORE_GROUP_TOKENS;

	if (!check_prefix(model, prefix, prefix_len, err))
		return NULL;
	if (max_candidate_len < 1 || max_candidate_len > c->max_seq_len - prefix_len)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "candidates of up to %d tokens; 1..%d fit after a prefix of %d",
				   max_candidate_len, c->max_seq_len - prefix_len, prefix_len);
		return NULL;
	}
	scorer = calloc(1, sizeof(ModelScorer));
	if (scorer == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a scorer");
		return NULL;
	}
	scorer->model = model;
	scorer->stop = stop;
	scorer->prefix_len = prefix_len;
	scorer->group_rows = group_rows;
	scorer->max_candidate_len = max_candidate_len;
	scorer->tokens = malloc(group_rows * sizeof(int32_t));
	if (scorer->tokens == NULL ||
		!workspace_alloc(model, &scorer->ws,
						 prefix_len > group_rows ? prefix_len : group_rows,
						 group_rows, prefix_len + max_candidate_len,
						 err))
	{
		if (scorer->tokens == NULL)
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory for candidate tokens");
		free(scorer->tokens);
		free(scorer);
		return NULL;
	}

	/* the prefix; its last hidden state predicts every candidate's first token */
	forward_cached(model, &scorer->ws, prefix, &prefix_len, 1,
				   bidirectional_part(model, prefix_len));
	scorer->ws.cache.n_past = prefix_len;
	memcpy(scorer->ws.prefix_state, scorer->ws.xn + (size_t) (prefix_len - 1) * c->d_model,
		   c->d_model * sizeof(float));
	return scorer;
}

/*
 * Score candidates[0 .. n) (together at most group_rows tokens) into
 * scores.  Head input row r predicts tokens[r]: the prefix's last state
 * for a candidate's first token, else the candidate's previous row.
 * Going backward over the rows lets the shift happen in place in ws->xn.
 */
static void
score_group(ModelScorer *scorer, const int32_t *const *candidates,
			const int *candidate_lens, int n, double *scores)
{
	const Model *model = scorer->model;
	const ModelConfig *c = &model->config;
	Workspace  *ws = &scorer->ws;
	int			d = c->d_model;
	int			total = 0;
	PackedMatrix head;

	for (int k = 0; k < n; k++)
	{
		memcpy(scorer->tokens + total, candidates[k], candidate_lens[k] * sizeof(int32_t));
		total += candidate_lens[k];
	}
	forward_cached(model, ws, scorer->tokens, candidate_lens, n,
				   bidirectional_part(model, scorer->prefix_len));
	for (int k = n - 1, end = total; k >= 0; end -= candidate_lens[k--])
	{
		int			start = end - candidate_lens[k];

		for (int r = end - 1; r > start; r--)
			memcpy(ws->xn + (size_t) r * d, ws->xn + (size_t) (r - 1) * d, d * sizeof(float));
		memcpy(ws->xn + (size_t) start * d, ws->prefix_state, d * sizeof(float));
	}
	packed_matmul(ws->logits, ws->xn, head_matrix(model, &head), NULL, c->logit_scale, total);
	crossentropy_forward(ws->nll, ws->lse, ws->logits, scorer->tokens, total, c->vocab_size);

	total = 0;
	for (int k = 0; k < n; k++)
	{
		scores[k] = 0.0;
		for (int j = 0; j < candidate_lens[k]; j++)
			scores[k] -= ws->nll[total++];
	}
}

/*
 * A candidate should end with the end-of-sequence token if the label must
 * end there (so "lake" does not win over "lake house" for being a prefix).
 */
bool
model_scorer_score(ModelScorer *scorer, const int32_t *const *candidates,
				   const int *candidate_lens, int n_candidates, double *scores,
				   CoreError *err)
{
	for (int k = 0; k < n_candidates; k++)
	{
		int			len = candidate_lens[k];

		if (len < 1 || len > scorer->max_candidate_len)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "candidate %d has %d tokens; 1..%d fit after a prefix of %d",
					   k + 1, len, scorer->max_candidate_len, scorer->prefix_len);
			return false;
		}
		if (!check_tokens(scorer->model, "candidate", candidates[k], len, err))
			return false;
	}
	for (int first = 0; first < n_candidates;)
	{
		int			end = first;
		int			rows = 0;

		while (end < n_candidates && rows + candidate_lens[end] <= scorer->group_rows)
			rows += candidate_lens[end++];
		if (stop_requested(scorer->stop))
		{
			core_error(err, CORE_ERR_INTERRUPTED, "interrupted");
			return false;
		}
		score_group(scorer, candidates + first, candidate_lens + first,
					end - first, scores + first);
		first = end;
	}
	return true;
}

bool
model_score_candidates(const Model *model, const int32_t *prefix,
					   int prefix_len, const int32_t *const *candidates,
					   const int *candidate_lens, int n_candidates,
					   double *scores, CoreError *err)
{
	int			room = model->config.max_seq_len - prefix_len;
	int			longest = 1;
	ModelScorer *scorer;
	bool		ok;

	if (n_candidates < 1)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "no candidates to score");
		return false;
	}
	/* room for the longest; model_scorer_score() names one that is too long */
	for (int k = 0; k < n_candidates; k++)
		longest = candidate_lens[k] > longest ? candidate_lens[k] : longest;
	scorer = model_scorer_create(model, prefix, prefix_len,
								 longest < room ? longest : room, NULL,
								 err);
	if (scorer == NULL)
		return false;
	ok = model_scorer_score(scorer, candidates, candidate_lens, n_candidates, scores,
							err);
	model_scorer_free(scorer);
	return ok;
}

/*
 * Causal log-softmax of every position, a chunk of rows at a time so that
 * the attention scratch stays chunk x n.
 */
bool
model_next_logprobs(const Model *model, const int32_t *tokens, int n,
					float *out, CoreError *err)
{
	const ModelConfig *c = &model->config;
	int			chunk = n < SCORE_GROUP_TOKENS ? n : SCORE_GROUP_TOKENS;
	Workspace	ws;
	PackedMatrix head_plain;
	const PackedMatrix *head = head_matrix(model, &head_plain);

	if (!check_prefix(model, tokens, n, err) ||
		!workspace_alloc(model, &ws, chunk, chunk, n, err))
		return false;
	for (int start = 0; start < n; start += chunk)
	{
		int			rows = n - start < chunk ? n - start : chunk;
		float	   *logits = out + (size_t) start * c->vocab_size;

		forward_cached(model, &ws, tokens + start, &rows, 1, 0);
		ws.cache.n_past += rows;
		packed_matmul(logits, ws.xn, head, NULL, c->logit_scale, rows);
		/* only its logsumexp is wanted; the targets are any valid ids */
		crossentropy_forward(ws.nll, ws.lse, logits, tokens + start, rows, c->vocab_size);
		for (int r = 0; r < rows; r++)
			for (int v = 0; v < c->vocab_size; v++)
				logits[(size_t) r * c->vocab_size + v] -= ws.lse[r];
	}
	workspace_free(&ws);
	return true;
}

static int32_t
argmax(const float *x, int n)
{
	int32_t		best = 0;

	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/*
 * Greedy decoding after the prefix: write up to max_new_tokens tokens to
 * out (fewer if the sequence would pass max_seq_len) and return how many;
 * stop before eos_id, which is not written.  -1 on error, and when stop
 * asks to stop between tokens.
 */
int
model_generate_greedy(const Model *model, const int32_t *prefix,
					  int prefix_len, int max_new_tokens, int32_t eos_id,
					  int32_t *out, const StopCheck *stop,
					  CoreError *err)
{
	return model_generate_greedy_until(model, prefix, prefix_len, max_new_tokens,
									   &eos_id, 1, out, stop, err);
}

/* Is id one of ids[0, n)? */
static bool
is_one_of(int32_t id, const int32_t *ids, int n)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

int
model_generate_greedy_until(const Model *model, const int32_t *prefix,
							int prefix_len, int max_new_tokens,
							const int32_t *end_ids, int n_end_ids,
							int32_t *out, const StopCheck *stop,
							CoreError *err)
{
	const ModelConfig *c = &model->config;
	int			n_bidir = bidirectional_part(model, prefix_len);
	int			one = 1;
	int			limit;
	int			n = 0;
	Workspace	ws;
	const float *hidden;
	PackedMatrix head_plain;
	const PackedMatrix *head = head_matrix(model, &head_plain);

	if (!check_prefix(model, prefix, prefix_len, err))
		return -1;
	if (max_new_tokens < 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "max_new_tokens is negative");
		return -1;
	}
	/* a generated token is at position prefix_len + n < max_seq_len */
	limit = c->max_seq_len - prefix_len;
	limit = max_new_tokens < limit ? max_new_tokens : limit;
	if (!workspace_alloc(model, &ws, prefix_len, 1, prefix_len + limit,
						 err))
		return -1;

	forward_cached(model, &ws, prefix, &prefix_len, 1, n_bidir);
	ws.cache.n_past = prefix_len;
	hidden = ws.xn + (size_t) (prefix_len - 1) * c->d_model;
	while (n < limit)
	{
		int32_t		next;

		packed_matmul(ws.logits, hidden, head, NULL, c->logit_scale, 1);
		next = argmax(ws.logits, c->vocab_size);
		if (is_one_of(next, end_ids, n_end_ids))
			break;
		out[n++] = next;
		if (n == limit)
			break;
		if (stop_requested(stop))
		{
			core_error(err, CORE_ERR_INTERRUPTED, "interrupted");
			n = -1;
			break;
		}
		forward_cached(model, &ws, &next, &one, 1, n_bidir);
		ws.cache.n_past++;
		hidden = ws.xn;
	}
	workspace_free(&ws);
	return n;
}
