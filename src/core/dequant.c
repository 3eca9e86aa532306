/*
 * dequant.c - half, bfloat16 and ggml's block formats to float32 and back;
 * see dequant.h.  The block layouts are ggml's (block_q8_0, block_q4_K,
 * block_q6_K of ggml-common.h); the arithmetic is done in the same order
 * as ggml's reference dequantization, in float.
 */
#include "core/dequant.h"

#include <math.h>
#include <string.h>

#include "core/util.h"

#define QK8_0 32
#define QK_K 256
#define Q8_0_BYTES (2 + QK8_0)
#define Q4_K_BYTES (2 + 2 + 12 + QK_K / 2)
#define Q6_K_BYTES (QK_K / 2 + QK_K / 4 + QK_K / 16 + 2)

static float
float_from_bits(uint32_t bits)
{
	float		x;

	memcpy(&x, &bits, 4);
	return x;
}

static uint32_t
bits_from_float(float x)
{
	uint32_t	bits;

	memcpy(&bits, &x, 4);
	return bits;
}

float
half_to_float(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exponent = (h >> 10) & 0x1F;
	uint32_t	mantissa = h & 0x3FF;

	if (exponent == 0)			/* zero or subnormal: mantissa * 2^-24 */
	{
		float		x = ldexpf((float) mantissa, -24);

		return sign ? -x : x;
	}
	if (exponent == 31)			/* infinity or NaN, payload kept */
		return float_from_bits(sign | 0x7F800000u | mantissa << 13);
	return float_from_bits(sign | (exponent + 127 - 15) << 23 | mantissa << 13);
}

uint16_t
float_to_half(float x)
{
	uint32_t	bits = bits_from_float(x);
	uint16_t	sign = (uint16_t) ((bits >> 16) & 0x8000);
	uint32_t	magnitude = bits & 0x7FFFFFFFu;
	uint32_t	mantissa;
	uint32_t	rest;
	uint16_t	h;

	if (magnitude > 0x7F800000u)	/* NaN: stays a (quiet) NaN */
		return sign | 0x7E00 | (uint16_t) ((magnitude >> 13) & 0x3FF);
	if (magnitude >= 0x477FF000u)	/* 65520 and up round to infinity */
		return sign | 0x7C00;
	if (magnitude < 0x38800000u)	/* below 2^-14: a subnormal half */
	{
		/* exact scaling; rintf rounds to nearest even */
		return sign | (uint16_t) rintf(fabsf(x) * 16777216.0f);
	}
	mantissa = magnitude & 0x7FFFFF;
	h = (uint16_t) ((((magnitude >> 23) - 127 + 15) << 10) | (mantissa >> 13));
	rest = mantissa & 0x1FFF;
	if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
		h++;					/* a carry into the exponent is right */
	return sign | h;
}

float
bfloat_to_float(uint16_t b)
{
	return float_from_bits((uint32_t) b << 16);
}

uint16_t
float_to_bfloat(float x)
{
	uint32_t	bits = bits_from_float(x);

	if ((bits & 0x7FFFFFFFu) > 0x7F800000u)
		return (uint16_t) ((bits >> 16) | 0x40);
	bits += 0x7FFF + ((bits >> 16) & 1);
	return (uint16_t) (bits >> 16);
}

int
dequant_block_values(DequantType type)
{
	switch (type)
	{
		case DEQUANT_Q8_0:
			return QK8_0;
		case DEQUANT_Q4_K:
		case DEQUANT_Q6_K:
			return QK_K;
		default:
			return 1;
	}
}

int
dequant_block_bytes(DequantType type)
{
	switch (type)
	{
		case DEQUANT_F32:
			return 4;
		case DEQUANT_F16:
		case DEQUANT_BF16:
			return 2;
		case DEQUANT_Q8_0:
			return Q8_0_BYTES;
		case DEQUANT_Q4_K:
			return Q4_K_BYTES;
		case DEQUANT_Q6_K:
			return Q6_K_BYTES;
	}
	return 0;
}

const char *
dequant_type_name(DequantType type)
{
	static const char *const names[] = {"f32", "f16", "bf16", "q8_0", "q4_k", "q6_k"};

	return names[type];
}

static void
dequantize_q8_0(const uint8_t *block, float *y)
{
	float		d = half_to_float((uint16_t) le_get(block, 2));

	for (int i = 0; i < QK8_0; i++)
		y[i] = d * (float) (int8_t) block[2 + i];
}

/*
 * Scale and min of sub-block j of a Q4_K block: the first four in the low
 * 6 bits of bytes j and j + 4, the last four split into a low nibble of
 * byte j + 4 and the top two bits of bytes j - 4 (scale) and j (min).
 */
static void
q4_k_scale_min(const uint8_t *s, int j, int *scale, int *min)
{
	if (j < 4)
	{
		*scale = s[j] & 63;
		*min = s[j + 4] & 63;
	}
	else
	{
		*scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
		*min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
	}
}

/* 4 groups of 64 values: low nibbles of 32 bytes, then their high nibbles. */
static void
dequantize_q4_k(const uint8_t *block, float *y)
{
	float		d = half_to_float((uint16_t) le_get(block, 2));
	float		dmin = half_to_float((uint16_t) le_get(block + 2, 2));
	const uint8_t *scales = block + 4;
	const uint8_t *q = block + 16;

	for (int group = 0; group < 4; group++)
	{
		int			sc,
					m;
		float		d1,
					m1,
					d2,
					m2;

		q4_k_scale_min(scales, 2 * group, &sc, &m);
		d1 = d * sc;
		m1 = dmin * m;
		q4_k_scale_min(scales, 2 * group + 1, &sc, &m);
		d2 = d * sc;
		m2 = dmin * m;
		for (int l = 0; l < 32; l++)
			*y++ = d1 * (q[l] & 0xF) - m1;
		for (int l = 0; l < 32; l++)
			*y++ = d2 * (q[l] >> 4) - m2;
		q += 32;
	}
}

/*
 * 2 halves of 128 values; in each, value l + 32 k (k = 0..3) takes a
 * nibble of ql (low for k = 0, 1, high for 2, 3; byte l or l + 32) and bits
 * 2k, 2k+1 of qh[l], and the scale of its 16 values.
 */
static void
dequantize_q6_k(const uint8_t *block, float *y)
{
	const uint8_t *ql = block;
	const uint8_t *qh = block + QK_K / 2;
	const int8_t *sc = (const int8_t *) (block + QK_K / 2 + QK_K / 4);
	float		d = half_to_float((uint16_t) le_get(block + Q6_K_BYTES - 2, 2));

	for (int half = 0; half < 2; half++)
	{
		for (int l = 0; l < 32; l++)
		{
			int			is = l / 16;
			int			q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
			int			q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
			int			q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
			int			q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

			y[l] = d * sc[is] * q1;
			y[l + 32] = d * sc[is + 2] * q2;
			y[l + 64] = d * sc[is + 4] * q3;
			y[l + 96] = d * sc[is + 6] * q4;
		}
		y += 128;
		ql += 64;
		qh += 32;
		sc += 8;
	}
}

void
dequantize(DequantType type, const uint8_t *src, float *dst, size_t n)
{
	size_t		block_values = dequant_block_values(type);
	size_t		block_bytes = dequant_block_bytes(type);

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (type == DEQUANT_F32)
	{
		memcpy(dst, src, n * sizeof(float));
		return;
	}
#endif
	for (size_t b = 0; b < n / block_values; b++)
	{
		const uint8_t *in = src + b * block_bytes;
		float	   *out = dst + b * block_values;

		switch (type)
		{
			case DEQUANT_F32:
				*out = float_from_bits(le_get_u32(in));
				break;
			case DEQUANT_F16:
				*out = half_to_float((uint16_t) le_get(in, 2));
				break;
			case DEQUANT_BF16:
				*out = bfloat_to_float((uint16_t) le_get(in, 2));
				break;
			case DEQUANT_Q8_0:
				dequantize_q8_0(in, out);
				break;
			case DEQUANT_Q4_K:
				dequantize_q4_k(in, out);
				break;
			case DEQUANT_Q6_K:
				dequantize_q6_k(in, out);
				break;
		}
	}
}
