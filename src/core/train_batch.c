/*
 * train_batch.c - a step's sequences: collected from the batch's rows,
 * sorted by length, cut into micro-batches that pad little and fit the
 * buffers, and run forward and backward (the gradients add up).
 */
#include <stdlib.h>
#include <string.h>

#include "core/student_internal.h"
#include "core/train_internal.h"
#include "core/util.h"

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
int
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
			s->prefix_len = student_prefix_len(t->tokenizer, t->tag[explain].len, row->input.len);
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
			tokens[j] = student_padding(t->tokenizer);
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

int
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
int
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
