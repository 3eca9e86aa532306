/*
 * fuzz_checkpoint.h - what fuzz_gguf, fuzz_safetensors and fuzz_llama2c
 * share: files served from the input by name, and the checks on a
 * checkpoint that loads (core/checkpoint.h).
 */
#ifndef DISTILL_FUZZ_CHECKPOINT_H
#define DISTILL_FUZZ_CHECKPOINT_H

#include "fuzz.h"

#include "core/checkpoint.h"
#include "core/model_io.h"

/* Longest context the targets give a model: keeps the tables small. */
#define FUZZ_MAX_SEQ 8

typedef struct FuzzFile
{
	const char *name;
	const uint8_t *data;
	size_t		len;
} FuzzFile;

typedef struct FuzzDir
{
	FuzzFile	files[4];
	int			n;
} FuzzDir;

static const void *
fuzz_open(void *ctx, const char *name, bool required, size_t *len,
		  CoreError *err)
{
	FuzzDir    *dir = ctx;

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

static bool
inside(const void *p, size_t n, const FuzzDir *dir)
{
	for (int i = 0; i < dir->n; i++)
		if ((const uint8_t *) p >= dir->files[i].data &&
			n <= dir->files[i].len &&
			(const uint8_t *) p - dir->files[i].data <= (ptrdiff_t) (dir->files[i].len - n))
			return true;
	return false;
}

/* A loaded checkpoint is consistent, and its model runs. */
static void
fuzz_check_checkpoint(const Checkpoint *ckpt, const FuzzDir *dir)
{
	const Model *m = ckpt->model;
	const TokenizerVocab *v = &ckpt->tokenizer.vocab;
	int32_t		prefix[2] = {0, m->config.vocab_size - 1};
	int32_t		one[1] = {1 % m->config.vocab_size};
	const int32_t *cands[1] = {one};
	int			lens[1] = {1};
	double		score;
	int32_t		out[2];
	CoreError	err = {0};

	FUZZ_CHECK(m->config.max_seq_len >= 2 && m->config.max_seq_len <= FUZZ_MAX_SEQ,
			   "max_seq_len %d", m->config.max_seq_len);
	FUZZ_CHECK(ckpt->tokenizer.vocab_size == m->config.vocab_size, "vocab_size");
	for (int i = 0; i < m->n_tensors; i++)
		FUZZ_CHECK(ckpt->dtypes[i] >= MODEL_DTYPE_F32 && ckpt->dtypes[i] <= MODEL_DTYPE_BF16,
				   "dtype %d", ckpt->dtypes[i]);
	FUZZ_CHECK(model_data_bytes(m, ckpt->dtypes) > 0, "no data");
	for (int i = 0; i < v->n_tokens; i++)
		FUZZ_CHECK(inside(v->tokens[i], v->token_lens[i], dir), "token %d outside the file", i);
	for (int i = 0; i < v->n_merges; i++)
		FUZZ_CHECK(inside(v->merges[i], v->merge_lens[i], dir), "merge %d outside the file", i);
	FUZZ_CHECK(model_score_candidates(m, prefix, 1, cands, lens, 1, &score, &err),
			   "scoring: %s", err.message);
	FUZZ_CHECK(model_generate_greedy(m, prefix, 2, 2, -1, out, NULL, &err) >= 0,
			   "generating: %s", err.message);
}

/* Read dir as format; check what loads, and that a failure says why. */
static void
fuzz_read(CheckpointFormat format, FuzzDir *dir)
{
	CheckpointFiles files = {dir, fuzz_open, NULL};
	CoreError	err = {0};
	Checkpoint *ckpt = checkpoint_read(format, &files, FUZZ_MAX_SEQ, NULL, &err);

	if (ckpt == NULL)
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
	else
		fuzz_check_checkpoint(ckpt, dir);
	checkpoint_free(ckpt);
}

#endif
