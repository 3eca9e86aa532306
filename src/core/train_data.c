/*
 * train_data.c - the examples as the trainer's token rows: checked, split
 * into training and validation rows, the tokenizer trained on the
 * training rows, every row tokenized once into the trainer's pool (all of
 * it counted against memory_mb, with a stop check every ROWS_PER_CHECK
 * rows).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/student_internal.h"
#include "core/train_internal.h"
#include "core/util.h"

/* Rows tokenized between two stop checks: a few milliseconds' work. */
#define ROWS_PER_CHECK 256

static int
compare_int(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return (x > y) - (x < y);
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

bool
check_examples(const StudentExample *examples, int n,
			   const char *const *labels, int n_labels,
			   CoreError *err)
{
	if (n < 2 || examples == NULL)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "training needs at least 2 examples (got %d)", n);
		return false;
	}
	for (int i = 0; i < n; i++)
	{
		const StudentExample *e = &examples[i];
		char		what[48];

		if (e->input == NULL || e->label == NULL)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "example %d has no %s",
					   i + 1, e->input == NULL ? "input" : "label");
			return false;
		}
		if (e->n_choices < 0 || (e->n_choices > 0 && e->choices == NULL))
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "example %d: bad choices", i + 1);
			return false;
		}
		snprintf(what, sizeof(what), "example %d", i + 1);
		if (student_too_many_candidates(e->n_choices, what, err))
			return false;
		for (int k = 0; k < e->n_choices; k++)
			if (e->choices[k] == NULL)
			{
				core_error(err, CORE_ERR_INVALID_INPUT, "example %d: choice %d is NULL",
						   i + 1, k + 1);
				return false;
			}
	}
	if (n_labels < 0 || (n_labels > 0 && labels == NULL))
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "bad label set");
		return false;
	}
	if (student_too_many_candidates(n_labels, "the label set", err))
		return false;
	for (int k = 0; k < n_labels; k++)
		if (labels[k] == NULL)
		{
			core_error(err, CORE_ERR_INVALID_INPUT, "label %d of the label set is NULL", k + 1);
			return false;
		}
	return true;
}

/*
 * Hold out validation_fraction of the examples (at least one when the
 * fraction is not 0), drawn by seed.  Fills t->valid_index and returns the
 * training rows' indices in *train_index; both ascending.
 */
bool
split_examples(StudentTrainer *t, int n, int **train_index,
			   CoreError *err)
{
	int		   *perm = malloc(n * sizeof(int));
	uint64_t	state = t->params.seed ^ 0x5EED5917ull;
	int			n_valid = (int) floor(n * t->params.validation_fraction + 0.5);

	if (t->params.validation_fraction > 0.0 && n_valid == 0)
		n_valid = 1;
	if (n - n_valid < 2)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "training needs at least 2 training examples: %d examples with validation_fraction %g leave %d (use more examples or validation_fraction 0)",
				   n, t->params.validation_fraction, n - n_valid);
		free(perm);
		return false;
	}
	t->valid_index = counted_alloc(t, (n_valid > 0 ? n_valid : 1) * sizeof(int));
	*train_index = counted_alloc(t, (n - n_valid) * sizeof(int));
	if (perm == NULL || t->valid_index == NULL || *train_index == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory splitting %d examples", n);
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
bool
train_tokenizer(StudentTrainer *t, const StudentExample *examples,
				const int *train_index, const char *const *labels,
				int n_labels, CoreError *err)
{
	size_t		max_texts = 5 * (size_t) t->n_train + n_labels;
	size_t		list_bytes = max_texts * (sizeof(char *) + sizeof(size_t));
	const char **texts = counted_alloc(t, list_bytes);
	size_t	   *lens;
	size_t		n = 0;
	CoreError	why;

	if (texts == NULL)
	{
		core_error(err, t->over_budget ? CORE_ERR_LIMIT : CORE_ERR_NO_MEMORY,
				   t->over_budget
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
							 t->budget - t->used, &t->stop, &why);
	if (t->tokenizer == NULL && why.kind == CORE_ERR_INTERRUPTED)
		core_error(err, why.kind, "training was interrupted");
	else if (t->tokenizer == NULL)
		core_error(err, why.kind, "%s%s", why.message,
				   why.kind == CORE_ERR_LIMIT ? " by memory_mb" : "");
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
		len = student_prefix_len(t->tokenizer, t->tag[0].len, row->input.len) + row->label.len;
		t->longest = len > t->longest ? len : t->longest;
		len = student_prefix_len(t->tokenizer, t->tag[1].len, row->input.len) + row->rationale.len;
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
		size_t		len = strlen(e->label);
		const char *label = trim_space(e->label, &len);

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
bool
tokenize_examples(StudentTrainer *t, const StudentExample *examples,
				  int n_examples, const int *train_index,
				  const char *const *labels, int n_labels,
				  CoreError *err)
{
	if (encode_span(t, student_tag(t->tokenizer, false), INT32_MAX, false, &t->tag[0]) &&
		encode_span(t, student_tag(t->tokenizer, true), INT32_MAX, false, &t->tag[1]) &&
		tokenize_training_rows(t, examples, train_index) &&
		prepare_validation_rows(t, examples, labels, n_labels))
		return true;
	if (t->failed)
		core_error(err, t->error.kind, "%s", t->error.message);
	else if (t->over_budget)
		core_error(err, CORE_ERR_LIMIT,
				   "the tokenized examples need more memory than memory_mb (%d MB) leaves",
				   t->params.memory_mb);
	else
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory tokenizing %d examples", n_examples);
	return false;
}
