/*
 * test_packed.c - the packed kernel against cblas_sgemm on the same
 * matrices: every tile height (1..6 rows and beyond), output widths that
 * are and are not multiples of the panel, with and without bias and scale.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/packed.h"
#include "unit.h"

static uint64_t rng = 11;

static float
random_float(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (float) ((rng >> 40) / (double) (1 << 24)) * 2.0f - 1.0f;
}

static float *
random_floats(size_t n)
{
	float	   *x = malloc(n * sizeof(float));

	for (size_t i = 0; i < n; i++)
		x[i] = random_float();
	return x;
}

/* Largest |a - b| relative to the size of the terms of a dot product. */
static double
max_error(const float *a, const float *b, size_t n, int n_in)
{
	double		worst = 0.0;

	for (size_t i = 0; i < n; i++)
	{
		double		e = fabs((double) a[i] - b[i]) / sqrt((double) n_in);

		worst = e > worst ? e : worst;
	}
	return worst;
}

static void
check_shape(int n, int n_out, int n_in, bool with_bias, float scale)
{
	float	   *w = random_floats((size_t) n_out * n_in);
	float	   *in = random_floats((size_t) n * n_in);
	float	   *bias = with_bias ? random_floats(n_out) : NULL;
	float	   *want = calloc((size_t) n * n_out, sizeof(float));
	float	   *got = calloc((size_t) n * n_out + 1, sizeof(float));
	PackedMatrix plain;
	PackedMatrix packed;

	got[(size_t) n * n_out] = 12345.0f;	/* a guard past the end */
	packed_matrix_plain(&plain, w, n_out, n_in);
	CHECK(packed_matrix_init(&packed, w, n_out, n_in));
	CHECK((packed.panels != NULL) == packed_supported());
	packed_matmul(want, in, &plain, bias, scale, n);
	packed_matmul(got, in, &packed, bias, scale, n);
	CHECKF(max_error(want, got, (size_t) n * n_out, n_in) < 1e-6,
		   "%d x %d x %d: error %g", n, n_out, n_in,
		   max_error(want, got, (size_t) n * n_out, n_in));
	CHECK(got[(size_t) n * n_out] == 12345.0f);
	packed_matrix_free(&packed);
	packed_matrix_free(&plain);
	free(w);
	free(in);
	free(bias);
	free(want);
	free(got);
}

int
main(void)
{
	printf("packed kernel: %s\n", packed_supported() ? "AVX2/FMA" : "not supported here; cblas_sgemm only");
	for (int n = 1; n <= 13; n++)
		check_shape(n, 48, 32, false, 1.0f);
	for (int n_out = 1; n_out <= 40; n_out += 3)
		check_shape(7, n_out, 24, true, 1.0f);
	check_shape(70, 384, 128, false, 1.0f);
	check_shape(70, 344, 128, true, 0.5f);
	check_shape(6, 4096, 64, false, 0.125f);
	check_shape(1, 300, 33, true, 2.0f);
	return unit_summary("packed");
}
