/*
 * student.h - the student as the rest of distill sees it: a tokenizer and a
 * model, trained from text and answering in text.
 *
 * Every training example becomes one or two sequences of the same stack
 * (docs/training.md: "predict: <input>" -> label, "explain: <input>" ->
 * rationale):
 *
 *     <bos> "predict: " input <sep> label <eos>
 *     <bos> "explain: " input <sep> rationale <eos>
 *
 * The part up to and including <sep> is the prefix (bidirectional under the
 * prefix-LM mask); the loss is on the target after it.  With per-batch
 * means per task, L = L_label + rationale_weight * L_rationale.  Training
 * is in trainer.h.
 *
 * Plain C, no PostgreSQL headers; everything malloc'd is reachable from the
 * handle and released by its *_free(), which may be called at any point.
 */
#ifndef DISTILL_CORE_STUDENT_H
#define DISTILL_CORE_STUDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "core/stop.h"
#include "core/tokenizer.h"

/*
 * The most candidates one prediction scores: a label set, a row's choices
 * or the candidates of a call (student_choose()).  Each costs a forward
 * pass over its tokens, so the bound keeps a call's work bounded.
 */
#define STUDENT_MAX_CANDIDATES 1000

/*
 * The largest weights blob student_save_weights() may produce: a stored
 * model is a bytea, which stops at 1 GB, and shares its row with the
 * tokenizer.  student_params_validate() refuses a model that would not fit
 * before any training.
 */
#define STUDENT_MAX_WEIGHTS_BYTES ((size_t) 1000 << 20)

/*
 * How a free-text answer is judged against its label.  (An answer chosen
 * from a label set or from per-row choices is right when it is the label.)
 */
typedef enum AnswerMetric
{
	METRIC_EXACT,				/* the same text */
	METRIC_EQUATION				/* arithmetic expressions of equal value
								 * (equation.h), as SVAMP is scored */
} AnswerMetric;

/* Hyperparameters; student_params_default() gives the documented defaults. */
typedef struct StudentParams
{
	int			d_model;
	int			n_layers;
	int			n_heads;
	int			d_ff;			/* 0 = about 8/3 d_model, rounded up to a
								 * multiple of 32 (model_config_default) */
	int			vocab_size;		/* BPE vocabulary trained on the corpus */
	int			epochs;
	int			batch_size;		/* examples per step */
	int			max_input_tokens;	/* input tokens kept (the first ones) */
	int			max_target_tokens;	/* label / rationale tokens kept */
	double		lr;
	double		weight_decay;
	double		warmup_fraction;	/* of all steps */
	double		grad_clip;
	double		dropout;
	double		validation_fraction;	/* held out; 0 = none, keep the last epoch */
	double		rationale_weight;	/* lambda; 0 = label only */
	AnswerMetric validation_metric; /* for free-text validation answers */
	bool		prefix_lm;
	bool		tied_embeddings;
	uint64_t	seed;
	int			log_every;		/* TRAIN_STEP progress every this many steps */
	int			lora_rank;		/* on a base: LoRA adapters of this rank over
								 * the frozen base (lora.h); 0 = fine-tune
								 * every weight */
	double		lora_alpha;		/* their scale is lora_alpha / lora_rank;
								 * 0 = 2 * lora_rank */
	unsigned	lora_targets;	/* LORA_Q | ... (lora.h) */
	int			memory_mb;		/* all the memory training may take: the
								 * model's weights, the gradients, AdamW's
								 * state and the best epoch's copy of what
								 * is trained, the tokenizer's training,
								 * the tokenized examples and the batch
								 * buffers (activations); a batch needing
								 * more runs as micro-batches.  0: what the
								 * model's state needs plus work_mem_mb */
	int			work_mem_mb;	/* with memory_mb 0: the memory beside the
								 * model's state */
} StudentParams;

typedef struct Student
{
	Tokenizer  *tokenizer;
	Model	   *model;
	int			max_input_tokens;
	int			max_target_tokens;
	bool		zero_shot;		/* an imported model used as it is: it reads
								 * its prompt template, not task tags
								 * (student_pretrained.c) */
	char	   *prompt_template;	/* an imported model's zero-shot prompt,
									 * "{input}" standing for the input
									 * (malloc'd; NULL: "{input}") */
	StopCheck	stop;			/* asked between groups of candidates and
								 * between generated tokens; empty after
								 * student_load(): the caller sets it */
} Student;

extern void student_params_default(StudentParams *params);

/*
 * The defaults of fine-tuning a pretrained base (trainer_create_on_base()):
 * those above but for lr 1e-4, 3 epochs, batches of 8, no dropout and a
 * causal mask, as the base was trained with.
 */
extern void student_params_default_for_base(StudentParams *params);

/*
 * Every field in its range (the real ones finite), and a model small
 * enough to store: its weights at the largest vocabulary asked for must
 * serialize within STUDENT_MAX_WEIGHTS_BYTES.
 */
extern bool student_params_validate(const StudentParams *params,
									CoreError *err);


/*
 * Prediction.  student_choose() scores each candidate (sum of token
 * log-probabilities of candidate + <eos> after "predict: <input>"), writes
 * softmax probabilities to probs (may be NULL; finite, summing to 1) and
 * returns the index of the best, or -1 with err: more than
 * STUDENT_MAX_CANDIDATES candidates (CORE_ERR_LIMIT), scores that are not
 * finite numbers (weights that overflow: CORE_ERR_CORRUPT), a stop, no
 * memory.  It encodes and scores the
 * candidates a group at a time, so its memory does not grow with their
 * number.  student_generate() decodes greedily after "<task>: <input>"
 * ("predict" or "explain"), at most max_target_tokens, and returns a
 * malloc'd string, or NULL with err; the string is valid UTF-8
 * without NUL (bytes that form no character are dropped: a byte-level
 * model can emit them, or stop inside a character).  Inputs and
 * candidates are cut like the training sequences: the first
 * max_input_tokens, the first max_target_tokens; only the bytes those
 * tokens need are encoded (tok_encode_prefix()), so a long input costs no
 * more than a short one.  Both ask student->stop as they go and fail with
 * CORE_ERR_INTERRUPTED when it says so.
 */
extern int	student_choose(const Student *student, const char *input,
						   const char *const *candidates, int n_candidates,
						   double *probs, CoreError *err);
extern char *student_generate(const Student *student, const char *task,
							  const char *input, CoreError *err);

/*
 * The tokens the model reads for input under task "predict" or "explain":
 * <bos>, the task's tag, the input cut to max_input_tokens, <sep>.
 * Returns their count and a malloc'd array in *ids, or -1 with a message.
 */
extern int	student_prefix_tokens(const Student *student, const char *task,
								  const char *input, int32_t **ids,
								  CoreError *err);

/*
 * A token as readable text (malloc'd; NULL when out of memory): its bytes
 * when they are valid UTF-8 by themselves, else each byte as <0xNN>;
 * special tokens as <bos>, <eos>, <sep> and <pad>.
 */
extern char *student_token_text(const Student *student, int32_t id);

/*
 * Serialization: the tokenizer and the weights are separate blobs (two
 * bytea columns); max_input_tokens and max_target_tokens travel in the
 * weights' header.  Loading validates everything and fails with
 * CORE_ERR_CORRUPT for truncated, corrupt or foreign bytes, weights that
 * are not finite numbers among them.
 *
 * Weights are stored as a header and a stream of data bytes, which may be
 * cut into chunks of any size (student_io.c):
 *
 *     header = student_save_header(student, dtypes, crc, &len);
 *         with the data model_data_bytes() / model_data_read() (model_io.h)
 *         and crc their CRC-32C;
 *     loader = student_load_begin(tokenizer, len, header, len, err);
 *     per chunk: student_load_feed(loader, chunk, len, err);
 *     student = student_load_finish(loader, err);
 *
 * dtypes gives each tensor's stored type (NULL: all float32).  A student
 * loaded so is for prediction only: it keeps its weights once, packed
 * (model_pack_for_prediction_only()), and cannot be saved or trained
 * again.  student_load_finish_trainable() keeps them plain instead, for
 * a base to fine-tune (trainer_create_on_base()).  The older form, the whole model in the weights blob, still loads
 * with
 * student_load() (student_weights_chunked() tells which it is) and is
 * still written by student_save_weights() for the tests of that path.
 */
typedef struct StudentLoader StudentLoader;

extern void *student_save_tokenizer(const Student *student, size_t *len);
extern void *student_save_header(const Student *student, const uint8_t *dtypes,
								 uint32_t data_crc, size_t *len);
extern bool student_weights_chunked(const void *weights, size_t len);
extern StudentLoader *student_load_begin(const void *tokenizer,
										 size_t tokenizer_len,
										 const void *header, size_t header_len,
										 CoreError *err);
extern bool student_load_feed(StudentLoader *loader, const void *data,
							  size_t len, CoreError *err);
extern Student *student_load_finish(StudentLoader *loader, CoreError *err);
extern Student *student_load_finish_trainable(StudentLoader *loader,
											  CoreError *err);
extern void student_loader_free(StudentLoader *loader);

/*
 * A student of a stored tokenizer and weights whose model was made
 * elsewhere, from the same weights (a prediction image, model_image.h):
 * the weights' header gives the limits, and the model must agree with the
 * tokenizer.  Takes model over, also on failure.  A checksum of the stored
 * model, which tells one version's weights from another's:
 * student_weights_checksum() (0 for bytes too short to be weights).
 */
extern Student *student_load_with_model(const void *tokenizer,
										size_t tokenizer_len,
										const void *weights,
										size_t weights_len, Model *model,
										CoreError *err);
extern uint32_t student_weights_checksum(const void *weights, size_t len);

/*
 * A student fine-tuned with LoRA adapters (StudentParams.lora_rank) is
 * stored as the adapters alone, over its base's stored weights:
 *
 *     data = student_save_adapters(student, base_checksum, &header,
 *                                  &header_len, &len);
 *         (base_checksum: student_weights_checksum() of the base's weights,
 *          below: it names that exact version of the base)
 *     to load: base = the base's student, student_load_finish_trainable();
 *     student = student_apply_adapters(base, header, header_len, data, len,
 *                                      base_checksum, err);
 *
 * student_apply_adapters() checks the adapters belong to that base, merges
 * them into its weights (lora_merge()) and packs it for prediction only;
 * it takes base over, also on failure.  student_weights_are_adapters()
 * tells such weights from others, which student_load_begin() refuses.
 */
extern bool student_has_adapters(const Student *student);
extern bool student_weights_are_adapters(const void *weights, size_t len);
extern void *student_save_adapters(const Student *student,
								   uint32_t base_checksum, void **header,
								   size_t *header_len, size_t *len);
extern Student *student_apply_adapters(Student *base, const void *header,
									   size_t header_len, const void *adapters,
									   size_t len, uint32_t base_checksum,
									   CoreError *err);

extern void *student_save_weights(const Student *student, size_t *len);
extern Student *student_load(const void *tokenizer, size_t tokenizer_len,
							 const void *weights, size_t weights_len,
							 CoreError *err);
extern void student_free(Student *student);

/*
 * Imported pretrained models (student_pretrained.c).
 *
 * student_from_checkpoint() makes a student of a checkpoint's tokenizer
 * and model (which it takes over, also on failure): inputs are cut to
 * half the model's context, candidates and answers to STUDENT_MAX_TARGET_TOKENS
 * or a quarter of it.  Its student_choose() scores " <candidate>" after
 * the prompt template with the input in it (no task tag, no <sep>, no
 * <eos>), as a base language model reads text; student_generate()
 * continues that prompt.
 *
 * student_continue() returns the greedy continuation of prompt, without
 * the prompt: <bos> first when the tokenizer adds one, at most max_tokens
 * tokens, stopping at <eos>, at <bos> (as llama2.c does), or at the end of
 * the model's context.  student_token_ids() gives the ids of text without
 * special tokens; invalid UTF-8 is CORE_ERR_INVALID_INPUT.
 */
extern Student *student_from_checkpoint(Tokenizer *tokenizer, Model *model,
										CoreError *err);
extern char *student_continue(const Student *student, const char *prompt,
							  int max_tokens, CoreError *err);
extern int	student_token_ids(const Student *student, const char *text,
							  int32_t **ids, CoreError *err);

/* Bytes of memory a loaded student holds (tokenizer, weights, packing). */
extern size_t student_memory_bytes(const Student *student);

/* Does a free-text answer (already trimmed) count as the label? */
extern bool answer_matches(AnswerMetric metric, const char *answer,
						   const char *label);

#endif
