/*
 * bench.h - what the C benchmarks share: a monotonic clock and medians.
 */
#ifndef DISTILL_BENCH_H
#define DISTILL_BENCH_H

#include <stdlib.h>
#include <time.h>

/* Seconds on a clock that only moves forward. */
static inline double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int
compare_doubles(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* Median of x[0..n-1], which it sorts. */
static inline double
median(double *x, int n)
{
	qsort(x, n, sizeof(double), compare_doubles);
	return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

#endif
