/*
 * model_ops.h - the operations of the student transformer, each a forward
 * and a backward function side by side, in the manner of llm.c.
 *
 * Activations are row-major [rows, columns] float arrays, one row per
 * token.  Conventions of the backward functions, chosen so that the model
 * needs no extra copies:
 *   - gradients of parameters (dweight, dbias, dgain, dtable) accumulate (+=);
 *   - the gradient of a residual-stream input (rmsnorm_backward's dx)
 *     accumulates too, since the stream also carries the skip path;
 *   - any other input gradient is overwritten (=);
 *   - rope and dropout transform their gradient in place;
 *   - a parameter gradient that is NULL is not computed (dweight, dbias,
 *     dgain: the weights of a frozen base, lora.h).
 */
#ifndef DISTILL_CORE_MODEL_OPS_H
#define DISTILL_CORE_MODEL_OPS_H

#include <stddef.h>
#include <stdint.h>

/* Token embedding: out[r] = table[tokens[r]]. */
extern void embedding_forward(float *out, const int32_t *tokens,
							  const float *table, int n, int d);
extern void embedding_backward(float *dtable, const float *dout,
							   const int32_t *tokens, int n, int d);

/* RMSNorm: out = x / sqrt(mean(x^2) + eps) * gain; keeps 1/rms per row. */
extern void rmsnorm_forward(float *out, float *rstd, const float *x,
							const float *gain, int n, int d, float eps);
extern void rmsnorm_backward(float *dx, float *dgain, const float *dout,
							 const float *x, const float *rstd,
							 const float *gain, int n, int d);

/* Linear layer: out[n, out_dim] = in[n, in_dim] @ weight^T + bias. */
extern void linear_forward(float *out, const float *in, const float *weight,
						   const float *bias, int n, int in_dim, int out_dim);
extern void linear_backward(float *din, float *dweight, float *dbias,
							const float *dout, const float *in,
							const float *weight, int n, int in_dim,
							int out_dim);

/*
 * Rotary position embedding, in place, on the first n_heads heads of each
 * row (row r at position positions[r]).  cos/sin: [positions, head_dim/2].
 */
extern void rope_forward(float *x, int n, int row_stride, int n_heads,
						 int head_dim, const int32_t *positions,
						 const float *cos, const float *sin);
extern void rope_backward(float *dx, int n, int row_stride, int n_heads,
						  int head_dim, const int32_t *positions,
						  const float *cos, const float *sin);

/*
 * Self-attention over a batch of B sequences of row stride T, from the
 * rows of qkv = [q heads | k heads | v heads] (after rotary).  Query i of a
 * sequence of length len and prefix p sees the keys j < max(i + 1, p)
 * (p = 0: causal); rows i >= len are padding, their output is 0.
 *
 * The attention weights are not kept (at [B, n_heads, T, T] they would
 * outgrow everything else): lse keeps the log of each row's softmax
 * normalizer, [B, n_heads, T], and backward makes the weights again from
 * qkv and lse, ATTENTION_TILE_ROWS queries at a time.  Both work in a
 * scratch of attention_scratch_floats(T) floats, and share the
 * (sequence, key/value head) pairs out among up to ATTENTION_LANES of the
 * pool's threads (core/pool.h), with the same result on any number.
 */
typedef struct AttentionShape
{
	int			n_heads;
	int			n_kv_heads;
	int			head_dim;
} AttentionShape;

#define ATTENTION_TILE_ROWS 64
#define ATTENTION_LANES 8

extern size_t attention_scratch_floats(int T);
extern void attention_forward(float *out, float *lse, float *scratch,
							  const float *qkv, const int32_t *lengths,
							  const int32_t *prefix_lengths, int B, int T,
							  AttentionShape shape);
extern void attention_backward(float *dqkv, float *scratch, const float *dout,
							   const float *qkv, const float *lse,
							   const int32_t *lengths,
							   const int32_t *prefix_lengths, int B, int T,
							   AttentionShape shape);

/*
 * Attention of n_new queries (q, row stride q_stride) at positions
 * n_past .. n_past + n_new - 1 of one sequence over cached keys and values
 * of positions 0 .. n_past + n_new - 1 (rows of n_kv_heads * head_dim).
 * Query at position i sees the keys j < max(i + 1, n_bidir): the same rule
 * as attention_forward with prefix n_bidir.  Forward only (prediction).
 * scratch: n_new * (n_past + n_new) floats.
 */
extern void attention_cached_forward(float *out, float *scratch,
									 const float *q, int q_stride,
									 const float *k_cache,
									 const float *v_cache, int n_past,
									 int n_new, int n_bidir,
									 AttentionShape shape);

/* SwiGLU: out = silu(gate) * up, gate_up rows = [gate (d_ff) | up (d_ff)]. */
extern void swiglu_forward(float *out, const float *gate_up, int n, int d_ff);
extern void swiglu_backward(float *dgate_up, const float *dout,
							const float *gate_up, int n, int d_ff);

/*
 * Inverted dropout, in place.  The mask is a pure function of (seed,
 * element index), so backward recomputes it instead of storing it.
 */
extern void dropout_forward(float *x, size_t n, float p, uint64_t seed);
extern void dropout_backward(float *dx, size_t n, float p, uint64_t seed);

/* Output head: logits[n, vocab] = scale * h[n, d] @ weight[vocab, d]^T. */
extern void head_forward(float *logits, const float *h, const float *weight,
						 float scale, int n, int d, int vocab);
extern void head_backward(float *dh, float *dweight, const float *dlogits,
						  const float *h, const float *weight, float scale,
						  int n, int d, int vocab);

/*
 * Cross-entropy: nll[r] = logsumexp(logits[r]) - logits[r, targets[r]];
 * lse keeps logsumexp per row.  Backward of sum(weights * nll); dlogits may
 * be logits itself.
 */
extern void crossentropy_forward(float *nll, float *lse, const float *logits,
								 const int32_t *targets, int n, int vocab);
extern void crossentropy_backward(float *dlogits, const float *logits,
								  const float *lse, const int32_t *targets,
								  const float *weights, int n, int vocab);

/* Residual connection: out = a + b (backward: the gradient goes to both). */
extern void residual_forward(float *out, const float *a, const float *b,
							 size_t n);

/*
 * Carve arrays out of one allocation: a first pass with base NULL only
 * counts the elements, a second assigns the pointers.
 */
typedef struct Carver
{
	void	   *base;
	size_t		used;			/* elements */
	size_t		elem_size;
} Carver;

static inline void *
carve(Carver *c, size_t n)
{
	void	   *p = c->base ? (char *) c->base + c->used * c->elem_size : NULL;

	c->used += n;
	return p;
}

/* The 64-bit mixing function of SplitMix64 (a good hash of a counter). */

#endif
