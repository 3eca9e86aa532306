/*
 * test_checkpoint.c - importing pretrained checkpoints (checkpoint.h) and
 * the block formats under them (dequant.h).
 *
 *   - stories260K (test/data/stories260K, llama2.c format) generates, from
 *     BOS and from the prompt "Zoo", exactly the greedy token ids of the
 *     independent float64 reference (test/data/pretrained/
 *     stories260K_ids.txt, scripts/pretrained/llama2c_golden_ids.py);
 *   - GGUF and safetensors files written here by small writers: the same
 *     weights as a GGUF "llama" file (interleaved q/k rows, as llama.cpp's
 *     converter writes them) give the same parameters and logits as the
 *     llama2.c import; every dtype and block type dequantizes to values
 *     worked out by hand; an untied head, q/k/v biases, head_dim !=
 *     d_model / n_heads and Llama 3 rope scaling come through;
 *   - broken files of each format are refused with a message naming the
 *     problem.
 */
#define _GNU_SOURCE				/* memmem */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/dequant.h"
#include "core/model_io.h"
#include "core/util.h"
#include "checkpoint_files.h"
#include "unit.h"

/* ---------------------------------------------------------------- */
/* Files in memory, served by name */

#define MAX_FILES 8

typedef struct MemFile
{
	const char *name;
	uint8_t    *data;
	size_t		len;
} MemFile;

typedef struct MemDir
{
	MemFile		files[MAX_FILES];
	int			n;
} MemDir;

static const void *
mem_open(void *ctx, const char *name, bool required, size_t *len, CoreError *err)
{
	MemDir	   *dir = ctx;

	for (int i = 0; i < dir->n; i++)
		if (strcmp(dir->files[i].name, name) == 0)
		{
			*len = dir->files[i].len;
			return dir->files[i].data;
		}
	if (required)
		core_error(err, CORE_ERR_INVALID_INPUT, "no file \"%s\"", name);
	return NULL;
}

/*
 * Add a file; the directory takes data (malloc'd).  The length comes by
 * pointer so that a call can make the file in its arguments.
 */
static void
mem_add(MemDir *dir, const char *name, uint8_t *data, const size_t *len_p)
{
	size_t		len = *len_p;

	for (int i = 0; i < dir->n; i++)
		if (strcmp(dir->files[i].name, name) == 0)
		{
			free(dir->files[i].data);
			dir->files[i].data = data;
			dir->files[i].len = len;
			return;
		}
	dir->files[dir->n++] = (MemFile) {name, data, len};
}

static void
mem_add_text(MemDir *dir, const char *name, const char *text)
{
	size_t		len = strlen(text);

	mem_add(dir, name, (uint8_t *) strdup(text), &len);
}

/* Add a malloc'd string as a file, which the directory takes. */
static void
mem_take_text(MemDir *dir, const char *name, char *text)
{
	size_t		len = strlen(text);

	mem_add(dir, name, (uint8_t *) text, &len);
}

static void
mem_free(MemDir *dir)
{
	for (int i = 0; i < dir->n; i++)
		free(dir->files[i].data);
	dir->n = 0;
}

static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *data = NULL;
	long		size;

	*len = 0;
	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
		fseek(f, 0, SEEK_SET) == 0 && (data = malloc(size + 1)) != NULL &&
		fread(data, 1, size, f) == (size_t) size)
		*len = size;
	fclose(f);
	return data;
}

static Checkpoint *
read_dir(CheckpointFormat format, MemDir *dir, int max_seq_len, CoreError *err)
{
	CheckpointFiles files = {dir, mem_open, NULL};

	memset(err, 0, sizeof(*err));
	return checkpoint_read(format, &files, max_seq_len, NULL, err);
}

/* ---------------------------------------------------------------- */
/* stories260K against the reference's greedy ids */

#define STORIES_BIN "test/data/stories260K/stories260K.bin"
#define STORIES_TOK "test/data/stories260K/tok512.bin"
#define STORIES_IDS "test/data/pretrained/stories260K_ids.txt"

/* The ids after "<key>: " in the golden file; their count, -1 if absent. */
static int
golden_ids(const char *text, const char *key, int32_t *ids, int max)
{
	char		pattern[64];
	const char *p;
	int			n = 0;

	snprintf(pattern, sizeof(pattern), "\n%s: ", key);
	p = strstr(text, pattern);
	if (p == NULL)
		return -1;
	p += strlen(pattern);
	while (*p != '\n' && *p != '\0' && n < max)
	{
		char	   *end;
		long		v = strtol(p, &end, 10);

		if (end == p)
			break;
		ids[n++] = (int32_t) v;
		p = end;
	}
	return n;
}

static MemDir
stories_dir(void)
{
	MemDir		dir = {0};
	size_t		len;
	uint8_t    *data = read_file(STORIES_BIN, &len);

	CHECKF(data != NULL, "cannot read %s", STORIES_BIN);
	mem_add(&dir, "", data, &len);
	data = read_file(STORIES_TOK, &len);
	CHECKF(data != NULL, "cannot read %s", STORIES_TOK);
	mem_add(&dir, "tokenizer", data, &len);
	return dir;
}

static void
check_generation(const Model *model, const char *golden, const char *name)
{
	char		key[32];
	int32_t		prompt[64],
				want[512],
				got[512];
	int			n_prompt,
				n_want,
				steps,
				n;
	CoreError	err = {0};

	snprintf(key, sizeof(key), "%s_steps", name);
	CHECK(golden_ids(golden, key, &steps, 1) == 1);
	snprintf(key, sizeof(key), "%s_prompt", name);
	n_prompt = golden_ids(golden, key, prompt, 64);
	snprintf(key, sizeof(key), "%s_generated", name);
	n_want = golden_ids(golden, key, want, 512);
	CHECKF(n_prompt >= 1 && n_want >= 10, "%s: golden ids missing", name);
	if (n_prompt < 1 || n_want < 10)
		return;
	/* stop before a BOS, as llama2.c does */
	n = model_generate_greedy(model, prompt, n_prompt, steps - (n_prompt - 1), 1, got,
							  NULL, &err);
	CHECKF(n == n_want && memcmp(got, want, n * sizeof(int32_t)) == 0,
		   "%s: generated %d ids, the reference %d (%s)", name, n, n_want, err.message);
	printf("  stories260K %s: %d greedy ids %s the reference's\n", name, n,
		   n == n_want && memcmp(got, want, n * sizeof(int32_t)) == 0 ? "equal" : "DIFFER FROM");
}

static void
test_stories260k(void)
{
	MemDir		dir = stories_dir();
	CoreError	err;
	Checkpoint *ckpt = read_dir(CHECKPOINT_AUTO, &dir, 0, &err);
	size_t		golden_len;
	char	   *golden = (char *) read_file(STORIES_IDS, &golden_len);

	CHECKF(ckpt != NULL, "%s", err.message);
	CHECKF(golden != NULL, "cannot read %s", STORIES_IDS);
	if (ckpt == NULL || golden == NULL)
	{
		mem_free(&dir);
		free(golden);
		return;
	}
	golden[golden_len] = '\0';
	CHECK(strcmp(ckpt->format, "llama2c") == 0 && strcmp(ckpt->architecture, "llama") == 0);
	CHECK(strcmp(ckpt->source_dtype, "f32") == 0);
	CHECK(ckpt->context_length == 512 && ckpt->model->config.max_seq_len == 512);
	CHECK(ckpt->model->config.vocab_size == 512 && ckpt->model->config.d_model == 64 &&
		  ckpt->model->config.n_layers == 5 && ckpt->model->config.n_kv_heads == 4 &&
		  ckpt->model->config.tied_embeddings && !ckpt->model->config.prefix_lm);
	CHECK(ckpt->model->n_params == 260032);
	CHECK(ckpt->tokenizer.kind == TOKSRC_LLAMA2C && ckpt->tokenizer.len > 1000 &&
		  ckpt->tokenizer.vocab_size == 512);
	CHECK(ckpt->dtypes[0] == MODEL_DTYPE_F32);
	check_generation(ckpt->model, golden, "bos");
	check_generation(ckpt->model, golden, "zoo");
	CHECKF(model_pack_for_prediction(ckpt->model, &err), "%s", err.message);
	check_generation(ckpt->model, golden, "zoo");
	checkpoint_free(ckpt);

	/* max_seq_len below the checkpoint's */
	ckpt = read_dir(CHECKPOINT_LLAMA2C, &dir, 100, &err);
	CHECK(ckpt != NULL && ckpt->model->config.max_seq_len == 100 && ckpt->context_length == 512);
	checkpoint_free(ckpt);
	free(golden);
	mem_free(&dir);
}

/* ---------------------------------------------------------------- */
/* The same weights through other formats */

static bool
same_params(const Model *a, const Model *b)
{
	return a->n_params == b->n_params && a->n_tensors == b->n_tensors &&
		memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0;
}

/* Scores of a few candidates after a prefix: the logits, summed up. */
static void
scores_of(const Model *m, double *scores)
{
	int32_t		prefix[3] = {1, 5 % m->config.vocab_size, 3 % m->config.vocab_size};
	int32_t		a[2] = {2, 4 % m->config.vocab_size};
	int32_t		b[1] = {m->config.vocab_size - 1};
	const int32_t *cands[2] = {a, b};
	int			lens[2] = {2, 1};
	CoreError	err = {0};

	CHECKF(model_score_candidates(m, prefix, 3, cands, lens, 2, scores, &err), "%s",
		   err.message);
}

/* Weights rounded to each tensor's dtype, so that files hold them exactly. */
static void
round_to_dtypes(Model *m, const uint8_t *dtypes)
{
	for (int i = 0; i < m->n_tensors; i++)
	{
		float	   *p = m->params + m->tensors[i].offset;

		for (size_t j = 0; j < m->tensors[i].numel; j++)
			p[j] = dtypes[i] == MODEL_DTYPE_F16 ? half_to_float(float_to_half(p[j]))
				: dtypes[i] == MODEL_DTYPE_BF16 ? bfloat_to_float(float_to_bfloat(p[j]))
				: p[j];
	}
}

/*
 * stories260K's llama2.c weights as a GGUF "llama" file, q/k interleaved
 * by llama.cpp's converter rule (checkpoint_files.h): the import gives the
 * llama2.c import's parameters and logits, so the two un-permutations
 * agree, and the llama2.c one reproduces the reference (above).
 */
static void
test_gguf_llama_matches_llama2c(void)
{
	MemDir		dir = stories_dir();
	MemDir		gguf = {0};
	CoreError	err;
	Checkpoint *a = read_dir(CHECKPOINT_LLAMA2C, &dir, 0, &err);
	Checkpoint *b = NULL;
	double		sa[2],
				sb[2];
	size_t		len;
	uint8_t    *file;

	CHECKF(a != NULL, "%s", err.message);
	if (a == NULL)
		return;
	file = gguf_from_model(a->model, "llama", NULL, &len);
	mem_add(&gguf, "", file, &len);
	b = read_dir(CHECKPOINT_AUTO, &gguf, 0, &err);
	CHECKF(b != NULL, "%s", err.message);
	if (b != NULL)
	{
		CHECK(strcmp(b->format, "gguf") == 0 && strcmp(b->architecture, "llama") == 0 &&
			  strcmp(b->source_dtype, "f32") == 0 && b->context_length == 512);
		CHECK(same_params(a->model, b->model));
		scores_of(a->model, sa);
		scores_of(b->model, sb);
		CHECK(sa[0] == sb[0] && sa[1] == sb[1]);
		printf("  GGUF llama (interleaved q/k) vs llama2.c import: same parameters, scores %.6f %.6f\n",
			   sb[0], sb[1]);
		CHECK(b->tokenizer.kind == TOKSRC_GGUF && b->tokenizer.vocab.n_tokens == 64 &&
			  strcmp(b->tokenizer.vocab.model, "llama") == 0 &&
			  b->tokenizer.vocab.token_lens[10] == 3 &&
			  memcmp(b->tokenizer.vocab.tokens[10], "t10", 3) == 0 &&
			  b->tokenizer.vocab.scores[3] == -3.0f && b->tokenizer.vocab.bos_id == 1 &&
			  b->tokenizer.vocab.eos_id == 2 && b->tokenizer.vocab.unk_id == -1 &&
			  b->tokenizer.vocab.add_bos == 1 && b->tokenizer.vocab.add_eos == -1 &&
			  b->tokenizer.vocab.merges == NULL && b->tokenizer.vocab.token_types == NULL);
		checkpoint_free(b);
	}
	/* and in F16 */
	{
		uint8_t		dtypes[64];

		for (int i = 0; i < a->model->n_tensors; i++)
			dtypes[i] = MODEL_DTYPE_F16;
		mem_add(&gguf, "", gguf_from_model(a->model, "llama", dtypes, &len), &len);
		b = read_dir(CHECKPOINT_GGUF, &gguf, 0, &err);
		CHECKF(b != NULL, "%s", err.message);
		round_to_dtypes(a->model, dtypes);
		CHECK(b != NULL && same_params(a->model, b->model) &&
			  strcmp(b->source_dtype, "f16") == 0 && b->dtypes[5] == MODEL_DTYPE_F16);
		checkpoint_free(b);
	}
	checkpoint_free(a);
	mem_free(&dir);
	mem_free(&gguf);
}

static Model *
random_model(const ModelConfig *c, uint64_t seed)
{
	CoreError	err = {0};
	Model	   *m = model_create(c, &err);

	CHECKF(m != NULL, "%s", err.message);
	if (m != NULL)
		model_init_weights(m, seed);
	return m;
}

/* Hugging Face's llama3 inverse frequencies, computed here in double. */
static double
llama3_inv_freq(double theta, int head_dim, int i, const ModelRopeScaling *r)
{
	double		inv = pow(theta, -2.0 * i / head_dim);
	double		wavelen = 2 * M_PI / inv;
	double		low_wavelen = r->original_max_position / r->low_freq_factor;
	double		high_wavelen = r->original_max_position / r->high_freq_factor;
	double		smooth = (r->original_max_position / wavelen - r->low_freq_factor) /
		(r->high_freq_factor - r->low_freq_factor);

	if (wavelen > low_wavelen)
		return inv / r->factor;
	if (wavelen < high_wavelen)
		return inv;
	return (1 - smooth) * inv / r->factor + smooth * inv;
}

static double
rope_table_error(const Model *m)
{
	int			half = m->head_dim / 2;
	double		worst = 0.0;

	for (int pos = 0; pos < m->config.max_seq_len; pos++)
		for (int i = 0; i < half; i++)
		{
			double		inv = llama3_inv_freq(m->config.rope_theta, m->head_dim, i,
											  &m->config.rope_scaling);

			worst = fmax(worst, fabs(m->rope_cos[pos * half + i] - cos(pos * inv)));
			worst = fmax(worst, fabs(m->rope_sin[pos * half + i] - sin(pos * inv)));
		}
	return worst;
}

/*
 * Llama with an untied head, q/k/v biases, head_dim 6 != 16 / 4, GQA and
 * Llama 3 rope scaling: through safetensors (F32, F16, BF16 tensors) and
 * through GGUF (rope scaling as llama.cpp's rope_freqs tensor).
 */
static void
test_llama_head_dim_rope_scaling(void)
{
	ModelConfig c;
	Model	   *m;
	uint8_t		dtypes[64];
	MemDir		dir = {0};
	CoreError	err;
	Checkpoint *ckpt;
	size_t		len;
	double		s0[2],
				s1[2];

	model_config_default(&c, 40, 16, 2, 4);
	c.head_dim = 6;
	c.n_kv_heads = 2;
	c.d_ff = 24;
	c.tied_embeddings = false;
	c.qkv_bias = true;
	c.prefix_lm = false;
	c.logit_scale = 1.0f;
	c.norm_eps = 1e-5f;
	c.max_seq_len = 64;
	c.rope_theta = 500000.0f;
	c.rope_scaling = (ModelRopeScaling) {ROPE_SCALING_LLAMA3, 8.0f, 1.0f, 4.0f, 16};
	m = random_model(&c, 5);
	if (m == NULL)
		return;
	for (int i = 0; i < m->n_tensors; i++)
		dtypes[i] = 1 + i % 3;
	round_to_dtypes(m, dtypes);
	scores_of(m, s0);

	mem_take_text(&dir, "config.json", hf_config(m, "llama",
												", \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16, \"rope_type\": \"llama3\"}, \"bos_token_id\": 7, \"eos_token_id\": [9, 10]"));
	mem_add(&dir, "model.safetensors", st_from_model(m, dtypes, 0, m->n_tensors, &len), &len);
	mem_add_text(&dir, "tokenizer.json", "{}");
	mem_add_text(&dir, "generation_config.json", "{}");
	ckpt = read_dir(CHECKPOINT_HF, &dir, 0, &err);
	CHECKF(ckpt != NULL, "%s", err.message);
	if (ckpt != NULL)
	{
		const ModelConfig *got = &ckpt->model->config;

		CHECK(same_params(m, ckpt->model));
		CHECK(memcmp(ckpt->dtypes, dtypes, m->n_tensors) == 0);
		CHECK(got->head_dim == 6 && ckpt->model->head_dim == 6 && !got->tied_embeddings &&
			  got->qkv_bias && got->n_kv_heads == 2 && got->rope_theta == 500000.0f &&
			  got->rope_scaling.kind == ROPE_SCALING_LLAMA3 &&
			  got->rope_scaling.factor == 8.0f &&
			  got->rope_scaling.original_max_position == 16 &&
			  got->max_seq_len == 64 && got->norm_eps == 1e-5f && !got->prefix_lm &&
			  got->logit_scale == 1.0f);
		CHECK(strcmp(ckpt->source_dtype, "mixed (bf16, f32, f16)") == 0);
		printf("  HF llama, head_dim 6, llama3 rope: source %s, rope tables off by %.1e\n",
			   ckpt->source_dtype, rope_table_error(ckpt->model));
		CHECK(rope_table_error(ckpt->model) < 1e-6);
		CHECK(ckpt->tokenizer.kind == TOKSRC_HF && ckpt->tokenizer.len == 2 &&
			  ckpt->tokenizer.config == NULL && ckpt->tokenizer.generation_config != NULL &&
			  ckpt->tokenizer.bos_id == 7 && ckpt->tokenizer.eos_id == 9 &&
			  ckpt->tokenizer.vocab_size == 40);
		scores_of(ckpt->model, s1);
		CHECK(s0[0] == s1[0] && s0[1] == s1[1]);
		checkpoint_free(ckpt);
	}

	/* GGUF: the scaling as the converter's rope_freqs divisors */
	{
		GgufWriter	w = {0};
		float		divisors[3];
		uint8_t    *file;
		Bytes		b = {0};
		size_t		gguf_len;

		for (int i = 0; i < 3; i++)
		{
			double		inv = pow(500000.0, -2.0 * i / 6);

			divisors[i] = (float) (inv / llama3_inv_freq(500000.0, 6, i, &c.rope_scaling));
		}
		gguf_metadata(&w, m, "llama", true);
		gguf_u32(&w, "llama.rope.scaling.original_context_length", 16);
		bytes_floats(&b, divisors, 3, MODEL_DTYPE_F32);
		gguf_tensor(&w, "rope_freqs.weight", 0, 3, 0, b.data, b.len);
		free(b.data);
		for (int i = 0; i < m->n_tensors; i++)
		{
			const ModelTensor *t = &m->tensors[i];
			float	   *x = tensor_values(m, t, true);
			Bytes		tb = {0};
			char		name[96] = "";

			bytes_floats(&tb, x, t->numel, MODEL_DTYPE_F32);
			gguf_name(t->name, name, sizeof(name));
			gguf_tensor(&w, name, 0, t->ndim == 2 ? t->shape[1] : t->shape[0],
						t->ndim == 2 ? t->shape[0] : 0, tb.data, tb.len);
			free(tb.data);
			free(x);
		}
		file = gguf_finish(&w, &gguf_len);
		mem_free(&dir);
		mem_add(&dir, "", file, &gguf_len);
		ckpt = read_dir(CHECKPOINT_GGUF, &dir, 32, &err);
		CHECKF(ckpt != NULL, "%s", err.message);
		if (ckpt != NULL)
		{
			CHECK(same_params(m, ckpt->model));
			CHECK(ckpt->model->config.rope_scaling.kind == ROPE_SCALING_LLAMA3 &&
				  ckpt->model->config.rope_scaling.factor == 8.0f &&
				  ckpt->model->config.max_seq_len == 32 && ckpt->model->head_dim == 6);
			CHECKF(rope_table_error(ckpt->model) < 1e-6, "GGUF rope tables off by %g",
				   rope_table_error(ckpt->model));
			checkpoint_free(ckpt);
		}
	}
	mem_free(&dir);
	model_free(m);
}

/*
 * Qwen2, tied, biases: through a sharded safetensors directory (two
 * shards and an index) and a GGUF "qwen2" file (no permutation: NEOX
 * RoPE rotates halves).
 */
static void
test_qwen2_sharded_and_gguf(void)
{
	ModelConfig c;
	Model	   *m;
	MemDir		dir = {0};
	CoreError	err;
	Checkpoint *ckpt;
	size_t		len;
	uint8_t		dtypes[64];
	char		index[8192];
	size_t		used;

	model_config_default(&c, 30, 16, 2, 4);
	c.n_kv_heads = 2;
	c.d_ff = 20;
	c.qkv_bias = true;
	c.prefix_lm = false;
	c.logit_scale = 1.0f;
	c.max_seq_len = 100;
	c.rope_theta = 1000000.0f;
	m = random_model(&c, 9);
	if (m == NULL)
		return;
	for (int i = 0; i < m->n_tensors; i++)
		dtypes[i] = MODEL_DTYPE_BF16;
	round_to_dtypes(m, dtypes);

	mem_take_text(&dir, "config.json", hf_config(m, "qwen2", ", \"use_sliding_window\": false, \"rope_scaling\": null"));
	mem_add(&dir, "model-00001-of-00002.safetensors", st_from_model(m, dtypes, 0, 9, &len), &len);
	mem_add(&dir, "model-00002-of-00002.safetensors", st_from_model(m, dtypes, 9, m->n_tensors, &len), &len);
	used = snprintf(index, sizeof(index), "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
	for (int i = 0; i < m->n_tensors; i++)
		used += snprintf(index + used, sizeof(index) - used, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
						 i ? ", " : "", m->tensors[i].name, i < 9 ? 1 : 2);
	snprintf(index + used, sizeof(index) - used, "}}");
	mem_add_text(&dir, "model.safetensors.index.json", index);
	mem_add_text(&dir, "tokenizer.json", "{\"model\": {}}");
	mem_add_text(&dir, "tokenizer_config.json", "{}");
	ckpt = read_dir(CHECKPOINT_HF, &dir, 4096, &err);
	CHECKF(ckpt != NULL, "%s", err.message);
	if (ckpt != NULL)
	{
		CHECK(same_params(m, ckpt->model) && strcmp(ckpt->architecture, "qwen2") == 0 &&
			  strcmp(ckpt->source_dtype, "bf16") == 0 && ckpt->model->config.tied_embeddings &&
			  ckpt->model->config.qkv_bias && ckpt->model->config.max_seq_len == 100 &&
			  ckpt->model->config.rope_theta == 1e6f && ckpt->tokenizer.config != NULL &&
			  ckpt->tokenizer.bos_id == -1);
		checkpoint_free(ckpt);
	}
	mem_free(&dir);

	mem_add(&dir, "", gguf_from_model(m, "qwen2", dtypes, &len), &len);
	ckpt = read_dir(CHECKPOINT_AUTO, &dir, 0, &err);
	CHECKF(ckpt != NULL, "%s", err.message);
	if (ckpt != NULL)
	{
		CHECK(same_params(m, ckpt->model) && strcmp(ckpt->architecture, "qwen2") == 0 &&
			  ckpt->model->config.tied_embeddings && ckpt->model->config.qkv_bias &&
			  ckpt->dtypes[0] == MODEL_DTYPE_BF16);
		checkpoint_free(ckpt);
	}
	printf("  qwen2 tied with biases: sharded safetensors and GGUF give the same parameters\n");
	mem_free(&dir);
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Block formats, worked out by hand */

/* Q8_0: d = 0.5, q_i = i - 16: x_i = (i - 16) / 2. */
static void
q8_0_block(uint8_t *b)
{
	le_put(b, 0x3800, 2);
	for (int i = 0; i < 32; i++)
		b[2 + i] = (uint8_t) (int8_t) (i - 16);
}

/*
 * Q4_K: d = 1, dmin = 0.5; sub-block scales 1, 2, 3, 4, 37, 6, 7, 8 and
 * mins 0..7 (37 needs the high bits: low nibble 5 in byte 8, 37 >> 4 = 2
 * in the top bits of byte 0); qs[l] = (l % 16) | (15 - l % 16) << 4.
 */
static void
q4_k_block(uint8_t *b)
{
	static const uint8_t scales[12] = {
		1 | 2 << 6, 2, 3, 4,		/* scales 0..3, the top bits of scale 4 */
		0, 1, 2, 3,				/* mins 0..3 */
		5 | 4 << 4, 6 | 5 << 4, 7 | 6 << 4, 8 | 7 << 4};	/* scales, mins 4..7 */

	le_put(b, 0x3C00, 2);
	le_put(b + 2, 0x3800, 2);
	memcpy(b + 4, scales, 12);
	for (int l = 0; l < 128; l++)
		b[16 + l] = (uint8_t) ((l % 16) | (15 - l % 16) << 4);
}

/*
 * Q6_K: ql all 0x21 (low nibble 1, high 2), qh all 0xE4 (2-bit fields 0,
 * 1, 2, 3), scales 1..16, d = 0.25.
 */
static void
q6_k_block(uint8_t *b)
{
	memset(b, 0x21, 128);
	memset(b + 128, 0xE4, 64);
	for (int i = 0; i < 16; i++)
		b[192 + i] = (uint8_t) (i + 1);
	le_put(b + 208, 0x3400, 2);
}

static void
test_blocks(void)
{
	uint8_t		b[210];
	float		x[256];

	q8_0_block(b);
	dequantize(DEQUANT_Q8_0, b, x, 32);
	CHECK(x[0] == -8.0f && x[16] == 0.0f && x[31] == 7.5f);

	q4_k_block(b);
	dequantize(DEQUANT_Q4_K, b, x, 256);
	/* x = d scale_s q - dmin min_s, sub-block s = k / 32 */
	CHECK(x[0] == 0.0f && x[1] == 1.0f);	/* s 0: low nibbles 0, 1 */
	CHECK(x[32] == 29.5f);		/* s 1: 2 * 15 - 0.5 * 1 */
	CHECK(x[128] == -2.0f && x[129] == 35.0f);	/* s 4: 37 q - 0.5 * 4 */
	CHECK(x[200] == 53.0f);		/* s 6: qs[104] low nibble 8: 7 * 8 - 3 */
	CHECK(x[255] == -3.5f);		/* s 7: qs[127] high nibble 0: - 0.5 * 7 */

	q6_k_block(b);
	dequantize(DEQUANT_Q6_K, b, x, 256);
	/* x = d scale (q - 32), q = 4 bits of ql | 2 bits of qh << 4 */
	CHECK(x[0] == -7.75f);		/* q 1, scale 1 */
	CHECK(x[16] == -15.5f);		/* q 1, scale 2 */
	CHECK(x[32] == -11.25f);	/* q 1 | 1 << 4 = 17, scale 3 */
	CHECK(x[64] == 2.5f);		/* q 2 | 2 << 4 = 34, scale 5 */
	CHECK(x[96] == 31.5f);		/* q 2 | 3 << 4 = 50, scale 7 */
	CHECK(x[128] == -69.75f);	/* second half: scale 9 */
	CHECK(x[255] == 72.0f);		/* q 50, scale 16 */

	le_put(b, 0x3C01, 2);		/* 1 + 2^-10 */
	le_put(b + 2, 0xC000, 2);	/* -2 */
	le_put(b + 4, 0x0001, 2);	/* 2^-24 */
	dequantize(DEQUANT_F16, b, x, 3);
	CHECK(x[0] == 1.0f + 1.0f / 1024 && x[1] == -2.0f && x[2] == ldexpf(1.0f, -24));
	le_put(b, 0x3FC0, 2);		/* 1.5 */
	le_put(b + 2, 0xC2F7, 2);	/* -123.5 */
	dequantize(DEQUANT_BF16, b, x, 2);
	CHECK(x[0] == 1.5f && x[1] == -123.5f);
}

/* The block, repeated to fill n bytes' worth of blocks. */
static uint8_t *
repeated(void (*fill) (uint8_t *), int block_bytes, size_t n_blocks, size_t *len)
{
	uint8_t    *data = malloc(n_blocks * block_bytes);

	for (size_t i = 0; i < n_blocks; i++)
		fill(data + i * block_bytes);
	*len = n_blocks * block_bytes;
	return data;
}

/*
 * A qwen2 GGUF file whose tensors are of every type: the values land
 * where the blocks put them, quantized tensors are stored as F32, and the
 * source is described as mixed, by parameters.
 */
static void
test_gguf_types(void)
{
	ModelConfig c;
	Model	   *m;
	GgufWriter	w = {0};
	MemDir		dir = {0};
	CoreError	err;
	Checkpoint *ckpt;
	size_t		len;

	model_config_default(&c, 8, 256, 1, 2);
	c.d_ff = 256;
	c.qkv_bias = true;
	c.prefix_lm = false;
	c.max_seq_len = 16;
	m = random_model(&c, 3);
	if (m == NULL)
		return;
	for (int i = 0; i < m->n_tensors; i++)
		for (size_t j = 0; j < m->tensors[i].numel; j++)
			m->params[m->tensors[i].offset + j] = ((int) (j % 7) - 3) / 8.0f;
	gguf_metadata(&w, m, "qwen2", true);
	for (int i = 0; i < m->n_tensors; i++)
	{
		const ModelTensor *t = &m->tensors[i];
		char		name[96] = "";
		uint64_t	ne0 = t->ndim == 2 ? t->shape[1] : t->shape[0];
		uint64_t	ne1 = t->ndim == 2 ? t->shape[0] : 0;
		uint8_t    *data;
		Bytes		b = {0};
		uint32_t	type = 0;

		gguf_name(t->name, name, sizeof(name));
		if (strstr(name, "attn_q.weight"))
			data = repeated(q8_0_block, 34, t->numel / 32, &len), type = 8;
		else if (strstr(name, "attn_k.weight") || strstr(name, "ffn_up"))
			data = repeated(q4_k_block, 144, t->numel / 256, &len), type = 12;
		else if (strstr(name, "attn_v.weight") || strstr(name, "ffn_down"))
			data = repeated(q6_k_block, 210, t->numel / 256, &len), type = 14;
		else
		{
			int			dtype = strstr(name, "token_embd") ? MODEL_DTYPE_F16
				: strstr(name, "attn_output") ? MODEL_DTYPE_BF16 : MODEL_DTYPE_F32;

			bytes_floats(&b, m->params + t->offset, t->numel, dtype);
			data = b.data;
			len = b.len;
			type = dtype == MODEL_DTYPE_F16 ? 1 : dtype == MODEL_DTYPE_BF16 ? 30 : 0;
		}
		gguf_tensor(&w, name, type, ne0, ne1, data, len);
		free(data);
	}
	mem_add(&dir, "", gguf_finish(&w, &len), &len);
	ckpt = read_dir(CHECKPOINT_GGUF, &dir, 0, &err);
	CHECKF(ckpt != NULL, "%s", err.message);
	if (ckpt != NULL)
	{
		const Model *g = ckpt->model;
		const float *q = g->params + model_find_tensor(g, "model.layers.0.self_attn.q_proj.weight")->offset;
		const float *k = g->params + model_find_tensor(g, "model.layers.0.self_attn.k_proj.weight")->offset;
		const float *v = g->params + model_find_tensor(g, "model.layers.0.self_attn.v_proj.weight")->offset;
		const ModelTensor *o = model_find_tensor(g, "model.layers.0.self_attn.o_proj.weight");

		/* row 5 of each: 256 values, one K block or eight Q8_0 blocks */
		CHECK(q[5 * 256 + 0] == -8.0f && q[5 * 256 + 32 + 31] == 7.5f);
		CHECK(k[5 * 256 + 32] == 29.5f && k[5 * 256 + 129] == 35.0f && k[5 * 256 + 255] == -3.5f);
		CHECK(v[5 * 256 + 96] == 31.5f && v[5 * 256 + 128] == -69.75f);
		CHECK(same_params(m, m) && g->params[o->offset + 10] == m->params[o->offset + 10]);
		CHECK(ckpt->dtypes[0] == MODEL_DTYPE_F16 &&
			  ckpt->dtypes[o - g->tensors] == MODEL_DTYPE_BF16 &&
			  ckpt->dtypes[2] == MODEL_DTYPE_F32);
		printf("  GGUF of every type: source %s\n", ckpt->source_dtype);
		CHECK(strcmp(ckpt->source_dtype, "mixed (q4_k, q6_k, f32, bf16, q8_0, f16)") == 0);
		checkpoint_free(ckpt);
	}
	mem_free(&dir);
	model_free(m);
}

/* ---------------------------------------------------------------- */
/* Broken files */

/* Every truncation of file (as name in dir) is refused with a message. */
static void
check_truncations(const char *what, CheckpointFormat format, MemDir *dir,
				  const char *name, size_t step)
{
	MemFile    *f = NULL;
	size_t		full;
	int			accepted = 0,
				silent = 0,
				tried = 0;

	for (int i = 0; i < dir->n; i++)
		if (strcmp(dir->files[i].name, name) == 0)
			f = &dir->files[i];
	CHECK(f != NULL);
	if (f == NULL)
		return;
	full = f->len;
	for (size_t len = 0; len < full; len += len < 4096 ? 1 : step)
	{
		CoreError	err;
		Checkpoint *ckpt;

		f->len = len;
		ckpt = read_dir(format, dir, 0, &err);
		accepted += ckpt != NULL;
		silent += ckpt == NULL && err.message[0] == '\0';
		tried++;
		checkpoint_free(ckpt);
	}
	f->len = full;
	printf("  %s: %d truncations, %d accepted, %d without a message\n", what, tried,
		   accepted, silent);
	CHECK(accepted == 0 && silent == 0);
}

/* Reading dir fails with a message that contains want. */
static void
check_refused(const char *what, CheckpointFormat format, MemDir *dir,
			  const char *want)
{
	CoreError	err;
	Checkpoint *ckpt = read_dir(format, dir, 0, &err);

	CHECKF(ckpt == NULL && strstr(err.message, want) != NULL,
		   "%s: wanted an error with \"%s\", got \"%s\"", what, want,
		   ckpt ? "success" : err.message);
	printf("  %s: %s\n", what, err.message);
	checkpoint_free(ckpt);
}

static Model *
small_model(bool bias, int head_dim)
{
	ModelConfig c;

	model_config_default(&c, 12, 16, 2, 4);
	c.n_kv_heads = 2;
	c.head_dim = head_dim;
	c.d_ff = 20;
	c.qkv_bias = bias;
	c.prefix_lm = false;
	c.tied_embeddings = !bias;
	c.logit_scale = 1.0f;
	c.max_seq_len = 32;
	return random_model(&c, 21);
}

/* m as GGUF, with one tensor (index bad_tensor) of ggml type bad_type. */
static uint8_t *
gguf_with(const Model *m, const char *arch, bool tokenizer, int skip_tensor,
		  int bad_tensor, uint32_t bad_type, size_t *len)
{
	GgufWriter	w = {0};

	gguf_metadata(&w, m, arch, tokenizer);
	for (int i = 0; i < m->n_tensors; i++)
	{
		const ModelTensor *t = &m->tensors[i];
		Bytes		b = {0};
		char		name[96] = "";

		if (i == skip_tensor)
			continue;
		bytes_floats(&b, m->params + t->offset, t->numel, MODEL_DTYPE_F32);
		gguf_name(t->name, name, sizeof(name));
		gguf_tensor(&w, name, i == bad_tensor ? bad_type : 0,
					t->ndim == 2 ? t->shape[1] : t->shape[0], t->ndim == 2 ? t->shape[0] : 0,
					b.data, i == bad_tensor ? b.len / 8 : b.len);
		free(b.data);
	}
	return gguf_finish(&w, len);
}

static void
test_bad_gguf(void)
{
	Model	   *m = small_model(true, 0);
	Model		wider;
	MemDir		dir = {0};
	size_t		len;
	uint8_t    *file;

	if (m == NULL)
		return;
	mem_add(&dir, "", gguf_with(m, "qwen2", true, -1, -1, 0, &len), &len);
	{
		CoreError	err;
		Checkpoint *ok = read_dir(CHECKPOINT_GGUF, &dir, 0, &err);

		CHECKF(ok != NULL && same_params(ok->model, m), "%s", err.message);
		checkpoint_free(ok);
	}
	check_truncations("GGUF", CHECKPOINT_GGUF, &dir, "", 1);

	dir.files[0].data[3] = 'X';
	check_refused("GGUF, wrong magic", CHECKPOINT_GGUF, &dir, "magic");
	mem_add(&dir, "", gguf_with(m, "falcon", true, -1, -1, 0, &len), &len);
	check_refused("GGUF, falcon", CHECKPOINT_GGUF, &dir, "\"falcon\" is not supported");
	mem_add(&dir, "", gguf_with(m, "qwen2", true, -1, 3, 2, &len), &len);
	check_refused("GGUF, Q4_0 tensor", CHECKPOINT_GGUF, &dir, "Q4_0");
	mem_add(&dir, "", gguf_with(m, "qwen2", false, -1, -1, 0, &len), &len);
	check_refused("GGUF, no tokenizer", CHECKPOINT_GGUF, &dir, "tokenizer");
	mem_add(&dir, "", gguf_with(m, "qwen2", true, 3, -1, 0, &len), &len);
	check_refused("GGUF, a tensor missing", CHECKPOINT_GGUF, &dir,
				  "missing tensor \"model.layers.0.self_attn.k_proj.weight\"");
	wider = *m;
	wider.config.d_ff += 4;
	mem_add(&dir, "", gguf_with(&wider, "qwen2", true, -1, -1, 0, &len), &len);
	check_refused("GGUF, metadata against shapes", CHECKPOINT_GGUF, &dir,
				  "has shape [20, 16], the config implies [24, 16]");

	/* the first tensor's offset far past the end */
	file = gguf_with(m, "qwen2", true, -1, -1, 0, &len);
	{
		uint8_t    *name = memmem(file, len, "token_embd.weight", 17);

		CHECK(name != NULL);
		le_put(name + 17 + 4 + 16 + 4, UINT64_MAX - 8, 8);
	}
	mem_add(&dir, "", file, &len);
	check_refused("GGUF, offset past the end", CHECKPOINT_GGUF, &dir, "ends past");
	mem_free(&dir);
	model_free(m);
}

static void
hf_dir(MemDir *dir, const Model *m, const char *config_extra)
{
	size_t		len;

	mem_take_text(dir, "config.json", hf_config(m, "llama", config_extra));
	mem_add(dir, "model.safetensors", st_from_model(m, NULL, 0, m->n_tensors, &len), &len);
	mem_add_text(dir, "tokenizer.json", "{}");
}

static void
test_bad_safetensors(void)
{
	Model	   *m = small_model(true, 6);
	MemDir		dir = {0};
	size_t		len;

	if (m == NULL)
		return;
	hf_dir(&dir, m, "");
	{
		CoreError	err;
		Checkpoint *ok = read_dir(CHECKPOINT_HF, &dir, 0, &err);

		CHECKF(ok != NULL && same_params(ok->model, m), "%s", err.message);
		checkpoint_free(ok);
	}
	check_truncations("safetensors", CHECKPOINT_HF, &dir, "model.safetensors", 1);
	dir.files[1].len -= 4;
	check_refused("safetensors, data cut short", CHECKPOINT_HF, &dir, "data_offsets outside");
	dir.files[1].len += 4;
	dir.files[0].len--;			/* a final newline may go */
	check_truncations("config.json", CHECKPOINT_HF, &dir, "config.json", 1);
	dir.files[0].len++;

	mem_take_text(&dir, "config.json", hf_config(m, "mistral", ""));
	check_refused("HF, mistral", CHECKPOINT_HF, &dir, "\"mistral\" is not supported");
	mem_take_text(&dir, "config.json", hf_config(m, "llama", ", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}"));
	check_refused("HF, yarn", CHECKPOINT_HF, &dir, "\"yarn\" is not supported");
	mem_take_text(&dir, "config.json", hf_config(m, "llama", ""));
	mem_add(&dir, "model.safetensors", st_from_model(m, NULL, 0, m->n_tensors - 1, &len), &len);
	check_refused("HF, a tensor missing", CHECKPOINT_HF, &dir, "missing tensor \"lm_head.weight\"");
	{
		SafetensorsWriter w = {0};
		float		zeros[24 * 16] = {0};
		int64_t		shape[2] = {16, 24};

		st_tensor(&w, "model.layers.0.self_attn.q_proj.weight", "F32", 2, shape, zeros,
				  sizeof(zeros));
		mem_add(&dir, "model.safetensors", st_finish(&w, &len), &len);
		check_refused("HF, a transposed tensor", CHECKPOINT_HF, &dir,
					  "\"model.layers.0.self_attn.q_proj.weight\" has shape [16, 24], the config implies [24, 16]");
		st_tensor(&w, "model.embed_tokens.weight", "F64", 2, shape, zeros, sizeof(zeros));
		mem_add(&dir, "model.safetensors", st_finish(&w, &len), &len);
		check_refused("HF, F64", CHECKPOINT_HF, &dir, "dtype F64");
		st_tensor(&w, "model.layers.0.mlp.experts.weight", "F32", 2, shape, zeros, sizeof(zeros));
		mem_add(&dir, "model.safetensors", st_finish(&w, &len), &len);
		check_refused("HF, an unknown tensor", CHECKPOINT_HF, &dir,
					  "unexpected tensor \"model.layers.0.mlp.experts.weight\"");
	}
	mem_add_text(&dir, "model.safetensors.index.json",
				 "{\"weight_map\": {\"model.norm.weight\": \"../../etc/passwd\"}}");
	check_refused("HF, a shard outside", CHECKPOINT_HF, &dir, "not a file name");
	mem_add_text(&dir, "model.safetensors.index.json",
				 "{\"weight_map\": {\"model.norm.weight\": \"model-1.safetensors\"}}");
	check_refused("HF, a shard missing", CHECKPOINT_HF, &dir, "model-1.safetensors");
	mem_free(&dir);
	hf_dir(&dir, m, "");
	dir.files[2].name = "tokenizer.txt";
	check_refused("HF, no tokenizer.json", CHECKPOINT_HF, &dir, "tokenizer.json");
	mem_free(&dir);
	model_free(m);
}

static void
test_bad_llama2c(void)
{
	Model	   *m = small_model(false, 0);
	MemDir		dir = {0};
	size_t		len;
	uint8_t    *file;

	if (m == NULL)
		return;
	mem_add(&dir, "", llama2c_from_model(m, &len), &len);
	mem_add_text(&dir, "tokenizer", "tokens");
	{
		CoreError	err;
		Checkpoint *ok = read_dir(CHECKPOINT_LLAMA2C, &dir, 0, &err);

		CHECKF(ok != NULL && same_params(ok->model, m), "%s", err.message);
		checkpoint_free(ok);
	}
	check_truncations("llama2.c", CHECKPOINT_LLAMA2C, &dir, "", 1);
	file = malloc(dir.files[0].len + 4);
	memcpy(file, dir.files[0].data, dir.files[0].len);
	len = dir.files[0].len + 4;
	mem_add(&dir, "", file, &len);
	check_refused("llama2.c, trailing bytes", CHECKPOINT_LLAMA2C, &dir, "trailing bytes");
	le_put(dir.files[0].data, 0x616b3432, 4);
	check_refused("llama2.c, version 1 export", CHECKPOINT_AUTO, &dir, "ak42");
	mem_free(&dir);
	mem_add(&dir, "", llama2c_from_model(m, &len), &len);
	check_refused("llama2.c, no tokenizer", CHECKPOINT_LLAMA2C, &dir, "tokenizer");
	mem_free(&dir);
	model_free(m);
}

/* Asks to stop at its n-th question. */
static bool
stop_at(void *arg)
{
	int		   *left = arg;

	return --*left <= 0;
}

static void
test_stop(void)
{
	MemDir		dir = stories_dir();
	CheckpointFiles files = {&dir, mem_open, NULL};
	int			left = 5;
	StopCheck	stop = {stop_at, &left};
	CoreError	err = {0};
	Checkpoint *ckpt = checkpoint_read(CHECKPOINT_LLAMA2C, &files, 0, &stop, &err);

	CHECK(ckpt == NULL && err.kind == CORE_ERR_INTERRUPTED && left == 0);
	mem_free(&dir);
}

/* stories260K's files, and the bytes done_with() heard of. */
typedef struct CountingDir
{
	MemDir		dir;
	size_t		done;
} CountingDir;

static const void *
counting_open(void *ctx, const char *name, bool required, size_t *len, CoreError *err)
{
	return mem_open(&((CountingDir *) ctx)->dir, name, required, len, err);
}

static void
count_done(void *ctx, const void *data, size_t len)
{
	((CountingDir *) ctx)->done += len;
}

/*
 * done_with() hears of every tensor's bytes once, after converting them:
 * stories260K's float32 weights, all of them.
 */
static void
test_done_with(void)
{
	CountingDir counting = {stories_dir(), 0};
	CheckpointFiles files = {&counting, counting_open, count_done};
	CoreError	err = {0};
	Checkpoint *ckpt = checkpoint_read(CHECKPOINT_LLAMA2C, &files, 0, NULL, &err);

	CHECKF(ckpt != NULL, "%s", err.message);
	if (ckpt != NULL)
		CHECKF(counting.done == ckpt->model->n_params * sizeof(float),
			   "done_with heard of %zu bytes, the weights are %zu", counting.done,
			   ckpt->model->n_params * sizeof(float));
	checkpoint_free(ckpt);
	mem_free(&counting.dir);
}

int
main(void)
{
	model_set_threads(1);
	test_stories260k();
	test_gguf_llama_matches_llama2c();
	test_llama_head_dim_rope_scaling();
	test_qwen2_sharded_and_gguf();
	test_blocks();
	test_gguf_types();
	test_bad_gguf();
	test_bad_safetensors();
	test_bad_llama2c();
	test_stop();
	test_done_with();
	return unit_summary("checkpoint");
}
