/*
 * checkpoint_internal.h - what the checkpoint readers share
 * (checkpoint.c): each reader parses its format into a config and a list
 * of source tensors named in Hugging Face terms; ckpt_build() checks the
 * list against the tensor table the config implies, then allocates the
 * model and converts each tensor into it.
 */
#ifndef DISTILL_CORE_CHECKPOINT_INTERNAL_H
#define DISTILL_CORE_CHECKPOINT_INTERNAL_H

#include "core/checkpoint.h"
#include "core/dequant.h"

/* Longest tensor name of a source kept for messages. */
#define CKPT_SOURCE_NAME_LEN 96

typedef struct SourceTensor
{
	char		hf_name[MODEL_TENSOR_NAME_LEN]; /* "" when it maps to none */
	char		source_name[CKPT_SOURCE_NAME_LEN];	/* as the file names it */
	DequantType type;
	int			ndim;			/* 1..4 */
	int64_t		shape[4];		/* Hugging Face order: [out, in] */
	const uint8_t *data;		/* inside the file */
	uint64_t	bytes;			/* what the file holds for it */
} SourceTensor;

/* What a reader found, for ckpt_build(). */
typedef struct CheckpointPlan
{
	ModelConfig config;			/* max_seq_len is set by ckpt_build() */
	int			context_length;
	bool		interleaved_rope;	/* q/k rows pair (2i, 2i+1): permute */
	SourceTensor *tensors;
	int			n_tensors;
} CheckpointPlan;

/* An allocation freed by checkpoint_free(); NULL with a message if none. */
extern void *ckpt_alloc(Checkpoint *ckpt, size_t size, CoreError *err);
extern char *ckpt_strndup(Checkpoint *ckpt, const char *s, size_t len,
						  CoreError *err);

/*
 * A config with distill's settings for a pretrained causal model: no
 * prefix-LM, no dropout, logit scale 1.
 */
extern void ckpt_config_init(ModelConfig *config);

/*
 * Check plan's tensors against the table of its config (each present
 * once, of the right shape, its bytes matching its shape and type), then
 * create ckpt->model with max_seq_len the smallest of the context length,
 * max_seq_len (when > 0) and MODEL_MAX_SEQ_LEN, convert every tensor, and
 * fill ckpt->dtypes and ckpt->source_dtype.
 */
extern bool ckpt_build(Checkpoint *ckpt, CheckpointPlan *plan,
					   int max_seq_len, CoreError *err);

/* The readers: fill ckpt (format, architecture, tokenizer) and build. */
extern bool ckpt_read_gguf(Checkpoint *ckpt, const CheckpointFiles *files,
						   int max_seq_len, CoreError *err);
extern bool ckpt_read_hf(Checkpoint *ckpt, const CheckpointFiles *files,
						 int max_seq_len, CoreError *err);
extern bool ckpt_read_llama2c(Checkpoint *ckpt, const CheckpointFiles *files,
							  int max_seq_len, CoreError *err);

/* Open a file through files, with a message when a required one is absent. */
extern const uint8_t *ckpt_open(const CheckpointFiles *files, const char *name,
								bool required, size_t *len, CoreError *err);
/* The weights file "" (opened once). */
extern const uint8_t *ckpt_open_weights(Checkpoint *ckpt,
										const CheckpointFiles *files,
										size_t *len, CoreError *err);
/* ckpt->format and ckpt->architecture. */
extern bool ckpt_set_names(Checkpoint *ckpt, const char *format,
						   const char *architecture, CoreError *err);

#endif
