/*
 * checkpoint.c - what the three checkpoint readers share: detection, the
 * dispatch, and ckpt_build(), which maps the tensors a reader found onto
 * the model's tensor table, checks them all before allocating anything
 * big, converts them to float32 and puts interleaved RoPE rows back in
 * rotate-half order.  See checkpoint.h.
 */
#include "core/checkpoint_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model_io.h"

CheckpointFormat
checkpoint_detect(const void *data, size_t len)
{
	if (len >= 4 && memcmp(data, "GGUF", 4) == 0)
		return CHECKPOINT_GGUF;
	return CHECKPOINT_LLAMA2C;
}

void *
ckpt_alloc(Checkpoint *ckpt, size_t size, CoreError *err)
{
	void	   *p;

	if (ckpt->n_allocations == ckpt->allocations_room)
	{
		int			room = ckpt->allocations_room ? 2 * ckpt->allocations_room : 16;
		void	  **grown = realloc(ckpt->allocations, room * sizeof(void *));

		if (grown == NULL)
			goto oom;
		ckpt->allocations = grown;
		ckpt->allocations_room = room;
	}
	p = calloc(1, size > 0 ? size : 1);
	if (p == NULL)
		goto oom;
	ckpt->allocations[ckpt->n_allocations++] = p;
	return p;

oom:
	core_error(err, CORE_ERR_NO_MEMORY, "out of memory reading a checkpoint (%zu bytes)", size);
	return NULL;
}

char *
ckpt_strndup(Checkpoint *ckpt, const char *s, size_t len, CoreError *err)
{
	char	   *copy = ckpt_alloc(ckpt, len + 1, err);

	if (copy != NULL)
		memcpy(copy, s, len);
	return copy;
}

static char *
strdup_or_error(const char *s, CoreError *err)
{
	char	   *copy = strdup(s);

	if (copy == NULL)
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory reading a checkpoint");
	return copy;
}

const uint8_t *
ckpt_open(const CheckpointFiles *files, const char *name, bool required,
		  size_t *len, CoreError *err)
{
	CoreError	why = {0};
	const void *data;

	*len = 0;
	data = files->open(files->ctx, name, required, len, &why);
	if (data != NULL)
		return data;
	*len = 0;
	if (why.kind != CORE_OK)
		core_error(err, why.kind, "%s", why.message);
	else if (required)
		core_error(err, CORE_ERR_INVALID_INPUT, "checkpoint: the file \"%s\" is missing",
				   name[0] ? name : "(weights)");
	else if (err != NULL)
		err->kind = CORE_OK;
	return NULL;
}

const uint8_t *
ckpt_open_weights(Checkpoint *ckpt, const CheckpointFiles *files, size_t *len,
				  CoreError *err)
{
	if (ckpt->weights == NULL)
		ckpt->weights = ckpt_open(files, "", true, &ckpt->weights_len, err);
	*len = ckpt->weights_len;
	return ckpt->weights;
}

bool
ckpt_set_names(Checkpoint *ckpt, const char *format, const char *architecture,
			   CoreError *err)
{
	ckpt->format = strdup_or_error(format, err);
	ckpt->architecture = ckpt->format ? strdup_or_error(architecture, err) : NULL;
	return ckpt->architecture != NULL;
}

void
ckpt_config_init(ModelConfig *config)
{
	memset(config, 0, sizeof(*config));
	config->tied_embeddings = true;
	config->prefix_lm = false;
	config->dropout = 0.0f;
	config->rope_theta = 10000.0f;
	config->norm_eps = 1e-5f;
	config->logit_scale = 1.0f;
}

/* ---------------------------------------------------------------- */
/* Matching and converting the tensors */

static void
format_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
	size_t		used = 0;

	buf[0] = '\0';
	for (int k = 0; k < ndim && used < len; k++)
		used += snprintf(buf + used, len - used, "%s%lld", k ? ", " : "[",
						 (long long) shape[k]);
	if (used < len)
		snprintf(buf + used, len - used, "]");
}

static bool
same_shape(const SourceTensor *src, const ModelTensor *t, CoreError *err)
{
	int64_t		want[2] = {t->shape[0], t->shape[1]};
	bool		same = src->ndim == t->ndim;
	char		got_text[96],
				want_text[64];

	for (int k = 0; same && k < t->ndim; k++)
		same = src->shape[k] == want[k];
	if (same)
		return true;
	format_shape(got_text, sizeof(got_text), src->ndim, src->shape);
	format_shape(want_text, sizeof(want_text), t->ndim, want);
	core_error(err, CORE_ERR_INVALID_INPUT,
			   "checkpoint: tensor \"%s\" has shape %s, the config implies %s",
			   src->source_name, got_text, want_text);
	return false;
}

/* The file's bytes for the tensor are exactly what its shape and type take. */
static bool
right_size(const SourceTensor *src, const ModelTensor *t, CoreError *err)
{
	int			block = dequant_block_values(src->type);
	int64_t		row = t->ndim == 2 ? t->shape[1] : t->shape[0];
	uint64_t	need;

	if (row % block != 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "checkpoint: tensor \"%s\": rows of %lld values do not fill %s blocks of %d",
				   src->source_name, (long long) row, dequant_type_name(src->type), block);
		return false;
	}
	need = (uint64_t) t->numel / block * dequant_block_bytes(src->type);
	if (src->bytes != need)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "checkpoint: tensor \"%s\" holds %llu bytes, its shape in %s takes %llu",
				   src->source_name, (unsigned long long) src->bytes,
				   dequant_type_name(src->type), (unsigned long long) need);
		return false;
	}
	return true;
}

/*
 * For each tensor of the table, the index of its source in plan, after
 * checking that every source maps to one tensor of the table, of the right
 * shape and size, and every tensor has a source.
 */
static bool
match_sources(const CheckpointPlan *plan, const ModelTensor *table,
			  int n_table, int *source_of, CoreError *err)
{
	for (int i = 0; i < n_table; i++)
		source_of[i] = -1;
	for (int s = 0; s < plan->n_tensors; s++)
	{
		const SourceTensor *src = &plan->tensors[s];
		int			i = 0;

		while (i < n_table && (src->hf_name[0] == '\0' ||
							   strcmp(table[i].name, src->hf_name) != 0))
			i++;
		if (i == n_table)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "checkpoint: unexpected tensor \"%s\" (not part of a %d-layer model of this config)",
					   src->source_name, plan->config.n_layers);
			return false;
		}
		if (source_of[i] >= 0)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "checkpoint: tensor \"%s\" appears twice",
					   src->source_name);
			return false;
		}
		if (!same_shape(src, &table[i], err) || !right_size(src, &table[i], err))
			return false;
		source_of[i] = s;
	}
	for (int i = 0; i < n_table; i++)
		if (source_of[i] < 0)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "checkpoint: missing tensor \"%s\"",
					   table[i].name);
			return false;
		}
	return true;
}

/*
 * Rows of interleaved RoPE heads (pair i is rows 2i, 2i+1, as llama2.c and
 * llama.cpp's "llama" rotate) into rotate-half order (pair i is rows i,
 * i + head_dim/2, as Hugging Face): row j*half + i of a head takes row
 * 2i + j.  cols is 1 for a bias.
 */
static bool
permute_rope_rows(float *x, int n_heads, int head_dim, size_t cols,
				  CoreError *err)
{
	int			half = head_dim / 2;
	float	   *head = malloc((size_t) head_dim * cols * sizeof(float));

	if (head == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory permuting RoPE rows");
		return false;
	}
	for (int h = 0; h < n_heads; h++)
	{
		float	   *rows = x + (size_t) h * head_dim * cols;

		memcpy(head, rows, (size_t) head_dim * cols * sizeof(float));
		for (int j = 0; j < 2; j++)
			for (int i = 0; i < half; i++)
				memcpy(rows + (size_t) (j * half + i) * cols,
					   head + (size_t) (2 * i + j) * cols, cols * sizeof(float));
	}
	free(head);
	return true;
}

/* Heads whose rows a tensor of this name holds, when RoPE rotates them. */
static int
rope_heads(const Model *model, const char *name)
{
	if (strstr(name, ".self_attn.q_proj.") != NULL)
		return model->config.n_heads;
	if (strstr(name, ".self_attn.k_proj.") != NULL)
		return model->config.n_kv_heads;
	return 0;
}

static uint8_t
stored_dtype(DequantType type)
{
	switch (type)
	{
		case DEQUANT_F16:
			return MODEL_DTYPE_F16;
		case DEQUANT_BF16:
			return MODEL_DTYPE_BF16;
		default:
			return MODEL_DTYPE_F32;
	}
}

/* "f32", or "mixed (q4_k, q6_k, f32)" by parameters, most first. */
static bool
describe_types(Checkpoint *ckpt, const size_t *params_of_type, CoreError *err)
{
	char		text[128] = "";
	size_t		used = 0;
	int			n_types = 0;
	bool		listed[DEQUANT_Q6_K + 1] = {false};

	for (int t = 0; t <= DEQUANT_Q6_K; t++)
		n_types += params_of_type[t] > 0;
	for (int k = 0; k < n_types; k++)
	{
		int			best = -1;

		for (int t = 0; t <= DEQUANT_Q6_K; t++)
			if (!listed[t] && params_of_type[t] > 0 &&
				(best < 0 || params_of_type[t] > params_of_type[best]))
				best = t;
		listed[best] = true;
		used += snprintf(text + used, sizeof(text) - used, "%s%s",
						 k == 0 ? (n_types > 1 ? "mixed (" : "") : ", ",
						 dequant_type_name((DequantType) best));
	}
	if (n_types > 1)
		snprintf(text + used, sizeof(text) - used, ")");
	ckpt->source_dtype = strdup_or_error(text, err);
	return ckpt->source_dtype != NULL;
}

static bool
convert_tensors(Checkpoint *ckpt, const CheckpointPlan *plan,
				const int *source_of, CoreError *err)
{
	Model	   *model = ckpt->model;
	size_t		params_of_type[DEQUANT_Q6_K + 1] = {0};

	for (int i = 0; i < model->n_tensors; i++)
	{
		const ModelTensor *t = &model->tensors[i];
		const SourceTensor *src = &plan->tensors[source_of[i]];
		float	   *p = model->params + t->offset;
		int			heads = rope_heads(model, t->name);

		if (stop_requested(ckpt->stop))
		{
			core_error(err, CORE_ERR_INTERRUPTED, "interrupted");
			return false;
		}
		dequantize(src->type, src->data, p, t->numel);
		for (size_t j = 0; j < t->numel; j++)
			if (!isfinite(p[j]))
			{
				core_error(err, CORE_ERR_INVALID_INPUT,
						   "checkpoint: value %zu of tensor \"%s\" is not a finite number (%g)",
						   j, src->source_name, p[j]);
				return false;
			}
		if (plan->interleaved_rope && heads > 0 &&
			!permute_rope_rows(p, heads, model->head_dim,
							   t->numel / ((size_t) heads * model->head_dim), err))
			return false;
		ckpt->dtypes[i] = stored_dtype(src->type);
		params_of_type[src->type] += t->numel;
		if (ckpt->files->done_with != NULL)
			ckpt->files->done_with(ckpt->files->ctx, src->data, src->bytes);
	}
	return describe_types(ckpt, params_of_type, err);
}

static int
smallest_positive(int a, int b)
{
	if (a <= 0)
		return b;
	if (b <= 0)
		return a;
	return a < b ? a : b;
}

bool
ckpt_build(Checkpoint *ckpt, CheckpointPlan *plan, int max_seq_len,
		   CoreError *err)
{
	ModelConfig *c = &plan->config;
	CoreError	why;
	ModelTensor *table;
	int		   *source_of;
	int			n_table;
	size_t		n_params;
	bool		ok;

	ckpt->context_length = plan->context_length;
	c->max_seq_len = smallest_positive(smallest_positive(plan->context_length, max_seq_len),
									   MODEL_MAX_SEQ_LEN);
	if (!model_config_validate(c, &why))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "checkpoint: %s", why.message);
		return false;
	}
	n_table = model_tensor_table(c, NULL, &n_params);
	table = malloc(n_table * sizeof(ModelTensor));
	source_of = malloc(n_table * sizeof(int));
	if (table == NULL || source_of == NULL)
	{
		free(table);
		free(source_of);
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a tensor table");
		return false;
	}
	model_tensor_table(c, table, &n_params);
	ok = match_sources(plan, table, n_table, source_of, err);
	free(table);
	if (ok)
	{
		ckpt->model = model_create(c, err);
		ckpt->dtypes = ckpt->model != NULL ? malloc(n_table) : NULL;
		if (ckpt->model != NULL && ckpt->dtypes == NULL)
			core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a checkpoint");
		ok = ckpt->dtypes != NULL && convert_tensors(ckpt, plan, source_of, err);
	}
	free(source_of);
	return ok;
}

/* ---------------------------------------------------------------- */
/* Entry points */

Checkpoint *
checkpoint_read(CheckpointFormat format, const CheckpointFiles *files,
				int max_seq_len, const StopCheck *stop, CoreError *err)
{
	Checkpoint *ckpt = calloc(1, sizeof(Checkpoint));
	bool		ok;

	if (ckpt == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory reading a checkpoint");
		return NULL;
	}
	ckpt->stop = stop;
	ckpt->files = files;
	ckpt->tokenizer.bos_id = ckpt->tokenizer.eos_id = -1;
	if (format == CHECKPOINT_AUTO)
	{
		size_t		len;
		const uint8_t *data = ckpt_open_weights(ckpt, files, &len, err);

		if (data == NULL)
		{
			checkpoint_free(ckpt);
			return NULL;
		}
		format = checkpoint_detect(data, len);
	}
	switch (format)
	{
		case CHECKPOINT_GGUF:
			ok = ckpt_read_gguf(ckpt, files, max_seq_len, err);
			break;
		case CHECKPOINT_HF:
			ok = ckpt_read_hf(ckpt, files, max_seq_len, err);
			break;
		case CHECKPOINT_LLAMA2C:
			ok = ckpt_read_llama2c(ckpt, files, max_seq_len, err);
			break;
		default:
			core_error(err, CORE_ERR_INVALID_INPUT, "checkpoint: unknown format %d",
					   (int) format);
			ok = false;
	}
	if (!ok)
	{
		checkpoint_free(ckpt);
		return NULL;
	}
	ckpt->tokenizer.vocab_size = ckpt->model->config.vocab_size;
	return ckpt;
}

void
checkpoint_free(Checkpoint *ckpt)
{
	if (ckpt == NULL)
		return;
	model_free(ckpt->model);
	free(ckpt->dtypes);
	free(ckpt->format);
	free(ckpt->architecture);
	free(ckpt->source_dtype);
	for (int i = 0; i < ckpt->n_allocations; i++)
		free(ckpt->allocations[i]);
	free(ckpt->allocations);
	free(ckpt);
}
