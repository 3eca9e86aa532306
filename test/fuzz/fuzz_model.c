/*
 * fuzz_model.c - the model blob (core/model_io.h, model_deserialize()).
 *
 * The input is a serialized model; its last four bytes are overwritten
 * with the CRC-32C of the rest, so that mutations reach the checks behind
 * the checksum.  A model that loads is then run, so that one loaded but
 * inconsistent is caught too: two candidates scored and a few tokens
 * generated, before and after packing the weights for prediction.  The
 * format has one spelling per model, so serializing what was loaded must
 * give back the input bytes.
 */
#include "fuzz.h"

#include "core/model_io.h"

/* Tokens of the prefix, of the longer candidate, generated at most. */
#define PREFIX_TOKENS 3
#define CANDIDATE_TOKENS 2
#define NEW_TOKENS 3

static void
check_reserialize(const Model *model, const uint8_t *blob, size_t size)
{
	size_t		len = model_serialized_size(model);
	uint8_t    *again;

	FUZZ_CHECK(len == size, "%zu bytes serialize to %zu", size, len);
	again = malloc(len);
	if (again == NULL)
		abort();
	model_serialize(model, again);
	FUZZ_CHECK(memcmp(again, blob, len) == 0, "serialized again, the bytes differ");
	free(again);
}

/* Score two candidates after a short prefix and generate a few tokens. */
static void
run(const Model *model)
{
	int			vocab = model->config.vocab_size;
	int			prefix_len = model->config.max_seq_len > PREFIX_TOKENS ?
		PREFIX_TOKENS : model->config.max_seq_len - 1;
	int32_t		prefix[PREFIX_TOKENS] = {1 % vocab, 0, (vocab - 1)};
	int32_t		one[1] = {vocab - 1};
	int32_t		two[CANDIDATE_TOKENS] = {0, 1 % vocab};
	const int32_t *candidates[2] = {one, two};
	int			lens[2] = {1, CANDIDATE_TOKENS};
	double		scores[2];
	int32_t		out[NEW_TOKENS];
	CoreError	err = {0};
	int			n;

	if (model->config.max_seq_len - prefix_len < CANDIDATE_TOKENS)
		lens[1] = 1;
	FUZZ_CHECK(model_score_candidates(model, prefix, prefix_len, candidates, lens,
									  2, scores, &err),
			   "scoring failed: %s", err.message);
	n = model_generate_greedy(model, prefix, prefix_len, NEW_TOKENS, 0, out, NULL,
							  &err);
	FUZZ_CHECK(n >= 0 && n <= NEW_TOKENS, "generating failed (%d): %s", n, err.message);
	for (int i = 0; i < n; i++)
		FUZZ_CHECK(out[i] > 0 && out[i] < vocab, "generated id %d", out[i]);
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
	uint8_t    *blob = (uint8_t *) fuzz_copy(data, size, false);
	CoreError	err = {0};
	Model	   *model;

	if (size >= 8)
		fuzz_reseal(blob, size - 4);
	model = model_deserialize(blob, size, &err);
	if (model == NULL)
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
	else
	{
		check_reserialize(model, blob, size);
		run(model);
		FUZZ_CHECK(model_pack_for_prediction(model, &err),
				   "packing failed: %s", err.message);
		run(model);
		model_free(model);
	}
	free(blob);
	return 0;
}
