/*
 * model_ops.c - forward and backward of each operation of the student.
 *
 * Matrix products go through cblas_sgemm; everything else is plain loops
 * over contiguous rows that a compiler can vectorize.  Loops that need e^x
 * or a reduction are marked `omp simd` (built with -fopenmp-simd: no
 * OpenMP runtime) and cloned for AVX2, because libm's expf is one call per
 * element and a float sum does not vectorize unless allowed to reorder:
 * as scalar code, softmax and SwiGLU took a quarter of prediction time.
 * SwiGLU and cross-entropy, the biggest of these loops in training, also
 * share their rows among the threads of pool.h when there are enough of
 * them; rows are independent, so the results do not depend on the thread
 * count.  See model_ops.h for the conventions on accumulating versus overwriting
 * gradients.
 */
#include "core/model_ops.h"
#include "core/pool.h"
#include "core/util.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/*
 * Elements a thread's piece of a row-wise loop must reach for the loop to
 * be shared (pool.h): waking a worker costs some microseconds.
 */
#define MIN_PIECE_ELEMENTS (1 << 15)

/* Rows of row_len elements per piece. */
static size_t
min_rows(size_t row_len)
{
	return MIN_PIECE_ELEMENTS / row_len + 1;
}

/*
 * e^x within 2 ulp of expf over [-87.3, 88.7] (clamped outside it, so e^x
 * of a very negative x is ~1e-38 rather than 0; NaN for NaN, as finite
 * weights can overflow into inf - inf), in straight-line code that
 * vectorizes: e^x = 2^n e^r with n = round(x / ln 2), r = x - n ln 2 (in
 * two parts, exactly), e^r by the Cephes polynomial.
 */
static inline float
exp_vec(float x)
{
	const float round_magic = 12582912.0f;	/* 1.5 * 2^23: adding it rounds */
	int32_t		two_n_bits;
	float		c,
				two_n,
				n,
				r,
				p;

	/*
	 * fminf(fmaxf(x, lo), hi) as comparisons, which vectorize (gcc 12 keeps
	 * fminf and fmaxf scalar calls): a NaN fails x > lo and takes the
	 * bound, so that n is always a small integer
	 */
	c = x > -87.3365f ? x : -87.3365f;
	c = c < 88.7228f ? c : 88.7228f;
	n = (c * 1.44269504f + round_magic) - round_magic;
	r = c - n * 0.693359375f;
	r = r + n * 2.12194440e-4f;
	p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	two_n_bits = ((int32_t) n + 127) << 23;	/* n + 127 is in [1, 255] */
	memcpy(&two_n, &two_n_bits, sizeof(two_n));
	/* a NaN stays one, for the callers' checks of finite results */
	return x == x ? p * two_n : x;
}

/* ---------------------------------------------------------------- */
/* Embedding */

void
embedding_forward(float *out, const int32_t *tokens, const float *table,
				  int n, int d)
{
	for (int r = 0; r < n; r++)
		memcpy(out + (size_t) r * d, table + (size_t) tokens[r] * d,
			   d * sizeof(float));
}

void
embedding_backward(float *dtable, const float *dout, const int32_t *tokens,
				   int n, int d)
{
	for (int r = 0; r < n; r++)
	{
		float	   *dst = dtable + (size_t) tokens[r] * d;
		const float *src = dout + (size_t) r * d;

		for (int i = 0; i < d; i++)
			dst[i] += src[i];
	}
}

/* ---------------------------------------------------------------- */
/* RMSNorm */

VECTOR_CLONES void
rmsnorm_forward(float *out, float *rstd, const float *x, const float *gain,
				int n, int d, float eps)
{
	for (int r = 0; r < n; r++)
	{
		const float *xr = x + (size_t) r * d;
		float	   *outr = out + (size_t) r * d;
		float		sumsq = 0.0f;
		float		rs;

#pragma omp simd reduction(+:sumsq)
		for (int i = 0; i < d; i++)
			sumsq += xr[i] * xr[i];
		rs = 1.0f / sqrtf(sumsq / d + eps);
		rstd[r] = rs;
		for (int i = 0; i < d; i++)
			outr[i] = xr[i] * rs * gain[i];
	}
}

/*
 * With xhat = x * rstd and g = dout * gain:
 *   dx = rstd * (g - xhat * mean(g * xhat)),  dgain = sum_rows dout * xhat.
 */
void
rmsnorm_backward(float *dx, float *dgain, const float *dout, const float *x,
				 const float *rstd, const float *gain, int n, int d)
{
	for (int r = 0; r < n; r++)
	{
		const float *xr = x + (size_t) r * d;
		const float *doutr = dout + (size_t) r * d;
		float	   *dxr = dx + (size_t) r * d;
		float		rs = rstd[r];
		float		dot = 0.0f;

		if (dgain != NULL)
			for (int i = 0; i < d; i++)
				dgain[i] += doutr[i] * (xr[i] * rs);
		for (int i = 0; i < d; i++)
			dot += doutr[i] * gain[i] * (xr[i] * rs);
		dot /= d;
		for (int i = 0; i < d; i++)
			dxr[i] += rs * (doutr[i] * gain[i] - xr[i] * rs * dot);
	}
}

/* ---------------------------------------------------------------- */
/* Linear */

void
linear_forward(float *out, const float *in, const float *weight,
			   const float *bias, int n, int in_dim, int out_dim)
{
	if (n == 0)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out_dim, in_dim,
				1.0f, in, in_dim, weight, in_dim, 0.0f, out, out_dim);
	if (bias == NULL)
		return;
	for (int r = 0; r < n; r++)
	{
		float	   *outr = out + (size_t) r * out_dim;

		for (int o = 0; o < out_dim; o++)
			outr[o] += bias[o];
	}
}

/*
 * din = dout @ weight; dweight += dout^T @ in; dbias += column sums (each
 * of dweight, dbias skipped when NULL: a frozen weight).
 */
void
linear_backward(float *din, float *dweight, float *dbias, const float *dout,
				const float *in, const float *weight, int n, int in_dim,
				int out_dim)
{
	if (n == 0)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in_dim, out_dim,
				1.0f, dout, out_dim, weight, in_dim, 0.0f, din, in_dim);
	if (dweight != NULL)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_dim, in_dim, n,
					1.0f, dout, out_dim, in, in_dim, 1.0f, dweight, in_dim);
	if (dbias == NULL)
		return;
	for (int r = 0; r < n; r++)
	{
		const float *doutr = dout + (size_t) r * out_dim;

		for (int o = 0; o < out_dim; o++)
			dbias[o] += doutr[o];
	}
}

/* ---------------------------------------------------------------- */
/* Rotary position embedding */

/*
 * "Rotate half" layout (Hugging Face Llama, Qwen2): the pair rotated by
 * angle pos * theta^(-2i/head_dim) is (x[i], x[i + head_dim/2]).  The
 * backward is the rotation by the opposite angle, hence sin_sign.
 */
static void
rope_rotate(float *x, int n, int row_stride, int n_heads, int head_dim,
			const int32_t *positions, const float *cos, const float *sin,
			float sin_sign)
{
	int			half = head_dim / 2;

	for (int r = 0; r < n; r++)
	{
		const float *c = cos + (size_t) positions[r] * half;
		const float *s = sin + (size_t) positions[r] * half;

		for (int h = 0; h < n_heads; h++)
		{
			float	   *v = x + (size_t) r * row_stride + h * head_dim;

			for (int i = 0; i < half; i++)
			{
				float		a = v[i];
				float		b = v[i + half];
				float		si = sin_sign * s[i];

				v[i] = a * c[i] - b * si;
				v[i + half] = b * c[i] + a * si;
			}
		}
	}
}

void
rope_forward(float *x, int n, int row_stride, int n_heads, int head_dim,
			 const int32_t *positions, const float *cos, const float *sin)
{
	rope_rotate(x, n, row_stride, n_heads, head_dim, positions, cos, sin,
				1.0f);
}

void
rope_backward(float *dx, int n, int row_stride, int n_heads, int head_dim,
			  const int32_t *positions, const float *cos, const float *sin)
{
	rope_rotate(dx, n, row_stride, n_heads, head_dim, positions, cos, sin,
				-1.0f);
}

/* ---------------------------------------------------------------- */
/* Attention */

/*
 * Softmax over the first n_visible of the n entries of row, in place; the
 * masked entries after them become 0.  Returns the log of the normalizer,
 * log(sum(e^row[j])) over the visible entries, from which backward makes
 * the weights again.
 */
VECTOR_CLONES static float
softmax_visible(float *row, int n_visible, int n)
{
	float		max = row[0];
	float		sum = 0.0f;
	float		inv;

#pragma omp simd reduction(max:max)
	for (int j = 1; j < n_visible; j++)
		max = row[j] > max ? row[j] : max;
#pragma omp simd reduction(+:sum)
	for (int j = 0; j < n_visible; j++)
	{
		row[j] = exp_vec(row[j] - max);
		sum += row[j];
	}
	inv = 1.0f / sum;
	for (int j = 0; j < n_visible; j++)
		row[j] *= inv;
	for (int j = n_visible; j < n; j++)
		row[j] = 0.0f;
	return max + logf(sum);
}

/* The weights of a row from its scores: e^(s - lse), 0 where masked. */
VECTOR_CLONES static void
softmax_again(float *row, float lse, int n_visible, int n)
{
#pragma omp simd
	for (int j = 0; j < n_visible; j++)
		row[j] = exp_vec(row[j] - lse);
	for (int j = n_visible; j < n; j++)
		row[j] = 0.0f;
}

/*
 * dS = P * (dP - rowsum(P * dP)), in place of dP, on a row of n entries
 * (0 where P is 0: masked).
 */
VECTOR_CLONES static void
softmax_backward_row(float *dp, const float *p, int n)
{
	float		dot = 0.0f;

#pragma omp simd reduction(+:dot)
	for (int j = 0; j < n; j++)
		dot += p[j] * dp[j];
#pragma omp simd
	for (int j = 0; j < n; j++)
		dp[j] = p[j] * (dp[j] - dot);
}

/* Keys a query at position i sees: j < max(i + 1, n_bidir). */
static inline int
visible_keys(int i, int n_bidir)
{
	return i + 1 > n_bidir ? i + 1 : n_bidir;
}

/*
 * Pointers to the q, k and v columns of head h in rows of qkv: query heads
 * come first, then key heads, then value heads; query head h uses key/value
 * head h / (n_heads / n_kv_heads), as Hugging Face's repeat_kv.
 */
static inline int
q_column(AttentionShape s, int h)
{
	return h * s.head_dim;
}

static inline int
k_column(AttentionShape s, int h)
{
	return (s.n_heads + h / (s.n_heads / s.n_kv_heads)) * s.head_dim;
}

static inline int
v_column(AttentionShape s, int h)
{
	return k_column(s, h) + s.n_kv_heads * s.head_dim;
}

/* Floats of one lane's scratch: two tiles of scores. */
static size_t
lane_scratch_floats(int T)
{
	size_t		rows = T < ATTENTION_TILE_ROWS ? T : ATTENTION_TILE_ROWS;

	return 2 * rows * T;
}

/*
 * The work is split into lanes: lane k takes the (sequence, key/value
 * head) pairs k, k + lanes, ..., each with the query heads of its group.
 * A pair is computed the same way whichever lane or thread takes it, so
 * the result does not depend on the thread count; the lane count only
 * bounds how many threads can share the work.  The scratch has room for
 * ATTENTION_LANES whatever the batch, so that the memory a batch takes
 * grows linearly with its sequences, as the trainer's plan assumes.
 */
static int
attention_lanes(int B, AttentionShape s)
{
	int			pairs = B * s.n_kv_heads;

	return pairs < ATTENTION_LANES ? pairs : ATTENTION_LANES;
}

size_t
attention_scratch_floats(int T)
{
	return ATTENTION_LANES * lane_scratch_floats(T);
}

/*
 * One tile of a head's attention: queries first .. first + rows - 1 of a
 * sequence, over the keys 0 .. n_keys - 1 that the last of them sees.
 */
typedef struct AttentionTile
{
	int			first;
	int			rows;
	int			n_keys;
} AttentionTile;

/*
 * The tiles of a sequence of length len and prefix p: ATTENTION_TILE_ROWS
 * queries each, the last one shorter.  Keys that no query of a tile sees
 * are left out of its products: under the causal mask a sequence of
 * length L takes about (L + ATTENTION_TILE_ROWS) / 2L of the L x L block.
 */
static inline AttentionTile
attention_tile(int first, int len, int prefix)
{
	AttentionTile t;

	t.first = first;
	t.rows = len - first < ATTENTION_TILE_ROWS ? len - first : ATTENTION_TILE_ROWS;
	t.n_keys = visible_keys(first + t.rows - 1, prefix);
	return t;
}

/*
 * Scaled scores S = scale Q K^T of a tile of head h into scores
 * [rows, n_keys]; rows points at the sequence's first row of qkv.
 */
static void
tile_scores(float *scores, const float *rows, AttentionTile t,
			AttentionShape s, int h)
{
	int			qkv_stride = (s.n_heads + 2 * s.n_kv_heads) * s.head_dim;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
				t.rows, t.n_keys, s.head_dim, 1.0f / sqrtf((float) s.head_dim),
				rows + (size_t) t.first * qkv_stride + q_column(s, h), qkv_stride,
				rows + k_column(s, h), qkv_stride,
				0.0f, scores, t.n_keys);
}

/* What attention's lanes share: the arguments of the call. */
typedef struct AttentionJob AttentionJob;

/* The work of one sequence b and query head h, in a lane's scratch. */
typedef void (*AttentionHead) (const AttentionJob *job, float *scratch, int b, int h);

struct AttentionJob
{
	AttentionHead head;			/* forward or backward */
	float	   *out;			/* forward: out; backward: dqkv */
	float	   *lse_out;		/* forward */
	const float *lse;			/* backward */
	float	   *scratch;
	const float *qkv;
	const float *dout;
	const int32_t *lengths;
	const int32_t *prefix_lengths;
	int			B;
	int			T;
	AttentionShape s;
};

/*
 * A lane's pairs, each with its group's query heads in order (backward
 * adds their dK and dV up the same way each time).
 */
static void
attention_lane(void *arg, int lane)
{
	const AttentionJob *job = arg;
	int			lanes = attention_lanes(job->B, job->s);
	int			n_kv = job->s.n_kv_heads;
	int			group = job->s.n_heads / n_kv;
	float	   *scratch = job->scratch + (size_t) lane * lane_scratch_floats(job->T);

	for (int pair = lane; pair < job->B * n_kv; pair += lanes)
		for (int k = 0; k < group; k++)
			job->head(job, scratch, pair / n_kv, pair % n_kv * group + k);
}

/*
 * Run the lanes on the pool, each with OpenBLAS on one thread: the
 * products of a tile are small, and OpenBLAS's own threads would only
 * compete with the pool's for the cores.
 */
static void
run_lanes(AttentionJob *job)
{
	int			blas_threads = openblas_get_num_threads();

	if (blas_threads > 1)
		openblas_set_num_threads(1);
	pool_run(attention_lanes(job->B, job->s), attention_lane, job);
	if (blas_threads > 1)
		openblas_set_num_threads(blas_threads);
}

/* One sequence b and query head h, forward. */
static void
attention_forward_head(const AttentionJob *job, float *scratch, int b, int h)
{
	AttentionShape s = job->s;
	int			qkv_stride = (s.n_heads + 2 * s.n_kv_heads) * s.head_dim;
	int			out_stride = s.n_heads * s.head_dim;
	int			len = job->lengths[b];
	int			prefix = job->prefix_lengths ? job->prefix_lengths[b] : 0;
	const float *rows = job->qkv + (size_t) b * job->T * qkv_stride;
	float	   *head_lse = job->lse_out + ((size_t) b * s.n_heads + h) * job->T;

	for (int first = 0; first < len; first += ATTENTION_TILE_ROWS)
	{
		AttentionTile t = attention_tile(first, len, prefix);

		tile_scores(scratch, rows, t, s, h);
		for (int r = 0; r < t.rows; r++)
			head_lse[first + r] =
				softmax_visible(scratch + (size_t) r * t.n_keys,
								visible_keys(first + r, prefix), t.n_keys);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
					t.rows, s.head_dim, t.n_keys, 1.0f,
					scratch, t.n_keys,
					rows + v_column(s, h), qkv_stride,
					0.0f, job->out + ((size_t) b * job->T + first) * out_stride + q_column(s, h),
					out_stride);
	}
}

/*
 * Per sequence, head and tile of queries, only the keys of real tokens
 * the queries see are multiplied: padding neither attends nor is attended
 * to.  The weights are not kept, only each row's log-normalizer.
 */
void
attention_forward(float *out, float *lse, float *scratch, const float *qkv,
				  const int32_t *lengths, const int32_t *prefix_lengths,
				  int B, int T, AttentionShape s)
{
	AttentionJob job = {.head = attention_forward_head, .out = out, .lse_out = lse,
		.scratch = scratch, .qkv = qkv, .lengths = lengths,
	.prefix_lengths = prefix_lengths, .B = B, .T = T, .s = s};

	memset(out, 0, (size_t) B * T * s.n_heads * s.head_dim * sizeof(float));
	run_lanes(&job);
}

/* One sequence b and query head h, backward: dQ of h, dK and dV added. */
static void
attention_backward_head(const AttentionJob *job, float *scratch, int b, int h)
{
	AttentionShape s = job->s;
	int			qkv_stride = (s.n_heads + 2 * s.n_kv_heads) * s.head_dim;
	int			out_stride = s.n_heads * s.head_dim;
	float		scale = 1.0f / sqrtf((float) s.head_dim);
	int			len = job->lengths[b];
	int			prefix = job->prefix_lengths ? job->prefix_lengths[b] : 0;
	const float *rows = job->qkv + (size_t) b * job->T * qkv_stride;
	float	   *drows = job->out + (size_t) b * job->T * qkv_stride;
	const float *head_lse = job->lse + ((size_t) b * s.n_heads + h) * job->T;
	float	   *p = scratch;
	float	   *dp = scratch + lane_scratch_floats(job->T) / 2;

	for (int first = 0; first < len; first += ATTENTION_TILE_ROWS)
	{
		AttentionTile t = attention_tile(first, len, prefix);
		const float *dO = job->dout + ((size_t) b * job->T + first) * out_stride +
			q_column(s, h);

		tile_scores(p, rows, t, s, h);
		for (int r = 0; r < t.rows; r++)
			softmax_again(p + (size_t) r * t.n_keys, head_lse[first + r],
						  visible_keys(first + r, prefix), t.n_keys);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
					t.n_keys, s.head_dim, t.rows, 1.0f,
					p, t.n_keys, dO, out_stride,
					1.0f, drows + v_column(s, h), qkv_stride);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
					t.rows, t.n_keys, s.head_dim, 1.0f,
					dO, out_stride, rows + v_column(s, h), qkv_stride,
					0.0f, dp, t.n_keys);
		for (int r = 0; r < t.rows; r++)
			softmax_backward_row(dp + (size_t) r * t.n_keys,
								 p + (size_t) r * t.n_keys, t.n_keys);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
					t.rows, s.head_dim, t.n_keys, scale,
					dp, t.n_keys, rows + k_column(s, h), qkv_stride,
					1.0f, drows + (size_t) first * qkv_stride + q_column(s, h),
					qkv_stride);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
					t.n_keys, s.head_dim, t.rows, scale,
					dp, t.n_keys,
					rows + (size_t) first * qkv_stride + q_column(s, h), qkv_stride,
					1.0f, drows + k_column(s, h), qkv_stride);
	}
}

/*
 * Per tile, the weights P = e^(S - lse) are made again from Q and K (the
 * one product more than a backward that keeps them); then with S the
 * scaled scores and O = P V:
 *   dV += P^T dO,  dP = dO V^T,
 *   dS = P * (dP - rowsum(P * dP))    (0 where masked, since P is 0 there),
 *   dQ = scale dS K,  dK += scale dS^T Q.
 * dV and dK accumulate over the tiles, and over the query heads of a group,
 * which share them: a group is one lane's.
 */
void
attention_backward(float *dqkv, float *scratch, const float *dout,
				   const float *qkv, const float *lse,
				   const int32_t *lengths, const int32_t *prefix_lengths,
				   int B, int T, AttentionShape s)
{
	AttentionJob job = {.head = attention_backward_head, .out = dqkv, .lse = lse,
		.scratch = scratch, .qkv = qkv, .dout = dout, .lengths = lengths,
	.prefix_lengths = prefix_lengths, .B = B, .T = T, .s = s};

	memset(dqkv, 0, (size_t) B * T * (s.n_heads + 2 * s.n_kv_heads) * s.head_dim *
		   sizeof(float));
	run_lanes(&job);
}

void
attention_cached_forward(float *out, float *scratch, const float *q,
						 int q_stride, const float *k_cache,
						 const float *v_cache, int n_past, int n_new,
						 int n_bidir, AttentionShape s)
{
	int			kv_stride = s.n_kv_heads * s.head_dim;
	int			out_stride = s.n_heads * s.head_dim;
	int			n_keys = n_past + n_new;
	float		scale = 1.0f / sqrtf((float) s.head_dim);

	for (int h = 0; h < s.n_heads; h++)
	{
		/* columns of head h's key/value head inside a cache row */
		int			kv_col = k_column(s, h) - s.n_heads * s.head_dim;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
					n_new, n_keys, s.head_dim, scale,
					q + q_column(s, h), q_stride, k_cache + kv_col, kv_stride,
					0.0f, scratch, n_keys);
		for (int i = 0; i < n_new; i++)
			softmax_visible(scratch + (size_t) i * n_keys,
							visible_keys(n_past + i, n_bidir), n_keys);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
					n_new, s.head_dim, n_keys, 1.0f,
					scratch, n_keys, v_cache + kv_col, kv_stride,
					0.0f, out + q_column(s, h), out_stride);
	}
}

/* ---------------------------------------------------------------- */
/* SwiGLU */

static inline float
sigmoid(float x)
{
	return 1.0f / (1.0f + exp_vec(-x));
}

typedef struct SwigluJob
{
	float	   *out;			/* forward: out; backward: dgate_up */
	const float *dout;			/* backward only */
	const float *gate_up;
	int			d_ff;
} SwigluJob;

VECTOR_CLONES static void
swiglu_forward_rows(void *arg, size_t begin, size_t end)
{
	SwigluJob  *job = arg;
	int			d_ff = job->d_ff;

	for (size_t r = begin; r < end; r++)
	{
		const float *gate = job->gate_up + r * 2 * d_ff;
		const float *up = gate + d_ff;
		float	   *outr = job->out + r * d_ff;

#pragma omp simd
		for (int i = 0; i < d_ff; i++)
			outr[i] = gate[i] * sigmoid(gate[i]) * up[i];
	}
}

void
swiglu_forward(float *out, const float *gate_up, int n, int d_ff)
{
	SwigluJob	job = {out, NULL, gate_up, d_ff};

	pool_run_range(n, min_rows(d_ff), swiglu_forward_rows, &job);
}

/* silu'(g) = sigmoid(g) * (1 + g * (1 - sigmoid(g))). */
VECTOR_CLONES static void
swiglu_backward_rows(void *arg, size_t begin, size_t end)
{
	SwigluJob  *job = arg;
	int			d_ff = job->d_ff;

	for (size_t r = begin; r < end; r++)
	{
		const float *gate = job->gate_up + r * 2 * d_ff;
		const float *up = gate + d_ff;
		const float *doutr = job->dout + r * d_ff;
		float	   *dgate = job->out + r * 2 * d_ff;
		float	   *dup = dgate + d_ff;

#pragma omp simd
		for (int i = 0; i < d_ff; i++)
		{
			float		sg = sigmoid(gate[i]);

			dgate[i] = doutr[i] * up[i] * sg * (1.0f + gate[i] * (1.0f - sg));
			dup[i] = doutr[i] * gate[i] * sg;
		}
	}
}

void
swiglu_backward(float *dgate_up, const float *dout, const float *gate_up,
				int n, int d_ff)
{
	SwigluJob	job = {dgate_up, dout, gate_up, d_ff};

	pool_run_range(n, min_rows(2 * d_ff), swiglu_backward_rows, &job);
}

/* ---------------------------------------------------------------- */
/* Dropout */

/*
 * Element i is dropped when the top 32 bits of splitmix64_mix(seed + i * golden
 * ratio), the SplitMix64 sequence, fall below p * 2^32; kept elements are
 * scaled by 1 / (1 - p).
 */
static void
dropout_apply(float *x, size_t n, float p, uint64_t seed)
{
	uint64_t	threshold = (uint64_t) ((double) p * 4294967296.0);
	float		keep_scale = 1.0f / (1.0f - p);

	for (size_t i = 0; i < n; i++)
	{
		uint64_t	bits = splitmix64_mix(seed + (i + 1) * 0x9E3779B97F4A7C15ull) >> 32;

		x[i] = bits < threshold ? 0.0f : x[i] * keep_scale;
	}
}

void
dropout_forward(float *x, size_t n, float p, uint64_t seed)
{
	dropout_apply(x, n, p, seed);
}

/* The same mask and scale, applied to the gradient. */
void
dropout_backward(float *dx, size_t n, float p, uint64_t seed)
{
	dropout_apply(dx, n, p, seed);
}

/* ---------------------------------------------------------------- */
/* Output head */

void
head_forward(float *logits, const float *h, const float *weight, float scale,
			 int n, int d, int vocab)
{
	if (n == 0)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, vocab, d,
				scale, h, d, weight, d, 0.0f, logits, vocab);
}

/* dh = scale dlogits @ weight; dweight += scale dlogits^T @ h. */
void
head_backward(float *dh, float *dweight, const float *dlogits, const float *h,
			  const float *weight, float scale, int n, int d, int vocab)
{
	if (n == 0)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, vocab,
				scale, dlogits, vocab, weight, d, 0.0f, dh, d);
	if (dweight != NULL)
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, vocab, d, n,
					scale, dlogits, vocab, h, d, 1.0f, dweight, d);
}

/* ---------------------------------------------------------------- */
/* Cross-entropy */

typedef struct CrossEntropyJob
{
	float	   *nll;
	float	   *lse;
	const float *logits;
	const int32_t *targets;
	int			vocab;
} CrossEntropyJob;

VECTOR_CLONES static void
crossentropy_forward_rows(void *arg, size_t begin, size_t end)
{
	CrossEntropyJob *job = arg;
	int			vocab = job->vocab;

	for (size_t r = begin; r < end; r++)
	{
		const float *z = job->logits + r * vocab;
		float		max = z[0];
		float		sum = 0.0f;

#pragma omp simd reduction(max:max)
		for (int i = 1; i < vocab; i++)
			max = z[i] > max ? z[i] : max;
#pragma omp simd reduction(+:sum)
		for (int i = 0; i < vocab; i++)
			sum += exp_vec(z[i] - max);
		job->lse[r] = max + logf(sum);
		job->nll[r] = job->lse[r] - z[job->targets[r]];
	}
}

void
crossentropy_forward(float *nll, float *lse, const float *logits,
					 const int32_t *targets, int n, int vocab)
{
	CrossEntropyJob job = {nll, lse, logits, targets, vocab};

	pool_run_range(n, min_rows(vocab), crossentropy_forward_rows, &job);
}

typedef struct CrossEntropyBackwardJob
{
	float	   *dlogits;
	const float *logits;
	const float *lse;
	const int32_t *targets;
	const float *weights;
	int			vocab;
} CrossEntropyBackwardJob;

/* d(w * nll)/dz = w * (softmax(z) - onehot(target)). */
VECTOR_CLONES static void
crossentropy_backward_rows(void *arg, size_t begin, size_t end)
{
	CrossEntropyBackwardJob *job = arg;
	int			vocab = job->vocab;

	for (size_t r = begin; r < end; r++)
	{
		const float *z = job->logits + r * vocab;
		float	   *dz = job->dlogits + r * vocab;
		float		w = job->weights[r];
		float		lse = job->lse[r];

#pragma omp simd
		for (int i = 0; i < vocab; i++)
			dz[i] = w * exp_vec(z[i] - lse);
		dz[job->targets[r]] -= w;
	}
}

void
crossentropy_backward(float *dlogits, const float *logits, const float *lse,
					  const int32_t *targets, const float *weights, int n,
					  int vocab)
{
	CrossEntropyBackwardJob job = {dlogits, logits, lse, targets, weights,
	vocab};

	pool_run_range(n, min_rows(vocab), crossentropy_backward_rows, &job);
}

/* ---------------------------------------------------------------- */
/* Residual */

void
residual_forward(float *out, const float *a, const float *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}
