/*
 * make_seeds.c - write the binary seed corpora of the fuzz targets: tiny
 * serialized tokenizers, models and students, made by the library itself,
 * tiny GGUF, safetensors and llama2.c checkpoints
 * (test/unit/checkpoint_files.h), and small tokenizer.json files for
 * fuzz_tokenizer_hf (`make fuzz-seeds`; text seeds come from
 * make_seeds.py).
 *
 * Usage: make_seeds <seeds directory>.  The output depends only on this
 * program (fixed seeds, one BLAS thread), so regenerating changes no file
 * unless a format changed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/lora.h"
#include "core/model_image.h"
#include "core/model_io.h"
#include "core/tokenizer_pretrained.h"
#include "core/util.h"
#include "../unit/checkpoint_files.h"
#include "fuzz_lora.h"
#include "core/trainer.h"
#include "core/student_internal.h"
#include "fuzz_trainer.h"

static const char *seeds_dir;

static void
die(const char *what, const char *why)
{
	fprintf(stderr, "make_seeds: %s: %s\n", what, why);
	exit(1);
}

/* Write a then b to <seeds_dir>/<target>/<name>. */
static void
write_seed(const char *target, const char *name,
		   const void *a, size_t na, const void *b, size_t nb)
{
	char		path[1024];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s/%s", seeds_dir, target, name);
	f = fopen(path, "wb");
	if (f == NULL ||
		fwrite(a, 1, na, f) != na || (nb > 0 && fwrite(b, 1, nb, f) != nb) ||
		fclose(f) != 0)
		die(path, "cannot write");
}

/* fuzz_trainer.h's eight rows (test_student.c's tiny set), as one corpus. */
#define N_ROWS ((int) (sizeof(fuzz_state_rows) / sizeof(fuzz_state_rows[0])))

static Tokenizer *
train_tokenizer(int vocab_size)
{
	const char *texts[3 * N_ROWS];
	size_t		lens[3 * N_ROWS];
	CoreError	err = {0};
	Tokenizer  *t;

	for (int i = 0; i < N_ROWS; i++)
	{
		texts[3 * i] = fuzz_state_rows[i].input;
		texts[3 * i + 1] = fuzz_state_rows[i].label;
		texts[3 * i + 2] = fuzz_state_rows[i].rationale;
	}
	for (int i = 0; i < 3 * N_ROWS; i++)
		lens[i] = strlen(texts[i]);
	t = tok_train(texts, lens, 3 * N_ROWS, vocab_size, SIZE_MAX, NULL,
				  &err);
	if (t == NULL)
		die("tok_train", err.message);
	return t;
}

static void
write_tokenizer(const char *name, const Tokenizer *t)
{
	size_t		len;
	void	   *blob = tok_serialize(t, &len);

	if (blob == NULL)
		die(name, "out of memory");
	write_seed("fuzz_tokenizer", name, blob, len, NULL, 0);
	free(blob);
}

static Model *
tiny_model(const ModelConfig *config)
{
	CoreError	err = {0};
	Model	   *m = model_create(config, &err);

	if (m == NULL)
		die("model_create", err.message);
	model_init_weights(m, 1);
	return m;
}

static void
write_model(const char *name, const ModelConfig *config)
{
	Model	   *m = tiny_model(config);
	size_t		len = model_serialized_size(m);
	void	   *blob = malloc(len);

	if (blob == NULL)
		die(name, "out of memory");
	model_serialize(m, blob);
	write_seed("fuzz_model", name, blob, len, NULL, 0);
	free(blob);
	model_free(m);
}

/*
 * fuzz_model_header's input: u32 header length, a version 2 header, the
 * data, each tensor in the dtype (i % 3) + 1.
 */
static void
write_model_chunked(const char *name, const ModelConfig *config)
{
	Model	   *m = tiny_model(config);
	uint64_t	data_len;
	uint8_t		dtypes[64];
	uint8_t    *data;
	void	   *header;
	size_t		header_len;
	uint8_t    *blob;

	for (int i = 0; i < m->n_tensors && i < 64; i++)
		dtypes[i] = 1 + i % 3;
	if (m->n_tensors > 64)
		die(name, "too many tensors");
	data_len = model_data_bytes(m, dtypes);
	data = malloc(data_len);
	if (data == NULL)
		die(name, "out of memory");
	model_data_read(m, dtypes, 0, data, data_len);
	header = model_save_header(m, dtypes, crc32c(0, data, data_len), &header_len);
	blob = malloc(4 + header_len);
	if (header == NULL || blob == NULL)
		die(name, "out of memory");
	le_put_u32(blob, (uint32_t) header_len);
	memcpy(blob + 4, header, header_len);
	write_seed("fuzz_model_header", name, blob, 4 + header_len, data, data_len);
	free(blob);
	free(header);
	free(data);
	model_free(m);
}

static bool
append_image(void *arg, const void *data, size_t len)
{
	Bytes	   *b = arg;

	bytes_put(b, data, len);
	return true;
}

/* fuzz_prediction_image's input: the image of a loaded model of config. */
static void
write_prediction_image(const char *name, const ModelConfig *config)
{
	Model	   *m = tiny_model(config);
	ModelImageIdentity identity = {7, 5, 0xD157111u};
	Bytes		image = {0};
	CoreError	err = {0};

	if (!model_pack_for_prediction_only(m, &err) ||
		!model_image_write(m, &identity, append_image, &image, &err))
		die(name, err.message);
	write_seed("fuzz_prediction_image", name, image.data, image.len, NULL, 0);
	free(image.data);
	model_free(m);
}

/* A tiny pretrained-style model: causal, logit scale 1. */
static Model *
checkpoint_model(int d_model, int head_dim, bool bias, bool tied)
{
	ModelConfig c;

	model_config_default(&c, 8, d_model, 1, 2);
	c.head_dim = head_dim;
	c.d_ff = d_model;
	c.max_seq_len = 8;
	c.prefix_lm = false;
	c.logit_scale = 1.0f;
	c.qkv_bias = bias;
	c.tied_embeddings = tied;
	return tiny_model(&c);
}

/* fuzz_safetensors' input: config.json, a NUL, model.safetensors. */
static void
write_hf_seed(const char *name, const Model *m, const char *arch,
			  const char *extra, const uint8_t *dtypes)
{
	char	   *config = hf_config(m, arch, extra);
	size_t		len;
	uint8_t    *st = st_from_model(m, dtypes, 0, m->n_tensors, &len);

	write_seed("fuzz_safetensors", name, config, strlen(config) + 1, st, len);
	free(config);
	free(st);
}

/* A GGUF "llama" file with the matrices of the layer in Q8_0. */
static void
write_gguf_q8_0_seed(const char *name)
{
	Model	   *m = checkpoint_model(32, 0, false, true);
	GgufWriter	w = {0};
	size_t		len;
	uint8_t    *file;

	gguf_metadata(&w, m, "llama", true);
	for (int i = 0; i < m->n_tensors; i++)
	{
		const ModelTensor *t = &m->tensors[i];
		char		gguf[96] = "";
		Bytes		b = {0};
		bool		quantize = t->ndim == 2 && strstr(t->name, "layers") != NULL;

		gguf_name(t->name, gguf, sizeof(gguf));
		if (quantize)
			for (size_t k = 0; k < t->numel; k += 32)
			{
				bytes_le(&b, float_to_half(0.02f), 2);
				for (int q = 0; q < 32; q++)
					bytes_le(&b, (uint8_t) (((k + q) * 7) % 255), 1);
			}
		else
			bytes_floats(&b, m->params + t->offset, t->numel, MODEL_DTYPE_F32);
		gguf_tensor(&w, gguf, quantize ? 8 : 0, t->shape[t->ndim - 1],
					t->ndim == 2 ? t->shape[0] : 0, b.data, b.len);
		free(b.data);
	}
	file = gguf_finish(&w, &len);
	write_seed("fuzz_gguf", name, file, len, NULL, 0);
	free(file);
	model_free(m);
}

static void
write_checkpoint_seeds(void)
{
	Model	   *m;
	uint8_t		dtypes[64];
	uint8_t    *file;
	size_t		len;

	m = checkpoint_model(8, 0, true, true);
	file = gguf_from_model(m, "qwen2", NULL, &len);
	write_seed("fuzz_gguf", "qwen2_tied_bias", file, len, NULL, 0);
	free(file);
	for (int i = 0; i < m->n_tensors; i++)
		dtypes[i] = MODEL_DTYPE_BF16;
	write_hf_seed("qwen2_tied_bias_bf16", m, "qwen2", "", dtypes);
	model_free(m);

	m = checkpoint_model(8, 6, false, false);
	for (int i = 0; i < m->n_tensors; i++)
		dtypes[i] = 1 + i % 3;
	file = gguf_from_model(m, "llama", dtypes, &len);
	write_seed("fuzz_gguf", "llama_untied_head_dim_mixed", file, len, NULL, 0);
	free(file);
	write_hf_seed("llama_untied_head_dim_llama3", m, "llama",
				  ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 4}, \"eos_token_id\": [2, 3]",
				  dtypes);
	model_free(m);

	m = checkpoint_model(8, 0, false, false);
	file = llama2c_from_model(m, &len);
	write_seed("fuzz_llama2c", "untied", file, len, NULL, 0);
	free(file);
	model_free(m);
	m = checkpoint_model(8, 0, false, true);
	file = llama2c_from_model(m, &len);
	write_seed("fuzz_llama2c", "tied", file, len, NULL, 0);
	free(file);
	model_free(m);

	write_gguf_q8_0_seed("llama_q8_0");
}

/* fuzz_student's input: u32 tokenizer length, tokenizer, weights. */
static void
write_student(const char *name, const Student *s)
{
	size_t		tok_len,
				weights_len;
	void	   *tok = student_save_tokenizer(s, &tok_len);
	void	   *weights = student_save_weights(s, &weights_len);
	uint8_t    *blob = malloc(4 + tok_len);

	if (tok == NULL || weights == NULL || blob == NULL)
		die(name, "out of memory");
	for (int i = 0; i < 4; i++)
		blob[i] = (uint8_t) (tok_len >> (8 * i));
	memcpy(blob + 4, tok, tok_len);
	write_seed("fuzz_student", name, blob, 4 + tok_len, weights, weights_len);
	free(blob);
	free(weights);
	free(tok);
}

/* A student as training makes one: one short epoch on fuzz_state_rows. */
static Student *
trained_student(void)
{
	StudentParams p;
	StudentTrainer *trainer;
	TrainProgress progress;
	Student    *s;
	CoreError	err = {0};

	student_params_default(&p);
	p.d_model = 16;
	p.n_layers = 1;
	p.n_heads = 2;
	p.d_ff = 16;
	p.vocab_size = 280;
	p.epochs = 1;
	p.batch_size = 8;
	p.max_input_tokens = 8;
	p.max_target_tokens = 4;
	p.validation_fraction = 0.0;
	p.dropout = 0.0;
	trainer = trainer_create(&p, fuzz_state_rows, N_ROWS, NULL, 0, NULL, &err);
	if (trainer == NULL)
		die("trainer_create", err.message);
	while (trainer_advance(trainer, &progress) != TRAIN_DONE)
		;
	s = trainer_take_best(trainer);
	trainer_free(trainer);
	if (s == NULL)
		die("trainer_take_best", "no student");
	return s;
}

/*
 * The smallest student student_load() takes: bytes-only tokenizer, a model
 * of width 4, untied, causal, with q/k/v biases.
 */
static Student *
tiny_student(void)
{
	Student    *s = calloc(1, sizeof(Student));
	ModelConfig c;

	if (s == NULL)
		die("tiny student", "out of memory");
	s->tokenizer = train_tokenizer(TOK_MIN_VOCAB);
	s->max_input_tokens = 8;
	s->max_target_tokens = 2;
	model_config_default(&c, tok_vocab_size(s->tokenizer), 4, 1, 1);
	c.d_ff = 4;
	c.max_seq_len = student_sequence_limit(s->tokenizer, s->max_input_tokens,
										   s->max_target_tokens);
	c.tied_embeddings = false;
	c.prefix_lm = false;
	c.qkv_bias = true;
	s->model = tiny_model(&c);
	return s;
}

static bool
append_state(void *ctx, const void *data, size_t len, CoreError *err)
{
	TextBuffer *buf = ctx;

	if (!text_buffer_append(buf, data, len))
		die("training state", "out of memory");
	return true;
}

/*
 * fuzz_trainer_state's input: the state of its trainer after the first
 * epoch, with the best epoch's weights (97 KB: the smallest vocabulary
 * and width there are).
 */
static void
write_trainer_state(void)
{
	CoreError	err = {0};
	StudentTrainer *t = fuzz_state_trainer(&err);
	TrainProgress p;
	TextBuffer	buf = {0};

	if (t == NULL)
		die("fuzz_state_trainer", err.message);
	while (trainer_advance(t, &p) != TRAIN_EPOCH)
		;
	if (!trainer_save_state(t, append_state, &buf, &err))
		die("trainer_save_state", err.message);
	write_seed("fuzz_trainer_state", "after_epoch_1", buf.data, buf.len, NULL, 0);
	free(buf.data);
	trainer_free(t);
}

/* GPT-2's character for byte b, as a JSON \\u escape. */
static int
put_byte_char(char *out, int b)
{
	int			n = 0;

	if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
		return sprintf(out, "\\u%04x", b);
	for (int c = 0; c < b; c++)
		n += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF));
	return sprintf(out, "\\u%04x", 256 + n);
}

/*
 * A small tokenizer.json: 256 byte tokens (byte level: GPT-2's characters;
 * SentencePiece style: <0xNN>, then the characters of "hello" and a space
 * mark), a few merges, two added tokens, and the normalizer and
 * pre-tokenizer given.
 */
static char *
small_json(bool byte_level, const char *normalizer, const char *pre_tokenizer,
		   const char *model_extra)
{
	char	   *j = malloc(1 << 16);
	int			n = sprintf(j, "{\"added_tokens\": ["
						   "{\"id\": 270, \"content\": \"<|end|>\", \"special\": true, \"normalized\": false},"
						   "{\"id\": 271, \"content\": \"<x>\", \"special\": false, \"normalized\": false}],"
						   "\"normalizer\": %s, \"pre_tokenizer\": %s, \"post_processor\": "
						   "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<|end|>\"}}]},"
						   "\"model\": {\"type\": \"BPE\", %s \"vocab\": {",
						   normalizer, pre_tokenizer, model_extra);

	for (int b = 0; b < 256; b++)
	{
		j[n++] = '"';
		n += byte_level ? put_byte_char(j + n, b) : sprintf(j + n, "<0x%02X>", b);
		n += sprintf(j + n, "\": %d, ", b);
	}
	if (byte_level)
		n += sprintf(j + n, "\"he\": 256, \"ll\": 257, \"hell\": 258, \"hello\": 259, "
					 "\"\\u0120h\": 260}, \"merges\": [\"h e\", \"l l\", [\"he\", \"ll\"], "
					 "\"hell o\", \"\\u0120 h\"]}}");
	else
		n += sprintf(j + n, "\"h\": 256, \"e\": 257, \"l\": 258, \"o\": 259, "
					 "\"\\u2581\": 260, \"he\": 261, \"ll\": 262, \"hell\": 263, \"hello\": 264, "
					 "\"\\u2581h\": 265}, \"merges\": [\"h e\", \"l l\", \"he ll\", \"hell o\", "
					 "\"\\u2581 h\"]}}");
	return j;
}

static Tokenizer *
json_tokenizer(const char *json)
{
	TokenizerSource src = {.kind = TOKSRC_HF, .data = json, .len = strlen(json),
	.bos_id = -1, .eos_id = -1};
	CoreError	err = {0};
	Tokenizer  *t = tok_from_source(&src, &err);

	if (t == NULL)
		die("tokenizer.json seed", err.message);
	return t;
}

/* Seeds of fuzz_tokenizer_hf, and their tokenizers' blobs for fuzz_tokenizer. */
static void
write_pretrained_seeds(void)
{
	static const char sp_normalizer[] =
		"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
		"{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]}";
	static const char split_byte_level[] =
		"{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
		"{\"Regex\": \"(?i:'s|'t)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}|\\\\s+(?!\\\\S)|\\\\s+\"}, "
		"\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"Digits\", \"individual_digits\": true}, "
		"{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}";
	struct
	{
		const char *name;
		char	   *json;
	}			seeds[] = {
		{"byte_level_gpt2", small_json(true, "null",
									   "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}", "")},
		{"byte_level_split_nfc", small_json(true, "{\"type\": \"NFC\"}", split_byte_level,
											"\"ignore_merges\": true,")},
		{"sp_prepend", small_json(false, sp_normalizer, "null", "\"byte_fallback\": true, \"unk_token\": null,")},
		{"sp_metaspace", small_json(false, "null",
									"{\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"first\", \"split\": true}",
									"\"byte_fallback\": true,")},
	};
	char		name[64];

	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
	{
		Tokenizer  *t = json_tokenizer(seeds[i].json);

		write_seed("fuzz_tokenizer_hf", seeds[i].name, seeds[i].json,
				   strlen(seeds[i].json), NULL, 0);
		snprintf(name, sizeof(name), "pretrained_%s", seeds[i].name);
		write_tokenizer(name, t);
		tok_free(t);
		free(seeds[i].json);
	}
}

/*
 * fuzz_lora's seeds: adapters of its base (fuzz_lora.h) with B as well as
 * A random, so that a training step and a merge have work to do.
 */
static void
write_lora(const char *name, int rank, float alpha, unsigned targets)
{
	Model	   *m = fuzz_lora_base();
	LoraConfig	config = {rank, alpha, targets};
	CoreError	err = {0};
	uint64_t	state = 5;
	void	   *blob;
	size_t		len;

	if (!lora_attach(m, &config, 3, &err))
		die(name, err.message);
	for (size_t i = 0; i < m->lora->n_params; i++)
		m->lora->params[i] = (float) ((splitmix64_next(&state) >> 40) * 0x1.0p-24 - 0.5);
	blob = lora_save(m, FUZZ_LORA_BASE_CHECKSUM, &len);
	if (blob == NULL)
		die(name, "out of memory");
	write_seed("fuzz_lora", name, blob, len, NULL, 0);
	free(blob);
	model_free(m);
}

int
main(int argc, char **argv)
{
	ModelConfig c;
	Tokenizer  *t;
	Student    *s;

	if (argc != 2)
	{
		fprintf(stderr, "usage: make_seeds <seeds directory>\n");
		return 2;
	}
	seeds_dir = argv[1];
	model_set_threads(1);

	t = train_tokenizer(TOK_MIN_VOCAB);
	write_tokenizer("bytes_only", t);
	tok_free(t);
	t = train_tokenizer(300);
	write_tokenizer("merges", t);
	tok_free(t);
	write_pretrained_seeds();
	write_lora("all_rank1", 1, 2.0f, LORA_ALL_TARGETS);
	write_lora("qv_rank2", 2, 16.0f, LORA_Q | LORA_V);
	write_lora("kv_down_rank4", 4, 4.0f, LORA_K | LORA_V | LORA_DOWN);

	model_config_default(&c, 16, 8, 1, 2);
	c.d_ff = 8;
	c.max_seq_len = 8;
	write_model("tied_prefix_lm", &c);
	model_config_default(&c, 12, 8, 2, 2);
	c.n_kv_heads = 1;
	c.d_ff = 12;
	c.max_seq_len = 6;
	c.tied_embeddings = false;
	c.prefix_lm = false;
	c.qkv_bias = true;
	write_model("untied_causal_gqa_bias", &c);
	write_model_chunked("untied_causal_gqa_bias", &c);
	write_prediction_image("untied_causal_gqa_bias", &c);
	model_config_default(&c, 10, 8, 1, 2);
	c.head_dim = 6;
	c.d_ff = 8;
	c.max_seq_len = 6;
	c.prefix_lm = false;
	c.logit_scale = 1.0f;
	c.rope_theta = 500000.0f;
	c.rope_scaling = (ModelRopeScaling) {ROPE_SCALING_LLAMA3, 8.0f, 1.0f, 4.0f, 4};
	write_model_chunked("head_dim_llama3", &c);
	write_prediction_image("head_dim_llama3", &c);
	model_config_default(&c, 16, 8, 1, 2);
	c.d_ff = 8;
	c.max_seq_len = 8;
	write_prediction_image("tied_prefix_lm", &c);
	write_checkpoint_seeds();

	s = trained_student();
	write_student("trained", s);
	student_free(s);
	s = tiny_student();
	write_student("tiny", s);
	student_free(s);
	write_trainer_state();
	return 0;
}
