/*
 * test_trainer_state.c - saving where training stands and going on from
 * there (trainer_save_state(), trainer_restore_state()): a training
 * stopped after epoch k, or inside an epoch, and restored into a new
 * trainer ends with the same bits as one that ran straight through, from
 * scratch and fine-tuning stories260K; every state of other parameters,
 * other rows or another model, and every damaged one, is refused with a
 * message, and never crashes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/lora.h"
#include "core/trainer.h"
#include "core/util.h"
#include "stories.h"
#include "unit.h"

/* ---------------------------------------------------------------- */
/* A state in memory */

typedef struct Buffer
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
	size_t		pos;			/* reading */
	size_t		largest_piece;	/* writing */
	bool		fail;			/* make the next read or write fail */
} Buffer;

static bool
buffer_write(void *ctx, const void *data, size_t len, CoreError *err)
{
	Buffer	   *b = ctx;

	if (b->fail)
	{
		core_error(err, CORE_ERR_INTERNAL, "the disk is full");
		return false;
	}
	if (b->len + len > b->cap)
	{
		b->cap = 2 * (b->len + len);
		b->data = realloc(b->data, b->cap);
		if (b->data == NULL)
			abort();
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->largest_piece = len > b->largest_piece ? len : b->largest_piece;
	return true;
}

static int64_t
buffer_read(void *ctx, void *buf, size_t len, CoreError *err)
{
	Buffer	   *b = ctx;
	size_t		n = b->len - b->pos < len ? b->len - b->pos : len;

	if (b->fail)
	{
		core_error(err, CORE_ERR_INTERNAL, "cannot read the disk");
		return -1;
	}
	memcpy(buf, b->data + b->pos, n);
	b->pos += n;
	return (int64_t) n;
}

/* A copy to read from the start. */
static Buffer
buffer_copy(const Buffer *b)
{
	Buffer		c = {malloc(b->len + 1), b->len, b->len, 0, 0, b->fail};

	if (c.data == NULL)
		abort();
	memcpy(c.data, b->data, b->len);
	return c;
}

/*
 * Put the right CRCs back into a state whose bytes were changed: each
 * section's, then the trailer's; false when the layout itself is broken.
 */
static bool
reseal(Buffer *b)
{
	size_t		at = 16;
	uint32_t	toc = crc32c(0, b->data, 16);
	uint32_t	n_sections = le_get_u32(b->data + 8);

	for (uint32_t i = 0; i < n_sections; i++)
	{
		uint64_t	size;

		if (at + 24 > b->len)
			return false;
		size = le_get(b->data + at + 16, 8);
		if (size > b->len - at - 28)
			return false;
		toc = crc32c(toc, b->data + at, 24);
		le_put_u32(b->data + at + 24 + size, crc32c(0, b->data + at + 24, size));
		toc = crc32c(toc, b->data + at + 24 + size, 4);
		at += 28 + size;
	}
	if (at + 4 != b->len)
		return false;
	le_put_u32(b->data + at, toc);
	return true;
}

/* Where section name's bytes start, or 0. */
static size_t
section_at(const Buffer *b, const char *name)
{
	size_t		at = 16;

	for (uint32_t i = 0; i < le_get_u32(b->data + 8) && at + 24 <= b->len; i++)
	{
		if (strcmp((const char *) b->data + at, name) == 0)
			return at + 24;
		at += 28 + le_get(b->data + at + 16, 8);
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* Training */

static const char *const kinds[] = {"fruit", "animal", "vehicle"};
static const char *const words[3][6] = {
	{"apple", "pear", "plum", "grape", "melon", "cherry"},
	{"dog", "cat", "horse", "mouse", "tiger", "whale"},
	{"car", "bus", "train", "truck", "boat", "plane"},
};

#define N_ROWS 60

typedef struct Rows
{
	StudentExample examples[N_ROWS];
	char		inputs[N_ROWS][64];
	char		rationales[N_ROWS][64];
} Rows;

/* The label is the family of most of four words; the rationale says so. */
static void
make_rows(Rows *rows)
{
	uint64_t	state = 5;

	for (int i = 0; i < N_ROWS; i++)
	{
		int			count[3] = {0, 0, 0};
		int			label = 0;

		rows->inputs[i][0] = '\0';
		for (int w = 0; w < 4; w++)
		{
			int			f = (int) (splitmix64_next(&state) % 3);

			count[f]++;
			strcat(rows->inputs[i], w ? " " : "");
			strcat(rows->inputs[i], words[f][splitmix64_next(&state) % 6]);
		}
		for (int f = 1; f < 3; f++)
			label = count[f] > count[label] ? f : label;
		snprintf(rows->rationales[i], 64, "most words name a %s", kinds[label]);
		rows->examples[i] = (StudentExample) {
			.input = rows->inputs[i], .label = kinds[label],
			.rationale = rows->rationales[i]
		};
	}
}

static void
scratch_params(StudentParams *p)
{
	student_params_default(p);
	p->d_model = 32;
	p->n_layers = 2;
	p->n_heads = 2;
	p->vocab_size = 300;
	p->epochs = 3;
	p->batch_size = 8;			/* 54 training rows: a last step of 6 */
	p->max_input_tokens = 16;
	p->max_target_tokens = 16;
	p->lr = 1e-2;
	p->dropout = 0.1;			/* so that the dropout generator matters */
	p->validation_fraction = 0.1;
	p->log_every = 2;
	p->memory_mb = 64;
}

static void
base_params(StudentParams *p)
{
	student_params_default_for_base(p);
	p->lr = 3e-3;
	p->epochs = 3;
	p->batch_size = 8;
	p->max_input_tokens = 24;
	p->max_target_tokens = 12;
	p->dropout = 0.1;
	p->validation_fraction = 0.1;
	p->memory_mb = 64;
}

typedef struct Setup
{
	StudentParams params;
	bool		on_base;
	const StudentExample *rows;
	int			n_rows;
} Setup;

static StudentTrainer *
create(const Setup *s)
{
	CoreError	err = {0};
	StudentTrainer *t;

	if (s->on_base)
		t = trainer_create_on_base(&s->params, load_base(), s->rows, s->n_rows, kinds, 3,
								   NULL, &err);
	else
		t = trainer_create(&s->params, s->rows, s->n_rows, kinds, 3, NULL, &err);
	CHECKF(t != NULL, "%s", err.message);
	return t;
}

/* Where a run stops to save: after the epoch-th TRAIN_EPOCH, or at a step. */
typedef struct StopAt
{
	int			epoch;			/* 0: not at an epoch */
	int			step;			/* 0: not at a step */
	bool		validating;		/* at the first unit of validation */
} StopAt;

static bool
stops_here(const StopAt *at, TrainEvent e, const TrainProgress *p)
{
	return (at->epoch > 0 && e == TRAIN_EPOCH && p->epoch == at->epoch) ||
		(at->step > 0 && e != TRAIN_EPOCH && !p->validating && p->step == at->step) ||
		(at->validating && p->validating);
}

/* The weights that train: the model's, or its LoRA adapters'. */
static const float *
trained(const Model *m, size_t *n)
{
	*n = m->lora != NULL ? m->lora->n_params : m->n_params;
	return m->lora != NULL ? m->lora->params : m->params;
}

/*
 * The weights at the end (trainer_model()) and the best epoch's (of the
 * student), as one malloc'd array of 2 n floats.
 */
static float *
finish(StudentTrainer *t, size_t *n)
{
	TrainProgress p;
	Student    *s;
	const float *last;
	float	   *out;

	while (trainer_advance(t, &p) != TRAIN_DONE)
		;
	CHECKF(trainer_error(t) == NULL, "%s", trainer_error(t)->message);
	last = trained(trainer_model(t), n);
	out = malloc(2 * *n * sizeof(float));
	memcpy(out, last, *n * sizeof(float));
	s = trainer_take_best(t);
	memcpy(out + *n, trained(s->model, n), *n * sizeof(float));
	student_free(s);
	return out;
}

/* Run until at, saving the state there into b; the trainer is freed. */
static bool
run_and_save(const Setup *s, const StopAt *at, Buffer *b)
{
	StudentTrainer *t = create(s);
	TrainProgress p;
	TrainEvent	e;
	CoreError	err = {0};
	bool		saved = false;

	if (t == NULL)
		return false;
	while (!saved && (e = trainer_advance(t, &p)) != TRAIN_DONE)
		if (stops_here(at, e, &p))
		{
			saved = trainer_save_state(t, buffer_write, b, &err);
			CHECKF(saved, "save: %s", err.message);
			CHECK(b->len == trainer_state_bytes(t));
		}
	trainer_free(t);
	return saved;
}

/* A new trainer, restored from b, run to the end. */
static float *
restore_and_finish(const Setup *s, const Buffer *b, size_t *n)
{
	StudentTrainer *t = create(s);
	Buffer		check = buffer_copy(b);
	Buffer		restore = buffer_copy(b);
	CoreError	err = {0};
	float	   *out = NULL;

	if (t != NULL)
	{
		CHECKF(trainer_check_state(t, buffer_read, &check, &err), "check: %s", err.message);
		CHECKF(trainer_restore_state(t, buffer_read, &restore, &err), "restore: %s", err.message);
		out = finish(t, n);
		trainer_free(t);
	}
	free(check.data);
	free(restore.data);
	return out;
}

/* Stopped at each place and restored, training ends as if never stopped. */
static void
test_same_bits(const char *what, const Setup *s, const StopAt *places, int n_places)
{
	StudentTrainer *t = create(s);
	size_t		n,
				m;
	float	   *straight;

	if (t == NULL)
		return;
	straight = finish(t, &n);
	trainer_free(t);
	for (int i = 0; i < n_places; i++)
	{
		Buffer		b = {0};
		float	   *resumed;

		if (!run_and_save(s, &places[i], &b))
			continue;
		resumed = restore_and_finish(s, &b, &m);
		CHECKF(resumed != NULL && m == n &&
			   memcmp(resumed, straight, 2 * n * sizeof(float)) == 0,
			   "%s, stopped at epoch %d / step %d%s: the weights differ", what,
			   places[i].epoch, places[i].step, places[i].validating ? " / validating" : "");
		if (i == 0)
			printf("  %s: a state of %zu bytes, written in pieces of at most %zu\n",
				   what, b.len, b.largest_piece);
		CHECK(b.largest_piece <= TRAINER_STATE_PIECE);
		free(resumed);
		free(b.data);
	}
	free(straight);
}

/* ---------------------------------------------------------------- */
/* Refusals */

/* Check and restore both refuse b, with kind and a message holding words. */
static void
expect_refused(const char *what, const Setup *s, const Buffer *b, CoreErrorKind kind,
			   const char *words)
{
	StudentTrainer *t = create(s);
	Buffer		check = buffer_copy(b);
	Buffer		restore = buffer_copy(b);
	CoreError	err = {0};
	bool		ok;

	if (t == NULL)
		return;
	ok = trainer_check_state(t, buffer_read, &check, &err);
	CHECKF(!ok && err.kind == kind && strstr(err.message, words) != NULL,
		   "%s: checked: %s (kind %d)", what, ok ? "taken" : err.message, err.kind);
	CHECKF(trainer_error(t) == NULL, "%s: a check changed the trainer", what);
	ok = trainer_restore_state(t, buffer_read, &restore, &err);
	CHECKF(!ok && err.kind == kind && strstr(err.message, words) != NULL,
		   "%s: restored: %s", what, ok ? "taken" : err.message);
	trainer_free(t);
	free(check.data);
	free(restore.data);
}

/* A changed byte at offset (from the start of section, if not NULL). */
static void
expect_damage_refused(const Setup *s, const Buffer *state, const char *section,
					  size_t offset, bool resealed, const char *words)
{
	Buffer		b = buffer_copy(state);
	size_t		at = section != NULL ? section_at(&b, section) : 0;
	char		what[96];

	snprintf(what, sizeof(what), "byte %zu of %s%s", offset, section ? section : "the state",
			 resealed ? ", resealed" : "");
	CHECKF(section == NULL || at > 0, "no section %s", section);
	b.data[at + offset] ^= 0x5A;
	if (!resealed || reseal(&b))
		expect_refused(what, s, &b, CORE_ERR_CORRUPT, words);
	free(b.data);
}

/* A u32 of the progress section set to value, the CRCs put right. */
static void
expect_progress_refused(const Setup *s, const Buffer *state, size_t offset,
						uint32_t value, const char *words)
{
	Buffer		b = buffer_copy(state);
	size_t		at = section_at(&b, "progress");
	char		what[64];

	snprintf(what, sizeof(what), "progress byte %zu = %u", offset, value);
	le_put_u32(b.data + at + offset, value);
	CHECK(reseal(&b));
	expect_refused(what, s, &b, CORE_ERR_CORRUPT, words);
	free(b.data);
}

static void
test_damage(const Setup *s, const Buffer *state)
{
	static const char *const sections[] = {"model", "params", "examples", "progress",
	"order", "weights", "adam", "best_weights"};
	Buffer		b;

	/* any byte, anywhere: a checksum says so */
	expect_damage_refused(s, state, NULL, 0, false, "not a training state");
	for (int i = 0; i < 8; i++)
		expect_damage_refused(s, state, sections[i], 0, false, "fails its checksum");
	expect_damage_refused(s, state, NULL, state->len - 1, false, "fails its checksum");
	expect_damage_refused(s, state, NULL, 20, false, "where \"model\" belongs");

	/* the checksums right, what they cover wrong */
	expect_damage_refused(s, state, "model", 1, true, "does not list what this build's does");
	expect_progress_refused(s, state, 0, 7, "phase is unknown");
	expect_progress_refused(s, state, 4, 0, "epoch and step counts disagree");
	expect_progress_refused(s, state, 12, 3, "epoch and step counts disagree");
	expect_progress_refused(s, state, 16, 1000, "skipped more steps");
	expect_progress_refused(s, state, 28, 9, "best epoch");
	b = buffer_copy(state);
	le_put_u32(b.data + section_at(&b, "order"), le_get_u32(b.data + section_at(&b, "order") + 4));
	CHECK(reseal(&b));
	expect_refused("a row twice in the order", s, &b, CORE_ERR_CORRUPT, "order of the training rows");
	free(b.data);
	b = buffer_copy(state);
	le_put_u32(b.data + section_at(&b, "adam"), 3);
	CHECK(reseal(&b));
	expect_refused("adam's step", s, &b, CORE_ERR_CORRUPT, "optimizer's step count");
	free(b.data);
	b = buffer_copy(state);
	le_put_u32(b.data + 4, 2);
	CHECK(reseal(&b));
	expect_refused("version 2", s, &b, CORE_ERR_CORRUPT, "format version 2");
	free(b.data);

	/* cut short anywhere, or with more after its end */
	for (size_t len = 0; len < state->len; len += state->len / 7 + 1)
	{
		b = buffer_copy(state);
		b.len = len;
		expect_refused("truncated", s, &b, CORE_ERR_CORRUPT, "ends early");
		free(b.data);
	}
	b = buffer_copy(state);
	b.data = realloc(b.data, b.len + 1);
	b.data[b.len++] = 0;
	expect_refused("a byte too many", s, &b, CORE_ERR_CORRUPT, "bytes follow its end");
	free(b.data);

	b = buffer_copy(state);
	b.fail = true;
	expect_refused("a read that fails", s, &b, CORE_ERR_INTERNAL, "cannot read the disk");
	free(b.data);
}

/* Two training rows (not held out for validation) of different labels. */
static void
two_training_rows(const Setup *s, int *a, int *b)
{
	StudentTrainer *t = create(s);
	const int  *valid = trainer_validation_index(t);
	int			n_valid = trainer_validation_examples(t);
	int			found = 0;

	for (int i = 0; found < 2 && i < s->n_rows; i++)
	{
		bool		held_out = false;

		for (int k = 0; k < n_valid; k++)
			held_out = held_out || valid[k] == i;
		if (held_out || (found == 1 && strcmp(s->rows[i].label, s->rows[*a].label) == 0))
			continue;
		*(found++ == 0 ? a : b) = i;
	}
	trainer_free(t);
}

/* A state is refused by another trainer, naming what differs. */
static void
test_mismatches(const Setup *s, const Buffer *state)
{
	Setup		other = *s;

	other.params.lr *= 2;
	expect_refused("another lr", &other, state, CORE_ERR_INVALID_INPUT,
				   "other training parameters: lr 0.01 there, 0.02 here");
	other = *s;
	other.params.seed = 2;
	expect_refused("another seed", &other, state, CORE_ERR_INVALID_INPUT, "seed");
	other = *s;
	other.params.epochs = 4;
	expect_refused("more epochs", &other, state, CORE_ERR_INVALID_INPUT, "epochs 3 there, 4 here");
	other = *s;
	other.params.d_model = 64;
	expect_refused("another model", &other, state, CORE_ERR_INVALID_INPUT,
				   "another model: d_model 32 there, 64 here");

	/* two training rows swapped: the same counts, another fingerprint */
	other = *s;
	{
		StudentExample rows[N_ROWS];
		int			a = 0,
					b = 1;

		two_training_rows(s, &a, &b);
		memcpy(rows, s->rows, s->n_rows * sizeof(StudentExample));
		rows[a] = s->rows[b];
		rows[b] = s->rows[a];
		other.rows = rows;
		expect_refused("two rows swapped", &other, state, CORE_ERR_INVALID_INPUT,
					   "other training rows: fingerprint");
		other.n_rows = s->n_rows - 1;
		expect_refused("a row less", &other, state, CORE_ERR_INVALID_INPUT,
					   "other training rows: training rows 54 there, 53 here");
	}

	/* what changes no result may differ */
	other = *s;
	other.params.memory_mb = 128;
	other.params.log_every = 7;
	{
		StudentTrainer *t = create(&other);
		Buffer		b = buffer_copy(state);
		CoreError	err;

		CHECKF(t != NULL && trainer_restore_state(t, buffer_read, &b, &err),
			   "memory_mb and log_every changed: %s", err.message);
		trainer_free(t);
		free(b.data);
	}
}

/* Misuse: a trainer that has started, a training that has ended, a stop. */
static void
test_misuse(const Setup *s, const Buffer *state)
{
	StudentTrainer *t = create(s);
	Buffer		b = buffer_copy(state);
	Buffer		out = {0};
	TrainProgress p;
	CoreError	err;

	trainer_advance(t, &p);
	CHECK(!trainer_restore_state(t, buffer_read, &b, &err) &&
		  strstr(err.message, "has not started") != NULL);
	out.fail = true;
	CHECK(!trainer_save_state(t, buffer_write, &out, &err) &&
		  strstr(err.message, "the disk is full") != NULL);
	while (trainer_advance(t, &p) != TRAIN_DONE)
		;
	out.fail = false;
	CHECK(!trainer_save_state(t, buffer_write, &out, &err) &&
		  strstr(err.message, "training has ended") != NULL);
	trainer_free(t);
	free(out.data);
	free(b.data);

	/* damage found after the weights were overwritten: that trainer is done */
	t = create(s);
	b = buffer_copy(state);
	b.data[section_at(&b, "adam") + 100] ^= 1;
	CHECK(!trainer_restore_state(t, buffer_read, &b, &err));
	CHECK(trainer_error(t) != NULL && strstr(trainer_error(t)->message, "adam") != NULL);
	CHECK(trainer_advance(t, &p) == TRAIN_DONE);
	trainer_free(t);
	free(b.data);
}

static bool stop_now;

static bool
stop_flag(void *arg)
{
	return stop_now;
}

/* Saving and reading ask the trainer's stop check between pieces. */
static void
test_stop(const Setup *s, const Buffer *state)
{
	StopCheck	stop = {stop_flag, NULL};
	Buffer		b = buffer_copy(state);
	Buffer		out = {0};
	CoreError	err;
	StudentTrainer *t;

	stop_now = false;
	t = trainer_create(&s->params, s->rows, s->n_rows, kinds, 3, &stop, &err);
	CHECKF(t != NULL, "%s", err.message);
	if (t != NULL)
	{
		stop_now = true;
		CHECK(!trainer_save_state(t, buffer_write, &out, &err) &&
			  err.kind == CORE_ERR_INTERRUPTED);
		CHECK(!trainer_check_state(t, buffer_read, &b, &err) &&
			  err.kind == CORE_ERR_INTERRUPTED);
		trainer_free(t);
	}
	free(out.data);
	free(b.data);
}

int
main(void)
{
	static Rows rows;
	Setup		scratch = {.on_base = false, .rows = rows.examples, .n_rows = N_ROWS};
	Setup		base = {.on_base = true, .rows = rows.examples, .n_rows = N_ROWS};
	Setup		lora;
	StopAt		places[] = {{1, 0, false}, {2, 0, false}, {0, 5, false}, {0, 0, true}};
	StopAt		after_one = {1, 0, false};
	Buffer		state = {0};

	model_set_threads(1);
	make_rows(&rows);
	scratch_params(&scratch.params);
	base_params(&base.params);
	lora = base;
	lora.params.lora_rank = 4;

	test_same_bits("from scratch", &scratch, places, 4);
	test_same_bits("stories260K fine-tuned", &base, places, 2);
	test_same_bits("stories260K with LoRA adapters", &lora, places, 2);

	if (run_and_save(&scratch, &after_one, &state))
	{
		test_damage(&scratch, &state);
		test_mismatches(&scratch, &state);
		test_misuse(&scratch, &state);
		test_stop(&scratch, &state);
	}
	free(state.data);
	return unit_summary("trainer_state");
}
