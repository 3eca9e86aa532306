/*
 * fuzz_student.c - a student as stored in the models table: a tokenizer
 * blob and a weights blob (core/student.h, student_load()).
 *
 * Input: u32 n (little-endian), n bytes of tokenizer, then the weights.
 * Each checksum is overwritten with the right one first (the tokenizer's
 * last four bytes, the student header's, the model blob's last four
 * bytes), so that mutations reach the checks behind them.  A student that
 * loads is then used with tiny bounds: two candidates chosen from, a few
 * tokens generated for each task, every token shown as text.  Checks: a
 * choice is a candidate, text out is valid UTF-8, and the weights blob
 * saved again is the input (its format has one spelling per student).
 */
#include "fuzz.h"

#include "core/trainer.h"

/* student.c's weights header: magic, version, two limits, CRC-32C. */
#define STUDENT_HEADER_SIZE 20

/* Prediction bounds while fuzzing: a model of any size stays quick. */
#define FUZZ_INPUT_TOKENS 8
#define FUZZ_TARGET_TOKENS 3
/* Tokens shown as text, at most. */
#define FUZZ_TOKEN_TEXTS 600

static void
reseal_weights(uint8_t *weights, size_t len)
{
	if (len >= STUDENT_HEADER_SIZE)
		fuzz_reseal(weights, 16);
	if (len >= STUDENT_HEADER_SIZE + 8)
		fuzz_reseal(weights + STUDENT_HEADER_SIZE,
					len - STUDENT_HEADER_SIZE - 4);
}

static void
check_saved_weights(const Student *s, const uint8_t *weights, size_t len)
{
	size_t		saved_len;
	void	   *saved = student_save_weights(s, &saved_len);

	FUZZ_CHECK(saved != NULL, "saving failed");
	FUZZ_CHECK(saved_len == len && memcmp(saved, weights, len) == 0,
			   "%zu bytes of weights save as %zu other bytes", len, saved_len);
	free(saved);
}

static void
check_text(char *text, const char *what)
{
	FUZZ_CHECK(text != NULL, "%s: NULL", what);
	FUZZ_CHECK(fuzz_utf8_valid(text, strlen(text)), "%s: invalid UTF-8", what);
	free(text);
}

static void
use(Student *s)
{
	static const char *const candidates[] = {"fruit", "animal"};
	double		probs[2];
	CoreError	err = {0};
	int			choice;
	int			vocab = tok_vocab_size(s->tokenizer);

	/* lowering the limits keeps the sequences within the model's */
	if (s->max_input_tokens > FUZZ_INPUT_TOKENS)
		s->max_input_tokens = FUZZ_INPUT_TOKENS;
	if (s->max_target_tokens > FUZZ_TARGET_TOKENS)
		s->max_target_tokens = FUZZ_TARGET_TOKENS;

	/* weights large enough to overflow are refused when scoring, with a reason */
	err.message[0] = '\0';
	choice = student_choose(s, "red apple 42", candidates, 2, probs, &err);
	FUZZ_CHECK(choice == 0 || choice == 1 || (choice == -1 && strstr(err.message, "not a finite") != NULL),
			   "chose %d: %s", choice, err.message);
	check_text(student_generate(s, "predict", "red apple", &err),
			   "generate predict");
	check_text(student_generate(s, "explain", "caf\xc3\xa9 \xff", &err),
			   "generate explain");
	for (int32_t id = -1; id <= vocab && id < FUZZ_TOKEN_TEXTS; id++)
		check_text(student_token_text(s, id), "token text");
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	model_set_threads(1);		/* the fuzzer runs one input at a time */
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		tok_len;
	uint8_t    *tok;
	uint8_t    *weights;
	size_t		weights_len;
	CoreError	err = {0};
	Student    *s;

	if (size < 4)
		return 0;
	tok_len = (size_t) data[0] | (size_t) data[1] << 8 |
		(size_t) data[2] << 16 | (size_t) data[3] << 24;
	if (tok_len > size - 4)
		return 0;
	tok = (uint8_t *) fuzz_copy(data + 4, tok_len, false);
	weights_len = size - 4 - tok_len;
	weights = (uint8_t *) fuzz_copy(data + 4 + tok_len, weights_len, false);
	if (tok_len >= 8)
		fuzz_reseal(tok, tok_len - 4);
	reseal_weights(weights, weights_len);

	s = student_load(tok, tok_len, weights, weights_len, &err);
	if (s == NULL)
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
	else
	{
		check_saved_weights(s, weights, weights_len);
		use(s);
		student_free(s);
	}
	free(weights);
	free(tok);
	return 0;
}
