/*
 * trainer.h - training a student (student.h) from examples.
 *
 * Training is driven by the caller, one bounded unit of work at a time, so
 * that a PostgreSQL backend can check for interrupts and write progress
 * between units without any callback into the database:
 *
 *     StopCheck stop = {should_stop, arg};
 *     StudentTrainer *t = trainer_create(&params, examples, n, labels, n_labels,
 *                                        &stop, &err);
 *     TrainProgress p;
 *     while (trainer_advance(t, &p) != TRAIN_DONE)
 *         { check for interrupts; log p; }
 *     Student *s = trainer_take_best(t);
 *     trainer_free(t);
 *
 * Plain C, no PostgreSQL headers; everything malloc'd is reachable from the
 * handle and released by trainer_free(), which may be called at any point.
 */
#ifndef DISTILL_CORE_TRAINER_H
#define DISTILL_CORE_TRAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "core/stop.h"
#include "core/student.h"

/* One training row.  rationale and choices may be NULL. */
typedef struct StudentExample
{
	const char *input;
	const char *label;
	const char *rationale;
	const char *const *choices; /* per-row candidates for validation */
	int			n_choices;
} StudentExample;

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
	bool		validating;		/* the unit of work was validation */
	int			skipped_steps;	/* so far: steps not applied because the
								 * gradient was not finite */
} TrainProgress;

typedef struct StudentTrainer StudentTrainer;

/*
 * Split off validation_fraction of the examples (by seed; at least one
 * when the fraction is not 0), train the tokenizer on the training rows'
 * inputs, labels and rationales (those trained on: rationale_weight > 0)
 * and the label set, tokenize, build the model.
 * labels (may be NULL) is the task's closed label set, used for validation
 * by scoring; otherwise an example's choices, else greedy decoding and an
 * exact match.  A label set or a row's choices hold at most
 * STUDENT_MAX_CANDIDATES.
 *
 * All of this is bounded: the tokenizer's training and the tokenized
 * examples stay within memory_mb (else NULL with the figure needed), and
 * stop (may be NULL; see stop.h) is asked all along, as it is later
 * between micro-batches and validation rows.  Returns NULL with err on
 * bad input (CORE_ERR_INVALID_INPUT), too little memory_mb
 * (CORE_ERR_LIMIT), no memory or a stop (CORE_ERR_INTERRUPTED, "training
 * was interrupted").  Nothing in examples, labels or stop is referenced after
 * return, except stop->should_stop and stop->arg.
 */
extern StudentTrainer *trainer_create(const StudentParams *params,
									  const StudentExample *examples,
									  int n_examples,
									  const char *const *labels, int n_labels,
									  const StopCheck *stop,
									  CoreError *err);

/*
 * The same, fine-tuning a pretrained base instead of training a tokenizer
 * and a model from scratch: the student keeps the base's tokenizer and
 * architecture (the params d_model, n_layers, n_heads, d_ff, vocab_size
 * and tied_embeddings are not used; dropout and prefix_lm are) and writes
 * its task tags as plain text in the base's vocabulary (student_internal.h).
 * base must have its plain weights (student_from_checkpoint(), or
 * student_load_finish_trainable()); the trainer takes it over, also on
 * failure.  student_params_default_for_base() gives the defaults that suit
 * fine-tuning.
 */
extern StudentTrainer *trainer_create_on_base(const StudentParams *params,
											  Student *base,
											  const StudentExample *examples,
											  int n_examples,
											  const char *const *labels,
											  int n_labels,
											  const StopCheck *stop,
											  CoreError *err);

/*
 * Do one bounded unit of work (a step, or part of a validation pass).
 * Every event fills progress (step, total_steps, epoch, lr,
 * skipped_steps); TRAIN_STEP and TRAIN_EPOCH add the losses and speed,
 * TRAIN_EPOCH the accuracy.
 */
extern TrainEvent trainer_advance(StudentTrainer *trainer,
								  TrainProgress *progress);

/*
 * After TRAIN_DONE: NULL when all epochs ran, else why training stopped
 * early (out of memory during validation, a stop: CORE_ERR_INTERRUPTED); the best epoch so far can still be taken.  A step can
 * take seconds at large sizes, so the trainer asks the stop check between
 * micro-batches (at most a few thousand tokens) and between validation
 * rows; the next trainer_advance() then returns TRAIN_DONE.
 */
extern const CoreError *trainer_error(const StudentTrainer *trainer);

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

/* The memory training may take, in MB: memory_mb, or what 0 stood for. */
extern int	trainer_memory_mb(const StudentTrainer *trainer);

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

/* Where training stands: optimizer steps done, whole epochs done. */
extern int	trainer_steps_done(const StudentTrainer *trainer);
extern int	trainer_epochs_done(const StudentTrainer *trainer);

/*
 * Saving where training stands, to go on from there in another process
 * (train_state.c).  The state is everything a trainer built from the same
 * params and examples needs to continue as if it had never stopped: the
 * weights that train (all of them; with LoRA, the adapters', the frozen
 * base being the caller's to provide again), AdamW's moments and step
 * count, the best epoch's weights and accuracy, the epoch and step
 * counters, the shuffle and dropout generators, the skipped steps, the
 * meters of the logged means.  With one thread, a trainer restored from
 * a state saved after epoch k ends with the same bits as one that ran all
 * epochs.
 *
 * It is a stream of named sections (a header, then each section's name,
 * size, bytes and CRC-32C, then a CRC-32C of the headers and section
 * CRCs), written and read through the caller's function in pieces of at
 * most TRAINER_STATE_PIECE bytes, so that a state of gigabytes never sits
 * in memory.  It names the model configuration, the training parameters
 * (all but memory_mb, work_mem_mb and log_every, which change no result)
 * and a fingerprint of the tokenized examples that it belongs to.
 *
 * trainer_save_state() may be called between any two trainer_advance()
 * calls until training ends; the trainer is unchanged.  write returns
 * false with err to give up.
 *
 * trainer_check_state() reads a state through read and says whether
 * trainer_restore_state() would take it: false with err when it is of
 * another model (CORE_ERR_INVALID_INPUT: its message names the first
 * configuration value, parameter or count of the examples that differs,
 * or the fingerprint), damaged or truncated (CORE_ERR_CORRUPT), or read
 * fails.  It changes nothing.  trainer_restore_state() does the same
 * checks while it restores, into a trainer just made by trainer_create()
 * or trainer_create_on_base() with the same params and examples; when it
 * fails past the first checks, the trainer is left half restored: it
 * returns TRAIN_DONE with that error (trainer_error()) and must be freed.
 * Both ask the stop check between pieces.
 *
 * read fills buf with len bytes and returns len, or fewer only at the
 * end of the state, or -1 with err when it fails.
 */
#define TRAINER_STATE_PIECE ((size_t) 1 << 20)

typedef bool (*TrainerStateWrite) (void *ctx, const void *data, size_t len,
								   CoreError *err);
typedef int64_t (*TrainerStateRead) (void *ctx, void *buf, size_t len,
									 CoreError *err);

extern bool trainer_save_state(const StudentTrainer *trainer,
							   TrainerStateWrite write, void *ctx,
							   CoreError *err);
extern bool trainer_check_state(const StudentTrainer *trainer,
								TrainerStateRead read, void *ctx,
								CoreError *err);
extern bool trainer_restore_state(StudentTrainer *trainer,
								  TrainerStateRead read, void *ctx,
								  CoreError *err);

/* Bytes trainer_save_state() would write now. */
extern uint64_t trainer_state_bytes(const StudentTrainer *trainer);

#endif
