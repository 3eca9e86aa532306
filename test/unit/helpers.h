/*
 * helpers.h - what several unit tests share beside the harness (unit.h):
 * gradients checked against central differences, errors relative to a
 * tensor's scale, the process's thread count.
 */
#ifndef DISTILL_UNIT_HELPERS_H
#define DISTILL_UNIT_HELPERS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Max-norm relative error between the analytic gradient and central
 * differences of loss() in each of the n elements of x.
 */
static inline double
gradient_error(float *x, const float *analytic, size_t n,
			   double (*loss) (void *), void *ctx, float eps)
{
	double		max_diff = 0.0;
	double		max_num = 1e-12;

	for (size_t i = 0; i < n; i++)
	{
		float		saved = x[i];
		double		plus,
					minus,
					numeric;

		x[i] = saved + eps;
		plus = loss(ctx);
		x[i] = saved - eps;
		minus = loss(ctx);
		x[i] = saved;
		numeric = (plus - minus) / (2.0 * (double) eps);
		max_diff = fmax(max_diff, fabs(numeric - analytic[i]));
		max_num = fmax(max_num, fabs(numeric));
	}
	return max_diff / max_num;
}

/* Max |x - ref| / max |ref|: a tensor's error held to its own scale. */
static inline double
relative_error(const float *x, const double *ref, size_t n)
{
	double		max_diff = 0.0,
				max_ref = 1e-30;

	for (size_t i = 0; i < n; i++)
	{
		max_diff = fmax(max_diff, fabs((double) x[i] - ref[i]));
		max_ref = fmax(max_ref, fabs(ref[i]));
	}
	return max_diff / max_ref;
}

/* Threads of this process (/proc/self/status), -1 if unknown. */
static inline int
threads_now(void)
{
	FILE	   *f = fopen("/proc/self/status", "r");
	char		line[256];
	int			n = -1;

	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "Threads:", 8) == 0)
			n = atoi(line + 8);
	if (f != NULL)
		fclose(f);
	return n;
}

#endif
