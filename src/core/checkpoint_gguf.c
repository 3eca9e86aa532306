/*
 * checkpoint_gguf.c - llama.cpp's GGUF files (versions 2 and 3), of the
 * "llama" and "qwen2" architectures.
 *
 * Layout, little-endian: "GGUF", u32 version, u64 n_tensors, u64 n_kv;
 * n_kv metadata entries (string key, u32 value type, value; a string is
 * u64 length and bytes, an array u32 element type, u64 count and the
 * elements); n_tensors tensor infos (string name, u32 n_dims, u64 ne[n_dims]
 * with ne[0] the innermost dimension, u32 ggml type, u64 offset); padding
 * to general.alignment (default 32); the tensor data, each tensor at its
 * offset from there.
 *
 * Tensor names are llama.cpp's (token_embd, blk.N.attn_q, ...), mapped
 * here to Hugging Face's.  llama.cpp's converter stores the q and k rows
 * of a "llama" model interleaved (its RoPE rotates pairs 2i, 2i+1), so
 * those are permuted back; "qwen2" uses NEOX RoPE (halves), as Hugging
 * Face does.  Llama 3's rope scaling comes as a rope_freqs tensor of
 * per-frequency divisors, which is matched against the "llama3" rule.
 * The tokenizer is tokenizer.ggml.*, handed on as a TokenizerVocab.
 */
#include "core/checkpoint_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_ARRAY_DEPTH 2

enum GgufValueType
{
	GGUF_UINT8, GGUF_INT8, GGUF_UINT16, GGUF_INT16, GGUF_UINT32, GGUF_INT32,
	GGUF_FLOAT32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_UINT64, GGUF_INT64,
	GGUF_FLOAT64, GGUF_N_TYPES
};

/* Bytes of each scalar value type; 0 for string and array. */
static const int scalar_size[GGUF_N_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct Cursor
{
	const uint8_t *buf;
	uint64_t	len;
	uint64_t	pos;
	bool		overrun;
} Cursor;

typedef struct GgufString
{
	const char *s;
	uint64_t	len;
} GgufString;

typedef struct GgufValue
{
	uint32_t	type;
	const uint8_t *at;			/* a scalar, a string, or an array's first
								 * element */
	uint32_t	elem_type;		/* arrays */
	uint64_t	n;				/* arrays */
} GgufValue;

typedef struct GgufEntry
{
	GgufString	key;
	GgufValue	value;
} GgufEntry;

typedef struct GgufTensor
{
	GgufString	name;
	uint32_t	n_dims;
	uint64_t	ne[GGUF_MAX_DIMS];
	uint32_t	type;
	uint64_t	offset;
} GgufTensor;

typedef struct Gguf
{
	const uint8_t *file;
	uint64_t	len;
	GgufEntry  *kv;
	uint64_t	n_kv;
	GgufTensor *tensors;
	uint64_t	n_tensors;
	const uint8_t *data;		/* the tensor data */
	uint64_t	data_len;
	char		arch[16];
} Gguf;

/* ---------------------------------------------------------------- */
/* Reading */

static const uint8_t *
take(Cursor *c, uint64_t n)
{
	const uint8_t *p = c->buf + c->pos;

	if (c->overrun || n > c->len - c->pos)
	{
		c->overrun = true;
		return NULL;
	}
	c->pos += n;
	return p;
}

static uint64_t
take_le(Cursor *c, int n_bytes)
{
	const uint8_t *p = take(c, n_bytes);

	return p != NULL ? le_get(p, n_bytes) : 0;
}

static GgufString
take_string(Cursor *c)
{
	GgufString	s;

	s.len = take_le(c, 8);
	s.s = (const char *) take(c, s.len);
	if (s.s == NULL)
		s.len = 0;
	return s;
}

static bool
truncated(const Cursor *c, const char *where, CoreError *err)
{
	if (!c->overrun)
		return false;
	core_error(err, CORE_ERR_INVALID_INPUT,
			   "GGUF: truncated file: %llu bytes end inside the %s",
			   (unsigned long long) c->len, where);
	return true;
}

static bool
string_is(GgufString s, const char *text)
{
	return s.len == strlen(text) && memcmp(s.s, text, s.len) == 0;
}

/* A key or name for a message: at most 80 bytes, printable. */
static const char *
printable(GgufString s, char *buf, size_t size)
{
	size_t		n = s.len < size - 1 ? s.len : size - 1;

	for (size_t i = 0; i < n; i++)
		buf[i] = s.s[i] >= 0x20 && s.s[i] < 0x7F ? s.s[i] : '?';
	buf[n] = '\0';
	return buf;
}

/* Move past a value of type, recording where it is in *value. */
static bool
skip_value(Cursor *c, uint32_t type, int depth, GgufValue *value,
		   CoreError *err)
{
	value->type = type;
	value->at = c->buf + c->pos;
	if (type >= GGUF_N_TYPES)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: unknown metadata value type %u", type);
		return false;
	}
	if (type == GGUF_STRING)
		take_string(c);
	else if (type != GGUF_ARRAY)
		take(c, scalar_size[type]);
	else
	{
		GgufValue	elem;

		value->elem_type = (uint32_t) take_le(c, 4);
		value->n = take_le(c, 8);
		value->at = c->buf + c->pos;
		if (value->elem_type >= GGUF_N_TYPES ||
			(value->elem_type == GGUF_ARRAY && depth >= GGUF_MAX_ARRAY_DEPTH))
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "GGUF: unsupported array element type %u", value->elem_type);
			return false;
		}
		if (value->elem_type != GGUF_STRING && value->elem_type != GGUF_ARRAY)
			take(c, value->n > c->len ? c->len + 1 : value->n * scalar_size[value->elem_type]);
		else
		{
			/* each element takes at least 8 bytes: bounds the loop */
			if (value->n > (c->len - c->pos) / 8)
				c->overrun = true;
			for (uint64_t i = 0; i < value->n && !c->overrun; i++)
				if (!skip_value(c, value->elem_type, depth + 1, &elem, err))
					return false;
		}
	}
	return true;
}

static bool
read_metadata(Cursor *c, Gguf *g, CoreError *err)
{
	/* an entry takes at least 13 bytes: bounds the allocation */
	if (g->n_kv > (c->len - c->pos) / 13)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: truncated file: %llu bytes cannot hold %llu metadata entries",
				   (unsigned long long) c->len, (unsigned long long) g->n_kv);
		return false;
	}
	g->kv = calloc(g->n_kv + 1, sizeof(GgufEntry));
	if (g->kv == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for GGUF metadata");
		return false;
	}
	for (uint64_t i = 0; i < g->n_kv; i++)
	{
		GgufEntry  *e = &g->kv[i];
		uint32_t	type;

		e->key = take_string(c);
		type = (uint32_t) take_le(c, 4);
		if (truncated(c, "metadata", err) || !skip_value(c, type, 0, &e->value, err))
			return false;
	}
	return !truncated(c, "metadata", err);
}

static bool
read_tensor_infos(Cursor *c, Gguf *g, CoreError *err)
{
	char		name[80];

	/* an info takes at least 32 bytes */
	if (g->n_tensors > (c->len - c->pos) / 32)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: truncated file: %llu bytes cannot hold %llu tensor infos",
				   (unsigned long long) c->len, (unsigned long long) g->n_tensors);
		return false;
	}
	g->tensors = calloc(g->n_tensors + 1, sizeof(GgufTensor));
	if (g->tensors == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for GGUF tensor infos");
		return false;
	}
	for (uint64_t i = 0; i < g->n_tensors; i++)
	{
		GgufTensor *t = &g->tensors[i];

		t->name = take_string(c);
		t->n_dims = (uint32_t) take_le(c, 4);
		if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
		{
			if (truncated(c, "tensor infos", err))
				return false;
			core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: tensor \"%s\" has %u dimensions",
					   printable(t->name, name, sizeof(name)), t->n_dims);
			return false;
		}
		for (uint32_t k = 0; k < t->n_dims; k++)
			t->ne[k] = take_le(c, 8);
		t->type = (uint32_t) take_le(c, 4);
		t->offset = take_le(c, 8);
		if (truncated(c, "tensor infos", err))
			return false;
	}
	return true;
}

static const GgufValue *
find(const Gguf *g, const char *key)
{
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (string_is(g->kv[i].key, key))
			return &g->kv[i].value;
	return NULL;
}

/* "<arch>.<suffix>" */
static const GgufValue *
find_arch(const Gguf *g, const char *suffix, char *key, size_t key_size)
{
	snprintf(key, key_size, "%s.%s", g->arch, suffix);
	return find(g, key);
}

static bool
is_integer_type(uint32_t type)
{
	return type <= GGUF_INT32 || type == GGUF_UINT64 || type == GGUF_INT64;
}

/* An integer value as int64 (a u64 past INT64_MAX saturates). */
static int64_t
integer_of(uint32_t type, const uint8_t *at)
{
	switch (type)
	{
		case GGUF_INT8:
			return (int8_t) at[0];
		case GGUF_INT16:
			return (int16_t) le_get(at, 2);
		case GGUF_INT32:
			return (int32_t) le_get(at, 4);
		case GGUF_INT64:
			return (int64_t) le_get(at, 8);
		case GGUF_UINT64:
			return le_get(at, 8) > INT64_MAX ? INT64_MAX : (int64_t) le_get(at, 8);
		default:
			return (int64_t) le_get(at, scalar_size[type]);
	}
}

/*
 * The integer at key into *out when present (else *out stays), in
 * min..max; false with a message when it is of another type or out of
 * range, or absent and required.
 */
static bool
get_int(const Gguf *g, const char *key, bool required, int64_t min,
		int64_t max, int64_t *out, CoreError *err)
{
	const GgufValue *v = find(g, key);
	int64_t		x;

	if (v == NULL)
	{
		if (required)
			core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: the metadata key %s is missing", key);
		return !required;
	}
	if (!is_integer_type(v->type))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s is not an integer (type %u)",
				   key, v->type);
		return false;
	}
	x = integer_of(v->type, v->at);
	if (x < min || x > max)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s = %lld is outside %lld..%lld",
				   key, (long long) x, (long long) min, (long long) max);
		return false;
	}
	*out = x;
	return true;
}

static bool
get_arch_int(const Gguf *g, const char *suffix, bool required, int64_t min,
			 int64_t max, int64_t *out, CoreError *err)
{
	char		key[96];

	find_arch(g, suffix, key, sizeof(key));
	return get_int(g, key, required, min, max, out, err);
}

/* A float value at <arch>.<suffix> into *out when present. */
static bool
get_arch_float(const Gguf *g, const char *suffix, double *out, CoreError *err)
{
	char		key[96];
	const GgufValue *v = find_arch(g, suffix, key, sizeof(key));
	uint32_t	bits;
	float		f;

	if (v == NULL)
		return true;
	if (v->type == GGUF_FLOAT32)
	{
		bits = (uint32_t) le_get(v->at, 4);
		memcpy(&f, &bits, 4);
		*out = f;
	}
	else if (v->type == GGUF_FLOAT64)
	{
		uint64_t	bits64 = le_get(v->at, 8);

		memcpy(out, &bits64, 8);
	}
	else if (is_integer_type(v->type))
		*out = (double) integer_of(v->type, v->at);
	else
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s is not a number", key);
		return false;
	}
	if (!isfinite(*out))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s is not finite", key);
		return false;
	}
	return true;
}

/* The string at key; .s NULL when absent, an error when not a string. */
static bool
get_string(const Gguf *g, const char *key, GgufString *out, CoreError *err)
{
	const GgufValue *v = find(g, key);

	out->s = NULL;
	out->len = 0;
	if (v == NULL)
		return true;
	if (v->type != GGUF_STRING)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s is not a string", key);
		return false;
	}
	out->len = le_get(v->at, 8);
	out->s = (const char *) v->at + 8;
	return true;
}

static bool
parse(const uint8_t *file, size_t len, Gguf *g, CoreError *err)
{
	Cursor		c = {file, len, 0, false};
	uint32_t	version;
	int64_t		alignment = GGUF_DEFAULT_ALIGNMENT;
	uint64_t	padded;

	g->file = file;
	g->len = len;
	if (len < 4 || memcmp(file, "GGUF", 4) != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: wrong magic (not a GGUF file)");
		return false;
	}
	c.pos = 4;
	version = (uint32_t) take_le(&c, 4);
	g->n_tensors = take_le(&c, 8);
	g->n_kv = take_le(&c, 8);
	if (truncated(&c, "header", err))
		return false;
	if (version != 2 && version != 3)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: version %u is not supported (2 and 3 are)", version);
		return false;
	}
	if (!read_metadata(&c, g, err) || !read_tensor_infos(&c, g, err) ||
		!get_int(g, "general.alignment", false, 1, 1 << 20, &alignment, err))
		return false;
	if ((alignment & (alignment - 1)) != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: general.alignment = %lld is not a power of two", (long long) alignment);
		return false;
	}
	padded = (c.pos + alignment - 1) / alignment * alignment;
	if (padded > len)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: truncated file: no tensor data");
		return false;
	}
	g->data = file + padded;
	g->data_len = len - padded;
	return true;
}

/* ---------------------------------------------------------------- */
/* Tensors */

static bool
dequant_type_of(uint32_t ggml_type, DequantType *type)
{
	switch (ggml_type)
	{
		case 0:
			*type = DEQUANT_F32;
			return true;
		case 1:
			*type = DEQUANT_F16;
			return true;
		case 8:
			*type = DEQUANT_Q8_0;
			return true;
		case 12:
			*type = DEQUANT_Q4_K;
			return true;
		case 14:
			*type = DEQUANT_Q6_K;
			return true;
		case 30:
			*type = DEQUANT_BF16;
			return true;
		default:
			return false;
	}
}

/* ggml's name of a type, for a message. */
static const char *
ggml_type_name(uint32_t type)
{
	static const char *const names[] = {
		"F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
		"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
		"IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
		"IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0"};

	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "unknown";
}

/* llama.cpp's name of a layer tensor -> Hugging Face's, after "model.layers.N." */
static const char *
hf_layer_suffix(const char *gguf_suffix)
{
	static const char *const map[][2] = {
		{"attn_norm.weight", "input_layernorm.weight"},
		{"attn_q.weight", "self_attn.q_proj.weight"},
		{"attn_k.weight", "self_attn.k_proj.weight"},
		{"attn_v.weight", "self_attn.v_proj.weight"},
		{"attn_q.bias", "self_attn.q_proj.bias"},
		{"attn_k.bias", "self_attn.k_proj.bias"},
		{"attn_v.bias", "self_attn.v_proj.bias"},
		{"attn_output.weight", "self_attn.o_proj.weight"},
		{"ffn_norm.weight", "post_attention_layernorm.weight"},
		{"ffn_gate.weight", "mlp.gate_proj.weight"},
		{"ffn_up.weight", "mlp.up_proj.weight"},
		{"ffn_down.weight", "mlp.down_proj.weight"},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(gguf_suffix, map[i][0]) == 0)
			return map[i][1];
	return NULL;
}

/* The Hugging Face name of a GGUF tensor into hf ("" when none). */
static void
map_name(const char *name, char *hf, size_t size)
{
	int			layer = -1;
	int			used = 0;
	const char *suffix;

	hf[0] = '\0';
	if (strcmp(name, "token_embd.weight") == 0)
		snprintf(hf, size, "model.embed_tokens.weight");
	else if (strcmp(name, "output_norm.weight") == 0)
		snprintf(hf, size, "model.norm.weight");
	else if (strcmp(name, "output.weight") == 0)
		snprintf(hf, size, "lm_head.weight");
	else if (sscanf(name, "blk.%9d.%n", &layer, &used) == 1 && used > 0 && layer >= 0 &&
			 name[4] >= '0' && name[4] <= '9' &&
			 (suffix = hf_layer_suffix(name + used)) != NULL)
		snprintf(hf, size, "model.layers.%d.%s", layer, suffix);
}

/* Fill src from t: type, Hugging Face shape, bytes inside the data. */
static bool
source_tensor(const Gguf *g, const GgufTensor *t, SourceTensor *src,
			  CoreError *err)
{
	int			block;
	uint64_t	numel = 1;

	printable(t->name, src->source_name, sizeof(src->source_name));
	if (!dequant_type_of(t->type, &src->type))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: tensor \"%s\" has type %s (%u), which is not supported (F32, F16, BF16, Q8_0, Q4_K, Q6_K are)",
				   src->source_name, ggml_type_name(t->type), t->type);
		return false;
	}
	src->ndim = (int) t->n_dims;
	for (uint32_t k = 0; k < t->n_dims; k++)
	{
		if (t->ne[k] < 1 || t->ne[k] > INT32_MAX || numel > (UINT64_C(1) << 40))
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "GGUF: tensor \"%s\" has a dimension of %llu", src->source_name,
					   (unsigned long long) t->ne[k]);
			return false;
		}
		numel *= t->ne[k];
		src->shape[t->n_dims - 1 - k] = (int64_t) t->ne[k];
	}
	block = dequant_block_values(src->type);
	if (t->ne[0] % block != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: tensor \"%s\": rows of %llu values do not fill %s blocks of %d",
				   src->source_name, (unsigned long long) t->ne[0],
				   dequant_type_name(src->type), block);
		return false;
	}
	src->bytes = numel / block * dequant_block_bytes(src->type);
	if (t->offset > g->data_len || src->bytes > g->data_len - t->offset)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: tensor \"%s\" (%llu bytes at offset %llu) ends past the file's %llu bytes of data",
				   src->source_name, (unsigned long long) src->bytes,
				   (unsigned long long) t->offset, (unsigned long long) g->data_len);
		return false;
	}
	src->data = g->data + t->offset;
	return true;
}

/* ---------------------------------------------------------------- */
/* Config */

static const GgufTensor *
find_tensor(const Gguf *g, const char *name)
{
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (string_is(g->tensors[i].name, name))
			return &g->tensors[i];
	return NULL;
}

static bool
read_architecture(Gguf *g, CoreError *err)
{
	GgufString	arch;
	char		text[80];

	if (!get_string(g, "general.architecture", &arch, err))
		return false;
	if (arch.s == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: general.architecture is missing");
		return false;
	}
	if (!string_is(arch, "llama") && !string_is(arch, "qwen2"))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: architecture \"%s\" is not supported (llama and qwen2 are)",
				   printable(arch, text, sizeof(text)));
		return false;
	}
	memcpy(g->arch, arch.s, arch.len);
	g->arch[arch.len] = '\0';
	return true;
}

/*
 * llama.cpp's converter turns a "llama3" rope_scaling into rope_freqs:
 * for each frequency the divisor 1 (high), factor (low) or the smooth
 * blend's.  Find the llama3 parameters (low 1, high 4, the original
 * context from the metadata or 8192, as the converter's defaults) that
 * give these divisors, or refuse.
 */
static bool
read_rope_freqs(const Gguf *g, ModelConfig *c, CoreError *err)
{
	const GgufTensor *t = find_tensor(g, "rope_freqs.weight");
	int			half = model_config_head_dim(c) / 2;
	SourceTensor src;
	float	   *divisors;
	float		factor = 1.0f;
	int64_t		original = 8192;
	bool		match = true;

	if (t == NULL)
		return true;
	memset(&src, 0, sizeof(src));
	if (!source_tensor(g, t, &src, err))
		return false;
	if (src.type != DEQUANT_F32 || src.ndim != 1 || src.shape[0] != half)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: rope_freqs.weight must be %d F32 values", half);
		return false;
	}
	if (!get_arch_int(g, "rope.scaling.original_context_length", false, 1, INT32_MAX,
					  &original, err))
		return false;
	divisors = malloc(half * sizeof(float));
	if (divisors == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory");
		return false;
	}
	dequantize(DEQUANT_F32, src.data, divisors, half);
	for (int i = 0; i < half; i++)
		factor = isfinite(divisors[i]) && divisors[i] > factor ? divisors[i] : factor;
	c->rope_scaling = (ModelRopeScaling) {ROPE_SCALING_LLAMA3, factor, 1.0f, 4.0f, (int) original};
	for (int i = 0; i < half && match; i++)
	{
		double		inv_freq = pow(c->rope_theta, -2.0 * i / (2 * half));
		double		wavelen = 2.0 * M_PI / inv_freq;
		double		want;

		if (wavelen < original / 4.0)
			want = 1.0;
		else if (wavelen > (double) original)
			want = factor;
		else
		{
			double		smooth = (original / wavelen - 1.0) / 3.0;

			want = 1.0 / ((1.0 - smooth) / factor + smooth);
		}
		match = fabs(divisors[i] - want) <= 1e-4 * want;
	}
	free(divisors);
	if (factor == 1.0f)
		c->rope_scaling = (ModelRopeScaling) {0};
	else if (!match)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: rope_freqs.weight is not a llama3 rope scaling (low_freq_factor 1, high_freq_factor 4, original context %lld)",
				   (long long) original);
		return false;
	}
	return true;
}

static bool
read_rope(const Gguf *g, ModelConfig *c, CoreError *err)
{
	char		key[96];
	GgufString	type;
	double		theta = 10000.0;
	double		factor = 1.0;
	int64_t		dims = model_config_head_dim(c);

	find_arch(g, "rope.scaling.type", key, sizeof(key));
	if (!get_string(g, key, &type, err) ||
		!get_arch_float(g, "rope.freq_base", &theta, err) ||
		!get_arch_float(g, "rope.scaling.factor", &factor, err) ||
		!get_arch_int(g, "rope.dimension_count", false, 0, INT32_MAX, &dims, err))
		return false;
	if ((type.s != NULL && !string_is(type, "none")) || (type.s == NULL && factor != 1.0 && factor != 0.0))
	{
		char		text[80];

		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: rope scaling \"%s\" (factor %g) is not supported",
				   type.s ? printable(type, text, sizeof(text)) : "", factor);
		return false;
	}
	if (dims != model_config_head_dim(c))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: rotary positions on %lld of %d dimensions per head are not supported",
				   (long long) dims, model_config_head_dim(c));
		return false;
	}
	c->rope_theta = (float) theta;
	return read_rope_freqs(g, c, err);
}

static bool
read_config(const Gguf *g, ModelConfig *c, int *context_length,
			CoreError *err)
{
	const GgufTensor *embed = find_tensor(g, "token_embd.weight");
	int64_t		d = 0,
				n_layers = 0,
				d_ff = 0,
				n_heads = 0,
				n_kv_heads = -1,
				head_dim = 0,
				value_dim = -1,
				context = 0;
	double		eps = 1e-5;
	CoreError	why;

	if (embed == NULL || embed->n_dims != 2 || embed->ne[1] > INT32_MAX)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: no token_embd.weight matrix");
		return false;
	}
	if (!get_arch_int(g, "embedding_length", true, 1, INT32_MAX, &d, err) ||
		!get_arch_int(g, "block_count", true, 1, INT32_MAX, &n_layers, err) ||
		!get_arch_int(g, "feed_forward_length", true, 1, INT32_MAX, &d_ff, err) ||
		!get_arch_int(g, "attention.head_count", true, 1, INT32_MAX, &n_heads, err) ||
		!get_arch_int(g, "attention.head_count_kv", false, 1, INT32_MAX, &n_kv_heads, err) ||
		!get_arch_int(g, "attention.key_length", false, 1, INT32_MAX, &head_dim, err) ||
		!get_arch_int(g, "attention.value_length", false, 1, INT32_MAX, &value_dim, err) ||
		!get_arch_int(g, "context_length", false, 1, INT32_MAX, &context, err) ||
		!get_arch_float(g, "attention.layer_norm_rms_epsilon", &eps, err))
		return false;
	if (value_dim >= 0 && value_dim != (head_dim ? head_dim : d / n_heads))
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: value heads of %lld differ from key heads: not supported",
				   (long long) value_dim);
		return false;
	}
	ckpt_config_init(c);
	c->vocab_size = (int) embed->ne[1];
	c->d_model = (int) d;
	c->n_layers = (int) n_layers;
	c->d_ff = (int) d_ff;
	c->n_heads = (int) n_heads;
	c->n_kv_heads = (int) (n_kv_heads > 0 ? n_kv_heads : n_heads);
	c->head_dim = (int) head_dim;
	c->norm_eps = (float) eps;
	c->tied_embeddings = find_tensor(g, "output.weight") == NULL;
	c->qkv_bias = find_tensor(g, "blk.0.attn_q.bias") != NULL;
	c->max_seq_len = 2;			/* checked here for the shapes only */
	*context_length = (int) context;
	if (!model_config_validate(c, &why))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s", why.message);
		return false;
	}
	return read_rope(g, c, err);
}

/* ---------------------------------------------------------------- */
/* Tokenizer */

/* The string array at key into *strings, *lens (NULL, 0 when absent). */
static bool
string_array(Checkpoint *ckpt, const Gguf *g, const char *key,
			 const char *const **strings, const uint32_t **lens, int *n,
			 CoreError *err)
{
	const GgufValue *v = find(g, key);
	const char **s;
	uint32_t   *l;
	Cursor		c;

	*strings = NULL;
	*lens = NULL;
	*n = 0;
	if (v == NULL)
		return true;
	if (v->type != GGUF_ARRAY || v->elem_type != GGUF_STRING || v->n > INT32_MAX)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s is not an array of strings", key);
		return false;
	}
	s = ckpt_alloc(ckpt, v->n * sizeof(char *), err);
	l = ckpt_alloc(ckpt, v->n * sizeof(uint32_t), err);
	if (s == NULL || l == NULL)
		return false;
	/* the metadata pass checked that the strings are inside the file */
	c = (Cursor) {g->file, g->len, (uint64_t) (v->at - g->file), false};
	for (uint64_t i = 0; i < v->n; i++)
	{
		GgufString	str = take_string(&c);

		if (str.len > UINT32_MAX)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: a string of %s is too long", key);
			return false;
		}
		s[i] = str.s;
		l[i] = (uint32_t) str.len;
	}
	*strings = s;
	*lens = l;
	*n = (int) v->n;
	return true;
}

/* The n numbers of the array at key (f32 or i32 as type), copied. */
static bool
number_array(Checkpoint *ckpt, const Gguf *g, const char *key, uint32_t type,
			 int n, const void **out, CoreError *err)
{
	const GgufValue *v = find(g, key);
	uint32_t   *copy;

	*out = NULL;
	if (v == NULL)
		return true;
	if (v->type != GGUF_ARRAY || (v->elem_type != type &&
								  !(type == GGUF_INT32 && v->elem_type == GGUF_UINT32)) ||
		v->n != (uint64_t) n)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: %s is not an array of %d %s", key, n,
				   type == GGUF_FLOAT32 ? "float32" : "int32");
		return false;
	}
	copy = ckpt_alloc(ckpt, (size_t) n * 4, err);
	if (copy == NULL)
		return false;
	for (int i = 0; i < n; i++)
		copy[i] = le_get_u32(v->at + 4 * (size_t) i);
	*out = copy;
	return true;
}

static bool
token_id(const Gguf *g, const char *key, int n_tokens, int32_t *id,
		 CoreError *err)
{
	int64_t		x = -1;

	/* -1 also says "none" */
	if (!get_int(g, key, false, -1, INT32_MAX, &x, err))
		return false;
	if (x >= n_tokens)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s = %lld is outside the %d tokens",
				   key, (long long) x, n_tokens);
		return false;
	}
	*id = (int32_t) x;
	return true;
}

static bool
flag(const Gguf *g, const char *key, int *out, CoreError *err)
{
	const GgufValue *v = find(g, key);

	*out = -1;
	if (v == NULL)
		return true;
	if (v->type != GGUF_BOOL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: %s is not a bool", key);
		return false;
	}
	*out = v->at[0] != 0;
	return true;
}

static bool
optional_copy(Checkpoint *ckpt, const Gguf *g, const char *key,
			  const char **out, CoreError *err)
{
	GgufString	s;

	*out = NULL;
	if (!get_string(g, key, &s, err))
		return false;
	if (s.s != NULL)
		*out = ckpt_strndup(ckpt, s.s, s.len, err);
	return s.s == NULL || *out != NULL;
}

static bool
read_tokenizer(Checkpoint *ckpt, const Gguf *g, CoreError *err)
{
	TokenizerVocab *v = &ckpt->tokenizer.vocab;
	const void *scores,
			   *types;

	ckpt->tokenizer.kind = TOKSRC_GGUF;
	if (!string_array(ckpt, g, "tokenizer.ggml.tokens", &v->tokens, &v->token_lens,
					  &v->n_tokens, err) ||
		!string_array(ckpt, g, "tokenizer.ggml.merges", &v->merges, &v->merge_lens,
					  &v->n_merges, err))
		return false;
	if (v->n_tokens == 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "GGUF: no tokenizer in the file (tokenizer.ggml.tokens is missing or empty)");
		return false;
	}
	if (!optional_copy(ckpt, g, "tokenizer.ggml.model", &v->model, err) ||
		!optional_copy(ckpt, g, "tokenizer.ggml.pre", &v->pre, err) ||
		!number_array(ckpt, g, "tokenizer.ggml.scores", GGUF_FLOAT32, v->n_tokens, &scores, err) ||
		!number_array(ckpt, g, "tokenizer.ggml.token_type", GGUF_INT32, v->n_tokens, &types, err))
		return false;
	if (v->model == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "GGUF: tokenizer.ggml.model is missing");
		return false;
	}
	v->scores = scores;
	v->token_types = types;
	v->bos_id = v->eos_id = v->unk_id = v->pad_id = -1;
	return token_id(g, "tokenizer.ggml.bos_token_id", v->n_tokens, &v->bos_id, err) &&
		token_id(g, "tokenizer.ggml.eos_token_id", v->n_tokens, &v->eos_id, err) &&
		token_id(g, "tokenizer.ggml.unknown_token_id", v->n_tokens, &v->unk_id, err) &&
		token_id(g, "tokenizer.ggml.padding_token_id", v->n_tokens, &v->pad_id, err) &&
		flag(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err) &&
		flag(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err) &&
		flag(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err);
}

/* ---------------------------------------------------------------- */

static bool
plan_tensors(Checkpoint *ckpt, const Gguf *g, CheckpointPlan *plan,
			 CoreError *err)
{
	plan->tensors = ckpt_alloc(ckpt, (g->n_tensors + 1) * sizeof(SourceTensor), err);
	if (plan->tensors == NULL)
		return false;
	for (uint64_t i = 0; i < g->n_tensors; i++)
	{
		const GgufTensor *t = &g->tensors[i];
		SourceTensor *src = &plan->tensors[plan->n_tensors];

		if (string_is(t->name, "rope_freqs.weight"))
			continue;
		if (!source_tensor(g, t, src, err))
			return false;
		if (t->name.len < sizeof(src->source_name))
			map_name(src->source_name, src->hf_name, sizeof(src->hf_name));
		plan->n_tensors++;
	}
	return true;
}

bool
ckpt_read_gguf(Checkpoint *ckpt, const CheckpointFiles *files,
			   int max_seq_len, CoreError *err)
{
	Gguf		g = {0};
	CheckpointPlan plan = {0};
	size_t		len;
	const uint8_t *file = ckpt_open_weights(ckpt, files, &len, err);
	bool		ok;

	ok = file != NULL && parse(file, len, &g, err) && read_architecture(&g, err) &&
		read_config(&g, &plan.config, &plan.context_length, err) &&
		plan_tensors(ckpt, &g, &plan, err) && read_tokenizer(ckpt, &g, err) &&
		ckpt_set_names(ckpt, "gguf", g.arch, err);
	plan.interleaved_rope = strcmp(g.arch, "llama") == 0;
	ok = ok && ckpt_build(ckpt, &plan, max_seq_len, err);
	free(g.kv);
	free(g.tensors);
	return ok;
}
