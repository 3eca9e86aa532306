/*
 * train_loop.c - trainer_advance(): each call one bounded unit of work.
 * An epoch is its steps, each one optimizer update on batch_size rows,
 * then validation, batch_size validation rows a call, answered with the
 * token-level code of student_choose() / student_generate(), then its end:
 * TRAIN_EPOCH, and a copy of the weights when the epoch is the best so far.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/student_internal.h"
#include "core/train_internal.h"
#include "core/util.h"

static double
seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
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
	if (!isfinite(trainer_update(t)))
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
									&t->error);
		return choice < 0 ? -1 : choice == row->gold;
	}
	text = student_generate_ids(t->model, t->tokenizer, t->prefix, prefix_len,
								t->params.max_target_tokens, NULL,
								&t->error);
	if (text == NULL)
		return -1;
	len = strlen(text);
	answer = trim_space(text, &len);
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
		{
			size_t		n;
			const float *params = trained_params(t, &n);

			memcpy(t->best_params, params, n * sizeof(float));
		}
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
			p->validating = true;
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
