/*
 * test_model.c - the student transformer: gradients against finite
 * differences, op by op and end to end; overfitting a few examples;
 * prediction against the training forward; determinism; serialization.
 * Speed figures are benchmarks: bench/train (training) and bench/units
 * (one row's prediction).
 *
 * Gradient checks compare the analytic gradient a with central differences
 * n = (f(x + eps) - f(x - eps)) / 2 eps of the float forward, and report
 * the relative error max|a - n| / max|n| per tensor (so every tensor is
 * held to its own scale).  Bounds: 1e-3 per op (eps 1e-2, double loss),
 * 1e-2 end to end (eps 1e-2, float loss).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/model.h"
#include "core/packed.h"
#include "core/model_io.h"
#include "core/model_ops.h"
#include "core/optim.h"
#include "core/util.h"
#include "helpers.h"
#include "unit.h"

#define OP_TOL 1e-3
#define MODEL_TOL 1e-2
#define FD_EPS 1e-2f

/* ---------------------------------------------------------------- */
/* Helpers */

static uint64_t rng_state = 42;

static float
uniform(float lo, float hi)
{
	rng_state += 0x9E3779B97F4A7C15ull;
	return lo + (hi - lo) * (float) ((splitmix64_mix(rng_state) >> 40) * 0x1.0p-24);
}

static int
random_int(int n)
{
	int			k = (int) uniform(0.0f, (float) n);

	return k < n ? k : n - 1;
}

static float *
random_array(size_t n, float scale)
{
	float	   *x = malloc(n * sizeof(float));

	for (size_t i = 0; i < n; i++)
		x[i] = uniform(-scale, scale);
	return x;
}

static void
check_op_gradient(const char *what, float *x, const float *analytic, size_t n,
				  double (*loss) (void *), void *ctx)
{
	double		err = gradient_error(x, analytic, n, loss, ctx, FD_EPS);

	printf("  gradient %-34s rel err %.2e\n", what, err);
	CHECKF(err < OP_TOL, "%s: relative error %g", what, err);
}

/* sum(out * probe) in double: the scalar the op checks differentiate. */
static double
probe_sum(const float *out, const float *probe, size_t n)
{
	double		s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += (double) out[i] * probe[i];
	return s;
}

/* ---------------------------------------------------------------- */
/* Gradient checks, op by op */

enum
{
	OP_N = 5, OP_D = 8, OP_OUT = 6, OP_V = 7
};

typedef struct OpCtx
{
	float	   *x,
			   *w,
			   *b,
			   *out,
			   *probe,
			   *aux;
	int32_t    *ints;
} OpCtx;

static double
embedding_loss(void *p)
{
	OpCtx	   *c = p;

	embedding_forward(c->out, c->ints, c->w, OP_N, OP_D);
	return probe_sum(c->out, c->probe, OP_N * OP_D);
}

static double
rmsnorm_loss(void *p)
{
	OpCtx	   *c = p;

	rmsnorm_forward(c->out, c->aux, c->x, c->w, OP_N, OP_D, 1e-6f);
	return probe_sum(c->out, c->probe, OP_N * OP_D);
}

static double
linear_loss(void *p)
{
	OpCtx	   *c = p;

	linear_forward(c->out, c->x, c->w, c->b, OP_N, OP_D, OP_OUT);
	return probe_sum(c->out, c->probe, OP_N * OP_OUT);
}

static double
swiglu_loss(void *p)
{
	OpCtx	   *c = p;

	swiglu_forward(c->out, c->x, OP_N, OP_D / 2);
	return probe_sum(c->out, c->probe, OP_N * OP_D / 2);
}

static double
dropout_loss(void *p)
{
	OpCtx	   *c = p;

	memcpy(c->out, c->x, OP_N * OP_D * sizeof(float));
	dropout_forward(c->out, OP_N * OP_D, 0.3f, 99);
	return probe_sum(c->out, c->probe, OP_N * OP_D);
}

static double
head_loss(void *p)
{
	OpCtx	   *c = p;

	head_forward(c->out, c->x, c->w, 0.35f, OP_N, OP_D, OP_V);
	return probe_sum(c->out, c->probe, OP_N * OP_V);
}

static double
crossentropy_loss(void *p)
{
	OpCtx	   *c = p;
	float		nll[OP_N],
				lse[OP_N];

	crossentropy_forward(nll, lse, c->x, c->ints, OP_N, OP_V);
	return probe_sum(nll, c->probe, OP_N);
}

static void
test_simple_op_gradients(void)
{
	OpCtx		c;
	int32_t		tokens[OP_N] = {3, 0, 6, 3, 1};
	float	   *dx = calloc(OP_V * OP_D, sizeof(float));
	float	   *dw = calloc(OP_V * OP_D, sizeof(float));
	float	   *db = calloc(OP_OUT, sizeof(float));

	c.x = random_array(OP_V * OP_D, 1.0f);
	c.w = random_array(OP_V * OP_D, 1.0f);
	c.b = random_array(OP_OUT, 1.0f);
	c.out = random_array(OP_V * OP_D, 1.0f);
	c.probe = random_array(OP_V * OP_D, 1.0f);
	c.aux = random_array(OP_V * OP_D, 1.0f);
	c.ints = tokens;

	embedding_backward(dw, c.probe, tokens, OP_N, OP_D);
	check_op_gradient("embedding (table)", c.w, dw, OP_V * OP_D, embedding_loss, &c);

	memset(dx, 0, OP_N * OP_D * sizeof(float));
	memset(dw, 0, OP_D * sizeof(float));
	rmsnorm_loss(&c);
	rmsnorm_backward(dx, dw, c.probe, c.x, c.aux, c.w, OP_N, OP_D);
	check_op_gradient("rmsnorm (input)", c.x, dx, OP_N * OP_D, rmsnorm_loss, &c);
	check_op_gradient("rmsnorm (gain)", c.w, dw, OP_D, rmsnorm_loss, &c);

	memset(dw, 0, OP_OUT * OP_D * sizeof(float));
	linear_backward(dx, dw, db, c.probe, c.x, c.w, OP_N, OP_D, OP_OUT);
	check_op_gradient("linear (input)", c.x, dx, OP_N * OP_D, linear_loss, &c);
	check_op_gradient("linear (weight)", c.w, dw, OP_OUT * OP_D, linear_loss, &c);
	check_op_gradient("linear (bias)", c.b, db, OP_OUT, linear_loss, &c);

	swiglu_backward(dx, c.probe, c.x, OP_N, OP_D / 2);
	check_op_gradient("swiglu (gate, up)", c.x, dx, OP_N * OP_D, swiglu_loss, &c);

	memcpy(dx, c.probe, OP_N * OP_D * sizeof(float));
	dropout_backward(dx, OP_N * OP_D, 0.3f, 99);
	check_op_gradient("dropout", c.x, dx, OP_N * OP_D, dropout_loss, &c);

	memset(dw, 0, OP_V * OP_D * sizeof(float));
	head_backward(dx, dw, c.probe, c.x, c.w, 0.35f, OP_N, OP_D, OP_V);
	check_op_gradient("output head (hidden)", c.x, dx, OP_N * OP_D, head_loss, &c);
	check_op_gradient("output head (weight)", c.w, dw, OP_V * OP_D, head_loss, &c);

	{
		float		nll[OP_N],
					lse[OP_N];
		int32_t		targets[OP_N] = {1, 6, 0, 2, 2};

		for (int i = 0; i < OP_N * OP_V; i++)
			c.x[i] *= 3.0f;
		c.ints = targets;
		crossentropy_forward(nll, lse, c.x, targets, OP_N, OP_V);
		crossentropy_backward(dx, c.x, lse, targets, c.probe, OP_N, OP_V);
		check_op_gradient("cross-entropy (logits)", c.x, dx, OP_N * OP_V,
						  crossentropy_loss, &c);
	}
	free(c.x);
	free(c.w);
	free(c.b);
	free(c.out);
	free(c.probe);
	free(c.aux);
	free(dx);
	free(dw);
	free(db);
}

/*
 * The ops that take e^x (model_ops.c computes it inline, vectorized)
 * against double precision: SwiGLU, and cross-entropy over logits from
 * -100 to 100, where the exponent is clamped.
 */
static void
test_exp_accuracy(void)
{
	enum
	{
		N = 4, V = 1001
	};
	float	   *logits = malloc(N * V * sizeof(float));
	float	   *gate_up = malloc(2 * V * sizeof(float));
	float	   *out = malloc(V * sizeof(float));
	int32_t		targets[N] = {0, 500, 999, 1000};
	float		nll[N],
				lse[N];
	double		worst_ce = 0.0,
				worst_swiglu = 0.0;

	for (int i = 0; i < N * V; i++)
		logits[i] = (float) ((i % V) * 0.2 - 100.0) * (i < V ? 1.0f : 0.37f * (i / V));
	crossentropy_forward(nll, lse, logits, targets, N, V);
	for (int r = 0; r < N; r++)
	{
		const float *z = logits + r * V;
		double		max = z[0],
					sum = 0.0;

		for (int i = 1; i < V; i++)
			max = fmax(max, z[i]);
		for (int i = 0; i < V; i++)
			sum += exp(z[i] - max);
		worst_ce = fmax(worst_ce, fabs(nll[r] - (max + log(sum) - z[targets[r]])) /
						fmax(1.0, fabs(nll[r])));
	}
	for (int i = 0; i < V; i++)
	{
		gate_up[i] = (float) (i * 0.2 - 100.0);
		gate_up[V + i] = 1.0f;
	}
	swiglu_forward(out, gate_up, 1, V);
	for (int i = 0; i < V; i++)
	{
		double		g = gate_up[i];
		double		want = g / (1.0 + exp(-g));

		worst_swiglu = fmax(worst_swiglu, fabs(out[i] - want) / fmax(1e-30, fabs(want)));
	}
	printf("  e^x: cross-entropy relative error %.1e, SwiGLU %.1e\n", worst_ce, worst_swiglu);
	/* float sums of 1001 terms: a few 1e-7 of rounding per term add up */
	CHECK(worst_ce < 1e-5);
	CHECK(worst_swiglu < 1e-6);
	free(logits);
	free(gate_up);
	free(out);
}

/* Rotary: x has 3 rows of 2 heads of 6 dims. */
typedef struct RopeCtx
{
	float	   *x,
			   *out,
			   *probe,
			   *cos,
			   *sin;
	int32_t		positions[3];
} RopeCtx;

static double
rope_loss(void *p)
{
	RopeCtx    *c = p;

	memcpy(c->out, c->x, 3 * 12 * sizeof(float));
	rope_forward(c->out, 3, 12, 2, 6, c->positions, c->cos, c->sin);
	return probe_sum(c->out, c->probe, 36);
}

static void
test_rope(void)
{
	RopeCtx		c = {.positions = {0, 5, 2}};
	float		dx[36];
	float		cos_table[8 * 3],
				sin_table[8 * 3];

	for (int pos = 0; pos < 8; pos++)
		for (int i = 0; i < 3; i++)
		{
			cos_table[pos * 3 + i] = cosf(pos * powf(100.0f, -i / 3.0f));
			sin_table[pos * 3 + i] = sinf(pos * powf(100.0f, -i / 3.0f));
		}
	c.x = random_array(36, 1.0f);
	c.out = random_array(36, 1.0f);
	c.probe = random_array(36, 1.0f);
	c.cos = cos_table;
	c.sin = sin_table;
	memcpy(dx, c.probe, sizeof(dx));
	rope_backward(dx, 3, 12, 2, 6, c.positions, c.cos, c.sin);
	check_op_gradient("rope", c.x, dx, 36, rope_loss, &c);

	/* the "rotate half" pairing: dims 0 and 3 of a head rotate together */
	{
		float		v[12] = {1, 0, 0, 0, 0, 0};
		int32_t		pos = 1;

		rope_forward(v, 1, 12, 2, 6, &pos, c.cos, c.sin);
		CHECK(fabsf(v[0] - cosf(1.0f)) < 1e-6f && fabsf(v[3] - sinf(1.0f)) < 1e-6f);
		CHECK(v[1] == 0.0f && v[2] == 0.0f && v[4] == 0.0f && v[5] == 0.0f);
	}
	free(c.x);
	free(c.out);
	free(c.probe);
}

/* Attention: B = 3 sequences, T = 5, 4 query heads on 2 key/value heads. */
enum
{
	AT_B = 3, AT_T = 5, AT_H = 4, AT_KV = 2, AT_HD = 4,
	AT_QKV = (AT_H + 2 * AT_KV) * AT_HD,
	AT_OUT = AT_H * AT_HD
};

typedef struct AttnCtx
{
	float	   *qkv,
			   *out,
			   *lse,
			   *probe;
	int32_t		lengths[AT_B];
	int32_t		prefix[AT_B];
} AttnCtx;

static double
attention_loss(void *p)
{
	AttnCtx    *c = p;
	AttentionShape s = {AT_H, AT_KV, AT_HD};
	float		scratch[ATTENTION_LANES * 2 * AT_T * AT_T];

	CHECK(attention_scratch_floats(AT_T) <= ATTENTION_LANES * 2 * AT_T * AT_T);
	attention_forward(c->out, c->lse, scratch, c->qkv, c->lengths, c->prefix,
					  AT_B, AT_T, s);
	return probe_sum(c->out, c->probe, AT_B * AT_T * AT_OUT);
}

static void
check_attention(const char *what, const int32_t *prefix)
{
	AttnCtx		c = {.lengths = {5, 3, 4}};
	AttentionShape s = {AT_H, AT_KV, AT_HD};
	float	   *dqkv = malloc(AT_B * AT_T * AT_QKV * sizeof(float));
	float		scratch[ATTENTION_LANES * 2 * AT_T * AT_T];

	memcpy(c.prefix, prefix, sizeof(c.prefix));
	c.qkv = random_array(AT_B * AT_T * AT_QKV, 1.5f);
	c.out = random_array(AT_B * AT_T * AT_OUT, 1.0f);
	c.lse = random_array(AT_B * AT_H * AT_T, 1.0f);
	c.probe = random_array(AT_B * AT_T * AT_OUT, 1.0f);

	attention_loss(&c);
	attention_backward(dqkv, scratch, c.probe, c.qkv, c.lse, c.lengths,
					   c.prefix, AT_B, AT_T, s);
	check_op_gradient(what, c.qkv, dqkv, AT_B * AT_T * AT_QKV, attention_loss, &c);
	free(c.qkv);
	free(c.out);
	free(c.lse);
	free(c.probe);
	free(dqkv);
}

/*
 * The attention as it was while training kept its weights: per sequence
 * and head the whole [T, T] matrix P of weights, 0 where masked, and
 * backward from it (in double).  out and lse (log of each row's softmax
 * normalizer) of the forward, and dqkv of sum(out * probe).
 */
static void
reference_attention(double *out, double *lse, double *dqkv, const float *qkv,
					const float *probe, const int32_t *lengths,
					const int32_t *prefix, int B, int T, AttentionShape s)
{
	int			stride = (s.n_heads + 2 * s.n_kv_heads) * s.head_dim;
	int			out_stride = s.n_heads * s.head_dim;
	int			group = s.n_heads / s.n_kv_heads;
	double		scale = 1.0 / sqrt((double) s.head_dim);
	double	   *P = malloc((size_t) T * T * sizeof(double));
	double	   *dP = malloc((size_t) T * T * sizeof(double));

	memset(out, 0, (size_t) B * T * out_stride * sizeof(double));
	memset(lse, 0, (size_t) B * s.n_heads * T * sizeof(double));
	memset(dqkv, 0, (size_t) B * T * stride * sizeof(double));
	for (int b = 0; b < B; b++)
		for (int h = 0; h < s.n_heads; h++)
		{
			int			len = lengths[b];
			int			qc = h * s.head_dim;
			int			kc = (s.n_heads + h / group) * s.head_dim;
			int			vc = kc + s.n_kv_heads * s.head_dim;
			const float *rows = qkv + (size_t) b * T * stride;
			double	   *drows = dqkv + (size_t) b * T * stride;
			const float *dO = probe + (size_t) b * T * out_stride + qc;
			double	   *O = out + (size_t) b * T * out_stride + qc;

			for (int i = 0; i < len; i++)
			{
				double		max = -INFINITY,
							sum = 0.0;

				for (int j = 0; j < len; j++)
				{
					double		dot = 0.0;

					for (int e = 0; e < s.head_dim; e++)
						dot += (double) rows[i * stride + qc + e] * rows[j * stride + kc + e];
					P[i * T + j] = j <= i || j < prefix[b] ? dot * scale : -INFINITY;
					max = fmax(max, P[i * T + j]);
				}
				for (int j = 0; j < len; j++)
					sum += (P[i * T + j] = exp(P[i * T + j] - max));
				for (int j = 0; j < len; j++)
					P[i * T + j] /= sum;
				lse[((size_t) b * s.n_heads + h) * T + i] = max + log(sum);
				for (int e = 0; e < s.head_dim; e++)
					for (int j = 0; j < len; j++)
						O[i * out_stride + e] += P[i * T + j] * rows[j * stride + vc + e];
			}
			/* dP = dO V^T, dV += P^T dO, dS = P (dP - rowsum(P dP)) */
			for (int i = 0; i < len; i++)
			{
				double		dot = 0.0;

				for (int j = 0; j < len; j++)
				{
					dP[i * T + j] = 0.0;
					for (int e = 0; e < s.head_dim; e++)
					{
						dP[i * T + j] += (double) dO[i * out_stride + e] * rows[j * stride + vc + e];
						drows[j * stride + vc + e] += P[i * T + j] * dO[i * out_stride + e];
					}
					dot += P[i * T + j] * dP[i * T + j];
				}
				for (int j = 0; j < len; j++)
					dP[i * T + j] = P[i * T + j] * (dP[i * T + j] - dot);
			}
			/* dQ = scale dS K, dK += scale dS^T Q */
			for (int i = 0; i < len; i++)
				for (int j = 0; j < len; j++)
					for (int e = 0; e < s.head_dim; e++)
					{
						drows[i * stride + qc + e] += scale * dP[i * T + j] * rows[j * stride + kc + e];
						drows[j * stride + kc + e] += scale * dP[i * T + j] * rows[i * stride + qc + e];
					}
		}
	free(P);
	free(dP);
}

/*
 * The op against reference_attention() on 4 sequences of row length 150
 * (three tiles of queries) with padding (lengths 150, 97, 65 = one tile
 * and a row, 1): the output, the log-normalizers and the input gradient
 * agree within float rounding, and padding rows are exactly 0.
 */
static void
check_attention_reference(const char *what, int n_heads, int n_kv_heads,
						  const int32_t *prefix)
{
	enum
	{
		B = 4, T = 150, HD = 8
	};
	static const int32_t lengths[B] = {150, 97, 65, 1};
	AttentionShape s = {n_heads, n_kv_heads, HD};
	size_t		n_qkv = (size_t) B * T * (n_heads + 2 * n_kv_heads) * HD;
	size_t		n_out = (size_t) B * T * n_heads * HD;
	size_t		n_lse = (size_t) B * n_heads * T;
	float	   *qkv = random_array(n_qkv, 2.0f);
	float	   *probe = random_array(n_out, 1.0f);
	float	   *out = random_array(n_out, 1.0f);
	float	   *lse = random_array(n_lse, 1.0f);
	float	   *dqkv = random_array(n_qkv, 1.0f);
	float	   *scratch = malloc(attention_scratch_floats(T) * sizeof(float));
	double	   *ref_out = malloc(n_out * sizeof(double));
	double	   *ref_lse = malloc(n_lse * sizeof(double));
	double	   *ref_dqkv = malloc(n_qkv * sizeof(double));
	double		err_out,
				err_lse,
				err_dqkv;
	bool		padding_zero = true;
	float	   *lse_real = malloc(n_lse * sizeof(float));

	CHECK(T > 2 * ATTENTION_TILE_ROWS && lengths[2] == ATTENTION_TILE_ROWS + 1);
	/* padding rows of probe are not gradients of anything: 0 */
	for (int b = 0; b < B; b++)
		for (int t = lengths[b]; t < T; t++)
			memset(probe + ((size_t) b * T + t) * n_heads * HD, 0,
				   n_heads * HD * sizeof(float));
	attention_forward(out, lse, scratch, qkv, lengths, prefix, B, T, s);
	attention_backward(dqkv, scratch, probe, qkv, lse, lengths, prefix, B, T, s);
	reference_attention(ref_out, ref_lse, ref_dqkv, qkv, probe, lengths, prefix,
						B, T, s);

	/* lse of padding rows is not defined: compare real rows only */
	for (size_t i = 0; i < n_lse; i++)
	{
		int			b = (int) (i / ((size_t) n_heads * T));
		int			t = (int) (i % T);

		lse_real[i] = t < lengths[b] ? lse[i] : 0.0f;
	}
	err_out = relative_error(out, ref_out, n_out);
	err_lse = relative_error(lse_real, ref_lse, n_lse);
	err_dqkv = relative_error(dqkv, ref_dqkv, n_qkv);
	for (int b = 0; b < B; b++)
		for (int t = lengths[b]; t < T; t++)
		{
			const float *o = out + ((size_t) b * T + t) * n_heads * HD;
			const float *d = dqkv + ((size_t) b * T + t) * (n_heads + 2 * n_kv_heads) * HD;

			for (int e = 0; e < n_heads * HD; e++)
				padding_zero &= o[e] == 0.0f;
			for (int e = 0; e < (n_heads + 2 * n_kv_heads) * HD; e++)
				padding_zero &= d[e] == 0.0f;
		}
	printf("  %-42s vs kept weights: rel err out %.1e, lse %.1e, dqkv %.1e\n",
		   what, err_out, err_lse, err_dqkv);
	CHECKF(err_out < 1e-5 && err_lse < 1e-5 && err_dqkv < 1e-5,
		   "%s: out %g, lse %g, dqkv %g", what, err_out, err_lse, err_dqkv);
	CHECKF(padding_zero, "%s: padding rows are not 0", what);
	free(qkv);
	free(probe);
	free(out);
	free(lse);
	free(lse_real);
	free(dqkv);
	free(scratch);
	free(ref_out);
	free(ref_lse);
	free(ref_dqkv);
}

static void
test_attention(void)
{
	int32_t		causal[AT_B] = {0, 0, 0};
	int32_t		prefix_lm[AT_B] = {3, 2, 0};

	check_attention("attention, causal, GQA, padding", causal);
	check_attention("attention, prefix-LM, GQA, padding", prefix_lm);
}

/*
 * Run last, so that the random numbers of the other tests are the ones
 * they had before it.
 */
static void
test_attention_against_kept_weights(void)
{
	int32_t		no_prefix[4] = {0, 0, 0, 0};
	/* across tiles, at a tile's edge, the whole sequence, one token */
	int32_t		prefixes[4] = {70, 97, 64, 1};

	check_attention_reference("causal, GQA 4/2", 4, 2, no_prefix);
	check_attention_reference("prefix-LM, GQA 4/2", 4, 2, prefixes);
	check_attention_reference("causal, 3 heads", 3, 3, no_prefix);
	check_attention_reference("prefix-LM, one key/value head of 4", 4, 1, prefixes);
}

/* ---------------------------------------------------------------- */
/* Whole model */

static void
tiny_config(ModelConfig *c, bool prefix_lm, bool tied, int n_kv_heads,
			bool qkv_bias, float dropout)
{
	model_config_default(c, 11, 8, 2, 2);
	c->n_kv_heads = n_kv_heads;
	c->d_ff = 12;
	c->max_seq_len = 8;
	c->prefix_lm = prefix_lm;
	c->tied_embeddings = tied;
	c->qkv_bias = qkv_bias;
	c->dropout = dropout;
}

static Model *
new_model(const ModelConfig *c, uint64_t seed, int batch, int seq)
{
	CoreError	err = {0};
	Model	   *m = model_create(c, &err);

	CHECKF(m != NULL, "model_create: %s", err.message);
	model_init_weights(m, seed);
	if (batch > 0)
		CHECKF(model_alloc_training(m, batch, seq, &err),
			   "alloc: %s", err.message);
	return m;
}

/* A fixed batch of 3 sequences of row length 7 for the gradient check. */
typedef struct ModelCtx
{
	Model	   *model;
	ModelBatch	batch;
	int32_t		tokens[21];
	int32_t		lengths[3];
	int32_t		prefix[3];
	float		weights[21];
} ModelCtx;

static void
fill_model_ctx(ModelCtx *c, Model *model)
{
	static const int32_t lengths[3] = {7, 5, 6};
	static const int32_t prefix[3] = {3, 2, 4};

	c->model = model;
	memcpy(c->lengths, lengths, sizeof(lengths));
	memcpy(c->prefix, prefix, sizeof(prefix));
	for (int b = 0; b < 3; b++)
		for (int t = 0; t < 7; t++)
		{
			c->tokens[b * 7 + t] = random_int(model->config.vocab_size);
			c->weights[b * 7 + t] = t >= c->prefix[b] && t >= 1 && t < c->lengths[b]
				? 0.25f + (b + t) % 3 * 0.25f : 0.0f;
		}
	c->batch = (ModelBatch)
	{
		3, 7, c->tokens, c->lengths, c->prefix, c->weights, NULL
	};
}

static double
model_loss(void *p)
{
	ModelCtx   *c = p;

	c->model->dropout_step = 0;	/* the same dropout masks every time */
	return model_forward(c->model, &c->batch, true);
}

static void
check_model_gradient(const char *what, const ModelConfig *config)
{
	Model	   *model = new_model(config, 7, 3, 7);
	ModelCtx	c;
	double		worst = 0.0;
	const char *worst_name = "";

	fill_model_ctx(&c, model);
	model_zero_grad(model);
	model_loss(&c);
	model_backward(model);
	for (int i = 0; i < model->n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];
		double		err = gradient_error(model->params + t->offset,
										 model->grads + t->offset, t->numel,
										 model_loss, &c, FD_EPS);

		CHECKF(err < MODEL_TOL, "%s: %s: relative error %g", what, t->name, err);
		if (err > worst)
		{
			worst = err;
			worst_name = t->name;
		}
	}
	printf("  gradient %-34s rel err %.2e (worst: %s)\n", what, worst, worst_name);
	model_free(model);
}

static void
test_model_gradients(void)
{
	ModelConfig c;

	tiny_config(&c, true, true, 2, false, 0.0f);
	check_model_gradient("model: prefix-LM, tied", &c);
	tiny_config(&c, false, false, 1, true, 0.0f);
	check_model_gradient("model: causal, untied, GQA, bias", &c);
	tiny_config(&c, true, true, 2, false, 0.2f);
	check_model_gradient("model: prefix-LM, dropout 0.2", &c);
	/* heads of 6 (q_proj 12 x 8, o_proj 8 x 12), llama3 rope scaling */
	tiny_config(&c, false, false, 1, true, 0.0f);
	c.head_dim = 6;
	c.rope_theta = 500000.0f;
	c.rope_scaling = (ModelRopeScaling) {ROPE_SCALING_LLAMA3, 8.0f, 1.0f, 4.0f, 4};
	check_model_gradient("model: head_dim 6 != 8 / 2, llama3", &c);
}

/*
 * A batch whose 1140 targets pass the head's chunk (1024 rows at vocab
 * 4096) gives the gradient of its two halves accumulated, each one chunk.
 */
static void
test_head_chunks_and_accumulation(void)
{
	enum
	{
		B = 30, T = 40
	};
	ModelConfig c;
	Model	   *m;
	int32_t    *tokens = malloc(B * T * sizeof(int32_t));
	int32_t		lengths[B];
	float	   *weights = calloc(B * T, sizeof(float));
	float	   *whole;
	ModelBatch	batch = {B, T, tokens, lengths, NULL, weights, NULL};
	double		max_diff = 0.0,
				max_grad = 0.0;
	float		loss_whole,
				loss_halves;

	model_config_default(&c, 4096, 8, 1, 2);
	c.d_ff = 8;
	c.max_seq_len = T;
	c.prefix_lm = false;
	m = new_model(&c, 4, B, T);
	for (int i = 0; i < B * T; i++)
	{
		tokens[i] = random_int(4096);
		weights[i] = i % T >= 2 ? 1.0f / (B * (T - 2)) : 0.0f;
	}
	for (int b = 0; b < B; b++)
		lengths[b] = T;

	model_zero_grad(m);
	loss_whole = model_forward(m, &batch, false);
	model_backward(m);
	whole = malloc(m->n_params * sizeof(float));
	memcpy(whole, m->grads, m->n_params * sizeof(float));

	model_zero_grad(m);
	batch.batch_size = B / 2;
	loss_halves = model_forward(m, &batch, false);
	model_backward(m);
	batch.tokens += B / 2 * T;
	batch.weights += B / 2 * T;
	loss_halves += model_forward(m, &batch, false);
	model_backward(m);

	for (size_t i = 0; i < m->n_params; i++)
	{
		max_diff = fmax(max_diff, fabs(whole[i] - m->grads[i]));
		max_grad = fmax(max_grad, fabs(whole[i]));
	}
	printf("  head in chunks vs two accumulated halves: loss %.6f / %.6f, "
		   "gradient rel diff %.2e\n", loss_whole, loss_halves, max_diff / max_grad);
	CHECK(fabsf(loss_whole - loss_halves) < 1e-5f * loss_whole);
	CHECK(max_diff / max_grad < 1e-5);
	free(tokens);
	free(weights);
	free(whole);
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Overfitting 8 examples */

enum
{
	FIT_N = 8, FIT_PREFIX = 6, FIT_TARGET = 4, FIT_T = FIT_PREFIX + FIT_TARGET,
	FIT_V = 24, FIT_EOS = 1
};

static void
test_overfit(void)
{
	ModelConfig config;
	OptimConfig oc;
	Model	   *model;
	Optimizer  *opt;
	int32_t		tokens[FIT_N * FIT_T];
	int32_t		lengths[FIT_N];
	int32_t		prefix[FIT_N];
	float		weights[FIT_N * FIT_T] = {0};
	ModelBatch	batch = {FIT_N, FIT_T, tokens, lengths, prefix, weights, NULL};
	float		loss = 0.0f;
	int			step;
	int			correct = 0;
	CoreError	err = {0};

	/* "<task> x x x x x -> y y y <eos>", weights averaging over targets */
	for (int b = 0; b < FIT_N; b++)
	{
		lengths[b] = FIT_T;
		prefix[b] = FIT_PREFIX;
		tokens[b * FIT_T] = 2;
		for (int t = 1; t < FIT_T; t++)
			tokens[b * FIT_T + t] = 3 + random_int(FIT_V - 3);
		tokens[b * FIT_T + FIT_T - 1] = FIT_EOS;
		for (int t = FIT_PREFIX; t < FIT_T; t++)
			weights[b * FIT_T + t] = 1.0f / (FIT_N * FIT_TARGET);
	}

	model_config_default(&config, FIT_V, 32, 2, 2);
	config.max_seq_len = 16;
	model = new_model(&config, 1, FIT_N, FIT_T);
	optim_config_default(&oc, 1e-2f, 300);
	oc.weight_decay = 0.0f;
	opt = optim_create(model, &oc, &err);
	for (step = 0; step < 300; step++)
	{
		model_zero_grad(model);
		loss = model_forward(model, &batch, true);
		model_backward(model);
		optim_step(opt, model);
		if (loss < 0.01f)
			break;
	}
	printf("  overfit: 8 examples, loss %.4f after %d steps\n", loss, step + 1);
	CHECKF(loss < 0.05f, "overfit loss %g", loss);

	/* the trained model decodes each target and ranks it first */
	for (int b = 0; b < FIT_N; b++)
	{
		int32_t		out[8];
		int			n = model_generate_greedy(model, tokens + b * FIT_T, FIT_PREFIX,
											  8, FIT_EOS, out, NULL, &err);
		const int32_t *cands[FIT_N];
		int			lens[FIT_N];
		double		scores[FIT_N];
		int			best = 0;

		if (n == FIT_TARGET - 1 &&
			memcmp(out, tokens + b * FIT_T + FIT_PREFIX, n * sizeof(int32_t)) == 0)
			correct++;
		for (int k = 0; k < FIT_N; k++)
		{
			cands[k] = tokens + k * FIT_T + FIT_PREFIX;
			lens[k] = FIT_TARGET;
		}
		model_score_candidates(model, tokens + b * FIT_T, FIT_PREFIX, cands, lens,
							   FIT_N, scores, &err);
		for (int k = 1; k < FIT_N; k++)
			if (scores[k] > scores[best])
				best = k;
		CHECKF(best == b, "example %d: best candidate %d", b, best);
	}
	CHECKF(correct == FIT_N, "greedy decoding reproduced %d of %d targets",
		   correct, FIT_N);
	optim_free(opt);
	model_free(model);
}

/* ---------------------------------------------------------------- */
/* Prediction agrees with the training forward */

/* log p of each token of row b (weights on tokens from `from`), by training forward */
static void
training_logprobs(Model *model, const int32_t *tokens, int B, int T,
				  const int32_t *lengths, int prefix_len, int from,
				  float *token_nll)
{
	int32_t    *prefix = malloc(B * sizeof(int32_t));
	float	   *weights = calloc(B * T, sizeof(float));
	ModelBatch	batch = {B, T, tokens, lengths, prefix, weights, token_nll};

	for (int b = 0; b < B; b++)
	{
		prefix[b] = prefix_len;
		for (int t = from; t < lengths[b]; t++)
			weights[b * T + t] = 1.0f;
	}
	model_forward(model, &batch, false);
	free(prefix);
	free(weights);
}

/*
 * The same predictions from the packed matrices (packed.h) as from the
 * plain ones: scores within float rounding, the same greedy tokens.
 */
static void
check_packed_prediction(const char *what, Model *model, const int32_t *prefix,
						int P, const int32_t *const *cands, const int *cand_lens,
						int K, const double *plain_scores)
{
	double		scores[8];
	int32_t		plain_out[4];
	int32_t		packed_out[4];
	int			n_plain;
	int			n_packed;
	double		max_diff = 0.0;
	CoreError	err = {0};

	n_plain = model_generate_greedy(model, prefix, P, 4, -1, plain_out, NULL,
									&err);
	CHECKF(model_pack_for_prediction(model, &err), "%s", err.message);
	CHECK(model->packed != NULL);
	CHECK(model_score_candidates(model, prefix, P, cands, cand_lens, K, scores,
								 &err));
	for (int k = 0; k < K; k++)
		max_diff = fmax(max_diff, fabs(scores[k] - plain_scores[k]));
	n_packed = model_generate_greedy(model, prefix, P, 4, -1, packed_out, NULL,
									 &err);
	printf("  %s: packed vs plain matrices, max |score diff| %.2e\n", what, max_diff);
	CHECKF(max_diff < 1e-4, "%s: packed scoring differs by %g", what, max_diff);
	CHECK(n_packed == n_plain && n_plain > 0 &&
		  memcmp(packed_out, plain_out, n_plain * sizeof(int32_t)) == 0);
	model_free_packed(model);
	CHECK(model->packed == NULL);
}

static void
check_scoring(const char *what, const ModelConfig *config)
{
	enum
	{
		P = 5, K = 3, T = 9
	};
	Model	   *model = new_model(config, 3, config->vocab_size, T);
	int32_t		prefix[P];
	int32_t		cand_tokens[K][4];
	int			cand_lens[K] = {1, 4, 2};
	const int32_t *cands[K] = {cand_tokens[0], cand_tokens[1], cand_tokens[2]};
	double		scores[K];
	int32_t		tokens[K * T] = {0};
	int32_t		lengths[K];
	float		nll[K * T];
	double		max_diff = 0.0;
	CoreError	err = {0};

	for (int j = 0; j < P; j++)
		prefix[j] = random_int(config->vocab_size);
	for (int k = 0; k < K; k++)
	{
		for (int j = 0; j < 4; j++)
			cand_tokens[k][j] = random_int(config->vocab_size);
		memcpy(tokens + k * T, prefix, sizeof(prefix));
		memcpy(tokens + k * T + P, cand_tokens[k], cand_lens[k] * sizeof(int32_t));
		lengths[k] = P + cand_lens[k];
	}
	CHECKF(model_score_candidates(model, prefix, P, cands, cand_lens, K, scores,
								  &err), "%s", err.message);
	training_logprobs(model, tokens, K, T, lengths, P, P, nll);
	for (int k = 0; k < K; k++)
	{
		double		expected = 0.0;

		for (int t = 0; t < T; t++)
			expected -= nll[k * T + t];
		max_diff = fmax(max_diff, fabs(scores[k] - expected));
	}
	printf("  %s: scoring vs training forward, max |diff| %.2e\n", what, max_diff);
	CHECKF(max_diff < 1e-4, "%s: scoring differs by %g", what, max_diff);

	/* greedy: each token is the training forward's argmax at its position */
	{
		int32_t		out[4];
		int			n = model_generate_greedy(model, prefix, P, 4, 0, out, NULL,
											  &err);
		int			V = config->vocab_size;
		int32_t    *seqs = calloc(V * T, sizeof(int32_t));
		int32_t    *lens = malloc(V * sizeof(int32_t));
		float	   *v_nll = malloc(V * T * sizeof(float));
		bool		agree = n >= 0;

		for (int j = 0; j <= n && j < 4 && agree; j++)
		{
			int			best = 0;

			/* every possible next token after prefix + out[0..j-1] */
			for (int v = 0; v < V; v++)
			{
				memcpy(seqs + v * T, prefix, sizeof(prefix));
				memcpy(seqs + v * T + P, out, j * sizeof(int32_t));
				seqs[v * T + P + j] = v;
				lens[v] = P + j + 1;
			}
			training_logprobs(model, seqs, V, T, lens, P, P + j, v_nll);
			for (int v = 1; v < V; v++)
				if (v_nll[v * T + P + j] < v_nll[best * T + P + j])
					best = v;
			/* position j holds out[j], or eos (0) when decoding stopped */
			agree = best == (j < n ? out[j] : 0);
		}
		printf("  %s: greedy decoded %d tokens, %s the training forward\n",
			   what, n, agree ? "agreeing with" : "DISAGREEING with");
		CHECKF(agree, "%s: greedy decoding", what);
		free(seqs);
		free(lens);
		free(v_nll);
	}
	check_packed_prediction(what, model, prefix, P, cands, cand_lens, K, scores);
	model_free(model);
}

static void
test_prediction(void)
{
	ModelConfig c;

	model_config_default(&c, 13, 16, 2, 4);
	c.max_seq_len = 12;
	check_scoring("prefix-LM", &c);
	c.prefix_lm = false;
	c.tied_embeddings = false;
	c.n_kv_heads = 2;
	c.qkv_bias = true;
	check_scoring("causal, untied, GQA, bias", &c);
	c.head_dim = 6;
	c.rope_theta = 1e6f;
	check_scoring("head_dim 6 != 16 / 4", &c);
	c.head_dim = 0;
	c.rope_theta = 10000.0f;

	/* bad arguments give messages, not crashes */
	{
		Model	   *m = new_model(&c, 1, 0, 0);
		int32_t		toolong[20] = {0};
		int32_t		bad = 99;
		const int32_t *cands[1] = {&bad};
		int			lens[1] = {1};
		double		score;
		CoreError	err = {0};

		CHECK(!model_score_candidates(m, toolong, 3, cands, lens, 1, &score,
									  &err) && strstr(err.message, "vocabulary"));
		CHECK(model_generate_greedy(m, toolong, 20, 4, 0, toolong, NULL, &err) == -1 && strstr(err.message, "prefix"));
		model_free(m);
	}
}

/* ---------------------------------------------------------------- */
/* Masks: no target sees a later token */

/* A stop check that says yes once its count of calls runs out. */
static bool
stop_after(void *arg)
{
	int		   *calls_left = arg;

	return --*calls_left < 0;
}

/*
 * Many candidates of many lengths are scored in groups (a thousand take
 * the memory of a group), each as it is alone; a scorer may be fed in
 * several calls; a stop between groups ends scoring and greedy decoding
 * with "interrupted".
 */
static void
test_scoring_in_groups(void)
{
	enum
	{
		P = 6, K = 600, L = 12
	};
	ModelConfig c;
	Model	   *m;
	int32_t		prefix[P];
	int32_t    *tokens = malloc(K * L * sizeof(int32_t));
	const int32_t *cands[K];
	int			lens[K];
	double	   *all = malloc(K * sizeof(double));
	double	   *fed = malloc(K * sizeof(double));
	double		worst = 0.0;
	CoreError	err = {0};
	ModelScorer *scorer;
	int			calls_left;
	StopCheck	stop = {stop_after, &calls_left};
	int32_t		out[8];

	model_config_default(&c, 50, 16, 2, 2);
	c.max_seq_len = P + L;
	m = new_model(&c, 5, 0, 0);
	for (int j = 0; j < P; j++)
		prefix[j] = random_int(50);
	for (int k = 0; k < K; k++)
	{
		cands[k] = tokens + k * L;
		lens[k] = 1 + random_int(L);
		for (int j = 0; j < lens[k]; j++)
			tokens[k * L + j] = random_int(50);
	}
	CHECKF(model_score_candidates(m, prefix, P, cands, lens, K, all, &err),
		   "%s", err.message);
	for (int k = 0; k < K; k += 7)
	{
		double		alone;

		model_score_candidates(m, prefix, P, &cands[k], &lens[k], 1, &alone, &err);
		worst = fmax(worst, fabs(alone - all[k]));
	}
	CHECKF(worst < 1e-4, "scores in groups differ from alone by %g", worst);

	scorer = model_scorer_create(m, prefix, P, L, NULL, &err);
	CHECKF(scorer != NULL, "%s", err.message);
	for (int first = 0; scorer != NULL && first < K; first += 250)
		CHECK(model_scorer_score(scorer, cands + first, lens + first,
								 K - first < 250 ? K - first : 250, fed + first,
								 &err));
	worst = 0.0;
	for (int k = 0; k < K; k++)
		worst = fmax(worst, fabs(fed[k] - all[k]));
	CHECKF(worst < 1e-4, "scores fed in parts differ by %g", worst);
	model_scorer_free(scorer);

	calls_left = 2;				/* two groups, then a stop */
	scorer = model_scorer_create(m, prefix, P, L, &stop, &err);
	CHECKF(scorer != NULL && !model_scorer_score(scorer, cands, lens, K, fed, &err) &&
		   strcmp(err.message, "interrupted") == 0 && calls_left == -1, "%s", err.message);
	model_scorer_free(scorer);
	calls_left = 1;
	CHECKF(model_generate_greedy(m, prefix, P, 8, -1, out, &stop, &err) == -1 &&
		   strcmp(err.message, "interrupted") == 0, "%s", err.message);
	free(tokens);
	free(all);
	free(fed);
	model_free(m);
}

static void
test_no_future_leak(void)
{
	enum
	{
		T = 8, P = 3
	};
	ModelConfig c;
	Model	   *m;
	int32_t		tokens[T] = {1, 2, 3, 4, 5, 6, 7, 8};
	int32_t		length = T,
				prefix = P;
	float		weights[T] = {0, 0, 0, 1, 1, 1, 1, 1};
	float		before[T],
				after[T];
	ModelBatch	batch = {1, T, tokens, &length, &prefix, weights, before};
	bool		causal_ok = true;

	tiny_config(&c, true, true, 2, false, 0.0f);
	m = new_model(&c, 2, 1, T);
	model_forward(m, &batch, false);
	batch.token_nll = after;

	/* changing token t leaves the log-probabilities of tokens <= t alone */
	for (int t = P; t < T; t++)
	{
		tokens[t] = 9;
		model_forward(m, &batch, false);
		for (int u = P; u < t; u++)
			causal_ok &= after[u] == before[u];
		causal_ok &= after[t] != before[t];
		tokens[t] = t + 1;
	}
	CHECKF(causal_ok, "a target token's probability depends on a later token");

	/* the prefix is seen both ways: its last token changes every target */
	tokens[P - 1] = 9;
	model_forward(m, &batch, false);
	for (int u = P; u < T; u++)
		CHECK(after[u] != before[u]);
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Optimizer */

static void
test_optimizer(void)
{
	ModelConfig c;
	OptimConfig oc;
	Model	   *m;
	Optimizer  *opt;
	float	   *before;
	const ModelTensor *q,
			   *norm,
			   *embed;
	float		norm_seen;
	CoreError	err = {0};

	optim_config_default(&oc, 1e-3f, 1000);
	CHECK(oc.warmup_steps == 50);
	CHECK(fabsf(optim_lr(&oc, 0) - 1e-3f / 50) < 1e-9f);
	CHECK(fabsf(optim_lr(&oc, 49) - 1e-3f) < 1e-9f);
	CHECK(fabsf(optim_lr(&oc, 525) - 0.55e-3f) < 1e-7f);	/* half way down */
	CHECK(fabsf(optim_lr(&oc, 999) - 1e-4f) < 1e-7f);
	CHECK(fabsf(optim_lr(&oc, 5000) - 1e-4f) < 1e-9f);
	oc.decay = LR_DECAY_LINEAR;
	CHECK(fabsf(optim_lr(&oc, 525) - 0.55e-3f) < 1e-7f);

	/* zero gradients: only decay moves weights, and only block matrices */
	tiny_config(&c, true, true, 2, false, 0.0f);
	m = new_model(&c, 1, 1, 4);
	optim_config_default(&oc, 1e-2f, 10);
	oc.warmup_steps = 0;
	oc.weight_decay = 0.5f;
	opt = optim_create(m, &oc, &err);
	before = malloc(m->n_params * sizeof(float));
	memcpy(before, m->params, m->n_params * sizeof(float));
	model_zero_grad(m);
	optim_step(opt, m);
	q = model_find_tensor(m, "model.layers.0.self_attn.q_proj.weight");
	norm = model_find_tensor(m, "model.layers.1.post_attention_layernorm.weight");
	embed = model_find_tensor(m, "model.embed_tokens.weight");
	CHECK(q && norm && embed);
	CHECK(m->params[q->offset] == before[q->offset] * (1.0f - 1e-2f * 0.5f));
	CHECK(m->params[norm->offset] == before[norm->offset]);
	CHECK(m->params[embed->offset] == before[embed->offset]);

	/* the norm reported is before clipping; a non-finite one changes nothing */
	for (size_t i = 0; i < m->n_params; i++)
		m->grads[i] = 10.0f / sqrtf((float) m->n_params);
	norm_seen = optim_step(opt, m);
	CHECK(fabsf(norm_seen - 10.0f) < 1e-3f);
	m->grads[0] = NAN;
	memcpy(before, m->params, m->n_params * sizeof(float));
	CHECK(isnan(optim_step(opt, m)));
	CHECK(memcmp(before, m->params, m->n_params * sizeof(float)) == 0);
	free(before);
	optim_free(opt);
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Determinism, batch checks, config checks */

static void
train_steps(Model *model, int steps)
{
	ModelCtx	c;
	OptimConfig oc;
	Optimizer  *opt;
	uint64_t	saved = rng_state;

	rng_state = 1234;
	fill_model_ctx(&c, model);
	rng_state = saved;
	optim_config_default(&oc, 1e-2f, steps);
	opt = optim_create(model, &oc, NULL);
	for (int s = 0; s < steps; s++)
	{
		model_zero_grad(model);
		model_forward(model, &c.batch, true);
		model_backward(model);
		optim_step(opt, model);
	}
	optim_free(opt);
}

static void
test_determinism(void)
{
	ModelConfig c;
	Model	   *a,
			   *b;

	tiny_config(&c, true, true, 2, false, 0.1f);
	a = new_model(&c, 5, 3, 7);
	b = new_model(&c, 5, 3, 7);
	train_steps(a, 10);
	train_steps(b, 10);
	CHECKF(memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0,
		   "same seed and data, different weights");
	model_free(b);
	b = new_model(&c, 6, 3, 7);
	train_steps(b, 10);
	CHECK(memcmp(a->params, b->params, a->n_params * sizeof(float)) != 0);
	model_free(a);
	model_free(b);
}

static void
test_checks(void)
{
	ModelConfig c;
	Model	   *m;
	ModelCtx	ctx;
	CoreError	err = {0};

	tiny_config(&c, true, true, 2, false, 0.0f);
	m = new_model(&c, 1, 3, 7);
	fill_model_ctx(&ctx, m);
	CHECK(model_check_batch(m, &ctx.batch, &err));
	ctx.tokens[4] = 11;
	CHECK(!model_check_batch(m, &ctx.batch, &err) && err.kind == CORE_ERR_INVALID_INPUT &&
		  strstr(err.message, "vocabulary"));
	CHECK(isnan(model_forward(m, &ctx.batch, true)));
	ctx.tokens[4] = 1;
	ctx.weights[1] = 1.0f;		/* inside the prefix: would see its own answer */
	CHECK(!model_check_batch(m, &ctx.batch, &err) && strstr(err.message, "weight"));
	ctx.weights[1] = 0.0f;
	ctx.lengths[2] = 8;
	CHECK(!model_check_batch(m, &ctx.batch, &err) && strstr(err.message, "length"));
	model_free(m);

	c.d_model = 10;
	CHECK(!model_config_validate(&c, &err) && strstr(err.message, "head size"));
	printf("  config error: %s\n", err.message);
	tiny_config(&c, true, true, 2, false, 0.0f);
	c.n_kv_heads = 3;
	CHECK(!model_config_validate(&c, &err));
	tiny_config(&c, true, true, 2, false, 1.0f);
	CHECK(!model_config_validate(&c, &err) && strstr(err.message, "dropout"));
	tiny_config(&c, true, true, 2, false, 0.0f);
	c.vocab_size = 0;
	CHECK(model_create(&c, &err) == NULL && strstr(err.message, "vocab_size"));
}

/* ---------------------------------------------------------------- */
/* Serialization */

static bool
configs_equal(const ModelConfig *a, const ModelConfig *b)
{
	return a->vocab_size == b->vocab_size && a->d_model == b->d_model &&
		a->n_layers == b->n_layers && a->n_heads == b->n_heads &&
		a->n_kv_heads == b->n_kv_heads && a->d_ff == b->d_ff &&
		a->max_seq_len == b->max_seq_len &&
		a->tied_embeddings == b->tied_embeddings &&
		a->prefix_lm == b->prefix_lm && a->qkv_bias == b->qkv_bias &&
		a->dropout == b->dropout && a->rope_theta == b->rope_theta &&
		a->norm_eps == b->norm_eps && a->logit_scale == b->logit_scale;
}

static void
test_serialization(void)
{
	ModelConfig c;
	Model	   *m,
			   *copy;
	size_t		size;
	uint8_t    *blob;
	uint8_t    *bad;
	CoreError	err = {0};
	int			rejected = 0,
				tries = 0;

	tiny_config(&c, false, false, 1, true, 0.1f);
	m = new_model(&c, 9, 3, 7);
	train_steps(m, 3);
	size = model_serialized_size(m);
	blob = malloc(size);
	bad = malloc(size + 1);
	model_serialize(m, blob);
	CHECK(memcmp(blob, "DSTM", 4) == 0);

	copy = model_deserialize(blob, size, &err);
	CHECKF(copy != NULL, "round trip: %s", err.message);
	if (copy != NULL)
	{
		ModelCtx	a,
					b;
		int32_t		prefix[3] = {1, 2, 3};
		int32_t		out_a[4],
					out_b[4];
		int			n_a,
					n_b;

		CHECK(configs_equal(&copy->config, &m->config));
		CHECK(memcmp(copy->params, m->params, m->n_params * sizeof(float)) == 0);
		CHECK(model_alloc_training(copy, 3, 7, &err));
		rng_state = 77;
		fill_model_ctx(&a, m);
		rng_state = 77;
		fill_model_ctx(&b, copy);
		CHECK(model_forward(m, &a.batch, false) == model_forward(copy, &b.batch, false));
		n_a = model_generate_greedy(m, prefix, 3, 4, 0, out_a, NULL, &err);
		n_b = model_generate_greedy(copy, prefix, 3, 4, 0, out_b, NULL, &err);
		CHECK(n_a == n_b && memcmp(out_a, out_b, n_a * sizeof(int32_t)) == 0);
		model_free(copy);
	}

	/* every truncation */
	for (size_t len = 0; len < size; len++)
	{
		memcpy(bad, blob, len);
		err.message[0] = '\0';
		copy = model_deserialize(bad, len, &err);
		tries++;
		rejected += copy == NULL && err.message[0] != '\0';
		model_free(copy);
	}
	/* every byte corrupted, and one bit of each */
	for (size_t i = 0; i < size; i++)
		for (int flip = 0; flip < 2; flip++)
		{
			memcpy(bad, blob, size);
			bad[i] ^= flip ? 0xFF : 1 << (i % 8);
			err.message[0] = '\0';
			copy = model_deserialize(bad, size, &err);
			tries++;
			rejected += copy == NULL && err.message[0] != '\0';
			model_free(copy);
		}
	/* a trailing byte */
	memcpy(bad, blob, size);
	bad[size] = 0;
	copy = model_deserialize(bad, size + 1, &err);
	tries++;
	rejected += copy == NULL && strstr(err.message, "expected") != NULL;
	printf("  serialization: %zu bytes; %d of %d truncated/corrupted blobs rejected\n",
		   size, rejected, tries);
	CHECK(rejected == tries);

	/* messages */
	model_deserialize(blob, size / 2, &err);
	printf("  half a blob: %s\n", err.message);
	CHECK(err.kind == CORE_ERR_CORRUPT && strstr(err.message, "truncated") != NULL);
	model_deserialize("\x89PNG\r\n\x1a\n....", 12, &err);
	printf("  foreign bytes: %s\n", err.message);
	CHECK(err.kind == CORE_ERR_CORRUPT && strstr(err.message, "not a distill model") != NULL);
	memcpy(bad, blob, size);
	bad[size - 100] ^= 0x10;
	model_deserialize(bad, size, &err);
	printf("  a flipped bit in the data: %s\n", err.message);
	CHECK(err.kind == CORE_ERR_CORRUPT && strstr(err.message, "checksum") != NULL);
	memcpy(bad, blob, size);
	bad[4] = 2;
	model_deserialize(bad, size, &err);
	printf("  a newer format: %s\n", err.message);
	CHECK(err.kind == CORE_ERR_CORRUPT && strstr(err.message, "version") != NULL);

	/* NaN and infinity under a right checksum: refused, the tensor named */
	for (int i = 0; i < 3; i++)
	{
		float		value = i == 0 ? NAN : i == 1 ? INFINITY : -INFINITY;
		size_t		at = size - 4 - sizeof(float) * (1 + m->n_params / 2);
		uint32_t	crc;

		memcpy(bad, blob, size);
		memcpy(bad + at, &value, sizeof(float));
		crc = crc32c(0, bad, size - 4);
		memcpy(bad + size - 4, &crc, 4);
		err.message[0] = '\0';
		copy = model_deserialize(bad, size, &err);
		CHECKF(copy == NULL && strstr(err.message, "is not a finite number") != NULL &&
			   strstr(err.message, "model.layers.") != NULL, "%s", err.message);
		model_free(copy);
	}
	printf("  a NaN weight: %s\n", err.message);

	/* the bound on the size is one */
	CHECK(model_serialized_size_bound(&c) >= size &&
		  model_serialized_size_bound(&c) - size < 100 * (size_t) m->n_tensors);

	free(blob);
	free(bad);
	model_free(m);
}

/*
 * A model packed for prediction only predicts exactly as one packed with
 * its plain matrices kept, holds less memory, and (where the packed kernel
 * runs) really gave the pages back: a plain weight deep inside a matrix
 * reads zero.
 */
static void
test_prediction_only(void)
{
	ModelConfig c;
	Model	   *kept;
	Model	   *released;
	int32_t		prefix[6] = {1, 5, 9, 2, 7, 3};
	int32_t		cand[2] = {4, 8};
	const int32_t *cands[1] = {cand};
	int			cand_len = 2;
	double		score_kept,
				score_released;
	int32_t		out_kept[5],
				out_released[5];
	CoreError	err = {0};

	model_config_default(&c, 97, 256, 2, 4);
	c.d_ff = 1024;				/* matrices of 1 MB: whole pages inside */
	c.max_seq_len = 16;
	c.tied_embeddings = false;
	kept = new_model(&c, 11, 0, 0);
	released = new_model(&c, 11, 0, 0);
	CHECKF(model_pack_for_prediction(kept, &err), "%s", err.message);
	CHECKF(model_pack_for_prediction_only(released, &err), "%s", err.message);
	CHECK(model_score_candidates(kept, prefix, 6, cands, &cand_len, 1, &score_kept, &err));
	CHECK(model_score_candidates(released, prefix, 6, cands, &cand_len, 1, &score_released, &err));
	CHECK(model_generate_greedy(kept, prefix, 6, 5, -1, out_kept, NULL, &err) == 5);
	CHECK(model_generate_greedy(released, prefix, 6, 5, -1, out_released, NULL, &err) == 5);
	CHECKF(score_released == score_kept, "score %.9g released, %.9g kept",
		   score_released, score_kept);
	CHECK(memcmp(out_kept, out_released, sizeof(out_kept)) == 0);
	if (packed_supported())
	{
		size_t		gate_up = (size_t) 2 * c.d_ff * c.d_model;

		CHECK(released->plain_released && !kept->plain_released);
		CHECKF(model_memory_bytes(kept) - model_memory_bytes(released) >= gate_up * sizeof(float),
			   "memory held: %zu kept, %zu released", model_memory_bytes(kept),
			   model_memory_bytes(released));
		CHECK(released->w.layers[1].gate_up[gate_up / 2] == 0.0f);
		CHECK(kept->w.layers[1].gate_up[gate_up / 2] != 0.0f);
	}
	model_free(kept);
	model_free(released);
}

int
main(void)
{
	model_set_threads(1);
	test_simple_op_gradients();
	test_exp_accuracy();
	test_rope();
	test_attention();
	test_model_gradients();
	test_head_chunks_and_accumulation();
	test_checks();
	test_no_future_leak();
	test_optimizer();
	test_prediction();
	test_prediction_only();
	test_scoring_in_groups();
	test_determinism();
	test_serialization();
	test_overfit();
	test_attention_against_kept_weights();
	return unit_summary("model");
}
