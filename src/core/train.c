/*
 * train.c - the StudentTrainer: from examples to a trained student, one
 * bounded unit of work per trainer_advance() call.
 *
 * trainer_create() splits off the validation rows, trains the tokenizer on
 * the training rows, tokenizes every row once, and builds the model, the
 * optimizer and the batch buffers.  Its working memory is counted against
 * memory_mb as it goes (the tokenizer's training has its own count, within
 * what is left), and it asks the caller's stop check every few hundred
 * rows.  Then each epoch is:
 *
 *   steps       batch_size training rows (shuffled each epoch) become up
 *               to 2 * batch_size sequences (student.h), sorted by length
 *               and run as micro-batches of similar lengths that fit in
 *               memory_mb, each padded to its longest sequence; one
 *               optimizer update per step;
 *   validation  batch_size validation rows per call, answered with the
 *               token-level code of student_choose() / student_generate();
 *   epoch end   TRAIN_EPOCH, and a copy of the weights when the epoch is
 *               the best so far.
 */
#include "core/student.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/optim.h"
#include "core/student_internal.h"

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
	char		error[256];

	/* working memory counted against memory_mb (not the model's state) */
	size_t		budget;
	size_t		used;
	bool		over_budget;	/* an allocation did not fit */
};

/* Rows tokenized between two stop checks: a few milliseconds' work. */
#define ROWS_PER_CHECK 256

/* Bytes of the trainer's own batch arrays per token: tokens, weights, nll. */
#define BATCH_BYTES_PER_TOKEN (sizeof(int32_t) + 2 * sizeof(float))

/* ---------------------------------------------------------------- */
/* Small helpers */

/* Next number of a SplitMix64 stream. */
static uint64_t
next_random(uint64_t *state)
{
	uint64_t	z = (*state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Fisher-Yates; the modulo's bias is far below anything measurable here. */
static void
shuffle(int *a, int n, uint64_t *state)
{
	for (int i = n - 1; i > 0; i--)
	{
		int			j = (int) (next_random(state) % (uint64_t) (i + 1));
		int			tmp = a[i];

		a[i] = a[j];
		a[j] = tmp;
	}
}

static int
compare_int(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return (x > y) - (x < y);
}

static double
seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* text without leading and trailing whitespace: *len bytes from the result */
static const char *
trim(const char *text, size_t *len)
{
	size_t		n = strlen(text);

	while (n > 0 && is_space(*text))
		text++, n--;
	while (n > 0 && is_space(text[n - 1]))
		n--;
	*len = n;
	return text;
}

static const int32_t *
span_ids(const StudentTrainer *t, Span s)
{
	return t->pool + s.offset;
}

/*
 * Has the caller asked to stop?  Then training ends here, unfinished, and
 * trainer_error() says so.
 */
static bool
trainer_stopping(StudentTrainer *t)
{
	if (!stop_requested(&t->stop))
		return false;
	t->failed = true;
	t->phase = PHASE_DONE;
	model_error(t->error, sizeof(t->error), "training was interrupted");
	return true;
}

/* bytes more of working memory, if they fit in memory_mb (else over_budget) */
static bool
charge(StudentTrainer *t, size_t bytes)
{
	if (bytes > t->budget - t->used)
	{
		t->over_budget = true;
		return false;
	}
	t->used += bytes;
	return true;
}

/* Bytes in megabytes, rounded up. */
static size_t
mb_up(size_t bytes)
{
	return (bytes + (1 << 20) - 1) >> 20;
}

/* Zeroed memory counted against memory_mb; NULL when it does not fit or fails. */
static void *
counted_alloc(StudentTrainer *t, size_t bytes)
{
	void	   *p;

	if (!charge(t, bytes))
		return NULL;
	if ((p = calloc(1, bytes > 0 ? bytes : 1)) == NULL)
		t->used -= bytes;
	return p;
}

/*
 * Append ids to the pool as a new span.  The pool may move, so spans hold
 * offsets and span_ids() is called only once the pool is complete.  It
 * doubles while memory_mb allows, then grows to what is left.
 */
static bool
pool_add(StudentTrainer *t, const int32_t *ids, int n, Span *span)
{
	if (t->pool_used + n > t->pool_size)
	{
		size_t		room = t->pool_size + (t->budget - t->used) / sizeof(int32_t);
		size_t		size = 2 * (t->pool_used + n) + 1024;
		int32_t    *grown;

		size = size < room ? size : room;
		if (size < t->pool_used + n)
		{
			t->over_budget = true;
			return false;
		}
		if ((grown = realloc(t->pool, size * sizeof(int32_t))) == NULL)
			return false;
		t->used += (size - t->pool_size) * sizeof(int32_t);
		t->pool = grown;
		t->pool_size = size;
	}
	memcpy(t->pool + t->pool_used, ids, n * sizeof(int32_t));
	span->offset = t->pool_used;
	span->len = n;
	t->pool_used += n;
	return true;
}

/* Encode text (a target with <eos> when target) into a new span. */
static bool
encode_span(StudentTrainer *t, const char *text, int max_tokens, bool target,
			Span *span)
{
	int32_t    *ids = NULL;
	int			n = target
		? student_encode_target(t->tokenizer, text, max_tokens, &ids)
		: student_encode(t->tokenizer, text, max_tokens, &ids);
	bool		ok = n >= 0 && pool_add(t, ids, n, span);

	free(ids);
	return ok;
}

/* The index of text among texts[0 .. n), or -1. */
static int
find_text(const char *text, const char *const *texts, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(text, texts[i]) == 0)
			return i;
	return -1;
}

/* ---------------------------------------------------------------- */
/* Setting up */

static bool
check_examples(const StudentExample *examples, int n,
			   const char *const *labels, int n_labels,
			   char *errbuf, size_t errlen)
{
	if (n < 2 || examples == NULL)
	{
		model_error(errbuf, errlen,
					  "training needs at least 2 examples (got %d)", n);
		return false;
	}
	for (int i = 0; i < n; i++)
	{
		const StudentExample *e = &examples[i];
		char		what[48];

		if (e->input == NULL || e->label == NULL)
		{
			model_error(errbuf, errlen, "example %d has no %s",
						  i + 1, e->input == NULL ? "input" : "label");
			return false;
		}
		if (e->n_choices < 0 || (e->n_choices > 0 && e->choices == NULL))
		{
			model_error(errbuf, errlen, "example %d: bad choices", i + 1);
			return false;
		}
		snprintf(what, sizeof(what), "example %d", i + 1);
		if (student_too_many_candidates(e->n_choices, what, errbuf, errlen))
			return false;
		for (int k = 0; k < e->n_choices; k++)
			if (e->choices[k] == NULL)
			{
				model_error(errbuf, errlen, "example %d: choice %d is NULL",
							  i + 1, k + 1);
				return false;
			}
	}
	if (n_labels < 0 || (n_labels > 0 && labels == NULL))
	{
		model_error(errbuf, errlen, "bad label set");
		return false;
	}
	if (student_too_many_candidates(n_labels, "the label set", errbuf, errlen))
		return false;
	for (int k = 0; k < n_labels; k++)
		if (labels[k] == NULL)
		{
			model_error(errbuf, errlen, "label %d of the label set is NULL", k + 1);
			return false;
		}
	return true;
}

/*
 * Hold out validation_fraction of the examples (at least one when the
 * fraction is not 0), drawn by seed.  Fills t->valid_index and returns the
 * training rows' indices in *train_index; both ascending.
 */
static bool
split_examples(StudentTrainer *t, int n, int **train_index,
			   char *errbuf, size_t errlen)
{
	int		   *perm = malloc(n * sizeof(int));
	uint64_t	state = t->params.seed ^ 0x5EED5917ull;
	int			n_valid = (int) floor(n * t->params.validation_fraction + 0.5);

	if (t->params.validation_fraction > 0.0 && n_valid == 0)
		n_valid = 1;
	if (n - n_valid < 2)
	{
		model_error(errbuf, errlen,
					  "training needs at least 2 training examples: %d examples with validation_fraction %g leave %d (use more examples or validation_fraction 0)",
					  n, t->params.validation_fraction, n - n_valid);
		free(perm);
		return false;
	}
	t->valid_index = counted_alloc(t, (n_valid > 0 ? n_valid : 1) * sizeof(int));
	*train_index = counted_alloc(t, (n - n_valid) * sizeof(int));
	if (perm == NULL || t->valid_index == NULL || *train_index == NULL)
	{
		model_error(errbuf, errlen, "out of memory splitting %d examples", n);
		free(perm);
		return false;
	}
	for (int i = 0; i < n; i++)
		perm[i] = i;
	shuffle(perm, n, &state);
	memcpy(t->valid_index, perm, n_valid * sizeof(int));
	memcpy(*train_index, perm + n_valid, (n - n_valid) * sizeof(int));
	qsort(t->valid_index, n_valid, sizeof(int), compare_int);
	qsort(*train_index, n - n_valid, sizeof(int), compare_int);
	t->n_valid = n_valid;
	t->n_train = n - n_valid;
	free(perm);
	return true;
}

static bool
uses_rationale(const StudentTrainer *t, const StudentExample *e)
{
	return t->params.rationale_weight > 0.0 && e->rationale != NULL;
}

/*
 * Train the tokenizer on the texts of the training rows: inputs, labels,
 * the rationales that are trained on, the label set, and each task tag
 * once per sequence that carries it, so that the tags become single tokens
 * like any frequent word.  The tokenizer's training gets what is left of
 * memory_mb.
 */
static bool
train_tokenizer(StudentTrainer *t, const StudentExample *examples,
				const int *train_index, const char *const *labels,
				int n_labels, char *errbuf, size_t errlen)
{
	size_t		max_texts = 5 * (size_t) t->n_train + n_labels;
	size_t		list_bytes = max_texts * (sizeof(char *) + sizeof(size_t));
	const char **texts = counted_alloc(t, list_bytes);
	size_t	   *lens;
	size_t		n = 0;
	char		why[200];

	if (texts == NULL)
	{
		model_error(errbuf, errlen, t->over_budget
					? "the list of the tokenizer's %zu texts needs more than memory_mb"
					: "out of memory for the list of the tokenizer's %zu texts",
					max_texts);
		return false;
	}
	lens = (size_t *) (texts + max_texts);
	for (int i = 0; i < t->n_train; i++)
	{
		const StudentExample *e = &examples[train_index[i]];

		texts[n++] = e->input;
		texts[n++] = e->label;
		texts[n++] = STUDENT_PREDICT_TAG;
		if (uses_rationale(t, e))
		{
			texts[n++] = e->rationale;
			texts[n++] = STUDENT_EXPLAIN_TAG;
		}
	}
	for (int k = 0; k < n_labels; k++)
		texts[n++] = labels[k];
	for (size_t i = 0; i < n; i++)
		lens[i] = strlen(texts[i]);
	t->tokenizer = tok_train(texts, lens, n, t->params.vocab_size,
							 t->budget - t->used, &t->stop, why, sizeof(why));
	if (t->tokenizer == NULL)
		model_error(errbuf, errlen, "%s%s",
					strcmp(why, "interrupted") == 0 ? "training was interrupted" : why,
					strstr(why, "allowed") != NULL ? " by memory_mb" : "");
	free(texts);
	t->used -= list_bytes;
	return t->tokenizer != NULL;
}

/* Has the caller asked to stop, at a check every ROWS_PER_CHECK rows? */
static bool
stop_at_row(StudentTrainer *t, int row)
{
	return row % ROWS_PER_CHECK == 0 && trainer_stopping(t);
}

static bool
tokenize_training_rows(StudentTrainer *t, const StudentExample *examples,
					   const int *train_index)
{
	const StudentParams *p = &t->params;

	t->train = counted_alloc(t, t->n_train * sizeof(TrainRow));
	if (t->train == NULL)
		return false;
	t->longest = 0;
	for (int i = 0; i < t->n_train; i++)
	{
		const StudentExample *e = &examples[train_index[i]];
		TrainRow   *row = &t->train[i];
		int			len;

		if (stop_at_row(t, i) ||
			!encode_span(t, e->input, p->max_input_tokens, false, &row->input) ||
			!encode_span(t, e->label, p->max_target_tokens, true, &row->label))
			return false;
		if (uses_rationale(t, e) &&
			!encode_span(t, e->rationale, p->max_target_tokens, true, &row->rationale))
			return false;
		len = STUDENT_PREFIX_LEN(t->tag[0].len, row->input.len) + row->label.len;
		t->longest = len > t->longest ? len : t->longest;
		len = STUDENT_PREFIX_LEN(t->tag[1].len, row->input.len) + row->rationale.len;
		if (row->rationale.len > 0 && len > t->longest)
			t->longest = len;
	}
	return true;
}

/* The distinct texts among texts[0 .. n), in order, in a malloc'd array. */
static const char **
distinct_texts(const char *const *texts, int n, int *n_distinct)
{
	const char **distinct = malloc(n * sizeof(char *));
	int			m = 0;

	if (distinct == NULL)
		return NULL;
	for (int k = 0; k < n; k++)
		if (find_text(texts[k], distinct, m) < 0)
			distinct[m++] = texts[k];
	*n_distinct = m;
	return distinct;
}

/* texts[0 .. n) encoded as targets, in a malloc'd array of spans. */
static Span *
encode_candidates(StudentTrainer *t, const char *const *texts, int n)
{
	Span	   *spans = counted_alloc(t, n * sizeof(Span));

	for (int k = 0; spans != NULL && k < n; k++)
		if (!encode_span(t, texts[k], t->params.max_target_tokens, true, &spans[k]))
		{
			free(spans);
			spans = NULL;
		}
	return spans;
}

static bool
prepare_validation_row(StudentTrainer *t, ValidRow *row,
					   const StudentExample *e, const char *const *label_set)
{
	if (!encode_span(t, e->input, t->params.max_input_tokens, false, &row->input))
		return false;
	if (label_set != NULL)
		row->gold = find_text(e->label, label_set, t->n_label_set);
	else if (e->n_choices > 0)
	{
		const char **choices = distinct_texts(e->choices, e->n_choices, &row->n_choices);

		if (choices == NULL)
			return false;
		row->gold = find_text(e->label, choices, row->n_choices);
		row->choices = encode_candidates(t, choices, row->n_choices);
		free(choices);
		return row->choices != NULL;
	}
	else
	{
		size_t		len;
		const char *label = trim(e->label, &len);

		if ((row->label = counted_alloc(t, len + 1)) == NULL)
			return false;
		memcpy(row->label, label, len);
		row->label[len] = '\0';
	}
	return true;
}

static bool
prepare_validation_rows(StudentTrainer *t, const StudentExample *examples,
						const char *const *labels, int n_labels)
{
	const char **label_set = NULL;
	bool		ok = true;

	if (n_labels > 0)
	{
		label_set = distinct_texts(labels, n_labels, &t->n_label_set);
		if (label_set == NULL)
			return false;
		t->label_set = encode_candidates(t, label_set, t->n_label_set);
		ok = t->label_set != NULL;
	}
	if (ok)
		t->valid = counted_alloc(t, (t->n_valid > 0 ? t->n_valid : 1) * sizeof(ValidRow));
	ok = ok && t->valid != NULL;
	for (int i = 0; ok && i < t->n_valid; i++)
		ok = !stop_at_row(t, i) &&
			prepare_validation_row(t, &t->valid[i], &examples[t->valid_index[i]], label_set);
	free(label_set);
	return ok;
}

/*
 * Tokenize the tags, the training rows and the validation rows; false with
 * a message (out of memory_mb, out of memory, a stop).
 */
static bool
tokenize_examples(StudentTrainer *t, const StudentExample *examples,
				  int n_examples, const int *train_index,
				  const char *const *labels, int n_labels,
				  char *errbuf, size_t errlen)
{
	if (encode_span(t, STUDENT_PREDICT_TAG, INT32_MAX, false, &t->tag[0]) &&
		encode_span(t, STUDENT_EXPLAIN_TAG, INT32_MAX, false, &t->tag[1]) &&
		tokenize_training_rows(t, examples, train_index) &&
		prepare_validation_rows(t, examples, labels, n_labels))
		return true;
	if (t->failed)
		model_error(errbuf, errlen, "%s", t->error);
	else if (t->over_budget)
		model_error(errbuf, errlen,
					"the tokenized examples need more memory than memory_mb (%d MB) leaves",
					t->params.memory_mb);
	else
		model_error(errbuf, errlen, "out of memory tokenizing %d examples", n_examples);
	return false;
}

/*
 * Sequences per forward: as many as the batch can hold (rows * 2 with
 * rationales) while the training buffers of seq_len-token sequences stay
 * within budget bytes; 0 when not even one fits.  The buffers grow
 * linearly with the number of sequences, so two sizes give the slope.
 */
static int
micro_batch_capacity(const ModelConfig *config, int max_seqs, int seq_len,
					 size_t budget)
{
	size_t		one = model_training_bytes(config, 1, seq_len) +
		(size_t) seq_len * BATCH_BYTES_PER_TOKEN;
	size_t		per_seq = model_training_bytes(config, 2, seq_len) -
		model_training_bytes(config, 1, seq_len) +
		(size_t) seq_len * BATCH_BYTES_PER_TOKEN;
	size_t		fits;

	if (budget < one)
		return 0;
	fits = 1 + (budget - one) / per_seq;
	return fits < (size_t) max_seqs ? (int) fits : max_seqs;
}

/* The most candidates a validation row is scored against. */
static int
max_candidates(const StudentTrainer *t)
{
	int			n = t->n_label_set > 0 ? t->n_label_set : 1;

	for (int i = 0; i < t->n_valid; i++)
		n = t->valid[i].n_choices > n ? t->valid[i].n_choices : n;
	return n;
}

/* Sequences in a step at most: rows * 2 with rationales. */
static int
max_sequences(const StudentTrainer *t)
{
	int			rows = t->params.batch_size < t->n_train ? t->params.batch_size : t->n_train;

	for (int i = 0; i < t->n_train; i++)
		if (t->train[i].rationale.len > 0)
			return 2 * rows;
	return rows;
}

/* The arrays of a step's sequences and of validation, within memory_mb. */
static bool
alloc_step_arrays(StudentTrainer *t, char *errbuf, size_t errlen)
{
	int			longest_tag = t->tag[0].len > t->tag[1].len ? t->tag[0].len : t->tag[1].len;

	t->seqs = counted_alloc(t, max_sequences(t) * sizeof(Sequence));
	t->order = counted_alloc(t, t->n_train * sizeof(int));
	t->prefix = counted_alloc(t, STUDENT_PREFIX_LEN(longest_tag, t->params.max_input_tokens) *
							  sizeof(int32_t));
	t->cand_ids = counted_alloc(t, max_candidates(t) * sizeof(int32_t *));
	t->cand_lens = counted_alloc(t, max_candidates(t) * sizeof(int));
	if (!t->seqs || !t->order || !t->prefix || !t->cand_ids || !t->cand_lens)
	{
		model_error(errbuf, errlen, t->over_budget
					? "the arrays of a step of %d sequences need more than memory_mb"
					: "out of memory for the arrays of a step of %d sequences",
					max_sequences(t));
		return false;
	}
	for (int i = 0; i < t->n_train; i++)
		t->order[i] = i;
	return true;
}

/*
 * The model's configuration, and how many sequences a micro-batch holds
 * in what memory_mb leaves: an error with the figures, before any of the
 * model is allocated, when not even one fits.
 */
static bool
plan_model(StudentTrainer *t, ModelConfig *config, char *errbuf, size_t errlen)
{
	const StudentParams *p = &t->params;
	size_t		one;

	model_config_default(config, tok_vocab_size(t->tokenizer), p->d_model,
						 p->n_layers, p->n_heads);
	if (p->d_ff > 0)
		config->d_ff = p->d_ff;
	config->max_seq_len = student_sequence_limit(t->tokenizer, p->max_input_tokens,
												 p->max_target_tokens);
	config->tied_embeddings = p->tied_embeddings;
	config->prefix_lm = p->prefix_lm;
	config->dropout = (float) p->dropout;
	if (config->max_seq_len < 0)
	{
		model_error(errbuf, errlen, "out of memory sizing the model");
		return false;
	}
	if (!model_config_validate(config, errbuf, errlen))
		return false;
	t->micro_batch = micro_batch_capacity(config, max_sequences(t), t->longest,
										  t->budget - t->used);
	if (t->micro_batch > 0)
		return true;
	one = model_training_bytes(config, 1, t->longest) +
		(size_t) t->longest * BATCH_BYTES_PER_TOKEN;
	model_error(errbuf, errlen,
				"training needs at least %zu MB of memory_mb, not %d: the gradients and activations of one sequence of %d tokens take %zu MB, the tokenized examples %zu MB",
				mb_up(t->used + one), p->memory_mb, t->longest, mb_up(one), mb_up(t->used));
	return false;
}

static bool
build_model(StudentTrainer *t, const ModelConfig *config, char *errbuf,
			size_t errlen)
{
	const StudentParams *p = &t->params;
	int			total_steps = p->epochs * t->steps_per_epoch;
	OptimConfig optim;

	t->model = model_create(config, errbuf, errlen);
	if (t->model == NULL)
		return false;
	model_init_weights(t->model, p->seed);

	optim_config_default(&optim, (float) p->lr, total_steps);
	optim.warmup_steps = (int) (p->warmup_fraction * total_steps + 0.5);
	optim.weight_decay = (float) p->weight_decay;
	optim.grad_clip = (float) p->grad_clip;
	t->optim = optim_create(t->model, &optim, errbuf, errlen);
	return t->optim != NULL;
}

/* The batch buffers of micro-batches of t->micro_batch sequences. */
static bool
alloc_buffers(StudentTrainer *t, char *errbuf, size_t errlen)
{
	size_t		cells = (size_t) t->micro_batch * t->longest;

	if (!model_alloc_training(t->model, t->micro_batch, t->longest, errbuf, errlen))
		return false;
	t->tokens = malloc(cells * sizeof(int32_t));
	t->lengths = malloc(t->micro_batch * sizeof(int32_t));
	t->prefix_lengths = malloc(t->micro_batch * sizeof(int32_t));
	t->weights = malloc(cells * sizeof(float));
	t->token_nll = malloc(cells * sizeof(float));
	if (t->n_valid > 0)
		t->best_params = malloc(t->model->n_params * sizeof(float));
	if (!t->tokens || !t->lengths || !t->prefix_lengths || !t->weights ||
		!t->token_nll || (t->n_valid > 0 && !t->best_params))
	{
		model_error(errbuf, errlen, "out of memory for batches of %d x %d tokens",
					  t->micro_batch, t->longest);
		return false;
	}
	return true;
}

StudentTrainer *
trainer_create(const StudentParams *params, const StudentExample *examples,
			   int n_examples, const char *const *labels, int n_labels,
			   const StopCheck *stop, char *errbuf, size_t errlen)
{
	StudentTrainer *t;
	int		   *train_index = NULL;
	ModelConfig config;

	if (!student_params_validate(params, errbuf, errlen) ||
		!check_examples(examples, n_examples, labels, n_labels, errbuf, errlen))
		return NULL;
	t = calloc(1, sizeof(StudentTrainer));
	if (t == NULL)
	{
		model_error(errbuf, errlen, "out of memory for a trainer");
		return NULL;
	}
	t->params = *params;
	if (stop != NULL)
		t->stop = *stop;
	t->budget = (size_t) params->memory_mb << 20;
	t->shuffle_state = params->seed ^ 0x0DE75EEDull;
	t->best_accuracy = NAN;
	t->epoch = 1;
	if (!split_examples(t, n_examples, &train_index, errbuf, errlen) ||
		!train_tokenizer(t, examples, train_index, labels, n_labels, errbuf, errlen) ||
		!tokenize_examples(t, examples, n_examples, train_index, labels, n_labels,
						   errbuf, errlen))
		goto fail;
	t->steps_per_epoch = (t->n_train + params->batch_size - 1) / params->batch_size;
	if ((int64_t) t->steps_per_epoch * params->epochs > INT32_MAX)
	{
		model_error(errbuf, errlen, "%d epochs of %d steps are too many",
					  params->epochs, t->steps_per_epoch);
		goto fail;
	}
	if (!alloc_step_arrays(t, errbuf, errlen) ||
		!plan_model(t, &config, errbuf, errlen) ||
		!build_model(t, &config, errbuf, errlen) ||
		!alloc_buffers(t, errbuf, errlen))
		goto fail;
	free(train_index);
	return t;

fail:
	free(train_index);
	trainer_free(t);
	return NULL;
}

/* ---------------------------------------------------------------- */
/* Steps */

static int
compare_sequences(const void *a, const void *b)
{
	const Sequence *x = a;
	const Sequence *y = b;

	if (x->len != y->len)
		return x->len - y->len;
	return x->ordinal - y->ordinal;
}

/*
 * The sequences of the training rows order[first .. first + n_rows),
 * shortest first, so that each micro-batch pads little; the number of
 * label and rationale target tokens go to targets[0] and targets[1].
 */
static int
collect_sequences(StudentTrainer *t, int first, int n_rows, int targets[2])
{
	int			n = 0;

	targets[0] = targets[1] = 0;
	for (int i = 0; i < n_rows; i++)
	{
		const TrainRow *row = &t->train[t->order[first + i]];

		for (int explain = 0; explain <= 1; explain++)
		{
			Span		target = explain ? row->rationale : row->label;
			Sequence   *s = &t->seqs[n];

			if (target.len == 0)
				continue;
			s->row = row;
			s->explain = explain;
			s->prefix_len = STUDENT_PREFIX_LEN(t->tag[explain].len, row->input.len);
			s->len = s->prefix_len + target.len;
			s->ordinal = n++;
			targets[explain] += target.len;
		}
	}
	qsort(t->seqs, n, sizeof(Sequence), compare_sequences);
	return n;
}

/*
 * Lay out n sequences as a batch of row length T: tokens, right padding,
 * and the loss weight of each target token (task_weight[explain]).
 */
static void
fill_batch(StudentTrainer *t, const Sequence *seqs, int n, int T,
		   const float task_weight[2])
{
	for (int b = 0; b < n; b++)
	{
		const Sequence *s = &seqs[b];
		Span		tag = t->tag[s->explain];
		Span		target = s->explain ? s->row->rationale : s->row->label;
		int32_t    *tokens = t->tokens + (size_t) b * T;
		float	   *weights = t->weights + (size_t) b * T;

		student_write_prefix(t->tokenizer, span_ids(t, tag), tag.len,
							 span_ids(t, s->row->input), s->row->input.len, tokens);
		memcpy(tokens + s->prefix_len, span_ids(t, target), target.len * sizeof(int32_t));
		for (int j = s->len; j < T; j++)
			tokens[j] = tok_pad(t->tokenizer);
		for (int j = 0; j < T; j++)
			weights[j] = j >= s->prefix_len && j < s->len ? task_weight[s->explain] : 0.0f;
		t->lengths[b] = s->len;
		t->prefix_lengths[b] = s->prefix_len;
	}
}

/* Add each task's -log p over the targets of the last forward to nll[]. */
static void
add_task_nll(const StudentTrainer *t, const Sequence *seqs, int n, int T,
			 double nll[2])
{
	for (int b = 0; b < n; b++)
		for (int j = seqs[b].prefix_len; j < seqs[b].len; j++)
			nll[seqs[b].explain] += t->token_nll[(size_t) b * T + j];
}

static void
meter_add(Meter *m, double label_loss, double rationale_loss, double tokens,
		  double seconds)
{
	if (isfinite(label_loss))
	{
		m->label_loss += label_loss;
		m->label_steps++;
	}
	if (isfinite(rationale_loss))
	{
		m->rationale_loss += rationale_loss;
		m->rationale_steps++;
	}
	m->tokens += tokens;
	m->seconds += seconds;
}

static void
meter_report(const Meter *m, TrainProgress *p)
{
	p->label_loss = m->label_steps > 0 ? m->label_loss / m->label_steps : NAN;
	p->rationale_loss = m->rationale_steps > 0
		? m->rationale_loss / m->rationale_steps : NAN;
	p->tokens_per_second = m->seconds > 0.0 ? m->tokens / m->seconds : 0.0;
}

/*
 * Where the micro-batch of the sorted sequences seqs[start ..] ends: at
 * micro_batch sequences, or where padding to the next (longer) sequence
 * would waste more than 1/8 of the cells, once the micro-batch has enough
 * cells for efficient matrix products.  Every padded cell costs a full
 * token of work (and attention grows with the square of the row length):
 * on CommonsenseQA with rationales, where label and rationale sequences
 * differ in length, a step whose batch fits one micro-batch took 2.4 s
 * when cut by count alone and takes 1.8 s cut this way (d_model 256, 4
 * layers, 1 thread), so the speed hardly depends on memory_mb.
 */
#define MICRO_BATCH_MIN_CELLS 512
#define MICRO_BATCH_MAX_WASTE 8		/* 1/8 */

/*
 * Tokens per micro-batch at most, so that the caller's stop check runs
 * often: at d_model 256, 4 layers, 2048 tokens are about a third of a
 * second of work on one core, and still plenty of rows for efficient
 * matrix products.
 */
#define MICRO_BATCH_MAX_TOKENS 2048

static int
micro_batch_end(const StudentTrainer *t, int start, int n_seqs)
{
	int			end = start + 1;
	int64_t		tokens = t->seqs[start].len;

	while (end < n_seqs && end - start < t->micro_batch)
	{
		int64_t		len = t->seqs[end].len;
		int64_t		cells = (end - start + 1) * len;

		if (cells > MICRO_BATCH_MAX_TOKENS ||
			(cells >= MICRO_BATCH_MIN_CELLS &&
			 (cells - (tokens + len)) * MICRO_BATCH_MAX_WASTE > cells))
			break;
		tokens += len;
		end++;
	}
	return end;
}

/*
 * Forward and backward over n sequences sorted by length (the gradients
 * add up); returns their tokens.
 */
static int
run_micro_batch(StudentTrainer *t, const Sequence *seqs, int n,
				const float task_weight[2], double nll[2])
{
	int			T = seqs[n - 1].len;
	int			tokens = 0;
	ModelBatch	batch = {n, T, t->tokens, t->lengths, t->prefix_lengths,
	t->weights, t->token_nll};

	fill_batch(t, seqs, n, T, task_weight);
	model_forward(t->model, &batch, true);
	model_backward(t->model);
	add_task_nll(t, seqs, n, T, nll);
	for (int b = 0; b < n; b++)
		tokens += seqs[b].len;
	return tokens;
}

/*
 * One optimizer step on the next batch_size rows of the epoch.  Each label
 * token weighs 1 / (label tokens of the batch) and each rationale token
 * lambda / (rationale tokens of the batch), so the loss is L_label +
 * lambda L_rationale with each term a mean over its own tokens, however
 * the batch is cut into micro-batches.
 */
static TrainEvent
train_step(StudentTrainer *t, TrainProgress *p)
{
	int			batch_size = t->params.batch_size;
	int			first = t->step_in_epoch * batch_size;
	int			n_rows = t->n_train - first < batch_size ? t->n_train - first : batch_size;
	double		started = seconds_now();
	double		nll[2] = {0.0, 0.0};
	double		tokens = 0.0;
	double		label_loss;
	double		rationale_loss;
	double		seconds;
	int			targets[2];
	float		task_weight[2];
	int			n_seqs;

	if (t->step_in_epoch == 0)
		shuffle(t->order, t->n_train, &t->shuffle_state);
	n_seqs = collect_sequences(t, first, n_rows, targets);
	task_weight[0] = 1.0f / targets[0];
	task_weight[1] = targets[1] > 0 ? (float) t->params.rationale_weight / targets[1] : 0.0f;

	model_zero_grad(t->model);
	for (int start = 0; start < n_seqs;)
	{
		int			end = micro_batch_end(t, start, n_seqs);

		if (trainer_stopping(t))
			return TRAIN_DONE;
		tokens += run_micro_batch(t, t->seqs + start, end - start, task_weight, nll);
		start = end;
	}
	if (!isfinite(optim_step(t->optim, t->model)))
		t->skipped_steps++;

	label_loss = nll[0] / targets[0];
	rationale_loss = targets[1] > 0 ? nll[1] / targets[1] : NAN;
	seconds = seconds_now() - started;
	meter_add(&t->since_log, label_loss, rationale_loss, tokens, seconds);
	meter_add(&t->this_epoch, label_loss, rationale_loss, tokens, seconds);
	t->step++;
	t->step_in_epoch++;
	if (t->step_in_epoch == t->steps_per_epoch)
		t->phase = t->n_valid > 0 ? PHASE_VALIDATION : PHASE_EPOCH_END;
	if (t->step % t->params.log_every != 0 && t->phase == PHASE_STEPS)
		return TRAIN_WORKING;
	meter_report(&t->since_log, p);
	memset(&t->since_log, 0, sizeof(Meter));
	return TRAIN_STEP;
}

/* ---------------------------------------------------------------- */
/* Validation and epochs */

/* Is the student's answer to row right?  -1 (and t->error) on failure. */
static int
answer_is_right(StudentTrainer *t, const ValidRow *row)
{
	const Span *cands = t->label_set != NULL ? t->label_set : row->choices;
	int			n_cands = t->label_set != NULL ? t->n_label_set : row->n_choices;
	int			prefix_len;
	char	   *text;
	const char *answer;
	size_t		len;
	bool		right;

	prefix_len = student_write_prefix(t->tokenizer, span_ids(t, t->tag[0]), t->tag[0].len,
									  span_ids(t, row->input), row->input.len, t->prefix);
	if (cands != NULL)
	{
		int			choice;

		for (int k = 0; k < n_cands; k++)
		{
			t->cand_ids[k] = span_ids(t, cands[k]);
			t->cand_lens[k] = cands[k].len;
		}
		choice = student_choose_ids(t->model, t->prefix, prefix_len, t->cand_ids,
									t->cand_lens, n_cands, NULL,
									t->error, sizeof(t->error));
		return choice < 0 ? -1 : choice == row->gold;
	}
	text = student_generate_ids(t->model, t->tokenizer, t->prefix, prefix_len,
								t->params.max_target_tokens, NULL,
								t->error, sizeof(t->error));
	if (text == NULL)
		return -1;
	answer = trim(text, &len);
	text[answer - text + len] = '\0';
	right = answer_matches(t->params.validation_metric, answer, row->label);
	free(text);
	return right;
}

/* Answer the next batch_size validation rows. */
static bool
validate_some(StudentTrainer *t)
{
	int			end = t->next_valid + t->params.batch_size;

	for (end = end < t->n_valid ? end : t->n_valid; t->next_valid < end; t->next_valid++)
	{
		int			right;

		if (trainer_stopping(t))
			return false;
		right = answer_is_right(t, &t->valid[t->next_valid]);
		if (right < 0)
			return false;
		t->valid_correct += right;
	}
	return true;
}

/*
 * Close the epoch: its accuracy, the best weights so far (ties go to the
 * earlier epoch; without validation every epoch is the best so far, so the
 * last one wins), the epoch's mean losses.
 */
static TrainEvent
end_epoch(StudentTrainer *t, TrainProgress *p)
{
	double		accuracy = t->n_valid > 0 ? (double) t->valid_correct / t->n_valid : NAN;

	p->best = t->n_valid == 0 || t->best_epoch == 0 || accuracy > t->best_accuracy;
	if (p->best)
	{
		t->best_accuracy = accuracy;
		t->best_epoch = t->epoch;
		if (t->best_params != NULL)
			memcpy(t->best_params, t->model->params, t->model->n_params * sizeof(float));
	}
	p->val_accuracy = accuracy;
	meter_report(&t->this_epoch, p);
	memset(&t->this_epoch, 0, sizeof(Meter));
	t->valid_correct = 0;
	t->next_valid = 0;
	t->step_in_epoch = 0;
	t->epoch++;
	t->phase = t->epoch > t->params.epochs ? PHASE_DONE : PHASE_STEPS;
	return TRAIN_EPOCH;
}

TrainEvent
trainer_advance(StudentTrainer *t, TrainProgress *p)
{
	int			epoch = t->epoch;	/* the work below belongs to it */
	TrainEvent	event = TRAIN_DONE;

	memset(p, 0, sizeof(*p));
	p->label_loss = p->rationale_loss = NAN;
	p->tokens_per_second = 0.0;
	p->val_accuracy = NAN;
	switch (t->phase)
	{
		case PHASE_STEPS:
			event = train_step(t, p);
			break;
		case PHASE_VALIDATION:
			if (!validate_some(t))
			{
				t->failed = true;
				t->phase = PHASE_DONE;
				event = TRAIN_DONE;
			}
			else
				event = t->next_valid < t->n_valid ? TRAIN_WORKING : end_epoch(t, p);
			break;
		case PHASE_EPOCH_END:
			event = end_epoch(t, p);
			break;
		case PHASE_DONE:
			event = TRAIN_DONE;
			break;
	}
	p->step = t->step;
	p->total_steps = t->params.epochs * t->steps_per_epoch;
	p->epoch = epoch < t->params.epochs ? epoch : t->params.epochs;
	p->lr = t->optim->last_lr;
	p->skipped_steps = t->skipped_steps;
	return event;
}

/* ---------------------------------------------------------------- */
/* Results */

int
trainer_train_examples(const StudentTrainer *t)
{
	return t->n_train;
}

int
trainer_validation_examples(const StudentTrainer *t)
{
	return t->n_valid;
}

int
trainer_rationale_examples(const StudentTrainer *t)
{
	int			n = 0;

	for (int i = 0; i < t->n_train; i++)
		n += t->train[i].rationale.len > 0;
	return n;
}

const int *
trainer_validation_index(const StudentTrainer *t)
{
	return t->valid_index;
}

double
trainer_best_accuracy(const StudentTrainer *t)
{
	return t->best_accuracy;
}

int
trainer_best_epoch(const StudentTrainer *t)
{
	return t->best_epoch;
}

const Model *
trainer_model(const StudentTrainer *t)
{
	return t->model;
}

int
trainer_micro_batch_size(const StudentTrainer *t)
{
	return t->micro_batch;
}

const char *
trainer_error(const StudentTrainer *t)
{
	return t->failed ? t->error : NULL;
}

Student *
trainer_take_best(StudentTrainer *t)
{
	Student    *s;

	if (t->model == NULL)
		return NULL;
	s = calloc(1, sizeof(Student));
	if (s == NULL)
		return NULL;
	if (t->best_params != NULL && t->best_epoch > 0)
		memcpy(t->model->params, t->best_params, t->model->n_params * sizeof(float));
	model_free_training(t->model);
	s->tokenizer = t->tokenizer;
	s->model = t->model;
	s->max_input_tokens = t->params.max_input_tokens;
	s->max_target_tokens = t->params.max_target_tokens;
	t->tokenizer = NULL;
	t->model = NULL;
	t->phase = PHASE_DONE;
	return s;
}

void
trainer_free(StudentTrainer *t)
{
	if (t == NULL)
		return;
	for (int i = 0; t->valid != NULL && i < t->n_valid; i++)
	{
		free(t->valid[i].choices);
		free(t->valid[i].label);
	}
	free(t->valid);
	free(t->valid_index);
	free(t->train);
	free(t->label_set);
	free(t->pool);
	free(t->order);
	free(t->seqs);
	free(t->tokens);
	free(t->lengths);
	free(t->prefix_lengths);
	free(t->weights);
	free(t->token_nll);
	free(t->prefix);
	free(t->cand_ids);
	free(t->cand_lens);
	free(t->best_params);
	optim_free(t->optim);
	model_free(t->model);
	tok_free(t->tokenizer);
	free(t);
}
