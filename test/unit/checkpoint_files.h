/*
 * checkpoint_files.h - tiny writers of checkpoint files, for
 * test_checkpoint.c and the fuzz seeds (test/fuzz/make_seeds.c): GGUF,
 * safetensors and llama2.c files of a Model's weights, written from the
 * formats' descriptions independently of the readers in src/core.
 *
 * All static functions; out of memory aborts (these are tests).
 */
#ifndef DISTILL_CHECKPOINT_FILES_H
#define DISTILL_CHECKPOINT_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dequant.h"
#include "core/model.h"
#include "core/model_io.h"

typedef struct Bytes
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
} Bytes;

static void
bytes_put(Bytes *b, const void *p, size_t n)
{
	if (b->len + n > b->cap)
	{
		b->cap = (b->len + n) * 2 + 64;
		b->data = realloc(b->data, b->cap);
		if (b->data == NULL)
			abort();
	}
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void
bytes_le(Bytes *b, uint64_t v, int n)
{
	uint8_t		buf[8];

	for (int i = 0; i < n; i++)
		buf[i] = (uint8_t) (v >> (8 * i));
	bytes_put(b, buf, n);
}

static void
bytes_f32(Bytes *b, float x)
{
	uint32_t	bits;

	memcpy(&bits, &x, 4);
	bytes_le(b, bits, 4);
}

static void
bytes_pad(Bytes *b, size_t align)
{
	while (b->len % align != 0)
		bytes_le(b, 0, 1);
}

/* n floats in a dtype of model_io.h, little-endian. */
static void
bytes_floats(Bytes *b, const float *x, size_t n, int dtype)
{
	for (size_t i = 0; i < n; i++)
		if (dtype == MODEL_DTYPE_F16)
			bytes_le(b, float_to_half(x[i]), 2);
		else if (dtype == MODEL_DTYPE_BF16)
			bytes_le(b, float_to_bfloat(x[i]), 2);
		else
			bytes_f32(b, x[i]);
}

/*
 * Hugging Face's rotate-half rows of n_heads heads into the interleaved
 * order llama.cpp's converter writes (its permute(): per head, reshape
 * [2, half, cols], swap the first two axes): out row 2i + j = in row
 * j * half + i.
 */
static void
interleave_rows(float *out, const float *in, int n_heads, int head_dim,
				size_t cols)
{
	int			half = head_dim / 2;

	for (int h = 0; h < n_heads; h++)
		for (int i = 0; i < half; i++)
			for (int j = 0; j < 2; j++)
				memcpy(out + ((size_t) h * head_dim + 2 * i + j) * cols,
					   in + ((size_t) h * head_dim + j * half + i) * cols,
					   cols * sizeof(float));
}

/* A copy of tensor t of m, its q/k rows interleaved when interleave. */
static float *
tensor_values(const Model *m, const ModelTensor *t, bool interleave)
{
	float	   *x = malloc(t->numel * sizeof(float));
	const float *p = m->params + t->offset;
	int			heads = strstr(t->name, "q_proj") ? m->config.n_heads
		: strstr(t->name, "k_proj") ? m->config.n_kv_heads : 0;

	if (x == NULL)
		abort();
	if (interleave && heads > 0)
		interleave_rows(x, p, heads, m->head_dim, t->numel / ((size_t) heads * m->head_dim));
	else
		memcpy(x, p, t->numel * sizeof(float));
	return x;
}

/* ---------------------------------------------------------------- */
/* GGUF */

enum
{
	GGUF_T_U32 = 4, GGUF_T_I32 = 5, GGUF_T_F32 = 6, GGUF_T_BOOL = 7,
	GGUF_T_STRING = 8, GGUF_T_ARRAY = 9
};

typedef struct GgufWriter
{
	Bytes		kv;
	uint64_t	n_kv;
	Bytes		infos;
	uint64_t	n_tensors;
	Bytes		data;
} GgufWriter;

static void
gguf_string(Bytes *b, const char *s, size_t len)
{
	bytes_le(b, len, 8);
	bytes_put(b, s, len);
}

static void
gguf_key(GgufWriter *w, const char *key, uint32_t type)
{
	gguf_string(&w->kv, key, strlen(key));
	bytes_le(&w->kv, type, 4);
	w->n_kv++;
}

static void
gguf_u32(GgufWriter *w, const char *key, uint32_t v)
{
	gguf_key(w, key, GGUF_T_U32);
	bytes_le(&w->kv, v, 4);
}

static void
gguf_f32(GgufWriter *w, const char *key, float v)
{
	gguf_key(w, key, GGUF_T_F32);
	bytes_f32(&w->kv, v);
}

static void
gguf_bool(GgufWriter *w, const char *key, bool v)
{
	gguf_key(w, key, GGUF_T_BOOL);
	bytes_le(&w->kv, v, 1);
}

static void
gguf_str(GgufWriter *w, const char *key, const char *s)
{
	gguf_key(w, key, GGUF_T_STRING);
	gguf_string(&w->kv, s, strlen(s));
}

static void
gguf_str_array(GgufWriter *w, const char *key, const char *const *s,
			   const uint32_t *lens, int n)
{
	gguf_key(w, key, GGUF_T_ARRAY);
	bytes_le(&w->kv, GGUF_T_STRING, 4);
	bytes_le(&w->kv, n, 8);
	for (int i = 0; i < n; i++)
		gguf_string(&w->kv, s[i], lens ? lens[i] : strlen(s[i]));
}

static void
gguf_num_array(GgufWriter *w, const char *key, uint32_t type, const void *x,
			   int n)
{
	gguf_key(w, key, GGUF_T_ARRAY);
	bytes_le(&w->kv, type, 4);
	bytes_le(&w->kv, n, 8);
	for (int i = 0; i < n; i++)
	{
		uint32_t	bits;

		memcpy(&bits, (const uint8_t *) x + 4 * (size_t) i, 4);
		bytes_le(&w->kv, bits, 4);
	}
}

/* A tensor of ggml type with ne[0] = ne0 (innermost), ne[1] = ne1 (0: 1-D). */
static void
gguf_tensor(GgufWriter *w, const char *name, uint32_t ggml_type, uint64_t ne0,
			uint64_t ne1, const void *data, size_t bytes)
{
	bytes_pad(&w->data, 32);
	gguf_string(&w->infos, name, strlen(name));
	bytes_le(&w->infos, ne1 > 0 ? 2 : 1, 4);
	bytes_le(&w->infos, ne0, 8);
	if (ne1 > 0)
		bytes_le(&w->infos, ne1, 8);
	bytes_le(&w->infos, ggml_type, 4);
	bytes_le(&w->infos, w->data.len, 8);
	bytes_put(&w->data, data, bytes);
	w->n_tensors++;
}

static uint8_t *
gguf_finish(GgufWriter *w, size_t *len)
{
	Bytes		file = {0};

	bytes_put(&file, "GGUF", 4);
	bytes_le(&file, 3, 4);
	bytes_le(&file, w->n_tensors, 8);
	bytes_le(&file, w->n_kv, 8);
	bytes_put(&file, w->kv.data, w->kv.len);
	bytes_put(&file, w->infos.data, w->infos.len);
	bytes_pad(&file, 32);
	bytes_put(&file, w->data.data, w->data.len);
	free(w->kv.data);
	free(w->infos.data);
	free(w->data.data);
	memset(w, 0, sizeof(*w));
	*len = file.len;
	return file.data;
}

/* llama.cpp's name of a Hugging Face tensor name. */
static void
gguf_name(const char *hf, char *out, size_t size)
{
	static const char *const map[][2] = {
		{"input_layernorm.weight", "attn_norm.weight"},
		{"self_attn.q_proj.weight", "attn_q.weight"},
		{"self_attn.k_proj.weight", "attn_k.weight"},
		{"self_attn.v_proj.weight", "attn_v.weight"},
		{"self_attn.q_proj.bias", "attn_q.bias"},
		{"self_attn.k_proj.bias", "attn_k.bias"},
		{"self_attn.v_proj.bias", "attn_v.bias"},
		{"self_attn.o_proj.weight", "attn_output.weight"},
		{"post_attention_layernorm.weight", "ffn_norm.weight"},
		{"mlp.gate_proj.weight", "ffn_gate.weight"},
		{"mlp.up_proj.weight", "ffn_up.weight"},
		{"mlp.down_proj.weight", "ffn_down.weight"},
	};
	int			layer,
				used = 0;

	if (strcmp(hf, "model.embed_tokens.weight") == 0)
		snprintf(out, size, "token_embd.weight");
	else if (strcmp(hf, "model.norm.weight") == 0)
		snprintf(out, size, "output_norm.weight");
	else if (strcmp(hf, "lm_head.weight") == 0)
		snprintf(out, size, "output.weight");
	else if (sscanf(hf, "model.layers.%d.%n", &layer, &used) == 1 && used > 0)
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (strcmp(hf + used, map[i][0]) == 0)
				snprintf(out, size, "blk.%d.%s", layer, map[i][1]);
}

/*
 * The config of m as GGUF metadata of arch ("llama" or "qwen2"), and with
 * with_tokenizer a small tokenizer of vocab_size tokens "t0", "t1", ...
 */
static void
gguf_metadata(GgufWriter *w, const Model *m, const char *arch,
			  bool with_tokenizer)
{
	const ModelConfig *c = &m->config;
	char		key[96];
	char		names[64][8];
	const char *tokens[64];
	float		scores[64];
	int			n_tokens = c->vocab_size < 64 ? c->vocab_size : 64;

	gguf_str(w, "general.architecture", arch);
#define ARCH_KEY(suffix) (snprintf(key, sizeof(key), "%s.%s", arch, suffix), key)
	gguf_u32(w, ARCH_KEY("context_length"), c->max_seq_len);
	gguf_u32(w, ARCH_KEY("embedding_length"), c->d_model);
	gguf_u32(w, ARCH_KEY("block_count"), c->n_layers);
	gguf_u32(w, ARCH_KEY("feed_forward_length"), c->d_ff);
	gguf_u32(w, ARCH_KEY("attention.head_count"), c->n_heads);
	gguf_u32(w, ARCH_KEY("attention.head_count_kv"), c->n_kv_heads);
	gguf_u32(w, ARCH_KEY("attention.key_length"), m->head_dim);
	gguf_u32(w, ARCH_KEY("attention.value_length"), m->head_dim);
	gguf_u32(w, ARCH_KEY("rope.dimension_count"), m->head_dim);
	gguf_f32(w, ARCH_KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
	gguf_f32(w, ARCH_KEY("rope.freq_base"), c->rope_theta);
#undef ARCH_KEY
	if (!with_tokenizer)
		return;
	for (int i = 0; i < n_tokens; i++)
	{
		snprintf(names[i], sizeof(names[i]), "t%d", i);
		tokens[i] = names[i];
		scores[i] = -(float) i;
	}
	gguf_str(w, "tokenizer.ggml.model", "llama");
	gguf_str_array(w, "tokenizer.ggml.tokens", tokens, NULL, n_tokens);
	gguf_num_array(w, "tokenizer.ggml.scores", GGUF_T_F32, scores, n_tokens);
	gguf_u32(w, "tokenizer.ggml.bos_token_id", 1 % n_tokens);
	gguf_u32(w, "tokenizer.ggml.eos_token_id", 2 % n_tokens);
	gguf_bool(w, "tokenizer.ggml.add_bos_token", true);
}

/*
 * m as a GGUF file of arch, each tensor in its dtype (model_io.h; NULL =
 * F32); "llama" interleaves q/k rows as llama.cpp's converter does.
 */
static uint8_t *
gguf_from_model(const Model *m, const char *arch, const uint8_t *dtypes,
				size_t *len)
{
	GgufWriter	w = {0};
	bool		interleave = strcmp(arch, "llama") == 0;

	gguf_metadata(&w, m, arch, true);
	for (int i = 0; i < m->n_tensors; i++)
	{
		const ModelTensor *t = &m->tensors[i];
		int			dtype = dtypes ? dtypes[i] : MODEL_DTYPE_F32;
		float	   *x = tensor_values(m, t, interleave);
		Bytes		b = {0};
		char		name[96] = "";

		bytes_floats(&b, x, t->numel, dtype);
		gguf_name(t->name, name, sizeof(name));
		gguf_tensor(&w, name, dtype == MODEL_DTYPE_F16 ? 1 : dtype == MODEL_DTYPE_BF16 ? 30 : 0,
					t->ndim == 2 ? t->shape[1] : t->shape[0], t->ndim == 2 ? t->shape[0] : 0,
					b.data, b.len);
		free(b.data);
		free(x);
	}
	return gguf_finish(&w, len);
}

/* ---------------------------------------------------------------- */
/* safetensors and config.json */

typedef struct SafetensorsWriter
{
	Bytes		json;
	Bytes		data;
} SafetensorsWriter;

static void
st_tensor(SafetensorsWriter *w, const char *name, const char *dtype, int ndim,
		  const int64_t *shape, const void *data, size_t bytes)
{
	char		entry[512];
	size_t		used;

	used = snprintf(entry, sizeof(entry), "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
					w->json.len ? "," : "{", name, dtype);
	for (int k = 0; k < ndim; k++)
		used += snprintf(entry + used, sizeof(entry) - used, "%s%lld", k ? "," : "",
						 (long long) shape[k]);
	snprintf(entry + used, sizeof(entry) - used, "],\"data_offsets\":[%zu,%zu]}",
			 w->data.len, w->data.len + bytes);
	bytes_put(&w->json, entry, strlen(entry));
	bytes_put(&w->data, data, bytes);
}

static uint8_t *
st_finish(SafetensorsWriter *w, size_t *len)
{
	Bytes		file = {0};
	const char *meta = "\"__metadata__\":{\"format\":\"pt\"}}";

	bytes_put(&w->json, w->json.len ? "," : "{", 1);
	bytes_put(&w->json, meta, strlen(meta));
	while (w->json.len % 8 != 0)
		bytes_put(&w->json, " ", 1);
	bytes_le(&file, w->json.len, 8);
	bytes_put(&file, w->json.data, w->json.len);
	bytes_put(&file, w->data.data, w->data.len);
	free(w->json.data);
	free(w->data.data);
	memset(w, 0, sizeof(*w));
	*len = file.len;
	return file.data;
}

/* Tensors first .. last - 1 of m as a safetensors file, each in its dtype. */
static uint8_t *
st_from_model(const Model *m, const uint8_t *dtypes, int first, int last,
			  size_t *len)
{
	SafetensorsWriter w = {0};

	for (int i = first; i < last; i++)
	{
		const ModelTensor *t = &m->tensors[i];
		int			dtype = dtypes ? dtypes[i] : MODEL_DTYPE_F32;
		int64_t		shape[2] = {t->shape[0], t->shape[1]};
		Bytes		b = {0};

		bytes_floats(&b, m->params + t->offset, t->numel, dtype);
		st_tensor(&w, t->name, dtype == MODEL_DTYPE_F16 ? "F16" : dtype == MODEL_DTYPE_BF16
				  ? "BF16" : "F32", t->ndim, shape, b.data, b.len);
		free(b.data);
	}
	return st_finish(&w, len);
}

/* config.json of m; extra is more members ("" or starting with ","). */
static char *
hf_config(const Model *m, const char *arch, const char *extra)
{
	const ModelConfig *c = &m->config;
	char	   *text = malloc(4096);
	bool		qwen = strcmp(arch, "qwen2") == 0;

	if (text == NULL)
		abort();
	snprintf(text, 4096,
			 "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"vocab_size\": %d,\n"
			 " \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d,\n"
			 " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d,\n"
			 " \"rms_norm_eps\": %.9g, \"rope_theta\": %.9g, \"tie_word_embeddings\": %s,\n"
			 " \"max_position_embeddings\": %d, \"hidden_act\": \"silu\", \"torch_dtype\": \"bfloat16\"%s%s}\n",
			 qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", arch, c->vocab_size,
			 c->d_model, c->d_ff, c->n_layers, c->n_heads, c->n_kv_heads, m->head_dim,
			 c->norm_eps, c->rope_theta, c->tied_embeddings ? "true" : "false",
			 c->max_seq_len, qwen ? "" : c->qkv_bias ? ", \"attention_bias\": true"
			 : ", \"attention_bias\": false", extra);
	return text;
}

/* ---------------------------------------------------------------- */
/* llama2.c */

/* m (no biases, head_dim = d_model / n_heads) as a legacy llama2.c file. */
static uint8_t *
llama2c_from_model(const Model *m, size_t *len)
{
	const ModelConfig *c = &m->config;
	static const char *const order[] = {
		"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
		"self_attn.v_proj.weight", "self_attn.o_proj.weight",
		"post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.down_proj.weight",
		"mlp.up_proj.weight"};
	Bytes		b = {0};
	int32_t		header[7] = {c->d_model, c->d_ff, c->n_layers, c->n_heads, c->n_kv_heads,
	c->tied_embeddings ? c->vocab_size : -c->vocab_size, c->max_seq_len};

	for (int i = 0; i < 7; i++)
		bytes_le(&b, (uint32_t) header[i], 4);
	bytes_floats(&b, m->w.embed, (size_t) c->vocab_size * c->d_model, MODEL_DTYPE_F32);
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (int l = 0; l < c->n_layers; l++)
		{
			char		name[MODEL_TENSOR_NAME_LEN];
			const ModelTensor *t;
			float	   *x;

			snprintf(name, sizeof(name), "model.layers.%d.%s", l, order[k]);
			t = model_find_tensor(m, name);
			x = tensor_values(m, t, true);
			bytes_floats(&b, x, t->numel, MODEL_DTYPE_F32);
			free(x);
		}
	bytes_floats(&b, m->w.final_norm, c->d_model, MODEL_DTYPE_F32);
	for (size_t i = 0; i < (size_t) c->max_seq_len * m->head_dim; i++)
		bytes_f32(&b, 0.0f);	/* freq_cis_real and _imag, unused */
	if (!c->tied_embeddings)
		bytes_floats(&b, m->w.lm_head, (size_t) c->vocab_size * c->d_model, MODEL_DTYPE_F32);
	*len = b.len;
	return b.data;
}

#endif
