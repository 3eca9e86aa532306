/*
 * checkpoint_llama2c.c - llama2.c checkpoints (Karpathy's run.c format,
 * the legacy export): 7 int32
 *
 *   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *
 * (vocab_size negative: the classifier is not the embedding) then float32
 * token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim],
 * wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim],
 * rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim, hidden],
 * w3 [L, hidden, dim], rms_final [dim], freq_cis_real and freq_cis_imag
 * [seq_len, head_dim/2] (unused: the tables are recomputed), and wcls
 * [vocab, dim] when untied.  w1 is gate_proj, w3 up_proj, w2 down_proj.
 * RoPE rotates interleaved pairs, so wq and wk rows are permuted.  The
 * newer export with the "ak42" magic is refused.  The tokenizer is the
 * file "tokenizer" (tokenizer.bin), passed on as it is.
 */
#include "core/checkpoint_internal.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"

#define LLAMA2C_MAGIC 0x616b3432	/* "ak42" read as a little-endian u32 */
#define HEADER_INTS 7

/* A cursor over the float32 weights, checked against the file's end. */
typedef struct Weights
{
	const uint8_t *data;
	uint64_t	len;
	uint64_t	pos;
} Weights;

static void
add_tensor(CheckpointPlan *plan, Weights *w, const char *hf_name,
		   const char *source_name, int64_t rows, int64_t cols)
{
	SourceTensor *t = &plan->tensors[plan->n_tensors++];
	uint64_t	numel = (uint64_t) rows * (cols > 0 ? cols : 1);

	snprintf(t->hf_name, sizeof(t->hf_name), "%s", hf_name);
	snprintf(t->source_name, sizeof(t->source_name), "%s", source_name);
	t->type = DEQUANT_F32;
	t->ndim = cols > 0 ? 2 : 1;
	t->shape[0] = rows;
	t->shape[1] = cols;
	t->data = w->data + w->pos;
	t->bytes = numel * 4;
	w->pos += numel * 4;
}

/* The tensors of all layers of one kind, stacked in the file. */
static void
add_stacked(CheckpointPlan *plan, Weights *w, const char *source_name,
			const char *hf_suffix, int n_layers, int64_t rows, int64_t cols)
{
	for (int l = 0; l < n_layers; l++)
	{
		char		hf_name[MODEL_TENSOR_NAME_LEN];
		char		name[CKPT_SOURCE_NAME_LEN];

		snprintf(hf_name, sizeof(hf_name), "model.layers.%d.%s", l, hf_suffix);
		snprintf(name, sizeof(name), "%s[%d]", source_name, l);
		add_tensor(plan, w, hf_name, name, rows, cols);
	}
}

/* The floats the header implies, in 64 bits (all factors are < 2^31). */
static uint64_t
expected_floats(const ModelConfig *c, int64_t seq_len)
{
	uint64_t	d = c->d_model;
	uint64_t	hd = model_config_head_dim(c);
	uint64_t	kv = (uint64_t) c->n_kv_heads * hd;
	uint64_t	per_layer = d + d * d + 2 * kv * d + d * d + d + 3 * d * c->d_ff;
	uint64_t	n = (uint64_t) c->vocab_size * d + c->n_layers * per_layer + d +
		2 * (uint64_t) seq_len * (hd / 2);

	return c->tied_embeddings ? n : n + (uint64_t) c->vocab_size * d;
}

static bool
read_header(const uint8_t *data, size_t len, ModelConfig *c, int64_t *seq_len,
			CoreError *err)
{
	int32_t		h[HEADER_INTS];
	CoreError	why;

	if (len >= 4 && le_get_u32(data) == LLAMA2C_MAGIC)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "llama2.c checkpoint: the newer export format (magic \"ak42\") is not supported; export with llama2.c's legacy format (export.py --version 0)");
		return false;
	}
	if (len < HEADER_INTS * 4)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "llama2.c checkpoint: truncated: %zu bytes cannot hold its 28-byte header", len);
		return false;
	}
	for (int i = 0; i < HEADER_INTS; i++)
		h[i] = (int32_t) le_get_u32(data + 4 * i);
	for (int i = 0; i < HEADER_INTS; i++)
		if (h[i] == 0 || (i != 5 && h[i] < 0) || h[i] == INT32_MIN)
		{
			core_error(err, CORE_ERR_INVALID_INPUT,
					   "llama2.c checkpoint: not a llama2.c file (header field %d is %d)",
					   i + 1, h[i]);
			return false;
		}
	ckpt_config_init(c);
	c->d_model = h[0];
	c->d_ff = h[1];
	c->n_layers = h[2];
	c->n_heads = h[3];
	c->n_kv_heads = h[4];
	c->vocab_size = h[5] < 0 ? -h[5] : h[5];
	c->tied_embeddings = h[5] > 0;
	c->max_seq_len = 2;			/* checked here for the shapes only */
	*seq_len = h[6];
	if (!model_config_validate(c, &why))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "llama2.c checkpoint: %s", why.message);
		return false;
	}
	if (expected_floats(c, *seq_len) * 4 != len - HEADER_INTS * 4)
	{
		uint64_t	want = HEADER_INTS * 4 + expected_floats(c, *seq_len) * 4;

		core_error(err, CORE_ERR_INVALID_INPUT,
				   "llama2.c checkpoint: %s: %zu bytes, its header implies %llu",
				   len < want ? "truncated" : "trailing bytes", len,
				   (unsigned long long) want);
		return false;
	}
	return true;
}

bool
ckpt_read_llama2c(Checkpoint *ckpt, const CheckpointFiles *files,
				  int max_seq_len, CoreError *err)
{
	CheckpointPlan plan = {0};
	ModelConfig *c = &plan.config;
	int64_t		seq_len;
	size_t		len;
	const uint8_t *data = ckpt_open_weights(ckpt, files, &len, err);
	Weights		w;
	int64_t		d,
				kv_dim;
	int			L;

	if (data == NULL || !read_header(data, len, c, &seq_len, err))
		return false;
	d = c->d_model;
	L = c->n_layers;
	kv_dim = (int64_t) c->n_kv_heads * model_config_head_dim(c);
	w = (Weights) {data, len, HEADER_INTS * 4};
	plan.context_length = (int) seq_len;
	plan.interleaved_rope = true;
	plan.tensors = ckpt_alloc(ckpt, (3 + 9 * (size_t) L) * sizeof(SourceTensor), err);
	if (plan.tensors == NULL)
		return false;

	add_tensor(&plan, &w, "model.embed_tokens.weight", "token_embedding", c->vocab_size, d);
	add_stacked(&plan, &w, "rms_att", "input_layernorm.weight", L, d, 0);
	add_stacked(&plan, &w, "wq", "self_attn.q_proj.weight", L, d, d);
	add_stacked(&plan, &w, "wk", "self_attn.k_proj.weight", L, kv_dim, d);
	add_stacked(&plan, &w, "wv", "self_attn.v_proj.weight", L, kv_dim, d);
	add_stacked(&plan, &w, "wo", "self_attn.o_proj.weight", L, d, d);
	add_stacked(&plan, &w, "rms_ffn", "post_attention_layernorm.weight", L, d, 0);
	add_stacked(&plan, &w, "w1", "mlp.gate_proj.weight", L, c->d_ff, d);
	add_stacked(&plan, &w, "w2", "mlp.down_proj.weight", L, d, c->d_ff);
	add_stacked(&plan, &w, "w3", "mlp.up_proj.weight", L, c->d_ff, d);
	add_tensor(&plan, &w, "model.norm.weight", "rms_final", d, 0);
	w.pos += 2 * (uint64_t) seq_len * (model_config_head_dim(c) / 2) * 4;
	if (!c->tied_embeddings)
		add_tensor(&plan, &w, "lm_head.weight", "wcls", c->vocab_size, d);

	ckpt->tokenizer.kind = TOKSRC_LLAMA2C;
	ckpt->tokenizer.data = ckpt_open(files, "tokenizer", true, &ckpt->tokenizer.len, err);
	return ckpt->tokenizer.data != NULL &&
		ckpt_set_names(ckpt, "llama2c", "llama", err) &&
		ckpt_build(ckpt, &plan, max_seq_len, err);
}
