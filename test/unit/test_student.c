/*
 * test_student.c - the student as the glue sees it: parameters, training
 * through trainer_advance(), prediction in text, save and load.
 *
 * The numerics of the model are model_test's business; here the string-
 * level wrappers are checked against the training forward, and the
 * trainer's bookkeeping against what the student it returns answers.
 *
 * "test_student quick" runs a reduced set (for valgrind).
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/trainer.h"
#include "core/student_internal.h"
#include "unit.h"

/* ---------------------------------------------------------------- */
/* Data */

static const char *const kinds[] = {"fruit", "animal", "vehicle"};

/* Per-row choices, one listed twice (CommonsenseQA has such rows). */
static const char *const kinds_twice[] = {"fruit", "animal", "vehicle", "animal"};

/* Eight rows, three labels, a rationale each. */
static const StudentExample tiny_rows[] = {
	{"red apple", "fruit", "an apple is a fruit", NULL, 0},
	{"green pear", "fruit", "a pear is a fruit", NULL, 0},
	{"big dog", "animal", "a dog is an animal", NULL, 0},
	{"small cat", "animal", "a cat is an animal", NULL, 0},
	{"fast car", "vehicle", "a car is a vehicle", NULL, 0},
	{"old bus", "vehicle", "a bus is a vehicle", NULL, 0},
	{"ripe plum", "fruit", "a plum is a fruit", NULL, 0},
	{"wild horse", "animal", "a horse is an animal", NULL, 0},
};
#define N_TINY 8

/*
 * Synthetic rows: random words of one of three families; the label is the
 * family with the most words, the rationale names it.
 */
typedef struct Synthetic
{
	StudentExample *rows;
	char	  **texts;			/* every malloc'd string, to free */
	int			n_texts;
} Synthetic;

static const char *const family_words[3][6] = {
	{"apple", "pear", "plum", "grape", "melon", "cherry"},
	{"dog", "cat", "horse", "mouse", "tiger", "whale"},
	{"car", "bus", "train", "truck", "boat", "plane"},
};

static uint64_t rng = 7;

static int
random_below(int n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (int) ((rng >> 33) % (uint64_t) n);
}

static char *
keep(Synthetic *s, char *text)
{
	s->texts[s->n_texts++] = text;
	return text;
}

static Synthetic
make_synthetic(int n, int words, bool with_choices)
{
	Synthetic	s;

	s.rows = calloc(n, sizeof(StudentExample));
	s.texts = calloc(3 * n, sizeof(char *));
	s.n_texts = 0;
	for (int i = 0; i < n; i++)
	{
		char	   *input = keep(&s, calloc(words * 8 + 1, 1));
		char	   *rationale = keep(&s, malloc(64));
		int			count[3] = {0, 0, 0};
		int			label = 0;

		for (int w = 0; w < words; w++)
		{
			int			f = random_below(3);

			count[f]++;
			strcat(input, w ? " " : "");
			strcat(input, family_words[f][random_below(6)]);
		}
		for (int f = 1; f < 3; f++)
			label = count[f] > count[label] ? f : label;
		snprintf(rationale, 64, "most words name a %s", kinds[label]);
		s.rows[i].input = input;
		s.rows[i].label = kinds[label];
		s.rows[i].rationale = rationale;
		if (with_choices)
		{
			s.rows[i].choices = kinds_twice;
			s.rows[i].n_choices = 4;
		}
	}
	return s;
}

static void
free_synthetic(Synthetic *s)
{
	for (int i = 0; i < s->n_texts; i++)
		free(s->texts[i]);
	free(s->texts);
	free(s->rows);
}

/* ---------------------------------------------------------------- */
/* Helpers */

static void
tiny_params(StudentParams *p)
{
	student_params_default(p);
	p->d_model = 32;
	p->n_layers = 2;
	p->n_heads = 2;
	p->vocab_size = 300;
	p->batch_size = 8;
	p->max_input_tokens = 16;
	p->max_target_tokens = 16;
	p->lr = 1e-2;
	p->dropout = 0.0;
	p->validation_fraction = 0.0;
	p->log_every = 1;
}

/* Run a trainer to the end; count its events. */
static void
run_trainer(StudentTrainer *t, int *n_steps, int *n_epochs,
			double *last_label_loss, double *last_rationale_loss)
{
	TrainProgress p;
	TrainEvent	e;

	*n_steps = *n_epochs = 0;
	while ((e = trainer_advance(t, &p)) != TRAIN_DONE)
		if (e == TRAIN_STEP)
		{
			(*n_steps)++;
			*last_label_loss = p.label_loss;
			*last_rationale_loss = p.rationale_loss;
		}
		else if (e == TRAIN_EPOCH)
			(*n_epochs)++;
}

static Student *
train(const StudentParams *params, const StudentExample *rows, int n,
	  const char *const *labels, int n_labels)
{
	CoreError	err = {0};
	StudentTrainer *t = trainer_create(params, rows, n, labels, n_labels, NULL,
									   &err);
	Student    *s;
	int			steps,
				epochs;
	double		label_loss,
				rationale_loss;

	CHECKF(t != NULL, "%s", err.message);
	if (t == NULL)
		return NULL;
	run_trainer(t, &steps, &epochs, &label_loss, &rationale_loss);
	s = trainer_take_best(t);
	CHECKF(s != NULL, "no student after training: %s",
		   trainer_error(t) ? trainer_error(t)->message : "(no error)");
	trainer_free(t);
	return s;
}

static bool
same_bytes(const void *a, size_t na, const void *b, size_t nb)
{
	return na == nb && memcmp(a, b, na) == 0;
}


/* ---------------------------------------------------------------- */
/* Parameters */

typedef struct BadParam
{
	const char *name;			/* must appear in the message */
	void		(*spoil) (StudentParams *p);
} BadParam;

static void spoil_d_model(StudentParams *p) { p->d_model = 8; }
static void spoil_d_model_heads(StudentParams *p) { p->d_model = 100; p->n_heads = 3; }
static void spoil_head_dim(StudentParams *p) { p->d_model = 48; p->n_heads = 16; }
static void spoil_n_layers(StudentParams *p) { p->n_layers = 0; }
static void spoil_n_heads(StudentParams *p) { p->n_heads = 0; }
static void spoil_d_ff(StudentParams *p) { p->d_ff = 3; }
static void spoil_vocab(StudentParams *p) { p->vocab_size = 259; }
static void spoil_epochs(StudentParams *p) { p->epochs = 1001; }
static void spoil_batch(StudentParams *p) { p->batch_size = 0; }
static void spoil_input(StudentParams *p) { p->max_input_tokens = 7; }
static void spoil_target(StudentParams *p) { p->max_target_tokens = 1025; }
static void spoil_lr(StudentParams *p) { p->lr = 0.0; }
static void spoil_lr_nan(StudentParams *p) { p->lr = NAN; }
static void spoil_lambda_inf(StudentParams *p) { p->rationale_weight = INFINITY; }
static void spoil_lambda_nan(StudentParams *p) { p->rationale_weight = NAN; }
static void spoil_decay_nan(StudentParams *p) { p->weight_decay = NAN; }
static void spoil_clip_inf(StudentParams *p) { p->grad_clip = INFINITY; }
static void spoil_dropout_nan(StudentParams *p) { p->dropout = NAN; }
static void spoil_warmup_nan(StudentParams *p) { p->warmup_fraction = NAN; }
static void spoil_validation_inf(StudentParams *p) { p->validation_fraction = -INFINITY; }
static void spoil_decay(StudentParams *p) { p->weight_decay = -0.1; }
static void spoil_warmup(StudentParams *p) { p->warmup_fraction = 1.5; }
static void spoil_clip(StudentParams *p) { p->grad_clip = -1.0; }
static void spoil_dropout(StudentParams *p) { p->dropout = 0.95; }
static void spoil_validation(StudentParams *p) { p->validation_fraction = 0.6; }
static void spoil_lambda(StudentParams *p) { p->rationale_weight = 101.0; }
static void spoil_log(StudentParams *p) { p->log_every = 0; }
static void spoil_memory(StudentParams *p) { p->memory_mb = 1; }

/*
 * A model whose weights cannot be stored (a bytea stops at 1 GB) is refused
 * before any training, with the figures; one just below the limit passes.
 */
static void
test_params_storable(void)
{
	StudentParams p;
	CoreError	err = {0};

	student_params_default(&p);
	p.d_model = 2048;
	p.n_layers = 16;
	p.n_heads = 16;
	p.vocab_size = 65536;
	CHECKF(!student_params_validate(&p, &err) &&
		   err.kind == CORE_ERR_LIMIT &&
		   strstr(err.message, "a model of 940640256 parameters takes 3589 MB of weights, "
				  "more than the 1000 MB a stored model holds") != NULL, "%s", err.message);
	p.d_ff = 4096;
	p.vocab_size = 4096;
	p.n_layers = 6;				/* 260 million parameters: 992 MB */
	CHECKF(student_params_validate(&p, &err), "%s", err.message);
	p.n_layers = 7;				/* 302 million: 1153 MB */
	CHECKF(!student_params_validate(&p, &err) &&
		   strstr(err.message, "302020608 parameters takes 1153 MB") != NULL, "%s", err.message);
}

static void
test_params(void)
{
	static const BadParam bad[] = {
		{"d_model", spoil_d_model},
		{"d_model", spoil_d_model_heads},
		{"heads", spoil_head_dim},
		{"layers", spoil_n_layers},
		{"heads", spoil_n_heads},
		{"d_ff", spoil_d_ff},
		{"vocab_size", spoil_vocab},
		{"epochs", spoil_epochs},
		{"batch_size", spoil_batch},
		{"max_input_tokens", spoil_input},
		{"max_target_tokens", spoil_target},
		{"lr", spoil_lr},
		{"lr", spoil_lr_nan},
		{"rationale_weight must be a finite number", spoil_lambda_inf},
		{"rationale_weight must be a finite number", spoil_lambda_nan},
		{"weight_decay must be a finite number", spoil_decay_nan},
		{"grad_clip must be a finite number", spoil_clip_inf},
		{"dropout must be a finite number", spoil_dropout_nan},
		{"warmup_fraction must be a finite number", spoil_warmup_nan},
		{"validation_fraction must be a finite number", spoil_validation_inf},
		{"weight_decay", spoil_decay},
		{"warmup_fraction", spoil_warmup},
		{"grad_clip", spoil_clip},
		{"dropout", spoil_dropout},
		{"validation_fraction", spoil_validation},
		{"rationale_weight", spoil_lambda},
		{"log_every", spoil_log},
		{"memory_mb", spoil_memory},
	};
	StudentParams p;
	CoreError	err = {0};

	student_params_default(&p);
	CHECK(p.d_model == 256 && p.n_layers == 4 && p.n_heads == 4 && p.d_ff == 0);
	CHECK(p.vocab_size == 4096 && p.epochs == 10 && p.batch_size == 32);
	CHECK(p.max_input_tokens == 128 && p.max_target_tokens == 64);
	CHECK(p.lr == 1e-3 && p.weight_decay == 0.01 && p.warmup_fraction == 0.05);
	CHECK(p.grad_clip == 1.0 && p.dropout == 0.1 && p.validation_fraction == 0.1);
	CHECK(p.rationale_weight == 1.0 && p.prefix_lm && p.tied_embeddings);
	CHECK(p.seed == 1 && p.log_every == 10);
	CHECKF(student_params_validate(&p, &err), "%s", err.message);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		student_params_default(&p);
		bad[i].spoil(&p);
		err.message[0] = '\0';
		CHECKF(!student_params_validate(&p, &err) &&
			   strstr(err.message, bad[i].name) != NULL,
			   "case %zu (%s): \"%s\"", i, bad[i].name, err.message);
	}
	test_params_storable();
}

static void
test_bad_examples(void)
{
	StudentParams p;
	StudentExample rows[3] = {tiny_rows[0], tiny_rows[1], tiny_rows[2]};
	CoreError	err = {0};

	tiny_params(&p);
	CHECK(trainer_create(&p, rows, 1, NULL, 0, NULL, &err) == NULL &&
		  strstr(err.message, "at least 2") != NULL);
	p.validation_fraction = 0.1;	/* 2 rows: 1 held out, 1 left */
	err.message[0] = '\0';
	CHECK(trainer_create(&p, rows, 2, NULL, 0, NULL, &err) == NULL &&
		  strstr(err.message, "validation_fraction") != NULL);
	p.validation_fraction = 0.0;
	rows[1].label = NULL;
	err.message[0] = '\0';
	CHECK(trainer_create(&p, rows, 3, NULL, 0, NULL, &err) == NULL &&
		  err.kind == CORE_ERR_INVALID_INPUT &&
		  strstr(err.message, "example 2 has no label") != NULL);
	p.epochs = 0;
	err.message[0] = '\0';
	CHECK(trainer_create(&p, rows, 3, NULL, 0, NULL, &err) == NULL &&
		  strstr(err.message, "epochs") != NULL);

	/* a label set or a row's choices a prediction could not score */
	{
		static const char *many[STUDENT_MAX_CANDIDATES + 1];

		for (int k = 0; k <= STUDENT_MAX_CANDIDATES; k++)
			many[k] = "fruit";
		tiny_params(&p);
		rows[1] = tiny_rows[1];
		CHECKF(trainer_create(&p, rows, 3, many, STUDENT_MAX_CANDIDATES + 1, NULL,
							  &err) == NULL &&
			   err.kind == CORE_ERR_LIMIT &&
			   strstr(err.message, "the label set has 1001 candidates, more than the 1000") != NULL,
			   "%s", err.message);
		rows[2].choices = many;
		rows[2].n_choices = STUDENT_MAX_CANDIDATES + 1;
		CHECKF(trainer_create(&p, rows, 3, NULL, 0, NULL, &err) == NULL &&
			   strstr(err.message, "example 3 has 1001 candidates") != NULL, "%s", err.message);
	}
}

/* ---------------------------------------------------------------- */
/* Training */

/* Memorize eight rows: every label chosen right, a rationale recited. */
static Student *
test_overfit(void)
{
	StudentParams p;
	Student    *s;
	int			right = 0;
	CoreError	err = {0};
	char	   *text;

	tiny_params(&p);
	p.epochs = 60;
	s = train(&p, tiny_rows, N_TINY, kinds, 3);
	if (s == NULL)
		return NULL;
	for (int i = 0; i < N_TINY; i++)
	{
		double		probs[3];
		int			k = student_choose(s, tiny_rows[i].input, kinds, 3, probs,
									   &err);

		CHECKF(k >= 0, "%s", err.message);
		CHECK(fabs(probs[0] + probs[1] + probs[2] - 1.0) < 1e-9);
		right += k >= 0 && strcmp(kinds[k], tiny_rows[i].label) == 0;
	}
	CHECKF(right == N_TINY, "%d of %d right", right, N_TINY);

	text = student_generate(s, "explain", "big dog", &err);
	CHECKF(text != NULL && strcmp(text, "a dog is an animal") == 0,
		   "explain: \"%s\" %s", text ? text : "(null)", err.message);
	free(text);
	text = student_generate(s, "predict", "old bus", &err);
	CHECKF(text != NULL && strcmp(text, "vehicle") == 0,
		   "predict: \"%s\" %s", text ? text : "(null)", err.message);
	free(text);

	err.message[0] = '\0';
	CHECK(student_generate(s, "summarize", "x", &err) == NULL &&
		  err.kind == CORE_ERR_INVALID_INPUT && strstr(err.message, "task") != NULL);
	err.message[0] = '\0';
	CHECK(student_choose(s, "x", kinds, 0, NULL, &err) == -1 &&
		  err.message[0] != '\0');
	return s;
}

/*
 * student_choose() against the training forward: the log-ratio of two
 * candidates' probabilities is the difference of their sequence losses.
 */
static void
test_choose_matches_forward(Student *s)
{
	const char *input = "ripe plum";
	const char *const cands[2] = {"fruit", "a whale of a time"};
	double		probs[2];
	double		loss[2];
	int32_t    *tag,
			   *in;
	int			n_tag = student_encode(s->tokenizer, STUDENT_PREDICT_TAG, 1000, &tag);
	int			n_in = student_encode(s->tokenizer, input, s->max_input_tokens, &in);
	CoreError	err = {0};

	CHECKF(model_alloc_training(s->model, 1, s->model->config.max_seq_len, &err),
		   "%s", err.message);
	for (int k = 0; k < 2; k++)
	{
		int32_t    *target;
		int			n_target = student_encode_target(s->tokenizer, cands[k],
													 s->max_target_tokens, &target);
		int32_t		tokens[256];
		float		weights[256] = {0};
		int32_t		len,
					prefix_len;
		ModelBatch	batch;

		prefix_len = student_write_prefix(s->tokenizer, tag, n_tag, in, n_in, tokens);
		memcpy(tokens + prefix_len, target, n_target * sizeof(int32_t));
		len = prefix_len + n_target;
		for (int j = prefix_len; j < len; j++)
			weights[j] = 1.0f;
		batch = (ModelBatch) {1, len, tokens, &len, &prefix_len, weights, NULL};
		loss[k] = model_forward(s->model, &batch, false);
		free(target);
	}
	model_free_training(s->model);
	CHECK(student_choose(s, input, cands, 2, probs, &err) == 0);
	CHECKF(fabs(log(probs[0] / probs[1]) - (loss[1] - loss[0])) < 1e-3,
		   "log-ratio %g, loss difference %g", log(probs[0] / probs[1]),
		   loss[1] - loss[0]);
	free(tag);
	free(in);
}

/* step_by_step and label-only both train; the rationale loss is reported. */
static void
test_rationale_loss(void)
{
	StudentParams p;
	CoreError	err = {0};

	tiny_params(&p);
	p.epochs = 3;
	p.batch_size = 4;
	for (int with = 0; with <= 1; with++)
	{
		StudentTrainer *t;
		int			steps,
					epochs;
		double		label_loss = NAN,
					rationale_loss = NAN;

		p.rationale_weight = with ? 1.0 : 0.0;
		t = trainer_create(&p, tiny_rows, N_TINY, kinds, 3, NULL, &err);
		CHECKF(t != NULL, "%s", err.message);
		if (t == NULL)
			continue;
		run_trainer(t, &steps, &epochs, &label_loss, &rationale_loss);
		CHECK(steps == 6 && epochs == 3);
		CHECKF(isfinite(label_loss) && label_loss > 0.0, "label loss %g", label_loss);
		if (with)
			CHECKF(isfinite(rationale_loss) && rationale_loss > 0.0,
				   "rationale loss %g", rationale_loss);
		else
			CHECKF(isnan(rationale_loss), "rationale loss %g", rationale_loss);
		CHECK(trainer_error(t) == NULL);
		trainer_free(t);
	}
}

static void
test_determinism(void)
{
	StudentParams p;
	void	   *blob[3];
	size_t		len[3];

	tiny_params(&p);
	p.epochs = 2;
	p.batch_size = 3;
	p.dropout = 0.1;
	for (int i = 0; i < 3; i++)
	{
		Student    *s;

		p.seed = i < 2 ? 11 : 12;
		s = train(&p, tiny_rows, N_TINY, kinds, 3);
		blob[i] = s ? student_save_weights(s, &len[i]) : NULL;
		student_free(s);
	}
	CHECK(blob[0] && blob[1] && blob[2]);
	if (blob[0] && blob[1] && blob[2])
	{
		CHECK(same_bytes(blob[0], len[0], blob[1], len[1]));
		CHECK(!same_bytes(blob[0], len[0], blob[2], len[2]));
	}
	for (int i = 0; i < 3; i++)
		free(blob[i]);
}

/*
 * How the returned student does on the trainer's validation rows, by
 * labels (closed set), by each row's choices, or by decoding.
 */
static double
student_accuracy(const Student *s, const StudentTrainer *t,
				 const StudentExample *rows, const char *const *labels,
				 int n_labels, AnswerMetric metric)
{
	const int  *index = trainer_validation_index(t);
	int			n = trainer_validation_examples(t);
	int			right = 0;
	CoreError	err = {0};

	for (int i = 0; i < n; i++)
	{
		const StudentExample *e = &rows[index[i]];
		const char *const *cands = n_labels > 0 ? labels : e->choices;
		int			n_cands = n_labels > 0 ? n_labels : e->n_choices;

		if (n_cands > 0)
		{
			int			k = student_choose(s, e->input, cands, n_cands, NULL,
										   &err);

			right += k >= 0 && strcmp(cands[k], e->label) == 0;
		}
		else
		{
			char	   *text = student_generate(s, "predict", e->input, &err);

			right += text != NULL && answer_matches(metric, text, e->label);
			free(text);
		}
	}
	return (double) right / n;
}

/*
 * Validation by the label set, by per-row choices and by decoding: the
 * best epoch is marked, and the student returned answers the validation
 * rows exactly as well as the trainer measured.
 */
static void
test_validation(const char *what, const StudentExample *rows, int n,
				const char *const *labels, int n_labels, AnswerMetric metric,
				int epochs)
{
	StudentParams p;
	StudentTrainer *t;
	TrainProgress prog;
	TrainEvent	e;
	Student    *s;
	CoreError	err = {0};
	int			n_epochs = 0;
	int			best_seen = 0;
	double		best_seen_acc = -1.0;

	tiny_params(&p);
	p.epochs = epochs;
	p.batch_size = 16;
	p.validation_fraction = 0.25;
	p.log_every = 5;
	p.validation_metric = metric;
	t = trainer_create(&p, rows, n, labels, n_labels, NULL, &err);
	CHECKF(t != NULL, "%s: %s", what, err.message);
	if (t == NULL)
		return;
	CHECK(trainer_validation_examples(t) == n / 4);
	CHECK(trainer_train_examples(t) == n - n / 4);
	CHECK(trainer_rationale_examples(t) == n - n / 4);
	while ((e = trainer_advance(t, &prog)) != TRAIN_DONE)
	{
		CHECK(prog.total_steps == epochs * ((n - n / 4 + 15) / 16));
		if (e != TRAIN_EPOCH)
			continue;
		n_epochs++;
		CHECK(prog.epoch == n_epochs);
		CHECK(prog.val_accuracy >= 0.0 && prog.val_accuracy <= 1.0);
		CHECK(prog.best == (prog.val_accuracy > best_seen_acc));
		if (prog.best)
		{
			best_seen = prog.epoch;
			best_seen_acc = prog.val_accuracy;
		}
	}
	CHECK(n_epochs == epochs && prog.step == prog.total_steps);
	CHECK(trainer_best_epoch(t) == best_seen);
	CHECK(trainer_best_accuracy(t) == best_seen_acc);
	s = trainer_take_best(t);
	CHECK(s != NULL && trainer_take_best(t) == NULL);
	CHECK(trainer_advance(t, &prog) == TRAIN_DONE);
	if (s != NULL)
	{
		double		acc = student_accuracy(s, t, rows, labels, n_labels, metric);

		printf("  validation by %s: best epoch %d of %d, accuracy %.3f\n",
			   what, best_seen, epochs, acc);
		CHECKF(acc == trainer_best_accuracy(t), "%s: student %g, trainer %g",
			   what, acc, trainer_best_accuracy(t));
	}
	student_free(s);
	trainer_free(t);
}

/*
 * Steps whose gradient is not finite are skipped and counted, and the rest
 * goes on: here every step, from weights poisoned with NaN.
 */
static void
test_skipped_steps(void)
{
	StudentParams p;
	StudentTrainer *t;
	TrainProgress prog;
	TrainEvent	e;
	Student    *s;
	Model	   *model;
	CoreError	err = {0};
	int			epochs = 0;

	tiny_params(&p);
	p.epochs = 2;
	p.batch_size = 3;
	p.validation_fraction = 0.25;
	t = trainer_create(&p, tiny_rows, N_TINY, NULL, 0, NULL, &err);
	CHECKF(t != NULL, "%s", err.message);
	if (t == NULL)
		return;
	model = (Model *) trainer_model(t);	/* the test's licence to poison it */
	model->w.final_norm[0] = NAN;
	while ((e = trainer_advance(t, &prog)) != TRAIN_DONE)
		epochs += e == TRAIN_EPOCH;
	CHECK(epochs == 2 && prog.step == prog.total_steps);
	CHECKF(prog.skipped_steps == prog.total_steps, "%d of %d skipped",
		   prog.skipped_steps, prog.total_steps);
	CHECK(trainer_error(t) == NULL);
	s = trainer_take_best(t);
	CHECK(s != NULL && trainer_model(t) == NULL);
	if (s != NULL)
	{
		char	   *text = student_generate(s, "explain", "big dog", &err);

		CHECKF(text != NULL, "%s", err.message);	/* whatever a NaN model says */
		free(text);
	}
	student_free(s);
	trainer_free(t);
}

static void
test_utf8(void)
{
	static const struct
	{
		const char *in;
		size_t		len;
		const char *out;
	}			cases[] = {
		{"plain", 5, "plain"},
		{"caf\xc3\xa9", 5, "caf\xc3\xa9"},
		{"caf\xc3", 4, "caf"},				/* cut inside a character */
		{"a\0b", 3, "ab"},					/* NUL */
		{"\xc0\xafx", 3, "x"},				/* overlong "/" */
		{"\xed\xa0\x80y", 4, "y"},			/* surrogate */
		{"\xf0\x9f\x99\x82!", 5, "\xf0\x9f\x99\x82!"},
		{"\xf4\x90\x80\x80z", 5, "z"},		/* above U+10FFFF */
		{"\x80\xbf", 2, ""},					/* stray continuation bytes */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		buf[16];

		memcpy(buf, cases[i].in, cases[i].len);
		student_keep_valid_utf8(buf, cases[i].len);
		CHECKF(strcmp(buf, cases[i].out) == 0, "case %zu", i);
	}
}

/* ---------------------------------------------------------------- */
/* Tokens as the model reads them */

/* The token texts of a prefix, joined. */
static char *
joined_prefix(const Student *s, const char *task, const char *input, int *n)
{
	int32_t    *ids;
	CoreError	err = {0};
	char	   *joined = calloc(4096, 1);

	*n = student_prefix_tokens(s, task, input, &ids, &err);
	CHECKF(*n > 0, "%s", err.message);
	for (int i = 0; i < *n; i++)
	{
		char	   *piece = student_token_text(s, ids[i]);

		strncat(joined, piece, 4095 - strlen(joined));
		free(piece);
	}
	free(ids);
	return joined;
}

static void
test_prefix_tokens(const Student *s)
{
	CoreError	err = {0};
	int32_t    *ids;
	int			n;
	char	   *text;
	char		long_input[4096];
	char		euro[] = "\xe2\x82\xac";	/* U+20AC, three bytes */
	char	   *piece;

	text = joined_prefix(s, "predict", "big dog", &n);
	CHECKF(strcmp(text, "<bos>predict: big dog<sep>") == 0, "%s", text);
	free(text);
	text = joined_prefix(s, "explain", "", &n);
	CHECKF(strcmp(text, "<bos>explain: <sep>") == 0, "%s", text);
	free(text);

	/* the input is cut to max_input_tokens, as in training and prediction */
	memset(long_input, 'x', sizeof(long_input) - 1);
	long_input[sizeof(long_input) - 1] = '\0';
	text = joined_prefix(s, "predict", "", &n);
	free(text);
	CHECK(student_prefix_tokens(s, "predict", long_input, &ids, &err) ==
		  n + s->max_input_tokens);
	free(ids);

	CHECK(student_prefix_tokens(s, "summarize", "x", &ids, &err) == -1 &&
		  ids == NULL && strstr(err.message, "predict") != NULL);

	/* a byte of a multibyte character that is a token by itself */
	piece = student_token_text(s, (uint8_t) euro[0]);
	CHECKF(strcmp(piece, "<0xE2>") == 0, "%s", piece);
	free(piece);
}

/* ---------------------------------------------------------------- */
/* Save and load */

static void
test_save_load(Student *s, bool every_truncation)
{
	size_t		tok_len,
				w_len;
	void	   *tok = student_save_tokenizer(s, &tok_len);
	uint8_t    *w = student_save_weights(s, &w_len);
	CoreError	err = {0};
	Student    *copy;
	double		p1[3],
				p2[3];
	int			rejected = 0,
				tries = 0;

	CHECK(tok != NULL && w != NULL);
	copy = student_load(tok, tok_len, w, w_len, &err);
	CHECKF(copy != NULL, "%s", err.message);
	if (copy != NULL)
	{
		CHECK(copy->max_input_tokens == s->max_input_tokens);
		CHECK(copy->max_target_tokens == s->max_target_tokens);
		CHECK(student_choose(s, "green pear", kinds, 3, p1, &err) ==
			  student_choose(copy, "green pear", kinds, 3, p2, &err));
		/* the copy is packed for prediction (packed.h), the original is not */
		CHECK(copy->model->packed != NULL && s->model->packed == NULL);
		for (int k = 0; k < 3; k++)
			CHECKF(fabs(p1[k] - p2[k]) < 1e-6, "label %d: %g vs %g", k, p1[k], p2[k]);
	}
	student_free(copy);

	/* truncations, every length or a spread of them */
	for (size_t cut = 0; cut < w_len; cut += every_truncation ? 1 : 1 + w_len / 50)
	{
		copy = student_load(tok, tok_len, w, cut, &err);
		rejected += copy == NULL && err.message[0] != '\0';
		tries++;
		student_free(copy);
	}
	for (size_t cut = 0; cut < tok_len; cut += every_truncation ? 1 : 1 + tok_len / 50)
	{
		copy = student_load(tok, cut, w, w_len, &err);
		rejected += copy == NULL && err.message[0] != '\0';
		tries++;
		student_free(copy);
	}
	CHECKF(rejected == tries, "%d of %d truncations rejected", rejected, tries);

	/* a flipped bit anywhere in the student header, the model, the floats */
	for (size_t pos = 0; pos < w_len; pos += every_truncation ? 7 : 1 + w_len / 20)
	{
		w[pos] ^= 0x10;
		err.message[0] = '\0';
		copy = student_load(tok, tok_len, w, w_len, &err);
		CHECKF(copy == NULL && err.message[0] != '\0', "bit flip at %zu accepted", pos);
		student_free(copy);
		w[pos] ^= 0x10;
	}

	/* foreign bytes: the blobs swapped, NULL */
	CHECK(student_load(w, w_len, tok, tok_len, &err) == NULL);
	CHECK(student_load(NULL, 0, w, w_len, &err) == NULL);
	free(tok);
	free(w);
}

/* A tokenizer and weights of two different students do not load. */
static void
test_mismatched_blobs(Student *s)
{
	StudentParams p;
	Student    *other;
	size_t		tok_len,
				w_len;
	void	   *tok,
			   *w;
	CoreError	err = {0};

	tiny_params(&p);
	p.epochs = 1;
	p.vocab_size = 270;
	other = train(&p, tiny_rows, N_TINY, kinds, 3);
	if (other == NULL)
		return;
	tok = student_save_tokenizer(other, &tok_len);
	w = student_save_weights(s, &w_len);
	CHECKF(student_load(tok, tok_len, w, w_len, &err) == NULL &&
		   err.kind == CORE_ERR_CORRUPT && strstr(err.message, "tokenizer") != NULL,
		   "%s", err.message);
	free(tok);
	free(w);
	student_free(other);
}

/*
 * A batch run as micro-batches gives the gradient of the whole batch: one
 * step from the same start lands on the same weights, up to elements whose
 * gradient is rounding noise (Adam's first step is about lr * sign(g)).
 */
static void
test_micro_batches(void)
{
	Synthetic	data = make_synthetic(32, 24, false);
	Student    *s[2] = {NULL, NULL};
	double		loss[2] = {0, 0};
	int			micro[2] = {0, 0};
	StudentParams p;
	CoreError	err = {0};

	tiny_params(&p);
	p.d_model = 128;
	p.batch_size = 16;
	p.max_input_tokens = 64;
	for (int i = 0; i < 2; i++)
	{
		StudentTrainer *t;
		TrainProgress prog;

		p.memory_mb = i == 0 ? 1024 : 32;	/* 7 MB of it the model's state */
		t = trainer_create(&p, data.rows, 32, kinds, 3, NULL, &err);
		CHECKF(t != NULL, "%s", err.message);
		if (t == NULL)
			break;
		micro[i] = trainer_micro_batch_size(t);
		CHECK(trainer_advance(t, &prog) == TRAIN_STEP);
		loss[i] = prog.label_loss + prog.rationale_loss;
		s[i] = trainer_take_best(t);
		CHECK(s[i] != NULL);
		trainer_free(t);
	}
	CHECKF(micro[0] == 32 && micro[1] > 1 && micro[1] < 16,
		   "micro-batches of %d and %d sequences", micro[0], micro[1]);
	CHECKF(fabs(loss[0] - loss[1]) < 1e-4 * loss[0], "losses %g and %g", loss[0], loss[1]);
	if (s[0] != NULL && s[1] != NULL)
	{
		size_t		n = s[0]->model->n_params;
		size_t		apart = 0;

		for (size_t j = 0; j < n; j++)
			apart += fabsf(s[0]->model->params[j] - s[1]->model->params[j]) > p.lr / 2;
		CHECKF(apart < n / 1000, "%zu of %zu weights moved differently", apart, n);
	}
	student_free(s[0]);
	student_free(s[1]);
	free_synthetic(&data);
}

/* ---------------------------------------------------------------- */
/* Freeing mid-way */

static void
test_free_midway(void)
{
	StudentParams p;
	TrainProgress prog;
	CoreError	err = {0};
	Synthetic	data = make_synthetic(40, 6, false);

	tiny_params(&p);
	p.batch_size = 4;
	p.validation_fraction = 0.25;
	for (int advances = 0; advances <= 12; advances += 4)
	{
		StudentTrainer *t = trainer_create(&p, data.rows, 40, kinds, 3, NULL,
										   &err);

		CHECKF(t != NULL, "%s", err.message);
		for (int i = 0; t != NULL && i < advances; i++)
			trainer_advance(t, &prog);
		trainer_free(t);
	}
	free_synthetic(&data);
}

/* A stop check that says yes from its n-th call on. */
static bool
stop_after(void *arg)
{
	int		   *calls_left = arg;

	return --*calls_left < 0;
}

/*
 * The stop check ends training within a step, both while training and
 * while validating, and the trainer says why.
 */
static void
test_stop_check(void)
{
	StudentParams p;
	TrainProgress prog;
	CoreError	err = {0};
	Synthetic	data = make_synthetic(40, 6, false);

	tiny_params(&p);
	p.batch_size = 40;			/* one step is one epoch's training */
	p.validation_fraction = 0.25;
	for (int allowed = 0; allowed <= 3; allowed++)
	{
		int			calls_left = INT_MAX;	/* none while setting up */
		StopCheck	stop = {stop_after, &calls_left};
		StudentTrainer *t = trainer_create(&p, data.rows, 40, kinds, 3, &stop,
										   &err);
		int			advances = 0;

		CHECKF(t != NULL, "%s", err.message);
		if (t == NULL)
			continue;
		calls_left = allowed;
		while (trainer_advance(t, &prog) != TRAIN_DONE && advances < 1000)
			advances++;
		CHECKF(trainer_error(t) != NULL &&
			   trainer_error(t)->kind == CORE_ERR_INTERRUPTED &&
			   strcmp(trainer_error(t)->message, "training was interrupted") == 0,
			   "allowed %d: %s", allowed,
			   trainer_error(t) ? trainer_error(t)->message : "(no error)");
		CHECKF(advances <= allowed + 1, "allowed %d checks, advanced %d times",
			   allowed, advances);
		trainer_free(t);
	}
	free_synthetic(&data);
}

/*
 * Setting up asks the stop check too, while the tokenizer trains and
 * every few hundred rows it tokenizes, and a stop there ends
 * trainer_create() with the same message (and nothing leaked: valgrind).
 */
static void
test_stop_while_setting_up(void)
{
	StudentParams p;
	CoreError	err = {0};
	Synthetic	data = make_synthetic(3000, 24, false);
	int			calls_left = INT_MAX;
	StopCheck	stop = {stop_after, &calls_left};
	StudentTrainer *t;
	int			calls;

	tiny_params(&p);
	t = trainer_create(&p, data.rows, 3000, kinds, 3, &stop, &err);
	CHECKF(t != NULL, "%s", err.message);
	trainer_free(t);
	calls = INT_MAX - calls_left;
	CHECKF(calls >= 3000 / 256 + (p.vocab_size - TOK_MIN_VOCAB) / 2,
		   "%d stop checks while setting up", calls);
	for (int allowed = 0; allowed < calls; allowed += calls / 5 + 1)
	{
		calls_left = allowed;
		t = trainer_create(&p, data.rows, 3000, kinds, 3, &stop, &err);
		CHECKF(t == NULL && err.kind == CORE_ERR_INTERRUPTED &&
			   strcmp(err.message, "training was interrupted") == 0,
			   "allowed %d of %d: %s", allowed, calls, t ? "created" : err.message);
		trainer_free(t);
	}
	free_synthetic(&data);
}


/* ---------------------------------------------------------------- */
/* Bounds: long texts, many candidates, weights, stops, memory_mb */

/* Pages of text ending at a guard page, which no code may read. */
typedef struct GuardedText
{
	char	   *region;
	size_t		readable;		/* bytes before the guard page */
	size_t		page;
} GuardedText;

static bool
guarded_text(GuardedText *g, size_t at_least, const char *pattern)
{
	size_t		n = strlen(pattern);

	g->page = (size_t) sysconf(_SC_PAGESIZE);
	g->readable = (at_least + g->page - 1) / g->page * g->page;
	g->region = mmap(NULL, g->readable + g->page, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g->region == MAP_FAILED)
		return false;
	for (size_t i = 0; i < g->readable; i++)
		g->region[i] = pattern[i % n];
	return mprotect(g->region + g->readable, g->page, PROT_NONE) == 0;
}

/*
 * An input or a candidate is read no further than its first tokens need:
 * text with no NUL before a guard page (any read there would crash the
 * test) gives what a NUL-terminated copy of the readable part gives.
 */
static void
test_long_texts(const Student *s)
{
	int			longest = s->max_input_tokens > s->max_target_tokens
		? s->max_input_tokens : s->max_target_tokens;
	GuardedText g;
	char	   *copy;
	CoreError	err = {0};
	int32_t    *ids;
	int32_t    *expect;
	int			n;
	int			n_expect;
	double		p_long[3],
				p_copy[3];
	const char *with_long[3] = {"fruit", "animal", NULL};
	const char *with_copy[3] = {"fruit", "animal", NULL};

	CHECK(guarded_text(&g, tok_prefix_bytes(longest), "big dog and a red apple "));
	copy = malloc(g.readable + 1);
	memcpy(copy, g.region, g.readable);
	copy[g.readable] = '\0';

	n = student_prefix_tokens(s, "predict", g.region, &ids, &err);
	n_expect = student_prefix_tokens(s, "predict", copy, &expect, &err);
	CHECK(n > s->max_input_tokens && n == n_expect &&
		  memcmp(ids, expect, n * sizeof(int32_t)) == 0);
	free(ids);
	free(expect);

	with_long[2] = g.region;
	with_copy[2] = copy;
	CHECK(student_choose(s, g.region, with_long, 3, p_long, &err) ==
		  student_choose(s, copy, with_copy, 3, p_copy, &err));
	CHECK(memcmp(p_long, p_copy, sizeof(p_long)) == 0);
	free(copy);
	munmap(g.region, g.readable + g.page);
}

/*
 * At most STUDENT_MAX_CANDIDATES candidates; a thousand are scored in
 * groups, each as it would be among two (a softmax's ratios are its
 * scores' differences), across the groups' boundaries.
 */
static void
test_many_candidates(const Student *s)
{
	enum
	{
		N = STUDENT_MAX_CANDIDATES
	};
	static char names[N + 1][16];
	const char *cands[N + 1];
	double	   *probs = malloc((N + 1) * sizeof(double));
	double		sum = 0.0;
	double		worst = 0.0;
	CoreError	err = {0};

	for (int k = 0; k <= N; k++)
	{
		snprintf(names[k], sizeof(names[k]), k % 2 ? "w%d" : "%c", k % 2 ? k : 'a' + k % 26);
		cands[k] = names[k];
	}
	CHECKF(student_choose(s, "big dog", cands, N + 1, probs, &err) == -1 &&
		   strstr(err.message, "the prediction has 1001 candidates, more than the 1000") != NULL, "%s", err.message);
	CHECKF(student_choose(s, "big dog", cands, N, probs, &err) >= 0, "%s", err.message);
	for (int k = 0; k < N; k++)
		sum += probs[k];
	CHECKF(fabs(sum - 1.0) < 1e-9, "probabilities sum to %g", sum);
	for (int i = 0; i < N; i += 97)
	{
		int			j = N - 1 - i / 2;
		const char *pair[2] = {cands[i], cands[j]};
		double		p2[2];

		student_choose(s, "big dog", pair, 2, p2, &err);
		worst = fmax(worst, fabs(log(probs[i] / probs[j]) - log(p2[0] / p2[1])));
	}
	CHECKF(worst < 1e-4, "log-ratios differ by %g", worst);
	free(probs);
}

/*
 * Weights that are finite can still overflow float arithmetic: scores
 * that are not finite numbers are an error, never NaN probabilities.
 */
static void
test_overflowing_weights(const Student *s)
{
	size_t		tok_len,
				w_len;
	void	   *tok = student_save_tokenizer(s, &tok_len);
	void	   *w = student_save_weights(s, &w_len);
	CoreError	err = {0};
	Student    *copy = student_load(tok, tok_len, w, w_len, &err);
	double		probs[3];

	CHECKF(copy != NULL, "%s", err.message);
	if (copy != NULL)
	{
		for (int i = 0; i < copy->model->config.d_model; i++)
			copy->model->w.final_norm[i] = 3e38f;
		CHECKF(student_choose(copy, "big dog", kinds, 3, probs, &err) == -1 &&
			   err.kind == CORE_ERR_CORRUPT &&
			   strstr(err.message, "not a finite number") != NULL, "%s", err.message);
	}
	student_free(copy);
	free(tok);
	free(w);
}

/*
 * Weights a table owner wrote with NaN or infinity in them, under a right
 * checksum, are refused at load with the tensor named.
 */
static void
test_nonfinite_weights(const Student *s)
{
	static const uint32_t bits[] = {0x7FC00000u, 0x7F800000u, 0xFF800000u};
	size_t		tok_len,
				w_len;
	void	   *tok = student_save_tokenizer(s, &tok_len);
	uint8_t    *w = student_save_weights(s, &w_len);
	CoreError	err = {0};

	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
	{
		uint8_t    *model_blob = w + 20;	/* after the student header */
		size_t		model_len = w_len - 20;
		uint32_t	crc;
		Student    *copy;

		/* the last parameter, then the model's checksum over all before it */
		memcpy(model_blob + model_len - 8, &bits[i], 4);
		crc = crc32c(0, model_blob, model_len - 4);
		memcpy(model_blob + model_len - 4, &crc, 4);
		copy = student_load(tok, tok_len, w, w_len, &err);
		CHECKF(copy == NULL && err.kind == CORE_ERR_CORRUPT &&
			   strstr(err.message, "not a finite number") != NULL &&
			   strstr(err.message, "model.norm.weight") != NULL, "%s", err.message);
		student_free(copy);
	}
	free(tok);
	free(w);
}

/* Prediction asks the student's stop check and says "interrupted". */
static void
test_prediction_stop(const Student *s)
{
	Student		stopped = *s;
	int			calls_left = 0;
	const char *cands[200];
	char		names[200][8];
	CoreError	err = {0};
	char	   *text;

	stopped.stop.should_stop = stop_after;
	stopped.stop.arg = &calls_left;
	for (int k = 0; k < 200; k++)
	{
		snprintf(names[k], sizeof(names[k]), "c%d", k);
		cands[k] = names[k];
	}
	CHECKF(student_choose(&stopped, "big dog", cands, 200, NULL, &err) == -1 &&
		   strcmp(err.message, "interrupted") == 0, "%s", err.message);
	calls_left = 1;				/* the first group, then a stop */
	CHECKF(student_choose(&stopped, "big dog", cands, 200, NULL, &err) == -1 &&
		   strcmp(err.message, "interrupted") == 0 && calls_left < 0, "%s", err.message);
	calls_left = 0;
	text = student_generate(&stopped, "explain", "big dog", &err);
	CHECKF(text == NULL && err.kind == CORE_ERR_INTERRUPTED &&
		   strcmp(err.message, "interrupted") == 0, "%s", text ? text : err.message);
	free(text);
}

/* n rows of one text each, from make(i, buf); freed with free_rows(). */
static StudentExample *
rows_of(int n, void (*make) (int i, char *buf, size_t size), size_t size)
{
	StudentExample *rows = calloc(n, sizeof(StudentExample));

	for (int i = 0; i < n; i++)
	{
		char	   *input = malloc(size);

		make(i, input, size);
		rows[i].input = input;
		rows[i].label = kinds[i % 3];
	}
	return rows;
}

static void
free_rows(StudentExample *rows, int n)
{
	for (int i = 0; i < n; i++)
		free((char *) rows[i].input);
	free(rows);
}

/* Random words of random letters: every chunk distinct. */
static void
random_words(int i, char *buf, size_t size)
{
	size_t		len = 0;

	while (len + 10 < size)
	{
		int			n = 3 + random_below(6);

		buf[len++] = ' ';
		for (int k = 0; k < n; k++)
			buf[len++] = (char) ('a' + random_below(26));
	}
	buf[len] = '\0';
}

/* Digits: a token each, whatever the tokenizer. */
static void
digits(int i, char *buf, size_t size)
{
	for (size_t k = 0; k + 1 < size; k++)
		buf[k] = (char) ('0' + (i + k) % 10);
	buf[size - 1] = '\0';
}

/*
 * memory_mb bounds the working memory of setting up, stage by stage,
 * each with the figure needed: the tokenizer's training, the tokenized
 * examples, the buffers of one sequence; more memory_mb trains.
 */
static void
test_memory_mb(void)
{
	StudentParams p;
	CoreError	err = {0};
	StudentExample *rows;
	StudentTrainer *t;

	tiny_params(&p);
	p.memory_mb = 16;
	rows = rows_of(3000, random_words, 200);	/* 540 KB of distinct words */
	t = trainer_create(&p, rows, 3000, kinds, 3, NULL, &err);
	CHECKF(t == NULL && err.kind == CORE_ERR_LIMIT &&
		   strstr(err.message, "training the tokenizer needs about") != NULL &&
		   strstr(err.message, "MB allowed by memory_mb") != NULL, "%s", err.message);
	p.memory_mb = 64;
	t = trainer_create(&p, rows, 3000, kinds, 3, NULL, &err);
	CHECKF(t != NULL, "%s", err.message);
	trainer_free(t);
	free_rows(rows, 3000);

	p.memory_mb = 16;
	p.max_input_tokens = 1024;
	rows = rows_of(5000, digits, 1100); /* 5000 x 1024 tokens: 20 MB */
	t = trainer_create(&p, rows, 5000, kinds, 3, NULL, &err);
	CHECKF(t == NULL && strstr(err.message, "the tokenized examples need more memory than memory_mb (16 MB) leaves") != NULL,
		   "%s", err.message);
	p.memory_mb = 128;
	t = trainer_create(&p, rows, 5000, kinds, 3, NULL, &err);
	CHECKF(t != NULL, "%s", err.message);
	trainer_free(t);
	free_rows(rows, 5000);

	tiny_params(&p);
	p.memory_mb = 64;
	p.d_model = 512;			/* 12.6 million parameters: 50 MB of weights */
	p.n_heads = 4;
	p.n_layers = 4;
	t = trainer_create(&p, tiny_rows, N_TINY, kinds, 3, NULL, &err);
	CHECKF(t == NULL && err.kind == CORE_ERR_LIMIT &&
		   strstr(err.message, "more than memory_mb (64 MB) for the model's state alone: 49 MB of weights, 49 MB of gradients, 98 MB of AdamW's moments") != NULL,
		   "%s", err.message);

	/* with the state, one sequence's activations must fit */
	p.memory_mb = 200;
	t = trainer_create(&p, tiny_rows, N_TINY, kinds, 3, NULL, &err);
	CHECKF(t == NULL && err.kind == CORE_ERR_LIMIT &&
		   strstr(err.message, "training needs at least") != NULL &&
		   strstr(err.message, "of memory_mb, not 200: the model's state takes 196 MB") != NULL,
		   "%s", err.message);

	/* memory_mb 0: the state and work_mem_mb */
	p.memory_mb = 0;
	p.work_mem_mb = 32;
	t = trainer_create(&p, tiny_rows, N_TINY, kinds, 3, NULL, &err);
	CHECKF(t != NULL && trainer_memory_mb(t) >= 196 + 32 && trainer_memory_mb(t) <= 197 + 32,
		   "%s %d", t ? "" : err.message, t ? trainer_memory_mb(t) : 0);
	trainer_free(t);
}

/* Validation by the label set, by per-row choices and by decoding. */
static void
test_validation_modes(int epochs)
{
	/* the families' labels as equations worth 2, 3 and 4 */
	static const char *const sums[] = {"1 + 1", "( 3.0 )", "8 / 2"};
	Synthetic	labelled = make_synthetic(48, 5, false);
	Synthetic	with_choices = make_synthetic(48, 5, true);
	Synthetic	equations = make_synthetic(48, 5, false);

	for (int i = 0; i < 48; i++)
		for (int k = 0; k < 3; k++)
			if (strcmp(equations.rows[i].label, kinds[k]) == 0)
				equations.rows[i].label = sums[k];
	test_validation("label set", labelled.rows, 48, kinds, 3, METRIC_EXACT, epochs);
	test_validation("choices", with_choices.rows, 48, NULL, 0, METRIC_EXACT, epochs);
	test_validation("decoding", labelled.rows, 48, NULL, 0, METRIC_EXACT, epochs);
	test_validation("decoding by value", equations.rows, 48, NULL, 0, METRIC_EQUATION,
					epochs);
	free_synthetic(&labelled);
	free_synthetic(&with_choices);
	free_synthetic(&equations);
}

/* Free-text answers: exact text, or equal arithmetic value. */
static void
test_answer_matches(void)
{
	CHECK(answer_matches(METRIC_EXACT, "lake", "lake"));
	CHECK(!answer_matches(METRIC_EXACT, "lake", "Lake"));
	CHECK(!answer_matches(METRIC_EXACT, "4", "2 + 2"));
	CHECK(answer_matches(METRIC_EQUATION, "4", "2 + 2"));
	CHECK(answer_matches(METRIC_EQUATION, "( 84.0 / 2.0 )", "42"));
	CHECK(!answer_matches(METRIC_EQUATION, "41", "42"));
	CHECK(!answer_matches(METRIC_EQUATION, "((491 - 21", "470"));
	CHECK(!answer_matches(METRIC_EQUATION, "lake", "lake"));
}

int
main(int argc, char **argv)
{
	bool		quick = argc > 1 && strcmp(argv[1], "quick") == 0;
	StudentParams p;
	Student    *s;

	model_set_threads(1);
	test_answer_matches();
	test_params();
	test_bad_examples();
	test_utf8();
	test_free_midway();
	test_stop_check();
	test_stop_while_setting_up();
	test_memory_mb();
	test_skipped_steps();
	if (quick)
	{
		test_validation_modes(2);
		tiny_params(&p);
		p.epochs = 2;
		s = train(&p, tiny_rows, N_TINY, kinds, 3);
		if (s != NULL)
		{
			test_save_load(s, false);
			test_prefix_tokens(s);
			test_long_texts(s);
			test_many_candidates(s);
			test_overflowing_weights(s);
			test_nonfinite_weights(s);
			test_prediction_stop(s);
		}
		student_free(s);
		return unit_summary("student");
	}

	s = test_overfit();
	if (s != NULL)
	{
		test_choose_matches_forward(s);
		test_prefix_tokens(s);
		test_save_load(s, true);
		test_mismatched_blobs(s);
		test_long_texts(s);
		test_many_candidates(s);
		test_overflowing_weights(s);
		test_nonfinite_weights(s);
		test_prediction_stop(s);
	}
	student_free(s);
	test_rationale_loss();
	test_determinism();
	test_micro_batches();
	test_validation_modes(6);
	return unit_summary("student");
}
