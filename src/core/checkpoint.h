/*
 * checkpoint.h - pretrained Llama-family checkpoints read into a Model.
 *
 * Three formats, each of the "llama" and "qwen2" architectures (Qwen2 has
 * biases on q/k/v; either may tie its head to the embedding):
 *
 *   CHECKPOINT_HF       a Hugging Face directory: config.json and
 *                       model.safetensors, or shards listed by
 *                       model.safetensors.index.json; tensors in F32, F16
 *                       or BF16 (checkpoint_safetensors.c)
 *   CHECKPOINT_GGUF     one llama.cpp GGUF file (v2, v3): F32, F16, BF16,
 *                       Q8_0, Q4_K, Q6_K tensors (checkpoint_gguf.c)
 *   CHECKPOINT_LLAMA2C  one llama2.c .bin (the legacy export: 7 int32 and
 *                       float32 weights) and its tokenizer.bin
 *                       (checkpoint_llama2c.c)
 *
 * The result is the model in float32, in distill's layout (Hugging Face
 * names, rotate-half RoPE: the interleaved q/k rows of llama2.c files and
 * of GGUF "llama" files are permuted back), the dtype to store each tensor
 * in, and what the tokenizer needs (core/tokenizer_pretrained.h).  A model
 * is causal (no prefix-LM mask), with logit scale 1 and no dropout.
 *
 * Every file is untrusted: every read is checked against its length,
 * every size against overflow, and the model is allocated only once every
 * tensor was found with the right shape inside the file.  A bad file gives
 * NULL and a message naming the problem (truncated, wrong magic, unknown
 * dtype or architecture, a tensor missing, unexpected or of the wrong
 * shape, offsets past the end, no tokenizer).  Plain C; json-c for the
 * JSON of HF directories; no PostgreSQL headers.
 */
#ifndef DISTILL_CORE_CHECKPOINT_H
#define DISTILL_CORE_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/model.h"
#include "core/stop.h"
#include "core/tokenizer_pretrained.h"

typedef enum CheckpointFormat
{
	CHECKPOINT_AUTO = 0,
	CHECKPOINT_HF,
	CHECKPOINT_GGUF,
	CHECKPOINT_LLAMA2C
} CheckpointFormat;

/*
 * The caller supplies files by name (mmap'd files, or a bytea): name is ""
 * for the single weights file of GGUF / llama2.c, "tokenizer" for
 * llama2.c's tokenizer.bin, and relative names for a HF directory
 * ("config.json", "tokenizer.json", "tokenizer_config.json",
 * "generation_config.json", "model.safetensors",
 * "model.safetensors.index.json", shard names read from the index: never
 * with a "/" or starting with "."). Returns the bytes (valid until
 * checkpoint_free) or NULL; when the file is absent, NULL with err->kind
 * == CORE_OK if !required, else an INVALID_INPUT error naming the file.
 */
typedef struct CheckpointFiles
{
	void	   *ctx;
	const void *(*open) (void *ctx, const char *name, bool required,
						 size_t *len, CoreError *err);

	/*
	 * Optional (may be NULL): called once a tensor's bytes, data[0, len)
	 * inside a file open() gave, are converted and will not be read again,
	 * so that a caller that mapped the file can drop those pages and the
	 * import holds the weights once, not twice.
	 */
	void		(*done_with) (void *ctx, const void *data, size_t len);
} CheckpointFiles;

typedef struct Checkpoint
{
	Model	   *model;			/* fp32 params in distill's layout (HF
								 * names, rotate-half RoPE) */
	uint8_t    *dtypes;			/* per tensor: the dtype to store it in
								 * (ModelDtype): the source's F32/F16/BF16;
								 * F32 for dequantized Q8_0/Q4_K/Q6_K */
	TokenizerSource tokenizer;	/* pointers into the caller's files / into
								 * this struct's allocations */
	char	   *format;			/* "hf", "gguf", "llama2c" */
	char	   *architecture;	/* "llama", "qwen2" */
	char	   *source_dtype;	/* e.g. "f32", "bf16", "q8_0", "mixed
								 * (q4_k, q6_k, f32)" */
	int			context_length; /* the checkpoint's own
								 * (max_position_embeddings /
								 * context_length / seq_len) */

	/* internal: every allocation above and below, freed by checkpoint_free */
	void	  **allocations;
	int			n_allocations;
	int			allocations_room;
	const StopCheck *stop;
	const CheckpointFiles *files;
	const uint8_t *weights;		/* the file "", once opened */
	size_t		weights_len;
} Checkpoint;

/*
 * Detect from the first bytes of the single file: GGUF magic -> GGUF,
 * else LLAMA2C (HF is a directory, detected by the caller).
 */
extern CheckpointFormat checkpoint_detect(const void *data, size_t len);

/*
 * Read a checkpoint (CHECKPOINT_AUTO: detect from the file ""; a HF
 * directory must be named).  The model's max_seq_len is the smallest of
 * the checkpoint's context length, max_seq_len (when > 0) and
 * MODEL_MAX_SEQ_LEN.  stop (may be NULL) is asked between tensors.  NULL
 * with the error in err.
 */
extern Checkpoint *checkpoint_read(CheckpointFormat format,
								   const CheckpointFiles *files,
								   int max_seq_len, const StopCheck *stop,
								   CoreError *err);

/*
 * Frees everything except what the caller took (set ckpt->model = NULL to
 * keep the model, ckpt->dtypes = NULL to keep that malloc'd array).  NULL
 * ok.
 */
extern void checkpoint_free(Checkpoint *ckpt);

#endif
