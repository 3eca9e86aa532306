/*
 * sgemm_peak.c - the machine's cblas_sgemm throughput, the yardstick of the
 * benchmarks: the median GFLOP/s of N x N x N products (N = 1536), with the
 * thread count OpenBLAS is given in the environment.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

#define N 1536
#define RUNS 7

int
main(void)
{
	float	   *a = malloc(sizeof(float) * N * N);
	float	   *b = malloc(sizeof(float) * N * N);
	float	   *c = malloc(sizeof(float) * N * N);
	double		gflops[RUNS];

	for (int i = 0; i < N * N; i++)
	{
		a[i] = (float) (i % 7) / 7;
		b[i] = (float) (i % 5) / 5;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1, a, N, b, N, 0, c, N);
	for (int r = 0; r < RUNS; r++)
	{
		double		t0 = now();

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1, a, N, b, N, 0, c, N);
		gflops[r] = 2.0 * N * N * N / (now() - t0) / 1e9;
	}
	printf("%.1f\n", median(gflops, RUNS));
	free(a);
	free(b);
	free(c);
	return 0;
}
