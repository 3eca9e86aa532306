/*
 * fuzz_trainer_state.c - a saved training state (core/trainer.h:
 * trainer_check_state(), trainer_restore_state()).
 *
 * The input is a state of the trainer of fuzz_trainer.h; the CRCs of its
 * sections and its trailer are put right first, as far as its layout can
 * be followed, so that mutations reach the checks behind them.  A state
 * the check refuses must be refused by restoring too, with the same
 * message; one it takes must restore, save again to the same bytes (a
 * state has one spelling), and train on to the end.
 */
#include "fuzz.h"
#include "fuzz_trainer.h"

#include "core/util.h"

typedef struct Stream
{
	uint8_t    *data;
	size_t		len;
	size_t		pos;
} Stream;

static int64_t
read_stream(void *ctx, void *buf, size_t len, CoreError *err)
{
	Stream	   *s = ctx;
	size_t		n = s->len - s->pos < len ? s->len - s->pos : len;

	memcpy(buf, s->data + s->pos, n);
	s->pos += n;
	return (int64_t) n;
}

static bool
write_stream(void *ctx, const void *data, size_t len, CoreError *err)
{
	Stream	   *s = ctx;

	if (s->pos + len > s->len)
	{
		core_error(err, CORE_ERR_INVALID_INPUT, "saved more than was read");
		return false;
	}
	FUZZ_CHECK(memcmp(s->data + s->pos, data, len) == 0,
			   "saved again, bytes %zu to %zu differ", s->pos, s->pos + len);
	s->pos += len;
	return true;
}

/* The CRCs of the sections and of the trailer, where the layout allows. */
static void
reseal(uint8_t *b, size_t len)
{
	size_t		at = 16;
	uint32_t	toc;
	uint32_t	n_sections;

	if (len < 16)
		return;
	toc = crc32c(0, b, 16);
	n_sections = le_get_u32(b + 8);
	for (uint32_t i = 0; i < n_sections && i < 16; i++)
	{
		uint64_t	size;

		if (len - at < 28)
			return;
		size = le_get(b + at + 16, 8);
		if (size > len - at - 28)
			return;
		toc = crc32c(toc, b + at, 24);
		fuzz_put_u32(b + at + 24 + size, crc32c(0, b + at + 24, size));
		toc = crc32c(toc, b + at + 24 + size, 4);
		at += 28 + size;
	}
	if (len - at >= 4)
		fuzz_put_u32(b + at, toc);
}

static StudentTrainer *
new_trainer(void)
{
	CoreError	err = {0};
	StudentTrainer *t = fuzz_state_trainer(&err);

	FUZZ_CHECK(t != NULL, "no trainer: %s", err.message);
	return t;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	model_set_threads(1);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Stream		in = {(uint8_t *) fuzz_copy(data, size, false), size, 0};
	StudentTrainer *t = new_trainer();
	CoreError	checked = {0};
	CoreError	restored = {0};
	TrainProgress p;
	bool		ok;

	reseal(in.data, size);
	ok = trainer_check_state(t, read_stream, &in, &checked);
	in.pos = 0;
	if (!ok)
	{
		FUZZ_CHECK(checked.message[0] != '\0', "refused without a reason");
		FUZZ_CHECK(!trainer_restore_state(t, read_stream, &in, &restored),
				   "restored what the check refused: %s", checked.message);
		FUZZ_CHECK(strcmp(checked.message, restored.message) == 0,
				   "check \"%s\", restore \"%s\"", checked.message, restored.message);
	}
	else
	{
		FUZZ_CHECK(trainer_restore_state(t, read_stream, &in, &restored),
				   "the check took what restoring refused: %s", restored.message);
		in.pos = 0;
		FUZZ_CHECK(trainer_save_state(t, write_stream, &in, &restored) && in.pos == size,
				   "saving again: %s", restored.message);
		while (trainer_advance(t, &p) != TRAIN_DONE)
			;
		student_free(trainer_take_best(t));
	}
	trainer_free(t);
	free(in.data);
	return 0;
}
