/*
 * dequant.h - the number formats of pretrained checkpoints, to float32 and
 * back.
 *
 * IEEE half (f16) and bfloat16 (bf16) widen to float32 exactly; float32
 * narrows to them rounding to nearest, ties to even, so a value that came
 * from f16 or bf16 goes back to the same bits.  ggml's block formats of
 * GGUF files widen as ggml's dequantize_row_* do (ggml-quants.c):
 *
 *   Q8_0   32 values in 34 bytes: f16 scale d, 32 int8 q;  x = d q
 *   Q4_K  256 values in 144 bytes: f16 d, f16 dmin, 12 bytes of eight
 *          6-bit scales and eight 6-bit mins, 128 bytes of 4-bit q;
 *          sub-block j of 32: x = d sc_j q - dmin m_j
 *   Q6_K  256 values in 210 bytes: 128 bytes of low 4 bits, 64 of high
 *          2 bits, 16 int8 scales, f16 d;  x = d sc (q - 32)
 *
 * Plain C, no PostgreSQL headers, independent of byte order.
 */
#ifndef DISTILL_CORE_DEQUANT_H
#define DISTILL_CORE_DEQUANT_H

#include <stddef.h>
#include <stdint.h>

typedef enum DequantType
{
	DEQUANT_F32,
	DEQUANT_F16,
	DEQUANT_BF16,
	DEQUANT_Q8_0,
	DEQUANT_Q4_K,
	DEQUANT_Q6_K
} DequantType;

extern float half_to_float(uint16_t h);
extern uint16_t float_to_half(float x);
extern float bfloat_to_float(uint16_t b);
extern uint16_t float_to_bfloat(float x);

/* Values per block and bytes per block of a type (1 and 4 for F32). */
extern int	dequant_block_values(DequantType type);
extern int	dequant_block_bytes(DequantType type);

/* Lower-case name: "f32", "f16", "bf16", "q8_0", "q4_k", "q6_k". */
extern const char *dequant_type_name(DequantType type);

/*
 * Widen n values (a multiple of dequant_block_values(type)) from src,
 * little-endian, n / block values * block bytes long, into dst.
 */
extern void dequantize(DequantType type, const uint8_t *src, float *dst,
					   size_t n);

#endif
