/*
 * model_io.c - serialization of the student model; see model_io.h for the
 * format.
 */
#include "core/model_io.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/crc32c.h"
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

void
model_serialize(const Model *model, void *buf)
{
	const ModelConfig *c = &model->config;
	Writer		w = {buf, 0};
	uint32_t	flags = (c->tied_embeddings ? FLAG_TIED : 0) |
		(c->prefix_lm ? FLAG_PREFIX_LM : 0) |
		(c->qkv_bias ? FLAG_QKV_BIAS : 0);

	put_bytes(&w, MODEL_IO_MAGIC, 4);
	put_le(&w, MODEL_IO_VERSION, 4);
	put_le(&w, c->vocab_size, 4);
	put_le(&w, c->d_model, 4);
	put_le(&w, c->n_layers, 4);
	put_le(&w, c->n_heads, 4);
	put_le(&w, c->n_kv_heads, 4);
	put_le(&w, c->d_ff, 4);
	put_le(&w, c->max_seq_len, 4);
	put_le(&w, flags, 4);
	put_f32(&w, c->dropout);
	put_f32(&w, c->rope_theta);
	put_f32(&w, c->norm_eps);
	put_f32(&w, c->logit_scale);
	put_le(&w, model->n_tensors, 4);
	for (int i = 0; i < model->n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];
		size_t		name_len = strlen(t->name);

		put_le(&w, name_len, 2);
		put_bytes(&w, t->name, name_len);
		put_le(&w, DTYPE_FLOAT32, 1);
		put_le(&w, t->ndim, 1);
		for (int k = 0; k < t->ndim; k++)
			put_le(&w, t->shape[k], 4);
		put_le(&w, t->offset * sizeof(float), 8);
	}
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

static bool
read_config(Reader *r, ModelConfig *c, CoreError *err)
{
	uint32_t	flags;
	CoreError	why;

	memset(c, 0, sizeof(*c));
	c->vocab_size = get_int(r);
	c->d_model = get_int(r);
	c->n_layers = get_int(r);
	c->n_heads = get_int(r);
	c->n_kv_heads = get_int(r);
	c->d_ff = get_int(r);
	c->max_seq_len = get_int(r);
	flags = (uint32_t) get_le(r, 4);
	c->dropout = get_f32(r);
	c->rope_theta = get_f32(r);
	c->norm_eps = get_f32(r);
	c->logit_scale = get_f32(r);
	if (truncated(r, err))
		return false;
	if (flags & ~FLAGS_KNOWN)
	{
		core_error(err, CORE_ERR_CORRUPT, "corrupt model: unknown flags 0x%x", flags);
		return false;
	}
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
	if (!read_config(&r, &config, err))
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
