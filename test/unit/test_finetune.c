/*
 * test_finetune.c - fine-tuning a pretrained base (trainer_create_on_base()):
 * stories260K, the one real pretrained model here, learns a small task
 * about story sentences; the sequences it reads are the task tags as text
 * in its vocabulary; the student saves and loads as a fine-tuned one
 * (format version 3) and answers the same after; with LoRA the base stays
 * as it was and the adapters alone, stored, answer the same once applied
 * to the base; what cannot work is refused with a message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/crc32c.h"
#include "core/model_io.h"
#include "core/student.h"
#include "core/student_internal.h"
#include "core/tokenizer_pretrained.h"
#include "core/trainer.h"
#include "core/util.h"
#include "stories.h"
#include "unit.h"

/* ---------------------------------------------------------------- */
/* A task on story sentences: which animal does the sentence name? */

static const char *const animals[] = {"dog", "cat", "bird"};
static const char *const names[] = {"Lily", "Tom", "Sue", "Ben", "Mia", "Max", "Anna", "Sam"};
static const char *const places[] = {"park", "garden", "house", "forest", "river", "school"};
static const char *const verbs[] = {"saw", "found", "played with", "ran after", "liked"};

#define N_ROWS 120

typedef struct Rows
{
	StudentExample examples[N_ROWS];
	char		inputs[N_ROWS][128];
	char		rationales[N_ROWS][128];
} Rows;

static void
make_rows(Rows *rows, int n)
{
	uint64_t	state = 11;

	for (int i = 0; i < n; i++)
	{
		int			a = i % 3;

		state = state * 6364136223846793005ull + 1442695040888963407ull;
		snprintf(rows->inputs[i], sizeof(rows->inputs[i]),
				 "%s went to the %s. %s %s a big %s.",
				 names[(state >> 33) % 8], places[(state >> 40) % 6],
				 (state >> 20) % 2 ? "She" : "He", verbs[(state >> 50) % 5], animals[a]);
		snprintf(rows->rationales[i], sizeof(rows->rationales[i]),
				 "The story says a %s.", animals[a]);
		rows->examples[i] = (StudentExample) {
			.input = rows->inputs[i], .label = animals[a],
			.rationale = rows->rationales[i]
		};
	}
}

static void
base_params(StudentParams *p)
{
	student_params_default_for_base(p);
	p->lr = 3e-3;
	p->epochs = 4;
	p->batch_size = 8;
	p->max_input_tokens = 32;
	p->max_target_tokens = 16;
	p->validation_fraction = 0.2;
	p->memory_mb = 64;
	p->log_every = 5;
}

/* Train to the end; the first and last logged label losses. */
static Student *
fine_tune(const StudentParams *p, const Rows *rows, int n, double *first_loss,
		  double *last_loss, double *accuracy)
{
	CoreError	err;
	Student    *base = load_base();
	StudentTrainer *t;
	TrainProgress progress;
	TrainEvent	event;
	Student    *s;

	*first_loss = *last_loss = NAN;
	if (base == NULL)
		return NULL;
	t = trainer_create_on_base(p, base, rows->examples, n, animals, 3, NULL, &err);
	if (t == NULL)
	{
		fprintf(stderr, "trainer_create_on_base: %s\n", err.message);
		return NULL;
	}
	while ((event = trainer_advance(t, &progress)) != TRAIN_DONE)
		if (event == TRAIN_STEP)
		{
			if (isnan(*first_loss))
				*first_loss = progress.label_loss;
			*last_loss = progress.label_loss;
		}
	*accuracy = trainer_best_accuracy(t);
	CHECKF(trainer_error(t) == NULL, "%s", trainer_error(t)->message);
	s = trainer_take_best(t);
	trainer_free(t);
	return s;
}

/* ---------------------------------------------------------------- */

/* The prefix is [<bos>] "predict:" input "\n", in the base's own tokens. */
static void
test_layout(const Student *s)
{
	CoreError	err;
	int32_t    *prefix;
	int32_t    *tag;
	int32_t    *input;
	int			n = student_prefix_tokens(s, "predict", "Lily saw a dog.", &prefix, &err);
	int			n_tag = tok_encode_checked(s->tokenizer, "predict:", 8, &tag, &err);
	int			n_input = tok_encode_checked(s->tokenizer, "Lily saw a dog.", 15, &input, &err);

	CHECK(!s->zero_shot && tok_is_pretrained(s->tokenizer));
	CHECKF(n == 1 + n_tag + n_input + 1, "prefix of %d tokens", n);
	if (n == 1 + n_tag + n_input + 1)
	{
		CHECK(prefix[0] == tok_bos(s->tokenizer));
		CHECK(memcmp(prefix + 1, tag, n_tag * sizeof(int32_t)) == 0);
		CHECK(memcmp(prefix + 1 + n_tag, input, n_input * sizeof(int32_t)) == 0);
		CHECK(prefix[n - 1] == tok_newline(s->tokenizer) && prefix[n - 1] >= 0);
	}
	free(prefix);
	free(tag);
	free(input);
}

/* Answers on rows the student never saw; the share it gets right. */
static double
held_out_accuracy(const Student *s, const Rows *rows, int from, int to)
{
	CoreError	err;
	int			right = 0;

	for (int i = from; i < to; i++)
	{
		int			k = student_choose(s, rows->inputs[i], animals, 3, NULL, &err);

		right += k >= 0 && strcmp(animals[k], rows->examples[i].label) == 0;
	}
	return (double) right / (to - from);
}

/* Save as the glue does (a header and a data stream), load for prediction. */
static Student *
save_and_load(const Student *s, void **header_out, size_t *header_len)
{
	CoreError	err;
	size_t		tok_len;
	void	   *tok = student_save_tokenizer(s, &tok_len);
	uint64_t	data_len = model_data_bytes(s->model, NULL);
	uint8_t    *data = malloc(data_len);
	void	   *header;
	StudentLoader *loader;
	Student    *loaded = NULL;

	model_data_read(s->model, NULL, 0, data, data_len);
	header = student_save_header(s, NULL, crc32c(0, data, data_len), header_len);
	loader = student_load_begin(tok, tok_len, header, *header_len, &err);
	/* in two pieces, as chunks come */
	if (loader != NULL && student_load_feed(loader, data, data_len / 3, &err) &&
		student_load_feed(loader, data + data_len / 3, data_len - data_len / 3, &err))
		loaded = student_load_finish(loader, &err);
	else
		student_loader_free(loader);
	CHECKF(loaded != NULL, "load: %s", err.message);
	free(tok);
	free(data);
	*header_out = header;
	return loaded;
}

static void
test_save_load(const Student *s, const Rows *rows)
{
	void	   *header;
	size_t		header_len;
	Student    *loaded = save_and_load(s, &header, &header_len);
	CoreError	err;

	CHECK(le_get_u32((const uint8_t *) header + 4) == 3);
	if (loaded == NULL)
	{
		free(header);
		return;
	}
	CHECK(!loaded->zero_shot);
	CHECK(loaded->max_input_tokens == s->max_input_tokens &&
		  loaded->max_target_tokens == s->max_target_tokens);
	for (int i = 0; i < 12; i++)
	{
		double		p1[3],
					p2[3];
		int			a = student_choose(s, rows->inputs[i], animals, 3, p1, &err);
		int			b = student_choose(loaded, rows->inputs[i], animals, 3, p2, &err);
		char	   *g1 = student_generate(s, "predict", rows->inputs[i], &err);
		char	   *g2 = student_generate(loaded, "predict", rows->inputs[i], &err);

		CHECK(a == b && a >= 0 && fabs(p1[a] - p2[a]) < 1e-5);
		CHECKF(g1 != NULL && g2 != NULL && strcmp(g1, g2) == 0, "\"%s\" vs \"%s\"",
			   g1 ? g1 : "(null)", g2 ? g2 : "(null)");
		free(g1);
		free(g2);
	}
	student_free(loaded);
	free(header);
}

/* A flag this build does not know, and the flag with a trained tokenizer. */
static void
test_bad_flags(const Student *s)
{
	void	   *header;
	size_t		header_len;
	Student    *loaded = save_and_load(s, &header, &header_len);
	uint8_t    *h = header;
	size_t		tok_len;
	void	   *tok = student_save_tokenizer(s, &tok_len);
	CoreError	err;
	StudentLoader *loader;

	student_free(loaded);
	le_put_u32(h + 16, 0x5);
	le_put_u32(h + 20, crc32c(0, h, 20));
	loader = student_load_begin(tok, tok_len, header, header_len, &err);
	CHECKF(loader == NULL && strstr(err.message, "unknown flags") != NULL, "%s",
		   loader ? "loaded" : err.message);
	student_loader_free(loader);
	free(tok);
	free(header);
}

/*
 * LoRA: the base stays as it was, the adapters learn the task, and stored
 * alone they give the same answers once applied to a new copy of the base
 * (merged and packed) as the adapted model in training did (unmerged).
 */
static void
test_lora(const Rows *rows)
{
	StudentParams p;
	double		first,
				last,
				accuracy;
	Student    *s;
	Student    *base = load_base();
	Student    *again;
	void	   *header;
	size_t		header_len,
				len;
	void	   *adapters;
	CoreError	err;
	const uint32_t base_checksum = 0x5EEDB45E;
	int			same = 0;

	base_params(&p);
	p.lora_rank = 4;
	p.lr = 1e-2;
	s = fine_tune(&p, rows, 100, &first, &last, &accuracy);
	CHECK(s != NULL && base != NULL);
	if (s == NULL || base == NULL)
	{
		student_free(s);
		student_free(base);
		return;
	}
	printf("  LoRA rank 4: label loss %.3f -> %.3f, validation accuracy %.2f, held out %.2f\n",
		   first, last, accuracy, held_out_accuracy(s, rows, 100, N_ROWS));
	CHECK(student_has_adapters(s));
	CHECKF(accuracy >= 0.9, "validation accuracy %.2f", accuracy);
	CHECK(memcmp(s->model->params, base->model->params,
				 base->model->n_params * sizeof(float)) == 0);

	adapters = student_save_adapters(s, base_checksum, &header, &header_len, &len);
	CHECK(adapters != NULL && student_weights_are_adapters(header, header_len));
	CHECKF(len < base->model->n_params * sizeof(float) / 4, "%zu bytes of adapters", len);
	again = student_apply_adapters(base, header, header_len, adapters, len,
								   base_checksum, &err);
	CHECKF(again != NULL, "%s", err.message);
	for (int i = 100; again != NULL && i < N_ROWS; i++)
	{
		double		p1[3],
					p2[3];
		int			a = student_choose(s, rows->inputs[i], animals, 3, p1, &err);
		int			b = student_choose(again, rows->inputs[i], animals, 3, p2, &err);

		same += a == b && a >= 0 && fabs(p1[a] - p2[a]) < 1e-4;
	}
	CHECKF(same == N_ROWS - 100, "%d of %d answers the same", same, N_ROWS - 100);
	CHECK(again == NULL || (!again->zero_shot && again->model->lora == NULL));
	student_free(again);

	/* another base, or a prediction-only one, is refused */
	base = load_base();
	again = student_apply_adapters(base, header, header_len, adapters, len,
								   base_checksum + 1, &err);
	CHECKF(again == NULL && strstr(err.message, "base") != NULL, "%s",
		   again ? "applied" : err.message);
	student_free(again);
	free(header);
	free(adapters);
	student_free(s);
}

/* What cannot work is refused before any training, with the figures. */
static void
test_refusals(const Rows *rows)
{
	StudentParams p;
	CoreError	err;
	StudentTrainer *t;

	base_params(&p);
	p.max_input_tokens = 4096;
	t = trainer_create_on_base(&p, load_base(), rows->examples, 20, animals, 3, NULL, &err);
	CHECKF(t == NULL && strstr(err.message, "more than the base's context of 512: lower them") != NULL,
		   "%s", t ? "created" : err.message);
	trainer_free(t);

	base_params(&p);
	p.lora_rank = 2;
	t = trainer_create(&p, rows->examples, 20, animals, 3, NULL, &err);
	CHECKF(t == NULL && strstr(err.message, "need a pretrained base") != NULL, "%s",
		   t ? "created" : err.message);
	trainer_free(t);
	p.lora_rank = 512;
	t = trainer_create_on_base(&p, load_base(), rows->examples, 20, animals, 3, NULL, &err);
	CHECKF(t == NULL && strstr(err.message, "lora_rank") != NULL, "%s",
		   t ? "created" : err.message);
	trainer_free(t);

	base_params(&p);
	t = trainer_create_on_base(&p, NULL, rows->examples, 20, animals, 3, NULL, &err);
	CHECK(t == NULL && strstr(err.message, "loaded with its weights") != NULL);
	trainer_free(t);
}

int
main(void)
{
	static Rows rows;
	StudentParams p;
	double		first,
				last,
				accuracy,
				before,
				after;
	Student    *base = load_base();
	Student    *s;

	CHECK(base != NULL);
	if (base == NULL)
		return unit_summary("finetune");
	make_rows(&rows, N_ROWS);
	/* the base as it is, asked with the prompt "<input>": near chance */
	before = held_out_accuracy(base, &rows, 100, N_ROWS);
	student_free(base);

	base_params(&p);
	s = fine_tune(&p, &rows, 100, &first, &last, &accuracy);
	CHECK(s != NULL);
	if (s != NULL)
	{
		after = held_out_accuracy(s, &rows, 100, N_ROWS);
		printf("  stories260K, 100 rows, 4 epochs: label loss %.3f -> %.3f, validation accuracy %.2f, held out %.2f (as imported: %.2f)\n",
			   first, last, accuracy, after, before);
		CHECKF(last < 0.5 * first, "loss %.3f -> %.3f", first, last);
		CHECKF(after >= 0.9, "held-out accuracy %.2f", after);
		test_layout(s);
		test_save_load(s, &rows);
		test_bad_flags(s);
		student_free(s);
	}
	test_lora(&rows);
	test_refusals(&rows);
	return unit_summary("finetune");
}
