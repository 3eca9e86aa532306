/*
 * packed.c - weight matrices packed once, for products with few rows (see
 * packed.h for why).
 *
 * The kernel computes a tile of KERNEL_ROWS input rows by one panel (16
 * output columns) in 12 AVX accumulators: for each k, two loads of the
 * panel row, one broadcast per input row, two FMAs per input row.  Panels
 * are the outer loop, so each panel is read from memory once per call and
 * stays in cache while every row tile passes over it; the input rows (a
 * few dozen) stay in cache throughout.  With more than one thread
 * (pool.h) the threads take the panels in turns of several; a product
 * too small to repay waking a worker stays on the calling thread.
 */
#include "core/packed.h"
#include "core/pool.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_PACKED_KERNEL 1
#endif

/* Input rows per tile: 6 x 2 accumulators + 2 panel + 1 broadcast registers of 16. */
#define KERNEL_ROWS 6

/*
 * Kernel steps (one k of one tile) a thread's share of a product must
 * reach for the product to be shared (pool.h).  A step takes a few
 * nanoseconds whatever the tile's height (one row is bound by the FMAs'
 * latency, six by their throughput), so this is about 25 us, against some
 * microseconds to wake a worker.  Small models stay on one thread.
 */
#define MIN_PIECE_STEPS 8192

bool
packed_supported(void)
{
#ifdef HAVE_PACKED_KERNEL
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
	return false;
#endif
}

void
packed_matrix_plain(PackedMatrix *m, const float *w, int n_out, int n_in)
{
	m->n_out = n_out;
	m->n_in = n_in;
	m->w = w;
	m->panels = NULL;
}

bool
packed_matrix_init(PackedMatrix *m, const float *w, int n_out, int n_in)
{
	int			n_panels = (n_out + PACKED_PANEL - 1) / PACKED_PANEL;
	size_t		panel_size = (size_t) n_in * PACKED_PANEL;
	void	   *block;

	packed_matrix_plain(m, w, n_out, n_in);
	if (!packed_supported())
		return true;
	if (posix_memalign(&block, 64, n_panels * panel_size * sizeof(float)) != 0)
		return false;
	m->panels = block;
	for (int p = 0; p < n_panels; p++)
	{
		float	   *panel = m->panels + p * panel_size;

		for (int c = 0; c < PACKED_PANEL; c++)
		{
			int			row = p * PACKED_PANEL + c;

			for (int k = 0; k < n_in; k++)
				panel[(size_t) k * PACKED_PANEL + c] =
					row < n_out ? w[(size_t) row * n_in + k] : 0.0f;
		}
	}
	return true;
}

size_t
packed_matrix_bytes(const PackedMatrix *m)
{
	size_t		n_panels = ((size_t) m->n_out + PACKED_PANEL - 1) / PACKED_PANEL;

	return m->panels == NULL ? 0 : n_panels * m->n_in * PACKED_PANEL * sizeof(float);
}

void
packed_matrix_free(PackedMatrix *m)
{
	free(m->panels);
	m->panels = NULL;
}

static void
plain_matmul(float *out, const float *in, const PackedMatrix *m,
			 const float *bias, float scale, int n)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m->n_out, m->n_in,
				scale, in, m->n_in, m->w, m->n_in, 0.0f, out, m->n_out);
	if (bias == NULL)
		return;
	for (int r = 0; r < n; r++)
		for (int o = 0; o < m->n_out; o++)
			out[(size_t) r * m->n_out + o] += bias[o];
}

#ifdef HAVE_PACKED_KERNEL

/*
 * out rows [0, rows) x columns [0, n_cols) of one tile; rows is a constant
 * once inlined, so the accumulators are registers.  bias has PACKED_PANEL
 * entries (zero-padded).
 */
__attribute__((target("avx2,fma"), always_inline))
static inline void
tile(const int rows, const float *in, int n_in, const float *panel,
	 float *out, int ld_out, int n_cols, float scale, const float *bias)
{
	__m256		acc[KERNEL_ROWS][2];
	__m256		s = _mm256_set1_ps(scale);
	__m256		bias_lo = _mm256_loadu_ps(bias);
	__m256		bias_hi = _mm256_loadu_ps(bias + 8);

#pragma GCC unroll 6
	for (int r = 0; r < rows; r++)
		acc[r][0] = acc[r][1] = _mm256_setzero_ps();
	for (int k = 0; k < n_in; k++)
	{
		__m256		lo = _mm256_load_ps(panel + (size_t) k * PACKED_PANEL);
		__m256		hi = _mm256_load_ps(panel + (size_t) k * PACKED_PANEL + 8);

#pragma GCC unroll 6
		for (int r = 0; r < rows; r++)
		{
			__m256		a = _mm256_broadcast_ss(in + (size_t) r * n_in + k);

			acc[r][0] = _mm256_fmadd_ps(a, lo, acc[r][0]);
			acc[r][1] = _mm256_fmadd_ps(a, hi, acc[r][1]);
		}
	}
#pragma GCC unroll 6
	for (int r = 0; r < rows; r++)
	{
		float		tail[PACKED_PANEL];
		float	   *dst = n_cols == PACKED_PANEL ? out + (size_t) r * ld_out : tail;

		_mm256_storeu_ps(dst, _mm256_fmadd_ps(acc[r][0], s, bias_lo));
		_mm256_storeu_ps(dst + 8, _mm256_fmadd_ps(acc[r][1], s, bias_hi));
		if (dst == tail)
			memcpy(out + (size_t) r * ld_out, tail, n_cols * sizeof(float));
	}
}

__attribute__((target("avx2,fma")))
static void
tile_any(int rows, const float *in, int n_in, const float *panel,
		 float *out, int ld_out, int n_cols, float scale, const float *bias)
{
	switch (rows)
	{
		case 6:
			tile(6, in, n_in, panel, out, ld_out, n_cols, scale, bias);
			break;
		case 5:
			tile(5, in, n_in, panel, out, ld_out, n_cols, scale, bias);
			break;
		case 4:
			tile(4, in, n_in, panel, out, ld_out, n_cols, scale, bias);
			break;
		case 3:
			tile(3, in, n_in, panel, out, ld_out, n_cols, scale, bias);
			break;
		case 2:
			tile(2, in, n_in, panel, out, ld_out, n_cols, scale, bias);
			break;
		default:
			tile(1, in, n_in, panel, out, ld_out, n_cols, scale, bias);
			break;
	}
}

/* Panels [first, end) of the product. */
static void
kernel_panels(float *out, const float *in, const PackedMatrix *m,
			  const float *bias, float scale, int n, size_t first, size_t end)
{
	size_t		panel_size = (size_t) m->n_in * PACKED_PANEL;

	for (size_t p = first; p < end; p++)
	{
		const float *panel = m->panels + p * panel_size;
		int			col = p * PACKED_PANEL;
		int			n_cols = m->n_out - col < PACKED_PANEL ? m->n_out - col : PACKED_PANEL;
		float		panel_bias[PACKED_PANEL] = {0};

		if (bias != NULL)
			memcpy(panel_bias, bias + col, n_cols * sizeof(float));
		for (int row = 0; row < n; row += KERNEL_ROWS)
			tile_any(n - row < KERNEL_ROWS ? n - row : KERNEL_ROWS,
					 in + (size_t) row * m->n_in, m->n_in, panel,
					 out + (size_t) row * m->n_out + col, m->n_out, n_cols,
					 scale, panel_bias);
	}
}

typedef struct PanelJob
{
	float	   *out;
	const float *in;
	const PackedMatrix *m;
	const float *bias;
	float		scale;
	int			n;
} PanelJob;

static void
panel_range(void *arg, size_t first, size_t end)
{
	PanelJob   *job = arg;

	kernel_panels(job->out, job->in, job->m, job->bias, job->scale, job->n,
				  first, end);
}

/*
 * The panels are shared out among the pool's threads; each output element
 * is computed by one thread exactly as on one thread.
 */
static void
kernel_matmul(float *out, const float *in, const PackedMatrix *m,
			  const float *bias, float scale, int n)
{
	PanelJob	job = {out, in, m, bias, scale, n};
	size_t		n_panels = ((size_t) m->n_out + PACKED_PANEL - 1) / PACKED_PANEL;
	size_t		panel_steps = (size_t) m->n_in * ((n + KERNEL_ROWS - 1) / KERNEL_ROWS);

	pool_run_range(n_panels, MIN_PIECE_STEPS / panel_steps + 1, panel_range, &job);
}

#endif							/* HAVE_PACKED_KERNEL */

void
packed_matmul(float *out, const float *in, const PackedMatrix *m,
			  const float *bias, float scale, int n)
{
	if (n == 0)
		return;
#ifdef HAVE_PACKED_KERNEL
	if (m->panels != NULL)
	{
		kernel_matmul(out, in, m, bias, scale, n);
		return;
	}
#endif
	plain_matmul(out, in, m, bias, scale, n);
}
