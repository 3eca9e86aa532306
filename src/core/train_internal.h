/*
 * train_internal.h - what the student trainer's files share: the
 * StudentTrainer struct, its rows and sequences, and the steps each file
 * offers the others.  Not for other modules: they use trainer.h.
 *
 *   train.c        trainer_create() and the model and buffers it plans,
 *                  the results, trainer_free()
 *   train_data.c   examples to token rows: the split, the tokenizer's
 *                  training, tokenizing, validation rows
 *   train_batch.c  a step's sequences as micro-batches, forward and backward
 *   train_loop.c   trainer_advance(): steps, validation, epochs
 *   train_state.c  where training stands, saved and restored
 */
#ifndef DISTILL_CORE_TRAIN_INTERNAL_H
#define DISTILL_CORE_TRAIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/lora.h"
#include "core/optim.h"
#include "core/trainer.h"

/* A run of token ids in the trainer's pool. */
typedef struct Span
{
	size_t		offset;
	int			len;
} Span;

typedef struct TrainRow
{
	Span		input;			/* the first max_input_tokens */
	Span		label;			/* target tokens, then <eos> */
	Span		rationale;		/* likewise; len 0 = none (or lambda = 0) */
} TrainRow;

/*
 * A validation row is answered by scoring the task's label set, else its
 * own choices, else by greedy decoding.  Candidates are distinct strings,
 * so that a right answer listed twice is still one right answer.
 */
typedef struct ValidRow
{
	Span		input;
	Span	   *choices;		/* its distinct choices, when they are used */
	int			n_choices;
	int			gold;			/* index of the label among the candidates;
								 * -1 when it is not one of them */
	char	   *label;			/* the label without surrounding whitespace,
								 * when decoding */
} ValidRow;

/* Bytes of the model's state while training (train.c: state_bytes()). */
typedef struct StateBytes
{
	size_t		weights;
	size_t		grads;
	size_t		optimizer;
	size_t		best;
} StateBytes;

/* One sequence of a batch: a training row with one of its targets. */
typedef struct Sequence
{
	const TrainRow *row;
	bool		explain;		/* the rationale, else the label */
	int			prefix_len;
	int			len;
	int			ordinal;		/* position before sorting, a tie-breaker */
} Sequence;

typedef enum Phase
{
	PHASE_STEPS,
	PHASE_VALIDATION,
	PHASE_EPOCH_END,
	PHASE_DONE
} Phase;

/* Sums over a run of steps, for the means TrainProgress reports. */
typedef struct Meter
{
	double		label_loss;
	int			label_steps;
	double		rationale_loss;
	int			rationale_steps;
	double		tokens;
	double		seconds;
} Meter;

struct StudentTrainer
{
	StudentParams params;
	Tokenizer  *tokenizer;
	Model	   *model;
	LoraConfig	lora;			/* rank 0: every weight is trained */
	Optimizer  *optim;

	/* every Span points into this */
	int32_t    *pool;
	size_t		pool_used;
	size_t		pool_size;

	Span		tag[2];			/* "predict: ", "explain: " */
	TrainRow   *train;
	int			n_train;
	ValidRow   *valid;
	int			n_valid;
	int		   *valid_index;	/* example index of each validation row */
	Span	   *label_set;		/* the task's distinct labels, or NULL */
	int			n_label_set;

	/* batches */
	int		   *order;			/* training rows in this epoch's order */
	Sequence   *seqs;			/* of the current step */
	int			micro_batch;	/* sequences per forward */
	int			longest;		/* tokens of the longest training sequence */
	int32_t    *tokens;			/* [micro_batch * longest] and so on */
	int32_t    *lengths;
	int32_t    *prefix_lengths;
	float	   *weights;
	float	   *token_nll;

	/* validation scratch */
	int32_t    *prefix;
	const int32_t **cand_ids;
	int		   *cand_lens;

	/* where training stands */
	Phase		phase;
	uint64_t	shuffle_state;
	int			epoch;			/* 1-based, the one in progress */
	int			steps_per_epoch;
	int			step_in_epoch;	/* steps done in this epoch */
	int			step;			/* steps done in all */
	int			skipped_steps;
	int			next_valid;
	int			valid_correct;
	Meter		since_log;
	Meter		this_epoch;

	float	   *best_params;	/* with validation: the best epoch's */
	double		best_accuracy;
	int			best_epoch;
	bool		failed;			/* stopped early; error says why */
	StopCheck	stop;			/* the caller's interrupt check */
	CoreError	error;

	/* memory counted against memory_mb: the model's state, then the rest */
	StateBytes	state;
	size_t		budget;
	size_t		used;
	bool		over_budget;	/* an allocation did not fit */
};

static inline const int32_t *
span_ids(const StudentTrainer *t, Span s)
{
	return t->pool + s.offset;
}

/* train.c */
extern void shuffle(int *a, int n, uint64_t *state);

/* What training changes: the model's parameters, or its adapters'. */
extern float *trained_params(const StudentTrainer *t, size_t *n);

/* One optimizer update of them; the gradient's norm (optim.h). */
extern float trainer_update(StudentTrainer *t);
extern bool trainer_stopping(StudentTrainer *t);
extern void *counted_alloc(StudentTrainer *t, size_t bytes);

/* train_data.c */
extern bool check_examples(const StudentExample *examples, int n,
						   const char *const *labels, int n_labels,
						   CoreError *err);
extern bool split_examples(StudentTrainer *t, int n, int **train_index,
						   CoreError *err);
extern bool train_tokenizer(StudentTrainer *t, const StudentExample *examples,
							const int *train_index, const char *const *labels,
							int n_labels, CoreError *err);
extern bool tokenize_examples(StudentTrainer *t, const StudentExample *examples,
							  int n_examples, const int *train_index,
							  const char *const *labels, int n_labels,
							  CoreError *err);

/* train_batch.c */
extern int	collect_sequences(StudentTrainer *t, int first, int n_rows,
							  int targets[2]);
extern int	micro_batch_end(const StudentTrainer *t, int start, int n_seqs);
extern int	run_micro_batch(StudentTrainer *t, const Sequence *seqs, int n,
							const float task_weight[2], double nll[2]);

#endif
