/*
 * model_io.c - serialization of the student model; see model_io.h for the
 * formats: version 1 in one blob, version 2 as a header and data written
 * and read in chunks.
 */
#include "core/model_io.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/dequant.h"
#include "core/util.h"

#define DTYPE_FLOAT32 1

#define FLAG_TIED		1u
#define FLAG_PREFIX_LM	2u
#define FLAG_QKV_BIAS	4u
#define FLAGS_KNOWN		(FLAG_TIED | FLAG_PREFIX_LM | FLAG_QKV_BIAS)

/* ---------------------------------------------------------------- */
/* Writing */

typedef struct Writer
{
	uint8_t    *buf;
	size_t		pos;
} Writer;

static void
put_bytes(Writer *w, const void *data, size_t n)
{
	memcpy(w->buf + w->pos, data, n);
	w->pos += n;
}

static void
put_le(Writer *w, uint64_t value, int n_bytes)
{
	le_put(w->buf + w->pos, value, n_bytes);
	w->pos += n_bytes;
}

static void
put_f32(Writer *w, float value)
{
	uint32_t	bits;

	memcpy(&bits, &value, 4);
	put_le(w, bits, 4);
}

static void
put_floats(Writer *w, const float *x, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	put_bytes(w, x, n * sizeof(float));
#else
	for (size_t i = 0; i < n; i++)
		put_f32(w, x[i]);
#endif
}

static size_t
table_entry_size(const ModelTensor *t)
{
	return 2 + strlen(t->name) + 1 + 1 + 4 * t->ndim + 8;
}

/* magic, version, 7 config integers, flags, 4 config floats, n_tensors */
#define HEADER_BYTES (4 + 4 + 7 * 4 + 4 + 4 * 4 + 4)
/* data_bytes before the data, the checksum after it */
#define DATA_FRAME_BYTES (8 + 4)

size_t
model_serialized_size(const Model *model)
{
	size_t		size = HEADER_BYTES;

	for (int i = 0; i < model->n_tensors; i++)
		size += table_entry_size(&model->tensors[i]);
	return size + DATA_FRAME_BYTES + model->n_params * sizeof(float);
}

size_t
model_serialized_size_bound(const ModelConfig *config)
{
	size_t		n_params;
	int			n_tensors = model_tensor_table(config, NULL, &n_params);
	ModelTensor longest = {.ndim = 2};

	memset(longest.name, 'x', MODEL_TENSOR_NAME_LEN - 1);
	return HEADER_BYTES + n_tensors * table_entry_size(&longest) +
		DATA_FRAME_BYTES + n_params * sizeof(float);
}

/*
 * The header's start, in either version: magic, version, the config
 * (version 2 adds head_dim and the rope scaling) and the tensor count.
 */
static void
put_config(Writer *w, const Model *model, uint32_t version)
{
	const ModelConfig *c = &model->config;
	const ModelRopeScaling *rs = &c->rope_scaling;
	uint32_t	flags = (c->tied_embeddings ? FLAG_TIED : 0) |
		(c->prefix_lm ? FLAG_PREFIX_LM : 0) |
		(c->qkv_bias ? FLAG_QKV_BIAS : 0);

	put_bytes(w, MODEL_IO_MAGIC, 4);
	put_le(w, version, 4);
	put_le(w, c->vocab_size, 4);
	put_le(w, c->d_model, 4);
	put_le(w, c->n_layers, 4);
	put_le(w, c->n_heads, 4);
	put_le(w, c->n_kv_heads, 4);
	if (version == MODEL_IO_VERSION_CHUNKED)
		put_le(w, model->head_dim, 4);
	put_le(w, c->d_ff, 4);
	put_le(w, c->max_seq_len, 4);
	put_le(w, flags, 4);
	put_f32(w, c->dropout);
	put_f32(w, c->rope_theta);
	put_f32(w, c->norm_eps);
	put_f32(w, c->logit_scale);
	if (version == MODEL_IO_VERSION_CHUNKED)
	{
		put_le(w, rs->kind, 4);
		put_f32(w, rs->factor);
		put_f32(w, rs->low_freq_factor);
		put_f32(w, rs->high_freq_factor);
		put_le(w, rs->original_max_position, 4);
	}
	put_le(w, model->n_tensors, 4);
}

/* A tensor's entry in the table: its data at byte offset, in dtype. */
static void
put_table_entry(Writer *w, const ModelTensor *t, uint8_t dtype, uint64_t offset)
{
	size_t		name_len = strlen(t->name);

	put_le(w, name_len, 2);
	put_bytes(w, t->name, name_len);
	put_le(w, dtype, 1);
	put_le(w, t->ndim, 1);
	for (int k = 0; k < t->ndim; k++)
		put_le(w, t->shape[k], 4);
	put_le(w, offset, 8);
}

void
model_serialize(const Model *model, void *buf)
{
	Writer		w = {buf, 0};

	put_config(&w, model, MODEL_IO_VERSION);
	for (int i = 0; i < model->n_tensors; i++)
		put_table_entry(&w, &model->tensors[i], DTYPE_FLOAT32,
						model->tensors[i].offset * sizeof(float));
	put_le(&w, model->n_params * sizeof(float), 8);
	put_floats(&w, model->params, model->n_params);
	put_le(&w, crc32c(0, buf, w.pos), 4);
}

/* ---------------------------------------------------------------- */
/* Reading */

typedef struct Reader
{
	const uint8_t *buf;
	size_t		len;
	size_t		pos;
	bool		overrun;		/* a read went past the end */
} Reader;

static const uint8_t *
get_bytes(Reader *r, size_t n)
{
	const uint8_t *p = r->buf + r->pos;

	if (r->overrun || n > r->len - r->pos)
	{
		r->overrun = true;
		return NULL;
	}
	r->pos += n;
	return p;
}

/* Unsigned little-endian integer of n_bytes; 0 past the end. */
static uint64_t
get_le(Reader *r, int n_bytes)
{
	const uint8_t *p = get_bytes(r, n_bytes);

	return p != NULL ? le_get(p, n_bytes) : 0;
}

/* A u32 config field, as an int (out of int range becomes -1: invalid). */
static int
get_int(Reader *r)
{
	uint64_t	value = get_le(r, 4);

	return value > INT32_MAX ? -1 : (int) value;
}

static float
get_f32(Reader *r)
{
	uint32_t	bits = (uint32_t) get_le(r, 4);
	float		value;

	memcpy(&value, &bits, 4);
	return value;
}

static void
get_floats(Reader *r, float *x, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(x, get_bytes(r, n * sizeof(float)), n * sizeof(float));
#else
	for (size_t i = 0; i < n; i++)
		x[i] = get_f32(r);
#endif
}

static bool
truncated(const Reader *r, CoreError *err)
{
	if (!r->overrun)
		return false;
	core_error(err, CORE_ERR_CORRUPT,
			   "truncated model: %zu bytes end inside the header", r->len);
	return true;
}

/* The config of a version 1 or 2 header. */
static bool
read_config(Reader *r, int version, ModelConfig *c, CoreError *err)
{
	uint32_t	flags;
	uint32_t	rope_kind = ROPE_SCALING_NONE;
	CoreError	why;

	memset(c, 0, sizeof(*c));
	c->vocab_size = get_int(r);
	c->d_model = get_int(r);
	c->n_layers = get_int(r);
	c->n_heads = get_int(r);
	c->n_kv_heads = get_int(r);
	if (version >= MODEL_IO_VERSION_CHUNKED)
		c->head_dim = get_int(r);
	c->d_ff = get_int(r);
	c->max_seq_len = get_int(r);
	flags = (uint32_t) get_le(r, 4);
	c->dropout = get_f32(r);
	c->rope_theta = get_f32(r);
	c->norm_eps = get_f32(r);
	c->logit_scale = get_f32(r);
	if (version >= MODEL_IO_VERSION_CHUNKED)
	{
		rope_kind = (uint32_t) get_le(r, 4);
		c->rope_scaling.factor = get_f32(r);
		c->rope_scaling.low_freq_factor = get_f32(r);
		c->rope_scaling.high_freq_factor = get_f32(r);
		c->rope_scaling.original_max_position = get_int(r);
	}
	if (truncated(r, err))
		return false;
	if (flags & ~FLAGS_KNOWN)
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt model: unknown flags 0x%x", flags);
		return false;
	}
	if (version >= MODEL_IO_VERSION_CHUNKED && c->head_dim == 0)
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt model: head_dim is 0");
		return false;
	}
	if (rope_kind > ROPE_SCALING_LLAMA3)
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt model: unknown rope scaling kind %u",
				   rope_kind);
		return false;
	}
	c->rope_scaling.kind = (ModelRopeScalingKind) rope_kind;
	c->tied_embeddings = (flags & FLAG_TIED) != 0;
	c->prefix_lm = (flags & FLAG_PREFIX_LM) != 0;
	c->qkv_bias = (flags & FLAG_QKV_BIAS) != 0;
	if (!model_config_validate(c, &why))
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt model: %s", why.message);
		return false;
	}
	return true;
}

/* Check the stored tensor table against the one the config implies. */
static bool
read_tensor_table(Reader *r, const Model *model, CoreError *err)
{
	int			n_tensors = get_int(r);

	if (truncated(r, err))
		return false;
	if (n_tensors != model->n_tensors)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "corrupt model: %d tensors, the config implies %d",
				   n_tensors, model->n_tensors);
		return false;
	}
	for (int i = 0; i < n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];
		size_t		name_len = get_le(r, 2);
		const uint8_t *name = get_bytes(r, name_len);
		int			dtype = (int) get_le(r, 1);
		int			ndim = (int) get_le(r, 1);
		bool		same;

		same = name != NULL && name_len == strlen(t->name) &&
			memcmp(name, t->name, name_len) == 0 &&
			dtype == DTYPE_FLOAT32 && ndim == t->ndim;
		for (int k = 0; same && k < ndim; k++)
			same = get_le(r, 4) == (uint64_t) t->shape[k];
		same = same && get_le(r, 8) == t->offset * sizeof(float);
		if (truncated(r, err))
			return false;
		if (!same)
		{
			core_error(err, CORE_ERR_CORRUPT,
					   "corrupt model: tensor %d does not match \"%s\" of the config",
					   i, t->name);
			return false;
		}
	}
	return true;
}

/*
 * The bytes are any bytea a table owner can write, and the arithmetic of
 * prediction is undefined on NaN and infinity: refuse them, naming the
 * first tensor that holds one.
 */
static bool
check_finite(const Model *model, CoreError *err)
{
	for (int i = 0; i < model->n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];
		const float *p = model->params + t->offset;

		for (size_t j = 0; j < t->numel; j++)
			if (!isfinite(p[j]))
			{
				core_error(err, CORE_ERR_CORRUPT,
						   "corrupt model: parameter %zu of \"%s\" is not a finite number (%g)",
						   j, t->name, p[j]);
				return false;
			}
	}
	return true;
}

Model *
model_deserialize(const void *data, size_t len, CoreError *err)
{
	Reader		r = {data, len, 0, false};
	ModelConfig config;
	Model	   *model;
	uint32_t	version;
	uint64_t	data_bytes;
	size_t		expected;
	uint32_t	stored_crc;

	if (len < 8 || memcmp(data, MODEL_IO_MAGIC, 4) != 0)
	{
		core_error(err, CORE_ERR_CORRUPT, "not a distill model (no \"%s\" header)",
				   MODEL_IO_MAGIC);
		return NULL;
	}
	r.pos = 4;
	version = (uint32_t) get_le(&r, 4);
	if (version != MODEL_IO_VERSION)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "unsupported model format version %u (this build reads %d)",
				   version, MODEL_IO_VERSION);
		return NULL;
	}
	if (!read_config(&r, MODEL_IO_VERSION, &config, err))
		return NULL;
	if (model_count_params(&config) * sizeof(float) > len - r.pos)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "truncated model: %zu bytes cannot hold the %zu parameters of its header",
				   len, model_count_params(&config));
		return NULL;
	}

	/* builds the expected tensor table; params stay unread until checked */
	model = model_create(&config, err);
	if (model == NULL)
		return NULL;
	if (!read_tensor_table(&r, model, err))
		goto fail;
	data_bytes = get_le(&r, 8);
	if (truncated(&r, err))
		goto fail;
	if (data_bytes != model->n_params * sizeof(float))
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "corrupt model: %llu bytes of parameters, the config implies %zu",
				   (unsigned long long) data_bytes, model->n_params * sizeof(float));
		goto fail;
	}
	expected = r.pos + data_bytes + 4;
	if (len != expected)
	{
		core_error(err, CORE_ERR_CORRUPT, "%s model: %zu bytes, expected %zu",
				   len < expected ? "truncated" : "corrupt", len, expected);
		goto fail;
	}
	get_floats(&r, model->params, model->n_params);
	stored_crc = (uint32_t) get_le(&r, 4);
	if (stored_crc != crc32c(0, data, len - 4))
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt model: checksum mismatch");
		goto fail;
	}
	if (!check_finite(model, err))
		goto fail;
	return model;

fail:
	model_free(model);
	return NULL;
}

/* ---------------------------------------------------------------- */
/* Version 2: a header, and data in chunks */

static int
dtype_bytes(uint8_t dtype)
{
	return dtype == MODEL_DTYPE_F32 ? 4 : 2;
}

static uint8_t
dtype_of(const uint8_t *dtypes, int i)
{
	return dtypes != NULL ? dtypes[i] : MODEL_DTYPE_F32;
}

uint64_t
model_data_bytes(const Model *model, const uint8_t *dtypes)
{
	uint64_t	bytes = 0;

	for (int i = 0; i < model->n_tensors; i++)
		bytes += (uint64_t) model->tensors[i].numel * dtype_bytes(dtype_of(dtypes, i));
	return bytes;
}

/* One parameter in dtype, little-endian, at out. */
static void
encode_value(uint8_t dtype, float x, uint8_t *out)
{
	uint32_t	bits;

	if (dtype == MODEL_DTYPE_F16)
		le_put(out, float_to_half(x), 2);
	else if (dtype == MODEL_DTYPE_BF16)
		le_put(out, float_to_bfloat(x), 2);
	else
	{
		memcpy(&bits, &x, 4);
		le_put(out, bits, 4);
	}
}

static float
decode_value(uint8_t dtype, const uint8_t *in)
{
	uint32_t	bits;
	float		x;

	if (dtype == MODEL_DTYPE_F16)
		return half_to_float((uint16_t) le_get(in, 2));
	if (dtype == MODEL_DTYPE_BF16)
		return bfloat_to_float((uint16_t) le_get(in, 2));
	bits = le_get_u32(in);
	memcpy(&x, &bits, 4);
	return x;
}

static void
encode_run(uint8_t dtype, const float *x, size_t n, uint8_t *out)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (dtype == MODEL_DTYPE_F32)
	{
		memcpy(out, x, n * sizeof(float));
		return;
	}
#endif
	for (size_t i = 0; i < n; i++)
		encode_value(dtype, x[i], out + i * dtype_bytes(dtype));
}

static void
decode_run(uint8_t dtype, const uint8_t *in, size_t n, float *x)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (dtype == MODEL_DTYPE_F32)
	{
		memcpy(x, in, n * sizeof(float));
		return;
	}
#endif
	for (size_t i = 0; i < n; i++)
		x[i] = decode_value(dtype, in + i * dtype_bytes(dtype));
}

/*
 * Whole values straight into buf; a value cut by the range's ends goes
 * through a small buffer.
 */
void
model_data_read(const Model *model, const uint8_t *dtypes, uint64_t offset,
				void *buf, size_t len)
{
	uint8_t    *out = buf;
	uint64_t	start = 0;		/* of tensor i in the data */
	int			i = 0;

	while (len > 0 && i < model->n_tensors)
	{
		const ModelTensor *t = &model->tensors[i];
		uint8_t		dtype = dtype_of(dtypes, i);
		int			size = dtype_bytes(dtype);
		uint64_t	end = start + (uint64_t) t->numel * size;
		const float *p = model->params + t->offset;

		while (len > 0 && offset < end)
		{
			uint64_t	elem = (offset - start) / size;
			int			within = (int) ((offset - start) % size);

			if (within != 0 || len < (size_t) size)
			{
				uint8_t		value[4];
				size_t		n = size - within < (int) len ? (size_t) (size - within) : len;

				encode_value(dtype, p[elem], value);
				memcpy(out, value + within, n);
				out += n;
				offset += n;
				len -= n;
			}
			else
			{
				size_t		n = len / size;

				if (n > t->numel - elem)
					n = t->numel - elem;
				encode_run(dtype, p + elem, n, out);
				out += n * size;
				offset += (uint64_t) n * size;
				len -= n * size;
			}
		}
		start = end;
		i++;
	}
}

/* Fixed fields of a version 2 header, before the tensor table */
#define HEADER_V2_BYTES (4 + 4 + 8 * 4 + 4 + 4 * 4 + 4 + 3 * 4 + 4 + 4)
/* data_bytes, data_crc, header_crc after it */
#define HEADER_V2_TAIL_BYTES (8 + 4 + 4)

void *
model_save_header(const Model *model, const uint8_t *dtypes,
				  uint32_t data_crc, size_t *len)
{
	size_t		size = HEADER_V2_BYTES + HEADER_V2_TAIL_BYTES;
	uint64_t	offset = 0;
	Writer		w;

	*len = 0;
	for (int i = 0; i < model->n_tensors; i++)
		size += table_entry_size(&model->tensors[i]);
	w.buf = malloc(size);
	w.pos = 0;
	if (w.buf == NULL)
		return NULL;
	put_config(&w, model, MODEL_IO_VERSION_CHUNKED);
	for (int i = 0; i < model->n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];

		put_table_entry(&w, t, dtype_of(dtypes, i), offset);
		offset += (uint64_t) t->numel * dtype_bytes(dtype_of(dtypes, i));
	}
	put_le(&w, offset, 8);
	put_le(&w, data_crc, 4);
	put_le(&w, crc32c(0, w.buf, w.pos), 4);
	*len = w.pos;
	return w.buf;
}

struct ModelLoader
{
	Model	   *model;
	uint8_t    *dtypes;			/* [n_tensors], then a 0 */
	uint64_t	data_bytes;		/* announced */
	uint64_t	fed;
	uint32_t	data_crc;		/* announced */
	uint32_t	crc;			/* of what was fed */
	int			tensor;			/* the next value to fill: tensor, */
	size_t		elem;			/* element */
	uint8_t		partial[4];		/* bytes of a value cut between chunks */
	int			n_partial;
};

/*
 * Check the stored tensor table against the one config implies (built in
 * expected), reading each tensor's dtype into dtypes and adding up the
 * data bytes.
 */
static bool
read_table_v2(Reader *r, const ModelTensor *expected, int n_expected,
			  uint8_t *dtypes, uint64_t *data_bytes, CoreError *err)
{
	int			n_tensors = get_int(r);
	uint64_t	offset = 0;

	if (truncated(r, err))
		return false;
	if (n_tensors != n_expected)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "corrupt model: %d tensors, the config implies %d",
				   n_tensors, n_expected);
		return false;
	}
	for (int i = 0; i < n_tensors; i++)
	{
		const ModelTensor *t = &expected[i];
		size_t		name_len = get_le(r, 2);
		const uint8_t *name = get_bytes(r, name_len);
		int			dtype = (int) get_le(r, 1);
		int			ndim = (int) get_le(r, 1);
		bool		same;

		same = name != NULL && name_len == strlen(t->name) &&
			memcmp(name, t->name, name_len) == 0 &&
			dtype >= MODEL_DTYPE_F32 && dtype <= MODEL_DTYPE_BF16 &&
			ndim == t->ndim;
		for (int k = 0; same && k < ndim; k++)
			same = get_le(r, 4) == (uint64_t) t->shape[k];
		same = same && get_le(r, 8) == offset;
		if (truncated(r, err))
			return false;
		if (!same)
		{
			core_error(err, CORE_ERR_CORRUPT,
					   "corrupt model: tensor %d does not match \"%s\" of the config",
					   i, t->name);
			return false;
		}
		dtypes[i] = (uint8_t) dtype;
		offset += (uint64_t) t->numel * dtype_bytes((uint8_t) dtype);
	}
	*data_bytes = offset;
	return true;
}

/*
 * Everything but the allocation of the model: the header's checksum,
 * config, table and sizes.  dtypes gets room for the table (a few
 * thousand bytes at most, as the config bounds the layers).
 */
static bool
read_header_v2(Reader *r, ModelConfig *config, uint8_t **dtypes,
			   uint64_t *data_bytes, uint32_t *data_crc, CoreError *err)
{
	ModelTensor *expected;
	size_t		n_params;
	int			n_tensors;
	bool		ok;

	if (!read_config(r, MODEL_IO_VERSION_CHUNKED, config, err))
		return false;
	n_tensors = model_tensor_table(config, NULL, &n_params);
	expected = malloc(n_tensors * sizeof(ModelTensor));
	*dtypes = calloc(n_tensors + 1, 1);	/* ends in a 0: see model_io.h */
	if (expected == NULL || *dtypes == NULL)
	{
		free(expected);
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a tensor table");
		return false;
	}
	model_tensor_table(config, expected, &n_params);
	ok = read_table_v2(r, expected, n_tensors, *dtypes, data_bytes, err);
	free(expected);
	if (!ok)
		return false;
	if (get_le(r, 8) != *data_bytes)
	{
		if (!truncated(r, err))
			core_error(err, CORE_ERR_CORRUPT,
					   "corrupt model: the data size does not match the table's %llu bytes",
					   (unsigned long long) *data_bytes);
		return false;
	}
	*data_crc = (uint32_t) get_le(r, 4);
	get_le(r, 4);				/* the header's checksum, checked first */
	if (truncated(r, err))
		return false;
	if (r->pos != r->len)
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt model header: %zu bytes after its end",
				   r->len - r->pos);
		return false;
	}
	return true;
}

/*
 * A version 2 header, checked completely: magic, version, checksum first
 * (so that a flipped bit is always caught), then what read_header_v2()
 * checks.  *dtypes is malloc'd on success.
 */
static bool
parse_header_v2(const void *header, size_t len, ModelConfig *config,
				uint8_t **dtypes, uint64_t *data_bytes, uint32_t *data_crc,
				CoreError *err)
{
	Reader		r = {header, len, 0, false};
	uint32_t	version;

	*dtypes = NULL;
	if (len < 12 || memcmp(header, MODEL_IO_MAGIC, 4) != 0)
	{
		core_error(err, CORE_ERR_CORRUPT, "not a distill model header (no \"%s\")",
				   MODEL_IO_MAGIC);
		return false;
	}
	r.pos = 4;
	version = (uint32_t) get_le(&r, 4);
	if (version != MODEL_IO_VERSION_CHUNKED)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "unsupported model header version %u (this build reads %d)",
				   version, MODEL_IO_VERSION_CHUNKED);
		return false;
	}
	if (le_get_u32((const uint8_t *) header + len - 4) != crc32c(0, header, len - 4))
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt model header: checksum mismatch");
		return false;
	}
	if (read_header_v2(&r, config, dtypes, data_bytes, data_crc, err))
		return true;
	free(*dtypes);
	*dtypes = NULL;
	return false;
}

bool
model_header_config(const void *header, size_t len, ModelConfig *config,
					CoreError *err)
{
	uint8_t    *dtypes;
	uint64_t	data_bytes;
	uint32_t	data_crc;

	if (!parse_header_v2(header, len, config, &dtypes, &data_bytes, &data_crc, err))
		return false;
	free(dtypes);
	return true;
}

ModelLoader *
model_loader_begin(const void *header, size_t len, CoreError *err)
{
	ModelConfig config;
	ModelLoader *loader = calloc(1, sizeof(ModelLoader));

	if (loader == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a model loader");
		return NULL;
	}
	if (!parse_header_v2(header, len, &config, &loader->dtypes, &loader->data_bytes,
						 &loader->data_crc, err) ||
		(loader->model = model_create(&config, err)) == NULL)
	{
		model_loader_free(loader);
		return NULL;
	}
	return loader;
}

/* The next value is complete: move past it, to the next tensor at its end. */
static void
advance(ModelLoader *loader, size_t n)
{
	loader->elem += n;
	if (loader->elem == loader->model->tensors[loader->tensor].numel)
	{
		loader->tensor++;
		loader->elem = 0;
	}
}

bool
model_loader_feed(ModelLoader *loader, const void *data, size_t len,
				  CoreError *err)
{
	const uint8_t *in = data;

	if (len > loader->data_bytes - loader->fed)
	{
		core_error(err, CORE_ERR_CORRUPT,
				   "corrupt model: more than the %llu bytes of data its header announces",
				   (unsigned long long) loader->data_bytes);
		return false;
	}
	loader->crc = crc32c(loader->crc, data, len);
	loader->fed += len;
	while (len > 0)
	{
		const ModelTensor *t = &loader->model->tensors[loader->tensor];
		float	   *p = loader->model->params + t->offset;
		uint8_t		dtype = loader->dtypes[loader->tensor];
		int			size = dtype_bytes(dtype);

		if (loader->n_partial > 0 || len < (size_t) size)
		{
			size_t		n = size - loader->n_partial;

			n = n < len ? n : len;
			memcpy(loader->partial + loader->n_partial, in, n);
			loader->n_partial += (int) n;
			in += n;
			len -= n;
			if (loader->n_partial == size)
			{
				p[loader->elem] = decode_value(dtype, loader->partial);
				loader->n_partial = 0;
				advance(loader, 1);
			}
		}
		else
		{
			size_t		n = len / size;

			if (n > t->numel - loader->elem)
				n = t->numel - loader->elem;
			decode_run(dtype, in, n, p + loader->elem);
			in += n * size;
			len -= n * size;
			advance(loader, n);
		}
	}
	return true;
}

Model *
model_loader_finish(ModelLoader *loader, CoreError *err)
{
	Model	   *model = NULL;

	if (loader->fed != loader->data_bytes)
		core_error(err, CORE_ERR_CORRUPT,
				   "truncated model: %llu bytes of data, its header announces %llu",
				   (unsigned long long) loader->fed,
				   (unsigned long long) loader->data_bytes);
	else if (loader->crc != loader->data_crc)
		core_error(err, CORE_ERR_CORRUPT, "corrupt model: data checksum mismatch");
	else if (check_finite(loader->model, err))
	{
		model = loader->model;
		loader->model = NULL;
	}
	model_loader_free(loader);
	return model;
}

void
model_loader_free(ModelLoader *loader)
{
	if (loader == NULL)
		return;
	model_free(loader->model);
	free(loader->dtypes);
	free(loader);
}

const uint8_t *
model_loader_dtypes(const ModelLoader *loader)
{
	return loader->dtypes;
}
