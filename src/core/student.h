/*
 * student.h - the student as the rest of distill sees it: a tokenizer and a
 * model, trained from text and answering in text.
 *
 * Every training example becomes one or two sequences of the same stack
 * (DESIGN.md: "predict: <input>" -> label, "explain: <input>" -> rationale):
 *
 *     <bos> "predict: " input <sep> label <eos>
 *     <bos> "explain: " input <sep> rationale <eos>
 *
 * The part up to and including <sep> is the prefix (bidirectional under the
 * prefix-LM mask); the loss is on the target after it.  With per-batch
 * means per task, L = L_label + rationale_weight * L_rationale.
 *
 * Training is driven by the caller, one bounded unit of work at a time, so
 * that a PostgreSQL backend can check for interrupts and write progress
 * between units without any callback into the database:
 *
 *     StudentTrainer *t = trainer_create(&params, examples, n, labels, n_labels, err, len);
 *     TrainProgress p;
 *     while (trainer_advance(t, &p) != TRAIN_DONE)
 *         { check for interrupts; log p; }
 *     Student *s = trainer_take_best(t);
 *     trainer_free(t);
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
#include "core/tokenizer.h"

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
	int			memory_mb;		/* training buffers (activations, gradients);
								 * a batch needing more runs as micro-batches */
} StudentParams;

/* One training row.  rationale and choices may be NULL. */
typedef struct StudentExample
{
	const char *input;
	const char *label;
	const char *rationale;
	const char *const *choices; /* per-row candidates for validation */
	int			n_choices;
} StudentExample;

typedef struct Student
{
	Tokenizer  *tokenizer;
	Model	   *model;
	int			max_input_tokens;
	int			max_target_tokens;
} Student;

typedef enum TrainEvent
{
	TRAIN_STEP,					/* a logging step: losses, lr, tokens/s */
	TRAIN_EPOCH,				/* an epoch ended: val_accuracy too */
	TRAIN_WORKING,				/* work done, nothing to log */
	TRAIN_DONE
} TrainEvent;

typedef struct TrainProgress
{
	int			step;			/* optimizer steps so far */
	int			total_steps;
	int			epoch;			/* 1-based epoch the step belongs to */
	double		label_loss;		/* TRAIN_STEP: mean over the steps since the
								 * last log; TRAIN_EPOCH: over the epoch */
	double		rationale_loss; /* likewise; NaN when no rationales */
	double		lr;
	double		tokens_per_second;	/* target + prefix tokens processed (no
									 * padding) per second inside the steps */
	double		val_accuracy;	/* at TRAIN_EPOCH; NaN without validation */
	bool		best;			/* at TRAIN_EPOCH: the best epoch so far */
	int			skipped_steps;	/* so far: steps not applied because the
								 * gradient was not finite */
} TrainProgress;

typedef struct StudentTrainer StudentTrainer;

extern void student_params_default(StudentParams *params);
extern bool student_params_validate(const StudentParams *params,
									char *errbuf, size_t errlen);

/*
 * Split off validation_fraction of the examples (by seed; at least one
 * when the fraction is not 0), train the tokenizer on the training rows'
 * inputs, labels and rationales (those trained on: rationale_weight > 0)
 * and the label set, tokenize, build the model.
 * labels (may be NULL) is the task's closed label set, used for validation
 * by scoring; otherwise an example's choices, else greedy decoding and an
 * exact match.  Returns NULL with a message on bad input or no memory.
 * Nothing in examples or labels is referenced after return.
 */
extern StudentTrainer *trainer_create(const StudentParams *params,
									  const StudentExample *examples,
									  int n_examples,
									  const char *const *labels, int n_labels,
									  char *errbuf, size_t errlen);

/*
 * Do one bounded unit of work (a step, or part of a validation pass).
 * Every event fills progress (step, total_steps, epoch, lr,
 * skipped_steps); TRAIN_STEP and TRAIN_EPOCH add the losses and speed,
 * TRAIN_EPOCH the accuracy.
 */
extern TrainEvent trainer_advance(StudentTrainer *trainer,
								  TrainProgress *progress);

/*
 * A step can take seconds at large sizes, so the trainer also asks
 * should_stop(arg) between micro-batches (at most a few thousand tokens)
 * and between validation rows; when it answers true, training ends
 * unfinished (trainer_error() says "training was interrupted") and the
 * next trainer_advance() returns TRAIN_DONE.  The check must only look,
 * never jump out: a PostgreSQL backend passes a function that reads its
 * pending-interrupt flags, then handles the interrupt itself.
 */
extern void trainer_set_stop_check(StudentTrainer *trainer,
								   bool (*should_stop) (void *arg), void *arg);

/*
 * After TRAIN_DONE: NULL when all epochs ran, else why training stopped
 * early (out of memory during validation, an interrupt); the best epoch so
 * far can still be taken.
 */
extern const char *trainer_error(const StudentTrainer *trainer);

/*
 * Counts for the caller's logs and the models table (rationale examples:
 * training rows trained on with a rationale).  The best accuracy is NaN
 * without validation; the best epoch is 0 until an epoch has ended.
 */
extern int	trainer_train_examples(const StudentTrainer *trainer);
extern int	trainer_validation_examples(const StudentTrainer *trainer);
extern int	trainer_rationale_examples(const StudentTrainer *trainer);
extern double trainer_best_accuracy(const StudentTrainer *trainer);
extern int	trainer_best_epoch(const StudentTrainer *trainer);

/* The model in training (its config, n_params); NULL once taken. */
extern const Model *trainer_model(const StudentTrainer *trainer);

/* Sequences per forward pass (a batch beyond memory_mb runs as several). */
extern int	trainer_micro_batch_size(const StudentTrainer *trainer);

/* Indices into examples of the validation rows, ascending. */
extern const int *trainer_validation_index(const StudentTrainer *trainer);

/*
 * The best epoch's student (the last without validation; the current
 * weights if no epoch has ended); caller owns it.  It ends the training:
 * the trainer gives its model and tokenizer away, later trainer_advance()
 * calls return TRAIN_DONE and a second call returns NULL (as does running
 * out of memory for the Student struct).
 */
extern Student *trainer_take_best(StudentTrainer *trainer);
extern void trainer_free(StudentTrainer *trainer);

/*
 * Prediction.  student_choose() scores each candidate (sum of token
 * log-probabilities of candidate + <eos> after "predict: <input>"), writes
 * softmax probabilities to probs (may be NULL) and returns the index of the
 * best, or -1 with a message.  student_generate() decodes greedily after
 * "<task>: <input>" ("predict" or "explain"), at most max_target_tokens, and
 * returns a malloc'd string, or NULL with a message; the string is valid
 * UTF-8 without NUL (bytes that form no character are dropped: a
 * byte-level model can emit them, or stop inside a character).  Inputs
 * and candidates are cut like the training sequences: the first
 * max_input_tokens, the first max_target_tokens.
 */
extern int	student_choose(const Student *student, const char *input,
						   const char *const *candidates, int n_candidates,
						   double *probs, char *errbuf, size_t errlen);
extern char *student_generate(const Student *student, const char *task,
							  const char *input, char *errbuf, size_t errlen);

/*
 * The tokens the model reads for input under task "predict" or "explain":
 * <bos>, the task's tag, the input cut to max_input_tokens, <sep>.
 * Returns their count and a malloc'd array in *ids, or -1 with a message.
 */
extern int	student_prefix_tokens(const Student *student, const char *task,
								  const char *input, int32_t **ids,
								  char *errbuf, size_t errlen);

/*
 * A token as readable text (malloc'd; NULL when out of memory): its bytes
 * when they are valid UTF-8 by themselves, else each byte as <0xNN>;
 * special tokens as <bos>, <eos>, <sep> and <pad>.
 */
extern char *student_token_text(const Student *student, int32_t id);

/*
 * Serialization: the tokenizer and the weights are separate blobs (two
 * bytea columns); max_input_tokens and max_target_tokens travel in the
 * weights blob's header.  student_load() validates both and returns NULL
 * with a message for truncated, corrupt or foreign bytes.
 */
extern void *student_save_tokenizer(const Student *student, size_t *len);
extern void *student_save_weights(const Student *student, size_t *len);
extern Student *student_load(const void *tokenizer, size_t tokenizer_len,
							 const void *weights, size_t weights_len,
							 char *errbuf, size_t errlen);
extern void student_free(Student *student);

/* Does a free-text answer (already trimmed) count as the label? */
extern bool answer_matches(AnswerMetric metric, const char *answer,
						   const char *label);

#endif
