/*
 * lora_io.c - LoRA adapters as bytes (the format is in lora.h).
 *
 * Reading trusts nothing before it is checked: the length against the
 * header before any read, the checksum before the fields, the fields
 * before any allocation, and every float (a blob with the right checksum
 * can still hold NaN or infinity).  The base is touched only once all of
 * it passed.
 */
#include "core/lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/util.h"

/* magic, version, rank, alpha, targets, 5 shape fields, base checksum */
#define HEADER_U32S 11
#define HEADER_BYTES (HEADER_U32S * 4 + 8)
#define CRC_BYTES 4

/* The shape fields: what of a base the adapters depend on. */
typedef struct LoraShape
{
	uint32_t	n_layers;
	uint32_t	d_model;
	uint32_t	q_dim;
	uint32_t	kv_dim;
	uint32_t	d_ff;
} LoraShape;

static LoraShape
shape_of(const ModelConfig *c)
{
	int			head_dim = model_config_head_dim(c);
	LoraShape	s = {c->n_layers, c->d_model, c->n_heads * head_dim,
	c->n_kv_heads * head_dim, c->d_ff};

	return s;
}

static uint32_t
float_bits(float x)
{
	uint32_t	bits;

	memcpy(&bits, &x, sizeof(bits));
	return bits;
}

static float
bits_float(uint32_t bits)
{
	float		x;

	memcpy(&x, &bits, sizeof(x));
	return x;
}

void *
lora_save(const Model *model, uint32_t base_checksum, size_t *len)
{
	const LoraAdapters *lora = model->lora;
	LoraShape	s;
	uint8_t    *blob,
			   *p;

	*len = 0;
	if (lora == NULL)
		return NULL;
	s = shape_of(&model->config);
	*len = HEADER_BYTES + lora->n_params * 4 + CRC_BYTES;
	blob = malloc(*len);
	if (blob == NULL)
	{
		*len = 0;
		return NULL;
	}
	memcpy(blob, LORA_IO_MAGIC, 4);
	p = le_put_u32(blob + 4, LORA_IO_VERSION);
	p = le_put_u32(p, (uint32_t) lora->config.rank);
	p = le_put_u32(p, float_bits(lora->config.alpha));
	p = le_put_u32(p, lora->config.targets);
	p = le_put_u32(p, s.n_layers);
	p = le_put_u32(p, s.d_model);
	p = le_put_u32(p, s.q_dim);
	p = le_put_u32(p, s.kv_dim);
	p = le_put_u32(p, s.d_ff);
	p = le_put_u32(p, base_checksum);
	le_put(p, lora->n_params, 8);
	p += 8;
	for (size_t i = 0; i < lora->n_params; i++)
		p = le_put_u32(p, float_bits(lora->params[i]));
	le_put_u32(p, crc32c(0, blob, *len - CRC_BYTES));
	return blob;
}

/* Length, magic, version, checksum: is this an intact blob of adapters? */
static bool
check_envelope(const uint8_t *b, size_t len, CoreError *err)
{
	uint32_t	version;
	uint64_t	n_params;

	if (len < HEADER_BYTES + CRC_BYTES)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "LoRA adapters: %zu bytes is too short for their header (%d bytes): truncated",
				   len, HEADER_BYTES + CRC_BYTES);
		return false;
	}
	if (memcmp(b, LORA_IO_MAGIC, 4) != 0)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "LoRA adapters: the bytes do not start with \"%s\": not LoRA adapters",
				   LORA_IO_MAGIC);
		return false;
	}
	version = le_get_u32(b + 4);
	if (version != LORA_IO_VERSION)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "LoRA adapters: format version %u, this build reads version %d",
				   version, LORA_IO_VERSION);
		return false;
	}
	n_params = le_get(b + HEADER_U32S * 4, 8);
	if (n_params > (len - HEADER_BYTES - CRC_BYTES) / 4 ||
		HEADER_BYTES + n_params * 4 + CRC_BYTES != len)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "LoRA adapters: %zu bytes, but the header announces %llu parameters: truncated or corrupt",
				   len, (unsigned long long) n_params);
		return false;
	}
	if (crc32c(0, b, len - CRC_BYTES) != le_get_u32(b + len - CRC_BYTES))
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "LoRA adapters: the checksum does not match: the bytes are corrupt");
		return false;
	}
	return true;
}

/* Do adapters of shape s, made for base checksum `made_for`, fit base? */
static bool
check_base(const Model *base, LoraShape s, uint32_t made_for,
		   uint32_t expected, CoreError *err)
{
	LoraShape	b = shape_of(&base->config);

	if (memcmp(&s, &b, sizeof(s)) != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "LoRA adapters: made for a model of %u layers, d_model %u, q/k/v widths %u/%u, d_ff %u, which is not this base (%u layers, d_model %u, q/k/v widths %u/%u, d_ff %u)",
				   s.n_layers, s.d_model, s.q_dim, s.kv_dim, s.d_ff,
				   b.n_layers, b.d_model, b.q_dim, b.kv_dim, b.d_ff);
		return false;
	}
	if (made_for != expected)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "LoRA adapters: they belong to another base (base checksum %08x, this base's is %08x)",
				   made_for, expected);
		return false;
	}
	return true;
}

/* The stored floats, all finite; NULL with err. */
static float *
read_params(const uint8_t *p, size_t n, CoreError *err)
{
	float	   *params = malloc((n > 0 ? n : 1) * sizeof(float));

	if (params == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for %zu LoRA parameters", n);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
	{
		params[i] = bits_float(le_get_u32(p + 4 * i));
		if (!isfinite(params[i]))
		{
			core_error(err, CORE_ERR_CORRUPT,
					   "LoRA adapters: parameter %zu is not a finite number", i);
			free(params);
			return NULL;
		}
	}
	return params;
}

bool
lora_load(Model *base, const void *blob, size_t len,
		  uint32_t expected_base_checksum, CoreError *err)
{
	const uint8_t *b = blob;
	LoraConfig	config;
	LoraShape	shape;
	CoreError	why = {0};
	uint64_t	n_params;
	float	   *params;
	bool		ok;

	if (!check_envelope(b, len, err))
		return false;
	config.rank = (int) le_get_u32(b + 8);
	config.alpha = bits_float(le_get_u32(b + 12));
	config.targets = le_get_u32(b + 16);
	shape = (LoraShape) {le_get_u32(b + 20), le_get_u32(b + 24),
	le_get_u32(b + 28), le_get_u32(b + 32), le_get_u32(b + 36)};
	if (!check_base(base, shape, le_get_u32(b + 40), expected_base_checksum, err))
		return false;
	if (!lora_config_validate(&config, &base->config, &why))
	{
		core_error(err, CORE_ERR_CORRUPT, "LoRA adapters: their stored configuration is not valid (%s)",
				   why.message);
		return false;
	}
	n_params = le_get(b + HEADER_U32S * 4, 8);
	if (n_params != lora_n_params(&base->config, &config))
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "LoRA adapters: %llu parameters stored, rank %d on these targets has %zu",
				   (unsigned long long) n_params, config.rank,
				   lora_n_params(&base->config, &config));
		return false;
	}
	params = read_params(b + HEADER_BYTES, n_params, err);
	if (params == NULL)
		return false;
	ok = lora_attach_values(base, &config, params, err);
	free(params);
	return ok;
}
