/*
 * packed.h - weight matrices packed once, for products with few rows.
 *
 * Prediction multiplies every weight matrix by the few dozen token rows of
 * one input.  cblas_sgemm copies its operands into its own panel layout on
 * each call; with so few rows that copy of the weights costs about as much
 * as the arithmetic (perf on distill_predict: 38% of the time in OpenBLAS's
 * sgemm_incopy), and OpenBLAS has no interface to keep a packed operand.
 * So a model loaded for prediction packs its matrices once into panels of
 * PACKED_PANEL output columns, and packed_matmul() runs an AVX2/FMA kernel
 * straight over them.  Where the CPU lacks AVX2 or FMA (checked at run
 * time) or the build is not x86-64, nothing is packed and packed_matmul()
 * calls cblas_sgemm on the plain matrix.  The kernel shares the panels
 * out among the threads of pool.h (model_set_threads()), with the same
 * results on any number of them.  Plain C; no PostgreSQL headers.
 */
#ifndef DISTILL_CORE_PACKED_H
#define DISTILL_CORE_PACKED_H

#include <stdbool.h>
#include <stddef.h>

/* Output columns per panel: two 8-float AVX registers. */
#define PACKED_PANEL 16

/*
 * W [n_out, n_in], row-major (the model's own layout: out = in . W^T).
 * panels holds ceil(n_out / PACKED_PANEL) panels of n_in x PACKED_PANEL
 * floats (column c of panel p is row p * PACKED_PANEL + c of W, zeros past
 * n_out), or is NULL: then products use w through cblas_sgemm.
 */
typedef struct PackedMatrix
{
	int			n_out;
	int			n_in;
	const float *w;				/* not owned; must outlive the packing */
	float	   *panels;			/* owned */
} PackedMatrix;

/* Does this CPU run the packed kernel? */
extern bool packed_supported(void);

/*
 * Pack w when the CPU supports it, else only refer to it.  False (and
 * nothing to free) when out of memory.
 */
extern bool packed_matrix_init(PackedMatrix *m, const float *w, int n_out,
							   int n_in);

/* A reference to w that is never packed (cblas_sgemm path). */
extern void packed_matrix_plain(PackedMatrix *m, const float *w, int n_out,
								int n_in);

/* Bytes of the panels m owns; 0 when it only refers to w. */
extern size_t packed_matrix_bytes(const PackedMatrix *m);

extern void packed_matrix_free(PackedMatrix *m);

/*
 * out[n, n_out] = scale * (in[n, n_in] . W^T) + bias (bias NULL = none);
 * rows of in and out are contiguous.
 */
extern void packed_matmul(float *out, const float *in, const PackedMatrix *m,
						  const float *bias, float scale, int n);

#endif
