/*
 * train.c - the StudentTrainer: from examples to a trained student, one
 * bounded unit of work per trainer_advance() call (train_loop.c).
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
 *
 * Here: trainer_create(), the model and the batch buffers it plans within
 * memory_mb, the results and trainer_free().  Preparing the examples is in
 * train_data.c, batching in train_batch.c, the loop in train_loop.c,
 * saving and restoring where training stands in train_state.c.
 */
#include "core/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/lora.h"
#include "core/student_internal.h"
#include "core/train_internal.h"
#include "core/util.h"

/* Bytes of the trainer's own batch arrays per token: tokens, weights, nll. */
#define BATCH_BYTES_PER_TOKEN (sizeof(int32_t) + 2 * sizeof(float))

/* ---------------------------------------------------------------- */
/* Small helpers */

/* Fisher-Yates; the modulo's bias is far below anything measurable here. */
void
shuffle(int *a, int n, uint64_t *state)
{
	for (int i = n - 1; i > 0; i--)
	{
		int			j = (int) (splitmix64_next(state) % (uint64_t) (i + 1));
		int			tmp = a[i];

		a[i] = a[j];
		a[j] = tmp;
	}
}

/*
 * Has the caller asked to stop?  Then training ends here, unfinished, and
 * trainer_error() says so.
 */
bool
trainer_stopping(StudentTrainer *t)
{
	if (!stop_requested(&t->stop))
		return false;
	t->failed = true;
	t->phase = PHASE_DONE;
	core_error(&t->error, CORE_ERR_INTERRUPTED, "training was interrupted");
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
void *
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
 * Sequences per forward: as many as the batch can hold (rows * 2 with
 * rationales) while the training buffers of seq_len-token sequences stay
 * within budget bytes; 0 when not even one fits.  The buffers grow
 * linearly with the number of sequences, so two sizes give the slope.
 */
/*
 * Bytes of the activations of batches of B sequences of T tokens, the
 * adapters' among them (the model's state is charged apart: state_bytes()).
 */
static size_t
training_bytes(const StudentTrainer *t, const ModelConfig *config, int B, int T)
{
	size_t		bytes = model_activation_bytes(config, B, T);

	if (t->lora.rank > 0)
		bytes += lora_activation_floats(config, &t->lora, B * T) * sizeof(float);
	return bytes;
}

/*
 * The model's state while it trains: its weights (and the adapters'), the
 * gradients and AdamW's two moments of what is trained, and the best
 * epoch's copy of it when there is validation.
 */
static StateBytes
state_bytes(const StudentParams *p, const ModelConfig *config, const LoraConfig *lora)
{
	size_t		n = model_count_params(config);
	size_t		trained = lora->rank > 0 ? lora_n_params(config, lora) : n;
	StateBytes	b = {
		.weights = (n + (lora->rank > 0 ? trained : 0)) * sizeof(float),
		.grads = trained * sizeof(float),
		.optimizer = 2 * trained * sizeof(float),
		.best = p->validation_fraction > 0.0 ? trained * sizeof(float) : 0
	};

	return b;
}

static size_t
state_total(const StateBytes *b)
{
	return b->weights + b->grads + b->optimizer + b->best;
}

static int
micro_batch_capacity(const StudentTrainer *t, const ModelConfig *config,
					 int max_seqs, int seq_len, size_t budget)
{
	size_t		one = training_bytes(t, config, 1, seq_len) +
		(size_t) seq_len * BATCH_BYTES_PER_TOKEN;
	size_t		per_seq = training_bytes(t, config, 2, seq_len) -
		training_bytes(t, config, 1, seq_len) +
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
alloc_step_arrays(StudentTrainer *t, CoreError *err)
{
	int			longest_tag = t->tag[0].len > t->tag[1].len ? t->tag[0].len : t->tag[1].len;

	t->seqs = counted_alloc(t, max_sequences(t) * sizeof(Sequence));
	t->order = counted_alloc(t, t->n_train * sizeof(int));
	t->prefix = counted_alloc(t, student_prefix_len(t->tokenizer, longest_tag, t->params.max_input_tokens) *
							  sizeof(int32_t));
	t->cand_ids = counted_alloc(t, max_candidates(t) * sizeof(int32_t *));
	t->cand_lens = counted_alloc(t, max_candidates(t) * sizeof(int));
	if (!t->seqs || !t->order || !t->prefix || !t->cand_ids || !t->cand_lens)
	{
		core_error(err, t->over_budget ? CORE_ERR_LIMIT : CORE_ERR_NO_MEMORY,
				   t->over_budget
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
 * How many sequences a micro-batch of config's model holds in what
 * memory_mb leaves: an error with the figures, before any of the model is
 * allocated, when not even one fits.
 */
static bool
plan_micro_batch(StudentTrainer *t, const ModelConfig *config, CoreError *err)
{
	size_t		one;

	t->micro_batch = micro_batch_capacity(t, config, max_sequences(t), t->longest,
										  t->budget - t->used);
	if (t->micro_batch > 0)
		return true;
	one = training_bytes(t, config, 1, t->longest) +
		(size_t) t->longest * BATCH_BYTES_PER_TOKEN;
	core_error(err, CORE_ERR_LIMIT,
			   "training needs at least %zu MB of memory_mb, not %zu: the model's state takes %zu MB, the tokenized examples %zu MB, the activations of one sequence of %d tokens %zu MB",
			   mb_up(t->used + one), t->budget >> 20, mb_up(state_total(&t->state)),
			   mb_up(t->used - state_total(&t->state)), t->longest, mb_up(one));
	return false;
}

/*
 * Charge the model's state to memory_mb before anything else, or say what
 * it takes.  With memory_mb 0 the budget is the state and work_mem_mb.
 */
static bool
charge_state(StudentTrainer *t, const StateBytes *state, CoreError *err)
{
	t->state = *state;
	t->budget = t->params.memory_mb > 0 ? (size_t) t->params.memory_mb << 20
		: state_total(state) + ((size_t) t->params.work_mem_mb << 20);
	if (charge(t, state_total(state)))
		return true;
	core_error(err, CORE_ERR_LIMIT,
			   "training needs more than memory_mb (%d MB) for the model's state alone: %zu MB of weights, %zu MB of gradients, %zu MB of AdamW's moments and %zu MB for the best epoch's copy",
			   t->params.memory_mb, mb_up(state->weights), mb_up(state->grads),
			   mb_up(state->optimizer), mb_up(state->best));
	return false;
}

/* The state of the model actually built, which may be smaller than planned. */
static void
settle_state(StudentTrainer *t, const ModelConfig *config)
{
	StateBytes	actual = state_bytes(&t->params, config, &t->lora);

	t->used -= state_total(&t->state) - state_total(&actual);
	t->state = actual;
}

/* The configuration of a model trained from scratch. */
static void
scratch_config(const StudentParams *p, int vocab_size, ModelConfig *config)
{
	model_config_default(config, vocab_size, p->d_model, p->n_layers, p->n_heads);
	if (p->d_ff > 0)
		config->d_ff = p->d_ff;
	config->tied_embeddings = p->tied_embeddings;
	config->prefix_lm = p->prefix_lm;
	config->dropout = (float) p->dropout;
}

static bool
plan_model(StudentTrainer *t, ModelConfig *config, CoreError *err)
{
	const StudentParams *p = &t->params;

	scratch_config(p, tok_vocab_size(t->tokenizer), config);
	config->max_seq_len = student_sequence_limit(t->tokenizer, p->max_input_tokens,
												 p->max_target_tokens);
	if (config->max_seq_len < 0)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory sizing the model");
		return false;
	}
	if (!model_config_validate(config, err))
		return false;
	settle_state(t, config);
	return plan_micro_batch(t, config, err);
}

/*
 * A base's model as the student: its own configuration with the params'
 * mask and dropout, and a context that holds the longest sequence.
 */
static bool
adapt_base(StudentTrainer *t, CoreError *err)
{
	ModelConfig *config = &t->model->config;
	int			needed = student_sequence_limit(t->tokenizer, t->params.max_input_tokens,
												t->params.max_target_tokens);

	if (needed < 0)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory sizing the model");
		return false;
	}
	if (needed > config->max_seq_len)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "sequences of max_input_tokens %d and max_target_tokens %d take up to %d tokens, more than the base's context of %d: lower them",
				   t->params.max_input_tokens, t->params.max_target_tokens, needed,
				   config->max_seq_len);
		return false;
	}
	config->prefix_lm = t->params.prefix_lm;
	config->dropout = (float) t->params.dropout;
	model_seed_dropout(t->model, t->params.seed);
	model_free_packed(t->model);	/* it would not follow the training */
	return plan_micro_batch(t, config, err) &&
		(t->lora.rank == 0 || lora_attach(t->model, &t->lora, t->params.seed, err));
}

static bool
build_optimizer(StudentTrainer *t, CoreError *err)
{
	const StudentParams *p = &t->params;
	int			total_steps = p->epochs * t->steps_per_epoch;
	OptimConfig optim;

	optim_config_default(&optim, (float) p->lr, total_steps);
	optim.warmup_steps = (int) (p->warmup_fraction * total_steps + 0.5);
	optim.weight_decay = (float) p->weight_decay;
	optim.grad_clip = (float) p->grad_clip;
	t->optim = t->model->lora != NULL
		? optim_create_for(t->model->lora->n_params, &optim, err)
		: optim_create(t->model, &optim, err);
	return t->optim != NULL;
}

float *
trained_params(const StudentTrainer *t, size_t *n)
{
	const LoraAdapters *lora = t->model->lora;

	*n = lora != NULL ? lora->n_params : t->model->n_params;
	return lora != NULL ? lora->params : t->model->params;
}

float
trainer_update(StudentTrainer *t)
{
	ParamBlock	block;

	if (t->model->lora != NULL)
		return optim_step_block(t->optim, lora_param_block(t->model, &block));
	return optim_step(t->optim, t->model);
}

static bool
build_model(StudentTrainer *t, const ModelConfig *config, CoreError *err)
{
	t->model = model_create(config, err);
	if (t->model == NULL)
		return false;
	model_init_weights(t->model, t->params.seed);
	return true;
}

/* The batch buffers of micro-batches of t->micro_batch sequences. */
static bool
alloc_buffers(StudentTrainer *t, CoreError *err)
{
	size_t		cells = (size_t) t->micro_batch * t->longest;
	size_t		n_trained;

	if (!model_alloc_training(t->model, t->micro_batch, t->longest, err))
		return false;
	(void) trained_params(t, &n_trained);
	t->tokens = malloc(cells * sizeof(int32_t));
	t->lengths = malloc(t->micro_batch * sizeof(int32_t));
	t->prefix_lengths = malloc(t->micro_batch * sizeof(int32_t));
	t->weights = malloc(cells * sizeof(float));
	t->token_nll = malloc(cells * sizeof(float));
	if (t->n_valid > 0)
		t->best_params = malloc(n_trained * sizeof(float));
	if (!t->tokens || !t->lengths || !t->prefix_lengths || !t->weights ||
		!t->token_nll || (t->n_valid > 0 && !t->best_params))
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for batches of %d x %d tokens",
				   t->micro_batch, t->longest);
		return false;
	}
	return true;
}

/*
 * What both ways of training share: the checks, the split, and a trainer
 * with its tokenizer (base's, else trained on the training rows).  Takes
 * base over.
 */
static StudentTrainer *
trainer_begin(const StudentParams *params, Student *base, const LoraConfig *lora,
			  const ModelConfig *planned, const StudentExample *examples,
			  int n_examples, const char *const *labels, int n_labels,
			  const StopCheck *stop, CoreError *err)
{
	StateBytes	state;

	StudentTrainer *t;
	int		   *train_index = NULL;

	if (!student_params_validate(params, err) ||
		!check_examples(examples, n_examples, labels, n_labels, err) ||
		(base != NULL && !student_layout_possible(base->tokenizer, err)))
	{
		student_free(base);
		return NULL;
	}
	t = calloc(1, sizeof(StudentTrainer));
	if (t == NULL)
	{
		core_error(err, CORE_ERR_NO_MEMORY, "out of memory for a trainer");
		student_free(base);
		return NULL;
	}
	t->params = *params;
	t->lora = *lora;
	if (stop != NULL)
		t->stop = *stop;
	t->shuffle_state = params->seed ^ 0x0DE75EEDull;
	t->best_accuracy = NAN;
	t->epoch = 1;
	if (base != NULL)
	{
		t->tokenizer = base->tokenizer;
		t->model = base->model;
		base->tokenizer = NULL;
		base->model = NULL;
		student_free(base);
	}
	state = state_bytes(params, planned, lora);
	if (!charge_state(t, &state, err) ||
		!split_examples(t, n_examples, &train_index, err) ||
		(base == NULL &&
		 !train_tokenizer(t, examples, train_index, labels, n_labels, err)) ||
		!tokenize_examples(t, examples, n_examples, train_index, labels, n_labels,
						   err))
		goto fail;
	t->steps_per_epoch = (t->n_train + params->batch_size - 1) / params->batch_size;
	if ((int64_t) t->steps_per_epoch * params->epochs > INT32_MAX)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "%d epochs of %d steps are too many",
				   params->epochs, t->steps_per_epoch);
		goto fail;
	}
	if (!alloc_step_arrays(t, err))
		goto fail;
	free(train_index);
	return t;

fail:
	free(train_index);
	trainer_free(t);
	return NULL;
}

StudentTrainer *
trainer_create(const StudentParams *params, const StudentExample *examples,
			   int n_examples, const char *const *labels, int n_labels,
			   const StopCheck *stop, CoreError *err)
{
	StudentTrainer *t;
	ModelConfig config;
	const LoraConfig no_lora = {0};

	if (params->lora_rank > 0)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "LoRA adapters need a pretrained base: a model from scratch trains every weight");
		return NULL;
	}
	/* the largest the model can be: the tokenizer has not been trained */
	scratch_config(params, params->vocab_size, &config);
	t = trainer_begin(params, NULL, &no_lora, &config, examples, n_examples, labels,
					  n_labels, stop, err);

	if (t != NULL &&
		!(plan_model(t, &config, err) &&
		  build_model(t, &config, err) &&
		  build_optimizer(t, err) &&
		  alloc_buffers(t, err)))
	{
		trainer_free(t);
		return NULL;
	}
	return t;
}

StudentTrainer *
trainer_create_on_base(const StudentParams *params, Student *base,
					   const StudentExample *examples, int n_examples,
					   const char *const *labels, int n_labels,
					   const StopCheck *stop, CoreError *err)
{
	StudentTrainer *t;
	LoraConfig	lora = {0};

	if (base == NULL || base->model->plain_released)
	{
		core_error(err, CORE_ERR_INVALID_INPUT,
				   "the base must be loaded with its weights for training");
		student_free(base);
		return NULL;
	}
	if (!student_params_validate(params, err))
	{
		student_free(base);
		return NULL;
	}
	if (params->lora_rank > 0)
	{
		lora.rank = params->lora_rank;
		lora.alpha = (float) (params->lora_alpha > 0.0 ? params->lora_alpha
							  : 2.0 * params->lora_rank);
		lora.targets = params->lora_targets;
		if (!lora_config_validate(&lora, &base->model->config, err))
		{
			student_free(base);
			return NULL;
		}
	}
	t = trainer_begin(params, base, &lora, &base->model->config, examples, n_examples,
					  labels, n_labels, stop, err);
	if (t != NULL &&
		!(adapt_base(t, err) &&
		  build_optimizer(t, err) &&
		  alloc_buffers(t, err)))
	{
		trainer_free(t);
		return NULL;
	}
	return t;
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
trainer_memory_mb(const StudentTrainer *t)
{
	return (int) mb_up(t->budget);
}

int
trainer_micro_batch_size(const StudentTrainer *t)
{
	return t->micro_batch;
}

int
trainer_steps_done(const StudentTrainer *t)
{
	return t->step;
}

int
trainer_epochs_done(const StudentTrainer *t)
{
	return t->epoch - 1 < t->params.epochs ? t->epoch - 1 : t->params.epochs;
}

const CoreError *
trainer_error(const StudentTrainer *t)
{
	return t->failed ? &t->error : NULL;
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
	{
		size_t		n;
		float	   *params = trained_params(t, &n);

		memcpy(params, t->best_params, n * sizeof(float));
	}
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
