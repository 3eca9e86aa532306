/*
 * fuzz_prediction_image.c - prediction images (core/model_image.h:
 * model_from_image).
 *
 * The input is an image.  Its identity fields are the expected identity,
 * and the checksums of its embedded model header and of its own header
 * are overwritten with the right ones, so that mutations reach the checks
 * behind them.  It is copied to a buffer aligned as a mapping is.  A model
 * that loads is run: two candidates scored, a few tokens generated, and
 * the next-token log-probabilities of a short sequence.
 */
#include "fuzz.h"

#include "core/model_image.h"
#include "core/util.h"

/* bytes 40..43 hold the model header's length; it starts at 48 */
#define PRELUDE 48

static void
run(const Model *model)
{
	int			vocab = model->config.vocab_size;
	int32_t		prefix[2] = {vocab - 1, 0};
	int32_t		one[1] = {0};
	const int32_t *candidates[2] = {one, prefix};
	int			lens[2] = {1, 1};
	double		scores[2];
	int32_t		out[3];
	float	   *logprobs = malloc(2 * (size_t) vocab * sizeof(float));
	CoreError	err = {0};
	int			n;

	if (logprobs == NULL)
		abort();
	FUZZ_CHECK(model_score_candidates(model, prefix, 1, candidates, lens, 2, scores,
									  &err), "scoring failed: %s", err.message);
	n = model_generate_greedy(model, prefix, 1, 3, 0, out, NULL, &err);
	FUZZ_CHECK(n >= 0 && n <= 3, "generating failed (%d): %s", n, err.message);
	FUZZ_CHECK(model_next_logprobs(model, prefix, 2, logprobs, &err),
			   "log-probabilities failed: %s", err.message);
	free(logprobs);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	model_set_threads(1);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
	ModelImageIdentity identity;
	uint8_t    *image;
	uint32_t	header_len;
	CoreError	err = {0};
	Model	   *model;

	if (size < PRELUDE + 4 || size > ((size_t) 64 << 20) ||
		posix_memalign((void **) &image, 64, size) != 0)
		return 0;
	memcpy(image, input, size);
	header_len = le_get_u32(image + 40);
	if (header_len >= 4 && header_len <= size - PRELUDE - 4)
	{
		fuzz_reseal(image + PRELUDE, header_len - 4);
		fuzz_reseal(image, PRELUDE + header_len);
	}
	identity.model_id = le_get(image + 16, 8);
	identity.scope = le_get_u32(image + 24);
	identity.weights_crc = le_get_u32(image + 28);

	model = model_from_image(image, size, &identity, &err);
	if (model != NULL)
	{
		FUZZ_CHECK(model->image == image && model->image_bytes == size,
				   "the model is not of the image");
		run(model);
		model_free(model);
	}
	else
		FUZZ_CHECK(err.message[0] != '\0', "rejected without a reason");
	free(image);
	return 0;
}
